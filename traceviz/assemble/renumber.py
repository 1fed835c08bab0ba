"""The numbers a partition gives, made the whole capture's.

A partition is analysed as a capture of its own: its frames are numbered
1, 2, ... and its connections and requests 0, 1, ...  The whole capture's
numbers are what a user checks against Wireshark, so they are put back:

- frames (``global_frames``), as soon as a partition is analysed: the
  partition knows each frame's file and number there, so its number in the
  whole set of files;
- connections and requests (``numbering``), once every partition is done:
  Wireshark numbers TCP connections (``tcp.stream``) and UDP flows
  (``udp.stream``, after them in ``conn``) in order of their first frame,
  and requests are numbered by start.  Only the connections table's first
  frames and the requests' starts are needed, a small table whatever the
  capture's size; ``apply`` then maps each partition's tables.

Within a partition both orders already agree with the whole capture's (a
partition is a subset of the frames, in the same order), so the maps only
interleave partitions: a row's order within its partition never changes.

The columns that hold a frame, a connection or a request are found by name:
``frame`` and ``*_frame`` but ``file_frame`` (``*_frames``: lists of them); ``conn``,
``idle_sibling`` and ``connect_attempts`` (a list); ``request`` and
``parent``.  Texts written for people (``detail``, ``*_detail``,
``*_note`` and the warnings) say "frame N" and "conn N" and are rewritten too.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

CONN_COLUMNS = ("conn", "idle_sibling")
CONN_LISTS = ("connect_attempts",)
REQUEST_COLUMNS = ("request", "parent")
_FRAME_TEXT = ("frame", re.compile(r"\bframe (\d+)"))
_CONN_TEXT = ("conn", re.compile(r"\bconn (\d+)"))


def _frame_columns(df: pd.DataFrame) -> list[str]:
    # file_frame is the frame's number in its own file: already what it should be
    return [c for c in df.columns if (c == "frame" or c.endswith("_frame")) and c != "file_frame"]


def _text_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c == "detail" or c.endswith("_detail") or c.endswith("_note")]


def _map_values(series: pd.Series, lookup) -> pd.Series:
    """Each number in ``series`` through ``lookup`` (a callable on int arrays); NA stays NA,
    and the column keeps its dtype where it can."""
    if series.dtype == object:
        return series.map(lambda v: _map_one(v, lookup))
    if pd.api.types.is_float_dtype(series.dtype):
        mask = series.notna().to_numpy()
        out = series.to_numpy(dtype=np.float64, copy=True)
        out[mask] = lookup(out[mask].astype(np.int64))
        return pd.Series(out, index=series.index, name=series.name)
    if isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
        mask = series.notna().to_numpy()
        values = series.to_numpy(dtype=np.int64, na_value=0, copy=True)   # never write into the column
        values[mask] = lookup(values[mask])
        return pd.Series(pd.arrays.IntegerArray(values, ~mask), index=series.index, name=series.name)
    return pd.Series(lookup(series.to_numpy(dtype=np.int64)), index=series.index, name=series.name)


def _map_one(v, lookup):
    if isinstance(v, (bool, np.bool_)) or v is None or v is pd.NA:
        return v
    if isinstance(v, (int, np.integer)):
        return int(lookup(np.array([v], np.int64))[0])
    if isinstance(v, (float, np.floating)) and not np.isnan(v) and float(v).is_integer():
        return float(lookup(np.array([int(v)], np.int64))[0])
    return v


def _map_lists(series: pd.Series, lookup) -> pd.Series:
    def one(v):
        if not isinstance(v, (list, tuple, np.ndarray)):
            return v
        return [_map_one(x, lookup) for x in v]
    return series.map(one)


def _map_text(series: pd.Series, words: tuple, lookup) -> pd.Series:
    word, pattern = words

    def one(v):
        if not isinstance(v, str) or not pattern.search(v):
            return v
        return pattern.sub(lambda m: f"{word} {int(lookup(np.array([int(m.group(1))]))[0])}", v)
    return series.map(one)


def text(value: str, frames=None, conns=None) -> str:
    """A message with its "frame N" and "conn N" renumbered (``frames``/``conns``: lookups)."""
    for words, lookup in ((_FRAME_TEXT, frames), (_CONN_TEXT, conns)):
        if lookup is not None and isinstance(value, str):
            value = _map_text(pd.Series([value], dtype=object), words, lookup).iloc[0]
    return value


# -- frames ----------------------------------------------------------------------------------

def frame_lookup(numbers: np.ndarray):
    """A lookup from a partition's frame (1-based) to the whole capture's; numbers it does
    not have (0, or past its end) are kept."""
    numbers = np.asarray(numbers, np.int64)

    def lookup(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, np.int64)
        ok = (f >= 1) & (f <= len(numbers))
        return np.where(ok, numbers[np.clip(f - 1, 0, max(len(numbers) - 1, 0))] if len(numbers) else f, f)
    return lookup


def global_frames(tables: dict[str, pd.DataFrame], numbers: np.ndarray) -> dict[str, pd.DataFrame]:
    """The tables with every frame number made the whole capture's (``numbers[i]`` is the
    whole capture's number of the partition's frame i + 1)."""
    lookup = frame_lookup(numbers)
    out = {}
    for name, df in tables.items():
        df = df.copy(deep=False)
        for c in _frame_columns(df):
            df[c] = _map_values(df[c], lookup)
        for c in (c for c in df.columns if c.endswith("_frames")):
            df[c] = _map_lists(df[c], lookup)
        for c in _text_columns(df):
            df[c] = _map_text(df[c], _FRAME_TEXT, lookup)
        out[name] = df
    return out


# -- connections and requests ------------------------------------------------------------------

def keys(tables: dict[str, pd.DataFrame]) -> dict:
    """What ``numbering`` needs of a partition: each connection's number, transport and first
    frame (the whole capture's), each request's number, start and connection."""
    c, r = tables["connections"], tables["requests"]
    tcp = (c["transport"].astype(object) == "tcp").to_numpy(bool)
    conns = c["conn"].to_numpy(np.int64)
    request_conn = r["conn"].to_numpy(np.int64, na_value=-1)
    return {"conn": conns, "tcp": tcp, "first": c["first_frame"].to_numpy(np.int64),
            "request": r["request"].to_numpy(np.int64, na_value=-1),
            "start": r["start"].to_numpy(np.float64), "request_conn": request_conn,
            # HTTP/3 requests come first among a capture's requests that start at once
            "quic": np.isin(request_conn, conns[~tcp])}


def numbering(parts: dict[int, dict]) -> dict[int, dict]:
    """Partition -> {"conn": old -> new, "stream": old -> new (Wireshark's tcp.stream /
    udp.stream), "request": old -> new}, each an int64 array indexed by the old number."""
    rows = [(k, p) for k, p in sorted(parts.items())]
    part = np.concatenate([np.full(len(p["conn"]), k, np.int64) for k, p in rows] or [np.zeros(0, np.int64)])
    old = _cat(p["conn"] for _, p in rows)
    tcp = np.concatenate([p["tcp"] for _, p in rows] or [np.zeros(0, bool)])
    first = _cat(p["first"] for _, p in rows)
    # TCP first, then the rest (UDP flows, QUIC), each in order of the first frame.
    order = np.lexsort((old, part, first, ~tcp))
    new = np.empty(len(order), np.int64)
    new[order] = np.arange(len(order))
    n_tcp = int(tcp.sum())
    stream = np.where(tcp, new, new - n_tcp)
    out: dict[int, dict] = {}
    for k, p in rows:
        mine = part == k
        size = int(p["conn"].max()) + 1 if len(p["conn"]) else 0
        conn_map, stream_map = np.full(size, -1, np.int64), np.full(size, -1, np.int64)
        conn_map[old[mine]], stream_map[old[mine]] = new[mine], stream[mine]
        out[k] = {"conn": conn_map, "stream": stream_map}
    _number_requests(rows, out)
    return out


def _number_requests(rows, out) -> None:
    """Requests by start (missing starts last), as one capture's are; a tie goes to HTTP/3
    first (its rows come first in a capture), then by connection, then as numbered before."""
    part = np.concatenate([np.full(len(p["request"]), k, np.int64) for k, p in rows] or [np.zeros(0, np.int64)])
    old = _cat(p["request"] for _, p in rows)
    start = np.concatenate([p["start"] for _, p in rows] or [np.zeros(0)])
    quic = np.concatenate([p["quic"] for _, p in rows] or [np.zeros(0, bool)])
    conn = np.concatenate([_through(out[k]["conn"], p["request_conn"]) for k, p in rows] or [np.zeros(0, np.int64)])
    missing = np.isnan(start)
    order = np.lexsort((old, part, conn, ~quic, np.where(missing, 0.0, start), missing))
    new = np.empty(len(order), np.int64)
    new[order] = np.arange(len(order))
    for k, p in rows:
        mine = part == k
        size = int(old[mine].max()) + 1 if mine.any() else 0
        m = np.full(size, -1, np.int64)
        m[old[mine]] = new[mine]
        out[k]["request"] = m


def _through(m: np.ndarray, values: np.ndarray) -> np.ndarray:
    ok = (values >= 0) & (values < len(m))
    return np.where(ok, m[np.clip(values, 0, max(len(m) - 1, 0))] if len(m) else values, values)


def _cat(arrays) -> np.ndarray:
    arrays = [np.asarray(a, np.int64) for a in arrays]
    return np.concatenate(arrays) if arrays else np.zeros(0, np.int64)


def lookup_of(m: np.ndarray):
    return lambda values: _through(m, np.asarray(values, np.int64))


def apply(tables: dict[str, pd.DataFrame], maps: dict) -> dict[str, pd.DataFrame]:
    """One partition's tables with the whole capture's connection and request numbers."""
    conn, stream, request = lookup_of(maps["conn"]), lookup_of(maps["stream"]), lookup_of(maps["request"])
    out = {}
    for name, df in tables.items():
        df = df.copy(deep=False)
        if name in ("packets", "connections") and "stream" in df.columns:   # elsewhere: HTTP/2, QUIC stream ids
            # Wireshark's tcp.stream / udp.stream, from the row's connection (before it is renumbered).
            df["stream"] = _map_values(df["conn"].where(df["stream"].notna()), stream)
        for c in CONN_COLUMNS:
            if c in df.columns:
                df[c] = _map_values(df[c], conn)
        for c in CONN_LISTS:
            if c in df.columns:
                df[c] = _map_lists(df[c], conn)
        if name == "requests":
            for c in REQUEST_COLUMNS:
                if c in df.columns:
                    df[c] = _map_values(df[c], request)
        for c in _text_columns(df):
            df[c] = _map_text(df[c], _CONN_TEXT, conn)
        out[name] = df
    return out
