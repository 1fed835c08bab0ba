"""How bad is the tail?  Percentiles per group, and the ECDF with its tail marked.

``percentile_table`` is the one definition every traceviz latency number
uses: numpy's default ``linear`` method (Hyndman & Fan type 7): for ``n``
sorted values the p-th percentile sits at rank ``(n - 1) * p / 100``,
interpolated linearly between its neighbours, and drawn only where the
group has the samples to hold it (``stats.min_samples``); ``n`` is always
shown beside them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import safe
from traceviz.stats import MIN_RATIO_N, min_samples, percentiles_of, supported

MARKERS = {50: "circle", 90: "diamond", 95: "square", 99: "x"}


def percentiles(table: pd.DataFrame, metric_label: str = "time to first byte", theme: str = "light",
                title: str | None = None, top: int = 25, unit: str = "ms") -> go.Figure:
    """A dot plot: one row per group, p50 to its highest percentile as a bar, a marker per percentile.

    ``table`` is ``percentile_table``'s output, where a percentile the group's
    n cannot hold is NaN: it is simply not drawn, so a group of one request is
    a single dot (its p50) and a group of 15 reaches p90, not a p99 that would
    be its maximum.  The ratio of the highest percentile drawn to the median
    is written at the end of each row (groups of ``MIN_RATIO_N``+): that
    ratio, not the median, is what a user feels.
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
    lo = qcols[0]
    hi = t[qcols].ffill(axis=1).iloc[:, -1]                 # the highest percentile each group holds
    hi_name = t[qcols].notna().iloc[:, ::-1].idxmax(axis=1)
    fig.add_trace(go.Bar(
        y=labels, base=t[lo], x=hi - t[lo], orientation="h", name="spread, p50 to the highest percentile",
        marker=dict(color=c["grid"], line=dict(width=0)), hoverinfo="skip", width=0.35,
    ))
    palette = {"p50": c["p50"], "p90": c["dup-ack"], "p95": c["p95"], "p99": c["RST"]}
    for col in qcols:
        q = int(float(col[1:]))
        if not t[col].notna().any():
            continue
        fig.add_trace(go.Scatter(
            y=labels, x=t[col], mode="markers", name=col + ("" if q <= 50 else f" (n \u2265 {min_samples(q)})"),
            marker=dict(symbol=MARKERS.get(q, "circle"), size=s["marker"] + 2, color=palette.get(col, c["client"]),
                        line=dict(width=1.5, color=palette.get(col, c["client"]))),
            hovertemplate="%{y}<br>" + col + " %{x:,.1f} " + unit + "<extra></extra>",
        ))
    ratio = (hi / t[lo]).where((t[lo] > 0) & (t["n"] >= MIN_RATIO_N) & (hi_name != lo))
    fig.add_trace(go.Scatter(
        y=labels, x=t["max"].where(t["max"] > hi, hi), mode="text", showlegend=False, hoverinfo="skip",
        text=[f"  {r:,.1f}\u00d7 {q}/p50" if pd.notna(r) else "" for r, q in zip(ratio, hi_name)],
        textposition="middle right", textfont=dict(color=c["muted"], size=s["small"]),
    ))
    positive = t[lo][t[lo] > 0]
    spread = (hi.max() / max(positive.min(), 1e-9)) if len(positive) else 1
    fig.update_layout(
        title=dict(text=title or f"<b>{safe(metric_label).capitalize()}</b>: median and tail",
                   subtitle=dict(text="per group, worst tail at the top; a percentile only where n holds it; "
                                      "the number: the highest one over p50")),
        xaxis=dict(title=dict(text=unit), type="log" if spread > 50 else "linear", rangemode="tozero"),
        yaxis=dict(automargin=True),
        height=max(400, 34 * len(t) + 260) if name != "talk" else None,
        barmode="overlay",
    )
    themes.apply(fig, name)
    themes.legend_below(fig, name)
    return fig


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
    marks = [(q, color) for q, color in ((90, c["dup-ack"]), (95, c["p95"]), (99, c["RST"])) if supported(len(vals), q)]
    p = percentiles_of(vals, [q for q, _ in marks] or [50])
    log = vals.min() > 0 and vals.max() / vals.min() > 50
    if marks:   # the tail beyond the lowest percentile the sample can hold
        first = marks[0][0]
        fig.add_vrect(x0=p[first], x1=float(vals.max()), fillcolor=c["band_server"], line_width=0, layer="below")
    for i, (q, color) in enumerate(marks):
        fig.add_vline(x=p[q], line=dict(color=color, width=s["line"], dash="dash"))
        fig.add_annotation(x=np.log10(p[q]) if log else p[q], y=0.06 + 0.09 * i, yref="paper",
                           text=f"p{q} {p[q]:,.0f} {unit}", showarrow=False, xanchor="right", xshift=-4,
                           bgcolor=c["background"], font=dict(color=color, size=s["small"]))
    tail = (f"the shaded tail is the slowest {100 - marks[0][0]}%" if marks else
            f"too few requests ({len(vals)}) for a p90")
    fig.update_layout(
        title=dict(text=f"<b>{safe(metric_label).capitalize()}</b>: distribution",
                   subtitle=dict(text=f"share of requests at or below each time; {tail}")),
        xaxis=dict(title=dict(text=unit), type="log" if log else "linear"),
        yaxis=dict(title=dict(text="share of requests"), tickformat=".0%", range=[0, 1.02]),
    )
    themes.apply(fig, name)
    themes.legend_below(fig, name)
    return fig
