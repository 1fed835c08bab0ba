"""The HTTP/2 multiplexing chart, and HTTP/1.1 against HTTP/2 side by side.

``multiplex``: one lane per stream of one connection, time flowing right in
milliseconds since the first stream opened.  A faint bar is each stream's
life (opened to closed); DATA frames are marks sized by their bytes (the
server's and the client's in their own colours); HEADERS, RST_STREAM and
GOAWAY are symbols; a flow-control stall is a thick red stretch on its lane.
Below, the number of open streams over time.  A hole in the TCP byte stream
that held streams back (``hol-block`` events) is a band across every lane,
so the picture says what TCP head-of-line blocking is: one lost segment,
every stream waiting.  Hover shows the frame numbers, to find each one in
Wireshark.

``versions``: the same page fetched over HTTP/1.1 and HTTP/2 -- each
request as a bar on its connection's (or stream's) lane, and the counts a
talk compares: connections, handshakes paid, time to the last byte, header
bytes on the wire.

Both read the ``streams`` and ``events`` columns the assembler made; they
compute nothing about the protocol.  Every string from a capture goes
through ``safe``.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from traceviz.charts import theme as themes
from traceviz.charts.text import fmt_ms, safe

MAX_MARKS = 20000           # DATA marks drawn per chart (beyond: the first ones, and a note)
_MARK_MIN, _MARK_MAX = 5, 22


def multiplex(streams: pd.DataFrame, events: pd.DataFrame, conn: int, theme: str = "light",
              title: str | None = None) -> go.Figure:
    """The multiplexing chart of connection ``conn`` from the ``streams`` and ``events`` tables."""
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    st = streams[streams["conn"] == conn].sort_values("stream")
    ev = events[(events["conn"] == conn)] if len(events) else events
    h2 = ev[ev["layer"] == "h2"].sort_values(["ts", "frame"], kind="stable") if len(ev) else ev
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.04)
    themes.apply(fig, name)
    lanes = [int(x) for x in st["stream"]]
    if not lanes:
        fig.update_layout(title=dict(text=f"Connection {safe(conn)}: no HTTP/2 streams"))
        return fig
    t0 = float(pd.concat([st["opened"].dropna(), h2["ts"].dropna()]).min())
    ms = lambda t: (t - t0) * 1000.0    # noqa: E731 - one short conversion, used everywhere below
    label = {sid: f"stream {sid}" for sid in lanes}
    _lives(fig, st, label, ms, c, s)
    _data_marks(fig, h2, label, ms, c, s)
    _symbols(fig, h2, label, ms, c, s)
    _window_stalls(fig, ev, label, ms, c, s)
    _concurrency(fig, h2, ms, c, s)
    _hol_bands(fig, ev, label, ms, c, s)
    order = [label[sid] for sid in lanes]
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=order, autorange="reversed",
                     row=1, col=1, title_text="")
    fig.update_yaxes(title_text="open streams", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="ms since the first stream opened", row=2, col=1)
    height = max(s["height"], min(160 + 34 * len(lanes), 4000)) if name != "talk" else s["height"]
    fig.update_layout(
        height=height, width=s["width"],
        title=dict(text=title or f"HTTP/2 connection {safe(conn)}: {len(lanes)} streams, "
                                 f"up to {_peak(h2)} open at once"),
        legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="right", x=1),
        meta={"lanes": order, "conn": int(conn)})
    return fig


def _lives(fig, st, label, ms, c, s) -> None:
    xs, ys, hover = [], [], []
    for r in st.itertuples():
        start = r.opened if _num(r.opened) else r.first_byte
        end = r.closed if _num(r.closed) else r.last_byte
        if not _num(start):
            continue
        end = end if _num(end) else start
        xs += [ms(start), ms(end), None]
        ys += [label[r.stream]] * 2 + [None]
        text = (f"stream {r.stream}<br>{safe(r.method)} {safe(r.url, 90)}<br>status {safe(r.status)}, "
                f"{safe(r.resp_bytes)} bytes in {safe(r.data_frames)} DATA frames<br>"
                f"open {fmt_ms(end - start)} (frames {safe(r.first_frame)}–{safe(r.last_frame)})")
        hover += [text, text, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="stream open", hoverinfo="text", text=hover,
                             line=dict(color=c["grid"], width=s["marker"] + 4), showlegend=True), row=1, col=1)


def _data_marks(fig, h2, label, ms, c, s) -> None:
    data = h2[(h2["kind"] == "DATA") & h2["stream"].notna()]
    data = data[data["stream"].astype(int).isin(label)]
    note = None
    if len(data) > MAX_MARKS:
        note, data = f"first {MAX_MARKS:,} of {len(data):,} DATA frames", data.head(MAX_MARKS)
    biggest = max(float(data["size"].max()) if len(data) else 1.0, 1.0)
    trace = go.Scattergl if len(data) > 5000 else go.Scatter
    for d, who, color in (("s2c", "server", c["server"]), ("c2s", "client", c["client"])):
        part = data[data["dir"] == d]
        if part.empty:
            continue
        sizes = [_MARK_MIN + (_MARK_MAX - _MARK_MIN) * math.sqrt(max(float(n), 0) / biggest)
                 for n in part["size"].fillna(0)]
        hover = [f"DATA from the {who}, stream {int(sid)}<br>{int(n or 0):,} bytes, frame {int(f)}"
                 f"<br>{fmt_ms((t - part['ts'].iloc[0]) + 0)} after this side's first DATA"
                 for sid, n, f, t in zip(part["stream"], part["size"].fillna(0), part["frame"], part["ts"])]
        fig.add_trace(trace(x=[ms(t) for t in part["ts"]], y=[label[int(x)] for x in part["stream"]],
                            mode="markers", name=f"DATA ({who})", hoverinfo="text", text=hover,
                            marker=dict(size=sizes, color=color, opacity=0.8, line=dict(width=0))),
                      row=1, col=1)
    if note:
        fig.add_annotation(text=safe(note), xref="paper", yref="paper", x=0, y=1.0, showarrow=False,
                           yanchor="bottom", font=dict(size=s["small"], color=c["muted"]))


_SYMBOLS = {("HEADERS", "c2s"): ("request HEADERS", "triangle-right", "client"),
            ("HEADERS", "s2c"): ("response HEADERS", "diamond", "server"),
            ("PUSH_PROMISE", "s2c"): ("PUSH_PROMISE", "star", "server"),
            ("RST_STREAM", "c2s"): ("RST_STREAM", "x", "RST"),
            ("RST_STREAM", "s2c"): ("RST_STREAM", "x", "RST")}


def _symbols(fig, h2, label, ms, c, s) -> None:
    marks = h2[h2["kind"].isin(["HEADERS", "PUSH_PROMISE", "RST_STREAM"]) & h2["stream"].notna()]
    marks = marks[marks["stream"].astype(int).isin(label)]
    groups: dict[str, dict] = {}
    for r in marks.itertuples():
        key = _SYMBOLS.get((r.kind, r.dir))
        if key is None:
            continue
        name, symbol, color = key
        g = groups.setdefault(name, {"x": [], "y": [], "text": [], "symbol": symbol, "color": c[color]})
        g["x"].append(ms(r.ts))
        g["y"].append(label[int(r.stream)])
        g["text"].append(f"{safe(r.kind)} ({'client' if r.dir == 'c2s' else 'server'}), stream {int(r.stream)}"
                         f"<br>{safe(r.detail, 80)}<br>frame {safe(r.frame)}")
    for name, g in groups.items():
        fig.add_trace(go.Scatter(x=g["x"], y=g["y"], mode="markers", name=name, hoverinfo="text", text=g["text"],
                                 marker=dict(symbol=g["symbol"], size=s["marker"] + 2, color=g["color"],
                                             line=dict(width=1, color=c["background"]))), row=1, col=1)
    goaway = h2[h2["kind"] == "GOAWAY"]
    for r in goaway.itertuples():
        fig.add_vline(x=ms(r.ts), line=dict(color=c["RST"], dash="dash", width=s["line"]), row="all", col=1)
        fig.add_annotation(x=ms(r.ts), y=0.21, xref="x", yref="paper", showarrow=False, xanchor="left",
                           yanchor="top", text=f" GOAWAY (frame {safe(r.frame)})", hovertext=safe(r.detail),
                           font=dict(size=s["small"], color=c["RST"]))


def _window_stalls(fig, ev, label, ms, c, s) -> None:
    stalls = ev[ev["kind"] == "window-stall"] if len(ev) else ev
    _stretches(fig, stalls, label, ms, "flow-control stall", c["zero-window"], s["marker"] * 0.6)


def _stretches(fig, rows, label, ms, name, color, width) -> None:
    """Rows with a ``duration`` as thick stretches on their stream's lane (stream 0: every lane)."""
    xs, ys, hover = [], [], []
    for r in rows.itertuples():
        dur = getattr(r, "duration", float("nan"))
        if not (_num(dur) and _num(r.stream)):
            continue
        sids = list(label) if int(r.stream) == 0 else [int(r.stream)] if int(r.stream) in label else []
        text = f"{name}, {'the connection' if int(r.stream) == 0 else f'stream {int(r.stream)}'}: " \
               f"{fmt_ms(dur)}<br>{safe(r.detail, 160)}"
        for sid in sids:
            xs += [ms(r.ts), ms(r.ts + dur), None]
            ys += [label[sid]] * 2 + [None]
            hover += [text, text, None]
    if xs:
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="text", text=hover,
                                 line=dict(color=color, width=width)), row=1, col=1)


def _concurrency(fig, h2, ms, c, s) -> None:
    if "open_streams" not in h2.columns:
        return
    steps = h2[h2["open_streams"].notna()]
    if steps.empty:
        return
    fig.add_trace(go.Scatter(x=[ms(t) for t in steps["ts"]], y=[int(n) for n in steps["open_streams"]],
                             mode="lines", line=dict(shape="hv", color=c["data"], width=s["line"]),
                             name="open streams", hovertemplate="%{y} open streams<extra></extra>"),
                  row=2, col=1)


def _hol_bands(fig, ev, label, ms, c, s) -> None:
    """Each TCP hole as a band over every lane, and each stream's own wait behind it."""
    blocks = ev[ev["kind"] == "hol-block"] if len(ev) else ev
    for r in blocks.itertuples():
        dur = getattr(r, "duration", float("nan"))
        if not _num(dur):
            continue
        fig.add_vrect(x0=ms(r.ts), x1=ms(r.ts + dur), row="all", col=1, fillcolor=c["retransmission"],
                      opacity=0.13, line_width=0, layer="below")
        fig.add_annotation(x=ms(r.ts + dur), y=0.21, xref="x", yref="paper", showarrow=False, xanchor="right",
                           yanchor="top", font=dict(size=s["small"], color=c["retransmission"]),
                           text=f"TCP hole: {fmt_ms(dur)}, filled by frame {safe(r.frame)}", hovertext=safe(r.detail))
    waits = ev[ev["kind"] == "hol-stall"] if len(ev) else ev
    _stretches(fig, waits, label, ms, "waiting behind a TCP hole", c["retransmission"], s["marker"] * 0.45)


def _peak(h2) -> int:
    if "open_streams" not in h2.columns or h2["open_streams"].dropna().empty:
        return 0
    return int(h2["open_streams"].max())


def _num(v) -> bool:
    return v is not None and v is not pd.NA and not (isinstance(v, float) and math.isnan(v))


# --- HTTP/1.1 against HTTP/2 -------------------------------------------------------------------

METRICS = [("connections", "connections"), ("handshakes", "TCP + TLS handshakes"),
           ("time_to_last_byte", "time to last byte (s)"), ("header_bytes", "header bytes on the wire")]


def versions(rows: list[dict], lanes: list[pd.DataFrame], theme: str = "light") -> go.Figure:
    """Side by side: for each file (``rows``: its facts, ``lanes``: its requests with ``lane``,
    ``start``, ``end``, ``url`` and ``t0``), the requests on their connections, then the counts."""
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    n, m = len(rows), len(METRICS)
    # n files side by side on top (m columns each), the m counts below (n columns each).
    fig = make_subplots(rows=2, cols=n * m,
                        specs=[[{"colspan": m}, *([None] * (m - 1))] * n, [{"colspan": n}, *([None] * (n - 1))] * m],
                        row_heights=[0.62, 0.38], vertical_spacing=0.16, horizontal_spacing=0.09,
                        subplot_titles=[safe(r["label"]) for r in rows] + [t for _, t in METRICS])
    themes.apply(fig, name)
    fig.update_annotations(font=dict(size=s["font"], color=c["text"]))     # the subplot titles
    palette = [c["client"], c["server"], c["data"], c["FIN"]]
    span = max((float(r["time_to_last_byte"]) for r in rows if _num(r.get("time_to_last_byte"))), default=1.0)
    for i, (r, lane) in enumerate(zip(rows, lanes)):
        col = 1 + i * m
        color = palette[i % len(palette)]
        xs, ys, hover = [], [], []
        for q in lane.itertuples():
            if not (_num(q.start) and _num(q.end)):
                continue
            xs += [q.start - q.t0, q.end - q.t0, None]
            ys += [safe(q.lane)] * 2 + [None]
            text = f"{safe(q.lane)}<br>{safe(q.url, 90)}<br>{fmt_ms(q.end - q.start)}"
            hover += [text, text, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=safe(r["label"]), hoverinfo="text", text=hover,
                                 line=dict(color=color, width=s["marker"]), showlegend=False), row=1, col=col)
        # A tick where each request starts: back-to-back requests on one connection stay apart.
        fig.add_trace(go.Scatter(x=xs[0::3], y=ys[0::3], mode="markers", hoverinfo="text", text=hover[0::3],
                                 marker=dict(symbol="line-ns", size=s["marker"] * 2,
                                             line=dict(width=2, color=c["background"])), showlegend=False),
                      row=1, col=col)
        fig.update_xaxes(range=[0, span * 1.03], title_text="s since the first SYN", row=1, col=col)
        fig.update_yaxes(autorange="reversed", type="category", row=1, col=col)
        for j, (key, _) in enumerate(METRICS):
            value = r.get(key)
            fig.add_trace(go.Bar(x=[safe(r["label"])], y=[value if _num(value) else 0], marker_color=color,
                                 text=[_fmt(value)], textposition="outside", showlegend=False,
                                 hovertemplate=f"{safe(r['label'])}: %{{y}}<extra></extra>"), row=2, col=1 + j * n)
    fig.update_layout(title=dict(text="The same page over " + " and ".join(safe(r["label"]) for r in rows)),
                      width=s["width"], height=s["height"], bargap=0.35,
                      meta={"files": [r["label"] for r in rows]})
    return fig


def _fmt(v) -> str:
    if not _num(v):
        return "?"
    return f"{v:.2f}" if isinstance(v, float) and not float(v).is_integer() else f"{int(v):,}"
