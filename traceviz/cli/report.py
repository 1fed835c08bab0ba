"""``traceviz report``: every recipe that applies, in one offline HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from traceviz import output
from traceviz.cli.common import KeylogOpt, RsaOpt, ThemeOpt, WhereOpt, app, check_theme, guarded, load, narrowed, warn
from traceviz.cli.recipes import extra_recipe_dirs
from traceviz.errors import InputError
from traceviz.recipe import discover, load_module, read_header


@app.command()
def report(files: Annotated[list[str], typer.Argument(help="One or more captures, HARs or traces (or bundled capture names).",
                                                     metavar="FILE", show_default=False)],
           out: Annotated[Path, typer.Option("-o", "--output", metavar="PATH", help="The HTML page to write.")] = Path("traceviz-report.html"),
           theme: ThemeOpt = "light", where: WhereOpt = None, keylog: KeylogOpt = None, rsa_key: RsaOpt = None) -> None:
    """Every recipe that applies, for every file, in one self-contained HTML page (works offline)."""
    from traceviz import report as reporting
    with guarded():
        check_theme(theme)
        if out.suffix.lower() not in (".html", ".htm"):
            raise InputError(str(out), "a report is an HTML page: name it .html")
        timelines = [narrowed(load(f, keylog, rsa_key, measure_tcp=True), where)   # the stream graphs need measure_tcp
                     for f in files]
        recipes = {}
        for name, path in discover(extra_recipe_dirs).items():
            head = read_header(path)
            if head.error is not None or not head.runnable:
                continue  # already said when the commands were built
            try:
                recipes[name] = load_module(path)
            except Exception as exc:  # a broken user recipe is skipped, loudly
                warn(f"recipe {path} failed to load: {exc}")
        parts = reporting.sections(timelines, recipes)
        shown = reporting.ran(parts)
        for tl in timelines:
            if not any(p.file == tl.source.path for p in shown):
                needs = "; ".join(f"{p.recipe} needs {p.skipped}" for p in parts
                                  if p.file == tl.source.path and p.skipped)
                warn(f"{tl.source.path}: no recipe applies ({needs or 'no recipes'})")
        if not shown:
            raise InputError(str(out), "nothing to report: no recipe applies to "
                             + ("this file" if len(timelines) == 1 else "these files") + "; no page written")
        out.write_text(reporting.render(timelines, parts, theme), encoding="utf-8")
        names = ", ".join(sorted({p.recipe for p in shown}))
        output.stderr.print(Text(f"report written to {out} ({names})"))
