"""Who said what to whom, in order, across every host?

The flow graph (Wireshark's Statistics -> Flow Graph): one lane per host,
one arrow per message, labelled at the highest layer decoded for its frame
(SYN, ClientHello, HEADERS[1]: GET /, 200 OK, FIN), its frame number beside
it.  A reverse proxy captured on its two interfaces is one lane, so client
-> proxy -> upstream reads as one story.  Pure ACKs are left out (the
handshake's third packet stays); a segment whose bytes no event names (part of a
larger message, or bytes no decoder reads) shows as "TCP segment, n bytes".

``traceviz flow FILE --host H --since S --until S --where ...`` narrows it;
the rows (--json) are the arrows.

    python recipes/flow.py capture.pcap [--conn N] [--chart flow.html]
"""

from __future__ import annotations

from traceviz.errors import InputError
from traceviz.recipe import Finding

NAME = "flow"
NEEDS = "packets in a capture"
FAILS_ON = "a connection reset (an RST arrow) among the messages shown"
FIGURES = {"flow": "a sequence diagram with one lane per host, one arrow per message labelled at its highest layer, "
                   "frame numbers beside them"}
EXAMPLE = "proxy-nginx-502-504"
TITLE = "Flow graph"
FIELDS = ["frame", "t", "conn", "src", "dst", "layer", "label", "stream", "src_addr", "dst_addr", "ts"]
LIMIT = 300


def applies(tl) -> bool:
    return len(tl.packets) > 0


def analyze(tl, conn: int | None = None, hosts=None, since: float | None = None, until: float | None = None,
            rows=None) -> Finding:
    """The arrows, filtered by ``conn``, ``hosts`` (addresses or lane names) and a time range
    (seconds since the first packet); ``rows``: arrows already chosen (``--where``)."""
    from traceviz.charts.flowgraph import lane_order, messages

    if conn is not None and not (tl.connections["conn"] == conn).any():
        raise InputError(tl.source.path, f"no connection {conn}")
    msgs = messages(tl, conn, hosts, since, until) if rows is None else rows
    lanes = lane_order(msgs) if len(msgs) else []
    finding = Finding(title=TITLE, question=__doc__.split("\n")[0], rows=msgs[FIELDS] if len(msgs) else msgs,
                      answer=explain(msgs, lanes), summary={"messages": len(msgs), "hosts": len(lanes)},
                      problems=_resets(msgs),
                      json_fields=FIELDS, table_fields=["frame", "t", "src", "dst", "layer", "label"])
    # Drawn from the finding's rows when asked for, so a filter applied to them shows in the figure too.
    finding.figures = {"flow": lambda theme="light": _figure(finding.rows, theme, conn)}
    return finding


def _resets(msgs) -> list[str]:
    """One problem per arrow that carries a RST (the rows found at once: one by one, a
    million arrows took seconds)."""
    if not len(msgs):
        return []
    hit = msgs["label"].astype(str).str.contains("RST", regex=False).to_numpy(dtype=bool, na_value=False)
    return [f"frame {int(frame)}: {src} reset conn {conn} ({label})" for frame, src, conn, label in
            zip(*(msgs.loc[hit, k].tolist() for k in ("frame", "src", "conn", "label")))]


def explain(msgs, lanes) -> list[str]:
    if not len(msgs):
        return ["No messages to draw."]
    first, last = msgs.iloc[0], msgs.iloc[-1]
    lines = [f"{len(msgs)} messages between {len(lanes)} hosts ({', '.join(lanes[:5])}"
             + (", …" if len(lanes) > 5 else "") + ").",
             f"From frame {int(first['frame'])} ({first['label']}) to frame {int(last['frame'])} ({last['label']}), "
             f"{(last['t'] - first['t']) * 1000:.1f} ms."]
    relays = [h for h in lanes if " / " in h]
    if relays:
        lines.append("Relayed through " + ", ".join(relays) + ": one host answering on one leg and asking on the other.")
    return lines


def _figure(rows, theme, conn):
    from traceviz.charts.flowgraph import flowgraph
    title = TITLE + (f": connection {conn}" if conn is not None else "")
    return flowgraph(rows, theme, title, LIMIT)


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
