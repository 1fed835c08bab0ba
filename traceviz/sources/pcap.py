"""Classic libpcap files: microsecond and nanosecond magic, both byte orders.

The record walk is sequential (each record's length says where the next one
starts), so it is one tight Python loop that only follows ``incl_len`` and
notes each record's offset.  Everything else (timestamps, lengths) is pulled
afterwards for all records at once with numpy.  Hand-written rather than dpkt
because dpkt builds a Python object per packet, which is the cost we avoid.
"""

from __future__ import annotations

import mmap
import struct
from array import array
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial

import numpy as np

from traceviz.errors import InputError, describe
from traceviz.sources.capture import Capture
from traceviz import _tuning
from traceviz.sources.gather import Gather, HeadStore
from traceviz.sources.mapping import mappable, release_pages

# magic bytes -> (byte order, fraction units per second, record header size)
MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000, 16),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000, 16),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000, 16),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000, 16),
    # Alexey Kuznetzov's patched libpcap: 8 more bytes per record header.
    b"\x34\xcd\xb2\xa1": ("<", 1_000_000, 24),
    b"\xa1\xb2\xcd\x34": (">", 1_000_000, 24),
}

# Wireshark refuses records larger than this (WTAP_MAX_PACKET_SIZE_STANDARD);
# a bigger claim means the file is damaged, whatever the snaplen says.
MAX_RECORD = 262_144

FILE_HEADER = 24

# Heap memory faulted in during the walk of a big file, per byte of file (at most
# WARM_MOST): about what the index tier reuses (measured, 1M packets, 790 MB;
# more is faulted in for nothing: the analysis threads have heaps of their own).
WARM_SHARE = 0.38
WARM_MOST = 384 * 1024 ** 2

# Records per hand-off from the walk to the thread reading their headers.
CHUNK = 1 << 16


def parse(buf: bytes, path: str) -> Capture:
    """Index every record of the pcap file held in ``buf``."""
    if len(buf) < FILE_HEADER:
        raise InputError(path, f"pcap file header cut short ({len(buf)} of {FILE_HEADER} bytes)")
    magic = bytes(buf[:4])
    if magic not in MAGICS:
        raise InputError(path, "not a pcap file (unknown magic number)")
    order, units, rec_hdr = MAGICS[magic]
    major, minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(order + "HHiIII", buf, 4)
    if major != 2:
        raise InputError(path, f"unsupported pcap version {major}.{minor}")
    # The low 16 bits are the link type; the high bits carry FCS information.
    linktype = network & 0xFFFF
    # Files older than format 2.4 may have incl_len and orig_len swapped
    # (Wireshark's libpcap reader swaps them when incl_len > orig_len).
    maybe_swapped = minor < 4

    # The walk holds the GIL; reading the record headers it found is numpy, which
    # does not.  So each finished chunk of records is read by a second thread
    # while the walk goes on (on two cores the header reads cost no wall time).
    # The same thread copies each frame's first bytes for the index tier (one
    # worker: chunks are taken in order).
    heads = HeadStore(buf)

    def handoff(chunk):
        ends.append(int(chunk[-1]))     # first: a job seen by _Behind has its end
        jobs.append(pool.submit(_headers, buf, chunk, order, units, maybe_swapped, heads, rec_hdr))

    with ThreadPoolExecutor(max_workers=1) as pool:
        jobs, ends = [], []
        offs, stop = walk_aside(buf, partial(_walk, buf, order, rec_hdr, maybe_swapped, handoff), jobs, ends)
        parts = [job.result() for job in jobs]
    warnings: list[str] = []
    nframes = len(offs)
    if stop is not None:
        if nframes == 0:
            raise InputError(path, stop, 1)
        warnings.append(describe(path, f"{stop}; analysed {plural(nframes)}", nframes + 1))

    done = sum(len(part[0]) for part in parts)
    parts.append(_headers(buf, offs[done:], order, units, maybe_swapped, heads, rec_hdr))
    # The walk may drop a last record it had already handed over (cut short): keep nframes.
    ts, ts_ns, incl, orig = (np.concatenate([part[i] for part in parts])[:nframes] for i in range(4))
    n = len(offs)
    cap = Capture(
        path=path,
        format="pcap",
        buf=buf,
        ts=ts,
        data_off=offs + rec_hdr,
        caplen=incl,
        wire_len=orig,
        linktype=np.full(n, linktype, np.int32),
        iface=np.zeros(n, np.int32),
        warnings=warnings,
        detail={
            "version": f"{major}.{minor}",
            "byte_order": "little" if order == "<" else "big",
            "tsresol": "nsec" if units == 1_000_000_000 else "usec",
            "snaplen": snaplen,
            "linktypes": [linktype],
        },
    )
    cap.ts_ns = ts_ns
    cap.heads = heads.result(n)
    return cap


def walk_aside(buf, walk, jobs: list, ends: list):
    """``walk()``'s result (a reader's walk over ``buf``, handing ``jobs`` to a second thread,
    each chunk's last record offset first noted in ``ends``).

    In a big load the walk gets a thread of its own while this, the main thread, faults in
    heap memory the index tier will reuse (``_tuning.warm_heap``) and hands back the pages
    of the records both threads are done with (``_Behind``).  pcap and pcapng alike.
    """
    if not _tuning.holding_freed_memory():
        return walk()
    with ThreadPoolExecutor(max_workers=1) as walker:
        walking = walker.submit(walk)
        behind = _Behind(buf, jobs, ends)
        # Pages handed back between blocks too: the walk outran the warming, and on 1M
        # packets the warmed heap and the file's resident pages together were up to 1.0 GB.
        _tuning.warm_heap(min(int(len(buf) * WARM_SHARE), WARM_MOST), between=behind.release_done)
        behind.release_until(walking)
        return walking.result()


class _Behind:
    """Hands back the file's pages as the records on them are done with.

    A chunk of records is done once the walk has passed it (it was handed over)
    and its headers and heads are read (its job is finished).  Without this the
    whole file sits in resident memory at the end of the walk (741 MB of 1.24 GB
    at the peak on a million packets); the tiers after read the heads copied, or
    fault the few pages they need in again from the page cache.  Only the main
    thread may release (``mapping.release_pages``).
    """

    def __init__(self, buf, jobs: list, ends: list):
        self.buf, self.jobs, self.ends = buf, jobs, ends
        self.done = self.released = 0
        self.mapped = mappable(buf)

    def release_done(self) -> None:
        """The chunks finished so far, without waiting for more."""
        while self.mapped and self.done < len(self.jobs) and self.jobs[self.done].done():
            self._release_next()

    def release_until(self, walking) -> None:
        """Every chunk, as it is finished, until the walk ends."""
        while self.mapped:
            if self.done < len(self.jobs):
                self._release_next()
            elif walking.done():
                return
            else:
                wait([walking], timeout=0.02)       # the next chunk, or the end of the walk

    def _release_next(self) -> None:
        end = self.ends[self.done]
        self.jobs[self.done].result()
        release_pages(self.buf, self.released, end - self.released)   # up to the chunk's last record
        self.released = end // mmap.PAGESIZE * mmap.PAGESIZE
        self.done += 1


def _headers(buf, offs: np.ndarray, order: str, units: int, maybe_swapped: bool,
             heads: HeadStore | None = None, rec_hdr: int = 16):
    """(ts, ts_ns, incl_len, orig_len) of the records whose headers start at ``offs``.

    With ``heads``, also copy the first bytes of these records' frames into it.
    """
    if heads is not None:
        heads.add(offs + rec_hdr)
    hdr = Gather(buf).raw(offs, 16).view(order + "u4")
    sec, frac, incl, orig = (hdr[:, i].astype(np.int64) for i in range(4))
    if maybe_swapped:
        swap = incl > orig
        incl, orig = np.where(swap, orig, incl), np.where(swap, incl, orig)
    ts_ns = sec * 1_000_000_000 + frac * (1_000_000_000 // units)
    ts = sec.astype(np.float64) + frac.astype(np.float64) / units
    return ts, ts_ns, incl, orig


def _walk(buf: bytes, order: str, rec_hdr: int, maybe_swapped: bool,
          handoff=None) -> tuple[np.ndarray, str | None]:
    """Offsets of the records' headers, and why the walk stopped early (or None).

    The hot loop: one ``unpack_from`` and one append per record.  Only the
    last record can run past the end of the file, so that is checked once,
    after the loop, rather than for every record (a fifth of the loop's time).
    Every ``CHUNK`` records the new offsets go to ``handoff`` (a copy).
    """
    if maybe_swapped:
        return _walk_old(buf, order, rec_hdr)
    incl_at = struct.Struct(order + "I").unpack_from
    offs = array("q")
    append = offs.append
    n = len(buf)
    off = FILE_HEADER
    last = n - rec_hdr
    limit = MAX_RECORD
    sent = 0
    while off <= last:
        for _ in range(CHUNK):
            if off > last:
                break
            incl, = incl_at(buf, off + 8)
            if incl > limit:
                return _done(offs), _why(incl, n - off - rec_hdr)
            append(off)
            off += rec_hdr + incl
        if handoff is not None and len(offs) - sent >= CHUNK:
            handoff(np.frombuffer(offs[sent:], dtype=np.int64))
            sent = len(offs)
    if off > n:                       # the last record's data runs past the end
        off = offs.pop()
        incl, = incl_at(buf, off + 8)
        return _done(offs), _why(incl, n - off - rec_hdr)
    return _done(offs), (f"record header cut short ({n - off} of {rec_hdr} bytes)" if off < n else None)


def _walk_old(buf: bytes, order: str, rec_hdr: int) -> tuple[np.ndarray, str | None]:
    """Like ``_walk``, for format versions before 2.4 (lengths maybe swapped)."""
    lengths = struct.Struct(order + "II").unpack_from
    offs = array("q")
    n = len(buf)
    off = FILE_HEADER
    while off <= n - rec_hdr:
        incl, orig = lengths(buf, off + 8)
        if incl > orig:
            incl = orig
        if off + rec_hdr + incl > n or incl > MAX_RECORD:
            return _done(offs), _why(incl, n - off - rec_hdr)
        offs.append(off)
        off += rec_hdr + incl
    return _done(offs), (f"record header cut short ({n - off} of {rec_hdr} bytes)" if off < n else None)


def _why(incl: int, left: int) -> str:
    if incl > MAX_RECORD:
        return f"record claims {incl} bytes, more than the {MAX_RECORD}-byte maximum; damaged file"
    return f"record cut short (needs {incl} bytes, {left} left)"


def _done(offs: array) -> np.ndarray:
    return np.frombuffer(offs, dtype=np.int64).copy() if len(offs) else np.zeros(0, np.int64)


def plural(frames: int) -> str:
    return f"{frames} frame" if frames == 1 else f"{frames} frames"
