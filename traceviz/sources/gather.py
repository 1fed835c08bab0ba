"""Read fixed-width integers at many byte offsets of one buffer at once.

Hand-written for speed.  Two tools:

- ``Gather``: a read-only strided view gives, for every byte offset ``o``, the
  row ``buf[o:o+w]``; fancy-indexing it with a million offsets copies a
  million small rows in one numpy call, and ``.view('>u4')`` turns the rows
  into integers.  No Python object per offset.
- ``Heads``: the first ``width`` bytes of every frame, copied once into a dense
  ``frames x width`` array.  Reads at the same offset in many frames (the
  common case: every frame of a capture has the same layout) are then column
  slices of that array, several times cheaper than gathering from the whole
  file, whose frames are scattered over hundreds of megabytes.

Bytes past the end of the buffer read as zero.  A caller reading a field must
itself check that the field lies inside its frame.

A read at offsets all over a mapped file touches nearly every page of it, even
at one byte a segment (the kernel maps 16 pages around each page it faults
in): ``windows`` cuts such a read into windows of the file, in file order, and
hands each window's pages back (``mapping.release_pages``) once it is read, so
the file's pages never pile up in resident memory.  ``peek`` and ``pieces``
read that way.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from traceviz.sources.mapping import mappable, release_pages


# Bytes of each frame ``Heads`` keeps: Ethernet + VLAN + IPv6 + TCP with options fit in most frames.
HEAD_BYTES = 96
# Bytes of a mapped file ``windows`` reads before handing their pages back: a few hundred
# page faults, and one ``madvise``, per window.
WINDOW = 32 * 1024 * 1024


class Gather:
    """Integer reads at arrays of absolute offsets into ``buf``."""

    def __init__(self, buf: bytes | bytearray | memoryview):
        self.buf = buf
        self.a = np.frombuffer(buf, dtype=np.uint8)
        self.n = len(self.a)
        self._win: dict[int, np.ndarray] = {}

    def _window(self, width: int) -> np.ndarray:
        """Item ``o`` is ``buf[o:o+width]`` as one opaque ``V<width>`` value.

        Fancy-indexing this 1-D view copies each row with one memcpy: about
        twice as fast as indexing the equivalent 2-D uint8 window row by row.
        """
        win = self._win.get(width)
        if win is None:
            win = np.ndarray(buffer=self.a, dtype=f"V{width}", shape=(self.n - width + 1,), strides=(1,))
            win.flags.writeable = False
            self._win[width] = win
        return win

    def raw(self, off: np.ndarray, width: int) -> np.ndarray:
        """``len(off) x width`` uint8 rows (a copy); bytes past the buffer are 0."""
        off = np.asarray(off, np.int64)
        if self.n < width:
            tail = np.concatenate([self.a, np.zeros(width, np.uint8)])
            return as_strided(tail, shape=(self.n + 1, width), strides=(1, 1))[np.clip(off, 0, self.n)]
        limit = self.n - width
        rows = self._window(width)[np.minimum(off, limit)].view(np.uint8).reshape(len(off), width)
        late = np.flatnonzero(off > limit)
        if len(late):
            # The last bytes of the file: read from a zero-padded copy of the tail.
            tail = np.concatenate([self.a[limit:], np.zeros(width, np.uint8)])
            win = as_strided(tail, shape=(width + 1, width), strides=(1, 1))
            rows[late] = win[np.minimum(off[late] - limit, width)]
        return rows

    def u8(self, off: np.ndarray) -> np.ndarray:
        off = np.asarray(off, np.int64)
        if self.n == 0:
            return np.zeros(len(off), np.uint8)
        out = self.a[np.minimum(off, self.n - 1)]
        beyond = off >= self.n
        if beyond.any():
            out = np.where(beyond, 0, out).astype(np.uint8)
        return out

    def u16(self, off: np.ndarray, order: str = ">") -> np.ndarray:
        return self.raw(off, 2).view(order + "u2")[:, 0]

    def u32(self, off: np.ndarray, order: str = ">") -> np.ndarray:
        return self.raw(off, 4).view(order + "u4")[:, 0]

    def u64(self, off: np.ndarray, order: str = ">") -> np.ndarray:
        return self.raw(off, 8).view(order + "u8")[:, 0]


class Heads:
    """The first ``width`` bytes of each frame; reads by (rows, offset in frame).

    ``rows`` is ``slice(None)`` (all frames) or an index array; ``rel`` is an
    int offset from each frame's first byte.  Fields that reach past ``width``
    fall back to gathering from the whole buffer.
    """

    def __init__(self, g: Gather, start: np.ndarray, width: int = HEAD_BYTES, heads: np.ndarray | None = None):
        self.g = g
        self.start = start
        self.width = width
        # ``heads``: the same rows copied earlier (by the reader), if it has them.
        usable = heads is not None and heads.shape == (len(start), width) and heads.dtype == np.uint8
        self.h = np.ascontiguousarray(heads) if usable else peek(g.buf, start, width)
        self._cols: dict[tuple[int, int], np.ndarray] = {}

    def _column(self, rel: int, w: int) -> np.ndarray:
        """Bytes ``rel:rel+w`` of every row as one ``V<w>`` value per row (a view).

        Fancy-indexing it copies one memcpy per row: several times faster
        than indexing rows of the 2-D array and then slicing columns.
        """
        col = self._cols.get((rel, w))
        if col is None:
            col = np.ndarray(shape=(len(self.h),), dtype=f"V{w}", buffer=self.h, offset=rel,
                             strides=(self.width,))
            self._cols[(rel, w)] = col
        return col

    def _block(self, rows, rel: int, w: int) -> np.ndarray:
        if rel + w <= self.width:
            if not len(self.h):
                return np.zeros((0, w), np.uint8)
            block = np.ascontiguousarray(self._column(rel, w)[rows])
            return block.view(np.uint8).reshape(len(block), w)
        return self.g.raw(self.start[rows] + rel, w)

    def u8(self, rows, rel: int) -> np.ndarray:
        if rel < self.width:
            return self.h[:, rel][rows]
        return self.g.u8(self.start[rows] + rel)

    def u16(self, rows, rel: int) -> np.ndarray:
        return self._block(rows, rel, 2).view(">u2")[:, 0]

    def u32(self, rows, rel: int) -> np.ndarray:
        return self._block(rows, rel, 4).view(">u4")[:, 0]

    def raw(self, rows, rel: int, w: int) -> np.ndarray:
        return self._block(rows, rel, w)

    def record(self, rows, rel: int, dtype: np.dtype) -> np.ndarray:
        """A whole header at once, as a structured array (one copy for all its fields)."""
        return self._block(rows, rel, dtype.itemsize).view(dtype)[:, 0]


class HeadStore:
    """Collects ``Heads`` rows chunk by chunk, in order, into one array.

    Chunks arrive before the number of frames is known.  The array is sized
    from the first chunk's bytes per record with room to spare: rows never
    written are never touched, so they cost address space, not memory.  If
    the guess falls short the rows move to a bigger array.
    """

    def __init__(self, buf, width: int = HEAD_BYTES):
        self.g = Gather(buf)
        self.width = width
        self.rows = np.zeros((0, width), np.uint8)
        self.used = 0

    def add(self, start: np.ndarray) -> None:
        n = len(start)
        if self.used + n > len(self.rows):
            spent = int(start[-1]) + 1 if n else 1
            guess = int((self.used + n) * max(self.g.n / max(spent, 1), 1.0) * 1.25) + (1 << 16)
            grown = np.empty((max(guess, self.used + n), self.width), np.uint8)
            grown[:self.used] = self.rows[:self.used]
            self.rows = grown
        self.rows[self.used:self.used + n] = self.g.raw(start, self.width)
        self.used += n

    def result(self, n: int) -> np.ndarray | None:
        """The first ``n`` rows (None if fewer were collected)."""
        return self.rows[:n] if self.used >= n else None


def by_offset(rows: np.ndarray, rel: np.ndarray):
    """Split ``rows`` into groups sharing one ``rel`` value: ``[(rows, int rel), ...]``.

    Captures are nearly uniform, so this is usually one or two groups and lets
    every read be a column slice.  A few distinct values are peeled off one
    comparison at a time (cheaper than sorting a million offsets).
    """
    groups = []
    for _ in range(6):
        if not len(rows):
            return groups
        v = rel[0]
        same = rel == v
        if same.all():
            groups.append((rows, int(v)))
            return groups
        groups.append((rows[same], int(v)))
        rows, rel = rows[~same], rel[~same]
    if not len(rows):
        return groups
    values, inverse = np.unique(rel, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(values) + 1))
    return groups + [(rows[order[bounds[i]:bounds[i + 1]]], int(v)) for i, v in enumerate(values)]


def windows(buf, offs: np.ndarray):
    """The positions in ``offs`` (offsets into ``buf``), a window of ``WINDOW`` bytes of the
    file at a time, in file order: a slice of them where the offsets ascend (frame order,
    the usual case), else an array.  Once the caller has read a window (asks for the next),
    its pages are handed back.  Not a map: all positions at once."""
    offs = np.asarray(offs, np.int64)
    if not len(offs):
        return
    if not mappable(buf) or len(buf) <= WINDOW:
        yield slice(0, len(offs))
        return
    order = None if (offs[1:] >= offs[:-1]).all() else np.argsort(offs, kind="stable")
    ordered = offs if order is None else offs[order]
    first = max(int(ordered[0]), 0) // WINDOW
    last = max(int(ordered[-1]), 0) // WINDOW
    edges = [0, *np.searchsorted(ordered, np.arange(first + 1, last + 1) * WINDOW).tolist(), len(offs)]
    done = first * WINDOW
    for k in range(len(edges) - 1):
        if edges[k] == edges[k + 1]:
            continue
        yield slice(edges[k], edges[k + 1]) if order is None else order[edges[k]:edges[k + 1]]
        end = (first + k + 1) * WINDOW
        release_pages(buf, done, end - done)    # with what a window before it read past its end
        done = end


def peek(buf, offs: np.ndarray, width: int = 1) -> np.ndarray:
    """``len(offs) x width`` uint8: the bytes at each offset, read window by window
    (``windows``); bytes outside the buffer are 0."""
    offs = np.asarray(offs, np.int64)
    out = np.empty((len(offs), width), np.uint8)
    g = Gather(buf)
    for at in windows(buf, offs):
        o = offs[at]
        rows = g.raw(np.maximum(o, 0), width)
        rows[o < 0] = 0
        out[at] = rows
    return out


def pieces(buf, offs: np.ndarray, sizes: np.ndarray) -> list[bytes]:
    """``buf[off:off + size]`` for each offset and size, read window by window (``windows``)."""
    offs, sizes = np.asarray(offs, np.int64), np.asarray(sizes, np.int64)
    out = [b""] * len(offs)
    positions = np.arange(len(offs))
    for at in windows(buf, offs):
        for i, o, n in zip(positions[at].tolist(), offs[at].tolist(), sizes[at].tolist()):
            out[i] = bytes(buf[o:o + n])
    return out
