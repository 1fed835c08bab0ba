"""gRPC: the length-prefixed framing and the schema-less protobuf dump from bytes, fuzzed; then the
``grpc-h2c`` and ``grpc-tls`` captures against the client's and server's logs and tshark."""

from __future__ import annotations

import subprocess
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bundled import CAPTURES, entry, timeline
from traceviz.decode.grpc import GRPCError, GRPCMessage, GRPCStream, protobuf_fields, split_path

NAMES = ["grpc-h2c", "grpc-tls"]


def framed(msg: bytes, compressed: bool = False) -> bytes:
    return bytes([1 if compressed else 0]) + len(msg).to_bytes(4, "big") + msg


def test_protobuf_dump_without_a_schema():
    # {1: 150, 2: "testing", 3: {1: 7}} and a fixed32 (RFC-free: protobuf's encoding guide examples)
    data = b"\x08\x96\x01" + b"\x12\x07testing" + b"\x1a\x02\x08\x07" + b"\x25\x01\x00\x00\x00"
    assert protobuf_fields(data) == ((1, "varint", 150), (2, "bytes", "testing"), (3, "bytes", ((1, "varint", 7),)),
                                     (4, "fixed32", 1))
    assert protobuf_fields(b"\x12\x09ab") == ()           # a length past the end: not a message
    assert protobuf_fields(b"\x00") == ()                 # field number 0 does not exist
    assert split_path("/lab.Inventory/GetItem") == ("lab.Inventory", "GetItem")
    assert split_path("/index.html") == (None, None)


@pytest.mark.parametrize("chunk", [1, 4, 100])
def test_messages_whatever_the_data_frames(chunk):
    g = GRPCStream()
    data = framed(b"\x08\x01") + framed(b"") + framed(bytes(2000), compressed=True)
    for i in range(0, len(data), chunk):
        g.receive("s2c", data[i:i + chunk], 10 + i, 1.0 + i)
    g.end_of_stream("s2c")
    msgs = [e for e in g.events if isinstance(e, GRPCMessage)]
    assert [(m.length, m.compressed, m.complete) for m in msgs] == [(2, False, True), (0, False, True),
                                                                    (2000, True, True)]
    assert msgs[0].fields == ((1, "varint", 1),) and msgs[2].fields == ()


def test_cut_streams_say_so():
    g = GRPCStream()
    g.receive("c2s", framed(b"\x08\x01" * 10)[:8], 1, 1.0)
    g.end_of_stream("c2s")
    assert [m.complete for m in g.events if isinstance(m, GRPCMessage)] == [False]
    g = GRPCStream()
    g.receive("s2c", b"\x07\x00", 1, 1.0)
    g.receive_gap("s2c", 100)
    g.end_of_stream("s2c")
    kinds = [type(e).__name__ for e in g.events]
    assert "GRPCError" in kinds


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]), st.binary(max_size=120)), max_size=12),
       st.booleans())
def test_hostile_bytes_never_raise(chunks, gap):
    g = GRPCStream()
    for i, (d, data) in enumerate(chunks):
        g.receive(d, data, i + 1, float(i))
        if gap and i == 2:
            g.receive_gap(d, None)
    g.end_of_stream("c2s")
    g.end_of_stream("s2c")
    for e in g.events:
        assert isinstance(e, (GRPCMessage, GRPCError))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_protobuf_dump_of_anything_never_raises(data):
    fields = protobuf_fields(data)
    assert isinstance(fields, tuple) and len(fields) <= 32


# --- the captures ------------------------------------------------------------------------------

def calls(name):
    rq = timeline(name).requests
    return rq[rq["grpc_method"].notna().to_numpy(dtype=bool, na_value=False)].sort_values("start")


@pytest.mark.parametrize("name", NAMES)
def test_every_call_matches_the_client_log(name):
    facts = entry(name)["facts"]
    ev = timeline(name).events
    msgs = ev[(ev["layer"] == "grpc").to_numpy(dtype=bool, na_value=False) & (ev["kind"] == "message").to_numpy(
        dtype=bool, na_value=False)]
    rows = calls(name)
    assert len(rows) == len(facts["grpc_calls"])
    for r, f in zip(rows.itertuples(), facts["grpc_calls"]):
        assert f"/{r.grpc_service}/{r.grpc_method}" == f["path"]
        assert r.grpc_code == f["status"]
        assert (r.grpc_message if isinstance(r.grpc_message, str) else "") == f["message"]
        mine = msgs[(msgs["stream"] == r.stream).to_numpy(dtype=bool, na_value=False)]
        assert [int(x) for x in mine.loc[mine["dir"] == "s2c", "size"]] == f["replies"]
        assert [int(x) for x in mine.loc[mine["dir"] == "c2s", "size"]] == [f["request_bytes"]]
        if "stream" in f:
            assert r.stream == f["stream"]


@pytest.mark.parametrize("name", NAMES)
def test_protobuf_dump_shows_the_servers_items(name):
    items = entry(name)["facts"]["items"]
    ev = timeline(name).events
    replies = ev[(ev["layer"] == "grpc").to_numpy(dtype=bool, na_value=False) & (ev["kind"] == "message").to_numpy(
        dtype=bool, na_value=False) & (ev["dir"] == "s2c").to_numpy(dtype=bool, na_value=False)]
    for detail in replies["detail"]:
        item_id = detail.split(",")[0].split(": ")[1]
        it = items[item_id]
        assert detail == f'1: {item_id}, 2: "{it["name"]}", 3: {it["price_cents"]}'


@pytest.mark.parametrize("name", NAMES)
def test_message_lengths_match_tshark(tshark, name):
    e = entry(name)
    argv = [tshark, "-r", str(CAPTURES / e["file"]), "-Y", "grpc", "-T", "fields", "-E", "occurrence=a",
            "-E", "aggregator=|", "-e", "ip.src", "-e", "grpc.message_length"]
    if e.get("keylog"):
        argv += ["-o", f"tls.keylog_file:{CAPTURES / e['keylog']}"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    client_ip = timeline(name).connections["client"].iloc[0].split(":")[0]
    theirs = defaultdict(list)
    for line in out.splitlines():
        src, lengths = line.split("\t")
        theirs["c2s" if src == client_ip else "s2c"] += [int(x) for x in lengths.split("|") if x]
    ev = timeline(name).events
    msgs = ev[(ev["layer"] == "grpc").to_numpy(dtype=bool, na_value=False) & (ev["kind"] == "message").to_numpy(
        dtype=bool, na_value=False)].sort_values("frame")
    ours = {d: [int(x) for x in g["size"]] for d, g in msgs.groupby("dir")}
    assert ours == dict(theirs)


@pytest.mark.parametrize("name", NAMES)
def test_recipe_per_method(name):
    from traceviz.recipe import discover, load_module
    facts = entry(name)["facts"]["grpc_calls"]
    f = load_module(discover()["grpc"]).analyze(timeline(name))
    rows = f.rows.set_index("method")
    for method in {c["method"] for c in facts}:
        mine = [c for c in facts if c["method"] == method]
        r = rows.loc[method]
        assert r["calls"] == len(mine)
        want = defaultdict(int)
        for c in mine:
            want[c["status"]] += 1
        assert r["statuses"] == dict(want)
        assert r["replies_per_call"] == pytest.approx(sum(len(c["replies"]) for c in mine) / len(mine), abs=0.01)
    # The server sleeps 50 ms before each streamed reply.
    assert 45 <= rows.loc["ListItems", "reply_gap_ms"] <= 70
    assert len(f.problems) == 1 and "NOT_FOUND" in f.problems[0]
    assert "the trailers, not the status line, tell" in " ".join(f.answer)


@pytest.mark.parametrize("theme", ["light", "talk"])
def test_chart_has_a_lane_per_call(theme):
    from traceviz.charts.grpc import calls_chart
    c = calls("grpc-h2c").copy()
    c["grpc_method"] = "<i>x</i>"
    fig = calls_chart(c, timeline("grpc-h2c").events, theme=theme)
    assert len(fig.layout.yaxis.ticktext) == len(c)
    assert all("<i>" not in t for t in fig.layout.yaxis.ticktext)
    assert sum(len(t.x) for t in fig.data if t.type == "bar") == len(c)


def test_a_status_that_is_not_ascii_digits_is_no_status():
    """HPACK values are latin-1: ``"\\xb2"`` (superscript two) passes ``str.isdigit`` but not ``int``
    (found by fuzzing the trailers); such a status has no number and no name, and no traceback."""
    from types import SimpleNamespace

    from traceviz.assemble import grpc as rows
    from traceviz.decode.grpc import status_name, status_number
    from traceviz.decode.http.http2 import HeadersReceived
    assert [status_number(v) for v in ("0", "14", "\xb2", "\xb9", " 5", "-1", "", None)] == \
        [0, 14, None, None, None, None, None, None]
    assert status_name("5") == "NOT_FOUND" and status_name("\xb3") is None
    g = GRPCStream()
    g.receive("s2c", framed(b"\x08\x01"), 1, 1.0)
    trailers = HeadersReceived("s2c", 2, 1.5, 1, headers=(("grpc-status", "\xb2"), ("grpc-message", "x")))
    http = SimpleNamespace(carried={1: g}, events=[trailers])
    request = {"stream": 1, "url": "http://h/lab.Inventory/GetItem"}
    rows.annotate([request], http)
    assert (request["grpc_status"], request["grpc_code"], request["grpc_method"]) == (None, None, "GetItem")
    status = [r for r in rows.rows(1, http) if r["kind"] == "status"]
    assert status[0]["detail"] == "\xb2 ?: x"
