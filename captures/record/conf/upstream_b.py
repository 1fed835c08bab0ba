"""A deliberately misbehaving HTTP/1.1 upstream for the reverse-proxy captures.

One port per behaviour, so the proxy config maps a path to a failure:

    ok     keep-alive 200s; closes a connection after 1 s idle (the keepalive race)
    slow   answers after 2 s (the proxy's 1 s read timeout gives a 504)
    fin    reads the request, closes with FIN and no response
    rst    reads the request, closes with RST (SO_LINGER 0)
    nul    answers with a NUL byte inside a header name
    big    answers with a 9 KB header
    badstatus  answers with a status line that is not HTTP
    err500 answers 500 Internal Server Error itself (the proxy passes it on)

Every accept, request, response and close goes to a JSON-lines log: the
recording side's ground truth.

    python3 upstream_b.py HOST BASE_PORT LOG
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time

BEHAVIOURS = ["ok", "slow", "fin", "rst", "nul", "big", "badstatus", "err500"]
IDLE_TIMEOUT = 1.0
BODY = b"upstream says hello\n" * 20     # 400 bytes

_log_lock = threading.Lock()


def port_of(base: int, behaviour: str) -> int:
    return base + 1 + BEHAVIOURS.index(behaviour)


def response(behaviour: str, path: str) -> bytes:
    """The bytes the upstream answers with (pure, so tests can check them)."""
    head = [b"HTTP/1.1 200 OK", b"Content-Type: text/plain",
            b"Content-Length: %d" % len(BODY), b"X-Upstream-Path: " + path.encode()]
    if behaviour == "nul":
        head.append(b"X-Bad\x00Name: nul-in-name")
    elif behaviour == "big":
        head.append(b"X-Big: " + b"b" * 9216)
    elif behaviour == "badstatus":
        head[0] = b"HTTP/1.1 OK-ish Broken"
    elif behaviour == "err500":
        head[0] = b"HTTP/1.1 500 Internal Server Error"
    return b"\r\n".join(head) + b"\r\n\r\n" + BODY


def parse_request(buf: bytes) -> tuple[str, str, int] | None:
    """(method, path, header length incl. blank line) once a full head is in ``buf``."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    line = buf[:buf.find(b"\r\n")].decode("latin-1").split(" ")
    if len(line) < 2:
        return None
    return line[0], line[1], end + 4


def content_length(head: bytes) -> int:
    for h in head.split(b"\r\n")[1:]:
        name, _, value = h.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return int(value.strip())
            except ValueError:
                return 0
    return 0


class Upstream:
    def __init__(self, host: str, base: int, log_path: str):
        self.host, self.base = host, base
        self.log_file = open(log_path, "a", buffering=1)

    def log(self, **event) -> None:
        event["t"] = round(time.time(), 6)
        with _log_lock:
            self.log_file.write(json.dumps(event) + "\n")

    def serve_forever(self) -> None:
        for b in BEHAVIOURS:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.host, port_of(self.base, b)))
            s.listen(64)
            threading.Thread(target=self._accept, args=(s, b), daemon=True).start()
        self.log(event="ready", ports={b: port_of(self.base, b) for b in BEHAVIOURS})
        while True:
            time.sleep(3600)

    def _accept(self, srv: socket.socket, behaviour: str) -> None:
        while True:
            conn, peer = srv.accept()
            threading.Thread(target=self._handle, args=(conn, peer, behaviour), daemon=True).start()

    def _handle(self, conn: socket.socket, peer, behaviour: str) -> None:
        tag = dict(behaviour=behaviour, peer=f"{peer[0]}:{peer[1]}")
        self.log(event="accept", **tag)
        buf = b""
        served = 0
        conn.settimeout(IDLE_TIMEOUT)
        while True:
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                if buf:
                    continue
                self.log(event="close", how="fin-idle", after_requests=served, **tag)
                conn.close()
                return
            except ConnectionResetError:
                self.log(event="close", how="peer-reset", after_requests=served, **tag)
                conn.close()
                return
            if not chunk:
                self.log(event="close", how="peer-closed", after_requests=served, **tag)
                conn.close()
                return
            buf += chunk
            parsed = parse_request(buf)
            if parsed is None:
                continue
            method, path, head_len = parsed
            need = head_len + content_length(buf[:head_len])
            if len(buf) < need:
                continue
            buf = buf[need:]
            self.log(event="request", method=method, path=path, **tag)
            if behaviour == "fin":
                self.log(event="close", how="fin-no-response", **tag)
                conn.close()
                return
            if behaviour == "rst":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.log(event="close", how="rst-no-response", **tag)
                conn.close()
                return
            if behaviour == "slow":
                time.sleep(2.0)
            try:
                conn.sendall(response(behaviour, path))
            except OSError as e:
                self.log(event="send-failed", error=str(e), **tag)
                conn.close()
                return
            served += 1
            self.log(event="response", path=path, **tag)
            conn.settimeout(IDLE_TIMEOUT)


if __name__ == "__main__":
    Upstream(sys.argv[1], int(sys.argv[2]), sys.argv[3]).serve_forever()
