"""``--where`` on every command that reads a capture: a table command keeps its rows, a recipe,
``report`` and ``info`` keep the connections the expression selects.  What is selected is
checked against tshark's display filter on the same file."""

from __future__ import annotations

import json
import subprocess

import pytest

import traceviz
from conftest import ROOT
from test_cli import tv  # noqa: F401 - the CLI run in this process, as test_cli runs it
from traceviz.errors import InputError
from traceviz.filters import connections_where

PROXY = ROOT / "captures" / "proxy-nginx-502-504.pcapng"
GRPC = ROOT / "captures" / "grpc-tls.pcapng"


@pytest.fixture(scope="module")
def proxy():
    return traceviz.load(PROXY)


def tshark_values(tshark, path, display_filter: str, field: str) -> list[str]:
    out = subprocess.run([tshark, "-r", str(path), "-Y", display_filter, "-T", "fields", "-e", field],
                         capture_output=True, text=True, timeout=120).stdout
    return [v for v in out.split() if v]


def tshark_streams(tshark, path, display_filter: str) -> set[int]:
    return {int(v) for v in tshark_values(tshark, path, display_filter, "tcp.stream")}


@pytest.mark.parametrize("expression, display_filter", [
    ("ip.addr == 10.88.1.2", "ip.addr == 10.88.1.2"),                  # read on the connections table
    ("status == 502", "http.response.code == 502"),                    # no such column there: requests
    ("status >= 500 and url.str.endswith('/slow')", "http.response.code >= 500 && http.request.uri == \"/slow\""),
    ("tcp.analysis.retransmission or kind == 'RST'", "tcp.analysis.retransmission || tcp.flags.reset == 1"),
    ("tcp.port in {9000..9003, 80}", "tcp.port in {9000..9003, 80}"),         # Wireshark's sets and ranges
])
def test_connections_where_picks_the_streams_tshark_picks(expression, display_filter, proxy, tshark):
    if "uri" in display_filter:      # a response does not carry its URI: tshark names it on the request
        display_filter = "http.response.code >= 500 && http.response_for.uri contains \"/slow\""
    assert set(connections_where(proxy, expression)) == tshark_streams(tshark, PROXY, display_filter)


def test_only_keeps_every_table_to_those_connections_and_their_numbers(proxy):
    kept = proxy.only([2, 5])
    for name in kept.built:
        df = getattr(kept, name)
        if "conn" in df:
            assert set(df["conn"].dropna()) <= {2, 5}, name
    assert kept.connections["conn"].tolist() == [2, 5]
    assert kept.requests["request"].tolist() == proxy.requests[proxy.requests["conn"].isin([2, 5])]["request"].tolist()
    assert len(kept.packets) == (proxy.packets["conn"].isin([2, 5])).sum()
    assert kept.source.detail["selected"].startswith(f"2 of {len(proxy.connections)} connections")
    assert "selected" not in proxy.source.detail           # the loaded Timeline is left as it was


def test_requests_where_keeps_the_rows_tshark_shows(tv, tshark):
    rows = json.loads(tv("requests", PROXY, "--json", "--where", "http.response.code >= 500").out)
    theirs = sorted(int(v) for v in tshark_values(tshark, PROXY, "http.response.code >= 500", "http.response.code"))
    assert sorted(r["status"] for r in rows) == theirs and theirs


def test_connections_and_timeline_where(tv, tshark):
    rows = json.loads(tv("connections", PROXY, "--json", "--where", "tcp.port == 9003").out)
    assert {r["conn"] for r in rows} == tshark_streams(tshark, PROXY, "tcp.port == 9003")
    events = json.loads(tv("timeline", PROXY, "--json", "--where", "kind == 'RST'").out)
    assert sorted(e["frame"] for e in events) == sorted(
        int(v) for v in tshark_values(tshark, PROXY, "tcp.flags.reset == 1", "frame.number"))


def test_a_recipe_reads_only_the_selected_connections(tv, tshark):
    r = tv("handshakes", PROXY, "--json=findings", "--where", "ip.addr == 10.88.1.2")
    finding = json.loads(r.out)
    selected = tshark_streams(tshark, PROXY, "ip.addr == 10.88.1.2")
    assert r.code == 0 and finding["summary"]["connections"] == len(selected)
    assert {row["conn"] for row in finding["rows"]} == selected


def test_info_says_what_it_kept(tv, tshark):
    facts = json.loads(tv("info", PROXY, "--json", "--where", "tcp.stream in {0, 2}").out)
    assert facts["frames"] == len(tshark_values(tshark, PROXY, "tcp.stream in {0, 2}", "frame.number"))
    assert facts["selected"].startswith("2 of ")


def test_report_where_leaves_the_other_connections_out(tv, tmp_path):
    page = tmp_path / "r.html"
    r = tv("report", PROXY, "-o", page, "--where", "tcp.stream == 0")
    html = page.read_text()
    assert r.code == 0 and "10.88.0.1:59914" in html and "10.88.0.1:59916" not in html


@pytest.mark.parametrize("args, says", [
    (("connections", PROXY, "--where", "tcp.port in {1..65535}"), "at most 64 apart"),
    (("handshakes", GRPC, "--where", "sni == 'nobody.example'"), "selects no connection"),
    (("tls", GRPC, "--where", "nosuchcolumn > 1"), "not defined in the connections table"),
    (("requests", PROXY, "--where", "frame.bogus == 1"), "no translation"),
    (("keepalive", PROXY, "--where", "status ==="), "cannot read"),
])
def test_refusals_are_one_line_and_exit_2(tv, args, says):
    tv(*args).assert_refused(says)


def test_an_exported_dataset_is_filtered_in_sql(proxy):
    from traceviz.cli.common import narrowed

    class Dataset:        # what open_dataset returns has no only(): its rows live in Parquet files
        source = proxy.source
    with pytest.raises(InputError, match="traceviz sql"):
        narrowed(Dataset(), "conn == 1")


def test_every_recipe_command_offers_where(tv):
    for command in ("handshakes", "tls", "h2", "keepalive", "proxy", "tcpgraph"):
        assert "--where" in tv(command, "--help").out, command
