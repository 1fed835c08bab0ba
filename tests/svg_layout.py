"""Where plotly put a chart's furniture, read from the SVG it exports (kaleido, as ``--chart x.svg``).

The browser lays a chart out (automargins, legend size, text widths), so the
exported SVG is the ground truth of what a reader sees.  Boxes come from it
as drawn: the legend's and each annotation's background rectangle (measured
by the browser), and for titles and axis titles the text's anchor point,
size and length (an average glyph is taken as 0.55 em wide, 0.6 for the
monospace font; a text broken into lines is as wide as its longest line and
1.3 em taller for each line after the first).  Rotated annotations (the ladder's arrow labels) are left
out: their placement has its own test.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from traceviz.charts.sequence import polygons_overlap as intersect  # noqa: F401  (convex polygons, segments too)

SVG = "{http://www.w3.org/2000/svg}"
EM = 0.55


@dataclass(frozen=True)
class Box:
    kind: str          # title, subtitle, xtitle, ytitle, legend, annotation
    text: str
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: "Box", slack: float = 1.0) -> bool:
        return (self.x0 + slack < other.x1 and other.x0 + slack < self.x1
                and self.y0 + slack < other.y1 and other.y0 + slack < self.y1)


def _translate(el) -> tuple[float, float]:
    m = re.search(r"translate\(([-\d.e]+)[ ,]+([-\d.e]+)\)", el.get("transform", ""))
    return (float(m.group(1)), float(m.group(2))) if m else (0.0, 0.0)


def _size(el) -> float:
    m = re.search(r"font-size:\s*([\d.]+)px", el.get("style", ""))
    return float(m.group(1)) if m else 12.0


def _text(el) -> str:
    return "".join(el.itertext())


def font_sizes(svg: str) -> list[tuple[str, float]]:
    """(text, font size px) of every piece of text the chart shows."""
    root = ET.fromstring(svg)
    out = []
    for el in root.iter(f"{SVG}text"):
        text = _text(el).strip()
        if text:
            out.append((text, _size(el)))
    return out


def boxes(svg: str) -> list[Box]:
    root = ET.fromstring(svg)
    parent = {c: p for p in root.iter() for c in p}

    def offset(el) -> tuple[float, float]:
        return _offset(parent, el)

    out = []
    for el in root.iter(f"{SVG}text"):
        cls = el.get("class", "")
        kind = {"gtitle": "title", "gtitle-subtitle": "subtitle"}.get(cls)
        kind = kind or ("xtitle" if re.fullmatch(r"x\d*title", cls) else "ytitle" if re.fullmatch(r"y\d*title", cls) else None)
        text = _text(el).strip()
        if kind is None or not text:
            continue
        size = _size(el)
        # a text broken with <br> is one tspan per line, each 1.3 em under the last
        lines = [_text(t) for t in el if t.tag == f"{SVG}tspan" and t.get("class") == "line"] or [text]
        width = max(len(line) for line in lines) * size * (0.6 if "Mono" in el.get("style", "") else EM)
        below = (len(lines) - 1) * 1.3 * size
        x, y = float(el.get("x", 0)), float(el.get("y", 0))
        ox, oy = offset(parent.get(el))
        x, y = x + ox, y + oy
        if kind in ("title", "subtitle"):          # dy=0.7em: y is the top of the text
            out.append(Box(kind, text, x, y - 0.1 * size, x + width, y + 0.95 * size + below))
        elif kind == "xtitle":
            out.append(Box(kind, text, x - width / 2, y - 0.8 * size, x + width / 2, y + 0.25 * size))
        else:                                     # rotated -90 about (x, y)
            out.append(Box(kind, text, x - 0.8 * size, y - width / 2, x + 0.25 * size, y + width / 2))
    for g in root.iter(f"{SVG}g"):
        cls = g.get("class", "")
        if cls == "legend":
            rect = next((r for r in g if r.tag == f"{SVG}rect" and r.get("class") == "bg"), None)
            if rect is not None:
                x, y = offset(g)
                out.append(Box("legend", "", x, y, x + float(rect.get("width")), y + float(rect.get("height"))))
        elif cls == "annotation-text-g":
            angle = re.search(r"rotate\(([-\d.e]+)", g.get("transform", ""))
            if angle and abs(float(angle.group(1))) > 0.5:
                continue
            rect = next(g.iter(f"{SVG}rect"), None)
            if rect is None:
                continue
            x, y = offset(parent[rect])
            x, y = x + float(rect.get("x", 0)), y + float(rect.get("y", 0))
            out.append(Box("annotation", "".join(g.itertext()).strip(), x, y,
                           x + float(rect.get("width")), y + float(rect.get("height"))))
    return out


def clashes(svg: str) -> list[tuple[Box, Box]]:
    """Pairs of furniture boxes that overlap."""
    bs = boxes(svg)
    return [(a, b) for i, a in enumerate(bs) for b in bs[i + 1:] if a.overlaps(b)]


def canvas(svg: str) -> tuple[float, float]:
    root = ET.fromstring(svg)
    return float(root.get("width")), float(root.get("height"))


def labels(svg: str, inset: float = 2.0) -> list[tuple[str, list[tuple[float, float]]]]:
    """Rotated annotations (the ladder's arrow labels): their text and drawn corners, ``inset`` px in."""
    root = ET.fromstring(svg)
    parent = {c: p for p in root.iter() for c in p}
    out = []
    for g in root.iter(f"{SVG}g"):
        if g.get("class") != "annotation-text-g":
            continue
        m = re.search(r"rotate\(([-\d.e]+),([-\d.e]+),([-\d.e]+)\)", g.get("transform", ""))
        rect = next(g.iter(f"{SVG}rect"), None)
        if not m or rect is None or abs(float(m.group(1))) <= 0.5:
            continue
        angle, cx, cy = (float(v) for v in m.groups())
        x, y = _offset(parent, parent[rect])
        x0, y0 = x + float(rect.get("x", 0)) + inset, y + float(rect.get("y", 0)) + inset
        x1, y1 = x0 + float(rect.get("width")) - 2 * inset, y0 + float(rect.get("height")) - 2 * inset
        px, py = _offset(parent, g)
        cx, cy = cx + px, cy + py
        a = math.radians(angle)
        corners = [(cx + (u - cx) * math.cos(a) - (v - cy) * math.sin(a),
                    cy + (u - cx) * math.sin(a) + (v - cy) * math.cos(a)) for u, v in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
        out.append(("".join(g.itertext()).strip(), corners))
    return out


def line_segments(svg: str) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Every straight piece of every scatter line, in drawn pixels."""
    root = ET.fromstring(svg)
    parent = {c: p for p in root.iter() for c in p}
    out = []
    for path in root.iter(f"{SVG}path"):
        if "js-line" not in (path.get("class") or ""):
            continue
        ox, oy = _offset(parent, path)
        for run in re.findall(r"M[^M]+", path.get("d", "")):
            pts = [(float(a) + ox, float(b) + oy) for a, b in re.findall(r"([-\d.e]+),([-\d.e]+)", run)]
            out += list(zip(pts, pts[1:]))
    return out


def _offset(parent, el) -> tuple[float, float]:
    x = y = 0.0
    while el is not None:
        dx, dy = _translate(el)
        x, y = x + dx, y + dy
        el = parent.get(el)
    return x, y


def label_crossings(svg: str) -> tuple[int, list[str]]:
    """(how many arrow labels, which of them cross another label or a drawn line).

    A sequence diagram's labels sit beside their own arrow, crossing none (their own included)."""
    placed = labels(svg)
    segments = line_segments(svg)
    bad = []
    for i, (text, box) in enumerate(placed):
        bad += [f"{text!r} crosses label {other!r}" for other, obox in placed[i + 1:] if intersect(box, obox)]
        bad += [f"{text!r} crosses a line" for s in segments if intersect(box, list(s))][:1]
    return len(placed), bad



def write_svgs(figs, paths, width, height) -> None:
    """``plotly.io.write_images`` with the retry ``charts.export.write_images`` makes: a browser
    starved of CPU (the suite beside other work) now and then returns without writing a file,
    and a missing SVG is the machine's hiccup, not the chart's fault.  Still missing after
    three tries is a failure."""
    import plotly.io as pio
    widths = width if isinstance(width, list) else [width] * len(figs)
    heights = height if isinstance(height, list) else [height] * len(figs)
    todo = list(range(len(figs)))
    for _ in range(3):
        pio.write_images([figs[i] for i in todo], [paths[i] for i in todo], width=[widths[i] for i in todo],
                         height=[heights[i] for i in todo])
        todo = [i for i in todo if not (paths[i].is_file() and paths[i].stat().st_size)]
        if not todo:
            return
    raise AssertionError(f"the browser wrote no SVG for {[paths[i].name for i in todo]} in three tries")
