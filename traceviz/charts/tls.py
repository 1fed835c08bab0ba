"""TLS charts: the handshake ladder of one session, and TLS 1.2 vs 1.3.

The ladder puts the client lane on the left and the server lane on the
right, time flowing down in milliseconds since the ClientHello.  Each
message is an arrow from its sender to its receiver: solid for what crossed
the wire in plaintext, dashed with a lock for what was encrypted.  The
round trips the handshake needed are drawn as brackets beside the client
lane, each labelled with its number and duration, so "TLS 1.2 costs two
round trips, TLS 1.3 one" can be seen rather than taken on trust.

Charts only draw: the round trips arrive computed (the ``tls`` table's ``round_trips``).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from traceviz.charts import theme as themes
from traceviz.charts.text import safe

CLIENT_X, SERVER_X = 0.0, 1.0
ENCRYPTED = "encrypted"


def _val(row: Mapping[str, Any] | pd.Series, key: str, default=None):
    try:
        v = row[key]
    except (KeyError, IndexError):
        return default
    if v is None or (isinstance(v, float) and v != v) or v is pd.NA:
        return default
    return v


def handshake_ladder(events: pd.DataFrame, session: Mapping[str, Any] | pd.Series,
                     round_trips: Iterable[Mapping[str, Any]] = (), theme: str = "light",
                     limit: int = 40) -> go.Figure:
    """Ladder of one TLS session's messages (``events``: its tls-layer rows).

    Messages that crossed in one frame are one arrow, their names listed on
    it, so a TLS 1.3 server flight (ServerHello ... Finished) reads as the one
    flight it is.  Rows are spaced in pixels for the text they carry, and a
    wait between frames shows as a longer gap (log-scaled); the figure grows
    to hold them, up to a slide (talk) or 1600 px, and says when it stops early.
    """
    c, s = themes.colors(theme), themes.sizes(theme)
    ev = events.sort_values(["ts", "frame"], kind="stable").head(limit)
    t0 = float(_val(session, "client_hello_ts") or (float(ev["ts"].min()) if len(ev) else 0.0))
    flights = _flights(ev, t0)
    line_px, slant = s["small"] * 1.3, s["small"] * 1.4
    top_m = int(s["title"] * 2 + s["font"] * 5)
    room = (s["height"] if theme == "talk" else 1600) - top_m - s["font"] * 8
    ys, y = [], 0.0
    for i, f in enumerate(flights):
        if i:       # room above the arrow for its own label, and a longer gap for a longer wait
            wait = max(f["ms"] - flights[i - 1]["ms"], 0)
            y += (len(f["lines"]) + 1.2) * line_px + min(math.log1p(wait) * s["small"] * 0.6, s["small"] * 4)
        if y + slant + len(f["lines"]) * line_px > room:
            break
        ys.append(y)
    shown, flights = len(ys), flights[:len(ys)]
    span = (ys[-1] + slant) if ys else 1.0
    fig = go.Figure()
    for f, y in zip(flights, ys):
        client = f["dir"] == "c2s"
        x0, x1 = (CLIENT_X, SERVER_X) if client else (SERVER_X, CLIENT_X)
        color = c["FIN"] if f["encrypted"] else c["data"]
        fig.add_trace(go.Scatter(
            x=[x0, x1], y=[y, y + slant], mode="lines",
            line=dict(color=color, width=s["line"], dash="dash" if f["encrypted"] else "solid"),
            hovertemplate=f["hover"] + "<extra></extra>", showlegend=False))
        fig.add_annotation(x=x1, y=y + slant, ax=x0 + (x1 - x0) * 0.9, ay=y + slant * 0.9,
                           xref="x", yref="y", axref="x", ayref="y", showarrow=True, arrowhead=2,
                           arrowsize=1.2, arrowcolor=color, text="")
        fig.add_annotation(x=0.5, y=y + slant / 2, text="<br>".join(f["lines"]), showarrow=False, yanchor="bottom",
                           yshift=2, font=dict(size=s["small"], color=color), xref="x", yref="y")
        fig.add_annotation(x=x0, y=y, text=f"{f['ms']:.1f} ms \u00b7 #{f['frame']}", showarrow=False,
                           xanchor="right" if client else "left", xshift=-6 if client else 6,
                           font=dict(size=s["small"], color=c["muted"]))
    times = [f["ms"] for f in flights]
    for i, rt in enumerate(round_trips):
        y0 = _row_at(times, ys, (float(rt["start"]) - t0) * 1000.0, first=True)
        y1 = _row_at(times, ys, (float(rt["end"]) - t0) * 1000.0, first=False) + slant
        x = -0.36 - 0.04 * (i % 2)
        fig.add_trace(go.Scatter(x=[x + 0.03, x, x, x + 0.03], y=[y0, y0, y1, y1], mode="lines",
                                 line=dict(color=c["client"], width=s["line"]), showlegend=False,
                                 hoverinfo="skip"))
        fig.add_annotation(x=x - 0.01, y=(y0 + y1) / 2, text=str(rt.get("label", f"round trip {i + 1}")),
                           showarrow=False, xanchor="right", font=dict(size=s["small"], color=c["client"]))
    # Legend entries for the two line styles.
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="plaintext",
                             line=dict(color=c["data"], width=s["line"])))
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="encrypted",
                             line=dict(color=c["FIN"], width=s["line"], dash="dash")))
    pad = s["small"] * 1.5
    for x in (CLIENT_X, SERVER_X):
        fig.add_shape(type="line", x0=x, x1=x, y0=-pad, y1=span + pad, line=dict(color=c["lane"], width=s["line"] + 1))
    title, subtitle = _title(session)
    total = len(_flights(events.sort_values(["ts", "frame"], kind="stable"), t0))
    if shown < total:
        subtitle += f" \u00b7 the first {shown} of {total} frames"
    fig.update_layout(
        title=dict(text=title, subtitle=dict(text=subtitle, font=dict(size=s["font"], color=c["muted"]))),
        showlegend=True,
        xaxis=dict(range=[-0.7, 1.3], tickvals=[CLIENT_X, SERVER_X],
                   ticktext=[f"client<br>{safe(_val(session, 'client', ''))}",
                             f"server<br>{safe(_val(session, 'server', ''))}"],
                   side="top", showgrid=False, zeroline=False, fixedrange=True),
        yaxis=dict(range=[span + pad * 2, -pad * 2 - line_px * len(flights[0]["lines"] if flights else [1])],
                   zeroline=False, showticklabels=False,
                   showgrid=False, ticks="", title="time \u2193 (ms since the ClientHello by each arrow)"),
    )
    if theme != "talk":     # as tall as its rows (the y axis counts pixels), no smaller than a card
        fig.update_layout(height=int(max(460, span + pad * 4 + line_px * 2 + top_m + s["font"] * 8)), width=900)
    themes.apply(fig, theme)
    # the title, its subtitle, then the lanes' names (the top x axis) under them
    fig.update_layout(margin=dict(t=top_m, l=30))
    themes.legend_below(fig, theme)
    return fig


def _flights(ev: pd.DataFrame, t0: float) -> list[dict]:
    """The messages grouped by the frame (and direction) that carried them, in order."""
    out: list[dict] = []
    for _, e in ev.iterrows():
        frame, d = int(e["frame"]), e["dir"]
        encrypted = bool(_val(e, "encrypted", False))
        name = safe(e["kind"], 40) + (" <i>(encrypted)</i>" if encrypted else "")
        t_ms = (float(e["ts"]) - t0) * 1000.0
        hover = (f"{safe(e['kind'])} ({'encrypted' if encrypted else 'plaintext'}) \u00b7 "
                 f"{safe(_val(e, 'detail', ''), 80)} \u00b7 {_val(e, 'size', '')} bytes")
        if out and out[-1]["frame"] == frame and out[-1]["dir"] == d:
            f = out[-1]
            f["names"].append(name)
            f["encrypted"] = f["encrypted"] and encrypted
            f["hover"] += "<br>" + hover
        else:
            out.append({"frame": frame, "dir": d, "ms": t_ms, "names": [name], "encrypted": encrypted,
                        "hover": f"frame {frame} \u00b7 {t_ms:.2f} ms<br>{hover}"})
    for f in out:
        f["lines"] = _lines(f["names"])
    return out


def _lines(names: list[str], most: int = 44) -> list[str]:
    """The names on an arrow, a few to a line."""
    lines: list[tuple[str, int]] = []
    for name in names:
        plain = len(name.replace("<i>", "").replace("</i>", ""))
        if lines and lines[-1][1] + 2 + plain <= most:
            lines[-1] = (lines[-1][0] + ", " + name, lines[-1][1] + 2 + plain)
        else:
            lines.append((name, plain))
    return [text for text, _ in lines]


def layout_rows(ms: list[float]) -> list[float]:
    """Vertical positions: one row per message, but a long wait shows as a
    longer gap (log-scaled), so a ladder stays readable when several
    messages share a frame and still shows where the time went."""
    ys, prev_t, y = [], None, 0.0
    for t in ms:
        if prev_t is not None:
            gap = max(t - prev_t, 0.0)
            y += 1.0 + min(math.log1p(gap) / 1.5, 4.0)
        ys.append(y)
        prev_t = t
    return ys


def _row_at(ms: list[float], ys: list[float], t: float, first: bool) -> float:
    """The row of the first (or last) message at time ``t``."""
    hits = [y for m, y in zip(ms, ys) if abs(m - t) < 1e-6]
    if hits:
        return hits[0] if first else hits[-1]
    before = [y for m, y in zip(ms, ys) if m <= t]
    return before[-1] if before else 0.0


def _title(session) -> tuple[str, str]:
    parts = [f"TLS handshake · connection {_val(session, 'conn', '?')}"]
    version, cipher = _val(session, "version"), _val(session, "cipher")
    if version:
        parts.append(safe(version))
    if _val(session, "sni"):
        parts.append(safe(_val(session, "sni"), 60))
    sub = []
    rtts = _val(session, "rtts")
    if rtts is not None:
        sub.append(f"{int(rtts)} round trip{'s' if int(rtts) != 1 else ''}")
    hs = _val(session, "handshake_ms")
    if hs is not None:
        sub.append(f"handshake {float(hs):.1f} ms")
    if cipher:
        sub.append(safe(cipher))
    return " · ".join(parts), " · ".join(sub)


def version_comparison(tls: pd.DataFrame, theme: str = "light") -> go.Figure:
    """Handshake time and round trips, TLS 1.2 next to TLS 1.3."""
    c = themes.colors(theme)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.65, 0.35], horizontal_spacing=0.14,
                        subplot_titles=("handshake time per session (ms)", "round trips before the client may send"))
    palette = {"TLS 1.2": c["server"], "TLS 1.3": c["client"]}
    for version in ("TLS 1.2", "TLS 1.3"):
        sub = tls[tls["version"].astype(str).str.startswith(version)]
        if sub.empty:
            continue
        color = palette[version]
        hs = pd.to_numeric(sub["handshake_ms"], errors="coerce")
        hover = [f"conn {int(r['conn'])}<br>{safe(_val(r, 'sni', ''), 60)}<br>{safe(_val(r, 'cipher', ''))}"
                 for _, r in sub.iterrows()]
        fig.add_trace(go.Box(y=hs, name=version, marker_color=color, boxpoints="all", jitter=0.4,
                             pointpos=0, text=hover, hovertemplate="%{text}<br>%{y:.1f} ms<extra></extra>",
                             showlegend=False), row=1, col=1)
        # The height is the round trips themselves (the lesson: 2 vs 1), not a count of sessions.
        rt = pd.to_numeric(sub["rtts"], errors="coerce").dropna()
        counts = rt.value_counts().sort_index()
        fig.add_trace(go.Bar(x=[f"{version}" + (f"<br>({int(k)} RTT)" if len(counts) > 1 else "") for k in counts.index],
                             y=list(counts.index), marker_color=color, name=version,
                             text=[f"{int(k)} round trip{'s' * (int(k) != 1)}<br>{int(n)} session{'s' * (int(n) != 1)}"
                                   for k, n in counts.items()], textposition="inside",
                             hovertemplate="%{text}<extra></extra>"), row=1, col=2)
    fig.update_yaxes(title_text="ms", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="round trips", row=1, col=2, rangemode="tozero", dtick=1)
    fig.update_layout(title="<b>TLS 1.2 vs TLS 1.3</b>: what a handshake costs", showlegend=False, bargap=0.3)
    themes.apply(fig, theme)
    s = themes.sizes(theme)
    for ann in fig.layout.annotations:          # the subplot titles, at the theme's size
        ann.font = dict(size=s["font"], color=c["muted"])
    fig.update_layout(margin=dict(t=int(s["title"] * 2 + s["font"] * 3)))
    return fig
