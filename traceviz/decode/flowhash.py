"""A flow hash: which partition each frame of a big capture belongs to.

A capture bigger than memory is cut into partitions by connection, and each
partition is analysed on its own; so every frame of a connection must land in
the same partition, whichever file or chunk it was read from and whichever
process reads it.  The hash is of the canonical 5-tuple: the protocol and the
two endpoints (address, port), in an order that does not depend on who sent
the frame.  Address texts are hashed with BLAKE2b (Python's ``hash`` is
salted per process); the rest is splitmix64 on numpy columns.

Frames outside a TCP connection or UDP flow go where Wireshark would count
them: an ICMP error with the flow it quotes (it gets that flow's
``tcp.stream``), other IP frames by their address pair and protocol, frames
that are not IP at all to partition 0.
"""

from __future__ import annotations

import hashlib

import numpy as np

TCP, UDP = 6, 17
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit reaches every output bit."""
    x = np.asarray(x, dtype=np.uint64) + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def address_hash(text: str) -> int:
    """A stable 64-bit hash of an address text (the same in every process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _tuple_hash(a: np.ndarray, pa: np.ndarray, b: np.ndarray, pb: np.ndarray, proto: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        ea = _mix(a ^ (pa.astype(np.uint64) << np.uint64(40)))
        eb = _mix(b ^ (pb.astype(np.uint64) << np.uint64(40)))
        lo, hi = np.minimum(ea, eb), np.maximum(ea, eb)
        return _mix(lo ^ _mix(hi + proto.astype(np.uint64)))


def flow_hashes(idx) -> np.ndarray:
    """uint64 per frame of a ``decode.index.PacketIndex`` (see the module doc)."""
    from traceviz.decode.tcp.flows import icmp_quotes

    n = len(idx)
    addr = np.array([address_hash(a) for a in idx.addrs] + [0], dtype=np.uint64)   # code -1 -> 0
    src = addr[np.asarray(idx.src, np.int64)]
    dst = addr[np.asarray(idx.dst, np.int64)]
    proto = np.asarray(idx.proto, np.int64)
    ip_proto = np.asarray(idx.ip_proto if idx.ip_proto is not None else idx.proto, np.int64)
    flow = (proto == TCP) | (proto == UDP)
    sport = np.where(flow, np.asarray(idx.sport, np.int64), 0)
    dport = np.where(flow, np.asarray(idx.dport, np.int64), 0)
    out = _tuple_hash(src, sport, dst, dport, np.where(flow, proto, ip_proto & 0xFF))
    out[np.asarray(idx.ipver) == 0] = 0
    for row, qproto, qsrc, qdst, qsport, qdport in icmp_quotes(idx):
        out[row] = _tuple_hash(*(np.array([v], dtype=np.uint64) for v in
                                 (address_hash(qsrc), qsport, address_hash(qdst), qdport, qproto)))[0]
    return out if n else np.zeros(0, np.uint64)


def partitions(idx, count: int) -> np.ndarray:
    """int32 partition (0 .. count-1) per frame."""
    if count <= 1:
        return np.zeros(len(idx), np.int32)
    return (flow_hashes(idx) % np.uint64(count)).astype(np.int32)
