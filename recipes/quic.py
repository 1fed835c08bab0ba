"""Which QUIC versions were spoken and why, what did each handshake cost and buy, and what could be read?"""

from __future__ import annotations

import pandas as pd

from traceviz.model import JSON_FIELDS as STABLE_FIELDS
from traceviz.recipe import Finding

NAME = "quic"
TITLE = "QUIC connections"
NEEDS = "QUIC connections (a capture of QUIC traffic, or a qlog)"
FAILS_ON = ("a connection closed with an error, a Retry whose integrity tag is wrong, a handshake that did not finish, "
            "or packets that could not be decoded")
EXAMPLE = "quic-h3"
FIGURES = {"ladder": "one connection's QUIC packets between client and server, by packet-number space",
           "streams": "the HTTP/3 streams of that connection over time (when its requests could be read)"}

TABLES = ("quic", "requests")      # what analyze() reads: load() builds only these
CHART_TABLES = ("events",)          # and what the figures read besides, built for a chart
JSON_FIELDS = STABLE_FIELDS["quic"]
TABLE_FIELDS = ["conn", "client", "server", "version_name", "sni", "alpn", "rtts", "handshake_ms", "decrypted",
                "close"]
CLEAN_CLOSE = ("NO_ERROR", "H3_NO_ERROR", "idle", "open")

WHY_ONE_RTT = ("QUIC carries the TLS 1.3 handshake in its own first packets, so one round trip sets up "
               "both the transport and the keys; over TCP the SYN round trip comes first and TLS 1.3 "
               "needs another")


def applies(tl) -> bool:
    return tl.quic is not None and len(tl.quic) > 0


def analyze(tl, conn: int | None = None) -> Finding:
    rows = tl.quic if tl.quic is not None else pd.DataFrame(columns=JSON_FIELDS)
    if conn is not None:
        rows = rows[rows["conn"] == conn]
    rows = rows.reset_index(drop=True)
    finding = Finding(title=TITLE, question=__doc__, rows=rows, json_fields=JSON_FIELDS,
                      table_fields=[c for c in TABLE_FIELDS if c in rows.columns])
    if rows.empty:
        finding.answer = ["No QUIC in this capture" + (f" on connection {conn}" if conn is not None else "") + "."]
        return finding
    finding.summary = summarize(rows)
    finding.answer = [_overview(rows)]
    requests = _requests(tl)
    none = tl.requests.iloc[:0]
    # Rows as dicts and the requests grouped once: a pandas row or filter per connection cost
    # seconds on the thousands of connections of a big capture.
    for r in rows.to_dict("records"):
        finding.answer += connection_lines(r, requests.get(int(r["conn"]), none))
    finding.problems = problems(rows)
    target = rows.sort_values("packets", ascending=False).iloc[0]
    h3 = requests.get(int(target["conn"]), none)
    finding.figures = {"ladder": lambda theme: _ladder(_events(tl, target), target, theme)}
    if len(h3):
        finding.figures["streams"] = lambda theme: _streams(h3, _events(tl, target), target, theme)
    return finding


def _requests(tl) -> dict[int, pd.DataFrame]:
    """Each connection's HTTP/3 requests."""
    rq = tl.requests
    if not len(rq):
        return {}
    h3 = rq[(rq["protocol"] == "h3") & rq["conn"].notna()]
    return {int(conn): group for conn, group in h3.groupby("conn", sort=False)}


def _events(tl, row) -> pd.DataFrame:
    """The events of the connection a figure draws (read when it is drawn: ``CHART_TABLES``)."""
    return tl.events[tl.events["conn"] == int(row["conn"])]


def summarize(rows: pd.DataFrame) -> dict:
    done = rows["handshake_ms"].dropna()
    return {
        "connections": int(len(rows)),
        "versions": {str(k): int(v) for k, v in rows["version_name"].dropna().value_counts().items()},
        "decrypted": int(rows["decrypted"].fillna(False).astype(bool).sum()),
        "retry": int(rows["retry"].fillna(False).astype(bool).sum()),
        "version_negotiation": int(rows["version_negotiation"].fillna(False).astype(bool).sum()),
        "zero_rtt": int(rows["zero_rtt"].fillna(False).astype(bool).sum()),
        "median_handshake_ms": round(float(done.median()), 2) if len(done) else None,
    }


def _overview(rows: pd.DataFrame) -> str:
    versions = ", ".join(f"{n} × {v}" for v, n in rows["version_name"].fillna("unknown version").value_counts().items())
    n = len(rows)
    return f"{n} QUIC connection{'s' if n != 1 else ''}: {versions}."


def _name(r) -> str:
    sni = r.get("sni")
    return f"conn {int(r['conn'])}" + (f" ({sni})" if isinstance(sni, str) else "")


def _known(v) -> bool:
    return v is not None and v is not pd.NA and not (isinstance(v, float) and v != v)


def _set(v) -> bool:
    return _known(v) and bool(v)


def connection_lines(r, requests: pd.DataFrame) -> list[str]:
    """What one connection's row says, in words: versions, round trips, what was readable, how it ended."""
    name, out = _name(r), []
    out += _version_lines(name, r)
    out += _handshake_lines(name, r)
    out += _readable_lines(name, r, requests)
    spin = r.get("spin_rtt_ms")
    if _set(spin):
        out.append(f"{name}: the spin bit flipped {int(r['spin_edges'])} times; from one flip to the next "
                   f"takes about {float(spin):.1f} ms, the round trip an on-path observer would measure.")
    close = r.get("close")
    if isinstance(close, str) and not close.startswith(CLEAN_CLOSE):
        out.append(f"Closed with an error: {name}: CONNECTION_CLOSE {close}.")
    elif isinstance(close, str) and close.startswith(("NO_ERROR", "H3_NO_ERROR")):
        out.append(f"{name}: closed cleanly ({close}).")
    elif close == "idle":
        out.append(f"{name}: went quiet for longer than its idle timeout: closed silently, as QUIC allows.")
    return out


def _version_lines(name: str, r) -> list[str]:
    out = []
    if _set(r.get("version_negotiation")):
        tried = [v for v in (r.get("versions") or []) if v not in ("0x00000000", r.get("version"))]
        offered = ", ".join(r.get("vn_versions") or [])
        first = f"first tried {', '.join(tried)}" if tried else "first tried a version the server does not speak"
        grease = " (a greased version: clients send one on purpose to keep version negotiation working)" \
            if any(int(v, 16) & 0x0F0F0F0F == 0x0A0A0A0A for v in tried) else ""
        out.append(f"{name}: the client {first}{grease}; the server answered with Version Negotiation "
                   f"offering {offered}, and the client started over in {r['version_name']}: one round trip spent.")
    if _set(r.get("retry")):
        tag = {"ok": "its integrity tag checks out", "wrong": "its integrity tag is WRONG (forged or damaged)"}.get(
            r.get("retry_integrity"), "its integrity tag could not be checked")
        out.append(f"{name}: the server sent a Retry ({tag}): it made the client prove its address with a token "
                   f"before doing any cryptography, at the cost of one round trip.")
    if _set(r.get("hello_retry")):
        out.append(f"{name}: the server asked for a different key share (HelloRetryRequest): one more round trip.")
    return out


def _handshake_lines(name: str, r) -> list[str]:
    rtts, hs = r.get("rtts"), r.get("handshake_ms")
    if not _known(hs) and _known(rtts):
        return [f"Handshake unfinished: {name}: the server answered but the client never finished the handshake "
                "in this capture."]
    if not _known(rtts):
        if str(r.get("version_name") or "").startswith("Google Q"):
            return [f"{name}: {r['version_name']} uses Google's own crypto handshake: it is identified, not read."]
        return [f"Handshake unanswered: {name}: the client's Initial got no answer in this capture."]
    rtts = int(rtts)
    line = f"{name}: {r['version_name']} handshake took {float(hs):.1f} ms over {rtts} round trip{'s' * (rtts != 1)}"
    if _set(r.get("zero_rtt")):
        line += ("; the client sent 0-RTT data with its first flight (a resumed session), so its requests "
                 "left before any round trip")
    elif rtts == 1:
        line += f". {WHY_ONE_RTT}"
    rtt = r.get("initial_rtt_ms")
    if _set(rtt):
        line += f" (the server's first answer came {float(rtt):.1f} ms after the client's first Initial)"
    return [line + "."]


def _readable_lines(name: str, r, requests: pd.DataFrame) -> list[str]:
    if not _set(r.get("decrypted")):
        note = r.get("decrypt_note") or "no keys"
        sealed = int(r.get("packets_encrypted") or 0)
        return [f"{name}: only the Initial packets could be read ({note}): SNI, ALPN offered and the TLS "
                f"hellos are there; {sealed} Handshake/1-RTT packet{'s' * (sealed != 1)} stayed encrypted."]
    sealed = int(r["packets_decrypted"]) + int(r["packets_encrypted"])
    out = [f"{name}: decrypted {int(r['packets_decrypted'])} of its {sealed} protected packets with the key log; "
           f"ALPN {r.get('alpn')}, {int(r.get('streams') or 0)} streams."]
    if len(requests):
        statuses = ", ".join(f"{int(k)} × {int(v)}" for k, v in requests["status"].dropna().value_counts().items())
        ids = sorted(int(s) for s in requests["stream"].dropna())
        out.append(f"{name}: {len(requests)} HTTP/3 request{'s' * (len(requests) != 1)} on streams "
                   f"{ids[0]}–{ids[-1]} (statuses {statuses}); at most {int(r['max_concurrent_requests'])} "
                   "in flight at once.")
    if int(r.get("retransmitted_bytes") or 0):
        out.append(f"{name}: {int(r['retransmitted_bytes'])} bytes of handshake or stream data were sent again "
                   "(lost or presumed lost): QUIC resends data in new packets, never a packet as it was.")
    if int(r.get("key_updates") or 0):
        out.append(f"{name}: the 1-RTT keys were updated {int(r['key_updates'])} time(s) mid-connection.")
    return out


def problems(rows: pd.DataFrame) -> list[str]:
    out = []
    for r in rows.to_dict("records"):
        name = _name(r)
        close = r.get("close")
        if isinstance(close, str) and not close.startswith(CLEAN_CLOSE):
            out.append(f"{name}: closed with {close}")
        if r.get("retry_integrity") == "wrong":
            out.append(f"{name}: Retry with a wrong integrity tag")
        if _known(r.get("rtts")) and not _known(r.get("handshake_ms")):
            out.append(f"{name}: handshake did not finish")
        if int(r.get("decode_errors") or 0):
            out.append(f"{name}: {int(r['decode_errors'])} decode error(s): {r.get('decode_error_detail')}")
    return out


def _ladder(events, row, theme):
    from traceviz.charts.quic import ladder
    return ladder(events, row, theme)


def _streams(requests, events, row, theme):
    from traceviz.charts.quic import streams
    return streams(requests, events, theme, most=row.get("max_concurrent_requests"))


# -- two captures side by side: ``traceviz compare A B`` -----------------------------------

COMPARE_FIELDS = ["label", "transport", "protocol", "requests", "rtt_ms", "handshake_rtts", "first_request_ms",
                  "first_request_rtts", "last_byte_ms", "last_byte_rtts"]


def transfer(tl, label: str | None = None) -> dict:
    """One capture's busiest HTTP connection: when (after its first packet) the first request
    left and the last response byte arrived, in ms and in round trips of its path."""
    rq = tl.requests
    if rq is None or rq.empty or rq["conn"].isna().all():
        return {"label": label or tl.source.path, "requests": 0}
    conn = int(rq["conn"].value_counts().idxmax())
    mine = rq[rq["conn"] == conn]
    c = tl.connections.set_index("conn").loc[conn]
    t0 = float(c["start"])
    row = {"label": label or tl.source.path, "conn": conn, "transport": c["transport"],
           "protocol": ", ".join(sorted(mine["protocol"].dropna().astype(str).unique())), "requests": len(mine)}
    if c["transport"] == "quic":
        q = tl.quic.set_index("conn").loc[conn]
        # The ACKs' min_rtt is the path's; the first Initial's answer also holds the server's crypto work.
        rtt = q.get("min_rtt_ms") if _set(q.get("min_rtt_ms")) else q.get("initial_rtt_ms")
        hs = q.get("rtts")
        row["version"] = q.get("version_name")
        if _set(q.get("min_rtt_ms")) and _set(q.get("initial_rtt_ms")):
            row["server_first_answer_ms"] = float(q["initial_rtt_ms"]) - float(q["min_rtt_ms"])
    else:
        rtt = c["handshake_rtt"] * 1000.0 if _set(c.get("handshake_rtt")) else None
        t = tl.tls[tl.tls["conn"] == conn] if tl.tls is not None and len(tl.tls) else pd.DataFrame()
        tls_rtts = t["rtts"].iloc[0] if len(t) and _set(t["rtts"].iloc[0]) else 0
        hs = 1 + int(tls_rtts)
        row["version"] = t["version"].iloc[0] if len(t) else None
    row["rtt_ms"] = float(rtt) if _set(rtt) else None
    row["handshake_rtts"] = int(hs) if _known(hs) else None
    # A request's first byte left after the phases spent waiting for the connection (HAR's
    # start + blocked + dns + connect + tls: a TCP connection's first request starts at its SYN).
    waited = mine[["blocked", "dns", "connect", "tls"]].astype("float64").fillna(0.0).sum(axis=1)
    row["first_request_ms"] = (float((mine["start"] + waited).min()) - t0) * 1000.0
    row["last_byte_ms"] = (float(mine["end"].max()) - t0) * 1000.0
    for key in ("first_request", "last_byte"):
        row[f"{key}_rtts"] = row[f"{key}_ms"] / row["rtt_ms"] if row["rtt_ms"] else None
    return row


def compare(timelines: list, labels: list[str] | None = None) -> Finding:
    """QUIC next to TCP (or any two captures of the same requests): time to the first request
    byte and to the last response byte, in ms and in round trips."""
    from pathlib import Path
    labels = labels or [Path(tl.source.path).stem for tl in timelines]
    rows = pd.DataFrame([transfer(tl, lab) for tl, lab in zip(timelines, labels)])
    for col in COMPARE_FIELDS:
        if col not in rows:
            rows[col] = None
    finding = Finding(title="Time to the first request and the last byte", question=compare.__doc__.split("\n")[0],
                      rows=rows, json_fields=COMPARE_FIELDS, table_fields=COMPARE_FIELDS)
    finding.answer = _compare_lines(rows)
    finding.figures = {"comparison": lambda theme: _comparison(rows, theme)}
    return finding


def _compare_lines(rows: pd.DataFrame) -> list[str]:
    out = []
    for _, r in rows.iterrows():
        if not r.get("requests"):
            out.append(f"{r['label']}: no HTTP requests were read (decrypt with --keylog?).")
            continue
        what = f"{r['protocol']} over {'QUIC' if r['transport'] == 'quic' else 'TCP + ' + str(r.get('version') or 'TLS')}"
        line = (f"{r['label']} ({what}): {int(r['requests'])} requests; the first left {r['first_request_ms']:.1f} ms "
                f"after the connection's first packet")
        if _known(r.get("first_request_rtts")) and _known(r.get("handshake_rtts")):
            line += (f" (≈ {r['first_request_rtts']:.1f} round trips of {r['rtt_ms']:.1f} ms; the handshake needed "
                     f"{int(r['handshake_rtts'])})")
        line += f", the last byte arrived after {r['last_byte_ms']:.1f} ms"
        if _known(r.get("last_byte_rtts")):
            line += f" (≈ {r['last_byte_rtts']:.1f} round trips)"
        out.append(line + ".")
    done = rows[rows["requests"].fillna(0) > 0]
    if len(done) == 2:
        a, b = done.iloc[0], done.iloc[1]
        fast, slow = (a, b) if a["first_request_ms"] <= b["first_request_ms"] else (b, a)
        saved = slow["first_request_ms"] - fast["first_request_ms"]
        line = f"{fast['label']} sent its first request {saved:.1f} ms sooner"
        if _known(slow.get("handshake_rtts")) and _known(fast.get("handshake_rtts")):
            diff = int(slow["handshake_rtts"]) - int(fast["handshake_rtts"])
            if diff > 0:
                line += f": its handshake needed {diff} round trip{'s' * (diff != 1)} fewer"
        if "quic" in set(done["transport"]) and "tcp" in set(done["transport"]):
            line += f". {WHY_ONE_RTT}"
        out.append(line + ".")
        think = fast.get("server_first_answer_ms")
        if _set(think) and float(think) >= 2.0 and _set(fast.get("rtt_ms")) and saved < float(fast["rtt_ms"]):
            out.append(f"The saving is less than a full round trip: {fast['label']}'s server took {float(think):.1f} ms "
                       "beyond the round trip to answer the first Initial (its cryptography and start-up).")
        gap = b["last_byte_ms"] - a["last_byte_ms"]
        out.append(f"The last byte arrived {abs(gap):.1f} ms {'sooner' if gap > 0 else 'later'} on {a['label']} "
                   f"than on {b['label']}.")
    return out


def _comparison(rows, theme):
    from traceviz.charts.quic import comparison
    return comparison(rows, theme)


if __name__ == "__main__":            # python recipes/quic.py FILE [--json] ...
    from traceviz.recipe import main
    main(__name__)
