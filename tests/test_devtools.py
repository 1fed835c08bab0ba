"""DevTools traces and protocol logs against the corpus MANIFEST and against each other."""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from traceviz.assemble.browser import load_browser
from traceviz.errors import InputError


def _manifest(corpus: Path) -> dict:
    return json.loads((corpus / "MANIFEST.json").read_text())["files"]


def _of_kind(corpus: Path, kind: str):
    return [(n, f) for n, f in _manifest(corpus).items() if n.startswith("devtools/") and f["kind"] == kind]


def _raw(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def traces(corpus):
    return {n: (f, load_browser(corpus / n)) for n, f in _of_kind(corpus, "devtools-trace")}


@pytest.fixture(scope="module")
def logs(corpus):
    return {n: (f, load_browser(corpus / n)) for n, f in _of_kind(corpus, "devtools-protocol-log")}


def test_corpus_has_traces_and_logs(traces, logs):
    assert len(traces) >= 3 and len(logs) >= 4


def test_trace_counts(traces):
    for name, (facts, tl) in traces.items():
        r = tl.requests
        assert tl.source.format == "devtools-trace"
        assert r["source"].eq("devtools-trace").all()
        assert len(r) == facts["distinct_request_ids"], name
        assert r["request_id"].is_unique, name
        codes = Counter(str(int(s)) for s in r["status"].dropna())
        assert dict(codes) == facts["response_status_codes"], name
        assert dict(Counter(r["protocol"].dropna())) == facts["response_protocols"], name
        # requests still pending when tracing stopped are kept and marked
        finished = facts["network_event_counts"].get("ResourceFinish", 0)
        assert int(r["pending"].sum()) == facts["distinct_request_ids"] - finished, name
        assert r.loc[r["pending"], "end"].isna().all(), name


def test_log_counts(logs, corpus):
    for name, (facts, tl) in logs.items():
        r = tl.requests
        m = facts["network_method_counts"]
        assert tl.source.format == "devtools-log"
        assert len(r) == facts["distinct_request_ids"], name
        assert r["request_id"].is_unique, name
        http = r[r["resource_type"] != "WebSocket"]
        codes = Counter(str(int(s)) for s in http["status"].dropna())
        assert dict(codes) == facts["response_status_codes"], name
        assert dict(Counter(r["protocol"].dropna())) == facts["response_protocols"], name
        assert r["error"].notna().sum() == m.get("Network.loadingFailed", 0), name
        assert (r["resource_type"] == "WebSocket").sum() == m.get("Network.webSocketCreated", 0), name
        # one connection per distinct connectionId (0 means "none": QUIC, cache)
        raw = _raw(corpus / name)
        ids = {str(x["params"]["response"].get("connectionId")) for x in raw
               if x.get("method") == "Network.responseReceived"
               and x["params"]["response"].get("connectionId") not in (None, 0)}
        c = tl.connections
        assert (~c["inferred"]).sum() == len(ids), name
        assert set(c.loc[~c["inferred"], "connection_id"]) == ids, name


def test_page_milestones(logs, traces):
    for name, (facts, tl) in {**logs, **traces}.items():
        pages = tl.source.detail["pages"]
        assert len(pages) == 1, name
    # frame-metrics: Page.domContentEventFired 10327.793368, loadEventFired 10327.876108,
    # navigation requestWillBeSent at 10327.18836 (wallTime 1612207126.104421)
    p = logs["devtools/frame-metrics-m90__lighthouse.devtoolslog.json"][1].source.detail["pages"][0]
    assert p["onContentLoad"] == pytest.approx((10327.793368 - 10327.18836) * 1000, abs=1e-3)
    assert p["onLoad"] == pytest.approx((10327.876108 - 10327.18836) * 1000, abs=1e-3)
    assert p["start"] == pytest.approx(1612207126.104421, abs=1e-3)


@pytest.mark.parametrize("stem", ["frame-metrics-m90__lighthouse", "intercom-widget__lighthouse",
                                  "cutoff-load-m83__lighthouse"])
def test_trace_and_log_of_one_load_agree(corpus, stem):
    """Lighthouse recorded the trace and the protocol log of the same load."""
    files = {p.name.split(".")[1]: p for p in (corpus / "devtools").glob(stem + ".*")}
    trace, log = load_browser(files["trace"]), load_browser(files["devtoolslog"])
    t = trace.requests.set_index("request_id")
    g = log.requests[log.requests["resource_type"] != "WebSocket"].set_index("request_id")
    common = t.index.intersection(g.index)
    assert len(common) == len(t)               # every traced request is in the log
    both = t.loc[common, "status"].notna() & g.loc[common, "status"].notna()
    assert (t.loc[common, "status"][both] == g.loc[common, "status"][both]).all()
    assert (t.loc[common, "url"] == g.loc[common, "url"]).all()
    # same network timing => same wait phase
    w = t.loc[common, "wait"].notna() & g.loc[common, "wait"].notna()
    assert w.sum() >= 3
    assert (t.loc[common, "wait"][w] - g.loc[common, "wait"][w]).abs().max() < 1e-6
    if trace.source.detail["clock"] == "wall":
        # the trace's clock, mapped to epoch from responseTime, agrees with the log's
        # wallTime: every first response byte lands within 2 ms in both
        both = t.loc[common, "ttfb"].notna() & g.loc[common, "ttfb"].notna()
        t_first = (t.loc[common, "start"] + t.loc[common, "ttfb"])[both]
        g_first = (g.loc[common, "start"] + g.loc[common, "ttfb"])[both]
        assert (t_first - g_first).abs().max() < 0.002
    else:
        assert any("monotonic" in w for w in trace.warnings)


def test_chrome_timing_to_phases(logs):
    """sitespeed perflog, first request: timing in ms after requestTime 85890.905348."""
    r = logs["devtools/sitespeed-chrome66__chrome-har_perflog.json"][1].requests.iloc[0]
    assert r["dns"] * 1000 == pytest.approx(15.793 - 0.374)
    assert r["tls"] * 1000 == pytest.approx(87.863 - 49.124)
    assert r["connect"] * 1000 == pytest.approx((87.876 - 15.793) - (87.863 - 49.124))
    assert r["send"] * 1000 == pytest.approx(88.42 - 88.267)
    assert r["wait"] * 1000 == pytest.approx(124.329 - 88.42)
    assert r["reused_connection"] == False  # noqa: E712
    assert r["server_ip"] == "35.159.21.47" and r["protocol"] == "h2"


def test_chromedriver_performance_log_and_bare_trace_array(corpus, tmp_path):
    src = corpus / "devtools/sitespeed-chrome66__chrome-har_perflog.json"
    raw = _raw(src)
    wrapped = [{"level": "INFO", "timestamp": 0,
                "message": json.dumps({"message": m, "webview": "X"})} for m in raw]
    p = tmp_path / "perf.json"
    p.write_text(json.dumps(wrapped))
    pd.testing.assert_frame_equal(load_browser(src).requests, load_browser(p).requests)
    tsrc = corpus / "devtools/frame-metrics-m90__lighthouse.trace.json"
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(_raw(tsrc)["traceEvents"]))
    pd.testing.assert_frame_equal(load_browser(tsrc).requests, load_browser(bare).requests)


def test_redirects_become_hops(tmp_path):
    msgs = [
        {"method": "Network.requestWillBeSent", "params": {
            "requestId": "1", "timestamp": 10.0, "wallTime": 1700000000.0, "type": "Document",
            "request": {"url": "http://a.example/", "method": "GET"}}},
        {"method": "Network.requestWillBeSent", "params": {
            "requestId": "1", "timestamp": 10.1, "wallTime": 1700000000.1, "type": "Document",
            "request": {"url": "https://a.example/", "method": "GET"},
            "redirectResponse": {"status": 301, "protocol": "http/1.1", "connectionId": 5,
                                 "timing": {"requestTime": 10.0, "sendStart": 1, "sendEnd": 2,
                                            "receiveHeadersEnd": 90}}}},
        {"method": "Network.responseReceived", "params": {
            "requestId": "1", "timestamp": 10.3, "type": "Document",
            "response": {"status": 200, "protocol": "h2", "connectionId": 6,
                         "timing": {"requestTime": 10.1, "sendStart": 1, "sendEnd": 2,
                                    "receiveHeadersEnd": 150}}}},
        {"method": "Network.loadingFinished", "params": {"requestId": "1", "timestamp": 10.4,
                                                         "encodedDataLength": 1000}},
    ]
    p = tmp_path / "log.json"
    p.write_text(json.dumps(msgs))
    r = load_browser(p).requests
    assert list(r["status"]) == [301, 200]
    assert list(r["request_id"]) == ["1:redirect0", "1"]
    assert r["end"].iloc[0] == pytest.approx(1700000000.1)
    assert r["ttfb"].iloc[1] == pytest.approx(0.150)
    assert r["resp_bytes"].iloc[1] == 1000
    assert list(r["conn"]) == [0, 1]


def test_not_devtools(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps([{"method": "Debugger.paused", "params": {}}] * 3))
    with pytest.raises(InputError, match="Network"):
        load_browser(p)
    q = tmp_path / "y.json"
    q.write_text(json.dumps({"traceEvents": []}))
    with pytest.raises(InputError) as e:
        load_browser(q)
    assert str(q) in str(e.value)


def test_integers_too_long_for_a_float_are_absent(tmp_path):
    """A timing field or stamp of 10**400 is absent (JSON integers have no length limit)."""
    huge = "1" + "0" * 400
    p = tmp_path / "log.json"
    p.write_text(f"""[
 {{"method": "Network.requestWillBeSent", "params": {{"requestId": "1", "timestamp": 10.0, "wallTime": 1700000000.0,
   "type": "Document", "request": {{"url": "https://a.example/", "method": "GET"}}}}}},
 {{"method": "Network.responseReceived", "params": {{"requestId": "1", "timestamp": 10.3, "type": "Document",
   "response": {{"status": 200, "protocol": "h2", "connectionId": 6,
                "timing": {{"requestTime": 10.0, "sendStart": {huge}, "sendEnd": 2, "receiveHeadersEnd": 150}}}}}}}},
 {{"method": "Network.loadingFinished", "params": {{"requestId": "1", "timestamp": {huge}, "encodedDataLength": {huge}}}}}
]""")
    r = load_browser(p).requests.iloc[0]
    assert r["status"] == 200 and r["protocol"] == "h2"
    assert math.isnan(r["send"])                              # sendStart unreadable
    assert r["wait"] == pytest.approx(0.148)                  # receiveHeadersEnd - sendEnd
    assert math.isnan(r["end"]) and pd.isna(r["resp_bytes"])
