"""The capture lab's own code: the relay's timed queue and drop rules, the manifest lock,
the scenario drivers' pure parts, and (as root, with ``ip netns``) a real two-namespace path."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "captures" / "record"
sys.path.insert(0, str(RECORD))

import manifest  # noqa: E402
import relay  # noqa: E402
from relay import DelayLine, DropRules, LinkSpec, tcp_syn_dport  # noqa: E402

scapy = pytest.importorskip("scapy.all")
Ether, IP, TCP, UDP = scapy.Ether, scapy.IP, scapy.TCP, scapy.UDP


def frame(flags="S", dport=80, payload=b"") -> bytes:
    return bytes(Ether() / IP(src="10.77.0.1", dst="10.77.0.2") / TCP(sport=40000, dport=dport,
                                                                      flags=flags) / payload)


# ---------------------------------------------------------------- frame facts

@pytest.mark.parametrize("flags,expect", [("S", 9002), ("SA", None), ("A", None), ("R", None),
                                          ("PA", None), ("F", None)])
def test_syn_detection(flags, expect):
    assert tcp_syn_dport(frame(flags, 9002)) == expect


def test_syn_detection_ignores_non_tcp_and_short_frames():
    assert tcp_syn_dport(bytes(Ether() / IP() / UDP(dport=9002))) is None
    assert tcp_syn_dport(frame("S")[:40]) is None
    assert tcp_syn_dport(b"") is None
    arp = bytes(scapy.Ether() / scapy.ARP())
    assert tcp_syn_dport(arp) is None
    # IPv4 with options: the TCP header moves; the port must still be found.
    opt = bytes(Ether() / IP(options=[scapy.IPOption_NOP()] * 4) / TCP(dport=7, flags="S"))
    assert tcp_syn_dport(opt) == 7


# ---------------------------------------------------------------- the timed queue

def test_delay_line_releases_each_frame_after_the_delay_in_order():
    line = DelayLine(0.0125)
    frames = [frame("PA", payload=bytes([i])) for i in range(5)]
    for i, f in enumerate(frames):
        assert line.push(f, 100.0 + i * 0.001)
    assert line.pop_due(100.0124) == []
    assert line.next_due() == pytest.approx(100.0125)
    assert line.pop_due(100.0125) == frames[:1]
    assert line.pop_due(100.0155) == frames[1:4]
    assert line.pop_due(101.0) == frames[4:]
    assert line.next_due() is None and line.forwarded == 5


def test_delay_line_rate_serialises_frames():
    line = DelayLine(0.010, rate=8_000_000)          # 1 byte per microsecond
    a, b = b"a" * 1000, b"b" * 1000
    line.push(a, 0.0)
    line.push(b, 0.0)
    # a: 1 ms on the wire + 10 ms; b waits for a: 2 ms + 10 ms.
    assert line.pop_due(0.0109) == []
    assert line.pop_due(0.0110) == [a]
    assert line.pop_due(0.0119) == []
    assert line.pop_due(0.0120) == [b]


def test_drop_first_syn_only():
    rules = DropRules({9002: 1})
    line = DelayLine(0.0, rules=rules)
    assert not line.push(frame("S", 9002), 1.0)         # the first SYN is lost
    assert line.push(frame("S", 9002), 2.0)             # the kernel's retransmission passes
    assert line.push(frame("S", 9001), 2.0)             # other ports untouched
    assert line.push(frame("A", 9002), 2.1)
    assert [d["dport"] for d in rules.dropped] == [9002]


def test_blackhole_drops_every_syn_but_nothing_else():
    rules = DropRules({9003: -1})
    assert all(rules.drop(frame("S", 9003), t) for t in range(6))
    assert not rules.drop(frame("SA", 9003), 7)
    assert len(rules.dropped) == 6


def test_random_loss_rate_and_reproducibility():
    data = frame("PA")

    def run(seed):
        rules = DropRules(loss=0.1, seed=seed)
        return [rules.drop(data, i) for i in range(5000)]
    a, b = run(7), run(7)
    assert a == b                                       # same seed, same drops: a re-record matches
    assert 400 < sum(a) < 600                           # 10 % of 5000, within ~3.5 sigma
    assert run(8) != a


def test_link_spec_round_trips_through_the_command_line():
    spec = LinkSpec("tvA-c0t", "tvA-s0t", delay_ms=12.5, loss=0.01, drop_syn={9002: 1, 9003: -1})
    back = LinkSpec.from_arg(spec.to_arg())
    assert back == spec and back.drop_syn[9003] == -1
    ab, ba = back.lines()
    assert ab.delay == ba.delay == 0.0125
    assert not ab.push(frame("S", 9002), 0.0)         # the rule survived the trip
    assert ab.push(frame("S", 9002), 1.0)


def test_wait_time_never_oversleeps_a_due_frame():
    for remaining in (0.0, 0.0005, 0.0019, 0.002, 0.0125, 1.0):
        w = relay.wait_time(remaining)
        # epoll rounds up to the next millisecond: blocking must end before the frame is due.
        assert w == 0.0 or w + 0.001 <= remaining


# ---------------------------------------------------------------- manifest

def entry(name, **facts):
    return {"name": name, "file": f"{name}.pcapng", "title": name, "concepts": ["tcp-handshake"],
            "look_at": "x", "recorded": {"command": "x"}, "facts": facts}


def test_merge_replaces_by_name_and_sorts(tmp_path):
    path = tmp_path / "manifest.json"
    manifest.update([entry("b", n=1), entry("a", n=1)], path)
    doc = manifest.update([entry("b", n=2)], path)
    assert [e["name"] for e in doc["captures"]] == ["a", "b"]
    assert doc["captures"][1]["facts"] == {"n": 2}
    assert json.loads(path.read_text()) == doc
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_merge_rejects_incomplete_entries(tmp_path):
    bad = entry("x")
    del bad["facts"]
    with pytest.raises(ValueError, match="facts"):
        manifest.update([bad], tmp_path / "m.json")


def _writer(path, i):
    manifest.update([entry(f"w{i:02d}", i=i)], Path(path))


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "manifest.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), i)) for i in range(12)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    names = [e["name"] for e in manifest.load(path)["captures"]]
    assert names == [f"w{i:02d}" for i in range(12)]


# ---------------------------------------------------------------- scenario drivers

def test_http_response_reader():
    import scenarios_http1 as h
    raw = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
           b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    f = io.BufferedReader(io.BytesIO(raw))
    assert h.read_response(f) == {"status": 200, "bytes": 5, "server_closes": True}
    assert h.read_response(f) == {"status": 404, "bytes": 0, "server_closes": False}
    assert h.read_response(f) == {"status": None, "bytes": 0}


def test_tcp_entry_counts_syns_from_the_relay_log():
    import scenarios_tcp as t
    conns = [{"client": "10.77.0.1:5", "server": "10.77.0.2:9002", "outcome": "fin-client",
              "connect_s": 1.03, "exchanges": [["ping 1", "pong 1"]]},
             {"client": "10.77.0.1:6", "server": "10.77.0.2:9003", "outcome": "unanswered", "connect_s": 7.0}]
    dropped = [{"dport": 9002, "reason": "syn-rule"}] + [{"dport": 9003, "reason": "syn-rule"}] * 3
    e = t.entry("x", conns, dropped)
    assert [c["syns"] for c in e["facts"]["connections"]] == [2, 3]
    assert e["facts"]["relay_dropped_syns"] == {"9002": 1, "9003": 3}
    manifest.check_entry(e)


def test_http1_facts_count_requests_and_statuses():
    import scenarios_http1 as h
    conns = [{"client": "a:1", "server": "b:80", "outcome": "fin-client", "lasted_s": 1,
              "requests": [{"method": "GET", "path": "/1", "status": 200, "bytes": 3}] * 3},
             {"client": "a:2", "server": "b:80", "outcome": "fin-server", "lasted_s": 1,
              "requests": [{"method": "GET", "path": "/2", "status": 404, "bytes": 0}]}]
    f = h.facts(conns, [])
    assert f["requests"] == 4 and f["statuses"] == {"200": 3, "404": 1}
    assert f["rtt_ms"] == 2 * h.ONE_WAY_MS


def test_tls_cipher_ids_come_from_openssl():
    import ssl

    import scenarios_tls as t
    ctx = ssl.create_default_context()
    assert t.cipher_id(ctx, "TLS_AES_256_GCM_SHA384") == 0x1302
    ctx.set_ciphers("AES128-GCM-SHA256")
    assert t.cipher_id(ctx, "AES128-GCM-SHA256") == 0x009C
    assert t.cipher_id(ctx, "NOPE") is None


def test_record_refuses_without_root(monkeypatch):
    import record
    from netlab import Scenario
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert any("root" in p for p in record.problems(Scenario("x", "x", lambda out: [], ())))


def test_record_lists_scenarios_and_checks_requirements(tmp_path):
    out = subprocess.run([sys.executable, str(RECORD / "record.py"), "--list"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    listed = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    assert {"tcp-handshakes", "tls12-vs-tls13", "tls13-resumption", "tls12-rsa",
            "http1-keepalive-vs-close", "http1-idle-timeout", "tcp-keepalive"} <= listed
    import record
    from netlab import Scenario
    problems = record.problems(Scenario("x", "x", lambda out: [], ("no-such-program-tv",)))
    assert any("no-such-program-tv" in p for p in problems)
    bad = subprocess.run([sys.executable, str(RECORD / "record.py"), "no-such-scenario"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown scenario" in bad.stderr


# ---------------------------------------------------------------- a real path (root only)

def lab_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, TAP devices)"
    if shutil.which("ip") is None or subprocess.run(["ip", "netns", "list"], capture_output=True).returncode:
        return "ip netns is not available"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None


def _take_down(lab) -> None:
    """Every process, the relay and the namespaces of ``lab``, whatever failed on the way."""
    try:
        lab.teardown()
    finally:
        for p in [*lab.procs, lab.relay]:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        lab.remove_namespaces()


@pytest.mark.skipif(lab_available() is not None, reason=str(lab_available()))
def test_lab_path_has_the_configured_rtt_and_drops_the_first_syn(tmp_path):
    from netlab import Lab
    prefix = f"tvT{os.getpid() % 1000}-"      # not tvA-/tvB-: never touch a recording in progress
    code = ("import socket,time,sys\n"
            "s=socket.socket(); t=time.monotonic(); s.connect((sys.argv[1], int(sys.argv[2])));"
            "print(time.monotonic()-t)")
    lab = Lab(prefix, "10.79", [LinkSpec("c", "s", delay_ms=10.0, drop_syn={9102: 1})], tmp_path)
    try:
        # setup() inside the try: a lab that fails half-way up still comes down.
        lab.setup()
        lab.popen("s", [sys.executable, "-c",
                        "import socket,time\nl=[]\nfor p in (9101,9102):\n s=socket.socket();"
                        "s.bind(('0.0.0.0',p));s.listen();l.append(s)\nprint('ready',flush=True)\n"
                        "time.sleep(60)"], ready="ready")
        fast = float(lab.run("c", [sys.executable, "-c", code, lab.addr("s"), "9101"]).stdout)
        slow = float(lab.run("c", [sys.executable, "-c", code, lab.addr("s"), "9102"]).stdout)
        ping = lab.run("c", ["ping", "-c", "5", "-i", "0.2", lab.addr("s")]).stdout
    finally:
        _take_down(lab)
    # ping's minimum is the path itself; a user-space timer around connect() also
    # measures how busy the machine is, so it only gets the physical lower bound.
    rtt_min = float(ping.rsplit("=", 1)[1].split("/")[0])
    assert 20.0 <= rtt_min <= 28.0                # 2 x 10 ms, plus the relay's wake-up
    assert 0.0195 <= fast < 0.5
    assert 1.0 <= slow <= 1.5                     # the kernel's 1 s SYN retransmission
    dropped = [d["dport"] for link in lab.relay_stats for d in link["a_to_b"]["dropped"]]
    assert dropped == [9102]
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in names                    # cleaned up


@pytest.mark.skipif(lab_available() is not None, reason=str(lab_available()))
def test_a_lab_that_fails_half_way_up_leaves_nothing_behind(tmp_path, monkeypatch):
    from netlab import Lab
    prefix = f"tvU{os.getpid() % 1000}-"
    lab = Lab(prefix, "10.78", [LinkSpec("c", "s", delay_ms=1.0)], tmp_path)

    def broken(*args):
        raise RuntimeError("a step of the setup failed")

    monkeypatch.setattr(lab, "static_neighbours", broken)     # after the namespaces and the relay exist
    with pytest.raises(RuntimeError, match="half|step"):
        try:
            lab.setup()
        finally:
            relay = lab.relay
            _take_down(lab)
    assert relay is not None and relay.poll() is not None     # the relay was started, and is gone
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in names
