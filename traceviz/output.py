"""Rows to the terminal (rich tables) or to scripts (a JSON array).

Strings in captures are hostile input: an SNI or URL can carry terminal
escape sequences or rich markup.  Everything shown on a terminal goes
through ``printable`` and into ``rich.text.Text`` (never parsed as markup).

numpy and pandas are imported on first use, not with this module: the CLI
imports it to print ``--help`` and errors, which need neither.
"""

from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING, Any, Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    import pandas as pd

# numpy and pandas, and what plain() checks against, once _numeric() has imported them.  A numpy
# or pandas value can exist only once numpy is imported, so plain Python data (``captures --json``)
# never pays for them.
np = pd = None
_NA = _NAT = object()                 # pd.NA, pd.NaT (till then, nothing is)
_INTEGERS: tuple = ()                 # np.integer
_FLOATS: tuple = (float,)             # + np.floating
_BOOLS: tuple = (bool,)               # + np.bool_
_SEQUENCES: tuple = (list, tuple)     # + np.ndarray


def _numeric() -> None:
    global np, pd, _NA, _NAT, _INTEGERS, _FLOATS, _BOOLS, _SEQUENCES
    import numpy
    import pandas
    np, pd = numpy, pandas
    _NA, _NAT, _INTEGERS = pd.NA, pd.NaT, (np.integer,)
    _FLOATS, _BOOLS, _SEQUENCES = (np.floating, float), (np.bool_, bool), (list, tuple, np.ndarray)


# A pipe or a file gets wide rows rather than rich's 80-column default: one row per line greps well.
stdout = Console(soft_wrap=False, highlight=False, width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)   # one message, one line

# C0, DEL and C1 (0x9b is CSI and 0x9d OSC on terminals that read 8-bit controls).
_CONTROL = {i: f"\\x{i:02x}" for i in list(range(0x20)) + list(range(0x7f, 0xa0))}
_CONTROL.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


def printable(value: Any) -> str:
    """Text safe for a terminal: control characters shown as escapes."""
    text = value if isinstance(value, str) else str(value)
    return text.translate(_CONTROL) if any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 or ord(c) in (0x2028, 0x2029)
                                           for c in text) else text


def plain(value: Any) -> Any:
    """A JSON-ready Python value: NaN/NA → None, numpy scalars → Python."""
    if pd is None and "numpy" in sys.modules:
        _numeric()
    if value is None or value is _NA or value is _NAT:
        return None
    if isinstance(value, _INTEGERS):
        return int(value)
    if isinstance(value, _FLOATS):
        return None if math.isnan(value) else float(value)
    if isinstance(value, _BOOLS):
        return bool(value)
    if isinstance(value, _SEQUENCES):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return value


def records(df: pd.DataFrame, fields: list[str] | None = None) -> list[dict]:
    """Rows as flat dicts: the stable ``fields`` first, then any other column."""
    cols = list(df.columns)
    if fields:
        cols = [c for c in fields if c in df.columns] + [c for c in cols if c not in fields]
    cols = [c for c in cols if not c.startswith("_")]
    return [{c: plain(v) for c, v in zip(cols, row)} for row in df[cols].itertuples(index=False, name=None)]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False))
    sys.stdout.write("\n")


def fmt(value: Any, column: str = "", t0: float | None = None) -> str:
    value = plain(value)
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if column in _EPOCH_COLUMNS and t0 is not None:
            return f"{value - t0:.6f}"
        if column in _SECONDS_COLUMNS:
            return f"{value * 1000:.1f}"
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{printable(k)}: {fmt(v)}" for k, v in value.items()) or "–"
    if isinstance(value, list):
        if column in _SECONDS_COLUMNS:
            return ", ".join(f"{v * 1000:.0f}" for v in value if v is not None) or "–"
        return ", ".join(printable(v) for v in value) or "–"
    return printable(value)


# Absolute times are shown relative to the first frame, as Wireshark's default time column.
_EPOCH_COLUMNS = {"ts", "start", "end", "syn", "synack", "ack", "first_ts"}
# Durations are shown in milliseconds on a terminal (seconds in JSON).
_SECONDS_COLUMNS = {"handshake_rtt", "connect_time", "rtt_server", "rtt_client", "ttfb", "blocked", "dns", "connect",
                    "tls", "send", "wait", "receive", "syn_backoff", "duration"}


# Endpoints and times read badly when folded; let long free text (detail, url) fold instead.
_NO_WRAP = {"client", "server", "src", "dst", "close", "ts", "start", "end", "frame", "conn", "kind", "flags"}


def header(column: str) -> str:
    if column in _EPOCH_COLUMNS:
        return f"{column} (s)"
    if column in _SECONDS_COLUMNS:
        return f"{column} (ms)"
    return column


def table(df: pd.DataFrame, columns: Iterable[str], title: str | None = None, t0: float | None = None,
          limit: int | None = None) -> Table:
    if pd is None:
        _numeric()
    columns = [c for c in columns if c in df.columns]
    t = Table(title=Text(printable(title)) if title else None, header_style="bold", show_lines=False,
              title_justify="left")
    for c in columns:
        numeric = pd.api.types.is_numeric_dtype(df[c].dtype) and df[c].dtype != bool
        t.add_column(Text(header(c)), justify="right" if numeric else "left", overflow="fold",
                     no_wrap=c in _NO_WRAP)
    shown = df if limit is None else df.head(limit)
    for row in shown[columns].itertuples(index=False, name=None):
        t.add_row(*(Text(fmt(v, c, t0)) for c, v in zip(columns, row)))
    return t


def key_values(items: dict[str, Any], title: str | None = None) -> Table:
    t = Table(title=Text(printable(title)) if title else None, show_header=False, title_justify="left", box=None)
    t.add_column(style="bold")
    t.add_column()
    for k, v in items.items():
        t.add_row(Text(printable(k)), Text(fmt(v, k) if not isinstance(v, str) else printable(v)))
    return t


def epoch_text(ts: float | None) -> str:
    if ts is None or (isinstance(ts, float) and math.isnan(ts)):
        return "–"
    from traceviz.charts.text import utc_text
    return utc_text(ts)
