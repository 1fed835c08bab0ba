"""Bytes in flight, ack_rtt, SACK blocks and timestamp round trips, against tshark.

Every TCP capture of the corpus and of captures/, plus small conversations
written for the cases Wireshark's rules turn on (SACK blocks, partly
acknowledged segments, holes filled late, a stale acknowledgement with data
resent after it was acknowledged): the packets table's ``bytes_in_flight``,
``ack_rtt`` and ``sack`` must equal tshark's ``tcp.analysis.bytes_in_flight``,
``tcp.analysis.ack_rtt`` and ``tcp.options.sack_le``/``sack_re`` frame by
frame.  The three ways ``decode/tcp/inflight.py`` computes them (closed form
in frame order, closed form with running figures, packet-by-packet replay)
must agree with each other.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

import traceviz
import traceviz.decode.tcp.inflight as inflight
from conftest import CORPUS, ROOT
from tcpgen import Seg, handshake, write

CAPTURES = sorted(p for p in list(CORPUS.glob("pcap/**/*.pcap*")) + list((ROOT / "captures").glob("*.pcapng"))
                  if "corrupt" not in p.parts and "quic" not in p.name)


def tshark_fields(tshark: str, path: Path, fields: list[str]) -> dict[int, list[str]]:
    args = [tshark, "-r", str(path), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-e", "frame.number"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120).stdout
    return {int(v[0]): v[1:] for v in (line.split("\t") for line in out.splitlines())}


def compare(tshark: str, path: Path) -> list[str]:
    """Frames where traceviz and tshark differ (an empty list when they agree)."""
    theirs = tshark_fields(tshark, path, ["tcp.analysis.bytes_in_flight", "tcp.analysis.ack_rtt",
                                          "tcp.options.sack_le", "tcp.options.sack_re"])
    p = traceviz.load(path, measure_tcp=True).packets
    flight = dict(zip(p["frame"], p["bytes_in_flight"].to_numpy(dtype=float, na_value=np.nan)))
    rtts = dict(zip(p["frame"], p["ack_rtt"].to_numpy(dtype=float)))
    sacks = dict(zip(p["frame"], p["sack"]))
    bad = []
    for frame, (bif, rtt, le, re) in theirs.items():
        mine = "" if np.isnan(flight[frame]) else str(int(flight[frame]))
        if mine != bif:
            bad.append(f"frame {frame}: bytes in flight {mine or 'none'} vs tshark {bif or 'none'}")
        if (not rtt and not np.isnan(rtts[frame])) or (rtt and not abs(rtts[frame] - float(rtt)) < 2e-6):
            bad.append(f"frame {frame}: ack_rtt {rtts[frame]} vs tshark {rtt or 'none'}")
        sack = tuple(zip(map(int, le.split(",")), map(int, re.split(",")))) if le else None
        if (sacks[frame] or None) != sack:
            bad.append(f"frame {frame}: SACK {sacks[frame]} vs tshark {sack}")
    return bad


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_capture_matches_tshark(path, tshark):
    assert compare(tshark, path)[:5] == []


# --- written for the rules ------------------------------------------------------------------

def data(who, seq, n, t, ack=1, **kw):
    return Seg(who, "PA", seq, ack, n, t, **kw)


def ack(who, number, t, seq=1, **kw):
    return Seg(who, "A", seq, number, 0, t, **kw)


SCENARIOS = {
    # The receiver SACKs, the sender resends, a plain ACK clears the SACK blocks.
    "sack": handshake() + [data("s", 1 + 1000 * i, 1000, 0.1 + i * 0.001) for i in range(5)] + [
        ack("c", 1001, 0.16, sack=((2001, 5001),)), ack("c", 1001, 0.161, sack=((2001, 5001),)),
        data("s", 1001, 1000, 0.17), ack("c", 5001, 0.22), data("s", 5001, 1000, 0.23), data("s", 6001, 1000, 0.231)],
    # ACKs in the middle of segments move the segment's start up.
    "partial": handshake() + [data("s", 1, 1000, 0.1), data("s", 1001, 1000, 0.101), ack("c", 501, 0.15),
                              data("s", 2001, 1000, 0.16), ack("c", 1501, 0.2), data("s", 3001, 1000, 0.21),
                              ack("c", 2001, 0.25), data("s", 4001, 1000, 0.26)],
    # A segment missing from the capture, later ones ahead of it, the hole filled late.
    "hole": handshake() + [data("c", 1, 5, 0.1), ack("s", 6, 0.15), data("s", 1, 10, 0.16, ack=6),
                           data("s", 21, 10, 0.17, ack=6), data("s", 31, 4, 0.18, ack=6), data("s", 21, 10, 0.19, ack=6),
                           ack("c", 11, 0.2, seq=6), data("s", 11, 10, 0.25, ack=6), data("c", 6, 3, 0.26, ack=35)],
    # A stale acknowledgement on a resent segment, and data resent after it was acknowledged.
    "stale": handshake() + [data("s", 1, 1000, 0.1), data("s", 1001, 1000, 0.101), ack("c", 2001, 0.15),
                            data("c", 1, 100, 0.16, ack=2001), data("s", 2001, 1000, 0.2, ack=101),
                            data("s", 1, 1000, 0.21, ack=1), ack("c", 3001, 0.25, seq=101), data("s", 3001, 500, 0.26, ack=101)],
    # A receiver that advertises a small window the sender keeps filling.
    "window": handshake(win=3000) + [
        s for r in range(4) for s in [data("s", 1 + 3000 * r + 1000 * i, 1000, 0.1 + 0.05 * r + 0.001 * i) for i in range(3)]
        + [ack("c", 1 + 3000 * (r + 1), 0.149 + 0.05 * r, win=3000)]],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_written_case_matches_tshark(name, tmp_path, tshark):
    path = write(tmp_path / f"{name}.pcap", SCENARIOS[name])
    assert compare(tshark, path) == []


@pytest.fixture
def force(monkeypatch):
    """Send every connection down one of inflight's three ways."""
    real = inflight._Frame.kinds

    def use(way):
        def kinds(self, *args):
            replay, general = real(self, *args)
            if way == "general":
                return replay, ~replay
            return np.ones_like(replay), np.zeros_like(general)
        monkeypatch.setattr(inflight._Frame, "kinds", kinds)
    return use


@pytest.mark.parametrize("way", ["general", "replay"])
@pytest.mark.parametrize("path", [CORPUS / "pcap/http1/keepalive-retrans__arkime_wireshark-retrans.pcap",
                                  CORPUS / "pcap/tcp/syn-retransmit__suricata-verify_bug-4376.pcap",
                                  ROOT / "captures/tcp-handshakes.pcapng"], ids=lambda p: getattr(p, "name", p))
def test_the_three_ways_agree(path, way, force):
    first = traceviz.load(path, measure_tcp=True).packets
    force(way)
    second = traceviz.load(path, measure_tcp=True).packets
    for column in ("bytes_in_flight", "ack_rtt", "rtt_ambiguous"):
        assert first[column].equals(second[column]), column


def test_karn_marks_the_ack_that_covers_a_retransmission(tmp_path, tshark):
    # SCENARIOS["sack"]: frame 11 resends 1001-2000; frame 12 (ack 5001) is the ACK that covers it.
    p = traceviz.load(write(tmp_path / "sack.pcap", SCENARIOS["sack"]), measure_tcp=True).packets.set_index("frame")
    retransmitted = {f for f, v in tshark_fields(tshark, tmp_path / "sack.pcap", ["tcp.analysis.retransmission"]).items()
                     if v[0]}
    assert retransmitted == {11}
    assert p.loc[12, "ack_rtt"] == pytest.approx(0.22 - 0.104, abs=1e-6)   # timed from the first copy
    assert p.index[p["rtt_ambiguous"]].tolist() == [12]


def test_timestamp_round_trips_time_the_echoed_tsval(tshark):
    path = ROOT / "captures/h2-multiplexing.pcapng"
    theirs = tshark_fields(tshark, path, ["frame.time_epoch", "tcp.stream", "tcp.srcport",
                                          "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr"])
    first_sent = {}
    for frame, (t, stream, port, tsval, _) in sorted(theirs.items()):
        if tsval:
            first_sent.setdefault((stream, port, int(tsval)), float(t))
    p = traceviz.load(path, measure_tcp=True).packets
    samples = p[p["ts_rtt"].notna()]
    assert len(samples) > 20
    for row in samples.itertuples():
        t, stream, port, _, tsecr = theirs[row.frame]
        other = next(sp for (st, sp, _v) in first_sent if st == stream and sp != port)
        assert row.ts_rtt == pytest.approx(float(t) - first_sent[(stream, other, int(tsecr))], abs=2e-6)


def test_only_a_load_that_asks_measures(tshark):
    # The measuring costs a fifth of a load: a plain load leaves the columns NA and says so.
    path = ROOT / "captures/h2-stalls.pcapng"
    plain = traceviz.load(path)
    assert plain.source.detail["tcp_measured"] is False
    assert plain.packets["bytes_in_flight"].isna().all() and plain.packets["ack_rtt"].isna().all()
    measured = traceviz.load(path, measure_tcp=True)
    assert measured.source.detail["tcp_measured"] is True
    theirs = tshark_fields(tshark, path, ["tcp.analysis.bytes_in_flight"])
    assert int(measured.packets["bytes_in_flight"].notna().sum()) == sum(1 for v in theirs.values() if v[0])
    # Everything else is the same with or without.
    same = [c for c in plain.packets.columns if c not in ("bytes_in_flight", "ack_rtt", "rtt_ambiguous", "ts_rtt", "sack")]
    assert plain.packets[same].equals(measured.packets[same])
    assert plain.connections.equals(measured.connections) and plain.events.equals(measured.events)
