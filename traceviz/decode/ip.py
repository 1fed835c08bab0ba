"""IPv4 and IPv6 headers, vectorised over the frames that carry them.

Each function takes the offsets of the network headers of a set of frames
and returns per-frame columns: where the transport header starts, the
transport protocol, how many bytes of IP payload the headers announce, and
whether the frame is a fragment or malformed.

Payload length comes from the IP header, never the frame length, so Ethernet
padding of short frames is not counted; it is capped at what the frame
reported on the wire, as Wireshark does when it trims the IP datagram.  A zero
length (TCP segmentation offload captures, IPv6 jumbograms) falls back to what
the frame holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from traceviz.sources.gather import Heads

HOP_BY_HOP, ROUTING, FRAGMENT, ESP, AH, NO_NEXT, DEST_OPTS = 0, 43, 44, 50, 51, 59, 60
EXT_HEADERS = (HOP_BY_HOP, ROUTING, FRAGMENT, AH, DEST_OPTS)
MAX_EXT_HEADERS = 8

IPV4_HEADER = np.dtype([("vihl", "u1"), ("tos", "u1"), ("len", ">u2"), ("id", ">u2"), ("frag", ">u2"),
                        ("ttl", "u1"), ("proto", "u1"), ("sum", ">u2"), ("src", ">u4"), ("dst", ">u4")])


@dataclass
class IPColumns:
    l4: np.ndarray          # int64 offset of the transport header from the frame's start
    proto: np.ndarray       # int64 next protocol after the IP (extension) headers
    plen: np.ndarray        # int64 IP payload bytes after all IP headers
    frag: np.ndarray        # bool: a fragment (first or later)
    later_frag: np.ndarray  # bool: a fragment other than the first (no transport header)
    bad: np.ndarray         # bool: header truncated or inconsistent
    src: np.ndarray         # IPv4: uint32; IPv6: (n, 16) uint8 rows
    dst: np.ndarray


def ipv4(h: Heads, rows, l3: int, caplen: np.ndarray, reported: np.ndarray) -> IPColumns:
    """IPv4 headers at offset ``l3`` of the frames ``rows``.

    ``caplen``/``reported``: captured and wire bytes of each frame.
    Offsets in the result (``l4``) are from each frame's first byte.
    """
    avail = caplen - l3
    hdr = h.record(rows, l3, IPV4_HEADER)
    b0 = hdr["vihl"].astype(np.int64)
    ihl = (b0 & 0x0F) * 4
    total = hdr["len"].astype(np.int64)
    frag_field = hdr["frag"]
    proto = hdr["proto"].astype(np.int64)
    src = hdr["src"]
    dst = hdr["dst"]
    room = reported - l3
    total = np.where(total == 0, room, np.minimum(total, room))
    bad = (avail < 20) | ((b0 >> 4) != 4) | (ihl < 20) | (ihl > avail) | (total < ihl)
    more = (frag_field & 0x2000) != 0
    offset = frag_field & 0x1FFF
    return IPColumns(
        l4=l3 + ihl,
        proto=proto,
        plen=np.maximum(total - ihl, 0),
        frag=~bad & (more | (offset > 0)),
        later_frag=~bad & (offset > 0),
        bad=bad,
        src=src,
        dst=dst,
    )


def ipv6(h: Heads, rows, l3: int, caplen: np.ndarray, reported: np.ndarray) -> IPColumns:
    """IPv6 headers at offset ``l3`` of ``rows``, walking the extension-header chain of all at once."""
    n = len(caplen)
    version = h.u8(rows, l3) >> 4
    plen = h.u16(rows, l3 + 4).astype(np.int64)
    nh = h.u8(rows, l3 + 6).astype(np.int64)
    src = h.raw(rows, l3 + 8, 16)
    dst = h.raw(rows, l3 + 24, 16)
    room = reported - l3 - 40
    plen = np.where(plen == 0, room, np.minimum(plen, room))
    bad = (caplen - l3 < 40) | (version != 6) | (plen < 0)
    pos = np.full(n, l3 + 40, np.int64)
    frag = np.zeros(n, bool)
    later = np.zeros(n, bool)
    starts = h.start[rows]
    g = h.g
    # Extension headers are rare: read them from the whole buffer, frame by offset.
    for _ in range(MAX_EXT_HEADERS):
        ext = np.flatnonzero(~bad & ~later & np.isin(nh, EXT_HEADERS))
        if not len(ext):
            break
        p, kind = pos[ext], nh[ext]
        at = starts[ext] + p
        whole = p + 8 <= caplen[ext]
        size = np.where(kind == FRAGMENT, 8,
                        np.where(kind == AH, (g.u8(at + 1).astype(np.int64) + 2) * 4,
                                 (g.u8(at + 1).astype(np.int64) + 1) * 8))
        is_frag = kind == FRAGMENT
        field = g.u16(at + 2).astype(np.int64)
        frag[ext] |= whole & is_frag
        later[ext] |= whole & is_frag & ((field >> 3) > 0)
        nh[ext] = g.u8(at)
        pos[ext] = p + size
        plen[ext] -= size
        bad[ext] |= ~whole | (plen[ext] < 0)
    # A chain longer than we follow: leave the transport unknown rather than guess.
    still = np.isin(nh, EXT_HEADERS) & ~bad & ~later
    nh[still] = -1
    return IPColumns(l4=pos, proto=nh, plen=np.maximum(plen, 0), frag=frag & ~bad,
                     later_frag=later & ~bad, bad=bad, src=src, dst=dst)
