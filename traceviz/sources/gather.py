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
import os
import sys

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
    on the way out, and so is glibc's trimming of freed memory if
    ``reuse_freed_memory()`` suspended it inside.
    """
    global _depth
    before = _SET_HUGEPAGE(False) if _SET_HUGEPAGE is not None else None
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            _let_go_of_freed_memory()
        if _SET_HUGEPAGE is not None:
            _SET_HUGEPAGE(before)


# GIL hand-over interval while a Python loop and numpy work share the GIL.
_QUICK_SWITCH = 0.0002
_switch_depth = 0
_switch_before = 0.005


@contextlib.contextmanager
def quick_handoffs():
    """Hand the GIL over every 0.2 ms instead of every 5 ms while inside.

    When one thread runs a Python loop (the record walk) and another runs
    numpy (reading the records' headers), the numpy thread needs the GIL
    back between its calls and, at the default interval, waits up to 5 ms
    each time: on a 1M-packet capture it fell ~85 ms behind the walk.  Only
    the interval changes, never the work; the previous one is restored on
    the way out.
    """
    global _switch_depth, _switch_before
    if _switch_depth == 0:
        _switch_before = sys.getswitchinterval()
        sys.setswitchinterval(min(_QUICK_SWITCH, _switch_before))
    _switch_depth += 1
    try:
        yield
    finally:
        _switch_depth -= 1
        if _switch_depth == 0:
            sys.setswitchinterval(_switch_before)


# Bytes of each frame ``Heads`` keeps: Ethernet + VLAN + IPv6 + TCP with options fit in most frames.
HEAD_BYTES = 96

# glibc raises its mmap threshold to the size of a freed mmap'd block, up to this.
_GLIBC_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
# Work smaller than this gains nothing from reuse_freed_memory().
BIG_WORK = 100_000


def _glibc_mallopt():
    """glibc's ``mallopt`` (None elsewhere: musl, macOS, Windows)."""
    try:
        import ctypes
        f = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, ImportError):
        return None
    f.argtypes, f.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return f


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


_MALLOPT = _glibc_mallopt() if _is_glibc() else None
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_ALL = 2**31 - 1                   # mallopt takes a C int
_depth = 0                              # small_pages() contexts open
_holding = False


def reuse_freed_memory() -> None:
    """Let the allocator reuse freed memory for big arrays instead of mapping fresh pages.

    glibc gives blocks above its mmap threshold (128 KiB at start) their own
    fresh mapping each time, faulted in page by page.  Raising the threshold
    to 32 MiB serves the analysis' many 1-30 MB arrays from the heap, and
    while the work lasts freed heap memory is kept rather than handed back
    to the kernel (which would fault it in again moments later): on a
    1M-packet capture ~50k fewer page faults, ~0.08 s.  Inside
    ``small_pages()`` only: its end restores glibc's usual trimming, so the
    memory goes back once the load is done.  Called only for big inputs.

    Without ``mallopt``: one allocation of just under 32 MiB, never touched
    (so it costs no pages) and freed at once, raises glibc's dynamic threshold.
    """
    global _holding
    if _MALLOPT is not None and _depth > 0:
        _MALLOPT(_M_MMAP_THRESHOLD, _GLIBC_MMAP_THRESHOLD_MAX)
        _MALLOPT(_M_TRIM_THRESHOLD, _KEEP_ALL)
        _holding = True
        return
    np.empty(_GLIBC_MMAP_THRESHOLD_MAX - (1 << 16), dtype=np.uint8)


def _let_go_of_freed_memory() -> None:
    """Trim as glibc does once its mmap threshold is 32 MiB (twice that, 64 MiB)."""
    global _holding
    if _holding:
        _MALLOPT(_M_TRIM_THRESHOLD, 2 * _GLIBC_MMAP_THRESHOLD_MAX)
        _holding = False


def _glibc_heap_calls():
    """glibc's ``malloc``, ``memset`` and ``free`` through ctypes (which lets go of the GIL)."""
    import ctypes
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.memset.restype, libc.memset.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    libc.free.restype, libc.free.argtypes = None, [ctypes.c_void_p]
    return libc.malloc, libc.memset, libc.free


_WARM_BLOCK = 16 * 1024 * 1024          # under the 32 MiB mmap threshold: heap memory


def holding_freed_memory() -> bool:
    """True while ``reuse_freed_memory()`` keeps freed memory for reuse."""
    return _holding


def warm_heap(nbytes: int) -> None:
    """Fault in about ``nbytes`` of heap memory and free it again, kept for reuse.

    Only while ``reuse_freed_memory()`` holds freed memory (else a no-op).
    Meant for the main thread while another thread does the sequential
    record walk: the first big arrays of the index tier then reuse pages
    already faulted in on the idle core instead of faulting them in (on a
    1M-packet capture ~0.07 s).  Plain ``malloc`` from the main thread,
    because glibc serves each thread from an arena of its own (so the TCP
    analysis threads do not gain from it).  Touches no data.
    """
    if not holding_freed_memory():
        return
    malloc, memset, free = _glibc_heap_calls()
    blocks = []
    try:
        for _ in range(nbytes // _WARM_BLOCK):
            block = malloc(_WARM_BLOCK)
            if not block:
                break
            memset(block, 0, _WARM_BLOCK)
            blocks.append(block)
    finally:
        for block in blocks:
            free(block)


class Gather:
    """Integer reads at arrays of absolute offsets into ``buf``."""

    def __init__(self, buf: bytes | bytearray | memoryview):
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
        self.h = np.ascontiguousarray(heads) if usable else g.raw(start, width)
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
