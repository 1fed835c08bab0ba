"""The payload tier: the few connections whose bytes need understanding.

``run(timeline)`` looks at the first bytes each TCP connection carries (not
its ports), and for those that speak TLS or plaintext HTTP/1.x reassembles
the byte streams (``reassembly``), runs a ``TLSSession`` per TLS connection
(decrypting when a key log, pcapng secrets or an RSA key unlock it) and
hands plaintext -- captured or decrypted -- to the application decoder the
connection speaks.  It fills ``timeline.tls``, the ``app/sni/alpn/
tls_version`` columns of ``timeline.connections``, the tls/http rows of
``timeline.events`` and ``timeline.requests``.

Application decoders plug in through ``APP_DECODERS`` (HTTP/1.x now; HTTP/2
registers under "h2" the same way): a factory ``(conn, alpn) -> decoder``
whose decoder has ``feed(dir, data, frame, ts)``, ``close()``, and
``events``/``requests`` lists of dicts in the model's columns.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np
import pandas as pd

from traceviz.decode.reassembly import ByteStream, reassemble_segments, segments_by_conn
from traceviz.errors import describe
from traceviz.model import conform

# DESIGN.md's stable `tls` fields, in order; extras follow in session.row()'s order.
TLS_FIELDS = ["conn", "client", "server", "sni", "alpn_offered", "alpn", "versions_offered", "version",
              "cipher", "group", "resumed", "hello_retry", "handshake_ms", "rtts", "ja3", "ja4", "ja3s",
              "ja4s", "decrypted", "alert"]

DSB_TLS_KEYLOG = 0x544C534B

_HTTP_REQUEST = re.compile(rb"^[A-Z][A-Z-]{1,15} [^\s]+ HTTP/1\.[019]\r?\n|^[A-Z][A-Z-]{1,15} [^\s]+ HTTP/")
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


# -- application decoders: the seam HTTP/2 plugs into ---------------------------

class HTTP1Decoder:
    """Adapts ``http1.HTTP1Connection`` to the payload tier's decoder shape."""

    def __init__(self, conn: int, scheme: str = "http"):
        from traceviz.decode import http1
        self._http1 = http1
        self.conn, self.scheme = conn, scheme
        self.connection = http1.HTTP1Connection()
        self.events: list[dict] = []
        self.requests: list[dict] = []
        self._lost: set[str] = set()

    def feed(self, d: str, data: bytes, frame: int, ts: float) -> None:
        if d not in self._lost:
            self.connection.receive(d, data, frame, ts)

    def gap(self, d: str, nbytes: int | None) -> None:
        if nbytes is None:      # an unknown amount lost (inside TLS): nothing later in this direction can be framed
            self._lost.add(d)
            self.connection.end_of_stream(d)
            return
        self.connection.receive_gap(d, nbytes)

    def close(self) -> None:
        for d in ("c2s", "s2c"):
            self.connection.end_of_stream(d)
        h = self._http1
        for ev in self.connection.events:
            row = None
            if isinstance(ev, h.Request):
                row = {"ts": ev.ts, "frame": ev.frame, "dir": "c2s", "kind": "request",
                       "size": ev.head_bytes, "detail": f"{ev.method} {ev.target}"}
            elif isinstance(ev, h.Response):
                row = {"ts": ev.ts, "frame": ev.frame, "dir": "s2c", "kind": "response",
                       "size": ev.head_bytes, "detail": f"{ev.status} {ev.reason}"}
            elif isinstance(ev, h.ParseError):
                row = {"ts": float("nan"), "frame": ev.frame, "dir": ev.direction, "kind": "parse-error",
                       "size": None, "detail": ev.message}
            if row is not None:
                self.events.append({"stream": pd.NA, "layer": "http", **row})
        for i, ex in enumerate(h.exchanges(self.connection.events, scheme=self.scheme,
                                           default_host=getattr(self, "default_host", None))):
            row = ex.as_row()
            # The exchange's own request end: a list of RequestEnd times would slip out of step
            # when the capture starts with a response whose request was not captured.
            row.update(_phases(ex.start, ex.request_sent, ex.response_start, ex.end))
            row["reused_connection"] = i > 0
            row["request_frame"], row["response_frame"] = ex.request_frame, ex.response_frame
            self.requests.append(row)


def _phases(start, sent, first_byte, end) -> dict:
    """HAR-style send / wait / receive from the times the capture shows (NaN when unknown)."""
    nan = float("nan")
    ok = lambda a, b: (b - a) if a is not None and b is not None and b >= a else nan   # noqa: E731
    return {"send": ok(start, sent), "wait": ok(sent, first_byte), "receive": ok(first_byte, end)}


def _http1_factory(conn: int, alpn: str | None, scheme: str = "http"):
    try:
        decoder = HTTP1Decoder(conn, scheme)
    except ImportError:
        return None
    if scheme == "http":
        try:      # cleartext HTTP/1.1 may switch to h2c with Upgrade (RFC 7540 3.2)
            from traceviz.decode.http2 import UpgradeDecoder
            return UpgradeDecoder(decoder, conn, scheme)
        except ImportError:
            pass
    return decoder


# protocol -> factory(conn, alpn, scheme) returning a decoder with feed(dir, data,
# frame, ts), gap(dir, nbytes), close(), and .events / .requests lists of row dicts
# (model columns; conn and source are filled in here).
APP_DECODERS: dict[str, Callable[[int, str | None, str], Any]] = {"http/1.1": _http1_factory}

# Decoders that live in their own module register lazily: HTTP/2 is
# ``traceviz.decode.http2.payload_decoder(conn, alpn, scheme)`` when that exists.
_PLUGINS = {"h2": ("traceviz.decode.http2", "payload_decoder")}


def decoder_factory(protocol: str | None):
    if not protocol:
        return None
    if protocol not in APP_DECODERS and protocol in _PLUGINS:
        import importlib
        module, attr = _PLUGINS[protocol]
        try:
            factory = getattr(importlib.import_module(module), attr, None)
        except ImportError:
            factory = None
        if factory is not None:
            APP_DECODERS[protocol] = factory
    return APP_DECODERS.get(protocol)


def _app_for(alpn: str | None, first_c2s: bytes) -> str | None:
    """Which application decoder a byte stream wants: by ALPN, else by its first bytes."""
    if alpn in ("h2", "h2c"):
        return "h2"
    if alpn and alpn.startswith("http/1"):
        return "http/1.1"
    if first_c2s.startswith(_H2_PREFACE[:16]):
        return "h2"
    if _HTTP_REQUEST.match(first_c2s[:64]):
        return "http/1.1"
    return None


# -- sniffing -----------------------------------------------------------------

def sniff(c2s: bytes, s2c: bytes) -> str | None:
    """'tls', 'http/1.1', 'h2c' or None from the first bytes of each direction."""
    if _is_tls(c2s) or (not c2s and _is_tls(s2c)):
        return "tls"
    if c2s.startswith(_H2_PREFACE[:16]):
        return "h2c"
    if _HTTP_REQUEST.match(c2s[:64]) or s2c.startswith(b"HTTP/1."):
        return "http/1.1"
    return None


def _is_tls(b: bytes) -> bool:
    if len(b) >= 3 and b[0] in (20, 21, 22, 23) and b[1] == 3 and b[2] <= 4:
        return True
    # SSLv2-compatible ClientHello: 2-byte length with the high bit set, msg_type 1, version 3.x.
    return len(b) >= 4 and bool(b[0] & 0x80) and b[2] == 1 and b[3] in (2, 3)


def _first_bytes(packets: pd.DataFrame, buf) -> tuple[dict[tuple[int, str], bytes], np.ndarray]:
    """((conn, dir) -> the first payload bytes of its lowest-sequence data segment, conns carrying data).

    Only connections whose first data byte could start TLS, SSLv2, HTTP/1.x or
    the h2 preface (``_could_sniff``) get their bytes gathered.  Numpy rules
    out the rest in two passes (any segment with such a byte, then the first
    segment of each direction), so tens of thousands of opaque connections
    cost a gather, not a Python loop; the survivors take the exact path.
    """
    need = ["conn", "dir", "seq", "frame", "len", "payload_off", "payload_cap"]
    none = np.zeros(0, dtype=np.int64)
    if not all(c in packets.columns for c in need) or packets.empty:
        return {}, none
    conn = packets["conn"].to_numpy(dtype=np.float64, na_value=np.nan)
    s2c = (packets["dir"] == "s2c").to_numpy(dtype=bool, na_value=False)
    keep = ((packets["transport"] == "tcp").to_numpy(dtype=bool, na_value=False)
            & (packets["len"].to_numpy(dtype=np.float64, na_value=0) > 0) & ~np.isnan(conn)
            & (packets["payload_cap"].to_numpy(dtype=np.float64, na_value=0) > 0)
            & (s2c | (packets["dir"] == "c2s").to_numpy(dtype=bool, na_value=False)))
    rows = np.flatnonzero(keep)
    if not len(rows):
        return {}, none
    offs = packets["payload_off"].to_numpy(dtype=np.int64, na_value=-1)
    c = conn[rows].astype(np.int64)
    carrying = np.flatnonzero(np.bincount(c))
    whole = np.frombuffer(buf, dtype=np.uint8)
    # Cheap first: a connection none of whose segments starts with a plausible byte is out.
    maybe = np.flatnonzero(np.bincount(c[_could_sniff(_byte_at(whole, offs[rows]))]))
    if not len(maybe):
        return {}, carrying
    sub = np.isin(c, maybe)
    rows, c = rows[sub], c[sub]
    d = s2c[rows]
    # Then exactly: the first byte of each direction's lowest-sequence segment.
    seq = packets["seq"].to_numpy(dtype=np.float64, na_value=np.inf)[rows]
    order = np.lexsort((packets["frame"].to_numpy(dtype=np.float64, na_value=np.inf)[rows], seq, d, c))
    cs, ds = c[order], d[order]
    heads = np.flatnonzero(np.r_[True, (cs[1:] != cs[:-1]) | (ds[1:] != ds[:-1])])
    candidates = np.unique(cs[heads][_could_sniff(_byte_at(whole, offs[rows[order[heads]]]))])
    if not len(candidates):
        return {}, carrying
    data = packets.iloc[rows[np.isin(c, candidates)]][need]
    # The first three distinct segments: enough even when a sender dribbles out a byte at a time.
    data = data.sort_values(["conn", "dir", "seq", "frame"]).drop_duplicates(["conn", "dir", "seq"])
    data = data.groupby(["conn", "dir"], sort=False, observed=True).head(3)
    out: dict[tuple[int, str], bytes] = {}
    for cn, dr, off, cap in zip(data["conn"].to_numpy(), data["dir"].to_numpy(),
                                data["payload_off"].to_numpy(), data["payload_cap"].to_numpy()):
        key = (int(cn), str(dr))
        have = out.get(key, b"")
        if len(have) < 64:
            out[key] = have + bytes(buf[int(off):int(off) + min(int(cap), 64)])
    return out, carrying


def _byte_at(whole: np.ndarray, offs: np.ndarray) -> np.ndarray:
    """The bytes at ``offs`` (0 where an offset falls outside the buffer)."""
    ok = (offs >= 0) & (offs < len(whole))
    out = np.zeros(len(offs), dtype=np.uint8)
    out[ok] = whole[offs[ok]]
    return out


def _could_sniff(byte0: np.ndarray) -> np.ndarray:
    """First bytes ``sniff`` may accept: TLS content types 20-23, an SSLv2 length (high bit), A-Z."""
    return ((byte0 >= 20) & (byte0 <= 23)) | (byte0 >= 0x80) | ((byte0 >= ord("A")) & (byte0 <= ord("Z")))


def _mark_unknown(timeline, carrying: np.ndarray, kinds: dict) -> None:
    """``app`` = "unknown" for connections that carried bytes none of our decoders speak.

    One vectorised assignment: a per-connection ``.at`` costs ~20 us each.
    """
    conns = timeline.connections
    if conns is None or conns.empty or not len(carrying) or "conn" not in conns.columns:
        return
    opaque = np.setdiff1d(carrying, np.fromiter(kinds, dtype=np.int64, count=len(kinds)))
    hit = conns["conn"].isin(opaque).to_numpy(dtype=bool, na_value=False)
    if hit.any():
        conns = conns.copy()
        app = conns["app"].astype("object").to_numpy(copy=True) if "app" in conns.columns \
            else np.full(len(conns), None, dtype=object)
        app[hit] = "unknown"
        conns["app"] = pd.Series(app, index=conns.index, dtype="object")
        timeline.connections = conns


# -- keys ------------------------------------------------------------------------

def load_keys(timeline, keylog=None, rsa_key=None):
    """(KeyLog or None, RSA key or None): the key log file merged with pcapng secrets.

    Stored on ``timeline.secrets`` (never shown).  A key log that cannot be
    read raises InputError from the crypto module; a damaged line is a warning.
    """
    log = None
    cap = timeline.capture
    blocks = [(t, d) for t, d in (getattr(cap, "secrets", None) or [])]
    if not blocks and keylog is None and rsa_key is None:
        # No key material: skip importing the crypto module (cryptography, ~30 ms).
        timeline.secrets = None
        return None, None
    from traceviz.decode.tls.crypto import KeyLog, load_rsa_key
    if blocks:
        log = KeyLog.from_dsb(blocks)
    if keylog is not None:
        log = KeyLog.from_file(keylog) if log is None else log.merge(KeyLog.from_file(keylog))
    key = load_rsa_key(rsa_key) if rsa_key is not None else None
    if log is not None:
        for w in getattr(log, "warnings", [])[:20]:
            timeline.warnings.append(w)
    timeline.secrets = {"keylog": log, "rsa_key": key} if (log is not None or key is not None) else None
    return log, key


# -- the run -----------------------------------------------------------------------

def run(timeline, keylog=None, rsa_key=None) -> None:
    """Decode TLS and HTTP/1.x on the TCP connections that carry them; fill the tables."""
    log, key = load_keys(timeline, keylog, rsa_key)
    cap, packets = timeline.capture, timeline.packets
    timeline.tls = pd.DataFrame(columns=TLS_FIELDS)
    if cap is None or packets is None or packets.empty:
        return
    first, carrying = _first_bytes(packets, cap.buf)
    kinds, unknown = {}, {}
    for conn in sorted({c for c, _ in first}):
        kind = sniff(first.get((conn, "c2s"), b""), first.get((conn, "s2c"), b""))
        if kind:
            kinds[conn] = kind
    _mark_unknown(timeline, carrying, kinds)    # carried bytes we do not decode
    if not kinds:
        _store(timeline, [], [], [], unknown)
        return
    wanted = segments_by_conn(packets[packets["transport"] == "tcp"], kinds)
    tls_rows, events, requests = [], [], []
    endpoints = _endpoints(timeline.connections)
    app_col: dict[int, str] = dict(unknown)
    for conn, segments in sorted(wanted.items()):
        streams = reassemble_segments(segments, cap.buf)
        if kinds[conn] == "tls":
            session, app = _run_tls(conn, streams, log, key, endpoints.get(conn, {}).get("server"))
            if session.client_hello is not None or session.server_hello is not None:
                tls_rows.append(_tls_row(session, endpoints.get(conn, {}), log))
            events += _tls_events(conn, session)
            for err in session.errors[:5]:
                timeline.warnings.append(describe(timeline.source.path, f"TLS on connection {conn}: {err}"))
            app_col[conn] = _app_label(session, app)
        else:
            app = _AppFeed(conn, plaintext=kinds[conn], server=endpoints.get(conn, {}).get("server"))
            _feed(app.feed_plain, app.gap, streams)
            app.close(None)
            app_col[conn] = getattr(app.decoder, "app", None) or kinds[conn]   # h2c after an Upgrade
        events += app.events
        requests += app.requests
    _store(timeline, tls_rows, events, requests, app_col)


def _run_tls(conn: int, streams: dict[str, ByteStream], log, key, server: str | None = None):
    """One TLS connection: the session machine, and its decrypted bytes to the app decoder."""
    from traceviz.decode.tls.session import TLSSession

    session = TLSSession(conn)
    if log is not None or key is not None:
        session.use_keys(log, key)
    app = _AppFeed(conn, session=session, server=server)
    session.on_application_data = app.feed_decrypted

    def gap(d: str, offset: int, length: int) -> None:
        session.gap(d, offset, length)
        # The lost TCP bytes held records whose plaintext length is unknown: the
        # application decoder must not frame across the hole.
        app.gap(d, offset, None)

    _feed(session.feed, gap, streams)
    for d, s in streams.items():
        if s.rst_frame is not None:
            session.reset(d, s.rst_frame, s.rst_ts)
    session.close()
    app.close(session)
    if app.requests and session.completed():
        # The first request waited for the handshake: that is its `tls` phase.
        app.requests[0]["tls"] = session.handshake_end().ts - session.client_hello_event.ts
    return session, app


def _tls_row(session, endpoints: dict, log) -> dict:
    row = session.row()
    row.update({"conn": session.conn, **endpoints})
    ch = session.client_hello
    row["keys_present"] = bool(log is not None and ch is not None and log.has(ch.random)) \
        or bool(session.decrypted_records)
    if session.decryptor is not None and not session.decryptor.available:
        row["decrypt_note"] = session.decryptor.reason
    return row


def _feed(feed, gap, streams: dict[str, ByteStream]) -> None:
    """Both directions, in the order their bytes became readable (frame order)."""
    order = []
    for d, s in streams.items():
        for p in s.pieces:
            order.append((p.ready_frame, 0 if d == "c2s" else 1, p.offset, d, p))
    order.sort(key=lambda t: t[:3])
    expected = {"c2s": 0, "s2c": 0}
    for _, _, _, d, p in order:
        if p.offset > expected[d]:
            gap(d, expected[d], p.offset - expected[d])
        feed(d, p.data, p.ready_frame, p.ready_ts)
        expected[d] = p.end


class _AppFeed:
    """Plaintext (captured or decrypted) to the application decoder the connection speaks."""

    def __init__(self, conn: int, plaintext: str | None = None, session=None, server: str | None = None):
        self.conn = conn
        self.server = server            # "ip:port" of the server: completes URLs whose request named no host
        self.session = session          # the TLS session whose decrypted data this is (for its ALPN)
        self.kind = plaintext           # http/1.1 or h2c for a cleartext connection
        self.decoder = None
        self.protocol: str | None = None
        self.events: list[dict] = []
        self.requests: list[dict] = []
        self._first_c2s = b""
        self._held: list[tuple] = []
        self._broken = False

    def feed_plain(self, d: str, data: bytes, frame: int, ts: float) -> None:
        self._to_decoder(d, data, frame, ts, alpn="h2" if self.kind == "h2c" else None)

    def feed_decrypted(self, d: str, data: bytes, frame: int, ts: float) -> None:
        self._to_decoder(d, data, frame, ts, self.session.alpn if self.session is not None else None)

    def gap(self, d: str, offset: int, length: int | None) -> None:
        if self.decoder is not None and hasattr(self.decoder, "gap"):
            self.decoder.gap(d, length)

    def _to_decoder(self, d, data, frame, ts, alpn):
        if self._broken:
            return
        if self.decoder is None:
            # Decide on the client's first bytes; hold the server's until then.
            if d == "c2s" and not self._first_c2s:
                self._first_c2s = data[:64]
            if not self._first_c2s:
                self._held.append((d, data, frame, ts))
                return
            self.protocol = _app_for(alpn, self._first_c2s)
            factory = decoder_factory(self.protocol)
            scheme = "https" if self.session is not None else "http"
            self.decoder = factory(self.conn, alpn, scheme) if factory else None
            if self.decoder is None:
                self._broken = True
                return
            self.decoder.default_host = self._default_host(scheme)
            held, self._held = self._held, []
            for h in held:
                self._safe_feed(*h)
        self._safe_feed(d, data, frame, ts)

    def _default_host(self, scheme: str) -> str | None:
        """The TLS SNI, else the server's address (its port dropped when it is the scheme's own)."""
        hello = getattr(self.session, "client_hello", None)
        sni = getattr(hello, "sni", None)
        if sni:
            return sni
        if not self.server:
            return None
        host, _, port = self.server.rpartition(":")
        return host if port == {"http": "80", "https": "443"}.get(scheme) else self.server

    def _safe_feed(self, d, data, frame, ts):
        try:
            self.decoder.feed(d, data, frame, ts)
        except Exception:        # noqa: BLE001 - a broken application stream leaves TLS/TCP analysis intact
            import os
            if os.environ.get("TRACEVIZ_DEBUG"):
                raise
            self._broken = True

    def close(self, session) -> None:
        if self.decoder is None:
            return
        try:
            self.decoder.close()
        except Exception:        # noqa: BLE001
            import os
            if os.environ.get("TRACEVIZ_DEBUG"):
                raise
        for ev in getattr(self.decoder, "events", []):
            self.events.append({"conn": self.conn, **ev})
        for rq in getattr(self.decoder, "requests", []):
            self.requests.append({"conn": self.conn, "source": "pcap", **rq})


def _app_label(session, app: _AppFeed) -> str:
    alpn = session.alpn
    if alpn == "h2":
        return "h2"
    if alpn and alpn.startswith("http/1"):
        return "http/1.1"
    if app.protocol:
        return app.protocol
    return "tls"


def _endpoints(conns: pd.DataFrame) -> dict[int, dict]:
    if conns is None or conns.empty or "conn" not in conns:
        return {}
    cols = [c for c in ("client", "server") if c in conns.columns]
    values = [conns[c].tolist() for c in cols]
    return {int(k): dict(zip(cols, vals)) for k, *vals in zip(conns["conn"].tolist(), *values)}


def _tls_events(conn: int, session) -> list[dict]:
    out = []
    for e in session.events:
        out.append({"ts": e.ts, "frame": e.frame, "conn": conn, "stream": pd.NA, "layer": "tls",
                    "kind": e.kind, "dir": e.dir, "size": e.size, "detail": e.detail or None,
                    "encrypted": e.encrypted})
    return out


def _store(timeline, tls_rows, events, requests, app_col) -> None:
    if tls_rows:
        df = pd.DataFrame(tls_rows)
        extras = [c for c in df.columns if c not in TLS_FIELDS]
        timeline.tls = df[TLS_FIELDS + extras].sort_values("conn").reset_index(drop=True)
    conns = timeline.connections
    if conns is not None and not conns.empty and app_col:
        conns = conns.copy()
        by_conn = {r["conn"]: r for r in tls_rows}
        for col in ("app", "sni", "alpn", "tls_version"):
            if col not in conns.columns:
                conns[col] = pd.Series([pd.NA] * len(conns), dtype="object")
            else:
                conns[col] = conns[col].astype("object")
        idx = {int(c): i for i, c in zip(conns.index, conns["conn"])}
        for conn, app in app_col.items():
            i = idx.get(conn)
            if i is None:
                continue
            conns.at[i, "app"] = app
            r = by_conn.get(conn)
            if r is not None:
                conns.at[i, "sni"] = r.get("sni")
                conns.at[i, "alpn"] = r.get("alpn")
                conns.at[i, "tls_version"] = r.get("version")
        timeline.connections = conns
    if events:
        new = conform("events", pd.DataFrame(events))
        old = timeline.events
        merged = pd.concat([old, new], ignore_index=True) if old is not None and len(old) else new
        merged = merged.sort_values(["ts", "frame"], kind="stable", na_position="last").reset_index(drop=True)
        timeline.events = conform("events", merged)
    if requests:
        rq = pd.DataFrame(requests)
        if "start" in rq.columns:
            rq = rq.sort_values("start", kind="stable")
        old = timeline.requests
        base = int(old["request"].max()) + 1 if old is not None and len(old) else 0
        rq["request"] = np.arange(base, base + len(rq))
        rq = conform("requests", rq)
        timeline.requests = conform("requests", pd.concat([old, rq], ignore_index=True)) \
            if old is not None and len(old) else rq


# -- secrets report for `traceviz info` ------------------------------------------

def secrets_report(timeline) -> dict:
    """How many TLS sessions the available secrets unlock, in plain words.

    Counts sessions, never shows key material."""
    tls = getattr(timeline, "tls", None)
    sessions = int(len(tls)) if tls is not None else 0
    secrets = getattr(timeline, "secrets", None) or {}
    log = secrets.get("keylog") if isinstance(secrets, dict) else None
    has_rsa = bool(isinstance(secrets, dict) and secrets.get("rsa_key") is not None)
    dsb = len([1 for t, _ in (getattr(timeline.capture, "secrets", None) or []) if t == DSB_TLS_KEYLOG])
    decrypted = int(tls["decrypted"].fillna(False).astype(bool).sum()) if sessions and "decrypted" in tls else 0
    present = decrypted
    if sessions and "keys_present" in tls.columns:
        present = max(int(tls["keys_present"].fillna(False).astype(bool).sum()), decrypted)
    entries = len(log) if log is not None else 0
    if log is None and not has_rsa:
        text = "no TLS secrets" + (f" ({sessions} TLS session{'s' if sessions != 1 else ''})" if sessions else "")
    else:
        text = f"keys present for {present} of {sessions} session{'s' if sessions != 1 else ''}"
    return {"tls_sessions": sessions, "keylog_entries": entries, "dsb_blocks": dsb, "rsa_key": has_rsa,
            "sessions_with_keys": present, "sessions_decrypted": decrypted, "text": text}
