"""The fuzz targets: one small function per decoder, bytes in, nothing out.

A target feeds its bytes to one decoder the way traceviz does and lets
through only what is a bug: any exception other than the decoder's
documented refusal (``InputError`` for a file that cannot be read).  The
TLS and HTTP machines promise never to raise on hostile bytes at all, so
any exception from them is a bug; ``TRACEVIZ_DEBUG`` is set so that the
TLS session re-raises what it would otherwise only count.  Targets also
check a few invariants (a reassembled stream's pieces are ordered and do
not overlap), since a decoder that silently returns nonsense is a bug too.

Adding a target is one function::

    @target("qlog", seeds=seed_files("*.qlog"), kind="json")
    def qlog(data: bytes) -> None:
        from traceviz.sources import qlog
        try:
            qlog.from_bytes("fuzz", data)
        except InputError:
            pass

``kind`` picks the structure-aware mutator (``bytes``, ``json``,
``stream``, ``stream-keyed``, ``stream-headed``: see ``mutate.py``);
``seeds`` is a callable returning the seed inputs (see ``seeds.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

from fuzz import seeds as S
from fuzz import streams

os.environ.setdefault("TRACEVIZ_DEBUG", "1")


@dataclass(frozen=True)
class Target:
    """A fuzz target.  Fields: name, run (bytes -> None), seeds (() -> list[bytes]), kind (mutator), what."""

    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    kind: str
    what: str


TARGETS: dict[str, Target] = {}
# Decoders being written elsewhere: their targets join when they land.
PENDING: tuple[str, ...] = ()


def target(name: str, seeds: Callable[[], list[bytes]], kind: str = "bytes"):
    def register(fn):
        TARGETS[name] = Target(name, fn, seeds, kind, (fn.__doc__ or "").strip().splitlines()[0])
        return fn
    return register


def _refused(call, *args):
    """Run ``call``; a documented refusal (``InputError``) is a fine outcome."""
    from traceviz.errors import InputError
    try:
        return call(*args)
    except InputError:
        return None


# --- files ---------------------------------------------------------------------------

@target("pcap", seeds=S.capture_files("pcap"))
def pcap(data: bytes) -> None:
    """pcap reader: the record walk and the per-record headers."""
    from traceviz.sources import pcap as reader
    cap = _refused(reader.parse, data, "fuzz.pcap")
    if cap is not None:
        _check_capture(cap, data)


@target("pcapng", seeds=S.capture_files("pcapng"))
def pcapng(data: bytes) -> None:
    """pcapng reader: blocks, options, interfaces, secrets."""
    from traceviz.sources import pcapng as reader
    cap = _refused(reader.parse, data, "fuzz.pcapng")
    if cap is not None:
        _check_capture(cap, data)


def _check_capture(cap, data: bytes) -> None:
    n = len(cap)
    assert len(cap.data_off) == len(cap.caplen) == len(cap.ts) == n
    if n:
        assert (cap.data_off >= 0).all() and (cap.caplen >= 0).all()
        assert int((cap.data_off + cap.caplen).max()) <= len(data), "a frame runs past the file"


@target("gzip", seeds=S.gzip_files)
def gzip(data: bytes) -> None:
    """gzip inflation of captures and JSON exports, bounded."""
    import io

    from traceviz.sources import jsonfile, reader
    out = _refused(reader._inflate, io.BytesIO(data), "fuzz.gz", 1 << 20)
    if out is not None:
        assert len(out[0]) <= 1 << 20
        reader.sniff_bytes(out[0][:4])
    out = _refused(jsonfile._gunzip, "fuzz.gz", data, 1 << 20)
    if out is not None:
        assert len(out) <= 1 << 20


@target("index", seeds=S.capture_files("pcap", most=16384))
def index(data: bytes) -> None:
    """Link, IP and TCP/UDP headers of every frame, then the TCP analysis (numpy)."""
    from traceviz.decode.index import index_frames
    from traceviz.decode.tcp.connections import analyze
    from traceviz.sources import pcap as reader
    cap = _refused(reader.parse, data, "fuzz.pcap")
    if cap is None or not len(cap):
        return
    idx = index_frames(cap)
    has = idx.payload_off >= 0
    assert (idx.payload_cap[has] <= idx.payload_len[has]).all()
    assert ((idx.payload_off[has] + idx.payload_cap[has]) <= len(data)).all(), "payload past the file"
    analyze(idx)


@target("reassembly", seeds=S.segment_inputs)
def reassembly(data: bytes) -> None:
    """TCP reassembly of one connection: overlaps, holes, retransmissions, SYN/FIN/RST."""
    from traceviz.decode.tcp.reassembly import reassemble_segments
    segments = S.parse_segments(data)
    out = reassemble_segments(segments, data)
    for s in out.values():
        end = -1
        for p in s.pieces:
            assert p.offset >= end, "pieces overlap or are out of order"
            assert len(p.data) > 0
            end = p.end
        assert s.conflicting <= s.retransmitted
        last = -1
        for off, length in s.gaps:
            assert length > 0 and off >= last
            last = off + length


# --- TLS -----------------------------------------------------------------------------

def _run_session(records, keylog=None, rsa_key=None):
    from traceviz.assemble import tls as rows
    from traceviz.decode.tls.session import TLSSession
    session = TLSSession(1)
    if keylog is not None or rsa_key is not None:
        session.use_keys(keylog, rsa_key)
    plain = []
    session.on_application_data = lambda d, data, frame, ts: plain.append(len(data))
    offset = {"c2s": 0, "s2c": 0}
    for i, (op, d, value) in enumerate(records, 1):
        if op == streams.DATA:
            # Every other piece, step over what the session would only count, as the payload tier does.
            n = min(session.skippable(d), len(value)) if i % 2 else 0
            if n:
                session.skip(d, n, i, 1.0 + i / 1000)
            if n < len(value):
                session.feed(d, value[n:], i, 1.0 + i / 1000)
            offset[d] += len(value)
        elif op == streams.GAP:
            session.gap(d, offset[d], value)
            offset[d] += value
        elif op == streams.EOS:
            session.reset(d, i, 1.0 + i / 1000)
    session.close()
    rows.session_row(session, {"client": "10.0.0.1:1", "server": "10.0.0.2:443"}, keylog)
    rows.event_columns(1, session)
    if session.completed() and session.client_hello_event is not None:
        session.handshake_end()            # what a connection's first request is timed against
    return session


@target("tls", seeds=S.stream_inputs("tls"), kind="stream")
def tls(data: bytes) -> None:
    """TLS records and handshake messages (no keys), and the TLS table row."""
    _run_session(streams.parse(data))


_KEYS: dict[bytes, object] = {}


def _keylog(header: bytes):
    """The key log of a keyed input, parsed once per distinct header."""
    from traceviz.decode.tls.keylog import KeyLog
    keylog = _KEYS.get(header)
    if keylog is None:
        if len(_KEYS) > 256:
            _KEYS.clear()
        keylog = _KEYS[header] = KeyLog.from_text(header, "fuzz.keys")
    return keylog


@target("tls-decrypt", seeds=S.decrypt_inputs, kind="stream-keyed")
def tls_decrypt(data: bytes) -> None:
    """TLS decryption: key log + records of a session the keys unlock (TLS 1.2 and 1.3)."""
    header, body = streams.split_header(data)
    _run_session(streams.parse(body), _keylog(header), S.rsa_key())


@target("preamble", seeds=S.stream_inputs("tls"), kind="stream")
def preamble(data: bytes) -> None:
    """TLS after another protocol's preamble (SSLRequest, STARTTLS, CONNECT): where it starts."""
    from traceviz.decode import preamble as pre
    c2s = b"".join(v for op, d, v in streams.parse(data) if op == streams.DATA and d == "c2s")
    s2c = b"".join(v for op, d, v in streams.parse(data) if op == streams.DATA and d == "s2c")
    pre.looks_like(c2s[:64], s2c[:64])
    found = pre.tls_start(c2s[:pre.HEAD_BYTES], s2c[:pre.HEAD_BYTES])
    if found is not None:
        assert 0 <= found.c2s < len(c2s) and (found.s2c is None or 0 <= found.s2c < len(s2c))
        assert c2s[found.c2s] == 22


# --- HTTP ----------------------------------------------------------------------------

def _feed(machine, records) -> None:
    """An HTTP machine (or one HTTP carries) fed the way the payload tier feeds it: bytes, holes, ends of stream."""
    for i, (op, d, value) in enumerate(records, 1):
        if op == streams.DATA:
            machine.receive(d, value, i, 1.0 + i / 1000)
        elif op == streams.GAP:
            machine.receive_gap(d, value)
        elif op == streams.GAP_UNKNOWN:
            machine.receive_gap(d, None)
        elif op == streams.EOS:
            machine.end_of_stream(d)
    for d in streams.DIRS:
        machine.end_of_stream(d)


def _run_http(machine, records, scheme: str) -> None:
    from traceviz.assemble import http as rows
    _feed(machine, records)
    rows.connection_rows(machine, scheme, "example.test")


@target("http1", seeds=S.stream_inputs("http1"), kind="stream")
def http1(data: bytes) -> None:
    """HTTP/1.x from both sides (cleartext, which may switch to h2c), and its request rows."""
    from traceviz.decode.http.http1 import HTTP1Connection
    from traceviz.decode.http.upgrade import UpgradeConnection
    records = streams.parse(data)
    _run_http(UpgradeConnection("http"), records, "http")
    _run_http(HTTP1Connection(), records, "https")


@target("http2", seeds=S.stream_inputs("http2"), kind="stream")
def http2(data: bytes) -> None:
    """HTTP/2 frames and HPACK from both sides, and its request rows."""
    from traceviz.decode.http.http2 import HTTP2Connection
    _run_http(HTTP2Connection(), streams.parse(data), "https")


# --- what HTTP carries: WebSocket, gRPC, server-sent events ---------------------------------

def _carrier(machine, key: int = 1):
    """What the carried rows are read from: an HTTP machine holding ``machine`` (by stream or response frame)."""
    return SimpleNamespace(carried={key: machine}, events=[])


@target("websocket", seeds=S.carried_inputs("WebSocketConnection", 8192), kind="stream")
def websocket(data: bytes) -> None:
    """WebSocket frames and messages from both sides (after a 101, or an RFC 8441 stream), and their rows."""
    from traceviz.assemble.websocket import machine_rows
    from traceviz.decode.http.websocket import KEEP_BYTES, WebSocketConnection, WSFrame
    ws = WebSocketConnection()
    _feed(ws, streams.parse(data))
    for ev in ws.events:
        if isinstance(ev, WSFrame):
            assert 2 <= ev.head_bytes <= 14 and len(ev.payload) <= min(KEEP_BYTES, ev.length)
            assert 0 <= ev.missing <= ev.length
    machine_rows(1, None, ws)


@target("grpc", seeds=S.grpc_inputs, kind="stream-headed")
def grpc(data: bytes) -> None:
    """gRPC length-prefixed messages of one call, their schema-less protobuf dump, its trailers; the call's rows."""
    from traceviz.assemble import grpc as rows
    from traceviz.decode.grpc import MAX_FIELDS, GRPCMessage, GRPCStream
    from traceviz.decode.http.http2 import S2C, HeadersReceived
    header, body = streams.split_header(data)
    call = GRPCStream()
    _feed(call, streams.parse(body))
    for ev in call.events:
        if isinstance(ev, GRPCMessage):
            assert len(ev.fields) <= MAX_FIELDS and (ev.complete or not ev.fields)
    http = _carrier(call)
    if header:      # the trailers, as HPACK hands them over: latin-1 pairs
        pairs = tuple((k.strip().lower(), v.strip()) for k, _, v in
                      (line.decode("latin-1").partition(": ") for line in header.split(b"\n")))
        http.events.append(HeadersReceived(S2C, 1000, 2.0, 1, headers=pairs, end_stream=True))
    rows.rows(1, http)
    rows.annotate([{"stream": 1, "url": "http://example.test/lab.Inventory/GetItem"}], http)


@target("sse", seeds=S.carried_inputs("SSEStream"), kind="stream")
def sse(data: bytes) -> None:
    """Server-sent events of one text/event-stream body (events, ids, retries, heartbeats), and their rows."""
    from traceviz.assemble import sse as rows
    from traceviz.decode.http.sse import PREVIEW, SSEEvent, SSEStream
    stream = SSEStream()
    _feed(stream, streams.parse(data))
    for ev in stream.events:
        if isinstance(ev, SSEEvent):
            assert len(ev.data) <= PREVIEW and ev.data_bytes >= len(ev.data.encode())
    rows.rows(1, _carrier(stream))


# --- DNS ---------------------------------------------------------------------------------

@target("dns", seeds=S.dns_inputs, kind="stream")
def dns(data: bytes) -> None:
    """DNS messages of one UDP flow (one record, one datagram: dpkt's parser, never raising), and their rows (the table 1 in 64)."""
    import numpy as np

    from traceviz.assemble import dns as rows
    from traceviz.decode.dns import DNSMessage, decode_dns
    grams = [(d, v) for op, d, v in streams.parse(data) if op == streams.DATA]
    if not grams:
        return
    # The transport tier's view of the flow: each datagram's payload where it sits in the buffer.
    sizes = np.array([len(v) for _, v in grams], dtype=np.int64)
    c2s = np.array([d == "c2s" for d, _ in grams])
    n = len(grams)
    idx = SimpleNamespace(proto=np.full(n, 17), sport=np.where(c2s, 40000, 53), dport=np.where(c2s, 53, 40000),
                 payload_off=np.concatenate(([0], np.cumsum(sizes)[:-1])), payload_cap=sizes,
                 frame=np.arange(1, n + 1), ts=1.0 + np.arange(n) / 1000)
    cap = decode_dns(SimpleNamespace(idx=idx, conn=np.zeros(n, dtype=np.int64), c2s=c2s), b"".join(v for _, v in grams))
    for m, (_, v) in zip(cap.messages(), [g for g in grams if len(g[1])]):
        if isinstance(m, DNSMessage):
            assert m.size == len(v) and len(m.questions) <= 64 and len(m.answers) <= 64
    for body in cap.bodies:            # each message's row text: cheap, so for every input
        rows._body_columns(body)
    if _now_and_then(data, 64):        # the pandas table: ~10 ms, so one input in 64
        rows.events(cap)
        rows.apps(cap)


# --- QUIC and HTTP/3 --------------------------------------------------------------------

@target("quic", seeds=S.quic_inputs, kind="stream-keyed")
def quic(data: bytes) -> None:
    """QUIC from the datagrams of one flow: headers, Initial (and with keys every) decryption, frames, HTTP/3; its rows."""
    from traceviz.assemble import quic as rows
    from traceviz.decode.quic.connection import QUICConnection
    header, body = streams.split_header(data)
    q = QUICConnection(1, _keylog(header) if header else None)
    for i, (op, d, value) in enumerate(streams.parse(body), 1):
        if op == streams.DATA:            # one record, one datagram
            for p in q.receive(d, value, i, 1.0 + i / 1000):
                assert p.size <= len(value) and 0 <= p.index < p.coalesced
    q.close()
    rows.quic_row(q, {}, q.keylog, None)
    rows.event_columns(1, q)
    if q.h3 is not None:
        rows.h3_rows(1, q, None)


@target("quic-frames", seeds=S.quic_frame_inputs)
def quic_frames(data: bytes) -> None:
    """QUIC frames of one decrypted packet payload (IETF and Google QUIC)."""
    from traceviz.decode.quic.frames import parse_frames, parse_google_frames
    for parse in (parse_frames, parse_google_frames):
        frames, error = parse(data)
        assert error is None or isinstance(error, str)
        for f in frames:
            assert getattr(f, "length", 0) is None or getattr(f, "length", 0) >= 0


@target("http3", seeds=S.h3_inputs, kind="stream")
def http3(data: bytes) -> None:
    """HTTP/3 frames and QPACK (encoder streams, header blocks) of one connection's streams, and its request rows."""
    from traceviz.decode.http.h3 import H3Connection, exchanges
    h3 = H3Connection()
    last = {"c2s": 0, "s2c": 0}
    for i, (op, d, value) in enumerate(streams.parse(data), 1):
        if op == streams.DATA and len(value) >= 2:      # stream id, FIN, bytes (seeds.h3_record)
            last[d] = value[0]
            h3.receive(d, value[0], value[2:], i, 1.0 + i / 1000, fin=bool(value[1] & 1))
        elif op == streams.GAP:
            h3.receive_gap(d, last[d], value)
        elif op == streams.EOS:
            h3.reset(d, last[d], 0x10C, i, 1.0 + i / 1000)
    h3.close()
    exchanges(h3.events, default_host="example.test")


# --- browser exports and key logs ------------------------------------------------------

def _json(data: bytes, hook=None):
    from traceviz.sources import jsonfile
    return _refused(jsonfile.parse_bytes, "fuzz.json", data, False, hook)


@target("har", seeds=S.json_files("har", 16384), kind="json")
def har(data: bytes) -> None:
    """HAR reader (bodies and lists cut from the byte stream, then while parsing) and its requests
    table, events and connections."""
    from traceviz.assemble.browser import har_pages, timeline_from_har
    from traceviz.sources.har import CUTS, drop_bodies, har_from_json
    from traceviz.sources.jsonfile import Elider
    if Elider.available():
        elider = Elider.of(CUTS)
        elider.shortest = 64
        for i in range(0, len(data), 997):          # chunks cut anywhere, as a big file's are
            elider.feed(data[i:i + 997])
        data = bytes(elider.close())
    parsed = _json(data, drop_bodies)
    if parsed is None:
        return
    log = _refused(har_from_json, "fuzz.har", parsed[0], parsed[1])
    if log is not None:
        timeline_from_har(log)
        har_pages(log.pages)


def _chrome(data: bytes, reader, path: str, source: str) -> None:
    """A Chrome export (trace or protocol log) read, then its request rows and page."""
    from traceviz.assemble.browser import _chrome_pages, _chrome_rows
    parsed = _json(data)
    if parsed is None:
        return
    log = _refused(reader, path, parsed[0], parsed[1])
    if log is not None:
        _chrome_rows(log.requests, source, log.wall_offset)
        _chrome_pages(log.page, log.wall_offset)


@target("trace", seeds=S.json_files("trace", 16384), kind="json")
def trace(data: bytes) -> None:
    """DevTools trace-event reader and the request rows it becomes."""
    from traceviz.sources.trace import trace_from_json
    _chrome(data, trace_from_json, "fuzz.trace.json", "devtools-trace")


@target("cdp", seeds=S.json_files("cdp", 16384), kind="json")
def cdp(data: bytes) -> None:
    """DevTools protocol-log reader and the request rows it becomes."""
    from traceviz.sources.cdp import cdp_from_json
    _chrome(data, cdp_from_json, "fuzz.devtoolslog.json", "devtools-log")


@target("keylog", seeds=S.keylog_files)
def keylog(data: bytes) -> None:
    """NSS key log parsing; no secret may appear in its warnings or repr."""
    from traceviz.decode.tls.keylog import KeyLog
    log = KeyLog.from_text(data, "fuzz.keys")
    shown = repr(log) + "".join(log.warnings)
    for random in log.client_randoms()[:4]:
        for secret in log.secrets_for(random).values():
            if len(secret) >= 8:
                assert secret.hex() not in shown.lower(), "a secret in a warning"


# --- QUIC logs ---------------------------------------------------------------------------

_FOLDER: str | None = None


def _as_file(data: bytes, name: str) -> str:
    """The input written where the file readers can open it: qlog and NetLog are read from a
    path (gzip, the unfinished-log repair and JSON-SEQ are all decided there)."""
    global _FOLDER
    if _FOLDER is None:           # one folder per process, removed when it ends
        import atexit
        import shutil
        import tempfile
        _FOLDER = tempfile.mkdtemp(prefix="traceviz-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        atexit.register(shutil.rmtree, _FOLDER, True)
    path = os.path.join(_FOLDER, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _now_and_then(data: bytes, every: int = 8) -> bool:
    """One input in ``every``, picked by its bytes (so a saved crash replays the same way): a log's
    timeline costs fifty times its reading, and would hold the reader to a hundred inputs a second."""
    import zlib
    return zlib.crc32(data) % every == 0


@target("qlog", seeds=S.json_files("qlog", 16384), kind="json")
def qlog(data: bytes) -> None:
    """qlog reader (JSON, JSON-SEQ, NDJSON; every draft), and (1 in 8) the QUIC timeline it becomes."""
    from traceviz.assemble.qlog import timeline_from_qlog
    from traceviz.sources.qlog import read_qlog
    q = _refused(read_qlog, _as_file(data, "fuzz.qlog"))
    if q is not None and _now_and_then(data):
        timeline_from_qlog(q)


@target("netlog", seeds=S.json_files("netlog", 16384), kind="json")
def netlog(data: bytes) -> None:
    """Chrome NetLog reader (also cut short while written), and (1 in 8) the timeline it becomes."""
    from traceviz.assemble.netlog import timeline_from_netlog
    from traceviz.sources.netlog import read_netlog
    log = _refused(read_netlog, _as_file(data, "fuzz.netlog.json"))
    if log is not None and _now_and_then(data):
        timeline_from_netlog(log)
