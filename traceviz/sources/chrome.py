"""Chrome's network records: what a DevTools trace and a protocol log both describe.

Chrome writes a request as a run of events sharing a ``requestId``: sent,
response, data, finished or failed, and, on a redirect, a second "sent"
under the same id.  ``trace.py`` and ``cdp.py`` fold those events into one
``ChromeRequest`` per hop (a redirect ends one hop and starts the next).
The folding is done while reading, not in the assembler, because it follows
the format's rules (which event opens a hop, what a repeated id means, which
field holds the time), and because it leaves the assembler one record per
request from every browser source, as a HAR entry is.

Times here are the file's own clock: seconds of Chrome's monotonic clock.
Each reader also says how to map that clock to epoch seconds
(``wall_offset``, ``clock``), without applying it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from traceviz.sources.jsonfile import number, text
from traceviz.sources.urls import host_and_port


def initiator_type(v: Any) -> str | None:
    """Chrome's ``initiator``: an object with a ``type`` (parser, script...) or, in some HARs, the type itself."""
    if isinstance(v, dict):
        return text(v.get("type"))
    return text(v)


@dataclass(frozen=True, slots=True)
class ChromeResponse:
    """A response as Chrome describes it (``Network.Response`` / ``ResourceReceiveResponse``).

    Fields:
      status: the status code as a number (NaN when absent or junk)
      protocol: Chrome's protocol text (``http/1.1``, ``h2``, ``h3``...) or None
      timing: Chrome's ResourceTiming object as written (ms after its
        ``requestTime``, -1 for a phase that did not happen), or None
      received: when the response event was logged (s, monotonic; NaN)
      connection_id: Chrome's socket id as text; None for 0 (no socket: cache, QUIC)
      remote_ip: the server's address, IPv6 unbracketed, or None
      remote_port: the server's port as a number (NaN)
      encoded_length: bytes received so far, as the response event says (NaN)
      connection_reused: Chrome's ``connectionReused`` when it is a bool, else None
      mime_type: the response's MIME type or None
      from_cache: served from the disk or memory cache, as the response says
      tls_protocol: ``securityDetails.protocol`` as written, or None
    """

    status: float
    protocol: str | None
    timing: dict | None
    received: float
    connection_id: str | None
    remote_ip: str | None
    remote_port: float
    encoded_length: float
    connection_reused: bool | None
    mime_type: str | None
    from_cache: bool
    tls_protocol: Any


def response_of(r: dict, received: float = math.nan) -> ChromeResponse:
    """A response object as written, logged at ``received``, into a ``ChromeResponse``."""
    conn_id = r.get("connectionId")
    conn_id = None if conn_id in (None, 0, "0", "") or isinstance(conn_id, bool) else str(conn_id)
    ip = r.get("remoteIPAddress") if isinstance(r.get("remoteIPAddress"), str) and r.get("remoteIPAddress") else None
    if ip and ip.startswith("["):
        ip = ip.strip("[]")
    security = r.get("securityDetails")
    reused = r.get("connectionReused")
    return ChromeResponse(
        status=number(r.get("status", r.get("statusCode"))),
        protocol=text(r.get("protocol")),
        timing=r.get("timing") if isinstance(r.get("timing"), dict) else None,
        received=received,
        connection_id=conn_id,
        remote_ip=ip,
        remote_port=number(r.get("remotePort")),
        encoded_length=number(r.get("encodedDataLength")),
        connection_reused=reused if isinstance(reused, bool) else None,
        mime_type=text(r.get("mimeType")),
        from_cache=bool(r.get("fromDiskCache") or r.get("fromCache") or r.get("fromMemoryCache")),
        tls_protocol=(security or {}).get("protocol") if isinstance(security, dict) else None,
    )


@dataclass(frozen=True, slots=True)
class ChromeRequest:
    """One request, or one hop of a redirect chain, from Chrome's events.

    Fields:
      request_id: Chrome's ``requestId``; an earlier hop of a redirect gets
        ``ID:redirectN`` (N counting the id's earlier hops)
      url, method: as the request was sent (None when absent or not text)
      host, port: the URL's host and port (its scheme's default when it names none), or None
      issue: when the page asked for it (s, monotonic; NaN)
      resource_type: Document, Script, WebSocket... or None
      priority: the last priority Chrome gave it, or None
      initiator: the initiator's type (parser, script, other...) or None
      frame: the frame id that asked, or None
      response: the ``ChromeResponse`` (for a redirected hop, the redirect), or None
      finish: when it finished or failed (s, monotonic); NaN while pending
      failed: whether Chrome reported it failed
      error: Chrome's error text for a failure, or None
      encoded: bytes received over the network as its last event says (NaN)
      cached: whether Chrome said it was served from the cache
    """

    request_id: str
    url: str | None
    method: str | None
    host: str | None
    port: int | None
    issue: float
    resource_type: str | None
    priority: str | None
    initiator: str | None
    frame: str | None
    response: ChromeResponse | None
    finish: float
    failed: bool
    error: str | None
    encoded: float
    cached: bool


@dataclass(frozen=True, slots=True)
class Navigation:
    """The page's main request: when it was issued (s, monotonic; NaN) and its URL (or None)."""

    start: float
    url: str | None


@dataclass(frozen=True, slots=True)
class ChromePage:
    """The page-level facts of a load.

    Fields:
      navigation: the main-frame navigation, or None when the file names none
      dom_content_loaded: each main-frame DOMContentLoaded stamp (s, monotonic), in file order
      load: each main-frame load stamp (s, monotonic), in file order
    """

    navigation: Navigation | None
    dom_content_loaded: tuple[float, ...]
    load: tuple[float, ...]


class Hop:
    """A request being folded from events; ``freeze`` makes it a ``ChromeRequest``."""

    __slots__ = ("rid", "url", "method", "issue", "resource_type", "priority", "initiator",
                 "response", "finish", "failed", "error", "encoded", "frame", "cached")

    def __init__(self, rid: str, url: Any, method: Any, issue: float):
        self.rid, self.url, self.method, self.issue = rid, text(url), text(method), issue
        self.resource_type = self.priority = self.initiator = self.frame = None
        self.response: ChromeResponse | None = None
        self.finish = math.nan
        self.failed = False
        self.error = None
        self.encoded = math.nan
        self.cached = False

    def redirected(self, earlier: int) -> None:
        """This hop ended in a redirect: it keeps its id with ``:redirectN`` (``earlier``: the
        id's hops that redirected before it), the next hop takes the id."""
        self.rid = f"{self.rid}:redirect{earlier}"

    def freeze(self) -> ChromeRequest:
        host, port = host_and_port(self.url)
        return ChromeRequest(
            request_id=self.rid, url=self.url, method=self.method, host=host, port=port,
            issue=self.issue, resource_type=self.resource_type, priority=self.priority,
            initiator=self.initiator, frame=self.frame, response=self.response, finish=self.finish,
            failed=self.failed, error=self.error, encoded=self.encoded, cached=self.cached)

