"""``traceviz http-versions``: the same page over HTTP/1.1 and HTTP/2, side by side.

The comparison itself is the h2 recipe's ``compare`` (the recipe layer owns
the question); this command only loads the files and shows the Finding.
"""

from __future__ import annotations

from typing import Annotated

import typer

from traceviz import output
from traceviz.cli.common import (ChartOpt, FailOpt, JsonOpt, KeylogOpt, RsaOpt, ThemeOpt, app, check_chart, rows_json,
                                 check_theme, guarded, load, write_chart)
from traceviz.cli.recipes import extra_recipe_dirs, load_recipe, show_finding
from traceviz.errors import InputError
from traceviz.recipe import discover


@app.command("http-versions")
def http_versions(files: Annotated[list[str], typer.Argument(
        help="Two or more captures of the same page load, e.g. one over HTTP/1.1 and one over HTTP/2 "
             "(bundled: http1-six-connections h2-multiplexing).", show_default=False)],
                  json: JsonOpt = None, chart: ChartOpt = None, theme: ThemeOpt = "light",
                  keylog: KeylogOpt = None, rsa_key: RsaOpt = None, fail: FailOpt = False) -> None:
    """HTTP/1.1 against HTTP/2: connections, handshakes paid, time to the last byte and header bytes, drawn side by side."""
    with guarded():
        check_theme(theme)
        check_chart(chart)
        if len(files) < 2:
            raise InputError(files[0] if files else "http-versions", "give two or more files to compare")
        recipe = discover(extra_recipe_dirs).get("h2")
        if recipe is None:
            raise InputError("h2", "the h2 recipe is not installed")
        module = load_recipe(recipe)
        timelines = [load(f, keylog, rsa_key) for f in files]
        finding = module.compare(timelines)
        if chart is not None:
            write_chart(finding.figure("versions", theme), chart, theme)
        if rows_json(json):
            output.print_json(output.records(finding.rows, finding.json_fields))
        else:
            show_finding(finding, timelines[0])
        if fail and finding.problems:
            raise typer.Exit(1)
