"""Every browser source lands in the model's tables with the model's meaning."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from traceviz.decode.browser import PHASES, load_browser
from traceviz.errors import InputError
from traceviz.model import EVENT_COLUMNS, REQUEST_COLUMNS
from traceviz.sources.browser import sniff_json

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
