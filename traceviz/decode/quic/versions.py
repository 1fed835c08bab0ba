"""What a QUIC version number means: its name, its family, how its Initial
packets are protected and how its Retry packets are signed.

Numbers and constants come from RFC 9000/9001 (v1), RFC 9369 (v2), the
IETF drafts they replaced (draft-22 to draft-34: ``0xff0000NN``), Google's
QUIC (``Q0NN`` with its own crypto, ``T0NN`` with TLS 1.3 in IETF-style
packets), Facebook's mvfst (``0xfaceb00N``) and the greased versions
``0x?a?a?a?a`` that clients send to keep version negotiation working
(RFC 9000 section 15).

The salts and Retry keys of v1 and v2 are aioquic's; aioquic does not know
the drafts' or Google's (an endpoint no longer speaks them, an observer
still meets them in captures), so those are written here.
"""

from __future__ import annotations

from aioquic.quic.packet import (RETRY_AEAD_KEY_VERSION_1, RETRY_AEAD_KEY_VERSION_2, RETRY_AEAD_NONCE_VERSION_1,
                                 RETRY_AEAD_NONCE_VERSION_2)

NEGOTIATION = 0x00000000
V1 = 0x00000001
V2 = 0x6B3343CF
V2_DRAFT = 0x709A50C4          # draft-ietf-quic-v2-00 .. -10 used this number

_SALT_DRAFT_22 = bytes.fromhex("7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a")
_SALT_DRAFT_23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")     # drafts 23-28
_SALT_DRAFT_29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")     # drafts 29-32
_SALT_T050 = bytes.fromhex("7ff579e5acd072915580304c43a2367c60488310")
_SALT_T051 = bytes.fromhex("7a4edef4e7ccee5fa4506c19124fc8ccda6e033d")

# Retry integrity (RFC 9001 5.8 and the drafts): AES-128-GCM key and nonce.
_RETRY_DRAFT_25 = (bytes.fromhex("4d32ecdb2a2133c841e4043df27d4430"), bytes.fromhex("4d1611d05513a552c587d575"))
_RETRY_DRAFT_29 = (bytes.fromhex("ccce187ed09a09d05728155a6cb96be1"), bytes.fromhex("e54930f97f2136f0530a8c1c"))

# mvfst's own numbers stand for the IETF draft each release followed.
_MVFST_DRAFT = {0xFACEB001: 22, 0xFACEB002: 27, 0xFACEB00E: 27, 0xFACEB010: 29, 0xFACEB011: 34}


def draft(version: int) -> int | None:
    """The IETF draft a version follows (34 stands for anything final: v1 and v2)."""
    if version >> 8 == 0xFF0000:
        return version & 0xFF
    if version in _MVFST_DRAFT:
        return _MVFST_DRAFT[version]
    if version in (V1, V2, V2_DRAFT):
        return 34
    return None


def is_grease(version: int) -> bool:
    """A reserved version (RFC 9000 15): sent to exercise version negotiation."""
    return version & 0x0F0F0F0F == 0x0A0A0A0A


def is_google(version: int) -> bool:
    """Google QUIC: ``Q0NN`` (its own crypto) or ``T0NN`` (TLS in IETF-style packets)."""
    return version >> 16 in (0x5130, 0x5430) and all(0x30 <= (version >> s) & 0xFF <= 0x39 for s in (8, 0))


def family(version: int) -> str:
    """``ietf``, ``google``, ``mvfst``, ``grease``, ``negotiation`` or ``unknown``."""
    if version == NEGOTIATION:
        return "negotiation"
    if is_grease(version):
        return "grease"
    if is_google(version):
        return "google"
    if version >> 4 == 0xFACEB00 or version >> 4 == 0xFACEB01:
        return "mvfst"
    if draft(version) is not None:
        return "ietf"
    return "unknown"


def name(version: int | None) -> str | None:
    """``QUIC v1``, ``QUIC v2``, ``draft-29``, ``Google Q050``, ``mvfst (draft-27)``, ``grease 0x1a2a3a4a``..."""
    if version is None:
        return None
    if version == V1:
        return "QUIC v1"
    if version in (V2, V2_DRAFT):
        return "QUIC v2" if version == V2 else "QUIC v2 (draft)"
    if version == NEGOTIATION:
        return "Version Negotiation"
    kind = family(version)
    if kind == "google":
        return "Google " + version.to_bytes(4, "big").decode("ascii")
    if kind == "grease":
        return f"grease {hex_version(version)}"
    if kind == "mvfst":
        d = draft(version)
        return f"mvfst {hex_version(version)}" + (f" (draft-{d})" if d else "")
    if version >> 8 == 0xFF0000:
        return f"draft-{version & 0xFF}"
    return f"unknown {hex_version(version)}"


def hex_version(version: int | None) -> str | None:
    """``0x`` and 8 hex digits, as the ``quic`` table's ``version`` column writes it."""
    return None if version is None else f"0x{version:08x}"


def known(version: int) -> bool:
    """A version whose packets we can read past the invariant header fields."""
    if version in (V2, V2_DRAFT, 0x54303530, 0x54303531):
        return True
    d = draft(version)
    return d is not None and d >= 22


def initial_salt(version: int) -> bytes | None:
    """The salt that protects this version's Initial packets, or None if unknown."""
    # aioquic.quic.crypto costs a tenth of a second to import: only when keys are made.
    from aioquic.quic.crypto import INITIAL_SALT_VERSION_1, INITIAL_SALT_VERSION_2
    if version in (V2, V2_DRAFT):
        return INITIAL_SALT_VERSION_2
    if version == 0x54303530:
        return _SALT_T050
    if version == 0x54303531:
        return _SALT_T051
    d = draft(version)
    if d is None or d < 22:
        return None
    if d == 22:
        return _SALT_DRAFT_22
    if d <= 28:
        return _SALT_DRAFT_23
    if d <= 32:
        return _SALT_DRAFT_29
    return INITIAL_SALT_VERSION_1


def uses_v2_labels(version: int) -> bool:
    """QUIC v2 derives its packet keys with ``quicv2`` labels and renumbers long header types."""
    return version in (V2, V2_DRAFT)


def retry_key(version: int) -> tuple[bytes, bytes] | None:
    """(key, nonce) of the Retry integrity tag; None where Retry carries no tag (drafts before 25)."""
    if version in (V2, V2_DRAFT):
        return RETRY_AEAD_KEY_VERSION_2, RETRY_AEAD_NONCE_VERSION_2
    d = draft(version)
    if version in (0x54303530, 0x54303531):
        d = 29
    if d is None or d < 25:
        return None
    if d <= 28:
        return _RETRY_DRAFT_25
    if d <= 32:
        return _RETRY_DRAFT_29
    return RETRY_AEAD_KEY_VERSION_1, RETRY_AEAD_NONCE_VERSION_1


def long_type(version: int, bits: int) -> str:
    """The long header packet type named by the first byte's two type bits."""
    if uses_v2_labels(version):
        return ("Retry", "Initial", "0-RTT", "Handshake")[bits]
    return ("Initial", "0-RTT", "Handshake", "Retry")[bits]
