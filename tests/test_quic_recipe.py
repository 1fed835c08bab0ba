"""The bundled QUIC captures through the command line, against what the recording
side logged (captures/manifest.json): the 13 HTTP/3 requests, the quic recipe,
``traceviz compare`` of QUIC and TCP, and the QUIC charts."""

from __future__ import annotations

import json

import pytest

import traceviz
from tests import quicgen
from traceviz.captures import entry, find
from traceviz.cli import main


def run(capsys, *args) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def facts(name: str) -> dict:
    return entry(name)["facts"]


def test_requests_of_quic_h3_equal_the_server_log(capsys):
    code, out, _ = run(capsys, "requests", "quic-h3", "--json")
    assert code == 0
    rows = json.loads(out)
    log = {r["stream_id"]: r for r in facts("quic-h3")["server_log"]}
    assert sorted(r["stream"] for r in rows) == sorted(log) == facts("quic-h3")["streams"]
    for r in rows:
        want = log[r["stream"]]
        assert r["protocol"] == "h3" and r["method"] == want["method"] and r["status"] == want["status"]
        assert r["url"].endswith(want["path"]) and r["resp_bytes"] == want["bytes"]
        # headers decoded (QPACK): the response says its own length
        assert ["content-length", str(want["bytes"])] in r["response_headers"]
        assert [":path", want["path"]] in r["request_headers"]
    # Each request's first byte left just after the client logged it (a request that waited for
    # the handshake starts, as in a HAR, when the connection began: its first byte left after the
    # phases spent waiting), and its last byte reached the capture point (in the client's
    # namespace) just before the client logged the end (one clock).
    client = {r["stream_id"]: r for r in facts("quic-h3")["client_log"]}
    for r in rows:
        sent = r["start"] + sum(r[p] or 0.0 for p in ("blocked", "dns", "connect", "tls"))
        assert 0 <= sent - client[r["stream"]]["start"] < 0.005
        assert 0 <= client[r["stream"]]["end"] - r["end"] < 0.02


def test_without_its_embedded_keys_quic_h3_still_names_version_and_alpn(tmp_path):
    from scapy.all import rdpcap, wrpcap
    bare = tmp_path / "bare.pcap"                     # the same frames in a pcap: no secrets block
    wrpcap(str(bare), rdpcap(str(find("quic-h3"))))
    tl = traceviz.load(bare)
    row = tl.quic.iloc[0]
    assert row["version"] == "0x00000001" and list(row["alpn_offered"]) == ["h3"]
    assert row["sni"] is None          # the recording client sent none (it dialled an address); tshark agrees
    assert not row["decrypted"] and len(tl.requests) == 0
    assert tl.connections.iloc[0]["client"] == f"10.88.0.1:{facts('quic-h3')['client_ports'][0]}"


def test_quic_recipe_on_the_bundled_capture(capsys):
    code, out, _ = run(capsys, "quic", "quic-h3", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert list(row)[:19] == ["conn", "client", "server", "version", "version_name", "sni", "alpn_offered", "alpn",
                              "handshake_ms", "rtts", "retry", "version_negotiation", "zero_rtt", "resumed",
                              "decrypted", "packets", "bytes_c2s", "bytes_s2c", "close"]
    f = facts("quic-h3")
    assert row["rtts"] == 1 and row["decrypted"] and row["requests"] == f["requests"]
    assert row["max_concurrent_requests"] == f["max_concurrent_requests"]
    assert abs(row["min_rtt_ms"] - f["rtt_ms"]) < 5          # the relay's delay, seen in the ACKs
    code, out, _ = run(capsys, "quic", "quic-h3")
    assert "1 round trip" in out and "13 HTTP/3 requests" in out


def test_info_transport_and_layer_options_see_quic(capsys, corpus):
    code, out, _ = run(capsys, "info", "quic-h3", "--json")
    info = json.loads(out)
    assert info["connections"] == {"quic": 1} and info["applications"] == {"h3": 1}
    assert info["quic"] == {"connections": 1, "versions": {"QUIC v1": 1}, "decrypted": "1 of 1"}
    code, out, _ = run(capsys, "info", str(corpus / "pcap/quic/quic-retry__tcpdump_quic_retry.pcap"))
    assert "decrypted: 0 of 1" in out and "Initial packets only" in out
    code, out, _ = run(capsys, "connections", "quic-h3", "--transport", "quic", "--json")
    assert [r["transport"] for r in json.loads(out)] == ["quic"]
    code, out, _ = run(capsys, "connections", "quic-h3", "--transport", "udp", "--json")
    assert json.loads(out) == []
    for layer, kinds in (("quic", {"Initial", "Handshake", "1-RTT", "STREAM", "ACK"}),
                         ("h3", {"HEADERS", "DATA", "SETTINGS"})):
        code, out, _ = run(capsys, "timeline", "quic-h3", "--layer", layer, "--json")
        rows = json.loads(out)
        assert {r["layer"] for r in rows} == {layer} and kinds <= {r["kind"] for r in rows}


def test_quic_recipe_on_every_corpus_capture(capsys, corpus):
    """Every QUIC capture gets its plain-language answer; only real trouble is a --fail problem."""
    for path in sorted((corpus / "pcap" / "quic").glob("*.pcap*")):
        keys = path.with_suffix(".keys")
        extra = ["--keylog", str(keys)] if keys.is_file() else []
        code, out, err = run(capsys, "quic", str(path), "--fail", *extra)
        assert code == 0, (path.name, out, err)
        assert "QUIC connection" in out and "Traceback" not in err
        assert len(json.loads(run(capsys, "quic", str(path), "--json", *extra)[1])) == 1


def test_compare_quic_with_tcp(capsys, tmp_path):
    chart = tmp_path / "compare.html"
    code, out, _ = run(capsys, "compare", "quic-h3", "quic-vs-h2-tcp", "--json", "--chart", str(chart))
    assert code == 0
    page = chart.read_text()
    assert "quic-h3 (h3 over QUIC: 1-RTT handshake)" in page and "quic-vs-h2-tcp (h2 over TCP + TLS: 2-RTT" in page
    quic, tcp = json.loads(out)
    assert (quic["transport"], tcp["transport"]) == ("quic", "tcp")
    # The path's round trip, from each capture, is the relay's (manifest: 50 ms).
    for r in (quic, tcp):
        assert abs(r["rtt_ms"] - facts("quic-h3")["rtt_ms"]) < 5
        assert r["requests"] == 13
    # QUIC: one round trip before the first request; TCP + TLS 1.3: two (SYN, then TLS).
    assert (quic["handshake_rtts"], tcp["handshake_rtts"]) == (1, 2)
    assert quic["first_request_ms"] < tcp["first_request_ms"]
    # Whole round trips gone by when the first request left (the rest is the endpoints' own time).
    assert (int(quic["first_request_rtts"]), int(tcp["first_request_rtts"])) == (1, 2)
    # Against the clients' own logs: the last byte each capture shows; for QUIC the first request
    # too (the TCP client logs its start before it even connects).
    for r, name in ((quic, "quic-h3"), (tcp, "quic-vs-h2-tcp")):
        tl = traceviz.load(name)
        t0 = float(tl.connections.set_index("conn").loc[r["conn"], "start"])
        log = facts(name)["client_log"]
        assert 0 <= max(x["end"] for x in log) - (t0 + r["last_byte_ms"] / 1000) < 0.03
        if name == "quic-h3":
            assert 0 <= t0 + r["first_request_ms"] / 1000 - min(x["start"] for x in log) < 0.005
    code, out, _ = run(capsys, "compare", "quic-h3", "quic-vs-h2-tcp")
    assert "round trip fewer" in out


def test_compare_refuses_a_third_keylog(capsys, tmp_path):
    k = tmp_path / "k.keys"
    k.write_text("")
    code, _, err = run(capsys, "compare", "quic-h3", "quic-vs-h2-tcp", "--keylog", str(k), "--keylog", str(k),
                       "--keylog", str(k))
    assert code == 2 and "at most once per file" in err


def test_an_error_close_is_a_problem_for_fail(tmp_path, capsys):
    conv = quicgen.conversation(close_error=0x10C)              # H3_REQUEST_CANCELLED
    pcap = quicgen.write_pcap(tmp_path / "c.pcap", conv)
    keys = quicgen.keylog_file(tmp_path / "c.keys", conv)
    code, out, _ = run(capsys, "quic", str(pcap), "--keylog", str(keys), "--fail")
    assert code == 1 and "H3_REQUEST_CANCELLED (client): giving up" in out
    code, _, _ = run(capsys, "quic", "quic-h3", "--fail")
    assert code == 0


@pytest.mark.parametrize("theme", ["light", "dark", "talk"])
def test_charts_escape_what_the_capture_says(tmp_path, theme):
    from traceviz.charts import quic as charts
    name = "<img src=x onerror=alert(1)>.test"
    conv = quicgen.conversation(server_name=name, paths=("/", "/<b>bold</b>"))
    tl = traceviz.load(quicgen.write_pcap(tmp_path / "c.pcap", conv),
                       keylog=quicgen.keylog_file(tmp_path / "c.keys", conv))
    row = tl.quic.iloc[0]
    assert row["sni"] == name and len(tl.requests) == 2
    ladder = charts.ladder(tl.events, row, theme).to_json()
    streams = charts.streams(tl.requests, tl.events, theme).to_json()
    # plotly's JSON writes "<" as \u003c: markup from the capture would show up as that
    for text, shown in ((ladder, "&lt;img"), (streams, "&lt;b&gt;bold")):
        assert "\\u003cimg" not in text and "\\u003cb\\u003ebold" not in text
        assert shown in text
