"""The index tier: one row of numeric header fields per frame, vectorised.

``index_frames(capture)`` reads link, IP and TCP/UDP headers for every frame
of a :class:`~traceviz.sources.capture.Capture` in a handful of numpy passes
over the file's bytes (see ``sources/gather.py``), never building a Python
object per packet.  The result, :class:`PacketIndex`, is the contract the TCP
analysis and the payload tier build on.

Field meanings follow Wireshark: ``payload_len`` is ``tcp.len`` (IP payload
minus TCP header) or the UDP length minus 8; ``wire_len`` is ``frame.len``.
"""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from traceviz.decode.numeric import factorize
from traceviz.decode import ip as ipmod
from traceviz.decode.link import ETH_IPV4, ETH_IPV6, KNOWN, link_name, locate_l3
from traceviz.sources.capture import Capture
from traceviz.sources.gather import HEAD_BYTES, Gather, Heads, by_offset, peek

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, NS = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100
MAX_TCP_OPTIONS = 40        # 40 option bytes: at most 40 one-byte NOPs
TCP_HEADER = np.dtype([("sport", ">u2"), ("dport", ">u2"), ("seq", ">u4"), ("ack", ">u4"),
                       ("off_flags", ">u2"), ("win", ">u2"), ("sum", ">u2"), ("urg", ">u2")])
NOP_NOP_TIMESTAMPS = np.dtype([("kinds", ">u4"), ("tsval", ">u4"), ("tsecr", ">u4")])


@dataclass
class PacketIndex:
    """Per-frame header columns, one entry per frame in file order.

    ``proto`` is set only when the transport header was parsed (or is ICMP):
    ``proto == 6`` implies the TCP columns are valid.  ``ip_proto`` keeps the
    IP header's protocol number even for later fragments and malformed frames.

    Fragments are not reassembled: a first fragment (offset 0, more to come)
    gets its transport header parsed and ``payload_len`` counts this
    fragment's bytes only (tshark, reassembling, shows no ``tcp.len`` there);
    later fragments get no transport fields.  ``frag`` marks both.
    Offsets (``l4_off``, ``payload_off``) index ``capture.buf`` directly.
    TCP options are read for every TCP frame that has them, not only SYNs.
    """

    capture: Capture
    frame: np.ndarray           # int64, 1-based
    ts: np.ndarray              # float64 epoch seconds
    wire_len: np.ndarray        # int64 frame.len
    caplen: np.ndarray          # int64 frame.cap_len
    ipver: np.ndarray           # uint8: 0 not IP, 4, 6
    src: np.ndarray             # int32 code into addrs, -1
    dst: np.ndarray             # int32 code into addrs, -1
    addrs: list[str]
    proto: np.ndarray           # int16 transport protocol number, -1
    sport: np.ndarray           # int32, -1
    dport: np.ndarray           # int32, -1
    tcp_flags: np.ndarray       # uint16 (FIN 0x01 ... NS 0x100)
    seq: np.ndarray             # int64 raw 32-bit sequence number, -1
    ack: np.ndarray             # int64 raw 32-bit acknowledgement number, -1
    win: np.ndarray             # int32 raw window field, -1
    tcp_hlen: np.ndarray        # int16 TCP header bytes, -1
    l4_off: np.ndarray          # int64 offset in capture.buf of the TCP/UDP header, -1
    payload_off: np.ndarray     # int64 offset of the transport payload, -1
    payload_len: np.ndarray     # int64 payload bytes per the headers (tcp.len), -1
    payload_cap: np.ndarray     # int64 of those, bytes actually captured, -1
    frag: np.ndarray            # bool IPv4/IPv6 fragment
    malformed: np.ndarray       # bool header truncated or inconsistent
    mss: np.ndarray             # int32, -1
    wscale: np.ndarray          # int16 shift count, -1
    sack_perm: np.ndarray       # bool
    tsval: np.ndarray           # int64, -1
    tsecr: np.ndarray           # int64, -1
    link_counts: dict[str, int]
    unknown_link: int
    non_ip: int
    stats: dict = field(default_factory=dict)
    ip_proto: np.ndarray | None = None  # int16 protocol number from the IP header, -1
    vlan: np.ndarray | None = None      # int8 VLAN tags peeled
    # What the index could not read, once each: ``(first frame, message)``, e.g.
    # an unknown link type, frames cut by the snap length, frames shorter than their headers.
    notes: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame)

    def addr(self, code: int) -> str | None:
        return self.addrs[code] if code >= 0 else None


def index_frames(cap: Capture) -> PacketIndex:
    """Read the headers of every frame of ``cap`` (vectorised)."""
    n = len(cap)
    start = np.asarray(cap.data_off, np.int64)
    caplen = np.asarray(cap.caplen, np.int64)
    # Wireshark trims to the reported length; a record claiming less on the
    # wire than it captured is taken at its captured length.
    wire = np.maximum(np.asarray(cap.wire_len, np.int64), caplen)
    heads = getattr(cap, "heads", None)
    if heads is not None:
        cap.heads = None        # taken over: not kept as long as the Capture (96 MB per 1M frames)
    h = Heads(Gather(cap.buf), start, HEAD_BYTES, heads)
    linktypes = np.asarray(cap.linktype)

    l3 = np.zeros(n, np.int64)
    ethertype = np.zeros(n, np.int64)
    vlan = np.zeros(n, np.int8)
    link_counts: dict[str, int] = {}
    unknown = 0
    notes: list[tuple[int, str]] = []
    uniform = n == 0 or linktypes.min() == linktypes.max()
    kinds = linktypes[:1] if uniform else np.unique(linktypes)
    for lt in kinds:
        lt = int(lt)
        rows = slice(None) if len(kinds) == 1 else np.flatnonzero(linktypes == lt)
        l3[rows], ethertype[rows], vlan[rows] = locate_l3(h, lt, rows, caplen[rows])
        count = n if isinstance(rows, slice) else len(rows)
        link_counts[link_name(lt)] = link_counts.get(link_name(lt), 0) + count
        if lt not in KNOWN:
            unknown += count
            first = 1 if isinstance(rows, slice) else int(rows[0]) + 1
            notes.append((first, f"link type {link_name(lt)} ({lt}) is not decoded: "
                                 f"{_frames(count)} skipped (their bytes are not IP to us)"))

    cols = _Columns(n)
    _network(h, cols, l3, ethertype, caplen, wire)
    _transport(h, cols, caplen)
    # TCP options (numpy, lets go of the GIL) and address texts (mostly Python)
    # fill different columns: side by side on two cores.
    with ThreadPoolExecutor(max_workers=1) as pool:
        options = pool.submit(_tcp_options, h, cols, caplen)
        addrs = cols.address_codes()
        options.result()
    cols.to_absolute(start)

    notes += _damage_notes(caplen, np.asarray(cap.wire_len, np.int64), cols.malformed)
    stats = {
        "frames": n,
        "ipv4": int(np.count_nonzero(cols.ipver == 4)),
        "ipv6": int(np.count_nonzero(cols.ipver == 6)),
        "tcp": int(np.count_nonzero(cols.proto == TCP)),
        "udp": int(np.count_nonzero(cols.proto == UDP)),
        "icmp": int(np.count_nonzero((cols.proto == ICMP) | (cols.proto == ICMPV6))),
        "fragments": int(np.count_nonzero(cols.frag)),
        "malformed": int(np.count_nonzero(cols.malformed)),
        "vlan_tagged": int(np.count_nonzero(vlan)),
        "unknown_link": unknown,
        "non_ip": int(np.count_nonzero((ethertype != ETH_IPV4) & (ethertype != ETH_IPV6))),
        "truncated_payload": int(np.count_nonzero(cols.payload_cap < cols.payload_len)),
    }
    return PacketIndex(
        capture=cap,
        frame=np.arange(1, n + 1, dtype=np.int64),
        ts=np.asarray(cap.ts, np.float64),
        wire_len=np.asarray(cap.wire_len, np.int64),
        caplen=caplen,
        ipver=cols.ipver,
        src=cols.src,
        dst=cols.dst,
        addrs=addrs,
        proto=cols.proto,
        sport=cols.sport,
        dport=cols.dport,
        tcp_flags=cols.tcp_flags,
        seq=cols.seq,
        ack=cols.ack,
        win=cols.win,
        tcp_hlen=cols.tcp_hlen,
        l4_off=cols.l4_off,
        payload_off=cols.payload_off,
        payload_len=cols.payload_len,
        payload_cap=cols.payload_cap,
        frag=cols.frag,
        malformed=cols.malformed,
        mss=cols.mss,
        wscale=cols.wscale,
        sack_perm=cols.sack_perm,
        tsval=cols.tsval,
        tsecr=cols.tsecr,
        link_counts=link_counts,
        unknown_link=unknown,
        non_ip=stats["non_ip"],
        stats=stats,
        ip_proto=cols.ip_proto,
        vlan=vlan,
        notes=notes,
    )


def _frames(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


def _damage_notes(caplen: np.ndarray, wire: np.ndarray, malformed: np.ndarray) -> list[tuple[int, str]]:
    """Frames cut by the snap length, and frames too short for their own headers,
    as tshark marks them ("Packet size limited during capture", "Malformed Packet")."""
    notes = []
    cut = np.flatnonzero(caplen < wire)
    if len(cut):
        notes.append((int(cut[0]) + 1, f"{_frames(len(cut))} cut by the snap length (captured fewer bytes "
                                       "than were on the wire); what was cut off is not analysed"))
    short = np.flatnonzero(malformed)
    if len(short):
        notes.append((int(short[0]) + 1, f"{_frames(len(short))} shorter than their own headers, or with "
                                         "headers that contradict their length (malformed); not analysed past the damage"))
    return notes


class _Columns:
    """The output columns while they are being filled, plus scratch state."""

    def __init__(self, n: int):
        self.n = n
        self.ipver = np.zeros(n, np.uint8)
        self.src = np.full(n, -1, np.int32)
        self.dst = np.full(n, -1, np.int32)
        self.ip_proto = np.full(n, -1, np.int16)
        self.proto = np.full(n, -1, np.int16)
        self.sport = np.full(n, -1, np.int32)
        self.dport = np.full(n, -1, np.int32)
        self.tcp_flags = np.zeros(n, np.uint16)
        self.seq = np.full(n, -1, np.int64)
        self.ack = np.full(n, -1, np.int64)
        self.win = np.full(n, -1, np.int32)
        self.tcp_hlen = np.full(n, -1, np.int16)
        self.l4_off = np.full(n, -1, np.int64)
        self.payload_off = np.full(n, -1, np.int64)
        self.payload_len = np.full(n, -1, np.int64)
        self.payload_cap = np.full(n, -1, np.int64)
        self.frag = np.zeros(n, bool)
        self.malformed = np.zeros(n, bool)
        self.mss = np.full(n, -1, np.int32)
        self.wscale = np.full(n, -1, np.int16)
        self.sack_perm = np.zeros(n, bool)
        self.tsval = np.full(n, -1, np.int64)
        self.tsecr = np.full(n, -1, np.int64)
        # scratch: where the transport header is and how long the IP payload is
        self.l4 = np.full(n, -1, np.int64)
        self.plen = np.full(n, -1, np.int64)
        self.parse_l4 = np.zeros(n, bool)
        self.vlan = None
        self.addresses: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []   # version, rows, src, dst

    def to_absolute(self, start: np.ndarray) -> None:
        """Offsets so far count from each frame's start; make them offsets in the buffer."""
        for col in (self.l4_off, self.payload_off):
            has = col >= 0
            col[has] += start[has]

    def address_codes(self) -> list[str]:
        """Fill ``src``/``dst`` codes; return the address texts they index.

        Codes come from hash-based factorisation (no sort), numbering
        addresses in order of appearance, IPv4 first.
        """
        addrs: list[str] = []
        for version in (4, 6):
            parts = [x for x in self.addresses if x[0] == version]
            if not parts:
                continue
            rows = np.concatenate([p[1] for p in parts])
            both = np.concatenate([p[2] for p in parts] + [p[3] for p in parts])
            if version == 4:
                codes, uniq = factorize(both.astype(np.uint32))
                addrs += _ipv4_texts(uniq)
            else:
                halves = np.ascontiguousarray(both).view(">u8").astype(np.uint64)
                hi, hi_uniq = factorize(halves[:, 0])
                lo, lo_uniq = factorize(halves[:, 1])
                codes, pairs = factorize(hi.astype(np.int64) * len(lo_uniq) + lo)
                addrs += [str(ipaddress.IPv6Address((int(hi_uniq[p // len(lo_uniq)]) << 64)
                                                    | int(lo_uniq[p % len(lo_uniq)]))) for p in pairs]
            codes = np.asarray(codes).astype(np.int32) + (len(addrs) - len(uniq if version == 4 else pairs))
            self.src[rows], self.dst[rows] = codes[:len(rows)], codes[len(rows):]
        return addrs


def _ipv4_texts(values: np.ndarray) -> list[str]:
    """Dotted quads, without an ``ipaddress`` object per address (there may be 100k)."""
    return [f"{x >> 24}.{(x >> 16) & 255}.{(x >> 8) & 255}.{x & 255}"
            for x in np.asarray(values, np.uint32).tolist()]


def _rows(idx: np.ndarray, n: int):
    """``slice(None)`` when ``idx`` is every frame (column slices beat fancy indexing)."""
    return slice(None) if len(idx) == n else idx


def _network(h: Heads, cols: _Columns, l3, ethertype, caplen, wire) -> None:
    n = cols.n
    for version, et, parse in ((4, ETH_IPV4, ipmod.ipv4), (6, ETH_IPV6, ipmod.ipv6)):
        found = np.flatnonzero(ethertype == et)
        for rows, rel in by_offset(found, l3[found]):
            r = _rows(rows, n)
            hdr = parse(h, r, rel, caplen[r], wire[r])
            keep = ~hdr.bad
            ok = rows[keep]
            cols.malformed[rows[hdr.bad]] = True
            cols.ipver[ok] = version
            cols.ip_proto[ok] = hdr.proto[keep]
            cols.frag[ok] = hdr.frag[keep]
            cols.l4[ok] = hdr.l4[keep]
            cols.plen[ok] = hdr.plen[keep]
            cols.parse_l4[ok] = ~hdr.later_frag[keep]
            cols.addresses.append((version, ok, hdr.src[keep], hdr.dst[keep]))


def _transport(h: Heads, cols: _Columns, caplen: np.ndarray) -> None:
    p = cols.ip_proto
    first = cols.parse_l4
    for proto, parse in ((TCP, _tcp), (UDP, _udp)):
        found = np.flatnonzero(first & (p == proto))
        for rows, rel in by_offset(found, cols.l4[found]):
            parse(h, cols, rows, rel, caplen[rows])
    icmp = first & ((p == ICMP) | (p == ICMPV6))
    cols.proto[icmp] = p[icmp]


def _tcp(h: Heads, cols: _Columns, rows: np.ndarray, l4: int, caplen: np.ndarray) -> None:
    r = _rows(rows, cols.n)
    plen = cols.plen[r]
    hdr = h.record(r, l4, TCP_HEADER)
    off_flags = hdr["off_flags"].astype(np.int64)
    hlen = (off_flags >> 12) * 4
    bad = (l4 + 20 > caplen) | (plen < 20) | (hlen < 20) | (hlen > plen)
    if bad.any():
        cols.malformed[rows[bad]] = True
        keep = ~bad
        rows, r, plen, hlen, off_flags, caplen, hdr = (
            rows[keep], rows[keep], plen[keep], hlen[keep], off_flags[keep], caplen[keep], hdr[keep])
    cols.proto[r] = TCP
    cols.sport[r] = hdr["sport"]
    cols.dport[r] = hdr["dport"]
    cols.seq[r] = hdr["seq"]
    cols.ack[r] = hdr["ack"]
    cols.tcp_flags[r] = off_flags & 0x1FF
    cols.win[r] = hdr["win"]
    cols.tcp_hlen[r] = hlen
    _payload(cols, r, l4, l4 + hlen, plen - hlen, caplen)


def _udp(h: Heads, cols: _Columns, rows: np.ndarray, l4: int, caplen: np.ndarray) -> None:
    r = _rows(rows, cols.n)
    plen = cols.plen[r]
    ulen = h.u16(r, l4 + 4).astype(np.int64)
    # Length 0 is legal only for IPv6 jumbograms: then the IP payload decides.
    ulen = np.where(ulen == 0, plen, ulen)
    bad = (l4 + 8 > caplen) | (plen < 8) | (ulen < 8) | (ulen > plen)
    if bad.any():
        cols.malformed[rows[bad]] = True
        keep = ~bad
        rows, r, ulen, caplen = rows[keep], rows[keep], ulen[keep], caplen[keep]
    cols.proto[r] = UDP
    cols.sport[r] = h.u16(r, l4)
    cols.dport[r] = h.u16(r, l4 + 2)
    _payload(cols, r, l4, l4 + 8, ulen - 8, caplen)


def _payload(cols: _Columns, rows, l4, poff, plen, caplen) -> None:
    """Offsets here are from the frame's start; ``to_absolute`` shifts them later."""
    cols.l4_off[rows] = l4
    cols.payload_off[rows] = poff
    cols.payload_len[rows] = plen
    cols.payload_cap[rows] = np.clip(caplen - poff, 0, plen)


def _tcp_options(h: Heads, cols: _Columns, caplen: np.ndarray) -> None:
    """MSS, window scale, SACK-permitted and timestamps, for every TCP frame with options.

    Fast path: the layout nearly every non-SYN segment of a Linux/BSD host
    carries (NOP, NOP, timestamps; 32-byte header) is read as columns.  The
    rest get a vectorised option walk: each round reads one option of every
    frame still walking; frames drop out at End-of-List, at the end of the
    header, or at a malformed option (Wireshark stops there too).
    """
    found = np.flatnonzero(cols.tcp_hlen > 20)
    rest = []
    for rows, l4 in by_offset(found, cols.l4_off[found]):
        r = _rows(rows, cols.n)
        opts = h.record(r, l4 + 20, NOP_NOP_TIMESTAMPS)
        common = (cols.tcp_hlen[r] == 32) & (opts["kinds"] == 0x0101080A) & (caplen[r] >= l4 + 32)
        cols.tsval[rows[common]] = opts["tsval"][common]
        cols.tsecr[rows[common]] = opts["tsecr"][common]
        rest.append(rows[~common])
    rows = np.concatenate(rest) if rest else found
    if len(rows):
        _walk_options(h, cols, rows, caplen)


def _walk_options(h: Heads, cols: _Columns, rows: np.ndarray, caplen: np.ndarray) -> None:
    at = np.arange(len(rows))                   # each frame's row of ``opts``
    l4 = cols.l4_off[rows]
    opts = _option_bytes(h, rows, l4, cols.tcp_hlen[rows].astype(np.int64))
    pos = np.zeros(len(rows), np.int64)         # from the first option byte
    stop = np.minimum(cols.tcp_hlen[rows].astype(np.int64), caplen[rows] - l4) - 20
    for _ in range(MAX_TCP_OPTIONS):
        live = pos < stop
        if not live.all():
            rows, at, pos, stop = rows[live], at[live], pos[live], stop[live]
        if not len(rows):
            break
        kind = opts[at, pos]
        nop = kind == 1
        size = np.where(nop, 1, opts[at, pos + 1].astype(np.int64))
        ok = (kind != 0) & (nop | ((pos + 2 <= stop) & (size >= 2) & (pos + size <= stop)))
        _option(opts, cols, rows, at, pos, kind, size, ok)
        rows, at, pos, stop = rows[ok], at[ok], pos[ok] + size[ok], stop[ok]


def _option_bytes(h: Heads, rows: np.ndarray, l4: np.ndarray, hlen: np.ndarray) -> np.ndarray:
    """Each frame's TCP option bytes: a row of ``MAX_TCP_OPTIONS`` per frame, and one byte more
    (read as the length of an option that starts on the last byte, never used).  From the
    heads the reader copied where the options lie within them -- nearly always -- so the walk
    does not touch the file's pages; the rest from the file, a window of it at a time."""
    opts = np.zeros((len(rows), MAX_TCP_OPTIONS + 1), np.uint8)
    at = np.arange(len(rows))
    for group, rel in by_offset(at, l4):
        first = rel + 20
        inside = min(max(h.width - first, 0), MAX_TCP_OPTIONS)
        if inside:
            opts[group, :inside] = h.raw(rows[group], first, inside)
        beyond = group[hlen[group] - 20 > inside]
        if len(beyond):
            opts[beyond, :MAX_TCP_OPTIONS] = peek(h.g.buf, h.start[rows[beyond]] + first, MAX_TCP_OPTIONS)
    return opts


def _option(opts: np.ndarray, cols: _Columns, rows, at, pos, kind, size, ok) -> None:
    m = ok & (kind == 2) & (size == 4)
    if m.any():
        cols.mss[rows[m]] = _number(opts, at[m], pos[m] + 2, 2)
    m = ok & (kind == 3) & (size == 3)
    if m.any():
        cols.wscale[rows[m]] = opts[at[m], pos[m] + 2]
    m = ok & (kind == 4) & (size == 2)
    if m.any():
        cols.sack_perm[rows[m]] = True
    m = ok & (kind == 8) & (size == 10)
    if m.any():
        cols.tsval[rows[m]] = _number(opts, at[m], pos[m] + 2, 4)
        cols.tsecr[rows[m]] = _number(opts, at[m], pos[m] + 6, 4)


def _number(opts: np.ndarray, at: np.ndarray, pos: np.ndarray, width: int) -> np.ndarray:
    """The big-endian unsigned integers of ``width`` bytes at ``pos`` in rows ``at`` of ``opts``."""
    out = np.zeros(len(at), np.int64)
    for k in range(width):
        out = out << 8 | opts[at, pos + k]
    return out
