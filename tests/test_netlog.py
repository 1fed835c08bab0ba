"""Chrome NetLog: the bundled browser load against its HAR, its DevTools trace, tshark and the recording.

``captures/browser-page-load`` was recorded once with all four views of the
same page load: the pcap (+ keys), the HAR, the DevTools trace and the NetLog.
Ground truth: the recording side's facts (captures/manifest.json), tshark's
reading of the pcap, the other exports as our readers give them, and the
NetLog's raw JSON counted here by hand.
"""

from __future__ import annotations

import functools
import gzip
import json
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile
import traceviz
from traceviz.errors import InputError
from traceviz.sources.netlog import read_netlog

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
NETLOG = CAPTURES / "browser-page-load.netlog.json"


def entry() -> dict:
    doc = json.loads((CAPTURES / "manifest.json").read_text())
    return next(e for e in doc["captures"] if e["name"] == "browser-page-load")


@functools.lru_cache(maxsize=1)
def raw() -> tuple[dict, list[dict]]:
    """The NetLog's events with their type, phase and source type named, read by hand."""
    doc = json.loads(NETLOG.read_text())
    c = doc["constants"]
    etype = {v: k for k, v in c["logEventTypes"].items()}
    stype = {v: k for k, v in c["logSourceType"].items()}
    phase = {v: k for k, v in c["logEventPhase"].items()}
    return doc, [{**e, "type": etype[e["type"]], "phase": phase[e["phase"]],
                  "source_type": stype[e["source"]["type"]]} for e in doc["events"]]


@pytest.fixture(scope="module")
def netlog():
    return traceviz.load(NETLOG)


# ---------------------------------------------------------------- the same load, four ways

def test_netlog_agrees_with_har_and_trace(netlog):
    har = traceviz.load(CAPTURES / "browser-page-load.har")
    trace = traceviz.load(CAPTURES / "browser-page-load.trace.json")
    answered = netlog.requests[netlog.requests["status"].notna()]
    # URLs and statuses: the page's 15, each once, all 200
    pairs = sorted(zip(answered["url"], answered["status"]))
    assert pairs == sorted(zip(har.requests["url"], har.requests["status"])) == \
        sorted(zip(trace.requests["url"], trace.requests["status"]))
    assert sorted(answered["url"]) == sorted(entry()["facts"]["urls"])
    # connections: one, to the same server, carrying the same requests
    assert len(netlog.connections) == len(har.connections) == len(trace.connections) == \
        entry()["facts"]["server_connections"]
    n, h = netlog.connections.iloc[0], har.connections.iloc[0]
    assert n["server"] == h["server"] and n["app"] == h["app"] == "h2" and n["tls_version"] == h["tls_version"]
    assert set(answered.loc[answered["conn"] == n["conn"], "url"]) == \
        set(har.requests.loc[har.requests["conn"] == h["conn"], "url"])
    # the DevTools connectionId is the NetLog's socket id: the trace and the NetLog name the same socket
    assert n["connection_id"] == trace.connections.iloc[0]["connection_id"]
    assert set(answered["connection_id"]) == set(trace.requests["connection_id"])
    # the other requests are Chromium's own background fetches, which failed DNS in the lab
    others = netlog.requests[netlog.requests["status"].isna()]
    assert set(others["error"]) == {"ERR_NAME_NOT_RESOLVED"} and others["conn"].isna().all()


def test_netlog_agrees_with_the_capture(netlog, tshark):
    e = entry()
    c = netlog.connections.iloc[0]
    assert [c["client"]] == e["facts"]["server_connection_clients"]     # nginx's access log
    argv = [tshark, "-r", str(CAPTURES / e["file"]), "-o", f"tls.keylog_file:{CAPTURES / e['keylog']}"]
    payload = subprocess.run(argv + ["-Y", "tcp", "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.len"],
                             capture_output=True, text=True, check=True).stdout
    sent: Counter = Counter()
    for line in payload.splitlines():
        port, n = line.split("\t")
        sent[port] += int(n)
    client_port = c["client"].rsplit(":", 1)[1]
    assert (c["bytes_c2s"], c["bytes_s2c"]) == (sent[client_port], sent["443"])
    heads = subprocess.run(argv + ["-Y", "http2.type == 1 and tcp.dstport == 443", "-T", "fields",
                                   "-E", "occurrence=a", "-E", "aggregator=|",
                                   "-e", "http2.streamid", "-e", "http2.headers.path"],
                           capture_output=True, text=True, check=True).stdout
    streams = {}
    for line in heads.splitlines():
        ids, paths = line.split("\t")
        streams.update(zip(paths.split("|"), map(int, ids.split("|"))))
    answered = netlog.requests[netlog.requests["status"].notna()]
    ours = {u.split("10.88.0.2", 1)[1]: s for u, s in zip(answered["url"], answered["stream"])}
    assert ours == streams


def test_netlog_counts_match_the_file(netlog):
    doc, events = raw()
    starts = [e for e in events if e["type"] == "URL_REQUEST_START_JOB" and e["phase"] == "PHASE_BEGIN"]
    failed = {e["source"]["id"] for e in events if e["type"] == "REQUEST_ALIVE" and e["phase"] == "PHASE_END"
              and (e.get("params") or {}).get("net_error")}
    assert len(netlog.requests) == len(starts)
    assert set(netlog.requests.loc[netlog.requests["error"].notna(), "netlog_source"]) == failed
    h2 = netlog.events[netlog.events["layer"] == "h2"]
    count = Counter(e["type"] for e in events)
    assert (h2["kind"] == "HEADERS").sum() == count["HTTP2_SESSION_SEND_HEADERS"] + count["HTTP2_SESSION_RECV_HEADERS"]
    assert (h2["kind"] == "DATA").sum() == count["HTTP2_SESSION_RECV_DATA"] + count["HTTP2_SESSION_SEND_DATA"]
    tls = netlog.events[netlog.events["layer"] == "tls"]
    assert (tls["kind"] != "handshake").sum() == \
        count["SSL_HANDSHAKE_MESSAGE_SENT"] + count["SSL_HANDSHAKE_MESSAGE_RECEIVED"]
    # each hop's body bytes are the sum Chrome logged for it
    read = defaultdict(int)
    for e in events:
        if e["type"] == "URL_REQUEST_JOB_FILTERED_BYTES_READ":
            read[e["source"]["id"]] += e["params"]["byte_count"]
    got = netlog.requests.dropna(subset=["resp_bytes"])
    assert dict(zip(got["netlog_source"], got["resp_bytes"])) == dict(read)
    # times are wall-clock: the first page request starts within a second of the HAR's
    har = traceviz.load(CAPTURES / "browser-page-load.har")
    assert abs(got["start"].min() - har.requests["start"].min()) < 1.0


def test_netlog_phases(netlog):
    r = netlog.requests[netlog.requests["status"].notna()].sort_values("start")
    first, rest = r.iloc[0], r.iloc[1:]
    # the first request opened the socket: its connect and TLS are the socket's, and the HAR's
    har = traceviz.load(CAPTURES / "browser-page-load.har").requests.sort_values("start").iloc[0]
    assert not first["reused_connection"] and rest["reused_connection"].all()
    assert abs(first["connect"] - har["connect"]) < 0.005 and abs(first["tls"] - har["tls"]) < 0.005
    assert rest["connect"].isna().all()
    assert (r["ttfb"] > 0).all() and ((r["end"] - r["start"]) >= r["ttfb"]).all()


def test_info_describes_the_netlog(tv):
    code, out, err = tv("info", NETLOG, "--json")
    assert code == 0, err
    facts = json.loads(out)
    doc, _ = raw()
    assert facts["format"] == "netlog" and facts["netlog_events"] == len(doc["events"])
    assert facts["browser"] == f"Chromium {entry()['recorded']['software']['chromium']}"


# ---------------------------------------------------------------- damaged and odd logs

def test_netlog_cut_while_chrome_wrote_it(tmp_path):
    lines = NETLOG.read_text().splitlines(keepends=True)
    events_at = next(i for i, line in enumerate(lines) if line.startswith('"events"'))
    full = read_netlog(NETLOG)
    for keep in (events_at + 50, events_at + 900, len(lines) - 5):
        p = tmp_path / "cut.json"
        p.write_text("".join(lines[:keep]) + lines[keep][:17])
        log = read_netlog(p)
        assert log.truncated and any("ends early" in w for w in log.warnings)
        assert log.events < full.events and len(log.requests) <= len(full.requests)
        tl = traceviz.load(p)
        assert tl.source.format == "netlog"
    p = tmp_path / "head.json"
    p.write_text(lines[0][:5000])                            # cut inside the constants: nothing to read
    with pytest.raises(InputError, match="broken JSON"):
        traceviz.load(p)


def test_gzipped_netlog(tmp_path):
    p = tmp_path / "n.json.gz"
    p.write_bytes(gzip.compress(NETLOG.read_bytes()))
    tl = traceviz.load(p)
    assert tl.source.compressed and tl.source.format == "netlog" and len(tl.requests) == 20


def test_quic_session_carries_h3_requests(tmp_path):
    """A request Chrome sent over QUIC: URL_REQUEST -> stream job -> QUIC_SESSION (names as
    Chromium's net_log_event_type_list.h defines them)."""
    doc, _ = raw()
    c = doc["constants"]
    t, s = c["logEventTypes"], c["logSourceType"]
    B, E, N = c["logEventPhase"]["PHASE_BEGIN"], c["logEventPhase"]["PHASE_END"], c["logEventPhase"]["PHASE_NONE"]

    def ev(time, sid, stype, etype, phase, **params):
        return {"time": str(time), "source": {"id": sid, "type": s[stype]}, "type": t[etype], "phase": phase,
                "params": params}
    url = "https://h3.example/x"
    events = [
        ev(100, 1, "URL_REQUEST", "REQUEST_ALIVE", B, url=url, priority="HIGHEST"),
        ev(100, 1, "URL_REQUEST", "URL_REQUEST_START_JOB", B, url=url, method="GET"),
        ev(101, 5, "QUIC_SESSION", "QUIC_SESSION", B, host="h3.example", port=443, versions="RFCv1"),
        ev(110, 5, "QUIC_SESSION", "QUIC_SESSION_PACKET_SENT", N, size=1250, packet_number=1,
           encryption_level="ENCRYPTION_INITIAL"),
        ev(160, 5, "QUIC_SESSION", "QUIC_SESSION_PACKET_RECEIVED", N, size=1200, self_address="10.0.0.1:5000",
           peer_address="10.0.0.2:443"),
        ev(161, 5, "QUIC_SESSION", "QUIC_SESSION_VERSION_NEGOTIATED", N, version="RFCv1"),
        ev(162, 2, "HTTP_STREAM_JOB", "HTTP_STREAM_JOB", B),
        ev(162, 2, "HTTP_STREAM_JOB", "QUIC_SESSION_POOL_ATTACH_HTTP_STREAM_JOB_TO_EXISTING_SESSION", N,
           source_dependency={"id": 5, "type": s["QUIC_SESSION"]}),
        ev(162, 1, "URL_REQUEST", "HTTP_STREAM_REQUEST_BOUND_TO_JOB", N,
           source_dependency={"id": 2, "type": s["HTTP_STREAM_JOB"]}),
        ev(163, 1, "URL_REQUEST", "HTTP_TRANSACTION_SEND_REQUEST", B),
        ev(163, 1, "URL_REQUEST", "HTTP_TRANSACTION_QUIC_SEND_REQUEST_HEADERS", N, quic_stream_id=0),
        ev(163, 1, "URL_REQUEST", "HTTP_TRANSACTION_SEND_REQUEST", E),
        ev(214, 1, "URL_REQUEST", "HTTP_TRANSACTION_READ_RESPONSE_HEADERS", N,
           headers=["HTTP/1.1 200", "content-type: text/html; charset=utf-8"]),
        ev(215, 1, "URL_REQUEST", "URL_REQUEST_JOB_FILTERED_BYTES_READ", N, byte_count=900),
        ev(216, 1, "URL_REQUEST", "REQUEST_ALIVE", E),
        # a second request on the same session, bound to it directly
        ev(220, 3, "URL_REQUEST", "REQUEST_ALIVE", B, url=url + "2", priority="LOW"),
        ev(220, 3, "URL_REQUEST", "URL_REQUEST_START_JOB", B, url=url + "2", method="GET"),
        ev(221, 3, "URL_REQUEST", "HTTP_STREAM_REQUEST_BOUND_TO_QUIC_SESSION", N,
           source_dependency={"id": 5, "type": s["QUIC_SESSION"]}),
        ev(221, 3, "URL_REQUEST", "HTTP_TRANSACTION_SEND_REQUEST", B),
        ev(221, 3, "URL_REQUEST", "HTTP_TRANSACTION_QUIC_SEND_REQUEST_HEADERS", N, quic_stream_id=4),
        ev(221, 3, "URL_REQUEST", "HTTP_TRANSACTION_SEND_REQUEST", E),
        ev(271, 3, "URL_REQUEST", "HTTP_TRANSACTION_READ_RESPONSE_HEADERS", N, headers=["HTTP/1.1 404"]),
        ev(272, 3, "URL_REQUEST", "REQUEST_ALIVE", E),
        ev(300, 5, "QUIC_SESSION", "QUIC_SESSION_CLOSED", N, quic_error="QUIC_NO_ERROR", details="bye"),
        ev(300, 5, "QUIC_SESSION", "QUIC_SESSION", E),
    ]
    p = tmp_path / "q.json"
    p.write_text(json.dumps({"constants": c, "events": events}))
    tl = traceviz.load(p)
    r = tl.requests.iloc[0]
    assert (r["protocol"], r["status"], r["stream"], r["resp_bytes"], r["content_type"]) == \
        ("h3", 200, 0, 900, "text/html")
    assert r["ttfb"] == pytest.approx(0.114, abs=1e-6) and r["wait"] == pytest.approx(0.051, abs=1e-6)
    conn = tl.connections.iloc[0]
    assert (conn["transport"], conn["client"], conn["server"], conn["sni"], conn["packets"]) == \
        ("quic", "10.0.0.1:5000", "10.0.0.2:443", "h3.example", 2)
    assert conn["quic_version"] == "RFCv1" and conn["close_reason"] == "QUIC_NO_ERROR"
    assert tl.requests["conn"].tolist() == [conn["conn"]] * 2
    second = tl.requests.iloc[1]
    assert (second["status"], second["stream"], second["reused_connection"]) == (404, 4, True)
    assert not r["reused_connection"]
    assert set(tl.events.loc[tl.events["layer"] == "quic", "kind"]) == {"packet_sent", "packet_received", "closed"}


SEED = NETLOG.read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=hostile.damaged_copies(SEED, 8))
def test_damaged_netlog_never_a_traceback(tmp_path, data):
    p = tmp_path / "x.json"
    p.write_bytes(data)
    hostile.loads_or_refuses(p)


json_values = hostile.json_values([
    "source", "id", "type", "time", "phase", "params", "source_dependency", "headers",
    "byte_count", "url", "net_error", "stream_id", "local_address", "remote_address"])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(json_values, max_size=8), types=st.lists(st.integers(0, 700), max_size=8),
       params=st.lists(json_values, max_size=8))
def test_odd_netlog_events_never_a_traceback(tmp_path, events, types, params):
    doc, _ = raw()
    sources = [e["source"] for e in doc["events"][:40]]
    made = [{"time": str(1061909 + i), "source": src, "type": ty, "phase": i % 3, "params": p}
            for i, (src, ty, p) in enumerate(zip(sources, types, params))]
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"constants": doc["constants"], "events": doc["events"][:200] + made + events}))
    hostile.loads_or_refuses(p)


def test_cli_says_one_line_for_a_broken_netlog(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"constants": {"logEventTypes": {"A": 1}}, "events": "nope"}')
    assert "not a Chrome NetLog" in hostile.cli_error_line("requests", p)
