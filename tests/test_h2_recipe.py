"""``traceviz h2`` and ``traceviz http-versions`` on the bundled captures, against
what the recording side logged (captures/manifest.json) and tshark; the
multiplexing charts checked from their figure data, rendered to PNG once.

* h2-multiplexing / h2c-prior-knowledge: nginx serves 12 throttled resources
  (``limit_rate 4k``, ``http2_chunk_size 4k``) to a client that asks for them
  at once: 13 streams, 12 in flight together for ~3 s, the DATA of the 12
  taking turns, ~4 KB each second.
* h2-stalls: the relay dropped one server segment inside connection 0 (its log
  says which bytes, and when every later segment arrived); the server logged
  where each frame's TLS record ended; connection 1's client logged its
  late WINDOW_UPDATEs and the DATA before and after them.
* http1-six-connections: the same 13 fetches over HTTP/1.1.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import traceviz
from traceviz.model import JSON_FIELDS

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
RECIPE = ROOT / "recipes" / "h2.py"
sys.path.insert(0, str(CAPTURES / "record"))


def facts(name: str) -> dict:
    caps = json.loads((CAPTURES / "manifest.json").read_text())["captures"]
    return next(c for c in caps if c["name"] == name)["facts"]


def recipe():
    from traceviz.recipe import load_module
    return load_module(RECIPE)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from traceviz.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


_loaded: dict = {}


def load(name: str):
    if name not in _loaded:
        _loaded[name] = traceviz.load(CAPTURES / f"{name}.pcapng")
    return _loaded[name]


# --- multiplexing, against the recording's facts ---------------------------------------------------

@pytest.mark.parametrize("name", ["h2-multiplexing", "h2c-prior-knowledge"])
def test_thirteen_streams_twelve_together_for_three_seconds(name):
    f = facts(name)
    tl = load(name)
    finding = recipe().analyze(tl)
    rows = finding.rows
    assert rows["stream"].tolist() == f["streams"]
    assert dict(zip(rows["url"].str.replace(r"^https?://[^/]+", "", regex=True), rows["resp_bytes"])) == \
        f["response_bytes"]
    assert finding.summary["max_open"] == f["max_concurrent_requests"] == 12
    # The client's own log: the 12 resources were all in flight from the last start to the first end.
    rest = [r for r in f["client_log"] if r["stream_id"] != 1]
    together = min(r["end"] for r in rest) - max(r["start"] for r in rest)
    peak, ours = recipe().concurrency(tl.events[(tl.events["layer"] == "h2") & (tl.events["conn"] == 0)])
    assert peak == 12 and ours == pytest.approx(together, abs=0.1) and 2.9 < ours < 3.2
    assert any(f"{len(f['streams'])} streams; up to 12 were open together, for 3.0" in line
               for line in finding.answer), finding.answer


@pytest.mark.parametrize("name", ["h2-multiplexing", "h2c-prior-knowledge"])
def test_the_servers_rate_limited_interleaving(name):
    """nginx: limit_rate 4k (4096 bytes a second per response) in http2_chunk_size 4k DATA frames,
    so each 12 KB response comes in turns of at most 4 KB, a second apart, between the other streams'."""
    f = facts(name)
    rows = load(name).streams
    res = rows[rows["stream"] != 1]
    rate = 4096
    for r in res.itertuples():
        assert r.turns == r.data_frames >= math.ceil(r.resp_bytes / rate), r.stream
        assert 0.85 * rate <= r.turn_bytes <= rate
        assert r.turn_gap_ms == pytest.approx(1000 * rate / rate, rel=0.05)
    assert len(res) == f["max_concurrent_requests"]
    line = next(a for a in recipe().analyze(load(name)).answer if a.startswith("The server interleaved"))
    assert "12 of the 13 responses" in line and "4 turns of 3.9 KB" in line


# --- head-of-line blocking and flow control, against the relay's and the peers' logs --------------

def test_stalled_streams_and_waits_match_the_relay_drop_log():
    f = facts("h2-stalls")
    truth = f["hol"]
    tl = load("h2-stalls")
    conn = _conn_of(tl, truth["client"])
    rows = tl.streams[tl.streams["conn"] == conn].set_index("stream")
    stalled = rows[rows["hol_stalls"] > 0]
    assert sorted(int(s) for s in stalled.index) == sorted(int(s) for s in truth["streams"])
    for sid, t in truth["streams"].items():
        r = rows.loc[int(sid)]
        assert r["hol_stall_ms"] == pytest.approx(t["wait_ms"], abs=3.0), sid   # within ~2 segments' arrival
        assert bool(r["hol_lost"]) == t["lost"], sid
    ev = tl.events
    (block,) = ev[(ev["kind"] == "hol-block") & (ev["conn"] == conn)].itertuples()
    assert block.ts == pytest.approx(truth["first_held_arrival"], abs=0.002)
    assert block.ts + block.duration == pytest.approx(truth["fill_arrival"], abs=0.002)
    assert block.size == truth["held_bytes"]
    # The fill is the frame tshark calls the retransmission of the dropped bytes.
    out = subprocess.run(["tshark", "-r", str(CAPTURES / "h2-stalls.pcapng"), "-Y",
                          f"frame.number == {block.frame}", "-T", "fields", "-e", "tcp.seq",
                          "-e", "tcp.analysis.retransmission", "-e", "tcp.analysis.fast_retransmission"],
                         capture_output=True, text=True, timeout=60).stdout.split("\t")
    assert int(out[0]) == truth["hole"]["offset"] + 1 and (out[1].strip() or out[2].strip())


def test_the_ground_truth_is_the_recorders_own_reading_of_its_logs():
    from scenarios_h2 import hol_truth
    f = facts("h2-stalls")
    records = [dict(type=t, stream=s, start=a, end=b) for t, s, a, b in f["server_records"]]
    got = hol_truth(f["relay_drop"], records, 0.025)
    assert got == {k: v for k, v in f["hol"].items() if k != "client"}


def test_window_stalls_match_the_slow_readers_log():
    """The slow reader logged each WINDOW_UPDATE it held back (100 ms after a stream's 16 KB
    window was used up); tshark shows which DATA frame used each window up and when the
    stream's next DATA came.  (The reader's own arrival times are not the yardstick: on a busy
    machine it reads its socket late; the capture's timestamps are not late.)"""
    f = facts("h2-stalls")["window_stalls"]
    tl = load("h2-stalls")
    conn = _conn_of(tl, f["client"])
    ev = tl.events
    ours = ev[(ev["kind"] == "window-stall") & (ev["conn"] == conn)].sort_values("ts")
    updates = f["stalls"]
    assert sorted(ours["stream"].astype(int)) == sorted(u["stream"] for u in updates)
    assert set(ours["size"]) == {f["window"]} and set(ours["dir"]) == {"s2c"}
    data = _tshark_data_frames("h2-stalls", conn)
    rtt = float(tl.connections.set_index("conn").loc[conn, "handshake_rtt"])
    for r in ours.itertuples():
        mine = [(frame, ts, n) for frame, ts, sid, n in data if sid == r.stream]
        total, used_up = 0, []
        for i, (frame, ts, n) in enumerate(mine):
            total += n
            if total % f["window"] == 0 and i + 1 < len(mine):
                used_up.append((frame, ts, mine[i + 1][1]))
        frame, ts, resumed = next(u for u in used_up if u[0] == r.frame)
        assert r.ts == pytest.approx(ts, abs=1e-6) and r.duration == pytest.approx(resumed - ts, abs=1e-6)
        # Held back 100 ms, then a round trip for the update to reach the server and DATA to return.
        assert r.duration >= 0.100 + rtt - 0.002
    rows = tl.streams[tl.streams["conn"] == conn].set_index("stream")
    for sid, n in rows["window_stalls"].items():
        assert n == sum(1 for u in updates if u["stream"] == sid)
    assert (rows["initial_window"] == f["window"]).all() and (rows["min_window"] == 0).all()


def _tshark_data_frames(name: str, conn: int) -> list[tuple[int, float, int, int]]:
    """(frame, time, stream, payload) of every DATA frame tshark shows on one connection."""
    out = subprocess.run(["tshark", "-r", str(CAPTURES / f"{name}.pcapng"), "-o", "tcp.reassemble_out_of_order:TRUE",
                          "-Y", f"tcp.stream == {conn} && http2.type == 0", "-T", "fields", "-e", "frame.number",
                          "-e", "frame.time_epoch", "-e", "http2.type", "-e", "http2.streamid", "-e", "http2.length"],
                         capture_output=True, text=True, timeout=60).stdout
    rows = []
    for line in out.splitlines():
        frame, ts, types, sids, lengths = line.split("\t")
        for t, sid, n in zip(types.split(","), sids.split(","), lengths.split(",")):
            if t == "0":
                rows.append((int(frame), float(ts), int(sid), int(n)))
    return rows


def test_recipe_names_the_stalls_and_fails_on_them():
    finding = recipe().analyze(load("h2-stalls"))
    hol = next(a for a in finding.answer if "head-of-line" in a)
    truth = facts("h2-stalls")["hol"]
    lost = [s for s, t in truth["streams"].items() if t["lost"]]
    assert f"held {len(truth['streams'])} streams" in hol and f"stream {lost[0]} had its own bytes in it" in hol
    assert "about 1.0 round trip" in hol
    window = [a for a in finding.answer if "(flow control)" in a]
    assert len(window) == 3 and all("16.0 KB window stopped the server" in a and "twice" in a for a in window)
    assert "about 3" in window[0]                 # 100 ms held back + one round trip of 50 ms
    assert set(finding.problems) == {hol, *window}
    assert cli("h2", "h2-stalls", "--fail").returncode == 1
    assert cli("h2", "h2-multiplexing", "--fail").returncode == 0


# --- --json ------------------------------------------------------------------------------------

def test_json_rows_have_the_documented_stable_fields():
    run = cli("h2", "h2-multiplexing", "--json")
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert [list(r)[:len(JSON_FIELDS["streams"])] for r in rows] == [JSON_FIELDS["streams"]] * len(rows)
    assert [r["stream"] for r in rows] == facts("h2-multiplexing")["streams"]
    design = (ROOT / "docs" / "design.md").read_text()
    contract = design[design.index("## The JSON contract"):].replace("\n  ", " ")
    assert "`" + ", ".join(JSON_FIELDS["streams"]) + "`" in contract


def test_browser_exports_have_no_streams():
    tl = traceviz.load(CAPTURES / "browser-page-load.har")
    assert len(tl.requests) and tl.streams.empty
    assert not recipe().applies(tl)


# --- HTTP/1.1 against HTTP/2 ------------------------------------------------------------------------

def test_http_versions_side_by_side():
    run = cli("http-versions", "http1-six-connections", "h2-multiplexing", "--json")
    assert run.returncode == 0, run.stderr
    h1, h2 = json.loads(run.stdout)
    f1, f2 = facts("http1-six-connections"), facts("h2-multiplexing")
    assert (h1["label"], h2["label"]) == ("HTTP/1.1", "HTTP/2")
    assert (h1["connections"], h2["connections"]) == (f1["client_connections"], f2["client_connections"]) == (6, 1)
    assert (h1["tcp_handshakes"], h1["tls_handshakes"], h2["handshakes"]) == (6, 6, 2)
    assert (h1["requests"], h2["requests"]) == (f1["requests"], f2["requests"])
    for row, f, name in ((h1, f1, "http1-six-connections"), (h2, f2, "h2-multiplexing")):
        # The client logged each end once the body was read; tshark shows the first SYN.
        syn = subprocess.run(["tshark", "-r", str(CAPTURES / f"{name}.pcapng"), "-Y", "tcp.flags.syn == 1 && "
                              "tcp.flags.ack == 0", "-T", "fields", "-e", "frame.time_epoch"],
                             capture_output=True, text=True, timeout=60).stdout.split()[0]
        last = max(r["end"] for r in f["client_log"])
        assert row["time_to_last_byte"] == pytest.approx(last - float(syn), abs=0.01)
    assert h2["header_bytes"] == _tshark_h2_header_bytes("h2-multiplexing")
    assert cli("http-versions", "h2-multiplexing").returncode == 2


def _tshark_h2_header_bytes(name: str) -> int:
    """HEADERS frame lengths tshark shows (no padding or priority fields in these captures)."""
    out = subprocess.run(["tshark", "-r", str(CAPTURES / f"{name}.pcapng"), "-Y", "http2.type == 1", "-T",
                          "fields", "-e", "http2.type", "-e", "http2.length"], capture_output=True, text=True,
                         timeout=60).stdout
    total = 0
    for line in out.splitlines():
        types, lengths = (col.split(",") for col in line.split("\t"))
        total += sum(int(n) for t, n in zip(types, lengths) if t == "1")
    return total


def _conn_of(tl, client: str) -> int:
    c = tl.connections
    return int(c.loc[c["client"] == client, "conn"].iloc[0])


# --- the charts, from their figure data; one PNG render for all ----------------------------------------

def _traces(fig, name):
    return [t for t in fig.data if t.name == name]


def test_multiplex_chart_lanes_marks_and_bands():
    from traceviz.charts.multiplex import multiplex
    tl = load("h2-stalls")
    truth = facts("h2-stalls")
    conn = _conn_of(tl, truth["hol"]["client"])
    fig = multiplex(tl.streams, tl.events, conn, theme="light")
    streams = truth["streams_by_connection"][truth["hol"]["client"]]
    assert fig.layout.meta["lanes"] == [f"stream {s}" for s in streams]
    assert list(fig.layout.yaxis.categoryarray) == fig.layout.meta["lanes"]
    (data,) = _traces(fig, "DATA (server)")
    lengths = _tshark_values("h2-stalls", f"tcp.stream == {conn}", "http2.length", "http2.type", "0",
                             "-o", "tcp.reassemble_out_of_order:TRUE")
    assert len(data.x) == len(lengths) == len(streams) * facts("h2-stalls")["response_bytes"]["/hol/01.txt"] // 2048
    # Marks are sized by bytes: as many sizes as DATA frame lengths.
    assert len(set(data.marker.size)) == len(set(lengths))
    bands = {(s.x0, s.x1) for s in fig.layout.shapes if s.type == "rect"}     # one band, across both panels
    assert len(bands) == 1
    (waits,) = _traces(fig, "waiting behind a TCP hole")
    assert len([x for x in waits.x if x is not None]) == 2 * len(truth["hol"]["streams"])
    (line,) = _traces(fig, "open streams")
    assert max(line.y) == len(streams)
    window = multiplex(tl.streams, tl.events, _conn_of(tl, truth["window_stalls"]["client"]), theme="dark")
    (stalls,) = _traces(window, "flow-control stall")
    assert len([x for x in stalls.x if x is not None]) == 2 * len(truth["window_stalls"]["stalls"])


def test_charts_escape_capture_strings():
    from traceviz.charts.multiplex import multiplex
    tl = load("h2-multiplexing")
    streams = tl.streams.copy()
    streams["url"] = "<img src=x onerror=alert(1)>"
    fig = multiplex(streams, tl.events, 0)
    text = json.dumps(fig.to_plotly_json(), default=str)
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text


def test_png_render_of_both_charts(tmp_path):
    from traceviz.charts import export
    finding = recipe().analyze(load("h2-multiplexing"))
    fig = finding.figure("multiplex", "talk")
    versions = recipe().compare([load("h2-multiplexing"), traceviz.load(CAPTURES / "http1-six-connections.pcapng")])
    vfig = versions.figure("versions", "light")
    paths = export.write_images([(fig, tmp_path / "mux.png"), (vfig, tmp_path / "versions.png")])
    assert [_png_size(p) for p in paths] == [(1920, 1080), (2560, 1440)]
    # What was drawn, from the figure's data: 13 lanes, one mark per DATA frame tshark shows.
    assert len(fig.layout.meta["lanes"]) == len(facts("h2-multiplexing")["streams"])
    (data,) = _traces(fig, "DATA (server)")
    assert len(data.x) == _tshark_count("h2-multiplexing", "http2.type == 0", "http2.type", "0")
    bars = [t for t in vfig.data if t.type == "bar"]
    assert len(bars) == 2 * 4 and vfig.layout.meta["files"] == ["HTTP/2", "HTTP/1.1"]


def _tshark_count(name, display, field, value) -> int:
    out = subprocess.run(["tshark", "-r", str(CAPTURES / f"{name}.pcapng"), "-Y", display, "-T", "fields",
                          "-e", field], capture_output=True, text=True, timeout=60).stdout
    return sum(line.split(",").count(value) for line in out.splitlines())


def _tshark_values(name, display, field, type_field, type_value, *options) -> list[int]:
    """``field`` of every HTTP/2 frame of one type tshark shows (frames of a packet in step)."""
    out = subprocess.run(["tshark", "-r", str(CAPTURES / f"{name}.pcapng"), *options, "-Y", display, "-T", "fields",
                          "-e", type_field, "-e", field], capture_output=True, text=True, timeout=60).stdout
    values = []
    for line in out.splitlines():
        types, vals = (col.split(",") for col in line.split("\t"))
        values += [int(v) for t, v in zip(types, vals) if t == type_value]
    return values


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_each_kind_of_trouble_on_a_connection_is_told():
    """A connection's lines tell a stream limit reached, a reset and a GOAWAY with an error (the
    filters for each are skipped on connections without that kind: they must not skip these)."""
    import pandas as pd

    from traceviz.recipe import bundled_dir, load_module
    recipe = load_module(bundled_dir() / "h2.py")
    tl = traceviz.load("h2-multiplexing")
    conn = int(tl.streams["conn"].iloc[0])
    st = tl.streams[tl.streams["conn"] == conn].copy()
    h2 = tl.events[(tl.events["layer"] == "h2") & (tl.events["conn"] == conn)]
    quiet = recipe._connection_lines(conn, st, h2, 1, 0.0, 0.01, [])
    st.loc[st.index[-1], ["rst_code", "rst_by"]] = ["INTERNAL_ERROR", "server"]
    extra = pd.DataFrame({"ts": [h2["ts"].max()] * 2, "frame": [90_001, 90_002], "conn": [conn] * 2,
                          "layer": ["h2"] * 2, "kind": ["stream-limit", "GOAWAY"], "dir": ["c2s", "s2c"],
                          "size": [100, 0], "detail": [None, "PROTOCOL_ERROR"], "duration": [0.25, None]})
    problems = []
    said = recipe._connection_lines(conn, st, pd.concat([h2, extra], ignore_index=True), 1, 0.0, 0.01, problems)
    told = [line for line in said if line not in quiet]
    assert any("reached the server's limit of 100 open streams" in line for line in told)
    assert any("was reset by the server (INTERNAL_ERROR)" in line for line in told)
    assert any("sent GOAWAY (PROTOCOL_ERROR) in frame 90002" in line for line in told)
    assert len(problems) == 2          # the reset and the GOAWAY; reaching the limit is told, not a problem


def _plain_interleaving(st) -> tuple:
    """What ``_interleaving`` reads, found the pandas way: filtered frames and their medians."""
    sent = st[st["resp_bytes"].fillna(0) > 0]
    shared = sent[sent["turns"] > 1]
    return (len(sent), len(shared), int(shared["turns"].median()) if len(shared) else None,
            float(shared["turn_bytes"].median()) if len(shared) else None,
            float(shared["turn_gap_ms"].dropna().median()) if shared["turn_gap_ms"].notna().any() else None)


def test_each_connections_peak_and_turns_are_the_ones_found_one_connection_at_a_time():
    """On every bundled and corpus capture with HTTP/2 streams: each connection's peak of open
    streams (all connections at once) is ``concurrency`` of its own frames, and what the
    interleaving line says matches the pandas filters it replaced."""
    from conftest import CORPUS
    h2 = recipe()
    paths = sorted(CAPTURES.glob("*.pcapng")) + sorted(
        p for p in CORPUS.glob("pcap/**/*.pcap*") if "corrupt" not in p.parts)
    conns = interleaved = 0
    for path in paths:
        tl = traceviz.load(path)
        if not len(tl.streams):
            continue
        frames = tl.events[tl.events["layer"] == "h2"]
        peaks = h2.concurrency_by_conn(frames)
        for c, st in tl.streams.groupby("conn"):
            assert peaks.get(c, (0, 0.0)) == h2.concurrency(frames[frames["conn"] == c]), (path.name, c)
            sent, shared, turns, size, gap = _plain_interleaving(st)
            said = " ".join(h2._interleaving(st))
            if sent < 2:
                assert said == ""
            elif not shared:
                assert f"sent the {sent} responses one after another" in said
            else:
                assert f"interleaved {shared} of the {sent} responses" in said and f"about {turns} turns" in said
                assert f"of {h2._kb(size)}" in said
                assert (f", {h2._secs(gap / 1000)} apart" in said) == (gap is not None)
                interleaved += 1
            conns += 1
    assert conns >= 12 and interleaved >= 2, (conns, interleaved)
