"""The two-leg ladder: client <-> proxy <-> upstream in one sequence diagram.

Three lanes: the client on the left, the proxy in the middle, the upstream on
the right.  The client's connection is drawn between the first two lanes,
each upstream connection the proxy opened or reused for the same request
between the last two, time flowing down, so a request can be followed across
the proxy and the 502 is seen next to what caused it.  The capture is taken
at the proxy (one interface per side), so each arrow touches the proxy's
lane at the moment it was captured, and is slanted by half the round trip
of its leg (from the connection's handshake) on the far side.

Long silences (a pooled connection idling for a second) are cut short and
marked, so the packets around them keep their room.  The frames that show
the cause are drawn thick, and the cause is written on the chart.  Every
string from the capture goes through ``safe``.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.ladder import KIND_LABEL, flag_set, label
from traceviz.charts.text import fmt_ms, safe
from traceviz.sources.urls import path_of

LANES = {"client": 0.0, "proxy": 1.0, "upstream": 2.0}
MAX_PACKETS = 160
MIN_SLANT_MS = 2.0       # an arrow is never flatter than this, so its direction reads
KINDS = ("SYN", "data", "ACK", "FIN", "RST")


def two_leg_ladder(packets: pd.DataFrame, connections: pd.DataFrame, requests: pd.DataFrame, row,
                   theme: str = "light", max_packets: int = MAX_PACKETS) -> go.Figure:
    """The ladder of one client exchange (a ``proxy`` recipe row: ``conn``, ``upstream_conns``,
    ``cause``, ``cause_detail``, ``cause_frames``, ``method``, ``url``, ``status``)."""
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    fig = go.Figure()
    themes.apply(fig, name)
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
    warp = _Warp([(float(t) - t0) * 1000 for t in pk["ts"]], max(oneway.values()) * 1000)
    http = _http_labels(requests, legs)
    hot = {int(f) for f in (row.get("cause_frames") if hasattr(row, "get") else row["cause_frames"]) or []}
    arrows = [_arrow(p, legs[int(p.conn)], (float(p.ts) - t0) * 1000, oneway[int(p.conn)] * 1000, warp)
              for p in pk.itertuples(index=False)]
    height = min(max(600, int(warp.span * 4) + 260), 4000) if name != "talk" else s["height"]
    ms_per_px = (warp.span + 50) / max(height - 300, 100)
    _draw_lanes(fig, conns, client_conn, ups, warp, max(oneway.values()) * 1000, c, s)
    _draw_breaks(fig, warp, c, s)
    _draw_arrows(fig, arrows, hot, c, s)
    _draw_labels(fig, arrows, http, hot, c, s, ms_per_px)
    _draw_cause(fig, row, warp, c, s)
    note = f" (first {max_packets} of {total} packets)" if total > max_packets else ""
    fig.update_layout(
        title=dict(text=title + safe(note), subtitle=dict(
            text="client \u2194 proxy \u2194 upstream; the frames that show the cause in bold red",
            font=dict(color=c["muted"], size=s["font"]))),
        height=height, showlegend=True,
        xaxis=dict(range=[-0.35, 3.45 if isinstance(row["cause"], str) else 2.35], showgrid=False, zeroline=False,
                   showticklabels=False, ticks="", showline=False, fixedrange=True),
        yaxis=dict(autorange="reversed", title="ms since the first packet (long silences cut)",
                   tickvals=warp.tickvals(), ticktext=warp.ticktext(), zeroline=False),
        legend=dict(orientation="h", y=-0.06, x=0, yanchor="top"),
        margin=dict(t=140 if name != "talk" else 200))
    return fig


# --- geometry -----------------------------------------------------------------------------

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


class _Warp:
    """Real ms -> drawn ms: a silence longer than ``cap`` is drawn ``cap`` long and marked."""

    def __init__(self, times: list[float], oneway_ms: float):
        pts = sorted(set(times))
        self.cap = max(4 * oneway_ms, 40.0)
        self.real, self.drawn = [pts[0]], [pts[0]]
        self.cuts = []                           # (drawn start, drawn end, real length)
        for a, b in zip(pts, pts[1:]):
            if b - a > self.cap:
                start = self.drawn[-1] + (a - self.real[-1])
                self.real += [a, b]
                self.drawn += [start, start + self.cap]
                self.cuts.append((start, start + self.cap, b - a))
        self.real.append(pts[-1] + 1.0)
        self.drawn.append(self.drawn[-1] + (pts[-1] + 1.0 - self.real[-2]))
        self.lo, self.hi = pts[0], pts[-1]

    def __call__(self, t: float) -> float:
        if t <= self.real[0]:
            return self.drawn[0] - (self.real[0] - t)
        if t >= self.real[-1]:
            return self.drawn[-1] + (t - self.real[-1])
        return float(np.interp(t, self.real, self.drawn))

    @property
    def span(self) -> float:
        return self(self.hi) - self(self.lo)

    def tickvals(self) -> list[float]:
        return [self(t) for t in self._ticks()]

    def ticktext(self) -> list[str]:
        return [f"{t:.0f}" for t in self._ticks()]

    def _ticks(self) -> list[float]:
        step = _nice(max((self.hi - self.lo) / 10, 1.0))
        out, t = [], math.floor(self.lo / step) * step
        while t <= self.hi + step:
            if not any(a < self(t) < b for a, b, _ in self.cuts):
                out.append(t)
            t += step
        return out


def _nice(x: float) -> float:
    p = 10 ** math.floor(math.log10(x))
    return next(m * p for m in (1, 2, 5, 10) if m * p >= x)


# --- arrows -------------------------------------------------------------------------------

def _arrow(p, leg: str, t: float, oneway: float, warp: _Warp) -> dict:
    """One packet as an arrow: it touches the proxy's lane when captured."""
    out_of_proxy = (leg == "client" and p.dir == "s2c") or (leg == "upstream" and p.dir == "c2s")
    far = LANES[leg if leg == "upstream" else "client"]
    slant = max(oneway, MIN_SLANT_MS)
    y_proxy = warp(t)
    if out_of_proxy:
        x0, y0, x1, y1 = LANES["proxy"], y_proxy, far, y_proxy + slant
    else:
        x0, y0, x1, y1 = far, y_proxy - slant, LANES["proxy"], y_proxy
    fs = flag_set(p.flags)
    kind = "RST" if "RST" in fs else "SYN" if "SYN" in fs else "FIN" if "FIN" in fs else \
        ("data" if (_int(p.len) or 0) > 0 else "ACK")
    return dict(frame=int(p.frame), conn=int(p.conn), leg=leg, kind=kind, x0=x0, y0=y0, x1=x1, y1=y1, t=t,
                text=label({"flags": p.flags, "seq": p.seq, "ack": p.ack, "len": p.len, "win": p.win}))


def _draw_arrows(fig, arrows, hot, c, s) -> None:
    for kind in KINDS:
        for heavy in (False, True):
            mine = [a for a in arrows if a["kind"] == kind and (a["frame"] in hot) == heavy]
            if not mine:
                continue
            xs, ys, sizes = [], [], []
            for a in mine:
                xs += [a["x0"], a["x1"], None]
                ys += [a["y0"], a["y1"], None]
                sizes += [0, s["marker"] * (2 if heavy else 1.4), 0]
            width = s["line"] * (2.6 if heavy else 0.75 if kind == "ACK" else 1.0)
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines+markers", hoverinfo="skip", legendgroup=kind,
                name=f"{KIND_LABEL[kind]}{' (the cause)' if heavy else ''} ({len(mine)})",
                line=dict(color=c["RST"] if heavy else c[kind], width=width),
                marker=dict(symbol="arrow", angleref="previous", size=sizes,
                            color=c["RST"] if heavy else c[kind], line=dict(width=0))))
    # hover: one invisible point per arrow, where it touches the proxy
    fig.add_trace(go.Scatter(
        x=[a["x1"] if a["x1"] == LANES["proxy"] else a["x0"] for a in arrows],
        y=[a["y1"] if a["x1"] == LANES["proxy"] else a["y0"] for a in arrows],
        mode="markers", marker=dict(size=s["marker"], opacity=0), showlegend=False,
        hovertemplate="%{text}<extra></extra>",
        text=[f"frame {a['frame']} (conn {a['conn']}, {a['leg']} leg)<br>{fmt_ms(a['t'] / 1000)}: "
              f"{safe(a['text'])}" for a in arrows]))


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


def _draw_labels(fig, arrows, http, hot, c, s, ms_per_px: float) -> None:
    """Labels on the arrows that matter (HTTP lines, the cause's frames, SYN/FIN/RST), most
    important first, each only where it does not sit on another of its leg."""
    def rank(a):
        return (a["frame"] not in http, a["frame"] not in hot, a["kind"] not in ("SYN", "FIN", "RST"))
    gap = s["small"] * 1.5 * ms_per_px
    placed: dict[str, list[float]] = {}
    notes = []
    for a in sorted(arrows, key=rank):
        words = http.get(a["frame"])
        if words is None and a["kind"] in ("SYN", "FIN", "RST"):
            words = a["text"].split(" ")[0]
        if words is None:
            continue
        y = (a["y0"] + a["y1"]) / 2
        if any(abs(y - other) < gap for other in placed.get(a["leg"], [])):
            continue
        placed.setdefault(a["leg"], []).append(y)
        notes.append(dict(x=(a["x0"] + a["x1"]) / 2, y=y, yshift=s["small"] * 0.7,
                          text=f"{safe(words, 60)}  <span style='font-size:{s['small'] - 2}px'>#{a['frame']}</span>",
                          showarrow=False, font=dict(size=s["small"], color=c["RST"] if a["frame"] in hot
                                                     else c["text"]),
                          bgcolor=c["background"], opacity=0.92))
    fig.update_layout(annotations=list(fig.layout.annotations) + notes)


# --- the frame of the picture -------------------------------------------------------------

def _draw_lanes(fig, conns, client_conn, ups, warp: _Warp, slant: float, c, s) -> None:
    top, bottom = warp(warp.lo) - slant - 10, warp(warp.hi) + slant + 10
    ends = {"client": _end(conns, client_conn, "client"), "proxy": _end(conns, client_conn, "server"),
            "upstream": ", ".join(sorted({_end(conns, u, "server") for u in ups})) or "(none)"}
    proxy_out = sorted({_end(conns, u, "client").rpartition(":")[0] for u in ups})
    shapes, notes = [], []
    for lane, x in LANES.items():
        shapes.append(dict(type="line", x0=x, x1=x, y0=top, y1=bottom, xref="x", yref="y",
                           line=dict(color=c["lane"], width=s["line"] * 1.4)))
        text = f"<b>{lane}</b><br>{safe(ends[lane])}"
        if lane == "proxy" and proxy_out:
            text += "<br>" + safe("upstream side " + ", ".join(proxy_out))
        notes.append(dict(x=x, y=1.0, xref="x", yref="paper", yanchor="bottom", showarrow=False, text=text,
                          font=dict(size=s["small"], color=c["text"])))
    fig.update_layout(shapes=list(fig.layout.shapes) + shapes, annotations=list(fig.layout.annotations) + notes)


def _draw_breaks(fig, warp: _Warp, c, s) -> None:
    """The cut silences, kept clear of the slanted ends of the arrows around them."""
    shapes, notes = [], []
    for a, b, gap in warp.cuts:
        room = warp.cap / 3
        shapes.append(dict(type="rect", x0=-0.3, x1=2.3, y0=a + room, y1=b - room, xref="x", yref="y",
                           fillcolor=c["grid"], opacity=0.5, line=dict(width=0), layer="below"))
        notes.append(dict(x=-0.3, y=(a + b) / 2, xref="x", yref="y", xanchor="left", showarrow=False,
                          text=f"\u2026 {fmt_ms(gap / 1000)} \u2026", font=dict(size=s["small"], color=c["muted"])))
    fig.update_layout(shapes=list(fig.layout.shapes) + shapes, annotations=list(fig.layout.annotations) + notes)


def _draw_cause(fig, row, warp: _Warp, c, s) -> None:
    cause = row["cause"]
    if not isinstance(cause, str):
        return
    detail = row["cause_detail"] if isinstance(row["cause_detail"], str) else ""
    wrapped = "<br>".join(safe(line) for line in textwrap.wrap(detail, 48)[:14])
    fig.add_annotation(x=2.4, y=warp(warp.lo), xref="x", yref="y", xanchor="left", yanchor="top",
                       showarrow=False, align="left", bordercolor=c["RST"], borderwidth=2, borderpad=6,
                       bgcolor=c["background"], text=f"<b>{safe(cause)}</b><br>{wrapped}",
                       font=dict(size=s["small"], color=c["text"]))


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
