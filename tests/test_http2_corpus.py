"""HTTP/2 on real captures against tshark's dissection of the same files.

HTTP/2 events come from the payload tier (``decode.streams``): TLS
connections are opened with the capture's embedded secrets or its ``.keys``
file; h2c by Upgrade goes through ``UpgradeConnection``.  tshark (run here, with the same keys)
gives per TCP connection and HTTP/2 stream: method, path, status and the
frame each HEADERS frame is shown in.  The corpus MANIFEST's per-connection
frame-type counts and the bundled captures' manifest facts are checked too.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

import traceviz
from traceviz.assemble.http import h2_kind
from traceviz.decode.http.http2 import DataReceived, HeadersReceived, HTTP2Connection, ParseError, Upgraded, exchanges
from traceviz.decode.http.upgrade import UpgradeConnection

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"

CORPUS_H2 = {
    "pcap/http2/h2c-prior-knowledge-doh__suricata-verify_dns-over-http2-post.pcap": [],
    "pcap/http2/h2c-upgrade__scapy_http2_h2c.pcap": [],
    "pcap/http2/h2c-range-5conns__suricata-verify_http2-range.pcap": [],
}
BUNDLED = {
    "h2-multiplexing.pcapng": [],
    "h2c-prior-knowledge.pcapng": [],   # found by tshark's heuristic dissector
    "browser-page-load.pcapng": [],
    # a dropped segment: tshark dissects the bytes behind it once the retransmission fills the hole
    "h2-stalls.pcapng": ["-o", "tcp.reassemble_out_of_order:TRUE"],
}
KINDS = {"0": "DATA", "1": "HEADERS", "2": "PRIORITY", "3": "RST_STREAM", "4": "SETTINGS", "5": "PUSH_PROMISE",
         "6": "PING", "7": "GOAWAY", "8": "WINDOW_UPDATE", "9": "CONTINUATION"}


# --- our side ----------------------------------------------------------------------------

def decode_capture(path: Path, keylog_file: Path | None = None) -> dict[int, list]:
    """{tcp.stream: HTTP/2 events} for every connection that speaks HTTP/2, from the payload tier."""
    from traceviz.decode.index import index_frames
    from traceviz.decode.streams import decode_streams
    from traceviz.decode.tcp.connections import analyze
    from traceviz.decode.tls.keylog import KeyLog
    from traceviz.sources.reader import read_capture

    cap = read_capture(path)
    keylog = KeyLog.from_dsb(cap.secrets) if cap.secrets else None
    if keylog_file:
        keylog = KeyLog.from_text(Path(keylog_file).read_bytes(), str(keylog_file))
    payload = decode_streams(analyze(index_frames(cap)), cap.buf, keylog)
    out = {}
    for conn, result in payload.results.items():
        if result.tls is not None:                 # TLS: decrypted application data feeds HTTP/2
            assert result.tls.alpn == "h2", f"connection {conn}: ALPN {result.tls.alpn}"
        machine = result.http
        if isinstance(machine, UpgradeConnection):  # HTTP/1.1, perhaps upgrading to h2c
            machine = machine.http2
        if isinstance(machine, HTTP2Connection):
            out[conn] = machine.events
    return out


def our_streams(events) -> dict[int, dict]:
    rows = {}
    for ex in exchanges(events):
        rows[ex.stream] = {"method": ex.method, "path": ex.path, "status": ex.status}
    return rows


# --- tshark's side -------------------------------------------------------------------------

def tshark_frames(tshark: str, path: Path, extra: list[str]) -> list[dict]:
    """One dict per HTTP/2 frame tshark shows: tcp stream, frame number, type, stream id, headers."""
    cmd = [tshark, "-r", str(path), "-Y", "http2", "-T", "json", "-J", "frame tcp http2",
           "--no-duplicate-keys", *extra]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-500:]
    out = []
    for pkt in json.loads(run.stdout or "[]"):
        layers = pkt["_source"]["layers"]
        tcp_stream = int(_one(layers["tcp"]["tcp.stream"]))
        number = int(_one(layers["frame"]["frame.number"]))
        for layer in _many(layers.get("http2")):
            for s in _many(layer.get("http2.stream")):
                if "http2.type" not in s:
                    continue          # the connection preface
                headers = {h.get("http2.header.name"): h.get("http2.header.value")
                           for h in _many(s.get("http2.header"))}
                padded = _one(s.get("http2.flags_tree", {}).get("http2.flags.padded", "0")) == "1"
                payload = int(_one(s["http2.length"])) - (int(_one(s["http2.pad_length"])) + 1 if padded else 0)
                out.append({"conn": tcp_stream, "frame": number, "type": KINDS.get(_one(s["http2.type"]), "?"),
                            "stream": int(_one(s["http2.streamid"])), "headers": headers, "payload": payload})
    return out


def _one(v):
    return v[0] if isinstance(v, list) else v


def _many(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def tshark_streams(frames: list[dict]) -> dict[int, dict[int, dict]]:
    per: dict[int, dict[int, dict]] = {}
    for f in frames:
        if f["type"] != "HEADERS":
            continue
        row = per.setdefault(f["conn"], {}).setdefault(f["stream"], {"method": None, "path": None, "status": None})
        h = f["headers"]
        if ":method" in h:
            row["method"], row["path"] = h[":method"], h.get(":path")
        if ":status" in h and row["status"] is None and not h[":status"].startswith("1"):
            row["status"] = int(h[":status"])
    return per


# --- the comparison --------------------------------------------------------------------------

def compare(ours: dict[int, list], frames: list[dict]):
    theirs = tshark_streams(frames)
    assert set(ours) == set(theirs), "the same connections carry HTTP/2"
    for conn, events in ours.items():
        mine = our_streams(events)
        # Streams that only carried PRIORITY (Firefox's priority tree) are no exchange for either side.
        assert set(mine) == set(theirs[conn]), f"connection {conn}: streams"
        for sid, t in theirs[conn].items():
            m = mine[sid]
            assert m["status"] == t["status"], f"connection {conn} stream {sid}: status"
            if t["method"] is not None:
                assert (m["method"], m["path"]) == (t["method"], t["path"]), f"connection {conn} stream {sid}"
        # Each HEADERS frame sits in the frame tshark shows it in.
        their_headers = Counter((f["frame"], f["stream"]) for f in frames if f["conn"] == conn
                                and f["type"] == "HEADERS")
        my_headers = Counter((e.frame, e.stream) for e in events if type(e) is HeadersReceived)
        assert my_headers == their_headers, f"connection {conn}: HEADERS frames"
        # DATA: the same frames, and the same payload (padding excluded) per frame.
        their_data = Counter((f["frame"], f["stream"], f["payload"]) for f in frames if f["conn"] == conn
                             and f["type"] == "DATA")
        my_data = Counter((e.frame, e.stream, e.length) for e in events if isinstance(e, DataReceived))
        assert my_data == their_data, f"connection {conn}: DATA frames"
        assert not [e for e in events if isinstance(e, ParseError)]


@pytest.mark.parametrize("name", sorted(CORPUS_H2))
def test_corpus_against_tshark(corpus, tshark, name):
    path = corpus / name
    ours = decode_capture(path)
    compare(ours, tshark_frames(tshark, path, CORPUS_H2[name]))


@pytest.mark.parametrize("name", sorted(CORPUS_H2))
def test_corpus_frame_counts_match_manifest(corpus, name):
    facts = json.loads((corpus / "MANIFEST.json").read_text())["files"][name]["http2"]
    ours = decode_capture(corpus / name)
    assert {str(c) for c in ours} == set(facts["per_connection"])
    for conn, events in ours.items():
        want = facts["per_connection"][str(conn)]
        counted = Counter(h2_kind(e) for e in events if not isinstance(e, Upgraded))
        got = {k: counted[k] for k in want["frame_types"]}
        assert got == want["frame_types"], f"connection {conn}"
        statuses = Counter(str(ex.status) for ex in exchanges(events) if ex.status is not None)
        assert dict(statuses) == want["status_codes"]


@pytest.mark.parametrize("name", ["pcap/http2/h2c-upgrade__scapy_http2_h2c.pcap",
                                  "pcap/http2/h2c-range-5conns__suricata-verify_http2-range.pcap"])
def test_upgrade_stream_1_is_the_http1_request(corpus, tshark, name):
    """tshark shows the upgraded request as HTTP/1.1; our stream 1 carries it."""
    path = corpus / name
    run = subprocess.run([tshark, "-r", str(path), "-Y", "http.request and http.upgrade", "-T", "fields",
                          "-e", "tcp.stream", "-e", "frame.number", "-e", "http.request.method", "-e",
                          "http.request.uri", "-e", "http.host"], capture_output=True, text=True, timeout=60)
    upgrades = {int(c): (int(f), m, u, h) for c, f, m, u, h in
                (line.split("\t") for line in run.stdout.splitlines() if line)}
    ours = decode_capture(path)
    assert set(ours) == set(upgrades)
    for conn, events in ours.items():
        frame, method, uri, host = upgrades[conn]
        (up,) = [e for e in events if isinstance(e, Upgraded)]
        assert (up.stream, up.frame, up.header(":authority")) == (1, frame, host)
        first = our_streams(events)[1]
        assert (first["method"], first["path"]) == (method, uri)


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_against_tshark(tshark, name):
    path = CAPTURES / name
    compare(decode_capture(path), tshark_frames(tshark, path, BUNDLED[name]))


@pytest.mark.parametrize("name", ["h2-multiplexing", "browser-page-load"])
def test_bundled_keylog_file_against_tshark(tshark, name):
    path, keys = CAPTURES / f"{name}.pcapng", CAPTURES / f"{name}.keys"
    ours = decode_capture(path, keylog_file=keys)
    compare(ours, tshark_frames(tshark, path, ["-o", f"tls.keylog_file:{keys}"]))


def _manifest(name: str) -> dict:
    caps = json.loads((CAPTURES / "manifest.json").read_text())["captures"]
    return next(c for c in caps if c["name"] == name)["facts"]


@pytest.mark.parametrize("name", ["h2-multiplexing", "h2c-prior-knowledge"])
def test_bundled_manifest_facts(name):
    facts = _manifest(name)
    (events,) = decode_capture(CAPTURES / f"{name}.pcapng").values()
    exs = exchanges(events)
    assert [ex.stream for ex in exs] == facts["streams"]
    assert {ex.path: ex.resp_bytes for ex in exs} == facts["response_bytes"]
    assert dict(Counter(str(ex.status) for ex in exs)) == facts["statuses"]
    # Twelve requests in flight at once: every res-* stream opened before any finished.
    rest = [ex for ex in exs if ex.stream != 1]
    assert max(ex.start for ex in rest) < min(ex.end for ex in rest)
    assert len(rest) == facts["max_concurrent_requests"]
    # Our start is when the HEADERS frame reached the capture point, after the client logged its start.
    for ex, logged in zip(exs, facts["client_log"]):
        assert ex.start >= logged["start"] - 0.001 and ex.end <= logged["end"] + 0.06


# --- end to end: traceviz.load on the browser capture, against its HAR and manifest --------------

def test_browser_capture_requests_match_har_and_manifest():
    facts = _manifest("browser-page-load")
    har = json.loads((CAPTURES / "browser-page-load.har").read_text())["log"]["entries"]
    tl = traceviz.load(CAPTURES / "browser-page-load.pcapng")
    rq = tl.requests
    assert len(rq) == len(har) == facts["requests"]
    assert sorted(rq["url"]) == sorted(e["request"]["url"] for e in har) == sorted(facts["urls"])
    by_url = {e["request"]["url"]: e for e in har}
    for row in rq.itertuples():
        entry = by_url[row.url]
        assert (row.method, int(row.status)) == (entry["request"]["method"], entry["response"]["status"])
        assert row.protocol == "h2" and entry["response"]["httpVersion"] == "HTTP/2.0"
        # Uncompressed bodies: the DATA payload is the HAR's content size.
        assert int(row.resp_bytes) == entry["response"]["content"]["size"]
    assert dict(Counter(str(int(s)) for s in rq["status"])) == facts["statuses"]
    # One connection carries them all, and it is the one the server logged.
    assert rq["conn"].nunique() == facts["server_connections"] == 1
    (conn,) = set(rq["conn"])
    c = tl.connections.set_index("conn").loc[conn]
    assert [c["client"]] == facts["server_connection_clients"]
    assert c["app"] == "h2" and c["alpn"] == "h2"
    assert {f"{e['serverIPAddress']}:{e['_serverPort']}" for e in har} == {c["server"]}
    assert sorted(rq["stream"]) == list(range(1, 2 * len(rq), 2))
    # HTTP/2 rows reach the events table too.
    h2_events = tl.events[tl.events["layer"] == "h2"]
    assert (h2_events["kind"] == "HEADERS").sum() == 2 * len(rq)
    assert (h2_events["conn"] == conn).all()


@pytest.mark.parametrize("name", ["pcap/http2/h2c-upgrade__scapy_http2_h2c.pcap",
                                  "pcap/http2/h2c-range-5conns__suricata-verify_http2-range.pcap"])
def test_load_follows_h2c_upgrade_end_to_end(corpus, tshark, name):
    """``traceviz.load``: connections tshark sees switch to HTTP/2 are h2c, their
    101 exchange is stream 1's row, and every status tshark shows is there."""
    path = corpus / name
    frames = tshark_frames(tshark, path, [])
    switched = {f["conn"] for f in frames}
    run = subprocess.run([tshark, "-r", str(path), "-Y", "http.response", "-T", "fields", "-e", "tcp.stream",
                          "-e", "http.response.code"], capture_output=True, text=True, timeout=60)
    h1_status = {int(c): int(s) for c, s in (line.split("\t") for line in run.stdout.splitlines() if line)}
    tl = traceviz.load(path)
    apps = dict(zip(tl.connections["conn"], tl.connections["app"]))
    assert {c for c, a in apps.items() if a == "h2c"} == switched
    assert {c for c, a in apps.items() if a == "http/1.1"} == set(h1_status) - switched
    rq = tl.requests
    for conn, streams in tshark_streams(frames).items():
        mine = rq[rq["conn"] == conn]
        assert set(mine["protocol"]) == {"h2"} and 101 not in set(mine["status"])
        assert {int(s): r["status"] for s, r in streams.items()} == dict(zip(mine["stream"].astype(int),
                                                                            mine["status"].astype(int)))
    for conn in set(h1_status) - switched:
        (status,) = rq.loc[rq["conn"] == conn, "status"]
        assert status == h1_status[conn]


# --- the streams table and the h2 events rows (traceviz.load) against tshark and the MANIFEST ------

STREAM_FILES = [f"corpus:{n}" for n in sorted(CORPUS_H2)] + [f"captures:{n}" for n in sorted(BUNDLED)]


@pytest.mark.parametrize("where", STREAM_FILES)
def test_streams_table_against_tshark(corpus, tshark, where):
    """Per connection: the stream ids, each stream's DATA frames and status, and the frame-type
    counts of the events table equal tshark's (and the corpus MANIFEST's ``http2.per_connection``)."""
    kind, name = where.split(":", 1)
    path = (corpus if kind == "corpus" else CAPTURES) / name
    # Bytes behind a lost segment are dissected once the retransmission fills the hole.
    frames = tshark_frames(tshark, path, ["-o", "tcp.reassemble_out_of_order:TRUE"])
    theirs = tshark_streams(frames)
    tl = traceviz.load(path)
    h2_events = tl.events[(tl.events["layer"] == "h2") & tl.events["kind"].isin(list(KINDS.values()))]
    assert set(tl.streams["conn"]) == {f["conn"] for f in frames}
    for conn in sorted({f["conn"] for f in frames}):
        fs = [f for f in frames if f["conn"] == conn]
        mine = tl.streams[tl.streams["conn"] == conn].set_index("stream")
        ids = {f["stream"] for f in fs if f["stream"]}
        assert set(mine.index) == ids, f"connection {conn}: stream ids"
        data = Counter(f["stream"] for f in fs if f["type"] == "DATA")
        assert {int(s): int(n) for s, n in mine["data_frames"].items()} == {s: data[s] for s in ids}
        status = {s: r["status"] for s, r in theirs.get(conn, {}).items()}
        assert {int(s): (None if pd.isna(v) else int(v)) for s, v in mine["status"].items() if s in status} == status
        counted = Counter(h2_events.loc[h2_events["conn"] == conn, "kind"])
        assert dict(counted) == dict(Counter(f["type"] for f in fs if f["type"] != "CONTINUATION")), \
            f"connection {conn}: frame types"
        if kind == "corpus":
            want = json.loads((corpus / "MANIFEST.json").read_text())["files"][name]["http2"]["per_connection"][str(conn)]
            assert sorted(int(s) for s in mine.index) == want["stream_ids"]
            assert {k: counted[k] for k in want["frame_types"]} == want["frame_types"]
