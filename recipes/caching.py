"""Did the client revalidate what it had cached, what did the 304s save, and what did a missing validator cost?

A response can carry a validator -- an ``ETag``, a ``Last-Modified`` date --
and ``Cache-Control`` saying how long it stays fresh (``max-age``) or that
it must be checked before each use (``no-cache``).  A cache holding a stale
copy asks again *conditionally* (``If-None-Match`` with the ETag,
``If-Modified-Since`` with the date); if nothing changed the server answers
``304 Not Modified`` with no body, and the copy is used.  One row per URL:
how often it was asked for, the full answers and the 304s, the body bytes
downloaded and the bytes the 304s saved (the body the cache reused each
time), and, for a response with no validator, the bytes downloaded again
because the client had nothing to revalidate with.  A fresh copy (within
``max-age``) is used with no request at all: the wire shows nothing.

    python recipes/caching.py capture.pcapng [--chart caching.html]
"""

from __future__ import annotations

import re

import pandas as pd

from traceviz.recipe import Finding

NAME = "caching"
NEEDS = "HTTP responses with validators (ETag, Last-Modified) or Cache-Control, or conditional requests"
FAILS_ON = "a response downloaded again for want of a validator, or a validator offered and never used"
TABLES = ("requests",)   # what analyze() and the figures read: load() builds only these
FIGURES = {"bytes": "per URL: body bytes downloaded, bytes 304s saved, bytes fetched again"}
EXAMPLE = "http-caching"
TITLE = "HTTP caching: conditional requests, 304s, validators"

JSON_FIELDS = ["url", "requests", "full", "not_modified", "conditional", "changed", "validator", "cache_control",
               "max_age", "body_bytes", "saved_bytes", "refetched_bytes", "wire_bytes"]
TABLE_FIELDS = ["url", "requests", "full", "not_modified", "validator", "cache_control", "body_bytes",
                "saved_bytes", "refetched_bytes"]


def applies(tl) -> bool:
    rq = tl.requests
    if not len(rq) or "validator" not in rq.columns:
        return False
    said = rq["validator"].notna() | rq["conditional"].notna() | rq["cache_control"].notna()
    return bool(said.to_numpy(dtype=bool, na_value=False).any())


def analyze(tl, conn: int | None = None) -> Finding:
    rq = tl.requests
    if "validator" not in rq.columns:
        rq = rq.assign(validator=None, conditional=None, cache_control=None, revalidated=None, body_bytes=None)
    if conn is not None:
        rq = rq[(rq["conn"] == conn).to_numpy(dtype=bool, na_value=False)]
    rows = url_rows(rq)
    answer, problems = explain(rows)
    figures = {}
    if len(rows):
        figures["bytes"] = lambda theme="light": _chart(rows, theme)
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=rows, summary=_summary(rows), answer=answer,
                   figures=figures, json_fields=JSON_FIELDS, table_fields=TABLE_FIELDS, problems=problems)


def url_rows(rq: pd.DataFrame) -> pd.DataFrame:
    """One row per URL: its answered requests in start order, told one by one."""
    answered = rq[rq["status"].notna().to_numpy(dtype=bool, na_value=False)].sort_values("start")
    # Plain lists, grouped by hand: as pandas groups, thousands of URLs took seconds each thousand.
    look = {c: answered[c].tolist() for c in ("url", "status", "conditional", "validator", "cache_control")}
    look["asked"] = answered["conditional"].notna().tolist()
    look["body"] = pd.to_numeric(answered["body_bytes"], errors="coerce").fillna(0).astype(int).tolist()
    look["wire"] = pd.to_numeric(answered["resp_bytes"]).fillna(0).tolist()
    by_url: dict = {}
    for i, url in enumerate(look["url"]):
        if not pd.isna(url):                   # as groupby: a request without a URL is in no group
            by_url.setdefault(url, []).append(i)
    out = [_url_row(url, {k: [v[i] for i in rows] for k, v in look.items()}) for url, rows in by_url.items()]
    return pd.DataFrame(out, columns=JSON_FIELDS).astype({"max_age": "Int64"})


def _url_row(url, g: dict) -> dict:
    """The row of one URL, ``g`` its requests' values (lists, in start order)."""
    status = [int(s) for s in g["status"]]
    validators = [v for v in g["validator"] if isinstance(v, str)]
    last_full, saved, refetched, changed = None, 0, 0, 0
    for st, b, cond in zip(status, g["body"], g["conditional"]):
        if st == 304:
            saved += last_full or 0               # the body the cache reused instead
        elif 200 <= st < 300:
            if last_full is not None and not isinstance(cond, str):
                refetched += b                    # downloaded again with nothing to revalidate with
            if isinstance(cond, str):
                changed += 1                      # asked conditionally, but it had changed
            last_full = b
    cc = next((c for c in reversed(g["cache_control"]) if isinstance(c, str)), None)
    m = re.search(r"max-age=(\d+)", cc or "")
    return {
        "url": url, "requests": len(status), "full": sum(1 for s in status if 200 <= s < 300),
        "not_modified": status.count(304), "conditional": sum(g["asked"]),
        "changed": changed, "validator": validators[-1] if validators else None, "cache_control": cc,
        "max_age": int(m.group(1)) if m else None, "body_bytes": sum(g["body"]), "saved_bytes": saved,
        "refetched_bytes": refetched, "wire_bytes": int(sum(g["wire"])),
    }


def _summary(rows: pd.DataFrame) -> dict:
    if not len(rows):
        return {"urls": 0}
    return {"urls": int(len(rows)), "requests": int(rows["requests"].sum()),
            "not_modified": int(rows["not_modified"].sum()), "body_bytes": int(rows["body_bytes"].sum()),
            "saved_bytes": int(rows["saved_bytes"].sum()), "refetched_bytes": int(rows["refetched_bytes"].sum())}


def explain(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    if not len(rows):
        return ["No HTTP responses here."], []
    out, problems = [], []
    s = _summary(rows)
    out.append(f"{s['requests']} requests for {s['urls']} URLs downloaded {_b(s['body_bytes'])} of bodies; "
               f"{s['not_modified']} were answered 304 Not Modified, saving {_b(s['saved_bytes'])}.")
    for r in rows.itertuples(index=False):
        if r.not_modified:
            how = {"etag": "If-None-Match (its ETag)", "last-modified": "If-Modified-Since (its date)",
                   "both": "If-None-Match and If-Modified-Since"}.get(r.validator, "a validator")
            text = (f"{r.url}: revalidated {r.conditional} time(s) with {how}: {r.not_modified} \u00d7 304, "
                    f"{_b(r.saved_bytes)} not sent again")
            if r.changed:
                text += f"; {r.changed} time(s) it had changed and came back whole (200)"
            out.append(text + ".")
        elif r.refetched_bytes and not isinstance(r.validator, str):     # NaN: none was sent
            out.append(f"{r.url}: no ETag and no Last-Modified, so the client could not ask 'has it "
                       f"changed?': {r.full} full downloads, {_b(r.refetched_bytes)} of them repeats. "
                       f"A validator would have made each repeat a 304.")
            problems.append(f"{r.url}: {_b(r.refetched_bytes)} downloaded again for want of a validator")
        elif not pd.isna(r.max_age) and r.max_age and r.requests == 1:     # NA: no max-age was sent
            out.append(f"{r.url}: fetched once; 'max-age={int(r.max_age)}' lets a cache use it for "
                       f"{int(r.max_age)} s without asking, so any later use sent no request.")
        elif r.full > 1 and isinstance(r.validator, str) and not r.conditional:
            out.append(f"{r.url}: fetched {r.full} times in full although it offered a validator "
                       f"({r.validator}): the client did not cache it or did not revalidate.")
            problems.append(f"{r.url}: validator offered but never used")
    return out, problems


def _b(n) -> str:
    n = int(n)
    return f"{n} B" if n < 10_000 else f"{n / 1000:.1f} kB"


def _chart(rows, theme):
    from traceviz.charts.caching import bytes_chart
    return bytes_chart(rows, theme=theme)


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
