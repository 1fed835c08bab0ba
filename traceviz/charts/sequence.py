"""Sequence diagrams: a lane per host, an arrow per packet or message, time flowing down.

The TCP ladder (``ladder``), the TLS handshake (``tls``), the QUIC ladder
(``quic``) and the proxy's two legs (``proxy``) are drawn here; each chart
says what its lanes and arrows are, this module decides where they go:

- **Time to scale**, in milliseconds, with a long silence cut to a short,
  marked break (:class:`Warp`), never inside a span the chart annotates.
- **Arrows cross the capture point when they were captured.**  An arrow
  leaves its sender's lane ``before`` ms ahead of the capture and reaches
  the receiver ``after`` ms later (the one-way times on either side of the
  capture point, from a handshake: :class:`Halves`), so a round trip reads
  as one.  A floor keeps every arrow visibly slanted.
- **The figure keeps the theme's size.**  A long exchange opens on its
  first arrows (as many as leave room for a label each) and the rest is a
  drag away, with buttons that jump to the moments the chart names; an
  image shows the opening view and says how much more there is.
- **Labels follow their arrow**, each where it crosses no other label, no
  arrow and none of the chart's own notes, the most important first
  (``Arrow.rank``).  A label too long for its arrow breaks at its
  separators; one that finds no room is left to the hover text, never
  stacked on another.

A flow graph across many hosts is the same diagram with more lanes: one
:class:`Lane` per host at x = 0, 1, 2..., each :class:`Arrow` naming its
sender's and receiver's lane and its one-way times; the capture point is
then a lane (``capture_x=None``), as the proxy's is.
"""

from __future__ import annotations

import bisect
import html
import math
import re
from dataclasses import dataclass, field
from typing import Iterable

import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.export import INTERACTIVE
from traceviz.charts.text import fmt_ms, wrap

MIN_SLANT = 0.025          # of the opening view's height, so arrows never look horizontal
ROW_EM = 2.0               # vertical room per arrow in the opening view, in label heights
MIN_ROOM = 4               # arrows the opening view holds at least (a handshake's worth)
LOST_AT = 0.55             # how far past the capture point a lost packet's arrow reaches
TRIES = (0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78)   # where along its arrow a label is tried, in turn
MIN_MEASURED = 20e-6       # seconds: a shorter handshake does not say where the capture point is


# --- what a chart hands over --------------------------------------------------------------

@dataclass
class Lane:
    """One host: its x position, the (already safe) text above it, its colour."""

    x: float
    title: str
    color: str


@dataclass(frozen=True)
class Style:
    """How the arrows of one kind look, and their legend entry (the count is added)."""

    name: str
    color: str
    width: float
    dash: str = "solid"
    head: float = 1.5          # arrowhead size, in marker sizes


@dataclass
class Arrow:
    """One packet or message, from lane ``x0`` to lane ``x1``, captured at ``t`` ms.

    ``before``/``after``: measured ms from the sender to the capture point and
    on to the receiver; ``share``: the part of the way (in x) that lies before
    the capture point, which the slant floor is shared by.  ``text`` is the
    label (safe markup; it may break at ``sep``), ``rank`` its turn to be
    placed (lowest first; None: hover only), ``tag`` the text beside the
    arrow's start (a frame number), ``lost`` a packet that never arrived
    (drawn short of the far lane, with a cross).
    """

    x0: float
    x1: float
    t: float
    before: float = 0.0
    after: float = 0.0
    share: float = 0.5
    style: str = ""
    text: str = ""
    sep: str | None = None
    rank: int | None = 1
    tag: str = ""
    hover: str = ""
    color: str | None = None   # of the label; its style's colour by default
    lost: bool = False
    data: dict = field(default_factory=dict)   # the chart's own facts about it
    # laid out by Diagram: the capture moment, the drawn start and end, where it would have arrived
    y: float = 0.0
    y0: float = 0.0
    y1: float = 0.0
    end_x: float = 0.0
    full: tuple[float, float] = (0.0, 0.0)

    def spans(self, floor: float) -> tuple[float, float]:
        """(before, after) never flatter than ``floor`` ms over the whole way."""
        return max(self.before, floor * self.share), max(self.after, floor * (1 - self.share))

    @property
    def rightward(self) -> bool:
        return self.x1 > self.x0


# --- where the capture point is ----------------------------------------------------------

@dataclass
class Halves:
    """Two lanes (client at 0, server at 1) and the capture point between them.

    ``client``/``server``: ms an arrow spends between its lane and the
    capture point, half of each side's round trip (a handshake's: SYN ->
    SYN-ACK is the server's side, SYN-ACK -> ACK the client's).  The line is
    kept off the lanes for legibility; the slant is then shared in the drawn
    proportion, so arrows still cross it at capture time.
    """

    capture_x: float = 0.5
    client: float = 0.0
    server: float = 0.0
    measured: bool = False

    @classmethod
    def of(cls, server_half: float | None, client_half: float | None) -> "Halves":
        """From the two halves of a handshake's round trip, in seconds (None: unknown)."""
        sh, ch = server_half, client_half
        # Below ~20 us the split is timestamp noise (captures tick in microseconds).
        if sh is not None and ch is not None and sh >= 0 and ch >= 0 and sh + ch >= MIN_MEASURED:
            total = (sh + ch) * 500.0          # one way is half a round trip, in ms
            x = min(max(ch / (sh + ch), 0.12), 0.88)
            return cls(x, x * total, (1 - x) * total, True)
        return cls()

    def arrow(self, direction: str, t: float, **kw) -> Arrow:
        """An arrow client -> server (``c2s``) or back, captured at ``t`` ms."""
        x = self.capture_x
        if direction == "c2s":
            return Arrow(0.0, 1.0, t, self.client, self.server, x, **kw)
        return Arrow(1.0, 0.0, t, self.server, self.client, 1 - x, **kw)


# --- time ---------------------------------------------------------------------------------

class Warp:
    """Real milliseconds -> drawn position, with long silences cut to a short, marked break.

    A gap is cut when it alone would take more than ``CUT`` of the drawing; it
    is then drawn ``BREAK`` of the rest's height.  Everything else keeps its
    true scale, so slopes and intervals read correctly on either side.  A gap
    inside a ``keep`` span (an annotated handshake) is never cut.
    """

    CUT = 0.25
    BREAK = 0.06

    def __init__(self, breaks: list[tuple[float, float, float, float]], lo: float, hi: float, height: float):
        self.breaks = breaks      # (a, b, first packet before, first packet after) in real ms
        self.lo, self.hi, self.height = lo, hi, height

    @classmethod
    def around(cls, times: list[float], pad: float, keep: Iterable[tuple[float, float]] = ()) -> "Warp":
        """Cut the silences between ``times`` (each padded by ``pad`` ms, an arrow's reach)."""
        spans = sorted((t - pad, t + pad, t) for t in times)
        merged: list[list[float]] = []
        for a, b, t in spans:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
                merged[-1][3] = max(merged[-1][3], t)
            else:
                merged.append([a, b, t, t])
        lo, hi = merged[0][0], merged[-1][1]
        keep = list(keep)
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


# --- the page -----------------------------------------------------------------------------

def margins(s: dict) -> dict:
    """The title, two lines of subtitle, then the lanes' names above the plot; the legend below."""
    return dict(l=int(s["font"] * 7), r=int(s["font"] * 1.5),
                t=int(s["title"] * 1.7 + s["font"] * 6.5 + 16), b=int(s["font"] * 4.5))


@dataclass
class View:
    """The opening view (drawn ms ``top``..``bottom``), the whole drawing (``lo``..``hi``) and
    the pixel scale of the opening view, so text can follow an arrow's true on-screen angle."""

    top: float
    bottom: float
    lo: float
    hi: float
    px_x: float           # pixels per lane-distance unit
    px_y: float           # pixels per drawn millisecond

    @classmethod
    def of(cls, s: dict, m: dict, x_range: tuple[float, float], top: float, bottom: float,
           lo: float, hi: float) -> "View":
        plot_w = s["width"] - m["l"] - m["r"]
        plot_h = s["height"] - m["t"] - m["b"]
        span = max(bottom - top, 1e-6)
        # room under the last arrow for the capture-point caption
        pad_px = s["small"] * 2.4
        px_y = (plot_h - pad_px - s["small"]) / span
        return cls(top - s["small"] / px_y, bottom + pad_px / px_y, lo - s["small"] / px_y,
                   hi + pad_px / px_y, plot_w / (x_range[1] - x_range[0]), px_y)

    @property
    def whole(self) -> bool:
        return self.top <= self.lo + 1e-9 and self.bottom >= self.hi - 1e-9

    def angle(self, a: Arrow) -> float:
        """Degrees clockwise, for text reading left to right along the arrow."""
        (xl, yl), (xr, yr) = sorted(((a.x0, a.y0), (a.end_x, a.y1)))
        return math.degrees(math.atan2((yr - yl) * self.px_y, (xr - xl) * self.px_x))

    def px(self, x: float, y: float) -> tuple[float, float]:
        return x * self.px_x, y * self.px_y


class Batch:
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
        self.annotations, self.shapes = [], []


# --- the diagram --------------------------------------------------------------------------

class Diagram:
    """Lanes and arrows laid out on one time scale, drawn into a figure.

    ``x_range``: the x axis (lanes and the notes beside them); ``capture_x``:
    the dashed capture line between two lanes (None when a lane is the
    capture point); ``keep``: real-time spans never cut (ms).  On creation
    the arrows get their drawn ends (``y0``, ``y1``) and capture moment
    (``y``); the ``draw_*`` methods then add the parts in the order a chart
    wants them, and :meth:`layout` the axes, titles and scroll buttons.
    """

    def __init__(self, theme: str, lanes: list[Lane], arrows: list[Arrow], styles: dict[str, Style], *,
                 x_range: tuple[float, float], capture_x: float | None = None,
                 keep: Iterable[tuple[float, float]] = (), axis_title: str = "ms since the first packet",
                 caption: str | None = None, margins_px: dict | None = None):
        self.theme = themes.check(theme)
        self.c, self.s = themes.colors(self.theme), themes.sizes(self.theme)
        self.lanes, self.arrows, self.styles = lanes, arrows, styles
        self.x_range, self.capture_x, self.keep = x_range, capture_x, list(keep)
        self.axis_title, self.caption = axis_title, caption
        self.margins = margins_px or margins(self.s)
        self.obstacles: list[list[tuple[float, float]]] = []     # px polygons labels keep clear of
        # As many arrows as leave room for a label each; fewer when that lets more of the arrows
        # that must be labelled (rank 0) in the opening view find room: a crowded handshake is
        # drawn larger.  Of the rooms tried, the largest that misses fewest.
        m, s = self.margins, self.s
        room = max(int((s["height"] - m["t"] - m["b"]) / (s["small"] * ROW_EM)), MIN_ROOM)
        best = None
        while True:
            self._fit(room)
            view, placed = self.view, self._place(self._furniture())
            missing = sum(1 for i, a in enumerate(self.arrows) if a.rank == 0 and a.text and i not in placed
                          and view.top <= a.y0 <= view.bottom)
            if best is None or missing < best[0]:
                best = (missing, room)
            shown = sum(1 for a in self.arrows if a.y0 <= view.bottom)
            fewer = max(min(room, shown) * 2 // 3, MIN_ROOM)
            if not missing or fewer >= min(room, shown):      # nothing to gain from fewer rows
                break
            room = fewer
        if best[1] != room:
            self._fit(best[1])

    # -- layout

    def _fit(self, room: int) -> None:
        # The slant: the measured one-way times; at least a sliver of the opening view, found in
        # two steps (a first guess from how closely the packets follow each other).
        times = [a.t for a in self.arrows]
        floor = _spacing(times)
        for _ in range(2):
            warp, window = self._scale(times, floor, room)
            floor = MIN_SLANT * (window[1] - window[0])
        self.warp, window = self._scale(times, floor, room)
        for a in self.arrows:
            before, after = a.spans(floor)
            a.y, a.y0, a.y1 = self.warp(a.t), self.warp(a.t - before), self.warp(a.t + after)
            a.end_x, a.full = a.x1, (a.x1, a.y1)
            if a.lost:      # past the capture point, short of the other lane
                f = a.share + LOST_AT * (1 - a.share)
                a.end_x, a.y1 = a.x0 + f * (a.x1 - a.x0), a.y0 + f * (a.y1 - a.y0)
        self.view = View.of(self.s, self.margins, self.x_range, window[0], window[1],
                            min(a.y0 for a in self.arrows), max(a.y1 for a in self.arrows))

    def _scale(self, times: list[float], floor: float, room: int) -> tuple[Warp, tuple[float, float]]:
        spans = [a.spans(floor) for a in self.arrows]
        warp = Warp.around(times, max(max(b, f) for b, f in spans), self.keep)
        return warp, self._window(warp, spans, room)

    def _window(self, warp: Warp, spans: list[tuple[float, float]], room: int) -> tuple[float, float]:
        """The drawn span the chart opens on: every arrow if there are ``room`` or fewer, else the
        first ``room`` (and at least a round trip and a half, so arrows keep their slant)."""
        ends = [(warp(a.t - b), warp(a.t + f)) for a, (b, f) in zip(self.arrows, spans)]
        top, bottom = min(e[0] for e in ends), max(e[1] for e in ends)
        if len(ends) <= room:
            return top, bottom
        first = max(e[1] for e in ends[:room])
        return top, min(bottom, max(first, top + 3.0 * max(b + f for b, f in spans)))

    def at(self, t: float) -> float:
        """The drawn position of ``t`` real ms."""
        return self.warp(t)

    def block(self, x: float, y: float, width_px: float, height_px: float,
              xanchor: str = "center", yanchor: str = "middle") -> None:
        """Keep labels clear of a note of this size at (x, y) (data coordinates)."""
        cx, cy = self.view.px(x, y)
        cx += {"left": width_px / 2, "right": -width_px / 2}.get(xanchor, 0.0)
        cy += {"top": height_px / 2, "bottom": -height_px / 2}.get(yanchor, 0.0)   # y grows downwards
        self.obstacles.append(_rect(cx, cy, 1.0, 0.0, width_px, height_px))

    # -- drawing

    def _caption_x(self) -> float:
        return self.capture_x if self.capture_x is not None else (self.lanes[0].x + self.lanes[-1].x) / 2

    def _furniture(self) -> list[list[tuple[float, float]]]:
        """What labels keep clear of besides the chart's own notes: the opening view's top and
        bottom edges (a label across one would be cut off in an image), the caption, the cuts' notes."""
        s, view = self.s, self.view
        out = [[view.px(self.x_range[0], y), view.px(self.x_range[1], y)] for y in (view.top, view.bottom)]
        h = s["small"] * 1.3
        if self.caption:
            x, y = view.px(self._caption_x(), view.bottom)
            out.append(_rect(x, y - h / 2, 1.0, 0.0, _width(self.caption, s["small"]), h))
        middle = (self.lanes[0].x + self.lanes[-1].x) / 2
        for ya, yb, text in self.warp.cuts():
            x, y = view.px(middle, (ya + yb) / 2)
            out.append(_rect(x, y, 1.0, 0.0, _width(text, s["small"]) + s["small"] * 3, h))
        return out

    def draw_frame(self, batch: Batch) -> None:
        """The lanes (broken at the cuts) and their names, the capture line, the caption, the cuts."""
        c, s, view, caption = self.c, self.s, self.view, self.caption
        cuts = self.warp.cuts()
        edges = [view.lo] + [v for ya, yb, _ in cuts for v in (ya, yb)] + [view.hi]
        lane_w = s["line"] * 2.2
        for lane in self.lanes:
            for i in range(0, len(edges), 2):
                batch.add_shape(type="line", x0=lane.x, x1=lane.x, y0=edges[i], y1=edges[i + 1], layer="below",
                                line=dict(color=lane.color, width=lane_w))
            batch.add_annotation(x=lane.x, y=1.0, xref="x", yref="paper", yanchor="bottom", showarrow=False,
                                 text=lane.title, yshift=4, font=dict(color=lane.color, size=s["font"] + 1))
        if self.capture_x is not None:
            for i in range(0, len(edges), 2):
                batch.add_shape(type="line", x0=self.capture_x, x1=self.capture_x, y0=edges[i], y1=edges[i + 1],
                                line=dict(color=c["capture"], width=max(s["line"] * 0.75, 1), dash="dash"),
                                layer="below")
        if caption:
            batch.add_annotation(x=self._caption_x(), y=view.bottom, xref="x", yref="y", yanchor="bottom", showarrow=False,
                                 text=caption, font=dict(color=c["muted"], size=s["small"]), bgcolor=c["background"])
        middle = (self.lanes[0].x + self.lanes[-1].x) / 2
        for ya, yb, text in cuts:
            batch.add_shape(type="rect", x0=self.x_range[0], x1=self.x_range[1], y0=ya, y1=yb, layer="below",
                            fillcolor=c["grid"], opacity=0.55, line=dict(width=0))
            batch.add_annotation(x=middle, y=(ya + yb) / 2, xref="x", yref="y", showarrow=False,
                                 text=f"\u22ef {text} \u22ef",
                                 font=dict(color=c["muted"], size=s["small"]), bgcolor=c["background"])

    def bracket(self, batch: Batch, x: float, y0: float, y1: float, lines: list[str], color: str | None = None,
                side: str = "right") -> None:
        """A bracket beside the lanes from ``y0`` to ``y1`` and its note (safe markup lines)."""
        c, s = self.c, self.s
        tick = 0.015 if side == "right" else -0.015
        batch.add_shape(type="path", line=dict(color=color or c["muted"], width=max(s["line"] * 0.75, 1)),
                        path=f"M {x - tick},{y0} L {x},{y0} L {x},{y1} L {x - tick},{y1}")
        xn = x + (0.02 if side == "right" else -0.02)
        anchor = "left" if side == "right" else "right"
        batch.add_annotation(x=xn, y=(y0 + y1) / 2, xref="x", yref="y", xanchor=anchor, yanchor="middle",
                             showarrow=False, align=anchor, text="<br>".join(lines),
                             font=dict(color=color or c["text"], size=s["small"]), bgcolor=c["background"])
        width = max(_width(line, s["small"]) for line in lines)
        self.block(xn, (y0 + y1) / 2, width, len(lines) * s["small"] * 1.3, xanchor=anchor)

    def draw_arrows(self, batch: Batch, hover_lines: bool = False) -> None:
        """One trace per style (its legend entry counts the arrows), lost ones ending in a cross.

        ``hover_lines``: each arrow's line is a trace of its own carrying its hover text (for a
        diagram of a few arrows, hovered anywhere along them); the heads stay one trace per style.
        """
        c, s = self.c, self.s
        for key, style in self.styles.items():
            mine = [a for a in self.arrows if a.style == key]
            if not mine:
                continue
            line = dict(color=style.color, width=style.width, dash=style.dash)
            if hover_lines:
                for a in mine:
                    batch.add_trace(go.Scatter(x=[a.x0, a.end_x], y=[a.y0, a.y1], mode="lines", line=line,
                                               showlegend=False, legendgroup=key,
                                               hovertemplate=a.hover + "<extra></extra>"))
            xs, ys, sizes, symbols = [], [], [], []
            for a in mine:
                xs += [a.x0, a.end_x, None]
                ys += [a.y0, a.y1, None]
                sizes += [0, s["marker"] * (1.7 if a.lost else style.head), 0]
                symbols += ["arrow", "x-thin" if a.lost else "arrow", "arrow"]
            batch.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines+markers", name=f"{style.name} ({len(mine)})",
                legendgroup=key, hoverinfo="skip", line=line,
                marker=dict(symbol=symbols, angleref="previous", size=sizes, color=style.color,
                            line=dict(width=max(s["line"], 2), color=style.color)),
            ))
        lost = [a for a in self.arrows if a.lost]
        if lost:   # a legend entry saying what the cross means
            batch.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"never arrived ({len(lost)})",
                                       marker=dict(symbol="x-thin", size=s["marker"], color=c["RST"],
                                                   line=dict(width=max(s["line"], 2), color=c["RST"]))))

    def draw_labels(self, batch: Batch) -> list[Arrow]:
        """Labels along the arrows (see :meth:`_place`), and the frame numbers of the labelled ones.
        Returns the arrows that got a label; the others keep their hover text."""
        s, view = self.s, self.view
        placed = self._place(self._furniture() + self.obstacles)
        font = themes.mono(self.theme)
        for i in sorted(placed):
            a = self.arrows[i]
            t, xshift, yshift, text = placed[i]
            batch.add_annotation(
                x=a.x0 + t * (a.end_x - a.x0), y=a.y0 + t * (a.y1 - a.y0), xref="x", yref="y",
                showarrow=False, text=text, textangle=view.angle(a), xshift=xshift, yshift=yshift,
                font=dict(family=font, size=s["small"], color=a.color or self.styles[a.style].color),
            )
        mine = [self.arrows[i] for i in sorted(placed)]
        self._draw_tags(batch, mine)
        return mine

    def _place(self, obstacles: list[list[tuple[float, float]]]) -> dict[int, tuple[float, float, float, str]]:
        """Where each label goes: arrow -> (t along it, x shift px, y shift px, text with its breaks).

        Arrows are taken by rank, then in order; each label tries the arrow's
        middle, then points nearer its ends, above and below it, and goes
        where it crosses no label, arrow, frame number or ``obstacles``.
        Sizes are those of the opening view (a monospace character is 0.6 em
        wide).  An arrow whose label finds no room keeps only its hover text.
        """
        s, view = self.s, self.view
        line_h = s["small"] * 1.3
        char = s["small"] * 0.6
        gap = s["small"] * 0.15                       # px between the arrow and its text
        segs = [(view.px(a.x0, a.y0), view.px(a.end_x, a.y1)) for a in self.arrows]
        by_top = sorted(range(len(segs)), key=lambda i: min(segs[i][0][1], segs[i][1][1]))
        tops = [min(segs[i][0][1], segs[i][1][1]) for i in by_top]
        tallest = max((abs(b[1] - a[1]) for a, b in segs), default=0.0)
        boxes: list[tuple[float, float, list]] = [(min(p[1] for p in o), max(p[1] for p in o), o) for o in obstacles]
        placed: dict[int, tuple[float, float, float, str]] = {}

        def free(i, corners) -> bool:
            top, bottom = min(p[1] for p in corners), max(p[1] for p in corners)
            for btop, bbottom, other in boxes:
                if btop <= bottom and bbottom >= top and polygons_overlap(corners, other):
                    return False
            lo = bisect.bisect_left(tops, top - tallest)
            hi = bisect.bisect_right(tops, bottom)
            return not any(j != i and polygons_overlap(corners, list(segs[j]))
                           for j in (by_top[k] for k in range(lo, hi)))

        def spot(i, lines):
            """The first free place for these lines along arrow ``i``: (t, corners, x and y shift)."""
            (ax, ay), (bx, by) = segs[i]
            length = math.hypot(bx - ax, by - ay)
            ux, uy = (bx - ax) / length, (by - ay) / length
            nx, ny = (uy, -ux) if -ux < 0 else (-uy, ux)        # the normal pointing up the screen
            width = max(len(_visible(line)) for line in lines) * char + 4
            height = line_h * len(lines)
            lift = height / 2 + gap
            for t in TRIES:
                if min(t, 1 - t) * length < width / 2:
                    continue                                   # the text would run past a lane
                for ox, oy in ((lift * nx, lift * ny), (-lift * nx, -lift * ny)):
                    corners = _rect(ax + t * (bx - ax) + ox, ay + t * (by - ay) + oy, ux, uy, width, height)
                    if free(i, corners):
                        return t, corners, ox, -oy             # annotation shifts count y upwards
            return None

        order = sorted((i for i, a in enumerate(self.arrows) if a.rank is not None and a.text),
                       key=lambda i: (self.arrows[i].rank, i))
        for i in order:
            (ax, ay), (bx, by) = segs[i]
            length = math.hypot(bx - ax, by - ay)
            if length < 1e-9:
                continue
            for lines in _wraps(self.arrows[i], length, char):
                got = spot(i, lines)
                if got is None:
                    continue
                t, corners, xshift, yshift = got
                boxes.append((min(p[1] for p in corners), max(p[1] for p in corners), corners))
                tag = self._tag_box(self.arrows[i])
                if tag:                                        # its frame number, beside the arrow's start
                    boxes.append((min(p[1] for p in tag), max(p[1] for p in tag), tag))
                placed[i] = (t, xshift, yshift, "<br>".join(lines))
                break
        return placed

    def _tag_box(self, a: Arrow) -> list[tuple[float, float]] | None:
        if not a.tag:
            return None
        width, height = _width(a.tag, self.s["small"]), self.s["small"] * 1.3
        x, y = self.view.px(a.x0 - 0.012 if a.rightward else a.x0 + 0.012, a.y0)
        return _rect(x - width / 2 if a.rightward else x + width / 2, y, 1.0, 0.0, width, height)

    def _draw_tags(self, batch: Batch, mine: list[Arrow]) -> None:
        # Beside each labelled arrow's start; arrows sent together from one lane share a tag.
        c, s = self.c, self.s
        min_gap = s["small"] * 1.2 / self.view.px_y
        tags: list[list] = []                         # [x, y, (lane, rightward), [tags]]
        for a in mine:
            if not a.tag:
                continue
            key = (a.x0, a.rightward)
            last = next((t for t in reversed(tags) if t[2] == key), None)
            if last is not None and abs(a.y0 - last[1]) < min_gap:
                last[3].append(a.tag)
                continue
            x = a.x0 - 0.012 if a.rightward else a.x0 + 0.012
            tags.append([x, a.y0, key, [a.tag]])
        batch.add_trace(go.Scatter(
            x=[t[0] for t in tags], y=[t[1] for t in tags], mode="text", hoverinfo="skip", showlegend=False,
            name="frames", text=[" ".join(t[3]) for t in tags],
            textposition=["middle left" if t[2][1] else "middle right" for t in tags],
            textfont=dict(size=s["small"], color=c["muted"]),
        ))

    def draw_hover(self, batch: Batch, name: str = "packets") -> None:
        """A point per arrow where it crosses the capture point (the moment it was captured)."""
        s = self.s
        batch.add_trace(go.Scatter(
            x=[_cross_x(a) for a in self.arrows], y=[a.y for a in self.arrows], mode="markers",
            hovertext=[a.hover for a in self.arrows], hoverinfo="text", showlegend=False, name=name,
            marker=dict(size=max(s["marker"] * 0.6, 5), line=dict(width=0),
                        color=[self.styles[a.style].color for a in self.arrows]),
        ))

    def layout(self, fig: go.Figure, title: str, facts: list[str], marks: list[tuple[str, Arrow | None]] = (),
               last: str = "last packet", legend_rows: int = 1) -> None:
        """Title, subtitle (``facts``, and in a long diagram how much the opening view shows), the
        time axis, the legend under the plot, and buttons that jump to ``marks`` and to the end."""
        c, s, view = self.c, self.s, self.view
        live, still = list(facts), list(facts)
        if not view.whole:
            shown = sum(1 for a in self.arrows if a.y1 <= view.bottom)
            live.append(f"opens on the first {shown}: drag up and down, or jump with the buttons")
            still.append(f"the first {shown} of {len(self.arrows)} drawn here (the .html chart scrolls)")
        tickvals, ticktext = self.warp.ticks(view.bottom - view.top)
        width = s["width"] * 0.9
        fig.update_layout(
            title=dict(text=title, subtitle=dict(text=wrap(" \u00b7 ".join(live), width, s["font"]),
                                                 font=dict(color=c["muted"], size=s["font"]))),
            xaxis=dict(visible=False, range=list(self.x_range), fixedrange=True),
            yaxis=dict(title=dict(text=self.axis_title), range=[view.bottom, view.top],
                       zeroline=False, tickmode="array", tickvals=tickvals, ticktext=ticktext, showgrid=False),
            legend=dict(orientation="h", x=0.5, xanchor="center", y=0, yanchor="top", yref="paper"),
            margin=self.margins,
            showlegend=True,
            dragmode="pan",
            meta={"static": {"title": {"subtitle": {"text": wrap(" \u00b7 ".join(still), width, s["font"])}}}},
        )
        if not view.whole:
            fig.update_layout(updatemenus=[self._jumps(list(marks) + [(last, None)])])

    def _jumps(self, marks: list[tuple[str, Arrow | None]]) -> dict:
        """Buttons that scroll the opening view's height to each mark (None: the last arrow)."""
        view = self.view
        height = view.bottom - view.top
        buttons = []
        for name, a in marks:
            if a is None:
                top = max(self.arrows[-1].y1 + 0.1 * height - height, view.lo)
            else:
                top = a.y0 - 0.1 * height
            top = max(min(top, view.hi - height), view.lo)
            buttons.append(dict(label=name, method="relayout", args=[{"yaxis.range": [top + height, top]}]))
        # a column at the bottom right, beside the last lane: clear of the title, the toolbar and the lanes
        return dict(type="buttons", direction="up", buttons=buttons, showactive=False, x=1.0, xanchor="right",
                    y=0.0, yanchor="bottom", pad=dict(r=4, b=4), font=dict(size=self.s["small"]), name=INTERACTIVE)


# --- geometry -----------------------------------------------------------------------------

def _wraps(a: Arrow, length: float, char: float) -> list[list[str]]:
    """The ways to lay a label out along an arrow ``length`` px long, fewest lines first: as
    wide as the arrow allows, then narrower, so it can sit in the middle where arrows part most."""
    out: list[list[str]] = []
    for most in (0.9, 0.6):
        lines = _lines(a, length * most, char)
        if lines not in out:
            out.append(lines)
    return out


def _lines(a: Arrow, most_px: float, char: float) -> list[str]:
    """The label on one line, or broken at its separators into lines of at most ``most_px``."""
    if not a.sep or len(_visible(a.text)) * char <= most_px:
        return [a.text]
    most = max(int(most_px / char), 1)
    lines: list[str] = []
    for part in a.text.split(a.sep):
        if lines and len(_visible(lines[-1] + a.sep + part)) <= most:
            lines[-1] += a.sep + part
        else:
            lines.append(part)
    return lines


def _width(text: str, size: float) -> float:
    """Pixels a line of proportional text takes (an average glyph is 0.55 em, a bold one more)."""
    return len(_visible(text)) * size * 0.6


def _visible(text: str) -> str:
    """What markup shows: tags dropped, entities read."""
    return html.unescape(re.sub(r"<[^>]*>", "", text))


def _cross_x(a: Arrow) -> float:
    x1, y1 = a.full
    if y1 == a.y0:
        return (a.x0 + x1) / 2
    f = (a.y - a.y0) / (y1 - a.y0)
    return a.x0 + f * (x1 - a.x0)


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
