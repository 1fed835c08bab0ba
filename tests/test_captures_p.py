"""The tvP- lab's captures (haproxy reuse race, nginx passing on the upstream's 500) against tshark.

The manifest facts come from the recording side (client results, haproxy's
and nginx's logs, the upstream's log); here tshark's reading of the same
file must agree with them.  Below: the recorder's new pure parts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
RECORD = CAPTURES / "record"
sys.path.insert(0, str(RECORD))
sys.path.insert(0, str(RECORD / "conf"))

FIELDS = ["frame.interface_id", "frame.time_epoch", "tcp.stream", "tcp.srcport", "tcp.dstport", "tcp.flags.fin",
          "tcp.flags.reset", "tcp.seq", "tcp.ack", "tcp.len", "http.request.method", "http.request.uri",
          "http.response.code", "http.request.line", "ip.src"]


def entry(name: str) -> dict:
    for e in json.loads((CAPTURES / "manifest.json").read_text())["captures"]:
        if e["name"] == name:
            return e
    raise LookupError(name)


def packets(tshark: str, e: dict) -> list[dict]:
    argv = [tshark, "-r", str(CAPTURES / e["file"]), "-Y", "tcp", "-T", "fields", "-E", "separator=\t",
            "-E", "occurrence=a", "-E", "aggregator=|"]
    for f in FIELDS:
        argv += ["-e", f]
    out = []
    for line in subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines():
        v = dict(zip(FIELDS, line.split("\t") + [""] * len(FIELDS)))
        out.append(dict(iface=int(v["frame.interface_id"]), time=float(v["frame.time_epoch"]),
                        stream=int(v["tcp.stream"]), sport=int(v["tcp.srcport"]), dport=int(v["tcp.dstport"]),
                        fin=v["tcp.flags.fin"] in ("1", "True"), rst=v["tcp.flags.reset"] in ("1", "True"),
                        seq=int(v["tcp.seq"]), ack=int(v["tcp.ack"] or 0), len=int(v["tcp.len"] or 0),
                        method=v["http.request.method"], uri=v["http.request.uri"],
                        code=v["http.response.code"], lines=v["http.request.line"], src=v["ip.src"]))
    return out


def client_codes(table, port) -> dict[int, str]:
    return {p["dport"]: p["code"] for p in table if p["iface"] == 0 and p["sport"] == port and p["code"]}


@pytest.mark.parametrize("name,port", [("proxy-haproxy-reuse-race", 8080), ("proxy-nginx-upstream-500", 80)])
def test_client_leg_statuses(tshark, name, port):
    e = entry(name)
    codes = client_codes(packets(tshark, e), port)
    for x in e["facts"]["exchanges"]:
        assert codes[int(x["client"].rsplit(":", 1)[1])] == str(x["status"]), x["path"]
    assert Counter(codes.values()) == Counter(e["facts"]["statuses"])
    assert (CAPTURES / e["file"]).stat().st_size <= 1024 * 1024
    assert e["recorded"]["capture_point"].startswith("proxy namespace tvP-s")


def test_haproxy_reuse_race_on_the_wire(tshark):
    e = entry("proxy-haproxy-reuse-race")
    assert e["facts"]["race_reproduced"]
    up = [p for p in packets(tshark, e) if p["iface"] == 1]
    by_stream = defaultdict(list)
    for p in up:
        by_stream[p["stream"]].append(p)
    raced = []
    for ps in by_stream.values():
        requests = [p for p in ps if p["dport"] == 9001 and p["method"]]
        answers = [p for p in ps if p["sport"] == 9001 and p["code"]]
        fins = [p for p in ps if p["sport"] == 9001 and p["fin"]]
        if len(requests) > len(answers):
            last = requests[-1]
            # the upstream's FIN acknowledges none of the request: it left before the request arrived
            assert fins and fins[0]["ack"] <= last["seq"]
            assert any(p["rst"] and p["sport"] == 9001 and p["time"] > last["time"] for p in ps)
            raced.append(last["uri"])
    races = [x for x in e["facts"]["exchanges"] if x["haproxy_termination"].startswith("SH")]
    assert sorted(raced) == sorted(x["path"] for x in races) == ["/ok/get-race", "/ok/post-race"]
    # haproxy's timers: Tc = 0, the request went out on a connection it already had (reuse)
    for x in races:
        assert x["haproxy_log"].split()[4].split("/")[2] == "0"
        assert x["status"] == 502 and x["haproxy_retries"] == 0


def test_nginx_upstream_500_on_the_wire(tshark):
    e = entry("proxy-nginx-upstream-500")
    table = packets(tshark, e)
    upstream_codes = Counter(p["code"] for p in table if p["iface"] == 1 and p["sport"] == 9008 and p["code"])
    assert upstream_codes == Counter({"500": 2})
    assert all(x["nginx_error"] == [] for x in e["facts"]["exchanges"])
    # X-Forwarded-For and X-Request-Id on the upstream leg (nginx's proxy_set_header)
    argv = [tshark, "-r", str(CAPTURES / e["file"]), "-Y", "frame.interface_id == 1 && http.request",
            "-T", "fields", "-e", "http.x_forwarded_for", "-e", "http.request.line"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    ids = {x["request_id"] for x in e["facts"]["exchanges"]}
    assert sum(f"X-Request-Id: {i}" in out for i in ids) == len(ids)
    assert all(line.split("\t")[0] == "10.92.0.1" for line in out.splitlines())


# ---------------------------------------------------------------- the recorder's pure parts

def test_reuse_race_plan_and_detection():
    from scenarios_proxy import haproxy_race_reproduced, reuse_race_plan
    plan = reuse_race_plan(8080, 0.925)
    assert [s["path"] for s in plan] == ["/ok/get-prime", "/ok/get-race", "/ok/post-prime", "/ok/post-race"]
    assert plan[1]["wait"] == plan[3]["wait"] == 0.925 and plan[3]["method"] == "POST"
    rows = [dict(path="/ok/get-race", haproxy_termination="----", haproxy_retries=0)]
    assert not haproxy_race_reproduced(rows)
    assert haproxy_race_reproduced([dict(rows[0], haproxy_termination="SH--")])
    assert haproxy_race_reproduced([dict(rows[0], haproxy_retries=1)])


def test_recorder_log_parsers_read_the_new_fields():
    from scenarios_proxy import haproxy_fields, parse_access_line
    line = ('1.5 10.0.0.1:5 c3 "GET /x HTTP/1.1" 500 up="1.2.3.4:80" ups="500" urt="0.1" '
            'rid="1c7270ed2e401063573c0a34088c61b9"')
    assert parse_access_line(line)["request_id"] == "1c7270ed2e401063573c0a34088c61b9"
    f = haproxy_fields('10.0.0.1:1 [02/Dec/2026:19:58:00.385] fe be/up 0/0/0/-1/25 502 209 - - SH-- '
                       '1/1/0/0/+1 0/0 "GET /a HTTP/1.1"')
    assert (f["termination"], f["retries"], f["timers"]) == ("SH--", 1, "0/0/0/-1/25")


def test_upstream_answers_500_itself():
    from client_b import status_of
    from upstream_b import port_of, response
    assert status_of(response("err500", "/err500")) == 500
    assert port_of(9000, "err500") == 9008 and port_of(9000, "badstatus") == 9007   # old ports unchanged
