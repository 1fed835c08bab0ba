"""Scenario 5: QUIC + HTTP/3 (aioquic) vs TCP + TLS 1.3 + HTTP/2 (nginx), same requests.

Both over the same 50 ms RTT path from ``tvB-c`` to ``tvB-s``; dumpcap in
the client's namespace.  The same 13 requests (a page, then 12 resources of
12 KB at once) go first over HTTP/3 to a small aioquic server (UDP 443),
then over HTTP/2 to nginx (TCP 443):

    quic-h3               one QUIC connection: 1-RTT handshake, 13 request streams;
                          keys from both ends, qlog from both ends
                          (quic-h3.qlog/client/, quic-h3.qlog/server/)
    quic-vs-h2-tcp        the same requests over TCP + TLS 1.3 + HTTP/2:
                          SYN round trip + TLS round trip before the first request
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "conf"))

from netlab import Lab, Scenario, inject_keys, tool_versions, version  # noqa: E402
from relay import LinkSpec  # noqa: E402
import servers_b  # noqa: E402
from certs_b import make_cert  # noqa: E402
from scenarios_h2 import by_connection, max_concurrency, site_files, statuses, write_site  # noqa: E402

ONE_WAY_MS = 25.0
H3_PORT = 443
COMMAND = "sudo python3 captures/record/record.py quic"


def same_requests() -> list[str]:
    """The page and the 12 resources, from the unthrottled /s/ folder of the site."""
    return ["/index.html"] + [p.replace("/r/", "/s/") for p in site_files() if p.startswith("/r/")]


def quic_site() -> dict[str, bytes]:
    return {p.replace("/r/", "/s/"): data for p, data in site_files().items()}


def qlog_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.qlog"))


def h3_facts(rows: list[dict], server_log: list[dict], qlog_dir: Path) -> dict:
    return dict(
        rtt_ms=2 * ONE_WAY_MS, requests=len(rows), statuses=statuses(rows),
        quic_connections=len({r["connection"] for r in rows}),
        client_ports=sorted({r["client_port"] for r in rows}),
        streams=sorted(r["stream_id"] for r in rows),
        max_concurrent_requests=max_concurrency(rows),
        response_bytes={r["path"]: r["bytes"] for r in rows},
        server_log=server_log, client_log=rows,
        qlog_client=[f"client/{n}" for n in qlog_files(qlog_dir / "client")],
        qlog_server=[f"server/{n}" for n in qlog_files(qlog_dir / "server")])


def record(out: Path) -> list[dict]:
    h3_name, tcp_name = "quic-h3", "quic-vs-h2-tcp"
    qlog_dir = out / f"{h3_name}.qlog"
    shutil.rmtree(qlog_dir, ignore_errors=True)
    (qlog_dir / "client").mkdir(parents=True)
    (qlog_dir / "server").mkdir(parents=True)
    h3_keys, tcp_keys = out / f"{h3_name}.keys", out / f"{tcp_name}.keys"
    server_keys = out / f"{h3_name}.server.keys"
    for k in (h3_keys, tcp_keys, server_keys):
        if k.exists():
            k.unlink()
    entries = []
    with Lab("tvB-", "10.88", [LinkSpec("c", "s", delay_ms=ONE_WAY_MS)]) as lab:
        work, ip = lab.workdir, lab.addr("s")
        prefix = servers_b.nginx_prefix(work, "nginx", "nginx_h2_b.conf", dict(LISTEN=ip))
        cert, key = make_cert(prefix, ip)
        write_site(prefix / "site", quic_site())
        servers_b.start_nginx(lab, "s", prefix, ip, 443)
        h3_log = work / "h3-server.jsonl"
        servers_b.start(lab, "s", [sys.executable, str(HERE / "conf" / "h3_server_b.py"), ip,
                                   str(H3_PORT), str(cert), str(key), str(prefix / "site"),
                                   str(server_keys), str(qlog_dir / "server"), str(h3_log)],
                        work / "h3-server.out")
        servers_b.wait_listening(lab, "s", ip, H3_PORT, udp=True)
        software = dict(tool_versions(), nginx=version(["nginx", "-v"]),
                        aioquic=version([sys.executable, "-c", "import aioquic;print('aioquic', aioquic.__version__)"]),
                        httpx=version([sys.executable, "-c", "import httpx,h2;print('httpx', httpx.__version__, 'h2', h2.__version__)"]))
        point = f"client namespace tvB-c, dumpcap on {lab.iface('c')}"
        paths = same_requests()

        # ---- HTTP/3 over QUIC
        result = work / "h3.json"
        with lab.capture("c", out / f"{h3_name}.pcapng"):
            lab.run("c", [sys.executable, str(HERE / "conf" / "h3_client_b.py"), ip, str(H3_PORT),
                          str(cert), str(h3_keys), str(qlog_dir / "client"), str(result), *paths])
            time.sleep(0.5)
        inject_keys(out / f"{h3_name}.pcapng", h3_keys)
        rows = json.loads(result.read_text())
        server_log = [json.loads(l) for l in servers_b.log_lines(h3_log)[0] if l.strip()]
        entries.append(dict(
            name=h3_name, file=f"{h3_name}.pcapng",
            title="QUIC + HTTP/3 (aioquic): 13 requests on one connection, keys and qlog from both ends",
            concepts=["quic", "h3"],
            look_at=("UDP only. The client's Initial (padded to 1200 bytes) carries the TLS "
                     "ClientHello; one round trip later the server's Initial + Handshake packets "
                     "arrive and the client sends its first request right after: a 1-RTT handshake "
                     "(compare quic-vs-h2-tcp: SYN round trip, then TLS). Requests are client "
                     "bidirectional streams 0, 4, 8 ... Decrypt with the key log; the qlog folders "
                     "show the same connection from each end."),
            recorded=dict(command=COMMAND, software=software, one_way_delay_ms=ONE_WAY_MS, loss=0.0,
                          capture_point=point,
                          server="captures/record/conf/h3_server_b.py (aioquic)",
                          client="captures/record/conf/h3_client_b.py (aioquic)",
                          date=time.strftime("%Y-%m-%d", time.gmtime())),
            keylog=h3_keys.name,
            extra_files=dict(server_keylog=server_keys.name, qlog=qlog_dir.name,
                             qlog_client=f"{qlog_dir.name}/client", qlog_server=f"{qlog_dir.name}/server"),
            facts=h3_facts(rows, server_log, qlog_dir)))

        # ---- the same requests over TCP + TLS 1.3 + HTTP/2
        result = work / "h2.json"
        _, offset = servers_b.log_lines(prefix / "access.log")
        with lab.capture("c", out / f"{tcp_name}.pcapng"):
            lab.run("c", [sys.executable, str(HERE / "conf" / "http_client_b.py"), "h2",
                          f"https://{ip}", str(cert), str(tcp_keys), str(result), *paths])
            time.sleep(0.3)
        inject_keys(out / f"{tcp_name}.pcapng", tcp_keys)
        access, _ = servers_b.log_lines(prefix / "access.log", offset)
        rows = json.loads(result.read_text())
        entries.append(dict(
            name=tcp_name, file=f"{tcp_name}.pcapng",
            title="The quic-h3 requests over TCP + TLS 1.3 + HTTP/2 (nginx), for the handshake comparison",
            concepts=["h2", "tls13-vs-quic"],
            look_at=("Same path, same 13 requests as quic-h3. Count round trips before the first "
                     "request leaves: TCP's SYN/SYN-ACK (1 RTT), then TLS 1.3 (1 RTT), so the "
                     "first HEADERS frame goes out about one RTT later than the first QUIC request."),
            recorded=dict(command=COMMAND, software=software, one_way_delay_ms=ONE_WAY_MS, loss=0.0,
                          capture_point=point, server="nginx, config captures/record/conf/nginx_h2_b.conf (/s/ unthrottled)",
                          client="captures/record/conf/http_client_b.py h2",
                          date=time.strftime("%Y-%m-%d", time.gmtime())),
            keylog=tcp_keys.name, extra_files={},
            facts=dict(rtt_ms=2 * ONE_WAY_MS, requests=len(rows), statuses=statuses(rows),
                       client_connections=len(by_connection(rows)),
                       requests_by_connection=by_connection(rows),
                       streams=sorted(r["stream_id"] for r in rows if r["stream_id"] is not None),
                       max_concurrent_requests=max_concurrency(rows),
                       response_bytes={r["path"]: r["bytes"] for r in rows},
                       client_log=rows, nginx_access_log=access)))
    servers_b.remove_workdir(lab)
    for f in [h3_keys, tcp_keys, server_keys, *qlog_dir.rglob("*")]:
        f.chmod(0o755 if f.is_dir() else 0o644)
    return entries


SCENARIOS = [Scenario("quic", "QUIC + HTTP/3 vs TCP + TLS 1.3 + HTTP/2, same requests", record,
                      requires=("ip", "ethtool", "dumpcap", "editcap", "tshark", "nginx"))]
