"""qlog files and folders: what they load into, against the files themselves and tshark.

Ground truth: the raw JSON of each qlog, counted here without our reader;
tshark's reading of the packet capture each qlog was made from (the corpus
MANIFEST, or tshark run here); and the recording side's logs of the bundled
``quic-h3`` pair (captures/manifest.json).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile
import traceviz
from traceviz.errors import InputError
from traceviz.sources import jsonfile, kind_of
from traceviz.sources.qlog import read_qlog

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
QLOG_DIR = CAPTURES / "quic-h3.qlog"
CORPUS = Path(os.environ.get("TRACEVIZ_CORPUS", ROOT / "tests" / "corpus"))
CORPUS_QLOGS = sorted((CORPUS / "qlog").glob("*.qlog"))
H3 = {"http", "h3", "qpack"}


# ---------------------------------------------------------------- the raw files, read by hand

def raw_events(path: Path) -> list[tuple[str, str, dict]]:
    """(vantage, category, name, data) of every event of every trace of a qlog JSON file."""
    doc = json.loads(path.read_text())
    out = []
    for trace in doc["traces"]:
        vantage = trace["vantage_point"]["type"]
        fields = trace.get("event_fields")
        for e in trace["events"]:
            if fields:
                e = dict(zip(fields, e))
            if "name" in e:
                category, name = e["name"].split(":", 1)
            else:
                category, name = e["category"], e["event"]
            out.append((vantage, category.lower(), name, e.get("data") or {}))
    return out


def client_requests(events) -> list[dict]:
    """The HEADERS frames a client sent with a :method: one per request."""
    out = []
    for vantage, category, name, data in events:
        frame = data.get("frame") or {}
        if category in H3 and frame.get("frame_type") == "headers" and \
                name == ("frame_created" if vantage == "client" else "frame_parsed"):
            fields = {h["name"]: h["value"] for h in frame.get("headers", frame.get("fields", []))}
            if ":method" in fields:
                out.append({"stream": data["stream_id"], **fields})
    return out


def manifest_entry(name: str) -> dict:
    doc = json.loads((CAPTURES / "manifest.json").read_text())
    return next(e for e in doc["captures"] if e["name"] == name)


def pcap_of(qlog: Path) -> Path | None:
    for ext in (".pcap", ".pcapng"):
        p = CORPUS / "pcap" / "quic" / (qlog.stem + ext)
        if p.exists():
            return p
    return None


def udp_by_port(tshark: str, capture: Path, display: str = "udp") -> dict[str, tuple[int, int]]:
    """{source port: (datagrams, UDP payload bytes)} as tshark reads the capture."""
    out = subprocess.run([tshark, "-r", str(capture), "-Y", display, "-T", "fields", "-e", "udp.srcport",
                          "-e", "udp.length"], capture_output=True, text=True, check=True, timeout=120).stdout
    counts: dict[str, list[int]] = {}
    for line in out.splitlines():
        port, length = line.split("\t")
        c = counts.setdefault(port, [0, 0])
        c[0] += 1
        c[1] += int(length) - 8
    return {k: (v[0], v[1]) for k, v in counts.items()}


# ---------------------------------------------------------------- corpus qlogs

@pytest.mark.parametrize("path", CORPUS_QLOGS, ids=lambda p: p.stem)
def test_corpus_qlog_counts_match_the_file(path):
    raw = raw_events(path)
    tl = traceviz.load(path)
    assert tl.source.format == "qlog" and not tl.warnings
    # one network trace per connection (or more, for a Retry): every event is one row, once
    assert len(tl.events) == len(raw)
    quic = tl.events[tl.events["layer"] == "quic"]
    assert Counter(quic["kind"]) == Counter(name for _, cat, name, _ in raw if cat not in H3)
    packets = tl.events[tl.events["kind"].isin(["packet_sent", "packet_received"])]
    assert Counter(packets["packet_type"].str.lower().str.replace("-", "")) == Counter(
        (d.get("packet_type") or d["header"]["packet_type"]).lower()
        for _, _, name, d in raw if name in ("packet_sent", "packet_received"))
    assert len(tl.requests) == len(client_requests(raw))


@pytest.mark.parametrize("path", CORPUS_QLOGS, ids=lambda p: p.stem)
def test_corpus_qlog_agrees_with_tshark_on_its_capture(corpus, path):
    capture = pcap_of(path)
    if capture is None:
        pytest.skip("no capture of this qlog in the corpus")
    facts = json.loads((corpus / "MANIFEST.json").read_text())["files"][str(capture.relative_to(corpus))]["quic"]
    tl = traceviz.load(path)
    q = tl.quic
    assert len(q) == len(tl.connections) == facts["connections"]
    assert set(q["version"]) == {v for c in facts["per_connection"].values() for v in c["versions"]}
    assert set(q["alpn"]) == set(facts["alpn_selected"])
    # pcap2qlog logs neither the ClientHello nor the server name: the SNI tshark reads from the
    # capture is nowhere in the qlog, so ours is unknown rather than made up
    text = path.read_text()
    for sni, ours in zip(facts["sni"], q["sni"]):
        assert ours == (sni if sni in text else None)
    assert (tl.connections["transport"] == "quic").all()


@pytest.mark.parametrize("path", CORPUS_QLOGS, ids=lambda p: p.stem)
def test_corpus_qlog_bytes_are_the_captures_udp_payload(tshark, path):
    """Coalesced packets add up to their datagram: each way's bytes are tshark's UDP payload bytes,
    less the packets the qlog logs without a size (pcap2qlog gives a Retry none)."""
    capture = pcap_of(path)
    if capture is None:
        pytest.skip("no capture of this qlog in the corpus")
    tl = traceviz.load(path)
    row = tl.connections.iloc[0]
    cport, sport = row["client"].rsplit(":", 1)[1], row["server"].rsplit(":", 1)[1]
    wire = udp_by_port(tshark, capture)
    unsized = {d.get("packet_type") for _, _, name, d in raw_events(path)
               if name in ("packet_sent", "packet_received") and "packet_size" not in d.get("header", {})}
    missing = udp_by_port(tshark, capture, "quic.long.packet_type == 3") if "retry" in unsized else {}
    assert row["bytes_c2s"] == wire[cport][1] - missing.get(cport, (0, 0))[1]
    assert row["bytes_s2c"] == wire[sport][1] - missing.get(sport, (0, 0))[1]


def test_retry_makes_two_traces_one_connection(corpus):
    """pcap2qlog starts a new trace after the Retry (the client's new destination id); the Retry's
    source id links them, so tshark's one connection stays one, with its extra round trip."""
    path = corpus / "qlog" / "quic-draft29-dsb__pcap2qlog_ngtcp2-29-dsb.qlog"
    doc = json.loads(path.read_text())
    assert len(doc["traces"]) == 2
    q = traceviz.load(path).quic.iloc[0]
    assert q["retry"] and q["rtts"] == 2 and q["version_name"] == "draft-29"


# ---------------------------------------------------------------- the bundled pair: quic-h3.pcapng + quic-h3.qlog/

def test_bundled_qlog_requests_are_the_manifests():
    e = manifest_entry("quic-h3")
    tl = traceviz.load(QLOG_DIR)
    r = tl.requests
    facts = e["facts"]
    assert len(r) == facts["requests"] == 13
    by_path = {row["path"]: row for row in facts["server_log"]}
    paths = [u.split("10.88.0.2:443", 1)[1] for u in r["url"]]
    assert sorted(paths) == sorted(by_path)
    for path, row in zip(paths, r.itertuples()):
        want = by_path[path]
        assert (row.stream, row.method, row.status, row.resp_bytes) == \
            (want["stream_id"], want["method"], want["status"], facts["response_bytes"][path])
        assert row.protocol == "h3" and row.source == "qlog"
    assert sorted(r["stream"]) == facts["streams"]
    # the client's own clock: requests start when it wrote them, end just before it saw them done
    client = {row["path"]: row for row in facts["client_log"]}
    for path, row in zip(paths, r.itertuples()):
        assert abs(row.start - client[path]["start"]) < 0.001
        assert 0 <= client[path]["end"] - row.end < 0.005
    assert (r["ttfb"] > 0).all() and (r["reused_connection"] == (r["request"] > 0)).all()


def test_bundled_qlog_is_one_connection_seen_from_the_client(tshark):
    e = manifest_entry("quic-h3")
    client_trace = next((QLOG_DIR / "client").glob("*.qlog"))
    raw_client = raw_events(client_trace)
    tl = traceviz.load(QLOG_DIR)
    assert len(tl.quic) == len(tl.connections) == e["facts"]["quic_connections"] == 1
    assert tl.source.detail["vantage"] == "client"
    assert tl.source.detail["vantage_points"] == {"client": 1, "server": 1}
    assert "server trace" in tl.source.detail["not_counted"][0]
    assert len(tl.events) == len(raw_client)               # the server's events are not counted again
    # the datagrams the client logged are the frames tshark shows each way, byte for byte
    wire = udp_by_port(tshark, CAPTURES / e["file"])
    port = str(e["facts"]["client_ports"][0])
    other = next(p for p in wire if p != port)
    c = tl.connections.iloc[0]
    assert (c["frames_c2s"], c["bytes_c2s"]) == wire[port]
    assert (c["frames_s2c"], c["bytes_s2c"]) == wire[other]
    q = tl.quic.iloc[0]
    version = subprocess.run([tshark, "-r", str(CAPTURES / e["file"]), "-Y", "quic.long.packet_type == 0",
                              "-T", "fields", "-e", "quic.version"], capture_output=True, text=True,
                             check=True).stdout.split()[0].split(",")[0]
    assert q["version"] == version and q["version_name"] == "QUIC v1"
    alpn = subprocess.run([tshark, "-r", str(CAPTURES / e["file"]), "-o", f"tls.keylog_file:{CAPTURES / e['keylog']}",
                           "-Y", "tls.handshake.type == 1 or tls.handshake.type == 8", "-T", "fields",
                           "-e", "tls.handshake.type", "-e", "tls.handshake.extensions_alpn_str"],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    offered = [line.split("\t")[1] for line in alpn if line.startswith("1\t")]
    chosen = [line.split("\t")[1] for line in alpn if not line.startswith("1\t")]
    assert q["alpn_offered"] == offered[0].split(",") and q["alpn"] == chosen[0]
    assert q["sni"] is None                  # the client connected to an IP address: no server name
    assert (q["rtts"], q["retry"], q["version_negotiation"], q["zero_rtt"]) == (1, False, False, False)
    assert q["close"] is not None and q["closed_by"] == "client"


def test_the_server_trace_alone_sees_the_same_requests():
    client = traceviz.load(QLOG_DIR / "client")
    server = traceviz.load(QLOG_DIR / "server")
    assert server.source.detail["vantage"] == "server"
    cols = ["stream", "method", "url", "status", "resp_bytes"]
    assert server.requests[cols].values.tolist() == client.requests[cols].values.tolist()
    # what one end sent the other received: the directions agree across the two vantage points
    for col in ("frames_c2s", "frames_s2c", "bytes_c2s", "bytes_s2c"):
        assert server.connections[col].iloc[0] == client.connections[col].iloc[0]


# ---------------------------------------------------------------- the forms qlog has taken

def _client_doc() -> dict:
    return json.loads(next((QLOG_DIR / "client").glob("*.qlog")).read_text())


def _json_seq(doc: dict, newline_only: bool = False) -> str:
    trace = doc["traces"][0]
    header = {"qlog_version": "0.3", "qlog_format": "NDJSON" if newline_only else "JSON-SEQ",
              "trace": {k: v for k, v in trace.items() if k != "events"}}
    sep = "" if newline_only else "\x1e"
    return "".join(sep + json.dumps(r) + "\n" for r in [header, *trace["events"]])


@pytest.mark.parametrize("newline_only", [False, True], ids=["json-seq", "ndjson"])
def test_json_seq_reads_as_the_json(tmp_path, newline_only):
    doc = _client_doc()
    p = tmp_path / "c.sqlog"
    p.write_text(_json_seq(doc, newline_only))
    if not newline_only:
        assert kind_of(str(p)) == "qlog"
    tl = traceviz.load(p)
    assert tl.source.detail["qlog_format"] == ("NDJSON" if newline_only else "JSON-SEQ")
    assert len(tl.events) == len(doc["traces"][0]["events"])
    assert len(tl.requests) == len(client_requests(raw_events(next((QLOG_DIR / "client").glob("*.qlog")))))


def test_json_seq_cut_mid_record_keeps_the_rest(tmp_path):
    doc = _client_doc()
    text = _json_seq(doc)
    p = tmp_path / "cut.sqlog"
    p.write_text(text[:text.rindex("\x1e") + 25])          # the writer died inside the last record
    tl = traceviz.load(p)
    assert len(tl.events) == len(doc["traces"][0]["events"]) - 1
    assert any("cut short" in w for w in tl.warnings)


def test_early_form_with_top_level_events(tmp_path, corpus):
    """qlog 0.1 wrote one trace's fields and events at the top level, not under ``traces``."""
    src = corpus / "qlog" / "quic-draft22-spinbit__pcap2qlog_spin_bit.qlog"
    doc = json.loads(src.read_text())
    early = {"qlog_version": "0.1", **doc["traces"][0]}
    p = tmp_path / "early.qlog"
    p.write_text(json.dumps(early))
    tl, ref = traceviz.load(p), traceviz.load(src)
    assert len(tl.events) == len(ref.events) == len(raw_events(src))
    assert tl.quic[["version", "alpn", "client", "server"]].values.tolist() == \
        ref.quic[["version", "alpn", "client", "server"]].values.tolist()


def test_gzipped_qlog_and_folder_of_them(tmp_path):
    folder = tmp_path / "logs"
    (folder / "client").mkdir(parents=True)
    src = next((QLOG_DIR / "client").glob("*.qlog"))
    (folder / "client" / (src.name + ".gz")).write_bytes(gzip.compress(src.read_bytes()))
    (folder / "notes.txt").write_text("not a qlog")
    tl = traceviz.load(folder)
    assert tl.source.compressed and len(tl.requests) == 13
    assert tl.source.detail["files"] == 1


def test_several_connections_in_one_file(tmp_path, corpus):
    a = corpus / "qlog" / "quic-draft22-h3__pcap2qlog_multi_stream.qlog"
    b = corpus / "qlog" / "quic-draft22-spinbit__pcap2qlog_spin_bit.qlog"
    doc = json.loads(a.read_text())
    doc["traces"] += json.loads(b.read_text())["traces"]
    p = tmp_path / "two.qlog"
    p.write_text(json.dumps(doc))
    tl = traceviz.load(p)
    assert len(tl.quic) == 2
    per_conn = tl.events.groupby("conn").size().to_dict()
    # ordered by start: spin_bit (2019-08-01) came before multi_stream (2019-08-04)
    assert per_conn == {0: len(raw_events(b)), 1: len(raw_events(a))}
    assert tl.quic["alpn"].tolist() == ["hq-22", "h3-22"]


def test_folder_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="directory holding no qlog files"):
        traceviz.load(empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.qlog").write_text('{"qlog_version": "0.3", "traces": [')
    with pytest.raises(InputError, match="no readable qlog file"):
        traceviz.load(bad)
    src = next((QLOG_DIR / "client").glob("*.qlog"))
    (bad / "b.qlog").write_bytes(src.read_bytes())
    tl = traceviz.load(bad)                                # one good file: loaded, the bad one named
    assert len(tl.requests) == 13 and any("a.qlog" in w and "broken JSON" in w for w in tl.warnings)


def test_qlog_is_bounded_like_har(tmp_path, monkeypatch):
    src = next((QLOG_DIR / "client").glob("*.qlog"))
    monkeypatch.setattr(jsonfile, "MAX_JSON_BYTES", 4096)
    with pytest.raises(InputError, match="refusing"):
        read_qlog(src)
    bomb = tmp_path / "bomb.qlog.gz"
    bomb.write_bytes(gzip.compress(b'{"qlog_version": "0.3", "traces": [' + b" " * 100_000 + b"]}"))
    with pytest.raises(InputError, match="refusing"):
        read_qlog(bomb)


def test_commands_work_on_a_qlog_folder(tv):
    code, out, err = tv("info", QLOG_DIR, "--json")
    assert code == 0, err
    facts = json.loads(out)
    assert facts["format"] == "qlog" and facts["vantage"] == "client" and facts["qlog_version"] == "0.3"
    assert facts["quic_versions"] == {"QUIC v1 (0x00000001)": 1}
    for cmd in (["requests", "--json"], ["connections", "--transport", "quic", "--json"],
                ["timeline", "--layer", "h3", "--json"]):
        code, out, err = tv(*cmd, QLOG_DIR)
        assert code == 0, err
        assert json.loads(out)
    h3 = json.loads(tv("timeline", "--layer", "h3", "--kind", "HEADERS", "--json", QLOG_DIR)[1])
    assert len(h3) == 26                     # each request's HEADERS and its response's, from one end


# ---------------------------------------------------------------- hostile input

# the start of the client trace as JSON and as JSON-SEQ (whose damaged records are dropped one by one)
SEEDS = [next((QLOG_DIR / "client").glob("*.qlog")).read_bytes()[:20_000], _json_seq(_client_doc()).encode()[:20_000]]
SEQ = ("\x1e" + json.dumps({"qlog_version": "0.3", "qlog_format": "JSON-SEQ",
                            "trace": {"vantage_point": {"type": "client"}}}) + "\n").encode()

json_values = hostile.json_values([
    "time", "name", "data", "header", "packet_type", "frames", "frame_type", "stream_id",
    "frame", "headers", "fin", "version", "raw", "length", "error_code", "events",
    "traces", "vantage_point", "type", "common_fields", "reference_time", "event_fields",
    "ODCID", "group_id", "relative_time", "category", "event"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.sampled_from(SEEDS).flatmap(lambda seed: hostile.damaged_copies(seed, 6)))
def test_damaged_qlog_never_a_traceback(tmp_path, data):
    p = tmp_path / "x.qlog"
    p.write_bytes(data)
    hostile.loads_or_refuses(p)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=json_values, events=st.lists(json_values, max_size=6))
def test_odd_qlog_structures_never_a_traceback(tmp_path, doc, events):
    p = tmp_path / "x.qlog"
    p.write_text(json.dumps({"qlog_version": "0.3", "traces": [doc, {"vantage_point": {"type": "client"},
                                                                     "events": events}]}))
    hostile.loads_or_refuses(p)
    s = tmp_path / "x.sqlog"
    s.write_bytes(SEQ + b"".join(b"\x1e" + json.dumps(e).encode() + b"\n" for e in events))
    hostile.loads_or_refuses(s)


def test_cli_says_one_line_for_a_broken_qlog(tmp_path):
    p = tmp_path / "broken.qlog"
    p.write_text('{"qlog_version": "0.3", "traces": [{"events": [1, 2')
    assert "broken JSON" in hostile.cli_error_line("info", p)


def test_bundled_logs_by_name(monkeypatch, tmp_path):
    """The qlog folder and NetLog shipped beside a bundled capture load by their names, from anywhere."""
    monkeypatch.chdir(tmp_path)
    assert traceviz.load("quic-h3.qlog").source.path == str(QLOG_DIR)
    assert traceviz.load("browser-page-load.netlog.json").source.format == "netlog"
    with pytest.raises(InputError, match="no such file"):
        traceviz.load("quic-h4.qlog")


def test_packet_frames_are_the_files(corpus):
    """Each packet row lists its frames' types, in order, as the qlog wrote them."""
    path = corpus / "qlog" / "quic-draft22-h3__pcap2qlog_multi_stream.qlog"
    raw = [d for _, _, name, d in raw_events(path) if name in ("packet_sent", "packet_received")]
    rows = traceviz.load(path).events
    rows = rows[rows["kind"].isin(["packet_sent", "packet_received"])]
    assert [list(f) for f in rows["frames"]] == [[f["frame_type"].upper() for f in d["frames"]] for d in raw]
    assert rows["packet_number"].tolist() == [int(d["header"]["packet_number"]) for d in raw]
