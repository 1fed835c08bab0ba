"""The TLS record layer, sans-I/O: bytes of one direction in, records out.

``RecordReader`` cuts a reassembled byte stream into records (SSL 3.0, TLS
1.0-1.3, and the SSLv2-compatible ClientHello a few old clients still open
with).  ``HandshakeReader`` joins handshake fragments into whole messages:
one message may span several records (and so several TCP segments), one
record may carry several messages.

Each record and message carries the frame and time of the bytes that
completed it -- where Wireshark shows a reassembled PDU.  A header that
cannot be a TLS record stops the reader with ``error`` set: there is no way
to find the next record boundary in a stream that has lost its framing.
Bytes missing from the capture (``gap``) are different: the record they cut
is dropped and the reader looks for the next plausible record header --
two that chain, or one that ends exactly where the bytes do -- and goes on.

Records whose content nobody will read (``count_only``: application data
without keys, say) are counted, not kept: the reader parses their header,
then steps over their fragment -- ``skippable`` says how many bytes it
would only count, ``skip`` passes them without the bytes themselves -- and
yields a ``Record`` with an empty fragment and its ``length``.
"""

from __future__ import annotations

from dataclasses import dataclass

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT, CONNECTION_ID = 20, 21, 22, 23, 24, 25
_CONTENT_TYPES = {20, 21, 22, 23, 24, 25}
# RFC 5246 6.2.3: a TLSCiphertext fragment is at most 2^14 + 2048 bytes.
MAX_RECORD = (1 << 14) + 2048


@dataclass
class Record:
    content_type: int
    version: int
    fragment: bytes
    frame: int           # frame holding the record's last byte
    ts: float
    first_frame: int     # frame holding its first byte
    offset: int          # stream offset of the record header
    sslv2: bool = False  # an SSLv2-format ClientHello (fragment is the v2 message)
    length: int | None = None   # fragment length when the fragment was counted, not kept

    @property
    def size(self) -> int:
        n = len(self.fragment) if self.length is None else self.length
        return n + (2 if self.sslv2 else 5)


class RecordReader:
    """One direction's records.  Feed stream bytes in order; read records."""

    def __init__(self, count_only: frozenset = frozenset()) -> None:
        self.count_only = count_only    # content types whose fragments are counted, not kept
        self._counting: list | None = None   # [bytes still to pass, content type, version, length, offset]
        self._buf = bytearray()
        self._offset = 0            # stream offset of _buf[0]
        self._first: tuple[int, float] | None = None   # frame/ts of the pending record's first byte
        self.error: str | None = None
        self.records = 0
        self.gaps = 0
        self.skipped = 0            # bytes dropped while finding a record boundary after a gap
        self._resync = False

    def feed(self, data: bytes, frame: int, ts: float) -> list[Record]:
        if self.error is not None or not data:
            return []
        out = []
        if self._counting is not None:
            n = min(self._counting[0], len(data))
            rec = self.skip(n, frame, ts)
            if rec is not None:
                out.append(rec)
            data = data[n:]
            if not data:
                return out
        if not self._buf and not self._resync and self.records:
            data = self._whole_records(data, frame, ts, out)
            if not data:
                return out
        if self._first is None:
            self._first = (frame, ts)
        self._buf += data
        while self.error is None:
            rec = self._next(frame, ts)
            if rec is None:
                break
            out.append(rec)
        return out

    def _whole_records(self, data: bytes, frame: int, ts: float, out: list) -> bytes:
        """The records that lie whole in ``data`` (or start a counted one), read in place
        rather than through the buffer; returns what is left for the buffered path
        (a partial record, or a header the careful path must judge)."""
        i, n = 0, len(data)
        count_only = self.count_only
        while n - i >= 5:
            ctype, length = data[i], (data[i + 3] << 8) | data[i + 4]
            if ctype not in _CONTENT_TYPES or data[i + 1] != 3 or length > MAX_RECORD:
                break
            end = i + 5 + length
            version = 0x300 | data[i + 2]
            if ctype in count_only:
                if end > n:
                    self._first = (frame, ts)
                    self._counting = [end - n, ctype, version, length, self._offset]
                    self._offset += 5 + length
                    return b""
                rec = Record(ctype, version, b"", frame, ts, frame, self._offset, length=length)
            elif end <= n:
                rec = Record(ctype, version, data[i + 5:end], frame, ts, frame, self._offset)
            else:
                break
            self._offset += 5 + length
            self.records += 1
            out.append(rec)
            i = end
        return data[i:] if i else data

    @property
    def skippable(self) -> int:
        """Bytes coming next that are only counted (the rest of a ``count_only`` record)."""
        return self._counting[0] if self._counting is not None and self.error is None else 0

    def skip(self, n: int, frame: int, ts: float) -> Record | None:
        """``n`` bytes of a counted record passed (at most ``skippable``); its
        ``Record`` once they complete it, with the frame and time of the last one."""
        c = self._counting
        c[0] -= n
        if c[0] > 0:
            return None
        self._counting = None
        rec = Record(c[1], c[2], b"", frame, ts, self._first[0] if self._first else frame, c[4], length=c[3])
        self.records += 1
        self._first = None
        return rec

    def gap(self, length: int) -> None:
        """``length`` bytes are missing here: drop the record they cut, then resynchronise."""
        if self.error is not None:
            return
        if self._counting is not None:
            self.skipped += self._counting[3] + 5 - self._counting[0]
            self._offset -= self._counting[0]
            self._counting = None
        self.gaps += 1
        self._offset += len(self._buf) + length
        self.skipped += len(self._buf)
        self._buf.clear()
        self._first = None
        self._resync = True

    @property
    def pending(self) -> int:
        """Bytes of an unfinished record held back."""
        return len(self._buf)

    def _next(self, frame: int, ts: float) -> Record | None:
        if self._resync and not self._find_boundary():
            return None
        buf = self._buf
        if self.records == 0 and len(buf) >= 3 and buf[0] & 0x80 and buf[2] == 1:
            return self._sslv2(frame, ts)
        if len(buf) < 5:
            return None
        ctype, major, length = buf[0], buf[1], (buf[3] << 8) | buf[4]
        if ctype not in _CONTENT_TYPES or major != 3:
            self.error = f"not a TLS record header at stream offset {self._offset}: {bytes(buf[:5]).hex()}"
            return None
        if length > MAX_RECORD:
            self.error = f"record length {length} exceeds the TLS maximum {MAX_RECORD}"
            return None
        if ctype in self.count_only:
            return self._count(ctype, (major << 8) | buf[2], length, frame, ts)
        if len(buf) < 5 + length:
            return None
        rec = Record(ctype, (major << 8) | buf[2], bytes(buf[5:5 + length]), frame, ts,
                     self._first[0] if self._first else frame, self._offset)
        self._consume(5 + length, frame, ts)
        return rec

    def _count(self, ctype: int, version: int, length: int, frame: int, ts: float) -> Record | None:
        """A record whose fragment is not kept: what is buffered of it is dropped, the rest counted."""
        have = min(len(self._buf), 5 + length)
        offset = self._offset
        del self._buf[:have]
        self._offset += 5 + length
        if have == 5 + length:
            rec = Record(ctype, version, b"", frame, ts, self._first[0] if self._first else frame, offset,
                         length=length)
            self.records += 1
            self._first = (frame, ts) if self._buf else None
            return rec
        self._counting = [5 + length - have, ctype, version, length, offset]
        return None

    def _find_boundary(self) -> bool:
        """After a gap: skip to the first offset where a record header starts a chain."""
        buf = self._buf
        for i in range(max(len(buf) - 4, 0)):
            if not _plausible(buf, i):
                continue
            end = i + 5 + ((buf[i + 3] << 8) | buf[i + 4])
            if end == len(buf) or (end + 5 <= len(buf) and _plausible(buf, end)):
                self._consume_skip(i)
                self._resync = False
                return True
            if end + 5 > len(buf):
                self._consume_skip(i)      # cannot tell yet: wait for more bytes
                return False
        self._consume_skip(max(len(buf) - 4, 0))
        return False

    def _consume_skip(self, n: int) -> None:
        del self._buf[:n]
        self._offset += n
        self.skipped += n

    def _sslv2(self, frame: int, ts: float) -> Record | None:
        """SSLv2-compatible ClientHello (RFC 5246 appendix E.2): 2-byte header, no padding."""
        length = ((self._buf[0] & 0x7F) << 8) | self._buf[1]
        if len(self._buf) < 2 + length:
            return None
        body = bytes(self._buf[2:2 + length])
        version = (body[1] << 8) | body[2] if len(body) >= 3 else 0
        rec = Record(HANDSHAKE, version, body, frame, ts,
                     self._first[0] if self._first else frame, self._offset, sslv2=True)
        self._consume(2 + length, frame, ts)
        return rec

    def _consume(self, n: int, frame: int, ts: float) -> None:
        del self._buf[:n]
        self._offset += n
        self.records += 1
        self._first = (frame, ts) if self._buf else None


def _plausible(buf: bytearray, i: int) -> bool:
    return (buf[i] in _CONTENT_TYPES and buf[i + 1] == 3 and buf[i + 2] <= 4
            and ((buf[i + 3] << 8) | buf[i + 4]) <= MAX_RECORD)


@dataclass
class Message:
    """One whole handshake message."""

    type: int
    body: bytes
    frame: int           # frame completing it
    ts: float
    first_frame: int
    sslv2: bool = False

    @property
    def size(self) -> int:
        return len(self.body) + 4


class HandshakeReader:
    """Joins plaintext handshake fragments of one direction into messages."""

    def __init__(self, count_only: frozenset = frozenset()) -> None:
        self.count_only = count_only    # content types whose fragments are counted, not kept
        self._counting: list | None = None   # [bytes still to pass, content type, version, length, offset]
        self._buf = bytearray()
        self._first: int | None = None

    def feed(self, record: Record) -> list[Message]:
        if record.sslv2:
            body = record.fragment[1:]
            return [Message(1, body, record.frame, record.ts, record.first_frame, sslv2=True)]
        if self._first is None:
            self._first = record.first_frame
        self._buf += record.fragment
        out = []
        while len(self._buf) >= 4:
            length = int.from_bytes(self._buf[1:4], "big")
            if len(self._buf) < 4 + length:
                break
            out.append(Message(self._buf[0], bytes(self._buf[4:4 + length]), record.frame, record.ts,
                               self._first))
            del self._buf[:4 + length]
            self._first = record.first_frame if self._buf else None
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


def parse_alert(fragment: bytes) -> tuple[int, int] | None:
    """(level, description) of a plaintext alert, or None if it is not two bytes."""
    if len(fragment) != 2:
        return None
    return fragment[0], fragment[1]
