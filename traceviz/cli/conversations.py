"""Wireshark's Statistics -> Conversations and Endpoints: ``conversations``, ``endpoints``.

Also what the views share: ``recipe_options``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from traceviz import output
from traceviz.cli.common import (AbsOpt, AllOpt, FileArg, JsonOpt, KeylogOpt, RsaOpt, WhereOpt, WideOpt, app, clock,
                                 filtered, guarded, load, rows_json)
from traceviz.errors import InputError

ByOpt = Annotated[str, typer.Option("--by", help="ip (IPv4 and IPv6 address pairs), tcp or udp.")]
BY = ("ip", "tcp", "udp")


def check_by(by: str) -> str:
    if by not in BY:
        raise InputError("--by", f"unknown {by!r}: choose ip, tcp or udp")
    return by


def recipe_options(name: str):
    """``--figure`` and ``--fail`` for a view a bundled recipe answers, worded from its header
    as a recipe command words them."""
    from traceviz.recipe import bundled_dir, read_header

    head = read_header(bundled_dir() / f"{name}.py")
    figures = "; ".join(f"{k}: {v}" for k, v in head.figures.items())
    figure = Annotated[Optional[str], typer.Option("--figure", metavar="NAME", show_default=False,
                                                   help=f"Which figure --chart writes (default: the first). {figures}.")]
    fail = Annotated[bool, typer.Option("--fail", metavar="", help=f"Exit 1, the reasons on stderr, on {head.fails_on}.")]
    return figure, fail


def _table(file, by, where, json, keylog, rsa_key, what: str, columns: list[str], absolute=False, wide=False,
           all_rows=False) -> None:
    """``conversations`` and ``endpoints``: load, make the table, filter it, print it."""
    with guarded():
        mode = rows_json(json)
        check_by(by)
        # Frames and frame bytes per flow: nothing above TCP and UDP is read (--where filters the
        # table made here, not the Timeline)
        tl = load(file, keylog, rsa_key, tables=("packets", "connections"), transport_only=True)
        from traceviz.assemble import conversations as views
        make, fields = {"conversations": (views.conversations, views.CONVERSATION_FIELDS),
                        "endpoints": (views.endpoints, views.ENDPOINT_FIELDS)}[what]
        df = filtered(make(tl, by), where, what)
        if mode:
            output.print_json(output.records(df, fields))
            return
        title = f"{len(df)} {by.upper()} {what} in {Path(tl.source.path).name}"
        output.print_table(df, [c for c in columns if by != "ip" or c != "conn"], title=title,
                           clock=clock(tl, absolute), wide=wide, all_rows=all_rows)


@app.command()
def conversations(file: FileArg, by: ByOpt = "tcp", where: WhereOpt = None, json: JsonOpt = None,
                  keylog: KeylogOpt = None, rsa_key: RsaOpt = None, all_rows: AllOpt = False, wide: WideOpt = False,
                  absolute: AbsOpt = False) -> None:
    """Who talked to whom: frames and frame bytes each way (a sent ab, received ba), duration, bits/s (Wireshark's Conversations)."""
    _table(file, by, where, json, keylog, rsa_key, "conversations",
           ["kind", "conn", "a", "b", "frames_ab", "bytes_ab", "frames_ba", "bytes_ba", "start", "duration",
            "bps_ab", "bps_ba"], absolute, wide, all_rows)


@app.command()
def endpoints(file: FileArg, by: ByOpt = "ip", where: WhereOpt = None, json: JsonOpt = None,
              keylog: KeylogOpt = None, rsa_key: RsaOpt = None, all_rows: AllOpt = False, wide: WideOpt = False,
              absolute: AbsOpt = False) -> None:
    """Every address (or address:port) with what it sent and received (Wireshark's Endpoints)."""
    _table(file, by, where, json, keylog, rsa_key, "endpoints",
           ["kind", "endpoint", "frames", "bytes", "tx_frames", "tx_bytes", "rx_frames", "rx_bytes", "conversations"],
           absolute, wide, all_rows)
