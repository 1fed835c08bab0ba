"""DevTools logs and traces as real ones come: events recorded twice, requests answered
but never seen sent.  One row per request hop, never a copy, never a silent drop."""

from __future__ import annotations

import json

import traceviz


def _rwbs(rid, url, ts, redirect=None):
    p = {"requestId": rid, "loaderId": rid, "request": {"url": url, "method": "GET"}, "timestamp": ts,
         "wallTime": 1_700_000_000 + ts, "type": "Document" if rid == "R0" else "Script"}
    if redirect:
        p["redirectResponse"] = redirect
    return {"method": "Network.requestWillBeSent", "params": p}


def _response(status, url, t):
    return {"url": url, "status": status, "protocol": "h2", "connectionId": 7,
            "timing": {"requestTime": t, "sendStart": 1, "sendEnd": 1.5, "receiveHeadersEnd": 5 + status % 7}}


def _chain(i: int) -> list[dict]:
    """Request R<i>: http://a -> 301 -> https://a -> 302 -> https://b -> 200 (three hops, one id)."""
    rid, t = f"R{i}", 1.0 + i
    return [_rwbs(rid, f"http://a.test/{i}", t),
            _rwbs(rid, f"https://a.test/{i}", t + 0.1, _response(301, f"http://a.test/{i}", t)),
            _rwbs(rid, f"https://b.test/{i}", t + 0.2, _response(302, f"https://a.test/{i}", t + 0.1)),
            {"method": "Network.responseReceived", "params": {"requestId": rid, "timestamp": t + 0.3, "type": "Script",
                                                              "response": _response(200, f"https://b.test/{i}", t + 0.2)}},
            {"method": "Network.loadingFinished", "params": {"requestId": rid, "timestamp": t + 0.4,
                                                             "encodedDataLength": 100}}]


def test_protocol_log_recorded_twice_gives_one_row_per_hop(tmp_path):
    """Every message twice (two sessions' copies, interleaved or in blocks): 5 redirect chains
    are still 15 hops, each with its own status and timing, and the copies are said."""
    once = [m for i in range(5) for m in _chain(i)]
    for copies in ([m for m in once for _ in (0, 1)], once + once):
        p = tmp_path / "twice.json"
        p.write_text(json.dumps(copies))
        tl = traceviz.load(p)
        rq = tl.requests
        assert len(rq) == 15
        assert sorted(rq["url"]) == sorted(m["params"]["request"]["url"] for m in once
                                           if m["method"] == "Network.requestWillBeSent")
        assert sorted(rq["status"].tolist()) == [200] * 5 + [301] * 5 + [302] * 5
        assert rq["request_id"].is_unique
        assert any("25 messages repeated" in w for w in tl.warnings)


def test_protocol_log_response_without_request_is_kept_and_said(tmp_path):
    msgs = [m for m in _chain(0)] + [
        {"method": "Network.responseReceived", "params": {"requestId": "late", "timestamp": 3.0, "type": "Image",
                                                          "response": _response(404, "https://c.test/x.png", 2.5)}},
        {"method": "Network.loadingFinished", "params": {"requestId": "late", "timestamp": 3.1, "encodedDataLength": 9}},
    ]
    p = tmp_path / "late.json"
    p.write_text(json.dumps(msgs))
    tl = traceviz.load(p)
    late = tl.requests[tl.requests["request_id"] == "late"]
    assert late["url"].tolist() == ["https://c.test/x.png"] and late["status"].tolist() == [404]
    assert any("1 requests have a response but no requestWillBeSent" in w for w in tl.warnings)


def _trace_event(name, ts_us, **data):
    return {"name": name, "ph": "X", "ts": ts_us, "pid": 1, "tid": 1, "cat": "devtools.timeline",
            "args": {"data": data}}


def test_trace_response_without_send_request_is_kept_and_said(tmp_path):
    events = [
        _trace_event("ResourceSendRequest", 1_000_000, requestId="1", url="https://a.test/", requestMethod="GET"),
        _trace_event("ResourceReceiveResponse", 1_050_000, requestId="1", statusCode=200, responseTime=1.7e12,
                     timing={"requestTime": 1.0, "receiveHeadersEnd": 40}),
        _trace_event("ResourceFinish", 1_060_000, requestId="1", finishTime=1.06, encodedDataLength=10),
        # sent before tracing began: only its response and finish are in the trace
        _trace_event("ResourceReceiveResponse", 1_100_000, requestId="2", statusCode=304, responseTime=1.7e12,
                     timing={"requestTime": 0.9, "receiveHeadersEnd": 150}),
        _trace_event("ResourceFinish", 1_120_000, requestId="2", finishTime=1.12, encodedDataLength=0),
    ]
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"traceEvents": events}))
    tl = traceviz.load(p)
    rq = tl.requests.set_index("request_id")
    assert set(rq.index) == {"1", "2"}
    assert rq.loc["2", "status"] == 304
    assert any("1 requests have a ResourceReceiveResponse but no ResourceSendRequest" in w for w in tl.warnings)


def test_trace_recorded_twice_gives_one_row(tmp_path):
    events = [
        _trace_event("ResourceSendRequest", 1_000_000, requestId="1", url="https://a.test/", requestMethod="GET"),
        _trace_event("ResourceReceiveResponse", 1_050_000, requestId="1", statusCode=200,
                     timing={"requestTime": 1.0, "receiveHeadersEnd": 40}),
        _trace_event("ResourceFinish", 1_060_000, requestId="1", finishTime=1.06, encodedDataLength=10),
    ]
    p = tmp_path / "t2.json"
    p.write_text(json.dumps({"traceEvents": events + events}))
    tl = traceviz.load(p)
    assert len(tl.requests) == 1
