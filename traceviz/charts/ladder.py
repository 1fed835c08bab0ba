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
annotates.  The figure keeps the theme's size: a long connection is not
squeezed or cut, the chart opens on its first packets (as many as leave
room for a label each) and the rest is a drag away, with buttons that jump
to the handshake, the first data and the close; an image shows the opening
view and says how much more there is.  A SYN that got no answer (lost on
the path, or dropped by the server) and a SYN-ACK that never reached the
client stop short of the far lane with a cross.  Labels are placed where
they cross neither another label nor another arrow; what does not fit is in
the hover text.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.export import INTERACTIVE
from traceviz.charts.text import fmt_ms, safe, wrap
from traceviz.model import TCP_FLAG_NAMES
from traceviz.units import utc

CLIENT_X, SERVER_X = 0.0, 1.0
MIN_SLANT = 0.025          # of the opening view's height, so arrows never look horizontal
MIN_MEASURED = 20e-6       # seconds: a shorter handshake does not say where the capture point is
MAX_PACKETS = 500          # drawn (each labelled arrow is an annotation a browser has to move while panning)
LOST_AT = 0.55             # how far past the capture point a lost packet's arrow reaches
ROW_EM = 2.0               # vertical room per arrow in the opening view, in label heights

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
    keep = _handshake_span(hs, frames, times)
    # The slant: half a round trip each way when the handshake says so; at least a sliver of the
    # opening view, found in two steps (a first guess from how closely the packets follow each other).
    measured = _geometry(hs)
    geo = measured.with_floor(_spacing(times))
    for _ in range(2):
        scale = Warp.around(times, geo, keep)
        window = _window(times, dirs, scale, geo, s)
        geo = measured.with_floor(MIN_SLANT * (window[1] - window[0]))
    scale = Warp.around(times, geo, keep)
    window = _window(times, dirs, scale, geo, s)
    lost = _lost(connection, hs, pk, dirs)

    rows = []
    for i, ((_, p), d, kind, t) in enumerate(zip(pk.iterrows(), dirs, kinds, times)):
        y, y0, y1 = scale.ends(i, t, d, geo)
        x0, x1 = (CLIENT_X, SERVER_X) if d == "c2s" else (SERVER_X, CLIENT_X)
        r = dict(p=p, dir=d, kind=kind[0], notes=kind[1], t=t, y=y, x0=x0, y0=y0, x1=x1, y1=y1, lost=None)
        r["full"] = (x1, y1)          # where it would have arrived: the hover point is on this line
        if frames[i] in lost:
            r["lost"] = lost[frames[i]]
            r["x1"], r["y1"] = _stop(r, geo)
        rows.append(r)
    at = {int(r["p"]["frame"]): r["y"] for r in rows}

    view = _View.of(s, window[0], window[1], min(r["y0"] for r in rows), max(r["y1"] for r in rows))
    batch = _Batch(fig)
    _draw_frame(batch, connection, geo, scale, view, c, s)
    _draw_handshake(batch, hs, at, geo, view, c, s)
    _draw_arrows(batch, rows, c, s)
    _draw_labels(batch, rows, connection, view, c, s, name,
                 {f for f in (hs.syn_frame, hs.synack_frame, hs.ack_frame) if f is not None})
    _draw_hover(batch, rows, connection, c, s)
    batch.flush()
    _layout(fig, connection, hs, total, max_packets, scale, view, rows, c, s)
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


def _stop(r: dict, geo) -> tuple[float, float]:
    """Where a lost packet's arrow ends: past the capture point, short of the other lane."""
    cross = geo.capture_x if r["dir"] == "c2s" else 1 - geo.capture_x
    f = cross + LOST_AT * (1 - cross)
    return r["x0"] + f * (r["x1"] - r["x0"]), r["y0"] + f * (r["y1"] - r["y0"])


def _handshake_span(hs: Handshake, frames: list[int], times: list[float]) -> list[tuple[float, float]]:
    """The real-time stretch the handshake annotation covers: a cut there would falsify it."""
    at = dict(zip(frames, times))
    ends = [at[f] for f in (hs.syn_frame, hs.synack_frame, hs.ack_frame) if f in at]
    return [(min(ends), max(ends))] if len(ends) >= 2 else []


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
    true scale, so slopes and intervals read correctly on either side.  A gap
    inside a ``keep`` span (the annotated handshake) is never cut.
    """

    CUT = 0.25
    BREAK = 0.06
    axis_title = "ms since the connection's first packet"

    def __init__(self, breaks: list[tuple[float, float, float, float]], lo: float, hi: float, height: float):
        self.breaks = breaks      # (a, b, first packet before, first packet after) in real ms
        self.lo, self.hi, self.height = lo, hi, height

    @classmethod
    def around(cls, times: list[float], geo: _Geometry, keep: list[tuple[float, float]] = ()) -> "Warp":
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
        kept = {i for i in range(len(merged) - 1)
                if any(merged[i][1] < kb and merged[i + 1][0] > ka for ka, kb in keep)}
        gaps = sorted(((merged[i + 1][0] - merged[i][1], i) for i in range(len(merged) - 1) if i not in kept),
                      reverse=True)
        cut: list[int] = []
        total = hi - lo
        for g, i in gaps:
            if g > cls.CUT * (total - sum(merged[j + 1][0] - merged[j][1] for j in cut)):
                cut.append(i)
            else:
                break
        dense = max(total - sum(merged[j + 1][0] - merged[j][1] for j in cut), 1e-9)
        height = max(dense * cls.BREAK, 1e-9)
        # leave room for the slant floor at both ends of a cut
        margin = 2 * MIN_SLANT * (dense + height * len(cut))
        breaks = sorted((merged[i][1] + margin, merged[i + 1][0] - margin, merged[i][3], merged[i + 1][2])
                        for i in cut if merged[i + 1][0] - merged[i][1] > 2 * margin)
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

    def ticks(self, span: float, count: int = 8, most: int = 3000) -> tuple[list[float], list[str]]:
        """Ticks every 'nice' step that puts about ``count`` in ``span`` drawn ms (less its breaks),
        over the whole drawing."""
        step = _nice(max(span - self.height * len(self.breaks), span * 0.05) / count)
        while sum((b - a) / step for a, b in self.segments()) > most:
            step = _nice(step * 2.01)
        vals, texts = [], []
        for a, b in self.segments():
            k = math.ceil(a / step)
            while k * step <= b + 1e-9:
                v = k * step
                vals.append(self(v))
                texts.append(_tick_text(v, step))
                k += 1
        return vals, texts


def _spacing(times: list[float]) -> float:
    """A first slant: a few times the typical gap between packets (a loopback burst is microseconds)."""
    gaps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
    return 4 * gaps[len(gaps) // 2] if gaps else 1.0


def _window(times: list[float], dirs: list[str], scale: Warp, geo: _Geometry, s: dict) -> tuple[float, float]:
    """The drawn span the chart opens on: every packet if each gets room for a label, else the
    first ones that do (and at least a round trip and a half, so arrows keep their slant)."""
    ends = [scale.ends(i, t, d, geo) for i, (t, d) in enumerate(zip(times, dirs))]
    top, bottom = min(e[1] for e in ends), max(e[2] for e in ends)
    m = _margins(s)
    room = max(int((s["height"] - m["t"] - m["b"]) / (s["small"] * ROW_EM)), 6)
    if len(times) <= room:
        return top, bottom
    first = max(e[2] for e in ends[:room])
    return top, min(bottom, max(first, top + 3.0 * (geo.client + geo.server)))


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
    """The opening view (drawn ms ``top``..``bottom``), the whole drawing (``lo``..``hi``) and
    the pixel scale of the opening view, so text can follow an arrow's true on-screen angle."""

    top: float
    bottom: float
    lo: float
    hi: float
    px_x: float           # pixels per lane-distance unit
    px_y: float           # pixels per drawn millisecond

    @classmethod
    def of(cls, s: dict, top: float, bottom: float, lo: float, hi: float) -> "_View":
        m = _margins(s)
        plot_w = s["width"] - m["l"] - m["r"]
        plot_h = s["height"] - m["t"] - m["b"]
        span = max(bottom - top, 1e-6)
        # room under the last arrow for the capture-point caption
        pad_px = s["small"] * 2.4
        px_y = (plot_h - pad_px - s["small"]) / span
        return cls(top - s["small"] / px_y, bottom + pad_px / px_y, lo - s["small"] / px_y,
                   hi + pad_px / px_y, plot_w / (X_RANGE[1] - X_RANGE[0]), px_y)

    @property
    def whole(self) -> bool:
        return self.top <= self.lo + 1e-9 and self.bottom >= self.hi - 1e-9

    def angle(self, r) -> float:
        """Degrees clockwise, for text reading left to right along the arrow."""
        (xl, yl), (xr, yr) = sorted(((r["x0"], r["y0"]), (r["x1"], r["y1"])))
        return math.degrees(math.atan2((yr - yl) * self.px_y, (xr - xl) * self.px_x))

    def px(self, x: float, y: float) -> tuple[float, float]:
        return x * self.px_x, y * self.px_y


X_RANGE = (-0.16, 1.52)


def _margins(s: dict) -> dict:
    # the title, two lines of subtitle, then the lanes' names above the plot
    return dict(l=int(s["font"] * 7), r=int(s["font"] * 1.5),
                t=int(s["title"] * 1.7 + s["font"] * 6.5 + 16), b=int(s["font"] * 4.5))


# --- drawing ------------------------------------------------------------------------------

def _draw_frame(fig, connection, geo, scale, view: _View, c, s):
    lane_w = s["line"] * 2.2
    cuts = scale.cuts()
    edges = [view.lo] + [v for ya, yb, _ in cuts for v in (ya, yb)] + [view.hi]
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
                       font=dict(color=c["muted"], size=s["small"]), bgcolor=c["background"])
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
        xs, ys, sizes, symbols = [], [], [], []
        for r in mine:
            xs += [r["x0"], r["x1"], None]
            ys += [r["y0"], r["y1"], None]
            sizes += [0, s["marker"] * (1.7 if r["lost"] else 1.5), 0]
            symbols += ["arrow", "x-thin" if r["lost"] else "arrow", "arrow"]
        width = s["line"] * (0.75 if kind == "ACK" else 1.0) * (1.25 if kind in ("retransmission", "RST") else 1)
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines+markers", name=f"{KIND_LABEL[kind]} ({len(mine)})",
            legendgroup=kind, hoverinfo="skip",
            line=dict(color=c[kind], width=width, dash=KIND_DASH.get(kind, "solid")),
            marker=dict(symbol=symbols, angleref="previous", size=sizes, color=c[kind],
                        line=dict(width=max(s["line"], 2), color=c[kind])),
        ))
    lost = [r for r in rows if r["lost"]]
    if lost:   # a legend entry saying what the cross means
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"never arrived ({len(lost)})",
                                 marker=dict(symbol="x-thin", size=s["marker"], color=c["RST"],
                                             line=dict(width=max(s["line"], 2), color=c["RST"]))))


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


def _draw_labels(fig, rows, connection, view: _View, c, s, theme_name, handshake_frames=()):
    """Labels along the arrows, each where it crosses no other label and no other arrow.

    Handshake, FIN, RST and analysis events are placed first, then data, then
    plain ACKs; each tries the arrow's middle, then points nearer its ends,
    above and below it.  Sizes are those of the opening view (a monospace
    character is 0.6 em wide); what does not fit is still in the hover text.
    """
    line_h = s["small"] * 1.3
    char = s["small"] * 0.6
    lift = s["small"] * 0.8                       # px from the arrow to the text's centre
    segs = [(view.px(r["x0"], r["y0"]), view.px(r["x1"], r["y1"])) for r in rows]
    by_top = sorted(range(len(rows)), key=lambda i: min(segs[i][0][1], segs[i][1][1]))
    tops = [min(segs[i][0][1], segs[i][1][1]) for i in by_top]
    tallest = max((abs(b[1] - a[1]) for a, b in segs), default=0.0)
    boxes: list[tuple[float, float, list]] = []   # (top, bottom, corners) of placed labels, in px
    placed: dict[int, tuple[float, float, float]] = {}  # row -> (t along the arrow, x shift, y shift)

    def rank(i):
        r = rows[i]
        if r["kind"] in ALWAYS_LABEL or r["lost"] or int(r["p"]["frame"]) in handshake_frames:
            return 0
        return 1 if r["kind"] == "data" else 2

    def free(i, corners) -> bool:
        top, bottom = min(p[1] for p in corners), max(p[1] for p in corners)
        for btop, bbottom, other in boxes:
            if btop <= bottom and bbottom >= top and polygons_overlap(corners, other):
                return False
        lo = bisect.bisect_left(tops, top - tallest)
        hi = bisect.bisect_right(tops, bottom)
        return not any(j != i and polygons_overlap(corners, list(segs[j])) for j in (by_top[k] for k in range(lo, hi)))

    for i in sorted(range(len(rows)), key=lambda i: (rank(i), i)):
        (ax, ay), (bx, by) = segs[i]
        length = math.hypot(bx - ax, by - ay)
        if length < 1e-9:
            continue
        ux, uy = (bx - ax) / length, (by - ay) / length
        nx, ny = (uy, -ux) if -ux < 0 else (-uy, ux)        # the normal pointing up the screen
        width = len(_tagged(rows[i], connection)) * char + 4
        for t in (0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78):
            if min(t, 1 - t) * length < width / 2:
                continue                                   # the text would run past a lane
            spot = next(((ox, oy) for ox, oy in ((lift * nx, lift * ny), (-lift * nx, -lift * ny))
                         if free(i, _rect(ax + t * (bx - ax) + ox, ay + t * (by - ay) + oy, ux, uy, width, line_h))),
                        None)
            if spot is not None:
                corners = _rect(ax + t * (bx - ax) + spot[0], ay + t * (by - ay) + spot[1], ux, uy, width, line_h)
                boxes.append((min(p[1] for p in corners), max(p[1] for p in corners), corners))
                placed[i] = (t, spot[0], -spot[1])          # annotation shifts count y upwards
                break
    for i in sorted(placed):
        r = rows[i]
        t, xshift, yshift = placed[i]
        fig.add_annotation(
            x=r["x0"] + t * (r["x1"] - r["x0"]), y=r["y0"] + t * (r["y1"] - r["y0"]), xref="x", yref="y",
            showarrow=False, text=safe(_tagged(r, connection)), textangle=view.angle(r),
            xshift=xshift, yshift=yshift,
            font=dict(family=themes.mono(theme_name), size=s["small"],
                      color=c[r["kind"]] if r["kind"] != "ACK" else c["text"]),
        )
    _draw_frame_numbers(fig, [rows[i] for i in sorted(placed)], view, c, s)


def _rect(cx: float, cy: float, ux: float, uy: float, width: float, height: float) -> list[tuple[float, float]]:
    """The corners of a ``width`` x ``height`` box centred on (cx, cy), its long side along (ux, uy)."""
    wx, wy, hx, hy = ux * width / 2, uy * width / 2, -uy * height / 2, ux * height / 2
    return [(cx - wx - hx, cy - wy - hy), (cx + wx - hx, cy + wy - hy),
            (cx + wx + hx, cy + wy + hy), (cx - wx + hx, cy - wy + hy)]


def polygons_overlap(a: list, b: list) -> bool:
    """Whether two convex polygons (a segment is one with two corners) intersect: no separating axis."""
    for poly in (a, b):
        for k in range(len(poly) if len(poly) > 2 else 1):
            (x1, y1), (x2, y2) = poly[k], poly[(k + 1) % len(poly)]
            nx, ny = y1 - y2, x2 - x1
            pa = [nx * x + ny * y for x, y in a]
            pb = [nx * x + ny * y for x, y in b]
            if max(pa) < min(pb) or max(pb) < min(pa):
                return False
    return True


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
            safe(utc(float(p["ts"]))),
            who,
            f"flags: {safe(flag_text(p.get('flags')) or 'none')}",
            "seq={} ack={} len={} win={}".format(*(_show(_num(p.get(k))) for k in ("seq", "ack", "len", "win"))),
        ]
        lines += [f"<b>{safe(n)}</b>" for n in r["notes"]]
        if r["lost"]:
            lines.append(f"<b>{safe(r['lost'])}</b>")
        texts.append("<br>".join(lines))
    # Hover points sit where each arrow crosses the capture line: the moment it was captured.
    fig.add_trace(go.Scatter(
        x=[_cross_x(r) for r in rows], y=[r["y"] for r in rows], mode="markers",
        hovertext=texts, hoverinfo="text", showlegend=False, name="packets",
        marker=dict(size=max(s["marker"] * 0.6, 5), color=[c[r["kind"]] for r in rows], line=dict(width=0)),
    ))


def _cross_x(r) -> float:
    x1, y1 = r["full"]
    if y1 == r["y0"]:
        return (r["x0"] + x1) / 2
    f = (r["y"] - r["y0"]) / (y1 - r["y0"])
    return r["x0"] + f * (x1 - r["x0"])


def _layout(fig, connection, hs, total, max_packets, scale, view: _View, rows, c, s):
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
    live, still = list(facts), list(facts)
    if not view.whole:
        shown = sum(1 for r in rows if r["y1"] <= view.bottom)
        live.append(f"opens on the first {shown}: drag up and down, or jump with the buttons")
        still.append(f"the first {shown} of {len(rows)} drawn here (the .html chart scrolls)")
    tickvals, ticktext = scale.ticks(view.bottom - view.top)
    width = s["width"] * 0.9
    fig.update_layout(
        title=dict(text=f"<b>TCP connection {safe(conn)}</b>: {client} \u2192 {server}",
                   subtitle=dict(text=wrap(" \u00b7 ".join(live), width, s["font"]),
                                 font=dict(color=c["muted"], size=s["font"]))),
        xaxis=dict(visible=False, range=list(X_RANGE), fixedrange=True),
        yaxis=dict(title=dict(text=scale.axis_title), range=[view.bottom, view.top],
                   zeroline=False, tickmode="array", tickvals=tickvals, ticktext=ticktext, showgrid=False),
        legend=dict(orientation="h", x=0.5, xanchor="center", y=0, yanchor="top", yref="paper"),
        margin=_margins(s),
        showlegend=True,
        dragmode="pan",
        meta={"static": {"title": {"subtitle": {"text": wrap(" \u00b7 ".join(still), width, s["font"])}}}},
    )
    if not view.whole:
        fig.update_layout(updatemenus=[_jumps(rows, view, s)])


def _jumps(rows, view: _View, s) -> dict:
    """Buttons that scroll the opening view's height to the handshake, the first data, the close."""
    height = view.bottom - view.top
    marks = [("handshake", next((r for r in rows if "SYN" in flag_set(r["p"]["flags"])), rows[0])),
             ("first data", next((r for r in rows if r["kind"] == "data"), None)),
             ("close", next((r for r in rows if r["kind"] in ("FIN", "RST")), None)),
             ("last packet", rows[-1])]
    buttons = []
    for name, r in marks:
        if r is None:
            continue
        top = r["y0"] - 0.1 * height if name != "last packet" else max(r["y1"] + 0.1 * height - height, view.lo)
        top = max(min(top, view.hi - height), view.lo)
        buttons.append(dict(label=name, method="relayout", args=[{"yaxis.range": [top + height, top]}]))
    # a column at the bottom right, beside the server lane: clear of the title, the toolbar and the lanes
    return dict(type="buttons", direction="up", buttons=buttons, showactive=False, x=1.0, xanchor="right",
                y=0.0, yanchor="bottom", pad=dict(r=4, b=4), font=dict(size=s["small"]), name=INTERACTIVE)


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

