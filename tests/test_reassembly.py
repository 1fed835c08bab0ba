"""TCP stream reassembly: against hand-built segments with known answers, and
against tshark's own reassembly (`-z follow,tcp,raw`) of corpus captures."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest

from traceviz.decode.tcp.reassembly import reassemble


def _rows(segments):
    """(frame, dir, flags, seq, data) -> packet rows over one buffer, like the TCP layer hands us."""
    buf, rows = bytearray(), []
    for frame, d, flags, seq, data, *cap in segments:
        rows.append({"frame": frame, "ts": 100.0 + frame / 1000, "dir": d, "flags": flags, "seq": seq,
                     "len": len(data), "payload_off": len(buf),
                     "payload_cap": cap[0] if cap else len(data)})
        buf += data
    return pd.DataFrame(rows), bytes(buf)


def test_in_order_stream_starts_after_syn():
    rows, buf = _rows([(1, "c2s", "SYN", 0, b""), (2, "s2c", "SYN,ACK", 0, b""),
                       (3, "c2s", "ACK,PSH", 1, b"hello "), (4, "c2s", "ACK,PSH", 7, b"world")])
    s = reassemble(rows, buf)["c2s"]
    assert s.data() == b"hello world"
    assert s.gaps == [] and s.retransmitted == 0
    assert [p.frame for p in s.pieces] == [3, 4]


def test_out_of_order_segment_placed_and_ready_at_filling_frame():
    rows, buf = _rows([(1, "c2s", "SYN", 0, b""), (2, "c2s", "ACK", 6, b"world"),
                       (3, "c2s", "ACK", 1, b"hello")])
    s = reassemble(rows, buf)["c2s"]
    assert s.data() == b"helloworld"
    assert s.gaps == []
    # "world" arrived in frame 2 but could only be read once frame 3 filled the hole.
    assert [(p.frame, p.ready_frame) for p in s.pieces] == [(3, 3), (2, 3)]
    assert s.frame_at(7) == 3


def test_retransmission_and_partial_overlap_first_copy_wins():
    rows, buf = _rows([(1, "c2s", "SYN", 0, b""), (2, "c2s", "ACK", 1, b"abcd"),
                       (3, "c2s", "ACK", 3, b"XXef"),        # overlaps "cd" with different bytes
                       (4, "c2s", "ACK", 1, b"abcdef")])     # full retransmission
    s = reassemble(rows, buf)["c2s"]
    assert s.data() == b"abcdef"
    assert s.retransmitted == 2 + 6
    assert s.conflicting == 2


def test_gap_is_recorded_not_filled():
    rows, buf = _rows([(1, "c2s", "SYN", 0, b""), (2, "c2s", "ACK", 1, b"aaaa"),
                       (3, "c2s", "ACK", 9, b"cccc")])
    s = reassemble(rows, buf)["c2s"]
    assert s.gaps == [(4, 4)]
    assert list(s.runs()) == [(0, b"aaaa"), (8, b"cccc")]


def test_snaplen_cut_payload_leaves_a_gap():
    rows, buf = _rows([(1, "c2s", "SYN", 0, b""), (2, "c2s", "ACK", 1, b"0123456789", 4),
                       (3, "c2s", "ACK", 11, b"abc")])
    s = reassemble(rows, buf)["c2s"]
    assert s.gaps == [(4, 6)]
    assert s.length == 13


def test_no_syn_starts_at_lowest_sequence_and_rst_is_noted():
    rows, buf = _rows([(5, "s2c", "ACK", 1000, b"later"), (6, "s2c", "ACK", 995, b"first"),
                       (7, "s2c", "RST", 1005, b"")])
    s = reassemble(rows, buf)["s2c"]
    assert s.data() == b"firstlater"
    assert s.rst_frame == 7


def test_syn_with_data_fast_open():
    rows, buf = _rows([(1, "c2s", "SYN", 0, b"GET"), (2, "c2s", "ACK", 4, b" /")])
    assert reassemble(rows, buf)["c2s"].data() == b"GET /"


def _follow(tshark, path, stream):
    """tshark's reassembled bytes of one stream: {node index: bytes}."""
    out = subprocess.run([tshark, "-r", str(path), "-q", "-z", f"follow,tcp,raw,{stream}"],
                         capture_output=True, text=True, timeout=60).stdout
    data = {0: bytearray(), 1: bytearray()}
    body = out.split("Node 1:", 1)[1].split("\n", 1)[1]
    for line in body.splitlines():
        if not line.strip() or line.startswith("="):
            continue
        node = 1 if line.startswith("\t") else 0
        data[node] += bytes.fromhex(line.strip())
    return data


@pytest.mark.parametrize("name", [
    "http1/keepalive-retrans__arkime_wireshark-retrans.pcap",
    "tls/tls12-rsa__arkime_openssl-tls1_2.pcap",
    "tls-keys/tls-nss-example__scapy.pcap",
    "http2/h2c-range-5conns__suricata-verify_http2-range.pcap",
])
def test_streams_equal_tshark_follow(corpus, tshark, name):
    import traceviz
    from traceviz.sources.reader import read_capture
    path = corpus / "pcap" / name
    tl = traceviz.load(path)
    buf = read_capture(path).buf
    for conn in tl.connections["conn"]:
        rows = tl.packets[tl.packets["conn"] == conn]
        streams = reassemble(rows, buf)
        theirs = _follow(tshark, path, int(conn))
        # Node 0 is the side that sent the first packet: the client when the SYN is captured.
        assert streams["c2s"].data() == bytes(theirs[0]), f"conn {conn} client->server"
        assert streams["s2c"].data() == bytes(theirs[1]), f"conn {conn} server->client"


def test_all_connections_at_once_match_per_connection_rows(corpus):
    """The payload tier's one pass over every connection places the same bytes as per-connection rows."""
    import traceviz
    from traceviz.decode.index import index_frames
    from traceviz.decode.streams import _tcp_columns
    from traceviz.decode.tcp.connections import analyze
    from traceviz.decode.tcp.reassembly import reassemble_columns
    from traceviz.sources.reader import read_capture
    path = corpus / "pcap" / "http2/h2c-range-5conns__suricata-verify_http2-range.pcap"
    tl = traceviz.load(path)
    cap = read_capture(path)
    cols = _tcp_columns(analyze(index_frames(cap)))
    every = reassemble_columns(*(cols[k] for k in ("conn", "c2s", "flags", "seq", "len", "frame", "ts",
                                                   "payload_off", "payload_cap")), cap.buf)
    assert every.conns == sorted(tl.connections["conn"])
    for conn in every.conns:
        fast = every.streams(conn)
        slow = reassemble(tl.packets[tl.packets["conn"] == conn], cap.buf)
        for d in ("c2s", "s2c"):
            assert fast[d].data() == slow[d].data() and fast[d].gaps == slow[d].gaps
