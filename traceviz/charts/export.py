"""Write a figure to ``.html`` (works offline), ``.png`` or ``.svg``.

HTML pages carry plotly.js inline, so a report opened on a plane, or mailed
to someone behind a proxy, still draws; nothing is fetched from a CDN.

PNG and SVG go through kaleido 1.x, which drives a headless Chrome or
Chromium over the DevTools protocol.  It finds the browser through the
``BROWSER_PATH`` environment variable if set, else on ``PATH`` (``chromium``,
``chromium-browser``, ``google-chrome``...) and in the usual install folders,
so Debian's ``apt-get install chromium`` (``/usr/bin/chromium``) is enough and
nothing is downloaded.  kaleido starts the browser with ``--no-sandbox``
unless asked otherwise, which is what lets it run as root in a container.

An image is not a live chart: before rendering one, ``for_image`` takes out
what only works under a mouse (dropdown menus, sliders, annotations a chart
named ``INTERACTIVE`` such as "drag to see more") and applies the layout a
chart left for images in ``layout.meta["static"]`` (a subtitle that says
"first 60 of 200 rows" instead of "drag for all 200").  Every error, from a
missing browser to a crashed one, is one line, and a render that left no
file behind is an error too.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Iterable

import plotly.graph_objects as go

from traceviz.charts import theme as themes

FORMATS = (".html", ".png", ".svg")
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
BROWSER_PLACES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome",
                  "/snap/bin/chromium", "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
                  "/Applications/Chromium.app/Contents/MacOS/Chromium")

HTML_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "toImageButtonOptions": {"format": "png", "scale": 2},
}


INTERACTIVE = "interactive"      # the name of an annotation only a live chart can use


class ImageExportError(RuntimeError):
    """A static image could not be made (no browser, or the browser failed)."""


def for_image(fig: go.Figure) -> go.Figure:
    """A copy of ``fig`` without what needs a mouse, with the layout the chart left for images."""
    out = go.Figure(fig)
    out.layout.updatemenus = ()
    out.layout.sliders = ()
    out.layout.annotations = [a for a in out.layout.annotations if a.name != INTERACTIVE]
    meta = out.layout.meta
    if isinstance(meta, dict) and isinstance(meta.get("static"), dict):
        out.update_layout(meta["static"])
    return out


def write(fig: go.Figure, path: str | Path, theme: str | None = None) -> Path:
    """Write ``fig`` to ``path``; the extension picks the format.  Returns the path.

    ``theme`` (light, dark, talk) restyles the figure first; without it the
    figure keeps the theme it was drawn with.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot write a chart to {path.name!r}: use a .html, .png or .svg file name")
    if theme is not None:
        themes.apply(fig, theme)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".html":
        path.write_text(to_html(fig), encoding="utf-8")
    else:
        write_images([(fig, path)])
    return path


def to_html(fig: go.Figure) -> str:
    """A whole, self-contained HTML page: plotly.js inline, no network needed."""
    page = fig.to_html(full_html=True, include_plotlyjs=True, include_mathjax=False,
                       config=HTML_CONFIG, validate=True)
    title = page_title(fig)
    if title:
        page = page.replace("<head>", f"<head><title>{title}</title>", 1)
    return page


def to_html_fragment(fig: go.Figure, div_id: str | None = None) -> str:
    """A ``<div>`` + ``<script>`` for a page that loads plotly.js once (see :func:`plotly_js`)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False,
                       config=HTML_CONFIG, div_id=div_id)


def plotly_js() -> str:
    """The plotly.js bundle's source, for a multi-chart page to inline once in a ``<script>``."""
    from plotly.offline import get_plotlyjs
    return get_plotlyjs()


def page_title(fig: go.Figure) -> str:
    """The figure's title as plain page-title text (already entity-escaped by the chart)."""
    text = fig.layout.title.text or ""
    text = re.sub(r"<br\s*/?>", " \u2014 ", text, flags=re.I)
    return re.sub(r"<[^>]*>", "", text).strip()


def write_images(items: Iterable[tuple[go.Figure, str | Path]]) -> list[Path]:
    """Render several figures to .png/.svg with one browser start (a few seconds saved each)."""
    items = [(fig, Path(p)) for fig, p in items]
    if not items:
        return []
    for _, p in items:
        if p.suffix.lower() not in (".png", ".svg"):
            raise ValueError(f"cannot write an image to {p.name!r}: use a .png or .svg file name")
    ensure_kaleido()
    ensure_browser()
    import plotly.io as pio
    figs, paths, widths, heights, scales = [], [], [], [], []
    for fig, p in items:
        w, h = image_size(fig)
        figs.append(for_image(fig))
        paths.append(p)
        widths.append(w)
        heights.append(h)
        # 2x for crisp slides from the 1280x720 themes; talk is already 1920x1080.
        scales.append(1 if (w >= 1920 or p.suffix.lower() == ".svg") else 2)
        with contextlib.suppress(FileNotFoundError):
            p.unlink()          # so that a file found afterwards is this render's
    for attempt in (1, 2):    # a browser starved of CPU now and then returns without an image: once more
        try:
            pio.write_images(figs, paths, width=widths, height=heights, scale=scales, validate=True)
        except Exception as exc:  # kaleido/choreographer raise many kinds; say it once, plainly
            if attempt == 2:
                raise ImageExportError(f"could not render {paths[0].name}: {one_line(exc)}. Browser: "
                                       f"{browser() or 'none found'} (set BROWSER_PATH to change it)") from exc
            continue
        if all(p.is_file() and p.stat().st_size for p in paths):
            break
    missing = [p.name for p in paths if not p.is_file() or p.stat().st_size == 0]
    if missing:
        raise ImageExportError(f"the browser wrote no image for {', '.join(missing)} "
                               f"(browser: {browser() or 'none found'}); try again, or set BROWSER_PATH")
    return paths


def one_line(exc: BaseException) -> str:
    """An exception as one readable line: its name and its message's lines joined."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def ensure_kaleido() -> None:
    """kaleido is a dependency; an install without it gets one line saying how to add it."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise ImageExportError("PNG/SVG export needs the kaleido package, which this install lacks: "
                               "pip install kaleido (.html export needs nothing)") from None


def image_size(fig: go.Figure) -> tuple[int, int]:
    """The figure's own size, else the light theme's default slide size (16:9)."""
    s = themes.sizes("light")
    return int(fig.layout.width or s["width"]), int(fig.layout.height or s["height"])


def browser() -> str | None:
    """The Chrome/Chromium kaleido will use, found as kaleido's choreographer finds it."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    for place in BROWSER_PLACES:
        if os.access(place, os.X_OK):
            return place
    return None


def ensure_browser() -> str:
    """The browser's path, or ``ImageExportError`` saying how to get one."""
    found = browser()
    if found is None:
        env = os.environ.get("BROWSER_PATH")
        where = f"BROWSER_PATH={env!r} is not an executable" if env else "no Chrome or Chromium found"
        raise ImageExportError(
            f"PNG/SVG export needs a Chrome or Chromium browser: {where}. Install one "
            "(Debian/Ubuntu: apt-get install chromium) or point BROWSER_PATH at it; .html export needs none.")
    if "BROWSER_PATH" not in os.environ and shutil.which("chromium") is None:
        # choreographer looks on PATH and in a few fixed places; tell it where we found one.
        os.environ["BROWSER_PATH"] = found
    return found
