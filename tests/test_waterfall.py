"""The waterfall: one bar segment per present phase per request, escaped text, HTML and PNG output."""

from __future__ import annotations

import json
import math
import re
import struct

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from traceviz.charts import export
from traceviz.charts.waterfall import PHASE_COLUMNS, waterfall
from traceviz.assemble.browser import load_browser
from traceviz.model import conform

HAR = "har/chrome-http11__pagexray_http1.1-chrome.har"


def _bars(fig: go.Figure) -> dict[str, go.Bar]:
    return {t.meta: t for t in fig.data if isinstance(t, go.Bar)}


@pytest.fixture(scope="module")
def har(corpus):
    return load_browser(corpus / HAR)


def test_one_segment_per_present_phase(har):
    r = har.requests
    fig = waterfall(r, har.source.detail["pages"])
    bars = _bars(fig)
    for p in PHASE_COLUMNS:
        present = r[p].fillna(0) > 0
        got = len(bars[p].x) if p in bars else 0
        assert got == int(present.sum()), p
        if got:
            assert sorted(np.round(bars[p].x, 6)) == sorted(np.round(r.loc[present, p] * 1000, 6))
    # segments of one request are contiguous and in phase order, starting at its start
    t0 = r["start"].min()
    rows = {}
    for p in ("unattributed",) + PHASE_COLUMNS:
        if p in bars:
            for y, base, x in zip(bars[p].y, bars[p].base, bars[p].x):
                rows.setdefault(y, []).append((base, x))
    assert len(rows) == len(r)
    for segs in rows.values():
        for (b1, x1), (b2, _) in zip(segs, segs[1:]):
            assert b2 == pytest.approx(b1 + x1)
    firsts = sorted(min(b for b, _ in segs) for segs in rows.values())
    assert firsts == pytest.approx(sorted((r["start"] - t0) * 1000))


def test_milestones_and_connection_grouping(har):
    r, pages = har.requests, har.source.detail["pages"]
    fig = waterfall(r, pages)
    lines = {t.name.split()[0]: t for t in fig.data if isinstance(t, go.Scatter) and t.mode == "lines"}
    t0 = r["start"].min()
    assert lines["DOMContentLoaded"].x[0] == pytest.approx((pages[0]["dom_content_loaded"] - t0) * 1000)
    assert lines["load"].x[0] == pytest.approx(pages[0]["onLoad"] + (pages[0]["start"] - t0) * 1000)
    # grouped by connection: each connection's rows are adjacent
    labels = fig.layout.yaxis.ticktext
    conns = [int(l.split()[0].rstrip("\u25cf\u25cb\u2502")) for l in labels]
    seen, last = set(), None
    for c in conns:
        assert c == last or c not in seen
        seen.add(c)
        last = c
    assert len(fig.layout.shapes) >= 1         # alternate connection bands


def test_capture_requests_table_only_has_start_ttfb_end():
    r = conform("requests", pd.DataFrame({
        "request": [0, 1, 2], "conn": [0, 0, 1], "protocol": ["http/1.1"] * 3, "method": ["GET"] * 3,
        "host": ["a.example"] * 3, "url": ["/a", "/b", "/c"], "status": [200, 200, 502],
        "start": [100.0, 100.5, 100.7], "ttfb": [0.2, 0.1, 0.3], "end": [100.4, 100.9, math.nan],
        "source": ["pcap"] * 3}))
    fig = waterfall(r)
    bars = _bars(fig)
    assert list(bars["wait"].x) == pytest.approx([200, 100, 300])
    assert list(bars["receive"].x) == pytest.approx([200, 300])
    assert set(bars) == {"wait", "receive"}


def _hostile() -> pd.DataFrame:
    evil = "https://evil.example/<script>alert(1)</script>?q=<img src=x onerror=alert(2)>"
    return conform("requests", pd.DataFrame({
        "request": [0, 1], "conn": [0, 0], "protocol": ["h2", "<b>h9</b>"], "method": ["GET", "<i>"],
        "host": ["evil.example", "<svg onload=alert(3)>"], "url": [evil, "https://b.example/$x$"],
        "status": [200, 200], "start": [1.0, 1.1], "ttfb": [0.05, 0.05], "end": [1.1, 1.2],
        "wait": [0.05, 0.05], "receive": [0.05, 0.05], "source": ["har", "har"]}))


def test_hover_and_labels_are_escaped():
    fig = waterfall(_hostile())
    text = json.dumps(fig.to_plotly_json(), default=str)
    for raw in ("<script>", "<img src", "<svg onload", "<b>h9</b>", "<i>"):
        assert raw not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&#36;x&#36;" in text        # no MathJax
    html = export.to_html(fig)
    assert "<script>alert(1)" not in html and "<svg onload" not in html


def test_html_is_self_contained(har, tmp_path):
    path = export.write(waterfall(har.requests, har.source.detail["pages"]), tmp_path / "w.html")
    page = path.read_text()
    assert not re.search(r"<script[^>]+src=", page)          # nothing fetched from a CDN
    assert "Plotly.newPlot" in page and len(page) > 3_000_000       # plotly.js inline


def test_png(har, tmp_path):
    if export.browser() is None:
        pytest.skip("no Chrome/Chromium for kaleido (apt-get install chromium)")
    try:
        path = export.write(waterfall(har.requests, har.source.detail["pages"]), tmp_path / "w.png")
    except export.ImageExportError as exc:
        pytest.skip(f"kaleido could not render: {exc}")
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert width == 2 * 1280 and height > 400


def _many(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    hosts = [f"h{i}.example" for i in range(9)]
    start = 1e9 + np.sort(rng.uniform(0, 5, n))
    wait = rng.exponential(0.08, n)
    return conform("requests", pd.DataFrame({
        "request": np.arange(n), "conn": np.arange(n) % 40, "protocol": ["h2"] * n, "method": ["GET"] * n,
        "host": [hosts[i % 9] for i in range(n)], "url": [f"https://{hosts[i % 9]}/r{i}.js" for i in range(n)],
        "status": [200] * n, "start": start, "ttfb": wait + 0.001, "end": start + wait + 0.011,
        "send": [0.001] * n, "wait": wait, "receive": [0.01] * n, "source": ["har"] * n,
        "resource_type": ["Script" if i % 3 else "Image" for i in range(n)]}))


def test_many_requests_open_on_the_first_rows_and_filter_by_host():
    r = _many(600)
    fig = waterfall(r, theme="talk")
    assert len(fig.layout.yaxis.tickvals) == 600
    lo, hi = sorted(fig.layout.yaxis.range)
    assert hi - lo < 60                                  # legible: a screenful of rows, pan for more
    assert fig.layout.width == 1920 and fig.layout.height == 1080
    menu = fig.layout.updatemenus[0]
    labels = [b.label for b in menu.buttons]
    assert labels[0] == "all requests (600)"
    button = next(b for b in menu.buttons if b.label.startswith("host: h3.example"))
    ys = button.args[0]["y"]
    traces = list(fig.data)
    wait = next(i for i, t in enumerate(traces) if getattr(t, "meta", None) == "wait")
    kept = [y for y in ys[wait] if y is not None]
    assert len(kept) == (r["host"] == "h3.example").sum()
    assert sorted(kept) == list(range(len(kept)))        # the kept rows close up
    assert len(button.args[1]["yaxis.ticktext"]) == len(kept)
    types = [b.label for b in menu.buttons if b.label.startswith("type:")]
    assert types == ["type: Script (400)", "type: Image (200)"]


# --- a capture's waterfall matches the browser's (issue 14) ----------------------------------

from pathlib import Path  # noqa: E402
import subprocess  # noqa: E402

import traceviz  # noqa: E402

BUNDLED = Path(__file__).resolve().parents[1] / "captures"


def _tshark(path, fields, display_filter, keys=None):
    cmd = ["tshark", "-r", str(path), "-Y", display_filter, "-T", "fields", "-E", "separator=\t"]
    if keys:
        cmd += ["-o", f"tls.keylog_file:{keys}"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def test_the_first_request_on_a_connection_pays_connect_and_tls(tshark):
    pcap, keys = BUNDLED / "browser-page-load.pcapng", BUNDLED / "browser-page-load.keys"
    tl = traceviz.load(pcap)
    first = tl.requests.sort_values("start").iloc[0]
    syn = float(_tshark(pcap, ["frame.time_epoch"], "tcp.flags.syn == 1 && tcp.flags.ack == 0")[0][0])
    ack = float(_tshark(pcap, ["frame.time_epoch"], "tcp.analysis.initial_rtt")[0][0])
    hs = _tshark(pcap, ["frame.time_epoch", "tls.handshake.type", "tcp.srcport"], "tls.handshake.type", keys)
    hello = float(next(t for t, kind, _ in hs if kind.split(",")[0] == "1"))
    finished = max(float(t) for t, kind, _ in hs if "20" in kind.split(","))
    request = float(_tshark(pcap, ["frame.time_epoch"], "http2.headers.method", keys)[0][0])
    assert first["start"] == pytest.approx(syn, abs=2e-6)               # from the first SYN, as a browser counts
    assert first["connect"] == pytest.approx(ack - syn, abs=2e-6)
    assert first["tls"] == pytest.approx(finished - hello, abs=2e-6)
    assert first["start"] + first["blocked"] + first["connect"] + first["tls"] == pytest.approx(request, abs=2e-6)
    later = tl.requests.sort_values("start").iloc[1:]
    assert later["connect"].isna().all() and later["tls"].isna().all()      # the connection was open by then


def test_a_capture_and_the_browsers_har_of_one_load_agree_on_the_phases():
    pcap = traceviz.load(BUNDLED / "browser-page-load.pcapng").requests.sort_values("start").iloc[0]
    har = traceviz.load(BUNDLED / "browser-page-load.har").requests.sort_values("start").iloc[0]
    assert pcap["url"] == har["url"]
    # measured on two sides of the same wire (Chrome's clock, the capture's): within 2 ms, not 50 ms apart
    for phase in ("connect", "tls", "ttfb"):
        assert pcap[phase] == pytest.approx(har[phase], abs=0.002), phase
    fig = waterfall(traceviz.load(BUNDLED / "browser-page-load.pcapng").requests)
    bars = _bars(fig)
    assert "connect" in bars and "tls" in bars


def test_content_type_comes_from_the_responses(tshark):
    # HTTP/1.1: tshark pairs each response with its request's URL
    pcap, keys = BUNDLED / "http1-six-connections.pcapng", BUNDLED / "http1-six-connections.keys"
    want = {uri: value for value, uri in _tshark(pcap, ["http.content_type", "http.response_for.uri"],
                                                 "http.content_type", keys)}
    r = traceviz.load(pcap).requests
    assert want and dict(zip(r["url"], r["content_type"])) == want
    # HTTP/2: one frame may carry several HEADERS; the responses' types, counted
    pcap, keys = BUNDLED / "browser-page-load.pcapng", BUNDLED / "browser-page-load.keys"
    want = sorted(v for (values,) in _tshark(pcap, ["http2.headers.content_type"], "http2.headers.content_type", keys)
                  for v in values.split(","))
    assert want and sorted(traceviz.load(pcap).requests["content_type"]) == want


def test_rows_show_host_and_path_status_colours_and_the_code_explained():
    r = conform("requests", pd.DataFrame({
        "request": [0, 1, 2, 3], "conn": [0, 0, 1, 1], "start": [1.0, 1.1, 1.2, 1.3], "ttfb": [0.01] * 4,
        "end": [1.02, 1.12, 1.22, 1.32], "status": [200, 404, 502, None], "reused_connection": [False, True, False, True],
        "url": ["https://a.example/x/index.html", "https://a.example/missing.png", "https://b.example/api/v1/data",
                "https://b.example/never"]}))
    fig = waterfall(r)
    labels = list(fig.layout.yaxis.ticktext)
    assert "a.example/x/index.html" in labels[0] and "b.example/api/v1/data" in labels[2]
    amber, red = export_colors()
    assert f"color:{amber}'><b>404</b>" in labels[1] and f"color:{red}'><b>502</b>" in labels[2]
    assert f"color:{red}'>" in labels[3]                               # no response: a red dash
    assert "200" in labels[0] and "color" not in labels[0].split("a.example")[0].split("200")[0]
    legend = fig.layout.legend.title.text
    assert "\u25cf opened here" in legend and "\u25cb already open" in legend and "\u2502 same connection" in legend
    assert "4xx amber, 5xx red" in legend


def export_colors():
    from traceviz.charts import theme
    c = theme.colors("light")
    return c["4xx"], c["5xx"]
