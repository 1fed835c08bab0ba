"""Handshake round trips across many connections: the distribution and the timeline.

Left, the empirical distribution (ECDF) of the handshake RTT with the median
and 95th percentile marked; right, each connection's RTT against the time it
started, so a slow minute, a bimodal path or a burst of SYN retransmissions
stands out.  Connections that never completed a handshake (refused,
unanswered) have no RTT; they are drawn as crosses along the top of the
timeline at the time they started.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from traceviz.charts import theme as themes
from traceviz.charts.text import fmt_ms
from traceviz.charts.text import safe


def handshake_rtt_view(connections: pd.DataFrame, theme: str = "light") -> go.Figure:
    """Distribution + timeline of the handshake RTT of ``connections`` (TCP rows).

    Uses the ``irtt`` column (answered SYN -> ACK, as Wireshark's
    ``tcp.analysis.initial_rtt``) when present, else ``handshake_rtt``.
    """
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    df = connections
    if "transport" in df.columns:
        df = df[df["transport"] == "tcp"]
    rtt_col = "irtt" if "irtt" in df.columns else "handshake_rtt"
    rtt_ms = pd.to_numeric(df[rtt_col], errors="coerce").astype("float64") * 1000.0
    start = pd.to_numeric(df["syn"].fillna(df["start"]) if "syn" in df.columns else df["start"],
                          errors="coerce").astype("float64")
    t0 = float(start.min()) if len(start.dropna()) else 0.0
    since = start - t0
    retx = pd.to_numeric(df.get("syn_retransmits", pd.Series(0, index=df.index)), errors="coerce").fillna(0)
    close = df.get("close", pd.Series(pd.NA, index=df.index)).astype("string")

    fig = make_subplots(rows=1, cols=2, column_widths=[0.38, 0.62], horizontal_spacing=0.09,
                        subplot_titles=("distribution", "over the capture"))
    themes.apply(fig, name)
    done = rtt_ms.notna()
    values = np.sort(rtt_ms[done].to_numpy())
    log = _use_log(values)
    p50 = float(np.percentile(values, 50)) if len(values) else None
    p95 = float(np.percentile(values, 95)) if len(values) else None

    if len(values):
        # the ECDF steps up from 0 at the fastest handshake
        xs = np.concatenate([values[:1], values])
        y = np.concatenate([[0.0], np.arange(1, len(values) + 1) / len(values)])
        fig.add_trace(go.Scatter(
            x=xs, y=y, mode="lines+markers", line=dict(shape="hv", color=c["ok"], width=s["line"]),
            marker=dict(size=s["marker"] * 0.55, color=c["ok"]), name="ECDF", showlegend=False,
            hovertemplate="%{x:.3f} ms<br>%{y:.0%} of handshakes at or below<extra></extra>",
        ), row=1, col=1)
    groups = (
        ("first SYN answered", done & (retx == 0), c["ok"], "circle"),
        ("after SYN retransmission", done & (retx > 0), c["syn-retry"], "diamond"),
    )
    for label, mask, col, symbol in groups:
        sub = df[mask]
        if not len(sub):
            continue
        fig.add_trace(go.Scatter(
            x=since[mask], y=rtt_ms[mask], mode="markers", name=f"{label} ({len(sub)})",
            marker=dict(color=col, symbol=symbol, size=s["marker"], line=dict(width=0)),
            hovertext=[_hover(r, v) for r, v in zip(sub.itertuples(index=False), rtt_ms[mask])],
            hoverinfo="text",
        ), row=1, col=2)

    failed = ~done
    top = (values.max() * (2.0 if log else 1.12)) if len(values) else 1.0
    for label, mask, col, symbol in (
        ("refused", failed & (close == "refused").fillna(False), c["refused"], "x-thin"),
        ("unanswered", failed & (close == "unanswered").fillna(False), c["unanswered"], "x-thin"),
        ("no handshake", failed & ~close.isin(["refused", "unanswered"]).fillna(False), c["muted"], "x-thin"),
    ):
        sub = df[mask]
        if not len(sub):
            continue
        few = len(sub) <= 12
        fig.add_trace(go.Scatter(
            x=since[mask], y=[top] * len(sub), mode="markers+text" if few else "markers",
            name=f"{label} ({len(sub)})", text=[label] * len(sub) if few else None,
            textposition="bottom center", textfont=dict(color=col, size=s["small"]),
            marker=dict(color=col, symbol=symbol, size=s["marker"] * 1.2, line=dict(width=s["line"], color=col)),
            hovertext=[_hover(r, None) for r in sub.itertuples(index=False)], hoverinfo="text",
        ), row=1, col=2)

    if len(values):
        _percentiles(fig, ((p50, "p50", c["p50"], "right"), (p95, "p95", c["p95"], "left")), log, c, s)

    n, n_done = len(df), int(done.sum())
    sub = f"{n} connections, {n_done} completed"
    if p50 is not None:
        sub += f" \u00b7 median {fmt_ms(p50 / 1000)} \u00b7 p95 {fmt_ms(p95 / 1000)}"
    if (retx > 0).any():
        sub += f" \u00b7 {int((retx > 0).sum())} with SYN retransmissions"
    fig.update_layout(
        title=dict(text="<b>TCP handshake round trips</b>",
                   subtitle=dict(text=sub, font=dict(color=c["muted"], size=s["font"]))),
        # room under the subtitle for the subplot titles, clear of the y axes' titles
        margin=dict(t=int(s["title"] * 2 + s["font"] * 4.5)),
    )
    themes.legend_below(fig, name)
    axis_type = "log" if log else "linear"
    # A linear RTT axis starts at zero: 25.19 vs 25.21 ms must not look like a spread.
    rtt_range = None if log or not len(values) else [0, top * 1.18]
    fig.update_xaxes(title_text="handshake RTT (ms)", type=axis_type, row=1, col=1,
                     range=None if rtt_range is None else [0, values.max() * 1.15])
    fig.update_yaxes(title_text="share of handshakes", tickformat=".0%", range=[0, 1.08], row=1, col=1)
    fig.update_xaxes(title_text="seconds since the first SYN", row=1, col=2)
    fig.update_yaxes(title_text="handshake RTT (ms)", type=axis_type, row=1, col=2, range=rtt_range)
    for ann in fig.layout.annotations[:2]:      # the subplot titles
        ann.font = dict(size=s["font"], color=c["muted"])
    return fig


def _percentiles(fig, marks, log: bool, c, s) -> None:
    """Dashed lines for p50/p95 on the distribution, dotted levels on the timeline.

    Added after the traces: plotly skips lines on a subplot that is still empty.
    """
    for value, label, col, side in marks:
        fig.add_vline(x=value, line=dict(color=col, width=s["line"], dash="dash"), row=1, col=1)
        fig.add_hline(y=value, line=dict(color=col, width=max(s["line"] * 0.6, 1), dash="dot"), row=1, col=2)
        # annotations on a log axis take log10 coordinates (shapes take data values)
        fig.add_annotation(x=math.log10(value) if log and value > 0 else value, y=1.0, xref="x", yref="y",
                           text=f"<b>{label} {fmt_ms(value / 1000)}</b>", showarrow=False,
                           xanchor=side, xshift=-4 if side == "right" else 4, yanchor="bottom",
                           font=dict(color=col, size=s["small"]))


def _use_log(values: np.ndarray) -> bool:
    # A log axis when RTTs span more than ~1.5 decades (LAN next to WAN, or 1 s SYN waits).
    return len(values) > 1 and values.min() > 0 and values.max() / values.min() > 30


def _hover(r, rtt_ms) -> str:
    lines = [f"<b>conn {safe(getattr(r, 'conn', ''))}</b>",
             f"{safe(getattr(r, 'client', ''))} \u2192 {safe(getattr(r, 'server', ''))}"]
    if rtt_ms is not None and not pd.isna(rtt_ms):
        lines.append(f"handshake RTT {fmt_ms(rtt_ms / 1000)}")
        sh, ch = getattr(r, "server_half", None), getattr(r, "client_half", None)
        if sh is None:
            sh, ch = getattr(r, "rtt_server", None), getattr(r, "rtt_client", None)
        if sh is not None and ch is not None and not pd.isna(sh) and not pd.isna(ch):
            lines.append(f"server side {fmt_ms(sh)} \u00b7 client side {fmt_ms(ch)}")
    retx = getattr(r, "syn_retransmits", 0)
    if retx is not None and not pd.isna(retx) and int(retx) > 0:
        wait = getattr(r, "syn_wait", None)
        extra = f", waited {fmt_ms(wait)}" if wait is not None and not pd.isna(wait) else ""
        lines.append(f"{int(retx)} SYN retransmission{'s' if int(retx) > 1 else ''}{extra}")
    close = getattr(r, "close", None)
    if close is not None and not pd.isna(close):
        lines.append(f"close: {safe(close)}")
    return "<br>".join(lines)
