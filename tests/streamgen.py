"""Byte streams as a real capture: synthetic TCP conversations written as a pcap.

Tests of the payload tier give each connection's messages as ``(dir, bytes)``
and load the file through the whole pipeline, as a user's capture is.
"""

from __future__ import annotations

from pathlib import Path

from scapy.all import IP, TCP, Ether, wrpcap


def write_conversations(path: Path, conns: dict[int, list[tuple[str, bytes]]], sport: int = 5000,
                        dport: int = 443, t0: float = 1_700_000_000.0) -> Path:
    """One TCP connection per key (client 10.0.0.1:sport+conn, server 10.0.0.2:dport):
    SYN, SYN-ACK, ACK, then one segment per message, 10 ms apart."""
    frames, t = [], t0
    for conn, msgs in conns.items():
        ends = {"c2s": ("10.0.0.1", "10.0.0.2", sport + conn, dport), "s2c": ("10.0.0.2", "10.0.0.1", dport, sport + conn)}
        seq = {"c2s": 1000, "s2c": 5000}

        def send(d, flags, data=b""):
            nonlocal t
            src, dst, sp, dp = ends[d]
            other = "s2c" if d == "c2s" else "c2s"
            pkt = Ether() / IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags, seq=seq[d],
                                                       ack=seq[other] if "A" in flags else 0) / data
            pkt.time = t
            frames.append(pkt)
            t += 0.01
            seq[d] += len(data) + (1 if "S" in flags else 0)

        send("c2s", "S")
        send("s2c", "SA")
        send("c2s", "A")
        for d, data in msgs:
            send(d, "PA", data)
    wrpcap(str(path), frames)
    return path
