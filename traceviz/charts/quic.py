"""QUIC charts: the ladder of one connection's packets, HTTP/3 streams over time,
and QUIC next to TCP + TLS.

The ladder puts the client lane on the left and the server lane on the
right, time flowing down.  Each datagram is one arrow; the packets coalesced
in it are listed on the arrow in the colour of their packet-number space
(Initial, Handshake, 0-RTT, 1-RTT), each with its packet number and the
frames that mattered (ACK ranges among them).  A dashed arrow is a datagram
nothing of which could be decrypted.  The handshake's span is bracketed beside
the client lane with its round trips and duration.

The stream chart draws one line per HTTP/3 request stream from the request
to the response's last byte, with a dot for every STREAM frame of the
response where it arrived: streams that share the connection show as dots
interleaved in time.

Charts only draw: every fact comes computed in the ``quic``, ``events`` and
``requests`` tables.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import fmt_ms, safe
from traceviz.charts.tls import layout_rows

CLIENT_X, SERVER_X = 0.0, 1.0
PACKETS = ("Initial", "0-RTT", "Handshake", "1-RTT", "Retry", "VN", "gQUIC", "opaque", "unparsed")
# Packet-number spaces drawn in palette colours the other charts already use for their meaning:
# Initial is the opening (SYN's blue), Handshake the TLS purple, 1-RTT application data's green.
SPACE_COLOR = {"Initial": "SYN", "Handshake": "tls", "0-RTT": "dup-ack", "1-RTT": "data",
               "Retry": "RST", "VN": "RST"}
SHOWN = ("CRYPTO", "STREAM", "ACK", "HANDSHAKE_DONE", "NEW_CONNECTION_ID", "RETIRE_CONNECTION_ID",
         "CONNECTION_CLOSE", "RESET_STREAM", "STOP_SENDING", "NEW_TOKEN", "PATH_CHALLENGE", "PATH_RESPONSE",
         "PING", "DATAGRAM")


def _val(row: Mapping[str, Any] | pd.Series, key: str, default=None):
    try:
        v = row[key]
    except (KeyError, IndexError):
        return default
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return default
    return v


def _datagrams(events: pd.DataFrame, limit: int) -> list[dict]:
    """One entry per datagram (a frame): its direction, time and packets, each with its frames."""
    ev = events[events["layer"] == "quic"].sort_values(["ts", "frame"], kind="stable")
    out: dict[int, dict] = {}
    for _, e in ev.iterrows():
        frame = int(e["frame"])
        d = out.get(frame)
        if d is None:
            if len(out) >= limit:
                break
            d = out[frame] = {"frame": frame, "ts": float(e["ts"]), "dir": e["dir"], "packets": []}
        if e["kind"] in PACKETS:
            d["packets"].append({"kind": e["kind"], "pn": _val(e, "pn"), "size": _val(e, "size"),
                                 "detail": _val(e, "detail", ""), "frames": []})
        elif d["packets"] and e["kind"] in SHOWN:
            d["packets"][-1]["frames"].append((e["kind"], _val(e, "detail", "")))
    return list(out.values())


def _frames_text(frames: list) -> str:
    names: list[str] = []
    for kind, detail in frames:
        if kind == "ACK" and detail:
            acked = str(detail).split("acked ", 1)[-1]
            names.append(f"ACK {safe(acked, 24)}")
        elif not names or names[-1] != kind:
            names.append(kind)
    return ", ".join(names)


def _packet_text(p: dict, c: dict) -> str:
    color = c[SPACE_COLOR.get(p["kind"], "muted")]
    head = safe(p["kind"]) + (f" #{int(p['pn'])}" if p["pn"] is not None else "")
    body = _frames_text(p["frames"])
    if p["pn"] is None and p["kind"] in ("Initial", "0-RTT", "Handshake", "1-RTT"):
        body = "encrypted"
    return f"<span style='color:{color}'><b>{head}</b></span>" + (f" {body}" if body else "")


def ladder(events: pd.DataFrame, connection: Mapping[str, Any] | pd.Series, theme: str = "light",
           limit: int = 80) -> go.Figure:
    """The ladder of one QUIC connection (``connection``: its ``quic`` row; ``events``: its events)."""
    c, s = themes.colors(theme), themes.sizes(theme)
    grams = _datagrams(events, limit)
    t0 = _val(connection, "handshake_start") or (grams[0]["ts"] if grams else 0.0)
    ms = [(g["ts"] - float(t0)) * 1000.0 for g in grams]
    ys = layout_rows(ms)
    span = max(ys[-1] if ys else 1.0, 1.0)
    slant = 0.35
    fig = go.Figure()
    for g, y, t_ms in zip(grams, ys, ms):
        client = g["dir"] == "c2s"
        x0, x1 = (CLIENT_X, SERVER_X) if client else (SERVER_X, CLIENT_X)
        first = g["packets"][0]["kind"] if g["packets"] else "opaque"
        color = c[SPACE_COLOR.get(first, "muted")]
        sealed = all(p["pn"] is None for p in g["packets"])
        label = " · ".join(_packet_text(p, c) for p in g["packets"]) or "?"
        hover = f"frame {g['frame']} · {t_ms:.2f} ms<br>" + "<br>".join(
            f"{safe(p['kind'])}: {safe(p['detail'], 140)}" for p in g["packets"])
        fig.add_trace(go.Scatter(x=[x0, x1], y=[y, y + slant], mode="lines", showlegend=False,
                                 line=dict(color=color, width=s["line"], dash="dash" if sealed else "solid"),
                                 hovertemplate=hover + "<extra></extra>"))
        fig.add_annotation(x=x1, y=y + slant, ax=x0 + (x1 - x0) * 0.9, ay=y + slant * 0.9, xref="x", yref="y",
                           axref="x", ayref="y", showarrow=True, arrowhead=2, arrowsize=1.2, arrowcolor=color,
                           text="")
        fig.add_annotation(x=0.5, y=y + slant / 2, text=label, showarrow=False, yshift=int(s["small"] * 0.75) + 2,
                           font=dict(size=s["small"], color=c["text"]))
        fig.add_annotation(x=x0, y=y, text=f"{t_ms:.1f} ms · #{g['frame']}", showarrow=False,
                           xanchor="right" if client else "left", xshift=-6 if client else 6,
                           font=dict(size=max(s["small"] - 2, 9), color=c["muted"]))
    _handshake_bracket(fig, connection, ms, ys, slant, t0, c, s)
    for kind in ("Initial", "Handshake", "0-RTT", "1-RTT"):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=kind,
                                 line=dict(color=c[SPACE_COLOR[kind]], width=s["line"])))
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="not decrypted",
                             line=dict(color=c["muted"], width=s["line"], dash="dash")))
    for x in (CLIENT_X, SERVER_X):
        fig.add_shape(type="line", x0=x, x1=x, y0=-0.5, y1=span + 1.0, line=dict(color=c["lane"], width=s["line"] + 1))
    title, subtitle = _title(connection)
    shown = f" (first {limit} datagrams)" if len(grams) >= limit else ""
    fig.add_annotation(text=subtitle + shown, xref="paper", yref="paper", x=0, y=1.0, yshift=78, xanchor="left",
                       yanchor="bottom", showarrow=False, align="left", font=dict(size=s["small"], color=c["muted"]))
    fig.update_layout(
        title=title, showlegend=True,
        xaxis=dict(range=[-0.75, 1.35], tickvals=[CLIENT_X, SERVER_X], side="top", showgrid=False, zeroline=False,
                   ticktext=[f"client<br>{safe(_val(connection, 'client', ''))}",
                             f"server<br>{safe(_val(connection, 'server', ''))}"]),
        yaxis=dict(autorange="reversed", zeroline=False, showticklabels=False, showgrid=False, ticks="",
                   title="time ↓ (ms since the client's first Initial, by each arrow)"),
        legend=dict(orientation="h", y=-0.06),
    )
    themes.apply(fig, theme)
    fig.update_layout(margin=dict(t=150, l=30))
    if theme != "talk":
        fig.update_layout(height=max(460, min(2400, 260 + 40 * (span + 1))), width=1000)
    return fig


def _handshake_bracket(fig, connection, ms, ys, slant, t0, c, s) -> None:
    start, end = _val(connection, "handshake_start"), _val(connection, "handshake_end")
    if start is None or end is None or not ys:
        return
    y0 = _row_near(ms, ys, (float(start) - float(t0)) * 1000.0)
    y1 = _row_near(ms, ys, (float(end) - float(t0)) * 1000.0) + slant
    x = -0.22
    fig.add_trace(go.Scatter(x=[x + 0.03, x, x, x + 0.03], y=[y0, y0, y1, y1], mode="lines", hoverinfo="skip",
                             line=dict(color=c["client"], width=s["line"]), showlegend=False))
    rtts = _val(connection, "rtts")
    text = "handshake"
    if rtts is not None:
        text += f"<br>{int(rtts)} round trip{'s' * (int(rtts) != 1)}"
    text += f"<br>{fmt_ms(float(end) - float(start))}"
    fig.add_annotation(x=x - 0.01, y=(y0 + y1) / 2, text=text, showarrow=False, xanchor="right",
                       font=dict(size=s["small"], color=c["client"]))


def _row_near(ms: list[float], ys: list[float], t: float) -> float:
    before = [y for m, y in zip(ms, ys) if m <= t + 1e-6]
    return before[-1] if before else ys[0]


def _title(connection) -> tuple[str, str]:
    parts = [f"QUIC · connection {_val(connection, 'conn', '?')}"]
    for key in ("version_name", "sni"):
        if _val(connection, key):
            parts.append(safe(_val(connection, key), 60))
    sub = []
    if _val(connection, "alpn"):
        sub.append("ALPN " + safe(_val(connection, "alpn"), 20))
    if _val(connection, "rtts") is not None:
        sub.append(f"{int(_val(connection, 'rtts'))} RTT handshake")
    if _val(connection, "handshake_ms") is not None:
        sub.append(f"{float(_val(connection, 'handshake_ms')):.1f} ms")
    sub.append("decrypted" if _val(connection, "decrypted") else "Initial packets only (no keys)")
    for key, text in (("retry", "Retry"), ("version_negotiation", "Version Negotiation"), ("zero_rtt", "0-RTT")):
        if _val(connection, key):
            sub.append(text)
    return " · ".join(parts), " · ".join(sub)


def streams(requests: pd.DataFrame, events: pd.DataFrame, theme: str = "light", limit: int = 60,
            most: int | None = None) -> go.Figure:
    """HTTP/3 request streams over time: request → last response byte, a dot per STREAM frame received.
    ``most``: the ``quic`` row's ``max_concurrent_requests``, said in the subtitle."""
    c, s = themes.colors(theme), themes.sizes(theme)
    rq = requests.sort_values(["start", "stream"], kind="stable").head(limit).reset_index(drop=True)
    t0 = float(rq["start"].min()) if len(rq) else 0.0
    frames = events[(events["layer"] == "quic") & (events["kind"] == "STREAM") & (events["dir"] == "s2c")]
    fig = go.Figure()
    labels = []
    for i, r in rq.iterrows():
        sid = int(r["stream"])
        label = f"stream {sid} · {safe(_val(r, 'method', ''))} {safe(_short(_val(r, 'url', '')), 40)}"
        labels.append(label)
        start = (float(r["start"]) - t0) * 1000.0
        first = start + float(_val(r, "ttfb", 0.0) or 0.0) * 1000.0
        end = (float(_val(r, "end", r["start"])) - t0) * 1000.0
        hover = (f"{label}<br>status {_val(r, 'status', '?')} · {_val(r, 'resp_bytes', '?')} bytes"
                 f"<br>first byte {fmt_ms((first - start) / 1000.0)} · done {fmt_ms((end - start) / 1000.0)}")
        fig.add_trace(go.Scatter(x=[start, first], y=[i, i], mode="lines", showlegend=i == 0, name="waiting",
                                 line=dict(color=c["wait"], width=s["line"] * 3), hovertemplate=hover + "<extra></extra>"))
        fig.add_trace(go.Scatter(x=[first, end], y=[i, i], mode="lines", showlegend=i == 0, name="receiving",
                                 line=dict(color=c["receive"], width=s["line"] * 3), hovertemplate=hover + "<extra></extra>"))
        mine = frames[frames["stream"] == sid]
        if len(mine):
            sizes = pd.to_numeric(mine["size"], errors="coerce").fillna(0)
            fig.add_trace(go.Scatter(
                x=(mine["ts"].astype(float) - t0) * 1000.0, y=[i] * len(mine), mode="markers",
                name="STREAM frame", showlegend=i == 0,
                marker=dict(color=c["server"], size=[max(s["marker"] * 0.5, min(s["marker"] * 1.6, 4 + b / 400)) for b in sizes],
                            line=dict(color=c["background"], width=1)),
                text=[f"frame {int(f)} · {int(b)} bytes" for f, b in zip(mine["frame"], sizes)],
                hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(
        title="HTTP/3 streams over time" + (f" · connection {int(rq['conn'].iloc[0])}" if len(rq) else ""),
        xaxis=dict(title="ms since the first request", rangemode="tozero"),
        yaxis=dict(tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed", showgrid=False),
        legend=dict(orientation="h", y=-0.12),
    )
    note = f"{len(rq)} stream{'s' * (len(rq) != 1)}" + (f" · at most {int(most)} in flight at once" if most else "")
    fig.add_annotation(text=note,
                       xref="paper", yref="paper", x=0, y=1.0, yshift=30, xanchor="left", showarrow=False,
                       font=dict(size=s["small"], color=c["muted"]))
    themes.apply(fig, theme)
    if theme != "talk":
        fig.update_layout(height=max(360, min(2000, 200 + 28 * len(rq))), width=1100)
    return fig


def _short(url: str) -> str:
    rest = str(url).split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else rest


def comparison(rows: pd.DataFrame, theme: str = "light") -> go.Figure:
    """Two captures side by side: time to the first request byte and to the last response byte,
    in ms, with the round trips each took written on its bar (``rows``: ``compare``'s table)."""
    c = themes.colors(theme)
    fig = go.Figure()
    palette = [c["client"], c["server"]]
    measures = [("first_request_ms", "first request byte sent"), ("last_byte_ms", "last response byte")]
    for i, (_, r) in enumerate(rows.iterrows()):
        ys = [float(_val(r, k, float("nan"))) for k, _ in measures]
        rtts = [_val(r, "first_request_rtts"), _val(r, "last_byte_rtts")]
        text = [f"{y:.0f} ms" + (f"<br>≈ {float(n):.1f} RTT" if n is not None else "") for y, n in zip(ys, rtts)]
        name = safe(_val(r, "label", f"capture {i + 1}"), 60)
        if _val(r, "handshake_rtts") is not None:
            over = "QUIC" if _val(r, "transport") == "quic" else "TCP + TLS"
            name += f" ({safe(_val(r, 'protocol', ''))} over {over}: {int(_val(r, 'handshake_rtts'))}-RTT handshake)"
        fig.add_trace(go.Bar(x=[m for _, m in measures], y=ys, name=name,
                             marker_color=palette[i % 2], text=text, textposition="outside",
                             hovertemplate="%{x}: %{y:.1f} ms<extra>%{fullData.name}</extra>"))
    fig.update_layout(title="How long until the first request left, and until the last byte arrived",
                      barmode="group", yaxis=dict(title="ms since the connection's first packet", rangemode="tozero"),
                      legend=dict(orientation="h", y=-0.15), bargap=0.35)
    themes.apply(fig, theme)
    return fig
