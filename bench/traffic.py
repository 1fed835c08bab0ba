"""Payload bytes that look like real traffic, for ``gen_capture.py --payloads real``.

Each TCP connection is a conversation: a list of flights ``(dir, bytes,
think)``, the bytes one side sends before it waits for the other
(``think``: seconds the sender took first).  The kinds, by server port:

- 443, TLS: real handshakes made once by Python's ``ssl`` (OpenSSL) between
  an in-memory client and server -- TLS 1.3 and 1.2, ALPN h2 or http/1.1,
  16 host names (SNI), certificate chains of EC and RSA keys signed by a
  throw-away CA -- replayed per connection; then application-data records
  (random bytes of the right sizes: requests, responses cut into 16 KiB
  records, sometimes a close_notify).  Without keys nobody reads inside them.
- 80, HTTP/1.1: keep-alive requests with browser-like headers (one URI in
  ten longer than 100 characters), responses with Content-Length or chunked
  bodies, 304s, HEAD, POST bodies.
- 8080, h2c with prior knowledge: hyperframe frames and hpack header blocks,
  several streams per round, DATA frames interleaved.
- 22, 5432, 6379: protocols traceviz does not decode (an SSH banner then
  noise, PostgreSQL-like and Redis-like bytes).

UDP: DNS queries and answers (real messages), and on port 443 real QUIC
connections: an aioquic client and server (``tests/quicgen.py``) run HTTP/3
in memory, every datagram recorded -- Initial packets whose ClientHello and
ServerHello a reader decrypts with keys derived from the connection ID, a
Handshake flight, then 1-RTT packets it cannot open without a key log.
QUIC v1, one connection in ten v2; the 16 host names as SNI; one to four
requests of ordinary response sizes.  Each connection is made afresh (its
own connection IDs and keys), two at a time on the two cores.  Body bytes are
slices of one block of random bytes.
"""

from __future__ import annotations

import ssl
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_NOISE = np.random.default_rng(7).bytes(1 << 22)
TLS_HOSTS = [f"{p}.{d}" for d in ("example.com", "shop.example.net", "cdn.example.org", "api.example.io")
             for p in ("www", "static", "img", "app")]


def noise(rng, n: int) -> bytes:
    """``n`` random-looking bytes (a slice of one block: cheap)."""
    if n <= 0:
        return b""
    if n >= len(_NOISE):
        return (_NOISE * (n // len(_NOISE) + 1))[:n]
    start = int(rng.integers(0, len(_NOISE) - n))
    return _NOISE[start:start + n]


def response_size(rng) -> int:
    return int(min(rng.lognormal(np.log(6000), 1.0), 400_000))


# --- TLS: real handshakes, made once ------------------------------------------------

@dataclass
class Handshake:
    version: str                       # "1.3" or "1.2"
    alpn: str                          # h2 or http/1.1
    host: str
    flights: list[tuple[str, bytes]]   # (dir, bytes) as the two sides wrote them


def _certificates(folder: Path) -> list[tuple[str, str]]:
    """A CA, an intermediate and four server certificates (two EC, two RSA), each
    for four of TLS_HOSTS; (chain file, key file) per server certificate."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "traceviz bench"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject, key, issuer, issuer_key, ca, sans=()):
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    root_key = ec.generate_private_key(ec.SECP256R1())
    mid_key = ec.generate_private_key(ec.SECP256R1())
    mid = cert("bench intermediate CA", mid_key, "bench root CA", root_key, True)
    out = []
    for i in range(4):
        key = ec.generate_private_key(ec.SECP256R1()) if i % 2 == 0 else rsa.generate_private_key(65537, 2048)
        hosts = TLS_HOSTS[i * 4:(i + 1) * 4]
        leaf = cert(hosts[0], key, "bench intermediate CA", mid_key, False, sans=hosts)
        chain, keyfile = folder / f"chain{i}.pem", folder / f"key{i}.pem"
        chain.write_bytes(leaf.public_bytes(pem) + mid.public_bytes(pem))
        keyfile.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        out.append((str(chain), str(keyfile)))
    return out


def _run_handshake(cctx: ssl.SSLContext, sctx: ssl.SSLContext, host: str) -> list[tuple[str, bytes]]:
    cin, cout, sin, sout = (ssl.MemoryBIO() for _ in range(4))
    client = cctx.wrap_bio(cin, cout, server_hostname=host)
    server = sctx.wrap_bio(sin, sout, server_side=True)
    flights: list[tuple[str, bytes]] = []
    done = {"c2s": False, "s2c": False}
    for _ in range(12):
        moved = False
        for d, obj, out, peer_in in (("c2s", client, cout, sin), ("s2c", server, sout, cin)):
            if not done[d]:
                try:
                    obj.do_handshake()
                    done[d] = True
                except ssl.SSLWantReadError:
                    pass
            data = out.read()
            if data:
                flights.append((d, data))
                peer_in.write(data)
                moved = True
        if all(done.values()) and not moved:
            break
    return flights


def tls_handshakes() -> list[Handshake]:
    """Every (host, TLS version, ALPN) once: 64 real handshakes."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        chains = _certificates(Path(tmp))
        for i, host in enumerate(TLS_HOSTS):
            chain, key = chains[i // 4]
            for version in ("1.3", "1.2"):
                for alpn in ("h2", "http/1.1"):
                    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    sctx.load_cert_chain(chain, key)
                    sctx.set_alpn_protocols([alpn])
                    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    cctx.check_hostname, cctx.verify_mode = False, ssl.CERT_NONE
                    cctx.set_alpn_protocols(["h2", "http/1.1"])
                    if version == "1.2":
                        cctx.maximum_version = ssl.TLSVersion.TLSv1_2
                    out.append(Handshake(version, alpn, host, _run_handshake(cctx, sctx, host)))
    return out


def _record(ctype: int, body: bytes) -> bytes:
    return bytes([ctype, 3, 3]) + len(body).to_bytes(2, "big") + body


def _app_records(rng, plaintext: int, overhead: int) -> bytes:
    """Application-data records carrying ``plaintext`` bytes (cut at 16 KiB)."""
    out = bytearray()
    while plaintext > 0:
        n = min(plaintext, 16384)
        out += _record(23, noise(rng, n + overhead))
        plaintext -= n
    return bytes(out)


def tls_conversation(rng, hs: Handshake) -> list[tuple[str, bytes, float]]:
    overhead = 17 if hs.version == "1.3" else 24          # TLS 1.3: type byte + tag; 1.2 GCM: nonce + tag
    flights = [(d, data, 0.0) for d, data in hs.flights]
    tickets = b""
    if hs.version == "1.3" and flights[-1][0] == "s2c":
        tickets = flights.pop()[1]                        # answered to the client's Finished: before the response
    h2 = hs.alpn == "h2"
    for i in range(int(rng.integers(1, 5))):
        req = int(rng.integers(60, 220) if h2 else rng.integers(300, 800))
        if h2 and i == 0:
            req += 60                                     # preface, SETTINGS, WINDOW_UPDATE
        think = 0.0 if i == 0 else float(rng.exponential(0.05))
        if flights[-1][0] == "c2s" and i == 0:
            d, data, t = flights.pop()
            flights.append(("c2s", data + _app_records(rng, req, overhead), t))
        else:
            flights.append(("c2s", _app_records(rng, req, overhead), think))
        body = response_size(rng) + int(rng.integers(150, 400))
        flights.append(("s2c", (tickets if i == 0 else b"") + _app_records(rng, body, overhead),
                        float(rng.exponential(0.01))))
    if rng.random() < 0.5:                                # close_notify
        alert = _record(21, noise(rng, 26)) if hs.version == "1.2" else _record(23, noise(rng, 19))
        flights.append(("c2s", alert, float(rng.exponential(0.2))))
    return flights


# --- HTTP/1.1 -------------------------------------------------------------------------

_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
       "Chrome/124.0.0.0 Safari/537.36")
_TYPES = ["text/html; charset=utf-8", "application/javascript", "text/css", "image/png", "image/jpeg",
          "application/json", "font/woff2"]


def _path(rng) -> str:
    kind = rng.random()
    if kind < 0.1:                                        # long: tracking parameters, signed URLs
        n = int(rng.integers(100, 400))
        return "/collect?v=2&tid=G-" + noise(rng, n).hex()[:n]
    if kind < 0.5:
        return f"/static/{['js', 'css', 'img'][int(rng.integers(0, 3))]}/{int(rng.integers(0, 1 << 32)):08x}.bin"
    if kind < 0.8:
        return f"/api/v1/items?id={int(rng.integers(0, 10**6))}&page={int(rng.integers(1, 20))}"
    return "/" if rng.random() < 0.5 else f"/page/{int(rng.integers(0, 1000))}.html"


def http1_conversation(rng, host: str) -> list[tuple[str, bytes, float]]:
    flights = []
    for i in range(int(rng.integers(1, 6))):
        r = rng.random()
        method = "POST" if r < 0.1 else ("HEAD" if r < 0.13 else "GET")
        body = noise(rng, int(rng.integers(100, 5000))) if method == "POST" else b""
        head = (f"{method} {_path(rng)} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n"
                f"User-Agent: {_UA}\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate, br\r\n"
                f"Accept-Language: en-US,en;q=0.9\r\n"
                + (f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n" if body else "")
                + ("Cookie: sid=" + noise(rng, 24).hex() + "\r\n" if rng.random() < 0.5 else "") + "\r\n")
        flights.append(("c2s", head.encode() + body, 0.0 if i == 0 else float(rng.exponential(0.05))))
        s = rng.random()
        ctype = _TYPES[int(rng.integers(0, len(_TYPES)))]
        common = (f"Date: Mon, 01 Jan 2024 10:00:{i:02d} GMT\r\nServer: nginx/1.24.0\r\n"
                  f"Content-Type: {ctype}\r\nConnection: keep-alive\r\nCache-Control: max-age=3600\r\n")
        if s < 0.1:
            resp = f"HTTP/1.1 304 Not Modified\r\n{common}ETag: \"{int(rng.integers(0, 1 << 30)):x}\"\r\n\r\n".encode()
        else:
            status = "200 OK" if s < 0.93 else ("404 Not Found" if s < 0.97 else "500 Internal Server Error")
            size = response_size(rng)
            payload = noise(rng, size)
            if method != "HEAD" and rng.random() < 0.15:         # chunked
                chunks = bytearray()
                for a in range(0, size, 8192):
                    part = payload[a:a + 8192]
                    chunks += f"{len(part):x}\r\n".encode() + part + b"\r\n"
                resp = (f"HTTP/1.1 {status}\r\n{common}Transfer-Encoding: chunked\r\n\r\n".encode()
                        + bytes(chunks) + b"0\r\n\r\n")
            else:
                resp = f"HTTP/1.1 {status}\r\n{common}Content-Length: {size}\r\n\r\n".encode()
                if method != "HEAD":
                    resp += payload
        flights.append(("s2c", resp, float(rng.exponential(0.01))))
    return flights


# --- h2c (prior knowledge) ---------------------------------------------------------------

def h2c_conversation(rng, host: str) -> list[tuple[str, bytes, float]]:
    import hpack
    from hyperframe.frame import DataFrame, HeadersFrame, SettingsFrame, WindowUpdateFrame

    enc_c, enc_s = hpack.Encoder(), hpack.Encoder()
    preface = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0, settings={3: 100, 4: 6291456}).serialize()
               + WindowUpdateFrame(0, window_increment=15663105).serialize())
    server_start = (SettingsFrame(0, settings={3: 128, 4: 65536}).serialize()
                    + SettingsFrame(0, flags=["ACK"]).serialize())
    flights = []
    sid = 1
    for i in range(int(rng.integers(1, 4))):
        streams = list(range(sid, sid + 2 * int(rng.integers(1, 4)), 2))
        sid = streams[-1] + 2
        c = bytearray(preface if i == 0 else b"")
        if i == 1:
            c += SettingsFrame(0, flags=["ACK"]).serialize()     # the client acknowledges the server's SETTINGS
        for s in streams:
            block = enc_c.encode([(":method", "GET"), (":scheme", "http"), (":authority", host),
                                  (":path", _path(rng)), ("user-agent", _UA), ("accept", "*/*")])
            c += HeadersFrame(s, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize()
        flights.append(("c2s", bytes(c), 0.0 if i == 0 else float(rng.exponential(0.05))))
        out = bytearray(server_start if i == 0 else b"")
        bodies = {}
        for s in streams:
            size = response_size(rng)
            block = enc_s.encode([(":status", "200"), ("content-type", _TYPES[s % len(_TYPES)]),
                                  ("content-length", str(size)), ("server", "h2o")])
            out += HeadersFrame(s, data=block, flags=["END_HEADERS"]).serialize()
            bodies[s] = noise(rng, size)
        while bodies:                                     # DATA frames of the streams, interleaved
            for s in list(bodies):
                part, rest = bodies[s][:16384], bodies[s][16384:]
                out += DataFrame(s, data=part, flags=[] if rest else ["END_STREAM"]).serialize()
                if rest:
                    bodies[s] = rest
                else:
                    del bodies[s]
        flights.append(("s2c", bytes(out), float(rng.exponential(0.01))))
    return flights


# --- what traceviz does not decode --------------------------------------------------------

def opaque_conversation(rng, port: int) -> list[tuple[str, bytes, float]]:
    if port == 22:
        first = [("c2s", b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", 0.0),
                 ("s2c", b"SSH-2.0-OpenSSH_8.9p1 Debian-3\r\n", 0.001)]
    elif port == 6379:
        first = [("c2s", b"*2\r\n$3\r\nGET\r\n$8\r\nsession1\r\n", 0.0), ("s2c", b"$-1\r\n", 0.0005)]
    else:
        first = [("c2s", b"\x00\x00\x00\x08\x04\xd2\x16\x2f", 0.0), ("s2c", b"N", 0.0005)]
    flights = list(first)
    for _ in range(int(rng.integers(1, 5))):
        flights.append(("c2s", noise(rng, int(rng.integers(40, 600))), float(rng.exponential(0.05))))
        flights.append(("s2c", noise(rng, int(min(rng.lognormal(np.log(2000), 1.0), 100_000))),
                        float(rng.exponential(0.005))))
    return flights


# --- UDP ------------------------------------------------------------------------------------

def dns_pair(rng) -> tuple[bytes, bytes]:
    host = TLS_HOSTS[int(rng.integers(0, len(TLS_HOSTS)))]
    qid = int(rng.integers(0, 65536)).to_bytes(2, "big")
    qname = b"".join(bytes([len(p)]) + p.encode() for p in host.split(".")) + b"\x00"
    question = qname + b"\x00\x01\x00\x01"
    query = qid + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + question
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04" + bytes([172, 16, int(rng.integers(1, 200)), 1])
    return query, qid + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + question + answer


QUIC_V2 = 0x6B3343CF
QUIC_BATCH = 256        # connections made per round of the pool (two processes)


def _quic_connection(args: tuple) -> list[tuple[str, bytes, float]]:
    """One real QUIC connection's datagrams: (dir, bytes, seconds since its first)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import quicgen
    host, version, paths, body = args
    conv = quicgen.conversation(paths, body=body, version=version, server_name=host, t0=0.0)
    return [(d, data, ts) for d, data, ts in conv.datagrams]


class QuicPool:
    """Real QUIC connections, made a batch at a time as the capture plan asks for them.

    Their parameters come from the pool's own generator (seeded), so the plan's stays as it
    was; each connection has its own connection IDs, hence its own Initial keys: a reader
    can cache nothing across them, as in a real capture."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed + 1000)
        self.ready: list = []

    def take(self) -> list[tuple[str, bytes, float]]:
        if not self.ready:
            self.ready = self._batch(QUIC_BATCH)[::-1]
        return self.ready.pop()

    def _batch(self, n: int) -> list:
        rng = self.rng
        jobs = [(TLS_HOSTS[int(rng.integers(0, len(TLS_HOSTS)))],
                 QUIC_V2 if rng.random() < 0.1 else None,
                 tuple(_path(rng) for _ in range(int(rng.integers(1, 5)))),
                 int(min(response_size(rng), 60_000))) for _ in range(n)]
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(2) as pool:
            return pool.map(_quic_connection, jobs, chunksize=16)
