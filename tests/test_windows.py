"""A mapped capture read a window at a time (``sources/gather.windows``) reads the same.

The walks over every segment or datagram of a big mapped file read it a window
at a time and hand each window's pages back.  Here the window is one page,
on small bundled captures mapped as big ones are: the bytes, the stream plan
and every table must be what reading the whole buffer at once gives.
"""

from __future__ import annotations

import mmap
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.bundled import CAPTURES
from traceviz.decode.index import index_frames
from traceviz.decode.tcp.connections import analyze
from traceviz.sources import gather, reader
from traceviz.sources.reader import read_capture

TSHARK = shutil.which("tshark")
TABLES = ("packets", "connections", "events", "requests", "tls", "quic", "streams")


@pytest.fixture
def windowed(monkeypatch):
    """Captures mapped whatever their size, read a page at a time; ``windowed.releases``
    counts the windows handed back."""
    class State:
        releases = 0

    def counting(buf, start=0, length=None):
        State.releases += 1
        release(buf, start, length)

    release = gather.release_pages
    monkeypatch.setattr(reader, "MMAP_FROM", 0)
    monkeypatch.setattr(gather, "WINDOW", mmap.PAGESIZE)
    monkeypatch.setattr(gather, "release_pages", counting)
    return State


def _copy(tmp_path: Path, name: str) -> Path:
    """The bundled capture as a file of our own (a read lease needs its owner)."""
    path = tmp_path / f"{name}.pcapng"
    shutil.copy(CAPTURES / f"{name}.pcapng", path)
    return path


def test_peek_and_pieces_read_the_bytes_at_any_offsets(tmp_path, windowed):
    path = _copy(tmp_path, "l4-vs-l7")
    data = path.read_bytes()
    cap = read_capture(path)
    assert isinstance(cap.buf, mmap.mmap)
    rng = np.random.default_rng(7)
    offs = np.r_[rng.integers(0, len(data), 3000), [-5, 0, len(data) - 1, len(data), len(data) + 99]]
    rng.shuffle(offs)                           # out of file order: windows sorts them
    sizes = rng.integers(0, 3 * mmap.PAGESIZE, len(offs))
    got = gather.peek(cap.buf, offs, 13)
    want = [(data[o:o + 13] if o >= 0 else b"").ljust(13, b"\0") for o in offs.tolist()]
    assert [bytes(row) for row in got] == want
    got = gather.pieces(cap.buf, np.maximum(offs, 0), sizes)
    assert got == [data[o:o + n] for o, n in zip(np.maximum(offs, 0).tolist(), sizes.tolist())]
    assert windowed.releases >= len(data) // mmap.PAGESIZE - 1


def test_windows_go_through_the_file_in_order_and_hand_each_back(tmp_path, monkeypatch, windowed):
    path = _copy(tmp_path, "l4-vs-l7")
    cap = read_capture(path)
    handed: list[tuple[int, int]] = []
    monkeypatch.setattr(gather, "release_pages", lambda buf, start=0, length=None: handed.append((start, length)))
    offs = np.random.default_rng(3).integers(0, len(cap.buf), 2000)
    seen, spans = [], []
    for at in gather.windows(cap.buf, offs):
        inside = offs[at]
        span = int(inside.min()) // mmap.PAGESIZE
        assert int(inside.max()) // mmap.PAGESIZE == span          # one window of the file
        assert not handed or handed[-1][0] + handed[-1][1] <= span * mmap.PAGESIZE   # the ones before: back
        spans.append(span)
        seen += np.arange(len(offs))[at].tolist()
    assert spans == sorted(set(spans))                              # in file order, each once
    assert sorted(seen) == list(range(len(offs)))                   # every offset, once
    assert len(handed) == len(spans)
    assert handed[-1][0] + handed[-1][1] > int(offs.max())         # the last one too


def _tshark_streams(path: Path, display_filter: str) -> set[int]:
    out = subprocess.run([TSHARK, "-r", str(path), "-Y", display_filter, "-T", "fields", "-e", "tcp.stream"],
                         capture_output=True, text=True, check=True).stdout
    return {int(x) for x in out.split()}


def test_the_stream_plan_is_the_same_through_one_page_windows(tmp_path, monkeypatch, windowed):
    from traceviz.decode import streams
    path = _copy(tmp_path, "l4-vs-l7")
    with monkeypatch.context() as m:                         # read as small files are: into memory
        m.setattr(reader, "MMAP_FROM", 1 << 40)
        whole = read_capture(path)
    assert not isinstance(whole.buf, mmap.mmap)
    cap = read_capture(path)
    assert isinstance(cap.buf, mmap.mmap)
    t0, t = analyze(index_frames(whole)), analyze(index_frames(cap))
    cols0, cols = streams._tcp_columns(t0), streams._tcp_columns(t)
    assert streams._first_bytes(cols, cap.buf)[0] == streams._first_bytes(cols0, whole.buf)[0]
    before = windowed.releases
    plan0, plan = streams.plan_streams(t0, whole.buf), streams.plan_streams(t, cap.buf)
    assert windowed.releases - before >= 10         # read in many windows
    assert plan.kinds == plan0.kinds and plan.pending == plan0.pending and plan.skipped == plan0.skipped
    assert np.array_equal(plan.carrying, plan0.carrying)
    kinds = set(plan.kinds.values())
    assert {"tls", "http/1.1"} <= kinds
    if TSHARK:      # the truth of it: the connections that say ClientHello are the TLS ones
        tls = {c for c, k in plan.kinds.items() if k == "tls"}
        assert tls == _tshark_streams(path, "tls.handshake.type == 1")
        assert {c for c, k in plan.kinds.items() if k == "http/1.1"} <= _tshark_streams(path, "http.request")


@pytest.mark.parametrize("name", ["l4-vs-l7", "journey-https", "quic-h3"])
def test_every_table_is_the_same_through_one_page_windows(tmp_path, monkeypatch, windowed, name):
    """TLS, cleartext HTTP, DNS and QUIC: each walk of the file a page at a time, and the
    payload tier handing back its pages after every connection."""
    import traceviz
    from traceviz.decode import streams
    keys = CAPTURES / f"{name}.keys"
    keylog = keys if keys.exists() else None
    with monkeypatch.context() as m:                         # read as small files are: into memory
        m.setattr(reader, "MMAP_FROM", 1 << 40)
        m.setattr(gather, "WINDOW", 1 << 40)
        want = traceviz.load(_copy(tmp_path, name), keylog=keylog)
    assert windowed.releases == 0
    monkeypatch.setattr(streams, "RELEASE_EVERY", 1)
    got = traceviz.load(_copy(tmp_path, name), keylog=keylog)
    assert windowed.releases >= 4           # several walks, in windows
    for table in TABLES:
        pd.testing.assert_frame_equal(getattr(got, table), getattr(want, table), obj=table)
    assert got.source.warnings == want.source.warnings
    assert len(got.tls) + len(got.quic) + len(got.requests) > 0
