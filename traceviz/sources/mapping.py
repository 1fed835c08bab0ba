"""Map a big file into memory without dying when another process truncates it.

Mapping a capture costs nothing where reading it costs a second per GB, but
a mapped file that another process truncates kills the reader with SIGBUS
at its next touch of a page that is gone (Python cannot turn that into an
exception).  So a file is mapped only under a read lease (``F_SETLEASE``):
before anyone may open it for writing or truncate it, the kernel tells us
(SIGIO) and holds the other process back; we then copy the mapping into
anonymous memory and move that memory over the mapping's own addresses
(``mremap``), so every view of it keeps working, and let go of the lease.
The truncation goes ahead; our bytes stay as they were when we read them.
(Copying each page privately is not enough: truncation unmaps private
copies too.)

When no lease can be had -- someone has the file open for writing right
now (a live capture), the file system has no leases, or we are not in the
main thread (only it may handle signals) -- the file is read into memory
instead: slower, never a SIGBUS.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import signal
import threading
import weakref

_live: dict[int, tuple] = {}        # id(map) -> (weakref to map, file object)
_lock = threading.Lock()
_installed = False
_releasing = False                  # release_pages is between its check and its advice
_deferred = False                   # ... and a lease broke meanwhile


def map_file(f):
    """A read-only view of the whole open file ``f``: a private mapping under a read lease,
    or ``bytes`` read from it when no lease can be had."""
    if not _lease(f):
        f.seek(0)
        return f.read()
    m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    keep = os.dup(f.fileno())                # the lease lives as long as this descriptor
    with _lock:
        _live[id(m)] = (weakref.ref(m), keep)
    weakref.finalize(m, _forget, id(m), keep)
    return m


def mappable(buf) -> bool:
    """Whether ``buf`` is a map whose pages ``release_pages`` may hand back (if still backed)."""
    return isinstance(buf, mmap.mmap) and not buf.closed and hasattr(buf, "madvise")


def release_pages(buf, start: int = 0, length: int | None = None) -> None:
    """Let the kernel take back the pages of ``buf`` (a map from ``map_file``) this process has
    touched -- all of them, or those of bytes ``start`` to ``start + length`` (whole pages: the
    first and last are taken even when the range only covers part of them).  They stay in the
    page cache, and a later read faults them in again, cheaply.

    A loader calls it between tiers, and a walk over the whole file once per window of it
    (``gather.windows``), so the file it walked does not sit in its resident memory (741 MB
    on a million packets) while it builds tables.  Only a map still backed by the file: once
    privatised (the lease broke), its pages are the only copy.  The check and the advice must
    not be split by the lease breaking: SIGIO is held in this thread meanwhile, and should
    another thread take it (numpy's BLAS threads do not block it), the handler that Python then
    runs here, between two steps, waits for the advice to be given (``_lease_broken``)."""
    global _releasing, _deferred
    if not mappable(buf) or threading.current_thread() is not threading.main_thread():   # where SIGIO is handled
        return
    size = len(buf)
    end = size if length is None else min(size, start + length)
    start = max(start, 0) // mmap.PAGESIZE * mmap.PAGESIZE      # madvise wants a page-aligned start
    if start >= end:
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGIO})
    _releasing = True
    try:
        with _lock:
            backed = id(buf) in _live
        if backed:
            buf.madvise(mmap.MADV_DONTNEED, start, end - start)    # the kernel rounds the end up
    except (OSError, ValueError):
        pass                                    # advice only: the pages stay, nothing else changes
    finally:
        _releasing = False
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if _deferred:
            _deferred = False
            _lease_broken(signal.SIGIO, None)


def _lease(f) -> bool:
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        fcntl.fcntl(f.fileno(), fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError:                          # a writer has it open, or no leases here
        return False
    if not _installed:
        signal.signal(signal.SIGIO, _lease_broken)
        _installed = True
    return True


def _lease_broken(signum, frame) -> None:
    """Someone wants to write or truncate a file we map: make every page ours, then let go.

    In the middle of ``release_pages`` (this thread, between two of its steps) it only leaves
    word, and ``release_pages`` calls it when done: the other process waits for the lease either
    way, so a map it found backed stays backed until its advice is given."""
    global _deferred
    if _releasing:
        _deferred = True
        return
    with _lock:
        entries = list(_live.items())
    for key, (ref, fd) in entries:
        m = ref()
        if m is not None and not m.closed:
            _privatise(m)
        _release(fd)
        with _lock:
            _live.pop(key, None)


def _privatise(m: mmap.mmap) -> None:
    """Replace the file's pages under ``m`` by an anonymous copy, at the same addresses."""
    import ctypes
    size = len(m)
    if not size:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = libc.mremap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
    view = (ctypes.c_char * size).from_buffer(m)
    here = ctypes.addressof(view)
    copy = libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if copy in (None, ctypes.c_void_p(-1).value):
        del view
        return                                 # no memory for a copy: the lease ends all the same
    ctypes.memmove(copy, here, size)
    moved = libc.mremap(copy, size, size, _MREMAP_MAYMOVE | _MREMAP_FIXED, here)
    del view
    if moved != here:
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.munmap(copy, size)


_MREMAP_MAYMOVE, _MREMAP_FIXED = 1, 2


def _release(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    except OSError:
        pass


def _forget(key: int, fd: int) -> None:
    with _lock:
        _live.pop(key, None)
    _release(fd)
    try:
        os.close(fd)
    except OSError:
        pass
