"""HTTP/2 streams as facts, from bytes: flow control against h2's own bookkeeping,
the HPACK census against RFC 7541's worked examples, the ``streams`` rows and
the concurrency and stream-limit facts of real conversations (both ends played
by the h2 library), and head-of-line holes from known segment layouts.

Captures (tshark, the bundled captures' manifests) are checked in
tests/test_h2_recipe.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from traceviz.assemble import h2 as h2rows
from traceviz.decode.http.flow import DEFAULT_WINDOW, FlowControl
from traceviz.decode.http.hpack_census import census
from traceviz.decode.http.http2 import DataReceived, HTTP2Connection
from traceviz.model import empty_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_http2 import Wire, needs_h2, request, respond  # noqa: E402

# --- HPACK: RFC 7541 Appendix C.3 (and C.4, the same requests Huffman-coded) -------------------

C3 = ["828684410f7777772e6578616d706c652e636f6d",
      "828684be58086e6f2d6361636865",
      "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"]
C4 = ["828684418cf1e3c2e5f23a6ba0ab90f4ff",
      "828684be5886a8eb10649cbf",
      "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"]


@pytest.mark.parametrize("blocks", [C3, C4], ids=["plain", "huffman"])
def test_hpack_census_of_rfc7541_request_examples(blocks):
    # C.3.1: three static-table fields and :authority added; C.3.2: :authority is dynamic entry 62,
    # cache-control is added; C.3.3: entry 63 (then :authority) is referenced, custom-key added.
    got = [census(bytes.fromhex(b)) for b in blocks]
    assert [(c.fields, c.indexed, c.dynamic, c.added) for c in got] == [(4, 3, 0, 1), (5, 4, 1, 1), (5, 4, 1, 1)]


def test_hpack_census_of_a_cut_block_stops_without_raising():
    assert census(bytes.fromhex(C3[2])[:7]).fields <= 5
    assert census(b"\x3f\xff\xff\xff\xff\xff").size_updates == 1     # absurd integer: the walk stops


# --- flow control --------------------------------------------------------------------------------

def _machine_windows(w: Wire):
    obs = w.observe()
    flow = FlowControl()
    states = [(ev, flow.receive(ev)) for ev in obs.events]
    return obs, flow, states


@needs_h2
def test_windows_follow_h2s_own_bookkeeping():
    """After every DATA frame the sender's stream and connection windows are what the
    sending h2 endpoint itself says they are."""
    w = Wire(client_settings={4: 20000})         # SETTINGS_INITIAL_WINDOW_SIZE for the server's streams
    request(w, 1, "/a")
    w.server.send_headers(1, [(":status", "200")])
    expected = []
    for _ in range(3):
        w.server.send_data(1, b"x" * 6000)
        w.flush()
        expected.append((w.server.local_flow_control_window(1), w.server.outbound_flow_control_window))
    _, _, states = _machine_windows(w)
    seen = [(s.stream_window, s.conn_window) for ev, s in states if isinstance(ev, DataReceived)]
    # h2's local_flow_control_window is min(stream, connection); its outbound window is the connection's.
    assert [(min(a, b), b) for a, b in seen] == expected


@needs_h2
def test_a_used_up_stream_window_is_a_stall_until_the_sender_goes_on():
    w = Wire(client_settings={4: 16384})
    request(w, 1, "/a")
    w.server.send_headers(1, [(":status", "200")])
    w.server.send_data(1, b"x" * 16384)          # the whole window: h2 will send no more
    w.flush()
    assert w.server.local_flow_control_window(1) == 0
    exhausted = len(w.log)
    w.client.increment_flow_control_window(16384, stream_id=1)
    w.client.increment_flow_control_window(16384)
    w.flush()
    update = len(w.log) - 1 if w.log[-1][0] == "c2s" else len(w.log)
    w.server.send_data(1, b"y" * 100, end_stream=True)
    w.flush()
    resume = len(w.log)
    _, flow, _ = _machine_windows(w)
    (stall,) = flow.finish()
    times = {frame: ts for _, _, frame, ts in w.log}
    assert (stall.direction, stall.stream, stall.window) == ("s2c", 1, 16384)
    assert (stall.frame, stall.resume_frame) == (exhausted, resume)
    assert stall.update_frame in (update, update + 1) and w.log[stall.update_frame - 1][0] == "c2s"
    assert stall.duration == pytest.approx(times[resume] - times[exhausted])


@needs_h2
def test_a_window_used_up_by_the_last_bytes_is_no_stall():
    w = Wire(client_settings={4: 16384})
    request(w, 1, "/a")
    w.server.send_headers(1, [(":status", "200")])
    w.server.send_data(1, b"x" * 16384, end_stream=True)
    w.flush()
    _, flow, _ = _machine_windows(w)
    assert flow.finish() == []


@needs_h2
def test_the_connection_window_stalls_every_stream_sending():
    w = Wire(client_settings={4: 1 << 20})       # big stream windows: only the connection's 64 KB binds
    for sid in (1, 3):
        request(w, sid, f"/{sid}")
        w.server.send_headers(sid, [(":status", "200")])
    for _ in range(4):
        for sid in (1, 3):
            n = min(8192, w.server.local_flow_control_window(sid))
            if n:
                w.server.send_data(sid, b"z" * n)
    w.flush()
    assert w.server.outbound_flow_control_window == 0
    used_up = len(w.log)
    w.client.increment_flow_control_window(65535)
    w.flush()
    for sid in (1, 3):
        w.server.send_data(sid, b"z" * 10, end_stream=True)
    w.flush()
    _, flow, _ = _machine_windows(w)
    (stall,) = flow.finish()
    assert (stall.stream, stall.window, stall.frame) == (0, DEFAULT_WINDOW, used_up)
    facts = h2rows.connection(0, w.observe(), _no_transport(), "https", None)
    table = h2rows.table(facts.streams).set_index("stream")
    stalled = table.loc[[1, 3], "window_stall_ms"]
    assert (stalled > 0).all() and table.loc[[1, 3], "window_stalls"].tolist() == [1, 1]


# --- the streams rows ----------------------------------------------------------------------------

def _no_transport():
    return h2rows.Transport(empty_table("packets"), empty_table("events"), [0])


@needs_h2
def test_stream_rows_of_a_real_conversation():
    w = Wire()
    request(w, 1, "/a", extra=[("priority", "u=1, i")])
    respond(w, 1, b"x" * 100)
    request(w, 3, "/b")
    w.client.prioritize(3, weight=200, depends_on=1)
    w.server.push_stream(3, 2, [(":method", "GET"), (":scheme", "https"), (":authority", "example.test"),
                                (":path", "/pushed.css")])
    w.flush()
    respond(w, 2, b"p" * 7)
    respond(w, 3, b"y" * 20000)
    request(w, 5, "/c", end_stream=False)
    w.client.reset_stream(5, error_code=8)
    w.flush()
    w.server.close_connection(error_code=0, last_stream_id=5)
    w.flush()
    obs = w.observe()
    facts = h2rows.connection(7, obs, _no_transport(), "https", None)
    t = h2rows.table(facts.streams)
    assert list(t.columns[:15]) == list(empty_table("streams").columns)
    assert list(t.columns[15:]) == h2rows.EXTRA_COLUMNS
    rows = t.set_index("stream")
    assert rows.index.tolist() == [1, 2, 3, 5] and set(rows["conn"]) == {7}
    times = {frame: ts for _, _, frame, ts in w.log}
    a = rows.loc[1]
    assert (a["method"], a["url"], a["status"], a["resp_bytes"], a["data_frames"]) == \
        ("GET", "https://example.test/a", 200, 100, 1)
    assert a["opened"] == times[int(a["first_frame"])] and a["closed"] == times[int(a["last_frame"])]
    assert (a["state"], a["closed_by"], a["priority"]) == ("closed", "end_stream", "u=1, i")
    pushed = rows.loc[2]
    assert bool(pushed["pushed"]) and pushed["promised_by"] == 3 and pushed["url"] == "https://example.test/pushed.css"
    b = rows.loc[3]
    assert (b["weight"], b["depends_on"], b["data_frames"], b["resp_bytes"]) == (200, 1, 2, 20000)
    c = rows.loc[5]
    assert (c["rst_code"], c["rst_by"], c["closed_by"], c["state"]) == ("CANCEL", "client", "rst-client", "closed")
    # HPACK: every block's wire size is counted, the decoded size is names + values.
    assert rows["req_header_bytes"].gt(0).all() and (rows["req_header_size"] > rows["req_header_bytes"]).all()
    later = rows.loc[[3, 5]]
    assert later["hpack_dynamic"].gt(0).all(), "the second request reuses the first one's dynamic entries"
    # Frame columns: one per decoder event, open streams after each.
    assert len(facts.frame_columns) == len(obs.events)
    assert max(c["open_streams"] for c in facts.frame_columns) == rows["max_open"].max()


@needs_h2
def test_open_streams_and_the_servers_stream_limit():
    """The server allows 2 streams; the client opens 2, and a third only when one closed."""
    w = Wire()
    w.server.update_settings({3: 2})            # SETTINGS_MAX_CONCURRENT_STREAMS
    w.flush()
    request(w, 1, "/1")
    request(w, 3, "/3")
    at_limit = len(w.log) - 1 if w.log[-1][0] == "c2s" else len(w.log)
    respond(w, 1, b"a" * 10)
    freed = len(w.log)
    request(w, 5, "/5")
    respond(w, 3, b"b" * 10)
    respond(w, 5, b"c" * 10)
    facts = h2rows.connection(0, w.observe(), _no_transport(), "https", None)
    rows = h2rows.table(facts.streams).set_index("stream")
    assert rows["stream_limit"].tolist() == [2, 2, 2]
    assert rows["open_at_start"].tolist() == [1, 2, 2] and rows["max_open"].tolist() == [2, 2, 2]
    limits = [r for r in facts.events if r["kind"] == "stream-limit"]
    times = {frame: ts for _, _, frame, ts in w.log}
    assert len(limits) == 2          # reached with streams 1+3, and again with 3+5
    first = limits[0]
    assert first["size"] == 2 and first["frame"] in (at_limit, at_limit + 1)
    assert first["duration"] == pytest.approx(times[freed] - first["ts"])


# --- head-of-line holes from segments ---------------------------------------------------------------

def _segments(rows):
    """One direction's segments as ``Transport.segments`` gives them: arrays in frame order."""
    rows = sorted(rows)
    return tuple(np.array([r[i] for r in rows], dtype=dt)
                 for i, dt in enumerate((np.int64, np.float64, np.int64, np.int64)))


def test_transport_groups_each_connections_payload_segments_by_direction_in_frame_order():
    pk = pd.DataFrame({"frame": [5, 1, 2, 3, 4, 6, 7], "ts": [5.0, 1.0, 2.0, 3.0, 4.0, 6.0, 7.0],
                       "conn": [0, 0, 0, 1, 0, 0, 2], "dir": ["s2c", "s2c", "c2s", "s2c", "s2c", "s2c", "s2c"],
                       "seq": [301.0, 1.0, 1.0, 1.0, 201.0, np.nan, 1.0], "len": [100, 100, 10, 50, 0, 100, 9]})
    tr = h2rows.Transport(pk, pd.DataFrame(columns=["conn", "dir", "kind", "frame"]), [0, 1])
    frames, ts, seqs, lens = tr.segments(0, "s2c")
    assert frames.tolist() == [1, 5] and seqs.tolist() == [1, 301] and ts.tolist() == [1.0, 5.0]
    assert tr.segments(0, "c2s")[0].tolist() == [2] and tr.segments(1, "s2c")[3].tolist() == [50]
    assert len(tr.segments(2, "s2c")[0]) == 0 and len(tr.segments(1, "c2s")[0]) == 0


def test_holes_from_a_lost_and_retransmitted_segment():
    # 1..101 arrives, 101..201 is lost, 201..401 arrive, then the retransmission fills the hole.
    seg = _segments([(1, 1.0, 1, 100), (3, 3.0, 201, 100), (4, 4.0, 301, 100), (5, 10.0, 101, 100),
                     (6, 11.0, 401, 100)])
    holes, in_order = h2rows._holes(seg)
    (hole,) = holes
    assert (hole.fill_frame, hole.fill_ts, hole.missing) == (5, 10.0, 100)
    assert [(s, e, f) for s, e, f, _ in hole.held] == [(201, 301, 3), (301, 401, 4)]
    assert in_order == {1: 101, 6: 501}


def test_holes_ignore_duplicates_and_a_hole_never_filled():
    seg = _segments([(1, 1.0, 1, 100), (2, 2.0, 1, 100), (3, 3.0, 101, 50), (4, 4.0, 301, 100)])
    holes, in_order = h2rows._holes(seg)
    assert holes == [] and in_order == {1: 101, 3: 151}


@needs_h2
def test_cleartext_frames_held_behind_a_hole_name_their_streams():
    """h2c: decoder offsets are TCP offsets, so which stream waited, and since when, is exact."""
    w = Wire()
    for sid in (1, 3, 5):
        request(w, sid, f"/{sid}")
        w.server.send_headers(sid, [(":status", "200")])
    w.flush()
    for sid in (1, 3, 5):
        w.server.send_data(sid, bytes(1000), end_stream=True)
    data = w.server.data_to_send()               # three DATA frames, one "segment" each below
    cuts = [0, 1009, 2018, 3027]
    c2s = b"".join(d for dd, d, _, _ in w.log if dd == "c2s")
    s2c = b"".join(d for dd, d, _, _ in w.log if dd == "s2c")
    obs = HTTP2Connection()
    obs.receive("c2s", c2s, 1, 1.0)
    obs.receive("s2c", s2c, 2, 1.1)
    base = len(s2c) + 1                          # relative seq of the first DATA byte
    # Segment 4 (stream 1's frame) is lost; 5 and 6 arrive; 7 retransmits it at t=2.0.
    segs = [(2, 1.1, 1, len(s2c))]
    arrivals = {3: 1.30, 4: 1.35}
    segs += [(3 + i, arrivals[3 + i], base + cuts[1 + i], 1009) for i in range(2)]
    segs += [(7, 2.0, base, 1009)]
    for a, b in zip(cuts, cuts[1:]):             # piece by piece, in stream order, all readable at frame 7
        obs.receive("s2c", data[a:b], 7, 2.0)
    pk = pd.DataFrame([dict(frame=f, ts=t, conn=0, dir="s2c", seq=s, len=n) for f, t, s, n in segs])
    ev = pd.DataFrame([dict(ts=1.3, frame=3, conn=0, dir="s2c", kind="lost-segment"),
                       dict(ts=2.0, frame=7, conn=0, dir="s2c", kind="retransmission")])
    facts = h2rows.connection(0, obs, h2rows.Transport(pk, ev, [0]), "http", None)
    stalls = {r["stream"]: r for r in facts.events if r["kind"] == "hol-stall"}
    assert set(stalls) == {1, 3, 5}
    assert stalls[3]["duration"] == pytest.approx(2.0 - 1.30) and stalls[5]["duration"] == pytest.approx(2.0 - 1.35)
    assert "own bytes" in stalls[1]["detail"]      # its frame was the lost segment
    (block,) = [r for r in facts.events if r["kind"] == "hol-block"]
    assert (block["frame"], block["size"]) == (7, 2018) and block["duration"] == pytest.approx(0.7)
    assert "a retransmission" in block["detail"]


def test_range_max_equals_the_brute_force_maximum():
    import numpy as np
    rng = np.random.default_rng(7)
    values = rng.integers(0, 500, 3000)
    lo = rng.integers(0, 2999, 2000)
    hi = np.minimum(lo + rng.integers(1, 1500, 2000), 3000)
    assert h2rows._range_max(values, lo, hi).tolist() == [int(values[a:b].max()) for a, b in zip(lo, hi)]
