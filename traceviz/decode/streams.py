"""The payload tier: the few TCP connections whose bytes need understanding.

``decode_streams`` looks at the first bytes each TCP connection carries (not
its ports); for those that speak TLS or plaintext HTTP it reassembles both
byte streams, runs a ``TLSSession`` per TLS connection (decrypting when keys
unlock it) and hands the plaintext -- captured or decrypted -- to the HTTP
machine the connection speaks (HTTP/1.x, which may switch to h2c, or
HTTP/2).  It returns one :class:`StreamResult` per such connection: the
protocol machines themselves, holding their typed events.  Turning those
into table rows is the assembler's job.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from traceviz import limits
from traceviz.decode import preamble, sniff
from traceviz.decode.tcp.reassembly import ByteStream, reassemble_columns
# A peek at every segment touches the whole file, and so do a few thousand connections' heads:
# these read it a window at a time / hand the pages back (memory advice, not I/O: the bytes are
# in ``buf`` already, and a page handed back is read again from the page cache).
from traceviz.sources.gather import peek, pieces
from traceviz.sources.mapping import release_pages

C2S, S2C = "c2s", "s2c"
ALL = 1 << 62          # skippable: every byte from here on
# Connections decoded between two hand-backs of the pages they read (a few hundred of them
# touch tens of MB of a big file: the kernel maps 64 kB around each page a read faults in).
RELEASE_EVERY = 500


@dataclass
class StreamResult:
    """What the payload tier learnt of one TCP connection.

    ``kind``: what its first bytes said (``tls``, ``http/1.1``, ``h2c``).
    ``tls``: the ``TLSSession`` (TLS connections).  ``http``: the HTTP machine
    its plaintext went to (an ``UpgradeConnection`` for cleartext HTTP/1.x, an
    ``HTTP1Connection`` or ``HTTP2Connection`` inside TLS), or None when the
    plaintext was not HTTP, not readable, or the machine gave up
    (``http_failed``).  ``protocol``: the HTTP machine chosen (``http/1.1``,
    ``h2``).  ``scheme``: http or https.  ``first_c2s``: the client's first
    plaintext bytes (its first line, at most ``sniff.REQUEST_LINE_MAX``).
    ``notes``: what stopped HTTP decoding on this connection, for warnings.
    """

    conn: int
    kind: str
    tls: object = None
    http: object = None
    protocol: str | None = None
    scheme: str = "http"
    http_failed: bool = False
    first_c2s: bytes = field(default=b"", repr=False)
    notes: list[str] = field(default_factory=list)


@dataclass
class Payload:
    """The payload tier over a whole capture: results by connection, the
    connections that carried bytes none of our decoders speak (``opaque``), and
    those over a resource limit (``skipped``, with the warning to give)."""

    results: dict[int, StreamResult]
    opaque: np.ndarray
    skipped: dict[int, str] = field(default_factory=dict)     # conn -> why its payload was not decoded


@dataclass
class Plan:
    """What the sniffers said of a capture's TCP connections, before any is decoded.

    ``kinds``: the connections to decode and what their first bytes say
    (``pending``: of those, connections whose first line was still going
    after ``sniff.SNIFF_BYTES``; the stream decides).  ``carrying``: every
    connection that carried payload.  ``cols``: the TCP columns reassembly reads.
    ``skipped``: connections over a per-connection limit (``limits.streams_over``),
    left undecoded, each with the warning to give.  ``kinds`` may say
    ``preamble``: TLS may follow another protocol's first words (``preamble.py``).
    """

    cols: dict
    kinds: dict[int, str]
    pending: set[int]
    carrying: np.ndarray
    http: bool = True         # run the HTTP machines (inside TLS too, when keys open it)
    skipped: dict[int, str] = field(default_factory=dict)

    def cost(self) -> dict[int, int]:
        """A rough cost of decoding each connection: a fixed part and its segments."""
        conns = np.fromiter(self.kinds, dtype=np.int64, count=len(self.kinds))
        if not len(conns):
            return {}
        segments = np.bincount(self.cols["conn"][self.cols["len"] > 0], minlength=int(conns.max()) + 1)
        return dict(zip(conns.tolist(), (_FIXED_COST + segments[conns]).tolist()))

    def opaque(self, decoded) -> np.ndarray:
        """The connections that carried bytes none of our decoders speak."""
        return np.setdiff1d(self.carrying, np.fromiter(decoded, dtype=np.int64, count=len(decoded)))


_FIXED_COST = 40        # a connection's handshake and heads weigh about as much as this many segments


def decode_streams(t, buf, keylog=None, rsa_key=None, debug: bool = False) -> Payload:
    """The payload tier for a ``decode.tcp.connections.Transport`` over the capture bytes ``buf``."""
    plan = plan_streams(t, buf)
    results = decode_planned(plan, buf, plan.kinds, keylog, rsa_key, debug)
    return Payload(results, plan.opaque(results), plan.skipped)


def plan_streams(t, buf, tls: bool = True, http: bool = True) -> Plan:
    """Sniff every TCP connection's first bytes: which to decode, and as what.

    ``tls``/``http`` False: leave TLS sessions / cleartext HTTP (and HTTP
    inside TLS) undecoded, for a caller that needs no table made of them."""
    cols = _tcp_columns(t)
    first, carrying = _first_bytes(cols, buf)
    kinds, pending = {}, set()
    for conn in sorted({c for c, _ in first}):
        c2s = first.get((conn, C2S), b"")
        kind = sniff.stream_kind(c2s, first.get((conn, S2C), b""))
        if kind is None and sniff.line_pending(c2s):
            kind = "http/1.1"                # a long request line, or not HTTP: the stream will tell
            pending.add(conn)
        if kind and (tls if kind == "tls" else http):
            kinds[conn] = kind
        elif kind is None and tls and preamble.looks_like(c2s, first.get((conn, S2C), b"")):
            kinds[conn] = "preamble"         # TLS after another protocol's first words (preamble.py)
    # Resource limits (limits.py): a connection too big to reassemble is left undecoded, and said.
    skipped = limits.streams_over(cols["conn"], cols["len"], cols["payload_cap"], kinds)
    for conn in skipped:
        del kinds[conn]
    return Plan(cols, kinds, pending, carrying, http, skipped)


def decode_planned(plan: Plan, buf, conns, keylog=None, rsa_key=None, debug: bool = False) -> dict[int, StreamResult]:
    """Reassemble and decode ``conns`` (some of ``plan.kinds``): ``{conn: StreamResult}``.

    A connection that turned out to speak nothing of ours (a long first line
    that is not HTTP, a preamble that never switched to TLS) has no result."""
    if not conns:
        return {}
    cols = plan.cols
    streams = reassemble_columns(*(cols[k] for k in ("conn", "c2s", "flags", "seq", "len", "frame", "ts",
                                                     "payload_off", "payload_cap")), buf, wanted=conns)
    results = {}
    for i, conn in enumerate(sorted(conns)):
        if i and not i % RELEASE_EVERY:
            release_pages(buf)      # the pages the last connections read: a forked worker's own
        s = streams.streams(conn)
        kind = plan.kinds[conn]
        if conn in plan.pending and sniff.stream_kind(_head(s[C2S], sniff.REQUEST_LINE_MAX), b"") is None:
            continue
        if kind == "preamble":
            start = preamble.tls_start(_head(s[C2S], preamble.HEAD_BYTES), _head(s[S2C], preamble.HEAD_BYTES))
            if start is None:
                continue
            s, kind = {C2S: preamble.trim(s[C2S], start.c2s), S2C: preamble.trim(s[S2C], start.s2c)}, "tls"
        results[conn] = decode_connection(conn, kind, s, keylog, rsa_key, debug, plan.http)
    return results


def decode_connection(conn: int, kind: str, streams: dict[str, ByteStream], keylog=None, rsa_key=None,
                      debug: bool = False, http: bool = True) -> StreamResult:
    """One connection's protocol machines, fed its reassembled ``streams``
    (``http`` False: no HTTP machine inside TLS)."""
    if kind == "tls":
        return _run_tls(conn, streams, keylog, rsa_key, debug, http)
    feed = _HTTPFeed(StreamResult(conn, kind), debug)
    _drive(streams, feed.plain, feed.gap, feed.skippable, feed.skip)
    return feed.close()


def _head(s: ByteStream, n: int) -> bytes:
    """The first ``n`` bytes of a stream (fewer if it is shorter or a gap comes first)."""
    out = bytearray()
    for i in range(len(s.offset)):
        if s.offset[i] != len(out) or len(out) >= n:
            break
        out += s.bytes_at(i)[:n - len(out)]
    return bytes(out)


def _tcp_columns(t) -> dict:
    """The per-frame columns the payload tier reads, for TCP rows with a payload length."""
    idx = t.idx
    plen = np.asarray(idx.payload_len)
    rows = np.flatnonzero(t.in_tcp & (t.conn >= 0) & (plen >= 0))
    return {"rows": rows, "conn": t.conn[rows], "c2s": t.c2s[rows],
            "flags": np.asarray(idx.tcp_flags)[rows].astype(np.int64), "seq": t.rel_seq[rows],
            "len": plen[rows].astype(np.int64), "frame": np.asarray(idx.frame)[rows],
            "ts": np.asarray(idx.ts)[rows], "payload_off": np.asarray(idx.payload_off)[rows].astype(np.int64),
            "payload_cap": np.asarray(idx.payload_cap)[rows].astype(np.int64)}


def _first_bytes(cols: dict, buf) -> tuple[dict[tuple[int, str], bytes], np.ndarray]:
    """((conn, dir) -> the first payload bytes of its lowest-sequence data segment, conns carrying data).

    Only connections whose first data byte could start TLS, SSLv2, HTTP/1.x or
    the h2 preface (``sniff.could_start``) get their bytes gathered.  Numpy
    rules out the rest in two passes (any segment with such a byte, then the
    first segment of each direction), so tens of thousands of opaque
    connections cost a gather, not a Python loop; the survivors take the
    exact path.  The file is read twice, a window of it at a time: every
    segment's first byte, then the survivors' first bytes.
    """
    none = np.zeros(0, dtype=np.int64)
    keep = (cols["len"] > 0) & (cols["payload_cap"] > 0)
    sel = np.flatnonzero(keep)
    if not len(sel):
        return {}, none
    c = cols["conn"][sel]
    carrying = np.flatnonzero(np.bincount(c))
    # Cheap first: a connection none of whose segments starts with a plausible byte is out.
    plausible = sniff.could_start(peek(buf, cols["payload_off"][sel])[:, 0])
    maybe = np.flatnonzero(np.bincount(c[plausible]))
    if not len(maybe):
        return {}, carrying
    sub = np.isin(c, maybe)
    sel, c, plausible = sel[sub], c[sub], plausible[sub]
    d = ~cols["c2s"][sel]                       # False (c2s) sorts first
    # Then exactly: the first byte of each direction's lowest-sequence segment (read above).
    seq, frame = cols["seq"][sel], cols["frame"][sel]
    order = np.lexsort((frame, seq, d, c))
    cs, ds = c[order], d[order]
    heads = np.flatnonzero(np.r_[True, (cs[1:] != cs[:-1]) | (ds[1:] != ds[:-1])])
    candidates = np.unique(cs[heads][plausible[order[heads]]])
    if not len(candidates):
        return {}, carrying
    order = order[np.isin(cs, candidates)]
    cs, ds, ss = c[order], d[order], seq[order]
    # The first three distinct segments: enough even when a sender dribbles out a byte at a time.
    distinct = np.r_[True, (cs[1:] != cs[:-1]) | (ds[1:] != ds[:-1]) | (ss[1:] != ss[:-1])]
    order, cs, ds = order[distinct], cs[distinct], ds[distinct]
    start = np.r_[True, (cs[1:] != cs[:-1]) | (ds[1:] != ds[:-1])]
    pos = np.arange(len(cs)) - np.maximum.accumulate(np.where(start, np.arange(len(cs)), 0))
    order, cs, ds, start = order[pos < 3], cs[pos < 3], ds[pos < 3], start[pos < 3]
    # A later segment only while those before it gave fewer than SNIFF_BYTES (seldom: a first
    # segment is usually longer), so the loop below runs about once per direction.
    rows = sel[order]
    gives = np.minimum(cols["payload_cap"][rows], sniff.SNIFF_BYTES)
    before = np.cumsum(gives) - gives
    short = before - np.maximum.accumulate(np.where(start, before, 0)) < sniff.SNIFF_BYTES
    rows, cs, ds = rows[short], cs[short], ds[short]
    out: dict[tuple[int, str], bytes] = {}
    starts = pieces(buf, cols["payload_off"][rows], gives[short])
    for cn, s2c, head in zip(cs.tolist(), ds.tolist(), starts):
        key = (cn, S2C if s2c else C2S)
        have = out.get(key, b"")
        if len(have) < sniff.SNIFF_BYTES:
            out[key] = have + head
    return out, carrying


def _run_tls(conn: int, streams: dict[str, ByteStream], keylog, rsa_key, debug: bool,
             http: bool = True) -> StreamResult:
    """One TLS connection: the session machine, and its decrypted bytes to the HTTP machine."""
    from traceviz.decode.tls.session import TLSSession

    session = TLSSession(conn)
    if keylog is not None or rsa_key is not None:
        session.use_keys(keylog, rsa_key)
    feed = _HTTPFeed(StreamResult(conn, "tls", tls=session, scheme="https"), debug)
    if http:
        session.on_application_data = feed.decrypted

    def gap(d: str, offset: int, length: int) -> None:
        session.gap(d, offset, length)
        # The lost TCP bytes held records whose plaintext length is unknown: the
        # HTTP machine must not frame across the hole.
        feed.gap(d, offset, None)

    _drive(streams, session.feed, gap, session.skippable, session.skip)
    for d, s in streams.items():
        if s.rst_frame is not None:
            session.reset(d, s.rst_frame, s.rst_ts)
    session.close()
    return feed.close()


def _drive(streams: dict[str, ByteStream], feed, gap, skippable, skip) -> None:
    """Both directions to a machine in the order their bytes became readable (frame order).

    Piece by piece where the machine reads (``feed(dir, bytes, frame, ts)``;
    ``gap(dir, offset, length)`` before a hole), and by arithmetic where it
    only counts: while ``skippable(dir)`` is positive, ``skip(dir, n, frame,
    ts)`` passes up to that many bytes at once -- through any number of
    pieces, never across a hole nor past a piece of the other direction that
    became readable earlier -- with the frame and time of the last piece, so
    the machine sees what feeding them would have shown it.  The cost is a
    few steps per message, not one per segment.
    """
    dirs = (C2S, S2C)
    ss = (streams[C2S], streams[S2C])
    count = [len(s.offset) for s in ss]
    idx, pos, expected = [0, 0], [0, 0], [0, 0]
    holes = [_hole_starts(s) for s in ss]
    while True:
        k0 = ss[0].ready_frame[idx[0]] if idx[0] < count[0] else None
        k1 = ss[1].ready_frame[idx[1]] if idx[1] < count[1] else None
        if k0 is None and k1 is None:
            return
        d = 0 if k1 is None or (k0 is not None and k0 < k1) else 1
        limit = k1 if d == 0 else k0
        s, i, name = ss[d], idx[d], dirs[d]
        if pos[d] == 0 and s.offset[i] > expected[d]:
            gap(name, expected[d], s.offset[i] - expected[d])
        want = skippable(name)
        if want <= 0:
            feed(name, s.bytes_at(i, pos[d]), s.ready_frame[i], s.ready_ts[i])
            expected[d] = s.offset[i] + s.size[i]
            idx[d], pos[d] = i + 1, 0
            continue
        # The pieces this skip may cover: up to the next hole, and readable before the other side's next.
        h = holes[d]
        last = h[bisect.bisect_right(h, i)] if h and h[-1] > i else count[d]
        if limit is not None:
            last = min(last, bisect.bisect_left(s.ready_frame, limit, i, count[d]))
        last -= 1
        here = s.offset[i] + pos[d]
        target = here + want
        if target < s.offset[last] + s.size[last]:
            j = bisect.bisect_right(s.offset, target - 1, i, last + 1) - 1
        else:
            j, target = last, s.offset[last] + s.size[last]
        skip(name, target - here, s.ready_frame[j], s.ready_ts[j])
        expected[d] = target
        if target == s.offset[j] + s.size[j]:
            idx[d], pos[d] = j + 1, 0
        else:
            idx[d], pos[d] = j, target - s.offset[j]


def _hole_starts(s: ByteStream) -> list[int]:
    """Indices of the pieces that follow a hole (a gap in the stream), ascending."""
    out, end = [], 0
    for i, (o, n) in enumerate(zip(s.offset, s.size)):
        if o > end:
            out.append(i)
        end = o + n
    return out


class _HTTPFeed:
    """Plaintext (captured or decrypted) to the HTTP machine the connection speaks.

    The machine is chosen on the client's first bytes -- its whole request
    line, however long, up to ``sniff.REQUEST_LINE_MAX`` -- or on the TLS
    ALPN, so everything is held until the client has said enough.  Whatever
    stops HTTP decoding on a connection is noted in ``result.notes``.
    """

    # Bytes held for a client that has not spoken (or has not finished its first line).
    MAX_HELD = 256 * 1024

    def __init__(self, result: StreamResult, debug: bool):
        self.result = result
        self.debug = debug
        self._held: list[tuple] = []
        self._held_bytes = 0
        self._alpn: str | None = None

    def plain(self, d: str, data: bytes, frame: int, ts: float) -> None:
        self._to_machine(d, data, frame, ts, alpn="h2" if self.result.kind == "h2c" else None)

    def decrypted(self, d: str, data: bytes, frame: int, ts: float) -> None:
        session = self.result.tls
        self._to_machine(d, data, frame, ts, session.alpn if session is not None else None)

    def gap(self, d: str, offset: int, length: int | None) -> None:
        if self.result.http is not None and not self.result.http_failed:
            self._safely(self.result.http.receive_gap, d, length)

    def skippable(self, d: str) -> int:
        r = self.result
        if r.http_failed:
            return ALL
        if r.http is None:
            return 0
        counts = getattr(r.http, "skippable", None)
        return counts(d) if counts is not None else 0

    def skip(self, d: str, n: int, frame: int, ts: float) -> None:
        if not self.result.http_failed:
            self._safely(self.result.http.skip, d, n, frame, ts)

    def _to_machine(self, d, data, frame, ts, alpn):
        r = self.result
        if r.http_failed:
            return
        if r.http is not None:
            self._safely(r.http.receive, d, data, frame, ts)
            return
        if d == C2S and len(r.first_c2s) < sniff.REQUEST_LINE_MAX:
            r.first_c2s += data[:sniff.REQUEST_LINE_MAX - len(r.first_c2s)]
        self._held.append((d, data, frame, ts))
        self._held_bytes += len(data)
        self._alpn = alpn
        if not r.first_c2s or sniff.line_pending(r.first_c2s):
            if self._held_bytes > self.MAX_HELD:
                self._give_up("the client's first bytes never became a request line or an HTTP/2 preface "
                              f"({self._held_bytes} bytes held)")
            return
        self._start(alpn)

    def _start(self, alpn) -> None:
        r = self.result
        r.protocol = sniff.app_protocol(alpn, r.first_c2s)
        r.http = _machine(r.protocol, r.scheme)
        if r.http is None:
            self._give_up(f"not HTTP: the client's first bytes are {_show(r.first_c2s)}")
            return
        held, self._held, self._held_bytes = self._held, [], 0
        for h in held:
            self._safely(r.http.receive, *h)

    def _give_up(self, why: str) -> None:
        r = self.result
        r.http, r.http_failed = None, True
        self._held, self._held_bytes = [], 0
        r.notes.append(f"HTTP not decoded: {why}")

    def _safely(self, call, *args) -> None:
        if self.result.http_failed:
            return
        try:
            call(*args)
        except Exception as exc:  # noqa: BLE001 - a broken application stream leaves TLS/TCP analysis intact
            if self.debug:
                raise
            self.result.http_failed = True
            frame = next((a for a in args[2:] if isinstance(a, int)), None)
            self.result.notes.append(f"HTTP decoding stopped{f' at frame {frame}' if frame else ''} "
                                     f"({type(exc).__name__}: {exc}); the requests before it are kept")

    def close(self) -> StreamResult:
        r = self.result
        if r.http is None and not r.http_failed and r.first_c2s and self._held:
            # The stream ended inside a first request line: let the machine say what it saw.
            self._start(self._alpn)
        machine = r.http
        if machine is not None:
            try:
                for d in (C2S, S2C):
                    machine.end_of_stream(d)
            except Exception:    # noqa: BLE001
                if self.debug:
                    raise
        return r


def _show(b: bytes) -> str:
    """A few bytes for a note: printable ASCII as is, the rest escaped."""
    return repr(bytes(b[:24]))[1:] + ("..." if len(b) > 24 else "")


def _machine(protocol: str | None, scheme: str):
    """A fresh HTTP machine for ``protocol``; cleartext HTTP/1.1 may switch to h2c (Upgrade)."""
    if protocol == "h2":
        from traceviz.decode.http.http2 import HTTP2Connection
        return HTTP2Connection()
    if protocol == "http/1.1":
        if scheme == "http":
            from traceviz.decode.http.upgrade import UpgradeConnection
            return UpgradeConnection(scheme)
        from traceviz.decode.http.http1 import HTTP1Connection
        return HTTP1Connection()
    return None
