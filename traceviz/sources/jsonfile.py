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
body as soon as it is parsed (see ``har.py``), after ``Elider`` has cut the
long bodies out of the bytes as they were read: orjson would hold every body
until the end, and a HAR's bodies are most of its bytes (measured: peak 5x
the file's size with orjson, under 3x with the hook; parsing is not what
makes a big HAR slow -- the per-entry records and rows are).
"""

from __future__ import annotations

import codecs
import json
import os
import math
import re
import zlib
from typing import Any, Callable

from traceviz import limits
from traceviz.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
# Decompressed JSON larger than ``limits.MAX_JSON_BYTES`` is refused rather than
# read: a gzip header may claim anything, and a small file can inflate without bound.
SNIFF_BYTES = 64 << 10

_JSONP = re.compile(rb"\A\s*([A-Za-z_$][\w$.]*)\s*\(")


def read_bytes(path: str, limit: int | None = None, drop: bytes | None = None) -> tuple[bytes | bytearray, bool]:
    """The file's bytes, gunzipped when they start with gzip's magic; (data, was_gzip).

    ``drop`` names a key whose long string values (bodies) are cut to ``""``
    while the file is read, so they are never held (see ``Elider``).
    """
    limit = limits.get("MAX_JSON_BYTES") if limit is None else limit
    if drop is not None and Elider.available():
        return _read_dropping(path, limit, drop)
    try:
        with open(path, "rb") as f:
            # Read what the file holds (never ask for ``limit`` bytes: that allocates them).
            size = os.fstat(f.fileno()).st_size
            raw = f.read(min(size, limit) + 1 if size else limit + 1)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    if raw[:2] != GZIP_MAGIC:
        if len(raw) > limit:
            raise InputError(path, limits.refusal("MAX_JSON_BYTES", "JSON text larger than"))
        return raw, False
    return _gunzip(path, raw, limit), True


_CHUNK = 1 << 20


def _read_dropping(path: str, limit: int, key: bytes) -> tuple[bytearray, bool]:
    """``read_bytes`` a chunk at a time (inflating as it goes), bodies dropped on the way."""
    elider = Elider(key)
    total = 0
    try:
        with open(path, "rb") as f:
            first = f.read(_CHUNK)
            gz = first[:2] == GZIP_MAGIC
            d = zlib.decompressobj(16 + zlib.MAX_WBITS) if gz else None
            pending = first
            while pending:
                if gz:
                    piece = d.decompress(pending, _CHUNK)
                    pending = d.unconsumed_tail or (b"" if d.eof else f.read(_CHUNK))
                else:
                    piece, pending = pending, f.read(_CHUNK)
                total += len(piece)
                if total > limit:
                    what = "gzip data inflates past" if gz else "JSON text larger than"
                    raise InputError(path, limits.refusal("MAX_JSON_BYTES", what))
                elider.feed(piece)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    except zlib.error as exc:
        raise InputError(path, f"broken gzip data: {exc}") from None
    return elider.close(), gz


class Elider:
    """Cuts long string values of one key out of JSON text that arrives in chunks.

    ``"text": "<a megabyte of body>"`` becomes ``"text": ""`` as the bytes go
    by, so a HAR's bodies (most of a big HAR) are never held, as bytes or as
    text.  A key is only matched where JSON allows one (an unescaped quote
    cannot occur inside a string), strings are skipped whole with possessive
    patterns (no backtracking, linear time), and a value shorter than
    ``shortest`` is kept as it was.  Hand-written: no JSON library filters a
    stream like this without parsing it into objects.
    """

    def __init__(self, key: bytes, shortest: int = 256):
        self.key = re.compile(rb'"' + re.escape(key) + rb'"\s*:\s*"')
        self.body = re.compile(rb'(?:[^"\\]++|\\.)*+', re.S)     # a string's content, up to its end or the buffer's
        self.shortest = shortest
        self.out = bytearray()         # grown in place: never a list of pieces and their join
        self.carry = b""
        self.skipping = False          # inside a long value being dropped
        self.escaped = False           # ... whose last chunk ended in a lone backslash

    @staticmethod
    def available() -> bool:
        try:
            re.compile(rb"a*+")        # possessive quantifiers: Python 3.11 and later
        except re.error:
            return False
        return True

    def feed(self, chunk: bytes) -> None:
        if self.skipping:
            start = 1 if self.escaped and chunk else 0
            self.escaped = False
            end = self.body.match(chunk, start).end()
            if end == len(chunk) or (end == len(chunk) - 1 and chunk[end] == 0x5C):
                self.escaped = end == len(chunk) - 1
                return                                   # all of it inside the dropped value
            self.skipping = False
            self.out += b'"'
            chunk = chunk[end + 1:]
        buf = self.carry + chunk if self.carry else chunk
        self.carry = b""
        pos = 0
        while True:
            m = self.key.search(buf, pos)
            if m is None:
                keep = max(pos, len(buf) - 256)          # a key may be cut at the chunk's end
                self.out += buf[pos:keep]
                self.carry = buf[keep:]
                return
            end = self.body.match(buf, m.end()).end()
            if end < len(buf) and buf[end] == 0x22:      # the value closes in this buffer
                long = end - m.end() >= self.shortest
                self.out += buf[pos:m.end()] if long else buf[pos:end]
                pos = end
                continue
            if len(buf) - m.end() >= self.shortest:     # long and still open: drop as it comes
                self.out += buf[pos:m.end()]
                self.skipping = True
                self.escaped = end == len(buf) - 1 and buf[end] == 0x5C
                return
            self.out += buf[pos:m.start()]          # short so far: wait for more
            self.carry = buf[m.start():]
            return

    def close(self) -> bytes:
        if self.skipping:
            self.out += b'"'                        # the file ended inside a body: still JSON's to judge
        self.out += self.carry
        data, self.out = self.out, bytearray()
        return data


def _gunzip(path: str, raw: bytes, limit: int) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise InputError(path, f"broken gzip data: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise InputError(path, limits.refusal("MAX_JSON_BYTES", "gzip data inflates past"))
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


def parse(path: str, object_hook: Callable[[dict], Any] | None = None,
          drop: bytes | None = None) -> tuple[Any, dict]:
    """Parse a JSON-ish browser export; returns (value, facts about the wrapping).

    ``object_hook``: the stdlib parser's, called on every object (orjson is
    used only without one).  ``drop``: a key whose long values are cut while
    reading (``read_bytes``).
    """
    data, gz = read_bytes(path, drop=drop)
    return parse_bytes(path, data, gz, object_hook)


def parse_bytes(path: str, data: bytes, gz: bool = False,
                object_hook: Callable[[dict], Any] | None = None) -> tuple[Any, dict]:
    """``parse`` of bytes already read (``path`` only names them in messages).

    The nesting is checked on the bytes, before either parser sees them; on the
    stdlib's path the bytes are let go as soon as they are text, so a big
    export is held twice only while it is being decoded."""
    if not data or data.isspace():
        raise InputError(path, "empty file")
    if not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        too_deep = limits.json_too_deep(data)      # (UTF-16: the parser's own recursion limit guards)
        if too_deep:
            raise InputError(path, too_deep)
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
        return _loads(text, object_hook)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"broken JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InputError(path, limits.refusal("MAX_JSON_DEPTH", "JSON nested deeper than")) from None


def _loads(text: str, object_hook):
    """``json.loads``; an integer of thousands of digits becomes a float (inf) instead of
    stopping the parse (Python refuses to convert more than 4300 digits to an int)."""
    try:
        return json.loads(text, object_hook=object_hook)
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError) or "digits" not in str(exc):
            raise
    # Rare: parse again, the slow way only for integers (a C parse is kept for the rest).
    return json.loads(text, object_hook=object_hook, parse_int=_big_int)


def _big_int(s: str) -> int | float:
    return int(s) if len(s) < 4000 else float(s)


def _parse_quickly(data: bytes) -> tuple[Any, str | None, int] | None:
    """(value, JSONP callback, text length) by orjson, straight from UTF-8 bytes; None when
    orjson is absent, the bytes are not plain UTF-8 JSON, or orjson refuses them (a number
    past 64 bits goes to the stdlib parser too)."""
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
