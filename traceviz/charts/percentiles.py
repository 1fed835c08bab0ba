"""How bad is the tail?  Percentiles per group, and the ECDF with its tail marked.

``percentile_table`` is the one definition every traceviz latency number
uses: numpy's default ``linear`` method (Hyndman & Fan type 7): for ``n``
sorted values the p-th percentile sits at rank ``(n - 1) * p / 100``,
interpolated linearly between its neighbours.  With few samples the high
percentiles approach the maximum; ``n`` is always shown beside them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import safe
from traceviz.stats import MIN_RATIO_N, percentiles_of

MARKERS = {50: "circle", 90: "diamond", 95: "square", 99: "x"}


def percentiles(table: pd.DataFrame, metric_label: str = "time to first byte", theme: str = "light",
                title: str | None = None, top: int = 25, unit: str = "ms") -> go.Figure:
    """A dot plot: one row per group, p50 -> p99 as a bar with a marker per percentile.

    ``table`` is ``percentile_table``'s output.  The ratio p99/p50 is written at
    the end of each row: that ratio, not the median, is what a user feels.
    """
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    t = table.head(top).iloc[::-1].reset_index(drop=True)     # worst at the top
    qcols = [col for col in t.columns if col.startswith("p")]
    fig = go.Figure()
    if not len(t):
        fig.add_annotation(text="no timings to rank", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        return themes.apply(fig, name)
    labels = [f"{safe(g, limit=40)}  (n={n})" for g, n in zip(t["group"], t["n"])]
    lo, hi = qcols[0], qcols[-1]
    fig.add_trace(go.Bar(
        y=labels, base=t[lo], x=t[hi] - t[lo], orientation="h", name=f"{lo}\u2013{hi} spread",
        marker=dict(color=c["grid"], line=dict(width=0)), hoverinfo="skip", width=0.35,
    ))
    palette = {"p50": c["p50"], "p90": c["dup-ack"], "p95": c["p95"], "p99": c["RST"]}
    for col in qcols:
        q = int(float(col[1:]))
        fig.add_trace(go.Scatter(
            y=labels, x=t[col], mode="markers", name=col,
            marker=dict(symbol=MARKERS.get(q, "circle"), size=s["marker"] + 2, color=palette.get(col, c["client"]),
                        line=dict(width=1.5, color=palette.get(col, c["client"]))),
            hovertemplate="%{y}<br>" + col + " %{x:,.1f} " + unit + "<extra></extra>",
        ))
    ratio = (t[hi] / t[lo]).where((t[lo] > 0) & (t["n"] >= MIN_RATIO_N))
    fig.add_trace(go.Scatter(
        y=labels, x=t["max"].where(t["max"] > t[hi], t[hi]), mode="text", showlegend=False, hoverinfo="skip",
        text=[f"  {r:,.1f}\u00d7" if pd.notna(r) else "" for r in ratio], textposition="middle right",
        textfont=dict(color=c["muted"], size=s["small"]),
    ))
    spread = (t[hi].max() / max(t[lo][t[lo] > 0].min(), 1e-9)) if (t[lo] > 0).any() else 1
    fig.update_layout(
        title=dict(text=title or f"<b>{safe(metric_label).capitalize()}</b>: median and tail",
                   subtitle=dict(text=f"{lo} to {hi} per group, worst tail at the top; the number is {hi}/{lo} "
                                      f"(groups of {MIN_RATIO_N}+; numpy linear percentiles)")),
        xaxis=dict(title=dict(text=unit), type="log" if spread > 50 else "linear", rangemode="tozero"),
        yaxis=dict(automargin=True),
        legend=dict(orientation="h", yanchor="top", y=-0.12, x=0),
        height=max(360, 34 * len(t) + 220) if name != "talk" else None,
        barmode="overlay",
    )
    return themes.apply(fig, name)


def ecdf(df: pd.DataFrame, metric: str, by: str | None = None, theme: str = "light",
         metric_label: str = "time to first byte", top: int = 6, scale: float = 1000.0,
         unit: str = "ms", min_n: int = MIN_RATIO_N) -> go.Figure:
    """The empirical CDF of ``df[metric]`` (and of the ``top`` largest groups of ``min_n``+), p95 and p99 marked."""
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    fig = go.Figure()
    vals = (df[metric] * scale).dropna() if metric in df else pd.Series(dtype=float)
    if not len(vals):
        fig.add_annotation(text="no timings", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        return themes.apply(fig, name)
    groups = [("all requests", vals)]
    if by and by in df:
        keys = df.loc[vals.index, by].fillna("(unknown)").astype(str)
        counts = keys.value_counts()
        for key in counts.index[:top]:
            if len(counts) > 1 and counts[key] >= min_n:
                groups.append((key, vals[keys == key]))
    for i, (label, v) in enumerate(groups):
        x = np.sort(v.to_numpy())
        n = len(x)
        y = np.arange(1, n + 1) / n
        x, y = np.concatenate([[x[0]], x]), np.concatenate([[0.0], y])    # the step up from 0
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines", line=dict(shape="hv", width=s["line"] * (1.6 if i == 0 else 1),
                                              color=c["text"] if i == 0 else None),
            name=f"{safe(label, limit=40)} (n={n})",
            hovertemplate="%{x:,.1f} " + unit + ": %{y:.1%} of requests<extra>" + safe(label, limit=40) + "</extra>",
        ))
    p = percentiles_of(vals, (95, 99))
    fig.add_vrect(x0=p[95], x1=float(vals.max()), fillcolor=c["band_server"], line_width=0, layer="below")
    log = vals.min() > 0 and vals.max() / vals.min() > 50
    for i, (q, color) in enumerate(((95, c["p95"]), (99, c["RST"]))):
        fig.add_vline(x=p[q], line=dict(color=color, width=s["line"], dash="dash"))
        fig.add_annotation(x=np.log10(p[q]) if log else p[q], y=0.06 + 0.08 * i, yref="paper",
                           text=f"p{q} {p[q]:,.0f} {unit}", showarrow=False, xanchor="right", xshift=-4,
                           bgcolor=c["background"], font=dict(color=color, size=s["small"]))
    fig.update_layout(
        title=dict(text=f"<b>{safe(metric_label).capitalize()}</b>: distribution",
                   subtitle=dict(text="share of requests at or below each time; the shaded tail is the slowest 5%")),
        xaxis=dict(title=dict(text=unit), type="log" if log else "linear"),
        yaxis=dict(title=dict(text="share of requests"), tickformat=".0%", range=[0, 1.02]),
        legend=dict(orientation="h", yanchor="top", y=-0.15, x=0),
    )
    return themes.apply(fig, name)
