"""A capture read forward in pieces of whole records, in bounded memory.

``chunks(path)`` yields one :class:`Chunk` per few tens of megabytes of the
file (inflated, if it is gzipped): a ``Capture`` of whole records only, as
the ordinary readers (``pcap.parse``, ``pcapng.parse``) make it, and the
number in the file of its first frame.  Only a chunk and the records cut by
its end are ever held, so a capture bigger than memory can be read from one
end to the other; a chunk's ``buf`` is its own (file header + its records).

- pcap: the file header goes before each chunk's records.  A chunk's end cuts
  a record in two; the reader parses what it has and carries the cut record
  over to the next chunk (the parser's own walk says where the last whole
  record ends, so the records are walked once).
- pcapng: the section header and interface blocks in force go before each
  chunk's blocks, so the parser knows each packet's link type and time
  resolution.  Where to cut is found by a walk over the block headers
  (type and length only), which also keeps those blocks.  Interface ids are
  numbered across sections as ``pcapng.parse`` numbers them for the whole file.

Damage is what ``read_capture`` says it is: the frames before it are kept and
the last chunk's ``warnings`` say ``FILE: frame N: what; analysed M frames``,
N and M counted in the whole file.  Unlike ``read_capture`` there is no limit
on what a gzip file inflates to: nothing is held in memory but a chunk.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from traceviz.errors import InputError, describe
from traceviz.sources import pcap, pcapng
from traceviz.sources.capture import Capture
from traceviz.sources.reader import GZIP_MAGIC, sniff_bytes

CHUNK = 64 * 1024 * 1024      # bytes of records per chunk


@dataclass
class Chunk:
    """Some whole records of a file.  Fields: capture (their ``Capture``; ``iface`` is
    numbered as in the whole file), first_frame (the file's number of its first frame),
    last (no chunk follows: the file ended, or damage stopped the reading)."""

    capture: Capture
    first_frame: int
    last: bool


class _Bytes:
    """A file's bytes, inflated when it is gzip, read forward."""

    def __init__(self, path: str):
        self.path = path
        try:
            self.f = open(path, "rb")
        except OSError as exc:
            raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
        self.gzip = self.f.read(2) == GZIP_MAGIC
        self.f.seek(0)
        self.z = zlib.decompressobj(16 + zlib.MAX_WBITS) if self.gzip else None
        self.pending = b""
        self.eof = False

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end."""
        if not self.gzip:
            data = self.f.read(n)
            self.eof = len(data) < n
            return data
        out = bytearray()
        try:
            while len(out) < n:
                if not self.pending:
                    self.pending = self.f.read(1 << 20)
                    if not self.pending:
                        break
                out += self.z.decompress(self.pending, n - len(out))
                self.pending = self.z.unconsumed_tail
                if self.z.eof:      # concatenated gzip members are one stream
                    rest = self.z.unused_data + self.pending
                    self.z, self.pending = zlib.decompressobj(16 + zlib.MAX_WBITS), rest
                    if rest[:2] not in (GZIP_MAGIC, b""):
                        self.pending = b""
                        self.f.seek(0, os.SEEK_END)
        except zlib.error as exc:
            if not out:
                raise InputError(self.path, f"damaged gzip data ({exc})") from None
            self.pending = b""
            self.f.seek(0, os.SEEK_END)
        self.eof = len(out) < n
        return bytes(out)

    def readinto(self, view: memoryview) -> int:
        """Fill ``view`` (fewer bytes only at the end); how many were read."""
        if not self.gzip:
            n = self.f.readinto(view)
            while n < len(view):           # a short read is not the end of a regular file until it reads 0
                more = self.f.readinto(view[n:])
                if not more:
                    break
                n += more
            self.eof = n < len(view)
            return n
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.f.close()


def chunks(path: str | os.PathLike, size: int = CHUNK, reuse: bool = False) -> Iterator[Chunk]:
    """The file's records, a chunk of about ``size`` bytes at a time (see the module doc).

    ``reuse``: pcap chunks are read into one buffer, used again for the next
    chunk, so each chunk is valid only until the next one is asked for (a
    fresh 64 MiB buffer per chunk costs more in page faults than the walk).
    Raises ``InputError`` when nothing of the file is usable (as ``read_capture``)."""
    path = os.fspath(path)
    src = _Bytes(path)
    try:
        head = src.read(4)
        if not head:
            raise InputError(path, "empty file")
        kind = sniff_bytes(head)
        if kind == "pcap":
            yield from _pcap_chunks(src, head, size, reuse)
        elif kind == "pcapng":
            yield from _pcapng_chunks(src, head, size)
        else:
            raise InputError(path, "not a capture file (no pcap or pcapng magic number)")
    finally:
        src.close()


def first_timestamp(path: str | os.PathLike) -> float | None:
    """The time of the file's first frame that has one (None: no frame has)."""
    for chunk in chunks(path, size=256 * 1024):
        ts = chunk.capture.ts
        stamped = ts[np.isfinite(ts)]
        if len(stamped):
            return float(stamped[0])
    return None


# -- pcap --------------------------------------------------------------------------------

def _pcap_chunks(src: _Bytes, head: bytes, size: int, reuse: bool) -> Iterator[Chunk]:
    header = head + src.read(pcap.FILE_HEADER - 4)
    rec_hdr = pcap.MAGICS[header[:4]][2] if len(header) >= 4 else 16
    h = len(header)
    buf = _buffer(header, b"", size)
    valid = h                               # header + records (whole and cut) held
    frames = 0
    while True:
        if len(buf) < valid + size:         # a record bigger than a chunk: room for more
            buf = _buffer(header, memoryview(buf)[h:valid], valid - h + size)
        valid += src.readinto(memoryview(buf)[valid:valid + size])
        final = src.eof
        view = memoryview(buf)[:valid]
        try:
            cap = pcap.parse(view, src.path)
        except InputError as exc:
            if final or valid - h >= rec_hdr + pcap.MAX_RECORD or exc.frame is None:
                # The first record of the chunk is damaged (or the header is).
                if frames == 0:
                    raise
                yield _stopped(src.path, "pcap", frames, exc.message)
                return
            continue                        # one record bigger than what we have: read on
        n = len(cap)
        if final:
            cap.warnings = [_shift(w, src.path, frames) for w in cap.warnings]
            yield Chunk(cap, frames + 1, True)
            return
        if n == 0:
            continue
        end = int(cap.data_off[-1] + cap.caplen[-1])
        cap.warnings = []                   # the cut record is carried over, not lost
        yield Chunk(cap, frames + 1, False)
        frames += n
        del cap, view
        rest = valid - end
        if reuse:
            buf[h:h + rest] = buf[end:valid]    # same length: allowed while the old chunk's views live
        else:
            buf = _buffer(header, memoryview(buf)[end:valid], size + rest)
        valid = h + rest


def _buffer(header: bytes, carried, room: int) -> bytearray:
    """A buffer holding ``header`` and ``carried``, with ``room`` bytes after the header."""
    buf = bytearray(len(header) + max(room, len(carried)))
    buf[:len(header)] = header
    buf[len(header):len(header) + len(carried)] = carried
    return buf


def _stopped(path: str, fmt: str, frames: int, why: str) -> Chunk:
    """An empty last chunk saying why reading stopped after ``frames`` frames."""
    cap = Capture(path, fmt, b"", *(np.zeros(0, t) for t in ("f8", "i8", "i8", "i8", "i4", "i4")))
    cap.ts_ns = np.zeros(0, np.int64)
    cap.warnings = [describe(path, f"{why}; analysed {pcap.plural(frames)}", frames + 1)]
    return Chunk(cap, frames + 1, True)


_WHERE = re.compile(r"^(?P<path>.*): frame (?P<frame>\d+): (?P<what>.*?)(; analysed (?P<n>\d+) frames?)?$", re.S)


def _shift(warning: str, path: str, frames: int) -> str:
    """A chunk's warning with its frame numbers counted in the whole file."""
    m = _WHERE.match(warning)
    if frames == 0 or m is None or m.group("path") != path:
        return warning
    what = m.group("what")
    if m.group("n") is not None:
        what += f"; analysed {pcap.plural(int(m.group('n')) + frames)}"
    return describe(path, what, int(m.group("frame")) + frames)


# -- pcapng ------------------------------------------------------------------------------

_SHB, _IDB = pcapng.SHB, pcapng.IDB
_PACKET_BLOCKS = (pcapng.EPB, pcapng.PB, pcapng.SPB)


class _Sections:
    """The section header and interface blocks in force, and interfaces of earlier sections."""

    def __init__(self):
        self.blocks: list[bytes] = []       # this section's SHB and IDBs, raw
        self.before = 0                     # interfaces of earlier sections
        self.order = "<"

    def prefix(self) -> tuple[bytes, int]:
        return b"".join(self.blocks), self.before

    def add(self, btype: int, block: bytes) -> None:
        if btype == _SHB:
            self.before += max(0, len(self.blocks) - 1)
            self.blocks = [block]
        elif btype == _IDB and self.blocks:
            self.blocks.append(block)


def _pcapng_chunks(src: _Bytes, head: bytes, size: int) -> Iterator[Chunk]:
    sections = _Sections()
    frames = 0
    carried: bytes | memoryview = head
    while True:
        prefix, base = sections.prefix()
        p = len(prefix)
        buf = bytearray(p + len(carried) + size)
        buf[:p] = prefix
        buf[p:p + len(carried)] = carried
        valid = p + len(carried) + src.readinto(memoryview(buf)[p + len(carried):])
        final = src.eof
        data = memoryview(buf)[p:valid]
        end, damaged = _walk_blocks(data, sections)
        if end == 0 and not (final or damaged):
            carried = bytes(data)           # one block bigger than what we have: read on
            continue
        last = final or damaged
        try:
            cap = pcapng.parse(memoryview(buf)[:valid if last else p + end], src.path)
        except InputError as exc:
            if frames == 0:
                raise
            yield _stopped(src.path, "pcapng", frames, exc.message)
            return
        cap.iface = (cap.iface + base).astype(np.int32)
        cap.warnings = [_shift(w, src.path, frames) for w in cap.warnings]
        stopped = bool(cap.warnings) and not last
        yield Chunk(cap, frames + 1, last or stopped)
        if last or stopped:
            return
        frames += len(cap)
        carried = bytes(data[end:])


def _walk_blocks(data: memoryview, sections: _Sections) -> tuple[int, bool]:
    """(where the last whole block of ``data`` ends, whether a block header is impossible).

    Updates ``sections`` with the section and interface blocks walked over."""
    off, n = 0, len(data)
    order = sections.order
    unpack = struct.Struct(order + "II").unpack_from
    while off + 12 <= n:
        btype, blen = unpack(data, off)
        if btype == _SHB:
            bom = data[off + 8:off + 12]
            order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else None
            if order is None:
                return off, True
            unpack = struct.Struct(order + "II").unpack_from
            btype, blen = unpack(data, off)
        if blen < 12 or blen & 3 or blen > pcapng.MAX_BLOCK:
            return off, True
        if off + blen > n:
            break
        if btype == _SHB or btype == _IDB:
            sections.add(btype, bytes(data[off:off + blen]))
            sections.order = order
        off += blen
    return off, False
