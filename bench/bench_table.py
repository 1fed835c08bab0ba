"""How long a table of many rows takes to reach the terminal: a page, and all of it.

    python bench/bench_table.py [--rows 100000]

A requests-like table (ints, epoch times, durations, URLs) goes through
``output.print_table`` into a terminal of 80 columns that writes nowhere:
once as the default page, once with ``--all``.  The page must cost the same
whatever the table's length; ``--all`` grows with it.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rich.console import Console  # noqa: E402

from traceviz import output  # noqa: E402


def table(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    start = 1.7e9 + np.sort(rng.random(n) * 300)
    return pd.DataFrame({
        "request": np.arange(n), "conn": rng.integers(0, n // 20 + 1, n), "method": "GET",
        "url": [f"https://cdn{i % 7}.example.com/assets/{i % 97}/bundle-{i}.js?v={i % 13}" for i in range(n)],
        "status": rng.choice([200, 200, 200, 304, 404, 502], n), "start": start,
        "ttfb": rng.random(n) * 0.3, "end": start + rng.random(n), "resp_bytes": rng.integers(0, 10**6, n)})


def timed(df: pd.DataFrame, all_rows: bool) -> float:
    sink = Console(file=io.StringIO(), width=80, force_terminal=True)
    t = time.perf_counter()
    output.print_table(df, ["request", "conn", "method", "url", "status", "start", "ttfb", "end", "resp_bytes"],
                       clock=output.Clock(float(df["start"].min())), all_rows=all_rows, console=sink, notes=sink)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    n = ap.parse_args().rows
    df = table(n)
    for label, all_rows in (("a page", False), ("--all", True)):
        best = min(timed(df, all_rows) for _ in range(3))
        print(f"{n:,} rows, {label:<6}: {best:.3f} s")


if __name__ == "__main__":
    main()
