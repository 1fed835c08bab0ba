"""Write a realistic large pcap quickly: numpy header templates, no scapy per packet.

    python bench/gen_capture.py OUT.pcap [--packets 1000000] [--seed 1]

About 25k TCP connections per million packets, each with a handshake (some
SYNs retransmitted, some refused by RST), one to a few request/response
exchanges (responses split into MSS-sized segments, ACKed every second
segment, a few segments retransmitted), then a FIN teardown (some end in RST,
some stay open); ~10 % UDP (DNS-like pairs and QUIC-like bursts); ~10 % of
the flows over IPv6; all interleaved in time over five minutes.  Payload bytes
are zero; checksums are left zero (tshark does not verify them by default).
``--payloads real`` puts traffic-like bytes in them (``traffic.py``): TLS,
HTTP/1.1, h2c and opaque TCP, real DNS messages and real QUIC connections.

The per-connection packet plan is a Python loop (cheap: ~45 packets per
connection); the bytes are laid down with numpy, a whole header at a time.
"""

from __future__ import annotations

import argparse
import time
from array import array

import numpy as np

MSS = 1448
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
DURATION = 300.0
T0 = 1_700_000_000.0


class Plan:
    """Packet columns, appended per packet, in generation order."""

    def __init__(self):
        self.ts = array("d")
        self.flow = array("i")      # flow number (for addresses/ports)
        self.c2s = array("b")
        self.flags = array("i")     # TCP flags, -1 for UDP
        self.seq = array("q")
        self.ack = array("q")
        self.plen = array("i")
        self.src = array("q")       # where the payload bytes lie in the pool (-1: zeros)

    def add(self, ts, flow, c2s, flags, seq, ack, plen, src=-1):
        self.ts.append(ts)
        self.flow.append(flow)
        self.c2s.append(c2s)
        self.flags.append(flags)
        self.seq.append(seq & 0xFFFFFFFF)
        self.ack.append(ack & 0xFFFFFFFF)
        self.plen.append(plen)
        self.src.append(src)

    def __len__(self):
        return len(self.ts)


def tcp_connection(p: Plan, rng, flow: int, t: float) -> None:
    rtt = float(rng.lognormal(np.log(0.02), 0.6))
    half = rtt / 2
    cs, ss = int(rng.integers(0, 2**32)), int(rng.integers(0, 2**32))
    p.add(t, flow, 1, SYN, cs, 0, 0)
    if rng.random() < 0.03:                        # SYN lost once: retransmitted after 1 s
        t += 1.0
        p.add(t, flow, 1, SYN, cs, 0, 0)
    t += rtt
    if rng.random() < 0.02:                        # refused
        p.add(t, flow, 0, RST | ACK, 0, cs + 1, 0)
        return
    p.add(t, flow, 0, SYN | ACK, ss, cs + 1, 0)
    t += 0.0002
    c, s = cs + 1, ss + 1
    p.add(t, flow, 1, ACK, c, s, 0)
    for _ in range(int(rng.integers(1, 5))):
        t += float(rng.exponential(0.05))
        req = int(rng.integers(150, 900))
        p.add(t, flow, 1, PSH | ACK, c, s, req)
        c += req
        t += rtt + float(rng.exponential(0.01))
        size = int(min(rng.lognormal(np.log(6000), 1.0), 400_000))
        sent = 0
        nseg = 0
        while sent < size:
            seg = min(MSS, size - sent)
            flags = PSH | ACK if sent + seg == size else ACK
            p.add(t, flow, 0, flags, s + sent, c, seg)
            if rng.random() < 0.01:                # lost downstream: retransmitted after an RTO
                p.add(t + max(0.2, 3 * rtt), flow, 0, flags, s + sent, c, seg)
            sent += seg
            nseg += 1
            t += 0.00012
            if nseg % 2 == 0 or sent == size:
                p.add(t + half, flow, 1, ACK, c, s + sent, 0)
        s += size
        t += half
    teardown(p, rng, flow, t, rtt, c, s)


def teardown(p: Plan, rng, flow: int, t: float, rtt: float, c: int, s: int) -> None:
    """85 % a FIN from the client answered by the server's, 10 % a reset from the server, else left open."""
    end = rng.random()
    t += float(rng.exponential(0.2))
    if end < 0.85:
        p.add(t, flow, 1, FIN | ACK, c, s, 0)
        p.add(t + rtt, flow, 0, FIN | ACK, s, c + 1, 0)
        p.add(t + rtt + 0.0002, flow, 1, ACK, c + 1, s + 1, 0)
    elif end < 0.95:
        p.add(t, flow, 0, RST | ACK, s, c, 0)


def udp_flow(p: Plan, rng, flow: int, t: float) -> None:
    if rng.random() < 0.6:                          # DNS-like query and answer
        p.add(t, flow, 1, -1, 0, 0, int(rng.integers(30, 60)))
        p.add(t + float(rng.lognormal(np.log(0.01), 0.5)), flow, 0, -1, 0, 0, int(rng.integers(60, 300)))
        return
    for _ in range(int(rng.integers(6, 30))):       # QUIC-like burst
        t += float(rng.exponential(0.005))
        p.add(t, flow, int(rng.random() < 0.3), -1, 0, 0, int(rng.integers(40, 1350)))



# --- payloads that look like real traffic (--payloads real; see traffic.py) ---------------------

def real_tcp_connection(p: Plan, rng, flow: int, t: float, flights, pool: bytearray) -> None:
    """One TCP connection carrying ``flights`` ((dir, bytes, think) each): a handshake, the
    flights cut into segments (1 % retransmitted after an RTO, 1 % swapped with the next
    one, every second segment ACKed), then a FIN or RST teardown or none."""
    rtt = float(rng.lognormal(np.log(0.02), 0.6))
    cs, ss = int(rng.integers(0, 2**32)), int(rng.integers(0, 2**32))
    p.add(t, flow, 1, SYN, cs, 0, 0)
    if rng.random() < 0.03:
        t += 1.0
        p.add(t, flow, 1, SYN, cs, 0, 0)
    t += rtt
    if rng.random() < 0.02:
        p.add(t, flow, 0, RST | ACK, 0, cs + 1, 0)
        return
    p.add(t, flow, 0, SYN | ACK, ss, cs + 1, 0)
    t += 0.0002
    nxt = {1: cs + 1, 0: ss + 1}                   # next sequence number, by c2s
    p.add(t, flow, 1, ACK, nxt[1], nxt[0], 0)
    last = None
    for d, data, think in flights:
        me = 1 if d == "c2s" else 0
        other = 1 - me
        if last is None or (me and last != d):
            t += 0.0002 + think                    # the client answers as soon as the bytes arrive
        elif not me and last != d:
            t += rtt + think                       # the server's answer is a round trip away
        else:
            t += think
        off = len(pool)
        pool += data
        segs = []
        for a in range(0, len(data), MSS):
            n = min(MSS, len(data) - a)
            segs.append([t, PSH | ACK if a + n == len(data) else ACK, nxt[me] + a, n, off + a])
            t += 0.00012
        for i in range(len(segs) - 1):
            if rng.random() < 0.01:                # reordered: overtaken by the next segment
                segs[i][0], segs[i + 1][0] = segs[i + 1][0] + 1e-6, segs[i][0]
        for k, (ts, flags, seq, n, src) in enumerate(segs):
            p.add(ts, flow, me, flags, seq, nxt[other], n, src)
            if rng.random() < 0.01:
                p.add(ts + max(0.2, 3 * rtt), flow, me, flags, seq, nxt[other], n, src)
            if (k % 2 == 1 or k == len(segs) - 1) and (not me or len(segs) > 1):
                p.add(ts + (0.0001 if not me else rtt), flow, other, ACK, nxt[other], seq + n, 0)
        nxt[me] += len(data)
        last = d
    teardown(p, rng, flow, t, rtt, nxt[1], nxt[0])


def real_udp_flow(p: Plan, rng, flow: int, t: float, dns: bool, pool: bytearray, quic) -> None:
    """A DNS query and its answer, or a real QUIC connection (``quic``: a ``traffic.QuicPool``)."""
    import traffic
    if dns:
        query, answer = traffic.dns_pair(rng)
        for c2s, data, when in ((1, query, t), (0, answer, t + float(rng.lognormal(np.log(0.01), 0.5)))):
            p.add(when, flow, c2s, -1, 0, 0, len(data), len(pool))
            pool += data
        return
    for d, data, since in quic.take():
        p.add(t + since, flow, int(d == "c2s"), -1, 0, 0, len(data), len(pool))
        pool += data


def real_plan(packets: int, seed: int) -> tuple[Plan, np.ndarray, np.ndarray, bytearray]:
    """As ``plan``, with payloads: (plan, IPv6 per flow, server port per flow, the payload pool)."""
    import traffic
    handshakes = traffic.tls_handshakes()
    quic = traffic.QuicPool(seed)
    pool, ports = bytearray(), array("i")

    def tcp(p, rng, flow, t):
        k = rng.random()
        host = traffic.TLS_HOSTS[int(rng.integers(0, len(traffic.TLS_HOSTS)))]
        if k < 0.6:
            port, flights = 443, traffic.tls_conversation(rng, handshakes[int(rng.integers(0, len(handshakes)))])
        elif k < 0.85:
            port, flights = 80, traffic.http1_conversation(rng, host)
        elif k < 0.88:
            port, flights = 8080, traffic.h2c_conversation(rng, host)
        else:
            port = (22, 5432, 6379)[int(rng.integers(0, 3))]
            flights = traffic.opaque_conversation(rng, port)
        ports.append(port)
        real_tcp_connection(p, rng, flow, t, flights, pool)

    def udp(p, rng, flow, t):
        dns = rng.random() < 0.6
        ports.append(53 if dns else 443)
        real_udp_flow(p, rng, flow, t, dns, pool, quic)

    p, v6 = plan(packets, seed, tcp, udp)
    return p, v6, np.frombuffer(ports, np.int32).astype(np.int64), pool


def plan(packets: int, seed: int, tcp=None, udp=None) -> tuple[Plan, np.ndarray]:
    """Flows starting at random over five minutes until there are ``packets``: ~90 % of the
    packets TCP (``tcp(plan, rng, flow, t)``), the rest UDP (``udp``); returns the plan and
    which flows are IPv6."""
    tcp, udp = tcp or tcp_connection, udp or udp_flow
    rng = np.random.default_rng(seed)
    p = Plan()
    flow_v6 = array("b")
    tcp_target = packets * 0.9
    while len(p) < packets:
        t = T0 + float(rng.random()) * DURATION
        flow = len(flow_v6)
        flow_v6.append(int(rng.random() < 0.1))
        if len(p) < tcp_target and rng.random() < 0.97:
            tcp(p, rng, flow, t)
        else:
            udp(p, rng, flow, t)
    return p, np.frombuffer(flow_v6, np.int8).astype(bool)


def frames(p: Plan, v6_flows: np.ndarray, packets: int, seed: int, ports: np.ndarray | None = None,
           pool: bytearray | None = None) -> np.ndarray:
    """The pcap's bytes.  ``ports``: each flow's server port (else 443/80 and 53/443 at
    random); ``pool``: the payload bytes the plan's ``src`` points into (else zeros)."""
    rng = np.random.default_rng(seed + 1)
    ts = np.frombuffer(p.ts, np.float64)
    order = np.argsort(ts, kind="stable")[:packets]
    ts = ts[order]
    flow = np.frombuffer(p.flow, np.int32)[order]
    c2s = np.frombuffer(p.c2s, np.int8)[order].astype(bool)
    flags = np.frombuffer(p.flags, np.int32)[order]
    seq = np.frombuffer(p.seq, np.int64)[order]
    ack = np.frombuffer(p.ack, np.int64)[order]
    plen = np.frombuffer(p.plen, np.int32)[order].astype(np.int64)
    v6 = v6_flows[flow]
    udp = flags < 0
    syn = ~udp & ((flags & SYN) != 0)
    n = len(ts)

    # Addresses and ports per flow: clients 10.0.0.0/16 (fd00::/64), 200 servers.
    nflows = len(v6_flows)
    frng = np.random.default_rng(seed + 2)
    client4 = (10 << 24) | frng.integers(1, 65535, nflows)
    server4 = (172 << 24) | (16 << 16) | frng.integers(1, 200, nflows)
    cport = frng.integers(1024, 65535, nflows)
    sport_tcp = np.where(frng.random(nflows) < 0.7, 443, 80)
    sport_udp = np.where(frng.random(nflows) < 0.6, 53, 443)
    cli, srv = client4[flow], server4[flow]
    src4, dst4 = np.where(c2s, cli, srv), np.where(c2s, srv, cli)
    cp = cport[flow]
    spt = np.where(udp, sport_udp[flow], sport_tcp[flow]) if ports is None else ports[flow]
    sport, dport = np.where(c2s, cp, spt), np.where(c2s, spt, cp)

    ip_len = np.where(v6, 40, 20)
    l4_len = np.where(udp, 8, np.where(syn, 40, 32))
    frame_len = 14 + ip_len + l4_len + plen
    rec = 16 + frame_len
    off = np.zeros(n + 1, np.int64)
    np.cumsum(rec, out=off[1:])
    out = np.zeros(24 + int(off[-1]), np.uint8)
    out[:24] = np.frombuffer(
        np.array([(0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)],
                 dtype=[("m", "<u4"), ("a", "<u2"), ("b", "<u2"), ("z", "<i4"), ("s", "<u4"), ("l", "<u4"), ("t", "<u4")]).tobytes(),
        np.uint8)
    pos = off[:-1] + 24

    sec = np.floor(ts).astype(np.int64)
    usec = np.round((ts - sec) * 1e6).astype(np.int64)
    sec, usec = sec + usec // 1_000_000, usec % 1_000_000
    rh = np.zeros(n, dtype=[("s", "<u4"), ("u", "<u4"), ("i", "<u4"), ("o", "<u4")])
    rh["s"], rh["u"], rh["i"], rh["o"] = sec, usec, frame_len, frame_len
    _put(out, pos, rh.view(np.uint8).reshape(n, 16))

    eth = np.zeros(n, dtype=[("d", "V6"), ("s", "V6"), ("t", ">u2")])
    eth["d"] = b"\x02\x00\x00\x00\x00\x01"
    eth["s"] = b"\x02\x00\x00\x00\x00\x02"
    eth["t"] = np.where(v6, 0x86DD, 0x0800)
    _put(out, pos + 16, eth.view(np.uint8).reshape(n, 14))

    proto = np.where(udp, 17, 6)
    l3 = pos + 30
    i4 = np.flatnonzero(~v6)
    h4 = np.zeros(len(i4), dtype=[("vi", "u1"), ("tos", "u1"), ("len", ">u2"), ("id", ">u2"), ("ff", ">u2"),
                                  ("ttl", "u1"), ("p", "u1"), ("ck", ">u2"), ("s", ">u4"), ("d", ">u4")])
    h4["vi"], h4["len"], h4["id"], h4["ff"], h4["ttl"] = 0x45, (20 + l4_len + plen)[i4], rng.integers(0, 65535, len(i4)), 0x4000, 64
    h4["p"], h4["s"], h4["d"] = proto[i4], src4[i4], dst4[i4]
    _put(out, l3[i4], h4.view(np.uint8).reshape(-1, 20))
    i6 = np.flatnonzero(v6)
    h6 = np.zeros(len(i6), dtype=[("v", ">u4"), ("len", ">u2"), ("nh", "u1"), ("hl", "u1"),
                                  ("s0", ">u8"), ("s1", ">u8"), ("d0", ">u8"), ("d1", ">u8")])
    h6["v"], h6["len"], h6["nh"], h6["hl"] = 0x60000000, (l4_len + plen)[i6], proto[i6], 64
    net = 0xFD00 << 48
    h6["s0"], h6["d0"] = net, net
    h6["s1"], h6["d1"] = src4[i6].astype(np.uint64), dst4[i6].astype(np.uint64)
    _put(out, l3[i6], h6.view(np.uint8).reshape(-1, 40))

    l4 = l3 + ip_len
    iu = np.flatnonzero(udp)
    hu = np.zeros(len(iu), dtype=[("s", ">u2"), ("d", ">u2"), ("l", ">u2"), ("c", ">u2")])
    hu["s"], hu["d"], hu["l"] = sport[iu], dport[iu], 8 + plen[iu]
    _put(out, l4[iu], hu.view(np.uint8).reshape(-1, 8))
    tsval = (ts * 1000).astype(np.int64) & 0xFFFFFFFF
    for rows, opts in ((np.flatnonzero(syn), _SYN_OPTS), (np.flatnonzero(~udp & ~syn), _DATA_OPTS)):
        ht = np.zeros(len(rows), dtype=[("s", ">u2"), ("d", ">u2"), ("q", ">u4"), ("a", ">u4"), ("of", ">u2"),
                                         ("w", ">u2"), ("c", ">u2"), ("u", ">u2"), ("o", "V%d" % len(opts))])
        hlen = 20 + len(opts)
        ht["s"], ht["d"], ht["q"], ht["a"] = sport[rows], dport[rows], seq[rows], ack[rows]
        ht["of"] = ((hlen // 4) << 12) | flags[rows]
        ht["w"] = np.where(syn[rows], 64240, 501)
        ht["o"] = opts
        b = ht.view(np.uint8).reshape(-1, hlen)
        tso = 20 + opts.index(b"\x08\x0a") + 2
        b[:, tso:tso + 4] = tsval[rows].astype(">u4").view(np.uint8).reshape(-1, 4)
        _put(out, l4[rows], b)
    if pool is not None:
        src = np.frombuffer(p.src, np.int64)[order]
        rows = np.flatnonzero((src >= 0) & (plen > 0))
        at = (l4 + l4_len)[rows]
        whole, payloads = memoryview(out), memoryview(pool)
        for a, b, k in zip(at.tolist(), src[rows].tolist(), plen[rows].tolist()):
            whole[a:a + k] = payloads[b:b + k]
    return out


_SYN_OPTS = b"\x02\x04\x05\xb4" + b"\x04\x02" + b"\x08\x0a" + b"\x00" * 8 + b"\x01" + b"\x03\x03\x07"
_DATA_OPTS = b"\x01\x01\x08\x0a" + b"\x00" * 8


def _put(out: np.ndarray, pos: np.ndarray, rows: np.ndarray, chunk: int = 200_000) -> None:
    """out[pos[i]:pos[i]+w] = rows[i] for all i (chunked to bound the index arrays)."""
    w = rows.shape[1]
    span = np.arange(w)
    for a in range(0, len(pos), chunk):
        idx = pos[a:a + chunk, None] + span
        out[idx] = rows[a:a + chunk]


def generate(path: str, packets: int = 1_000_000, seed: int = 1, payloads: str = "zero") -> dict:
    t = time.perf_counter()
    if payloads == "real":
        p, v6, ports, pool = real_plan(packets, seed)
        data = frames(p, v6, packets, seed, ports, pool)
        del pool
    else:
        p, v6 = plan(packets, seed)
        data = frames(p, v6, packets, seed)
    with open(path, "wb") as f:
        f.write(memoryview(data))
    return {"packets": min(packets, len(p)), "bytes": len(data), "flows": len(v6), "seconds": time.perf_counter() - t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--payloads", choices=("zero", "real"), default="zero",
                    help="zero bytes (the index and TCP tiers only) or traffic-like payloads (traffic.py)")
    a = ap.parse_args()
    info = generate(a.out, a.packets, a.seed, a.payloads)
    print(f"{a.out}: {info['packets']} packets, {info['bytes'] / 1e6:.0f} MB, {info['flows']} flows, "
          f"{info['seconds']:.1f} s")


if __name__ == "__main__":
    main()
