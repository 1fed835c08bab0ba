"""The tables as commands: ``info``, ``connections``, ``timeline``, ``requests``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from traceviz import output
from traceviz.cli.common import (AbsOpt, AllOpt, ConnOpt, FileArg, JsonOpt, KeylogOpt, RsaOpt, WhereOpt, WideOpt, app,
                                 check_choice, check_conn, clock, filtered, guarded, json_rows, load, narrowed, rows_json,
                                 warn)

LAYERS = ("tcp", "udp", "tls", "http", "h2", "quic", "h3", "har", "devtools", "netlog")   # events.layer, any source
TRANSPORTS = ("tcp", "udp", "quic")


@app.command()
def info(file: FileArg, json: JsonOpt = None, where: WhereOpt = None, keylog: KeylogOpt = None,
         rsa_key: RsaOpt = None) -> None:
    """What is in the file, and what traceviz can decode of it (--where: of the connections it selects)."""
    with guarded():
        mode = rows_json(json)
        tl = narrowed(load(file, keylog, rsa_key), where)
        facts = describe(tl)
        if mode:
            output.print_json(output.plain(facts))
            return
        for k in ("first", "last"):  # epoch seconds in --json, a date for people
            if k in facts:
                if not output.plausible_time(facts[k]):
                    warn(f"{tl.source.path}: the {k} packet's timestamp ({facts[k]:.6f}) is not a plausible date "
                         f"(a damaged or misconfigured capture clock)")
                facts[k] = output.epoch_text(facts[k])
        secrets = facts.get("secrets")
        if isinstance(secrets, dict) and "text" in secrets:
            blocks = secrets.get("embedded_secrets_blocks", 0)
            facts["secrets"] = secrets["text"] + (f" ({blocks} embedded secrets block{'s' * (blocks != 1)})" if blocks else "")
        output.key_values(facts, title=Path(tl.source.path).name)


def describe(tl) -> dict:
    src = tl.source
    facts: dict = {"file": src.path, "format": src.format + (" (gzip)" if src.compressed else ""),
                   "size_bytes": _disk_size(src)}
    if len(tl.packets):
        ts = tl.packets["ts"]
        facts.update(frames=int(len(tl.packets)), first=float(ts.min()), last=float(ts.max()),
                     duration_s=round(float(ts.max() - ts.min()), 6))
        facts["link_types"] = dict(src.link_types)
        facts["transports"] = {str(k): int(v) for k, v in tl.packets["transport"].value_counts().items()}
    conns = tl.connections
    if len(conns):
        facts["connections"] = {str(k): int(v) for k, v in conns["transport"].value_counts().items()}
        tcp = conns[conns["transport"] == "tcp"]
        if len(tcp) and "close" in conns:
            facts["tcp_close"] = {str(k): int(v) for k, v in tcp["close"].dropna().value_counts().items()}
        apps = conns["app"].dropna()
        if len(apps):
            facts["applications"] = {str(k): int(v) for k, v in apps.value_counts().items()}
    quic = getattr(tl, "quic", None)
    if quic is not None and len(quic):
        facts["quic"] = quic_facts(quic)
    if len(tl.requests):
        facts["requests"] = int(len(tl.requests))
        facts["protocols"] = {str(k): int(v) for k, v in tl.requests["protocol"].dropna().value_counts().items()}
        facts["status_codes"] = {str(k): int(v) for k, v in tl.requests["status"].dropna().value_counts().sort_index().items()}
    if len(tl.quic):
        q = tl.quic
        facts["quic_versions"] = {str(k): int(v) for k, v in
                                  (q["version_name"].fillna("?") + " (" + q["version"].fillna("?") + ")")
                                  .value_counts().items()}
        facts["quic_decrypted"] = f"{int(q['decrypted'].fillna(False).sum())} of {len(q)} connections"
    if tl.decryption is not None:
        facts["secrets"] = dict(tl.decryption)
    if src.detail.get("bundled_keylog"):
        facts["keylog"] = Path(src.detail["bundled_keylog"]).name + " (bundled with the capture)"
    for k in ("selected", "browser", "creator", "clock", "connections_inferred", "qlog_version", "qlog_format", "files",
              "vantage", "events_read", "capture_mode", "netlog_events", "truncated"):
        if k in src.detail and not isinstance(src.detail[k], (list, dict)):
            facts[k] = src.detail[k]
    for k in ("vantage_points", "event_categories"):      # qlog: who logged, and what
        if src.detail.get(k):
            facts[k] = dict(src.detail[k])
    for i, line in enumerate(src.detail.get("not_counted") or []):
        facts[f"not counted {i + 1}"] = line
    pages = src.detail.get("pages")
    if isinstance(pages, list):
        facts["pages"] = len(pages)
        for i, page in enumerate(pages[:5]):
            title = page.get("title") or page.get("url") or page.get("id") or f"page {i + 1}"
            facts[f"page {i + 1}"] = {"title": title, "DOMContentLoaded_ms": page.get("onContentLoad"),
                                      "load_ms": page.get("onLoad")}
    facts["warnings"] = len(tl.warnings)
    return facts


def quic_facts(quic) -> dict:
    """What was QUIC, in which versions, and whether it could be decrypted."""
    decrypted = quic["decrypted"].fillna(False).astype(bool)
    facts = {"connections": int(len(quic)),
             "versions": {str(k): int(v) for k, v in quic["version_name"].dropna().value_counts().items()},
             "decrypted": f"{int(decrypted.sum())} of {len(quic)}"}
    if "decrypt_note" in quic:
        notes = quic.loc[~decrypted, "decrypt_note"].dropna()
        if len(notes):
            facts["not decrypted"] = "; ".join(sorted(set(notes.astype(str))))
    return facts


def _disk_size(src) -> int:
    """The file's size on disk, whatever its format or compression (a reader may count decoded bytes)."""
    try:
        return os.path.getsize(src.path)
    except OSError:
        return src.size


@app.command()
def connections(file: FileArg, json: JsonOpt = None, transport: Annotated[Optional[str], typer.Option(
        metavar="NAME", help="Only tcp, udp or quic connections.", show_default=False)] = None,
                where: WhereOpt = None, keylog: KeylogOpt = None, rsa_key: RsaOpt = None, all_rows: AllOpt = False, wide: WideOpt = False,
                absolute: AbsOpt = False) -> None:
    """One row per connection; [bold]conn[/bold] is Wireshark's tcp.stream, so [italic]tshark -Y "tcp.stream eq N"[/italic] shows the same one."""
    with guarded():
        mode = rows_json(json)
        check_choice("transport", transport, TRANSPORTS)
        tl = load(file, keylog, rsa_key, tables=("connections",))
        df = tl.connections
        if transport:
            df = df[df["transport"] == transport.lower()]
        df = filtered(df, where, "connections")
        if mode:
            json_rows(df, "connections")
            return
        cols = ["conn", "transport", "client", "server", ("app", 3), "start", "handshake_rtt", "packets",
                "bytes_c2s", "bytes_s2c", "close", "sni"]
        output.print_table(df, cols, title=f"{len(df)} connections in {Path(tl.source.path).name}",
                           clock=clock(tl, absolute), wide=wide, all_rows=all_rows)


@app.command()
def timeline(file: FileArg, conn: ConnOpt = None,
             layer: Annotated[Optional[str], typer.Option(metavar="NAME", help="Only this layer: " + ", ".join(LAYERS) + ".",
                                                          show_default=False)] = None,
             kind: Annotated[Optional[str], typer.Option(metavar="NAME", help="Only this kind, e.g. SYN, RST, retransmission, ClientHello.",
                                                         show_default=False)] = None,
             where: WhereOpt = None, json: JsonOpt = None, keylog: KeylogOpt = None, rsa_key: RsaOpt = None, all_rows: AllOpt = False,
             wide: WideOpt = False, absolute: AbsOpt = False) -> None:
    """The events, in order: handshakes, retransmissions, TLS messages, requests…"""
    with guarded():
        mode = rows_json(json)
        # The events, and the connections --conn is checked against (--where filters the events)
        tl = load(file, keylog, rsa_key, tables=("events", "connections"), keepalive_facts=False)
        ev = tl.events
        check_conn(tl, conn)
        check_choice("layer", layer, set(LAYERS) | set(ev["layer"].dropna().astype(str)))
        check_choice("kind", kind, _kinds(ev), where=" (not in this file)")
        if conn is not None:
            ev = ev[ev["conn"] == conn]
        if layer:
            ev = ev[ev["layer"].str.lower() == layer.lower()]
        if kind:
            ev = ev[ev["kind"].str.lower() == kind.lower()]
        ev = filtered(ev, where, "events").sort_values(["ts", "frame"], kind="stable")
        if mode:
            json_rows(ev, "events")
            return
        output.print_table(ev, ["frame", "ts", "conn", "stream", "layer", "kind", "dir", "size", "detail"],
                           title=f"{len(ev)} events", clock=clock(tl, absolute), wide=wide, all_rows=all_rows)


def _kinds(ev) -> set[str]:
    """The kinds a --kind may name: those in the file, and TCP's (a file with no RST has 0 RSTs)."""
    from traceviz.decode.tcp.analysis import KINDS
    return set(ev["kind"].dropna().astype(str)) | {"SYN", "SYN-ACK", "FIN", "RST"} | set(KINDS.values())


@app.command()
def requests(file: FileArg, json: JsonOpt = None, conn: ConnOpt = None, where: WhereOpt = None, keylog: KeylogOpt = None,
             rsa_key: RsaOpt = None, all_rows: AllOpt = False, wide: WideOpt = False, absolute: AbsOpt = False) -> None:
    """One row per HTTP exchange, from a capture (decrypted with --keylog) or a browser export."""
    with guarded():
        mode = rows_json(json)
        tl = load(file, keylog, rsa_key, tables=("requests", "packets"))    # packets: the time origin
        df = tl.requests
        if conn is not None:
            check_conn(tl, conn, df["conn"].dropna())
            df = df[df["conn"] == conn]
        df = filtered(df, where, "requests")
        if mode:
            json_rows(df, "requests")
            return
        cols = ["request", "conn", "stream", "protocol", "method", ("host", 4), "url", "status", "start", "ttfb",
                "end", "resp_bytes"]
        output.print_table(df, cols, title=f"{len(df)} requests", clock=clock(tl, absolute), wide=wide,
                           all_rows=all_rows)
