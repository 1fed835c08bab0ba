"""TCP vs UDP on a lossy path: the ``transports`` recipe against the echo client's log (what came back)
and tshark (retransmission flags, header bytes)."""

from __future__ import annotations

import subprocess

import pytest

from bundled import CAPTURES, entry, timeline

CAPTURE = "tcp-vs-udp"
FACTS = entry(CAPTURE)["facts"]


def rows():
    from traceviz.recipe import discover, load_module
    f = load_module(discover()["transports"]).analyze(timeline(CAPTURE))
    return f, f.rows.set_index("transport")


def test_udp_lost_what_the_client_never_got_back():
    _, r = rows()
    u = r.loc["udp"]
    assert u["client"] == FACTS["udp"]["client"] and u["server"] == FACTS["udp"]["server"]
    assert u["data_packets_c2s"] == FACTS["udp"]["sent"]                  # captured at the sender: all of them
    assert u["data_packets_s2c"] == FACTS["udp"]["echoed"]
    assert u["unanswered"] == len(FACTS["udp"]["lost"]) > 0
    assert u["bytes_s2c"] == FACTS["udp"]["echoed"] * FACTS["message_bytes"]
    f, _ = rows()                          # --fail: the UDP flow, with the client's count of lost echoes
    assert len(f.problems) == 1 and f"{len(FACTS['udp']['lost'])} datagram(s)" in f.problems[0]


def test_tcp_delivered_everything_by_resending(tshark):
    _, r = rows()
    t = r.loc["tcp"]
    assert FACTS["tcp"]["echoed"] == FACTS["tcp"]["sent"]
    unique = FACTS["tcp"]["sent"] * FACTS["message_bytes"]
    assert t["bytes_s2c"] == unique                                    # every byte came back
    out = subprocess.run([tshark, "-r", str(CAPTURES / f"{CAPTURE}.pcapng"), "-Y",
                          "tcp.analysis.retransmission || tcp.analysis.fast_retransmission || "
                          "tcp.analysis.out_of_order || tcp.analysis.spurious_retransmission",
                          "-T", "fields", "-e", "tcp.len"], capture_output=True, text=True, check=True).stdout.split()
    assert t["retransmissions"] == len(out) > 0
    lost = subprocess.run([tshark, "-r", str(CAPTURES / f"{CAPTURE}.pcapng"), "-Y", "tcp.analysis.lost_segment",
                           "-T", "fields", "-e", "frame.number"], capture_output=True, text=True).stdout.split()
    assert t["lost_before_capture"] == len(lost)
    # What the client sent again crossed the capture point twice: its payload counts it twice.
    client_ip = FACTS["tcp"]["client"].split(":")[0]
    again = subprocess.run([tshark, "-r", str(CAPTURES / f"{CAPTURE}.pcapng"), "-Y",
                            f"ip.src == {client_ip} && (tcp.analysis.retransmission || tcp.analysis.out_of_order)",
                            "-T", "fields", "-e", "tcp.len"], capture_output=True, text=True).stdout.split()
    assert t["bytes_c2s"] == unique + sum(int(x) for x in again)


def test_header_overhead_matches_tshark(tshark):
    _, r = rows()
    for proto, field in (("tcp", "tcp.len"), ("udp", "udp.length")):
        out = subprocess.run([tshark, "-r", str(CAPTURES / f"{CAPTURE}.pcapng"), "-Y", proto, "-T", "fields",
                              "-e", "frame.len", "-e", field], capture_output=True, text=True, check=True).stdout
        wire = payload = 0
        for line in out.splitlines():
            a, b = line.split("\t")
            wire += int(a)
            payload += int(b) - (8 if proto == "udp" else 0)
        assert r.loc[proto, "wire_bytes"] == wire
        assert r.loc[proto, "overhead"] == pytest.approx(1 - payload / wire, abs=1e-4)
    assert r.loc["tcp", "overhead"] > r.loc["udp", "overhead"]


def test_words_and_chart():
    from traceviz.charts.transports import arrivals_chart
    f, r = rows()
    assert f.answer[0].startswith("Side by side: TCP delivered everything")      # first: a big capture's is paged
    tl = timeline(CAPTURE)
    for theme in ("light", "talk"):
        fig = arrivals_chart(tl.packets, tl.events, f.rows, theme=theme)
        dots = sum(len(t.x) for t in fig.data if t.name and "data" in t.name)
        assert dots == int(r["data_packets_c2s"].sum() + r["data_packets_s2c"].sum())


def _flow_by_filtering(p, conn: int) -> dict:
    """One flow's figures the plain way: its packets filtered out of the table (what
    ``per_flow`` computes for all flows in one pass)."""
    mine = p[(p["conn"] == conn).to_numpy(dtype=bool, na_value=False)]
    data = mine[(mine["len"].fillna(0) > 0).to_numpy(dtype=bool)]
    down = data[data["dir"] == "s2c"]
    gaps = down["ts"].diff().dropna()
    return {"packets": len(mine), "data": len(data), "up": int((data["dir"] == "c2s").sum()), "down": len(down),
            "wire": int(mine["wire_len"].sum()), "payload": int(data["len"].sum()),
            "gap": float(gaps.max()) if len(gaps) else None}


@pytest.mark.parametrize("name", ["http1-six-connections", "connection-pool", "proxy-nginx-502-504", "tcp-vs-udp",
                                  "push-vs-poll"])
def test_each_flows_figures_are_its_packets_filtered_out(name):
    """Flows interleave in the packets table (six connections at once, a pool, a proxy): each flow's
    counts, sums and longest server gap are those of its own packets, in frame order."""
    from traceviz.recipe import discover, load_module
    per_flow = load_module(discover()["transports"]).per_flow
    p = timeline(name).packets
    p = p[p["conn"].notna().to_numpy()]
    flows = per_flow(p)
    conns = sorted(int(c) for c in p["conn"].unique())
    assert sorted(flows) == conns and len(conns) > 1
    assert any(f["gap"] is not None for f in flows.values())
    for conn in conns:
        assert flows[conn] == _flow_by_filtering(p, conn), f"{name}: conn {conn}"


RESENT_FILTER = ("tcp.analysis.retransmission || tcp.analysis.fast_retransmission || "
                 "tcp.analysis.out_of_order || tcp.analysis.spurious_retransmission")


def test_each_flows_resent_and_lost_segments_are_tsharks(tshark):
    """Per TCP stream, on every bundled and corpus capture with more than one: the segments sent
    again and those lost before the capture, counted by tshark's flags for that stream."""
    from collections import Counter

    import traceviz
    from conftest import CORPUS
    from traceviz.recipe import discover, load_module
    recipe = load_module(discover()["transports"])
    paths = sorted(CAPTURES.glob("*.pcapng")) + sorted(
        p for p in CORPUS.glob("pcap/**/*.pcap*") if "corrupt" not in p.parts)
    flows = resent = 0
    for path in paths:
        name = path.name
        tl = traceviz.load(path, tables=recipe.TABLES, transport_only=True)
        tcp = tl.connections[tl.connections["transport"] == "tcp"]
        if len(tcp) < 2:
            continue

        def per_stream(flt: str) -> Counter:
            out = subprocess.run([tshark, "-r", str(path), "-Y", flt, "-T", "fields", "-e", "tcp.stream"],
                                 capture_output=True, text=True, check=True).stdout.split()
            return Counter(int(s) for s in out)
        again, lost = per_stream(RESENT_FILTER), per_stream("tcp.analysis.lost_segment")
        stream = dict(zip(tcp["conn"].tolist(), tcp["stream"].tolist()))
        for r in recipe.flow_rows(tl).itertuples(index=False):
            if r.transport == "tcp":
                assert (r.retransmissions, r.lost_before_capture) == (again[stream[r.conn]], lost[stream[r.conn]]), \
                    f"{name}: conn {r.conn}"
                flows += 1
                resent += r.retransmissions
    assert flows >= 110 and resent >= 4, (flows, resent)
