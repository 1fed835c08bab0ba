"""Transport tier: TCP connections / UDP flows and TCP events from a PacketIndex.

``analyze(idx)`` turns the index tier's per-frame columns into numpy columns
per frame (connection, direction, relative seq/ack, window), per connection
and per TCP event: a :class:`Transport`.  The assembler makes the
``packets``, ``connections`` and ``events`` tables of it.  Numbering is
Wireshark's (``flows.py``), per-packet sequence analysis is Wireshark's
(``analysis.py``); this module adds the per-connection view (who is the
client, handshake timings, how it ended) and the events.

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
  The answered SYN is the last SYN sent before the first SYN-ACK (the last
  SYN when there is none); ``syn_frame``/``synack_frame``/``ack_frame`` name
  the three packets a ladder draws.  ``server_half`` (answered SYN ->
  SYN-ACK) and ``client_half`` (SYN-ACK -> ACK) split the round trip at the
  capture point; ``syn_wait`` is the time lost to unanswered SYNs (first to
  last SYN), ``irtt`` the last SYN -> ACK.  A SYN-ACK seen before the last
  SYN (``synack_lost``) answered an earlier SYN and never reached the client:
  its connection has no ``client_half``.
- ``close``: ``unanswered`` (only SYNs: no reply, and the client did not
  give up with a RST or FIN either), ``refused``
  (the server's first answer to the SYN was a RST), otherwise whichever of
  the first FIN and first RST came first, by its sender
  (``fin-client``/``fin-server``/``rst-client``/``rst-server``), else ``open``.
- an ICMP error that quotes a TCP/UDP header gets that flow's ``conn`` and
  ``stream`` (as Wireshark gives it ``tcp.stream``/``udp.stream``), with
  ``transport`` icmp/icmpv6 and no seq/ack.  IP fragments are not
  reassembled: their frames get no ``conn`` (tshark shows the reassembled
  segment on the last fragment).
- events (layer ``tcp``): one per SYN, SYN-ACK, FIN, RST and one per
  analysis flag of ``tcp_analysis.KINDS``, ordered by frame.
"""

from __future__ import annotations

import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from traceviz.decode.tcp import analysis as ta
from traceviz.decode.tcp import flows, sack

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
TCP, UDP = 6, 17


@dataclass
class Transport:
    """The transport tier's result: numpy columns, nothing per packet in Python.

    Per frame (aligned with ``idx``): ``conn`` and ``stream`` (-1 outside a
    TCP connection or UDP flow), ``c2s`` (sent by the client), ``in_tcp``
    (a TCP row the analysis ran on), ``rel_seq``, ``rel_ack``, ``has_ack``,
    ``win`` (calculated window; valid where ``in_tcp``).
    ``connections``: column name -> array, one entry per connection
    (``mask_<name>`` arrays mark which entries of an integer column are known).
    ``events``: the TCP events as columns ``ts, frame, conn, kind, dir, size,
    detail`` in frame order.  ``analysis`` is the per-row
    :class:`~traceviz.decode.tcp.analysis.Analysis` over ``tcp_rows``.
    ``measured``: per frame, bytes in flight, RTT samples (``inflight``) and
    SACK blocks when ``analyze(idx, measure=True)`` was asked for them, made
    the first time ``measurements()`` asks.
    """

    idx: object
    conn: np.ndarray
    stream: np.ndarray
    c2s: np.ndarray
    in_conn: np.ndarray
    in_tcp: np.ndarray
    tcp_rows: np.ndarray
    rel_seq: np.ndarray
    rel_ack: np.ndarray
    has_ack: np.ndarray
    win: np.ndarray
    connections: dict
    events: dict
    analysis: object = None
    measured: object = None        # a function making the dict measurements() returns, then that dict

    def measurements(self) -> dict:
        """Per frame: ``bytes_in_flight`` (-1 none), ``ack_rtt``, ``rtt_ambiguous``,
        ``ts_rtt`` (NaN none); ``sack``: frame row -> its SACK blocks relative to the
        peer's base, as Wireshark shows ``tcp.options.sack_le``/``sack_re``."""
        if self.measured is None:
            from traceviz.decode.tcp.inflight import nothing_measured
            return nothing_measured(len(self.conn))
        if callable(self.measured):
            self.measured = self.measured()
        return self.measured


def analyze(idx, measure: bool = False, with_flags: bool = True) -> Transport:
    """The transport tier for a ``traceviz.decode.index.PacketIndex``.

    ``measure``: also bytes in flight, RTT samples and SACK blocks per packet
    (``Transport.measurements``); they cost a fifth of a load, so only the
    views that draw them ask.  ``with_flags=False``: no ``tcp.analysis`` flags and
    no TCP events (``Transport.events`` empty), for a load that builds neither
    the packets' events nor anything made of them (``load(tables=["tls"])``,
    ``follow``): the relative numbers the payload tier reassembles by stay."""
    with_flags = with_flags or measure      # bytes in flight are measured with the flags' state
    n = len(idx.frame)
    proto = np.asarray(idx.proto)
    ports = (np.asarray(idx.sport) >= 0) & (np.asarray(idx.dport) >= 0) & ~np.asarray(idx.frag, dtype=bool)
    is_tcp = (proto == TCP) & ports
    is_udp = (proto == UDP) & ports
    tcp_rows = np.flatnonzero(is_tcp)
    flags = np.asarray(idx.tcp_flags).astype(np.int64)

    flow = _flow_identity(idx)
    conn, stream, direction, n_tcp = _number_flows(idx, flow, is_tcp, is_udp, flags)
    in_conn = conn >= 0

    # Independent work runs side by side: numpy lets go of the GIL in its array
    # loops, so on a machine with two cores the second thread is nearly free.
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = None
        blocks = sack.sack_blocks(idx, tcp_rows) if measure else {}
        if len(tcp_rows):
            columns = [conn, direction, flags] + [np.asarray(getattr(idx, name)) for name in (
                "seq", "ack", "win", "payload_len", "ts", "frame", "wscale")]
            if measure:
                # What inflight.measure needs besides: the SACK column only when a packet has blocks.
                absent = np.full(n, -1, dtype=np.int64)
                columns += [np.asarray(getattr(idx, "tsval", absent)), np.asarray(getattr(idx, "tsecr", absent))]
                columns += [sack.delivered(blocks, n)] if blocks else []
            pending = _analyze_in_parts(pool, tcp_rows, *columns, rules=with_flags)
        conns = _connections(idx, conn, direction, is_tcp, n_tcp, stream, flow)
        client_side = conns.pop("_client_side")
        c2s = np.zeros(n, dtype=bool)
        c2s[in_conn] = direction[in_conn] == client_side[conn[in_conn]]
        an = pending() if pending is not None else None
        events = pool.submit(_events, idx, conn, c2s, tcp_rows, an) if with_flags else None
        per_frame = _per_frame(idx, tcp_rows, an)
        rel_ack = per_frame["rel_ack"]
        events = events.result() if events is not None else {}
    return Transport(idx=idx, conn=conn, stream=stream, c2s=c2s, in_conn=in_conn, tcp_rows=tcp_rows,
                     connections=conns, events=events, analysis=an,
                     measured=(lambda: _measured(idx, tcp_rows, an, blocks, rel_ack)) if measure else None,
                     **per_frame)


# Below this many TCP rows one thread is quicker than splitting.
SPLIT_FROM = 200_000


def _analyze_in_parts(pool, tcp_rows, conn, *columns, rules: bool = True):
    """``tcp_analysis.analyze_segments`` on the rows ``tcp_rows`` of ``conn`` and
    ``columns``, in two halves of the connections at once.

    Every rule of the analysis looks only at packets of the same connection,
    so even and odd connection numbers are analysed separately (each half
    keeps frame order) and the per-row results put back in place, aligned
    with ``tcp_rows``.  Each half's inputs are gathered straight from the
    full-length columns (no TCP-only copy first).  Returns a function that
    waits for the result.
    """
    even = (conn[tcp_rows] & 1) == 0
    parts = [np.flatnonzero(even), np.flatnonzero(~even)]
    smaller = min(len(parts[0]), len(parts[1]))
    if len(tcp_rows) < SPLIT_FROM or smaller == 0 or smaller < SPLIT_FROM // 4:   # e.g. one long connection
        job = pool.submit(ta.analyze_segments, *(c[tcp_rows] for c in (conn, *columns)), rules=rules)
        return job.result
    jobs = [pool.submit(ta.analyze_segments, *(c[tcp_rows[rows]] for c in (conn, *columns)), rules=rules)
            for rows in parts]

    def result():
        halves = [job.result() for job in jobs]
        merged = {}
        for name, first in vars(halves[0]).items():
            if callable(first):
                merged[name] = _merged_call([getattr(half, name) for half in halves], parts, len(tcp_rows))
                continue
            out = np.empty(len(tcp_rows), dtype=np.result_type(first, getattr(halves[1], name)))
            for rows, half in zip(parts, halves):
                out[rows] = getattr(half, name)
            merged[name] = out
        return ta.Analysis(**merged)
    return result


def _merged_call(calls, parts, n):
    """One function for the halves' deferred ones (each returns a dict of per-row arrays)."""
    def call():
        got = [c() for c in calls]
        out = {}
        for name, first in got[0].items():
            out[name] = np.empty(n, dtype=np.result_type(first, got[1][name]))
            for rows, half in zip(parts, got):
                out[name][rows] = half[name]
        return out
    return call


def _flow_identity(idx):
    """Per row: (src, dst, sport, dport, addrs, quoted) naming the flow the row belongs to.

    That is the row's own header, or for an ICMP error the TCP/UDP header it
    quotes (``quoted``: 0 none, else the quoted protocol).  Quoted addresses
    not otherwise in the capture get codes after ``idx.addrs``.
    """
    n = len(idx.frame)
    addrs = list(idx.addrs)
    quoted = np.zeros(n, dtype=np.int16)
    quotes = flows.icmp_quotes(idx)
    if not quotes:
        # Nothing to rewrite: the index's own columns, read only (no 40 MB of copies).
        return types.SimpleNamespace(src=np.asarray(idx.src), dst=np.asarray(idx.dst), sport=np.asarray(idx.sport),
                                     dport=np.asarray(idx.dport), addrs=addrs, quoted=quoted)
    # astype copies (the default), so writing quoted headers below leaves idx as it is.
    fsrc = np.asarray(idx.src).astype(np.int64)
    fdst = np.asarray(idx.dst).astype(np.int64)
    fsport = np.asarray(idx.sport).astype(np.int64)
    fdport = np.asarray(idx.dport).astype(np.int64)
    if quotes:
        code = {a: i for i, a in enumerate(addrs)}
        for row, p, qs, qd, qsp, qdp in quotes:
            for a in (qs, qd):
                if a not in code:
                    code[a] = len(addrs)
                    addrs.append(a)
            fsrc[row], fdst[row], fsport[row], fdport[row], quoted[row] = code[qs], code[qd], qsp, qdp, p
    return types.SimpleNamespace(src=fsrc, dst=fdst, sport=fsport, dport=fdport, addrs=addrs, quoted=quoted)


def _number_flows(idx, flow, is_tcp, is_udp, flags):
    """(conn, stream, direction, number of TCP connections); -1 outside TCP/UDP flows."""
    n = len(idx.frame)
    conn = np.full(n, -1, dtype=np.int64)
    stream = np.full(n, -1, dtype=np.int64)
    direction = np.zeros(n, dtype=np.int8)      # 0: sent by the flow's lower endpoint, 1: the higher
    n_tcp = 0
    rows = np.flatnonzero(is_tcp | (flow.quoted == TCP))
    if len(rows):
        tid, dr = flows.endpoint_pairs(flow.src[rows], flow.sport[rows], flow.dst[rows], flow.dport[rows])
        passive = flow.quoted[rows] == TCP
        s = flows.tcp_streams(tid, dr, np.where(passive, 0, flags[rows]), np.asarray(idx.seq)[rows],
                              np.asarray(idx.ack)[rows], passive=passive)
        conn[rows], stream[rows], direction[rows] = s, s, dr
        n_tcp = int(s.max()) + 1
    rows = np.flatnonzero(is_udp | (flow.quoted == UDP))
    if len(rows):
        tid, dr = flows.endpoint_pairs(flow.src[rows], flow.sport[rows], flow.dst[rows], flow.dport[rows])
        s = flows.udp_streams(tid)
        conn[rows], stream[rows], direction[rows] = s + n_tcp, s, dr
    return conn, stream, direction, n_tcp


# -- per frame ---------------------------------------------------------------

def _per_frame(idx, tcp_rows, an) -> dict:
    """The analysis' seq/ack/window put back in frame order (zero outside TCP rows)."""
    n = len(idx.frame)
    flags = np.asarray(idx.tcp_flags)
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
    return {"in_tcp": in_tcp, "rel_seq": seq_rel, "rel_ack": ack_rel, "has_ack": has_ack & in_tcp, "win": win}


def _measured(idx, tcp_rows, an, blocks: dict, rel_ack: np.ndarray) -> dict:
    """The analysis' measurements in frame order, and SACK edges relative to the peer's base."""
    from traceviz.decode.tcp.inflight import nothing_measured

    out = nothing_measured(len(idx.frame))
    if an is None or not hasattr(an, "measure"):
        return out
    for name, values in an.measure().items():
        out[name][tcp_rows] = values
    ack = np.asarray(idx.ack)
    for row, pairs in blocks.items():
        base = (int(ack[row]) - int(rel_ack[row])) & ta.M32
        out["sack"][row] = tuple(((left - base) & ta.M32, (right - base) & ta.M32) for left, right in pairs)
    return out


# -- connections -------------------------------------------------------------

def _first_per_conn(conn_rows: np.ndarray, rows: np.ndarray, nconn: int) -> np.ndarray:
    """Row index of the first row per connection among ``rows`` (-1 if none); rows ascend."""
    out = np.full(nconn, -1, dtype=np.int64)
    if len(rows):
        # Assign in reverse: for repeated connections the earliest row is written last.
        out[conn_rows[rows][::-1]] = rows[::-1]
    return out


def _connections(idx, conn, direction, is_tcp, n_tcp, stream, flow) -> dict:
    """One entry per TCP connection and UDP flow (plus ``_client_side``, popped by the caller)."""
    rows = np.flatnonzero(conn >= 0)
    nconn = int(conn.max()) + 1 if len(rows) else 0
    if nconn == 0:
        return {"conn": np.zeros(0, np.int64), "_client_side": np.zeros(0, np.int8)}
    ts = np.asarray(idx.ts).astype(np.float64, copy=False)
    frame = np.asarray(idx.frame).astype(np.int64, copy=False)
    flags = np.where(is_tcp, np.asarray(idx.tcp_flags), 0).astype(np.int64, copy=False)
    plen = np.maximum(np.asarray(idx.payload_len), 0).astype(np.int64, copy=False)
    is_udp = np.arange(nconn) >= n_tcp

    first = _first_per_conn(conn, rows, nconn)
    last = np.full(nconn, -1, dtype=np.int64)
    last[conn[rows]] = rows            # the latest row is written last
    pure_syn = rows[(flags[rows] & (SYN | ACK)) == SYN]
    first_syn = _first_per_conn(conn, pure_syn, nconn)
    side, client_by = _client_sides(flags, rows, conn, direction, flow, first, first_syn, is_udp, nconn)
    from_client = np.zeros(len(conn), dtype=bool)
    from_client[rows] = direction[rows] == side[conn[rows]]
    client, server = _endpoints(flow, direction, first, side)

    cr = conn[rows]
    packets = np.bincount(cr, minlength=nconn).astype(np.int64)
    packets_c2s = np.bincount(cr, weights=from_client[rows], minlength=nconn).astype(np.int64)
    bytes_c2s = np.bincount(cr, weights=plen[rows] * from_client[rows], minlength=nconn).astype(np.int64)
    bytes_all = np.bincount(cr, weights=plen[rows], minlength=nconn).astype(np.int64)
    hs = _handshake(conn, rows, flags, from_client, frame, ts, first_syn, nconn)
    synack_row = hs.pop("_synack_row")
    syn_count = np.bincount(conn[pure_syn], minlength=nconn)
    close = _close(conn, rows, flags, from_client, first_syn >= 0, nconn)
    close[is_udp] = None
    return {
        "conn": np.arange(nconn, dtype=np.int64),
        "transport": np.where(is_udp, "udp", "tcp").astype(object),
        "stream": stream[first],
        "client": np.asarray(client, dtype=object),
        "server": np.asarray(server, dtype=object),
        "client_by": client_by,
        "first_frame": frame[first],
        "last_frame": frame[last],
        "start": ts[first],
        "end": ts[last],
        "packets": packets,
        "packets_c2s": packets_c2s,
        "packets_s2c": packets - packets_c2s,
        "bytes_c2s": bytes_c2s,
        "bytes_s2c": bytes_all - bytes_c2s,
        **hs,
        "syn_retransmits": np.maximum(syn_count - 1, 0).astype(np.int64),
        "syn_backoff": _syn_backoff(conn, pure_syn, ts, nconn),
        "close": close,
        **_options(idx, first_syn, synack_row, nconn),
        **_conversation_counts(idx, conn, rows, from_client, flow, nconn),
        "_client_side": side,
    }


def _conversation_counts(idx, conn, rows, from_client, flow, nconn) -> dict:
    """Frames and frame bytes each way, as Wireshark's Conversations count them: the
    flow's own TCP/UDP packets, not the ICMP errors that quote its header."""
    # One bin per (connection, direction) and a spare for the frames outside any: two bincounts
    # over the whole column, no gathers (a million frames: a few ms).
    own = conn >= 0
    if flow.quoted.any():
        own &= flow.quoted == 0
    key = np.where(own, conn * 2 + from_client, 2 * nconn)
    frames = np.bincount(key, minlength=2 * nconn + 1)[:-1].reshape(nconn, 2)
    wire = np.bincount(key, weights=np.asarray(idx.wire_len), minlength=2 * nconn + 1)[:-1]
    wire = wire.astype(np.int64).reshape(nconn, 2)
    return {"frames_c2s": frames[:, 1], "frames_s2c": frames[:, 0],
            "wire_bytes_c2s": wire[:, 1], "wire_bytes_s2c": wire[:, 0]}


def _client_sides(flags, rows, conn, direction, flow, first, first_syn, is_udp, nconn):
    """Which flow side is the client, and how we know (see the module doc)."""
    sport, dport = flow.sport, flow.dport
    a_port = np.where(direction[first] == 0, sport[first], dport[first])
    b_port = np.where(direction[first] == 0, dport[first], sport[first])
    # The lower port is the server's; equal ports: the first sender is the client.
    side = np.where(a_port > b_port, 0, np.where(a_port < b_port, 1, direction[first])).astype(np.int8)
    client_by = np.full(nconn, "ports", dtype=object)
    synack = rows[(flags[rows] & (SYN | ACK)) == (SYN | ACK)]
    first_synack = _first_per_conn(conn, synack, nconn)
    has = first_synack >= 0
    side[has] = 1 - direction[first_synack[has]]
    client_by[has] = "syn"
    has = first_syn >= 0
    side[has] = direction[first_syn[has]]
    client_by[has] = "syn"
    side[is_udp] = direction[first[is_udp]]
    client_by[is_udp] = "first"
    return side, client_by


def _endpoints(flow, direction, first, side):
    """Client and server as ``ip:port`` text, from each connection's first packet."""
    from_client = direction[first] == side
    src, dst = flow.src[first], flow.dst[first]
    sport, dport = flow.sport[first], flow.dport[first]

    # Each address's text once; per row only the join (76k rows for 38k connections).
    addr_text = [a if ":" not in a else f"[{a}]" for a in flow.addrs]

    def text(addr, port):
        return [f"{addr_text[a]}:{p}" if a >= 0 else None for a, p in zip(addr.tolist(), port.tolist())]

    return (text(np.where(from_client, src, dst), np.where(from_client, sport, dport)),
            text(np.where(from_client, dst, src), np.where(from_client, dport, sport)))


def _handshake(conn, rows, flags, from_client, frame, ts, first_syn, nconn) -> dict:
    """Handshake times, frames and the round trips between them (NaN / -1 where a step is missing)."""
    synack = rows[((flags[rows] & (SYN | ACK)) == (SYN | ACK)) & ~from_client[rows]]
    synack_row = _first_per_conn(conn, synack, nconn)
    # The client's first ACK (without SYN or RST) after the server's first SYN-ACK.
    acks = rows[from_client[rows] & ((flags[rows] & (SYN | ACK | RST)) == ACK)]
    sa = synack_row[conn[acks]]
    acks = acks[(sa >= 0) & (frame[acks] > frame[np.maximum(sa, 0)])]
    ack_row = _first_per_conn(conn, acks, nconn)

    def at(row, column=ts, missing=np.nan):
        return np.where(row >= 0, column[np.maximum(row, 0)], missing)

    syns = rows[from_client[rows] & ((flags[rows] & (SYN | ACK)) == SYN)]
    # The RTT is timed from the latest SYN before the handshake's ACK, as Wireshark's
    # tcp.analysis.initial_rtt is (its "most recent SYN"): a lost first SYN is a wait,
    # not a longer round trip; connect_time keeps the wait.
    ack_of = ack_row[conn[syns]]
    before_ack = syns[(ack_of < 0) | (syns < np.maximum(ack_of, 0))]
    latest = np.full(nconn, -1, dtype=np.int64)
    np.maximum.at(latest, conn[before_ack], before_ack)   # rows are in file order: the max is the latest
    last_syn_row = np.full(nconn, -1, dtype=np.int64)
    np.maximum.at(last_syn_row, conn[syns], syns)
    syn_t, latest_t, synack_t, ack_t, last_t = at(first_syn), at(latest), at(synack_row), at(ack_row), at(last_syn_row)
    # The SYN the first SYN-ACK answered: the last one sent before it, by the clock (a
    # SYN-ACK stamped before every SYN, a damaged timestamp, answers none).
    answered = np.full(nconn, -1, dtype=np.int64)
    early = syns[ts[syns] <= synack_t[conn[syns]] + 1e-9]
    np.maximum.at(answered, conn[early], early)
    synack_lost = synack_t < last_t - 1e-9            # False where either is unknown (NaN)
    drawn_syn = np.where(answered >= 0, answered, np.where(synack_row >= 0, -1, last_syn_row))
    return {"syn": syn_t, "synack": synack_t, "ack": ack_t, "handshake_rtt": ack_t - latest_t,
            "rtt_server": synack_t - latest_t, "rtt_client": ack_t - synack_t,
            "connect_time": ack_t - syn_t,
            "last_syn": last_t, "syn_wait": last_t - syn_t, "irtt": ack_t - last_t, "synack_lost": synack_lost,
            "server_half": synack_t - at(answered), "client_half": np.where(synack_lost, np.nan, ack_t - synack_t),
            "syn_frame": at(drawn_syn, frame, -1), "synack_frame": at(synack_row, frame, -1),
            "ack_frame": at(ack_row, frame, -1),
            "_synack_row": synack_row}


def _options(idx, syn_row, synack_row, nconn) -> dict:
    """MSS and window scale of each side's SYN (-1: not seen), and whether both offered SACK
    (``mask_sack_permitted``: whether both SYNs were seen)."""
    def opt(name, row):
        return np.where(row >= 0, np.asarray(getattr(idx, name))[np.maximum(row, 0)].astype(np.int64), -1)

    sack = np.asarray(idx.sack_perm, dtype=bool)
    both = (syn_row >= 0) & (synack_row >= 0)
    sack_perm = both & sack[np.maximum(syn_row, 0)] & sack[np.maximum(synack_row, 0)]
    return {"mss_client": opt("mss", syn_row), "mss_server": opt("mss", synack_row),
            "wscale_client": opt("wscale", syn_row), "wscale_server": opt("wscale", synack_row),
            "sack_permitted": sack_perm, "mask_sack_permitted": both}


def _syn_backoff(c, pure_syn, ts, nconn) -> np.ndarray:
    """Seconds between successive SYNs of each connection ([] for a single SYN)."""
    out = np.empty(nconn, dtype=object)
    for i in range(nconn):
        out[i] = []
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


def _close(c, rows, flags, from_client, has_syn, nconn) -> np.ndarray:
    """How each connection ended (see the module doc for the rules)."""
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

EVENT_COLUMNS = ("ts", "frame", "conn", "kind", "dir", "size", "detail")


def _events(idx, conn, c2s, tcp_rows, an) -> dict:
    """One event per SYN, SYN-ACK, FIN and RST, and one per tcp.analysis flag, in frame order."""
    if an is None or len(tcp_rows) == 0:
        return {}
    # Full-length gathers only for what every row needs; the rest per event row.
    flags = np.asarray(idx.tcp_flags)[tcp_rows].astype(np.int64)
    plen = np.maximum(np.asarray(idx.payload_len)[tcp_rows], 0).astype(np.int64, copy=False)
    toc = c2s[tcp_rows]
    ctx = types.SimpleNamespace(an=an, who=_Who(toc), plen=plen, flags=flags, syn_no=_syn_numbers(conn[tcp_rows], flags),
                                rows=tcp_rows, mss=np.asarray(idx.mss), wscale=np.asarray(idx.wscale),
                                sack=np.asarray(idx.sack_perm).astype(bool, copy=False))
    kinds = [("SYN", np.flatnonzero((flags & (SYN | ACK)) == SYN), _syn_detail),
             ("SYN-ACK", np.flatnonzero((flags & (SYN | ACK)) == (SYN | ACK)), _syn_detail),
             ("FIN", np.flatnonzero(flags & FIN), lambda c, sel: "FIN from " + c.who[sel] + ": no more data this way"),
             ("RST", np.flatnonzero(flags & RST), lambda c, sel: "RST from " + c.who[sel] + ": connection aborted")]
    flagged = np.flatnonzero(an.bits)      # analysis flags are rare: test the bits on those rows only
    kinds += [(kind, flagged[(an.bits[flagged] & bit) != 0], _analysis_detail(bit)) for bit, kind in ta.KINDS.items()]
    ts, frame = np.asarray(idx.ts), np.asarray(idx.frame)
    pieces = []
    for order, (kind, sel, detail) in enumerate(kinds):
        if len(sel):
            at = tcp_rows[sel]
            pieces.append({
                "ts": ts[at], "frame": frame[at], "conn": conn[at],
                "kind": np.full(len(sel), kind, dtype=object),
                "dir": np.where(toc[sel], "c2s", "s2c").astype(object),
                "size": plen[sel], "detail": np.asarray(detail(ctx, sel), dtype=object),
                "order": np.full(len(sel), order, dtype=np.int64),
            })
    if not pieces:
        return {}
    ev = {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    by = np.lexsort((ev.pop("order"), ev["frame"]))       # frame, then the kinds' order above
    return {k: v[by] for k, v in ev.items()}


class _Who:
    """"client"/"server" per TCP row, made only for the rows asked for (events are few, rows many)."""

    def __init__(self, to_server: np.ndarray):
        self.to_server = to_server

    def __getitem__(self, sel):
        if np.ndim(sel) == 0:
            return "client" if self.to_server[sel] else "server"
        return np.where(self.to_server[sel], "client", "server").astype(object)


def _syn_detail(c, sel):
    """'SYN from client (retransmission #1): MSS 1460, window scale 7, SACK permitted'.

    The texts repeat (a handful of option sets per capture), so each distinct
    combination is written once and the rest are copies.
    """
    at = c.rows[sel]
    m, w = c.mss[at].astype(np.int64), c.wscale[at].astype(np.int64)
    sack = c.sack[at].astype(np.int64)
    synack = (c.flags[sel] & ACK) != 0
    client = c.who.to_server[sel]
    n = c.syn_no[sel]
    key = np.stack([synack, client, n, m, w, sack], axis=1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    texts = []
    for i in first.tolist():
        opts = ([f"MSS {m[i]}"] if m[i] >= 0 else []) + ([f"window scale {w[i]}"] if w[i] >= 0 else []) \
            + (["SACK permitted"] if sack[i] else [])
        texts.append(("SYN-ACK from " if synack[i] else "SYN from ") + ("client" if client[i] else "server")
                     + (f" (retransmission #{n[i]})" if n[i] > 0 else "") + (": " + ", ".join(opts) if opts else ""))
    return np.array(texts, dtype=object)[np.asarray(inverse).reshape(-1)]


def _syn_numbers(cn, flags) -> np.ndarray:
    """0 for a connection's first SYN (or SYN-ACK), 1, 2... for each one after it."""
    out = np.zeros(len(cn), dtype=np.int64)
    for kind in (SYN, SYN | ACK):
        sel = np.flatnonzero((flags & (SYN | ACK)) == kind)
        if len(sel):
            c = cn[sel]
            o = np.argsort(c, kind="stable")
            cs = c[o]
            start = np.r_[True, cs[1:] != cs[:-1]]
            pos = np.arange(len(cs)) - np.maximum.accumulate(np.where(start, np.arange(len(cs)), 0))
            out[sel[o]] = pos
    return out


# What each tcp.analysis flag means for a person reading the timeline.
# Arguments: who sent it, "seq N, L bytes", the next expected seq, and the row.
_ANALYSIS_TEXT = {
    ta.RETRANSMISSION: lambda who, seg, ns, a, i:
        f"{who} resent {seg} (next new byte would be seq {ns})",
    ta.FAST_RETRANSMISSION: lambda who, seg, ns, a, i:
        f"{who} resent {seg} right after duplicate ACKs asked for it",
    ta.SPURIOUS_RETRANSMISSION: lambda who, seg, ns, a, i:
        f"{who} resent {seg} that the peer had already acknowledged",
    ta.OUT_OF_ORDER: lambda who, seg, ns, a, i:
        f"{seg} from {who} arrived after higher sequence numbers (next expected {ns})",
    ta.DUPLICATE_ACK: lambda who, seg, ns, a, i:
        f"dup ACK #{int(a.dup_num[i])} of frame {int(a.dup_frame[i])}: {who} is still waiting for data",
    ta.ZERO_WINDOW: lambda who, seg, ns, a, i:
        f"{who} advertises a zero window: its receive buffer is full, the peer must stop",
    ta.WINDOW_FULL: lambda who, seg, ns, a, i:
        f"{seg} from {who} fills the peer's advertised window",
    ta.WINDOW_UPDATE: lambda who, seg, ns, a, i:
        f"{who} now advertises a receive window of {int(a.win[i])} bytes",
    ta.KEEP_ALIVE: lambda who, seg, ns, a, i:
        f"keep-alive probe from {who} (seq one below the next expected byte)",
    ta.KEEP_ALIVE_ACK: lambda who, seg, ns, a, i:
        f"{who} answers a keep-alive: the connection is still alive",
    ta.LOST_SEGMENT: lambda who, seg, ns, a, i:
        f"{(int(a.rel_seq[i]) - ns) & 0xFFFFFFFF} bytes from {who} before this segment were not captured",
    ta.ACK_LOST_SEGMENT: lambda who, seg, ns, a, i:
        f"{who} acknowledges data the capture never saw",
    ta.ZERO_WINDOW_PROBE: lambda who, seg, ns, a, i:
        f"{who} probes the peer's zero window with one byte",
    ta.ZERO_WINDOW_PROBE_ACK: lambda who, seg, ns, a, i:
        f"{who} answers a zero-window probe: its window is still zero",
}


def _analysis_detail(bit):
    text = _ANALYSIS_TEXT[bit]

    def describe(c, sel):
        a = c.an
        out = []
        for i in sel.tolist():
            seg = f"seq {int(a.rel_seq[i])}" + (f", {int(c.plen[i])} bytes" if c.plen[i] else "")
            out.append(text(c.who[i], seg, int(a.nextseq_rel[i]), a, i))
        return out
    return describe
