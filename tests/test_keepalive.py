"""Keep-alive facts per connection and the keep-alive race, against what really happened.

Ground truth: the bundled captures' manifest (nginx's keepalive_timeout, the
client's socket options and its log of every connection), tshark's
``tcp.analysis.keep_alive`` flags, and captures built here, whose every
packet (and so every idle gap, pipelined request and race) we placed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
from scapy.all import IP, TCP, Ether, wrpcap

import traceviz
from bundled import entry, timeline

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
T0 = 1_700_000_000.0


def recipe(tl):
    from traceviz.recipe import bundled_dir, load_module
    return load_module(bundled_dir() / "keepalive.py").analyze(tl)


def by_client(tl) -> dict[str, pd.Series]:
    return {r["client"]: r for _, r in tl.connections.iterrows()}


def ms(seconds: float) -> str:
    from traceviz.charts.text import fmt_ms
    return fmt_ms(seconds)


# ---------------------------------------------------------------- the bundled captures

def test_server_idle_timeout():
    e = entry("http1-idle-timeout")
    tl = timeline(e["name"])
    c = by_client(tl)[e["facts"]["connections"][0]["client"]]
    assert c["close"] == e["facts"]["connections"][0]["outcome"] == "fin-server"
    # nginx's keepalive_timeout, armed after the response (millisecond timer resolution)
    assert c["idle_close"] == pytest.approx(e["facts"]["idle_timeout_s"], abs=0.05)
    f = recipe(tl)
    assert f.summary["server_idle_timeout_s"] == pytest.approx(e["recorded"]["nginx_keepalive_timeout_s"], abs=0.05)
    said = " ".join(f.answer)
    assert f"keep-alive (idle) timeout is about {ms(f.summary['server_idle_timeout_s'])}" in said
    assert not f.problems


def test_requests_per_connection_and_connection_close():
    e = entry("http1-keepalive-vs-close")
    tl = timeline(e["name"])
    conns = by_client(tl)
    f = recipe(tl)
    rows = f.rows.set_index("client")
    for fact in e["facts"]["connections"]:
        c = conns[fact["client"]]
        n = len(fact["requests"])
        assert c["http_requests"] == n, fact["client"]
        assert c["close"] == fact["outcome"]
        assert bool(rows.at[fact["client"], "reused"]) == (n > 1)
        # the ten one-request connections asked for it (the client sent Connection: close)
        assert (c["conn_close"] in ("client", "both")) == (n == 1), fact["client"]
        gaps = c["idle_gaps"]
        assert len(gaps) == n - 1
    assert f.summary["requests_per_connection"] == sorted(len(x["requests"]) for x in e["facts"]["connections"])
    said = " ".join(f.answer)
    assert "10 requests (one handshake, then 9 reuses)" in said and "1 request each" in said
    assert "asked 'Connection: close'" in said


def test_tcp_keepalive_probes(tshark):
    e = entry("tcp-keepalive")
    k = e["facts"]["keepalive"]
    tl = timeline(e["name"])
    c = by_client(tl)[e["facts"]["connections"][0]["client"]]
    out = subprocess.run([tshark, "-r", str(CAPTURES / e["file"]), "-T", "fields", "-e", "frame.number",
                          "-e", "tcp.analysis.keep_alive", "-e", "tcp.analysis.keep_alive_ack"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    probes = sum(1 for line in out if line.split("\t")[1:2] != [""])
    acks = sum(1 for line in out if line.split("\t")[2:3] not in ([""], []))
    assert c["ka_probes"] == probes and c["ka_answered"] == acks
    # TCP_KEEPIDLE and TCP_KEEPINTVL as the client's socket set them
    assert c["ka_idle"] == pytest.approx(k["idle_s"], abs=0.2)
    assert c["ka_interval"] == pytest.approx(k["interval_s"], abs=0.2)
    assert c["ka_by"] == "client"
    # the client gave up on the idle connection after client_idle_s
    assert c["close"] == "fin-client" and c["idle_close"] == pytest.approx(k["client_idle_s"], abs=0.2)
    said = " ".join(recipe(tl).answer)
    assert f"{probes} TCP keep-alive probes from the client" in said
    assert f"first after {ms(c['ka_idle'])} of silence" in said and f"every {ms(c['ka_interval'])}" in said


def test_race_in_the_keepalive_recipe(tv):
    e = entry("proxy-keepalive-race")
    tl = timeline(e["name"])
    f = recipe(tl)
    assert f.summary["races"] == 3 and f.problems
    # the upstream closed each pooled connection after its idle timeout (the recorder's setting)
    assert f.summary["server_idle_timeout_s"] == pytest.approx(e["recorded"]["upstream_idle_timeout_s"], abs=0.05)
    said = " ".join(f.answer)
    assert "Fix:" in said and "non_idempotent" in said
    assert tv("keepalive", e["name"], "--fail")[0] == 1
    assert tv("keepalive", "http1-idle-timeout", "--fail")[0] == 0


# ---------------------------------------------------------------- a capture whose every packet we placed

class Flow:
    """One TCP connection of a hand-made capture: client 10.0.0.1:PORT, server 10.0.0.2:80."""

    def __init__(self, frames: list, port: int):
        self.frames, self.port = frames, port
        self.seq = {"c2s": 1000, "s2c": 5000}

    def send(self, t: float, d: str, flags: str, data: bytes = b"", ack: int | None = None) -> None:
        src, dst, sp, dp = (("10.0.0.1", "10.0.0.2", self.port, 80) if d == "c2s"
                            else ("10.0.0.2", "10.0.0.1", 80, self.port))
        other = "s2c" if d == "c2s" else "c2s"
        pkt = Ether() / IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags, seq=self.seq[d],
                                                   ack=(self.seq[other] if ack is None else ack)
                                                   if "A" in flags else 0) / data
        pkt.time = t
        self.frames.append(pkt)
        self.seq[d] += len(data) + (1 if "S" in flags or "F" in flags else 0)

    def open(self, t: float) -> None:
        self.send(t, "c2s", "S")
        self.send(t + 0.01, "s2c", "SA")
        self.send(t + 0.02, "c2s", "A")

    def exchange(self, t: float, path: str, wait: float = 0.05, close: bool = False) -> None:
        self.send(t, "c2s", "PA", request(path, close))
        self.send(t + wait, "s2c", "PA", response(close))


def request(path: str, close: bool = False) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: h\r\n" + ("Connection: close\r\n" if close else "") + "\r\n").encode()


def response(close: bool = False) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + (b"Connection: close\r\n" if close else b"")
            + b"\r\nok")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple:
    """Five connections to one server, each showing one keep-alive fact (times from T0):

    conn 0  GET /a, 1.0 s idle, GET /b, then the server closes it 2.0 s after its last byte
    conn 1  opened at 2.0 while conn 0 sits idle; two GETs pipelined, the second with Connection: close
    conn 2  opened, never used, closed by the client
    conn 3  GET /x, 1.0 s idle, GET /c crosses the server's FIN (which acknowledges none of it): a RST
    conn 4  the client sends GET /c again and gets 200
    """
    frames: list = []
    a, b, u, d, e = (Flow(frames, p) for p in (4001, 4002, 4003, 4004, 4005))
    a.open(T0)
    a.exchange(T0 + 0.10, "/a")
    a.exchange(T0 + 1.15, "/b")                      # idle 1.0 s after /a's response (T0 + 0.15)
    b.open(T0 + 2.0)
    b.send(T0 + 2.10, "c2s", "PA", request("/p1"))
    b.send(T0 + 2.11, "c2s", "PA", request("/p2", close=True))   # before /p1's response: pipelined
    b.send(T0 + 2.15, "s2c", "PA", response())
    b.send(T0 + 2.16, "s2c", "PA", response(close=True))
    b.send(T0 + 2.1601, "s2c", "FA")
    b.send(T0 + 2.17, "c2s", "FA")
    u.open(T0 + 2.5)
    d.open(T0 + 2.8)
    d.exchange(T0 + 2.9, "/x", wait=0.1)                # its response ends at T0 + 3.0
    u.send(T0 + 3.0, "c2s", "FA")
    a.send(T0 + 3.2, "s2c", "FA")                      # 2.0 s after /b's response (T0 + 1.20)
    a.send(T0 + 3.21, "c2s", "FA")
    before = d.seq["c2s"]
    d.send(T0 + 4.0, "c2s", "PA", request("/c"))       # 1.0 s idle
    d.send(T0 + 4.01, "s2c", "FA", ack=before)         # the server's FIN: it never saw /c
    d.send(T0 + 4.02, "s2c", "R", ack=0)
    e.open(T0 + 4.05)
    e.exchange(T0 + 4.10, "/c")
    frames.sort(key=lambda p: float(p.time))
    path = tmp_path_factory.mktemp("ka") / "made.pcap"
    wrpcap(str(path), frames)
    return path, traceviz.load(path)


def test_made_capture_facts(made):
    _, tl = made
    c = tl.connections.set_index("conn")
    assert list(c.index) == [0, 1, 2, 3, 4]
    assert c.at[0, "http_requests"] == 2 and c.at[0, "idle_gaps"] == pytest.approx([1.0], abs=1e-6)
    assert c.at[0, "close"] == "fin-server" and c.at[0, "idle_close"] == pytest.approx(2.0, abs=1e-6)
    # conn 0 sat idle (handshake done, not closing, nothing in flight) when 1, 2 and 3 opened;
    # when conn 4 opened, 0 had closed and 3 was closing
    assert c["idle_sibling"].tolist()[1:4] == [0, 0, 0]
    assert pd.isna(c.at[0, "idle_sibling"]) and pd.isna(c.at[4, "idle_sibling"])
    assert c.at[1, "pipelined"] == 1 and c.at[1, "conn_close"] == "both"
    assert c.at[2, "http_requests"] == 0               # opened, never used
    assert c.at[3, "http_requests"] == 2 and c.at[3, "idle_gaps"] == pytest.approx([1.0], abs=1e-6)


def test_made_capture_race(made):
    _, tl = made
    r = tl.requests
    raced = r[r["cause"] == "keepalive-race"]
    assert raced["url"].tolist() == ["http://h/c"] and raced["conn"].tolist() == [3]
    x = raced.iloc[0]
    assert pd.isna(x["status"]) and pd.isna(x["leg"])      # a client's own race: no proxy here
    frames = tl.packets.set_index("frame")
    fin, rst = x["cause_frames"][1], x["cause_frames"][2]
    assert frames.at[fin, "flags"] == "FIN,ACK" and frames.at[rst, "flags"] == "RST"
    assert "after 1000 ms idle" in x["cause_detail"] and "Sent again on conn 4: status 200" in x["cause_detail"]
    # a server that closed after reading the request (ack covers it) is not a race
    assert (r.loc[r["cause"].notna(), "conn"] == 3).all()


def test_made_capture_recipe_words(made):
    _, tl = made
    f = recipe(tl)
    said = " ".join(f.answer)
    assert "1 connection opened and never used (no request): conn 2." in said
    assert "conn 1 was opened while conn 0 to the same server sat idle" in said
    assert "conn 1: 1 request sent before the previous response had ended (HTTP/1.1 pipelining)." in said
    assert "Keep-alive race on conn 3" in said and f.problems


@pytest.mark.parametrize("theme", ["light", "dark", "talk"])
def test_reuse_timeline(made, theme):
    from traceviz.charts.reuse import reuse_timeline
    _, tl = made
    fig = reuse_timeline(tl.connections, tl.requests, None, tl.packets, tl.events, theme=theme)
    lanes = list(fig.layout.yaxis.ticktext)
    assert len(lanes) == 5 and all(t.startswith(f"conn {i} ") for i, t in enumerate(lanes))
    bars = sum(len(t.x) for t in fig.data if t.type == "bar")
    assert bars == len(tl.requests)
    race = [t for t in fig.data if t.type == "bar" and "race" in t.name]
    assert race and len(race[0].x) == 1
    closes = next(t for t in fig.data if t.name == "close (first FIN/RST)")
    assert len(closes.x) == int(tl.connections["close_frame"].notna().sum())
    assert "server FIN after 2.00 s idle" in list(closes.text)
    gaps = [a.text for a in fig.layout.annotations if a.text and a.text.endswith("idle")]
    assert sorted(gaps) == ["1.00 s idle", "1.00 s idle"]


def test_reuse_timeline_escapes(made):
    from traceviz.charts.reuse import reuse_timeline
    _, tl = made
    rq = tl.requests.copy()
    rq["url"] = "http://h/<script>alert(1)</script>"
    payload = reuse_timeline(tl.connections, rq, None, tl.packets, theme="light").to_json()
    assert "<script>" not in payload and "&lt;script&gt;" in payload


def test_no_http_costs_nothing():
    """A capture without HTTP or probes gets no keep-alive facts at all (only the interface)."""
    tl = timeline("tcp-handshakes")
    c = tl.connections
    cols = ["http_requests", "idle_gaps", "idle_close", "close_frame", "ka_probes", "idle_sibling"]
    assert c[cols].isna().all().all()
    assert (c["iface"] == 0).all()
