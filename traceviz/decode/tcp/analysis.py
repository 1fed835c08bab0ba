"""Wireshark's TCP sequence analysis (``tcp.analysis.*``), relative seq/ack and window, in numpy.

The rules are those of ``tcp_analyze_sequence_number()`` in Wireshark's
``epan/dissectors/packet-tcp.c`` (4.0) and the User's Guide section "TCP
Analysis" (ChAdvTCPAnalysis).  Wireshark walks the packets one by one keeping,
per direction, the next expected sequence number (``nextseq``: the highest
seq+len seen, SYN and FIN counting one), the last ACK and window sent, and
the analysis flags of the last segment.  Every one of those is either a
running maximum or "the value at the previous packet" of one direction, so
here they are computed for all packets at once: a stable sort by
(connection, direction, frame) turns "previous packet of this direction"
into a shift and the running maximum into ``np.maximum.accumulate``; "the
last packet of the other direction" is a forward fill in (connection, frame)
order.  The one circular rule -- a zero-window probe does not advance
``nextseq``, and whether a packet is a probe depends on ``nextseq`` -- is
resolved by iterating to a fixed point (probes are rare, it converges in one
or two rounds).  The "ACKed segment that wasn't captured" rule keeps a
per-direction "max seq to be acked" that really is sequential; it only
departs from nextseq after an irregular packet, so a short Python loop runs
over connections from their first irregular packet on (``_acked_lost``).

Kinds and their Wireshark rules, in the order Wireshark tests them:
zero-window-probe (1 byte at nextseq while the peer's window is 0),
zero-window (window 0, no SYN/FIN/RST), lost-segment (seq beyond nextseq),
keep-alive (0 or 1 byte at nextseq-1), window-update (no data, same seq/ack,
new non-zero window), window-full (segment ends at the peer's ACK plus its
scaled window), keep-alive-ack, zero-window-probe-ack, duplicate-ack (no
data, same seq, ack and window), ack-lost-segment (ACK beyond what the peer
was seen to send), then for data/SYN/FIN that does not advance nextseq:
spurious-retransmission (already ACKed), fast-retransmission (>= 2 dup ACKs
for it within 20 ms), out-of-order (within the first RTT, or 3 ms, of the
highest segment), else retransmission.  Wireshark also sets
``tcp.analysis.retransmission`` on fast and spurious retransmissions; here a
packet gets only the specific kind.

Sequence comparisons are modulo 2**32 as in Wireshark (``GT_SEQ`` etc.); the
running maximum works on sequence numbers unwrapped per direction.

Relative numbers follow Wireshark: a direction's base is the ISN when its SYN
is seen, else one less than the first seq seen in that direction, or one less
than the first ACK number the other direction sent, whichever comes first.
``tcp.window_size`` is the raw window shifted by the direction's own window
scale (capped at 14) once both SYNs that were captured carried the option; a
SYN without it switches scaling off for both sides; SYN packets are never
scaled; an unknown scale (SYN not captured) leaves the raw value.
"""

from __future__ import annotations

import numpy as np

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
M32 = 0xFFFFFFFF

# Analysis flag bits (our own numbering; names are the event kinds).
RETRANSMISSION = 1 << 0
FAST_RETRANSMISSION = 1 << 1
SPURIOUS_RETRANSMISSION = 1 << 2
OUT_OF_ORDER = 1 << 3
DUPLICATE_ACK = 1 << 4
ZERO_WINDOW = 1 << 5
WINDOW_FULL = 1 << 6
WINDOW_UPDATE = 1 << 7
KEEP_ALIVE = 1 << 8
KEEP_ALIVE_ACK = 1 << 9
LOST_SEGMENT = 1 << 10
ACK_LOST_SEGMENT = 1 << 11
ZERO_WINDOW_PROBE = 1 << 12
ZERO_WINDOW_PROBE_ACK = 1 << 13

KINDS = {
    RETRANSMISSION: "retransmission",
    FAST_RETRANSMISSION: "fast-retransmission",
    SPURIOUS_RETRANSMISSION: "spurious-retransmission",
    OUT_OF_ORDER: "out-of-order",
    DUPLICATE_ACK: "duplicate-ack",
    ZERO_WINDOW: "zero-window",
    WINDOW_FULL: "window-full",
    WINDOW_UPDATE: "window-update",
    KEEP_ALIVE: "keep-alive",
    KEEP_ALIVE_ACK: "keep-alive-ack",
    LOST_SEGMENT: "lost-segment",
    ACK_LOST_SEGMENT: "ack-lost-segment",
    ZERO_WINDOW_PROBE: "zero-window-probe",
    ZERO_WINDOW_PROBE_ACK: "zero-window-probe-ack",
}

# Wireshark field -> our bit, for comparing with tshark.
TSHARK_FIELDS = {
    "tcp.analysis.retransmission": RETRANSMISSION,
    "tcp.analysis.fast_retransmission": FAST_RETRANSMISSION,
    "tcp.analysis.spurious_retransmission": SPURIOUS_RETRANSMISSION,
    "tcp.analysis.out_of_order": OUT_OF_ORDER,
    "tcp.analysis.duplicate_ack": DUPLICATE_ACK,
    "tcp.analysis.zero_window": ZERO_WINDOW,
    "tcp.analysis.window_full": WINDOW_FULL,
    "tcp.analysis.window_update": WINDOW_UPDATE,
    "tcp.analysis.keep_alive": KEEP_ALIVE,
    "tcp.analysis.keep_alive_ack": KEEP_ALIVE_ACK,
    "tcp.analysis.lost_segment": LOST_SEGMENT,
    "tcp.analysis.ack_lost_segment": ACK_LOST_SEGMENT,
    "tcp.analysis.zero_window_probe": ZERO_WINDOW_PROBE,
    "tcp.analysis.zero_window_probe_ack": ZERO_WINDOW_PROBE_ACK,
}

FAST_RETRANS_WINDOW = 0.020   # "within 20ms of the last duplicate ack"
OOO_DEFAULT = 0.003           # out-of-order threshold before the first RTT is known


def _i32(x: np.ndarray) -> np.ndarray:
    """Signed distance modulo 2**32, as Wireshark's (gint32)(a - b)."""
    return ((x + (1 << 31)) & M32) - (1 << 31)


def _us(seconds):
    """Whole microseconds: Wireshark compares times in integer nanoseconds, and
    float64 epoch seconds are only good to ~0.2 us, so ties at a threshold
    (20 ms, the first RTT) are decided on the microsecond grid pcap uses."""
    return np.round(np.asarray(seconds, dtype=np.float64) * 1e6)


def _group_starts(key_sorted: np.ndarray) -> np.ndarray:
    start = np.ones(len(key_sorted), dtype=bool)
    start[1:] = key_sorted[1:] != key_sorted[:-1]
    return start


def stable_order(key: np.ndarray) -> np.ndarray:
    """``np.argsort(key, kind="stable")`` for non-negative integer keys, faster.

    numpy sorts 16-bit keys by radix and wider ones by timsort; an LSD radix
    sort 16 bits at a time is three to four times quicker on a million
    connection numbers.  Hand-written for speed.
    """
    key = np.asarray(key)
    if len(key) == 0 or key.dtype.kind not in "iu" or int(key.min()) < 0:
        return np.argsort(key, kind="stable")
    top = int(key.max())
    order = np.argsort((key & 0xFFFF).astype(np.uint16), kind="stable")
    shift = 16
    while top >> shift:
        order = order[np.argsort(((key[order] >> shift) & 0xFFFF).astype(np.uint16), kind="stable")]
        shift += 16
    return order


def _ffill_index(mark: np.ndarray) -> np.ndarray:
    """Index of the latest True at or before each position (-1 if none)."""
    return np.maximum.accumulate(np.where(mark, np.arange(len(mark)), -1))


class Analysis:
    """Per-packet results, arrays aligned with the input rows.

    ``rel_seq``, ``rel_ack`` (meaningful where the ACK flag is set), ``win``
    (calculated window), ``bits`` (analysis flags), ``dup_num`` /
    ``dup_frame`` (duplicate-ACK counter and the frame it repeats),
    ``nextseq_rel`` (next expected relative seq before this packet, -1 when
    unknown), ``scale`` (per row: the window shift applied, -1 unknown, -2 off).
    ``measure`` (when asked for): a function returning ``bytes_in_flight``,
    ``ack_rtt``, ``rtt_ambiguous`` and ``ts_rtt`` per row (``inflight.measure``),
    left for the caller to run when it has a core to spare.
    """

    def __init__(self, **arrays):
        self.__dict__.update(arrays)


def analyze_segments(conn, direction, flags, seq, ack, win, seglen, ts, frame, wscale,
                     tsval=None, tsecr=None, sack=None, rules: bool = True) -> Analysis:
    """Run the analysis over TCP rows given in frame order.

    ``conn`` is the stream number, ``direction`` 0/1 within it; ``seq``/``ack``
    raw 32-bit values, ``win`` raw window, ``seglen`` tcp.len, ``wscale`` the
    window-scale option of SYN packets (-1 absent).  Given ``tsval``/``tsecr``
    (-1 absent) and ``sack`` (the bytes each packet's SACK blocks report:
    ``sack.delivered``; None: no packet has any), it also measures bytes in
    flight and round trips (``inflight.measure``), with the neighbours and
    orders found here.  ``rules=False``: only the relative numbers and the
    window (``rel_seq``, ``rel_ack``, ``win``, ``scale``), not the flags' rules
    (half the time), for a load whose tables show no flag.
    """
    p = _rows(conn, direction, flags, seq, ack, win, seglen, ts, frame)
    base = _bases(p.k, p.is_syn, p.is_ack, p.seq, p.ack, p.nk)
    scale, scale_from = _scales(p.k, p.is_syn, np.asarray(wscale), p.frame, p.nk)
    row_scale = scale[p.k]
    scaled = (row_scale >= 0) & ~p.is_syn & (p.frame > scale_from[p.k])
    calc_win = np.where(scaled, p.win << np.clip(row_scale, 0, 14), p.win)

    nb = _neighbours(p)
    if not rules:
        seq_base, ack_base = _rebase(p, nb, base)
        return Analysis(rel_seq=(p.seq - seq_base) & M32, rel_ack=(p.ack - ack_base) & M32, win=calc_win,
                        scale=np.where(p.is_syn, -1, row_scale))
    st = _sequence_state(p, nb)
    bits, dup = _ack_flags(p, nb, st, scale)
    dup_num, dup_frame = _dup_counts(dup, p.ack, nb.prev_ack, p.frame, nb.o1, nb.start1)
    ackl, rev_dup = _acked_lost(p, nb, st, dup, dup_num)
    bits[ackl] |= ACK_LOST_SEGMENT
    bits |= _retransmissions(p, nb, st, bits, rev_dup)

    seq_base, ack_base = _rebase(p, nb, base)
    rel_seq, rel_ack = (p.seq - seq_base) & M32, (p.ack - ack_base) & M32
    nextseq_rel = np.where(st.nsset, (st.ns_raw - seq_base) & M32, -1)
    measured = {}
    if tsval is not None:
        from traceviz.decode.tcp.inflight import NONE, measure
        ack_back = p.is_ack & nb.has_prev & p.is_ack[np.maximum(nb.fwd_prev, 0)] & (_i32(p.ack - nb.prev_ack) < 0)
        retx = (bits & (RETRANSMISSION | FAST_RETRANSMISSION | SPURIOUS_RETRANSMISSION)) != 0
        args = (p.conn, p.d, p.flags, p.seglen, p.ts, p.win, _i32(rel_seq), _i32(rel_ack),
                np.where(st.nsset, _i32(nextseq_rel), NONE), p.seq, p.ack, seq_base,
                (bits & LOST_SEGMENT) != 0, retx, st.zwp, ack_back,
                np.zeros(p.n, dtype=np.int64) if sack is None else np.asarray(sack, dtype=np.int64),
                np.asarray(tsval).astype(np.int64, copy=False),
                np.asarray(tsecr).astype(np.int64, copy=False), nb.rev, nb.o1)
        measured["measure"] = lambda: measure(*args)
    return Analysis(rel_seq=rel_seq, rel_ack=rel_ack,
                    win=calc_win, bits=bits, dup_num=dup_num, dup_frame=dup_frame,
                    nextseq_rel=nextseq_rel, scale=np.where(p.is_syn, -1, row_scale), **measured)


def _rows(conn, direction, flags, seq, ack, win, seglen, ts, frame):
    """The inputs as int64/float64 arrays plus the flag masks every rule uses."""
    # copy=False: nothing here writes into its inputs, and a million-row copy costs page faults.
    def i64(x):
        return np.asarray(x).astype(np.int64, copy=False)

    p = Analysis(conn=i64(conn), d=i64(direction), flags=i64(flags), seq=i64(seq) & M32, ack=i64(ack) & M32,
                 win=i64(win), seglen=np.maximum(i64(seglen), 0), ts=np.asarray(ts).astype(np.float64, copy=False),
                 frame=i64(frame))
    p.n = len(p.conn)
    p.is_syn = (p.flags & SYN) != 0
    p.is_ack = (p.flags & ACK) != 0
    p.sfr = (p.flags & (SYN | FIN | RST)) != 0
    p.k = p.conn * 2 + p.d
    p.nk = (int(p.conn.max()) + 1) * 2 if p.n else 2
    return p


def _neighbours(p):
    """Orders and neighbours: Wireshark's "fwd" (this direction) and "rev" state sources.

    ``o1`` sorts by (conn, dir, frame), ``o2`` by (conn, frame); ``fwd_prev``
    is the previous packet of the same direction, ``rev`` the latest packet
    of the other direction (-1: none).  Each direction's window starts as
    "unknown" in Wireshark (never equal to a real one): -1 here.
    """
    n = p.n
    nb = Analysis()
    nb.o1 = stable_order(p.k)
    nb.start1 = _group_starts(p.k[nb.o1])
    nb.o2 = stable_order(p.conn)
    nb.start2 = _group_starts(p.conn[nb.o2])
    rev = np.full(n, -1, dtype=np.int64)
    if n:
        cstart = _ffill_index(nb.start2)
        d2 = p.d[nb.o2]
        for side in (0, 1):
            last = _ffill_index(d2 == side)
            prev = np.r_[-1, last[:-1]]
            ok = (d2 != side) & (prev >= cstart)
            rev[nb.o2[ok]] = nb.o2[prev[ok]]
    prev1 = np.r_[-1, np.arange(n - 1)]
    prev1[nb.start1] = -1
    fwd_prev = np.full(n, -1, dtype=np.int64)
    fwd_prev[nb.o1] = np.where(prev1 >= 0, nb.o1[np.maximum(prev1, 0)], -1)
    nb.rev, nb.fwd_prev = rev, fwd_prev
    nb.has_rev, nb.has_prev = rev >= 0, fwd_prev >= 0
    r, q = np.maximum(rev, 0), np.maximum(fwd_prev, 0)
    nb.r = r
    nb.rev_win = np.where(nb.has_rev, p.win[r], -1)
    nb.rev_ack = np.where(nb.has_rev, p.ack[r], 0)
    nb.rev_ts = np.where(nb.has_rev, p.ts[r], -np.inf)
    nb.prev_win = np.where(nb.has_prev, p.win[q], -1)
    nb.prev_ack = np.where(nb.has_prev, p.ack[q], 0)
    return nb


def _sequence_state(p, nb):
    """nextseq before each packet (raw, set?, when it was last raised), nextseq after, and ZWPs.

    A zero-window probe (1 byte at nextseq while the peer's window is 0) does
    not advance nextseq; the two depend on each other, so iterate (probes
    are rare: one or two rounds).
    """
    o1, start1 = nb.o1, nb.start1
    s_seq = p.seq[o1]
    # Unwrap seq per direction so a running maximum means "highest seq".
    step = _i32(np.diff(s_seq, prepend=0))
    step[start1] = 0
    c = np.cumsum(step)
    gfirst = _ffill_index(start1)
    useq = s_seq[gfirst] + c - c[gfirst]
    cand = useq + p.seglen[o1] + ((p.flags[o1] & (SYN | FIN)) != 0)
    gid = np.cumsum(start1) - 1
    st = Analysis()
    zwp = np.zeros(p.n, dtype=bool)
    for _ in range(8):
        ns_set, ns_u, setter = _nextseq(cand, start1, gid, zwp[o1])
        ns_raw = np.empty(p.n, dtype=np.int64)
        ns_raw[o1] = np.where(ns_set, ns_u & M32, 0)
        new = (p.seglen == 1) & (p.seq == ns_raw) & (nb.rev_win == 0)
        if (new == zwp).all():
            break
        zwp = new
    st.zwp, st.ns_raw = zwp, ns_raw
    st.nsset = np.empty(p.n, dtype=bool)
    st.nsset[o1] = ns_set
    # Wireshark's "nextseq is set" test is nextseq != 0, so a stream whose
    # next byte wraps to exactly 0 counts as unset there too.
    st.nsset &= ns_raw != 0
    st.ns_time = np.empty(p.n)
    st.ns_time[o1] = np.where(setter >= 0, p.ts[o1][np.maximum(setter, 0)], -np.inf)
    st.ns_after = np.empty(p.n, dtype=np.int64)
    st.ns_after[o1] = np.maximum(ns_u, np.where(zwp[o1], ns_u, cand)) & M32
    return st


def _ack_flags(p, nb, st, scale):
    """Zero window, lost segment, keep-alive, window update/full, keep-alive ACK, ZWP ACK, dup ACK.

    Returns the flag bits and the duplicate-ACK mask.  Comparisons use the
    raw window, as Wireshark's analysis does.
    """
    bits = np.zeros(p.n, dtype=np.int64)
    bits[st.zwp] |= ZERO_WINDOW_PROBE
    live = ~st.zwp                     # a probe jumps to finished_fwd
    win, seq, ns = p.win, p.seq, st.ns_raw
    bits[live & (win == 0) & ~p.sfr] |= ZERO_WINDOW
    bits[live & st.nsset & (_i32(seq - ns) > 0) & ((p.flags & RST) == 0)] |= LOST_SEGMENT
    bits[live & (p.seglen <= 1) & (seq == ((ns - 1) & M32)) & ~p.sfr] |= KEEP_ALIVE
    same = (p.seglen == 0) & (seq == ns) & (p.ack == nb.prev_ack) & ~p.sfr
    bits[live & same & (win != 0) & (win != nb.prev_win)] |= WINDOW_UPDATE

    r = nb.r
    rev_scale = np.where(nb.has_rev, scale[p.k ^ 1], -1)
    # The peer's window is scaled unless it came on a SYN (Wireshark's is_first_ack).
    shift = np.where(nb.has_rev & ~p.is_syn[r] & (rev_scale > 0), np.clip(rev_scale, 0, 14), 0)
    edge = (nb.rev_ack + (nb.rev_win << shift)) & M32
    full = (live & (p.seglen > 0) & nb.has_rev & (rev_scale != -1) & ~p.sfr
            & (((seq + p.seglen) & M32) == edge))
    bits[full] |= WINDOW_FULL

    rev_ka = nb.has_rev & ((bits[r] & KEEP_ALIVE) != 0)
    rev_zwp = nb.has_rev & st.zwp[r]
    kaa = live & same & (win != 0) & (win == nb.prev_win) & rev_ka
    bits[kaa] |= KEEP_ALIVE_ACK
    zwpa = live & ~kaa & same & (win == 0) & (nb.prev_win == 0) & rev_zwp
    bits[zwpa] |= ZERO_WINDOW_PROBE_ACK
    dup = live & ~kaa & ~zwpa & same & (win != 0) & (win == nb.prev_win)
    bits[dup] |= DUPLICATE_ACK
    return bits, dup


def _acked_lost(p, nb, st, dup, dup_num):
    """ACKed-lost-segment flags and the peer's dupacknum each packet sees.

    Both need Wireshark's sequential "max seq to be acked" state.  In a
    connection where every segment starts at nextseq and no ACK runs ahead of
    the peer's nextseq that state equals nextseq and nothing fires, so only
    connections with an irregular packet go through the loop, and only from
    their first irregular packet on (the state before it is known).
    """
    n = p.n
    rev_ns = np.where(nb.has_rev, st.ns_after[nb.r], 0)
    irregular = (st.nsset & (p.seq != st.ns_raw)) | (p.is_ack & nb.has_rev & (_i32(p.ack - rev_ns) > 0))
    rev_dup = np.where(nb.has_rev, dup_num[nb.r], 0)
    ackl = np.zeros(n, dtype=bool)
    if irregular.any():
        first_irr = np.full(int(p.conn.max()) + 1, n, dtype=np.int64)
        irr_rows = np.flatnonzero(irregular)
        first_irr[p.conn[irr_rows][::-1]] = irr_rows[::-1]
        rows = np.flatnonzero(np.arange(n) >= first_irr[p.conn])
        _ack_lost_loop(rows, p.d, p.is_ack, p.ack, p.seq, st.ns_after, st.zwp, dup, p.ack != nb.prev_ack,
                       ackl, dup_num, rev_dup, p.conn, nb.fwd_prev, nb.rev)
    return ackl, rev_dup


def _retransmissions(p, nb, st, bits, rev_dup):
    """Spurious / fast retransmission, out-of-order, retransmission (in Wireshark's precedence).

    Only data, SYN or FIN that does not advance nextseq qualifies, never a
    keep-alive.  Fast retransmission is checked before out-of-order
    (Wireshark's default ``tcp.fastrt_supersedes_ooo``); the out-of-order
    window is the connection's first RTT once known, else 3 ms.
    """
    seq, ns, seglen = p.seq, st.ns_raw, p.seglen
    synfin = (p.flags & (SYN | FIN)) != 0
    fam = (seglen > 0) | synfin
    fam &= (bits & KEEP_ALIVE) == 0
    not_adv = st.nsset & (_i32(seq - ns) < 0)
    not_adv &= ~((seglen > 1) & (((ns - 1) & M32) == seq))
    spur = fam & (seglen > 0) & (nb.rev_ack != 0) & (_i32(seq + seglen - nb.rev_ack) <= 0)
    # rev_dup == -1 is Wireshark's unsigned (guint32)-1: "at least 2".
    many_dups = (rev_dup >= 2) | (rev_dup == -1)
    fast = (fam & ~spur & not_adv & many_dups & (nb.rev_ack == seq)
            & (_us(p.ts - nb.rev_ts) < _us(FAST_RETRANS_WINDOW)))
    rtt_from, first_rtt = _first_rtt(p.conn, p.flags, p.ts, p.frame, nb.o2, nb.start2)
    thres = np.where(np.isnan(first_rtt) | (p.frame < rtt_from), OOO_DEFAULT, first_rtt)
    ooo = (fam & ~spur & ~fast & not_adv & (_us(p.ts - st.ns_time) < _us(thres))
           & (ns != ((seq + seglen + synfin) & M32)))
    retr = fam & ~spur & ~fast & ~ooo & not_adv
    out = np.zeros(p.n, dtype=np.int64)
    out[spur] |= SPURIOUS_RETRANSMISSION
    out[fast] |= FAST_RETRANSMISSION
    out[ooo] |= OUT_OF_ORDER
    out[retr] |= RETRANSMISSION
    return out


def _bases(k, is_syn, is_ack, seq, ack, nk):
    """Base sequence number per (conn, dir) key, as Wireshark sets it."""
    big = np.iinfo(np.int64).max
    first_own = np.full(nk, big, dtype=np.int64)
    own_val = np.zeros(nk, dtype=np.int64)
    idx = np.full(nk, -1, dtype=np.int64)
    idx[k[::-1]] = np.arange(len(k) - 1, -1, -1)      # first row per key
    keys = np.flatnonzero(idx >= 0)
    idx = idx[keys]
    first_own[keys] = idx
    own_val[keys] = np.where(is_syn[idx], seq[idx], (seq[idx] - 1) & M32)
    first_peer = np.full(nk, big, dtype=np.int64)
    peer_val = np.zeros(nk, dtype=np.int64)
    rows = np.flatnonzero(is_ack)
    first = np.full(nk, -1, dtype=np.int64)
    first[(k[rows] ^ 1)[::-1]] = rows[::-1]
    keys = np.flatnonzero(first >= 0)
    first_peer[keys] = first[keys]
    peer_val[keys] = (ack[first[keys]] - 1) & M32
    return np.where(first_peer < first_own, peer_val, own_val)


def _rebase(p, nb, base):
    """Per-row base for seq and for ack, following Wireshark's SYN-ACK rule.

    A SYN-ACK whose seq differs from its direction's base (a new ISN on the
    same ports, kept in the same tcp.stream) makes that seq the base from then
    on, for its own direction's seq and the other direction's ack; the
    analysis state is not reset.  Rare, so a loop over those SYN-ACKs.
    """
    seq_base, ack_base = base[p.k].copy(), base[p.k ^ 1].copy()
    synack = np.flatnonzero(p.is_syn & p.is_ack & (p.seq != seq_base))
    if len(synack) == 0:
        return seq_base, ack_base
    group_end = np.r_[np.flatnonzero(nb.start2)[1:], p.n]
    where = np.empty(p.n, dtype=np.int64)
    where[nb.o2] = np.arange(p.n)
    for i in synack.tolist():
        if p.seq[i] == seq_base[i]:
            continue                       # an earlier reset already made it the base
        pos = where[i]
        later = nb.o2[pos:group_end[np.searchsorted(group_end, pos, side="right")]]
        mine = later[p.d[later] == p.d[i]]
        theirs = later[p.d[later] != p.d[i]]
        seq_base[mine] = p.seq[i]
        ack_base[theirs] = p.seq[i]
    return seq_base, ack_base


def _scales(k, is_syn, wscale, frame, nk):
    """Window shift per (conn, dir): >=0 known, -1 unknown, -2 off; and the SYN frame it starts after."""
    syn_rows = np.flatnonzero(is_syn)
    keys, j = np.unique(k[syn_rows], return_index=True)
    first = syn_rows[j]
    seen = np.zeros(nk, dtype=bool)
    ws = np.full(nk, -1, dtype=np.int64)
    since = np.zeros(nk, dtype=np.int64)
    seen[keys] = True
    ws[keys] = wscale[first]
    since[keys] = frame[first]
    off_dir = seen & (ws < 0)
    off = off_dir | off_dir[np.arange(nk) ^ 1]
    scale = np.where(off, -2, np.where(seen, np.minimum(ws, 14), -1))
    return scale, since


def _nextseq(cand, start, gid, excluded):
    """Wireshark's fwd->nextseq before each packet (rows in (conn, dir, frame) order).

    Returns (set?, unwrapped value, index of the packet that set it).
    """
    n = len(cand)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return z.astype(bool), z, z
    lo = cand.min()
    val = np.where(excluded, -1, cand - lo)             # >= 0 when it counts
    span = int(val.max()) + 2
    key = gid.astype(np.int64) * span + val + 1          # groups never overlap
    run = np.maximum.accumulate(key)
    before = np.r_[np.int64(-1), run[:-1]]
    gbase = gid.astype(np.int64) * span
    prev_val = np.where(start, 0, before - gbase)        # 0 = nothing yet in group
    is_set = prev_val > 0
    ns = prev_val - 1 + lo
    raised = ~excluded & (np.where(start, True, key > before))
    # Within a group "raised" also needs the previous max to be from this group.
    setter_after = _ffill_index(raised | start)
    valid_setter = raised[setter_after]
    setter_after = np.where(valid_setter, setter_after, -1)
    setter = np.r_[-1, setter_after[:-1]]
    setter = np.where(start, -1, setter)
    return is_set, ns, setter


def _dup_counts(dup, ack, prev_ack, frame, o1, start1):
    """Duplicate-ACK number and the frame it duplicates (Wireshark's lastnondupack)."""
    n = len(dup)
    reset = (ack != prev_ack)[o1] | start1
    c = np.cumsum(dup[o1])
    at = _ffill_index(reset)
    base_c = c[at] - dup[o1][at]
    num = np.empty(n, dtype=np.int64)
    num[o1] = c - base_c
    lastnon = np.where((ack != prev_ack)[o1][at], frame[o1][at], 0)
    out_frame = np.empty(n, dtype=np.int64)
    out_frame[o1] = lastnon
    return num, out_frame


def _first_rtt(conn, flags, ts, frame, o, start):
    """Wireshark's ts_first_rtt (tcp.analysis.initial_rtt), per row with the frame it is known from.

    It is the first packet with ACK and without SYN after a SYN, minus the
    latest SYN before it; ``o``/``start`` are the (conn, frame) order and its
    group starts.
    """
    n = len(conn)
    at_frame = np.full(n, np.inf)
    rtt = np.full(n, np.nan)
    if n == 0:
        return at_frame, rtt
    c, fl, t, fr = conn[o], flags[o], ts[o], frame[o]
    cstart = _ffill_index(start)
    syn = (fl & (SYN | ACK)) == SYN
    last_syn = _ffill_index(syn)
    has_syn = last_syn >= cstart
    cand = ((fl & (SYN | ACK)) == ACK) & has_syn
    rows = np.flatnonzero(cand)
    if len(rows) == 0:
        return at_frame, rtt
    cc, first = np.unique(c[rows], return_index=True)
    i = rows[first]
    per_frame = np.full(int(c.max()) + 1, np.inf)
    per_rtt = np.full(int(c.max()) + 1, np.nan)
    per_frame[cc] = fr[i]
    per_rtt[cc] = t[i] - t[last_syn[i]]
    return per_frame[conn], per_rtt[conn]


def _ack_lost_loop(rows, d, is_ack, ack, seq, ns_after, zwp, dup, ack_changed,
                   ackl, dup_num, rev_dup, conn, fwd_prev, rev) -> None:
    """Wireshark's ACKED LOST PACKET rule, packet by packet, for the given rows (frame order).

    Per direction it keeps ``maxseqtobeacked`` (0 = unset), ``nextseq`` and
    ``dupacknum``; Wireshark's dupacknum is unsigned, so the -1 it stores
    after an ACKed-lost segment also counts as ">= 2 duplicate ACKs" for the
    fast-retransmission test (kept here as -1).  Writes ``ackl``, ``dup_num``
    and ``rev_dup`` in place.

    A connection enters at its first irregular packet; up to there every
    segment started at nextseq, so each direction's maxseqtobeacked equals
    its nextseq and dupacknum is the vectorised count.
    """
    def start(j):
        if j < 0:
            return [0, 0, 0]                      # [maxseqtobeacked (0 = unset), nextseq, dupacknum]
        # j precedes its connection's first row here, so dup_num[j] is not rewritten below.
        return [int(ns_after[j]), int(ns_after[j]), int(dup_num[j])]

    # The loop reads Python lists, not numpy scalars (several times cheaper per
    # row), and its results go back into the arrays in one assignment each.
    cols = (d, conn, is_ack, ack, seq, ns_after, zwp, dup, ack_changed, fwd_prev, rev)
    D, C, ISACK, A, S, NS, Z, DUP, CHANGED, FWD, REV = (np.asarray(x)[rows].tolist() for x in cols)
    out_dup = dup_num[rows].tolist()
    out_ackl = [False] * len(rows)
    out_rev = [0] * len(rows)
    state: dict[int, list[list[int]]] = {}
    for k in range(len(rows)):
        di = D[k]
        st = state.get(C[k])
        if st is None:
            st = [None, None]
            st[di], st[1 - di] = start(FWD[k]), start(REV[k])
            state[C[k]] = st
        f, rv = st[di], st[1 - di]
        if DUP[k]:
            f[2] = 1 if f[2] == -1 else f[2] + 1
            out_dup[k] = f[2]
        if CHANGED[k]:
            f[2] = 0
        a = A[k]
        if rv[0] and ISACK[k] and ((a - rv[0] + (1 << 31)) & M32) - (1 << 31) > 0:
            if rv[0] != rv[1]:
                # A hole in the peer's data: flag, and jump past it.
                rv[0] = rv[1]
                out_ackl[k] = True
            else:
                # No hole: flag once, until the peer's ACK number moves.
                if rv[2] == 0:
                    out_ackl[k] = True
                rv[2] = -1
        out_rev[k] = rv[2]
        f[1] = NS[k]
        if (S[k] == f[0] or not f[0]) and not Z[k]:
            f[0] = f[1]
    if len(rows):
        dup_num[rows] = out_dup
        ackl[rows] |= np.array(out_ackl, dtype=bool)
        rev_dup[rows] = out_rev
