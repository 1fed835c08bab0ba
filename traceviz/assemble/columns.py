"""Rows gathered as columns: how the payload tier's rows are made into tables.

On a million packets of ordinary traffic the payload tier makes some 230k
events rows.  As dicts of ten keys, the waiting parent spent 0.25 s
unpickling them and 0.4 s making a table of them, one key at a time; as one
list per column, about half of each.  The tls rows (fifty keys) travel from
the workers that way; the events rows, the most numerous, are made a table
where they are made (``events_table``), so that they travel as arrays.

The table is the one ``pd.DataFrame(rows)`` makes of the same rows: columns
in the order their names first appear, NaN where a row has no value for one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from traceviz.model import EVENT_COLUMNS, conform, empty_table

MISSING = float("nan")      # what pandas puts where a row of dicts lacks a key


class Columns:
    """Rows kept as ``{name: [values]}``, every list ``n`` long."""

    __slots__ = ("cols", "n")

    def __init__(self, rows: list[dict] | None = None) -> None:
        self.cols: dict[str, list] = {}
        self.n = 0
        if rows:
            self.add_rows(rows)

    def __len__(self) -> int:
        return self.n

    def add_rows(self, rows: list[dict]) -> None:
        """Rows as dicts, in order."""
        cols = self.cols
        keys, padded = None, ()
        for row in rows:
            n = self.n
            if row.keys() != keys:      # another set of names than the last row's (rows come in runs)
                for k in row:
                    if k not in cols:
                        cols[k] = [MISSING] * n
                # The columns such a row leaves out, found once per run rather than per row:
                # 129k QUIC packet rows among TLS and HTTP/3 ones spent 0.7 s looking.
                keys, padded = row.keys(), [col for k, col in cols.items() if k not in row]
            for k, v in row.items():
                cols[k].append(v)
            for col in padded:
                col.append(MISSING)
            self.n = n + 1

    def add_block(self, block: dict[str, list], m: int) -> None:
        """``m`` rows given as columns (each list ``m`` long), in order."""
        cols, n = self.cols, self.n
        for k, values in block.items():
            col = cols.get(k)
            if col is None:
                cols[k] = col = [MISSING] * n
            col += values
        self.n = n + m
        if len(block) < len(cols):
            for col in cols.values():
                if len(col) < n + m:
                    col += [MISSING] * (n + m - len(col))

    def extend(self, other: Columns) -> None:
        self.add_block(other.cols, other.n)

    def frame(self, schema: dict[str, str] | None = None) -> pd.DataFrame:
        """The table.  With ``schema`` (a table's dtypes, ``model.SCHEMAS``), its text columns
        are taken as they are, not inferred: pandas would make each a string array that
        ``model.conform`` turns back into objects (on 1M packets the events' text columns
        cost 0.2 s that way).  The values are the ones inference gives: a missing value in a
        column of text is NaN, elsewhere as it was."""
        if not schema:
            return pd.DataFrame(self.cols)
        return pd.DataFrame({k: _text(v) if schema.get(k) == "object" else v for k, v in self.cols.items()})


def _text(values: list) -> pd.Series:
    out = np.fromiter(values, dtype=object, count=len(values))     # lists stay lists: no broadcasting
    if pd.api.types.infer_dtype(out, skipna=True) == "string":
        out[pd.isna(out)] = np.nan
    return pd.Series(out, dtype=object, copy=False)


def events_table(rows: Columns) -> pd.DataFrame:
    """The events table of ``rows``: a part of the Timeline's, which ``pd.concat`` or
    ``capture.finish`` joins to the others.  Made in the process that made the rows, so that
    they are sent as arrays (on 1M packets of real traffic, ~360k rows were ~100 MB more in the
    parent as lists of Python numbers than as columns).  The parts make the table one frame of
    every row makes because every decoder's rows carry the schema's names (a part lacking one
    would hold NA there, one frame NaN) and a name only some layers have keeps one type."""
    return conform("events", rows.frame(EVENT_COLUMNS)) if len(rows) else empty_table("events")
