"""HTTP caching facts of each request: the validators it sent, the ones its response offered.

Added to a connection's ``requests`` rows (before they become a table), from
the HTTP machine's own events -- the header lines the capture carried:

    conditional      validators the request sent: ``etag`` (If-None-Match), ``date``
                     (If-Modified-Since), ``both``, or None
    etag, last_modified, cache_control
                     the response's ETag, Last-Modified and Cache-Control (None: absent)
    validator        what the response offers a cache to revalidate with: ``etag``,
                     ``last-modified``, ``both``, or None (the next use must download it again)
    revalidated      a conditional request's outcome: True for 304 (the cached body is still
                     good), False for a full answer; None for an unconditional request
    body_bytes       the response's body bytes (a 304 has none)

HTTP/1.x requests are matched to their ``Request``/``Response`` events by
frame, HTTP/2 ones to their stream's HEADERS.
"""

from __future__ import annotations

from traceviz.decode.http import http1, http2

COLUMNS = ("conditional", "etag", "last_modified", "cache_control", "validator", "revalidated", "body_bytes")


def annotate(rows: list[dict], machine) -> None:
    """Add the caching columns to ``rows`` (one connection's request rows), in place."""
    if not rows or machine is None:
        return
    h1 = getattr(machine, "http1", machine)
    requests, responses, bodies = {}, {}, {}
    if isinstance(h1, http1.HTTP1Connection):
        pending = None
        for ev in h1.events:
            if isinstance(ev, http1.Request):
                requests[ev.frame] = ev.headers
            elif isinstance(ev, http1.Response) and not 100 <= ev.status < 200:
                responses[ev.frame] = ev.headers
                pending = ev.frame
            elif isinstance(ev, http1.ResponseEnd) and pending is not None:
                bodies[pending], pending = ev.body_bytes, None
    h2 = getattr(machine, "http2", None) or (machine if isinstance(machine, http2.HTTP2Connection) else None)
    streams = _h2_headers(h2) if h2 is not None else {}
    for r in rows:
        if r.get("stream") is not None and r["stream"] in streams:
            req, resp, body = streams[r["stream"]]
        else:
            req, resp = requests.get(r.get("request_frame")), responses.get(r.get("response_frame"))
            body = bodies.get(r.get("response_frame"))
        r.update(facts(req, resp, r.get("status"), body))


def facts(req, resp, status, body) -> dict:
    """The caching columns of one exchange from its request and response headers (pairs)."""
    asked, said = _pick(req), _pick(resp)
    inm, ims = asked.get("if-none-match"), asked.get("if-modified-since")
    etag, modified = said.get("etag"), said.get("last-modified")
    conditional = _both(inm is not None, ims is not None, "etag", "date")
    return {
        "conditional": conditional,
        "etag": etag, "last_modified": modified, "cache_control": said.get("cache-control"),
        "validator": _both(etag is not None, modified is not None, "etag", "last-modified") if resp else None,
        "revalidated": None if conditional is None or status is None else status == 304,
        "body_bytes": body,
    }


def _both(a: bool, b: bool, one: str, other: str) -> str | None:
    return "both" if a and b else one if a else other if b else None


_NAMES = frozenset({"if-none-match", "if-modified-since", "etag", "last-modified", "cache-control"})


def _pick(headers) -> dict[str, str]:
    """The first value of each header ``facts`` reads, by lower-case name: one pass over the
    headers instead of one per name."""
    out: dict[str, str] = {}
    for k, v in headers or ():
        name = k.lower()
        if name in _NAMES and name not in out:
            out[name] = v
    return out


def _h2_headers(conn) -> dict[int, tuple]:
    """stream -> (request headers, final response headers, DATA bytes the server sent)."""
    out: dict[int, list] = {}
    for ev in conn.events:
        if isinstance(ev, http2.HeadersReceived) and ev.headers is not None:
            slot = out.setdefault(ev.stream, [None, None, 0])
            if ev.direction == http2.C2S and slot[0] is None:
                slot[0] = ev.headers
            elif ev.direction == http2.S2C and ev.header(":status") and not ev.header(":status").startswith("1"):
                slot[1] = ev.headers
        elif isinstance(ev, http2.DataReceived) and ev.direction == http2.S2C:
            out.setdefault(ev.stream, [None, None, 0])[2] += ev.length
    return {k: tuple(v) for k, v in out.items()}
