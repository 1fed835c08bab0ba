"""HTTP/2 connections as facts: the ``streams`` table, flow-control and
head-of-line stalls, and how many streams were open at once.

From one connection's ``HTTP2Connection`` events, the flow-control machine
(``decode.http.flow``) and the connection's packets and TCP events, this
makes, once for every recipe and chart:

- one ``streams`` row per stream id the connection used (``STREAM_COLUMNS``
  then ``EXTRA_COLUMNS``);
- ``events`` rows (layer ``h2``) for what happened across frames, each with a
  ``duration`` in seconds: ``hol-block`` (TCP bytes that arrived beyond a hole
  and waited for it to be filled), ``hol-stall`` (one stream's wait behind
  it), ``window-stall`` (a sender that used up a flow-control window; stream
  0 is the connection window) and ``stream-limit`` (the client had as many
  streams open as the server's SETTINGS_MAX_CONCURRENT_STREAMS allows);
- columns for the HTTP/2 frame rows of ``events`` (``FRAME_COLUMNS``): the
  streams open after the frame and the DATA sender's windows after it.

Head-of-line blocking is read from the transport: a segment that arrived
beyond a hole became readable only with the segment that filled the hole,
and every HTTP/2 frame that became readable then (the decoder gives each
frame the frame number of the bytes that completed it) waited from the
arrival of its own bytes.  Where a frame's bytes lie in the TCP stream is
found from the ``chunk_end`` the decoder records (the end of the TCP piece,
or of the TLS record, that completed it), interpolated between the segments
that arrived in order: exact for cleartext, within a segment for TLS.  A
capture taken at the sender sees every byte arrive in order (the loss happens
beyond it), so it shows retransmissions but no hole, and no stall is claimed.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from statistics import median

import numpy as np
import pandas as pd

from traceviz.assemble.http import default_host
from traceviz.decode.http import http2
from traceviz.decode.http.flow import FlowControl
from traceviz.decode.http.upgrade import UpgradeConnection
from traceviz.model import conform

C2S, S2C = http2.C2S, http2.S2C

# The columns after STREAM_COLUMNS, in order (docs/design.md describes them).
EXTRA_COLUMNS = ["state", "closed_by", "request_end", "response_end", "rst_by", "pushed", "promised_by",
                 "weight", "depends_on", "exclusive", "priority", "req_header_bytes", "resp_header_bytes",
                 "req_header_size", "resp_header_size", "hpack_fields", "hpack_dynamic", "hpack_added",
                 "turns", "turn_bytes", "turn_gap_ms", "open_at_start", "max_open", "stream_limit",
                 "initial_window", "min_window", "window_stalls", "hol_stalls", "hol_lost", "first_frame",
                 "last_frame"]
FRAME_COLUMNS = ["open_streams", "stream_window", "conn_window"]
_INT_COLUMNS = FRAME_COLUMNS + ["size"]

# TCP analysis kinds that say a direction's bytes arrived out of order: only then is there a hole to wait for.
_HOLE_KINDS = {"retransmission", "fast-retransmission", "spurious-retransmission", "out-of-order", "lost-segment"}
_FILL_WORDS = {"retransmission": "a retransmission", "fast-retransmission": "a fast retransmission",
               "spurious-retransmission": "a spurious retransmission", "out-of-order": "an out-of-order segment"}


class Streams:
    """The HTTP/2 facts of a capture, connection by connection (``assemble.capture``'s hook)."""

    def __init__(self, results: dict, packets: pd.DataFrame, events: pd.DataFrame):
        self.machines = {conn: m for conn, r in results.items() if (m := machine_of(r)) is not None}
        self.transport = Transport(packets, events, self.machines) if self.machines else None
        self.rows: list[dict] = []

    def add(self, result, event_rows: list[dict], server: str | None) -> None:
        """One connection: its ``streams`` rows kept here; its h2 ``event_rows`` (made by
        ``assemble.http``, conn set) get the frame columns, and the derived rows join them."""
        machine = self.machines.get(result.conn)
        if machine is None:
            return
        facts = connection(result.conn, machine, self.transport, result.scheme, default_host(result, server))
        facts.annotate(event_rows)
        event_rows += facts.events
        self.rows += facts.streams

    def table(self) -> pd.DataFrame:
        return table(self.rows)


def machine_of(result):
    """The ``HTTP2Connection`` of a payload-tier result, if it spoke HTTP/2."""
    machine = result.http
    if isinstance(machine, UpgradeConnection):
        machine = machine.http2
    return machine if isinstance(machine, http2.HTTP2Connection) else None


@dataclass
class Facts:
    """One connection's HTTP/2 facts: ``streams`` rows, derived ``events`` rows and,
    per decoder event in order, the ``FRAME_COLUMNS`` of its events row."""

    streams: list[dict]
    events: list[dict]
    frame_columns: list[dict]

    def annotate(self, rows: list[dict]) -> None:
        """Add the frame columns to the h2 rows ``assemble.http`` made from the same events, in order."""
        h2_rows = [r for r in rows if r.get("layer") == "h2"]
        if len(h2_rows) == len(self.frame_columns):
            for r, cols in zip(h2_rows, self.frame_columns):
                r.update(cols)


class Transport:
    """The packets and TCP events of the HTTP/2 connections, selected once for all of them."""

    def __init__(self, packets: pd.DataFrame, events: pd.DataFrame, conns):
        self._packets, self.conns = packets, set(conns)
        tcp = events[events["conn"].isin(self.conns)] if len(events) else events
        self._holes = {(int(c), d) for c, d, k in zip(tcp["conn"], tcp["dir"], tcp["kind"]) if k in _HOLE_KINDS}
        self._kinds = {(int(c), int(f)): k for c, f, k in zip(tcp["conn"], tcp["frame"], tcp["kind"])
                       if k in _FILL_WORDS and f == f}
        self._by_conn = None

    def has_holes(self, conn: int, d: str) -> bool:
        return (conn, d) in self._holes

    def fill_kind(self, conn: int, frame: int) -> str | None:
        return self._kinds.get((conn, frame))

    def segments(self, conn: int, d: str) -> tuple:
        """(frame, ts, seq, len) arrays of one direction's payload segments, in frame order.

        Grouped once for all HTTP/2 connections: a boolean selection per connection
        and direction cost ~0.2 ms each, most of the stall analysis on a big capture."""
        if self._by_conn is None:
            pk = self._packets
            keep = pk["conn"].isin(self.conns).to_numpy(bool, na_value=False) & \
                (pk["len"].to_numpy("float64", na_value=0) > 0) & pk["seq"].notna().to_numpy()
            pk = pk[keep]
            conn_col = pk["conn"].to_numpy(np.int64)
            s2c = (pk["dir"] == S2C).to_numpy(bool)
            cols = (pk["frame"].to_numpy(np.int64), pk["ts"].to_numpy(np.float64),
                    pk["seq"].to_numpy(np.int64), pk["len"].to_numpy(np.int64))
            order = np.lexsort((cols[0], s2c, conn_col))
            keys = np.stack([conn_col[order], s2c[order]])
            starts = np.flatnonzero(np.r_[True, (keys[:, 1:] != keys[:, :-1]).any(axis=0)]) if len(order) else order
            ends = np.r_[starts[1:], len(order)]
            self._by_conn = {(int(keys[0, a]), S2C if keys[1, a] else C2S): tuple(c[order[a:b]] for c in cols)
                             for a, b in zip(starts.tolist(), ends.tolist())}
        empty = np.zeros(0, np.int64)
        return self._by_conn.get((conn, d), (empty, np.zeros(0, np.float64), empty, empty))



# --- one connection ---------------------------------------------------------------------

@dataclass
class _Stream:
    sid: int
    opened: float | None = None
    first_frame: int | None = None
    last_frame: int | None = None
    first_byte: float | None = None
    last_byte: float | None = None
    request_end: float | None = None
    response_end: float | None = None
    closed: float | None = None
    closed_by: str | None = None
    data_frames: int = 0
    rst_code: str | None = None
    rst_by: str | None = None
    pushed: bool = False
    promised_by: int | None = None
    weight: int | None = None
    depends_on: int | None = None
    exclusive: bool | None = None
    priority: str | None = None
    header_bytes: dict = field(default_factory=lambda: {C2S: 0, S2C: 0})
    header_size: dict = field(default_factory=lambda: {C2S: 0, S2C: 0})
    hpack: list = field(default_factory=lambda: [0, 0, 0])        # fields, dynamic, added
    data_span: dict = field(default_factory=dict)                   # direction -> [first, last] DATA ts
    turns: list = field(default_factory=list)                       # [start ts, bytes] per turn
    open_at_start: int | None = None
    max_open: int | None = None
    span: list = field(default_factory=list)                        # [first, end) of its opens in _Walk.peaks
    stream_limit: int | None = None
    initial_window: int | None = None
    min_window: int | None = None
    window_stall: float = 0.0
    window_stalls: int = 0
    hol_stall: float = 0.0
    hol_stalls: int = 0
    hol_lost: bool = False

    def seen(self, ev) -> None:
        if self.first_frame is None:
            self.first_frame = getattr(ev, "first_frame", 0) or ev.frame
        self.last_frame = max(self.last_frame or 0, ev.frame)


class _Walk:
    """Reads a connection's events once, in order, keeping each stream's facts,
    the open streams and the client's stream limit."""

    def __init__(self, conn: int):
        self.conn = conn
        self.streams: dict[int, _Stream] = {}
        self.open: set[int] = set()
        self.client_open = 0                   # of those, the client's (odd ids)
        self.peaks: list[int] = []             # streams open after each stream opened
        self.flow = FlowControl()
        self.limit: int | None = None          # the server's SETTINGS_MAX_CONCURRENT_STREAMS
        self.at_limit: tuple | None = None     # (ts, frame) when the client reached it
        self.rows: list[dict] = []             # derived events rows
        self.columns: list[dict] = []
        self._last_data: int | None = None     # stream of the previous server DATA frame

    def stream(self, sid: int) -> _Stream:
        s = self.streams.get(sid)
        if s is None:
            s = self.streams[sid] = _Stream(sid)
        return s

    def run(self, events) -> None:
        for ev in events:
            window = self.flow.receive(ev)
            self.event(ev)
            cols = {"open_streams": len(self.open)}
            if window is not None:
                cols["stream_window"], cols["conn_window"] = window.stream_window, window.conn_window
                if window.stream and window.stream_window is not None and isinstance(ev, http2.DataReceived):
                    s = self.stream(window.stream)
                    low = min(window.stream_window, window.conn_window)
                    s.min_window = low if s.min_window is None else min(s.min_window, low)
            self.columns.append(cols)
        self._limit_end(None, None)
        self._max_open()

    def _max_open(self) -> None:
        """Each stream's most streams open at once while it was: the largest of the counts
        after the opens during its life (a range maximum, so a connection with thousands of
        streams open costs no quadratic walk)."""
        spans = [(s, s.span[0], s.span[1] if len(s.span) > 1 else len(self.peaks))
                 for s in self.streams.values() if s.span]
        if not spans:
            return
        highs = _range_max(np.array(self.peaks, dtype=np.int64), np.array([a for _, a, _ in spans]),
                           np.array([b for _, _, b in spans]))
        for (s, _, _), high in zip(spans, highs.tolist()):
            s.max_open = high

    def event(self, ev) -> None:
        if isinstance(ev, http2.Settings):
            if ev.direction == S2C and not ev.ack:
                for name, value in ev.settings:
                    if name == "MAX_CONCURRENT_STREAMS":
                        self.limit = int(value)
            return
        if isinstance(ev, http2.GoAway):
            self._goaway(ev)
            return
        sid = ev.stream
        if not sid or isinstance(ev, http2.ParseError):
            return
        s = self.stream(sid)
        s.seen(ev)
        if isinstance(ev, http2.PushPromise):
            self._promise(ev)
        elif isinstance(ev, http2.HeadersReceived):
            self._headers(s, ev)
        elif isinstance(ev, http2.DataReceived):
            self._data(s, ev)
        elif isinstance(ev, http2.RstStream):
            if s.rst_code is None:
                s.rst_code, s.rst_by = ev.error, ("client" if ev.direction == C2S else "server")
            self._close(s, ev, f"rst-{s.rst_by}")
        elif isinstance(ev, http2.Priority):
            s.weight, s.depends_on, s.exclusive = ev.weight, ev.depends_on, ev.exclusive

    # -- frames --

    def _promise(self, ev: http2.PushPromise) -> None:
        p = self.stream(ev.promised_stream) if ev.promised_stream else None
        if p is None:
            return
        p.pushed, p.promised_by = True, ev.stream
        p.seen(ev)
        self._request_headers(p, ev)
        p.request_end = ev.ts                  # a promised request has no body (RFC 9113 8.4)
        self._open(p, ev)

    def _headers(self, s: _Stream, ev: http2.HeadersReceived) -> None:
        if ev.direction == C2S:
            self._request_headers(s, ev)
            if ev.priority is not None:
                s.depends_on, s.weight, s.exclusive = ev.priority
            self._open(s, ev)
            if ev.end_stream:
                s.request_end = ev.ts
        else:
            self._count_block(s, ev)
            if s.first_byte is None:
                s.first_byte = ev.first_ts if ev.first_frame else ev.ts
            s.last_byte = ev.ts
            self._open(s, ev)                  # a response on a stream we never saw opened
            if ev.end_stream:
                s.response_end = ev.ts
        self._maybe_closed(s, ev)

    def _request_headers(self, s: _Stream, ev: http2.HeadersReceived) -> None:
        self._count_block(s, ev, C2S)
        if s.priority is None:
            s.priority = ev.header("priority")

    def _count_block(self, s: _Stream, ev: http2.HeadersReceived, d: str | None = None) -> None:
        d = d or ev.direction
        s.header_bytes[d] += ev.size
        if ev.headers is not None:
            s.header_size[d] += sum(len(k) + len(v) for k, v in ev.headers)
        if ev.census is not None:
            s.hpack[0] += ev.census.fields
            s.hpack[1] += ev.census.dynamic
            s.hpack[2] += ev.census.added

    def _data(self, s: _Stream, ev: http2.DataReceived) -> None:
        s.data_frames += 1
        span = s.data_span.setdefault(ev.direction, [ev.ts, ev.ts])
        span[1] = ev.ts
        if ev.direction == S2C:
            if s.first_byte is None:
                s.first_byte = ev.first_ts if ev.first_frame else ev.ts
            s.last_byte = ev.ts
            if ev.length:
                if self._last_data == s.sid and s.turns:
                    s.turns[-1][1] += ev.length
                else:
                    s.turns.append([ev.ts, ev.length])
                self._last_data = s.sid
            if ev.end_stream:
                s.response_end = ev.ts
        elif ev.end_stream:
            s.request_end = ev.ts
        self._maybe_closed(s, ev)

    def _goaway(self, ev: http2.GoAway) -> None:
        # Streams the GOAWAY's receiver opened above last_stream were never processed (RFC 9113 6.8).
        theirs = 1 if ev.direction == S2C else 0
        for s in self.streams.values():
            if s.sid % 2 == theirs and s.sid > ev.last_stream and s.sid in self.open:
                self._close(s, ev, "goaway")

    # -- open and closed --

    def _open(self, s: _Stream, ev) -> None:
        if s.opened is not None:
            return
        s.opened = ev.first_ts if getattr(ev, "first_frame", 0) else ev.ts
        self.open.add(s.sid)
        s.open_at_start = len(self.open)
        s.span = [len(self.peaks)]
        self.peaks.append(len(self.open))
        s.initial_window = self.flow.initial[S2C if s.sid % 2 else C2S]
        if s.sid % 2:
            self.client_open += 1
            s.stream_limit = self.limit
            if self.limit is not None and self.at_limit is None and self.client_open >= self.limit:
                self.at_limit = (ev.ts, ev.frame)

    def _maybe_closed(self, s: _Stream, ev) -> None:
        if s.request_end is not None and s.response_end is not None:
            self._close(s, ev, "end_stream")

    def _close(self, s: _Stream, ev, how: str) -> None:
        if s.closed is not None:
            return
        s.closed, s.closed_by = ev.ts, how
        if s.sid in self.open:
            self.open.discard(s.sid)
            s.span.append(len(self.peaks))
            if s.sid % 2:
                self.client_open -= 1
                if self.at_limit is not None and self.client_open < (self.limit or 0):
                    self._limit_end(ev.ts, ev.frame)

    def _limit_end(self, ts, frame) -> None:
        if self.at_limit is None:
            return
        start, first = self.at_limit
        self.at_limit = None
        self.rows.append(_row(start, first, None, C2S, "stream-limit", self.limit,
                              f"the client had {self.limit} streams open, as many as the server's "
                              f"SETTINGS_MAX_CONCURRENT_STREAMS allows"
                              + ("" if ts is None else f", until frame {frame}"),
                              None if ts is None else ts - start))


def _range_max(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``max(values[lo[k]:hi[k]])`` for every k (each range non-empty), by a sparse table."""
    levels = [values]
    while (1 << len(levels)) <= len(values):
        prev, step = levels[-1], 1 << (len(levels) - 1)
        levels.append(np.maximum(prev[:-step], prev[step:]))
    width = np.maximum(hi - lo, 1)
    k = np.floor(np.log2(width)).astype(np.int64)
    out = np.empty(len(lo), dtype=values.dtype)
    for level in np.unique(k).tolist():
        sel = k == level
        table = levels[level]
        out[sel] = np.maximum(table[lo[sel]], table[hi[sel] - (1 << level)])
    return out


# --- flow control ---------------------------------------------------------------------------

def _window_rows(walk: _Walk) -> None:
    stalls = walk.flow.finish()
    for st in stalls:
        who = "server" if st.direction == S2C else "client"
        scope = "connection window" if st.stream == 0 else f"window of stream {st.stream}"
        if st.resume_ts is None:
            tail = "; it had sent nothing more when the capture ended"
        else:
            tail = (f"; its next DATA came {1000 * st.duration:.1f} ms later (frame {st.resume_frame}), "
                    f"after the WINDOW_UPDATE in frame {st.update_frame}")
        walk.rows.append(_row(st.ts, st.frame, st.stream, st.direction, "window-stall", st.window,
                              f"the {who} used up the {scope} ({st.window:,} bytes){tail}", st.duration))
        if st.duration is None:
            continue
        waiting = [walk.streams[st.stream]] if st.stream else _mid_send(walk, st)
        for s in waiting:
            s.window_stall += st.duration
            s.window_stalls += 1


def _mid_send(walk: _Walk, st) -> list[_Stream]:
    """The streams a connection-window stall held: sending before it, sending again after it."""
    out = []
    for s in walk.streams.values():
        span = s.data_span.get(st.direction)
        if span is not None and span[0] <= st.ts and span[1] >= st.resume_ts:
            out.append(s)
    return out


# --- head-of-line blocking ------------------------------------------------------------------

@dataclass
class _Hole:
    """Segments that arrived beyond a hole, and the segment that filled it."""

    fill_frame: int
    fill_ts: float
    missing: int                      # bytes of the hole
    held: list = field(default_factory=list)   # (seq, end, frame, ts) of each segment that waited


def _holes(seg: tuple) -> tuple[list[_Hole], dict[int, int]]:
    """The holes of one direction's segments, and the stream offset readable after each
    segment that arrived in order (frame -> offset).

    Like the reassembly's ``ready_frame``, from sequence numbers alone (the assembler
    holds no payload): a segment beyond the readable end waits; the one that reaches
    it makes it and everything contiguous behind it readable.
    """
    frames, ts, seqs, lens = seg
    holes, in_order = [], {}
    if not len(seqs):
        return holes, in_order
    readable = int(seqs.min())
    waiting: list[tuple] = []
    for f, t, s, n in zip(frames.tolist(), ts.tolist(), seqs.tolist(), lens.tolist()):
        end = s + n
        if s > readable:
            heapq.heappush(waiting, (s, end, f, t))
            continue
        before = readable
        readable = max(readable, end)
        if not waiting or waiting[0][0] > readable:
            if readable > before:
                in_order[f] = readable
            continue
        hole = _Hole(f, t, max(waiting[0][0] - before, 0))
        while waiting and waiting[0][0] <= readable:
            w = heapq.heappop(waiting)
            hole.held.append(w)
            readable = max(readable, w[1])
        holes.append(hole)
    return holes, in_order


def _offset_map(events, d: str, in_order: dict[int, int]):
    """Decoder stream offsets -> TCP sequence numbers, from the segments that arrived in order:
    after such a segment the decoder had been fed up to the end of the last chunk it completed."""
    anchors: dict[int, int] = {}
    for ev in events:
        end = getattr(ev, "chunk_end", 0)
        if ev.direction == d and end and ev.frame in in_order:
            anchors[ev.frame] = max(anchors.get(ev.frame, 0), end)
    pairs = sorted((p, in_order[f]) for f, p in anchors.items())
    if not pairs:
        return None
    ps = np.array([p for p, _ in pairs], dtype=np.float64)
    ts = np.array([t for _, t in pairs], dtype=np.float64)

    def to_seq(p: int) -> float:
        if p <= ps[0]:
            return ts[0] - (ps[0] - p)
        if p >= ps[-1]:
            return ts[-1] + (p - ps[-1])
        return float(np.interp(p, ps, ts))
    return to_seq


def _hol_rows(walk: _Walk, events, transport: Transport) -> None:
    for d in (S2C, C2S):
        if not transport.has_holes(walk.conn, d):
            continue
        holes, in_order = _holes(transport.segments(walk.conn, d))
        if not holes:
            continue
        to_seq = _offset_map(events, d, in_order)
        by_fill = {h.fill_frame: h for h in holes}
        waited: dict[int, list] = {}
        for ev in events:
            if ev.direction == d and ev.stream and ev.frame in by_fill and getattr(ev, "chunk_end", 0):
                waited.setdefault(ev.frame, []).append(ev)
        for fill, evs in sorted(waited.items()):
            _one_hole(walk, d, by_fill[fill], evs, to_seq, transport.fill_kind(walk.conn, fill))


def _one_hole(walk: _Walk, d: str, hole: _Hole, evs, to_seq, kind: str | None) -> None:
    start = min(t for _, _, _, t in hole.held)
    per: dict[int, dict] = {}
    for ev in evs:
        arrived = _arrival(hole, to_seq(ev.chunk_end) if to_seq else None)
        w = per.setdefault(ev.stream, {"since": hole.fill_ts, "bytes": 0, "lost": False, "frames": []})
        if arrived is None:                 # its last bytes came with the fill: they were the lost ones
            w["lost"], arrived = True, start
        w["since"] = min(w["since"], arrived)
        w["bytes"] += getattr(ev, "length", 0) or getattr(ev, "size", 0)
        w["frames"].append(ev.frame)
    streams = sorted(per)
    held = sum(e - s for s, e, _, _ in hole.held)
    how = _FILL_WORDS.get(kind, "the segment")
    names = ", ".join(str(s) for s in streams)
    walk.rows.append(_row(start, hole.fill_frame, None, d, "hol-block", held,
                          f"{held:,} bytes that arrived beyond a {hole.missing:,}-byte hole waited "
                          f"{1000 * (hole.fill_ts - start):.1f} ms for {how} (frame {hole.fill_frame}); "
                          f"stream{'s' if len(streams) != 1 else ''} {names} waited behind it",
                          hole.fill_ts - start))
    for sid, w in sorted(per.items()):
        wait = hole.fill_ts - w["since"]
        s = walk.stream(sid)
        s.hol_stall += wait
        s.hol_stalls += 1
        s.hol_lost = s.hol_lost or w["lost"]
        what = "its own bytes were in the hole" if w["lost"] else "its bytes had arrived"
        walk.rows.append(_row(w["since"], hole.fill_frame, sid, d, "hol-stall", w["bytes"],
                              f"stream {sid} waited {1000 * wait:.1f} ms until frame {hole.fill_frame}: {what}",
                              wait))


def _arrival(hole: _Hole, seq: float | None) -> float | None:
    """When the byte just before ``seq`` arrived, if a held segment carried it."""
    if seq is None:
        return None
    for s, e, _, t in hole.held:
        if s < seq <= e:
            return t
    return None


# --- rows -------------------------------------------------------------------------------------

def _row(ts, frame, stream, d, kind, size, detail, duration) -> dict:
    return {"ts": ts, "frame": frame, "stream": stream, "layer": "h2", "kind": kind, "dir": d,
            "size": size, "detail": detail, "duration": np.nan if duration is None else duration}


def connection(conn: int, machine: http2.HTTP2Connection, transport: Transport, scheme: str,
               default_host: str | None) -> Facts:
    """The HTTP/2 facts of one connection."""
    events = machine.events
    walk = _Walk(conn)
    walk.run(events)
    _window_rows(walk)
    _hol_rows(walk, events, transport)
    exchanges = {ex.stream: ex for ex in http2.exchanges(events, default_host=default_host, scheme=scheme)}
    streams = [_stream_row(conn, s, exchanges.get(sid)) for sid, s in sorted(walk.streams.items())]
    for r in walk.rows:
        r["conn"] = conn
    return Facts(streams, walk.rows, walk.columns)


def _stream_row(conn: int, s: _Stream, ex) -> dict:
    turns = [n for _, n in s.turns]
    gaps = [b[0] - a[0] for a, b in zip(s.turns, s.turns[1:])]
    return {
        "conn": conn, "stream": s.sid, "opened": s.opened, "first_byte": s.first_byte,
        "last_byte": s.last_byte, "closed": s.closed,
        "method": ex.method if ex else None, "url": ex.url if ex else None,
        "status": ex.status if ex else None,
        "req_bytes": ex.req_bytes if ex else None, "resp_bytes": ex.resp_bytes if ex else None,
        "data_frames": s.data_frames, "rst_code": s.rst_code,
        "window_stall_ms": 1000 * s.window_stall, "hol_stall_ms": 1000 * s.hol_stall,
        "state": _state(s), "closed_by": s.closed_by, "request_end": s.request_end,
        "response_end": s.response_end, "rst_by": s.rst_by, "pushed": s.pushed, "promised_by": s.promised_by,
        "weight": s.weight, "depends_on": s.depends_on, "exclusive": s.exclusive, "priority": s.priority,
        "req_header_bytes": s.header_bytes[C2S], "resp_header_bytes": s.header_bytes[S2C],
        "req_header_size": s.header_size[C2S], "resp_header_size": s.header_size[S2C],
        "hpack_fields": s.hpack[0], "hpack_dynamic": s.hpack[1], "hpack_added": s.hpack[2],
        "turns": len(turns), "turn_bytes": median(turns) if turns else None,
        "turn_gap_ms": 1000 * median(gaps) if gaps else None,
        "open_at_start": s.open_at_start, "max_open": s.max_open, "stream_limit": s.stream_limit,
        "initial_window": s.initial_window, "min_window": s.min_window,
        "window_stalls": s.window_stalls, "hol_stalls": s.hol_stalls, "hol_lost": s.hol_lost,
        "first_frame": s.first_frame, "last_frame": s.last_frame,
    }


def _state(s: _Stream) -> str:
    """RFC 9113 5.1's state at the end of the capture, from the client's side."""
    if s.closed is not None:
        return "closed"
    if s.opened is None:
        return "idle"
    if s.pushed and s.first_byte is None:
        return "reserved (remote)"
    if s.request_end is not None:
        return "half-closed (local)"
    if s.response_end is not None:
        return "half-closed (remote)"
    return "open"


_DTYPES = {"state": "object", "closed_by": "object", "request_end": "float64", "response_end": "float64",
           "rst_by": "object", "pushed": "boolean", "promised_by": "Int64", "weight": "Int64",
           "depends_on": "Int64", "exclusive": "boolean", "priority": "object", "turn_bytes": "float64",
           "turn_gap_ms": "float64", "hol_lost": "boolean"}


def table(rows: list[dict]) -> pd.DataFrame:
    """The ``streams`` table: schema columns, then ``EXTRA_COLUMNS``."""
    if not rows:
        return conform("streams", pd.DataFrame(columns=EXTRA_COLUMNS))
    df = pd.DataFrame(rows).sort_values(["conn", "stream"], kind="stable").reset_index(drop=True)
    for col in EXTRA_COLUMNS:
        df[col] = df[col].astype(_DTYPES.get(col, "Int64"))
    return conform("streams", df)


def finish_events(events: pd.DataFrame) -> pd.DataFrame:
    """Whole numbers stay whole in the frame columns the h2 rows added to ``events``."""
    for col in FRAME_COLUMNS:
        if col in events.columns:
            events[col] = events[col].astype("Int64")
    return events
