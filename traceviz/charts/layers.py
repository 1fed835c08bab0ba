"""Who can read what through a proxy: client — proxy — server, each leg drawn encrypted or plain.

One row per proxied client connection.  Each leg is a thick line: purple
where TLS protects it (the proxy sees bytes), green where it is plain HTTP
(the proxy reads every request); a padlock mark sits where the client's TLS
ends.  Labels say the mode (CONNECT tunnel, layer 4, layer 7), the TLS
version and SNI, and each leg's byte counts.

Reads the ``layers`` recipe's rows; every string from the capture goes through ``safe``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import safe


def legs_chart(rows: pd.DataFrame, theme: str = "light", title: str | None = None) -> go.Figure:
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    fig = go.Figure()
    themes.apply(fig, name)
    head = title or "What the proxy could read"
    if not len(rows):
        fig.update_layout(title=dict(text=safe(head) + ": no proxied connections"))
        return fig
    for i, r in enumerate(rows.itertuples(index=False)):
        y = -i
        client_tls = isinstance(r.client_tls, str)
        upstream_tls = isinstance(r.upstream_tls, str)
        first = ("CONNECT, then " if r.mode == "CONNECT tunnel" else "") + (
            r.client_tls if client_tls else "TLS" if r.mode == "CONNECT tunnel" else "plain HTTP")
        legs = (((0, 1), client_tls or r.mode == "CONNECT tunnel",
                 f"{safe(first)}<br>{int(r.bytes_c2s)} B up / {int(r.bytes_s2c)} B down"),
                ((1, 2), upstream_tls, f"{safe(r.upstream_tls if upstream_tls else 'plain HTTP')}<br>"
                                       f"{int(r.upstream_bytes_c2s)} B up / {int(r.upstream_bytes_s2c)} B down"))
        for (x0, x1), encrypted, label in legs:
            fig.add_trace(go.Scatter(x=[x0 + 0.06, x1 - 0.06], y=[y, y], mode="lines", showlegend=False,
                                     line=dict(color=c["tls"] if encrypted else c["data"], width=s["line"] * 5),
                                     hoverinfo="skip"))
            fig.add_annotation(x=(x0 + x1) / 2, y=y, yshift=s["font"] * 1.6, text=label,
                               showarrow=False, font=dict(size=s["small"], color=c["text"]))
        ends = 2 if "server" in str(r.tls_ends_at) else 1 if "proxy" in str(r.tls_ends_at) else None
        if ends is not None:
            fig.add_annotation(x=ends, y=y, yshift=-s["font"] * 2.8, text="TLS ends here", showarrow=False,
                               font=dict(size=s["small"], color=c["tls"]))
        fig.add_annotation(x=-0.12, y=y, xanchor="right", text=f"<b>{safe(r.mode)}</b><br>conn {int(r.conn)}",
                           showarrow=False, font=dict(size=s["font"], color=c["text"]))
        for x, who in ((0, "client"), (1, f"proxy {safe(r.proxy)}"), (2, f"server {safe(r.upstream_server)}")):
            fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers+text", showlegend=False, text=[who],
                                     textposition="bottom center", textfont=dict(size=s["small"], color=c["muted"]),
                                     marker=dict(size=s["marker"] * 2, color=c["client"] if x == 0 else
                                                 c["capture"] if x == 1 else c["server"]), hoverinfo="skip"))
    for color, label in ((c["tls"], "encrypted: the proxy sees bytes"), (c["data"], "plain: the proxy reads it")):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color=color, width=s["line"] * 4),
                                 name=label))
    fig.update_layout(
        title=dict(text=f"<b>{safe(head)}</b>",
                   subtitle=dict(text="each row: one client connection through a proxy, and the leg it caused",
                                 font=dict(color=c["muted"], size=s["font"]))),
        margin=dict(t=110 if name != "talk" else 170, l=40),
        height=s["height"] if name == "talk" else 200 + 150 * len(rows),
        xaxis=dict(visible=False, range=[-0.75, 2.35]),
        yaxis=dict(visible=False, range=[-len(rows) + 0.4, 0.7]),
        legend=dict(orientation="h", y=-0.05, x=0.5, xanchor="center"))
    return fig
