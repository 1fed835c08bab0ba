"""UDP datagrams cut into QUIC packets, before any decryption.

A datagram holds one packet or several coalesced ones (RFC 9000 12.2): long
header packets carry their length, a short header packet runs to the end of
the datagram.  ``parse_datagram`` returns each packet's ``Header``, read as
far as the version allows without keys: the invariants (RFC 8999) for any
version, the type, token and length for versions we know, the supported
versions of a Version Negotiation packet, and a Retry's integrity tag,
checked (``Header.retry_ok``).

aioquic's ``pull_quic_header`` reads the header of every IETF version from
draft-25 on; what it does not read is written here: the Retry of drafts
before 25 (an Original DCID field instead of an integrity tag), Google QUIC's
headers (``Q046`` packs both connection ID lengths into one byte; ``Q043``
and older have no long header at all), versions we cannot read past the
invariants, and the zero padding some stacks put after the last packet.
Hostile bytes never raise: what cannot be read is returned as ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass

from aioquic.buffer import Buffer, BufferReadError
from aioquic.quic.packet import QuicPacketType, get_retry_integrity_tag, pull_quic_header

from traceviz.decode.quic import versions as qv

INITIAL, ZERO_RTT, HANDSHAKE, RETRY, VN, ONE_RTT = "Initial", "0-RTT", "Handshake", "Retry", "VN", "1-RTT"
OPAQUE = "opaque"          # a long header of a version whose layout we do not know
GOOGLE = "gQUIC"           # a Google QUIC packet (its own crypto: not decrypted)
_TYPES = {QuicPacketType.INITIAL: INITIAL, QuicPacketType.ZERO_RTT: ZERO_RTT,
          QuicPacketType.HANDSHAKE: HANDSHAKE, QuicPacketType.RETRY: RETRY}
MAX_CID = 20


@dataclass(frozen=True)
class Header:
    """One packet's header as it was sent (header protection still on).

    Fields: type (``Initial``, ``0-RTT``, ``Handshake``, ``Retry``, ``VN``,
    ``1-RTT``, ``opaque`` or ``gQUIC``), version (None for short headers),
    dcid, scid, token, start and size (its bytes in the datagram), pn_offset
    (from ``start``: where the protected packet number begins; None when the
    packet has none or we cannot tell), spin (the short header's spin bit),
    versions (a VN packet's list), retry_ok (a Retry's integrity tag checked
    against ``odcid``; None when unchecked), odcid (the Original DCID a
    Retry answers).
    """

    type: str
    version: int | None
    dcid: bytes
    scid: bytes
    start: int
    size: int
    pn_offset: int | None = None
    token: bytes = b""
    spin: bool | None = None
    versions: tuple = ()
    retry_tag: bytes = b""
    retry_ok: bool | None = None
    odcid: bytes = b""

    @property
    def long(self) -> bool:
        return self.version is not None


@dataclass(frozen=True)
class Datagram:
    """A datagram's packets, and why reading stopped early (``error``; None if it did not).
    ``padding``: zero bytes after the last packet."""

    packets: tuple
    error: str | None = None
    padding: int = 0


def parse_datagram(data: bytes, short_dcid_len: int | None = None, odcid: bytes | None = None) -> Datagram:
    """The packets of one UDP payload.

    ``short_dcid_len``: the connection ID length short headers use on this
    path (a short header does not say); None when not yet known.  ``odcid``:
    the client's original DCID, to check a Retry's integrity tag against.
    """
    packets: list[Header] = []
    pos = 0
    data = bytes(data)
    while pos < len(data):
        if packets and not any(data[pos:]):
            return Datagram(tuple(packets), padding=len(data) - pos)
        try:
            h = _one(data, pos, short_dcid_len, odcid)
        except (BufferReadError, ValueError, KeyError, IndexError) as e:
            return Datagram(tuple(packets), f"packet at byte {pos}: {_reason(e)}")
        packets.append(h)
        if h.size <= 0:
            break
        pos = h.start + h.size
    return Datagram(tuple(packets))


def _reason(e: Exception) -> str:
    if isinstance(e, BufferReadError):
        return "header runs past the end of the datagram"
    return str(e) or type(e).__name__


def _one(data: bytes, pos: int, short_dcid_len: int | None, odcid: bytes | None) -> Header:
    first = data[pos]
    if not first & 0x80:
        if pos == 0 and first & 0x09 == 0x09 and len(data) >= 13 and data[9:11] in (b"Q0", b"T0"):
            return _google_public(data)
        return _short(data, pos, short_dcid_len)
    if len(data) - pos < 7:
        raise ValueError("long header shorter than 7 bytes")
    version = int.from_bytes(data[pos + 1:pos + 5], "big")
    if version == qv.NEGOTIATION:
        return _negotiation(data, pos)
    if qv.is_google(version) and version >> 16 == 0x5130 and _google_number(version) <= 48:
        return _google_long_q046(data, pos, version)
    if not qv.known(version) and not qv.is_google(version):
        return _invariants(data, pos, version, OPAQUE)
    if qv.long_type(version, (first & 0x30) >> 4) == RETRY and (qv.draft(version) or 99) < 25 \
            and not qv.is_google(version):
        return _draft_retry(data, pos, version)
    buf = Buffer(data=data[pos:])
    h = pull_quic_header(buf)
    kind = qv.long_type(version, (first & 0x30) >> 4)
    if qv.is_google(version) and version >> 16 == 0x5130:
        # Q050's packets follow the IETF layout but carry Google's own crypto.
        return Header(GOOGLE, version, h.destination_cid, h.source_cid, pos, h.packet_length, token=h.token)
    if kind == RETRY:
        return _retry(data, pos, version, h, odcid)
    return Header(kind, version, h.destination_cid, h.source_cid, pos, h.packet_length,
                  pn_offset=buf.tell(), token=h.token)


def _google_number(version: int) -> int:
    return int(version.to_bytes(4, "big")[1:].decode("ascii"))


def _short(data: bytes, pos: int, dcid_len: int | None) -> Header:
    if not data[pos] & 0x40:
        raise ValueError("short header with the fixed bit clear (not QUIC, or a stateless reset)")
    size = len(data) - pos
    if dcid_len is None:
        return Header(ONE_RTT, None, b"", b"", pos, size, spin=bool(data[pos] & 0x20))
    if 1 + dcid_len > size:
        raise ValueError("short header shorter than its connection ID")
    return Header(ONE_RTT, None, data[pos + 1:pos + 1 + dcid_len], b"", pos, size, pn_offset=1 + dcid_len,
                  spin=bool(data[pos] & 0x20))


def _negotiation(data: bytes, pos: int) -> Header:
    buf = Buffer(data=data[pos:])
    h = pull_quic_header(buf)
    return Header(VN, qv.NEGOTIATION, h.destination_cid, h.source_cid, pos, len(data) - pos,
                  versions=tuple(h.supported_versions))


def _invariants(data: bytes, pos: int, version: int, kind: str) -> Header:
    """Only what RFC 8999 guarantees for every version: the connection IDs. The rest of the datagram is its."""
    buf = Buffer(data=data[pos + 5:])
    dcid = _cid(buf)
    scid = _cid(buf)
    return Header(kind, version, dcid, scid, pos, len(data) - pos)


def _cid(buf: Buffer) -> bytes:
    return buf.pull_bytes(buf.pull_uint8())


def _retry(data: bytes, pos: int, version: int, h, odcid: bytes | None) -> Header:
    key = qv.retry_key(version)
    ok = None
    packet = data[pos:pos + h.packet_length]
    if key is not None and odcid is not None and len(packet) >= 16:
        ok = _retry_tag(packet[:-16], odcid, version, key) == h.integrity_tag
    return Header(RETRY, version, h.destination_cid, h.source_cid, pos, len(data) - pos, token=h.token,
                  retry_tag=h.integrity_tag, retry_ok=ok, odcid=odcid or b"")


def _retry_tag(without_tag: bytes, odcid: bytes, version: int, key: tuple[bytes, bytes]) -> bytes:
    if version in (qv.V1, qv.V2):
        return get_retry_integrity_tag(without_tag, odcid, version=version)
    # aioquic knows only v1's and v2's key: the drafts' keys, same construction (RFC 9001 5.8).
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    pseudo = bytes([len(odcid)]) + odcid + without_tag
    return AESGCM(key[0]).encrypt(key[1], b"", pseudo)


def _draft_retry(data: bytes, pos: int, version: int) -> Header:
    """Drafts before 25: the Retry names the Original DCID itself (its length in the first byte's low bits)."""
    buf = Buffer(data=data[pos + 5:])
    dcid, scid = _cid(buf), _cid(buf)
    odcid = _cid(buf)
    token = data[pos + 5 + buf.tell():]
    return Header(RETRY, version, dcid, scid, pos, len(data) - pos, token=token, odcid=odcid)


def _google_long_q046(data: bytes, pos: int, version: int) -> Header:
    """Q046: one byte holds both connection ID lengths (each n+3, or 0)."""
    lens = data[pos + 5]
    dl, sl = lens >> 4, lens & 0x0F
    dl, sl = (dl + 3 if dl else 0), (sl + 3 if sl else 0)
    start = pos + 6
    if start + dl + sl > len(data):
        raise ValueError("Google QUIC header runs past the end of the datagram")
    return Header(GOOGLE, version, data[start:start + dl], data[start + dl:start + dl + sl], pos, len(data) - pos)


def _google_public(data: bytes) -> Header:
    """Google QUIC Q043 and older: a public header with the version after an 8-byte connection ID."""
    version = int.from_bytes(data[9:13], "big")
    return Header(GOOGLE, version, data[1:9], b"", 0, len(data))
