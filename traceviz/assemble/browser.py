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
from typing import Any, Callable, Iterable

import numpy as np
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
    for r, rid in zip(rows, _unique([r["request_id"] for r in rows])):
        r["request_id"] = rid


def _unique(ids: list[str]) -> list[str]:
    """``ids`` with the second, third... use of one id marked ``:2``, ``:3``..."""
    seen: dict[str, int] = {}
    out = []
    for rid in ids:
        n = seen.get(rid, 0) + 1
        seen[rid] = n
        out.append(f"{rid}:{n}" if n > 1 else rid)
    return out


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

_HAR_MS = ("blocked", "dns", "connect", "ssl", "send", "wait", "receive")    # as PHASES, ssl for tls


def har_request_columns(har: HarLog, warnings: list[str] | None = None) -> dict[str, Any]:
    """Each REQUEST_COLUMNS field and the extras, one value per HAR entry, in file order.

    Column by column: numpy does the phase arithmetic for every entry at once
    (a dict per entry took 1.4 s on 100k entries).  The sums are taken in the
    same order as one entry at a time would, so every float is the same.
    Phases: HAR ``timings`` (ms) in seconds, with TLS split out of ``connect``
    (HAR 1.2 says ``connect`` includes ``ssl``; Firefox writes them apart:
    ``har.ssl_in_connect``, decided once per file by the reader, says which).
    """
    n = len(har.entries)
    col = dict(zip(HarEntry._fields, zip(*har.entries))) if n else dict.fromkeys(HarEntry._fields, ())
    start = np.array(_epoch_seconds(list(col["started"])), dtype=float).reshape(n)
    ms = _numbers([v for t in col["timings"] for v in map(t.get, _HAR_MS)]).reshape(n, 7)
    if har.ssl_in_connect:
        connect, ssl = ms[:, 2], ms[:, 3]
        less = connect - ssl
        ms[:, 2] = np.where(np.isnan(ssl) | np.isnan(connect), connect, np.where(less > 0, less, 0.0))
    ph = ms / 1000.0
    status = np.array(col["status"], dtype=float).reshape(n)
    answered = (status >= 100) & (status <= 999) & (status == np.floor(status))
    # Chrome writes wait 0 / receive 0 for a request that never got an answer: absent, not zero
    ph[~answered, 5:] = NAN
    upto_wait, phase_sum = _nansums(ph)
    time = np.array(col["time"], dtype=float).reshape(n)
    total = np.where(np.isnan(time), phase_sum, time / 1000.0)
    if har.ssl_in_connect:
        # ``time`` counted the TLS time twice (inside connect and again as ssl), as Playwright
        # writes it: the exchange really ended at the phases' end.
        tls, off = ph[:, 3], total - phase_sum
        twice = (tls > 0) & ~np.isnan(total) & (np.abs(off - tls) < 5e-4) & (np.abs(off) > 5e-4)
        total = np.where(twice, phase_sum, total)
        if twice.any() and warnings is not None:
            warnings.append(describe(har.path, f"{int(twice.sum())} entries count TLS time twice in \"time\" "
                                               "(ssl inside connect and again on its own); their end is the phases' end"))
    said = [None if a else err or "no response" for a, err in zip(answered.tolist(), col["error_text"])]
    return {
        "request": np.arange(n, dtype=np.int64),
        "protocol": _text(_each(normalize_protocol, col["protocol"])),
        "method": _text(col["method"]),
        "host": _text(col["host"]),
        "url": _text(col["url"]),
        "status": pd.arrays.IntegerArray(np.where(answered, status, 0).astype(np.int64), ~answered),
        "start": start,
        "ttfb": np.where(answered & ~np.isnan(ph[:, 5]), upto_wait, NAN),
        "end": start + total,
        "req_bytes": _counts(_har_req_bytes(col)),
        "resp_bytes": _counts(_har_resp_bytes(col)),
        **{p: ph[:, j] for j, p in enumerate(PHASES)},
        "reused_connection": _har_reused(ph, answered, col["timings"]),
        "source": _text(["har"] * n),
        "content_type": _text(_each(media_type, col["mime_type"])),
        "request_id": _text(_unique([rid or str(i) for i, rid in enumerate(col["request_id"])])),
        "page": _text(col["page"]),
        "resource_type": _text(col["resource_type"]),
        "mime_type": _text(col["mime_type"]),
        "priority": _text(col["priority"]),
        "initiator": _text(col["initiator"]),
        "server_ip": _text(col["server_ip"]),
        "server_port": [_port(sp) or p for sp, p in zip(col["server_port"], col["port"])],
        "from_cache": [pd.NA if c is None else c for c in col["from_cache"]],
        "error": _text(said),
        "pending": [False] * n,
        "connection_id": _text(col["connection"]),
        "http_version": _text(col["http_version"]),
        "unattributed": total - phase_sum,
        "tls_version": _text(col["tls_version"]),
    }


def _numbers(values: list) -> np.ndarray:
    """``number`` of each value, as an array: at C speed when every value is an int or a float
    (what exporters write), one by one otherwise (absent, strings, booleans)."""
    if set(map(type, values)) <= {int, float}:
        try:
            x = np.array(values, dtype=float)
        except OverflowError:           # an integer of hundreds of digits
            pass
        else:
            with np.errstate(invalid="ignore"):
                return np.where((x >= 0) & (x < math.inf), x, NAN)
    return np.array([number(v) for v in values], dtype=float)


def _nansums(ph: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's sum of its phases up to ``wait``, and of all seven, over the non-NaN
    ones (NaN when all are): added left to right, as ``sum`` over a row would."""
    acc = np.zeros(len(ph))
    seen = np.zeros(len(ph), dtype=bool)
    sums = []
    for j in range(ph.shape[1]):
        ok = ~np.isnan(ph[:, j])
        acc = acc + np.where(ok, ph[:, j], 0.0)
        seen |= ok
        sums.append(np.where(seen, acc, NAN))
    return sums[-2], sums[-1]


def _har_resp_bytes(col: dict) -> np.ndarray:
    """Chrome's ``_transferSize`` where written, else the response's headers and body."""
    wire = np.array(col["transfer_size"], dtype=float)
    head, body = np.array(col["resp_headers_size"], dtype=float), np.array(col["resp_body_size"], dtype=float)
    return np.where(~np.isnan(wire), wire, body + np.where(np.isnan(head), 0.0, head))


def _har_req_bytes(col: dict) -> np.ndarray:
    head, body = np.array(col["req_headers_size"], dtype=float), np.array(col["req_body_size"], dtype=float)
    both = np.where(np.isnan(head), 0.0, head) + np.where(np.isnan(body), 0.0, body)
    return np.where(np.isnan(head) & np.isnan(body), NAN, both)


def _counts(x: np.ndarray) -> pd.arrays.IntegerArray:
    """Byte counts as ``_count`` makes them: NA when absent or beyond what a file could mean (2**53)."""
    bad = ~(x < 2 ** 53)                     # NaN too
    return pd.arrays.IntegerArray(np.where(bad, 0, x).astype(np.int64), bad)


def _har_reused(ph: np.ndarray, answered: np.ndarray, timings: tuple) -> pd.arrays.BooleanArray:
    """``_reused`` for every entry: True when it did no handshake of its own, NA when nothing says."""
    connect, tls = ph[:, 2], ph[:, 3]
    handshake = (connect > 0) | (tls > 0)
    value = ~handshake
    known = answered & (handshake | ~np.isnan(connect))
    for i in np.flatnonzero(answered & ~known).tolist():     # HAR's connect: -1, "does not apply"
        known[i] = timings[i].get("connect") in (-1, 0)
    return pd.arrays.BooleanArray(value, ~known)


def _text(values: Iterable[str | None]) -> pd.Series:
    """A text column (str or None values) as the table holds it, object dtype, made without
    pandas' per-value inference: a missing value is NaN when the column holds any text, as
    when the table is made from rows."""
    values = list(values)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    missing = np.equal(out, None)
    if not missing.all():
        out[missing] = NAN
    return pd.Series(out, dtype=object, copy=False)


def _each(fn: Callable[[Any], Any], values: Iterable) -> list:
    """``fn`` of each value, computed once per distinct one (a column holds a few dozen)."""
    memo: dict = {}
    out = []
    for v in values:
        if v not in memo:
            memo[v] = fn(v)
        out.append(memo[v])
    return out


def har_pages(pages: Iterable[HarPage]) -> list[dict]:
    pages = list(pages)
    starts = _epoch_seconds([p.started for p in pages])
    return [_page(p.id, p.title, start, p.on_content_load, p.on_load) for p, start in zip(pages, starts)]


def timeline_from_har(har: HarLog) -> Timeline:
    warnings = list(har.warnings)
    columns = har_request_columns(har, warnings)
    pages = har_pages(har.pages)
    bad = int(np.isnan(columns["start"]).sum())
    if bad:
        warnings.append(describe(har.path, f"{bad} entries have no readable startedDateTime"))
    requests = _requests_frame(columns)
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

def _requests_frame(rows: list[dict] | dict[str, Any]) -> pd.DataFrame:
    """The requests table from one dict per row, or from columns (``har_request_columns``)."""
    if not len(rows) or (isinstance(rows, dict) and not len(rows["request"])):
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
    by_id: dict[str, int] = {}
    open_by_key: dict[tuple, list[int]] = {}
    # Lists, not DataFrame rows (a row lookup costs ~0.3 ms in pandas), and a request's dict
    # made only where a connection is opened or inferred: most requests join one by its id.
    cols = {c: requests[c].tolist() for c in _ASSIGN_READS}
    protocol, connection_id, start, end = (cols[c] for c in ("protocol", "connection_id", "start", "end"))
    at = requests["start"].to_numpy(dtype=float)
    order = np.argsort(np.where(np.isnan(at), math.inf, at), kind="stable").tolist()   # by start, then index
    for i in order:
        cid = connection_id[i]
        if isinstance(cid, str):
            c = by_id.get(cid)
            if c is None:
                r = _request_of(cols, i)
                c = by_id[cid] = _new_conn(conns, _server_key(r), r, _text_or_none(protocol[i]),
                                           inferred=False, raw=cid)
        else:
            r = _request_of(cols, i)
            key = _server_key(r)
            if _missing(r["status"]) or key[0] is None or _missing(r["start"]):
                continue           # never reached a server: no connection to speak of
            c = _infer_conn(conns, open_by_key.setdefault(key, []), key, r, _text_or_none(protocol[i]))
        conn_of[i] = c
        _extend(conns[c], start[i], end[i], protocol[i])
    requests["conn"] = pd.array(conn_of, dtype="Int64")
    return requests, _connections_frame(conns)


_ASSIGN_READS = ("protocol", "server_ip", "host", "server_port", "connection_id", "status", "start",
                 "end", "connect", "tls", "tls_version")


def _request_of(cols: dict[str, list], i: int) -> dict:
    return {c: v[i] for c, v in cols.items()}


def _server_key(r: dict) -> tuple:
    """(address, else host; port): the server a connection without an id is inferred for."""
    return (_text_or_none(r["server_ip"]) or _text_or_none(r["host"]), _py(r["server_port"]))


def _text_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) else None


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


def _extend(c: dict, start: float, end: float, protocol: Any) -> None:
    """Connection ``c`` carried one more request (``start``, ``end``: floats, NaN when unknown)."""
    c["requests"] += 1
    if start == start:                        # not NaN
        c["start"] = start if math.isnan(c["start"]) else min(c["start"], start)
    if end != end:
        end = start
    if end == end:
        c["end"] = end if math.isnan(c["end"]) else max(c["end"], end)
        c["_busy_until"] = max(c["_busy_until"], end)
    if c["app"] is None and isinstance(protocol, str):
        c["app"] = protocol


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
    """request / response / finished|failed per request, and each page's DOMContentLoaded and load.

    Built column by column (a tuple per event cost 0.5 s on 100k requests).  The
    events are in time order; at one time, in request order, a request's own as
    request, response, end, and the pages' last."""
    n = len(requests)
    start, ttfb, end = (requests[c].to_numpy(dtype=float, na_value=NAN) for c in ("start", "ttfb", "end"))
    method, url, status, error = (requests[c].tolist() for c in ("method", "url", "status", "error"))
    detail = [f"{m or ''} {u or ''}".strip() for m, u in zip(method, url)]
    conn, req_bytes, resp_bytes = (requests[c].array for c in ("conn", "req_bytes", "resp_bytes"))
    parts = [
        _events_of(start, 0, conn, ["request"] * n, "c2s", req_bytes, detail),
        _events_of(start + ttfb, 1, conn, ["response"] * n, "s2c", resp_bytes,
                   [f"{'' if _missing(st) else int(st)} {u or ''}".strip() for st, u in zip(status, url)]),
        _events_of(end, 2, conn, ["failed" if err else "finished" for err in error], "s2c", resp_bytes,
                   [err or d for err, d in zip(error, detail)]),
    ]
    marks = [(p[key], name, p.get("id") or "") for p in pages
             for name, key in (("DOMContentLoaded", "dom_content_loaded"), ("load", "load")) if p.get(key) is not None]
    none = pd.array([pd.NA] * len(marks), dtype="Int64")
    parts.append({"ts": np.array([m[0] for m in marks], dtype=float), "seq": 3 * n + np.arange(len(marks)),
                  "conn": none, "kind": [m[1] for m in marks], "dir": [None] * len(marks), "size": none,
                  "detail": [m[2] for m in marks]})
    ts = np.concatenate([p["ts"] for p in parts])
    if not len(ts):
        return empty_table("events")
    order = np.lexsort((np.concatenate([p["seq"] for p in parts]), ts))
    df = pd.DataFrame({
        "ts": ts[order],
        "conn": _joined([p["conn"] for p in parts], order),
        "layer": _text([layer] * len(order)),
        "kind": _text(_objects([p["kind"] for p in parts])[order]),
        "dir": _text(_objects([p["dir"] for p in parts])[order]),
        "size": _joined([p["size"] for p in parts], order),
        "detail": _text(_objects([p["detail"] for p in parts])[order]),
    })
    return conform("events", df)


def _events_of(at: np.ndarray, k: int, conn, kind: list, direction: str, size, detail: list) -> dict:
    """One event per request with a time ``at`` (its ``k``-th: the order of a request's events)."""
    keep = np.flatnonzero(~np.isnan(at))
    rows = keep.tolist()
    return {"ts": at[keep], "seq": keep * 3 + k, "conn": conn[keep], "kind": [kind[i] for i in rows],
            "dir": [direction] * len(rows), "size": size[keep], "detail": [detail[i] for i in rows]}


def _objects(lists: list[list]) -> np.ndarray:
    """Lists of values, end to end, as one object array."""
    out = np.empty(sum(len(x) for x in lists), dtype=object)
    out[:] = [v for x in lists for v in x]
    return out


def _joined(arrays: list, order: np.ndarray) -> pd.arrays.IntegerArray:
    """Nullable integer arrays end to end, in ``order``."""
    return pd.array(np.concatenate([np.asarray(a, dtype=object) for a in arrays]), dtype="Int64")[order]


def _summary_detail(requests: pd.DataFrame, connections: pd.DataFrame) -> dict:
    protocols = requests["protocol"].dropna().value_counts().to_dict() if len(requests) else {}
    return {
        "requests": int(len(requests)),
        "connections": int(len(connections)),
        "connections_inferred": bool(connections["inferred"].any()) if len(connections) else False,
        "protocols": {str(k): int(v) for k, v in protocols.items()},
    }
