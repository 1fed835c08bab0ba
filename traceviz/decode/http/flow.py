"""HTTP/2 flow control as an observer sees it (RFC 9113 sections 5.2 and 6.9).

Sans-I/O: feed the events of one ``HTTP2Connection`` in order with
``receive(event)``; it keeps each sender's connection window and stream
windows -- SETTINGS_INITIAL_WINDOW_SIZE from the receiver's SETTINGS, plus its
WINDOW_UPDATEs, minus the flow-controlled bytes of every DATA frame -- and
returns the window left after each frame that moved one.  When a sender used
a window up (it fell to zero or below) and still had something to send, that
is a ``WindowStall``: it lasts until the sender's next DATA frame with a
payload on the stream (any stream, for the connection window), which can
only follow a WINDOW_UPDATE.

The windows are the ones the capture point can see: a WINDOW_UPDATE counts
when it passes the capture point, not when it reaches the sender, so near the
receiver a window reads up to one round trip more open than the sender knew.
A stall is therefore never invented; a short one may be missed.

Why not ``h2``'s own window bookkeeping: it plays one endpoint, raises on the
first protocol violation and cannot be told about bytes it did not send.
The arithmetic here is a dozen lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from traceviz.decode.http.http2 import C2S, S2C, DataReceived, RstStream, Settings, WindowUpdate

DEFAULT_WINDOW = 65535          # RFC 9113 6.9.2: the initial window of every stream and the connection
_OTHER = {C2S: S2C, S2C: C2S}


@dataclass(frozen=True)
class Window:
    """The DATA sender's credit after a frame.  Fields: direction (the side that sends DATA under
    this window), stream (0: only the connection window moved), frame, ts, stream_window (None for
    stream 0), conn_window."""

    direction: str
    stream: int
    frame: int
    ts: float
    stream_window: int | None
    conn_window: int


@dataclass(frozen=True)
class WindowStall:
    """A sender that used up its window with more to send.  Fields: direction (the DATA sender),
    stream (0: the connection window ran out), frame and ts (the DATA frame that used it up),
    window (the credit it had been given since the window was last empty: the initial size the
    first time), update_frame and update_ts (the WINDOW_UPDATE that reopened it; 0 and None if
    none was seen), resume_frame and resume_ts (the next DATA frame with a payload; 0 and None
    if the capture ends first)."""

    direction: str
    stream: int
    frame: int
    ts: float
    window: int
    update_frame: int = 0
    update_ts: float | None = None
    resume_frame: int = 0
    resume_ts: float | None = None

    @property
    def duration(self) -> float | None:
        return None if self.resume_ts is None else self.resume_ts - self.ts


class FlowControl:
    """Both senders' windows on one connection."""

    def __init__(self) -> None:
        # Per sender: the initial stream window its peer set, its connection window, and per
        # stream the credit granted minus the bytes sent: a SETTINGS change then moves every
        # stream's window at once, as RFC 9113 6.9.2 asks.
        self.initial = {C2S: DEFAULT_WINDOW, S2C: DEFAULT_WINDOW}
        self.conn = {C2S: DEFAULT_WINDOW, S2C: DEFAULT_WINDOW}
        self._credit: dict[str, dict[int, int]] = {C2S: {}, S2C: {}}
        self._peak: dict[tuple[str, int], int] = {}       # credit given since the window was last empty
        self._pending: dict[tuple[str, int], dict] = {}   # stalls waiting for the sender to go on
        self.stalls: list[WindowStall] = []

    def stream_window(self, sender: str, stream: int) -> int:
        return self.initial[sender] + self._credit[sender].get(stream, 0)

    def receive(self, ev) -> Window | None:
        """One HTTP/2 event; the window it moved (None if it moved none)."""
        if isinstance(ev, DataReceived):
            return self._data(ev)
        if isinstance(ev, WindowUpdate):
            return self._update(ev)
        if isinstance(ev, Settings) and not ev.ack:
            for name, value in ev.settings:
                if name == "INITIAL_WINDOW_SIZE":
                    self.initial[_OTHER[ev.direction]] = int(value)
        elif isinstance(ev, RstStream) and ev.stream:
            for d in (C2S, S2C):
                self._pending.pop((d, ev.stream), None)
        return None

    def finish(self) -> list[WindowStall]:
        """Every stall, those still waiting when the capture ends included (resume_ts None)."""
        for p in self._pending.values():
            self.stalls.append(WindowStall(**p))
        self._pending.clear()
        self.stalls.sort(key=lambda s: (s.ts, s.frame, s.stream))
        return self.stalls

    # -- internals --

    def _data(self, ev: DataReceived) -> Window:
        d, sid, n = ev.direction, ev.stream, ev.flow_length
        for key in ((d, sid), (d, 0)):
            p = self._pending.get(key)
            if p is None:
                continue
            if n > 0 and p.get("update_frame"):
                self.stalls.append(WindowStall(**p, resume_frame=ev.frame, resume_ts=ev.ts))
                del self._pending[key]
            elif n > 0 or (ev.end_stream and key[1] == sid):
                # Credit we never saw (the window is wrong), or an empty END_STREAM: nobody waited.
                del self._pending[key]
        self.conn[d] -= n
        credit = self._credit[d]
        credit[sid] = credit.get(sid, 0) - n
        window = self.stream_window(d, sid)
        if not ev.end_stream:
            if window <= 0 and (d, sid) not in self._pending:
                self._stall(d, sid, ev)
            if self.conn[d] <= 0 and (d, 0) not in self._pending:
                self._stall(d, 0, ev)
        return Window(d, sid, ev.frame, ev.ts, window, self.conn[d])

    def _update(self, ev: WindowUpdate) -> Window:
        sender, sid = _OTHER[ev.direction], ev.stream
        if sid == 0:
            self.conn[sender] += ev.increment
            window = self.conn[sender]
        else:
            credit = self._credit[sender]
            credit[sid] = credit.get(sid, 0) + ev.increment
            window = self.stream_window(sender, sid)
        key = (sender, sid)
        p = self._pending.get(key)
        if p is not None and window > 0 and not p.get("update_frame"):
            p["update_frame"], p["update_ts"] = ev.frame, ev.ts
        self._peak[key] = max(window, self._peak.get(key, self._base(sender, sid)))
        return Window(sender, sid, ev.frame, ev.ts, None if sid == 0 else window, self.conn[sender])

    def _base(self, sender: str, sid: int) -> int:
        return DEFAULT_WINDOW if sid == 0 else self.initial[sender]

    def _stall(self, d: str, sid: int, ev: DataReceived) -> None:
        window = self._peak.get((d, sid), self._base(d, sid))
        self._pending[(d, sid)] = dict(direction=d, stream=sid, frame=ev.frame, ts=ev.ts, window=window)
        self._peak[(d, sid)] = 0
