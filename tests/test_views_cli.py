"""The commands for Wireshark's views as a user meets them: conversations, endpoints,
follow, iostat, flow and the tcpgraph recipe -- output shape, --where, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from test_cli import tv  # noqa: F401 - the CLI run in this process, as test_cli runs it
from traceviz.cli.follow import terminal_safe

PROXY = ROOT / "captures" / "proxy-nginx-502-504.pcapng"
LOSSY = ROOT / "tests" / "corpus" / "pcap" / "tcp" / "syn-retransmit__suricata-verify_bug-4376.pcap"


def test_conversations_json_and_where(tv):
    r = tv("conversations", PROXY, "--json", "--where", "ip.addr == 10.88.1.2")
    rows = json.loads(r.out)
    assert r.code == 0 and rows and all("10.88.1.2" in row["a"] + row["b"] for row in rows)
    assert list(rows[0])[:5] == ["kind", "conn", "a", "b", "frames_ab"]
    ip = json.loads(tv("conversations", PROXY, "--by", "ip", "--json").out)
    assert {(row["a"], row["b"]) for row in ip} == {("10.88.0.1", "10.88.0.2"), ("10.88.1.1", "10.88.1.2")}


def test_endpoints_json(tv):
    rows = json.loads(tv("endpoints", PROXY, "--json").out)
    assert {row["endpoint"] for row in rows} == {"10.88.0.1", "10.88.0.2", "10.88.1.1", "10.88.1.2"}
    assert all(row["frames"] == row["tx_frames"] + row["rx_frames"] for row in rows)


@pytest.mark.parametrize("args, says", [
    (("conversations", PROXY, "--by", "eth"), "choose ip, tcp or udp"),
    (("conversations", PROXY, "--where", "frame.bogus == 1"), "no translation"),
    (("endpoints", PROXY, "--where", "nope > 1"), "not defined"),
    (("follow", PROXY, "--conn", "99"), "no connection 99"),
    (("follow", PROXY, "--conn", "0", "--format", "yaml"), "choose ascii or hex"),
    (("follow", PROXY, PROXY, "--conn", "0"), "follow reads one capture file (2 given)"),
    (("iostat", PROXY, "--interval", "soon"), "cannot read 'soon'"),
    (("iostat", PROXY, "--interval", "0ms"), "cannot read '0ms'"),
    (("flow", PROXY, "--where", "tcp.port == 80"), "has nothing to match"),
])
def test_bad_input_is_one_line_and_exit_2(tv, args, says):
    r = tv(*args)
    r.assert_refused(says)
    assert "Traceback" not in r.err


def test_follow_on_a_pipe_is_tsharks_and_on_a_terminal_is_safe(tshark):
    theirs = subprocess.run([tshark, "-r", str(PROXY), "-q", "-z", "follow,tcp,ascii,2"], capture_output=True).stdout
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    mine = subprocess.run([sys.executable, "-c", "from traceviz.cli import main; main()", "follow", str(PROXY),
                           "--conn", "2"], capture_output=True, cwd=ROOT, env=env, timeout=120)
    assert mine.returncode == 0 and mine.stdout == theirs
    assert terminal_safe("GET / HTTP/1.1\r\nevil\rtext\r\n") == "GET / HTTP/1.1\nevil\\rtext\n"


def test_follow_json_escapes(tv):
    rows = json.loads(tv("follow", PROXY, "--conn", "2", "--json").out)
    assert rows[0]["dir"] == "c2s" and rows[0]["text"].startswith("GET ")
    assert all("\r" not in row["text"] and bytes.fromhex(row["hex"]) for row in rows)
    assert "\\x0d" in rows[0]["text"]


def test_iostat_json_and_chart(tv, tmp_path):
    rows = json.loads(tv("iostat", PROXY, "--interval", "1s", "--json").out)
    assert [r["interval"] for r in rows] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    r = tv("iostat", PROXY, "--interval", "250ms", "--chart", tmp_path / "io.html")
    assert r.code == 0 and (tmp_path / "io.html").stat().st_size > 100_000


def test_iostat_reads_what_a_whole_load_has(tv):
    """``traceviz iostat`` loads the packets, the requests and TCP's events alone: its rows,
    with and without --conn, are the recipe's over a whole load."""
    import traceviz
    from traceviz.recipe import bundled_dir, load_module
    recipe = load_module(bundled_dir() / "iostat.py")
    whole = traceviz.load(PROXY)
    assert whole.source.detail.get("bundled_keylog") is None and len(whole.requests)
    for extra, conn in (((), None), (("--conn", "2"), 2)):
        rows = json.loads(tv("iostat", PROXY, "--interval", "250ms", "--json", *extra).out)
        mine = recipe.analyze(whole, conn=conn, interval=0.25).rows
        assert rows == json.loads(mine.to_json(orient="records")), extra
        assert sum(r["requests"] for r in rows) and (conn is not None or sum(r["resets"] for r in rows))
    r = tv("iostat", PROXY, "--conn", "999")
    assert r.code == 2 and "no connection 999" in r.err


def test_flow_filters(tv, tmp_path):
    rows = json.loads(tv("flow", PROXY, "--host", "10.88.1.2", "--since", "2", "--until", "3", "--json").out)
    assert rows and all(2 <= r["t"] <= 3 and "10.88.1.2" in (r["src_addr"], r["dst_addr"]) for r in rows)
    rows = json.loads(tv("flow", PROXY, "--where", "layer == 'http'", "--json").out)
    assert {r["layer"] for r in rows} == {"http"}
    r = tv("flow", PROXY, "--conn", "0", "--chart", tmp_path / "flow.html")
    assert r.code == 0 and (tmp_path / "flow.html").exists()


def test_tcpgraph_figures(tv, tmp_path):
    for kind in ("seq", "throughput", "rtt", "window"):
        r = tv("tcpgraph", LOSSY, "--figure", kind, "--chart", tmp_path / f"{kind}.html")
        assert r.code == 0 and (tmp_path / f"{kind}.html").exists()
    r = tv("tcpgraph", LOSSY, "--figure", "nope", "--chart", tmp_path / "x.html")
    assert r.code == 2 and "seq, throughput, rtt, window" in r.err


def test_fail_on_the_views(tv, tshark):
    # The proxy capture's resets, as tshark counts them, are what flow --fail stops on.
    resets = subprocess.run([tshark, "-r", str(PROXY), "-Y", "tcp.flags.reset == 1", "-T", "fields", "-e", "frame.number"],
                            capture_output=True, text=True, timeout=120).stdout.split()
    r = tv("flow", PROXY, "--fail", "--json")
    said = [line for line in r.err.splitlines() if line.startswith("traceviz --fail: ")]
    assert r.code == 1 and resets and len(said) == len(resets)
    assert {line.split("frame ")[1].split(":")[0] for line in said} == set(resets)
    assert tv("iostat", PROXY, "--fail", "--json").code == (1 if resets else 0)
    r = tv("flow", PROXY, "--figure", "nope", "--chart", "x.html")
    assert r.code == 2 and "flow" in r.err
