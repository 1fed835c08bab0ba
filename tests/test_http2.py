"""The HTTP/2 observer from bytes: real conversations produced by the h2
library (both endpoints, so the wire bytes are what a real stack sends),
hand-built frames (hyperframe + hpack) for CONTINUATION, padding and the
dynamic table, hostile input, gaps, and h2c by HTTP/1.1 Upgrade."""

from __future__ import annotations

import base64

import pytest
from hpack import Encoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hyperframe.frame import (ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame, PingFrame, SettingsFrame,
                              WindowUpdateFrame)

from traceviz.assemble.http import app_label, connection_rows, h2_event_row, h2_request_rows
from traceviz.decode.http import http2
from traceviz.decode.http.upgrade import UpgradeConnection
from traceviz.decode.streams import StreamResult
from traceviz.decode.http.http2 import (PREFACE, DataReceived, GoAway, HeadersReceived, HTTP2Connection, ParseError,
                                   Ping, Preface, Priority, PushPromise, RstStream, Settings, Upgraded,
                                   WindowUpdate, exchanges)


try:      # h2 plays both endpoints; it is a test dependency only (pyproject's `test` extra)
    import h2.config
    import h2.connection
    import h2.settings
except ImportError:       # pragma: no cover
    h2 = None
needs_h2 = pytest.mark.skipif(h2 is None, reason="the h2 library is not installed (pip install h2)")


# --- a real conversation, both ends played by h2 -----------------------------------------

class Decoded:
    """A connection's HTTP machine fed as the payload tier feeds it, and the rows the assembler makes of it."""

    def __init__(self, machine, scheme="http", kind="http/1.1"):
        self.machine, self.scheme, self.kind = machine, scheme, kind

    def feed(self, d, data, frame, ts):
        self.machine.receive(d, data, frame, ts)

    def gap(self, d, nbytes):
        self.machine.receive_gap(d, nbytes)

    def close(self):
        for d in ("c2s", "s2c"):
            self.machine.end_of_stream(d)
        self.events, self.requests = connection_rows(self.machine, self.scheme, None)

    @property
    def app(self):
        return app_label(StreamResult(0, self.kind, http=self.machine, scheme=self.scheme))


class Wire:
    """An h2 client and server talking; every byte each sends is recorded with a frame number."""

    def __init__(self, client_settings=None):
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                           header_encoding=None))
        if client_settings:
            self.client.local_settings = h2.settings.Settings(client=True, initial_values=client_settings)
        self.log: list[tuple[str, bytes, int, float]] = []
        self.client.initiate_connection()
        self.server.initiate_connection()
        self.flush()

    def flush(self):
        """Deliver pending bytes both ways (each end's bytes become one 'TCP segment')."""
        for _ in range(5):
            moved = False
            for d, src, dst in (("c2s", self.client, self.server), ("s2c", self.server, self.client)):
                data = src.data_to_send()
                if data:
                    moved = True
                    frame = len(self.log) + 1
                    self.log.append((d, data, frame, 100.0 + frame / 1000))
                    dst.receive_data(data)
            if not moved:
                return

    def observe(self, chunk: int | None = None) -> HTTP2Connection:
        """Feed everything recorded into an observer, optionally cut into ``chunk``-byte pieces."""
        obs = HTTP2Connection()
        for d, data, frame, ts in self.log:
            step = chunk or len(data)
            for i in range(0, len(data), step):
                obs.receive(d, data[i:i + step], frame, ts)
        obs.end_of_stream("c2s")
        obs.end_of_stream("s2c")
        return obs


def request(w: Wire, sid: int, path: str, extra=(), end_stream=True):
    w.client.send_headers(sid, [(":method", "GET"), (":scheme", "https"), (":authority", "example.test"),
                                (":path", path), *extra], end_stream=end_stream)
    w.flush()


def respond(w: Wire, sid: int, body: bytes, status="200", pad=None):
    w.server.send_headers(sid, [(":status", status), ("content-type", "text/plain")])
    send_body(w.server, sid, body, pad)
    w.flush()


def send_body(conn, sid, body, pad=None):
    """h2 does not split DATA itself: one frame per max_outbound_frame_size."""
    step = conn.max_outbound_frame_size - (pad + 1 if pad is not None else 0)
    chunks = [body[i:i + step] for i in range(0, len(body), step)] or [b""]
    for i, chunk in enumerate(chunks):
        conn.send_data(sid, chunk, end_stream=i == len(chunks) - 1, pad_length=pad)


def of(events, cls):
    return [e for e in events if type(e) is cls]


@needs_h2
def test_every_event_kind_from_a_real_conversation():
    w = Wire()
    request(w, 1, "/a")
    respond(w, 1, b"x" * 100)
    request(w, 3, "/b")
    w.client.prioritize(3, weight=200, depends_on=1)
    w.client.ping(b"12345678")
    w.flush()
    w.server.push_stream(3, 2, [(":method", "GET"), (":scheme", "https"), (":authority", "example.test"),
                                (":path", "/pushed.css")])
    w.flush()
    respond(w, 2, b"p" * 7)
    respond(w, 3, b"y" * 20000)             # > one default frame: two DATA frames and a WINDOW_UPDATE
    w.client.increment_flow_control_window(5000)
    request(w, 5, "/c", end_stream=False)
    w.client.reset_stream(5, error_code=8)
    w.flush()
    w.server.close_connection(error_code=0, last_stream_id=5)
    w.flush()

    obs = w.observe()
    ev = obs.events
    assert obs.errors == 0, of(ev, ParseError)
    assert len(of(ev, Preface)) == 1 and of(ev, Preface)[0].direction == "c2s"
    settings_ = of(ev, Settings)
    assert {(s.direction, s.ack) for s in settings_} == {("c2s", False), ("s2c", False), ("c2s", True),
                                                         ("s2c", True)}
    client_settings = dict(next(s.settings for s in settings_ if s.direction == "c2s" and not s.ack))
    assert client_settings["ENABLE_PUSH"] == 1 and client_settings["MAX_CONCURRENT_STREAMS"] == 100
    req = [e for e in of(ev, HeadersReceived) if e.direction == "c2s"]
    assert [(e.stream, e.header(":path"), e.end_stream) for e in req] == [(1, "/a", True), (3, "/b", True),
                                                                          (5, "/c", False)]
    resp = [e for e in of(ev, HeadersReceived) if e.direction == "s2c"]
    assert [(e.stream, e.header(":status")) for e in resp] == [(1, "200"), (2, "200"), (3, "200")]
    data = {}
    for e in of(ev, DataReceived):
        data.setdefault(e.stream, []).append(e.length)
    assert data == {1: [100], 2: [7], 3: [16384, 20000 - 16384]}
    assert [e.end_stream for e in of(ev, DataReceived) if e.stream == 3] == [False, True]
    (prio,) = of(ev, Priority)
    assert (prio.stream, prio.depends_on, prio.weight) == (3, 1, 200)
    assert [(p.direction, p.ack, p.opaque) for p in of(ev, Ping)] == [("c2s", False, b"12345678"),
                                                                      ("s2c", True, b"12345678")]
    (push,) = of(ev, PushPromise)
    assert (push.stream, push.promised_stream, push.header(":path")) == (3, 2, "/pushed.css")
    (rst,) = of(ev, RstStream)
    assert (rst.stream, rst.error, rst.direction) == (5, "CANCEL", "c2s")
    (goaway,) = of(ev, GoAway)
    assert (goaway.last_stream, goaway.error, goaway.direction) == (5, "NO_ERROR", "s2c")
    assert any(u.stream == 0 and u.increment == 5000 and u.direction == "c2s" for u in of(ev, WindowUpdate))
    # Frame numbers and times are those of the segment each frame arrived in.
    by_frame = {frame: (d, ts) for d, _, frame, ts in w.log}
    for e in ev:
        assert by_frame[e.frame] == (e.direction, e.ts)


@needs_h2
def test_exchanges_one_row_per_stream():
    w = Wire()
    request(w, 1, "/a")
    respond(w, 1, b"x" * 100)
    request(w, 3, "/b")
    w.server.push_stream(3, 2, [(":method", "GET"), (":scheme", "https"), (":authority", "example.test"),
                                (":path", "/pushed.css")])
    w.flush()
    respond(w, 2, b"p" * 7, status="203")
    respond(w, 3, b"y" * 300, status="404")
    request(w, 5, "/c", end_stream=False)
    w.client.reset_stream(5, error_code=8)
    w.flush()
    obs = w.observe(chunk=7)      # framing must not depend on segment boundaries
    rows = {ex.stream: ex for ex in exchanges(obs.events)}
    assert set(rows) == {1, 2, 3, 5}
    a, pushed, b, c = rows[1], rows[2], rows[3], rows[5]
    assert (a.method, a.url, a.host, a.status, a.resp_bytes, a.req_bytes) == \
        ("GET", "https://example.test/a", "example.test", 200, 100, 0)
    assert (b.url, b.status, b.resp_bytes) == ("https://example.test/b", 404, 300)
    assert pushed.pushed and (pushed.url, pushed.status, pushed.resp_bytes) == ("https://example.test/pushed.css",
                                                                               203, 7)
    assert c.status is None and c.reset == "CANCEL" and c.reset_by == "client" and not c.complete
    assert a.complete and b.complete
    # Times come from the frames' segments: HEADERS out, HEADERS back.
    times = {frame: ts for _, _, frame, ts in w.log}
    assert a.start == times[a.request_frame] and a.ttfb == pytest.approx(times[a.response_frame] - a.start)
    row = next(r for r in h2_request_rows(obs.events, "https", None) if r["stream"] == 1)
    assert row["protocol"] == "h2" and row["stream"] == 1 and row["end"] >= row["start"] + row["ttfb"]


@needs_h2
def test_byte_at_a_time_equals_whole_segments():
    w = Wire()
    for sid in (1, 3, 5):
        request(w, sid, f"/r{sid}", extra=[("x-trace", "abc" * sid)])
        respond(w, sid, b"z" * (sid * 1000))
    whole, bytewise = w.observe(), w.observe(chunk=1)
    strip = lambda evs: [(type(e).__name__, e.stream, getattr(e, "headers", None), getattr(e, "length", None))  # noqa: E731
                         for e in evs]
    assert strip(whole.events) == strip(bytewise.events)


# --- hand-built frames ---------------------------------------------------------------------

def frames(*fs) -> bytes:
    return b"".join(f.serialize() for f in fs)


def headers_frame(sid, block, flags=("END_HEADERS",), **kw):
    f = HeadersFrame(sid, data=block, **kw)
    for flag in flags:
        f.flags.add(flag)
    return f


def observer_with_preface():
    obs = HTTP2Connection()
    obs.receive("c2s", PREFACE + SettingsFrame(0).serialize(), 1, 1.0)
    obs.receive("s2c", SettingsFrame(0).serialize(), 2, 1.1)
    return obs


def test_continuation_frames_join_one_header_block():
    enc = Encoder()
    block = enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "h.test"), (":path", "/long"),
                        ("x-big", "v" * 300)])
    parts = [block[:10], block[10:50], block[50:]]
    obs = observer_with_preface()
    head = headers_frame(1, parts[0], flags=("END_STREAM",))
    c1, c2 = ContinuationFrame(1, data=parts[1]), ContinuationFrame(1, data=parts[2])
    c2.flags.add("END_HEADERS")
    obs.receive("c2s", frames(head, c1), 3, 2.0)
    assert not of(obs.events, HeadersReceived), "no HEADERS event before END_HEADERS"
    obs.receive("c2s", frames(c2), 4, 2.5)
    (h,) = of(obs.events, HeadersReceived)
    assert h.header(":path") == "/long" and h.header("x-big") == "v" * 300
    assert h.end_stream and h.size == len(block)
    assert (h.first_frame, h.first_ts, h.frame, h.ts) == (3, 2.0, 4, 2.5)
    (ex,) = exchanges(obs.events)
    assert ex.start == 2.0 and ex.url == "http://h.test/long"


def test_interrupted_continuation_is_an_error_and_stops_header_decoding():
    enc = Encoder()
    block = enc.encode([(":method", "GET"), (":path", "/x"), (":scheme", "http"), (":authority", "a")])
    obs = observer_with_preface()
    obs.receive("c2s", frames(headers_frame(1, block[:5], flags=()), PingFrame(0, opaque_data=b"\0" * 8)), 3, 2.0)
    assert any("CONTINUATION" in e.message for e in of(obs.events, ParseError))
    obs.receive("c2s", frames(headers_frame(3, enc.encode([(":method", "GET"), (":path", "/y")]))), 4, 3.0)
    later = of(obs.events, HeadersReceived)
    assert [(h.stream, h.headers) for h in later] == [(3, None)]     # HPACK state is gone: not decoded
    assert of(obs.events, Ping), "framing goes on"


def test_padding_is_not_payload():
    enc = Encoder()
    obs = observer_with_preface()
    req = headers_frame(1, enc.encode([(":method", "GET"), (":path", "/p"), (":scheme", "http"),
                                       (":authority", "a")]), flags=("END_HEADERS", "END_STREAM", "PADDED"),
                        pad_length=17)
    obs.receive("c2s", frames(req), 3, 2.0)
    senc = Encoder()
    data = DataFrame(1, data=b"q" * 50, pad_length=30)
    data.flags.add("PADDED")
    data.flags.add("END_STREAM")
    obs.receive("s2c", frames(headers_frame(1, senc.encode([(":status", "200")])), data), 4, 2.1)
    (d,) = of(obs.events, DataReceived)
    assert (d.length, d.flow_length, d.end_stream) == (50, 50 + 30 + 1, True)
    assert of(obs.events, HeadersReceived)[0].header(":path") == "/p"
    (ex,) = exchanges(obs.events)
    assert ex.resp_bytes == 50 and ex.status == 200


def test_hpack_dynamic_table_carries_across_requests():
    enc = Encoder()
    hdrs = [(":method", "GET"), (":scheme", "https"), (":authority", "cdn.test"), (":path", "/1"),
            ("cookie", "session=" + "s" * 60), ("user-agent", "observer-test/1.0")]
    first = enc.encode(hdrs)
    hdrs2 = hdrs[:3] + [(":path", "/2")] + hdrs[4:]
    second = enc.encode(hdrs2)
    assert len(second) < len(first) // 3, "the second block must lean on the dynamic table"
    obs = observer_with_preface()
    obs.receive("c2s", frames(headers_frame(1, first, flags=("END_HEADERS", "END_STREAM"))), 3, 2.0)
    obs.receive("c2s", frames(headers_frame(3, second, flags=("END_HEADERS", "END_STREAM"))), 4, 2.1)
    a, b = of(obs.events, HeadersReceived)
    assert dict(b.headers)["cookie"] == "session=" + "s" * 60 and b.header(":path") == "/2"
    assert dict(a.headers)["user-agent"] == dict(b.headers)["user-agent"]
    # The server's direction has its own table: the client's entries mean nothing there.
    obs.receive("s2c", frames(headers_frame(1, second, flags=("END_HEADERS",))), 5, 2.2)
    assert [e.direction for e in of(obs.events, ParseError) if "HPACK could not" in e.message] == ["s2c"]
    assert of(obs.events, HeadersReceived)[-1].headers is None


@needs_h2
def test_gap_stops_one_direction_only():
    w = Wire()
    request(w, 1, "/a")
    respond(w, 1, b"x" * 100)
    obs = HTTP2Connection()
    log = w.log
    c2s = [x for x in log if x[0] == "c2s"]
    s2c = [x for x in log if x[0] == "s2c"]
    obs.receive(*c2s[0])
    obs.receive_gap("c2s", 40)
    for step in c2s[1:]:
        obs.receive(*step)
    for step in s2c:
        obs.receive(*step)
    errors = of(obs.events, ParseError)
    assert len(errors) == 1 and errors[0].direction == "c2s" and "40 bytes missing" in errors[0].message
    assert not [e for e in obs.events if e.direction == "c2s" and not isinstance(e, (Preface, Settings,
                                                                                     ParseError))]
    assert [e.header(":status") for e in of(obs.events, HeadersReceived)] == ["200"]
    assert obs.unparsed_bytes["c2s"] > 0


def test_gap_inside_data_payload_keeps_framing():
    obs = observer_with_preface()
    senc = Encoder()
    obs.receive("s2c", frames(headers_frame(1, senc.encode([(":status", "200")]))), 3, 2.0)
    body = DataFrame(1, data=b"d" * 1000).serialize()
    obs.receive("s2c", body[:300], 4, 2.1)
    obs.receive_gap("s2c", 500)
    obs.receive("s2c", body[800:], 6, 2.3)
    end = DataFrame(1, data=b"e" * 10)
    end.flags.add("END_STREAM")
    obs.receive("s2c", end.serialize(), 7, 2.4)
    d1, d2 = of(obs.events, DataReceived)
    assert (d1.length, d1.missing, d2.length, d2.end_stream) == (1000, 500, 10, True)
    assert (d1.first_frame, d1.frame) == (4, 6)


# --- hostile input ------------------------------------------------------------------------

def test_frame_longer_than_max_frame_size_stops_that_direction():
    obs = observer_with_preface()
    obs.receive("s2c", (20000).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01", 3, 2.0)
    (err,) = of(obs.events, ParseError)
    assert "exceeds" in err.message and err.direction == "s2c"
    obs.receive("s2c", b"\0" * 30000, 4, 2.1)        # not buffered
    assert obs.unparsed_bytes["s2c"] == 30000 + 9


def test_larger_frames_allowed_after_settings():
    obs = HTTP2Connection()
    obs.receive("c2s", PREFACE + SettingsFrame(0, settings={SettingsFrame.MAX_FRAME_SIZE: 65536}).serialize(),
                1, 1.0)
    obs.receive("s2c", DataFrame(1, data=b"x" * 40000).serialize(), 2, 1.1)
    assert not of(obs.events, ParseError)
    assert of(obs.events, DataReceived)[0].length == 40000


def test_undecodable_hpack_block_is_a_counted_error():
    obs = observer_with_preface()
    obs.receive("c2s", frames(headers_frame(1, b"\xff\xff\xff\xff\xff\xff\xff\x7f")), 3, 2.0)   # index overflow
    h = of(obs.events, HeadersReceived)
    assert h and h[0].headers is None
    assert obs.errors >= 1 and any("HPACK" in e.message for e in of(obs.events, ParseError))
    (ex,) = exchanges(obs.events)
    assert ex.method is None and ex.start == 2.0


def test_absurd_settings_are_errors_not_obeyed():
    obs = HTTP2Connection()
    bad = SettingsFrame(0, settings={SettingsFrame.MAX_FRAME_SIZE: 1 << 30, SettingsFrame.HEADER_TABLE_SIZE: 1 << 31,
                                     SettingsFrame.ENABLE_PUSH: 7, SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 31})
    obs.receive("c2s", PREFACE + bad.serialize(), 1, 1.0)
    assert len(of(obs.events, ParseError)) == 4
    obs.receive("s2c", (20000).to_bytes(3, "big") + b"\0\0\0\0\0\x01", 2, 1.1)
    assert any("exceeds" in e.message for e in of(obs.events, ParseError)), "max frame size stayed at 16384"


def test_no_preface_is_an_error():
    obs = HTTP2Connection()
    obs.receive("c2s", b"GET / HTTP/1.1\r\n\r\n", 1, 1.0)
    (err,) = of(obs.events, ParseError)
    assert "preface" in err.message


def test_malformed_frame_loses_only_that_frame():
    obs = observer_with_preface()
    bad_ping = (4).to_bytes(3, "big") + b"\x06\x00\x00\x00\x00\x00" + b"abcd"     # PING must be 8 bytes
    good = WindowUpdateFrame(0, window_increment=10).serialize()
    obs.receive("c2s", bad_ping + good, 3, 2.0)
    assert len(of(obs.events, ParseError)) == 1
    assert [w.increment for w in of(obs.events, WindowUpdate)] == [10]


def test_unknown_frame_types_are_skipped():
    obs = observer_with_preface()
    ext = (3).to_bytes(3, "big") + b"\xfa\x00\x00\x00\x00\x00" + b"abc"
    obs.receive("s2c", ext + GoAwayFrame(0, last_stream_id=0, error_code=11).serialize(), 3, 2.0)
    assert not of(obs.events, ParseError)
    assert of(obs.events, GoAway)[0].error == "ENHANCE_YOUR_CALM"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]), st.binary(max_size=300),
                          st.integers(0, 3)), max_size=25))
def test_hostile_bytes_never_raise_and_stay_bounded(steps):
    obs = HTTP2Connection()
    obs.receive("c2s", PREFACE, 1, 1.0)
    for n, (d, data, action) in enumerate(steps, 2):
        if action == 3:
            obs.receive_gap(d, len(data))
        else:
            obs.receive(d, data, n, float(n))
        for r in obs._readers.values():
            assert len(r.buf) - r.pos <= http2.FRAME_HEADER + r.max_frame + 300
    obs.end_of_stream("c2s")
    obs.end_of_stream("s2c")
    exchanges(obs.events)
    [h2_event_row(e) for e in obs.events]


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(1, 5))
def test_hostile_header_blocks_never_raise(block, sid):
    obs = observer_with_preface()
    obs.receive("c2s", frames(headers_frame(sid * 2 - 1, block)), 3, 2.0)
    obs.receive("s2c", frames(headers_frame(sid * 2 - 1, block)), 4, 2.1)
    for h in of(obs.events, HeadersReceived):
        assert h.headers is None or all(isinstance(k, str) and isinstance(v, str) for k, v in h.headers)
    exchanges(obs.events)


# --- h2c by Upgrade -----------------------------------------------------------------------

@needs_h2
def test_h2c_upgrade_stream_1_is_the_http1_request():
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    client_settings = SettingsFrame(0, settings={SettingsFrame.MAX_FRAME_SIZE: 32768}).serialize()[9:]
    token = base64.urlsafe_b64encode(client_settings).rstrip(b"=")
    server.initiate_upgrade_connection(token)
    server.send_headers(1, [(":status", "200"), ("content-type", "text/html")])
    assert server.max_outbound_frame_size == 32768, "the HTTP2-Settings header was applied"
    send_body(server, 1, b"h" * 40000)
    s2c_h2 = server.data_to_send()
    client_h2 = PREFACE + SettingsFrame(0).serialize()
    request = (b"GET /index HTTP/1.1\r\nHost: up.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               b"Upgrade: h2c\r\nHTTP2-Settings: " + token + b"\r\n\r\n")
    response = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    dec = Decoded(UpgradeConnection("http"))
    dec.feed("c2s", request + client_h2, 1, 1.0)        # the preface follows without waiting for the 101
    dec.feed("s2c", response + s2c_h2[:100], 2, 1.05)
    dec.feed("s2c", s2c_h2[100:], 3, 1.06)
    dec.close()
    assert dec.app == "h2c"
    (row,) = dec.requests
    assert (row["protocol"], row["stream"], row["method"], row["url"], row["status"], row["resp_bytes"]) == \
        ("h2", 1, "GET", "http://up.test/index", 200, 40000)
    assert row["start"] == 1.0 and row["ttfb"] == pytest.approx(0.05)
    kinds = [e["kind"] for e in dec.events]
    assert "request" in kinds and "response" in kinds and "preface" in kinds and "DATA" in kinds
    assert not [e for e in dec.events if e["kind"] == "parse-error"]
    (up,) = of(dec.machine.http2.events, Upgraded)
    assert up.header(":authority") == "up.test"


def test_refused_upgrade_stays_http1():
    dec = Decoded(UpgradeConnection("http"))
    dec.feed("c2s", b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", 1, 1.0)
    dec.feed("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 2, 1.1)
    dec.close()
    assert dec.app == "http/1.1" and dec.machine.http2 is None
    assert [(r["protocol"], r["status"]) for r in dec.requests] == [("http/1.1", 200)]


@needs_h2
def test_payload_rows_follow_the_model():
    from traceviz.model import REQUEST_COLUMNS, EVENT_COLUMNS
    w = Wire()
    request(w, 1, "/a")
    respond(w, 1, b"x" * 10)
    dec = Decoded(HTTP2Connection(), "https", "tls")
    for step in w.log:
        dec.feed(*step)
    dec.close()
    (row,) = dec.requests
    assert set(row) - set(REQUEST_COLUMNS) <= {"request_frame", "response_frame", "reset"}
    assert row["send"] == 0.0 and row["wait"] == pytest.approx(row["ttfb"]) and row["reused_connection"] is False
    assert all(set(e) <= set(EVENT_COLUMNS) and e["layer"] == "h2" for e in dec.events)
    assert {"preface", "SETTINGS", "HEADERS", "DATA"} <= {e["kind"] for e in dec.events}


def test_gap_of_unknown_size_stops_the_direction():
    obs = observer_with_preface()
    obs.receive_gap("s2c", None)
    obs.receive("s2c", frames(PingFrame(0, opaque_data=b"\0" * 8)), 3, 2.0)
    assert not of(obs.events, Ping)
    assert [e.direction for e in of(obs.events, ParseError)] == ["s2c"]


_UPGRADE_REQ = b"GET /u HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n"
_SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]), st.binary(max_size=200), st.booleans()), max_size=12),
       st.binary(max_size=40))
def test_hostile_bytes_after_an_upgrade_never_raise(steps, settings_header):
    dec = Decoded(UpgradeConnection("http"))
    hdr = b"HTTP2-Settings: " + base64.urlsafe_b64encode(settings_header) + b"\r\n"
    dec.feed("c2s", _UPGRADE_REQ[:-2] + hdr + b"\r\n" + PREFACE, 1, 1.0)
    dec.feed("s2c", _SWITCH, 2, 1.1)
    assert dec.app == "h2c"
    for n, (d, data, is_gap) in enumerate(steps, 3):
        if is_gap:
            dec.gap(d, len(data))
        else:
            dec.feed(d, data, n, float(n))
    dec.close()
    assert any(r["stream"] == 1 and r["method"] == "GET" for r in dec.requests)


def test_a_status_of_other_digits_is_no_status():
    """HPACK values are latin-1: ``"2\\xb20"`` passes ``str.isdigit`` but not ``int``; no status, no traceback."""
    enc = Encoder()
    obs = observer_with_preface()
    obs.receive("c2s", frames(headers_frame(1, enc.encode([(":method", "GET"), (":scheme", "http"),
                                                           (":authority", "h.test"), (":path", "/")]),
                                            flags=("END_HEADERS", "END_STREAM"))), 3, 2.0)
    obs.receive("s2c", frames(headers_frame(1, Encoder().encode([(b":status", b"2\xb20")]),
                                            flags=("END_HEADERS", "END_STREAM"))), 4, 2.5)
    (ex,) = exchanges(obs.events)
    assert (ex.url, ex.status, ex.end_frame, ex.complete) == ("http://h.test/", None, 4, True)
