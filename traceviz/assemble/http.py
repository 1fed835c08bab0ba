"""HTTP machines' events as ``requests`` rows and ``events`` rows.

One function for the phases of every HTTP version, so HTTP/1.x and HTTP/2
requests from a capture mean the same by ``send``, ``wait`` and ``receive``
(HAR 1.2's phases, from the times the capture shows).
"""

from __future__ import annotations

import pandas as pd

from traceviz.decode.http import http1, http2
from traceviz.decode.http.upgrade import UpgradeConnection
from traceviz.model import media_type

NAN = float("nan")


def phases(start, sent, first_byte, end) -> dict:
    """HAR-style send / wait / receive (NaN when a time is unknown or out of order)."""
    def span(a, b):
        return (b - a) if a is not None and b is not None and b >= a else NAN
    return {"send": span(start, sent), "wait": span(sent, first_byte), "receive": span(first_byte, end)}


OPENING_GAP = 0.020     # s: a request later than this (or a round trip) after its connection was ready did not wait for it


def opening_phases(rows: list[dict], syn: float | None, ack: float | None, hello: float | None,
                   done: float | None, rtt: float | None) -> None:
    """The time a connection's first requests spent waiting for it, as HAR's phases.

    The first request on a connection paid for opening it: ``connect`` is
    SYN to the ACK that completes the handshake (retransmitted SYNs
    included), ``tls`` ClientHello to the end of the TLS handshake, and
    ``blocked`` the rest of the wait (between the two handshakes, and from
    the handshake's end to the request's first byte); its ``start`` moves
    back to the first SYN (the ClientHello without one), so, as in a HAR,
    ``start`` + the phases = ``end`` and ``ttfb`` counts from the SYN.
    Requests sent in the same burst right after it (within ``OPENING_GAP``
    or a round trip of the connection being ready) were waiting for the
    connection as well: they start at the SYN too, the wait in ``blocked``.

    A connection opened well before its first request (a preconnect, an
    idle pool) cost that request nothing: the rows are left as they are.
    ``rows`` are one connection's requests (changed in place); times are epoch seconds.
    """
    begin = syn if syn is not None else hello
    ready = done if hello is not None else ack
    rows = sorted((r for r in rows if r.get("start") is not None), key=lambda r: r["start"])
    if not rows or begin is None or ready is None or ready < begin:
        return
    first = rows[0]
    limit = max(rtt or 0.0, OPENING_GAP)
    if not 0.0 <= first["start"] - ready <= limit:
        return
    tcp = (ack - syn) if syn is not None and ack is not None else NAN
    tls = (done - hello) if hello is not None and done is not None else NAN
    setup = (0.0 if tcp != tcp else tcp) + (0.0 if tls != tls else tls)
    for i, row in enumerate(rows):
        start = row["start"]
        if start - ready > limit or start < ready:
            break
        if i == 0:
            row["connect"], row["tls"] = tcp, tls
            row["blocked"] = (start - begin) - setup
        else:
            row["blocked"] = start - begin
        if row.get("ttfb") is not None:
            row["ttfb"] += start - begin
        row["start"] = begin


# -- HTTP/1.x ---------------------------------------------------------------------

def http1_event_rows(events) -> list[dict]:
    rows = []
    for ev in events:
        if isinstance(ev, http1.Request):
            row = {"ts": ev.ts, "frame": ev.frame, "dir": "c2s", "kind": "request",
                   "size": ev.head_bytes, "detail": f"{ev.method} {ev.target}"}
        elif isinstance(ev, http1.Response):
            row = {"ts": ev.ts, "frame": ev.frame, "dir": "s2c", "kind": "response",
                   "size": ev.head_bytes, "detail": f"{ev.status} {ev.reason}"}
        elif isinstance(ev, http1.ParseError):
            row = {"ts": NAN, "frame": ev.frame, "dir": ev.direction, "kind": "parse-error",
                   "size": None, "detail": ev.message}
        else:
            continue
        rows.append({"stream": pd.NA, "layer": "http", **row})
    return rows


def http1_request_rows(events, scheme: str, default_host: str | None) -> list[dict]:
    rows = []
    types = iter([media_type(ev.header("content-type")) for ev in events
                  if isinstance(ev, http1.Response) and not (100 <= ev.status < 200 and ev.status != 101)])
    for i, ex in enumerate(http1.exchanges(events, scheme=scheme, default_host=default_host)):
        row = {"protocol": (ex.version or "").lower() or None, "method": ex.method, "host": ex.host,
               "url": ex.url, "status": ex.status, "start": ex.start, "ttfb": ex.ttfb, "end": ex.end,
               "req_bytes": ex.req_bytes, "resp_bytes": ex.resp_bytes,
               # exchanges pair final responses in the order they came: so do their content types
               "content_type": next(types, None) if ex.status is not None else None}
        # The exchange's own request end: a list of RequestEnd times would slip out of step
        # when the capture starts with a response whose request was not captured.
        row.update(phases(ex.start, ex.request_sent, ex.response_start, ex.end))
        row["reused_connection"] = i > 0
        row["request_frame"], row["response_frame"] = ex.request_frame, ex.response_frame
        rows.append(row)
    return rows


# -- HTTP/2 -----------------------------------------------------------------------

_H2_KINDS = {http2.Preface: "preface", http2.Settings: "SETTINGS", http2.Upgraded: "upgrade",
             http2.PushPromise: "PUSH_PROMISE", http2.HeadersReceived: "HEADERS", http2.DataReceived: "DATA",
             http2.RstStream: "RST_STREAM", http2.GoAway: "GOAWAY", http2.WindowUpdate: "WINDOW_UPDATE",
             http2.Ping: "PING", http2.Priority: "PRIORITY", http2.OtherFrame: "frame",
             http2.ParseError: "parse-error"}


def h2_kind(ev) -> str:
    """The ``events.kind`` an HTTP/2 event is listed under (its frame type, mostly)."""
    return _H2_KINDS.get(type(ev), type(ev).__name__)


def h2_event_row(ev) -> dict:
    """An HTTP/2 event as an ``events`` row (layer ``h2``; the caller adds conn)."""
    size, detail = None, None
    if isinstance(ev, http2.HeadersReceived):
        size = ev.size
        if ev.headers is None:
            detail = "(headers not decoded)"
        elif ev.header(":status") is not None:
            detail = ev.header(":status")
        else:
            detail = " ".join(x for x in (ev.header(":method"), ev.header(":path")) if x) or "trailers"
        if isinstance(ev, http2.PushPromise):
            detail = f"promised stream {ev.promised_stream}: {detail}"
        if ev.end_stream:
            detail += " (END_STREAM)"
    elif isinstance(ev, http2.DataReceived):
        size, detail = ev.length, ("END_STREAM" if ev.end_stream else None)
        if ev.missing:
            detail = f"{ev.missing} bytes missing" + (f", {detail}" if detail else "")
    elif isinstance(ev, http2.Settings):
        detail = "ACK" if ev.ack else ", ".join(f"{k}={v}" for k, v in ev.settings)
    elif isinstance(ev, http2.RstStream):
        detail = ev.error
    elif isinstance(ev, http2.GoAway):
        detail = f"last_stream={ev.last_stream} {ev.error}"
    elif isinstance(ev, http2.WindowUpdate):
        size, detail = ev.increment, f"+{ev.increment}"
    elif isinstance(ev, http2.Ping):
        detail = "ACK" if ev.ack else None
    elif isinstance(ev, http2.Priority):
        detail = f"depends_on={ev.depends_on} weight={ev.weight}" + (" exclusive" if ev.exclusive else "")
    elif isinstance(ev, http2.OtherFrame):
        size, detail = ev.length, f"type 0x{ev.type:x}"
    elif isinstance(ev, http2.ParseError):
        detail = ev.message
    return {"ts": ev.ts, "frame": ev.frame or None, "stream": ev.stream, "layer": "h2",
            "kind": h2_kind(ev), "dir": ev.direction, "size": size, "detail": detail}


def h2_request_rows(events, scheme: str, default_host: str | None, first_reused: bool = False) -> list[dict]:
    rows = []
    types = {}      # stream -> the final response's media type
    for ev in events:
        if isinstance(ev, http2.HeadersReceived) and ev.direction == http2.S2C and ev.headers is not None:
            status = ev.header(":status")
            if status is not None and not status.startswith("1"):
                types[ev.stream] = media_type(ev.header("content-type"))
    for i, ex in enumerate(http2.exchanges(events, scheme=scheme, default_host=default_host)):
        row = {"protocol": "h2", "stream": ex.stream, "method": ex.method, "host": ex.host,
               "url": ex.url, "status": ex.status, "start": ex.start, "ttfb": ex.ttfb,
               "end": ex.end, "req_bytes": ex.req_bytes, "resp_bytes": ex.resp_bytes,
               "content_type": types.get(ex.stream)}
        row.update(phases(ex.start, ex.request_sent, ex.response_start, ex.end))
        row["reused_connection"] = first_reused or i > 0
        row["request_frame"], row["response_frame"] = ex.request_frame, ex.response_frame
        row["reset"] = ex.reset
        rows.append(row)
    return rows


# -- a connection's machine ---------------------------------------------------------

def connection_rows(machine, scheme: str, default_host: str | None) -> tuple[list[dict], list[dict]]:
    """(events rows, requests rows) of one connection's HTTP machine (no conn yet)."""
    if isinstance(machine, UpgradeConnection):
        return _upgrade_rows(machine, scheme, default_host)
    if isinstance(machine, http2.HTTP2Connection):
        return ([h2_event_row(ev) for ev in machine.events],
                h2_request_rows(machine.events, scheme, default_host))
    return (http1_event_rows(machine.events), http1_request_rows(machine.events, scheme, default_host))


def _upgrade_rows(machine: UpgradeConnection, scheme: str, default_host: str | None):
    events = http1_event_rows(machine.http1.events)
    rows = http1_request_rows(machine.http1.events, scheme, default_host)
    if machine.http2 is not None:
        events += [h2_event_row(ev) for ev in machine.http2.events]
        h2_rows = h2_request_rows(machine.http2.events, scheme, default_host, first_reused=True)
        if any(r["stream"] == 1 for r in h2_rows):
            # The 101 row was the HTTP/1.1 half of stream 1: one exchange, reported once.
            rows = [r for r in rows if r.get("status") != 101]
            for r in h2_rows:
                if r["stream"] == 1:
                    r["reused_connection"] = bool(rows)
        rows += h2_rows
    return events, rows


def app_label(result) -> str:
    """The ``connections.app`` of a decoded stream: what it spoke above TCP."""
    if result.kind == "tls":
        alpn = result.tls.alpn
        if alpn == "h2":
            return "h2"
        if alpn and alpn.startswith("http/1"):
            return "http/1.1"
        return result.protocol or "tls"
    machine = result.http
    if isinstance(machine, UpgradeConnection):
        return "h2c" if machine.http2 is not None else "http/1.1"
    if isinstance(machine, http2.HTTP2Connection):
        return "h2c"
    return result.kind


def default_host(result, server: str | None) -> str | None:
    """Completes the URL of a request that names no host: the TLS SNI, else the
    server's address (its port dropped when it is the scheme's own)."""
    hello = getattr(result.tls, "client_hello", None)
    sni = getattr(hello, "sni", None)
    if sni:
        return sni
    if not server:
        return None
    host, _, port = server.rpartition(":")
    return host if port == {"http": "80", "https": "443"}.get(result.scheme) else server
