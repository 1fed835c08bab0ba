"""HTTP/3 observed from the wire (RFC 9114, QPACK RFC 9204): both directions of one QUIC connection.

Sans-I/O like ``http2``: the QUIC machine feeds each stream's bytes in
order, ``receive(direction, stream_id, data, frame, ts, fin)``, and this
returns the events they completed (``H3Connection.events`` keeps them all).
Request streams carry HEADERS and DATA frames; unidirectional streams open
with their type (control, push, QPACK encoder or decoder).  ``exchanges``
gives one row per request stream: the events are ``http2``'s
``HeadersReceived`` and ``DataReceived`` (HTTP/3's HEADERS and DATA mean the
same for an exchange), so ``http2.exchanges`` serves both versions.

Header blocks are decoded by pylsqpack, one decoder per direction, each
sized by the SETTINGS of the side that decodes it (the peer's
``QPACK_MAX_TABLE_CAPACITY`` is part of the wire encoding).  Blocks that
reference the dynamic table wait for those SETTINGS and for the encoder
stream instructions they depend on, then are decoded in place: the event
keeps the frame and time the block arrived in.  aioquic's ``H3Connection``
plays one endpoint (it answers, raises on the first error, and sees one
side's encoder); an observer needs both sides and must go on past errors,
so the frame reading here is written by hand.  DATA payloads are counted,
not kept; other frames are held whole up to ``MAX_FRAME`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pylsqpack

from traceviz.decode.http import http2

C2S, S2C = "c2s", "s2c"
_OTHER = {C2S: S2C, S2C: C2S}
MAX_FRAME = 1 << 20
DATA, HEADERS, CANCEL_PUSH, SETTINGS, PUSH_PROMISE, GOAWAY, MAX_PUSH_ID = 0x0, 0x1, 0x3, 0x4, 0x5, 0x7, 0xD
FRAME_NAMES = {0x0: "DATA", 0x1: "HEADERS", 0x2: "PRIORITY", 0x3: "CANCEL_PUSH", 0x4: "SETTINGS",
               0x5: "PUSH_PROMISE", 0x7: "GOAWAY", 0xD: "MAX_PUSH_ID", 0xE: "DUPLICATE_PUSH",
               0xF0700: "PRIORITY_UPDATE", 0xF0701: "PRIORITY_UPDATE"}
STREAM_TYPES = {0x0: "control", 0x1: "push", 0x2: "qpack-encoder", 0x3: "qpack-decoder", 0x54: "webtransport"}
SETTING_NAMES = {0x1: "QPACK_MAX_TABLE_CAPACITY", 0x6: "MAX_FIELD_SECTION_SIZE", 0x7: "QPACK_BLOCKED_STREAMS",
                 0x8: "ENABLE_CONNECT_PROTOCOL", 0x33: "H3_DATAGRAM", 0xFFD277: "H3_DATAGRAM (draft)"}
ERROR_CODES = {0x100: "H3_NO_ERROR", 0x101: "H3_GENERAL_PROTOCOL_ERROR", 0x102: "H3_INTERNAL_ERROR",
               0x103: "H3_STREAM_CREATION_ERROR", 0x104: "H3_CLOSED_CRITICAL_STREAM",
               0x105: "H3_FRAME_UNEXPECTED", 0x106: "H3_FRAME_ERROR", 0x107: "H3_EXCESSIVE_LOAD",
               0x108: "H3_ID_ERROR", 0x109: "H3_SETTINGS_ERROR", 0x10A: "H3_MISSING_SETTINGS",
               0x10B: "H3_REQUEST_REJECTED", 0x10C: "H3_REQUEST_CANCELLED", 0x10D: "H3_REQUEST_INCOMPLETE",
               0x10E: "H3_MESSAGE_ERROR", 0x10F: "H3_CONNECT_ERROR", 0x110: "H3_VERSION_FALLBACK",
               0x200: "QPACK_DECOMPRESSION_FAILED", 0x201: "QPACK_ENCODER_STREAM_ERROR",
               0x202: "QPACK_DECODER_STREAM_ERROR"}


def error_name(code: int) -> str:
    return ERROR_CODES.get(code, f"0x{code:x}")


def frame_name(ftype: int) -> str:
    if ftype >= 0x21 and (ftype - 0x21) % 0x1F == 0:
        return "reserved"
    return FRAME_NAMES.get(ftype, f"0x{ftype:x}")


# --- events (HEADERS and DATA are http2's, so one ``exchanges`` serves both) -----------------

@dataclass(frozen=True)
class HeadersReceived(http2.HeadersReceived):
    """An HTTP/3 HEADERS frame (fields as ``http2.HeadersReceived``; ``end_stream``: the QUIC
    stream ended with it)."""


@dataclass(frozen=True)
class DataReceived(http2.DataReceived):
    """An HTTP/3 DATA frame (fields as ``http2.DataReceived``)."""


@dataclass(frozen=True)
class StreamEnd(http2.DataReceived):
    """A stream's FIN that came after its last frame (``length`` 0, ``end_stream`` True)."""


@dataclass(frozen=True)
class StreamReset(http2.RstStream):
    """RESET_STREAM (or STOP_SENDING) on a request stream. Fields: error_code, error."""


@dataclass(frozen=True)
class StreamType(http2.Event):
    """A unidirectional stream announced its type. Fields: kind (control, push, qpack-encoder,
    qpack-decoder, or the number of a type we do not know)."""
    kind: str = ""


@dataclass(frozen=True)
class Settings(http2.Event):
    """SETTINGS on the control stream. Fields: settings ((name, value), ...)."""
    settings: tuple = ()


@dataclass(frozen=True)
class GoAway(http2.Event):
    """GOAWAY. Fields: last_id (a stream id from the server, a push id from the client)."""
    last_id: int = 0


@dataclass(frozen=True)
class OtherFrame(http2.Event):
    """A frame this decoder does not act on (MAX_PUSH_ID, CANCEL_PUSH, PUSH_PROMISE,
    PRIORITY_UPDATE, reserved types...). Fields: type, name, length."""
    type: int = 0
    name: str = ""
    length: int = 0


@dataclass(frozen=True)
class ParseError(http2.Event):
    """Why a stream (or a header block) could not be read further. Fields: message."""
    message: str = ""


# --- reading ---------------------------------------------------------------------------

def _varint(buf, pos: int) -> tuple[int, int] | None:
    """(value, next position) of the QUIC variable-length integer at ``pos``, None if incomplete.
    By hand: aioquic's Buffer raises where an observer of a partial stream must wait."""
    if pos >= len(buf):
        return None
    n = 1 << (buf[pos] >> 6)
    if pos + n > len(buf):
        return None
    value = buf[pos] & 0x3F
    for i in range(1, n):
        value = (value << 8) | buf[pos + i]
    return value, pos + n


class _Stream:
    """One direction of one QUIC stream: its type (unidirectional) and the frame being read."""

    def __init__(self, stream_id: int, direction: str):
        self.id, self.direction = stream_id, direction
        self.bidi = not stream_id & 0x2
        self.kind: str | None = "request" if self.bidi else None
        self.buf = bytearray()
        self.data_left = 0               # payload bytes of the DATA frame being counted
        self.data_len = 0
        self.data_first: tuple[int, float] | None = None
        self.frame_first: tuple[int, float] | None = None
        self.lost = False                # stop reading: framing lost or the stream is of no interest
        self.emitted: list[int] = []     # indices of events emitted by the current receive()


class H3Connection:
    def __init__(self) -> None:
        self.events: list = []
        self.settings: dict[str, dict | None] = {C2S: None, S2C: None}
        self._streams: dict[tuple[str, int], _Stream] = {}
        self._decoders: dict[str, pylsqpack.Decoder | None] = {C2S: None, S2C: None}
        self._waiting: dict[str, list] = {C2S: [], S2C: []}    # encoder bytes / header blocks before SETTINGS
        self._blocked: dict[tuple[str, int], tuple] = {}       # header blocks waiting for encoder instructions
        self._static = pylsqpack.Decoder(0, 0)
        self.qpack_failed: dict[str, str | None] = {C2S: None, S2C: None}
        self.encoder_bytes = {C2S: 0, S2C: 0}

    # -- input --

    def receive(self, direction: str, stream_id: int, data: bytes, frame: int, ts: float,
                fin: bool = False) -> list:
        before = len(self.events)
        s = self._stream(direction, stream_id)
        s.emitted = []
        if not s.lost and data:
            s.buf += data
            self._parse(s, frame, ts)
        if fin:
            self._fin(s, frame, ts)
        return self.events[before:]

    def receive_gap(self, direction: str, stream_id: int, nbytes: int) -> list:
        """Bytes of a stream the capture lost: a request stream's framing is lost with them."""
        s = self._stream(direction, stream_id)
        if s.lost:
            return []
        if s.data_left and nbytes <= s.data_left and not s.buf:
            s.data_left -= nbytes        # inside a DATA payload: counted as missing, framing kept
            return []
        s.lost = True
        if s.kind != "qpack-encoder":
            return [self._emit(ParseError(direction, 0, 0.0, stream_id, f"{nbytes} bytes missing: "
                                          f"stream {stream_id} not read further"))]
        self.qpack_failed[direction] = "encoder stream bytes missing"
        return []

    def reset(self, direction: str, stream_id: int, error_code: int, frame: int, ts: float) -> list:
        """RESET_STREAM from ``direction``: its side of the stream ends unfinished."""
        s = self._stream(direction, stream_id)
        s.lost = True
        if not s.bidi:
            return []
        return [self._emit(StreamReset(direction, frame, ts, stream_id, error_code, error_name(error_code)))]

    def close(self) -> list:
        """End of the capture: decode what still waits for SETTINGS with the defaults."""
        before = len(self.events)
        for d in (C2S, S2C):
            if self._decoders[d] is None and self._waiting[d]:
                self._start_decoder(d, {})
        for (d, sid), (_, index) in list(self._blocked.items()):
            self._error_at(d, sid, self.events[index], "header block still waiting for QPACK encoder "
                                                       "instructions the capture does not have")
        self._blocked.clear()
        return self.events[before:]

    # -- helpers --

    def _stream(self, direction: str, stream_id: int) -> _Stream:
        s = self._streams.get((direction, stream_id))
        if s is None:
            s = self._streams[(direction, stream_id)] = _Stream(stream_id, direction)
        return s

    def _emit(self, ev, stream: _Stream | None = None):
        self.events.append(ev)
        if stream is not None:
            stream.emitted.append(len(self.events) - 1)
        return ev

    def _fail(self, s: _Stream, frame: int, ts: float, message: str) -> None:
        s.lost = True
        s.buf.clear()
        self._emit(ParseError(s.direction, frame, ts, s.id, message), s)

    def _fin(self, s: _Stream, frame: int, ts: float) -> None:
        if not s.bidi or s.lost:
            return
        if s.buf or s.data_left:
            self._emit(ParseError(s.direction, frame, ts, s.id, "stream ended inside a frame"), s)
            return
        last = s.emitted[-1] if s.emitted else None
        ev = self.events[last] if last is not None else None
        if isinstance(ev, (http2.HeadersReceived, http2.DataReceived)) and not isinstance(ev, StreamEnd):
            self.events[last] = replace(ev, end_stream=True)
            return
        self._emit(StreamEnd(s.direction, frame, ts, s.id, end_stream=True, first_frame=frame, first_ts=ts), s)

    # -- frames --

    def _parse(self, s: _Stream, frame: int, ts: float) -> None:
        if s.kind is None and not self._stream_type(s, frame, ts):
            return
        if s.kind == "qpack-encoder":
            data, s.buf = bytes(s.buf), bytearray()
            self._encoder(s.direction, data, frame, ts)
            return
        if s.kind not in ("request", "control", "push"):
            s.buf.clear()               # QPACK decoder acknowledgements and unknown types: not read
            return
        while not s.lost:
            if s.data_left:
                take = min(s.data_left, len(s.buf))
                del s.buf[:take]
                s.data_left -= take
                if s.data_left:
                    return
                self._emit(DataReceived(s.direction, frame, ts, s.id, length=s.data_len, flow_length=s.data_len,
                                        first_frame=s.data_first[0], first_ts=s.data_first[1]), s)
                continue
            head = _varint(s.buf, 0)
            length = _varint(s.buf, head[1]) if head else None
            if length is None:
                if s.frame_first is None and s.buf:
                    s.frame_first = (frame, ts)
                return
            (ftype, _), (size, body_at) = head, length
            if s.frame_first is None:
                s.frame_first = (frame, ts)
            if ftype == DATA:
                del s.buf[:body_at]
                s.data_left, s.data_len, s.data_first = size, size, s.frame_first
                s.frame_first = None
                if size == 0:
                    self._emit(DataReceived(s.direction, frame, ts, s.id, first_frame=frame, first_ts=ts), s)
                continue
            if size > MAX_FRAME:
                self._fail(s, frame, ts, f"{frame_name(ftype)} frame of {size} bytes: too large to read")
                return
            if len(s.buf) < body_at + size:
                return
            body = bytes(s.buf[body_at:body_at + size])
            del s.buf[:body_at + size]
            first, s.frame_first = s.frame_first, None
            self._frame(s, ftype, body, first, frame, ts)

    def _stream_type(self, s: _Stream, frame: int, ts: float) -> bool:
        head = _varint(s.buf, 0)
        if head is None:
            return False
        kind, pos = head
        if kind == 0x1:                  # push stream: its push id follows
            push = _varint(s.buf, pos)
            if push is None:
                return False
            pos = push[1]
        s.kind = STREAM_TYPES.get(kind, f"0x{kind:x}")
        del s.buf[:pos]
        self._emit(StreamType(s.direction, frame, ts, s.id, kind=s.kind), s)
        return True

    def _frame(self, s: _Stream, ftype: int, body: bytes, first, frame: int, ts: float) -> None:
        if ftype == HEADERS and s.kind in ("request", "push"):
            self._headers(s, body, first, frame, ts)
        elif ftype == SETTINGS and s.kind == "control":
            self._settings(s, body, frame, ts)
        elif ftype == GOAWAY and s.kind == "control":
            got = _varint(body, 0)
            self._emit(GoAway(s.direction, frame, ts, s.id, last_id=got[0] if got else -1), s)
        else:
            self._emit(OtherFrame(s.direction, frame, ts, s.id, type=ftype, name=frame_name(ftype),
                                  length=len(body)), s)

    def _settings(self, s: _Stream, body: bytes, frame: int, ts: float) -> None:
        pairs, pos = [], 0
        while pos < len(body):
            k = _varint(body, pos)
            v = _varint(body, k[1]) if k else None
            if v is None:
                self._emit(ParseError(s.direction, frame, ts, s.id, "SETTINGS frame cut short"), s)
                break
            pairs.append((k[0], v[0]))
            pos = v[1]
        self._emit(Settings(s.direction, frame, ts, s.id,
                            settings=tuple((SETTING_NAMES.get(k, f"0x{k:x}"), v) for k, v in pairs)), s)
        if self.settings[s.direction] is None:
            self.settings[s.direction] = dict(pairs)
            # This side's SETTINGS size the decoder of what the other side sends.
            other = _OTHER[s.direction]
            if self._decoders[other] is None:
                self._start_decoder(other, dict(pairs))

    # -- QPACK --

    def _start_decoder(self, direction: str, peer_settings: dict) -> None:
        capacity = int(peer_settings.get(0x1, 0))
        blocked = max(int(peer_settings.get(0x7, 0)), 16)
        try:
            self._decoders[direction] = pylsqpack.Decoder(min(capacity, 1 << 30), min(blocked, 1 << 16))
        except Exception as e:          # noqa: BLE001 - absurd settings: headers stay undecoded
            self.qpack_failed[direction] = f"QPACK decoder: {type(e).__name__}"
            self._decoders[direction] = None
            self._waiting[direction] = []
            return
        waiting, self._waiting[direction] = self._waiting[direction], []
        for item in waiting:
            if item[0] == "encoder":
                self._encoder(direction, *item[1:])
            else:
                self._decode_block(direction, *item[1:])

    def _encoder(self, direction: str, data: bytes, frame: int, ts: float) -> None:
        self.encoder_bytes[direction] += len(data)
        decoder = self._decoders[direction]
        if decoder is None:
            if self.qpack_failed[direction] is None:
                self._waiting[direction].append(("encoder", data, frame, ts))
            return
        try:
            unblocked = decoder.feed_encoder(data)
        except Exception as e:          # noqa: BLE001 - EncoderStreamError: the dynamic table is lost
            self.qpack_failed[direction] = f"QPACK encoder stream: {type(e).__name__}"
            return
        for sid in unblocked:
            pending = self._blocked.pop((direction, sid), None)
            if pending is not None:
                self._resume(direction, sid, *pending)

    def _headers(self, s: _Stream, block: bytes, first, frame: int, ts: float) -> None:
        ev = HeadersReceived(s.direction, frame, ts, s.id, headers=None, first_frame=first[0],
                             first_ts=first[1], size=len(block))
        if block and block[0] == 0:      # Required Insert Count 0: static table only, decodable now
            self._emit(replace(ev, headers=self._decode_static(s.id, block)), s)
            return
        if self._decoders[s.direction] is None and self.qpack_failed[s.direction] is None:
            index = len(self.events)
            self._emit(ev, s)            # keeps its place; headers filled in when the decoder starts
            self._waiting[s.direction].append(("block", s.id, block, index))
            return
        index = len(self.events)
        self._emit(ev, s)
        self._decode_block(s.direction, s.id, block, index)

    def _decode_static(self, stream_id: int, block: bytes):
        try:
            _, headers = self._static.feed_header(stream_id, block)
        except Exception:              # noqa: BLE001
            return None
        return _text(headers)

    def _decode_block(self, direction: str, stream_id: int, block: bytes, index: int) -> None:
        decoder = self._decoders[direction]
        ev = self.events[index]
        if decoder is None:
            self._error_at(direction, stream_id, ev, self.qpack_failed[direction] or "no QPACK decoder")
            return
        try:
            _, headers = decoder.feed_header(stream_id, block)
        except pylsqpack.StreamBlocked:
            self._blocked[(direction, stream_id)] = (block, index)
            return
        except Exception as e:          # noqa: BLE001 - DecompressionFailed and hostile blocks
            self._error_at(direction, stream_id, ev, f"header block not decoded ({type(e).__name__})")
            return
        self.events[index] = replace(ev, headers=_text(headers))

    def _resume(self, direction: str, stream_id: int, block: bytes, index: int) -> None:
        ev = self.events[index]
        try:
            _, headers = self._decoders[direction].resume_header(stream_id)
        except Exception as e:          # noqa: BLE001
            self._error_at(direction, stream_id, ev, f"header block not decoded ({type(e).__name__})")
            return
        self.events[index] = replace(ev, headers=_text(headers))

    def _error_at(self, direction: str, stream_id: int, ev, message: str) -> None:
        self._emit(ParseError(direction, ev.frame, ev.ts, stream_id, message))


def _text(headers) -> tuple:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers)


def exchanges(events, default_host: str | None = None, scheme: str = "https") -> list:
    """One ``http2.Exchange`` per request stream (see ``http2.exchanges``), in order of start."""
    # http2.exchanges skips stream 0 (HTTP/2's connection stream), which is HTTP/3's first
    # request: it is handed the stream ids one up, and the exchanges get theirs back.
    shifted = [replace(ev, stream=ev.stream + 1) for ev in events
               if isinstance(ev, (http2.HeadersReceived, http2.DataReceived, http2.RstStream))]
    out = http2.exchanges(shifted, default_host=default_host, scheme=scheme)
    for ex in out:
        ex.stream -= 1
    return out
