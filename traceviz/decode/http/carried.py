"""What an HTTP/2 stream carries inside its DATA, or an HTTP/1.x response in its body, chosen from headers.

An extended CONNECT with ``:protocol websocket`` (RFC 8441) carries a
WebSocket; a request whose ``content-type`` is ``application/grpc`` carries
gRPC's length-prefixed messages.  ``machine_for`` returns a fresh sans-I/O
machine for such a stream (fed the stream's DATA payloads in order by
``HTTP2Connection``), or None for an ordinary request, whose bodies stay
counted, not kept.
"""

from __future__ import annotations


def machine_for(headers) -> object | None:
    """A machine for the stream whose request carried ``headers`` (pairs of str), or None."""
    if not headers:
        return None
    h = {k: v for k, v in headers if isinstance(k, str)}
    if h.get(":method") == "CONNECT" and (h.get(":protocol") or "").lower() == "websocket":
        from traceviz.decode.http.websocket import WebSocketConnection
        return WebSocketConnection()
    if (h.get("content-type") or "").lower().startswith("application/grpc"):
        from traceviz.decode.grpc import GRPCStream
        return GRPCStream()
    return None


def body_machine(headers) -> object | None:
    """A machine for an HTTP/1.x response body (``headers``: the response's pairs), or None.

    ``text/event-stream`` (server-sent events) is read; other bodies stay counted, not kept."""
    for k, v in headers or ():
        if isinstance(k, str) and k.lower() == "content-type" and v.lower().startswith("text/event-stream"):
            from traceviz.decode.http.sse import SSEStream
            return SSEStream()
    return None


def carried_by(http, kind: type) -> list[tuple[int, object]]:
    """(stream, machine) for the streams of a connection's HTTP machine that carry ``kind``:
    an ``HTTP2Connection``, or an ``UpgradeConnection`` that switched to h2c."""
    h2 = getattr(http, "http2", None) or http
    return [(sid, m) for sid, m in sorted(getattr(h2, "carried", {}).items()) if isinstance(m, kind)]
