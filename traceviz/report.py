"""One self-contained HTML page: every recipe that applies, for one or more files.

The page works offline (plotly.js is inlined once, in the page's head; each
chart is a fragment that uses it) and every string that came from a capture is
HTML-escaped: a report is something people mail around and open in a
browser, so it is the first place hostile input would bite.

The page opens with a contents list; each file has a header of facts (format,
size, first packet, duration, counts, what the keys decrypted) and a section
per recipe that applied, each with an anchor (``#f1-handshakes``) to link to.
Recipes that did not apply are named with what they need.  Each chart is
drawn at its designed size and scaled down to the page's width (a talk
chart is a 1920 px slide; in a page it is the same slide, smaller), so what
the page shows is what ``--chart x.png`` would.  Times in tables count from
each file's first packet, as in the terminal.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pandas as pd

from traceviz.model import Timeline
from traceviz.output import ANSWER_PAGE, Clock, epoch_text, fmt, printable, time_origin
from traceviz.recipe import Finding, applicability

MAX_ROWS = 50          # a report is read, not grepped: --json has every row


@dataclass
class Section:
    file: str
    recipe: str
    finding: Finding | None = None
    error: str | None = None
    skipped: str | None = None          # why the recipe does not apply (its NEEDS)


def applicable(module: ModuleType, tl: Timeline) -> bool:
    return applicability(module, tl) is None


def sections(timelines: list[Timeline], recipes: dict[str, ModuleType]) -> list[Section]:
    """Run each recipe that applies on each timeline; one that fails becomes a note, not a crash;
    one that does not apply is listed with what it needs."""
    out = []
    for tl in timelines:
        for name, module in recipes.items():
            try:
                why = applicability(module, tl)
                if why is not None:
                    out.append(Section(tl.source.path, name, skipped=why))
                    continue
                out.append(Section(tl.source.path, name, finding=module.analyze(tl)))
            except Exception as exc:  # one recipe's bug must not lose the rest of the report
                out.append(Section(tl.source.path, name, error=f"{type(exc).__name__}: {exc}"))
    return out


def ran(parts: list[Section]) -> list[Section]:
    """The sections that have something to show (a finding, or a recipe's failure)."""
    return [p for p in parts if p.skipped is None]


def render(timelines: list[Timeline], parts: list[Section], theme: str = "light") -> str:
    from traceviz.charts.export import plotly_js

    toc, body = [], []
    for i, tl in enumerate(timelines, 1):
        fid = f"f{i}"
        mine = [p for p in parts if p.file == tl.source.path]
        shown, skipped = ran(mine), [p for p in mine if p.skipped is not None]
        name = Path(tl.source.path).name
        toc.append(f"<li><a href='#{fid}'>{_e(name)}</a><ol>"
                   + "".join(f"<li><a href='#{fid}-{_anchor(p.recipe)}'>{_e(_title(p))}</a></li>" for p in shown)
                   + "</ol></li>")
        body.append(f"<section class='file' id='{fid}'><h1>{_e(name)}</h1>")
        body.append(_file_header(tl))
        for w in tl.warnings[:10]:
            body.append(f"<p class='warn'>warning: {_e(w)}</p>")
        if len(tl.warnings) > 10:
            body.append(f"<p class='warn'>\u2026 and {len(tl.warnings) - 10} more warnings</p>")
        if skipped:
            body.append("<p class='meta'>Not applicable here: " + "; ".join(
                f"{_e(p.recipe)} (needs {_e(p.skipped)})" for p in skipped) + ".</p>")
        clock = time_origin(tl)
        for part in shown:
            body.append(_section(part, f"{fid}-{_anchor(part.recipe)}", theme, clock))
        body.append("</section>")
    title = "traceviz report: " + ", ".join(Path(t.source.path).name for t in timelines)
    from traceviz import __version__
    return _PAGE.format(title=_e(title), plotly=plotly_js(), toc="\n".join(toc), body="\n".join(body),
                        theme=_e(theme), version=_e(__version__))


def _title(part: Section) -> str:
    return part.finding.title if part.finding is not None else part.recipe


def _anchor(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def _file_header(tl: Timeline) -> str:
    """The facts a reader wants before any chart: what the file is and what is in it."""
    src = tl.source
    try:
        size = os.path.getsize(src.path)
    except OSError:
        size = src.size
    facts = {"file": src.path, "format": src.format + (" (gzip)" if src.compressed else ""),
             "size": _size(size)}
    clock = time_origin(tl)
    if clock.origin is not None:
        facts[f"starts ({clock.what})"] = epoch_text(clock.origin)
    ends = [float(t[c].max()) for t, c in ((tl.packets, "ts"), (tl.requests, "end"), (tl.events, "ts"))
            if len(t) and c in t and t[c].notna().any()]
    if clock.origin is not None and ends:
        facts["duration"] = f"{max(ends) - clock.origin:.3f} s"
    counts = [(len(tl.packets), "frame"), (len(tl.connections), "connection"), (len(tl.tls), "TLS session"),
              (len(tl.requests), "request"), (len(tl.events), "event")]
    facts["holds"] = ", ".join(f"{n:,} {word}{'s' if n != 1 else ''}" for n, word in counts if n) or "nothing"
    if tl.decryption and tl.decryption.get("text"):
        facts["TLS secrets"] = tl.decryption["text"]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts.items())
    return f"<table class='summary filehead'>{rows}</table>"


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return ""


def _answer(sentences: list[str]) -> str:
    """The answer as a list: its first ``output.ANSWER_PAGE`` sentences, the rest folded
    (a recipe may tell each of thousands of flows; a report is read from the top)."""
    def items(lines):
        return "<ul>" + "".join(f"<li>{_e(a)}</li>" for a in lines) + "</ul>"
    shown, rest = sentences[:ANSWER_PAGE], sentences[ANSWER_PAGE:]
    if not rest:
        return items(shown)
    return items(shown) + f"<details><summary>{len(rest)} more</summary>{items(rest)}</details>"


def _section(part: Section, anchor: str, theme: str, clock: Clock) -> str:
    if part.error is not None:
        return (f"<section id='{anchor}'><h2>{_e(part.recipe)}</h2>"
                f"<p class='warn'>this recipe failed: {_e(part.error)}</p></section>")
    f = part.finding
    html_parts = [f"<section id='{anchor}'><h2>{_e(f.title)} <a class='anchor' href='#{anchor}'>#</a></h2>"]
    if f.question:
        html_parts.append(f"<p class='question'>{_e(f.question.strip().splitlines()[0])}</p>")
    if f.answer:
        html_parts.append(_answer(f.answer))
    if f.summary:
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(fmt(v, k, clock))}</td></tr>" for k, v in f.summary.items())
        html_parts.append(f"<table class='summary'>{rows}</table>")
    for name in f.figures:
        try:
            html_parts.append(figure_html(f.figure(name, theme), theme))
        except Exception as exc:  # a figure that cannot be drawn is noted; the numbers still stand
            html_parts.append(f"<p class='warn'>figure {_e(name)} could not be drawn: {_e(exc)}</p>")
    if len(f.rows):
        html_parts.append(_table(f.rows, f.table_fields or list(f.json_fields or f.rows.columns)[:10], clock))
    html_parts.append("</section>")
    return "\n".join(html_parts)


def figure_html(fig, theme: str = "light") -> str:
    """A chart for a page: drawn at the size it was designed for (1280 px wide, a talk chart
    1920 x 1080) and scaled down to the page's width by the page's script, so its furniture
    sits exactly as in a PNG of it, however narrow the window."""
    from traceviz.charts import theme as themes
    from traceviz.charts.export import to_html_fragment
    s = themes.sizes(theme)
    width, height = int(fig.layout.width or s["width"]), int(fig.layout.height or s["height"])
    fig.update_layout(width=width, height=height, autosize=False)
    return (f"<div class='fit' data-width='{width}' data-height='{height}'>"
            f"<div class='slide' style='width:{width}px;height:{height}px'>{to_html_fragment(fig)}</div></div>")


def _table(df: pd.DataFrame, columns: list, clock: Clock) -> str:
    columns = [c if isinstance(c, str) else c[0] for c in columns]
    columns = [c for c in columns if c in df.columns]
    head = "".join(f"<th>{_e(clock.header(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(fmt(v, c, clock))}</td>" for c, v in zip(columns, row)) + "</tr>"
                   for row in df[columns].head(MAX_ROWS).itertuples(index=False, name=None))
    more = f"<p class='meta'>{len(df) - MAX_ROWS} more rows: --json has them all</p>" if len(df) > MAX_ROWS else ""
    caption = f"<caption>{_e(clock.caption())}</caption>" if clock.origin is not None else ""
    return f"<table class='rows'>{caption}<tr>{head}</tr>{body}</table>{more}"


def _e(value) -> str:
    return html.escape(printable(value), quote=True)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #1a1a1a; }}
 body.dark {{ background: #111; color: #eee; }}
 body.talk {{ font-size: 120%; }}
 h1 {{ border-bottom: 2px solid #888; padding-bottom: .2em; }}
 section {{ margin: 2em 0; }}
 .masthead {{ font-size: 150%; font-weight: bold; margin: 0; }}
 nav.toc {{ border: 1px solid #ccc; padding: .5em 1.5em; margin: 1em 0 2em; }}
 nav.toc ol ol {{ list-style: none; padding-left: 1em; }}
 a.anchor {{ color: #999; text-decoration: none; font-size: 70%; }}
 .question {{ font-style: italic; }}
 .meta {{ color: #666; }}
 .warn {{ color: #a35b00; }}
 .fit {{ width: 100%; overflow: hidden; margin: 1em 0; }}
 .slide {{ transform-origin: 0 0; }}
 table {{ border-collapse: collapse; margin: 1em 0; font-size: 90%; }}
 caption {{ text-align: left; color: #666; padding-bottom: .3em; }}
 th, td {{ border: 1px solid #ccc; padding: .25em .6em; text-align: left; }}
 table.summary th {{ background: #f3f3f3; }}
 body.dark table.summary th {{ background: #222; }}
</style>
<script>{plotly}</script>
</head><body class="{theme}">
<p class="masthead">{title}</p>
<nav class="toc"><ol>
{toc}
</ol></nav>
{body}
<p class="meta">Made by traceviz {version}. Works offline: plotly.js is inlined once, in this page.</p>
<script>
// Each chart keeps the size it was designed for and is scaled to the page's width.
function fitCharts() {{
  for (const box of document.querySelectorAll(".fit")) {{
    const k = Math.min(1, box.clientWidth / Number(box.dataset.width));
    box.firstElementChild.style.transform = k < 1 ? "scale(" + k + ")" : "";
    box.style.height = Number(box.dataset.height) * k + "px";
  }}
}}
window.addEventListener("resize", fitCharts);
fitCharts();
</script>
</body></html>
"""
