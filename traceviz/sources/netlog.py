"""Chrome NetLog files (``chrome://net-export``, ``--log-net-log``) in, records out.

A NetLog is ``{"constants": {...}, "events": [...]}``: every event names its
type, its phase (begin, end or none) and its *source* (a URL request, a
stream job, a socket, an HTTP/2 or QUIC session...) by number, with the
numbers' names in ``constants``.  Times are milliseconds of Chrome's tick
clock as strings; ``constants.timeTickOffset`` maps them to epoch
milliseconds.  Sources point at each other with ``source_dependency``.

This reader folds each source's events into one record, as ``chrome.py``
does for DevTools: a ``NetRequest`` per URL-request hop (a redirect starts a
new hop), a ``NetSocket`` per TCP socket, a ``NetSession`` per HTTP/2 or QUIC
session, and follows the sources' links so a request names the socket or
QUIC session that carried it.  The folding follows the format's rules (which
event opens a hop, which link binds a job to a socket), so it lives here; the
assembler (``assemble/netlog.py``) turns the records into tables.

A log Chrome was still writing when it stopped ends without its closing
``]}``: it is read up to its last whole event, with a warning.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from traceviz.errors import InputError, describe
from traceviz.sources import jsonfile
from traceviz.sources.jsonfile import signed, text

BEGIN, END, NONE = "begin", "end", "none"
_LATEST = 7.3e9               # 2201: a later time is junk

# TLS handshake message types (RFC 8446 section 4), for SSL_HANDSHAKE_MESSAGE_* events.
TLS_MESSAGES = {1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket", 5: "EndOfEarlyData",
                8: "EncryptedExtensions", 11: "Certificate", 13: "CertificateRequest", 15: "CertificateVerify",
                20: "Finished", 24: "KeyUpdate"}

# Source types that only connect a request to its socket or session: the links are followed through them.
_JOB_TYPES = frozenset({"HTTP_STREAM_JOB", "HTTP_STREAM_POOL_JOB", "HTTP_STREAM_POOL_ATTEMPT_MANAGER",
                        "HTTP_STREAM_POOL_QUIC_ATTEMPT", "TCP_STREAM_ATTEMPT", "TLS_STREAM_ATTEMPT",
                        "SSL_CONNECT_JOB", "TCP_CONNECT_JOB", "TRANSPORT_CONNECT_JOB", "SOCKS_CONNECT_JOB",
                        "HTTP_PROXY_CONNECT_JOB", "QUIC_SESSION_POOL_DIRECT_JOB", "QUIC_SESSION_POOL_JOB"})


@dataclass(frozen=True, slots=True)
class NetStep:
    """Something that happened on a socket or session, for the ``events`` table.

    Fields: time (epoch s), layer (tcp, tls, h2, quic), kind (connect, ClientHello,
    HEADERS, packet_sent...), dir (c2s/s2c or None), size (bytes or None),
    stream (HTTP/2 or QUIC stream id or None), detail (text or None).
    """

    time: float
    layer: str
    kind: str
    dir: str | None = None
    size: int | None = None
    stream: int | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class NetSocket:
    """A TCP socket (source type SOCKET).

    Fields:
      id: its NetLog source id (DevTools calls it ``connectionId``)
      start, end: SOCKET_ALIVE's begin and end (epoch s; NaN)
      local, remote: ``ip:port`` of each end (IPv6 bracketed), or None
      connect: (begin, end) of TCP_CONNECT; tls: of SSL_CONNECT (NaN where absent)
      tls_version, cipher (IANA number), alpn (``next_proto``), resumed: SSL_CONNECT's end
      bytes_sent, bytes_received: SOCKET_BYTES_SENT / _RECEIVED totals (TCP payload)
      first_job: the stream job the socket was first handed to (SOCKET_IN_USE), or None
      steps: connect, TLS messages, close
    """

    id: int
    start: float
    end: float
    local: str | None
    remote: str | None
    connect: tuple[float, float]
    tls: tuple[float, float]
    tls_version: str | None
    cipher: int | None
    alpn: str | None
    resumed: bool | None
    bytes_sent: int
    bytes_received: int
    first_job: int | None
    steps: tuple[NetStep, ...]


@dataclass(frozen=True, slots=True)
class NetSession:
    """An HTTP/2 session (source HTTP2_SESSION) or a QUIC session (QUIC_SESSION).

    Fields:
      id: its NetLog source id
      kind: ``h2`` or ``quic``
      host: the origin it serves (``host`` or ``host:port``), or None
      start, end: the session's begin and end (epoch s; NaN)
      socket: the socket an HTTP/2 session runs on, or None
      streams: {stream job or URL request source id: stream id}, from the HEADERS it sent
      version: a QUIC session's negotiated version as Chrome writes it (``RFCv1``...), or None
      local, remote: a QUIC session's ``ip:port`` ends, or None
      packets_sent, packets_received, bytes_sent, bytes_received: a QUIC session's totals
      close: a QUIC session's close error (``quic_error``/``net_error`` name), or None
      steps: frames and packets
    """

    id: int
    kind: str
    host: str | None
    start: float
    end: float
    socket: int | None = None
    streams: dict = field(default_factory=dict)
    version: str | None = None
    local: str | None = None
    remote: str | None = None
    packets_sent: int = 0
    packets_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    close: str | None = None
    steps: tuple[NetStep, ...] = ()


@dataclass(frozen=True, slots=True)
class NetRequest:
    """One hop of a URL request (a redirect ends a hop and starts the next).

    Fields:
      id: the URL_REQUEST's source id; hop: 0, 1... along its redirects
      url, method, priority, initiator, request_type: as URL_REQUEST_START_JOB / REQUEST_ALIVE say
      start: when the hop began (REQUEST_ALIVE for the first, URL_REQUEST_START_JOB after a redirect)
      send: (begin, end) of HTTP_TRANSACTION_SEND_REQUEST (NaN when not sent)
      headers_at: when the response headers were read (NaN)
      end: when the hop ended (NaN while still running)
      status: the response status (NaN), status_line: its first header line
      headers: the response headers as (name, value), names lower-case
      error: the net error name (``ERR_NAME_NOT_RESOLVED``...) when it failed, else None
      body_bytes: decoded body bytes read (URL_REQUEST_JOB_FILTERED_BYTES_READ)
      received_bytes: raw body bytes read (URL_REQUEST_JOB_BYTES_READ; NaN when not logged)
      from_cache: served from Chrome's cache without the network
      job: the stream job that carried it, or None
      connection: ``socket:N`` or ``quic:N`` of the socket or QUIC session that carried it, or None
      protocol: h2, h3, http/1.1... as the session or socket negotiated it, or None
      stream: the HTTP/2 or QUIC stream id, or None
      dns: (begin, end) of the host resolution its connection waited for (NaN)
    """

    id: int
    hop: int
    url: str | None
    method: str | None
    priority: str | None
    initiator: str | None
    request_type: str | None
    start: float
    send: tuple[float, float]
    headers_at: float
    end: float
    status: float
    status_line: str | None
    headers: tuple[tuple[str, str], ...]
    error: str | None
    body_bytes: float
    received_bytes: float
    from_cache: bool
    job: int | None
    connection: str | None
    protocol: str | None
    stream: int | None
    dns: tuple[float, float]


@dataclass(frozen=True)
class NetLog:
    """A NetLog, read.

    Fields:
      path: the file
      requests: one ``NetRequest`` per hop, in the order they began
      sockets: {source id: ``NetSocket``} of the TCP sockets
      sessions: {source id: ``NetSession``} of the HTTP/2 and QUIC sessions
      browser: ``clientInfo``'s name and version, or None
      capture_mode: ``logCaptureMode`` (Default, IncludeSensitive, Everything), or None
      events: how many events the file holds; sources: how many sources they name
      source_types: events per source type name
      udp_sockets: UDP sockets (DNS) the log names
      truncated: whether the file ended early (read up to its last whole event)
      compressed, size: as for every JSON file
      warnings: one line each about what could not be read
    """

    path: str
    requests: tuple[NetRequest, ...]
    sockets: dict
    sessions: dict
    browser: str | None
    capture_mode: str | None
    events: int
    sources: int
    source_types: dict
    udp_sockets: int
    truncated: bool
    compressed: bool
    size: int
    warnings: tuple[str, ...] = ()


# ------------------------------------------------------------------ reading

def read_netlog(path: str) -> NetLog:
    """A Chrome NetLog file (maybe gzipped); ``InputError`` when it is not one."""
    path = str(path)
    data, gz = jsonfile.read_bytes(path)
    if not data.strip():
        raise InputError(path, "empty file")
    body = jsonfile.decode_text(path, data)
    del data
    truncated = False
    try:
        value = jsonfile.loads(path, body)
    except InputError as broken:
        value = _read_unfinished(path, body)
        if value is None:
            raise broken from None
        truncated = True
    return netlog_from_json(path, value, {"compressed": gz, "size": len(body), "truncated": truncated})


def _read_unfinished(path: str, body: str) -> Any:
    """The events of a log cut off while Chrome wrote it: up to the last whole line, closed by ``]}``."""
    if not body.lstrip().startswith('{"constants"') and '"constants"' not in body[:200]:
        return None
    cut = body.rfind("\n", 0, len(body.rstrip()))
    for _ in range(3):      # Chrome writes one event per line: the last line or two were cut
        if cut <= 0:
            break
        head = body[:cut].rstrip().rstrip(",")
        try:
            return jsonfile.loads(path, head + "]}")
        except InputError:
            cut = body.rfind("\n", 0, cut)
    return None


def netlog_from_json(path: str, value: Any, facts: dict | None = None) -> NetLog:
    """Read an already parsed NetLog."""
    facts = facts or {}
    if not isinstance(value, dict) or not isinstance(value.get("constants"), dict) \
            or not isinstance(value.get("events"), list):
        raise InputError(path, f"not a Chrome NetLog: {jsonfile.what_it_is(value)}")
    c = value["constants"]
    names = _Names(c)
    if not names.event_types:
        raise InputError(path, "not a Chrome NetLog: its constants name no event types")
    warnings: list[str] = []
    if facts.get("truncated"):
        warnings.append(describe(path, "the log ends early (Chrome was still writing it); "
                                       "read up to its last whole event"))
    offset = signed(c.get("timeTickOffset"))
    if math.isnan(offset):
        offset = 0.0
        warnings.append(describe(path, "no timeTickOffset: times are Chrome's tick clock, not wall time"))
    by_source: dict[int, list[tuple]] = defaultdict(list)
    types: dict[int, str] = {}
    counts: dict[str, int] = defaultdict(int)
    bad = 0
    for e in value["events"]:
        ev = _event(e, names, offset)
        if ev is None:
            bad += 1
            continue
        sid, stype = ev[0], ev[1]
        types.setdefault(sid, stype)
        counts[stype] += 1
        by_source[sid].append(ev[2:])
    if bad:
        warnings.append(describe(path, f"{bad} events are not NetLog events (no source, type or time); skipped"))
    if not by_source and value["events"]:
        raise InputError(path, "a Chrome NetLog without one readable event")
    log = _Folder(by_source, types, names)
    client = c.get("clientInfo") if isinstance(c.get("clientInfo"), dict) else {}
    browser = " ".join(x for x in (text(client.get("name")), text(client.get("version"))) if x) or None
    return NetLog(path=path, requests=tuple(log.requests()), sockets=log.sockets, sessions=log.sessions,
                  browser=browser, capture_mode=text(c.get("logCaptureMode")),
                  events=len(value["events"]), sources=len(by_source), source_types=dict(counts),
                  udp_sockets=sum(1 for t in types.values() if t == "UDP_SOCKET"),
                  truncated=bool(facts.get("truncated")), compressed=bool(facts.get("compressed")),
                  size=int(facts.get("size", 0)), warnings=tuple(warnings))


class _Names:
    """The constants' numbers by name, turned around."""

    def __init__(self, c: dict):
        self.event_types = _reverse(c.get("logEventTypes"))
        self.source_types = _reverse(c.get("logSourceType"))
        phases = _reverse(c.get("logEventPhase"))
        self.phases = {k: {"PHASE_BEGIN": BEGIN, "PHASE_END": END}.get(v, NONE) for k, v in phases.items()} \
            or {1: BEGIN, 2: END, 0: NONE}
        self.errors = _reverse(c.get("netError"))


def _reverse(d: Any) -> dict[int, str]:
    if not isinstance(d, dict):
        return {}
    return {v: k for k, v in d.items() if isinstance(v, int) and not isinstance(v, bool) and isinstance(k, str)}


def _event(e: Any, names: _Names, offset: float) -> tuple | None:
    """(source id, source type, time, event type, phase, params), or None for junk."""
    if not isinstance(e, dict):
        return None
    src = e.get("source")
    if not isinstance(src, dict):
        return None
    sid, etype = src.get("id"), e.get("type")
    if not isinstance(sid, int) or isinstance(sid, bool) or not 0 <= sid < 2 ** 53 \
            or not isinstance(etype, int) or isinstance(etype, bool):
        return None
    t = (signed(e.get("time")) + offset) / 1000.0
    if not 0 <= t < _LATEST:             # NaN or no time a log could hold
        return None
    stype = names.source_types.get(src.get("type"), "UNKNOWN") if isinstance(src.get("type"), int) else "UNKNOWN"
    params = e.get("params")
    phase = e.get("phase")
    return (sid, stype, t, names.event_types.get(etype, f"EVENT_{etype}"),
            names.phases.get(phase, NONE) if isinstance(phase, int) else NONE,
            params if isinstance(params, dict) else {})


def _int(v: Any) -> int | None:
    n = signed(v)
    return int(n) if not math.isnan(n) and n == int(n) and abs(n) < 2 ** 53 else None


def _dependency(params: dict) -> int | None:
    dep = params.get("source_dependency")
    if isinstance(dep, dict) and isinstance(dep.get("id"), int) and not isinstance(dep.get("id"), bool):
        return dep["id"]
    return None


def _address(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


# ------------------------------------------------------------------ folding sources into records

class _Folder:
    """Each source's events into its record, and the links between them."""

    def __init__(self, by_source: dict, types: dict, names: _Names):
        self.by_source, self.types, self.names = by_source, types, names
        self.sockets: dict[int, NetSocket] = {}
        self.sessions: dict[int, NetSession] = {}
        for sid, stype in types.items():
            if stype == "SOCKET":
                self.sockets[sid] = self._socket(sid, by_source[sid])
            elif stype == "HTTP2_SESSION":
                self.sessions[sid] = self._h2_session(sid, by_source[sid])
            elif stype == "QUIC_SESSION":
                self.sessions[sid] = self._quic_session(sid, by_source[sid])

    def error_name(self, code: Any) -> str | None:
        n = _int(code)
        if n is None or n >= 0:
            return None
        return self.names.errors.get(n, f"net error {n}")

    # ---------------------------------------------------------------- sockets and sessions

    def _socket(self, sid: int, events: list) -> NetSocket:
        start = end = math.nan
        local = remote = None
        connect, tls = [math.nan, math.nan], [math.nan, math.nan]
        version = alpn = None
        cipher = None
        resumed = None
        sent = received = 0
        first_job = None
        steps: list[NetStep] = []
        for t, kind, phase, p in events:
            if kind == "SOCKET_ALIVE":
                if phase == BEGIN:
                    start = t
                elif phase == END:
                    end = t
            elif kind == "TCP_CONNECT":
                if phase == BEGIN:
                    connect[0] = t
                    addrs = p.get("address_list")
                    if remote is None and isinstance(addrs, list) and len(addrs) == 1:
                        remote = _address(addrs[0])
                elif phase == END:
                    connect[1] = t
                    local = _address(p.get("local_address")) or local
                    remote = _address(p.get("remote_address")) or remote
                    steps.append(NetStep(t, "tcp", "connect", "c2s", None, None,
                                         f"{local or '?'} -> {remote or '?'}"
                                         + (f" failed: {self.error_name(p.get('net_error'))}"
                                            if self.error_name(p.get("net_error")) else "")))
            elif kind == "SSL_CONNECT":
                if phase == BEGIN:
                    tls[0] = t
                elif phase == END:
                    tls[1] = t
                    version, alpn = text(p.get("version")), text(p.get("next_proto"))
                    cipher = _int(p.get("cipher_suite"))
                    resumed = p.get("is_resumed") if isinstance(p.get("is_resumed"), bool) else None
                    err = self.error_name(p.get("net_error"))
                    steps.append(NetStep(t, "tls", "handshake", None, None, None,
                                         err or " ".join(x for x in (version, alpn, "resumed" if resumed else None) if x)
                                         or None))
            elif kind in ("SSL_HANDSHAKE_MESSAGE_SENT", "SSL_HANDSHAKE_MESSAGE_RECEIVED"):
                mtype = _int(p.get("type"))
                steps.append(NetStep(t, "tls", TLS_MESSAGES.get(mtype, f"handshake message {mtype}"),
                                     "c2s" if kind.endswith("SENT") else "s2c"))
            elif kind == "SOCKET_BYTES_SENT":
                sent += _int(p.get("byte_count")) or 0
            elif kind == "SOCKET_BYTES_RECEIVED":
                received += _int(p.get("byte_count")) or 0
            elif kind == "SOCKET_IN_USE" and phase == BEGIN and first_job is None:
                first_job = _dependency(p)
            elif kind in ("SOCKET_CLOSED", "SOCKET_POOL_CLOSING_SOCKET"):
                steps.append(NetStep(t, "tcp", "close", None, None, None, text(p.get("reason"))))
        return NetSocket(id=sid, start=start, end=end, local=local, remote=remote, connect=tuple(connect),
                         tls=tuple(tls), tls_version=version, cipher=cipher, alpn=alpn, resumed=resumed,
                         bytes_sent=sent, bytes_received=received, first_job=first_job, steps=tuple(steps))

    def _h2_session(self, sid: int, events: list) -> NetSession:
        start = end = math.nan
        host = None
        socket = None
        streams: dict[int, int] = {}
        steps: list[NetStep] = []
        for t, kind, phase, p in events:
            if kind == "HTTP2_SESSION":
                if phase == BEGIN:
                    start, host = t, text(p.get("host"))
                elif phase == END:
                    end = t
            elif kind == "HTTP2_SESSION_INITIALIZED":
                socket = _dependency(p)
            elif kind.startswith(("HTTP2_SESSION_SEND_", "HTTP2_SESSION_RECV_")) or kind == "HTTP2_SESSION_GOAWAY":
                step = _h2_step(t, kind, p)
                if step is not None:
                    steps.append(step)
                if kind == "HTTP2_SESSION_SEND_HEADERS":
                    job, stream = _dependency(p), _int(p.get("stream_id"))
                    if job is not None and stream is not None:
                        streams.setdefault(job, stream)
        return NetSession(id=sid, kind="h2", host=host, start=start, end=end, socket=socket,
                          streams=streams, steps=tuple(steps))

    def _quic_session(self, sid: int, events: list) -> NetSession:
        start = end = math.nan
        host = version = local = remote = close = None
        sent = received = bytes_sent = bytes_received = 0
        streams: dict[int, int] = {}
        steps: list[NetStep] = []
        for t, kind, phase, p in events:
            if kind == "QUIC_SESSION":
                if phase == BEGIN:
                    start = t
                    h, port = text(p.get("host")), _int(p.get("port"))
                    host = f"{h}:{port}" if h and port else h
                    versions = p.get("versions")
                    if isinstance(versions, str) and "," not in versions:
                        version = versions
                elif phase == END:
                    end = t
            elif kind == "QUIC_SESSION_VERSION_NEGOTIATED":
                version = text(p.get("version")) or version
            elif kind == "QUIC_SESSION_PACKET_SENT":
                sent += 1
                size = _int(p.get("size"))
                bytes_sent += size or 0
                steps.append(NetStep(t, "quic", "packet_sent", "c2s", size, None,
                                     _join(p.get("encryption_level"), _pn(p))))
            elif kind == "QUIC_SESSION_PACKET_RECEIVED":
                received += 1
                size = _int(p.get("size"))
                bytes_received += size or 0
                local = _address(p.get("self_address")) or local
                remote = _address(p.get("peer_address")) or remote
                steps.append(NetStep(t, "quic", "packet_received", "s2c", size))
            elif kind in ("QUIC_SESSION_CLOSED", "QUIC_SESSION_CONNECTION_CLOSE_FRAME_RECEIVED",
                          "QUIC_SESSION_CONNECTION_CLOSE_FRAME_SENT"):
                reason = text(p.get("quic_error")) or (str(p.get("quic_error")) if p.get("quic_error") is not None
                                                       else self.error_name(p.get("net_error")))
                if close is None and reason:
                    close = reason
                steps.append(NetStep(t, "quic", "CONNECTION_CLOSE" if "FRAME" in kind else "closed",
                                     "s2c" if kind.endswith("RECEIVED") else "c2s" if kind.endswith("SENT") else None,
                                     None, None, _join(reason, text(p.get("details")))))
            elif kind in ("QUIC_SESSION_STREAM_FRAME_SENT", "QUIC_SESSION_STREAM_FRAME_RECEIVED"):
                steps.append(NetStep(t, "quic", "STREAM", "c2s" if kind.endswith("SENT") else "s2c",
                                     _int(p.get("length")), _int(p.get("stream_id")),
                                     "fin" if p.get("fin") is True else None))
            elif kind == "QUIC_CHROMIUM_CLIENT_STREAM_SEND_REQUEST_HEADERS" or kind == "HTTP3_HEADERS_SENT":
                job, stream = _dependency(p), _int(p.get("stream_id", p.get("quic_stream_id")))
                if job is not None and stream is not None:
                    streams.setdefault(job, stream)
        return NetSession(id=sid, kind="quic", host=host, start=start, end=end, streams=streams,
                          version=version, local=local, remote=remote, packets_sent=sent,
                          packets_received=received, bytes_sent=bytes_sent, bytes_received=bytes_received,
                          close=close, steps=tuple(steps))

    # ---------------------------------------------------------------- requests

    def requests(self) -> list[NetRequest]:
        out = []
        for sid, stype in self.types.items():
            if stype == "URL_REQUEST":
                out.extend(self._hops(sid, self.by_source[sid]))
        out.sort(key=lambda r: (r.start if not math.isnan(r.start) else math.inf, r.id, r.hop))
        return out

    def _hops(self, sid: int, events: list) -> list[NetRequest]:
        hops: list[dict] = []
        alive = priority = None
        cur: dict | None = None
        for t, kind, phase, p in events:
            if kind == "REQUEST_ALIVE":
                if phase == BEGIN:
                    alive, priority = t, text(p.get("priority"))
                elif phase == END and cur is not None:
                    cur["end"] = t
                    cur["error"] = cur["error"] or self.error_name(p.get("net_error"))
                continue
            if kind == "URL_REQUEST_START_JOB" and phase == BEGIN:
                if cur is not None and math.isnan(cur["end"]):
                    cur["end"] = t          # a redirect: this hop ended where the next began
                cur = _new_hop(sid, len(hops), t if hops or alive is None else alive, p, priority)
                hops.append(cur)
                continue
            if cur is None:
                continue
            if kind == "URL_REQUEST_START_JOB" and phase == END:
                cur["error"] = cur["error"] or self.error_name(p.get("net_error"))
            elif kind == "HTTP_TRANSACTION_SEND_REQUEST":
                if phase == BEGIN and math.isnan(cur["send"][0]):
                    cur["send"][0] = t
                elif phase == END:
                    cur["send"][1] = t
            elif kind in ("HTTP_TRANSACTION_READ_RESPONSE_HEADERS", "HTTP_TRANSACTION_READ_TUNNEL_RESPONSE_HEADERS"):
                _response(cur, t, p)
            elif kind == "HTTP_STREAM_REQUEST_BOUND_TO_JOB":
                cur["job"] = _dependency(p)
            elif kind == "HTTP_STREAM_REQUEST_BOUND_TO_QUIC_SESSION":
                cur["session"] = _dependency(p)       # an existing QUIC session, no job in between
            elif kind == "URL_REQUEST_JOB_FILTERED_BYTES_READ":
                cur["body"] += _int(p.get("byte_count")) or 0
            elif kind == "URL_REQUEST_JOB_BYTES_READ":
                cur["raw"] = (0 if math.isnan(cur["raw"]) else cur["raw"]) + (_int(p.get("byte_count")) or 0)
            elif kind in ("HTTP_CACHE_READ_INFO", "HTTP_CACHE_READ_DATA"):
                cur["cache_read"] = True
            elif kind in ("HTTP2_STREAM_UPDATE_RECV_WINDOW", "HTTP2_STREAM_UPDATE_SEND_WINDOW") and cur["stream"] is None:
                cur["stream"] = _int(p.get("stream_id"))
            elif kind in ("HTTP_TRANSACTION_QUIC_SEND_REQUEST_HEADERS", "HTTP_TRANSACTION_HTTP3_SEND_REQUEST_HEADERS"):
                cur["stream"] = _int(p.get("quic_stream_id", p.get("stream_id")))
            elif kind == "URL_REQUEST_REDIRECTED" or kind == "URL_REQUEST_REDIRECT_JOB":
                cur["end"] = t if math.isnan(cur["end"]) else cur["end"]
        return [self._request(h) for h in hops]

    def _request(self, h: dict) -> NetRequest:
        session = self.sessions.get(h["session"]) if h["session"] is not None else None
        if session is not None and session.kind == "quic":
            connection, protocol, stream, dns = f"quic:{session.id}", "h3", None, (math.nan, math.nan)
        else:
            connection, protocol, stream, dns = self._carrier(h["job"])
        sent = not math.isnan(h["send"][0])
        return NetRequest(
            id=h["id"], hop=h["hop"], url=h["url"], method=h["method"], priority=h["priority"],
            initiator=h["initiator"], request_type=h["request_type"], start=h["start"],
            send=tuple(h["send"]), headers_at=h["headers_at"], end=h["end"], status=h["status"],
            status_line=h["status_line"], headers=tuple(h["headers"]), error=h["error"],
            body_bytes=float(h["body"]), received_bytes=h["raw"],
            from_cache=bool(h["cache_read"]) and not sent, job=h["job"], connection=connection,
            protocol=protocol, stream=h["stream"] if h["stream"] is not None else stream, dns=dns)

    def _carrier(self, job: int | None) -> tuple[str | None, str | None, int | None, tuple[float, float]]:
        """(connection, protocol, stream id, dns span) of the socket or session a stream job was bound to.

        A job names its HTTP/2 session, QUIC session or socket with a
        ``source_dependency``; the new stream pool goes through attempt
        managers and connect jobs first, so links are followed two more steps,
        the job's own links first.
        """
        nan = (math.nan, math.nan)
        if job is None:
            return None, None, None, nan
        seen = {job}
        frontier = [job]
        dns = nan
        for _ in range(3):
            found = {"h2": None, "quic": None, "socket": None}
            nxt: list[int] = []
            for src in frontier:
                for t, kind, phase, p in self.by_source.get(src, ()):
                    dep = _dependency(p)
                    if kind == "HOST_RESOLVER_MANAGER_JOB_ATTACH" and dep is not None and math.isnan(dns[0]):
                        dns = self._span(dep, "HOST_RESOLVER_MANAGER_JOB")
                    if dep is None or dep in seen:
                        continue
                    dtype = self.types.get(dep)
                    if dtype == "HTTP2_SESSION" and found["h2"] is None:
                        found["h2"] = dep
                    elif dtype == "QUIC_SESSION" and found["quic"] is None:
                        found["quic"] = dep
                    elif dtype == "SOCKET" and kind != "SOCKET_POOL_BOUND_TO_CONNECT_JOB":
                        found["socket"] = dep          # the last one bound is the one used
                    elif dtype in _JOB_TYPES:
                        nxt.append(dep)
                    seen.add(dep)
            if found["quic"] is not None:
                s = self.sessions[found["quic"]]
                return f"quic:{s.id}", "h3", s.streams.get(job), dns
            if found["h2"] is not None:
                s = self.sessions[found["h2"]]
                return (f"socket:{s.socket}" if s.socket is not None else f"h2:{s.id}"), "h2", s.streams.get(job), dns
            if found["socket"] is not None:
                sock = self.sockets.get(found["socket"])
                proto = (sock.alpn if sock is not None and sock.alpn else None) or "http/1.1"
                return f"socket:{found['socket']}", proto, None, dns
            frontier = nxt
        return None, None, None, dns

    def _span(self, sid: int, kind: str) -> tuple[float, float]:
        begin = end = math.nan
        for t, k, phase, _ in self.by_source.get(sid, ()):
            if k == kind and phase == BEGIN and math.isnan(begin):
                begin = t
            elif k == kind and phase == END:
                end = t
        return begin, end


def _new_hop(sid: int, hop: int, start: float, p: dict, priority: str | None) -> dict:
    return {"id": sid, "hop": hop, "url": text(p.get("url")), "method": text(p.get("method")),
            "priority": priority, "initiator": text(p.get("initiator")), "request_type": text(p.get("request_type")),
            "start": start, "send": [math.nan, math.nan], "headers_at": math.nan, "end": math.nan,
            "status": math.nan, "status_line": None, "headers": [], "error": None, "body": 0, "raw": math.nan,
            "cache_read": False, "job": None, "session": None, "stream": None}


def _response(cur: dict, t: float, p: dict) -> None:
    """Response headers: Chrome writes ``["HTTP/1.1 200", "name: value", ...]`` (an HTTP/2 or 3
    response too) or, in older logs, ``{"line": ..., "headers": [...]}``."""
    lines = p.get("headers")
    if not isinstance(lines, list):
        return
    lines = [x for x in lines if isinstance(x, str)]
    first = text(p.get("line")) or (lines[0] if lines and ":" not in lines[0].split(" ")[0] else None)
    if first is not None and lines and lines[0] == first:
        lines = lines[1:]
    parts = (first or "").split()
    code = _int(parts[1]) if len(parts) > 1 else None
    if code is not None and 100 <= code < 200:
        return                       # an interim response (103 Early Hints)
    cur["headers_at"] = t
    cur["status"] = float(code) if code is not None and 100 <= code <= 999 else math.nan
    cur["status_line"] = first
    cur["headers"] = [(n.strip().lower(), v.strip()) for n, _, v in (x.partition(":") for x in lines) if n.strip()]


def _h2_step(t: float, kind: str, p: dict) -> NetStep | None:
    name = kind.replace("HTTP2_SESSION_", "")
    sent = name.startswith("SEND_")
    frame = name.split("_", 1)[1] if "_" in name else name
    stream = _int(p.get("stream_id"))
    if frame in ("HEADERS", "PUSH_PROMISE"):
        headers = p.get("headers") if isinstance(p.get("headers"), list) else []
        fields = dict(h.split(": ", 1) for h in headers if isinstance(h, str) and ": " in h)
        detail = fields.get(":status") or " ".join(x for x in (fields.get(":method"), fields.get(":path")) if x)
        if p.get("fin") is True:
            detail = (detail + " (END_STREAM)").strip()
        return NetStep(t, "h2", frame, "c2s" if sent else "s2c", None, stream, detail or None)
    if frame == "DATA":
        return NetStep(t, "h2", "DATA", "c2s" if sent else "s2c", _int(p.get("size")), stream,
                       "END_STREAM" if p.get("fin") is True else None)
    if frame in ("SETTINGS", "SETTINGS_ACK", "WINDOW_UPDATE", "RST_STREAM", "PING", "GOAWAY", "PRIORITY"):
        return NetStep(t, "h2", frame.replace("_ACK", ""), "c2s" if sent else "s2c",
                       _int(p.get("delta")) if frame == "WINDOW_UPDATE" else None, stream,
                       "ACK" if frame.endswith("_ACK") else text(p.get("error_code")) or text(p.get("description")))
    if kind == "HTTP2_SESSION_GOAWAY":
        return NetStep(t, "h2", "GOAWAY", None, None, None, text(p.get("error_code")))
    return None


def _pn(p: dict) -> str | None:
    n = p.get("packet_number", p.get("packet_sequence_number"))
    return f"#{n}" if isinstance(n, (int, str)) and not isinstance(n, bool) else None


def _join(*parts: Any) -> str | None:
    out = " ".join(str(x) for x in parts if x is not None and x != "")
    return out or None
