"""QUIC connections (``decode.quic``) as rows: the ``quic`` table, QUIC, TLS and
HTTP/3 ``events``, HTTP/3 ``requests``, their ``tls`` lines, and what the
``connections`` table says of the UDP flows that turned out to be QUIC.

Facts come from the connection machine (``QUICConnection``): handshake
start and end, round trips, Retry, Version Negotiation, the close.  The one
fact made here is ``close`` = ``idle``/``open`` when no CONNECTION_CLOSE was
readable, because it needs the capture's end.

The QUIC and HTTP/3 decoders are imported by the functions that read their
events: a capture without QUIC does not pay for importing them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from traceviz.assemble import tls
from traceviz.assemble.columns import Columns, events_table
from traceviz.assemble.http import opening_phases, phases
from traceviz.decode.http import http2
from traceviz.decode.tls import fingerprints
from traceviz.errors import describe
from traceviz.model import JSON_FIELDS, conform, empty_table

NAN = float("nan")
C2S, S2C = "c2s", "s2c"


@dataclass
class QuicRows:
    """Everything QUIC adds to a capture's Timeline (``table`` is the ``quic`` table)."""

    table: pd.DataFrame
    events: pd.DataFrame = field(default_factory=lambda: empty_table("events"))
    requests: list = field(default_factory=list)
    tls: list = field(default_factory=list)
    apps: dict = field(default_factory=dict)          # conn -> app (h3, quic) of the flows that are QUIC
    warnings: list = field(default_factory=list)


def rows(payload, endpoints: dict, keylog, path: str, capture_end: float | None, events: bool = True) -> QuicRows:
    """The rows of a ``decode.quic.streams.QuicPayload`` (None: nothing); ``events`` False:
    none of the events rows (a row per packet: for a load that builds no events table).
    A payload that read only the handshakes (``run_quic(reads="handshake")``) gives the tls
    rows and the apps alone; one that read only the turns, nothing."""
    out = QuicRows(table=conform("quic", pd.DataFrame(columns=JSON_FIELDS["quic"])))
    if payload is None:
        return out
    out.warnings = _warnings(payload, path)
    if payload.reads == "handshake":
        for conn, q in sorted(payload.results.items()):
            tls_row = _tls_row(q, endpoints.get(conn, {}), keylog)
            if tls_row is not None:
                out.tls.append(tls_row)
            out.apps[conn] = q.app_protocol()
        return out
    quic_rows, event_rows = [], Columns()
    for conn, q in sorted(payload.results.items()):
        ends = endpoints.get(conn, {})
        row = quic_row(q, ends, keylog, capture_end)
        quic_rows.append(row)
        if events:
            event_rows.add_block(*event_columns(conn, q))
        tls_row = _tls_row(q, ends, keylog)
        if tls_row is not None:
            out.tls.append(tls_row)
            if events:
                event_rows.add_block(*tls.event_columns(conn, q.handshake))
        if q.h3 is not None:
            ev, rq = h3_rows(conn, q, _default_host(q, ends.get("server")))
            if events:
                event_rows.add_rows(ev)
            out.requests += rq
            row["requests"] = len(rq)
            row["max_concurrent_requests"] = most_at_once(rq)
        out.apps[conn] = q.app_protocol()
    if quic_rows:
        out.table = conform("quic", pd.DataFrame(quic_rows))
    out.events = events_table(event_rows)
    return out


def _tls_row(q, ends: dict, keylog) -> dict | None:
    """The connection's tls row; None when no hello was read."""
    hs = q.handshake
    if hs.client_hello is None and hs.server_hello is None:
        return None
    return {**tls.session_row(hs, ends, keylog), "transport": "quic"}


def _warnings(payload, path: str) -> list[str]:
    if not payload.suspects:
        return []
    conn, frame, why = payload.suspects[0]
    more = len(payload.suspects) - 1
    return [describe(path, f"UDP flow {conn} looks like QUIC but not all of it could be read: {why}"
                     + (f" (and {more} more flow{'s' * (more != 1)})" if more else ""), frame)]


def _hex(cids) -> list[str]:
    return [c.hex() for c in cids]


def quic_row(q, ends: dict, keylog, capture_end: float | None) -> dict[str, Any]:
    from traceviz.decode.quic import versions as qv
    hs = q.handshake
    ch, sh = hs.client_hello, hs.server_hello
    start, reply, end = q.client_initial(), q.server_reply(), q.handshake_end()
    decrypted = any(q.opened.get(t, 0) for t in ("Handshake", "1-RTT", "0-RTT"))
    spins = q.spin_rtts()
    last = max((e.ts for e in q.events), default=None)
    row = {
        "conn": q.conn, **ends,
        "version": qv.hex_version(q.version), "version_name": qv.name(q.version),
        "sni": ch.sni if ch else None,
        "alpn_offered": q.alpn_offered or None,
        "alpn": q.alpn,
        "handshake_ms": q.handshake_ms(),
        "rtts": q.rtts(),
        "retry": q.retry is not None,
        "version_negotiation": q.vn is not None,
        "zero_rtt": q.zero_rtt,
        "resumed": bool(sh.psk_selected) if sh is not None else None,
        "decrypted": decrypted,
        "packets": len(q.events),
        "bytes_c2s": q.udp_bytes[C2S],
        "bytes_s2c": q.udp_bytes[S2C],
        "close": _close(q, last, capture_end),
        # details, after the stable fields
        "versions": [qv.hex_version(v) for v in q.versions],
        "app": q.app_protocol(),
        "datagrams_c2s": q.datagrams[C2S],
        "datagrams_s2c": q.datagrams[S2C],
        "initial_rtt_ms": (reply.ts - start.ts) * 1000.0 if start and reply else None,
        "min_rtt_ms": q.min_rtt() * 1000.0 if q.min_rtt() is not None else None,
        "handshake_start": start.ts if start else None,
        "handshake_end": end[1] if end else None,
        "client_initial_frame": start.frame if start else None,
        "handshake_end_frame": end[0] if end else None,
        "handshake_done": q.handshake_done.ts if q.handshake_done else None,
        "hello_retry": hs.hello_retry is not None,
        "vn_versions": [qv.hex_version(v) for v in q.vn.versions] if q.vn else None,
        "retry_integrity": None if q.retry is None or q.retry.retry_ok is None else
                           ("ok" if q.retry.retry_ok else "wrong"),
        "cipher": tls_cipher(sh),
        "group": hs.group(),
        "ja4": fingerprints.ja4(ch, "q") if ch else None,
        "client_cids": _hex(q.scids[C2S]) or None,
        "server_cids": _hex(q.scids[S2C]) or None,
        "cid_changes": max(len(q.dcids[C2S]) - 1, 0) + max(len(q.dcids[S2C]) - 1, 0),
        "new_connection_ids": q.new_cids[C2S] + q.new_cids[S2C],
        "spin_edges": len(q.spin_edges[C2S]) + len(q.spin_edges[S2C]),
        "spin_rtt_ms": sorted(spins)[len(spins) // 2] * 1000.0 if spins else None,
        "packets_decrypted": int(sum(q.opened.values())),
        "packets_encrypted": int(sum(q.not_opened.values())),
        "key_updates": q.key_updates(),
        "streams": len({sid for (_, sid) in q.stream_bytes}),
        "retransmitted_bytes": q.retransmitted,
        "idle_timeout_s": q.idle_timeout(),
        "decrypt_note": _decrypt_note(q, keylog, decrypted),
        "transport_parameters_client": hs.client_parameters,
        "transport_parameters_server": hs.server_parameters,
        "decode_errors": len(q.errors) + len(hs.errors),
        "decode_error_detail": "; ".join((q.errors + hs.errors)[:3]) or None,
    }
    return row


def tls_cipher(sh) -> str | None:
    if sh is None or sh.cipher is None:
        return None
    from traceviz.decode.tls.names import cipher_name
    return cipher_name(sh.cipher)


def _close(q, last: float | None, capture_end: float | None) -> str:
    text = q.close_text()
    if text is not None:
        return text
    timeout = q.idle_timeout()
    if last is not None and capture_end is not None and timeout is not None and capture_end - last >= timeout:
        return "idle"
    return "open"


def _decrypt_note(q, keylog, decrypted: bool) -> str | None:
    from traceviz.decode.quic import versions as qv
    if decrypted:
        return None
    if q.version is not None and qv.is_google(q.version) and q.version >> 16 == 0x5130:
        return "Google QUIC crypto: not decryptable"
    ch = q.handshake.client_hello
    if keylog is None:
        return "no key log: Initial packets only"
    if ch is None:
        return "no ClientHello read: its client random names the keys"
    if not keylog.has(ch.random):
        return "the key log has no secrets for this ClientHello"
    return "secrets present but the packets did not open"


def _default_host(q, server: str | None) -> str | None:
    ch = q.handshake.client_hello
    if ch is not None and ch.sni:
        return ch.sni
    if not server:
        return None
    host, _, port = server.rpartition(":")
    return host if port == "443" else server


# -- events -----------------------------------------------------------------------

_SHOWN_FRAMES = ("PADDING",)      # frames too many and too dull to list one by one


def event_columns(conn: int, q) -> tuple[dict[str, list], int]:
    """The connection's ``events`` rows as columns (``assemble.columns``), and how many: a row
    per packet, then one per frame of it (PADDING left out).  Columns, not a dict per row:
    129k packets on the realistic bench's 1M packets made 0.6 s of dicts."""
    from traceviz.decode.quic import versions as qv
    ts, frame, dirs, pn, space, index, coalesced, stream, kind, size, detail = ([] for _ in range(11))
    for p in q.events:
        values = (p.ts, p.frame, p.dir, p.pn, p.space, p.index, p.coalesced)
        for col, v in zip((ts, frame, dirs, pn, space, index, coalesced), values):
            col.append(v)
        stream.append(pd.NA)
        kind.append(p.type)
        size.append(p.size)
        detail.append(packet_detail(p, qv))
        for f in p.frames:
            if f.name in _SHOWN_FRAMES:
                continue
            for col, v in zip((ts, frame, dirs, pn, space, index, coalesced), values):
                col.append(v)
            sid = getattr(f, "stream_id", None)
            stream.append(sid if sid is not None else pd.NA)
            kind.append(f.name)
            size.append(getattr(f, "length", None))
            detail.append(frame_detail(f, q))
    n = len(ts)
    return {"ts": ts, "frame": frame, "conn": [conn] * n, "layer": ["quic"] * n, "dir": dirs, "pn": pn,
            "space": space, "index": index, "coalesced": coalesced, "stream": stream, "kind": kind, "size": size,
            "detail": detail}, n


def packet_detail(p, qv=None) -> str:
    """``qv``: ``decode.quic.versions``, imported once by a caller that describes many packets."""
    if qv is None:
        from traceviz.decode.quic import versions as qv
    parts = []
    if p.type == "VN":
        parts.append("versions " + ", ".join(qv.hex_version(v) for v in p.versions))
    elif p.type == "Retry":
        parts.append(f"token {p.token} B, integrity tag " + {True: "ok", False: "WRONG", None: "unchecked"}[p.retry_ok])
    if p.version is not None and p.type not in ("VN",):
        parts.append(qv.name(p.version) or "")
    if p.pn is not None:
        parts.append(f"pn {p.pn}")
    if p.dcid:
        parts.append(f"dcid {p.dcid.hex()}")
    if p.coalesced > 1:
        parts.append(f"coalesced {p.index + 1}/{p.coalesced}")
    if p.spin is not None:
        parts.append(f"spin {int(p.spin)}")
    if p.decrypted:
        names = [f.name for f in p.frames if f.name != "PADDING"]
        parts.append(", ".join(names) if names else "padding only")
    elif p.note:
        parts.append(p.note)
    return "; ".join(x for x in parts if x)


def frame_detail(f, q) -> str | None:
    from traceviz.decode.http import h3 as h3mod
    from traceviz.decode.quic import frames as qf
    if isinstance(f, qf.Ack):
        ranges = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in f.ranges)
        return f"largest {f.largest}, acked {ranges}" + (f", ecn {f.ecn}" if f.ecn else "")
    if isinstance(f, qf.Stream):
        return f"offset {f.offset}, {f.length} B" + (", FIN" if f.fin else "")
    if isinstance(f, qf.Crypto):
        return f"offset {f.offset}, {f.length} B"
    if isinstance(f, qf.ConnectionClose):
        if f.application:
            code = h3mod.ERROR_CODES.get(f.error_code, f"0x{f.error_code:x}") if q.app_protocol() == "h3" \
                else f"0x{f.error_code:x}"
        else:
            code = qf.transport_error_name(f.error_code)
        return code + (f": {f.reason}" if f.reason else "")
    if isinstance(f, qf.NewConnectionId):
        return f"seq {f.sequence}, retire < {f.retire_prior_to}, cid {f.cid.hex()}"
    if isinstance(f, qf.RetireConnectionId):
        return f"seq {f.sequence}"
    if isinstance(f, (qf.ResetStream, qf.StopSending)):
        return h3mod.error_name(f.error_code) if q.app_protocol() == "h3" else f"0x{f.error_code:x}"
    if isinstance(f, qf.Limit):
        return str(f.value) + (" bidi" if f.bidi else " uni" if f.bidi is False else "")
    if isinstance(f, qf.NewToken):
        return f"{len(f.token)} B token"
    if isinstance(f, qf.PathProbe):
        return f.data.hex()
    return None


# -- HTTP/3 -----------------------------------------------------------------------

def h3_kind(ev) -> str:
    """The ``events.kind`` an HTTP/3 event is listed under (its frame type, mostly)."""
    from traceviz.decode.http import h3 as h3mod
    if isinstance(ev, h3mod.OtherFrame):
        return ev.name
    kinds = {h3mod.HeadersReceived: "HEADERS", h3mod.DataReceived: "DATA", h3mod.StreamEnd: "FIN",
             h3mod.StreamReset: "RESET_STREAM", h3mod.StreamType: "stream", h3mod.Settings: "SETTINGS",
             h3mod.GoAway: "GOAWAY", h3mod.ParseError: "parse-error"}
    return kinds.get(type(ev), type(ev).__name__)


def h3_event_row(ev) -> dict:
    """An HTTP/3 event as an ``events`` row (layer ``h3``; the caller adds conn).  HEADERS and
    DATA are HTTP/2's events and are described as HTTP/2's are, a stream's end being QUIC's FIN."""
    from traceviz.assemble.http import h2_event_row
    from traceviz.decode.http import h3 as h3mod
    row = {"ts": ev.ts, "frame": ev.frame or None, "stream": ev.stream, "layer": "h3", "kind": h3_kind(ev),
           "dir": ev.direction, "size": None, "detail": None}
    if isinstance(ev, (h3mod.HeadersReceived, h3mod.DataReceived, h3mod.StreamReset)):
        h2 = h2_event_row(ev)
        row["size"] = h2["size"]
        row["detail"] = h2["detail"].replace("END_STREAM", "FIN") if h2["detail"] else None
    elif isinstance(ev, h3mod.StreamEnd):
        row["detail"] = "end of stream"
    elif isinstance(ev, h3mod.StreamType):
        row["detail"] = ev.kind
    elif isinstance(ev, h3mod.Settings):
        row["detail"] = ", ".join(f"{k}={v}" for k, v in ev.settings) or "(empty)"
    elif isinstance(ev, h3mod.GoAway):
        row["detail"] = f"id {ev.last_id}"
    elif isinstance(ev, h3mod.OtherFrame):
        row["size"] = ev.length
    elif isinstance(ev, h3mod.ParseError):
        row["detail"] = ev.message
    return row


def h3_rows(conn: int, q, default_host: str | None) -> tuple[list[dict], list[dict]]:
    """(events rows, requests rows) of a connection's HTTP/3."""
    from traceviz.decode.http import h3 as h3mod
    events = q.h3.events
    ev_rows = [{"conn": conn, **h3_event_row(ev)} for ev in events]
    heads = _headers_by_stream(events)
    hs_wait = q.handshake_ms()
    start = q.client_initial()
    rq = []
    for i, ex in enumerate(h3mod.exchanges(events, default_host=default_host)):
        row = {"conn": conn, "source": "pcap", "protocol": "h3", "stream": ex.stream, "method": ex.method,
               "host": ex.host, "url": ex.url, "status": ex.status, "start": ex.start, "ttfb": ex.ttfb,
               "end": ex.end, "req_bytes": ex.req_bytes, "resp_bytes": ex.resp_bytes}
        row.update(phases(ex.start, ex.request_sent, ex.response_start, ex.end))
        row["reused_connection"] = i > 0
        row["request_frame"], row["response_frame"] = ex.request_frame, ex.response_frame
        row["reset"] = ex.reset
        row["request_headers"], row["response_headers"] = heads.get((C2S, ex.stream)), heads.get((S2C, ex.stream))
        ctype = _header(row["response_headers"], "content-type")
        row["content_type"] = ctype.split(";")[0].strip().lower() if ctype else None
        rq.append(row)
    if hs_wait is not None and start is not None:
        # The first requests waited for QUIC's handshake (its tls phase), as a TCP connection's
        # wait for SYN and TLS: they start at the client's first Initial, as in a HAR.
        opening_phases(rq, None, None, start.ts, start.ts + hs_wait / 1000.0, None)
    return ev_rows, rq


def most_at_once(requests: list[dict]) -> int:
    """The most requests in flight together (a request's start to its last response byte)."""
    marks = sorted([(r["start"], 1) for r in requests if r.get("start") is not None] +
                   [(r["end"], -1) for r in requests if r.get("end") is not None], key=lambda m: (m[0], m[1]))
    most = now = 0
    for _, step in marks:
        now += step
        most = max(most, now)
    return most


def _headers_by_stream(events) -> dict:
    out: dict = {}
    for ev in events:
        if isinstance(ev, http2.HeadersReceived) and ev.headers is not None and (ev.direction, ev.stream) not in out:
            out[(ev.direction, ev.stream)] = [[k, v] for k, v in ev.headers]
    return out


def _header(headers, name: str) -> str | None:
    for k, v in headers or ():
        if k == name:
            return v
    return None


# -- connections -------------------------------------------------------------------

def mark_connections(conns: pd.DataFrame, quic_conns) -> pd.DataFrame:
    """The UDP flows that are QUIC connections get transport ``quic`` (their app, SNI and ALPN
    come with the TLS sessions, as for TCP)."""
    if not len(quic_conns) or conns.empty:
        return conns
    conns = conns.copy()
    transport = conns["transport"].astype("object").to_numpy(copy=True)
    transport[conns["conn"].isin(list(quic_conns)).to_numpy(dtype=bool, na_value=False)] = "quic"
    conns["transport"] = pd.Series(transport, index=conns.index, dtype="object")
    return conform("connections", conns)
