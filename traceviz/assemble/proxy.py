"""Reverse proxies in a capture: the two legs of each exchange, and why a proxy answered 5xx.

A proxy shows up as the same request twice: on a client-facing connection,
and a moment later on a connection the proxy opened (or reused) to an
upstream.  Captured at the proxy (a pcapng with one interface per side) or
anywhere that sees both legs, the upstream request carries the client's
method and path; ``X-Request-Id``, ``X-Forwarded-For`` and ``Via`` tie them
tighter when the proxy adds them.  Each upstream request gets ``leg =
"upstream"`` and ``parent`` (the client request's id); retries are several
upstream requests with one parent.  Connection attempts that never carried a
request (a refused or unanswered SYN) are tied to the client request they
happened during.

Then each 5xx the client got has a ``cause``, read off the last upstream
attempt: refused, unanswered, closed (FIN / RST) before a response, an
answer the parser rejects, a head too big for a proxy buffer, no answer
before the proxy gave up (how long it waited), the keep-alive race, nothing
tried at all, or the upstream's own 5xx passed on.  ``unknown`` says what is
missing; where the upstream side is not in the capture it says what the
client side alone shows, and never guesses.

Matching costs nothing on a capture without two legs: requests are grouped by
method and path first, and a pair needs an interface change, the proxy's own
address, or one of the headers above.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import pandas as pd

from traceviz.assemble import keepalive
from traceviz.assemble.keepalive import FIN, RST, missing, dur, header
from traceviz.sources.urls import path_of

CAUSES = ("upstream-refused", "upstream-unanswered", "upstream-fin", "upstream-rst",
          "upstream-invalid-response", "upstream-header-too-big", "upstream-timeout", "keepalive-race",
          "no-upstream", "upstream-status", "unknown")
HEAD_BUFFER = 4096      # nginx's default proxy_buffer_size is one memory page: 4 KiB (8 KiB on some)
MAX_PARENT_SPAN = 600.0 # seconds: an upstream request this long after a client request is not its leg
TIE_HEADERS = ("x-request-id", "x-forwarded-for", "via", "forwarded")
# Every header the facts read of a message (keep-alive facts: "connection"; the upstream's
# name: "server"): the payload tier keeps only these of each message (``keepalive.http1_heads``).
HEADERS_READ = ("connection", "server", *TIE_HEADERS)
MAX_CANDIDATES = 200    # earlier client requests looked at for one upstream request or attempt


def with_keepalive_facts(connections: pd.DataFrame, packets: pd.DataFrame, events: pd.DataFrame,
                         requests: pd.DataFrame, heads: dict) -> pd.DataFrame:
    """``connections`` with the keep-alive facts of those worth them (``keepalive.subjects``).
    ``heads``: every HTTP/1 message's headers by (conn, first frame) (``keepalive.http1_heads``).
    Reads nothing ``with_request_facts`` makes, so the two may be made apart (``capture.finish``
    makes each in a child of its own)."""
    family, ka = keepalive.subjects(connections, requests, events)
    segs = keepalive.segments(packets, family)
    return keepalive.connection_facts(connections, requests, ka, segs, heads if len(requests) else {})


def with_request_facts(requests: pd.DataFrame, connections: pd.DataFrame, packets: pd.DataFrame,
                       events: pd.DataFrame, heads: dict) -> pd.DataFrame:
    """``requests`` with their races, proxy legs and 5xx causes.  They read the packets of the
    requests' own connections alone, and of the connections only what the transport tier
    made of them (endpoints, interface, handshake, close): none of the keep-alive facts."""
    if not len(requests):
        return requests
    segs = keepalive.segments(packets, requests["conn"].dropna().astype(int).tolist())
    requests = keepalive.mark_races(requests, keepalive.races(requests, connections, segs))
    return legs(requests, connections, events, segs, heads)


# -- what one request looks like to the matcher --------------------------------------------

@dataclass
class _Req:
    row: int                 # position in the requests table
    request: int
    conn: int
    method: str
    path: str
    start: float
    answered: float          # first response byte, NaN if none
    status: int | None
    client: str              # endpoints of its connection
    server: str
    iface: int | None
    request_frame: int | None
    response_frame: int | None
    sent: float              # last request byte
    end: float
    cause: str | None
    cause_frames: list | None = None
    cause_detail: str | None = None
    heads: tuple = ()
    resp_heads: tuple = ()
    children: list = field(default_factory=list)
    attempts: list = field(default_factory=list)   # connections without requests it caused


def _host(endpoint) -> str:
    text = str(endpoint)
    return text.rpartition(":")[0].strip("[]") or text


def _num(v) -> float:
    return float("nan") if missing(v) else float(v)


def _int(v) -> int | None:
    return None if missing(v) else int(v)


def _reqs(requests: pd.DataFrame, connections: pd.DataFrame, heads: dict) -> list[_Req]:
    ends = {int(k): {"client": c, "server": s, "iface": i} for k, c, s, i in
            zip(*(connections[col].tolist() for col in ("conn", "client", "server", "iface")))}
    out = []
    # The number columns converted whole: a value at a time (_num, _int) was most of the cost.
    num = {c: _floats(requests, c) for c in ("start", "ttfb", "send", "end")}
    whole = {c: [None if v != v else int(v) for v in _floats(requests, c)]
             for c in ("request", "conn", "status", "request_frame", "response_frame")}
    cols = {c: requests[c].tolist() if c in requests.columns else [None] * len(requests)
            for c in ("method", "url", "cause", "cause_frames", "cause_detail")}
    for i, conn in enumerate(whole["conn"]):
        if conn is None or conn not in ends or cols["method"][i] is None:
            continue
        start, send = num["start"][i], num["send"][i]
        rf, sf = whole["request_frame"][i], whole["response_frame"][i]
        e = ends[conn]
        out.append(_Req(i, whole["request"][i], conn, str(cols["method"][i]), path_of(cols["url"][i]), start,
                        start + num["ttfb"][i], whole["status"][i], str(e["client"]), str(e["server"]),
                        _int(e["iface"]), rf, sf, start + send if send == send else start, num["end"][i],
                        cols["cause"][i] if isinstance(cols["cause"][i], str) else None,
                        cols["cause_frames"][i] if isinstance(cols["cause_frames"][i], list) else None,
                        cols["cause_detail"][i] if isinstance(cols["cause_detail"][i], str) else None,
                        heads.get((conn, rf), ()) if rf is not None else (),
                        heads.get((conn, sf), ()) if sf is not None else ()))
    return out


def _floats(requests: pd.DataFrame, column: str) -> list[float]:
    """A number column as floats, NaN where it has no value (all NaN when there is no such column)."""
    if column not in requests.columns:
        return [math.nan] * len(requests)
    return pd.to_numeric(requests[column], errors="coerce").to_numpy(dtype=float, na_value=math.nan).tolist()


# -- pairing -------------------------------------------------------------------------------

def _tie(c: _Req, u: _Req) -> str | None:
    """What makes ``u`` the upstream leg of ``c`` (None: nothing does)."""
    rid = header(u.heads, "x-request-id")
    if rid and rid in (header(c.heads, "x-request-id"), header(c.resp_heads, "x-request-id")):
        return "x-request-id"
    if (u.method, u.path) != (c.method, c.path):
        return None
    how = "method+path+time"
    xff = header(u.heads, "x-forwarded-for")
    if xff and _host(c.client) in [h.strip() for h in xff.split(",")]:
        return how + ", x-forwarded-for"
    if header(u.heads, "via") or header(u.heads, "forwarded"):
        return how + ", via"
    if c.iface is not None and u.iface is not None and c.iface != u.iface:
        return how + ", another interface"
    if _host(u.client) == _host(c.server):
        return how + ", the proxy's address"
    return None


def _worth_a_look(requests: pd.DataFrame, connections: pd.DataFrame, heads: dict) -> bool:
    """A 5xx to explain, or anything that could tie two legs (``_tie``): else there is nothing to do."""
    if (pd.to_numeric(requests["status"], errors="coerce") >= 500).any():
        return True
    mine = connections[connections["conn"].isin(requests["conn"].dropna().unique())]
    if mine["iface"].nunique(dropna=True) > 1:
        return True
    if {_host(c) for c in mine["client"].tolist()} & {_host(c) for c in mine["server"].tolist()}:
        return True
    return any(header(h, name) for h in heads.values() for name in TIE_HEADERS)


def _could_be_upstream(u: _Req, server_hosts: set, many_ifaces: bool) -> bool:
    """Whether anything could tie ``u`` to a client request (see ``_tie``): most requests of a
    capture without a proxy fail this at once, so matching costs nothing there."""
    return (many_ifaces or _host(u.client) in server_hosts
            or any(header(u.heads, h) for h in TIE_HEADERS))


def _pair(reqs: list[_Req]) -> dict[int, tuple[_Req, str]]:
    """Upstream request row -> (its parent, what tied them)."""
    server_hosts = {_host(r.server) for r in reqs}
    many_ifaces = len({r.iface for r in reqs}) > 1
    maybe = [u for u in reqs if _could_be_upstream(u, server_hosts, many_ifaces)]
    if not maybe:
        return {}
    by_key: dict[tuple[str, str], list[_Req]] = {}
    for r in sorted(reqs, key=lambda r: r.start):
        by_key.setdefault((r.method, r.path), []).append(r)
    starts = {k: [r.start for r in v] for k, v in by_key.items()}
    ids: dict[str, list[_Req]] = {}
    for r in reqs:
        rid = header(r.heads, "x-request-id") or header(r.resp_heads, "x-request-id")
        if rid:
            ids.setdefault(rid, []).append(r)
    found: dict[int, tuple[_Req, str]] = {}
    for u in maybe:
        rid = header(u.heads, "x-request-id")
        best = _best_parent(u, ids.get(rid, []) if rid else [], exact=True)
        if best is None:
            key = (u.method, u.path)
            pool = by_key.get(key, [])
            # the latest client request first: walk back from u's start, a bounded way
            i = bisect.bisect_right(starts.get(key, []), u.start)
            best = _best_parent(u, (pool[j] for j in range(i - 1, max(i - 1 - MAX_CANDIDATES, -1), -1)))
        if best is not None:
            found[u.row] = best
    # A request that is itself an upstream leg is not a client request as well.
    return {k: v for k, v in found.items() if v[0].row not in found}


def _best_parent(u: _Req, pool, exact: bool = False) -> tuple[_Req, str] | None:
    """The first request in ``pool`` (latest first) that ``u`` can be the upstream leg of."""
    for c in sorted(pool, key=lambda c: -c.start) if exact else pool:
        if c is u or c.conn == u.conn or c.server == u.server or c.start > u.start:
            continue
        if u.start - c.start > MAX_PARENT_SPAN:
            if exact:
                continue
            break                       # the pool runs back in time: all the rest are older
        limit = c.answered if not math.isnan(c.answered) else c.start + MAX_PARENT_SPAN
        if u.start > limit:
            continue
        how = _tie(c, u)
        if how is not None and (not exact or how == "x-request-id"):
            return c, how
    return None


# -- the legs and the causes ---------------------------------------------------------------

def legs(requests: pd.DataFrame, connections: pd.DataFrame, events: pd.DataFrame,
         segs: dict, heads: dict) -> pd.DataFrame:
    """``requests`` with leg, parent, matched_by and (for each 5xx) cause filled in."""
    if not _worth_a_look(requests, connections, heads):
        return requests
    reqs = _reqs(requests, connections, heads)
    pairs = _pair(reqs) if len(reqs) > 1 else {}
    by_row = {r.row: r for r in reqs}
    front = {c.server for c, _ in pairs.values()}
    up_hosts = {_host(by_row[u].client) for u in pairs}
    up_ifaces = {by_row[u].iface for u in pairs} - {c.iface for c, _ in pairs.values()}
    for u, (c, _) in sorted(pairs.items()):
        c.children.append(by_row[u])
    leg = {}
    for r in reqs:
        if r.row in pairs:
            leg[r.row] = "upstream"
        elif r.server in front:
            leg[r.row] = "client"
        elif pairs and _host(r.client) in up_hosts:
            leg[r.row] = "upstream"
    clients = [r for r in reqs if leg.get(r.row) == "client" or (r.row not in leg and not pairs)]
    _attempts(clients, connections, requests, front, up_hosts, up_ifaces, bool(pairs))
    failing = [c for c in clients if c.status is not None and c.status >= 500]
    evidence = _Evidence.of(events, segs, {r.conn for r in reqs if leg.get(r.row) == "upstream"}
                            | {c.conn for c in failing} | {u.conn for c in failing for u in c.children})
    causes = {}
    for r in reqs:
        if leg.get(r.row) == "upstream" and r.cause is None:
            parent = pairs[r.row][0] if r.row in pairs else None
            failed = _attempt_failure(r, parent, evidence)
            if failed is not None:
                causes[r.row] = failed
    for c in failing:
        causes[c.row] = _cause(c, bool(pairs), evidence, causes)
    tried = {c.row: [int(a.conn) for a in sorted(c.attempts, key=lambda a: float(a.syn))] for c in clients
             if c.attempts}
    return _write(requests, leg, pairs, causes, tried)


def _attempts(clients, connections, requests, front, up_hosts, up_ifaces, proxy_seen) -> None:
    """Tie each connection that carried no request (a refused SYN...) to the client request
    it was opened during, if it went out on the proxy's upstream side."""
    if not clients:
        return
    carried = set(requests["conn"].dropna().astype(int).tolist())
    cand = connections[(connections["transport"] == "tcp") & ~connections["conn"].isin(list(carried))
                       & connections["syn"].notna()]
    if not len(cand):
        return
    many_ifaces = connections["iface"].nunique(dropna=True) > 1
    proxy_hosts = {_host(c.server) for c in clients}
    clients = sorted(clients, key=lambda c: c.start)
    starts = [c.start for c in clients]
    # the columns the attempt rules read: itertuples over all sixty is most of the time
    used = ["conn", "client", "server", "iface", "syn", "close", "first_frame", "last_frame", "syn_retransmits"]
    for a in cand[[c for c in used if c in cand.columns]].itertuples(index=False):
        upstream_side = (_host(a.client) in up_hosts or _int(a.iface) in up_ifaces
                         or (not proxy_seen and many_ifaces))
        if str(a.server) in front or not (upstream_side or _host(a.client) in proxy_hosts):
            continue
        t = float(a.syn)
        i = bisect.bisect_right(starts, t)
        for c in (clients[j] for j in range(i - 1, max(i - 1 - MAX_CANDIDATES, -1), -1)):   # latest first
            if not upstream_side and _host(a.client) != _host(c.server):
                continue
            if (not proxy_seen and _int(a.iface) == c.iface) or str(a.server) == c.server:
                continue
            limit = c.answered if not math.isnan(c.answered) else c.end
            if math.isnan(limit) or t <= limit:
                c.attempts.append(a)
                break


@dataclass
class _Evidence:
    """What the cause rules look up, for the connections in question only: HTTP parse errors
    and response heads (size, status line) from the events, and their packets (``segs``)."""

    segs: dict
    errors: dict = field(default_factory=dict)       # conn -> [(frame, message)] (server side)
    head_size: dict = field(default_factory=dict)    # (conn, frame) -> bytes of a response head
    reason: dict = field(default_factory=dict)       # (conn, frame) -> "502 Bad Gateway"

    @classmethod
    def of(cls, events: pd.DataFrame, segs: dict, conns: set) -> "_Evidence":
        ev = cls(segs)
        if not conns or not len(events):
            return ev
        mine = events[(events["layer"] == "http").to_numpy(dtype=bool, na_value=False)
                      & events["conn"].isin(list(conns)).to_numpy(dtype=bool, na_value=False)]
        for conn, frame, kind, d, size, detail in zip(*(mine[k].tolist() for k in
                                                        ("conn", "frame", "kind", "dir", "size", "detail"))):
            if kind == "parse-error" and d == "s2c":
                ev.errors.setdefault(int(conn), []).append((_int(frame) or 0, str(detail)))
            elif kind == "response" and _int(frame) is not None:
                ev.head_size[(int(conn), int(frame))] = _int(size) or 0
                ev.reason[(int(conn), int(frame))] = str(detail)
        return ev


def _attempt_failure(u: _Req, parent: _Req | None, ev: _Evidence):
    """(cause, detail, frames) for an upstream request that did not end in a usable answer."""
    deadline = parent.answered if parent is not None else float("nan")
    errs = [(f, m) for f, m in ev.errors.get(u.conn, []) if u.request_frame is None or f >= u.request_frame]
    if errs and (u.status is None or u.response_frame is None or errs[0][0] >= u.response_frame):
        f, msg = errs[0]
        return ("upstream-invalid-response",
                f"the upstream's answer on conn {u.conn} is not valid HTTP/1.x: {msg} (frame {f})",
                [x for x in (u.request_frame, f) if x])
    seg = ev.segs.get(u.conn)
    srv = cli = None
    if seg is not None:
        closing = (seg.flags & (FIN | RST)) != 0
        srv = seg.first(closing & ~seg.c2s, u.request_frame or 0)
        cli = seg.first(closing & seg.c2s, u.request_frame or 0)
    proxy_close = None
    if cli is not None:
        proxy_close = (float(seg.ts[cli]), int(seg.frame[cli]), "RST" if seg.flags[cli] & RST else "FIN")
    if u.status is not None:
        if not math.isnan(deadline) and u.answered > deadline:
            early = proxy_close if proxy_close and proxy_close[0] <= u.answered else None
            return _timeout(u, parent, ev, close=early, late=True)
        return None
    if srv is not None and (cli is None or seg.ts[srv] <= seg.ts[cli]):
        kind = "RST" if seg.flags[srv] & RST and not seg.flags[srv] & FIN else "FIN"
        gap = float(seg.ts[srv]) - u.sent
        cause = "upstream-rst" if kind == "RST" else "upstream-fin"
        return (cause, f"the upstream closed conn {u.conn} with {kind} (frame {int(seg.frame[srv])}) "
                       f"{dur(gap)} after the request, without a response",
                [x for x in (u.request_frame, int(seg.frame[srv])) if x])
    if proxy_close is not None:
        return _timeout(u, parent, ev, close=proxy_close)
    if parent is not None and parent.status == 504:
        return _timeout(u, parent, ev)
    return None


def _timeout(u: _Req, parent: _Req | None, ev: _Evidence, close=None, late=False):
    if close is not None:
        waited = close[0] - u.sent
        text = (f"the proxy waited {dur(waited)} for an answer on conn {u.conn} (its read timeout), then "
                f"closed that connection ({close[2]}, frame {close[1]})")
        frames = [u.request_frame, close[1]]
    else:
        waited = (parent.answered if parent is not None else float("nan")) - u.sent
        text = f"the proxy waited {dur(waited)} for an answer on conn {u.conn} (its read timeout)"
        frames = [u.request_frame]
    if late and u.response_frame is not None:
        text += f"; the upstream's {u.status} came {dur(u.answered - u.sent)} after the request, too late"
        frames.append(u.response_frame)
    return "upstream-timeout", text, [f for f in frames if f]


def _cause(c: _Req, proxy_seen: bool, ev: _Evidence, failures: dict) -> tuple[str, str, list]:
    """Why the proxy answered ``c`` with a 5xx: the last thing it tried upstream."""
    shown = [f for f in (c.request_frame, c.response_frame) if f]
    tries = sorted([("request", u.start, u) for u in c.children]
                   + [("connect", float(a.syn), a) for a in c.attempts], key=lambda t: t[1])
    if not tries:
        return _nothing_tried(c, proxy_seen, ev, shown)
    kind, _, last = tries[-1]
    earlier = tries[:-1]
    if kind == "connect":   # its attempts to the same server are told together
        earlier = [t for t in earlier if t[0] != "connect" or t[2].server != last.server]
    before = _earlier(earlier, failures)
    if kind == "connect":
        cause, text, frames = _connect_failure(last, tries)
    elif last.cause == "keepalive-race":
        cause, text, frames = "keepalive-race", _race_text(last), list(last.cause_frames or [])
    elif last.row in failures:
        cause, text, frames = failures[last.row]
    elif last.status is not None and last.status >= 500:
        cause, text, frames = ("upstream-status", f"the upstream answered {last.status} itself on conn "
                               f"{last.conn} and the proxy passed it on", [last.response_frame])
    elif last.status is not None:
        size = ev.head_size.get((last.conn, last.response_frame or -1), 0)
        if size >= HEAD_BUFFER:
            cause, text, frames = ("upstream-header-too-big", f"the upstream's {last.status} on conn {last.conn} "
                                   f"has a {size}-byte head, more than a proxy's usual header buffer "
                                   f"(nginx proxy_buffer_size: 4 KiB or 8 KiB)", [last.response_frame])
        else:
            cause, text, frames = ("unknown", f"the upstream answered {last.status} on conn {last.conn} "
                                   f"({size}-byte head) before the proxy's {c.status}; nothing in the packets "
                                   f"says what the proxy rejected (its error log would: --proxy-log)",
                                   [last.response_frame])
    else:
        cause, text, frames = ("unknown", f"the request went upstream on conn {last.conn} and got no answer, "
                               f"but the capture shows no close and no timeout there", [last.request_frame])
    frames = sorted({int(f) for f in list(frames) + shown if f})
    text = text[:1].upper() + text[1:]
    if before:
        text += f". Before that: {before}"
    return cause, text + ".", frames


def _earlier(tries, failures) -> str:
    said = []
    for kind, _, t in tries:
        if kind == "connect":
            said.append(f"conn {int(t.conn)} to {t.server}: {t.close}")
        elif t.cause == "keepalive-race":
            said.append(f"conn {t.conn}: keep-alive race")
        elif t.row in failures:
            said.append(f"conn {t.conn}: {failures[t.row][0]}")
    return "; ".join(said)


def _race_text(u: _Req) -> str:
    said = f"the request went upstream on a pooled connection the upstream was closing: {u.cause_detail or ''}"
    return said.rstrip(". ") + ". The proxy did not send it again"


def _connect_failure(a, tries) -> tuple[str, str, list]:
    conns = [t for k, _, t in tries if k == "connect" and t.server == a.server]
    frames = [f for t in conns for f in (_int(t.first_frame), _int(t.last_frame)) if f]
    n = len(conns)
    what = "connection attempt" if n == 1 else f"{n} connection attempts"
    if a.close == "refused":
        return ("upstream-refused", f"{what} to {a.server} refused (RST in reply to SYN): nothing listens there",
                frames)
    if a.close == "unanswered":
        syns = sum(int(t.syn_retransmits or 0) + 1 for t in conns)
        return ("upstream-unanswered", f"{what} to {a.server} got no SYN-ACK ({syns} SYNs)", frames)
    return ("unknown", f"the proxy opened conn {int(a.conn)} to {a.server} (it ended {a.close}) but sent no "
                       f"request on it", frames)


def _nothing_tried(c: _Req, proxy_seen: bool, ev: _Evidence, shown) -> tuple[str, str, list]:
    took = dur(c.answered - c.start) if not math.isnan(c.answered) else "?"
    if proxy_seen:
        if c.status == 503:
            return ("no-upstream", f"503 after {took} with no upstream connection and no upstream request: "
                                   f"the proxy tried nothing (no server available, or a limit)", shown)
        return ("unknown", f"{c.status} after {took}, but no upstream connection or request during it is in "
                           f"this capture, although it shows the proxy's upstream side for other requests",
                shown)
    return "unknown", _client_side_only(c, ev, took), shown


def _client_side_only(c: _Req, ev: _Evidence, took: str) -> str:
    reason = ev.reason.get((c.conn, c.response_frame or -1), str(c.status))
    said = [f"{reason} from {c.server} {took} after the request"]
    server = header(c.resp_heads, "server")
    if server:
        said.append(f"Server: {server}")
    via = header(c.resp_heads, "via")
    if via:
        said.append(f"Via: {via}")
    return (f"no connection onward from {c.server} is in this capture (the upstream side was not captured, "
            f"or it made the {c.status} itself), so why it answered {c.status} cannot be seen. The client side "
            f"shows: " + "; ".join(said))


def _write(requests: pd.DataFrame, leg: dict, pairs: dict, causes: dict, tried: dict) -> pd.DataFrame:
    if not leg and not causes:
        return requests
    out = requests.copy()
    cols = {k: out[k].astype("object").where(out[k].notna(), None).tolist()
            for k in ("leg", "parent", "cause", "cause_detail", "cause_frames", "matched_by", "connect_attempts")}
    for row, side in leg.items():
        cols["leg"][row] = side
    for row, (c, how) in pairs.items():
        cols["parent"][row] = c.request
        cols["matched_by"][row] = how
    for row, (cause, text, frames) in causes.items():
        cols["cause"][row] = cause
        cols["cause_detail"][row] = text
        cols["cause_frames"][row] = [int(f) for f in frames if f]
    for row, conns in tried.items():
        cols["connect_attempts"][row] = conns
    from traceviz.model import REQUEST_COLUMNS
    for k, values in cols.items():
        out[k] = pd.Series(values, index=out.index, dtype=REQUEST_COLUMNS[k])
    return out



# -- the proxy's own log -------------------------------------------------------------------

LOG_SLACK = 2.0          # seconds: log times are whole seconds (nginx's error log) or the accept time

# What a proxy's log line says the cause was, as the set of our causes it allows.
_NGINX_SAYS = (
    ("connect() failed (111", {"upstream-refused"}),
    ("while connecting to upstream", {"upstream-unanswered", "upstream-refused"}),
    ("timed out", {"upstream-timeout"}),
    ("prematurely closed", {"upstream-fin", "keepalive-race"}),
    ("reset by peer", {"upstream-rst", "keepalive-race"}),
    ("too big header", {"upstream-header-too-big"}),
    ("upstream sent", {"upstream-invalid-response"}),
    ("no live upstreams", {"no-upstream"}),
)
_HAPROXY_SAYS = {"SC": {"upstream-refused", "upstream-unanswered"}, "sC": {"upstream-unanswered"},
                 "SH": {"upstream-fin", "upstream-rst", "keepalive-race"}, "sH": {"upstream-timeout"},
                 "PH": {"upstream-invalid-response", "upstream-header-too-big"},
                 "SQ": {"no-upstream"}, "sQ": {"no-upstream"}}


def log_causes(line) -> set | None:
    """The causes a log line allows (None: it says nothing about one)."""
    if line.kind == "nginx-error" and line.message:
        for words, causes in _NGINX_SAYS:
            if words in line.message:
                if "timed out" in words and "while connecting" in line.message:
                    return {"upstream-unanswered"}
                return causes
        return None
    if line.kind == "haproxy" and line.termination:
        if line.server and "<NOSRV>" in line.server:
            return {"no-upstream"}
        if line.termination[:2] == "--" and line.status is not None and line.status >= 500:
            return {"upstream-status"}
        return _HAPROXY_SAYS.get(line.termination[:2])
    if line.kind == "nginx-access" and line.status is not None and line.status >= 500 and line.upstream_status:
        last = line.upstream_status[-1]
        if last.isascii() and last.isdigit() and int(last) == line.status and line.status not in (502, 504):
            return {"upstream-status"}
    return None


def match_log(requests: pd.DataFrame, connections: pd.DataFrame, lines) -> dict[int, int]:
    """Log line position -> the request id it is about (client-side requests only).

    A line names the client (address, and its port in haproxy's and some access
    logs) and the request line; its time picks among repeats.  Times without a
    zone (nginx's error log, haproxy's accept date) are shifted by the whole
    quarter-hour that lines them up with the capture best."""
    if not len(requests) or not lines:
        return {}
    leg = requests["leg"].astype("object")
    side = requests[~(leg == "upstream").to_numpy(dtype=bool, na_value=False)]
    ends = connections.set_index("conn")
    pool: dict[tuple, list] = {}
    for r in side.itertuples(index=False):
        if pd.isna(r.conn) or int(r.conn) not in ends.index or r.method is None:
            continue
        e = ends.loc[int(r.conn)]
        stop = max(x for x in (_num(r.end), _num(r.start) + _num(r.ttfb), _num(r.start)) if not math.isnan(x)) \
            if not math.isnan(_num(r.start)) else float("nan")
        pool.setdefault((r.method, path_of(r.url)), []).append(
            (int(r.request), str(e["client"]), _num(e["start"]), stop, _num(r.start)))
    shift = _zone_shift(lines, pool)
    out = {}
    for i, line in enumerate(lines):
        best = None
        for rid, client, opened, stop, start in pool.get((line.method, line.path), []):
            if line.client and not _same_client(line.client, client):
                continue
            if line.time is not None and not math.isnan(start):
                t = line.time + (0.0 if line.zoned else shift)
                if not (opened - LOG_SLACK <= t <= stop + LOG_SLACK):
                    continue
                gap = abs(t - start)
            else:
                gap = 0.0
            if best is None or gap < best[0]:
                best = (gap, rid)
        if best is not None:
            out[i] = best[1]
    return out


def _same_client(logged: str, client: str) -> bool:
    if logged.count(":") == 1 or logged.startswith("["):   # ip:port
        return logged == client
    return logged == _host(client)


def _zone_shift(lines, pool) -> float:
    votes: dict[float, int] = {}
    for line in lines:
        if line.zoned or line.time is None:
            continue
        for _, client, _, _, start in pool.get((line.method, line.path), []):
            if (not line.client or _same_client(line.client, client)) and not math.isnan(start):
                q = round((start - line.time) / 900.0) * 900.0
                votes[q] = votes.get(q, 0) + 1
    if not votes:
        return 0.0
    return max(votes.items(), key=lambda kv: (kv[1], -abs(kv[0])))[0]
