"""A reverse proxy's own log: nginx error.log and access log, haproxy's HTTP log.

The proxy knows why it answered 502, and says so in its log.  This reads those
lines into ``LogLine`` records that ``assemble/proxy.match_log`` ties to the
requests of a capture (by client address and port, request line and time).

Formats recognised, anywhere in a line (a syslog prefix is fine):

- nginx error log: ``2026/11/27 23:40:26 [error] 11475#11475: *5 upstream
  prematurely closed connection ..., client: 10.88.0.1, server: , request:
  "GET /fin HTTP/1.1", upstream: "http://10.88.1.2:9003/fin", host: ...``.
  Local time without a zone.
- nginx access log: ``combined`` (``10.0.0.1 - - [27/Nov/2026:23:40:26 +0000]
  "GET /fin HTTP/1.1" 502 157 ...``) and any format that has a quoted request
  line followed by the status, with the client first (``ip`` or ``ip:port``,
  after an optional ``$msec``); ``up=``/``upstream_addr=`` and
  ``ups=``/``upstream_status=`` fields are read when present.
- haproxy ``option httplog``: ``10.0.0.1:59620 [27/Nov/2026:23:40:45.424] fe
  be/srv 0/0/54/51/105 200 497 - - ---- 1/1/0/0/0 0/0 "GET /ok HTTP/1.1"``:
  the termination state (``SH--``...) says who ended the session and how.
  Local time without a zone.

Times without a zone are read as UTC and flagged (``zoned=False``); the
matcher finds the offset.  Lines in none of these forms are counted, never
silently dropped.
"""

from __future__ import annotations

import calendar
import os
import re
from dataclasses import dataclass

from traceviz.errors import InputError
from traceviz.sources.urls import path_of

MAX_BYTES = 256 * 1024 * 1024
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"), start=1)}


@dataclass(frozen=True)
class LogLine:
    """One line of a proxy's log.

    Fields: file, lineno (1-based), kind (``nginx-error``, ``nginx-access``,
    ``haproxy``), time (epoch seconds; None if the line has none), zoned (the
    time carried its UTC offset), client (``ip`` or ``ip:port``), method,
    path, status (None for an error-log line), message (nginx's error text),
    termination (haproxy's four-letter state), server (haproxy
    ``backend/server``), upstream (addresses tried, in order),
    upstream_status (their statuses, as logged), text (the line)."""

    file: str
    lineno: int
    kind: str
    time: float | None
    zoned: bool
    client: str | None
    method: str | None
    path: str | None
    status: int | None
    message: str | None
    termination: str | None
    server: str | None
    upstream: tuple
    upstream_status: tuple
    text: str


@dataclass(frozen=True)
class ProxyLog:
    """The lines read from one or more files, and what could not be read.
    Fields: lines, unread (count), first_unread ("file:line" of the first)."""

    lines: tuple
    unread: int = 0
    first_unread: str | None = None


_REQUEST = r'"(?P<method>[A-Z][A-Z0-9_-]*) (?P<target>\S+)(?: HTTP/[0-9.]+)?"'
_NGINX_ERROR = re.compile(r"(?P<date>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) \[(?P<level>\w+)\] \d+#\d+: "
                          r"(?:\*\d+ )?(?P<rest>.*)$")
_HAPROXY = re.compile(r"(?P<client>[0-9a-fA-F.:]+:\d+) \[(?P<date>\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2}(?:\.\d+)?)\] "
                      r"(?P<frontend>\S+) (?P<server>\S+) (?P<timers>\S+) (?P<status>-?\d+) \S+ \S+ \S+ "
                      r"(?P<term>[-A-Za-z]{4}) \S+ \S+ (?:\{[^}]*\} )*" + _REQUEST)
_ACCESS = re.compile(r"^(?:(?P<msec>\d{9,}\.\d+) )?(?P<client>\S+) .*?"
                     r"(?:\[(?P<date>\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2}) (?P<zone>[+-]\d{4})\] )?"
                     + _REQUEST + r" (?P<status>\d{3})\b(?P<rest>.*)$")
_FIELD = re.compile(r'(?P<key>[a-z_]+)="(?P<value>[^"]*)"')
_UPSTREAM_KEYS = {"up": "upstream", "upstream": "upstream", "upstream_addr": "upstream",
                  "ups": "upstream_status", "upstream_status": "upstream_status"}


def read(paths) -> ProxyLog:
    """Every line of the given files; an unreadable file is bad input (one line, exit 2)."""
    lines, unread, first = [], 0, None
    for path in paths:
        text = _text(path)
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            rec = parse_line(line, str(path), n)
            if rec is None:
                unread += 1
                first = first or f"{path}:{n}"
            else:
                lines.append(rec)
    return ProxyLog(tuple(lines), unread, first)


def _text(path) -> str:
    try:
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            raise InputError(str(path), f"proxy log of {size} bytes is larger than {MAX_BYTES} bytes")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(str(path), f"cannot read proxy log: {e.strerror or type(e).__name__}") from None
    if b"\x00" in data[:4096]:
        raise InputError(str(path), "not a text log (NUL bytes)")
    return data.decode("utf-8", "replace")


def parse_line(line: str, file: str = "", lineno: int = 0) -> LogLine | None:
    """One line as a ``LogLine`` (None: not a line of a format above)."""
    line = line.rstrip("\r\n")
    m = _HAPROXY.search(line)
    if m:
        method, path = m["method"], path_of(m["target"])
        return LogLine(file, lineno, "haproxy", _clf_time(m["date"]), False, m["client"], method, path,
                       int(m["status"]) if int(m["status"]) >= 0 else None, None, m["term"], m["server"],
                       (), (), line)
    m = _NGINX_ERROR.search(line)
    if m:
        return _nginx_error(m, line, file, lineno)
    m = _ACCESS.search(line)
    if m:
        fields = {_UPSTREAM_KEYS[k]: v for k, v in _FIELD.findall(m["rest"]) if k in _UPSTREAM_KEYS}
        if m["msec"]:
            when, zoned = float(m["msec"]), True
        elif m["date"]:
            when, zoned = _clf_time(m["date"]), True
            when = when - _zone(m["zone"]) if when is not None else None
        else:
            when, zoned = None, False
        return LogLine(file, lineno, "nginx-access", when, zoned, m["client"], m["method"], path_of(m["target"]),
                       int(m["status"]), None, None, None, _list(fields.get("upstream")),
                       _list(fields.get("upstream_status")), line)
    return None


def _nginx_error(m, line, file, lineno) -> LogLine:
    rest = m["rest"]
    parts = {}
    for key in ("client", "server", "request", "upstream", "host"):
        found = re.search(rf", {key}: (\"[^\"]*\"|[^,]*)", rest)
        if found:
            parts[key] = found.group(1).strip('"')
    cut = re.search(r", (client|server|request|upstream|host): ", rest)
    message = rest[:cut.start()] if cut else rest
    method = path = None
    if parts.get("request"):
        words = parts["request"].split(" ")
        method, path = words[0], path_of(words[1]) if len(words) > 1 else None
    when = None
    try:
        y, mo, d = (int(x) for x in m["date"][:10].split("/"))
        hh, mm, ss = (int(x) for x in m["date"][11:].split(":"))
        when = float(calendar.timegm((y, mo, d, hh, mm, ss)))
    except ValueError:
        pass
    upstream = (_authority(parts["upstream"]),) if parts.get("upstream") else ()
    return LogLine(file, lineno, "nginx-error", when, False, parts.get("client"), method, path, None, message,
                   None, None, upstream, (), line)


def _clf_time(text: str) -> float | None:
    """``27/Nov/2026:23:40:45[.424]`` as epoch seconds, read as UTC."""
    try:
        day, mon, rest = text.split("/", 2)
        year, hh, mm, ss = rest.split(":")
        whole, _, frac = ss.partition(".")
        t = calendar.timegm((int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(whole)))
        return t + (float("0." + frac) if frac else 0.0)
    except (ValueError, KeyError):
        return None


def _zone(text: str) -> float:
    sign = -1 if text.startswith("-") else 1
    return sign * (int(text[1:3]) * 3600 + int(text[3:5]) * 60)


def _authority(url: str) -> str:
    """``http://10.0.0.2:9003/fin`` -> ``10.0.0.2:9003`` (nginx names the upstream by its URL)."""
    rest = url.split("://", 1)[1] if "://" in url else url
    return rest.split("/", 1)[0]


def _list(text: str | None) -> tuple:
    if not text or text == "-":
        return ()
    return tuple(x.strip() for x in re.split(r"[,:] ", text) if x.strip() and x.strip() != "-")
