"""HAR 1.1/1.2 reader: a file in, the log's pages and entries out.

Chrome/WebInspector, Firefox, Safari, WebPageTest, Playwright, Charles and
Insomnia all write the same skeleton with different optional and ``_custom``
fields; this reader keeps every entry as the dict it was and leaves the
meaning to ``traceviz.decode.browser``.  Bodies (``content.text``,
``postData.text``) are dropped while parsing: nothing here needs them and
they are most of a large HAR's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from traceviz.errors import InputError, describe
from traceviz.sources import browser


@dataclass
class HarLog:
    path: str
    version: str | None
    creator: dict
    browser: dict
    pages: list[dict]
    entries: list[dict]
    compressed: bool = False
    jsonp: str | None = None
    size: int = 0
    warnings: list[str] = field(default_factory=list)


def _drop_bodies(obj: dict) -> dict:
    # content / postData objects carry the body in "text"; keep its length only.
    if "text" in obj and "mimeType" in obj:
        text = obj.pop("text")
        if isinstance(text, str):
            obj["_text_length"] = len(text)
    return obj


def read_har(path: str) -> HarLog:
    value, facts = browser.parse(str(path), object_hook=_drop_bodies)
    return har_from_json(str(path), value, facts)


def har_from_json(path: str, value: Any, facts: dict | None = None) -> HarLog:
    """Check the skeleton of an already parsed HAR and split it into parts."""
    facts = facts or {}
    log = value.get("log") if isinstance(value, dict) else None
    if not isinstance(log, dict):
        raise InputError(path, 'not a HAR file: no "log" object')
    entries = log.get("entries")
    if not isinstance(entries, list):
        raise InputError(path, 'not a HAR file: "log" has no "entries" list')
    warnings = []
    good = []
    for i, e in enumerate(entries):
        if isinstance(e, dict) and isinstance(e.get("request"), dict):
            good.append(e)
        else:
            warnings.append(describe(path, f"entry {i + 1}: no request object; skipped"))
    pages = log.get("pages") if isinstance(log.get("pages"), list) else []
    pages = [p for p in pages if isinstance(p, dict)]
    return HarLog(
        path=path,
        version=_str(log.get("version")),
        creator=log.get("creator") if isinstance(log.get("creator"), dict) else {},
        browser=log.get("browser") if isinstance(log.get("browser"), dict) else {},
        pages=pages,
        entries=good,
        compressed=facts.get("compressed", False),
        jsonp=facts.get("jsonp"),
        size=facts.get("size", 0),
        warnings=warnings,
    )


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None
