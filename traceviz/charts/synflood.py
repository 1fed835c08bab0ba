"""A SYN flood over time: SYNs per 100 ms by what became of them, and the real clients' handshakes.

Stacked bars count the SYNs that arrived in each 100 ms by fate: dropped
(never answered), half-open with its SYN-ACK retransmitted (a slot in the
SYN queue), half-open answered once (a SYN cookie: no state kept), and
completed.  Each completed handshake is a line from its first SYN to its
ACK, labelled with how long it took: a flood without cookies stretches it to
seconds.  Time is seconds since the first SYN of the flood.

Reads ``connections``, the SYN-ACK counts and the ``synflood`` recipe's rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import fmt_ms, safe

BIN_S = 0.1
FATES = (("dropped: never answered", "RST"), ("half-open, SYN-ACK retransmitted (in the queue)", "syn-retry"),
         ("half-open, answered once (SYN cookie)", "tls"), ("completed", "ok"))


def flood_chart(connections: pd.DataFrame, synacks: pd.Series, rows: pd.DataFrame, theme: str = "light",
                title: str | None = None) -> go.Figure:
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    fig = go.Figure()
    themes.apply(fig, name)
    head = title or "A SYN flood, SYN by SYN"
    if not len(rows):
        fig.update_layout(title=dict(text=safe(head) + ": no flood"))
        return fig
    r = rows.iloc[0]
    g = connections[(connections["server"] == r["server"]).to_numpy(dtype=bool, na_value=False)]
    t0 = float(r["first_syn"])
    n = g["conn"].map(synacks).fillna(0).astype(int)
    fate = np.where(g["ack"].notna(), 3, np.where(g["synack"].isna(), 0, np.where(n > 1, 1, 2)))
    t = (g["syn"].to_numpy(dtype=float) - t0)
    edges = np.arange(0, max(t.max(), BIN_S) + BIN_S, BIN_S)
    for k, (label, color) in enumerate(FATES):
        counts, _ = np.histogram(t[fate == k], bins=edges)
        if not counts.sum():
            continue
        fig.add_trace(go.Bar(x=edges[:-1] + BIN_S / 2, y=counts, width=BIN_S * 0.92, name=f"{label} ({counts.sum()})",
                             marker_color=c[color]))
    done = g[(g["ack"].notna()).to_numpy(dtype=bool)]
    top = max(1, int(np.histogram(t, bins=edges)[0].max()))
    for i, x in enumerate(done.itertuples(index=False)):
        y = top * (1.08 + 0.12 * i)
        syns = [float(x.syn) - t0]
        for gap in (x.syn_backoff if isinstance(x.syn_backoff, list) else []):
            syns.append(syns[-1] + float(gap))
        end = float(x.ack) - t0
        fig.add_trace(go.Scatter(x=[syns[0], end], y=[y, y], mode="lines", showlegend=i == 0,
                                 line=dict(color=c["client"], width=s["line"] * 1.5),
                                 name="a real client's handshake (first SYN \u2192 ACK)", hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=syns + [end], y=[y] * (len(syns) + 1), mode="markers", showlegend=False,
                                 marker=dict(symbol=["triangle-right"] * len(syns) + ["circle"], size=s["marker"] * 1.3,
                                             color=c["client"]),
                                 hovertext=[f"SYN {k + 1}" for k in range(len(syns))] + ["ACK"], hoverinfo="text"))
        fig.add_annotation(x=(syns[0] + end) / 2, y=y, yshift=s["font"], showarrow=False,
                           text=f"{fmt_ms(float(x.connect_time))} to connect, {int(x.syn_retransmits)} SYN "
                                f"retransmission(s)", font=dict(size=s["small"], color=c["text"]))
    cookies = "SYN cookies on" if r["syn_cookies"] else "no SYN cookies"
    fig.update_layout(
        barmode="stack", bargap=0,
        title=dict(text=f"<b>{safe(head)}</b>",
                   subtitle=dict(text=safe(f"{r['server']}: {r['syns']} SYNs from {r['sources']} addresses; {cookies}"),
                                 font=dict(color=c["muted"], size=s["font"]))),
        margin=dict(t=110 if name != "talk" else 170),
        xaxis=dict(title="seconds since the flood's first SYN", zeroline=False),
        yaxis=dict(title=f"SYNs per {int(BIN_S * 1000)} ms", rangemode="tozero"))
    themes.legend_below(fig, name)       # under the x axis title, whatever the height
    return fig
