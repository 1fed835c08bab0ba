"""Damaged captures: keep what can be read and say what was lost, or refuse in one line.

Ground truth: the corpus MANIFEST (tshark's frame counts for its damaged
files) and the damage we do to files here ourselves.
"""

from __future__ import annotations

import json
import os
import random
import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traceviz.decode.index import index_frames
from traceviz.errors import InputError
from traceviz.sources.reader import read_capture

CORPUS = Path(os.environ.get("TRACEVIZ_CORPUS", Path(__file__).resolve().parent / "corpus"))
T0 = 1_700_000_000


def pcap(frames: list[bytes], claims: dict[int, int] | None = None) -> bytes:
    """A pcap whose record ``i`` may claim ``claims[i]`` bytes instead of its true length."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, f in enumerate(frames):
        n = (claims or {}).get(i, len(f))
        out.append(struct.pack("<IIII", T0 + i, 0, n, n) + f)
    return b"".join(out)


def eth_frame(i: int, size: int = 1514) -> bytes:
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, size - 14, i, 0x4000, 64, 6, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    tcp = struct.pack(">HHIIBBHHH", 40000, 80, i, 0, 0x50, 0x10, 100, 0, 0)
    body = ip + tcp
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + body + b"x" * (size - 14 - len(body))


def pcapng(blocks: list[bytes]) -> bytes:
    return b"".join(blocks)


def block(btype: int, body: bytes, length: int | None = None, trailer: int | None = None) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, length or n) + body + struct.pack("<I", trailer or length or n)


SHB = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
IDB = block(1, struct.pack("<HHI", 1, 0, 0))


def epb(data: bytes, caplen: int | None = None) -> bytes:
    return block(6, struct.pack("<IIIII", 0, 0, T0, caplen or len(data), len(data)) + data)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


# --- the corpus' damaged files ------------------------------------------------

def corpus_file(rel: str) -> tuple[Path, dict]:
    path = CORPUS / rel
    if not path.is_file():
        pytest.skip(f"corpus not found at {CORPUS}")
    return path, json.loads((CORPUS / "MANIFEST.json").read_text())["files"][rel]


def test_corpus_cut_short():
    path, facts = corpus_file("pcap/corrupt/cut-short__ndpi_fuzz-2021-10-13.pcap")
    cap = read_capture(path)
    assert len(cap) == facts["packets"] == 1
    # Wireshark reads version-2.0 files with swapped lengths: 197 captured of 524501.
    assert (cap.caplen[0], cap.wire_len[0]) == (197, 524501)
    (warning,) = cap.warnings
    assert warning.startswith(f"{path}: frame 2: record header cut short")
    assert "analysed 1 frame" in warning
    index_frames(cap)


def test_corpus_pcapng_bad_section_header_option():
    path, facts = corpus_file("pcap/corrupt/pcapng-bad-shb-option__libpcap_shb-option-too-long.pcapng")
    assert facts["packets"] == 0
    with pytest.raises(InputError) as e:
        read_capture(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    assert "option of length 12336" in msg         # what tshark names too


def test_corpus_tls_corrupt_record_claims_4mb():
    path, facts = corpus_file("pcap/tls/tls-corrupt-record__suricata-verify_bug-1450-05.pcap")
    cap = read_capture(path)
    assert len(cap) == facts["packets"] == 6
    (warning,) = cap.warnings
    assert warning.startswith(f"{path}: frame 7: record claims 4325376 bytes")
    ix = index_frames(cap)
    assert ix.stats["tcp"] == 6


DAMAGED = sorted((CORPUS / "pcap" / "corrupt").glob("*")) + sorted((CORPUS / "pcap").rglob("tls-corrupt-record*.pcap"))


@pytest.mark.skipif(not DAMAGED, reason=f"corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", DAMAGED, ids=lambda p: p.name)
def test_every_damaged_corpus_file(path):
    """tshark's frame count; a warning naming the file and the first lost frame, or one-line refusal."""
    facts = json.loads((CORPUS / "MANIFEST.json").read_text())["files"][path.relative_to(CORPUS).as_posix()]
    if facts["packets"] == 0:
        with pytest.raises(InputError) as e:
            read_capture(path)
        assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
        return
    cap = read_capture(path)
    assert len(cap) == facts["packets"]
    assert len(cap.warnings) == 1
    assert cap.warnings[0].startswith(f"{path}: frame {len(cap) + 1}: ")
    assert len(index_frames(cap)) == len(cap)


# --- files we damage ----------------------------------------------------------

@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (bytes(random.Random(1).randrange(256) for _ in range(4096)), "not a capture file"),
    (b"\xd4\xc3\xb2\xa1\x02\x00\x04", "pcap file header cut short"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 7, 0, 0, 0, 65535, 1), "unsupported pcap version 7.0"),
    (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00XXXX" + b"\0" * 16, "no byte-order mark"),
])
def test_unreadable_files_raise_one_line(tmp_path, data, reason):
    path = write(tmp_path, "bad.pcap", data)
    with pytest.raises(InputError) as e:
        read_capture(path)
    assert str(e.value).startswith(f"{path}: ")
    assert reason in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("data", [pcap([]), SHB + IDB, SHB])
def test_header_only_files_are_empty_not_errors(tmp_path, data):
    path = write(tmp_path, "h.pcap", data)
    cap = read_capture(path)
    assert len(cap) == 0
    assert cap.warnings == [f"{path}: the capture holds no packets"]
    assert len(index_frames(cap)) == 0


def test_pcap_cut_mid_record(tmp_path):
    whole = pcap([eth_frame(i) for i in range(48)])
    path = write(tmp_path, "x.pcap", whole[:-(1514 - 230)])
    cap = read_capture(path)
    assert len(cap) == 47
    assert cap.warnings == [f"{path}: frame 48: record cut short (needs 1514 bytes, 230 left); analysed 47 frames"]
    ix = index_frames(cap)
    assert list(ix.seq) == list(range(47))


def test_pcap_cut_in_record_header(tmp_path):
    whole = pcap([eth_frame(i, 100) for i in range(3)])
    path = write(tmp_path, "x.pcap", whole[:-(100 + 16) + 5])
    cap = read_capture(path)
    assert len(cap) == 2
    assert cap.warnings[0].startswith(f"{path}: frame 3: record header cut short (5 of 16 bytes)")


def test_first_record_claiming_4gb_is_refused_without_allocating(tmp_path):
    path = write(tmp_path, "x.pcap", pcap([eth_frame(0, 200)], claims={0: 0xFFFFFFFF}))
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as e:
            read_capture(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 1024 ** 2
    assert str(e.value) == (f"{path}: frame 1: record claims 4294967295 bytes, more than the 262144-byte "
                            "maximum; damaged file")


def test_absurd_record_mid_file_stops_there(tmp_path):
    frames = [eth_frame(i, 300) for i in range(10)]
    path = write(tmp_path, "x.pcap", pcap(frames, claims={4: 3_000_000_000}))
    cap = read_capture(path)
    assert len(cap) == 4
    assert cap.warnings[0].startswith(f"{path}: frame 5: record claims 3000000000 bytes")


def test_pcapng_block_longer_than_file(tmp_path):
    good = [epb(eth_frame(i, 120)) for i in range(3)]
    lie = block(6, struct.pack("<IIIII", 0, 0, T0, 120, 120) + eth_frame(3, 120), length=1 << 31)
    path = write(tmp_path, "x.pcapng", pcapng([SHB, IDB, *good, lie]))
    cap = read_capture(path)
    assert len(cap) == 3
    assert cap.warnings[0].startswith(f"{path}: frame 4: block claims 2147483648 bytes")


def test_pcapng_block_cut_short(tmp_path):
    data = pcapng([SHB, IDB, *[epb(eth_frame(i, 120)) for i in range(3)]])
    path = write(tmp_path, "x.pcapng", data[:-50])
    cap = read_capture(path)
    assert len(cap) == 2
    assert "block cut short" in cap.warnings[0] and ": frame 3: " in cap.warnings[0]


def test_pcapng_trailer_mismatch(tmp_path):
    bad_idb = block(1, struct.pack("<HHI", 1, 0, 0), trailer=0x30303030)
    with pytest.raises(InputError, match="does not match its trailer"):
        read_capture(write(tmp_path, "x.pcapng", pcapng([SHB, bad_idb, epb(b"x" * 60)])))


def test_pcapng_captured_length_overruns_block(tmp_path):
    blocks = [SHB, IDB, epb(eth_frame(0, 80)), epb(eth_frame(1, 80), caplen=5000), epb(eth_frame(2, 80))]
    path = write(tmp_path, "x.pcapng", pcapng(blocks))
    cap = read_capture(path)
    assert len(cap) == 1
    assert cap.warnings[0].startswith(f"{path}: frame 2: packet block's captured length overruns the block")


def test_pcapng_packet_before_interface(tmp_path):
    with pytest.raises(InputError, match="interface 0, but the section has 0"):
        read_capture(write(tmp_path, "x.pcapng", pcapng([SHB, epb(b"x" * 60)])))


def test_pcapng_secrets_longer_than_block(tmp_path):
    dsb = block(0x0A, struct.pack("<II", 0x544C534B, 1 << 30) + b"abc")
    with pytest.raises(InputError, match="decryption secrets claim 1073741824 bytes"):
        read_capture(write(tmp_path, "x.pcapng", pcapng([SHB, dsb])))


def test_truncated_frames_index_without_error(tmp_path):
    """Every possible cut of a frame's headers: fields read only if captured."""
    frame = eth_frame(0, 200)
    frames = [frame[:k] for k in range(0, 80)]
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    out += [struct.pack("<IIII", T0, 0, len(f), 200) + f for f in frames]
    ix = index_frames(read_capture(write(tmp_path, "t.pcap", b"".join(out))))
    # IPv4 needs 14 + 20 bytes, TCP 20 more.
    assert list(ix.ipver == 4) == [k >= 34 for k in range(80)]
    assert list(ix.proto == 6) == [k >= 54 for k in range(80)]
    assert list(ix.malformed) == [14 <= k < 34 or 34 <= k < 54 for k in range(80)]
    assert all(ix.payload_cap[54:] == [k - 54 for k in range(54, 80)])


# --- fuzzing ------------------------------------------------------------------

SEEDS = [
    pcap([eth_frame(i, 90) for i in range(4)]),
    pcapng([SHB, IDB, *[epb(eth_frame(i, 90)) for i in range(4)]]),
]


def _read_and_index(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, "fuzz.bin", data)
    try:
        cap = read_capture(path)
    except InputError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
        return
    ix = index_frames(cap)
    assert len(ix) == len(cap)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600))
def test_fuzz_random_bytes(tmp_path, data):
    _read_and_index(tmp_path, data)


@settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.sampled_from(SEEDS), edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=12),
       cut=st.integers(0, 10_000))
def test_fuzz_mutated_captures(tmp_path, seed, edits, cut):
    data = bytearray(seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    _read_and_index(tmp_path, bytes(data[:max(cut, 4)]))


def test_pcapng_packet_block_trailer_mismatch(tmp_path):
    blocks = [SHB, IDB, epb(eth_frame(0, 80)), epb(eth_frame(1, 80)), epb(eth_frame(2, 80))]
    third = bytearray(blocks[3])
    third[-4:] = struct.pack("<I", 12)                    # the trailer disagrees with the header
    blocks[3] = bytes(third)
    path = write(tmp_path, "x.pcapng", pcapng(blocks))
    cap = read_capture(path)
    assert len(cap) == 1
    assert cap.warnings[0].startswith(f"{path}: frame 2: packet block's length does not match its trailer")
