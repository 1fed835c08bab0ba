"""QUIC decoding on real conversations: an aioquic client and server (tests/quicgen.py)
talk HTTP/3, every datagram is written to a capture, and what traceviz reads back
is compared with what the two endpoints said and did (their requests, responses,
key log and choices), never with our own earlier output."""

from __future__ import annotations

import pandas as pd
from aioquic.tls import CipherSuite

import traceviz
from tests import quicgen
from traceviz.decode.quic import versions as qv
from traceviz.decode.quic.frames import Ack, Crypto, Stream, parse_frames
from traceviz.decode.quic.packets import parse_datagram
from traceviz.decode.quic.reassembly import OrderedBytes


def _load(tmp_path, conv, keys: bool = True, **kw):
    pcap = quicgen.write_pcap(tmp_path / "c.pcap", conv, **kw)
    return traceviz.load(pcap, keylog=quicgen.keylog_file(tmp_path / "c.keys", conv) if keys else None)


def _check_requests(tl, conv, body=3000):
    rq = tl.requests.sort_values("stream")
    assert [(int(s), u.split("quic.test", 1)[1]) for s, u in zip(rq["stream"], rq["url"])] == sorted(conv.requests)
    assert (rq["protocol"] == "h3").all() and (rq["status"] == 200).all()
    assert [int(b) for b in rq["resp_bytes"]] == [len(conv.responses[s]) for s, _ in sorted(conv.requests)]
    for sid, path in conv.requests:
        row = rq[rq["stream"] == sid].iloc[0]
        assert [":method", "GET"] in row["request_headers"]
        assert ["x-path", path] in row["response_headers"]      # headers decoded through QPACK
        assert row["content_type"] == "text/plain"
        assert row["ttfb"] > 0 and row["end"] >= row["start"]


def test_plain_conversation_through_the_pipeline(tmp_path):
    conv = quicgen.conversation(paths=("/", "/a", "/b", "/c"))
    tl = _load(tmp_path, conv)
    _check_requests(tl, conv)
    row = tl.quic.iloc[0]
    assert row["version"] == "0x00000001" and row["version_name"] == "QUIC v1"
    assert row["sni"] == "quic.test" and list(row["alpn_offered"]) == ["h3"] and row["alpn"] == "h3"
    assert row["decrypted"] and row["packets_encrypted"] == 0 and row["rtts"] == 1
    assert not row["retry"] and not row["version_negotiation"] and not row["zero_rtt"]
    assert row["client"] == "10.93.0.1:50000" and row["server"] == "10.93.0.2:4433"
    assert row["close"] == "NO_ERROR (application) (client)"       # aioquic's close() of an H3 client
    assert row["bytes_c2s"] == sum(len(d) for side, d, _ in conv.datagrams if side == "c2s")
    # The connections table calls the flow QUIC, with its application.
    conn = tl.connections.iloc[0]
    assert conn["transport"] == "quic" and conn["app"] == "h3" and conn["sni"] == "quic.test"
    kinds = set(tl.events.loc[tl.events["layer"] == "quic", "kind"])
    assert {"Initial", "Handshake", "1-RTT", "CRYPTO", "ACK", "STREAM", "HANDSHAKE_DONE", "CONNECTION_CLOSE"} <= kinds
    assert {"HEADERS", "DATA", "SETTINGS"} <= set(tl.events.loc[tl.events["layer"] == "h3", "kind"])


def test_without_keys_the_initial_packets_still_say_who_and_what(tmp_path):
    conv = quicgen.conversation()
    tl = _load(tmp_path, conv, keys=False)
    row = tl.quic.iloc[0]
    assert row["sni"] == "quic.test" and list(row["alpn_offered"]) == ["h3"] and row["version"] == "0x00000001"
    assert not row["decrypted"] and row["decrypt_note"].startswith("no key log")
    assert row["alpn"] is None and len(tl.requests) == 0
    assert row["handshake_ms"] > 0 and row["rtts"] == 1       # timed from the headers alone
    assert row["ja4"].startswith("q13d")


def test_retry_is_checked_and_costs_a_round_trip(tmp_path):
    conv = quicgen.conversation(retry=True)
    tl = _load(tmp_path, conv)
    row = tl.quic.iloc[0]
    assert row["retry"] and row["retry_integrity"] == "ok" and row["rtts"] == 2
    _check_requests(tl, conv)


def test_a_forged_retry_fails_its_integrity_check():
    conv = quicgen.conversation(retry=True)
    from traceviz.decode.quic.connection import QUICConnection
    q = QUICConnection()
    for i, (d, data, ts) in enumerate(conv.datagrams):
        if d == "s2c" and data[0] & 0xF0 == 0xF0:          # the v1 Retry: flip a bit of its tag
            data = data[:-1] + bytes([data[-1] ^ 1])
        q.receive(d, data, i + 1, ts)
    assert q.retry is not None and q.retry.retry_ok is False


def test_key_update_is_followed(tmp_path):
    conv = quicgen.conversation(key_update=True, paths=("/", "/a", "/b", "/c", "/d"))
    tl = _load(tmp_path, conv)
    row = tl.quic.iloc[0]
    assert row["key_updates"] >= 1 and row["packets_encrypted"] == 0
    _check_requests(tl, conv)


def test_chacha20(tmp_path):
    conv = quicgen.conversation(cipher=CipherSuite.CHACHA20_POLY1305_SHA256)
    tl = _load(tmp_path, conv)
    assert tl.quic.iloc[0]["cipher"] == "TLS_CHACHA20_POLY1305_SHA256"
    _check_requests(tl, conv)


def test_quic_v2(tmp_path):
    conv = quicgen.conversation(version=qv.V2)
    tl = _load(tmp_path, conv)
    row = tl.quic.iloc[0]
    assert row["version"] == "0x6b3343cf" and row["version_name"] == "QUIC v2" and row["decrypted"]
    _check_requests(tl, conv)


def test_zero_rtt_on_a_resumed_session(tmp_path):
    first = quicgen.conversation()
    conv = quicgen.conversation(ticket=first.ticket, early=True)
    tl = _load(tmp_path, conv)
    row = tl.quic.iloc[0]
    assert row["zero_rtt"] and row["resumed"] and row["rtts"] == 0
    assert "0-RTT" in set(tl.events["kind"])
    _check_requests(tl, conv)
    # The requests left before the server said anything.
    first_server = tl.events[(tl.events["layer"] == "quic") & (tl.events["dir"] == "s2c")]["ts"].min()
    assert (tl.requests["start"] < first_server).all()


def test_retransmissions_are_counted_and_requests_survive_loss(tmp_path):
    """Lost datagrams, captured before the loss: QUIC sends their data again in new packets."""
    conv = quicgen.conversation(drop=(5, 8, 11), paths=("/", "/a", "/b"), body=6000)
    assert conv.dropped
    tl = _load(tmp_path, conv)
    assert tl.quic.iloc[0]["retransmitted_bytes"] > 0
    _check_requests(tl, conv, body=6000)


def test_capture_that_starts_with_the_server(tmp_path):
    """The client's first datagram was not captured: the hellos still tell client from server."""
    conv = quicgen.conversation()
    conv.datagrams = conv.datagrams[1:]
    conv.dropped = []
    tl = _load(tmp_path, conv)
    row = tl.quic.iloc[0]
    assert row["client"] == "10.93.0.1:50000"
    assert tl.connections.iloc[0]["client_by"] == "quic"
    first = tl.packets.iloc[0]
    assert first["dir"] == "s2c"


# -- pieces, with bytes alone --------------------------------------------------------

def test_version_names():
    assert qv.name(1) == "QUIC v1" and qv.name(0x6B3343CF) == "QUIC v2"
    assert qv.name(0xFF00001D) == "draft-29" and qv.name(0x51303530) == "Google Q050"
    assert qv.name(0x1A2A3A4A) == "grease 0x1a2a3a4a" and qv.family(0xFACEB002) == "mvfst"
    assert qv.hex_version(1) == "0x00000001"


def test_coalesced_packets_are_cut_apart():
    conv = quicgen.conversation()
    # The server's first datagram holds its Initial and Handshake packets (aioquic coalesces them).
    first = next(data for d, data, _ in conv.datagrams if d == "s2c")
    dg = parse_datagram(first)
    assert [p.type for p in dg.packets][:2] == ["Initial", "Handshake"]
    assert sum(p.size for p in dg.packets) + dg.padding == len(first)


def test_frames():
    # ACK largest 10, ranges 10-8 and 5-4; CRYPTO offset 0 "hi"; STREAM 4 with offset, length, FIN.
    payload = bytes([0x02, 10, 0, 1, 2, 1, 1, 0x06, 0, 2]) + b"hi" + bytes([0x0F, 4, 3, 2]) + b"ok"
    got, error = parse_frames(payload)
    assert error is None
    assert got[0] == Ack(10, 0, ((8, 10), (4, 5)))
    assert got[1] == Crypto(0, 2, b"hi")
    assert got[2] == Stream(4, 3, 2, True, b"ok")
    assert parse_frames(b"\x40\x25")[1].startswith("unknown frame type 0x25")


def test_reassembly_in_order_out_of_order_repeated_and_lost():
    ob = OrderedBytes()
    assert ob.add(5, b"world", 2, 0.2) == []
    got = ob.add(0, b"hello", 1, 0.1)
    assert b"".join(p.data for p in got) == b"helloworld"
    assert ob.add(0, b"hello", 3, 0.3) == [] and ob.retransmitted == 5
    assert ob.add(20, b"!", 4, 0.4, fin=True) == []
    tail = ob.close()
    assert tail[0].gap == 10 and tail[0].data == b"!" and ob.finished


def _transport(cap, measure: bool = True):
    from traceviz.decode.index import index_frames
    from traceviz.decode.tcp.connections import analyze
    return analyze(index_frames(cap), measure=measure)


def test_tables_turned_around_equal_tables_of_the_turned_transport(tmp_path):
    """``assemble.transport.turn_around`` on made tables gives the tables of a transport that
    ``decode.quic.streams.turn_around`` turned first (what ``decode_quic`` does)."""
    from traceviz.assemble import transport as tables_of
    from traceviz.decode.quic.streams import turn_around
    from traceviz.sources.reader import read_capture

    cap = read_capture(str(quicgen.write_pcap(tmp_path / "c.pcap", quicgen.conversation())))
    made = tables_of.tables(_transport(cap))      # tables share the transport's arrays: another one
    t = _transport(cap)
    turn_around(t, [0])
    want = tables_of.tables(t)
    got = tables_of.turn_around(made, [0])
    assert got[1].iloc[0]["client"] == "10.93.0.2:4433" and got[1].iloc[0]["client_by"] == "quic"
    assert (got[0]["dir"].astype(str) != made[0]["dir"].astype(str)).all()
    for a, b in zip(want, got):
        pd.testing.assert_frame_equal(a, b)


def test_a_flow_the_hellos_turn_around_is_turned_in_every_table(tmp_path, monkeypatch):
    """A flow only its decrypted hellos turn around is known after the tables are made (the
    loader runs QUIC's machines beside the TCP workers): the tables are turned then, and
    every one equals what ``capture.timeline`` makes of a transport turned first.  (Made to
    happen here by a machine that says so the first time it reads the flow.)"""
    from traceviz.assemble.capture import timeline
    from traceviz.decode.quic import connection as qc
    from traceviz.decode.quic.streams import decode_quic
    from traceviz.decode.streams import decode_streams
    from traceviz.model import SourceInfo
    from traceviz.sources.reader import read_capture

    conv = quicgen.conversation()
    pcap = quicgen.write_pcap(tmp_path / "c.pcap", conv)
    monkeypatch.setattr(qc.QUICConnection, "client_is_server", lambda self: self.events[0].dir == "c2s")
    tl = traceviz.load(pcap)
    cap = read_capture(str(pcap))
    t = _transport(cap, measure=False)      # as load() without measure_tcp
    quic = decode_quic(t, cap.buf)
    assert quic.late == [0]
    want = timeline(SourceInfo(str(pcap), "pcap"), t, decode_streams(t, cap.buf), quic_payload=quic)
    for name in ("packets", "connections", "events", "requests", "tls", "quic"):
        pd.testing.assert_frame_equal(getattr(tl, name), getattr(want, name), obj=name)
    assert tl.connections.iloc[0]["client"] == "10.93.0.2:4433" and tl.quic.iloc[0]["client"] == "10.93.0.2:4433"
    assert tl.packets["dir"].tolist() == ["s2c" if d == "c2s" else "c2s" for d, _, _ in conv.datagrams]


def test_short_headers_without_keys_read_as_the_general_path_reads_them(tmp_path, monkeypatch, corpus):
    """The 1-RTT fast path (``QUICConnection._sealed_short``) changes no event, count or
    connection ID: every QUIC capture of the corpus and conversations of every kind, each
    read with it and without it."""
    from pathlib import Path

    from traceviz.decode.quic import connection as qc

    convs = [quicgen.conversation(), quicgen.conversation(version=qv.V2),
             quicgen.conversation(key_update=True, drop=(5, 9)), quicgen.conversation(retry=True)]
    paths = [quicgen.write_pcap(tmp_path / f"c{i}.pcap", c) for i, c in enumerate(convs)]
    paths += sorted(Path(corpus / "pcap" / "quic").glob("*.pcap*"))
    paths.append(Path(__file__).resolve().parents[1] / "captures" / "quic-h3.pcapng")

    def read(path):
        tl = traceviz.load(path, tables=("quic", "events"))
        return tl.quic, tl.events

    fast = [read(p) for p in paths]
    monkeypatch.setattr(qc.QUICConnection, "_sealed_short", lambda self, *a: False)
    for p, (quic, events) in zip(paths, fast):
        slow_quic, slow_events = read(p)
        pd.testing.assert_frame_equal(quic, slow_quic, obj=p.name)
        pd.testing.assert_frame_equal(events, slow_events, obj=p.name)
    one_rtt = sum(int((e["kind"] == "1-RTT").sum()) for _, e in fast)
    assert one_rtt > 100        # the fast path had packets to read


def _caught_from_the_servers_retry(tmp_path):
    """A capture that missed the client's first Initial: the server's Retry comes first, so
    the transport takes the server for the client."""
    conv = quicgen.conversation(retry=True)
    conv.dropped = [0]
    return quicgen.write_pcap(tmp_path / "c.pcap", conv, skip_dropped=True)


def test_a_flow_caught_from_the_servers_side_is_turned_in_every_table_also_by_a_child(tmp_path, monkeypatch):
    """QUIC's plan turns such a flow around in a child of its own, beside the TCP shares and
    after the loader made its tables: every table equals what ``capture.timeline`` makes of a
    transport turned first (``decode_quic``), as in one process."""
    import os

    from traceviz import _tuning
    from traceviz import _forks
    from traceviz.assemble.capture import timeline
    from traceviz.decode.quic.streams import decode_quic
    from traceviz.decode.streams import decode_streams
    from traceviz.model import SourceInfo
    from traceviz.sources.reader import read_capture

    pcap = _caught_from_the_servers_retry(tmp_path)
    cap = read_capture(str(pcap))
    t = _transport(cap, measure=False)
    quic = decode_quic(t, cap.buf)
    assert quic.flipped == [0] and quic.late == []          # turned by the plan, not by the hellos
    want = timeline(SourceInfo(str(pcap), "pcap"), t, decode_streams(t, cap.buf), quic_payload=quic)
    parent, ran = os.getpid(), tmp_path / "child-ran"
    real_call = _forks._call

    def noting(work):
        if os.getpid() != parent:
            ran.touch()
        return real_call(work)

    monkeypatch.setattr(_forks, "_call", noting)
    for workers in (1, 2):
        monkeypatch.setattr(_tuning, "workers", lambda *a, n=workers, **k: n)
        tl = traceviz.load(pcap)
        for name in ("packets", "connections", "events", "requests", "tls", "quic"):
            pd.testing.assert_frame_equal(getattr(tl, name), getattr(want, name), obj=f"{name}, {workers}")
        assert tl.connections.iloc[0]["client"] == "10.93.0.1:50000"
        assert tl.connections.iloc[0]["client_by"] == "quic" and tl.quic.iloc[0]["retry"]
    assert ran.exists()


def test_dns_messages_turned_equal_messages_of_a_turned_flow(tmp_path):
    """``DNSCapture.turned`` (the loader turns QUIC's flows after DNS is decoded) gives what
    decoding a transport turned first gives."""
    from pathlib import Path

    from traceviz.decode.dns import decode_dns
    from traceviz.decode.quic.streams import turn_around
    from traceviz.sources.reader import read_capture

    cap = read_capture(str(Path(__file__).resolve().parents[1] / "captures" / "journey-https.pcapng"))
    t = _transport(cap)
    dns = decode_dns(t, cap.buf)
    flows = sorted(set(dns.conn.tolist()))
    assert len(dns) >= 2 and flows
    turn_around(t, flows[:1])
    want = decode_dns(t, cap.buf).messages()
    got = dns.turned(flows[:1]).messages()
    assert got == want and got != dns.messages()


def test_a_quic_flow_gone_idle_reads_so_whatever_tables_are_asked_for(tmp_path):
    """A flow silent past its idle timeout before the capture ends closed by idling: the
    capture's end is its last packet's time, whether or not a packets table is built."""
    from scapy.all import IP, UDP, Ether, wrpcap, rdpcap

    conv = quicgen.conversation()
    pcap = quicgen.write_pcap(tmp_path / "c.pcap", conv)
    later = Ether() / IP(src="10.93.0.9", dst="10.93.0.8") / UDP(sport=40000, dport=40001) / b"later"
    later.time = conv.datagrams[-1][2] + 600                # past any idle timeout
    wrpcap(str(pcap), list(rdpcap(str(pcap))) + [later])
    full = traceviz.load(pcap)
    assert full.quic.iloc[0]["close"] == "idle"
    assert traceviz.load(pcap, tables=("quic",)).quic.iloc[0]["close"] == "idle"
