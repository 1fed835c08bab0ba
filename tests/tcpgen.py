"""Small TCP conversations written packet by packet, for the cases a test needs exactly.

``write(path, packets)`` takes ``Seg`` rows: who sends (``c`` client
10.0.0.1:40000 or ``s`` server 10.0.0.2:80), flags, sequence and
acknowledgement numbers relative to each side's ISN, payload length, the
time offset, and optional window and SACK blocks (relative to the peer).
tshark reads the result like any capture, so tests compare against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scapy.all import IP, TCP, Ether, wrpcap

CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.0.2", 80)
ISN = {"c": 1000, "s": 5000}
T0 = 1_700_000_000.0


@dataclass
class Seg:
    who: str
    flags: str
    seq: int
    ack: int
    n: int = 0
    t: float = 0.0
    win: int = 65535
    sack: tuple = field(default_factory=tuple)
    options: tuple = field(default_factory=tuple)


def handshake(t: float = 0.0, rtt: float = 0.05, win: int = 65535) -> list[Seg]:
    ok = (("SAckOK", b""),)
    return [Seg("c", "S", 0, 0, t=t, options=ok), Seg("s", "SA", 0, 1, t=t + rtt / 2, win=win, options=ok),
            Seg("c", "A", 1, 1, t=t + rtt)]


def write(path: Path, segs: list[Seg]) -> Path:
    frames = []
    for g in segs:
        (src, sport), (dst, dport) = (CLIENT, SERVER) if g.who == "c" else (SERVER, CLIENT)
        mine, peer = ISN[g.who], ISN["s" if g.who == "c" else "c"]
        opts = list(g.options)
        if g.sack:
            opts.append(("SAck", tuple(v for a, b in g.sack for v in (peer + a, peer + b))))
        payload = bytes(65 + (i % 26) for i in range(g.seq, g.seq + g.n))
        pkt = (Ether() / IP(src=src, dst=dst)
               / TCP(sport=sport, dport=dport, flags=g.flags, seq=mine + g.seq, ack=(peer + g.ack) if "A" in g.flags else 0,
                     window=g.win, options=opts) / payload)
        pkt.time = T0 + g.t
        frames.append(pkt)
    wrpcap(str(path), frames)
    return path
