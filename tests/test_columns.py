"""Rows gathered as columns (``assemble.columns``) make the table a list of the same rows as
dicts makes: the names in the order they first appear, NaN where a row lacks one, the same
dtypes -- however the rows were added (one by one, in blocks, shares joined)."""

from __future__ import annotations

import pickle

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from traceviz.assemble.columns import Columns

NAMES = ["ts", "frame", "conn", "stream", "kind", "detail", "open_streams", "encrypted"]
VALUES = st.one_of(st.none(), st.integers(-5, 2**40), st.floats(allow_nan=True), st.text(max_size=4),
                   st.booleans(), st.just(pd.NA))


@st.composite
def _rows(draw):
    # rows in runs that share their names, as the payload tier makes them (a TLS session's, a request's)
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
        kind = {n: draw(VALUES) for n in names}       # a column keeps one type within a run
        rows += [{n: (kind[n] if draw(st.booleans()) else draw(VALUES)) for n in names}
                 for _ in range(draw(st.integers(1, 4)))]
    return rows


def _gathered(rows: list[dict], cuts: list[int], blocks: list[bool]) -> Columns:
    """``rows`` cut into shares at ``cuts``, each share gathered on its own (some as one
    block when its rows share their names), then joined, through pickle as a worker's are."""
    out = Columns()
    bounds = [0] + sorted(c for c in cuts if 0 < c < len(rows)) + [len(rows)]
    for (a, b), as_block in zip(zip(bounds, bounds[1:]), blocks + [False] * len(bounds)):
        share = Columns()
        part = rows[a:b]
        if as_block and part and all(r.keys() == part[0].keys() for r in part):
            share.add_block({k: [r[k] for r in part] for k in part[0]}, len(part))
        else:
            share.add_rows(part)
        out.extend(pickle.loads(pickle.dumps(share)))
    return out


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@settings(max_examples=400, deadline=None)
@given(_rows(), st.lists(st.integers(0, 30), max_size=4), st.lists(st.booleans(), max_size=5))
def test_columns_make_the_table_dicts_make(rows, cuts, blocks):
    got = _gathered(rows, cuts, blocks)
    assert len(got) == len(rows)
    assert all(len(col) == len(rows) for col in got.cols.values())
    if rows and got.cols:
        _same(got.frame(), pd.DataFrame(rows))


def test_a_name_first_seen_late_is_missing_before_and_a_name_left_out_is_missing_after():
    c = Columns([{"ts": 1.0, "kind": "SYN"}])
    c.add_block({"ts": [2.0, 3.0], "detail": ["x", "y"]}, 2)
    c.add_rows([{"kind": "FIN", "ts": 4.0}])
    assert list(c.cols) == ["ts", "kind", "detail"]
    assert c.cols["ts"] == [1.0, 2.0, 3.0, 4.0]
    assert c.cols["kind"][0] == "SYN" and c.cols["kind"][3] == "FIN"
    assert all(v != v for v in c.cols["kind"][1:3])                 # NaN, as pandas fills
    assert c.cols["detail"][1:3] == ["x", "y"] and all(v != v for v in c.cols["detail"][::3])


@settings(max_examples=400, deadline=None)
@given(_rows(), st.lists(st.integers(0, 30), max_size=4), st.lists(st.booleans(), max_size=5),
       st.sampled_from(["events", "tls"]))
def test_text_columns_taken_as_they_are_make_the_table_inference_makes(rows, cuts, blocks, name):
    """With the table's schema, text columns are not inferred (``frame(schema)``): once
    conformed, the table is the one inference gives, missing text as NaN included."""
    from hypothesis import assume

    from traceviz.model import SCHEMAS, conform
    got = _gathered(rows, cuts, blocks)
    assume(rows and got.cols)
    try:
        inferred = conform(name, pd.DataFrame(rows))
    except (TypeError, ValueError, OverflowError):   # values no decoder makes (a text tls conn...)
        assume(False)
    _same(conform(name, got.frame(SCHEMAS[name])), inferred)


def test_a_list_in_a_text_column_stays_one_value():
    from traceviz.model import TLS_COLUMNS
    c = Columns([{"conn": 1, "alpn_offered": ["h2", "http/1.1"]}, {"conn": 2, "alpn_offered": None}])
    assert c.frame(TLS_COLUMNS)["alpn_offered"].tolist() == [["h2", "http/1.1"], None]


# Every decoder's events rows carry the schema's names; the names only some layers have
# (QUIC's packet numbers, TLS's encrypted flag, HTTP/2's windows) are left out where they do not apply.
EVENT_VALUES = {"ts": st.one_of(st.none(), st.floats(0, 10), st.sampled_from([1.0, 2.0])),
                "frame": st.one_of(st.none(), st.integers(1, 5)), "conn": st.one_of(st.none(), st.integers(0, 3)),
                "stream": st.one_of(st.none(), st.integers(0, 8)), "layer": st.sampled_from(["tls", "quic"]),
                "kind": st.one_of(st.none(), st.text(max_size=3)), "dir": st.sampled_from(["c2s", "s2c"]),
                "size": st.one_of(st.none(), st.integers(0, 99)), "detail": st.one_of(st.none(), st.text(max_size=3))}
EXTRA_VALUES = {"pn": st.integers(0, 9), "space": st.sampled_from(["initial", "1rtt"]), "encrypted": st.booleans(),
                "open_streams": st.integers(0, 3), "duration": st.one_of(st.just(float("nan")), st.floats(0, 1))}


@st.composite
def _event_rows(draw):
    rows = []
    for _ in range(draw(st.integers(0, 5))):       # runs of rows with the same names, as decoders make them
        names = list(EVENT_VALUES) + draw(st.lists(st.sampled_from(list(EXTRA_VALUES)), unique=True))
        values = {**EVENT_VALUES, **EXTRA_VALUES}
        rows += [{n: draw(values[n]) for n in names} for _ in range(draw(st.integers(1, 4)))]
    return rows


@settings(max_examples=300, deadline=None)
@given(_event_rows(), _event_rows(), st.lists(st.integers(0, 20), max_size=3))
def test_event_tables_made_per_share_merge_into_the_table_one_frame_makes(tcp, payload, cuts):
    """The payload tier's events rows become a table in each worker (``events_table``) and the
    parts are merged by time a column at a time (``capture._merge_events``): the table is the
    one made of every row at once, stacked and sorted by (ts, frame), dtypes and NaN included."""
    from traceviz.assemble.capture import _merge_events
    from traceviz.assemble.columns import events_table
    from traceviz.model import conform
    bounds = [0] + sorted(c for c in cuts if 0 < c < len(payload)) + [len(payload)]
    shares = [events_table(Columns(payload[a:b])) for a, b in zip(bounds, bounds[1:])]
    got = _merge_events(events_table(Columns(tcp)), *shares)
    if not tcp and not payload:
        assert got.empty
        return
    parts = [events_table(Columns(rows)) for rows in (tcp, payload) if rows]
    one = pd.concat(parts, ignore_index=True).sort_values(["ts", "frame"], kind="stable", na_position="last")
    _same(got, conform("events", one))
