"""DevTools protocol (CDP) logs: ``Network.*`` / ``Page.*`` messages in, request records out.

``[{"method": "Network.requestWillBeSent", "params": {...}}, ...]`` as
Lighthouse's ``devtoolslog.json`` and sitespeed's chrome-har perf logs write
them (maybe under a ``messages``/``log``/``devtoolsLog``/``defaultPass`` key),
or chromedriver's performance log, whose ``message`` is a JSON string
wrapping ``{"message": {"method", "params"}}``.  The messages of one request
are folded into a ``ChromeRequest`` while reading (``chrome.py`` says why here).

Message ``timestamp`` is seconds of Chrome's monotonic clock; a request's
``wallTime`` (epoch seconds) gives ``CdpLog.wall_offset``.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from typing import Any

from traceviz import limits
from traceviz.errors import InputError, describe
from traceviz.sources import jsonfile
from traceviz.sources.chrome import (ChromePage, ChromeRequest, Hop, Navigation, initiator_type,
                                     response_of)
from traceviz.sources.jsonfile import number, text

LIST_KEYS = ("messages", "log", "devtoolsLog", "defaultPass")


@dataclass(frozen=True)
class CdpLog:
    """A DevTools protocol log, read.

    Fields:
      path: the file
      requests: one ``ChromeRequest`` per request hop (WebSockets too), in the order they began
      page: the ``ChromePage`` (main document request, DOMContentLoaded and load stamps)
      total_messages: how many items the log holds, CDP events or not
      wall_offset: seconds to add to a time here for epoch seconds (0 when ``clock`` is monotonic)
      clock: ``wall``, or ``monotonic`` when no request carried a ``wallTime``
      compressed: whether the file was gzipped
      size: the length of its JSON text
      warnings: one line each about what could not be read (at most 20 skipped items)
    """

    path: str
    requests: tuple[ChromeRequest, ...]
    page: ChromePage
    total_messages: int
    wall_offset: float
    clock: str
    compressed: bool = False
    size: int = 0
    warnings: tuple[str, ...] = ()


def read_cdp(path: str) -> CdpLog:
    value, facts = jsonfile.parse(str(path))
    return cdp_from_json(str(path), value, facts)


def cdp_from_json(path: str, value: Any, facts: dict | None = None) -> CdpLog:
    """Read an already parsed protocol log."""
    facts = facts or {}
    items = value
    if isinstance(value, dict):
        items = next((value[k] for k in LIST_KEYS if isinstance(value.get(k), list)), None)
    if not isinstance(items, list):
        raise InputError(path, "not a DevTools protocol log: no list of messages")
    limits.check_records(path, len(items), "messages")
    warnings: list[str] = []
    messages = []
    for i, item in enumerate(items):
        msg = _message(item)
        if msg is None:
            if len(warnings) < 20:
                warnings.append(describe(path, f"message {i + 1}: not a CDP event; skipped"))
            continue
        messages.append(msg)
    hops, page, wall_offsets, odd = _fold(messages)
    if not hops and not any(method.startswith(("Network.", "Page.")) for method, _ in messages):
        raise InputError(path, "DevTools protocol log without Network or Page events")
    if odd["repeated"]:
        warnings.append(describe(path, f"{odd['repeated']} messages repeated word for word; read once"))
    if odd["unsent"]:
        warnings.append(describe(path, f"{odd['unsent']} requests have a response but no requestWillBeSent "
                                       "(the log began after they were sent); they start at their response's timing"))
    offset, clock = _wall_offset(wall_offsets)
    if clock == "monotonic":
        warnings.append(describe(path, "no wallTime in the log; times are the browser's monotonic clock"))
    return CdpLog(path=path, requests=tuple(h.freeze() for h in hops), page=page,
                  total_messages=len(items), wall_offset=offset, clock=clock,
                  compressed=facts.get("compressed", False), size=facts.get("size", 0),
                  warnings=tuple(warnings))


def _message(item: Any) -> tuple[str, dict] | None:
    """(method, params) of one log item, or None when it is no CDP event."""
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("method"), str):
        params = item.get("params")
        return item["method"], params if isinstance(params, dict) else {}
    inner = item.get("message")        # chromedriver: {"message": "<json>", "level", "timestamp"}
    if isinstance(inner, str):
        try:
            inner = json.loads(inner)
        except (ValueError, RecursionError):
            return None
    if isinstance(inner, dict):
        if isinstance(inner.get("message"), dict):
            inner = inner["message"]
        if isinstance(inner.get("method"), str):
            params = inner.get("params")
            return inner["method"], params if isinstance(params, dict) else {}
    return None


def _fold(messages: list[tuple[str, dict]]) -> tuple[list[Hop], ChromePage, list[float], dict]:
    """``Network.*`` messages into request hops; ``Page.*`` milestones; each ``wallTime - timestamp``;
    counts of what was odd (``repeated`` messages skipped, requests ``unsent`` but answered).

    A message repeated (same method, request and timestamp: a log holding two
    sessions' copies of one event) is read once; read twice, a redirect's
    second copy would end the hop it had just begun and copy its timings.
    As in Lighthouse's network recorder, a second ``requestWillBeSent`` for a
    request still under way is a copy unless it carries a redirect.
    """
    live: dict[str, Hop] = {}
    seen: set[tuple] = set()
    redirects: dict[str, int] = {}
    odd = {"repeated": 0, "unsent": 0}
    hops: list[Hop] = []
    dcl: list[float] = []
    load: list[float] = []
    main: Hop | None = None
    wall_offsets: list[float] = []
    for method, p in messages:
        rid = p.get("requestId")
        rid = key = str(rid) if rid is not None else None
        ts = number(p.get("timestamp"))
        if rid and method.startswith("Network.") and not math.isnan(ts):
            stamp = (method, rid, ts)
            if stamp in seen:
                odd["repeated"] += 1
                continue
            seen.add(stamp)
        if method == "Network.requestWillBeSent" and rid:
            req = p.get("request") if isinstance(p.get("request"), dict) else {}
            prev = live.get(key)
            redirect = p.get("redirectResponse")
            if prev is not None and not isinstance(redirect, dict) and math.isnan(prev.finish) and not prev.failed:
                odd["repeated"] += 1             # a copy of a request still under way
                continue
            if prev is not None and isinstance(redirect, dict):
                prev.response = response_of(redirect) if redirect else None
                prev.finish = ts
                prev.redirected(redirects.get(key, 0))
                redirects[key] = redirects.get(key, 0) + 1
            hop = Hop(rid, req.get("url"), req.get("method"), ts)
            hop.resource_type = text(p.get("type"))
            hop.priority = text(req.get("initialPriority"))
            hop.initiator = initiator_type(p.get("initiator"))
            hop.frame = text(p.get("frameId"))
            wall = number(p.get("wallTime"))
            if not math.isnan(wall) and not math.isnan(ts):
                wall_offsets.append(wall - ts)
            if main is None and hop.resource_type == "Document":
                main = hop
            live[key] = hop
            hops.append(hop)
        elif method == "Network.webSocketCreated" and rid and key not in live:
            # DevTools lists a WebSocket as a request row; its handshake is the exchange.
            hop = Hop(rid, p.get("url"), "GET", math.nan)
            hop.resource_type, hop.initiator = "WebSocket", initiator_type(p.get("initiator"))
            live[key] = hop
            hops.append(hop)
        elif method == "Network.responseReceived" and rid and key not in live and isinstance(p.get("response"), dict):
            # Answered, but sent before the log began: a row from what the response says.
            resp = p["response"]
            timing = resp.get("timing") if isinstance(resp.get("timing"), dict) else {}
            hop = Hop(rid, resp.get("url"), None, number(timing.get("requestTime")))
            hop.resource_type = text(p.get("type"))
            hop.response = response_of(resp, ts)
            hop.frame = text(p.get("frameId"))
            live[key] = hop
            hops.append(hop)
            odd["unsent"] += 1
        elif rid and key in live:
            hop = live[key]
            if method == "Network.webSocketWillSendHandshakeRequest":
                hop.issue = ts
                wall = number(p.get("wallTime"))
                if not math.isnan(wall) and not math.isnan(ts):
                    wall_offsets.append(wall - ts)
            elif method == "Network.webSocketHandshakeResponseReceived" and isinstance(p.get("response"), dict):
                hop.response = response_of(p["response"], ts)
            elif method in ("Network.webSocketClosed", "Network.webSocketFrameError"):
                hop.finish = ts
            elif method == "Network.responseReceived":
                resp = p.get("response")
                if isinstance(resp, dict):
                    hop.response = response_of(resp, ts)
                    if hop.resource_type is None and isinstance(p.get("type"), str):
                        hop.resource_type = p["type"]
            elif method == "Network.loadingFinished":
                hop.finish = ts
                hop.encoded = number(p.get("encodedDataLength"))
            elif method == "Network.loadingFailed":
                hop.finish, hop.failed = ts, True
                hop.error = str(p.get("errorText") or "failed") + (" (canceled)" if p.get("canceled") else "")
            elif method == "Network.requestServedFromCache":
                hop.cached = True
            elif method == "Network.resourceChangedPriority" and isinstance(p.get("newPriority"), str):
                hop.priority = p["newPriority"]
        elif method == "Page.domContentEventFired" and not math.isnan(ts):
            dcl.append(ts)
        elif method == "Page.loadEventFired" and not math.isnan(ts):
            load.append(ts)
    nav = Navigation(main.issue, main.url) if main is not None else None
    return hops, ChromePage(nav, tuple(dcl), tuple(load)), wall_offsets, odd


def _wall_offset(offsets: list[float]) -> tuple[float, str]:
    """The median of ``wallTime - timestamp``: Chrome stamps both on each request it sends."""
    if not offsets:
        return 0.0, "monotonic"
    return statistics.median(offsets), "wall"
