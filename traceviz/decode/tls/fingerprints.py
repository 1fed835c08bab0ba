"""TLS fingerprints: JA3 and JA3S (salesforce/ja3), JA4 and JA4S (FoxIO JA4+
technical details).  Pure functions of parsed hellos.

JA4/JA4S are (c) FoxIO under the FoxIO License 1.1 for the method; these
functions compute the published format for analysis.
"""

from __future__ import annotations

import hashlib

from traceviz.decode.tls.messages import EXT_ALPN, EXT_SERVER_NAME, ClientHello, ServerHello
from traceviz.decode.tls.names import is_grease

_JA4_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3",
                 0x0002: "s2", 0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}


def _clean(values) -> list[int]:
    return [v for v in values if not is_grease(v)]


def _dash(values) -> str:
    return "-".join(str(v) for v in values)


def ja3_string(ch: ClientHello) -> str:
    return ",".join([str(ch.legacy_version), _dash(_clean(ch.ciphers)), _dash(_clean(ch.extensions)),
                     _dash(_clean(ch.groups)), _dash(ch.ec_point_formats)])


def ja3(ch: ClientHello) -> str:
    return hashlib.md5(ja3_string(ch).encode()).hexdigest()


def ja3s_string(sh: ServerHello) -> str:
    return ",".join([str(sh.legacy_version), str(sh.cipher if sh.cipher is not None else ""),
                     _dash(_clean(sh.extensions))])


def ja3s(sh: ServerHello) -> str:
    return hashlib.md5(ja3s_string(sh).encode()).hexdigest()


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


def ja4_a(ch: ClientHello, transport: str = "t") -> str:
    version = _ja4_version(ch.supported_versions) if ch.supported_versions else _ja4_version([ch.legacy_version])
    sni = "d" if EXT_SERVER_NAME in ch.extensions else "i"
    first = ch.alpn_raw[0] if ch.alpn_raw else None
    return (transport + version + sni + _count(len(_clean(ch.ciphers))) +
            _count(len(_clean(ch.extensions))) + alpn_chars(first))


def ja4_raw(ch: ClientHello, transport: str = "t", original: bool = False) -> str:
    """JA4_r (sorted) or, with ``original``, JA4_ro (wire order, SNI and ALPN kept)."""
    ciphers = _hex4(_clean(ch.ciphers))
    exts = _clean(ch.extensions)
    if not original:
        ciphers = sorted(ciphers)
        exts = sorted(e for e in exts if e not in (EXT_SERVER_NAME, EXT_ALPN))
    c = ",".join(_hex4(exts))
    sigs = ",".join(_hex4(_clean(ch.signature_algorithms)))
    return f"{ja4_a(ch, transport)}_{','.join(ciphers)}_{c}" + (f"_{sigs}" if sigs else "")


def ja4(ch: ClientHello, transport: str = "t", original: bool = False) -> str:
    """JA4 (or JA4_o with ``original``)."""
    ciphers = _hex4(_clean(ch.ciphers))
    exts = _clean(ch.extensions)
    if not original:
        ciphers = sorted(ciphers)
        exts = sorted(e for e in exts if e not in (EXT_SERVER_NAME, EXT_ALPN))
    b = _hash12(",".join(ciphers))
    ext_text = ",".join(_hex4(exts))
    sigs = ",".join(_hex4(_clean(ch.signature_algorithms)))
    c = _hash12(ext_text + (f"_{sigs}" if sigs else "")) if ext_text else "000000000000"
    return f"{ja4_a(ch, transport)}_{b}_{c}"


def ja4s(sh: ServerHello, transport: str = "t", alpn_raw: bytes | None = None) -> str:
    version = _JA4_VERSIONS.get(sh.version, "00")
    exts = _clean(sh.extensions)
    raw = alpn_raw if alpn_raw is not None else sh.alpn_raw
    a = transport + version + _count(len(exts)) + alpn_chars(raw)
    cipher = f"{sh.cipher:04x}" if sh.cipher is not None else "0000"
    return f"{a}_{cipher}_{_hash12(','.join(_hex4(exts)))}"
