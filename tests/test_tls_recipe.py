"""The tls recipe and its charts, on corpus captures whose facts tshark states
(MANIFEST.json) and on a synthetic capture with a hostile SNI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import traceviz
from traceviz.recipe import load_module

ROOT = Path(__file__).resolve().parents[1]
NSS = "pcap/tls-keys/tls-nss-example__scapy"
DESIGN_TLS_FIELDS = ["conn", "client", "server", "sni", "alpn_offered", "alpn", "versions_offered", "version",
                     "cipher", "group", "resumed", "hello_retry", "handshake_ms", "rtts", "ja3", "ja4", "ja3s",
                     "ja4s", "decrypted", "alert"]


@pytest.fixture(scope="module")
def recipe():
    return load_module(ROOT / "recipes" / "tls.py")


@pytest.fixture(scope="module")
def nss(corpus):
    return traceviz.load(corpus / f"{NSS}.pcap", keylog=corpus / f"{NSS}.keys")


def _manifest(corpus, name):
    return json.loads((corpus / "MANIFEST.json").read_text())["files"][name]


def test_rows_fields_and_summary(recipe, nss, corpus):
    f = recipe.analyze(nss)
    assert f.json_fields == DESIGN_TLS_FIELDS
    assert list(f.rows.columns[:len(DESIGN_TLS_FIELDS)]) == DESIGN_TLS_FIELDS
    assert len(f.rows) == len(nss.tls) == 2
    truth = _manifest(corpus, f"{NSS}.pcap")["tls"]
    assert f.summary["versions"] == truth["negotiated_versions"]
    assert f.summary["ciphers"] == {h["cipher_suite_name"]: 1 for h in truth["per_handshake"]}
    assert f.summary["resumed_share"] == 0.0
    assert f.summary["completed"] == 2 and f.summary["decrypted"] == 2


def test_round_trips_by_version_and_on_the_ladder(recipe, nss):
    f = recipe.analyze(nss)
    by_version = dict(zip(f.rows["version"], f.rows["rtts"]))
    assert by_version == {"TLS 1.2": 2, "TLS 1.3": 1}
    # The round trips counted from the messages on the wire agree with the protocol's count.
    for _, row in f.rows.iterrows():
        trips = recipe.round_trips(row)
        assert len(trips) == row["rtts"], row["version"]
    assert any("two round trips" in line for line in f.answer)
    assert any("needs one" in line for line in f.answer)


def test_ladder_marks_plaintext_and_encrypted(recipe, nss):
    f = recipe.analyze(nss, conn=0)
    fig = f.figure("ladder")
    lines = [t for t in fig.data if t.mode == "lines" and t.hovertemplate]
    texts = [(t.hovertemplate, t.line.dash) for t in lines]
    hello = [d for h, d in texts if "ClientHello (plaintext)" in h]
    finished = [h for h, d in texts if "Finished (encrypted)" in h]
    assert hello == ["solid"]
    # the client's and the server's Finished, each in the frame of its plaintext ChangeCipherSpec: one arrow
    # per frame, the encrypted message marked on it; an arrow of encrypted records alone is dashed
    assert len(finished) == 2 and all("ChangeCipherSpec (plaintext)" in h for h in finished)
    labels = [a.text for a in fig.layout.annotations if a.text and "Finished" in a.text]
    assert len(labels) == 2 and all("Finished <i>(encrypted)</i>" in t for t in labels)
    assert {d for h, d in texts if "(plaintext)" not in h} == {"dash"}
    labels = [a.text for a in fig.layout.annotations if a.text and a.text.startswith("round trip")]
    assert len(labels) == 2


def test_versions_figure_only_when_both_present(recipe, nss, corpus):
    assert "versions" in recipe.analyze(nss).figures
    fig = recipe.analyze(nss).figure("versions", theme="dark")
    assert {t.name for t in fig.data if t.type == "box"} == {"TLS 1.2", "TLS 1.3"}
    one = traceviz.load(corpus / "pcap/tls/tls13-curl__arkime_curl-enabled-tls13.pcap")
    assert set(recipe.analyze(one).figures) == {"ladder"}


def test_failed_and_stalled_handshakes_are_problems(recipe, corpus):
    tl = traceviz.load(corpus / "pcap/tls/tls12-alpn-h2__arkime_tls-alpn-h2.pcap")
    f = recipe.analyze(tl)
    # tshark saw ServerHelloDone but neither side's Finished in this capture.
    counts = _manifest(corpus, "pcap/tls/tls12-alpn-h2__arkime_tls-alpn-h2.pcap")["tls"]["handshake_message_counts"]
    assert "Finished" not in counts
    assert f.problems and f.problems[0].startswith("Stalled")
    assert f.rows.iloc[0]["handshake_ms"] != f.rows.iloc[0]["handshake_ms"] or f.rows.iloc[0]["handshake_ms"] is None


def test_no_tls_is_said_plainly(recipe, corpus):
    tl = traceviz.load(corpus / "pcap/http1/simple-get-403__arkime_http-simple-get.pcap")
    f = recipe.analyze(tl)
    assert f.rows.empty and f.answer[0].startswith("No TLS handshake")


def test_hostile_sni_is_escaped_in_figures(recipe, tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_tls_parse import _load, client_hello, record, server_hello

    evil = "<img src=x onerror=alert(1)>$x$"
    tl = _load(tmp_path, {0: [("c2s", record(22, client_hello(sni=evil))), ("s2c", record(22, server_hello()))]})
    assert tl.tls.iloc[0]["sni"] == evil
    f = recipe.analyze(tl)
    dumped = f.figure("ladder").to_json()
    assert "<img" not in dumped and "&lt;img" in dumped


@pytest.mark.parametrize("theme", ["light", "dark", "talk"])
def test_charts_render_to_html(recipe, nss, theme, tmp_path):
    from traceviz.charts import export
    f = recipe.analyze(nss)
    for name in f.figures:
        out = export.write(f.figure(name, theme), tmp_path / f"{name}.html", theme)
        assert out.stat().st_size > 10_000


def test_standalone_json(corpus):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(ROOT / "recipes" / "tls.py"),
                          str(corpus / "pcap/tls/tls13-draft23-chrome67__zeek.pcap"), "--json"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    truth = _manifest(corpus, "pcap/tls/tls13-draft23-chrome67__zeek.pcap")["tls"]["per_handshake"][0]
    assert rows[0]["version"] == truth["negotiated_version"] and rows[0]["sni"] == truth["sni"]
    assert list(rows[0])[:len(DESIGN_TLS_FIELDS)] == DESIGN_TLS_FIELDS


def test_a_capture_of_many_sessions_gets_a_readable_answer_and_every_failure(recipe, nss):
    """Past SESSIONS_TOLD sessions the answer stops describing them one by one (a million-packet
    capture has 13k: they are rows), but every failure is still said, and --fail reports it."""
    from dataclasses import replace

    import pandas as pd
    n = recipe.SESSIONS_TOLD * 3
    one = nss.tls.iloc[[0]]
    many = pd.concat([one] * n, ignore_index=True)
    many["conn"] = range(n)
    failed = [n - 1, n - 2]
    many.loc[failed, "status"] = "failed: alert from server (fatal handshake_failure)"
    f = recipe.analyze(replace(nss, tls=many))
    described = {line.split(":")[0] for line in f.answer if line.startswith("conn ")}
    assert len(described) == recipe.SESSIONS_TOLD
    assert f.problems == [line for line in f.answer if line.startswith("Failed")]
    assert len(f.problems) == 2 and all(p.startswith(f"Failed: conn {c}") for c, p in zip(sorted(failed), f.problems))
    assert any(line.startswith(f"{n - recipe.SESSIONS_TOLD} more sessions are not described") for line in f.answer)
    assert len(f.rows) == n


@pytest.mark.parametrize("name", ["tls12-vs-tls13", "quic-h3"])
def test_a_sessions_tcp_rtt_is_its_connections_handshake_round_trip(name):
    """``tcp_rtt`` on each TLS row is the TCP handshake's round trip of its connection, as the
    connections table has it (what the recipe compares the TLS handshake with); NaN for QUIC."""
    from bundled import timeline
    tl = timeline(name)
    conns = tl.connections.set_index("conn")
    assert len(tl.tls)
    for conn, rtt in zip(tl.tls["conn"], tl.tls["tcp_rtt"]):
        want = conns.loc[conn, "handshake_rtt"]
        if conns.loc[conn, "transport"] == "tcp":
            assert rtt == pytest.approx(float(want), abs=0) and rtt > 0
        else:
            assert rtt != rtt
