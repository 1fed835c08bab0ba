"""DNS over UDP: which datagrams are DNS, and what each message asked and answered.

``dns_rows`` picks, with numpy, the UDP datagrams to or from port 53 (and
5353, multicast DNS); ``parse`` reads one message with dpkt's DNS parser into
a :class:`DNSMessage` (or a :class:`DNSError` naming what was wrong), and
``decode_dns`` does it over a capture, as columns (:class:`DNSCapture`).  The port is the test here, unlike the TCP payload tier's sniffing
of first bytes: a DNS header has no magic to look for, and resolvers and
Wireshark go by the port too.

dpkt rather than hand-written: its parser follows name compression and the
record types, and raises on a damaged message, which we turn into an event.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, replace

import numpy as np

from traceviz.sources.gather import pieces

UDP = 17
PORTS = (53, 5353)
HEADER = 12
MAX_RECORDS = 64            # records kept per section (a hostile message may claim 65535)

TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
         41: "OPT", 64: "SVCB", 65: "HTTPS", 255: "ANY"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def type_name(t: int) -> str:
    return TYPES.get(t, f"TYPE{t}")


def rcode_name(r: int) -> str:
    return RCODES.get(r, f"RCODE{r}")


@dataclass(frozen=True)
class DNSMessage:
    """One DNS message.

    Fields: frame, ts, conn (the UDP flow), direction (c2s/s2c), id,
    response (QR), opcode, rcode (its name: NOERROR, NXDOMAIN...),
    authoritative, truncated, recursion_desired, recursion_available,
    questions ((name, type) pairs), answers ((name, type, ttl, data) with
    data as text: an address, a name), authority and additional (counts),
    size (bytes of the message).
    """

    frame: int
    ts: float
    conn: int
    direction: str
    id: int
    response: bool
    opcode: int
    rcode: str
    authoritative: bool
    truncated: bool
    recursion_desired: bool
    recursion_available: bool
    questions: tuple
    answers: tuple
    authority: int
    additional: int
    size: int


@dataclass(frozen=True)
class DNSError:
    """A datagram on a DNS port that is not a readable DNS message. Fields: frame, ts, conn, direction, message."""

    frame: int
    ts: float
    conn: int
    direction: str
    message: str


@dataclass(frozen=True)
class DNSBody:
    """What a DNS message says apart from its ID: response, opcode, rcode, authoritative, truncated,
    recursion_desired, recursion_available, questions, answers, authority, additional (as in DNSMessage)."""

    response: bool
    opcode: int
    rcode: str
    authoritative: bool
    truncated: bool
    recursion_desired: bool
    recursion_available: bool
    questions: tuple
    answers: tuple
    authority: int
    additional: int


def parse(data: bytes, frame: int, ts: float, conn: int = -1, direction: str = "c2s") -> DNSMessage | DNSError:
    """One DNS message from a UDP payload; never raises."""
    if len(data) < HEADER:
        return DNSError(frame, ts, conn, direction, f"{len(data)} bytes: shorter than a DNS header")
    body = parse_body(bytes(data[2:]))
    if isinstance(body, str):
        return DNSError(frame, ts, conn, direction, body)
    return DNSMessage(frame, ts, conn, direction, int.from_bytes(data[:2], "big"), body.response, body.opcode,
                      body.rcode, body.authoritative, body.truncated, body.recursion_desired,
                      body.recursion_available, body.questions, body.answers, body.authority, body.additional,
                      len(data))


def parse_body(rest: bytes) -> DNSBody | str:
    """Everything of a message but its ID, from the bytes after the ID (an error text if unreadable)."""
    import dpkt

    if len(rest) < HEADER - 2:
        return f"{len(rest) + 2} bytes: shorter than a DNS header"
    try:
        m = dpkt.dns.DNS(b"\0\0" + rest)
        questions = tuple((_name(q.name), type_name(q.type)) for q in m.qd[:MAX_RECORDS])
        answers = tuple((_name(rr.name), type_name(rr.type), int(rr.ttl), _rdata(rr)) for rr in m.an[:MAX_RECORDS])
    except (dpkt.UnpackError, dpkt.NeedData, ValueError, IndexError, KeyError, TypeError, UnicodeError,
            struct.error) as e:
        return f"not a readable DNS message ({type(e).__name__}: {e})"
    flags = m.op
    return DNSBody(bool(flags & 0x8000), (flags >> 11) & 0xF, rcode_name(flags & 0xF), bool(flags & 0x0400),
                   bool(flags & 0x0200), bool(flags & 0x0100), bool(flags & 0x0080), questions, answers, len(m.ns),
                   len(m.ar))


def _name(name) -> str:
    return name.decode("latin-1") if isinstance(name, bytes) else str(name)


def _rdata(rr) -> str:
    try:
        if rr.type == 1 and len(rr.rdata) == 4:
            return str(ipaddress.IPv4Address(rr.rdata))
        if rr.type == 28 and len(rr.rdata) == 16:
            return str(ipaddress.IPv6Address(rr.rdata))
        for attr in ("cname", "nsname", "ptrname", "mxname", "srvname"):
            value = getattr(rr, attr, None)
            if value:
                return _name(value)
        if rr.type == 16 and getattr(rr, "text", None):
            return " ".join(_name(t) for t in rr.text)
    except (ValueError, TypeError, AttributeError):
        pass
    return f"{len(rr.rdata)} bytes"


def dns_rows(idx, conn: np.ndarray) -> np.ndarray:
    """The rows of UDP datagrams to or from a DNS port, in a flow, with a whole header captured."""
    proto = np.asarray(idx.proto)
    sport, dport = np.asarray(idx.sport), np.asarray(idx.dport)
    cap = np.asarray(idx.payload_cap)
    on_port = np.isin(sport, PORTS) | np.isin(dport, PORTS)
    return np.flatnonzero((proto == UDP) & (conn >= 0) & on_port & (cap >= 1))


@dataclass
class DNSCapture:
    """Every DNS datagram of a capture, as columns: one entry per datagram in ``frame``, ``ts``,
    ``conn``, ``c2s``, ``id``, ``size`` (numpy arrays) and ``body`` (an index into ``bodies``: a
    ``DNSBody``, or the text saying why the datagram is not DNS).

    Columns, not an object per message: a capture asks the same questions and gets the same
    answers again and again, only the ID differs, so each distinct message is parsed once (dpkt
    costs ~8 us a message) and the rest is numpy.  ``messages()`` gives the typed events."""

    frame: np.ndarray
    ts: np.ndarray
    conn: np.ndarray
    c2s: np.ndarray
    id: np.ndarray
    size: np.ndarray
    body: np.ndarray
    bodies: list

    def __len__(self) -> int:
        return len(self.frame)

    def turned(self, conns: list[int]) -> "DNSCapture":
        """These messages with the flows ``conns`` turned around (their other side the client):
        what decoding them after ``decode.quic.streams.turn_around`` gives."""
        at = np.isin(self.conn, conns)
        if not at.any():
            return self
        return replace(self, c2s=np.where(at, ~self.c2s, self.c2s))

    def messages(self) -> list:
        """Each datagram as a DNSMessage or DNSError."""
        out = []
        for f, t, c, d, i, n, b in zip(self.frame.tolist(), self.ts.tolist(), self.conn.tolist(), self.c2s.tolist(),
                                      self.id.tolist(), self.size.tolist(), self.body.tolist()):
            body, direction = self.bodies[b], "c2s" if d else "s2c"
            if isinstance(body, str):
                out.append(DNSError(f, t, c, direction, body))
            else:
                out.append(DNSMessage(f, t, c, direction, i, body.response, body.opcode, body.rcode,
                                      body.authoritative, body.truncated, body.recursion_desired,
                                      body.recursion_available, body.questions, body.answers, body.authority,
                                      body.additional, n))
        return out


def decode_dns(t, buf) -> DNSCapture:
    """Every DNS datagram of a capture (``t``: the transport tier's result)."""
    rows = dns_rows(t.idx, t.conn)
    idx = t.idx
    offs = np.asarray(idx.payload_off)[rows].astype(np.int64)
    caps = np.asarray(idx.payload_cap)[rows].astype(np.int64)
    ids = np.zeros(len(rows), dtype=np.int64)
    known: dict[bytes, int] = {}
    bodies: list = []
    body = np.empty(len(rows), dtype=np.int64)
    # Datagrams all over the file: read a window of it at a time (``gather.pieces``).
    for i, message in enumerate(pieces(buf, offs, np.maximum(caps, 0))):
        if len(message) >= 2:
            ids[i] = message[0] << 8 | message[1]
        rest = message[2:]
        k = known.get(rest)
        if k is None:
            k = known[rest] = len(bodies)
            bodies.append(parse_body(rest))
        body[i] = k
    return DNSCapture(np.asarray(idx.frame)[rows], np.asarray(idx.ts)[rows], t.conn[rows], t.c2s[rows], ids, caps,
                      body, bodies)
