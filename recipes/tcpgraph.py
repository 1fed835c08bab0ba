"""Why is this transfer slow: the receive window, the network, or the application?

The TCP stream graphs of one direction of a connection, as tcptrace and
Wireshark's TCP Stream Graphs draw them (``--figure``: ``seq``, the
Stevens time-sequence graph with the ACK line, the receive-window edge,
SACK blocks, retransmissions and out-of-order segments; ``throughput``;
``rtt``; ``window``, the advertised window against bytes in flight), and a
verdict on what held the sender back:

- the receive window, when the bytes in flight filled what the receiver
  advertised (Wireshark's window-full) or the receiver closed its window;
- congestion, when segments were lost and resent;
- the application, when everything sent was acknowledged and the sender
  still sent nothing for longer than a few round trips.

One row per direction that carried data, busiest first; the figures show
the busiest (or ``--conn N``'s).  Bytes in flight and RTT samples are the
TCP tier's (Wireshark's tcp.analysis.bytes_in_flight and ack_rtt; samples
Karn's rule rejects are kept apart).

    python recipes/tcpgraph.py capture.pcap [--conn N] [--figure seq|throughput|rtt|window] [--chart g.html]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from traceviz.errors import InputError
from traceviz.recipe import Finding

NAME = "tcpgraph"
NEEDS = ("TCP connections that carried data, in a packet capture loaded with their bytes in flight and RTT samples "
         "(measure_tcp=True, as its command and the report load it)")
FAILS_ON = "a direction held back by the receive window or by congestion (lost and resent segments)"
TABLES = ("connections", "events", "packets")   # what analyze() and the figures read: load() builds only these
TRANSPORT_ONLY = True    # nothing above TCP and UDP: no TLS, HTTP or DNS is decoded for it
FIGURES = {"seq": "the Stevens time-sequence graph: segments, the ACK line, the receive-window edge, SACK blocks, "
                  "retransmissions and out-of-order segments",
           "throughput": "goodput over a moving window, with each segment's size",
           "rtt": "RTT samples over time, from ACKs (Karn's rule) and TCP timestamps",
           "window": "the advertised window against bytes in flight; zero windows and window-full marked"}
EXAMPLE = "h2-stalls"
MEASURE_TCP = True     # bytes in flight and RTT samples: traceviz.load(..., measure_tcp=True)
TITLE = "TCP stream graphs"
FIELDS = ["conn", "dir", "sender", "receiver", "bytes", "segments", "start", "duration", "goodput_bps", "rtt_ms",
          "max_in_flight", "window", "window_full_share", "idle_share", "retransmissions", "lost_segments",
          "dup_acks", "zero_windows", "limited_by"]
RETRANSMITTED = ("retransmission", "fast-retransmission", "spurious-retransmission")
SHARE = 0.3            # a cause that held the sender back for this share of the transfer is named
MIN_SEGMENTS = 10      # fewer data segments than this: over in a few round trips, too short to say


def applies(tl) -> bool:
    p = tl.packets
    return bool(tl.source.detail.get("tcp_measured")) and len(p) > 0 and bool(((p["transport"] == "tcp") & (p["len"].fillna(0) > 0)).any())


def analyze(tl, conn: int | None = None) -> Finding:
    if not tl.source.detail.get("tcp_measured"):
        raise InputError(tl.source.path, "the stream graphs need bytes in flight and RTT samples: "
                                         "load it with traceviz.load(..., measure_tcp=True)")
    p = tl.packets
    tcp = p.loc[((p["transport"] == "tcp") & p["conn"].notna()).to_numpy(dtype=bool, na_value=False), list(_READ)]
    if conn is not None:
        tcp = tcp[(tcp["conn"] == conn).to_numpy(dtype=bool)]
        if not len(tcp):
            raise InputError(tl.source.path, f"no TCP connection {conn}")
    ev = tl.events
    events = ev[(ev["layer"] == "tcp").to_numpy(dtype=bool, na_value=False)] if len(ev) else ev
    rows = direction_rows(tcp, tl.connections, events)
    rows = rows.sort_values(["bytes", "conn"], ascending=[False, True], kind="stable").reset_index(drop=True)
    figures = {}
    if len(rows):
        focus = rows.iloc[0]
        figures = _figures(tl, int(focus["conn"]), str(focus["dir"]), focus)
    held = rows[rows["limited_by"].str.contains("receive window|congestion", regex=True)]
    problems = [f"conn {r.conn} ({r.sender} → {r.receiver}) was limited by {r.limited_by}"
                for r in held.itertuples(index=False)]
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=rows, answer=explain(rows),
                   summary=_summary(rows), json_fields=FIELDS, figures=figures, problems=problems,
                   table_fields=["conn", "sender", "receiver", "bytes", "duration", "goodput_bps", "rtt_ms",
                                 "window_full_share", "idle_share", "retransmissions", "limited_by"])


# --- evidence per direction ---------------------------------------------------------------
#
# Every direction at once, in numpy: segments sorted by (direction, frame) so each direction is
# a run of rows, and grouped sums, maxima and running maxima over the runs.  A pandas filter and
# search per direction cost ~4 ms each: minutes for the 70k directions of a million packets.

_READ = ("conn", "transport", "dir", "frame", "ts", "len", "seq", "ack", "win", "bytes_in_flight", "ack_rtt",
         "rtt_ambiguous")


def direction_rows(tcp: pd.DataFrame, connections: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """One row per direction of ``tcp`` (TCP packets with a connection) that carried data, in
    the order the directions first appear: ``FIELDS``, from those packets, the connections'
    endpoints and handshake round trips, and the TCP ``events``."""
    k = _Segments(tcp)
    data = k.rows[k.length[k.rows] > 0]                 # data segments, by (direction, frame)
    if not len(data):
        return pd.DataFrame(columns=FIELDS)
    d = _Directions.of(k, data, connections)
    counts = _event_counts(events)
    ends = dict(zip(connections["conn"].tolist(), zip(connections["client"].tolist(),
                                                      connections["server"].tolist())))
    order = np.argsort(k.first_seen(d.keys), kind="stable")     # as the directions first appear
    return pd.DataFrame([_row(d, i, ends, counts) for i in order.tolist()], columns=FIELDS)


@dataclass
class _Directions:
    """The directions that carried data (``keys``, sorted) and what each row says of them, one
    array entry per direction; ``first``/``last``: each one's run of data segments."""

    keys: np.ndarray
    first: np.ndarray
    last: np.ndarray
    ts: np.ndarray                # the data segments' times, by (direction, frame)
    bytes: np.ndarray
    unique: np.ndarray            # the sequence space covered: each byte once
    flight_max: np.ndarray
    window_full: np.ndarray
    idle: np.ndarray
    rtts: np.ndarray
    window: dict

    @classmethod
    def of(cls, k: _Segments, data: np.ndarray, connections: pd.DataFrame) -> _Directions:
        keys, first = np.unique(k.key[data], return_index=True)
        back = _Acks(k)
        at = back.last_before(k.conn[data], 1 - k.way[data], k.frame[data])
        rtt = _path_rtt(k, connections)
        rtts = np.array([rtt.get(c, np.nan) for c in (keys // 2).tolist()])
        length, seq = k.length[data], k.seq[data]
        return cls(keys, first, np.r_[first[1:], len(data)] - 1, k.ts[data], np.add.reduceat(length, first),
                   np.fmax.reduceat(seq + length, first) - np.fmin.reduceat(seq, first),
                   np.fmax.reduceat(k.flight[data], first), _window_full_share(k, data, back, at, first),
                   _idle_time(k, data, back, at, first, rtts), rtts, back.median_window())


def _row(d: _Directions, i: int, ends: dict, counts: dict) -> dict:
    c, sender = int(d.keys[i] // 2), ("c2s", "s2c")[int(d.keys[i] % 2)]
    receiver = "s2c" if sender == "c2s" else "c2s"
    client, server = ends[c]
    start = float(d.ts[d.first[i]])
    duration = float(d.ts[d.last[i]] - d.ts[d.first[i]])
    row = {
        "conn": c, "dir": sender, "sender": client if sender == "c2s" else server,
        "receiver": server if sender == "c2s" else client, "bytes": int(d.bytes[i]),
        "segments": int(d.last[i] - d.first[i] + 1), "start": start, "duration": duration,
        "goodput_bps": int(d.unique[i]) * 8 / duration if duration > 0 else float("nan"),
        "rtt_ms": float(d.rtts[i]) * 1000,
        "max_in_flight": pd.NA if np.isnan(d.flight_max[i]) else np.int64(d.flight_max[i]),
        "window": d.window.get((c, receiver), float("nan")),
        "window_full_share": d.window_full[i], "idle_share": d.idle[i] / duration if duration > 0 else 0.0,
        "retransmissions": counts.get((c, sender, "retransmitted"), 0),
        "lost_segments": counts.get((c, sender, "lost-segment"), 0),
        "dup_acks": counts.get((c, receiver, "duplicate-ack"), 0),
        "zero_windows": counts.get((c, receiver, "zero-window"), 0),
    }
    row["limited_by"] = _verdict(row)
    return row


class _Segments:
    """The TCP packets as numpy columns, and their rows sorted by (direction, frame): a
    direction's key is ``2 * conn + way`` (way 0: client to server)."""

    def __init__(self, tcp: pd.DataFrame):
        self.conn = tcp["conn"].to_numpy(dtype=np.int64)
        self.way = (tcp["dir"].astype(object) != "c2s").to_numpy(dtype=np.int64)
        self.frame = tcp["frame"].to_numpy(dtype=np.int64)
        self.ts = tcp["ts"].to_numpy(dtype=np.float64)
        self.length = tcp["len"].to_numpy(dtype=np.float64, na_value=0.0)
        self.seq = tcp["seq"].to_numpy(dtype=np.float64, na_value=np.nan)
        self.ack = tcp["ack"].to_numpy(dtype=np.float64, na_value=np.nan)
        self.win = tcp["win"].to_numpy(dtype=np.float64, na_value=np.nan)
        self.flight = tcp["bytes_in_flight"].to_numpy(dtype=np.float64, na_value=np.nan)
        self.ack_rtt = tcp["ack_rtt"].to_numpy(dtype=np.float64, na_value=np.nan)
        self.ambiguous = tcp["rtt_ambiguous"].to_numpy(dtype=bool, na_value=False)
        self.key = 2 * self.conn + self.way
        self.rows = np.lexsort((self.frame, self.key))

    def first_seen(self, keys: np.ndarray) -> np.ndarray:
        """The position in the table of each direction's (of ``keys``, sorted) first packet."""
        every, first = np.unique(self.key, return_index=True)
        return first[np.searchsorted(every, keys)]


class _Acks:
    """Each direction's ACKs (packets with an acknowledgement number), by (direction, frame):
    what the data segments of the other direction are measured against."""

    def __init__(self, k: _Segments):
        self.k = k
        self.rows = k.rows[~np.isnan(k.ack[k.rows])]
        self.key = k.key[self.rows]
        frame_span = int(k.frame.max()) + 1 if len(k.frame) else 1
        self.sort_key = self.key * frame_span + k.frame[self.rows]
        self.frame_span = frame_span
        self.highest = _running_max(k.ack[self.rows], self.key)      # the highest ACK so far

    def last_before(self, conn: np.ndarray, way: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """For each (conn, way, frame), the position among the ACKs of the last one that way on
        that connection sent at or before the frame; -1 where none was."""
        key = 2 * conn + way
        at = np.searchsorted(self.sort_key, key * self.frame_span + frame, side="right") - 1
        found = at >= 0
        found[found] = self.key[at[found]] == key[found]
        return np.where(found, at, -1)

    def as_of(self, values: np.ndarray, at: np.ndarray) -> np.ndarray:
        """``values[at]`` (one per ACK), NaN where ``at`` is -1."""
        return np.where(at >= 0, values[np.maximum(at, 0)], np.nan) if len(values) else np.full(len(at), np.nan)

    def median_window(self) -> dict[tuple[int, str], float]:
        """(conn, way) -> the median window those ACKs advertised (NaN where none said)."""
        if not len(self.rows):
            return {}
        win = pd.Series(self.k.win[self.rows])
        med = win.groupby(self.key).median()
        return {(int(key) // 2, ("c2s", "s2c")[int(key) % 2]): float(v) for key, v in med.items()}


def _window_full_share(k: _Segments, data: np.ndarray, back: _Acks, at: np.ndarray,
                       first: np.ndarray) -> np.ndarray:
    """Each direction's share of data segments sent with the bytes in flight at (or within one
    segment of) the window the receiver last advertised; 0 where none can be told."""
    edge = back.as_of(k.win[back.rows], at) - k.length[data]
    flight = k.flight[data]
    known = ~np.isnan(flight) & ~np.isnan(edge)
    full = known & (flight >= np.where(known, edge, 0))
    n_known = np.add.reduceat(known.astype(np.int64), first)
    n_full = np.add.reduceat(full.astype(np.int64), first)
    return np.where(n_known > 0, n_full / np.maximum(n_known, 1), 0.0)


def _idle_time(k: _Segments, data: np.ndarray, back: _Acks, at: np.ndarray, first: np.ndarray,
               rtts: np.ndarray) -> np.ndarray:
    """Each direction's seconds when the sender had nothing unacknowledged and still sent
    nothing, in gaps longer than two round trips (10 ms when no round trip is known)."""
    group = np.repeat(np.arange(len(first)), np.diff(np.r_[first, len(data)]))
    starts = np.r_[True, group[1:] != group[:-1]]
    sent_end = _running_max(k.seq[data] + k.length[data], group)
    acked = back.as_of(back.highest, at)
    t = k.ts[data]
    gaps = np.diff(t)
    same = ~starts[1:]                        # a gap between two segments of one direction
    threshold = np.where((rtts == rtts) & (rtts > 0), 2 * rtts, 0.010)[group[1:]]
    idle = same & (acked[1:] >= sent_end[:-1]) & (gaps > threshold)
    out = np.zeros(len(first))
    idle_gaps = gaps[idle]
    # Summed direction by direction as numpy sums one array, so each total is the one a
    # direction alone gives; few directions have an idle gap.
    for g, a, b in zip(*_runs(group[1:][idle])):
        out[g] = float(idle_gaps[a:b].sum())
    return out


def _running_max(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """The running maximum of ``values`` within each run of ``group`` (sorted), NaN skipped."""
    return pd.Series(values).groupby(group, sort=False).cummax().to_numpy(dtype=np.float64)


def _runs(values: np.ndarray) -> tuple[list, list, list]:
    """(value, start, end) of each run of equal values in ``values``."""
    if not len(values):
        return [], [], []
    cuts = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(values)]
    return values[starts].tolist(), starts.tolist(), ends.tolist()


def _path_rtt(k: _Segments, connections: pd.DataFrame) -> dict[int, float]:
    """conn -> the round trip end to end: the handshake's, else each direction's median ACK
    round trip added up (each is only the part beyond the capture point), Karn's rejects left
    out; NaN where neither is known."""
    conns = np.unique(k.conn)
    rows = connections[connections["conn"].isin(conns)]
    hs = dict(zip(rows["conn"].tolist(), rows["handshake_rtt"].astype("Float64").to_numpy(dtype=float,
                                                                                       na_value=np.nan).tolist()))
    ok = ~np.isnan(k.ack_rtt) & ~k.ambiguous
    halves = pd.Series(k.ack_rtt[ok]).groupby([k.conn[ok], k.way[ok]]).median()
    summed = {}
    for (c, _), v in halves.items():
        summed.setdefault(int(c), []).append(float(v))
    out = {}
    for c in conns.tolist():
        h = hs.get(c, np.nan)
        if h == h and h > 0:
            out[c] = h
        else:
            both = summed.get(c, [])
            out[c] = both[0] + both[1] if len(both) == 2 else float("nan")
    return out


def _event_counts(events: pd.DataFrame) -> dict[tuple[int, str, str], int]:
    """(conn, dir, kind) -> how many TCP events, retransmissions of every kind as "retransmitted"."""
    if not len(events):
        return {}
    ev = events[events["conn"].notna().to_numpy(dtype=bool)]
    kind = ev["kind"].astype(object).where(~ev["kind"].isin(RETRANSMITTED), "retransmitted")
    counts = pd.Series(1, index=ev.index).groupby([ev["conn"].astype("int64"), ev["dir"].astype(object), kind]).sum()
    return {(int(c), str(d), str(kd)): int(n) for (c, d, kd), n in counts.items()}


def _verdict(r: dict) -> str:
    if r["segments"] < MIN_SEGMENTS or not r["duration"] > 0:
        return "too short to tell"
    scores = {"receive window": max(r["window_full_share"], 1.0 if r["zero_windows"] else 0.0),
              "congestion": min(1.0, 5 * (r["retransmissions"] + r["lost_segments"]) / r["segments"])
              if r["retransmissions"] + r["lost_segments"] else 0.0,
              "application": r["idle_share"]}
    named = [k for k, v in sorted(scores.items(), key=lambda kv: -kv[1]) if v >= SHARE or (k == "congestion" and v)]
    return " and ".join(named) if named else "path (none of these)"


# --- the answer -----------------------------------------------------------------------------

def explain(rows: pd.DataFrame) -> list[str]:
    if not len(rows):
        return ["No TCP connection carried data."]
    out = []
    for r in rows.head(3).itertuples(index=False):
        head = (f"conn {r.conn} ({r.sender} → {r.receiver}): {_size(r.bytes)} in "
                f"{r.duration:.3f} s" + (f", {_rate(r.goodput_bps)}" if r.goodput_bps == r.goodput_bps else ""))
        out.append(head + ": " + _why(r))
    if len(rows) > 3:
        out.append(f"… {len(rows) - 3} more directions carried data (--json lists them all).")
    return out


def _why(r) -> str:
    from traceviz.charts.text import fmt_ms

    rtt = fmt_ms(r.rtt_ms / 1000) if r.rtt_ms == r.rtt_ms else "unknown"
    if r.limited_by == "too short to tell":
        return f"{r.segments} segment(s), over in a few round trips (RTT {rtt}): too short to tell what limited it."
    if r.limited_by == "path (none of these)":
        return (f"neither the window ({r.window_full_share:.0%} of segments filled it), loss nor idle time "
                f"({r.idle_share:.0%}) held it back: the path's bandwidth and round trip ({rtt}) did.")
    why = []
    for cause in r.limited_by.split(" and "):
        if cause == "receive window":
            stalls = f"; the receiver closed its window {r.zero_windows} time(s)" if r.zero_windows else ""
            why.append(f"the receive window ({r.window_full_share:.0%} of its segments filled the "
                       f"{_size(r.window)} the receiver advertised{stalls})")
        elif cause == "congestion":
            why.append(f"congestion ({r.retransmissions} retransmission(s), {r.lost_segments} lost segment(s), "
                       f"{r.dup_acks} duplicate ACK(s))")
        elif cause == "application":
            why.append(f"the application (for {r.idle_share:.0%} of the transfer everything sent was acknowledged "
                       f"and nothing more was sent)")
    return "limited by " + " and by ".join(why) + f"; RTT {rtt}."


def _summary(rows: pd.DataFrame) -> dict:
    if not len(rows):
        return {}
    return {"directions": len(rows), **{f"limited by {k}": int(v) for k, v in rows["limited_by"].value_counts().items()}}


def _size(n) -> str:
    n = float(n)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} bytes"


def _rate(bps: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.0f} bit/s"


# --- figures --------------------------------------------------------------------------------

def _figures(tl, conn: int, sender: str, row) -> dict:
    def draw(kind):
        def figure(theme="light"):
            from traceviz.charts import tcpgraph
            from traceviz.charts.text import safe
            pk = tl.packets[tl.packets["conn"] == conn].sort_values("frame")
            ev = tl.events[(tl.events["conn"] == conn) & (tl.events["layer"] == "tcp")]
            title = (f"<b>TCP connection {conn}</b>: {safe(row['sender'])} → {safe(row['receiver'])}"
                     f" · limited by {safe(row['limited_by'])}")
            if kind == "seq":
                return tcpgraph.time_sequence(pk, ev, sender, title, theme)
            if kind == "throughput":
                return tcpgraph.throughput(pk, sender, title, theme)
            if kind == "rtt":
                return tcpgraph.rtt(pk, sender, title, theme)
            return tcpgraph.window(pk, ev, sender, title, theme)
        return figure
    return {kind: draw(kind) for kind in ("seq", "throughput", "rtt", "window")}


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
