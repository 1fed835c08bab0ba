"""The HTTP/1.x observer: framing cases from bytes, hostile input, and the
plaintext HTTP captures of the corpus against tshark's dissection."""

from __future__ import annotations

import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traceviz.decode.http.http1 import (MAX_HEAD_BYTES, HTTP1Connection, ParseError, Request,
                                   Response, ResponseEnd, exchanges)


def kinds(events):
    return [type(e).__name__ for e in events]


def feed(*steps):
    """steps: (direction, bytes) or (direction, bytes, frame, ts); frames count up by default."""
    conn = HTTP1Connection()
    for n, step in enumerate(steps, 1):
        direction, data = step[0], step[1]
        frame, ts = (step[2], step[3]) if len(step) > 2 else (n, float(n))
        if data is None:
            conn.end_of_stream(direction)
        else:
            conn.receive(direction, data, frame, ts)
    return conn


# --- framing -------------------------------------------------------------------

def test_content_length_bodies_split_across_segments():
    conn = feed(("c2s", b"POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n01234"),
                ("c2s", b"56789"),
                ("s2c", b"HTTP/1.1 201 Created\r\nContent-Len"),
                ("s2c", b"gth: 3\r\n\r\nok"),
                ("s2c", b"!"))
    assert kinds(conn.events) == ["Request", "RequestEnd", "Response", "ResponseEnd"]
    req, req_end, resp, resp_end = conn.events
    assert (req.method, req.target, req.frame, req.head_frame) == ("POST", "/up", 1, 1)
    assert (req_end.frame, req_end.body_bytes) == (2, 10)
    assert (resp.status, resp.reason, resp.frame, resp.head_frame) == (201, "Created", 3, 4)
    assert (resp_end.frame, resp_end.body_bytes, resp_end.complete) == (5, 3, True)
    ex, = exchanges(conn.events)
    assert (ex.method, ex.host, ex.url, ex.status) == ("POST", "a.test", "http://a.test/up", 201)
    assert (ex.start, ex.request_sent, ex.response_start, ex.ttfb, ex.end) == (1.0, 2.0, 3.0, 2.0, 5.0)
    assert ex.req_bytes == len(b"POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n") + 10
    assert ex.resp_bytes == len(b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nok!")
    assert ex.complete


def test_chunked_with_extensions_and_trailers():
    body = b"4;name=value\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n"
    conn = feed(("c2s", b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
                ("s2c", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + body[:7]),
                ("s2c", body[7:30]), ("s2c", body[30:]))
    end = conn.events[-1]
    assert isinstance(end, ResponseEnd)
    assert (end.body_bytes, end.frame) == (4 + 5 + 14, 4)


def test_long_trailer_line_in_one_segment():
    conn = feed(("c2s", b"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
                ("s2c", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Long: " + b"a" * 6000
                        + b"\r\nY: 1\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
    assert [(e.target, e.status) for e in exchanges(conn.events)] == [("/", 200), ("/2", 204)]


def test_chunked_byte_by_byte():
    msg = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    conn = HTTP1Connection()
    conn.receive("c2s", b"GET / HTTP/1.1\r\n\r\n", 1, 1.0)
    for i in range(len(msg)):
        conn.receive("s2c", msg[i:i + 1], 2 + i, 2.0 + i)
    assert kinds(conn.events) == ["Request", "RequestEnd", "Response", "ResponseEnd"]
    assert conn.events[-1].frame == 1 + len(msg) and conn.events[-1].body_bytes == 3


def test_read_until_close_and_http10():
    conn = feed(("c2s", b"GET /x HTTP/1.0\r\n\r\n"),
                ("s2c", b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nsome"),
                ("s2c", b" body"),
                ("s2c", None))
    assert kinds(conn.events) == ["Request", "RequestEnd", "Response", "ResponseEnd"]
    assert (conn.events[-1].body_bytes, conn.events[-1].frame, conn.events[-1].complete) == (9, 3, True)
    ex, = exchanges(conn.events)
    assert ex.url == "/x" and ex.host is None and ex.version == "HTTP/1.0"
    ex, = exchanges(conn.events, scheme="https", default_host="sni.test")
    assert ex.url == "https://sni.test/x" and ex.host is None


def test_head_204_304_have_no_body_and_pipelining_pairs_in_order():
    conn = feed(("c2s", b"HEAD /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
                        b"GET /c HTTP/1.1\r\nHost: h\r\n\r\nGET /d HTTP/1.1\r\nHost: h\r\n\r\n"),
                ("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"       # HEAD: no body
                        b"HTTP/1.1 204 No Content\r\n\r\n"
                        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"))
    exs = exchanges(conn.events)
    assert [(e.method, e.target, e.status, e.resp_body_bytes) for e in exs] == [
        ("HEAD", "/a", 200, 0), ("GET", "/b", 204, 0), ("GET", "/c", 304, 0), ("GET", "/d", 200, 2)]
    assert not [e for e in conn.events if isinstance(e, ParseError)]


def test_interim_responses_and_expect_continue():
    conn = feed(("c2s", b"PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
                ("s2c", b"HTTP/1.1 100 Continue\r\n\r\n"),
                ("c2s", b"data"),
                ("s2c", b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    assert [e.status for e in conn.events if isinstance(e, Response)] == [100, 103, 200]
    ex, = exchanges(conn.events)
    assert ex.status == 200 and ex.interim == [100, 103]
    assert ex.ttfb == 3.0 and ex.request_end_frame == 3
    assert ex.resp_bytes == len(b"HTTP/1.1 100 Continue\r\n\r\n") + len(
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


def test_101_upgrade_ends_http1():
    conn = feed(("c2s", b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
                ("s2c", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
                ("c2s", b"\x81\x85xxxxhello"))
    assert kinds(conn.events) == ["Request", "RequestEnd", "Response", "ResponseEnd"]
    assert conn.switched_to == "websocket"
    assert conn.unparsed_bytes == {"c2s": 11, "s2c": 7}


def test_refused_upgrade_keeps_parsing_what_the_client_sent_meanwhile():
    conn = feed(("c2s", b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n\r\n"),
                ("c2s", b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"),
                ("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
    assert [(e.target, e.status) for e in exchanges(conn.events)] == [("/", 200), ("/next", 404)]
    assert conn.switched_to is None


def test_connect_tunnel():
    conn = feed(("c2s", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
                ("s2c", b"HTTP/1.1 200 Connection established\r\n\r\n"),
                ("c2s", b"\x16\x03\x01\x02\x00" + bytes(50)))
    ex, = exchanges(conn.events)
    assert (ex.method, ex.url, ex.status) == ("CONNECT", "example.com:443", 200)
    assert conn.switched_to == "tunnel" and conn.unparsed_bytes["c2s"] == 55
    assert not [e for e in conn.events if isinstance(e, ParseError)]


def test_absolute_form_target_and_bare_lf():
    conn = feed(("c2s", b"GET http://proxy.test/p?q=1 HTTP/1.1\nUser-Agent: x\n\n"),
                ("s2c", b"HTTP/1.1 200 OK\nContent-Length: 1\n\nz"))
    ex, = exchanges(conn.events)
    assert (ex.host, ex.url, ex.status, ex.resp_body_bytes) == ("proxy.test", "http://proxy.test/p?q=1", 200, 1)


def test_response_without_request_and_request_without_response():
    conn = feed(("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
                ("c2s", b"GET /late HTTP/1.1\r\nHost: h\r\n\r\n"))
    exs = exchanges(conn.events)
    assert [(e.method, e.status) for e in exs] == [(None, 200), ("GET", None)]
    assert exs[1].ttfb is None and exs[1].end is None


def test_truncated_body_at_end_of_stream_is_incomplete():
    conn = feed(("c2s", b"GET / HTTP/1.1\r\n\r\n"),
                ("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"),
                ("s2c", None))
    end = conn.events[-1]
    assert isinstance(end, ResponseEnd) and not end.complete and end.body_bytes == 3
    assert not exchanges(conn.events)[0].complete


def test_gap_inside_a_known_length_body_keeps_framing():
    conn = HTTP1Connection()
    conn.receive("c2s", b"GET / HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 1, 1.0)
    conn.receive("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 2, 2.0)
    conn.receive_gap("s2c", 4)
    conn.receive("s2c", b"def" + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 4, 4.0)
    assert [(e.target, e.status, e.resp_body_bytes) for e in exchanges(conn.events)] == [
        ("/", 200, 10), ("/2", 200, 0)]


def test_gap_in_a_head_stops_then_resyncs_on_a_new_message():
    conn = HTTP1Connection()
    conn.receive("c2s", b"GET /a HTTP/1.1\r\nHo", 1, 1.0)
    conn.receive_gap("c2s", 10)
    errors = [e for e in conn.events if isinstance(e, ParseError)]
    assert len(errors) == 1 and errors[0].direction == "c2s" and "10 bytes missing" in errors[0].message
    conn.receive("c2s", b"garbage that is not a request\r\n\r\n", 3, 3.0)
    conn.receive("c2s", b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n", 4, 4.0)
    assert [e.target for e in conn.events if isinstance(e, Request)] == ["/b"]


# --- hostile input ----------------------------------------------------------------

@pytest.mark.parametrize("data,message", [
    (b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", "NUL"),
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 10_000 + b"\r\n", "header lines"),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD_BYTES + 10), "longer than"),
    (b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "conflicting Content-Length"),
    (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", "malformed header"),
    (b"GARBAGE\r\n\r\n", "malformed request line"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/2 connection preface"),
])
def test_hostile_requests_give_a_parse_error(data, message):
    conn = HTTP1Connection()
    t0 = time.perf_counter()
    for i in range(0, len(data), 1460):           # as TCP segments would bring it
        conn.receive("c2s", data[i:i + 1460], 1 + i // 1460, 0.0)
    conn.end_of_stream("c2s")
    assert time.perf_counter() - t0 < 5          # no quadratic blow-up on a 64 KiB head
    errors = [e for e in conn.events if isinstance(e, ParseError)]
    assert len(errors) == 1 and message in errors[0].message
    assert not [e for e in conn.events if isinstance(e, Request)]
    # Buffered memory stays bounded by the head limit.
    assert len(conn._readers["c2s"].buf) <= MAX_HEAD_BYTES + 1460


def test_hostile_chunk_sizes():
    conn = feed(("c2s", b"GET / HTTP/1.1\r\n\r\n"),
                ("s2c", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))
    assert isinstance(conn.events[-1], ParseError) and "chunk size" in conn.events[-1].message
    conn = feed(("c2s", b"GET / HTTP/1.1\r\n\r\n"),
                ("s2c", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 10_000))
    assert isinstance(conn.events[-1], ParseError)
    # A huge declared chunk is counted, never allocated.
    conn = feed(("c2s", b"GET / HTTP/1.1\r\n\r\n"),
                ("s2c", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc"))
    assert kinds(conn.events) == ["Request", "RequestEnd", "Response"]


def test_huge_content_length_is_not_allocated():
    conn = feed(("c2s", b"GET / HTTP/1.1\r\n\r\n"),
                ("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\nabc"), ("s2c", None))
    assert conn.events[-1].body_bytes == 3 and not conn.events[-1].complete


# --- corpus against tshark -------------------------------------------------------------

HTTP_CAPTURES = [
    "pcap/http1/http-502__suricata-verify_http-evader-461.pcap",
    "pcap/http1/keepalive-retrans__arkime_wireshark-retrans.pcap",
    "pcap/http1/simple-get-403__arkime_http-simple-get.pcap",
    "pcap/link/vlan-http__zeek_http-vlan-0.pcap",
    "pcap/ipv6/http-over-ipv6__arkime_v6-http.pcap",
    "pcap/http2/h2c-upgrade__scapy_http2_h2c.pcap",
]


def tcp_segments(path):
    """(frame, ts, (src, sport), (dst, dport), seq, flags, payload) for every TCP segment."""
    import dpkt

    with open(path, "rb") as f:
        reader = dpkt.pcapng.Reader(f) if f.read(4) == b"\x0a\x0d\x0d\x0a" else None
        f.seek(0)
        reader = reader or dpkt.pcap.Reader(f)
        link = reader.datalink()
        for n, (ts, buf) in enumerate(reader, 1):
            try:
                if link == 1:
                    ip = dpkt.ethernet.Ethernet(buf).data
                elif link == 113:
                    ip = dpkt.sll.SLL(buf).data
                else:
                    ip = dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
            except (dpkt.UnpackError, IndexError):
                continue
            tcp = getattr(ip, "data", None)
            if not isinstance(tcp, dpkt.tcp.TCP):
                continue
            yield n, float(ts), (ip.src, tcp.sport), (ip.dst, tcp.dport), tcp.seq, tcp.flags, bytes(tcp.data)


class StreamFeeder:
    """Test-side TCP reassembly: bytes go to the decoder in order, once; the
    first copy of retransmitted bytes wins; holes left at the end become gaps."""

    def __init__(self, deliver, gap):
        self.deliver, self.gap = deliver, gap
        self.next: dict[str, int] = {}
        self.pending: dict[str, dict[int, tuple[bytes, int, float]]] = {"c2s": {}, "s2c": {}}

    def syn(self, d, seq):
        self.next.setdefault(d, (seq + 1) & 0xFFFFFFFF)

    def segment(self, d, seq, data, frame, ts):
        if not data:
            return
        start = self.next.setdefault(d, seq)
        off = (seq - start) & 0xFFFFFFFF
        if off >= 1 << 31:                       # before what was delivered: a retransmission
            over = (start - seq) & 0xFFFFFFFF
            if over >= len(data):
                return
            data, seq, off = data[over:], start, 0
        self.pending[d].setdefault(off, (data, frame, ts))
        self._drain(d)

    def _drain(self, d):
        pend = self.pending[d]
        while 0 in pend:
            data, frame, ts = pend.pop(0)
            self.deliver(d, data, frame, ts)
            self.next[d] = (self.next[d] + len(data)) & 0xFFFFFFFF
            shifted = {}
            for off, (dd, ff, tt) in pend.items():
                off -= len(data)
                if off + len(dd) <= 0:
                    continue
                if off < 0:
                    dd, off = dd[-off:], 0
                shifted.setdefault(off, (dd, ff, tt))
            self.pending[d] = pend = shifted

    def finish(self):
        for d, pend in self.pending.items():
            while pend:
                first = min(pend)
                self.gap(d, first)
                self.next[d] = (self.next[d] + first) & 0xFFFFFFFF
                self.pending[d] = {o - first: v for o, v in pend.items()}
                self._drain(d)
                pend = self.pending[d]


def http_over_capture(path, decode=None):
    """Run the HTTP/1 observer over every TCP connection of a plaintext capture."""
    conns: dict = {}
    for frame, ts, src, dst, seq, flags, payload in tcp_segments(path):
        key = frozenset((src, dst))
        if key not in conns:
            syn_only = flags & 0x02 and not flags & 0x10
            client = src if syn_only or (dst[1] < src[1]) else dst
            http = HTTP1Connection()
            feeder = StreamFeeder(lambda d, b, f, t, h=http: h.receive(d, b, f, t),
                                  lambda d, n, h=http: h.receive_gap(d, n))
            conns[key] = (client, http, feeder)
        client, http, feeder = conns[key]
        d = "c2s" if src == client else "s2c"
        if flags & 0x02:
            feeder.syn(d, seq)
        feeder.segment(d, seq, payload, frame, ts)
        if flags & 0x01:
            feeder.finish()
            http.end_of_stream(d)
    for client, http, feeder in conns.values():
        feeder.finish()
        http.end_of_stream("c2s")
        http.end_of_stream("s2c")
    return [http for _, http, _ in conns.values()]


def tshark_http(tshark, path):
    """tshark's requests and responses (retransmitted copies left out)."""
    out = subprocess.run([tshark, "-r", str(path), "-Y",
                          "(http.request or http.response) and not tcp.analysis.retransmission",
                          "-T", "fields", "-E", "separator=|", "-e", "frame.number", "-e", "http.request.method",
                          "-e", "http.host", "-e", "http.request.uri", "-e", "http.response.code"],
                         capture_output=True, text=True, timeout=60)
    requests, responses = [], []
    for line in out.stdout.splitlines():
        frame, method, host, uri, code = line.split("|")
        if method:
            requests.append((int(frame), method, host or None, uri))
        if code:
            responses.append((int(frame), int(code)))
    return requests, responses


@pytest.mark.parametrize("name", HTTP_CAPTURES)
def test_corpus_http_against_tshark(corpus, tshark, name):
    path = corpus / name
    want_requests, want_responses = tshark_http(tshark, path)
    assert want_requests, "tshark finds requests in every capture listed here"
    conns = http_over_capture(path)
    events = [e for c in conns for e in c.events]
    exs = [ex for c in conns for ex in exchanges(c.events)]
    # tshark shows a request in the frame that completes it (body included),
    # a response in the frame that completes it -- or, for a response read
    # until the connection closes, in the frame holding its head.
    got_requests = [(ex.request_end_frame, ex.method, ex.host, ex.target) for ex in exs if ex.method]
    assert sorted(got_requests) == sorted(want_requests)
    ends = {ex.response_frame: ex for ex in exs if ex.status is not None}
    got_responses = sorted((ex.response_end_frame, ex.status) for ex in ends.values())
    assert sorted(r[1] for r in got_responses) == sorted(r[1] for r in want_responses)
    for frame, status in want_responses:
        assert any(status == ex.status and frame in (ex.response_end_frame, ex.response_frame)
                   for ex in exs), (frame, status)
    assert not [e for e in events if isinstance(e, ParseError)]


def test_corpus_keepalive_reuses_one_connection(corpus):
    conns = http_over_capture(corpus / "pcap/http1/keepalive-retrans__arkime_wireshark-retrans.pcap")
    exs = [ex for c in conns for ex in exchanges(c.events)]
    assert len(conns) == 1 and len(exs) == 4
    assert all(ex.complete and ex.ttfb > 0 and ex.end >= ex.start + ex.ttfb for ex in exs)


# --- arbitrary bytes ------------------------------------------------------------------


PIECES = st.sampled_from([b"GET / HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n", b"Content-Length: 3\r\n",
                          b"Transfer-Encoding: chunked\r\n", b"\r\n", b"5\r\n", b"0\r\n", b"abc", b"\x00",
                          b"HEAD /h HTTP/1.1\r\n", b"HTTP/1.1 101 Switching\r\n", b"Upgrade: x\r\n", b": \r\n"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]),
                          st.one_of(st.binary(max_size=200), st.lists(PIECES, max_size=8).map(b"".join)),
                          st.integers(min_value=-1, max_value=50)), max_size=20))
def test_any_bytes_any_gaps_never_raise(steps):
    conn = HTTP1Connection()
    for frame, (direction, data, gap) in enumerate(steps, 1):
        conn.receive(direction, data, frame, float(frame))
        if gap >= 0 and frame % 3 == 0:
            conn.receive_gap(direction, gap)
    conn.end_of_stream("c2s")
    conn.end_of_stream("s2c")
    exchanges(conn.events)
    for reader in conn._readers.values():
        assert len(reader.buf) <= MAX_HEAD_BYTES + 200
