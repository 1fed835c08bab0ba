"""The timeline model: schemas, unknowns stay unknown, Parquet export, reprs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import traceviz
from traceviz.errors import InputError
from traceviz.model import SCHEMAS, SourceInfo, Timeline, conform, empty_table


def test_empty_tables_have_every_schema_column():
    for name, schema in SCHEMAS.items():
        df = empty_table(name)
        assert list(df.columns) == list(schema)
        assert len(df) == 0


def test_conform_keeps_unknowns_unknown_not_zero():
    df = conform("connections", pd.DataFrame({"conn": [0, 1], "packets": [3, None], "extra": ["a", "b"]}))
    assert list(df.columns[: len(SCHEMAS["connections"])]) == list(SCHEMAS["connections"])
    assert df["packets"].isna().tolist() == [False, True]
    assert df["first_frame"].isna().all()          # missing integer column: NA, never 0
    assert df["start"].isna().all()
    assert df["extra"].tolist() == ["a", "b"]        # extra columns follow the schema's


def test_parquet_round_trip(tmp_path):
    tl = traceviz.load("tcp-handshakes")
    written = tl.to_parquet(tmp_path)
    assert {p.name for p in written} >= {"packets.parquet", "connections.parquet", "events.parquet", "requests.parquet"}
    back = pd.read_parquet(tmp_path / "connections.parquet")
    assert back["conn"].tolist() == tl.connections["conn"].tolist()
    assert back["client"].tolist() == tl.connections["client"].tolist()
    packets = pd.read_parquet(tmp_path / "packets.parquet")
    assert packets["frame"].tolist() == list(range(1, len(tl.packets) + 1))


def test_reprs_escape_hostile_names():
    tl = Timeline(source=SourceInfo(path="<script>alert(1)</script>.pcap", format="pcap"))
    assert "<script>" not in tl._repr_html_()
    assert "&lt;script&gt;" in tl._repr_html_()
    assert repr(tl).startswith("<Timeline ")


def test_a_timeline_keeps_no_key_material():
    """Decrypted with a key log, the finished Timeline holds none of its secrets: not in its
    repr, not anywhere in its pickled state (hex text or raw bytes)."""
    import pickle
    from traceviz.captures import find
    keys = find("h2-multiplexing").with_suffix(".keys")
    secrets = [line.split()[2] for line in open(keys) if len(line.split()) == 3 and not line.startswith("#")]
    tl = traceviz.load("h2-multiplexing", keylog=keys)
    assert tl.tls["decrypted"].all() and len(secrets) >= 4
    blob = pickle.dumps(tl)
    for secret in secrets:
        assert secret.encode() not in blob and bytes.fromhex(secret) not in blob
        assert secret not in repr(tl)


def test_load_by_bundled_name_equals_load_by_path():
    from traceviz.captures import find
    by_name = traceviz.load("tcp-handshakes")
    by_path = traceviz.load(find("tcp-handshakes"))
    pd.testing.assert_frame_equal(by_name.connections, by_path.connections)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"hello, I am text\n", "not a packet capture"),
    (b"\x00\x01\x02garbage" * 50, "not a packet capture"),
])
def test_unreadable_files_raise_one_line_input_error(tmp_path, content, message):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(content)
    with pytest.raises(InputError) as err:
        traceviz.load(bad)
    assert message in str(err.value)
    assert str(bad) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        traceviz.load(tmp_path / "nope.pcap")
    with pytest.raises(InputError, match="directory"):
        traceviz.load(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        traceviz.load("tcp-handshakes", keylog=tmp_path / "missing.keys")


def test_load_reports_its_stages_in_order():
    from traceviz.cli import _STAGES
    seen: list[str] = []
    traceviz.load("tcp-handshakes", progress=seen.append)
    assert tuple(seen) == _STAGES        # the CLI's progress bar counts exactly these steps


def test_conform_keeps_the_row_order_it_is_given():
    """A sorted or filtered table keeps its order and its values: rows are numbered
    afresh, never realigned to their old labels."""
    df = pd.DataFrame({"request": [0, 1, 2, 3], "conn": [5, 6, 7, 8], "start": [3.0, 1.0, 2.0, 0.5]})
    out = conform("requests", df.sort_values("start").iloc[1:])
    assert list(out["start"]) == [1.0, 2.0, 3.0] and list(out["conn"]) == [6, 7, 5]
    assert list(out.index) == [0, 1, 2]


def test_requests_of_a_capture_are_in_start_order():
    tl = traceviz.load("http1-six-connections", keylog=str(Path(__file__).resolve().parents[1]
                                                           / "captures" / "http1-six-connections.keys"))
    assert len(tl.requests["conn"].unique()) > 1
    assert tl.requests["start"].is_monotonic_increasing
    assert list(tl.requests["request"]) == list(range(len(tl.requests)))
