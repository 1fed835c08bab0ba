"""Work done in a forked child, its result sent back pickled through a pipe.

For CPU-bound pure Python that would take turns on one core as threads: the
payload tier's shares of connections, the second half of a big HAR.  A child
sees the parent's memory as it was at the fork, without a copy.  Whether to
fork at all is ``_tuning.workers``' decision; a child that fails or sends
nothing readable is the caller's to redo.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
from typing import Any, Callable


def start(work: Callable[[Any], Any], arg: Any) -> tuple[int, int] | None:
    """Run ``work(arg)`` in a forked child: (pid, read end of its pipe), or None if fork failed."""
    try:
        r, w = os.pipe()
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:                                   # the child: compute, send, leave without cleanup
        try:
            os.close(r)
            try:
                data = pickle.dumps(("ok", work(arg)), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException as exc:           # noqa: BLE001 - reported to the parent, which does the work itself
                data = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def collect(pid: int, r: int) -> tuple | None:
    """What the child sent (("ok", result) or ("error", text)); None if it sent nothing readable."""
    try:
        with os.fdopen(r, "rb") as f:
            data = f.read()
    finally:
        # Reaped aside: the child's exit unmaps a big address space, nothing here waits for it.
        reaper = threading.Thread(target=_reap, args=(pid,), daemon=True)
        reaper.start()
        with _reapers_lock:         # readers of several children collect at once
            _reapers[:] = [t for t in _reapers if t.is_alive()] + [reaper]    # a long session's loads add up
    try:
        return pickle.loads(data)
    except Exception:                              # noqa: BLE001 - a child killed mid-write
        return None


_reapers: list[threading.Thread] = []
_reapers_lock = threading.Lock()


def reaped() -> None:
    """Wait until the children collected so far are reaped: their reapers are threads, and
    ``_tuning.workers`` forks nothing while another thread runs."""
    with _reapers_lock:
        waiting, _reapers[:] = list(_reapers), []
    for reaper in waiting:
        reaper.join()


def _call(work):
    return work()


class Beside:
    """Work of no arguments forked off now, so that it runs while this process goes on
    (planning the TCP shares, making tables); ``result()`` is what it returned.  Without a
    fork (``fork`` False, or fork failed) or when the child failed, ``result()`` runs it
    here, so that an error is raised where the caller sees it.  No thread reads the child's
    pipe before ``follow()``, so that more children can be forked meanwhile; a child done
    sooner waits on its full pipe."""

    def __init__(self, work, fork: bool = True):
        self.work = work
        self.child = start(_call, work) if fork else None
        self.got = None
        self.reader: threading.Thread | None = None

    def follow(self) -> None:
        """Read the child's pipe from now on, in a thread (call after the last fork)."""
        if self.child is not None and self.reader is None:
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()

    def _read(self) -> None:
        self.got = collect(*self.child)

    def __enter__(self) -> Beside:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None:        # whatever stopped the caller, a child nobody reads must not wait on
            self.drop()

    def drop(self) -> None:
        """The work no longer wanted: a child no thread reads stopped and reaped (one that a
        thread reads ends by itself)."""
        if self.child is not None and self.reader is None:
            try:
                os.kill(self.child[0], signal.SIGKILL)
            except OSError:
                pass
            collect(*self.child)
        self.child = None

    def result(self):
        if self.child is not None:
            if self.reader is None:
                self._read()
            else:
                self.reader.join()
            self.child = None
        got = self.got
        return got[1] if got is not None and got[0] == "ok" else self.work()


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
