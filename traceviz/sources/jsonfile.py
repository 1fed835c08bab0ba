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
read by msgspec where it can (``harfields``); what msgspec gives way on is
read by ``json.loads`` with the HAR reader's object hook, which makes each
entry a record as soon as it is parsed (see ``har.py``), after ``Elider`` has
cut the bodies and the header, cookie and query lists out of the bytes as
they were read (a big plain file in two halves, by two processes).  orjson
would hold every object until the end: measured on the cut text of 100k
entries, no quicker than the hook (2.6 s against 2.7 s) and four times the
memory.
"""

from __future__ import annotations

import codecs
import json
import os
import math
import re
import zlib
from dataclasses import dataclass
from json.decoder import scanstring
from typing import Any, Callable

from traceviz import _forks, _tuning, limits
from traceviz.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
# Decompressed JSON larger than ``limits.MAX_JSON_BYTES`` is refused rather than
# read: a gzip header may claim anything, and a small file can inflate without bound.
SNIFF_BYTES = 64 << 10

_JSONP = re.compile(rb"\A\s*([A-Za-z_$][\w$.]*)\s*\(")


def read_bytes(path: str, limit: int | None = None, drop: Cuts | None = None) -> tuple[bytes | bytearray, bool]:
    """The file's bytes, gunzipped when they start with gzip's magic; (data, was_gzip).

    ``drop`` says what is cut out while the file is read (long bodies, header
    lists), so it is never held (see ``Elider``).
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


# A plain (not gzipped) file this big is cut in two at a key and each half read by its own
# process: the cutting is pure Python, and a second core halves its time.
SPLIT_BYTES = 64 << 20
# A key every HAR entry has: where the second half starts.  Its quote is not escaped (the
# lookbehind), so it opens a string; a string followed by a colon is a key, outside every value.
_SPLIT_KEY = re.compile(rb'(?<!\\)"startedDateTime"\s*:')


def _read_dropping(path: str, limit: int, cuts: Cuts) -> tuple[bytearray, bool]:
    """``read_bytes`` a chunk at a time (inflating as it goes), bodies dropped on the way."""
    try:
        halves = _read_in_halves(path, limit, cuts)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    if halves is not None:
        return halves, False
    elider = Elider.of(cuts)
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


def _read_in_halves(path: str, limit: int, cuts: Cuts) -> bytearray | None:
    """A big plain file's text with the cuts made, the second half by a forked child;
    None where one process should read it all (small, gzipped, too big, no second core,
    no key to cut at).

    The halves meet at a key (``_SPLIT_KEY``): outside every string and between
    the values the cuts concern, so each half is cut as one pass would cut it."""
    try:
        size = os.path.getsize(path)
        if size < SPLIT_BYTES or size > limit or _tuning.workers(2, least=2) < 2:   # a job of two halves
            return None
        with open(path, "rb") as f:
            if f.read(2) == GZIP_MAGIC:
                return None
            f.seek(size // 2)
            window = f.read(8 << 20)
    except OSError:
        return None
    m = _SPLIT_KEY.search(window)
    if m is None:
        return None
    middle = size // 2 + m.start()
    child = _forks.start(lambda span: _cut_span(path, cuts, *span), (middle, size))
    if child is None:
        return None
    first = _cut_span(path, cuts, 0, middle)
    got = _forks.collect(*child)
    first += got[1] if got is not None and got[0] == "ok" else _cut_span(path, cuts, middle, size)
    return first


def _cut_span(path: str, cuts: Cuts, start: int, end: int) -> bytearray:
    """Bytes ``start`` to ``end`` of a plain file, with the cuts made."""
    elider = Elider.of(cuts)
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0:
            piece = f.read(min(_CHUNK, left))
            if not piece:
                break
            left -= len(piece)
            elider.feed(piece)
    return elider.close()


@dataclass(frozen=True)
class Cuts:
    """What ``read_bytes`` cuts out of JSON text as it reads it (see ``Elider``).

    Fields:
      string: the key whose long string values (bodies) become ``""``
      arrays: keys whose flat array values are cut, each with the markers
        (lower-case bytes) that keep an element of it (``Elider._marked``)
    """

    string: bytes
    arrays: tuple[tuple[bytes, tuple[bytes, ...]], ...] = ()


class Elider:
    """Cuts long string values of one key, and flat arrays of others, out of JSON text
    that arrives in chunks.

    ``"text": "<a megabyte of body>"`` becomes ``"text": ""`` and
    ``"cookies": [{...}, ...]`` becomes ``"cookies": []`` (its line breaks
    kept) as the bytes go by,
    so a HAR's bodies and header lists (most of a big HAR) are never held,
    nor parsed into objects nobody reads.  A key is only matched where JSON
    allows one (an unescaped quote cannot occur inside a string).  An array
    is cut only when it holds no array itself, and keeps the elements that
    mention one of its markers (``"host"``); a value shorter than
    ``shortest`` is kept.

    Hand-written: no JSON library filters a stream like this without parsing
    it into objects.  A body's closing quote is found by ``bytes.find``
    (memchr speed: a body without quotes is skipped in a fraction of a
    microsecond); a body dense with escaped quotes (scripts, styles) goes,
    after a few hops, to the json module's C string scanner, and what that
    refuses to possessive patterns (no backtracking, linear time).  Arrays
    are measured with ``find`` and ``count`` where their strings hold no
    escaped backslash, else by a pattern.  The keys are looked for by one
    pattern, and only between the values skipped.
    """

    HOPS = 8                      # escaped quotes stepped over by ``find`` before the scanner takes over
    LONGEST_ARRAY = 1 << 16       # an array still open this long at a chunk's end is left as it is

    def __init__(self, key: bytes, shortest: int = 256, arrays: dict[bytes, tuple[bytes, ...]] | None = None):
        arrays = {k: tuple(v) for k, v in (arrays or {}).items()}
        # each key -> None (a string key whose long values are cut) or the markers of the
        # elements its array keeps (an array key)
        self.markers: dict[bytes, tuple[bytes, ...] | None] = {key: None, **arrays}
        names = b"|".join(re.escape(k) for k in self.markers)
        self.key = re.compile(rb'"(' + names + rb')"\s*:\s*([\["])')
        self.body = re.compile(rb'(?:[^"\\]++|\\.)*+', re.S)     # a string's content, up to its end or the buffer's
        self.flat = re.compile(rb'(?:[^\[\]"]++|"(?:[^"\\]++|\\.)*+")*+', re.S)   # array content without arrays
        self.shortest = shortest
        self.out = bytearray()         # grown in place: never a list of pieces and their join
        self.carry = b""
        self.skipping = False          # inside a long value being dropped
        self.escaped = False           # ... whose last chunk ended in a lone backslash
        self.latin: tuple[bytes, str] | None = None      # the buffer, and its latin-1 text once needed

    @classmethod
    def of(cls, cuts: Cuts) -> "Elider":
        return cls(cuts.string, arrays=dict(cuts.arrays))

    @staticmethod
    def available() -> bool:
        try:
            re.compile(rb"a*+")        # possessive quantifiers: Python 3.11 and later
        except re.error:
            return False
        return True

    def feed(self, chunk: bytes) -> None:
        if self.skipping:
            end, self.escaped = self._string_end(chunk, 1 if self.escaped and chunk else 0)
            if end == len(chunk):
                return                                   # all of it inside the dropped value
            self.skipping = False
            self.out += b'"'
            chunk = chunk[end + 1:]
        buf = self.carry + chunk if self.carry else chunk
        self.carry = b""
        n = len(buf)
        pos = at = 0                                     # emitted up to; searched from
        while True:
            m = self.key.search(buf, at)
            if m is None:
                keep = max(pos, n - 256)                 # a key may be cut at the chunk's end
                self.out += buf[pos:keep]
                self.carry = buf[keep:]
                return
            markers, value = self.markers[m.group(1)], m.end()
            if markers is None and m.group(2) == b'"':
                end, escaped = self._string_end(buf, value)
                if end < n:                              # the value closes in this buffer
                    if end - value >= self.shortest:
                        self.out += buf[pos:value]
                        pos = end
                    at = end + 1
                elif n - value >= self.shortest:         # long and still open: drop as it comes
                    self.out += buf[pos:value]
                    self.skipping, self.escaped = True, escaped
                    return
                else:                                    # short so far: wait for more
                    self.out += buf[pos:m.start()]
                    self.carry = buf[m.start():]
                    return
            elif markers is not None and m.group(2) == b"[":
                close = self._flat_array_end(buf, value)
                if close >= 0:
                    kept = self._marked(markers, buf[value:close]) if markers else b""
                    if kept is not None:                 # None: kept as it is
                        self.out += buf[pos:value]
                        self.out += kept
                        self.out += _same_lines(buf, value, close, kept)
                        pos = close
                    at = close + 1
                elif close == -1 and n - m.start() < self.LONGEST_ARRAY:
                    self.out += buf[pos:m.start()]       # still open: wait for more
                    self.carry = buf[m.start():]
                    return
                else:
                    at = value                           # holds arrays, or too long to wait for: kept
            else:
                at = value

    def _string_end(self, buf: bytes, i: int) -> tuple[int, bool]:
        """(index of the quote closing the string whose content starts at ``i``, or
        ``len(buf)`` when it is still open; whether ``buf`` then ends in a lone backslash)."""
        n = len(buf)
        for _ in range(self.HOPS):
            j = buf.find(b'"', i)
            if j < 0:
                return n, _odd_backslashes(buf, i, n)
            if (j - _backslash_run_start(buf, i, j)) % 2 == 0:
                return j, False
            i = j + 1
        # Dense with escaped quotes (scripts, styles, JSON): the json module's own string
        # scanner, in C, over a latin-1 view of the bytes (one character per byte).
        if self.latin is None or self.latin[0] is not buf:
            self.latin = (buf, buf.decode("latin-1"))
        try:
            return scanstring(self.latin[1], i, False)[1] - 1, False
        except ValueError as exc:
            if str(exc).startswith("Unterminated string"):
                return n, _odd_backslashes(buf, i, n)
        end = self.body.match(buf, i).end()             # not JSON's escapes: the pattern, byte by byte
        if end == n:
            return n, False
        if buf[end] == 0x22:
            return end, False
        return n, True                                   # stopped at a lone backslash, the buffer's last byte

    def _flat_array_end(self, buf: bytes, i: int) -> int:
        """Where the array whose content starts at ``i`` closes; -1 when the buffer ends
        first, -2 when it holds an array."""
        close = buf.find(b"]", i)
        if close >= 0 and buf.find(b"[", i, close) < 0:
            quotes = buf.count(b'"', i, close)
            plain = buf.find(b"\\", i, close) < 0
            if not plain and buf.find(b"\\\\", i, close) < 0:
                quotes -= buf.count(b'\\"', i, close)    # no escaped backslash: each \" is an escaped quote
                plain = True
            if plain and quotes % 2 == 0:
                return close                             # the quotes pair up: the bracket is outside strings
        end = self.flat.match(buf, i).end()
        if end == len(buf) or buf[end] == 0x22:          # a string still open at the buffer's end
            return -1
        return end if buf[end] == 0x5D else -2

    @staticmethod
    def _marked(markers: tuple[bytes, ...], span: bytes) -> bytes | None:
        """The elements of an array's content ``span`` that mention a marker (case aside),
        joined; None when one of them is not a plain object (braces or escapes in its
        strings), and the array is then kept whole.

        An element is found from its marker by the nearest braces; an even count of
        quotes between them proves both are outside strings."""
        low = span.lower()
        hits = []
        for mark in markers:
            i = low.find(mark)
            while i >= 0:
                hits.append(i)
                i = low.find(mark, i + 1)
        found: list[tuple[int, int]] = []
        for i in sorted(hits):
            o, c = span.rfind(b"{", 0, i), span.find(b"}", i)
            if o < 0 or c < 0:
                return None
            obj = span[o:c + 1]
            if b"\\" in obj or obj.count(b"{") != 1 or obj.count(b"}") != 1 or obj.count(b'"') % 2:
                return None
            if (o, c) not in found:
                found.append((o, c))
        return b",".join(span[o:c + 1] for o, c in found)

    def close(self) -> bytes:
        self.latin = None
        if self.skipping:
            self.out += b'"'                        # the file ended inside a body: still JSON's to judge
        self.out += self.carry
        data, self.out = self.out, bytearray()
        return data


def _same_lines(buf: bytes, start: int, end: int, kept: bytes) -> bytes:
    """What stands in for the cut part of ``buf[start:end]``: its line breaks (less those
    in ``kept``) and its last line's indentation, so a parse error further on names the
    line (and in an indented file the column) of the file as written."""
    breaks = buf.count(b"\n", start, end) - kept.count(b"\n")
    if breaks <= 0:
        return b""
    last = buf.rfind(b"\n", start, end) + 1
    indent = end - last if not buf[last:end].strip() else 0
    return b"\n" * breaks + b" " * indent


def _backslash_run_start(buf: bytes, lo: int, j: int) -> int:
    """Where the run of backslashes just before ``j`` starts (not before ``lo``)."""
    k = j
    while k > lo and buf[k - 1] == 0x5C:
        k -= 1
    return k


def _odd_backslashes(buf: bytes, lo: int, n: int) -> bool:
    """Whether ``buf[lo:n]`` ends in a backslash that escapes what comes next."""
    return (n - _backslash_run_start(buf, lo, n)) % 2 == 1


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
          drop: Cuts | None = None) -> tuple[Any, dict]:
    """Parse a JSON-ish browser export; returns (value, facts about the wrapping).

    ``object_hook``: the stdlib parser's, called on every object (orjson is
    used only without one).  ``drop``: what is cut out of the text while it
    is read (``read_bytes``).
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
    unwrapped = unwrap_jsonp_bytes(data)
    if unwrapped is None:
        return None
    data, callback = unwrapped
    try:
        value = orjson.loads(data)
    except (orjson.JSONDecodeError, RecursionError):
        return None                # the stdlib parser says where the file is broken
    return value, callback, size


_SPACE = b" \t\n\r\x0b\x0c"        # what ``bytes.rstrip()`` strips


def unwrap_jsonp_bytes(data):
    """(the JSON inside a JSONP wrapper ``cb(...)``, the callback's name), or (``data``, None)
    without one; None for a wrapper that does not close.  ``data``: bytes or a memoryview
    (sliced, not copied)."""
    m = _JSONP.match(bytes(data[:256]))
    if not m:
        return data, None
    end = len(data)
    for strip in (_SPACE, b";", _SPACE):               # rstrip(), rstrip(b";"), rstrip()
        while end and data[end - 1] in strip:
            end -= 1
    if not end or data[end - 1] != 0x29:                # ")"
        return None
    return data[bytes(data[:256]).index(b"(") + 1:end - 1], m.group(1).decode()


def not_utf8(data) -> bool:
    """Whether ``data`` (bytes or a memoryview, read in chunks) is not UTF-8, which
    ``decode_text`` refuses; UTF-16 with its BOM counts as not UTF-8 here."""
    view = memoryview(data)
    if view[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return True
    decoder = codecs.getincrementaldecoder("utf-8")()
    step = 16 << 20
    try:
        for i in range(0, len(view), step):
            chunk = bytes(view[i:i + step])
            # ASCII needs no decoding (a tenth of the time), unless a character is split at the edge.
            if not chunk.isascii() or decoder.getstate()[0]:
                decoder.decode(chunk)
        decoder.decode(b"", True)
    except UnicodeDecodeError:
        return True
    return False


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
    kind = type(v)                 # the common cases first: a big export has millions of numbers
    if kind is float:
        return v if 0 <= v < _INF else math.nan
    if kind is int and 0 <= v < _SMALL:
        return float(v)
    v = signed(v)
    return v if v >= 0 else math.nan


_INF = math.inf
_SMALL = 1 << 53                   # an int below this is exactly a float


def signed(v: Any) -> float:
    """A number from a JSON field (or written as a string), negative ones too; NaN for junk."""
    kind = type(v)
    if kind is float:
        return v if -_INF < v < _INF else math.nan
    if kind is int and -_SMALL < v < _SMALL:
        return float(v)
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
