"""Every resource limit traceviz applies, in one place: named, documented, adjustable.

Hostile or huge input must cost bounded memory and time, or be refused in
one line that names the limit and how to raise it.  Each limit has a
default and an environment variable that overrides it (a positive integer;
anything else is ignored, and the default holds):

=====================  ==========================  =========  =============================================
name                   environment variable        default    what it bounds
=====================  ==========================  =========  =============================================
MAX_INFLATE            TRACEVIZ_MAX_INFLATE        4 GiB      bytes a gzipped capture may inflate to
MAX_JSON_BYTES         TRACEVIZ_MAX_JSON_BYTES     2 GiB      bytes of JSON text (after gunzip) in a browser export
MAX_JSON_DEPTH         TRACEVIZ_MAX_JSON_DEPTH     512        nesting of arrays and objects in a browser export
MAX_BROWSER_RECORDS    TRACEVIZ_MAX_RECORDS        5000000    HAR entries, trace events or protocol-log messages
MAX_STREAM_SEGMENTS    TRACEVIZ_MAX_SEGMENTS       2000000    TCP segments carrying data, per connection, reassembled
MAX_STREAM_BYTES       TRACEVIZ_MAX_STREAM_BYTES   1 GiB      payload bytes per connection reassembled and decoded
MAX_SESSION_EVENTS     TRACEVIZ_MAX_SESSION_EVENTS 100000     events one TLS session lists (the rest are counted)
=====================  ==========================  =========  =============================================

Over a file-wide limit the file is refused (``InputError``, exit 2); over a
per-connection limit that connection's payload is left undecoded with one
warning naming the limit, and the rest of the capture is analysed.

The base layer: imports only ``errors``, and anyone may import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    """One limit.  Fields: name, env (the variable that overrides it), default, unit, what (it bounds)."""

    name: str
    env: str
    default: int
    unit: str
    what: str


GiB = 1 << 30

LIMITS = {lim.name: lim for lim in (
    Limit("MAX_INFLATE", "TRACEVIZ_MAX_INFLATE", 4 * GiB, "bytes", "bytes a gzipped capture may inflate to"),
    Limit("MAX_JSON_BYTES", "TRACEVIZ_MAX_JSON_BYTES", 2 * GiB, "bytes", "bytes of JSON text in a browser export"),
    Limit("MAX_JSON_DEPTH", "TRACEVIZ_MAX_JSON_DEPTH", 512, "levels", "nesting of JSON arrays and objects"),
    Limit("MAX_BROWSER_RECORDS", "TRACEVIZ_MAX_RECORDS", 5_000_000, "records",
          "HAR entries, trace events or protocol-log messages in one file"),
    Limit("MAX_STREAM_SEGMENTS", "TRACEVIZ_MAX_SEGMENTS", 2_000_000, "segments",
          "TCP segments carrying data in one connection, reassembled"),
    Limit("MAX_STREAM_BYTES", "TRACEVIZ_MAX_STREAM_BYTES", 1 * GiB, "bytes",
          "payload bytes of one connection reassembled and decoded"),
    Limit("MAX_SESSION_EVENTS", "TRACEVIZ_MAX_SESSION_EVENTS", 100_000, "events",
          "events one TLS session lists"),
)}


def get(name: str) -> int:
    """The limit's value: its environment variable when that is a positive integer, else the default."""
    lim = LIMITS[name]
    raw = os.environ.get(lim.env)
    if raw:
        try:
            value = int(raw.strip().replace("_", ""))
        except ValueError:
            return lim.default
        if value > 0:
            return value
    return lim.default


def refusal(name: str, what: str) -> str:
    """``"<what> <value> <unit>; refusing (set <ENV> to raise the limit)"``: one line for the user."""
    lim = LIMITS[name]
    return f"{what} {get(name)} {lim.unit}; refusing (set {lim.env} to raise the limit)"


def over(name: str, what: str) -> str:
    """The warning form, for a limit that skips part of a file: names the limit and its variable."""
    lim = LIMITS[name]
    return f"{what} {get(name)}; its payload is not decoded (set {lim.env} to raise the limit)"


def check_records(path: str, count: int, what: str) -> None:
    """Refuse a browser export holding more than MAX_BROWSER_RECORDS records (``InputError``)."""
    if count > get("MAX_BROWSER_RECORDS"):
        from traceviz.errors import InputError
        raise InputError(path, refusal("MAX_BROWSER_RECORDS", f"{count} {what}, more than"))


def streams_over(conn, length, captured, wanted) -> dict[int, str]:
    """The connections among ``wanted`` whose reassembly would pass MAX_STREAM_SEGMENTS or
    MAX_STREAM_BYTES, each with the warning to give; from the per-segment columns
    (connection, TCP payload length, bytes captured) in one numpy pass."""
    import numpy as np

    conn = np.asarray(conn)
    if not len(conn) or not wanted:
        return {}
    most_segments, most_bytes = get("MAX_STREAM_SEGMENTS"), get("MAX_STREAM_BYTES")
    if len(conn) <= most_segments and int(np.asarray(captured).sum()) <= most_bytes:
        return {}                      # the whole capture is within both: no connection can pass them
    keep = (np.asarray(length) > 0) & np.isin(conn, np.fromiter(wanted, np.int64, len(wanted)))
    if not keep.any():
        return {}
    segments = np.bincount(conn[keep])
    held = np.bincount(conn[keep], weights=np.asarray(captured)[keep].astype(np.float64))
    out = {}
    for c in np.flatnonzero(segments > most_segments).tolist():
        out[c] = over("MAX_STREAM_SEGMENTS", f"{int(segments[c])} segments carry data, more than")
    for c in np.flatnonzero(held > most_bytes).tolist():
        out.setdefault(c, over("MAX_STREAM_BYTES", f"{int(held[c])} payload bytes, more than"))
    return out


# --- JSON nesting ------------------------------------------------------------------

_CHUNK = 1 << 22
_KEEP = b'"[]{}'
_DROP = bytes(c for c in range(256) if c not in _KEEP)


def json_depth(data: bytes, stop: int | None = None) -> int:
    """How deep arrays and objects nest in JSON ``data`` (UTF-8; brackets in strings do not count).

    Stops once ``stop`` is passed.  Hand-written because no parser of the
    standard library reports depth.  Each 4 MiB chunk is boiled down with
    C-speed bytes methods (escaped backslashes and quotes removed, then
    every byte but quotes and brackets) and numpy counts the depth over
    the brackets outside strings: a part of the parse's cost, in bounded memory.
    """
    import numpy as np

    step = np.zeros(256, np.int8)
    step[[ord("["), ord("{")]], step[[ord("]"), ord("}")]] = 1, -1
    view = memoryview(data).cast("B")
    n = len(view)
    depth = deepest = 0
    in_string = 0
    start = 0
    while start < n:
        end = min(start + _CHUNK, n)
        while end < n and view[end - 1] == 0x5C:      # never split a run of backslashes
            end += 1
        chunk = bytes(view[start:end])
        start = end
        if b"\\" in chunk:
            # Pairs of backslashes first (left to right, as a parser reads them), then escaped quotes.
            chunk = chunk.replace(b"\\\\", b"").replace(b'\\"', b"")
        # Two quotes side by side, once the rest is gone, are an empty string or the end of one
        # string and the start of the next with nothing between: either way no bracket changes
        # sides when they go, and most of a big export's quotes do.
        chunk = np.frombuffer(chunk.translate(None, _DROP).replace(b'""', b""), np.uint8)
        if not len(chunk):
            continue
        quotes = np.cumsum(chunk == 0x22, dtype=np.int32)
        outside = ((quotes + in_string) & 1) == 0
        in_string = int((quotes[-1] + in_string) & 1)
        levels = np.cumsum(np.where(outside, step[chunk], 0).astype(np.int8), dtype=np.int32)
        deepest = max(deepest, depth + int(levels.max()))
        depth += int(levels[-1])
        if stop is not None and deepest > stop:
            break
    return deepest


def json_too_deep(data: bytes) -> str | None:
    """The refusal when JSON ``data`` nests deeper than MAX_JSON_DEPTH, else None.

    Cheap first: a text with fewer opening brackets than the limit cannot be too deep.
    """
    limit = get("MAX_JSON_DEPTH")
    if data.count(b"[") + data.count(b"{") <= limit:
        return None
    if json_depth(data, stop=limit) <= limit:
        return None
    return refusal("MAX_JSON_DEPTH", "JSON nested deeper than")
