"""Bytes missing inside a decrypted stream: the application decoder stops, never frames across the hole."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import struct

import pytest

import traceviz
from traceviz.assemble.http import http1_request_rows
from traceviz.decode.http.http1 import HTTP1Connection
from traceviz.sources.reader import read_capture

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_loss_ends_that_direction_only():
    h = HTTP1Connection()
    h.receive("c2s", b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 1, 1.0)
    h.receive_gap("s2c", None)
    h.receive("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 2, 1.1)
    for d in ("c2s", "s2c"):
        h.end_of_stream(d)
    rows = http1_request_rows(h.events, "http", None)
    assert [r["method"] for r in rows] == ["GET"]
    assert rows[0].get("status") is None       # the response after the hole is not guessed at


def write_pcap_without(src: Path, dst: Path, drop: int) -> None:
    cap = read_capture(src)
    with open(dst, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, int(cap.linktype[0])))
        for i in range(len(cap)):
            if i + 1 == drop:
                continue
            sec, usec = divmod(round(float(cap.ts[i]) * 1e6), 10**6)
            data = cap.frame_bytes(i + 1)
            f.write(struct.pack("<IIII", sec, usec, len(data), int(cap.wire_len[i])))
            f.write(data)


@pytest.mark.skipif(not shutil.which("tshark") or not shutil.which("tshark"), reason="needs tshark")
def test_lost_tls_record_loses_only_its_exchange(tmp_path):
    src = ROOT / "captures" / "tls12-vs-tls13.pcapng"
    # The frame carrying the TLS 1.3 connection's HTTP response, as tshark finds it.
    out = subprocess.run(["tshark", "-r", str(src), "-Y", "tcp.stream == 1 and http.response", "-T", "fields",
                          "-e", "frame.number"], capture_output=True, text=True, timeout=60).stdout.split()
    assert out, "the capture should hold a decrypted response on stream 1"
    # editcap 4.0 cannot rewrite a pcapng with embedded secrets, so write a classic pcap
    # without that frame ourselves, and decrypt with the key log beside the capture.
    holed = tmp_path / "holed.pcap"
    write_pcap_without(src, holed, int(out[0]))
    tl = traceviz.load(holed, keylog=src.with_suffix(".keys"))
    by_conn = tl.requests.set_index("conn")
    assert int(by_conn.loc[0, "status"]) == 200                   # the untouched connection still decodes
    assert by_conn.loc[1, "method"] == "GET"                      # the request before the hole is kept
    assert by_conn.isna().loc[1, "status"]                        # its response was in the lost frame
