"""Hostile bytes never make the QUIC and HTTP/3 decoders raise, and a UDP flow
that looks like QUIC but cannot be read is said once, naming the frame."""

from __future__ import annotations

import functools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import IP, UDP, Ether, wrpcap

import traceviz
from tests import quicgen
from traceviz.decode.http.h3 import H3Connection
from traceviz.decode.quic.connection import QUICConnection
from traceviz.decode.quic.frames import parse_frames, parse_google_frames
from traceviz.decode.quic.packets import parse_datagram
from traceviz.decode.tls.keylog import KeyLog

FUZZ = settings(max_examples=300, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


@functools.lru_cache(maxsize=1)
def _conversation():
    return quicgen.conversation(paths=("/", "/a"), body=1500)


def _quic_like(data: bytes) -> bytes:
    """Random bytes made to start like a v1 long header, so the parser gets past the first test."""
    return bytes([0xC0 | (data[0] & 0x3F if data else 0)]) + b"\x00\x00\x00\x01" + data[1:]


@FUZZ
@given(data=st.binary(max_size=300), dcid_len=st.one_of(st.none(), st.integers(0, 20)),
       long=st.booleans())
def test_packet_parser_never_raises(data, dcid_len, long):
    data = _quic_like(data) if long else data
    dg = parse_datagram(data, dcid_len, odcid=b"\x01" * 8)
    assert sum(p.size for p in dg.packets) + dg.padding <= len(data)
    for p in dg.packets:
        assert p.start + p.size <= len(data)


@FUZZ
@given(data=st.binary(max_size=400))
def test_frame_parsers_never_raise(data):
    for parse in (parse_frames, parse_google_frames):
        frames, error = parse(data)
        assert isinstance(frames, list) and (error is None or isinstance(error, str))


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 40)))
def test_connection_on_damaged_conversations_never_raises(edits, cut):
    """A real conversation with bytes changed or datagrams cut short, keys and all."""
    conv = _conversation()
    datagrams = [bytearray(d) for _, d, _ in conv.datagrams]
    for which, pos, value in edits:
        dg = datagrams[which % len(datagrams)]
        dg[pos % len(dg)] = value
    if cut is not None:
        datagrams[cut % len(datagrams)] = datagrams[cut % len(datagrams)][:cut]
    q = QUICConnection(0, KeyLog.from_text(conv.keylog))
    for i, ((d, _, ts), data) in enumerate(zip(conv.datagrams, datagrams)):
        q.receive(d, bytes(data), i + 1, ts)
    q.close()
    q.handshake_ms(), q.rtts(), q.close_text(), q.spin_rtts()


@settings(max_examples=40, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 255)),
                      min_size=1, max_size=6))
def test_damaged_conversation_through_the_pipeline(tmp_path, edits):
    """The whole load (decode, assemble, the quic table, requests) on damaged QUIC: no exception,
    and whatever could not be read is a warning naming the file."""
    conv = _conversation()
    datagrams = [(d, bytearray(data), ts) for d, data, ts in conv.datagrams]
    for which, pos, value in edits:
        data = datagrams[which % len(datagrams)][1]
        data[pos % len(data)] = value
    damaged = quicgen.Conversation(datagrams=[(d, bytes(b), ts) for d, b, ts in datagrams], keylog=conv.keylog)
    path = quicgen.write_pcap(tmp_path / "d.pcap", damaged)
    tl = traceviz.load(path, keylog=quicgen.keylog_file(tmp_path / "d.keys", damaged))
    assert all(w.startswith(str(path)) for w in tl.warnings)
    assert len(tl.quic) <= 1


@FUZZ
@given(chunks=st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]), st.sampled_from([0, 2, 3, 4, 6, 7, 10, 11]),
                                 st.binary(max_size=120), st.booleans()), max_size=20))
def test_http3_never_raises(chunks):
    h3 = H3Connection()
    for i, (d, sid, data, fin) in enumerate(chunks):
        h3.receive(d, sid, data, i + 1, float(i), fin=fin)
        if i % 7 == 3:
            h3.receive_gap(d, sid, 5)
        if i % 11 == 5:
            h3.reset(d, sid, 0x10C, i + 1, float(i))
    h3.close()


def test_udp_that_looks_like_quic_but_is_not_is_said_once(tmp_path):
    """Long headers of QUIC v1 cut short: the flow is named in one warning, with the frame."""
    frames = []
    for i in range(3):
        payload = b"\xc3\x00\x00\x00\x01\x08" + bytes(4)          # DCID of 8 bytes, 4 present
        pkt = Ether() / IP(src="10.93.0.1", dst="10.93.0.2") / UDP(sport=40000, dport=8443) / payload
        pkt.time = 1_700_000_000 + i
        frames.append(pkt)
    path = tmp_path / "bad.pcap"
    wrpcap(str(path), frames)
    tl = traceviz.load(path)
    warnings = [w for w in tl.warnings if "looks like QUIC" in w]
    assert len(warnings) == 1 and warnings[0].startswith(f"{path}: frame 1: UDP flow 0 looks like QUIC")
    assert tl.connections.iloc[0]["transport"] == "udp"            # nothing readable: it stays a UDP flow


def test_udp_that_is_not_quic_costs_nothing(tmp_path):
    """DNS-like payloads never reach the QUIC machine: no quic rows, no warnings."""
    frames = []
    for i in range(20):
        payload = bytes([0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]) + bytes(20)
        pkt = Ether() / IP(src="10.93.0.1", dst="10.93.0.53") / UDP(sport=53, dport=40000 + i) / payload
        pkt.time = 1_700_000_000 + i
        frames.append(pkt)
    path = tmp_path / "dns.pcap"
    wrpcap(str(path), frames)
    tl = traceviz.load(path)
    assert tl.quic.empty and not tl.warnings
    assert set(tl.connections["transport"]) == {"udp"}
