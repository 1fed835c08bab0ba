"""DNS (decode/dns.py via dpkt) and the journey of a request: the parser from bytes, fuzzed, then the
bundled ``journey-https`` capture against dnsmasq's log, curl's own ``-w`` timings and tshark."""

from __future__ import annotations

import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bundled import CAPTURES, entry, timeline
from traceviz.decode.dns import DNSError, DNSMessage, parse

CAPTURE = "journey-https"
FACTS = entry(CAPTURE)["facts"]


def qname(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def dns_message(qid: int, flags: int, questions, answers=()) -> bytes:
    """A DNS message laid out as RFC 1035 section 4 says (answers use a pointer to the first name)."""
    out = struct.pack("!HHHHHH", qid, flags, len(questions), len(answers), 0, 0)
    for name, qtype in questions:
        out += qname(name) + struct.pack("!HH", qtype, 1)
    for qtype, ttl, rdata in answers:
        out += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, ttl, len(rdata)) + rdata
    return out


def test_a_query_and_its_answer():
    q = parse(dns_message(0x1234, 0x0100, [("www.lab.test", 1)]), 1, 1.0)
    assert isinstance(q, DNSMessage) and not q.response and q.recursion_desired
    assert q.questions == (("www.lab.test", "A"),) and q.id == 0x1234
    r = parse(dns_message(0x1234, 0x8180, [("www.lab.test", 1)], [(1, 300, bytes([10, 94, 0, 2]))]), 2, 1.1)
    assert r.response and r.rcode == "NOERROR" and r.recursion_available
    assert r.answers == (("www.lab.test", "A", 300, "10.94.0.2"),)


def test_nxdomain_and_aaaa():
    r = parse(dns_message(7, 0x8183, [("nope.test", 28)]), 3, 1.0)
    assert r.rcode == "NXDOMAIN" and r.questions == (("nope.test", "AAAA"),) and r.answers == ()
    v6 = parse(dns_message(8, 0x8180, [("x.test", 28)], [(28, 60, bytes(15) + b"\1")]), 4, 1.0)
    assert v6.answers[0][3] == "::1"


def test_damaged_messages_are_errors_not_exceptions():
    assert isinstance(parse(b"\x00\x01", 1, 0.0), DNSError)
    cut = dns_message(1, 0x0100, [("www.lab.test", 1)])[:-3]
    assert isinstance(parse(cut, 1, 0.0), DNSError)
    loop = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    assert isinstance(parse(loop, 1, 0.0), (DNSError, DNSMessage))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_bytes_never_raise(data):
    m = parse(data, 1, 0.0)
    assert isinstance(m, (DNSMessage, DNSError))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40), st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=6))
def test_damaged_real_messages_never_raise(cut, edits):
    data = bytearray(dns_message(9, 0x8180, [("www.lab.test", 1)], [(1, 300, bytes([10, 94, 0, 2]))]))
    for at, b in edits:
        if at < len(data):
            data[at] = b
    assert isinstance(parse(bytes(data[:len(data) - cut]), 1, 0.0), (DNSMessage, DNSError))


# --- the bundled capture ----------------------------------------------------------------------

def dns_events():
    ev = timeline(CAPTURE).events
    return ev[(ev["layer"] == "dns").to_numpy(dtype=bool, na_value=False)].sort_values("frame")


def test_queries_and_answers_match_dnsmasqs_log():
    ev = dns_events()
    log = FACTS["dns_log"]
    queries = ev[ev["kind"] == "query"]
    assert sorted(zip(queries["qtype"], queries["qname"])) == sorted(
        (e["type"], e["name"]) for e in log if e["kind"] == "query")
    flows = timeline(CAPTURE).connections.set_index("conn")
    for e in (e for e in log if e["kind"] == "query"):
        assert flows.loc[int(queries["conn"].iloc[0]), "client"] == e["client"]
    said = [e["value"] for e in log if e["kind"] == "config"]
    answered = {a.split(" ", 1)[1] for x in ev.loc[ev["kind"] == "response", "answers"] for a in x}
    assert answered == {v for v in said if not v.startswith("NODATA")}
    responses = ev[ev["kind"] == "response"]
    empty = responses[responses["answers"].map(len) == 0]
    # dnsmasq's "is NODATA-IPv6": a NOERROR answer to the AAAA question with no records in it.
    assert sorted(empty["qtype"]) == sorted("AAAA" for v in said if v == "NODATA-IPv6")
    assert set(empty["rcode"]) <= {"NOERROR"}
    # Every query got its answer, each after at least the resolver's round trip.
    took = ev.loc[ev["kind"] == "response", "duration"]
    assert took.notna().sum() == len(queries)
    assert (took * 1000 >= FACTS["resolver_rtt_ms"] - 0.5).all()
    assert set(timeline(CAPTURE).connections.loc[ev["conn"].unique(), "app"]) == {"dns"}


def test_dns_matches_tshark(tshark):
    fields = ["frame.number", "dns.id", "dns.flags.response", "dns.flags.rcode", "dns.qry.name", "dns.qry.type",
              "dns.a", "dns.resp.ttl"]
    argv = [tshark, "-r", str(CAPTURES / f"{CAPTURE}.pcapng"), "-Y", "dns", "-T", "fields"]
    for f in fields:
        argv += ["-e", f]
    theirs = []
    for line in subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines():
        v = dict(zip(fields, line.split("\t")))
        theirs.append((int(v["frame.number"]), int(v["dns.id"], 16), v["dns.flags.response"] in ("1", "True"),
                       v["dns.qry.name"], v["dns.a"] or None, int(v["dns.resp.ttl"]) if v["dns.resp.ttl"] else None))
    ours = []
    for r in dns_events().itertuples():
        a = [x.split(" ", 1)[1] for x in (r.answers or []) if x.startswith("A ")]
        ttl = None
        if a:
            ttl = int(r.detail.rsplit("(ttl ", 1)[1].rstrip(")"))
        ours.append((int(r.frame), int(r.dns_id), r.kind == "response", r.qname, a[0] if a else None, ttl))
    assert ours == theirs


def test_the_request_carries_its_lookup():
    rq = timeline(CAPTURE).requests
    assert len(rq) == FACTS["requests"] and int(rq["status"].iloc[0]) == FACTS["curl"]["response_code"]
    assert rq["url"].iloc[0] == FACTS["curl"]["url"]
    assert rq["dns_name"].iloc[0] == FACTS["server_log"][0]["host"]
    ev = dns_events()
    assert rq["dns"].iloc[0] == pytest.approx(ev["ts"].max() - ev["ts"].min())
    # As a browser's HAR counts it: the request starts at its lookup, and its phases add up to its end.
    first = rq.iloc[0]
    assert first["start"] == pytest.approx(ev["ts"].min())
    phases = first[["blocked", "dns", "connect", "tls", "send", "wait", "receive"]].astype(float).fillna(0).sum()
    assert first["start"] + phases == pytest.approx(first["end"], abs=1e-6)
    assert first["start"] + first["ttfb"] == pytest.approx(first["end"] - first["receive"], abs=1e-6)


def journey():
    from traceviz.recipe import discover, load_module
    return load_module(discover()["journey"]).analyze(timeline(CAPTURE))


def test_journey_phases_against_the_configured_path():
    r = journey().rows.iloc[0]
    rtt, resolver = FACTS["rtt_ms"], FACTS["resolver_rtt_ms"]
    assert resolver - 0.5 <= r["dns_ms"] <= resolver + 15
    assert rtt - 0.5 <= r["connect_ms"] <= rtt + 8
    assert r["tls_ms"] >= rtt - 0.5                          # TLS 1.3: one round trip before the request
    assert r["wait_ms"] >= rtt - 0.5                         # the request's own round trip
    assert r["resolver"].startswith(FACTS["dns_log"][0]["value"].rsplit(".", 1)[0])


def test_journey_marks_agree_with_curls_own_timings():
    """curl's clock starts before its first DNS query and stops after reading; the capture's starts at the
    query. So each of curl's marks is later than ours, by about the same offset, never earlier."""
    r = journey().rows.iloc[0]
    curl = FACTS["curl"]
    offset = curl["time_namelookup"] - r["time_namelookup"]
    assert offset >= -0.001
    for key in ("time_connect", "time_appconnect", "time_starttransfer", "time_total"):
        late = curl[key] - r[key]
        assert -0.001 <= late <= offset + 0.030, (key, curl[key], r[key])
    # The order of the phases is the same.
    ours = [r[k] for k in ("time_namelookup", "time_connect", "time_appconnect", "time_starttransfer", "time_total")]
    assert ours == sorted(ours)


def test_journey_words_and_chart():
    f = journey()
    words = " ".join(f.answer)
    assert "looking up www.lab.test took" in words and "time_namelookup" in words
    from traceviz.charts.journey import journey_chart
    rows = f.rows.copy()
    rows["url"] = "https://<b>evil</b>/"
    for theme in ("light", "talk"):
        fig = journey_chart(rows, theme=theme)
        assert [t.name for t in fig.data] == ["DNS lookup", "client (resolver \u2192 SYN)", "TCP handshake",
                                              "TLS handshake", "request \u2192 first byte", "response body"]
        assert "<b>evil" not in fig.layout.title.text and "&lt;b&gt;evil" in fig.layout.title.text


def test_the_story_follows_curls_own_verbose_view():
    f = journey()
    start = f.answer.index("The journey on the wire, as curl -v tells it:")
    story = f.answer[start + 1:]
    verbose = FACTS["curl_verbose"]
    # curl's view and the wire's tell the same steps in the same order.
    theirs = [next(i for i, x in enumerate(verbose) if x.startswith(p)) for p in
              ("*   Trying", "* TLSv1.3 (OUT), TLS handshake, Client hello", "> GET /index.html", "< HTTP/1.1 200")]
    ours = [next(i for i, x in enumerate(story) if k in x) for k in
            ("TCP SYN", "TLS ClientHello", "HTTP request: GET /index.html", "HTTP response: 200")]
    assert theirs == sorted(theirs) and ours == sorted(ours)
    assert story[0].startswith("> ") and "DNS query" in story[0]



def test_each_new_connections_marks_are_its_own_on_every_bundled_capture():
    """A request that opened its connection starts from that connection's own SYN and ACK (looked
    up once per connection, not a row of the table per request), and a DNS lookup it carries
    ended before that connection started."""
    import json

    import pandas as pd

    import traceviz
    from traceviz.recipe import discover, load_module
    recipe = load_module(discover()["journey"])
    names = [e["name"] for e in json.loads((CAPTURES / "manifest.json").read_text())["captures"]
             if (CAPTURES / f"{e['name']}.pcapng").is_file()]
    checked = looked_up = 0
    for name in names:
        tl = traceviz.load(CAPTURES / f"{name}.pcapng", tables=recipe.TABLES)
        if not recipe.applies(tl):
            continue
        conns = tl.connections.set_index("conn")
        for r in recipe.analyze(tl).rows.itertuples(index=False):
            if r.reused_connection or r.conn is None or pd.isna(r.conn):
                continue
            c = conns.loc[int(r.conn)]
            for mark in ("syn", "ack"):
                mine = getattr(r, mark)
                assert (mine is None or pd.isna(mine)) if pd.isna(c[mark]) else mine == float(c[mark]), name
            if r.dns_end is not None and not pd.isna(r.dns_end):
                assert r.dns_end <= float(c["start"]), name
                looked_up += 1
            checked += 1
    assert checked >= 40 and looked_up >= 1
