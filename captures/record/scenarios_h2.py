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


# ---------------------------------------------------------------- h2-stalls (tvH- / 10.91)
#
# One TLS + HTTP/2 connection loses one server segment on purpose (the relay's data
# rule), so every stream whose bytes came after it waits for the retransmission: TCP
# head-of-line blocking.  A second connection has a slow reader: 16 KB stream windows
# and WINDOW_UPDATEs held back 100 ms, so the server stops for flow control.  Both ends
# are conf/h2_peers_h.py (the h2 library), logging what the ground truth needs.

STALLS_PREFIX, STALLS_NET = "tvH-", "10.91"
STALLS_PORT = 443
STALLS_BYTES = 40 * 1024
STALLS_DROP_OFFSET = 100_000          # the server's stream offset whose segment the relay drops
STALLS_COMMAND = "sudo .venv/bin/python captures/record/record.py h2-stalls"
HOL_PATHS = [f"/hol/{i:02d}.txt" for i in range(1, 9)]
WINDOW_PATHS = [f"/slow/{i:02d}.txt" for i in range(1, 4)]


def hol_truth(drop: dict, records: list[dict], delay_s: float) -> dict:
    """Which streams waited behind a dropped segment, and how long, from the relay's log of
    the drop (``drop``: the segment, then every segment of the flow forwarded until one
    carried its bytes again) and the server's log of where each frame's TLS record ended.

    A stream waited from the arrival of the segment holding the end of its first frame
    beyond the hole until the retransmission arrived; a stream whose frame ended inside
    the hole lost its own bytes and waited from the first arrival beyond the hole.
    Arrival = the relay's forwarding time plus the one-way delay to the capture point.
    """
    start, end = drop["offset"], drop["offset"] + drop["len"]
    *held, fill = drop["after"]
    held = [h for h in held if h["offset"] >= end]
    fill_at = fill["wall"] + delay_s
    first = min(h["wall"] for h in held) + delay_s
    streams: dict[str, dict] = {}
    for r in records:
        if not r["stream"] or r["type"] not in ("DATA", "HEADERS"):
            continue
        if start < r["end"] <= end:
            since, lost = first, True
        else:
            seg = next((h for h in held if h["offset"] < r["end"] <= h["offset"] + h["len"]), None)
            if seg is None:
                continue
            since, lost = seg["wall"] + delay_s, False
        s = streams.setdefault(str(r["stream"]), {"since": since, "lost": False})
        s["since"] = min(s["since"], since)
        s["lost"] = s["lost"] or lost
    return {"hole": {"offset": start, "len": drop["len"]}, "held_bytes": sum(h["len"] for h in held),
            "first_held_arrival": round(first, 6), "fill_arrival": round(fill_at, 6),
            "streams": {k: {"wait_ms": round((fill_at - v["since"]) * 1000, 3), "lost": v["lost"]}
                        for k, v in sorted(streams.items(), key=lambda kv: int(kv[0]))}}


def window_truth(result: dict) -> list[dict]:
    """The slow reader's stalls from its own log: for each WINDOW_UPDATE it held back, when it
    read the DATA that used the stream's window up, when it sent the update, and when it read
    the stream's next DATA.  These are the reader's read times: on a busy machine they lag the
    capture's timestamps, so they say which stalls happened, not to the millisecond how long."""
    out = []
    for upd in result["window_updates"]:
        mine = [a for a in result["arrivals"] if a["stream"] == upd["stream"]]
        before = [a for a in mine if a["wall"] <= upd["wall"]]
        after = [a for a in mine if a["wall"] > upd["wall"]]
        if not before or not after:
            continue
        out.append({"stream": upd["stream"], "used_up": before[-1]["wall"], "update": upd["wall"],
                    "resumed": after[0]["wall"]})
    return out


def record_stalls(out: Path) -> list[dict]:
    import importlib.util
    if importlib.util.find_spec("h2") is None:
        raise SystemExit("h2-stalls: both peers are the h2 library; run record.py with a Python that has it "
                         "(the project's virtualenv: .venv/bin/python)")
    peers = HERE / "conf" / "h2_peers_h.py"
    link = LinkSpec("c", "s", delay_ms=ONE_WAY_MS,
                    drop_data=[{"sport": STALLS_PORT, "offset": STALLS_DROP_OFFSET}])
    name = "h2-stalls"
    keys = out / f"{name}.keys"
    if keys.exists():
        keys.unlink()
    with Lab(STALLS_PREFIX, STALLS_NET, [link]) as lab:
        work, ip = lab.workdir, lab.addr("s")
        cert, key = make_cert(work / "tls", ip)
        server_log = work / "server.jsonl"
        servers_b.start(lab, "s", [sys.executable, str(peers), "server", ip, str(STALLS_PORT), str(cert), str(key),
                                   str(server_log), str(STALLS_BYTES)], work / "server.out",
                        wait_port=(ip, STALLS_PORT))
        results = []
        with lab.capture("c", out / f"{name}.pcapng"):
            for mode, paths in (("hol", HOL_PATHS), ("window", WINDOW_PATHS)):
                result = work / f"{mode}.json"
                lab.run("c", [sys.executable, str(peers), "client", mode, ip, str(STALLS_PORT), str(cert),
                              str(keys), str(result), *paths])
                results.append(json.loads(result.read_text()))
                time.sleep(0.3)
        software = dict(tool_versions(), h2=version([sys.executable, "-c", "import h2;print('h2', h2.__version__)"]),
                        openssl=version([sys.executable, "-c", "import ssl;print(ssl.OPENSSL_VERSION)"]))
    inject_keys(out / f"{name}.pcapng", keys)
    logs = [json.loads(line) for line in server_log.read_text().splitlines()] if server_log.exists() else []
    servers_b.remove_workdir(lab)
    return [stalls_entry(name, results, logs, lab.relay_stats, software)]


def stalls_entry(name: str, results: list[dict], logs: list[dict], relay_stats: list[dict], software: dict) -> dict:
    hol, window = results
    by_client = {log["client"]: log for log in logs}
    drops = [d for link in relay_stats for side in ("a_to_b", "b_to_a") for d in link[side]["dropped"]]
    (drop,) = [d for d in drops if d["reason"] == "data-rule"]
    rows = hol["streams"] + window["streams"]
    records = by_client[hol["client"]]["records"]
    # The frames whose records end in the hole or behind it: all the ground truth reads.
    reach = max(a["offset"] + a["len"] for a in drop["after"])
    near = [r for r in records if drop["offset"] < r["end"] <= reach]
    return dict(
        name=name, file=f"{name}.pcapng",
        title="HTTP/2 stalls: one lost segment holds every stream; a slow reader's window stops the sender",
        concepts=["h2-head-of-line-blocking", "h2-flow-control", "h2"],
        look_at=("Connection 0: eight streams share one TLS + HTTP/2 connection and the relay drops one "
                 "server segment (stream offset 100000). The segments after it arrive but nothing is "
                 "readable until the retransmission fills the hole, so every stream whose frames they "
                 "carry waits about a round trip: TCP head-of-line blocking. Connection 1: a slow reader "
                 "gives each stream a 16 KB window and sends each WINDOW_UPDATE 100 ms late, so the "
                 "server stops twice per stream for flow control. Decrypt with the key log (also embedded)."),
        recorded=dict(command=STALLS_COMMAND, software=software, one_way_delay_ms=ONE_WAY_MS, loss=0.0,
                      drop_data=[{"sport": STALLS_PORT, "offset": STALLS_DROP_OFFSET}],
                      capture_point=f"client namespace {STALLS_PREFIX}c, dumpcap on {STALLS_PREFIX}c0",
                      server="captures/record/conf/h2_peers_h.py server (h2 over TLS 1.3 memory BIOs, "
                             "one TLS record per HTTP/2 frame, 2 KB DATA frames round-robin)",
                      client="captures/record/conf/h2_peers_h.py client hol | window",
                      date=time.strftime("%Y-%m-%d", time.gmtime())),
        keylog=f"{name}.keys", extra_files={},
        facts=dict(
            rtt_ms=2 * ONE_WAY_MS, requests=len(rows), statuses=statuses(rows),
            client_connections=2,
            streams_by_connection={hol["client"]: [r["stream_id"] for r in hol["streams"]],
                                   window["client"]: [r["stream_id"] for r in window["streams"]]},
            response_bytes={r["path"]: r["bytes"] for r in rows},
            relay_drop={k: drop[k] for k in ("wall", "sport", "dport", "offset", "len", "after")},
            hol=dict(hol_truth(drop, records, ONE_WAY_MS / 1000), client=hol["client"]),
            window_stalls=dict(client=window["client"], window=16384, stalls=window_truth(window)),
            server_records=[[r["type"], r["stream"], r["start"], r["end"]] for r in near],
            client_log=rows))


SCENARIOS.append(Scenario("h2-stalls", "HTTP/2 head-of-line blocking (a dropped segment) and a flow-control stall",
                          record_stalls, requires=("ip", "ethtool", "dumpcap", "editcap", "tshark")))
