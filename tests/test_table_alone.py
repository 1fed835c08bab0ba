"""A table asked for alone (``load(tables=[name])``) is the table a whole load makes: the work
that is left out is work no column of it reads -- on every bundled and corpus capture."""

from __future__ import annotations

import pandas as pd
import pytest
from bundled import CAPTURES as BUNDLED
from conftest import CORPUS
from test_tcp_corpus import UNREADABLE

import traceviz
from traceviz.loader import _NEEDS

FILES = sorted(p for p in CORPUS.glob("pcap/**/*") if p.suffix in (".pcap", ".pcapng", ".gz")
               and p.relative_to(CORPUS / "pcap").as_posix() not in UNREADABLE) + sorted(BUNDLED.glob("*.pcapng"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_table_alone_is_the_whole_loads(path):
    whole = traceviz.load(path)
    for name in _NEEDS:
        alone = traceviz.load(path, tables=[name])
        pd.testing.assert_frame_equal(getattr(alone, name), getattr(whole, name), check_exact=True,
                                      obj=f"{path.name}: {name} alone")


def _caught_server_first(tmp_path):
    """A QUIC flow whose client's first Initial the capture missed: the server's Retry comes
    first, so the transport takes the server for the client and QUIC's plan turns it around."""
    import quicgen
    conv = quicgen.conversation(retry=True)
    conv.dropped = [0]
    return quicgen.write_pcap(tmp_path / "server-first.pcap", conv, skip_dropped=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_table_alone_turns_the_quic_flows_a_whole_load_turns(tmp_path, monkeypatch, workers):
    """The packets alone read each QUIC flow's client as a whole load does, and so do the
    requests alone: the flows turned by their first packets (a Retry first), and those only
    their hellos turn (made to happen here by a machine that says so the first time it reads
    the flow), in one process and with QUIC in a child."""
    import quicgen

    from traceviz import _tuning
    from traceviz.decode.quic import connection as qc
    monkeypatch.setattr(_tuning, "workers", lambda *a, n=workers, **k: n)
    server_first = _caught_server_first(tmp_path)
    whole = traceviz.load(server_first)
    assert whole.connections.iloc[0]["client_by"] == "quic"
    for name in ("packets", "requests", "connections"):
        alone = traceviz.load(server_first, tables=[name])
        pd.testing.assert_frame_equal(getattr(alone, name), getattr(whole, name), obj=f"server first: {name}")
    assert traceviz.load(server_first, tables=["packets"]).packets["dir"].iloc[0] == "s2c"

    late = quicgen.write_pcap(tmp_path / "late.pcap", quicgen.conversation())
    monkeypatch.setattr(qc.QUICConnection, "client_is_server", lambda self: self.events[0].dir == "c2s")
    whole = traceviz.load(late)
    assert whole.connections.iloc[0]["client"] == "10.93.0.2:4433"
    for name in ("packets", "requests"):
        alone = traceviz.load(late, tables=[name])
        pd.testing.assert_frame_equal(getattr(alone, name), getattr(whole, name), obj=f"hellos turn: {name}")


def test_tables_that_read_only_quics_turns_stop_its_machines_at_the_hello(tmp_path, monkeypatch):
    """The packets, and the requests without keys, need of QUIC only who each flow's client
    is: its machine reads up to the ClientHello (here the first datagram) and no further.
    With a key log the requests hold HTTP/3's, and every datagram is read."""
    import quicgen

    from traceviz.decode.quic import connection as qc
    conv = quicgen.conversation()
    pcap = quicgen.write_pcap(tmp_path / "c.pcap", conv)
    read = []
    real = qc.QUICConnection.receive
    monkeypatch.setattr(qc.QUICConnection, "receive", lambda self, *a: read.append(a[2]) or real(self, *a))
    for tables in (["packets"], ["requests"], ["requests", "packets"]):
        read.clear()
        traceviz.load(pcap, tables=tables)
        assert read == [1], tables
    read.clear()
    keyed = traceviz.load(pcap, keylog=quicgen.keylog_file(tmp_path / "k.log", conv), tables=["requests"])
    assert len(read) == len(conv.datagrams)
    assert sorted(keyed.requests["url"].str.rsplit("/", n=1).str[-1]) == ["", "a", "b"]
    read.clear()
    traceviz.load(pcap, tables=["streams"])     # nothing of QUIC in it
    assert read == []
