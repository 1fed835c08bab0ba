"""Latency statistics: the one percentile definition every traceviz number uses.

numpy's default ``linear`` method (Hyndman & Fan type 7): for ``n`` sorted
values the p-th percentile sits at rank ``(n - 1) * p / 100``, interpolated
linearly between its neighbours.  With few samples the high percentiles
approach the maximum; ``n`` is always shown beside them.

A percentile is reported only when the samples can hold it: the p-th needs
at least one sample above it in a hundred, ``n >= 100 / (100 - p)`` (p90:
10 samples, p95: 20, p99: 100).  Below that it is left blank (NaN): a "p99"
of 15 requests is the slowest one, and the maximum says so more honestly.

Recipes compute with this module; ``charts.percentiles`` draws its tables.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

QUANTILES = (50, 90, 95, 99)
MIN_RATIO_N = 5     # below this a p99/p50 ratio is two samples talking: not printed


def min_samples(q: float) -> int:
    """The fewest samples that can hold a ``q``-th percentile (the median: one)."""
    return 1 if q <= 50 else math.ceil(100.0 / (100.0 - q) - 1e-9)


def supported(n: int, q: float) -> bool:
    return n >= min_samples(q)


def percentiles_of(values: Iterable[float], qs: Sequence[float] = QUANTILES) -> dict[int, float]:
    """``{q: value}`` by numpy's ``linear`` method; NaN values are ignored; all NaN when empty."""
    v = np.asarray([x for x in values if x is not None and not pd.isna(x)], dtype=float)
    if not len(v):
        return {q: float("nan") for q in qs}
    return {q: float(x) for q, x in zip(qs, np.percentile(v, qs, method="linear"))}


def percentile_table(df: pd.DataFrame, by: str | None, metric: str, qs: Sequence[float] = QUANTILES,
                     scale: float = 1000.0) -> pd.DataFrame:
    """One row per group of ``df[by]`` (or one row, ``all``): n, p50..p99, max of ``df[metric] * scale``.

    A percentile the group's n cannot hold is NaN (``min_samples``).  Groups
    are ordered worst tail first: the highest percentile they hold, then n.
    """
    cols = ["group", "n"] + [f"p{q:g}" for q in qs] + ["max"]
    if metric not in df or not len(df):
        return pd.DataFrame(columns=cols)
    keys = df[by].fillna("(unknown)").astype(str) if by else pd.Series("all", index=df.index)
    rows = []
    for key, vals in (df[metric] * scale).groupby(keys, sort=False):
        vals = vals.dropna()
        if not len(vals):
            continue
        p = percentiles_of(vals, qs)
        n = int(len(vals))
        rows.append([key, n] + [p[q] if supported(n, q) else math.nan for q in qs] + [float(vals.max())])
    out = pd.DataFrame(rows, columns=cols)
    if len(out):
        tail = out[[f"p{q:g}" for q in qs]].ffill(axis=1).iloc[:, -1]
        out = out.assign(_tail=tail).sort_values(["_tail", "n"], ascending=[False, False], kind="stable")
        out = out.drop(columns="_tail").reset_index(drop=True)
    return out
