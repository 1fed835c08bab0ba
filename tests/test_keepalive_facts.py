"""``load(keepalive_facts=False)``: the connections table without its keep-alive facts, for a
view that reads none of them (the handshakes).  Every other column is the whole load's, on
every bundled and corpus capture; the keep-alive columns are absent, never NA; nothing is built
for them (no requests, no events, no TCP flags); and the recipes that declare
``KEEPALIVE_FACTS = False`` get it from their commands (what they find with it:
``test_recipe_tables.py``)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from bundled import CAPTURES
from test_recipe_tables import refusal
from test_table_alone import FILES

import traceviz
from traceviz.model import JSON_FIELDS, KEEPALIVE_CONNECTION_COLUMNS, TableNotBuilt


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_what_it_keeps_is_the_whole_loads(path):
    whole = traceviz.load(path, tables=["connections", "packets"])     # whole: test_table_alone.py
    lean = traceviz.load(path, tables=["connections", "packets"], keepalive_facts=False)
    assert lean.source.detail["keepalive_facts"] is False
    kept = [c for c in whole.connections.columns if c not in KEEPALIVE_CONNECTION_COLUMNS]
    assert list(lean.connections.columns) == kept
    pd.testing.assert_frame_equal(lean.connections, whole.connections[kept], check_exact=True,
                                  obj=f"{path.name}: connections")
    pd.testing.assert_frame_equal(lean.packets, whole.packets, check_exact=True, obj=f"{path.name}: packets")


def test_what_it_leaves_out_cannot_be_read_and_is_not_built():
    path = CAPTURES / "http1-keepalive-vs-close.pcapng"
    whole = traceviz.load(path)
    assert whole.connections["http_requests"].fillna(0).gt(1).any()      # there were facts to leave out
    lean = traceviz.load(path, tables=["connections"], keepalive_facts=False)
    for col in KEEPALIVE_CONNECTION_COLUMNS:
        with pytest.raises(KeyError):
            lean.connections[col]
    assert lean.skipped == frozenset({"packets", "events", "requests", "tls", "quic", "streams"})
    with pytest.raises(TableNotBuilt):
        lean.requests


def test_the_tables_asked_for_besides_are_whole():
    """Requests and events asked for with it are built for their own sake, and are the whole
    load's: only the connections' keep-alive columns are left out."""
    path = CAPTURES / "tcp-keepalive.pcapng"
    whole = traceviz.load(path)
    lean = traceviz.load(path, tables=["connections", "requests", "events"], keepalive_facts=False)
    for name in ("requests", "events"):
        pd.testing.assert_frame_equal(getattr(lean, name), getattr(whole, name), check_exact=True, obj=name)
    assert (whole.connections["ka_probes"].fillna(0) > 0).any()
    assert "ka_probes" not in lean.connections.columns


def test_a_browser_export_loads_as_it_would_without_it():
    har = CAPTURES / "browser-page-load.har"
    pd.testing.assert_frame_equal(traceviz.load(har, keepalive_facts=False).connections,
                                  traceviz.load(har).connections, check_exact=True)


def test_the_handshakes_command_loads_without_them(tv, monkeypatch):
    asked = []
    real = traceviz.load
    monkeypatch.setattr(traceviz, "load", lambda *a, **k: asked.append((k.get("tables"), k.get("keepalive_facts")))
                        or real(*a, **k))
    code, out, _ = tv("handshakes", "http1-keepalive-vs-close", "--json")
    rows = json.loads(out)
    assert code == 0 and rows
    for row in rows:
        assert list(row)[:len(JSON_FIELDS["connections"])] == JSON_FIELDS["connections"]   # every stable field
        assert not set(row) & set(KEEPALIVE_CONNECTION_COLUMNS)
    assert tv("handshakes", "http1-keepalive-vs-close", "--json", "--where", "conn >= 0")[0] == 0   # every column
    assert asked == [(("connections", "packets"), False), (None, True)]


def test_a_recipe_declaring_it_as_anything_but_a_truth_value_is_refused(tv, tmp_path):
    err = refusal(tv, tmp_path, "vague", 'TABLES = ("connections",)\nKEEPALIVE_FACTS = "no"\n')
    assert "KEEPALIVE_FACTS must be True or False" in err
