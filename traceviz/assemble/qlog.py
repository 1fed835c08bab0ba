"""qlog traces into the timeline: a ``quic`` row and a ``connections`` row per
QUIC connection, every event of it as an ``events`` row, and the HTTP/3
exchanges as ``requests``.

Which traces are one connection: traces sharing a connection id (the
original destination connection id, a trace's ``group_id``, or the source
connection id of a Retry, which becomes the next trace's id) are the same
connection.  A connection logged from several vantage points (aioquic writes
a client and a server trace of each connection) is one connection seen from
both ends: the tables use ONE vantage point, the client's when there is one
(it is what the user waited for), else an observer's (network), else the
server's; the other ends' traces are read, counted in ``source.detail``
(``not_counted``) and left out of the tables, so that nothing is counted twice.

Directions: an endpoint's ``packet_sent`` is c2s when the endpoint is the
client; a network observer's trace says whose point of view ``sent`` takes
(``vantage_point.flow``, the client when it does not say).

One ``events`` row per qlog event of the chosen traces: layer ``h3`` for the
``http``/``h3``/``qpack`` categories (kind: the HTTP/3 frame type for a frame
event, as HTTP/2 events are named), layer ``quic`` for the rest (kind: the
event's name, e.g. ``packet_sent``; the packet's type, number and frame
types are columns of their own, ``packet_type``, ``packet_number``, ``frames``,
and ``detail`` spells the frames out).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable

import pandas as pd

from traceviz.assemble.http import phases
from traceviz.errors import describe
from traceviz.model import SourceInfo, Timeline, conform, empty_table
from traceviz.decode.http.h3 import error_name as h3_error_name
from traceviz.decode.quic import versions
from traceviz.decode.quic.frames import transport_error_name
from traceviz.sources.qlog import QlogEvent, QlogFile, QlogTrace, read_qlog

NAN = float("nan")
PREFERRED_VANTAGE = ("client", "network", "server", "unknown")
H3_CATEGORIES = frozenset({"http", "h3", "qpack"})
PACKET_EVENTS = frozenset({"packet_sent", "packet_received"})
_OTHER_PACKET_EVENTS = frozenset({"packet_dropped", "packet_buffered", "packet_lost"})



# --------------------------------------------------------------------------- entry point

def load_qlog(path) -> Timeline:
    """A qlog file or folder, decoded into a Timeline (``InputError`` when nothing is readable)."""
    return timeline_from_qlog(read_qlog(path))


def timeline_from_qlog(q: QlogFile) -> Timeline:
    warnings = list(q.warnings)
    groups = connection_traces(q.traces)
    conns = [_Conn.build(traces, warnings) for traces in groups]
    conns = [c for c in conns if c is not None]
    conns.sort(key=lambda c: (c.start if not math.isnan(c.start) else math.inf))
    event_rows: list[tuple] = []
    request_rows: list[dict] = []
    quic_rows, conn_rows = [], []
    for n, c in enumerate(conns):
        event_rows.extend(c.event_rows(n))
        request_rows.extend(c.request_rows(n))
        quic_rows.append(c.quic_row(n))
        conn_rows.append(c.connection_row(n))
    request_rows.sort(key=lambda r: (_order(r["start"]), r["conn"], r["stream"]))
    for i, r in enumerate(request_rows):
        r["request"] = i
    info = SourceInfo(path=q.path, format="qlog", size=q.size, compressed=q.compressed, warnings=warnings)
    info.detail = _detail(q, conns, len(event_rows))
    return Timeline(source=info, connections=_frame("connections", conn_rows),
                    events=_events_frame(event_rows), requests=_frame("requests", request_rows),
                    quic=_frame("quic", quic_rows))


def _order(t: float) -> float:
    return math.inf if t is None or math.isnan(t) else t


# --------------------------------------------------------------------------- which traces are one connection

def connection_traces(traces: Iterable[QlogTrace]) -> list[list[QlogTrace]]:
    """Traces grouped by connection: traces that share a connection id are one connection.

    A trace that mixes connections (events with their own ``group_id``) is split
    by group first.  Ids: the trace's ``ODCID``/``group_id``, the destination id
    of the client's first Initial (the original destination connection id), and
    the source id of a Retry (the id the client uses from then on).
    """
    parts: list[QlogTrace] = []
    for t in traces:
        parts.extend(_split_by_group(t))
    parent = list(range(len(parts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, t in enumerate(parts):
        for cid in _connection_ids(t):
            j = owner.setdefault(cid, i)
            parent[find(i)] = find(j)
    groups: dict[int, list[QlogTrace]] = defaultdict(list)
    for i, t in enumerate(parts):
        groups[find(i)].append(t)
    return list(groups.values())


def _split_by_group(t: QlogTrace) -> list[QlogTrace]:
    groups = {ev.group for ev in t.events}
    if len(groups) <= 1:
        only = next(iter(groups), None)
        return [t if only is None or t.group else _with(t, only, t.events)]
    by: dict[Any, list[QlogEvent]] = defaultdict(list)
    for ev in t.events:
        by[ev.group].append(ev)
    return [_with(t, g if g is not None else t.group, tuple(evs)) for g, evs in by.items()]


def _with(t: QlogTrace, group: str | None, events: tuple) -> QlogTrace:
    return QlogTrace(file=t.file, title=t.title, vantage=t.vantage, flow=t.flow, software=t.software,
                     group=group, clock=t.clock, events=tuple(events))


def _connection_ids(t: QlogTrace) -> set[str]:
    ids = {t.group.lower()} if t.group else set()
    first_initial = True
    for ev in t.events:
        if ev.name not in PACKET_EVENTS or _raw_type(ev.data) not in ("initial", "retry"):
            continue
        p = packet_of(ev.data)
        if p.type == "initial" and first_initial and p.dcid:
            first_initial = False
            ids.add(p.dcid)
        elif p.type == "retry" and p.scid:
            ids.add(p.scid)
    return ids


# --------------------------------------------------------------------------- reading packet data

@dataclass(frozen=True, slots=True)
class Packet:
    """What a packet event says of its packet.

    Fields: type (initial, handshake, 0-RTT, 1-RTT, retry, version_negotiation...,
    None when unsaid), number (packet number or None), size (bytes, NaN), version
    (the long header's, as an int, or None), scid, dcid (lower-case hex or None),
    frames (the frame objects as written).
    """

    type: str | None
    number: int | None
    size: float
    version: int | None
    scid: str | None
    dcid: str | None
    frames: tuple


_PACKET_TYPES = {"0rtt": "0-RTT", "zerortt": "0-RTT", "0-rtt": "0-RTT", "1rtt": "1-RTT", "onertt": "1-RTT",
                 "1-rtt": "1-RTT", "short": "1-RTT", "versionnegotiation": "version_negotiation",
                 "version_negotiation": "version_negotiation", "stateless_reset": "stateless_reset"}


def _raw_type(data: dict) -> str | None:
    """A packet event's type as written, lower case, without reading the rest of it."""
    kind = data.get("packet_type")
    if kind is None and isinstance(data.get("header"), dict):
        kind = data["header"].get("packet_type")
    return kind.lower() if isinstance(kind, str) else None


def packet_of(data: dict) -> Packet:
    header = data.get("header") if isinstance(data.get("header"), dict) else {}
    kind = data.get("packet_type", header.get("packet_type"))
    kind = _PACKET_TYPES.get(str(kind).lower(), str(kind).lower()) if isinstance(kind, str) else None
    raw = data.get("raw") if isinstance(data.get("raw"), dict) else {}
    size = _number(raw.get("length"))
    if math.isnan(size):
        size = _number(header.get("packet_size", data.get("packet_size")))
    frames = data.get("frames")
    return Packet(type=kind, number=_int(header.get("packet_number", data.get("packet_number"))),
                  size=size, version=_int(header.get("version")),
                  scid=_cid(header.get("scid")), dcid=_cid(header.get("dcid")),
                  frames=tuple(f for f in frames if isinstance(f, dict)) if isinstance(frames, list) else ())


def _cid(v: Any) -> str | None:
    return v.lower().replace(":", "") if isinstance(v, str) and v else None


_LARGEST = 1 << 62          # QUIC's variable-length integers stop here (RFC 9000 section 16)


def _int(v: Any) -> int | None:
    """A QUIC integer (0 to 2**62) from a number or a decimal or 0x-hex string; None for anything else."""
    if isinstance(v, bool):
        return None
    if isinstance(v, float):
        v = int(v) if math.isfinite(v) and v == int(v) else None
    elif isinstance(v, str):
        s = v.strip().lower()
        try:
            v = int(s, 16) if s.startswith("0x") else int(s) if s.isascii() and s.isdigit() else None
        except ValueError:
            return None
    return v if isinstance(v, int) and 0 <= v < _LARGEST else None


def _number(v: Any) -> float:
    n = _int(v)
    return float(n) if n is not None else NAN


def _true(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.lower() == "true")


def frame_type(f: dict) -> str:
    t = f.get("frame_type", f.get("type"))
    return str(t).lower() if t is not None else "unknown"


def stream_of(f: dict) -> int | None:
    return _int(f.get("stream_id", f.get("id")))


# --------------------------------------------------------------------------- QUIC versions

def ietf(v: int | None) -> bool:
    return v is not None and 0 <= v < 1 << 32 and versions.family(v) == "ietf"


# --------------------------------------------------------------------------- one connection

@dataclass
class _Stream:
    """One HTTP/3 request stream, from both directions' frames."""

    req_headers: dict | None = None
    resp_headers: dict | None = None
    req_at: float = NAN
    resp_at: float = NAN
    req_body: int = 0
    resp_body: int = 0
    first: dict = field(default_factory=lambda: {"c2s": NAN, "s2c": NAN})
    last: dict = field(default_factory=lambda: {"c2s": NAN, "s2c": NAN})
    fin: dict = field(default_factory=lambda: {"c2s": NAN, "s2c": NAN})

    def saw(self, d: str, t: float) -> None:
        if math.isnan(self.first[d]) or t < self.first[d]:
            self.first[d] = t
        if math.isnan(self.last[d]) or t > self.last[d]:
            self.last[d] = t


class _Conn:
    """One connection: the chosen vantage point's events and what they add up to."""

    def __init__(self, traces: list[QlogTrace], others: list[QlogTrace]):
        self.traces, self.others = traces, others
        self.vantage = traces[0].vantage
        self.local = self.vantage if self.vantage in ("client", "server") else (traces[0].flow or "client")
        events = [ev for t in traces for ev in t.events]
        events.sort(key=lambda ev: ev.time)          # stable: file order among equal times
        self.events = events
        # each event's direction and, for a packet event, its packet: read once, used by every table
        self.dirs = [self.direction(ev) for ev in events]
        self.packets = [packet_of(ev.data) if ev.name in PACKET_EVENTS or ev.name in _OTHER_PACKET_EVENTS
                        else None for ev in events]
        self.start = events[0].time if events else NAN
        self.end = events[-1].time if events else NAN
        self.clock = traces[0].clock

    @classmethod
    def build(cls, traces: list[QlogTrace], warnings: list[str]) -> "_Conn | None":
        best = min(PREFERRED_VANTAGE.index(t.vantage) for t in traces)
        chosen = [t for t in traces if PREFERRED_VANTAGE.index(t.vantage) == best]
        others = [t for t in traces if PREFERRED_VANTAGE.index(t.vantage) != best]
        if chosen[0].vantage == "unknown":
            warnings.append(describe(chosen[0].file, "the trace names no vantage point; "
                                                     "its sent packets are taken as the client's"))
        conn = cls(chosen, others)
        return conn if conn.events else None

    def direction(self, ev: QlogEvent) -> str | None:
        """c2s / s2c for an event that sends or receives, else None."""
        name = ev.name
        if name.endswith(("_sent", "_created")):
            mine = True
        elif name.endswith(("_received", "_parsed", "_dropped", "_buffered")):
            mine = False
        else:
            return None
        return "c2s" if (self.local == "client") == mine else "s2c"

    # ---------------------------------------------------------------- facts

    @cached_property
    def facts(self) -> dict:
        """What the connection's events add up to, read once for the quic and connections rows."""
        f: dict[str, Any] = {"version": None, "retry": False, "vn": False, "zero_rtt": False,
                             "alpn_offered": None, "alpn": None, "client": None, "server": None, "sni": None,
                             "packets": {"c2s": 0, "s2c": 0}, "packet_bytes": {"c2s": 0, "s2c": 0},
                             "datagrams": {"c2s": 0, "s2c": 0}, "datagram_bytes": {"c2s": 0, "s2c": 0},
                             "datagram_events": False, "first_initial": NAN, "client_finished": NAN,
                             "protected": 0, "protected_with_frames": 0, "close": None, "closed_by": None,
                             "closed_event": None, "h3": False, "one_rtt": False}
        for ev, direction, packet in zip(self.events, self.dirs, self.packets):
            d, cat, name = ev.data, ev.category, ev.name
            if cat in H3_CATEGORIES:
                f["h3"] = True
                continue
            if name in PACKET_EVENTS:
                self._packet_facts(f, ev, direction, packet)
            elif name in ("datagrams_sent", "datagrams_received", "datagram_sent", "datagram_received"):
                self._datagram_facts(f, d, direction)
            elif name in ("connection_started", "connection_new"):
                self._endpoints(f, d)
                if f["version"] is None:
                    f["version"] = _int(d.get("quic_version", d.get("version")))
            elif name == "version_information":
                if _int(d.get("chosen_version")) is not None:
                    f["version"] = _int(d.get("chosen_version"))
                if isinstance(d.get("server_versions"), list) and d["server_versions"]:
                    f["vn"] = True
            elif name == "alpn_information":
                offered = _alpns(d.get("client_alpns"))
                if offered:
                    f["alpn_offered"] = offered
                chosen = _alpn(d.get("chosen_alpn"))
                if chosen:
                    f["alpn"] = chosen
            elif name.lower() == "alpn_update" and _alpn(d.get("new")):
                f["alpn"] = _alpn(d.get("new"))
            elif name == "parameters_set":
                if f["version"] is None and _int(d.get("version")) is not None:
                    f["version"] = _int(d.get("version"))
                if _alpn(d.get("alpn")) and str(d.get("owner", "remote")) == ("remote" if self.local == "client" else "local"):
                    f["alpn"] = _alpn(d.get("alpn"))
            elif name in ("connection_closed", "connection_close") and f["closed_event"] is None:
                f["closed_event"] = d
            for key in ("sni", "server_name"):
                if isinstance(d.get(key), str) and f["sni"] is None:
                    f["sni"] = d[key]
        if f["alpn"] is None and f["alpn_offered"] and len(f["alpn_offered"]) == 1 and f["one_rtt"]:
            # QUIC requires ALPN (RFC 9001 section 8.1): a completed handshake with a single
            # offer means the server chose it, though this trace does not log the choice.
            f["alpn"] = f["alpn_offered"][0]
        return f

    @staticmethod
    def _packet_facts(f: dict, ev: QlogEvent, d: str | None, p: Packet) -> None:
        if d is None:
            return
        f["packets"][d] += 1
        if not math.isnan(p.size):
            f["packet_bytes"][d] += int(p.size)
        if f["version"] is None and p.version:
            f["version"] = p.version
        kind = p.type
        if kind == "retry":
            f["retry"] = True
        elif kind == "version_negotiation":
            f["vn"] = True
        elif kind == "0-RTT" and d == "c2s":
            f["zero_rtt"] = True
        elif kind == "1-RTT":
            f["one_rtt"] = True
        if kind == "initial" and d == "c2s" and math.isnan(f["first_initial"]):
            f["first_initial"] = ev.time
        if kind == "handshake" and d == "c2s" and math.isnan(f["client_finished"]) and \
                (not p.frames or any(frame_type(x) == "crypto" for x in p.frames)):
            f["client_finished"] = ev.time
        if kind in ("handshake", "0-RTT", "1-RTT"):
            f["protected"] += 1
            f["protected_with_frames"] += bool(p.frames)
        for fr in p.frames:
            if frame_type(fr) == "connection_close" and f["close"] is None:
                f["close"], f["closed_by"] = close_name(fr), ("client" if d == "c2s" else "server")

    @staticmethod
    def _datagram_facts(f: dict, d: dict, direction: str | None) -> None:
        if direction is None:
            return
        f["datagram_events"] = True
        raws = d.get("raw")
        raws = raws if isinstance(raws, list) else [raws] if isinstance(raws, dict) else []
        count = _int(d.get("count"))
        f["datagrams"][direction] += count if count is not None else max(1, len(raws))
        for r in raws:
            if isinstance(r, dict):
                n = _int(r.get("payload_length", r.get("length")))
                f["datagram_bytes"][direction] += n or 0
        if not raws and _int(d.get("byte_length")) is not None:
            f["datagram_bytes"][direction] += _int(d.get("byte_length"))

    def _endpoints(self, f: dict, d: dict) -> None:
        src = _endpoint(d.get("src_ip"), d.get("src_port"))
        dst = _endpoint(d.get("dst_ip"), d.get("dst_port"))
        # the trace's own end is ``src`` (quic-go, pcap2qlog with flow=client)
        local, remote = src, dst
        if src is None and dst is None:
            return
        f["client"], f["server"] = (local, remote) if self.local == "client" else (remote, local)

    # ---------------------------------------------------------------- rows

    def quic_row(self, conn: int) -> dict:
        f = self.facts
        hs = (f["client_finished"] - f["first_initial"]) * 1000
        done = f["one_rtt"] or not math.isnan(f["client_finished"])
        if f["close"] is not None:
            close = f["close"]
        elif f["closed_event"] is not None:
            close = _closed_event(f["closed_event"])
        else:
            close = "open"
        return {
            "conn": conn, "client": f["client"], "server": f["server"],
            "version": _version_hex(f["version"]), "version_name": _version_name(f["version"]),
            "sni": f["sni"], "alpn_offered": f["alpn_offered"], "alpn": f["alpn"],
            "handshake_ms": hs if not math.isnan(hs) and hs >= 0 else NAN,
            # round trips before the client could send its request: one, plus one for a Retry
            # and one for Version Negotiation; none with 0-RTT
            "rtts": (0 if f["zero_rtt"] else 1 + f["retry"] + f["vn"]) if done else pd.NA,
            "retry": f["retry"], "version_negotiation": f["vn"], "zero_rtt": f["zero_rtt"],
            "resumed": True if f["zero_rtt"] else pd.NA,
            # an endpoint's log shows the frames of the packets it protected or removed protection from
            "decrypted": bool(f["protected_with_frames"]) if f["protected"] else pd.NA,
            "packets": f["packets"]["c2s"] + f["packets"]["s2c"],
            "bytes_c2s": self._bytes(f, "c2s"), "bytes_s2c": self._bytes(f, "s2c"),
            "close": close,
            "closed_by": f["closed_by"], "vantage": self.vantage, "odcid": self.traces[0].group,
        }

    @staticmethod
    def _bytes(f: dict, d: str) -> int:
        """UDP payload bytes: the datagrams' when the trace logs datagrams, else its packets' sizes
        (coalesced packets add up to their datagram)."""
        return f["datagram_bytes"][d] if f["datagram_events"] else f["packet_bytes"][d]

    def connection_row(self, conn: int) -> dict:
        f = self.facts
        version = f["version"]
        app = "h3" if f["h3"] or (f["alpn"] or "").startswith("h3") else "quic"
        return {
            "conn": conn, "transport": "quic", "client": f["client"], "server": f["server"],
            "client_by": "qlog" if f["client"] else None, "start": self.start, "end": self.end,
            "packets": f["packets"]["c2s"] + f["packets"]["s2c"],
            "packets_c2s": f["packets"]["c2s"], "packets_s2c": f["packets"]["s2c"],
            "bytes_c2s": self._bytes(f, "c2s"), "bytes_s2c": self._bytes(f, "s2c"),
            "app": app, "sni": f["sni"], "alpn": f["alpn"],
            "tls_version": "TLS 1.3" if ietf(version) else None,
            "frames_c2s": f["datagrams"]["c2s"] if f["datagram_events"] else pd.NA,
            "frames_s2c": f["datagrams"]["s2c"] if f["datagram_events"] else pd.NA,
            "vantage": self.vantage,
        }

    def event_rows(self, conn: int) -> list[tuple]:
        rows = []
        for ev, d, p in zip(self.events, self.dirs, self.packets):
            stream = _int(ev.data.get("stream_id"))
            ptype = pnum = frames = None
            if ev.category in H3_CATEGORIES:
                layer = "h3"
                kind, size, detail = _h3_row(ev)
            else:
                layer = "quic"
                kind = ev.name
                if p is not None:
                    ptype, pnum = p.type, p.number
                    frames = [frame_type(f).upper() for f in p.frames]
                    size = int(p.size) if not math.isnan(p.size) else None
                    detail = _packet_detail(p, ev.data)
                else:
                    size, detail = None, _summary(ev.data)
            rows.append((ev.time, conn, stream, layer, kind, d, size, detail, ptype, pnum, frames, self.vantage))
        return rows

    def request_rows(self, conn: int) -> list[dict]:
        streams: dict[int, _Stream] = defaultdict(_Stream)
        for ev, d, p in zip(self.events, self.dirs, self.packets):
            if d is None:
                continue
            if ev.category in H3_CATEGORIES and ev.name in ("frame_created", "frame_parsed"):
                self._h3_frame(streams, ev, d)
            elif ev.name in PACKET_EVENTS:
                for fr in p.frames:
                    if frame_type(fr) == "stream":
                        sid = stream_of(fr)
                        if sid is not None and sid % 4 == 0 and sid in streams:
                            s = streams[sid]
                            s.saw(d, ev.time)
                            if _true(fr.get("fin")) and math.isnan(s.fin[d]):
                                s.fin[d] = ev.time
        rows = []
        for sid, s in streams.items():
            if s.req_headers is None:
                continue
            rows.append(self._request(conn, sid, s))
        rows.sort(key=lambda r: (_order(r["start"]), r["stream"]))
        for i, r in enumerate(rows):
            r["reused_connection"] = i > 0
        return rows

    @staticmethod
    def _h3_frame(streams: dict, ev: QlogEvent, d: str) -> None:
        sid = _int(ev.data.get("stream_id"))
        frame = ev.data.get("frame") if isinstance(ev.data.get("frame"), dict) else {}
        if sid is None or sid % 4 != 0:        # client-initiated bidirectional streams carry requests
            return
        kind = frame_type(frame)
        if kind not in ("headers", "data") and sid not in streams:
            return
        s = streams[sid]
        s.saw(d, ev.time)
        if kind == "headers":
            headers = _headers(frame)
            if d == "c2s" and s.req_headers is None:
                s.req_headers, s.req_at = headers, ev.time
            elif d == "s2c":
                status = headers.get(":status", "")
                if s.resp_headers is None and not (status.isdigit() and status.startswith("1")):
                    s.resp_headers, s.resp_at = headers, ev.time
        elif kind == "data":
            n = _int(ev.data.get("length", frame.get("length")))
            if n is None:
                raw = ev.data.get("raw") if isinstance(ev.data.get("raw"), dict) else {}
                n = _int(raw.get("payload_length", raw.get("length")))
            if d == "c2s":
                s.req_body += n or 0
            else:
                s.resp_body += n or 0

    def _request(self, conn: int, sid: int, s: _Stream) -> dict:
        h = s.req_headers or {}
        start = _least(s.req_at, s.first["c2s"])
        sent = s.fin["c2s"] if not math.isnan(s.fin["c2s"]) else s.last["c2s"]
        first_byte = _least(s.resp_at, s.first["s2c"]) if s.resp_headers is not None else NAN
        end = s.fin["s2c"] if not math.isnan(s.fin["s2c"]) else s.last["s2c"]
        if s.resp_headers is None:
            end = NAN
        status = (s.resp_headers or {}).get(":status", "")
        authority = h.get(":authority") or h.get("host") or self.facts["sni"]
        scheme, path, method = h.get(":scheme") or "https", h.get(":path"), h.get(":method")
        if method == "CONNECT" and path is None:
            url = authority
        elif path is not None and authority:
            url = f"{scheme}://{authority}{path}" if path.startswith("/") else path
        else:
            url = path
        ctype = (s.resp_headers or {}).get("content-type")
        row = {
            "conn": conn, "stream": sid, "protocol": "h3", "method": method, "host": authority, "url": url,
            "status": int(status) if status.isascii() and status.isdigit() and len(status) == 3 else pd.NA,
            "start": start, "ttfb": first_byte - start if not math.isnan(first_byte) else NAN, "end": end,
            "req_bytes": s.req_body, "resp_bytes": s.resp_body if s.resp_headers is not None else pd.NA,
            "source": "qlog",
            "content_type": ctype.split(";")[0].strip().lower() if ctype else None,
        }
        row.update(phases(_none(start), _none(sent), _none(first_byte), _none(end)))
        return row


def _least(a: float, b: float) -> float:
    if math.isnan(a):
        return b
    return a if math.isnan(b) else min(a, b)


def _none(t: float) -> float | None:
    return None if math.isnan(t) else t


def _headers(frame: dict) -> dict[str, str]:
    """A HEADERS frame's fields as {name: value} (names lower-case, the first of a repeated name kept)."""
    raw = frame.get("headers", frame.get("fields"))
    out: dict[str, str] = {}
    if not isinstance(raw, list):
        return out
    for item in raw:
        if isinstance(item, dict):
            name, value = item.get("name"), item.get("value")
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            name, value = item
        else:
            continue
        if isinstance(name, str) and isinstance(value, (str, int)):
            out.setdefault(name.lower(), str(value))
    return out


def _endpoint(ip: Any, port: Any) -> str | None:
    p = _int(port)
    if not isinstance(ip, str) or not ip or p is None:
        return None
    return f"[{ip}]:{p}" if ":" in ip else f"{ip}:{p}"


def _alpn(v: Any) -> str | None:
    if isinstance(v, dict):
        v = v.get("string_value", v.get("byte_value"))
    return v if isinstance(v, str) and v else None


def _alpns(v: Any) -> list[str] | None:
    if not isinstance(v, list):
        return None
    out = [a for a in (_alpn(x) for x in v) if a]
    return out or None


def close_name(frame: dict) -> str:
    """A CONNECTION_CLOSE frame's error, by name where the RFCs name it."""
    code = frame.get("error_code")
    if isinstance(code, str) and code and not code.isdigit() and not code.lower().startswith("0x"):
        return code
    n = _int(frame.get("raw_error_code", code))
    if n is None:
        n = _int(code)
    if n is None:
        return "closed"
    space = str(frame.get("error_space", "")).lower()
    if space.startswith("app"):
        name = h3_error_name(n)
        return name if not name.startswith("0x") else f"application error 0x{n:x}"
    name = transport_error_name(n)
    return name if not name.startswith("0x") else f"transport error 0x{n:x}"


def _version_hex(v: int | None) -> str | None:
    return versions.hex_version(v) if v is not None and 0 <= v < 1 << 32 else None


def _version_name(v: int | None) -> str | None:
    return versions.name(v) if v is not None and 0 <= v < 1 << 32 else None


def _closed_event(d: dict) -> str:
    trigger = str(d.get("trigger", "")).lower()
    if "idle" in trigger:
        return "idle"
    for key in ("connection_code", "application_code", "error_code"):
        if d.get(key) is not None:
            return close_name({"error_code": d[key],
                               "error_space": "application" if key == "application_code" else "transport"})
    return trigger or "closed"


# --------------------------------------------------------------------------- event rows

def _packet_detail(p: Packet, data: dict) -> str:
    head = (p.type or "packet") + (f" #{p.number}" if p.number is not None else "")
    names = []
    for fr in p.frames[:12]:
        t = frame_type(fr)
        sid = stream_of(fr)
        label = t.upper()
        if sid is not None and t in ("stream", "reset_stream", "stop_sending", "max_stream_data", "stream_data_blocked"):
            label += f" {sid}" + (" fin" if _true(fr.get("fin")) else "")
        elif t == "connection_close":
            label += f" {close_name(fr)}"
        names.append(label)
    if len(p.frames) > 12:
        names.append(f"+{len(p.frames) - 12} more")
    trigger = data.get("trigger")
    tail = f" ({trigger})" if isinstance(trigger, str) and trigger else ""
    return f"{head}: {', '.join(names)}{tail}" if names else head + tail


def _h3_row(ev: QlogEvent) -> tuple[str, int | None, str | None]:
    d = ev.data
    frame = d.get("frame") if isinstance(d.get("frame"), dict) else None
    if ev.name in ("frame_created", "frame_parsed") and frame is not None:
        kind = frame_type(frame).upper()
        size = _int(d.get("length", frame.get("length")))
        if kind == "HEADERS":
            h = _headers(frame)
            detail = h.get(":status") or " ".join(x for x in (h.get(":method"), h.get(":path")) if x) or "trailers"
        elif kind == "SETTINGS":
            settings = frame.get("settings")
            detail = ", ".join(f"{s.get('name')}={s.get('value')}" for s in settings
                               if isinstance(s, dict))[:200] if isinstance(settings, list) else None
        else:
            detail = _summary({k: v for k, v in frame.items() if k != "frame_type"}) or None
        return kind, size, detail
    return ev.name, None, _summary(d)


def _summary(data: dict, most: int = 200) -> str | None:
    """An event's data in one short line: its plain values as key=value."""
    parts = []
    for k, v in data.items():
        if isinstance(v, (str, int, float, bool)):
            parts.append(f"{k}={v}")
        elif isinstance(v, list) and all(isinstance(x, (str, int, float)) for x in v[:8]):
            parts.append(f"{k}={','.join(map(str, v[:8]))}" + ("…" if len(v) > 8 else ""))
        if sum(len(p) + 1 for p in parts) > most:
            break
    text = " ".join(parts)
    return (text[:most] + "…" if len(text) > most else text) or None


# --------------------------------------------------------------------------- tables and facts

_EVENT_EXTRAS = ("packet_type", "packet_number", "frames", "vantage")   # frames: a packet's frame types


def _events_frame(rows: list[tuple]) -> pd.DataFrame:
    if not rows:
        df = empty_table("events")
        for col in _EVENT_EXTRAS:
            df[col] = pd.Series(dtype="Int64" if col == "packet_number" else "object")
        return df
    df = pd.DataFrame(rows, columns=["ts", "conn", "stream", "layer", "kind", "dir", "size", "detail",
                                     *_EVENT_EXTRAS], dtype=object)
    df = df.sort_values("ts", kind="stable").reset_index(drop=True)
    df["packet_number"] = df["packet_number"].astype("Int64")
    return conform("events", df)


def _frame(table: str, rows: list[dict]) -> pd.DataFrame:
    """Rows as a table; text stays Python objects (None, not NaN) as in every other table."""
    if not rows:
        return empty_table(table)
    return conform(table, pd.DataFrame(rows, dtype=object))


def _detail(q: QlogFile, conns: list[_Conn], used: int) -> dict:
    vantages = Counter(t.vantage for t in q.traces)
    chosen = Counter(c.vantage for c in conns)
    not_counted = []
    for n, c in enumerate(conns):
        for t in c.others:
            not_counted.append(f"conn {n}: the {t.vantage} trace ({len(t.events)} events) is the same "
                               f"connection seen from the other end")
    return {
        "qlog_version": q.version,
        "qlog_format": q.format,
        "files": q.files,
        "traces": len(q.traces),
        "vantage_points": dict(vantages),
        "vantage": next(iter(chosen)) if len(chosen) == 1 else ("mixed" if chosen else None),
        "software": sorted({t.software for t in q.traces if t.software}),
        "clock": "wall" if all(c.clock == "wall" for c in conns) else "relative",
        "events_read": sum(len(t.events) for t in q.traces),
        "events": used,
        "event_categories": dict(Counter(ev.category or "?" for c in conns for ev in c.events)),
        "not_counted": not_counted,
        "quic_connections": len(conns),
    }
