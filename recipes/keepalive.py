"""Were connections reused, how long did they sit idle, and who closed them?

HTTP/1.1 keeps a connection open for the next request (keep-alive), unless a
side says ``Connection: close``.  One row per connection that carried HTTP
(or TCP keep-alive probes): how many requests it carried, the idle gaps
between them, who closed it and after how long idle -- a server closing
idle connections after the same time each reveals its keep-alive timeout --,
HTTP/1.1 pipelining, TCP keep-alive probes (interval, count, answered),
connections opened and never used, and new connections opened while an idle
one to the same server was there to reuse.

The keep-alive race: a request written on an idle connection at the moment
the server closes it.  The server's FIN acknowledges none of the request (it
left before the request arrived), and a RST answers the request.  An
idempotent request can be sent again on a new connection; a POST usually is
not, and the client (or the proxy's client) gets an error.

    python recipes/keepalive.py capture.pcapng [--conn N] [--chart reuse.html]
"""

from __future__ import annotations

import pandas as pd

from traceviz.errors import InputError
from traceviz.recipe import Finding

NAME = "keepalive"
TITLE = "Keep-alive: connection reuse, idle time, who closed"
NEEDS = "HTTP/1 requests or TCP keep-alive probes in a capture"
FAILS_ON = "a request sent on a connection the server was already closing (the keep-alive race)"
EXAMPLE = "http1-idle-timeout"
TABLES = ("connections", "events", "packets", "requests")   # what analyze() and the figures read: load() builds only these
EVENTS = "tcp"      # the events read are TCP's (the figure's keep-alive probes): load(events="tcp")
FIGURES = {"reuse": "one lane per connection: requests as bars, idle gaps, the closing side and keep-alive probes"}

JSON_FIELDS = ["conn", "client", "server", "http_requests", "reused", "idle_first", "idle_gaps", "idle_max",
               "close", "closed_by", "idle_close", "conn_close", "pipelined", "ka_probes", "ka_answered",
               "ka_idle", "ka_interval", "ka_by", "idle_sibling", "unused", "races", "close_frame"]
TABLE_FIELDS = ["conn", "client", "server", "http_requests", "idle_max", "closed_by", "idle_close", "conn_close",
                "ka_probes", "races"]
IDLE_CLOSE = 0.05        # s: a close this long after the last byte is an idle timer, not the end of an exchange
SAME_TIMEOUT = 0.1       # s: idle closes this close to each other are one timeout
LIST_MAX = 5
FIX = ("Fix: the client (or proxy) must stop reusing an idle connection before the server's idle timer "
       "fires -- keep its idle timeout for the connection pool below the server's keep-alive timeout, or "
       "raise the server's -- and retry an idempotent request that met a closing connection")


def applies(tl) -> bool:
    c = tl.connections
    return len(c) > 0 and bool((c["http_requests"].notna() | c["ka_probes"].notna()).any())


def analyze(tl, conn: int | None = None) -> Finding:
    rows = keepalive_rows(tl)
    if conn is not None:
        if not (rows["conn"] == conn).any():
            raise InputError(tl.source.path, f"no connection {conn} with HTTP or keep-alive probes "
                                             f"(these have: {_conns(rows['conn'].tolist()) or 'none'})")
        rows = rows[rows["conn"] == conn].reset_index(drop=True)
    summary = summarize(rows)
    answer, problems = explain(tl, rows, summary)
    figures = {}
    if len(rows):
        figures["reuse"] = lambda theme="light": _reuse(tl, rows["conn"].tolist(), theme)
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=rows, summary=summary, answer=answer,
                   figures=figures, json_fields=JSON_FIELDS, table_fields=TABLE_FIELDS, problems=problems)


# --- the rows -----------------------------------------------------------------------------

def keepalive_rows(tl) -> pd.DataFrame:
    c = tl.connections
    c = c[(c["http_requests"].notna() | c["ka_probes"].notna()).to_numpy(dtype=bool, na_value=False)].copy()
    races = tl.requests[(tl.requests["cause"].astype("object") == "keepalive-race").to_numpy(dtype=bool, na_value=False)
                        & (tl.requests["leg"].astype("object") != "client").to_numpy(dtype=bool, na_value=False)]
    per_conn = races["conn"].value_counts()
    close = c["close"].astype("object")
    c["reused"] = c["http_requests"].astype("Float64") > 1
    c["idle_max"] = [max(g) if isinstance(g, list) and g else None for g in c["idle_gaps"]]
    c["closed_by"] = [(str(x).split("-")[-1] if str(x).split("-")[-1] in ("client", "server") else None)
                      for x in close]
    c["unused"] = (c["http_requests"] == 0).fillna(False).astype(bool)
    c["races"] = [int(per_conn.get(k, 0)) for k in c["conn"]]
    extra = [k for k in c.columns if k not in JSON_FIELDS]
    return c[JSON_FIELDS + extra].sort_values("conn", kind="stable").reset_index(drop=True)


# --- the summary --------------------------------------------------------------------------

def summarize(rows: pd.DataFrame) -> dict:
    n = pd.to_numeric(rows["http_requests"], errors="coerce")
    timeout = server_idle_timeout(rows)
    probes = rows[rows["ka_probes"].notna()]
    return {
        "connections": int(len(rows)),
        "requests": int(n.fillna(0).sum()),
        "reused_connections": int((n > 1).sum()),
        "requests_per_connection": sorted(int(v) for v in n.dropna()),
        "server_idle_timeout_s": round(timeout, 3) if timeout is not None else None,
        "connection_close": int(rows["conn_close"].notna().sum()),
        "pipelined_requests": int(pd.to_numeric(rows["pipelined"], errors="coerce").fillna(0).sum()),
        "keepalive_probes": int(pd.to_numeric(probes["ka_probes"]).sum()) if len(probes) else 0,
        "unused_connections": int(rows["unused"].sum()),
        "races": int(rows["races"].sum()),
    }


def idle_closes(rows: pd.DataFrame, side: str) -> pd.DataFrame:
    """Connections ``side`` closed after sitting idle (no Connection: close asked for it)."""
    return rows[(rows["closed_by"] == side).to_numpy(dtype=bool, na_value=False) & rows["conn_close"].isna().to_numpy(dtype=bool, na_value=False)
                & (pd.to_numeric(rows["idle_close"], errors="coerce") >= IDLE_CLOSE).to_numpy(dtype=bool, na_value=False)]


def server_idle_timeout(rows: pd.DataFrame) -> float | None:
    """The server's idle timeout, when the server closed idle connections after about the same time."""
    idle = pd.to_numeric(idle_closes(rows, "server")["idle_close"], errors="coerce").dropna()
    if not len(idle) or idle.max() - idle.min() > max(SAME_TIMEOUT, 0.05 * idle.median()):
        return None
    return float(idle.median())


# --- the words ----------------------------------------------------------------------------

def explain(tl, rows: pd.DataFrame, s: dict) -> tuple[list[str], list[str]]:
    if not len(rows):
        return ["No connection here carried HTTP or TCP keep-alive probes."], []
    out = [_overview(rows, s)]
    out += _asked_close(rows) + _idle_close(rows, s) + _probes(rows) + _pipelining(rows)
    out += _unused(rows) + _siblings(rows)
    races = _races(tl, rows)
    out += races
    problems = [f"{s['races']} request(s) met the keep-alive race"] if s["races"] else []
    return out, problems


def _overview(rows, s) -> str:
    n = pd.to_numeric(rows["http_requests"], errors="coerce")
    counts = n.dropna().astype(int).value_counts().sort_index(ascending=False)
    parts = []
    for k, m in counts.items():
        if k == 0:
            continue
        text = f"{_conns(rows.loc[n == k, 'conn'].tolist())}: {_n(k, 'request')}{' each' if m > 1 else ''}"
        if k > 1:
            text += f" (one handshake, then {_n(k - 1, 'reuse')})"
        parts.append(text)
    head = f"{_n(s['connections'], 'connection')} carried {_n(s['requests'], 'HTTP request')}"
    return head + (" -- " + "; ".join(parts) if parts else "") + "."


def _asked_close(rows) -> list[str]:
    out = []
    for who, grp in rows[rows["conn_close"].notna()].groupby("conn_close"):
        asked = {"client": "the client asked 'Connection: close'",
                 "server": "the server answered 'Connection: close'",
                 "both": "the client asked 'Connection: close' and the server agreed"}[who]
        closer = grp["closed_by"].dropna().value_counts()
        by = closer.index[0] if len(closer) else None
        fast = pd.to_numeric(grp["idle_close"], errors="coerce").dropna()
        text = f"{_conns(grp['conn'].tolist())}: {asked}"
        if by is not None and len(fast):
            text += f"; the {by} closed {'each' if len(grp) > 1 else 'it'} {_dur(fast.max())} after the last byte"
        out.append(text + ". Each such connection serves one request and the next pays a new handshake.")
    return out


def _idle_close(rows, s) -> list[str]:
    out = []
    srv = idle_closes(rows, "server")
    if len(srv):
        idle = pd.to_numeric(srv["idle_close"])
        if s["server_idle_timeout_s"] is not None:
            out.append(f"The server closed {_conns(srv['conn'].tolist())} after {_dur(idle.median())} idle, with no "
                       f"request pending: its keep-alive (idle) timeout is about {_dur(s['server_idle_timeout_s'])}.")
        else:
            out.append(f"The server closed {_conns(srv['conn'].tolist())} after {_dur(idle.min())} to "
                       f"{_dur(idle.max())} idle, with no request pending.")
    cli = idle_closes(rows, "client")
    if len(cli):
        idle = pd.to_numeric(cli["idle_close"])
        span = _dur(idle.iloc[0]) if len(cli) == 1 else f"{_dur(idle.min())} to {_dur(idle.max())}"
        out.append(f"The client closed {_conns(cli['conn'].tolist())} after {span} idle.")
    done = rows[rows["closed_by"].notna().to_numpy(dtype=bool, na_value=False) & rows["conn_close"].isna().to_numpy(dtype=bool, na_value=False)
                & (pd.to_numeric(rows["idle_close"], errors="coerce") < IDLE_CLOSE).to_numpy(dtype=bool, na_value=False)]
    for who, grp in done.groupby("closed_by"):
        out.append(f"The {who} closed {_conns(grp['conn'].tolist())} right after the last exchange "
                   f"(within {_dur(pd.to_numeric(grp['idle_close']).max())}).")
    return out


def _probes(rows) -> list[str]:
    out = []
    for r in rows[rows["ka_probes"].notna()].itertuples(index=False):
        n, answered = int(r.ka_probes), int(r.ka_answered or 0)
        text = f"conn {r.conn}: {_n(n, 'TCP keep-alive probe')} from the {r.ka_by or '?'}"
        if not pd.isna(r.ka_idle):
            text += f", the first after {_dur(r.ka_idle)} of silence (TCP_KEEPIDLE)"
        if not pd.isna(r.ka_interval):
            text += f", then every {_dur(r.ka_interval)} (TCP_KEEPINTVL)"
        if answered == n:
            text += (f"; {'all ' + str(n) if n > 1 else 'it was'} answered, so the peer was alive (the give-up "
                     f"count, TCP_KEEPCNT, shows only when probes go unanswered)")
        else:
            text += f"; {answered} answered, {n - answered} not"
        out.append(text + ".")
    return out


def _pipelining(rows) -> list[str]:
    p = rows[pd.to_numeric(rows["pipelined"], errors="coerce").fillna(0) > 0]
    return [f"conn {r.conn}: {_n(int(r.pipelined), 'request')} sent before the previous response had ended "
            f"(HTTP/1.1 pipelining)." for r in p.itertuples(index=False)]


def _unused(rows) -> list[str]:
    u = rows[rows["unused"]]
    if not len(u):
        return []
    return [f"{_n(len(u), 'connection')} opened and never used (no request): {_conns(u['conn'].tolist())}."]


def _siblings(rows) -> list[str]:
    out = []
    for r in rows[rows["idle_sibling"].notna()].itertuples(index=False):
        out.append(f"conn {r.conn} was opened while conn {int(r.idle_sibling)} to the same server sat idle: "
                   f"its request could have reused that connection.")
    return out


def _races(tl, rows) -> list[str]:
    r = tl.requests
    races = r[(r["cause"].astype("object") == "keepalive-race").to_numpy(dtype=bool, na_value=False)
              & (r["leg"].astype("object") != "client").to_numpy(dtype=bool, na_value=False)
              & r["conn"].isin(rows["conn"].tolist()).to_numpy(dtype=bool, na_value=False)]
    if not len(races):
        return []
    out = []
    for x in races.itertuples(index=False):
        text = f"Keep-alive race on conn {x.conn}: {x.cause_detail}"
        if not pd.isna(x.parent):
            p = r[r["request"] == int(x.parent)].iloc[0]
            status = "no answer" if pd.isna(p["status"]) else int(p["status"])
            text += (f" It served client request {int(x.parent)} ({p['method']}, conn {int(p['conn'])}), which "
                     f"got {status}.")
        out.append(text)
    out.append("A GET (idempotent) can be sent again on a new connection; a POST is not sent again by nginx "
               "unless proxy_next_upstream includes non_idempotent, nor by most clients, so it fails.")
    out.append(FIX + ".")
    return out


# --- words --------------------------------------------------------------------------------

def _dur(seconds) -> str:
    from traceviz.charts.text import fmt_ms
    return fmt_ms(float(seconds))


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _conns(conns: list) -> str:
    conns = [int(c) for c in conns]
    if not conns:
        return ""
    if len(conns) > 2 and conns == list(range(conns[0], conns[-1] + 1)):
        return f"conns {conns[0]}\u2013{conns[-1]}"
    shown = ", ".join(str(c) for c in conns[:LIST_MAX])
    more = f" and {len(conns) - LIST_MAX} more" if len(conns) > LIST_MAX else ""
    return ("conn " if len(conns) == 1 else "conns ") + shown + more


def _reuse(tl, conns, theme):
    from traceviz.charts.reuse import reuse_timeline
    return reuse_timeline(tl.connections, tl.requests, conns, tl.packets_of(conns), tl.events, theme=theme)


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
