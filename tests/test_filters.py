"""``--where``: pandas queries, and Wireshark display filters translated, checked against tshark.

A translated display filter must select the rows tshark's ``-Y`` selects:
the same frames from the packets table, the same tcp.stream numbers from
the connections table (every packet of a connection shares its addresses
and ports, so "a connection any of whose packets matches" is the same set).
What cannot be translated is refused with one line naming what is known.
"""

from __future__ import annotations

import subprocess

import pytest

import traceviz
from conftest import ROOT
from traceviz.errors import InputError
from traceviz.filters import translate, where

PROXY = ROOT / "captures" / "proxy-nginx-502-504.pcapng"
MIXED = ROOT / "captures" / "quic-h3.pcapng"


@pytest.fixture(scope="module")
def proxy():
    return traceviz.load(PROXY)


def tshark_frames(tshark, path, display_filter, field="frame.number") -> set[int]:
    out = subprocess.run([tshark, "-r", str(path), "-Y", display_filter, "-T", "fields", "-e", field],
                         capture_output=True, text=True, timeout=120).stdout
    return {int(v) for v in out.split() if v}


PACKET_FILTERS = ["ip.addr == 10.88.1.2", "ip.src == 10.88.1.1 and tcp.dstport == 9002", "tcp.port eq 80",
                  "tcp.stream eq 3 || tcp.stream eq 5", "frame.len > 100 && !(tcp.port == 80)",
                  "tcp.len gt 0 and ip.dst == 10.88.0.1", "tcp.srcport != 80 and ip.addr == 10.88.0.1"]


@pytest.mark.parametrize("display_filter", PACKET_FILTERS)
def test_packet_filters_select_what_tshark_selects(display_filter, proxy, tshark):
    ours = set(where(proxy.packets, display_filter, "packets")["frame"])
    assert ours == tshark_frames(tshark, PROXY, display_filter)


@pytest.mark.parametrize("display_filter", ["tcp.port == 9002", "ip.addr == 10.88.1.2", "tcp.stream eq 3",
                                            "ip.addr == 10.88.0.1 && !(tcp.port == 9999)"])
def test_connection_filters_select_the_streams_tshark_selects(display_filter, proxy, tshark):
    ours = set(where(proxy.connections, display_filter, "connections")["conn"])
    assert ours == tshark_frames(tshark, PROXY, display_filter, "tcp.stream")


def test_udp_stream_and_ports_on_mixed_traffic(tshark):
    tl = traceviz.load(MIXED)
    udp = where(tl.connections, "udp.stream eq 0", "connections")
    assert udp["stream"].tolist() == [0] and udp["transport"].tolist()[0] in ("udp", "quic")
    ours = set(where(tl.packets, "udp.port == 443", "packets")["frame"])
    assert ours == tshark_frames(tshark, MIXED, "udp.port == 443")


def test_pandas_queries_and_mixtures(proxy):
    c = proxy.connections
    slow = where(c, "handshake_rtt > 0.0005 and server == '10.88.1.2:9002'", "connections")
    assert slow["conn"].tolist() == c[(c["handshake_rtt"] > 0.0005) & (c["server"] == "10.88.1.2:9002")]["conn"].tolist()
    mixed = where(c, "tcp.port == 80 and close == 'fin-client'", "connections")
    assert set(mixed["conn"]) == set(c[c["server"].str.endswith(":80") & (c["close"] == "fin-client")]["conn"])
    assert where(c, None) is c and where(c, "  ") is c


def test_events_by_analysis_flag():
    tl = traceviz.load(ROOT / "captures" / "tcp-handshakes.pcapng")
    ev = where(tl.events, "tcp.analysis.retransmission", "events")
    assert len(ev) and set(ev["kind"]) <= {"retransmission", "fast-retransmission", "spurious-retransmission"}
    assert len(ev) == int(tl.events["kind"].isin(["retransmission", "fast-retransmission",
                                                  "spurious-retransmission"]).sum())


def test_strings_are_left_alone():
    # A dotted name inside quotes is a value, not a field to translate.
    assert translate("sni == 'tcp.port.example'", {"sni"}) == "sni == 'tcp.port.example'"
    assert translate("url.str.contains('ip.addr')", {"url"}) == "url.str.contains('ip.addr')"


@pytest.mark.parametrize("expression, says", [
    ("foo.bar == 1", "no translation for the Wireshark field 'foo.bar'"),
    ("http.response.code == 200", "has nothing to match in the connections table"),
    ("nope == 3", "name 'nope' is not defined"),
    ("conn ==", "cannot read"),
    ("tcp.analysis.retransmission", "is an event"),
    ("tcp.stream eq three", "is not a number"),
])
def test_refused_with_one_line(expression, says, proxy):
    with pytest.raises(InputError) as err:
        where(proxy.connections, expression, "connections")
    message = str(err.value)
    assert says in message and "\n" not in message
