"""What did TCP and UDP each do with the same traffic: what arrived, what was resent, what it cost?

TCP gives a byte stream: every byte arrives, in order, because lost
segments are sent again -- after a round trip (three duplicate ACKs, or a
tail-loss probe) or a timeout -- and the bytes behind a loss wait for it
(head-of-line blocking).  UDP gives datagrams: no connection, no
acknowledgement, no retransmission; a lost datagram stays lost, the rest
arrive as soon as they can.  One row per flow that carried data: packets
and payload bytes each way, the bytes on the wire and the share that was
headers (plus TCP's ACK-only segments), TCP's retransmissions and
out-of-order segments, the datagrams a request/response UDP flow never got
a reply to, and the longest silence between data arriving from the server.

    python recipes/transports.py capture.pcapng [--chart transports.html]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from traceviz.charts.text import ms_text
from traceviz.recipe import Finding

NAME = "transports"
NEEDS = "a TCP connection or UDP flow that carried data"
FAILS_ON = "UDP datagrams that got no reply (lost on the way, and nothing sent them again)"
TABLES = ("connections", "events", "packets")   # what analyze() and the figures read: load() builds only these
TRANSPORT_ONLY = True    # nothing above TCP and UDP: no TLS, HTTP or DNS is decoded for it
FIGURES = {"arrivals": "every data packet of each flow, each way, with TCP's resent segments"}
EXAMPLE = "tcp-vs-udp"
TITLE = "TCP vs UDP: delivery, retransmission, overhead"

JSON_FIELDS = ["conn", "transport", "client", "server", "data_packets_c2s", "data_packets_s2c", "bytes_c2s",
               "bytes_s2c", "wire_bytes", "overhead", "ack_only", "retransmissions", "lost_before_capture",
               "unanswered", "duration", "longest_gap_ms"]
# Wireshark's names for a segment sent again: a resent segment that arrives just after a duplicate ACK
# is flagged out-of-order, one whose original the capture missed is the fast retransmission after a gap.
RESENT = ("retransmission", "fast-retransmission", "spurious-retransmission", "out-of-order")
TABLE_FIELDS = ["conn", "transport", "data_packets_c2s", "data_packets_s2c", "bytes_c2s", "bytes_s2c", "overhead",
                "retransmissions", "lost_before_capture", "unanswered", "longest_gap_ms"]


def applies(tl) -> bool:
    c = tl.connections
    return bool(((c["bytes_c2s"] + c["bytes_s2c"]) > 0).any())


def analyze(tl, conn: int | None = None) -> Finding:
    rows = flow_rows(tl)
    if conn is not None:
        rows = rows[rows["conn"] == conn].reset_index(drop=True)
    answer = explain(rows)
    figures = {}
    if len(rows):
        figures["arrivals"] = lambda theme="light": _chart(tl, rows, theme)
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=rows,
                   summary={"flows": int(len(rows)), "transports": sorted(set(rows["transport"]))},
                   answer=answer, figures=figures, json_fields=JSON_FIELDS, table_fields=TABLE_FIELDS,
                   problems=[f"conn {r.conn} (UDP, {r.client} \u2192 {r.server}): {r.unanswered} datagram(s) got no "
                             f"reply" for r in rows.itertuples(index=False)
                             if r.transport == "udp" and r.unanswered])


def flow_rows(tl) -> pd.DataFrame:
    c = tl.connections[((tl.connections["bytes_c2s"] + tl.connections["bytes_s2c"]) > 0).to_numpy(
        dtype=bool, na_value=False) & tl.connections["transport"].isin(["tcp", "udp"]).to_numpy(dtype=bool)]
    p = tl.packets[["conn", "ts", "dir", "len", "wire_len"]]      # what per_flow reads: a filter copies each column
    p = p[p["conn"].isin(c["conn"].tolist()).to_numpy(dtype=bool, na_value=False)]
    ev = tl.events[(tl.events["layer"].astype("object") == "tcp").to_numpy(dtype=bool, na_value=False)]
    kinds = ev.groupby(["conn", "kind"]).size().to_dict()      # a dict: a MultiIndex lookup per flow took seconds
    flows = per_flow(p)
    out = []
    for r in c.itertuples(index=False):
        f = flows.get(int(r.conn), _NO_PACKETS)
        tcp = r.transport == "tcp"
        out.append({
            "conn": int(r.conn), "transport": r.transport, "client": r.client, "server": r.server,
            "data_packets_c2s": f["up"], "data_packets_s2c": f["down"],
            "bytes_c2s": int(r.bytes_c2s), "bytes_s2c": int(r.bytes_s2c), "wire_bytes": f["wire"],
            "overhead": round(1 - f["payload"] / f["wire"], 4) if f["wire"] else None,
            "ack_only": f["packets"] - f["data"] if tcp else None,
            "retransmissions": sum(int(kinds.get((r.conn, k), 0)) for k in RESENT) if tcp else None,
            "lost_before_capture": int(kinds.get((r.conn, "lost-segment"), 0)) if tcp else None,
            "unanswered": max(f["up"] - f["down"], 0) if not tcp else None,
            "duration": float(r.end - r.start),
            "longest_gap_ms": round(f["gap"] * 1000, 3) if f["gap"] is not None else None,
        })
    ints = ["ack_only", "retransmissions", "lost_before_capture", "unanswered"]
    return pd.DataFrame(out, columns=JSON_FIELDS).astype({k: "Int64" for k in ints})


_NO_PACKETS = {"packets": 0, "data": 0, "up": 0, "down": 0, "wire": 0, "payload": 0, "gap": None}


def per_flow(p: pd.DataFrame) -> dict[int, dict]:
    """Each flow's packets counted and summed in one pass over the packets table: all packets,
    those with data and those with data each way, bytes on the wire, payload bytes,
    and the longest silence between data packets from the server (frame order).  A filter of
    the whole table per flow took two minutes on a million packets."""
    if not len(p):
        return {}
    conn = p["conn"].to_numpy(dtype=np.int64)
    size = p["len"].to_numpy(dtype=np.int64, na_value=0)
    data = size > 0
    way = p["dir"].astype("object").to_numpy()
    down = data & (way == "s2c")
    table = pd.DataFrame({"conn": conn, "packets": 1, "data": data, "up": data & (way == "c2s"), "down": down,
                          "wire": p["wire_len"].to_numpy(dtype=np.int64), "payload": np.where(data, size, 0)})
    sums = table.groupby("conn", sort=False).sum()
    # the gaps: between one server data packet and the next of the same flow (flows interleave)
    ts, owner = p["ts"].to_numpy(dtype=np.float64)[down], conn[down]
    by_flow = np.argsort(owner, kind="stable")
    ts, owner = ts[by_flow], owner[by_flow]
    same = owner[1:] == owner[:-1]
    gaps = pd.Series(ts[1:][same] - ts[:-1][same]).groupby(owner[1:][same]).max().to_dict()
    out = {}
    for k, row in zip(sums.index.tolist(), sums.to_dict("records")):
        f = {name: int(v) for name, v in row.items()}
        g = gaps.get(k)
        f["gap"] = None if g is None or g != g else float(g)
        out[int(k)] = f
    return out


def explain(rows: pd.DataFrame) -> list[str]:
    if not len(rows):
        return ["No TCP connection or UDP flow carried data here."]
    out = []
    for r in rows.itertuples(index=False):
        head = (f"conn {r.conn} ({r.transport.upper()}, {r.client} \u2192 {r.server}): {r.data_packets_c2s} data "
                f"packet(s) out ({r.bytes_c2s} B), {r.data_packets_s2c} back ({r.bytes_s2c} B)")
        if r.transport == "tcp":
            head += (f"; {r.retransmissions} segment(s) sent again ({r.lost_before_capture} of them after an "
                     f"original lost before the capture point) and {r.ack_only} segment(s) that only acknowledged")
        else:
            head += (f"; {r.unanswered} datagram(s) got no reply -- lost on the way out or back, and never sent "
                     f"again" if r.unanswered else "; every datagram got its reply")
        head += f". {r.overhead:.0%} of the bytes on the wire were headers."
        if r.longest_gap_ms is not None and not pd.isna(r.longest_gap_ms):
            head += f" The longest silence between data from the server: {ms_text(r.longest_gap_ms)}."
        out.append(head)
    if {"tcp", "udp"} <= set(rows["transport"]):
        t = rows[rows["transport"] == "tcp"].iloc[0]
        u = rows[rows["transport"] == "udp"].iloc[0]
        # First: it answers the question, and a big capture's answer shows only its first sentences.
        out.insert(0, f"Side by side: TCP delivered everything at the price of {t.retransmissions} resent segment(s) "
                      f"and the waits behind them (longest {ms_text(t.longest_gap_ms)}); UDP kept its pace (longest "
                      f"{ms_text(u.longest_gap_ms)}) and lost {u.unanswered} exchange(s). Headers: "
                      f"{t.overhead:.0%} of TCP's wire bytes, {u.overhead:.0%} of UDP's.")
    return out



def _chart(tl, rows, theme):
    from traceviz.charts.transports import arrivals_chart
    return arrivals_chart(tl.packets, tl.events, rows, theme=theme, resent=RESENT)


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
