"""What caching saved, per URL: body bytes downloaded, bytes 304s saved, bytes fetched again.

One group of bars per URL: the body bytes that crossed the wire (full
answers), the bytes a 304 spared (the cached body reused), and -- for a
response with no validator -- the bytes downloaded again.  Each bar is
labelled with the count behind it (``3 × 200``, ``2 × 304``), so the slide
reads: revalidation is cheap, a missing validator is not.

Reads the ``caching`` recipe's rows; URLs go through ``safe``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import safe

BARS = (("body_bytes", "downloaded (full answers)", "receive"), ("saved_bytes", "saved by 304s", "wait"),
        ("refetched_bytes", "downloaded again: no validator", "RST"))


def bytes_chart(rows: pd.DataFrame, theme: str = "light", title: str | None = None) -> go.Figure:
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    fig = go.Figure()
    themes.apply(fig, name)
    head = title or "What caching saved"
    if not len(rows):
        fig.update_layout(title=dict(text=safe(head) + ": no responses"))
        return fig
    labels = [safe(_short(u), 48) for u in rows["url"]]
    counts = {"body_bytes": [f"{f} \u00d7 200" for f in rows["full"]],
              "saved_bytes": [f"{n} \u00d7 304" if n else "" for n in rows["not_modified"]],
              "refetched_bytes": [f"{max(f - 1, 0)} repeat(s)" if b else "" for f, b in
                                  zip(rows["full"], rows["refetched_bytes"])]}
    for col, label, color in BARS:
        fig.add_trace(go.Bar(x=labels, y=[v / 1000 for v in rows[col]], name=label, marker_color=c[color],
                             text=counts[col], textposition="outside", cliponaxis=False,
                             textfont=dict(size=s["small"], color=c["text"]),
                             hovertext=[f"{safe(u, 90)}<br>{label}: {int(v)} B" for u, v in zip(rows["url"], rows[col])],
                             hoverinfo="text"))
    fig.update_layout(
        barmode="group", bargap=0.3,
        title=dict(text=f"<b>{safe(head)}</b>",
                   subtitle=dict(text="per URL: body bytes over the wire, bytes 304s spared, bytes fetched again",
                                 font=dict(color=c["muted"], size=s["font"]))),
        margin=dict(t=110 if name != "talk" else 170),
        yaxis=dict(title="kB of response bodies", rangemode="tozero"))
    themes.legend_below(fig, name)       # under the x axis title, whatever the height
    return fig


def _short(url) -> str:
    """A URL without its scheme and host: the path is what tells resources apart."""
    text = str(url)
    if "://" in text:
        text = "/" + text.split("://", 1)[1].split("/", 1)[-1] if "/" in text.split("://", 1)[1] else text
    return text
