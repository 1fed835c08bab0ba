"""HTTP/1.x observed from the wire: both directions of one connection.

Sans-I/O, in the style of h11: feed each direction's bytes in stream order
with ``receive(direction, data, frame, ts)``; each call returns the events it
completed (and ``HTTP1Connection.events`` keeps them all).  ``exchanges``
pairs requests with responses for the ``requests`` table.

Hand-written rather than h11: h11 plays one endpoint -- it refuses to read a
response before its own request was sent, raises on the first protocol
error, and cannot resume after bytes missing from a capture.  An observer
needs both directions at once, the method of each pipelined request to
frame its response (HEAD, CONNECT), frame numbers and times per message,
and to keep going (or stop cleanly) on damaged or hostile input.

Framing follows RFC 9112 section 6: Transfer-Encoding chunked, else
Content-Length, else (responses) read until the connection closes; no body
for HEAD, 1xx, 204 and 304; 101 and a successful CONNECT end HTTP/1 on the
connection.  Memory is bounded: only a message head (at most
``MAX_HEAD_BYTES``) or a chunk-size line is ever buffered, bodies are counted,
not kept.  A caller holding the bytes elsewhere (the payload tier: they lie
in the capture) need not even copy a body in: ``skippable`` says how many
bytes coming next the machine would only count -- the rest of a body framed
by Content-Length or a chunk size, a body read until the connection closes,
bytes after a protocol switch -- and ``skip`` passes them by arithmetic.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

MAX_HEAD_BYTES = 64 * 1024      # request/status line + headers (h11 allows 16 KiB; servers 8-64 KiB)
MAX_HEADERS = 500
MAX_CHUNK_LINE = 4096
MAX_PAUSED_BYTES = 64 * 1024    # client bytes held while a CONNECT/Upgrade waits for its answer
ALL = 1 << 62                   # "every byte from here on" for ``skippable``

Headers = tuple  # tuple[tuple[str, str], ...]: names as sent, values latin-1 decoded


# --- events -----------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    method: str
    target: str
    version: str                 # "HTTP/1.1"
    headers: Headers
    frame: int                   # frame of the request's first byte
    ts: float
    head_frame: int = 0          # frame that completed the head
    head_bytes: int = 0

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)


@dataclass(frozen=True)
class RequestEnd:
    frame: int                   # frame of the request's last byte
    ts: float
    body_bytes: int              # body content (chunk framing excluded)
    wire_bytes: int = 0          # whole message: head + body as sent
    complete: bool = True        # False: the stream ended (or a gap hit) inside the body


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    version: str
    headers: Headers
    frame: int                   # frame of the response's first byte
    ts: float
    head_frame: int = 0
    head_bytes: int = 0

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)


@dataclass(frozen=True)
class ResponseEnd:
    frame: int
    ts: float
    body_bytes: int
    wire_bytes: int = 0
    complete: bool = True


@dataclass(frozen=True)
class ParseError:
    direction: str
    frame: int | None
    message: str


def _header(headers: Headers, name: str) -> str | None:
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


# --- one direction --------------------------------------------------------------

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _CLOSE, _PAUSED, _SWITCHED, _LOST = range(10)

_TOKEN_TEXT = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VERSION_TEXT = re.compile(r"HTTP/[0-9]\.[0-9]\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
_WS = " \t\n\r\x0b\x0c"           # what bytes.strip() strips: the ASCII whitespace
_REQUEST_START = re.compile(rb"^[A-Z][A-Z0-9_-]{1,19} \S+ HTTP/1\.[0-9]\r?\n")
_RESPONSE_START = re.compile(rb"^HTTP/1\.[0-9] \d{3}")


class _HeadError(Exception):
    pass


class _Reader:
    """Framing state for one direction."""

    def __init__(self, conn: HTTP1Connection, direction: str, is_request: bool):
        self.conn, self.direction, self.is_request = conn, direction, is_request
        self.state = _HEAD
        self.buf = bytearray()
        self.scanned = 0             # bytes of ``buf`` already searched for the head's end
        self.remaining = 0
        self.started = False         # first byte of the current message seen
        self.first_frame, self.first_ts = 0, 0.0
        self.last_frame, self.last_ts = 0, 0.0
        self.head_bytes = self.body_bytes = self.wire_bytes = 0
        self.unparsed = 0            # bytes after HTTP/1 ended or parsing stopped
        self.paused = bytearray()
        self.paused_at = (0, 0.0)    # frame and time of the last held bytes
        self.trailer_bytes = 0

    # -- feeding --

    def feed(self, data: bytes, frame: int, ts: float) -> None:
        view = memoryview(data)
        while view:
            st = self.state
            if st == _HEAD:
                view = self._head(view, frame, ts)
            elif st == _LENGTH:
                n = min(self.remaining, len(view))
                self._body(n, frame, ts)
                self.remaining -= n
                view = view[n:]
                if self.remaining == 0:
                    self._end(frame, ts)
            elif st in (_CHUNK_SIZE, _CHUNK_CRLF, _TRAILER):
                view = self._chunk_line(view, frame, ts)
            elif st == _CHUNK_DATA:
                n = min(self.remaining, len(view))
                self._body(n, frame, ts)
                self.remaining -= n
                view = view[n:]
                if self.remaining == 0:
                    self.state = _CHUNK_CRLF
            elif st == _CLOSE:
                self._body(len(view), frame, ts)
                view = view[:0]
            elif st == _PAUSED:
                if len(self.paused) + len(view) > MAX_PAUSED_BYTES:
                    self.conn._error(self.direction, frame, "too many bytes after a CONNECT/Upgrade request "
                                                            "before its response")
                    self.state = _LOST
                    self.paused.clear()
                else:
                    self.paused += view
                    self.paused_at = (frame, ts)
                view = view[:0]
            elif st == _LOST and self._resync(view):
                continue
            else:                    # _SWITCHED, _LOST
                self.unparsed += len(view)
                view = view[:0]

    def skippable(self) -> int:
        st = self.state
        if st in (_LENGTH, _CHUNK_DATA):
            return self.remaining
        return ALL if st in (_CLOSE, _SWITCHED) else 0

    def skip(self, n: int, frame: int, ts: float) -> None:
        """``n`` bytes (at most ``skippable()``) passed without being read."""
        st = self.state
        if st == _SWITCHED:
            self.unparsed += n
            return
        self._body(n, frame, ts)
        if st == _CLOSE:
            return
        self.remaining -= n
        if self.remaining == 0:
            if st == _LENGTH:
                self._end(frame, ts)
            else:
                self.state = _CHUNK_CRLF

    def _resync(self, view: memoryview) -> bool:
        """After a gap, pick up again where a segment starts a new message."""
        pattern = _REQUEST_START if self.is_request else _RESPONSE_START
        if pattern.match(bytes(view[:64])):
            self.state, self.started = _HEAD, False
            self.buf.clear()
            self.scanned = 0
            return True
        return False

    def _body(self, n: int, frame: int, ts: float) -> None:
        self.body_bytes += n
        self.wire_bytes += n
        self.last_frame, self.last_ts = frame, ts

    def _head(self, view: memoryview, frame: int, ts: float) -> memoryview:
        if not self.started:
            # Empty lines between messages are ignored (RFC 9112 2.2).
            skip = 0
            while skip < len(view) and view[skip] in (0x0D, 0x0A):
                skip += 1
            view = view[skip:]
            if not view:
                return view
            self.started = True
            self.first_frame, self.first_ts = frame, ts
            self.head_bytes = self.body_bytes = self.wire_bytes = 0
        start = max(0, self.scanned - 3)
        self.buf += view
        end = _find_head_end(self.buf, start)
        if end < 0:
            self.scanned = len(self.buf)
            if len(self.buf) > MAX_HEAD_BYTES:
                self.conn._error(self.direction, frame, f"message head longer than {MAX_HEAD_BYTES} bytes")
                self._lose()
            return view[:0]
        head = bytes(self.buf[:end])
        rest = bytes(self.buf[end:])
        # The part of ``view`` beyond the head goes back to the loop.
        self.buf.clear()
        self.scanned = 0
        self.head_bytes = self.wire_bytes = len(head)
        self.last_frame, self.last_ts = frame, ts
        try:
            self.conn._head(self, head, frame, ts)
        except _HeadError as e:
            self.conn._error(self.direction, frame, str(e))
            self._lose()
            return view[:0]
        return memoryview(rest)

    def _chunk_line(self, view: memoryview, frame: int, ts: float) -> memoryview:
        limit = MAX_HEAD_BYTES if self.state == _TRAILER else MAX_CHUNK_LINE
        nl = bytes(view[:limit + 2]).find(b"\n")
        if nl < 0:
            self.buf += view
            self._count_framing(len(view), frame, ts)
            if len(self.buf) > limit:
                self.conn._error(self.direction, frame, "chunk-size or trailer line too long")
                self._lose()
            return view[:0]
        self.buf += view[:nl + 1]
        self._count_framing(nl + 1, frame, ts)
        line = bytes(self.buf).rstrip(b"\r\n")
        self.buf.clear()
        rest = view[nl + 1:]
        if self.state == _CHUNK_CRLF:
            if line:
                self.conn._error(self.direction, frame, "chunk data not followed by CRLF")
                self._lose()
                return view[:0]
            self.state = _CHUNK_SIZE
        elif self.state == _CHUNK_SIZE:
            size = line.split(b";", 1)[0].strip()
            if not size or len(size) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in size):
                self.conn._error(self.direction, frame, "bad chunk size")
                self._lose()
                return view[:0]
            self.remaining = int(size, 16)
            self.state = _TRAILER if self.remaining == 0 else _CHUNK_DATA
        else:                          # trailer section: lines until an empty one
            self.trailer_bytes += nl + 1
            if not line:
                self.trailer_bytes = 0
                self._end(frame, ts)
            elif self.trailer_bytes > MAX_HEAD_BYTES:
                self.conn._error(self.direction, frame, "trailer section too long")
                self._lose()
                return view[:0]
        return rest

    def _count_framing(self, n: int, frame: int, ts: float) -> None:
        self.wire_bytes += n
        self.last_frame, self.last_ts = frame, ts

    # -- message boundaries --

    def _end(self, frame: int, ts: float, complete: bool = True) -> None:
        event_type = RequestEnd if self.is_request else ResponseEnd
        self.conn._emit(event_type(frame, ts, self.body_bytes, self.wire_bytes, complete))
        self.state, self.started = _HEAD, False

    def _lose(self) -> None:
        self.state = _LOST
        self.buf.clear()
        self.scanned = 0

    def gap(self, nbytes: int) -> None:
        """``nbytes`` of this direction were not captured."""
        if nbytes <= 0:
            return
        if self.state == _LENGTH and nbytes <= self.remaining:
            self.remaining -= nbytes
            self.body_bytes += nbytes
            self.wire_bytes += nbytes
            if self.remaining == 0:
                self._end(self.last_frame, self.last_ts)
            return
        if self.state == _CLOSE:
            self.body_bytes += nbytes
            self.wire_bytes += nbytes
            return
        if self.state in (_SWITCHED, _LOST):
            return
        if self.started or self.state != _HEAD:
            # Unknown how much of the message is gone: it ends here, incomplete.
            if self.state != _HEAD:
                self._end(self.last_frame, self.last_ts, complete=False)
        self.conn._error(self.direction, self.last_frame or None,
                         f"{nbytes} bytes missing from the stream; parsing resumes at the next message start")
        self._lose()

    def eof(self) -> None:
        if self.state == _CLOSE:
            self._end(self.last_frame, self.last_ts)
        elif self.state in (_LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER):
            self._end(self.last_frame, self.last_ts, complete=False)
        elif self.state == _HEAD and self.started and bytes(self.buf).strip():
            self.conn._error(self.direction, self.last_frame or self.first_frame,
                             f"stream ended inside a message head ({len(self.buf)} bytes)")
            self._lose()


def _find_head_end(buf: bytearray, start: int) -> int:
    """Index just past the empty line ending the head, or -1.  Bare LF line
    endings are accepted, as most servers do (RFC 9112 2.2)."""
    i = buf.find(b"\n", start)
    while i >= 0:
        j = i + 1
        if j < len(buf) and buf[j] == 0x0A:
            return j + 1
        if j + 1 < len(buf) and buf[j] == 0x0D and buf[j + 1] == 0x0A:
            return j + 2
        i = buf.find(b"\n", j)
    return -1


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """(start line, [(name, value)]) of a message head, as latin-1 text.

    Decoded once, then split: latin-1 maps each byte to one character, so the
    rules are the byte-level ones (``_WS`` is what ``bytes.strip`` strips,
    tokens and digits are ASCII only)."""
    if b"\x00" in head:
        raise _HeadError("NUL byte in message head")
    lines = head.decode("latin-1").split("\n")
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise _HeadError("empty message head")
    if len(lines) - 1 > MAX_HEADERS:
        raise _HeadError(f"more than {MAX_HEADERS} header lines")
    headers: list[tuple[str, str]] = []
    token = _TOKEN_TEXT.match
    for ln in lines[1:]:
        if ln[:1] in (" ", "\t"):
            if not headers:
                raise _HeadError("header continuation before any header")
            name, value = headers[-1]
            headers[-1] = (name, value + " " + ln.strip(_WS))      # obs-fold (RFC 9112 5.2)
            continue
        name, sep, value = ln.partition(":")
        if not sep or not token(name):
            raise _HeadError("malformed header line")
        headers.append((name, value.strip(" \t")))
    return lines[0], headers


def _values(headers: list[tuple[str, str]], name: str) -> list[str]:
    """The comma-separated elements of every ``name`` header, stripped, in order."""
    return [v.strip(_WS) for k, value in headers if len(k) == len(name) and k.lower() == name
            for v in value.split(",")]


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    values = set(_values(headers, "content-length"))
    if not values:
        return None
    if len(values) != 1:
        raise _HeadError("conflicting Content-Length values")
    v = values.pop()
    if not _DIGITS.match(v) or len(v) > 18:
        raise _HeadError("bad Content-Length")
    return int(v)


def _chunked(headers: list[tuple[str, str]]) -> bool | None:
    """True if the last transfer coding is chunked, False if another one is
    last, None without Transfer-Encoding."""
    codings = [c.lower() for c in _values(headers, "transfer-encoding") if c]
    if not codings:
        return None
    return codings[-1] == "chunked"


# --- the connection ------------------------------------------------------------

class HTTP1Connection:
    """Both directions of one HTTP/1.x connection, observed."""

    def __init__(self) -> None:
        self.events: list = []
        self._new: list = []
        self._readers = {"c2s": _Reader(self, "c2s", True), "s2c": _Reader(self, "s2c", False)}
        self._methods: deque[tuple[str, bool]] = deque()   # (method, asked to upgrade) awaiting a final response
        self.switched_to: str | None = None                # "websocket", "h2c", "tunnel" ...
        self.errors = 0
        self._lost: set[str] = set()                       # directions that can no longer be framed

    def receive(self, direction: str, data: bytes, frame: int, ts: float) -> list:
        """Bytes of one direction, in stream order; returns the events they completed."""
        self._new = []
        reader = self._readers.get(direction)
        if reader is not None and data and direction not in self._lost:
            reader.feed(bytes(data), frame, ts)
        return self._take()

    def skippable(self, direction: str) -> int:
        """Bytes of ``direction`` coming next that would only be counted, never read."""
        reader = self._readers.get(direction)
        if reader is None or direction in self._lost:
            return ALL
        return reader.skippable()

    def skip(self, direction: str, nbytes: int, frame: int, ts: float) -> list:
        """``nbytes`` of ``direction`` (at most ``skippable``) passed without their bytes;
        ``frame``/``ts``: where the last of them arrived.  Returns the events completed."""
        self._new = []
        reader = self._readers.get(direction)
        if reader is not None and nbytes > 0 and direction not in self._lost:
            reader.skip(nbytes, frame, ts)
        return self._take()

    def receive_gap(self, direction: str, nbytes: int | None) -> list:
        """``nbytes`` of one direction were not captured.  None: an unknown amount
        (lost TCP bytes inside TLS records): nothing later that way can be framed."""
        if nbytes is None:
            self._lost.add(direction)
            return self.end_of_stream(direction)
        self._new = []
        reader = self._readers.get(direction)
        if reader is not None:
            reader.gap(int(nbytes))
        return self._take()

    def end_of_stream(self, direction: str) -> list:
        self._new = []
        reader = self._readers.get(direction)
        if reader is not None:
            reader.eof()
        return self._take()

    @property
    def unparsed_bytes(self) -> dict[str, int]:
        """Bytes not parsed as HTTP/1 (after an upgrade, or after parsing stopped)."""
        return {d: r.unparsed + len(r.paused) for d, r in self._readers.items()}

    def _take(self) -> list:
        new, self._new = self._new, []
        return new

    def _emit(self, event) -> None:
        self.events.append(event)
        self._new.append(event)

    def _error(self, direction: str, frame: int | None, message: str) -> None:
        self.errors += 1
        self._emit(ParseError(direction, frame, message))

    def _head(self, reader: _Reader, head: bytes, frame: int, ts: float) -> None:
        start, headers = _parse_head(head)
        if reader.is_request:
            self._request_head(reader, start, headers, frame, ts)
        else:
            self._response_head(reader, start, headers, frame, ts)

    def _request_head(self, reader, start, raw_headers, frame, ts):
        parts = start.split(" ")
        if start.startswith("PRI * HTTP/2.0"):
            raise _HeadError("HTTP/2 connection preface: not HTTP/1.x")
        if len(parts) != 3 or not _TOKEN_TEXT.match(parts[0]) or not _VERSION_TEXT.match(parts[2]) or not parts[1]:
            raise _HeadError("malformed request line")
        method = parts[0]
        chunked = _chunked(raw_headers)
        length = _content_length(raw_headers)
        if chunked is False:
            raise _HeadError("request Transfer-Encoding without chunked last")
        headers = tuple(raw_headers)
        upgrade = method == "CONNECT" or _header(headers, "upgrade") is not None
        self._emit(Request(method, parts[1], parts[2], headers, reader.first_frame,
                           reader.first_ts, frame, reader.head_bytes))
        self._methods.append((method, upgrade))
        if chunked:
            reader.state = _CHUNK_SIZE
        elif length:
            reader.state, reader.remaining = _LENGTH, length
        else:
            reader._end(frame, ts)
        if upgrade and reader.state == _HEAD:
            # Whatever follows may not be HTTP/1: hold it until the response says.
            reader.state = _PAUSED

    def _response_head(self, reader, start, raw_headers, frame, ts):
        parts = start.split(" ", 2)
        if len(parts) < 2 or not _VERSION_TEXT.match(parts[0]) or not (len(parts[1]) == 3
                                                                       and _DIGITS.match(parts[1])):
            raise _HeadError("malformed status line")
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = tuple(raw_headers)
        self._emit(Response(status, reason, parts[0], headers, reader.first_frame, reader.first_ts,
                            frame, reader.head_bytes))
        if 100 <= status < 200 and status != 101:
            reader.state, reader.started = _HEAD, False      # interim: no body, no end
            return
        method, upgrade = self._methods.popleft() if self._methods else ("GET", False)
        if status == 101 or (method == "CONNECT" and 200 <= status < 300):
            reader._end(frame, ts)
            self.switched_to = (_header(headers, "upgrade") or "upgrade") if status == 101 else "tunnel"
            for r in self._readers.values():
                r.unparsed += len(r.paused)
                r.paused.clear()
                r.state = _SWITCHED
            return
        self._resume_paused(upgrade)
        chunked = _chunked(raw_headers)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            reader._end(frame, ts)
        elif chunked:
            reader.state = _CHUNK_SIZE
        elif chunked is False:
            reader.state = _CLOSE
        else:
            length = _content_length(raw_headers)
            if length is None:
                reader.state = _CLOSE
            elif length == 0:
                reader._end(frame, ts)
            else:
                reader.state, reader.remaining = _LENGTH, length

    def _resume_paused(self, was_upgrade: bool) -> None:
        """The upgrade was refused: what the client sent meanwhile is HTTP/1 again."""
        client = self._readers["c2s"]
        if client.state != _PAUSED or not was_upgrade:
            return
        held, client.paused = bytes(client.paused), bytearray()
        client.state = _HEAD
        if held:
            client.feed(held, *client.paused_at)


# --- exchanges -------------------------------------------------------------------

@dataclass
class Exchange:
    """One request and its response, as far as the capture shows them."""

    method: str | None = None
    target: str | None = None
    host: str | None = None
    url: str | None = None
    version: str | None = None
    status: int | None = None
    reason: str | None = None
    interim: list[int] = field(default_factory=list)     # 1xx statuses before the final one
    start: float | None = None        # first request byte
    request_sent: float | None = None  # last request byte
    response_start: float | None = None  # final response's first byte
    ttfb: float | None = None         # final response's first byte - start (seconds)
    end: float | None = None          # last response byte
    req_bytes: int | None = None      # request on the wire: head + body
    resp_bytes: int | None = None     # response(s) on the wire, interim ones included
    req_body_bytes: int | None = None
    resp_body_bytes: int | None = None
    request_frame: int | None = None
    request_end_frame: int | None = None
    response_frame: int | None = None
    response_end_frame: int | None = None
    complete: bool = False            # both messages seen whole
    interim_bytes: int = field(default=0, repr=False)

    def as_row(self) -> dict:
        """The ``requests`` table columns this decoder knows."""
        return {"protocol": (self.version or "").lower() or None, "method": self.method,
                "host": self.host, "url": self.url, "status": self.status, "start": self.start,
                "ttfb": self.ttfb, "end": self.end, "req_bytes": self.req_bytes,
                "resp_bytes": self.resp_bytes}


def exchanges(events, scheme: str = "http", default_host: str | None = None) -> list[Exchange]:
    """Pair requests with responses, in order (HTTP/1.1 answers in request order).

    ``default_host`` (the TLS SNI, or the server's address) completes the URL
    of a request without a Host header (HTTP/1.0); ``host`` stays None then."""
    out: list[Exchange] = []
    awaiting_end: deque[Exchange] = deque()       # requests whose RequestEnd is due
    awaiting_response: deque[Exchange] = deque()
    responding: Exchange | None = None            # got its final Response, ResponseEnd is due
    interim_bytes = 0
    for ev in events:
        if isinstance(ev, Request):
            ex = Exchange(method=ev.method, target=ev.target, version=ev.version, start=ev.ts,
                          request_frame=ev.frame, req_bytes=ev.head_bytes)
            ex.host, ex.url = _host_and_url(ev, scheme, default_host)
            out.append(ex)
            awaiting_end.append(ex)
            awaiting_response.append(ex)
        elif isinstance(ev, RequestEnd):
            if awaiting_end:
                ex = awaiting_end.popleft()
                ex.req_bytes, ex.req_body_bytes, ex.request_end_frame = ev.wire_bytes, ev.body_bytes, ev.frame
                ex.request_sent = ev.ts
        elif isinstance(ev, Response):
            if 100 <= ev.status < 200 and ev.status != 101:
                if awaiting_response:
                    awaiting_response[0].interim.append(ev.status)
                interim_bytes += ev.head_bytes
                continue
            ex = awaiting_response.popleft() if awaiting_response else None
            if ex is None:                # the capture began after the request
                ex = Exchange()
                out.append(ex)
            ex.status, ex.reason, ex.response_frame = ev.status, ev.reason, ev.frame
            ex.version = ex.version or ev.version
            ex.response_start = ev.ts
            if ex.start is not None:
                ex.ttfb = ev.ts - ex.start
            ex.interim_bytes, interim_bytes = interim_bytes, 0
            ex.resp_bytes = ev.head_bytes + ex.interim_bytes
            responding = ex
        elif isinstance(ev, ResponseEnd) and responding is not None:
            ex, responding = responding, None
            ex.resp_bytes = ev.wire_bytes + ex.interim_bytes
            ex.resp_body_bytes, ex.end, ex.response_end_frame = ev.body_bytes, ev.ts, ev.frame
            ex.complete = ev.complete and ex.request_end_frame is not None
    return out


def _host_and_url(req: Request, scheme: str, default_host: str | None) -> tuple[str | None, str]:
    host = (req.header("host") or "").strip() or None     # an empty Host is no host
    target = req.target
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://([^/?#]*)", target)
    if m:                                  # absolute form (proxies)
        return host or m.group(2), target
    if req.method == "CONNECT" or target == "*":
        return host or (target if req.method == "CONNECT" else None), target
    authority = host or default_host
    if not target.startswith("/"):
        return host, target
    return host, (f"{scheme}://{authority}{target}" if authority else target)
