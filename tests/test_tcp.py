"""TCP/UDP analysis (traceviz.decode.tcp) on hand-built packet sequences.

Each scenario is built with scapy, written to a pcap, and checked two ways:
against the facts the scenario was built to have (a refused connection is
refused, a SYN sent twice is one retransmission...) and, where tshark is
installed, frame by frame against tshark's dissection of the same file
(tcp.stream, relative seq/ack, calculated window, tcp.len and the
tcp.analysis.* flags).

The index is built here with dpkt (``index_from_pcap``) so these tests pin
the analysis alone; tests/test_tcp_corpus.py runs the real reader and index.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import types

import dpkt
import numpy as np
import pandas as pd
import pytest

scapy_all = pytest.importorskip("scapy.all")
Ether, IP, IPv6, TCP, UDP, Raw, wrpcap = (scapy_all.Ether, scapy_all.IP, scapy_all.IPv6, scapy_all.TCP,
                                          scapy_all.UDP, scapy_all.Raw, scapy_all.wrpcap)

from traceviz.decode.tcp import analysis as ta  # noqa: E402
from traceviz.assemble.transport import tables  # noqa: E402
from traceviz.decode.tcp.connections import analyze as transport  # noqa: E402


def analyze(idx):
    """(packets, connections, events) of a PacketIndex: the transport tier, assembled."""
    return tables(transport(idx))
from traceviz.model import CONNECTION_COLUMNS, HANDSHAKE_COLUMNS, EVENT_COLUMNS, PACKET_COLUMNS  # noqa: E402

C, S = "10.0.0.1", "10.0.0.2"
CP, SP = 40000, 80


# -- building captures --------------------------------------------------------

def pkt(t, d, flags, seq, ack=0, win=1000, ln=0, opts=None, sport=CP, dport=SP):
    """One TCP packet: d=0 client->server, d=1 server->client."""
    src, dst, a, b = (C, S, sport, dport) if d == 0 else (S, C, dport, sport)
    p = Ether() / IP(src=src, dst=dst) / TCP(sport=a, dport=b, flags=flags, seq=seq & 0xFFFFFFFF,
                                             ack=ack & 0xFFFFFFFF, window=win, options=opts or [])
    if ln:
        p = p / Raw(b"x" * ln)
    p.time = t
    return p


def handshake(t=1.0, cisn=1000, sisn=5000, copts=None, sopts=None, **kw):
    return [pkt(t, 0, "S", cisn, 0, 64240, opts=copts, **kw),
            pkt(t + 0.01, 1, "SA", sisn, cisn + 1, 65535, opts=sopts, **kw),
            pkt(t + 0.02, 0, "A", cisn + 1, sisn + 1, 1000, **kw)]


def index_from_pcap(path):
    """A PacketIndex stand-in (same field contract) built with dpkt."""
    with open(path, "rb") as f:
        recs = list(dpkt.pcap.Reader(f))
    n = len(recs)
    names = ("src", "dst", "proto", "sport", "dport", "seq", "ack", "win", "payload_len",
             "payload_off", "payload_cap", "mss", "wscale")
    cols = {k: np.full(n, -1, np.int64) for k in names}
    ipver = np.zeros(n, np.int64)
    flags = np.zeros(n, np.int64)
    sack = np.zeros(n, bool)
    addrs: list[str] = []
    codes: dict[str, int] = {}

    def code(a):
        if a not in codes:
            codes[a] = len(addrs)
            addrs.append(a)
        return codes[a]

    ts = np.array([t for t, _ in recs], dtype=np.float64)
    wire = np.array([len(b) for _, b in recs], dtype=np.int64)
    for i, (_, buf) in enumerate(recs):
        ip = dpkt.ethernet.Ethernet(buf).data
        if isinstance(ip, dpkt.ip.IP):
            ipver[i], fam, cols["proto"][i] = 4, socket.AF_INET, ip.p
        elif isinstance(ip, dpkt.ip6.IP6):
            ipver[i], fam, cols["proto"][i] = 6, socket.AF_INET6, ip.nxt
        else:
            continue
        cols["src"][i] = code(socket.inet_ntop(fam, ip.src))
        cols["dst"][i] = code(socket.inet_ntop(fam, ip.dst))
        l4 = ip.data
        if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
            cols["sport"][i], cols["dport"][i] = l4.sport, l4.dport
            cols["payload_len"][i] = cols["payload_cap"][i] = len(l4.data)
            cols["payload_off"][i] = len(buf) - len(l4.data)
        if isinstance(l4, dpkt.tcp.TCP):
            cols["seq"][i], cols["ack"][i], cols["win"][i] = l4.seq, l4.ack, l4.win
            flags[i] = l4.flags
            for kind, val in dpkt.tcp.parse_opts(l4.opts):
                if kind == 2 and len(val) == 2:
                    cols["mss"][i] = int.from_bytes(val, "big")
                elif kind == 3 and len(val) == 1:
                    cols["wscale"][i] = val[0]
                elif kind == 4:
                    sack[i] = True
    return types.SimpleNamespace(
        capture=None, frame=np.arange(1, n + 1), ts=ts, wire_len=wire, caplen=wire, ipver=ipver,
        addrs=addrs, tcp_flags=flags, sack_perm=sack, frag=np.zeros(n, bool),
        malformed=np.zeros(n, bool), tsval=np.full(n, -1), tsecr=np.full(n, -1), stats={}, **cols)


def run(packets, tmp_path, name="t"):
    path = tmp_path / f"{name}.pcap"
    wrpcap(str(path), packets)
    packets_df, conns, events = analyze(index_from_pcap(path))
    return path, packets_df, conns, events


def kinds_at(events, frame):
    return set(events.loc[events["frame"] == frame, "kind"])


# -- tshark as the oracle -----------------------------------------------------

FIELDS = ["frame.number", "tcp.stream", "udp.stream", "tcp.seq", "tcp.ack", "tcp.window_size",
          "tcp.len", "tcp.flags.ack", "tcp.analysis.duplicate_ack_num"] + list(ta.TSHARK_FIELDS)
# Wireshark also sets tcp.analysis.retransmission on fast and spurious
# retransmissions; our event is the specific one.
IMPLIES_RETRANSMISSION = {"fast-retransmission", "spurious-retransmission"}
ANALYSIS_KINDS = set(ta.KINDS.values())


def tshark_rows(path):
    exe = shutil.which("tshark")
    if not exe:
        return None
    args = [exe, "-r", str(path), "-T", "fields", "-E", "occurrence=f"]
    for f in FIELDS:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120).stdout
    return {int(v[0]): dict(zip(FIELDS, v)) for v in (line.split("\t") for line in out.splitlines())}


def tshark_kinds(row):
    kinds = {ta.KINDS[bit] for field, bit in ta.TSHARK_FIELDS.items() if row[field]}
    return kinds


def disagreements(path, packets, events):
    """Frames where we and tshark differ, as readable strings (empty: agree)."""
    rows = tshark_rows(path)
    if rows is None:
        pytest.skip("tshark is not installed")
    ours = events[events["kind"].isin(ANALYSIS_KINDS)].groupby("frame")["kind"].agg(set).to_dict()
    dup_num = events[events["kind"] == "duplicate-ack"].set_index("frame")["detail"].to_dict()
    bad = []
    for p in packets.itertuples():
        t = rows[p.frame]
        if p.transport in ("icmp", "icmpv6"):
            want = t["tcp.stream"] or t["udp.stream"]
            got = "" if pd.isna(p.stream) else str(p.stream)
            if got != want:
                bad.append(f"frame {p.frame}: ICMP quoting stream {got!r} != tshark {want!r}")
        elif t["tcp.stream"]:
            want = {"conn": int(t["tcp.stream"]), "seq": int(t["tcp.seq"]), "win": int(t["tcp.window_size"]),
                    "len": int(t["tcp.len"])}
            got = {"conn": p.conn, "seq": p.seq, "win": p.win, "len": p.len}
            if t["tcp.flags.ack"] == "1":
                want["ack"], got["ack"] = int(t["tcp.ack"]), p.ack
            else:
                want["ack"], got["ack"] = "NA", "NA" if pd.isna(p.ack) else p.ack
            for k in want:
                if str(got[k]) != str(want[k]):
                    bad.append(f"frame {p.frame}: {k} {got[k]} != tshark {want[k]}")
            mine = set(ours.get(p.frame, set()))
            if mine & IMPLIES_RETRANSMISSION:
                mine.add("retransmission")
            if mine != tshark_kinds(t):
                bad.append(f"frame {p.frame}: {sorted(mine)} != tshark {sorted(tshark_kinds(t))}")
            if t["tcp.analysis.duplicate_ack_num"] and f"#{t['tcp.analysis.duplicate_ack_num']} " not in dup_num.get(p.frame, ""):
                bad.append(f"frame {p.frame}: dup ack number {dup_num.get(p.frame)} != #{t['tcp.analysis.duplicate_ack_num']}")
        elif t["udp.stream"]:
            if p.transport != "udp" or p.stream != int(t["udp.stream"]):
                bad.append(f"frame {p.frame}: udp stream {p.stream} != {t['udp.stream']}")
    return bad


# -- schema and conventions ----------------------------------------------------

def test_tables_follow_the_schema_and_extra_packet_columns(tmp_path):
    _, packets, conns, events = run(handshake(), tmp_path)
    assert list(packets.columns[:len(PACKET_COLUMNS)]) == list(PACKET_COLUMNS)
    for extra in ("payload_off", "payload_cap", "ipver", "stream", "seq_raw", "ack_raw", "flag_bits"):
        assert extra in packets.columns
    assert list(conns.columns[:len(CONNECTION_COLUMNS)]) == list(CONNECTION_COLUMNS)
    assert list(events.columns[:len(EVENT_COLUMNS)]) == list(EVENT_COLUMNS)
    assert list(packets["flags"]) == ["SYN", "SYN,ACK", "ACK"]
    assert list(packets["flag_bits"]) == [0x02, 0x12, 0x10]
    assert list(packets["seq_raw"]) == [1000, 5000, 1001]
    assert list(packets["dir"]) == ["c2s", "s2c", "c2s"]
    assert packets["ack"].isna().tolist() == [True, False, False]   # no ACK flag, no ack
    assert set(events["layer"]) == {"tcp"}
    assert list(events["kind"]) == ["SYN", "SYN-ACK"]


def test_empty_index_gives_empty_tables(tmp_path):
    path = tmp_path / "empty.pcap"
    wrpcap(str(path), [])
    packets, conns, events = analyze(index_from_pcap(path))
    assert len(packets) == len(conns) == len(events) == 0
    assert list(conns.columns[:len(CONNECTION_COLUMNS)]) == list(CONNECTION_COLUMNS)


# -- connections: client, handshake, close -------------------------------------

def test_handshake_times_retransmitted_syn_and_options(tmp_path):
    opts_c = [("MSS", 1460), ("WScale", 7), ("SAckOK", b"")]
    opts_s = [("MSS", 1400), ("WScale", 9), ("SAckOK", b"")]
    pk = [pkt(1.0, 0, "S", 1000, 0, 64240, opts=opts_c),
          pkt(2.0, 0, "S", 1000, 0, 64240, opts=opts_c),
          pkt(4.0, 0, "S", 1000, 0, 64240, opts=opts_c),
          pkt(4.05, 1, "SA", 5000, 1001, 65535, opts=opts_s),
          pkt(4.08, 0, "A", 1001, 5001, 100),
          pkt(4.09, 0, "PA", 1001, 5001, 100, ln=20),
          pkt(4.12, 1, "PA", 5001, 1021, 300, ln=300),
          pkt(4.13, 1, "FA", 5301, 1021, 300),
          pkt(4.14, 0, "FA", 1021, 5302, 100),
          pkt(4.15, 1, "A", 5302, 1022, 300)]
    path, packets, conns, events = run(pk, tmp_path)
    assert len(conns) == 1
    c = conns.iloc[0]
    assert (c["client"], c["server"], c["client_by"]) == ("10.0.0.1:40000", "10.0.0.2:80", "syn")
    assert c["syn"] == pytest.approx(1.0) and c["synack"] == pytest.approx(4.05) and c["ack"] == pytest.approx(4.08)
    # The RTT runs from the SYN that was answered (Wireshark's initial_rtt); the wait for it is connect_time.
    assert c["handshake_rtt"] == pytest.approx(0.08) and c["connect_time"] == pytest.approx(3.08)
    assert c["rtt_server"] == pytest.approx(0.05) and c["rtt_client"] == pytest.approx(0.03)
    assert c["syn_retransmits"] == 2
    assert c["syn_backoff"] == pytest.approx([1.0, 2.0])
    assert (c["mss_client"], c["mss_server"], c["wscale_client"], c["wscale_server"]) == (1460, 1400, 7, 9)
    assert bool(c["sack_permitted"])
    assert (c["packets"], c["packets_c2s"], c["packets_s2c"]) == (10, 6, 4)
    assert (c["bytes_c2s"], c["bytes_s2c"]) == (20, 300)
    assert c["close"] == "fin-server"
    assert (c["first_frame"], c["last_frame"]) == (1, 10)
    # Both sides scale their windows: 100 << 7 and 300 << 9.
    assert packets.loc[packets["frame"] == 6, "win"].item() == 100 << 7
    assert packets.loc[packets["frame"] == 7, "win"].item() == 300 << 9
    syn_events = events[events["kind"] == "SYN"]
    assert list(syn_events["frame"]) == [1, 2, 3]
    assert "retransmission #2" in syn_events["detail"].iloc[2]
    assert kinds_at(events, 2) >= {"SYN", "retransmission"}
    assert disagreements(path, packets, events) == []


@pytest.mark.parametrize("name, sequence, close", [
    ("refused", [pkt(1, 0, "S", 1), pkt(1.001, 1, "RA", 0, 2)], "refused"),
    ("unanswered", [pkt(1, 0, "S", 1), pkt(2, 0, "S", 1), pkt(4, 0, "S", 1)], "unanswered"),
    ("client-gave-up", [pkt(1, 0, "S", 1), pkt(1.5, 0, "R", 2)], "rst-client"),
    ("rst-server", handshake() + [pkt(2, 1, "RA", 5001, 1001)], "rst-server"),
    ("rst-client", handshake() + [pkt(2, 0, "R", 1001)], "rst-client"),
    ("fin-client", handshake() + [pkt(2, 0, "FA", 1001, 5001), pkt(2.1, 1, "RA", 5001, 1002)], "fin-client"),
    ("fin-server", handshake() + [pkt(2, 1, "FA", 5001, 1001), pkt(2.1, 0, "FA", 1001, 5002)], "fin-server"),
    ("open", handshake(), "open"),
])
def test_close_states(tmp_path, name, sequence, close):
    path, packets, conns, events = run(sequence, tmp_path, name)
    assert conns["close"].tolist() == [close]
    if close in ("refused", "unanswered"):
        assert np.isnan(conns["synack"].iloc[0]) and np.isnan(conns["handshake_rtt"].iloc[0])
    if close == "unanswered":
        assert conns["syn_retransmits"].iloc[0] == 2
        assert conns["syn_backoff"].iloc[0] == pytest.approx([1.0, 2.0])
    assert disagreements(path, packets, events) == []


def test_mid_connection_capture_decides_client_by_ports(tmp_path):
    pk = [pkt(1.0, 1, "PA", 9000, 5000, ln=100),    # server speaks first
          pkt(1.1, 0, "A", 5000, 9100),
          pkt(1.2, 0, "PA", 5000, 9100, ln=10)]
    path, packets, conns, events = run(pk, tmp_path)
    c = conns.iloc[0]
    assert (c["client"], c["server"], c["client_by"]) == ("10.0.0.1:40000", "10.0.0.2:80", "ports")
    assert np.isnan(c["syn"]) and c["close"] == "open"
    # Wireshark starts relative numbers at 1 without a SYN.
    assert packets["seq"].tolist() == [1, 1, 1] and packets["ack"].tolist() == [1, 101, 101]
    assert packets["dir"].tolist() == ["s2c", "c2s", "c2s"]
    assert disagreements(path, packets, events) == []


def test_port_reuse_new_isn_is_a_new_connection_same_isn_is_not(tmp_path):
    first = handshake(1.0, 100, 500) + [pkt(1.1, 0, "FA", 101, 501), pkt(1.2, 1, "FA", 501, 102),
                                         pkt(1.3, 0, "A", 102, 502)]
    again_same = [pkt(2.0, 0, "S", 100)]               # same ISN: a retransmission
    new = handshake(3.0, 7000, 8000)                    # new ISN: new tcp.stream
    reverse = [pkt(4.0, 1, "S", 123456)]                # the other side opens: new again
    path, packets, conns, events = run(first + again_same + new + reverse, tmp_path)
    assert packets["conn"].tolist() == [0] * 7 + [1] * 3 + [2]
    assert kinds_at(events, 7) >= {"SYN", "retransmission"}
    assert conns["client"].tolist() == ["10.0.0.1:40000", "10.0.0.1:40000", "10.0.0.2:80"]
    assert disagreements(path, packets, events) == []


def test_syn_ack_with_a_new_isn_rebases_in_the_same_stream(tmp_path):
    # Wireshark keeps the stream but numbers relative to the new ISN from then on.
    seq = handshake(1.0, 100, 500) + [pkt(2, 1, "SA", 9999, 101), pkt(2.1, 1, "PA", 10000, 101, ln=5),
                                      pkt(2.2, 0, "A", 101, 10005), pkt(2.4, 1, "A", 501, 101)]
    path, packets, conns, events = run(seq, tmp_path)
    assert packets["conn"].tolist() == [0] * 7
    assert packets["seq"].tolist()[3:] == [0, 1, 1, (501 - 9999) & 0xFFFFFFFF]
    assert packets["ack"].tolist()[5] == 6
    assert "lost-segment" in kinds_at(events, 4)      # the analysis itself is not reset
    assert disagreements(path, packets, events) == []


def test_window_scale_needs_both_syns(tmp_path):
    one_sided = handshake(copts=[("WScale", 7)]) + [pkt(2, 0, "A", 1001, 5001, win=10),
                                                    pkt(2.1, 1, "A", 5001, 1001, win=10)]
    path, packets, conns, events = run(one_sided, tmp_path)
    assert packets["win"].tolist()[3:] == [10, 10]
    assert disagreements(path, packets, events) == []
    # SYN-ACK not captured: the SYN's own scale still applies to its sender.
    syn_only = [pkt(1, 0, "S", 1000, opts=[("WScale", 7)]), pkt(1.2, 0, "A", 1001, 5001, win=10),
                pkt(1.3, 1, "A", 5001, 1001, win=10)]
    path, packets, conns, events = run(syn_only, tmp_path, "syn_only")
    assert packets["win"].tolist() == [1000, 1280, 10]
    assert disagreements(path, packets, events) == []


def test_udp_flows_follow_tcp_connections(tmp_path):
    pk = handshake() + [
        Ether() / IP(src="10.0.0.5", dst="10.0.0.6") / UDP(sport=5353, dport=53) / Raw(b"q" * 30),
        Ether() / IP(src="10.0.0.6", dst="10.0.0.5") / UDP(sport=53, dport=5353) / Raw(b"r" * 80),
        Ether() / IPv6(src="fe80::1", dst="fe80::2") / UDP(sport=443, dport=50000) / Raw(b"z" * 5),
    ]
    for i, p in enumerate(pk[3:]):
        p.time = 3 + i
    path, packets, conns, events = run(pk, tmp_path)
    assert packets["conn"].tolist()[3:] == [1, 1, 2]
    assert packets["stream"].tolist()[3:] == [0, 0, 1]
    assert conns["transport"].tolist() == ["tcp", "udp", "udp"]
    udp = conns.iloc[1]
    assert (udp["client"], udp["server"], udp["client_by"]) == ("10.0.0.5:5353", "10.0.0.6:53", "first")
    assert (udp["bytes_c2s"], udp["bytes_s2c"]) == (30, 80)
    assert conns.iloc[2]["client"] == "[fe80::1]:443"
    assert disagreements(path, packets, events) == []


# -- events: one scenario per tcp.analysis kind --------------------------------

def _data(t, d, seq, ack, ln, win=1000, flags="PA"):
    return pkt(t, d, flags, seq, ack, win, ln=ln)


SCENARIOS = {
    # name: (packets, frame, kind we must report there)
    "retransmission": (handshake() + [_data(1.1, 0, 1001, 5001, 100), _data(1.5, 0, 1001, 5001, 100)],
                       5, "retransmission"),
    "duplicate-ack": (handshake() + [_data(1.1, 1, 5001, 1001, 100), _data(1.2, 1, 5201, 1001, 100),
                                     pkt(1.21, 0, "A", 1001, 5101), pkt(1.22, 0, "A", 1001, 5101),
                                     pkt(1.23, 0, "A", 1001, 5101)],
                      8, "duplicate-ack"),
    "fast-retransmission": (handshake() + [_data(1.1, 1, 5001, 1001, 100), _data(1.2, 1, 5201, 1001, 100),
                                           pkt(1.21, 0, "A", 1001, 5101), pkt(1.22, 0, "A", 1001, 5101),
                                           pkt(1.23, 0, "A", 1001, 5101), _data(1.235, 1, 5101, 1001, 100)],
                            9, "fast-retransmission"),
    "spurious-retransmission": (handshake() + [_data(1.1, 0, 1001, 5001, 100), pkt(1.2, 1, "A", 5001, 1101),
                                               _data(1.5, 0, 1001, 5001, 100)],
                                6, "spurious-retransmission"),
    "out-of-order": (handshake() + [_data(1.1, 0, 1101, 5001, 100), _data(1.101, 0, 1001, 5001, 100)],
                     5, "out-of-order"),
    "lost-segment": (handshake() + [_data(1.1, 0, 1101, 5001, 100)], 4, "lost-segment"),
    "ack-lost-segment": (handshake() + [pkt(1.1, 1, "A", 5001, 1501)], 4, "ack-lost-segment"),
    "zero-window": (handshake() + [_data(1.1, 0, 1001, 5001, 100), pkt(1.2, 1, "A", 5001, 1101, win=0)],
                    5, "zero-window"),
    "zero-window-probe": (handshake() + [_data(1.1, 0, 1001, 5001, 100), pkt(1.2, 1, "A", 5001, 1101, win=0),
                                         _data(1.5, 0, 1101, 5001, 1), pkt(1.6, 1, "A", 5001, 1101, win=0)],
                          6, "zero-window-probe"),
    "zero-window-probe-ack": (handshake() + [_data(1.1, 0, 1001, 5001, 100),
                                             pkt(1.2, 1, "A", 5001, 1101, win=0),
                                             _data(1.5, 0, 1101, 5001, 1), pkt(1.6, 1, "A", 5001, 1101, win=0)],
                              7, "zero-window-probe-ack"),
    "window-update": (handshake() + [_data(1.1, 0, 1001, 5001, 100), pkt(1.2, 1, "A", 5001, 1101, win=0),
                                     pkt(1.3, 1, "A", 5001, 1101, win=4000)],
                      6, "window-update"),
    "window-full": (handshake() + [pkt(1.1, 1, "A", 5001, 1001, win=300), _data(1.2, 0, 1001, 5001, 300)],
                    5, "window-full"),
    "keep-alive": (handshake() + [pkt(60, 0, "A", 1000, 5001)], 4, "keep-alive"),
    "keep-alive-ack": (handshake() + [pkt(60, 0, "A", 1000, 5001), pkt(60.01, 1, "A", 5001, 1001, win=65535)],
                       5, "keep-alive-ack"),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_analysis_kind(tmp_path, name):
    sequence, frame, kind = SCENARIOS[name]
    path, packets, conns, events = run(sequence, tmp_path, name)
    assert kind in kinds_at(events, frame)
    ev = events[(events["frame"] == frame) & (events["kind"] == kind)].iloc[0]
    assert ev["layer"] == "tcp" and ev["conn"] == 0 and isinstance(ev["detail"], str) and ev["detail"]
    assert disagreements(path, packets, events) == []


def test_duplicate_ack_detail_names_number_and_frame(tmp_path):
    sequence, _, _ = SCENARIOS["fast-retransmission"]
    _, _, _, events = run(sequence, tmp_path)
    dups = events[events["kind"] == "duplicate-ack"]["detail"].tolist()
    assert dups[0].startswith("dup ACK #1 of frame 6") and dups[1].startswith("dup ACK #2 of frame 6")


def test_events_cover_syn_synack_fin_rst_per_packet(tmp_path):
    seq = handshake() + [pkt(2, 0, "FA", 1001, 5001), pkt(2.1, 1, "RA", 5001, 1002)]
    _, packets, _, events = run(seq, tmp_path)
    base = events[events["kind"].isin(["SYN", "SYN-ACK", "FIN", "RST"])]
    assert list(zip(base["frame"], base["kind"], base["dir"])) == [
        (1, "SYN", "c2s"), (2, "SYN-ACK", "s2c"), (4, "FIN", "c2s"), (5, "RST", "s2c")]


# -- random conversations against tshark ----------------------------------------

def random_conversations(seed, nconn=4, npk=60):
    """Messy TCP: lost and resent segments, dup ACKs, zero windows, probes,
    keep-alives, reordering, wrapping sequence numbers, reused ports."""
    rnd = random.Random(seed)
    out = []
    t = 1000.0
    for ci in range(nconn):
        client = f"10.0.{ci % 3}.1"
        cport = 40000 + rnd.randint(0, 2)
        isn = lambda: rnd.choice([rnd.randint(0, 2 ** 32 - 1), 2 ** 32 - rnd.randint(1, 3000)])  # noqa: E731
        st = [dict(seq=isn(), ack=0, win=rnd.choice([0, 5, 100, 65535]), sent=[]),
              dict(seq=isn(), ack=0, win=rnd.choice([5, 100, 65535]), sent=[])]

        def emit(d, flags, seq, ack, win, ln, opts=None):
            nonlocal t
            t += rnd.choice([0.0005, 0.001, 0.002, 0.004, 0.01, 0.025, 0.3])
            src, dst, sp, dp = (client, S, cport, SP) if d == 0 else (S, client, SP, cport)
            p = Ether() / IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags, seq=seq & 0xFFFFFFFF,
                                                     ack=ack & 0xFFFFFFFF, window=win, options=opts or [])
            if ln:
                p = p / Raw(b"x" * ln)
            p.time = round(t, 6)
            out.append(p)

        ws = rnd.choice([None, 0, 2, 7])
        if rnd.random() < 0.8:
            opts = [("MSS", 1460)] + ([("WScale", ws)] if ws is not None else [])
            for _ in range(rnd.choice([1, 1, 2])):
                emit(0, "S", st[0]["seq"], 0, 64240, 0, opts)
            st[0]["seq"] += 1
            if rnd.random() < 0.9:
                reply = [("MSS", 1400)] + ([("WScale", rnd.choice([ws, 3]))]
                                           if ws is not None and rnd.random() < 0.8 else [])
                emit(1, "SA", st[1]["seq"], st[0]["seq"], 65535, 0, reply)
                st[1]["seq"] += 1
                st[0]["ack"], st[1]["ack"] = st[1]["seq"], st[0]["seq"]
                emit(0, "A", st[0]["seq"], st[0]["ack"], st[0]["win"] or 100, 0)
        else:
            st[0]["ack"], st[1]["ack"] = st[1]["seq"], st[0]["seq"]
        for _ in range(npk):
            d = rnd.randint(0, 1)
            s, o = st[d], st[1 - d]
            a = rnd.random()
            if a < 0.35:
                ln = rnd.choice([1, 10, 100, 1000])
                s["sent"].append((s["seq"], ln))
                emit(d, "PA", s["seq"], s["ack"], s["win"], ln)
                s["seq"] += ln
            elif a < 0.45:
                s["ack"] = o["seq"] - rnd.choice([0, 0, 0, 5])
                emit(d, "A", s["seq"], s["ack"], s["win"], 0)
            elif a < 0.55:
                emit(d, "A", s["seq"], s["ack"], s["win"], 0)
            elif a < 0.62 and s["sent"]:
                old, ln = rnd.choice(s["sent"])
                emit(d, "PA", old, s["ack"], s["win"], ln)
            elif a < 0.67:
                s["seq"] += rnd.choice([10, 100])
            elif a < 0.72:
                s["win"] = rnd.choice([0, 0, 1, 5, 100, 65535])
                emit(d, "A", s["seq"], s["ack"], s["win"], 0)
            elif a < 0.77:
                emit(d, "A", s["seq"] - 1, s["ack"], s["win"], rnd.choice([0, 1]))
            elif a < 0.80:
                emit(d, "PA", s["seq"], s["ack"], s["win"], 1)
            elif a < 0.85:
                emit(d, "A", s["seq"], o["seq"] + rnd.choice([1, 50]), s["win"], 0)
            elif a < 0.90:
                emit(d, "PA", s["seq"] + 10, s["ack"], s["win"], 10)
                emit(d, "PA", s["seq"], s["ack"], s["win"], 10)
                s["seq"] += 20
            elif a < 0.93:
                ln = min(max(1, (o["ack"] + o["win"]) - s["seq"]), 1400) if o["win"] else 1
                emit(d, "PA", s["seq"], s["ack"], s["win"], ln)
                s["seq"] += ln
            elif a < 0.95:
                emit(d, "FA", s["seq"], s["ack"], s["win"], 0)
                s["seq"] += 1
            else:
                emit(d, "A", s["seq"], s["ack"], s["win"], 0)
        if rnd.random() < 0.3:
            emit(rnd.randint(0, 1), "R", st[0]["seq"], 0, 0, 0)
    out.sort(key=lambda p: p.time)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_random_conversations_agree_with_tshark(tmp_path, seed):
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed")
    path, packets, conns, events = run(random_conversations(seed, nconn=3 + seed % 4), tmp_path, f"r{seed}")
    # The generator makes every kind of trouble; make sure this seed had some.
    assert events["kind"].isin(ANALYSIS_KINDS).sum() > 10
    assert disagreements(path, packets, events) == []


def test_icmp_errors_join_the_flow_they_quote(tmp_path):
    """Wireshark numbers an ICMP error by the TCP/UDP header it quotes (and opens a stream if new)."""
    from scapy.all import ICMP, ICMPv6DestUnreach

    from traceviz.decode.index import index_frames
    from traceviz.sources.reader import read_capture

    seq = handshake()
    seq.append(Ether() / IP(src="10.0.0.9", dst=C) / ICMP(type=3, code=4) /
               IP(src=C, dst=S) / TCP(sport=CP, dport=SP, flags="A", seq=1001, ack=5001))
    seq.append(Ether() / IP(src="10.0.0.9", dst=C) / ICMP(type=11) /
               IP(src=C, dst="10.9.9.9") / TCP(sport=1234, dport=443, flags="S", seq=7))
    seq.append(Ether() / IP(src=C, dst="10.0.0.53") / UDP(sport=5000, dport=53) / Raw(b"q"))
    seq.append(Ether() / IP(src="10.0.0.53", dst=C) / ICMP(type=3, code=3) /
               IP(src=C, dst="10.0.0.53") / UDP(sport=5000, dport=53))
    seq.append(Ether() / IPv6(src="::2", dst="::1") / ICMPv6DestUnreach() /
               IPv6(src="::1", dst="::2") / UDP(sport=9, dport=10))
    for i, p in enumerate(seq[3:]):
        p.time = 2 + i
    path = tmp_path / "icmp.pcap"
    wrpcap(str(path), seq)
    packets, conns, events = analyze(index_frames(read_capture(path)))
    assert packets["conn"].tolist() == [0, 0, 0, 0, 1, 2, 2, 3]
    assert packets["transport"].tolist()[3:] == ["icmp", "icmp", "udp", "icmp", "icmpv6"]
    assert conns["transport"].tolist() == ["tcp", "tcp", "udp", "udp"]
    assert conns["packets"].tolist() == [4, 1, 2, 1]
    assert disagreements(path, packets, events) == []


def test_connections_have_exactly_the_schema_columns(tmp_path):
    _, _, conns, _ = run(handshake(), tmp_path)
    assert list(conns.columns) == list(CONNECTION_COLUMNS) + list(HANDSHAKE_COLUMNS)
