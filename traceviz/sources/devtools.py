"""DevTools readers: trace-event files and protocol (CDP) logs in, records out.

- Trace events: the Performance panel's export, ``{"traceEvents": [...]}`` or a
  bare array, maybe gzipped.  Only the network and page-milestone events are
  kept; a trace holds tens of thousands of others.
- Protocol logs: ``[{"method": "Network.requestWillBeSent", "params": {...}}, ...]``
  as Lighthouse's ``devtoolslog.json`` and sitespeed's chrome-har perf logs
  write them, or chromedriver's performance log whose ``message`` is a JSON
  string wrapping ``{"message": {"method", "params"}}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from traceviz.errors import InputError, describe
from traceviz.sources import browser

NETWORK_EVENTS = frozenset({
    "ResourceWillSendRequest", "ResourceSendRequest", "ResourceReceiveResponse",
    "ResourceReceivedData", "ResourceFinish", "ResourceChangePriority", "ResourceMarkAsCached",
})
PAGE_EVENTS = frozenset({
    "MarkDOMContent", "MarkLoad", "navigationStart", "domContentLoadedEventEnd",
    "loadEventEnd", "TracingStartedInBrowser",
})


@dataclass
class TraceLog:
    path: str
    events: list[dict]            # network and page events, in file order
    total_events: int
    metadata: dict
    compressed: bool = False
    size: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class ProtocolLog:
    path: str
    messages: list[dict]          # {"method": str, "params": dict}, in file order
    total_messages: int
    compressed: bool = False
    size: int = 0
    warnings: list[str] = field(default_factory=list)


def read_trace(path: str) -> TraceLog:
    value, facts = browser.parse(str(path))
    return trace_from_json(str(path), value, facts)


def trace_from_json(path: str, value: Any, facts: dict | None = None) -> TraceLog:
    facts = facts or {}
    if isinstance(value, dict) and isinstance(value.get("traceEvents"), list):
        events, metadata = value["traceEvents"], value.get("metadata")
    elif isinstance(value, list):
        events, metadata = value, None
    else:
        raise InputError(path, "not a DevTools trace: no traceEvents list")
    wanted = NETWORK_EVENTS | PAGE_EVENTS
    kept = [e for e in events if isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"] in wanted]
    return TraceLog(path=path, events=kept, total_events=len(events),
                    metadata=metadata if isinstance(metadata, dict) else {},
                    compressed=facts.get("compressed", False), size=facts.get("size", 0))


def read_protocol_log(path: str) -> ProtocolLog:
    value, facts = browser.parse(str(path))
    return protocol_log_from_json(str(path), value, facts)


def protocol_log_from_json(path: str, value: Any, facts: dict | None = None) -> ProtocolLog:
    facts = facts or {}
    items = value
    if isinstance(value, dict):
        items = next((value[k] for k in ("messages", "log", "devtoolsLog", "defaultPass")
                      if isinstance(value.get(k), list)), None)
    if not isinstance(items, list):
        raise InputError(path, "not a DevTools protocol log: no list of messages")
    warnings: list[str] = []
    messages = []
    for i, item in enumerate(items):
        msg = _message(item)
        if msg is None:
            if len(warnings) < 20:
                warnings.append(describe(path, f"message {i + 1}: not a CDP event; skipped"))
            continue
        messages.append(msg)
    return ProtocolLog(path=path, messages=messages, total_messages=len(items),
                       compressed=facts.get("compressed", False), size=facts.get("size", 0),
                       warnings=warnings)


def _message(item: Any) -> dict | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("method"), str):
        params = item.get("params")
        return {"method": item["method"], "params": params if isinstance(params, dict) else {}}
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
            return {"method": inner["method"], "params": params if isinstance(params, dict) else {}}
    return None
