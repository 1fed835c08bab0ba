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
    """Ladder of one TLS session's messages (``events``: its tls-layer rows)."""
    c, s = themes.colors(theme), themes.sizes(theme)
    ev = events.sort_values(["ts", "frame"], kind="stable").head(limit)
    t0 = _val(session, "client_hello_ts") or (float(ev["ts"].min()) if len(ev) else 0.0)
    ms = [(float(t) - float(t0)) * 1000.0 for t in ev["ts"]]
    ys = layout_rows(ms)
    span = max(ys[-1] if ys else 1.0, 1.0)
    slant = 0.35
    fig = go.Figure()
    for (_, e), y, t_ms in zip(ev.iterrows(), ys, ms):
        sender_client = e["dir"] == "c2s"
        x0, x1 = (CLIENT_X, SERVER_X) if sender_client else (SERVER_X, CLIENT_X)
        encrypted = bool(_val(e, "encrypted", False))
        color = c["FIN"] if encrypted else c["data"]
        label = safe(e["kind"], 40) + (" <i>(encrypted)</i>" if encrypted else "")
        hover = (f"frame {int(e['frame'])}<br>{safe(e['kind'])} ({'encrypted' if encrypted else 'plaintext'})"
                 f"<br>{safe(_val(e, 'detail', ''), 120)}<br>{_val(e, 'size', '')} bytes · {t_ms:.2f} ms")
        fig.add_trace(go.Scatter(
            x=[x0, x1], y=[y, y + slant], mode="lines",
            line=dict(color=color, width=s["line"], dash="dash" if encrypted else "solid"),
            hovertemplate=hover + "<extra></extra>", showlegend=False))
        fig.add_annotation(x=x1, y=y + slant, ax=x0 + (x1 - x0) * 0.9, ay=y + slant * 0.9,
                           xref="x", yref="y", axref="x", ayref="y", showarrow=True, arrowhead=2,
                           arrowsize=1.2, arrowcolor=color, text="")
        fig.add_annotation(x=0.5, y=y + slant / 2, text=label, showarrow=False,
                           yshift=int(s["small"] * 0.75) + 2, font=dict(size=s["small"], color=color), xref="x", yref="y")
        fig.add_annotation(x=x0, y=y, text=f"{t_ms:.1f} ms · #{int(e['frame'])}", showarrow=False,
                           xanchor="right" if sender_client else "left", xshift=-6 if sender_client else 6,
                           font=dict(size=s["small"], color=c["muted"]))
    for i, rt in enumerate(round_trips):
        y0 = _row_at(ms, ys, (float(rt["start"]) - float(t0)) * 1000.0, first=True)
        y1 = _row_at(ms, ys, (float(rt["end"]) - float(t0)) * 1000.0, first=False) + slant
        x = -0.2 - 0.04 * (i % 2)
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
    for x in (CLIENT_X, SERVER_X):
        fig.add_shape(type="line", x0=x, x1=x, y0=-0.5, y1=span + 1.0,
                      line=dict(color=c["lane"], width=s["line"] + 1))
    title, subtitle = _title(session)
    fig.update_layout(
        title=dict(text=title, subtitle=dict(text=subtitle, font=dict(size=s["font"], color=c["muted"]))),
        showlegend=True,
        xaxis=dict(range=[-0.7, 1.3], tickvals=[CLIENT_X, SERVER_X],
                   ticktext=[f"client<br>{safe(_val(session, 'client', ''))}",
                             f"server<br>{safe(_val(session, 'server', ''))}"],
                   side="top", showgrid=False, zeroline=False),
        yaxis=dict(autorange="reversed", zeroline=False, showticklabels=False, showgrid=False, ticks="",
                   title="time ↓ (ms since the ClientHello by each arrow)"),
    )
    if theme != "talk":
        fig.update_layout(height=max(460, min(1600, 260 + 36 * (span + 1))), width=900)
    themes.apply(fig, theme)
    # the title, its subtitle, then the lanes' names (the top x axis) under them
    fig.update_layout(margin=dict(t=int(s["title"] * 2 + s["font"] * 5), l=30))
    themes.legend_below(fig, theme)
    return fig


def layout_rows(ms: list[float]) -> list[float]:
    """Vertical positions: one row per message, but a long wait shows as a
    longer gap (log-scaled), so the ladder stays readable when several
    messages share a frame and still shows where the time went."""
    import math
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
