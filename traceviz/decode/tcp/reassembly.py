"""Per-direction TCP byte streams, for many connections at once.

Input: the TCP segments of the capture as columns (connection, direction,
flags, relative seq, length, frame, time, and where the payload lies in the
capture's bytes) and the capture's bytes.  Output, for each connection and
direction, the stream's *pieces*: contiguous byte ranges that arrived in one
frame, placed at their stream offsets -- retransmissions and overlaps
resolved (the first copy to arrive wins, as a receiver keeps it),
out-of-order segments put in place, and the holes left by lost or uncaptured
bytes recorded as gaps, never filled in.

A piece is a reference into the capture (``at``: where its first byte lies),
not a copy: the payload tier reads the few bytes a protocol needs (a TLS
handshake, an HTTP head) and steps over the rest by arithmetic.  Every piece
remembers the frame and time it arrived, and the frame from which it was
readable (``ready_frame``: the frame that filled the last hole before it),
which is where Wireshark shows a reassembled PDU.

The work is linear in segments whatever their order: one sort of all
segments by (connection, direction, offset, frame), numpy for the common
case (no two distinct segments overlap: exact retransmissions are dropped
as duplicates), and a sweep with a heap -- O(n log n) -- for a direction
whose segments partly overlap one another.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

SYN, RST, FIN = 0x02, 0x04, 0x01
_FLAG_BITS = {"FIN": FIN, "SYN": SYN, "RST": RST}
C2S, S2C = "c2s", "s2c"

# Relative sequence numbers are 32-bit; a segment claiming more is nonsense.
_MAX_SEGMENT = 1 << 20


@dataclass
class Piece:
    """Contiguous bytes that arrived in one frame."""

    offset: int            # stream offset of the first byte (0 = first byte after the SYN)
    data: bytes
    frame: int             # frame the bytes arrived in
    ts: float
    ready_frame: int = 0   # frame from which the bytes are readable in order
    ready_ts: float = 0.0

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass
class ByteStream:
    """One direction of a TCP connection, reassembled.

    The pieces are columns (plain lists, sorted by offset, non-overlapping):
    ``offset``, ``size``, ``at`` (capture offset of the first byte),
    ``frame``, ``ts``, ``ready_frame``, ``ready_ts``.  ``pieces`` and
    ``data()`` copy the bytes out, for callers that want them all.
    """

    dir: str
    buf: object = field(default=b"", repr=False)
    offset: list = field(default_factory=list)
    size: list = field(default_factory=list)
    at: list = field(default_factory=list)
    frame: list = field(default_factory=list)
    ts: list = field(default_factory=list)
    ready_frame: list = field(default_factory=list)
    ready_ts: list = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) of missing bytes
    retransmitted: int = 0     # bytes that arrived again (dropped: the first copy wins)
    fin: bool = False
    rst_frame: int | None = None
    rst_ts: float | None = None
    _copies: list = field(default_factory=list, repr=False)    # (offset, size, at, frame) of dropped copies

    @property
    def length(self) -> int:
        return self.offset[-1] + self.size[-1] if self.offset else 0

    def bytes_at(self, i: int, start: int = 0) -> bytes:
        """Piece ``i``'s bytes from ``start`` bytes into it."""
        a = self.at[i]
        return bytes(self.buf[a + start:a + self.size[i]])

    @property
    def pieces(self) -> list[Piece]:
        return [Piece(o, self.bytes_at(i), f, t, rf, rt) for i, (o, f, t, rf, rt) in
                enumerate(zip(self.offset, self.frame, self.ts, self.ready_frame, self.ready_ts))]

    def data(self) -> bytes:
        """All captured bytes in order (gaps left out: use ``runs`` to see them)."""
        return b"".join(self.bytes_at(i) for i in range(len(self.offset)))

    def runs(self) -> Iterator[tuple[int, bytes]]:
        """(offset, bytes) of each gap-free run."""
        start, chunks, end = None, [], None
        for i, o in enumerate(self.offset):
            if end is not None and o != end:
                yield start, b"".join(chunks)
                start, chunks = None, []
            if start is None:
                start = o
            chunks.append(self.bytes_at(i))
            end = o + self.size[i]
        if start is not None:
            yield start, b"".join(chunks)

    def frame_at(self, offset: int) -> int | None:
        """The frame from which the byte at ``offset`` was readable."""
        i = bisect.bisect_right(self.offset, offset) - 1
        if i < 0 or offset >= self.offset[i] + self.size[i]:
            return None
        return self.ready_frame[i]

    @property
    def conflicting(self) -> int:
        """Of the retransmitted bytes, those that differed from the copy kept
        (counted per overlap with a kept piece, as a receiver would see them)."""
        n = 0
        for off, size, at, frame in self._copies:
            i = max(bisect.bisect_right(self.offset, off) - 1, 0)
            while i < len(self.offset) and self.offset[i] < off + size:
                lo, hi = max(off, self.offset[i]), min(off + size, self.offset[i] + self.size[i])
                if hi > lo and self.frame[i] != frame:
                    mine = self.buf[at + lo - off:at + hi - off]
                    kept = self.buf[self.at[i] + lo - self.offset[i]:self.at[i] + hi - self.offset[i]]
                    if bytes(mine) != bytes(kept):
                        n += hi - lo
                i += 1
        return n


class Reassembled:
    """The byte streams of many connections: ``streams(conn)`` -> {"c2s": ByteStream, "s2c": ByteStream}.

    Built once for all of them (``reassemble_columns``); each connection's
    streams are slices of shared numpy columns, made into lists (what the
    payload tier's per-byte-range steps index fastest) when asked for.
    """

    def __init__(self, buf, cols: dict[str, np.ndarray], bounds: dict[tuple[int, int], tuple[int, int]],
                 extra: dict[tuple[int, int], dict], conns: list[int]):
        self.buf = buf
        self._cols = cols
        self._bounds = bounds          # (conn, 0 c2s / 1 s2c) -> (lo, hi) rows of the piece columns
        self._extra = extra            # (conn, dir) -> gaps, retransmitted, fin, rst, copies
        self.conns = conns

    def streams(self, conn: int) -> dict[str, ByteStream]:
        out = {}
        for k, d in ((0, C2S), (1, S2C)):
            s = ByteStream(d, self.buf)
            lo, hi = self._bounds.get((conn, k), (0, 0))
            if hi > lo:
                c = self._cols
                s.offset, s.size, s.at = c["offset"][lo:hi].tolist(), c["size"][lo:hi].tolist(), c["at"][lo:hi].tolist()
                s.frame, s.ts = c["frame"][lo:hi].tolist(), c["ts"][lo:hi].tolist()
                s.ready_frame, s.ready_ts = c["ready_frame"][lo:hi].tolist(), c["ready_ts"][lo:hi].tolist()
            x = self._extra.get((conn, k))
            if x:
                s.gaps, s.retransmitted, s.fin = list(x.get("gaps", ())), x.get("retransmitted", 0), x.get("fin", False)
                s.rst_frame, s.rst_ts, s._copies = x.get("rst_frame"), x.get("rst_ts"), x.get("copies", [])
            out[d] = s
        return out


def reassemble_columns(conn, c2s, flags, seq, length, frame, ts, payload_off, payload_cap, buf,
                       wanted=None) -> Reassembled:
    """Every wanted connection's byte streams at once.

    Arguments are per-frame columns of the TCP rows in frame order (``conn``
    -1 outside a connection, ``seq`` relative, ``flags`` as bits,
    ``payload_cap`` the captured payload bytes).  ``wanted``: the connections
    to reassemble (default all).
    """
    conn = np.asarray(conn, dtype=np.int64)
    keep = conn >= 0
    if wanted is not None:
        keep &= np.isin(conn, np.fromiter(wanted, dtype=np.int64, count=len(wanted)))
    rows = np.flatnonzero(keep)
    cols = {k: np.zeros(0) for k in ("offset", "size", "at", "frame", "ts", "ready_frame", "ready_ts")}
    if not len(rows):
        return Reassembled(buf, cols, {}, {}, [])
    conn = conn[rows]
    d = (~np.asarray(c2s, dtype=bool)[rows]).astype(np.int64)       # 0 c2s, 1 s2c
    flags = np.asarray(flags, dtype=np.int64)[rows]
    seq = np.asarray(seq, dtype=np.int64)[rows]
    n = np.asarray(length, dtype=np.int64)[rows]
    frame = np.asarray(frame, dtype=np.int64)[rows]
    ts = np.asarray(ts, dtype=np.float64)[rows]
    off = np.asarray(payload_off, dtype=np.int64)[rows]
    cap = np.asarray(payload_cap, dtype=np.int64)[rows]
    group = conn * 2 + d                           # one group per (connection, direction)
    extra: dict[tuple[int, int], dict] = {}
    _flags_by_group(group, flags, frame, ts, extra)

    # Where each direction's stream starts: after its first SYN, else at the lowest seq carrying data.
    syn = (flags & SYN) != 0
    base = _first_per_group(group, syn, seq + 1, frame)
    data = n > 0
    lowest = _min_per_group(group[data], seq[data])
    for g, v in lowest.items():
        base.setdefault(g, v)
    gkeys = np.fromiter(base, dtype=np.int64, count=len(base))
    gbase = np.fromiter(base.values(), dtype=np.int64, count=len(base))
    order = np.argsort(gkeys)
    gkeys, gbase = gkeys[order], gbase[order]

    # Bytes announced (seq + len), captured or not: the end of the stream as far as we know.
    if len(gkeys):
        rel = seq + syn - gbase[np.minimum(np.searchsorted(gkeys, group), len(gkeys) - 1)]
    else:
        rel = seq
    announced = _max_per_group(group[data], (rel + n)[data])

    size = np.minimum(np.minimum(cap, n), _MAX_SEGMENT)
    seg = np.flatnonzero(data & (size > 0) & (rel >= 0))
    if len(seg):
        _place(group[seg], rel[seg], size[seg], off[seg], frame[seg], ts[seg], cols, extra)
    _gaps(cols, extra, announced)
    return _finish(buf, cols, extra)


def _flags_by_group(group, flags, frame, ts, extra) -> None:
    fin = np.unique(group[(flags & FIN) != 0])
    for g in fin.tolist():
        extra.setdefault(_key(g), {})["fin"] = True
    rst = np.flatnonzero((flags & RST) != 0)
    if len(rst):
        order = rst[np.lexsort((frame[rst], group[rst]))]
        first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
        for g, f, t in zip(group[first].tolist(), frame[first].tolist(), ts[first].tolist()):
            x = extra.setdefault(_key(g), {})
            x["rst_frame"], x["rst_ts"] = f, t


def _key(g: int) -> tuple[int, int]:
    return g >> 1, g & 1


def _first_per_group(group, mask, value, frame) -> dict[int, int]:
    rows = np.flatnonzero(mask)
    if not len(rows):
        return {}
    order = rows[np.lexsort((frame[rows], group[rows]))]
    first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    return dict(zip(group[first].tolist(), value[first].tolist()))


def _min_per_group(group, value) -> dict[int, int]:
    if not len(group):
        return {}
    order = np.lexsort((value, group))
    first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    return dict(zip(group[first].tolist(), value[first].tolist()))


def _max_per_group(group, value) -> dict[int, int]:
    if not len(group):
        return {}
    order = np.lexsort((-value, group))
    first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    return dict(zip(group[first].tolist(), value[first].tolist()))


def _place(group, start, size, at, frame, ts, cols, extra) -> None:
    """The pieces of every group: numpy where no two distinct segments overlap, a sweep where they do."""
    order = np.lexsort((frame, start, group))
    group, start, size, at, frame, ts = (a[order] for a in (group, start, size, at, frame, ts))
    end = start + size
    new_group = np.r_[True, group[1:] != group[:-1]]
    # An exact copy of the segment before it (same group, start and end, later frame): a retransmission.
    dup = ~new_group & np.r_[False, (start[1:] == start[:-1]) & (end[1:] == end[:-1])]
    # Any other overlap with the segments before it in the group sends the whole group to the sweep.
    reach = _group_running_max(end, new_group)
    prev_reach = np.r_[0, reach[:-1]]
    overlap = ~new_group & ~dup & (start < prev_reach)
    same_start = ~new_group & ~dup & np.r_[False, start[1:] == start[:-1]]
    messy_groups = np.unique(group[overlap | same_start])
    messy = np.isin(group, messy_groups) if len(messy_groups) else np.zeros(len(group), dtype=bool)

    for i in np.flatnonzero(dup & ~messy).tolist():
        x = extra.setdefault(_key(int(group[i])), {})
        x["retransmitted"] = x.get("retransmitted", 0) + int(size[i])
        x.setdefault("copies", []).append((int(start[i]), int(size[i]), int(at[i]), int(frame[i])))
    simple = np.flatnonzero(~dup & ~messy)
    pieces = [(group[simple], start[simple], size[simple], at[simple], frame[simple], ts[simple])]
    for g in messy_groups.tolist():
        rows = np.flatnonzero(group == g)
        swept, copies, again = _sweep(start[rows], size[rows], at[rows], frame[rows], ts[rows])
        x = extra.setdefault(_key(g), {})
        x["retransmitted"], x["copies"] = again, copies
        pieces.append((np.full(len(swept[0]), g, dtype=np.int64), *swept))
    g, s, z, a, f, t = (np.concatenate(parts) for parts in zip(*pieces))
    order = np.lexsort((s, g))
    g, s, z, a, f, t = (v[order] for v in (g, s, z, a, f, t))
    # Readable from the frame that filled the last hole before it: the running max of frames.
    first = np.r_[True, g[1:] != g[:-1]] if len(g) else np.zeros(0, dtype=bool)
    ready = _group_running_max(f, first)
    pos = np.arange(len(f))
    at_max = np.maximum.accumulate(np.where(f == ready, pos, 0)) if len(f) else pos
    cols["group"] = g
    cols["offset"], cols["size"], cols["at"], cols["frame"], cols["ts"] = s, z, a, f, t
    cols["ready_frame"], cols["ready_ts"] = ready, t[at_max]


def _group_running_max(values: np.ndarray, new_group: np.ndarray) -> np.ndarray:
    """Running maximum of non-negative ``values`` restarting at each ``new_group``."""
    if not len(values):
        return values
    gid = np.cumsum(new_group)
    top = int(values.max()) + 1
    return np.maximum.accumulate(gid * top + values) - gid * top


def _sweep(start, size, at, frame, ts):
    """One direction whose segments overlap: each byte to the earliest frame that carried it.

    A sweep over the segments by offset with a heap of the ones covering the
    current offset, keyed by frame: O(n log n) whatever the order they came in.
    Returns the pieces (start, size, at, frame, ts columns), the dropped
    copies and how many bytes arrived again.
    """
    order = np.lexsort((frame, start)).tolist()
    s, z, a, f, t = start.tolist(), size.tolist(), at.tolist(), frame.tolist(), ts.tolist()
    out: list[list] = [[], [], [], [], []]
    heap: list[tuple[int, int]] = []          # (frame, segment) of the segments covering ``pos``
    k, pos, kept = 0, None, 0
    while k < len(order) or heap:
        while heap and s[heap[0][1]] + z[heap[0][1]] <= (pos if pos is not None else 0):
            heapq.heappop(heap)
        if not heap:
            if k >= len(order):
                break
            pos = s[order[k]]
        while k < len(order) and s[order[k]] <= pos:
            i = order[k]
            if s[i] + z[i] > pos:
                heapq.heappush(heap, (f[i], i))
            k += 1
        while heap and s[heap[0][1]] + z[heap[0][1]] <= pos:
            heapq.heappop(heap)
        if not heap:
            continue
        owner = heap[0][1]
        # The owner keeps the bytes until it ends or an earlier frame's segment begins.
        stop = s[owner] + z[owner]
        for j in order[k:]:
            if s[j] >= stop:
                break
            if f[j] < f[owner]:
                stop = s[j]
                break
        if out[0] and out[3][-1] == f[owner] and out[0][-1] + out[1][-1] == pos:
            out[1][-1] += stop - pos
        else:
            for col, v in zip(out, (pos, stop - pos, a[owner] + pos - s[owner], f[owner], t[owner])):
                col.append(v)
        kept += stop - pos
        pos = stop
    copies = [(s[i], z[i], a[i], f[i]) for i in range(len(s))]
    again = sum(z) - kept
    return [np.asarray(c, dtype=np.float64 if j == 4 else np.int64) for j, c in enumerate(out)], copies, again


def _gaps(cols, extra, announced: dict[int, int]) -> None:
    """Holes between pieces, from offset 0, and bytes announced past the last one."""
    g = cols.get("group")
    if g is None or not len(g):
        for grp, n in announced.items():
            if n > 0:
                extra.setdefault(_key(grp), {}).setdefault("gaps", []).append((0, n))
        return
    s, z = cols["offset"], cols["size"]
    first = np.r_[True, g[1:] != g[:-1]]
    prev_end = np.r_[0, (s + z)[:-1]]
    expected = np.where(first, 0, prev_end)
    for i in np.flatnonzero(s > expected).tolist():
        e = int(expected[i])
        extra.setdefault(_key(int(g[i])), {}).setdefault("gaps", []).append((e, int(s[i]) - e))
    last = np.r_[first[1:], True]
    ends = dict(zip(g[last].tolist(), (s + z)[last].tolist()))
    for grp, n in announced.items():
        length = ends.get(grp, 0)
        if n > length:
            extra.setdefault(_key(grp), {}).setdefault("gaps", []).append((length, n - length))


def _finish(buf, cols, extra) -> Reassembled:
    g = cols.pop("group", None)
    bounds: dict[tuple[int, int], tuple[int, int]] = {}
    if g is not None and len(g):
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        ends = np.r_[starts[1:], len(g)]
        bounds = {_key(k): (lo, hi) for k, lo, hi in zip(g[starts].tolist(), starts.tolist(), ends.tolist())}
    else:
        cols = {k: np.zeros(0) for k in ("offset", "size", "at", "frame", "ts", "ready_frame", "ready_ts")}
    conns = sorted({c for c, _ in bounds} | {c for c, _ in extra})
    return Reassembled(buf, cols, bounds, extra, conns)


# --- one connection, from its rows ---------------------------------------------------------

def reassemble(rows, buf: bytes) -> dict[str, ByteStream]:
    """The two directions of one connection: ``{"c2s": ByteStream, "s2c": ByteStream}``.

    ``rows``: that connection's packets (a DataFrame or an iterable of
    mappings) with ``frame, ts, dir, flags, seq, len, payload_off, payload_cap``.
    """
    return reassemble_segments(list(_segments(rows)), buf)


def reassemble_segments(segments: list[tuple], buf: bytes) -> dict[str, ByteStream]:
    """``reassemble`` over ``(dir, flag bits, seq, len, frame, ts, payload_off, payload_cap)``
    tuples in frame order."""
    if not segments:
        return {C2S: ByteStream(C2S, buf), S2C: ByteStream(S2C, buf)}
    d, flags, seq, n, frame, ts, off, cap = zip(*segments)
    r = reassemble_columns(np.zeros(len(d), dtype=np.int64), np.asarray(d) == C2S, flags, seq, n, frame, ts,
                           off, cap, buf)
    return r.streams(0)


def _segments(rows) -> Iterable[tuple]:
    """(dir, flag bits, seq, len, frame, ts, payload_off, payload_cap) in frame order, bad rows skipped.

    ``rows``: a table of one connection's packets (anything with ``itertuples``,
    e.g. ``timeline.packets``) or an iterable of mappings; ``flags`` as text
    (``"SYN,ACK"``) or bits."""
    if hasattr(rows, "itertuples"):
        rows = rows.sort_values("frame")[["dir", "flags", "seq", "len", "frame", "ts", "payload_off",
                                          "payload_cap"]].itertuples(index=False, name=None)
    else:
        rows = sorted(((r["dir"], r["flags"], r["seq"], r["len"], r["frame"], r["ts"],
                        r["payload_off"], r["payload_cap"]) for r in rows), key=lambda t: t[4])
    for d, flags, seq, n, frame, ts, off, cap in rows:
        if _missing(seq) or _missing(n) or d not in (C2S, S2C):
            continue
        yield (d, _bits(flags), int(seq), int(n), int(frame), float(ts),
               0 if _missing(off) else int(off), 0 if _missing(cap) else int(cap))


def _bits(flags) -> int:
    if isinstance(flags, str):
        return sum(bit for name, bit in _FLAG_BITS.items() if name in flags.split(","))
    return 0 if _missing(flags) else int(flags)


def _missing(v) -> bool:
    try:
        return v is None or v != v or str(v) == "<NA>"
    except TypeError:      # pd.NA refuses comparison
        return True
