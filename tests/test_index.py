"""The index tier (decode/index.py) against tshark and against packets scapy builds.

Ground truth: tshark's dissection of the same bytes (every pcap/pcapng in the
corpus) and the fields scapy put into the packets it built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from traceviz.decode.index import ACK, RST, SYN, index_frames
from traceviz.errors import InputError
from traceviz.sources.reader import read_capture

CORPUS = Path(os.environ.get("TRACEVIZ_CORPUS", Path(__file__).resolve().parent / "corpus"))
TSHARK = shutil.which("tshark")
CAPTURES = sorted(p for p in (CORPUS / "pcap").rglob("*") if p.suffix in (".pcap", ".pcapng")) if CORPUS.is_dir() else []

FIELDS = [
    "frame.time_epoch", "frame.len", "frame.cap_len",
    "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
    "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
    "tcp.flags", "tcp.len", "udp.length", "tcp.seq_raw", "tcp.ack_raw",
    "tcp.window_size_value", "tcp.hdr_len",
    "tcp.options.mss_val", "tcp.options.wscale.shift", "tcp.options.timestamp.tsval",
    "tcp.options.timestamp.tsecr", "tcp.options.sack_perm",
]


def tshark_rows(path: Path) -> list[dict[str, str]]:
    out = subprocess.run(
        [TSHARK, "-r", str(path), "-n", "-T", "fields", "-E", "occurrence=f", "-E", "separator=\t",
         # Dissect first fragments in place (we do not reassemble yet).
         "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"]
        + [a for f in FIELDS for a in ("-e", f)],
        capture_output=True, text=True, timeout=120,
    ).stdout
    return [dict(zip(FIELDS, line.split("\t"))) for line in out.splitlines()]


def epoch_ns(text: str) -> int:
    """tshark's frame.time_epoch as integer ns.  A damaged nanosecond field of
    1e9 or more is printed with 10 digits: it is still a count of ns."""
    sec, _, frac = text.partition(".")
    sub = int(frac) if len(frac) > 9 else int(frac.ljust(9, "0"))
    return int(sec) * 1_000_000_000 + sub


def _usable(path: Path):
    try:
        return index_frames(read_capture(path))
    except InputError:
        return None


@pytest.mark.skipif(not TSHARK, reason="tshark not installed")
@pytest.mark.skipif(not CAPTURES, reason=f"corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_agrees_with_tshark(path: Path):
    ix = _usable(path)
    if ix is None:
        assert tshark_rows(path) == [], "we refused a file tshark could read"
        return
    assert_agrees_with_tshark(ix, path)


def assert_agrees_with_tshark(ix, path: Path) -> None:
    rows = tshark_rows(path)
    assert len(ix) == len(rows), "frame count"
    ns = ix.capture.ts_ns
    for i, t in enumerate(rows):
        where = f"frame {i + 1}"
        want_ns = epoch_ns(t["frame.time_epoch"])
        assert ns[i] == want_ns, where
        assert abs(ix.ts[i] - want_ns / 1e9) < 1e-6, where
        assert ix.wire_len[i] == int(t["frame.len"]), where
        assert ix.caplen[i] == int(t["frame.cap_len"]), where
        src = t["ip.src"] or t["ipv6.src"]
        dst = t["ip.dst"] or t["ipv6.dst"]
        assert ix.addr(ix.src[i]) == (src or None), where
        assert ix.addr(ix.dst[i]) == (dst or None), where
        if t["tcp.srcport"]:
            assert ix.proto[i] == 6, where
            assert (ix.sport[i], ix.dport[i]) == (int(t["tcp.srcport"]), int(t["tcp.dstport"])), where
            assert ix.tcp_flags[i] == int(t["tcp.flags"], 16), where
            if t["tcp.len"]:                  # tshark leaves it out for first fragments
                assert ix.payload_len[i] == int(t["tcp.len"]), where
            assert ix.seq[i] == int(t["tcp.seq_raw"]), where
            assert ix.ack[i] == int(t["tcp.ack_raw"]), where
            assert ix.win[i] == int(t["tcp.window_size_value"]), where
            assert ix.tcp_hlen[i] == int(t["tcp.hdr_len"]), where
            assert ix.mss[i] == int(t["tcp.options.mss_val"] or -1), where
            assert ix.wscale[i] == int(t["tcp.options.wscale.shift"] or -1), where
            assert ix.tsval[i] == int(t["tcp.options.timestamp.tsval"] or -1), where
            assert ix.tsecr[i] == int(t["tcp.options.timestamp.tsecr"] or -1), where
            assert ix.sack_perm[i] == bool(t["tcp.options.sack_perm"]), where
        elif t["udp.srcport"]:
            assert ix.proto[i] == 17, where
            assert (ix.sport[i], ix.dport[i]) == (int(t["udp.srcport"]), int(t["udp.dstport"])), where
            assert ix.payload_len[i] == int(t["udp.length"]) - 8, where
        else:
            assert ix.sport[i] == -1 and ix.proto[i] not in (6, 17), where


@pytest.mark.skipif(not CAPTURES, reason=f"corpus not found at {CORPUS}")
def test_corpus_link_types_match_manifest():
    import json

    manifest = json.loads((CORPUS / "MANIFEST.json").read_text())["files"]
    checked = 0
    for path in CAPTURES:
        entry = manifest.get(path.relative_to(CORPUS).as_posix())
        ix = _usable(path)
        if entry is None or ix is None:
            continue
        want = {lt["name"] for lt in entry["header"]["link_types"]}
        assert set(ix.link_counts) == want, path.name
        assert ix.stats["vlan_tagged"] == entry.get("vlan_tagged_frames", 0), path.name
        checked += 1
    assert checked >= 30


# ---------------------------------------------------------------------------
# Packets built with scapy: every odd layout, with the facts we put in.

from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
)
from scapy.layers.ipsec import AH  # noqa: E402
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402

MACS = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
T0 = 1_700_000_000


def write_pcap(path: Path, frames: list[bytes], linktype: int, snaplen: int = 262144) -> Path:
    """A little-endian microsecond pcap; frame i is stamped T0 + i ms."""
    import struct

    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for i, f in enumerate(frames):
        cap = f[:snaplen]
        out.append(struct.pack("<IIII", T0, i * 1000, len(cap), len(f)) + cap)
    path.write_bytes(b"".join(out))
    return path


def index_of(tmp_path, frames, linktype, name="x.pcap", **kw):
    path = write_pcap(tmp_path / name, [bytes(f) for f in frames], linktype, **kw)
    return index_frames(read_capture(path)), path


def tcp_syn():
    return TCP(sport=40000, dport=443, seq=1000, flags="S",
               options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (11, 0)), ("NOP", None), ("WScale", 7)])


def test_ethernet_vlan_and_qinq(tmp_path):
    frames = [
        Ether(**MACS) / Dot1Q(vlan=10) / IP(src="10.0.0.1", dst="10.0.0.2") / tcp_syn(),
        Ether(**MACS) / Dot1AD(vlan=20) / Dot1Q(vlan=30) / IP(src="10.0.0.2", dst="10.0.0.1")
        / TCP(sport=443, dport=40000, flags="SA", seq=5, ack=1001),
        Ether(**MACS) / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IPv6(src="fe80::1", dst="fe80::2")
        / UDP(sport=5353, dport=53) / Raw(b"q" * 20),
    ]
    ix, path = index_of(tmp_path, frames, 1)
    assert list(ix.vlan) == [1, 2, 3]
    assert list(ix.ipver) == [4, 4, 6]
    assert [ix.addr(c) for c in ix.src] == ["10.0.0.1", "10.0.0.2", "fe80::1"]
    assert list(ix.sport) == [40000, 443, 5353]
    assert list(ix.tcp_flags[:2]) == [SYN, SYN | ACK]
    assert ix.payload_len[2] == 20
    assert (ix.mss[0], ix.wscale[0], ix.sack_perm[0], ix.tsval[0], ix.tsecr[0]) == (1460, 7, True, 11, 0)
    assert ix.mss[1] == -1 and ix.wscale[1] == -1 and not ix.sack_perm[1]
    assert ix.stats["vlan_tagged"] == 3
    if TSHARK:
        assert_agrees_with_tshark(ix, path)


def test_linux_cooked_v1_and_v2(tmp_path):
    ip = IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=1234, dport=80, flags="PA") / Raw(b"GET / HTTP/1.1\r\n\r\n")
    ix1, p1 = index_of(tmp_path, [CookedLinux(proto=0x0800) / ip], 113, "sll.pcap")
    ix2, p2 = index_of(tmp_path, [CookedLinuxV2(proto=0x86DD) / IPv6(src="2001:db8::1", dst="2001:db8::2")
                                  / TCP(sport=1, dport=2, flags="A") / Raw(b"x" * 7)], 276, "sll2.pcap")
    assert ix1.link_counts == {"LINUX_SLL": 1} and ix2.link_counts == {"LINUX_SLL2": 1}
    assert (ix1.addr(ix1.dst[0]), ix1.dport[0], ix1.payload_len[0]) == ("192.0.2.2", 80, 18)
    assert (ix2.addr(ix2.src[0]), ix2.sport[0], ix2.payload_len[0]) == ("2001:db8::1", 1, 7)
    # payload_off points at the payload bytes in the file buffer
    off = int(ix1.payload_off[0])
    assert bytes(ix1.capture.buf[off:off + 3]) == b"GET"
    if TSHARK:
        assert_agrees_with_tshark(ix1, p1)
        assert_agrees_with_tshark(ix2, p2)


@pytest.mark.parametrize("linktype,order", [(0, "<"), (0, ">"), (108, ">")])
def test_bsd_loopback_address_families(tmp_path, linktype, order):
    import struct

    v4 = bytes(IP(src="127.0.0.1", dst="127.0.0.2") / UDP(sport=1, dport=2) / Raw(b"abc"))
    v6 = bytes(IPv6(src="::1", dst="::2") / TCP(sport=3, dport=4, flags="R"))
    frames = [struct.pack(order + "I", 2) + v4] + [struct.pack(order + "I", af) + v6 for af in (24, 28, 30)]
    frames.append(struct.pack(order + "I", 7) + v4)        # an address family we do not decode
    ix, path = index_of(tmp_path, frames, linktype)
    assert list(ix.ipver) == [4, 6, 6, 6, 0]
    assert list(ix.proto) == [17, 6, 6, 6, -1]
    assert ix.non_ip == 1
    assert ix.tcp_flags[1] == RST
    if TSHARK:
        assert_agrees_with_tshark(ix, path)


@pytest.mark.parametrize("linktype", [101, 12, 14, 228, 229])
def test_raw_ip(tmp_path, linktype):
    v4 = IP(src="198.51.100.1", dst="198.51.100.2") / TCP(sport=9, dport=10, flags="F") / Raw(b"z")
    v6 = IPv6(src="2001:db8::a", dst="2001:db8::b") / UDP(sport=11, dport=12) / Raw(b"zz")
    frames = {228: [v4], 229: [v6]}.get(linktype, [v4, v6])
    ix, path = index_of(tmp_path, frames, linktype)
    want = {228: [4], 229: [6]}.get(linktype, [4, 6])
    assert list(ix.ipver) == want
    assert ix.unknown_link == 0
    if linktype in (101, 228, 229) and TSHARK:       # tshark reads DLT 12/14 as other things
        assert_agrees_with_tshark(ix, path)


def test_ipv6_extension_headers_and_fragments(tmp_path):
    base = dict(src="2001:db8::1", dst="2001:db8::2")
    data = TCP(sport=5000, dport=80, flags="PA", seq=7) / Raw(b"d" * 30)
    frames = [
        IPv6(**base) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=["2001:db8::9"]) / IPv6ExtHdrDestOpt() / data,
        IPv6(**base) / IPv6ExtHdrFragment(offset=0, m=1, id=1) / data,          # first fragment
        IPv6(**base, nh=44) / IPv6ExtHdrFragment(offset=100, m=0, id=1, nh=6) / Raw(b"r" * 16),   # later one
        IPv6(**base) / AH(spi=1, icv=b"\0" * 12, nh=17, payloadlen=4) / UDP(sport=7, dport=8) / Raw(b"u" * 5),
    ]
    ix, path = index_of(tmp_path, [Ether(**MACS) / f for f in frames], 1)
    assert list(ix.frag) == [False, True, True, False]
    assert list(ix.proto) == [6, 6, -1, 17]
    assert list(ix.ip_proto) == [6, 6, 6, 17]
    assert list(ix.sport) == [5000, 5000, -1, 7]
    assert list(ix.payload_len) == [30, 30, -1, 5]
    assert ix.stats["fragments"] == 2
    if TSHARK:
        assert_agrees_with_tshark(ix, path)


def test_ipv4_options_fragments_icmp_and_padding(tmp_path):
    from scapy.layers.inet import IPOption_RR

    a = dict(src="203.0.113.1", dst="203.0.113.2")
    frames = [
        IP(**a, options=[IPOption_RR(routers=["1.1.1.1", "2.2.2.2"])]) / TCP(sport=1, dport=2, flags="A") / Raw(b"o" * 9),
        IP(**a, flags="MF", frag=0, id=9, proto=6) / Raw(bytes(TCP(sport=3, dport=4, flags="A")) + b"f" * 16),
        IP(**a, frag=3, id=9, proto=6) / Raw(b"g" * 10),
        IP(**a) / ICMP(type=8),
        IP(**a) / TCP(sport=5, dport=6, flags="A"),          # 54 bytes: Ethernet pads it to 60
    ]
    frames = [Ether(**MACS) / f for f in frames]
    raw = [bytes(f) for f in frames]
    raw[4] = raw[4] + b"\0" * (60 - len(raw[4]))
    path = write_pcap(tmp_path / "v4.pcap", raw, 1)
    ix = index_frames(read_capture(path))
    assert list(ix.frag) == [False, True, True, False, False]
    assert list(ix.proto) == [6, 6, -1, 1, 6]
    assert ix.payload_len[0] == 9
    assert ix.payload_len[1] == 16
    assert ix.sport[2] == -1 and ix.sport[3] == -1
    assert ix.payload_len[4] == 0 and ix.wire_len[4] == 60
    assert ix.stats["icmp"] == 1
    if TSHARK:
        assert_agrees_with_tshark(ix, path)


def test_tcp_options_odd_orders_and_damage(tmp_path):
    ip = IP(src="10.1.1.1", dst="10.1.1.2")
    frames = [
        ip / TCP(sport=1, dport=2, flags="SA", options=[("WScale", 14), ("NOP", None), ("MSS", 536), ("EOL", None)]),
        ip / TCP(sport=1, dport=2, flags="A", options=[("NOP", None), ("NOP", None), ("Timestamp", (4294967295, 12345))]),
        ip / TCP(sport=1, dport=2, flags="A", options=[("SAck", (100, 200)), ("Timestamp", (5, 6))]),
        # a zero-length option: Wireshark and we stop reading options there
        ip / TCP(sport=1, dport=2, flags="S", options=[("MSS", 1400), (99, b"")], dataofs=7),
    ]
    raw = [bytes(Ether(**MACS) / f) for f in frames]
    # Make frame 4's second option claim length 0.
    r = bytearray(raw[3])
    r[14 + 20 + 20 + 4 + 1] = 0
    raw[3] = bytes(r)
    path = write_pcap(tmp_path / "opts.pcap", raw, 1)
    ix = index_frames(read_capture(path))
    assert (ix.wscale[0], ix.mss[0]) == (14, 536)
    assert (ix.tsval[1], ix.tsecr[1]) == (4294967295, 12345)
    assert (ix.tsval[2], ix.tsecr[2]) == (5, 6)
    assert ix.mss[3] == 1400
    if TSHARK:
        assert_agrees_with_tshark(ix, path)


def test_tcp_options_past_the_copied_heads(tmp_path):
    """Options are read from each frame's first ``HEAD_BYTES`` the reader copied; behind a VLAN
    tag and an IPv6 header, 40 bytes of options run past them and are read from the file."""
    from traceviz.sources.gather import HEAD_BYTES
    opts = [("SAck", (1, 2, 3, 4, 5, 6)), ("Timestamp", (70000, 80000)), ("MSS", 1220)]   # 26 + 10 + 4 bytes
    v6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    frames = [Ether(**MACS) / Dot1Q(vlan=7) / v6 / TCP(sport=1, dport=2, flags="A", options=opts),
              Ether(**MACS) / IP(src="10.1.1.1", dst="10.1.1.2") / TCP(sport=1, dport=2, flags="A", options=opts),
              Ether(**MACS) / Dot1Q(vlan=7) / v6 / TCP(sport=1, dport=2, flags="S", options=[
                  ("NOP", None)] * 30 + [("WScale", 5), ("SAckOK", b""), ("MSS", 1400)])]
    raw = [bytes(f) for f in frames]
    assert 14 + 4 + 40 + 60 > HEAD_BYTES                 # the first frame's options end past the heads
    path = write_pcap(tmp_path / "long-options.pcap", raw, 1)
    ix = index_frames(read_capture(path))
    assert list(ix.tcp_hlen) == [60, 60, 60]
    assert (ix.tsval[0], ix.tsecr[0], ix.mss[0]) == (70000, 80000, 1220)
    assert (ix.tsval[1], ix.tsecr[1], ix.mss[1]) == (70000, 80000, 1220)
    assert (ix.wscale[2], bool(ix.sack_perm[2]), ix.mss[2]) == (5, True, 1400)
    if TSHARK:
        assert_agrees_with_tshark(ix, path)


def test_snaplen_tso_and_malformed(tmp_path):
    ip = dict(src="10.9.9.1", dst="10.9.9.2")
    full = Ether(**MACS) / IP(**ip) / TCP(sport=1, dport=2, flags="PA") / Raw(b"p" * 1000)
    tso = bytearray(bytes(Ether(**MACS) / IP(**ip) / TCP(sport=3, dport=4, flags="A") / Raw(b"t" * 3000)))
    tso[16:18] = b"\0\0"                                     # IPv4 total length 0
    bad_hlen = bytearray(bytes(Ether(**MACS) / IP(**ip) / TCP(sport=5, dport=6)))
    bad_hlen[14 + 20 + 12] = 0x30                            # data offset 3 words: < 20 bytes
    short_ip = bytes(Ether(**MACS) / IP(**ip) / TCP())[:14 + 12]
    frames = [bytes(full)[:100], bytes(tso), bytes(bad_hlen), short_ip]
    import struct

    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    wires = [len(full), len(tso), len(bad_hlen), len(short_ip)]
    for i, (f, w) in enumerate(zip(frames, wires)):
        out.append(struct.pack("<IIII", T0, i, len(f), w) + f)
    path = tmp_path / "odd.pcap"
    path.write_bytes(b"".join(out))
    ix = index_frames(read_capture(path))
    assert (ix.payload_len[0], ix.payload_cap[0]) == (1000, 100 - 54)
    assert ix.payload_len[1] == 3000
    assert list(ix.malformed) == [False, False, True, True]
    assert ix.sport[2] == -1 and ix.proto[2] == -1 and ix.ip_proto[2] == 6
    assert ix.ipver[3] == 0
    assert ix.stats["truncated_payload"] == 1


def test_unknown_link_type_is_counted(tmp_path):
    ix, _ = index_of(tmp_path, [b"\x01\x02\x03", b"\x04" * 50], 147)
    assert ix.unknown_link == 2 and ix.link_counts == {"DLT_147": 2}
    assert list(ix.ipver) == [0, 0] and ix.non_ip == 2


def pcapng_two_interfaces(path: Path, frames: list[tuple[int, bytes]], linktypes=(1, 113)) -> Path:
    """One section, one interface per link type; frames are (interface, bytes)."""
    import struct

    def block(btype, body):
        body += b"\0" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    out += [block(1, struct.pack("<HHI", lt, 0, 0)) for lt in linktypes]
    for i, (itf, f) in enumerate(frames):
        t = T0 * 1_000_000 + i
        out.append(block(6, struct.pack("<IIIII", itf, t >> 32, t & 0xFFFFFFFF, len(f), len(f)) + f))
    path.write_bytes(b"".join(out))
    return path


def test_mixed_link_types_in_one_pcapng(tmp_path):
    """Per-interface link types: each frame decoded by its own interface's."""
    e = bytes(Ether(**MACS) / IP(src="1.1.1.1", dst="2.2.2.2") / UDP(sport=1, dport=2))
    v = bytes(Ether(**MACS) / Dot1Q(vlan=4) / IP(src="5.5.5.5", dst="6.6.6.6") / UDP(sport=5, dport=6))
    s = bytes(CookedLinux(proto=0x0800) / IP(src="3.3.3.3", dst="4.4.4.4") / TCP(sport=3, dport=4))
    path = pcapng_two_interfaces(tmp_path / "mixed.pcapng", [(1, s), (0, e), (1, s), (0, v)])
    ix = index_frames(read_capture(path))
    assert ix.link_counts == {"EN10MB": 2, "LINUX_SLL": 2}
    assert list(ix.proto) == [6, 17, 6, 17]
    assert list(ix.vlan) == [0, 0, 0, 1]
    assert [ix.addr(c) for c in ix.src] == ["3.3.3.3", "1.1.1.1", "3.3.3.3", "5.5.5.5"]
    if TSHARK:
        assert_agrees_with_tshark(ix, path)


@pytest.mark.skipif(not TSHARK, reason="tshark not installed")
def test_benchmark_capture_agrees_with_tshark(tmp_path):
    """The generated benchmark traffic (TCP/UDP, IPv4/IPv6, interleaved) frame by frame."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_capture", Path(__file__).resolve().parents[1] / "bench" / "gen_capture.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    path = tmp_path / "gen.pcap"
    gen.generate(str(path), packets=3000, seed=7)
    ix = index_frames(read_capture(path))
    assert len(ix) == 3000 and ix.stats["ipv6"] > 0 and ix.stats["udp"] > 0
    assert_agrees_with_tshark(ix, path)
