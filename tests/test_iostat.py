"""I/O statistics against ``tshark -q -z io,stat,INTERVAL[,FILTER]``: frames and bytes per interval."""

from __future__ import annotations

import re
import subprocess

import pytest

import traceviz
from conftest import CORPUS, ROOT
from traceviz.assemble.iostat import intervals
from traceviz.filters import where

ROW = re.compile(r"^\|\s*([\d.]+)\s*<>\s*(?:[\d.]+|Dur)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|")


def tshark_io(tshark, path, interval, flt=None) -> list[tuple[int, int]]:
    spec = f"io,stat,{interval}" + (f",{flt}" if flt else "")
    out = subprocess.run([tshark, "-r", str(path), "-q", "-z", spec], capture_output=True, text=True,
                         timeout=120).stdout
    return [(int(m[2]), int(m[3])) for m in map(ROW.match, out.splitlines()) if m]


@pytest.mark.parametrize("path, interval", [
    (ROOT / "captures" / "proxy-nginx-502-504.pcapng", 0.5),
    (ROOT / "captures" / "h2-multiplexing.pcapng", 0.1),
    (CORPUS / "pcap" / "tcp" / "syn-retransmit__suricata-verify_bug-4376.pcap", 0.01),
], ids=lambda v: getattr(v, "name", str(v)))
def test_frames_and_bytes_per_interval(path, interval, tshark):
    rows = intervals(traceviz.load(path), interval)
    theirs = tshark_io(tshark, path, interval)
    assert list(zip(rows["frames"].astype(int), rows["bytes"].astype(int)))[:len(theirs)] == theirs
    assert rows["frames"].iloc[len(theirs):].sum() == 0     # tshark stops at its last non-empty interval


def test_filtered_packets(tshark):
    path = ROOT / "captures" / "proxy-nginx-502-504.pcapng"
    tl = traceviz.load(path)
    rows = intervals(tl, 0.25, where(tl.packets, "tcp.port == 9002", "packets"))
    theirs = tshark_io(tshark, path, 0.25, "tcp.port==9002")
    assert list(zip(rows["frames"].astype(int), rows["bytes"].astype(int)))[:len(theirs)] == theirs


def test_events_and_requests_land_in_their_interval():
    tl = traceviz.load(ROOT / "captures" / "tcp-handshakes.pcapng")
    rows = intervals(tl, 0.1)
    ev = tl.events
    assert rows["resets"].sum() == (ev["kind"] == "RST").sum()
    assert rows["retransmissions"].sum() == ev["kind"].isin(
        ["retransmission", "fast-retransmission", "spurious-retransmission"]).sum()
    t0 = tl.packets["ts"].min()
    for ts in ev.loc[ev["kind"] == "RST", "ts"]:
        assert rows.loc[int((ts - t0) // 0.1), "resets"] >= 1
