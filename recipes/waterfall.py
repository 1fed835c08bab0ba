"""What did the page load, in what order, and over which connections?

One row per request, in start order, with its phases (queueing, DNS,
connect, TLS, send, wait, receive; ``connect`` excludes TLS) and the
connection it used; the waterfall chart draws them as DevTools' Network
panel does, rows grouped by connection so reuse and new handshakes show.

    python recipes/waterfall.py page.har [--chart waterfall.html]
"""

from __future__ import annotations

import math

import pandas as pd

from traceviz.model import JSON_FIELDS as STABLE_FIELDS
from traceviz.recipe import Finding

NAME = "waterfall"
TITLE = "Request waterfall"
NEEDS = ("HTTP requests: a HAR, a DevTools trace, or a capture whose HTTP can be read "
         "(plaintext, or TLS with its key log)")
FAILS_ON = "a request that got no response (blocked, failed, reset or still pending when the file ends)"
TABLES = ("connections", "requests")   # what analyze() and the figures read: load() builds only these
FIGURES = {"waterfall": "every request as a bar of its phases (queueing, DNS, connect, TLS, send, wait, download), "
                        "rows grouped by connection"}

JSON_FIELDS = STABLE_FIELDS["requests"]    # the stable --json fields, in order
TABLE_FIELDS = [("request", 3), "conn", "status", "url", "start", "ttfb", ("end", 3)]


def applies(tl) -> bool:
    return len(tl.requests) > 0


def analyze(tl, conn: int | None = None) -> Finding:
    requests = tl.requests if conn is None else tl.requests[tl.requests["conn"] == conn]
    r = requests.sort_values(["start", "request"], kind="stable", na_position="last").reset_index(drop=True)
    pages = tl.source.detail.get("pages") or []
    summary = summarize(r, tl.connections, pages)
    figures = {"waterfall": lambda theme="light": _waterfall(requests, pages, theme)} if len(r) else {}
    answer = explain(r, summary)
    problems = [line for line in answer if "got no response" in line]
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=r, summary=summary,
                   answer=answer, figures=figures, json_fields=JSON_FIELDS,
                   table_fields=TABLE_FIELDS, problems=problems)


def summarize(r: pd.DataFrame, connections: pd.DataFrame, pages: list[dict]) -> dict:
    known = r["reused_connection"].dropna()
    reused = int(known.sum()) if len(known) else 0
    out = {
        "requests": int(len(r)),
        "connections": int(r["conn"].nunique()),
        "connections_inferred": int(connections["inferred"].sum()) if "inferred" in connections else 0,
        "new_connections": int((known == False).sum()),  # noqa: E712
        "reused_share": round(reused / len(known), 3) if len(known) else None,
        "no_response": int(r["status"].isna().sum()),
        "span_ms": round(float(r["end"].max() - r["start"].min()) * 1000, 3) if r["end"].notna().any() else None,
    }
    page = next((p for p in pages if p.get("onLoad") is not None or p.get("onContentLoad") is not None), None)
    if page is not None:
        out["dom_content_loaded_ms"] = _round(page.get("onContentLoad"))
        out["load_ms"] = _round(page.get("onLoad"))
    out["pages"] = len(pages)
    return out


def explain(r: pd.DataFrame, s: dict) -> list[str]:
    if not len(r):
        return ["No requests."]
    conns = f"{s['connections']} connection" + ("" if s["connections"] == 1 else "s")
    if s["connections_inferred"] and s["connections_inferred"] >= s["connections"]:
        conns += " (inferred from timing: the file names none)"
    elif s["connections_inferred"]:
        conns += f" ({s['connections_inferred']} inferred from timing: no id in the file)"
    out = [f"{s['requests']} requests over {conns}; {s['new_connections']} opened a new connection"
           + (f", {s['reused_share']:.0%} reused one." if s["reused_share"] is not None else ".")]
    hs = (r["connect"].fillna(0) + r["tls"].fillna(0))
    hs = hs[hs > 0]
    if len(hs):
        out.append(f"Connection setup (TCP + TLS) cost {_ms(hs.min())}\u2013{_ms(hs.max())} per new connection, "
                   f"{_ms(hs.sum())} in all.")
    if s.get("load_ms") is not None or s.get("dom_content_loaded_ms") is not None:
        out.append(f"DOMContentLoaded at {_fmt(s.get('dom_content_loaded_ms'))}, load at {_fmt(s.get('load_ms'))}.")
    total = r["end"] - r["start"]
    if total.notna().any():
        i = total.idxmax()
        w = r.at[i, "wait"] if not pd.isna(r.at[i, "wait"]) else r.at[i, "ttfb"]
        tail = f", {_ms(w)} of it waiting for the server" if not pd.isna(w) else ""
        out.append(f"Longest: {r.at[i, 'url']} took {_ms(total[i])}{tail}.")
    if s["no_response"]:
        out.append(f"{s['no_response']} request(s) got no response (blocked, failed or still pending).")
    return out


def _ms(seconds) -> float | str:
    if seconds is None or pd.isna(seconds):
        return "\u2013"
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:,.1f} ms"


def _round(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 1)


def _fmt(v) -> str:
    return "\u2013" if v is None else f"{v:,.0f} ms"


def _waterfall(requests, pages, theme):
    # Imported when drawn: plotly costs start-up time a --json run does not need.
    from traceviz.charts.waterfall import waterfall
    return waterfall(requests, pages, theme)


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
