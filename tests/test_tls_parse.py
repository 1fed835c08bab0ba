"""TLS record layer, handshake messages and the session machine, from bytes.

Hellos are built here field by field, so each assertion checks a value the
test put on the wire; hostile variants check that damage is counted on the
connection and never raises.
"""

from __future__ import annotations

import datetime
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traceviz.assemble.tls import session_row as _row
from traceviz.decode.tls import messages as msg
from traceviz.decode.tls.records import HandshakeReader, RecordReader
from traceviz.decode.tls.session import TLSSession

# -- builders --------------------------------------------------------------------


def u8(n): return struct.pack("!B", n)
def u16(n): return struct.pack("!H", n)
def u24(n): return struct.pack("!I", n)[1:]
def vec8(b): return u8(len(b)) + b
def vec16(b): return u16(len(b)) + b
def vec24(b): return u24(len(b)) + b
def ext(t, body): return u16(t) + vec16(body)
def hs(t, body): return u8(t) + u24(len(body)) + body
def record(ctype, body, version=0x0303): return u8(ctype) + u16(version) + vec16(body)


def client_hello(sni="example.com", alpn=("h2", "http/1.1"), versions=(0x0A0A, 0x0304, 0x0303),
                 ciphers=(0x1A1A, 0x1301, 0xC02F), groups=(0x2A2A, 0x001D, 0x0017), shares=(0x001D,),
                 sigalgs=(0x0403, 0x0804), session_id=b"", ticket=None, psk=False, early=False,
                 ech=False, legacy=0x0303, trailing=b"", extra=()):
    exts = []
    if sni is not None:
        exts.append(ext(0, vec16(u8(0) + vec16(sni.encode()))))
    if alpn:
        exts.append(ext(16, vec16(b"".join(vec8(a.encode()) for a in alpn))))
    if versions:
        exts.append(ext(43, vec8(b"".join(u16(v) for v in versions))))
    exts.append(ext(10, vec16(b"".join(u16(g) for g in groups))))
    exts.append(ext(11, vec8(b"\x00")))
    exts.append(ext(13, vec16(b"".join(u16(s) for s in sigalgs))))
    exts.append(ext(51, vec16(b"".join(u16(g) + vec16(b"\x11" * 32) for g in shares))))
    if ticket is not None:
        exts.append(ext(35, ticket))
    if early:
        exts.append(ext(42, b""))
    if ech:
        exts.append(ext(0xFE0D, b"\x00" * 8))
    exts.append(ext(45, vec8(b"\x01")))
    exts += list(extra)
    if psk:   # pre_shared_key must come last
        exts.append(ext(41, vec16(vec16(b"id1") + struct.pack("!I", 7)) + vec16(vec8(b"\x22" * 32))))
    body = (u16(legacy) + b"\x01" * 32 + vec8(session_id) + vec16(b"".join(u16(c) for c in ciphers))
            + vec8(b"\x00") + vec16(b"".join(exts)) + trailing)
    return hs(1, body)


def server_hello(version=0x0304, cipher=0x1301, group=0x001D, alpn=None, session_id=b"", hrr=False,
                 psk=False):
    exts = []
    if version == 0x0304:
        exts.append(ext(43, u16(0x0304)))
        exts.append(ext(51, u16(group) if hrr else u16(group) + vec16(b"\x33" * 32)))
    if alpn:
        exts.append(ext(16, vec16(vec8(alpn.encode()))))
    if psk:
        exts.append(ext(41, u16(0)))
    random = msg.HRR_RANDOM if hrr else b"\x02" * 32
    body = u16(0x0303) + random + vec8(session_id) + u16(cipher) + b"\x00" + vec16(b"".join(exts))
    return hs(2, body)


class Feeder:
    """Feeds a session both directions, one frame per call."""

    def __init__(self):
        self.s = TLSSession(0)
        self.frame = 0

    def send(self, d, data, dt=0.01):
        self.frame += 1
        self.s.feed(d, data, self.frame, 1000.0 + self.frame * dt)
        return self.frame


# -- ClientHello / ServerHello fields ------------------------------------------------

def test_client_hello_fields_and_grease():
    body = client_hello(ticket=b"T" * 16, psk=True, early=True, ech=True)[4:]
    ch = msg.parse_client_hello(body)
    assert ch.sni == "example.com"
    assert ch.alpn == ["h2", "http/1.1"]
    assert ch.supported_versions == [0x0A0A, 0x0304, 0x0303]
    assert ch.ciphers == [0x1A1A, 0x1301, 0xC02F]
    assert ch.groups == [0x2A2A, 0x001D, 0x0017]
    assert ch.key_share_groups == [0x001D]
    assert ch.signature_algorithms == [0x0403, 0x0804]
    assert ch.ec_point_formats == [0]
    assert ch.session_ticket == b"T" * 16
    assert ch.psk_identities == 1 and ch.psk_modes == [1]
    assert ch.early_data and ch.ech
    assert set(ch.grease) == {0x0A0A, 0x1A1A, 0x2A2A} and ch.has_grease
    plain = msg.parse_client_hello(client_hello(versions=(0x0304,), ciphers=(0x1301,), groups=(0x001D,))[4:])
    assert plain.grease == [] and not plain.has_grease


def test_server_hello_and_hello_retry():
    sh = msg.parse_server_hello(server_hello(alpn="h2")[4:])
    assert (sh.version, sh.cipher, sh.group, sh.alpn, sh.hello_retry) == (0x0304, 0x1301, 0x001D, "h2", False)
    hrr = msg.parse_server_hello(server_hello(group=0x0017, hrr=True)[4:])
    assert hrr.hello_retry and hrr.group == 0x0017


def test_certificate_chain_subject_issuer_validity_san():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf.test")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(key.public_key())
            .serial_number(7).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("leaf.test"), x509.DNSName("*.leaf.test")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    body = vec24(vec24(der) + vec24(der))
    chain = msg.certificate_list(body)
    assert len(chain) == 2
    info = msg.describe_certificate(chain[0])
    assert info.subject == "CN=leaf.test" and info.issuer == "CN=Test CA"
    assert info.not_before == start.timestamp()
    assert info.not_after == (start + datetime.timedelta(days=90)).timestamp()
    assert info.san == ["leaf.test", "*.leaf.test"]


# -- record layer ------------------------------------------------------------------------

def test_message_fragmented_across_records_and_segments():
    ch = client_hello()
    # Three records of a few bytes each, the whole fed one byte per "frame".
    wire = record(22, ch[:10], 0x0301) + record(22, ch[10:50]) + record(22, ch[50:])
    rr, hr, got = RecordReader(), HandshakeReader(), []
    for i, b in enumerate(wire, start=1):
        for rec in rr.feed(bytes([b]), i, float(i)):
            got += hr.feed(rec)
    assert len(got) == 1 and got[0].type == 1 and got[0].body == ch[4:]
    assert got[0].frame == len(wire)           # completed by the last byte's frame
    assert got[0].first_frame == 1


def test_several_messages_in_one_record():
    flight = server_hello(version=0x0303, cipher=0xC02F) + hs(11, vec24(b"")) + hs(14, b"")
    rr, hr = RecordReader(), HandshakeReader()
    msgs = [m for rec in rr.feed(record(22, flight), 5, 1.0) for m in hr.feed(rec)]
    assert [m.type for m in msgs] == [2, 11, 14]


def test_sslv2_compatible_client_hello():
    specs = b"\x00\x00\x2f" + b"\x07\x00\xc0" + b"\x00\x00\x35"      # two TLS suites, one SSLv2-only
    challenge = b"\x55" * 16
    body = u8(1) + u16(0x0301) + u16(len(specs)) + u16(0) + u16(len(challenge)) + specs + challenge
    wire = struct.pack("!H", 0x8000 | len(body)) + body
    f = Feeder()
    f.send("c2s", wire)
    ch = f.s.client_hello
    assert ch.sslv2 and ch.legacy_version == 0x0301 and ch.ciphers == [0x002F, 0x0035]
    assert f.s.events[0].kind == "ClientHello"


def test_record_longer_than_tls_allows_is_an_error():
    rr = RecordReader()
    assert rr.feed(u8(22) + u16(0x0303) + u16(40000), 1, 1.0) == []
    assert rr.error and "exceeds" in rr.error


# -- the session machine -------------------------------------------------------------------

def tls12_full(f: Feeder, resumed=False):
    sid = b"\x09" * 32
    f.send("c2s", record(22, client_hello(versions=(), session_id=sid if resumed else b"")))
    if resumed:
        f.send("s2c", record(22, server_hello(version=0x0303, cipher=0xC02F, session_id=sid))
               + record(20, b"\x01") + record(22, b"\xaa" * 40))
        f.send("c2s", record(20, b"\x01") + record(22, b"\xbb" * 40))
    else:
        f.send("s2c", record(22, server_hello(version=0x0303, cipher=0xC02F, session_id=sid)
                             + hs(11, vec24(b"")) + hs(12, u8(3) + u16(0x001D) + vec8(b"\x44" * 32)) + hs(14, b"")))
        f.send("c2s", record(22, hs(16, vec8(b"\x55" * 32))) + record(20, b"\x01") + record(22, b"\xbb" * 40))
        f.send("s2c", record(20, b"\x01") + record(22, b"\xaa" * 40))
    f.send("c2s", record(23, b"\xcc" * 100))


def test_tls12_full_handshake_two_round_trips():
    f = Feeder()
    tls12_full(f)
    row = session_row(f.s)
    assert (row["version"], row["cipher"], row["group"]) == ("TLS 1.2", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "x25519")
    assert row["rtts"] == 2 and row["resumed"] is False and row["completed"]
    kinds = [(e.dir, e.kind, e.encrypted) for e in f.s.events]
    assert ("c2s", "Finished", True) in kinds and ("s2c", "Finished", True) in kinds
    # handshake_ms: ClientHello (frame 1) -> the server's Finished (frame 4), 10 ms a frame:
    # only then may a TLS 1.2 client send application data.
    assert row["handshake_ms"] == pytest.approx(30.0)


def test_tls12_resumed_by_session_id_one_round_trip():
    f = Feeder()
    tls12_full(f, resumed=True)
    row = session_row(f.s)
    assert row["resumed"] is True and row["resumption"] == "session-id" and row["rtts"] == 1


def tls13(f: Feeder, hrr=False, psk=False, early=False):
    f.send("c2s", record(22, client_hello(shares=(0x0017,) if hrr else (0x001D,), psk=psk, early=early), 0x0301))
    if early:
        f.send("c2s", record(23, b"\x0e" * 60))
    if hrr:
        f.send("s2c", record(22, server_hello(hrr=True)) + record(20, b"\x01"))
        f.send("c2s", record(20, b"\x01") + record(22, client_hello()))
    f.send("s2c", record(22, server_hello(psk=psk)) + record(20, b"\x01") + record(23, b"\xee" * 900))
    f.send("c2s", (b"" if hrr else record(20, b"\x01")) + record(23, b"\xf0" * 53))
    f.send("c2s", record(23, b"\xf1" * 200))


def test_tls13_one_round_trip_client_finished_by_position():
    f = Feeder()
    tls13(f)
    row = session_row(f.s)
    assert row["version"] == "TLS 1.3" and row["rtts"] == 1 and row["completed"]
    assert row["finished_frame"] == 3 and row["handshake_ms"] == pytest.approx(20.0)
    assert [e.kind for e in f.s.events if e.dir == "s2c"] == ["ServerHello", "ChangeCipherSpec", "EncryptedHandshake"]


def test_tls13_hello_retry_adds_a_round_trip():
    f = Feeder()
    tls13(f, hrr=True)
    row = session_row(f.s)
    assert row["hello_retry"] is True and row["rtts"] == 2 and row["client_hellos"] == 2
    assert "HelloRetryRequest" in [e.kind for e in f.s.events]


def test_tls13_psk_resumption_and_early_data():
    f = Feeder()
    tls13(f, psk=True, early=True)
    row = session_row(f.s)
    assert row["resumed"] is True and row["resumption"] == "psk" and row["rtts"] == 1
    assert row["early_data"] is True


def test_fatal_alert_fails_the_handshake():
    f = Feeder()
    f.send("c2s", record(22, client_hello()))
    f.send("s2c", record(21, b"\x02\x28"))
    row = session_row(f.s)
    assert not row["completed"] and row["alert"] == "fatal handshake_failure (server)"
    assert row["status"].startswith("failed")


def test_stalled_handshake():
    f = Feeder()
    f.send("c2s", record(22, client_hello()))
    assert session_row(f.s)["status"] == "stalled: no ServerHello"


# -- hostile input ------------------------------------------------------------------------------

HOSTILE = {
    "length past the end": lambda ch: ch[:4] + ch[4:40] + b"\xff\xff" + ch[42:],
    "truncated extension list": lambda ch: hs(1, ch[4:-7]),
    "absurd cipher count": lambda ch: hs(1, ch[4:4 + 35] + b"\xff\xfe" + ch[4 + 37:]),
    "garbage after a valid hello": lambda ch: hs(1, ch[4:] + b"\x00garbage"),
}


@pytest.mark.parametrize("damage", list(HOSTILE))
def test_hostile_client_hello_counts_a_decode_error(damage):
    bad = HOSTILE[damage](client_hello())
    f = Feeder()
    f.send("c2s", record(22, bad))
    f.send("s2c", record(22, server_hello()))
    row = session_row(f.s)
    assert row["decode_errors"] >= 1, damage
    assert row["version"] == "TLS 1.3"        # the rest of the session is still read


def test_garbage_after_valid_hello_keeps_its_fields():
    f = Feeder()
    f.send("c2s", record(22, HOSTILE["garbage after a valid hello"](client_hello())))
    assert f.s.client_hello.sni == "example.com" and session_row(f.s)["decode_errors"] == 1


def test_non_tls_bytes_mid_stream_count_and_stop():
    f = Feeder()
    f.send("c2s", record(22, client_hello()) + b"GET / HTTP/1.1\r\n\r\n")
    row = session_row(f.s)
    assert row["sni"] == "example.com" and row["decode_errors"] == 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_client_hellos_never_raise(data):
    ch = bytearray(client_hello(ticket=b"t" * 8, psk=True))
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(ch) - 1))
        ch[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(4, len(ch)))
    wire = record(22, bytes(ch[:cut]))
    f = Feeder()
    f.send("c2s", wire)
    f.send("s2c", record(22, server_hello()))
    row = session_row(f.s)                        # never raises; damage shows as decode errors
    assert isinstance(row["decode_errors"], int)


# -- the payload tier: a hostile connection does not stop the rest ----------------------------

def session_row(session):
    """The session's ``tls`` row, as the assembler writes it."""
    return _row(session, {})


def _load(tmp_path, conns, **kw):
    """{conn: [(dir, bytes)]} as one-segment-per-message TCP streams, through the whole pipeline."""
    import traceviz
    from streamgen import write_conversations
    return traceviz.load(write_conversations(tmp_path / "synthetic.pcap", conns, **kw))


def test_hostile_connection_counted_rest_of_capture_analysed(tmp_path):
    bad = HOSTILE["absurd cipher count"](client_hello(sni="bad.test"))
    tl = _load(tmp_path, {
        0: [("c2s", record(22, bad)), ("s2c", record(22, server_hello()))],
        1: [("c2s", record(22, client_hello(sni="good.test"))), ("s2c", record(22, server_hello(alpn="h2")))],
    })
    rows = tl.tls.set_index("conn")
    assert rows.loc[0, "decode_errors"] >= 1
    assert rows.loc[1, "decode_errors"] == 0
    assert rows.loc[1, "sni"] == "good.test" and rows.loc[1, "alpn"] == "h2"
    assert list(tl.connections["app"]) == ["tls", "h2"]
    assert any("connection 0" in w for w in tl.warnings)


def test_gap_drops_the_cut_record_and_resynchronises():
    f = Feeder()
    f.send("c2s", record(22, client_hello()))
    f.send("s2c", record(22, server_hello(version=0x0303, cipher=0xC02F)) + hs(14, b"")[:0])
    app = record(23, b"\x17" * 300)
    f.send("s2c", app[:100])                      # a record cut by missing bytes...
    f.s.gap("s2c", 0, 150)
    f.send("s2c", app[250:] + record(23, b"\x18" * 80) + record(21, b"\x01\x00"))  # ...then whole records
    kinds = [(e.kind, e.size) for e in f.s.events if e.dir == "s2c"]
    assert ("ApplicationData", 85) in kinds and ("Alert", 7) in kinds
    row = session_row(f.s)
    assert row["stream_gaps"] == 1 and row["decode_errors"] == 0
    assert f.s.alerts[0].detail == "warning close_notify"


def test_tls12_resumed_by_ticket():
    f = Feeder()
    f.send("c2s", record(22, client_hello(versions=(), ticket=b"\x77" * 64)))
    f.send("s2c", record(22, server_hello(version=0x0303, cipher=0xC02F, session_id=b"")
                         + hs(4, struct.pack("!I", 300) + vec16(b"\x78" * 64)))
           + record(20, b"\x01") + record(22, b"\xaa" * 40))
    f.send("c2s", record(20, b"\x01") + record(22, b"\xbb" * 40) + record(23, b"\xcc" * 60))
    row = session_row(f.s)
    assert row["resumption"] == "ticket" and row["rtts"] == 1 and row["completed"]
    assert "NewSessionTicket" in [e.kind for e in f.s.events]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]), st.sampled_from([20, 21, 22, 23, 24]),
                          st.binary(max_size=64)), max_size=12),
       st.booleans())
def test_random_records_after_hellos_never_raise(records, tls13_server):
    f = Feeder()
    f.send("c2s", record(22, client_hello()))
    f.send("s2c", record(22, server_hello(version=0x0304 if tls13_server else 0x0303, cipher=0x1301 if tls13_server else 0xC02F)))
    for d, ctype, body in records:
        f.send(d, record(ctype, body))
    row = session_row(f.s)
    assert row["version"] == ("TLS 1.3" if tls13_server else "TLS 1.2")


def test_tls_sniffed_from_bytes_not_ports_even_when_dribbled(tmp_path):
    from traceviz.decode import sniff
    hello = record(22, client_hello(sni="dribble.test"))
    # The ClientHello arrives 1 byte, then 1 byte, then the rest: the record header spans segments.
    tl = _load(tmp_path, {0: [("c2s", hello[:1]), ("c2s", hello[1:2]), ("c2s", hello[2:]),
                              ("s2c", record(22, server_hello()))]}, sport=5555, dport=8080)  # no 443 anywhere
    assert tl.tls.iloc[0]["sni"] == "dribble.test"
    assert sniff.stream_kind(b"GET / HTTP/1.1\r\n", b"") == "http/1.1"
    assert sniff.stream_kind(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"") == "h2c"
    assert sniff.stream_kind(b"SSH-2.0-OpenSSH_9.6\r\n", b"") is None


# -- the offset-based hello parsers read what the careful ones read ------------------------------

def _careful(parse, body):
    try:
        return parse(body)
    except msg.DecodeError:
        return None


def _mutated(data, wire: bytes) -> bytes:
    body = bytearray(wire)
    for _ in range(data.draw(st.integers(0, 4))):
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    return bytes(body[:data.draw(st.integers(0, len(body)))] if data.draw(st.booleans()) else body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_server_hello_equals_the_careful_parse_or_defers_to_it(data):
    shapes = [server_hello(alpn="h2", psk=True), server_hello(version=0x0303, alpn="http/1.1", session_id=b"s" * 32),
              server_hello(group=0x0017, hrr=True), server_hello() + b"",
              hs(2, u16(0x0303) + b"\x02" * 32 + vec8(b"") + u16(0xC02F) + b"\x00"
                 + vec16(ext(23, b"") + ext(35, b"") + ext(42, b"") + ext(0xFF01, b"\x00")))]
    body = _mutated(data, data.draw(st.sampled_from(shapes))[4:])
    fast = msg._server_hello_fast(body)
    if fast is not None:
        assert fast == _careful(msg._server_hello_careful, body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_client_hello_equals_the_careful_parse_or_defers_to_it(data):
    shapes = [client_hello(ticket=b"t" * 8, psk=True, early=True, ech=True), client_hello(sni=None, alpn=()),
              client_hello(session_id=b"i" * 32, versions=())]
    body = _mutated(data, data.draw(st.sampled_from(shapes))[4:])
    fast = msg._client_hello_fast(body)
    if fast is not None:
        assert fast == _careful(msg._client_hello_careful, body)


def test_fast_hello_parsers_take_the_common_hellos():
    assert msg._server_hello_fast(server_hello(alpn="h2", psk=True)[4:]) is not None
    assert msg._client_hello_fast(client_hello(ticket=b"t" * 8, psk=True)[4:]) is not None
