"""The journey of a request on one time axis: DNS, the client's own time, TCP, TLS, request, response.

One lane per phase, top to bottom in the order they happen, each a bar from
where the phase began to where it ended, labelled with its duration; dashed
lines mark the moments ``curl -w`` reports (name looked up, connected, TLS
done, first byte, last byte).  Time is ms from the journey's first packet.
A lane per request would hide the point; the chart draws the first request
of the rows it is given (the one that paid for the lookup and the
handshakes) unless told which.

Reads the ``journey`` recipe's rows; capture strings go through ``safe``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import fmt_ms, safe

PHASES = (("DNS lookup", "t0", "dns_end", "dns"), ("client (resolver \u2192 SYN)", "dns_end", "syn", "blocked"),
          ("TCP handshake", "syn", "ack", "connect"), ("TLS handshake", "ack", "start", "tls"),
          ("request \u2192 first byte", "start", "first_byte", "wait"),
          ("response body", "first_byte", "end", "receive"))
MARKS = (("time_namelookup", "name resolved"), ("time_connect", "connected"), ("time_appconnect", "TLS done"),
         ("time_starttransfer", "first byte"), ("time_total", "last byte"))


def journey_chart(rows: pd.DataFrame, packets: pd.DataFrame | None = None, theme: str = "light",
                  request: int | None = None, title: str | None = None) -> go.Figure:
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    fig = go.Figure()
    themes.apply(fig, name)
    if request is not None:
        rows = rows[rows["request"] == request]
    if not len(rows):
        fig.update_layout(title=dict(text=safe(title or "The journey of a request") + ": no request"))
        return fig
    r = rows.iloc[0]
    t0 = float(r["t0"])
    ms = lambda t: (float(t) - t0) * 1000.0  # noqa: E731
    labels, i = [], 0
    for label, a, b, color in PHASES:
        if label.startswith("TLS") and r["scheme"] != "https":
            continue
        if _missing(r[a]) or _missing(r[b]) or float(r[b]) < float(r[a]):
            continue
        width = max(ms(r[b]) - ms(r[a]), 0.05)
        fig.add_trace(go.Bar(orientation="h", y=[i], base=[ms(r[a])], x=[width], width=0.55, name=label,
                             marker_color=c[color], text=[fmt_ms((float(r[b]) - float(r[a])))],
                             textposition="outside", textfont=dict(size=s["small"], color=c["text"]),
                             cliponaxis=False, hovertext=[f"{label}: {fmt_ms(float(r[b]) - float(r[a]))}"],
                             hoverinfo="text", showlegend=False))
        labels.append(label)
        i += 1
    marks: dict[float, list[str]] = {}
    for key, text in MARKS:
        if not _missing(r[key]):
            marks.setdefault(round(float(r[key]) * 1000, 1), []).append(text)
    for x, texts in marks.items():          # moments that coincide share one line and one label
        fig.add_vline(x=x, line=dict(color=c["muted"], width=1, dash="dash"))
        fig.add_annotation(x=x, y=-0.8, text=f"{' = '.join(texts)}<br>{x:.1f} ms", showarrow=False,
                           yanchor="bottom", font=dict(size=s["small"], color=c["muted"]))
    head = title or f"The journey of {r['url']}"
    total = fmt_ms(float(r["time_total"])) if not _missing(r["time_total"]) else "?"
    fig.update_layout(
        title=dict(text=f"<b>{safe(head, 80)}</b>",
                   subtitle=dict(text=safe(f"{r['status']} after {total}; each bar one phase, as the wire shows it"),
                                 font=dict(color=c["muted"], size=s["font"]))),
        margin=dict(t=150 if name != "talk" else 200), barmode="overlay",
        height=s["height"] if name == "talk" else 160 + 70 * (len(labels) + 1),
        xaxis=dict(title="ms since the journey's first packet", zeroline=False, rangemode="tozero"),
        yaxis=dict(tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed", zeroline=False,
                   showgrid=False, range=[len(labels) - 0.4, -1.2]))
    return fig


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v) or v is pd.NA
