"""A WebSocket's life on one time axis: the upgrade, the messages each way, pings, pongs, the close.

Two lanes per WebSocket, client → server above server → client, time in ms
since its upgrade request.  The upgrade is a bar (request to 101); each
message is a dot whose area grows with its size (text and binary in two
colours); pings and pongs are triangles, a pong labelled with how long after
its ping it came; close frames are crosses labelled with their code.  A
server that pushes shows as dots in its lane nobody asked for.

Reads the ``events`` rows ``assemble/websocket.py`` made (layer
``websocket``) and the recipe's rows; capture strings go through ``safe``.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import fmt_ms, safe

MAX_SOCKETS = 12
KINDS = (("text", "data", "circle"), ("binary", "server", "circle"))
CONTROL = (("ping", "SYN", "triangle-right"), ("pong", "wait", "triangle-left"), ("close", "RST", "x"))


def message_timeline(events: pd.DataFrame, sockets: pd.DataFrame, theme: str = "light",
                     title: str | None = None) -> go.Figure:
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    fig = go.Figure()
    themes.apply(fig, name)
    head = title or "WebSocket messages"
    sockets = sockets.head(MAX_SOCKETS)
    if not len(sockets):
        fig.update_layout(title=dict(text=safe(head) + ": no WebSocket"))
        return fig
    lanes, labels, t0 = {}, [], {}
    for r in sockets.itertuples(index=False):
        key = (int(r.conn), None if r.stream is None or pd.isna(r.stream) else int(r.stream))
        t0[key] = float(r.start)
        where = f"conn {key[0]}" + (f" stream {key[1]}" if key[1] is not None else "")
        for d, arrow in (("c2s", "client \u2192 server"), ("s2c", "server \u2192 client")):
            lanes[key + (d,)] = len(labels)
            labels.append(f"{where} {safe(r.url, 40)}<br>{arrow}" if d == "c2s" else f"{where}<br>{arrow}")
    ws = events[(events["layer"].astype("object") == "websocket").to_numpy(dtype=bool, na_value=False)]

    def lane_of(row) -> int | None:
        st = None if pd.isna(row.stream) else int(row.stream)
        return lanes.get((int(row.conn), st, row.dir))

    def ms(row) -> float:
        st = None if pd.isna(row.stream) else int(row.stream)
        return (float(row.ts) - t0[(int(row.conn), st)]) * 1000.0

    _upgrades(fig, sockets, lanes, c, s)
    msgs = ws[ws["kind"] == "message"]
    biggest = max(float(pd.to_numeric(msgs["size"]).max()) if len(msgs) else 1.0, 1.0)
    for kind, color, symbol in KINDS:
        pts = [(ms(r), lane_of(r), int(r.size), r.detail) for r in msgs.itertuples(index=False)
               if r.message_type == kind and lane_of(r) is not None]
        if not pts:
            continue
        fig.add_trace(go.Scatter(
            x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers", name=f"{kind} message ({len(pts)})",
            marker=dict(symbol=symbol, color=c[color], line=dict(width=1, color=c["text"]),
                        size=[s["marker"] * (0.8 + 1.6 * math.log1p(p[2]) / math.log1p(biggest)) for p in pts]),
            hovertext=[f"{p[2]} B<br>{safe(p[3], 80)}" for p in pts], hoverinfo="text"))
    for kind, color, symbol in CONTROL:
        sub = ws[ws["kind"] == kind]
        pts = [(ms(r), lane_of(r), r) for r in sub.itertuples(index=False) if lane_of(r) is not None]
        if not pts:
            continue
        text = [_control_label(kind, p[2]) for p in pts]
        fig.add_trace(go.Scatter(
            x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers+text", name=f"{kind} ({len(pts)})",
            marker=dict(symbol=symbol, size=s["marker"] * 1.4, color=c[color], line=dict(width=2, color=c[color])),
            text=text, textposition="bottom center", textfont=dict(size=s["small"], color=c["text"]),
            hovertext=[f"{kind}: {safe(p[2].detail, 80)}<br>frame {int(p[2].frame)}" for p in pts],
            hoverinfo="text"))
    height = s["height"] if name == "talk" else min(max(360, 160 + 70 * len(labels)), 2400)
    fig.update_layout(
        title=dict(text=f"<b>{safe(head)}</b>",
                   subtitle=dict(text="dots: messages (area ~ size); \u25b6 ping, \u25c0 pong; \u2716 close",
                                 font=dict(color=c["muted"], size=s["font"]))),
        margin=dict(t=110 if name != "talk" else 170), height=height,
        xaxis=dict(title="ms since the upgrade request", zeroline=False),
        yaxis=dict(tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed", zeroline=False,
                   showgrid=False, tickfont=dict(size=s["small"])),
        legend=dict(orientation="v", x=1.01, xanchor="left", y=1.0, yanchor="top"))
    return fig


def _upgrades(fig, sockets, lanes, c, s) -> None:
    ys, widths, notes = [], [], []
    for r in sockets.itertuples(index=False):
        if r.handshake_ms is None or pd.isna(r.handshake_ms):
            continue
        key = (int(r.conn), None if r.stream is None or pd.isna(r.stream) else int(r.stream), "c2s")
        ys.append(lanes[key] + 0.5)
        widths.append(float(r.handshake_ms))
        notes.append(f"upgrade: {fmt_ms(float(r.handshake_ms) / 1000)}")
    if ys:
        fig.add_trace(go.Bar(orientation="h", y=ys, base=[0] * len(ys), x=widths, width=0.5,
                             marker_color=c["connect"], name="upgrade (request \u2192 101)",
                             hovertext=notes, hoverinfo="text"))


def _control_label(kind: str, row) -> str:
    if kind == "pong" and not pd.isna(getattr(row, "duration", float("nan"))):
        return fmt_ms(float(row.duration))
    if kind == "close" and not pd.isna(getattr(row, "close_code", float("nan"))):
        return str(int(row.close_code))
    return ""
