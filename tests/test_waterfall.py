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
