"""Process-wide settings that make loading a big capture faster, in one place.

Loading a million-packet capture makes a few hundred numpy arrays of 1-100 MB
in a few seconds.  Three process-wide settings change how much of that time
goes to the kernel rather than to the work:

- numpy's transparent-huge-page switch: numpy asks for huge pages on every
  array of 4 MB or more; where the kernel compacts memory to find them
  (``defrag=madvise``, Debian's default) each page fault is slow.  Plain
  4 KiB pages measured ~0.3 s quicker on 1M packets.
- glibc's malloc thresholds (``mallopt``): above its mmap threshold glibc
  maps fresh pages for every big block and hands them back on free; raising
  the threshold to 32 MiB and keeping freed memory reuses pages already
  faulted in (~50k fewer page faults, ~0.08 s).
- the GIL switch interval: while one thread walks the records in Python and
  another reads their headers with numpy, a 0.2 ms hand-over keeps the numpy
  thread from waiting up to 5 ms for each call.

- the cyclic garbage collector: a load makes millions of small objects
  (events, rows, dicts) and cycles among them are rare, but every 700
  allocations the collector walks the young ones and, every hundred of those
  walks, all of them: ~2 of 12 CPU s on a million packets of real traffic.
  It is paused while a big load runs; what cycles the load made are
  collected by the first collection after it.

One more knob is not process-wide: how many processes the payload tier
uses (``workers``).  Its connections are independent, so on a big capture
they are split in shares decoded side by side in forked processes
(``assemble/parallel.py``); ``TRACEVIZ_WORKERS=1`` keeps everything in one.

``loading(nbytes)`` applies all four around one ``load()`` and restores
them when the last load running in the process is done.  Only the loader
uses it; nothing else in traceviz changes process-wide state.  A library
user's own settings are what they are again after ``load()`` returns, and
two loads in two threads share one application (a count under a lock), so
neither restores a setting while the other still relies on it.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys
import threading
from typing import Iterator

# Inputs smaller than this gain nothing from the malloc and GIL settings.
BIG_INPUT = 32 * 1024 * 1024
# glibc raises its mmap threshold to the size of a freed mmap'd block, up to this.
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_ALL = 2**31 - 1                   # mallopt takes a C int
_QUICK_SWITCH = 0.0002                  # seconds
_WARM_BLOCK = 16 * 1024 * 1024          # under the mmap threshold: heap memory

_lock = threading.Lock()
_users = 0                              # loads running now
_big_users = 0                          # of those, big ones (malloc and GIL settings)
_saved: dict = {}


def _hugepage_switch():
    """numpy's switch for madvise(MADV_HUGEPAGE) (a private API: None if absent)."""
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return getattr(importlib.import_module(name), "_set_madvise_hugepage", None)
        except ImportError:
            continue
    return None


def _glibc_mallopt():
    """glibc's ``mallopt`` (None elsewhere: musl, macOS, Windows)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return None
        import ctypes
        f = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, ImportError, ValueError):
        return None
    f.argtypes, f.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return f


_SET_HUGEPAGE = None
_MALLOPT = None
_probed = False


def _probe() -> None:
    global _SET_HUGEPAGE, _MALLOPT, _probed
    if not _probed:
        _SET_HUGEPAGE, _MALLOPT, _probed = _hugepage_switch(), _glibc_mallopt(), True


@contextlib.contextmanager
def loading(nbytes: int = 0) -> Iterator[None]:
    """The settings above, for one load of an input of ``nbytes``."""
    _enter(nbytes >= BIG_INPUT)
    try:
        yield
    finally:
        _leave(nbytes >= BIG_INPUT)


def _enter(big: bool) -> None:
    global _users, _big_users
    with _lock:
        _probe()
        if _users == 0 and _SET_HUGEPAGE is not None:
            _saved["hugepage"] = _SET_HUGEPAGE(False)
        _users += 1
        if big:
            if _big_users == 0:
                _saved["switch"] = sys.getswitchinterval()
                sys.setswitchinterval(min(_QUICK_SWITCH, _saved["switch"]))
                _saved["gc"] = gc.isenabled()
                gc.disable()
                if _MALLOPT is not None:
                    _MALLOPT(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                    _MALLOPT(_M_TRIM_THRESHOLD, _KEEP_ALL)
            _big_users += 1


def _leave(big: bool) -> None:
    global _users, _big_users
    with _lock:
        if big:
            _big_users -= 1
            if _big_users == 0:
                sys.setswitchinterval(_saved.pop("switch"))
                if _saved.pop("gc"):
                    gc.enable()
                if _MALLOPT is not None:
                    # Trim as glibc does once its mmap threshold is 32 MiB (twice that).
                    _MALLOPT(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_MAX)
        _users -= 1
        if _users == 0 and _SET_HUGEPAGE is not None:
            _SET_HUGEPAGE(_saved.pop("hugepage", True))


def hand_back_freed_memory() -> None:
    """Give the kernel the heap memory freed so far (glibc's ``malloc_trim``), inside a big load.

    For the point where a load lets go of more than it will allocate again (the index and
    TCP tiers' columns once the tables and the plan are made: ~350 MB on 1M packets), so
    that memory does not add to the peak still to come.  What is allocated after faults in
    afresh (~0.05 s for that much)."""
    if not holding_freed_memory():
        return
    import ctypes
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


def holding_freed_memory() -> bool:
    """True while a big load keeps freed heap memory for reuse."""
    return _big_users > 0 and _MALLOPT is not None


def warm_heap(nbytes: int, between=None) -> None:
    """Fault in about ``nbytes`` of heap memory and free it again, kept for reuse.

    Only inside a big load (else a no-op).  Meant for the main thread while
    another thread walks the records: the index tier's first big arrays then
    reuse pages faulted in on the idle core (on 1M packets ~0.07 s).  Plain
    ``malloc`` through ctypes, which lets go of the GIL; glibc serves each
    thread from an arena of its own, so it must be the loading thread.
    ``between``, called after each block, is what that thread must not put
    off meanwhile (handing back the file's pages the walk is done with).
    """
    if not holding_freed_memory():
        return
    import ctypes
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.memset.restype, libc.memset.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    libc.free.restype, libc.free.argtypes = None, [ctypes.c_void_p]
    blocks = []
    try:
        for _ in range(nbytes // _WARM_BLOCK):
            block = libc.malloc(_WARM_BLOCK)
            if not block:
                break
            libc.memset(block, 0, _WARM_BLOCK)
            blocks.append(block)
            if between is not None:
                between()
    finally:
        for block in blocks:
            libc.free(block)


# Fewer connections to decode than this are not worth a fork (~20 ms with a big heap).
PARALLEL_MIN_CONNECTIONS = 2000
# QUIC flows cost ~0.7 ms each (the Initials decrypted, the hellos read): fewer than this
# are not worth a child of their own.
PARALLEL_MIN_QUIC_FLOWS = 100


def workers(connections: int, least: int = PARALLEL_MIN_CONNECTIONS) -> int:
    """How many processes should share a job of ``connections`` pieces (payload connections).

    One where forking is unavailable or unsafe (not Linux; other threads
    running, e.g. two loads in two threads), for jobs of fewer than ``least``
    pieces, or when ``TRACEVIZ_WORKERS`` says so; else one per usable core
    (at most 8).
    """
    env = os.environ.get("TRACEVIZ_WORKERS", "").strip()
    if env:
        try:
            asked = max(1, int(env))
        except ValueError:
            asked = 1
    else:
        asked = None
    if not sys.platform.startswith("linux") or not hasattr(os, "fork") or threading.active_count() > 1:
        return 1
    if asked is not None:
        return asked
    if connections < least:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def state() -> dict:
    """The process-wide settings as they are now (for tests)."""
    _probe()
    hugepage = None
    if _SET_HUGEPAGE is not None:
        hugepage = _SET_HUGEPAGE(True)        # the call returns the old value: put it back
        _SET_HUGEPAGE(hugepage)
    return {"switchinterval": sys.getswitchinterval(), "hugepage": hugepage, "loads": _users,
            "gc": gc.isenabled()}
