"""The ``events`` rows of what HTTP carried: WebSockets, gRPC messages, server-sent events."""

from __future__ import annotations

from traceviz.assemble import grpc, sse, websocket


def rows(conn: int, http) -> list[dict]:
    """Rows for everything one connection's HTTP machine carried (none for most connections)."""
    if http is None:
        return []
    return websocket.rows(conn, http) + grpc.rows(conn, http) + sse.rows(conn, http)
