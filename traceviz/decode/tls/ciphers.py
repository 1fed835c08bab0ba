"""Cipher suites we can decrypt, and record protection per direction.

A ``RecordCipher`` opens the records of one direction in one epoch: it
holds the keys and the sequence number.  ``open`` returns the plaintext
(TLS 1.3: still with its inner content type and padding) or None when the
record does not authenticate -- bad data is never an exception here.

The AEADs and AES-CBC are ``cryptography``'s; the TLS framing around them
(nonces, additional data, CBC padding and MAC checks) is written out here
because no library exposes it for one-way, observe-only use.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305


@dataclass(frozen=True)
class Suite:
    code: int
    name: str
    cipher: str           # AES-128-GCM, AES-256-GCM, CHACHA20-POLY1305, AES-128-CCM, AES-128-CBC, AES-256-CBC
    key_len: int
    prf_hash: str         # hashlib name: the PRF (TLS 1.2) or HKDF (TLS 1.3) hash
    mac: str | None = None    # CBC suites: the HMAC hash
    tls13: bool = False
    kx: str = ""          # RSA, ECDHE, DHE ("" for TLS 1.3)

    @property
    def aead(self) -> bool:
        return self.mac is None

    @property
    def fixed_iv_len(self) -> int:
        """TLS 1.2 implicit IV bytes from the key block."""
        if self.cipher.startswith("CHACHA20"):
            return 12
        if self.aead:
            return 4
        return 16         # CBC: only TLS 1.0 uses it (the IV for the first record)

    @property
    def mac_len(self) -> int:
        return hashlib.new(self.mac).digest_size if self.mac else 0

    @property
    def tag_len(self) -> int:
        return 8 if self.cipher.endswith("CCM-8") else 16


def _suites() -> dict[int, Suite]:
    rows = [
        # TLS 1.3
        (0x1301, "TLS_AES_128_GCM_SHA256", "AES-128-GCM", 16, "sha256", None, True, ""),
        (0x1302, "TLS_AES_256_GCM_SHA384", "AES-256-GCM", 32, "sha384", None, True, ""),
        (0x1303, "TLS_CHACHA20_POLY1305_SHA256", "CHACHA20-POLY1305", 32, "sha256", None, True, ""),
        (0x1304, "TLS_AES_128_CCM_SHA256", "AES-128-CCM", 16, "sha256", None, True, ""),
        (0x1305, "TLS_AES_128_CCM_8_SHA256", "AES-128-CCM-8", 16, "sha256", None, True, ""),
    ]
    # TLS 1.2 AEAD
    for code, kx, bits, h in [
        (0x009C, "RSA", 128, "sha256"), (0x009D, "RSA", 256, "sha384"),
        (0x009E, "DHE_RSA", 128, "sha256"), (0x009F, "DHE_RSA", 256, "sha384"),
        (0xC02B, "ECDHE_ECDSA", 128, "sha256"), (0xC02C, "ECDHE_ECDSA", 256, "sha384"),
        (0xC02F, "ECDHE_RSA", 128, "sha256"), (0xC030, "ECDHE_RSA", 256, "sha384"),
    ]:
        rows.append((code, f"TLS_{kx}_WITH_AES_{bits}_GCM_{h.upper()}", f"AES-{bits}-GCM",
                     bits // 8, h, None, False, kx))
    for code, kx in [(0xCCA8, "ECDHE_RSA"), (0xCCA9, "ECDHE_ECDSA"), (0xCCAA, "DHE_RSA")]:
        rows.append((code, f"TLS_{kx}_WITH_CHACHA20_POLY1305_SHA256", "CHACHA20-POLY1305",
                     32, "sha256", None, False, kx))
    # TLS 1.0-1.2 AES-CBC with HMAC
    for code, kx, bits, mac in [
        (0x002F, "RSA", 128, "sha1"), (0x0035, "RSA", 256, "sha1"),
        (0x003C, "RSA", 128, "sha256"), (0x003D, "RSA", 256, "sha256"),
        (0x0033, "DHE_RSA", 128, "sha1"), (0x0039, "DHE_RSA", 256, "sha1"),
        (0x0067, "DHE_RSA", 128, "sha256"), (0x006B, "DHE_RSA", 256, "sha256"),
        (0xC009, "ECDHE_ECDSA", 128, "sha1"), (0xC00A, "ECDHE_ECDSA", 256, "sha1"),
        (0xC013, "ECDHE_RSA", 128, "sha1"), (0xC014, "ECDHE_RSA", 256, "sha1"),
        (0xC023, "ECDHE_ECDSA", 128, "sha256"), (0xC024, "ECDHE_ECDSA", 256, "sha384"),
        (0xC027, "ECDHE_RSA", 128, "sha256"), (0xC028, "ECDHE_RSA", 256, "sha384"),
    ]:
        mac_name = "SHA" if mac == "sha1" else mac.upper()
        prf_hash = "sha384" if mac == "sha384" else "sha256"
        rows.append((code, f"TLS_{kx}_WITH_AES_{bits}_CBC_{mac_name}", f"AES-{bits}-CBC",
                     bits // 8, prf_hash, mac, False, kx))
    return {r[0]: Suite(*r) for r in rows}


SUITES: dict[int, Suite] = _suites()


def suite(code: int) -> Suite | None:
    return SUITES.get(code)


def _aead(name: str, key: bytes):
    if name.startswith("AES") and "GCM" in name:
        return AESGCM(key)
    if name.startswith("CHACHA20"):
        return ChaCha20Poly1305(key)
    return AESCCM(key, tag_length=8 if name.endswith("CCM-8") else 16)


def _xor_seq(iv: bytes, seq: int) -> bytes:
    return (int.from_bytes(iv, "big") ^ seq).to_bytes(len(iv), "big")


# After records went missing (a capture gap), the sender's sequence number is
# ahead of ours: once these keys have opened a record, a failure tries the next
# few sequence numbers before giving up.
RESYNC_WINDOW = 32


class RecordCipher:
    """Opens one direction's records in one epoch; counts its sequence number."""

    def __init__(self) -> None:
        self.seq = 0
        self.proven = False      # these keys opened a record: a failure is loss, not wrong keys
        self.skipped = 0         # sequence numbers skipped to resynchronise

    def __repr__(self) -> str:      # never the keys
        return f"{type(self).__name__}(seq={self.seq})"

    def open(self, header: bytes, body: bytes) -> bytes | None:
        """The plaintext of one record, or None if it does not authenticate.
        The sequence number advances either way: the sender used it."""
        plain = self._attempt(header, body)
        if plain is None and self.proven:
            base = self.seq
            for skip in range(1, RESYNC_WINDOW + 1):
                self.seq = base + skip
                plain = self._attempt(header, body)
                if plain is not None:
                    self.skipped += skip
                    break
            else:
                self.seq = base
        if plain is not None:
            self.proven = True
        self.seq += 1
        return plain

    def _attempt(self, header: bytes, body: bytes) -> bytes | None:
        try:
            return self._open(header, body)
        except (InvalidTag, ValueError, OverflowError):
            return None

    def _open(self, header: bytes, body: bytes) -> bytes | None:
        raise NotImplementedError


class TLS13Cipher(RecordCipher):
    """RFC 8446 5.2: nonce = iv xor seq, additional data = the record header."""

    def __init__(self, suite: Suite, key: bytes, iv: bytes):
        super().__init__()
        self._aead, self._iv, self._tag = _aead(suite.cipher, key), iv, suite.tag_len

    def _open(self, header, body):
        if len(body) < self._tag + 1:
            return None
        return self._aead.decrypt(_xor_seq(self._iv, self.seq), body, header)


def _aad12(seq: int, header: bytes, length: int) -> bytes:
    return seq.to_bytes(8, "big") + header[:3] + length.to_bytes(2, "big")


class TLS12AeadCipher(RecordCipher):
    """RFC 5288 (GCM, CCM): 4-byte salt + 8-byte explicit nonce in the record;
    RFC 7905 (ChaCha20-Poly1305): 12-byte IV xor seq, nothing explicit."""

    def __init__(self, suite: Suite, key: bytes, iv: bytes):
        super().__init__()
        self._aead, self._iv, self._tag = _aead(suite.cipher, key), iv, suite.tag_len
        self._explicit = 0 if suite.cipher.startswith("CHACHA20") else 8

    def _open(self, header, body):
        if len(body) < self._explicit + self._tag:
            return None
        if self._explicit:
            nonce, body = self._iv + body[:8], body[8:]
        else:
            nonce = _xor_seq(self._iv, self.seq)
        return self._aead.decrypt(nonce, body, _aad12(self.seq, header, len(body) - self._tag))


class CBCCipher(RecordCipher):
    """AES-CBC with HMAC (RFC 5246 6.2.3.2): MAC-then-encrypt, or with the
    encrypt_then_mac extension (RFC 7366) a MAC over the ciphertext.  TLS 1.1+
    carry an explicit IV per record; TLS 1.0 chains the last ciphertext block.
    The padding and MAC are both checked; this is an observer, so timing does
    not matter."""

    def __init__(self, suite: Suite, version: int, key: bytes, mac_key: bytes, iv: bytes,
                 encrypt_then_mac: bool = False):
        super().__init__()
        self._key, self._mac_key, self._mac = key, mac_key, suite.mac
        self._mac_len, self._version, self._iv = suite.mac_len, version, iv
        self._etm = encrypt_then_mac

    def _hmac(self, header: bytes, data: bytes) -> bytes:
        return hmac.new(self._mac_key, _aad12(self.seq, header, len(data)) + data, self._mac).digest()

    def _open(self, header, body):
        if self._etm:
            if len(body) < self._mac_len:
                return None
            body, mac = body[:len(body) - self._mac_len], body[len(body) - self._mac_len:]
            if not hmac.compare_digest(mac, self._hmac(header, body)):
                return None
        if self._version >= 0x0302:
            iv, body = body[:16], body[16:]
        else:
            iv = self._iv
        if len(body) < 16 or len(body) % 16 or len(iv) != 16:
            return None
        if self._version < 0x0302:
            self._iv = body[-16:]
        dec = Cipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()
        padded = dec.update(body) + dec.finalize()
        pad = padded[-1]
        mac_len = 0 if self._etm else self._mac_len
        if pad + 1 + mac_len > len(padded) or padded[-pad - 1:] != bytes([pad]) * (pad + 1):
            return None
        content = padded[:len(padded) - pad - 1 - mac_len]
        if self._etm:
            return content
        mac = padded[len(content):len(content) + mac_len]
        return content if hmac.compare_digest(mac, self._hmac(header, content)) else None
