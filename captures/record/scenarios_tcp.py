"""Scenario 1: TCP handshakes — normal, refused, a dropped SYN, a server that never answers.

Kernel TCP in two namespaces, plain Python sockets, a 25 ms RTT from the relay.
The relay drops the first SYN to ``DROP_ONCE`` (the kernel retransmits after
1 s) and every SYN to ``BLACKHOLE`` (the client gives up after TCP_SYNCNT=2
retransmissions).  Nothing listens on ``REFUSED`` (the server's kernel answers RST).

Run as roles inside the namespaces: ``python scenarios_tcp.py server|client ...``;
``record(out)`` drives both and writes the capture.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from netlab import Lab, Scenario, tool_versions  # noqa: E402
from relay import LinkSpec  # noqa: E402

ONE_WAY_MS = 12.5
NORMAL, DROP_ONCE, BLACKHOLE, REFUSED = 9001, 9002, 9003, 9009
RECORD_CMD = "sudo python captures/record/record.py {name}"


def log(**fields) -> None:
    print(json.dumps(fields), flush=True)


def endpoint(addr) -> str:
    return f"{addr[0]}:{addr[1]}"


# ---------------------------------------------------------------- server role

def serve(host: str, ports: list[int]) -> None:
    """Echo server: answers each line ``ping N`` with ``pong N``; ``bye`` makes it close first."""
    for port in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(16)
        threading.Thread(target=accept_loop, args=(s,), daemon=True).start()
    log(event="ready")
    threading.Event().wait()


def accept_loop(s: socket.socket) -> None:
    while True:
        conn, peer = s.accept()
        threading.Thread(target=answer, args=(conn, peer), daemon=True).start()


def answer(conn: socket.socket, peer) -> None:
    f = conn.makefile("rb")
    for line in f:
        word = line.decode().strip()
        if word == "bye":
            conn.sendall(b"bye\n")
            conn.shutdown(socket.SHUT_WR)     # the server closes first on this one
            break
        conn.sendall(word.replace("ping", "pong").encode() + b"\n")
    f.close()
    conn.close()


# ---------------------------------------------------------------- client role

def client(me: str, server: str) -> None:
    for lines in (["ping 1"], ["ping 1", "ping 2"], ["ping 1", "bye"]):
        talk(me, server, NORMAL, lines)
        time.sleep(0.2)
    talk(me, server, REFUSED, ["ping 1"])
    time.sleep(0.2)
    talk(me, server, DROP_ONCE, ["ping 1"])
    time.sleep(0.2)
    talk(me, server, BLACKHOLE, ["ping 1"], syncnt=2)


def talk(host: str, server: str, port: int, lines: list[str], syncnt: int | None = None) -> None:
    s = socket.socket()
    s.bind((host, 0))
    if syncnt is not None:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, syncnt)
    me = endpoint(s.getsockname())
    t0 = time.monotonic()
    try:
        s.connect((server, port))
    except ConnectionRefusedError:
        log(client=me, server=f"{server}:{port}", outcome="refused", connect_s=time.monotonic() - t0)
        return s.close()
    except (TimeoutError, socket.timeout):
        log(client=me, server=f"{server}:{port}", outcome="unanswered", connect_s=time.monotonic() - t0)
        return s.close()
    connect_s = time.monotonic() - t0
    f = s.makefile("rb")
    exchanges, outcome = [], "fin-client"
    for line in lines:
        s.sendall(line.encode() + b"\n")
        reply = f.readline().decode().strip()
        exchanges.append([line, reply])
    if lines[-1] == "bye":
        assert f.read() == b""        # the server's FIN arrives before we close
        outcome = "fin-server"
    f.close()
    s.close()
    log(client=me, server=f"{server}:{port}", outcome=outcome, connect_s=connect_s, exchanges=exchanges)


# ---------------------------------------------------------------- recording

def record(out: Path) -> list[dict]:
    name = "tcp-handshakes"
    pcap = out / f"{name}.pcapng"
    link = LinkSpec("c", "s", delay_ms=ONE_WAY_MS, drop_syn={DROP_ONCE: 1, BLACKHOLE: -1})
    me = [sys.executable, str(Path(__file__).resolve())]
    with Lab("tvA-", "10.77", [link]) as lab:
        # Textbook exponential SYN backoff (1 s, 2 s, 4 s): kernels >= 6.5 default to
        # linear 1 s steps for the first four retries.
        lab.sysctl("c", "net.ipv4.tcp_syn_linear_timeouts=0")
        lab.popen("s", me + ["server", lab.addr("s"), str(NORMAL), str(DROP_ONCE), str(BLACKHOLE)],
                  ready="ready")
        with lab.capture("c", pcap):
            done = lab.run("c", me + ["client", lab.addr("c"), lab.addr("s")])
    conns = [json.loads(x) for x in done.stdout.splitlines() if x.strip()]
    dropped = [d for line in lab.relay_stats for d in line["a_to_b"]["dropped"]]
    shutil.rmtree(lab.workdir, ignore_errors=True)
    return [entry(name, conns, dropped)]


def entry(name: str, conns: list[dict], dropped: list[dict]) -> dict:
    facts_conns = []
    for c in conns:
        port = int(c["server"].rsplit(":", 1)[1])
        syns_dropped = sum(1 for d in dropped if d["dport"] == port)
        facts_conns.append({
            "transport": "tcp", "client": c["client"], "server": c["server"],
            "outcome": c["outcome"],
            "syns": syns_dropped + (0 if c["outcome"] == "unanswered" else 1),
            "connect_s": round(c["connect_s"], 4),
            "exchanges": len(c.get("exchanges", [])),
        })
    return {
        "name": name,
        "file": f"{name}.pcapng",
        "title": "TCP handshakes: normal, refused, a dropped SYN, a server that never answers",
        "concepts": ["tcp-handshake", "refused", "syn-retransmit", "unanswered"],
        "look_at": (
            "Each normal connection opens with SYN, SYN-ACK, ACK one 25 ms round trip apart. "
            f"Port {REFUSED} answers the SYN with RST (refused). The first SYN to port {DROP_ONCE} "
            "is lost and the kernel retransmits it 1 s later. Port "
            f"{BLACKHOLE} never answers: SYNs at 0, 1 and 3 s, then the client gives up at 7 s."),
        "recorded": {
            "command": RECORD_CMD.format(name=name),
            "software": tool_versions(),
            "one_way_delay_ms": ONE_WAY_MS,
            "loss": 0.0,
            "relay_rules": f"drop the first SYN to port {DROP_ONCE}, every SYN to port {BLACKHOLE}",
            "capture_point": "client namespace interface (tvA-c0), so SYN to SYN-ACK is the full RTT",
            "client": ("Python sockets (kernel TCP); TCP_SYNCNT=2 on the unanswered connection; "
                       "client sysctl net.ipv4.tcp_syn_linear_timeouts=0 for exponential SYN backoff"),
            "server": "Python sockets echo server",
        },
        "keylog": None,
        "private_key": None,
        "facts": {
            "rtt_ms": 2 * ONE_WAY_MS,
            "connections": facts_conns,
            "relay_dropped_syns": {str(p): sum(1 for d in dropped if d["dport"] == p)
                                   for p in sorted({d["dport"] for d in dropped})},
        },
    }


SCENARIOS = [Scenario("tcp-handshakes", "TCP handshakes: normal, refused, dropped SYN, unanswered", record)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("server")
    s.add_argument("host")
    s.add_argument("ports", nargs="+", type=int)
    c = sub.add_parser("client")
    c.add_argument("me")
    c.add_argument("server")
    args = p.parse_args(argv)
    if args.role == "server":
        serve(args.host, args.ports)
    else:
        client(args.me, args.server)


if __name__ == "__main__":
    main()
