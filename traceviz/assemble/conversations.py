"""Conversations and endpoints, as Wireshark's Statistics menu counts them.

A conversation is a pair of endpoints seen talking: TCP connections and UDP
flows (one row per ``conn``, from the ``connections`` table's frame counts),
or pairs of IP addresses (every IPv4 / IPv6 packet by its outer header).
Frames and bytes are frames and frame bytes (``frame.len``), each way: ``a``
is the side that sent first (the client, for TCP and UDP), ``ab`` what ``a``
sent, ``ba`` what it received.  ``start`` is the first frame's time,
``duration`` last minus first, ``bps_ab``/``bps_ba`` bits per second each
way over that duration (none when it is zero, as Wireshark shows "N/A").

An endpoint is one address (``--by ip``) or address and port (``tcp``,
``udp``), with what it sent (``tx``) and received (``rx``) over all its
conversations.

Wireshark counts a reassembled IP datagram's transport header once, on the
fragment that completes it; traceviz does not reassemble IP fragments, so a
fragmented UDP datagram counts in the IP conversation only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KINDS = ("ip", "tcp", "udp")
CONVERSATION_FIELDS = ["kind", "conn", "a", "b", "frames_ab", "bytes_ab", "frames_ba", "bytes_ba", "frames",
                       "bytes", "start", "duration", "bps_ab", "bps_ba"]
ENDPOINT_FIELDS = ["kind", "endpoint", "frames", "bytes", "tx_frames", "tx_bytes", "rx_frames", "rx_bytes",
                   "conversations"]


def conversations(tl, by: str = "tcp") -> pd.DataFrame:
    """One row per conversation of ``by`` (``ip``, ``tcp`` or ``udp``), busiest first."""
    if by not in KINDS:
        raise ValueError(f"no conversations by {by!r}: choose one of {', '.join(KINDS)}")
    rows = _ip(tl.packets) if by == "ip" else _flows(tl.connections, tl.packets, by)
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CONVERSATION_FIELDS})
    rows["frames"] = rows["frames_ab"] + rows["frames_ba"]
    rows["bytes"] = rows["bytes_ab"] + rows["bytes_ba"]
    seconds = rows["duration"].where(rows["duration"] > 0)
    rows["bps_ab"] = rows["bytes_ab"] * 8 / seconds
    rows["bps_ba"] = rows["bytes_ba"] * 8 / seconds
    rows = rows.sort_values(["bytes", "start"], ascending=[False, True], kind="stable").reset_index(drop=True)
    return rows[CONVERSATION_FIELDS]


def endpoints(tl, by: str = "ip") -> pd.DataFrame:
    """One row per endpoint of ``by``, most bytes first."""
    conv = conversations(tl, by)
    if conv.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ENDPOINT_FIELDS})
    sides = []
    for me, tx, rx in (("a", "ab", "ba"), ("b", "ba", "ab")):
        sides.append(pd.DataFrame({"kind": conv["kind"], "endpoint": conv[me],
                                   "tx_frames": conv[f"frames_{tx}"], "tx_bytes": conv[f"bytes_{tx}"],
                                   "rx_frames": conv[f"frames_{rx}"], "rx_bytes": conv[f"bytes_{rx}"]}))
    both = pd.concat(sides, ignore_index=True)
    out = both.groupby(["kind", "endpoint"], sort=False, observed=True).agg(
        tx_frames=("tx_frames", "sum"), tx_bytes=("tx_bytes", "sum"), rx_frames=("rx_frames", "sum"),
        rx_bytes=("rx_bytes", "sum"), conversations=("tx_frames", "size")).reset_index()
    out["frames"] = out["tx_frames"] + out["rx_frames"]
    out["bytes"] = out["tx_bytes"] + out["rx_bytes"]
    out = out.sort_values(["bytes", "endpoint"], ascending=[False, True], kind="stable").reset_index(drop=True)
    return out[ENDPOINT_FIELDS]


def _flows(connections: pd.DataFrame, packets: pd.DataFrame, by: str) -> pd.DataFrame:
    # A QUIC connection is a UDP flow to Wireshark's Conversations.
    c = connections[connections["transport"].isin(("udp", "quic") if by == "udp" else (by,))]
    if c.empty or c["frames_c2s"].isna().all():
        return pd.DataFrame()
    first, last = _span(packets, by)
    conn = c["conn"].to_numpy()
    start = first.reindex(conn).to_numpy(dtype=float)
    end = last.reindex(conn).to_numpy(dtype=float)
    return pd.DataFrame({
        "kind": by, "conn": c["conn"].to_numpy(), "a": c["client"].to_numpy(), "b": c["server"].to_numpy(),
        "frames_ab": c["frames_c2s"].to_numpy(dtype=np.int64), "bytes_ab": c["wire_bytes_c2s"].to_numpy(dtype=np.int64),
        "frames_ba": c["frames_s2c"].to_numpy(dtype=np.int64), "bytes_ba": c["wire_bytes_s2c"].to_numpy(dtype=np.int64),
        "start": start, "duration": end - start})


def _span(packets: pd.DataFrame, by: str) -> tuple[pd.Series, pd.Series]:
    """First and last time of each flow's own packets (not the ICMP errors quoting it)."""
    own = packets[(packets["transport"] == by) & packets["conn"].notna()]
    g = own.groupby(own["conn"].astype("int64"), sort=False)["ts"]
    return g.min(), g.max()


def _ip(packets: pd.DataFrame) -> pd.DataFrame:
    """Pairs of IP addresses, by every packet's outer IP header."""
    if packets.empty or "ipver" not in packets:
        return pd.DataFrame()
    ip = packets[packets["ipver"].isin([4, 6]) & packets["src"].notna() & packets["dst"].notna()]
    if ip.empty:
        return pd.DataFrame()
    src = ip["src"].astype("object").to_numpy()
    dst = ip["dst"].astype("object").to_numpy()
    names, codes = np.unique(np.concatenate([src, dst]).astype(str), return_inverse=True)
    s, d = codes[:len(src)], codes[len(src):]
    lo, hi = np.minimum(s, d), np.maximum(s, d)
    pair = lo.astype(np.int64) * len(names) + hi
    wire = ip["wire_len"].to_numpy(dtype=np.int64)
    ts = ip["ts"].to_numpy(dtype=float)
    ver = ip["ipver"].to_numpy(dtype=np.int64)
    uniq, first, inverse = np.unique(pair, return_index=True, return_inverse=True)
    a = s[first]                                   # the first packet's sender is address A
    from_a = s == a[inverse]
    n = len(uniq)
    frames_ab = np.bincount(inverse, weights=from_a, minlength=n).astype(np.int64)
    frames = np.bincount(inverse, minlength=n)
    bytes_ab = np.bincount(inverse, weights=wire * from_a, minlength=n).astype(np.int64)
    total = np.bincount(inverse, weights=wire, minlength=n).astype(np.int64)
    span = pd.Series(ts).groupby(inverse).agg(["min", "max"])
    start, end = span["min"].to_numpy(), span["max"].to_numpy()
    b = np.where(lo[first] == a, hi[first], lo[first])
    return pd.DataFrame({
        "kind": np.where(ver[first] == 6, "ipv6", "ipv4"), "conn": pd.array([pd.NA] * n, dtype="Int64"),
        "a": names[a], "b": names[b], "frames_ab": frames_ab, "bytes_ab": bytes_ab,
        "frames_ba": frames - frames_ab, "bytes_ba": total - bytes_ab, "start": start, "duration": end - start})
