"""TLS fingerprints: JA3 and JA3S (salesforce/ja3), JA4 and JA4S (FoxIO JA4+
technical details).  Pure functions of parsed hellos.

A client sends the same hello shape (versions, suites, extensions, groups,
signature algorithms, ALPN) on every connection, and a server answers alike:
each fingerprint is computed once per shape (``_client_shape`` and
``_server_shape`` hold exactly the fields it reads) and remembered.

JA4/JA4S are (c) FoxIO under the FoxIO License 1.1 for the method; these
functions compute the published format for analysis.
"""

from __future__ import annotations

import functools
import hashlib
from typing import NamedTuple

from traceviz.decode.tls.messages import EXT_ALPN, EXT_SERVER_NAME, ClientHello, ServerHello
from traceviz.decode.tls.names import is_grease

_JA4_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3",
                 0x0002: "s2", 0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}


class _ClientShape(NamedTuple):
    """The ClientHello fields the fingerprints read, hashable (same names as ``ClientHello``)."""

    legacy_version: int
    ciphers: tuple
    extensions: tuple
    groups: tuple
    ec_point_formats: tuple
    supported_versions: tuple
    signature_algorithms: tuple
    alpn_raw: tuple            # the first ALPN value only


class _ServerShape(NamedTuple):
    legacy_version: int
    cipher: int | None
    extensions: tuple
    version: int
    alpn_raw: bytes | None


def _client_shape(ch: ClientHello) -> _ClientShape:
    return _ClientShape(ch.legacy_version, tuple(ch.ciphers), tuple(ch.extensions), tuple(ch.groups),
                        tuple(ch.ec_point_formats), tuple(ch.supported_versions),
                        tuple(ch.signature_algorithms), tuple(ch.alpn_raw[:1]))


def _server_shape(sh: ServerHello) -> _ServerShape:
    return _ServerShape(sh.legacy_version, sh.cipher, tuple(sh.extensions), sh.version, sh.alpn_raw)


_remember = functools.lru_cache(maxsize=4096)


def _clean(values) -> list[int]:
    return [v for v in values if not is_grease(v)]


def _dash(values) -> str:
    return "-".join(str(v) for v in values)


def ja3_string(ch: ClientHello) -> str:
    return _ja3_string(_client_shape(ch))


def ja3(ch: ClientHello) -> str:
    return _ja3(_client_shape(ch))


def ja3s_string(sh: ServerHello) -> str:
    return _ja3s_string(_server_shape(sh))


def ja3s(sh: ServerHello) -> str:
    return _ja3s(_server_shape(sh))


def ja4_a(ch: ClientHello, transport: str = "t") -> str:
    return _ja4_a(_client_shape(ch), transport)


def ja4_raw(ch: ClientHello, transport: str = "t", original: bool = False) -> str:
    """JA4_r (sorted) or, with ``original``, JA4_ro (wire order, SNI and ALPN kept)."""
    return _ja4_raw(_client_shape(ch), transport, original)


def ja4(ch: ClientHello, transport: str = "t", original: bool = False) -> str:
    """JA4 (or JA4_o with ``original``)."""
    return _ja4(_client_shape(ch), transport, original)


def client_prints(ch: ClientHello, transport: str = "t") -> dict[str, str]:
    """ja3, ja3_string, ja4 and ja4_r of one hello, its shape made once (a ``tls`` row has all four)."""
    shape = _client_shape(ch)
    return {"ja3": _ja3(shape), "ja3_string": _ja3_string(shape), "ja4": _ja4(shape, transport, False),
            "ja4_r": _ja4_raw(shape, transport, False)}


def ja4s(sh: ServerHello, transport: str = "t", alpn_raw: bytes | None = None) -> str:
    return _ja4s(_server_shape(sh), transport, alpn_raw)


@_remember
def _ja3_string(ch: _ClientShape) -> str:
    return ",".join([str(ch.legacy_version), _dash(_clean(ch.ciphers)), _dash(_clean(ch.extensions)),
                     _dash(_clean(ch.groups)), _dash(ch.ec_point_formats)])


@_remember
def _ja3(ch: _ClientShape) -> str:
    return hashlib.md5(_ja3_string(ch).encode()).hexdigest()


@_remember
def _ja3s_string(sh: _ServerShape) -> str:
    return ",".join([str(sh.legacy_version), str(sh.cipher if sh.cipher is not None else ""),
                     _dash(_clean(sh.extensions))])


@_remember
def _ja3s(sh: _ServerShape) -> str:
    return hashlib.md5(_ja3s_string(sh).encode()).hexdigest()


def _alnum(b: int) -> bool:
    return 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A


def alpn_chars(raw: bytes | None) -> str:
    """First and last character of an ALPN value, per JA4 (hex digits if not alphanumeric)."""
    if not raw:
        return "00"
    first, last = raw[0], raw[-1]
    if _alnum(first) and _alnum(last):
        return chr(first) + chr(last)
    h = raw.hex()
    return h[0] + h[-1]


def _count(n: int) -> str:
    return f"{min(n, 99):02d}"


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"


def _hex4(values) -> list[str]:
    return [f"{v:04x}" for v in values]


def _ja4_version(versions) -> str:
    clean = _clean(versions)
    return _JA4_VERSIONS.get(max(clean), "00") if clean else "00"


@_remember
def _ja4_a(ch: _ClientShape, transport: str) -> str:
    version = _ja4_version(ch.supported_versions) if ch.supported_versions else _ja4_version([ch.legacy_version])
    sni = "d" if EXT_SERVER_NAME in ch.extensions else "i"
    first = ch.alpn_raw[0] if ch.alpn_raw else None
    return (transport + version + sni + _count(len(_clean(ch.ciphers))) +
            _count(len(_clean(ch.extensions))) + alpn_chars(first))


@_remember
def _ja4_raw(ch: _ClientShape, transport: str, original: bool) -> str:
    ciphers = _hex4(_clean(ch.ciphers))
    exts = _clean(ch.extensions)
    if not original:
        ciphers = sorted(ciphers)
        exts = sorted(e for e in exts if e not in (EXT_SERVER_NAME, EXT_ALPN))
    c = ",".join(_hex4(exts))
    sigs = ",".join(_hex4(_clean(ch.signature_algorithms)))
    return f"{_ja4_a(ch, transport)}_{','.join(ciphers)}_{c}" + (f"_{sigs}" if sigs else "")


@_remember
def _ja4(ch: _ClientShape, transport: str, original: bool) -> str:
    ciphers = _hex4(_clean(ch.ciphers))
    exts = _clean(ch.extensions)
    if not original:
        ciphers = sorted(ciphers)
        exts = sorted(e for e in exts if e not in (EXT_SERVER_NAME, EXT_ALPN))
    b = _hash12(",".join(ciphers))
    ext_text = ",".join(_hex4(exts))
    sigs = ",".join(_hex4(_clean(ch.signature_algorithms)))
    c = _hash12(ext_text + (f"_{sigs}" if sigs else "")) if ext_text else "000000000000"
    return f"{_ja4_a(ch, transport)}_{b}_{c}"


@_remember
def _ja4s(sh: _ServerShape, transport: str, alpn_raw: bytes | None) -> str:
    version = _JA4_VERSIONS.get(sh.version, "00")
    exts = _clean(sh.extensions)
    raw = alpn_raw if alpn_raw is not None else sh.alpn_raw
    a = transport + version + _count(len(exts)) + alpn_chars(raw)
    cipher = f"{sh.cipher:04x}" if sh.cipher is not None else "0000"
    return f"{a}_{cipher}_{_hash12(','.join(_hex4(exts)))}"
