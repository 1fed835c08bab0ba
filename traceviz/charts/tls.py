"""TLS charts: the handshake ladder of one session, and TLS 1.2 vs 1.3.

The ladder is the TCP ladder's sequence diagram (``charts.sequence``): the
client lane on the left, the server lane on the right, time flowing down to
scale in milliseconds since the ClientHello, long silences cut and marked.
Each frame's TLS messages are one arrow, their names listed on it, so a TLS
1.3 server flight (ServerHello ... Finished) reads as the one flight it is:
solid for what crossed the wire in plaintext, dashed for what was
encrypted.  Given the TCP connection (its handshake's halves), each arrow
crosses the dashed capture point when it was captured, slanted by half of
its side's round trip.  The round trips the handshake needed are bracketed
beside the server lane, each with its number and duration, so "TLS 1.2
costs two round trips, TLS 1.3 one" can be seen rather than taken on trust.

Charts only draw: the round trips arrive computed (the ``tls`` table's ``round_trips``).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from traceviz.charts import theme as themes
from traceviz.charts.sequence import Batch, Diagram, Halves, Lane, Style
from traceviz.charts.text import fmt_ms, safe

CLIENT_X, SERVER_X = 0.0, 1.0
X_RANGE = (-0.16, 1.52)
ENCRYPTED = "encrypted"
LIMIT = 200                # messages drawn
LATER = {"ApplicationData": 2, "NewSessionTicket": 1, "KeyUpdate": 1}   # labelled after the handshake's


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
                     limit: int = LIMIT, connections: pd.DataFrame | None = None) -> go.Figure:
    """Ladder of one TLS session's messages (``events``: its tls-layer rows; ``round_trips``:
    ``start``, ``end`` and ``label`` of each; ``connections``: the table its TCP connection is in,
    for where the capture point sits)."""
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    ordered = events.sort_values(["ts", "frame"], kind="stable")
    fig = go.Figure()
    themes.apply(fig, name)
    fig.update_layout(width=s["width"], height=s["height"])
    title, facts = _title(session)
    if not len(ordered):
        fig.update_layout(title=dict(text=title + ": no TLS messages"))
        return fig
    t0 = float(_val(session, "client_hello_ts") or ordered["ts"].min())
    flights = _flights(ordered.head(limit), t0)
    total = len(_flights(ordered, t0)) if len(ordered) > limit else len(flights)
    halves = Halves.of(*_halves(connections, _val(session, "conn")))
    styles = {"plaintext": Style("plaintext", c["data"], s["line"]),
              ENCRYPTED: Style("encrypted", c["FIN"], s["line"], "dash")}
    arrows = [halves.arrow(f["dir"], f["ms"], style=ENCRYPTED if f["encrypted"] else "plaintext",
                           text=", ".join(f["names"]), sep=", ", rank=min(LATER.get(k, 0) for k in f["kinds"]),
                           tag=f"#{f['frame']}", hover=f["hover"], data=f) for f in flights]
    lanes = [Lane(x, f"<b>{who.title()}</b><br>{safe(_val(session, who, ''))}", c[who])
             for x, who in ((CLIENT_X, "client"), (SERVER_X, "server"))]
    trips = [((float(rt["start"]) - t0) * 1000.0, (float(rt["end"]) - t0) * 1000.0,
              str(rt.get("label", f"round trip {i + 1}"))) for i, rt in enumerate(round_trips)]
    keep = [(min(a for a, _, _ in trips), max(b for _, b, _ in trips))] if trips else []
    d = Diagram(name, lanes, arrows, styles, x_range=X_RANGE, capture_x=halves.capture_x, keep=keep,
                axis_title="ms since the ClientHello",
                caption="capture point" + ("" if halves.measured else " (position unknown)"))
    batch = Batch(fig)
    d.draw_frame(batch)
    for i, (a, b, text) in enumerate(trips):     # side by side when one ends where the next begins
        d.bracket(batch, SERVER_X + 0.13 + 0.05 * (i % 2), d.at(a), d.at(b), text.split("<br>"), c["client"])
    d.draw_arrows(batch, hover_lines=True)
    d.draw_labels(batch)
    batch.flush()
    facts.append(f"{total} frame{'s' * (total != 1)}" + (f", showing the first {len(flights)}" if total > len(flights) else ""))
    marks = [("handshake", arrows[0]),
             ("application data", next((a for a in arrows if "ApplicationData" in a.data["kinds"]), None)),
             ("alert", next((a for a in arrows if "Alert" in a.data["kinds"]), None))]
    d.layout(fig, title, facts, [(n, a) for n, a in marks if a is not None], last="last message")
    return fig


def _halves(connections: pd.DataFrame | None, conn) -> tuple[float | None, float | None]:
    """The TCP handshake's round trip split at the capture point (seconds), when known."""
    if connections is None or conn is None or not len(connections):
        return None, None
    row = connections[connections["conn"] == conn]
    if not len(row):
        return None, None
    return _val(row.iloc[0], "server_half"), _val(row.iloc[0], "client_half")


def _flights(ev: pd.DataFrame, t0: float) -> list[dict]:
    """The messages grouped by the frame (and direction) that carried them, in order.  In a
    flight partly in plaintext, the encrypted messages say so (a dashed arrow says it for all)."""
    out: list[dict] = []
    for _, e in ev.iterrows():
        frame, d = int(e["frame"]), e["dir"]
        encrypted = bool(_val(e, "encrypted", False))
        t_ms = (float(e["ts"]) - t0) * 1000.0
        hover = (f"{safe(e['kind'])} ({'encrypted' if encrypted else 'plaintext'}) \u00b7 "
                 f"{safe(_val(e, 'detail', ''), 80)} \u00b7 {_val(e, 'size', '')} bytes")
        if out and out[-1]["frame"] == frame and out[-1]["dir"] == d:
            f = out[-1]
            f["hover"] += "<br>" + hover
        else:
            f = {"frame": frame, "dir": d, "ms": t_ms, "kinds": [], "sealed": [],
                 "hover": f"<b>frame {frame}</b>  +{t_ms:.3f} ms<br>{hover}"}
            out.append(f)
        f["kinds"].append(str(e["kind"]))
        f["sealed"].append(encrypted)
    for f in out:
        f["encrypted"] = all(f["sealed"])
        f["names"] = [safe(k, 40) + (" <i>(encrypted)</i>" if sealed and not f["encrypted"] else "")
                      for k, sealed in zip(f["kinds"], f["sealed"])]
    return out


def _title(session) -> tuple[str, list[str]]:
    parts = [f"<b>TLS handshake \u00b7 connection {safe(_val(session, 'conn', '?'))}</b>"]
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
        sub.append(f"handshake {fmt_ms(float(hs) / 1000)}")
    if cipher:
        sub.append(safe(cipher))
    return " \u00b7 ".join(parts), sub


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
