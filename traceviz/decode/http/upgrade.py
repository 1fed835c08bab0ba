"""Cleartext HTTP/1.1 that may switch to h2c with ``Upgrade: h2c`` (RFC 7540 section 3.2).

An ``UpgradeConnection`` is an ``HTTP1Connection`` until its connection
reports ``switched_to == "h2c"``; then the bytes HTTP/1 left unparsed (the
client's preface, the server's frames after the 101) go to an
``HTTP2Connection`` whose stream 1 is the upgraded request, and everything
after goes there too.  Sans-I/O like the two machines it joins:
``receive``, ``receive_gap``, ``end_of_stream``; the events stay on each
machine (``http1.events``, then ``http2.events`` once switched).
"""

from __future__ import annotations

from collections import deque

from traceviz.decode.http.http1 import HTTP1Connection, Request, RequestEnd
from traceviz.decode.http.http2 import C2S, S2C, HTTP2Connection

# Bytes of each direction remembered while HTTP/1 runs: more than HTTP/1's
# MAX_PAUSED_BYTES plus one segment, so the bytes after a 101 are still here.
_TAIL_BYTES = 256 * 1024


class UpgradeConnection:
    def __init__(self, scheme: str = "http") -> None:
        self.scheme = scheme
        self.http1 = HTTP1Connection()
        self.http2: HTTP2Connection | None = None
        self._tail: dict[str, deque] = {C2S: deque(), S2C: deque()}
        self._tail_len = {C2S: 0, S2C: 0}
        self._seq = 0

    def receive(self, d: str, data: bytes, frame: int, ts: float) -> None:
        if self.http2 is not None:
            self.http2.receive(d, data, frame, ts)
            return
        self._remember(d, data, frame, ts)
        self.http1.receive(d, data, frame, ts)
        switched = self.http1.switched_to
        if switched is not None and switched.strip().lower() == "h2c":
            self._switch()

    def skippable(self, d: str) -> int:
        """Bytes of ``d`` the HTTP/1 machine would only count (HTTP/2, once switched to, reads every frame)."""
        return 0 if self.http2 is not None else self.http1.skippable(d)

    def skip(self, d: str, nbytes: int, frame: int, ts: float) -> None:
        # Bytes passed unread leave no tail to hand over: a switch to h2c happens
        # on bytes read after them, which are remembered again.
        self._tail[d].clear()
        self._tail_len[d] = 0
        self.http1.skip(d, nbytes, frame, ts)

    def receive_gap(self, d: str, nbytes: int | None) -> None:
        if self.http2 is not None:
            self.http2.receive_gap(d, nbytes)
            return
        self._tail[d].clear()
        self._tail_len[d] = 0
        self.http1.receive_gap(d, nbytes)

    def end_of_stream(self, d: str) -> None:
        self.http1.end_of_stream(d)
        if self.http2 is not None:
            self.http2.end_of_stream(d)

    def _remember(self, d: str, data: bytes, frame: int, ts: float) -> None:
        self._seq += 1
        tail = self._tail[d]
        tail.append((self._seq, bytes(data), frame, ts))
        self._tail_len[d] += len(data)
        while len(tail) > 1 and self._tail_len[d] - len(tail[0][1]) >= _TAIL_BYTES:
            self._tail_len[d] -= len(tail.popleft()[1])

    def _switch(self) -> None:
        self.http2 = HTTP2Connection()
        events = self.http1.events
        req = next((ev for ev in reversed(events) if isinstance(ev, Request)
                    and (ev.header("upgrade") or "").lower().find("h2c") >= 0), None)
        if req is not None:
            body = next((ev.body_bytes for ev in events if isinstance(ev, RequestEnd) and ev.frame >= req.frame), 0)
            self.http2.upgrade_request(req.method, req.target, req.header("host"), req.frame, req.ts,
                                       headers=req.headers, settings_header=req.header("http2-settings"),
                                       body_bytes=body, scheme=self.scheme)
        pending = []
        for d, n in self.http1.unparsed_bytes.items():
            pending += _last_bytes(self._tail[d], n, d)
        for _, d, data, frame, ts in sorted(pending, key=lambda p: p[0]):
            self.http2.receive(d, data, frame, ts)
        self._tail = {C2S: deque(), S2C: deque()}


def _last_bytes(tail: deque, n: int, d: str) -> list[tuple]:
    """The last ``n`` bytes remembered for one direction, as (seq, dir, data, frame, ts) pieces."""
    out = []
    for seq, data, frame, ts in reversed(tail):
        if n <= 0:
            break
        piece = data[-n:] if n < len(data) else data
        out.append((seq, d, piece, frame, ts))
        n -= len(piece)
    out.reverse()
    return out
