"""One QUIC byte stream (a STREAM's, or a packet-number space's CRYPTO bytes)
put back in order from (offset, data) pieces.

QUIC resends lost data in new packets at the same offsets, possibly cut
differently, and packets arrive out of order; a capture may also miss some.
``OrderedBytes.add`` returns the bytes that became readable, in order,
each with the frame and time that completed it; bytes already delivered
are counted as ``retransmitted`` and dropped.  Holding back bytes after a
hole is bounded (``limit``): beyond it the hole is given up as a gap, as
``close()`` does with whatever is still held at the end of the capture.
"""

from __future__ import annotations

from dataclasses import dataclass

LIMIT = 4 << 20           # bytes held back behind a hole before it is declared lost


@dataclass(frozen=True)
class Piece:
    """Bytes that became readable. Fields: offset, data, frame, ts; ``gap``: bytes missing before them."""
    offset: int
    data: bytes
    frame: int
    ts: float
    gap: int = 0


class OrderedBytes:
    def __init__(self, limit: int = LIMIT):
        self.next = 0                  # offset of the next byte to deliver
        self.final: int | None = None  # the stream's final size, once a FIN says so
        self.retransmitted = 0         # bytes received again after they were delivered
        self.gaps = 0                  # holes given up on
        self.limit = limit
        self._held: dict[int, tuple[bytes, int, float]] = {}
        self._held_bytes = 0

    @property
    def finished(self) -> bool:
        return self.final is not None and self.next >= self.final

    def add(self, offset: int, data: bytes, frame: int, ts: float, fin: bool = False) -> list[Piece]:
        if fin:
            self.final = offset + len(data)
        end = offset + len(data)
        if end <= self.next:
            self.retransmitted += len(data)
            return []
        if offset < self.next:
            self.retransmitted += self.next - offset
            data, offset = data[self.next - offset:], self.next
        old = self._held.get(offset)
        if old is None or len(old[0]) < len(data):
            self._held_bytes += len(data) - (len(old[0]) if old else 0)
            self._held[offset] = (data, frame, ts)
        elif old is not None:
            self.retransmitted += len(data)
        out = self._drain()
        if self._held_bytes > self.limit:
            out += self._skip_hole()
        return out

    def close(self) -> list[Piece]:
        """At the end of the capture: deliver what is held past any holes, each hole as a gap."""
        out = []
        while self._held:
            out += self._skip_hole()
        return out

    def _drain(self) -> list[Piece]:
        out = []
        while self._held:
            at = min(self._held)
            if at > self.next:
                break
            data, frame, ts = self._held.pop(at)
            self._held_bytes -= len(data)
            if at + len(data) <= self.next:
                self.retransmitted += len(data)
                continue
            if at < self.next:
                self.retransmitted += self.next - at
                data = data[self.next - at:]
            out.append(Piece(self.next, data, frame, ts))
            self.next += len(data)
        return out

    def _skip_hole(self) -> list[Piece]:
        at = min(self._held)
        gap = at - self.next
        self.gaps += 1
        data, frame, ts = self._held.pop(at)
        self._held_bytes -= len(data)
        out = [Piece(at, data, frame, ts, gap=gap)]
        self.next = at + len(data)
        return out + self._drain()
