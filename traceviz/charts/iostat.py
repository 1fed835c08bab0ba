"""I/O statistics over time: throughput, packets and requests, and TCP trouble.

Three rows sharing the time axis (seconds since the capture started): bits
per second in each interval; packets and HTTP requests started; the TCP
events that explain a dip (retransmissions, lost segments, duplicate ACKs,
zero windows, resets) as stacked bars.  One bar per interval, as
Wireshark's I/O Graph draws them.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from traceviz.charts import theme as themes
from traceviz.charts.text import safe

EVENTS = (("retransmissions", "retransmission", "retransmission"), ("lost_segments", "lost segment", "RST"),
          ("dup_acks", "duplicate ACK", "dup-ack"), ("zero_windows", "zero window", "zero-window"),
          ("resets", "RST", "FIN"))


def iostat(rows: pd.DataFrame, interval: float, theme: str = "light", title: str = "I/O statistics") -> go.Figure:
    """The figure of an ``assemble.iostat.intervals`` table with ``interval`` seconds per row."""
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    has_frames = "frames" in rows and rows["frames"].notna().any()
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.45, 0.3, 0.25],
                        subplot_titles=("throughput (bits/s)", "packets and requests started",
                                        "TCP events"))
    themes.apply(fig, name)
    fig.update_annotations(font=dict(size=s["font"], color=c["text"]))     # the row titles
    x = rows["interval"].astype(float) + interval / 2
    width = interval * 1000 * 0.9          # plotly bar widths on a numeric axis are in axis units (ms)
    xm = x * 1000
    if has_frames:
        fig.add_trace(go.Bar(x=xm, y=rows["bits_per_s"], width=width, marker_color=c["data"], name="bits/s",
                             hovertemplate="%{x:.0f} ms: %{y:.3s}bit/s<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(x=xm, y=rows["frames"], mode="lines", line=dict(color=c["client"], width=s["line"]),
                                 name="packets", hovertemplate="%{x:.0f} ms: %{y} packets<extra></extra>"),
                      row=2, col=1)
    if rows["requests"].sum():
        fig.add_trace(go.Bar(x=xm, y=rows["requests"], width=width, marker_color=c["wait"], opacity=0.8,
                             name="requests started", hovertemplate="%{x:.0f} ms: %{y} requests<extra></extra>"),
                      row=2, col=1)
    for column, label, color in EVENTS:
        if column in rows and rows[column].sum():
            fig.add_trace(go.Bar(x=xm, y=rows[column], width=width, marker_color=c[color], name=label,
                                 hovertemplate=f"%{{x:.0f}} ms: %{{y}} {label}<extra></extra>"), row=3, col=1)
    total = int(rows[[col for col, _, _ in EVENTS if col in rows]].to_numpy().sum()) if len(rows) else 0
    if not total:
        fig.add_annotation(text="no retransmissions, lost segments, duplicate ACKs, zero windows or resets",
                           xref="x3 domain", yref="y3 domain", x=0.5, y=0.5, showarrow=False,
                           font=dict(color=c["muted"], size=s["small"]))
    fig.update_layout(barmode="stack", width=s["width"], height=s["height"], bargap=0,
                      title=dict(text=f"<b>{safe(title)}</b>",
                                 subtitle=dict(text=f"{len(rows)} intervals of {_seconds(interval)}",
                                               font=dict(color=c["muted"], size=s["font"]))),
                      margin=dict(t=int(s["title"] * 1.7 + s["font"] * 3 + 20)))
    fig.update_xaxes(title_text="ms since the capture started", row=3, col=1)
    themes.legend_below(fig, name)
    return fig


def _seconds(interval: float) -> str:
    return f"{interval * 1000:g} ms" if interval < 1 else f"{interval:g} s"
