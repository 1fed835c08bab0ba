"""pcapng files: sections, interfaces, packet blocks and decryption secrets.

Blocks handled: Section Header (several sections, either byte order),
Interface Description (link type, ``if_tsresol`` as a power of 10 or of 2,
``if_tsoffset``), Enhanced Packet, Simple Packet, the obsolete Packet block,
and Decryption Secrets (kept as ``(type, bytes)``).  Other blocks are skipped.

As in ``pcap.py`` the walk is one tight loop that only notes where each
packet block is and which interface it belongs to; the per-packet fields are
read with numpy, a chunk of blocks at a time, by a second thread while the
walk goes on (it also copies each frame's first bytes for the index tier).
Hand-written for that reason (dpkt and scapy build an object per packet).
"""

from __future__ import annotations

import struct
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from traceviz.errors import InputError, describe
from traceviz.sources.capture import Capture
from traceviz.sources.gather import Gather, HeadStore
from traceviz.sources.pcap import MAX_RECORD, plural, walk_aside

SHB, IDB, PB, SPB, NRB, ISB, EPB, DSB = 0x0A0D0D0A, 1, 2, 3, 4, 5, 6, 0x0000000A
BOM = 0x1A2B3C4D
# Wireshark's cap on one block (MAX_BLOCK_SIZE: 16 MiB plus headers).
MAX_BLOCK = 16 * 1024 * 1024 + 131072

OPT_END, IF_NAME, IF_TSRESOL, IF_TSOFFSET = 0, 2, 9, 14
# Bytes of file the walk goes through between two hand-offs of the packet blocks it found.
CHUNK_BYTES = 32 * 1024 * 1024


class _Damaged(Exception):
    """The walk cannot go on: ``str(exc)`` says why."""


@dataclass
class Interface:
    section: int
    linktype: int
    snaplen: int
    order: str
    units_exp: int = 6          # resolution exponent
    units_base: int = 10        # 10 or 2
    offset_s: int = 0           # if_tsoffset, seconds
    name: str | None = None

    @property
    def tsresol(self) -> str:
        return f"{self.units_base}^-{self.units_exp}"


def parse(buf: bytes, path: str) -> Capture:
    """Index every packet block of the pcapng file held in ``buf``."""
    w = _Walk(buf)
    heads = HeadStore(buf)
    parts, ends = [], []

    def handoff(offs, gif, kind):
        # The interfaces so far: a chunk's blocks name none defined after them.
        ends.append(int(offs[-1]))      # first: a chunk seen by pcap._Behind has its end
        parts.append(pool.submit(_chunk, buf, offs, gif, kind, list(w.interfaces), heads))

    stop = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        w.handoff = handoff
        try:
            walk_aside(buf, w.run, parts, ends)
        except _Damaged as exc:
            stop = str(exc)
        finally:
            w.handoff = None        # a cycle through the closure: no collector runs in a big load
        parts = [part.result() for part in parts]
    nframes = len(w.offs)
    if not w.interfaces and w.sections == 0:
        raise InputError(path, stop or "not a pcapng file")
    if stop is not None and nframes == 0:
        raise InputError(path, stop, 1 if w.interfaces else None)

    parts.append(_chunk(buf, *w.unsent(), w.interfaces, heads))
    cols = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    # A packet block that contradicts itself ends the usable part.
    damage = cols.pop("bad")
    bad = np.flatnonzero(damage)
    if len(bad):
        first = int(bad[0])
        reason = _DAMAGE[int(damage[first])]
        if first == 0:
            raise InputError(path, reason, 1)
        cols = {k: v[:first] for k, v in cols.items()}
        stop = reason
        nframes = first

    warnings = []
    if stop is not None:
        warnings.append(describe(path, f"{stop}; analysed {plural(nframes)}", nframes + 1))
    cap = Capture(
        path=path,
        format="pcapng",
        buf=buf,
        ts=cols["ts"],
        data_off=cols["data_off"],
        caplen=cols["caplen"],
        wire_len=cols["wire_len"],
        linktype=cols["linktype"],
        iface=cols["iface"],
        secrets=w.secrets,
        warnings=warnings,
        detail={
            "sections": w.sections,
            "byte_order": w.orders,         # one per section
            "interfaces": [
                {"section": i.section, "linktype": i.linktype, "snaplen": i.snaplen,
                 "tsresol": i.tsresol, "name": i.name} for i in w.interfaces
            ],
            "linktypes": sorted({i.linktype for i in w.interfaces}),
            "tsresol": sorted({i.tsresol for i in w.interfaces}),
            "blocks": dict(w.block_counts),
        },
    )
    cap.ts_ns = cols["ts_ns"]
    cap.heads = heads.result(nframes)
    return cap


def _chunk(buf, offs, gif, kind, interfaces, heads: HeadStore) -> dict[str, np.ndarray]:
    """``_columns`` of some packet blocks; their frames' first bytes go to ``heads``
    (chunks are read in file order: one worker)."""
    cols = _columns(buf, offs, gif, kind, interfaces)
    heads.add(cols["data_off"])
    return cols


class _Walk:
    """The sequential block walk.  Packet blocks only get their offset noted."""

    def __init__(self, buf: bytes):
        self.buf = buf
        self.offs = array("q")
        self.gif = array("i")           # global interface index
        self.kind = array("b")          # 6 EPB, 2 PB, 3 SPB
        self.interfaces: list[Interface] = []
        self.secrets: list[tuple[int, bytes]] = []
        self.sections = 0
        self.orders: list[str] = []
        self.block_counts: dict[str, int] = {}
        self.handoff = None             # callable(offs, gif, kind): the packet blocks found since the last
        self.sent = 0

    def unsent(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offsets, interfaces, kinds) of the packet blocks not handed off yet, as arrays (copies)."""
        at = self.sent
        self.sent = len(self.offs)
        return (np.array(self.offs[at:], np.int64), np.array(self.gif[at:], np.int32),
                np.array(self.kind[at:], np.int8))

    def run(self) -> None:
        buf = self.buf
        n = len(buf)
        off = 0
        order = "<"
        base = 0                        # first global interface of this section
        nif = 0                         # interfaces in this section
        head = struct.Struct("<III").unpack_from
        offs_append, gif_append, kind_append = self.offs.append, self.gif.append, self.kind.append
        mark = CHUNK_BYTES if self.handoff is not None else n
        while off < n:
            if off >= mark:             # one comparison per block: hand off what was found so far
                if len(self.offs) > self.sent:
                    self.handoff(*self.unsent())
                mark = off + CHUNK_BYTES
            if n - off < 12:
                raise _Damaged(f"block header cut short ({n - off} of 12 bytes)")
            btype, blen, ifid = head(buf, off)
            if off == 0 and btype != SHB:
                raise _Damaged("not a pcapng file (no section header)")
            if btype == SHB:
                order = self._section(off)
                head = struct.Struct(order + "III").unpack_from
                btype, blen, ifid = head(buf, off)
                base, nif = len(self.interfaces), 0
            if blen < 12 or blen & 3:
                raise _Damaged(f"block length {blen} is impossible; damaged file")
            if blen > MAX_BLOCK:
                raise _Damaged(f"block claims {blen} bytes, more than the {MAX_BLOCK}-byte maximum; damaged file")
            if off + blen > n:
                raise _Damaged(f"block cut short (needs {blen} bytes, {n - off} left)")
            if btype == EPB:
                if ifid >= nif:
                    raise _Damaged(f"packet names interface {ifid}, but the section has {nif}")
                offs_append(off)
                gif_append(base + ifid)
                kind_append(6)
            elif btype == SHB:
                pass
            elif btype == IDB:
                self._interface(off, blen, order)
                nif += 1
            elif btype == SPB:
                if nif == 0:
                    raise _Damaged("simple packet block before any interface")
                offs_append(off)
                gif_append(base)
                kind_append(3)
            elif btype == PB:
                ifid = struct.unpack_from(order + "H", buf, off + 8)[0]
                if ifid >= nif:
                    raise _Damaged(f"packet names interface {ifid}, but the section has {nif}")
                offs_append(off)
                gif_append(base + ifid)
                kind_append(2)
            elif btype == DSB:
                self._secrets(off, blen, order)
            if btype != EPB:
                name = _BLOCK_NAMES.get(btype, hex(btype))
                self.block_counts[name] = self.block_counts.get(name, 0) + 1
            off += blen

    def _section(self, off: int) -> str:
        buf = self.buf
        if len(buf) - off < 28:
            raise _Damaged("section header cut short")
        bom = buf[off + 8:off + 12]
        if bom == b"\x4d\x3c\x2b\x1a":
            order = "<"
        elif bom == b"\x1a\x2b\x3c\x4d":
            order = ">"
        else:
            raise _Damaged("section header has no byte-order mark; not a pcapng file")
        blen, = struct.unpack_from(order + "I", buf, off + 4)
        major, minor = struct.unpack_from(order + "HH", buf, off + 12)
        if major != 1:
            raise _Damaged(f"unsupported pcapng version {major}.{minor}")
        if blen < 28 or blen & 3 or off + blen > len(buf) or blen > MAX_BLOCK:
            raise _Damaged(f"section header length {blen} is impossible; damaged file")
        _options(buf, off + 24, off + blen - 4, order, "section header")
        _trailer(buf, off, blen, order)
        self.sections += 1
        self.orders.append("little" if order == "<" else "big")
        return order

    def _interface(self, off: int, blen: int, order: str) -> None:
        buf = self.buf
        if blen < 20:
            raise _Damaged(f"interface block length {blen} is too small")
        linktype, _res, snaplen = struct.unpack_from(order + "HHI", buf, off + 8)
        itf = Interface(self.sections - 1, linktype, snaplen, order)
        for code, value in _options(buf, off + 16, off + blen - 4, order, "interface block"):
            if code == IF_TSRESOL and len(value) >= 1:
                v = value[0]
                itf.units_base, itf.units_exp = (2, v & 0x7F) if v & 0x80 else (10, v)
            elif code == IF_TSOFFSET and len(value) >= 8:
                itf.offset_s, = struct.unpack_from(order + "q", value)
            elif code == IF_NAME:
                itf.name = bytes(value).decode("utf-8", "replace")
        _trailer(buf, off, blen, order)
        self.interfaces.append(itf)

    def _secrets(self, off: int, blen: int, order: str) -> None:
        buf = self.buf
        if blen < 20:
            raise _Damaged(f"decryption secrets block length {blen} is too small")
        stype, slen = struct.unpack_from(order + "II", buf, off + 8)
        if 16 + slen > blen - 4:
            raise _Damaged(f"decryption secrets claim {slen} bytes, more than their block holds")
        self.secrets.append((stype, bytes(buf[off + 16:off + 16 + slen])))


def _trailer(buf: bytes, off: int, blen: int, order: str) -> None:
    tail, = struct.unpack_from(order + "I", buf, off + blen - 4)
    if tail != blen:
        raise _Damaged(f"block length {blen} does not match its trailer ({tail}); damaged file")


def _options(buf: bytes, start: int, end: int, order: str, where: str) -> list[tuple[int, memoryview]]:
    """The (code, value) options between ``start`` and ``end``; damaged ones raise."""
    out = []
    off = start
    opt = struct.Struct(order + "HH").unpack_from
    while off + 4 <= end:
        code, length = opt(buf, off)
        if code == OPT_END:
            break
        if off + 4 + length > end:
            raise _Damaged(f"{where} option of length {length} is longer than the block; damaged file")
        out.append((code, memoryview(buf)[off + 4:off + 4 + length]))
        off += 4 + ((length + 3) & ~3)
    return out


_DAMAGE = {
    1: "packet block's captured length overruns the block; damaged file",
    2: "packet block's length does not match its trailer; damaged file",
}

_BLOCK_NAMES = {SHB: "SHB", IDB: "IDB", PB: "PB", SPB: "SPB", NRB: "NRB", ISB: "ISB", EPB: "EPB", DSB: "DSB"}


def _columns(buf, offs, gif, kind, interfaces) -> dict[str, np.ndarray]:
    """Per-packet fields of all packet blocks, gathered per interface."""
    n = len(offs)
    g = Gather(buf)
    data_off = np.zeros(n, np.int64)
    caplen = np.zeros(n, np.int64)
    wire = np.zeros(n, np.int64)
    ts = np.full(n, np.nan)
    ts_ns = np.zeros(n, np.int64)
    bad = np.zeros(n, np.int8)         # 0 fine, else a key of _DAMAGE
    linktype = np.zeros(n, np.int32)
    for i, itf in enumerate(interfaces):
        sel = np.flatnonzero(gif == i)
        if not len(sel):
            continue
        o, k, e = offs[sel], kind[sel], itf.order
        linktype[sel] = itf.linktype
        blen = g.u32(o + 4, e).astype(np.int64)
        is_epb, is_pb, is_spb = k == 6, k == 2, k == 3
        # EPB: ifid, ts hi, ts lo, caplen, origlen at +8; PB: ifid16, drops16, then the same.
        hdr = np.where(is_epb, 28, np.where(is_pb, 28, 12))
        units = (g.u32(o + 12, e).astype(np.uint64) << np.uint64(32)) | g.u32(o + 16, e).astype(np.uint64)
        cl = g.u32(o + 20, e).astype(np.int64)
        wl = g.u32(o + 24, e).astype(np.int64)
        # SPB: only the original length; the data is what the block holds.
        spb_wl = g.u32(o + 8, e).astype(np.int64)
        cl = np.where(is_spb, np.minimum(spb_wl, blen - 16), cl)
        wl = np.where(is_spb, spb_wl, wl)
        trailer = g.u32(o + blen - 4, e).astype(np.int64)
        overrun = (hdr + cl + 4 > blen) | (cl > MAX_RECORD) | (cl < 0)
        bad[sel] = np.where(overrun, 1, np.where(trailer != blen, 2, 0))
        data_off[sel] = o + hdr
        caplen[sel] = cl
        wire[sel] = wl
        sec, sub, per = _split_units(units, itf)
        ns = sec * 1_000_000_000 + _sub_to_ns(sub, itf)
        stamped = ~is_spb
        ts_ns[sel] = np.where(stamped, ns, 0)
        ts[sel] = np.where(stamped, sec.astype(np.float64) + sub.astype(np.float64) / per, np.nan)
    return {"ts": ts, "ts_ns": ts_ns, "data_off": data_off, "caplen": caplen, "wire_len": wire,
            "linktype": linktype, "iface": gif.astype(np.int32), "bad": bad}


def _split_units(units: np.ndarray, itf: Interface) -> tuple[np.ndarray, np.ndarray, float]:
    """Whole seconds (int64, offset applied) and the remainder in resolution units."""
    exp = min(itf.units_exp, 63 if itf.units_base == 2 else 19)
    if itf.units_base == 2:
        sec = units >> np.uint64(exp)
        sub = units & np.uint64((1 << exp) - 1)
        per = float(1 << exp)
    else:
        p = np.uint64(10 ** exp)
        sec, sub = units // p, units % p
        per = float(10 ** exp)
    return sec.astype(np.int64) + itf.offset_s, sub, per


def _sub_to_ns(sub: np.ndarray, itf: Interface) -> np.ndarray:
    """Sub-second units to nanoseconds, without overflowing uint64."""
    exp = itf.units_exp
    if itf.units_base == 10:
        if exp <= 9:
            return (sub * np.uint64(10 ** (9 - exp))).astype(np.int64)
        return (sub // np.uint64(10 ** min(exp - 9, 19))).astype(np.int64)
    # 2^-exp: ns = sub * 1e9 / 2^exp; drop low bits first when sub*1e9 would overflow.
    exp = min(exp, 63)
    drop = max(0, exp - 33)
    s = sub >> np.uint64(drop)
    return ((s * np.uint64(1_000_000_000)) >> np.uint64(exp - drop)).astype(np.int64)
