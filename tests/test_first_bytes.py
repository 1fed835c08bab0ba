"""The bytes a connection is sniffed on (``decode.streams._first_bytes``): the first three
distinct segments of each direction, in sequence order, joined until SNIFF_BYTES are there.

The numpy plan leaves out, before reading them, the segments the join would not take; a
plain loop over every segment is the judge."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from traceviz.decode import sniff, streams
from traceviz.decode.tls.session import C2S, S2C

TLS_START = 0x16      # a handshake record's first byte: every segment here could start TLS


def _judge(segments: list[tuple]) -> dict:
    """Every segment, one at a time, the way the rule reads."""
    by_dir: dict = {}
    for conn, c2s, seq, frame, data in segments:
        if data:
            by_dir.setdefault((conn, C2S if c2s else S2C), []).append((seq, frame, data))
    out = {}
    for key, segs in by_dir.items():
        segs.sort(key=lambda s: (s[0], s[1]))
        distinct = [s for i, s in enumerate(segs) if i == 0 or s[0] != segs[i - 1][0]][:3]
        have = b""
        for _, _, data in distinct:
            if len(have) < sniff.SNIFF_BYTES:
                have += data[:sniff.SNIFF_BYTES]
        out[key] = have
    return out


def _columns(segments: list[tuple]) -> tuple[dict, bytes]:
    buf = bytearray()
    offs = []
    for *_, data in segments:
        offs.append(len(buf))
        buf += data
    col = lambda i, dt: np.array([s[i] for s in segments], dtype=dt)   # noqa: E731
    lens = np.array([len(s[4]) for s in segments], dtype=np.int64)
    cols = {"conn": col(0, np.int64), "c2s": col(1, bool), "seq": col(2, np.int64), "frame": col(3, np.int64),
            "len": lens, "payload_off": np.array(offs, dtype=np.int64), "payload_cap": lens.copy()}
    return cols, bytes(buf)


@st.composite
def _segments(draw):
    segments, frame = [], 0
    for conn in range(draw(st.integers(1, 4))):
        for c2s in (True, False):
            seq = 0
            for _ in range(draw(st.integers(0, 5))):
                size = draw(st.sampled_from([0, 1, 2, 5, 30, 40, 63, 64, 65, 200]))
                again = draw(st.booleans()) and segments and segments[-1][0] == conn and segments[-1][1] == c2s
                at = segments[-1][2] if again else seq       # a retransmission: the same sequence number
                data = bytes([TLS_START]) + bytes((frame + i) % 251 for i in range(max(size - 1, 0))) \
                    if size else b""
                segments.append((conn, c2s, at, frame, data))
                frame += 1
                seq = max(seq, at + size)
    order = draw(st.permutations(range(len(segments))))   # the capture's order is not the stream's
    return [segments[i] for i in order]


@settings(max_examples=300, deadline=None)
@given(_segments())
def test_the_first_bytes_are_the_first_three_segments_joined(segments):
    cols, buf = _columns(segments)
    got, _ = streams._first_bytes(cols, buf) if segments else ({}, None)
    assert got == _judge(segments)


def test_a_short_first_segment_takes_the_next_and_a_long_one_does_not():
    segs = [(0, True, 0, 0, b"\x16" + b"a" * 9), (0, True, 10, 1, b"b" * 100), (0, True, 110, 2, b"c" * 5),
            (0, False, 0, 3, b"\x16" + b"d" * 99), (0, False, 100, 4, b"e" * 10)]
    cols, buf = _columns(segs)
    got, _ = streams._first_bytes(cols, buf)
    assert got[(0, C2S)] == b"\x16" + b"a" * 9 + b"b" * 64     # 10 bytes, then the next one's first 64
    assert got[(0, S2C)] == b"\x16" + b"d" * 63                # 64 at once: the next is never read
