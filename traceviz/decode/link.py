"""Link layers, vectorised: where each frame's network header starts.

For every frame we find ``l3`` (offset of the network header in the buffer)
and ``ethertype`` (0x0800 IPv4, 0x86DD IPv6, anything else: not IP), for all
frames of one link type at once.  VLAN tags (802.1Q, 802.1ad QinQ and the old
0x9100) are peeled repeatedly, whatever link layer carried them.
"""

from __future__ import annotations

import numpy as np

from traceviz.sources.gather import Heads, by_offset

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
MAX_VLAN_TAGS = 4

# LINKTYPE_* value -> the name libpcap gives it (as tshark/capinfos show them).
LINK_NAMES = {
    0: "NULL", 1: "EN10MB", 12: "RAW", 14: "RAW", 101: "RAW", 108: "LOOP",
    113: "LINUX_SLL", 228: "IPV4", 229: "IPV6", 276: "LINUX_SLL2",
}
KNOWN = frozenset(LINK_NAMES)

# BSD NULL/LOOP address families: AF_INET is 2 everywhere; AF_INET6 is 24
# (NetBSD/OpenBSD), 28 (FreeBSD) or 30 (macOS).
AF_INET, AF_INET6 = (2,), (24, 28, 30)


def link_name(linktype: int) -> str:
    return LINK_NAMES.get(linktype, f"DLT_{linktype}")


def locate_l3(h: Heads, linktype: int, rows, caplen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(l3, ethertype, vlan)`` for the frames ``rows`` (all of ``linktype``).

    ``l3`` is the network header's offset from the frame's first byte;
    ``caplen`` the frames' captured lengths.  Frames too short for their link
    header get ethertype 0, as do all frames of unknown link types.  ``vlan``
    counts the tags peeled.
    """
    n = len(caplen)
    et = np.zeros(n, np.int64)
    l3 = np.zeros(n, np.int64)
    if linktype == 1:                                   # Ethernet
        et = np.where(caplen >= 14, h.u16(rows, 12), 0)
        l3 += 14
    elif linktype == 113:                               # Linux cooked v1: 16-byte header
        et = np.where(caplen >= 16, h.u16(rows, 14), 0)
        l3 += 16
    elif linktype == 276:                               # Linux cooked v2: protocol first, 20 bytes
        et = np.where(caplen >= 20, h.u16(rows, 0), 0)
        l3 += 20
    elif linktype in (0, 108):                          # BSD loopback: 4-byte address family
        raw = h.raw(rows, 0, 4)
        if linktype == 0:
            # Host byte order of the machine that wrote it: a value too big for
            # an AF means we read it the wrong way round (as Wireshark does).
            af = raw.view("<u4")[:, 0].astype(np.int64)
            af = np.where(af > 0xFFFF, raw.view(">u4")[:, 0], af)
        else:
            af = raw.view(">u4")[:, 0].astype(np.int64)
        ok = caplen >= 4
        et = np.where(ok & np.isin(af, AF_INET), ETH_IPV4, np.where(ok & np.isin(af, AF_INET6), ETH_IPV6, 0))
        l3 += 4
    elif linktype in (12, 14, 101):                     # raw IP: the version nibble decides
        v = h.u8(rows, 0) >> 4
        ok = caplen >= 1
        et = np.where(ok & (v == 4), ETH_IPV4, np.where(ok & (v == 6), ETH_IPV6, 0))
    elif linktype == 228:
        et = np.where(caplen >= 1, ETH_IPV4, 0)
    elif linktype == 229:
        et = np.where(caplen >= 1, ETH_IPV6, 0)
    else:
        return l3, et, np.zeros(n, np.int8)
    et = et.astype(np.int64)
    return _peel_vlans(h, rows, l3, et, caplen)


def _peel_vlans(h: Heads, rows, l3: np.ndarray, et: np.ndarray, caplen: np.ndarray):
    vlan = np.zeros(len(l3), np.int8)
    all_rows = np.arange(len(l3)) if isinstance(rows, slice) else rows
    for _ in range(MAX_VLAN_TAGS):
        tagged = np.flatnonzero((et == VLAN_TPIDS[0]) | (et == VLAN_TPIDS[1]) | (et == VLAN_TPIDS[2]))
        if not len(tagged):
            break
        for sub, rel in by_offset(tagged, l3[tagged]):
            whole = rel + 4 <= caplen[sub]
            et[sub] = np.where(whole, h.u16(all_rows[sub], rel + 2), 0)
        l3[tagged] += 4
        vlan[tagged] += 1
    return l3, et, vlan
