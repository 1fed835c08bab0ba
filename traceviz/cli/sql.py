"""``traceviz sql``: DuckDB over a dataset ``traceviz export`` wrote."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.text import Text

from traceviz import output
from traceviz.cli.common import JsonOpt, app, guarded


@app.command()
def sql(dataset: Annotated[str, typer.Argument(help="A folder traceviz export wrote.", show_default=False)],
        query: Annotated[Optional[str], typer.Argument(
            help="A DuckDB query; the tables are views: packets, connections, events, requests, tls, quic, streams "
                 "(each with part, its partition). Without one: the tables and their columns.",
            show_default=False)] = None,
        limit: Annotated[int, typer.Option(help="Show at most this many rows on a terminal (0: all).")] = 200,
        json: JsonOpt = False) -> None:
    """SQL over an exported dataset, e.g. [italic]traceviz sql out/ "select server, count(*) from connections group by 1"[/italic]."""
    from traceviz.assemble.dataset import open_dataset
    with guarded():
        ds = open_dataset(dataset)
        if query is None:
            rows = [{"table": name, "rows": ds.rows(name), "columns": ", ".join(ds.columns(name))}
                    for name in ("packets", "connections", "events", "requests", "tls", "quic", "streams")]
            if json:
                output.print_json(rows)
                return
            import pandas as pd
            output.stdout.print(output.table(pd.DataFrame(rows), ["table", "rows", "columns"], title=f"tables of {dataset}"))
            return
        df = ds.sql(query)
        if json:
            output.print_json(output.records(df))
            return
        shown = df if not limit else df.head(limit)
        output.stdout.print(output.table(_readable(shown), list(shown.columns), title=f"{len(df)} rows"))
        if limit and len(df) > limit:
            output.stderr.print(Text(f"({len(df) - limit} more: --limit 0 shows all, --json for scripts)"))


def _readable(df):
    """Floats as text with their digits (an epoch time needs more than six)."""
    df = df.copy()
    for c in df.columns:
        if df[c].dtype.kind == "f":
            df[c] = [None if v != v else (f"{v:.6f}" if abs(v) >= 1e6 else f"{v:.6g}") for v in df[c].tolist()]
    return df
