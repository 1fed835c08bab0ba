"""Follow a stream: one connection's bytes, in the order a reader got them.

Like Wireshark's Follow Stream, the result is a list of chunks, each the new
bytes one packet (or one TLS record, or one HTTP/2 frame) delivered, marked
with its direction:

- TCP: each captured segment's new bytes, put in sequence order
  (``decode.tcp.reassembly``): a segment that arrives ahead of a hole waits
  until the hole is filled, then follows the segment that filled it;
  retransmitted bytes appear once.  Bytes the capture never had are a
  ``Gap``, never made up.
- TLS with keys that unlock it: the plaintext of each application-data
  record (``follow,tls`` in tshark).
- HTTP/2: one stream's HEADERS (decoded header fields, one per line) and
  DATA payloads (``stream=`` the stream id), over cleartext h2c or TLS.
- UDP: each datagram's payload.
- QUIC: one stream's bytes (HTTP/3 frames on an h3 connection), decrypted
  with keys, each STREAM frame's new bytes as they became readable
  (``follow,quic`` in tshark).

Sans-I/O: the caller (``traceviz.loader.follow``) reads the capture and
hands over byte streams; nothing here opens a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from traceviz.decode.tcp.reassembly import ByteStream

C2S, S2C = "c2s", "s2c"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass(frozen=True)
class Chunk:
    """Bytes one packet, record or frame delivered.  Fields: dir (c2s/s2c), data,
    frame (where they became readable), ts, what (``data``, ``headers``)."""

    dir: str
    data: bytes
    frame: int
    ts: float
    what: str = "data"


@dataclass(frozen=True)
class Gap:
    """Bytes of ``dir`` the capture does not have.  Fields: dir, offset, length (None: unknown)."""

    dir: str
    offset: int
    length: int | None


@dataclass
class Followed:
    """A followed stream: what it is (``tcp``, ``tls``, ``h2``, ``udp``), its ends, its
    chunks and gaps in reading order, and notes on what could not be shown.  ``flow`` is
    Wireshark's tcp.stream / udp.stream number, ``stream`` the HTTP/2 stream followed;
    ``first`` the direction of the connection's first packet (Wireshark's node 0)."""

    conn: int
    kind: str
    client: str
    server: str
    flow: int
    stream: int | None = None
    first: str = C2S
    chunks: list = field(default_factory=list)     # Chunk and Gap, in order
    notes: list[str] = field(default_factory=list)


def tcp_chunks(streams: dict[str, ByteStream]) -> list:
    """The segments' new bytes in the order they became readable, gaps where they fall."""
    order = []
    for d, s in streams.items():
        for p in s.pieces:
            order.append((p.ready_frame, p.offset, 0 if d == C2S else 1, Chunk(d, p.data, p.ready_frame, p.ready_ts)))
        for off, length in s.gaps:
            # A hole shows where the bytes after it start (or at the end when nothing follows).
            after = next((p for p in s.pieces if p.offset >= off + length), None)
            at = after.ready_frame if after is not None else 1 << 62
            order.append((at, off - 1, 0 if d == C2S else 1, Gap(d, off, length)))
    order.sort(key=lambda t: t[:3])
    return [item for *_, item in order]


def tls_chunks(conn: int, streams: dict[str, ByteStream], keylog=None, rsa_key=None) -> tuple[list, list[str]]:
    """The plaintext of each application-data record, in the order the records were read."""
    from traceviz.decode.tls.session import TLSSession

    session = TLSSession(conn)
    session.use_keys(keylog, rsa_key)
    chunks: list = []
    session.on_application_data = lambda d, data, frame, ts: chunks.append(Chunk(d, data, frame, ts))
    for item in tcp_chunks(streams):
        if isinstance(item, Gap):
            session.gap(item.dir, item.offset, item.length or 0)
            chunks.append(item)
        else:
            session.feed(item.dir, item.data, item.frame, item.ts)
    session.close()
    notes = list(session.errors[:3])
    if session.decryptor is None or not session.decrypted_records:
        notes.append("the key material does not unlock this TLS session")
    return chunks, notes


def http2_stream(chunks: list, stream: int) -> tuple[list, list[str]]:
    """One HTTP/2 stream out of a connection's plaintext chunks: its header blocks as
    ``name: value`` lines and its DATA payloads, in order."""
    from hyperframe.frame import DataFrame

    from traceviz.decode.http.http2 import HeadersReceived, HTTP2Connection

    machine = HTTP2Connection()
    frames = {C2S: _Frames(C2S, expect_preface=True), S2C: _Frames(S2C, expect_preface=False)}
    out, notes = [], []
    for item in chunks:
        if isinstance(item, Gap):
            machine.receive_gap(item.dir, item.length)
            frames[item.dir].lost = True
            notes.append(f"{item.dir}: bytes missing in the capture; this direction's frames after them are not shown")
            continue
        for ev in machine.receive(item.dir, item.data, item.frame, item.ts):
            if isinstance(ev, HeadersReceived) and ev.stream == stream and ev.headers is not None:
                text = "".join(f"{k}: {v}\r\n" for k, v in ev.headers)
                out.append((ev.frame, 0, Chunk(ev.direction, text.encode(), ev.frame, ev.ts, "headers")))
        for f in frames[item.dir].feed(item.data):
            if isinstance(f, DataFrame) and f.stream_id == stream and f.data:
                out.append((item.frame, 1, Chunk(item.dir, bytes(f.data), item.frame, item.ts)))
    out.sort(key=lambda t: (t[0], t[1]))
    return [c for *_, c in out], notes


class _Frames:
    """Whole HTTP/2 frames out of one direction's bytes (hyperframe parses each)."""

    def __init__(self, direction: str, expect_preface: bool):
        self.direction, self.buf, self.lost = direction, b"", False
        self.preface = expect_preface

    def feed(self, data: bytes) -> list:
        from hyperframe.exceptions import HyperframeError
        from hyperframe.frame import Frame

        if self.lost:
            return []
        self.buf += data
        if self.preface:
            if len(self.buf) < len(H2_PREFACE):
                return []
            if self.buf.startswith(H2_PREFACE):
                self.buf = self.buf[len(H2_PREFACE):]
            self.preface = False
        out = []
        while len(self.buf) >= 9:
            try:
                f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            except HyperframeError:
                self.lost = True
                return out
            if len(self.buf) < 9 + length:
                break
            try:
                f.parse_body(memoryview(self.buf[9:9 + length]))
                out.append(f)
            except HyperframeError:
                pass
            self.buf = self.buf[9 + length:]
        return out


def quic_stream(datagrams: list[tuple[str, bytes, int, float]], stream: int, keylog=None) -> tuple[list, list[str], bool]:
    """One QUIC stream's bytes: ``(chunks, notes, turned)``; ``datagrams`` as ``udp_chunks``
    takes them.  ``turned``: the handshake says the other side is the client (the capture
    missed the client's first datagram), so the directions were read the other way round."""
    from traceviz.decode.quic.connection import QUICConnection

    def run(turned: bool) -> QUICConnection:
        q = QUICConnection(keylog=keylog)
        q.keep = stream
        for d, data, frame, ts in datagrams:
            q.receive((S2C if d == C2S else C2S) if turned else d, data, frame, ts)
        q.close()
        return q

    q, turned = run(False), False
    if q.client_is_server():
        q, turned = run(True), True
    chunks: list = []
    for d, p in q.kept:
        if p.gap:
            chunks.append(Gap(d, p.offset - p.gap, p.gap))
        if p.data:
            chunks.append(Chunk(d, p.data, p.frame, p.ts))
    notes = list(q.errors[:3])
    if not chunks and q.not_opened:
        notes.append(f"{sum(q.not_opened.values())} QUIC packets could not be decrypted: no key material "
                     "unlocks this connection's streams (--keylog to decrypt)")
    return chunks, notes, turned


def udp_chunks(datagrams: list[tuple[str, bytes, int, float]]) -> list:
    """Each datagram's payload: ``(dir, payload, frame, ts)`` in frame order."""
    return [Chunk(d, data, frame, ts) for d, data, frame, ts in datagrams]
