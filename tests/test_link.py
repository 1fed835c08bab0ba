"""Link layers tshark decodes and we must too: PPP in its wrappings, PPPoE, Cisco HDLC,
Linux cooked captures; and what we cannot read is said once, naming the frame.

Ground truth: tshark's dissection of the same files (connections by tcp.stream,
endpoints, payload lengths; frames cut by the snap length; malformed frames).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import traceviz

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is the oracle")

T0 = 1_700_000_000


def ipv4_tcp(sport: int, dport: int, seq: int, flags: int, payload: bytes = b"") -> bytes:
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, 0, 0x50, flags, 8192, 0, 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return ip + tcp


def ipv6_tcp(sport: int, dport: int, seq: int, flags: int, payload: bytes = b"") -> bytes:
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, 0, 0x50, flags, 8192, 0, 0) + payload
    return struct.pack(">IHBB16s16s", 0x60000000, len(tcp), 6, 64, b"\x20\x01" + b"\0" * 13 + b"\x01",
                       b"\x20\x01" + b"\0" * 13 + b"\x02") + tcp


def pcap(path: Path, linktype: int, frames: list[bytes], snaplen: int = 65535,
         wire: dict[int, int] | None = None) -> Path:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", T0 + i, 0, len(f), (wire or {}).get(i, len(f))) + f)
    path.write_bytes(b"".join(out))
    return path


def conversation(ip=ipv4_tcp, port: int = 40000) -> list[bytes]:
    return [ip(port, 80, 100, 0x02), ip(port, 80, 101, 0x18, b"GET / HTTP/1.1\r\n\r\n"),
            ip(port + 1, 443, 7, 0x02)]


def tshark_rows(path: Path) -> list[tuple]:
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "tcp.stream", "-e", "tcp.srcport",
                          "-e", "tcp.dstport", "-e", "tcp.len"], capture_output=True, text=True).stdout
    return [tuple(int(x) if x else None for x in line.split("\t")) for line in out.splitlines()]


def ours(path: Path) -> list[tuple]:
    p = traceviz.load(path).packets
    return [(None if v is None else int(v) for v in row) for row in
            p[["conn", "sport", "dport", "len"]].astype(object).where(p[["conn", "sport", "dport", "len"]].notna(), None)
            .itertuples(index=False, name=None)]


def same_as_tshark(path: Path) -> None:
    theirs = tshark_rows(path)
    mine = [tuple(r) for r in ours(path)]
    assert all(r[0] is not None for r in theirs), f"tshark did not find TCP in {path.name}: {theirs}"
    assert mine == theirs


PPP_IPV4_FRAMED = b"\xff\x03\x00\x21"
WRAPPINGS = {
    "ppp-hdlc-address": (9, lambda f: PPP_IPV4_FRAMED + f),
    "ppp-bare-protocol": (9, lambda f: b"\x00\x21" + f),
    "ppp-compressed-protocol": (9, lambda f: b"\x21" + f),
    "ppp-in-hdlc": (50, lambda f: PPP_IPV4_FRAMED + f),
    "ppp-in-hdlc-cisco": (50, lambda f: b"\x0f\x00\x08\x00" + f),
    "cisco-hdlc": (104, lambda f: b"\x0f\x00\x08\x00" + f),
    "pppoe-linktype": (51, lambda f: b"\x11\x00\x00\x01" + struct.pack(">H", len(f) + 2) + b"\x00\x21" + f),
    "ethernet-pppoe": (1, lambda f: b"\x02" * 6 + b"\x04" * 6 + b"\x88\x64\x11\x00\x00\x01"
                       + struct.pack(">H", len(f) + 2) + b"\x00\x21" + f),
    "ethernet-vlan-pppoe": (1, lambda f: b"\x02" * 6 + b"\x04" * 6 + b"\x81\x00\x00\x07\x88\x64\x11\x00\x00\x01"
                            + struct.pack(">H", len(f) + 2) + b"\x00\x21" + f),
    "sll-loopback": (113, lambda f: struct.pack(">HHH8sH", 0, 772, 6, b"\0" * 8, 0x0800) + f),
    "sll-tun": (113, lambda f: struct.pack(">HHH8sH", 4, 0xFFFE, 0, b"\0" * 8, 0x0800) + f),
}


@pytest.mark.parametrize("name", sorted(WRAPPINGS))
def test_link_wrapping_decodes_as_tshark(tmp_path, name):
    linktype, wrap = WRAPPINGS[name]
    path = pcap(tmp_path / f"{name}.pcap", linktype, [wrap(f) for f in conversation()])
    same_as_tshark(path)
    assert not [w for w in traceviz.load(path).warnings if "link type" in w]


def test_ppp_ipv6(tmp_path):
    path = pcap(tmp_path / "ppp6.pcap", 9, [b"\xff\x03\x00\x57" + f for f in conversation(ipv6_tcp)])
    same_as_tshark(path)


def test_unknown_link_type_is_said_once_naming_the_first_frame(tmp_path):
    path = pcap(tmp_path / "user0.pcap", 147, [b"\x00" * 4 + f for f in conversation()])
    warnings = traceviz.load(path).warnings
    said = [w for w in warnings if "link type" in w]
    assert said == [f"{path}: frame 1: link type DLT_147 (147) is not decoded: 3 frames skipped "
                    "(their bytes are not IP to us)"]


def test_frames_cut_by_the_snap_length(tmp_path):
    frames = conversation()
    full = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    eth = [full + f for f in frames]
    cut = [eth[0], eth[1][:40], eth[2]]                 # frame 2 cut inside its TCP header
    path = pcap(tmp_path / "snap.pcap", 1, cut, snaplen=40, wire={1: len(eth[1])})
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "frame.cap_len < frame.len", "-T", "fields",
                          "-e", "frame.number"], capture_output=True, text=True).stdout.split()
    warnings = [w for w in traceviz.load(path).warnings if "snap length" in w]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{path}: frame {out[0]}: {len(out)} frame cut by the snap length")


def test_frames_shorter_than_their_headers(tmp_path):
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    frames = conversation()
    bad_ip = frames[1][:2] + struct.pack(">H", 400) + frames[1][4:]      # IP claims 400 bytes: the frame has fewer
    path = pcap(tmp_path / "short.pcap", 1, [eth + frames[0], eth + bad_ip, eth + frames[2][:30]])
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "_ws.malformed",
                          "-T", "fields", "-e", "frame.number"], capture_output=True, text=True).stdout.split()
    warnings = [w for w in traceviz.load(path).warnings if "malformed" in w]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{path}: frame {out[0]}: {len(out)} frame shorter than their own headers")
    # tshark reads frame 2's TCP segment despite the IP length's lie, and so do we
    assert traceviz.load(path).packets["len"].tolist()[:2] == [0, 18]
