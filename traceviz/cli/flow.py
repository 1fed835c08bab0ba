"""``traceviz flow``: the flow graph across hosts, narrowed by connection, host, time or --where."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from traceviz.cli.common import (AbsOpt, AllOpt, ChartOpt, ConnOpt, FileArg, JsonOpt, KeylogOpt, RsaOpt, ThemeOpt,
                                 WhereOpt, WideOpt, app, check_chart, check_theme, filtered, guarded, load, rows_json)
from traceviz.cli.conversations import recipe_options

FigureOpt, FailOpt = recipe_options("flow")


@app.command()
def flow(file: FileArg, conn: ConnOpt = None,
         host: Annotated[Optional[List[str]], typer.Option("--host", help="Only arrows to or from this address (repeat for more).",
                                                           show_default=False)] = None,
         since: Annotated[Optional[float], typer.Option("--since", help="From this many seconds after the first packet.",
                                                        show_default=False)] = None,
         until: Annotated[Optional[float], typer.Option("--until", help="Up to this many seconds after the first packet.",
                                                        show_default=False)] = None,
         where: WhereOpt = None,
         limit: Annotated[int, typer.Option(help="Draw at most this many arrows, and show as many rows on a terminal (0: all).")] = 300,
         json: JsonOpt = None, chart: ChartOpt = None, figure: FigureOpt = None, fail: FailOpt = False,
         theme: ThemeOpt = "light",
         keylog: KeylogOpt = None, rsa_key: RsaOpt = None, all_rows: AllOpt = False, wide: WideOpt = False,
         absolute: AbsOpt = False) -> None:
    """Who said what to whom across every host: one lane per host, arrows labelled at the highest decoded layer."""
    with guarded():
        mode = rows_json(json, findings=True)
        check_theme(theme)
        check_chart(chart)
        tl = load(file, keylog, rsa_key)
        from traceviz.recipe import bundled_dir, load_module
        recipe = load_module(bundled_dir() / "flow.py")
        if limit:
            recipe.LIMIT = limit
        finding = recipe.analyze(tl, conn=conn, hosts=host, since=since, until=until)
        if where:
            finding = recipe.analyze(tl, rows=filtered(finding.rows, where, "flow"))
        from traceviz.cli.recipes import present
        present(finding, tl, "flow", mode, chart, figure, theme, absolute, wide, all_rows, fail)
