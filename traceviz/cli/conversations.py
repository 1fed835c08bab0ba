"""Wireshark's Statistics -> Conversations and Endpoints: ``conversations``, ``endpoints``.

Also the ``--where`` option these views share (``traceviz.filters``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from traceviz import output
from traceviz.cli.common import FileArg, JsonOpt, KeylogOpt, RsaOpt, app, first_ts, guarded, load
from traceviz.errors import InputError

WhereOpt = Annotated[Optional[str], typer.Option(
    "--where", help="Keep the rows this expression selects: pandas-query syntax over the columns "
                    "(\"server == '10.0.0.2:443' and handshake_rtt > 0.1\") or Wireshark's "
                    "(\"tcp.stream eq 3\", \"ip.addr == 10.0.0.1\", \"tcp.port == 443\").", show_default=False)]
ByOpt = Annotated[str, typer.Option("--by", help="ip (IPv4 and IPv6 address pairs), tcp or udp.")]
BY = ("ip", "tcp", "udp")


def check_by(by: str) -> str:
    if by not in BY:
        raise InputError("--by", f"unknown {by!r}: choose ip, tcp or udp")
    return by


def filtered(df, where: str | None, table: str):
    """``df`` with ``--where`` applied (an expression that cannot be read is bad input)."""
    from traceviz.filters import where as select
    return select(df, where, table)


@app.command()
def conversations(file: FileArg, by: ByOpt = "tcp", where: WhereOpt = None, json: JsonOpt = False,
                  keylog: KeylogOpt = None, rsa_key: RsaOpt = None) -> None:
    """Who talked to whom: frames and bytes each way, duration and bits/s (Wireshark's Conversations)."""
    with guarded():
        check_by(by)
        tl = load(file, keylog, rsa_key)
        from traceviz.assemble.conversations import CONVERSATION_FIELDS, conversations as table
        df = filtered(table(tl, by), where, "conversations")
        if json:
            output.print_json(output.records(df, CONVERSATION_FIELDS))
            return
        cols = ["kind", "conn", "a", "b", "frames_ab", "bytes_ab", "frames_ba", "bytes_ba", "start", "duration",
                "bps_ab", "bps_ba"]
        if by == "ip":
            cols.remove("conn")
        title = f"{len(df)} {by.upper()} conversations in {Path(tl.source.path).name} (a -> b: ab; bytes are frame bytes)"
        output.stdout.print(output.table(df, cols, title=title, t0=first_ts(tl)))


@app.command()
def endpoints(file: FileArg, by: ByOpt = "ip", where: WhereOpt = None, json: JsonOpt = False,
              keylog: KeylogOpt = None, rsa_key: RsaOpt = None) -> None:
    """Every address (or address:port) with what it sent and received (Wireshark's Endpoints)."""
    with guarded():
        check_by(by)
        tl = load(file, keylog, rsa_key)
        from traceviz.assemble.conversations import ENDPOINT_FIELDS, endpoints as table
        df = filtered(table(tl, by), where, "endpoints")
        if json:
            output.print_json(output.records(df, ENDPOINT_FIELDS))
            return
        title = f"{len(df)} {by.upper()} endpoints in {Path(tl.source.path).name}"
        output.stdout.print(output.table(df, ENDPOINT_FIELDS, title=title))
