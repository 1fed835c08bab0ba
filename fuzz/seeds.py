"""Seed inputs for the fuzz targets, cut from the bundled captures and the test corpus.

Real traffic makes the best seeds: a mutated real ClientHello reaches far
deeper into the TLS parser than random bytes.  Captures are decoded once
with traceviz itself (each connection's byte streams reassembled, TLS
decrypted where the bundled keys unlock it) and the results are cached in
``fuzz/.cache`` (not kept in git).
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import pickle
import struct
from pathlib import Path

from fuzz import streams

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
CORPUS = ROOT / "tests" / "corpus"
CACHE = Path(__file__).resolve().parent / ".cache"
# Seeds bigger than this are cut (at a record boundary where the format has them).
MOST = 65536


def _files(*patterns: str) -> list[Path]:
    out = []
    for base in (CAPTURES, CORPUS):
        for pattern in patterns:
            out += sorted(p for p in base.rglob(pattern) if p.is_file() and "record" not in p.parts)
    return out


def capture_files(fmt: str, most: int = MOST):
    """pcap or pcapng seeds: the captures of that format, each cut to ``most`` bytes at a record boundary."""
    def seeds() -> list[bytes]:
        out = []
        for p in _files("*.pcap", "*.pcapng"):
            data = p.read_bytes()
            if fmt == "pcap" and data[:4] in _PCAP_MAGICS:
                out.append(_cut_pcap(data, most))
            elif fmt == "pcapng" and data[:4] == b"\x0a\x0d\x0d\x0a":
                out.append(_cut_pcapng(data, most))
        if fmt == "pcap":
            out += [_pcap_of(p) for p in _pcapng_paths()[:6]]
        return [s for s in out if s]
    return seeds


_PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")


def _pcapng_paths() -> list[Path]:
    return [p for p in _files("*.pcapng") if p.stat().st_size < 400_000]


def _cut_pcap(data: bytes, most: int) -> bytes:
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    off = 24
    while off + 16 <= len(data):
        n, = struct.unpack_from(order + "I", data, off + 8)
        if off + 16 + n > most:
            break
        off += 16 + n
    return data[:max(off, 24)]


def _cut_pcapng(data: bytes, most: int) -> bytes:
    off = 0
    order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    while off + 12 <= len(data):
        n, = struct.unpack_from(order + "I", data, off + 4)
        if n < 12 or off + n > most:
            break
        off += n
    return data[:off]


def _pcap_of(path: Path, most: int = MOST) -> bytes:
    """The first packets of a pcapng as a classic pcap (the pcap target's seeds from the bundled captures)."""
    from traceviz.sources.reader import read_capture
    cap = read_capture(path)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, int(cap.linktype[0]) if len(cap) else 1)]
    size = 24
    for i in range(len(cap)):
        frame = cap.frame_bytes(i + 1)
        if size + 16 + len(frame) > most:
            break
        ts = float(cap.ts[i])
        out.append(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(frame), int(cap.wire_len[i])) + frame)
        size += 16 + len(frame)
    return b"".join(out)


def gzip_files() -> list[bytes]:
    out = [p.read_bytes()[:MOST] for p in _files("*.gz")]
    for s in capture_files("pcapng", 8192)()[:4] + json_files("har", 4096)()[:2]:
        out.append(gzip.compress(s))
    out.append(gzip.compress(b"a") + gzip.compress(b"b"))       # two members
    return out


def keylog_files() -> list[bytes]:
    return [p.read_bytes()[:MOST] for p in _files("*.keys")]


@functools.lru_cache(maxsize=1)
def rsa_key():
    from traceviz.decode.tls.crypto import rsa_private_key
    path = CAPTURES / "tls12-rsa.key.pem"
    return rsa_private_key(path.read_bytes(), str(path)) if path.is_file() else None


# --- JSON exports ----------------------------------------------------------------------

def json_files(kind: str, most: int = MOST):
    """HAR, DevTools trace or protocol-log seeds; big files keep their first records only."""
    patterns = {"har": ("*.har", "*.harp"), "trace": ("*trace*.json", "*trace*.json.gz"),
                "cdp": ("*devtoolslog*.json", "*devtoolslog*.json.gz", "*perflog*.json"),
                "qlog": ("*.qlog", "*.sqlog"), "netlog": ("*netlog*.json", "*netlog*.json.gz")}[kind]

    def seeds() -> list[bytes]:
        out = []
        for p in _files(*patterns):
            data = p.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            out.append(data if len(data) <= most else _shrink(data, kind, most))
        return [s for s in out if s]
    return seeds


def _shrink(data: bytes, kind: str, most: int) -> bytes:
    """A big export cut to its first records, still valid JSON of the same kind."""
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except ValueError:
        return data[:most]
    items = None
    if kind == "har" and isinstance(value, dict):
        entries = value.get("log", {}).get("entries", [])
        for e in entries:
            for part in (e.get("response", {}).get("content", {}), e.get("request", {}).get("postData", {})):
                if isinstance(part, dict) and "text" in part:
                    part["text"] = part["text"][:64]
        items = entries
    elif kind == "qlog" and isinstance(value, dict) and isinstance(value.get("traces"), list) and value["traces"]:
        items = value["traces"][0].get("events")
    elif isinstance(value, dict):
        for key in ("traceEvents", "messages", "log", "devtoolsLog", "defaultPass", "events"):
            if isinstance(value.get(key), list):
                items = value[key]
                break
    elif isinstance(value, list):
        items = value
    if items is None:
        return data[:most]
    wanted = [i for i in items if "Resource" in str(i.get("name", "")) or "Network." in str(i.get("method", ""))
              or "Mark" in str(i.get("name", "")) or "Page." in str(i.get("method", ""))] \
        if kind in ("trace", "cdp") else items
    keep = wanted or items
    lo, hi = 1, len(keep)
    while lo < hi:                         # as many records as fit in ``most``
        mid = (lo + hi + 1) // 2
        items[:] = keep[:mid]
        if len(json.dumps(value)) <= most:
            lo = mid
        else:
            hi = mid - 1
    items[:] = keep[:lo]
    return json.dumps(value).encode()


# --- byte streams of real connections -------------------------------------------------------

def _cached(name: str, build):
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"{name}.pickle"
    if path.is_file():
        try:
            return pickle.loads(path.read_bytes())
        except Exception:      # noqa: BLE001 - a stale cache is rebuilt
            pass
    value = build()
    path.write_bytes(pickle.dumps(value))
    return value


def _key_file(path: Path) -> Path | None:
    for cand in (path.with_suffix(".keys"), path.parent / (path.name.split(".")[0] + ".keys")):
        if cand.is_file():
            return cand
    return None


def _connections() -> list[dict]:
    """Every TCP connection of the captures that carried bytes: its app, records, key lines."""
    from traceviz.decode.tcp.reassembly import reassemble

    out = []
    for path, keys, tl, cap in _loaded(p for p in _files("*.pcap", "*.pcapng") if p.stat().st_size <= 3_000_000):
        pk = tl.packets
        for row in tl.connections.itertuples():
            if row.transport != "tcp" or not isinstance(row.app, str) or row.app == "unknown":
                continue
            rows = pk[pk["conn"] == row.conn]
            pieces = reassemble(rows, cap.buf)
            order = sorted((p.ready_frame, d, p.offset, p) for d, s in pieces.items() for p in s.pieces)
            records, expected = [], {"c2s": 0, "s2c": 0}
            for _, d, _, p in order:
                if p.offset > expected[d]:
                    records.append((streams.GAP, d, p.offset - expected[d]))
                records.append((streams.DATA, d, p.data))
                expected[d] = p.end
            segs = [(d, f, s, n, fr, t, o, c) for d, f, s, n, fr, t, o, c in _segments(rows)][:400]
            out.append({"app": row.app, "records": records, "keys": keys, "path": path,
                        "segments": (segs, bytes(cap.buf))})
    return out


def _loaded(paths):
    """``(path, key file, Timeline, Capture)`` of each capture traceviz reads (with its keys)."""
    import traceviz
    from traceviz.errors import InputError
    from traceviz.sources.reader import read_capture
    for path in paths:
        keys = _key_file(path)
        try:
            yield path, keys, traceviz.load(path, keylog=keys), read_capture(path)
        except InputError:
            continue


def _segments(rows):
    from traceviz.decode.tcp.reassembly import _segments as segs
    return segs(rows)


@functools.lru_cache(maxsize=1)
def _all() -> list[dict]:
    def build():
        conns = _connections()
        for c in conns:
            c["keys"] = str(c["keys"]) if c["keys"] else None
            c["path"] = str(c["path"])
            segs, buf = c.pop("segments")
            c["segment_input"] = build_segments(segs, buf)
        return conns
    return _cached("connections-v1", build)


def stream_inputs(kind: str):
    """Stream-format seeds: ``tls`` connections as captured; ``http1``/``http2`` plaintext,
    cleartext or decrypted with the bundled keys."""
    def seeds() -> list[bytes]:
        out = []
        for c in _all():
            app, recs = c["app"], c["records"]
            if kind == "tls" and _is_tls(recs):
                out.append(streams.build(_first(recs)))
            elif kind == "http1" and app == "http/1.1" and not _is_tls(recs):
                out.append(streams.build(_first(recs)))
            elif kind == "http2" and app in ("h2c",) and not _is_tls(recs):
                out.append(streams.build(_first(recs)))
        if kind in ("http1", "http2"):
            out += [streams.build(_first(r)) for r in _plaintexts(kind)]
        if kind == "tls":
            out += _preambled(out[:4])
        return _unique(out)
    return seeds


_PREAMBLES = (
    [(streams.DATA, "c2s", b"\x00\x00\x00\x08\x04\xd2\x16\x2f"), (streams.DATA, "s2c", b"S")],
    [(streams.DATA, "s2c", b"220 mail ESMTP\r\n"), (streams.DATA, "c2s", b"EHLO a\r\n"),
     (streams.DATA, "s2c", b"250 STARTTLS\r\n"), (streams.DATA, "c2s", b"STARTTLS\r\n"),
     (streams.DATA, "s2c", b"220 go\r\n")],
    [(streams.DATA, "c2s", b"CONNECT a:443 HTTP/1.1\r\n\r\n"), (streams.DATA, "s2c", b"HTTP/1.1 200 OK\r\n\r\n")],
)


def _preambled(tls_inputs: list[bytes]) -> list[bytes]:
    """TLS conversations behind each kind of preamble (seeds for TLS-after-preamble detection)."""
    return [streams.build(pre) + s for s in tls_inputs for pre in _PREAMBLES]


def _is_tls(records) -> bool:
    for op, d, v in records:
        if op == streams.DATA:
            return len(v) >= 3 and v[0] == 22 and v[1] == 3
    return False


def _first(records, most: int = MOST):
    out, size = [], 0
    for r in records:
        size += len(r[2]) + 3 if r[0] == streams.DATA else 3
        if size > most:
            break
        out.append(r)
    return out


def _unique(items: list[bytes]) -> list[bytes]:
    return list(dict.fromkeys(i for i in items if i))


def _plaintexts(kind: str) -> list[list[tuple]]:
    """Decrypted HTTP conversations of the TLS connections the bundled keys unlock."""
    want = "h2" if kind == "http2" else "http/1.1"
    out = []
    for c in _all():
        if c["keys"] is None or c["app"] != want or not _is_tls(c["records"]):
            continue
        from traceviz.decode.tls.keylog import KeyLog
        from traceviz.decode.tls.session import TLSSession
        session = TLSSession(1)
        session.use_keys(KeyLog.from_text(Path(c["keys"]).read_bytes(), "seed"), rsa_key())
        plain = []
        session.on_application_data = lambda d, data, frame, ts: plain.append((streams.DATA, d, data))
        for op, d, v in c["records"]:
            if op == streams.DATA:
                session.feed(d, v, 1, 1.0)
        if plain:
            out.append(plain)
    return out


def decrypt_inputs() -> list[bytes]:
    """Key-log header + records of each TLS connection the bundled keys unlock."""
    from traceviz.decode.tls.keylog import KeyLog
    out = []
    for c in _all():
        if c["keys"] is None or not _is_tls(c["records"]):
            continue
        lines = Path(c["keys"]).read_bytes().splitlines()
        hello = next(v for op, d, v in c["records"] if op == streams.DATA and d == "c2s")
        random = hello[11:43].hex().encode() if len(hello) >= 43 else b""
        mine = [ln for ln in lines if random and random in ln.lower()] or lines[:8]
        assert KeyLog.from_text(b"\n".join(mine), "seed") is not None
        out.append(streams.with_header(b"\n".join(mine), streams.build(_first(c["records"], 16384))))
    return _unique(out)


# --- TCP segments -------------------------------------------------------------------------

SEGMENT = struct.Struct(">BIHH")        # flags+dir, seq, claimed length, captured bytes that follow


def build_segments(segments, buf: bytes) -> bytes:
    """A reassembly input from ``(dir, flags, seq, len, frame, ts, off, cap)`` tuples."""
    out = bytearray()
    for d, flags, seq, n, _frame, _ts, off, cap in segments:
        bits = (1 if d == "s2c" else 0) | (2 if flags & 0x02 else 0) | (4 if flags & 0x01 else 0) | (8 if flags & 0x04 else 0)
        data = buf[off:off + max(0, min(cap, n, 1200))]
        out += SEGMENT.pack(bits, seq & 0xFFFFFFFF, min(n, 0xFFFF), len(data)) + data
    return bytes(out)


def parse_segments(data: bytes) -> list[tuple]:
    """The inverse: segment tuples whose payloads point into ``data`` itself."""
    out, i, frame = [], 0, 0
    while i + SEGMENT.size <= len(data):
        bits, seq, n, cap = SEGMENT.unpack_from(data, i)
        i += SEGMENT.size
        frame += 1
        cap = min(cap, len(data) - i)
        flags = (0x02 if bits & 2 else 0) | (0x01 if bits & 4 else 0) | (0x04 if bits & 8 else 0) | 0x10
        out.append(("s2c" if bits & 1 else "c2s", flags, seq, n, frame, frame / 1000, i, cap))
        i += cap
    return out


def segment_inputs() -> list[bytes]:
    out = [c["segment_input"] for c in _all() if c["segment_input"]]
    # Reversed arrival: the worst case for an insertion-ordered reassembler.
    for s in out[:3]:
        segs = parse_segments(s)
        out.append(build_segments(list(reversed(segs)), s))
    return _unique([s[:MOST] for s in out])


# --- QUIC datagrams, HTTP/3 streams and QUIC frames ------------------------------------------

def _quic_captures() -> list[Path]:
    return [p for p in _files("*.pcap", "*.pcapng") if p.stat().st_size < 3_000_000
            and ("quic" in p.name or "browser" in p.name)]


def _quic_flows() -> list[dict]:
    """Every QUIC flow of the captures: its datagrams (as stream records, one record a datagram),
    its key lines, the HTTP/3 stream pieces and the decrypted frame payloads traceviz saw in it."""
    from traceviz.decode.http import h3
    from traceviz.decode.quic import connection as qc
    from traceviz.decode.tls.keylog import KeyLog

    out = []
    for path, keys, tl, cap in _loaded(_quic_captures()):
        pk = tl.packets
        for conn in tl.connections.loc[tl.connections["transport"] == "quic", "conn"]:
            rows = pk[pk["conn"] == conn]
            records = [(streams.DATA, d, bytes(cap.buf[o:o + n]))
                       for d, o, n in zip(rows["dir"], rows["payload_off"], rows["payload_cap"]) if o >= 0]
            # Run the flow once more to record what its inner decoders are handed.
            h3_calls, payloads = [], []
            receive, parse = h3.H3Connection.receive, qc.qf.parse_frames

            def spy_receive(self, d, sid, data, frame, ts, fin=False):
                h3_calls.append((d, sid, bytes(data), fin))
                return receive(self, d, sid, data, frame, ts, fin)

            def spy_parse(payload):
                payloads.append(bytes(payload))
                return parse(payload)
            h3.H3Connection.receive, qc.qf.parse_frames = spy_receive, spy_parse
            try:
                log = KeyLog.from_text(keys.read_bytes(), "seed") if keys else None
                q = qc.QUICConnection(1, log)
                for i, (_, d, v) in enumerate(records, 1):
                    q.receive(d, v, i, i / 1000)
                q.close()
            finally:
                h3.H3Connection.receive, qc.qf.parse_frames = receive, parse
            out.append({"records": records, "keys": keys.read_bytes() if keys else b"",
                        "h3": h3_calls, "frames": payloads})
    return out


@functools.lru_cache(maxsize=1)
def _quic_all() -> list[dict]:
    return _cached("quic-v1", _quic_flows)


def quic_inputs() -> list[bytes]:
    """Key-log header + the datagrams of each QUIC flow; and each without its keys."""
    out = []
    for f in _quic_all():
        body = streams.build(_first(f["records"], 32768))
        out += [streams.with_header(f["keys"], body), streams.with_header(b"", body)]
    return _unique(out)


def h3_record(sid: int, data: bytes, fin: bool) -> bytes:
    """One HTTP/3 stream piece in a stream record: stream id (one byte), FIN, then the bytes."""
    return bytes((sid & 0xFF, 1 if fin else 0)) + data


def h3_inputs() -> list[bytes]:
    """The HTTP/3 stream pieces QUIC handed to HTTP/3 in each flow the keys unlock."""
    out = []
    for f in _quic_all():
        recs = [(streams.DATA, d, h3_record(sid, data, fin)) for d, sid, data, fin in f["h3"]]
        out.append(streams.build(_first(recs)))
    return _unique(out)


def quic_frame_inputs() -> list[bytes]:
    """Decrypted QUIC packet payloads (frames), the first few hundred of each flow."""
    return _unique([p for f in _quic_all() for p in f["frames"][:300]])


# --- what HTTP carried: WebSocket frames, gRPC messages, server-sent events; DNS datagrams ------

def _carried_captures() -> list[Path]:
    names = ("websocket", "grpc", "push-vs-poll", "sse")
    return [p for p in _files("*.pcap", "*.pcapng") if p.stat().st_size < 3_000_000 and any(n in p.name for n in names)]


def _carried_calls() -> dict[str, list[list[tuple]]]:
    """What traceviz fed each WebSocket, gRPC and SSE machine while loading the lab captures, as
    stream records (one list per machine, by class name), and each gRPC call's trailers (under
    ``trailers``, by the call's index): recorded by wrapping the machines' methods for the load,
    in this process (one worker, so no fork hides the calls)."""
    from traceviz.assemble import grpc as grpc_rows
    from traceviz.decode.grpc import GRPCStream
    from traceviz.decode.http.carried import carried_by
    from traceviz.decode.http.sse import SSEStream
    from traceviz.decode.http.websocket import WebSocketConnection

    seen: dict[int, tuple] = {}          # id(machine) -> (machine, records); the machine kept so ids stay unique

    def spy(cls, name, record):
        real = getattr(cls, name)

        def wrapped(self, *args):
            seen.setdefault(id(self), (self, []))[1].append(record(*args))
            return real(self, *args)
        return real, wrapped

    ops = {"receive": lambda d, data, frame, ts: (streams.DATA, d, bytes(data)),
           "receive_gap": lambda d, n: (streams.GAP, d, n) if n is not None else (streams.GAP_UNKNOWN, d, None),
           "end_of_stream": lambda d: (streams.EOS, d, None)}
    classes = (WebSocketConnection, GRPCStream, SSEStream)
    saved = [(cls, name, *spy(cls, name, rec)) for cls in classes for name, rec in ops.items()]
    trailers: dict[int, tuple] = {}
    real_rows = grpc_rows.rows

    def rows(conn, http):
        found = grpc_rows._trailers(http)
        for sid, machine in carried_by(http, GRPCStream):
            if sid in found:
                trailers[id(machine)] = found[sid].headers or ()
        return real_rows(conn, http)
    saved.append((grpc_rows, "rows", real_rows, rows))
    workers = os.environ.get("TRACEVIZ_WORKERS")
    os.environ["TRACEVIZ_WORKERS"] = "1"
    try:
        for cls, name, _, wrapped in saved:
            setattr(cls, name, wrapped)
        for _ in _loaded(_carried_captures()):
            pass
    finally:
        for cls, name, real, _ in saved:
            setattr(cls, name, real)
        if workers is None:
            del os.environ["TRACEVIZ_WORKERS"]
        else:
            os.environ["TRACEVIZ_WORKERS"] = workers
    out: dict[str, list] = {"trailers": []}
    for machine, records in seen.values():
        out.setdefault(type(machine).__name__, []).append(records)
        if isinstance(machine, GRPCStream):
            out["trailers"].append(trailers.get(id(machine), ()))
    return out


@functools.lru_cache(maxsize=1)
def _carried_all() -> dict[str, list]:
    return _cached("carried-v2", _carried_calls)


def carried_inputs(machine: str, most: int = MOST):
    """Stream-format seeds: what one ``WebSocketConnection``, ``GRPCStream`` or ``SSEStream``
    was fed in the lab captures (the bytes after a 101, an extended CONNECT's or a gRPC call's
    DATA, an event-stream body)."""
    def seeds() -> list[bytes]:
        return _unique([streams.build(_first(r, most)) for r in _carried_all().get(machine, [])])
    return seeds


def grpc_inputs() -> list[bytes]:
    """Each gRPC call of the lab captures: its trailers (``name: value`` lines) as the header, then
    the DATA its stream carried."""
    calls = _carried_all()
    out = []
    for records, pairs in zip(calls.get("GRPCStream", []), calls["trailers"]):
        head = "\n".join(f"{k}: {v}" for k, v in pairs).encode("latin-1")
        out.append(streams.with_header(head, streams.build(_first(records))))
    return _unique(out)


def _dns_flows() -> list[list[tuple]]:
    """The datagrams of every DNS flow of the captures, as stream records (one record, one datagram)."""
    out = []
    for _, _, tl, cap in _loaded(p for p in _files("*.pcap", "*.pcapng") if p.stat().st_size < 3_000_000):
        pk = tl.packets
        for conn in tl.connections.loc[tl.connections["app"] == "dns", "conn"]:
            rows = pk[pk["conn"] == conn]
            out.append([(streams.DATA, d, bytes(cap.buf[o:o + n]))
                        for d, o, n in zip(rows["dir"], rows["payload_off"], rows["payload_cap"]) if o >= 0])
    return out


def dns_inputs() -> list[bytes]:
    """The datagrams of each DNS flow (queries and their answers), in arrival order; and the
    flows of one capture run together (several lookups in one input)."""
    flows = _cached("dns-v1", _dns_flows)
    one = [streams.build(_first(f, 16384)) for f in flows]
    return _unique(one + [b"".join(one[i:i + 4]) for i in range(0, len(one), 4)])
