"""WebSocket (RFC 6455): the frame machine from bytes alone, fuzzed, then the bundled
``websocket-h1`` capture against its recording side's logs (the manifest) and tshark."""

from __future__ import annotations

import struct
import subprocess

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bundled import CAPTURES, entry, timeline
from traceviz.decode.http.upgrade import UpgradeConnection
from traceviz.decode.http.websocket import WebSocketConnection, WSError, WSFrame, WSMessage

CAPTURE = "websocket-h1"
KEY = b"\x11\x22\x33\x44"


def ws_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None, rsv: int = 0) -> bytes:
    """A frame as RFC 6455 section 5.2 lays it out (written from the RFC, not from the decoder)."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n, m = len(payload), 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def close_payload(code: int, reason: str) -> bytes:
    return struct.pack("!H", code) + reason.encode()


def feed(conn, d, data, chunk=None, frame=1):
    chunk = chunk or len(data) or 1
    for i in range(0, len(data), chunk):
        conn.receive(d, data[i:i + chunk], frame + i // chunk, 1.0 + i / 1e6)


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


# --- the machine ---------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [None, 1, 3, 7])
def test_lengths_masks_and_messages_whatever_the_segmenting(chunk):
    data = (ws_frame(1, b"hello", mask=KEY) + ws_frame(2, bytes(300), mask=KEY)
            + ws_frame(2, bytes(70000), mask=KEY))
    ws = WebSocketConnection()
    feed(ws, "c2s", data, chunk)
    frames = of(ws.events, WSFrame)
    assert [(f.opcode, f.length, f.masked, f.head_bytes) for f in frames] == [
        (1, 5, True, 6), (2, 300, True, 8), (2, 70000, True, 14)]
    assert frames[0].payload == b"hello"                        # unmasked
    assert frames[1].payload == bytes(125)                      # a data frame keeps a preview only
    msgs = of(ws.events, WSMessage)
    assert [(m.kind, m.length, m.frames, m.complete) for m in msgs] == [
        ("text", 5, 1, True), ("binary", 300, 1, True), ("binary", 70000, 1, True)]
    assert not of(ws.events, WSError)


def test_fragments_with_a_ping_between_them_make_one_message():
    data = (ws_frame(1, b"frag-", fin=False) + ws_frame(9, b"hb") + ws_frame(0, b"ment", fin=False)
            + ws_frame(0, b"s"))
    ws = WebSocketConnection()
    feed(ws, "s2c", data)
    msgs = of(ws.events, WSMessage)
    assert [(m.kind, m.length, m.frames, m.preview) for m in msgs] == [("text", 10, 3, b"frag-ments")]
    assert [f.kind for f in of(ws.events, WSFrame)] == ["text", "ping", "continuation", "continuation"]


def test_close_code_and_reason():
    ws = WebSocketConnection()
    feed(ws, "s2c", ws_frame(8, close_payload(1001, "server restarting")))
    feed(ws, "c2s", ws_frame(8, close_payload(1001, "server restarting"), mask=KEY))
    closes = of(ws.events, WSFrame)
    assert [(f.direction, f.close_code, f.close_reason) for f in closes] == [
        ("s2c", 1001, "server restarting"), ("c2s", 1001, "server restarting")]


def test_a_gap_inside_a_payload_is_counted_and_framing_goes_on():
    ws = WebSocketConnection()
    whole = ws_frame(2, bytes(5000))
    ws.receive("s2c", whole[:1000], 1, 1.0)
    ws.receive_gap("s2c", 2000)
    ws.receive("s2c", whole[3000:] + ws_frame(1, b"next"), 3, 1.1)
    frames = of(ws.events, WSFrame)
    assert [(f.length, f.missing) for f in frames] == [(5000, 2000), (4, 0)]
    assert [(m.length, m.complete) for m in of(ws.events, WSMessage)] == [(5000, False), (4, True)]


def test_protocol_errors_are_said_not_raised():
    ws = WebSocketConnection()
    feed(ws, "s2c", ws_frame(9, bytes(200)) + ws_frame(0, b"x") + ws_frame(3, b"?"))
    errors = [e.message for e in of(ws.events, WSError)]
    assert any("longer than 125" in m for m in errors)
    assert any("continuation frame without" in m for m in errors)
    assert any("reserved opcode 0x3" in m for m in errors)
    ws.receive("c2s", b"\x82\x7f" + b"\xff" * 8, 9, 2.0)        # 64-bit length with the top bit set
    assert any("top bit" in e.message for e in of(ws.events, WSError))
    ws.end_of_stream("s2c")


def test_stream_ending_inside_a_frame():
    ws = WebSocketConnection()
    ws.receive("s2c", ws_frame(1, b"abcdef")[:4], 1, 1.0)
    ws.end_of_stream("s2c")
    assert [e.message for e in of(ws.events, WSError)] == ["the stream ended inside a frame"]


def test_upgrade_hands_the_bytes_after_101_to_the_websocket_machine():
    req = (b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    resp = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    up = UpgradeConnection()
    # The client's first frame rides with its request; the server's with its 101.
    up.receive("c2s", req + ws_frame(1, b"hi", mask=KEY), 1, 1.0)
    up.receive("s2c", resp + ws_frame(1, b"hello"), 2, 1.1)
    up.receive("c2s", ws_frame(8, close_payload(1000, ""), mask=KEY), 3, 1.2)
    assert up.websocket is not None and up.http2 is None
    msgs = of(up.websocket.events, WSMessage)
    assert [(m.direction, m.preview) for m in msgs] == [("c2s", b"hi"), ("s2c", b"hello")]
    assert of(up.websocket.events, WSFrame)[-1].close_code == 1000


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]), st.binary(max_size=200),
                          st.one_of(st.none(), st.integers(0, 100000))), max_size=20))
def test_hostile_bytes_never_raise(chunks):
    ws = WebSocketConnection()
    for i, (d, data, gap) in enumerate(chunks):
        ws.receive(d, data, i + 1, float(i))
        if gap is not None and i % 3 == 0:
            ws.receive_gap(d, gap)
    ws.end_of_stream("c2s")
    ws.end_of_stream("s2c")
    for f in of(ws.events, WSFrame):
        assert 0 <= f.length and len(f.payload) <= 125 and 0 <= f.opcode <= 15


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 40))
def test_hostile_bytes_after_an_upgrade_never_raise(tail, chunk):
    up = UpgradeConnection()
    up.receive("c2s", b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", 1, 1.0)
    up.receive("s2c", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", 2, 1.1)
    for i in range(0, len(tail), chunk):
        up.receive("s2c" if i % 2 else "c2s", tail[i:i + chunk], 3 + i, 1.2)
    up.end_of_stream("c2s")
    up.end_of_stream("s2c")


# --- the bundled captures: the recording side's facts ---------------------------------------

H2 = "websocket-h2"


def sockets() -> list[tuple[str, str, int | None, dict]]:
    """(capture, client, stream, what the recording side logged) for every WebSocket recorded."""
    out = [(CAPTURE, c["client"], None, c["websocket"]) for c in entry(CAPTURE)["facts"]["connections"]]
    h2 = entry(H2)["facts"]
    out += [(H2, h2["connections"][0]["client"], w["stream"], w) for w in h2["websockets_h2"]]
    return out


SOCKETS = sockets()
IDS = [f"{c}{w['path']}" for c, _, _, w in SOCKETS]
FACTS = entry(CAPTURE)["facts"]["connections"]


def ws_events(capture: str, client: str, stream: int | None) -> pd.DataFrame:
    tl = timeline(capture)
    conn = int(tl.connections.loc[tl.connections["client"] == client, "conn"].iloc[0])
    ev = tl.events
    keep = (ev["layer"] == "websocket").to_numpy(dtype=bool, na_value=False) & (ev["conn"] == conn).to_numpy(
        dtype=bool, na_value=False)
    if stream is not None:
        keep &= (ev["stream"] == stream).to_numpy(dtype=bool, na_value=False)
    return ev[keep]


@pytest.mark.parametrize("capture,client,stream,ws", SOCKETS, ids=IDS)
def test_messages_match_what_each_side_sent(capture, client, stream, ws):
    ev = ws_events(capture, client, stream)
    msgs = ev[ev["kind"] == "message"].sort_values("frame")
    got = {d: [(t, int(n)) for t, n in zip(g["message_type"], g["size"])] for d, g in msgs.groupby("dir")}
    assert got.get("c2s", []) == [(m["kind"], m["size"]) for m in ws["sent"]]
    assert got.get("s2c", []) == [(m["kind"], m["size"]) for m in ws["received"]]
    parts = [m.get("parts", 1) for m in ws["sent"]]
    frames = [int(x) for x in msgs.loc[msgs["dir"] == "c2s", "frames"]]
    # websockets ends a message sent in parts with an empty final continuation frame.
    assert [f if p == 1 else f - 1 for f, p in zip(frames, parts)] == parts


@pytest.mark.parametrize("capture,client,stream,ws", SOCKETS, ids=IDS)
def test_pings_pongs_and_close_match_the_logs(capture, client, stream, ws):
    ev = ws_events(capture, client, stream)
    pings = ev[ev["kind"] == "ping"]
    assert sorted(pings.loc[pings["dir"] == "c2s", "detail"]) == sorted(p["payload"] for p in ws["client_pings"])
    assert sorted(pings.loc[pings["dir"] == "s2c", "detail"]) == sorted(p["payload"] for p in ws["server_pings"])
    pongs = ev[ev["kind"] == "pong"]
    assert pongs["duration"].notna().sum() == len(ws["client_pings"]) + len(ws["server_pings"])
    # The client's own ping: its pong crossed the whole path (the capture is at the client).
    for p in ws["client_pings"]:
        d = float(pongs.loc[(pongs["dir"] == "s2c") & (pongs["detail"] == p["payload"]), "duration"].iloc[0])
        assert abs(d * 1000 - p["rtt_ms"]) < 3
    closes = ev[ev["kind"] == "close"].sort_values("frame")
    first = closes.iloc[0]
    assert {"c2s": "client", "s2c": "server"}[first["dir"]] == ws["close"]["by"]
    assert int(first["close_code"]) == ws["close"]["code"]
    assert first["detail"].endswith(ws["close"]["reason"])
    assert len(closes) == 2 and closes.iloc[1]["dir"] != first["dir"]      # the echo


def test_h2_websockets_are_extended_connects_answered_200(tshark):
    tl = timeline(H2)
    rq = tl.requests.sort_values("stream")
    facts = entry(H2)["facts"]["websockets_h2"]
    assert list(rq["stream"]) == [w["stream"] for w in facts]
    assert list(rq["method"]) == ["CONNECT"] * len(facts)
    assert list(rq["status"]) == [w["status"] for w in facts]
    out = subprocess.run([tshark, "-r", str(CAPTURES / f"{H2}.pcapng"), "-Y", "http2.type == 0", "-T", "fields",
                          "-E", "occurrence=a", "-E", "aggregator=|", "-e", "ip.src", "-e", "http2.streamid",
                          "-e", "http2.length", "-e", "http2.type"],
                         capture_output=True, text=True, check=True).stdout
    data = {}
    client_ip = tl.connections["client"].iloc[0].split(":")[0]
    for line in out.splitlines():
        src, sids, lens, types = line.split("\t")
        for sid, n, t in zip(sids.split("|"), lens.split("|"), types.split("|")):
            if t == "0" and int(n) > 0:
                key = (int(sid), "c2s" if src == client_ip else "s2c")
                data[key] = data.get(key, 0) + 1
    # Each side wrote every WebSocket frame in a DATA frame of its own.
    ev = tl.events
    frames = ev[(ev["layer"] == "websocket").to_numpy(dtype=bool, na_value=False)
                & ~ev["kind"].isin(["message", "protocol-error"]).to_numpy(dtype=bool, na_value=False)]
    mine = frames.groupby([frames["stream"].astype(int), frames["dir"]]).size().to_dict()
    assert mine == data


def test_connections_are_websocket_and_the_handshake_is_a_101():
    tl = timeline(CAPTURE)
    assert set(tl.connections["app"]) == {"websocket"}
    assert sorted(tl.requests["url"].str.rsplit("/", n=1).str[-1]) == sorted(
        f["websocket"]["path"].lstrip("/") for f in FACTS)
    assert set(tl.requests["status"]) == {101}


def test_every_frame_matches_tshark(tshark):
    fields = ["frame.number", "websocket.opcode", "websocket.fin", "websocket.mask", "websocket.payload_length",
              "websocket.payload_length_ext_16", "websocket.payload_length_ext_64",
              "websocket.payload.close.status_code"]
    argv = [tshark, "-r", str(CAPTURES / f"{CAPTURE}.pcapng"), "-Y", "websocket", "-T", "fields",
            "-E", "occurrence=a", "-E", "aggregator=|"]
    for f in fields:
        argv += ["-e", f]
    theirs = []
    for line in subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines():
        v = dict(zip(fields, line.split("\t")))
        cols = [v[f].split("|") for f in fields[1:]]
        n = len(cols[0])
        for i in range(n):
            op, fin, mask, l7, l16, l64, code = (c[i] if i < len(c) else "" for c in cols)
            length = int(l64 or l16 or l7)
            theirs.append((int(v["frame.number"]), int(op), fin in ("1", "True"), mask in ("1", "True"), length,
                           int(code) if code else None))
    ev = timeline(CAPTURE).events
    ours = ev[(ev["layer"] == "websocket").to_numpy(dtype=bool, na_value=False) & (ev["kind"] != "message").to_numpy(dtype=bool, na_value=False)]
    mine = sorted((int(r.frame), int(r.opcode), bool(r.fin), bool(r.masked), int(r.size),
                   None if pd.isna(r.close_code) else int(r.close_code)) for r in ours.itertuples())
    assert mine == sorted(theirs)


# --- the recipe and its chart ---------------------------------------------------------------

def test_recipe_finds_what_the_logs_say():
    from traceviz.recipe import discover, load_module
    recipe = load_module(discover()["websocket"])
    tl = timeline(CAPTURE)
    assert recipe.applies(tl)
    f = recipe.analyze(tl)
    rows = f.rows.set_index("client")
    for fact in FACTS:
        r, ws = rows.loc[fact["client"]], fact["websocket"]
        assert r["tcp_close"] == fact["outcome"]
        assert abs(r["handshake_ms"] - entry(CAPTURE)["facts"]["rtt_ms"]) < 8
        assert r["messages_c2s"] == len(ws["sent"]) and r["messages_s2c"] == len(ws["received"])
        assert r["bytes_s2c"] == sum(m["size"] for m in ws["received"])
        assert r["pings_c2s"] == len(ws["client_pings"]) and r["pings_s2c"] == len(ws["server_pings"])
        assert (r["closed_by"], r["close_code"], r["close_reason"]) == (
            ws["close"]["by"], ws["close"]["code"], ws["close"]["reason"])
    assert not f.problems
    words = " ".join(f.answer)
    assert "closed it first with 1001 (going away" in words and "normal closure" in words
    with pytest.raises(Exception, match="no WebSocket on connection 7"):
        recipe.analyze(tl, conn=7)


def test_recipe_on_h2_names_each_stream():
    from traceviz.recipe import discover, load_module
    f = load_module(discover()["websocket"]).analyze(timeline(H2))
    rows = f.rows.set_index("stream")
    for w in entry(H2)["facts"]["websockets_h2"]:
        r = rows.loc[w["stream"]]
        assert (r["messages_c2s"], r["messages_s2c"]) == (len(w["sent"]), len(w["received"]))
        assert (r["closed_by"], r["close_code"]) == (w["close"]["by"], w["close"]["code"])
        assert r["url"].endswith(w["path"])
    assert "RFC 8441" in " ".join(f.answer) and not f.problems


@pytest.mark.parametrize("theme", ["light", "talk"])
def test_chart_draws_every_message_and_escapes_capture_text(theme):
    from traceviz.charts.websocket import message_timeline
    from traceviz.recipe import discover, load_module
    tl = timeline(CAPTURE)
    rows = load_module(discover()["websocket"]).analyze(tl).rows.copy()
    rows["url"] = "<script>x</script>"
    fig = message_timeline(tl.events, rows, theme=theme)
    drawn = sum(len(t.x) for t in fig.data if t.name and "message" in t.name)
    assert drawn == sum(len(f["websocket"]["sent"]) + len(f["websocket"]["received"]) for f in FACTS)
    ticks = " ".join(fig.layout.yaxis.ticktext)
    assert "<script>" not in ticks and "&lt;script&gt;" in ticks
    if theme == "talk":
        assert fig.layout.width == 1920
