"""The frames of a decrypted QUIC packet payload (RFC 9000 section 19, RFC 9221).

``parse_frames(payload)`` returns the frames as small frozen dataclasses, in
order, and why it stopped early if it did.  Pure: no capture positions here
(the connection adds packet number, frame and time).

aioquic has no standalone frame reader: its frame handlers are methods of
the endpoint ``QuicConnection`` that act on connection state as they parse.
So the frames are read here, with aioquic's ``Buffer`` for the
variable-length integers.  A frame type we do not know stops the packet
(its length cannot be known); hostile bytes never raise.
"""

from __future__ import annotations

from dataclasses import dataclass

from aioquic.buffer import Buffer, BufferReadError
from aioquic.quic.packet import QuicErrorCode

MAX_FRAMES = 4096          # per packet: a 64 KiB packet of 1-byte frames is absurd, not a reason to loop


@dataclass(frozen=True)
class Padding:
    """A run of PADDING bytes. Fields: length."""
    length: int
    name = "PADDING"


@dataclass(frozen=True)
class Ping:
    """PING: asks for an ACK."""
    name = "PING"


@dataclass(frozen=True)
class Ack:
    """ACK. Fields: largest, delay (raw, scaled by the peer's ack_delay_exponent), ranges
    ((first, last) packet numbers acknowledged, highest first), ecn ((ect0, ect1, ce) or None)."""
    largest: int
    delay: int
    ranges: tuple
    ecn: tuple | None = None
    name = "ACK"


@dataclass(frozen=True)
class ResetStream:
    """RESET_STREAM. Fields: stream_id, error_code, final_size."""
    stream_id: int
    error_code: int
    final_size: int
    name = "RESET_STREAM"


@dataclass(frozen=True)
class StopSending:
    """STOP_SENDING. Fields: stream_id, error_code."""
    stream_id: int
    error_code: int
    name = "STOP_SENDING"


@dataclass(frozen=True)
class Crypto:
    """CRYPTO: TLS handshake bytes. Fields: offset, length, data (emptied once delivered)."""
    offset: int
    length: int
    data: bytes = b""
    name = "CRYPTO"


@dataclass(frozen=True)
class NewToken:
    """NEW_TOKEN: a token for a future connection's Initial. Fields: token."""
    token: bytes
    name = "NEW_TOKEN"


@dataclass(frozen=True)
class Stream:
    """STREAM. Fields: stream_id, offset, length, fin, data (emptied once delivered)."""
    stream_id: int
    offset: int
    length: int
    fin: bool
    data: bytes = b""
    name = "STREAM"


@dataclass(frozen=True)
class Limit:
    """A flow-control frame: MAX_DATA, MAX_STREAM_DATA, MAX_STREAMS, DATA_BLOCKED,
    STREAM_DATA_BLOCKED or STREAMS_BLOCKED. Fields: name, value, stream_id (where the
    frame names a stream), bidi (MAX_STREAMS / STREAMS_BLOCKED: bidirectional streams)."""
    name: str
    value: int
    stream_id: int | None = None
    bidi: bool | None = None


@dataclass(frozen=True)
class NewConnectionId:
    """NEW_CONNECTION_ID. Fields: sequence, retire_prior_to, cid, reset_token."""
    sequence: int
    retire_prior_to: int
    cid: bytes
    reset_token: bytes
    name = "NEW_CONNECTION_ID"


@dataclass(frozen=True)
class RetireConnectionId:
    """RETIRE_CONNECTION_ID. Fields: sequence."""
    sequence: int
    name = "RETIRE_CONNECTION_ID"


@dataclass(frozen=True)
class PathProbe:
    """PATH_CHALLENGE or PATH_RESPONSE. Fields: name, data (8 bytes)."""
    name: str
    data: bytes


@dataclass(frozen=True)
class ConnectionClose:
    """CONNECTION_CLOSE. Fields: error_code, frame_type (the frame that caused a transport
    error; None for an application close), reason, application (0x1d: the application's
    error space, e.g. HTTP/3's)."""
    error_code: int
    frame_type: int | None
    reason: str
    application: bool
    name = "CONNECTION_CLOSE"


@dataclass(frozen=True)
class HandshakeDone:
    """HANDSHAKE_DONE: the server confirms the handshake (draft-25 and later)."""
    name = "HANDSHAKE_DONE"


@dataclass(frozen=True)
class DatagramFrame:
    """DATAGRAM (RFC 9221). Fields: length."""
    length: int
    name = "DATAGRAM"


_LIMITS = {0x10: ("MAX_DATA", False, None), 0x11: ("MAX_STREAM_DATA", True, None),
           0x12: ("MAX_STREAMS", False, True), 0x13: ("MAX_STREAMS", False, False),
           0x14: ("DATA_BLOCKED", False, None), 0x15: ("STREAM_DATA_BLOCKED", True, None),
           0x16: ("STREAMS_BLOCKED", False, True), 0x17: ("STREAMS_BLOCKED", False, False)}


def transport_error_name(code: int) -> str:
    """A transport error code's name; 0x100-0x1ff are TLS alerts (CRYPTO_ERROR + alert)."""
    if 0x100 <= code <= 0x1FF:
        from traceviz.decode.tls.names import alert_name
        return f"CRYPTO_ERROR ({alert_name(code - 0x100)})"
    try:
        return QuicErrorCode(code).name
    except ValueError:
        return f"0x{code:x}"


def parse_frames(payload: bytes) -> tuple[list, str | None]:
    """(frames, error): the frames of a decrypted payload; ``error`` says why reading stopped early."""
    buf = Buffer(data=payload)
    out: list = []
    end = len(payload)
    try:
        while buf.tell() < end and len(out) < MAX_FRAMES:
            start = buf.tell()
            ftype = buf.pull_uint_var()
            frame = _frame(buf, ftype, payload, start, end)
            if frame is None:
                return out, f"unknown frame type 0x{ftype:x} at byte {start}"
            out.append(frame)
    except (BufferReadError, ValueError) as e:
        return out, f"frame runs past the end of the packet ({e})" if isinstance(e, BufferReadError) else str(e)
    return out, None


def parse_google_frames(payload: bytes) -> tuple[list, str | None]:
    """Google's T05x: TLS in IETF-style packets, but gQUIC's frames.  Only what comes with the
    handshake is read: PADDING (to the end), PING (0x07), CRYPTO (0x08, as IETF's) and gQUIC's ACK."""
    buf = Buffer(data=payload)
    out: list = []
    try:
        while buf.tell() < len(payload) and len(out) < MAX_FRAMES:
            start = buf.tell()
            ftype = buf.pull_uint8()
            if ftype == 0x00:
                out.append(Padding(len(payload) - start))
                break
            if ftype & 0xC0 == 0x40:
                out.append(_google_ack(buf, ftype))
            elif ftype == 0x07:
                out.append(Ping())
            elif ftype == 0x08:
                offset = buf.pull_uint_var()
                data = buf.pull_bytes(buf.pull_uint_var())
                out.append(Crypto(offset, len(data), data))
            else:
                return out, f"Google QUIC frame type 0x{ftype:02x} at byte {start}: not read"
    except (BufferReadError, ValueError):
        return out, "frame runs past the end of the packet"
    return out, None


_GQUIC_SIZES = (1, 2, 4, 6)


def _google_ack(buf: Buffer, ftype: int) -> Ack:
    """gQUIC's ACK (type 0b01nullmm): largest acked and block lengths in 1/2/4/6 bytes."""
    def uint(n: int) -> int:
        return int.from_bytes(buf.pull_bytes(n), "big")
    largest = uint(_GQUIC_SIZES[(ftype >> 2) & 3])
    block = _GQUIC_SIZES[ftype & 3]
    delay = uint(2)
    blocks = uint(1) if ftype & 0x20 else 0
    first = uint(block)
    for _ in range(blocks):
        uint(1)
        uint(block)
    stamps = uint(1)
    if stamps:
        buf.pull_bytes(5 + 3 * (stamps - 1))
    return Ack(largest, delay, ((max(largest - first + 1, 0), largest),))


def _frame(buf: Buffer, ftype: int, payload: bytes, start: int, end: int):
    if ftype == 0x00:
        pos = buf.tell()
        while pos < end and payload[pos] == 0:
            pos += 1
        buf.seek(pos)
        return Padding(pos - start)
    if ftype == 0x01:
        return Ping()
    if ftype in (0x02, 0x03):
        return _ack(buf, ftype == 0x03)
    if ftype == 0x04:
        return ResetStream(buf.pull_uint_var(), buf.pull_uint_var(), buf.pull_uint_var())
    if ftype == 0x05:
        return StopSending(buf.pull_uint_var(), buf.pull_uint_var())
    if ftype == 0x06:
        offset = buf.pull_uint_var()
        data = buf.pull_bytes(buf.pull_uint_var())
        return Crypto(offset, len(data), data)
    if ftype == 0x07:
        return NewToken(buf.pull_bytes(buf.pull_uint_var()))
    if 0x08 <= ftype <= 0x0F:
        return _stream(buf, ftype, end)
    if ftype in _LIMITS:
        name, has_stream, bidi = _LIMITS[ftype]
        sid = buf.pull_uint_var() if has_stream else None
        return Limit(name, buf.pull_uint_var(), sid, bidi)
    if ftype == 0x18:
        seq, retire = buf.pull_uint_var(), buf.pull_uint_var()
        n = buf.pull_uint8()
        if not 1 <= n <= 20:
            raise ValueError(f"NEW_CONNECTION_ID with a {n}-byte connection ID")
        return NewConnectionId(seq, retire, buf.pull_bytes(n), buf.pull_bytes(16))
    if ftype == 0x19:
        return RetireConnectionId(buf.pull_uint_var())
    if ftype in (0x1A, 0x1B):
        return PathProbe("PATH_CHALLENGE" if ftype == 0x1A else "PATH_RESPONSE", buf.pull_bytes(8))
    if ftype in (0x1C, 0x1D):
        code = buf.pull_uint_var()
        frame_type = buf.pull_uint_var() if ftype == 0x1C else None
        reason = buf.pull_bytes(buf.pull_uint_var()).decode("utf-8", errors="backslashreplace")
        return ConnectionClose(code, frame_type, reason, ftype == 0x1D)
    if ftype == 0x1E:
        return HandshakeDone()
    if ftype in (0x30, 0x31):
        n = buf.pull_uint_var() if ftype == 0x31 else end - buf.tell()
        buf.pull_bytes(n)
        return DatagramFrame(n)
    return None


def _ack(buf: Buffer, ecn: bool) -> Ack:
    largest, delay = buf.pull_uint_var(), buf.pull_uint_var()
    count, first = buf.pull_uint_var(), buf.pull_uint_var()
    if count > 4096:
        raise ValueError(f"ACK with {count} ranges")
    hi = largest
    lo = hi - first
    ranges = [(lo, hi)]
    for _ in range(count):
        gap, length = buf.pull_uint_var(), buf.pull_uint_var()
        hi = lo - gap - 2
        lo = hi - length
        ranges.append((lo, hi))
    if lo < 0:
        raise ValueError("ACK range below packet number 0")
    counts = (buf.pull_uint_var(), buf.pull_uint_var(), buf.pull_uint_var()) if ecn else None
    return Ack(largest, delay, tuple((a, b) for a, b in ranges), counts)


def _stream(buf: Buffer, ftype: int, end: int) -> Stream:
    sid = buf.pull_uint_var()
    offset = buf.pull_uint_var() if ftype & 0x04 else 0
    length = buf.pull_uint_var() if ftype & 0x02 else end - buf.tell()
    return Stream(sid, offset, length, bool(ftype & 0x01), buf.pull_bytes(length))
