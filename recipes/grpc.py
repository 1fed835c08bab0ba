"""Which gRPC methods were called, how long did each take, and how did each call end?

gRPC runs each call as one HTTP/2 stream: ``POST /package.Service/Method``
with ``content-type: application/grpc``, the request and the replies as
length-prefixed protobuf messages in DATA frames, and the call's outcome
in the *trailers* -- ``grpc-status`` (0 is OK) and ``grpc-message`` -- after
the last reply.  The HTTP status is almost always 200 even when the call
failed, so the trailers are the answer.  One row per method: calls, the
statuses they ended with, latency (the stream's first byte to its last,
median and worst), and messages per call (a unary call 1 → 1, a server
stream 1 → N, with the gap between streamed replies).

    python recipes/grpc.py capture.pcapng [--chart grpc.html]
"""

from __future__ import annotations

import pandas as pd

from traceviz.charts.text import ms_text
from traceviz.recipe import Finding
from traceviz.stats import request_sent_at

NAME = "grpc"
NEEDS = "HTTP/2 streams with content-type application/grpc"
FAILS_ON = "a call that ended with a grpc-status other than 0"
TABLES = ("events", "requests")   # what analyze() and the figures read: load() builds only these
FIGURES = {"calls": "one lane per call: its stream, its messages, its status"}
EXAMPLE = "grpc-h2c"
TITLE = "gRPC: calls per method, latency, status"

JSON_FIELDS = ["service", "method", "calls", "ok", "statuses", "p50_ms", "max_ms", "first_reply_ms",
               "requests_per_call", "replies_per_call", "reply_gap_ms", "request_bytes", "reply_bytes", "conns"]
TABLE_FIELDS = ["service", "method", "calls", "statuses", "p50_ms", "max_ms", "replies_per_call", "reply_gap_ms"]


def applies(tl) -> bool:
    return "grpc_method" in tl.requests.columns and bool(tl.requests["grpc_method"].notna().any())


def calls_of(tl) -> pd.DataFrame:
    rq = tl.requests
    if "grpc_method" not in rq.columns:
        return rq.iloc[0:0]
    return rq[rq["grpc_method"].notna().to_numpy(dtype=bool, na_value=False)]


def analyze(tl, conn: int | None = None) -> Finding:
    calls = calls_of(tl)
    if conn is not None:
        calls = calls[(calls["conn"] == conn).to_numpy(dtype=bool, na_value=False)]
    rows = method_rows(tl, calls)
    answer, problems = explain(calls, rows)
    figures = {}
    if len(calls):
        figures["calls"] = lambda theme="light": _chart(tl, calls, theme)
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=rows,
                   summary={"calls": int(len(calls)), "methods": int(len(rows)),
                            "failed": int((calls["grpc_status"].fillna(-1) != 0).sum()) if len(calls) else 0},
                   answer=answer, figures=figures, json_fields=JSON_FIELDS, table_fields=TABLE_FIELDS,
                   problems=problems)


def method_rows(tl, calls: pd.DataFrame) -> pd.DataFrame:
    ev = tl.events
    msgs = ev[(ev["layer"].astype("object") == "grpc").to_numpy(dtype=bool, na_value=False)
              & (ev["kind"].astype("object") == "message").to_numpy(dtype=bool, na_value=False)]
    out = []
    for (service, method), g in calls.groupby(["grpc_service", "grpc_method"], sort=True, dropna=False):
        took = (g["end"] - request_sent_at(g)) * 1000
        gaps, req_b, rep_b = [], 0, 0
        for c in g.itertuples(index=False):
            mine = msgs[(msgs["conn"] == c.conn).to_numpy(dtype=bool, na_value=False)
                        & (msgs["stream"] == c.stream).to_numpy(dtype=bool, na_value=False)]
            replies = mine[mine["dir"] == "s2c"].sort_values("ts")
            gaps += (replies["ts"].diff().dropna() * 1000).tolist()
            req_b += int(pd.to_numeric(mine.loc[mine["dir"] == "c2s", "size"]).sum())
            rep_b += int(pd.to_numeric(replies["size"]).sum())
        codes = g["grpc_code"].fillna("no status").value_counts()
        out.append({
            "service": service, "method": method, "calls": int(len(g)),
            "ok": int((g["grpc_status"] == 0).fillna(False).sum()),
            "statuses": {str(k): int(v) for k, v in codes.items()},
            "p50_ms": round(float(took.median()), 3), "max_ms": round(float(took.max()), 3),
            "first_reply_ms": round(float((g["ttfb"] * 1000).median()), 3),
            "requests_per_call": round(float(g["grpc_requests"].mean()), 2),
            "replies_per_call": round(float(g["grpc_responses"].mean()), 2),
            "reply_gap_ms": round(float(pd.Series(gaps).median()), 3) if gaps else None,
            "request_bytes": req_b, "reply_bytes": rep_b,
            "conns": sorted({int(x) for x in g["conn"].dropna()}),
        })
    return pd.DataFrame(out, columns=JSON_FIELDS)


def explain(calls: pd.DataFrame, rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    if not len(calls):
        return ["No gRPC call here (no HTTP/2 stream with content-type application/grpc)."], []
    conns = sorted({int(x) for x in calls["conn"].dropna()})
    out = [f"{len(calls)} gRPC call(s) to {len(rows)} method(s) on {len(conns)} HTTP/2 connection(s), "
           f"each call its own stream."]
    problems = []
    for r in rows.itertuples(index=False):
        kind = ("server streaming" if r.replies_per_call > 1 and r.requests_per_call <= 1 else
                "client streaming" if r.requests_per_call > 1 and r.replies_per_call <= 1 else
                "bidirectional streaming" if r.requests_per_call > 1 else "unary")
        text = (f"/{r.service}/{r.method} ({kind}): {r.calls} call(s), median {ms_text(r.p50_ms)}, worst "
                f"{ms_text(r.max_ms)}; {r.replies_per_call:g} reply message(s) per call")
        if r.reply_gap_ms is not None and not pd.isna(r.reply_gap_ms):
            text += f", streamed {ms_text(r.reply_gap_ms)} apart"
        bad = {k: v for k, v in r.statuses.items() if k != "OK"}
        text += "; " + ", ".join(f"{v} \u00d7 {k}" for k, v in r.statuses.items())
        out.append(text + ".")
        if bad:
            problems.append(f"/{r.service}/{r.method}: " + ", ".join(f"{v} \u00d7 {k}" for k, v in bad.items()))
    for c in calls[(calls["grpc_status"].fillna(-1) != 0).to_numpy(dtype=bool, na_value=False)].itertuples(index=False):
        why = f" '{c.grpc_message}'" if isinstance(c.grpc_message, str) else ""
        out.append(f"Stream {c.stream} (conn {c.conn}) /{c.grpc_service}/{c.grpc_method} ended with grpc-status "
                   f"{c.grpc_status if not pd.isna(c.grpc_status) else '(none)'} {c.grpc_code or ''}{why} "
                   f"although its HTTP status was {c.status}: the trailers, not the status line, tell.")
    return out, problems



def _chart(tl, calls, theme):
    from traceviz.charts.grpc import calls_chart
    return calls_chart(calls, tl.events, theme=theme)


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
