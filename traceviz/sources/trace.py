"""DevTools trace-event files: the Performance panel's export in, request records out.

``{"traceEvents": [...]}`` or a bare array, maybe gzipped.  Only the network
(``Resource*``) and page-milestone events are read; a trace holds tens of
thousands of others.  The events of one request are folded into a
``ChromeRequest`` while reading (``chrome.py`` says why here).

Trace times (``ts``) are microseconds of Chrome's monotonic clock; the
records carry seconds of it.  Responses carry a wall-clock ``responseTime``,
from which ``TraceLog.wall_offset`` maps that clock to epoch seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from traceviz import limits
from traceviz.errors import InputError, describe
from traceviz.sources import jsonfile
from traceviz.sources.chrome import (ChromePage, ChromeRequest, Hop, Navigation, initiator_type,
                                     response_of)
from traceviz.sources.jsonfile import number, text

NETWORK_EVENTS = frozenset({
    "ResourceWillSendRequest", "ResourceSendRequest", "ResourceReceiveResponse",
    "ResourceFinish", "ResourceChangePriority", "ResourceMarkAsCached",
})
PAGE_EVENTS = frozenset({
    "MarkDOMContent", "MarkLoad", "navigationStart", "domContentLoadedEventEnd",
    "loadEventEnd", "TracingStartedInBrowser",
})


@dataclass(frozen=True)
class TraceLog:
    """A DevTools trace, read.

    Fields:
      path: the file
      requests: one ``ChromeRequest`` per request hop, in the order they were sent
      page: the ``ChromePage`` (navigation, DOMContentLoaded and load stamps)
      total_events: how many trace events the file holds, of every kind
      wall_offset: seconds to add to a time here for epoch seconds (0 when ``clock`` is monotonic)
      clock: ``wall``, or ``monotonic`` when no response carried a wall-clock stamp
      compressed: whether the file was gzipped
      size: the length of its JSON text
      warnings: one line each about what could not be read as meant
    """

    path: str
    requests: tuple[ChromeRequest, ...]
    page: ChromePage
    total_events: int
    wall_offset: float
    clock: str
    compressed: bool = False
    size: int = 0
    warnings: tuple[str, ...] = ()


def read_trace(path: str) -> TraceLog:
    value, facts = jsonfile.parse(str(path))
    return trace_from_json(str(path), value, facts)


def trace_from_json(path: str, value: Any, facts: dict | None = None) -> TraceLog:
    """Read an already parsed trace."""
    facts = facts or {}
    if isinstance(value, dict) and isinstance(value.get("traceEvents"), list):
        events = value["traceEvents"]
    elif isinstance(value, list):
        events = value
    else:
        raise InputError(path, "not a DevTools trace: no traceEvents list")
    if not events:
        raise InputError(path, "DevTools trace without events")
    limits.check_records(path, len(events), "trace events")
    wanted = NETWORK_EVENTS | PAGE_EVENTS
    kept = (e for e in events if isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"] in wanted)
    hops, page, (wall_rt, wall_ts), odd = _fold(kept)
    offset, clock = _wall_offset(wall_rt, wall_ts)
    warnings = []
    if odd["repeated"]:
        warnings.append(describe(path, f"{odd['repeated']} network events repeated (same event, request and time); read once"))
    if odd["unsent"]:
        warnings.append(describe(path, f"{odd['unsent']} requests have a ResourceReceiveResponse but no "
                                       "ResourceSendRequest (tracing began after they were sent); they start "
                                       "at their response's timing"))
    if clock == "monotonic" and hops:
        warnings.append(describe(path, "no wall-clock stamp in the trace; times are the browser's monotonic clock"))
    return TraceLog(path=path, requests=tuple(h.freeze() for h in hops), page=page,
                    total_events=len(events), wall_offset=offset, clock=clock,
                    compressed=facts.get("compressed", False), size=facts.get("size", 0),
                    warnings=tuple(warnings))


def _fold(events) -> tuple[list[Hop], ChromePage, tuple[list[float], list[float]], dict]:
    """Resource* events into request hops; page milestones; the wall-clock bounds of each response;
    counts of what was odd (``repeated`` events read once, requests ``unsent`` but answered)."""
    live: dict[str, Hop] = {}
    seen: set[tuple] = set()
    redirects: dict[str, int] = {}
    odd = {"repeated": 0, "unsent": 0}
    hops: list[Hop] = []
    will_send: dict[str, float] = {}
    dcl: list[float] = []
    load: list[float] = []
    nav = None
    wall_rt: list[float] = []
    wall_ts: list[float] = []
    for e in events:
        name = e.get("name")
        args = e.get("args") if isinstance(e.get("args"), dict) else {}
        data = args.get("data") if isinstance(args.get("data"), dict) else {}
        ts = number(e.get("ts"))
        ts = ts / 1e6 if not math.isnan(ts) else math.nan
        rid = data.get("requestId")
        rid = str(rid) if rid is not None else None
        if rid and not math.isnan(ts):
            stamp = (name, rid, ts)
            if stamp in seen:
                odd["repeated"] += 1
                continue
            seen.add(stamp)
        if name == "ResourceReceiveResponse" and rid and rid not in live:
            # Answered, but sent before tracing began: a row from what the response says.
            timing = data.get("timing") if isinstance(data.get("timing"), dict) else {}
            issue = number(timing.get("requestTime"))
            live[rid] = Hop(rid, data.get("url"), data.get("requestMethod"), issue if not math.isnan(issue) else ts)
            hops.append(live[rid])
            odd["unsent"] += 1
        if name == "ResourceWillSendRequest" and rid:
            will_send.setdefault(rid, ts)
        elif name == "ResourceSendRequest" and rid:
            prev = live.get(rid)
            if prev is not None and prev.response is not None:      # a redirect: same id, new hop
                prev.finish = ts if math.isnan(prev.finish) else prev.finish
                prev.redirected(redirects.get(rid, 0))
                redirects[rid] = redirects.get(rid, 0) + 1
            issue = will_send.pop(rid, ts)
            hop = Hop(rid, data.get("url"), data.get("requestMethod"), min(issue, ts) if not math.isnan(issue) else ts)
            hop.priority = text(data.get("priority"))
            hop.resource_type = text(data.get("resourceType"))
            hop.initiator = initiator_type(data.get("initiator"))
            hop.frame = text(data.get("frame"))
            live[rid] = hop
            hops.append(hop)
        elif rid and rid in live:
            hop = live[rid]
            if name == "ResourceReceiveResponse":
                hop.response = response_of(data, ts)
                rt, timing = number(data.get("responseTime")), data.get("timing")
                if not math.isnan(rt):
                    wall_ts.append(rt / 1000 - ts)
                    if isinstance(timing, dict) and not math.isnan(number(timing.get("requestTime"))):
                        wall_rt.append(rt / 1000 - number(timing["requestTime"]))
            elif name == "ResourceFinish":
                finish = number(data.get("finishTime"))
                hop.finish = finish if finish > 0 else ts
                hop.encoded = number(data.get("encodedDataLength"))
                if data.get("didFail"):
                    hop.failed, hop.error = True, "failed"
            elif name == "ResourceMarkAsCached":
                hop.cached = True
            elif name == "ResourceChangePriority" and isinstance(data.get("priority"), str):
                hop.priority = data["priority"]
        elif name in ("MarkDOMContent", "MarkLoad") and (data.get("isMainFrame") or data.get("isOutermostMainFrame")):
            (dcl if name == "MarkDOMContent" else load).append(ts)
        elif name == "navigationStart" and nav is None:
            if data.get("isLoadingMainFrame") and data.get("documentLoaderURL"):
                nav = Navigation(ts, text(data.get("documentLoaderURL")))
    if nav is None and hops:
        main = next((h for h in hops if h.resource_type == "Document"), hops[0])
        nav = Navigation(main.issue, main.url)
    return hops, ChromePage(nav, tuple(dcl), tuple(load)), (wall_rt, wall_ts), odd


def _wall_offset(wall_rt: list[float], wall_ts: list[float]) -> tuple[float, str]:
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
    for offs, tightest in ((wall_rt, min), (wall_ts, max)):
        if offs:
            spread = max(offs) - min(offs)
            if best is None or spread < best[0]:
                best = (spread, tightest(offs))
    if best is None:
        return 0.0, "monotonic"
    return best[1], "wall"
