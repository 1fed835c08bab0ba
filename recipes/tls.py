"""What did each TLS handshake negotiate, how many round trips did it cost, and why?"""

from __future__ import annotations

import pandas as pd

from traceviz.model import JSON_FIELDS as STABLE_FIELDS
from traceviz.recipe import Finding

NAME = "tls"
TITLE = "TLS handshakes"
NEEDS = "TLS handshakes (a capture of TLS traffic; a HAR or a trace does not show them)"
FAILS_ON = "a handshake that failed (an alert, no common version or cipher) or stalled before it finished"
TABLES = ("tls",)                            # what analyze() reads: load() builds only these
CHART_TABLES = ("connections", "events")     # and what the figures read besides, built for a chart
KEEPALIVE_FACTS = False                       # what they read of the connections is not made of requests
FIGURES = {"ladder": "one session's handshake messages, plaintext and encrypted, with its round trips",
           "versions": "handshake time and round trips, TLS 1.2 next to TLS 1.3 (when both are there)"}

JSON_FIELDS = STABLE_FIELDS["tls"]    # the stable --json fields, in order
SESSIONS_TOLD = 20                    # sessions described one by one in the answer; the rows have all
TABLE_FIELDS = ["conn", "sni", "version", "cipher", "alpn", "resumed", "rtts", "handshake_ms", "status"]

WHY = {
    "TLS 1.2": ("TLS 1.2 needs two round trips before the client may send a request: ClientHello → "
                "ServerHello…ServerHelloDone, then ClientKeyExchange/ChangeCipherSpec/Finished → the "
                "server's Finished"),
    "TLS 1.3": ("TLS 1.3 needs one: the client sends its key share in the ClientHello, so the server "
                "answers with everything (ServerHello, then its encrypted certificate and Finished) and "
                "the client can send its request right after its own Finished"),
}


def applies(tl) -> bool:
    return tl.tls is not None and len(tl.tls) > 0


def analyze(tl, conn: int | None = None) -> Finding:
    rows = tl.tls if tl.tls is not None else pd.DataFrame()
    if conn is not None and len(rows):
        rows = rows[rows["conn"] == conn]
    rows = rows.reset_index(drop=True)
    finding = Finding(title=TITLE, question=__doc__, rows=rows, json_fields=JSON_FIELDS)
    finding.table_fields = [c for c in TABLE_FIELDS if c in rows.columns]
    if rows.empty:
        finding.answer = ["No TLS handshake in this capture" + (f" on connection {conn}" if conn is not None else "") + "."]
        return finding
    finding.summary = summarize(rows)
    finding.answer = explain(tl, rows)
    finding.problems = [line for line in finding.answer if line.startswith(("Failed", "Stalled"))]
    target = _ladder_session(rows, conn)
    trips = round_trips(target)
    finding.figures = {"ladder": lambda theme: _ladder(_tls_events(tl, int(target["conn"])), target, trips, theme,
                                                       tl.connections)}
    versions = set(rows["version"].dropna().astype(str).str[:7])
    if {"TLS 1.2", "TLS 1.3"} <= versions:
        finding.figures["versions"] = lambda theme: _versions(rows, theme)
    return finding


def summarize(rows: pd.DataFrame) -> dict:
    def counts(col):
        return {str(k): int(v) for k, v in rows[col].dropna().astype(str).value_counts().items()} if col in rows else {}

    done = _slowest_first(rows)
    resumed = rows["resumed"].fillna(False).astype(bool) if "resumed" in rows else pd.Series([], dtype=bool)
    return {
        "sessions": int(len(rows)),
        "versions": counts("version"),
        "ciphers": counts("cipher"),
        "alpn": counts("alpn"),
        "resumed_share": round(float(resumed.mean()), 3) if len(resumed) else None,
        "completed": int(rows["completed"].fillna(False).astype(bool).sum()) if "completed" in rows else None,
        "decrypted": int(rows["decrypted"].fillna(False).astype(bool).sum()) if "decrypted" in rows else 0,
        "median_handshake_ms": round(float(done.median()), 2) if len(done) else None,
        "slowest": [f"conn {int(rows.at[i, 'conn'])}: {ms:.1f} ms" for i, ms in done.head(3).items()],
    }


def _slowest_first(rows: pd.DataFrame) -> pd.Series:
    """The finished handshakes' times, slowest first, by row.  The column alone is sorted: a
    frame of fifty columns (a dozen of them Arrow strings) filtered and sorted whole cost a
    quarter of a second on 16k sessions."""
    if "handshake_ms" not in rows:
        return pd.Series([], dtype=float)
    return rows["handshake_ms"].dropna().sort_values(ascending=False)


def explain(tl, rows: pd.DataFrame) -> list[str]:
    lines = []
    by_version = rows["version"].fillna("no ServerHello").astype(str).value_counts().sort_index()
    parts = [f"{n} × {v}" for v, n in by_version.items()]
    lines.append(f"{len(rows)} TLS session{'s' if len(rows) != 1 else ''}: " + ", ".join(parts) + ".")
    for family, why in WHY.items():
        if rows["version"].fillna("").astype(str).str.startswith(family).any():
            lines.append(why + ".")
    tcp_rtt = _tcp_rtts(rows)
    told = untold = 0
    # plain dicts of the columns the lines read, made of each column's list: iterrows makes a
    # Series per session, and to_dict() boxes every value on its own (twice the lines' cost)
    names = [c for c in _LINE_COLUMNS if c in rows.columns]
    for values in zip(*(rows[c].tolist() for c in names)):
        r = dict(zip(names, values))
        said = _session_lines(r, tcp_rtt.get(int(r["conn"])))
        if told < SESSIONS_TOLD:
            lines += said
            told += bool(said)
            continue
        failures = [line for line in said if line.startswith(("Failed", "Stalled"))]   # what --fail reports
        lines += failures
        untold += len(failures) < len(said)
    if untold:
        lines.append(f"{untold} more session{'s are' if untold != 1 else ' is'} not described here (failures "
                     "are): every session is a row (--all, --json).")
    return lines + decryption(tl, rows)


def decryption(tl, rows: pd.DataFrame) -> list[str]:
    """How many sessions were decrypted, and for the rest what would decrypt them."""
    n = len(rows)
    done = int(rows["decrypted"].fillna(False).astype(bool).sum()) if "decrypted" in rows else 0
    text = f"{done} of {n} sessions decrypted"
    if done == n:
        return [text + "."]
    left = n - done      # the one column read, not the frame filtered
    kx = rows["key_exchange"].astype("string") if "key_exchange" in rows else pd.Series(pd.NA, index=rows.index)
    if "decrypted" in rows:
        kx = kx[~rows["decrypted"].fillna(False).astype(bool)]
    rsa = int((kx == "RSA").sum())
    one = left == 1
    why = []
    if rsa:
        key = _companion(tl, "private_key")
        why.append(("this one" if one else f"{rsa} of them") + " used RSA key exchange; pass --rsa-key"
                   + (f" {key}" if key else " with the server's private key") + " (or a key log)")
    if left > rsa:
        why.append(("this one needs" if one else f"{left - rsa} need") + " the client's key log: pass --keylog "
                   "(SSLKEYLOGFILE)")
    return [f"{text}: " + "; ".join(why) + "."]


def _companion(tl, role: str) -> str | None:
    """A bundled capture's companion file name (the argument that finds it), or None."""
    from pathlib import Path

    from traceviz.captures import companions, list_captures
    me = Path(tl.source.path).resolve()
    for row in list_captures():
        if Path(row["path"]).resolve() == me:
            path = companions(row).get(role)
            return Path(path).name if path else None
    return None


_LINE_COLUMNS = ("conn", "sni", "hello_retry", "client_hellos", "resumed", "resumption", "version", "early_data",
                 "status", "handshake_ms", "rtts", "decode_errors", "decode_error_detail")


def _session_lines(r, tcp_rtt) -> list[str]:
    conn, out = int(r["conn"]), []
    name = f"conn {conn}" + (f" ({r['sni']})" if isinstance(r.get("sni"), str) else "")
    if r.get("hello_retry") is True:
        out.append(f"{name}: the server sent a HelloRetryRequest (the client guessed the wrong key-share group), "
                   f"costing one extra round trip.")
    hellos = r.get("client_hellos")
    if hellos is not None and hellos == hellos and int(hellos) > 1 and r.get("hello_retry") is not True:
        out.append(f"{name}: the client sent {int(hellos)} ClientHellos without being asked to retry.")
    if r.get("resumed") is True:
        how = r.get("resumption") or "resumption"
        out.append(f"{name}: resumed by {how}, so the server skipped its certificate"
                   + (" and the handshake took one round trip." if str(r.get("version", "")).startswith("TLS 1.2") else "."))
    if r.get("early_data") is True:
        out.append(f"{name}: the client sent 0-RTT early data with its ClientHello, before any round trip.")
    status = str(r.get("status") or "")
    if status.startswith("failed"):
        out.append(f"Failed: {name}: {status[len('failed: '):]}.")
    elif status.startswith("stalled"):
        out.append(f"Stalled: {name}: {status[len('stalled: '):]} when the capture ends.")
    hs = r.get("handshake_ms")
    if hs is not None and hs == hs and r.get("rtts") is not None and r.get("rtts") == r.get("rtts"):
        line = f"{name}: {r['version']} handshake took {hs:.1f} ms over {int(r['rtts'])} round trip{'s' if int(r['rtts']) != 1 else ''}"
        # Next to the TCP round trip the cost reads plainly; on loopback (< 1 ms) the ratio means nothing.
        if tcp_rtt and tcp_rtt >= 0.001:
            line += (f", about {hs / (tcp_rtt * 1000):.1f}× the TCP handshake's round trip "
                     f"({tcp_rtt * 1000:.1f} ms)")
        out.append(line + ".")
    if int(r.get("decode_errors") or 0):
        out.append(f"{name}: {int(r['decode_errors'])} decode error(s): {r.get('decode_error_detail')}.")
    return out


def _tcp_rtts(rows: pd.DataFrame) -> dict[int, float]:
    """conn -> the round trip of the TCP handshake under the session, where one was seen."""
    if "tcp_rtt" not in rows:
        return {}
    seen = rows["tcp_rtt"].notna()
    return {int(k): float(v) for k, v in zip(rows["conn"][seen], rows["tcp_rtt"][seen])}


def _tls_events(tl, conn: int) -> pd.DataFrame:
    ev = tl.events
    if ev is None or ev.empty:
        return pd.DataFrame(columns=["ts", "frame", "dir", "kind", "size", "detail", "encrypted"])
    return ev[(ev["layer"] == "tls") & (ev["conn"] == conn)].sort_values(["ts", "frame"], kind="stable")


def round_trips(session) -> list[dict]:
    """The session's round trips (the ``round_trips`` column), labelled for the ladder."""
    spans = session.get("round_trips") if hasattr(session, "get") else None
    if not isinstance(spans, (list, tuple)):
        return []
    return [{"start": t0, "end": t1, "label": f"round trip {n}<br>{(t1 - t0) * 1000:.1f} ms"}
            for n, (t0, t1) in enumerate(spans, 1)]


def _ladder_session(rows: pd.DataFrame, conn: int | None):
    if conn is not None:
        return rows.iloc[0]
    done = _slowest_first(rows)
    return rows.loc[done.index[0]] if len(done) else rows.iloc[0]


def _ladder(events, session, trips, theme, connections=None):
    from traceviz.charts.tls import handshake_ladder
    return handshake_ladder(events, session, trips, theme=theme, connections=connections)


def _versions(rows, theme):
    from traceviz.charts.tls import version_comparison
    return version_comparison(rows, theme=theme)


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
