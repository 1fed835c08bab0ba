"""gRPC calls: their messages as ``events`` rows (layer ``grpc``) and their facts on ``requests``.

Events: one row per length-prefixed message (``kind`` ``message``, ``size``
its length, ``detail`` the schema-less protobuf dump) and one per call
status (``kind`` ``status``, at the trailers' frame, ``detail`` like
``5 NOT_FOUND: no item 99``); ``compressed`` follows the schema's columns.

Requests (HTTP/2 rows whose stream carried gRPC) get ``grpc_service``,
``grpc_method`` (from ``:path``), ``grpc_status`` (the number), ``grpc_code``
(its name), ``grpc_message`` (percent-decoded, as the spec sends it), and
``grpc_requests`` / ``grpc_responses`` (messages each way: 1/1 for a unary
call, 1/N for a server stream).
"""

from __future__ import annotations

from urllib.parse import unquote

from traceviz.decode.grpc import (GRPCError, GRPCMessage, GRPCStream, describe_fields, split_path, status_name,
                                  status_number)
from traceviz.decode.http import http2
from traceviz.decode.http.carried import carried_by

DETAIL = 120


def rows(conn: int, http) -> list[dict]:
    out = []
    calls = carried_by(http, GRPCStream)
    if not calls:
        return out
    trailers = _trailers(http)
    for sid, machine in calls:
        base = {"conn": conn, "stream": sid, "layer": "grpc"}
        for ev in machine.events:
            if isinstance(ev, GRPCMessage):
                dump = describe_fields(ev.fields) if ev.fields else ("(compressed)" if ev.compressed else None)
                if not ev.complete:
                    dump = "incomplete" + (f": {dump}" if dump else "")
                out.append({**base, "ts": ev.first_ts, "frame": ev.frame, "kind": "message", "dir": ev.direction,
                            "size": ev.length, "detail": (dump or "")[:DETAIL] or None, "compressed": ev.compressed})
            elif isinstance(ev, GRPCError):
                out.append({**base, "ts": ev.ts, "frame": ev.frame, "kind": "protocol-error", "dir": ev.direction,
                            "size": None, "detail": ev.message})
        t = trailers.get(sid)
        if t is not None:
            code, message = t.header("grpc-status"), t.header("grpc-message")
            text = f"{code} {status_name(code) or '?'}" + (f": {unquote(message)}" if message else "")
            out.append({**base, "ts": t.first_ts, "frame": t.frame, "kind": "status", "dir": "s2c", "size": None,
                        "detail": text})
    return out


def annotate(rows_: list[dict], http) -> None:
    """Add the gRPC columns to the request rows of one connection, in place."""
    calls = dict(carried_by(http, GRPCStream))
    if not calls:
        return
    trailers = _trailers(http)
    for r in rows_:
        machine = calls.get(r.get("stream"))
        if machine is None:
            continue
        path = r.get("url") or ""
        path = "/" + path.split("://", 1)[-1].split("/", 1)[-1] if "://" in path else path
        service, method = split_path(path)
        t = trailers.get(r["stream"])
        code = t.header("grpc-status") if t is not None else None
        message = t.header("grpc-message") if t is not None else None
        msgs = [e for e in machine.events if isinstance(e, GRPCMessage)]
        r.update({"grpc_service": service, "grpc_method": method,
                  "grpc_status": status_number(code),
                  "grpc_code": status_name(code), "grpc_message": unquote(message) if message else None,
                  "grpc_requests": sum(m.direction == "c2s" for m in msgs),
                  "grpc_responses": sum(m.direction == "s2c" for m in msgs)})


def _trailers(http) -> dict[int, http2.HeadersReceived]:
    """stream -> the server's last header block carrying grpc-status (trailers, or a trailers-only answer)."""
    h2 = getattr(http, "http2", None) or http
    out = {}
    for ev in getattr(h2, "events", []):
        if isinstance(ev, http2.HeadersReceived) and ev.direction == http2.S2C and ev.header("grpc-status"):
            out[ev.stream] = ev
    return out
