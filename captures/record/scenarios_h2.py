"""Scenario 4: HTTP/2 multiplexing vs HTTP/1.1 with six connections, and h2c.

nginx 1.22 in ``tvB-s`` serves 12 resources of 12 KB each, throttled
(``limit_rate 4k`` per request, ``sendfile off``, ``http2_chunk_size 4k``)
so that HTTP/2 DATA frames of different streams interleave on the wire.
httpx in ``tvB-c`` fetches a page, then the 12 resources at once:

    h2-multiplexing        TLS 1.3 + ALPN h2: one connection, 13 streams
    http1-six-connections  TLS 1.3 + HTTP/1.1: the same fetches over 6 connections
    h2c-prior-knowledge    cleartext HTTP/2 (no Upgrade, straight to the preface)

dumpcap runs in the client's namespace; the path has a 50 ms RTT.
"""

from __future__ import annotations

import json
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

ONE_WAY_MS = 25.0
RESOURCES = 12
RESOURCE_BYTES = 12 * 1024
COMMAND = "sudo python3 captures/record/record.py h2"


# ---------------------------------------------------------------- site and facts (pure)

def resource_paths(n: int = RESOURCES) -> list[str]:
    return [f"/r/res-{i:02d}.txt" for i in range(1, n + 1)]


def site_files(n: int = RESOURCES, size: int = RESOURCE_BYTES) -> dict[str, bytes]:
    """The served files: a small page and ``n`` text resources of ``size`` bytes."""
    files = {"/index.html": b"<!doctype html><title>traceviz h2</title>\n" +
             b"".join(f'<link rel="preload" href="{p}">\n'.encode() for p in resource_paths(n))}
    for i, p in enumerate(resource_paths(n), 1):
        line = f"resource {i:02d}: the quick brown fox jumps over the lazy dog\n".encode()
        files[p] = (line * (size // len(line) + 1))[:size]
    return files


def write_site(root: Path, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def max_concurrency(rows: list[dict]) -> int:
    """Most requests in flight at one moment, from the client's start/end times."""
    edges = sorted([(r["start"], 1) for r in rows] + [(r["end"], -1) for r in rows],
                   key=lambda e: (e[0], e[1]))
    best = cur = 0
    for _, step in edges:
        cur += step
        best = max(best, cur)
    return best


def by_connection(rows: list[dict]) -> dict[str, list[str]]:
    """Client address -> the paths it fetched, in the order they started."""
    out: dict[str, list[str]] = {}
    for r in sorted(rows, key=lambda r: r["start"]):
        out.setdefault(r["client"], []).append(r["path"])
    return out


def statuses(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[str(r["status"])] = out.get(str(r["status"]), 0) + 1
    return out


def facts(rows: list[dict], access: list[str]) -> dict:
    conns = by_connection(rows)
    return dict(
        rtt_ms=2 * ONE_WAY_MS, requests=len(rows), statuses=statuses(rows),
        http_versions=sorted({r["http_version"] for r in rows}),
        client_connections=len(conns), requests_by_connection=conns,
        streams=sorted(r["stream_id"] for r in rows if r["stream_id"] is not None),
        max_concurrent_requests=max_concurrency(rows),
        response_bytes={r["path"]: r["bytes"] for r in rows},
        client_log=rows, nginx_access_log=access)


# ---------------------------------------------------------------- recording

CAPTURES = [
    ("h2-multiplexing", "h2", "https", 443,
     "HTTP/2: 13 requests multiplexed on one TLS connection, streams interleaving",
     ["h2-multiplexing", "h2"],
     "One TCP connection, one TLS 1.3 handshake (ALPN h2). After the page (stream 1), 12 "
     "HEADERS frames leave back to back (streams 3..25); the server's DATA frames then take "
     "turns: about 4 KB for each of the 12 streams, once a second (limit_rate 4k), so every "
     "stream stays open for ~3 s at the same time. Decrypt with the key log (also embedded)."),
    ("http1-six-connections", "h1", "https", 443,
     "HTTP/1.1 over TLS: the same 13 requests need 6 connections",
     ["http1-parallel-connections"],
     "Six TCP + TLS handshakes (the browser-like connection limit); each connection carries "
     "one request at a time, so 12 resources queue two or three deep per connection. Compare "
     "the total time and handshake count with h2-multiplexing."),
    ("h2c-prior-knowledge", "h2c", "http", 8080,
     "h2c: cleartext HTTP/2 with prior knowledge",
     ["h2c", "h2-multiplexing"],
     "No TLS and no HTTP/1.1 Upgrade: the client's first bytes are the HTTP/2 connection "
     "preface (PRI * HTTP/2.0), then SETTINGS and 13 streams on one connection. Wireshark "
     "needs 'Decode As' HTTP2 for port 8080 (or the heuristic dissector)."),
]


def record(out: Path) -> list[dict]:
    entries = []
    with Lab("tvB-", "10.88", [LinkSpec("c", "s", delay_ms=ONE_WAY_MS)]) as lab:
        work, ip = lab.workdir, lab.addr("s")
        prefix = servers_b.nginx_prefix(work, "nginx", "nginx_h2_b.conf", dict(LISTEN=ip))
        cert, _ = make_cert(prefix, ip)
        write_site(prefix / "site", site_files())
        servers_b.start_nginx(lab, "s", prefix, ip, 443)
        servers_b.wait_listening(lab, "s", ip, 8080)
        software = dict(tool_versions(), nginx=version(["nginx", "-v"]),
                        httpx=version([sys.executable, "-c", "import httpx,h2;print('httpx', httpx.__version__, 'h2', h2.__version__)"]),
                        openssl=version([sys.executable, "-c", "import ssl;print(ssl.OPENSSL_VERSION)"]))
        offset = 0
        paths = ["/index.html"] + resource_paths()
        for name, mode, scheme, port, title, concepts, look_at in CAPTURES:
            keys = out / f"{name}.keys" if scheme == "https" else None
            if keys and keys.exists():
                keys.unlink()
            result = work / f"{name}.json"
            _, offset = servers_b.log_lines(prefix / "access.log", offset)
            with lab.capture("c", out / f"{name}.pcapng"):
                lab.run("c", [sys.executable, str(HERE / "conf" / "http_client_b.py"), mode,
                              f"{scheme}://{ip}:{port}", str(cert), str(keys or "/dev/null"),
                              str(result), *paths])
                time.sleep(0.3)
            access, offset = servers_b.log_lines(prefix / "access.log", offset)
            if keys:
                inject_keys(out / f"{name}.pcapng", keys)
            rows = json.loads(result.read_text())
            entries.append(dict(
                name=name, file=f"{name}.pcapng", title=title, concepts=concepts, look_at=look_at,
                recorded=dict(command=COMMAND, software=software, one_way_delay_ms=ONE_WAY_MS,
                              loss=0.0, capture_point=f"client namespace tvB-c, dumpcap on {lab.iface('c')}",
                              server="nginx, throttled: limit_rate 4k, sendfile off, http2_chunk_size 4k; "
                                     "config captures/record/conf/nginx_h2_b.conf",
                              client=f"captures/record/conf/http_client_b.py {mode}",
                              date=time.strftime("%Y-%m-%d", time.gmtime())),
                keylog=keys.name if keys else None, extra_files={},
                facts=facts(rows, access)))
    servers_b.remove_workdir(lab)
    return entries


SCENARIOS = [Scenario("h2", "HTTP/2 multiplexing, HTTP/1.1 with 6 connections, h2c", record,
                      requires=("ip", "ethtool", "dumpcap", "editcap", "tshark", "nginx"))]
