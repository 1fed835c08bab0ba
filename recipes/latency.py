"""Where does the time go, and how bad is the tail?

p50, p90, p95 and p99 of time to first byte (TTFB: request start to the
first response byte, queueing and any handshake included) and of total time
(start to the last byte), per host and per content type, the slowest
requests and what held each of them up.  The same for a HAR, a DevTools
trace or protocol log, and a capture's decoded HTTP requests.

Percentiles are numpy's ``linear`` method (Hyndman & Fan type 7): for n
sorted values the p-th sits at rank (n - 1) * p / 100, interpolated
between neighbours.  A percentile is given only when the group has the
samples to hold it, n >= 100 / (100 - p): p90 needs 10 requests, p95 20,
p99 100; below that it is blank and the slowest request speaks instead.
``n`` is in every row.

    python recipes/latency.py page.har [--chart latency.html]
"""

from __future__ import annotations

import math

import pandas as pd

from traceviz.model import mime_kind
from traceviz.stats import QUANTILES, min_samples, percentile_table, percentiles_of, supported
from traceviz.recipe import Finding

NAME = "latency"
TITLE = "Request latency: median and tail"
NEEDS = ("HTTP requests: a HAR, a DevTools trace, or a capture whose HTTP can be read "
         "(plaintext, or TLS with its key log)")
FAILS_ON = ("a host or content type of 5+ requests whose tail TTFB (the highest percentile its requests can "
            "hold, else the slowest) is 3x its median or more")
TABLES = ("requests",)   # what analyze() and the figures read: load() builds only these
FIGURES = {"percentiles": "TTFB percentiles per host, worst tail at the top",
           "types": "TTFB percentiles per content type",
           "ecdf": "the distribution of TTFB (all requests, and the busiest hosts), the tail marked"}

METRICS = (("ttfb", "TTFB"), ("total", "total"))
JSON_FIELDS = ["by", "group", "n"] + [f"{m}_p{q}_ms" for m, _ in METRICS for q in QUANTILES] + \
              [f"{m}_max_ms" for m, _ in METRICS]
TABLE_FIELDS = ["by", "group", "n", "ttfb_p50_ms", ("ttfb_p90_ms", 3), ("ttfb_p99_ms", 4), ("ttfb_max_ms", 2),
                "total_p50_ms", ("total_p99_ms", 4), ("total_max_ms", 3)]
SLOWEST = 5
MIN_GROUP = 5           # below this many requests a group's p99 says little: no sentence about it
TAIL_WORTH_SAYING = 3.0  # p99/p50 at or above this is a tail worth a sentence


def applies(tl) -> bool:
    return len(tl.requests) > 0


def analyze(tl, conn: int | None = None) -> Finding:
    requests = tl.requests if conn is None else tl.requests[tl.requests["conn"] == conn]
    req = latency_frame(requests)
    rows = latency_rows(req)
    summary = summarize(req)
    answer = explain(req, rows, summary)
    problems = _tails(rows)          # a tail far above its median is what --fail stops on
    figures = {}
    if req["ttfb"].notna().any():
        by_host = percentile_table(req, "host", "ttfb")
        by_type = percentile_table(req, "type", "ttfb")
        figures["percentiles"] = lambda theme="light": _charts().percentiles(by_host, "time to first byte by host", theme)
        figures["types"] = lambda theme="light": _charts().percentiles(by_type, "time to first byte by content type", theme)
        figures["ecdf"] = lambda theme="light": _charts().ecdf(req, "ttfb", by="host", theme=theme)
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=rows, summary=summary,
                   answer=answer, figures=figures, json_fields=JSON_FIELDS, table_fields=TABLE_FIELDS,
                   problems=problems)


# --- the tables ---------------------------------------------------------------------------

def latency_frame(requests: pd.DataFrame) -> pd.DataFrame:
    """The requests with ``total`` (s) and a content ``type``; only answered ones are timed."""
    r = requests.copy()
    # a request that got no response has no latency to rank (a failed HAR entry says time 0)
    r["total"] = (r["end"] - r["start"]).where(r["status"].notna())
    r["ttfb"] = r["ttfb"].where(r["status"].notna())
    r["type"] = content_type(r)
    return r


def content_type(r: pd.DataFrame) -> pd.Series:
    """DevTools' resource type where the source has one, else the MIME type's family."""
    none = pd.Series(None, index=r.index, dtype="object")
    kind = r["resource_type"] if "resource_type" in r else none
    # the response's Content-Type (a capture's HTTP), else a browser export's own MIME type
    media = r["content_type"].astype("object") if "content_type" in r else none
    if "mime_type" in r:
        media = media.where(media.notna(), r["mime_type"])
    return kind.astype("object").where(kind.notna(), media.map(mime_kind)).fillna("unknown").astype(str)


def latency_rows(req: pd.DataFrame) -> pd.DataFrame:
    """One row per (all | host | type) group: n and each metric's percentiles in ms."""
    out = []
    for by in (None, "host", "type"):
        tables = {m: percentile_table(req, by, m).set_index("group") for m, _ in METRICS}
        groups = tables["ttfb"].index.union(tables["total"].index, sort=False)
        for g in groups:
            row = {"by": by or "all", "group": g}
            n = 0
            for m, _ in METRICS:
                t = tables[m]
                if g in t.index:
                    n = max(n, int(t.at[g, "n"]))
                for q in QUANTILES:
                    row[f"{m}_p{q}_ms"] = float(t.at[g, f"p{q}"]) if g in t.index else math.nan
                row[f"{m}_max_ms"] = float(t.at[g, "max"]) if g in t.index else math.nan
            row["n"] = n
            out.append(row)
    rows = pd.DataFrame(out, columns=JSON_FIELDS)
    ms = [c for c in JSON_FIELDS if c.endswith("_ms")]
    rows[ms] = rows[ms].round(3)       # microseconds: finer than any browser clock
    return rows


def slowest(req: pd.DataFrame, n: int = SLOWEST) -> pd.DataFrame:
    done = req[req["total"].notna()]
    return done.sort_values("total", ascending=False, kind="stable").head(n)


def summarize(req: pd.DataFrame) -> dict:
    n = int(req["ttfb"].notna().sum())
    out = {"requests": int(len(req)), "timed": n, "no_response": int(req["status"].isna().sum()),
           "hosts": int(req["host"].nunique())}
    for m, _ in METRICS:
        p = percentiles_of(req[m] * 1000)
        for q in (50, 90, 95, 99):     # blank where n cannot hold it (stats.min_samples)
            out[f"{m}_p{q}_ms"] = _r(p[q]) if supported(n, q) else None
        out[f"{m}_max_ms"] = _r(float((req[m] * 1000).max())) if n else None
    return out


def _r(v: float) -> float | None:
    return None if v is None or math.isnan(v) else round(v, 3)


# --- the explanation ----------------------------------------------------------------------

def explain(req: pd.DataFrame, rows: pd.DataFrame, s: dict) -> list[str]:
    if not s["timed"]:
        return [f"{s['requests']} requests, none with a response time to rank."]
    n = s["timed"]
    tail, key = _tail_name(n), _tail_key(n)
    out = [f"{n} timed requests on {_n(s['hosts'], 'host')}: TTFB median {_ms(s['ttfb_p50_ms'])}, "
           f"{tail} {_ms(s[f'ttfb_{key}_ms'])}; total median {_ms(s['total_p50_ms'])}, "
           f"{tail} {_ms(s[f'total_{key}_ms'])}."]
    if (rows["n"] < min_samples(99)).any():
        out.append(f"A percentile needs enough requests to hold it: p90 {min_samples(90)}, p95 {min_samples(95)}, "
                   f"p99 {min_samples(99)} (n \u2265 100/(100\u2212p)); with fewer it is left blank (\u2013) "
                   f"and the slowest request stands in.")
    out += _tails(rows)
    out += _slowest_lines(req)
    if s["no_response"]:
        out.append(f"{_n(s['no_response'], 'request')} got no response and are left out of the percentiles.")
    return out


def _tail_key(n: int) -> str:
    """The highest of p99, p95, p90 that ``n`` requests hold, else the slowest ("max")."""
    return next((f"p{q}" for q in (99, 95, 90) if supported(n, q)), "max")


def _tail_name(n: int) -> str:
    key = _tail_key(n)
    return key if key != "max" else "slowest"


def _tails(rows: pd.DataFrame) -> list[str]:
    """The groups whose tail TTFB is far above their own median (what --fail stops on)."""
    out = []
    for by in ("host", "type"):
        g = rows[(rows["by"] == by) & (rows["n"] >= MIN_GROUP) & (rows["ttfb_p50_ms"] > 0)].copy()
        if len(rows[rows["by"] == by]) < 2 or not len(g):
            continue
        g["tail"] = [r[f"ttfb_{_tail_key(int(r['n']))}_ms"] for _, r in g.iterrows()]
        g["ratio"] = g["tail"] / g["ttfb_p50_ms"]
        worst = g.sort_values("ratio", ascending=False).iloc[0]
        if worst["ratio"] >= TAIL_WORTH_SAYING:
            where = f"on {worst['group']}" if by == "host" else f"for {worst['group']} requests"
            out.append(f"{_tail_name(int(worst['n']))} TTFB {where} is {worst['ratio']:.0f}\u00d7 its median "
                       f"({_ms(worst['ttfb_p50_ms'])} \u2192 {_ms(worst['tail'])}, n={int(worst['n'])}).")
    return out


def _slowest_lines(req: pd.DataFrame) -> list[str]:
    top = slowest(req)
    if not len(top):
        return []
    causes = [cause(r) for r in top.itertuples(index=False)]
    out = []
    opened = [r for r in top.itertuples(index=False) if _pos(r.connect) or _pos(r.tls)]
    new_conn = len(opened)
    if len(top) > 1 and new_conn:
        tls = sum(1 for r in opened if _pos(r.tls))
        what = "a new TLS connection" if tls == new_conn else "a new connection"
        out.append(f"{new_conn} of the {len(top)} slowest waited on {what}.")
    for r, (_, why) in zip(top.itertuples(index=False), causes):
        status = "no response" if pd.isna(r.status) else str(int(r.status))
        out.append(f"slow: {_ms(r.total * 1000)} {r.method or ''} {r.url or '?'} ({status}): {why}.")
    return out


def cause(r) -> tuple[str, str]:
    """The phase that took the largest share of a request's time, in words."""
    parts = {
        "queue": _f(r.blocked) + _f(getattr(r, "unattributed", math.nan)),
        "dns": _f(r.dns),
        "handshake": _f(r.connect) + _f(r.tls),
        "server": _f(r.wait),
        "download": _f(r.receive),
    }
    if all(v == 0 for v in parts.values()):
        ttfb, total = _f(r.ttfb), _f(r.total)
        if ttfb:
            parts["server"], parts["download"] = ttfb, max(0.0, total - ttfb)
    key = max(parts, key=parts.get)
    total = _f(r.total) or sum(parts.values()) or 1.0
    share = parts[key] / total if total else 0
    words = {
        "queue": "queued in the browser before it could be sent",
        "dns": "resolving the name",
        "handshake": "opening the connection" + (" (TCP + TLS)" if _pos(r.tls) else ""),
        "server": "waiting for the server's first byte",
        "download": "downloading the response",
    }
    return key, f"{share:.0%} of it {words[key]}"


def _f(v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(x) else x


def _pos(v) -> bool:
    return _f(v) > 0


def _ms(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "\u2013"
    return f"{v / 1000:,.2f} s" if v >= 10000 else f"{v:,.0f} ms" if v >= 10 else f"{v:,.1f} ms"


def _n(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _charts():
    # Imported when a figure is drawn: plotly costs start-up time a --json run does not need.
    from traceviz.charts import percentiles
    return percentiles


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
