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

import pandas as pd

from traceviz.charts.text import ms_text
from traceviz.recipe import Finding

NAME = "transports"
NEEDS = "a TCP connection or UDP flow that carried data"
FAILS_ON = "UDP datagrams that got no reply (lost on the way, and nothing sent them again)"
TABLES = ("connections", "events", "packets")   # what analyze() and the figures read: load() builds only these
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
    p = tl.packets
    p = p[p["conn"].isin(c["conn"].tolist()).to_numpy(dtype=bool, na_value=False)]
    ev = tl.events[(tl.events["layer"].astype("object") == "tcp").to_numpy(dtype=bool, na_value=False)]
    kinds = ev.groupby(["conn", "kind"]).size()
    out = []
    for r in c.itertuples(index=False):
        mine = p[(p["conn"] == r.conn).to_numpy(dtype=bool, na_value=False)]
        data = mine[(mine["len"].fillna(0) > 0).to_numpy(dtype=bool)]
        up, down = data[data["dir"] == "c2s"], data[data["dir"] == "s2c"]
        wire = int(mine["wire_len"].sum())
        payload = int(data["len"].sum())
        gaps = down["ts"].diff().dropna()
        tcp = r.transport == "tcp"
        out.append({
            "conn": int(r.conn), "transport": r.transport, "client": r.client, "server": r.server,
            "data_packets_c2s": int(len(up)), "data_packets_s2c": int(len(down)),
            "bytes_c2s": int(r.bytes_c2s), "bytes_s2c": int(r.bytes_s2c), "wire_bytes": wire,
            "overhead": round(1 - payload / wire, 4) if wire else None,
            "ack_only": int(len(mine) - len(data)) if tcp else None,
            "retransmissions": sum(int(kinds.get((r.conn, k), 0)) for k in RESENT) if tcp else None,
            "lost_before_capture": int(kinds.get((r.conn, "lost-segment"), 0)) if tcp else None,
            "unanswered": max(int(len(up)) - int(len(down)), 0) if not tcp else None,
            "duration": float(r.end - r.start),
            "longest_gap_ms": round(float(gaps.max()) * 1000, 3) if len(gaps) else None,
        })
    ints = ["ack_only", "retransmissions", "lost_before_capture", "unanswered"]
    return pd.DataFrame(out, columns=JSON_FIELDS).astype({k: "Int64" for k in ints})


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
        out.append(f"Side by side: TCP delivered everything at the price of {t.retransmissions} resent segment(s) "
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
