"""A request's host and port, from its URL (or Host header) as a browser export writes it."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

# scheme://authority, then the path, query or fragment (or the end).  Nothing in it that
# ``urlsplit`` would strip or drop first (spaces, controls), so its origin parses the same.
_ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#\x00-\x20\x7f]*(?=[/?#]|\Z)")


def host_and_port(url: Any) -> tuple[str | None, int | None]:
    """The URL's host and port (its scheme's default when it names none); None for what it lacks.

    One parse for both, and one per origin: a large HAR has tens of thousands
    of URLs on a few dozen origins.
    """
    if not isinstance(url, str):
        return None, None
    m = _ORIGIN.match(url)
    if m is not None and "\t" not in url and "\n" not in url and "\r" not in url:
        return _origin(m.group())
    return _split(url)


@lru_cache(maxsize=4096)
def _origin(origin: str) -> tuple[str | None, int | None]:
    return _split(origin)


def _split(url: str) -> tuple[str | None, int | None]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None, None
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:          # a port out of range
        port = None
    return parts.hostname, port


def authority_host(authority: str | None) -> str | None:
    """The host in a Host / ``:authority`` header's value, which names the host of a relative URL."""
    if authority is None:
        return None
    try:
        return urlsplit("//" + authority).hostname
    except ValueError:
        return None


def path_of(url: Any) -> str:
    """The path and query of an absolute URL (``http://h/a?b`` -> ``/a?b``); other text as it is.

    What a proxy keeps when it passes a request on, so what its two legs share."""
    text = str(url or "")
    if "://" not in text:
        return text
    rest = text.split("://", 1)[1]
    return rest[rest.find("/"):] if "/" in rest else "/"
