"""The lab's userspace delay/loss relay: Ethernet frames between TAP devices.

This kernel has no ``tc netem``, so the path delay comes from here: each lab
link is a pair of TAP devices (one end moved into each namespace) and this
process forwards every frame from one to the other through a timed queue.

The core (``DelayLine``, ``DropRules``) is sans-I/O: frames and times in,
frames out, so the tests drive it without root.  ``serve`` is the I/O loop,
run as its own process (``python relay.py --link ...``) so the scenario
drivers' work never delays a frame.

Hand-written rather than a library: nothing on PyPI forwards TAP frames with a
timed queue, and the logic is a few dozen lines.
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import json
import os
import random
import selectors
import signal
import struct
import sys
import time
from dataclasses import dataclass, field

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


# ---------------------------------------------------------------- frame facts

def tcp_syn_dport(frame: bytes) -> int | None:
    """The destination port if ``frame`` is Ethernet/IPv4/TCP with SYN set and ACK clear."""
    seg = tcp_segment(frame)
    if seg is not None and seg["flags"] & 0x02 and not seg["flags"] & 0x10:
        return seg["dport"]
    return None


def tcp_segment(frame: bytes) -> dict | None:
    """Ethernet/IPv4/TCP header facts: ports, raw seq, flags and payload length (None if not TCP/IPv4)."""
    if len(frame) < 14 + 20 + 20 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ip[9] != 6 or ihl < 20 or len(ip) < ihl + 20:
        return None
    total = struct.unpack("!H", ip[2:4])[0]
    tcp = ip[ihl:]
    offset = (tcp[12] >> 4) * 4
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    return {"sport": sport, "dport": dport, "seq": seq, "flags": tcp[13],
            "len": max(total - ihl - offset, 0), "flow": (ip[12:16], sport, ip[16:20], dport)}


# ---------------------------------------------------------------- sans-I/O core

@dataclass
class DropRules:
    """Which frames a link direction drops.

    ``syn_ports`` maps a TCP destination port to how many client SYNs to drop
    (-1: all of them, a server that never answers).  ``loss`` is the random
    loss probability for every other frame, from a seeded generator so a
    re-record drops the same way.  ``data`` drops chosen data segments: each
    rule ``{"sport": 443, "offset": 60000}`` drops, once, the first segment
    from that source port carrying the byte at that stream offset (0 = the
    first byte after the SYN), so its retransmission gets through.  Each such
    drop is logged with its offset and length, and so is every segment of the
    same flow forwarded after it until one carries the dropped bytes again
    (``after``): when the bytes behind the hole arrived, and when it was filled.
    """
    syn_ports: dict[int, int] = field(default_factory=dict)
    loss: float = 0.0
    seed: int = 1
    data: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self._rng = random.Random(self.seed)
        self._syn_left = dict(self.syn_ports)
        self._data_left = [dict(r) for r in self.data]
        self._isn: dict[tuple, int] = {}
        self._watch: dict[tuple, dict] = {}     # flow -> the drop whose hole is still open

    def drop(self, frame: bytes, now: float) -> bool:
        if self.data and self._data_rule(frame, now):
            return True
        port = tcp_syn_dport(frame)
        left = self._syn_left.get(port, 0) if port is not None else 0
        if left:
            if left > 0:
                self._syn_left[port] = left - 1
            self.dropped.append({"t": now, "reason": "syn-rule", "dport": port})
            return True
        if self.loss and self._rng.random() < self.loss:
            self.dropped.append({"t": now, "reason": "random-loss", "dport": port})
            return True
        return False

    def _data_rule(self, frame: bytes, now: float) -> bool:
        seg = tcp_segment(frame)
        if seg is None:
            return False
        flow = seg["flow"]
        if seg["flags"] & 0x02:                          # SYN or SYN-ACK: the flow's first sequence number
            self._isn[flow] = seg["seq"]
            return False
        if flow not in self._isn or not seg["len"]:
            return False
        offset = (seg["seq"] - self._isn[flow] - 1) % (1 << 32)
        end = offset + seg["len"]
        watched = self._watch.get(flow)
        if watched is not None:
            watched["after"].append({"wall": time.time(), "offset": offset, "len": seg["len"]})
            if offset <= watched["offset"] < end:
                del self._watch[flow]
            return False
        for rule in self._data_left:
            if rule["sport"] == seg["sport"] and offset <= rule["offset"] < end:
                self._data_left.remove(rule)
                entry = {"t": now, "wall": time.time(), "reason": "data-rule", "sport": seg["sport"],
                         "dport": seg["dport"], "offset": offset, "len": seg["len"], "after": []}
                self.dropped.append(entry)
                self._watch[flow] = entry
                return True
        return False


class DelayLine:
    """One direction of a link: a FIFO that releases each frame ``delay`` seconds after it arrived.

    With ``rate`` (bits/s) a frame also waits for the ones before it to be
    serialised, like a real bottleneck link; without it the line has no
    bandwidth limit.
    """

    def __init__(self, delay: float, rate: float | None = None, rules: DropRules | None = None):
        self.delay = delay
        self.rate = rate
        self.rules = rules or DropRules()
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.busy_until = 0.0
        self.forwarded = 0

    def push(self, frame: bytes, now: float) -> bool:
        """Take a frame that arrived at ``now``; False if the rules dropped it."""
        if self.rules.drop(frame, now):
            return False
        leave = now
        if self.rate:
            leave = max(now, self.busy_until) + len(frame) * 8 / self.rate
            self.busy_until = leave
        self.queue.append((leave + self.delay, frame))
        return True

    def next_due(self) -> float | None:
        return self.queue[0][0] if self.queue else None

    def pop_due(self, now: float) -> list[bytes]:
        out = []
        while self.queue and self.queue[0][0] <= now:
            out.append(self.queue.popleft()[1])
        self.forwarded += len(out)
        return out


@dataclass
class LinkSpec:
    """A lab link: TAP ``a`` <-> TAP ``b``, one-way ``delay_ms`` each way."""
    a: str
    b: str
    delay_ms: float = 12.5
    loss: float = 0.0
    drop_syn: dict[int, int] = field(default_factory=dict)
    rate_bps: float | None = None
    seed: int = 1
    drop_data: list[dict] = field(default_factory=list)

    def to_arg(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_arg(cls, text: str) -> "LinkSpec":
        raw = json.loads(text)
        raw["drop_syn"] = {int(k): int(v) for k, v in raw.get("drop_syn", {}).items()}
        return cls(**raw)

    def lines(self) -> tuple[DelayLine, DelayLine]:
        """(a->b, b->a).  SYN rules apply towards either end: only the SYN's dport matters."""
        def line(seed):
            rules = DropRules(dict(self.drop_syn), self.loss, seed, [dict(r) for r in self.drop_data])
            return DelayLine(self.delay_ms / 1000.0, self.rate_bps, rules)
        return line(self.seed), line(self.seed + 1)


# ---------------------------------------------------------------- I/O

def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def wait_time(remaining: float) -> float:
    """How long to block: epoll rounds up to whole milliseconds and wakes late,
    so sleep until ~1.5 ms before a frame is due, then poll (a short spin) to
    release it within tens of microseconds."""
    if remaining > 0.002:
        return remaining - 0.0015
    return 0.0


def realtime() -> None:
    """Ask for a real-time priority: on a busy machine a late wake-up is path jitter.
    The relay sleeps almost all the time, so this costs the other processes little."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (AttributeError, PermissionError, OSError):
        pass


def serve(links: list[LinkSpec], stats_path: str | None = None) -> None:
    """Open every link's TAPs, say ``ready``, forward until SIGTERM/SIGINT, then write stats."""
    sel = selectors.DefaultSelector()
    routes = []    # (link, a->b line, b->a line, fd_a, fd_b)
    for link in links:
        fa, fb = open_tap(link.a), open_tap(link.b)
        ab, ba = link.lines()
        routes.append((link, ab, ba, fa, fb))
        sel.register(fa, selectors.EVENT_READ, (ab, fb))
        sel.register(fb, selectors.EVENT_READ, (ba, fa))
    outs = [(ab, fb) for _, ab, _, _, fb in routes] + [(ba, fa) for _, _, ba, fa, _ in routes]

    running = True

    def stop(*_):
        nonlocal running
        running = False
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    realtime()
    print("ready", flush=True)

    while running:
        dues = [d for line, _ in outs if (d := line.next_due()) is not None]
        timeout = wait_time(min(dues) - time.monotonic()) if dues else 0.5
        for key, _ in sel.select(timeout):
            line, _out = key.data
            while True:
                try:
                    frame = os.read(key.fd, 65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break   # the TAP went down (namespace deleted): nothing to forward
                line.push(frame, time.monotonic())
        now = time.monotonic()
        for line, out in outs:
            for frame in line.pop_due(now):
                try:
                    os.write(out, frame)
                except OSError:
                    pass    # the far end is down; a real wire would lose it too

    if stats_path:
        stats = [{"a": link.a, "b": link.b, "delay_ms": link.delay_ms,
                  "a_to_b": {"forwarded": ab.forwarded, "dropped": ab.rules.dropped},
                  "b_to_a": {"forwarded": ba.forwarded, "dropped": ba.rules.dropped}}
                 for link, ab, ba, _, _ in routes]
        with open(stats_path, "w") as fh:
            json.dump(stats, fh, indent=1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--link", action="append", required=True, help="a LinkSpec as JSON")
    p.add_argument("--stats", help="write forwarded/dropped counts here on exit")
    args = p.parse_args(argv)
    serve([LinkSpec.from_arg(x) for x in args.link], args.stats)


if __name__ == "__main__":
    sys.exit(main())
