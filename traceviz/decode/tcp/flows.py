"""Number TCP connections and UDP flows as Wireshark's ``tcp.stream`` / ``udp.stream``.

Input is the index tier's columns (one entry per frame, file order); output is
one stream number per frame (-1 where the frame is not in that transport).

Wireshark (``packet-tcp.c``, ``dissect_tcp``) keys a TCP conversation by the
two addresses and ports.  A new conversation -- a new ``tcp.stream`` number --
starts when a pure SYN (SYN without ACK) arrives on a 4-tuple whose current
conversation already has a base sequence number for the SYN's direction and
that base differs from the SYN's sequence number ("A new tcp session is
started with the same ports as an earlier session").  A SYN with the same ISN
is a retransmission and stays in the conversation, whether or not the old
connection was closed.  The base of a direction is set by the first packet
seen in that direction (its seq, or seq-1 when it is not a SYN) or, earlier,
by the first ACK-flagged packet of the other direction (its ack-1).  Streams
are numbered 0, 1, ... in order of their first frame.  ``udp.stream`` numbers
each address/port pair once, in order of first frame, and never splits.

Only 4-tuples with a pure SYN after their first packet can split; those (few)
go through a short Python loop over their SYNs, everything else is numpy.
"""

from __future__ import annotations

import ipaddress

import numpy as np

from traceviz.decode.numeric import factorize
from traceviz.decode.tcp.analysis import stable_order

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def endpoint_pairs(src: np.ndarray, sport: np.ndarray, dst: np.ndarray, dport: np.ndarray):
    """(tuple id, direction) per row: the unordered address/port pair and which way.

    Direction 0 is sent by the lower endpoint (address code, port), 1 by the
    higher.  Tuple ids are dense and numbered in order of first appearance.
    Hash factorisation (pandas) rather than sorting: this runs on every frame.
    """
    a = src.astype(np.int64) * 65536 + sport.astype(np.int64)
    b = dst.astype(np.int64) * 65536 + dport.astype(np.int64)
    direction = (a > b).astype(np.int8)
    lo = np.minimum(a, b)
    hi = np.maximum(a, b)
    top = int(hi.max()) + 1 if len(hi) else 1
    if len(lo) and int(lo.min()) >= 0 and top < (1 << 31):
        key = lo * top + hi            # fits an int64 as it is: one factorisation, not two
    else:
        # Dense endpoint codes first so the pair key fits in an int64.
        ends, uniq = factorize(np.concatenate([lo, hi]))
        key = ends[:len(lo)].astype(np.int64) * len(uniq) + ends[len(lo):]
    tuple_id, _ = factorize(key)
    return tuple_id.astype(np.int64), direction


def number_by_first_seen(group: np.ndarray) -> np.ndarray:
    """Renumber group ids 0.. in order of each group's first row (rows are in frame order)."""
    codes, _ = factorize(group)
    return codes.astype(np.int64)


def udp_streams(tuple_id: np.ndarray) -> np.ndarray:
    """``udp.stream`` for rows that are all UDP, in frame order."""
    return number_by_first_seen(tuple_id)


def tcp_streams(tuple_id: np.ndarray, direction: np.ndarray, flags: np.ndarray,
                seq: np.ndarray, ack: np.ndarray, passive: np.ndarray | None = None) -> np.ndarray:
    """``tcp.stream`` for rows that are all TCP, in frame order (see module doc).

    ``passive`` rows (headers quoted in ICMP errors) join or open a stream but
    never set a base sequence number or split one, as in Wireshark.
    """
    n = len(tuple_id)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = stable_order(tuple_id)
    g = tuple_id[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    if passive is None:
        passive = np.zeros(n, dtype=bool)
    pure_syn = ((flags[order] & (SYN | ACK)) == SYN) & ~passive[order]
    group_start = np.zeros(n, dtype=bool)
    group_start[starts] = True
    split = group_start.copy()
    # Groups with a pure SYN that is not their first packet may split.
    late_syn = pure_syn & ~group_start
    if late_syn.any():
        ends = np.r_[starts[1:], n]
        gidx = np.searchsorted(starts, np.flatnonzero(late_syn), side="right") - 1
        for gi in np.unique(gidx):
            s, e = starts[gi], ends[gi]
            rows = order[s:e]
            rows = rows[~passive[rows]]
            pos = np.flatnonzero(~passive[order[s:e]])
            for k in _split_points(direction[rows], flags[rows], seq[rows], ack[rows]):
                k = pos[k]
                split[s + k] = True
    conv_sorted = np.cumsum(split) - 1
    conv = np.empty(n, dtype=np.int64)
    conv[order] = conv_sorted
    return number_by_first_seen(conv)


def _split_points(direction, flags, seq, ack) -> list[int]:
    """Positions (within one 4-tuple's packets, frame order) where a new conversation starts."""
    out = []
    start = 0
    is_syn = (flags & SYN) != 0
    is_ack = (flags & ACK) != 0
    for c in np.flatnonzero(is_syn & ~is_ack):
        if c == start:
            continue
        base = _base(direction[start:c], is_syn[start:c], is_ack[start:c],
                     seq[start:c], ack[start:c], int(direction[c]))
        if base is not None and base != int(seq[c]):
            out.append(int(c))
            start = int(c)
    return out


def _base(direction, is_syn, is_ack, seq, ack, d: int):
    """The base sequence number of direction ``d`` after these packets, or None."""
    mine = np.flatnonzero(direction == d)
    theirs = np.flatnonzero((direction != d) & is_ack)
    if len(mine) == 0 and len(theirs) == 0:
        return None
    if len(theirs) == 0 or (len(mine) and mine[0] < theirs[0]):
        i = int(mine[0])
        return int(seq[i]) if is_syn[i] else (int(seq[i]) - 1) & 0xFFFFFFFF
    return (int(ack[int(theirs[0])]) - 1) & 0xFFFFFFFF


ICMP4_ERRORS = frozenset((3, 4, 5, 11, 12))    # unreachable, quench, redirect, time exceeded, parameter
ICMP6_ERRORS = frozenset((1, 2, 3, 4))         # unreachable, too big, time exceeded, parameter


def icmp_quotes(idx) -> list[tuple[int, int, int, int, int, int]]:
    """TCP/UDP headers quoted inside ICMP errors: (row, proto, src, dst, sport, dport).

    Wireshark dissects the quoted header and gives the ICMP frame the quoted
    flow's ``tcp.stream``/``udp.stream`` (creating a stream if the flow was
    never seen), so numbering must count them.  ICMP errors are rare, so this
    reads their bytes one by one: the outer IP header is found by its
    address pair (the index knows the addresses, not the offset), the quoted
    header sits 8 bytes into the ICMP message.  ``src``/``dst`` are address
    texts; the caller maps them to codes.
    """
    cap = getattr(idx, "capture", None)
    proto = np.asarray(idx.proto)
    rows = np.flatnonzero((proto == 1) | (proto == 58))
    if cap is None or len(rows) == 0:
        return []
    rows = _maybe_errors(cap, idx, rows, proto)
    out = []
    for i in rows.tolist():
        s, d = int(idx.src[i]), int(idx.dst[i])
        if s < 0 or d < 0:
            continue
        data = cap.frame_bytes(int(idx.frame[i]))
        try:
            a = ipaddress.ip_address(idx.addrs[s]).packed
            b = ipaddress.ip_address(idx.addrs[d]).packed
        except ValueError:
            continue
        q = _quoted(data, a + b, int(proto[i]))
        if q is not None:
            out.append((i,) + q)
    return out


def _maybe_errors(cap, idx, rows, proto):
    """Drop ICMP rows whose type is known (from ``l4_off``) not to be an error.

    Without an offset every ICMP frame is looked at (fine for the usual
    handful; a ping flood would want the index to record ``l4_off`` for ICMP).
    """
    l4 = np.asarray(getattr(idx, "l4_off", np.full(len(proto), -1)))[rows]
    known = (l4 >= 0) & (l4 < len(cap.buf))
    if not known.any():
        return rows
    buf = np.frombuffer(cap.buf, dtype=np.uint8)
    kind = np.full(len(rows), -1, dtype=np.int64)
    kind[known] = buf[l4[known]]
    errors = np.where(proto[rows] == 1, np.isin(kind, list(ICMP4_ERRORS)), np.isin(kind, list(ICMP6_ERRORS)))
    return rows[~known | errors]


def _quoted(data: bytes, pair: bytes, proto: int):
    v4 = proto == 1
    at = data.find(pair)
    start = at - (12 if v4 else 8)
    if at < 0 or start < 0:
        return None
    if v4:
        icmp = start + (data[start] & 0x0F) * 4
    else:
        icmp = start + 40
    if icmp + 8 > len(data) or data[icmp] not in (ICMP4_ERRORS if v4 else ICMP6_ERRORS):
        return None
    inner = icmp + 8
    if v4:
        if inner + 20 > len(data) or data[inner] >> 4 != 4:
            return None
        p = data[inner + 9]
        src, dst = data[inner + 12:inner + 16], data[inner + 16:inner + 20]
        l4 = inner + (data[inner] & 0x0F) * 4
    else:
        if inner + 40 > len(data) or data[inner] >> 4 != 6:
            return None
        p = data[inner + 6]
        src, dst = data[inner + 8:inner + 24], data[inner + 24:inner + 40]
        l4 = inner + 40
    if p not in (6, 17) or l4 + 4 > len(data):
        return None
    sport = int.from_bytes(data[l4:l4 + 2], "big")
    dport = int.from_bytes(data[l4 + 2:l4 + 4], "big")
    return (p, str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), sport, dport)
