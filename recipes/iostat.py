"""How did traffic and trouble spread over the capture?

I/O statistics as tshark's ``-z io,stat`` and Wireshark's I/O Graph show
them: frames and frame bytes in each interval from the first packet on, with
the HTTP requests that started and the TCP events (retransmissions, lost
segments, duplicate ACKs, zero windows, resets) that happened in it.  The
interval is chosen to give about sixty of them; ``traceviz iostat FILE
--interval 100ms --where ...`` picks it and filters the packets.

    python recipes/iostat.py capture.pcap [--conn N] [--chart io.html]
"""

from __future__ import annotations

from traceviz.assemble.iostat import EVENT_GROUPS, FIELDS, intervals, nice_interval
from traceviz.errors import InputError
from traceviz.recipe import Finding

NAME = "iostat"
NEEDS = "packets or HTTP requests with times"
FAILS_ON = "an interval with TCP trouble: retransmissions, lost segments, zero windows or resets"
FIGURES = {"iostat": "frames and bits per second per interval, with requests started and TCP events stacked below"}
EXAMPLE = "h2-stalls"
TITLE = "I/O statistics"


def applies(tl) -> bool:
    return len(tl.packets) > 0 or len(tl.requests) > 0


def analyze(tl, conn: int | None = None, interval: float | None = None, packets=None) -> Finding:
    """``interval`` seconds per row (default: about sixty rows); ``packets`` a filtered
    subset of ``tl.packets`` to count (requests and events then follow their connections)."""
    conns = None
    if conn is not None:
        if not _has_conn(tl, conn):
            raise InputError(tl.source.path, f"no connection {conn}")
        packets = tl.packets[tl.packets["conn"] == conn]
        conns = [conn]
    elif packets is not None:
        conns = packets["conn"].dropna().unique().tolist()
    step = interval or nice_interval(tl)
    rows = intervals(tl, step, packets, conns)
    title = TITLE + (f": connection {conn}" if conn is not None else "")
    return Finding(title=title, question=__doc__.split("\n")[0], rows=rows, summary=summarize(rows, step),
                   answer=explain(rows, step), json_fields=FIELDS, problems=problems(rows),
                   figures={"iostat": lambda theme="light": _figure(rows, step, theme, title)})


def _has_conn(tl, conn: int) -> bool:
    """Whether ``conn`` is a connection of the file: one of its packets' (every connection of a
    capture has some) or, in a browser export, of its requests'.  Not the connections table's:
    its TLS and HTTP columns would cost ``traceviz iostat`` every TLS session decoded."""
    table = tl.packets if len(tl.packets) else tl.requests
    return bool(len(table)) and bool((table["conn"] == conn).fillna(False).any())


def problems(rows) -> list[str]:
    trouble = [c for c in EVENT_GROUPS if c != "dup_acks"]
    out = []
    for r in rows[rows[trouble].sum(axis=1) > 0].itertuples(index=False) if len(rows) else []:
        said = ", ".join(f"{getattr(r, c)} {c.replace('_', ' ')}" for c in trouble if getattr(r, c))
        out.append(f"the interval starting {r.interval:.3f} s in had {said}")
    return out


def summarize(rows, step: float) -> dict:
    out = {"interval_s": step, "intervals": len(rows)}
    if len(rows) and rows["frames"].notna().any():
        out.update(frames=int(rows["frames"].sum()), bytes=int(rows["bytes"].sum()))
    out["requests"] = int(rows["requests"].sum()) if len(rows) else 0
    for column in EVENT_GROUPS:
        out[column] = int(rows[column].sum()) if len(rows) else 0
    return out


def explain(rows, step: float) -> list[str]:
    if not len(rows):
        return ["Nothing to count: the file has no packets or requests."]
    lines = []
    if rows["frames"].notna().any() and rows["bytes"].sum():
        peak = rows.loc[rows["bits_per_s"].idxmax()]
        busy = int((rows["frames"] > 0).sum())
        lines.append(f"Throughput peaked at {_rate(peak['bits_per_s'])} in the interval starting "
                     f"{peak['interval']:.3f} s in; {busy} of {len(rows)} intervals carried packets.")
    trouble = {c: int(rows[c].sum()) for c in EVENT_GROUPS if rows[c].sum()}
    if trouble:
        worst = max(trouble, key=trouble.get)
        at = rows.loc[rows[worst].idxmax(), "interval"]
        lines.append(", ".join(f"{n} {c.replace('_', ' ')}" for c, n in trouble.items())
                     + f"; the most {worst.replace('_', ' ')} came in the interval starting {at:.3f} s in.")
    else:
        lines.append("No retransmissions, lost segments, duplicate ACKs, zero windows or resets.")
    return lines


def _rate(bps: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.0f} bit/s"


def _figure(rows, step, theme, title):
    from traceviz.charts.iostat import iostat
    return iostat(rows, step, theme, title)


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
