"""Packet protection (RFC 9001 section 5): the keys of each packet-number
space and direction, and opening a packet with them.

Initial packets need no secret: their keys come from the version's salt and
the client's Destination Connection ID.  Handshake, 0-RTT and 1-RTT keys
come from the TLS traffic secrets an NSS key log holds for the connection's
ClientHello random (``CLIENT_HANDSHAKE_TRAFFIC_SECRET`` ...).

aioquic does the cryptography: ``CryptoContext`` derives key, IV and
header-protection key from a secret (with v2's ``quicv2`` labels where they
apply), removes header protection, decodes the packet number and opens the
AEAD (AES-GCM or ChaCha20-Poly1305); ``next_key_phase`` derives the keys
after a key update.  What an observer needs beyond an endpoint is written
here: Initial salts for versions aioquic no longer speaks (see
``versions``), keys for both directions at once, and the previous key
phase kept so packets reordered around a key update still open.
Nothing here ever shows a secret.
"""

from __future__ import annotations

import copy

from aioquic.quic.crypto import CryptoContext, CryptoError, apply_key_phase, next_key_phase
from aioquic.tls import CipherSuite, cipher_suite_hash, hkdf_expand_label, hkdf_extract

from traceviz.decode.quic import versions as qv

C2S, S2C = "c2s", "s2c"
SUITES = {0x1301: CipherSuite.AES_128_GCM_SHA256, 0x1302: CipherSuite.AES_256_GCM_SHA384,
          0x1303: CipherSuite.CHACHA20_POLY1305_SHA256}
# Key log label of each (space, direction): RFC 9001 uses the TLS 1.3 traffic secrets as they are.
LABELS = {("handshake", C2S): "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
          ("handshake", S2C): "SERVER_HANDSHAKE_TRAFFIC_SECRET",
          ("1rtt", C2S): "CLIENT_TRAFFIC_SECRET_0", ("1rtt", S2C): "SERVER_TRAFFIC_SECRET_0",
          ("0rtt", C2S): "CLIENT_EARLY_TRAFFIC_SECRET"}


class Opener:
    """Removes one direction's protection in one packet-number space."""

    def __init__(self, ctx: CryptoContext):
        self.ctx = ctx
        self.previous: CryptoContext | None = None
        self.updates = 0                 # key updates seen (1-RTT only)

    def open(self, packet: bytes, pn_offset: int, expected_pn: int) -> tuple[bytes, bytes, int]:
        """(plain header, payload, packet number); raises ``CryptoError`` when the packet does not open."""
        try:
            header, payload, pn, updated = self.ctx.decrypt_packet(packet, pn_offset, expected_pn)
        except CryptoError:
            if self.previous is None:
                raise
            header, payload, pn, _ = self.previous.decrypt_packet(packet, pn_offset, expected_pn)
            return header, payload, pn
        if updated:
            self.previous = copy.copy(self.ctx)
            apply_key_phase(self.ctx, next_key_phase(self.ctx), "remote_update")
            self.updates += 1
        return header, payload, pn


def _context(suite: CipherSuite, secret: bytes, version: int) -> CryptoContext:
    ctx = CryptoContext()
    # CryptoContext picks the v2 labels by version number; every other version uses v1's.
    ctx.setup(cipher_suite=suite, secret=secret, version=qv.V2 if qv.uses_v2_labels(version) else qv.V1)
    return ctx


def initial_openers(version: int, dcid: bytes) -> dict[str, Opener] | None:
    """Both directions' Initial openers for a client's Destination Connection ID (None: unknown salt)."""
    salt = qv.initial_salt(version)
    if salt is None:
        return None
    suite = CipherSuite.AES_128_GCM_SHA256
    algorithm = cipher_suite_hash(suite)
    initial = hkdf_extract(algorithm, salt, dcid)
    out = {}
    for d, label in ((C2S, b"client in"), (S2C, b"server in")):
        secret = hkdf_expand_label(algorithm, initial, label, b"", algorithm.digest_size)
        out[d] = Opener(_context(suite, secret, version))
    return out


def secret_openers(secret: bytes, version: int, cipher: int | None) -> list[Opener]:
    """Openers to try for a traffic secret: the negotiated suite's, or (cipher unknown)
    every TLS 1.3 suite whose hash fits the secret's length."""
    if cipher in SUITES:
        suites = [SUITES[cipher]]
    elif len(secret) == 48:
        suites = [CipherSuite.AES_256_GCM_SHA384]
    else:
        suites = [CipherSuite.AES_128_GCM_SHA256, CipherSuite.CHACHA20_POLY1305_SHA256]
    out = []
    for suite in suites:
        if cipher_suite_hash(suite).digest_size != len(secret):
            continue
        out.append(Opener(_context(suite, secret, version)))
    return out


__all__ = ["Opener", "CryptoError", "initial_openers", "secret_openers", "LABELS", "C2S", "S2C"]
