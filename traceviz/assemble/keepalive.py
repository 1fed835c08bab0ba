"""Keep-alive facts per connection, and the keep-alive race.

A persistent HTTP/1.1 connection carries several exchanges with silences
between them; one side ends it, usually the server when its idle timer runs
out.  For every connection that carried HTTP (and the others to the same
servers, and any with TCP keep-alive probes) this fills the ``connections``
columns ``http_requests``, ``idle_first``, ``idle_gaps``, ``idle_close``,
``close_frame``, ``conn_close``, ``pipelined``, ``ka_*`` and ``idle_sibling``.

The keep-alive race: a client (or a proxy, on its pooled upstream
connection) writes a request on an idle connection at the moment the server
closes it.  The server's FIN then acknowledges none of the request's bytes
-- it left before they arrived -- and the request is answered by a RST, not
a response.  Such a request gets ``cause = "keepalive-race"``, with its
frames and the words.

Everything here reads the tables already built (requests, events) and the
packets of the few connections involved; a capture without HTTP and without
keep-alive probes costs nothing.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from traceviz.model import CONNECTION_COLUMNS, conform, missing

FIN, RST = 0x01, 0x04
RETRY_WINDOW = 60.0      # seconds: the same request sent again this soon counts as a retry
KA_KINDS = ("keep-alive", "keep-alive-ack")
MAX_SIBLING_SCAN = 64    # open connections looked at for an idle one when a new one opens


def dur(seconds: float) -> str:
    """Seconds in words for the cause texts (the charts' formatter lives a layer up)."""
    ms = seconds * 1000.0
    if abs(ms) >= 10000:
        return f"{seconds:.1f} s"
    return f"{ms:.0f} ms" if abs(ms) >= 10 else f"{ms:.1f} ms"


# -- the packets of a few connections ---------------------------------------------------

@dataclass(frozen=True)
class Segments:
    """One connection's packets in capture order, as numpy columns.
    Fields: frame, ts, c2s (bool), flags (TCP flag bits), seq, ack (relative; -1 unknown), len,
    closing (row of its first FIN or RST, -1 if none)."""

    frame: np.ndarray
    ts: np.ndarray
    c2s: np.ndarray
    flags: np.ndarray
    seq: np.ndarray
    ack: np.ndarray
    len: np.ndarray
    closing: int = -1        # row of the first FIN or RST, -1: none

    def first(self, mask: np.ndarray, after_frame: int = 0) -> int | None:
        """Row of the first packet matching ``mask`` past ``after_frame`` (None: none)."""
        hit = np.flatnonzero(mask & (self.frame > after_frame))
        return int(hit[0]) if len(hit) else None

    def close_row(self, c2s: bool | None = None) -> int | None:
        """The first FIN or RST (from one side, or either)."""
        if c2s is None:
            return None if self.closing < 0 else self.closing
        mask = (self.flags & (FIN | RST)) != 0
        if c2s is not None:
            mask &= self.c2s == c2s
        return self.first(mask)

    def last_payload_ts(self, before_frame: int | None = None) -> float | None:
        mask = self.len > 0
        if before_frame is not None:
            mask &= self.frame < before_frame
        hit = np.flatnonzero(mask)
        return float(self.ts[hit[-1]]) if len(hit) else None

    def row_of(self, frame) -> int | None:
        hit = np.flatnonzero(self.frame == frame)
        return int(hit[0]) if len(hit) else None


_SEGMENT_COLUMNS = ("frame", "ts", "dir", "flag_bits", "seq", "ack", "len")


def segments(packets: pd.DataFrame, conns) -> dict[int, Segments]:
    """The packets of ``conns`` (a few connections of a possibly huge capture), per connection."""
    conns = sorted({int(c) for c in conns})
    if not conns or not len(packets):
        return {}
    conn = packets["conn"].to_numpy(dtype=np.int64, na_value=-1)
    rows = np.flatnonzero(np.isin(conn, conns))
    if not len(rows):
        return {}
    # the columns read, then the rows: taking the rows of every column copied ~25 of them
    sub = packets[[c for c in _SEGMENT_COLUMNS if c in packets.columns]].iloc[rows]
    cols = {
        "conn": conn[rows],
        "frame": sub["frame"].to_numpy(dtype=np.int64),
        "ts": sub["ts"].to_numpy(dtype=np.float64),
        "c2s": (sub["dir"] == "c2s").to_numpy(dtype=bool, na_value=False),     # a category's codes compared
        "flags": _ints(sub["flag_bits"] if "flag_bits" in sub.columns else None, len(sub), 0),
        "seq": _ints(sub["seq"], len(sub), -1),
        "ack": _ints(sub["ack"], len(sub), -1),
        "len": _ints(sub["len"], len(sub), 0),
    }
    order = np.argsort(cols["conn"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    starts = np.concatenate(([0], np.flatnonzero(np.diff(cols["conn"])) + 1))
    ends = np.append(starts[1:], len(order))
    # the first FIN/RST of every connection at once: its position, or the group's end when none
    closing = np.where((cols["flags"] & (FIN | RST)) != 0, np.arange(len(order)), len(order))
    first_close = np.minimum.reduceat(closing, starts) - starts
    out = {}
    for a, b, fc in zip(starts.tolist(), ends.tolist(), first_close.tolist()):
        out[int(cols["conn"][a])] = Segments(*(cols[k][a:b] for k in ("frame", "ts", "c2s", "flags", "seq", "ack",
                                                                          "len")), closing=fc if fc < b - a else -1)
    return out


def _ints(series, n: int, missing: int) -> np.ndarray:
    if series is None:
        return np.full(n, missing, dtype=np.int64)
    return series.to_numpy(dtype=np.int64, na_value=missing)


# -- message heads -------------------------------------------------------------------------

def http1_heads(results: dict, names=None) -> dict[tuple[int, int], tuple]:
    """(conn, first frame of a message) -> its headers, for every HTTP/1.x request and response
    of the payload tier's results (``{conn: decode.streams.StreamResult}``).

    The frame is the ``request_frame`` / ``response_frame`` of the requests table.  With
    ``names`` (lower case), only the headers of those names are kept, and a message with none
    of them is left out: an absent message reads as one without headers.
    """
    from traceviz.decode.http import http1
    from traceviz.decode.http.upgrade import UpgradeConnection

    wanted = None if names is None else frozenset(names)
    out: dict[tuple[int, int], tuple] = {}
    for conn, result in results.items():
        machine = result.http
        if isinstance(machine, UpgradeConnection):
            machine = machine.http1
        if not isinstance(machine, http1.HTTP1Connection):
            continue
        for ev in machine.events:
            if isinstance(ev, (http1.Request, http1.Response)):
                kept = ev.headers if wanted is None else tuple(h for h in ev.headers if h[0].lower() in wanted)
                if kept or wanted is None:
                    out.setdefault((int(conn), int(ev.frame)), kept)
    return out


def header(headers, name: str) -> str | None:
    """A header's value (the first of that name), None if absent."""
    if not headers:
        return None
    name, n = name.lower(), len(name)
    for k, v in headers:
        if len(k) == n and k.lower() == name:      # lengths first: most names differ there
            return v
    return None


def asks_close(headers) -> bool:
    value = header(headers, "connection")
    return value is not None and "close" in {t.strip().lower() for t in value.split(",")}


# -- connection facts ----------------------------------------------------------------------

def subjects(connections: pd.DataFrame, requests: pd.DataFrame, events: pd.DataFrame) -> tuple[set, pd.DataFrame]:
    """(the connections whose keep-alive facts are worth computing, the keep-alive events)."""
    ka = _ka_events(events)
    if not len(requests) and not len(ka):
        return set(), ka
    with_requests = set(requests["conn"].dropna().astype(int).tolist())
    tcp = connections[connections["transport"] == "tcp"]
    servers = set(tcp.loc[tcp["conn"].isin(with_requests), "server"].tolist())
    family = set(tcp.loc[tcp["server"].isin(servers), "conn"].astype(int).tolist())
    return family | with_requests | set(ka["conn"].dropna().astype(int).tolist()), ka


def _ka_events(events: pd.DataFrame) -> pd.DataFrame:
    if not len(events):
        return events
    kind = events["kind"].to_numpy()
    hit = (kind == KA_KINDS[0]) | (kind == KA_KINDS[1])   # numpy on the object column: 3x pandas' isin
    return events[hit] if hit.any() else events.iloc[:0]


@dataclass(frozen=True)
class Exchange:
    """One request of a connection, as the keep-alive facts need it.  Fields: start, end
    (NaN: no complete response), http1 (HTTP/1.x), request_frame, response_frame (None: none)."""

    start: float
    end: float
    http1: bool
    request_frame: int | None
    response_frame: int | None


def exchanges_by_conn(requests: pd.DataFrame) -> dict[int, list[Exchange]]:
    """Each connection's requests in start order, as plain Python (thousands of small groups
    cost seconds as pandas objects, milliseconds as lists)."""
    if not len(requests):
        return {}
    cols = [requests[c].tolist() if c in requests.columns else [None] * len(requests)
            for c in ("conn", "start", "end", "protocol", "request_frame", "response_frame")]
    out: dict[int, list[Exchange]] = {}
    for conn, start, end, proto, rf, sf in zip(*cols):
        if missing(conn):
            continue
        out.setdefault(int(conn), []).append(Exchange(
            float("nan") if missing(start) else float(start), float("nan") if missing(end) else float(end),
            isinstance(proto, str) and proto.startswith("http/1"),
            None if missing(rf) else int(rf), None if missing(sf) else int(sf)))
    for v in out.values():
        v.sort(key=lambda e: (math.isnan(e.start), e.start))
    return out


def connection_facts(connections: pd.DataFrame, requests: pd.DataFrame,
                     ka: pd.DataFrame, segs: dict[int, Segments], heads: dict) -> pd.DataFrame:
    """``connections`` with the keep-alive columns filled for the connections in ``segs``."""
    if not len(connections) or not segs:
        return connections
    out = connections.copy(deep=False)     # copy-on-write: only the columns set below are new
    conns = out["conn"].tolist()
    pos = {int(c): i for i, c in enumerate(conns)}
    ack = dict(zip(conns, out["ack"].tolist()))
    used = dict(zip(conns, (out["bytes_c2s"].fillna(0) + out["bytes_s2c"].fillna(0)).tolist()))
    by_conn = exchanges_by_conn(requests)
    cols = {k: {} for k in ("http_requests", "idle_first", "idle_gaps", "idle_close", "close_frame",
                            "conn_close", "pipelined", "ka_probes", "ka_answered", "ka_idle",
                            "ka_interval", "ka_by", "idle_sibling")}
    for conn, seg in segs.items():
        if conn not in pos:
            continue
        handshake = None if missing(ack[conn]) else float(ack[conn])
        _exchange_facts(cols, conn, handshake, used[conn], by_conn.get(conn), heads)
        _close_facts(cols, conn, handshake, seg)
    _probe_facts(cols, ka, segs)
    _siblings(cols, out, by_conn, segs)
    for col, values in cols.items():
        if values:
            current = out[col].astype(object).where(out[col].notna(), None).tolist()
            for conn, v in values.items():
                if conn in pos:
                    current[pos[conn]] = v
            out[col] = pd.Series(current, index=out.index, dtype=CONNECTION_COLUMNS[col])
    return conform("connections", out)


def _exchange_facts(cols, conn, handshake, used, rq: list[Exchange] | None, heads) -> None:
    if not rq:
        if not used and handshake is not None:
            cols["http_requests"][conn] = 0
        return
    cols["http_requests"][conn] = len(rq)
    if handshake is not None and not math.isnan(rq[0].start):
        cols["idle_first"][conn] = max(0.0, rq[0].start - handshake)
    pairs = [(a.end, b.start) for a, b in zip(rq, rq[1:]) if not math.isnan(a.end) and not math.isnan(b.start)]
    cols["idle_gaps"][conn] = [b - a for a, b in pairs if b >= a]
    if any(e.http1 for e in rq):
        cols["pipelined"][conn] = sum(1 for a, b in pairs if b < a)
    client = any(asks_close(heads.get((conn, e.request_frame))) for e in rq if e.request_frame is not None)
    server = any(asks_close(heads.get((conn, e.response_frame))) for e in rq if e.response_frame is not None)
    if client or server:
        cols["conn_close"][conn] = "both" if client and server else ("client" if client else "server")


def _close_facts(cols, conn, handshake, seg: Segments) -> None:
    r = seg.close_row()
    if r is None:
        return
    cols["close_frame"][conn] = int(seg.frame[r])
    last = closer_idle_from(seg, r)
    if last is None:
        last = handshake
    if last is not None:
        cols["idle_close"][conn] = max(0.0, float(seg.ts[r]) - last)


def closer_idle_from(seg: Segments, r: int) -> float | None:
    """When the side closing at row ``r`` last saw the connection busy: its own last payload
    or the last bytes of the peer its close acknowledges.  A request crossing the close (the
    keep-alive race) is not counted: the closer never saw it."""
    before = seg.frame < seg.frame[r]
    own = before & (seg.len > 0) & (seg.c2s == seg.c2s[r])
    peer = before & (seg.len > 0) & (seg.c2s != seg.c2s[r])
    if seg.ack[r] >= 0:
        peer &= seg.seq + seg.len <= seg.ack[r]
    hit = np.flatnonzero(own | peer)
    return float(seg.ts[hit].max()) if len(hit) else None


def _probe_facts(cols, ka: pd.DataFrame, segs) -> None:
    if not len(ka):
        return
    for conn, g in ka.groupby("conn"):
        conn = int(conn)
        probes = g[g["kind"] == "keep-alive"].sort_values("ts")
        if not len(probes):
            continue
        cols["ka_probes"][conn] = len(probes)
        cols["ka_answered"][conn] = min(len(probes), int((g["kind"] == "keep-alive-ack").sum()))
        ts = probes["ts"].to_numpy(dtype=float)
        if len(ts) > 1:
            cols["ka_interval"][conn] = float(np.median(np.diff(ts)))
        by = probes["dir"].astype("object").iloc[0]
        cols["ka_by"][conn] = {"c2s": "client", "s2c": "server"}.get(by)
        seg = segs.get(conn)
        first_frame = probes["frame"].dropna()
        if seg is not None and len(first_frame):
            last = seg.last_payload_ts(int(first_frame.iloc[0]))
            if last is not None:
                cols["ka_idle"][conn] = float(ts[0] - last)


def _siblings(cols, conns: pd.DataFrame, by_conn, segs) -> None:
    """A connection opened while another one to the same server, from the same client host,
    had finished its handshake, was not closing, and had no exchange in flight.

    One sweep per server in SYN order over the connections still open (a heap of close
    times): the work grows with how many are open at once, not with all of them squared."""
    rows = conns[conns["conn"].isin(list(segs)) & conns["syn"].notna()].sort_values("syn", kind="stable")
    by_server: dict = {}
    for row in zip(*(rows[k].tolist() for k in ("server", "conn", "client", "syn", "ack"))):
        by_server.setdefault(row[0], []).append(row[1:])
    for grp in by_server.values():
        if len(grp) < 2:
            continue
        closing: list[tuple[float, int]] = []
        open_now: dict[int, tuple[str, float | None]] = {}     # oldest first
        for x, client, syn, ack in grp:
            t, host = float(syn), _host(client)
            while closing and closing[0][0] <= t:
                open_now.pop(heapq.heappop(closing)[1], None)
            for seen, (y, (y_host, y_ack)) in enumerate(open_now.items()):
                if seen >= MAX_SIBLING_SCAN:
                    break
                if y_host == host and y_ack is not None and y_ack < t and not _busy(by_conn.get(y, []), t):
                    cols["idle_sibling"][int(x)] = y
                    break
            seg = segs.get(int(x))
            close = seg.close_row() if seg is not None else None
            heapq.heappush(closing, (float(seg.ts[close]) if close is not None else math.inf, int(x)))
            open_now[int(x)] = (host, None if missing(ack) else float(ack))


def _busy(rq: list[Exchange], t: float) -> bool:
    return any(e.start <= t and (math.isnan(e.end) or e.end >= t) for e in rq)


def _host(endpoint) -> str:
    text = str(endpoint)
    return text.rpartition(":")[0].strip("[]") or text


# -- the race ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Race:
    """A request written on a connection the server was closing.  Fields: request, conn,
    frames (request, the server's FIN/RST, the RSTs that answered the request), idle (seconds
    the connection sat idle before the request), server_idle (the server's idle time when it
    closed: its idle timeout), lead (seconds from the request to the close; negative: the close
    had arrived first), retry (request id of the same request sent again, or None), detail."""

    request: int
    conn: int
    frames: tuple
    idle: float | None
    server_idle: float | None
    lead: float
    retry: int | None
    detail: str


def races(requests: pd.DataFrame, connections: pd.DataFrame, segs: dict[int, Segments]) -> list[Race]:
    """Requests without a response whose connection the server closed under them."""
    if not len(requests) or not segs:
        return []
    lost = requests[requests["status"].isna() & requests["conn"].notna() & requests["request_frame"].notna()] \
        if "request_frame" in requests.columns else requests.iloc[:0]
    if not len(lost):
        return []
    conns = connections.set_index("conn")
    out = []
    for r in lost.itertuples(index=False):
        race = _race(r, requests, conns, segs.get(int(r.conn)))
        if race is not None:
            out.append(race)
    return out


def _race(r, requests, conns, seg: Segments | None) -> Race | None:
    if seg is None:
        return None
    req_row = seg.row_of(int(r.request_frame))
    close = seg.close_row(c2s=False)
    if req_row is None or close is None:
        return None
    req_seq = int(seg.seq[req_row])
    close_ts, close_frame = float(seg.ts[close]), int(seg.frame[close])
    ack = int(seg.ack[close])
    crossed = 0 <= ack <= req_seq if ack >= 0 else _too_soon(r, conns, close_ts)
    if not crossed:
        return None
    before = requests[(requests["conn"] == r.conn) & (requests["start"] < r.start)]
    prev_end = before["end"].max() if len(before) else None
    if prev_end is None or pd.isna(prev_end):
        ack_ts = conns.at[r.conn, "ack"] if r.conn in conns.index else None
        prev_end = None if ack_ts is None or pd.isna(ack_ts) else float(ack_ts)
    idle = float(r.start - prev_end) if prev_end is not None else None
    last = closer_idle_from(seg, close)
    server_idle = close_ts - last if last is not None else None
    rsts = [int(f) for f in seg.frame[(~seg.c2s) & ((seg.flags & RST) != 0) & (seg.frame > int(r.request_frame))]]
    frames = tuple(dict.fromkeys([int(r.request_frame), close_frame] + rsts[:2]))
    retry = _retry(r, requests, conns)
    lead = close_ts - float(r.start)
    return Race(int(r.request), int(r.conn), frames, idle, server_idle, lead, retry,
                _race_words(r, idle, server_idle, lead, close, seg, retry, requests, frames))


def _too_soon(r, conns, close_ts: float) -> bool:
    """Without an ACK to read (a bare RST): the close came sooner after the request than a round
    trip to the server, so it left before the request arrived."""
    rtt = conns.at[r.conn, "rtt_server"] if r.conn in conns.index and "rtt_server" in conns.columns else None
    if rtt is None or pd.isna(rtt) or rtt <= 0:
        return False
    return close_ts - float(r.start) < 0.75 * float(rtt)


def _retry(r, requests, conns) -> int | None:
    if r.conn not in conns.index:
        return None
    me = conns.loc[r.conn]
    later = requests[(requests["conn"] != r.conn) & (requests["method"] == r.method) & (requests["url"] == r.url)
                     & (requests["start"] > r.start) & (requests["start"] <= r.start + RETRY_WINDOW)]
    for x in later.sort_values("start").itertuples(index=False):
        if x.conn in conns.index:
            other = conns.loc[x.conn]
            if other["server"] == me["server"] and _host(other["client"]) == _host(me["client"]):
                return int(x.request)
    return None


def _race_words(r, idle, server_idle, lead, close, seg, retry, requests, frames) -> str:
    kind = "FIN" if seg.flags[close] & FIN else "RST"
    frame = int(seg.frame[close])
    text = f"{r.method} sent on conn {r.conn}"
    if idle is not None:
        text += f" after {dur(idle)} idle"
    if lead >= 0:
        text += (f"; the server's {kind} (frame {frame}) came {dur(lead)} later and acknowledges none of "
                 f"the request: it was sent before the request arrived")
    else:
        text += (f"; the server's {kind} (frame {frame}) had arrived {dur(-lead)} before: the request was "
                 f"written on a connection the server had already closed")
    if server_idle is not None:
        text += f". The server closed it after {dur(server_idle)} idle (its keep-alive timeout)"
    if len(frames) > 2:
        text += f"; RST (frame {frames[2]}) answered the request's bytes"
    if retry is not None:
        again = requests[requests["request"] == retry].iloc[0]
        status = "no response" if pd.isna(again["status"]) else f"status {int(again['status'])}"
        text += f". Sent again on conn {int(again['conn'])}: {status}"
    return text + "."


def mark_races(requests: pd.DataFrame, found: list[Race]) -> pd.DataFrame:
    """``requests`` with cause, cause_detail and cause_frames set for each race."""
    if not found:
        return requests
    out = requests.copy()
    for col in ("cause", "cause_detail", "cause_frames"):
        out[col] = out[col].astype("object")
    at = {int(q): i for i, q in zip(out.index, out["request"])}
    for race in found:
        i = at[race.request]
        out.at[i, "cause"] = "keepalive-race"
        out.at[i, "cause_detail"] = race.detail
        out.at[i, "cause_frames"] = list(race.frames)
    return out
