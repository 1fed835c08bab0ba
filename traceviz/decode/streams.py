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

from dataclasses import dataclass, field

import numpy as np

from traceviz import limits
from traceviz.decode import preamble, sniff
from traceviz.decode.tcp.reassembly import ByteStream, reassemble_segments, segments_by_conn

C2S, S2C = "c2s", "s2c"


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
    plaintext bytes (at most ``sniff.SNIFF_BYTES``).
    """

    conn: int
    kind: str
    tls: object = None
    http: object = None
    protocol: str | None = None
    scheme: str = "http"
    http_failed: bool = False
    first_c2s: bytes = field(default=b"", repr=False)


@dataclass
class Payload:
    """The payload tier over a whole capture: results by connection, the
    connections that carried bytes none of our decoders speak (``opaque``), and
    those over a resource limit (``skipped``, with the warning to give)."""

    results: dict[int, StreamResult]
    opaque: np.ndarray
    skipped: dict[int, str] = field(default_factory=dict)     # conn -> why its payload was not decoded


def decode_streams(t, buf, keylog=None, rsa_key=None, debug: bool = False) -> Payload:
    """The payload tier for a ``decode.tcp.connections.Transport`` over the capture bytes ``buf``."""
    cols = _tcp_columns(t)
    first, carrying = _first_bytes(cols, buf)
    kinds = {}
    for conn in sorted({c for c, _ in first}):
        kind = sniff.stream_kind(first.get((conn, C2S), b""), first.get((conn, S2C), b""))
        if kind:
            kinds[conn] = kind
        elif preamble.looks_like(first.get((conn, C2S), b""), first.get((conn, S2C), b"")):
            kinds[conn] = "preamble"      # TLS after another protocol's first words (preamble.py)
    known = [c for c, k in kinds.items() if k != "preamble"]     # a preamble may yet lead to no TLS
    opaque = np.setdiff1d(carrying, np.asarray(known, dtype=np.int64))
    # Resource limits (limits.py): a connection too big to reassemble is left undecoded, and said.
    skipped = limits.streams_over(cols["conn"], cols["len"], cols["payload_cap"], kinds)
    for conn in skipped:
        del kinds[conn]
    opaque = np.union1d(opaque, np.fromiter(skipped, np.int64, len(skipped)))
    if not kinds:
        return Payload({}, opaque, skipped)
    wanted = segments_by_conn(*(cols[k] for k in ("conn", "c2s", "flags", "seq", "len", "frame", "ts",
                                                  "payload_off", "payload_cap")), wanted=kinds)
    results = {}
    for conn, segments in sorted(wanted.items()):
        streams = reassemble_segments(segments, buf)
        if kinds[conn] == "tls":
            results[conn] = _run_tls(conn, streams, keylog, rsa_key, debug)
        elif kinds[conn] == "preamble":
            start = preamble.tls_start(preamble.head(streams[C2S]), preamble.head(streams[S2C]))
            if start is not None:
                streams = {C2S: preamble.trim(streams[C2S], start.c2s), S2C: preamble.trim(streams[S2C], start.s2c)}
                results[conn] = _run_tls(conn, streams, keylog, rsa_key, debug)
        else:
            feed = _HTTPFeed(StreamResult(conn, kinds[conn]), debug)
            _feed(feed.plain, feed.gap, streams)
            results[conn] = feed.close()
    return Payload(results, opaque, skipped)


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
    exact path.
    """
    none = np.zeros(0, dtype=np.int64)
    keep = (cols["len"] > 0) & (cols["payload_cap"] > 0)
    sel = np.flatnonzero(keep)
    if not len(sel):
        return {}, none
    c = cols["conn"][sel]
    carrying = np.flatnonzero(np.bincount(c))
    offs = cols["payload_off"][sel]
    whole = np.frombuffer(buf, dtype=np.uint8)
    # Cheap first: a connection none of whose segments starts with a plausible byte is out.
    maybe = np.flatnonzero(np.bincount(c[sniff.could_start(_byte_at(whole, offs))]))
    if not len(maybe):
        return {}, carrying
    sub = np.isin(c, maybe)
    sel, c = sel[sub], c[sub]
    d = ~cols["c2s"][sel]                       # False (c2s) sorts first
    # Then exactly: the first byte of each direction's lowest-sequence segment.
    seq, frame = cols["seq"][sel], cols["frame"][sel]
    order = np.lexsort((frame, seq, d, c))
    cs, ds = c[order], d[order]
    heads = np.flatnonzero(np.r_[True, (cs[1:] != cs[:-1]) | (ds[1:] != ds[:-1])])
    candidates = np.unique(cs[heads][sniff.could_start(_byte_at(whole, cols["payload_off"][sel[order[heads]]]))])
    if not len(candidates):
        return {}, carrying
    order = order[np.isin(cs, candidates)]
    cs, ds, ss = c[order], d[order], seq[order]
    # The first three distinct segments: enough even when a sender dribbles out a byte at a time.
    distinct = np.r_[True, (cs[1:] != cs[:-1]) | (ds[1:] != ds[:-1]) | (ss[1:] != ss[:-1])]
    order, cs, ds = order[distinct], cs[distinct], ds[distinct]
    start = np.r_[True, (cs[1:] != cs[:-1]) | (ds[1:] != ds[:-1])]
    pos = np.arange(len(cs)) - np.maximum.accumulate(np.where(start, np.arange(len(cs)), 0))
    order, cs, ds = order[pos < 3], cs[pos < 3], ds[pos < 3]
    out: dict[tuple[int, str], bytes] = {}
    rows = sel[order]
    for cn, s2c, off, cap in zip(cs.tolist(), ds.tolist(), cols["payload_off"][rows].tolist(),
                                 cols["payload_cap"][rows].tolist()):
        key = (cn, S2C if s2c else C2S)
        have = out.get(key, b"")
        if len(have) < sniff.SNIFF_BYTES:
            out[key] = have + bytes(buf[off:off + min(cap, sniff.SNIFF_BYTES)])
    return out, carrying


def _byte_at(whole: np.ndarray, offs: np.ndarray) -> np.ndarray:
    """The bytes at ``offs`` (0 where an offset falls outside the buffer)."""
    ok = (offs >= 0) & (offs < len(whole))
    out = np.zeros(len(offs), dtype=np.uint8)
    out[ok] = whole[offs[ok]]
    return out


def _run_tls(conn: int, streams: dict[str, ByteStream], keylog, rsa_key, debug: bool) -> StreamResult:
    """One TLS connection: the session machine, and its decrypted bytes to the HTTP machine."""
    from traceviz.decode.tls.session import TLSSession

    session = TLSSession(conn)
    if keylog is not None or rsa_key is not None:
        session.use_keys(keylog, rsa_key)
    feed = _HTTPFeed(StreamResult(conn, "tls", tls=session, scheme="https"), debug)
    session.on_application_data = feed.decrypted

    def gap(d: str, offset: int, length: int) -> None:
        session.gap(d, offset, length)
        # The lost TCP bytes held records whose plaintext length is unknown: the
        # HTTP machine must not frame across the hole.
        feed.gap(d, offset, None)

    _feed(session.feed, gap, streams)
    for d, s in streams.items():
        if s.rst_frame is not None:
            session.reset(d, s.rst_frame, s.rst_ts)
    session.close()
    return feed.close()


def _feed(feed, gap, streams: dict[str, ByteStream]) -> None:
    """Both directions, in the order their bytes became readable (frame order)."""
    order = []
    for d, s in streams.items():
        for p in s.pieces:
            order.append((p.ready_frame, 0 if d == C2S else 1, p.offset, d, p))
    order.sort(key=lambda t: t[:3])
    expected = {C2S: 0, S2C: 0}
    for _, _, _, d, p in order:
        if p.offset > expected[d]:
            gap(d, expected[d], p.offset - expected[d])
        feed(d, p.data, p.ready_frame, p.ready_ts)
        expected[d] = p.end


class _HTTPFeed:
    """Plaintext (captured or decrypted) to the HTTP machine the connection speaks.

    The machine is chosen on the client's first bytes (or the TLS ALPN), so
    the server's bytes are held until the client has spoken.
    """

    def __init__(self, result: StreamResult, debug: bool):
        self.result = result
        self.debug = debug
        self._held: list[tuple] = []

    def plain(self, d: str, data: bytes, frame: int, ts: float) -> None:
        self._to_machine(d, data, frame, ts, alpn="h2" if self.result.kind == "h2c" else None)

    def decrypted(self, d: str, data: bytes, frame: int, ts: float) -> None:
        session = self.result.tls
        self._to_machine(d, data, frame, ts, session.alpn if session is not None else None)

    def gap(self, d: str, offset: int, length: int | None) -> None:
        if self.result.http is not None and not self.result.http_failed:
            self._safely(self.result.http.receive_gap, d, length)

    def _to_machine(self, d, data, frame, ts, alpn):
        r = self.result
        if r.http_failed:
            return
        if r.http is None:
            if d == C2S and not r.first_c2s:
                r.first_c2s = data[:sniff.SNIFF_BYTES]
            if not r.first_c2s:
                self._held.append((d, data, frame, ts))
                return
            r.protocol = sniff.app_protocol(alpn, r.first_c2s)
            r.http = _machine(r.protocol, r.scheme)
            if r.http is None:
                r.http_failed = True
                return
            held, self._held = self._held, []
            for h in held:
                self._safely(r.http.receive, *h)
        self._safely(r.http.receive, d, data, frame, ts)

    def _safely(self, call, *args) -> None:
        if self.result.http_failed:
            return
        try:
            call(*args)
        except Exception:        # noqa: BLE001 - a broken application stream leaves TLS/TCP analysis intact
            if self.debug:
                raise
            self.result.http_failed = True

    def close(self) -> StreamResult:
        machine = self.result.http
        if machine is not None:
            try:
                for d in (C2S, S2C):
                    machine.end_of_stream(d)
            except Exception:    # noqa: BLE001
                if self.debug:
                    raise
        return self.result


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
