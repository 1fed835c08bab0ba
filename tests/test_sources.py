"""Capture readers (sources/pcap.py, pcapng.py, reader.py) from bytes.

Files are built here byte by byte (pcapng features scapy does not write:
several interfaces with different ``if_tsresol``, several sections, big-endian
sections, simple and obsolete packet blocks, decryption secrets), and the
facts we put in are checked, plus tshark's reading of the same file where
tshark is installed.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from traceviz.errors import InputError
from traceviz.sources.reader import read_capture, sniff

TSHARK = shutil.which("tshark")
CORPUS = Path(os.environ.get("TRACEVIZ_CORPUS", Path(__file__).resolve().parent / "corpus"))
T0 = 1_700_000_000

FRAMES = [bytes(range(i, i + 60)) for i in range(5)]


def tshark_frames(path: Path, *fields: str) -> list[list[str]]:
    out = subprocess.run(
        [TSHARK, "-r", str(path), "-n", "-T", "fields", "-E", "separator=\t",
         *[a for f in ("frame.time_epoch", "frame.len", "frame.cap_len", *fields) for a in ("-e", f)]],
        capture_output=True, text=True, timeout=60,
    ).stdout
    return [line.split("\t") for line in out.splitlines()]


def epoch_ns(text: str) -> int:
    sec, _, frac = text.partition(".")
    return int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])


def assert_times_match_tshark(cap, path: Path) -> None:
    rows = tshark_frames(path)
    assert len(rows) == len(cap)
    for i, (t, wire, caplen) in enumerate(rows):
        assert cap.ts_ns[i] == epoch_ns(t), f"frame {i + 1}"
        assert abs(cap.ts[i] - epoch_ns(t) / 1e9) < 1e-6
        assert (cap.wire_len[i], cap.caplen[i]) == (int(wire), int(caplen))


# --- classic pcap -----------------------------------------------------------

def pcap_bytes(frames, order="<", nsec=False, kuznetzov=False, linktype=1, version=(2, 4), stamps=None):
    magic = {(False, False): 0xA1B2C3D4, (True, False): 0xA1B23C4D, (False, True): 0xA1B2CD34}[(nsec, kuznetzov)]
    out = [struct.pack(order + "IHHiIII", magic, *version, 0, 0, 65535, linktype)]
    for i, f in enumerate(frames):
        sec, frac = stamps[i] if stamps else (T0 + i, 123456789 if nsec else 123456)
        rec = struct.pack(order + "IIII", sec, frac, len(f), len(f) + 4)
        if kuznetzov:
            rec += struct.pack(order + "IHBB", 3, 0x0800, 0, 0)
        out.append(rec + f)
    return b"".join(out)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nsec", [False, True])
def test_pcap_magic_variants(tmp_path, order, nsec):
    path = tmp_path / "v.pcap"
    path.write_bytes(pcap_bytes(FRAMES, order, nsec))
    cap = read_capture(path)
    assert cap.format == "pcap" and len(cap) == 5 and cap.warnings == []
    assert cap.detail["byte_order"] == ("little" if order == "<" else "big")
    frac_ns = 123456789 if nsec else 123456000
    assert list(cap.ts_ns) == [(T0 + i) * 1_000_000_000 + frac_ns for i in range(5)]
    assert [cap.frame_bytes(i + 1) for i in range(5)] == FRAMES
    assert list(cap.wire_len) == [64] * 5 and list(cap.caplen) == [60] * 5
    assert set(cap.linktype) == {1}
    if TSHARK:
        assert_times_match_tshark(cap, path)


def test_kuznetzov_pcap(tmp_path):
    path = tmp_path / "k.pcap"
    path.write_bytes(pcap_bytes(FRAMES, kuznetzov=True))
    cap = read_capture(path)
    assert [cap.frame_bytes(i + 1) for i in range(5)] == FRAMES
    if TSHARK:
        assert_times_match_tshark(cap, path)


def test_scapy_wrpcap_round_trip(tmp_path):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    pkts = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(dst=f"10.0.0.{i}") / TCP(dport=i + 1)
            for i in range(1, 4)]
    for i, p in enumerate(pkts):
        p.time = T0 + i / 4
    path = tmp_path / "s.pcap"
    wrpcap(str(path), pkts)
    cap = read_capture(path)
    assert [cap.frame_bytes(i + 1) for i in range(3)] == [bytes(p) for p in pkts]
    assert np.allclose(cap.ts, [T0, T0 + 0.25, T0 + 0.5])


# --- pcapng -----------------------------------------------------------------

def opt(code: int, value: bytes, order="<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def block(btype: int, body: bytes, order="<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def shb(order="<", options=b"") -> bytes:
    return block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1) + options, order)


def idb(linktype: int, order="<", tsresol: int | None = None, tsoffset: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += opt(9, bytes([tsresol]), order)
    if tsoffset is not None:
        opts += opt(14, struct.pack(order + "q", tsoffset), order)
    if opts:
        opts += opt(0, b"", order)
    return block(1, struct.pack(order + "HHI", linktype, 0, 0) + opts, order)


def epb(itf: int, units: int, data: bytes, order="<", wire: int | None = None) -> bytes:
    return block(6, struct.pack(order + "IIIII", itf, units >> 32, units & 0xFFFFFFFF, len(data),
                                wire or len(data)) + data, order)


def pb(itf: int, units: int, data: bytes, order="<") -> bytes:
    return block(2, struct.pack(order + "HHIIII", itf, 0, units >> 32, units & 0xFFFFFFFF, len(data), len(data)) + data,
                 order)


def spb(data: bytes, order="<") -> bytes:
    return block(3, struct.pack(order + "I", len(data)) + data, order)


def dsb(stype: int, secret: bytes, order="<") -> bytes:
    return block(0x0A, struct.pack(order + "II", stype, len(secret)) + secret, order)


def pcapng_sample() -> tuple[bytes, list[tuple[int, int]]]:
    """Two sections (little- then big-endian), four interfaces, every packet block kind.

    Returns the bytes and, per frame, (link type, expected epoch ns or None).
    """
    ns = (T0 + 7) * 1_000_000_000 + 123_456_789
    usec = ns // 1000
    out = [
        shb("<", opt(4, b"traceviz test") + opt(0, b"")),
        idb(1, "<"),                                      # default: microseconds
        idb(101, "<", tsresol=9),                         # nanoseconds
        dsb(0x544C534B, b"CLIENT_RANDOM aa bb\n"),
        epb(0, usec, FRAMES[0]),
        epb(1, ns, FRAMES[1]),
        block(4, b"\0\0\0\0"),                            # name resolution block: skipped
        pb(0, usec + 1, FRAMES[2]),
        shb(">"),
        idb(113, ">", tsresol=0x80 | 10, tsoffset=5),     # 2^-10 s units, 5 s offset
        epb(0, (T0 << 10) + 512, FRAMES[3], ">"),         # T0 + 0.5 s, + 5 s offset
        spb(FRAMES[4], ">"),
    ]
    want = [(1, usec * 1000), (101, ns), (1, (usec + 1) * 1000), (113, (T0 + 5) * 1_000_000_000 + 500_000_000),
            (113, None)]
    return b"".join(out), want


def test_pcapng_sections_interfaces_and_blocks(tmp_path):
    data, want = pcapng_sample()
    path = tmp_path / "multi.pcapng"
    path.write_bytes(data)
    cap = read_capture(path)
    assert cap.format == "pcapng" and cap.warnings == []
    assert len(cap) == 5
    assert [cap.frame_bytes(i + 1) for i in range(5)] == FRAMES
    assert list(cap.linktype) == [lt for lt, _ in want]
    assert list(cap.iface) == [0, 1, 0, 2, 2]
    for i, (_, t) in enumerate(want):
        if t is None:                                      # simple packet blocks carry no time
            assert np.isnan(cap.ts[i])
        else:
            assert cap.ts_ns[i] == t and abs(cap.ts[i] - t / 1e9) < 1e-6
    assert cap.secrets == [(0x544C534B, b"CLIENT_RANDOM aa bb\n")]
    assert cap.detail["sections"] == 2
    assert [i["tsresol"] for i in cap.detail["interfaces"]] == ["10^-6", "10^-9", "2^-10"]
    if TSHARK:
        rows = tshark_frames(path, "frame.interface_id")
        assert len(rows) == 5
        for i, (t, wire, caplen, _itf) in enumerate(rows[:4]):
            assert cap.ts_ns[i] == epoch_ns(t)
            assert (cap.wire_len[i], cap.caplen[i]) == (int(wire), int(caplen))


def test_pcapng_from_scapy_writer(tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.utils import PcapNgWriter

    path = tmp_path / "s.pcapng"
    w = PcapNgWriter(str(path))
    pkts = [IP(dst="10.0.0.1") / UDP(dport=i) for i in range(3)]
    for i, p in enumerate(pkts):
        p.time = T0 + i
        w.write(p)
    w.close()
    cap = read_capture(path)
    assert [cap.frame_bytes(i + 1)[-6:-4] for i in range(3)] == [struct.pack(">H", i) for i in range(3)]
    if TSHARK:
        assert_times_match_tshark(cap, path)


def test_pcapng_corpus_nanosecond_and_secrets():
    base = CORPUS / "pcap"
    if not base.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    cap = read_capture(base / "quic" / "quic-draft29-dsb__pcap2qlog_ngtcp2-29-dsb.pcapng")
    assert cap.secrets and cap.secrets[0][0] == 0x544C534B          # TLS key log
    assert b"CLIENT_HANDSHAKE_TRAFFIC_SECRET" in cap.secrets[0][1]
    assert "secrets" not in repr(cap)
    nano = read_capture(base / "link" / "nsec-pcapng__ndpi_nano.pcapng")
    assert nano.detail["tsresol"] == ["10^-9"]


# --- gzip and sniffing ------------------------------------------------------

def test_gzip_input_is_the_same_capture(tmp_path):
    raw, _ = pcapng_sample()
    plain, packed = tmp_path / "a.pcapng", tmp_path / "a.bin"
    plain.write_bytes(raw)
    packed.write_bytes(gzip.compress(raw))
    a, b = read_capture(plain), read_capture(packed)
    assert b.compressed and not a.compressed
    assert [b.frame_bytes(i + 1) for i in range(len(b))] == [a.frame_bytes(i + 1) for i in range(len(a))]
    assert np.array_equal(a.ts_ns, b.ts_ns)
    assert sniff(packed) == "pcapng"


def test_gzip_concatenated_members(tmp_path):
    raw = pcap_bytes(FRAMES)
    path = tmp_path / "m.pcap.gz"
    path.write_bytes(gzip.compress(raw[:100]) + gzip.compress(raw[100:]))
    assert len(read_capture(path)) == 5


def test_gzip_bomb_is_refused(tmp_path, monkeypatch):
    raw = pcap_bytes([b"\0" * 60000] * 50)                 # 3 MB that packs into a few KB
    path = tmp_path / "bomb.pcap.gz"
    path.write_bytes(gzip.compress(raw))
    monkeypatch.setenv("TRACEVIZ_MAX_INFLATE", str(1 << 20))
    with pytest.raises(InputError, match="inflates past"):
        read_capture(path)
    monkeypatch.setenv("TRACEVIZ_MAX_INFLATE", str(1 << 24))
    assert len(read_capture(path)) == 50


def test_gzip_cut_short_keeps_what_inflated(tmp_path):
    raw = pcap_bytes(FRAMES * 20)
    packed = gzip.compress(raw)
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    cap = read_capture(path)
    assert 0 < len(cap) < 100
    assert any("gzip" in w for w in cap.warnings)


def test_sniff(tmp_path):
    cases = {
        "a.cap": pcap_bytes(FRAMES),
        "b.pcap": pcapng_sample()[0],
        "c.pcap": b'{"log": {}}',
        "d.gz": gzip.compress(pcap_bytes(FRAMES, ">", True)),
        "e.txt": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert [sniff(tmp_path / n) for n in cases] == ["pcap", "pcapng", "unknown", "pcap", "unknown"]


def test_big_files_are_mapped_not_copied(tmp_path, monkeypatch):
    from traceviz.sources import reader

    path = tmp_path / "big.pcap"
    path.write_bytes(pcap_bytes(FRAMES))
    monkeypatch.setattr(reader, "MMAP_FROM", 1)
    cap = read_capture(path)
    assert not isinstance(cap.buf, bytes)
    assert [cap.frame_bytes(i + 1) for i in range(5)] == FRAMES
