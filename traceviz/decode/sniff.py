"""Which protocol a TCP byte stream speaks, from its first bytes (never its port).

``stream_kind`` looks at the first bytes of each direction of a connection;
``app_protocol`` decides which HTTP machine the plaintext inside (captured,
or decrypted TLS) needs, by ALPN first and the client's first bytes after.
``could_start`` is the cheap numpy pre-test that keeps tens of thousands of
opaque connections out of the exact test.

A request line can be long (signed URLs, tracking parameters): the first
``SNIFF_BYTES`` may hold a method and the start of a URI and no version yet.
``line_pending`` says so; the caller then looks again at up to
``REQUEST_LINE_MAX`` bytes -- what common servers accept for a request line --
rather than dropping the connection.
"""

from __future__ import annotations

import re

import numpy as np

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HTTP_REQUEST = re.compile(rb"^[A-Z][A-Z-]{1,15} [^\s]+ HTTP/1\.[019]\r?\n|^[A-Z][A-Z-]{1,15} [^\s]+ HTTP/")
_REQUEST_START = re.compile(rb"\A[A-Z][A-Z-]{1,15} [^\s]+\Z")
# Bytes of each direction the sniffers look at first.
SNIFF_BYTES = 64
# A request line longer than this is not waited for (Apache's and nginx's limits are 8 KiB, IIS's 16 KiB).
REQUEST_LINE_MAX = 16 * 1024


def stream_kind(c2s: bytes, s2c: bytes) -> str | None:
    """``tls``, ``http/1.1``, ``h2c`` or None from the first bytes of each direction."""
    if is_tls(c2s) or (not c2s and is_tls(s2c)):
        return "tls"
    if c2s.startswith(H2_PREFACE[:16]):
        return "h2c"
    if _request(c2s) or s2c.startswith(b"HTTP/1."):
        return "http/1.1"
    return None


def _request(c2s: bytes) -> bool:
    """A request line, or one running past ``REQUEST_LINE_MAX`` (the HTTP/1 machine will judge it)."""
    head = c2s[:REQUEST_LINE_MAX]
    return bool(_HTTP_REQUEST.match(head) or (len(head) == REQUEST_LINE_MAX and _REQUEST_START.match(head)))


def line_pending(c2s: bytes) -> bool:
    """The client's bytes are a method, a space and a target still going: more bytes would tell."""
    return len(c2s) < REQUEST_LINE_MAX and _REQUEST_START.match(c2s) is not None


def app_protocol(alpn: str | None, first_c2s: bytes) -> str | None:
    """Which HTTP machine a plaintext stream wants (``http/1.1`` or ``h2``): by ALPN, else its first bytes."""
    if alpn in ("h2", "h2c"):
        return "h2"
    if alpn and alpn.startswith("http/1"):
        return "http/1.1"
    if first_c2s.startswith(H2_PREFACE[:16]):
        return "h2"
    if _request(first_c2s):
        return "http/1.1"
    return None


def is_tls(b: bytes) -> bool:
    if len(b) >= 3 and b[0] in (20, 21, 22, 23) and b[1] == 3 and b[2] <= 4:
        return True
    # SSLv2-compatible ClientHello: 2-byte length with the high bit set, msg_type 1, version 3.x.
    return len(b) >= 4 and bool(b[0] & 0x80) and b[2] == 1 and b[3] in (2, 3)


def could_start(byte0: np.ndarray) -> np.ndarray:
    """First bytes ``stream_kind`` may accept: TLS content types 20-23, an SSLv2 length (high bit), A-Z."""
    return ((byte0 >= 20) & (byte0 <= 23)) | (byte0 >= 0x80) | ((byte0 >= ord("A")) & (byte0 <= ord("Z")))
