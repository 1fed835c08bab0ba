"""NSS key log files (SSLKEYLOGFILE) and pcapng Decryption Secrets Blocks.

Format: one ``LABEL <client_random hex> <secret hex>`` per line; ``#`` starts a
comment.  ``RSA <first 8 bytes of the encrypted pre-master, hex> <pre-master
hex>`` keys a pre-master secret by its RSA ciphertext instead.

A ``KeyLog`` holds key material: it never shows a secret in its repr, str,
warnings or exceptions.  Malformed lines are counted and skipped.
"""

from __future__ import annotations

import string
from collections import Counter

from traceviz.errors import describe

# pcapng DSB secrets types (pcapng spec, section 4.7).
DSB_TLS_KEYLOG = 0x544C534B          # "TLSK"
_DSB_NAMES = {0x544C534B: "TLS key log", 0x5753474B: "WireGuard key log",
              0x5A4E574B: "ZigBee NWK key", 0x5A415053: "ZigBee APS key",
              0x6F65634B: "OPC UA key log"}

# A line longer than this is not a key log line (secrets are at most 64 bytes).
_MAX_LINE = 1024
_HEX = frozenset(string.hexdigits)

# Labels NSS, OpenSSL, BoringSSL and the QUIC stacks write (others are kept too).
KNOWN_LABELS = frozenset({
    "CLIENT_RANDOM", "RSA", "CLIENT_EARLY_TRAFFIC_SECRET", "EARLY_TRAFFIC_SECRET",
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EARLY_EXPORTER_SECRET",
    "EXPORTER_SECRET",
})


class KeyLog:
    """Secrets by client random (and RSA pre-master secrets by ciphertext prefix)."""

    def __init__(self, source: str = "<keylog>"):
        self.source = source
        self._by_random: dict[bytes, dict[str, bytes]] = {}
        self._rsa: dict[bytes, bytes] = {}
        self.malformed = 0              # lines that were not LABEL HEX HEX
        self.skipped_blocks = 0         # DSBs that hold something other than a TLS key log
        self.warnings: list[str] = []   # no secrets in these: label and line number only

    # --- construction ---------------------------------------------------

    @classmethod
    def from_text(cls, text: str | bytes, source: str = "<keylog>") -> KeyLog:
        log = cls(source)
        log._add_text(text)
        return log

    @classmethod
    def from_dsb(cls, blocks, source: str = "<pcapng DSB>") -> KeyLog:
        """From a pcapng's Decryption Secrets Blocks: ``[(secrets_type, bytes)]``."""
        log = cls(source)
        for n, (kind, data) in enumerate(blocks or (), 1):
            if kind == DSB_TLS_KEYLOG:
                log._add_text(data, where=f"secrets block {n}")
            else:
                log.skipped_blocks += 1
                name = _DSB_NAMES.get(kind, f"type 0x{kind:08x}" if isinstance(kind, int) else "unknown type")
                log.warnings.append(describe(source, f"secrets block {n}: {name} is not a TLS key log; skipped"))
        return log

    def merge(self, other: KeyLog) -> KeyLog:
        """Add ``other``'s secrets to this log (its values win on conflict); returns self."""
        for cr, secrets in other._by_random.items():
            self._by_random.setdefault(cr, {}).update(secrets)
        self._rsa.update(other._rsa)
        self.malformed += other.malformed
        self.skipped_blocks += other.skipped_blocks
        self.warnings.extend(other.warnings)
        return self

    def _add_text(self, text: str | bytes, where: str = "") -> None:
        if isinstance(text, (bytes, bytearray, memoryview)):
            text = bytes(text).decode("latin-1")
        bad_lines: list[int] = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip().strip("\x00")
            if not line or line.startswith("#"):
                continue
            if not self._add_line(line):
                self.malformed += 1
                bad_lines.append(number)
        if bad_lines:
            shown = ", ".join(map(str, bad_lines[:5])) + (" ..." if len(bad_lines) > 5 else "")
            place = f"{where}: " if where else ""
            self.warnings.append(describe(self.source, f"{place}{len(bad_lines)} malformed key log "
                                                       f"line(s) skipped (line {shown})"))

    def _add_line(self, line: str) -> bool:
        if len(line) > _MAX_LINE:
            return False
        parts = line.split()
        if len(parts) != 3:
            return False
        label, key, secret = parts
        label = label.upper()
        if not (label.replace("_", "").isalnum() and _is_hex(key) and _is_hex(secret)):
            return False
        key_b, secret_b = bytes.fromhex(key), bytes.fromhex(secret)
        if label == "RSA":
            if len(key_b) != 8 or len(secret_b) != 48:
                return False
            self._rsa[key_b] = secret_b
            return True
        if len(key_b) != 32 or not 16 <= len(secret_b) <= 64:
            return False
        self._by_random.setdefault(key_b, {})[label] = secret_b
        return True

    # --- lookup -----------------------------------------------------------

    def secrets_for(self, client_random: bytes) -> dict[str, bytes]:
        """Every secret logged for this client random, by label (a copy)."""
        found = dict(self._by_random.get(bytes(client_random), {}))
        if "EARLY_TRAFFIC_SECRET" in found:
            found.setdefault("CLIENT_EARLY_TRAFFIC_SECRET", found["EARLY_TRAFFIC_SECRET"])
        return found

    def rsa_premaster(self, encrypted_premaster: bytes) -> bytes | None:
        """The pre-master secret logged for this RSA ClientKeyExchange ciphertext."""
        return self._rsa.get(bytes(encrypted_premaster[:8]))

    def has(self, client_random: bytes) -> bool:
        return bytes(client_random) in self._by_random

    def client_randoms(self) -> list[bytes]:
        """The client randoms with secrets (public values: they are in the ClientHello)."""
        return list(self._by_random)

    def labels(self) -> Counter:
        """How many secrets of each label (no values)."""
        c = Counter(label for s in self._by_random.values() for label in s)
        if self._rsa:
            c["RSA"] = len(self._rsa)
        return c

    def __len__(self) -> int:
        return len(self._by_random) + len(self._rsa)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __repr__(self) -> str:
        return (f"KeyLog({self.source!r}: {len(self._by_random)} client randoms, "
                f"{len(self._rsa)} RSA pre-master secrets, {self.malformed} malformed lines)")

    __str__ = __repr__


def _is_hex(s: str) -> bool:
    return len(s) % 2 == 0 and bool(s) and all(c in _HEX for c in s)
