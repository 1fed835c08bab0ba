"""How many connections did each server hold, did requests queue for one, hit a limit, or leak?

A client that keeps a *pool* of N connections sends at most N requests at
once; the next waits for a connection to come free, and on the wire it
leaves the moment a response ends on that connection.  A proxy that caps
the connections (or requests) it sends a backend (haproxy's ``maxconn``,
nginx's ``max_conns``) holds the rest in its queue -- the upstream request
starts late -- and answers 503 when they wait too long.  A client that opens
connections and never closes them *leaks* them: they pile up idle until the
server's own limit, after which new connections finish their TCP handshake
in the kernel's backlog but are never served.  One row per server (per leg
when the capture holds a proxy's two sides): connections, the most open at
once, requests and the most in flight, requests queued behind a busy
connection, time requests waited in the proxy, 503s, requests never
answered, and connections left open and idle at the end of the capture.

    python recipes/pool.py capture.pcapng [--chart pool.html]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from traceviz.charts.text import ms_text
from traceviz.model import positions
from traceviz.recipe import Finding
from traceviz.stats import connection_spans, most_at_once, request_sent_at

NAME = "pool"
NEEDS = "HTTP requests over TCP"
FAILS_ON = "a 503 at a connection limit, a leaked connection, a request never answered"
TABLES = ("connections", "packets", "requests")   # what analyze() and the figures read: load() builds only these
FIGURES = {"concurrency": "connections and requests open at once, per server, over time"}
EXAMPLE = "connection-pool"
TITLE = "Connection pools, limits and leaks"

JSON_FIELDS = ["server", "leg", "connections", "max_open", "requests", "max_in_flight", "upstream_max_in_flight",
               "queued_on_conn", "proxy_wait_ms", "status_503", "unanswered", "left_open", "idle_at_end_s"]
TABLE_FIELDS = ["server", "leg", "connections", "max_open", "requests", "max_in_flight", "upstream_max_in_flight",
                "queued_on_conn", "status_503", "unanswered", "left_open"]
BACK_TO_BACK = 0.005     # s: a request this soon after the previous response ended on its connection waited for it
LEFT_IDLE = 0.5          # s: a connection open at the end, idle this long after its last exchange, was left behind


def applies(tl) -> bool:
    return len(tl.requests) > 0 and bool((tl.connections["transport"] == "tcp").any())


def analyze(tl, conn: int | None = None) -> Finding:
    rows = server_rows(tl)
    answer, problems = explain(tl, rows)
    figures = {}
    if len(rows):
        figures["concurrency"] = lambda theme="light": _chart(tl, theme)
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=rows,
                   summary={"servers": int(len(rows)), "max_open": int(rows["max_open"].max()) if len(rows) else 0},
                   answer=answer, figures=figures, json_fields=JSON_FIELDS, table_fields=TABLE_FIELDS,
                   problems=problems)


def _queued(mine: pd.DataFrame, flights: list[tuple[float, float]], rtt: dict, max_open: int) -> int:
    """Requests that waited for a connection: sent on a connection as soon as its previous response
    ended (one round trip for the client to see the end, at the capture point), to a server whose every
    connection had a request in flight at once -- a pool at its cap."""
    if max_open < 2 or most_at_once(flights) < max_open:
        return 0
    n = 0
    for k, (ends, starts) in _by_conn(mine, "end", "start").items():
        n += sum(1 for prev, start in zip(ends, starts[1:])
                 if not pd.isna(prev) and 0 <= start - prev <= rtt.get(k, 0) + BACK_TO_BACK)
    return n


def _by_conn(mine: pd.DataFrame, *cols: str) -> dict:
    """conn -> the lists of ``cols`` of its requests, in ``mine``'s order (conns in ascending order,
    as groupby gives them; a request without one is in none)."""
    out: dict = {}
    for k, *values in zip(mine["conn"].tolist(), *(mine[c].tolist() for c in cols)):
        if not pd.isna(k):
            lists = out.setdefault(k, tuple([] for _ in cols))
            for lst, v in zip(lists, values):
                lst.append(v)
    return dict(sorted(out.items()))


def _left_behind(g: pd.DataFrame, mine: pd.DataFrame, still, last_ts: float) -> list[float]:
    """Idle times of connections still open at the end, idle since their last exchange, that a later
    connection from the same host to the same server was opened instead of reusing: leaked."""
    out = []
    if not still.any():
        return out
    theirs = _by_conn(mine, "end", "status")
    starts = g["start"].to_numpy(dtype=float, na_value=np.nan)
    clients = g["client"].astype(str).tolist()
    for k, client in zip(g.loc[still, "conn"], g.loc[still, "client"]):
        ends, status = theirs.get(k, ([], []))
        done = [float(e) for e in ends if not pd.isna(e)]
        if not done or any(pd.isna(s) for s in status) or last_ts - max(done) < LEFT_IDLE:
            continue
        idle_since, host = max(done), str(client).rsplit(":", 1)[0] + ":"
        if any(s > idle_since and c.startswith(host) for s, c in zip(starts, clients)):
            out.append(last_ts - idle_since)
    return out


_REQUEST_COLUMNS = ("request", "conn", "start", "end", "status", "parent")
_CONNECTION_COLUMNS = ["conn", "client", "server", "start", "end", "close", "handshake_rtt"]


class _Index:
    """Rows of the requests table by connection and by parent, found once: a filter of the
    whole table per server took seconds on a capture of a few hundred servers."""

    def __init__(self, rq: pd.DataFrame) -> None:
        self.rq = rq
        self.of_conn = positions(rq["conn"])
        self.of_parent = positions(rq["parent"]) if "parent" in rq.columns else {}

    def of(self, conns) -> pd.DataFrame:
        """The requests on ``conns``, in table order (as a filter keeps them)."""
        return self.rq.iloc[sorted(i for k in conns for i in self.of_conn.get(k, ()))]

    def children(self, requests) -> pd.DataFrame:
        """The requests whose parent is one of ``requests``, in table order."""
        return self.rq.iloc[sorted(i for r in requests for i in self.of_parent.get(r, ()))]


def server_rows(tl) -> pd.DataFrame:
    c = tl.connections[(tl.connections["transport"] == "tcp").to_numpy(dtype=bool, na_value=False)]
    rq = tl.requests
    leg_of = rq.groupby("conn")["leg"].first().to_dict() if "leg" in rq.columns else {}
    last_ts = float(tl.packets["ts"].max()) if len(tl.packets) else float(c["end"].max())
    out = []
    # each request from its own first byte; only the columns read below, each group a copy of them
    rq = rq.assign(start=request_sent_at(rq))[[k for k in _REQUEST_COLUMNS if k in rq.columns]]
    index = _Index(rq)
    c = c[_CONNECTION_COLUMNS].assign(_leg=[leg_of.get(k) if isinstance(leg_of.get(k), str) else None
                                            for k in c["conn"]])
    for (server, leg), g in c.groupby([c["server"], c["_leg"].fillna("")], sort=False):
        mine = index.of(set(g["conn"].tolist())).sort_values("start")
        if not len(mine):
            continue
        still = (g["close"].astype("object") == "open").to_numpy(dtype=bool, na_value=False)
        spans = connection_spans(g, last_ts)
        flights = [(float(a), float(b) if not pd.isna(b) else last_ts) for a, b in zip(mine["start"], mine["end"])]
        rtt = dict(zip(g["conn"], pd.to_numeric(g["handshake_rtt"], errors="coerce").fillna(0)))
        queued = _queued(mine, flights, rtt, most_at_once(spans))
        children = index.children(set(mine["request"].tolist())) if "parent" in rq.columns else rq.iloc[0:0]
        parent_start = dict(zip(mine["request"], mine["start"]))
        waits = [(float(start) - float(parent_start[int(parent)])) * 1000
                 for start, parent in zip(children["start"], children["parent"])]
        up_flights = [(float(a), float(b) if not pd.isna(b) else last_ts)
                      for a, b in zip(children["start"], children["end"])]
        # A proxy's idle upstream connections are its pool, which it manages; a client's are its own.
        left = _left_behind(g, mine, still, last_ts) if leg != "upstream" else []
        out.append({
            "server": server, "leg": leg or None, "connections": int(len(g)), "max_open": most_at_once(spans),
            "requests": int(len(mine)), "max_in_flight": most_at_once(flights),
            "upstream_max_in_flight": most_at_once(up_flights) if up_flights else None,
            "queued_on_conn": queued,
            "proxy_wait_ms": sorted(round(w, 1) for w in waits if w > BACK_TO_BACK * 1000 * 4) or None,
            "status_503": int((mine["status"] == 503).sum()),
            "unanswered": int(mine["status"].isna().sum()),
            "left_open": len(left), "idle_at_end_s": round(min(left), 3) if left else None,
        })
    return pd.DataFrame(out, columns=JSON_FIELDS)


def explain(tl, rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    if not len(rows):
        return ["No HTTP requests over TCP here."], []
    out, problems = [], []
    rq = tl.requests
    for r in rows.itertuples(index=False):
        leg = f" ({r.leg} leg)" if r.leg else ""
        text = (f"{r.server}{leg}: {r.connections} connection(s) carried {r.requests} request(s); at most "
                f"{r.max_open} open and {r.max_in_flight} in flight at once")
        if r.queued_on_conn:
            text += (f"; {r.queued_on_conn} request(s) went out as soon as a response ended on the same connection: "
                     f"they were queued for a connection (a pool of {r.max_open} at its limit)")
        waited = isinstance(r.proxy_wait_ms, list) and bool(r.proxy_wait_ms)
        if r.upstream_max_in_flight is not None and not pd.isna(r.upstream_max_in_flight) \
                and r.upstream_max_in_flight < r.max_in_flight and (waited or r.status_503):
            text += (f"; the proxy sent at most {int(r.upstream_max_in_flight)} of them upstream at once "
                     f"(a limit on the backend)")
        if isinstance(r.proxy_wait_ms, list) and r.proxy_wait_ms:
            text += (f"; {len(r.proxy_wait_ms)} waited in the proxy's queue "
                     f"{ms_text(min(r.proxy_wait_ms))}\u2013{ms_text(max(r.proxy_wait_ms))} before going upstream")
        out.append(text + ".")
        if r.status_503:
            bad = rq[(rq["status"] == 503).to_numpy(dtype=bool, na_value=False)
                     & rq["conn"].isin(tl.connections.loc[tl.connections["server"] == r.server, "conn"]).to_numpy(
                         dtype=bool, na_value=False)]
            waited = (bad["ttfb"] * 1000).round(0).astype(int).tolist()
            none = ("with no upstream attempt" if "cause" in bad.columns
                    and (bad["cause"].astype("object") == "no-upstream").all() else "")
            out.append(f"{r.server}: {r.status_503} request(s) got 503 after waiting "
                       f"{', '.join(str(w) for w in waited)} ms {none} -- the proxy's queue timed out: more "
                       f"requests arrived than the backend's limit lets through.")
            problems.append(f"{r.server}: {r.status_503} request(s) refused with 503 at a connection limit")
        if r.left_open:
            out.append(f"{r.server}: {r.left_open} connection(s) were used and then left open, idle "
                       f"(at least {r.idle_at_end_s:.2f} s at the end of the capture): leaked, each holding one of "
                       f"the server's connection slots.")
            problems.append(f"{r.server}: {r.left_open} connection(s) left open (leak)")
        if r.unanswered:
            out.append(f"{r.server}: {r.unanswered} request(s) never got an answer although their TCP handshake "
                       f"completed: the server had stopped accepting connections (its limit was reached; the "
                       f"kernel's backlog finished the handshake).")
            problems.append(f"{r.server}: {r.unanswered} request(s) unanswered")
    return out, problems



def _chart(tl, theme):
    from traceviz.charts.pool import concurrency_chart
    return concurrency_chart(tl.connections, tl.requests, tl.packets, theme=theme)


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
