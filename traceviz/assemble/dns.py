"""DNS messages as ``events`` rows (layer ``dns``), and the lookup before each connection.

One row per message: ``kind`` ``query`` or ``response`` (``parse-error``
for a datagram on a DNS port that is not DNS), ``detail`` the question and,
for a response, its code and answers.  A response carries ``duration``:
seconds since the query it answers (same flow, same id) -- the lookup's
time at the capture point.  Extra columns: ``dns_id``, ``qname``, ``qtype``,
``rcode``, ``answers`` (list of ``TYPE data`` strings).

``with_lookups`` ties a request to the lookup that found its server: the
latest answer, before the connection's first packet, that named the
server's address.  Such a request gets ``dns`` (the lookup's duration, the
HAR phase: first query to last answer for that name) and ``dns_name`` (the
name looked up).  UDP flows that carried DNS get ``app`` ``dns``.
"""

from __future__ import annotations

import pandas as pd

from traceviz.decode.dns import DNSError, DNSMessage


def event_rows(messages: list) -> list[dict]:
    rows, asked = [], {}
    for m in messages:
        base = {"ts": m.ts, "frame": m.frame, "conn": m.conn, "stream": None, "layer": "dns", "dir": m.direction}
        if isinstance(m, DNSError):
            rows.append({**base, "kind": "parse-error", "size": None, "detail": m.message})
            continue
        qname, qtype = m.questions[0] if m.questions else (None, None)
        question = f"{qtype} {qname}" if qname is not None else "(no question)"
        row = {**base, "kind": "response" if m.response else "query", "size": m.size, "dns_id": m.id,
               "qname": qname, "qtype": qtype, "rcode": m.rcode if m.response else None,
               "answers": [f"{t} {d}" for _, t, _, d in m.answers] if m.response else None}
        key = (m.conn, m.id, qname, qtype)
        if not m.response:
            asked.setdefault(key, m.ts)
            row["detail"] = question
        else:
            found = ", ".join(f"{t} {d} (ttl {ttl})" for _, t, ttl, d in m.answers) or "no answer"
            row["detail"] = f"{question}: {m.rcode}, {found}" + (" (truncated)" if m.truncated else "")
            sent = asked.pop(key, None)
            if sent is not None:
                row["duration"] = m.ts - sent
        rows.append(row)
    return rows


def apps(messages: list) -> dict[int, str]:
    return {m.conn: "dns" for m in messages if isinstance(m, DNSMessage)}


def with_lookups(requests: pd.DataFrame, connections: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """``requests`` with ``dns`` and ``dns_name`` for the first request of each connection whose
    server address a DNS answer named before the connection began.

    The lookup runs from the first query for that name on the answer's flow to the last answer
    (a resolver library asks A and AAAA at once and waits for both)."""
    answers = [(r["ts"], r["conn"], r["qname"], a.split(" ", 1)[1]) for r in rows
               if r["kind"] == "response" and r.get("answers")
               for a in r["answers"] if a.split(" ", 1)[0] in ("A", "AAAA")]
    if not answers or not len(requests):
        return requests
    start = dict(zip(connections["conn"].tolist(), connections["start"].tolist()))
    server = dict(zip(connections["conn"].tolist(), connections["server"].tolist()))
    requests = requests.copy()
    names = [None] * len(requests)
    dns = requests["dns"].to_numpy(dtype=float, copy=True)
    seen = set()
    for i, conn in enumerate(requests["conn"].tolist()):
        if conn is None or pd.isna(conn) or conn in seen or conn not in start:
            continue
        seen.add(conn)
        host = str(server[conn]).rsplit(":", 1)[0].strip("[]")
        before = [a for a in answers if a[3] == host and a[0] <= start[conn]]
        if not before:
            continue
        _, flow, name, _ = max(before, key=lambda a: a[0])
        lookup = [r for r in rows if r["conn"] == flow and r.get("qname") == name and r["ts"] <= start[conn]]
        asked = [r["ts"] for r in lookup if r["kind"] == "query"]
        answered = [r["ts"] for r in lookup if r["kind"] == "response"]
        if asked and answered and max(answered) >= min(asked):
            dns[i], names[i] = max(answered) - min(asked), name
    requests["dns"] = dns
    requests["dns_name"] = pd.Series(names, index=requests.index, dtype="object")
    return requests
