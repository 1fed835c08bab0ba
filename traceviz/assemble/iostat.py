"""I/O statistics: what happened in each interval of a capture (tshark's ``-z io,stat``).

Intervals start at the first packet (for a browser export, the first
request) and run to the last; an interval with nothing in it is a row of
zeros, as tshark prints it.  Frames and bytes are frames and frame bytes;
``requests`` counts HTTP exchanges by when they started; the event columns
count the TCP events of ``EVENT_GROUPS`` by the frame they happened in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Event columns and the event kinds each counts (Wireshark's tcp.analysis.retransmission
# covers fast and spurious retransmissions too).
EVENT_GROUPS = {
    "retransmissions": ("retransmission", "fast-retransmission", "spurious-retransmission"),
    "lost_segments": ("lost-segment",),
    "dup_acks": ("duplicate-ack",),
    "zero_windows": ("zero-window",),
    "resets": ("RST",),
}
FIELDS = ["interval", "start", "frames", "bytes", "bits_per_s", "requests", *EVENT_GROUPS]


def intervals(tl, interval: float, packets: pd.DataFrame | None = None, conns=None) -> pd.DataFrame:
    """One row per ``interval`` seconds from the capture's start: ``interval`` (seconds
    since the start), ``start`` (epoch), frames, bytes, bits/s, requests and events.

    ``packets``: the packets to count (a filtered subset; default all); ``conns``:
    count only requests and events of these connections (default all).
    """
    if interval <= 0:
        raise ValueError("an interval must be longer than zero")
    pk = tl.packets if packets is None else packets
    t0, t_end = _span(tl)
    out = {c: [] for c in FIELDS}
    if t0 is None:
        return pd.DataFrame(out)
    step = int(round(interval * 1e6))
    n = int(_bucket(np.array([t_end]), t0, step)[0]) + 1
    frames = np.zeros(n, dtype=np.int64)
    nbytes = np.zeros(n, dtype=np.int64)
    if len(pk):
        b = _bucket(pk["ts"].to_numpy(dtype=float), t0, step)
        frames = np.bincount(b, minlength=n)[:n]
        nbytes = np.bincount(b, weights=pk["wire_len"].to_numpy(dtype=float), minlength=n)[:n].astype(np.int64)
    rq = tl.requests
    if conns is not None and len(rq):
        rq = rq[rq["conn"].isin(conns)]
    starts = rq["start"].dropna().to_numpy(dtype=float) if len(rq) else np.zeros(0)
    requests = np.bincount(_bucket(starts, t0, step), minlength=n)[:n] if len(starts) else np.zeros(n, np.int64)
    df = pd.DataFrame({
        "interval": np.arange(n) * (step / 1e6), "start": t0 + np.arange(n) * (step / 1e6),
        "frames": frames, "bytes": nbytes,
        "bits_per_s": nbytes * 8 / (step / 1e6) if len(tl.packets) else np.full(n, np.nan),
        "requests": requests})
    if not len(tl.packets):
        df["frames"] = pd.array([pd.NA] * n, dtype="Int64")
        df["bytes"] = pd.array([pd.NA] * n, dtype="Int64")
    ev = tl.events
    if conns is not None and len(ev):
        ev = ev[ev["conn"].isin(conns)]
    tcp = ev[ev["layer"] == "tcp"] if len(ev) else ev
    for column, kinds in EVENT_GROUPS.items():
        times = tcp.loc[tcp["kind"].isin(kinds), "ts"].to_numpy(dtype=float) if len(tcp) else np.zeros(0)
        df[column] = np.bincount(_bucket(times, t0, step), minlength=n)[:n] if len(times) else 0
    return df[FIELDS]


def nice_interval(tl, target: int = 60) -> float:
    """A round interval (1, 2 or 5 times a power of ten seconds) giving about ``target`` rows."""
    t0, t_end = _span(tl)
    span = (t_end - t0) if t0 is not None else 0.0
    if span <= 0:
        return 1.0
    raw = span / target
    exp = np.floor(np.log10(raw))
    for m in (1, 2, 5, 10):
        if m * 10 ** exp >= raw:
            return float(m * 10 ** exp)
    return float(10 ** (exp + 1))


def _span(tl) -> tuple[float | None, float | None]:
    if len(tl.packets):
        ts = tl.packets["ts"]
        return float(ts.min()), float(ts.max())
    starts = tl.requests["start"].dropna() if len(tl.requests) else pd.Series(dtype=float)
    if not len(starts):
        return None, None
    ends = tl.requests["end"].dropna()
    return float(starts.min()), float(max(starts.max(), ends.max() if len(ends) else starts.max()))


def _bucket(ts: np.ndarray, t0: float, step_us: int) -> np.ndarray:
    """Interval number of each time, on the microsecond grid tshark counts in."""
    us = np.round((ts - t0) * 1e6).astype(np.int64)
    return np.maximum(us, 0) // step_us
