"""A request's host and port, from its URL as a browser export writes it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def host_of(url: Any, authority: str | None = None) -> str | None:
    """The URL's host; for a relative URL, the host named by ``authority`` (a Host header's value)."""
    if isinstance(url, str):
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        if host:
            return host
    if authority is None:
        return None
    try:
        return urlsplit("//" + authority).hostname
    except ValueError:
        return None


def port_of(url: Any) -> int | None:
    """The URL's port, or its scheme's default one."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        return parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
