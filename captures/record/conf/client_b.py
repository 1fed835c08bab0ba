"""HTTP/1.1 client for the reverse-proxy captures: one connection per request.

Reads a plan (JSON list of steps) and writes what happened (JSON list), the
client side's ground truth: local port, request, status, times.

A step: {"method", "path", "port", "body"?, "wait": seconds after the previous
response}.  Each step's connection is opened *before* the wait, so the wait
times the request itself, not a handshake (the keepalive race needs that).

    python3 client_b.py HOST PLAN.json RESULT.json
"""

from __future__ import annotations

import json
import socket
import sys
import time


def build_request(method: str, path: str, host: str, body: str | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: traceviz-recorder",
             "Connection: close"]
    data = (body or "").encode()
    if body is not None:
        lines += ["Content-Type: text/plain", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def status_of(raw: bytes) -> int | None:
    """The status code of a raw HTTP/1.x response, None if there is none."""
    line = raw.split(b"\r\n", 1)[0].split(b" ")
    if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
        return int(line[1])
    return None


def run_step(host: str, step: dict, ready_at: float) -> dict:
    s = socket.create_connection((host, step["port"]), timeout=10)
    local = s.getsockname()
    delay = ready_at + step.get("wait", 0.0) - time.time()
    if delay > 0:
        time.sleep(delay)
    sent = time.time()
    s.sendall(build_request(step["method"], step["path"], host, step.get("body")))
    raw = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        raw += chunk
    s.close()
    return dict(method=step["method"], path=step["path"], port=step["port"],
                client=f"{local[0]}:{local[1]}", sent=round(sent, 6),
                done=round(time.time(), 6), status=status_of(raw), bytes=len(raw))


def main(host: str, plan_path: str, result_path: str) -> None:
    plan = json.load(open(plan_path))
    results, last = [], time.time()
    for step in plan:
        r = run_step(host, step, last)
        last = r["done"]
        results.append(r)
    json.dump(results, open(result_path, "w"), indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
