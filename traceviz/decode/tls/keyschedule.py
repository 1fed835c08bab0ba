"""TLS key derivation: the TLS 1.3 key schedule (RFC 8446 section 7) and the
TLS 1.0-1.2 PRF and key block (RFC 2246 section 5, RFC 5246 section 5).

Pure functions over bytes.  HMAC and the hashes come from the standard
library: HKDF here is a few lines on top of ``hmac`` and stays readable next
to the RFC text, which ``cryptography``'s HKDF classes (one-shot objects
that cannot take a raw PRK for Expand-Label) would not make clearer.

Hash names are hashlib names: ``"sha256"``, ``"sha384"``, ``"md5"``, ``"sha1"``.
"""

from __future__ import annotations

import hashlib
import hmac

# --- HKDF and the TLS 1.3 schedule ----------------------------------------


def hash_len(hash_name: str) -> int:
    return hashlib.new(hash_name).digest_size


def hkdf_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 Extract; an empty salt means HashLen zero bytes."""
    return hmac.new(salt or bytes(hash_len(hash_name)), ikm, hash_name).digest()


def hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hash_name).digest()
        out += block
        counter += 1
    return out[:length]


def hkdf_label(label: bytes, context: bytes, length: int) -> bytes:
    """The HkdfLabel structure: uint16 length, opaque label<7..255> ("tls13 " +
    label), opaque context<0..255>."""
    full = b"tls13 " + label
    return length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context


def hkdf_expand_label(hash_name: str, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    return hkdf_expand(hash_name, secret, hkdf_label(label, context, length), length)


def transcript_hash(hash_name: str, *messages: bytes) -> bytes:
    h = hashlib.new(hash_name)
    for m in messages:
        h.update(m)
    return h.digest()


def derive_secret(hash_name: str, secret: bytes, label: bytes, messages_hash: bytes) -> bytes:
    """Derive-Secret, given the transcript hash (not the messages)."""
    return hkdf_expand_label(hash_name, secret, label, messages_hash, hash_len(hash_name))


def early_secret(hash_name: str, psk: bytes | None = None) -> bytes:
    return hkdf_extract(hash_name, b"", psk or bytes(hash_len(hash_name)))


def handshake_secret(hash_name: str, early: bytes, shared_secret: bytes) -> bytes:
    salt = derive_secret(hash_name, early, b"derived", transcript_hash(hash_name))
    return hkdf_extract(hash_name, salt, shared_secret)


def master_secret(hash_name: str, handshake: bytes) -> bytes:
    salt = derive_secret(hash_name, handshake, b"derived", transcript_hash(hash_name))
    return hkdf_extract(hash_name, salt, bytes(hash_len(hash_name)))


def traffic_keys(hash_name: str, secret: bytes, key_len: int, iv_len: int = 12) -> tuple[bytes, bytes]:
    """The write key and IV for one direction and epoch (RFC 8446 7.3)."""
    return (hkdf_expand_label(hash_name, secret, b"key", b"", key_len),
            hkdf_expand_label(hash_name, secret, b"iv", b"", iv_len))


def next_traffic_secret(hash_name: str, secret: bytes) -> bytes:
    """application_traffic_secret_N+1, after a KeyUpdate (RFC 8446 7.2)."""
    return hkdf_expand_label(hash_name, secret, b"traffic upd", b"", hash_len(hash_name))


def finished_key(hash_name: str, base_key: bytes) -> bytes:
    return hkdf_expand_label(hash_name, base_key, b"finished", b"", hash_len(hash_name))


def finished_verify_data(hash_name: str, base_key: bytes, messages_hash: bytes) -> bytes:
    return hmac.new(finished_key(hash_name, base_key), messages_hash, hash_name).digest()


def resumption_psk(hash_name: str, resumption_master: bytes, ticket_nonce: bytes) -> bytes:
    return hkdf_expand_label(hash_name, resumption_master, b"resumption", ticket_nonce,
                             hash_len(hash_name))


# --- TLS 1.0-1.2 -----------------------------------------------------------


def _p_hash(hash_name: str, secret: bytes, seed: bytes, length: int) -> bytes:
    out, a = b"", seed
    while len(out) < length:
        a = hmac.new(secret, a, hash_name).digest()
        out += hmac.new(secret, a + seed, hash_name).digest()
    return out[:length]


def prf(version: int, hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """The TLS PRF: P_<hash> for TLS 1.2 (hash from the suite), the MD5 xor SHA-1
    split for TLS 1.0 and 1.1."""
    if version >= 0x0303:
        return _p_hash(hash_name, secret, label + seed, length)
    half = (len(secret) + 1) // 2
    md5 = _p_hash("md5", secret[:half], label + seed, length)
    sha = _p_hash("sha1", secret[len(secret) - half:], label + seed, length)
    return bytes(a ^ b for a, b in zip(md5, sha))


def master_from_premaster(version: int, hash_name: str, premaster: bytes, client_random: bytes,
                          server_random: bytes, session_hash: bytes | None = None) -> bytes:
    """The 48-byte master secret; with ``session_hash`` the RFC 7627 extended
    master secret."""
    if session_hash is not None:
        return prf(version, hash_name, premaster, b"extended master secret", session_hash, 48)
    return prf(version, hash_name, premaster, b"master secret", client_random + server_random, 48)


def key_block(version: int, hash_name: str, master: bytes, client_random: bytes,
              server_random: bytes, length: int) -> bytes:
    return prf(version, hash_name, master, b"key expansion", server_random + client_random, length)
