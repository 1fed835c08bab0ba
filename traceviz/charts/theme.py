"""The look of every traceviz chart: ``light``, ``dark`` and ``talk``.

Each theme is a plotly template (registered as ``traceviz_<name>``) plus a
palette that chart modules share, so a SYN is the same blue in the ladder, the
TCP time-sequence plot and the timeline, and an HTTP ``wait`` phase is the same
green in every waterfall::

    from traceviz.charts import theme
    c = theme.colors("dark")
    go.Bar(marker_color=c["wait"])
    theme.apply(fig, "talk")

``talk`` is for a projector: 1920x1080 (16:9), type of at least 20 px, black
on white, thick lines, so the back row can read it.

Colours are the Okabe-Ito set (safe for the common colour-vision
deficiencies), brightened for the dark background.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from traceviz.charts.text import safe  # noqa: F401  (re-exported: theme.safe)

THEMES: tuple[str, ...] = ("light", "dark", "talk")
DEFAULT = "light"

FONT = '"Inter", "Segoe UI", "Helvetica Neue", Arial, "Liberation Sans", "DejaVu Sans", sans-serif'
MONO = '"JetBrains Mono", Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace'

_LIGHT = {
    # page
    "background": "#ffffff",
    "plot": "#ffffff",
    "text": "#1b1f24",
    "muted": "#5f6b7a",
    "grid": "#e6e9ee",
    "lane": "#3a4350",
    # endpoints
    "client": "#0072B2",
    "server": "#D55E00",
    "capture": "#7a7a7a",
    # TCP segments
    "SYN": "#0072B2",
    "FIN": "#6A3D9A",
    "RST": "#C0392B",
    "data": "#009E73",
    "ACK": "#7f8c99",
    # TCP analysis events
    "retransmission": "#E0202C",
    "dup-ack": "#E69F00",
    "out-of-order": "#CC79A7",
    "zero-window": "#8B0000",
    # handshake bands
    "band_server": "rgba(213, 94, 0, 0.10)",
    "band_client": "rgba(0, 114, 178, 0.10)",
    # outcomes across connections
    "ok": "#0072B2",
    "syn-retry": "#E69F00",
    "refused": "#C0392B",
    "unanswered": "#6b6b6b",
    # markers on distributions
    "p50": "#009E73",
    "p95": "#D55E00",
    # HTTP phases, HAR 1.2 names (queueing == blocked)
    "queueing": "#A0A7B0",
    "blocked": "#A0A7B0",
    "dns": "#1A9E8F",
    "connect": "#E69F00",
    "tls": "#8E44AD",
    "send": "#56B4E9",
    "wait": "#2CA02C",
    "receive": "#0072B2",
    # HTTP statuses that are trouble: client errors amber, server errors red
    "4xx": "#B35900",
    "5xx": "#C0392B",
}

_DARK = {
    **_LIGHT,
    "background": "#111418",
    "plot": "#111418",
    "text": "#e8ebef",
    "muted": "#9aa5b1",
    "grid": "#2a3038",
    "lane": "#c5ccd4",
    "client": "#56B4E9",
    "server": "#F0883E",
    "capture": "#9a9a9a",
    "SYN": "#56B4E9",
    "FIN": "#C39BD3",
    "RST": "#FF6B6B",
    "data": "#3DDC97",
    "ACK": "#9aa5b1",
    "retransmission": "#FF4D4D",
    "dup-ack": "#F5C542",
    "out-of-order": "#F08CC8",
    "zero-window": "#FF8A80",
    "band_server": "rgba(240, 136, 62, 0.16)",
    "band_client": "rgba(86, 180, 233, 0.16)",
    "ok": "#56B4E9",
    "syn-retry": "#F5C542",
    "refused": "#FF6B6B",
    "unanswered": "#b0b0b0",
    "p50": "#3DDC97",
    "p95": "#F0883E",
    "queueing": "#6c7580",
    "blocked": "#6c7580",
    "dns": "#2EC4B6",
    "connect": "#F5B041",
    "tls": "#BB8FCE",
    "send": "#7FC8F8",
    "wait": "#58D68D",
    "receive": "#5DADE2",
    "4xx": "#F5B041",
    "5xx": "#FF6B6B",
}

# The talk palette is the light one pushed to full contrast: pure black text,
# darker greys, nothing pale enough to vanish on a washed-out projector.
_TALK = {
    **_LIGHT,
    "text": "#000000",
    "muted": "#333333",
    "grid": "#d0d4da",
    "lane": "#000000",
    "ACK": "#4d5866",
    "band_server": "rgba(213, 94, 0, 0.16)",
    "band_client": "rgba(0, 114, 178, 0.16)",
}

_PALETTES = {"light": _LIGHT, "dark": _DARK, "talk": _TALK}

# Sizes charts scale by: base font, small font (labels on arrows), line width,
# marker size, default figure size.  Static exports use width x height.
_SIZES = {
    "light": {"font": 14, "small": 12, "title": 20, "line": 1.6, "marker": 9, "width": 1280, "height": 720},
    "dark": {"font": 14, "small": 12, "title": 20, "line": 1.6, "marker": 9, "width": 1280, "height": 720},
    "talk": {"font": 24, "small": 20, "title": 36, "line": 4.0, "marker": 16, "width": 1920, "height": 1080},
}


def check(theme: str | None) -> str:
    """The theme's name, or ``ValueError`` naming the valid ones."""
    name = DEFAULT if theme is None else str(theme).lower()
    if name not in _PALETTES:
        raise ValueError(f"unknown theme {theme!r}: use one of {', '.join(THEMES)}")
    return name


def colors(theme: str | None = DEFAULT) -> dict[str, str]:
    """The palette (a copy): lanes, TCP flags, analysis events, HTTP phases."""
    return dict(_PALETTES[check(theme)])


def sizes(theme: str | None = DEFAULT) -> dict[str, Any]:
    """Font sizes, line width, marker size and the default figure size."""
    return dict(_SIZES[check(theme)])


def font(theme: str | None = DEFAULT) -> str:
    return FONT


def mono(theme: str | None = DEFAULT) -> str:
    return MONO


def template_name(theme: str | None = DEFAULT) -> str:
    return f"traceviz_{check(theme)}"


def _template(name: str) -> go.layout.Template:
    c, s = _PALETTES[name], _SIZES[name]
    axis = dict(
        gridcolor=c["grid"], zerolinecolor=c["grid"], linecolor=c["muted"],
        tickfont=dict(size=s["font"], color=c["text"]),
        title=dict(font=dict(size=s["font"] + 2, color=c["text"]), standoff=12),
        ticks="outside", tickcolor=c["muted"], ticklen=6 if name == "talk" else 4,
        tickwidth=2 if name == "talk" else 1, linewidth=2 if name == "talk" else 1,
        automargin=True,
    )
    layout = go.Layout(
        font=dict(family=FONT, size=s["font"], color=c["text"]),
        title=dict(font=dict(size=s["title"], color=c["text"]), x=0.01, xanchor="left",
                   y=0.985, yanchor="top"),
        paper_bgcolor=c["background"],
        plot_bgcolor=c["plot"],
        colorway=[c["client"], c["server"], c["data"], c["FIN"], c["dup-ack"],
                  c["RST"], c["send"], c["out-of-order"]],
        xaxis=axis, yaxis=axis,
        legend=dict(font=dict(size=s["small"], color=c["text"]), bgcolor="rgba(0,0,0,0)",
                    bordercolor=c["grid"]),
        hoverlabel=dict(font=dict(family=MONO, size=max(s["small"], 13)),
                        bgcolor=c["background"], bordercolor=c["muted"]),
        hovermode="closest",
        margin=dict(l=80, r=40, t=90, b=70) if name != "talk" else dict(l=130, r=60, t=140, b=110),
    )
    if name == "talk":
        layout.width, layout.height = s["width"], s["height"]
    data = go.layout.template.Data(
        scatter=[go.Scatter(line=dict(width=s["line"]), marker=dict(size=s["marker"]))],
        histogram=[go.Histogram(marker=dict(line=dict(width=0)))],
    )
    return go.layout.Template(layout=layout, data=data)


def register() -> None:
    """Register ``traceviz_light``/``_dark``/``_talk`` with plotly (idempotent)."""
    for name in THEMES:
        pio.templates[f"traceviz_{name}"] = _template(name)


def apply(fig: go.Figure, theme: str | None = DEFAULT) -> go.Figure:
    """Give ``fig`` the theme's template and size: ``talk`` its 16:9 slide, the others their
    height (a chart that has none gets plotly's 450 px in a page, where its furniture collides;
    the width follows the page)."""
    name = check(theme)
    if template_name(name) not in pio.templates:
        register()
    fig.update_layout(template=pio.templates[template_name(name)])
    s = _SIZES[name]
    if name == "talk":
        fig.update_layout(width=s["width"], height=s["height"])
    elif fig.layout.height is None:
        fig.update_layout(height=s["height"])
    return fig


def legend_below(fig: go.Figure, theme: str | None = DEFAULT, width: int | None = None) -> None:
    """A horizontal legend pinned to the figure's bottom edge, under the x axis and its title.

    Pinned to the container, not placed in plot fractions (which move with the
    figure's height); the bottom margin holds the tick labels, the axis title
    and as many legend rows as the entries need at ``width`` px.
    """
    s = _SIZES[check(theme)]
    width = width or fig.layout.width or s["width"]
    names = [t.name for t in fig.data if t.showlegend is not False and t.name]
    entry = [len(n) * s["small"] * 0.58 + s["small"] * 3 for n in names]
    rows, used = 1, 0.0
    for w in entry:
        if used and used + w > width * 0.9:
            rows, used = rows + 1, 0.0
        used += w
    axis = s["font"] * 1.5 + 12 + (s["font"] + 2) * 1.4     # tick labels, standoff, axis title
    fig.update_layout(legend=dict(orientation="h", yref="container", y=0.0, yanchor="bottom", x=0.0,
                                  xanchor="left"),
                      margin=dict(b=int(axis + rows * s["small"] * 1.7 + s["small"])))


register()
