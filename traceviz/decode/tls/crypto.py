"""TLS record decryption for one session, from a key log or an RSA key.

The session machine (``session.py``) builds one ``TLSDecryptor`` per TLS
session once it has seen both hellos, then feeds it every record of either
direction in stream order::

    dec = TLSDecryptor(0x0304, 0x1301, client_random, server_random, keylog)
    if dec.available:
        got = dec.decrypt("s2c", record[:5], record[5:])   # (content type, plaintext) or None

TLS 1.3: application_data records are opened with the handshake traffic
keys, then -- after the Finished in that direction -- the application keys;
KeyUpdate moves to the next generation; client 0-RTT records use the early
traffic secret (found by trial if the caller does not flag them).  Records
of other types are plaintext and come back as they are.

TLS 1.2 and older: records are plaintext until the caller reports the
ChangeCipherSpec in that direction (``change_cipher_spec``).  The master
secret comes from the key log's CLIENT_RANDOM line (an extended master
secret is logged the same way, so nothing changes for it), from an RSA
pre-master line, or from decrypting the RSA ClientKeyExchange with the
server's private key (then pass ``session_hash`` for extended master secret).
CBC suites need to know whether the ServerHello accepted encrypt_then_mac
(extension 22, RFC 7366): pass ``encrypt_then_mac=True`` if it did.

A record that does not authenticate returns None and is counted in
``failed``; nothing here raises on bad data.  Key material never appears in
a repr, an exception or a warning.
"""

from __future__ import annotations


from traceviz.decode.tls import ciphers, keyschedule as ks
from traceviz.decode.tls.keylog import KeyLog
from traceviz.errors import InputError

__all__ = ["KeyLog", "TLSDecryptor", "rsa_private_key", "supported_cipher"]

_HANDSHAKE, _APPLICATION_DATA = 22, 23
_FINISHED, _END_OF_EARLY_DATA, _KEY_UPDATE = 20, 5, 24
_MAX_HANDSHAKE_BUFFER = 1 << 20      # a Certificate chain is far smaller; beyond this, stop tracking

_TLS13_PHASES = {
    "c2s": [("early", "CLIENT_EARLY_TRAFFIC_SECRET"), ("handshake", "CLIENT_HANDSHAKE_TRAFFIC_SECRET"),
            ("application", "CLIENT_TRAFFIC_SECRET_0")],
    "s2c": [("handshake", "SERVER_HANDSHAKE_TRAFFIC_SECRET"), ("application", "SERVER_TRAFFIC_SECRET_0")],
}


def supported_cipher(code: int) -> bool:
    return ciphers.suite(code) is not None


def _cipher_label(code: int) -> str:
    s = ciphers.suite(code)
    if s:
        return s.name
    if code < 0:
        return "unknown"
    try:
        from traceviz.decode.tls.names import cipher_name
        return cipher_name(code) or f"0x{code:04x}"
    except Exception:  # the names table is another module's; a name is a nicety
        return f"0x{code:04x}"


def rsa_private_key(data: bytes, source: str = "<key>"):
    """The server's RSA private key from the bytes of a PEM (or DER) file, unencrypted.

    ``source`` names the file in errors (which never quote the bytes)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key

    key = None
    for loader in (load_pem_private_key, load_der_private_key):
        try:
            key = loader(data, password=None)
            break
        except (ValueError, TypeError):
            continue
        except Exception:       # unsupported algorithm and the like: still "not a key we can use"
            continue
    if key is None:
        # No library message here: it could quote the file.
        raise InputError(source, "not an unencrypted PEM or DER private key")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InputError(source, "the private key is not an RSA key")
    return key


class _Direction:
    """One direction's record state: the cipher in use and what may follow."""

    def __init__(self, phases: list[tuple[str, bytes | None]]):
        self.phases = phases            # [(name, secret)] in the order they are used
        self.index = -1                 # phase in use (-1: none yet)
        self.cipher: ciphers.RecordCipher | None = None
        self.pending: ciphers.RecordCipher | None = None   # TLS 1.2: armed by ChangeCipherSpec
        self.handshake = bytearray()    # TLS 1.3: decrypted handshake bytes not yet parsed
        self.tracking = True
        self.key_updates = 0

    def __repr__(self) -> str:
        name = self.phases[self.index][0] if self.index >= 0 else None
        return f"_Direction(phase={name!r}, cipher={self.cipher!r})"


class TLSDecryptor:
    """Decrypts the records of one TLS session, both directions."""

    def __init__(self, version: int, cipher_suite: int, client_random: bytes, server_random: bytes,
                 keylog: KeyLog | None, rsa_private_key=None, encrypted_premaster: bytes | None = None,
                 session_hash: bytes | None = None, encrypt_then_mac: bool = False):
        self.version = version if isinstance(version, int) else 0
        self.cipher_suite = cipher_suite if isinstance(cipher_suite, int) else -1
        self.available = False
        self.reason = ""
        self.source = ""            # where the keys came from: keylog, keylog-rsa, rsa-key
        self.decrypted = 0
        self.failed = 0
        self._suite = ciphers.suite(cipher_suite)
        self._etm = bool(encrypt_then_mac)
        self._dirs: dict[str, _Direction] = {}
        try:
            self._setup(bytes(client_random or b""), bytes(server_random or b""), keylog,
                        rsa_private_key, encrypted_premaster, session_hash)
        except Exception as e:    # a decryptor that cannot start says why; it never raises
            self.available = False
            self.reason = f"key setup failed ({type(e).__name__})"
            self._dirs = {}

    def __repr__(self) -> str:
        state = "available" if self.available else f"unavailable: {self.reason}"
        return (f"TLSDecryptor(version=0x{self.version:04x}, cipher={_cipher_label(self.cipher_suite)}, "
                f"{state}, decrypted={self.decrypted}, failed={self.failed})")

    __str__ = __repr__

    # --- setup --------------------------------------------------------------

    def _unavailable(self, reason: str) -> None:
        self.available, self.reason = False, reason

    def _setup(self, client_random, server_random, keylog, rsa_key, encrypted_premaster, session_hash):
        s = self._suite
        if s is None:
            return self._unavailable(f"cipher {_cipher_label(self.cipher_suite)} not supported")
        if self.version >= 0x0304 or s.tls13:
            if not s.tls13:
                return self._unavailable(f"cipher {s.name} is not a TLS 1.3 suite")
            return self._setup13(client_random, keylog)
        if self.version < 0x0301:
            return self._unavailable("SSL 3.0 decryption not supported")
        if s.aead and self.version < 0x0303:
            return self._unavailable(f"cipher {s.name} needs TLS 1.2")
        return self._setup12(client_random, server_random, keylog, rsa_key, encrypted_premaster, session_hash)

    def _setup13(self, client_random, keylog):
        secrets = keylog.secrets_for(client_random) if keylog is not None else {}
        if not secrets:
            return self._unavailable("no key-log entry for this client random")
        for direction, phases in _TLS13_PHASES.items():
            self._dirs[direction] = _Direction([(name, secrets.get(label)) for name, label in phases])
        if not any(secret for d in self._dirs.values() for _, secret in d.phases):
            self._dirs = {}
            return self._unavailable("key log has no TLS 1.3 traffic secrets for this client random")
        self.available, self.source = True, "keylog"

    def _setup12(self, client_random, server_random, keylog, rsa_key, encrypted_premaster, session_hash):
        s = self._suite
        master = None
        secrets = keylog.secrets_for(client_random) if keylog is not None else {}
        if "CLIENT_RANDOM" in secrets:
            master, self.source = secrets["CLIENT_RANDOM"], "keylog"
        elif encrypted_premaster and s.kx == "RSA":
            epms = _strip_length(bytes(encrypted_premaster))
            premaster = keylog.rsa_premaster(epms) if keylog is not None else None
            if premaster is not None:
                self.source = "keylog-rsa"
            elif rsa_key is not None:
                premaster, self.source = _rsa_decrypt(rsa_key, epms), "rsa-key"
                if premaster is None:
                    return self._unavailable("the RSA key does not decrypt this session's pre-master secret")
            if premaster is not None:
                master = ks.master_from_premaster(self.version, s.prf_hash, premaster, client_random,
                                                  server_random, session_hash)
        if master is None:
            if rsa_key is not None and s.kx != "RSA":
                return self._unavailable(f"no key-log entry for this client random, and an RSA key cannot "
                                         f"decrypt {s.kx} key exchange")
            return self._unavailable("no key-log entry for this client random")
        if len(master) != 48:
            return self._unavailable("the key log's master secret is not 48 bytes")
        iv_len = s.fixed_iv_len
        block = ks.key_block(self.version, s.prf_hash, master, client_random, server_random,
                             2 * (s.mac_len + s.key_len + iv_len))
        parts, at = [], 0
        for n in (s.mac_len, s.mac_len, s.key_len, s.key_len, iv_len, iv_len):
            parts.append(block[at:at + n])
            at += n
        c_mac, s_mac, c_key, s_key, c_iv, s_iv = parts
        for direction, mac, key, iv in (("c2s", c_mac, c_key, c_iv), ("s2c", s_mac, s_key, s_iv)):
            d = _Direction([])
            d.pending = (ciphers.TLS12AeadCipher(s, key, iv) if s.aead
                         else ciphers.CBCCipher(s, self.version, key, mac, iv, self._etm))
            self._dirs[direction] = d
        self.available = True

    # --- records --------------------------------------------------------------

    def change_cipher_spec(self, direction: str) -> None:
        """TLS 1.2 and older: the peer in ``direction`` switched to the new keys."""
        d = self._dirs.get(direction)
        if d is not None and d.pending is not None:
            d.cipher, d.pending = d.pending, None

    def decrypt(self, direction: str, record_header: bytes, body: bytes,
                early: bool = False) -> tuple[int, bytes] | None:
        """(content type, plaintext) of one record, or None if it cannot be opened.

        ``early``: a TLS 1.3 client record known to be 0-RTT data."""
        d = self._dirs.get(direction)
        if not self.available or d is None or len(record_header) < 5:
            return None
        header, body = bytes(record_header[:5]), bytes(body)
        if self._suite.tls13:
            if header[0] != _APPLICATION_DATA:
                return header[0], body
            return self._decrypt13(direction, d, header, body, early)
        if d.cipher is None:
            return header[0], body
        plain = d.cipher.open(header, body)
        return self._count(None if plain is None else (header[0], plain))

    def decrypt_record(self, direction: str, record: bytes, early: bool = False) -> tuple[int, bytes] | None:
        return self.decrypt(direction, record[:5], record[5:], early)

    def _count(self, result):
        if result is None:
            self.failed += 1
        else:
            self.decrypted += 1
        return result

    def _decrypt13(self, direction, d: _Direction, header, body, early):
        if early and direction == "c2s" and d.index < 0:
            d.index, d.cipher = 0, self._cipher13(d.phases[0][1])
        candidates = [(d.index, d.cipher)] if d.cipher is not None else []
        # A record the current keys cannot open may be the first of a later
        # phase (a Finished not seen, secrets missing for a phase, 0-RTT rejected).
        candidates += [(i, None) for i in range(d.index + 1, len(d.phases)) if d.phases[i][1]]
        for index, cipher in candidates:
            if cipher is None:
                cipher = self._cipher13(d.phases[index][1])
            plain = cipher.open(header, body)
            if plain is None:
                continue
            inner = _strip_padding(plain)
            if inner is None:
                continue
            if index != d.index:
                d.index, d.cipher = index, cipher
                d.handshake.clear()
                d.tracking = True
            if inner[0] == _HANDSHAKE:
                self._handshake13(d, inner[1])
            return self._count(inner)
        return self._count(None)

    def _cipher13(self, secret: bytes | None):
        if not secret:
            return None
        key, iv = ks.traffic_keys(self._suite.prf_hash, secret, self._suite.key_len)
        return ciphers.TLS13Cipher(self._suite, key, iv)

    def _handshake13(self, d: _Direction, data: bytes) -> None:
        """Find the messages that change keys: Finished, EndOfEarlyData, KeyUpdate."""
        if not d.tracking:
            return
        d.handshake += data
        if len(d.handshake) > _MAX_HANDSHAKE_BUFFER:
            d.handshake.clear()
            d.tracking = False
            return
        buf = d.handshake
        while len(buf) >= 4:
            length = int.from_bytes(buf[1:4], "big")
            if len(buf) < 4 + length:
                break
            kind = buf[0]
            del buf[:4 + length]
            phase = d.phases[d.index][0]
            if kind == _FINISHED and phase == "handshake":
                self._advance(d, "application")
            elif kind == _END_OF_EARLY_DATA and phase == "early":
                self._advance(d, "handshake")
            elif kind == _KEY_UPDATE and phase == "application":
                secret = d.phases[d.index][1]
                if secret:
                    new = ks.next_traffic_secret(self._suite.prf_hash, secret)
                    d.phases[d.index] = ("application", new)
                    d.cipher = self._cipher13(new)
                    d.key_updates += 1

    def _advance(self, d: _Direction, phase: str) -> None:
        for i, (name, secret) in enumerate(d.phases):
            if name == phase:
                d.index, d.cipher = i, self._cipher13(secret)
                d.handshake.clear()
                return


def _strip_padding(plain: bytes) -> tuple[int, bytes] | None:
    """TLSInnerPlaintext: content, content type, then zero padding."""
    end = len(plain.rstrip(b"\x00"))
    if end == 0:
        return None
    return plain[end - 1], plain[:end - 1]


def _strip_length(epms: bytes) -> bytes:
    """The EncryptedPreMasterSecret without its 2-byte length (TLS 1.0+), if it has one."""
    if len(epms) >= 2 and int.from_bytes(epms[:2], "big") == len(epms) - 2:
        return epms[2:]
    return epms


def _rsa_decrypt(key, epms: bytes) -> bytes | None:
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        premaster = key.decrypt(epms, padding.PKCS1v15())
    except Exception:      # wrong key or damaged ciphertext; say nothing that quotes either
        return None
    return premaster if len(premaster) == 48 else None
