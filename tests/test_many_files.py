"""Rotated files read as one capture, checked against tshark on the file before it was cut.

A bundled capture is cut into 8 files with ``editcap -c`` (as ``tcpdump -C``
would leave it); the folder, and the files named one by one in any order,
must give the connections tshark finds in the unsplit file: ``tcp.stream``
per frame, each stream's endpoints, SYN / SYN-ACK times and the handshake
round trip (``tcp.analysis.initial_rtt``), and how it ended (the recording's
own log, in the capture's manifest entry).  ``file``/``file_frame`` must
name the member and the frame in it that tshark shows with the same time,
raw sequence number and flags.  And ``sources/chunks.py`` must read every
corpus file as ``read_capture`` does, however small the chunks.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import traceviz
from bundled import CAPTURES, entry
from conftest import CORPUS
from traceviz.errors import InputError

# (capture, frames per file): both cut into 8 files, so that every connection crosses a boundary or two.
SPLITS = {"tcp-handshakes": 7, "http1-keepalive-vs-close": 22}
FIELDS = ["frame.number", "frame.time_epoch", "tcp.stream", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport",
          "tcp.flags", "tcp.seq_raw", "tcp.analysis.initial_rtt"]


def fields(tshark: str, path: Path, display: str = "tcp") -> list[dict]:
    argv = [tshark, "-r", str(path), "-Y", display, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for f in FIELDS:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    return [dict(zip(FIELDS, line.split("\t"))) for line in out.splitlines()]


@pytest.fixture(scope="module", params=sorted(SPLITS))
def rotated(request, tmp_path_factory, tshark):
    """(name, the unsplit file, the folder of its 8 pieces, tshark's rows of the unsplit file)."""
    if not shutil.which("editcap"):
        pytest.skip("editcap is not installed (apt-get install wireshark-common)")
    name = request.param
    whole = CAPTURES / f"{name}.pcapng"
    folder = tmp_path_factory.mktemp(name)
    subprocess.run(["editcap", "-c", str(SPLITS[name]), str(whole), str(folder / f"{name}.pcapng")],
                   check=True, capture_output=True, timeout=60)
    assert len(list(folder.iterdir())) == 8
    return name, whole, folder, fields(tshark, whole, "frame")


def test_a_folder_of_rotated_files_is_the_capture_tshark_sees(rotated):
    name, whole, folder, rows = rotated
    tl = traceviz.load(folder)
    assert tl.warnings == []
    assert tl.packets["frame"].tolist() == [int(r["frame.number"]) for r in rows]
    rows = [r for r in rows if r["tcp.stream"]]
    pk = tl.packets.set_index("frame")
    # tcp.stream of every frame: the connections were joined across the files.
    for r in rows:
        assert int(pk.at[int(r["frame.number"]), "conn"]) == int(r["tcp.stream"]), r
    streams = {}
    for r in rows:
        streams.setdefault(int(r["tcp.stream"]), []).append(r)
    c = tl.connections[tl.connections["transport"] == "tcp"].set_index("conn")
    assert sorted(c.index) == sorted(streams)
    for s, frames in streams.items():
        row = c.loc[s]
        syns = [r for r in frames if int(r["tcp.flags"], 16) & 0x12 == 0x02]
        synacks = [r for r in frames if int(r["tcp.flags"], 16) & 0x12 == 0x12]
        first = syns[0] if syns else frames[0]
        assert row["client"] == f"{first['ip.src']}:{first['tcp.srcport']}"
        assert row["server"] == f"{first['ip.dst']}:{first['tcp.dstport']}"
        assert int(row["first_frame"]) == int(frames[0]["frame.number"])
        if syns:
            assert abs(row["syn"] - float(syns[0]["frame.time_epoch"])) < 1e-6
        if synacks:
            assert int(row["synack_frame"]) == int(synacks[0]["frame.number"])
            assert abs(row["synack"] - float(synacks[0]["frame.time_epoch"])) < 1e-6
        rtt = {r["tcp.analysis.initial_rtt"] for r in frames} - {""}
        if synacks and rtt:          # (tshark also times a SYN's RST: no handshake, NaN for us)
            assert abs(row["handshake_rtt"] - float(rtt.pop())) < 1e-6
        elif not synacks:
            assert np.isnan(row["handshake_rtt"])
    # How each connection ended, as the recording side logged it.
    truth = {(x["client"], x["server"]): x["outcome"] for x in entry(name)["facts"]["connections"]}
    ours = {(r.client, r.server): r.close for r in c.itertuples()}
    assert {k: ours[k] for k in truth} == truth


def test_file_and_file_frame_point_at_the_frame_in_its_member(rotated, tshark):
    name, whole, folder, rows = rotated
    tl = traceviz.load(folder)
    by_frame = {int(r["frame.number"]): r for r in rows}
    pk = tl.packets
    assert str(pk["file"].dtype) == "category"
    assert sorted(set(pk["file"].astype(str))) == sorted(str(p) for p in folder.iterdir())
    # A few frames: each connection's handshake frames, and the first and last frame of every member.
    conns = tl.connections[tl.connections["transport"] == "tcp"]
    picked = {int(f) for col in ("syn_frame", "synack_frame", "ack_frame", "last_frame") for f in conns[col].dropna()}
    picked |= set(pk.groupby("file", observed=True)["frame"].agg(["min", "max"]).to_numpy().ravel().tolist())
    members: dict = {}
    for frame in sorted(picked & set(by_frame)):
        row = pk[pk["frame"] == frame].iloc[0]
        member = str(row["file"])
        if member not in members:
            members[member] = {int(r["frame.number"]): r for r in fields(tshark, Path(member), "frame")}
        there = members[member][int(row["file_frame"])]
        here = by_frame[frame]
        assert (there["frame.time_epoch"], there["tcp.seq_raw"], there["tcp.flags"]) == \
            (here["frame.time_epoch"], here["tcp.seq_raw"], here["tcp.flags"]), (frame, member)


def test_files_named_in_any_order_are_read_in_time_order(rotated):
    name, whole, folder, rows = rotated
    files = sorted(folder.iterdir(), reverse=True)
    tl = traceviz.load([str(f) for f in files])
    assert tl.source.detail["files"] == 8
    assert tl.packets["ts"].is_monotonic_increasing
    assert [m["file"] for m in tl.source.detail["members"]] == sorted(str(f) for f in files)
    assert tl.packets["conn"].tolist() == traceviz.load(whole).packets["conn"].tolist()


def test_a_damaged_member_is_named_and_the_rest_analysed(rotated, tmp_path, tv):
    name, whole, folder, rows = rotated
    files = sorted(folder.iterdir())
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    broken = tmp_path / files[3].name
    broken.write_bytes(broken.read_bytes()[:20])          # its section header cut short
    lost = len(traceviz.load(files[3]).packets)
    tl = traceviz.load(tmp_path)
    assert any(str(broken) in w and "skipped" in w for w in tl.warnings)
    assert len(tl.packets) == len(rows) - lost
    assert str(broken) not in set(tl.packets["file"].astype(str))
    code, out, err = tv("connections", tmp_path, "--json")
    assert code == 0 and str(broken) in err and out.startswith("[")
    for f in tmp_path.iterdir():
        f.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * 4)      # a pcap magic, then nothing
    code, out, err = tv("connections", tmp_path)
    assert code == 2 and out == "" and "none of the files" in err


def test_several_paths_on_the_command_line(rotated, tv):
    name, whole, folder, rows = rotated
    files = sorted(folder.iterdir())
    code, out, err = tv("connections", *files, "--json")
    assert code == 0, err
    import json
    got = json.loads(out)
    assert [r["conn"] for r in got] == sorted({int(r["tcp.stream"]) for r in rows if r["tcp.stream"]})
    code, out, err = tv("handshakes", *files[:2], "--json")
    assert code == 0, err


# -- reading a file in chunks ----------------------------------------------------------------

READABLE = sorted(p for p in CORPUS.glob("pcap/**/*") if p.suffix in (".pcap", ".pcapng")) + \
    sorted(CAPTURES.glob("*.pcapng"))


@pytest.mark.parametrize("path", READABLE, ids=lambda p: p.name)
def test_chunks_read_what_read_capture_reads(path):
    from traceviz.sources.chunks import chunks
    from traceviz.sources.reader import read_capture
    try:
        whole = read_capture(path)
    except InputError as exc:
        with pytest.raises(InputError) as caught:
            list(chunks(path, 512))
        assert str(caught.value) == str(exc)
        return
    for size in (512, 4096):
        parts = [c.capture for c in chunks(path, size)]
        for col in ("ts", "ts_ns", "iface", "linktype", "caplen", "wire_len"):
            got = np.concatenate([getattr(c, col) for c in parts])
            assert np.array_equal(got, getattr(whole, col), equal_nan=True), col
        frames = [c.frame_bytes(i + 1) for c in parts for i in range(len(c))]
        assert frames == [whole.frame_bytes(i + 1) for i in range(len(whole))]
        warnings = [w for c in parts for w in c.warnings]
        assert warnings == [w for w in whole.warnings if not w.endswith("holds no packets")]
        assert sorted(s for c in parts for s in c.secrets) == sorted(whole.secrets)


def test_chunks_count_damage_in_the_whole_file(tmp_path):
    """A record cut short in the fifth chunk: the warning counts frames as read_capture does."""
    from traceviz.sources.chunks import chunks
    from traceviz.sources.reader import read_capture
    src = CORPUS / "pcap/tcp/syn-retransmit__suricata-verify_bug-4376.pcap"
    data = src.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:len(data) * 3 // 4])
    whole = read_capture(cut)
    parts = list(chunks(cut, 8192))
    assert len(parts) > 4 and parts[-1].last
    assert sum(len(c.capture) for c in parts) == len(whole)
    assert [w for c in parts for w in c.capture.warnings] == whole.warnings and whole.warnings
    # A gzipped file reads the same, chunk by chunk.
    gz = tmp_path / "cut.pcap.gz"
    gz.write_bytes(gzip.compress(cut.read_bytes()))
    assert sum(len(c.capture) for c in chunks(gz, 8192)) == len(whole)
