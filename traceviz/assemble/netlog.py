"""Chrome NetLog records into the timeline: requests, connections, events.

Every URL-request hop is a ``requests`` row (``source`` netlog), with HAR-like
phases from the NetLog's own spans: ``dns`` the host resolution its socket
waited for, ``connect`` the socket's TCP_CONNECT and ``tls`` its SSL_CONNECT
(for the request the socket was opened for; a later one reused it),
``blocked`` the rest of the time before the request was sent, then ``send``,
``wait`` and ``receive`` from assemble/http.phases.  Every TCP socket and QUIC
session that carried a request or connected is a ``connections`` row, with
the socket's own ends and byte counts; its ``connection_id`` is Chrome's
source id, the ``connectionId`` DevTools shows.  Events: request / response /
finished or failed per hop (layer ``netlog``), and what the sockets and
sessions logged: TCP connect, TLS messages, HTTP/2 frames, QUIC packets.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from traceviz.assemble.browser import events_table, normalize_protocol
from traceviz.assemble.http import phases
from traceviz.errors import describe
from traceviz.model import SourceInfo, Timeline, conform, empty_table
from traceviz.sources.netlog import NetLog, NetRequest, NetSession, NetSocket, read_netlog
from traceviz.sources.urls import host_and_port

NAN = float("nan")


def load_netlog(path) -> Timeline:
    """A Chrome NetLog, decoded into a Timeline (``InputError`` when it is not one)."""
    return timeline_from_netlog(read_netlog(str(path)))


def timeline_from_netlog(log: NetLog) -> Timeline:
    warnings = list(log.warnings)
    carriers = _carriers(log)
    conn_of = {key: n for n, key in enumerate(carriers)}
    rows = [_request_row(i, r, log, conn_of) for i, r in enumerate(log.requests)]
    _mark_reuse(rows, log)
    requests = _requests_frame(rows)
    connections = _connections(carriers, log, requests)
    events = _events(requests, carriers, conn_of, log)
    pending = sum(1 for r in log.requests if math.isnan(r.end))
    if pending:
        warnings.append(describe(log.path, f"{pending} requests were still running when the log ended"))
    info = SourceInfo(path=log.path, format="netlog", size=log.size, compressed=log.compressed, warnings=warnings)
    info.detail = {
        "browser": log.browser, "creator": "Chrome NetLog", "capture_mode": log.capture_mode,
        "netlog_events": log.events, "sources": log.sources, "truncated": log.truncated,
        "requests": len(rows), "failed": sum(1 for r in log.requests if r.error),
        "from_cache": sum(1 for r in log.requests if r.from_cache),
        "connections": len(carriers), "udp_sockets": log.udp_sockets,
        "source_types": dict(sorted(log.source_types.items(), key=lambda kv: -kv[1])[:12]),
    }
    return Timeline(source=info, connections=connections, events=events, requests=requests)


# --------------------------------------------------------------------------- connections

def _carriers(log: NetLog) -> list[str]:
    """The sockets and QUIC sessions worth a row (carried a request, or connected), by start time."""
    used = {r.connection for r in log.requests if r.connection}
    keys = set(used)
    for s in log.sockets.values():
        if s.remote is not None and not math.isnan(s.connect[1]):
            keys.add(f"socket:{s.id}")
    for s in log.sessions.values():
        if s.kind == "quic":
            keys.add(f"quic:{s.id}")
    return sorted(keys, key=lambda k: (_start_of(k, log), k))


def _carrier(key: str, log: NetLog) -> NetSocket | NetSession | None:
    kind, _, n = key.partition(":")
    sid = int(n) if n.isascii() and n.isdigit() else -1
    return log.sockets.get(sid) if kind == "socket" else log.sessions.get(sid)


def _start_of(key: str, log: NetLog) -> float:
    c = _carrier(key, log)
    t = c.start if c is not None else NAN
    return math.inf if math.isnan(t) else t


def _connections(carriers: list[str], log: NetLog, requests: pd.DataFrame) -> pd.DataFrame:
    if not carriers:
        df = empty_table("connections")
        for col, dtype in (("connection_id", "object"), ("requests", "int64"), ("inferred", "bool")):
            df[col] = pd.Series(dtype=dtype)
        return df
    per_conn = requests["conn"].value_counts().to_dict() if len(requests) else {}
    rows = []
    for n, key in enumerate(carriers):
        c = _carrier(key, log)
        mine = requests[requests["conn"] == n] if len(requests) else requests
        app = next((p for p in mine["protocol"].dropna()), None) if len(mine) else None
        row: dict[str, Any] = {"conn": n, "connection_id": key.partition(":")[2], "requests": int(per_conn.get(n, 0)),
                               "inferred": False, "host": next((h for h in mine["host"].dropna()), None)
                               if len(mine) else None}
        if isinstance(c, NetSocket):
            row.update(transport="tcp", client=c.local, server=c.remote, client_by="netlog" if c.local else None,
                       start=c.start, end=c.end, bytes_c2s=c.bytes_sent, bytes_s2c=c.bytes_received,
                       app=normalize_protocol(c.alpn) or app, alpn=c.alpn, tls_version=c.tls_version,
                       connect_time=_span(c.connect))
        elif isinstance(c, NetSession):
            row.update(transport="quic", client=c.local, server=c.remote, client_by="netlog" if c.local else None,
                       start=c.start, end=c.end, packets_c2s=c.packets_sent, packets_s2c=c.packets_received,
                       packets=c.packets_sent + c.packets_received, bytes_c2s=c.bytes_sent,
                       bytes_s2c=c.bytes_received, app=app or "quic", sni=(c.host or "").rsplit(":", 1)[0] or None,
                       tls_version="TLS 1.3", quic_version=c.version, close_reason=c.close)
        rows.append(row)
    df = conform("connections", pd.DataFrame(rows, dtype=object))
    df["inferred"] = df["inferred"].astype("bool")
    df["requests"] = df["requests"].astype("int64")
    return df


def _span(pair: tuple[float, float]) -> float:
    a, b = pair
    return b - a if not math.isnan(a) and not math.isnan(b) and b >= a else NAN


# --------------------------------------------------------------------------- requests

def _request_row(i: int, r: NetRequest, log: NetLog, conn_of: dict[str, int]) -> dict:
    host, port = host_and_port(r.url)
    answered = not math.isnan(r.status)
    send_begin, send_end = r.send
    start = r.start
    end = r.end if answered or r.error else NAN
    ph = phases(_none(send_begin), _none(send_end), _none(r.headers_at) if answered else None,
                _none(end) if answered else None)
    carrier = _carrier(r.connection, log) if r.connection else None
    ctype = dict(r.headers).get("content-type")
    server_ip = server_port = None
    if isinstance(carrier, NetSocket) and carrier.remote:
        server_ip, _, p = carrier.remote.rpartition(":")
        server_port = int(p) if p.isascii() and p.isdigit() and len(p) <= 5 and 0 < int(p) < 65536 else None
        server_ip = server_ip.strip("[]")
    return {
        "request": i, "conn": conn_of.get(r.connection, pd.NA) if r.connection else pd.NA,
        "stream": r.stream if r.stream is not None else pd.NA,
        "protocol": normalize_protocol(r.protocol) if not r.from_cache else None,
        "method": r.method, "host": host, "url": r.url,
        "status": int(r.status) if answered else pd.NA,
        "start": start, "ttfb": r.headers_at - start if answered else NAN, "end": end,
        "req_bytes": pd.NA, "resp_bytes": int(r.body_bytes) if answered else pd.NA,
        "blocked": NAN, "dns": NAN, "connect": NAN, "tls": NAN, **ph,
        "reused_connection": pd.NA, "source": "netlog",
        "content_type": ctype.split(";")[0].strip().lower() if ctype else None,
        # the browser tables' extra columns, so recipes and charts read a NetLog as a DevTools export
        "request_id": f"{r.id}" if r.hop == 0 else f"{r.id}:{r.hop + 1}",
        "priority": r.priority, "initiator": r.initiator, "resource_type": r.request_type,
        "mime_type": ctype, "server_ip": server_ip, "server_port": server_port or port,
        "from_cache": r.from_cache, "error": r.error, "pending": math.isnan(r.end),
        "connection_id": r.connection.partition(":")[2] if r.connection else None,
        "http_version": r.status_line.split(" ")[0] if r.status_line else None,
        "netlog_source": r.id, "_carrier": r.connection, "_job": r.job, "_dns": r.dns, "_send": send_begin,
    }


_EXTRA_TYPES = {"server_port": "Int64", "from_cache": "boolean", "pending": "boolean", "netlog_source": "Int64"}


def _requests_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows as the requests table; text stays Python objects (None, not NaN)."""
    if not rows:
        return empty_table("requests")
    df = conform("requests", pd.DataFrame(rows, dtype=object))
    for col, dtype in _EXTRA_TYPES.items():
        df[col] = df[col].astype(dtype)
    return df


def _mark_reuse(rows: list[dict], log: NetLog) -> None:
    """Which request opened its socket (it pays dns, connect and tls) and which reused one.

    A socket's first stream job (SOCKET_IN_USE) opened it; a QUIC session was
    opened for its first request.  ``blocked`` is what is left before sending.
    """
    opened: set[str] = set()
    for row in sorted(rows, key=lambda r: (r["start"] if not math.isnan(r["start"]) else math.inf)):
        key, job, dns, send = row.pop("_carrier"), row.pop("_job"), row.pop("_dns"), row.pop("_send")
        carrier = _carrier(key, log) if key else None
        if carrier is None:
            continue
        if isinstance(carrier, NetSocket):
            first = carrier.first_job == job and key not in opened
        else:
            first = key not in opened
        opened.add(key)
        row["reused_connection"] = not first
        if first and isinstance(carrier, NetSocket):
            row["dns"] = _span(dns) if not math.isnan(_span(dns)) else 0.0
            row["connect"] = _span(carrier.connect)
            row["tls"] = _span(carrier.tls)
        spent = sum(x for x in (row["dns"], row["connect"], row["tls"]) if not math.isnan(x))
        if not math.isnan(send) and not math.isnan(row["start"]):
            row["blocked"] = max(0.0, send - row["start"] - spent)
    for row in rows:                 # requests that reached no socket
        for k in ("_carrier", "_job", "_dns", "_send"):
            row.pop(k, None)


def _none(t: float) -> float | None:
    return None if math.isnan(t) else t


# --------------------------------------------------------------------------- events

def _events(requests: pd.DataFrame, carriers: list[str], conn_of: dict[str, int], log: NetLog) -> pd.DataFrame:
    base = events_table(requests, [], layer="netlog") if len(requests) else empty_table("events")
    rows = []
    for key in carriers:
        c = _carrier(key, log)
        sessions = [s for s in log.sessions.values() if isinstance(c, NetSocket) and s.socket == c.id]
        for owner in (c, *sessions):          # an HTTP/2 session's frames go with its socket
            rows.extend(_step_row(step, conn_of[key]) for step in getattr(owner, "steps", ()))
    if not rows:
        return base
    df = pd.concat([base, conform("events", pd.DataFrame(rows, dtype=object))], ignore_index=True)
    df = df.sort_values("ts", kind="stable", na_position="last").reset_index(drop=True)
    return conform("events", df)


def _step_row(s, conn: int) -> dict:
    return {"ts": s.time, "conn": conn, "stream": s.stream if s.stream is not None else pd.NA, "layer": s.layer,
            "kind": s.kind, "dir": s.dir, "size": s.size if s.size is not None else pd.NA, "detail": s.detail}
