"""TLS that starts after another protocol's preamble: where, in each direction.

Many protocols begin in the clear and switch to TLS on the same connection:
PostgreSQL's SSLRequest, MySQL's SSL request, SMTP / LMTP ``STARTTLS``,
IMAP ``STARTTLS``, POP3 ``STLS``, FTP ``AUTH TLS``, XMPP ``<starttls/>``, and
an HTTP proxy's ``CONNECT`` tunnel.  ``sniff.stream_kind`` sees no TLS in
their first bytes, so without this module their TLS is never found.

Two steps, both sans-I/O:

- ``looks_like(c2s, s2c)``: from the first bytes of each direction (the
  payload tier's sniffing bytes), which preamble this may be, or None.
  Cheap, and wrong only towards "maybe" (the second step decides).
- ``tls_start(c2s, s2c)``: from the first ``HEAD_BYTES`` of each reassembled
  direction, a ``Preamble`` naming the protocol and the stream offsets where
  the client's ClientHello and the server's first TLS record begin, or None
  when the connection never switched (a refused SSLRequest, a 454 to
  STARTTLS, a failed CONNECT).  The client must have asked for TLS in its
  protocol's words and a TLS handshake record must follow at once.

How the payload tier uses it (``decode/streams.py``): a connection that
``stream_kind`` leaves unclaimed but ``looks_like`` names is reassembled;
``tls_start`` on its first ``HEAD_BYTES`` gives the offsets; the bytes before
them are dropped (``trim``) and the rest goes to a ``TLSSession`` as for any TLS
connection.  ``could_start`` widens the numpy pre-test of first bytes to the
bytes these preambles begin with.

Not yet wired, for the payload tier's owners: ``_first_bytes`` pre-tests with
``sniff.could_start`` only, so IMAP (``* OK``, lower-case tags) and XMPP
(``<``) connections never reach ``looks_like``; and a ``CONNECT`` request is
claimed by ``stream_kind`` as HTTP/1.1, whose machine stops at the tunnel
(``decode/http/upgrade.py`` could hand the rest to a ``TLSSession`` at
``tls_start(...).c2s`` as it hands h2c bytes on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# Bytes of each direction ``tls_start`` reads: an SMTP greeting and EHLO answer
# run to a few hundred bytes; 8 KiB is far past any preamble seen in practice.
HEAD_BYTES = 8192

PG_SSLREQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"      # length 8, code 80877103
MYSQL_CLIENT_SSL = 0x0800                                 # capability flag CLIENT_SSL

_CLIENT_COMMAND = {
    # protocol: the client's request for TLS, as a regular expression on one line
    "smtp": re.compile(rb"^STARTTLS\s*$", re.I),
    "imap": re.compile(rb"^\S+ STARTTLS\s*$", re.I),
    "pop3": re.compile(rb"^STLS\s*$", re.I),
    "ftp": re.compile(rb"^AUTH (TLS|SSL|TLS-C)\s*$", re.I),
}
_GREETING = (
    ("smtp", re.compile(rb"^220[ -]")),
    ("ftp", re.compile(rb"^220[ -]")),
    ("imap", re.compile(rb"^\* (OK|PREAUTH)\b", re.I)),
    ("pop3", re.compile(rb"^\+OK\b")),
)
_CONNECT = re.compile(rb"^CONNECT [^\s]+ HTTP/1\.[01]\r?\n")
_HTTP_OK = re.compile(rb"^HTTP/1\.[01] 2\d\d[^\r\n]*\r?\n")
_XMPP_STARTTLS = re.compile(rb"<starttls\s+xmlns=['\"]urn:ietf:params:xml:ns:xmpp-tls['\"]\s*/>")
_XMPP_PROCEED = re.compile(rb"<proceed\s+xmlns=['\"]urn:ietf:params:xml:ns:xmpp-tls['\"]\s*/>")


@dataclass(frozen=True)
class Preamble:
    """Where TLS begins.  Fields: protocol (postgresql, mysql, smtp, imap, pop3, ftp, xmpp,
    http-connect), c2s and s2c (stream offsets of each direction's first TLS byte; s2c is
    None when the server's TLS is not within the bytes given)."""

    protocol: str
    c2s: int
    s2c: int | None


def looks_like(c2s: bytes, s2c: bytes) -> str | None:
    """Which preamble the first bytes of each direction may be, or None."""
    if c2s.startswith(PG_SSLREQUEST):
        return "postgresql"
    if _mysql_greeting(s2c) is not None:
        return "mysql"
    if _CONNECT.match(c2s):
        return "http-connect"
    if b"<stream:stream" in c2s[:256] or b"<?xml" in c2s[:8]:
        return "xmpp"
    for name, rx in _GREETING:
        if rx.match(s2c):
            return name
    head = c2s.split(b"\n", 1)[0].strip().upper()
    if head.startswith((b"EHLO", b"HELO", b"LHLO", b"STARTTLS", b"STLS", b"AUTH TLS", b"AUTH SSL")) \
            or head.endswith(b" STARTTLS") or head.endswith(b" CAPABILITY"):
        return "text"
    return None


def could_start(byte0: np.ndarray) -> np.ndarray:
    """First bytes a preamble may begin with, in either direction: the numpy pre-test before
    ``looks_like``.  Text protocols begin with ASCII; PostgreSQL's and MySQL's first bytes
    are little lengths (a MySQL greeting's low length byte is any value under 0x80 in practice)."""
    return np.asarray(byte0) < 0x80


def tls_start(c2s: bytes, s2c: bytes) -> Preamble | None:
    """Where TLS begins in each direction, or None when this connection never switched to TLS."""
    for find in (_postgresql, _mysql, _connect, _xmpp, _text):
        found = find(c2s, s2c)
        if found is not None:
            return found
    return None


def trim(stream, start: int | None):
    """``stream`` (a reassembled ``ByteStream``) from stream offset ``start`` on, renumbered
    from 0; empty when ``start`` is None (that side's TLS was not found).  The pieces stay
    references into the capture: a cut piece starts ``cut`` bytes further in."""
    from dataclasses import replace

    cols = {k: [] for k in ("offset", "size", "at", "frame", "ts", "ready_frame", "ready_ts")}
    if start is not None:
        for i, (o, n) in enumerate(zip(stream.offset, stream.size)):
            if o + n <= start:
                continue
            cut = max(0, start - o)
            for k, v in (("offset", o + cut - start), ("size", n - cut), ("at", stream.at[i] + cut),
                         ("frame", stream.frame[i]), ("ts", stream.ts[i]),
                         ("ready_frame", stream.ready_frame[i]), ("ready_ts", stream.ready_ts[i])):
                cols[k].append(v)
    gaps = [(o - start, n) for o, n in stream.gaps if start is not None and o >= start]
    copies = [(o - start, n, at, f) for o, n, at, f in stream._copies if start is not None and o >= start]
    return replace(stream, gaps=gaps, _copies=copies, **cols)


# --- binary preambles ----------------------------------------------------------------------

def _postgresql(c2s: bytes, s2c: bytes) -> Preamble | None:
    # The server answers one byte: S (go ahead) or N (no TLS here).
    if c2s.startswith(PG_SSLREQUEST) and _client_hello_at(c2s, 8) and s2c[:1] == b"S":
        return Preamble("postgresql", 8, _record_at(s2c, 1))
    return None


def _mysql_greeting(s2c: bytes) -> int | None:
    """Length of a MySQL server greeting (protocol 10) at the start of ``s2c``, or None."""
    if len(s2c) < 5 or s2c[3] != 0 or s2c[4] != 10:
        return None
    size = int.from_bytes(s2c[:3], "little")
    if not 20 <= size <= 1024 or b"\x00" not in s2c[5:5 + 64]:       # a NUL-terminated version string
        return None
    return 4 + size


def _mysql(c2s: bytes, s2c: bytes) -> Preamble | None:
    greeting = _mysql_greeting(s2c)
    if greeting is None or len(c2s) < 36:
        return None
    size, seq = int.from_bytes(c2s[:3], "little"), c2s[3]
    caps = int.from_bytes(c2s[4:6], "little")
    if size != 32 or seq != 1 or not caps & MYSQL_CLIENT_SSL or not _client_hello_at(c2s, 36):
        return None
    return Preamble("mysql", 36, _record_at(s2c, greeting))


# --- text preambles --------------------------------------------------------------------------

def _connect(c2s: bytes, s2c: bytes) -> Preamble | None:
    if not _CONNECT.match(c2s):
        return None
    end = c2s.find(b"\r\n\r\n")
    if end < 0 or not _client_hello_at(c2s, end + 4):
        return None
    if not _HTTP_OK.match(s2c):                   # the proxy refused: no tunnel, no TLS
        return None
    answered = s2c.find(b"\r\n\r\n")
    return Preamble("http-connect", end + 4, _record_at(s2c, answered + 4) if answered >= 0 else None)


def _xmpp(c2s: bytes, s2c: bytes) -> Preamble | None:
    asked, proceed = _XMPP_STARTTLS.search(c2s), _XMPP_PROCEED.search(s2c)
    if asked is None or proceed is None:
        return None
    start = _next_record(c2s, asked.end(), client=True)
    if start is None:
        return None
    return Preamble("xmpp", start, _next_record(s2c, proceed.end(), client=False))


def _text(c2s: bytes, s2c: bytes) -> Preamble | None:
    """A line protocol: the client's last line before its ClientHello asks for TLS."""
    for line_end in _line_ends(c2s):
        if not _client_hello_at(c2s, line_end):
            continue
        line_start = c2s.rfind(b"\n", 0, line_end - 1) + 1
        line = c2s[line_start:line_end].rstrip(b"\r\n")
        for protocol, rx in _CLIENT_COMMAND.items():
            if rx.match(line):
                return Preamble(protocol, line_end, _server_start(s2c))
        return None
    return None


def _server_start(s2c: bytes) -> int | None:
    for line_end in _line_ends(s2c):
        if _record_at(s2c, line_end) is not None:
            return line_end
    return None


def _line_ends(data: bytes):
    """Offsets just past each newline in ``data``."""
    i = data.find(b"\n")
    while i >= 0:
        yield i + 1
        i = data.find(b"\n", i + 1)


# --- TLS records -------------------------------------------------------------------------------

def _record_at(data: bytes, i: int) -> int | None:
    """``i`` when a TLS record (handshake or alert, TLS 1.0-1.3 framing) starts there, else None."""
    if i < 0 or len(data) < i + 5:
        return None
    ctype, major, minor = data[i], data[i + 1], data[i + 2]
    length = int.from_bytes(data[i + 3:i + 5], "big")
    if ctype in (21, 22) and major == 3 and minor <= 4 and 0 < length <= (1 << 14) + 2048:
        return i
    return None


def _client_hello_at(data: bytes, i: int) -> bool:
    return _record_at(data, i) is not None and data[i] == 22 and len(data) > i + 5 and data[i + 5] == 1


def _next_record(data: bytes, i: int, client: bool) -> int | None:
    """The first TLS record at or after ``i``, allowing only whitespace between."""
    while i < len(data) and data[i] in b" \t\r\n":
        i += 1
    if client:
        return i if _client_hello_at(data, i) else None
    return _record_at(data, i)
