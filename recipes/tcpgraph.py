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
    # The columns read below, the direction as plain text: each of thousands of per-direction
    # slices then copies a dozen columns, not the packets table's thirty.
    p = tl.packets[list(_READ)].astype({"dir": "object"})
    tcp = p[(p["transport"] == "tcp") & p["conn"].notna()]
    if conn is not None:
        tcp = tcp[tcp["conn"] == conn]
        if not len(tcp):
            raise InputError(tl.source.path, f"no TCP connection {conn}")
    events = tl.events[(tl.events["layer"] == "tcp")] if len(tl.events) else tl.events
    # Each connection's rows found once: a filter of the whole table per direction was quadratic
    # (157 s on 250k packets).
    connection, packets_of, events_of = ByConn(tl.connections), ByConn(p), ByConn(events)
    rows = pd.DataFrame([_direction(connection(c).iloc[0], d, g, packets_of(c), events_of(c))
                         for (c, d), g in tcp.groupby([tcp["conn"].astype("int64"), tcp["dir"].astype(str)],
                                                      sort=False)
                         if (g["len"].fillna(0) > 0).any()], columns=FIELDS)
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

_READ = ("conn", "transport", "dir", "frame", "ts", "len", "seq", "ack", "win", "bytes_in_flight", "ack_rtt",
         "rtt_ambiguous")


class ByConn:
    """A table's rows of one connection, in the table's order: ``ByConn(df)(conn)``, as
    ``df[df["conn"] == conn]`` gives them, from one stable sort and a slice each."""

    def __init__(self, df: pd.DataFrame):
        self.df = df
        conn = df["conn"].to_numpy(dtype=np.float64, na_value=np.nan)
        rows = np.flatnonzero(~np.isnan(conn))
        self.order = rows[np.argsort(conn[rows], kind="stable")]
        keys = conn[self.order]
        cuts = np.flatnonzero(np.diff(keys)) + 1
        self.span = {int(keys[a]): (a, b) for a, b in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(keys)].tolist())}

    def __call__(self, conn: int) -> pd.DataFrame:
        a, b = self.span.get(conn, (0, 0))
        return self.df.iloc[self.order[a:b]]


def _direction(c: pd.Series, sender: str, pk: pd.DataFrame, all_pk: pd.DataFrame, events: pd.DataFrame) -> dict:
    """One direction of connection ``c`` (its row): ``pk`` its packets that way, ``all_pk`` both
    ways, ``events`` its TCP events."""
    conn = int(c["conn"])
    ends = (c["client"], c["server"]) if sender == "c2s" else (c["server"], c["client"])
    receiver = "s2c" if sender == "c2s" else "c2s"
    data = pk[pk["len"].fillna(0) > 0].sort_values("frame")
    back = all_pk[(all_pk["dir"] == receiver) & all_pk["ack"].notna()].sort_values("frame")
    t = data["ts"].to_numpy(dtype=float)
    duration = float(t[-1] - t[0]) if len(t) else 0.0
    # Goodput counts each byte once: from the lowest sequence number sent to the highest.
    unique = int((data["seq"] + data["len"]).max() - data["seq"].min()) if len(data) else 0
    rtt = _path_rtt(c, all_pk)
    mine = events[events["dir"] == sender]
    theirs = events[events["dir"] == receiver]
    full_share = _window_full_share(data, back)
    idle = _idle_time(data, back, rtt)
    row = {
        "conn": conn, "dir": sender, "sender": ends[0], "receiver": ends[1], "bytes": int(data["len"].sum()),
        "segments": len(data), "start": float(t[0]) if len(t) else float("nan"), "duration": duration,
        "goodput_bps": unique * 8 / duration if duration > 0 else float("nan"),
        "rtt_ms": rtt * 1000, "max_in_flight": data["bytes_in_flight"].max(),
        "window": float(back["win"].median()) if len(back) else float("nan"),
        "window_full_share": full_share, "idle_share": idle / duration if duration > 0 else 0.0,
        "retransmissions": int(mine["kind"].isin(RETRANSMITTED).sum()),
        "lost_segments": int((mine["kind"] == "lost-segment").sum()),
        "dup_acks": int((theirs["kind"] == "duplicate-ack").sum()),
        "zero_windows": int((theirs["kind"] == "zero-window").sum()),
    }
    row["limited_by"] = _verdict(row)
    return row


def _path_rtt(connection, pk: pd.DataFrame) -> float:
    """The round trip end to end: the handshake's, else each direction's median ACK round
    trip added up (each is only the part beyond the capture point), Karn's rejects left out."""
    hs = connection.get("handshake_rtt")
    if hs == hs and hs is not None and hs is not pd.NA and float(hs) > 0:
        return float(hs)
    ok = pk["ack_rtt"].notna() & ~pk["rtt_ambiguous"].astype(bool)
    halves = pk[ok].groupby(pk["dir"].astype(str))["ack_rtt"].median()
    return float(halves.sum()) if len(halves) == 2 else float("nan")


def _last_before(back: pd.DataFrame, data: pd.DataFrame) -> np.ndarray:
    """For each data segment, the row of ``back`` (sorted by frame) last sent at or before it,
    -1 where none was: ``merge_asof(direction="backward")`` on the frame numbers, without the
    cost of a merge per direction."""
    return np.searchsorted(back["frame"].to_numpy(dtype=np.int64), data["frame"].to_numpy(dtype=np.int64),
                           side="right") - 1


def _as_of(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``values[at]``, NaN where ``at`` is -1."""
    return np.where(at >= 0, values[np.maximum(at, 0)], np.nan)


def _window_full_share(data: pd.DataFrame, back: pd.DataFrame) -> float:
    """Share of data segments sent with the bytes in flight at (or within one segment of)
    the window the receiver last advertised."""
    if not len(data) or not len(back):
        return 0.0
    win = _as_of(back["win"].to_numpy(dtype=np.float64, na_value=np.nan), _last_before(back, data))
    flight = data["bytes_in_flight"].to_numpy(dtype=np.float64, na_value=np.nan)
    edge = win - data["len"].to_numpy(dtype=np.float64, na_value=np.nan)
    known = ~np.isnan(flight) & ~np.isnan(edge)
    return float((flight[known] >= edge[known]).mean()) if known.any() else 0.0


def _idle_time(data: pd.DataFrame, back: pd.DataFrame, rtt: float) -> float:
    """Seconds the sender had nothing unacknowledged and still sent nothing, in gaps
    longer than two round trips (10 ms when no round trip is known)."""
    if len(data) < 2 or not len(back):
        return 0.0
    threshold = 2 * rtt if rtt == rtt and rtt > 0 else 0.010
    sent_end = np.maximum.accumulate((data["seq"] + data["len"]).to_numpy(dtype=float))
    t = data["ts"].to_numpy(dtype=float)
    highest_ack = np.maximum.accumulate(back["ack"].to_numpy(dtype=np.float64))
    acked = _as_of(highest_ack, _last_before(back, data))
    gaps = np.diff(t)
    caught_up = acked[1:] >= sent_end[:-1]          # everything sent before the gap was acknowledged
    return float(gaps[caught_up & (gaps > threshold)].sum())


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
