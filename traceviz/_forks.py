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
        threading.Thread(target=_reap, args=(pid,), daemon=True).start()
    try:
        return pickle.loads(data)
    except Exception:                              # noqa: BLE001 - a child killed mid-write
        return None


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
