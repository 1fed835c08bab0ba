"""TLS after another protocol's preamble: found where tshark finds it.

The TLS bytes are a real handshake (a bundled capture's first TLS connection);
the preambles are each protocol's own words.  Ground truth: tshark's
dissection of the written capture (it follows STARTTLS and SSLRequest on the
protocols' standard ports) and the offsets of the bytes we wrote.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import traceviz
from traceviz.decode import preamble
from traceviz.decode.tcp.reassembly import reassemble
from traceviz.sources.reader import read_capture

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "captures" / "tls12-vs-tls13.pcapng"


@pytest.fixture(scope="module")
def handshake() -> list[tuple[str, bytes]]:
    """The first TLS connection of a bundled capture, as (direction, bytes) in the order they were sent."""
    tl = traceviz.load(CAPTURE)
    conn = int(tl.tls["conn"].iloc[0])
    pieces = reassemble(tl.packets[tl.packets["conn"] == conn], read_capture(CAPTURE).buf)
    order = sorted((p.ready_frame, d, p.data) for d, s in pieces.items() for p in s.pieces)
    return [(d, data) for _, d, data in order]


def _split(messages):
    c2s = b"".join(m for d, m in messages if d == "c2s")
    s2c = b"".join(m for d, m in messages if d == "s2c")
    return c2s, s2c


MYSQL_GREETING = (b"\x0a8.0.36\x00" + struct.pack("<I", 7) + b"abcdefgh\x00" + struct.pack("<H", 0xFFFF)
                  + b"\x21\x02\x00\xff\xc1\x15" + b"\x00" * 10 + b"ijklmnopqrst\x00mysql_native_password\x00")
MYSQL_SSL_REQUEST = struct.pack("<I", 32 | (1 << 24)) + struct.pack("<IIB", 0x000FAA85 | 0x0800, 1 << 24, 33) + b"\x00" * 23

PREAMBLES = {
    # protocol: (port, messages before TLS, expected name)
    "postgresql": (5432, [("c2s", preamble.PG_SSLREQUEST), ("s2c", b"S")]),
    "mysql": (3306, [("s2c", struct.pack("<I", len(MYSQL_GREETING))[:3] + b"\x00" + MYSQL_GREETING),
                     ("c2s", MYSQL_SSL_REQUEST)]),
    "smtp": (25, [("s2c", b"220 mail.test ESMTP\r\n"), ("c2s", b"EHLO client.test\r\n"),
                  ("s2c", b"250-mail.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"), ("c2s", b"STARTTLS\r\n"),
                  ("s2c", b"220 2.0.0 Ready to start TLS\r\n")]),
    "ftp": (21, [("s2c", b"220 FTP server ready\r\n"), ("c2s", b"AUTH TLS\r\n"),
                 ("s2c", b"234 AUTH TLS successful\r\n")]),
    "imap": (143, [("s2c", b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"), ("c2s", b"a001 STARTTLS\r\n"),
                   ("s2c", b"a001 OK Begin TLS negotiation now\r\n")]),
    "pop3": (110, [("s2c", b"+OK POP3 ready\r\n"), ("c2s", b"STLS\r\n"), ("s2c", b"+OK Begin TLS\r\n")]),
    "xmpp": (5222, [("c2s", b"<?xml version='1.0'?><stream:stream to='x.test' xmlns='jabber:client' "
                            b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"),
                    ("s2c", b"<?xml version='1.0'?><stream:stream from='x.test' id='1' version='1.0'><stream:features>"
                            b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"),
                    ("c2s", b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
                    ("s2c", b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")]),
    "http-connect": (3128, [("c2s", b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n"),
                            ("s2c", b"HTTP/1.1 200 Connection established\r\n\r\n")]),
}


@pytest.mark.parametrize("protocol", sorted(PREAMBLES))
def test_tls_start_is_where_the_handshake_begins(protocol, handshake):
    _, before = PREAMBLES[protocol]
    c2s, s2c = _split(before + handshake)
    pre_c2s, pre_s2c = _split(before)
    assert preamble.looks_like(c2s[:64], s2c[:64]) is not None
    found = preamble.tls_start(c2s, s2c)
    assert found == preamble.Preamble(protocol, len(pre_c2s), len(pre_s2c))


@pytest.mark.parametrize("protocol", sorted(PREAMBLES))
def test_refused_upgrade_is_no_tls(protocol, handshake):
    """The server said no (N, 454, a 407...): the bytes after are not TLS, and nothing is claimed."""
    _, before = PREAMBLES[protocol]
    c2s, s2c = _split(before)
    refused = {"postgresql": b"N", "smtp": b"220 mail.test ESMTP\r\n454 TLS not available\r\n",
               "http-connect": b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"}.get(protocol)
    if refused is not None:
        s2c = refused
    assert preamble.tls_start(c2s + b"QUIT\r\n", s2c) is None


def test_no_preamble_in_plain_protocols():
    assert preamble.tls_start(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n") is None
    assert preamble.looks_like(b"\x16\x03\x01\x02\x00\x01", b"") is None


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is the oracle")
@pytest.mark.parametrize("protocol", ["postgresql", "smtp", "mysql", "ftp", "pop3"])
def test_capture_with_preamble_decodes_its_tls_as_tshark(tmp_path, protocol, handshake):
    from tests.streamgen import write_conversations
    port, before = PREAMBLES[protocol]
    path = write_conversations(tmp_path / f"{protocol}.pcap", {0: before + handshake}, dport=port)
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "tls.handshake.type == 1", "-T", "fields",
                          "-e", "tcp.stream", "-e", "tls.handshake.extensions_server_name"],
                         capture_output=True, text=True).stdout.split()
    assert out, f"tshark found no ClientHello after the {protocol} preamble"
    tl = traceviz.load(path)
    assert tl.tls["conn"].tolist() == [int(out[0])]
    assert tl.tls["sni"].tolist() == [out[1] if len(out) > 1 else None]
