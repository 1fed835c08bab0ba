"""gRPC calls on a time axis: one lane per call, its stream from request to trailers, its messages as dots.

Each lane is one call (one HTTP/2 stream), labelled with its method; the bar
runs from the request's first byte to the stream's end and is coloured by
the call's gRPC status (OK, or an error code), the request and reply
messages are dots on it (a server stream shows as a row of dots), and the
latency is written at its end.  Calls on one connection share its lanes'
time axis: ms since the first call.

Reads the ``requests`` rows with ``grpc_*`` columns and the ``grpc`` events;
strings from the capture go through ``safe``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import fmt_ms, safe

MAX_CALLS = 60


def calls_chart(calls: pd.DataFrame, events: pd.DataFrame, theme: str = "light", title: str | None = None) -> go.Figure:
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    fig = go.Figure()
    themes.apply(fig, name)
    head = title or "gRPC calls"
    calls = calls.sort_values("start").head(MAX_CALLS)
    if not len(calls):
        fig.update_layout(title=dict(text=safe(head) + ": no calls"))
        return fig
    t0 = float(calls["start"].min())
    ms = lambda t: (float(t) - t0) * 1000.0  # noqa: E731
    lane = {(int(r.conn), int(r.stream)): i for i, r in enumerate(calls.itertuples(index=False))}
    labels = [f"{safe(r.grpc_method)}  (stream {int(r.stream)})" for r in calls.itertuples(index=False)]
    for ok, color in ((True, "ok"), (False, "RST")):
        sub = calls[(calls["grpc_status"].fillna(-1) == 0).to_numpy(dtype=bool) == ok]
        if not len(sub):
            continue
        ends = [r.end if not pd.isna(r.end) else r.start for r in sub.itertuples(index=False)]
        fig.add_trace(go.Bar(
            orientation="h", y=[lane[(int(r.conn), int(r.stream))] for r in sub.itertuples(index=False)],
            base=[ms(r.start) for r in sub.itertuples(index=False)],
            x=[max(ms(e) - ms(r.start), 0.3) for r, e in zip(sub.itertuples(index=False), ends)],
            width=0.5, marker_color=c[color], opacity=0.55,
            name="status OK" if ok else "status not OK",
            text=[f"{fmt_ms(float(e) - float(r.start))} {safe(r.grpc_code or '')}"
                  for r, e in zip(sub.itertuples(index=False), ends)],
            textposition="outside", cliponaxis=False, textfont=dict(size=s["small"], color=c["text"]),
            hovertext=[f"/{safe(r.grpc_service)}/{safe(r.grpc_method)}<br>grpc-status {safe(r.grpc_status)} "
                       f"{safe(r.grpc_code)} {safe(r.grpc_message, 80)}" for r in sub.itertuples(index=False)],
            hoverinfo="text"))
    ev = events[(events["layer"].astype("object") == "grpc").to_numpy(dtype=bool, na_value=False)
                & (events["kind"].astype("object") == "message").to_numpy(dtype=bool, na_value=False)]
    for d, label, color, symbol in (("c2s", "request message", "client", "circle"),
                                    ("s2c", "reply message", "server", "diamond")):
        pts = [(ms(r.ts), lane[(int(r.conn), int(r.stream))], r) for r in ev[ev["dir"] == d].itertuples(index=False)
               if (int(r.conn), int(r.stream)) in lane]
        if pts:
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers",
                                     name=f"{label} ({len(pts)})",
                                     marker=dict(symbol=symbol, size=s["marker"], color=c[color]),
                                     hovertext=[f"{int(p[2].size)} B<br>{safe(p[2].detail, 80)}" for p in pts],
                                     hoverinfo="text"))
    fig.update_layout(
        title=dict(text=f"<b>{safe(head)}</b>",
                   subtitle=dict(text="one lane per call (HTTP/2 stream); dots: messages; colour: grpc-status",
                                 font=dict(color=c["muted"], size=s["font"]))),
        margin=dict(t=110 if name != "talk" else 170), barmode="overlay",
        height=s["height"] if name == "talk" else min(max(360, 150 + 44 * len(labels)), 3000),
        xaxis=dict(title="ms since the first call", zeroline=False),
        yaxis=dict(tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed", zeroline=False,
                   showgrid=False),
        legend=dict(orientation="v", x=1.01, xanchor="left", y=1.0, yanchor="top"))
    return fig
