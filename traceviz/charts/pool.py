"""Connections and requests open over time, per server: where a pool or a limit flattens the curve.

One step line per server (and leg, for a proxy's capture) counting its open
TCP connections, and a dashed one counting requests in flight; a limit shows
as a ceiling the line runs along, a leak as a staircase that never comes
down.  503 answers and requests never answered are marked where they
happened.  Time is ms since the first connection opened.

Reads the ``connections`` and ``requests`` tables; server names go through ``safe``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import safe
from traceviz.stats import connection_spans, steps

PALETTE = ("client", "server", "data", "tls", "FIN", "dns", "connect", "p95")
MAX_SERVERS = 8


def concurrency_chart(connections: pd.DataFrame, requests: pd.DataFrame, packets: pd.DataFrame | None = None,
                      theme: str = "light", title: str | None = None) -> go.Figure:
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    fig = go.Figure()
    themes.apply(fig, name)
    head = title or "Connections and requests open over time"
    tcp = connections[(connections["transport"] == "tcp").to_numpy(dtype=bool, na_value=False)]
    if not len(tcp):
        fig.update_layout(title=dict(text=safe(head) + ": no TCP connections"))
        return fig
    t0 = float(tcp["start"].min())
    last = float(packets["ts"].max()) if packets is not None and len(packets) else float(tcp["end"].max())
    ms = lambda t: (float(t) - t0) * 1000.0  # noqa: E731
    leg = requests.groupby("conn")["leg"].first().to_dict() if "leg" in requests.columns else {}
    keyed = tcp.assign(_key=[f"{srv}" + (f" ({leg.get(k)} leg)" if isinstance(leg.get(k), str) else "")
                             for srv, k in zip(tcp["server"], tcp["conn"])])
    for i, (key, g) in enumerate(list(keyed.groupby("_key", sort=False))[:MAX_SERVERS]):
        color = c[PALETTE[i % len(PALETTE)]]
        xs, ys = steps(connection_spans(g, last))
        fig.add_trace(go.Scatter(x=[ms(x) for x in xs], y=ys, mode="lines", line=dict(shape="hv", color=color,
                                 width=s["line"] * 1.4), name=f"{safe(key)}: connections open"))
        rq = requests[requests["conn"].isin(g["conn"].tolist()).to_numpy(dtype=bool, na_value=False)]
        if len(rq):
            xs, ys = steps([(float(a), float(b) if not pd.isna(b) else last) for a, b in zip(rq["start"], rq["end"])])
            fig.add_trace(go.Scatter(x=[ms(x) for x in xs], y=ys, mode="lines",
                                     line=dict(shape="hv", color=color, width=s["line"], dash="dash"),
                                     name=f"{safe(key)}: requests in flight"))
    marks = [("503", requests[(requests["status"] == 503).to_numpy(dtype=bool, na_value=False)], "RST", "x"),
             ("never answered", requests[requests["status"].isna().to_numpy(dtype=bool, na_value=False)],
              "unanswered", "circle-open")]
    for label, sub, color, symbol in marks:
        if not len(sub):
            continue
        x = [ms(a + b) if label == "503" and not pd.isna(b) else ms(a) for a, b in zip(sub["start"], sub["ttfb"])]
        fig.add_trace(go.Scatter(x=x, y=[0] * len(x), mode="markers", name=f"{label} ({len(x)})",
                                 marker=dict(symbol=symbol, size=s["marker"] * 1.4, color=c[color],
                                             line=dict(width=2, color=c[color]))))
    fig.update_layout(
        title=dict(text=f"<b>{safe(head)}</b>",
                   subtitle=dict(text="solid: TCP connections open; dashed: requests in flight; a flat top is a limit",
                                 font=dict(color=c["muted"], size=s["font"]))),
        margin=dict(t=110 if name != "talk" else 170),
        xaxis=dict(title="ms since the first connection opened", zeroline=False),
        yaxis=dict(title="open at once", rangemode="tozero", dtick=1),
        legend=dict(orientation="v", x=1.01, xanchor="left", y=1.0, yanchor="top"))
    return fig
