"""How did updates reach each client -- pushed (server-sent events), long polls or short polls -- and at what cost?

Three ways to follow data that changes on a server.  *Push*: the client
opens one request and the server streams events down it as they happen
(``text/event-stream``; a WebSocket works alike).  *Long polling*: the
client asks "anything after version N?" and the server holds the request
until there is (or a timeout), then the client asks again at once.  *Short
polling*: the client asks every few hundred ms and mostly hears "nothing
new" (304).  One row per follower (a connection doing one of these): the
requests it made, the updates it saw (an SSE event's id, a poll answer's
new ETag; the first answer on a poll connection is its starting state),
updates it never saw because two arrived between polls, requests per
update, how far each sighting trailed the earliest sighting of the same
update anywhere in the capture, and how long requests sat parked at the
server (connections held open doing nothing).

    python recipes/polling.py capture.pcapng [--chart feeds.html]
"""

from __future__ import annotations

import pandas as pd

from traceviz.charts.text import ms_text
from traceviz.recipe import Finding

NAME = "polling"
NEEDS = "a text/event-stream response, or one URL asked for repeatedly on a connection"
FAILS_ON = "an update a follower never saw on its own (it changed twice between two polls)"
TABLES = ("connections", "events", "requests")   # what analyze() and the figures read: load() builds only these
FIGURES = {"feeds": "each follower's requests and the moment it saw each update"}
EXAMPLE = "push-vs-poll"
TITLE = "Push vs pull: SSE, long polling, short polling"

JSON_FIELDS = ["conn", "client", "url", "style", "requests", "updates", "updates_missed", "empty_answers",
               "requests_per_update", "delay_p50_ms", "delay_max_ms", "parked_s", "seen"]
TABLE_FIELDS = ["conn", "url", "style", "requests", "updates", "updates_missed", "empty_answers",
                "requests_per_update", "delay_p50_ms", "delay_max_ms", "parked_s"]
MIN_POLLS = 3           # repeated requests for one URL on one connection before they count as polling
HELD = 5                # a poll answered after this many round trips was held by the server: long polling


def applies(tl) -> bool:
    sse = (tl.events["layer"].astype("object") == "sse").any()
    return bool(sse) or bool(len(_polls(tl)))


def analyze(tl, conn: int | None = None) -> Finding:
    rows = follower_rows(tl)
    if conn is not None:
        rows = rows[rows["conn"] == conn].reset_index(drop=True)
    answer, problems = explain(rows)
    figures = {}
    if len(rows):
        figures["feeds"] = lambda theme="light": _chart(tl, rows, theme)
    return Finding(title=TITLE, question=__doc__.split("\n")[0], rows=rows,
                   summary={"followers": int(len(rows)),
                            "styles": {k: int(v) for k, v in rows["style"].value_counts().items()}},
                   answer=answer, figures=figures, json_fields=JSON_FIELDS, table_fields=TABLE_FIELDS,
                   problems=problems)


# --- who followed how -----------------------------------------------------------------------

def _polls(tl) -> pd.DataFrame:
    rq = tl.requests[tl.requests["status"].notna().to_numpy(dtype=bool, na_value=False)]
    if not len(rq):
        return rq
    counts = rq.groupby(["conn", "url"])["request"].transform("count")
    return rq[(counts >= MIN_POLLS).to_numpy(dtype=bool, na_value=False)]


def sightings(tl) -> list[dict]:
    """Every moment a follower learnt of an update: (conn, url, style, id, ts)."""
    out = []
    ev = tl.events
    sse = ev[(ev["layer"].astype("object") == "sse").to_numpy(dtype=bool, na_value=False)
             & (ev["kind"].astype("object") == "event").to_numpy(dtype=bool, na_value=False)]
    urls = _sse_urls(tl)
    for r in sse.itertuples(index=False):
        if isinstance(r.sse_id, str):
            out.append({"conn": int(r.conn), "url": urls.get((int(r.conn), int(r.response_frame))),
                        "style": "push (SSE)", "id": r.sse_id,
                        "ts": float(r.ts)})
    rtt = _rtt(tl)
    for (conn, url), g in _polls(tl).groupby(["conn", "url"]):
        g = g.sort_values("start")
        style = "long polling" if (g["ttfb"] > HELD * rtt).any() else "short polling"
        tag = None
        for i, r in enumerate(g.itertuples(index=False)):
            new = _tag(getattr(r, "etag", None))
            if r.status == 200 and new is not None and new != tag:
                if i > 0:                                   # the first answer is the starting state
                    out.append({"conn": int(conn), "url": url, "style": style, "id": new,
                                "ts": float(r.start) + float(r.ttfb)})
                tag = new
        out.append({"conn": int(conn), "url": url, "style": style, "id": None, "ts": None})
    return out


def follower_rows(tl) -> pd.DataFrame:
    seen = sightings(tl)
    first: dict[str, float] = {}
    for s in seen:
        if s["id"] is not None:
            first[s["id"]] = min(first.get(s["id"], s["ts"]), s["ts"])
    order = sorted(first, key=lambda k: first[k])
    conns = tl.connections.set_index("conn")
    rq = tl.requests
    out = []
    for conn in sorted({s["conn"] for s in seen}):
        mine = [s for s in seen if s["conn"] == conn and s["id"] is not None]
        style = next(s["style"] for s in seen if s["conn"] == conn)
        url = next(s["url"] for s in seen if s["conn"] == conn)
        reqs = rq[(rq["conn"] == conn).to_numpy(dtype=bool, na_value=False)
                  & (rq["url"].astype("object") == url).to_numpy(dtype=bool, na_value=False)]
        delays = [(s["ts"] - first[s["id"]]) * 1000 for s in mine]
        ids = [s["id"] for s in mine]
        since = float(reqs["start"].min()) if style.startswith("push") else float(reqs["end"].min())
        missed = _missed(ids, order, first, since, max((s["ts"] for s in mine), default=since))
        if style.startswith("push"):
            parked = float((reqs["end"] - reqs["start"]).fillna(0).sum())
            empty = 0
        else:
            parked = float(reqs["wait"].fillna(0).sum())
            empty = int((reqs["status"] == 304).sum())
        out.append({
            "conn": conn, "client": conns.loc[conn, "client"] if conn in conns.index else None, "url": url,
            "style": style, "requests": int(len(reqs)), "updates": len(mine), "updates_missed": len(missed),
            "empty_answers": empty,
            "requests_per_update": round(len(reqs) / len(mine), 2) if mine else None,
            "delay_p50_ms": round(float(pd.Series(delays).median()), 3) if delays else None,
            "delay_max_ms": round(max(delays), 3) if delays else None,
            "parked_s": round(parked, 3), "seen": ids,
        })
    return pd.DataFrame(out, columns=JSON_FIELDS)


def _missed(ids: list[str], order: list[str], first: dict, since: float, until: float) -> list[str]:
    """Updates first seen (by anyone) while this follower was following, that it never saw itself:
    two or more changes between its polls reach it as one answer."""
    return [i for i in order if since < first[i] <= until and i not in ids]


def _sse_urls(tl) -> dict[tuple[int, int], str]:
    """(conn, response frame) -> the URL of the request whose response was the event stream."""
    rq = tl.requests
    if "response_frame" not in rq.columns:
        return {}
    return {(int(c), int(f)): u for c, f, u in zip(rq["conn"], rq["response_frame"], rq["url"])
            if not pd.isna(c) and not pd.isna(f)}


def _tag(etag) -> str | None:
    if not isinstance(etag, str):
        return None
    return etag.removeprefix("W/").strip('"')


def _rtt(tl) -> float:
    rtt = pd.to_numeric(tl.connections["handshake_rtt"], errors="coerce").dropna()
    return float(rtt.median()) if len(rtt) else 0.05


# --- the words -------------------------------------------------------------------------------

def explain(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    if not len(rows):
        return ["No one followed a feed here: no event stream, no URL asked for repeatedly."], []
    out, problems = [], []
    for r in rows.itertuples(index=False):
        text = (f"conn {r.conn}, {r.style} ({r.url}): {r.requests} request(s) for {r.updates} update(s)")
        if r.requests_per_update:
            text += f" ({r.requests_per_update:g} per update)"
        if r.empty_answers:
            text += f"; {r.empty_answers} answer(s) said nothing new (304)"
        if r.updates_missed:
            text += f"; {r.updates_missed} update(s) never seen on their own (two changes between polls)"
            problems.append(f"conn {r.conn} ({r.style}, {r.url}) missed {r.updates_missed} update(s): "
                            f"each was replaced before its next poll")
        if r.delay_p50_ms is not None and not pd.isna(r.delay_p50_ms):
            text += (f"; it heard of an update a median {ms_text(r.delay_p50_ms)} (worst {ms_text(r.delay_max_ms)}) "
                     f"after the first client to hear of it")
        if r.parked_s:
            text += f"; requests sat open at the server for {r.parked_s:.2f} s in all"
        out.append(text + ".")
    styles = set(rows["style"])
    quick = rows.sort_values("delay_max_ms", na_position="last").iloc[0]
    # Timed only where two clients heard of one update (no delay: nothing to rank by)
    if len(styles) > 1 and not pd.isna(quick["delay_max_ms"]):
        out.append(f"Fastest to hear: {quick['style']} (worst {ms_text(quick['delay_max_ms'])}). Push and long polling "
                   f"learn of a change about one one-way delay after it; short polling waits for its next poll, "
                   f"and pays for every empty answer.")
    return out, problems



def _chart(tl, rows, theme):
    from traceviz.charts.feeds import feeds_chart
    return feeds_chart(rows, tl.requests, sightings(tl), theme=theme)


if __name__ == "__main__":
    from traceviz.recipe import main
    main(__name__)
