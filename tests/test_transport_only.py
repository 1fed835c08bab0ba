"""``load(transport_only=True)``: the index and TCP tiers alone.  Every row and column it keeps
is the whole load's, on every bundled and corpus capture; what it leaves out (the
connections' columns made of the payload, every events row above TCP, the tables made of the
payload) is absent, never NA; and the recipes that declare ``TRANSPORT_ONLY`` get it from
their commands (what they find with it: ``test_recipe_tables.py``)."""

from __future__ import annotations

import pandas as pd
import pytest
from bundled import CAPTURES
from test_table_alone import FILES

import traceviz
from traceviz.loader import TRANSPORT_TABLES
from traceviz.model import APP_CONNECTION_COLUMNS, KEEPALIVE_CONNECTION_COLUMNS, TableNotBuilt

PAYLOAD_MADE = APP_CONNECTION_COLUMNS + KEEPALIVE_CONNECTION_COLUMNS


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_what_it_keeps_is_the_whole_loads(path):
    whole = traceviz.load(path)
    alone = traceviz.load(path, transport_only=True)
    assert alone.source.detail["transport_only"] is True
    kept = [c for c in whole.connections.columns if c not in PAYLOAD_MADE]
    assert list(alone.connections.columns) == kept
    pd.testing.assert_frame_equal(alone.connections, whole.connections[kept], check_exact=True,
                                  obj=f"{path.name}: connections")
    tcp = whole.events[(whole.events["layer"] == "tcp").to_numpy(dtype=bool, na_value=False)]
    pd.testing.assert_frame_equal(alone.events, tcp[list(alone.events.columns)].reset_index(drop=True),
                                  check_exact=True, obj=f"{path.name}: events")
    pd.testing.assert_frame_equal(alone.packets, whole.packets, check_exact=True, obj=f"{path.name}: packets")


def test_what_it_leaves_out_cannot_be_read():
    tl = traceviz.load(CAPTURES / "h2-multiplexing.pcapng", transport_only=True)
    whole = traceviz.load(CAPTURES / "h2-multiplexing.pcapng")
    assert whole.connections["app"].notna().any()          # there was something to leave out
    for col in PAYLOAD_MADE:
        with pytest.raises(KeyError):
            tl.connections[col]
    assert set(tl.events["layer"]) == {"tcp"} < set(whole.events["layer"])
    for name in ("requests", "tls", "quic", "streams"):
        with pytest.raises(TableNotBuilt):
            getattr(tl, name)


def test_quic_flows_are_still_told_from_other_udp():
    """QUIC is decoded just far enough to mark its flows' transport, as a whole load does."""
    tl = traceviz.load(CAPTURES / "quic-h3.pcapng", transport_only=True)
    assert "quic" in set(tl.connections["transport"])


def test_tables_it_cannot_build_are_refused_with_the_ones_it_can():
    with pytest.raises(ValueError, match="builds no requests, tls table: ask for connections, events, packets"):
        traceviz.load(CAPTURES / "tcp-handshakes.pcapng", tables=["tls", "requests", "events"], transport_only=True)
    tl = traceviz.load(CAPTURES / "tcp-handshakes.pcapng", tables=["connections"], transport_only=True)
    assert tl.skipped == frozenset({"packets", "events", "requests", "tls", "quic", "streams"})
    default = traceviz.load(CAPTURES / "tcp-handshakes.pcapng", transport_only=True)
    assert set(default.built) == TRANSPORT_TABLES


def test_a_browser_export_loads_as_it_would_without_it():
    har = CAPTURES / "browser-page-load.har"
    alone = traceviz.load(har, transport_only=True)
    whole = traceviz.load(har)
    pd.testing.assert_frame_equal(alone.connections, whole.connections, check_exact=True)
    pd.testing.assert_frame_equal(alone.requests, whole.requests, check_exact=True)


def test_the_declaring_commands_load_the_transport_tier_alone(tv, monkeypatch):
    asked = []
    real = traceviz.load
    monkeypatch.setattr(traceviz, "load", lambda *a, **k: asked.append((k.get("tables"), k.get("transport_only")))
                        or real(*a, **k))
    assert tv("synflood", "syn-flood-cookies", "--json")[0] == 0
    assert tv("transports", "tcp-vs-udp", "--json")[0] == 0
    assert tv("tls", "tls12-vs-tls13", "--json")[0] == 0
    assert tv("synflood", "syn-flood-cookies", "--json", "--where", "conn >= 0")[0] == 0   # --where: every column
    assert asked == [(("connections", "events"), True), (("connections", "events", "packets"), True),
                     (("tls",), False), (None, False)]


def test_events_are_in_time_order_when_the_clock_stepped_back(tmp_path):
    """TCP events come in frame order; a whole load sorts them by time when it merges the layers
    above TCP, and now also when there is nothing to merge: the order must not depend on
    whether a layer above had anything to say (it would differ from a transport-only load's)."""
    import tcpgen
    from tcpgen import Seg
    # The closing FINs were stamped 6 s before the handshake (the capture host's clock stepped back).
    segs = tcpgen.handshake(t=10.0) + [Seg("c", "FA", 1, 1, t=4.0), Seg("s", "FA", 1, 2, t=4.1)]
    path = tcpgen.write(tmp_path / "stepped.pcap", segs)
    tl = traceviz.load(path)
    ts = tl.events["ts"].tolist()
    assert len(ts) >= 3 and min(ts) < tl.events["ts"].iloc[-1] and set(tl.events["layer"]) == {"tcp"}
    assert ts == sorted(ts)
    alone = traceviz.load(path, transport_only=True)
    pd.testing.assert_frame_equal(alone.events, tl.events, check_exact=True)


def test_a_key_log_it_cannot_use_is_said_once():
    path = CAPTURES / "tls12-vs-tls13.pcapng"
    keys = CAPTURES / "tls12-vs-tls13.keys"
    assert keys.is_file()
    said = [w for w in traceviz.load(path, transport_only=True, keylog=keys).warnings if "keys not used" in w]
    assert len(said) == 1 and str(path) in said[0]
    assert not [w for w in traceviz.load(path, transport_only=True).warnings if "keys not used" in w]
