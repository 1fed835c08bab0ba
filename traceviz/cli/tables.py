"""The tables as commands: ``info``, ``connections``, ``timeline``, ``requests``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from traceviz import output
from traceviz.cli.common import (ConnOpt, FileArg, JsonOpt, KeylogOpt, RsaOpt, app, first_ts, guarded,
                                 json_rows, load)


@app.command()
def info(file: FileArg, json: JsonOpt = False, keylog: KeylogOpt = None, rsa_key: RsaOpt = None) -> None:
    """What is in the file, and what traceviz can decode of it."""
    with guarded():
        tl = load(file, keylog, rsa_key)
        facts = describe(tl)
        if json:
            output.print_json(output.plain(facts))
            return
        for k in ("first", "last"):  # epoch seconds in --json, a date for people
            if k in facts:
                facts[k] = output.epoch_text(facts[k])
        secrets = facts.get("secrets")
        if isinstance(secrets, dict) and "text" in secrets:
            blocks = secrets.get("embedded_secrets_blocks", 0)
            facts["secrets"] = secrets["text"] + (f" ({blocks} embedded secrets block{'s' * (blocks != 1)})" if blocks else "")
        output.stdout.print(output.key_values(facts, title=f"{Path(tl.source.path).name}"))


def describe(tl) -> dict:
    src = tl.source
    facts: dict = {"file": src.path, "format": src.format + (" (gzip)" if src.compressed else ""),
                   "size_bytes": src.size}
    if len(tl.packets):
        ts = tl.packets["ts"]
        facts.update(frames=int(len(tl.packets)), first=float(ts.min()), last=float(ts.max()),
                     duration_s=round(float(ts.max() - ts.min()), 6))
        facts["link_types"] = dict(src.link_types)
        facts["transports"] = {str(k): int(v) for k, v in tl.packets["transport"].value_counts().items()}
    conns = tl.connections
    if len(conns):
        facts["connections"] = {str(k): int(v) for k, v in conns["transport"].value_counts().items()}
        if "close" in conns:
            facts["tcp_close"] = {str(k): int(v) for k, v in conns["close"].dropna().value_counts().items()}
        apps = conns["app"].dropna()
        if len(apps):
            facts["applications"] = {str(k): int(v) for k, v in apps.value_counts().items()}
    if len(tl.requests):
        facts["requests"] = int(len(tl.requests))
        facts["protocols"] = {str(k): int(v) for k, v in tl.requests["protocol"].dropna().value_counts().items()}
        facts["status_codes"] = {str(k): int(v) for k, v in tl.requests["status"].dropna().value_counts().sort_index().items()}
    if tl.decryption is not None:
        facts["secrets"] = dict(tl.decryption)
    for k in ("browser", "creator", "clock", "connections_inferred"):
        if k in src.detail and not isinstance(src.detail[k], (list, dict)):
            facts[k] = src.detail[k]
    pages = src.detail.get("pages")
    if isinstance(pages, list):
        facts["pages"] = len(pages)
        for i, page in enumerate(pages[:5]):
            title = page.get("title") or page.get("url") or page.get("id") or f"page {i + 1}"
            facts[f"page {i + 1}"] = {"title": title, "DOMContentLoaded_ms": page.get("onContentLoad"),
                                      "load_ms": page.get("onLoad")}
    facts["warnings"] = len(tl.warnings)
    return facts


@app.command()
def connections(file: FileArg, json: JsonOpt = False, transport: Annotated[Optional[str], typer.Option(
        help="Only tcp, udp or quic connections.", show_default=False)] = None,
                keylog: KeylogOpt = None, rsa_key: RsaOpt = None) -> None:
    """One row per connection; [bold]conn[/bold] is Wireshark's tcp.stream, so [italic]tshark -Y "tcp.stream eq N"[/italic] shows the same one."""
    with guarded():
        tl = load(file, keylog, rsa_key)
        df = tl.connections
        if transport:
            df = df[df["transport"] == transport]
        if json:
            json_rows(df, "connections")
            return
        cols = ["conn", "transport", "client", "server", "app", "start", "handshake_rtt", "packets",
                "bytes_c2s", "bytes_s2c", "close", "sni"]
        output.stdout.print(output.table(df, cols, title=f"{len(df)} connections in {Path(tl.source.path).name}",
                                         t0=first_ts(tl)))


@app.command()
def timeline(file: FileArg, conn: ConnOpt = None,
             layer: Annotated[Optional[str], typer.Option(help="Only this layer: tcp, tls, http, h2, quic, har, devtools.", show_default=False)] = None,
             kind: Annotated[Optional[str], typer.Option(help="Only this kind, e.g. SYN, RST, retransmission, ClientHello.", show_default=False)] = None,
             limit: Annotated[int, typer.Option(help="Show at most this many rows on a terminal (0: all).")] = 200,
             json: JsonOpt = False, keylog: KeylogOpt = None, rsa_key: RsaOpt = None) -> None:
    """The events, in order: handshakes, retransmissions, TLS messages, requests…"""
    with guarded():
        tl = load(file, keylog, rsa_key)
        ev = tl.events
        if conn is not None:
            ev = ev[ev["conn"] == conn]
        if layer:
            ev = ev[ev["layer"].str.lower() == layer.lower()]
        if kind:
            ev = ev[ev["kind"].str.lower() == kind.lower()]
        ev = ev.sort_values(["ts", "frame"], kind="stable")
        if json:
            json_rows(ev, "events")
            return
        shown = ev if not limit else ev.head(limit)
        output.stdout.print(output.table(shown, ["frame", "ts", "conn", "stream", "layer", "kind", "dir", "size", "detail"],
                                         title=f"{len(ev)} events", t0=first_ts(tl)))
        if limit and len(ev) > limit:
            output.stderr.print(Text(f"({len(ev) - limit} more: --limit 0 shows all, --json for scripts)"))


@app.command()
def requests(file: FileArg, json: JsonOpt = False, keylog: KeylogOpt = None, rsa_key: RsaOpt = None) -> None:
    """One row per HTTP exchange, from a capture (decrypted with --keylog) or a browser export."""
    with guarded():
        tl = load(file, keylog, rsa_key, tables=("requests", "packets"))    # packets: the time origin
        df = tl.requests
        if json:
            json_rows(df, "requests")
            return
        cols = ["request", "conn", "stream", "protocol", "method", "host", "url", "status", "start", "ttfb", "end",
                "resp_bytes"]
        output.stdout.print(output.table(df, cols, title=f"{len(df)} requests", t0=first_ts(tl)))
