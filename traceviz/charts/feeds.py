"""Push vs pull on one time axis: one lane per follower, its requests as bars, each update it saw as a star.

A dotted line marks the first moment anyone saw each update; a follower's
star for the same update sits on the line (pushed, or a long poll that was
waiting) or to its right (a short poll that had to come round again).
Requests are bars from first byte to last, green when they brought
something new, grey when the answer was "nothing new" (304); an SSE
request is one long bar.  Time is ms since the first update was seen.

Reads the ``polling`` recipe's rows and sightings and the ``requests`` table.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import fmt_ms, safe


def feeds_chart(rows: pd.DataFrame, requests: pd.DataFrame, sightings: list[dict], theme: str = "light",
                title: str | None = None) -> go.Figure:
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    fig = go.Figure()
    themes.apply(fig, name)
    head = title or "Push vs pull: when each client heard of each update"
    seen = [x for x in sightings if x["id"] is not None]
    if not len(rows) or not seen:
        fig.update_layout(title=dict(text=safe(head) + ": no updates seen"))
        return fig
    first: dict[str, float] = {}
    for x in seen:
        first[x["id"]] = min(first.get(x["id"], x["ts"]), x["ts"])
    t0 = min(first.values())
    ms = lambda t: (float(t) - t0) * 1000.0  # noqa: E731
    lane = {int(r.conn): i for i, r in enumerate(rows.itertuples(index=False))}
    labels = [f"{safe(r.style)}<br>conn {int(r.conn)} {safe(_path(r.url), 30)}" for r in rows.itertuples(index=False)]
    for key, color, label in ((True, "wait", "request: something new"), (False, "queueing", "request: nothing new")):
        bars = []
        for r in rows.itertuples(index=False):
            rq = requests[(requests["conn"] == r.conn).to_numpy(dtype=bool, na_value=False)
                          & (requests["url"].astype("object") == r.url).to_numpy(dtype=bool, na_value=False)]
            for q in rq.itertuples(index=False):
                if pd.isna(q.start) or pd.isna(q.end) or (q.status != 304) != key:
                    continue
                bars.append((lane[int(r.conn)], ms(q.start), max(ms(q.end) - ms(q.start), 1.0),
                             f"{safe(q.method)} {safe(_path(q.url), 60)} \u2192 {int(q.status)} "
                             f"after {fmt_ms(float(q.end) - float(q.start))}"))
        if bars:
            fig.add_trace(go.Bar(orientation="h", y=[b[0] for b in bars], base=[b[1] for b in bars],
                                 x=[b[2] for b in bars], width=0.45, marker_color=c[color], opacity=0.7,
                                 marker_line=dict(color=c["background"], width=2),
                                 name=f"{label} ({len(bars)})", hovertext=[b[3] for b in bars], hoverinfo="text"))
    for update, at in sorted(first.items(), key=lambda kv: kv[1]):
        fig.add_vline(x=ms(at), line=dict(color=c["muted"], width=1, dash="dot"))
    pts = [(ms(x["ts"]), lane[x["conn"]], x) for x in seen if x["conn"] in lane]
    fig.add_trace(go.Scatter(
        x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers+text", name=f"update seen ({len(pts)})",
        marker=dict(symbol="star", size=s["marker"] * 1.6, color=c["server"], line=dict(width=1, color=c["text"])),
        text=[safe(p[2]["id"]) for p in pts], textposition="top center",
        textfont=dict(size=s["small"], color=c["text"]),
        hovertext=[f"update {safe(p[2]['id'])}: +{fmt_ms(p[2]['ts'] - first[p[2]['id']])} after the first sighting"
                   for p in pts], hoverinfo="text"))
    fig.update_layout(
        title=dict(text=f"<b>{safe(head)}</b>",
                   subtitle=dict(text="dotted: the first sighting of each update; \u2605 when this client saw it",
                                 font=dict(color=c["muted"], size=s["font"]))),
        margin=dict(t=110 if name != "talk" else 170), barmode="overlay",
        height=s["height"] if name == "talk" else max(360, 160 + 90 * len(labels)),
        xaxis=dict(title="ms since the first update was seen", zeroline=False),
        yaxis=dict(tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed", zeroline=False,
                   showgrid=False))
    themes.legend_below(fig, name)       # under the x axis title, whatever the height
    return fig


def _path(url) -> str:
    text = str(url)
    return "/" + text.split("://", 1)[1].split("/", 1)[1] if "://" in text and "/" in text.split("://", 1)[1] else text
