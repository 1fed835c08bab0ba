"""The TLS 1.3 handshake QUIC carries in CRYPTO frames (RFC 9001 section 4),
and the QUIC transport parameters inside it.

There is no TLS record layer in QUIC: each packet-number space's CRYPTO
bytes are handshake messages back to back.  ``QUICHandshake`` is the TCP
side's ``TLSSession`` fed those messages directly, so ClientHello and
ServerHello are read by the same code (``decode.tls.messages``), the same
events come out and the JA4 fingerprint gets QUIC's ``q`` prefix.  Its
packet protection is QUIC's (``keys``), not the session's record decryptor;
``decrypted_records`` counts the Handshake and 1-RTT packets that opened.

Transport parameters: the extension is 0x39 from draft-33 on and 0xffa5
before.  From draft-27 on each parameter is (varint id, varint length,
value) and aioquic's ``pull_quic_transport_parameters`` reads them; the
drafts before used 16-bit ids and lengths inside a 16-bit-length list,
read here.
"""

from __future__ import annotations

from aioquic.buffer import Buffer, BufferReadError
from aioquic.quic.packet import PARAMS, pull_quic_transport_parameters

from traceviz.decode.tls.messages import DecodeError, Reader
from traceviz.decode.tls.records import HANDSHAKE, HandshakeReader, Record
from traceviz.decode.tls.session import TLSSession

EXT_TRANSPORT_PARAMETERS, EXT_TRANSPORT_PARAMETERS_DRAFT = 0x39, 0xFFA5


class QUICHandshake(TLSSession):
    """A ``TLSSession`` fed handshake messages from CRYPTO frames instead of records."""

    def __init__(self, conn: int | None = None, parameters: bool = True):
        super().__init__(conn, transport="q")
        # Read only for the quic table (its transport_parameters_* and idle columns): a machine
        # that reads the handshake for the tls rows or the turns skips a third of its work.
        self.parameters = parameters
        self.client_parameters: dict | None = None
        self.server_parameters: dict | None = None

    def crypto(self, dir: str, data: bytes, frame: int, ts: float, encrypted: bool) -> None:
        """In-order CRYPTO bytes of one direction (Initial space: ``encrypted`` False)."""
        if not data:
            return
        rec = Record(HANDSHAKE, 0x0304, data, frame, ts, frame, 0)
        try:
            for m in self.sides[dir].handshake.feed(rec):
                self._message(dir, m, encrypted=encrypted)
                if self.parameters:
                    self._parameters(m.type, m.body)
        except Exception as e:   # noqa: BLE001 - hostile bytes: count the error, keep the connection
            self._error(f"handshake in frame {frame}: {e if isinstance(e, DecodeError) else type(e).__name__}")

    def restart(self, dir: str) -> None:
        """The client starts over (after a Retry or Version Negotiation): the next ClientHello,
        with its own random, is the one the connection's keys come from."""
        self.sides[dir].handshake = HandshakeReader()
        if dir == "c2s":
            self.client_hello = None
            self.client_parameters = None

    def _parameters(self, mtype: int, body: bytes) -> None:
        if mtype == 1 and self.client_parameters is None:
            raw = hello_extension(body)
            self.client_parameters = transport_parameters(*raw) if raw else None
        elif mtype == 8 and self.server_parameters is None:
            raw = encrypted_extension(body)
            self.server_parameters = transport_parameters(*raw) if raw else None


def _find(exts: Reader) -> tuple[int, bytes] | None:
    while exts.left():
        etype, data = exts.uint(2), exts.vector(2)
        if etype in (EXT_TRANSPORT_PARAMETERS, EXT_TRANSPORT_PARAMETERS_DRAFT):
            return etype, data
    return None


def hello_extension(body: bytes) -> tuple[int, bytes] | None:
    """(extension type, data) of the transport parameters in a ClientHello body."""
    try:
        r = Reader(body, "ClientHello")
        r.take(2 + 32)
        r.vector(1)
        r.vector(2)
        r.vector(1)
        return _find(r.sub(2, "extensions")) if r.left() else None
    except DecodeError:
        return None


def encrypted_extension(body: bytes) -> tuple[int, bytes] | None:
    try:
        return _find(Reader(body, "EncryptedExtensions").sub(2, "extensions"))
    except DecodeError:
        return None


def transport_parameters(ext_type: int, data: bytes) -> dict | None:
    """Parameter name -> value (integers as numbers, connection IDs and tokens as hex); None if unreadable."""
    params = _varint_params(data)
    if params is None and ext_type == EXT_TRANSPORT_PARAMETERS_DRAFT:
        params = _draft_params(data)
    return params


def _varint_params(data: bytes) -> dict | None:
    try:
        p = pull_quic_transport_parameters(Buffer(data=data))
    except (BufferReadError, ValueError):
        return None
    out = {}
    for name, _ in PARAMS.values():
        value = getattr(p, name, None)
        if value is None or value is False:
            continue
        out[name] = _plain(value)
    return out


def _plain(value):
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (int, bool)):
        return value
    if hasattr(value, "chosen_version"):           # version_information (RFC 9368)
        return ", ".join(f"0x{v:08x}" for v in [value.chosen_version, *value.available_versions])
    if hasattr(value, "connection_id"):            # preferred_address
        return ", ".join(str(x) for x in (value.ipv4_address, value.ipv6_address) if x) + \
            f"; cid {value.connection_id.hex()}"
    return str(value)


def _draft_params(data: bytes) -> dict | None:
    """Drafts before 27: uint16 list length, then (uint16 id, uint16 length, value) entries."""
    try:
        r = Reader(data, "transport parameters")
        body = r.sub(2, "parameter list")
        out = {}
        while body.left():
            pid, value = body.uint(2), body.vector(2)
            name, kind = PARAMS.get(pid, (f"0x{pid:x}", bytes))
            if kind is int:
                try:
                    out[name] = Buffer(data=value).pull_uint_var() if value else 0
                except BufferReadError:
                    out[name] = value.hex()
            elif kind is bool:
                out[name] = True
            else:
                out[name] = value.hex()
        return out
    except DecodeError:
        return None
