"""HTTP/2 observed from the wire: both directions of one connection.

Sans-I/O, in the style of h2: feed each direction's bytes in stream order
with ``receive(direction, data, frame, ts)``; each call returns the events it
completed (``HTTP2Connection.events`` keeps them all).  ``exchanges`` turns
the events into one row per stream for the ``requests`` table.

Frames are parsed by hyperframe and header blocks decoded by hpack, one
decoder per direction (HPACK state is per direction).  What is hand-written
is only what an observer needs and an endpoint library does not give: both
directions at once, frame numbers and times per frame, the connection
preface, CONTINUATION assembly, and going on (or stopping one direction
cleanly) after damaged, hostile or missing bytes.  h2's ``H2Connection``
plays one endpoint and raises on the first protocol error, so it is used
only in the tests, to produce real conversations.

Memory is bounded: at most one frame (no longer than the receiver's
SETTINGS_MAX_FRAME_SIZE) and one header block (``MAX_HEADER_BLOCK``) are
buffered per direction; DATA payloads are counted, not kept.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from dataclasses import dataclass, field

from hpack import Decoder as HPACKDecoder
from hpack.exceptions import HPACKError
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame,
                              PingFrame, PriorityFrame, PushPromiseFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

from traceviz.decode.http import carried
from traceviz.decode.http.hpack_census import Census, census

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
DEFAULT_MAX_FRAME = 16384
LARGEST_MAX_FRAME = (1 << 24) - 1
MAX_HEADER_BLOCK = 256 * 1024        # a HEADERS + CONTINUATION block (nghttp2 caps at 64 KiB of headers)
MAX_HEADER_LIST = 256 * 1024         # decoded header list size, against HPACK bombs
MAX_TABLE_SIZE = 1 << 20             # dynamic table a peer may announce before we call it absurd
MAX_WINDOW = (1 << 31) - 1

# RFC 9113 section 7, kept here so the decoder needs only hyperframe + hpack.
ERROR_CODES = {0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", 0x3: "FLOW_CONTROL_ERROR",
               0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED", 0x6: "FRAME_SIZE_ERROR",
               0x7: "REFUSED_STREAM", 0x8: "CANCEL", 0x9: "COMPRESSION_ERROR", 0xA: "CONNECT_ERROR",
               0xB: "ENHANCE_YOUR_CALM", 0xC: "INADEQUATE_SECURITY", 0xD: "HTTP_1_1_REQUIRED"}
# RFC 9113 section 6.5.2, RFC 8441 and RFC 9218.
SETTING_NAMES = {0x1: "HEADER_TABLE_SIZE", 0x2: "ENABLE_PUSH", 0x3: "MAX_CONCURRENT_STREAMS",
                 0x4: "INITIAL_WINDOW_SIZE", 0x5: "MAX_FRAME_SIZE", 0x6: "MAX_HEADER_LIST_SIZE",
                 0x8: "ENABLE_CONNECT_PROTOCOL", 0x9: "NO_RFC7540_PRIORITIES"}

C2S, S2C = "c2s", "s2c"
_OTHER = {C2S: S2C, S2C: C2S}

Headers = tuple  # tuple[tuple[str, str], ...], names lower-case as HPACK carries them, latin-1 decoded


def error_name(code: int) -> str:
    return ERROR_CODES.get(code, f"UNKNOWN_0x{code:x}")


def setting_name(code: int) -> str:
    return SETTING_NAMES.get(code, f"UNKNOWN_0x{code:x}")


# --- events -------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    direction: str
    frame: int            # frame holding the HTTP/2 frame's last byte (where Wireshark shows it)
    ts: float
    stream: int = 0


@dataclass(frozen=True)
class Preface(Event):
    pass


@dataclass(frozen=True)
class Settings(Event):
    settings: tuple = ()          # ((name, value), ...) in the order sent
    ack: bool = False


@dataclass(frozen=True)
class HeadersReceived(Event):
    headers: Headers | None = None     # None: the block could not be decoded
    end_stream: bool = False
    first_frame: int = 0               # frame holding the HEADERS frame's first byte
    first_ts: float = 0.0
    size: int = 0                      # header block bytes (HEADERS + CONTINUATION payloads)
    priority: tuple | None = None      # (depends_on, weight, exclusive) when the PRIORITY flag is set
    chunk_end: int = 0                 # stream offset just past the bytes whose arrival completed the block
    census: Census | None = None       # how HPACK encoded it (None: not decoded)

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)


@dataclass(frozen=True)
class Upgraded(HeadersReceived):
    """Stream 1 of an h2c connection reached by HTTP/1.1 ``Upgrade: h2c``: the
    request was sent as HTTP/1.1, its response comes as HTTP/2."""

    body_bytes: int = 0


@dataclass(frozen=True)
class PushPromise(HeadersReceived):
    promised_stream: int = 0


@dataclass(frozen=True)
class DataReceived(Event):
    length: int = 0            # payload bytes, padding excluded
    flow_length: int = 0       # bytes counted against flow control (padding included)
    end_stream: bool = False
    first_frame: int = 0
    first_ts: float = 0.0
    missing: int = 0           # payload bytes lost in a capture gap (counted, not seen)
    chunk_end: int = 0         # stream offset just past the bytes whose arrival completed the frame


@dataclass(frozen=True)
class RstStream(Event):
    error_code: int = 0
    error: str = ""


@dataclass(frozen=True)
class GoAway(Event):
    last_stream: int = 0
    error_code: int = 0
    error: str = ""
    debug: bytes = b""


@dataclass(frozen=True)
class WindowUpdate(Event):
    increment: int = 0


@dataclass(frozen=True)
class Ping(Event):
    ack: bool = False
    opaque: bytes = b""


@dataclass(frozen=True)
class Priority(Event):
    depends_on: int = 0
    weight: int = 16
    exclusive: bool = False


@dataclass(frozen=True)
class OtherFrame(Event):
    """A frame type this decoder does not interpret (ALTSVC, ORIGIN, extensions)."""

    type: int = 0
    length: int = 0


@dataclass(frozen=True)
class ParseError(Event):
    message: str = ""


def _header(headers: Headers | None, name: str) -> str | None:
    for k, v in headers or ():
        if k == name:
            return v
    return None


# --- one direction ----------------------------------------------------------------------

_PREFACE, _FRAMES, _LOST = range(3)


class _Reader:
    """Frame boundaries, the header block being assembled and the HPACK
    decoder for one direction."""

    def __init__(self, conn: HTTP2Connection, direction: str, expect_preface: bool):
        self.conn, self.direction = conn, direction
        self.state = _PREFACE if expect_preface else _FRAMES
        self.buf = bytearray()
        self.pos = 0                  # start of the unparsed bytes in ``buf``
        self.offset = 0               # stream offset of ``buf[pos]``
        self.origins: deque = deque()  # (stream offset, frame, ts) of each chunk still in ``buf``
        self.hpack = HPACKDecoder(max_header_list_size=MAX_HEADER_LIST)
        self.hpack_ok = True
        self.block: dict | None = None  # a HEADERS/PUSH_PROMISE waiting for CONTINUATION
        self.missing = 0              # bytes of the current frame lost in a gap (DATA only)
        self.max_frame = DEFAULT_MAX_FRAME   # what the receiver accepts (its SETTINGS)
        self.last_frame, self.last_ts = 0, 0.0
        self.unparsed = 0

    @property
    def fed_end(self) -> int:
        """Stream offset just past the last byte fed: where the chunk (TCP piece or TLS record)
        that completes a frame ends, which ties frames to the transport's arrival times."""
        return self.offset + len(self.buf) - self.pos

    # -- bytes in --

    def feed(self, data: bytes, frame: int, ts: float) -> None:
        self.last_frame, self.last_ts = frame, ts
        if self.state == _LOST:
            self.unparsed += len(data)
            return
        self.origins.append((self.offset + len(self.buf) - self.pos, frame, ts))
        self.buf += data
        self._parse()
        self._compact()

    def _compact(self) -> None:
        if self.pos > 65536 or self.pos == len(self.buf):
            del self.buf[:self.pos]
            self.pos = 0

    def _origin(self, offset: int) -> tuple[int, float]:
        while len(self.origins) > 1 and self.origins[1][0] <= offset:
            self.origins.popleft()
        if not self.origins:
            return self.last_frame, self.last_ts
        _, frame, ts = self.origins[0]
        return frame, ts

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        self.offset += n
        return out

    def _parse(self) -> None:
        while self.state != _LOST:
            avail = len(self.buf) - self.pos
            if self.state == _PREFACE:
                n = min(avail, len(PREFACE))
                if bytes(self.buf[self.pos:self.pos + n]) != PREFACE[:n]:
                    self.conn._error(self, "the client did not start with the HTTP/2 connection preface")
                    self.lose()
                    return
                if n < len(PREFACE):
                    return
                frame, ts = self._origin(self.offset + len(PREFACE) - 1)
                self._take(len(PREFACE))
                self.state = _FRAMES
                self.conn._emit(Preface(self.direction, frame, ts))
                continue
            if avail < FRAME_HEADER:
                return
            header = bytes(self.buf[self.pos:self.pos + FRAME_HEADER])
            length = int.from_bytes(header[:3], "big")
            if length > self.max_frame:
                self.conn._error(self, f"frame of {length} bytes (type {header[3]}) exceeds the peer's "
                                       f"maximum frame size {self.max_frame}")
                self.lose()
                return
            if avail < FRAME_HEADER + length:
                return
            first = self._origin(self.offset)
            frame, ts = self._origin(self.offset + FRAME_HEADER + length - 1)
            self._take(FRAME_HEADER)
            body = self._take(length)
            missing, self.missing = self.missing, 0
            self._frame(header, body, first, frame, ts, missing)

    # -- one frame --

    def _frame(self, header: bytes, body: bytes, first, frame: int, ts: float, missing: int) -> None:
        try:
            f, _ = Frame.parse_frame_header(memoryview(header), strict=False)
            f.parse_body(memoryview(body))
        except (HyperframeError, ValueError) as e:
            # The length was sane, so the next frame's boundary is still known: only this frame is lost.
            self.conn._error(self, f"malformed frame (type {header[3]}): {e}", frame, ts)
            if header[3] in (0x1, 0x5, 0x9):      # its header block is lost, and with it HPACK state
                self._hpack_lost("a header block could not be read")
            return
        if self.block is not None and not isinstance(f, ContinuationFrame):
            self.conn._error(self, f"{type(f).__name__} while a header block awaited CONTINUATION", frame, ts)
            self.block = None
            self._hpack_lost("a header block was cut short")
        self.conn._frame(self, f, len(body), first, frame, ts, missing)

    def header_block(self, kind: type, fragment: bytes, end_headers: bool, frame: int, ts: float, **fields):
        """Start a header block (HEADERS or PUSH_PROMISE)."""
        self.block = {"kind": kind, "data": bytearray(fragment), "fields": fields}
        if end_headers:
            self._finish_block(frame, ts)

    def continuation(self, f: ContinuationFrame, frame: int, ts: float) -> None:
        if self.block is None or self.block["fields"]["stream"] != f.stream_id:
            self.conn._error(self, f"CONTINUATION on stream {f.stream_id} without a header block to continue",
                             frame, ts)
            self.block = None
            self._hpack_lost("an orphan CONTINUATION frame")
            return
        self.block["data"] += f.data
        if len(self.block["data"]) > MAX_HEADER_BLOCK:
            self.conn._error(self, f"header block longer than {MAX_HEADER_BLOCK} bytes", frame, ts)
            self.block = None
            self._hpack_lost("an oversized header block")
            return
        if "END_HEADERS" in f.flags:
            self._finish_block(frame, ts)

    def _finish_block(self, frame: int, ts: float) -> None:
        block, self.block = self.block, None
        data = bytes(block["data"])
        headers = self._decode(data, frame, ts)
        self.conn._emit(block["kind"](self.direction, frame, ts, headers=headers, size=len(data),
                                      chunk_end=self.fed_end, census=None if headers is None else census(data),
                                      **block["fields"]))

    def _decode(self, data: bytes, frame: int, ts: float) -> Headers | None:
        if not self.hpack_ok:
            return None
        try:
            pairs = self.hpack.decode(data, raw=True)
        except (HPACKError, ValueError, IndexError, TypeError) as e:
            self.conn._error(self, f"HPACK could not decode a header block ({type(e).__name__}: {e})", frame, ts)
            self._hpack_lost("an undecodable header block")
            return None
        return tuple((bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in pairs)

    def _hpack_lost(self, why: str) -> None:
        if self.hpack_ok:
            self.hpack_ok = False
            self.conn._error(self, f"HPACK state lost ({why}): later header blocks in this direction "
                                   "are not decoded")

    # -- the end, gaps --

    def lose(self) -> None:
        self.state = _LOST
        self.unparsed += len(self.buf) - self.pos
        self.buf = bytearray()
        self.pos = 0
        self.origins.clear()
        self.block = None

    def gap(self, n: int | None) -> None:
        """``n`` bytes missing (None: an unknown amount, e.g. TLS records that could not be opened)."""
        if self.state == _LOST or (n is not None and n <= 0):
            self.unparsed += max(n or 0, 0)
            return
        if n is not None and self._gap_inside_data(n):
            return
        amount = f"{n} bytes" if n is not None else "bytes"
        self.conn._error(self, f"{amount} missing from the stream; HTTP/2 framing and HPACK state are lost, "
                               "so this direction is not decoded further")
        self.lose()

    def _gap_inside_data(self, n: int) -> bool:
        """A gap wholly inside a DATA frame's payload loses only payload bytes:
        the frame's length still says where the next frame starts."""
        avail = len(self.buf) - self.pos
        if self.state != _FRAMES or avail < FRAME_HEADER or self.block is not None:
            return False
        header = self.buf[self.pos:self.pos + FRAME_HEADER]
        length = int.from_bytes(header[:3], "big")
        padded = bool(header[4] & 0x8)
        body_have = avail - FRAME_HEADER
        if header[3] != 0x0 or length > self.max_frame or (padded and body_have < 1):
            return False
        pad = self.buf[self.pos + FRAME_HEADER] if padded else 0
        payload_end = length - pad          # the gap must end before the padding starts
        if body_have + n > payload_end:
            return False
        # Zeros stand in for the lost payload so hyperframe can frame it; it is counted as missing.
        self.origins.append((self.offset + avail, self.last_frame, self.last_ts))
        self.buf += bytes(n)
        self.missing += n
        self.conn._error(self, f"{n} bytes of DATA payload missing from the capture (stream "
                               f"{int.from_bytes(header[5:9], 'big') & 0x7FFFFFFF}); framing kept")
        self._parse()
        return True

    def eof(self) -> None:
        if self.state == _LOST:
            return
        left = len(self.buf) - self.pos
        if left:
            self.conn._error(self, f"stream ended inside a frame ({left} bytes unparsed)")
        if self.block is not None:
            self.conn._error(self, "stream ended inside a header block")
        self.lose()


# --- the connection --------------------------------------------------------------------

class HTTP2Connection:
    """Both directions of one HTTP/2 connection, observed.

    The client's bytes start with the connection preface, the server's with
    its SETTINGS.  A connection that began as HTTP/1.1 and switched with
    ``Upgrade: h2c``: call ``upgrade_request`` with the HTTP/1.1 request, then
    feed the client's bytes from its preface and the server's from just after
    the 101 response (``UpgradeDecoder`` does this).
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._new: list[Event] = []
        self._readers = {C2S: _Reader(self, C2S, True), S2C: _Reader(self, S2C, False)}
        self.errors = 0
        self.frames = 0
        self.carried: dict[int, object] = {}   # stream -> the machine its DATA goes to (decode/http/carried.py)

    def receive(self, direction: str, data: bytes, frame: int, ts: float) -> list[Event]:
        """Bytes of one direction, in stream order; returns the events they completed."""
        reader = self._readers.get(direction)
        if reader is not None and data:
            reader.feed(bytes(data), int(frame), float(ts))
        return self._take()

    def receive_gap(self, direction: str, nbytes: int | None) -> list[Event]:
        """``nbytes`` of this direction were not captured (None: how many is unknown)."""
        reader = self._readers.get(direction)
        if reader is not None:
            reader.gap(None if nbytes is None else int(nbytes))
        return self._take()

    def end_of_stream(self, direction: str) -> list[Event]:
        reader = self._readers.get(direction)
        if reader is not None:
            reader.eof()
        return self._take()

    def upgrade_request(self, method: str, target: str, authority: str | None, frame: int, ts: float,
                        headers: Headers = (), settings_header: str | None = None,
                        body_bytes: int = 0, scheme: str = "http") -> list[Event]:
        """The HTTP/1.1 request that asked for ``Upgrade: h2c``: it is stream 1
        (RFC 7540 3.2), half-closed by the client."""
        pseudo = ((":method", method), (":scheme", scheme), (":authority", authority or ""), (":path", target))
        regular = tuple((k.lower(), v) for k, v in headers if k.lower() != "host")
        self._emit(Upgraded(C2S, frame, ts, 1, headers=pseudo + regular, end_stream=True,
                            first_frame=frame, first_ts=ts, body_bytes=body_bytes))
        if settings_header:
            self._client_settings_header(settings_header, frame, ts)
        return self._take()

    def _client_settings_header(self, value: str, frame: int, ts: float) -> None:
        """HTTP2-Settings: the client's SETTINGS payload, base64url (RFC 7540 3.2.1)."""
        reader = self._readers[C2S]
        try:
            raw = base64.urlsafe_b64decode(value.strip() + "=" * (-len(value.strip()) % 4))
            f = SettingsFrame(0)
            f.parse_body(memoryview(raw))
        except (binascii.Error, HyperframeError, ValueError) as e:
            self._error(reader, f"bad HTTP2-Settings header: {e}", frame, ts)
            return
        # Applied, but no SETTINGS event: no SETTINGS frame crossed the wire.
        self._settings(reader, f, frame, ts, emit=False)

    @property
    def unparsed_bytes(self) -> dict[str, int]:
        return {d: r.unparsed for d, r in self._readers.items()}

    # -- internals --

    def _take(self) -> list[Event]:
        new, self._new = self._new, []
        return new

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        self._new.append(event)
        if isinstance(event, HeadersReceived) and event.direction == C2S and event.stream not in self.carried:
            machine = carried.machine_for(event.headers)
            if machine is not None:
                self.carried[event.stream] = machine
        if getattr(event, "end_stream", False) and event.stream in self.carried:
            self.carried[event.stream].end_of_stream(event.direction)

    def _error(self, reader: _Reader, message: str, frame: int | None = None, ts: float | None = None) -> None:
        self.errors += 1
        self._emit(ParseError(reader.direction, reader.last_frame if frame is None else frame,
                              reader.last_ts if ts is None else ts, 0, message=message))

    def _frame(self, reader: _Reader, f, length: int, first, frame: int, ts: float, missing: int) -> None:
        self.frames += 1
        d, sid = reader.direction, f.stream_id
        if isinstance(f, DataFrame):
            inner = self.carried.get(sid)
            if inner is not None and missing:
                inner.receive_gap(d, None)         # where in the frame the hole was is not known
            elif inner is not None:
                inner.receive(d, bytes(f.data), frame, ts)
            self._emit(DataReceived(d, frame, ts, sid, length=len(f.data), flow_length=f.flow_controlled_length,
                                    end_stream="END_STREAM" in f.flags, first_frame=first[0], first_ts=first[1],
                                    missing=missing, chunk_end=reader.fed_end))
        elif isinstance(f, HeadersFrame):
            prio = (f.depends_on, f.stream_weight + 1, bool(f.exclusive)) if "PRIORITY" in f.flags else None
            reader.header_block(HeadersReceived, f.data, "END_HEADERS" in f.flags, frame, ts, stream=sid,
                                end_stream="END_STREAM" in f.flags, first_frame=first[0], first_ts=first[1],
                                priority=prio)
        elif isinstance(f, PushPromiseFrame):
            reader.header_block(PushPromise, f.data, "END_HEADERS" in f.flags, frame, ts, stream=sid,
                                promised_stream=f.promised_stream_id, first_frame=first[0], first_ts=first[1])
        elif isinstance(f, ContinuationFrame):
            reader.continuation(f, frame, ts)
        elif isinstance(f, SettingsFrame):
            self._settings(reader, f, frame, ts)
        elif isinstance(f, RstStreamFrame):
            self._emit(RstStream(d, frame, ts, sid, error_code=f.error_code, error=error_name(f.error_code)))
        elif isinstance(f, GoAwayFrame):
            self._emit(GoAway(d, frame, ts, 0, last_stream=f.last_stream_id, error_code=f.error_code,
                              error=error_name(f.error_code), debug=bytes(f.additional_data[:256])))
        elif isinstance(f, WindowUpdateFrame):
            self._emit(WindowUpdate(d, frame, ts, sid, increment=f.window_increment))
        elif isinstance(f, PingFrame):
            self._emit(Ping(d, frame, ts, 0, ack="ACK" in f.flags, opaque=bytes(f.opaque_data)))
        elif isinstance(f, PriorityFrame):
            self._emit(Priority(d, frame, ts, sid, depends_on=f.depends_on, weight=f.stream_weight + 1,
                                exclusive=bool(f.exclusive)))
        else:                                       # ALTSVC, extension frames
            ftype = getattr(f, "type", None)
            self._emit(OtherFrame(d, frame, ts, sid, type=ftype if isinstance(ftype, int) else 0, length=length))

    def _settings(self, reader: _Reader, f: SettingsFrame, frame: int, ts: float, emit: bool = True) -> None:
        peer = self._readers[_OTHER[reader.direction]]
        for code, value in f.settings.items():
            if code == SettingsFrame.MAX_FRAME_SIZE:
                if DEFAULT_MAX_FRAME <= value <= LARGEST_MAX_FRAME:
                    peer.max_frame = value          # what the sender of these settings accepts
                else:
                    self._error(reader, f"SETTINGS_MAX_FRAME_SIZE {value} out of range", frame, ts)
            elif code == SettingsFrame.HEADER_TABLE_SIZE:
                if value > MAX_TABLE_SIZE:
                    self._error(reader, f"SETTINGS_HEADER_TABLE_SIZE {value} is absurd; "
                                        f"capped at {MAX_TABLE_SIZE}", frame, ts)
                # The peer's encoder may now use up to this much table (bounded either way).
                peer.hpack.max_allowed_table_size = max(peer.hpack.max_allowed_table_size,
                                                        min(value, MAX_TABLE_SIZE))
            elif code == SettingsFrame.ENABLE_PUSH and value > 1:
                self._error(reader, f"SETTINGS_ENABLE_PUSH {value} out of range", frame, ts)
            elif code == SettingsFrame.INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
                self._error(reader, f"SETTINGS_INITIAL_WINDOW_SIZE {value} out of range", frame, ts)
        if not emit:
            return
        pairs = tuple((setting_name(k), v) for k, v in f.settings.items())
        self._emit(Settings(reader.direction, frame, ts, 0, settings=pairs, ack="ACK" in f.flags))


# --- exchanges --------------------------------------------------------------------------

@dataclass
class Exchange:
    """One HTTP/2 stream: a request and its response, as far as the capture shows them."""

    stream: int
    method: str | None = None
    scheme: str | None = None
    host: str | None = None
    path: str | None = None
    url: str | None = None
    status: int | None = None
    interim: list[int] = field(default_factory=list)   # 1xx statuses before the final one
    start: float | None = None            # first byte of the request's HEADERS frame
    request_sent: float | None = None     # the request's END_STREAM
    response_start: float | None = None   # first byte of the final response's HEADERS frame
    ttfb: float | None = None
    end: float | None = None              # the response's END_STREAM, or a RST_STREAM
    req_bytes: int | None = None          # DATA payload
    resp_bytes: int | None = None         # DATA payload
    req_header_bytes: int = 0             # HPACK-compressed header block bytes
    resp_header_bytes: int = 0
    request_frame: int | None = None
    response_frame: int | None = None
    end_frame: int | None = None
    reset: str | None = None              # RST_STREAM error name
    reset_by: str | None = None           # client or server
    pushed: bool = False
    upgraded: bool = False                # stream 1 of an HTTP/1.1 Upgrade: h2c
    complete: bool = False                # both ends' END_STREAM seen
    request_ended: bool = field(default=False, repr=False)

    def as_row(self) -> dict:
        """The ``requests`` table columns this decoder knows (as ``http1.Exchange.as_row``)."""
        return {"protocol": "h2", "stream": self.stream, "method": self.method, "host": self.host,
                "url": self.url, "status": self.status, "start": self.start, "ttfb": self.ttfb,
                "end": self.end, "req_bytes": self.req_bytes, "resp_bytes": self.resp_bytes}


def exchanges(events, default_host: str | None = None, scheme: str | None = None) -> list[Exchange]:
    """One ``Exchange`` per stream that carried a request or a response, in
    order of the stream's first frame.

    ``default_host`` (the TLS SNI, or the server's address) completes the URL
    when a request has no ``:authority``; ``scheme`` is used when it has no
    ``:scheme`` (never for a valid request)."""
    streams: dict[int, Exchange] = {}

    def get(sid: int) -> Exchange:
        ex = streams.get(sid)
        if ex is None:
            ex = streams[sid] = Exchange(stream=sid)
        return ex

    for ev in events:
        if isinstance(ev, PushPromise):
            if ev.direction == S2C and ev.promised_stream:
                ex = get(ev.promised_stream)
                ex.pushed = True
                _request_headers(ex, ev, default_host, scheme)
                ex.request_ended = True
        elif isinstance(ev, HeadersReceived) and ev.stream:
            ex = get(ev.stream)
            if ev.direction == C2S:
                if ex.method is None and ex.start is None:
                    _request_headers(ex, ev, default_host, scheme)
                    ex.upgraded = isinstance(ev, Upgraded)
                    if isinstance(ev, Upgraded):
                        ex.req_bytes = ev.body_bytes
                else:
                    ex.req_header_bytes += ev.size          # trailers
                if ev.end_stream:
                    ex.request_ended, ex.request_sent = True, ev.ts
            else:
                _response_headers(ex, ev)
        elif isinstance(ev, DataReceived) and ev.stream:
            ex = get(ev.stream)
            if ev.direction == C2S:
                ex.req_bytes = (ex.req_bytes or 0) + ev.length
                if ev.end_stream:
                    ex.request_ended, ex.request_sent = True, ev.ts
            else:
                ex.resp_bytes = (ex.resp_bytes or 0) + ev.length
                if ev.end_stream:
                    ex.end, ex.end_frame = ev.ts, ev.frame
        elif isinstance(ev, RstStream) and ev.stream:
            ex = get(ev.stream)
            if ex.reset is None:
                ex.reset, ex.reset_by = ev.error, ("client" if ev.direction == C2S else "server")
            if ex.end is None:
                ex.end, ex.end_frame = ev.ts, ev.frame
    out = [ex for ex in streams.values() if ex.start is not None or ex.status is not None]
    for ex in out:
        if ex.start is not None and ex.req_bytes is None:
            ex.req_bytes = 0
        if ex.status is not None and ex.resp_bytes is None:
            ex.resp_bytes = 0
        ex.complete = ex.request_ended and ex.end is not None and ex.reset is None
    out.sort(key=lambda e: (e.start if e.start is not None else float("inf"), e.stream))
    return out


def _request_headers(ex: Exchange, ev: HeadersReceived, default_host: str | None, scheme: str | None) -> None:
    ex.start = ev.first_ts if ev.first_frame else ev.ts
    ex.request_frame = ev.first_frame or ev.frame
    ex.req_header_bytes += ev.size
    if ev.headers is None:
        return
    ex.method = ev.header(":method")
    ex.scheme = ev.header(":scheme") or scheme
    authority = ev.header(":authority") or ev.header("host")
    ex.host = authority or None
    ex.path = ev.header(":path")
    if ex.method == "CONNECT" and ex.path is None:
        ex.url = authority
        return
    where = authority or default_host
    if ex.path is not None and where and ex.scheme:
        ex.url = f"{ex.scheme}://{where}{ex.path}" if ex.path.startswith("/") else ex.path
    else:
        ex.url = ex.path


def _response_headers(ex: Exchange, ev: HeadersReceived) -> None:
    ex.resp_header_bytes += ev.size
    status = ev.header(":status")
    code = int(status) if status is not None and status.isascii() and status.isdigit() and len(status) == 3 else None
    if code is not None and 100 <= code < 200:
        ex.interim.append(code)
    elif code is not None and ex.status is None:
        ex.status = code
        ex.response_start = ev.first_ts if ev.first_frame else ev.ts
        ex.response_frame = ev.first_frame or ev.frame
        if ex.start is not None:
            ex.ttfb = ex.response_start - ex.start
    if ev.end_stream:
        ex.end, ex.end_frame = ev.ts, ev.frame
