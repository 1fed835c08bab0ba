"""Every browser source lands in the model's tables with the model's meaning."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from traceviz.assemble.browser import PHASES, load_browser
from traceviz.errors import InputError
from traceviz.model import EVENT_COLUMNS, REQUEST_COLUMNS
from traceviz.sources.jsonfile import sniff_json

KINDS = {"har": "har", "devtools-trace": "devtools-trace", "devtools-protocol-log": "devtools-log"}


def _browser_files(corpus: Path):
    files = json.loads((corpus / "MANIFEST.json").read_text())["files"]
    return [(n, f) for n, f in files.items() if f.get("kind") in KINDS]


@pytest.fixture(scope="module")
def timelines(corpus):
    return {n: (f, load_browser(corpus / n)) for n, f in _browser_files(corpus)}


def test_sniff_agrees_with_the_manifest(corpus):
    for name, facts in _browser_files(corpus):
        assert sniff_json(str(corpus / name)) == KINDS[facts["kind"]], name
    pcap = next((corpus / "pcap").rglob("*.pcap"))
    assert sniff_json(str(pcap)) is None


def test_requests_follow_the_schema(timelines):
    for name, (facts, tl) in timelines.items():
        r = tl.requests
        assert list(r.columns[: len(REQUEST_COLUMNS)]) == list(REQUEST_COLUMNS), name
        for col, dtype in REQUEST_COLUMNS.items():
            assert str(r[col].dtype) == dtype, (name, col)
        assert list(r["request"]) == list(range(len(r))), name
        assert r["request_id"].is_unique, name
        assert r["source"].eq(tl.source.format).all(), name


def test_times_and_phases_mean_what_the_model_says(timelines):
    for name, (facts, tl) in timelines.items():
        r = tl.requests
        if tl.source.detail.get("clock", "wall") == "wall":
            assert r["start"].dropna().between(1.2e9, 1.9e9).all(), name     # epoch seconds
        for p in PHASES:
            assert (r[p].dropna() >= 0).all(), (name, p)                      # -1 became NaN
        done = r.dropna(subset=["ttfb", "end"])
        assert (done["ttfb"] <= done["end"] - done["start"] + 1e-6).all(), name
        assert (done["ttfb"] >= 0).all(), name
        # phases up to wait add up to ttfb where the source has them all
        full = done.dropna(subset=["send", "wait"])
        if tl.source.format == "har":
            upto = full[list(PHASES[:-1])].fillna(0).sum(axis=1)
            assert (upto - full["ttfb"]).abs().max() < 1e-9 if len(full) else True, name


def test_connections_and_requests_share_keys(timelines):
    for name, (facts, tl) in timelines.items():
        r, c = tl.requests, tl.connections
        assert list(c["conn"]) == list(range(len(c))), name
        used = set(r["conn"].dropna().astype(int))
        assert used == set(c["conn"]), name
        per = r["conn"].value_counts()
        assert all(per.get(k, 0) == n for k, n in zip(c["conn"], c["requests"])), name
        assert c["inferred"].dtype == bool, name
        # a connection starts no later than its first request and ends no earlier than its last
        for k, grp in r.dropna(subset=["conn"]).groupby("conn"):
            row = c.loc[c["conn"] == k].iloc[0]
            assert row["start"] <= grp["start"].min() + 1e-9, name
        assert tl.source.detail["connections"] == len(c)


def test_events_table(timelines):
    for name, (facts, tl) in timelines.items():
        e = tl.events
        assert list(e.columns[: len(EVENT_COLUMNS)]) == list(EVENT_COLUMNS), name
        layer = "har" if tl.source.format == "har" else "devtools"
        assert e["layer"].eq(layer).all(), name
        assert (e["kind"] == "request").sum() == tl.requests["start"].notna().sum(), name
        pages = tl.source.detail["pages"]
        assert (e["kind"] == "load").sum() == sum(p["load"] is not None for p in pages), name
        ts = e["ts"].dropna()
        assert ts.is_monotonic_increasing, name


def test_traceviz_load_reads_browser_files(corpus):
    import traceviz
    tl = traceviz.load(corpus / "har/chrome51__harviewer_issue-23.har")
    assert tl.source.format == "har" and len(tl.requests) == 3
    with pytest.raises(InputError):
        traceviz.load(corpus / "har/corrupt__mitmproxy_brokenfile.har")


def test_parquet_round_trip(corpus, tmp_path):
    tl = load_browser(corpus / "devtools/intercom-widget__lighthouse.devtoolslog.json.gz")
    tl.to_parquet(tmp_path)
    back = pd.read_parquet(tmp_path / "requests.parquet")
    assert len(back) == len(tl.requests)
    assert math.isclose(back["start"].min(), tl.requests["start"].min())


CAPTURES = Path(__file__).resolve().parents[1] / "captures"


def _bundled_facts() -> dict:
    m = json.loads((CAPTURES / "manifest.json").read_text())
    items = m if isinstance(m, list) else m.get("captures", list(m.values()))
    return next(c for c in items if isinstance(c, dict) and c.get("name") == "browser-page-load")


@pytest.fixture(scope="module")
def bundled():
    if not (CAPTURES / "browser-page-load.har").is_file():
        pytest.skip("the bundled browser capture is not there")
    return (_bundled_facts(), load_browser(CAPTURES / "browser-page-load.har"),
            load_browser(CAPTURES / "browser-page-load.trace.json"))


def test_bundled_har_and_trace_agree_with_the_recording(bundled):
    """One Chromium page load, recorded as HAR (Playwright), DevTools trace and pcap."""
    facts, har, trace = bundled
    for tl in (har, trace):
        r = tl.requests
        assert len(r) == facts["facts"]["requests"]
        assert sorted(r["url"]) == sorted(facts["facts"]["urls"])
        assert dict(r["status"].astype(int).astype(str).value_counts()) == facts["facts"]["statuses"]
        assert set(r["protocol"]) == set(facts["facts"]["protocols"])
        assert len(tl.connections) == facts["facts"]["server_connections"]
        assert r["reused_connection"].sum() == len(r) - 1          # one handshake, then reuse
    assert har.connections["inferred"].all() and not trace.connections["inferred"].any()
    # Playwright writes ssl inside connect (as Chromium measures it) and then adds it to
    # "time" again: TCP connect alone must match the trace's, and the end must not
    # carry the TLS time twice.
    h, t = har.requests.set_index("url"), trace.requests.set_index("url")
    first = facts["facts"]["urls"][0]
    assert h.at[first, "connect"] == pytest.approx(t.at[first, "connect"], abs=0.001)
    assert h.at[first, "tls"] == pytest.approx(t.at[first, "tls"], abs=0.001)
    assert any("twice" in w for w in har.warnings)
    # Both carry Chromium's own timing for each request: request sent -> first byte is
    # the same number (Playwright folds "send" into "wait").
    net = (h["send"].fillna(0) + h["wait"]).loc[t.index] - (t["send"].fillna(0) + t["wait"])
    assert net.abs().max() < 0.001
    # The page's first byte lands at the same moment in both (clocks within tens of ms).
    assert abs((h.at[first, "start"] + h.at[first, "ttfb"]) - (t.at[first, "start"] + t.at[first, "ttfb"])) < 0.03


def test_bundled_pcap_agrees_on_the_connection(bundled):
    import traceviz
    facts, har, trace = bundled
    try:
        pcap = traceviz.load(CAPTURES / "browser-page-load.pcapng", keylog=CAPTURES / "browser-page-load.keys")
    except (ImportError, InputError) as exc:
        pytest.skip(f"capture decoding not available: {exc}")
    tcp = pcap.connections[pcap.connections["transport"] == "tcp"]
    assert len(tcp) == facts["facts"]["server_connections"] == len(har.connections)
    c = tcp.iloc[0]
    # The browser's TCP connect time is the handshake the capture saw (client side, 50 ms RTT).
    for tl in (har, trace):
        r = tl.requests.sort_values("start").iloc[0]
        assert r["connect"] == pytest.approx(c["handshake_rtt"], abs=0.003)
        # and the connect starts when the SYN left: within 10 ms for the trace (its wall
        # clock is bounded by responseTime), 30 ms for Playwright's HAR (it has no "blocked")
        connect_start = r["start"] + (0 if math.isnan(r["blocked"]) else r["blocked"]) + r["dns"]
        assert abs(connect_start - c["syn"]) < (0.01 if tl is trace else 0.03)
    if len(pcap.requests):
        assert len(pcap.requests) == len(har.requests)


_JUNK = [None, True, -1, 0, 1e308, float("nan"), "", "-1", [], {}, [1], {"a": 1}, "-0001-01-01T00:00:00Z",
         "<script>", 10 ** 30]


def _mutate(v, rng):
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            r = rng.random()
            if r < 0.04:
                continue
            out[k] = rng.choice(_JUNK) if r < 0.1 else _mutate(x, rng)
        return out
    if isinstance(v, list):
        return [_mutate(x, rng) for x in v if rng.random() > 0.03] + ([rng.choice(_JUNK)] if rng.random() < 0.05 else [])
    return rng.choice(_JUNK) if rng.random() < 0.05 else v


@pytest.mark.parametrize("seed", range(24))
def test_damaged_exports_load_or_fail_cleanly(corpus, tmp_path, seed):
    """Wrong types anywhere in a real export: a Timeline that keeps the schema, or InputError."""
    import random
    from traceviz.charts.waterfall import waterfall
    rng = random.Random(seed)
    names = ["har/chrome-with-bom__mitmproxy_with-bom.har", "har/chrome51__harviewer_issue-23.har",
             "har/firefox111-h2-head__mitmproxy_head-content-length.har",
             "devtools/frame-metrics-m90__lighthouse.trace.json",
             "devtools/frame-metrics-m90__lighthouse.devtoolslog.json"]
    src = corpus / names[seed % len(names)]
    value = json.loads(src.read_text(encoding="utf-8-sig"))
    p = tmp_path / "damaged.json"
    p.write_text(json.dumps(_mutate(value, rng)))
    try:
        tl = load_browser(p)
    except InputError as e:
        assert str(p) in str(e)
        return
    for col, dtype in REQUEST_COLUMNS.items():
        assert str(tl.requests[col].dtype) == dtype
    assert ((tl.requests["status"].dropna() >= 100) & (tl.requests["status"].dropna() <= 999)).all()
    waterfall(tl.requests, tl.source.detail.get("pages"))


def test_browser_sources_know_formats_not_tables():
    """The readers import no pandas and nothing above them (model, assemble, decode)."""
    import ast
    sources = Path(__file__).resolve().parents[1] / "traceviz" / "sources"
    for name in ("jsonfile", "urls", "chrome", "har", "trace", "cdp", "browser_export"):
        tree = ast.parse((sources / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for m in mods:
                assert m.split(".")[0] not in ("pandas", "numpy"), (name, m)
                assert not m.startswith(("traceviz.model", "traceviz.assemble", "traceviz.decode")), (name, m)
