"""Connection reuse over time: one lane per connection, its requests as bars.

Time runs left to right in ms since the first connection opened.  Each lane
is a TCP connection: a thin line from its SYN to its end, a bar per HTTP
exchange (request start to last response byte, coloured by status; a
request that got no answer is drawn to the close that met it), the idle
gaps between exchanges dotted and labelled, the TCP keep-alive probes as
ticks, and its end marked with who closed it and after how long idle.  A
connection that carried several requests reads as a lane of bars; a new
connection opened while another sat idle stands out.

Reads the columns the keep-alive assembler made (``idle_gaps``,
``idle_close``, ``close_frame``...); every string from the capture goes
through ``safe``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import fmt_ms, safe

MAX_LANES = 60
STATUS_KEYS = (("2xx/3xx", "wait"), ("4xx", "dup-ack"), ("5xx", "RST"), ("keep-alive race", "retransmission"),
               ("no answer", "unanswered"))


def reuse_timeline(connections: pd.DataFrame, requests: pd.DataFrame, conns=None, packets=None, events=None,
                   theme: str = "light", title: str | None = None) -> go.Figure:
    """The reuse timeline of ``conns`` (default: every connection with keep-alive facts).

    ``packets`` place each close at its frame's time; ``events`` add the TCP keep-alive probes."""
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    fig = go.Figure()
    themes.apply(fig, name)
    cs = connections
    if conns is None:
        cs = cs[cs["http_requests"].notna() | cs["ka_probes"].notna()]
    else:
        cs = cs[cs["conn"].isin(list(conns))]
    cs = cs.sort_values("start", kind="stable")
    total = len(cs)
    cs = cs.head(MAX_LANES)
    head = title or "Connection reuse"
    if not len(cs):
        fig.update_layout(title=dict(text=safe(head) + ": no connections"))
        return fig
    t0 = float(cs["start"].min())
    lanes = {int(k): i for i, k in enumerate(cs["conn"])}
    labels = [f"conn {int(r.conn)}  {safe(r.client)} \u2192 {safe(r.server)}" for r in cs.itertuples(index=False)]
    rq = requests[requests["conn"].isin(list(lanes))]
    ms = lambda t: (float(t) - t0) * 1000.0  # noqa: E731
    _draw_lifetimes(fig, cs, lanes, ms, c, s)
    _draw_requests(fig, rq, cs, lanes, ms, packets, c, s)
    _draw_gaps(fig, rq, lanes, ms, c, s)
    _draw_ends(fig, cs, lanes, ms, packets, c, s)
    _draw_probes(fig, events, lanes, ms, c, s)
    more = f" (first {MAX_LANES} of {total} connections)" if total > MAX_LANES else ""
    height = s["height"] if name == "talk" else min(max(360, 110 + 46 * len(lanes) + 120), 4000)
    lo, hi = 0.0, max(ms(v) for v in cs["end"])
    fig.update_layout(
        margin=dict(t=110 if name != "talk" else 170),
        title=dict(text=f"<b>{safe(head)}</b>{safe(more)}",
                   subtitle=dict(text="bars: requests; dotted: idle between them; \u2716: the first FIN or RST",
                                 font=dict(color=c["muted"], size=s["font"]))),
        height=height, barmode="overlay", bargap=0.45,
        xaxis=dict(title="ms since the first connection opened", zeroline=False,
                   range=[lo - 0.03 * (hi - lo + 1), hi + 0.16 * (hi - lo + 1)]),
        yaxis=dict(tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed", zeroline=False,
                   showgrid=False, tickfont=dict(size=s["small"])),
        legend=dict(orientation="v", x=1.01, xanchor="left", y=1.0, yanchor="top"))
    return fig


def _status_key(status, cause=None) -> str:
    if isinstance(cause, str) and cause == "keepalive-race" and (status is None or pd.isna(status)):
        return "keep-alive race"
    if status is None or pd.isna(status):
        return "no answer"
    st = int(status)
    return "5xx" if st >= 500 else "4xx" if st >= 400 else "2xx/3xx"


def _close_ts(packets, frame):
    if packets is None or frame is None or pd.isna(frame) or not len(packets):
        return None
    i = int(frame) - 1
    if 0 <= i < len(packets) and int(packets["frame"].iat[i]) == int(frame):
        return float(packets["ts"].iat[i])
    hit = packets.loc[packets["frame"] == int(frame), "ts"]
    return float(hit.iloc[0]) if len(hit) else None


def _draw_lifetimes(fig, cs, lanes, ms, c, s) -> None:
    xs, ys = [], []
    for r in cs.itertuples(index=False):
        y = lanes[int(r.conn)]
        xs += [ms(r.start), ms(r.end), None]
        ys += [y, y, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="connection open", hoverinfo="skip",
                             line=dict(color=c["muted"], width=max(s["line"] * 0.8, 1))))


def _draw_requests(fig, rq, cs, lanes, ms, packets, c, s) -> None:
    ends = {int(r.conn): _close_ts(packets, r.close_frame) or float(r.end) for r in cs.itertuples(index=False)}
    for key, color in STATUS_KEYS:
        bars = []
        for r in rq.itertuples(index=False):
            if _status_key(r.status, getattr(r, "cause", None)) != key or pd.isna(r.start):
                continue
            end = r.end if not pd.isna(r.end) else ends.get(int(r.conn), r.start)
            cause = f"<br>{safe(r.cause)}" if isinstance(getattr(r, "cause", None), str) else ""
            status = "no answer" if pd.isna(r.status) else int(r.status)
            bars.append((lanes[int(r.conn)], ms(r.start), max(ms(end) - ms(r.start), 0.5),
                         f"{safe(r.method)} {safe(r.url, 90)}<br>{status} in {fmt_ms(float(end) - float(r.start))}"
                         f"{cause}<br>request {int(r.request)}"))
        if not bars:
            continue
        fig.add_trace(go.Bar(orientation="h", y=[b[0] for b in bars], base=[b[1] for b in bars],
                             x=[b[2] for b in bars], name=f"request: {key} ({len(bars)})", marker_color=c[color],
                             hovertext=[b[3] for b in bars], hoverinfo="text", width=0.5))


def _draw_gaps(fig, rq, lanes, ms, c, s) -> None:
    xs, ys, notes = [], [], []
    for conn, g in rq.groupby("conn"):
        g = g.sort_values("start")
        prev_end = None
        for r in g.itertuples(index=False):
            if prev_end is not None and not pd.isna(r.start) and r.start > prev_end:
                y = lanes[int(conn)]
                xs += [ms(prev_end), ms(r.start), None]
                ys += [y, y, None]
                notes.append(dict(x=(ms(prev_end) + ms(r.start)) / 2, y=y, yshift=-s["small"] * 1.1,
                                  text=f"{fmt_ms(float(r.start) - float(prev_end))} idle", showarrow=False,
                                  font=dict(size=s["small"], color=c["muted"])))
            if not pd.isna(r.end):
                prev_end = r.end
    if xs:
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="idle between requests", hoverinfo="skip",
                                 line=dict(color=c["text"], width=s["line"], dash="dot")))
    fig.update_layout(annotations=list(fig.layout.annotations) + notes)


def _draw_ends(fig, cs, lanes, ms, packets, c, s) -> None:
    xs, ys, texts, colors = [], [], [], []
    for r in cs.itertuples(index=False):
        close = str(r.close) if isinstance(r.close, str) else ""
        if close in ("", "open") or r.close_frame is None or pd.isna(r.close_frame):
            continue
        when = _close_ts(packets, r.close_frame)
        if when is None:
            continue
        who, how = close.split("-")[-1] if "-" in close else close, close.split("-")[0].upper()
        idle = f" after {fmt_ms(float(r.idle_close))} idle" if not pd.isna(r.idle_close) else ""
        xs.append(ms(when))
        ys.append(lanes[int(r.conn)])
        texts.append(f"{who} {how}{idle}")
        colors.append(c["RST"] if how == "RST" else c["FIN"])
    if xs:
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers+text", name="close (first FIN/RST)",
                                 marker=dict(symbol="x", size=s["marker"] * 1.3, color=colors),
                                 text=[safe(t) for t in texts], textposition="top center",
                                 textfont=dict(size=s["small"], color=c["text"]), hoverinfo="text"))


def _draw_probes(fig, events, lanes, ms, c, s) -> None:
    if events is None or not len(events):
        return
    ev = events[events["conn"].isin(list(lanes)).to_numpy(dtype=bool, na_value=False)]
    ev = ev[(ev["kind"] == "keep-alive").to_numpy(dtype=bool, na_value=False)]
    if not len(ev):
        return
    fig.add_trace(go.Scatter(x=[ms(t) for t in ev["ts"]], y=[lanes[int(k)] for k in ev["conn"]],
                             mode="markers", name=f"TCP keep-alive probe ({len(ev)})",
                             marker=dict(symbol="line-ns-open", size=s["marker"] * 1.6, color=c["SYN"],
                                         line=dict(width=s["line"])),
                             hovertext=[f"keep-alive probe, frame {int(f)}" for f in ev["frame"]],
                             hoverinfo="text"))
