"""Proxy legs and the cause of every 5xx, against what the proxies themselves logged.

Ground truth: each bundled proxy capture's manifest entry -- the client's
own results, nginx's access and error logs, haproxy's log (termination
state), and the upstream's log of every connection it accepted and every
request it read.  tshark's dissection of the same file checks what we say
about the packets.  Never traceviz's own output.
"""

from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest

import traceviz
from bundled import entry, timeline
from traceviz import cli
from traceviz.errors import InputError
from traceviz.sources import proxylog

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
PROXY_CAPTURES = ["proxy-nginx-502-504", "proxy-haproxy-503-502", "proxy-keepalive-race",
                  "proxy-haproxy-reuse-race", "proxy-nginx-upstream-500"]

# What the recording side says happened -> the cause the packets must show.  Keyed by the
# upstream's behaviour (upstream_cause, from scenarios_proxy.py) and the proxy's own words.
BY_UPSTREAM_BEHAVIOUR = {
    "nothing listens: connection refused": "upstream-refused",
    "closes with FIN before responding": "upstream-fin",
    "closes with RST before responding": "upstream-rst",
    "a NUL byte in a response header name": "upstream-invalid-response",
    "a status line that is not HTTP": "upstream-invalid-response",
    "a 9 KB response header (nginx's proxy buffer is 4 KB)": "upstream-header-too-big",
    "answers after 2 s; nginx's proxy_read_timeout is 1 s": "upstream-timeout",
    "answers 500 Internal Server Error itself": "upstream-status",
}
BY_NGINX_ERROR = {
    "connect() failed (111: Connection refused)": {"upstream-refused"},
    "upstream prematurely closed connection": {"upstream-fin", "keepalive-race"},
    "recv() failed (104: Connection reset by peer)": {"upstream-rst"},
    "upstream sent invalid header": {"upstream-invalid-response"},
    "upstream sent too big header": {"upstream-header-too-big"},
    "upstream timed out (110: Connection timed out) while reading": {"upstream-timeout"},
}
BY_HAPROXY_TERMINATION = {"SC": {"upstream-refused"}, "SH": {"upstream-fin", "upstream-rst", "keepalive-race"},
                          "PH": {"upstream-invalid-response"}}


@lru_cache(maxsize=None)
def proxy_json(name: str, *logs: str) -> tuple:
    """``traceviz proxy NAME --json`` (in this process), one dict per client request, by client endpoint."""
    import io
    import contextlib
    args = ["proxy", name, "--json"] + [a for log in logs for a in ("--proxy-log", log)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli.main(args)
        except SystemExit as exc:
            assert not exc.code, exc.code
    return tuple(json.loads(out.getvalue()))


def rows_by_client(name: str, *logs: str) -> dict[str, dict]:
    return {r["client"]: r for r in proxy_json(name, *logs)}


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def upstream_logged(e: dict) -> dict[str, str]:
    """'GET /fin' -> the upstream connection's client endpoint, from the upstream's own log."""
    return {req: c["client"] for c in e["facts"]["upstream_connections"] for req in c["requests"]}


# ---------------------------------------------------------------- the causes

@pytest.mark.parametrize("name", ["proxy-nginx-502-504", "proxy-nginx-upstream-500"])
def test_nginx_causes_and_pairing(name):
    e = entry(name)
    rows = rows_by_client(name)
    assert len(rows) == e["facts"]["requests"]
    for x in e["facts"]["exchanges"]:
        r = rows[x["client"]]
        assert (r["method"], r["status"]) == (x["method"], x["status"]), x["path"]
        assert r["url"].endswith(x["path"])
        # the two-leg pairing: the addresses nginx tried, in order ($upstream_addr)
        assert r["upstream_addr"] == x["upstream_addr"], x["path"]
        if x["status"] < 500:
            assert r["cause"] is None, x["path"]
            continue
        assert r["cause"] == BY_UPSTREAM_BEHAVIOUR[x["upstream_cause"]], x["path"]
        for said in x["nginx_error"]:
            allowed = [v for k, v in BY_NGINX_ERROR.items() if said.startswith(k)]
            assert allowed and r["cause"] in allowed[0], (x["path"], said)
        assert r["cause_frames"] and r["cause_detail"]
    check_upstream_connections(name)


def path_of(url: str) -> str:
    rest = url.split("://", 1)[1]
    return "/" + rest.split("/", 1)[1]


def check_upstream_connections(name: str) -> None:
    """Each upstream request the upstream read went out on the connection its own log names
    (a request it never read -- the keep-alive race -- is not in its log)."""
    logged = upstream_logged(entry(name))
    tl = timeline(name)
    ends = tl.connections.set_index("conn")
    up = tl.requests[tl.requests["leg"] == "upstream"]
    assert len(up)
    seen = 0
    for u in up.itertuples(index=False):
        key = f"{u.method} {path_of(u.url)}"
        client = ends.at[int(u.conn), "client"]
        if client in {logged.get(key)}:
            seen += 1
        else:
            assert u.cause == "keepalive-race", key      # only a request the upstream never read
    assert seen == len(logged)


def test_nginx_upstream_500_tied_by_request_id():
    """nginx added X-Request-Id to the upstream request and to the client's response: the legs pair by it."""
    e = entry("proxy-nginx-upstream-500")
    tl = timeline("proxy-nginx-upstream-500")
    up = tl.requests[tl.requests["leg"] == "upstream"]
    assert len(up) == sum(len(x["upstream_addr"]) for x in e["facts"]["exchanges"])
    assert set(up["matched_by"]) == {"x-request-id"}
    rows = rows_by_client("proxy-nginx-upstream-500")
    for x in e["facts"]["exchanges"]:
        assert [int(s) for s in rows[x["client"]]["upstream_status"]] == [int(s) for s in x["upstream_status"]]


def test_haproxy_causes_and_pairing(tshark):
    e = entry("proxy-haproxy-503-502")
    rows = rows_by_client("proxy-haproxy-503-502")
    for x in e["facts"]["exchanges"]:
        r = rows[x["client"]]
        assert r["status"] == x["status"], x["path"]
        if x["status"] < 500:
            assert r["cause"] is None
            continue
        assert r["cause"] in BY_HAPROXY_TERMINATION[x["haproxy_termination"][:2]], x["path"]
        assert r["cause"] == BY_UPSTREAM_BEHAVIOUR[x["upstream_cause"]], x["path"]
    check_upstream_connections("proxy-haproxy-503-502")
    # 'retries 1': two refused SYNs for /refused, both tied to it (tshark counts the SYNs)
    refused = rows[next(x["client"] for x in e["facts"]["exchanges"] if x["path"] == "/refused")]
    syns = subprocess.run([tshark, "-r", str(CAPTURES / e["file"]), "-Y",
                           "frame.interface_id == 1 && tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == 9009",
                           "-T", "fields", "-e", "frame.number"], capture_output=True, text=True).stdout.split()
    assert len(refused["upstream_addr"]) == len(syns) == 2
    assert all(c == "upstream-refused" for c in refused["upstream_causes"])


def test_nginx_keepalive_race():
    """The GET and the /okni/ POST met the race and were retried (200); the /ok/ POST was not (502)."""
    e = entry("proxy-keepalive-race")
    assert e["facts"]["race_reproduced"]
    rows = rows_by_client("proxy-keepalive-race")
    logged = upstream_logged(e)
    raced = []
    for x in e["facts"]["exchanges"]:
        r = rows[x["client"]]
        assert r["status"] == x["status"]
        assert r["upstream_addr"] == x["upstream_addr"], x["path"]
        if not x["nginx_error"]:
            assert all(c is None for c in r["upstream_causes"]), x["path"]
            continue
        raced.append(x["path"])
        # nginx logged a failed try ("502") for the first attempt: the packets show the race there
        assert r["upstream_causes"][0] == "keepalive-race", x["path"]
        assert x["upstream_status"][0] == "502"
        # the request the race swallowed never reached the upstream (its own log has no such request
        # on the pooled connection); a retry did, on a new connection
        if len(x["upstream_status"]) == 2:
            assert r["status"] == 200 and r["cause"] is None
            assert r["upstream_status"][1] == "200"
            assert logged[f"{x['method']} {x['path']}"] != rows_by_client_conn("proxy-keepalive-race",
                                                                               r["upstream_conns"][0])
        else:
            assert r["status"] == 502 and r["cause"] == "keepalive-race"
    assert sorted(raced) == ["/ok/get-race", "/ok/post-race", "/okni/post-race"]
    check_upstream_connections("proxy-keepalive-race")


def rows_by_client_conn(name: str, conn: int) -> str:
    return timeline(name).connections.set_index("conn").at[int(conn), "client"]


def test_haproxy_reuse_race():
    """haproxy ('http-reuse always') sent both race requests on a pooled connection the upstream
    closed; its log says SH (server aborted) and the upstream never read either request."""
    e = entry("proxy-haproxy-reuse-race")
    assert e["facts"]["race_reproduced"]
    rows = rows_by_client("proxy-haproxy-reuse-race")
    read = {req for c in e["facts"]["upstream_connections"] for req in c["requests"]}
    idle_closed = [c for c in e["facts"]["upstream_connections"] if c["close"] == "fin-idle"]
    assert idle_closed
    for x in e["facts"]["exchanges"]:
        r = rows[x["client"]]
        assert r["status"] == x["status"]
        request = f"{x['method']} {x['path']}"
        if x["haproxy_termination"].startswith("SH") and request not in read:
            assert r["cause"] == "keepalive-race", x["path"]
            assert r["cause"] in BY_HAPROXY_TERMINATION["SH"]
            assert x["haproxy_retries"] == 0 and len(r["upstream_conns"]) == 1
            # on one of the connections the upstream closed for idleness
            assert rows_by_client_conn("proxy-haproxy-reuse-race", r["upstream_conns"][0]) in \
                {c["client"] for c in idle_closed}
        else:
            assert r["cause"] is None and r["status"] == 200
    check_upstream_connections("proxy-haproxy-reuse-race")


def test_client_side_only_gives_unknown_with_the_reason(tmp_path, tshark):
    """Drop the upstream interface: every 5xx is unknown, with what is missing and what the client saw."""
    e = entry("proxy-nginx-502-504")
    path = tmp_path / "client-only.pcapng"
    subprocess.run([tshark, "-r", str(CAPTURES / e["file"]), "-Y", "frame.interface_id == 0", "-w", str(path)],
                   check=True, capture_output=True)
    tl = traceviz.load(path)
    r = tl.requests
    assert r["leg"].isna().all() and r["parent"].isna().all()
    statuses = {x["client"]: x["status"] for x in e["facts"]["exchanges"]}
    ends = tl.connections.set_index("conn")
    for x in r.itertuples(index=False):
        assert statuses[ends.at[int(x.conn), "client"]] == x.status
        if x.status >= 500:
            assert x.cause == "unknown"
            assert "not captured" in x.cause_detail and "cannot be seen" in x.cause_detail
            assert f"{x.status}" in x.cause_detail and "Server: nginx" in x.cause_detail
        else:
            assert x.cause is None


# ---------------------------------------------------------------- the proxy's log beside the packets

def _write_logs(tmp_path, e) -> list[str]:
    paths = []
    for key in ("nginx_error_log", "nginx_access_log", "haproxy_log"):
        if e["facts"].get(key):
            p = tmp_path / f"{key}.log"
            p.write_text("\n".join(e["facts"][key]) + "\nnot a log line at all\n")
            paths.append(str(p))
    return paths


@pytest.mark.parametrize("name", ["proxy-nginx-502-504", "proxy-haproxy-503-502", "proxy-keepalive-race"])
def test_proxy_log_lines_land_on_their_requests(name, tmp_path):
    e = entry(name)
    logs = _write_logs(tmp_path, e)
    rows = rows_by_client(name, *logs)
    for x in e["facts"]["exchanges"]:
        r = rows[x["client"]]
        expected = [line for line in e["facts"].get("nginx_access_log", []) + e["facts"].get("haproxy_log", [])
                    if x["client"] + " " in line]
        for line in expected:                 # access and haproxy lines carry the client's port
            assert line in r["log"], (x["path"], line)
        for said in x.get("nginx_error", []):
            assert any(said in line for line in r["log"]), (x["path"], said)
        if x["status"] >= 500 or x.get("nginx_error"):
            assert r["log_agrees"] is True, (x["path"], r["log_says"], r["cause"])


def test_proxy_log_is_shown_and_unread_lines_counted(tv, tmp_path):
    e = entry("proxy-haproxy-503-502")
    code, out, _ = tv("proxy", "proxy-haproxy-503-502", *[a for p in _write_logs(tmp_path, e)
                                                          for a in ("--proxy-log", p)])
    assert code == 0
    assert "SC-- 1/1/0/0/1" in out                      # the line itself, beside the packets' cause
    assert "agrees with the packets on 4 of the 4" in " ".join(out.split())
    assert "1 log lines are in no format" in " ".join(out.split())


def test_proxy_log_parser():
    line = ('2026/11/27 23:40:25 [error] 11#11: *3 connect() failed (111: Connection refused) while '
            'connecting to upstream, client: 10.0.0.1, server: , request: "GET /a?b=1 HTTP/1.1", '
            'upstream: "http://10.0.1.2:9009/a?b=1", host: "x"')
    r = proxylog.parse_line(line)
    assert (r.kind, r.client, r.method, r.path, r.upstream) == ("nginx-error", "10.0.0.1", "GET", "/a?b=1",
                                                                ("10.0.1.2:9009",))
    assert r.message.startswith("connect() failed") and not r.zoned
    combined = '10.0.0.1 - - [27/Nov/2026:23:40:26 +0100] "POST /p HTTP/1.1" 502 157 "-" "curl/8.0"'
    r = proxylog.parse_line(combined)
    assert (r.kind, r.status, r.method, r.zoned) == ("nginx-access", 502, "POST", True)
    assert r.time == 1795819226.0 - 0        # 23:40:26 +0100 is 22:40:26 UTC
    syslog = ('Nov 27 23:40:45 lb haproxy[7]: 10.0.0.1:5962 [27/Nov/2026:23:40:45.424] fe be/s1 0/0/-1/-1/3001 '
              '503 217 - - sC-- 1/1/0/0/3 0/0 "GET / HTTP/1.1"')
    r = proxylog.parse_line(syslog)
    assert (r.kind, r.termination, r.server, r.client) == ("haproxy", "sC--", "be/s1", "10.0.0.1:5962")
    assert proxylog.parse_line("[NOTICE] haproxy started") is None


def test_proxy_log_bad_input(tmp_path):
    binary = tmp_path / "x.log"
    binary.write_bytes(b"\x00\x01\x02 not text")
    with pytest.raises(InputError, match="not a text log"):
        proxylog.read([binary])
    with pytest.raises(InputError, match="cannot read proxy log"):
        proxylog.read([tmp_path / "missing.log"])


# ---------------------------------------------------------------- the command

def test_fail_on_5xx_and_race(tv):
    assert tv("proxy", "proxy-nginx-502-504", "--fail")[0] == 1
    assert tv("proxy", "proxy-keepalive-race", "--fail")[0] == 1
    code, out, _ = tv("proxy", "proxy-nginx-502-504", "--conn", "13", "--json")
    assert code == 0 and [r["url"].rsplit("/", 1)[1] for r in json.loads(out)] == ["slow"]


def test_no_proxy_no_legs():
    """Ordinary client captures: no request is ever seen twice, so no legs and no parents."""
    for name in ("http1-keepalive-vs-close", "http1-six-connections", "h2-multiplexing"):
        r = timeline(name).requests
        assert r["leg"].isna().all() and r["parent"].isna().all(), name


# ---------------------------------------------------------------- the two-leg ladder

@pytest.mark.parametrize("theme", ["light", "dark", "talk"])
def test_two_leg_ladder(theme):
    from traceviz.charts.proxy import two_leg_ladder
    tl = timeline("proxy-keepalive-race")
    rows = pd.DataFrame(proxy_json("proxy-keepalive-race"))
    row = rows[rows["status"] == 502].iloc[0].to_dict()
    fig = two_leg_ladder(tl.packets, tl.connections, tl.requests, row, theme=theme)
    lanes = sorted({sh.x0 for sh in fig.layout.shapes if sh.type == "line" and sh.x0 == sh.x1})
    assert lanes == [0.0, 1.0, 2.0]
    text = " ".join(a.text or "" for a in fig.layout.annotations)
    assert "keepalive-race" in text and "POST /ok/post-race" in text
    # every packet of the client connection and of its upstream connection is an arrow
    conns = [row["conn"]] + row["upstream_conns"]
    arrows = sum(len([x for x in t.x if x is not None]) // 2 for t in fig.data if t.mode == "lines+markers")
    assert arrows == int(tl.packets["conn"].isin(conns).sum())
    hot = [t for t in fig.data if t.name and "(the cause)" in t.name]
    assert sum(len([x for x in t.x if x is not None]) // 2 for t in hot) == len(set(row["cause_frames"]))


def test_two_leg_ladder_escapes_capture_strings():
    from traceviz.charts.proxy import two_leg_ladder
    tl = timeline("proxy-nginx-502-504")
    row = dict(pd.DataFrame(proxy_json("proxy-nginx-502-504")).iloc[1])
    row.update(method="<script>x</script>", url="http://h/<img src=x onerror=alert(1)>",
               cause_detail="$x$ <b>bold</b>")
    payload = two_leg_ladder(tl.packets, tl.connections, tl.requests, row).to_json()
    assert "<script>" not in payload and "<img" not in payload and "<b>bold" not in payload
    assert "&lt;script&gt;" in payload


# ---------------------------------------------------------------- a recipe's own options

def test_recipe_declared_file_option(tmp_path, tv):
    """OPTIONS = {"name": help} gives that recipe's command --name FILE (repeatable), and only it."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "echoopt.py").write_text(
        '"""Which files did I get?"""\n'
        "from traceviz.recipe import Finding\n"
        'NAME = "echoopt"\n'
        'OPTIONS = {"extra-file": "a file this recipe reads", "Bad Name": "ignored"}\n'
        "def analyze(tl, extra_file=None):\n"
        '    return Finding(title="echo", answer=["got " + ",".join(p.name for p in extra_file or [])])\n')
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("a")
    b.write_text("b")
    from traceviz.recipe import read_header
    assert read_header(folder / "echoopt.py").options == (("extra-file", "a file this recipe reads"),)
    code, out, _ = tv("--recipes", folder, "echoopt", "tcp-handshakes", "--extra-file", a, "--extra-file", b)
    assert code == 0 and "got a.txt,b.txt" in out
    code, out, _ = tv("--recipes", folder, "echoopt", "tcp-handshakes")
    assert code == 0 and "got \n" in out + "\n"
    assert tv("--recipes", folder, "echoopt", "tcp-handshakes", "--extra-file", tmp_path / "nope")[0] == 2
    assert tv("handshakes", "tcp-handshakes", "--extra-file", a)[0] == 2      # not another recipe's option


# ---------------------------------------------------------------- one interface seeing both legs

def _one_interface_proxy(path: Path) -> Path:
    """A proxy at 10.0.0.2 on a single link, built packet by packet (times from T0):

    GET /a    relayed to 10.0.0.3:8080 (with X-Forwarded-For), 200 back
    GET /b    503 at once: no upstream connection, no upstream request
    GET /c    two SYNs to 10.0.0.3:8081, never answered; 504 after 2 s
    """
    from scapy.all import IP, TCP, Ether, wrpcap
    t0, frames = 1_700_000_000.0, []

    def flow(client, cport, server, sport):
        seq = {"c2s": 1000, "s2c": 5000}

        def send(t, d, flags, data=b""):
            src, dst, sp, dp = (client, server, cport, sport) if d == "c2s" else (server, client, sport, cport)
            other = "s2c" if d == "c2s" else "c2s"
            pkt = Ether() / IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags, seq=seq[d],
                                                       ack=seq[other] if "A" in flags else 0) / data
            pkt.time = t0 + t
            frames.append(pkt)
            seq[d] += len(data) + (1 if "S" in flags or "F" in flags else 0)
        return send

    def opened(send, t):
        send(t, "c2s", "S")
        send(t + 0.001, "s2c", "SA")
        send(t + 0.002, "c2s", "A")

    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    c1 = flow("10.0.0.1", 4001, "10.0.0.2", 80)
    opened(c1, 0.0)
    c1(0.01, "c2s", "PA", b"GET /a HTTP/1.1\r\nHost: p\r\n\r\n")
    u1 = flow("10.0.0.2", 5001, "10.0.0.3", 8080)
    opened(u1, 0.011)
    u1(0.014, "c2s", "PA", b"GET /a HTTP/1.1\r\nHost: up\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n")
    u1(0.05, "s2c", "PA", ok)
    c1(0.051, "s2c", "PA", ok)
    c2 = flow("10.0.0.1", 4002, "10.0.0.2", 80)
    opened(c2, 0.1)
    c2(0.11, "c2s", "PA", b"GET /b HTTP/1.1\r\nHost: p\r\n\r\n")
    c2(0.111, "s2c", "PA", b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    c3 = flow("10.0.0.1", 4003, "10.0.0.2", 80)
    opened(c3, 0.2)
    c3(0.21, "c2s", "PA", b"GET /c HTTP/1.1\r\nHost: p\r\n\r\n")
    u3 = flow("10.0.0.2", 5003, "10.0.0.3", 8081)
    u3(0.211, "c2s", "S")
    u3(1.211, "c2s", "S")
    c3(2.21, "s2c", "PA", b"HTTP/1.1 504 Gateway Time-out\r\nContent-Length: 0\r\n\r\n")
    frames.sort(key=lambda p: float(p.time))
    wrpcap(str(path), frames)
    return path


def test_one_interface_both_legs(tmp_path):
    tl = traceviz.load(_one_interface_proxy(tmp_path / "one.pcap"))
    r = tl.requests.set_index("url")
    assert r.at["http://p/a", "leg"] == "client" and r.at["http://up/a", "leg"] == "upstream"
    assert r.at["http://up/a", "parent"] == r.at["http://p/a", "request"]
    assert "x-forwarded-for" in r.at["http://up/a", "matched_by"]
    assert r.at["http://p/a", "cause"] is None or pd.isna(r.at["http://p/a", "cause"])
    # nothing was tried for /b: the proxy's 503 is its own
    assert r.at["http://p/b", "cause"] == "no-upstream"
    # /c: two SYNs to the upstream, never answered
    assert r.at["http://p/c", "cause"] == "upstream-unanswered"
    assert "2 SYNs" in r.at["http://p/c", "cause_detail"]
    unanswered = tl.connections.loc[tl.connections["close"] == "unanswered", "conn"].tolist()
    assert r.at["http://p/c", "connect_attempts"] == unanswered


def test_an_upstream_status_of_other_digits_says_nothing():
    """``"\\xb2".isdigit()`` is true but ``int("\\xb2")`` raises: a log's upstream status must be ASCII digits."""
    from traceviz.assemble.proxy import log_causes
    from traceviz.sources.proxylog import parse_line
    line = '10.0.0.1 - - [03/Dec/2026:04:00:00 +0000] "GET / HTTP/1.1" 500 0 ups="{}"'
    odd, plain = parse_line(line.format("\xb2")), parse_line(line.format("500"))
    assert odd.upstream_status == ("\xb2",) and log_causes(odd) is None
    assert log_causes(plain) == {"upstream-status"}
