"""A JSON file in, one parsed value out, and which browser export it is.

Shared by the HAR, DevTools trace and DevTools protocol-log readers: gzip
(inflated within a bound), a byte-order mark, a JSONP wrapper (``.harp``),
broken JSON reported with its line and column, nesting too deep to read.
``classify`` names the format from the parsed structure, ``sniff_json`` from
the first bytes, ``what_it_is`` says what a file is when it is none of them.

Two parsers.  DevTools traces and protocol logs are read by orjson when it is
installed: straight from the UTF-8 bytes (no decoded copy of the text), a few
times quicker than ``json.loads``; whatever orjson refuses goes to the stdlib
parser, so a broken file is reported as before (line and column).  A HAR is
read by ``json.loads`` with the HAR reader's object hook, which drops each
body as soon as it is parsed (see ``har.py``): orjson would hold every body
until the end, and a HAR's bodies are most of its bytes (measured: peak 5x
the file's size with orjson, under 3x with the hook; parsing is not what
makes a big HAR slow -- the per-entry records and rows are).
"""

from __future__ import annotations

import codecs
import json
import math
import re
import zlib
from typing import Any, Callable

from traceviz.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
# Decompressed JSON larger than this is refused rather than read: a gzip header
# may claim anything, and a small file can inflate without bound.
MAX_JSON_BYTES = 2 << 30
SNIFF_BYTES = 64 << 10

_JSONP = re.compile(rb"\A\s*([A-Za-z_$][\w$.]*)\s*\(")


def read_bytes(path: str, limit: int | None = None) -> tuple[bytes, bool]:
    """The file's bytes, gunzipped when they start with gzip's magic; (data, was_gzip)."""
    limit = MAX_JSON_BYTES if limit is None else limit
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    if raw[:2] != GZIP_MAGIC:
        if len(raw) > limit:
            raise InputError(path, f"larger than {limit >> 20} MiB of JSON; refusing to load")
        return raw, False
    return _gunzip(path, raw, limit), True


def _gunzip(path: str, raw: bytes, limit: int) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise InputError(path, f"broken gzip data: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise InputError(path, f"inflates to more than {limit >> 20} MiB; refusing to load")
    return out


def head_bytes(path: str, n: int = SNIFF_BYTES) -> bytes:
    """The first ``n`` (decompressed) bytes, bounded whatever the file claims."""
    try:
        with open(path, "rb") as f:
            raw = f.read(n if n > 4096 else 4096)
            if raw[:2] != GZIP_MAGIC:
                return raw[:n]
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = d.decompress(raw, n)
            while len(out) < n:
                chunk = d.unconsumed_tail or f.read(65536)
                if not chunk:
                    break
                out += d.decompress(chunk, n - len(out))
            return out
    except (OSError, zlib.error) as exc:
        raise InputError(path, f"cannot read: {exc}") from None


def decode_text(path: str, data: bytes) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with a BOM, as Windows tools save HARs."""
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(path, f"not UTF-8 text (line {line}): {exc.reason}") from None


def unwrap_jsonp(text: str) -> tuple[str, str | None]:
    """``cb({...})`` -> ``   {...} `` with the same length, so line/column stay true."""
    m = _JSONP.match(text.encode("utf-8", "ignore")[:256])
    if not m:
        return text, None
    head = text.index("(") + 1
    tail = text.rstrip().rstrip(";").rstrip()
    if not tail.endswith(")"):
        return text, None
    end = len(tail) - 1
    return " " * head + text[head:end] + " " * (len(text) - end), m.group(1).decode()


def parse(path: str, object_hook: Callable[[dict], Any] | None = None) -> tuple[Any, dict]:
    """Parse a JSON-ish browser export; returns (value, facts about the wrapping).

    ``object_hook``: the stdlib parser's, called on every object (orjson is
    used only without one)."""
    data, gz = read_bytes(path)
    if not data.strip():
        raise InputError(path, "empty file")
    quick = _parse_quickly(data) if object_hook is None else None
    if quick is not None:
        value, callback, size = quick
        return value, {"compressed": gz, "jsonp": callback, "size": size}
    text = decode_text(path, data)
    del data
    text, callback = unwrap_jsonp(text)
    value = loads(path, text, object_hook)
    return value, {"compressed": gz, "jsonp": callback, "size": len(text)}


def loads(path: str, text: str, object_hook: Callable[[dict], Any] | None = None) -> Any:
    """``json.loads`` with its failures as one-line ``InputError``s naming ``path``."""
    try:
        return json.loads(text, object_hook=object_hook)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"broken JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InputError(path, "JSON nested too deeply to read") from None


def _parse_quickly(data: bytes) -> tuple[Any, str | None, int] | None:
    """(value, JSONP callback, text length) by orjson, straight from UTF-8 bytes; None when
    orjson is absent, the bytes are not plain UTF-8 JSON, or orjson refuses them."""
    try:
        import orjson
    except ImportError:
        return None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None
    size = _characters(data)
    callback = None
    m = _JSONP.match(data[:256])
    if m:
        tail = data.rstrip().rstrip(b";").rstrip()
        if not tail.endswith(b")"):
            return None
        data, callback = data[data.index(b"(") + 1:len(tail) - 1], m.group(1).decode()
    try:
        value = orjson.loads(data)
    except (orjson.JSONDecodeError, RecursionError):
        return None                # the stdlib parser says where the file is broken
    return value, callback, size


_CONTINUATION = bytes(range(0x80, 0xC0))


def _characters(data: bytes, chunk: int = 16 << 20) -> int:
    """How many characters UTF-8 ``data`` holds (its bytes less the continuation
    bytes), without decoding a copy of it all."""
    if data.isascii():
        return len(data)
    view = memoryview(data)
    return sum(len(bytes(view[i:i + chunk]).translate(None, _CONTINUATION)) for i in range(0, len(data), chunk))


def number(v: Any) -> float:
    """A number from a JSON field; NaN for absent, negative (-1: "does not apply") or junk.

    HAR and Chrome both write -1 for a time or size that does not apply;
    some exporters write numbers as strings.
    """
    v = signed(v)
    return v if v >= 0 else math.nan


def signed(v: Any) -> float:
    """A number from a JSON field (or written as a string), negative ones too; NaN for junk."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                return math.nan
        else:
            return math.nan
    try:
        v = float(v)
    except OverflowError:          # an integer of hundreds of digits: no time or size
        return math.nan
    return v if math.isfinite(v) else math.nan


def text(v: Any) -> str | None:
    """A field's string, or None for anything else."""
    return v if isinstance(v, str) else None


def classify(value: Any) -> str | None:
    """``har``, ``devtools-trace``, ``devtools-log``, ``qlog``, ``netlog`` or None, from the parsed structure."""
    if isinstance(value, dict):
        log = value.get("log")
        if isinstance(log, dict) and isinstance(log.get("entries"), list):
            return "har"
        if isinstance(value.get("traceEvents"), list):
            return "devtools-trace"
        if "qlog_version" in value or "qlog_format" in value or "file_schema" in value:
            return "qlog"
        if isinstance(value.get("constants"), dict) and isinstance(value.get("events"), list):
            return "netlog"
        for key in ("messages", "log", "devtoolsLog", "defaultPass"):
            if isinstance(value.get(key), list) and _looks_like_cdp(value[key]):
                return "devtools-log"
        return None
    if isinstance(value, list) and value:
        if _looks_like_trace(value):
            return "devtools-trace"
        if _looks_like_cdp(value):
            return "devtools-log"
    return None


def _sample(items: list, n: int = 50) -> list:
    return [x for x in items[:n] if isinstance(x, dict)]


def _looks_like_trace(items: list) -> bool:
    sample = _sample(items)
    return bool(sample) and sum(1 for e in sample if "ph" in e and "name" in e) * 2 > len(sample)


def _looks_like_cdp(items: list) -> bool:
    sample = _sample(items)
    if not sample:
        return False
    hits = 0
    for m in sample:
        if isinstance(m.get("method"), str) and "." in m["method"]:
            hits += 1
        elif isinstance(m.get("message"), (str, dict)):   # chromedriver performance log
            hits += 1
    return hits * 2 > len(sample)


_SNIFF = (
    (re.compile(rb'"log"\s*:\s*\{'), "har"),
    (re.compile(rb'"(qlog_version|qlog_format|file_schema)"\s*:'), "qlog"),
    (re.compile(rb'\A\{\s*"constants"\s*:\s*\{'), "netlog"),
    (re.compile(rb'"logEventTypes"\s*:\s*\{'), "netlog"),
    (re.compile(rb'"traceEvents"\s*:\s*\['), "devtools-trace"),
    (re.compile(rb'"ph"\s*:\s*"'), "devtools-trace"),
    (re.compile(rb'"method"\s*:\s*"(Network|Page|Target|Runtime|Security|Emulation|Log|Inspector)\.'), "devtools-log"),
    (re.compile(rb'\\"method\\"\s*:\s*\\"(Network|Page)\.'), "devtools-log"),
)


def sniff_json(path: str) -> str | None:
    """Guess the kind from the first 64 KiB, without parsing the whole file.

    A cheap first look, before parsing; ``classify`` still decides from the
    parsed structure.
    """
    head = head_bytes(path)
    head = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if head[:1] not in (b"{", b"[") and not _JSONP.match(head[:256]):
        return None
    found = [(m.start(), kind) for rx, kind in _SNIFF for m in [rx.search(head)] if m]
    return min(found)[1] if found else None


def what_it_is(value: Any) -> str:
    """Name what a parsed JSON file is when ``classify`` found no browser export in it."""
    if not isinstance(value, (dict, list)):
        return f"a JSON {type(value).__name__}, not an object"
    if not value:
        return "an empty JSON " + ("object" if isinstance(value, dict) else "array")
    if isinstance(value, dict) and ("qlog_version" in value or "qlog_format" in value):
        return "a qlog file (QUIC events), not a HAR or DevTools export"
    if isinstance(value, dict) and "constants" in value and "events" in value:
        return "a Chrome NetLog, not a HAR or DevTools export"
    return "JSON that is not a HAR, DevTools trace or DevTools protocol log"
