"""Scenario 3: HTTP/1.1 keep-alive vs ``Connection: close``, a server idle timeout, TCP keep-alive probes.

The server is a real nginx (foreground, its own prefix in a temp folder,
an access log that names each request's connection); the client is a small
hand-written HTTP/1.1 client on plain sockets, because the point is to
control exactly which request goes on which connection and when the client
idles (http.client hides both).  ``get`` and ``read_response`` are also used
by scenarios_tls.py inside TLS.

Roles inside the namespaces: ``python scenarios_http1.py client PLAN_JSON``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from netlab import Lab, Scenario, tool_versions, version  # noqa: E402
from relay import LinkSpec  # noqa: E402

ONE_WAY_MS = 12.5
PORT = 80
IDLE_TIMEOUT_S = 2
RESOURCES = [f"/r/{i:02d}.{ext}" for i, ext in enumerate(["css", "js", "png", "svg", "woff2",
                                                            "css", "js", "png", "jpg", "json"], 1)]
RECORD_CMD = "sudo python captures/record/record.py {name}"


def log(**fields) -> None:
    print(json.dumps(fields), flush=True)


# ---------------------------------------------------------------- HTTP/1.1 client pieces

def get(sock, f, host: str, path: str, close: bool = False) -> dict:
    """Send one GET on ``sock`` and read its response from ``f`` (sock.makefile('rb'))."""
    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: traceviz-lab\r\n"
    if close:
        head += "Connection: close\r\n"
    sock.sendall((head + "\r\n").encode())
    return {"method": "GET", "path": path, **read_response(f)}


def read_response(f) -> dict:
    status_line = f.readline().decode("latin-1").strip()
    if not status_line:
        return {"status": None, "bytes": 0}
    headers = {}
    for line in iter(f.readline, b"\r\n"):
        if not line:
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    body = f.read(int(headers.get("content-length", "0")))
    return {"status": int(status_line.split()[1]), "bytes": len(body),
            "server_closes": headers.get("connection", "").lower() == "close"}


def connect(me: str, server: str, port: int, keepalive: dict | None = None) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)     # as curl and browsers do
    s.bind((me, 0))
    if keepalive:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, keepalive["idle"])
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, keepalive["intvl"])
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, keepalive["cnt"])
    s.connect((server, port))
    return s


def endpoint(addr) -> str:
    return f"{addr[0]}:{addr[1]}"


# ---------------------------------------------------------------- client role

def run_plan(me: str, server: str, plan: list[dict]) -> None:
    """One connection per plan step: {"paths": [...], "close": bool, "idle_s": float, "keepalive": {...}}."""
    for step in plan:
        s = connect(me, server, PORT, step.get("keepalive"))
        client = endpoint(s.getsockname())
        f = s.makefile("rb")
        t0 = time.monotonic()
        reqs = [get(s, f, server, p, close=step.get("close", False)) for p in step["paths"]]
        outcome = "fin-client"
        if reqs and reqs[-1].get("server_closes"):
            f.read()
            outcome = "fin-server"
        elif step.get("idle_s"):
            outcome = idle(s, f, step["idle_s"])
        lasted = time.monotonic() - t0
        f.close()
        s.close()
        log(client=client, server=f"{server}:{PORT}",
            outcome=outcome, requests=reqs, lasted_s=round(lasted, 3))
        time.sleep(step.get("pause_s", 0.1))


def idle(s: socket.socket, f, seconds: float) -> str:
    """Sit idle; 'fin-server' if the server closes first, else the client closes after ``seconds``."""
    s.settimeout(seconds)
    try:
        data = f.read(1)
    except (TimeoutError, socket.timeout):
        return "fin-client"
    return "fin-server" if data == b"" else "fin-client"


# ---------------------------------------------------------------- nginx

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
user root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format lab '{{"conn":$connection,"nreq":$connection_requests,"remote":"$remote_addr:$remote_port","request":"$request","status":$status,"bytes":$body_bytes_sent}}';
    access_log {prefix}/access.log lab;
    keepalive_timeout {keepalive_timeout}s;
    keepalive_requests 1000;
    sendfile off;
    server_tokens off;
    types {{ text/css css; application/javascript js; image/png png; image/svg+xml svg;
             font/woff2 woff2; image/jpeg jpg; application/json json; }}
    server {{
        listen {addr}:{port} reuseport;
        root {prefix}/www;
    }}
}}
"""


def start_nginx(lab: Lab, host: str, keepalive_timeout: int) -> Path:
    prefix = lab.workdir / "nginx"
    (prefix / "www" / "r").mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(RESOURCES):
        # Small, distinct bodies: 600 B .. 4 KB, so every response fits a few segments.
        (prefix / "www" / path.lstrip("/")).write_bytes(bytes([65 + i]) * (600 + 380 * i))
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, addr=lab.addr(host), port=PORT,
                                      keepalive_timeout=keepalive_timeout))
    proc = lab.popen(host, ["nginx", "-p", str(prefix), "-c", str(conf)])
    wait_listening(lab, host, PORT, proc)
    return prefix


def wait_listening(lab: Lab, host: str, port: int, proc=None, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and (proc is None or proc.poll() is None):
        out = lab.exec(host, ["ss", "-ltnH"], quiet=True).stdout
        if f":{port} " in out:
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} in {host}")


def access_log(prefix: Path) -> list[dict]:
    path = prefix / "access.log"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


# ---------------------------------------------------------------- recording

def record_one(out: Path, name: str, plan: list[dict], keepalive_timeout: int) -> tuple[list[dict], list[dict]]:
    """Record ``plan`` against nginx; returns (client log, nginx access log)."""
    me = [sys.executable, str(Path(__file__).resolve())]
    with Lab("tvA-", "10.77", [LinkSpec("c", "s", delay_ms=ONE_WAY_MS)]) as lab:
        prefix = start_nginx(lab, "s", keepalive_timeout)
        with lab.capture("c", out / f"{name}.pcapng"):
            done = lab.run("c", me + ["client", lab.addr("c"), lab.addr("s"), json.dumps(plan)])
        time.sleep(0.2)
    conns = [json.loads(x) for x in done.stdout.splitlines() if x.strip()]
    server_log = access_log(prefix)
    shutil.rmtree(lab.workdir, ignore_errors=True)
    return conns, server_log


def facts(conns: list[dict], server_log: list[dict], **extra) -> dict:
    statuses: dict[str, int] = {}
    for c in conns:
        for r in c["requests"]:
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    return {
        "rtt_ms": 2 * ONE_WAY_MS,
        "connections": [{"transport": "tcp", "client": c["client"], "server": c["server"],
                         "outcome": c["outcome"], "syns": 1, "lasted_s": c["lasted_s"],
                         "requests": [{"method": r["method"], "path": r["path"], "status": r["status"],
                                       "body_bytes": r["bytes"]} for r in c["requests"]]}
                        for c in conns],
        "requests": sum(len(c["requests"]) for c in conns),
        "statuses": statuses,
        "server_log": server_log,
        **extra,
    }


def recorded(name: str, **extra) -> dict:
    return {
        "command": RECORD_CMD.format(name=name),
        "software": {**tool_versions(), "nginx": version(["nginx", "-v"])},
        "one_way_delay_ms": ONE_WAY_MS,
        "loss": 0.0,
        "capture_point": "client namespace interface (tvA-c0)",
        "client": "hand-written HTTP/1.1 client on Python sockets (scenarios_http1.py), TCP_NODELAY",
        "server": "nginx, foreground, sendfile off",
        **extra,
    }


def entry(name, title, concepts, look_at, conns, server_log, rec_extra=None, **fact_extra) -> dict:
    return {"name": name, "file": f"{name}.pcapng", "title": title, "concepts": concepts,
            "look_at": look_at, "recorded": recorded(name, **(rec_extra or {})),
            "keylog": None, "private_key": None, "facts": facts(conns, server_log, **fact_extra)}


def record_keepalive(out: Path) -> list[dict]:
    name = "http1-keepalive-vs-close"
    plan = [{"paths": RESOURCES, "pause_s": 0.3}] + [{"paths": [p], "close": True} for p in RESOURCES]
    conns, log_ = record_one(out, name, plan, keepalive_timeout=30)
    return [entry(
        name, "HTTP/1.1: ten resources on one keep-alive connection, then ten with Connection: close",
        ["http1-keepalive", "connection-close", "tcp-handshake"],
        "The first connection carries all ten GETs one after another: one handshake, then one round "
        "trip per request. The next ten connections each send one GET with 'Connection: close': "
        "every request pays its own handshake and nginx closes each connection (its FIN comes first).",
        conns, log_, {"nginx_keepalive_timeout_s": 30})]


def record_idle(out: Path) -> list[dict]:
    name = "http1-idle-timeout"
    plan = [{"paths": [RESOURCES[0]], "idle_s": IDLE_TIMEOUT_S + 3}]
    conns, log_ = record_one(out, name, plan, keepalive_timeout=IDLE_TIMEOUT_S)
    return [entry(
        name, f"HTTP/1.1: nginx closes an idle keep-alive connection after {IDLE_TIMEOUT_S} s",
        ["idle-timeout", "http1-keepalive"],
        f"One GET, then silence. After {IDLE_TIMEOUT_S} s (nginx keepalive_timeout) the server sends "
        "FIN without any request pending; the client only learns of it when it reads.",
        conns, log_, {"nginx_keepalive_timeout_s": IDLE_TIMEOUT_S}, idle_timeout_s=IDLE_TIMEOUT_S)]


KEEPALIVE = {"idle": 1, "intvl": 1, "cnt": 3}
KEEPALIVE_IDLE_S = 4.5


def record_tcp_keepalive(out: Path) -> list[dict]:
    name = "tcp-keepalive"
    plan = [{"paths": [RESOURCES[0]], "idle_s": KEEPALIVE_IDLE_S, "keepalive": KEEPALIVE}]
    conns, log_ = record_one(out, name, plan, keepalive_timeout=30)
    return [entry(
        name, "TCP keep-alive probes on an idle HTTP/1.1 connection (SO_KEEPALIVE, 1 s idle, 1 s interval)",
        ["tcp-keepalive", "http1-keepalive"],
        "After the GET the connection idles. From 1 s of silence on, the client's kernel sends a probe "
        "every second: an empty segment one byte behind (seq = next - 1), which tshark marks "
        "'TCP Keep-Alive'; the server's kernel answers each with a duplicate ACK ('Keep-Alive ACK'). "
        "No application data moves.",
        conns, log_, {"nginx_keepalive_timeout_s": 30,
                      "client_socket_options": "SO_KEEPALIVE=1 TCP_KEEPIDLE=1 TCP_KEEPINTVL=1 TCP_KEEPCNT=3"},
        keepalive={"idle_s": KEEPALIVE["idle"], "interval_s": KEEPALIVE["intvl"], "count": KEEPALIVE["cnt"],
                   "client_idle_s": KEEPALIVE_IDLE_S})]


REQUIRES = ("ip", "ping", "ethtool", "dumpcap", "editcap", "tshark", "nginx", "ss")
SCENARIOS = [
    Scenario("http1-keepalive-vs-close", "HTTP/1.1 keep-alive vs Connection: close (nginx)",
             record_keepalive, REQUIRES),
    Scenario("http1-idle-timeout", "HTTP/1.1 server idle timeout (nginx keepalive_timeout 2 s)",
             record_idle, REQUIRES),
    Scenario("tcp-keepalive", "TCP keep-alive probes on an idle connection", record_tcp_keepalive, REQUIRES),
]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="role", required=True)
    c = sub.add_parser("client")
    c.add_argument("me")
    c.add_argument("server")
    c.add_argument("plan")
    args = p.parse_args(argv)
    run_plan(args.me, args.server, json.loads(args.plan))


if __name__ == "__main__":
    main()
