"""SYN floods, without and with SYN cookies: the ``synflood`` recipe against the server kernel's own
counters (nstat in its namespace), the flood's and the real client's logs, and tshark."""

from __future__ import annotations

import subprocess

import pytest

from bundled import CAPTURES, entry, timeline

NAMES = ["syn-flood", "syn-flood-cookies"]


def row(name):
    from traceviz.recipe import discover, load_module
    f = load_module(discover()["synflood"]).analyze(timeline(name))
    assert len(f.rows) == 1
    return f, f.rows.iloc[0]


@pytest.mark.parametrize("name", NAMES)
def test_flood_against_the_kernels_counters(name):
    facts = entry(name)["facts"]
    k = facts["server_counters"]
    f, r = row(name)
    assert r["syn_cookies"] == facts["syn_cookies"]
    assert r["sources"] == 250 + 1                          # the spoofed addresses and the real client
    assert r["syns"] - (1 + r["completed_syn_retransmits"][0]) == facts["flood"]["sent"]
    assert r["dropped"] == k["TcpExtTCPReqQFullDrop"]       # every SYN a full queue dropped
    assert r["synacks_resent"] == k["TcpRetransSegs"]       # the server's only retransmissions: SYN-ACKs
    assert facts["backlog"] <= r["queue_estimate"] <= facts["backlog"] + 1
    # A cookie went to each half-open SYN answered once, and to the real client, who sent it back.
    assert r["stateless_synacks"] == k["TcpExtSyncookiesSent"] - k["TcpExtSyncookiesRecv"]
    assert abs(r["syn_rate"] - facts["flood"]["rate"]) <= 5


@pytest.mark.parametrize("name", NAMES)
def test_the_real_clients_handshake(name):
    facts = entry(name)["facts"]
    f, r = row(name)
    assert r["completed"] == 1 and facts["legit"]["connected"]
    assert abs(r["completed_connect_s"][0] - facts["legit"]["connect_s"]) < 0.01
    if facts["syn_cookies"]:
        assert r["completed_syn_retransmits"] == [0] and not f.problems
    else:
        assert r["completed_syn_retransmits"][0] >= 1 and len(f.problems) == 2


@pytest.mark.parametrize("name", NAMES)
def test_synacks_match_tshark(tshark, name):
    out = subprocess.run([tshark, "-r", str(CAPTURES / f"{name}.pcapng"), "-Y", "tcp.flags.syn == 1", "-T", "fields",
                          "-e", "tcp.flags.ack", "-e", "tcp.analysis.retransmission", "-e", "ip.src"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    synacks = [x for x in out if x.split("\t")[0] in ("1", "True")]
    resent = [x for x in synacks if x.split("\t")[1]]
    spoofed = [x for x in out if x.split("\t")[0] in ("0", "False") and x.split("\t")[2].startswith("10.94.200.")]
    _, r = row(name)
    ev = timeline(name).events
    assert (ev["kind"] == "SYN-ACK").sum() == len(synacks)
    assert r["synacks_resent"] == len(resent)
    assert len(spoofed) == entry(name)["facts"]["flood"]["sent"]


def test_chart_stacks_every_syn():
    from traceviz.charts.synflood import flood_chart
    from traceviz.recipe import discover, load_module
    recipe = load_module(discover()["synflood"])
    for name in NAMES:
        tl = timeline(name)
        rows = recipe.analyze(tl).rows
        for theme in ("light", "talk"):
            fig = flood_chart(tl.connections, recipe.synack_counts(tl), rows, theme=theme)
            bars = sum(sum(t.y) for t in fig.data if t.type == "bar")
            assert bars == len(tl.connections[tl.connections["server"] == rows.iloc[0]["server"]])
