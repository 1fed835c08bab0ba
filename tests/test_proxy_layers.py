"""A CONNECT tunnel (tinyproxy) and layer 4 vs layer 7 (haproxy): the ``layers`` recipe against the
proxies' and nginx's logs, curl's own results and tshark."""

from __future__ import annotations

import subprocess
from collections import defaultdict

import pytest

from bundled import CAPTURES, entry, timeline


def analyze(name):
    from traceviz.recipe import discover, load_module
    return load_module(discover()["layers"]).analyze(timeline(name))


def stream_bytes(tshark, name) -> dict[tuple[str, int], list[int]]:
    """(client ip:port, server port) -> [payload bytes up, down] of each TCP stream, as tshark counts them."""
    out = subprocess.run([tshark, "-r", str(CAPTURES / f"{name}.pcapng"), "-Y", "tcp", "-T", "fields",
                          "-e", "tcp.stream", "-e", "ip.src", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.len",
                          "-e", "tcp.flags.syn", "-e", "tcp.flags.ack"], capture_output=True, text=True, check=True).stdout
    first, sums = {}, defaultdict(lambda: [0, 0])
    for line in out.splitlines():
        stream, src, sport, dport, n, syn, ack = line.split("\t")
        if stream not in first and syn in ("1", "True") and ack in ("0", "False"):
            first[stream] = (f"{src}:{sport}", int(dport))
        key = first.get(stream)
        if key:
            sums[key][0 if f"{src}:{sport}" == key[0] else 1] += int(n)
    return sums


def test_connect_tunnel(tshark):
    e = entry("connect-tunnel")["facts"]
    f = analyze("connect-tunnel")
    r = f.rows.iloc[0]
    assert r["mode"] == "CONNECT tunnel" and r["tunnel_target"] == e["target"] and r["proxy"] == e["proxy"]
    assert r["upstream_server"] == e["web_server"]
    assert r["upstream_tls"] == "TLS 1.3" and r["sni"] == e["target"].split(":")[0]
    assert "the server" in r["tls_ends_at"]
    # Inside the tunnel: the requests nginx logged, readable only upstream (with the key log).
    assert r["upstream_requests"] == len(e["server_log"]) == len(e["curl"])
    assert any("CONNECT" in x for x in e["tinyproxy_log"])
    sums = stream_bytes(tshark, "connect-tunnel")
    client = next(v for (c, port), v in sums.items() if f":{port}" == e["proxy"][-5:])
    upstream = next(v for (c, port), v in sums.items() if port == 443)
    assert [r["bytes_c2s"], r["bytes_s2c"]] == client
    assert [r["upstream_bytes_c2s"], r["upstream_bytes_s2c"]] == upstream
    rq = timeline("connect-tunnel").requests
    connect = rq[rq["method"] == "CONNECT"].iloc[0]
    assert connect["req_bytes"] + upstream[0] == client[0] and connect["resp_bytes"] + upstream[1] == client[1]


def test_layer4_vs_layer7(tshark):
    e = entry("l4-vs-l7")["facts"]
    rows = analyze("l4-vs-l7").rows.set_index("mode")
    l4, l7 = rows.loc["layer 4"], rows.loc["layer 7"]
    assert l4["proxy"].endswith(f":{e['l4']['port']}") and l4["upstream_server"].endswith(f":{e['l4']['upstream_port']}")
    assert l7["proxy"].endswith(f":{e['l7']['port']}") and l7["upstream_server"].endswith(f":{e['l7']['upstream_port']}")
    # nginx's log: TLS reached it through layer 4 (with the client's SNI); through layer 7 it got plain HTTP
    # with X-Forwarded-For naming the client.
    client_ip = e["l4"]["curl"][0]["local_ip"]
    tls_seen = [x for x in e["server_log"] if x["ssl_protocol"]]
    plain = [x for x in e["server_log"] if not x["ssl_protocol"]]
    assert len(tls_seen) == l4["upstream_requests"] and len(plain) == l7["upstream_requests"]
    assert all(x["xff"] == client_ip for x in plain) and all(x["xff"] == "" for x in tls_seen)
    assert l4["upstream_tls"] == "TLS 1.3" and "the server" in l4["tls_ends_at"]
    assert not isinstance(l7["upstream_tls"], str) and l7["tls_ends_at"].startswith("the proxy")
    # --fail: the layer-7 leg alone, whose requests nginx logged without TLS
    problems = analyze("l4-vs-l7").problems
    assert len(problems) == 1 and problems[0].startswith(f"conn {l7['conn']}:") and bool(plain)
    sums = stream_bytes(tshark, "l4-vs-l7")
    by_port = {port: v for (c, port), v in sums.items()}
    assert by_port[e["l4"]["port"]] == by_port[443] == [l4["bytes_c2s"], l4["bytes_s2c"]]
    assert by_port[e["l7"]["port"]] == [l7["bytes_c2s"], l7["bytes_s2c"]]
    assert by_port[80] == [l7["upstream_bytes_c2s"], l7["upstream_bytes_s2c"]]
    assert [c["response_code"] for c in e["l4"]["curl"] + e["l7"]["curl"]] == [200] * 6


@pytest.mark.parametrize("theme", ["light", "talk"])
def test_chart(theme):
    from traceviz.charts.layers import legs_chart
    rows = analyze("l4-vs-l7").rows.copy()
    rows["proxy"] = "<b>x</b>"
    fig = legs_chart(rows, theme=theme)
    texts = " ".join(t.text[0] for t in fig.data if t.text)
    assert "<b>x" not in texts and "&lt;b&gt;x" in texts
    ends = [a.text for a in fig.layout.annotations if a.text == "TLS ends here"]
    assert len(ends) == len(rows)


# --- the relay search, held to a plain scan ---------------------------------------------------

ALL = sorted(p.stem for p in CAPTURES.glob("*.pcapng"))


def _plain_first(c, up, down, since, until, skip):
    """The first connection in the table carrying those bytes that started in the window: a
    scan of every connection (what ``layers`` did for each one, until it took minutes)."""
    for conn, start, client, b_up, b_down in zip(c["conn"], c["start"], c["client"], c["bytes_c2s"],
                                                 c["bytes_s2c"]):
        if since <= start <= until and int(b_up) == up and int(b_down) == down and not skip(conn, client):
            return conn
    return None


@pytest.mark.parametrize("name", ALL)
def test_the_relay_index_finds_what_a_scan_finds(name):
    """For every connection, the other leg of a layer-4 relay as ``_Relays`` finds it (by the
    bytes each way, then the start) and as a scan of the table finds it -- with and without
    connections ruled out -- and an unknown end bounds no window."""
    from traceviz.recipe import discover, load_module
    layers = load_module(discover()["layers"])
    tl = timeline(name)
    cn = tl.connections
    c = cn[(cn["transport"] == "tcp").to_numpy(dtype=bool, na_value=False)
           & cn["bytes_c2s"].notna().to_numpy() & cn["bytes_s2c"].notna().to_numpy()]
    relays = layers._Relays(c)
    found = 0
    for k, start, end, client, up, down in zip(c["conn"], c["start"], c["end"], c["client"], c["bytes_c2s"],
                                               c["bytes_s2c"]):
        for skip in (lambda conn, who: conn == k or who == client, lambda conn, who: conn == k or conn % 2 == 0):
            want = _plain_first(c, int(up), int(down), start, end, skip)
            assert relays.first(int(up), int(down), start, end, skip) == want, (name, k)
            found += want is not None
        assert relays.first(int(up), int(down), float("nan"), end, lambda *_: False) is None
    if name == "l4-vs-l7":
        assert found         # the relayed legs are there to be found
