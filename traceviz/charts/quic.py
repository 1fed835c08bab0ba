"""QUIC charts: the ladder of one connection's packets, HTTP/3 streams over time,
and QUIC next to TCP + TLS.

The ladder is the TCP ladder's sequence diagram (``charts.sequence``): the
client lane on the left, the server lane on the right, time flowing down to
scale in milliseconds since the client's first Initial, long silences cut
and marked.  Each datagram is one arrow that crosses the dashed capture
point when it was captured; the handshake says where that point is (the
client's Initial -> the server's reply is the server's side of it, the reply
-> the client's Finished the client's), so each arrow is slanted by half of
its side's round trip.  The packets coalesced in a datagram are listed on
its arrow in the colour of their packet-number space (Initial, Handshake,
0-RTT, 1-RTT), each with its packet number and the frames that mattered
(ACK ranges among them).  A dashed arrow is a datagram nothing of which
could be decrypted.  Where labels would crowd, the handshake, the first and
last datagram of each flight and the closes are labelled first; the others
keep their hover text.  A long connection opens on its first datagrams and
scrolls.

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
from traceviz.charts.sequence import Batch, Diagram, Halves, Lane, Style
from traceviz.charts.text import fmt_ms, safe

CLIENT_X, SERVER_X = 0.0, 1.0
X_RANGE = (-0.16, 1.62)    # the lanes, then the handshake's note beside the server's
MAX_DATAGRAMS = 500        # drawn (each labelled arrow is an annotation a browser has to move while panning)
PACKETS = ("Initial", "0-RTT", "Handshake", "1-RTT", "Retry", "VN", "gQUIC", "opaque", "unparsed")
# Packet-number spaces drawn in palette colours the other charts already use for their meaning:
# Initial is the opening (SYN's blue), Handshake the TLS purple, 1-RTT application data's green.
SPACE_COLOR = {"Initial": "SYN", "Handshake": "tls", "0-RTT": "dup-ack", "1-RTT": "data",
               "Retry": "RST", "VN": "RST"}
SHOWN = ("CRYPTO", "STREAM", "ACK", "HANDSHAKE_DONE", "NEW_CONNECTION_ID", "RETIRE_CONNECTION_ID",
         "CONNECTION_CLOSE", "RESET_STREAM", "STOP_SENDING", "NEW_TOKEN", "PATH_CHALLENGE", "PATH_RESPONSE",
         "PING", "DATAGRAM")
# frames a reader looks for first: the handshake's end, closes and resets
MILESTONES = {"HANDSHAKE_DONE", "CONNECTION_CLOSE", "RESET_STREAM", "STOP_SENDING", "NEW_TOKEN",
              "PATH_CHALLENGE", "PATH_RESPONSE"}


def _val(row: Mapping[str, Any] | pd.Series, key: str, default=None):
    try:
        v = row[key]
    except (KeyError, IndexError):
        return default
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return default
    return v


def _datagrams(events: pd.DataFrame, limit: int) -> tuple[list[dict], int]:
    """One entry per datagram (a frame): its direction, time and packets, each with its frames;
    the first ``limit`` of them, and how many there were."""
    ev = events[events["layer"] == "quic"].sort_values(["ts", "frame"], kind="stable")
    out: dict[int, dict] = {}
    for e in ev.to_dict("records"):
        frame = int(e["frame"])
        d = out.get(frame)
        if d is None:
            d = out[frame] = {"frame": frame, "ts": float(e["ts"]), "dir": e["dir"], "packets": []}
        if e["kind"] in PACKETS:
            d["packets"].append({"kind": e["kind"], "pn": _val(e, "pn"), "size": _val(e, "size"),
                                 "detail": _val(e, "detail", ""), "frames": []})
        elif d["packets"] and e["kind"] in SHOWN:
            d["packets"][-1]["frames"].append((e["kind"], _val(e, "detail", "")))
    grams = list(out.values())
    return grams[:limit], len(grams)


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
           limit: int = MAX_DATAGRAMS) -> go.Figure:
    """The ladder of one QUIC connection (``connection``: its ``quic`` row; ``events``: its events),
    the first ``limit`` datagrams of it (a note says so)."""
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    grams, total = _datagrams(events, limit)
    fig = go.Figure()
    themes.apply(fig, name)
    fig.update_layout(width=s["width"], height=s["height"])
    title = _title(connection)
    if not grams:
        fig.update_layout(title=dict(text=title + ": no packets"))
        return fig
    t0 = float(_val(connection, "handshake_start") or grams[0]["ts"])
    halves = Halves.of(*_halves(connection))
    styles = {k: Style(k, c[SPACE_COLOR[k]], s["line"]) for k in ("Initial", "Handshake", "0-RTT", "1-RTT")}
    styles.update({"Retry": Style("Retry / Version Negotiation", c["RST"], s["line"]),
                   "other": Style("other", c["muted"], s["line"]),
                   "sealed": Style("not decrypted", c["muted"], s["line"], "dash")})
    arrows = []
    for i, g in enumerate(grams):
        t = (g["ts"] - t0) * 1000.0
        flight = [x["dir"] for x in grams[max(i - 1, 0):i + 2]]
        edge = i == 0 or i == len(grams) - 1 or flight[0] != g["dir"] or flight[-1] != g["dir"]
        arrows.append(halves.arrow(
            g["dir"], t, style=_style(g), text=" \u00b7 ".join(_packet_text(p, c) for p in g["packets"]) or "?",
            sep=" \u00b7 ", rank=_rank(g, edge), tag=f"#{g['frame']}", hover=_hover(g, t),
            color=c["text"], data=g))
    lanes = [Lane(x, f"<b>{who.title()}</b><br>{safe(_val(connection, who, ''))}", c[who])
             for x, who in ((CLIENT_X, "client"), (SERVER_X, "server"))]
    end = _val(connection, "handshake_end")
    keep = [(0.0, (float(end) - t0) * 1000.0)] if end is not None else []
    d = Diagram(name, lanes, arrows, styles, x_range=X_RANGE, capture_x=halves.capture_x, keep=keep,
                axis_title="ms since the client's first Initial",
                caption="capture point" + ("" if halves.measured else " (position unknown)"))
    batch = Batch(fig)
    d.draw_frame(batch)
    _draw_handshake(batch, d, connection, t0, halves)
    d.draw_arrows(batch)
    d.draw_labels(batch)
    d.draw_hover(batch, "datagrams")
    batch.flush()
    facts = _facts(connection)
    facts.append(f"{total} datagram{'s' * (total != 1)}" + (f", showing the first {limit}" if total > limit else ""))
    marks = [("handshake", arrows[0]),
             ("first request", next((a for a in arrows if a.data["dir"] == "c2s" and _has(a.data, "STREAM")), None)),
             ("close", next((a for a in arrows if _has(a.data, "CONNECTION_CLOSE")), None))]
    d.layout(fig, title, facts, [(n, a) for n, a in marks if a is not None], last="last datagram")
    return fig


def _halves(connection) -> tuple[float | None, float | None]:
    """The handshake's round trip split at the capture point, in seconds: the client's Initial ->
    the server's reply is the server's side, the reply -> the client's Finished the client's.
    Only for a one-round-trip handshake (a Retry or Version Negotiation adds one)."""
    reply, whole = _val(connection, "initial_rtt_ms"), _val(connection, "handshake_ms")
    extra = any(_val(connection, k) for k in ("retry", "version_negotiation", "hello_retry"))
    if reply is None or whole is None or extra or whole < reply:
        return None, None
    return float(reply) / 1000.0, (float(whole) - float(reply)) / 1000.0


def _style(g: dict) -> str:
    if g["packets"] and all(p["pn"] is None for p in g["packets"]):
        return "sealed"
    first = g["packets"][0]["kind"] if g["packets"] else "other"
    return {"VN": "Retry"}.get(first, first) if first in SPACE_COLOR else "other"


def _has(g: dict, frame: str) -> bool:
    return any(k == frame for p in g["packets"] for k, _ in p["frames"])


def _rank(g: dict, edge: bool) -> int:
    """The handshake, closes and resets first, then the first and last datagram of each flight,
    then acknowledgements, then the rest of the data."""
    kinds = {p["kind"] for p in g["packets"]}
    frames = {k for p in g["packets"] for k, _ in p["frames"]}
    if kinds - {"1-RTT"} or frames & MILESTONES:
        return 0
    if edge:
        return 1
    return 2 if "ACK" in frames else 3


def _hover(g: dict, t: float) -> str:
    return f"<b>frame {g['frame']}</b>  +{t:.3f} ms<br>" + "<br>".join(
        f"{safe(p['kind'])}: {safe(p['detail'], 140)}" for p in g["packets"])


def _draw_handshake(batch: Batch, d: Diagram, connection, t0: float, halves: Halves) -> None:
    """The handshake's span beside the server lane: its round trips, its time, and (when the
    capture point's place is known) the server's and the client's side of it, shaded."""
    c = d.c
    start, end = _val(connection, "handshake_start"), _val(connection, "handshake_end")
    if start is None or end is None:
        return
    y0, y1 = d.at((float(start) - t0) * 1000.0), d.at((float(end) - t0) * 1000.0)
    rtts = _val(connection, "rtts")
    lines = [f"<b>handshake {fmt_ms(float(end) - float(start))}</b>"]
    if rtts is not None:
        lines[0] += f"<b>, {int(rtts)} round trip{'s' * (int(rtts) != 1)}</b>"
    sh, ch = _halves(connection)
    if halves.measured:
        y_reply = d.at((float(start) - t0) * 1000.0 + sh * 1000.0)
        batch.add_shape(type="rect", x0=halves.capture_x, x1=SERVER_X, y0=y0, y1=y_reply,
                        fillcolor=c["band_server"], line=dict(width=0), layer="below")
        batch.add_shape(type="rect", x0=CLIENT_X, x1=halves.capture_x, y0=y_reply, y1=y1,
                        fillcolor=c["band_client"], line=dict(width=0), layer="below")
        lines += [f"<span style='color:{c['server']}'><b>server side {fmt_ms(sh)}</b></span>",
                  f"<span style='color:{c['muted']}'>Initial \u2192 server's reply</span>",
                  f"<span style='color:{c['client']}'><b>client side {fmt_ms(ch)}</b></span>",
                  f"<span style='color:{c['muted']}'>reply \u2192 client's Finished</span>"]
    d.bracket(batch, SERVER_X + 0.13, y0, y1, lines)


def _title(connection) -> str:
    return (f"<b>QUIC connection {safe(_val(connection, 'conn', '?'))}</b>: {safe(_val(connection, 'client', '?'))}"
            f" \u2192 {safe(_val(connection, 'server', '?'))}")


def _facts(connection) -> list[str]:
    out = [safe(_val(connection, k), 60) for k in ("version_name", "sni") if _val(connection, k)]
    if _val(connection, "alpn"):
        out.append("ALPN " + safe(_val(connection, "alpn"), 20))
    if _val(connection, "handshake_ms") is not None:
        rtts = _val(connection, "rtts")
        out.append(f"{int(rtts)}-RTT " * (rtts is not None) + f"handshake {fmt_ms(float(_val(connection, 'handshake_ms')) / 1000)}")
    out.append("decrypted" if _val(connection, "decrypted") else "Initial packets only (no keys)")
    for key, text in (("retry", "Retry"), ("version_negotiation", "Version Negotiation"), ("zero_rtt", "0-RTT")):
        if _val(connection, key):
            out.append(text)
    if _val(connection, "close"):
        out.append("closed: " + safe(_val(connection, "close"), 60))
    return out


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
    note = f"{len(rq)} stream{'s' * (len(rq) != 1)}" + (f" \u00b7 at most {int(most)} in flight at once" if most else "")
    fig.update_layout(
        title=dict(text="<b>HTTP/3 streams over time</b>" + (f" \u00b7 connection {int(rq['conn'].iloc[0])}" if len(rq) else ""),
                   subtitle=dict(text=note, font=dict(size=s["font"], color=c["muted"]))),
        xaxis=dict(title="ms since the first request", rangemode="tozero"),
        yaxis=dict(tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed", showgrid=False),
    )
    themes.apply(fig, theme)
    if theme != "talk":
        fig.update_layout(height=max(360, min(2000, 200 + 28 * len(rq))), width=1100)
    themes.legend_below(fig, theme)
    fig.update_layout(margin=dict(t=int(s["title"] * 1.7 + s["font"] * 3)))
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
