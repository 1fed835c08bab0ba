"""``traceviz run RECIPE.py FILE``: a recipe file of one's own, with every recipe option."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from traceviz.cli.common import (AbsOpt, AllOpt, ChartOpt, ConnOpt, FailOpt, FigureOpt, FileArg, JsonOpt, KeylogOpt,
                                 RsaOpt, ThemeOpt, WideOpt, app)
from traceviz.cli.recipes import recipe_command


@app.command("run")
def run_file(recipe: Annotated[Path, typer.Argument(help="A recipe .py file (see traceviz/recipe.py for the API).",
                                                    metavar="RECIPE.py", show_default=False)],
             file: FileArg, json: JsonOpt = None, chart: ChartOpt = None, theme: ThemeOpt = "light",
             figure: FigureOpt = None, conn: ConnOpt = None, keylog: KeylogOpt = None, rsa_key: RsaOpt = None,
             fail: FailOpt = False, all_rows: AllOpt = False, wide: WideOpt = False, absolute: AbsOpt = False) -> None:
    """Run a recipe file of your own on FILE, with the options of any recipe command.

    [italic]traceviz run RECIPE.py --help[/italic] shows that recipe's question;
    [italic]python RECIPE.py FILE[/italic] does the same as [italic]traceviz run RECIPE.py FILE[/italic].
    """
    recipe_command(recipe)(file, json=json, chart=chart, theme=theme, figure=figure, conn=conn,
                           keylog=keylog, rsa_key=rsa_key, fail=fail, all_rows=all_rows, wide=wide, absolute=absolute)
