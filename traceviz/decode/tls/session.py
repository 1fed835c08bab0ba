"""One TLS session (one TCP connection), sans-I/O.

Fed the reassembled bytes of each direction in the order they became
readable, with the frame and time they arrived, a ``TLSSession`` reads the
records and handshake messages and returns events (ClientHello, ServerHello,
HelloRetryRequest, Certificate, ChangeCipherSpec, Finished, Alert,
ApplicationData...).  After ``close()`` its properties say what was negotiated, how many round
trips the handshake needed and why, and whether it completed; the assembler
makes the session's line in ``timeline.tls`` of them.

Without keys, encrypted messages are recognised by position: in TLS 1.2 the
first handshake record after a side's ChangeCipherSpec is its Finished; in
TLS 1.3 the server's encrypted flight follows its ServerHello and the client's
first encrypted record after the ServerHello is its Finished.  With keys
(see ``use_keys``) the records are opened and the inner messages read for
real.

Without keys nothing reads the fragments of application data (nor of
ChangeCipherSpec and heartbeat records): the record layer counts them from
their headers and steps over their bytes (``skippable``/``skip``), so a
long download costs a few arithmetic steps per record, not a copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from traceviz import limits
from traceviz.decode.tls import messages as msg
from traceviz.decode.tls.names import (ALERT_LEVELS, alert_name, cipher_name, group_name, handshake_name,
                                       version_name)
from traceviz.decode.tls.records import (ALERT, APPLICATION_DATA, CHANGE_CIPHER_SPEC, CONNECTION_ID, HANDSHAKE,
                                         HEARTBEAT, HandshakeReader, Message, Record, RecordReader, parse_alert)

C2S, S2C = "c2s", "s2c"
_SIDE = {C2S: "client", S2C: "server"}
MAX_ERRORS = 100        # errors kept per session (the first are the telling ones)
# Record types whose fragments are only counted when there are no keys: sizes are all they tell.
COUNTED = frozenset({CHANGE_CIPHER_SPEC, APPLICATION_DATA, HEARTBEAT, CONNECTION_ID})


def is_tls13(version: int | None) -> bool:
    return version is not None and (version == 0x0304 or version >> 8 == 0x7F or version in (0xFB17, 0xFB1A))


class Event(NamedTuple):
    """Something one side sent: a handshake message, a ChangeCipherSpec, an alert, a run of
    application data records.  Fields: ts, frame (of its first record), dir (c2s/s2c), kind
    (ClientHello, Finished, ApplicationData...), size (record bytes), encrypted, detail,
    records (how many records a run of them took).

    Immutable, and a named tuple rather than a frozen dataclass: a session makes one per run
    of records, and a frozen dataclass takes four times as long to make."""

    ts: float
    frame: int
    dir: str
    kind: str
    size: int
    encrypted: bool = False
    detail: str = ""
    records: int = 1


@dataclass
class _Side:
    records: RecordReader = field(default_factory=lambda: RecordReader(COUNTED))
    handshake: HandshakeReader = field(default_factory=HandshakeReader)
    ccs: Event | None = None          # its ChangeCipherSpec
    finished: Event | None = None     # its Finished
    encrypted: bool = False           # records from now on are protected
    app_records: int = 0
    app_bytes: int = 0
    first_app: Event | None = None
    reported: bool = False            # its record-layer error is counted
    only_counted: bool = False        # past the handshake without keys: application data is only counted


class TLSSession:
    def __init__(self, conn: int | None = None, transport: str = "t"):
        self.conn = conn
        self.transport = transport
        self.sides = {C2S: _Side(), S2C: _Side()}
        self.events: list[Event] = []
        self.errors: list[str] = []
        self.client_hello: msg.ClientHello | None = None
        self.client_hello_event: Event | None = None
        self.client_hellos = 0
        self.server_hello: msg.ServerHello | None = None
        self.server_hello_event: Event | None = None
        self.hello_retry: msg.ServerHello | None = None
        self.certificates: list[msg.CertificateInfo] = []
        self.key_exchange: msg.ServerKeyExchange | None = None
        self.encrypted_extensions: msg.EncryptedExtensions | None = None
        self.alerts: list[Event] = []
        self.early_data_records = 0
        self.keylog: Any = None          # crypto.KeyLog; key material, never shown
        self.rsa_key: Any = None
        self.decryptor: Any = None       # crypto.TLSDecryptor once both hellos are known
        self.decrypted_records = 0
        self._transcript: list[bytes] = []   # handshake messages, for an RSA extended master secret
        self.rst: tuple[str, int, float] | None = None
        self._closed = False
        self._most_events = limits.get("MAX_SESSION_EVENTS")
        self.events_not_listed = 0         # events past MAX_SESSION_EVENTS

    # -- input ---------------------------------------------------------------

    def feed(self, dir: str, data: bytes, frame: int, ts: float) -> list[Event]:
        side = self.sides[dir]
        before = len(self.events)
        try:
            for rec in side.records.feed(data, frame, ts):
                self._record(dir, rec)
        except Exception as e:      # noqa: BLE001 - hostile bytes: count the error, keep the session
            self._failed(e, frame)
        if side.records.error and not side.reported:
            side.reported = True
            self._error(f"{_SIDE[dir]} stream: {side.records.error}")
        return self.events[before:]

    def skippable(self, dir: str) -> int:
        """Bytes of ``dir`` coming next that would only be counted (see ``skip``)."""
        return self.sides[dir].records.skippable

    def skip(self, dir: str, n: int, frame: int, ts: float) -> list[Event]:
        """``n`` bytes of ``dir`` passed without being read (at most ``skippable(dir)``);
        ``frame``/``ts``: where the last of them arrived."""
        before = len(self.events)
        rec = self.sides[dir].records.skip(n, frame, ts)
        if rec is not None:
            try:
                self._record(dir, rec)
            except Exception as e:  # noqa: BLE001
                self._failed(e, frame)
        return self.events[before:]

    def _failed(self, e: Exception, frame: int) -> None:
        if os.environ.get("TRACEVIZ_DEBUG") and not isinstance(e, msg.DecodeError):
            raise e
        self._error(str(e) if isinstance(e, msg.DecodeError) else f"frame {frame}: {type(e).__name__}")

    def gap(self, dir: str, offset: int, length: int) -> None:
        """Bytes missing at ``offset`` of ``dir`` (lost or not captured): the record
        and handshake message they cut are dropped; reading resumes at the next record."""
        side = self.sides[dir]
        side.records.gap(length)
        side.handshake = HandshakeReader()

    def reset(self, dir: str, frame: int, ts: float) -> None:
        if self.rst is None:
            self.rst = (dir, frame, ts)

    def use_keys(self, keylog: Any = None, rsa_key: Any = None) -> None:
        """Key material to decrypt with: a ``crypto.KeyLog`` and/or an RSA private key.

        Call before feeding.  Keys stay inside the decryptor; nothing derived
        from them reaches an event or a row.
        """
        self.keylog, self.rsa_key = keylog, rsa_key
        if keylog is not None or rsa_key is not None:
            for side in self.sides.values():
                side.records.count_only = frozenset()      # any record may open: keep the fragments

    def _start_decryptor(self, encrypted_premaster: bytes | None = None) -> None:
        ch, sh = self.client_hello, self.server_hello
        if ch is None or sh is None or sh.cipher is None or (self.keylog is None and self.rsa_key is None):
            return
        if self.decryptor is not None and self.decryptor.available:
            return
        from traceviz.decode.tls.crypto import TLSDecryptor
        session_hash = None
        if encrypted_premaster is not None and sh.extended_master_secret:
            session_hash = self._session_hash()
        version = 0x0304 if is_tls13(sh.version) else sh.version
        self.decryptor = TLSDecryptor(version, sh.cipher, ch.random, sh.random, self.keylog, self.rsa_key,
                                      encrypted_premaster=encrypted_premaster, session_hash=session_hash,
                                      # RFC 7366: OpenSSL negotiates encrypt-then-MAC for every CBC suite
                                      encrypt_then_mac=0x0016 in sh.extensions)

    def _session_hash(self) -> bytes | None:
        from traceviz.decode.tls import ciphers, keyschedule
        suite = ciphers.suite(self.server_hello.cipher)
        if suite is None:
            return None
        return keyschedule.transcript_hash(suite.prf_hash, *self._transcript)

    def close(self) -> None:
        self._closed = True

    # -- records -------------------------------------------------------------

    def _record(self, dir: str, rec: Record) -> None:
        side = self.sides[dir]
        if side.only_counted and rec.content_type == APPLICATION_DATA:
            self._count_application_data(dir, side, rec, encrypted=True)   # most records of a session, by far
            return
        if rec.content_type == CHANGE_CIPHER_SPEC:
            ev = self._emit(dir, rec, "ChangeCipherSpec", rec.size)
            if side.ccs is None:
                side.ccs = ev
            if self.decryptor is not None:
                self.decryptor.change_cipher_spec(dir)
            # TLS 1.2 and earlier protect what follows a side's ChangeCipherSpec; in
            # TLS 1.3 the message is a middlebox-compatibility no-op (and may precede the ServerHello).
            if self.server_hello is not None and not self._tls13():
                side.encrypted = True
            return
        if side.encrypted or (rec.content_type == APPLICATION_DATA and self._tls13_protected(dir)):
            self._protected(dir, rec)
            return
        if rec.content_type == HANDSHAKE:
            for m in side.handshake.feed(rec):
                self._message(dir, m, encrypted=False)
        elif rec.content_type == ALERT:
            self._alert(dir, rec, rec.fragment)
        elif rec.content_type == APPLICATION_DATA:
            self._application_data(dir, rec, encrypted=True)
        elif rec.content_type == HEARTBEAT:
            self._emit(dir, rec, "Heartbeat", rec.size)
        else:
            self._emit(dir, rec, "ConnectionID", rec.size, encrypted=True)

    def _tls13(self) -> bool:
        sh = self.server_hello
        return sh is not None and is_tls13(sh.version)

    def _tls13_protected(self, dir: str) -> bool:
        """In TLS 1.3 every application_data record is protected -- early data included."""
        return self._tls13() or (dir == C2S and self.client_hello is not None and self.server_hello is None)

    def _protected(self, dir: str, rec: Record) -> None:
        opened = self._open(dir, rec)
        if opened is not None:
            inner_type, plaintext = opened
            self.decrypted_records += 1
            self._inner(dir, rec, inner_type, plaintext)
            return
        if rec.content_type == ALERT:
            self._alert(dir, rec, None)
        elif rec.content_type == HANDSHAKE:
            side = self.sides[dir]
            kind = "Finished" if side.finished is None else "EncryptedHandshake"
            ev = self._emit(dir, rec, kind, rec.size, encrypted=True)
            if side.finished is None:
                side.finished = ev
        else:
            self._application_data(dir, rec, encrypted=True)

    def _open(self, dir: str, rec: Record):
        dec = self.decryptor
        if dec is None or not dec.available:
            return None
        header = bytes([rec.content_type]) + rec.version.to_bytes(2, "big") + len(rec.fragment).to_bytes(2, "big")
        early = dir == C2S and self.server_hello is None
        try:
            return dec.decrypt(dir, header, rec.fragment, early=early)
        except Exception as e:      # noqa: BLE001 - a failed decryption is a finding, not a crash
            self._error(f"decryption failed: {type(e).__name__}")
            return None

    def _inner(self, dir: str, rec: Record, inner_type: int, plaintext: bytes) -> None:
        """A record opened with the keys: read what it really holds."""
        if inner_type == HANDSHAKE:
            inner = Record(HANDSHAKE, rec.version, plaintext, rec.frame, rec.ts, rec.first_frame, rec.offset)
            for m in self.sides[dir].handshake.feed(inner):
                self._message(dir, m, encrypted=True)
        elif inner_type == ALERT:
            self._alert(dir, rec, plaintext, encrypted=True)
        elif inner_type == APPLICATION_DATA:
            self._application_data(dir, rec, encrypted=True, plaintext=plaintext)
        else:
            self._emit(dir, rec, f"record type {inner_type}", rec.size, encrypted=True)

    def _application_data(self, dir: str, rec: Record, encrypted: bool, plaintext: bytes | None = None) -> None:
        side = self.sides[dir]
        # Without keys, TLS 1.3's encrypted handshake hides inside application_data records.
        if plaintext is None and self._tls13() and self._tls13_handshake_record(dir, rec):
            return
        if dir == C2S and self.server_hello is None and self.client_hello is not None:
            self.early_data_records += 1
            self._emit(dir, rec, "EarlyData", rec.size, encrypted=True)
            return
        # Nothing below can change once a side's records are protected, the hellos are in and
        # (TLS 1.3) the client's Finished has gone by, with no keys: its next ones skip the tests.
        side.only_counted = (plaintext is None and self.keylog is None and self.rsa_key is None
                             and self.server_hello is not None
                             and (self.sides[C2S].finished is not None if self._tls13() else side.encrypted))
        self._count_application_data(dir, side, rec, encrypted, plaintext)

    def _count_application_data(self, dir: str, side: _Side, rec: Record, encrypted: bool,
                                plaintext: bytes | None = None) -> None:
        side.app_records += 1
        side.app_bytes += len(plaintext) if plaintext is not None else rec.size
        last = self.events[-1] if self.events else None
        if last is not None and last.kind == "ApplicationData" and last.dir == dir:
            ev = self._extend_last(rec)      # one event per run of records in one direction
        else:
            ev = self._emit(dir, rec, "ApplicationData", rec.size, encrypted=encrypted)
        if side.first_app is None:
            side.first_app = ev
        if plaintext is not None and self.on_application_data is not None:
            self.on_application_data(dir, plaintext, rec.frame, rec.ts)

    on_application_data = None     # callable(dir, plaintext, frame, ts) set by the payload tier

    def _tls13_handshake_record(self, dir: str, rec: Record) -> bool:
        """Label TLS 1.3 protected records by position while the handshake runs."""
        client, server = self.sides[C2S], self.sides[S2C]
        if client.finished is not None:
            return False
        if dir == S2C:
            last = self.events[-1] if self.events else None
            if last is not None and last.kind == "EncryptedHandshake" and last.dir == S2C:
                ev = self._extend_last(rec)  # one event per flight of records
            else:
                ev = self._emit(dir, rec, "EncryptedHandshake", rec.size, encrypted=True)
            server.finished = ev          # the last record of the server's flight holds its Finished
            return True
        client.finished = self._emit(dir, rec, "Finished", rec.size, encrypted=True)
        return True

    def _alert(self, dir: str, rec: Record, fragment: bytes | None, encrypted: bool = False) -> None:
        parsed = parse_alert(fragment) if fragment is not None else None
        if parsed is None:
            detail = "encrypted" if fragment is None else f"malformed ({len(fragment)} bytes)"
            ev = self._emit(dir, rec, "Alert", rec.size, encrypted=True, detail=detail)
        else:
            level, desc = parsed
            detail = f"{ALERT_LEVELS.get(level, f'level {level}')} {alert_name(desc)}"
            ev = self._emit(dir, rec, "Alert", rec.size, encrypted=encrypted, detail=detail)
        self.alerts.append(ev)

    # -- handshake messages -------------------------------------------------------

    def _message(self, dir: str, m: Message, encrypted: bool) -> None:
        handler = _HANDLERS.get(m.type)
        name = handshake_name(m.type)
        # Kept only when there are keys to use it with: a copy of every certificate chain otherwise.
        if (self.keylog is not None or self.rsa_key is not None) and len(self._transcript) < 32 and not m.sslv2:
            self._transcript.append(bytes([m.type]) + len(m.body).to_bytes(3, "big") + m.body)
        try:
            detail = handler(self, dir, m) if handler else ""
        except Exception as e:      # noqa: BLE001 - hostile bytes: count the error, keep the rest
            self._error(f"{name} in frame {m.frame}: {e if isinstance(e, msg.DecodeError) else type(e).__name__}")
            partial = getattr(e, "partial", None)
            detail = ""
            if m.type == 1 and isinstance(partial, msg.ClientHello) and self.client_hello is None:
                self.client_hello = partial
            elif m.type == 2 and isinstance(partial, msg.ServerHello) and self.server_hello is None \
                    and partial.cipher is not None and not partial.hello_retry:
                self.server_hello = partial
        if m.type == 2 and self.hello_retry is not None and self.server_hello is None:
            name = "HelloRetryRequest"
        ev = Event(m.ts, m.frame, dir, name, m.size, encrypted, detail or "")
        self._append(ev)
        if m.type == 1 and self.client_hello_event is None:
            self.client_hello_event = ev
        elif m.type == 2 and name == "ServerHello" and self.server_hello_event is None:
            self.server_hello_event = ev
        elif m.type == 20 and self.sides[dir].finished is None:
            self.sides[dir].finished = ev

    def _client_hello(self, dir: str, m: Message) -> str:
        self.client_hellos += 1
        ch = msg.parse_client_hello(m.body, sslv2=m.sslv2)
        if self.client_hello is None:
            self.client_hello = ch
        parts = [f"sni={ch.sni}" if ch.sni else "no sni"]
        if ch.alpn:
            parts.append("alpn=" + ",".join(ch.alpn))
        parts.append("versions=" + ",".join(version_name(v) for v in ch.offered_versions if v is not None))
        return "; ".join(parts)

    def _server_hello(self, dir: str, m: Message) -> str:
        sh = msg.parse_server_hello(m.body)
        if sh.hello_retry:
            if self.hello_retry is None:
                self.hello_retry = sh
            return f"retry with group {group_name(sh.group)}" if sh.group is not None else "retry"
        if self.server_hello is None:
            self.server_hello = sh
            self._start_decryptor()
        parts = [version_name(sh.version), cipher_name(sh.cipher)]
        if sh.group is not None:
            parts.append(group_name(sh.group))
        if sh.alpn:
            parts.append("alpn=" + sh.alpn)
        return "; ".join(p for p in parts if p)

    def _certificate(self, dir: str, m: Message) -> str:
        ders = msg.certificate_list(m.body, tls13=self._tls13())
        infos = [msg.describe_certificate(d) for d in ders]
        if dir == S2C and not self.certificates:
            self.certificates = infos
        leaf = infos[0].subject if infos else "empty"
        return f"{len(infos)} certificate{'s' if len(infos) != 1 else ''}; {leaf}"

    def _server_key_exchange(self, dir: str, m: Message) -> str:
        name = cipher_name(self.server_hello.cipher) if self.server_hello else None
        self.key_exchange = msg.parse_server_key_exchange(m.body, name)
        kx = self.key_exchange
        return kx.kind + (f" {group_name(kx.group)}" if kx.group is not None else "")

    def _encrypted_extensions(self, dir: str, m: Message) -> str:
        self.encrypted_extensions = msg.parse_encrypted_extensions(m.body)
        return f"alpn={self.encrypted_extensions.alpn}" if self.encrypted_extensions.alpn else ""

    def _client_key_exchange(self, dir: str, m: Message) -> str:
        kx = self.key_exchange_kind()
        if kx == "RSA" and (self.decryptor is None or not self.decryptor.available):
            self._start_decryptor(encrypted_premaster=m.body)
        return kx or ""

    # -- helpers ---------------------------------------------------------------

    def _emit(self, dir: str, rec: Record, kind: str, size: int, encrypted: bool = False,
              detail: str = "") -> Event:
        ev = Event(rec.ts, rec.frame, dir, kind, size, encrypted, detail)
        self._append(ev)
        return ev

    def _append(self, ev: Event) -> None:
        """Keep ``ev`` unless the session already lists MAX_SESSION_EVENTS (then count it)."""
        if len(self.events) < self._most_events:
            self.events.append(ev)
            return
        self.events_not_listed += 1
        if self.events_not_listed == 1:      # first among the errors: it explains the rest
            lim = limits.LIMITS["MAX_SESSION_EVENTS"]
            self.errors.insert(0, f"more than {self._most_events} TLS events; the rest are counted, not listed "
                                  f"(set {lim.env} to raise the limit)")

    def _extend_last(self, rec: Record) -> Event:
        """The last event grown by one more record (and every reference to it with it)."""
        old = self.events[-1]
        n = old.records + 1
        # Built directly: dataclasses.replace costs several times more, once per record of a download.
        new = Event(old.ts, old.frame, old.dir, old.kind, old.size + rec.size, old.encrypted, f"{n} records", n)
        self.events[-1] = new
        for side in self.sides.values():
            if side.first_app is old:
                side.first_app = new
            if side.finished is old:
                side.finished = new
        return new

    def _error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS:     # hostile bytes can fail every message: keep the first few
            self.errors.append(text)

    # -- results ---------------------------------------------------------------

    @property
    def version(self) -> int | None:
        return self.server_hello.version if self.server_hello else None

    @property
    def alpn(self) -> str | None:
        if self.server_hello and self.server_hello.alpn:
            return self.server_hello.alpn
        if self.encrypted_extensions and self.encrypted_extensions.alpn:
            return self.encrypted_extensions.alpn
        return None

    def resumption(self) -> str | None:
        """How the session was resumed: psk (TLS 1.3), session-id or ticket (TLS 1.2), or None."""
        sh, ch = self.server_hello, self.client_hello
        if sh is None:
            return None
        if is_tls13(sh.version):
            return "psk" if sh.psk_selected else None
        server, client = self.sides[S2C], self.sides[C2S]
        # An abbreviated TLS 1.2 handshake: the server changes cipher spec first, with no Certificate.
        abbreviated = server.ccs is not None and (client.ccs is None or server.ccs.frame <= client.ccs.frame) \
            and not any(e.kind in ("Certificate", "ServerKeyExchange") for e in self.events)
        if not abbreviated:
            return None
        if ch is not None and ch.session_id and ch.session_id == sh.session_id:
            return "session-id"
        return "ticket"

    def completed(self) -> bool:
        client, server = self.sides[C2S], self.sides[S2C]
        if self.server_hello is None:
            return False
        if is_tls13(self.version):
            return client.finished is not None or client.first_app is not None
        return client.finished is not None and server.finished is not None

    def handshake_end(self) -> Event | None:
        """When both sides are done: the later of the two Finished messages.

        That is when the client may send application data: in a full TLS 1.2
        handshake the server's Finished (2 round trips), in TLS 1.3 and a
        resumed 1.2 handshake the client's own (1 round trip).  Timing only
        the client's Finished would make TLS 1.2 look as fast as 1.3.
        """
        client, server = self.sides[C2S], self.sides[S2C]
        done = [e for e in (client.finished, server.finished) if e is not None]
        if client.finished is None and client.first_app is not None:
            done.append(client.first_app)
        return max(done, key=lambda e: (e.ts, e.frame)) if done else None

    def rtts(self) -> int | None:
        """Round trips before the client may send application data."""
        if self.server_hello is None:
            return None
        n = 1 if is_tls13(self.version) or self.resumption() else 2
        return n + (1 if self.hello_retry is not None else 0)

    def status(self) -> str:
        if self.completed():
            return "completed"
        if self.alerts:
            ev = self.alerts[0]
            return f"failed: alert from {_SIDE[ev.dir]} ({ev.detail})"
        if self.rst is not None:
            return f"failed: reset by {_SIDE[self.rst[0]]}"
        if self.client_hello is None:
            return "no ClientHello"
        if self.server_hello is None:
            return "stalled: no ServerHello"
        return "stalled: handshake unfinished"

    def alert_text(self) -> str | None:
        if not self.alerts:
            return None
        ev = self.alerts[0]
        return f"{ev.detail} ({_SIDE[ev.dir]})"

    def round_trips(self) -> list[tuple[float, float]]:
        """The handshake's round trips as seen on the wire: (start, end) of each client
        flight the server answered, until the client sends application data."""
        trips: list[tuple[float, float]] = []
        server_finished = False
        waiting = None                  # start of a client flight, until the server's answer ends
        for d, t0, t1, kinds in self._flights():
            if waiting is not None:
                trips.append((waiting, t1))
                waiting = None
            if d != C2S:
                server_finished = server_finished or bool(kinds & {"Finished", "EncryptedHandshake"})
                continue
            # The handshake is over once the client sends data, or sends its
            # Finished after the server's (TLS 1.3, resumed TLS 1.2).
            if "ApplicationData" in kinds or ("Finished" in kinds and server_finished):
                break
            waiting = t0
        return trips

    def _flights(self):
        """(dir, first ts, last ts, kinds) of each run of events in one direction, as they end
        (a generator: the round trips stop reading at the first application data)."""
        flight = None
        for e in sorted(self.events, key=lambda e: (e.ts, e.frame)):
            if flight is not None and flight[0] == e.dir:
                flight[2] = e.ts
                flight[3].add(e.kind)
                continue
            if flight is not None:
                yield flight
            flight = [e.dir, e.ts, e.ts, {e.kind}]
        if flight is not None:
            yield flight

    def group(self) -> str | None:
        """The key exchange group's name, from the ServerHello or ServerKeyExchange."""
        sh = self.server_hello
        if sh is not None and sh.group is not None:
            return group_name(sh.group)
        if self.key_exchange is not None and self.key_exchange.group is not None:
            return group_name(self.key_exchange.group)
        return None

    def key_exchange_kind(self) -> str | None:
        if self.server_hello is None:
            return None
        if is_tls13(self.version):
            return "PSK" if self.server_hello.psk_selected and self.server_hello.group is None else \
                ("PSK+ECDHE" if self.server_hello.psk_selected else "ECDHE")
        if self.key_exchange is not None:
            return self.key_exchange.kind
        return msg.key_exchange_kind(cipher_name(self.server_hello.cipher))


_HANDLERS = {
    1: TLSSession._client_hello,
    2: TLSSession._server_hello,
    8: TLSSession._encrypted_extensions,
    11: TLSSession._certificate,
    12: TLSSession._server_key_exchange,
    16: TLSSession._client_key_exchange,
}
