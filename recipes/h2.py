"""Were the HTTP/2 streams really multiplexed, and what held them up?

HTTP/2 sends many requests over one TCP connection at once: each is a
stream, and the frames of different streams take turns on the wire.  This
recipe reads the ``streams`` table and the HTTP/2 rows of ``events`` and
answers, per connection: how many streams were open together and for how
long, whether the server interleaved their DATA or sent one response after
another, and what stopped them -- a flow-control window the receiver let run
dry (``window-stall``), the server's SETTINGS_MAX_CONCURRENT_STREAMS
(``stream-limit``), or a lost TCP segment that held every stream until its
retransmission arrived (``hol-block``/``hol-stall``: TCP head-of-line
blocking, the problem QUIC was built to remove).  It also says what HPACK
saved, and lists resets and GOAWAYs.

``compare`` puts an HTTP/1.1 and an HTTP/2 load of the same page side by side
(``traceviz http-versions H1_FILE H2_FILE``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from traceviz.model import JSON_FIELDS as STABLE_FIELDS
from traceviz.recipe import Finding

NAME = "h2"
TITLE = "HTTP/2 multiplexing"
NEEDS = "HTTP/2 connections whose frames were captured (decrypted with a key log when over TLS)"
FAILS_ON = ("a stream held behind a lost TCP segment (head-of-line blocking), a sender stopped by a flow-control "
            "window, a stream reset with an error, or a GOAWAY with an error")
EXAMPLE = "h2-stalls"
FIGURES = {"multiplex": "one lane per stream over time: DATA frames sized by bytes, resets, the open-stream count, "
                        "and TCP retransmissions as bands across every lane"}

JSON_FIELDS = STABLE_FIELDS["streams"]     # the stable --json fields, in order
TABLE_FIELDS = ["conn", "stream", "method", "url", "status", "resp_bytes", "data_frames", "turns",
                "window_stall_ms", "hol_stall_ms"]
QUIET_RESETS = {"NO_ERROR", "CANCEL"}       # a browser cancelling what it no longer needs is not a fault


def applies(tl) -> bool:
    return tl.streams is not None and len(tl.streams) > 0


def analyze(tl, conn: int | None = None) -> Finding:
    rows = tl.streams
    if conn is not None:
        rows = rows[rows["conn"] == conn]
    rows = rows.reset_index(drop=True)
    finding = Finding(title=TITLE, question=__doc__.split("\n\n")[0], rows=rows, json_fields=JSON_FIELDS,
                      table_fields=TABLE_FIELDS)
    if rows.empty:
        where = f" on connection {conn}" if conn is not None else ""
        finding.answer = [f"No HTTP/2 stream{where} in this file (an HTTP/2 connection over TLS needs its keys: "
                          "--keylog)."]
        return finding
    ev = tl.events
    h2 = ev[(ev["layer"] == "h2") & ev["conn"].isin(rows["conn"].unique())]
    rtts = _rtts(tl)
    answer, problems, summary = [], [], {"connections": int(rows["conn"].nunique()), "streams": int(len(rows))}
    # Each connection's frames found once (a filter of all of them per connection grew with
    # the square of the connections), and its streams on the columns told: each group is a copy.
    frames_of = {c: g for c, g in h2.groupby("conn", sort=False)}
    peaks = concurrency_by_conn(h2)
    for c, st in rows[_TOLD].groupby("conn", sort=True):
        mine = frames_of.get(c, h2.iloc[0:0])
        peak, together = peaks.get(c, (0, 0.0))
        summary.setdefault("max_open", 0)
        summary["max_open"] = max(summary["max_open"], peak)
        answer += _connection_lines(int(c), st, mine, peak, together, rtts.get(int(c)), problems)
    answer.append(hpack_line(rows))
    summary.update(hol_stall_ms=round(float(rows["hol_stall_ms"].sum()), 1),
                   window_stall_ms=round(float(rows["window_stall_ms"].sum()), 1),
                   resets=int(rows["rst_code"].notna().sum()))
    finding.answer, finding.problems, finding.summary = answer, problems, summary
    target = conn if conn is not None else _busiest(rows)
    finding.figures = {"multiplex": lambda theme: _multiplex(tl, target, theme)}
    return finding


# --- per connection -------------------------------------------------------------------------

# The streams' columns the lines of a connection read.
_TOLD = ["conn", "stream", "opened", "stream_limit", "resp_bytes", "turns", "turn_bytes", "turn_gap_ms",
         "rst_code", "rst_by"]


def concurrency(h2: pd.DataFrame) -> tuple[int, float]:
    """The most streams open at once and how long, in all, that many were open
    (read from the ``open_streams`` column of the HTTP/2 frame rows)."""
    if "open_streams" not in h2.columns:
        return 0, 0.0
    steps = h2[h2["open_streams"].notna()].sort_values(["ts", "frame"], kind="stable")
    return _peak(steps["open_streams"].astype(int).tolist(), steps["ts"].tolist())


def concurrency_by_conn(h2: pd.DataFrame) -> dict:
    """``concurrency`` of each connection's frames, all at once: one sort by (connection, time,
    frame), then plain lists (a filter and a sort per connection took a second on 637)."""
    if "open_streams" not in h2.columns:
        return {}
    steps = h2[h2["open_streams"].notna()].sort_values(["conn", "ts", "frame"], kind="stable")
    runs: dict = {}
    for c, n, t in zip(steps["conn"].tolist(), steps["open_streams"].astype(int).tolist(), steps["ts"].tolist()):
        counts, times = runs.setdefault(c, ([], []))
        counts.append(n)
        times.append(t)
    return {c: _peak(counts, times) for c, (counts, times) in runs.items()}


def _peak(counts: list[int], times: list[float]) -> tuple[int, float]:
    if not counts:
        return 0, 0.0
    peak = max(counts)
    return peak, sum(t1 - t0 for n, t0, t1 in zip(counts, times, times[1:]) if n == peak)


def _connection_lines(c, st, h2, peak, together, rtt, problems) -> list[str]:
    lines = []
    used = int(st["opened"].notna().sum())
    limit = st["stream_limit"].dropna()
    allowed = f" (the server allowed {int(limit.iloc[-1])})" if len(limit) else ""
    lines.append(f"Connection {c}: {used} stream{_s(used)}; up to {peak} were open together"
                 + (f", for {_secs(together)}" if peak > 1 and together > 0 else "") + allowed + ".")
    lines += _interleaving(st)
    kinds = set(h2["kind"].tolist())        # most connections have none of the kinds below: skip their filters
    for r in (h2[h2["kind"] == "stream-limit"].itertuples() if "stream-limit" in kinds else ()):
        dur = getattr(r, "duration", float("nan"))
        lines.append(f"Connection {c}: the client reached the server's limit of {int(r.size)} open streams"
                     + (f" for {_secs(dur)}" if dur == dur else " until the capture ended")
                     + ": new requests had to wait for a stream to close.")
    for r in (h2[h2["kind"] == "hol-block"].itertuples() if "hol-block" in kinds else ()):
        line = _hol_line(c, r, h2, rtt)
        lines.append(line)
        problems.append(line)
    for line in (_window_lines(c, h2, rtt) if "window-stall" in kinds else ()):
        lines.append(line)
        problems.append(line)
    for r in (st[st["rst_code"].notna()].itertuples() if st["rst_code"].notna().any() else ()):
        line = f"Connection {c}: stream {r.stream} was reset by the {r.rst_by} ({r.rst_code})."
        lines.append(line)
        if r.rst_code not in QUIET_RESETS:
            problems.append(line)
    for r in (h2[h2["kind"] == "GOAWAY"].itertuples() if "GOAWAY" in kinds else ()):
        detail = str(r.detail or "")
        who = "client" if r.dir == "c2s" else "server"
        line = f"Connection {c}: the {who} sent GOAWAY ({detail}) in frame {r.frame}."
        if "NO_ERROR" not in detail:
            lines.append(line)
            problems.append(line)
    return lines


def _interleaving(st: pd.DataFrame) -> list[str]:
    """Did the server's DATA frames take turns between streams?  Read from ``turns``.  (Arrays,
    not filtered frames: this runs once per connection.)"""
    sent = st["resp_bytes"].to_numpy(dtype=float, na_value=0) > 0
    if sent.sum() < 2:
        return []
    turns = st["turns"].to_numpy(dtype=float, na_value=np.nan)
    shared = sent & (turns > 1)
    if not shared.any():
        return [f"The server sent the {int(sent.sum())} responses one after another, each in one go: "
                "no interleaving."]
    size = _median(st["turn_bytes"].to_numpy(dtype=float, na_value=np.nan)[shared])
    gap = _median(st["turn_gap_ms"].to_numpy(dtype=float, na_value=np.nan)[shared])
    line = (f"The server interleaved {int(shared.sum())} of the {int(sent.sum())} responses: each came in about "
            f"{int(_median(turns[shared]))} turns of {_kb(size)}")
    if gap == gap:
        line += f", {_secs(gap / 1000)} apart"
    return [line + ", taking turns with the other streams rather than waiting for them."]


def _median(values: np.ndarray) -> float:
    """The median of the known values (NaN: none), as pandas' ``median`` gives it."""
    known = values[~np.isnan(values)]
    return float(np.median(known)) if len(known) else float("nan")


def _hol_line(c, block, h2, rtt) -> str:
    stalls = h2[(h2["kind"] == "hol-stall") & (h2["frame"] == block.frame)]
    waits = stalls["duration"].astype(float) if len(stalls) else pd.Series([], dtype=float)
    lost = [int(s) for s, d in zip(stalls["stream"], stalls["detail"]) if "own bytes" in str(d)]
    held = [int(s) for s in stalls["stream"] if int(s) not in lost]
    dur = float(block.duration)
    line = (f"Connection {c}: a lost TCP segment held {len(stalls)} stream{_s(len(stalls))} for up to "
            f"{_ms(dur)}{_in_rtts(dur, rtt)} until its retransmission (frame {block.frame})")
    if lost:
        line += f"; stream{_s(len(lost))} {_list(lost)} had {'its' if len(lost) == 1 else 'their'} own bytes in it"
    if held:
        line += (f"; stream{_s(len(held))} {_list(held)} had {'its' if len(held) == 1 else 'their'} data in hand "
                 f"and waited {_range_ms(waits)} behind it")
    return line + " (TCP head-of-line blocking)."


def _window_lines(c, h2, rtt) -> list[str]:
    stalls = h2[(h2["kind"] == "window-stall")]
    out = []
    for (d, sid), g in stalls.groupby(["dir", "stream"], sort=True):
        sender, owner = ("server", "client") if d == "s2c" else ("client", "server")
        window = int(g["size"].iloc[0])
        scope = "connection window" if int(sid) == 0 else f"{_kb(window)} window"
        times = g["duration"].dropna().astype(float)
        where = "the connection" if int(sid) == 0 else f"stream {int(sid)}"
        line = (f"Connection {c}: the {owner}'s {scope} stopped the {sender} on {where} "
                f"{_times(len(g))}")
        if len(times):
            line += f", for {_range_ms(times)}{_in_rtts(float(times.median()), rtt)}"
        if len(times) < len(g):
            line += "; it was still waiting when the capture ended"
        out.append(line + " (flow control).")
    return out


def hpack_line(rows: pd.DataFrame) -> str:
    wire = int(rows["req_header_bytes"].sum() + rows["resp_header_bytes"].sum())
    text = int(rows["req_header_size"].sum() + rows["resp_header_size"].sum())
    if not text:
        return "HPACK: no header block could be decoded."
    line = (f"HPACK: {_kb(wire)} of header blocks on the wire carried {_kb(text)} of header names and values "
            f"({100 * wire / text:.0f}%)")
    later = rows[rows["opened"] > rows["opened"].min()] if rows["opened"].notna().any() else rows.iloc[0:0]
    fields, dynamic = int(later["hpack_fields"].sum()), int(later["hpack_dynamic"].sum())
    if fields:
        line += (f"; after the first stream, {dynamic} of {fields} header fields ({100 * dynamic / fields:.0f}%) "
                 "were one-byte references to the dynamic table")
    return line + "."


# --- figures --------------------------------------------------------------------------------------

def _busiest(rows: pd.DataFrame) -> int:
    return int(rows.groupby("conn")["stream"].count().idxmax())


def _multiplex(tl, conn, theme):
    from traceviz.charts.multiplex import multiplex
    return multiplex(tl.streams, tl.events, conn, theme=theme)


# --- HTTP/1.1 against HTTP/2 --------------------------------------------------------------------------

COMPARE_FIELDS = ["file", "label", "protocols", "requests", "connections", "tcp_handshakes", "tls_handshakes",
                  "handshakes", "time_to_last_byte", "header_bytes", "body_bytes", "max_open"]


def page_facts(tl, label: str | None = None) -> dict:
    """What a page load cost over its HTTP version: connections, handshakes paid, time to
    the last byte (from the first SYN), header bytes on the wire (HTTP/1.1 head text; HTTP/2
    HPACK blocks)."""
    rq = tl.requests
    conns = rq["conn"].dropna().astype(int).unique().tolist() if len(rq) else []
    cx = tl.connections[tl.connections["conn"].isin(conns)]
    protocols = sorted({str(p) for p in rq["protocol"].dropna()}) if len(rq) else []
    syn = cx["syn"].dropna()
    first = float(syn.min()) if len(syn) else (float(rq["start"].min()) if len(rq) else float("nan"))
    tcp = int(cx["syn"].notna().sum())
    tls_n = int(tl.tls["conn"].isin(conns).sum()) if len(tl.tls) else 0
    ev = tl.events
    h1_heads = ev[(ev["layer"] == "http") & ev["kind"].isin(["request", "response"]) & ev["conn"].isin(conns)]
    st = tl.streams[tl.streams["conn"].isin(conns)] if len(tl.streams) else tl.streams
    header_bytes = int(h1_heads["size"].fillna(0).sum())
    if len(st):
        header_bytes += int(st["req_header_bytes"].sum() + st["resp_header_bytes"].sum())
    mine = ev[(ev["layer"] == "h2").to_numpy(dtype=bool, na_value=False) & ev["conn"].isin(conns).to_numpy(
        dtype=bool, na_value=False)]
    peak = max((p for p, _ in concurrency_by_conn(mine).values()), default=0)
    name = label or ("HTTP/2" if "h2" in protocols else "HTTP/1.1" if any(p.startswith("http/1") for p in protocols)
                     else ", ".join(protocols) or "no HTTP")
    return {"file": tl.source.path, "label": name, "protocols": protocols, "requests": int(len(rq)),
            "connections": len(conns), "tcp_handshakes": tcp, "tls_handshakes": tls_n, "handshakes": tcp + tls_n,
            "time_to_last_byte": float(rq["end"].max()) - first if len(rq) else float("nan"),
            "header_bytes": header_bytes, "body_bytes": int(rq["resp_bytes"].fillna(0).sum()),
            "max_open": peak or None}


def compare(timelines: list) -> Finding:
    """The same page loaded over different HTTP versions, side by side."""
    facts = [page_facts(tl) for tl in timelines]
    labels = [f["label"] for f in facts]
    for f in facts:
        if labels.count(f["label"]) > 1:          # two files of one version: tell them apart by name
            f["label"] = f"{f['label']} ({f['file'].rsplit('/', 1)[-1]})"
    answer = [f"{f['label']}: {f['requests']} requests over {f['connections']} connection{_s(f['connections'])}, "
              f"{f['tcp_handshakes']} TCP and {f['tls_handshakes']} TLS handshake{_s(f['tls_handshakes'])}; "
              f"last byte {_secs(f['time_to_last_byte'])} after the first SYN; {_kb(f['header_bytes'])} of headers"
              for f in facts]
    if len(facts) == 2 and all(f["requests"] for f in facts):
        a, b = facts
        if a["connections"] != b["connections"]:
            more, fewer = (a, b) if a["connections"] > b["connections"] else (b, a)
            answer.append(f"{fewer['label']} needed {more['connections'] - fewer['connections']} fewer connection"
                          f"{_s(more['connections'] - fewer['connections'])} and "
                          f"{more['handshakes'] - fewer['handshakes']} fewer handshakes for the same "
                          f"{fewer['requests']} requests.")
        if a["header_bytes"] and b["header_bytes"]:
            small, big = sorted((a, b), key=lambda f: f["header_bytes"])
            answer.append(f"{small['label']} sent {100 * (1 - small['header_bytes'] / big['header_bytes']):.0f}% "
                          f"fewer header bytes than {big['label']}.")
    rows = pd.DataFrame(facts, columns=COMPARE_FIELDS)
    lanes = [_lanes(tl) for tl in timelines]
    return Finding(title="HTTP/1.1 and HTTP/2, side by side", question="What did each HTTP version cost for the "
                   "same page: connections, handshakes, time, header bytes?", rows=rows, answer=answer,
                   json_fields=COMPARE_FIELDS, table_fields=COMPARE_FIELDS[1:],
                   figures={"versions": lambda theme: _versions(facts, lanes, theme)})


def _lanes(tl) -> pd.DataFrame:
    """Each request on its lane: its connection (HTTP/1.x) or its stream (HTTP/2)."""
    rq = tl.requests
    if rq.empty:
        return pd.DataFrame(columns=["lane", "start", "end", "url", "t0"])
    syn = tl.connections["syn"].dropna()
    t0 = float(syn.min()) if len(syn) else float(rq["start"].min())
    one = rq["conn"].nunique() == 1
    lane = [(f"stream {int(s)}" if one else f"c{int(c)} s{int(s)}") if p == "h2" and s == s else f"conn {int(c)}"
            for c, s, p in zip(rq["conn"].fillna(-1), rq["stream"].astype("Float64").fillna(float("nan")),
                               rq["protocol"])]
    return pd.DataFrame({"lane": lane, "start": rq["start"], "end": rq["end"], "url": rq["url"], "t0": t0})


def _versions(facts, lanes, theme):
    from traceviz.charts.multiplex import versions
    return versions(facts, lanes, theme=theme)


# --- words ----------------------------------------------------------------------------------------

def _rtts(tl) -> dict[int, float]:
    c = tl.connections
    ok = c[c["handshake_rtt"].notna()] if "handshake_rtt" in c else c.iloc[0:0]
    return {int(k): float(v) for k, v in zip(ok["conn"], ok["handshake_rtt"])}


def _s(n) -> str:
    return "" if n == 1 else "s"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _secs(seconds: float) -> str:
    if seconds != seconds:
        return "an unknown time"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def _range_ms(values: pd.Series) -> str:
    lo, hi = float(values.min()), float(values.max())
    return _ms(hi) if abs(hi - lo) < 0.0005 else f"{lo * 1000:.1f}–{hi * 1000:.1f} ms"


def _in_rtts(seconds: float, rtt: float | None) -> str:
    if not rtt or rtt < 0.001 or seconds != seconds:
        return ""
    n = seconds / rtt
    return f" (about {n:.1f} round trip{'' if round(n, 1) == 1 else 's'})"


def _kb(n: float) -> str:
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{int(n)} bytes"


def _list(ids: list[int]) -> str:
    ids = sorted(ids)
    return ", ".join(map(str, ids[:-1])) + f" and {ids[-1]}" if len(ids) > 1 else str(ids[0])


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
