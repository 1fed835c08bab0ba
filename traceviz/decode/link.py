"""Link layers, vectorised: where each frame's network header starts.

For every frame we find ``l3`` (offset of the network header in the buffer)
and ``ethertype`` (0x0800 IPv4, 0x86DD IPv6, anything else: not IP), for all
frames of one link type at once.  VLAN tags (802.1Q, 802.1ad QinQ and the old
0x9100) and PPPoE session headers are peeled repeatedly, whatever link layer
carried them.

PPP comes in several wrappings, told apart per frame as Wireshark does: raw
PPP (LINKTYPE_PPP, 9) with or without the HDLC address and control bytes
(FF 03) and with a one- or two-byte protocol field; PPP in HDLC-like framing
(50), where a first byte of 0x0F or 0x8F means Cisco HDLC instead; Cisco
HDLC (104); PPPoE (51).  PPP's protocol numbers 0x0021 and 0x0057 are IPv4
and IPv6.
"""

from __future__ import annotations

import numpy as np

from traceviz.sources.gather import Heads, by_offset

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
PPPOE_SESSION = 0x8864
PPP_IPV4, PPP_IPV6 = 0x0021, 0x0057
MAX_VLAN_TAGS = 4

# LINKTYPE_* value -> the name libpcap gives it (as tshark/capinfos show them).
LINK_NAMES = {
    0: "NULL", 1: "EN10MB", 9: "PPP", 12: "RAW", 14: "RAW", 50: "PPP_HDLC", 51: "PPP_ETHER",
    101: "RAW", 104: "C_HDLC", 108: "LOOP", 113: "LINUX_SLL", 228: "IPV4", 229: "IPV6", 276: "LINUX_SLL2",
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
    elif linktype in (9, 50):                           # PPP, PPP in HDLC-like framing
        et, hdr = _ppp(h, rows, caplen, cisco=linktype == 50)
        l3 += hdr
    elif linktype == 104:                               # Cisco HDLC: address, control, ethertype
        et = np.where(caplen >= 4, h.u16(rows, 2), 0)
        l3 += 4
    elif linktype == 51:                                # PPPoE: 6-byte header, then the PPP protocol
        et = np.where(caplen >= 8, _ppp_ethertype(h.u16(rows, 6)), 0)
        l3 += 8
    elif linktype == 228:
        et = np.where(caplen >= 1, ETH_IPV4, 0)
    elif linktype == 229:
        et = np.where(caplen >= 1, ETH_IPV6, 0)
    else:
        return l3, et, np.zeros(n, np.int8)
    et = et.astype(np.int64)
    return _peel_vlans(h, rows, l3, et, caplen)


def _ppp_ethertype(proto: np.ndarray) -> np.ndarray:
    """PPP protocol numbers as ethertypes (IPv4, IPv6; anything else 0)."""
    proto = proto.astype(np.int64)
    return np.where(proto == PPP_IPV4, ETH_IPV4, np.where(proto == PPP_IPV6, ETH_IPV6, 0))


def _ppp(h: Heads, rows, caplen: np.ndarray, cisco: bool) -> tuple[np.ndarray, np.ndarray]:
    """(ethertype, header length) of PPP frames, each read as its first bytes say."""
    b0, b1, b2 = h.u8(rows, 0).astype(np.int64), h.u8(rows, 1).astype(np.int64), h.u8(rows, 2).astype(np.int64)
    framed = (b0 == 0xFF) & (b1 == 0x03)                     # HDLC address and control bytes
    first = np.where(framed, b2, b0)
    short = (first & 1) == 1                                 # a compressed, one-byte protocol field
    proto = np.where(short, first, np.where(framed, h.u16(rows, 2), h.u16(rows, 0)))
    hdr = np.where(framed, 2, 0) + np.where(short, 1, 2)
    et = np.where(caplen >= hdr, _ppp_ethertype(proto), 0)
    if cisco:                                                # Cisco HDLC in a PPP-in-HDLC file
        chdlc = (b0 == 0x0F) | (b0 == 0x8F)
        et = np.where(chdlc, np.where(caplen >= 4, h.u16(rows, 2), 0), et)
        hdr = np.where(chdlc, 4, hdr)
    return et.astype(np.int64), hdr.astype(np.int64)


def _peel_vlans(h: Heads, rows, l3: np.ndarray, et: np.ndarray, caplen: np.ndarray):
    """Peel VLAN tags and PPPoE session headers, however they nest."""
    vlan = np.zeros(len(l3), np.int8)
    all_rows = np.arange(len(l3)) if isinstance(rows, slice) else rows
    for _ in range(MAX_VLAN_TAGS):
        tagged = np.flatnonzero((et == VLAN_TPIDS[0]) | (et == VLAN_TPIDS[1]) | (et == VLAN_TPIDS[2]))
        pppoe = np.flatnonzero(et == PPPOE_SESSION)
        if not len(tagged) and not len(pppoe):
            break
        for sub, rel in by_offset(tagged, l3[tagged]):
            whole = rel + 4 <= caplen[sub]
            et[sub] = np.where(whole, h.u16(all_rows[sub], rel + 2), 0)
        for sub, rel in by_offset(pppoe, l3[pppoe]):
            whole = rel + 8 <= caplen[sub]
            et[sub] = np.where(whole, _ppp_ethertype(h.u16(all_rows[sub], rel + 6)), 0)
        l3[tagged] += 4
        l3[pppoe] += 8
        vlan[tagged] += 1
    return l3, et, vlan
