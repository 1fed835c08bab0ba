"""Charts: themes, export, the ladder diagram and the handshake-RTT view.

Synthetic timelines here are scenarios with known facts: a capture point
``d_client`` seconds from the client and ``d_server`` from the server, so the
handshake halves, frame numbers and labels a correct chart shows are known in
advance.  Real corpus captures are checked against tshark.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from traceviz.model import SourceInfo, Timeline, conform, empty_table

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("TRACEVIZ_CORPUS", ROOT / "tests" / "corpus"))
TCP_DIR = CORPUS / "pcap" / "tcp"
HOSTILE = "<img src=x onerror=alert(1)>"


# --- scenario builder (also used by test_handshakes_recipe.py) -------------------------------

def tcp_conversation(conn, at, *, client=("10.0.0.1", 40000), server=("10.0.0.2", 80),
                     d_client=0.002, d_server=0.020, lost_syns=0, rto=1.0, outcome="ok",
                     request=517, response=1200, think=0.005):
    """One TCP connection as a capture point between client and server sees it.

    The point is ``d_client`` seconds (one way) from the client and ``d_server``
    from the server; every packet is sent the moment its trigger arrives.
    ``lost_syns`` SYNs pass the point and are lost beyond it; the client
    retransmits after ``rto``, doubling.  Returns (packet rows, the connection
    row a correct analysis produces); frames are numbered by :func:`timeline`.
    """
    (cip, cport), (sip, sport) = client, server
    pk = []

    def send(ts, d, flags, seq, ack, length=0, win=502):
        src, dst, sp, dp = (cip, sip, cport, sport) if d == "c2s" else (sip, cip, sport, cport)
        pk.append(dict(ts=ts, src=src, dst=dst, sport=sp, dport=dp, transport="tcp", conn=conn, dir=d,
                       flags=flags, seq=seq, ack=ack, win=win, len=length, wire_len=66 + length))

    n_syns = lost_syns + 1 if outcome != "unanswered" else max(lost_syns, 0) + 1
    syn_sent = [at + rto * (2 ** k - 1) for k in range(n_syns)]
    syns = [t + d_client for t in syn_sent]
    for t in syns:
        send(t, "c2s", "SYN", 0, None, win=64240)
    row = dict(conn=conn, transport="tcp", stream=conn, client=f"{cip}:{cport}", server=f"{sip}:{sport}",
               client_by="syn", syn=syns[0], syn_retransmits=n_syns - 1,
               syn_backoff=[b - a for a, b in zip(syns, syns[1:])], mss_client=1460, wscale_client=7,
               sack_permitted=True, app="unknown", last_syn=syns[-1], syn_wait=syns[-1] - syns[0],
               synack_lost=False, _frames={"syn_frame": (syns[-1], "SYN")})
    arrive = syns[-1] + d_server
    if outcome == "refused":
        send(arrive + d_server, "s2c", "RST,ACK", 0, 1, win=0)
        row.update(close="refused", rtt_server=2 * d_server)
    elif outcome == "unanswered":
        row.update(close="unanswered")
    else:
        synack = arrive + d_server
        send(synack, "s2c", "SYN,ACK", 0, 1, win=65160)
        ack = synack + 2 * d_client
        send(ack, "c2s", "ACK", 1, 1)
        req = ack + 1e-6
        send(req, "c2s", "PSH,ACK", 1, 1, request)
        resp = req + 2 * d_server + think
        send(resp, "s2c", "PSH,ACK", 1, 1 + request, response, win=509)
        cack = resp + 2 * d_client
        send(cack, "c2s", "ACK", 1 + request, 1 + response)
        send(cack + 1e-6, "c2s", "FIN,ACK", 1 + request, 1 + response)
        sfin = cack + 1e-6 + 2 * d_server
        send(sfin, "s2c", "FIN,ACK", 1 + response, 2 + request, win=509)
        send(sfin + 2 * d_client, "c2s", "ACK", 2 + request, 2 + response)
        row.update(synack=synack, ack=ack, handshake_rtt=ack - syns[-1], rtt_server=synack - syns[-1],
                   rtt_client=ack - synack, close="fin-client", mss_server=1460, wscale_server=7,
                   bytes_c2s=request, bytes_s2c=response, irtt=ack - syns[-1], server_half=synack - syns[-1],
                   client_half=ack - synack)
        row["_frames"].update(synack_frame=(synack, "SYN,ACK"), ack_frame=(ack, "ACK"))
    return pk, row


def timeline(*convs, path="scenario.pcap"):
    """A Timeline of several conversations: frames numbered in time order, events for retransmitted SYNs."""
    rows = [p for pk, _ in convs for p in pk]
    packets = pd.DataFrame(rows).sort_values("ts", kind="stable").reset_index(drop=True)
    packets.insert(0, "frame", range(1, len(packets) + 1))
    packets = conform("packets", packets)
    conns, events = [], []
    for _, row in convs:
        mine = packets[packets["conn"] == row["conn"]]
        c2s = mine["dir"] == "c2s"
        row = dict(row, first_frame=int(mine["frame"].min()), last_frame=int(mine["frame"].max()),
                   start=float(mine["ts"].min()), end=float(mine["ts"].max()), packets=len(mine),
                   packets_c2s=int(c2s.sum()), packets_s2c=int((~c2s).sum()))
        row.setdefault("bytes_c2s", 0)
        row.setdefault("bytes_s2c", 0)
        for col, (ts, flags) in row.pop("_frames").items():   # the handshake packets, by their known times
            row[col] = int(mine[(mine["ts"] == ts) & (mine["flags"] == flags)]["frame"].iloc[0])
        conns.append(row)
        syn_frames = mine[(mine["flags"] == "SYN")]["frame"].tolist()
        for f in syn_frames[1:]:
            p = mine[mine["frame"] == f].iloc[0]
            events.append(dict(ts=p["ts"], frame=f, conn=row["conn"], layer="tcp", kind="retransmission",
                               dir="c2s", size=0, detail="SYN retransmitted"))
    connections = conform("connections", pd.DataFrame(conns).sort_values("conn").reset_index(drop=True))
    ev = conform("events", pd.DataFrame(events)) if events else empty_table("events")
    return Timeline(source=SourceInfo(path=path, format="pcap"), packets=packets,
                    connections=connections, events=ev)


def busy_delays(i):
    """(d_client, d_server) of busy_timeline's connection i: varied, and conn 7 slow on the server side."""
    return 0.001 + 0.0005 * (i % 3), (0.100 if i == 7 else 0.010 + 0.004 * (i % 5))


def busy_timeline(n=12):
    """n connections over a few seconds: varied RTTs, two with a lost SYN, one refused, one unanswered."""
    convs = []
    for i in range(n):
        d_client, d_server = busy_delays(i)
        kw = dict(client=("10.0.0.1", 41000 + i), d_client=d_client, d_server=d_server)
        if i in (3, 8):
            kw["lost_syns"] = 1
        if i == 5:
            kw.update(outcome="refused", server=("10.0.0.2", 81))
        if i == 10:
            kw.update(outcome="unanswered", server=("10.0.0.9", 80), lost_syns=2)
        convs.append(tcp_conversation(i, 1_700_000_000.0 + 0.35 * i, **kw))
    return timeline(*convs)


def lost_syn_timeline(**kw):
    """Conn 0: one SYN lost beyond the capture point; client half 8 ms, server half 100 ms."""
    kw = {"lost_syns": 1, "d_client": 0.004, "d_server": 0.050, **kw}
    return timeline(tcp_conversation(0, 1_700_000_000.0, **kw))


def annotation_texts(fig):
    return [a.text or "" for a in fig.layout.annotations]


def trace(fig, name_prefix):
    hits = [t for t in fig.data if (t.name or "").startswith(name_prefix)]
    assert hits, f"no trace named {name_prefix!r}: {[t.name for t in fig.data]}"
    return hits[0]


# --- text -----------------------------------------------------------------------------------

from hypothesis import given, strategies as st  # noqa: E402

from traceviz.charts import export, theme  # noqa: E402
from traceviz.charts.ladder import fmt_ms, label, ladder  # noqa: E402
from traceviz.charts.rtt import handshake_rtt_view  # noqa: E402
from traceviz.charts.text import safe  # noqa: E402


def test_safe_makes_markup_inert():
    out = safe(HOSTILE)
    assert "<" not in out and ">" not in out
    assert out == "&lt;img src=x onerror=alert(1)&gt;"
    assert "$" not in safe("$\\alpha$") and safe("$5") == "&#36;5"
    assert safe(None) == "" and safe(float("nan")) == "" and safe(pd.NA) == ""
    assert safe("a\x00b\nc") == "a\\x00b\\nc"


def test_safe_limit_cuts_before_escaping():
    assert safe("<" * 10, limit=4) == "&lt;&lt;&lt;\u2026"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=60))
def test_safe_round_trips_printable_text(text):
    import html
    out = safe(text)
    assert "<" not in out and ">" not in out and "$" not in out
    if all(ch.isprintable() or ch == " " for ch in text):
        assert html.unescape(out) == text


# --- themes ---------------------------------------------------------------------------------

def _luminance(color: str) -> float:
    color = color.lstrip("#")
    rgb = [int(color[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    lin = [v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_themes_and_palette():
    assert theme.THEMES == ("light", "dark", "talk")
    needed = {"client", "server", "SYN", "FIN", "RST", "data", "ACK", "retransmission", "dup-ack",
              "queueing", "blocked", "dns", "connect", "tls", "send", "wait", "receive"}
    for name in theme.THEMES:
        c = theme.colors(name)
        assert needed <= set(c)
        # WCAG: body text at least 4.5:1; the talk theme at least 7:1 (AAA)
        assert contrast(c["text"], c["background"]) >= (7 if name == "talk" else 4.5)
        for key in ("client", "server", "SYN", "RST", "data", "retransmission"):
            assert contrast(c[key], c["background"]) >= 3, (name, key)
    with pytest.raises(ValueError, match="light, dark, talk"):
        theme.colors("neon")


def test_talk_theme_is_a_16_9_slide_with_large_type():
    import plotly.graph_objects as go
    fig = theme.apply(go.Figure(), "talk")
    assert (fig.layout.width, fig.layout.height) == (1920, 1080)
    tpl = fig.layout.template.layout
    assert tpl.font.size >= 20 and tpl.xaxis.tickfont.size >= 20 and tpl.legend.font.size >= 20
    s = theme.sizes("talk")
    assert s["small"] >= 20 and s["line"] >= 2 * theme.sizes("light")["line"]     # thick lines
    light = theme.apply(go.Figure(), "light")
    assert light.layout.template.layout.paper_bgcolor == "#ffffff"
    assert theme.apply(go.Figure(), "dark").layout.template.layout.paper_bgcolor == theme.colors("dark")["background"]


# --- ladder ---------------------------------------------------------------------------------

def test_ladder_arrows_labels_and_frames():
    tl = lost_syn_timeline()
    conn = tl.connections.iloc[0]
    fig = ladder(tl.packets, conn, events=tl.events)
    # 10 packets: 2 SYN (one retransmitted), SYN-ACK, 3 ACK, 2 data, 2 FIN
    assert trace(fig, "retransmission").name == "retransmission (1)"
    assert trace(fig, "retransmission").line.dash == "dash"
    assert trace(fig, "SYN / SYN-ACK").name == "SYN / SYN-ACK (2)"
    assert trace(fig, "data").name == "data (2)" and trace(fig, "FIN").name == "FIN (2)"
    assert trace(fig, "ACK").name == "ACK (3)"
    texts = annotation_texts(fig)
    for want in ("[no answer] SYN seq=0 win=64240 mss=1460 ws=7",     # the scenario's lost SYN
                 "[retransmission] SYN seq=0 win=64240 mss=1460 ws=7",
                 "SYN,ACK seq=0 ack=1 win=65160 mss=1460 ws=7",
                 "ACK seq=1 ack=1", "PSH,ACK seq=1 ack=1 len=517",
                 "PSH,ACK seq=1 ack=518 len=1200", "FIN,ACK seq=518 ack=1201"):
        assert want in texts, want
    frames = trace(fig, "frames")
    # every packet is labelled; ACK #4 + request #5, and ACK #7 + FIN #8, leave the client together
    assert list(frames.text) == ["#1", "#2", "#3", "#4 #5", "#6", "#7 #8", "#9", "#10"]
    # client-sent frames start at the client lane (x=0), server-sent at the server lane
    dirs = dict(zip(tl.packets["frame"], tl.packets["dir"]))
    for x, text in zip(frames.x, frames.text):
        d = dirs[int(text.split()[0][1:])]
        assert (x < 0) if d == "c2s" else (x > 1)


def test_ladder_hover_has_frame_time_flags_and_sits_on_capture_line():
    tl = lost_syn_timeline(d_client=0.010, d_server=0.030)
    fig = ladder(tl.packets, tl.connections.iloc[0], events=tl.events)
    hover = trace(fig, "packets")
    assert len(hover.hovertext) == len(tl.packets)
    for text, (_, p) in zip(hover.hovertext, tl.packets.iterrows()):
        assert f"frame {p['frame']}</b>" in text
        assert f"flags: {p['flags']}" in text
        assert datetime.fromtimestamp(p["ts"], timezone.utc).strftime("%H:%M:%S.%f") in text
    assert "retransmission" in hover.hovertext[1]
    # client half 20 ms, server half 60 ms: the capture point sits a quarter of the way across
    capture_lines = [sh for sh in fig.layout.shapes if sh.type == "line" and sh.line.dash == "dash"]
    assert capture_lines and all(abs(sh.x0 - 0.25) < 1e-9 for sh in capture_lines)
    assert all(abs(x - 0.25) < 1e-9 for x in hover.x)
    ys = list(hover.y)
    assert ys == sorted(ys)


def test_ladder_annotates_the_handshake_halves():
    fig = ladder(*_one(lost_syn_timeline()))
    block = [t for t in annotation_texts(fig) if "handshake RTT" in t][0]
    # scenario: client half 2 x 4 ms, server half 2 x 50 ms
    assert "handshake RTT 108 ms" in block
    assert "server side 100 ms" in block and "client side 8.00 ms" in block
    # the long wait for the retransmitted SYN is cut from the time axis and says so
    assert any("1.00 s with no packets" in t for t in annotation_texts(fig))
    assert "1 SYN retransmission" in fig.layout.title.subtitle.text


def _one(tl):
    return tl.packets, tl.connections.iloc[0]


def test_ladder_time_axis_ticks_are_true_milliseconds():
    fig = ladder(*_one(lost_syn_timeline()))
    y = fig.layout.yaxis
    ticks = dict(zip(y.ticktext, y.tickvals))
    assert "0" in ticks and "1000" in ticks
    # true scale on each side of the cut: 1000 -> 1100 ms spans 100 drawn units
    assert abs(ticks["1100"] - ticks["1000"] - 100) < 1e-6
    assert ticks["1000"] - ticks["0"] < 500        # the empty second was cut short


def test_ladder_truncates_big_connections():
    fig = ladder(*_one(lost_syn_timeline()), max_packets=4)
    assert len(trace(fig, "packets").x) == 4
    assert "showing the first 4" in fig.layout.title.subtitle.text
    assert "10 packets" in fig.layout.title.subtitle.text


def test_ladder_refused_and_dup_ack():
    tl = timeline(tcp_conversation(0, 1_700_000_000.0, outcome="refused", server=("10.0.0.2", 81)))
    fig = ladder(*_one(tl))
    assert trace(fig, "RST").name == "RST (1)"
    assert "RST,ACK seq=0 ack=1" in annotation_texts(fig)
    assert not any("handshake RTT" in t for t in annotation_texts(fig))
    assert "refused" in fig.layout.title.subtitle.text

    tl = lost_syn_timeline(lost_syns=0)
    ev = conform("events", pd.DataFrame([dict(ts=0.0, frame=6, conn=0, layer="tcp", kind="duplicate ACK",
                                              dir="c2s", size=0, detail="")]))
    fig = ladder(tl.packets, tl.connections.iloc[0], events=ev)
    dup = trace(fig, "duplicate ACK")
    assert dup.name == "duplicate ACK (1)" and dup.line.dash == "dot"
    assert "duplicate ACK" in trace(fig, "packets").hovertext[5]


def test_ladder_escapes_capture_strings_everywhere():
    tl = lost_syn_timeline()
    conn = tl.connections.iloc[0].copy()
    conn["client"] = HOSTILE + ":1"
    fig = ladder(tl.packets.drop(columns=["dir"]), conn)     # no dir: falls back to matching client
    blob = json.dumps(fig.to_plotly_json(), default=str)
    assert "<img" not in blob and "&lt;img src=x onerror=alert(1)&gt;:1" in blob


def test_label_matches_wireshark_wording():
    p = {"flags": "ACK,PSH", "seq": 1, "ack": 1, "len": 517, "win": 502}
    assert label(p) == "PSH,ACK seq=1 ack=1 len=517"
    assert label({"flags": "SYN", "seq": 0, "ack": pd.NA, "len": 0, "win": 64240},
                 {"mss_client": 1460}, "c2s") == "SYN seq=0 win=64240 mss=1460"
    assert fmt_ms(0.21) == "210 ms" and fmt_ms(1.0) == "1.00 s" and fmt_ms(0.0000521) == "52 \u00b5s"
    assert fmt_ms(0.999996) == "1.00 s" and fmt_ms(0.09996) == "100 ms" and fmt_ms(0.0099996) == "10.0 ms"


# --- RTT view -------------------------------------------------------------------------------

def test_rtt_view_distribution_and_timeline():
    from test_handshakes_recipe import load_recipe
    tl = busy_timeline()
    rows = load_recipe().handshake_rows(tl.connections)
    fig = handshake_rtt_view(rows)
    # scenario: handshake RTT = 2 x (d_client + d_server) for each completed connection
    want = sorted(2 * sum(busy_delays(i)) * 1000 for i in range(12) if i not in (5, 10))
    ecdf = trace(fig, "ECDF")
    assert list(ecdf.x[1:]) == pytest.approx(want, abs=1e-3)      # to the microsecond
    assert list(ecdf.y) == pytest.approx([0] + [(k + 1) / 10 for k in range(10)])
    assert trace(fig, "first SYN answered").name == "first SYN answered (8)"
    assert trace(fig, "after SYN retransmission").name == "after SYN retransmission (2)"
    assert trace(fig, "refused").name == "refused (1)" and trace(fig, "unanswered").name == "unanswered (1)"
    import numpy as np
    p50, p95 = np.percentile(want, 50), np.percentile(want, 95)
    texts = annotation_texts(fig)
    assert f"<b>p50 {fmt_ms(p50 / 1000)}</b>" in texts and f"<b>p95 {fmt_ms(p95 / 1000)}</b>" in texts
    assert len([s for s in fig.layout.shapes if s.type == "line"]) == 4   # p50/p95 on both panels
    retried = trace(fig, "after SYN retransmission")
    assert all("1 SYN retransmission, waited 1.00 s" in t for t in retried.hovertext)


def test_rtt_view_uses_log_axis_for_wide_spreads():
    convs = [tcp_conversation(i, 1_700_000_000.0 + i, client=("10.0.0.1", 42000 + i),
                              d_client=0.0001, d_server=0.0001 * 10 ** (i % 4)) for i in range(6)]
    fig = handshake_rtt_view(timeline(*convs).connections)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis2.type == "log"


# --- export ---------------------------------------------------------------------------------

def test_html_export_is_self_contained(tmp_path):
    tl = lost_syn_timeline()
    conn = tl.connections.iloc[0].copy()
    conn["server"] = HOSTILE
    out = export.write(ladder(tl.packets, conn), tmp_path / "ladder.html", theme="dark")
    page = out.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", page, re.I)
    from plotly.offline import get_plotlyjs
    assert get_plotlyjs()[:2000] in page          # the bundle itself is inline
    assert "<img src=x" not in page
    assert "<title>TCP connection 0: 10.0.0.1:40000 \u2192 &lt;img" in page
    frag = export.to_html_fragment(ladder(tl.packets, conn), div_id="conn0")
    assert "<html" not in frag and 'id="conn0"' in frag and len(frag) < len(page) / 10


def test_export_rejects_unknown_extensions(tmp_path):
    import plotly.graph_objects as go
    with pytest.raises(ValueError, match=r"\.html, \.png or \.svg"):
        export.write(go.Figure(), tmp_path / "chart.pdf")


def test_image_export_names_a_bad_browser_path(tmp_path, monkeypatch):
    import plotly.graph_objects as go
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chromium"))
    with pytest.raises(export.ImageExportError, match="BROWSER_PATH=.*no-such-chromium.*is not an executable"):
        export.write(go.Figure(), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


needs_browser = pytest.mark.skipif(export.browser() is None,
                                   reason="no Chrome/Chromium for kaleido (apt-get install chromium, or set BROWSER_PATH)")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Every static image the tests look at, rendered with one browser start."""
    d = tmp_path_factory.mktemp("img")
    tl = lost_syn_timeline()
    conn = tl.connections.iloc[0].copy()
    conn["server"] = HOSTILE
    busy = busy_timeline()
    from test_handshakes_recipe import load_recipe
    rows = load_recipe().handshake_rows(busy.connections)
    figs = {
        "ladder_light.png": theme.apply(ladder(tl.packets, conn, events=tl.events), "light"),
        "ladder_talk.png": ladder(tl.packets, conn, "talk", events=tl.events),
        "rtt_dark.png": handshake_rtt_view(rows, "dark"),
        "ladder.svg": ladder(tl.packets, conn, events=tl.events),
    }
    export.write_images([(f, d / n) for n, f in figs.items()])
    return d


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@needs_browser
def test_png_export(images):
    assert _png_size(images / "ladder_light.png") == (2560, 1440)     # 1280x720 at 2x
    assert _png_size(images / "ladder_talk.png") == (1920, 1080)
    assert _png_size(images / "rtt_dark.png") == (2560, 1440)
    assert (images / "ladder_light.png").stat().st_size > 50_000


@needs_browser
def test_svg_export_is_valid_xml_with_the_labels(images):
    root = ET.parse(images / "ladder.svg").getroot()
    assert root.tag.endswith("svg")
    texts = {"".join(el.itertext()) for el in root.iter() if el.tag.endswith("text")}
    assert "[retransmission] SYN seq=0 win=64240 mss=1460 ws=7" in texts
    assert "#3" in texts
    assert any("<img src=x onerror=alert(1)>" in t for t in texts)      # shown as text ...
    assert not any(el.tag.endswith("img") or el.tag.endswith("image") for el in root.iter())   # ... not markup


@needs_browser
def test_single_write_png(tmp_path):
    out = export.write(ladder(*_one(lost_syn_timeline())), tmp_path / "x.png", theme="talk")
    assert _png_size(out) == (1920, 1080)


# --- real captures --------------------------------------------------------------------------

def _load(name):
    import traceviz
    path = TCP_DIR / name
    if not path.is_file():
        pytest.skip(f"corpus capture {path} not found (set TRACEVIZ_CORPUS)")
    try:
        return path, traceviz.load(path)
    except Exception as exc:  # the loader is being written alongside; say why instead of failing here
        pytest.skip(f"traceviz.load cannot read {path.name} yet: {type(exc).__name__}: {exc}")


TSHARK_FLAGS = [(0x001, "FIN"), (0x002, "SYN"), (0x004, "RST"), (0x008, "PSH"), (0x010, "ACK"),
                (0x020, "URG"), (0x040, "ECE"), (0x080, "CWR"), (0x100, "NS")]


def tshark_rows(path, stream):
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed")
    out = subprocess.run(["tshark", "-r", str(path), "-Y", f"tcp.stream eq {stream}", "-T", "fields",
                          "-e", "frame.number", "-e", "tcp.flags", "-e", "tcp.seq", "-e", "tcp.ack",
                          "-e", "tcp.len"], capture_output=True, text=True, timeout=60, check=True).stdout
    rows = []
    for line in out.splitlines():
        frame, flags, seq, ack, length = line.split("\t")
        bits = int(flags, 16)
        rows.append(dict(frame=int(frame), flags=",".join(n for b, n in TSHARK_FLAGS if bits & b),
                         seq=int(seq), ack=int(ack) if ack else None, len=int(length)))
    return rows


def test_ladder_of_a_long_corpus_connection_is_to_scale_and_scrolls():
    """66 packets: a slide-sized chart, true milliseconds, opening on the first packets (issue 14)."""
    path, tl = _load("syn-retransmit__suricata-verify_bug-4376.pcap")
    conn = tl.connections.iloc[0]
    want = tshark_rows(path, 0)
    fig = ladder(tl.packets, conn, events=tl.events)
    assert len(trace(fig, "packets").hovertext) == len(want) > 60          # every packet, none cut
    assert (fig.layout.width, fig.layout.height) == (theme.sizes("light")["width"], theme.sizes("light")["height"])
    epoch = subprocess.run(["tshark", "-r", str(path), "-Y", "tcp.stream eq 0", "-T", "fields", "-e", "frame.time_epoch"],
                           capture_output=True, text=True, check=True).stdout.split()
    ms = [(float(t) - float(epoch[0])) * 1000 for t in epoch]
    # each packet's hover point sits at its true time on the drawn scale: equal gaps in time are
    # equal gaps on the page, on either side of a cut
    ys = list(trace(fig, "packets").y)
    # a tick's label is real ms; two ticks on the same side of a cut are as far apart as they say
    ticks = [(float(t), v) for t, v in zip(fig.layout.yaxis.ticktext, fig.layout.yaxis.tickvals)]
    cuts = [(sh.y0, sh.y1) for sh in fig.layout.shapes if sh.type == "rect" and sh.x0 < 0]    # the marked breaks
    assert len(cuts) >= 2
    same = [(a, b) for a, b in zip(ticks, ticks[1:]) if not any(a[1] <= y0 and y1 <= b[1] for y0, y1 in cuts)]
    assert len(same) > 10 and all(abs((b[1] - a[1]) - (b[0] - a[0])) < 1e-6 for a, b in same)
    per_ms = 1.0
    pairs = [(a, a + 1) for a in range(len(ms) - 1)
             if not any(ys[a] <= y0 and y1 <= ys[a + 1] for y0, y1 in cuts)]
    assert len(pairs) > 200
    for a, b in pairs:
        assert ys[b] - ys[a] == pytest.approx((ms[b] - ms[a]) * per_ms, abs=2e-3)    # epoch floats: ~1 us
    # tshark: SYN at .000524, its retransmission at 1.000520 s: the silence is marked, not drawn
    assert any("1.00 s with no packets" in t for t in annotation_texts(fig))
    # it opens on the first packets: the rest is in the figure, below the opening view
    bottom, top = fig.layout.yaxis.range
    assert top < ys[0] < ys[10] < bottom < ys[-1]
    assert [b.label for b in fig.layout.updatemenus[0].buttons][:1] == ["handshake"]
    static = export.for_image(fig)
    assert not static.layout.updatemenus and f"of {len(want)} drawn here" in static.layout.title.subtitle.text


@pytest.mark.parametrize("name", ["syn-retransmit__suricata-verify_bug-4376.pcap",
                                  "refused-then-tls13__suricata-verify_tls-duplicate-hello.pcap"])
def test_ladder_on_corpus_agrees_with_tshark(name):
    path, tl = _load(name)
    for conn in tl.connections.itertuples():
        if conn.transport != "tcp":
            continue
        fig = ladder(tl.packets, tl.connections.iloc[conn.Index], events=tl.events, max_packets=50)
        want = tshark_rows(path, conn.stream)[:50]
        hover = trace(fig, "packets").hovertext
        assert len(hover) == len(want)
        for text, w in zip(hover, want):
            assert f"<b>frame {w['frame']}</b>" in text
            assert f"flags: {w['flags']}" in text
            ack = w["ack"] if "ACK" in w["flags"] else None
            assert f"seq={w['seq']} ack={ack if ack is not None else chr(0x2014)} len={w['len']}" in text


def test_a_syn_lost_on_the_path_is_not_drawn_as_arriving():
    tl = lost_syn_timeline()
    fig = ladder(tl.packets, tl.connections.iloc[0], events=tl.events)
    syn = trace(fig, "SYN / SYN-ACK")
    ends = [(x, sym) for x, sym in zip(syn.x[1::3], syn.marker.symbol[1::3])]
    first = ends[0]                                       # frame 1, the SYN the scenario lost beyond the capture point
    capture_x = [sh.x0 for sh in fig.layout.shapes if sh.type == "line" and sh.line.dash == "dash"][0]
    assert capture_x < first[0] < 1.0 and first[1] == "x-thin"
    assert any("never arrived" in (t.name or "") for t in fig.data)
    answered = trace(fig, "retransmission")
    assert answered.x[1] == 1.0                           # the retransmitted SYN reached the server


def test_the_time_axis_is_not_cut_inside_the_handshake_it_annotates():
    # a server that takes 1.2 s to answer: the silence between SYN and SYN-ACK is the handshake itself
    tl = timeline(tcp_conversation(0, 1_700_000_000.0, d_client=0.002, d_server=0.6))
    fig = ladder(*_one(tl))
    hover = trace(fig, "packets")
    y_syn, y_ack = hover.y[0], hover.y[2]
    cuts = [(sh.y0, sh.y1) for sh in fig.layout.shapes if sh.type == "rect" and sh.x0 < 0]
    assert not any(y_syn < y0 < y_ack for y0, _ in cuts)
    assert (y_ack - y_syn) == pytest.approx(1204, abs=1)  # drawn to scale: SYN -> ACK, 1.204 s
    assert "handshake RTT 1.20 s" in " ".join(annotation_texts(fig))
