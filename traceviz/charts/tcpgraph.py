"""TCP stream graphs of one direction of one connection: what tcptrace and
Wireshark's Statistics -> TCP Stream Graphs draw.

- ``time_sequence``: the Stevens / tcptrace graph.  Each data segment is a
  short vertical bar from its first to its last sequence number at the time
  it passed the capture point; the receiver's acknowledgement number is the
  step line below them, the edge of its advertised window (ack + window) the
  step line above, SACK blocks are bars beside the ACK that carried them.
  Retransmitted and out-of-order segments are drawn in their own colours.
  A sender limited by the window hugs the upper line; a lossy path shows red
  bars and flat stretches of the ACK line; an application that has nothing
  to send leaves horizontal gaps.
- ``throughput``: bytes acknowledged (goodput) and bytes sent per second,
  over a moving window.
- ``rtt``: round-trip samples over time: from ACKs (Wireshark's
  tcp.analysis.ack_rtt; the ones Karn's rule rejects, because the ACK covers
  a retransmission, drawn hollow) and from TCP timestamps.
- ``window``: the receiver's advertised window and the sender's bytes in
  flight over time, zero windows and full windows marked.

Every function takes the connection's rows of the ``packets`` table (with
the TCP tier's ``bytes_in_flight``, ``ack_rtt``, ``rtt_ambiguous``,
``ts_rtt`` and ``sack`` columns), the connection's TCP ``events`` and the
sending direction; none reads bytes or recomputes a TCP fact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from traceviz.charts import theme as themes
from traceviz.charts.text import safe

KINDS = ("seq", "throughput", "rtt", "window")   # the figures the tcpgraph recipe draws
RETRANSMITTED = ("retransmission", "fast-retransmission", "spurious-retransmission")


def time_sequence(pk: pd.DataFrame, events: pd.DataFrame, sender: str, title: str, theme: str = "light") -> go.Figure:
    fig, c, s, t0 = _start(pk, title, "sequence number (relative, bytes)", theme)
    data = _data(pk, sender)
    kinds = _segment_kinds(data, events)
    for kind, label, color, width in (("new", "data segment", c["data"], 1.0),
                                      ("retransmission", "retransmission", c["retransmission"], 1.6),
                                      ("out-of-order", "out of order", c["out-of-order"], 1.4)):
        rows = data[kinds == kind]
        if len(rows):
            fig.add_trace(go.Scattergl(x=_bars(rows["ts"] - t0), y=_bars(rows["seq"], rows["seq"] + rows["len"]),
                                       mode="lines", name=f"{label} ({len(rows)})",
                                       line=dict(color=color, width=s["line"] * width), hoverinfo="skip"))
            fig.add_trace(go.Scattergl(x=(rows["ts"] - t0).to_numpy(), y=(rows["seq"] + rows["len"]).to_numpy(),
                                       mode="markers", marker=dict(color=color, size=max(s["marker"] * 0.35, 3)),
                                       showlegend=False, name=label,
                                       hovertext=[f"frame {f}: seq {q}, {n} bytes{' (' + kind + ')' if kind != 'new' else ''}"
                                                  for f, q, n in zip(rows["frame"], rows["seq"], rows["len"])],
                                       hoverinfo="text"))
    acks = _acks(pk, sender)
    if len(acks):
        x = (acks["ts"] - t0).to_numpy()
        fig.add_trace(go.Scattergl(x=x, y=acks["ack"].to_numpy(dtype=float), mode="lines",
                                   line=dict(color=c["ACK"], width=s["line"], shape="hv"), name="ACK",
                                   hovertemplate="%{x:.6f} s: ack %{y:.0f}<extra></extra>"))
        edge = (acks["ack"] + acks["win"]).to_numpy(dtype=float)
        fig.add_trace(go.Scattergl(x=x, y=edge, mode="lines", name="receive window edge (ack + window)",
                                   line=dict(color=c["server"] if sender == "c2s" else c["client"], width=s["line"],
                                             shape="hv", dash="dot"),
                                   hovertemplate="%{x:.6f} s: window ends at %{y:.0f}<extra></extra>"))
        xs, ys = _sack_bars(acks, t0)
        if xs:
            fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", name="SACK block",
                                       line=dict(color=c["dup-ack"], width=s["line"] * 2), hoverinfo="skip"))
    return fig


def throughput(pk: pd.DataFrame, sender: str, title: str, theme: str = "light",
               window: float | None = None) -> go.Figure:
    fig, c, s, t0 = _start(pk, title, "bits per second", theme)
    data = _data(pk, sender)
    acks = _acks(pk, sender)
    span = float(pk["ts"].max() - t0) if len(pk) else 0.0
    w = window or _moving_window(pk, sender, span)
    if len(data):
        t = data["ts"].to_numpy(dtype=float)
        fig.add_trace(go.Scattergl(x=t - t0, y=_rate(t, data["len"].to_numpy(dtype=float), w), mode="lines",
                                   name="sent (retransmissions included)", line=dict(color=c["data"], width=s["line"]),
                                   hovertemplate="%{x:.3f} s: %{y:.3s}bit/s sent<extra></extra>"))
    if len(acks) > 1:
        ack = acks["ack"].to_numpy(dtype=float)
        acked = np.diff(np.maximum.accumulate(ack), prepend=ack[0])
        t = acks["ts"].to_numpy(dtype=float)
        fig.add_trace(go.Scattergl(x=t - t0, y=_rate(t, acked, w), mode="lines", name="goodput (acknowledged)",
                                   line=dict(color=c["client"] if sender == "s2c" else c["server"], width=s["line"] * 1.3),
                                   hovertemplate="%{x:.3f} s: %{y:.3s}bit/s acknowledged<extra></extra>"))
    fig.update_layout(title=dict(subtitle=dict(text=f"moving window of {w * 1000:.3g} ms",
                                               font=dict(color=c["muted"], size=s["font"]))))
    return fig


def rtt(pk: pd.DataFrame, sender: str, title: str, theme: str = "light") -> go.Figure:
    fig, c, s, t0 = _start(pk, title, "round trip (ms)", theme)
    acks = _acks(pk, sender)
    samples = acks[acks["ack_rtt"].notna()]
    for ambiguous, label, symbol in ((False, "ACK of a segment sent once", "circle"),
                                     (True, "ACK covering a retransmission (Karn: not trusted)", "x-thin-open")):
        rows = samples[samples["rtt_ambiguous"] == ambiguous]
        if len(rows):
            fig.add_trace(go.Scattergl(x=rows["ts"] - t0, y=rows["ack_rtt"] * 1000, mode="markers",
                                       name=f"{label} ({len(rows)})",
                                       marker=dict(symbol=symbol, size=s["marker"] * (0.7 if not ambiguous else 1.0),
                                                   color=c["retransmission"] if ambiguous else c["client"],
                                                   line=dict(width=max(s["line"] * 0.8, 1),
                                                             color=c["retransmission"] if ambiguous else c["client"])),
                                       hovertext=[f"frame {f}: {v * 1000:.3f} ms" for f, v in zip(rows["frame"], rows["ack_rtt"])],
                                       hoverinfo="text"))
    stamped = acks[acks["ts_rtt"].notna()]
    if len(stamped):
        fig.add_trace(go.Scattergl(x=stamped["ts"] - t0, y=stamped["ts_rtt"] * 1000, mode="markers",
                                   name=f"TCP timestamps ({len(stamped)})",
                                   marker=dict(symbol="diamond-open", size=s["marker"] * 0.7, color=c["server"]),
                                   hovertext=[f"frame {f}: {v * 1000:.3f} ms" for f, v in zip(stamped["frame"], stamped["ts_rtt"])],
                                   hoverinfo="text"))
    if not len(samples) and not len(stamped):
        _empty(fig, "no round-trip samples: no ACK completed a segment of this direction", c, s)
    return fig


def window(pk: pd.DataFrame, events: pd.DataFrame, sender: str, title: str, theme: str = "light") -> go.Figure:
    fig, c, s, t0 = _start(pk, title, "bytes", theme)
    acks = _acks(pk, sender)
    if len(acks):
        fig.add_trace(go.Scattergl(x=acks["ts"] - t0, y=acks["win"].to_numpy(dtype=float), mode="lines",
                                   line=dict(color=c["server"] if sender == "c2s" else c["client"], width=s["line"],
                                             shape="hv"),
                                   name="receive window advertised",
                                   hovertemplate="%{x:.6f} s: window %{y:.0f} bytes<extra></extra>"))
    data = _data(pk, sender)
    flight = data[data["bytes_in_flight"].notna()]
    if len(flight):
        fig.add_trace(go.Scattergl(x=flight["ts"] - t0, y=flight["bytes_in_flight"].to_numpy(dtype=float),
                                   mode="markers", name="bytes in flight (at each data segment)",
                                   marker=dict(size=max(s["marker"] * 0.45, 4), color=c["data"]),
                                   hovertext=[f"frame {f}: {b} bytes in flight" for f, b in
                                              zip(flight["frame"], flight["bytes_in_flight"])], hoverinfo="text"))
    ev = events[events["kind"].isin(["zero-window", "window-full"])] if len(events) else events
    for kind, label, color, symbol, side in (("zero-window", "zero window", c["zero-window"], "x", _receiver(sender)),
                                             ("window-full", "window full", c["RST"], "triangle-up", sender)):
        rows = ev[(ev["kind"] == kind) & (ev["dir"] == side)] if len(ev) else ev
        if len(rows):
            y = _value_at(rows, pk, "win" if kind == "zero-window" else "bytes_in_flight")
            fig.add_trace(go.Scattergl(x=rows["ts"] - t0, y=y, mode="markers", name=f"{label} ({len(rows)})",
                                       marker=dict(symbol=symbol, size=s["marker"] * 1.2, color=color),
                                       hovertext=[f"frame {f}: {label}" for f in rows["frame"]], hoverinfo="text"))
    return fig


# --- the rows each graph reads -------------------------------------------------------------

def _data(pk: pd.DataFrame, sender: str) -> pd.DataFrame:
    """The sender's data segments."""
    rows = pk[(pk["dir"] == sender) & (pk["len"].fillna(0) > 0) & pk["seq"].notna()]
    return rows.astype({"seq": "int64", "len": "int64"})


def _acks(pk: pd.DataFrame, sender: str) -> pd.DataFrame:
    """The receiver's packets carrying an acknowledgement number."""
    rows = pk[(pk["dir"] == _receiver(sender)) & pk["ack"].notna()]
    return rows.astype({"ack": "int64", "win": "float64"})


def _receiver(sender: str) -> str:
    return "s2c" if sender == "c2s" else "c2s"


def _segment_kinds(data: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
    kinds = np.full(len(data), "new", dtype=object)
    if not len(events) or not len(data):
        return kinds
    retx = set(events.loc[events["kind"].isin(RETRANSMITTED), "frame"].dropna().astype(int))
    ooo = set(events.loc[events["kind"] == "out-of-order", "frame"].dropna().astype(int))
    frames = data["frame"].to_numpy()
    kinds[np.isin(frames, list(ooo))] = "out-of-order"
    kinds[np.isin(frames, list(retx))] = "retransmission"
    return kinds


def _bars(x0, y1=None) -> np.ndarray:
    """Vertical bars for one Scattergl trace: x, x, None per bar (or y0, y1, None)."""
    a = np.asarray(x0, dtype=float)
    b = a if y1 is None else np.asarray(y1, dtype=float)
    out = np.empty(len(a) * 3)
    out[0::3], out[1::3], out[2::3] = a, b, np.nan
    return out


def _sack_bars(acks: pd.DataFrame, t0: float) -> tuple[list, list]:
    xs, ys = [], []
    for t, blocks in zip(acks["ts"], acks["sack"]):
        if blocks is None or (isinstance(blocks, float) and blocks != blocks):
            continue
        for left, right in blocks:
            xs += [t - t0, t - t0, None]
            ys += [left, right, None]
    return xs, ys


def _moving_window(pk: pd.DataFrame, sender: str, span: float) -> float:
    """Long enough to smooth over a few round trips, short enough to show the transfer's shape."""
    rtts = _acks(pk, sender)["ack_rtt"].dropna()
    rtt = float(rtts.median()) if len(rtts) else 0.0
    return max(4 * rtt, span / 100, 1e-3)


def _rate(t: np.ndarray, nbytes: np.ndarray, window: float) -> np.ndarray:
    """Bits per second over the ``window`` seconds ending at each time (trailing moving sum)."""
    total = np.cumsum(nbytes)
    start = np.searchsorted(t, t - window, side="right")
    before = np.where(start > 0, total[np.maximum(start - 1, 0)], 0.0)
    return (total - before) * 8 / window


def _value_at(rows: pd.DataFrame, pk: pd.DataFrame, column: str) -> np.ndarray:
    values = pk.set_index("frame")[column]
    return pd.to_numeric(values.reindex(rows["frame"].astype(int)), errors="coerce").fillna(0).to_numpy(dtype=float)


def _start(pk: pd.DataFrame, title: str, y_title: str, theme: str):
    """The empty figure, the theme's colours and sizes, and the connection's first time."""
    name = themes.check(theme)
    t0 = float(pk["ts"].min()) if len(pk) else 0.0
    return _figure(name, title, y_title), themes.colors(name), themes.sizes(name), t0


def _figure(name: str, title: str, y_title: str) -> go.Figure:
    s = themes.sizes(name)
    fig = go.Figure()
    themes.apply(fig, name)
    fig.update_layout(width=s["width"], height=s["height"], title=dict(text=title),
                      xaxis=dict(title=dict(text="seconds since the connection's first packet")),
                      yaxis=dict(title=dict(text=y_title), rangemode="tozero"),
                      legend=dict(orientation="h", x=0.5, xanchor="center", y=-0.14, yanchor="top"),
                      hovermode="closest")
    return fig


def _empty(fig: go.Figure, text: str, c: dict, s: dict) -> None:
    fig.add_annotation(text=safe(text), xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                       font=dict(color=c["muted"], size=s["font"]))
