"""``traceviz iostat``: frames, bytes, requests and TCP events per interval (tshark's ``-z io,stat``)."""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer

from traceviz.cli.common import (AbsOpt, AllOpt, ChartOpt, ConnOpt, FileArg, JsonOpt, KeylogOpt, RsaOpt, ThemeOpt,
                                 WhereOpt, WideOpt, app, check_chart, check_theme, filtered, guarded, load, rows_json)
from traceviz.cli.conversations import recipe_options
from traceviz.errors import InputError

FigureOpt, FailOpt = recipe_options("iostat")

_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0}


def parse_interval(text: str) -> float:
    """``100ms``, ``0.5s``, ``2`` (seconds), ``1m`` -> seconds (InputError otherwise)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|µs|ms|s|m|min)?\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise InputError("--interval", f"cannot read {text!r}: give a duration such as 100ms, 0.5s or 2")
    seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds < 1e-6:
        raise InputError("--interval", "the shortest interval is 1us (captures tick in microseconds)")
    return seconds


@app.command()
def iostat(file: FileArg,
           interval: Annotated[Optional[str], typer.Option("--interval", help="Interval length: 100ms, 1s, 2m... (default: about 60 intervals).",
                                                           show_default=False)] = None,
           where: WhereOpt = None, conn: ConnOpt = None, json: JsonOpt = None, chart: ChartOpt = None,
           figure: FigureOpt = None, fail: FailOpt = False,
           theme: ThemeOpt = "light", keylog: KeylogOpt = None, rsa_key: RsaOpt = None, all_rows: AllOpt = False,
           wide: WideOpt = False, absolute: AbsOpt = False) -> None:
    """Frames, bytes, requests and TCP trouble per interval (tshark's -z io,stat); --where selects the packets."""
    with guarded():
        mode = rows_json(json, findings=True)
        check_theme(theme)
        check_chart(chart)
        step = parse_interval(interval) if interval is not None else None
        # What the intervals count, and all that is built: the packets, the requests' starts and
        # TCP's trouble.  No TLS session or event above TCP is decoded for them (half the load).
        tl = load(file, keylog, rsa_key, tables=("packets", "requests", "events"), events="tcp")
        from traceviz.recipe import bundled_dir, load_module
        recipe = load_module(bundled_dir() / "iostat.py")
        packets = filtered(tl.packets, where, "packets") if where else None
        finding = recipe.analyze(tl, conn=conn, interval=step, packets=packets)
        from traceviz.cli.recipes import present
        present(finding, tl, "iostat", mode, chart, figure, theme, absolute, wide, all_rows, fail)
