"""HAR 1.1/1.2 files (and JSONP ``.harp``): the log's pages and entries, as records.

Chrome/WebInspector, Firefox, Safari, WebPageTest, Playwright, Charles and
Insomnia all write the same skeleton with different optional and ``_custom``
fields.  This reader settles where each exporter writes a fact (``_socket``
for ``connection``, ``_ip_addr`` for ``serverIPAddress``, Firefox's server
port in ``connection`` and its ``ssl`` outside ``connect``), so that a record
means what HAR 1.2 says; turning the numbers into our phases and tables is
the assembler's job.  Bodies (``content.text``, ``postData.text``), header,
cookie and query lists are never made objects: nothing needs them and they
are most of a large HAR's bytes.  msgspec steps over them (``harfields``);
the plain reader here, for what msgspec gives way on, cuts them as it reads
(``CUTS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from traceviz import limits
from traceviz.errors import InputError, describe
from traceviz.sources import jsonfile
from traceviz.sources.chrome import initiator_type
from traceviz.sources.jsonfile import number, text
from traceviz.sources.urls import authority_host, host_and_port


class HarEntry(NamedTuple):
    """One ``log.entries[i]``.  Numbers are HAR's (ms, bytes) and NaN where absent or -1.

    A named tuple, not a frozen dataclass: a big HAR has a million entries, and a
    tuple is made in a third of the time.

    Fields:
      started: ``startedDateTime`` as written (ISO 8601), or None
      time: ``time``, the entry's total (ms)
      timings: the ``timings`` object as written ({} when absent): blocked,
        dns, connect, ssl, send, wait, receive in ms, -1 where it does not apply
      status: the response status as a number (0 means no response)
      protocol: the response's, else the request's ``httpVersion`` (or ``_protocol``), or None
      http_version: the response's ``httpVersion`` as written, or None
      method, url: the request's, or None
      host: the URL's host, or the Host / ``:authority`` header's for a relative URL
      port: the URL's port (its scheme's default when it names none), or None
      req_headers_size, req_body_size: the request's ``headersSize`` and ``bodySize``
      resp_headers_size, resp_body_size: the response's
      transfer_size: Chrome's ``_transferSize`` (bytes on the wire)
      request_id: the exporter's request id (``_requestId``), or None
      page: ``pageref``, or None
      resource_type, priority: Chrome's ``_resourceType`` and ``_priority``, or None
      initiator: the initiator's type (``_initiator``), or None
      mime_type: ``content.mimeType``, or None
      server_ip: ``serverIPAddress`` (or ``_ip_addr``), IPv6 unbracketed, or None
      server_port: the server's port (``_serverPort``; Firefox's ``connection``), NaN
      connection: the connection id (``connection``, ``_connection``, ``_socket``) as text, or None
      from_cache: Chrome's ``_fromCache`` as a bool, or None when not written
      error_text: the response's ``_error`` or ``statusText``, or None
      tls_version: ``_securityDetails.protocol``, or None
    """

    started: str | None
    time: float
    timings: dict
    status: float
    protocol: str | None
    http_version: str | None
    method: str | None
    url: str | None
    host: str | None
    port: int | None
    req_headers_size: float
    req_body_size: float
    resp_headers_size: float
    resp_body_size: float
    transfer_size: float
    request_id: str | None
    page: str | None
    resource_type: str | None
    priority: str | None
    initiator: str | None
    mime_type: str | None
    server_ip: str | None
    server_port: float
    connection: str | None
    from_cache: bool | None
    error_text: str | None
    tls_version: str | None


class HarPage(NamedTuple):
    """One ``log.pages[i]``: id, title, ``startedDateTime`` as written, and its
    ``onContentLoad`` / ``onLoad`` (ms after the start; NaN where absent or -1)."""

    id: str | None
    title: str | None
    started: str | None
    on_content_load: float
    on_load: float


@dataclass(frozen=True, slots=True)
class Software:
    """``log.creator`` or ``log.browser``: name and version, or None where not text."""

    name: str | None
    version: str | None


@dataclass(frozen=True)
class HarLog:
    """A HAR file, read.

    Fields:
      path: the file
      version: the HAR version written, or None
      creator, browser: the exporting tool and the browser (``Software``)
      pages: the ``HarPage`` records, in file order
      entries: the ``HarEntry`` records, in file order (entries without a request object skipped)
      ssl_in_connect: whether ``connect`` includes ``ssl``, as HAR 1.2 says;
        Firefox (and any file with an ``ssl`` longer than its ``connect``) writes them apart
      compressed: whether the file was gzipped
      jsonp: the JSONP callback's name for a ``.harp``, else None
      size: the length of its JSON text: in bytes as msgspec reads it (``harfields``), in
        characters once bodies and header lists are cut (``CUTS``) where the plain reader reads it
      warnings: one line each about what could not be read
    """

    path: str
    version: str | None
    creator: Software
    browser: Software
    pages: tuple[HarPage, ...]
    entries: tuple[HarEntry, ...]
    ssl_in_connect: bool
    compressed: bool = False
    jsonp: str | None = None
    size: int = 0
    warnings: tuple[str, ...] = ()


def drop_bodies(obj: dict) -> dict | HarEntry:
    """``json.loads`` object hook: a content / postData object loses its body, and an entry
    becomes its ``HarEntry`` as soon as it is parsed.

    So the parse never holds a body, nor an entry's headers, cookies and
    timings objects past the entry itself: a 1 GB HAR of a million entries
    needs the memory of its records, not of its JSON tree.  (The exporter's
    name, which decides how Firefox's ``connection`` reads, is only known at
    the end: ``har_from_json`` settles that.)
    """
    if "text" in obj and "mimeType" in obj:
        obj.pop("text")
        return obj
    if isinstance(obj.get("request"), dict) and ("response" in obj or "timings" in obj or "startedDateTime" in obj):
        return _entry(obj)
    return obj


# Cut from the text before it is parsed: bodies, and the lists no record reads.  Of a
# header list only Host and :authority stay: a relative URL's host is read from them.
CUTS = jsonfile.Cuts(b"text", ((b"headers", (b'"host"', b'":authority"')), (b"cookies", ()), (b"queryString", ())))


def read_har(path: str) -> HarLog:
    """The HAR at ``path`` cut as it is read and parsed by the json module: the judge of every
    file msgspec gives way on (``harfields``), and what reports where a broken file breaks."""
    value, facts = jsonfile.parse(str(path), object_hook=drop_bodies, drop=CUTS)
    return har_from_json(str(path), value, facts)


def har_from_json(path: str, value: Any, facts: dict | None = None) -> HarLog:
    """Check the skeleton of an already parsed HAR and read its pages and entries."""
    log = value.get("log") if isinstance(value, dict) else None
    if not isinstance(log, dict):
        raise InputError(path, 'not a HAR file: no "log" object')
    entries = log.get("entries")
    if not isinstance(entries, list):
        raise InputError(path, 'not a HAR file: "log" has no "entries" list')
    limits.check_records(path, len(entries), "entries")
    # Most entries were made records while parsing (``drop_bodies``); the rest are made here.
    records = [_entry(e) if isinstance(e, dict) and isinstance(e.get("request"), dict) else e for e in entries]
    return har_log(path, log.get("version"), log.get("creator"), log.get("browser"), log.get("pages"),
                   [e if isinstance(e, HarEntry) else None for e in records], facts or {})


def har_log(path: str, version: Any, creator: Any, browser: Any, pages: Any,
            entries: list[HarEntry | None], facts: dict) -> HarLog:
    """The ``HarLog`` of a log's fields as written and its entries made records (None for an
    entry without a request object, which is skipped with a warning)."""
    creator, browser = _software(creator), _software(browser)
    names = f"{creator.name or ''} {browser.name or ''}".lower()
    firefox = "firefox" in names
    good, warnings = [], []
    for i, e in enumerate(entries):
        if e is None:
            warnings.append(describe(path, f"entry {i + 1}: no request object; skipped"))
        else:
            good.append(_firefox_port(e) if firefox else e)
    return HarLog(
        path=path,
        version=text(version),
        creator=creator,
        browser=browser,
        pages=tuple(_page(p) for p in (pages if isinstance(pages, list) else []) if isinstance(p, dict)),
        entries=tuple(good),
        ssl_in_connect=not (firefox or any(_ssl_outside_connect(e.timings) for e in good)),
        compressed=facts.get("compressed", False),
        jsonp=facts.get("jsonp"),
        size=facts.get("size", 0),
        warnings=tuple(warnings),
    )


def _software(d: Any) -> Software:
    d = d if isinstance(d, dict) else {}
    version = d.get("version")
    return Software(text(d.get("name")), version if isinstance(version, str) and version else None)


def _ssl_outside_connect(t: dict) -> bool:
    """An ``ssl`` longer than its ``connect`` cannot be inside it (``t``: an entry's timings).

    (Whether the phases add up to ``time`` proves nothing: Playwright adds
    ``ssl`` into ``time`` a second time.)
    """
    ssl, connect = number(t.get("ssl")), number(t.get("connect"))
    return ssl > connect + 1e-6      # NaN compares False


def _page(p: dict) -> HarPage:
    timings = p.get("pageTimings") if isinstance(p.get("pageTimings"), dict) else {}
    pid = p.get("id")
    return HarPage(id=str(pid) if pid is not None else None, title=text(p.get("title")),
                   started=text(p.get("startedDateTime")),
                   on_content_load=number(timings.get("onContentLoad")), on_load=number(timings.get("onLoad")))


def _entry(e: dict) -> HarEntry:
    # Written for speed (a HAR may hold a million entries): one lookup per field, positional fields.
    get = e.get
    req = e["request"]
    resp = get("response")
    resp = resp if type(resp) is dict else {}
    rget = req.get
    sget = resp.get
    content = sget("content")
    security = get("_securityDetails")
    return record(
        get("startedDateTime"), get("time"), get("timings"),
        rget("url"), rget("method"), rget("httpVersion"), rget("headersSize"), rget("bodySize"),
        lambda: rget("headers"),
        sget("status"), sget("httpVersion"), sget("headersSize"), sget("bodySize"), sget("_transferSize"),
        content.get("mimeType") if type(content) is dict else None, sget("_error"), sget("statusText"),
        get("_protocol"), get("connection"), get("_connection"), get("_socket"),
        get("serverIPAddress"), get("_ip_addr"), get("_serverPort"),
        security.get("protocol") if type(security) is dict else None,
        get("_requestId") or get("_request_id"), get("pageref"), get("_resourceType"), get("_priority"),
        initiator_type(get("_initiator")), get("_fromCache"))


def record(started, time, timings, url, method, req_version, req_headers_size, req_body_size, headers,
           status, resp_version, resp_headers_size, resp_body_size, transfer_size, mime_type, error,
           status_text, protocol, conn, conn_alt, socket, ip, ip_alt, server_port, tls, rid, page,
           resource_type, priority, initiator, from_cache) -> HarEntry:
    """An entry's ``HarEntry`` from the values it writes, as written (None where absent):
    where each exporter puts a fact settled, numbers and text checked.  ``headers``: a
    function giving the request's header list, read only for a relative URL's host.
    Both readers (``_entry`` for parsed dicts, ``harfields`` for msgspec's) come here."""
    url = url if type(url) is str else None
    host, port = host_and_port(url)
    if not host:
        host = authority_host(_authority(headers()))
    # Chrome: "connection"; some tools "_connection"; WebPageTest: "_socket"
    if conn in (None, ""):
        conn = conn_alt if conn_alt not in (None, "") else socket if socket not in (None, "") else None
    conn = None if conn in (None, "", -1) else str(conn)
    if not (type(ip) is str and ip):
        ip = ip_alt if type(ip_alt) is str and ip_alt else None
    if ip and ip[0] == "[" and ip[-1] == "]":
        ip = ip[1:-1]
    return HarEntry(
        text(started),
        number(time),
        timings if type(timings) is dict else {},
        number(status),
        text(resp_version or req_version or protocol),
        text(resp_version),
        text(method),
        url,
        host,
        port,
        number(req_headers_size),
        number(req_body_size),
        number(resp_headers_size),
        number(resp_body_size),
        number(transfer_size),
        str(rid) if rid else None,
        text(page),
        text(resource_type),
        text(priority),
        initiator,
        text(mime_type),
        ip,
        number(server_port),
        conn,
        _from_cache(from_cache),
        _nonempty(error) or _nonempty(status_text),
        _nonempty(tls),
    )


def _firefox_port(e: HarEntry) -> HarEntry:
    """Firefox writes the server port in ``connection``, not a connection id."""
    if e.connection and e.connection.isascii() and e.connection.isdigit():
        return e._replace(server_port=float(e.connection), connection=None)
    return e


def _authority(headers: Any) -> str | None:
    """The first Host / ``:authority`` header's value: where a relative URL's host is written."""
    for h in headers if isinstance(headers, list) else []:
        if isinstance(h, dict) and str(h.get("name", "")).lower() in ("host", ":authority"):
            return str(h.get("value", ""))
    return None


def _from_cache(v: Any) -> bool | None:
    if isinstance(v, str) and v:
        return True          # Chrome: "memory" / "disk"
    if isinstance(v, bool):
        return v
    return None


def _nonempty(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None
