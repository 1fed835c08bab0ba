"""Readers: files in, raw records out.  They know formats, not protocols.

``kind_of(path)`` decides which reader a file needs from its first bytes
(never its name): a capture (pcap/pcapng, maybe gzipped), a JSON-ish export
(HAR, .harp, DevTools trace or protocol log, qlog, Chrome NetLog, maybe
gzipped), a JSON-SEQ qlog (``.sqlog``), or a folder (of qlog files).
"""

from __future__ import annotations

import gzip
import os
import zlib

from traceviz.errors import InputError

_GZIP_MAGIC = b"\x1f\x8b"


def _head(path: str, n: int = 512) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(n)
            if head[:2] == _GZIP_MAGIC:
                f.seek(0)
                # Decompress only the first bytes: enough to sniff, bounded whatever the file says.
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = b""
                while len(out) < n:
                    chunk = f.read(4096)
                    if not chunk:
                        break
                    out += d.decompress(chunk, n - len(out))
                return out
            return head
    except (OSError, zlib.error, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(path, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None


def kind_of(path: str) -> str:
    """``capture``, ``json``, ``qlog`` (JSON-SEQ), ``folder`` or ``unknown``, from the
    (decompressed) first bytes."""
    if os.path.isdir(path):
        return "folder"
    head = _head(path)
    if not head:
        raise InputError(path, "empty file")
    from traceviz.sources.reader import sniff_bytes
    if sniff_bytes(head) != "unknown":
        return "capture"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text[:1] in (b"{", b"["):
        return "json"
    if text[:1] == b"\x1e":          # RFC 7464 JSON text sequence: a qlog's JSON-SEQ form
        return "qlog"
    # JSONP-wrapped HAR (.harp): callback({...})
    name, paren, _ = text.partition(b"(")
    if paren and name.strip() and all(c.isalnum() or c in "_$." for c in name.strip().decode("latin-1")):
        return "json"
    return "unknown"
