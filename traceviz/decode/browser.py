"""Browser records into the timeline: HAR entries, trace events, CDP messages.

Sans-I/O except ``load_browser``, which reads the file through
``traceviz.sources`` and hands the records to the pure functions here.

Phase semantics (DESIGN.md): HAR 1.2 phases in seconds, except that our
``connect`` excludes TLS, which is its own ``tls`` phase.  ``-1`` (absent)
becomes NaN, never zero.  ``start``, ``end`` are epoch seconds; ``ttfb`` is
seconds from ``start`` to the first response byte.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Iterable
from urllib.parse import urlsplit

import pandas as pd

from traceviz.errors import InputError, describe
from traceviz.model import SourceInfo, Timeline, conform, empty_table
from traceviz.sources import browser as json_source
from traceviz.sources.devtools import (ProtocolLog, TraceLog, protocol_log_from_json,
                                       trace_from_json)
from traceviz.sources.har import HarLog, _drop_bodies, har_from_json

NAN = float("nan")
PHASES = ("blocked", "dns", "connect", "tls", "send", "wait", "receive")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


# --------------------------------------------------------------------------- entry point

def load_browser(path) -> Timeline:
    """A HAR, DevTools trace or DevTools protocol log, decoded into a Timeline.

    Decides the kind from the parsed JSON itself (not the file name); JSON that
    is none of these raises ``InputError``.
    """
    path = str(path)
    hint = json_source.sniff_json(path)
    value, facts = json_source.parse(path, object_hook=_drop_bodies if hint == "har" else None)
    kind = json_source.classify(value)
    if kind == "har":
        return timeline_from_har(har_from_json(path, value, facts))
    if kind == "devtools-trace":
        return timeline_from_trace(trace_from_json(path, value, facts))
    if kind == "devtools-log":
        return timeline_from_protocol_log(protocol_log_from_json(path, value, facts))
    raise InputError(path, f"{_what_json(value)}; cannot read it as a browser export")


def _what_json(value: Any) -> str:
    """Name what a JSON file is, for the one-line error."""
    if not isinstance(value, (dict, list)):
        return f"a JSON {type(value).__name__}, not an object"
    if not value:
        return "an empty JSON " + ("object" if isinstance(value, dict) else "array")
    if isinstance(value, dict) and ("qlog_version" in value or "qlog_format" in value):
        return "a qlog file (QUIC events), not a HAR or DevTools export"
    if isinstance(value, dict) and "constants" in value and "events" in value:
        return "a Chrome NetLog, which this reader does not decode"
    return "JSON that is not a HAR, DevTools trace or DevTools protocol log"


# --------------------------------------------------------------------------- small helpers

def _num(v: Any) -> float:
    """A number from a JSON field; NaN for absent, -1 (HAR's "does not apply") or junk."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                return NAN
        else:
            return NAN
    v = float(v)
    return v if v >= 0 and math.isfinite(v) else NAN


def _count(v: Any) -> Any:
    """A byte count or port as int; NA when absent or beyond what a file could mean (2**53)."""
    x = _num(v)
    return int(x) if not math.isnan(x) and x < 2 ** 53 else pd.NA


def _status(v: Any) -> float:
    """An HTTP status (100-999); NaN for 0 ("no response"), absent or nonsense."""
    x = _num(v)
    return x if 100 <= x <= 999 and x == int(x) else NAN


def _port(v: Any) -> int | None:
    x = _num(v)
    return int(x) if 0 < x < 65536 else None


def _nansum(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) if vals else NAN


def normalize_protocol(text: Any) -> str | None:
    """``HTTP/1.1``, ``http/2.0``, ``h2``, ``h3-29``... -> http/1.0, http/1.1, h2, h3 (or lower-cased as is)."""
    if not isinstance(text, str):
        return None
    t = text.strip().lower()
    if t in ("", "unknown", "-"):
        return None
    if t in ("http/2", "http/2.0"):
        return "h2"
    if t.startswith(("h3-", "http/3")):        # drafts and long forms
        return "h3"
    return t


def host_of(url: Any, headers: Any = None) -> str | None:
    if isinstance(url, str):
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        if host:
            return host
    for h in headers if isinstance(headers, list) else []:
        # relative URLs (some Chrome 51 exports): the Host / :authority header names the host
        if isinstance(h, dict) and str(h.get("name", "")).lower() in ("host", ":authority"):
            try:
                return urlsplit("//" + str(h.get("value", ""))).hostname
            except ValueError:
                return None
    return None


def port_of(url: Any) -> int | None:
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        return parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None


def _epoch_seconds(stamps: list[Any]) -> list[float]:
    """ISO 8601 ``startedDateTime`` strings -> epoch seconds (NaN when unreadable)."""
    if not stamps:
        return []
    s = pd.Series([x if isinstance(x, str) else None for x in stamps], dtype="object")
    try:
        return _to_seconds(s)
    except (ValueError, OverflowError, TypeError):
        # one odd stamp (year -1, 99999...) sinks the vectorised parse: go one by one
        return [_to_seconds(pd.Series([x], dtype="object"))[0] if x is not None else NAN for x in s]


_EPOCH, _FAR = pd.Timestamp("1970-01-01", tz="UTC"), pd.Timestamp("2200-01-01", tz="UTC")


def _to_seconds(s: pd.Series) -> list[float]:
    try:
        dt = pd.to_datetime(s, utc=True, format="ISO8601", errors="coerce")
        dt = dt.where((dt >= _EPOCH) & (dt < _FAR))       # year -1 or 99999 is no capture date
        secs = (dt - _EPOCH) / pd.Timedelta(seconds=1)
    except (ValueError, OverflowError, TypeError):
        if len(s) > 1:
            raise
        return [NAN]
    return [float(x) if pd.notna(x) else NAN for x in secs]


# --------------------------------------------------------------------------- HAR

def har_phases(timings: Any, ssl_separate: bool = False) -> dict[str, float]:
    """HAR ``timings`` (ms) -> our phases (s), with TLS split out of ``connect``.

    HAR 1.2 says ``connect`` includes ``ssl``; some exporters (Firefox 111)
    write them as separate, consecutive phases: ``ssl_separate`` (decided once
    per file by ``ssl_is_separate``) says which reading applies.
    """
    t = timings if isinstance(timings, dict) else {}
    ms = {k: _num(t.get(k)) for k in ("blocked", "dns", "connect", "ssl", "send", "wait", "receive")}
    ssl, connect = ms.pop("ssl"), ms["connect"]
    if not math.isnan(ssl) and not math.isnan(connect) and not ssl_separate:
        ms["connect"] = max(0.0, connect - ssl)
    ms["tls"] = ssl
    return {p: ms[p] / 1000.0 for p in PHASES}


def ssl_is_separate(entries: list[dict], creator: str = "") -> bool:
    """Does this file write ``ssl`` outside ``connect``?  Decided per file, not per entry.

    HAR 1.2 puts ``ssl`` inside ``connect``, and Chromium-based exporters
    (DevTools, Playwright, chrome-har) do so.  Firefox writes them as separate,
    consecutive phases; so, evidently, does any file where an entry's ``ssl``
    exceeds its ``connect``.  (Whether the phases add up to ``time`` proves
    nothing: Playwright adds ``ssl`` into ``time`` a second time.)
    """
    if "firefox" in creator.lower():
        return True
    for e in entries:
        t = e.get("timings") if isinstance(e.get("timings"), dict) else {}
        ssl, connect = _num(t.get("ssl")), _num(t.get("connect"))
        if not math.isnan(ssl) and not math.isnan(connect) and ssl > connect + 1e-6:
            return True
    return False


def _har_resp_bytes(resp: dict) -> Any:
    transfer = _num(resp.get("_transferSize"))
    if not math.isnan(transfer):
        return _count(transfer)
    head, body = _num(resp.get("headersSize")), _num(resp.get("bodySize"))
    if not math.isnan(body):
        return _count(body + (0 if math.isnan(head) else head))
    return pd.NA


def _har_req_bytes(req: dict) -> Any:
    head, body = _num(req.get("headersSize")), _num(req.get("bodySize"))
    if math.isnan(head) and math.isnan(body):
        return pd.NA
    return _count(_nansum([head, body]))


def _initiator_type(v: Any) -> str | None:
    if isinstance(v, dict):
        return v.get("type") if isinstance(v.get("type"), str) else None
    return v if isinstance(v, str) else None


def har_request_rows(entries: list[dict], creator: str = "", warnings: list[str] | None = None,
                     path: str = "") -> list[dict]:
    """One row per HAR entry, in file order, with the REQUEST_COLUMNS fields and extras.

    ``creator`` is the exporter's (and browser's) name: Firefox writes ``ssl``
    apart from ``connect`` and the server *port* in ``connection``.
    """
    starts = _epoch_seconds([e.get("startedDateTime") for e in entries])
    separate = ssl_is_separate(entries, creator)
    firefox_style_connection = "firefox" in creator.lower()
    double_counted = 0
    rows = []
    for i, (e, start) in enumerate(zip(entries, starts)):
        req = e.get("request") if isinstance(e.get("request"), dict) else {}
        resp = e.get("response") if isinstance(e.get("response"), dict) else {}
        content = resp.get("content") if isinstance(resp.get("content"), dict) else {}
        time_ms = _num(e.get("time"))
        ph = har_phases(e.get("timings"), separate)
        status = _status(resp.get("status"))
        answered = not math.isnan(status) and status > 0
        if not answered:
            # Chrome writes wait 0 / receive 0 for a request that never got an answer: absent, not zero
            ph["wait"] = ph["receive"] = NAN
        phase_sum = _nansum(ph.values())
        total = time_ms / 1000.0 if not math.isnan(time_ms) else phase_sum
        if not separate and ph["tls"] > 0 and not math.isnan(total) and \
                abs(total - phase_sum - ph["tls"]) < 5e-4 < abs(total - phase_sum):
            # ``time`` counted the TLS time twice (inside connect and again as ssl), as
            # Playwright writes it: the exchange really ended at the phases' end.
            total = phase_sum
            double_counted += 1
        end = start + total if not math.isnan(total) else NAN
        upto_wait = [ph[p] for p in PHASES[:-1]]
        ttfb = _nansum(upto_wait) if answered and not math.isnan(ph["wait"]) else NAN
        url = req.get("url") if isinstance(req.get("url"), str) else None
        # Chrome: "connection"; some tools "_connection"; WebPageTest: "_socket"
        raw_conn = next((e[k] for k in ("connection", "_connection", "_socket") if e.get(k) not in (None, "")), None)
        raw_conn = None if raw_conn in (None, "", -1) else str(raw_conn)
        server_port = _num(e.get("_serverPort"))
        if firefox_style_connection and raw_conn and raw_conn.isdigit():
            # Firefox writes the server port here, not a connection id.
            server_port, raw_conn = float(raw_conn), None
        ip = next((e[k] for k in ("serverIPAddress", "_ip_addr") if isinstance(e.get(k), str) and e[k]), None)
        if ip and ip.startswith("[") and ip.endswith("]"):
            ip = ip[1:-1]
        unattributed = (total - phase_sum) if not math.isnan(total) and not math.isnan(phase_sum) else NAN
        rows.append({
            "request": i,
            "protocol": normalize_protocol(resp.get("httpVersion") or req.get("httpVersion") or e.get("_protocol")),
            "method": req.get("method") if isinstance(req.get("method"), str) else None,
            "host": host_of(url, req.get("headers")),
            "url": url,
            "status": int(status) if answered else pd.NA,
            "start": start,
            "ttfb": ttfb,
            "end": end,
            "req_bytes": _har_req_bytes(req),
            "resp_bytes": _har_resp_bytes(resp),
            **ph,
            "reused_connection": _reused(ph, answered, e.get("timings")),
            "source": "har",
            "request_id": str(e.get("_requestId") or e.get("_request_id") or i),
            "page": e.get("pageref") if isinstance(e.get("pageref"), str) else None,
            "resource_type": e.get("_resourceType") if isinstance(e.get("_resourceType"), str) else None,
            "mime_type": content.get("mimeType") if isinstance(content.get("mimeType"), str) else None,
            "priority": e.get("_priority") if isinstance(e.get("_priority"), str) else None,
            "initiator": _initiator_type(e.get("_initiator")),
            "server_ip": ip,
            "server_port": _port(server_port) or port_of(url),
            "from_cache": _har_from_cache(e),
            "error": None if answered else _text(resp.get("_error")) or _text(resp.get("statusText")) or "no response",
            "pending": False,
            "connection_id": raw_conn,
            "http_version": resp.get("httpVersion") if isinstance(resp.get("httpVersion"), str) else None,
            "unattributed": unattributed,
            "tls_version": _text(_security(e).get("protocol")),
        })
    _unique_ids(rows)
    if double_counted and warnings is not None:
        warnings.append(describe(path, f"{double_counted} entries count TLS time twice in \"time\" "
                                       "(ssl inside connect and again on its own); their end is the phases' end"))
    return rows


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _unique_ids(rows: list[dict]) -> None:
    """Keep ``request_id`` one per row: a reused id (a redirect chain) gets ``:2``, ``:3``..."""
    seen: dict[str, int] = {}
    for r in rows:
        n = seen.get(r["request_id"], 0) + 1
        seen[r["request_id"]] = n
        if n > 1:
            r["request_id"] = f"{r['request_id']}:{n}"


def _security(e: dict) -> dict:
    s = e.get("_securityDetails")
    return s if isinstance(s, dict) else {}


def _har_from_cache(e: dict) -> Any:
    v = e.get("_fromCache")
    if isinstance(v, str) and v:
        return True          # Chrome: "memory" / "disk"
    if isinstance(v, bool):
        return v
    return pd.NA


def _reused(ph: dict[str, float], answered: bool, timings: Any = None) -> Any:
    """True when the request did no handshake of its own; NA when nothing says either way.

    HAR's ``connect: -1`` means "does not apply": no connection was opened.
    A missing ``connect`` says nothing.
    """
    if not answered:
        return pd.NA
    if (ph["connect"] > 0) or (ph["tls"] > 0):
        return False
    if not math.isnan(ph["connect"]):
        return True
    if isinstance(timings, dict) and timings.get("connect") in (-1, 0):
        return True
    return pd.NA


def har_pages(pages: list[dict]) -> list[dict]:
    starts = _epoch_seconds([p.get("startedDateTime") for p in pages])
    out = []
    for p, start in zip(pages, starts):
        timings = p.get("pageTimings") if isinstance(p.get("pageTimings"), dict) else {}
        dcl, load = _num(timings.get("onContentLoad")), _num(timings.get("onLoad"))
        out.append(_page(p.get("id"), p.get("title"), start, dcl, load))
    return out


def _page(pid: Any, title: Any, start: float, dcl_ms: float, load_ms: float, url: Any = None) -> dict:
    return {
        "id": str(pid) if pid is not None else None,
        "title": title if isinstance(title, str) else None,
        "url": url if isinstance(url, str) else None,
        "start": None if math.isnan(start) else start,
        "onContentLoad": None if math.isnan(dcl_ms) else dcl_ms,      # ms after start, as HAR
        "onLoad": None if math.isnan(load_ms) else load_ms,
        "dom_content_loaded": None if math.isnan(dcl_ms) or math.isnan(start) else start + dcl_ms / 1000,
        "load": None if math.isnan(load_ms) or math.isnan(start) else start + load_ms / 1000,
    }


def timeline_from_har(har: HarLog) -> Timeline:
    creator = (har.creator.get("name") or "") if isinstance(har.creator.get("name"), str) else ""
    browser_name = har.browser.get("name") if isinstance(har.browser.get("name"), str) else None
    warnings = list(har.warnings)
    rows = har_request_rows(har.entries, creator + " " + (browser_name or ""), warnings, har.path)
    pages = har_pages(har.pages)
    bad = sum(1 for r in rows if math.isnan(r["start"]))
    if bad:
        warnings.append(describe(har.path, f"{bad} entries have no readable startedDateTime"))
    requests = _requests_frame(rows)
    requests, connections = assign_connections(requests)
    info = SourceInfo(path=har.path, format="har", size=har.size, compressed=har.compressed,
                      warnings=warnings)
    info.detail = {
        "har_version": har.version,
        "creator": _name_version(har.creator),
        "browser": _name_version(har.browser) if har.browser else None,
        "pages": pages,
        "entries": len(har.entries),
        "jsonp": har.jsonp,
        **_summary_detail(requests, connections),
    }
    events = events_table(requests, pages, layer="har")
    return Timeline(source=info, connections=connections, events=events, requests=requests)


def _name_version(d: dict) -> str | None:
    name, version = d.get("name"), d.get("version")
    if not isinstance(name, str):
        return None
    return f"{name} {version}" if isinstance(version, str) and version else name


# --------------------------------------------------------------------------- Chrome timing (trace + CDP)

def chrome_phases(issue: float, timing: dict | None, headers_at: float | None, finish: float) -> dict[str, float]:
    """Chrome's ResourceTiming (ms after ``requestTime``) -> our phases (s), as DevTools' HAR export does.

    ``issue`` is when the page asked for the request (queueing starts there);
    blocked = queueing + the stall before the first of dns/connect/send.
    """
    out = {p: NAN for p in PHASES}
    if not isinstance(timing, dict):
        return out
    base = _num(timing.get("requestTime"))
    if math.isnan(base):
        return out
    g = {k: _signed(timing.get(k)) for k in (
        "dnsStart", "dnsEnd", "connectStart", "connectEnd", "sslStart", "sslEnd",
        "sendStart", "sendEnd", "receiveHeadersEnd")}
    queued = max(0.0, base - issue) if not math.isnan(issue) else 0.0
    first = next((g[k] for k in ("dnsStart", "connectStart", "sendStart") if g[k] >= 0), NAN)
    out["blocked"] = queued + (first / 1000 if not math.isnan(first) else 0.0)
    out["dns"] = _span(g["dnsStart"], g["dnsEnd"])
    connect = _span(g["connectStart"], g["connectEnd"])
    tls = _span(g["sslStart"], g["sslEnd"])
    out["tls"] = tls
    out["connect"] = max(0.0, connect - tls) if not math.isnan(tls) and not math.isnan(connect) else connect
    out["send"] = _span(g["sendStart"], g["sendEnd"])
    if g["receiveHeadersEnd"] >= 0 and g["sendEnd"] >= 0:
        out["wait"] = max(0.0, g["receiveHeadersEnd"] - g["sendEnd"]) / 1000
    if headers_at is not None and not math.isnan(finish) and not math.isnan(out["wait"]):
        out["receive"] = max(0.0, finish - headers_at)
    return out


def _signed(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else -1.0


def _span(a: float, b: float) -> float:
    return max(0.0, b - a) / 1000 if a >= 0 and b >= 0 else NAN


class _Hop:
    """One request (or redirect hop) being assembled from Chrome's events."""

    __slots__ = ("rid", "url", "method", "issue", "wall", "resource_type", "priority", "initiator",
                 "response", "finish", "failed", "error", "data_bytes", "encoded", "frame", "cached")

    def __init__(self, rid: str, url: Any, method: Any, issue: float):
        self.rid, self.url, self.method, self.issue = rid, url, method, issue
        self.wall = NAN
        self.resource_type = self.priority = self.initiator = self.frame = None
        self.response: dict | None = None
        self.finish = NAN
        self.failed = False
        self.error = None
        self.data_bytes = 0
        self.encoded = NAN
        self.cached = False


def _hop_row(h: _Hop, source: str, offset: float, index: int) -> dict:
    r = h.response or {}
    timing = r.get("timing") if isinstance(r.get("timing"), dict) else None
    status = _status(r.get("status", r.get("statusCode")))
    answered = not math.isnan(status) and status > 0
    base = _num((timing or {}).get("requestTime"))
    rhe = _signed((timing or {}).get("receiveHeadersEnd"))
    headers_at = base + rhe / 1000 if not math.isnan(base) and rhe >= 0 else None
    issue = h.issue
    if not math.isnan(base) and (math.isnan(issue) or base < issue):
        issue = base             # the renderer logged the send late (navigations)
    ph = chrome_phases(issue, timing, headers_at, h.finish)
    ttfb = headers_at - issue if headers_at is not None and answered else NAN
    if answered and math.isnan(ttfb):
        ts = _num(r.get("_ts"))
        ttfb = ts - issue if not math.isnan(ts) else NAN
    conn_id = r.get("connectionId")
    conn_id = None if conn_id in (None, 0, "0", "") or isinstance(conn_id, bool) else str(conn_id)
    ip = r.get("remoteIPAddress") if isinstance(r.get("remoteIPAddress"), str) and r.get("remoteIPAddress") else None
    if ip and ip.startswith("["):
        ip = ip.strip("[]")
    port = _num(r.get("remotePort"))
    encoded = h.encoded if not math.isnan(h.encoded) else _num(r.get("encodedDataLength"))
    reused = r.get("connectionReused")
    if isinstance(reused, bool):
        reused_v: Any = reused
    else:
        reused_v = _reused(ph, answered, {"connect": timing.get("connectStart")}) if timing else pd.NA
    pending = not h.failed and math.isnan(h.finish)
    return {
        "request": index,
        "protocol": normalize_protocol(r.get("protocol")),
        "method": h.method if isinstance(h.method, str) else None,
        "host": host_of(h.url),
        "url": h.url if isinstance(h.url, str) else None,
        "status": int(status) if answered else pd.NA,
        "start": issue + offset if not math.isnan(issue) else NAN,
        "ttfb": ttfb,
        "end": h.finish + offset if not math.isnan(h.finish) else NAN,
        "req_bytes": pd.NA,
        "resp_bytes": _count(encoded),
        **ph,
        "reused_connection": reused_v,
        "source": source,
        "request_id": h.rid,
        "page": h.frame,
        "resource_type": h.resource_type,
        "mime_type": r.get("mimeType") if isinstance(r.get("mimeType"), str) else None,
        "priority": h.priority,
        "initiator": h.initiator,
        "server_ip": ip,
        "server_port": _port(port) or port_of(h.url),
        "from_cache": bool(h.cached or r.get("fromDiskCache") or r.get("fromCache") or r.get("fromMemoryCache"))
        if r or h.cached else pd.NA,
        "error": h.error,
        "pending": pending,
        "connection_id": conn_id,
        "http_version": r.get("protocol") if isinstance(r.get("protocol"), str) else None,
        "unattributed": NAN,
        "tls_version": (r.get("securityDetails") or {}).get("protocol") if isinstance(r.get("securityDetails"), dict) else None,
    }


# --------------------------------------------------------------------------- DevTools protocol log

def protocol_log_hops(messages: list[dict]) -> tuple[list[_Hop], dict]:
    """Fold ``Network.*`` / ``Page.*`` messages into request hops, plus page facts."""
    live: dict[str, _Hop] = {}
    hops: list[_Hop] = []
    page = {"dcl": [], "load": [], "wall_offsets": [], "main": None}
    for m in messages:
        method, p = m["method"], m["params"]
        rid = p.get("requestId")
        rid = str(rid) if rid is not None else None
        ts = _num(p.get("timestamp"))
        if method == "Network.requestWillBeSent" and rid:
            req = p.get("request") if isinstance(p.get("request"), dict) else {}
            prev = live.get(rid)
            if prev is not None and isinstance(p.get("redirectResponse"), dict):
                prev.response = p["redirectResponse"]
                prev.finish = ts
                prev.rid = f"{rid}:redirect{sum(1 for h in hops if h.rid.startswith(rid + ':'))}"
            hop = _Hop(rid, req.get("url"), req.get("method"), ts)
            hop.resource_type = p.get("type") if isinstance(p.get("type"), str) else None
            hop.priority = req.get("initialPriority") if isinstance(req.get("initialPriority"), str) else None
            hop.initiator = _initiator_type(p.get("initiator"))
            hop.frame = p.get("frameId") if isinstance(p.get("frameId"), str) else None
            wall = _num(p.get("wallTime"))
            if not math.isnan(wall) and not math.isnan(ts):
                page["wall_offsets"].append(wall - ts)
            if page["main"] is None and hop.resource_type == "Document":
                page["main"] = hop
            live[rid] = hop
            hops.append(hop)
        elif method == "Network.webSocketCreated" and rid and rid not in live:
            # DevTools lists a WebSocket as a request row; its handshake is the exchange.
            hop = _Hop(rid, p.get("url"), "GET", NAN)
            hop.resource_type, hop.initiator = "WebSocket", _initiator_type(p.get("initiator"))
            live[rid] = hop
            hops.append(hop)
        elif rid and rid in live:
            hop = live[rid]
            if method == "Network.webSocketWillSendHandshakeRequest":
                hop.issue = ts
                wall = _num(p.get("wallTime"))
                if not math.isnan(wall) and not math.isnan(ts):
                    page["wall_offsets"].append(wall - ts)
            elif method == "Network.webSocketHandshakeResponseReceived" and isinstance(p.get("response"), dict):
                hop.response = dict(p["response"], _ts=ts)
            elif method in ("Network.webSocketClosed", "Network.webSocketFrameError"):
                hop.finish = ts
            elif method == "Network.responseReceived":
                resp = p.get("response")
                if isinstance(resp, dict):
                    hop.response = dict(resp, _ts=ts)
                    if hop.resource_type is None and isinstance(p.get("type"), str):
                        hop.resource_type = p["type"]
            elif method == "Network.dataReceived":
                n = p.get("dataLength")
                hop.data_bytes += n if isinstance(n, int) and n > 0 else 0
            elif method == "Network.loadingFinished":
                hop.finish = ts
                hop.encoded = _num(p.get("encodedDataLength"))
            elif method == "Network.loadingFailed":
                hop.finish, hop.failed = ts, True
                hop.error = str(p.get("errorText") or "failed") + (" (canceled)" if p.get("canceled") else "")
            elif method == "Network.requestServedFromCache":
                hop.cached = True
            elif method == "Network.resourceChangedPriority" and isinstance(p.get("newPriority"), str):
                hop.priority = p["newPriority"]
        elif method == "Page.domContentEventFired" and not math.isnan(ts):
            page["dcl"].append(ts)
        elif method == "Page.loadEventFired" and not math.isnan(ts):
            page["load"].append(ts)
    return hops, page


def timeline_from_protocol_log(log: ProtocolLog) -> Timeline:
    hops, page = protocol_log_hops(log.messages)
    warnings = list(log.warnings)
    if not hops:
        if not any(m["method"].startswith(("Network.", "Page.")) for m in log.messages):
            raise InputError(log.path, "DevTools protocol log without Network or Page events")
    offset, clock = _wall_offset(page["wall_offsets"])
    if clock == "monotonic":
        warnings.append(describe(log.path, "no wallTime in the log; times are the browser's monotonic clock"))
    rows = [_hop_row(h, "devtools-log", offset, i) for i, h in enumerate(hops)]
    _unique_ids(rows)
    pages = _chrome_pages(page["main"], page["dcl"], page["load"], offset)
    return _chrome_timeline(log.path, "devtools-log", rows, pages, warnings, clock,
                            {"messages": log.total_messages}, log.size, log.compressed)


def _wall_offset(offsets: list[float]) -> tuple[float, str]:
    if not offsets:
        return 0.0, "monotonic"
    return statistics.median(offsets), "wall"


def _chrome_pages(main: _Hop | None, dcl: list[float], load: list[float], offset: float) -> list[dict]:
    if main is None and not dcl and not load:
        return []
    start = main.issue if main is not None else NAN
    first_dcl = min((t for t in dcl if math.isnan(start) or t >= start), default=NAN)
    first_load = min((t for t in load if math.isnan(start) or t >= start), default=NAN)
    if math.isnan(start):
        return [_page("page_1", None, NAN, NAN, NAN)]
    return [_page("page_1", None, start + offset,
                  (first_dcl - start) * 1000 if not math.isnan(first_dcl) else NAN,
                  (first_load - start) * 1000 if not math.isnan(first_load) else NAN,
                  url=main.url)]


def _chrome_timeline(path: str, fmt: str, rows: list[dict], pages: list[dict], warnings: list[str],
                     clock: str, extra: dict, size: int, compressed: bool) -> Timeline:
    requests = _requests_frame(rows)
    requests, connections = assign_connections(requests)
    info = SourceInfo(path=path, format=fmt, size=size, compressed=compressed, warnings=warnings)
    info.detail = {"creator": "Chrome DevTools", "browser": "Chrome", "pages": pages, "clock": clock,
                   "pending": int(requests["pending"].sum()) if len(requests) else 0,
                   **extra, **_summary_detail(requests, connections)}
    layer = "devtools"
    events = events_table(requests, pages, layer=layer)
    return Timeline(source=info, connections=connections, events=events, requests=requests)


# --------------------------------------------------------------------------- DevTools trace

def trace_hops(events: list[dict]) -> tuple[list[_Hop], dict]:
    """Fold Resource* trace events (µs monotonic ``ts``) into request hops, plus page facts."""
    live: dict[str, _Hop] = {}
    hops: list[_Hop] = []
    will_send: dict[str, float] = {}
    page = {"dcl": [], "load": [], "nav": None, "wall_rt": [], "wall_ts": []}
    for e in events:
        name = e.get("name")
        args = e.get("args") if isinstance(e.get("args"), dict) else {}
        data = args.get("data") if isinstance(args.get("data"), dict) else {}
        ts = _num(e.get("ts"))
        ts = ts / 1e6 if not math.isnan(ts) else NAN
        rid = data.get("requestId")
        rid = str(rid) if rid is not None else None
        if name == "ResourceWillSendRequest" and rid:
            will_send.setdefault(rid, ts)
        elif name == "ResourceSendRequest" and rid:
            prev = live.get(rid)
            if prev is not None and prev.response is not None:      # a redirect: same id, new hop
                prev.finish = ts if math.isnan(prev.finish) else prev.finish
                prev.rid = f"{rid}:redirect{sum(1 for h in hops if h.rid.startswith(rid + ':'))}"
            issue = will_send.pop(rid, ts)
            hop = _Hop(rid, data.get("url"), data.get("requestMethod"), min(issue, ts) if not math.isnan(issue) else ts)
            hop.priority = data.get("priority") if isinstance(data.get("priority"), str) else None
            hop.resource_type = data.get("resourceType") if isinstance(data.get("resourceType"), str) else None
            hop.initiator = _initiator_type(data.get("initiator"))
            hop.frame = data.get("frame") if isinstance(data.get("frame"), str) else None
            live[rid] = hop
            hops.append(hop)
        elif rid and rid in live:
            hop = live[rid]
            if name == "ResourceReceiveResponse":
                hop.response = dict(data, _ts=ts)
                rt, timing = _num(data.get("responseTime")), data.get("timing")
                if not math.isnan(rt):
                    page["wall_ts"].append(rt / 1000 - ts)
                    if isinstance(timing, dict) and not math.isnan(_num(timing.get("requestTime"))):
                        page["wall_rt"].append(rt / 1000 - _num(timing["requestTime"]))
            elif name == "ResourceReceivedData":
                n = data.get("encodedDataLength")
                hop.data_bytes += n if isinstance(n, int) and n > 0 else 0
            elif name == "ResourceFinish":
                finish = _num(data.get("finishTime"))
                hop.finish = finish if finish > 0 else ts
                hop.encoded = _num(data.get("encodedDataLength"))
                if data.get("didFail"):
                    hop.failed, hop.error = True, "failed"
            elif name == "ResourceMarkAsCached":
                hop.cached = True
            elif name == "ResourceChangePriority" and isinstance(data.get("priority"), str):
                hop.priority = data["priority"]
        elif name in ("MarkDOMContent", "MarkLoad") and (data.get("isMainFrame") or data.get("isOutermostMainFrame")):
            page["dcl" if name == "MarkDOMContent" else "load"].append(ts)
        elif name == "navigationStart" and page["nav"] is None:
            d = args.get("data") if isinstance(args.get("data"), dict) else {}
            if d.get("isLoadingMainFrame") and d.get("documentLoaderURL"):
                page["nav"] = (ts, d.get("documentLoaderURL"))
    return hops, page


def _trace_offset(page: dict) -> tuple[float, str]:
    """Epoch offset of the trace's monotonic clock, from ``responseTime`` (epoch ms).

    ``responseTime`` is stamped after the request started (``timing.requestTime``)
    and before the renderer logs the response event (its ``ts``), so each
    response bounds the offset: ``responseTime - requestTime`` from above,
    ``responseTime - ts`` from below.  Chrome versions differ in which bound is
    tight; the reading whose values agree best (smallest spread) is, and its
    tightest value is the estimate (within a few ms on the corpus and the
    bundled capture, against the protocol log's ``wallTime`` and the pcap).
    """
    best = None
    for offs, tightest in ((page["wall_rt"], min), (page["wall_ts"], max)):
        if offs:
            spread = max(offs) - min(offs)
            if best is None or spread < best[0]:
                best = (spread, tightest(offs))
    if best is None:
        return 0.0, "monotonic"
    return best[1], "wall"


def timeline_from_trace(trace: TraceLog) -> Timeline:
    hops, page = trace_hops(trace.events)
    warnings = list(trace.warnings)
    if trace.total_events == 0:
        raise InputError(trace.path, "DevTools trace without events")
    offset, clock = _trace_offset(page)
    if clock == "monotonic" and hops:
        warnings.append(describe(trace.path, "no wall-clock stamp in the trace; times are the browser's monotonic clock"))
    rows = [_hop_row(h, "devtools-trace", offset, i) for i, h in enumerate(hops)]
    _unique_ids(rows)
    pending = sum(1 for r in rows if r["pending"])
    if pending:
        warnings.append(describe(trace.path, f"{pending} requests were still pending when tracing stopped"))
    main = None
    if page["nav"] is not None:
        main = _Hop("navigation", page["nav"][1], "GET", page["nav"][0])
    elif hops:
        main = next((h for h in hops if h.resource_type == "Document"), hops[0])
    pages = _chrome_pages(main, page["dcl"], page["load"], offset)
    return _chrome_timeline(trace.path, "devtools-trace", rows, pages, warnings, clock,
                            {"trace_events": trace.total_events}, trace.size, trace.compressed)


# --------------------------------------------------------------------------- tables

def _requests_frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        df = empty_table("requests")
        for col, dtype in _EXTRA_REQUEST_COLUMNS.items():
            df[col] = pd.Series(dtype=dtype)
        return df
    df = pd.DataFrame(rows)
    df = conform("requests", df)
    for col, dtype in _EXTRA_REQUEST_COLUMNS.items():
        df[col] = df[col].astype(dtype)
    return df


_EXTRA_REQUEST_COLUMNS = {
    "request_id": "object", "page": "object", "resource_type": "object", "mime_type": "object",
    "priority": "object", "initiator": "object", "server_ip": "object", "server_port": "Int64",
    "from_cache": "boolean", "error": "object", "pending": "boolean", "connection_id": "object",
    "http_version": "object", "unattributed": "float64", "tls_version": "object",
}


def assign_connections(requests: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fill ``conn`` and build the connections table.

    With connection ids (Chrome's ``connection``, CDP's ``connectionId``) each
    distinct id is one connection.  Without them, connections are inferred per
    server (address, else host) and port from timing: a request that did its
    own connect/TLS opened a new one; one that did not reuses an existing
    connection that is free (HTTP/1.x: its last response ended; h2/h3: any);
    failing that it gets one of its own.  Inferred rows say so (``inferred``).
    """
    requests = requests.copy()
    n = len(requests)
    conns: list[dict] = []
    conn_of: list[Any] = [pd.NA] * n
    by_id: dict[tuple, int] = {}
    open_by_key: dict[tuple, list[int]] = {}
    # plain dicts, not DataFrame rows: a row lookup per request costs ~0.3 ms in pandas
    records = requests[["protocol", "server_ip", "host", "server_port", "connection_id", "status", "start",
                        "end", "connect", "tls", "tls_version"]].to_dict("records")
    order = sorted(range(n), key=lambda i: (_sort_time(records[i]["start"]), i))
    for i in order:
        r = records[i]
        proto = r["protocol"] if isinstance(r["protocol"], str) else None
        ip = r["server_ip"] if isinstance(r["server_ip"], str) else None
        host = r["host"] if isinstance(r["host"], str) else None
        key = (ip or host, _py(r["server_port"]))
        cid = r["connection_id"]
        if isinstance(cid, str):
            k = ("id", cid)
            if k not in by_id:
                by_id[k] = _new_conn(conns, key, r, proto, inferred=False, raw=cid)
            c = by_id[k]
        else:
            if _missing(r["status"]) or key[0] is None or _missing(r["start"]):
                continue           # never reached a server: no connection to speak of
            c = _infer_conn(conns, open_by_key.setdefault(key, []), key, r, proto)
        conn_of[i] = c
        _extend(conns[c], r)
    requests["conn"] = pd.array(conn_of, dtype="Int64")
    return requests, _connections_frame(conns)


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _sort_time(v: Any) -> float:
    return math.inf if _missing(v) else float(v)


def _py(v: Any) -> Any:
    return None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else int(v)


def _multiplexed(proto: str | None) -> bool:
    return proto in ("h2", "h2c", "h3", "spdy", "quic")


def _infer_conn(conns: list[dict], candidates: list[int], key: tuple, r: dict, proto: str | None) -> int:
    handshake = (r["connect"] > 0) or (r["tls"] > 0)     # NaN compares False
    if not handshake:
        start = r["start"]
        if _multiplexed(proto):
            free = [c for c in candidates if conns[c]["app"] == proto]
        else:
            free = [c for c in candidates if conns[c]["app"] == proto and conns[c]["_busy_until"] <= start + 1e-3]
        if free:
            return min(free, key=lambda c: conns[c]["_busy_until"]) if not _multiplexed(proto) else free[-1]
    c = _new_conn(conns, key, r, proto, inferred=True, raw=None)
    candidates.append(c)
    return c


def _new_conn(conns: list[dict], key: tuple, r: dict, proto: str | None, inferred: bool, raw: str | None) -> int:
    ip, port = r["server_ip"], _py(r["server_port"])
    server = None
    if isinstance(ip, str) and port is not None:
        server = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    conns.append({
        "conn": len(conns), "transport": "quic" if proto == "h3" or "quic" in (proto or "") else "tcp",
        "server": server,
        "start": NAN, "end": NAN, "app": proto, "tls_version": r.get("tls_version"),
        "connection_id": raw, "inferred": inferred, "host": r["host"] if isinstance(r["host"], str) else None,
        "requests": 0,
        "_busy_until": -math.inf,
    })
    return len(conns) - 1


def _extend(c: dict, r: dict) -> None:
    c["requests"] += 1
    start = r["start"]
    if not _missing(start):
        c["start"] = start if math.isnan(c["start"]) else min(c["start"], start)
    end = r["end"] if not _missing(r["end"]) else start
    if not _missing(end):
        c["end"] = end if math.isnan(c["end"]) else max(c["end"], end)
        c["_busy_until"] = max(c["_busy_until"], end)
    if c["app"] is None and isinstance(r["protocol"], str):
        c["app"] = r["protocol"]


def _connections_frame(conns: list[dict]) -> pd.DataFrame:
    """The connections table for a browser source.

    Packet counts, frames and handshake stamps do not exist in a browser
    export: ``conform`` leaves them NA (nullable), never a made-up zero.
    """
    known = ("conn", "transport", "server", "start", "end", "app", "tls_version",
             "connection_id", "inferred", "host", "requests")
    df = pd.DataFrame({k: [c[k] for c in conns] for k in known})
    df["start"] = df["start"].astype("float64")
    df["end"] = df["end"].astype("float64")
    df["inferred"] = df["inferred"].astype("bool")
    df["requests"] = df["requests"].astype("int64")
    for col in ("host", "connection_id"):
        df[col] = df[col].astype("object")     # as the schema's text columns, whatever pandas infers
    return conform("connections", df)


def events_table(requests: pd.DataFrame, pages: list[dict], layer: str) -> pd.DataFrame:
    """request / response / finished|failed per request, and each page's DOMContentLoaded and load."""
    rows = []
    for r in requests.itertuples(index=False):
        conn = r.conn
        detail = f"{r.method or ''} {r.url or ''}".strip()
        if not pd.isna(r.start):
            rows.append((r.start, conn, layer, "request", "c2s", r.req_bytes, detail))
        if not pd.isna(r.ttfb) and not pd.isna(r.start):
            rows.append((r.start + r.ttfb, conn, layer, "response", "s2c", r.resp_bytes,
                         f"{'' if pd.isna(r.status) else int(r.status)} {r.url or ''}".strip()))
        if not pd.isna(r.end):
            kind = "failed" if r.error else "finished"
            rows.append((r.end, conn, layer, kind, "s2c", r.resp_bytes, r.error or detail))
    for p in pages:
        for kind, key in (("DOMContentLoaded", "dom_content_loaded"), ("load", "load")):
            if p.get(key) is not None:
                rows.append((p[key], pd.NA, layer, kind, None, pd.NA, p.get("id") or ""))
    if not rows:
        return empty_table("events")
    df = pd.DataFrame(rows, columns=["ts", "conn", "layer", "kind", "dir", "size", "detail"])
    df = df.sort_values("ts", kind="stable", na_position="last").reset_index(drop=True)
    return conform("events", df)


def _summary_detail(requests: pd.DataFrame, connections: pd.DataFrame) -> dict:
    protocols = requests["protocol"].dropna().value_counts().to_dict() if len(requests) else {}
    return {
        "requests": int(len(requests)),
        "connections": int(len(connections)),
        "connections_inferred": bool(connections["inferred"].any()) if len(connections) else False,
        "protocols": {str(k): int(v) for k, v in protocols.items()},
    }
