"""gRPC inside an HTTP/2 stream: length-prefixed messages, and a schema-less protobuf dump.

A gRPC call is one HTTP/2 stream (``:path`` = ``/package.Service/Method``,
``content-type: application/grpc``); each message in its DATA is a 5-byte
prefix (a compressed flag, a 4-byte big-endian length) and the message.
``GRPCStream`` is fed the stream's DATA payloads in order, both directions
(``HTTP2Connection`` does it, see ``decode/http/carried.py``), and emits a
:class:`GRPCMessage` per message; the call's status (``grpc-status``,
``grpc-message``) is in the trailers, which the HTTP/2 machine decodes.

``protobuf_fields`` lists a message's fields without its schema -- the
field numbers, wire types and values a reader can see -- the way
``protoc --decode_raw`` does.  Hand-written: the wire format is five cases,
and a library decoder needs the schema.

Memory is bounded: a message's first ``KEEP_BYTES`` are kept for the dump,
the rest counted.
"""

from __future__ import annotations

from dataclasses import dataclass

C2S, S2C = "c2s", "s2c"
PREFIX = 5
KEEP_BYTES = 512
MAX_FIELDS = 32
MAX_DEPTH = 3

STATUS_CODES = {0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED",
                5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
                9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
                13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED"}


def status_number(code) -> int | None:
    """A ``grpc-status`` value as its number; None unless it is ASCII digits (HPACK values are
    latin-1, and ``"\xb2".isdigit()`` is true but ``int("\xb2")`` raises)."""
    if isinstance(code, int):
        return code
    if not isinstance(code, str) or not code.isascii() or not code.isdigit():
        return None
    return int(code)


def status_name(code) -> str | None:
    n = status_number(code)
    return None if n is None else STATUS_CODES.get(n, f"CODE_{n}")


def split_path(path: str | None) -> tuple[str | None, str | None]:
    """``/package.Service/Method`` -> (``package.Service``, ``Method``)."""
    if not path or not path.startswith("/") or path.count("/") != 2:
        return None, None
    _, service, method = path.split("/")
    return service or None, method or None


@dataclass(frozen=True)
class GRPCMessage:
    """One length-prefixed message. Fields: direction, frame (holding its last byte), ts, first_frame,
    first_ts, compressed, length (the message, prefix excluded), fields (``protobuf_fields`` of its
    first bytes; empty when compressed), complete (False: cut by a gap or the end of the stream)."""

    direction: str
    frame: int
    ts: float
    first_frame: int
    first_ts: float
    compressed: bool
    length: int
    fields: tuple = ()
    complete: bool = True


@dataclass(frozen=True)
class GRPCError:
    """The stream's DATA broke gRPC framing. Fields: direction, frame, ts, message."""

    direction: str
    frame: int | None
    ts: float
    message: str


class _Reader:
    def __init__(self, machine: GRPCStream, direction: str):
        self.machine, self.direction = machine, direction
        self.head = bytearray()
        self.need: int | None = None
        self.body = bytearray()
        self.start = (0, 0.0)
        self.lost = False

    def feed(self, data: bytes, frame: int, ts: float) -> None:
        view = memoryview(data)
        while view and not self.lost:
            if self.need is None:
                if not self.head:
                    self.start = (frame, ts)
                take = PREFIX - len(self.head)
                self.head += view[:take]
                view = view[take:]
                if len(self.head) < PREFIX:
                    return
                if self.head[0] > 1:
                    self.machine._error(self.direction, frame, ts, f"compressed flag {self.head[0]} is not 0 or 1")
                self.need = int.from_bytes(self.head[1:5], "big")
                self.body.clear()
                if self.need == 0:
                    self._emit(frame, ts)
                continue
            take = min(self.need, len(view))
            room = KEEP_BYTES - len(self.body)
            if room > 0:
                self.body += view[:min(take, room)]
            self.need -= take
            view = view[take:]
            if self.need == 0:
                self._emit(frame, ts)

    def _emit(self, frame: int, ts: float, complete: bool = True) -> None:
        compressed = bool(self.head[0] & 1)
        length = int.from_bytes(self.head[1:5], "big")
        fields = () if compressed or not complete else protobuf_fields(bytes(self.body))
        self.machine._emit(GRPCMessage(self.direction, frame, ts, self.start[0], self.start[1], compressed, length,
                                       fields, complete))
        self.head.clear()
        self.body.clear()
        self.need = None

    def end(self, frame: int | None, ts: float) -> None:
        if self.lost:
            return
        if self.need is not None:
            self._emit(frame or self.start[0], ts, complete=False)
        elif self.head:
            self.machine._error(self.direction, frame, ts, "the stream ended inside a message prefix")
        self.lost = True


class GRPCStream:
    """The DATA of one gRPC call (one HTTP/2 stream), both directions."""

    def __init__(self) -> None:
        self.events: list = []
        self._readers = {C2S: _Reader(self, C2S), S2C: _Reader(self, S2C)}
        self._last = {C2S: (None, 0.0), S2C: (None, 0.0)}

    def receive(self, direction: str, data: bytes, frame: int, ts: float) -> None:
        reader = self._readers.get(direction)
        if reader is not None and data:
            self._last[direction] = (frame, ts)
            reader.feed(bytes(data), frame, ts)

    def receive_gap(self, direction: str, nbytes: int | None) -> None:
        reader = self._readers.get(direction)
        if reader is not None and not reader.lost:
            reader.end(*self._last[direction])
            self._error(direction, self._last[direction][0], self._last[direction][1],
                        "bytes missing from the capture: the rest of this direction is not framed")

    def end_of_stream(self, direction: str) -> None:
        reader = self._readers.get(direction)
        if reader is not None:
            reader.end(*self._last[direction])

    def _emit(self, ev) -> None:
        self.events.append(ev)

    def _error(self, direction: str, frame, ts: float, message: str) -> None:
        self.events.append(GRPCError(direction, frame, ts, message))


# --- protobuf without a schema -----------------------------------------------------------

def protobuf_fields(data: bytes, depth: int = 0) -> tuple:
    """(field number, wire type, value) of each field, as far as ``data`` parses as protobuf.

    Values: an int (varint, fixed32, fixed64), text (a length-delimited field that is
    printable UTF-8), a tuple of fields (one that parses whole as a message), else bytes.
    An empty tuple when ``data`` is not a valid message.
    """
    out, i = [], 0
    try:
        while i < len(data) and len(out) < MAX_FIELDS:
            key, i = _varint(data, i)
            number, wire = key >> 3, key & 7
            if number == 0:
                return ()
            if wire == 0:
                value, i = _varint(data, i)
                out.append((number, "varint", value))
            elif wire == 1:
                if i + 8 > len(data):
                    return ()
                out.append((number, "fixed64", int.from_bytes(data[i:i + 8], "little")))
                i += 8
            elif wire == 5:
                if i + 4 > len(data):
                    return ()
                out.append((number, "fixed32", int.from_bytes(data[i:i + 4], "little")))
                i += 4
            elif wire == 2:
                n, i = _varint(data, i)
                if i + n > len(data):
                    return ()
                out.append((number, "bytes", _delimited(data[i:i + n], depth)))
                i += n
            else:
                return ()
    except IndexError:
        return ()
    return tuple(out)


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


def _delimited(chunk: bytes, depth: int):
    try:
        text = chunk.decode("utf-8")
        if text.isprintable():
            return text
    except UnicodeDecodeError:
        pass
    if depth < MAX_DEPTH and chunk:
        inner = protobuf_fields(chunk, depth + 1)
        if inner:
            return inner
    return bytes(chunk[:64])


def describe_fields(fields: tuple) -> str:
    """``1: 4, 2: "gear", 3: 1200`` -- a dump a person reads."""
    parts = []
    for number, _, value in fields:
        if isinstance(value, tuple):
            parts.append(f"{number}: {{{describe_fields(value)}}}")
        elif isinstance(value, str):
            parts.append(f'{number}: "{value}"')
        elif isinstance(value, bytes):
            parts.append(f"{number}: <{len(value)} bytes>")
        else:
            parts.append(f"{number}: {value}")
    return ", ".join(parts)
