"""TCP/UDP analysis on every corpus capture, against tshark and MANIFEST.json.

Per frame (tshark run here on the same file): tcp.stream / udp.stream, relative
seq and ack, calculated window, tcp.len and the set of tcp.analysis.* flags.
Per connection: the count, client and server of each (MANIFEST's tshark
view), refused / unanswered counts, SYN retransmissions, and the SYN,
SYN-ACK and handshake-ACK times to the microsecond (frame.time_epoch).

Runs the real pipeline: sources.reader -> decode.index -> decode.tcp.
"""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal

import pandas as pd
import pytest

from conftest import CORPUS
from traceviz.decode.tcp import analysis as ta, connections
from traceviz.decode.index import index_frames
from traceviz.assemble.transport import tables
from traceviz.decode.tcp.connections import analyze as transport


def analyze(idx):
    """(packets, connections, events) of a PacketIndex: the transport tier, assembled."""
    return tables(transport(idx))
from traceviz.errors import InputError
from traceviz.sources.reader import read_capture

# A file no reader can open (its section header is damaged): tests/test_damaged_input.py
# checks that it is refused with one line; it has no frames to compare here.
UNREADABLE = {"corrupt/pcapng-bad-shb-option__libpcap_shb-option-too-long.pcapng"}
CAPTURES = sorted(p for p in CORPUS.glob("pcap/**/*") if p.suffix in (".pcap", ".pcapng", ".gz")
                  and p.relative_to(CORPUS / "pcap").as_posix() not in UNREADABLE)

FIELDS = ["frame.number", "frame.time_epoch", "ip.src", "ipv6.src", "tcp.srcport", "tcp.stream", "udp.stream",
          "tcp.flags", "tcp.seq", "tcp.ack", "tcp.window_size", "tcp.len"] + list(ta.TSHARK_FIELDS)
ANALYSIS_KINDS = set(ta.KINDS.values())


@pytest.fixture(scope="module")
def manifest(corpus):
    return json.loads((corpus / "MANIFEST.json").read_text())["files"]


_cache: dict = {}


def load(path, tshark):
    """(packets, connections, events, tshark rows) for one capture, computed once."""
    if path not in _cache:
        try:
            idx = index_frames(read_capture(path))
        except InputError as exc:
            _cache[path] = exc
            return exc
        packets, conns, events = analyze(idx)
        args = [tshark, "-r", str(path), "-T", "fields", "-E", "occurrence=f"]
        for f in FIELDS:
            args += ["-e", f]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
        rows = {}
        for line in proc.stdout.splitlines():
            v = line.split("\t")
            rows[int(v[0])] = dict(zip(FIELDS, v))
        _cache[path] = (packets, conns, events, rows)
    return _cache[path]


def loaded(path, tshark):
    got = load(path, tshark)
    if isinstance(got, InputError):
        raise AssertionError(f"a corpus capture tshark reads is refused: {got}")
    return got


def ids(p):
    return str(p.relative_to(CORPUS / "pcap"))


@pytest.mark.parametrize("path", CAPTURES, ids=ids)
def test_per_frame_fields_match_tshark(corpus, tshark, path):
    packets, conns, events, rows = loaded(path, tshark)
    bad, compared = per_frame_differences(packets, events, rows)
    assert bad == []
    n_streams = sum(1 for t in rows.values() if t["tcp.stream"] or t["udp.stream"])
    assert compared == n_streams


@pytest.mark.parametrize("path", CAPTURES, ids=ids)
def test_two_thread_analysis_matches_tshark(corpus, tshark, path, monkeypatch):
    """The even/odd connection split big captures take, forced on every capture."""
    packets, conns, events, rows = loaded(path, tshark)
    monkeypatch.setattr(connections, "SPLIT_FROM", 0)
    split_packets, split_conns, split_events = analyze(index_frames(read_capture(path)))
    bad, compared = per_frame_differences(split_packets, split_events, rows)
    assert bad == []
    n_streams = sum(1 for t in rows.values() if t["tcp.stream"] or t["udp.stream"])
    assert compared == n_streams
    # and nothing else differs from the one-thread run either
    pd.testing.assert_frame_equal(split_packets, packets)
    pd.testing.assert_frame_equal(split_conns, conns)
    pd.testing.assert_frame_equal(split_events, events)


def per_frame_differences(packets, events, rows) -> tuple[list[str], int]:
    """(differences from tshark's per-frame fields, frames compared)."""
    ours = events[events["kind"].isin(ANALYSIS_KINDS)].groupby("frame")["kind"].agg(set).to_dict()
    bad = []
    compared = 0
    for p in packets.itertuples():
        t = rows.get(p.frame)
        if t is None:        # tshark stopped early on a damaged file
            continue
        if p.transport in ("icmp", "icmpv6"):      # an ICMP error quoting a flow
            want = t["tcp.stream"] or t["udp.stream"]
            got = "" if pd.isna(p.stream) else str(p.stream)
            compared += bool(want)
            if got != want:
                bad.append(f"frame {p.frame}: ICMP quote stream {got!r} != tshark {want!r}")
        elif t["tcp.stream"]:
            compared += 1
            flags = int(t["tcp.flags"], 16)
            want = [int(t["tcp.stream"]), int(t["tcp.seq"]), int(t["tcp.window_size"]), int(t["tcp.len"]),
                    int(t["tcp.ack"]) if flags & 0x10 else None]
            got = [p.conn, p.seq, p.win, p.len, None if pd.isna(p.ack) else p.ack]
            if got != want:
                bad.append(f"frame {p.frame}: conn/seq/win/len/ack {got} != tshark {want}")
            mine = set(ours.get(p.frame, set()))
            if mine & {"fast-retransmission", "spurious-retransmission"}:
                mine.add("retransmission")      # Wireshark sets both fields
            theirs = {ta.KINDS[bit] for field, bit in ta.TSHARK_FIELDS.items() if t[field]}
            if mine != theirs:
                bad.append(f"frame {p.frame}: analysis {sorted(mine)} != tshark {sorted(theirs)}")
        elif t["udp.stream"]:
            compared += 1
            if p.transport != "udp" or p.stream != int(t["udp.stream"]):
                bad.append(f"frame {p.frame}: udp stream {p.stream} != tshark {t['udp.stream']}")
        elif not pd.isna(p.conn):
            bad.append(f"frame {p.frame}: conn {p.conn} but tshark sees no TCP/UDP stream")
    return bad, compared


@pytest.mark.parametrize("path", CAPTURES, ids=ids)
def test_connections_match_manifest(corpus, tshark, manifest, path):
    packets, conns, events, rows = loaded(path, tshark)
    facts = manifest[str(path.relative_to(corpus))]
    tcp = conns[conns["transport"] == "tcp"]
    want = facts.get("tcp") or {}
    assert len(tcp) == want.get("connections", 0)
    assert (conns["transport"] == "udp").sum() == (facts.get("udp") or {}).get("streams", 0)
    for c in want.get("per_connection", []):
        row = tcp[tcp["conn"] == c["stream"]].iloc[0]
        # MANIFEST writes IPv6 endpoints without brackets.
        assert row["client"].replace("[", "").replace("]", "") == c["client"]
        assert row["server"].replace("[", "").replace("]", "") == c["server"]
        assert row["packets"] == c["packets"]
        assert row["bytes_c2s"] + row["bytes_s2c"] == c["payload_bytes"]
        assert row["client_by"] == ("syn" if c["syn"] or c["synack"] else "ports")
        assert row["syn_retransmits"] == max(c["syn"] - 1, 0)
    assert (tcp["close"] == "refused").sum() == want.get("connections_refused_rst", 0)
    assert (tcp["close"] == "unanswered").sum() == want.get("connections_syn_without_reply", 0)
    assert tcp["syn_retransmits"].sum() == want.get("syn_retransmissions", 0)


@pytest.mark.parametrize("path", CAPTURES, ids=ids)
def test_handshake_times_match_tshark(corpus, tshark, path):
    packets, conns, events, rows = loaded(path, tshark)
    # tshark's view: first SYN, first SYN-ACK the other way, then the first
    # client packet with ACK and neither SYN nor RST.
    by_stream: dict[int, list[dict]] = {}
    for t in rows.values():
        if t["tcp.stream"]:
            by_stream.setdefault(int(t["tcp.stream"]), []).append(t)
    for stream, frames in by_stream.items():
        row = conns[(conns["transport"] == "tcp") & (conns["conn"] == stream)].iloc[0]
        frames.sort(key=lambda t: int(t["frame.number"]))

        def sender(t):
            return (t["ip.src"] or t["ipv6.src"], t["tcp.srcport"])

        syn = next((t for t in frames if int(t["tcp.flags"], 16) & 0x12 == 0x02), None)
        synack = None
        if syn is not None:
            synack = next((t for t in frames if int(t["tcp.flags"], 16) & 0x12 == 0x12 and sender(t) != sender(syn)),
                          None)
        ack = None
        if synack is not None:
            ack = next((t for t in frames if int(t["frame.number"]) > int(synack["frame.number"])
                        and sender(t) == sender(syn) and int(t["tcp.flags"], 16) & 0x16 == 0x10), None)
        for name, t in (("syn", syn), ("synack", synack), ("ack", ack)):
            if t is None:
                assert pd.isna(row[name]), f"stream {stream}: {name}"
            else:
                # Within a microsecond (float64 epoch seconds hold ~0.2 us; ns captures round).
                assert abs(Decimal(repr(float(row[name]))) - Decimal(t["frame.time_epoch"])) < Decimal("1e-6"), \
                    f"stream {stream}: {name}"
        if syn is not None and synack is not None and ack is not None:
            # Wireshark's initial_rtt runs from the most recent SYN before the handshake's ACK.
            answered = [t for t in frames if int(t["tcp.flags"], 16) & 0x12 == 0x02 and sender(t) == sender(syn)
                        and int(t["frame.number"]) < int(ack["frame.number"])][-1]
            expect = Decimal(ack["frame.time_epoch"]) - Decimal(answered["frame.time_epoch"])
            assert row["handshake_rtt"] == pytest.approx(float(expect), abs=1e-6)
            waited = Decimal(ack["frame.time_epoch"]) - Decimal(syn["frame.time_epoch"])
            assert row["connect_time"] == pytest.approx(float(waited), abs=1e-6)


@pytest.mark.parametrize("path", CAPTURES, ids=ids)
def test_handshake_rtt_is_wiresharks_initial_rtt(corpus, tshark, path):
    packets, conns, events, rows = loaded(path, tshark)
    out = subprocess.run([tshark, "-r", str(path), "-Y", "tcp.analysis.initial_rtt", "-T", "fields",
                          "-e", "tcp.stream", "-e", "tcp.analysis.initial_rtt"],
                         capture_output=True, text=True, timeout=120).stdout
    irtt: dict[int, float] = {}
    for line in out.splitlines():
        stream, value = line.split("\t")
        irtt.setdefault(int(stream), float(value))
    tcp = conns[conns["transport"] == "tcp"].set_index("conn")
    # Wireshark also times SYN -> RST of a refused connection as "initial_rtt"; no handshake
    # completed there, so ours stays NaN (the refusal is its own finding).
    irtt = {s: v for s, v in irtt.items() if tcp.loc[s, "close"] != "refused"}
    for stream, value in irtt.items():
        assert tcp.loc[stream, "handshake_rtt"] == pytest.approx(value, abs=1.5e-6), f"stream {stream}"
    # and no RTT where Wireshark has none
    assert set(tcp.index[tcp["handshake_rtt"].notna()]) == set(irtt)
