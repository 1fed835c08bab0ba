"""HAR reader against the corpus MANIFEST (counts written by the corpus tool from the raw files)."""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from traceviz.assemble.browser import PHASES, load_browser
from traceviz.errors import InputError


def _manifest(corpus: Path) -> dict:
    return json.loads((corpus / "MANIFEST.json").read_text())["files"]


def _hars(corpus: Path):
    return [(name, facts) for name, facts in _manifest(corpus).items()
            if name.startswith("har/") and facts.get("kind") == "har"]


def _raw_entries(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".harp":
        text = text[text.index("(") + 1: text.rindex(")")]
    return json.loads(text)["log"]["entries"]


@pytest.fixture(scope="module")
def loaded(corpus):
    return {name: (facts, load_browser(corpus / name)) for name, facts in _hars(corpus)}


def test_every_har_is_in_the_corpus(loaded):
    assert len(loaded) >= 12


def test_request_counts_methods_and_statuses(loaded):
    for name, (facts, tl) in loaded.items():
        r = tl.requests
        assert len(r) == facts["entries"], name
        assert r["source"].eq("har").all(), name
        assert dict(Counter(r["method"])) == facts["methods"], name
        # HAR status 0 means "no response": NA in our table.
        ours = Counter("0" if pd.isna(s) else str(int(s)) for s in r["status"])
        assert dict(ours) == facts["status_codes"], name


def test_protocols(loaded):
    norm = {"HTTP/1.1": "http/1.1", "http/1.1": "http/1.1", "h2": "h2", "HTTP/2.0": "h2",
            "http/2.0": "h2", "unknown": None}
    for name, (facts, tl) in loaded.items():
        r = tl.requests
        assert dict(Counter(r["http_version"])) == facts["http_versions"], name
        want = Counter()
        for v, n in facts["http_versions"].items():
            if norm[v] is not None:
                want[norm[v]] += n
        assert dict(Counter(r["protocol"].dropna())) == dict(want), name
        assert tl.source.detail["protocols"] == dict(want), name


def test_pages_and_page_timings(loaded, corpus):
    for name, (facts, tl) in loaded.items():
        pages = tl.source.detail["pages"]
        assert len(pages) == facts["pages"], name
    # ff47 writes -1 for both timings: absent, not zero.
    ff = loaded["har/ff47__harviewer_issue-23.har"][1].source.detail["pages"][0]
    assert ff["onContentLoad"] is None and ff["onLoad"] is None
    ch = loaded["har/chrome51__harviewer_issue-23.har"][1].source.detail["pages"][0]
    assert ch["onContentLoad"] == pytest.approx(1096.5930000002118)
    # 2016-06-24T18:06:38.604Z + 3550.005 ms
    assert ch["load"] == pytest.approx(1466791598.604 + 3.550005, abs=1e-6)
    multi = loaded["har/firebug-multiple-pages__harviewer.har"][1]
    assert [p["id"] for p in multi.source.detail["pages"]] == ["page_41065", "page_5351", "page_51862"]
    assert multi.requests["page"].notna().all()


def test_total_time_and_start(loaded, corpus):
    for name, (facts, tl) in loaded.items():
        r = tl.requests
        total_ms = ((r["end"] - r["start"]) * 1000).sum()
        assert total_ms == pytest.approx(facts["sum_entry_time_ms"], abs=0.01), name
        assert r["start"].between(1.2e9, 1.9e9).all(), name     # epoch seconds, 2008..2030
    # A +01:00 offset is honoured: 2016-06-24T19:22:01.906+01:00 == 18:22:01.906Z
    ff = loaded["har/ff47__harviewer_issue-23.har"][1].requests
    assert ff["start"].iloc[0] == pytest.approx(1466792521.906, abs=1e-6)


def _har_phase_sum(t: dict, ssl_in_connect: bool) -> float:
    s = sum(v for k, v in t.items() if k in ("blocked", "dns", "connect", "send", "wait", "receive") and v >= 0)
    if not ssl_in_connect and t.get("ssl", -1) >= 0:
        s += t["ssl"]
    return s


def test_phases_add_up_to_entry_time(loaded, corpus):
    """Our phases (connect without TLS, TLS apart) add up to each entry's ``time``.

    Some exporters leave time between phases unattributed (Browsertime's Chrome
    HARs: queueing before ``requestTime``); there the sum equals the HAR's own
    phase sum and the rest is in ``unattributed``.
    """
    checked = exact = 0
    for name, (facts, tl) in loaded.items():
        raw = _raw_entries(corpus / name)
        ours = tl.requests
        # ssl > connect cannot be "included": that exporter (Firefox 111) writes it apart.
        separate = any(e["timings"].get("ssl", -1) > e["timings"].get("connect", -1) for e in raw)
        for e, (_, row) in zip(raw, ours.iterrows()):
            t = e["timings"]
            har_sum = _har_phase_sum(t, ssl_in_connect=not separate)
            our_sum = sum(0 if math.isnan(row[p]) else row[p] for p in PHASES) * 1000
            assert our_sum == pytest.approx(har_sum, abs=1e-6), (name, e["request"]["url"])
            assert our_sum + row["unattributed"] * 1000 == pytest.approx(e["time"], abs=1e-6)
            if abs(har_sum - e["time"]) < 0.01:
                exact += 1
                assert our_sum == pytest.approx(e["time"], abs=0.01)
            checked += 1
    assert checked == sum(f["entries"] for f, _ in loaded.values())
    assert exact >= 40


def test_tls_is_split_out_of_connect(loaded):
    # Chrome: connect 96.754 includes ssl 55.379 -> ours 41.375 + 55.379.
    r = loaded["har/chrome-with-bom__mitmproxy_with-bom.har"][1].requests.iloc[0]
    assert r["connect"] * 1000 == pytest.approx(96.754 - 55.379)
    assert r["tls"] * 1000 == pytest.approx(55.379)
    assert r["reused_connection"] == False  # noqa: E712  (pandas boolean)
    # Firefox 111 writes ssl (35.33) apart from connect (31.69): keep both as they are.
    f = loaded["har/firefox111-h2-head__mitmproxy_head-content-length.har"][1].requests.iloc[0]
    assert f["connect"] * 1000 == pytest.approx(31.686782836914062)
    assert f["tls"] * 1000 == pytest.approx(35.33315658569336)
    assert math.isnan(f["blocked"]) and math.isnan(f["dns"])     # not written: absent
    # -1 is absent: NaN, never zero.
    ins = loaded["har/insomnia__mitmproxy.har"][1].requests.iloc[0]
    assert math.isnan(ins["blocked"]) and math.isnan(ins["dns"]) and math.isnan(ins["connect"])
    assert ins["ttfb"] * 1000 == pytest.approx(70.402)


def test_connections_from_ids(loaded):
    """Chrome's ``connection`` is a socket id: one connection per distinct id."""
    for name, (facts, tl) in loaded.items():
        r, c = tl.requests, tl.connections
        firefox = "firefox" in (tl.source.detail["creator"] or "").lower()
        ids = r["connection_id"].dropna()
        if firefox:
            # Firefox writes the server *port* in ``connection``: not an id, so inferred.
            assert ids.empty and (c["inferred"].all() if len(c) else True), name
            continue
        assert ids.nunique() == facts["distinct_connection_ids"], name
        assert (~c["inferred"]).sum() == facts["distinct_connection_ids"], name
        assert r["server_ip"].nunique() == facts["distinct_server_ips"], name
        if facts["max_entries_per_connection_id"]:
            assert c.loc[~c["inferred"], "requests"].max() == facts["max_entries_per_connection_id"], name


def test_failed_requests_are_kept(loaded):
    r = loaded["har/chrome51-failed-requests__harviewer_issue-49.har"][1].requests
    failed = r[r["status"].isna()]
    assert len(failed) == 3
    assert failed["error"].notna().all()
    assert failed["conn"].isna().all()            # never reached a server
    assert failed["ttfb"].isna().all()


def test_relative_urls_take_the_host_header(loaded):
    r = loaded["har/chrome51__harviewer_issue-23.har"][1].requests
    assert r["url"].iloc[1].startswith("/")
    assert list(r["host"]) == ["stevesouders.com"] * 3


def test_gzip_bom_and_jsonp(corpus, tmp_path):
    src = corpus / "har/chrome-h2__pagexray_http2-chrome.har"
    gz = tmp_path / "x.har.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    a, b = load_browser(src), load_browser(gz)
    assert b.source.compressed and not a.source.compressed
    pd.testing.assert_frame_equal(a.requests, b.requests)
    bom = load_browser(corpus / "har/chrome-with-bom__mitmproxy_with-bom.har")
    assert len(bom.requests) == 1
    harp = load_browser(corpus / "har/harp-jsonp__harviewer_1.harp")
    assert harp.source.detail["jsonp"] == "onInputData"
    assert harp.requests["url"].iloc[0] == "http://legoas/har/viewer/selenium/tests/simplePage.html"


def test_broken_json_names_file_line_and_column(corpus):
    path = corpus / "har/corrupt__mitmproxy_brokenfile.har"
    with pytest.raises(InputError) as e:
        load_browser(path)
    # '{"log":\n[\n    2,1,3\n]\n"request:"}': the missing comma is before line 5's first character.
    assert str(path) in str(e.value)
    assert "line 5, column 1" in str(e.value)


def test_broken_jsonp_keeps_true_line_numbers(tmp_path):
    p = tmp_path / "x.harp"
    # the stray comma is column 17 of line 3, counted in the file as written
    p.write_text('onInputData({\n  "log": {\n    "entries": [,]\n  }\n})')
    with pytest.raises(InputError, match=r"line 3, column 17"):
        load_browser(p)


@pytest.mark.parametrize("content", [b"", b"   \n", b"{}", b"[]", b"[1, 2, 3]", b'{"log": {}}',
                                     b'"just a string"', b"\x00\x01\xfe\xff" * 64, b"null"])
def test_wrong_kind_files_are_input_errors(tmp_path, content):
    p = tmp_path / "bad.har"
    p.write_bytes(content)
    with pytest.raises(InputError) as e:
        load_browser(p)
    assert str(p) in str(e.value)


def test_a_pcap_is_not_a_browser_export(corpus):
    pcap = next((corpus / "pcap").rglob("*.pcap"))
    with pytest.raises(InputError) as e:
        load_browser(pcap)
    assert str(pcap) in str(e.value)


def test_gzip_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACEVIZ_MAX_JSON_BYTES", str(1 << 20))
    p = tmp_path / "bomb.har.gz"
    p.write_bytes(gzip.compress(b'{"log": {"entries": [' + b" " * (8 << 20) + b"]}}"))
    with pytest.raises(InputError, match="refusing"):
        load_browser(p)


def _entry(url, start, time_ms, connect=-1, ssl=-1, http="HTTP/1.1", status=200, body="x"):
    return {
        "startedDateTime": start, "time": time_ms,
        "request": {"method": "GET", "url": url, "httpVersion": http, "headers": [],
                    "headersSize": 100, "bodySize": 0},
        "response": {"status": status, "httpVersion": http, "headers": [], "headersSize": 50,
                     "bodySize": len(body), "content": {"size": len(body), "mimeType": "text/html",
                                                        "text": body}},
        "timings": {"blocked": 0, "dns": -1, "connect": connect, "ssl": ssl, "send": 1,
                    "wait": time_ms - 2 - max(connect, 0), "receive": 1},
    }


def test_connections_inferred_from_timing(tmp_path):
    """No ids: a handshake opens a connection; HTTP/1.1 reuses only a free one, h2 any."""
    e = [
        _entry("https://a.example/1", "2024-01-01T00:00:00.000Z", 100, connect=30, ssl=20),
        _entry("https://a.example/2", "2024-01-01T00:00:00.200Z", 50),                       # reuses #1
        _entry("https://a.example/3", "2024-01-01T00:00:00.210Z", 80, connect=25, ssl=15),   # new
        _entry("https://a.example/4", "2024-01-01T00:00:00.220Z", 40),                       # both busy: new
        _entry("https://b.example/1", "2024-01-01T00:00:00.000Z", 90, connect=30, ssl=20, http="h2"),
        _entry("https://b.example/2", "2024-01-01T00:00:00.010Z", 90, http="h2"),            # multiplexed
        _entry("https://b.example/3", "2024-01-01T00:00:00.020Z", 90, http="h2"),
    ]
    p = tmp_path / "x.har"
    p.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "t"}, "entries": e}}))
    tl = load_browser(p)
    conn = list(tl.requests["conn"])
    assert conn[0] == conn[1]
    assert len({conn[0], conn[2], conn[3]}) == 3
    assert conn[4] == conn[5] == conn[6]
    assert len(tl.connections) == 4
    assert tl.connections["inferred"].all()
    assert list(tl.connections["requests"].sort_values()) == [1, 1, 2, 3]
    assert list(tl.requests["reused_connection"]) == [False, True, False, True, False, True, True]
    # bodies were dropped while parsing, their length kept out of the way
    assert "text" not in json.dumps(tl.source.detail)


def test_many_entries(tmp_path):
    n = 3000
    e = [_entry(f"https://h{i % 7}.example/{i}", f"2024-01-01T00:00:{i % 60:02d}.{i % 1000:03d}Z", 10 + i % 50,
                status=200 if i % 10 else 404, body="y" * 2000) for i in range(n)]
    p = tmp_path / "big.har"
    p.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "t"}, "entries": e}}))
    r = load_browser(p).requests
    assert len(r) == n
    assert (r["status"] == 404).sum() == n // 10
    assert r["host"].nunique() == 7


def test_webpagetest_and_playwright_fields(tmp_path):
    """WebPageTest names the socket ``_socket`` and the address ``_ip_addr``; Playwright ``_serverPort``."""
    e1 = _entry("https://w.example/a", "2024-01-01T00:00:00.000Z", 100, connect=30, ssl=20)
    e1.update({"_socket": 7, "_ip_addr": "192.0.2.7"})
    e2 = _entry("https://w.example/b", "2024-01-01T00:00:00.150Z", 40)
    e2.update({"_socket": 7, "_ip_addr": "192.0.2.7"})
    e3 = _entry("https://w.example/c", "2024-01-01T00:00:00.150Z", 90, connect=30, ssl=20)
    e3.update({"_socket": 8, "_ip_addr": "192.0.2.7", "_serverPort": 8443})
    p = tmp_path / "wpt.har"
    p.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "WebPagetest"}, "entries": [e1, e2, e3]}}))
    tl = load_browser(p)
    assert list(tl.requests["conn"]) == [0, 0, 1]
    assert list(tl.connections["server"]) == ["192.0.2.7:443", "192.0.2.7:8443"]
    assert not tl.connections["inferred"].any()


def test_double_counted_tls_in_time(tmp_path):
    """Playwright: ssl inside connect, and ``time`` adds it again; the end is the phases' end."""
    e = _entry("https://p.example/", "2024-01-01T00:00:00.000Z", 0, connect=116, ssl=66)
    e["timings"] = {"dns": 0, "connect": 116, "ssl": 66, "send": 0, "wait": 93, "receive": 14}
    e["time"] = 0 + 116 + 66 + 0 + 93 + 14
    p = tmp_path / "pw.har"
    p.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "Playwright"}, "entries": [e]}}))
    tl = load_browser(p)
    r = tl.requests.iloc[0]
    assert r["connect"] == pytest.approx(0.050) and r["tls"] == pytest.approx(0.066)
    assert r["end"] - r["start"] == pytest.approx(0.223)
    assert any("twice" in w for w in tl.warnings)


def test_other_json_kinds_are_named(corpus):
    qlog = next((corpus / "qlog").glob("*.qlog"), None)
    if qlog is None:
        pytest.skip("no qlog in the corpus")
    with pytest.raises(InputError, match="qlog") as e:
        load_browser(qlog)
    assert str(qlog) in str(e.value)


def test_integers_too_long_for_a_float_are_absent(tmp_path):
    """JSON allows an integer of any length; a time or size of 10**400 is absent, never a traceback."""
    huge = "1" + "0" * 400
    e = _entry("https://h.example/", "2024-01-01T00:00:00.000Z", 100)
    text = json.dumps({"log": {"version": "1.2", "creator": {"name": "t"}, "entries": [e]}})
    text = text.replace('"time": 100', f'"time": {huge}').replace('"bodySize": 1', f'"bodySize": {huge}')
    p = tmp_path / "huge.har"
    p.write_text(text)
    r = load_browser(p).requests.iloc[0]
    assert r["status"] == 200
    # time unreadable: the entry ends where its phases end (blocked 0 + send 1 + wait 98 + receive 1 ms)
    assert r["end"] - r["start"] == pytest.approx(0.100)
    assert pd.isna(r["resp_bytes"])     # the body's size is absent, so the response's is unknown
    assert r["req_bytes"] == 100        # headersSize 100 + bodySize 0, untouched


def test_a_connection_of_other_digits_is_an_id_not_a_port():
    """Firefox's port-in-``connection`` is ASCII digits: ``"\u00b2"`` passes ``str.isdigit`` but not ``float``."""
    from traceviz.sources.har import har_from_json
    entry = {"startedDateTime": "2026-12-03T04:00:00.000Z", "time": 10,
             "request": {"method": "GET", "url": "http://h.test/", "headers": []},
             "response": {"status": 200, "headers": [], "content": {"size": 0}},
             "timings": {"send": 1, "wait": 8, "receive": 1}}
    log = har_from_json("t.har", {"log": {"version": "1.2", "creator": {"name": "Firefox", "version": "120"},
                                          "entries": [{**entry, "connection": "\u00b2"},
                                                      {**entry, "connection": "443"}]}})
    odd, port = log.entries
    assert odd.connection == "\u00b2" and math.isnan(odd.server_port)
    assert (port.connection, port.server_port) == (None, 443)
