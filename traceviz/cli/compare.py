"""``traceviz compare A B``: two captures of the same requests, side by side.

Made for QUIC next to TCP (the bundled ``quic-h3`` and ``quic-vs-h2-tcp``
carry the same 13 requests over the same path): for each capture's busiest
HTTP connection, how long after its first packet the first request left
and the last response byte arrived, in milliseconds and in round trips of
that path.  A command rather than a recipe because a recipe answers a
question about one file; the answer itself is written by the ``quic``
recipe (``compare``), so it reads like the other recipes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from traceviz import output
from traceviz.cli.common import (ChartOpt, JsonOpt, RsaOpt, ThemeOpt, app, check_chart, check_theme, guarded, load, rows_json,
                                 write_chart)

KeylogEach = Annotated[Optional[list[Path]], typer.Option(
    "--keylog", help="NSS key log; give it once per file, in the files' order (pcapng-embedded secrets are used "
                     "without it).", show_default=False)]


@app.command()
def compare(first: Annotated[str, typer.Argument(help="A capture (or bundled capture name), e.g. quic-h3.",
                                                 show_default=False)],
            second: Annotated[str, typer.Argument(help="The capture to set beside it, e.g. quic-vs-h2-tcp.",
                                                  show_default=False)],
            json: JsonOpt = None, chart: ChartOpt = None, theme: ThemeOpt = "light", keylog: KeylogEach = None,
            rsa_key: RsaOpt = None) -> None:
    """QUIC beside TCP: time to the first request byte and to the last response byte, in ms and round trips."""
    from traceviz.errors import InputError
    from traceviz.recipe import bundled_dir, load_module
    with guarded():
        check_theme(theme)
        check_chart(chart)
        keys = list(keylog or [])
        if len(keys) > 2:
            raise InputError(str(keys[2]), "give --keylog at most once per file (two files)")
        keys += [None] * (2 - len(keys))
        timelines = [load(f, k, rsa_key) for f, k in zip((first, second), keys)]
        finding = load_module(bundled_dir() / "quic.py").compare(timelines)
        if chart is not None:
            write_chart(finding.figure("comparison", theme), chart, theme)
        if rows_json(json):
            output.print_json(output.records(finding.rows, finding.json_fields))
            return
        from traceviz.cli.recipes import show_finding
        show_finding(finding, timelines[0])
