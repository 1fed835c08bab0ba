"""Real QUIC conversations for tests: an aioquic client and server talking
HTTP/3 in memory, every datagram recorded, the client's key log kept.

``conversation()`` runs one connection to the end and returns its datagrams
(direction, bytes, time), the NSS key log text and what was asked and
answered; ``write_pcap`` puts the datagrams in a capture, so a test can load
them through the whole pipeline as a user's capture is loaded.  Options
exercise what a QUIC observer must follow: a Retry, a key update, 0-RTT on a
resumed session, ChaCha20-Poly1305, QUIC v2, lost datagrams.
"""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass, field
from pathlib import Path

from aioquic.buffer import Buffer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import encode_quic_retry, pull_quic_header
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CLIENT, SERVER = ("10.93.0.1", 50000), ("10.93.0.2", 4433)
_CERT = None
_TICKETS: dict = {}          # the server's session tickets, across conversations (for resumption)


def certificate():
    """A self-signed EC certificate and its key (made once per test run)."""
    global _CERT
    if _CERT is None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "quic.test")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("quic.test")]), critical=False)
                .sign(key, hashes.SHA256()))
        _CERT = (cert, key)
    return _CERT


@dataclass
class Conversation:
    datagrams: list = field(default_factory=list)       # (dir, bytes, ts)
    keylog: str = ""
    requests: list = field(default_factory=list)        # (stream id, path)
    responses: dict = field(default_factory=dict)       # stream id -> body bytes
    ticket: object = None
    dropped: list = field(default_factory=list)         # indices of datagrams the "network" lost


def conversation(paths=("/", "/a", "/b"), *, body: int = 3000, version: int | None = None, cipher=None,
                 retry: bool = False, key_update: bool = False, ticket=None, early: bool = False,
                 drop: tuple = (), t0: float = 1_700_000_000.0, server_name: str = "quic.test",
                 close_error: int | None = None) -> Conversation:
    """One HTTP/3 connection: GET each path, each answered with ``body`` bytes."""
    cert, key = certificate()
    log = io.StringIO()
    ccfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, secrets_log_file=log,
                             server_name=server_name, verify_mode=0)
    scfg = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN, certificate=cert, private_key=key)
    if version is not None:
        ccfg.supported_versions = [version]
        scfg.supported_versions = [version]
    if cipher is not None:
        ccfg.cipher_suites = [cipher]
    conv = Conversation()

    def keep_ticket(t):
        conv.ticket = t

    if ticket is not None:
        ccfg.session_ticket = ticket
    client = QuicConnection(configuration=ccfg, session_ticket_handler=keep_ticket)
    ch3 = H3Connection(client)
    now = [t0]
    client.connect(SERVER, now=now[0])
    server = sh3 = None
    retried = False
    sent = False

    def ask():
        for path in paths:
            sid = client.get_next_available_stream_id()
            ch3.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", server_name.encode()),
                                   (b":path", path.encode())], end_stream=True)
            conv.requests.append((sid, path))

    if early and ticket is not None:
        ask()                              # 0-RTT: the requests go out with the ClientHello
        sent = True

    def record(d: str, data: bytes) -> bool:
        """Write the datagram down; False when the "network" loses it."""
        conv.datagrams.append((d, data, now[0]))
        if len(conv.datagrams) - 1 in drop:
            conv.dropped.append(len(conv.datagrams) - 1)
            return False
        return True

    for _ in range(400):
        moved = False
        for data, _ in client.datagrams_to_send(now=now[0]):
            moved = True
            if not record("c2s", data):
                continue
            if server is None:
                header = pull_quic_header(Buffer(data=data), host_cid_length=8)
                if retry and not retried:
                    retried = True
                    new_cid = bytes(range(8))
                    packet = encode_quic_retry(header.version, new_cid, header.source_cid,
                                               header.destination_cid, b"token-" + header.destination_cid)
                    conv.datagrams.append(("s2c", packet, now[0] + 0.0005))
                    client.receive_datagram(packet, SERVER, now=now[0] + 0.001)
                    odcid = header.destination_cid
                    continue
                server = QuicConnection(configuration=scfg,
                                        original_destination_connection_id=odcid if retry else header.destination_cid,
                                        retry_source_connection_id=bytes(range(8)) if retry else None,
                                        session_ticket_fetcher=_TICKETS.get,
                                        session_ticket_handler=lambda t: _TICKETS.__setitem__(t.ticket, t))
                sh3 = H3Connection(server)
            server.receive_datagram(data, CLIENT, now=now[0] + 0.005)
        now[0] += 0.01
        if server is not None:
            for data, _ in server.datagrams_to_send(now=now[0]):
                moved = True
                if record("s2c", data):
                    client.receive_datagram(data, SERVER, now=now[0] + 0.005)
            _serve(server, sh3, body)
        now[0] += 0.01
        _collect(client, ch3, conv)
        if not sent and client._handshake_complete:
            ask()
            sent = True
            if key_update:
                client.request_key_update()
            moved = True
        if sent and len(conv.responses) == len(paths) and all(conv.responses.values()) and not moved:
            break
        if not moved:
            for conn in (client, server):
                if conn is not None:
                    timer = conn.get_timer()
                    if timer is not None and timer <= now[0] + 1:
                        conn.handle_timer(now=max(now[0], timer))
            now[0] += 0.05
    if close_error is None:
        client.close()
    else:
        client.close(error_code=close_error, reason_phrase="giving up")
    for data, _ in client.datagrams_to_send(now=now[0]):
        conv.datagrams.append(("c2s", data, now[0]))
    conv.keylog = log.getvalue()
    return conv


def _serve(server, sh3, body: int) -> None:
    while True:
        ev = server.next_event()
        if ev is None:
            return
        for h in sh3.handle_event(ev):
            if isinstance(h, HeadersReceived):
                path = dict(h.headers).get(b":path", b"/")
                sh3.send_headers(h.stream_id, [(b":status", b"200"), (b"content-type", b"text/plain"),
                                               (b"x-path", path)])
                sh3.send_data(h.stream_id, b"x" * body, end_stream=True)


def _collect(client, ch3, conv: Conversation) -> None:
    while True:
        ev = client.next_event()
        if ev is None:
            return
        for h in ch3.handle_event(ev):
            if isinstance(h, DataReceived):
                conv.responses[h.stream_id] = conv.responses.get(h.stream_id, b"") + h.data
            elif isinstance(h, HeadersReceived):
                conv.responses.setdefault(h.stream_id, b"")


def write_pcap(path: Path, conv: Conversation, skip_dropped: bool = False) -> Path:
    """The datagrams as IPv4/UDP frames, at the client (every datagram, lost ones included unless asked)."""
    from scapy.all import IP, UDP, Ether, wrpcap
    frames = []
    for i, (d, data, ts) in enumerate(conv.datagrams):
        if skip_dropped and i in conv.dropped:
            continue
        src, dst = (CLIENT, SERVER) if d == "c2s" else (SERVER, CLIENT)
        pkt = Ether() / IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / data
        pkt.time = ts
        frames.append(pkt)
    wrpcap(str(path), frames)
    return path


def keylog_file(path: Path, conv: Conversation) -> Path:
    path.write_text(conv.keylog)
    return path
