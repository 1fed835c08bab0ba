"""A request's host and port, from its URL (or Host header) as a browser export writes it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def host_and_port(url: Any) -> tuple[str | None, int | None]:
    """The URL's host and port (its scheme's default when it names none); None for what it lacks.

    One parse for both: a large HAR has tens of thousands of URLs.
    """
    if not isinstance(url, str):
        return None, None
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
