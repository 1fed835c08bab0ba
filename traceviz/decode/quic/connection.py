"""One QUIC connection observed from the wire, both directions, sans-I/O.

Feed it each UDP payload of the flow in capture order::

    q = QUICConnection(conn=3, keylog=log)     # keylog: a decode.tls.keylog.KeyLog or None
    q.receive("c2s", payload, frame, ts)       # returns the Packet events it completed
    q.close()                                   # end of capture: flush held-back bytes
    q.events, q.handshake, q.h3                 # packets; the TLS handshake; HTTP/3, if spoken

What it reads without keys: every header (versions, connection IDs and their
changes, packet types, coalesced packets, the spin bit), Version
Negotiation and Retry (its integrity tag checked), and the Initial packets
(keys from the version's salt): the ClientHello and ServerHello, so SNI,
ALPN offered, key share, transport parameters and JA4.  With an NSS key log
it opens Handshake, 0-RTT and 1-RTT packets too, follows key updates,
reads every frame, puts CRYPTO and STREAM bytes back in order and hands
the streams to HTTP/3 when ALPN says ``h3``.

Facts measured here, once (the assembler turns them into the ``quic`` row):
``handshake_start`` (the client's first Initial), ``handshake_end`` (the
client's Finished, or without keys its first 1-RTT packet), ``rtts``,
``retry``, ``version_negotiation``, ``zero_rtt``, ``close_frame``,
``spin_rtts``.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from traceviz.decode.quic import frames as qf
from traceviz.decode.quic import versions as qv
from traceviz.decode.quic.handshake import QUICHandshake
from traceviz.decode.quic.keys import LABELS, CryptoError, Opener, initial_openers, secret_openers
from traceviz.decode.quic.packets import (GOOGLE, HANDSHAKE, INITIAL, ONE_RTT, OPAQUE, RETRY, VN, ZERO_RTT,
                                          Header, parse_datagram)
from traceviz.decode.quic.reassembly import OrderedBytes

C2S, S2C = "c2s", "s2c"
_OTHER = {C2S: S2C, S2C: C2S}
SPACE = {INITIAL: "initial", HANDSHAKE: "handshake", ZERO_RTT: "0rtt", ONE_RTT: "1rtt"}
MAX_ERRORS = 50


class Packet(NamedTuple):
    """One QUIC packet as seen.

    Fields: ts, frame, dir (c2s/s2c), type (``Initial``, ``0-RTT``,
    ``Handshake``, ``1-RTT``, ``Retry``, ``VN``, ``gQUIC``, ``opaque``,
    ``unparsed``), version (None for short headers), dcid, scid, size (bytes),
    index and coalesced (its place among the packets of its datagram, and
    how many there were), pn (packet number; None until decrypted),
    decrypted, spin (short headers), key_phase, frames (``frames``
    dataclasses; STREAM and CRYPTO without their bytes), note (why it was
    not read, or what was odd), versions (a VN's list), retry_ok (a Retry's
    integrity tag), token (bytes of token an Initial or Retry carried).

    Immutable, and a named tuple rather than a frozen dataclass: a capture makes one per
    packet (129k on the realistic bench's 1M packets), and a frozen dataclass of these
    nineteen fields takes several times as long to make.
    """

    ts: float
    frame: int
    dir: str
    type: str
    version: int | None
    dcid: bytes
    scid: bytes
    size: int
    index: int = 0
    coalesced: int = 1
    pn: int | None = None
    decrypted: bool = False
    spin: bool | None = None
    key_phase: int | None = None
    frames: tuple = ()
    note: str | None = None
    versions: tuple = ()
    retry_ok: bool | None = None
    token: int = 0

    @property
    def space(self) -> str | None:
        return SPACE.get(self.type)


class QUICConnection:
    def __init__(self, conn: int | None = None, keylog=None, parameters: bool = True):
        self.conn = conn
        self.keylog = keylog
        self.events: list[Packet] = []
        self.handshake = QUICHandshake(conn, parameters)    # parameters: the transport parameters read
        self.h3 = None                          # decode.http.h3.H3Connection once streams speak HTTP/3
        self.versions: list[int] = []           # every long header version, in order of first appearance
        self.version: int | None = None         # the version the handshake ran in
        self.errors: list[str] = []
        self.scids: dict[str, list[bytes]] = {C2S: [], S2C: []}      # connection IDs each side chose
        self.dcids: dict[str, list[bytes]] = {C2S: [], S2C: []}      # destination IDs of short headers, in turn
        self.new_cids: dict[str, int] = {C2S: 0, S2C: 0}             # NEW_CONNECTION_ID frames sent
        self.odcid: bytes | None = None         # the client's first Initial DCID
        self.retry: Packet | None = None
        self.vn: Packet | None = None
        self.close_frame: tuple[Packet, qf.ConnectionClose] | None = None
        self.handshake_done: Packet | None = None
        self.not_opened: Counter = Counter()    # packet types we could not decrypt
        self.opened: Counter = Counter()
        self.datagrams = {C2S: 0, S2C: 0}
        self.udp_bytes = {C2S: 0, S2C: 0}
        self.spin_edges: dict[str, list[float]] = {C2S: [], S2C: []}
        self.stream_bytes: Counter = Counter()  # (dir, stream id) -> bytes delivered
        self.keep: int | None = None            # a stream id whose delivered pieces are kept (follow)
        self.kept: list = []                    # (dir, reassembly.Piece) of that stream, as delivered
        self.retransmitted = 0                  # STREAM and CRYPTO bytes sent again
        self._spin: dict[str, bool | None] = {C2S: None, S2C: None}
        self._client_initial: bytes | None = None
        self._restart = False
        self._initial: dict[tuple[int, bytes], dict | None] = {}
        self._secret: dict[tuple[str, str], list[Opener]] = {}
        self._largest: dict[tuple[str, str], int] = {}
        self._crypto: dict[tuple[str, str], OrderedBytes] = {}
        self._streams: dict[tuple[str, int], OrderedBytes] = {}
        self._fin_sent: set = set()
        self._sent: dict[tuple[str, str], dict[int, float]] = {}
        # Shortest packet -> ACK time per acknowledging side: s2c is the path beyond the capture
        # point (and back), c2s the client's side of it.
        self.ack_delay_min: dict[str, float] = {}
        self._closed = False

    # -- input -----------------------------------------------------------------

    def receive(self, dir: str, data: bytes, frame: int, ts: float) -> list[Packet]:
        before = len(self.events)
        self.datagrams[dir] += 1
        self.udp_bytes[dir] += len(data)
        if self.keylog is None and self._sealed_short(dir, data, frame, ts):
            return self.events[before:]
        # A Retry's tag covers the DCID of the client Initial it answers: the client's current one.
        dg = parse_datagram(data, self._short_len(dir), self._client_initial)
        n = len(dg.packets)
        for i, h in enumerate(dg.packets):
            self._packet(dir, data, h, i, n, frame, ts)
        if dg.error:
            self._error(f"frame {frame}: {dg.error}")
            if not n:
                self.events.append(Packet(ts, frame, dir, "unparsed", None, b"", b"", len(data), note=dg.error))
        return self.events[before:]

    def close(self) -> None:
        """End of the capture: what was held back behind holes is delivered, holes as gaps."""
        if self._closed:
            return
        self._closed = True
        for (space, d), ob in self._crypto.items():
            for p in ob.close():
                self._crypto_piece(d, space, p)
        for (d, sid), ob in self._streams.items():
            for p in ob.close():
                self._stream_piece(d, sid, ob, p)
        if self.h3 is not None:
            self.h3.close()
        self.handshake.close()

    # -- packets -----------------------------------------------------------------

    def _sealed_short(self, dir: str, data: bytes, frame: int, ts: float) -> bool:
        """A 1-RTT datagram without a key log, recorded as ``parse_datagram`` and ``_packet``
        would record it; False when it is anything else (left to them).

        Hand-written for speed: without keys nothing opens a short header packet, and such
        packets are most of a QUIC capture (97k of 110k on the realistic bench's 1M packets,
        where the general path was 1.3 of QUIC's 2.4 s).  A short header runs to the end of
        the datagram, so the datagram is this one packet."""
        first = data[0] if data else 0
        if first & 0xC0 != 0x40 or (first & 0x09 == 0x09 and len(data) >= 13 and data[9:11] in (b"Q0", b"T0")):
            return False        # a long header, the fixed bit clear, or Google's public header
        chosen = self.scids[_OTHER[dir]]
        if not chosen or 1 + len(chosen[-1]) > len(data):
            return False        # the connection ID length unknown, or a header cut short: said there
        dcid = bytes(data[1:1 + len(chosen[-1])])
        spin = bool(first & 0x20)
        self._note_cid(self.dcids[dir], dcid)
        self._spin_bit(dir, spin, ts)
        self.not_opened[ONE_RTT] += 1
        self.events.append(Packet(ts, frame, dir, ONE_RTT, None, dcid, b"", len(data), spin=spin, note="no keys"))
        return True

    def _short_len(self, dir: str) -> int | None:
        """Short headers carry the receiver's connection ID: the one it chose in its long headers."""
        chosen = self.scids[_OTHER[dir]]
        return len(chosen[-1]) if chosen else None

    def _packet(self, dir: str, data: bytes, h: Header, i: int, n: int, frame: int, ts: float) -> None:
        if h.long:
            self._long_header(dir, h)
        elif h.pn_offset is not None:
            self._note_cid(self.dcids[dir], h.dcid)
            self._spin_bit(dir, h.spin, ts)
        # The event is made once, with everything learnt: dataclasses.replace() per packet costs more
        # than opening it.
        more: dict = {}
        if h.type == VN:
            more = {"versions": h.versions}
        elif h.type == RETRY:
            more = {"retry_ok": h.retry_ok, "note": None if h.retry_ok is not False else "integrity tag wrong"}
        elif h.type == GOOGLE:
            more = {"note": "Google QUIC: its own crypto, not decrypted"}
        elif h.type == OPAQUE:
            more = {"note": "a version we cannot read past its connection IDs"}
        elif h.pn_offset is None:
            more = {"note": "connection ID length unknown: no long header seen from the receiver"}
        else:
            more = self._open(dir, data[h.start:h.start + h.size], h, frame, ts)
        ev = Packet(ts, frame, dir, h.type, h.version, h.dcid, h.scid, h.size, i, n, spin=h.spin,
                    token=len(h.token), **more)
        self.events.append(ev)
        if h.type == VN and self.vn is None:
            self.vn = ev
        elif h.type == RETRY and self.retry is None:
            self.retry = ev
        for f in ev.frames:
            if isinstance(f, qf.ConnectionClose) and self.close_frame is None:
                self.close_frame = (ev, f)
            elif isinstance(f, qf.HandshakeDone) and self.handshake_done is None:
                self.handshake_done = ev

    def _long_header(self, dir: str, h: Header) -> None:
        if h.version not in self.versions:
            self.versions.append(h.version)
        if h.type in (INITIAL, HANDSHAKE, ZERO_RTT) and qv.known(h.version):
            if h.type != ZERO_RTT or self.version is None:
                self.version = h.version
        elif h.type == GOOGLE and self.version is None:
            self.version = h.version
        if h.type in (INITIAL, HANDSHAKE, ZERO_RTT, RETRY, GOOGLE):
            self._note_cid(self.scids[dir], h.scid)
        if dir == C2S and h.type == INITIAL:
            if self.odcid is None:
                self.odcid = h.dcid
            # Initial keys come from the client's first DCID, kept for the whole handshake;
            # a Retry or a Version Negotiation makes the client start over with a new one.
            if self._client_initial is None or self._restart:
                if self._restart:
                    self._start_over()
                self._client_initial, self._restart = h.dcid, False
        elif dir == S2C and h.type in (RETRY, VN):
            self._restart = True

    def _start_over(self) -> None:
        """After a Retry or Version Negotiation the client sends a new ClientHello from offset 0."""
        for d in (C2S, S2C):
            self._crypto.pop(("initial", d), None)
            self.handshake.restart(d)

    @staticmethod
    def _note_cid(seen: list[bytes], cid: bytes) -> None:
        if cid and (not seen or seen[-1] != cid) and cid not in seen[-4:]:
            seen.append(cid)

    def _spin_bit(self, dir: str, spin: bool | None, ts: float) -> None:
        before = self._spin[dir]
        if before is not None and spin != before:
            self.spin_edges[dir].append(ts)
        self._spin[dir] = spin

    def _openers(self, space: str, dir: str, version: int) -> list[Opener]:
        if space == "initial":
            if self._client_initial is None:
                return []
            key = (version, self._client_initial)
            if key not in self._initial:
                self._initial[key] = initial_openers(version, self._client_initial)
            both = self._initial[key]
            return [both[dir]] if both else []
        if (space, dir) in self._secret:
            return self._secret[(space, dir)]
        ch = self.handshake.client_hello
        label = LABELS.get((space, dir))
        if self.keylog is None or ch is None or label is None:
            return []
        secret = self.keylog.secrets_for(ch.random).get(label)
        if not secret:
            return []
        sh = self.handshake.server_hello
        cipher = sh.cipher if sh is not None else None
        found = secret_openers(secret, self.version or qv.V1, cipher)
        if cipher is not None or len(found) == 1:
            self._secret[(space, dir)] = found
        return found

    def _open(self, dir: str, packet: bytes, h: Header, frame: int, ts: float) -> dict:
        """The packet opened and its frames read: the ``Packet`` fields this adds."""
        space = SPACE[h.type]
        version = h.version if h.version is not None else (self.version or qv.V1)
        openers = self._openers(space, dir, version)
        if not openers:
            self.not_opened[h.type] += 1
            return {"note": "no keys" if space != "initial" else "no client Initial seen to derive keys"}
        expected = self._largest.get((space, dir), -1) + 1
        for opener in openers:
            try:
                header, payload, pn = opener.open(packet, h.pn_offset, expected)
            except (CryptoError, ValueError, IndexError):
                continue
            if len(openers) > 1:
                self._secret[(space, dir)] = [opener]
            break
        else:
            self.not_opened[h.type] += 1
            return {"note": "decryption failed"}
        self.opened[h.type] += 1
        if space != "initial":
            self.handshake.decrypted_records += 1
        self._largest[(space, dir)] = max(pn, expected - 1)
        self._sent.setdefault((space, dir), {})[pn] = ts
        google = h.version is not None and qv.is_google(h.version) or (h.version is None and self._google())
        found, error = (qf.parse_google_frames if google else qf.parse_frames)(payload)
        kept = tuple(self._frame(dir, space, f, frame, ts) for f in found)
        if error and not google:      # Google's other frames are known to be unread: a note, not an error
            self._error(f"frame {frame}: {h.type} packet {pn}: {error}")
        return {"pn": pn, "decrypted": True, "key_phase": (header[0] >> 2) & 1 if not h.long else None,
                "frames": kept, "note": error}

    # -- frames -------------------------------------------------------------------

    def _frame(self, dir: str, space: str, f, frame: int, ts: float):
        if isinstance(f, qf.Crypto):
            ob = self._crypto.setdefault((space, dir), OrderedBytes())
            before = ob.retransmitted
            for p in ob.add(f.offset, f.data, frame, ts):
                self._crypto_piece(dir, space, p)
            self.retransmitted += ob.retransmitted - before
            return qf.Crypto(f.offset, f.length)          # the bytes went to the handshake: not kept twice
        if isinstance(f, qf.Stream):
            self._stream(dir, f, frame, ts)
            return qf.Stream(f.stream_id, f.offset, f.length, f.fin)
        if isinstance(f, qf.ResetStream):
            h3 = self._http3()
            if h3 is not None:
                h3.reset(dir, f.stream_id, f.error_code, frame, ts)
        elif isinstance(f, qf.NewConnectionId):
            self.new_cids[dir] += 1
        elif isinstance(f, qf.Ack):
            self._ack_sample(dir, space, f.largest, ts)
        return f

    def _ack_sample(self, dir: str, space: str, largest: int, ts: float) -> None:
        """The time from a packet to its acknowledgement, as seen at the capture point."""
        sent = self._sent.get((space, _OTHER[dir]), {}).get(largest)
        if sent is not None and ts >= sent:
            best = self.ack_delay_min.get(dir)
            self.ack_delay_min[dir] = ts - sent if best is None else min(best, ts - sent)

    def _crypto_piece(self, dir: str, space: str, p) -> None:
        if p.gap:
            self.handshake.gap(dir, p.offset - p.gap, p.gap)
        self.handshake.crypto(dir, p.data, p.frame, p.ts, encrypted=space != "initial")

    def _stream(self, dir: str, f: qf.Stream, frame: int, ts: float) -> None:
        ob = self._streams.setdefault((dir, f.stream_id), OrderedBytes())
        before = ob.retransmitted
        pieces = ob.add(f.offset, f.data, frame, ts, fin=f.fin)
        self.retransmitted += ob.retransmitted - before
        for p in pieces:
            self._stream_piece(dir, f.stream_id, ob, p)
        if not pieces and ob.finished:
            self._stream_end(dir, f.stream_id, ob, frame, ts)

    def _stream_piece(self, dir: str, sid: int, ob: OrderedBytes, p) -> None:
        self.stream_bytes[(dir, sid)] += len(p.data)
        if sid == self.keep:
            self.kept.append((dir, p))
        h3 = self._http3()
        if h3 is None:
            return
        if p.gap:
            h3.receive_gap(dir, sid, p.gap)
        done = ob.finished and p.offset + len(p.data) >= (ob.final or 0) and (dir, sid) not in self._fin_sent
        if done:
            self._fin_sent.add((dir, sid))
        h3.receive(dir, sid, p.data, p.frame, p.ts, fin=done)

    def _stream_end(self, dir: str, sid: int, ob: OrderedBytes, frame: int, ts: float) -> None:
        h3 = self._http3()
        if h3 is not None and (dir, sid) not in self._fin_sent:
            self._fin_sent.add((dir, sid))
            h3.receive(dir, sid, b"", frame, ts, fin=True)

    def _http3(self):
        """The HTTP/3 machine, when the negotiated (or, unread, every offered) ALPN is h3."""
        if self.h3 is None and self.app_protocol() == "h3":
            from traceviz.decode.http.h3 import H3Connection
            self.h3 = H3Connection()
        return self.h3

    def _google(self) -> bool:
        return self.version is not None and qv.is_google(self.version)

    def _error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text)

    # -- results -----------------------------------------------------------------

    @property
    def alpn(self) -> str | None:
        return self.handshake.alpn

    @property
    def alpn_offered(self) -> list[str]:
        ch = self.handshake.client_hello
        return list(ch.alpn) if ch is not None else []

    def app_protocol(self) -> str:
        """``h3`` or ``quic`` (anything else over QUIC, HTTP/0.9's ``hq`` included)."""
        alpn = self.alpn
        if alpn is None and self.alpn_offered and all(a.startswith("h3") for a in self.alpn_offered):
            alpn = "h3"
        return "h3" if alpn is not None and alpn.startswith("h3") else "quic"

    def client_is_server(self) -> bool:
        """The ClientHello came the way we call s2c: whoever we took for the client is the server."""
        hello = self.handshake.client_hello_event
        return hello is not None and hello.dir == S2C

    @property
    def zero_rtt(self) -> bool:
        return any(e.type == ZERO_RTT for e in self.events)

    def client_initial(self) -> Packet | None:
        return next((e for e in self.events if e.dir == C2S and e.type == INITIAL), None)

    def server_reply(self) -> Packet | None:
        """The server's first answer to the client (Initial, Handshake, Retry or VN)."""
        start = self.client_initial()
        if start is None:
            return None
        return next((e for e in self.events if e.dir == S2C and e.ts >= start.ts
                     and e.type in (INITIAL, HANDSHAKE, RETRY, VN)), None)

    def handshake_end(self) -> tuple[int, float] | None:
        """(frame, ts) when the client had finished the handshake: its Finished (read with keys),
        else its first 1-RTT packet after the server's Handshake packets, else its last Handshake packet."""
        fin = self.handshake.sides[C2S].finished
        if fin is not None:
            return fin.frame, fin.ts
        server_hs = next((e for e in self.events if e.dir == S2C and e.type == HANDSHAKE), None)
        if server_hs is None:
            return None
        later = [e for e in self.events if e.dir == C2S and e.ts >= server_hs.ts]
        first_1rtt = next((e for e in later if e.type == ONE_RTT), None)
        if first_1rtt is not None:
            return first_1rtt.frame, first_1rtt.ts
        hs = [e for e in later if e.type == HANDSHAKE]
        return (hs[-1].frame, hs[-1].ts) if hs else None

    def handshake_ms(self) -> float | None:
        start, end = self.client_initial(), self.handshake_end()
        if start is None or end is None:
            return None
        return (end[1] - start.ts) * 1000.0

    def rtts(self) -> int | None:
        """Round trips before the client could send application data: one for QUIC's handshake
        (none with 0-RTT), plus one for each Version Negotiation, Retry and HelloRetryRequest."""
        if self.server_reply() is None:
            return None
        extra = sum(1 for x in (self.vn, self.retry, self.handshake.hello_retry) if x is not None)
        return (0 if self.zero_rtt else 1) + extra

    def min_rtt(self) -> float | None:
        """The path's round trip from ACKs (RFC 9002's min_rtt, at the capture point): the
        shortest packet -> ACK time on each side of the capture point, added.  None without keys."""
        server = self.ack_delay_min.get(S2C)
        if server is None:
            return None
        return server + self.ack_delay_min.get(C2S, 0.0)

    def spin_rtts(self) -> list[float]:
        """Round trips the spin bit shows: the time between its edges, one direction's."""
        edges = self.spin_edges[C2S] if len(self.spin_edges[C2S]) >= 2 else self.spin_edges[S2C]
        return [b - a for a, b in zip(edges, edges[1:])]

    def close_text(self) -> str | None:
        """The CONNECTION_CLOSE error (with who sent it), None when none was read."""
        if self.close_frame is None:
            return None
        ev, f = self.close_frame
        if f.application:
            from traceviz.decode.http.h3 import ERROR_CODES
            code = ERROR_CODES.get(f.error_code) if self.app_protocol() == "h3" else None
            code = code or ("NO_ERROR (application)" if f.error_code == 0 else f"application error 0x{f.error_code:x}")
        else:
            code = qf.transport_error_name(f.error_code)
        who = "client" if ev.dir == C2S else "server"
        return f"{code} ({who})" + (f": {f.reason}" if f.reason else "")

    def key_updates(self) -> int:
        """1-RTT key updates seen, both directions."""
        return sum(o.updates for openers in self._secret.values() for o in openers)

    def idle_timeout(self) -> float | None:
        """The smaller max_idle_timeout the two sides announced, in seconds (None: neither read)."""
        values = [p.get("max_idle_timeout") for p in (self.handshake.client_parameters,
                                                      self.handshake.server_parameters) if p]
        values = [v for v in values if isinstance(v, int) and v > 0]
        return min(values) / 1000.0 if values else None
