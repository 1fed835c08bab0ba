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
    # iostat's load: TCP's events alone, each the whole load's row; the requests and packets whole
    tcp = traceviz.load(path, tables=["packets", "requests", "events"], events="tcp")
    theirs = whole.events[(whole.events["layer"] == "tcp").to_numpy(dtype=bool)].reset_index(drop=True)
    pd.testing.assert_frame_equal(tcp.events, theirs[tcp.events.columns], check_exact=True, check_categorical=False,
                                  obj=f"{path.name}: TCP's events alone")
    assert theirs.drop(columns=tcp.events.columns).isna().all().all()     # what it lacks, TCP rows never hold
    for name in ("packets", "requests"):
        pd.testing.assert_frame_equal(getattr(tcp, name), getattr(whole, name), check_exact=True,
                                      obj=f"{path.name}: {name} beside TCP's events")


def test_tcp_events_alone_decode_nothing_above_tcp(monkeypatch):
    """``events="tcp"`` builds its events table of the TCP tier alone: no TLS session is read
    for it (a whole events table reads every one), and a choice it does not know is refused."""
    from traceviz.decode.tls import session
    fed = []
    real = session.TLSSession.feed
    monkeypatch.setattr(session.TLSSession, "feed", lambda self, *a, **k: fed.append(1) or real(self, *a, **k))
    path = BUNDLED / "tls12-vs-tls13.pcapng"
    tcp = traceviz.load(path, tables=["packets", "events"], events="tcp")
    assert not fed and set(tcp.events["layer"]) == {"tcp"}
    assert {"SYN", "FIN"} <= set(tcp.events["kind"])
    traceviz.load(path, tables=["packets", "events"])
    assert fed
    with pytest.raises(ValueError, match="'all', 'tcp'"):
        traceviz.load(path, events="udp")


def test_only_the_quic_table_reads_the_transport_parameters(tmp_path, monkeypatch):
    """The hellos' transport parameters are the quic table's columns: the machines that read
    QUIC's handshakes for the tls and connections tables, or its turns, leave them unread."""
    import quicgen

    from traceviz.decode.quic import handshake
    pcap = quicgen.write_pcap(tmp_path / "c.pcap", quicgen.conversation())
    read = []
    real = handshake.transport_parameters
    monkeypatch.setattr(handshake, "transport_parameters", lambda *a: read.append(a[0]) or real(*a))
    for tables in (["tls"], ["connections"], ["packets"], ["requests"]):
        traceviz.load(pcap, tables=tables)
        assert not read, tables
    quic = traceviz.load(pcap, tables=["quic"]).quic
    # the ClientHello's (the server's are in its EncryptedExtensions: no keys here)
    assert read == [handshake.EXT_TRANSPORT_PARAMETERS] and quic.iloc[0]["transport_parameters_client"]


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
    requests and the TLS sessions alone: the flows turned by their first packets (a Retry first), and those only
    their hellos turn (made to happen here by a machine that says so the first time it reads
    the flow), in one process and with QUIC in a child."""
    import quicgen

    from traceviz import _tuning
    from traceviz.decode.quic import connection as qc
    monkeypatch.setattr(_tuning, "workers", lambda *a, n=workers, **k: n)
    server_first = _caught_server_first(tmp_path)
    whole = traceviz.load(server_first)
    assert whole.connections.iloc[0]["client_by"] == "quic"
    for name in ("packets", "requests", "connections", "tls"):
        alone = traceviz.load(server_first, tables=[name])
        pd.testing.assert_frame_equal(getattr(alone, name), getattr(whole, name), obj=f"server first: {name}")
    assert traceviz.load(server_first, tables=["packets"]).packets["dir"].iloc[0] == "s2c"

    late = quicgen.write_pcap(tmp_path / "late.pcap", quicgen.conversation())
    monkeypatch.setattr(qc.QUICConnection, "client_is_server", lambda self: self.events[0].dir == "c2s")
    whole = traceviz.load(late)
    assert whole.connections.iloc[0]["client"] == "10.93.0.2:4433"
    for name in ("packets", "requests", "tls"):
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


def test_the_tls_and_connections_tables_without_keys_read_only_quics_long_headers(tmp_path, monkeypatch):
    """Without keys only Initial packets open, and a QUIC flow's TLS row and app are made of
    them: the tls table, the connections table and the transport tier alone feed QUIC's
    machines the datagrams that start with a long header, and their rows are a whole load's
    (above, and on every corpus capture).  With a key log, or with a table that shows more of
    QUIC, every datagram is read."""
    import quicgen

    from traceviz.decode.quic import connection as qc
    conv = quicgen.conversation()
    pcap = quicgen.write_pcap(tmp_path / "c.pcap", conv)
    long_headers = [i + 1 for i, (_, data, _) in enumerate(conv.datagrams) if data[0] & 0x80]
    assert 0 < len(long_headers) < len(conv.datagrams) / 2
    read = []
    real = qc.QUICConnection.receive
    monkeypatch.setattr(qc.QUICConnection, "receive", lambda self, *a: read.append(a[2]) or real(self, *a))
    whole = traceviz.load(pcap)
    for kwargs in ({"tables": ["tls"]}, {"tables": ["connections"]}, {"transport_only": True}):
        read.clear()
        alone = traceviz.load(pcap, **kwargs)
        assert read == long_headers, kwargs
        shown = "tls" if kwargs.get("tables") == ["tls"] else "connections"
        pd.testing.assert_frame_equal(getattr(alone, shown), getattr(whole, shown)[getattr(alone, shown).columns])
        if shown == "connections":
            assert alone.connections.iloc[0]["transport"] == "quic"
    assert whole.connections.iloc[0]["app"] == "h3" and whole.tls.iloc[0]["transport"] == "quic"
    keyed = {"keylog": quicgen.keylog_file(tmp_path / "k", conv)}
    for kwargs in ({"tables": ["tls", "quic"]}, {"tables": ["connections", "events"]}, {"tables": ["tls"], **keyed},
                   {"tables": ["connections"], **keyed}, {"transport_only": True, **keyed}):
        read.clear()
        traceviz.load(pcap, **kwargs)
        assert len(read) == len(conv.datagrams), kwargs


def test_a_quic_flow_whose_long_headers_are_unreadable_is_read_whole_for_its_connection(tmp_path):
    """A flow QUIC's first-bytes test took (a long header of version 1) whose long headers
    are all cut short: its short headers are what make it a QUIC connection, so the handshake
    reading reads them too, and the connections table alone says ``quic`` as a whole load does."""
    import quicgen
    conv = quicgen.Conversation(datagrams=[("c2s", b"\xc0\x00\x00\x00\x01\x14\x01\x02", 1.0),
                                           ("s2c", b"\x41" + bytes(30), 1.1), ("c2s", b"\x41" + bytes(40), 1.2)])
    pcap = quicgen.write_pcap(tmp_path / "cut.pcap", conv)
    whole = traceviz.load(pcap)
    assert whole.connections["transport"].tolist() == ["quic"]
    assert whole.events["kind"].tolist() == ["unparsed", "1-RTT", "1-RTT"]
    for tables in (["connections"], ["tls"], ["connections", "tls"]):
        alone = traceviz.load(pcap, tables=tables)
        for name in tables:
            pd.testing.assert_frame_equal(getattr(alone, name), getattr(whole, name), obj=f"{tables}: {name}")
