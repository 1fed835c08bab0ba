"""DNS messages as ``events`` rows (layer ``dns``), and the lookup before each connection.

One row per message: ``kind`` ``query`` or ``response`` (``parse-error``
for a datagram on a DNS port that is not DNS), ``detail`` the question and,
for a response, its code and answers.  A response carries ``duration``:
seconds since the query it answers (same flow, same id, same question) --
the lookup's time at the capture point.  Extra columns: ``dns_id``,
``qname``, ``qtype``, ``rcode``, ``answers`` (list of ``TYPE data`` strings).
Built as columns, each distinct message's strings once (``DNSCapture``), so
a capture full of DNS costs little more than one without.

``with_lookups`` ties a request to the lookup that found its server: the
latest answer, before the connection's first packet, that named the
server's address.  Such a request gets ``dns_name`` (the name looked up)
and, when it paid for opening its connection (it starts at the SYN,
``assemble.http.opening_phases``), ``dns`` (the lookup's duration, the HAR
phase: first query to last answer for that name): its ``start`` moves back
to the first query and the wait between the answer and the SYN joins
``blocked``, so ``start`` + the phases is still ``end``.  UDP flows that
carried DNS get ``app`` ``dns``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from traceviz.decode.dns import DNSCapture
from traceviz.model import conform


def events(cap: DNSCapture | None) -> pd.DataFrame:
    """The ``events`` rows of every DNS datagram (an empty frame when there is none)."""
    if cap is None or not len(cap):
        return conform("events", pd.DataFrame())
    per_body = [_body_columns(b) for b in cap.bodies]

    def take(key: str) -> np.ndarray:
        values = np.empty(len(per_body), dtype=object)
        for i, b in enumerate(per_body):           # one by one: a list value must stay one object
            values[i] = b[key]
        return values[cap.body]

    kind, qname, qtype, rcode = take("kind"), take("qname"), take("qtype"), take("rcode")
    df = pd.DataFrame({
        "ts": cap.ts.astype(float), "frame": cap.frame, "conn": cap.conn, "stream": None, "layer": "dns",
        "kind": kind, "dir": np.where(cap.c2s, "c2s", "s2c"),
        "size": np.where(kind == "parse-error", None, cap.size).astype(object), "detail": take("detail"),
        "dns_id": np.where(kind == "parse-error", None, cap.id).astype(object), "qname": qname, "qtype": qtype,
        "rcode": rcode, "answers": take("answers"),
    })
    df["duration"] = _durations(df)
    return conform("events", df)


def _body_columns(body) -> dict:
    if isinstance(body, str):
        return {"kind": "parse-error", "qname": None, "qtype": None, "rcode": None, "answers": None, "detail": body}
    qname, qtype = body.questions[0] if body.questions else (None, None)
    question = f"{qtype} {qname}" if qname is not None else "(no question)"
    if not body.response:
        return {"kind": "query", "qname": qname, "qtype": qtype, "rcode": None, "answers": None, "detail": question}
    found = ", ".join(f"{t} {d} (ttl {ttl})" for _, t, ttl, d in body.answers) or "no answer"
    return {"kind": "response", "qname": qname, "qtype": qtype, "rcode": body.rcode,
            "answers": [f"{t} {d}" for _, t, _, d in body.answers],
            "detail": f"{question}: {body.rcode}, {found}" + (" (truncated)" if body.truncated else "")}


def _durations(df: pd.DataFrame) -> np.ndarray:
    """For each response, seconds since the first query before it with the same flow, id and question."""
    out = np.full(len(df), np.nan)
    key = ["conn", "dns_id", "qname", "qtype"]
    q = df[df["kind"] == "query"][key + ["ts"]].drop_duplicates(key, keep="first")
    r = df[df["kind"] == "response"][key + ["ts"]].reset_index()
    if not len(q) or not len(r):
        return out
    both = r.merge(q, on=key, how="inner", suffixes=("", "_q"))
    both = both[both["ts"] >= both["ts_q"]]
    out[both["index"].to_numpy()] = (both["ts"] - both["ts_q"]).to_numpy()
    return out


def apps(cap: DNSCapture | None) -> dict[int, str]:
    """``app`` ``dns`` for each UDP flow that carried a readable DNS message."""
    if cap is None or not len(cap):
        return {}
    readable = np.array([not isinstance(b, str) for b in cap.bodies], dtype=bool)[cap.body]
    return {int(c): "dns" for c in np.unique(cap.conn[readable])}


def with_lookups(requests: pd.DataFrame, connections: pd.DataFrame, ev: pd.DataFrame) -> pd.DataFrame:
    """``requests`` with ``dns_name`` (and ``dns``, moving ``start`` to the query) for the first
    request of each connection whose server address a DNS answer named before the connection began.

    The lookup runs from the first query for that name on the answer's flow to the last answer
    (a resolver library asks A and AAAA at once and waits for both)."""
    if not len(ev) or not len(requests):
        return requests
    resp = ev[(ev["kind"] == "response").to_numpy(dtype=bool)]
    addr = resp[["ts", "conn", "qname"]].assign(answers=resp["answers"]).explode("answers").dropna(subset=["answers"])
    addr = addr[addr["answers"].str.match(r"^(A|AAAA) ")]
    if not len(addr):
        return requests
    addr = addr.assign(ip=addr["answers"].str.split(" ", n=1).str[1])
    start = dict(zip(connections["conn"].tolist(), connections["start"].tolist()))
    syn = dict(zip(connections["conn"].tolist(), connections["syn"].tolist()))
    server = dict(zip(connections["conn"].tolist(), connections["server"].tolist()))
    by_ip = {ip: g for ip, g in addr.groupby("ip")}
    requests = requests.copy()
    names = [None] * len(requests)
    dns = requests["dns"].to_numpy(dtype=float, copy=True)
    cols = {k: requests[k].to_numpy(dtype=float, copy=True) for k in ("start", "ttfb", "blocked")}
    seen = set()
    for i, conn in enumerate(requests["conn"].tolist()):
        if conn is None or pd.isna(conn) or conn in seen or conn not in start:
            continue
        seen.add(conn)
        g = by_ip.get(str(server[conn]).rsplit(":", 1)[0].strip("[]"))
        if g is None:
            continue
        g = g[g["ts"] <= start[conn]]
        if not len(g):
            continue
        last = g.loc[g["ts"].idxmax()]
        lookup = ev[(ev["conn"] == last["conn"]).to_numpy(dtype=bool, na_value=False)
                    & (ev["qname"] == last["qname"]).to_numpy(dtype=bool, na_value=False)
                    & (ev["ts"] <= start[conn]).to_numpy(dtype=bool)]
        asked = lookup.loc[lookup["kind"] == "query", "ts"]
        answered = lookup.loc[lookup["kind"] == "response", "ts"]
        if len(asked) and len(answered) and answered.max() >= asked.min():
            names[i] = last["qname"]
            opened_at = syn.get(conn)
            if opened_at is None or pd.isna(opened_at) or cols["start"][i] != opened_at:
                continue                   # the connection was open before the request: it paid for no lookup
            first, done = float(asked.min()), float(answered.max())
            dns[i] = done - first
            cols["blocked"][i] = np.nansum([cols["blocked"][i], opened_at - done])
            cols["ttfb"][i] += opened_at - first
            cols["start"][i] = first
    requests["dns"] = dns
    for k, v in cols.items():
        requests[k] = v
    requests["dns_name"] = pd.Series(names, index=requests.index, dtype="object")
    return requests
