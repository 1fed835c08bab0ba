"""WebSocket frames and messages as ``events`` rows (layer ``websocket``).

One row per frame (``kind`` = its opcode's name: text, binary,
continuation, close, ping, pong) and one per whole data message (``kind`` =
``message``).  The facts a reader of a WebSocket needs are made here, once:
``detail`` says the close code and reason, a ping's payload, a message's
type and frame count; a pong answering a ping carries ``duration`` (seconds
since that ping: the liveness round trip); extra columns ``opcode``, ``fin``,
``masked``, ``close_code``, ``message_type`` and ``frames`` follow the schema's.
"""

from __future__ import annotations

from traceviz.decode.http.carried import carried_by
from traceviz.decode.http.websocket import WebSocketConnection, WSError, WSFrame, WSMessage, close_code_name

PREVIEW = 60          # characters of a text payload shown in ``detail``


def machines(http) -> list[tuple[int | None, WebSocketConnection]]:
    """(HTTP/2 stream or None, machine) for every WebSocket a connection's HTTP machine carried."""
    ws = getattr(http, "websocket", None)
    if isinstance(ws, WebSocketConnection):
        return [(None, ws)]
    return carried_by(http, WebSocketConnection)


def rows(conn: int, http) -> list[dict]:
    """The ``events`` rows of the WebSockets on one connection."""
    out = []
    for stream, machine in machines(http):
        out += machine_rows(conn, stream, machine)
    return out


def machine_rows(conn: int, stream: int | None, machine: WebSocketConnection) -> list[dict]:
    out = []
    pings: dict[tuple[str, bytes], float] = {}
    for ev in machine.events:
        base = {"conn": conn, "stream": stream, "layer": "websocket", "dir": ev.direction}
        if isinstance(ev, WSFrame):
            row = {**base, "ts": ev.first_ts, "frame": ev.frame, "kind": ev.kind, "size": ev.length,
                   "detail": _frame_detail(ev), "opcode": ev.opcode, "fin": ev.fin, "masked": ev.masked,
                   "close_code": ev.close_code}
            if ev.opcode == 0x9:
                pings[(ev.direction, ev.payload)] = ev.first_ts
            elif ev.opcode == 0xA:
                asked = "s2c" if ev.direction == "c2s" else "c2s"
                sent = pings.pop((asked, ev.payload), None)
                if sent is not None:
                    row["duration"] = ev.first_ts - sent
            out.append(row)
        elif isinstance(ev, WSMessage):
            what = f"{ev.kind}, {ev.frames} frame{'s' if ev.frames != 1 else ''}"
            if ev.compressed:
                what += ", compressed"
            if not ev.complete:
                what += ", incomplete"
            if ev.opcode == 0x1 and not ev.compressed and ev.preview:
                what += ": " + _text(ev.preview, ev.length)
            out.append({**base, "ts": ev.first_ts, "frame": ev.frame, "kind": "message", "size": ev.length,
                        "detail": what, "opcode": ev.opcode, "message_type": ev.kind, "frames": ev.frames,
                        "duration": ev.ts - ev.first_ts})
        elif isinstance(ev, WSError):
            out.append({**base, "ts": ev.ts, "frame": ev.frame, "kind": "protocol-error", "size": None,
                        "detail": ev.message})
    return out


def _frame_detail(f: WSFrame) -> str | None:
    if f.opcode == 0x8:
        if f.close_code is None:
            return "no status code"
        reason = f": {f.close_reason}" if f.close_reason else ""
        return f"{f.close_code} {close_code_name(f.close_code)}{reason}"
    if f.opcode in (0x9, 0xA):
        return _text(f.payload, f.length) if f.payload else None
    parts = [] if f.fin else ["not FIN"]
    if f.missing:
        parts.append(f"{f.missing} bytes missing")
    return ", ".join(parts) or None


def _text(payload: bytes, length: int) -> str:
    text = payload.decode("utf-8", "replace")
    if len(text) > PREVIEW or length > len(payload):
        return text[:PREVIEW] + "\u2026"
    return text
