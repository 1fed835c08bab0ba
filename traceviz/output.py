"""Rows to the terminal or to scripts (a JSON array), the same way for every command.

The rules every table follows (docs/design.md, "Adding a recipe"):

- **Width.**  On a terminal a table fits the terminal: when it is too wide,
  free text (URLs, hosts, details) is shortened with an ellipsis (URLs in the
  middle, so the host and the file name both stay), then the least important
  columns are left out and named under the table.  A number, an endpoint or
  a status is never cut.  ``--wide`` shows every column at full width.  Off a
  terminal (a pipe, a file) nothing is shortened or wrapped: one row, one line.
- **Paging.**  A table shows its first ``PAGE`` rows, then says on stderr how
  many more there are (``--all`` shows them, ``--json`` has them all).  Only
  the rows shown are formatted, so a 100k-row table costs one page.  A
  recipe's answer shows its first ``ANSWER_PAGE`` sentences the same way
  (``--json=findings`` has them all).
- **Time.**  One origin per output: moments are seconds since the first
  packet (or the first request of a browser export), durations are
  milliseconds with ``units.DURATION_DECIMALS`` decimals.  ``--abs`` shows
  wall-clock UTC instead; the caption above the table names the origin.

Strings in captures are hostile input: an SNI or URL can carry terminal
escape sequences or rich markup.  Everything shown on a terminal goes
through ``printable`` and into ``rich.text.Text`` (never parsed as markup).

The table is laid out here rather than by ``rich.table.Table``: rich measures
every cell of every row, which took 20 s for 3,000 requests; columns of
preformatted strings padded once are what a 100k-row ``--all`` needs, and
choosing which columns to show needs their widths first anyway.

numpy and pandas are imported on first use, not with this module: the CLI
imports it to print ``--help`` and errors, which need neither.
"""

from __future__ import annotations

import json
import math
import re
import sys
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.text import Text

from traceviz import units

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


class _Console(Console):
    """rich's Console, except that a closed pipe is the caller's to handle: rich's own answer is
    exit 1, which scripts read as a --fail finding (``traceviz x F | head`` is a normal run)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


# rich takes the width from the terminal (or COLUMNS); off a terminal everything is printed with
# soft_wrap, so a pipe gets whole lines whatever width rich assumes.
stdout = _Console(highlight=False)
stderr = _Console(stderr=True, highlight=False, soft_wrap=True)   # one message, one line

PAGE = 50                 # rows a table shows unless --all
ANSWER_PAGE = 20          # sentences an answer shows unless --all (a recipe may tell each of 30k flows)
GAP = 2                   # spaces between columns
MISSING = "\u2013"        # –
ELLIPSIS = "\u2026"       # …

# C0, DEL and C1 (0x9b is CSI and 0x9d OSC on terminals that read 8-bit controls).
_CONTROL = {i: f"\\x{i:02x}" for i in list(range(0x20)) + list(range(0x7f, 0xa0))}
_CONTROL.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


_HAS_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]").search


def printable(value: Any) -> str:
    """Text safe for a terminal: control characters shown as escapes."""
    text = value if isinstance(value, str) else str(value)
    return text.translate(_CONTROL) if _HAS_CONTROL(text) else text


_AS_IS = frozenset({str, int, bool, type(None)})      # JSON-ready as they are


def plain(value: Any) -> Any:
    """A JSON-ready Python value: NaN/NA → None, numpy scalars → Python."""
    cls = value.__class__                # the common Python types first, before numpy's and pandas'
    if cls in _AS_IS:
        return value
    if cls is float:
        return None if value != value else value
    if pd is None and "numpy" in sys.modules:
        _numeric()
    if value is _NA or value is _NAT:
        return None
    if isinstance(value, _INTEGERS):
        return int(value)
    if isinstance(value, _FLOATS):
        return None if math.isnan(value) else float(value)
    if isinstance(value, _BOOLS):
        return bool(value)
    if isinstance(value, _SEQUENCES):
        return [v if v.__class__ in _AS_IS else plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return value


def records(df: pd.DataFrame, fields: list[str] | None = None) -> list[dict]:
    """Rows as flat dicts: the stable ``fields`` first, then any other column.

    Column by column (one ``tolist`` each) rather than cell by cell: a 40k-row table with
    sixty columns is 2.4M cells, and ``plain`` on each was most of ``--json``'s time."""
    cols = list(df.columns)
    if fields:
        cols = [c for c in fields if c in df.columns] + [c for c in cols if c not in fields]
    cols = [c for c in cols if not str(c).startswith("_")]
    if pd is None:
        _numeric()
    if not df.columns.is_unique:      # a recipe's own table may repeat a name: a, a.1, as pandas reads them
        return records(df.set_axis(_distinct(list(df.columns)), axis=1), fields)
    values = [_plain_column(df[c]) for c in cols]
    return [dict(zip(cols, row)) for row in zip(*values)] if cols else [{} for _ in range(len(df))]


def _distinct(names: list) -> list:
    seen: dict = {}
    out = []
    for c in names:
        n = seen.get(c, 0)
        seen[c] = n + 1
        out.append(c if n == 0 else f"{c}.{n}")
    return out


def _plain_column(s: pd.Series) -> list:
    """``[plain(v) for v in s]``, with the common dtypes converted by numpy in one call."""
    kind = s.dtype.kind
    if isinstance(s.dtype, np.dtype):
        if kind in "iub":
            return s.to_numpy().tolist()
        if kind == "f":
            return [None if v != v else v for v in s.to_numpy().tolist()]
    elif kind in "iubf" and hasattr(s.dtype, "numpy_dtype"):       # Int64, boolean, Float64
        base = s.to_numpy(dtype=s.dtype.numpy_dtype, na_value=0).tolist()
        na = s.isna().to_numpy()
        if kind != "f" and not na.any():
            return base
        return [None if m or v != v else v for v, m in zip(base, na.tolist())]
    return [v if v.__class__ in _AS_IS else plain(v) for v in s.tolist()]


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout.  orjson writes it ~20x faster than the ``json``
    module, whose indenting encoder is pure Python (5 s for a million-packet capture's
    connections); ``json`` takes what orjson refuses (an integer beyond 64 bits)."""
    import orjson
    try:
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE).decode()
    except TypeError:
        text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    sys.stdout.write(text)


# ---------------------------------------------------------------- time

epoch_text = units.utc


def plausible_time(ts: float) -> bool:
    """A capture time between 1970 and 2200: anything else is a damaged timestamp."""
    return 0.0 <= ts < 7.3e9


@dataclass(frozen=True)
class Clock:
    """One time origin for a whole output: moments as seconds since ``origin``, or, with
    ``absolute``, as UTC wall-clock time (the date in the caption, and in a cell only when
    it differs).  ``what`` names the origin in the caption (the first packet...)."""

    origin: float | None = None
    absolute: bool = False
    what: str = "the first packet"

    def header(self, column: str) -> str:
        k = units.kind(column)
        if k == "epoch":
            return f"{column} (UTC)" if self.absolute else f"{column} (s)"
        if k == "duration":
            return f"{column} (ms)"
        return column

    def moment(self, ts: float) -> str:
        if self.absolute:
            return epoch_text(ts, time_only=self._same_day(ts)).replace(" UTC", "")
        if self.origin is None:
            return epoch_text(ts)
        return units.relative(ts, self.origin)

    def caption(self) -> str:
        if self.origin is None:
            return ""
        if self.absolute:
            return f"times: UTC, on {epoch_text(self.origin)[:10]}"
        return f"times: seconds since {self.what}, {epoch_text(self.origin)}"

    def _same_day(self, ts: float) -> bool:
        if self.origin is None or not (plausible_time(ts) and plausible_time(self.origin)):
            return False
        return epoch_text(ts)[:10] == epoch_text(self.origin)[:10]


def time_origin(tl) -> Clock:
    """The Clock of a timeline: its first packet; a log without packets (HAR, trace, qlog), its first
    request or event, whichever came first."""
    if hasattr(tl, "first_ts"):     # an exported Dataset: one column read, never its whole packets table
        first = tl.first_ts()
        if first is not None:
            return Clock(first, what="the first packet")
    elif "packets" in getattr(tl, "skipped", ()):     # load(tables=...) left them out; the reader kept the time
        first = tl.source.detail.get("first_ts")
        if first is not None:
            return Clock(float(first), what="the first packet")
    elif len(tl.packets):
        ts = tl.packets["ts"]
        return Clock(float(ts.min()), what="the first packet")
    built = [(getattr(tl, name), column, what) for name, column, what in
             (("requests", "start", "the first request"), ("events", "ts", "the first event"))
             if name not in getattr(tl, "skipped", ())]
    firsts = [(float(table[column].min()), i, what) for i, (table, column, what) in enumerate(built)
              if len(table) and column in table and table[column].notna().any()]
    if not firsts:
        return Clock()
    origin, _, what = min(firsts)          # a tie is the request's
    return Clock(origin, what=what)


# ---------------------------------------------------------------- values

def fmt(value: Any, column: str = "", clock: Clock | None = None) -> str:
    """One value as a person reads it: units from ``units.kind(column)``, missing as –."""
    value = plain(value)
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    k = units.kind(column)
    if isinstance(value, float):
        if k == "epoch":
            return (clock or Clock()).moment(value)
        if k == "duration":
            return units.ms(value)
        if k == "ms":
            return f"{value:.{units.DURATION_DECIMALS}f}"
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{printable(k)}: {fmt(v)}" for k, v in value.items()) or MISSING
    if isinstance(value, list):
        if k == "duration":
            return ", ".join(units.ms(v) for v in value if v is not None) or MISSING
        return ", ".join(fmt(v) for v in value) or MISSING
    return printable(value)


def column_texts(series: pd.Series, column: str, clock: Clock | None = None) -> list[str]:
    """A column's cells as text, with a fast path for the float columns most tables are made of."""
    if pd is None:
        _numeric()
    k = units.kind(column)
    if series.dtype.kind == "f" and k is not None:
        vals = series.to_numpy(dtype=float)
        if k == "epoch":
            clock = clock or Clock()
            if not clock.absolute and clock.origin is not None:
                o, d = clock.origin, units.TIME_DECIMALS
                return [MISSING if v != v else f"{v - o:.{d}f}" for v in vals]
            return [MISSING if v != v else clock.moment(float(v)) for v in vals]
        scale = 1000.0 if k == "duration" else 1.0
        d = units.DURATION_DECIMALS
        return [MISSING if v != v else f"{v * scale:.{d}f}" for v in vals]
    if series.dtype.kind in "iu":
        return [str(v) for v in series.tolist()]
    values = series.tolist()
    if series.dtype == object and all(type(v) is str for v in values):
        return [printable(v) for v in values]
    return [fmt(v, column, clock) for v in values]


# ---------------------------------------------------------------- tables

# How a column gives way on a narrow terminal.  Priority 1 is never left out; higher numbers go
# first (the rightmost of equals first).  Unlisted columns are priority 2.
PRIORITY = {
    "conn": 1, "client": 1, "server": 1, "close": 1, "url": 1, "status": 1, "frame": 1, "kind": 1,
    "name": 1, "group": 1, "by": 1, "n": 1, "sni": 2, "detail": 1, "method": 1, "start": 1, "ts": 1,
    "version": 1, "title": 2,
    "request": 3, "stream": 3, "protocol": 3, "transport": 3, "first_frame": 3, "end": 3,
    "req_bytes": 4, "resp_bytes": 3, "bytes_c2s": 3, "bytes_s2c": 3, "packets": 2, "app": 2, "dir": 2,
    "size": 3, "layer": 2, "path": 4,
}
# Free text that may be shortened: URLs and names in the middle (host and file name both stay),
# prose at the end.  Everything else (numbers, endpoints, statuses, kinds) is never cut.
SHORTEN_MIDDLE = {"url", "host", "sni", "path", "group"}
SHORTEN_END = {"detail", "title", "question", "concepts", "look_at", "cipher", "alpn_offered",
               "versions_offered", "ja3", "ja4", "ja3s", "ja4s", "alert", "status_text", "error", "files",
               "certificate_subject", "content_type"}
COMFORT = 28              # shortened text is cut to this before any column is left out
FLOOR = 10                # and to this, when nothing else can go


@dataclass
class Layout:
    """What a table became: its lines (the header first; plain text, already made printable),
    and the columns left out to fit."""

    lines: list[str]
    hidden: list[str]
    width: int

    def text(self) -> Text:
        """One rich Text for the whole table (one Text, not one per row: rich strips control codes from
        each Text it is given, which cost more than laying the table out)."""
        text = Text("\n".join(self.lines))
        text.stylize("bold", 0, len(self.lines[0]))
        return text


def _width(text: str) -> int:
    return len(text) if text.isascii() or text == MISSING else cell_len(text)


def shorten(text: str, width: int, where: str = "end") -> str:
    """``text`` in at most ``width`` cells, an ellipsis marking the cut (``where``: end or middle)."""
    if _width(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    if where == "url":
        # keep the scheme and host, and as much of the path's end as fits: https://host/…/file.js
        scheme, sep, rest = text.partition("://")
        host, slash, _ = rest.partition("/")
        front = scheme + sep + host + slash if sep and slash else ""
        if front and _width(front) + 8 <= width:
            return front + ELLIPSIS + _tail_cells(text, width - _width(front) - 1)
        where = "middle"
    if where == "middle":
        head = (width - 1) * 2 // 5          # the tail (file name, port) says more than the head
        tail = width - 1 - head
        if text.isascii():
            return text[:head] + ELLIPSIS + text[len(text) - tail:]
        return set_cell_size(text, head) + ELLIPSIS + _tail_cells(text, tail)
    return (text[:width - 1] if text.isascii() else set_cell_size(text, width - 1)) + ELLIPSIS


def _tail_cells(text: str, width: int) -> str:
    if text.isascii():
        return text[len(text) - width:] if width > 0 else ""
    out = ""
    for ch in reversed(text):
        if cell_len(ch + out) > width:
            break
        out = ch + out
    return out


def _columns(columns: Iterable[str | tuple[str, int]], df) -> list[tuple[str, int]]:
    out = []
    for c in columns:
        name, prio = (c, PRIORITY.get(c, 2)) if isinstance(c, str) else c
        if name in df.columns:
            out.append((name, prio))
    return out


def layout(df: pd.DataFrame, columns: Iterable[str | tuple[str, int]], clock: Clock | None = None,
           width: int | None = None) -> Layout:
    """The table of ``df``'s ``columns`` (names, or (name, priority)) in ``width`` cells (None: any).

    Every row of ``df`` is laid out: the caller pages.
    """
    if pd is None:
        _numeric()
    cols = _columns(columns, df)
    heads = {c: (clock or Clock()).header(c) for c, _ in cols}
    cells = {c: column_texts(df[c], c, clock) for c, _ in cols}
    right = {c: df[c].dtype.kind in "iuf" for c, _ in cols}
    natural = {c: max([_width(heads[c])] + [_width(t) for t in cells[c]]) for c, _ in cols}
    shrink = {c: ("url" if c == "url" else "middle" if c in SHORTEN_MIDDLE else "end") for c, _ in cols
              if (c in SHORTEN_MIDDLE or c in SHORTEN_END) and not right[c]}
    shown = [c for c, _ in cols]
    prio = dict(cols)
    widths = dict(natural)
    hidden: list[str] = []
    if width is not None:
        while True:
            widths = _fit(shown, natural, shrink, width, COMFORT)
            if _total(shown, widths) <= width:
                break
            droppable = [c for c in shown if prio[c] > 1]
            if not droppable:
                widths = _fit(shown, natural, shrink, width, FLOOR)
                break
            worst = max(prio[c] for c in droppable)
            gone = [c for c in droppable if prio[c] == worst][-1]
            shown.remove(gone)
            hidden.append(gone)
    lines = [_row([heads[c] for c in shown], shown, widths, right, shrink)]
    for i in range(len(df)):
        lines.append(_row([cells[c][i] for c in shown], shown, widths, right, shrink))
    return Layout(lines, [c for c, _ in cols if c in hidden], _total(shown, widths))


def _total(shown: list[str], widths: dict[str, int]) -> int:
    return sum(widths[c] for c in shown) + GAP * max(len(shown) - 1, 0)


def _fit(shown: list[str], natural: dict, shrink: dict, width: int, floor: int) -> dict[str, int]:
    """Natural widths, the shortenable columns cut (widest first, none below ``floor``) to fit ``width``."""
    widths = {c: natural[c] for c in shown}
    over = _total(shown, widths) - width
    cut = [c for c in shown if c in shrink and natural[c] > floor]
    if over <= 0 or not cut:
        return widths
    # the level every shortenable column is cut to: the highest that makes the table fit
    lo, hi = floor, max(natural[c] for c in cut)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        saved = sum(natural[c] - mid for c in cut if natural[c] > mid)
        lo, hi = (mid, hi) if saved >= over else (lo, mid - 1)
    for c in cut:
        widths[c] = min(natural[c], lo)
    return widths


def _row(texts: list[str], shown: list[str], widths: dict, right: dict, shrink: dict) -> str:
    parts = []
    for text, c in zip(texts, shown):
        w = widths[c]
        n = _width(text)
        if n > w:
            text = shorten(text, w, shrink.get(c, "end"))
            n = _width(text)
        parts.append(" " * (w - n) + text if right[c] else text + " " * (w - n))
    return (" " * GAP).join(parts).rstrip()


def table_width(console: Console, wide: bool = False) -> int | None:
    """The width a table must fit: the terminal's, or none off a terminal or with --wide."""
    return None if wide or not console.is_terminal else console.width


def print_table(df: pd.DataFrame, columns: Iterable[str | tuple[str, int]], title: str | None = None,
                clock: Clock | None = None, wide: bool = False, all_rows: bool = False,
                console: Console | None = None, notes: Console | None = None) -> None:
    """A page of rows (all with ``all_rows``) fitted to the terminal, then what was left out."""
    console = console or stdout
    notes = notes or stderr
    shown = df if all_rows else df.head(PAGE)
    width = table_width(console, wide)
    if title:
        console.print(Text(printable(title), style="bold"), soft_wrap=True)
    caption = clock.caption() if clock is not None and any(units.kind(c) == "epoch" for c, _ in _columns(columns, df)) else ""
    if caption and len(shown):
        paragraph(caption, console, style="dim")
    if not len(shown):
        console.print(Text("(no rows)", style="dim"), soft_wrap=True)
        return
    lay = layout(shown, columns, clock, width)
    if console.record:
        console.print(lay.text(), soft_wrap=True, crop=False)
    else:   # the rows as they are: rich would split and measure 100k finished lines once more
        console.print(Text(lay.lines[0], style="bold"), soft_wrap=True, crop=False)
        console.file.write("\n".join(lay.lines[1:]) + "\n")
        console.file.flush()
    if lay.hidden:
        paragraph(f"not shown at {width} columns: {', '.join(lay.hidden)} (--wide shows them)", console, style="dim")
    if len(df) > len(shown):
        notes.print(Text(f"{len(df) - len(shown)} more rows (use --all or --json)"))


# ---------------------------------------------------------------- prose

def paragraph(text: str, console: Console | None = None, bullet: str = "", style: str = "") -> None:
    """A line of prose: wrapped at word boundaries with a hanging indent on a terminal,
    one line off it (so grep finds a whole sentence)."""
    console = console or stdout
    text = printable(text)
    if console.is_terminal and console.width > len(bullet) + 20 and len(text) + len(bullet) > console.width:
        text = textwrap.fill(text, width=console.width, initial_indent=bullet,
                             subsequent_indent=" " * len(bullet), break_long_words=False,
                             break_on_hyphens=False)
    else:
        text = bullet + text
    console.print(Text(text, style=style), soft_wrap=True)


def key_values(items: dict[str, Any], console: Console | None = None, clock: Clock | None = None,
               title: str | None = None) -> None:
    """``key  value`` lines, values in the units their key names (``*_ms``: fixed decimals)."""
    console = console or stdout
    if title:
        console.print(Text(printable(title), style="bold"), soft_wrap=True)
    if not items:
        return
    keys = [printable(k) for k in items]
    pad = max(_width(k) for k in keys) + GAP
    for key, (k, v) in zip(keys, items.items()):
        text = printable(v) if isinstance(v, str) else fmt(v, k, clock)
        line = Text()
        line.append(key.ljust(pad), style="bold")
        if console.is_terminal and console.width > pad + 20:
            wrapped = textwrap.wrap(text, width=console.width - pad, break_long_words=True,
                                    break_on_hyphens=False) or [""]
            text = ("\n" + " " * pad).join(wrapped)
        line.append(text)
        console.print(line, soft_wrap=True)
