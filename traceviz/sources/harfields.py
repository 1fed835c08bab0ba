"""A HAR read by msgspec: only the fields the records need, straight from the file's bytes.

Most of a big HAR's bytes are bodies, header lists and certificate details
that no table reads.  msgspec decodes JSON into typed structs in one C
pass and steps over every field a struct does not name without making an
object of it, so a HAR is decoded here into the few fields of ``_Entry``
from a memory map of the file: nothing is cut by hand, and no text or body
is ever held as a Python object.  (A Chrome-like 868 MB HAR: 1.1 s, where
cutting bodies out of the text and parsing the rest with the json module
took 4.4 s.)

The plain reader (``jsonfile.parse`` with ``har.drop_bodies``) stays the
only judge of a file it would refuse or read differently: ``read`` returns
None, and the caller reads the file that way, whenever msgspec refuses
the bytes (broken or truncated JSON, ``NaN``, a lone surrogate, a number
past a double, a value of another type where a struct is expected: a
request that is not an object) or the plain reader would refuse them before
parsing (nested deeper than MAX_JSON_DEPTH, not UTF-8).  So a file read
here gives the records, pages and warnings the plain reader gives.
"""

from __future__ import annotations

import codecs
import os
import sys
from typing import Any, Union

from traceviz import _forks, _tuning, limits
from traceviz.sources import jsonfile
from traceviz.sources.har import HarLog, har_log, record
from traceviz.sources.mapping import map_file, release_pages

try:
    import msgspec
except ImportError:              # an install without it reads every HAR the plain way
    msgspec = None

# A file this big has the plain reader's pre-parse checks run by a forked child, beside the decode.
CHECK_ASIDE_BYTES = 64 << 20


if msgspec is not None:
    # gc=False: a decoded struct holds text, numbers, a timings dict and raw bytes, never a way
    # back to itself, so the cyclic collector need not track them (decoding 100k entries with the
    # collector running: 0.85 -> 0.67 s; a load pauses it, ``_tuning.loading``, and gains less).
    class _Content(msgspec.Struct, gc=False):
        mimeType: Any = None

    class _Request(msgspec.Struct, gc=False):
        url: Any = None
        method: Any = None
        httpVersion: Any = None
        headersSize: Any = None
        bodySize: Any = None
        headers: msgspec.Raw = msgspec.Raw(b"null")    # decoded only for a relative URL's host

    class _Response(msgspec.Struct, gc=False):
        status: Any = None
        httpVersion: Any = None
        headersSize: Any = None
        bodySize: Any = None
        _transferSize: Any = None
        content: Union[_Content, None] = None
        _error: Any = None
        statusText: Any = None

    class _Security(msgspec.Struct, gc=False):
        protocol: Any = None

    class _Initiator(msgspec.Struct, gc=False):
        type: Any = None

    class _Entry(msgspec.Struct, gc=False):
        startedDateTime: Any = None
        time: Any = None
        timings: Any = None
        request: Union[_Request, None] = None
        response: Union[_Response, None] = None
        _protocol: Any = None
        connection: Any = None
        _connection: Any = None
        _socket: Any = None
        serverIPAddress: Any = None
        _ip_addr: Any = None
        _serverPort: Any = None
        _securityDetails: Union[_Security, None] = None
        _requestId: Any = None
        _request_id: Any = None
        pageref: Any = None
        _resourceType: Any = None
        _priority: Any = None
        _initiator: Union[_Initiator, str, None] = None    # Chrome's stack traces are stepped over
        _fromCache: Any = None

    class _Log(msgspec.Struct, gc=False):
        entries: list[_Entry]
        version: Any = None
        creator: Any = None
        browser: Any = None
        pages: Any = None

    class _Har(msgspec.Struct, gc=False):
        log: _Log

    _DECODER = msgspec.json.Decoder(_Har)
    _ANY = msgspec.json.Decoder()


def read(path: str) -> HarLog | None:
    """The HAR at ``path`` read through msgspec, or None when the plain reader must read it
    (also for a gzipped file, which the plain reader cuts as it inflates, never holding it whole).

    Raises ``InputError`` only where the plain reader would raise the same (too many entries)."""
    if msgspec is None:
        return None
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0 or size > limits.get("MAX_JSON_BYTES"):
                return None
            if f.read(2) == jsonfile.GZIP_MAGIC:
                return None      # inflated whole it would be held whole: the plain reader cuts as it inflates
            # Mapped under a lease (a file truncated meanwhile cannot kill us), never closed here:
            # msgspec's ``Raw`` values point into the map, which goes when they do.
            data = map_file(f)
    except (OSError, ValueError):
        return None
    return _read_bytes(path, data)


def _read_bytes(path: str, data) -> HarLog | None:
    view = memoryview(data)
    text = jsonfile.unwrap_jsonp_bytes(view[3:] if view[:3] == codecs.BOM_UTF8 else view)
    if text is None:
        return None
    body, callback = text
    har = _decode(body, view)
    if har is None:
        return None
    release_pages(data)        # the file's pages leave our resident memory; a header list faults its own in
    log = har.log
    limits.check_records(path, len(log.entries), "entries")
    try:
        entries = [_record(e) for e in log.entries]
    except (msgspec.MsgspecError, RecursionError):    # a header list msgspec cannot decode
        return None
    facts = {"compressed": False, "jsonp": callback, "size": len(body)}
    return har_log(path, log.version, log.creator, log.browser, log.pages, entries, facts)


def _decode(body: memoryview, whole: memoryview):
    """msgspec's ``_Har`` of ``body``, or None when msgspec refuses it or the plain reader
    would refuse ``whole`` before parsing it (nested too deep, not UTF-8).  A big file's
    UTF-8 is checked by a child, beside the decode."""
    child = None
    if len(whole) >= CHECK_ASIDE_BYTES and _tuning.workers(2, least=2) >= 2:
        child = _forks.start(lambda _: jsonfile.not_utf8(whole), None)
    har = _decode_within_depth(body)
    got = _forks.collect(*child) if child is not None else None
    if har is None:
        return None
    refused = got[1] if got is not None and got[0] == "ok" else jsonfile.not_utf8(whole)
    return None if refused else har


def _decode_within_depth(body: memoryview):
    """``_DECODER.decode(body)``, refusing (None) exactly what nests deeper than MAX_JSON_DEPTH.

    msgspec spends one level of Python's recursion limit per level of
    nesting, in a struct, a list or a value it steps over.  So the levels
    it allows from this frame are measured on a small probe, and the limit
    is moved by the difference for the decode: the plain reader's depth
    rule without a pass over the bytes (which took longer than the decode).
    """
    before = sys.getrecursionlimit()
    low, high = 0, before               # the deepest probe msgspec reads from here, by bisection
    while low < high:
        mid = (low + high + 1) // 2
        try:
            _ANY.decode(b"[" * mid + b"]" * mid)
            low = mid
        except RecursionError:
            high = mid - 1
    try:
        # Never deeper than Python allows by default (the plain reader cannot read deeper either).
        sys.setrecursionlimit(before - low + min(low, limits.get("MAX_JSON_DEPTH")))
        return _DECODER.decode(body)
    except (msgspec.MsgspecError, RecursionError, ValueError):
        return None
    finally:
        sys.setrecursionlimit(before)


def _record(e: _Entry):
    """The entry's ``HarEntry``, or None without a request object (skipped with a warning)."""
    req = e.request
    if req is None:
        return None
    resp = e.response
    content = resp.content if resp is not None else None
    security = e._securityDetails
    initiator = e._initiator
    headers = req.headers
    return record(
        e.startedDateTime, e.time, e.timings,
        req.url, req.method, req.httpVersion, req.headersSize, req.bodySize,
        lambda: msgspec.json.decode(headers),
        *((resp.status, resp.httpVersion, resp.headersSize, resp.bodySize, resp._transferSize)
          if resp is not None else (None,) * 5),
        content.mimeType if content is not None else None,
        *((resp._error, resp.statusText) if resp is not None else (None, None)),
        e._protocol, e.connection, e._connection, e._socket,
        e.serverIPAddress, e._ip_addr, e._serverPort,
        security.protocol if security is not None else None,
        e._requestId or e._request_id, e.pageref, e._resourceType, e._priority,
        jsonfile.text(initiator.type if type(initiator) is _Initiator else initiator), e._fromCache)
