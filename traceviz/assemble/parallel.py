"""The payload tier on every core: connections decoded in shares, side by side.

TCP connections are independent once the index and TCP tiers have run, so
the payload tier's connections are cut into contiguous shares of about equal
cost (``Plan.cost``) and each share is reassembled, decoded and turned into
rows (``capture.payload_rows``) by a forked child, while this process
waits for them (a share it decoded itself would leave it millions of
objects to free, and their memory in the pages of the tables still to come).
A child sees the parent's memory as it was at the fork (the capture's bytes,
the TCP columns) without a copy and sends back only its rows, pickled
through a pipe.  The shares are
joined in connection order, so the rows -- and every table made of them --
are the ones a single process makes (``TRACEVIZ_WORKERS=1``).  One more
child may do other work beside them (``_forks.Beside``, forked before the shares
are planned, handed to ``start(..., beside=...)`` so that its pipe is read
while the shares run): the loader runs QUIC's machines there.

Processes rather than threads: decoding is pure Python, and threads would
take turns on one core.  A child that fails is not fatal: its share is
decoded again here.
"""

from __future__ import annotations

import threading

from traceviz import _forks, _tuning
from traceviz._forks import Beside
from traceviz.assemble.capture import Context, PayloadRows, payload_rows
from traceviz.decode.streams import Plan, decode_planned


def decode_rows(plan: Plan, buf, ctx: Context, keylog=None, rsa_key=None,
                debug: bool = False) -> tuple[PayloadRows, set[int]]:
    """The rows of every connection ``plan`` decodes (``ctx``: what the rows need of the
    whole capture), and the connections decoded."""
    return start(plan, buf, ctx, keylog, rsa_key, debug).collect()


class Pending:
    """Shares being decoded by forked children: ``collect()`` waits for their rows.

    Each child's pipe is read by a thread of its own from the moment it is forked, so a child
    never waits on a full pipe while this process does other work (QUIC's machines, say)."""

    def __init__(self, shares: list[list[int]], work, debug: bool, beside: Beside | None = None):
        self.shares, self.work, self.debug, self.beside = shares, work, debug, beside
        self.got: list = [None] * len(shares)
        self.readers: list[threading.Thread] = []
        if len(shares) >= 2:
            # Every share in a child, none here: the machines' objects then never exist in this
            # process, which would spend ~0.3 s freeing them (they hold reference cycles) and keep
            # their memory.
            children = [_forks.start(work, share) for share in shares]
            # The readers after every fork: a child forked beside a running thread could inherit
            # a lock that thread held.
            for i, child in enumerate(children):
                if child is not None:
                    reader = threading.Thread(target=self._read, args=(i, child), daemon=True)
                    reader.start()
                    self.readers.append(reader)
        if beside is not None:
            beside.follow()

    def _read(self, i: int, child: tuple[int, int]) -> None:
        self.got[i] = _forks.collect(*child)

    def collect(self) -> tuple[PayloadRows, set[int]]:
        if len(self.shares) < 2:
            return self.work(self.shares[0]) if self.shares else (PayloadRows(), set())
        for reader in self.readers:
            reader.join()
        rows, decoded = PayloadRows(), set()
        for share, got in zip(self.shares, self.got):
            if got is None or got[0] != "ok":
                if self.debug and got is not None:
                    raise RuntimeError(f"payload worker failed: {got[1]}")
                got = ("ok", self.work(share))
            more, done = got[1]
            rows.extend(more)
            decoded |= done
        return rows, decoded


def start(plan: Plan, buf, ctx: Context, keylog=None, rsa_key=None, debug: bool = False,
          beside: Beside | None = None) -> Pending:
    """``decode_rows`` begun: the shares forked off (when there are several), their rows to
    ``collect()`` later; ``beside``, work forked off before (``Beside``), its pipe read
    from now on."""
    conns = sorted(plan.kinds)
    shares = split(conns, plan.cost(), _tuning.workers(len(conns)))

    def work(share: list[int]) -> tuple[PayloadRows, set[int]]:
        results = decode_planned(plan, buf, share, keylog, rsa_key, debug)
        return payload_rows(results, ctx), set(results)

    return Pending(shares, work, debug, beside)


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
