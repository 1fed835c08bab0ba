"""TCP and UDP side by side: every data packet of each flow on a shared time axis, each from its flow's start.

Two lanes per flow (client → server above server → client), one dot per
data packet; a TCP retransmission is a red cross and an out-of-order
segment an orange one.  A loss on TCP shows as a gap in the lower lane
followed by a cross and a burst; on UDP as a dot missing from the lower
lane, with no cross anywhere.  Time is ms since each flow's first packet,
so the flows line up.

Reads ``packets``, the TCP ``events`` and the ``transports`` recipe's rows.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import safe

MAX_FLOWS = 6


def arrivals_chart(packets: pd.DataFrame, events: pd.DataFrame, rows: pd.DataFrame, theme: str = "light",
                   title: str | None = None, resent=("retransmission", "fast-retransmission")) -> go.Figure:
    """``resent``: the TCP event kinds that mark a segment sent again."""
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    fig = go.Figure()
    themes.apply(fig, name)
    head = title or "TCP vs UDP: every data packet"
    rows = rows.head(MAX_FLOWS)
    if not len(rows):
        fig.update_layout(title=dict(text=safe(head) + ": no data"))
        return fig
    labels = []
    for i, r in enumerate(rows.itertuples(index=False)):
        mine = packets[(packets["conn"] == r.conn).to_numpy(dtype=bool, na_value=False)]
        t0 = float(mine["ts"].min())
        data = mine[(mine["len"].fillna(0) > 0).to_numpy(dtype=bool)]
        for k, (d, arrow) in enumerate((("c2s", "\u2192 server"), ("s2c", "\u2190 server"))):
            lane = 2 * i + k
            labels.append(f"{safe(r.transport.upper())} conn {int(r.conn)} {arrow}")
            pts = data[data["dir"] == d]
            fig.add_trace(go.Scatter(x=(pts["ts"] - t0) * 1000, y=[lane] * len(pts), mode="markers",
                                     marker=dict(size=s["marker"] * 0.7, color=c["client"] if d == "c2s" else c["server"]),
                                     name=f"{r.transport.upper()} data {'out' if d == 'c2s' else 'back'}",
                                     showlegend=i < 2, hovertext=[f"frame {int(f)}, {int(n)} B" for f, n in
                                                                 zip(pts["frame"], pts["len"])], hoverinfo="text"))
        ev = events[(events["conn"] == r.conn).to_numpy(dtype=bool, na_value=False)]
        hit = ev[ev["kind"].isin(list(resent)).to_numpy(dtype=bool, na_value=False)]
        if len(hit):
            fig.add_trace(go.Scatter(x=(hit["ts"] - t0) * 1000,
                                     y=[2 * i + (0 if d == "c2s" else 1) for d in hit["dir"]], mode="markers",
                                     marker=dict(symbol="x", size=s["marker"] * 1.3, color=c["retransmission"]),
                                     name=f"sent again ({len(hit)})",
                                     hovertext=[f"{k}, frame {int(f)}" for k, f in zip(hit["kind"], hit["frame"])],
                                     hoverinfo="text"))
    fig.update_layout(
        title=dict(text=f"<b>{safe(head)}</b>",
                   subtitle=dict(text="each dot a packet carrying data; \u2716 TCP resending", font=dict(
                       color=c["muted"], size=s["font"]))),
        margin=dict(t=110 if name != "talk" else 170),
        height=s["height"] if name == "talk" else max(360, 140 + 60 * len(labels)),
        xaxis=dict(title="ms since the flow's first packet", zeroline=False),
        yaxis=dict(tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed", zeroline=False,
                   showgrid=False))
    themes.legend_below(fig, name)       # under the x axis title, whatever the height
    return fig
