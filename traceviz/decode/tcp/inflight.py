"""Bytes in flight and round-trip samples per TCP segment, as Wireshark measures them.

Wireshark 4.0 (``tcp_analyze_sequence_number()`` in ``packet-tcp.c``) keeps,
per direction, the list of segments sent and not yet acknowledged: a data,
SYN or FIN segment is added when it is sent (at most 10,000 of them); every
packet of the other direction removes the segments its acknowledgement
number covers (``ack >= nextseq``) and moves the start of a partly covered
one up to ``ack`` -- whatever its flags.  Then:

- ``tcp.analysis.bytes_in_flight``, on a segment carrying data: the highest
  end minus the lowest start of the listed segments (relative sequence
  numbers), minus what the other direction's latest packet reports in its
  first three SACK blocks, minus one for SYN or FIN; shown when between 0
  and 2e9 exclusive.  A segment beyond the expected sequence number ("lost
  segment") turns it off for its direction until the other side sends an ACK.
- ``tcp.analysis.ack_rtt``: when a packet's acknowledgement number equals
  the end of a listed segment, the time since the oldest such segment was
  sent (shown when not zero).

Keeping that list packet by packet is a Python loop per packet.  For
connections without holes in what was captured, with acknowledgement numbers
that never go backwards, the list has a closed form (``_side``): after the
other direction's latest packet L (acknowledging A), the listed segments are
those sent before L that end beyond A -- if any, the highest of them ends at
the highest end seen before L, and the lowest starts at ``max(A, lowest
start)`` because the segments sent so far cover one interval -- plus every
segment sent since L.  Those are running maxima and minima, so numpy computes
every connection at once.  The few connections where that does not hold (a
lost segment, an acknowledgement moving backwards, sequence numbers out of
range, 10,000 segments in flight) go through ``_replay``, the list itself,
packet by packet.  Hand-written: Wireshark's own semantics, which no library
offers, at numpy speed.

Two samples Wireshark does not give are made here too:

- ``rtt_ambiguous``: the ACK that gave an ``ack_rtt`` also acknowledged a
  retransmitted segment, so by Karn's rule the sample may time either copy.
- ``ts_rtt``: from TCP timestamps (RFC 7323): a packet whose acknowledgement
  number moves forward and which echoes a TSval, timed from the first packet
  of the other direction that carried that TSval.

All round trips are measured at the capture point: to the far end and back.
"""

from __future__ import annotations

import numpy as np


FIN, SYN = 0x01, 0x02
M32 = 0xFFFFFFFF
MAX_UNACKED = 10_000           # Wireshark's TCP_MAX_UNACKED_SEGMENTS
BIF_LIMIT = 2_000_000_000      # bytes in flight at or above this are not shown
# The closed form compares relative sequence numbers as plain integers: exact while every
# value of a connection lies within 2**30 of its base (a gigabyte each way), else replayed.
RANGE = 1 << 30
SPAN = 1 << 33                 # room for one value (+ offset) inside a combined group key
NONE = np.iinfo(np.int64).min // 4   # "no value yet" in running figures


def nothing_measured(n: int) -> dict:
    """The per-frame columns of ``measure_transport`` with nothing measured."""
    return {"bytes_in_flight": np.full(n, -1, dtype=np.int64), "ack_rtt": np.full(n, np.nan),
            "rtt_ambiguous": np.zeros(n, dtype=bool), "ts_rtt": np.full(n, np.nan), "sack": {}}


def measure(conn, d, flags, seglen, ts, win, srel, arel, nsb, seq, ack, seq_base, lost, retx, zwp, ack_back, sack,
            tsval, tsecr, rev, order) -> dict:
    """Per row: ``bytes_in_flight`` (int64, -1 none), ``ack_rtt`` (float64, NaN none),
    ``rtt_ambiguous`` (bool) and ``ts_rtt`` (float64, NaN none).

    Rows are one capture's TCP packets in frame order: ``conn``, ``d`` (0/1),
    ``flags``, ``seglen``, ``ts``, ``win`` (raw window); ``srel`` the relative
    sequence number, ``arel`` the acknowledgement number relative to the
    other direction's base and ``nsb`` the next expected sequence number
    before the packet (``NONE`` unknown), all as signed 32-bit distances;
    ``seq``/``ack`` raw and ``seq_base`` each row's own base (for the
    replay); ``lost``, ``retx``, ``zwp`` the rows the analysis flags as lost
    segment, (fast/spurious) retransmission and zero-window probe;
    ``ack_back`` the rows acknowledging less than their direction's previous
    ACK; ``sack`` the bytes each
    packet's SACK blocks report; ``tsval``/``tsecr`` (-1 absent); ``rev``
    each row's latest packet of the other direction (-1 none); ``order`` the
    rows sorted stably by (connection, direction).

    Connections go three ways: plain ones (every segment continues where
    the last ended, acknowledgements never go back, no zero-window probe)
    take the closed form in frame order with neighbours' values alone;
    others the closed form with running figures over their own rows
    (``_Rows``); those it does not describe, the replay (``_misfits``).
    """
    n = len(conn)
    res = {"bytes_in_flight": np.full(n, -1, dtype=np.int64), "ack_rtt": np.full(n, np.nan),
           "rtt_ambiguous": np.zeros(n, dtype=bool), "ts_rtt": np.full(n, np.nan)}
    if n == 0:
        return res
    f = _Frame(conn, d, flags, seglen, srel, arel, nsb, rev)
    replay, general = f.kinds(lost, zwp, ack_back)
    plain = ~(replay | general)
    _plain_bytes_in_flight(f, plain, sack, res["bytes_in_flight"])
    k, a = f.k[order], f.a[order]
    _plain_ack_rtt(f, order, k, a, plain, ts, res["ack_rtt"])
    res["ts_rtt"][order] = _timestamp_rtt(k, f.flags[order], a, tsval[order], tsecr[order], order, ts)
    rows = np.flatnonzero(general)
    if len(rows):
        sub = _subset(rows, rev)
        k = f.k[rows]
        o = np.argsort(k, kind="stable")
        r = _Rows(conn[rows], d[rows], flags[rows], seglen[rows], ts[rows], srel[rows], arel[rows], sack[rows], o,
                  np.r_[True, k[o][1:] != k[o][:-1]], sub)
        bad = _misfits(r, lost[rows][o], retx[rows][o])
        res["bytes_in_flight"][rows[o]] = np.where(bad, -1, _bytes_in_flight(r))
        rt, amb = _ack_rtt(r, retx[rows][o], ~bad)
        res["ack_rtt"][rows[o]], res["rtt_ambiguous"][rows[o]] = rt, amb
        replay[rows[o[bad]]] = True
    rows = np.flatnonzero(replay)
    if len(rows):
        b, rt, amb = _replay(conn[rows], d[rows], flags[rows], seglen[rows], ts[rows], win[rows], seq[rows],
                             ack[rows], seq_base[rows], retx[rows], sack[rows])
        res["bytes_in_flight"][rows], res["ack_rtt"][rows], res["rtt_ambiguous"][rows] = b, rt, amb
    return res


def _subset(rows: np.ndarray, rev: np.ndarray) -> np.ndarray:
    """``rev`` of ``rows`` (whole connections) as positions among ``rows`` (-1 kept)."""
    r = rev[rows]
    return np.where(r >= 0, np.searchsorted(rows, r), -1)


class _Frame:
    """The rows in frame order with what the plain closed form reads: ``k`` (connection * 2
    + direction), ``e`` (segment end), ``first`` (row of each direction's first segment),
    ``s_first`` (where it starts), ``acking`` (the other direction had sent a segment)."""

    def __init__(self, conn, d, flags, seglen, srel, arel, nsb, rev):
        self.n = n = len(conn)
        self.conn, self.flags, self.seglen, self.s, self.a, self.nsb, self.rev = conn, flags, seglen, srel, arel, nsb, rev
        self.k = conn * 2 + d
        self.nk = (int(conn.max()) + 1) * 2
        self.synfin = ((flags & (SYN | FIN)) != 0).astype(np.int64)
        self.seg = (seglen > 0) | (self.synfin > 0)
        self.e = srel + seglen + self.synfin
        segs = np.flatnonzero(self.seg)
        self.first = np.full(self.nk, n, dtype=np.int64)
        self.first[self.k[segs][::-1]] = segs[::-1]
        self.s_first = srel[np.minimum(self.first, n - 1)]
        self.acking = (rev >= 0) & (rev >= self.first[self.k ^ 1])

    def kinds(self, lost, zwp, ack_back) -> tuple[np.ndarray, np.ndarray]:
        """Per row: replay (the closed form cannot describe the connection) and general
        (it can, with running figures) -- see ``measure``."""
        k, seg = self.k, self.seg
        replay = np.zeros(self.nk, dtype=bool)
        replay[k[lost]] = True
        replay[k[seg & ((self.s < self.s_first[k]) | (self.e > RANGE))]] = True
        replay |= (self.first < self.n) & (self.s_first < 0)
        replay[k[self.acking & ((self.a < -RANGE) | (self.a > RANGE))]] = True
        replay |= np.bincount(k[seg], minlength=self.nk) >= MAX_UNACKED
        general = np.zeros(self.nk, dtype=bool)
        general[k[seg & (self.nsb != NONE) & (self.s < self.nsb)]] = True     # went back: resent or reordered
        general[k[(ack_back & self.acking) | zwp]] = True
        by_conn = replay[0::2] | replay[1::2]
        replay = by_conn[self.conn]
        general = (general[0::2] | general[1::2])[self.conn] & ~replay
        return replay, general


def _plain_bytes_in_flight(f: _Frame, plain: np.ndarray, sack: np.ndarray, out: np.ndarray) -> None:
    """Bytes in flight of the plain connections' data segments, in frame order.

    With L the other direction's latest packet and ``mine`` this direction's
    latest before L: segments sent up to ``mine`` are still listed if the
    highest ended beyond what L acknowledges, from ``max(ack, first start)``
    on; every segment since continues where the last ended, so the highest end
    is the next expected sequence number after this one.
    """
    rows = np.flatnonzero(plain & (f.seglen > 0))
    if not len(rows):
        return
    last = f.rev[rows]
    lp = np.maximum(last, 0)
    mine = np.where(last >= 0, f.rev[lp], -1)
    mp = np.maximum(mine, 0)
    k = f.k[rows]
    had = (mine >= 0) & (mine >= f.first[k])                 # a segment of ours before L
    top_l = np.where(f.seg[mp], np.maximum(f.nsb[mp], f.e[mp]), f.nsb[mp])
    a_l = f.a[lp]
    sf = f.s_first[k]
    before = had & (top_l > a_l)
    hi = np.maximum(f.nsb[rows], f.e[rows])
    lo = np.where(before, np.maximum(a_l, sf), np.where(had, top_l, sf))
    delivered = np.where(last >= 0, sack[lp], 0)
    flight = (hi - lo - delivered) & M32
    show = (flight > 0) & (flight < BIF_LIMIT)
    out[rows[show]] = flight[show] - f.synfin[rows[show]]


def _plain_ack_rtt(f: _Frame, order, k, a, plain, ts, out: np.ndarray) -> None:
    """ack_rtt on the plain connections: a packet moving the acknowledgement to A times
    the segment of the other direction ending at A (segment ends only grow there, so
    there is at most one, found by searching each direction's ends in order).

    ``k`` and ``a`` are ``f.k`` and ``f.a`` in ``order``, (connection, direction, frame).
    """
    mine = plain[order]
    segs = np.flatnonzero(f.seg[order] & mine)
    if not len(segs):
        return
    ends = k[segs] * SPAN + (f.e[order[segs]] + RANGE)      # ascending: by direction, then end
    acking = f.acking[order] & mine
    before = np.r_[False, acking[:-1] & (k[1:] == k[:-1])]   # the previous packet of the direction acknowledged
    q = np.flatnonzero(acking & (~before | (a > np.r_[NONE, a[:-1]])))
    key = (k[q] ^ 1) * SPAN + (np.clip(a[q], -RANGE, RANGE) + RANGE)
    at = np.minimum(np.searchsorted(ends, key), len(ends) - 1)
    j, q = order[segs[at]], order[q]
    hit = (ends[at] == key) & (j < q)
    dt = ts[q[hit]] - ts[j[hit]]
    nonzero = dt != 0
    out[q[hit][nonzero]] = dt[nonzero]


class _Rows:
    """The columns in (connection, direction, frame) order, and the running figures of
    each direction that the closed form reads (see the module doc).

    ``g`` is the direction's group number (connection * 2 + direction), so
    the other direction of a group is ``g ^ 1``; positions index this order
    (``o`` maps them back to rows).  ``other``: position of the latest packet
    of the other direction (-1).  ``top_e``: the highest segment end the
    direction has sent so far; ``s_first``: where its first segment starts;
    ``top_a``: the highest acknowledgement it has sent so far while the other
    direction had segments listed.
    """

    def __init__(self, conn, d, flags, seglen, ts, srel, arel, sack, order, starts, rev):
        o = order
        n = self.n = len(o)
        self.o, self.ts_rows, self.sack_rows = o, ts, sack
        self.g = (conn[o] * 2 + d[o]).astype(np.int64)
        self.gstart = starts
        self.starts = np.flatnonzero(starts)
        self.sizes = np.diff(np.r_[self.starts, n])
        self.seglen = seglen[o]
        self.flags = flags[o]
        self.synfin = ((self.flags & (SYN | FIN)) != 0).astype(np.int64)
        self.seg = (self.seglen > 0) | (self.synfin > 0)
        self.s = srel[o]
        self.e = self.s + self.seglen + self.synfin
        self.a = arel[o]
        where = np.empty(n, dtype=np.int64)
        where[o] = np.arange(n)
        r = rev[o]
        self.other = np.where(r >= 0, where[np.maximum(r, 0)], -1)
        self.e_c = np.clip(self.e, -RANGE, RANGE)
        self.a_c = np.clip(self.a, -RANGE, RANGE)
        first = np.minimum.reduceat(np.where(self.seg, np.arange(n), n), self.starts)
        self.has_seg = first < n                                    # per group
        self.s_first = np.repeat(self.s[np.minimum(first, n - 1)], self.sizes)
        self.top_e = _running(self.e_c, self.seg, self.g)
        # Acknowledging rows: the other direction has sent a segment before this packet.
        self.acking = (self.other >= 0) & (self.top_e[np.maximum(self.other, 0)] != NONE)
        self.top_a = _running(self.a_c, self.acking, self.g)
        self.top_a_before = np.r_[NONE, self.top_a[:-1]]
        self.top_a_before[starts] = NONE

    def at(self, values: np.ndarray, where: np.ndarray, missing) -> np.ndarray:
        """``values[where]``, ``missing`` where ``where`` is -1."""
        return np.where(where >= 0, values[np.maximum(where, 0)], missing)

    def time(self, positions: np.ndarray) -> np.ndarray:
        return self.ts_rows[self.o[positions]]

    def group_rows(self, positions: np.ndarray) -> np.ndarray:
        """Every position of the groups the given positions belong to, in order."""
        gi = np.unique(np.searchsorted(self.starts, positions, side="right") - 1)
        sizes = self.sizes[gi]
        offsets = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return np.repeat(self.starts[gi], sizes) + offsets


def _misfits(r: _Rows, lost, retx) -> np.ndarray:
    """Rows of connections the closed form does not describe, to be replayed.

    A lost segment (a hole in the listed segments), a segment starting below
    the direction's first, sequence numbers beyond the range the closed form
    compares as plain integers, 10,000 segments, or a stale acknowledgement
    (lower than one sent before) in a connection that also resent data the
    other side had already acknowledged: below the stale one, that data would
    stay listed longer than the highest acknowledgement says.
    """
    starts = r.starts
    s_first = r.s_first[starts]
    bad_group = r.has_seg & ((np.minimum.reduceat(np.where(r.seg, r.s, RANGE), starts) < s_first) | (s_first < 0)
                             | (np.maximum.reduceat(np.where(r.seg, r.e, 0), starts) > RANGE))
    bad_group |= np.add.reduceat(r.seg.astype(np.int64), starts) >= MAX_UNACKED
    marks = lost | (r.acking & ((r.a < -RANGE) | (r.a > RANGE)))
    top = (int(r.g.max()) // 2 + 1) * 2
    flag = np.zeros(top, dtype=bool)
    flag[r.g[starts[bad_group]]] = True
    flag[r.g[marks]] = True
    stale = np.zeros(top, dtype=bool)
    stale[r.g[r.acking & (r.a_c < r.top_a_before)]] = True
    segs = np.flatnonzero(r.seg)
    other_top_a = r.at(r.top_a, r.other[segs], NONE)
    resent = np.zeros(top, dtype=bool)
    resent[r.g[segs[(other_top_a != NONE) & (r.s[segs] < other_top_a)]]] = True
    flag |= stale & resent[np.arange(top) ^ 1]
    return (flag[0::2] | flag[1::2])[r.g >> 1]


def _bytes_in_flight(r: _Rows) -> np.ndarray:
    """The closed form for every data segment (-1 where not shown).

    After the other direction's latest packet L, segments sent before L are
    still listed if the highest of them ended beyond the highest
    acknowledgement L's side has sent (``a_l``); they start at
    ``max(a_l, s_first)``.  Segments sent since L usually continue where the
    highest end was, so the highest end overall is ``top_e`` and the lowest
    start is set by the segments from before L; where a segment sent since L
    went back (a retransmission), their own highest end and lowest start are
    taken, over the few directions that have one.
    """
    n = r.n
    rows = np.flatnonzero(r.seglen > 0)
    out = np.full(n, -1, dtype=np.int64)
    if not len(rows):
        return out
    last = r.other[rows]
    lp = np.maximum(last, 0)
    mine_before = np.where(last >= 0, r.other[lp], -1)      # this direction's latest packet before L
    a_l = np.where(last >= 0, r.top_a[lp], NONE)
    top_l = r.at(r.top_e, mine_before, NONE)
    sf = r.s_first[rows]
    before = (top_l != NONE) & (top_l > a_l)
    hi = r.top_e[rows]
    lo = np.where(before, np.maximum(a_l, sf), np.where(top_l != NONE, top_l, sf))
    # Rows with a segment that went back since L: their own running figures since L.
    top_prev = np.r_[NONE, r.top_e[:-1]]
    top_prev[r.gstart] = NONE
    went_back = np.cumsum(r.seg & (r.s < top_prev))
    since_start = np.where(mine_before >= 0, mine_before + 1, np.repeat(r.starts, r.sizes)[rows])
    odd = went_back[rows] > np.where(since_start > 0, went_back[since_start - 1], 0)
    if odd.any():
        sub = r.group_rows(rows[odd])
        other = r.other[sub]
        since = np.cumsum(np.r_[True, other[1:] != other[:-1]] | r.gstart[sub])
        at = np.searchsorted(sub, rows[odd])
        top2 = _running(r.e_c[sub], r.seg[sub], since)[at]
        low2 = _running(np.clip(r.s[sub], -RANGE, RANGE), r.seg[sub], since, lowest=True)[at]
        b = before[odd]
        hi[odd] = np.maximum(np.where(b, top_l[odd], NONE), top2)
        lo[odd] = np.minimum(np.where(b, np.maximum(a_l[odd], sf[odd]), -NONE), low2)
    delivered = np.where(last >= 0, r.sack_rows[r.o[lp]], 0)
    flight = (hi - lo - delivered) & M32
    show = (flight > 0) & (flight < BIF_LIMIT)
    out[rows[show]] = flight[show] - r.synfin[rows[show]]
    return out


def _ack_rtt(r: _Rows, retx, good):
    """ack_rtt and Karn ambiguity on every packet that acknowledges the other direction.

    A packet acknowledging A matches the oldest listed segment ending at A.
    If A is above every acknowledgement sent before (``top_a_before``), every
    segment ending at A is still listed, and the oldest is the first whose
    running highest end reaches A (when it ends exactly there).  Otherwise
    only a segment sent since the previous packet can match, and only one
    ending no higher than what was already acknowledged: rare, so those
    queries, and first reaches that overshoot A, are looked up exactly.
    """
    n = r.n
    rtt = np.full(n, np.nan)
    amb = np.zeros(n, dtype=bool)
    ok_rows = r.acking & good
    moved = ok_rows & ((r.top_a_before == NONE) | (r.a_c > r.top_a_before))
    te_key = r.g * SPAN + np.maximum(r.top_e, -RANGE - 1)       # ascending: running maxima per group
    q_rows = np.flatnonzero(moved)
    j = np.searchsorted(te_key, (r.g[q_rows] ^ 1) * SPAN + r.a_c[q_rows])
    j = np.minimum(j, n - 1)
    reach = (r.g[j] == (r.g[q_rows] ^ 1)) & (r.top_e[j] >= r.a_c[q_rows]) & (r.o[j] < r.o[q_rows])
    hit = reach & (r.e_c[j] == r.a_c[q_rows])
    exact_q = [q_rows[reach & ~hit]]
    matches = [(q_rows[hit], j[hit])]
    # Segments ending at or below what the other side had already acknowledged, when they were sent.
    other_top_a = r.at(r.top_a, r.other, NONE)
    low = np.flatnonzero(r.seg & (other_top_a != NONE) & (r.e_c <= other_top_a) & good)
    nxt = r.other[low] + 1
    nxt = nxt[(r.other[low] >= 0) & (nxt < n)]
    nxt = nxt[(r.g[nxt] == r.g[nxt - 1]) & ok_rows[nxt] & ~moved[nxt]]
    exact_q.append(np.unique(nxt))
    matches.append(_exact_matches(r, np.concatenate(exact_q), moved))
    q, j = (np.concatenate(x) for x in zip(*matches))
    dt = r.time(q) - r.time(j)
    keep = dt != 0
    rtt[q[keep]] = dt[keep]
    # Karn: the packet that removes a retransmitted segment from the list times nothing for sure.
    rx = np.flatnonzero(r.seg & retx & good)
    if len(rx):
        partner = r.g[rx] ^ 1
        after = np.where(r.other[rx] >= 0, r.other[rx] + 1, np.searchsorted(r.g, partner))
        ta_key = r.g * SPAN + np.maximum(r.top_a, -RANGE - 1)
        covers = np.searchsorted(ta_key, partner * SPAN + r.e_c[rx])
        k = np.minimum(np.maximum(after, covers), n - 1)
        hit = (r.g[k] == partner) & ok_rows[k]
        amb[k[hit]] = True
        amb &= ~np.isnan(rtt)
    return rtt, amb


def _exact_matches(r: _Rows, q: np.ndarray, moved: np.ndarray):
    """(query rows, matched segment rows) by lookup: the oldest segment of the other direction,
    sent before the query and (unless the query moved the acknowledgement) after the
    query's previous packet, ending exactly at the query's acknowledgement number."""
    none = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    if not len(q):
        return none
    partners = np.unique(r.g[q] ^ 1)
    segs = np.flatnonzero(r.seg & np.isin(r.g, partners))
    if not len(segs):
        return none
    # Segments by (group, end, frame order): the first at or after the earliest allowed row.
    key = r.g[segs] * SPAN + r.e_c[segs] + RANGE
    by = np.lexsort((r.o[segs], key))
    skey, srow = key[by], segs[by]
    qkey = (r.g[q] ^ 1) * SPAN + r.a_c[q] + RANGE
    # The earliest allowed frame position: anything (moved) or after the query's previous packet.
    prev = np.where(moved[q], -1, r.o[np.maximum(q - 1, 0)])
    lo = np.searchsorted(skey, qkey)
    hi = np.searchsorted(skey, qkey, side="right")
    found_q, found_j = [], []
    for i in range(len(q)):                     # few: stale and overshooting acknowledgements
        for t in range(lo[i], hi[i]):
            cand = srow[t]
            if prev[i] < r.o[cand] < r.o[q[i]]:
                found_q.append(q[i])
                found_j.append(cand)
                break
    return np.array(found_q, dtype=np.int64), np.array(found_j, dtype=np.int64)


def _timestamp_rtt(g, flags, a, tsval, tsecr, rows, ts) -> np.ndarray:
    """Round trips from TCP timestamps (RFC 7323) of rows in (connection, direction,
    frame) order, given as frame-order ``rows`` with their direction number ``g``;
    ``ts`` is in frame order (NaN: no sample).

    A packet that acknowledges new data (its acknowledgement number moves
    past its direction's previous one) and echoes a TSval gives a sample: its
    time minus that of the first packet of the other direction whose TSval
    reached the echoed value (a sender's TSval never goes backwards).
    """
    n = len(g)
    out = np.full(n, np.nan)
    has = tsval >= 0
    if not has.any():
        return out
    tv_key = g * TS_SPAN + _running_u32(tsval, has, g)
    forward = np.r_[False, (g[1:] == g[:-1]) & (a[1:] > a[:-1])]
    q = np.flatnonzero(forward & has & (tsecr > 0) & ((flags & 0x10) != 0))
    j = np.minimum(np.searchsorted(tv_key, (g[q] ^ 1) * TS_SPAN + tsecr[q] + 1), n - 1)
    ok = (g[j] == (g[q] ^ 1)) & (tsval[j] == tsecr[q]) & (rows[j] < rows[q])
    out[q[ok]] = ts[rows[q[ok]]] - ts[rows[j[ok]]]
    return out


TS_SPAN = 1 << 33


def _running_u32(values, mask, run) -> np.ndarray:
    """Running maximum + 1 of non-negative 32-bit ``values`` where ``mask`` within each run (0: none yet)."""
    base = run * TS_SPAN
    return np.maximum.accumulate(base + np.where(mask, values + 1, 0)) - base


def _running(values: np.ndarray, mask: np.ndarray, run: np.ndarray, lowest: bool = False) -> np.ndarray:
    """Running maximum (or minimum, ``lowest``) of ``values`` where ``mask``, within each
    run of ``run`` (non-decreasing); ``NONE`` before a run's first value.

    One accumulate over keys ``run * SPAN + value``: runs never mix because
    each run's keys lie above every earlier run's.  Values lie within RANGE.
    """
    v = -values if lowest else values
    base = run.astype(np.int64) * SPAN
    acc = np.maximum.accumulate(base + np.where(mask, v + RANGE + 1, 0)) - base
    out = acc - RANGE - 1
    if lowest:
        out = -out
    return np.where(acc > 0, out, NONE)



def _replay(conn, d, flags, seglen, ts, win, seq, ack, seq_base, retx, sack):
    """Wireshark's list of unacknowledged segments, packet by packet, for the given rows
    (whole connections, frame order): bytes in flight, ack_rtt and Karn ambiguity."""
    n = len(conn)
    bif = [-1] * n
    rtt = [float("nan")] * n
    amb = [False] * n
    state: dict[int, list] = {}
    cols = (conn, d, flags, seglen, ts, win, seq, ack, seq_base, retx, sack)
    for i, (c, di, fl, ln, t, wn, sq, ak, base, rx, sk) in enumerate(zip(*(np.asarray(x).tolist() for x in cols))):
        sides = state.get(c)
        if sides is None:
            sides = state[c] = [_Flow(), _Flow()]
        fwd, rev = sides[di], sides[1 - di]
        if fl & 0x10:
            rev.valid = True
        zwp = ln == 1 and sq == fwd.nextseq and rev.window == 0
        if not zwp and fwd.nextseq and _gt(sq, fwd.nextseq) and not fl & 0x04:
            fwd.valid = False                           # a lost segment: off until the other side ACKs
        end = (sq + ln + (1 if fl & (SYN | FIN) else 0)) & M32
        if (ln or fl & (SYN | FIN)) and len(fwd.segs) < MAX_UNACKED:
            fwd.segs.append([sq, end, t, rx])
        if not zwp and (_gt(end, fwd.nextseq) or not fwd.nextseq):
            fwd.nextseq = end
        fwd.window = wn
        rtt[i], amb[i] = _remove_acked(rev, ak, t)
        if ln and fwd.segs and fwd.valid:
            first = min((u[0] - base) & M32 for u in fwd.segs)
            last = max((u[1] - base) & M32 for u in fwd.segs)
            flight = (last - first - rev.sack) & M32
            if 0 < flight < BIF_LIMIT:
                bif[i] = flight - (1 if fl & (SYN | FIN) else 0)
        fwd.sack = sk
    return np.array(bif, dtype=np.int64), np.array(rtt), np.array(amb, dtype=bool)


def _remove_acked(rev: "_Flow", ack: int, t: float) -> tuple[float, bool]:
    """The other side's segments this acknowledgement covers leave its list; the oldest
    ending exactly at ``ack`` gives the RTT sample (Wireshark walks newest first and the
    last match wins)."""
    sample, ambiguous = float("nan"), False
    keep = []
    for u in rev.segs:
        if ack == u[1]:
            sample = t - u[2] if np.isnan(sample) else sample
            ambiguous |= bool(u[3])
            continue
        if _gt(ack, u[0]) and not _gt(ack, u[1]):
            u[0] = ack                                  # partly acknowledged: the rest stays listed
            keep.append(u)
            continue
        if _gt(u[1], ack):
            keep.append(u)
            continue
        ambiguous |= bool(u[3])
    rev.segs = keep
    if sample == 0:
        sample = float("nan")
    return sample, ambiguous and not np.isnan(sample)


def _gt(a: int, b: int) -> bool:
    """Wireshark's GT_SEQ: a after b modulo 2**32."""
    return ((a - b + (1 << 31)) & M32) - (1 << 31) > 0


class _Flow:
    """One direction's state in the replay: listed segments [start, end, time, retransmitted]
    (oldest first), next sequence number (0 unset), whether bytes in flight is valid, the
    last window it advertised and the bytes its latest packet's SACK blocks reported."""

    __slots__ = ("segs", "nextseq", "valid", "window", "sack")

    def __init__(self):
        self.segs, self.nextseq, self.valid, self.window, self.sack = [], 0, True, None, 0
