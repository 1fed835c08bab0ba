"""Text from captures, made safe to show in a chart.

Plotly renders titles, labels and hover text as a small subset of HTML
(``<b>``, ``<br>``, ``<a href>``...), and, when MathJax is on the page, treats
text between ``$`` signs as LaTeX.  An SNI, a URL or a header value is chosen
by whoever sent the packet, so every such string goes through :func:`safe`
before it reaches a figure: ``<img src=x onerror=...>`` is shown as those
characters, never turned into markup.
"""

from __future__ import annotations

import html
import math
from typing import Any

ELLIPSIS = "\u2026"


def safe(text: Any, limit: int | None = None) -> str:
    """``text`` as inert chart text: HTML-escaped, ``$`` neutralised, optionally shortened.

    ``limit`` cuts the *original* text to that many characters (plus an
    ellipsis) before escaping, so an entity is never cut in half.  Missing
    values (None, NaN, pandas NA) become an empty string.
    """
    if text is None or _is_missing(text):
        return ""
    s = str(text)
    if limit is not None and len(s) > limit:
        s = s[: max(limit - 1, 0)] + ELLIPSIS
    # Control characters (a NUL in an SNI, a newline in a header) would break
    # the line layout or hide text; show them as escapes instead.
    s = "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
                for ch in s)
    # plotly.js converts numeric entities back to characters *after* its MathJax
    # check, so "&#36;" shows a dollar sign without ever starting TeX.
    return html.escape(s, quote=True).replace("$", "&#36;")


def _is_missing(value: Any) -> bool:
    try:
        import pandas as pd
        if value is pd.NA or value is pd.NaT:
            return True
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return isinstance(value, float) and math.isnan(value)


def fmt_ms(seconds: float) -> str:
    """Seconds as a readable figure: 52 \u00b5s, 2.50 ms, 12.4 ms, 210 ms, 1.00 s."""
    # to the microsecond, a capture's resolution: 99.99993 ms from epoch-float subtraction is 100
    ms = round(seconds * 1000.0, 3)
    # each threshold sits where the shorter form would round up into the next
    if ms >= 999.5:
        return f"{ms / 1000:.2f} s"
    if ms >= 99.95:
        return f"{ms:.0f} ms"
    if ms >= 9.995:
        return f"{ms:.1f} ms"
    if ms >= 0.9995:
        return f"{ms:.2f} ms"
    return f"{ms * 1000:.0f} \u00b5s"


def wrap(text: str, width_px: float, size_px: float, sep: str = " \u00b7 ") -> str:
    """Break already-safe chart text into lines of at most ``width_px`` (``<br>`` between them),
    at ``sep`` where it can, so a long subtitle stays inside its figure.  A glyph is taken
    as 0.55 em wide."""
    most = max(int(width_px / (size_px * 0.55)), 20)
    lines: list[str] = []
    for part in text.split(sep):
        if lines and len(lines[-1]) + len(sep) + len(part) <= most:
            lines[-1] += sep + part
        else:
            lines.append(part)
    return "<br>".join(lines)
