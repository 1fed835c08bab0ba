"""Was a server hit by a SYN flood, did it use SYN cookies, and what did real clients go through?

A SYN flood sends SYNs from addresses that will never answer: each takes a
slot in the listener's SYN queue (a *half-open* connection) until its
SYN-ACK retries run out.  Once the queue is full the server drops new SYNs
-- a real client's too, which waits for its SYN retransmission (1 s, then
2 s...).  With *SYN cookies* the server answers every SYN once the queue is
full with a SYN-ACK whose sequence number encodes the connection, keeping
no state: such SYN-ACKs are never retransmitted, nothing is dropped, and a
real client connects in one round trip.  One row per listener that got
SYNs from many sources: SYNs, sources, rate, SYNs dropped, half-open
connections, SYN-ACKs retransmitted (the queue's size shows as the number
of connections that got them), whether cookies answered, and the
handshakes that completed, with how long they took.

    python recipes/synflood.py capture.pcapng [--chart flood.html]
"""

from __future__ import annotations

import pandas as pd

from traceviz.charts.text import fmt_ms
from traceviz.recipe import Finding

NAME = "synflood"
NEEDS = "SYNs at one listener from many addresses, most never completing"
FAILS_ON = "SYNs dropped by a full SYN queue, or a real handshake slowed by SYN retransmissions"
TABLES = ("connections", "events")   # what analyze() and the figures read: load() builds only these
TRANSPORT_ONLY = True    # nothing above TCP and UDP: no TLS, HTTP or DNS is decoded for it
FIGURES = {"flood": "SYNs per 100 ms by fate, and the real clients' handshakes"}
EXAMPLE = "syn-flood"
TITLE = "SYN floods and SYN cookies"

JSON_FIELDS = ["server", "syns", "sources", "syn_rate", "first_syn", "last_syn", "dropped", "half_open",
               "synack_retransmitted", "queue_estimate", "synacks_resent", "stateless_synacks", "syn_cookies", "completed",
               "completed_connect_s", "completed_syn_retransmits"]
TABLE_FIELDS = ["server", "syns", "sources", "syn_rate", "dropped", "half_open", "synack_retransmitted",
                "syn_cookies", "completed", "completed_connect_s"]
MIN_SOURCES = 10            # SYNs from this many addresses at one listener, most never completing: a flood


def applies(tl) -> bool:
    return len(_flooded(tl)) > 0


def _flooded(tl) -> pd.DataFrame:
    c = tl.connections[(tl.connections["transport"] == "tcp").to_numpy(dtype=bool, na_value=False)]
    if not len(c):
        return c
    hosts = c["client"].str.rsplit(":", n=1).str[0]
    per = c.assign(_host=hosts).groupby("server").agg(sources=("_host", "nunique"), done=("ack", "count"),
                                                       n=("conn", "count"))
    hit = per[(per["sources"] >= MIN_SOURCES) & (per["done"] < per["n"] / 2)].index
    return c[c["server"].isin(hit).to_numpy(dtype=bool, na_value=False)]


def analyze(tl, conn: int | None = None) -> Finding:
    rows = listener_rows(tl)
    answer, problems = explain(rows)
    figures = {}
    if len(rows):
        figures["flood"] = lambda theme="light": _chart(tl, rows, theme)
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=rows,
                   summary={"flooded_listeners": int(len(rows))}, answer=answer, figures=figures,
                   json_fields=JSON_FIELDS, table_fields=TABLE_FIELDS, problems=problems)


def synack_counts(tl) -> pd.Series:
    """SYN-ACKs each connection saw (more than one: retransmitted)."""
    ev = tl.events
    sa = ev[(ev["layer"].astype("object") == "tcp").to_numpy(dtype=bool, na_value=False)
            & (ev["kind"].astype("object") == "SYN-ACK").to_numpy(dtype=bool, na_value=False)]
    return sa.groupby("conn").size()


def listener_rows(tl) -> pd.DataFrame:
    c = _flooded(tl)
    counts = synack_counts(tl)
    out = []
    for server, g in c.groupby("server"):
        n_synack = g["conn"].map(counts).fillna(0).astype(int)
        answered = g["synack"].notna()
        completed = g[g["ack"].notna().to_numpy(dtype=bool, na_value=False)]
        half = g[answered.to_numpy(dtype=bool) & g["ack"].isna().to_numpy(dtype=bool)]
        retrans = int((n_synack[half.index] > 1).sum()) if len(half) else 0
        stateless = int((n_synack[half.index] == 1).sum()) if len(half) else 0
        # SYNs the server never answered: every SYN of a connection that got no SYN-ACK, and the
        # SYNs a completed or half-open connection had to send again before one was answered.
        dropped = int((~answered).sum() + g.loc[~answered, "syn_retransmits"].fillna(0).sum()
                      + g.loc[answered, "syn_retransmits"].fillna(0).sum())
        span = float(g["syn"].max() - g["syn"].min()) if len(g) > 1 else 0.0
        cookies = dropped == 0 and stateless > max(retrans, 1)
        resent = int((n_synack[half.index] - 1).clip(lower=0).sum()) if len(half) else 0
        out.append({
            "server": server, "syns": int(len(g) + g["syn_retransmits"].fillna(0).sum()),
            "sources": int(g["client"].str.rsplit(":", n=1).str[0].nunique()),
            "syn_rate": round(len(g) / span, 1) if span > 0 else None,
            "first_syn": float(g["syn"].min()), "last_syn": float(g["syn"].max()),
            "dropped": dropped, "half_open": int(len(half)), "synack_retransmitted": retrans,
            "queue_estimate": retrans or None, "synacks_resent": resent, "stateless_synacks": stateless,
            "syn_cookies": bool(cookies),
            "completed": int(len(completed)),
            "completed_connect_s": [round(float(x), 4) for x in completed["connect_time"]],
            "completed_syn_retransmits": [int(x) for x in completed["syn_retransmits"]],
        })
    return pd.DataFrame(out, columns=JSON_FIELDS)


def explain(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    if not len(rows):
        return [f"No SYN flood here: no listener got SYNs from {MIN_SOURCES} or more addresses that mostly "
                "never completed their handshake."], []
    out, problems = [], []
    for r in rows.itertuples(index=False):
        out.append(f"{r.server} got {r.syns} SYNs from {r.sources} addresses"
                   + (f" ({r.syn_rate:g} per second)" if r.syn_rate else "")
                   + f"; {r.completed} handshake(s) completed, {r.half_open} stayed half-open (SYN-ACK sent, no ACK "
                   f"ever came), {r.dropped} SYN(s) were never answered.")
        if r.synack_retransmitted:
            out.append(f"{r.synack_retransmitted} half-open connection(s) had their SYN-ACK retransmitted: each held "
                       f"a slot in the SYN queue, so the queue holds about {r.synack_retransmitted}.")
        if r.syn_cookies:
            out.append(f"SYN cookies: once the queue was full, {r.stateless_synacks} SYNs were answered by a SYN-ACK "
                       "that was never retransmitted -- the server kept no state for them -- and no SYN was "
                       "dropped.")
        elif r.dropped:
            out.append(f"No SYN cookies: with the queue full the server dropped {r.dropped} SYNs; a real client's "
                       "SYN is dropped the same way and must wait for its retransmission.")
            problems.append(f"{r.server}: {r.dropped} SYNs dropped by a full SYN queue")
        for t, n in zip(r.completed_connect_s, r.completed_syn_retransmits):
            if n:
                out.append(f"A real client's handshake took {t:.2f} s: {n} SYN retransmission(s) before the server "
                           "had room for it.")
                problems.append(f"{r.server}: a handshake took {t:.2f} s during the flood")
            else:
                out.append(f"A real client's handshake took {fmt_ms(t)}: one round trip, its first SYN answered.")
    return out, problems


def _chart(tl, rows, theme):
    from traceviz.charts.synflood import flood_chart
    return flood_chart(tl.connections, synack_counts(tl), rows, theme=theme)


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
