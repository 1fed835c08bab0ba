"""HTTP/3 from both directions at once: frames, QPACK with a dynamic table whose
instructions arrive before, after or without the header blocks that need them.
Header blocks are made by pylsqpack's encoder, as an endpoint makes them."""

from __future__ import annotations

import pylsqpack
from aioquic.buffer import encode_uint_var as var

from traceviz.decode.http import h3
from traceviz.decode.http.h3 import DataReceived, H3Connection, HeadersReceived, Settings, StreamEnd

REQUEST = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"example.test"),
           (b":path", b"/index.html"), (b"x-long-custom-header", b"some value worth indexing")]
SETTINGS = var(0x1) + var(4096) + var(0x7) + var(16)


def frame(ftype: int, body: bytes) -> bytes:
    return var(ftype) + var(len(body)) + body


def control(settings: bytes = SETTINGS) -> bytes:
    return var(0x0) + frame(0x4, settings)


def dynamic():
    """(encoder stream bytes, header block on stream 4) for a block that needs the dynamic table:
    lsqpack inserts a header the second time it sees it."""
    enc = pylsqpack.Encoder()
    setup = enc.apply_settings(4096, 16)
    first, _ = enc.encode(0, REQUEST)
    instructions, block = enc.encode(4, REQUEST)
    return setup + first + instructions, block


def decoded(ev) -> dict:
    return dict(ev.headers)


def test_dynamic_table_instructions_first():
    instructions, block = dynamic()
    assert block[0] != 0                              # the block needs the dynamic table
    c = H3Connection()
    c.receive("s2c", 3, control(), 1, 0.1)            # the server's SETTINGS size the client's table
    c.receive("c2s", 6, var(0x2) + instructions, 2, 0.2)
    c.receive("c2s", 4, frame(0x1, block), 3, 0.3, fin=True)
    heads = [e for e in c.events if isinstance(e, HeadersReceived)]
    assert decoded(heads[0])[":path"] == "/index.html"
    assert decoded(heads[0])["x-long-custom-header"] == "some value worth indexing"
    assert heads[0].end_stream and heads[0].frame == 3


def test_blocked_block_waits_for_its_instructions_and_keeps_its_place():
    instructions, block = dynamic()
    c = H3Connection()
    c.receive("s2c", 3, control(), 1, 0.1)
    c.receive("c2s", 4, frame(0x1, block), 2, 0.2)          # before the encoder stream
    c.receive("c2s", 6, var(0x2) + instructions, 3, 0.3)
    heads = [e for e in c.events if isinstance(e, HeadersReceived)]
    assert len(heads) == 1 and heads[0].frame == 2 and decoded(heads[0])[":path"] == "/index.html"


def test_block_before_the_peers_settings_waits_for_them():
    instructions, block = dynamic()
    c = H3Connection()
    c.receive("c2s", 6, var(0x2) + instructions, 1, 0.1)
    c.receive("c2s", 4, frame(0x1, block), 2, 0.2)
    assert [e for e in c.events if isinstance(e, HeadersReceived)][0].headers is None
    c.receive("s2c", 3, control(), 3, 0.3)
    assert decoded([e for e in c.events if isinstance(e, HeadersReceived)][0])[":path"] == "/index.html"


def test_lost_instructions_leave_the_headers_undecoded_and_say_so():
    instructions, block = dynamic()
    c = H3Connection()
    c.receive("s2c", 3, control(), 1, 0.1)
    c.receive("c2s", 6, var(0x2), 2, 0.2)
    c.receive_gap("c2s", 6, len(instructions))
    c.receive("c2s", 4, frame(0x1, block), 3, 0.3)
    c.close()
    assert [e for e in c.events if isinstance(e, HeadersReceived)][0].headers is None
    assert any(isinstance(e, h3.ParseError) for e in c.events)


def test_static_table_blocks_decode_at_once():
    enc = pylsqpack.Encoder()                                # no settings: static table and literals only
    _, block = enc.encode(0, [(b":status", b"200"), (b"content-type", b"text/plain")])
    c = H3Connection()
    c.receive("s2c", 0, frame(0x1, block), 1, 0.1)
    assert decoded(c.events[0]) == {":status": "200", "content-type": "text/plain"}


def test_data_split_across_packets_and_a_late_fin():
    enc = pylsqpack.Encoder()
    _, req = enc.encode(0, REQUEST[:4])
    _, resp = enc.encode(0, [(b":status", b"200")])
    body = frame(0x0, b"x" * 5000)
    c = H3Connection()
    c.receive("c2s", 0, frame(0x1, req), 1, 0.1, fin=True)
    c.receive("s2c", 0, frame(0x1, resp) + body[:1000], 2, 0.2)
    c.receive("s2c", 0, body[1000:3000], 3, 0.3)
    c.receive("s2c", 0, body[3000:], 4, 0.4)
    c.receive("s2c", 0, b"", 5, 0.5, fin=True)
    data = [e for e in c.events if isinstance(e, DataReceived)]
    assert data[0].length == 5000 and data[0].first_frame == 2 and data[0].frame == 4
    assert isinstance(c.events[-1], StreamEnd)
    (ex,) = h3.exchanges(c.events, default_host="example.test")
    assert (ex.stream, ex.status, ex.resp_bytes, ex.end) == (0, 200, 5000, 0.5)
    assert ex.url == "https://example.test/index.html"


def test_settings_and_unknown_stream_types():
    c = H3Connection()
    c.receive("c2s", 2, control(SETTINGS + var(0x21) + var(7)), 1, 0.1)
    c.receive("c2s", 14, var(0x21) + b"grease stream bytes", 2, 0.2)   # a reserved stream type: skipped
    s = [e for e in c.events if isinstance(e, Settings)][0]
    assert ("QPACK_MAX_TABLE_CAPACITY", 4096) in s.settings and ("0x21", 7) in s.settings
    kinds = [e.kind for e in c.events if isinstance(e, h3.StreamType)]
    assert kinds == ["control", "0x21"]
