"""The TCP stream graphs and the flow graph: their data against tshark, their verdicts
against conversations written to show one cause, their lanes against the recording.

tcpgraph: the time-sequence graph's segments and ACK line, the window
graph's advertised window and bytes in flight, and the RTT graph's samples
are tshark's tcp.seq/len, tcp.ack, tcp.window_size,
tcp.analysis.bytes_in_flight and tcp.analysis.ack_rtt.  A sender held back
by the receiver's window, by loss, or by its application, each written out
packet by packet, gets that verdict.

flow: the proxy captures (recorded on the proxy's two interfaces) draw
three lanes, client, proxy and upstream, as their manifest describes; the
browser page load reads from its first SYN to its last HTTP/2 DATA frame
(tshark, decrypting with the capture's keys).
"""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pandas as pd
import pytest

import traceviz
from conftest import CORPUS, ROOT
from tcpgen import Seg, handshake, write
from traceviz.recipe import bundled_dir, load_module

TCPGRAPH = load_module(bundled_dir() / "tcpgraph.py")
FLOW = load_module(bundled_dir() / "flow.py")
LOSSY = CORPUS / "pcap" / "tcp" / "syn-retransmit__suricata-verify_bug-4376.pcap"


def fields(tshark, path, names, flt="tcp") -> dict[int, list[str]]:
    args = [tshark, "-r", str(path), "-Y", flt, "-T", "fields", "-e", "frame.number"]
    for n in names:
        args += ["-e", n]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120).stdout
    return {int(v[0]): v[1:] for v in (line.split("\t") for line in out.splitlines())}


def trace(fig, name_start):
    return next(t for t in fig.data if (t.name or "").startswith(name_start))


@pytest.fixture(scope="module")
def lossy():
    tl = traceviz.load(LOSSY, measure_tcp=True)
    return tl, TCPGRAPH.analyze(tl, conn=0)


def test_graph_data_is_tsharks(lossy, tshark):
    tl, finding = lossy
    top = finding.rows.iloc[0]
    assert (top["conn"], top["dir"]) == (0, "s2c")
    server = top["sender"]
    theirs = fields(tshark, LOSSY, ["frame.time_relative", "tcp.srcport", "tcp.seq", "tcp.len", "tcp.ack",
                                    "tcp.window_size", "tcp.analysis.bytes_in_flight", "tcp.analysis.ack_rtt",
                                    "tcp.flags.ack"])
    sport = server.rsplit(":", 1)[1]
    data = {f: v for f, v in theirs.items() if v[1] == sport and int(v[3]) > 0}
    acks = {f: v for f, v in theirs.items() if v[1] != sport and v[8] in ("1", "True")}

    seq = finding.figure("seq")
    bars = np.concatenate([t.y for t in seq.data if t.mode == "lines" and (t.name or "").split(" (")[0]
                           in ("data segment", "retransmission", "out of order")])
    starts, ends = bars[0::3], bars[1::3]
    assert sorted(zip(starts, ends)) == sorted((int(v[2]), int(v[2]) + int(v[3])) for v in data.values())
    assert list(trace(seq, "ACK").y) == [int(v[4]) for _, v in sorted(acks.items())]

    window = finding.figure("window")
    assert list(trace(window, "receive window").y) == [int(v[5]) for _, v in sorted(acks.items())]
    assert list(trace(window, "bytes in flight").y) == [int(v[6]) for _, v in sorted(data.items()) if v[6]]

    rtt = finding.figure("rtt")
    ours = sorted(np.concatenate([t.y for t in rtt.data if "ACK" in (t.name or "")]))
    assert ours == pytest.approx(sorted(float(v[7]) * 1000 for v in acks.values() if v[7]), abs=1e-3)


def test_lossy_transfer_is_congestion(lossy):
    _, finding = lossy
    assert finding.rows.iloc[0]["limited_by"].startswith("congestion")
    assert "congestion" in finding.answer[0]


def rounds(per_round, gap, n, win=65535, mss=1000, lose=()):
    """The server sends ``per_round`` segments every ``gap`` seconds; the client ACKs each
    round 50 ms later, advertising ``win``; segment numbers in ``lose`` are resent just
    before the next round (late enough not to count as out of order)."""
    segs, seq, t = handshake(win=win), 1, 0.1
    client = [Seg("c", "PA", 1, 1, 100, 0.06)]
    for r in range(n):
        first = seq
        for i in range(per_round):
            segs.append(Seg("s", "A", seq, 101, mss, t + i * 0.0005))
            if (r * per_round + i) in lose:
                segs.append(Seg("s", "A", seq, 101, mss, t + gap - 0.0005))
            seq += mss
        segs.append(Seg("c", "A", 101, seq, 0, t + 0.05, win=win))
        t += gap
        assert seq > first
    return sorted(client + segs, key=lambda g: g.t)


@pytest.mark.parametrize("name, segs, verdict", [
    ("window", rounds(3, 0.051, 12, win=3000), "receive window"),
    ("loss", rounds(4, 0.06, 12, lose=(5, 13, 22, 30)), "congestion"),
    ("idle", rounds(1, 0.5, 12), "application"),
    ("path", rounds(4, 0.051, 12), "path (none of these)"),
])
def test_verdicts(name, segs, verdict, tmp_path):
    tl = traceviz.load(write(tmp_path / f"{name}.pcap", segs), measure_tcp=True)
    row = TCPGRAPH.analyze(tl).rows.iloc[0]
    assert row["dir"] == "s2c" and row["limited_by"] == verdict


@pytest.mark.parametrize("name", ["proxy-haproxy-503-502", "proxy-nginx-502-504", "proxy-keepalive-race"])
def test_proxy_flow_has_three_hosts(name):
    manifest = {c["name"]: c for c in json.loads((ROOT / "captures" / "manifest.json").read_text())["captures"]}
    legs = manifest[name]["recorded"]["capture_point"]
    tl = traceviz.load(ROOT / "captures" / f"{name}.pcapng")
    finding = FLOW.analyze(tl)
    lanes = [ann.text.replace("<b>", "").replace("</b>", "") for ann in finding.figure("flow").layout.annotations
             if ann.yref == "paper"]
    assert len(lanes) == 3
    client, proxy, upstream = lanes
    # The manifest names the legs: client leg 10.88.0.1 <-> 10.88.0.2, upstream leg 10.88.1.1 <-> 10.88.1.2.
    assert "client leg 10.88.0.1 <-> 10.88.0.2" in legs and "upstream leg 10.88.1.1 <-> 10.88.1.2" in legs
    assert (client, proxy, upstream) == ("10.88.0.1", "10.88.0.2 / 10.88.1.1", "10.88.1.2")


def test_page_load_reads_from_syn_to_last_data(tshark):
    path, keys = ROOT / "captures" / "browser-page-load.pcapng", ROOT / "captures" / "browser-page-load.keys"
    first_syn = min(fields(tshark, path, [], "tcp.flags.syn == 1 && tcp.flags.ack == 0"))
    decrypted = subprocess.run([tshark, "-r", str(path), "-o", f"tls.keylog_file:{keys}", "-Y", "http2.type == 0",
                                "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, timeout=120)
    last_data = max(int(f) for f in decrypted.stdout.split())
    tl = traceviz.load(path, keylog=keys)
    finding = FLOW.analyze(tl)
    rows = finding.rows
    assert int(rows["frame"].iloc[0]) == first_syn and rows["label"].iloc[0] == "SYN"
    assert last_data in set(rows["frame"].astype(int))
    labels = list(rows["label"])
    assert any("DATA" in t for t in labels) and any(t.startswith("HEADERS[1]: GET /page/index.html") for t in labels)
    # The figure draws every one of them, as one story: one arrow (and hover point) per message, in order.
    fig = finding.figure("flow")
    hover = next(t for t in fig.data if t.name == "messages")
    drawn = [int(re.search(r"frame (\d+)", h).group(1)) for h in hover.hovertext]
    assert drawn == list(rows["frame"].astype(int))


def test_flow_labels_cross_no_label_and_no_arrow(tmp_path):
    # The flow graph is the ladders' sequence diagram with more lanes: its labels obey the same rule.

    from svg_layout import label_crossings, write_svgs
    from traceviz.charts import export
    if export.browser() is None:
        pytest.skip("no Chrome or Chromium for kaleido")
    cases = [("proxy-nginx-502-504", None), ("browser-page-load", ROOT / "captures" / "browser-page-load.keys")]
    figs = [export.for_image(FLOW.analyze(traceviz.load(name, keylog=keys)).figure("flow")) for name, keys in cases]
    paths = [tmp_path / f"{i}.svg" for i in range(len(figs))]
    write_svgs(figs, paths, width=1280, height=720)
    for (name, _), path in zip(cases, paths):
        count, crossings = label_crossings(path.read_text())
        assert count >= 5 and not crossings, (name, count, crossings[:3])


def _shares_by_merging(data, back, rtt: float) -> tuple[float, float]:
    """The window-full share and idle seconds of one direction, the plain way: the window and
    the highest ACK each segment saw found by ``pandas.merge_asof`` (what ``tcpgraph`` finds
    with one sorted search per direction)."""
    import pandas as pd
    if not len(data) or not len(back):
        return 0.0, 0.0
    seen = pd.merge_asof(data[["frame", "len", "bytes_in_flight", "seq", "ts"]],
                         back[["frame", "win", "ack"]].assign(ack=back["ack"].astype(float).cummax()),
                         on="frame", direction="backward")
    flight = seen["bytes_in_flight"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    edge = seen["win"].astype("Float64").to_numpy(dtype=float, na_value=np.nan) - seen["len"].astype(float).to_numpy()
    known = ~np.isnan(flight) & ~np.isnan(edge)
    full = float((flight[known] >= edge[known]).mean()) if known.any() else 0.0
    if len(data) < 2:
        return full, 0.0
    threshold = 2 * rtt if rtt == rtt and rtt > 0 else 0.010
    sent_end = np.maximum.accumulate((seen["seq"] + seen["len"]).to_numpy(dtype=float))
    gaps = np.diff(seen["ts"].to_numpy(dtype=float))
    caught_up = seen["ack"].to_numpy(dtype=float)[1:] >= sent_end[:-1]
    return full, float(gaps[caught_up & (gaps > threshold)].sum())


GRAPH_FILES = sorted((ROOT / "captures").glob("*.pcapng")) + sorted(
    p for p in CORPUS.glob("pcap/**/*.pcap*") if "corrupt" not in p.parts)


@pytest.mark.parametrize("path", GRAPH_FILES, ids=lambda p: p.name)
def test_each_directions_row_is_the_one_found_the_plain_way(path):
    """Every direction's row (all of them found at once, in numpy) against the same direction
    found the plain way: its packets filtered out, the window and highest ACK each segment saw
    by ``pandas.merge_asof``, its events counted -- on every bundled and corpus capture it
    applies to.  (One with no TCP events stopped the recipe before: an internal error.)"""
    tl = traceviz.load(path, measure_tcp=True, tables=["connections", "events", "packets"], transport_only=True)
    if not TCPGRAPH.applies(tl):
        return
    rows = TCPGRAPH.analyze(tl).rows
    plain = _plain_rows(tl)
    assert len(rows) == len(plain) > 0
    # Busiest first; ties by connection, then in the order the directions first appear
    busiest = sorted(plain, key=lambda r: (-r["bytes"], r["conn"]))
    assert list(zip(rows["conn"], rows["dir"])) == [(r["conn"], r["dir"]) for r in busiest]
    mine = {(r["conn"], r["dir"]): r for r in rows.to_dict("records")}
    for want in plain:
        got = mine[(want["conn"], want["dir"])]
        for field, value in want.items():
            assert _same(got[field], value), f"{path.name}: conn {want['conn']} {want['dir']}: {field}"


def _same(a, b) -> bool:
    if a is pd.NA or b is pd.NA:
        return a is b
    return (a != a and b != b) or a == b


def _plain_rows(tl) -> list[dict]:
    """Each direction that carried data, the plain way: a filter per direction (what tcpgraph
    did until it took 4 ms a direction), in the order the directions first appear."""
    p, ev = tl.packets, tl.events
    tcp = p[(p["transport"] == "tcp") & p["conn"].notna()]
    out = []
    for (conn, way), pk in tcp.groupby([tcp["conn"].astype("int64"), tcp["dir"].astype(str)], sort=False):
        data = pk[pk["len"].fillna(0) > 0].sort_values("frame")
        if not len(data):
            continue
        other = "s2c" if way == "c2s" else "c2s"
        both = p[p["conn"] == conn]
        back = both[(both["dir"] == other) & both["ack"].notna()].sort_values("frame")
        rtt = _plain_rtt(tl.connections[tl.connections["conn"] == conn].iloc[0], both)
        full, idle = _shares_by_merging(data, back, rtt)
        t = data["ts"].to_numpy(dtype=float)
        duration = float(t[-1] - t[0])
        unique = int((data["seq"] + data["len"]).max() - data["seq"].min())
        events = ev[(ev["conn"] == conn) & (ev["layer"] == "tcp")]
        kinds = events.loc[events["dir"] == way, "kind"]
        theirs = events.loc[events["dir"] == other, "kind"]
        out.append({
            "conn": int(conn), "dir": way, "bytes": int(data["len"].sum()), "segments": len(data),
            "start": float(t[0]), "duration": duration,
            "goodput_bps": unique * 8 / duration if duration > 0 else float("nan"), "rtt_ms": rtt * 1000,
            "max_in_flight": data["bytes_in_flight"].max(),
            "window": float(back["win"].median()) if len(back) else float("nan"),
            "window_full_share": full, "idle_share": idle / duration if duration > 0 else 0.0,
            "retransmissions": int(kinds.isin(TCPGRAPH.RETRANSMITTED).sum()),
            "lost_segments": int((kinds == "lost-segment").sum()),
            "dup_acks": int((theirs == "duplicate-ack").sum()), "zero_windows": int((theirs == "zero-window").sum())})
    return out


def _plain_rtt(connection, pk) -> float:
    hs = connection["handshake_rtt"]
    if hs == hs and float(hs) > 0:
        return float(hs)
    ok = pk["ack_rtt"].notna() & ~pk["rtt_ambiguous"].astype(bool)
    halves = pk[ok].groupby(pk["dir"].astype(str))["ack_rtt"].median()
    return float(halves.sum()) if len(halves) == 2 else float("nan")




def test_directions_of_equal_bytes_keep_the_order_they_first_appear_in(tmp_path):
    """A capture that starts mid-connection with the server speaking: both directions carry
    100 bytes, and the server's, seen first, is listed first (as the plain way lists them)."""
    segs = [Seg("s", "PA", 1, 1, 100, 0.0), Seg("c", "A", 1, 101, 0, 0.01),
            Seg("c", "PA", 1, 101, 100, 0.02), Seg("s", "A", 101, 101, 0, 0.03)]
    tl = traceviz.load(write(tmp_path / "echo.pcap", segs), measure_tcp=True)
    rows = TCPGRAPH.analyze(tl).rows
    assert rows["bytes"].tolist() == [100, 100]
    assert rows["dir"].tolist() == [d for d in tl.packets["dir"].astype(str).drop_duplicates()] == ["s2c", "c2s"]


# --- the flow graph's lanes and arrows, held to the plain way ---------------------------------

@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "captures").glob("*.pcapng")))
def test_relayed_requests_are_found_as_a_filter_finds_them(name):
    """A request sent again (same method and path) by another host while it was open: the
    pairs one sort and a search per request find, against a filter of every request for each
    (the way the flow graph found them until it took seconds per thousand requests)."""
    from traceviz.charts import flowgraph
    tl = traceviz.load(name)
    rq = tl.requests
    if not len(rq):
        return
    ends = tl.connections.set_index("conn")[["client", "server"]]
    r = rq[rq["conn"].notna()].join(ends, on="conn")
    r = r.assign(path=r["url"].astype("string").str.replace(r"^[a-z]+://[^/]*", "", regex=True),
                 client_host=r["client"].map(flowgraph._host), server_host=r["server"].map(flowgraph._host))
    plain, end = set(), r["end"].fillna(np.inf)
    for outer in r.itertuples():
        inner = r[(r["method"] == outer.method) & (r["path"] == outer.path) & (r["start"] > outer.start)
                  & (r["start"] < end[outer.Index]) & (r["client_host"] != outer.client_host)
                  & (r["client_host"] != outer.server_host)]
        plain |= {(outer.server_host, host) for host in inner["client_host"].unique()}
    shown = {p for p in plain if p[0] and p[1]}           # what becomes a lane's name
    assert {p for p in flowgraph._sent_on(r) if p[0] and p[1]} == shown


@pytest.mark.parametrize("name", ["h2-multiplexing", "proxy-nginx-502-504", "quic-h3", "browser-page-load"])
def test_one_arrow_per_frame_labelled_by_its_top_layer(name):
    """Each frame's arrow: its highest layer's events, their labels joined -- against one
    ``groupby`` over every frame (frames with one event no longer go through it)."""
    from traceviz.charts import flowgraph
    tl = traceviz.load(name)
    ev = tl.events[tl.events["frame"].notna() & tl.events["layer"].isin(list(flowgraph.LAYER_RANK))]
    ev = ev.assign(rank=ev["layer"].map(flowgraph.LAYER_RANK), frame=ev["frame"].astype("int64"))
    ev = ev[ev["rank"] == ev.groupby("frame")["rank"].transform("max")]
    ev = ev.assign(text=[flowgraph._label(k, l, d, s) for k, l, d, s in
                         zip(ev["kind"], ev["layer"], ev["detail"], ev["stream"])])
    want = ev.groupby("frame", sort=True).agg(conn=("conn", "first"), layer=("layer", "first"),
                                              stream=("stream", "first"), label=("text", flowgraph._join))
    got = flowgraph._event_arrows(tl).set_index("frame").sort_index()
    if name in ("h2-multiplexing", "browser-page-load"):
        assert ev["frame"].duplicated().any()      # frames carrying several events
    pd.testing.assert_frame_equal(got[list(want.columns)], want, check_dtype=False, check_index_type=False)


def test_a_long_label_alone_on_its_frame_is_cut_as_a_joined_one_is():
    """A frame's one event whose label passes ``MAX_LABEL`` gets the cut a joined label gets."""
    from types import SimpleNamespace

    from traceviz.charts import flowgraph
    long = "GET /" + "a" * 80
    events = pd.DataFrame({"frame": [1, 2, 2], "conn": [0, 0, 0], "layer": ["http", "http", "http"],
                           "kind": ["request"] * 3, "detail": [long, "GET /x", long], "stream": [pd.NA] * 3})
    arrows = flowgraph._event_arrows(SimpleNamespace(events=events)).set_index("frame")["label"]
    assert arrows[1] == flowgraph._join([long]) != long
    assert arrows[2] == flowgraph._join(["GET /x", long])


def test_each_reset_is_one_problem_naming_its_frame_as_tshark_finds_it(tshark):
    """flow's problems: one per arrow that resets a connection, on every bundled capture, and
    their frames are tshark's frames with the RST flag."""
    told = 0
    for path in sorted((ROOT / "captures").glob("*.pcapng")):
        f = FLOW.analyze(traceviz.load(path))
        frames = [int(re.match(r"frame (\d+): ", p).group(1)) for p in f.problems]
        out = subprocess.run([tshark, "-r", str(path), "-Y", "tcp.flags.reset == 1", "-T", "fields",
                              "-e", "frame.number"], capture_output=True, text=True, check=True).stdout.split()
        assert frames == [int(x) for x in out], path.name
        labels = dict(zip(f.rows["frame"].tolist(), f.rows["label"].tolist()))
        assert all("RST" in labels[fr] and "reset conn " in p for fr, p in zip(frames, f.problems))
        told += len(frames)
    assert told >= 20


@pytest.mark.parametrize("name", ["http1-six-connections", "journey-https", "proxy-nginx-502-504", "tcp-vs-udp"])
def test_unnamed_frames_are_the_arrows_a_loop_over_the_packets_finds(name):
    """The frames no event names (bytes no decoder read, the handshake's ACK), found from
    plain lists, against a loop over the packets table's own columns; and the lanes in the
    order hosts first appear, sender before receiver."""
    from traceviz.charts import flowgraph
    tl = traceviz.load(name)
    pk = tl.packets
    named = set(tl.events["frame"].dropna().astype("int64"))
    want = []
    carrying = pk[(pk["len"].fillna(0) > 0) & pk["transport"].isin(["tcp", "udp"])]
    for f, c, tr, n in zip(carrying["frame"], carrying["conn"], carrying["transport"], carrying["len"]):
        if int(f) not in named:
            want.append((int(f), c, str(tr), f"TCP segment, {int(n)} bytes" if tr == "tcp" else f"UDP, {int(n)} bytes"))
    for f in sorted(set(tl.connections["ack_frame"].dropna().astype("int64")) - named):
        want.append((int(f), pk.loc[pk["frame"] == f, "conn"].iloc[0], "tcp", "ACK"))
    got = flowgraph._plain_arrows(tl)
    assert [tuple(r) for r in got[["frame", "conn", "layer", "label"]].itertuples(index=False)] == want
    assert len(want) > 0
    msgs = flowgraph.messages(tl)
    hosts = []
    for a, b in zip(msgs["src"], msgs["dst"]):
        hosts += [h for h in (str(a), str(b)) if h not in hosts]
    assert flowgraph.lane_order(msgs) == hosts
