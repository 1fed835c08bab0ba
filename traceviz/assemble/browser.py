"""Browser records into the timeline: HAR entries and Chrome requests become tables.

``load_browser`` reads a HAR, DevTools trace or DevTools protocol log through
``traceviz.sources`` (which resolve each exporter's dialect and fold Chrome's
events into one record per request) and builds the ``requests``,
``connections`` and ``events`` tables and the page facts from the records.

Phase semantics: HAR 1.2 phases in seconds, except that our ``connect``
excludes TLS, which is its own ``tls`` phase.  ``-1`` (absent) becomes NaN,
never zero.  ``start``, ``end`` are epoch seconds; ``ttfb`` is seconds from
``start`` to the first response byte.  A browser export names no TCP
connections; ``assign_connections`` takes Chrome's socket ids where the file
has them and infers connections from timing where it does not.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import pandas as pd

from traceviz.errors import describe
from traceviz.model import SourceInfo, Timeline, conform, empty_table, media_type
from traceviz.sources.browser_export import read_export
from traceviz.sources.cdp import CdpLog
from traceviz.sources.chrome import ChromePage, ChromeRequest, response_of
from traceviz.sources.har import HarEntry, HarLog, HarPage, Software
from traceviz.sources.jsonfile import number
from traceviz.sources.trace import TraceLog

NAN = float("nan")
PHASES = ("blocked", "dns", "connect", "tls", "send", "wait", "receive")


# --------------------------------------------------------------------------- entry point

def load_browser(path) -> Timeline:
    """A HAR, DevTools trace or DevTools protocol log, decoded into a Timeline.

    Decides the kind from the parsed JSON itself (not the file name); JSON that
    is none of these raises ``InputError``.
    """
    export = read_export(str(path))
    if isinstance(export, HarLog):
        return timeline_from_har(export)
    if isinstance(export, TraceLog):
        return timeline_from_trace(export)
    return timeline_from_cdp(export)


# --------------------------------------------------------------------------- small helpers

# The records' numbers are already floats (NaN where absent, -1 or junk): these
# only say which of them a table can hold.

def _count(x: float) -> Any:
    """A byte count as int; NA when absent or beyond what a file could mean (2**53)."""
    return int(x) if not math.isnan(x) and x < 2 ** 53 else pd.NA


def _status(x: float) -> float:
    """An HTTP status (100-999); NaN for 0 ("no response"), absent or nonsense."""
    return x if 100 <= x <= 999 and x == int(x) else NAN


def _port(x: float) -> int | None:
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


def _epoch_seconds(stamps: list[str | None]) -> list[float]:
    """ISO 8601 ``startedDateTime`` strings -> epoch seconds (NaN when unreadable)."""
    if not stamps:
        return []
    s = pd.Series(stamps, dtype="object")
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


def _unique_ids(rows: list[dict]) -> None:
    """Keep ``request_id`` one per row: a reused id (a redirect chain) gets ``:2``, ``:3``..."""
    seen: dict[str, int] = {}
    for r in rows:
        n = seen.get(r["request_id"], 0) + 1
        seen[r["request_id"]] = n
        if n > 1:
            r["request_id"] = f"{r['request_id']}:{n}"


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


# --------------------------------------------------------------------------- HAR

def har_phases(timings: Any, ssl_in_connect: bool = True) -> dict[str, float]:
    """HAR ``timings`` (ms) -> our phases (s), with TLS split out of ``connect``.

    HAR 1.2 says ``connect`` includes ``ssl``; some exporters (Firefox 111)
    write them as separate, consecutive phases: ``ssl_in_connect`` (decided
    once per file by the reader) says which reading applies.
    """
    t = timings if isinstance(timings, dict) else {}
    ms = {k: number(t.get(k)) for k in ("blocked", "dns", "connect", "ssl", "send", "wait", "receive")}
    ssl, connect = ms.pop("ssl"), ms["connect"]
    if not math.isnan(ssl) and not math.isnan(connect) and ssl_in_connect:
        ms["connect"] = max(0.0, connect - ssl)
    ms["tls"] = ssl
    return {p: ms[p] / 1000.0 for p in PHASES}


def _har_resp_bytes(e: HarEntry) -> Any:
    if not math.isnan(e.transfer_size):
        return _count(e.transfer_size)
    head, body = e.resp_headers_size, e.resp_body_size
    if not math.isnan(body):
        return _count(body + (0 if math.isnan(head) else head))
    return pd.NA


def _har_req_bytes(e: HarEntry) -> Any:
    head, body = e.req_headers_size, e.req_body_size
    if math.isnan(head) and math.isnan(body):
        return pd.NA
    return _count(_nansum([head, body]))


def har_request_rows(har: HarLog, warnings: list[str] | None = None) -> list[dict]:
    """One row per HAR entry, in file order, with the REQUEST_COLUMNS fields and extras."""
    starts = _epoch_seconds([e.started for e in har.entries])
    double_counted = 0
    rows = []
    for i, (e, start) in enumerate(zip(har.entries, starts)):
        ph = har_phases(e.timings, har.ssl_in_connect)
        status = _status(e.status)
        answered = not math.isnan(status) and status > 0
        if not answered:
            # Chrome writes wait 0 / receive 0 for a request that never got an answer: absent, not zero
            ph["wait"] = ph["receive"] = NAN
        phase_sum = _nansum(ph.values())
        total = e.time / 1000.0 if not math.isnan(e.time) else phase_sum
        if har.ssl_in_connect and ph["tls"] > 0 and not math.isnan(total) and \
                abs(total - phase_sum - ph["tls"]) < 5e-4 < abs(total - phase_sum):
            # ``time`` counted the TLS time twice (inside connect and again as ssl), as
            # Playwright writes it: the exchange really ended at the phases' end.
            total = phase_sum
            double_counted += 1
        end = start + total if not math.isnan(total) else NAN
        upto_wait = [ph[p] for p in PHASES[:-1]]
        ttfb = _nansum(upto_wait) if answered and not math.isnan(ph["wait"]) else NAN
        unattributed = (total - phase_sum) if not math.isnan(total) and not math.isnan(phase_sum) else NAN
        rows.append({
            "request": i,
            "protocol": normalize_protocol(e.protocol),
            "method": e.method,
            "host": e.host,
            "url": e.url,
            "status": int(status) if answered else pd.NA,
            "start": start,
            "ttfb": ttfb,
            "end": end,
            "req_bytes": _har_req_bytes(e),
            "resp_bytes": _har_resp_bytes(e),
            **ph,
            "reused_connection": _reused(ph, answered, e.timings),
            "source": "har",
            "content_type": media_type(e.mime_type),
            "request_id": e.request_id or str(i),
            "page": e.page,
            "resource_type": e.resource_type,
            "mime_type": e.mime_type,
            "priority": e.priority,
            "initiator": e.initiator,
            "server_ip": e.server_ip,
            "server_port": _port(e.server_port) or e.port,
            "from_cache": pd.NA if e.from_cache is None else e.from_cache,
            "error": None if answered else e.error_text or "no response",
            "pending": False,
            "connection_id": e.connection,
            "http_version": e.http_version,
            "unattributed": unattributed,
            "tls_version": e.tls_version,
        })
    _unique_ids(rows)
    if double_counted and warnings is not None:
        warnings.append(describe(har.path, f"{double_counted} entries count TLS time twice in \"time\" "
                                           "(ssl inside connect and again on its own); their end is the phases' end"))
    return rows


def har_pages(pages: Iterable[HarPage]) -> list[dict]:
    pages = list(pages)
    starts = _epoch_seconds([p.started for p in pages])
    return [_page(p.id, p.title, start, p.on_content_load, p.on_load) for p, start in zip(pages, starts)]


def timeline_from_har(har: HarLog) -> Timeline:
    warnings = list(har.warnings)
    rows = har_request_rows(har, warnings)
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
        "browser": _name_version(har.browser),
        "pages": pages,
        "entries": len(har.entries),
        "jsonp": har.jsonp,
        **_summary_detail(requests, connections),
    }
    events = events_table(requests, pages, layer="har")
    return Timeline(source=info, connections=connections, events=events, requests=requests)


def _name_version(s: Software) -> str | None:
    if s.name is None:
        return None
    return f"{s.name} {s.version}" if s.version else s.name


# --------------------------------------------------------------------------- Chrome timing (trace + CDP)

def chrome_phases(issue: float, timing: dict | None, headers_at: float | None, finish: float) -> dict[str, float]:
    """Chrome's ResourceTiming (ms after ``requestTime``) -> our phases (s), as DevTools' HAR export does.

    ``issue`` is when the page asked for the request (queueing starts there);
    blocked = queueing + the stall before the first of dns/connect/send.
    """
    out = {p: NAN for p in PHASES}
    if not isinstance(timing, dict):
        return out
    base = number(timing.get("requestTime"))
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
    """A Chrome timing field (ms); -1 ("did not happen") when absent or not a finite number."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return -1.0
    try:
        v = float(v)
    except OverflowError:          # an integer of hundreds of digits
        return -1.0
    return v if math.isfinite(v) else -1.0


def _span(a: float, b: float) -> float:
    return max(0.0, b - a) / 1000 if a >= 0 and b >= 0 else NAN


_NO_RESPONSE = response_of({})


def chrome_request_row(h: ChromeRequest, source: str, offset: float, index: int) -> dict:
    """One request row from a Chrome request; ``offset`` maps its monotonic times to epoch seconds."""
    r = h.response or _NO_RESPONSE
    timing = r.timing
    status = _status(r.status)
    answered = not math.isnan(status) and status > 0
    base = number((timing or {}).get("requestTime"))
    rhe = _signed((timing or {}).get("receiveHeadersEnd"))
    headers_at = base + rhe / 1000 if not math.isnan(base) and rhe >= 0 else None
    issue = h.issue
    if not math.isnan(base) and (math.isnan(issue) or base < issue):
        issue = base             # the renderer logged the send late (navigations)
    ph = chrome_phases(issue, timing, headers_at, h.finish)
    ttfb = headers_at - issue if headers_at is not None and answered else NAN
    if answered and math.isnan(ttfb):
        ttfb = r.received - issue if not math.isnan(r.received) else NAN
    encoded = h.encoded if not math.isnan(h.encoded) else r.encoded_length
    if r.connection_reused is not None:
        reused: Any = r.connection_reused
    else:
        reused = _reused(ph, answered, {"connect": timing.get("connectStart")}) if timing else pd.NA
    return {
        "request": index,
        "protocol": normalize_protocol(r.protocol),
        "method": h.method,
        "host": h.host,
        "url": h.url,
        "status": int(status) if answered else pd.NA,
        "start": issue + offset if not math.isnan(issue) else NAN,
        "ttfb": ttfb,
        "end": h.finish + offset if not math.isnan(h.finish) else NAN,
        "req_bytes": pd.NA,
        "resp_bytes": _count(encoded),
        **ph,
        "reused_connection": reused,
        "source": source,
        "content_type": media_type(r.mime_type),
        "request_id": h.request_id,
        "page": h.frame,
        "resource_type": h.resource_type,
        "mime_type": r.mime_type,
        "priority": h.priority,
        "initiator": h.initiator,
        "server_ip": r.remote_ip,
        "server_port": _port(r.remote_port) or h.port,
        "from_cache": (h.cached or r.from_cache) if h.response is not None or h.cached else pd.NA,
        "error": h.error,
        "pending": not h.failed and math.isnan(h.finish),
        "connection_id": r.connection_id,
        "http_version": r.protocol,
        "unattributed": NAN,
        "tls_version": r.tls_protocol,
    }


def timeline_from_trace(trace: TraceLog) -> Timeline:
    warnings = list(trace.warnings)
    rows = _chrome_rows(trace.requests, "devtools-trace", trace.wall_offset)
    pending = sum(1 for r in rows if r["pending"])
    if pending:
        warnings.append(describe(trace.path, f"{pending} requests were still pending when tracing stopped"))
    return _chrome_timeline(trace.path, "devtools-trace", rows, _chrome_pages(trace.page, trace.wall_offset),
                            warnings, trace.clock, {"trace_events": trace.total_events}, trace.size,
                            trace.compressed)


def timeline_from_cdp(log: CdpLog) -> Timeline:
    rows = _chrome_rows(log.requests, "devtools-log", log.wall_offset)
    return _chrome_timeline(log.path, "devtools-log", rows, _chrome_pages(log.page, log.wall_offset),
                            list(log.warnings), log.clock, {"messages": log.total_messages}, log.size,
                            log.compressed)


def _chrome_rows(requests: Iterable[ChromeRequest], source: str, offset: float) -> list[dict]:
    rows = [chrome_request_row(h, source, offset, i) for i, h in enumerate(requests)]
    _unique_ids(rows)
    return rows


def _chrome_pages(page: ChromePage, offset: float) -> list[dict]:
    main, dcl, load = page.navigation, page.dom_content_loaded, page.load
    if main is None and not dcl and not load:
        return []
    start = main.start if main is not None else NAN
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
    # plain lists, not itertuples: pandas' scalar NA checks cost more than the rest of the loop
    columns = ("conn", "method", "url", "status", "start", "ttfb", "end", "req_bytes", "resp_bytes", "error")
    for conn, method, url, status, start, ttfb, end, req_bytes, resp_bytes, error in \
            zip(*(requests[c].tolist() for c in columns)):
        detail = f"{method or ''} {url or ''}".strip()
        if not _missing(start):
            rows.append((start, conn, layer, "request", "c2s", req_bytes, detail))
        if not _missing(ttfb) and not _missing(start):
            rows.append((start + ttfb, conn, layer, "response", "s2c", resp_bytes,
                         f"{'' if _missing(status) else int(status)} {url or ''}".strip()))
        if not _missing(end):
            kind = "failed" if error else "finished"
            rows.append((end, conn, layer, kind, "s2c", resp_bytes, error or detail))
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
