"""The command line as a user meets it: output, exit codes, hostile strings, recipes.

Ground truth is tshark's dissection of the same file (run here), the
bundled captures' manifest (what the recorder knows happened), the corpus
MANIFEST, or the bytes we write ourselves, never traceviz's own output.

Most commands run in-process (``traceviz.cli.main`` with ``capsys``: fast);
a few run as a real process where what matters is what a shell sees
(stdout versus stderr, exit status, no traceback).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from traceviz import cli

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("TRACEVIZ_CORPUS", ROOT / "tests" / "corpus"))
BUNDLED = ROOT / "captures"
HANDSHAKES = BUNDLED / "tcp-handshakes.pcapng"
IPV6 = "pcap/ipv6/http-over-ipv6__arkime_v6-http.pcap"
BROKEN_HAR = "har/corrupt__mitmproxy_brokenfile.har"
EVIL = "\x1b[31mred\x1b[0m[bold red]x[/]<script>alert(1)</script>"
T0 = 1_700_000_000

# DESIGN.md, "Command line contract": these names are stable.
CONNECTION_FIELDS = ["conn", "transport", "client", "server", "first_frame", "start", "end", "packets",
                     "bytes_c2s", "bytes_s2c", "syn", "synack", "ack", "handshake_rtt", "syn_retransmits",
                     "close", "app", "sni", "alpn", "tls_version"]
TLS_FIELDS = ["conn", "client", "server", "sni", "alpn_offered", "alpn", "versions_offered", "version", "cipher",
              "group", "resumed", "hello_retry", "handshake_ms", "rtts", "ja3", "ja4", "ja3s", "ja4s",
              "decrypted", "alert"]
REQUEST_FIELDS = ["request", "conn", "stream", "protocol", "method", "host", "url", "status", "start", "ttfb",
                  "end", "req_bytes", "resp_bytes", "blocked", "dns", "connect", "tls", "send", "wait", "receive",
                  "reused_connection", "source"]
EPOCH_FIELDS = {"start", "end", "syn", "synack", "ack", "ts"}
CLOSE_VALUES = {"fin-client", "fin-server", "rst-client", "rst-server", "refused", "unanswered", "open", None}


# ---------------------------------------------------------------- running the CLI

@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self):
        return strict_json(self.out)

    def assert_refused(self, says: str) -> None:
        """Bad input as DESIGN.md has it: exit 2, nothing on stdout, one line on stderr saying ``says``."""
        assert self.code == 2 and says in self.err and self.out == ""
        assert len(self.err.strip().splitlines()) == 1


@pytest.fixture
def tv(capsys, monkeypatch):
    """``tv("connections", FILE, "--json")``: the CLI in this process."""

    def run(*args) -> Run:
        capsys.readouterr()
        try:
            cli.main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


def subprocess_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


def tv_process(*args, cwd=None, **env) -> Run:
    """The CLI as its own process: what a shell or a script sees."""
    p = subprocess.run([sys.executable, "-c", "from traceviz.cli import main; main()", *map(str, args)],
                       capture_output=True, text=True, cwd=cwd, env=subprocess_env(**env), timeout=120)
    return Run(p.returncode, p.stdout, p.stderr)


def strict_json(text: str):
    """All of stdout as one JSON document; NaN/Infinity are not JSON and fail here."""
    def refuse(token):
        raise AssertionError(f"{token} in --json output (DESIGN.md: missing values are null)")
    return json.loads(text, parse_constant=refuse)


def tshark_rows(tshark: str, path, fields: list[str], display_filter: str | None = None) -> list[list[str]]:
    cmd = [tshark, "-r", str(path), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    if display_filter:
        cmd += ["-Y", display_filter]
    for f in fields:
        cmd += ["-e", f]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return [line.split("\t") for line in p.stdout.splitlines() if line.strip()]


def frame_times(tshark: str, path) -> dict[int, float]:
    return {int(n): float(t) for n, t in tshark_rows(tshark, path, ["frame.number", "frame.time_epoch"])}


def endpoint(addr: str, port: str | int) -> str:
    """DESIGN.md's endpoint text: ``ip:port``, IPv6 as ``[addr]:port``."""
    ip = ipaddress.ip_address(addr)
    return f"[{ip.compressed}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def normal_endpoint(text: str) -> str:
    """The same endpoint whatever the spelling of its address (for comparing, not for the format)."""
    host, _, port = text.rpartition(":")
    return endpoint(host.strip("[]"), port)


def bundled_facts(name: str) -> dict:
    doc = json.loads((BUNDLED / "manifest.json").read_text())
    return next(c for c in doc["captures"] if c["name"] == name)


def corpus_file(corpus: Path, rel: str) -> Path:
    path = corpus / rel
    if not path.is_file():
        pytest.skip(f"{rel} not in the corpus")
    return path


def assert_epoch(value, field):
    assert value is None or (isinstance(value, float) and 1e9 < value < 4e9), f"{field}={value!r} is not epoch seconds"


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    return lines[0]


# ---------------------------------------------------------------- --json: shape and stable fields

def test_connections_json_fields_and_times(tv, tshark):
    r = tv("connections", HANDSHAKES, "--json")
    assert r.code == 0, r.err
    rows = r.json()
    assert isinstance(rows, list) and rows
    times = frame_times(tshark, HANDSHAKES)
    for row in rows:
        assert list(row)[:len(CONNECTION_FIELDS)] == CONNECTION_FIELDS
        for f in EPOCH_FIELDS & set(row):
            assert_epoch(row[f], f)
        assert row["close"] in CLOSE_VALUES
        # start is the time of the connection's first frame, as tshark reads it
        assert row["start"] == pytest.approx(times[row["first_frame"]], abs=1e-6)


def test_connections_match_the_recorded_facts(tv):
    facts = bundled_facts("tcp-handshakes")["facts"]["connections"]
    rows = tv("connections", HANDSHAKES, "--json").json()
    tcp = [r for r in rows if r["transport"] == "tcp"]
    assert [(r["client"], r["server"]) for r in tcp] == [(f["client"], f["server"]) for f in facts]
    assert [r["close"] for r in tcp] == [f["outcome"] for f in facts]
    assert [r["syn_retransmits"] for r in tcp] == [f["syns"] - 1 for f in facts]


@pytest.mark.parametrize("rel", [
    "pcap/tcp/refused-then-tls13__suricata-verify_tls-duplicate-hello.pcap",
    "pcap/tcp/syn-retransmit__suricata-verify_bug-4376.pcap",
    "pcap/tcp/handshake-reorder__zeek.pcap",
    "pcap/http2/h2c-range-5conns__suricata-verify_http2-range.pcap",
    "pcap/link/vlan-http__zeek_http-vlan-0.pcap",
    "pcap/link/sll2__suricata-verify_decode-sll2-01.pcap",
    "pcap/http1/keepalive-retrans__arkime_wireshark-retrans.pcap",
    IPV6,
])
def test_connections_agree_with_tshark_streams(tv, corpus, tshark, rel):
    path = corpus_file(corpus, rel)
    streams = {int(s) for (s,) in tshark_rows(tshark, path, ["tcp.stream"], "tcp")}
    first = {}
    for s, a4, a6, sp, d4, d6, dp, syn, ack in tshark_rows(
            tshark, path, ["tcp.stream", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport",
                           "tcp.flags.syn", "tcp.flags.ack"], "tcp"):
        first.setdefault(int(s), []).append((endpoint(a4 or a6, sp), endpoint(d4 or d6, dp),
                                             syn in ("1", "True"), ack in ("1", "True")))
    r = tv("connections", path, "--json", "--transport", "tcp")
    assert r.code == 0, r.err
    rows = {row["conn"]: row for row in r.json()}
    assert sorted(rows) == sorted(streams)
    for s, pkts in first.items():
        row = rows[s]
        ours = (normal_endpoint(row["client"]), normal_endpoint(row["server"]))
        syns = [(src, dst) for src, dst, syn, ack in pkts if syn and not ack]
        if syns:  # the SYN's sender is the client, as tshark's conversation "A" side
            assert ours == syns[0], f"stream {s}"
        else:
            assert set(ours) == {pkts[0][0], pkts[0][1]}, f"stream {s}"


def test_ipv6_endpoints_are_bracketed(tv, corpus, tshark):
    path = corpus_file(corpus, IPV6)
    rows = tv("connections", path, "--json").json()
    want = {(endpoint(a, sp), endpoint(d, dp)) for a, sp, d, dp in
            tshark_rows(tshark, path, ["ipv6.src", "tcp.srcport", "ipv6.dst", "tcp.dstport"],
                        "tcp.flags.syn==1 and tcp.flags.ack==0")}
    assert want
    shape = re.compile(r"^\[[0-9a-f:.]+\]:\d+$")
    for row in rows:
        assert shape.match(row["client"]) and shape.match(row["server"]), row
    assert want <= {(normal_endpoint(r["client"]), normal_endpoint(r["server"])) for r in rows}


def test_timeline_json_times_are_the_frames_times(tv, tshark):
    r = tv("timeline", HANDSHAKES, "--json")
    assert r.code == 0, r.err
    events = r.json()
    times = frame_times(tshark, HANDSHAKES)
    assert events
    for ev in events:
        assert {"ts", "frame", "conn", "layer", "kind", "dir"} <= set(ev)
        assert_epoch(ev["ts"], "ts")
        assert ev["ts"] == pytest.approx(times[ev["frame"]], abs=1e-6)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)


@pytest.mark.parametrize("name", ["h2-multiplexing", "proxy-nginx-502-504", "quic-h3", "tcp-keepalive"])
def test_timeline_json_is_the_whole_loads_events(tv, name):
    """The command builds the events and connections alone, the connections without keep-alive
    facts: every event of a whole load is still there, as it is."""
    import traceviz
    from traceviz import output
    r = tv("timeline", name, "--json")
    assert r.code == 0, r.err
    ev = traceviz.load(name).events.sort_values(["ts", "frame"], kind="stable")
    assert len(set(ev["layer"].dropna())) >= 2
    assert r.json() == json.loads(json.dumps(output.records(ev, None), default=str))


@pytest.mark.parametrize("source", ["bundled", "corpus"])
def test_timeline_filters_match_tshark(tv, tshark, source, corpus):
    path = HANDSHAKES if source == "bundled" else corpus_file(corpus, "pcap/tcp/syn-retransmit__suricata-verify_bug-4376.pcap")
    streams = sorted({int(s) for (s,) in tshark_rows(tshark, path, ["tcp.stream"], "tcp")})
    syns: dict[int, list[int]] = {}
    for s, f in tshark_rows(tshark, path, ["tcp.stream", "frame.number"], "tcp.flags.syn==1 and tcp.flags.ack==0"):
        syns.setdefault(int(s), []).append(int(f))  # as -Y "tcp.stream eq N and tcp.flags.syn==1 and ..."
    for n in streams[:6]:
        r = tv("timeline", path, "--conn", n, "--layer", "tcp", "--kind", "SYN", "--json")
        assert r.code == 0, r.err
        got = r.json()
        assert [e["frame"] for e in got] == syns.get(n, []), f"conn {n}"
        assert {(e["conn"], e["layer"], e["kind"]) for e in got} <= {(n, "tcp", "SYN")}


def test_handshakes_json_matches_facts_and_tshark(tv, tshark):
    facts = bundled_facts("tcp-handshakes")["facts"]["connections"]
    r = tv("handshakes", HANDSHAKES, "--json")
    assert r.code == 0, r.err
    rows = r.json()
    assert [(x["client"], x["server"], x["close"]) for x in rows] == [
        (f["client"], f["server"], f["outcome"]) for f in facts]
    first_syn = {}
    for s, n, t in tshark_rows(tshark, HANDSHAKES, ["tcp.stream", "frame.number", "frame.time_epoch"],
                               "tcp.flags.syn==1 and tcp.flags.ack==0"):
        first_syn.setdefault(int(s), float(t))
    for row in rows:
        assert list(row)[:len(CONNECTION_FIELDS)] == CONNECTION_FIELDS
        assert row["syn"] == pytest.approx(first_syn[row["conn"]], abs=1e-6)


def test_tls_json_agrees_with_tshark(tv, corpus, tshark):
    path = corpus_file(corpus, "pcap/tls-keys/tls12-decryption-heise__zeek.pcap")
    r = tv("tls", path, "--json")
    assert r.code == 0, r.err
    rows = r.json()
    hellos = tshark_rows(tshark, path, ["tcp.stream", "tls.handshake.extensions_server_name"], "tls.handshake.type==1")
    servers = tshark_rows(tshark, path, ["tcp.stream", "tls.handshake.version",
                                         "tls.handshake.extensions.supported_version"], "tls.handshake.type==2")
    assert sorted(r_["conn"] for r_ in rows) == sorted({int(s) for s, _ in hellos})
    by_conn = {row["conn"]: row for row in rows}
    for s, sni in hellos:
        assert by_conn[int(s)]["sni"] == (sni or None)
    names = {0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
    verbose = subprocess.run([tshark, "-r", str(path), "-V", "-Y", "tls.handshake.type==2"],
                             capture_output=True, text=True, timeout=120).stdout
    ciphers = re.findall(r"Cipher Suite: (TLS_\w+) \(0x", verbose)
    for (s, legacy, chosen), cipher in zip(servers, ciphers):
        row = by_conn[int(s)]
        assert row["version"] == names[int(chosen or legacy, 16)]
        assert row["cipher"] == cipher  # IANA name, as tshark spells it
    for row in rows:
        assert list(row)[:len(TLS_FIELDS)] == TLS_FIELDS


def test_requests_json_from_a_har(tv, corpus):
    path = corpus_file(corpus, "har/chrome-h2__pagexray_http2-chrome.har")
    truth = json.loads((corpus / "MANIFEST.json").read_text())["files"]["har/chrome-h2__pagexray_http2-chrome.har"]
    entries = json.loads(path.read_text(encoding="utf-8-sig"))["log"]["entries"]
    r = tv("requests", path, "--json")
    assert r.code == 0, r.err
    rows = r.json()
    assert len(rows) == truth["entries"]
    for row in rows:
        assert list(row)[:len(REQUEST_FIELDS)] == REQUEST_FIELDS
        assert_epoch(row["start"], "start")
        assert_epoch(row["end"], "end")
    started = sorted(datetime.fromisoformat(e["startedDateTime"].replace("Z", "+00:00")).timestamp() for e in entries)
    assert sorted(row["start"] for row in rows) == pytest.approx(started, abs=1e-3)
    assert {str(row["status"]) for row in rows} == set(truth["status_codes"])


def test_requests_json_from_a_pcap(tv, corpus, tshark):
    path = corpus_file(corpus, "pcap/http1/simple-get-403__arkime_http-simple-get.pcap")
    want = tshark_rows(tshark, path, ["tcp.stream", "http.request.method", "http.host", "http.request.uri"],
                       "http.request")
    codes = [int(c) for (c,) in tshark_rows(tshark, path, ["http.response.code"], "http.response")]
    rows = tv("requests", path, "--json").json()
    assert [(r["conn"], r["method"], r["host"]) for r in rows] == [(int(s), m, h) for s, m, h, _ in want]
    assert [r["status"] for r in rows] == codes
    for r in rows:
        assert_epoch(r["start"], "start")


@pytest.mark.parametrize("suffix", [".har", ".trace.json", ".pcapng"])
def test_requests_json_of_one_page_load_from_three_sources(tv, suffix):
    """The bundled browser load as HAR, DevTools trace and decrypted pcap: the recorded URLs and statuses."""
    facts = bundled_facts("browser-page-load")["facts"]
    r = tv("requests", BUNDLED / f"browser-page-load{suffix}", "--json")
    assert r.code == 0, r.err
    rows = r.json()
    assert sorted(x["url"] for x in rows) == sorted(facts["urls"])
    assert {str(x["status"]) for x in rows} == set(facts["statuses"])
    assert {x["protocol"] for x in rows} == set(facts["protocols"])
    for x in rows:
        assert_epoch(x["start"], "start")


def test_captures_json_lists_the_manifest(tv):
    doc = json.loads((BUNDLED / "manifest.json").read_text())
    r = tv("captures", "--json")
    assert r.code == 0, r.err
    rows = r.json()
    assert sorted(x["name"] for x in rows) == sorted(c["name"] for c in doc["captures"])
    files = {c["name"]: c["file"] for c in doc["captures"]}
    for x in rows:
        assert Path(x["path"]).is_file() and Path(x["path"]).name == files[x["name"]]


def test_info_json_counts_agree_with_tshark(tv, tshark):
    r = tv("info", HANDSHAKES, "--json")
    assert r.code == 0, r.err
    info = r.json()
    assert isinstance(info, dict)
    assert info["frames"] == len(frame_times(tshark, HANDSHAKES))
    assert info["connections"]["tcp"] == len(bundled_facts("tcp-handshakes")["facts"]["connections"])


def test_info_json_times_are_epoch_floats(tv, tshark):
    info = tv("info", HANDSHAKES, "--json").json()
    times = frame_times(tshark, HANDSHAKES)
    assert info["first"] == pytest.approx(min(times.values()), abs=1e-6)
    assert info["last"] == pytest.approx(max(times.values()), abs=1e-6)


@pytest.mark.parametrize("command", ["connections", "timeline", "requests", "info"])
def test_json_is_all_of_stdout_while_warning(tv, corpus, command):
    """A script pipes stdout into a JSON parser: warnings must stay on stderr."""
    path = corpus_file(corpus, "pcap/corrupt/cut-short__ndpi_fuzz-2021-10-13.pcap")  # warns while it works
    r = tv(command, path, "--json")
    assert r.code == 0, r.err
    assert isinstance(r.json(), dict if command == "info" else list)
    assert "frame 2" in r.err


@pytest.mark.parametrize("command", ["handshakes", "tls"])
def test_a_recipe_that_does_not_apply_says_so_with_json_too(tv, corpus, command):
    """One frame, no handshake and no TLS: the recipe is not run (exit 2, what it needs), stdout stays empty."""
    path = corpus_file(corpus, "pcap/corrupt/cut-short__ndpi_fuzz-2021-10-13.pcap")
    r = tv(command, path, "--json")
    assert r.code == 2 and r.out == ""
    assert "frame 2" in r.err and f"{command} does not apply to this file: it needs" in r.err


def test_json_is_all_of_stdout_as_a_process(corpus):
    path = corpus_file(corpus, "pcap/corrupt/cut-short__ndpi_fuzz-2021-10-13.pcap")
    r = tv_process("connections", path, "--json")
    assert r.code == 0, r.err
    assert isinstance(r.json(), list)
    assert "frame 2" in r.err and "warning" in r.err


# ---------------------------------------------------------------- exit codes and one-line errors

def pcap_bytes(records: list[tuple[int, bytes]]) -> bytes:
    """A classic pcap whose records claim ``n`` bytes and hold ``data``."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, (n, data) in enumerate(records):
        out.append(struct.pack("<IIII", T0 + i, 0, n, n) + data)
    return b"".join(out)


def syn_frame(i: int) -> bytes:
    from scapy.all import IP, TCP, Ether
    return bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000 + i, dport=80, flags="S"))


def bad_input(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.pcap"
    if kind == "missing":
        return tmp_path / "no-such-capture.pcap"
    if kind == "directory":
        path = tmp_path / "a-folder"
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(bytes((i * 7919 + 13) % 251 for i in range(4096)))
    elif kind == "text":
        path = tmp_path / "notes.txt"
        path.write_text("GET / HTTP/1.1\nthis is not a capture\n")
    elif kind == "header-only":
        path.write_bytes(pcap_bytes([]))
    elif kind == "claims-4gb":
        path.write_bytes(pcap_bytes([(0xFFFFFFF0, b"x" * 100)]))
    return path


@pytest.mark.parametrize("kind, frame", [
    ("missing", None),
    ("directory", None),
    ("empty", None),
    ("random", None),
    ("text", None),
    ("header-only", None),
    ("claims-4gb", 1),
])
def test_bad_input_exits_2_with_one_line(tv, tmp_path, kind, frame):
    path = bad_input(kind, tmp_path)
    r = tv("connections", path)
    assert r.code == 2, (r.out, r.err)
    line = one_line(r.err)
    assert str(path) in line
    if frame is not None:
        assert f"frame {frame}" in line
    assert r.out == ""


def test_missing_file_as_a_process(tmp_path):
    path = bad_input("missing", tmp_path)
    r = tv_process("connections", path)
    assert r.code == 2
    assert str(path) in one_line(r.err)


def test_long_error_lines_are_not_wrapped(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "random-bytes.pcap"
    path.write_bytes(bytes(range(256)) * 8)
    r = tv_process("connections", path)
    assert r.code == 2
    assert str(path) in one_line(r.err)


def test_random_bytes_as_a_process(tmp_path):
    path = bad_input("random", tmp_path)
    r = tv_process("connections", path)
    assert r.code == 2
    assert path.name in one_line(r.err)
    assert r.out == ""


def test_cut_mid_record_warns_and_goes_on(tv, tmp_path, tshark):
    whole = pcap_bytes([(len(f), f) for f in (syn_frame(i) for i in range(3))])
    path = tmp_path / "cut.pcap"
    path.write_bytes(whole[:-10])
    want = len(frame_times(tshark, path))  # tshark reads the two whole frames
    r = tv("info", path, "--json")
    assert r.code == 0, r.err
    assert r.json()["frames"] == want == 2
    line = one_line(r.err)
    assert str(path) in line and "frame 3" in line


def test_absurd_record_after_good_ones(tv, tmp_path):
    good = [(len(f), f) for f in (syn_frame(i) for i in range(3))]
    path = tmp_path / "x.pcap"
    path.write_bytes(pcap_bytes(good + [(0xFFFFFFF0, b"y" * 64)]))
    r = tv("connections", path, "--json")
    assert r.code in (0, 2)
    assert str(path) in r.err and "frame 4" in r.err and "Traceback" not in r.err
    if r.code == 0:
        assert len(r.json()) == 3


def test_corpus_cut_short_file(tv, corpus):
    path = corpus_file(corpus, "pcap/corrupt/cut-short__ndpi_fuzz-2021-10-13.pcap")
    truth = json.loads((corpus / "MANIFEST.json").read_text())["files"]["pcap/corrupt/cut-short__ndpi_fuzz-2021-10-13.pcap"]
    r = tv("info", path, "--json")
    assert r.code == 0
    assert r.json()["frames"] == truth["packets"]
    assert f"frame {truth['packets'] + 1}" in r.err and str(path) in r.err


def test_corpus_damaged_pcapng(corpus):
    path = corpus_file(corpus, "pcap/corrupt/pcapng-bad-shb-option__libpcap_shb-option-too-long.pcapng")
    r = tv_process("connections", path.name, cwd=path.parent)
    assert r.code == 2
    line = one_line(r.err)
    assert path.name in line and "12336" in line  # the option length tshark complains about


def test_broken_har_names_line_and_column(corpus):
    path = corpus_file(corpus, BROKEN_HAR)
    try:
        json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        where = (exc.lineno, exc.colno)
    r = tv_process("requests", path.name, cwd=path.parent)
    assert r.code == 2
    line = one_line(r.err)
    assert path.name in line
    assert re.search(rf"line {where[0]}\D+{where[1]}\b", line), line
    assert r.out == ""


def test_unknown_theme_exits_2(tv):
    r = tv("handshakes", HANDSHAKES, "--theme", "neon")
    assert r.code == 2
    assert "neon" in one_line(r.err)
    assert r.out == ""


def test_unknown_chart_extension_exits_2(tv, tmp_path):
    out = tmp_path / "chart.gif"
    r = tv("handshakes", HANDSHAKES, "--chart", out)
    assert r.code == 2
    assert "chart.gif" in one_line(r.err)
    assert not out.exists()


def test_unknown_chart_extension_prints_nothing_on_stdout(tv, tmp_path):
    r = tv("handshakes", HANDSHAKES, "--json", "--chart", tmp_path / "chart.gif")
    assert r.code == 2 and r.out == ""


def test_png_without_a_browser_is_one_line(tmp_path):
    r = tv_process("handshakes", HANDSHAKES, "--chart", tmp_path / "x.png", BROWSER_PATH=str(tmp_path / "nope"))
    assert r.code != 0
    assert "BROWSER_PATH" in one_line(r.err)


# ---------------------------------------------------------------- hostile strings

@pytest.fixture(scope="module")
def hostile_pcap(tmp_path_factory) -> Path:
    """HTTP Host and URL, and a TLS SNI, carrying a terminal escape, rich markup and a script tag."""
    from scapy.all import IP, TCP, Ether, Raw, wrpcap
    from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName
    from scapy.layers.tls.handshake import TLSClientHello
    from scapy.layers.tls.record import TLS

    def connection(cport, sport, c2s, s2c, t0):
        c, s, out = "10.1.0.1", "10.1.0.2", []

        def add(src, dst, sp, dp, flags, seq, ack, t, data=b""):
            p = Ether() / IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack)
            p = p / Raw(data) if data else p
            p.time = t
            out.append(p)

        cs, ss = 100, 500
        add(c, s, cport, sport, "S", cs, 0, t0)
        add(s, c, sport, cport, "SA", ss, cs + 1, t0 + .010)
        add(c, s, cport, sport, "A", cs + 1, ss + 1, t0 + .011)
        add(c, s, cport, sport, "PA", cs + 1, ss + 1, t0 + .012, c2s)
        if s2c:
            add(s, c, sport, cport, "PA", ss + 1, cs + 1 + len(c2s), t0 + .030, s2c)
        add(c, s, cport, sport, "FA", cs + 1 + len(c2s), ss + 1 + len(s2c), t0 + .040)
        add(s, c, sport, cport, "FA", ss + 1 + len(s2c), cs + 2 + len(c2s), t0 + .050)
        add(c, s, cport, sport, "A", cs + 2 + len(c2s), ss + 2 + len(s2c), t0 + .060)
        return out

    evil = EVIL.encode()
    # A request line's target has no spaces, so the URL carries the markup without one.
    request = b"GET /" + EVIL.replace(" ", "").encode() + b" HTTP/1.1\r\nHost: " + evil + b"\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    hello = bytes(TLS(msg=[TLSClientHello(ext=[TLS_Ext_ServerName(servernames=[ServerName(servername=evil)])])]))
    path = tmp_path_factory.mktemp("hostile") / "hostile.pcap"
    wrpcap(str(path), connection(40000, 80, request, response, T0) + connection(40001, 443, hello, b"", T0 + 1))
    return path


def test_hostile_pcap_is_what_tshark_sees(hostile_pcap, tshark):
    """The fixture's ground truth: tshark decodes the hostile Host and SNI."""
    hosts = [h for (h,) in tshark_rows(tshark, hostile_pcap, ["http.host"], "http.request")]
    snis = [s for (s,) in tshark_rows(tshark, hostile_pcap, ["tls.handshake.extensions_server_name"],
                                      "tls.handshake.type==1")]
    assert hosts == [EVIL] and snis == [EVIL]


def assert_shown_escaped(r: Run, shows_strings: bool) -> None:
    assert r.code == 0, r.err
    assert "\x1b" not in r.out and "\x1b" not in r.err
    if shows_strings:
        assert "\\x1b[31m" in r.out          # the escape, spelled out
        assert "red]x[/]" in r.out           # rich markup shown as typed, not applied
        assert "<script>alert(1)" in r.out   # a terminal shows HTML as text


@pytest.mark.parametrize("command", ["requests", "tls", "timeline", "connections", "handshakes", "info"])
def test_hostile_strings_are_escaped_on_a_terminal(tv, hostile_pcap, command):
    assert_shown_escaped(tv(command, hostile_pcap), command in ("requests", "tls"))  # these show Host/URL or SNI


def test_hostile_strings_are_escaped_as_a_process(hostile_pcap):
    assert_shown_escaped(tv_process("requests", hostile_pcap), True)


def test_hostile_strings_survive_json(tv, hostile_pcap):
    reqs = tv("requests", hostile_pcap, "--json").json()
    tls = tv("tls", hostile_pcap, "--json").json()
    assert [r["host"] for r in reqs] == [EVIL]
    assert [t["sni"] for t in tls] == [EVIL]


@pytest.mark.parametrize("recipe", ["waterfall", "tls"])
def test_hostile_strings_are_escaped_in_html(tv, hostile_pcap, tmp_path, recipe):
    out = tmp_path / f"{recipe}.html"
    r = tv(recipe, hostile_pcap, "--chart", out)
    assert r.code == 0, r.err
    page = out.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in page
    assert "\x1b" not in page
    # the hostile text is there, escaped for HTML inside plotly's JSON
    assert "&lt;script&gt;alert(1)" in page


# ---------------------------------------------------------------- charts

def test_chart_html_is_self_contained(tv, tmp_path):
    out = tmp_path / "ladder.html"
    r = tv("handshakes", HANDSHAKES, "--chart", out)
    assert r.code == 0, r.err
    page = out.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<html") or page.lstrip().lower().startswith("<!doctype html")
    assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", page)
    assert "Plotly.newPlot" in page and len(page) > 1_000_000  # plotly.js is inlined
    server = bundled_facts("tcp-handshakes")["facts"]["connections"][0]["server"].rpartition(":")[0]
    assert server in page  # the recorded server is drawn
    assert str(out) in r.err or out.name in r.err
    assert "chart written" not in r.out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_chart_png_talk_theme(tv, tmp_path):
    if not (os.environ.get("BROWSER_PATH") or shutil.which("chromium") or shutil.which("google-chrome")
            or shutil.which("chromium-browser")):
        pytest.skip("no Chromium/Chrome for kaleido (set BROWSER_PATH)")
    out = tmp_path / "talk.png"
    r = tv("handshakes", HANDSHAKES, "--chart", out, "--theme", "talk")
    assert r.code == 0, r.err
    w, h = png_size(out)
    assert w * 9 == h * 16 and w >= 1920  # the talk theme: 16:9, full HD


def test_theme_talk_html_has_large_type(tv, tmp_path):
    light, talk = tmp_path / "light.html", tmp_path / "talk.html"
    assert tv("handshakes", HANDSHAKES, "--chart", light).code == 0
    assert tv("handshakes", HANDSHAKES, "--chart", talk, "--theme", "talk").code == 0

    def base_font(page: str) -> float:
        sizes = [float(s) for s in re.findall(r'"font":\{[^{}]*?"size":([\d.]+)', page)]
        assert sizes
        return max(sizes)

    assert base_font(talk.read_text()) >= 20 > 0
    assert base_font(talk.read_text()) > base_font(light.read_text())


# ---------------------------------------------------------------- recipes

def test_recipe_runs_standalone_like_the_cli(tv):
    script = ROOT / "recipes" / "handshakes.py"
    env = subprocess_env()
    for extra in (["--json"], []):
        alone = subprocess.run([sys.executable, str(script), str(HANDSHAKES), *extra], capture_output=True,
                               text=True, env=env, timeout=120)
        via_cli = tv("handshakes", HANDSHAKES, *extra)
        assert alone.returncode == 0 == via_cli.code, alone.stderr
        assert alone.stdout == via_cli.out
        if extra:
            assert len(strict_json(alone.stdout)) == len(expected_servers())


USER_RECIPE = '''"""How many connections, counted by a user's recipe?"""
import pandas as pd
from traceviz.recipe import Finding

NAME = "mine"


def analyze(tl):
    c = tl.connections
    rows = pd.DataFrame({"conn": c["conn"], "server": c["server"]})
    return Finding(title="Mine", question=__doc__, rows=rows, summary={"count": len(c)},
                   answer=[f"{len(c)} connections, counted by mine"])
'''


@pytest.fixture
def user_recipes(tmp_path) -> Path:
    folder = tmp_path / "my-recipes"
    folder.mkdir()
    (folder / "my_recipe.py").write_text(USER_RECIPE)
    return folder


def expected_servers() -> list[str]:
    return [c["server"] for c in bundled_facts("tcp-handshakes")["facts"]["connections"]]


def test_user_recipe_from_recipes_option(tv, user_recipes):
    r = tv("--recipes", user_recipes, "mine", HANDSHAKES, "--json")
    assert r.code == 0, r.err
    assert [x["server"] for x in r.json()] == expected_servers()
    text = tv("--recipes", user_recipes, "mine", HANDSHAKES)
    assert f"{len(expected_servers())} connections, counted by mine" in text.out


def test_user_recipe_from_environment(tv, user_recipes, monkeypatch):
    monkeypatch.setenv("TRACEVIZ_RECIPES", str(user_recipes))
    r = tv("mine", HANDSHAKES, "--json")
    assert r.code == 0, r.err
    assert [x["server"] for x in r.json()] == expected_servers()


def test_user_recipe_by_path_with_run(user_recipes, tmp_path):
    r = tv_process("run", user_recipes / "my_recipe.py", HANDSHAKES, "--json", cwd=tmp_path)
    assert r.code == 0, r.err
    assert [x["server"] for x in r.json()] == expected_servers()


def test_recipes_lists_a_user_recipe_by_its_command_name(tv, user_recipes):
    rows = tv("--recipes", user_recipes, "recipes", "--json").json()
    assert "mine" in {r["name"] for r in rows}


def test_recipes_lists_the_bundled_ones(tv):
    rows = tv("recipes", "--json").json()
    bundled = {p.stem for p in (ROOT / "recipes").glob("*.py") if not p.name.startswith("_")}
    assert bundled <= {r["name"] for r in rows}


REFUSED_RECIPE = '''"""Which connections were refused?"""
import pandas as pd
import plotly.graph_objects as go
from traceviz.recipe import Finding

NAME = "refused"


def analyze(tl, conn=None):
    c = tl.connections if conn is None else tl.connections[tl.connections["conn"] == conn]
    rows = pd.DataFrame({"conn": c["conn"], "server": c["server"], "close": c["close"]})
    return Finding(title="Refused", question=__doc__, rows=rows,
                   problems=[f"conn {n} was refused" for n in rows.loc[rows["close"] == "refused", "conn"]],
                   figures={"bars": lambda theme: go.Figure(go.Bar(x=list(rows["conn"]), y=[1] * len(rows)))})


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
'''


@pytest.fixture
def refused_recipe(tmp_path) -> Path:
    path = tmp_path / "refused.py"
    path.write_text(REFUSED_RECIPE)
    return path


def recipe_script(path, *args, cwd) -> Run:
    """``python RECIPE.py ARGS``: the recipe file run on its own."""
    p = subprocess.run([sys.executable, str(path), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                       env=subprocess_env(), timeout=120)
    return Run(p.returncode, p.stdout, p.stderr)


def test_run_and_the_script_take_every_option_of_a_recipe_command(refused_recipe, tmp_path):
    outcomes = [c["outcome"] for c in bundled_facts("tcp-handshakes")["facts"]["connections"]]
    refused, fine = outcomes.index("refused"), outcomes.index("fin-client")
    for run in (lambda *a: tv_process("run", refused_recipe, *a, cwd=tmp_path),
                lambda *a: recipe_script(refused_recipe, *a, cwd=tmp_path)):
        r = run(HANDSHAKES, "--json", "--conn", refused)
        assert r.code == 0, r.err
        assert r.json() == [{"conn": refused, "server": expected_servers()[refused], "close": "refused"}]
        assert run(HANDSHAKES, "--json", "--conn", refused, "--fail").code == 1
        assert run(HANDSHAKES, "--json", "--conn", fine, "--fail").code == 0
        chart = tmp_path / "bars.html"
        r = run(HANDSHAKES, "--chart", chart, "--figure", "bars", "--theme", "dark")
        assert r.code == 0 and "plotly" in chart.read_text(), r.err
        r = run(HANDSHAKES, "--chart", chart, "--figure", "pie")
        assert r.code == 2 and "no figure 'pie'; this recipe draws: bars" in r.err and r.out == ""
        r = run(HANDSHAKES, "--theme", "sepia")
        assert r.code == 2 and "choose light, dark or talk" in r.err


@pytest.mark.parametrize("keys", [[], ["--rsa-key", BUNDLED / "tls12-rsa.key.pem"], ["--keylog", BUNDLED / "tls12-rsa.keys"]])
def test_run_passes_the_keys_on(tv, keys, tmp_path):
    # the manifest: the key log is not embedded; the private key alone (or the key log) decrypts it
    capture = BUNDLED / "tls12-rsa.pcapng"
    r = tv_process("run", ROOT / "recipes" / "tls.py", capture, "--json", *keys, cwd=tmp_path)
    assert r.code == 0, r.err
    assert [row["decrypted"] for row in r.json()] == [bool(keys)]
    assert r.out == tv("tls", capture, "--json", *keys).out


def test_script_runs_the_traceviz_it_was_started_with(tmp_path):
    # a folder with a traceviz of its own (an old checkout, say): the hand-over must not pick it up
    decoy = tmp_path / "traceviz"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('the decoy traceviz was imported')\n")
    r = recipe_script(ROOT / "recipes" / "handshakes.py", HANDSHAKES, "--json", cwd=tmp_path)
    assert r.code == 0, r.err
    assert [x["server"] for x in r.json()] == expected_servers()


def test_script_help_is_the_recipes_own(tmp_path):
    r = recipe_script(ROOT / "recipes" / "handshakes.py", "--help", cwd=ROOT)
    assert r.code == 0, r.err
    assert "How long did the TCP handshakes take" in r.out
    assert "recipes/handshakes.py" in r.out    # the usage line names the file as typed here
    for option in ("--json", "--chart", "--theme", "--figure", "--conn", "--keylog", "--rsa-key", "--fail"):
        assert option in r.out, option


def test_script_errors_are_the_commands(tmp_path):
    r = recipe_script(ROOT / "recipes" / "handshakes.py", tmp_path / "missing.pcap", "--json", cwd=tmp_path)
    via_cli = tv_process("handshakes", tmp_path / "missing.pcap", "--json", cwd=tmp_path)
    assert r.code == 2 == via_cli.code and r.out == "" and "missing.pcap" in r.err
    assert r.err == via_cli.err


def test_run_refuses_what_is_not_a_recipe(tmp_path):
    for path, why in ((tmp_path / "nope.py", "no such recipe file"),
                      (tmp_path / "helper.py", "defines no analyze")):
        if path.name == "helper.py":
            path.write_text("X = 1\n")
        r = tv_process("run", path, HANDSHAKES, "--json", cwd=tmp_path)
        assert r.code == 2 and r.out == "" and why in r.err and "Traceback" not in r.err, r.err


# A recipe is a command from what its file declares (NAME, docstring, analyze), read without
# running it; it is imported only when its command (or report) runs.  So a file that cannot be
# parsed, or is no recipe, is a warning on every run; one that fails when imported is an error
# of its own command, and the other commands never import it.

BROKEN_ON_IMPORT = {
    "oops.py": ("import this_module_does_not_exist_anywhere\n\n\ndef analyze(tl):\n    return None\n",
                "this_module_does_not_exist_anywhere"),
    "bug.py": ("raise RuntimeError('user bug')\n\n\ndef analyze(tl):\n    return None\n", "user bug"),
}


@pytest.fixture
def broken_recipes(tmp_path) -> Path:
    folder = tmp_path / "broken"
    folder.mkdir()
    for name, (source, _) in BROKEN_ON_IMPORT.items():
        (folder / name).write_text(source)
    (folder / "syntax.py").write_text("def analyze(tl:\n")
    (folder / "helper.py").write_text("X = 1\n")          # no analyze: not a recipe
    return folder


def test_broken_user_recipe_is_a_warning(user_recipes, broken_recipes, tmp_path):
    r = tv_process("--recipes", broken_recipes, "--recipes", user_recipes, "mine", HANDSHAKES, "--json", cwd=tmp_path)
    assert r.code == 0, r.err
    assert [x["server"] for x in r.json()] == expected_servers()
    warnings = [line for line in r.err.splitlines() if line.startswith("warning:")]
    assert any("syntax.py" in w and "never closed" in w for w in warnings), r.err
    assert any("helper.py" in w and "analyze" in w for w in warnings), r.err
    # not imported, so not known to be broken: running another command does not pay for them
    assert "oops.py" not in r.err and "bug.py" not in r.err and "Traceback" not in r.err


def test_broken_user_recipe_still_lists_the_commands(broken_recipes, tmp_path):
    r = tv_process("--recipes", broken_recipes, "--help", cwd=tmp_path)
    assert r.code == 0, r.err
    for command in ("handshakes", "oops", "bug"):
        assert re.search(rf"\b{command}\b", r.out), command
    assert "syntax.py" in r.err and "Traceback" not in r.err


@pytest.mark.parametrize("name", sorted(BROKEN_ON_IMPORT))
def test_a_recipe_that_fails_to_import_is_its_commands_error(broken_recipes, tmp_path, name):
    r = tv_process("--recipes", broken_recipes, Path(name).stem, HANDSHAKES, "--json", cwd=tmp_path)
    assert r.code == 2 and r.out == ""
    lines = r.err.strip().splitlines()
    error = [line for line in lines if not line.startswith("warning:")]
    assert len(error) == 1 and name in error[0] and BROKEN_ON_IMPORT[name][1] in error[0], r.err
    assert "Traceback" not in r.err


def test_broken_user_recipe_leaves_the_others(tv, broken_recipes):
    r = tv("--recipes", broken_recipes, "handshakes", HANDSHAKES, "--json")
    assert r.code == 0, r.err
    assert len(r.json()) == len(expected_servers())
    assert "user bug" not in r.err


def test_report_warns_of_a_recipe_that_fails_to_import(broken_recipes, tmp_path):
    page = tmp_path / "r.html"
    r = tv_process("--recipes", broken_recipes, "report", HANDSHAKES, "-o", page, cwd=tmp_path)
    assert r.code == 0, r.err
    for name, (_, why) in BROKEN_ON_IMPORT.items():
        assert any(name in line and why in line for line in r.err.splitlines() if line.startswith("warning:")), r.err
    assert sum("syntax.py" in line for line in r.err.splitlines()) == 1   # said once, not once per use
    assert "handshakes" in r.err.splitlines()[-1] and page.is_file()


# ---------------------------------------------------------------- help

@pytest.mark.parametrize("command, options", [
    ("info", ["--json", "--keylog"]),
    ("connections", ["--json", "--transport"]),
    ("timeline", ["--conn", "--layer", "--kind", "--json"]),
    ("requests", ["--json"]),
    ("captures", ["--json"]),
    ("recipes", ["--json"]),
    ("handshakes", ["--json", "--chart", "--theme", "--conn", "--keylog"]),
    ("tls", ["--json", "--chart", "--keylog"]),
    ("run", ["--json", "--chart"]),
])
def test_help(tv, command, options):
    r = tv(command, "--help")
    assert r.code == 0, r.err
    for opt in options:
        assert opt in r.out, f"{command} --help does not mention {opt}"


def test_top_level_help_lists_the_commands(tv):
    r = tv("--help")
    assert r.code == 0
    for command in ("info", "connections", "timeline", "captures", "handshakes", "requests", "run"):
        assert re.search(rf"\b{command}\b", r.out), command
