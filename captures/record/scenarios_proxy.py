"""Scenario 6: a real nginx / haproxy reverse proxy, both legs in one capture.

Three namespaces: client ``tvB-c`` -- proxy ``tvB-s`` -- upstream ``tvB-u``,
each link through the lab's delay relay.  dumpcap runs in the proxy's
namespace on both of its interfaces, so one pcapng holds the client leg
(interface 0) and the upstream leg (interface 1).

Captures:
    proxy-nginx-502-504    each 502 cause and the 504, one request each
    proxy-keepalive-race   a pooled upstream connection closed as nginx reuses it:
                           the GET is retried silently, the POST gets a 502
    proxy-haproxy-503-502  haproxy's 503 (refused) and 502s (FIN, RST, bad status line)

Facts come from the client's own log (statuses), nginx's access and error
logs, haproxy's log and the upstream's log (accepts, requests, closes).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from netlab import Lab, Scenario, tool_versions, version  # noqa: E402
from relay import LinkSpec  # noqa: E402
import servers_b  # noqa: E402

ONE_WAY_MS = 25.0
UPSTREAM_BASE = 9000
IDLE_TIMEOUT = 1.0          # the upstream closes idle keep-alive connections after this
NGINX_PORT, HAPROXY_PORT = 80, 8080
COMMAND = "sudo python3 captures/record/record.py proxy"

# path -> (what the upstream does, what nginx says about it)
NGINX_CAUSES = {
    "/ok/first": "answers 200",
    "/refused": "nothing listens: connection refused",
    "/fin": "closes with FIN before responding",
    "/rst": "closes with RST before responding",
    "/nul": "a NUL byte in a response header name",
    "/big": "a 9 KB response header (nginx's proxy buffer is 4 KB)",
    "/slow": "answers after 2 s; nginx's proxy_read_timeout is 1 s",
}
HAPROXY_CAUSES = {
    "/ok/first": "answers 200",
    "/refused": "nothing listens: connection refused",
    "/fin": "closes with FIN before responding",
    "/rst": "closes with RST before responding",
    "/badstatus": "a status line that is not HTTP",
}


# ---------------------------------------------------------------- plans (pure)

def error_plan(port: int, causes: dict[str, str]) -> list[dict]:
    """One GET per cause, each on its own client connection, 0.3 s apart."""
    return [dict(method="GET", path=p, port=port, wait=0.3) for p in causes]


def race_wait(client_one_way: float, upstream_one_way: float, idle: float = IDLE_TIMEOUT) -> float:
    """Seconds the client waits after a response so that nginx reuses the pooled
    upstream connection just as the upstream's idle timer closes it.

    The upstream starts its timer when it sends the response; nginx relays it
    one upstream delay later and the client sees it one client delay after
    that.  The next request reaches nginx one client delay after it is sent.
    Aiming nginx's send at the close puts the request and the FIN on the wire
    at the same moment, crossing: the request meets a closed socket (RST).
    """
    return idle - upstream_one_way - 2 * client_one_way


def race_plan(port: int, wait: float) -> list[dict]:
    return [
        dict(method="GET", path="/ok/get-prime", port=port, wait=0.0),
        dict(method="GET", path="/ok/get-race", port=port, wait=wait),
        # let the pool's connection close cleanly (idle FIN) before the POST pair
        dict(method="GET", path="/ok/post-prime", port=port, wait=2.0),
        dict(method="POST", path="/ok/post-race", port=port, wait=wait, body="order=1"),
        # proxy_next_upstream ... non_idempotent: the same POST race, retried this time
        dict(method="GET", path="/okni/post-prime", port=port, wait=2.0),
        dict(method="POST", path="/okni/post-race", port=port, wait=wait, body="order=2"),
    ]


# ---------------------------------------------------------------- log parsing (pure)

ERROR_LINE = re.compile(
    r"^(?P<time>\S+ \S+) \[(?P<level>\w+)\] \d+#\d+: \*(?P<conn>\d+) (?P<message>.*?)"
    r"(?:, client: (?P<client>[^,]+))?(?:, server: (?P<server>[^,]*))?"
    r"(?:, request: \"(?P<request>[^\"]*)\")?(?:, upstream: \"(?P<upstream>[^\"]*)\")?"
    r"(?:, host: \"(?P<host>[^\"]*)\")?$")

ACCESS_LINE = re.compile(
    r"^(?P<msec>[\d.]+) (?P<client>\S+) c(?P<conn>\d+) \"(?P<request>[^\"]*)\" (?P<status>\d+) "
    r"up=\"(?P<up>[^\"]*)\" ups=\"(?P<ups>[^\"]*)\" urt=\"(?P<urt>[^\"]*)\""
    r"(?: rid=\"(?P<rid>[^\"]*)\")?$")


def parse_error_line(line: str) -> dict | None:
    """nginx error.log line -> {level, conn, message, client, request, upstream}."""
    m = ERROR_LINE.match(line.strip())
    if not m:
        return None
    d = {k: v for k, v in m.groupdict().items() if v is not None}
    d["conn"] = int(d["conn"])
    return d


def parse_access_line(line: str) -> dict | None:
    """Our ``facts`` access-log format -> {client, request, status, upstream_addr, upstream_status}."""
    m = ACCESS_LINE.match(line.strip())
    if not m:
        return None
    out = dict(time=float(m["msec"]), client=m["client"], conn=int(m["conn"]),
               request=m["request"], status=int(m["status"]),
               upstream_addr=[a.strip() for a in m["up"].split(",")] if m["up"] != "-" else [],
               upstream_status=[s.strip() for s in m["ups"].split(",")] if m["ups"] != "-" else [])
    if m["rid"]:
        out["request_id"] = m["rid"]
    return out


def path_of(request_line: str) -> str:
    parts = request_line.split(" ")
    return parts[1] if len(parts) > 1 else ""


def haproxy_fields(line: str) -> dict | None:
    """haproxy httplog line -> {client, status, termination, retries, request}.

    ``retries`` is the last of the five connection counters (actconn/feconn/
    beconn/srv_conn/retries); a leading '+' there means haproxy redispatched."""
    m = re.search(r"(?P<client>\d+\.\d+\.\d+\.\d+:\d+) \[[^\]]+\] \S+ \S+ (?P<timers>\S+) "
                  r"(?P<status>-?\d+) \S+ \S+ \S+ (?P<term>\S{4}) (?P<conns>\S+) .*\"(?P<request>[^\"]*)\"",
                  line)
    if not m:
        return None
    counters = m["conns"].split("/")
    retries = counters[-1].lstrip("+") if len(counters) == 5 else ""
    return dict(client=m["client"], status=int(m["status"]), termination=m["term"],
                retries=int(retries) if retries.isdigit() else None, timers=m["timers"],
                request=m["request"], line=line.strip())


def statuses(results: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        key = str(r["status"])
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def upstream_connections(events: list[dict]) -> list[dict]:
    """One row per upstream connection from the upstream's log: peer, requests, how it ended."""
    conns: dict[str, dict] = {}
    for e in events:
        if "peer" not in e:
            continue
        c = conns.setdefault(e["peer"], dict(client=e["peer"], behaviour=e["behaviour"],
                                             requests=[], responses=0, close=None))
        if e["event"] == "request":
            c["requests"].append(f'{e["method"]} {e["path"]}')
        elif e["event"] == "response":
            c["responses"] += 1
        elif e["event"] == "close":
            c["close"] = e["how"]
    return list(conns.values())


# ---------------------------------------------------------------- recording

def _client(lab: Lab, work: Path, name: str, plan: list[dict]) -> list[dict]:
    plan_path, result_path = work / f"{name}.plan.json", work / f"{name}.result.json"
    plan_path.write_text(json.dumps(plan))
    lab.run("c", [sys.executable, str(HERE / "conf" / "client_b.py"), lab.addr("s", 0),
                  str(plan_path), str(result_path)], timeout=120)
    return json.loads(result_path.read_text())


def _upstream_events(path: Path, start: int) -> tuple[list[dict], int]:
    lines, end = servers_b.log_lines(path, start)
    return [json.loads(l) for l in lines if l.strip()], end


def _recorded(capture_point: str, software: dict) -> dict:
    return dict(command=COMMAND, software=software, one_way_delay_ms=ONE_WAY_MS,
                upstream_one_way_delay_ms=ONE_WAY_MS, loss=0.0, capture_point=capture_point,
                date=time.strftime("%Y-%m-%d", time.gmtime()))


def _proxy_lab(lab: Lab):
    """The upstream started in ``u``; (workdir, upstream ip, proxy ip, upstream log, the proxy's
    two interfaces, the capture point's description, the software versions)."""
    work = lab.workdir
    up_ip, proxy_ip = lab.addr("u"), lab.addr("s", 0)
    up_log = work / "upstream.jsonl"
    servers_b.start(lab, "u", [sys.executable, str(HERE / "conf" / "upstream_b.py"), up_ip,
                               str(UPSTREAM_BASE), str(up_log)], work / "upstream.out",
                    wait_port=(up_ip, UPSTREAM_BASE + 1))
    software = dict(tool_versions(), nginx=version(["nginx", "-v"]), haproxy=version(["haproxy", "-v"]),
                    upstream="captures/record/conf/upstream_b.py",
                    client="captures/record/conf/client_b.py (python sockets)")
    ifaces = [lab.iface("s", 0), lab.iface("s", 1)]
    point = (f"proxy namespace {lab.ns('s')}, dumpcap on {ifaces[0]} (interface 0: client leg "
             f"{lab.addr('c')} <-> {proxy_ip}) and {ifaces[1]} (interface 1: upstream leg "
             f"{lab.addr('s', 1)} <-> {up_ip})")
    return work, up_ip, proxy_ip, up_log, ifaces, point, software


def _start_haproxy(lab: Lab, template: str, proxy_ip: str, up_ip: str):
    """haproxy in ``s`` from a config template; (its process, its log)."""
    cfg = lab.workdir / "haproxy.cfg"
    cfg.write_text(servers_b.render((HERE / "conf" / template).read_text(), dict(LISTEN=proxy_ip, UP=up_ip)))
    log = lab.workdir / "haproxy.log"
    proc = servers_b.start(lab, "s", ["haproxy", "-db", "-f", str(cfg)], log, wait_port=(proxy_ip, HAPROXY_PORT))
    return proc, log


def record(out: Path) -> list[dict]:
    links = [LinkSpec("c", "s", delay_ms=ONE_WAY_MS), LinkSpec("s", "u", delay_ms=ONE_WAY_MS)]
    entries = []
    with Lab("tvB-", "10.88", links) as lab:
        work, up_ip, proxy_ip, up_log, ifaces, point, software = _proxy_lab(lab)
        prefix = servers_b.nginx_prefix(work, "nginx", "nginx_proxy_b.conf",
                                        dict(LISTEN=proxy_ip, UP=up_ip))
        nginx = servers_b.start_nginx(lab, "s", prefix, proxy_ip, NGINX_PORT)
        hap_log = _start_haproxy(lab, "haproxy_b.cfg", proxy_ip, up_ip)[1]
        offsets = dict(err=0, acc=0, up=0, hap=0)

        def logs():
            err, offsets["err"] = servers_b.log_lines(prefix / "error.log", offsets["err"])
            acc, offsets["acc"] = servers_b.log_lines(prefix / "access.log", offsets["acc"])
            up, offsets["up"] = _upstream_events(up_log, offsets["up"])
            hap, offsets["hap"] = servers_b.log_lines(hap_log, offsets["hap"])
            return err, acc, up, hap

        # ---- nginx: each 502 cause and the 504
        logs()
        name = "proxy-nginx-502-504"
        with lab.capture("s", out / f"{name}.pcapng", ifaces):
            results = _client(lab, work, name, error_plan(NGINX_PORT, NGINX_CAUSES))
            time.sleep(IDLE_TIMEOUT + 0.5)    # the pooled /ok connection's idle close
        err, acc, up, _ = logs()
        entries.append(nginx_entry(name, results, err, acc, up, point, software))

        # ---- the keepalive race; a missed race (timing) is re-recorded
        name = "proxy-keepalive-race"
        wait = race_wait(ONE_WAY_MS / 1000, ONE_WAY_MS / 1000)
        for attempt in range(4):
            time.sleep(IDLE_TIMEOUT + 0.5)
            logs()
            with lab.capture("s", out / f"{name}.pcapng", ifaces):
                results = _client(lab, work, name, race_plan(NGINX_PORT, wait))
                time.sleep(IDLE_TIMEOUT + 0.5)
            err, acc, up, _ = logs()
            entry = race_entry(name, results, err, acc, up, point, software, wait)
            if entry["facts"]["race_reproduced"]:
                break
            print(f"keepalive race missed (attempt {attempt + 1}), recording again", file=sys.stderr)
        entries.append(entry)

        # ---- haproxy
        servers_b.stop_server(lab, nginx)
        time.sleep(IDLE_TIMEOUT + 0.5)
        logs()
        name = "proxy-haproxy-503-502"
        with lab.capture("s", out / f"{name}.pcapng", ifaces):
            results = _client(lab, work, name, error_plan(HAPROXY_PORT, HAPROXY_CAUSES))
            time.sleep(IDLE_TIMEOUT + 0.5)
        _, _, up, hap = logs()
        entries.append(haproxy_entry(name, results, hap, up, point, software))
    servers_b.remove_workdir(lab)
    return entries


def _exchanges(results: list[dict], access: list[dict], errors: list[dict], causes: dict) -> list[dict]:
    rows = []
    for r in results:
        a = next((x for x in access if x["client"] == r["client"]), None)
        errs = [e["message"] for e in errors if e.get("client") and a and e["conn"] == a["conn"]]
        rows.append(dict(method=r["method"], path=r["path"], client=r["client"], status=r["status"],
                         upstream_cause=causes.get(r["path"], ""),
                         upstream_addr=a["upstream_addr"] if a else [],
                         upstream_status=a["upstream_status"] if a else [],
                         nginx_error=errs))
    return rows


def nginx_entry(name, results, err, acc, up, point, software) -> dict:
    errors = [e for e in map(parse_error_line, err) if e]
    access = [a for a in map(parse_access_line, acc) if a]
    return dict(
        name=name, file=f"{name}.pcapng",
        title="nginx reverse proxy: every 502 cause and a 504, both legs",
        concepts=["502", "504", "reverse-proxy"],
        look_at=("Interface 0 is the client leg, interface 1 the upstream leg. For each client "
                 "request find the upstream connection it caused: a SYN answered by RST "
                 "(refused), a FIN or RST instead of a response, a response nginx rejects (NUL in "
                 "a header name, a 9 KB header), and a response that comes 2 s late after nginx "
                 "already sent the 504 and closed."),
        recorded=_recorded(point, software), keylog=None,
        extra_files={},
        facts=dict(
            rtt_ms=2 * ONE_WAY_MS, requests=len(results), statuses=statuses(results),
            client_connections=len(results),
            exchanges=_exchanges(results, access, errors, NGINX_CAUSES),
            nginx_error_log=err, nginx_access_log=acc,
            upstream_connections=upstream_connections(up)))


def race_entry(name, results, err, acc, up, point, software, wait) -> dict:
    errors = [e for e in map(parse_error_line, err) if e]
    access = [a for a in map(parse_access_line, acc) if a]
    rows = _exchanges(results, access, errors, {})
    by_path = {r["path"]: r for r in rows}
    get, post = by_path.get("/ok/get-race", {}), by_path.get("/ok/post-race", {})
    post_ni = by_path.get("/okni/post-race", {})
    reproduced = (get.get("status") == 200 and len(get.get("upstream_status", [])) == 2
                  and post.get("status") == 502
                  and post_ni.get("status") == 200 and len(post_ni.get("upstream_status", [])) == 2)
    return dict(
        name=name, file=f"{name}.pcapng",
        title="nginx keepalive race: a pooled upstream connection closes as it is reused",
        concepts=["keepalive-race", "502"],
        look_at=("On interface 1 (upstream leg): after each 'prime' request the upstream closes "
                 "its idle connection after 1 s. nginx reuses the pooled connection at that very "
                 "moment: its request crosses the upstream's FIN and meets a RST. The GET is "
                 "retried on a new connection (client sees 200); the POST is not idempotent, so "
                 "the client gets 502. Under /okni/ (proxy_next_upstream ... non_idempotent) the "
                 "same POST race is retried and succeeds."),
        recorded=dict(_recorded(point, software), client_wait_s=round(wait, 4),
                      upstream_idle_timeout_s=IDLE_TIMEOUT),
        keylog=None, extra_files={},
        facts=dict(
            rtt_ms=2 * ONE_WAY_MS, requests=len(results), statuses=statuses(results),
            client_connections=len(results), race_reproduced=reproduced,
            exchanges=rows, nginx_error_log=err, nginx_access_log=acc,
            upstream_connections=upstream_connections(up)))


def _haproxy_rows(results: list[dict], hap: list[str], causes: dict | None = None) -> list[dict]:
    """One row per client request with what haproxy logged about it (matched by client ip:port)."""
    logged = [h for h in map(haproxy_fields, hap) if h]
    rows = []
    for r in results:
        h = next((x for x in logged if x["client"] == r["client"]), None)
        row = dict(method=r["method"], path=r["path"], client=r["client"], status=r["status"])
        if causes is not None:
            row["upstream_cause"] = causes.get(r["path"], "")
        row.update(haproxy_termination=h["termination"] if h else None,
                   haproxy_retries=h["retries"] if h else None, haproxy_log=h["line"] if h else None)
        rows.append(row)
    return rows


def haproxy_entry(name, results, hap, up, point, software) -> dict:
    rows = _haproxy_rows(results, hap, HAPROXY_CAUSES)
    return dict(
        name=name, file=f"{name}.pcapng",
        title="haproxy reverse proxy: 503 when the upstream refuses, 502 for FIN, RST and a bad status line",
        concepts=["502", "503", "reverse-proxy"],
        look_at=("Interface 1 (upstream leg): a refused connect (retried once: 'retries 1') ends "
                 "in 503; a FIN or RST instead of a response, or a status line haproxy cannot "
                 "parse, ends in 502. haproxy's termination state in the log (SC, SH, PH) names "
                 "the cause."),
        recorded=_recorded(point, software), keylog=None, extra_files={},
        facts=dict(rtt_ms=2 * ONE_WAY_MS, requests=len(results), statuses=statuses(results),
                   client_connections=len(results), exchanges=rows, haproxy_log=hap,
                   upstream_connections=upstream_connections(up)))


# ---------------------------------------------------------------- the tvP- lab: two more captures
#
# proxy-haproxy-reuse-race   haproxy with 'http-reuse always' sends a request on a pooled
#                            upstream connection just as the upstream's 1 s idle timer closes it
# proxy-nginx-upstream-500   the upstream answers 500 itself and nginx passes it on
#                            (X-Forwarded-For and X-Request-Id on the upstream leg)

P_PREFIX, P_NET = "tvP-", "10.92"
P_COMMAND = "sudo python3 captures/record/record.py proxy-more"
UPSTREAM_500_CAUSES = {
    "/ok/first": "answers 200",
    "/err500": "answers 500 Internal Server Error itself",
    "/err500/post": "answers 500 Internal Server Error itself",
}


def reuse_race_plan(port: int, wait: float) -> list[dict]:
    return [
        dict(method="GET", path="/ok/get-prime", port=port, wait=0.0),
        dict(method="GET", path="/ok/get-race", port=port, wait=wait),
        dict(method="GET", path="/ok/post-prime", port=port, wait=2.0),
        dict(method="POST", path="/ok/post-race", port=port, wait=wait, body="order=3"),
    ]


def upstream_500_plan(port: int) -> list[dict]:
    return [dict(method="GET", path="/ok/first", port=port, wait=0.3),
            dict(method="GET", path="/err500", port=port, wait=0.3),
            dict(method="POST", path="/err500/post", port=port, wait=0.3, body="order=4")]


def haproxy_race_reproduced(rows: list[dict]) -> bool:
    """haproxy's own log shows the race: a race request answered 502 with a server-side
    close (SH), or sent again (the retries counter)."""
    raced = [r for r in rows if r["path"].endswith("-race")]
    return any((r["haproxy_termination"] or "").startswith("SH") or (r["haproxy_retries"] or 0) > 0
               for r in raced)


def record_more(out: Path) -> list[dict]:
    links = [LinkSpec("c", "s", delay_ms=ONE_WAY_MS), LinkSpec("s", "u", delay_ms=ONE_WAY_MS)]
    entries = []
    with Lab(P_PREFIX, P_NET, links) as lab:
        work, up_ip, proxy_ip, up_log, ifaces, point, software = _proxy_lab(lab)
        offsets = dict(up=0, hap=0)

        # ---- haproxy: http-reuse always meets the upstream's idle close
        hap, hap_log = _start_haproxy(lab, "haproxy_p.cfg", proxy_ip, up_ip)
        name = "proxy-haproxy-reuse-race"
        base = race_wait(ONE_WAY_MS / 1000, ONE_WAY_MS / 1000)
        for attempt in range(6):
            wait = base + (0.0, 0.004, -0.004, 0.008, -0.008, 0.012)[attempt]
            time.sleep(IDLE_TIMEOUT + 0.5)
            _, offsets["up"] = _upstream_events(up_log, offsets["up"])
            _, offsets["hap"] = servers_b.log_lines(hap_log, offsets["hap"])
            with lab.capture("s", out / f"{name}.pcapng", ifaces):
                results = _client(lab, work, name, reuse_race_plan(HAPROXY_PORT, wait))
                time.sleep(IDLE_TIMEOUT + 0.5)
            up, offsets["up"] = _upstream_events(up_log, offsets["up"])
            hlines, offsets["hap"] = servers_b.log_lines(hap_log, offsets["hap"])
            entry = reuse_race_entry(name, results, hlines, up, point, software, wait)
            if entry["facts"]["race_reproduced"]:
                break
            print(f"haproxy reuse race missed (attempt {attempt + 1}), recording again", file=sys.stderr)
        entries.append(entry)
        servers_b.stop_server(lab, hap)

        # ---- nginx: the upstream's own 500, passed on
        prefix = servers_b.nginx_prefix(work, "nginx", "nginx_proxy_p.conf",
                                        dict(LISTEN=proxy_ip, UP=up_ip))
        servers_b.start_nginx(lab, "s", prefix, proxy_ip, NGINX_PORT)
        time.sleep(IDLE_TIMEOUT + 0.5)
        _, offsets["up"] = _upstream_events(up_log, offsets["up"])
        name = "proxy-nginx-upstream-500"
        with lab.capture("s", out / f"{name}.pcapng", ifaces):
            results = _client(lab, work, name, upstream_500_plan(NGINX_PORT))
            time.sleep(IDLE_TIMEOUT + 0.5)
        err, _ = servers_b.log_lines(prefix / "error.log", 0)
        acc, _ = servers_b.log_lines(prefix / "access.log", 0)
        up, offsets["up"] = _upstream_events(up_log, offsets["up"])
        entries.append(upstream_500_entry(name, results, err, acc, up, point, software))
    servers_b.remove_workdir(lab)
    return entries


def _recorded_p(point: str, software: dict) -> dict:
    return dict(_recorded(point, software), command=P_COMMAND)


def reuse_race_entry(name, results, hap, up, point, software, wait) -> dict:
    rows = _haproxy_rows(results, hap)
    return dict(
        name=name, file=f"{name}.pcapng",
        title="haproxy 'http-reuse always': a pooled upstream connection closes as it is reused",
        concepts=["keepalive-race", "502", "reverse-proxy"],
        look_at=("Interface 1 (upstream leg): haproxy keeps the upstream connection of each 'prime' "
                 "request in its idle pool and, with 'http-reuse always', sends the next client's "
                 "request on it; the upstream closes connections idle for 1 s, so that request "
                 "crosses the upstream's FIN. haproxy's log (termination state, retries counter) "
                 "says what it did about it."),
        recorded=dict(_recorded_p(point, software), client_wait_s=round(wait, 4),
                      upstream_idle_timeout_s=IDLE_TIMEOUT),
        keylog=None, extra_files={},
        facts=dict(rtt_ms=2 * ONE_WAY_MS, requests=len(results), statuses=statuses(results),
                   client_connections=len(results), race_reproduced=haproxy_race_reproduced(rows),
                   exchanges=rows, haproxy_log=hap, upstream_connections=upstream_connections(up)))


def upstream_500_entry(name, results, err, acc, up, point, software) -> dict:
    errors = [e for e in map(parse_error_line, err) if e]
    access = [a for a in map(parse_access_line, acc) if a]
    rows = _exchanges(results, access, errors, UPSTREAM_500_CAUSES)
    for row in rows:
        a = next((x for x in access if x["client"] == row["client"]), None)
        row["request_id"] = a.get("request_id") if a else None
    return dict(
        name=name, file=f"{name}.pcapng",
        title="nginx reverse proxy: the upstream answers 500 itself and nginx passes it on",
        concepts=["500", "reverse-proxy"],
        look_at=("Interface 1 (upstream leg): the upstream's own 'HTTP/1.1 500' reaches the client "
                 "unchanged (proxy_intercept_errors off): the 5xx is the application's, not the "
                 "proxy's. Each upstream request carries X-Forwarded-For (the client's address) and "
                 "X-Request-Id, which nginx also returns to the client."),
        recorded=_recorded_p(point, software), keylog=None, extra_files={},
        facts=dict(rtt_ms=2 * ONE_WAY_MS, requests=len(results), statuses=statuses(results),
                   client_connections=len(results), exchanges=rows, nginx_error_log=err,
                   nginx_access_log=acc, upstream_connections=upstream_connections(up)))


SCENARIOS = [Scenario("proxy", "nginx/haproxy reverse proxy: 502, 504, keepalive race, 503",
                    record, requires=("ip", "ethtool", "dumpcap", "editcap", "tshark", "nginx",
                                      "haproxy")),
             Scenario("proxy-more", "haproxy reuse race and an upstream's own 500 (tvP- lab)",
                      record_more, requires=("ip", "ethtool", "dumpcap", "editcap", "tshark", "nginx",
                                             "haproxy"))]

if __name__ == "__main__":
    import manifest
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent
    made = record(out)
    manifest.update(made)
    print(json.dumps([e["name"] for e in made]))
