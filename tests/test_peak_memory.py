"""What a big load lets go of, and when: the pieces that keep its peak near the file's size.

The peak of a load (issue 12: no more than the file plus 300 MB) was set twice: at the end of
the reader's walk, with every page of the file resident, and in ``finish``, with the index and
TCP tiers' columns, the payload rows as dicts and the tables all alive at once.  Each piece
here is checked for what it must not change (the values) and for what it is for (memory).
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import traceviz
from tests.bundled import CAPTURES
from traceviz import _tuning
from traceviz.assemble import keepalive, proxy
from traceviz.model import _shared_strings
from traceviz.sources import pcap, reader
from traceviz.sources.reader import read_capture

glibc = pytest.mark.skipif(_tuning._glibc_mallopt() is None, reason="glibc's malloc only")


def _write_pcap(path: Path, records: int, size: int) -> None:
    """A pcap of ``records`` Ethernet frames of ``size`` bytes (their content is noise)."""
    rng = np.random.default_rng(5)
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        body = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        for i in range(records):
            f.write(struct.pack("<IIII", 1_700_000_000 + i // 1000, i % 1000 * 1000, size, size) + body)


def _resident(path: Path) -> int:
    """Bytes of ``path``'s mapping resident in this process (its ``Rss`` in smaps)."""
    inside, total = False, 0
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1].isdigit() or line[:1] in "abcdef" and "-" in line.split()[0]:
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1]) * 1024
    return total


@glibc
@pytest.mark.parametrize("released", [True, False])
def test_the_reader_hands_back_the_pages_of_the_records_it_is_done_with(tmp_path, monkeypatch, released):
    path = tmp_path / "big.pcap"
    _write_pcap(path, 24_000, 1000)                  # 24 MB: many chunks of 1,000 records
    size = path.stat().st_size
    monkeypatch.setattr(pcap, "CHUNK", 1000)
    monkeypatch.setattr(reader, "MMAP_FROM", 0)
    monkeypatch.setattr(_tuning, "BIG_INPUT", 0)     # walked as a big file is: in a thread of its own
    if not released:
        monkeypatch.setattr(pcap, "release_pages", lambda *a, **k: None)
    with _tuning.loading(size):
        cap = read_capture(str(path))
        assert isinstance(cap.buf, mmap.mmap)
        left = _resident(path)
    if released:
        assert left < size // 4, f"{left} of {size} bytes still resident"
    else:                                            # the check above can fail: without the hand-back
        assert left > size * 3 // 4
    with monkeypatch.context() as m:                 # the same records, read into memory
        m.setattr(reader, "MMAP_FROM", 1 << 40)
        whole = read_capture(str(path))
    assert len(cap) == len(whole) == 24_000
    for col in ("ts", "data_off", "caplen", "wire_len"):
        assert np.array_equal(getattr(cap, col), getattr(whole, col)), col


@glibc
def test_pages_go_back_while_the_heap_is_warmed(tmp_path, monkeypatch):
    """The main thread warms the heap while the walk runs (``_tuning.warm_heap``); a walk that
    outruns the warming must not leave the file resident beside the warmed heap."""
    import threading
    import time
    path = tmp_path / "big.pcap"
    _write_pcap(path, 24_000, 1000)
    size = path.stat().st_size
    monkeypatch.setattr(pcap, "CHUNK", 1000)
    monkeypatch.setattr(reader, "MMAP_FROM", 0)
    monkeypatch.setattr(_tuning, "BIG_INPUT", 0)
    walked, seen = threading.Event(), []
    walk_aside = pcap.walk_aside

    def noting_the_end(buf, walk, jobs, ends):
        def walk_then_say():
            try:
                return walk()
            finally:
                walked.set()
        return walk_aside(buf, walk_then_say, jobs, ends)

    def slow_warming(nbytes, between=None):      # still warming when the walk has ended
        assert walked.wait(30)
        for _ in range(100):                      # its last chunks' heads may still be read
            if between is not None:
                between()
            if _resident(path) < size // 4:
                break
            time.sleep(0.1)
        seen.append(_resident(path))

    monkeypatch.setattr(pcap, "walk_aside", noting_the_end)
    monkeypatch.setattr(_tuning, "warm_heap", slow_warming)
    with _tuning.loading(size):
        cap = read_capture(str(path))
    assert len(cap) == 24_000
    assert seen and seen[0] < size // 4, f"{seen} of {size} bytes resident at the end of the warming"


def _anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon")


@glibc
def test_freed_heap_memory_goes_back_to_the_kernel_when_asked(monkeypatch):
    monkeypatch.setattr(_tuning, "BIG_INPUT", 0)
    with _tuning.loading(1):
        blocks = [np.ones(1 << 19) for _ in range(64)]     # 4 MiB each: heap, under the mmap threshold
        held = _anon()
        del blocks                                          # kept for reuse while a big load runs
        kept = _anon()
        _tuning.hand_back_freed_memory()
        after = _anon()
    assert kept > held - (64 << 20)                        # freeing alone gave little or nothing back
    assert after < kept - (160 << 20)                      # most of the 256 MiB went back


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["tls", "tcp", "ApplicationData", ""]), st.text(max_size=6)),
                max_size=60))
def test_shared_strings_are_the_values_astype_object_gives(values):
    series = pd.Series(values, dtype="str")
    want = series.astype(object)
    got = _shared_strings(series)
    assert got.dtype == object
    pd.testing.assert_series_equal(got, want)
    texts = [v for v in got.tolist() if isinstance(v, str)]
    assert len({id(v) for v in texts}) == len(set(texts))      # one object per distinct value


PROXIED = ["proxy-nginx-502-504", "proxy-haproxy-503-502", "proxy-haproxy-reuse-race", "proxy-keepalive-race",
           "proxy-nginx-upstream-500", "http1-keepalive-vs-close", "http1-idle-timeout", "l4-vs-l7"]


@pytest.mark.parametrize("name", PROXIED)
def test_keeping_only_the_headers_proxy_reads_changes_nothing(monkeypatch, name):
    """``proxy.HEADERS_READ`` names every header the keep-alive facts and the proxy legs read:
    with every header of every message kept, the tables are the same."""
    keys = CAPTURES / f"{name}.keys"
    keylog = keys if keys.exists() else None
    kept = traceviz.load(CAPTURES / f"{name}.pcapng", keylog=keylog)
    monkeypatch.setattr(proxy, "HEADERS_READ", None)
    every = traceviz.load(CAPTURES / f"{name}.pcapng", keylog=keylog)
    for table in ("connections", "requests"):
        pd.testing.assert_frame_equal(getattr(kept, table), getattr(every, table), obj=table)
    assert len(kept.requests)


def test_only_the_named_headers_are_kept_and_messages_without_them_are_left_out():
    from traceviz.decode.http.http1 import HTTP1Connection
    from traceviz.decode.streams import StreamResult
    machine = HTTP1Connection()
    machine.receive("c2s", b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: 7\r\n\r\n", 5, 1.0)
    machine.receive("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nServer: nginx\r\n\r\n", 6, 1.1)
    machine.receive("c2s", b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n", 7, 1.2)
    results = {3: StreamResult(conn=3, kind="http/1.1", http=machine)}
    every = keepalive.http1_heads(results)
    assert set(every) == {(3, 5), (3, 6), (3, 7)}
    kept = keepalive.http1_heads(results, proxy.HEADERS_READ)
    assert kept == {(3, 5): (("X-Request-Id", "7"),), (3, 6): (("Server", "nginx"),)}
    assert keepalive.header(kept.get((3, 7), ()), "host") is None


# -- pcapng read a chunk of blocks at a time -----------------------------------------------

def _pcapng(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.pcapng"
    if name == "two-sections":          # two files end to end: a valid pcapng of two sections
        path.write_bytes((CAPTURES / "tcp-handshakes.pcapng").read_bytes()
                         + (CAPTURES / "l4-vs-l7.pcapng").read_bytes())
    elif name == "cut":                 # cut mid-block: a warning, and the blocks before it read
        data = (CAPTURES / "l4-vs-l7.pcapng").read_bytes()
        path.write_bytes(data[:len(data) * 3 // 5])
    else:
        path.write_bytes((CAPTURES / f"{name}.pcapng").read_bytes())
    return path


def _read(path: Path, monkeypatch, chunked: bool):
    from traceviz.sources import pcapng
    with monkeypatch.context() as m:
        if chunked:                     # a hand-off every few blocks, walked in a thread, mapped
            m.setattr(pcapng, "CHUNK_BYTES", 700)
            m.setattr(reader, "MMAP_FROM", 0)
            m.setattr(_tuning, "BIG_INPUT", 0)
        else:
            m.setattr(pcapng, "CHUNK_BYTES", 1 << 40)
            m.setattr(reader, "MMAP_FROM", 1 << 40)
        with _tuning.loading(path.stat().st_size):
            return read_capture(str(path))


@pytest.mark.parametrize("name", ["l4-vs-l7", "quic-h3", "browser-page-load", "two-sections", "cut"])
def test_a_pcapng_read_a_chunk_at_a_time_is_the_pcapng_read_at_once(tmp_path, monkeypatch, name):
    path = _pcapng(tmp_path, name)
    once, chunked = _read(path, monkeypatch, False), _read(path, monkeypatch, True)
    assert len(chunked) == len(once) > 50
    for col in ("ts", "ts_ns", "data_off", "caplen", "wire_len", "linktype", "iface"):
        assert np.array_equal(getattr(chunked, col), getattr(once, col), equal_nan=True), col
    assert np.array_equal(chunked.heads, once.heads)        # the first bytes the index tier reads
    assert (chunked.secrets, chunked.detail) == (once.secrets, once.detail)
    assert chunked.warnings == once.warnings
    if name == "two-sections":
        assert once.detail["sections"] == 2
    if name == "cut":
        assert len(once.warnings) == 1 and "cut short" in once.warnings[0]


def test_nothing_of_a_pcapng_walk_waits_for_the_collector(tmp_path, monkeypatch):
    """A big load runs without the cyclic collector: what the reader leaves in a cycle stays
    until the load ends (the walk and its heads, 128 MB on 1M packets, once did)."""
    import gc

    from traceviz.sources import pcapng
    path = _pcapng(tmp_path, "l4-vs-l7")
    gc.collect()
    gc.disable()
    try:
        cap = _read(path, monkeypatch, True)
        walks = [o for o in gc.get_objects() if isinstance(o, pcapng._Walk)]
    finally:
        gc.enable()
    assert len(cap) and walks == []
