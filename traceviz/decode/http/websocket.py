"""WebSocket frames observed from the wire: both directions of one connection (RFC 6455).

Sans-I/O like the HTTP machines: feed each direction's bytes in stream order
with ``receive(direction, data, frame, ts)`` -- the bytes after ``101
Switching Protocols`` (HTTP/1.1) or the DATA of an extended CONNECT stream
(HTTP/2, RFC 8441) -- and read ``events``: one :class:`WSFrame` per frame,
one :class:`WSMessage` per whole message, :class:`WSError` where the bytes
break the protocol.

Hand-written rather than ``wsproto`` or ``websockets``: those play one
endpoint (they refuse a masked frame from a server, a client's unmasked one,
and stop at the first error) and keep whole payloads; an observer reads both
directions, keeps going after a capture gap inside a payload, and needs only
the frame heads, the control frames' payloads and a short preview of the
data.  Memory is bounded: at most a frame head (14 bytes) and
``KEEP_BYTES`` of payload are buffered per direction.
"""

from __future__ import annotations

from dataclasses import dataclass

C2S, S2C = "c2s", "s2c"
KEEP_BYTES = 125          # control payloads are at most 125 bytes; data frames keep this much as a preview
MAX_LENGTH = 1 << 63      # a 64-bit length with the top bit set is a protocol error

OPCODES = {0x0: "continuation", 0x1: "text", 0x2: "binary", 0x8: "close", 0x9: "ping", 0xA: "pong"}
# RFC 6455 section 7.4.1 and the IANA registry.
CLOSE_CODES = {1000: "normal closure", 1001: "going away", 1002: "protocol error", 1003: "unsupported data",
               1005: "no status received", 1006: "abnormal closure", 1007: "invalid payload data",
               1008: "policy violation", 1009: "message too big", 1010: "mandatory extension",
               1011: "internal error", 1012: "service restart", 1013: "try again later", 1014: "bad gateway",
               1015: "TLS handshake failure"}


def opcode_name(op: int) -> str:
    return OPCODES.get(op, f"reserved-0x{op:x}")


def close_code_name(code: int | None) -> str:
    if code is None:
        return "no status"
    if code in CLOSE_CODES:
        return CLOSE_CODES[code]
    if 3000 <= code <= 3999:
        return "registered by a library or framework"
    if 4000 <= code <= 4999:
        return "private use"
    return "not a valid close code"


# --- events -----------------------------------------------------------------------

@dataclass(frozen=True)
class WSFrame:
    """One WebSocket frame.

    Fields: direction (c2s/s2c), frame and ts (the capture frame holding its
    last byte), first_frame and first_ts (its first byte), opcode (0-15), fin, rsv (the three RSV bits;
    RSV1 = compressed by permessage-deflate), masked, length (payload bytes),
    head_bytes (2-14), missing (payload bytes lost in a capture gap), payload
    (unmasked: a control frame's whole payload, a data frame's first
    ``KEEP_BYTES``), close_code and close_reason (close frames that carry one).
    """

    direction: str
    frame: int
    ts: float
    first_frame: int
    first_ts: float
    opcode: int
    fin: bool
    rsv: int
    masked: bool
    length: int
    head_bytes: int
    missing: int = 0
    payload: bytes = b""
    close_code: int | None = None
    close_reason: str | None = None

    @property
    def kind(self) -> str:
        return opcode_name(self.opcode)


@dataclass(frozen=True)
class WSMessage:
    """A whole data message (its first frame and its continuations).

    Fields: direction, frame and ts (its last frame), first_frame, first_ts,
    opcode (1 text, 2 binary), length (payload bytes of all its frames),
    frames (how many), compressed (RSV1 on its first frame), complete (False:
    a gap or the end of the capture cut it), preview (its first bytes).
    """

    direction: str
    frame: int
    ts: float
    first_frame: int
    first_ts: float
    opcode: int
    length: int
    frames: int
    compressed: bool = False
    complete: bool = True
    preview: bytes = b""

    @property
    def kind(self) -> str:
        return opcode_name(self.opcode)


@dataclass(frozen=True)
class WSError:
    """The bytes broke RFC 6455. Fields: direction, frame, ts, message."""

    direction: str
    frame: int | None
    ts: float
    message: str


# --- one direction ------------------------------------------------------------------

class _Reader:
    def __init__(self, conn: WebSocketConnection, direction: str):
        self.conn, self.direction = conn, direction
        self.head = bytearray()
        self.first, self.first_ts = 0, 0.0
        self.need: int | None = None      # payload bytes still to come (None: reading a head)
        self.lost = False
        self.cur: dict | None = None      # the frame being read
        self.msg: dict | None = None      # the data message being assembled

    def feed(self, data: bytes, frame: int, ts: float) -> None:
        view = memoryview(data)
        while view and not self.lost:
            if self.need is None:
                view = self._read_head(view, frame, ts)
            else:
                view = self._read_payload(view, frame, ts)

    def _read_head(self, view: memoryview, frame: int, ts: float) -> memoryview:
        if not self.head:
            self.first, self.first_ts = frame, ts
        want = _head_length(self.head)
        while len(self.head) < want and view:
            take = want - len(self.head)
            self.head += view[:take]
            view = view[take:]
            want = _head_length(self.head)
        if len(self.head) < want:
            return view
        self._start_frame(bytes(self.head), frame, ts)
        self.head.clear()
        return view

    def _start_frame(self, head: bytes, frame: int, ts: float) -> None:
        b0, b1 = head[0], head[1]
        n = b1 & 0x7F
        if n == 126:
            length, at = int.from_bytes(head[2:4], "big"), 4
        elif n == 127:
            length, at = int.from_bytes(head[2:10], "big"), 10
        else:
            length, at = n, 2
        masked = bool(b1 & 0x80)
        key = head[at:at + 4] if masked else b""
        self.cur = {"first": self.first, "first_ts": self.first_ts, "opcode": b0 & 0x0F, "fin": bool(b0 & 0x80), "rsv": (b0 >> 4) & 0x7,
                    "masked": masked, "key": key, "length": length, "head": len(head), "got": 0, "missing": 0,
                    "keep": bytearray()}
        if length >= MAX_LENGTH:
            self.conn._error(self.direction, frame, ts, f"payload length {length} has the top bit set")
            self.lose()
            return
        op = self.cur["opcode"]
        if op >= 0x8 and (length > 125 or not self.cur["fin"]):
            self.conn._error(self.direction, frame, ts, f"control frame ({opcode_name(op)}) "
                             + ("longer than 125 bytes" if length > 125 else "fragmented"))
        self.need = length
        if length == 0:
            self._end_frame(frame, ts)

    def _read_payload(self, view: memoryview, frame: int, ts: float) -> memoryview:
        cur = self.cur
        take = min(self.need, len(view))
        room = KEEP_BYTES - len(cur["keep"])
        if room > 0:
            chunk = bytes(view[:min(take, room)])
            cur["keep"] += _unmask(chunk, cur["key"], cur["got"]) if cur["masked"] else chunk
        cur["got"] += take
        self.need -= take
        if self.need == 0:
            self._end_frame(frame, ts)
        return view[take:]

    def _end_frame(self, frame: int, ts: float) -> None:
        cur, self.cur, self.need = self.cur, None, None
        op, payload = cur["opcode"], bytes(cur["keep"])
        code = reason = None
        if op == 0x8 and len(payload) >= 2 and not cur["missing"]:
            code = int.from_bytes(payload[:2], "big")
            reason = payload[2:].decode("utf-8", "replace")
        elif op == 0x8 and len(payload) == 1:
            self.conn._error(self.direction, frame, ts, "close frame with a 1-byte payload")
        ev = WSFrame(self.direction, frame, ts, cur["first"], cur["first_ts"], op, cur["fin"], cur["rsv"], cur["masked"],
                     cur["length"], cur["head"], cur["missing"], payload, code, reason)
        self.conn._emit(ev)
        self._message(ev, ts)

    def _message(self, f: WSFrame, ts: float) -> None:
        if f.opcode not in OPCODES:
            self.conn._error(self.direction, f.frame, ts, f"reserved opcode 0x{f.opcode:x}")
            return
        if f.opcode >= 0x8:
            return                                       # control frames may sit between fragments
        if f.opcode in (0x1, 0x2):
            if self.msg is not None:
                self.conn._error(self.direction, f.frame, ts, "a new message began before the last one ended")
                self._finish(complete=False)
            self.msg = {"first": f.first_frame, "first_ts": f.first_ts, "opcode": f.opcode, "length": 0, "frames": 0,
                        "compressed": bool(f.rsv & 0x4), "missing": 0, "preview": bytearray()}
        elif f.opcode == 0x0 and self.msg is None:
            self.conn._error(self.direction, f.frame, ts, "continuation frame without a message to continue")
            return
        m = self.msg
        m["length"] += f.length
        m["frames"] += 1
        m["missing"] += f.missing
        room = KEEP_BYTES - len(m["preview"])
        if room > 0:
            m["preview"] += f.payload[:room]
        m["frame"], m["ts"] = f.frame, f.ts
        if f.fin:
            self._finish(complete=not m["missing"])

    def _finish(self, complete: bool) -> None:
        m, self.msg = self.msg, None
        if m is None or not m["frames"]:
            return
        self.conn._emit(WSMessage(self.direction, m["frame"], m["ts"], m["first"], m["first_ts"], m["opcode"],
                                  m["length"], m["frames"], m["compressed"], complete, bytes(m["preview"])))

    def gap(self, nbytes: int | None) -> None:
        """Bytes not captured: inside a payload they are counted, anywhere else framing is lost."""
        if self.lost:
            return
        if nbytes is not None and self.need is not None and not self.head and 0 < nbytes < self.need:
            self.cur["missing"] += nbytes
            self.cur["got"] += nbytes
            self.need -= nbytes
            return
        self.lose()

    def lose(self) -> None:
        self.lost, self.cur, self.need = True, None, None
        self.head.clear()
        self._finish(complete=False)

    def eof(self, frame: int | None, ts: float) -> None:
        if self.lost:
            return
        if self.head or self.need is not None:
            self.conn._error(self.direction, frame, ts, "the stream ended inside a frame")
        self.lose()


def _head_length(head: bytearray) -> int:
    """How long the frame head is, as far as the bytes so far tell (2 until the length byte is known)."""
    if len(head) < 2:
        return 2
    n = head[1] & 0x7F
    return 2 + (2 if n == 126 else 8 if n == 127 else 0) + (4 if head[1] & 0x80 else 0)


def _unmask(data: bytes, key: bytes, offset: int) -> bytes:
    if len(key) != 4:
        return data
    k = (key * 2)[offset % 4:offset % 4 + 4]
    reps = len(data) // 4 + 1
    return bytes(a ^ b for a, b in zip(data, k * reps))


class WebSocketConnection:
    """Both directions of one WebSocket connection (or one RFC 8441 stream), observed."""

    def __init__(self) -> None:
        self.events: list = []
        self._new: list = []
        self._readers = {C2S: _Reader(self, C2S), S2C: _Reader(self, S2C)}
        self._last = {C2S: (None, 0.0), S2C: (None, 0.0)}
        self.errors = 0

    def receive(self, direction: str, data: bytes, frame: int, ts: float) -> list:
        reader = self._readers.get(direction)
        if reader is not None and data:
            self._last[direction] = (frame, ts)
            reader.feed(bytes(data), frame, ts)
        return self._take()

    def receive_gap(self, direction: str, nbytes: int | None) -> list:
        reader = self._readers.get(direction)
        if reader is not None:
            reader.gap(nbytes)
        return self._take()

    def end_of_stream(self, direction: str) -> list:
        reader = self._readers.get(direction)
        if reader is not None:
            reader.eof(*self._last[direction])
        return self._take()

    def _take(self) -> list:
        new, self._new = self._new, []
        return new

    def _emit(self, ev) -> None:
        self.events.append(ev)
        self._new.append(ev)

    def _error(self, direction: str, frame: int | None, ts: float, message: str) -> None:
        self.errors += 1
        self._emit(WSError(direction, frame, ts, message))
