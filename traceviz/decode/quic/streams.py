"""The payload tier's QUIC half: which UDP flows speak QUIC, and their machines.

``decode_quic(transport, buf, keylog)`` looks at the first bytes of every
UDP payload at once with numpy -- a long header (high bit set) whose version
field names a QUIC version we know of (v1, v2, the drafts, Google's Q0NN and
T0NN, mvfst, a greased version), or Google's older public header -- never
at the port.  Only the flows with such a packet go through Python: each
gets a ``QUICConnection`` fed every payload of the flow in frame order.

The client of a UDP flow is its first sender (``decode.tcp``); when QUIC
says otherwise (the capture caught the server's packet first) the flow is
turned around (``client_by`` = ``quic``) before anything reads its direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from traceviz.sources.gather import peek
from traceviz.sources.mapping import release_pages

UDP = 17
_HEAD = 13            # bytes looked at: the long header's version, or the public header's at offset 9
_LOOK = 50            # datagrams of a flow read to tell its client, before its hellos are decrypted
# Flows read between two hand-backs of the file's pages they touched (``mapping.release_pages``):
# a flow's datagrams lie scattered over a slice of the file, and the kernel maps 64 kB around
# each one read; on the realistic bench's 1M packets, 3k flows made 670 MB of the file resident.
RELEASE_EVERY = 100


@dataclass
class QuicPayload:
    """QUIC over the whole capture: ``results`` by connection; ``suspects``: (conn, frame, why) for
    UDP flows that looked like QUIC but could not be read; ``flipped``: flows turned around
    (``late``: those of them only the decrypted hellos could tell)."""

    results: dict = field(default_factory=dict)
    suspects: list = field(default_factory=list)
    flipped: list = field(default_factory=list)
    late: list = field(default_factory=list)         # of ``flipped``, those the hellos turned around
    reads: str = "all"                               # what the machines read (``run_quic``)


def quic_rows(idx, conn: np.ndarray, buf) -> tuple[np.ndarray, np.ndarray]:
    """(UDP rows in a flow, which of them start like a QUIC packet of a version we know of), by numpy.

    The first byte rules out most datagrams (DNS, RTP, zero padding...); only the rest have
    their version field read."""
    proto = np.asarray(idx.proto)
    cap = np.asarray(idx.payload_cap).astype(np.int64, copy=False)
    rows = np.flatnonzero((proto == UDP) & (conn >= 0) & (cap >= 7))
    hit = np.zeros(len(rows), dtype=bool)
    if not len(rows):
        return rows, hit
    # Datagrams all over the file: their first bytes in one pass, a window of the file at a time.
    first = peek(buf, np.asarray(idx.payload_off)[rows], _HEAD)
    b0 = first[:, 0]
    maybe = np.flatnonzero(((b0 & 0xC0) == 0xC0) | ((b0 & 0x89) == 0x09))
    if not len(maybe):
        return rows, hit
    n = np.minimum(cap[rows[maybe]], _HEAD)
    head = np.where(np.arange(_HEAD) < n[:, None], first[maybe], 0).astype(np.uint32)
    b0 = head[:, 0]
    v = (head[:, 1] << 24) | (head[:, 2] << 16) | (head[:, 3] << 8) | head[:, 4]
    known = ((v == 0x00000001) | (v == 0x6B3343CF) | (v == 0x709A50C4) | ((v >> 8) == 0xFF0000)
             | ((v & 0x0F0F0F0F) == 0x0A0A0A0A) | ((v >> 16) == 0x5130) | ((v >> 16) == 0x5430)
             | ((v >> 8) == 0xFACEB0))
    long_header = ((b0 & 0xC0) == 0xC0) & known
    google_public = ((b0 & 0x89) == 0x09) & (head[:, 9] == ord("Q")) & (head[:, 10] == ord("0")) & (n >= _HEAD)
    hit[maybe] = long_header | google_public
    return rows, hit


def decode_quic(t, buf, keylog=None, debug: bool = False) -> QuicPayload:
    """A ``QUICConnection`` per UDP flow that speaks QUIC (``t``: ``decode.tcp.connections.Transport``)."""
    plan = plan_quic(t, buf)
    out = run_quic(plan, buf, keylog, debug)
    if out.late:
        turn_around(t, out.late)
    return out


@dataclass
class QuicPlan:
    """The UDP flows that speak QUIC, and what their machines read: per flow (``members``), the
    positions of its datagrams in the columns ``frames``, ``ts``, ``offs``, ``caps``, ``c2s``
    (directions after ``flipped``).  Made from the transport, which the machines then no
    longer need: they may run after it is let go, beside the TCP payload tier."""

    members: dict = field(default_factory=dict)
    frames: list = field(default_factory=list)
    ts: list = field(default_factory=list)
    offs: list = field(default_factory=list)
    caps: list = field(default_factory=list)
    c2s: list = field(default_factory=list)
    flipped: list = field(default_factory=list)
    low_port_first: set = field(default_factory=set)    # flows whose first sender has the lower port


def plan_quic(t, buf) -> QuicPlan:
    """Which UDP flows speak QUIC, each turned around where its first packets say the first
    sender is the server (``turn_around``: before any table reads the directions)."""
    plan = find_quic(t, buf)
    settle_clients(plan, buf)
    if plan.flipped:
        turn_around(t, plan.flipped)
    return plan


def find_quic(t, buf) -> QuicPlan:
    """The plan of the UDP flows that speak QUIC, with the directions the transport gives
    them (its first sender the client): ``settle_clients`` then reads who really is."""
    plan = QuicPlan()
    rows, hit = quic_rows(t.idx, t.conn, buf)
    if not hit.any():
        return plan
    conns = np.unique(t.conn[rows[hit]])
    wanted = rows[np.isin(t.conn[rows], conns)]
    idx = t.idx
    plan.frames = np.asarray(idx.frame)[wanted].tolist()
    plan.ts = np.asarray(idx.ts)[wanted].tolist()
    plan.offs = np.asarray(idx.payload_off)[wanted].tolist()
    plan.caps = np.asarray(idx.payload_cap)[wanted].tolist()
    plan.c2s = t.c2s[wanted].tolist()
    by_conn: dict[int, list[int]] = {}
    for i, c in enumerate(t.conn[wanted].tolist()):
        by_conn.setdefault(c, []).append(i)
    plan.members = dict(sorted(by_conn.items()))
    plan.low_port_first = {c for c in plan.members if _ports_say_first_is_server(t, c)}
    return plan


def settle_clients(plan: QuicPlan, buf) -> None:
    """Each flow of ``plan`` whose first packets say its first sender is the server (or,
    where they do not tell, whose ports say so) turned around in the plan and listed in
    ``plan.flipped``: the caller turns the same flows wherever else directions are kept."""
    flip = []
    for c, members in _handing_back(plan.members.items(), buf):
        first = _client_sends_first(buf, [plan.offs[i] for i in members], [plan.caps[i] for i in members],
                                    [plan.c2s[i] for i in members])
        if first is False or (first is None and c in plan.low_port_first):
            flip.append(c)
            for i in members:
                plan.c2s[i] = not plan.c2s[i]
    plan.flipped = flip


def _handing_back(flows, buf):
    """``flows`` one by one, the file's pages handed back every ``RELEASE_EVERY`` of them."""
    for n, flow in enumerate(flows):
        if n and not n % RELEASE_EVERY:
            release_pages(buf)
        yield flow


READS = ("all", "handshake", "turns")


def run_quic(plan: QuicPlan, buf, keylog=None, debug: bool = False, reads: str = "all") -> QuicPayload:
    """Each QUIC flow's machine fed its datagrams.  A flow whose hellos say the other side is
    the client is read again turned around and listed in ``late`` (``out.flipped`` too): the
    caller turns it around wherever the directions are kept (``turn_around``, or
    ``assemble.transport.turn_around`` once the tables are made).

    ``reads``: what of each flow the tables need read (``READS``):

    - ``all`` of it;
    - ``handshake``: its TLS handshake and turns, for the tls and connections tables without
      a key log.  Without keys only Initial packets open, all of them long headers, so a
      datagram that starts with a short header is not fed: on the realistic bench's 1M
      packets, 20k datagrams instead of 100k.  (A flow whose long headers are all unreadable
      is read whole: its short headers may be what make it a QUIC connection.)  Its rows hold
      the tls rows and the apps alone (``assemble.quic.rows``), so the hellos' transport
      parameters (the quic table's) are not read;
    - ``turns``: who each flow's client is and nothing else, for the packets, and the
      requests without keys (QUIC gives them none).  Each machine stops at its flow's first
      ClientHello -- the one ``client_is_server`` reads; a later one never replaces it --
      and no result is kept: a datagram or two of each flow.
    """
    from traceviz.decode.quic.connection import QUICConnection

    if reads not in READS or (reads == "handshake" and keylog is not None):
        raise ValueError(f"run_quic cannot read {reads!r}{' with keys' * (keylog is not None)}")
    out = QuicPayload(flipped=list(plan.flipped), reads=reads)
    frames, ts, offs, caps, c2s = plan.frames, plan.ts, plan.offs, plan.caps, plan.c2s
    turns_only, long_only = reads == "turns", reads == "handshake"

    def run(c: int, members: list[int], turned: bool, long_only: bool = long_only):
        q = QUICConnection(conn=c, keylog=keylog, parameters=reads == "all")
        try:
            for i in members:
                if long_only and not buf[offs[i]] & 0x80:
                    continue
                q.receive("c2s" if c2s[i] != turned else "s2c", bytes(buf[offs[i]:offs[i] + caps[i]]),
                          frames[i], ts[i])
                if turns_only and q.handshake.client_hello_event is not None:
                    return q
            q.close()
        except Exception as e:   # noqa: BLE001 - a decoder bug costs this flow, never the capture
            if debug:
                raise
            q.errors.append(f"decoding stopped ({type(e).__name__}: {e})")
        return q

    for c, members in _handing_back(plan.members.items(), buf):
        q = run(c, members, False)
        if q.client_is_server():
            # The hellos say the other side is the client (the header test could not tell): read again.
            out.late.append(c)
            if not turns_only:
                q = run(c, members, True)
        if turns_only:
            continue
        readable = [e for e in q.events if e.type != "unparsed"]
        if not readable and long_only:
            q = run(c, members, c in out.late, long_only=False)
            readable = [e for e in q.events if e.type != "unparsed"]
        if q.errors:
            frame = _first_frame(q.errors, frames[members[0]])
            out.suspects.append((c, frame, q.errors[0]))
        if readable:
            out.results[c] = q
    out.flipped += out.late
    return out


def _first_frame(errors: list[str], default: int) -> int:
    text = errors[0]
    if text.startswith("frame "):
        num = text[6:].split(":", 1)[0]
        if num.isdigit():
            return int(num)
    return default


def _client_sends_first(buf, offs: list[int], caps: list[int], c2s) -> bool | None:
    """Whether the flow's first sender is the QUIC client, from what only one side sends: a
    client's 0-RTT packets and token-bearing Initials, a server's Version Negotiation and Retry.
    None: the first datagrams do not say (the ClientHello may, once decrypted)."""
    from traceviz.decode.quic.packets import INITIAL, RETRY, VN, ZERO_RTT, parse_datagram
    for off, cap, is_c2s in list(zip(offs, caps, c2s))[:_LOOK]:
        if not buf[off] & 0x80:
            continue
        for p in parse_datagram(bytes(buf[off:off + cap])).packets:
            if p.type in (VN, RETRY):
                return not is_c2s
            if p.type == ZERO_RTT or (p.type == INITIAL and p.token):
                return bool(is_c2s)
    return None


def _ports_say_first_is_server(t, conn: int) -> bool:
    """Neither packets nor hellos tell: as for TCP, the lower port is the server's."""
    cols = t.connections
    client, server = cols["client"][conn], cols["server"][conn]
    try:
        return int(client.rsplit(":", 1)[1]) < int(server.rsplit(":", 1)[1])
    except (ValueError, IndexError, AttributeError):
        return False


# Connection columns that come in pairs, one per direction.
PAIRS = [("client", "server"), ("packets_c2s", "packets_s2c"), ("bytes_c2s", "bytes_s2c"),
         ("frames_c2s", "frames_s2c"), ("wire_bytes_c2s", "wire_bytes_s2c")]


def turn_around(t, conns: list[int]) -> None:
    """Make the other side of these UDP flows the client: per-frame direction and per-flow columns."""
    rows = np.isin(t.conn, conns) & t.in_conn
    t.c2s[rows] = ~t.c2s[rows]
    cols = t.connections
    numbers = np.asarray(cols["conn"])
    at = np.flatnonzero(np.isin(numbers, conns))
    for a, b in PAIRS:
        if a in cols and b in cols:
            cols[a][at], cols[b][at] = cols[b][at].copy(), cols[a][at].copy()
    if "client_by" in cols:
        cols["client_by"][at] = "quic"
