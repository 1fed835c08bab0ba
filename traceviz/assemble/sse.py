"""Server-sent events as ``events`` rows (layer ``sse``).

One row per dispatched event (``kind`` ``event``; ``detail`` its type, id and
data preview; ``size`` its data bytes) and per comment line (``kind``
``comment``, the heartbeats that keep an idle stream open); ``ts`` is when
its last byte arrived, ``frame`` that frame; extra columns ``sse_id`` and
``sse_event``.  The frame of the response that
carried them is in ``response_frame``, so two event streams on one connection stay apart.
"""

from __future__ import annotations

from traceviz.decode.http.sse import SSEComment, SSEEvent, SSEStream


def rows(conn: int, http) -> list[dict]:
    h1 = getattr(http, "http1", http)
    out = []
    for response_frame, machine in sorted(getattr(h1, "carried", {}).items()):
        if not isinstance(machine, SSEStream):
            continue
        for ev in machine.events:
            base = {"conn": conn, "stream": None, "layer": "sse", "dir": ev.direction, "ts": ev.ts,
                    "frame": ev.frame, "response_frame": response_frame}
            if isinstance(ev, SSEEvent):
                text = f"{ev.event}" + (f" id {ev.id}" if ev.id is not None else "") + f": {ev.data}"
                out.append({**base, "kind": "event", "size": ev.data_bytes, "detail": text[:160],
                            "sse_id": ev.id, "sse_event": ev.event})
            elif isinstance(ev, SSEComment):
                out.append({**base, "kind": "comment", "size": None, "detail": ev.text or None})
    return out
