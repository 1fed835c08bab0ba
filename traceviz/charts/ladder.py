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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import fmt_ms, safe, utc_text
from traceviz.model import TCP_FLAG_NAMES

CLIENT_X, SERVER_X = 0.0, 1.0
MIN_SLANT = 0.012          # of the time span, so arrows never look horizontal
MAX_HEIGHT = 12000         # px: a ladder page taller than this is not read, only scrolled
MIN_MEASURED = 20e-6       # seconds: a shorter handshake does not say where the capture point is

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


def ladder(packets: pd.DataFrame, connection: pd.Series | Mapping[str, Any], theme: str = "light",
           max_packets: int = 200, events: pd.DataFrame | None = None) -> go.Figure:
    """The ladder diagram of ``connection`` (a ``connections`` row) drawn from ``packets``.

    ``packets`` may hold the whole capture; only the connection's rows are
    used, the first ``max_packets`` of them (a note says so).  ``events``
    (the timeline's events table), when given, marks retransmissions,
    duplicate ACKs, out-of-order segments and zero windows.  Long silences
    (a 1 s wait for a retransmitted SYN) are cut short and marked, so the
    packets around them keep their room.
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
    scale, geo, s, fit = _fit(times, dirs, _geometry(hs), s, name)
    if fit is not None and len(pk) > fit:
        return ladder(packets, connection, theme, max_packets=fit, events=events)
    fig.update_layout(height=s["height"])

    rows = []
    for i, ((_, p), d, kind, t) in enumerate(zip(pk.iterrows(), dirs, kinds, times)):
        y, y0, y1 = scale.ends(i, t, d, geo)
        x0, x1 = (CLIENT_X, SERVER_X) if d == "c2s" else (SERVER_X, CLIENT_X)
        rows.append(dict(p=p, dir=d, kind=kind[0], notes=kind[1], t=t, y=y, x0=x0, y0=y0, x1=x1, y1=y1))
    at = {int(r["p"]["frame"]): r["y"] for r in rows}

    view = _View.of(s, min(r["y0"] for r in rows), max(r["y1"] for r in rows))
    batch = _Batch(fig)
    _draw_frame(batch, connection, geo, scale, view, c, s)
    _draw_handshake(batch, hs, at, geo, view, c, s)
    _draw_arrows(batch, rows, c, s)
    _draw_labels(batch, rows, connection, view, c, s, name,
                 {f for f in (hs.syn_frame, hs.synack_frame, hs.ack_frame) if f is not None})
    _draw_hover(batch, rows, connection, c, s)
    batch.flush()
    _layout(fig, connection, hs, total, max_packets, scale, view, c, s)
    return fig


class _Batch:
    """Collects annotations and shapes and hands them to the figure at once.

    plotly's ``add_annotation`` re-validates the whole layout on every call,
    which made a 200-packet ladder take seconds; one ``update_layout`` does not.
    """

    def __init__(self, fig: go.Figure):
        self.fig, self.annotations, self.shapes = fig, [], []

    def add_annotation(self, **kw) -> None:
        self.annotations.append(kw)

    def add_shape(self, **kw) -> None:
        self.shapes.append(kw)

    def add_trace(self, trace) -> None:
        self.fig.add_trace(trace)

    def flush(self) -> None:
        self.fig.update_layout(annotations=list(self.fig.layout.annotations) + self.annotations,
                               shapes=list(self.fig.layout.shapes) + self.shapes)


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


# --- geometry -----------------------------------------------------------------------------

@dataclass
class _Geometry:
    capture_x: float      # where the capture point sits between the lanes
    client: float         # ms an arrow spends between client lane and capture point
    server: float         # ms between capture point and server lane
    measured: bool        # from a handshake, or the fixed fallback

    def with_floor(self, floor: float) -> "_Geometry":
        # never flatter than the floor, so an arrow's direction stays readable
        x = self.capture_x
        return replace(self, client=max(self.client, floor * x), server=max(self.server, floor * (1 - x)))


def _geometry(hs: Handshake) -> _Geometry:
    sh, ch = hs.server_half, hs.client_half
    # Below ~20 us the split is timestamp noise (captures tick in microseconds).
    if sh is not None and ch is not None and sh >= 0 and ch >= 0 and sh + ch >= MIN_MEASURED:
        # One way is half a round trip.  The line is kept off the lanes for legibility; the
        # slant is then shared in the drawn proportion, so arrows still cross it at capture time.
        total = (sh + ch) * 500.0
        x = min(max(ch / (sh + ch), 0.12), 0.88)
        return _Geometry(x, x * total, (1 - x) * total, True)
    return _Geometry(0.5, 0.0, 0.0, False)


class Warp:
    """Real milliseconds -> drawn position, with long silences cut to a short, marked break.

    A gap is cut when it alone would take more than ``CUT`` of the drawing; it
    is then drawn ``BREAK`` of the rest's height.  Everything else keeps its
    true scale, so slopes and intervals read correctly on either side.
    """

    CUT = 0.25
    BREAK = 0.06
    MIN_DENSE = 0.03
    axis_title = "ms since the connection's first packet"

    def __init__(self, breaks: list[tuple[float, float, float, float]], lo: float, hi: float, height: float):
        self.breaks = breaks      # (a, b, first packet before, first packet after) in real ms
        self.lo, self.hi, self.height = lo, hi, height

    @classmethod
    def around(cls, times: list[float], geo: _Geometry) -> "Warp":
        pad = max(geo.client, geo.server)
        spans = sorted((t - pad, t + pad, t) for t in times)
        merged: list[list[float]] = []
        for a, b, t in spans:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
                merged[-1][3] = max(merged[-1][3], t)
            else:
                merged.append([a, b, t, t])
        lo, hi = merged[0][0], merged[-1][1]
        gaps = sorted(((merged[i + 1][0] - merged[i][1], i) for i in range(len(merged) - 1)), reverse=True)
        cut: list[int] = []
        total = hi - lo
        for g, i in gaps:
            if g > cls.CUT * (total - sum(merged[j + 1][0] - merged[j][1] for j in cut)):
                cut.append(i)
            else:
                break
        dense = total - sum(merged[j + 1][0] - merged[j][1] for j in cut)
        if dense < cls.MIN_DENSE * total:
            cut, dense = [], total      # a drawing of nearly all break says nothing
        height = max(dense * cls.BREAK, 1e-6)
        # leave room for the slant floor (at most MIN_SLANT of the drawing) at both ends of a cut
        margin = 2 * MIN_SLANT * (dense + height * len(cut))
        breaks = sorted((merged[i][1] + margin, merged[i + 1][0] - margin, merged[i][3], merged[i + 1][2])
                        for i in cut)
        return cls(breaks, lo, hi, height)

    def __call__(self, y: float) -> float:
        shift = 0.0
        for a, b, _, _ in self.breaks:
            if y >= b:
                shift += (b - a) - self.height
            elif y > a:
                return y - shift - (y - a) + (y - a) / (b - a) * self.height
            else:
                break
        return y - shift

    @property
    def visual_span(self) -> float:
        return self(self.hi) - self(self.lo)

    def ends(self, i: int, t: float, d: str, geo: _Geometry) -> tuple[float, float, float]:
        """Drawn y of the capture moment and of the arrow's start and end."""
        before, after = (geo.client, geo.server) if d == "c2s" else (geo.server, geo.client)
        return self(t), self(t - before), self(t + after)

    def cuts(self) -> list[tuple[float, float, str]]:
        return [(self(a), self(b), f"{fmt_ms((after - before) / 1000)} with no packets (time axis cut)")
                for a, b, before, after in self.breaks]

    def segments(self) -> list[tuple[float, float]]:
        """The real-time stretches drawn at true scale."""
        edges = [self.lo] + [v for a, b, _, _ in self.breaks for v in (a, b)] + [self.hi]
        return [(edges[i], edges[i + 1]) for i in range(0, len(edges), 2)]

    def ticks(self, min_gap: float = 0.0, count: int = 8) -> tuple[list[float], list[str]]:
        step = _nice(self.visual_span / count)
        vals, texts = [], []
        for a, b in self.segments():
            k = math.ceil(a / step)
            while k * step <= b + 1e-9:
                v = k * step
                vals.append(self(v))
                texts.append(_tick_text(v, step))
                k += 1
        return vals, texts


class Sequence:
    """One row per packet, for connections whose packets come too close for a true time scale.

    Like Wireshark's flow graph; the time axis labels each row with its
    packet's real time, and a silence longer than a fifth of the whole is
    still shown as a marked break.
    """

    SLANT = 0.6           # rows an arrow drops from sender to receiver
    BREAK_ROWS = 2.4
    axis_title = "ms since the connection's first packet (one row per packet)"

    def __init__(self, times: list[float]):
        self.times = times
        span = (max(times) - min(times)) if times else 0.0
        self.ys, self.breaks = [], []
        extra = 0.0
        for i, t in enumerate(times):
            if i and span > 0 and t - times[i - 1] > Warp.CUT * span:
                self.breaks.append((i - 1 + extra, i + extra + self.BREAK_ROWS, t - times[i - 1]))
                extra += self.BREAK_ROWS
            self.ys.append(i + extra)

    @property
    def visual_span(self) -> float:
        return (self.ys[-1] - self.ys[0]) + self.SLANT if self.ys else 1.0

    def ends(self, i: int, t: float, d: str, geo: _Geometry) -> tuple[float, float, float]:
        y, x = self.ys[i], geo.capture_x
        # through the capture line at the row, in the drawn proportion either side
        before, after = (x, 1 - x) if d == "c2s" else (1 - x, x)
        return y, y - before * self.SLANT, y + after * self.SLANT

    def cuts(self) -> list[tuple[float, float, str]]:
        pad = self.SLANT + 0.05
        return [(a + pad, b - pad, f"{fmt_ms(gap / 1000)} with no packets") for a, b, gap in self.breaks]

    def ticks(self, min_gap: float = 0.0, count: int = 8) -> tuple[list[float], list[str]]:
        vals, texts, last = [], [], None
        for y, t in zip(self.ys, self.times):
            if last is None or y - last >= max(min_gap, 1e-9):
                vals.append(y)
                texts.append(f"{t:.3f}")
                last = y
        return vals, texts


def _scale(times: list[float], dirs: list[str], geo: _Geometry, s: dict):
    """True time (with long silences cut) unless that would pile most labels on top of each other."""
    warp = Warp.around(times, geo)
    if len(times) < 4:
        return warp
    m = _margins(s)
    px = (s["height"] - m["t"] - m["b"]) / max(warp.visual_span, 1e-9)
    floored = geo.with_floor(MIN_SLANT * warp.visual_span)
    # labels sit at the arrows' midpoints, which differ by direction on a slanted ladder
    mids = sorted((y0 + y1) / 2 for y0, y1 in
                  (warp.ends(i, t, d, floored)[1:] for i, (t, d) in enumerate(zip(times, dirs))))
    crowded = sum(1 for a, b in zip(mids, mids[1:]) if (b - a) * px < s["small"] * 0.65)
    return Sequence(times) if crowded > 0.4 * (len(times) - 1) else warp


def _fit(times, dirs, geo: _Geometry, s: dict, theme: str):
    """The scale, the arrows' geometry, the sizes (a page may grow taller) and, for a slide, the rows it holds."""
    scale = _scale(times, dirs, geo, s)
    if isinstance(scale, Warp):
        return scale, geo.with_floor(MIN_SLANT * scale.visual_span), s, None
    m = _margins(s)
    if theme == "talk":
        # a slide: no more rows than can be read from the back of the room
        rows = int((s["height"] - m["t"] - m["b"]) / (s["small"] * 1.7)) - 2 * len(scale.breaks)
        return scale, geo, s, max(rows, 8)
    # a page, not a slide: grow downwards until each row has room for a line of text
    height = min(max(s["height"], scale.visual_span * s["small"] * 1.7 + m["t"] + m["b"]), MAX_HEIGHT)
    return scale, geo, dict(s, height=int(height)), None


def _nice(x: float) -> float:
    if x <= 0:
        return 1.0
    exp = math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10 ** exp >= x:
            return m * 10 ** exp
    return 10 ** (exp + 1)


def _tick_text(v: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    if step < 1 and round(step * 10 ** decimals) % 10 == 5:
        decimals += 1
    return f"{v:.{decimals}f}"


@dataclass
class _View:
    """The drawing's pixel scale, so text can follow an arrow's true on-screen angle."""

    top: float
    bottom: float
    px_x: float           # pixels per lane-distance unit
    px_y: float           # pixels per drawn millisecond

    @classmethod
    def of(cls, s: dict, top: float, bottom: float) -> "_View":
        m = _margins(s)
        plot_w = s["width"] - m["l"] - m["r"]
        plot_h = s["height"] - m["t"] - m["b"]
        span = max(bottom - top, 1e-6)
        # room under the last arrow for the capture-point caption
        pad_px = s["small"] * 2.4
        px_y = (plot_h - pad_px - s["small"]) / span
        return cls(top - s["small"] / px_y, bottom + pad_px / px_y, plot_w / (X_RANGE[1] - X_RANGE[0]), px_y)

    def angle(self, r) -> float:
        """Degrees clockwise, for text reading left to right along the arrow."""
        (xl, yl), (xr, yr) = sorted(((r["x0"], r["y0"]), (r["x1"], r["y1"])))
        return math.degrees(math.atan2((yr - yl) * self.px_y, (xr - xl) * self.px_x))


X_RANGE = (-0.16, 1.52)


def _margins(s: dict) -> dict:
    return dict(l=int(s["font"] * 7), r=int(s["font"] * 1.5),
                t=int(s["title"] * 1.7 + s["font"] * 5.2 + 16), b=int(s["font"] * 4.5))


# --- drawing ------------------------------------------------------------------------------

def _draw_frame(fig, connection, geo, scale, view: _View, c, s):
    lane_w = s["line"] * 2.2
    cuts = scale.cuts()
    edges = [view.top] + [v for ya, yb, _ in cuts for v in (ya, yb)] + [view.bottom]
    for x, who, col in ((CLIENT_X, "client", c["client"]), (SERVER_X, "server", c["server"])):
        for i in range(0, len(edges), 2):
            fig.add_shape(type="line", x0=x, x1=x, y0=edges[i], y1=edges[i + 1], layer="below",
                          line=dict(color=col, width=lane_w))
        addr = safe(_get(connection, who) or "")
        fig.add_annotation(x=x, y=1.0, xref="x", yref="paper", yanchor="bottom", showarrow=False,
                           text=f"<b>{who.title()}</b><br>{addr}", yshift=4,
                           font=dict(color=col, size=s["font"] + 1))
    for i in range(0, len(edges), 2):
        fig.add_shape(type="line", x0=geo.capture_x, x1=geo.capture_x, y0=edges[i], y1=edges[i + 1],
                      line=dict(color=c["capture"], width=max(s["line"] * 0.75, 1), dash="dash"), layer="below")
    fig.add_annotation(x=geo.capture_x, y=view.bottom, xref="x", yref="y", yanchor="bottom", showarrow=False,
                       text="capture point" + ("" if geo.measured else " (position unknown)"),
                       font=dict(color=c["muted"], size=s["small"]))
    for ya, yb, text in cuts:
        fig.add_shape(type="rect", x0=X_RANGE[0], x1=X_RANGE[1], y0=ya, y1=yb, layer="below",
                      fillcolor=c["grid"], opacity=0.55, line=dict(width=0))
        fig.add_annotation(x=0.5, y=(ya + yb) / 2, xref="x", yref="y", showarrow=False,
                           text=f"\u22ef {text} \u22ef",
                           font=dict(color=c["muted"], size=s["small"]), bgcolor=c["background"])


def _draw_handshake(fig, hs: Handshake, at: dict[int, float], geo: _Geometry, view: _View, c, s):
    sh, ch = hs.server_half, hs.client_half
    if sh is None or hs.syn_frame not in at or hs.synack_frame not in at:
        return
    y_syn, y_synack = at[hs.syn_frame], at[hs.synack_frame]
    # The server half is the time SYN and SYN-ACK spent beyond the capture point: shade the
    # server's side of the line between the two capture times (and the client's for its half).
    fig.add_shape(type="rect", x0=geo.capture_x, x1=SERVER_X, y0=y_syn, y1=y_synack,
                  fillcolor=c["band_server"], line=dict(width=0), layer="below")
    lines = [f"<span style='color:{c['server']}'><b>server side {fmt_ms(sh)}</b></span>",
             f"<span style='color:{c['muted']}'>SYN \u2192 SYN-ACK</span>"]
    y_end = y_synack
    if ch is not None and hs.ack_frame in at:
        y_end = at[hs.ack_frame]
        fig.add_shape(type="rect", x0=CLIENT_X, x1=geo.capture_x, y0=y_synack, y1=y_end,
                      fillcolor=c["band_client"], line=dict(width=0), layer="below")
        lines = [f"<b>handshake RTT {fmt_ms(sh + ch)}</b>"] + lines + [
            f"<span style='color:{c['client']}'><b>client side {fmt_ms(ch)}</b></span>",
            f"<span style='color:{c['muted']}'>SYN-ACK \u2192 ACK</span>"]
        if not geo.measured:
            # too short to say which side of the capture point the time went
            lines = [lines[0], f"<span style='color:{c['muted']}'>SYN \u2192 ACK</span>"]
    xb = SERVER_X + 0.13
    tick = 0.015
    fig.add_shape(type="path", line=dict(color=c["muted"], width=max(s["line"] * 0.75, 1)),
                  path=f"M {xb - tick},{y_syn} L {xb},{y_syn} L {xb},{y_end} L {xb - tick},{y_end}")
    fig.add_annotation(x=xb + 0.02, y=(y_syn + y_end) / 2, xref="x", yref="y", xanchor="left",
                       yanchor="middle", showarrow=False, align="left", text="<br>".join(lines),
                       font=dict(color=c["text"], size=s["small"]), bgcolor=c["background"])


def _draw_arrows(fig, rows, c, s):
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        xs, ys, sizes = [], [], []
        for r in mine:
            xs += [r["x0"], r["x1"], None]
            ys += [r["y0"], r["y1"], None]
            sizes += [0, s["marker"] * 1.5, 0]
        width = s["line"] * (0.75 if kind == "ACK" else 1.0) * (1.25 if kind in ("retransmission", "RST") else 1)
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines+markers", name=f"{KIND_LABEL[kind]} ({len(mine)})",
            legendgroup=kind, hoverinfo="skip",
            line=dict(color=c[kind], width=width, dash=KIND_DASH.get(kind, "solid")),
            marker=dict(symbol="arrow", angleref="previous", size=sizes, color=c[kind], line=dict(width=0)),
        ))


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
    tags = "".join(f"[{n}] " for n in r["notes"])
    return tags + label(r["p"], connection, r["dir"])


def _draw_labels(fig, rows, connection, view: _View, c, s, theme_name, handshake_frames=()):
    """Labels along the arrows, above or (when taken) below each, only where they fit.

    Handshake, FIN, RST and analysis events are placed first, then data, then
    plain ACKs; what does not fit is still in the hover text.
    """
    lift = s["small"] * 0.8                       # px from the arrow to the text's centre
    min_gap = s["small"] * 1.3 / view.px_y        # drawn ms between two labels' centres
    taken: list[float] = []
    placed: dict[int, float] = {}                 # row index -> +1 above, -1 below

    def rank(i):
        r = rows[i]
        if r["kind"] in ALWAYS_LABEL or int(r["p"]["frame"]) in handshake_frames:
            return 0
        return 1 if r["kind"] == "data" else 2

    for i in sorted(range(len(rows)), key=lambda i: (rank(i), i)):
        r = rows[i]
        mid = (r["y0"] + r["y1"]) / 2
        for side in (1, -1):
            y = mid - side * lift / view.px_y
            if all(abs(y - other) >= min_gap for other in taken):
                taken.append(y)
                placed[i] = side
                break
    for i in sorted(placed):
        r = rows[i]
        angle = view.angle(r)
        rad = math.radians(angle)
        k = lift * placed[i]
        fig.add_annotation(
            x=(r["x0"] + r["x1"]) / 2, y=(r["y0"] + r["y1"]) / 2, xref="x", yref="y", showarrow=False,
            text=safe(_tagged(r, connection)), textangle=angle,
            xshift=k * math.sin(rad), yshift=k * math.cos(rad),
            font=dict(family=themes.mono(theme_name), size=s["small"],
                      color=c[r["kind"]] if r["kind"] != "ACK" else c["text"]),
        )
    _draw_frame_numbers(fig, [rows[i] for i in sorted(placed)], view, c, s)


def _draw_frame_numbers(fig, mine, view: _View, c, s):
    # Beside each labelled arrow's start; packets sent together from one lane share a tag.
    min_gap = s["small"] * 1.2 / view.px_y
    tags: list[list] = []                         # [x, y, dir, [frames]]
    for r in mine:
        frame = int(r["p"]["frame"])
        last = next((t for t in reversed(tags) if t[2] == r["dir"]), None)
        if last is not None and abs(r["y0"] - last[1]) < min_gap:
            last[3].append(frame)
            continue
        x = r["x0"] - 0.012 if r["dir"] == "c2s" else r["x0"] + 0.012
        tags.append([x, r["y0"], r["dir"], [frame]])
    fig.add_trace(go.Scatter(
        x=[t[0] for t in tags], y=[t[1] for t in tags], mode="text", hoverinfo="skip", showlegend=False,
        name="frames", text=[" ".join(f"#{f}" for f in t[3]) for t in tags],
        textposition=["middle left" if t[2] == "c2s" else "middle right" for t in tags],
        textfont=dict(size=s["small"], color=c["muted"]),
    ))


def _draw_hover(fig, rows, connection, c, s):
    client = safe(_get(connection, "client") or "client")
    server = safe(_get(connection, "server") or "server")
    texts = []
    for r in rows:
        p = r["p"]
        who = f"{client} \u2192 {server}" if r["dir"] == "c2s" else f"{server} \u2192 {client}"
        lines = [
            f"<b>frame {int(p['frame'])}</b>  +{r['t']:.3f} ms",
            safe(_abs_time(float(p["ts"]))),
            who,
            f"flags: {safe(flag_text(p.get('flags')) or 'none')}",
            "seq={} ack={} len={} win={}".format(*(_show(_num(p.get(k))) for k in ("seq", "ack", "len", "win"))),
        ]
        lines += [f"<b>{safe(n)}</b>" for n in r["notes"]]
        texts.append("<br>".join(lines))
    # Hover points sit where each arrow crosses the capture line: the moment it was captured.
    fig.add_trace(go.Scatter(
        x=[_cross_x(r) for r in rows], y=[r["y"] for r in rows], mode="markers",
        hovertext=texts, hoverinfo="text", showlegend=False, name="packets",
        marker=dict(size=max(s["marker"] * 0.6, 5), color=[c[r["kind"]] for r in rows], line=dict(width=0)),
    ))


def _cross_x(r) -> float:
    if r["y1"] == r["y0"]:
        return (r["x0"] + r["x1"]) / 2
    f = (r["y"] - r["y0"]) / (r["y1"] - r["y0"])
    return r["x0"] + f * (r["x1"] - r["x0"])


def _layout(fig, connection, hs, total, max_packets, scale, view: _View, c, s):
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
    tickvals, ticktext = scale.ticks(min_gap=s["small"] * 1.5 / view.px_y)
    fig.update_layout(
        title=dict(text=f"<b>TCP connection {safe(conn)}</b>: {client} \u2192 {server}",
                   subtitle=dict(text=" \u00b7 ".join(facts), font=dict(color=c["muted"], size=s["font"]))),
        xaxis=dict(visible=False, range=list(X_RANGE)),
        yaxis=dict(title=dict(text=scale.axis_title), range=[view.bottom, view.top],
                   zeroline=False, tickmode="array", tickvals=tickvals, ticktext=ticktext, showgrid=False),
        legend=dict(orientation="h", x=0.5, xanchor="center", y=0, yanchor="top", yref="paper"),
        margin=_margins(s),
        showlegend=True,
    )


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


def _abs_time(ts: float) -> str:
    return utc_text(ts)
