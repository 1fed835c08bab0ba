"""Open a capture file, whatever its kind: pcap or pcapng, maybe gzipped.

The format is sniffed from the first bytes, never the file name.  A gzip
wrapper is undone in bounded steps, so a small file that inflates to
something huge (a gzip bomb) stops with an error instead of eating memory.

Damaged files, the policy:

- Nothing usable (empty file, no magic number, a damaged file or section
  header, a first record that is cut short or claims an impossible length):
  ``InputError`` with one line naming the file (and frame 1 where a record
  is to blame).
- A record that is cut short, or claims more than Wireshark's 262144-byte
  maximum (pcap) / a block longer than the file or than 16 MiB, or whose
  header contradicts itself (pcapng): the walk stops there; the frames before
  it are kept and ``Capture.warnings`` gets ``FILE: frame N: what; analysed
  M frames``, N being the first frame lost.  A claimed length is only ever
  compared with what the file holds, never allocated.  We stop rather than
  hunt for the next plausible record: after a length lie every later offset
  is a guess, and tshark stops there too.
- A file with a valid header and no packets: an empty Capture with a warning.
"""

from __future__ import annotations

import mmap
import os
import zlib

from traceviz import limits
from traceviz.errors import InputError
from traceviz.sources import mapping, pcap, pcapng
from traceviz.sources.capture import Capture

GZIP_MAGIC = b"\x1f\x8b"
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

# Most bytes a gzipped capture may inflate to: ``limits.MAX_INFLATE``
# (the environment variable TRACEVIZ_MAX_INFLATE raises it).
MAX_INFLATE = limits.LIMITS["MAX_INFLATE"].default
_CHUNK = 1 << 20
# Files at least this big are memory-mapped rather than copied into memory:
# reading 1 GB costs about a second, mapping it (pages already cached) nothing.
MMAP_FROM = 32 * 1024 ** 2


def sniff_bytes(head: bytes) -> str:
    """``pcap``, ``pcapng`` or ``unknown`` from a file's first (decompressed) bytes."""
    head = bytes(head[:4])
    if head in pcap.MAGICS:
        return "pcap"
    if head == PCAPNG_MAGIC:
        return "pcapng"
    return "unknown"


def sniff(path: str | os.PathLike) -> str:
    """``pcap``, ``pcapng`` or ``unknown``; gzip-wrapped files count as what they hold."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:2] == GZIP_MAGIC:
                f.seek(0)
                head, _ = _inflate(f, path, limit=64, sniffing=True)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    except InputError:
        return "unknown"
    return sniff_bytes(head)


def read_capture(path: str | os.PathLike) -> Capture:
    """Read a whole capture file into a :class:`Capture` frame index.

    Raises ``InputError`` when nothing usable can be read; a partly usable file
    yields a Capture whose ``warnings`` say what was lost.
    """
    path = os.fspath(path)
    warnings = []
    compressed = False
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == GZIP_MAGIC:
                compressed = True
                buf, note = _inflate(f, path, limit=_max_inflate())
                if note:
                    warnings.append(f"{path}: {note}")
            else:
                buf = _contents(f)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    if not buf:
        raise InputError(path, "empty file" if not compressed else "gzip file holds nothing")
    kind = sniff_bytes(buf[:4])
    if kind == "pcap":
        cap = pcap.parse(buf, path)
    elif kind == "pcapng":
        cap = pcapng.parse(buf, path)
    else:
        raise InputError(path, "not a capture file (no pcap or pcapng magic number)")
    cap.compressed = compressed
    cap.warnings[:0] = warnings
    if len(cap) == 0:
        cap.warnings.append(f"{path}: the capture holds no packets")
    return cap


def _contents(f):
    """The file's bytes: a memory map for big files (see ``mapping``), else ``bytes``.

    A map behaves like ``bytes`` for slicing, ``struct`` and ``numpy``.  It is
    taken under a read lease, so a file truncated by another process while we
    read it costs a copy, never a SIGBUS.
    """
    size = os.fstat(f.fileno()).st_size
    if size >= MMAP_FROM and hasattr(mmap, "PROT_READ"):
        try:
            # No MAP_POPULATE: the record walk touches every page in order anyway,
            # and faulting them in as it goes (the kernel maps 16 pages per
            # fault) measured ~35 ms quicker than populating 790 MB up front.
            return mapping.map_file(f)
        except (OSError, ValueError):
            f.seek(0)
    return f.read()


def _max_inflate() -> int:
    return limits.get("MAX_INFLATE")


def _inflate(f, path: str, limit: int, sniffing: bool = False) -> tuple[bytearray, str | None]:
    """Up to ``limit`` decompressed bytes of the gzip stream(s) in ``f``.

    Returns the bytes and a note when the stream was cut short.  Raises
    ``InputError`` when the stream is not gzip or inflates past ``limit``
    (unless ``sniffing``: then the first ``limit`` bytes are simply returned).
    The bytes are the ``bytearray`` they were inflated into, never copied:
    a copy would hold a multi-GB capture twice.
    """
    out = bytearray()
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = b""
    try:
        while True:
            if not pending:
                pending = f.read(_CHUNK)
                if not pending:
                    break
            room = min(limit - len(out) + 1, _CHUNK)   # one byte more tells us it overflowed; a chunk at a time
            out += d.decompress(pending, room)
            pending = d.unconsumed_tail
            if len(out) > limit:
                if sniffing:
                    return bytes(out[:limit]), None
                raise InputError(path, limits.refusal("MAX_INFLATE", "gzip data inflates past"))
            if d.eof:
                # Concatenated gzip members are one stream (as gzip -d does).
                rest = d.unused_data + pending
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                pending = rest
                if not rest:
                    nxt = f.read(_CHUNK)
                    if not nxt:
                        return out, None
                    pending = nxt
                if pending[:2] != GZIP_MAGIC:
                    return out, "trailing bytes after the gzip data ignored"
    except zlib.error as exc:
        if out:
            return out, f"gzip data damaged after {len(out)} bytes ({exc})"
        raise InputError(path, f"damaged gzip data ({exc})") from None
    if not d.eof and out:
        return out, "gzip data cut short"
    if not out:
        raise InputError(path, "gzip data cut short before any content")
    return out, None
