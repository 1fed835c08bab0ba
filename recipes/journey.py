"""Where did the time of a request go, from looking up the name to the last byte?

The journey of an HTTP request, as the wire shows it: the DNS lookup (the
query to the resolver and its answer), the TCP handshake with the address
the answer named, the TLS handshake, the request and the wait for its first
byte, then the rest of the response.  One row per request (the first on its
connection carries the lookup and the handshakes; a reused connection skips
them), with each phase's duration and, like ``curl -w``, the time from the
start of the journey at which each phase ended: ``time_namelookup``,
``time_connect``, ``time_appconnect``, ``time_starttransfer``, ``time_total``.
A gap between the DNS answer and the SYN is time the client spent on its
own (its resolver library, a thread hand-off): the wire was idle.

    python recipes/journey.py capture.pcapng [--conn N] [--chart journey.html]
"""

from __future__ import annotations

import math

import pandas as pd

from traceviz.errors import InputError
from traceviz.charts.text import ms_text
from traceviz.recipe import Finding
from traceviz.stats import request_sent_at

NAME = "journey"
NEEDS = "HTTP requests in a packet capture"
FAILS_ON = "a request that got no answer"
TABLES = ("connections", "events", "packets", "requests")   # what analyze() and the figures read: load() builds only these
FIGURES = {"journey": "the first request's phases on one time axis: DNS, TCP, TLS, request, response"}
EXAMPLE = "journey-https"
TITLE = "The journey of a request: DNS, TCP, TLS, request, response"

JSON_FIELDS = ["request", "conn", "url", "status", "dns_name", "resolver", "dns_ms", "client_ms", "connect_ms",
               "tls_ms", "request_ms", "wait_ms", "receive_ms", "time_namelookup", "time_connect",
               "time_appconnect", "time_starttransfer", "time_total", "reused_connection"]
TABLE_FIELDS = ["request", "url", "status", "dns_ms", "connect_ms", "tls_ms", "wait_ms", "receive_ms",
                "time_total"]


def applies(tl) -> bool:
    return len(tl.requests) > 0 and bool((tl.requests["source"].astype("object") == "pcap").any())


def analyze(tl, conn: int | None = None) -> Finding:
    rq = tl.requests[(tl.requests["source"].astype("object") == "pcap").to_numpy(dtype=bool, na_value=False)]
    if conn is not None:
        if not (rq["conn"] == conn).any():
            raise InputError(tl.source.path, f"no HTTP request on connection {conn}")
        rq = rq[(rq["conn"] == conn).to_numpy(dtype=bool, na_value=False)]
    rows = journey_rows(tl, rq)
    answer, problems = explain(rows)
    if len(rows):
        answer += story(tl, rows.iloc[0])
    figures = {}
    if len(rows):
        figures["journey"] = lambda theme="light": _chart(tl, rows, theme)
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=rows, summary=_summary(rows), answer=answer,
                   figures=figures, json_fields=JSON_FIELDS, table_fields=TABLE_FIELDS, problems=problems)


def journey_rows(tl, rq: pd.DataFrame) -> pd.DataFrame:
    conns = tl.connections.set_index("conn")
    # What a request reads of its connection, as plain dicts: a row of the wide table per
    # request (``conns.loc``) took 3 s on 19k requests.
    times = {k: {"syn": s, "ack": a, "start": t} for k, s, a, t in
             zip(conns.index.tolist(), *(conns[c].tolist() for c in ("syn", "ack", "start")))}
    dns_ev = tl.events[(tl.events["layer"].astype("object") == "dns").to_numpy(dtype=bool, na_value=False)]
    out = []
    rq = rq.assign(sent_at=request_sent_at(rq))
    for r in rq.sort_values("start").itertuples(index=False):
        c = times.get(int(r.conn)) if not pd.isna(r.conn) else None
        name = getattr(r, "dns_name", None)
        lookup = _lookup(dns_ev, name, c, conns) if isinstance(name, str) else None
        first = not bool(r.reused_connection)
        syn = float(c["syn"]) if c is not None and first and not pd.isna(c["syn"]) else None
        ack = float(c["ack"]) if c is not None and first and not pd.isna(c["ack"]) else None
        t0 = lookup[0] if lookup else (syn if syn is not None else float(r.sent_at))
        dns_end = lookup[1] if lookup else None
        tls_s = float(r.tls) if not pd.isna(r.tls) else None
        first_byte = float(r.start) + float(r.ttfb) if not pd.isna(r.ttfb) else None
        end = float(r.end) if not pd.isna(r.end) else None
        out.append({
            "request": int(r.request), "conn": _int(r.conn), "url": r.url, "status": _int(r.status),
            "dns_name": name if lookup else None, "resolver": lookup[2] if lookup else None,
            "dns_ms": _ms(dns_end - t0) if lookup else None,
            "client_ms": _ms(syn - dns_end) if lookup and syn is not None else None,
            "connect_ms": _ms(ack - syn) if syn is not None and ack is not None else None,
            "tls_ms": _ms(tls_s) if tls_s is not None and first else None,
            "request_ms": _ms(r.send) if not pd.isna(r.send) else None,
            "wait_ms": _ms(r.wait) if not pd.isna(r.wait) else None,
            "receive_ms": _ms(r.receive) if not pd.isna(r.receive) else None,
            "time_namelookup": _s(dns_end - t0) if lookup else 0.0,
            "time_connect": _s(ack - t0) if ack is not None else None,
            "time_appconnect": _s(float(r.sent_at) - t0) if tls_s is not None and first else None,
            "time_starttransfer": _s(first_byte - t0) if first_byte is not None else None,
            "time_total": _s(end - t0) if end is not None else None,
            "reused_connection": not first,
            "t0": t0, "syn": syn, "ack": ack, "start": float(r.sent_at), "first_byte": first_byte, "end": end,
            "dns_end": dns_end, "scheme": str(r.url).split(":", 1)[0] if isinstance(r.url, str) else None,
        })
    return pd.DataFrame(out, columns=JSON_FIELDS + ["t0", "syn", "ack", "start", "first_byte", "end", "dns_end",
                                                    "scheme"])


def _lookup(dns_ev: pd.DataFrame, name: str, c, conns) -> tuple[float, float, str] | None:
    """(first query, last answer, resolver) of the lookup of ``name`` that ended before the connection."""
    if c is None or not len(dns_ev):
        return None
    mine = dns_ev[(dns_ev["qname"].astype("object") == name).to_numpy(dtype=bool, na_value=False)
                  & (dns_ev["ts"] <= float(c["start"])).to_numpy(dtype=bool, na_value=False)]
    answers = mine[mine["kind"] == "response"]
    if not len(answers):
        return None
    flow = int(answers.sort_values("ts").iloc[-1]["conn"])
    mine = mine[mine["conn"] == flow]
    asked = mine.loc[mine["kind"] == "query", "ts"]
    if not len(asked):
        return None
    resolver = conns.loc[flow, "server"] if flow in conns.index else None
    return float(asked.min()), float(mine.loc[mine["kind"] == "response", "ts"].max()), resolver


def _summary(rows: pd.DataFrame) -> dict:
    if not len(rows):
        return {"requests": 0}
    r = rows.iloc[0]
    return {"requests": int(len(rows)), "first_request_total_ms": _ms(r["time_total"]) if r["time_total"] else None,
            "dns_lookups": int(rows["dns_ms"].notna().sum()),
            "new_connections": int((~rows["reused_connection"]).sum())}


def explain(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    if not len(rows):
        return ["No HTTP request in this capture."], []
    out, problems = [], []
    for r in rows.head(5).itertuples(index=False):
        steps = []
        if r.dns_ms is not None and not _nan(r.dns_ms):
            steps.append(f"looking up {r.dns_name} took {ms_text(r.dns_ms)} (DNS query to the last answer)")
            if r.client_ms is not None and not _nan(r.client_ms):
                steps.append(f"the client took {ms_text(r.client_ms)} between the answer and its SYN")
        if r.connect_ms is not None and not _nan(r.connect_ms):
            steps.append(f"the TCP handshake {ms_text(r.connect_ms)}")
        if r.tls_ms is not None and not _nan(r.tls_ms):
            steps.append(f"the TLS handshake {ms_text(r.tls_ms)}")
        if r.reused_connection:
            steps.append("it reused an open connection (no handshakes)")
        if r.wait_ms is not None and not _nan(r.wait_ms):
            steps.append(f"the request waited {ms_text(r.wait_ms)} for its first byte")
        if r.receive_ms is not None and not _nan(r.receive_ms):
            steps.append(f"the rest of the response took {ms_text(r.receive_ms)}")
        total = f"{ms_text(r.time_total * 1000)} in all" if r.time_total is not None and not _nan(r.time_total) else ""
        out.append(f"Request {r.request} ({r.url} \u2192 {r.status if r.status is not None else 'no answer'}): "
                   + "; ".join(steps) + (f" -- {total}." if total else "."))
        marks = [(k, getattr(r, k)) for k in ("time_namelookup", "time_connect", "time_appconnect",
                                              "time_starttransfer", "time_total")]
        shown = ", ".join(f"{k} {v:.6f}" for k, v in marks if v is not None and not _nan(v))
        if shown:
            out.append(f"As curl -w would put it (seconds from the first packet of the journey): {shown}.")
        if r.time_total and not _nan(r.time_total) and r.time_total > 0:
            parts = {"DNS": r.dns_ms, "TCP": r.connect_ms, "TLS": r.tls_ms, "waiting for the server": r.wait_ms}
            parts = {k: v for k, v in parts.items() if v is not None and not _nan(v)}
            if parts:
                big = max(parts, key=parts.get)
                share = parts[big] / (r.time_total * 1000)
                out.append(f"The largest part was {big}: {share:.0%} of the total.")
    if len(rows) > 5:
        out.append(f"... and {len(rows) - 5} more requests (see the table).")
    if rows["status"].isna().any():
        problems.append(f"{int(rows['status'].isna().sum())} request(s) got no answer")
    return out, problems


# The events that tell the journey, as curl -v tells it ('>' sent, '<' received; None: by direction).
STORY = {("dns", "query"): None, ("dns", "response"): None, ("tcp", "SYN"): ">", ("tcp", "SYN-ACK"): "<",
         ("tls", "ClientHello"): ">", ("tls", "ServerHello"): "<", ("tls", "Certificate"): "<",
         ("tls", "Finished"): None, ("http", "request"): ">", ("http", "response"): "<", ("tcp", "FIN"): None}


def story(tl, r) -> list[str]:
    """The first request's journey, event by event, ms from its start (like curl -v, from the wire)."""
    ev = tl.events
    conns = {int(r["conn"])} if r["conn"] is not None and not pd.isna(r["conn"]) else set()
    if isinstance(r["dns_name"], str):
        dns = ev[(ev["layer"].astype("object") == "dns").to_numpy(dtype=bool, na_value=False)
                 & (ev["qname"].astype("object") == r["dns_name"]).to_numpy(dtype=bool, na_value=False)]
        conns |= {int(c) for c in dns["conn"].dropna()}
    mine = ev[ev["conn"].isin(conns).to_numpy(dtype=bool, na_value=False)
              & (ev["ts"] >= r["t0"]).to_numpy(dtype=bool, na_value=False)].sort_values(["ts", "frame"])
    out = []
    for e in mine.itertuples(index=False):
        key = (e.layer, e.kind)
        if key not in STORY:
            continue
        mark = STORY[key] or (">" if e.dir == "c2s" else "<")
        detail = f": {e.detail}" if isinstance(e.detail, str) and e.layer != "tcp" else ""
        out.append(f"{mark} +{(float(e.ts) - r['t0']) * 1000:7.1f} ms  {e.layer.upper()} {e.kind}{detail} "
                   f"(frame {int(e.frame)})")
    return ["The journey on the wire, as curl -v tells it:"] + out[:40] if out else []


def _int(v):
    return None if v is None or pd.isna(v) else int(v)


def _ms(seconds) -> float | None:
    return None if seconds is None or pd.isna(seconds) else round(float(seconds) * 1000, 3)


def _s(seconds) -> float | None:
    return None if seconds is None or pd.isna(seconds) else round(float(seconds), 6)


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)



def _chart(tl, rows, theme):
    from traceviz.charts.journey import journey_chart
    return journey_chart(rows, tl.packets, theme=theme)


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
