"""``traceviz sql``: DuckDB over a dataset ``traceviz export`` wrote."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from traceviz import output
from traceviz.cli.common import AllOpt, JsonOpt, WideOpt, app, guarded, rows_json


@app.command()
def sql(dataset: Annotated[str, typer.Argument(metavar="DIR", help="A folder traceviz export wrote.", show_default=False)],
        query: Annotated[Optional[str], typer.Argument(
            metavar="QUERY", help="A DuckDB query; the tables are views: packets, connections, events, requests, tls, quic, streams "
                 "(each with part, its partition). Without one: the tables and their columns.",
            show_default=False)] = None,
        json: JsonOpt = None, all_rows: AllOpt = False, wide: WideOpt = False) -> None:
    """SQL over an exported dataset, e.g. [italic]traceviz sql out/ "select server, count(*) from connections group by 1"[/italic]."""
    from traceviz.assemble.dataset import open_dataset
    with guarded():
        mode = rows_json(json)
        ds = open_dataset(dataset)
        if query is None:
            rows = [{"table": name, "rows": ds.rows(name), "columns": ", ".join(ds.columns(name))}
                    for name in ("packets", "connections", "events", "requests", "tls", "quic", "streams")]
            if mode:
                output.print_json(rows)
                return
            import pandas as pd
            output.print_table(pd.DataFrame(rows), ["table", "rows", "columns"], title=f"tables of {dataset}",
                               wide=wide, all_rows=True)
            return
        df = ds.sql(query)
        if mode:
            output.print_json(output.records(df))
            return
        # Times as UTC: a query's rows need not hold the dataset's first packet to count from.
        output.print_table(df, [(c, 1) for c in df.columns], title=f"{len(df)} rows", clock=output.Clock(absolute=True),
                           wide=wide, all_rows=all_rows)
