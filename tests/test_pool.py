"""Connection pools, limits and leaks: the ``connection-pool`` capture (haproxy, both legs) against the
client's own log, haproxy's log (queue times, 503s) and tshark."""

from __future__ import annotations

import subprocess
from collections import Counter

import pandas as pd

from bundled import CAPTURES, entry, timeline
from traceviz.recipe import discover, load_module
from traceviz.stats import most_at_once, request_sent_at, steps

POOL = load_module(discover()["pool"])

CAPTURE = "connection-pool"
FACTS = entry(CAPTURE)["facts"]


def test_counting_what_is_open_at_once():
    assert most_at_once([(0, 2), (1, 3), (2, 4)]) == 2          # an end at t closes before a start at t
    assert most_at_once([(0, 5), (1, 2), (1.5, 3)]) == 3
    assert steps([(0, 1)]) == ([0, 1], [1, 0])
    assert most_at_once([]) == 0


def rows():
    from traceviz.recipe import discover, load_module
    f = load_module(discover()["pool"]).analyze(timeline(CAPTURE))
    return f, f.rows


def row(server_port: int):
    _, r = rows()
    return r[r["server"].str.endswith(f":{server_port}") & (r["leg"] == "client")].iloc[0]


def test_the_client_pool():
    pool = FACTS["pool"]
    r = row(8080)
    assert r["connections"] == len({q["client"] for q in pool["requests"]}) == pool["pool_size"]
    assert r["requests"] == len(pool["requests"])
    assert r["max_open"] == r["max_in_flight"] == pool["pool_size"]
    # Every request the client's log shows waiting for a connection went out as soon as one was free.
    waited = [q for q in pool["requests"] if q["blocked_s"] > 0.1]
    assert r["queued_on_conn"] == len(waited)


def test_the_server_limit_queue_and_503():
    lim, hap = FACTS["limit"], [h for h in FACTS["haproxy_log"] if h["frontend"] == "tight"]
    r = row(8081)
    assert r["status_503"] == sum(q["status"] == 503 for q in lim["requests"]) == sum(
        h["status"] == 503 for h in hap)
    assert r["upstream_max_in_flight"] == FACTS["limits"]["server_maxconn"]
    queued = sorted(h["Tw"] for h in hap if h["status"] == 200 and h["Tw"] > 0)
    assert len(r["proxy_wait_ms"]) == len(queued)
    for ours, theirs in zip(r["proxy_wait_ms"], queued):
        assert abs(ours - theirs) <= 15, (ours, theirs)        # haproxy's Tw: time in its queue
    rq = timeline(CAPTURE).requests
    refused = rq[(rq["status"] == 503).to_numpy(dtype=bool, na_value=False)]
    # From the request's own first byte: a connection's first request counts its ttfb from the SYN.
    for answered in refused["start"] + refused["ttfb"] - request_sent_at(refused):
        assert abs(answered * 1000 - FACTS["limits"]["timeout_queue_ms"]) <= 20
    assert set(refused["cause"]) == {"no-upstream"}


def test_the_leak():
    leak = FACTS["leak"]["connections"]
    r = row(8082)
    assert r["connections"] == r["max_open"] == len(leak)
    assert r["left_open"] == sum(c["status"] == 200 for c in leak)
    assert r["unanswered"] == sum(c["status"] is None for c in leak)
    conns = timeline(CAPTURE).connections.set_index("client")
    for c in leak:
        assert conns.loc[c["client"], "close"] == "open"          # never closed while the capture ran


def test_answers_match_tshark(tshark):
    out = subprocess.run([tshark, "-r", str(CAPTURES / f"{CAPTURE}.pcapng"), "-Y", "http.response && frame.interface_id == 0",
                          "-T", "fields", "-e", "tcp.srcport", "-e", "http.response.code"],
                         capture_output=True, text=True, check=True).stdout
    codes = Counter(tuple(x.split("\t")) for x in out.splitlines())
    _, r = rows()
    for port in (8080, 8081, 8082):
        mine = row(port)
        answered = sum(n for (p, _), n in codes.items() if p == str(port))
        assert answered == mine["requests"] - mine["unanswered"]
        assert codes.get((str(port), "503"), 0) == mine["status_503"]


def test_words_problems_and_chart():
    f, _ = rows()
    assert len(f.problems) == 3                 # the 503s, the leak, the unanswered
    words = " ".join(f.answer)
    assert "queued for a connection (a pool of 3" in words and "the proxy's queue timed out" in words
    from traceviz.charts.pool import concurrency_chart
    tl = timeline(CAPTURE)
    for theme in ("light", "talk"):
        fig = concurrency_chart(tl.connections, tl.requests, tl.packets, theme=theme)
        leak = next(t for t in fig.data if t.name.startswith("10.94.0.2:8082") and "connections" in t.name)
        assert max(leak.y) == len(FACTS["leak"]["connections"])


def _plain_left_behind(g, mine, still, last_ts) -> list[float]:
    """The leaked connections found the plain way: a filter of the table per connection."""
    out = []
    for k, client in zip(g.loc[still, "conn"], g.loc[still, "client"]):
        mine_k = mine[mine["conn"] == k]
        done = mine_k["end"].dropna()
        if not len(done) or mine_k["status"].isna().any() or last_ts - float(done.max()) < POOL.LEFT_IDLE:
            continue
        host = str(client).rsplit(":", 1)[0]
        later = g[(g["start"] > float(done.max())).to_numpy(dtype=bool, na_value=False)
                  & g["client"].astype(str).str.startswith(host + ":").to_numpy(dtype=bool, na_value=False)]
        if len(later):
            out.append(last_ts - float(done.max()))
    return out


def _known(by_conn: dict) -> list:
    """``_by_conn``'s lists with NaN as None (NaN equals nothing), the connections in order."""
    return [(k, [[None if pd.isna(v) else v for v in lst] for lst in lists]) for k, lists in by_conn.items()]


def _pool_files():
    from conftest import CORPUS, ROOT
    return sorted((ROOT / "captures").glob("*.pcapng")) + sorted(
        p for p in CORPUS.glob("pcap/**/*.pcap*") if "corrupt" not in p.parts)


def test_each_servers_requests_are_the_ones_a_filter_of_the_table_finds():
    """The requests of each server's connections, their upstream children and the leaked
    connections, found from an index built once, against a filter of the whole table per
    server and per connection, on every bundled and corpus capture pool applies to."""
    import traceviz
    from traceviz.stats import request_sent_at
    groups = leaked = 0
    for path in _pool_files():
        tl = traceviz.load(path, tables=POOL.TABLES)
        if not POOL.applies(tl):
            continue
        rq = tl.requests.assign(start=request_sent_at(tl.requests))
        index = POOL._Index(rq)
        last_ts = float(tl.packets["ts"].max())
        c = tl.connections[tl.connections["transport"] == "tcp"]
        for _, g in c.groupby("server", sort=False):
            conns = g["conn"].tolist()
            mine = index.of(set(conns))
            pd.testing.assert_frame_equal(mine, rq[rq["conn"].isin(conns).to_numpy(dtype=bool, na_value=False)])
            if "parent" in rq.columns:
                asked = set(mine["request"].tolist())
                plain = rq[rq["parent"].isin(list(asked)).to_numpy(dtype=bool, na_value=False)]
                pd.testing.assert_frame_equal(index.children(asked), plain)
            mine = mine.sort_values("start")
            assert _known(POOL._by_conn(mine, "end", "start")) == _known(
                {k: (cg["end"].tolist(), cg["start"].tolist()) for k, cg in mine.groupby("conn")})
            still = (g["close"].astype("object") == "open").to_numpy(dtype=bool, na_value=False)
            left = POOL._left_behind(g, mine, still, last_ts)
            assert left == _plain_left_behind(g, mine, still, last_ts), path.name
            groups += 1
            leaked += len(left)
    assert groups >= 40 and leaked >= 1


def test_a_connection_is_left_behind_only_when_answered_idle_and_passed_over_by_a_later_one():
    nan = float("nan")
    g = pd.DataFrame({"conn": [1, 2, 3, 4, 5],
                      "client": ["10.0.0.1:5001", "10.0.0.1:5002", "10.0.0.1:5003", "10.0.0.9:5004",
                                 "10.0.0.1:5005"],
                      "start": [0.0, 0.1, 0.2, 0.3, 5.0],
                      "close": ["open", "open", "open", "open", "fin"]})
    mine = pd.DataFrame({"conn": pd.array([1, 2, 2, 3, 4, 5], dtype="Int64"),
                         "end": [1.0, 2.0, nan, 9.0, 1.0, 6.0],
                         "status": pd.array([200, 200, None, 200, 200, 200], dtype="Int64"),
                         "start": [0.5, 1.5, 1.8, 8.0, 0.5, 5.5]})
    still = (g["close"] == "open").to_numpy()
    # 1: answered, idle 9 s, and 5 opened later from its host: left behind.  2: a request never
    # answered.  3: busy until 9.0, nothing opened after.  4: another host opened nothing later.
    assert POOL._left_behind(g, mine, still, 10.0) == [9.0] == _plain_left_behind(g, mine, still, 10.0)
    g.loc[4, "start"] = 0.9          # now opened before 1 went idle: not instead of reusing it
    assert POOL._left_behind(g, mine, still, 10.0) == [] == _plain_left_behind(g, mine, still, 10.0)
