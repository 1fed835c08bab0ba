"""The payload tier on every core: connections decoded in shares, side by side.

TCP connections are independent once the index and TCP tiers have run, so
the payload tier's connections are cut into contiguous shares of about equal
cost (``Plan.cost``) and each share is reassembled, decoded and turned into
rows (``capture.payload_rows``) by a forked child, while this process
waits for them (a share it decoded itself would leave it millions of
objects to free).  A child sees the parent's memory
as it was at the fork (the capture's bytes, the TCP columns) without a copy
and sends back only its rows, pickled through a pipe.  The shares are
joined in connection order, so the rows -- and every table made of them --
are the ones a single process makes (``TRACEVIZ_WORKERS=1``).

Processes rather than threads: decoding is pure Python, and threads would
take turns on one core.  A child that fails is not fatal: its share is
decoded again here.
"""

from __future__ import annotations

import os
import pickle
import threading

from traceviz import _tuning
from traceviz.assemble.capture import Context, PayloadRows, payload_rows
from traceviz.decode.streams import Plan, decode_planned


def decode_rows(plan: Plan, buf, ctx: Context, keylog=None, rsa_key=None,
                debug: bool = False) -> tuple[PayloadRows, set[int]]:
    """The rows of every connection ``plan`` decodes (``ctx``: what the rows need of the
    whole capture), and the connections decoded."""
    conns = sorted(plan.kinds)
    shares = split(conns, plan.cost(), _tuning.workers(len(conns)))

    def work(share: list[int]) -> tuple[PayloadRows, set[int]]:
        results = decode_planned(plan, buf, share, keylog, rsa_key, debug)
        return payload_rows(results, ctx), set(results)

    if len(shares) < 2:
        return work(shares[0]) if shares else (PayloadRows(), set())
    # Every share in a child, none here: the machines' objects then never exist in this process,
    # which would spend ~0.3 s freeing them (they hold reference cycles) and keep their memory.
    children = [_fork(work, share) for share in shares]
    rows, decoded = PayloadRows(), set()
    for share, child in zip(shares, children):
        got = _collect(*child) if child is not None else None
        if got is None or got[0] != "ok":
            if debug and got is not None:
                raise RuntimeError(f"payload worker failed: {got[1]}")
            got = ("ok", work(share))
        more, done = got[1]
        rows.extend(more)
        decoded |= done
    return rows, decoded


def split(conns: list[int], cost: dict[int, int], n: int) -> list[list[int]]:
    """``conns`` (sorted) cut into at most ``n`` contiguous shares of about equal total cost."""
    if n <= 1 or len(conns) < 2:
        return [conns] if conns else []
    total = sum(cost.get(c, 1) for c in conns)
    shares, current, acc = [], [], 0
    for c in conns:
        current.append(c)
        acc += cost.get(c, 1)
        if acc >= total * (len(shares) + 1) / n and len(shares) < n - 1:
            shares.append(current)
            current = []
    if current:
        shares.append(current)
    return shares


def _fork(work, share):
    """Run ``work(share)`` in a forked child: (pid, read end of its pipe), or None if fork failed."""
    try:
        r, w = os.pipe()
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:                                   # the child: compute, send, leave without cleanup
        try:
            os.close(r)
            try:
                data = pickle.dumps(("ok", work(share)), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException as exc:           # noqa: BLE001 - reported to the parent, which redoes the share
                data = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def _collect(pid: int, r: int):
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
