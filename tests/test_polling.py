"""Server-sent events from an HTTP/1.1 body, fuzzed; then ``push-vs-poll``: one feed followed by SSE,
long polling and short polling, against the feed server's and the followers' own logs (and tshark)."""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bundled import CAPTURES, entry, timeline
from traceviz.decode.http.http1 import HTTP1Connection
from traceviz.decode.http.sse import SSEComment, SSEEvent, SSEStream

CAPTURE = "push-vs-poll"
FACTS = entry(CAPTURE)["facts"]
ONE_WAY_S = FACTS["rtt_ms"] / 2000


def test_event_stream_fields_whatever_the_line_endings():
    body = b": hello\r\nid: 7\r\nevent: price\r\ndata: a\r\ndata: b\r\nretry: 3000\r\n\r\ndata: plain\n\n"
    for chunk in (1, 5, len(body)):
        sse = SSEStream()
        for i in range(0, len(body), chunk):
            sse.receive("s2c", body[i:i + chunk], 1 + i, 1.0 + i)
        events = [e for e in sse.events if isinstance(e, SSEEvent)]
        assert [(e.event, e.id, e.data, e.retry) for e in events] == [("price", "7", "a\nb", 3000),
                                                                     ("message", None, "plain", None)]
        assert [e.text for e in sse.events if isinstance(e, SSEComment)] == ["hello"]


def test_an_http1_event_stream_body_is_read_through_chunking():
    h = HTTP1Connection()
    h.receive("c2s", b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n", 1, 1.0)
    h.receive("s2c", b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
              2, 1.1)
    msg = b"id: 1\ndata: {}\n\n"
    h.receive("s2c", f"{len(msg):x}\r\n".encode() + msg + b"\r\n", 3, 1.2)
    h.receive("s2c", f"{len(msg):x}\r\n".encode() + msg.replace(b"1", b"2") + b"\r\n0\r\n\r\n", 4, 1.3)
    (frame, machine), = h.carried.items()
    assert frame == 2 and [(e.id, e.frame) for e in machine.events] == [("1", 3), ("2", 4)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=10), st.booleans())
def test_hostile_bodies_never_raise(chunks, gap):
    sse = SSEStream()
    for i, c in enumerate(chunks):
        sse.receive("s2c", c, i + 1, float(i))
        if gap and i == 1:
            sse.receive_gap("s2c", 10)
    sse.end_of_stream("s2c")
    assert all(isinstance(e, (SSEEvent, SSEComment)) for e in sse.events)


# --- the capture -----------------------------------------------------------------------------

def followers():
    from traceviz.recipe import discover, load_module
    f = load_module(discover()["polling"]).analyze(timeline(CAPTURE))
    return f, f.rows.set_index("client")


STYLE = {"sse": "push (SSE)", "long": "long polling", "short": "short polling"}


@pytest.mark.parametrize("who", FACTS["followers"], ids=[x["kind"] for x in FACTS["followers"]])
def test_each_follower_saw_what_it_logged(who):
    _, rows = followers()
    r = rows.loc[who["client"]]
    assert r["style"] == STYLE[who["kind"]]
    assert r["requests"] == who["requests"]
    got = [g for g in who["got"] if g["id"] > 0]        # id 0: a poller's first answer, the starting state
    assert r["seen"] == [str(g["id"]) for g in got]
    created = {u["id"] for u in FACTS["updates"]}
    span = [u["id"] for u in FACTS["updates"] if got[0]["id"] <= u["id"] <= got[-1]["id"]]
    missed = [i for i in span if i not in {g["id"] for g in got}]
    if who["kind"] == "short":
        # the first update falls in the short poller's first wait too, if it saw a later one first
        missed += [i for i in created if i < got[0]["id"]]
    assert r["updates_missed"] == len(set(missed))
    flagged = [p for p in followers()[0].problems if p.startswith(f"conn {r['conn']} ")]     # --fail
    assert len(flagged) == (1 if missed else 0)


@pytest.mark.parametrize("who", FACTS["followers"], ids=[x["kind"] for x in FACTS["followers"]])
def test_sightings_are_when_the_client_read_them(who):
    from traceviz.recipe import discover, load_module
    seen = [s for s in load_module(discover()["polling"]).sightings(timeline(CAPTURE)) if s["id"] is not None]
    conn = int(followers()[1].loc[who["client"], "conn"])
    mine = {s["id"]: s["ts"] for s in seen if s["conn"] == conn}
    made = {str(u["id"]): u["ts"] for u in FACTS["updates"]}
    for g in (g for g in who["got"] if g["id"] > 0):
        at = mine[str(g["id"])]
        # The capture sees the bytes before the client reads them, a little before it logs.
        assert -0.001 <= g["ts"] - at <= 0.030, (g, at)
        late = at - made[str(g["id"])]
        if who["kind"] in ("sse", "long"):
            assert ONE_WAY_S - 0.001 <= late <= ONE_WAY_S + 0.030
        else:
            assert ONE_WAY_S - 0.001 <= late <= FACTS["short_poll_interval_s"] + 2 * ONE_WAY_S + 0.1


def test_empty_answers_and_polls_match_tshark(tshark):
    out = subprocess.run([tshark, "-r", str(CAPTURES / f"{CAPTURE}.pcapng"), "-Y", "http.response", "-T", "fields",
                          "-e", "tcp.stream", "-e", "http.response.code"],
                         capture_output=True, text=True, check=True).stdout
    codes = Counter(tuple(line.split("\t")) for line in out.splitlines())
    _, rows = followers()
    for r in rows.itertuples():
        assert r.empty_answers == codes.get((str(r.conn), "304"), 0)
        assert r.requests == sum(n for (s, _), n in codes.items() if s == str(r.conn))
    server = Counter((e["client"], e["status"]) for e in FACTS["server_log"] if e["event"] == "answer")
    for r in rows.itertuples():
        assert r.empty_answers == server.get((r.Index, 304), 0)


def test_words_and_chart():
    from traceviz.charts.feeds import feeds_chart
    from traceviz.recipe import discover, load_module
    recipe = load_module(discover()["polling"])
    f, rows = followers()
    words = " ".join(f.answer)
    assert "Fastest to hear: push (SSE)" in words or "Fastest to hear: long polling" in words
    tl = timeline(CAPTURE)
    seen = recipe.sightings(tl)
    for theme in ("light", "talk"):
        fig = feeds_chart(f.rows, tl.requests, seen, theme=theme)
        stars = next(t for t in fig.data if t.name.startswith("update seen"))
        assert len(stars.x) == sum(len(r) for r in f.rows["seen"])
        assert len(fig.layout.shapes) == len(FACTS["updates"])         # one line per update's first sighting


def test_a_retry_of_other_digits_is_no_retry():
    """``"\u00b2".isdigit()`` is true but ``int`` refuses it (found by fuzzing): only ASCII digits set a retry."""
    sse = SSEStream()
    sse.receive("s2c", "retry: \u00b2\ndata: a\n\nretry: 12\ndata: b\n\n".encode(), 1, 1.0)
    assert [(e.data, e.retry) for e in sse.events if isinstance(e, SSEEvent)] == [("a", None), ("b", 12)]


def test_followers_of_several_styles_with_no_delay_to_compare_are_not_ranked():
    """Feeds no second client heard of (no delays: a big capture of short polls found it, where
    the recipe stopped with an internal error) are described, and no style is called fastest."""
    from traceviz.recipe import discover, load_module
    recipe = load_module(discover()["polling"])
    f, rows = followers()
    assert len(set(f.rows["style"])) > 1
    untimed = f.rows.assign(delay_p50_ms=None, delay_max_ms=None)
    answer, _ = recipe.explain(untimed)
    assert len(answer) == len(untimed) and not any("Fastest to hear" in line for line in answer)
    assert any("Fastest to hear" in line for line in recipe.explain(f.rows)[0])
