"""The ladder (sequence) diagram of one TCP connection.

Client lane on the left, server lane on the right, time flowing down in
milliseconds since the connection's first packet.  Each packet is an arrow
from its sender's lane to its receiver's, labelled the way Wireshark's info
column would (``SYN seq=0 win=64240 mss=1460``, ``PSH,ACK seq=1 ack=1
len=517``) with the frame number beside its start, so a reader can jump to
the same frame in Wireshark.

A capture is taken at one point on the path, and that point is drawn as a
dashed line between the lanes: each arrow crosses it at the exact time the
packet was captured.  The handshake says how far the point is from each end
(SYN -> SYN-ACK is the round trip on the server's side of it, SYN-ACK -> ACK
the client's side), so the line sits in proportion and each arrow is slanted
by half of its side's round trip: a round trip reads as one, and where the
time went is visible at a glance.  Without a handshake the slant is a small
fixed one and the line sits in the middle.

Time is drawn to scale.  A long silence (a 1 s wait for a retransmitted SYN)
is cut short and marked, but never inside the handshake the chart
annotates.  The figure keeps the theme's size: a long connection opens on
its first packets and the rest is a drag away, with buttons that jump to
the handshake, the first data and the close.  A SYN that got no answer
(lost on the path, or dropped by the server) and a SYN-ACK that never
reached the client stop short of the far lane with a cross.  Labels are
placed where they cross neither another label nor another arrow, the
handshake, closes and analysis events first; what does not fit is in the
hover text.  The layout is the sequence diagram's (``charts.sequence``),
shared with the TLS, QUIC and proxy ladders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.sequence import Batch, Diagram, Halves, Lane, Style
from traceviz.charts.text import fmt_ms, safe
from traceviz.model import TCP_FLAG_NAMES
from traceviz.units import utc

CLIENT_X, SERVER_X = 0.0, 1.0
X_RANGE = (-0.16, 1.52)
MAX_PACKETS = 500          # drawn (each labelled arrow is an annotation a browser has to move while panning)

# Drawing order, legend order and style of each kind of segment.
KINDS = ("SYN", "data", "ACK", "FIN", "RST", "retransmission", "dup-ack", "out-of-order", "zero-window")
KIND_LABEL = {
    "SYN": "SYN / SYN-ACK", "data": "data", "ACK": "ACK", "FIN": "FIN", "RST": "RST",
    "retransmission": "retransmission", "dup-ack": "duplicate ACK",
    "out-of-order": "out-of-order", "zero-window": "zero window",
}
KIND_DASH = {"retransmission": "dash", "dup-ack": "dot", "out-of-order": "dashdot", "zero-window": "dash"}
ALWAYS_LABEL = {"SYN", "FIN", "RST", "retransmission", "dup-ack", "out-of-order", "zero-window"}


@dataclass
class Handshake:
    """The handshake packets of a ``connections`` row (frames, None if not seen) and the
    two halves of its round trip at the capture point (seconds, None if unknown)."""

    syn_frame: int | None = None
    synack_frame: int | None = None
    ack_frame: int | None = None
    server_half: float | None = None
    client_half: float | None = None

    @classmethod
    def of(cls, connection) -> "Handshake":
        return cls(*(_num(_get(connection, k)) for k in ("syn_frame", "synack_frame", "ack_frame")),
                   *(_seconds(_get(connection, k)) for k in ("server_half", "client_half")))

    @property
    def frames(self) -> set[int]:
        return {f for f in (self.syn_frame, self.synack_frame, self.ack_frame) if f is not None}


def ladder(packets: pd.DataFrame, connection: pd.Series | Mapping[str, Any], theme: str = "light",
           max_packets: int = MAX_PACKETS, events: pd.DataFrame | None = None) -> go.Figure:
    """The ladder diagram of ``connection`` (a ``connections`` row) drawn from ``packets``.

    ``packets`` may hold the whole capture; only the connection's rows are
    used, the first ``max_packets`` of them (a note says so).  ``events``
    (the timeline's events table), when given, marks retransmissions,
    duplicate ACKs, out-of-order segments and zero windows.
    """
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    conn = _get(connection, "conn")
    pk = packets
    if conn is not None and "conn" in pk.columns:
        pk = pk[pk["conn"] == conn]
    pk = pk.sort_values("frame", kind="stable")
    total = len(pk)
    pk = pk.head(max_packets)
    fig = go.Figure()
    themes.apply(fig, name)
    fig.update_layout(width=s["width"], height=s["height"])
    if total == 0:
        fig.update_layout(title=dict(text=f"TCP connection {safe(conn)}: no packets"))
        return fig

    t0 = float(pk["ts"].iloc[0])
    dirs = _directions(pk, connection)
    hs = Handshake.of(connection)
    kinds = _kinds(pk, dirs, events, conn)
    times = [(float(t) - t0) * 1000.0 for t in pk["ts"]]
    frames = [int(f) for f in pk["frame"]]
    halves = Halves.of(hs.server_half, hs.client_half)
    lost = _lost(connection, hs, pk, dirs)
    arrows = []
    for (_, p), d, (kind, notes), t in zip(pk.iterrows(), dirs, kinds, times):
        r = dict(p=p, dir=d, kind=kind, notes=notes, t=t, lost=lost.get(int(p["frame"])))
        arrows.append(halves.arrow(
            d, t, style=kind, text=safe(_tagged(r, connection)), rank=_rank(r, hs), tag=f"#{int(p['frame'])}",
            hover=_hover(r, connection), color=c["text"] if kind == "ACK" else None, lost=bool(r["lost"]), data=r))
    lanes = [Lane(x, f"<b>{who.title()}</b><br>{safe(_get(connection, who) or '')}", c[who])
             for x, who in ((CLIENT_X, "client"), (SERVER_X, "server"))]
    styles = {k: Style(KIND_LABEL[k], c[k], s["line"] * (0.75 if k == "ACK" else 1.0)
                       * (1.25 if k in ("retransmission", "RST") else 1), KIND_DASH.get(k, "solid")) for k in KINDS}
    # a cut inside the handshake the chart annotates would falsify it
    d = Diagram(name, lanes, arrows, styles, x_range=X_RANGE, capture_x=halves.capture_x,
                keep=_handshake_span(hs, frames, times), axis_title="ms since the connection's first packet",
                caption="capture point" + ("" if halves.measured else " (position unknown)"))
    batch = Batch(fig)
    d.draw_frame(batch)
    _draw_handshake(batch, d, hs, {f: a.y for f, a in zip(frames, arrows)}, halves)
    d.draw_arrows(batch)
    d.draw_labels(batch)
    d.draw_hover(batch)
    batch.flush()
    _layout(fig, d, connection, hs, total, max_packets)
    return fig


def _rank(r: dict, hs: Handshake) -> int:
    """Handshake, FIN, RST and analysis events are labelled first, then data, then plain ACKs."""
    if r["kind"] in ALWAYS_LABEL or r["lost"] or int(r["p"]["frame"]) in hs.frames:
        return 0
    return 1 if r["kind"] == "data" else 2


# --- facts from the packets ---------------------------------------------------------------

def flag_set(flags: Any) -> set[str]:
    """``"SYN,ACK"`` -> ``{"SYN", "ACK"}`` (also accepts ``"[SYN, ACK]"`` and ``"S"``-less text)."""
    if flags is None or (isinstance(flags, float) and flags != flags) or flags is pd.NA:
        return set()
    text = str(flags).strip("[]")
    return {f.strip().upper() for f in text.replace(" ", ",").split(",") if f.strip()}


def flag_text(flags: Any) -> str:
    """Flags in Wireshark's order (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, NS), comma-joined."""
    fs = flag_set(flags)
    known = [f for f in TCP_FLAG_NAMES if f in fs]
    return ",".join(known + sorted(fs - set(TCP_FLAG_NAMES)))


def _directions(pk: pd.DataFrame, connection) -> list[str]:
    if "dir" in pk.columns and pk["dir"].notna().all():
        return [str(d) for d in pk["dir"]]
    client = str(_get(connection, "client") or "")
    out = []
    for _, p in pk.iterrows():
        out.append("c2s" if _endpoint(p["src"], p["sport"]) == client else "s2c")
    return out


def _endpoint(addr: Any, port: Any) -> str:
    a = str(addr)
    return f"[{a}]:{port}" if ":" in a else f"{a}:{port}"


def _kinds(pk: pd.DataFrame, dirs: list[str], events: pd.DataFrame | None, conn) -> list[tuple[str, list[str]]]:
    """Each packet's drawing kind and the analysis notes shown on hover."""
    notes = _event_notes(events, conn)
    seen_syn: set[int] = set()
    out = []
    for (_, p), d in zip(pk.iterrows(), dirs):
        fs = flag_set(p["flags"])
        frame = int(p["frame"])
        frame_notes = list(notes.get(frame, []))
        # Without an events table a repeated SYN is still plainly a retransmission.
        if events is None and "SYN" in fs:
            key = (d, _num(p["seq"]))
            if key in seen_syn:
                frame_notes.append("retransmission")
            seen_syn.add(key)
        out.append((_kind(fs, _num(p["len"]) or 0, frame_notes), frame_notes))
    return out


def _kind(fs: set[str], length: int, notes: list[str]) -> str:
    norm = [_norm(n) for n in notes]
    if any("retrans" in n for n in norm):
        return "retransmission"
    if any("dup" in n for n in norm):
        return "dup-ack"
    if any("out-of-order" in n for n in norm):
        return "out-of-order"
    if any("zero-window" in n and "probe" not in n for n in norm):
        return "zero-window"
    if "RST" in fs:
        return "RST"
    if "SYN" in fs:
        return "SYN"
    if "FIN" in fs:
        return "FIN"
    return "data" if length > 0 else "ACK"


def _event_notes(events: pd.DataFrame | None, conn) -> dict[int, list[str]]:
    if events is None or len(events) == 0 or "frame" not in events.columns:
        return {}
    ev = events
    if "layer" in ev.columns:
        ev = ev[ev["layer"].astype("string").str.lower() == "tcp"]
    if conn is not None and "conn" in ev.columns:
        ev = ev[ev["conn"] == conn]
    ev = ev[ev["frame"].notna()]
    out: dict[int, list[str]] = {}
    for frame, kind in zip(ev["frame"], ev["kind"]):
        k = str(kind)
        if _norm(k) in ("syn", "syn-ack", "fin", "rst", "ack"):
            continue          # the flags already say so
        out.setdefault(int(frame), []).append(k)
    return out


def _norm(kind: str) -> str:
    return str(kind).strip().lower().replace("_", "-").replace(" ", "-")


def _lost(connection, hs: Handshake, pk: pd.DataFrame, dirs: list[str]) -> dict[int, str]:
    """Handshake packets that never reached the other end: frame -> why, for drawing them short.

    From the connection's columns: SYNs before the answered one got no reply
    (lost beyond the capture point, or dropped by the server); with
    ``synack_lost`` it is the SYN-ACKs before the last that never reached the
    client; an unanswered connection's SYNs all went unanswered.
    """
    syns = [(int(f), d) for f, fl, d in zip(pk["frame"], pk["flags"], dirs) if flag_set(fl) >= {"SYN"}]
    out = {}
    close = _get(connection, "close")
    if close == "unanswered":
        return {f: "never answered" for f, d in syns if d == "c2s"}
    if _get(connection, "synack_lost") and hs.synack_frame is not None:
        return {f: "never reached the client: the client sent its SYN again"
                for f, d in syns if d == "s2c" and f < hs.synack_frame}
    if hs.syn_frame is not None:
        out = {f: "got no answer (lost on the way, or dropped by the server): the client sent it again"
               for f, d in syns if d == "c2s" and f < hs.syn_frame}
    return out



def _handshake_span(hs: Handshake, frames: list[int], times: list[float]) -> list[tuple[float, float]]:
    """The real-time stretch the handshake annotation covers: a cut there would falsify it."""
    at = dict(zip(frames, times))
    ends = [at[f] for f in (hs.syn_frame, hs.synack_frame, hs.ack_frame) if f in at]
    return [(min(ends), max(ends))] if len(ends) >= 2 else []



# --- drawing ------------------------------------------------------------------------------

def _draw_handshake(batch: Batch, d: Diagram, hs: Handshake, at: dict[int, float], halves: Halves):
    c = d.c
    sh, ch = hs.server_half, hs.client_half
    if sh is None or hs.syn_frame not in at or hs.synack_frame not in at:
        return
    y_syn, y_synack = at[hs.syn_frame], at[hs.synack_frame]
    # The server half is the time SYN and SYN-ACK spent beyond the capture point: shade the
    # server's side of the line between the two capture times (and the client's for its half).
    batch.add_shape(type="rect", x0=halves.capture_x, x1=SERVER_X, y0=y_syn, y1=y_synack,
                    fillcolor=c["band_server"], line=dict(width=0), layer="below")
    lines = [f"<span style='color:{c['server']}'><b>server side {fmt_ms(sh)}</b></span>",
             f"<span style='color:{c['muted']}'>SYN \u2192 SYN-ACK</span>"]
    y_end = y_synack
    if ch is not None and hs.ack_frame in at:
        y_end = at[hs.ack_frame]
        batch.add_shape(type="rect", x0=CLIENT_X, x1=halves.capture_x, y0=y_synack, y1=y_end,
                        fillcolor=c["band_client"], line=dict(width=0), layer="below")
        lines = [f"<b>handshake RTT {fmt_ms(sh + ch)}</b>"] + lines + [
            f"<span style='color:{c['client']}'><b>client side {fmt_ms(ch)}</b></span>",
            f"<span style='color:{c['muted']}'>SYN-ACK \u2192 ACK</span>"]
        if not halves.measured:
            # too short to say which side of the capture point the time went
            lines = [lines[0], f"<span style='color:{c['muted']}'>SYN \u2192 ACK</span>"]
    d.bracket(batch, SERVER_X + 0.13, y_syn, y_end, lines)


def label(p: Mapping[str, Any], connection=None, direction: str | None = None) -> str:
    """The arrow's text, as Wireshark's info column: flags, relative seq/ack, len (and SYN options)."""
    fs = flag_set(p.get("flags"))
    parts = [flag_text(p.get("flags")) or "<none>"]
    seq, ack, length, win = (_num(p.get(k)) for k in ("seq", "ack", "len", "win"))
    if seq is not None:
        parts.append(f"seq={seq}")
    if ack is not None and "ACK" in fs:
        parts.append(f"ack={ack}")
    if "SYN" in fs:
        if win is not None:
            parts.append(f"win={win}")
        side = "client" if direction == "c2s" else "server"
        mss = _num(_get(connection, f"mss_{side}")) if connection is not None else None
        ws = _num(_get(connection, f"wscale_{side}")) if connection is not None else None
        if mss is not None:
            parts.append(f"mss={mss}")
        if ws is not None:
            parts.append(f"ws={ws}")
    if length:
        parts.append(f"len={length}")
    return " ".join(parts)



def _tagged(r, connection=None) -> str:
    """The label with Wireshark-style analysis tags in front: ``[retransmission] SYN seq=0``."""
    tags = [n for n in r["notes"]]
    if r["lost"]:
        tags.insert(0, "no answer" if r["dir"] == "c2s" else "lost")
    return "".join(f"[{n}] " for n in tags) + label(r["p"], connection, r["dir"])



def _hover(r: dict, connection) -> str:
    p = r["p"]
    client = safe(_get(connection, "client") or "client")
    server = safe(_get(connection, "server") or "server")
    who = f"{client} \u2192 {server}" if r["dir"] == "c2s" else f"{server} \u2192 {client}"
    lines = [
        f"<b>frame {int(p['frame'])}</b>  +{r['t']:.3f} ms",
        safe(utc(float(p["ts"]))),
        who,
        f"flags: {safe(flag_text(p.get('flags')) or 'none')}",
        "seq={} ack={} len={} win={}".format(*(_show(_num(p.get(k))) for k in ("seq", "ack", "len", "win"))),
    ]
    lines += [f"<b>{safe(n)}</b>" for n in r["notes"]]
    if r["lost"]:
        lines.append(f"<b>{safe(r['lost'])}</b>")
    return "<br>".join(lines)


def _layout(fig, d: Diagram, connection, hs: Handshake, total: int, max_packets: int):
    conn = _get(connection, "conn")
    client = safe(_get(connection, "client") or "?")
    server = safe(_get(connection, "server") or "?")
    facts = []
    if hs.server_half is not None and hs.client_half is not None:
        facts.append(f"handshake RTT {fmt_ms(hs.server_half + hs.client_half)}")
    retx = _num(_get(connection, "syn_retransmits"))
    if retx:
        facts.append(f"{retx} SYN retransmission{'s' if retx != 1 else ''}")
    close = _get(connection, "close")
    if close:
        facts.append(CLOSE_TEXT.get(str(close), safe(close)))
    facts.append(f"{total} packet{'s' if total != 1 else ''}")
    if total > max_packets:
        facts.append(f"showing the first {max_packets}")
    arrows = d.arrows
    marks = [("handshake", next((a for a in arrows if "SYN" in flag_set(a.data["p"]["flags"])), arrows[0])),
             ("first data", next((a for a in arrows if a.data["kind"] == "data"), None)),
             ("close", next((a for a in arrows if a.data["kind"] in ("FIN", "RST")), None))]
    d.layout(fig, f"<b>TCP connection {safe(conn)}</b>: {client} \u2192 {server}", facts,
             [(n, a) for n, a in marks if a is not None])


CLOSE_TEXT = {
    "fin-client": "closed by the client (FIN)", "fin-server": "closed by the server (FIN)",
    "rst-client": "reset by the client", "rst-server": "reset by the server",
    "refused": "refused (RST in reply to SYN)", "unanswered": "SYN never answered", "open": "still open",
}


# --- small helpers ------------------------------------------------------------------------

def _get(row, key):
    if row is None:
        return None
    try:
        v = row[key] if not isinstance(row, Mapping) else row.get(key)
    except (KeyError, IndexError):
        return None
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return None
    return v


def _seconds(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def _num(v) -> int | None:
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _show(v) -> str:
    return "\u2014" if v is None else str(v)

