"""Transport tier: packets, TCP connections / UDP flows, and TCP events from a PacketIndex.

``analyze(idx)`` turns the index tier's per-frame columns into the
``packets``, ``connections`` and ``events`` tables of ``traceviz.model``.
Numbering is Wireshark's (``flows.py``), per-packet sequence analysis is
Wireshark's (``tcp_analysis.py``); this module adds the per-connection view
(who is the client, handshake timings, how it ended) and the events.

Conventions decided here:

- ``flags`` text lists the set TCP flags in bit order, low to high:
  ``FIN,SYN,RST,PSH,ACK,URG,ECE,CWR,NS`` (``traceviz.model.TCP_FLAG_NAMES``),
  so a SYN-ACK reads ``SYN,ACK``.  No flags: empty string.
- client: the sender of the first SYN (``client_by="syn"``); failing that the
  receiver of the first SYN-ACK (also ``"syn"``).  A connection seen only
  mid-way is decided by ports (``client_by="ports"``): the endpoint with the
  lower port is the server (well-known and registered ports are below the
  ephemeral range every OS uses); equal ports: the first packet's sender is
  the client.  UDP flows: the first packet's sender (``client_by="first"``).
- handshake: ``syn`` = first SYN, ``synack`` = first SYN-ACK from the server,
  ``ack`` = first packet from the client after that SYN-ACK carrying ACK
  without SYN or RST.  ``syn_retransmits`` = SYNs after the first (all with
  the same ISN: a different ISN is a new connection, as in Wireshark).
- ``close``: ``unanswered`` (only SYNs: no reply, and the client did not
  give up with a RST or FIN either), ``refused``
  (the server's first answer to the SYN was a RST), otherwise whichever of
  the first FIN and first RST came first, by its sender
  (``fin-client``/``fin-server``/``rst-client``/``rst-server``), else ``open``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from traceviz.decode import flows, tcp_analysis as ta
from traceviz.model import TCP_FLAG_NAMES, conform

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
TCP, UDP = 6, 17
TRANSPORTS = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}


def analyze(idx) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(packets, connections, events) for a ``traceviz.decode.index.PacketIndex``."""
    n = len(idx.frame)
    proto = np.asarray(idx.proto)
    sport = np.asarray(idx.sport)
    dport = np.asarray(idx.dport)
    frag = np.asarray(idx.frag, dtype=bool)
    ports = (sport >= 0) & (dport >= 0) & ~frag
    is_tcp = (proto == TCP) & ports
    is_udp = (proto == UDP) & ports
    tcp_rows = np.flatnonzero(is_tcp)
    udp_rows = np.flatnonzero(is_udp)

    conn = np.full(n, -1, dtype=np.int64)
    stream = np.full(n, -1, dtype=np.int64)
    direction = np.zeros(n, dtype=np.int8)      # flow side: 0 lower endpoint sends, 1 higher

    flags = np.asarray(idx.tcp_flags).astype(np.int64)
    seq = np.asarray(idx.seq).astype(np.int64)
    ack = np.asarray(idx.ack).astype(np.int64)
    src = np.asarray(idx.src)
    dst = np.asarray(idx.dst)

    # Flow identity per row: the row's own header, or the header an ICMP error quotes.
    addrs = list(idx.addrs)
    fsrc, fdst = src.astype(np.int64).copy(), dst.astype(np.int64).copy()
    fsport, fdport = sport.astype(np.int64).copy(), dport.astype(np.int64).copy()
    quoted_tcp = np.zeros(n, dtype=bool)
    quoted_udp = np.zeros(n, dtype=bool)
    quotes = flows.icmp_quotes(idx)
    if quotes:
        code = {a: i for i, a in enumerate(addrs)}
        for row, p, qs, qd, qsp, qdp in quotes:
            for a in (qs, qd):
                if a not in code:
                    code[a] = len(addrs)
                    addrs.append(a)
            fsrc[row], fdst[row], fsport[row], fdport[row] = code[qs], code[qd], qsp, qdp
            (quoted_tcp if p == TCP else quoted_udp)[row] = True
    tcp_flow = np.flatnonzero(is_tcp | quoted_tcp)
    udp_flow = np.flatnonzero(is_udp | quoted_udp)

    n_tcp = 0
    if len(tcp_flow):
        tid, dr = flows.endpoint_pairs(fsrc[tcp_flow], fsport[tcp_flow], fdst[tcp_flow], fdport[tcp_flow])
        passive = quoted_tcp[tcp_flow]
        s = flows.tcp_streams(tid, dr, np.where(passive, 0, flags[tcp_flow]), seq[tcp_flow], ack[tcp_flow],
                              passive=passive)
        conn[tcp_flow] = s
        stream[tcp_flow] = s
        direction[tcp_flow] = dr
        n_tcp = int(s.max()) + 1
    if len(udp_flow):
        tid, dr = flows.endpoint_pairs(fsrc[udp_flow], fsport[udp_flow], fdst[udp_flow], fdport[udp_flow])
        s = flows.udp_streams(tid)
        stream[udp_flow] = s
        conn[udp_flow] = s + n_tcp
        direction[udp_flow] = dr
    flow = (fsrc, fdst, fsport, fdport, addrs)

    an = None
    if len(tcp_rows):
        an = ta.analyze_segments(conn[tcp_rows], direction[tcp_rows], flags[tcp_rows], seq[tcp_rows],
                                 ack[tcp_rows], np.asarray(idx.win)[tcp_rows],
                                 np.asarray(idx.payload_len)[tcp_rows], np.asarray(idx.ts)[tcp_rows],
                                 np.asarray(idx.frame)[tcp_rows], np.asarray(idx.wscale)[tcp_rows])

    conns = _connections(idx, conn, direction, is_tcp, n_tcp, stream, flow)
    client_side = conns.pop("_client_side").to_numpy() if len(conns) else np.zeros(0, dtype=np.int8)
    c2s = np.zeros(n, dtype=bool)
    in_conn = conn >= 0
    c2s[in_conn] = direction[in_conn] == client_side[conn[in_conn]]

    packets = _packets(idx, conn, stream, c2s, in_conn, is_tcp, tcp_rows, an)
    events = _events(idx, conn, c2s, tcp_rows, an, conns)
    return (conform("packets", packets), conform("connections", conns), conform("events", events))


# -- packets -----------------------------------------------------------------

_FLAG_TEXT = np.array([",".join(name for b, name in enumerate(TCP_FLAG_NAMES) if v & (1 << b))
                       for v in range(512)], dtype=object)


def _obj(values) -> pd.Series:
    """An object column as is (pandas 3 would otherwise infer, then conform() convert back)."""
    return pd.Series(values, dtype=object)


def _nullable(values: np.ndarray, mask: np.ndarray) -> pd.arrays.IntegerArray:
    """Int64 with NA where ``mask`` is False."""
    return pd.arrays.IntegerArray(np.where(mask, values, 0).astype(np.int64), ~mask)


def _packets(idx, conn, stream, c2s, in_conn, is_tcp, tcp_rows, an) -> pd.DataFrame:
    n = len(idx.frame)
    addrs = np.array(list(idx.addrs) + [None], dtype=object)   # -1 -> None
    src = np.asarray(idx.src)
    dst = np.asarray(idx.dst)
    proto = np.asarray(idx.proto)
    ipver = np.asarray(idx.ipver)
    sport = np.asarray(idx.sport).astype(np.int64)
    dport = np.asarray(idx.dport).astype(np.int64)
    flags = np.asarray(idx.tcp_flags).astype(np.int64)
    transport = np.full(n, "other", dtype=object)
    transport[ipver == 0] = "none"
    for p, name in TRANSPORTS.items():
        transport[proto == p] = name

    seq_rel = np.zeros(n, dtype=np.int64)
    ack_rel = np.zeros(n, dtype=np.int64)
    win = np.zeros(n, dtype=np.int64)
    has_ack = np.zeros(n, dtype=bool)
    if an is not None:
        seq_rel[tcp_rows] = an.rel_seq
        ack_rel[tcp_rows] = an.rel_ack
        win[tcp_rows] = an.win
        has_ack[tcp_rows] = (flags[tcp_rows] & ACK) != 0
    in_tcp = np.zeros(n, dtype=bool)
    in_tcp[tcp_rows] = True
    plen = np.asarray(idx.payload_len).astype(np.int64)
    has_len = (in_conn | is_tcp) & (plen >= 0)
    dir_text = np.where(c2s, "c2s", "s2c").astype(object)
    dir_text[~in_conn] = None
    flag_text = np.where(is_tcp, _FLAG_TEXT[flags & 0x1FF], None)

    return pd.DataFrame({
        "frame": np.asarray(idx.frame).astype(np.int64),
        "ts": np.asarray(idx.ts).astype(np.float64),
        "src": _obj(addrs[src]),
        "dst": _obj(addrs[dst]),
        "sport": _nullable(sport, sport >= 0),
        "dport": _nullable(dport, dport >= 0),
        "transport": _obj(transport),
        "conn": _nullable(conn, in_conn),
        "dir": _obj(dir_text),
        "flags": _obj(flag_text),
        "seq": _nullable(seq_rel, in_tcp),
        "ack": _nullable(ack_rel, in_tcp & has_ack),
        "win": _nullable(win, in_tcp),
        "len": _nullable(plen, has_len),
        "wire_len": np.asarray(idx.wire_len).astype(np.int64),
        "payload_off": np.asarray(idx.payload_off).astype(np.int64),
        "payload_cap": np.asarray(idx.payload_cap).astype(np.int64),
        "ipver": ipver.astype(np.int64),
        "stream": _nullable(stream, stream >= 0),
        "seq_raw": _nullable(np.asarray(idx.seq).astype(np.int64), is_tcp),
        "ack_raw": _nullable(np.asarray(idx.ack).astype(np.int64), is_tcp),
        "flag_bits": _nullable(flags, is_tcp),
    })


# -- connections -------------------------------------------------------------

def _endpoint_text(addr: str | None, port: int) -> str | None:
    if addr is None:
        return None
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _first_per_conn(conn_rows: np.ndarray, rows: np.ndarray, nconn: int) -> np.ndarray:
    """Row index of the first row per connection among ``rows`` (-1 if none); rows ascend."""
    out = np.full(nconn, -1, dtype=np.int64)
    if len(rows):
        # Assign in reverse: for repeated connections the earliest row is written last.
        out[conn_rows[rows][::-1]] = rows[::-1]
    return out


def _connections(idx, conn, direction, is_tcp, n_tcp, stream, flow) -> pd.DataFrame:
    rows = np.flatnonzero(conn >= 0)
    nconn = int(conn.max()) + 1 if len(rows) else 0
    if nconn == 0:
        df = pd.DataFrame({"conn": pd.Series(dtype="int64")})
        df["_client_side"] = pd.Series(dtype="int8")
        return df
    ts = np.asarray(idx.ts).astype(np.float64)
    frame = np.asarray(idx.frame).astype(np.int64)
    flags = np.asarray(idx.tcp_flags).astype(np.int64)
    src, dst, sport, dport, addrs = flow
    plen = np.maximum(np.asarray(idx.payload_len).astype(np.int64), 0)
    c = conn  # full-length, -1 outside connections
    tcp_flags = np.where(is_tcp, flags, 0)

    first = _first_per_conn(c, rows, nconn)
    last = np.full(nconn, -1, dtype=np.int64)
    last[c[rows]] = rows            # the latest row is written last
    pure_syn = rows[(tcp_flags[rows] & (SYN | ACK)) == SYN]
    synack = rows[(tcp_flags[rows] & (SYN | ACK)) == (SYN | ACK)]
    first_syn = _first_per_conn(c, pure_syn, nconn)
    first_synack = _first_per_conn(c, synack, nconn)

    side_a_port = np.where(direction[first] == 0, sport[first], dport[first])
    side_b_port = np.where(direction[first] == 0, dport[first], sport[first])
    by_ports = np.where(side_a_port > side_b_port, 0, np.where(side_a_port < side_b_port, 1,
                                                               direction[first]))
    client_side = by_ports.astype(np.int8)
    client_by = np.full(nconn, "ports", dtype=object)
    has_synack = first_synack >= 0
    client_side[has_synack] = 1 - direction[first_synack[has_synack]]
    client_by[has_synack] = "syn"
    has_syn = first_syn >= 0
    client_side[has_syn] = direction[first_syn[has_syn]]
    client_by[has_syn] = "syn"
    is_udp_conn = np.arange(nconn) >= n_tcp
    client_side[is_udp_conn] = direction[first[is_udp_conn]]
    client_by[is_udp_conn] = "first"

    # Per-row: sent by the client?
    from_client = np.zeros(len(c), dtype=bool)
    from_client[rows] = direction[rows] == client_side[c[rows]]
    cr = c[rows]
    packets = np.bincount(cr, minlength=nconn)
    packets_c2s = np.bincount(cr, weights=from_client[rows], minlength=nconn).astype(np.int64)
    bytes_c2s = np.bincount(cr, weights=plen[rows] * from_client[rows], minlength=nconn).astype(np.int64)
    bytes_all = np.bincount(cr, weights=plen[rows], minlength=nconn).astype(np.int64)

    # Endpoints from the first packet, oriented by client side.
    f = first
    first_from_client = direction[f] == client_side
    c_addr = np.where(first_from_client, src[f], dst[f])
    s_addr = np.where(first_from_client, dst[f], src[f])
    c_port = np.where(first_from_client, sport[f], dport[f])
    s_port = np.where(first_from_client, dport[f], sport[f])
    client = [_endpoint_text(addrs[a] if a >= 0 else None, int(p)) for a, p in zip(c_addr, c_port)]
    server = [_endpoint_text(addrs[a] if a >= 0 else None, int(p)) for a, p in zip(s_addr, s_port)]

    # Handshake: server's SYN-ACK and the client's completing ACK.
    srv_synack_rows = synack[~from_client[synack]] if len(synack) else synack
    t_synack_row = _first_per_conn(c, srv_synack_rows, nconn)
    syn_t = np.where(has_syn, ts[np.maximum(first_syn, 0)], np.nan)
    synack_t = np.where(t_synack_row >= 0, ts[np.maximum(t_synack_row, 0)], np.nan)
    hs_ack = rows[from_client[rows] & ((tcp_flags[rows] & (SYN | ACK | RST)) == ACK)]
    after = hs_ack[frame[hs_ack] > np.where(t_synack_row[c[hs_ack]] >= 0,
                                               frame[np.maximum(t_synack_row[c[hs_ack]], 0)],
                                               np.iinfo(np.int64).max)]
    ack_row = _first_per_conn(c, after, nconn)
    ack_t = np.where(ack_row >= 0, ts[np.maximum(ack_row, 0)], np.nan)

    syn_count = np.bincount(c[pure_syn], minlength=nconn) if len(pure_syn) else np.zeros(nconn, np.int64)
    backoff = _syn_backoff(c, pure_syn, ts, nconn)

    close = _close(c, rows, tcp_flags, from_client, has_syn, first_syn, nconn, frame)
    close[is_udp_conn] = None

    mss = np.asarray(idx.mss).astype(np.int64)
    wscale = np.asarray(idx.wscale).astype(np.int64)
    sack = np.asarray(idx.sack_perm, dtype=bool)
    syn_row = first_syn
    sa_row = t_synack_row

    def opt(values, rowsel):
        ok = rowsel >= 0
        v = np.where(ok, values[np.maximum(rowsel, 0)], -1)
        return _nullable(v, ok & (v >= 0))

    sack_perm = pd.array([pd.NA] * nconn, dtype="boolean")
    both = (syn_row >= 0) & (sa_row >= 0)
    if both.any():
        val = sack[np.maximum(syn_row, 0)] & sack[np.maximum(sa_row, 0)]
        sack_perm[both] = val[both]

    tcp_mask = ~is_udp_conn
    df = pd.DataFrame({
        "conn": np.arange(nconn, dtype=np.int64),
        "transport": np.where(is_udp_conn, "udp", "tcp").astype(object),
        "stream": stream[first],
        "client": client,
        "server": server,
        "client_by": client_by,
        "first_frame": frame[first],
        "last_frame": frame[last],
        "start": ts[first],
        "end": ts[last],
        "packets": packets.astype(np.int64),
        "packets_c2s": packets_c2s,
        "packets_s2c": packets.astype(np.int64) - packets_c2s,
        "bytes_c2s": bytes_c2s,
        "bytes_s2c": bytes_all - bytes_c2s,
        "syn": syn_t,
        "synack": synack_t,
        "ack": ack_t,
        "handshake_rtt": ack_t - syn_t,
        "rtt_server": synack_t - syn_t,
        "rtt_client": ack_t - synack_t,
        "syn_retransmits": np.maximum(syn_count - 1, 0).astype(np.int64),
        "syn_backoff": backoff,
        "close": close,
        "mss_client": opt(mss, syn_row),
        "mss_server": opt(mss, sa_row),
        "wscale_client": opt(wscale, syn_row),
        "wscale_server": opt(wscale, sa_row),
        "sack_permitted": sack_perm,
    })
    for col in ("syn_retransmits",):
        df.loc[~tcp_mask, col] = 0
    df["_client_side"] = client_side
    return df


def _syn_backoff(c, pure_syn, ts, nconn) -> list:
    out: list = [[] for _ in range(nconn)]
    if len(pure_syn) == 0:
        return out
    cs = c[pure_syn]
    # Only connections with 2+ SYNs need a list; the rest keep [].
    counts = np.bincount(cs, minlength=nconn)
    multi = pure_syn[counts[cs] > 1]
    if len(multi):
        gaps = np.diff(ts[multi])
        same = c[multi][1:] == c[multi][:-1]
        for conn_id, gap in zip(c[multi][1:][same], gaps[same]):
            out[conn_id].append(round(float(gap), 6))
    return out


def _close(c, rows, flags, from_client, has_syn, first_syn, nconn, frame) -> np.ndarray:
    close = np.full(nconn, "open", dtype=object)
    rst_rows = rows[(flags[rows] & RST) != 0]
    fin_rows = rows[(flags[rows] & FIN) != 0]
    first_rst = _first_per_conn(c, rst_rows, nconn)
    first_fin = _first_per_conn(c, fin_rows, nconn)
    big = np.iinfo(np.int64).max
    rst_at = np.where(first_rst >= 0, first_rst, big)
    fin_at = np.where(first_fin >= 0, first_fin, big)
    fin_first = (first_fin >= 0) & (fin_at < rst_at)
    rst_first = (first_rst >= 0) & ~fin_first
    close[fin_first] = np.where(from_client[first_fin[fin_first]], "fin-client", "fin-server")
    close[rst_first] = np.where(from_client[first_rst[rst_first]], "rst-client", "rst-server")
    # Answer to the SYN: the server's first packet.
    srv_rows = rows[~from_client[rows]]
    first_srv = _first_per_conn(c, srv_rows, nconn)
    unanswered = has_syn & (first_srv < 0) & (first_fin < 0) & (first_rst < 0)
    close[unanswered] = "unanswered"
    ans = has_syn & (first_srv >= 0)
    refused = ans.copy()
    refused[ans] = ((flags[first_srv[ans]] & RST) != 0) & ((flags[first_srv[ans]] & SYN) == 0)
    close[refused] = "refused"
    return close


# -- events ------------------------------------------------------------------

def _events(idx, conn, c2s, tcp_rows, an, conns) -> pd.DataFrame:
    if an is None or len(tcp_rows) == 0:
        return pd.DataFrame()
    ts = np.asarray(idx.ts)[tcp_rows]
    frame = np.asarray(idx.frame)[tcp_rows]
    flags = np.asarray(idx.tcp_flags).astype(np.int64)[tcp_rows]
    plen = np.asarray(idx.payload_len).astype(np.int64)[tcp_rows]
    cn = conn[tcp_rows]
    toc = c2s[tcp_rows]
    who = np.where(toc, "client", "server")
    mss = np.asarray(idx.mss)[tcp_rows]
    wscale = np.asarray(idx.wscale)[tcp_rows]
    sack = np.asarray(idx.sack_perm, dtype=bool)[tcp_rows]
    pieces = []

    def add(mask, kind, details, order):
        sel = np.flatnonzero(mask)
        if len(sel) == 0:
            return
        pieces.append(pd.DataFrame({
            "ts": ts[sel], "frame": frame[sel], "conn": cn[sel],
            "kind": kind, "dir": np.where(toc[sel], "c2s", "s2c"),
            "size": plen[sel], "detail": details(sel), "_order": order,
        }))

    syn_no = _syn_numbers(cn, flags)

    def syn_detail(sel):
        # np.char instead of a per-row f-string: one SYN and one SYN-ACK per connection.
        def joined(a, b):
            both = (a != "") & (b != "")
            return np.where(both, np.char.add(np.char.add(a, ", "), b), np.char.add(a, b))

        m, w = mss[sel], wscale[sel]
        opts = joined(joined(np.where(m >= 0, np.char.add("MSS ", m.astype(str)), ""),
                             np.where(w >= 0, np.char.add("window scale ", w.astype(str)), "")),
                      np.where(sack[sel], "SACK permitted", ""))
        head = np.char.add(np.where(flags[sel] & ACK, "SYN-ACK from ", "SYN from "), who[sel])
        again = np.where(syn_no[sel] > 0, np.char.add(np.char.add(" (retransmission #", syn_no[sel].astype(str)), ")"), "")
        text = np.char.add(np.char.add(head, again), np.where(opts != "", np.char.add(": ", opts), ""))
        return text.astype(object)

    add((flags & (SYN | ACK)) == SYN, "SYN", syn_detail, 0)
    add((flags & (SYN | ACK)) == (SYN | ACK), "SYN-ACK", syn_detail, 1)
    add((flags & FIN) != 0, "FIN", lambda sel: [f"FIN from {who[i]}: no more data this way" for i in sel], 2)
    add((flags & RST) != 0, "RST", lambda sel: [f"RST from {who[i]}: connection aborted" for i in sel], 3)

    bits = an.bits
    rel_seq = an.rel_seq
    ns = an.nextseq_rel
    for order, (bit, kind) in enumerate(ta.KINDS.items(), start=10):
        mask = (bits & bit) != 0
        add(mask, kind, _describer(bit, rel_seq, plen, ns, an, who, flags), order)
    if not pieces:
        return pd.DataFrame()
    ev = pd.concat(pieces, ignore_index=True)
    ev = ev.sort_values(["frame", "_order"], kind="stable").drop(columns="_order")
    ev["layer"] = "tcp"
    return ev.reset_index(drop=True)


def _syn_numbers(cn, flags) -> np.ndarray:
    """0 for a connection's first SYN (or SYN-ACK), 1, 2... for each one after it."""
    out = np.zeros(len(cn), dtype=np.int64)
    for kind in ((SYN, SYN), (SYN | ACK, SYN | ACK)):
        sel = np.flatnonzero((flags & (SYN | ACK)) == kind[1])
        if len(sel):
            c = cn[sel]
            o = np.argsort(c, kind="stable")
            cs = c[o]
            start = np.r_[True, cs[1:] != cs[:-1]]
            pos = np.arange(len(cs)) - np.maximum.accumulate(np.where(start, np.arange(len(cs)), 0))
            out[sel[o]] = pos
    return out


def _describer(bit, rel_seq, plen, ns, an, who, flags):
    def seg(i):
        return f"seq {int(rel_seq[i])}" + (f", {int(plen[i])} bytes" if plen[i] else "")

    def describe(sel):
        out = []
        for i in sel:
            if bit == ta.RETRANSMISSION:
                out.append(f"{who[i]} resent {seg(i)} (next new byte would be seq {int(ns[i])})")
            elif bit == ta.FAST_RETRANSMISSION:
                out.append(f"{who[i]} resent {seg(i)} right after duplicate ACKs asked for it")
            elif bit == ta.SPURIOUS_RETRANSMISSION:
                out.append(f"{who[i]} resent {seg(i)} that the peer had already acknowledged")
            elif bit == ta.OUT_OF_ORDER:
                out.append(f"{seg(i)} from {who[i]} arrived after higher sequence numbers (next expected {int(ns[i])})")
            elif bit == ta.DUPLICATE_ACK:
                out.append(f"dup ACK #{int(an.dup_num[i])} of frame {int(an.dup_frame[i])}: "
                           f"{who[i]} is still waiting for data")
            elif bit == ta.ZERO_WINDOW:
                out.append(f"{who[i]} advertises a zero window: its receive buffer is full, the peer must stop")
            elif bit == ta.WINDOW_FULL:
                out.append(f"{seg(i)} from {who[i]} fills the peer's advertised window")
            elif bit == ta.WINDOW_UPDATE:
                out.append(f"{who[i]} changed its window from {int(an.prev_win[i])} to {int(an.win[i])} (raw -> calculated)")
            elif bit == ta.KEEP_ALIVE:
                out.append(f"keep-alive probe from {who[i]} (seq one below the next expected byte)")
            elif bit == ta.KEEP_ALIVE_ACK:
                out.append(f"{who[i]} answers a keep-alive: the connection is still alive")
            elif bit == ta.LOST_SEGMENT:
                gap = (int(rel_seq[i]) - int(ns[i])) & 0xFFFFFFFF
                out.append(f"{gap} bytes from {who[i]} before this segment were not captured")
            elif bit == ta.ACK_LOST_SEGMENT:
                out.append(f"{who[i]} acknowledges data the capture never saw")
            elif bit == ta.ZERO_WINDOW_PROBE:
                out.append(f"{who[i]} probes the peer's zero window with one byte")
            elif bit == ta.ZERO_WINDOW_PROBE_ACK:
                out.append(f"{who[i]} answers a zero-window probe: its window is still zero")
        return out
    return describe
