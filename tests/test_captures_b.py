"""Scenarios 4-7 captures (HTTP/2, QUIC, reverse proxy, browser) against tshark.

Each capture's manifest facts come from the recording side's own logs
(client results, nginx/haproxy logs, the upstream's log); here tshark's
reading of the same file, decrypted with the shipped key log, must agree.
Below them: unit tests of the recorders' pure logic.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
RECORD = CAPTURES / "record"
sys.path.insert(0, str(RECORD))
sys.path.insert(0, str(RECORD / "conf"))


# ---------------------------------------------------------------- helpers

def entry(name: str) -> dict:
    path = CAPTURES / "manifest.json"
    if not path.exists():
        pytest.skip("captures/manifest.json is absent")
    for e in json.loads(path.read_text())["captures"]:
        if e["name"] == name:
            if not (CAPTURES / e["file"]).exists():
                pytest.skip(f"{e['file']} is absent")
            return e
    pytest.skip(f"{name} is not in the manifest")


def rows(tshark: str, e: dict, fields: list[str], display: str = "", keys: bool = True,
         extra: tuple[str, ...] = ()) -> list[dict]:
    """One dict per displayed frame: field -> list of occurrences (strings)."""
    argv = [tshark, "-r", str(CAPTURES / e["file"]), "-T", "fields", "-E", "occurrence=a",
            "-E", "aggregator=|", "-E", "separator=\t"]
    if keys and e.get("keylog"):
        argv += ["-o", f"tls.keylog_file:{CAPTURES / e['keylog']}"]
    argv += list(extra)
    if display:
        argv += ["-Y", display]
    for f in fields:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    table = []
    for line in out.splitlines():
        cols = line.split("\t")
        cols += [""] * (len(fields) - len(cols))
        table.append({f: (c.split("|") if c else []) for f, c in zip(fields, cols)})
    return table


def one(row: dict, field: str, default=None):
    v = row.get(field) or []
    return v[0] if v else default


def h2_frames(table: list[dict], server_port: int) -> list[dict]:
    """Flatten per-packet HTTP/2 fields into one record per HTTP/2 frame.

    type/streamid/flags exist on every frame, so their lists align; method,
    path and status exist only on HEADERS frames, in the same order."""
    frames = []
    for r in table:
        to_server = one(r, "tcp.dstport") == str(server_port)
        methods, paths, codes = iter(r["http2.headers.method"]), iter(r["http2.headers.path"]), \
            iter(r["http2.headers.status"])
        for t, sid, flags in zip(r["http2.type"], r["http2.streamid"], r["http2.flags"]):
            f = dict(time=float(one(r, "frame.time_epoch")), conn=int(one(r, "tcp.stream")),
                     type=int(t), stream=int(sid), flags=int(flags, 16), to_server=to_server)
            if f["type"] == 1 and to_server:
                f["method"], f["path"] = next(methods, None), next(paths, None)
            elif f["type"] == 1:
                f["status"] = next(codes, None)
            frames.append(f)
    return frames


H2_FIELDS = ["frame.time_epoch", "tcp.stream", "tcp.dstport", "http2.type", "http2.streamid",
             "http2.flags", "http2.headers.method", "http2.headers.path", "http2.headers.status"]


# ---------------------------------------------------------------- scenario 6: reverse proxy

TCP_FIELDS = ["frame.interface_id", "frame.time_epoch", "tcp.stream", "tcp.srcport", "tcp.dstport",
              "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.fin", "tcp.flags.reset", "tcp.len",
              "http.response.code", "http.request.method", "http.request.uri", "tcp.payload"]


def tcp_table(tshark, e) -> list[dict]:
    out = []
    for r in rows(tshark, e, TCP_FIELDS, "tcp"):
        out.append(dict(
            iface=int(one(r, "frame.interface_id")), time=float(one(r, "frame.time_epoch")),
            stream=int(one(r, "tcp.stream")), sport=int(one(r, "tcp.srcport")),
            dport=int(one(r, "tcp.dstport")), syn=one(r, "tcp.flags.syn") in ("1", "True"),
            ack=one(r, "tcp.flags.ack") in ("1", "True"), fin=one(r, "tcp.flags.fin") in ("1", "True"),
            rst=one(r, "tcp.flags.reset") in ("1", "True"), len=int(one(r, "tcp.len", "0")),
            code=one(r, "http.response.code"), method=one(r, "http.request.method"),
            uri=one(r, "http.request.uri"),
            payload=bytes.fromhex(one(r, "tcp.payload", "").replace(":", ""))))
    return out


def client_codes(table: list[dict], server_port: int) -> dict[int, str]:
    """Client port -> the status code the proxy sent on the client leg."""
    return {p["dport"]: p["code"] for p in table
            if p["iface"] == 0 and p["sport"] == server_port and p["code"]}


def from_port(table, port, iface=1):
    return [p for p in table if p["iface"] == iface and p["sport"] == port]


def port(behaviour: str) -> int:
    from upstream_b import port_of
    return port_of(9000, behaviour)


def exchange(e: dict, path: str) -> dict:
    return next(x for x in e["facts"]["exchanges"] if x["path"] == path)


def check_client_leg(table, e, server_port):
    codes = client_codes(table, server_port)
    for x in e["facts"]["exchanges"]:
        assert codes.get(int(x["client"].rsplit(":", 1)[1])) == str(x["status"]), x["path"]
    assert Counter(codes.values()) == Counter(e["facts"]["statuses"])
    assert len(codes) == e["facts"]["requests"]


def test_nginx_502_504_client_leg(tshark):
    e = entry("proxy-nginx-502-504")
    check_client_leg(tcp_table(tshark, e), e, 80)
    assert e["facts"]["statuses"] == {"200": 1, "502": 5, "504": 1}


def test_nginx_502_causes_match_upstream_leg(tshark):
    e = entry("proxy-nginx-502-504")
    t = tcp_table(tshark, e)
    # refused: every SYN to the dead port is answered by RST, no data ever flows
    refused = from_port(t, port("ok") + 8)
    assert refused and all(p["rst"] for p in refused) and not any(p["len"] for p in refused)
    assert "Connection refused" in exchange(e, "/refused")["nginx_error"][0]
    # FIN before responding
    fin = from_port(t, port("fin"))
    assert any(p["fin"] for p in fin) and not any(p["rst"] or p["len"] for p in fin)
    assert "prematurely closed" in exchange(e, "/fin")["nginx_error"][0]
    # RST before responding
    rst = from_port(t, port("rst"))
    assert any(p["rst"] for p in rst) and not any(p["len"] for p in rst)
    assert "reset by peer" in exchange(e, "/rst")["nginx_error"][0]
    # NUL in a header name: the bytes are on the wire
    nul = b"".join(p["payload"] for p in from_port(t, port("nul")))
    head = nul.split(b"\r\n\r\n")[0]
    assert any(b"\x00" in line.split(b":")[0] for line in head.split(b"\r\n")[1:])
    assert "invalid header" in exchange(e, "/nul")["nginx_error"][0]
    # a header block bigger than nginx's 4 KB proxy buffer
    big = b"".join(p["payload"] for p in from_port(t, port("big")))
    assert big.find(b"\r\n\r\n") > 9000 or b"\r\n\r\n" not in big
    assert "too big header" in exchange(e, "/big")["nginx_error"][0]
    for x in e["facts"]["exchanges"]:
        assert (x["status"] == 200) == (not x["nginx_error"]), x["path"]


def test_nginx_504_sent_before_the_slow_upstream_answers(tshark):
    e = entry("proxy-nginx-502-504")
    t = tcp_table(tshark, e)
    x = exchange(e, "/slow")
    cport = int(x["client"].rsplit(":", 1)[1])
    request = next(p for p in t if p["iface"] == 0 and p["sport"] == cport and p["method"])
    answer = next(p for p in t if p["iface"] == 0 and p["dport"] == cport and p["code"])
    late = [p for p in from_port(t, port("slow")) if p["len"]]
    assert answer["code"] == "504"
    # proxy_read_timeout 1 s, measured from nginx's request upstream (a path RTT later)
    assert 1.0 <= answer["time"] - request["time"] < 1.5
    assert "timed out" in x["nginx_error"][0]
    if late:   # the upstream's answer, if it left before nginx closed, came after the 504
        assert min(p["time"] for p in late) > answer["time"]


def test_keepalive_race_on_the_wire(tshark):
    e = entry("proxy-keepalive-race")
    t = tcp_table(tshark, e)
    check_client_leg(t, e, 80)
    assert e["facts"]["race_reproduced"] is True
    up = [p for p in t if p["iface"] == 1 and port("ok") in (p["sport"], p["dport"])]
    by_stream = defaultdict(list)
    for p in up:
        by_stream[p["stream"]].append(p)
    raced = []
    for packets in by_stream.values():
        requests = [p for p in packets if p["dport"] == port("ok") and p["method"]]
        answers = [p for p in packets if p["sport"] == port("ok") and p["code"]]
        fins = [p for p in packets if p["sport"] == port("ok") and p["fin"]]
        rsts = [p for p in packets if p["sport"] == port("ok") and p["rst"]]
        if len(requests) > len(answers):
            last = requests[-1]
            # the request crossed the upstream's FIN (or left in the instant before nginx
            # read that FIN: a few ms at most on this path), and met a RST
            assert fins and last["time"] < fins[0]["time"] + 0.005
            assert rsts and rsts[0]["time"] > last["time"]
            raced.append(last["uri"])
    assert sorted(raced) == ["/ok/get-race", "/ok/post-race", "/okni/post-race"]
    uris = Counter(p["uri"] for p in up if p["method"])
    for x in e["facts"]["exchanges"]:
        # nginx's $upstream_status has one entry per upstream attempt
        assert uris[x["path"]] == len(x["upstream_status"]), x["path"]
    assert exchange(e, "/ok/get-race")["status"] == 200
    assert exchange(e, "/ok/get-race")["upstream_status"] == ["502", "200"]
    assert exchange(e, "/ok/post-race")["status"] == 502
    # proxy_next_upstream ... non_idempotent: the POST is retried like the GET
    assert exchange(e, "/okni/post-race")["status"] == 200
    assert exchange(e, "/okni/post-race")["upstream_status"] == ["502", "200"]


def test_haproxy_503_502(tshark):
    e = entry("proxy-haproxy-503-502")
    t = tcp_table(tshark, e)
    check_client_leg(t, e, 8080)
    assert e["facts"]["statuses"] == {"200": 1, "502": 3, "503": 1}
    syns = [p for p in t if p["iface"] == 1 and p["dport"] == port("ok") + 8 and p["syn"]]
    assert len(syns) == 2                     # the first try and 'retries 1'
    assert all(p["rst"] for p in from_port(t, port("ok") + 8))
    assert exchange(e, "/refused")["haproxy_termination"].startswith("SC")
    assert any(p["fin"] for p in from_port(t, port("fin")))
    assert not any(p["len"] for p in from_port(t, port("fin")))
    assert exchange(e, "/fin")["haproxy_termination"].startswith("SH")
    assert any(p["rst"] for p in from_port(t, port("rst")))
    assert exchange(e, "/rst")["haproxy_termination"].startswith("SH")
    bad = b"".join(p["payload"] for p in from_port(t, port("badstatus")))
    assert bad.startswith(b"HTTP/1.1 ") and not bad[9:12].isdigit()
    assert exchange(e, "/badstatus")["haproxy_termination"].startswith("PH")


# ---------------------------------------------------------------- scenario 4: HTTP/2

def check_h2(tshark, e, server_port, extra=(), keys=True):
    frames = h2_frames(rows(tshark, e, H2_FIELDS, "http2", keys=keys, extra=extra), server_port)
    requests = [f for f in frames if f["type"] == 1 and f["to_server"]]
    responses = [f for f in frames if f["type"] == 1 and not f["to_server"]]
    facts = e["facts"]
    assert len(requests) == facts["requests"]
    assert sorted(f["stream"] for f in requests) == facts["streams"]
    assert Counter(f["status"] for f in responses) == Counter(facts["statuses"])
    assert len({f["conn"] for f in frames}) == facts["client_connections"] == 1
    return frames


def interleaved_streams(frames: list[dict]) -> int:
    """Streams that carried DATA before any resource stream finished: open at once."""
    data = [f for f in frames if f["type"] == 0 and not f["to_server"] and f["stream"] > 1]
    first_end = min(f["time"] for f in data if f["flags"] & 1)
    return len({f["stream"] for f in data if f["time"] < first_end})


def test_h2_multiplexing_decrypted(tshark):
    e = entry("h2-multiplexing")
    frames = check_h2(tshark, e, 443)
    assert interleaved_streams(frames) >= 10
    assert e["facts"]["max_concurrent_requests"] >= 10


def test_h2_multiplexing_embedded_keys(tshark):
    """The pcapng's Decryption Secrets Block alone decrypts it."""
    e = entry("h2-multiplexing")
    check_h2(tshark, e, 443, keys=False)


def test_http1_six_connections(tshark):
    e = entry("http1-six-connections")
    t = rows(tshark, e, ["tcp.stream", "tcp.srcport", "http.request.uri", "http.response.code"],
             "http")
    paths = defaultdict(list)
    for r in t:
        if r["http.request.uri"]:
            paths[int(one(r, "tcp.srcport"))].append(one(r, "http.request.uri"))
    codes = Counter(c for r in t for c in r["http.response.code"])
    facts = e["facts"]
    assert len(paths) == facts["client_connections"] == 6
    want = {int(c.rsplit(":", 1)[1]): p for c, p in facts["requests_by_connection"].items()}
    assert {k: sorted(v) for k, v in paths.items()} == {k: sorted(v) for k, v in want.items()}
    assert codes == Counter(facts["statuses"])


def test_h2c_prior_knowledge(tshark):
    e = entry("h2c-prior-knowledge")
    check_h2(tshark, e, 8080, extra=("-d", "tcp.port==8080,http2"))
    first = rows(tshark, e, ["tcp.payload"], "tcp.len > 0 and tcp.dstport == 8080")[0]
    assert bytes.fromhex(one(first, "tcp.payload").replace(":", "")).startswith(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")


# ---------------------------------------------------------------- scenario 5: QUIC

QUIC_FIELDS = ["frame.time_epoch", "udp.srcport", "udp.dstport", "quic.connection.number",
               "quic.long.packet_type", "quic.stream.stream_id", "http3.frame_type"]


def test_quic_h3(tshark):
    e = entry("quic-h3")
    t = rows(tshark, e, QUIC_FIELDS, "quic")
    facts = e["facts"]
    assert len({c for r in t for c in r["quic.connection.number"]}) == facts["quic_connections"] == 1
    client = facts["client_ports"][0]
    # a request is an HTTP/3 HEADERS frame (type 1) on a client bidirectional stream
    req_streams = set()
    for r in t:
        if one(r, "udp.srcport") == str(client) and "1" in r["http3.frame_type"]:
            req_streams |= {int(s) for s in r["quic.stream.stream_id"] if int(s) % 4 == 0}
    assert sorted(req_streams) == facts["streams"]
    assert len(req_streams) == facts["requests"] == len(facts["server_log"])
    assert Counter(str(x["status"]) for x in facts["server_log"]) == Counter(facts["statuses"])


# QPACK static table entries for :status (RFC 9204, Appendix A); tshark 4.0 does not
# decode QPACK, so the first field line of each response is read here by hand.
QPACK_STATUS = {24: "103", 25: "200", 26: "304", 27: "404", 28: "503", 63: "100", 64: "204",
                65: "206", 66: "302", 67: "400", 68: "403", 69: "421", 70: "425", 71: "500"}


def prefixed_int(data: bytes, pos: int, bits: int) -> tuple[int, int]:
    """An HPACK/QPACK prefix integer at ``pos`` with an N-bit prefix -> (value, next pos)."""
    limit = (1 << bits) - 1
    value = data[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        value += (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def qpack_status(block: bytes) -> str:
    """:status of a QPACK field section whose first line is a static indexed field line."""
    _, pos = prefixed_int(block, 0, 8)          # Required Insert Count
    _, pos = prefixed_int(block, pos, 7)        # Delta Base (sign bit ignored)
    if block[pos] & 0xC0 != 0xC0:               # not "indexed, static table"
        return "?"
    index, _ = prefixed_int(block, pos, 6)
    return QPACK_STATUS.get(index, "?")


def test_quic_h3_statuses_from_the_wire(tshark):
    e = entry("quic-h3")
    t = rows(tshark, e, ["udp.srcport", "http3.frame_type", "http3.frame_payload"],
             "http3.frame_type == 1 and udp.srcport == 443")
    seen = Counter()
    for r in t:
        for ftype, payload in zip(r["http3.frame_type"], r["http3.frame_payload"]):
            if ftype == "1":
                seen[qpack_status(bytes.fromhex(payload.replace(":", "")))] += 1
    assert seen == Counter(e["facts"]["statuses"])


def test_qpack_status_reader():
    assert qpack_status(bytes.fromhex("0000d95f4d")) == "200"
    assert qpack_status(bytes.fromhex("0280db10")) == "404"
    assert qpack_status(bytes.fromhex("0000ff00")) == "100"    # index 63: a continuation byte
    assert qpack_status(bytes.fromhex("00005f1d")) == "?"      # a literal, not an indexed line
    assert prefixed_int(bytes([0x3F, 0x01]), 0, 6) == (64, 2)


def test_quic_saves_a_round_trip(tshark):
    """First request after 1 RTT over QUIC, after 2 RTTs over TCP + TLS 1.3."""
    q, h = entry("quic-h3"), entry("quic-vs-h2-tcp")
    rtt = q["facts"]["rtt_ms"] / 1000
    t = rows(tshark, q, QUIC_FIELDS, "quic")
    start = float(one(t[0], "frame.time_epoch"))
    client = str(q["facts"]["client_ports"][0])
    first_req = min(float(one(r, "frame.time_epoch")) for r in t
                    if one(r, "udp.srcport") == client and "1" in r["http3.frame_type"])
    frames = check_h2(tshark, h, 443)
    syn = rows(tshark, h, ["frame.time_epoch"], "tcp.flags.syn == 1 and tcp.flags.ack == 0")
    h2_first = min(f["time"] for f in frames if f["type"] == 1 and f["to_server"])
    assert rtt <= first_req - start < 2 * rtt
    assert 2 * rtt <= h2_first - float(one(syn[0], "frame.time_epoch")) < 3 * rtt


def test_quic_qlogs_from_both_ends():
    e = entry("quic-h3")
    folder = CAPTURES / e["extra_files"]["qlog"]
    client = [folder / n for n in e["facts"]["qlog_client"]]
    server = [folder / n for n in e["facts"]["qlog_server"]]
    assert len(client) == len(server) == e["facts"]["quic_connections"]
    for path, vantage in ((client[0], "client"), (server[0], "server")):
        doc = json.loads(path.read_text())
        trace = doc["traces"][0]
        assert trace["vantage_point"]["type"] == vantage
        assert trace["events"]


# ---------------------------------------------------------------- scenario 7: browser

def test_browser_pcap_agrees_with_browser(tshark):
    e = entry("browser-page-load")
    frames = h2_frames(rows(tshark, e, H2_FIELDS, "http2"), 443)
    requests = [f for f in frames if f["type"] == 1 and f["to_server"]]
    facts = e["facts"]
    assert len(requests) == facts["requests"] == 15
    assert Counter(f["status"] for f in frames if f["type"] == 1 and not f["to_server"]) == \
        Counter(facts["statuses"])
    assert sorted(f["path"] for f in requests) == sorted(
        "/" + u.split("/", 3)[3] for u in facts["urls"])
    assert len({f["conn"] for f in frames}) == facts["server_connections"]


def test_browser_har_trace_netlog_describe_the_same_load():
    e = entry("browser-page-load")
    extra = e["extra_files"]
    urls = sorted(e["facts"]["urls"])
    har = json.loads((CAPTURES / extra["har"]).read_text())
    assert sorted(x["request"]["url"] for x in har["log"]["entries"]) == urls
    assert {x["response"]["status"] for x in har["log"]["entries"]} == {200}
    trace = json.loads((CAPTURES / extra["devtools_trace"]).read_text())
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    sent = {ev["args"]["data"]["requestId"]: ev["args"]["data"]["url"]
            for ev in events if ev.get("name") == "ResourceSendRequest"}
    got = [ev["args"]["data"] for ev in events if ev.get("name") == "ResourceReceiveResponse"]
    assert sorted(sent.values()) == urls
    # the response events name the request by id; every one of ours came over one connection
    assert sorted(sent[d["requestId"]] for d in got) == urls
    assert {d["statusCode"] for d in got} == {200} and {d["protocol"] for d in got} == {"h2"}
    assert len({d["connectionId"] for d in got}) == e["facts"]["server_connections"]
    netlog = json.loads((CAPTURES / extra["netlog"]).read_text())
    assert netlog["constants"] and netlog["events"]


# ---------------------------------------------------------------- key logs

@pytest.mark.parametrize("name", ["h2-multiplexing", "http1-six-connections", "quic-h3",
                                  "quic-vs-h2-tcp", "browser-page-load"])
def test_keylogs_are_nss_format(name):
    e = entry(name)
    lines = [l for l in (CAPTURES / e["keylog"]).read_text().splitlines()
             if not l.startswith("#")]     # comments are allowed in the NSS format
    labels = {line.split()[0] for line in lines if line.strip()}
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in labels and "CLIENT_TRAFFIC_SECRET_0" in labels
    assert all(len(line.split()) == 3 for line in lines if line.strip())


# ---------------------------------------------------------------- recorder logic

def test_race_wait_aims_at_the_close():
    from scenarios_proxy import race_wait
    assert race_wait(0, 0, idle=1.0) == 1.0
    assert race_wait(0.025, 0.025, idle=1.0) == pytest.approx(0.925)
    assert race_wait(0.01, 0.05, idle=2.0) == pytest.approx(1.93)


def test_nginx_log_parsers_on_recorded_lines():
    from scenarios_proxy import parse_access_line, parse_error_line, path_of
    e = entry("proxy-nginx-502-504")
    errors = [parse_error_line(l) for l in e["facts"]["nginx_error_log"]]
    assert all(errors)
    assert sorted(path_of(x["request"]) for x in errors) == sorted(
        x["path"] for x in e["facts"]["exchanges"] if x["status"] != 200)
    access = [parse_access_line(l) for l in e["facts"]["nginx_access_log"]]
    assert [a["status"] for a in access] == [x["status"] for x in e["facts"]["exchanges"]]
    assert parse_error_line("not an nginx line") is None
    line = ('1.5 10.0.0.1:5 c3 "GET /x HTTP/1.1" 200 up="1.2.3.4:80, 1.2.3.4:80" '
            'ups="502, 200" urt="0.1, 0.2"')
    assert parse_access_line(line)["upstream_status"] == ["502", "200"]


def test_haproxy_log_parser():
    from scenarios_proxy import haproxy_fields
    line = ('10.88.0.1:56694 [27/Nov/2026:23:32:20.147] fe be_refused/up 0/0/-1/-1/1103 503 217 '
            '- - SC-- 1/1/0/0/1 0/0 "GET /refused HTTP/1.1"')
    f = haproxy_fields(line)
    assert (f["client"], f["status"], f["termination"]) == ("10.88.0.1:56694", 503, "SC--")
    assert haproxy_fields("[NOTICE] starting") is None


def test_upstream_misbehaviours_are_what_they_claim():
    from upstream_b import content_length, parse_request, response
    from client_b import status_of
    nul = response("nul", "/nul")
    assert b"X-Bad\x00Name:" in nul.split(b"\r\n\r\n")[0]
    big = response("big", "/big")
    assert big.index(b"\r\n\r\n") > 9216
    assert status_of(response("ok", "/")) == 200
    assert status_of(response("badstatus", "/")) is None
    assert parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n") is None
    req = b"POST /a HTTP/1.1\r\nContent-Length: 7\r\n\r\norder=1"
    method, path, head = parse_request(req)
    assert (method, path, content_length(req[:head])) == ("POST", "/a", 7)


def test_client_request_bytes():
    from client_b import build_request
    raw = build_request("POST", "/p", "h", "abc")
    assert raw.endswith(b"\r\n\r\nabc") and b"Content-Length: 3\r\n" in raw
    assert b"Content-Length" not in build_request("GET", "/", "h", None)


def test_render_and_ss_parsing():
    from servers_b import local_of, render
    assert render("listen @A@:80; # @NOT_FILLED@", {"A": "1.2.3.4"}).startswith("listen 1.2.3.4:80;")
    with pytest.raises(ValueError):
        render("root @PREFIX@/site;", {})
    assert local_of("LISTEN 0 511 10.88.0.2:443 0.0.0.0:*") == "10.88.0.2:443"
    assert local_of("") == ""


def test_h2_plan_helpers():
    from scenarios_h2 import by_connection, max_concurrency, site_files
    rows_ = [dict(start=0, end=2, client="a", path="/1"), dict(start=1, end=3, client="b", path="/2"),
             dict(start=2, end=4, client="a", path="/3")]
    assert max_concurrency(rows_) == 2       # an end and a start at t=2 do not overlap
    assert by_connection(rows_) == {"a": ["/1", "/3"], "b": ["/2"]}
    files = site_files(3, 1000)
    assert len(files) == 4 and all(len(v) == 1000 for k, v in files.items() if k.startswith("/r/"))


def test_browser_page_and_trace_trim():
    from scenarios_browser import page_files, trim_trace
    assert len(page_files(12)) == 15
    doc = {"traceEvents": [
        {"name": "process_name", "pid": 1, "args": {"name": "Browser"}},
        {"name": "process_name", "pid": 2, "args": {"name": "WebUI Top Renderer"}},
        {"name": "X", "pid": 2, "args": {}},
        {"name": "ResourceSendRequest", "pid": 1, "args": {"data": {"url": "chrome://x/"}}},
        {"name": "ResourceSendRequest", "pid": 1, "args": {"data": {"url": "https://10.88.0.2/"}}}]}
    kept, removed = trim_trace(doc)
    assert removed == 3 and [e["pid"] for e in kept["traceEvents"]] == [1, 1]


def test_certificate_and_spki_hash(tmp_path):
    from certs_b import make_cert, spki_hash
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    cert_path, _ = make_cert(tmp_path, "10.88.0.2")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.88.0.2"]
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    assert base64.b64decode(spki_hash(cert_path.read_bytes())) == hashlib.sha256(der).digest()
