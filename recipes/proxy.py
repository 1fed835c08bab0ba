"""Why did the proxy answer 502, 503 or 504?

A reverse proxy answers 5xx when its upstream lets it down.  Seen from both
sides (a capture at the proxy, one interface per side, or one interface
that sees both legs), each client request has its upstream requests -- the
same method and path a moment later on a connection the proxy opened or
reused -- and the last of them says why the client got a 5xx: the upstream
refused the connection, never answered the SYN, closed (FIN) or reset (RST)
before answering, sent something that is not HTTP, a header too big for the
proxy's buffer, answered after the proxy's read timeout, or answered 5xx
itself; or the proxy reused a pooled connection the upstream was closing
(the keep-alive race), or tried nothing at all.  One row per client request.

With only the client side captured, a 5xx's cause is ``unknown``: the
recipe says what the client side shows and what is missing, never a guess.
``--proxy-log`` adds the proxy's own words (nginx error.log or access log,
haproxy's log) beside the packets, and says where they agree.

    python recipes/proxy.py capture.pcapng [--proxy-log error.log] [--chart ladder.html]
"""

from __future__ import annotations

import pandas as pd

from traceviz.errors import InputError
from traceviz.recipe import Finding
from traceviz.sources.urls import path_of

NAME = "proxy"
TITLE = "Reverse proxy: the two legs and the cause of each 5xx"
NEEDS = "HTTP/1 requests through a reverse proxy, with at least one 5xx or an upstream leg in the capture"
FAILS_ON = "a 5xx the proxy answered (with its cause) or a request that met the keep-alive race"
EXAMPLE = "proxy-nginx-502-504"
TABLES = ("connections", "events", "packets", "requests")   # what analyze() and the figures read: load() builds only these
EVENTS = "tcp"      # the events read are TCP's (the figure's keep-alive probes): load(events="tcp")
FIGURES = {"ladder": "client, proxy and upstream in one sequence diagram, the failing exchange and its cause marked",
           "reuse": "the upstream connections over time: requests as bars, idle gaps, who closed"}
OPTIONS = {"proxy-log": "The proxy's log: nginx error.log or access log, haproxy log (repeat for several files)."}

JSON_FIELDS = ["request", "conn", "method", "url", "status", "cause", "cause_detail", "cause_frames", "client",
               "server", "upstream_requests", "upstream_conns", "upstream_addr", "upstream_status",
               "upstream_causes", "start", "ttfb", "log", "log_says", "log_agrees"]
TABLE_FIELDS = ["request", "conn", "method", "url", "status", "cause", "upstream_addr", "upstream_status"]
LIST_MAX = 6

# What the proxy does after a failed upstream attempt, for the words (nginx and haproxy docs).
RETRY_RULES = ("nginx sends a request to the next upstream after an error (proxy_next_upstream error "
               "timeout, the default) only if it is idempotent (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) "
               "or the request had not been sent yet; a POST is retried only with proxy_next_upstream "
               "... non_idempotent. haproxy retries a connection failure (retries), and a request already "
               "sent only with retry-on (empty-response, conn-failure...)")
FIX = ("Fix: let the proxy close its idle pooled connections before the upstream does -- keep the "
       "proxy's idle timeout for upstream connections below the upstream's keep-alive timeout (nginx: "
       "keepalive_timeout inside the upstream block; haproxy: 'http-reuse safe' so a first request never "
       "goes out on a reused connection), or raise the upstream's timeout; and let the proxy retry a "
       "request that met a closing connection where that is safe (nginx proxy_next_upstream ... "
       "non_idempotent, haproxy retry-on empty-response)")


def applies(tl) -> bool:
    r = tl.requests
    if not len(r):
        return False
    status = pd.to_numeric(r["status"], errors="coerce")
    return bool(r["leg"].notna().any() or (status >= 500).any())


def analyze(tl, conn: int | None = None, proxy_log=None) -> Finding:
    log = _read_log(proxy_log)
    rows = proxy_rows(tl, log)
    if conn is not None:
        hit = rows[(rows["conn"] == conn) | rows["upstream_conns"].map(lambda cs: conn in cs)]
        if not len(hit):
            raise InputError(tl.source.path, f"no client request on or relayed over conn {conn}")
        rows = hit.reset_index(drop=True)
    summary = summarize(tl, rows, log)
    answer, problems = explain(tl, rows, summary, log)
    figures = {}
    focus = _focus(rows)
    if focus is not None:
        figures["ladder"] = lambda theme="light": _ladder(tl, focus, theme)
    upstream = sorted({c for cs in rows["upstream_conns"] for c in cs})
    if upstream:
        figures["reuse"] = lambda theme="light": _reuse(tl, upstream, theme)
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=rows, summary=summary, answer=answer,
                   figures=figures, json_fields=JSON_FIELDS, table_fields=TABLE_FIELDS, problems=problems)


# --- the rows -----------------------------------------------------------------------------

def _read_log(paths):
    if not paths:
        return None
    from traceviz.sources.proxylog import read
    return read(paths)


def proxy_rows(tl, log=None) -> pd.DataFrame:
    """One row per client request (and per 5xx when no proxy is seen), its upstream attempts beside it."""
    r = tl.requests
    c = tl.connections.set_index("conn")
    leg = r["leg"].astype("object")
    status = pd.to_numeric(r["status"], errors="coerce")
    mine = r[(leg == "client").to_numpy(dtype=bool, na_value=False) | (leg.isna() & (status >= 500)).to_numpy(dtype=bool, na_value=False)]
    children = r[(leg == "upstream").to_numpy(dtype=bool, na_value=False) & r["parent"].notna().to_numpy(dtype=bool, na_value=False)]
    by_parent = {int(k): g.sort_values("start") for k, g in children.groupby("parent")} if len(children) else {}
    matched, says = _log_by_request(tl, log)
    out = []
    for x in mine.sort_values("start", kind="stable").itertuples(index=False):
        tries = _tries(x, by_parent.get(int(x.request)), c)
        lines = matched.get(int(x.request), [])
        allowed = _allowed(lines, says)
        cause = x.cause if isinstance(x.cause, str) else None
        out.append({
            "request": int(x.request), "conn": _int(x.conn), "method": x.method, "url": x.url,
            "status": _int(x.status), "cause": cause, "cause_detail": x.cause_detail,
            "cause_frames": x.cause_frames if isinstance(x.cause_frames, list) else [],
            "client": _end(c, x.conn, "client"), "server": _end(c, x.conn, "server"),
            "upstream_requests": [t["request"] for t in tries if t["request"] is not None],
            "upstream_conns": [t["conn"] for t in tries],
            "upstream_addr": [t["server"] for t in tries],
            "upstream_status": [t["status"] for t in tries],
            "upstream_causes": [t["cause"] for t in tries],
            "start": x.start, "ttfb": x.ttfb,
            "log": [line.text for line in lines],
            "log_says": sorted(allowed) if allowed is not None else None,
            "log_agrees": _agrees(allowed, [cause] + [t["cause"] for t in tries]),
        })
    return pd.DataFrame(out, columns=JSON_FIELDS)


def _tries(x, kids, c) -> list[dict]:
    """The upstream attempts for client request ``x``, in time order: its upstream requests and
    the connections opened for it that carried none."""
    tries = []
    if kids is not None:
        for k in kids.itertuples(index=False):
            tries.append({"t": k.start, "request": int(k.request), "conn": int(k.conn),
                          "server": _end(c, k.conn, "server"),
                          "status": None if pd.isna(k.status) else str(int(k.status)),
                          "cause": k.cause if isinstance(k.cause, str) else None})
    for a in (x.connect_attempts if isinstance(x.connect_attempts, list) else []):
        if a not in c.index:        # a connection --where left out: its attempt is not shown
            continue
        row = c.loc[a]
        tries.append({"t": row["syn"], "request": None, "conn": int(a), "server": row["server"], "status": None,
                      "cause": "upstream-" + str(row["close"]) if row["close"] in ("refused", "unanswered")
                      else None})
    return sorted(tries, key=lambda t: t["t"])


def _log_by_request(tl, log):
    if log is None:
        return {}, {}
    from traceviz.assemble.proxy import log_causes, match_log
    hits = match_log(tl.requests, tl.connections, log.lines)
    matched: dict[int, list] = {}
    for i, rid in sorted(hits.items()):
        matched.setdefault(rid, []).append(log.lines[i])
    return matched, {id(line): log_causes(line) for line in log.lines}


def _agrees(allowed: set | None, causes: list) -> bool | None:
    """Whether the packets found a cause the log allows (for the client's answer or an upstream try)."""
    found = [k for k in causes if k]
    if allowed is None or not found:
        return None
    return any(k in allowed for k in found)


def _allowed(lines, says) -> set | None:
    sets = [says[id(line)] for line in lines if says.get(id(line))]
    if not sets:
        return None
    out = set(sets[0])
    for s in sets[1:]:
        out &= s
    return out or set.union(*sets)


def _end(c, conn, side):
    return c.at[int(conn), side] if conn is not None and not pd.isna(conn) and int(conn) in c.index else None


def _int(v):
    return None if v is None or pd.isna(v) else int(v)


# --- the summary and the words ------------------------------------------------------------

def summarize(tl, rows: pd.DataFrame, log) -> dict:
    leg = tl.requests["leg"].astype("object")
    causes = rows["cause"].dropna().value_counts()
    out = {"client_requests": int((leg == "client").sum()), "upstream_requests": int((leg == "upstream").sum()),
           "5xx": int((pd.to_numeric(rows["status"], errors="coerce") >= 500).sum()),
           "causes": {k: int(v) for k, v in causes.items()},
           "races": int((tl.requests["cause"].astype("object") == "keepalive-race").sum()),
           "retried": int(sum(1 for rs in rows["upstream_requests"] if len(rs) > 1))}
    if log is not None:
        out["log_lines"] = len(log.lines)
        out["log_lines_matched"] = int(sum(len(x) for x in rows["log"]))
        out["log_lines_unread"] = log.unread
    return out


def explain(tl, rows: pd.DataFrame, summary: dict, log) -> tuple[list[str], list[str]]:
    out, problems = [_overview(tl, rows, summary)], []
    for x in rows.itertuples(index=False):
        if x.status is not None and x.status >= 500:
            out.append(_five_xx(x))
            problems.append(f"{x.method} {path_of(x.url)}: {x.status} ({x.cause})")
    out += _retries(rows)
    races = _race_words(tl, rows)
    if races:
        out += races
        problems.append(f"{summary['races']} request(s) met the keep-alive race")
    if log is not None:
        out += _log_words(rows, summary, log)
    if len(out) == 1 and summary["client_requests"]:
        out.append("Every client request got its answer from the upstream: nothing went wrong here.")
    return out, problems


def _overview(tl, rows, s) -> str:
    r, c = tl.requests, tl.connections.set_index("conn")
    if not s["client_requests"]:
        n = s["5xx"]
        return (f"No proxy legs in this capture: no request was seen twice (from the client, then from a "
                f"proxy to its upstream). {n} response{'s were' if n != 1 else ' was'} 5xx.")
    up = r[(r["leg"] == "upstream").to_numpy(dtype=bool, na_value=False)]
    fronts = sorted({str(v) for v in rows["server"].dropna()})
    backs = sorted({str(c.at[int(k), "server"]) for k in up["conn"].dropna()} |
                   {a for cs in rows["upstream_addr"] for a in cs if a})
    how = sorted({str(m) for m in up["matched_by"].dropna()})
    ifaces = sorted({int(v) for v in tl.connections["iface"].dropna()})
    text = (f"A reverse proxy at {_few(fronts)} relayed {s['client_requests']} client requests as "
            f"{s['upstream_requests']} upstream requests to {_few(backs)}")
    if how:
        text += f" (tied by {'; '.join(how)})"
    if len(ifaces) > 1:
        text += f"; the capture has {len(ifaces)} interfaces, one per side"
    return text + "."


def _five_xx(x) -> str:
    what = f"{x.method} {path_of(x.url)} -> {x.status} (conn {x.conn})"
    if x.cause is None:
        return f"{what}: no cause found." + _logged(x)
    frames = f" [frames {', '.join(str(f) for f in x.cause_frames[:LIST_MAX])}]" if x.cause_frames else ""
    return f"{what}: {x.cause}. {x.cause_detail or ''}{frames}" + _logged(x)


def _logged(x) -> str:
    """The proxy's own line about this request, beside what the packets show."""
    errors = [line for line in x.log if "[error]" in line or " [crit] " in line] or list(x.log)
    return f" The proxy's log: \u00ab{errors[0]}\u00bb" if errors else ""


def _retries(rows) -> list[str]:
    out = []
    for x in rows.itertuples(index=False):
        n = len(x.upstream_conns)
        if n < 2:
            continue
        steps = ", then ".join(f"{c or s}" for c, s in zip(x.upstream_causes, x.upstream_status))
        out.append(f"{x.method} {path_of(x.url)} went upstream {n} times ({steps}); the client got "
                   f"{x.status if x.status is not None else 'no answer'}." + _logged(x))
    return out


def _race_words(tl, rows) -> list[str]:
    r = tl.requests
    races = r[(r["cause"].astype("object") == "keepalive-race").to_numpy(dtype=bool, na_value=False)
              & (r["leg"].astype("object") != "client").to_numpy(dtype=bool, na_value=False)]
    if not len(races):
        return []
    c = tl.connections.set_index("conn")
    parents = rows.set_index("request") if len(rows) else rows
    fates = []
    for x in races.itertuples(index=False):
        p = parents.loc[int(x.parent)] if not pd.isna(x.parent) and int(x.parent) in parents.index else None
        if p is None:
            fates.append(f"{x.method} {path_of(x.url)} on conn {x.conn}")
            continue
        again = len(p["upstream_conns"]) > 1 and p["upstream_conns"][-1] != int(x.conn)
        fate = "sent again on a new connection" if again else "not sent again"
        fates.append(f"{x.method} {path_of(x.url)} (conn {x.conn}): {fate}, the client got {p['status']}")
    idle = [float(v) for v in c.loc[sorted({int(k) for k in races["conn"]}), "idle_close"].dropna()]
    reused = [g for k in sorted({int(k) for k in races["conn"]}) for g in (c.at[k, "idle_gaps"] or [])[-1:]]
    text = (f"Keep-alive race ({len(races)}): a request went out on an idle pooled connection just as the "
            f"server closed it -- its FIN acknowledges none of the request, so it left before the request "
            f"arrived, and a RST answered the request. ")
    if idle:
        text += f"The server closes connections after about {_dur(min(idle))} idle"
        if reused:
            text += f"; they were reused after {_dur(max(reused))} idle"
        text += ". "
    text += "; ".join(fates) + "."
    return [text, RETRY_RULES + ".", FIX + "."]


def _log_words(rows, s, log) -> list[str]:
    out = []
    checked = rows[rows["log_agrees"].notna()]
    agree = int(checked["log_agrees"].astype(bool).sum())
    if len(checked):
        out.append(f"The proxy's log agrees with the packets on {agree} of the {len(checked)} failures it "
                   f"names.")
    for x in checked[~checked["log_agrees"].astype(bool)].itertuples(index=False):
        out.append(f"{x.method} {path_of(x.url)}: the log says {', '.join(x.log_says)}; the packets say {x.cause}: "
                   f"{x.log[0]}")
    left = s["log_lines"] - s["log_lines_matched"]
    if left:
        out.append(f"{left} of {s['log_lines']} log lines match no request in this capture (another time, or "
                   f"another client).")
    if log.unread:
        out.append(f"{log.unread} log lines are in no format traceviz reads (nginx error/access, haproxy "
                   f"httplog); the first is {log.first_unread}.")
    return out


def _few(items: list) -> str:
    items = [str(i) for i in items]
    if not items:
        return "-"
    return ", ".join(items[:LIST_MAX]) + (f" and {len(items) - LIST_MAX} more" if len(items) > LIST_MAX else "")


def _dur(seconds: float) -> str:
    from traceviz.charts.text import fmt_ms
    return fmt_ms(float(seconds))


# --- figures ------------------------------------------------------------------------------

def _focus(rows: pd.DataFrame):
    """The exchange to draw: a 5xx with a cause (a race first), else a retried one, else the first."""
    if not len(rows):
        return None
    status = pd.to_numeric(rows["status"], errors="coerce")
    for mask in ((rows["cause"] == "keepalive-race").to_numpy(dtype=bool, na_value=False), (status >= 500).to_numpy(dtype=bool, na_value=False),
                 rows["upstream_conns"].map(len).to_numpy() > 1):
        hit = rows[mask]
        if len(hit):
            return hit.iloc[0]
    return rows.iloc[0]


def _ladder(tl, row, theme):
    from traceviz.charts.proxy import two_leg_ladder
    legs = [row["conn"], *(row["upstream_conns"] or [])]
    return two_leg_ladder(tl.packets_of([c for c in legs if not pd.isna(c)]), tl.connections, tl.requests, row,
                          theme=theme)


def _reuse(tl, conns, theme):
    from traceviz.charts.reuse import reuse_timeline
    return reuse_timeline(tl.connections, tl.requests, conns, tl.packets_of(conns), tl.events, theme=theme,
                          title="Upstream connections")


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
