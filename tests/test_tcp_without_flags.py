"""A load that shows no tcp.analysis flag (``load(tables=["tls"])``, ``["requests"]``, ``follow``)
skips the flags' rules: what it keeps -- the relative numbers the payload tier reassembles by,
the window, the connections, the requests made of them -- is what the whole analysis gives, on
every corpus capture and bundled capture."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bundled import CAPTURES as BUNDLED
from conftest import CORPUS
from test_tcp_corpus import UNREADABLE

import traceviz
from traceviz.assemble import transport as tables
from traceviz.decode.index import index_frames
from traceviz.decode.tcp import connections as tcp
from traceviz.sources.reader import read_capture

FILES = sorted(p for p in CORPUS.glob("pcap/**/*") if p.suffix in (".pcap", ".pcapng", ".gz")
               and p.relative_to(CORPUS / "pcap").as_posix() not in UNREADABLE) + sorted(BUNDLED.glob("*.pcapng"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_without_flags_the_numbers_and_connections_are_the_whole_analysis(path, monkeypatch):
    monkeypatch.setattr(tcp, "SPLIT_FROM", 64)          # the two-halves path too, on small captures
    idx = index_frames(read_capture(str(path)))
    whole, lean = tcp.analyze(idx), tcp.analyze(idx, with_flags=False)
    for name in ("conn", "c2s", "in_tcp", "rel_seq", "rel_ack", "has_ack", "win"):
        assert np.array_equal(getattr(whole, name), getattr(lean, name)), name
    pd.testing.assert_frame_equal(tables.connections(whole), tables.connections(lean))
    assert lean.events == {}


def test_a_tls_only_load_computes_no_flags_and_a_full_one_does(monkeypatch):
    asked = []
    real = tcp.analyze
    monkeypatch.setattr(tcp, "analyze", lambda idx, **k: asked.append(k.get("with_flags")) or real(idx, **k))
    path = BUNDLED / "tls12-vs-tls13.pcapng"
    lean, whole = traceviz.load(path, tables=["tls"]), traceviz.load(path)
    assert asked == [False, True]
    pd.testing.assert_frame_equal(lean.tls, whole.tls)


# Among them the bundled captures made to show what the requests table reads of TCP: proxy legs
# and their 5xx causes (refused and reset upstreams, timeouts), keep-alive races, idle closes.
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_a_requests_load_computes_no_flags_and_its_tables_are_the_full_loads(path, monkeypatch):
    asked = []
    real = tcp.analyze
    monkeypatch.setattr(tcp, "analyze", lambda idx, **k: asked.append(k.get("with_flags")) or real(idx, **k))
    whole, lean = traceviz.load(path), traceviz.load(path, tables=["requests", "packets"])   # what `requests` asks
    assert asked == [True, False]
    pd.testing.assert_frame_equal(lean.requests, whole.requests, check_exact=True)
    pd.testing.assert_frame_equal(lean.packets, whole.packets, check_exact=True)
    assert lean.warnings == whole.warnings


@pytest.mark.parametrize("tables, flags", [(["requests"], False), (["requests", "packets"], False),
                                           (["connections"], True), (["tls", "quic"], False),
                                           (["events"], True), (["streams"], True),
                                           (["connections", "requests"], True), (None, True)])
def test_the_flags_are_computed_for_the_tables_that_show_them(tables, flags, monkeypatch):
    asked = []
    real = tcp.analyze
    monkeypatch.setattr(tcp, "analyze", lambda idx, **k: asked.append(k.get("with_flags")) or real(idx, **k))
    traceviz.load(BUNDLED / "h2-stalls.pcapng", tables=tables)
    assert asked == [flags]


def test_a_syn_ack_with_a_new_isn_rebases_both_ways(tmp_path):
    """Wireshark's rule: a SYN-ACK whose seq is not its direction's base (the ports reused, a new
    ISN, the same tcp.stream) becomes the base for its seq and the peer's ack, with or
    without the flags' rules."""
    from tcpgen import Seg, handshake, write
    segs = handshake() + [Seg("c", "PA", 1, 1, n=100, t=0.1), Seg("s", "A", 1, 101, t=0.15),
                          Seg("c", "S", 0, 0, t=1.0), Seg("s", "SA", 900_000, 1, t=1.02),
                          Seg("c", "A", 1, 900_001, t=1.04), Seg("s", "PA", 900_001, 1, n=50, t=1.1)]
    idx = index_frames(read_capture(str(write(tmp_path / "reuse.pcap", segs))))
    whole, lean = tcp.analyze(idx), tcp.analyze(idx, with_flags=False)
    assert whole.rel_seq[-1] == 1 and whole.rel_ack[-2] == 1     # rebased at the new SYN-ACK
    for name in ("rel_seq", "rel_ack", "win"):
        assert np.array_equal(getattr(whole, name), getattr(lean, name)), name
