"""The request waterfall: one row per request, its phases in colour.

Modelled on the DevTools Network panel: time runs left to right in ms since
the first request; each request is a bar split into queueing, DNS, initial
connection, TLS, request sent, waiting (TTFB) and content download.  Rows are
grouped by connection (alternating bands, the connection number in the row
label, a marker where a connection was opened), so a reused connection reads
as a band of bars without handshakes and a new handshake stands out.
DOMContentLoaded (blue) and load (red) are vertical lines, as in DevTools.

Works for a pcap's requests table too: where phases are missing, a request
is drawn from ``start``, ``ttfb`` and ``end`` alone (waiting, then download).
Every string from the file (URLs, hosts) goes through ``safe``.

Each row is labelled with its row code (the connection number, and whether
the connection was opened there, was already open, or is the one above),
its status (4xx amber, 5xx red, none a red dash) and host + path; the
legend's title explains the code.  The host/type filter is a dropdown under
the toolbar in the top right; an image leaves it out, and says how many rows
it shows instead of inviting a drag.
"""

from __future__ import annotations

import math
from typing import Any, Sequence
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.export import INTERACTIVE
from traceviz.charts.text import safe, wrap
from traceviz.model import mime_kind

# (column, legend label, palette key), in the order they happen.
SEGMENTS = (
    ("unattributed", "Queued (not itemised)", "queueing"),
    ("blocked", "Queueing / stalled", "blocked"),
    ("dns", "DNS lookup", "dns"),
    ("connect", "Initial connection", "connect"),
    ("tls", "SSL / TLS", "tls"),
    ("send", "Request sent", "send"),
    ("wait", "Waiting (TTFB)", "wait"),
    ("receive", "Content download", "receive"),
    ("pending", "Pending (no end)", "muted"),
)
PHASE_COLUMNS = ("blocked", "dns", "connect", "tls", "send", "wait", "receive")
VISIBLE_ROWS = 60           # beyond this the chart opens on the first rows; pan or zoom out for the rest
MARGINS = {False: (140, 96), True: (224, 170)}    # (top, bottom) px: title, 2 lines of subtitle, axis; legend
MENU_TOP = {False: 46, True: 70}                   # px from the top: under plotly's toolbar, beside the subtitle
TALK_ROWS = 22              # what fits a 1080-pixel slide at talk size
ROW_PX = 18
MAX_MENU_ITEMS = 14
DCL_COLOR, LOAD_COLOR = "#1a73e8", "#d93025"       # DevTools' blue and red milestone lines
OPENED, FIRST_SEEN, SAME_CONN = "\u25cf", "\u25cb", "\u2502"   # ● opened here, ○ first seen (reused), │ same connection


def waterfall(requests: pd.DataFrame, pages: Sequence[dict] | None = None, theme: str = "light",
              group_by: str | None = "connection", title: str | None = None) -> go.Figure:
    """The waterfall of ``requests`` (the timeline's requests table).

    ``pages``: the source's ``detail["pages"]`` (dicts with ``dom_content_loaded``
    and ``load`` epoch seconds) for the milestone lines.  ``group_by``:
    ``"connection"`` (rows of one connection together), ``"host"``, or None
    (start order, as DevTools).
    """
    name = themes.check(theme)
    c, s = themes.colors(name), themes.sizes(name)
    rows = _rows(requests, group_by)
    fig = go.Figure()
    n = len(rows)
    if n == 0:
        fig.add_annotation(text="no requests", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        themes.apply(fig, name)
        return fig
    t0 = _t0(rows, pages)
    segs = _segments(rows, t0)
    hover = [_hover(r) for r in rows.itertuples(index=False)]
    for col, label, key in SEGMENTS:
        seg = segs[col]
        idx = np.flatnonzero(~np.isnan(seg[:, 1]))
        if not len(idx):
            continue
        pattern = dict(shape="/", fgcolor="#ffffff", fgopacity=0.7, fillmode="overlay", size=6) \
            if col in ("unattributed", "pending") else None
        fig.add_trace(go.Bar(
            name=label, orientation="h", y=idx.tolist(), base=seg[idx, 0].tolist(), x=seg[idx, 1].tolist(),
            marker=dict(color=c[key], line=dict(width=0), pattern=pattern),
            hovertext=[hover[i] for i in idx], hovertemplate="%{hovertext}<extra>" + safe(label) + "</extra>",
            width=0.72, legendrank=len(fig.data), meta=col,
        ))
    _failures(fig, rows, segs, hover, c, s)
    last_mark = _milestones(fig, pages, t0, n, s)
    if group_by is not None:
        fig.update_layout(shapes=_bands(rows["_gkey"].tolist(), c))
    labels = _labels(rows, group_by, c)
    span = max(_span(segs), last_mark)
    width = s["width"] * 0.7        # the dropdown sits at the subtitle's right end
    live = wrap(_title(requests, rows, pages, _visible(name)), width, s["font"])
    still = wrap(_title(requests, rows, pages, _visible(name), image=True), width, s["font"])
    fig.update_layout(
        barmode="overlay", bargap=0.0,
        title=dict(text=title if title is not None else "<b>Waterfall</b>", subtitle=dict(text=live)),
        meta={"static": {"title": {"subtitle": {"text": still}}}},
        xaxis=dict(side="top", range=[0, span * 1.03 or 1], ticksuffix=" ms",
                   showgrid=True, zeroline=False),
        yaxis=dict(tickmode="array", tickvals=list(range(n)), ticktext=labels, autorange=False,
                   range=[min(n, _visible(name)) - 0.5, -0.5], showgrid=False, zeroline=False,
                   tickfont=dict(family=themes.mono(name), size=s["small"])),
        legend=dict(orientation="h", yanchor="top", y=-0.01, xanchor="left", x=0, traceorder="normal",
                    title=dict(text=_row_code(), side="top") if group_by == "connection" else None),
        hovermode="closest", dragmode="pan",
        height=_height(n, name),
    )
    themes.apply(fig, name)
    height = fig.layout.height if name == "talk" else _height(n, name)
    top, bottom = MARGINS[name == "talk"]
    if n > 1:
        # updatemenus only take paper coordinates: MENU_TOP px from the figure's top, right-aligned
        y = 1 + (top - MENU_TOP[name == "talk"]) / max(1, height - top - bottom)
        _menus(fig, rows, labels, c, _visible(name), y=y, size=s["small"])
    fig.update_layout(height=height, margin=dict(l=12, r=24, t=top, b=bottom))
    fig.update_yaxes(automargin=True)
    return fig


# --------------------------------------------------------------------------- rows and segments

def _rows(requests: pd.DataFrame, group_by: str | None) -> pd.DataFrame:
    r = requests.copy()
    r = r[r["start"].notna()] if "start" in r else r.iloc[0:0]
    for col in ("conn", "host", "url", "status", "protocol", "method", "resp_bytes", "ttfb", "end",
                "reused_connection", "resource_type", "mime_type", "content_type", "pending", "unattributed", "error",
                *PHASE_COLUMNS):
        if col not in r:
            r[col] = pd.NA if col not in PHASE_COLUMNS + ("ttfb", "end", "unattributed") else np.nan
    r = r.reset_index(drop=True)
    r["_order"] = np.arange(len(r))
    if group_by == "connection":
        first = r.groupby("conn", dropna=True)["start"].transform("min")
        r["_group"] = first.fillna(r["start"])
        r["_gkey"] = r["conn"].astype("Int64").astype(str).where(r["conn"].notna(), "none-" + r["_order"].astype(str))
        r = r.sort_values(["_group", "_gkey", "start", "_order"], kind="stable")
    elif group_by == "host":
        first = r.groupby("host", dropna=False)["start"].transform("min")
        r["_group"] = first
        r["_gkey"] = r["host"].astype(str)
        r = r.sort_values(["_group", "_gkey", "start", "_order"], kind="stable")
    elif group_by is None:
        r["_gkey"] = ""
        r = r.sort_values(["start", "_order"], kind="stable")
    else:
        raise ValueError(f"group_by must be 'connection', 'host' or None, not {group_by!r}")
    return r.reset_index(drop=True)


def _t0(rows: pd.DataFrame, pages: Sequence[dict] | None) -> float:
    t0 = float(rows["start"].min())
    for p in pages or []:
        if p.get("start") is not None and not math.isnan(p["start"]) and p["start"] < t0:
            t0 = float(p["start"])
    return t0


def _f(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def _segments(rows: pd.DataFrame, t0: float) -> dict[str, np.ndarray]:
    """Per segment kind, an (n, 2) array of [start ms, length ms]; NaN where a request has none."""
    n = len(rows)
    out = {col: np.full((n, 2), np.nan) for col, _, _ in SEGMENTS}
    out["_at"] = np.full(n, np.nan)
    chart_end = _chart_end(rows)
    for i, r in enumerate(rows.itertuples(index=False)):
        at = (r.start - t0) * 1000
        out["_at"][i] = at
        phases = {p: _f(getattr(r, p)) * 1000 for p in PHASE_COLUMNS}
        have = {p: v for p, v in phases.items() if not math.isnan(v)}
        ttfb, end = _f(r.ttfb) * 1000, (_f(r.end) - r.start) * 1000
        gap = _f(r.unattributed) * 1000
        if have.get("wait") is None and not math.isnan(ttfb):
            # a capture's exchange: only start, first byte and end are known
            have = {"wait": ttfb}
            if not math.isnan(end):
                have["receive"] = max(0.0, end - ttfb)
        if gap > 0.0005:
            out["unattributed"][i] = (at, gap)
            at += gap
        for p in PHASE_COLUMNS:
            v = have.get(p)
            if v is None or v <= 0:
                continue
            out[p][i] = (at, v)
            at += v
        if _is_true(r.pending) or (math.isnan(end) and not have):
            stop = (chart_end - t0) * 1000
            if stop > at:
                out["pending"][i] = (at, stop - at)
    return out


def _chart_end(rows: pd.DataFrame) -> float:
    ends = pd.concat([rows["end"], rows["start"] + rows["ttfb"].fillna(0)]).dropna()
    return float(ends.max()) if len(ends) else float(rows["start"].max())


def _span(segs: dict[str, np.ndarray]) -> float:
    ends = [np.nanmax(a[:, 0] + a[:, 1]) for k, a in segs.items() if a.ndim == 2 and not np.isnan(a[:, 1]).all()]
    return float(max(ends)) if ends else 1.0


def _is_true(v: Any) -> bool:
    return v is True or (isinstance(v, (bool, np.bool_)) and bool(v))


# --------------------------------------------------------------------------- text

def short_name(url: Any, limit: int = 48) -> str:
    """Host and path (with its query), shortened in the middle: ``cdn.example/…/app.js?v=3``."""
    if not isinstance(url, str) or not url:
        return "?"
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or not parts.netloc:
        name = url
    else:
        name = parts.netloc + (parts.path or "/") + ("?" + parts.query if parts.query else "")
    if len(name) <= limit:
        return name
    host = parts.netloc if parts is not None and parts.netloc else ""
    if host and len(host) + 12 <= limit:
        return host + "/\u2026" + name[len(name) - (limit - len(host) - 2):]
    head = (limit - 1) * 2 // 5
    return name[:head] + "\u2026" + name[len(name) - (limit - 1 - head):]


def _labels(rows: pd.DataFrame, group_by: str | None, c: dict) -> list[str]:
    out = []
    seen: set = set()
    for r in rows.itertuples(index=False):
        mark = ""
        if group_by == "connection":
            if pd.isna(r.conn):
                mark = "  \u2013 "
            else:
                first = r.conn not in seen
                seen.add(r.conn)
                # "●" where the connection was opened (this request paid its handshake)
                opened = first and not _is_true(r.reused_connection) and not pd.isna(r.reused_connection)
                glyph = OPENED if opened else (FIRST_SEEN if first else SAME_CONN)
                mark = f"{int(r.conn):>3}{glyph} "
        out.append((mark, _status(r.status, c), short_name(r.url)))
    # tick labels are right-aligned: pad the names so the codes line up on the left (a monospace font)
    width = max(len(name) for _, _, name in out)
    return [f"{mark}{status} {safe(name)}{chr(0xa0) * (width - len(name))}" for mark, status, name in out]


def _status(status: Any, c: dict) -> str:
    """The status, coloured as a status is read: 4xx amber, 5xx red; no response a red dash."""
    if pd.isna(status):
        return f"<span style='color:{c['5xx']}'>\u2013\u2013\u2013</span>"
    code = int(status)
    color = c["5xx"] if code >= 500 else c["4xx"] if code >= 400 else None
    return f"<span style='color:{color}'><b>{code}</b></span>" if color else str(code)


def _row_code() -> str:
    return (f"rows: conn{OPENED} opened here (paid the handshake) \u00b7 {FIRST_SEEN} already open "
            f"\u00b7 {SAME_CONN} same connection \u00b7 status 4xx amber, 5xx red")


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _fmt_ms(v: float) -> str:
    return "\u2013" if math.isnan(v) else (f"{v:,.1f} ms" if v >= 1 else f"{v:.2f} ms")


def _fmt_bytes(v: Any) -> str:
    if v is None or pd.isna(v):
        return "\u2013"
    v = float(v)
    for unit in ("B", "kB", "MB", "GB"):
        if v < 1000 or unit == "GB":
            return f"{v:,.0f} {unit}" if unit == "B" else f"{v:,.1f} {unit}"
        v /= 1000
    return ""


def _hover(r: Any) -> str:
    url = safe(r.url, limit=110) or "?"
    head = [f"<b>{url}</b>"]
    bits = [safe(r.method) or "", "no response" if pd.isna(r.status) else str(int(r.status)),
            safe(r.protocol) or "", safe(_text(r.resource_type) or _text(r.content_type) or _text(r.mime_type))]
    head.append(" \u00b7 ".join(b for b in bits if b))
    conn = "no connection" if pd.isna(r.conn) else f"connection {int(r.conn)}"
    if not pd.isna(r.reused_connection):
        conn += " (reused)" if _is_true(r.reused_connection) else " (new)"
    head.append(f"{conn} \u00b7 {_fmt_bytes(r.resp_bytes)}")
    lines = []
    for col, label, _ in SEGMENTS[:-1]:
        v = _f(getattr(r, col)) * 1000
        if col == "unattributed" and (math.isnan(v) or v < 0.0005):
            continue
        lines.append(f"{label:<22} {_fmt_ms(v):>11}")
    total = (_f(r.end) - r.start) * 1000
    lines.append(f"{'TTFB':<22} {_fmt_ms(_f(r.ttfb) * 1000):>11}")
    lines.append(f"{'Total':<22} {_fmt_ms(total) if not math.isnan(total) else 'pending':>11}")
    if isinstance(r.error, str) and r.error:
        lines.append("error: " + safe(r.error, limit=80))
    # hover labels collapse runs of spaces; non-breaking ones keep the columns aligned
    return "<br>".join(head) + "<br>" + "<br>".join(l.replace(" ", "\u00a0") for l in lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _title(requests: pd.DataFrame, rows: pd.DataFrame, pages: Sequence[dict] | None, visible: int,
           image: bool = False) -> str:
    n = len(requests)
    conns = rows["conn"].dropna().nunique()
    new = int((rows["reused_connection"] == False).sum()) if "reused_connection" in rows else 0  # noqa: E712
    bits = [_plural(n, "request"), _plural(conns, "connection") + (f" ({_plural(new, 'new handshake')})" if new else "")]
    p = next((p for p in pages or [] if p.get("onLoad") is not None or p.get("onContentLoad") is not None), None)
    if p is not None:
        if p.get("onContentLoad") is not None:
            bits.append(f"DOMContentLoaded {p['onContentLoad']:,.0f} ms")
        if p.get("onLoad") is not None:
            bits.append(f"load {p['onLoad']:,.0f} ms")
    if len(rows) > visible:
        bits.append(f"the first {visible} of {len(rows)} rows" if image else
                    f"first {visible} rows shown: drag or zoom out for all {len(rows)}")
    return " \u00b7 ".join(bits)


# --------------------------------------------------------------------------- decorations

def _failures(fig: go.Figure, rows: pd.DataFrame, segs: dict, hover: list[str], c: dict, s: dict) -> None:
    """A cross where a request got no response and has no bar to show it (blocked, refused, aborted)."""
    drawn = np.zeros(len(rows), dtype=bool)
    for a in segs.values():
        if a.ndim == 2:
            drawn |= ~np.isnan(a[:, 1])
    idx = [i for i, r in enumerate(rows.itertuples(index=False)) if pd.isna(r.status) and not drawn[i]]
    if not idx:
        return
    x = [float(segs["_at"][i]) for i in idx]
    fig.add_trace(go.Scatter(
        x=x, y=idx, mode="markers", name="Failed (no response)",
        marker=dict(symbol="x-thin", size=s["marker"], color=c["RST"], line=dict(width=2, color=c["RST"])),
        hovertext=[hover[i] for i in idx], hovertemplate="%{hovertext}<extra>failed</extra>", meta="failed",
    ))


def _milestones(fig: go.Figure, pages: Sequence[dict] | None, t0: float, n: int, s: dict) -> float:
    """DOMContentLoaded and load as vertical lines named in the legend (no label to collide with bars)."""
    last = 0.0
    for p in pages or []:
        for key, label, color in (("dom_content_loaded", "DOMContentLoaded", DCL_COLOR), ("load", "load", LOAD_COLOR)):
            at = p.get(key)
            if at is None or math.isnan(at):
                continue
            x = (at - t0) * 1000
            last = max(last, x)
            page = f" ({safe(p.get('id'), limit=20)})" if len(pages or []) > 1 else ""
            fig.add_trace(go.Scatter(
                x=[x, x], y=[-0.5, max(n, 1) - 0.5], mode="lines", name=f"{label} {x:,.0f} ms{page}",
                line=dict(color=color, width=max(1.5, s["line"])), hoverinfo="name", legendrank=1000 + len(fig.data),
                meta="milestone",
            ))
    return last


def _bands(keys: list[str], c: dict) -> list[dict]:
    """Shade every other group so each connection's rows read as one block."""
    shapes = []
    start, shade = 0, False
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            if shade:
                shapes.append(dict(type="rect", xref="paper", x0=0, x1=1, yref="y", y0=start - 0.5, y1=i - 0.5,
                                   fillcolor=c["grid"], opacity=0.45, line=dict(width=0), layer="below"))
            shade = not shade
            start = i
    return shapes


def _menus(fig: go.Figure, rows: pd.DataFrame, labels: list[str], c: dict, visible: int, y: float,
           size: int = 12) -> None:
    """One dropdown keeping only one host's or one type's rows (the others' y becomes null)."""
    choices = []
    for title, keys in (("host", rows["host"].fillna("(no host)").astype(str)), ("type", _kinds(rows))):
        counts = keys.value_counts()
        if len(counts) < 2:
            continue
        for value, count in list(counts.items())[:MAX_MENU_ITEMS]:
            choices.append((f"{title}: {safe(value, limit=32)} ({count})", (keys == value).to_numpy()))
    if not choices:
        return
    buttons = [_filter_button(fig, rows, labels, None, f"all requests ({len(rows)})", visible, c)]
    buttons += [_filter_button(fig, rows, labels, keep, label, visible, c) for label, keep in choices]
    fig.update_layout(updatemenus=[dict(
        type="dropdown", buttons=buttons, direction="down", showactive=True, x=1.0, xanchor="right",
        y=y, yanchor="top", bgcolor=c["background"], bordercolor=c["grid"], font=dict(size=size),
        name=INTERACTIVE)])


def _kinds(rows: pd.DataFrame) -> pd.Series:
    kind = rows["resource_type"].astype("object")
    media = rows["content_type"].astype("object").where(rows["content_type"].notna(), rows["mime_type"])
    return kind.where(kind.notna(), media.map(mime_kind)).fillna("other").astype(str)


def _filter_button(fig: go.Figure, rows: pd.DataFrame, labels: list[str], keep: np.ndarray | None,
                   label: str, visible: int, c: dict) -> dict:
    n = len(rows)
    if keep is None:
        keep = np.ones(n, dtype=bool)
    new_pos = np.cumsum(keep) - 1
    shown = int(keep.sum())
    ys = []
    for trace in fig.data:
        if trace.meta == "milestone":
            ys.append([-0.5, max(shown, 1) - 0.5])
        else:       # bars and failure marks: one point per original row
            ys.append([int(new_pos[i]) if keep[i] else None for i in trace.y])
    ticks = [labels[i] for i in range(n) if keep[i]]
    layout = {"yaxis.tickvals": list(range(shown)), "yaxis.ticktext": ticks,
              "yaxis.range": [min(shown, visible) - 0.5, -0.5]}
    if fig.layout.shapes:
        layout["shapes"] = _bands(rows.loc[keep, "_gkey"].tolist(), c)
    return dict(label=label, method="update", args=[{"y": ys}, layout])


def _visible(name: str) -> int:
    return TALK_ROWS if name == "talk" else VISIBLE_ROWS


def _height(n: int, name: str) -> int:
    shown = min(n, _visible(name))
    extra = sum(MARGINS[name == "talk"]) + 40
    return int(max(360, shown * (ROW_PX if name != "talk" else 30) + extra))


