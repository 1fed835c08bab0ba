"""How did each WebSocket go: its handshake, the messages each way, liveness, and who closed it and why?

A WebSocket starts as an HTTP/1.1 request with ``Upgrade: websocket``; the
server's ``101 Switching Protocols`` ends HTTP on that connection and from
then on both sides send frames whenever they like -- the server can push
without being asked.  Over HTTP/2 (RFC 8441) it is a stream opened with an
extended CONNECT (``:protocol websocket``) answered 200, its frames in the
stream's DATA, beside other streams on the same TCP connection.  One row per WebSocket: the handshake's round trip,
the messages and payload bytes each way and their rate, the pings each side
sent and how soon a pong came back (a connection's liveness check: a peer
that stops answering pings is gone even while TCP stays open), and the
close: who sent the first close frame, its code and reason, and how TCP
ended.  A long-lived connection like this pins the client to one backend,
which is why balancing WebSockets means balancing connections, not requests.

    python recipes/websocket.py capture.pcapng [--conn N] [--chart ws.html]
"""

from __future__ import annotations

import pandas as pd

from traceviz.errors import InputError
from traceviz.charts.text import ms_text
from traceviz.recipe import Finding
from traceviz.stats import request_sent_at

NAME = "websocket"
NEEDS = "an HTTP/1.1 connection that switched to WebSocket (101), or an HTTP/2 extended CONNECT"
FAILS_ON = "a ping without its pong, a close code other than 1000/1001, no closing handshake, a protocol error"
TABLES = ("connections", "events", "requests")   # what analyze() and the figures read: load() builds only these
FIGURES = {"messages": "each WebSocket's messages, pings and close on a time axis, each way"}
EXAMPLE = "websocket-h1"
TITLE = "WebSocket: handshake, messages, ping/pong, close"

JSON_FIELDS = ["conn", "stream", "client", "server", "url", "handshake_ms", "messages_c2s", "messages_s2c",
               "bytes_c2s", "bytes_s2c", "rate_c2s", "rate_s2c", "fragmented", "pings_c2s", "pings_s2c",
               "pong_ms", "closed_by", "close_code", "close_reason", "tcp_close", "duration", "errors"]
TABLE_FIELDS = ["conn", "url", "handshake_ms", "messages_c2s", "messages_s2c", "pings_c2s", "pings_s2c",
                "closed_by", "close_code", "close_reason"]
WHO = {"c2s": "client", "s2c": "server"}


def applies(tl) -> bool:
    return bool((tl.events["layer"].astype("object") == "websocket").any())


def analyze(tl, conn: int | None = None) -> Finding:
    ev = tl.events[(tl.events["layer"].astype("object") == "websocket").to_numpy(dtype=bool, na_value=False)]
    if conn is not None:
        if not (ev["conn"] == conn).any():
            have = sorted({int(c) for c in ev["conn"].dropna()})
            raise InputError(tl.source.path, f"no WebSocket on connection {conn} "
                                             f"(these have one: {', '.join(map(str, have)) or 'none'})")
        ev = ev[(ev["conn"] == conn).to_numpy(dtype=bool, na_value=False)]
    rows = websocket_rows(tl, ev)
    answer, problems = explain(rows)
    figures = {}
    if len(rows):
        figures["messages"] = lambda theme="light": _chart(tl, rows, theme)
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=rows, summary=summarize(rows),
                   answer=answer, figures=figures, json_fields=JSON_FIELDS, table_fields=TABLE_FIELDS,
                   problems=problems)


# --- the rows -----------------------------------------------------------------------------

def websocket_rows(tl, ev: pd.DataFrame) -> pd.DataFrame:
    out = []
    conns = tl.connections.set_index("conn")
    stream_key = ev["stream"].astype("Float64").fillna(-1)
    for (conn, stream), g in ev.groupby([ev["conn"].astype("int64"), stream_key], sort=True):
        c = conns.loc[conn] if conn in conns.index else None
        msgs = g[g["kind"] == "message"]
        by_dir = {d: msgs[msgs["dir"] == d] for d in ("c2s", "s2c")}
        pings = g[g["kind"] == "ping"]
        pongs = pd.to_numeric(g.loc[g["kind"] == "pong", "duration"], errors="coerce").dropna()
        closes = g[g["kind"] == "close"].sort_values("ts")
        first_close = closes.iloc[0] if len(closes) else None
        req = _handshake(tl, conn, None if stream < 0 else int(stream))
        sent, handshake_ms = _upgrade(req)
        start = sent if sent is not None else float(g["ts"].min())
        end = float(g["ts"].max())
        span = max(end - start, 1e-9)
        out.append({
            "conn": int(conn), "stream": None if stream < 0 else int(stream),
            "client": c["client"] if c is not None else None, "server": c["server"] if c is not None else None,
            "url": req["url"] if req is not None else None,
            "handshake_ms": handshake_ms,
            "messages_c2s": len(by_dir["c2s"]), "messages_s2c": len(by_dir["s2c"]),
            "bytes_c2s": int(pd.to_numeric(by_dir["c2s"]["size"]).sum()),
            "bytes_s2c": int(pd.to_numeric(by_dir["s2c"]["size"]).sum()),
            "rate_c2s": len(by_dir["c2s"]) / span, "rate_s2c": len(by_dir["s2c"]) / span,
            "fragmented": int((pd.to_numeric(msgs["frames"], errors="coerce") > 1).sum()),
            "pings_c2s": int((pings["dir"] == "c2s").sum()), "pings_s2c": int((pings["dir"] == "s2c").sum()),
            "pong_ms": [round(float(x) * 1000, 3) for x in pongs],
            "closed_by": WHO.get(first_close["dir"]) if first_close is not None else None,
            "close_code": _int(first_close["close_code"]) if first_close is not None else None,
            "close_reason": _reason(first_close["detail"]) if first_close is not None else None,
            "tcp_close": c["close"] if c is not None else None,
            "duration": end - start,
            "errors": int((g["kind"] == "protocol-error").sum()),
            "start": start,
        })
    return pd.DataFrame(out, columns=JSON_FIELDS + ["start"])


def _handshake(tl, conn: int, stream: int | None):
    """The request that opened the WebSocket: the 101 (HTTP/1.1) or the extended CONNECT's 200 (HTTP/2)."""
    r = tl.requests[(tl.requests["conn"] == conn).to_numpy(dtype=bool, na_value=False)]
    if stream is not None:
        r = r[(r["stream"] == stream).to_numpy(dtype=bool, na_value=False)]
    else:
        r = r[(r["status"] == 101).to_numpy(dtype=bool, na_value=False)]
    return r.iloc[-1] if len(r) else None


def _upgrade(req) -> tuple[float | None, float | None]:
    """When the upgrade request's first byte went out, and its round trip to the 101 (or the
    extended CONNECT's 200) in ms; ``start`` may be the connection's SYN, so neither is read off it."""
    if req is None:
        return None, None
    sent = float(request_sent_at(pd.DataFrame([req])).iloc[0])
    if pd.isna(req["ttfb"]):
        return sent, None
    return sent, (float(req["start"]) + float(req["ttfb"]) - sent) * 1000


def _int(v):
    return None if v is None or pd.isna(v) else int(v)


def _reason(detail) -> str | None:
    """The reason text of a close frame's detail ('1000 normal closure: done' -> 'done')."""
    if not isinstance(detail, str) or ": " not in detail:
        return None
    return detail.split(": ", 1)[1]


# --- the summary and the words ---------------------------------------------------------

def summarize(rows: pd.DataFrame) -> dict:
    return {
        "websockets": int(len(rows)),
        "messages_c2s": int(rows["messages_c2s"].sum()) if len(rows) else 0,
        "messages_s2c": int(rows["messages_s2c"].sum()) if len(rows) else 0,
        "pings": int((rows["pings_c2s"] + rows["pings_s2c"]).sum()) if len(rows) else 0,
        "closed_by": {k: int(v) for k, v in rows["closed_by"].value_counts().items()} if len(rows) else {},
    }


def explain(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    if not len(rows):
        return ["No WebSocket here: no connection switched to it (101 Switching Protocols)."], []
    out, problems = [], []
    for r in rows.itertuples(index=False):
        where = f"conn {r.conn}" + (f" stream {r.stream}" if r.stream is not None and not pd.isna(r.stream) else "")
        head = f"{where} ({r.url or 'no handshake seen'})"
        h2 = r.stream is not None and not pd.isna(r.stream)
        if r.handshake_ms is not None and not pd.isna(r.handshake_ms):
            how = "extended CONNECT to 200, RFC 8441" if h2 else "Upgrade request to 101"
            head += f": the handshake took {ms_text(r.handshake_ms)} ({how}), then"
        else:
            head += ":"
        head += (f" {_n(r.messages_c2s, 'message')} ({_bytes(r.bytes_c2s)}) from the client and "
                 f"{_n(r.messages_s2c, 'message')} ({_bytes(r.bytes_s2c)}) from the server over "
                 f"{ms_text(r.duration * 1000)}")
        if r.fragmented:
            head += f"; {_n(r.fragmented, 'message')} came in several frames (fragmented)"
        out.append(head + ".")
        pings = []
        for side, n in (("client", r.pings_c2s), ("server", r.pings_s2c)):
            if n:
                pings.append(f"the {side} sent {_n(n, 'ping')}")
        if pings:
            text = "Liveness: " + " and ".join(pings)
            if r.pong_ms:
                text += "; each answered by a pong (" + ", ".join(ms_text(x) for x in r.pong_ms) + " after its ping, "
                text += "seen from the capture point)"
            unanswered = r.pings_c2s + r.pings_s2c - len(r.pong_ms)
            if unanswered > 0:
                text += f"; {_n(unanswered, 'ping')} got no pong"
                problems.append(f"{where}: {_n(unanswered, 'ping')} unanswered")
            out.append(text + ".")
        if r.closed_by:
            code = f"{r.close_code}" if r.close_code is not None else "no code"
            from traceviz.decode.http.websocket import close_code_name
            why = f" ({close_code_name(r.close_code)}" + (f", '{r.close_reason}')" if r.close_reason else ")")
            text = f"The {r.closed_by} closed it first with {code}{why if r.close_code is not None else ''}"
            if h2:
                text += ("; the peer echoed the close and both ended the stream -- the TCP connection "
                         "is shared by every stream on it")
            else:
                text += f"; the peer echoed the close and TCP ended {r.tcp_close or 'open'}"
            if not h2 and r.tcp_close in ("fin-server", "rst-server") and r.closed_by == "client":
                text += " (the server closes TCP after the closing handshake, as RFC 6455 asks)"
            out.append(text + ".")
            if r.close_code is not None and r.close_code not in (1000, 1001):
                problems.append(f"{where}: closed with {r.close_code}")
        else:
            out.append(f"No close frame: the WebSocket ended with TCP ({r.tcp_close or 'still open'}).")
            if r.tcp_close not in (None, "open"):
                problems.append(f"{where}: ended without a closing handshake")
        if r.errors:
            problems.append(f"{where}: {_n(r.errors, 'protocol error')}")
    return out, problems



def _n(n, word: str) -> str:
    return f"{int(n)} {word}{'' if int(n) == 1 else 's'}"


def _bytes(n) -> str:
    n = int(n)
    return f"{n} B" if n < 10_000 else f"{n / 1000:.1f} kB"


def _chart(tl, rows, theme):
    from traceviz.charts.websocket import message_timeline
    return message_timeline(tl.events, rows, theme=theme)


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
