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
or two rounds).

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
    """

    def __init__(self, **arrays):
        self.__dict__.update(arrays)


def analyze_segments(conn, direction, flags, seq, ack, win, seglen, ts, frame, wscale) -> Analysis:
    """Run the analysis over TCP rows given in frame order.

    ``conn`` is the stream number, ``direction`` 0/1 within it; ``seq``/``ack``
    raw 32-bit values (int64), ``win`` raw window, ``seglen`` tcp.len,
    ``wscale`` the window-scale option of SYN packets (-1 absent).
    """
    n = len(conn)
    conn = conn.astype(np.int64)
    d = direction.astype(np.int64)
    flags = flags.astype(np.int64)
    seq = seq.astype(np.int64) & M32
    ack = ack.astype(np.int64) & M32
    win = win.astype(np.int64)
    seglen = np.maximum(seglen.astype(np.int64), 0)
    ts = ts.astype(np.float64)
    frame = frame.astype(np.int64)
    is_syn = (flags & SYN) != 0
    is_ack = (flags & ACK) != 0
    sfr = (flags & (SYN | FIN | RST)) != 0
    rst = (flags & RST) != 0
    k = conn * 2 + d
    nk = (int(conn.max()) + 1) * 2 if n else 2

    base = _bases(k, is_syn, is_ack, seq, ack, nk)
    rel_seq = (seq - base[k]) & M32
    rel_ack = (ack - base[k ^ 1]) & M32

    scale, scale_from = _scales(k, is_syn, wscale, frame, nk)
    row_scale = scale[k]
    scaled = (row_scale >= 0) & ~is_syn & (frame > scale_from[k])
    calc_win = np.where(scaled, win << np.clip(row_scale, 0, 14), win)

    # Order 1: (conn, dir, frame) -- "previous packet of this direction".
    o1 = np.argsort(k, kind="stable")
    start1 = _group_starts(k[o1])
    s_seq, s_len, s_flags = seq[o1], seglen[o1], flags[o1]
    # Unwrap seq per direction so a running maximum means "highest seq".
    step = _i32(np.diff(s_seq, prepend=0))
    step[start1] = 0
    c = np.cumsum(step)
    gfirst = _ffill_index(start1)
    useq = s_seq[gfirst] + c - c[gfirst]
    cand = useq + s_len + ((s_flags & (SYN | FIN)) != 0)
    gid = np.cumsum(start1) - 1

    # Order 2: (conn, frame) -- "latest packet of the other direction".
    o2 = np.argsort(conn, kind="stable")
    start2 = _group_starts(conn[o2])
    cstart = _ffill_index(start2)
    rev = np.full(n, -1, dtype=np.int64)
    if n:
        d2 = d[o2]
        for side in (0, 1):
            last = _ffill_index(d2 == side)
            prev = np.r_[-1, last[:-1]]
            ok = (d2 != side) & (prev >= cstart)
            rev[o2[ok]] = o2[prev[ok]]
    has_rev = rev >= 0
    r = np.where(has_rev, rev, 0)
    # Wireshark starts each direction's window as "unknown" (never equal to a real one).
    rev_win = np.where(has_rev, win[r], -1)
    rev_ack = np.where(has_rev, ack[r], 0)
    rev_ts = np.where(has_rev, ts[r], -np.inf)

    # Previous packet of the same direction (Wireshark's fwd->window, fwd->lastack).
    prev1 = np.r_[-1, np.arange(n - 1)]
    prev1[start1] = -1
    fwd_prev = np.full(n, -1, dtype=np.int64)
    fwd_prev[o1] = np.where(prev1 >= 0, o1[np.maximum(prev1, 0)], -1)
    has_prev = fwd_prev >= 0
    p = np.where(has_prev, fwd_prev, 0)
    prev_win = np.where(has_prev, win[p], -1)
    prev_ack = np.where(has_prev, ack[p], 0)

    zwp = np.zeros(n, dtype=bool)
    for _ in range(8):
        ns_set, ns_u, setter = _nextseq(cand, start1, gid, zwp[o1])
        ns_raw_s = np.where(ns_set, ns_u & M32, 0)
        ns_raw = np.empty(n, dtype=np.int64)
        ns_raw[o1] = ns_raw_s
        new = (seglen == 1) & (seq == ns_raw) & (rev_win == 0)
        if (new == zwp).all():
            break
        zwp = new
    nsset = np.empty(n, dtype=bool)
    nsset[o1] = ns_set
    ns_time = np.empty(n)
    ns_time[o1] = np.where(setter >= 0, ts[o1][np.maximum(setter, 0)], -np.inf)
    # The highest seq seen in each direction *after* each packet (for ACKed-lost).
    ns_after_u = np.empty(n, dtype=np.int64)
    ns_after_u[o1] = np.maximum(ns_u, np.where(zwp[o1], ns_u, cand))

    bits = np.zeros(n, dtype=np.int64)
    bits[zwp] |= ZERO_WINDOW_PROBE
    live = ~zwp                        # ZWP jumps to finished_fwd
    bits[live & (win == 0) & ~sfr] |= ZERO_WINDOW
    lost = live & nsset & (_i32(seq - ns_raw) > 0) & ~rst
    bits[lost] |= LOST_SEGMENT
    ka = live & (seglen <= 1) & (seq == ((ns_raw - 1) & M32)) & ~sfr
    bits[ka] |= KEEP_ALIVE
    same = (seglen == 0) & (seq == ns_raw) & (ack == prev_ack) & ~sfr
    bits[live & same & (win != 0) & (win != prev_win)] |= WINDOW_UPDATE

    rev_scale = np.where(has_rev, scale[k ^ 1], -1)
    rev_shift = np.where(has_rev & ~is_syn[r] & (rev_scale > 0), np.clip(rev_scale, 0, 14), 0)
    edge = (rev_ack + (rev_win << rev_shift)) & M32
    full = live & (seglen > 0) & has_rev & (rev_scale != -1) & (((seq + seglen) & M32) == edge) & ~sfr
    bits[full] |= WINDOW_FULL

    rev_bits_ka = np.zeros(n, dtype=bool)
    rev_bits_zwp = np.zeros(n, dtype=bool)
    rev_bits_ka[has_rev] = (bits[rev[has_rev]] & KEEP_ALIVE) != 0
    rev_bits_zwp[has_rev] = zwp[rev[has_rev]]
    kaa = live & same & (win != 0) & (win == prev_win) & rev_bits_ka
    bits[kaa] |= KEEP_ALIVE_ACK
    zwpa = live & ~kaa & same & (win == 0) & (prev_win == 0) & rev_bits_zwp
    bits[zwpa] |= ZERO_WINDOW_PROBE_ACK
    dup = live & ~kaa & ~zwpa & same & (win != 0) & (win == prev_win)
    bits[dup] |= DUPLICATE_ACK

    dup_num, dup_frame = _dup_counts(dup, ack, prev_ack, has_prev, frame, o1, start1)

    # ACKed segment that wasn't captured, and the duplicate-ACK counters it
    # disturbs, need Wireshark's sequential "max seq to be acked" state.  In a
    # connection where every segment starts at nextseq and no ACK runs ahead
    # of the peer's nextseq that state equals nextseq and nothing fires, so
    # only connections with an irregular packet go through the loop, and only
    # from their first irregular packet on (the state before it is known).
    rev_ns = np.where(has_rev, ns_after_u[r] & M32, 0)
    irregular = (nsset & (seq != ns_raw)) | (is_ack & has_rev & (_i32(ack - rev_ns) > 0))
    rev_dup = np.where(has_rev, dup_num[r], 0)
    ackl = np.zeros(n, dtype=bool)
    if irregular.any():
        first_irr = np.full(int(conn.max()) + 1, n, dtype=np.int64)
        irr_rows = np.flatnonzero(irregular)
        first_irr[conn[irr_rows][::-1]] = irr_rows[::-1]
        rows = np.flatnonzero(np.arange(n) >= first_irr[conn])
        ns_after = ns_after_u & M32
        _ack_lost_loop(rows, d, is_ack, ack, seq, ns_after, zwp, dup, ack != prev_ack,
                       ackl, dup_num, rev_dup, conn, fwd_prev, rev)
    bits[ackl] |= ACK_LOST_SEGMENT

    # Retransmission family: data, SYN or FIN that does not advance nextseq.
    rtt_from, first_rtt = _first_rtt(conn, flags, ts, frame, o2, start2)
    carries = (seglen > 0) | ((flags & (SYN | FIN)) != 0)
    fam = carries & ((bits & KEEP_ALIVE) == 0)
    not_adv = nsset & (_i32(seq - ns_raw) < 0)
    not_adv &= ~((seglen > 1) & (((ns_raw - 1) & M32) == seq))
    spur = fam & (seglen > 0) & (rev_ack != 0) & (_i32(seq + seglen - rev_ack) <= 0)
    fast = fam & ~spur & not_adv & ((rev_dup >= 2) | (rev_dup == -1)) & (rev_ack == seq) & (_us(ts - rev_ts) < _us(FAST_RETRANS_WINDOW))
    thres = np.where(np.isnan(first_rtt) | (frame < rtt_from), OOO_DEFAULT, first_rtt)
    ooo = (fam & ~spur & ~fast & not_adv & (_us(ts - ns_time) < _us(thres))
           & (ns_raw != ((seq + seglen + ((flags & (SYN | FIN)) != 0)) & M32)))
    retr = fam & ~spur & ~fast & ~ooo & not_adv
    bits[spur] |= SPURIOUS_RETRANSMISSION
    bits[fast] |= FAST_RETRANSMISSION
    bits[ooo] |= OUT_OF_ORDER
    bits[retr] |= RETRANSMISSION

    ns_rel = np.where(nsset, (ns_raw - base[k]) & M32, -1)
    return Analysis(rel_seq=rel_seq, rel_ack=rel_ack, win=calc_win, bits=bits,
                    dup_num=dup_num, dup_frame=dup_frame, nextseq_rel=ns_rel,
                    scale=np.where(is_syn, -1, row_scale), base=base[k], rev=rev,
                    prev_win=prev_win)


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


def _dup_counts(dup, ack, prev_ack, has_prev, frame, o1, start1):
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
        return [int(ns_after[j]), int(ns_after[j]), int(dup_num[j])]

    state: dict[int, list[list[int]]] = {}
    for i in rows.tolist():
        di = int(d[i])
        st = state.get(int(conn[i]))
        if st is None:
            st = [None, None]
            st[di], st[1 - di] = start(int(fwd_prev[i])), start(int(rev[i]))
            state[int(conn[i])] = st
        f, rv = st[di], st[1 - di]
        if dup[i]:
            f[2] = 1 if f[2] == -1 else f[2] + 1
            dup_num[i] = f[2]
        if ack_changed[i]:
            f[2] = 0
        a = int(ack[i])
        if rv[0] and is_ack[i] and ((a - rv[0] + (1 << 31)) & M32) - (1 << 31) > 0:
            if rv[0] != rv[1]:
                # A hole in the peer's data: flag, and jump past it.
                rv[0] = rv[1]
                ackl[i] = True
            else:
                # No hole: flag once, until the peer's ACK number moves.
                if rv[2] == 0:
                    ackl[i] = True
                rv[2] = -1
        rev_dup[i] = rv[2]
        f[1] = int(ns_after[i])
        if (int(seq[i]) == f[0] or not f[0]) and not zwp[i]:
            f[0] = f[1]
