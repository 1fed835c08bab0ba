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
"""

from __future__ import annotations

import contextlib
import importlib

import numpy as np
from numpy.lib.stride_tricks import as_strided


def _hugepage_switch():
    """numpy's switch for madvise(MADV_HUGEPAGE) on big arrays (a private API: None if absent)."""
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return getattr(importlib.import_module(name), "_set_madvise_hugepage", None)
        except ImportError:
            continue
    return None


_SET_HUGEPAGE = _hugepage_switch()


@contextlib.contextmanager
def small_pages():
    """Plain 4 KiB pages for the arrays made inside (usable as a decorator).

    Loading a big capture makes a few hundred arrays of 1-100 MB; on Linux the
    page faults of fresh memory then cost as much as the work (measured on a
    1M-packet capture: ~0.6 s of system time out of ~2 s).  numpy asks for
    transparent huge pages on every array of 4 MB or more; where the kernel
    compacts memory to find them (``defrag=madvise``, Debian's default) those
    faults are the slowest (~0.3 s here).  The previous setting is restored
    on the way out.
    """
    if _SET_HUGEPAGE is None:
        yield
        return
    before = _SET_HUGEPAGE(False)
    try:
        yield
    finally:
        _SET_HUGEPAGE(before)


# glibc raises its mmap threshold to the size of a freed mmap'd block, up to this.
_GLIBC_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
# Work smaller than this gains nothing from reuse_freed_memory().
BIG_WORK = 100_000


def reuse_freed_memory() -> None:
    """Let the allocator reuse freed memory for big arrays instead of mapping fresh pages.

    glibc gives blocks above its mmap threshold (128 KiB at start) their own
    fresh mapping each time, faulted in page by page; freeing such a block
    raises the threshold to its size (up to 32 MiB), after which freed heap
    memory is reused.  One allocation of just under 32 MiB, never touched
    (so it costs no pages) and freed at once, raises it up front: on a
    1M-packet capture ~60k fewer page faults, ~0.1 s.  Harmless elsewhere.
    Called only for big inputs (it would show in allocation tracing).
    """
    np.empty(_GLIBC_MMAP_THRESHOLD_MAX - (1 << 16), dtype=np.uint8)


class Gather:
    """Integer reads at arrays of absolute offsets into ``buf``."""

    def __init__(self, buf: bytes | bytearray | memoryview):
        self.a = np.frombuffer(buf, dtype=np.uint8)
        self.n = len(self.a)
        self._win: dict[int, np.ndarray] = {}

    def _window(self, width: int) -> np.ndarray:
        win = self._win.get(width)
        if win is None:
            win = as_strided(self.a, shape=(self.n - width + 1, width), strides=(1, 1), writeable=False)
            self._win[width] = win
        return win

    def raw(self, off: np.ndarray, width: int) -> np.ndarray:
        """``len(off) x width`` uint8 rows (a copy); bytes past the buffer are 0."""
        off = np.asarray(off, np.int64)
        if self.n < width:
            tail = np.concatenate([self.a, np.zeros(width, np.uint8)])
            return as_strided(tail, shape=(self.n + 1, width), strides=(1, 1))[np.clip(off, 0, self.n)]
        limit = self.n - width
        rows = self._window(width)[np.minimum(off, limit)]
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

    def __init__(self, g: Gather, start: np.ndarray, width: int = 96):
        self.g = g
        self.start = start
        self.width = width
        self.h = g.raw(start, width)

    def _block(self, rows, rel: int, w: int) -> np.ndarray:
        if rel + w <= self.width:
            return np.ascontiguousarray(self.h[rows, rel:rel + w])
        return self.g.raw(self.start[rows] + rel, w)

    def u8(self, rows, rel: int) -> np.ndarray:
        if rel < self.width:
            return self.h[rows, rel]
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
