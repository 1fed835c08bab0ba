"""Server-sent events (the HTML standard's ``text/event-stream``) read from a response body.

``SSEStream`` is fed the body's bytes as they arrive (chunk framing already
removed by the HTTP machine) and emits an :class:`SSEEvent` for each event
the stream dispatches -- the lines up to a blank line -- with the frame and
time its last byte arrived, and an :class:`SSEComment` for each comment line
(``: keep-alive``), which servers send to keep idle connections open.
Hand-written: the format is a few line rules, and no parser on PyPI keeps
arrival times.  Memory is bounded: a line longer than ``MAX_LINE`` is cut.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINE = 64 * 1024
PREVIEW = 200


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event. Fields: direction, frame, ts (its blank line's arrival), first_frame, first_ts,
    event (the type, ``message`` by default), id (None: no id field), data_bytes, data (its first
    ``PREVIEW`` characters), retry (ms, when the event set it)."""

    direction: str
    frame: int
    ts: float
    first_frame: int
    first_ts: float
    event: str
    id: str | None
    data_bytes: int
    data: str
    retry: int | None = None


@dataclass(frozen=True)
class SSEComment:
    """A comment line (a heartbeat). Fields: direction, frame, ts, text."""

    direction: str
    frame: int
    ts: float
    text: str


class SSEStream:
    def __init__(self) -> None:
        self.events: list = []
        self._line = bytearray()
        self._fields: dict = {}
        self._data: list[str] = []
        self._start: tuple | None = None
        self._last = (0, 0.0)
        self._cr = False
        self.lost = False

    def receive(self, direction: str, data: bytes, frame: int, ts: float) -> None:
        if self.lost:
            return
        self._last = (frame, ts)
        for b in data:
            if self._cr and b == 0x0A:         # CRLF: the CR already ended the line
                self._cr = False
                continue
            self._cr = b == 0x0D
            if b in (0x0A, 0x0D):
                self._line_done(direction, frame, ts)
            elif len(self._line) < MAX_LINE:
                if not self._line and self._start is None:
                    self._start = (frame, ts)
                self._line.append(b)

    def receive_gap(self, direction: str, nbytes: int | None) -> None:
        self.lost = True                       # a line or an event may be cut: say nothing more

    def end_of_stream(self, direction: str) -> None:
        self._line.clear()                     # an event without its blank line is not dispatched

    def _line_done(self, direction: str, frame: int, ts: float) -> None:
        line = self._line.decode("utf-8", "replace")
        self._line.clear()
        if not line:
            self._dispatch(direction, frame, ts)
            return
        if line.startswith(":"):
            self.events.append(SSEComment(direction, frame, ts, line[1:].strip()[:PREVIEW]))
            if not self._fields and not self._data:
                self._start = None
            return
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name in ("event", "id"):
            self._fields[name] = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._fields["retry"] = int(value)

    def _dispatch(self, direction: str, frame: int, ts: float) -> None:
        if self._data or self._fields:
            data = "\n".join(self._data)
            first = self._start or (frame, ts)
            self.events.append(SSEEvent(direction, frame, ts, first[0], first[1],
                                        self._fields.get("event") or "message", self._fields.get("id"),
                                        len(data.encode()), data[:PREVIEW], self._fields.get("retry")))
        self._fields, self._data, self._start = {}, [], None
