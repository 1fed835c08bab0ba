"""The HTTP/2 server and client of the ``h2-stalls`` capture (TEST ONLY).

    python3 h2_peers_h.py server ADDR PORT CERT KEY LOG.jsonl BYTES
    python3 h2_peers_h.py client MODE HOST PORT CA KEYLOG RESULT.json PATH...

Both ends are the h2 library (sans-I/O HTTP/2) over Python's ssl, so every
frame is one the recording side chose and logged:

* the server speaks TLS through memory BIOs and writes every HTTP/2 frame as
  its own TLS record, so it knows the TCP stream offset where each record --
  and so each frame -- ends (``records`` in its log: the ground truth of which
  stream's bytes sat where in the TCP stream).  It answers each GET with
  ``BYTES`` bytes and sends the bodies of all open streams round-robin, 2 KB
  DATA frames, as fast as TCP and flow control allow;
* the client (``MODE`` ``hol``) opens big windows (16 MB) so only TCP can stall
  it; in ``window`` mode its streams get 16 KB windows, and when a stream has
  used its window up the client waits 100 ms before sending the WINDOW_UPDATE
  -- a slow reader.  It logs the arrival of every DATA frame and every
  WINDOW_UPDATE it sent (wall clock, the capture's clock: it runs where dumpcap
  does).
"""

from __future__ import annotations

import json
import select
import signal
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

CHUNK = 2048
SLOW_READER_S = 0.100
WINDOW_MODE_WINDOW = 16384
BIG_WINDOW = 1 << 24


# ---------------------------------------------------------------- server

class TLSPipe:
    """TLS over memory BIOs: what goes out is counted, so record ends are TCP offsets."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext):
        self.sock, self.incoming, self.outgoing = sock, ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.sent = 0                # bytes written to the TCP stream so far

    def flush(self) -> tuple[int, int]:
        data = self.outgoing.read()
        start = self.sent
        if data:
            self.sock.sendall(data)
            self.sent += len(data)
        return start, self.sent

    def pull(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.incoming.write(data)
        return True

    def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                self.flush()
                return
            except ssl.SSLWantReadError:
                self.flush()
                if not self.pull():
                    raise ConnectionError("client left during the handshake")

    def read(self) -> bytes:
        out = bytearray()
        while True:
            try:
                out += self.tls.read(65536)
            except ssl.SSLWantReadError:
                return bytes(out)
            except ssl.SSLZeroReturnError:
                return bytes(out)


def serve_one(sock: socket.socket, ctx: ssl.SSLContext, size: int, log: dict) -> None:
    pipe = TLSPipe(sock, ctx)
    pipe.handshake()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    records = log["records"]

    def write(kind: str, sid: int, length: int = 0) -> None:
        data = conn.data_to_send()
        if data:
            pipe.tls.write(data)
            start, end = pipe.flush()
            records.append({"type": kind, "stream": sid, "length": length, "start": start, "end": end,
                            "wall": time.time()})

    write("SETTINGS", 0)
    bodies: dict[int, int] = {}       # stream -> bytes left to send
    blocked: dict[int, float] = {}
    open_ = True

    def take(plaintext: bytes) -> None:
        nonlocal open_
        for ev in conn.receive_data(plaintext):
            if isinstance(ev, h2.events.RequestReceived):
                conn.send_headers(ev.stream_id, [(":status", "200"), ("content-type", "text/plain"),
                                                 ("content-length", str(size))])
                write("HEADERS", ev.stream_id)
                bodies[ev.stream_id] = size
            elif isinstance(ev, h2.events.ConnectionTerminated):
                open_ = False
        write("control", 0)

    take(pipe.read())                 # bytes that came with the client's Finished
    while open_ or bodies:
        sendable = [s for s in bodies if conn.local_flow_control_window(s) > 0]
        ready, _, _ = select.select([sock], [], [], 0 if sendable else 1.0)
        if ready:
            if not pipe.pull():
                break
            take(pipe.read())
        for sid in sorted(bodies):
            window = conn.local_flow_control_window(sid)
            if window <= 0:
                if sid not in blocked:
                    blocked[sid] = time.time()
                    log["blocked"].append({"stream": sid, "wall": blocked[sid]})
                continue
            if sid in blocked:
                log["resumed"].append({"stream": sid, "wall": time.time(), "since": blocked.pop(sid)})
            n = min(window, CHUNK, bodies[sid])
            bodies[sid] -= n
            conn.send_data(sid, b"x" * n, end_stream=bodies[sid] == 0)
            write("DATA", sid, n)
            if not bodies[sid]:
                del bodies[sid]
        if not open_ and not bodies:
            break
    # Wait for the client to close first (it sends GOAWAY, then FIN).
    sock.settimeout(5)
    try:
        while pipe.pull():
            conn.receive_data(pipe.read())
    except (OSError, h2.exceptions.ProtocolError):
        pass


def server(addr: str, port: int, cert: str, key: str, log_path: str, size: int) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.num_tickets = 0              # no NewSessionTicket records in the way
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    lsock = socket.create_server((addr, port))
    print("ready", flush=True)
    while True:
        sock, peer = lsock.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log = {"client": f"{peer[0]}:{peer[1]}", "records": [], "blocked": [], "resumed": []}
        try:
            serve_one(sock, ctx, size, log)
        finally:
            sock.close()
            with open(log_path, "a") as fh:
                fh.write(json.dumps(log) + "\n")


# ---------------------------------------------------------------- client

def client(mode: str, host: str, port: int, ca: str, keylog: str, result: str, paths: list[str]) -> None:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.keylog_filename = keylog
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((host, port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    local = raw.getsockname()
    sock = ctx.wrap_socket(raw, server_hostname=host)
    window = WINDOW_MODE_WINDOW if mode == "window" else BIG_WINDOW
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window, h2.settings.SettingCodes.ENABLE_PUSH: 0})
    conn.initiate_connection()
    conn.increment_flow_control_window(BIG_WINDOW - 65535)
    streams, arrivals, updates = {}, [], []
    for path in paths:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":scheme", "https"), (":authority", f"{host}:{port}"),
                                (":path", path), ("user-agent", "traceviz-lab h2 client")], end_stream=True)
        streams[sid] = {"stream_id": sid, "path": path, "status": None, "bytes": 0, "start": time.time(),
                        "end": None, "window_used": 0}
    sock.sendall(conn.data_to_send())
    due: dict[int, float] = {}        # stream -> when its held-back WINDOW_UPDATE goes out
    while any(s["end"] is None for s in streams.values()):
        now = time.time()
        for sid, at in sorted(due.items()):
            if at <= now:
                used = streams[sid]["window_used"]
                conn.increment_flow_control_window(used, sid)
                streams[sid]["window_used"] = 0
                updates.append({"stream": sid, "increment": used, "wall": time.time()})
                del due[sid]
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        timeout = max(0.0, min(due.values()) - time.time()) if due else 5.0
        if not select.select([sock], [], [], timeout)[0] and not sock.pending():
            continue
        data = sock.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                streams[ev.stream_id]["status"] = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived):
                s = streams[ev.stream_id]
                s["bytes"] += len(ev.data)
                arrivals.append({"stream": ev.stream_id, "length": len(ev.data), "wall": time.time()})
                # The connection window (16 MB) never runs out here; stream windows do, in window mode.
                s["window_used"] += ev.flow_controlled_length
                if mode == "window" and s["window_used"] >= window and not ev.stream_ended:
                    due[ev.stream_id] = time.time() + SLOW_READER_S
            if isinstance(ev, h2.events.StreamEnded) or getattr(ev, "stream_ended", None):
                sid = ev.stream_id
                if streams[sid]["end"] is None:
                    streams[sid]["end"] = time.time()
                    due.pop(sid, None)
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()
    rows = [dict(s, client=f"{local[0]}:{local[1]}") for s in streams.values()]
    json.dump({"mode": mode, "client": f"{local[0]}:{local[1]}", "streams": rows, "arrivals": arrivals,
               "window_updates": updates}, open(result, "w"), indent=1)


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "server":
        server(a[1], int(a[2]), a[3], a[4], a[5], int(a[6]))
    else:
        client(a[1], a[2], int(a[3]), a[4], a[5], a[6], a[7:])
