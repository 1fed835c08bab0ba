"""The two-leg ladder: client <-> proxy <-> upstream in one sequence diagram.

Three lanes: the client on the left, the proxy in the middle, the upstream on
the right.  The client's connection is drawn between the first two lanes,
each upstream connection the proxy opened or reused for the same request
between the last two, time flowing down, so a request can be followed across
the proxy and the 502 is seen next to what caused it.  The capture is taken
at the proxy (one interface per side), so each arrow touches the proxy's
lane at the moment it was captured, and is slanted by half the round trip
of its leg (from the connection's handshake) on the far side.

It is the TCP ladder's sequence diagram (``charts.sequence``) with three
lanes: time to scale, long silences (a pooled connection idling for a
second) cut short and marked, labels that never collide (the cause's
frames, the HTTP lines, then SYN, FIN and RST), a long exchange opening on
its first packets and scrolling.  The frames that show the cause are drawn
thick, and the cause is written beside the lanes.  Every string from the
capture goes through ``safe``.
"""

from __future__ import annotations

import math
import textwrap

import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.ladder import KIND_LABEL, flag_set, label
from traceviz.charts.sequence import Arrow, Batch, Diagram, Lane, Style
from traceviz.charts.text import fmt_ms, safe
from traceviz.sources.urls import path_of

LANES = {"client": 0.0, "proxy": 1.0, "upstream": 2.0}
X_RANGE = (-0.2, 2.2)
X_RANGE_CAUSE = (-0.2, 3.35)      # room for the cause beside the upstream lane
MAX_PACKETS = 160
KINDS = ("SYN", "data", "ACK", "FIN", "RST")
CAUSE_CHARS = 40                   # the cause's note is wrapped to this many characters a line


def two_leg_ladder(packets: pd.DataFrame, connections: pd.DataFrame, requests: pd.DataFrame, row,
                   theme: str = "light", max_packets: int = MAX_PACKETS) -> go.Figure:
    """The ladder of one client exchange (a ``proxy`` recipe row: ``conn``, ``upstream_conns``,
    ``cause``, ``cause_detail``, ``cause_frames``, ``method``, ``url``, ``status``)."""
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    fig = go.Figure()
    themes.apply(fig, name)
    fig.update_layout(width=s["width"], height=s["height"])
    client_conn = _int(row["conn"])
    ups = [int(x) for x in (row["upstream_conns"] or [])]
    legs = {client_conn: "client", **{u: "upstream" for u in ups}}
    pk = packets[packets["conn"].isin([k for k in legs if k is not None])].sort_values("ts", kind="stable")
    total = len(pk)
    pk = pk.head(max_packets)
    title = _title(row)
    if not len(pk):
        fig.update_layout(title=dict(text=title + " (no packets)"))
        return fig
    conns = connections.set_index("conn")
    oneway = {k: _oneway(conns, k, side) for k, side in legs.items() if k is not None}
    known = [v for v in oneway.values() if v > 0]
    oneway = {k: v or (max(known) if known else 0.0) for k, v in oneway.items()}   # a refused SYN: no handshake
    t0 = float(pk["ts"].iloc[0])
    http = _http_labels(requests, legs)
    hot = {int(f) for f in (row.get("cause_frames") if hasattr(row, "get") else row["cause_frames"]) or []}
    arrows = [_arrow(p, legs[int(p.conn)], (float(p.ts) - t0) * 1000, oneway[int(p.conn)] * 1000, http, hot, c, s)
              for p in pk.itertuples(index=False)]
    styles = {}
    for kind in KINDS:
        styles[kind] = Style(KIND_LABEL[kind], c[kind], s["line"] * (0.75 if kind == "ACK" else 1.0), head=1.4)
        styles[kind + "!"] = Style(f"{KIND_LABEL[kind]} (the cause)", c["RST"], s["line"] * 2.6, head=2.0)
    cause = isinstance(row["cause"], str)
    d = Diagram(name, _lanes(conns, client_conn, ups, c), arrows, styles,
                x_range=X_RANGE_CAUSE if cause else X_RANGE, axis_title="ms since the first packet (long silences cut)",
                caption="captured at the proxy")
    batch = Batch(fig)
    d.draw_frame(batch)
    if cause:
        _draw_cause(batch, d, row)
    d.draw_arrows(batch)
    d.draw_labels(batch)
    d.draw_hover(batch)
    batch.flush()
    facts = ["client \u2194 proxy \u2194 upstream", "the frames that show the cause in bold red",
             f"{total} packets" + (f", showing the first {max_packets}" if total > max_packets else "")]
    marks = [("request", next((a for a in arrows if a.data["frame"] in http), None)),
             ("cause", next((a for a in arrows if a.data["frame"] in hot), None))]
    d.layout(fig, title, facts, [(n, a) for n, a in marks if a is not None])
    return fig


# --- facts per leg ------------------------------------------------------------------------

def _oneway(conns: pd.DataFrame, conn: int, side: str) -> float:
    """Seconds from the proxy to the far end of this leg: half of the round trip the handshake
    shows beyond the capture point (SYN-ACK -> ACK on the client leg, SYN -> SYN-ACK upstream)."""
    if conn not in conns.index:
        return 0.0
    col = "client_half" if side == "client" else "server_half"
    v = conns.at[conn, col] if col in conns.columns else None
    if v is None or pd.isna(v):
        v = conns.at[conn, "handshake_rtt"]
    return 0.0 if v is None or pd.isna(v) else max(float(v) / 2, 0.0)


def _arrow(p, leg: str, t: float, oneway: float, http: dict, hot: set, c, s) -> Arrow:
    """One packet as an arrow: it touches the proxy's lane when captured."""
    frame = int(p.frame)
    out_of_proxy = (leg == "client" and p.dir == "s2c") or (leg == "upstream" and p.dir == "c2s")
    far = LANES[leg]
    fs = flag_set(p.flags)
    kind = "RST" if "RST" in fs else "SYN" if "SYN" in fs else "FIN" if "FIN" in fs else \
        ("data" if (_int(p.len) or 0) > 0 else "ACK")
    words = http.get(frame)
    if words is None and kind in ("SYN", "FIN", "RST"):
        words = ",".join(f for f in ("FIN", "SYN", "RST", "PSH", "ACK") if f in fs)
    rank = None if words is None else 0 if frame in hot else 1 if frame in http else 2
    heavy = frame in hot
    hover = (f"<b>frame {frame}</b> (conn {int(p.conn)}, {leg} leg)<br>{fmt_ms(t / 1000)}: "
             f"{safe(_tcp_text(p))}")
    # out of the proxy: captured as it left (all of the way after); into it: as it arrived
    x0, x1, before, after, share = ((LANES["proxy"], far, 0.0, oneway, 0.0) if out_of_proxy
                                    else (far, LANES["proxy"], oneway, 0.0, 1.0))
    return Arrow(x0, x1, t, before, after, share, style=kind + "!" * heavy, text=safe(words or "", 60),
                 rank=rank, tag=f"#{frame}", hover=hover, color=c["RST"] if heavy else c["text"],
                 data=dict(frame=frame, conn=int(p.conn), leg=leg))


def _tcp_text(p) -> str:
    return label({"flags": p.flags, "seq": p.seq, "ack": p.ack, "len": p.len, "win": p.win})


def _http_labels(requests: pd.DataFrame, legs: dict) -> dict[int, str]:
    """Frame -> the HTTP line it starts (``GET /fin``, ``502``)."""
    out = {}
    rq = requests[requests["conn"].isin([k for k in legs if k is not None])]
    for r in rq.itertuples(index=False):
        rf, sf = getattr(r, "request_frame", None), getattr(r, "response_frame", None)
        if rf is not None and not pd.isna(rf):
            out[int(rf)] = f"{r.method} {path_of(r.url)}"
        if sf is not None and not pd.isna(sf) and not pd.isna(r.status):
            out[int(sf)] = f"HTTP {int(r.status)}"
    return out


# --- the frame of the picture -------------------------------------------------------------

def _lanes(conns, client_conn, ups, c) -> list[Lane]:
    ends = {"client": _end(conns, client_conn, "client"), "proxy": _end(conns, client_conn, "server"),
            "upstream": ", ".join(sorted({_end(conns, u, "server") for u in ups})) or "(none)"}
    proxy_out = sorted({_end(conns, u, "client").rpartition(":")[0] for u in ups})
    out = []
    for lane, x in LANES.items():
        text = f"<b>{lane}</b><br>{safe(ends[lane])}"
        if lane == "proxy" and proxy_out:
            text += "<br>" + safe("upstream side " + ", ".join(proxy_out))
        out.append(Lane(x, text, c["lane"]))
    return out


def _draw_cause(batch: Batch, d: Diagram, row) -> None:
    """The cause and its words, at the top right beside the upstream lane."""
    c, s = d.c, d.s
    detail = row["cause_detail"] if isinstance(row["cause_detail"], str) else ""
    lines = [f"<b>{safe(row['cause'])}</b>"] + [safe(line) for line in textwrap.wrap(detail, CAUSE_CHARS)[:14]]
    # pinned to the plot's right edge (paper), so a narrower page cannot push it off the canvas
    batch.add_annotation(x=1.0, y=1.0, xref="paper", yref="paper", xanchor="right", yanchor="top",
                         showarrow=False, align="left", bordercolor=c["RST"], borderwidth=2, borderpad=6,
                         bgcolor=c["background"], text="<br>".join(lines),
                         font=dict(size=s["small"], color=c["text"]))
    width = max(len(line) for line in textwrap.wrap(detail, CAUSE_CHARS)[:14] + [row["cause"]]) * s["small"] * 0.6 + 16
    d.block(d.x_range[1] - width / d.view.px_x, d.view.top, width, (len(lines) * 1.3 + 1) * s["small"],
            xanchor="left", yanchor="top")


def _title(row) -> str:
    status = row["status"]
    head = f"{safe(row['method'])} {safe(path_of(row['url']), 80)}"
    if status is not None and not pd.isna(status):
        head += f" \u2192 {int(status)}"
    if isinstance(row["cause"], str):
        head += f": {safe(row['cause'])}"
    return f"<b>{head}</b>"


def _end(conns, conn, side) -> str:
    if conn is None or conn not in conns.index:
        return "?"
    return str(conns.at[conn, side])


def _int(v):
    return None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else int(v)
