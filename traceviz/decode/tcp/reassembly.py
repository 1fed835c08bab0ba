"""Per-direction TCP byte streams for one connection.

Input: one connection's TCP segments (direction, flags, relative seq, length,
frame, time and where the payload lies in the capture's bytes: see
``segments_by_conn``) and the capture's bytes.
Output: for each direction a ``ByteStream``: the bytes placed at their stream
offsets, retransmissions and overlaps resolved (the first copy to arrive
wins, as a receiver keeps it), out-of-order segments put in place, and the
holes left by lost or uncaptured bytes recorded as gaps -- never filled in.

Every byte range remembers the frame and time it arrived, and the frame in
which it became readable (``ready_frame``: the frame that filled the last
hole before it), which is where Wireshark shows a reassembled PDU.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

SYN, RST, FIN = 0x02, 0x04, 0x01
_FLAG_BITS = {"FIN": FIN, "SYN": SYN, "RST": RST}

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
    """One direction of a TCP connection, reassembled."""

    dir: str
    pieces: list[Piece] = field(default_factory=list)      # sorted by offset, non-overlapping
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) of missing bytes
    retransmitted: int = 0     # bytes that arrived again (dropped: the first copy wins)
    conflicting: int = 0       # of those, bytes that differed from the first copy
    fin: bool = False
    rst_frame: int | None = None
    rst_ts: float | None = None

    @property
    def length(self) -> int:
        return self.pieces[-1].end if self.pieces else 0

    def data(self) -> bytes:
        """All captured bytes in order (gaps left out: use ``runs`` to see them)."""
        return b"".join(p.data for p in self.pieces)

    def runs(self) -> Iterator[tuple[int, bytes]]:
        """(offset, bytes) of each gap-free run."""
        start, chunks, end = None, [], None
        for p in self.pieces:
            if end is not None and p.offset != end:
                yield start, b"".join(chunks)
                start, chunks = None, []
            if start is None:
                start = p.offset
            chunks.append(p.data)
            end = p.end
        if start is not None:
            yield start, b"".join(chunks)

    def frame_at(self, offset: int) -> int | None:
        """The frame from which the byte at ``offset`` was readable."""
        i = bisect.bisect_right([p.offset for p in self.pieces], offset) - 1
        if i < 0 or offset >= self.pieces[i].end:
            return None
        return self.pieces[i].ready_frame


class _Builder:
    """Places segments of one direction; first arrival wins."""

    def __init__(self, dir: str):
        self.stream = ByteStream(dir)
        self._starts: list[int] = []
        self._pieces: list[Piece] = []

    def add(self, offset: int, data: bytes, frame: int, ts: float) -> None:
        if not data or offset < 0:
            return
        end = offset + len(data)
        i = bisect.bisect_right(self._starts, offset) - 1
        i = max(i, 0)
        cursor = offset
        new: list[Piece] = []
        while i < len(self._pieces) and self._pieces[i].offset < end:
            p = self._pieces[i]
            if p.end <= cursor:
                i += 1
                continue
            if p.offset > cursor:
                new.append(Piece(cursor, data[cursor - offset:p.offset - offset], frame, ts))
            lo, hi = max(cursor, p.offset), min(end, p.end)
            self._count_overlap(p, lo, hi, data[lo - offset:hi - offset])
            cursor = max(cursor, p.end)
            i += 1
        if cursor < end:
            new.append(Piece(cursor, data[cursor - offset:], frame, ts))
        for piece in new:
            j = bisect.bisect_left(self._starts, piece.offset)
            self._starts.insert(j, piece.offset)
            self._pieces.insert(j, piece)

    def _count_overlap(self, p: Piece, lo: int, hi: int, again: bytes) -> None:
        self.stream.retransmitted += hi - lo
        if p.data[lo - p.offset:hi - p.offset] != again:
            self.stream.conflicting += hi - lo

    def finish(self) -> ByteStream:
        s = self.stream
        s.pieces = self._pieces
        expected, ready, ready_ts = 0, 0, 0.0
        for p in s.pieces:
            if p.offset > expected:
                s.gaps.append((expected, p.offset - expected))
            # Bytes become readable once everything before them has arrived
            # (or, after a hole, when they themselves arrive).
            if p.frame > ready:
                ready, ready_ts = p.frame, p.ts
            p.ready_frame, p.ready_ts = ready, ready_ts
            expected = p.end
        return s


def reassemble(rows, buf: bytes) -> dict[str, ByteStream]:
    """The two directions of one connection: ``{"c2s": ByteStream, "s2c": ByteStream}``.

    ``rows``: that connection's packets (a DataFrame or an iterable of
    mappings) with ``frame, ts, dir, flags, seq, len, payload_off, payload_cap``.
    """
    return reassemble_segments(list(_segments(rows)), buf)


def reassemble_segments(segments: list[tuple], buf: bytes) -> dict[str, ByteStream]:
    """``reassemble`` over ``(dir, flag bits, seq, len, frame, ts, payload_off, payload_cap)``
    tuples in frame order (see ``segments_by_conn``)."""
    builders = {"c2s": _Builder("c2s"), "s2c": _Builder("s2c")}
    base = _stream_starts(segments)
    for d, flags, seq, n, frame, ts, off, cap in segments:
        b = builders.get(d)
        if b is None:
            continue
        if flags & RST and b.stream.rst_frame is None:
            b.stream.rst_frame, b.stream.rst_ts = frame, ts
        if flags & FIN:
            b.stream.fin = True
        if not n or cap <= 0:
            continue
        start = seq + (1 if flags & SYN else 0) - base.get(d, seq)
        data = bytes(buf[off:off + min(cap, n, _MAX_SEGMENT)])
        b.add(start, data, frame, ts)
    streams = {d: b.finish() for d, b in builders.items()}
    for d, s in streams.items():
        _trailing_gap(s, segments, d, base.get(d))
    return streams


def _stream_starts(segments) -> dict[str, int]:
    """Sequence number of each direction's first byte: after its SYN when
    we saw one, else the lowest sequence number carrying data."""
    base: dict[str, int] = {}
    for d, flags, seq, *_ in segments:
        if flags & SYN and d not in base:
            base[d] = seq + 1
    lowest: dict[str, int] = {}
    for d, flags, seq, n, *_ in segments:
        if n:
            lowest[d] = min(lowest.get(d, seq), seq)
    for d, seq in lowest.items():
        base.setdefault(d, seq)
    return base


def _trailing_gap(s: ByteStream, segments, d: str, base: int | None) -> None:
    """Bytes announced (seq+len) but not captured past the last piece: a gap too."""
    if base is None:
        return
    announced = 0
    for dd, flags, seq, n, *_ in segments:
        if dd == d and n:
            announced = max(announced, seq + (1 if flags & SYN else 0) - base + n)
    if announced > s.length:
        s.gaps.append((s.length, announced - s.length))


_SEGMENT_COLUMNS = ["dir", "flags", "seq", "len", "frame", "ts", "payload_off", "payload_cap"]


def segments_by_conn(conn, c2s, flags, seq, length, frame, ts, payload_off, payload_cap,
                     wanted=None) -> dict[int, list[tuple]]:
    """Every connection's segments at once, as ``reassemble_segments`` wants them.

    Arguments are per-frame columns of the TCP rows (``conn`` -1 outside a
    connection, ``seq`` relative).  One pass of column arrays for the whole
    capture: a per-connection selection costs more than the reassembly itself
    when there are thousands of small connections.
    """
    conn = np.asarray(conn)
    keep = conn >= 0
    if wanted is not None:
        keep &= np.isin(conn, np.fromiter(wanted, dtype=np.int64, count=len(wanted)))
    rows = np.flatnonzero(keep)
    if not len(rows):
        return {}
    rows = rows[np.argsort(conn[rows], kind="stable")]      # by connection, frame order kept
    cols = zip(np.where(np.asarray(c2s)[rows], "c2s", "s2c").tolist(), np.asarray(flags)[rows].tolist(),
               np.asarray(seq)[rows].tolist(), np.asarray(length)[rows].tolist(), np.asarray(frame)[rows].tolist(),
               np.asarray(ts)[rows].tolist(), np.asarray(payload_off)[rows].tolist(),
               np.asarray(payload_cap)[rows].tolist(), conn[rows].tolist())
    out: dict[int, list[tuple]] = {}
    for d, f, sq, n, fr, t, o, c, k in cols:
        out.setdefault(k, []).append((d, f, sq, n, fr, t, o, c))
    return out


def _segments(rows) -> Iterable[tuple]:
    """(dir, flag bits, seq, len, frame, ts, payload_off, payload_cap) in frame order, bad rows skipped.

    ``rows``: a table of one connection's packets (anything with ``itertuples``,
    e.g. ``timeline.packets``) or an iterable of mappings; ``flags`` as text
    (``"SYN,ACK"``) or bits."""
    if hasattr(rows, "itertuples"):
        rows = rows.sort_values("frame")[_SEGMENT_COLUMNS].itertuples(index=False, name=None)
    else:
        rows = sorted(((r["dir"], r["flags"], r["seq"], r["len"], r["frame"], r["ts"],
                        r["payload_off"], r["payload_cap"]) for r in rows), key=lambda t: t[4])
    for d, flags, seq, n, frame, ts, off, cap in rows:
        if _missing(seq) or _missing(n):
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
