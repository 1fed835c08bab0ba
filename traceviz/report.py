"""One self-contained HTML page: every recipe that applies, for one or more files.

The page works offline (plotly.js is inlined once, not fetched) and every
string that came from a capture is HTML-escaped: a report is something people
mail around and open in a browser, so it is the first place hostile input
would bite.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pandas as pd

from traceviz.model import Timeline
from traceviz.output import fmt, header, plain, printable
from traceviz.recipe import Finding

MAX_ROWS = 50          # a report is read, not grepped: --json has every row


@dataclass
class Section:
    file: str
    recipe: str
    finding: Finding | None = None
    error: str | None = None


def applicable(module: ModuleType, tl: Timeline) -> bool:
    check = getattr(module, "applies", None)
    return bool(check(tl)) if callable(check) else True


def sections(timelines: list[Timeline], recipes: dict[str, ModuleType]) -> list[Section]:
    """Run each recipe that applies on each timeline; a recipe that fails becomes a note, not a crash."""
    out = []
    for tl in timelines:
        for name, module in recipes.items():
            try:
                if not applicable(module, tl):
                    continue
                out.append(Section(tl.source.path, name, finding=module.analyze(tl)))
            except Exception as exc:  # one recipe's bug must not lose the rest of the report
                out.append(Section(tl.source.path, name, error=f"{type(exc).__name__}: {exc}"))
    return out


def render(timelines: list[Timeline], parts: list[Section], theme: str = "light") -> str:
    from traceviz.charts.export import plotly_js, to_html_fragment

    body = []
    for tl in timelines:
        body.append(f"<h1>{_e(Path(tl.source.path).name)}</h1>")
        body.append(f"<p class='meta'>{_e(repr(tl))}</p>")
        for w in tl.warnings[:10]:
            body.append(f"<p class='warn'>warning: {_e(w)}</p>")
        for part in (p for p in parts if p.file == tl.source.path):
            body.append(_section(part, theme, to_html_fragment))
    return _PAGE.format(title=_e("traceviz report: " + ", ".join(Path(t.source.path).name for t in timelines)),
                        plotly=plotly_js(), body="\n".join(body), theme=theme)


def _section(part: Section, theme: str, fragment) -> str:
    if part.error is not None:
        return f"<section><h2>{_e(part.recipe)}</h2><p class='warn'>this recipe failed: {_e(part.error)}</p></section>"
    f = part.finding
    html_parts = [f"<section><h2>{_e(f.title)}</h2>"]
    if f.question:
        html_parts.append(f"<p class='question'>{_e(f.question.strip().splitlines()[0])}</p>")
    if f.answer:
        html_parts.append("<ul>" + "".join(f"<li>{_e(a)}</li>" for a in f.answer) + "</ul>")
    if f.summary:
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(fmt(v, k))}</td></tr>" for k, v in f.summary.items())
        html_parts.append(f"<table class='summary'>{rows}</table>")
    for name in f.figures:
        try:
            html_parts.append(fragment(f.figure(name, theme)))
        except Exception as exc:  # a figure that cannot be drawn is noted; the numbers still stand
            html_parts.append(f"<p class='warn'>figure {_e(name)} could not be drawn: {_e(exc)}</p>")
    if len(f.rows):
        html_parts.append(_table(f.rows, f.table_fields or list(f.json_fields or f.rows.columns)[:10]))
    html_parts.append("</section>")
    return "\n".join(html_parts)


def _table(df: pd.DataFrame, columns: list[str]) -> str:
    columns = [c for c in columns if c in df.columns]
    head = "".join(f"<th>{_e(header(c))}</th>" for c in columns)
    t0 = _t0(df)
    body = "".join("<tr>" + "".join(f"<td>{_e(fmt(v, c, t0))}</td>" for c, v in zip(columns, row)) + "</tr>"
                   for row in df[columns].head(MAX_ROWS).itertuples(index=False, name=None))
    more = f"<p class='meta'>{len(df) - MAX_ROWS} more rows: --json has them all</p>" if len(df) > MAX_ROWS else ""
    return f"<table class='rows'><tr>{head}</tr>{body}</table>{more}"


def _t0(df: pd.DataFrame) -> float | None:
    for col in ("start", "ts", "syn"):
        if col in df.columns and df[col].notna().any():
            return float(plain(df[col].min()))
    return None


def _e(value) -> str:
    return html.escape(printable(value), quote=True)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #1a1a1a; }}
 body.dark {{ background: #111; color: #eee; }}
 h1 {{ border-bottom: 2px solid #888; padding-bottom: .2em; }}
 section {{ margin: 2em 0; }}
 .question {{ font-style: italic; }}
 .meta {{ color: #666; }}
 .warn {{ color: #a35b00; }}
 table {{ border-collapse: collapse; margin: 1em 0; font-size: 90%; }}
 th, td {{ border: 1px solid #ccc; padding: .25em .6em; text-align: left; }}
 table.summary th {{ background: #f3f3f3; }}
 body.dark table.summary th {{ background: #222; }}
</style>
<script>{plotly}</script>
</head><body class="{theme}">
{body}
<p class="meta">Made by traceviz. Works offline: plotly.js is inlined.</p>
</body></html>
"""
