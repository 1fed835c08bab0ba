"""The rest of the course lab (tvL- / 10.94): WebSockets, DNS and the journey of a request, caching, gRPC.

Each scenario runs real servers and clients in the lab's namespaces, through
the delay relay, with dumpcap on the client's interface.  The client and the
server are roles of this file (``python scenarios_lab.py ROLE ...``) or real
programs (curl, dnsmasq, nginx); they print JSON lines, and those lines --
never traceviz's analysis -- are the manifest's facts.

    websocket-h1     a WebSocket chat over HTTP/1.1 (Upgrade, 101; the ``websockets`` library):
                     text, binary, fragmented and 64-bit-length messages, pings both ways,
                     a client close (1000) and a server close (1001)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from netlab import Lab, Scenario, inject_keys, tool_versions, version  # noqa: E402
from relay import LinkSpec  # noqa: E402

PREFIX, NET = "tvL-", "10.94"
ONE_WAY_MS = 10.0
COMMAND = "sudo {python} captures/record/record.py {name}"
PROGRAMS = ("ip", "ping", "ethtool", "dumpcap", "editcap", "reordercap", "tshark", "ss")


def log(**fields) -> None:
    print(json.dumps(fields), flush=True)


def lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.strip().startswith("{")]


def recorded(name: str, client: str, server: str, python: str = "python3", **extra) -> dict:
    return {"command": COMMAND.format(python=python, name=name), "software": tool_versions(),
            "one_way_delay_ms": ONE_WAY_MS, "loss": 0.0,
            "capture_point": f"client namespace {PREFIX}c, dumpcap on {PREFIX}c0",
            "client": client, "server": server, "date": time.strftime("%Y-%m-%d"), **extra}


def in_time_order(pcapng: Path) -> None:
    """dumpcap on two interfaces writes each one's frames in batches: put them in time order."""
    tmp = pcapng.with_suffix(".sorted.pcapng")
    subprocess.run(["reordercap", "-n", str(pcapng), str(tmp)], check=True, capture_output=True)
    os.replace(tmp, pcapng)
    os.chmod(pcapng, 0o644)


def wait_listening(lab: Lab, host: str, port: int, proto: str = "t", timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = lab.exec(host, ["ss", f"-l{proto}nH"], quiet=True).stdout
        if f":{port} " in out:
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} in {host}")


def run_pair(out: Path, name: str, server: list[str], client: list[str], link: LinkSpec | None = None):
    """A role of this file serving in ``s`` and one as client in ``c``, captured on the client's interface.

    Returns (the client's JSON lines, the server's JSON lines, the relay's stats)."""
    me = [sys.executable, str(Path(__file__).resolve())]
    with Lab(PREFIX, NET, [link or LinkSpec("c", "s", delay_ms=ONE_WAY_MS)]) as lab:
        srv = lab.popen("s", me + server + [lab.addr("s")], ready="ready")
        with lab.capture("c", out / f"{name}.pcapng"):
            done = lab.run("c", me + client + [lab.addr("s")])
            time.sleep(0.3)
        srv.terminate()
        server_log = lines(srv.stdout.read())
    shutil.rmtree(lab.workdir, ignore_errors=True)
    return lines(done.stdout), server_log, lab.relay_stats


# ================================================================ WebSocket over HTTP/1.1

WS_PORT = 80
WS_PING = b"hb"


def ws_payloads() -> list[dict]:
    """What the client sends on the chat connection, in order (pure: the plan)."""
    return [{"kind": "text", "data": f"hello {i}"} for i in range(1, 4)] + [
        {"kind": "binary", "size": 3000},
        {"kind": "fragmented", "parts": ["frag-one ", "frag-two ", "frag-three"]},
        {"kind": "ask", "data": "push 3"},
        {"kind": "ask", "data": "big"},
    ]


async def ws_server_main(addr: str) -> None:
    from websockets.asyncio.server import serve

    async def handler(ws):
        peer = f"{ws.remote_address[0]}:{ws.remote_address[1]}"
        log(event="open", client=peer, path=ws.request.path)
        try:
            async for msg in ws:
                kind = "text" if isinstance(msg, str) else "binary"
                size = len(msg.encode()) if kind == "text" else len(msg)
                log(event="recv", client=peer, kind=kind, size=size)
                if msg == "push 3":
                    for i in range(3):
                        text = f"update {i + 1}"
                        await ws.send(text)
                        log(event="send", client=peer, kind="text", size=len(text))
                        await asyncio.sleep(0.1)
                elif msg == "big":
                    await ws.send(bytes(70000))
                    log(event="send", client=peer, kind="binary", size=70000)
                elif msg == "ping me":
                    t0 = time.monotonic()
                    waiter = await ws.ping(WS_PING)
                    await waiter
                    log(event="ping", client=peer, payload=WS_PING.decode(), rtt_ms=round((time.monotonic() - t0) * 1000, 2))
                elif msg == "go away":
                    log(event="close", client=peer, by="server", code=1001, reason="server restarting")
                    await ws.close(1001, "server restarting")
                else:
                    reply = f"echo: {msg}" if kind == "text" else msg
                    await ws.send(reply)
                    log(event="send", client=peer, kind=kind, size=len(reply.encode()) if kind == "text" else len(reply))
        finally:
            log(event="closed", client=peer, code=ws.close_code, reason=ws.close_reason)

    async with serve(handler, addr, WS_PORT, compression=None, ping_interval=None,
                     server_header="traceviz-lab-ws"):
        log(event="ready")
        await asyncio.Future()


async def ws_client_main(server: str) -> None:
    from websockets.asyncio.client import connect

    uri = f"ws://{server}:{WS_PORT}/chat"
    # The chat: the plan's messages, a ping each way, and the client closes (1000).
    async with connect(uri, compression=None, ping_interval=None, proxy=None,
                       user_agent_header="traceviz-lab") as ws:
        me = "%s:%d" % ws.local_address[:2]
        sent, got = [], []
        for p in ws_payloads():
            if p["kind"] == "binary":
                await ws.send(bytes(range(256)) * (p["size"] // 256) + bytes(p["size"] % 256))
                sent.append({"kind": "binary", "size": p["size"]})
            elif p["kind"] == "fragmented":
                await ws.send(p["parts"])
                sent.append({"kind": "text", "size": sum(len(x) for x in p["parts"]), "parts": len(p["parts"])})
            else:
                await ws.send(p["data"])
                sent.append({"kind": "text", "size": len(p["data"])})
            replies = {"push 3": 3, "big": 1}.get(p.get("data"), 1)
            for _ in range(replies):
                m = await ws.recv()
                got.append({"kind": "text" if isinstance(m, str) else "binary",
                            "size": len(m.encode()) if isinstance(m, str) else len(m)})
        await ws.send("ping me")
        sent.append({"kind": "text", "size": 7})
        t0 = time.monotonic()
        await (await ws.ping(b"cl"))
        ping_ms = round((time.monotonic() - t0) * 1000, 2)
        await asyncio.sleep(0.3)          # the server's ping and our pong cross meanwhile
        await ws.close(1000, "done")
        log(client=me, server=f"{server}:{WS_PORT}", path="/chat", sent=sent, received=got,
            pings_sent=[{"payload": "cl", "rtt_ms": ping_ms}],
            close={"by": "client", "code": 1000, "reason": "done"})
    await asyncio.sleep(0.3)
    # The second connection: the server goes away (1001) after one exchange.
    async with connect(uri.replace("/chat", "/feed"), compression=None, ping_interval=None, proxy=None,
                       user_agent_header="traceviz-lab") as ws:
        me = "%s:%d" % ws.local_address[:2]
        await ws.send("hello")
        m = await ws.recv()
        await ws.send("go away")
        try:
            await ws.recv()
        except Exception:          # noqa: BLE001 - ConnectionClosedOK is the expected end
            pass
        log(client=me, server=f"{server}:{WS_PORT}", path="/feed",
            sent=[{"kind": "text", "size": 5}, {"kind": "text", "size": 7}],
            received=[{"kind": "text", "size": len(m)}], pings_sent=[],
            close={"by": "server", "code": ws.close_code, "reason": ws.close_reason})


def record_websocket(out: Path) -> list[dict]:
    name = "websocket-h1"
    conns, server_log, _ = run_pair(out, name, ["ws-server"], ["ws-client"])
    facts = websocket_facts(conns, server_log)
    return [{
        "name": name, "file": f"{name}.pcapng",
        "title": "WebSocket over HTTP/1.1: Upgrade, 101, messages both ways, ping/pong, close codes",
        "concepts": ["websocket", "http-upgrade", "long-lived-connection"],
        "look_at": "GET /chat with 'Upgrade: websocket' gets '101 Switching Protocols'; from then on the "
                   "connection carries WebSocket frames, not HTTP. The client's frames are masked, the "
                   "server's are not. Text and binary messages go both ways on one connection (a 3000-byte "
                   "binary, a text message in three fragments, a 70000-byte binary with a 64-bit length), "
                   "the server pushes three updates unasked, each side pings and the other pongs. The client "
                   "closes the first connection (1000 'done'); on the second the server goes away (1001).",
        "recorded": recorded(name, "websockets (Python) client, compression off, no automatic pings",
                             "websockets (Python) server, compression off, no automatic pings",
                             python=".venv/bin/python",
                             websockets=_module_version("websockets")),
        "keylog": None, "private_key": None, "facts": facts}]


def websocket_facts(conns: list[dict], server_log: list[dict]) -> dict:
    pings = [e for e in server_log if e.get("event") == "ping"]
    return {
        "rtt_ms": 2 * ONE_WAY_MS,
        "connections": [{"transport": "tcp", "client": c["client"], "server": c["server"],
                         # RFC 6455 7.1.1: after the closing handshake the server closes TCP first,
                         # and the websockets server does, whoever sent the first close frame.
                         "outcome": "fin-server", "syns": 1,
                         "requests": [{"method": "GET", "path": c["path"], "status": 101}],
                         "websocket": {"path": c["path"], "sent": c["sent"], "received": c["received"],
                                       "client_pings": c["pings_sent"],
                                       "server_pings": [{"payload": p["payload"], "rtt_ms": p["rtt_ms"]}
                                                        for p in pings if p["client"] == c["client"]],
                                       "close": c["close"]}}
                        for c in conns],
        "requests": len(conns),
        "statuses": {"101": len(conns)},
        "server_log": server_log,
    }


def _module_version(name: str) -> str:
    try:
        from importlib.metadata import version as v
        return v(name)
    except Exception:      # noqa: BLE001
        return ""


# ================================================================ WebSocket over HTTP/2 (RFC 8441)

H2_PORT = 80


def _ws_bytes(opcode: str, payload: bytes, mask: bool, fin: bool = True) -> bytes:
    from websockets.frames import Frame, Opcode
    return Frame(Opcode[opcode], payload, fin=fin).serialize(mask=mask)


class _WSReader:
    """WebSocket frames out of a stream's DATA (the recorder's side: websockets' own parser)."""

    def __init__(self, mask: bool):
        from websockets.streams import StreamReader
        self.reader, self.mask, self.frames = StreamReader(), mask, []

    def feed(self, data: bytes) -> list:
        from websockets.frames import Frame
        self.reader.feed_data(data)
        out = []
        while True:
            parser = Frame.parse(self.reader.read_exact, mask=self.mask, max_size=None, extensions=[])
            try:
                saved = bytes(self.reader.buffer)
                out.append(_drive(parser))
            except _NeedMore:
                self.reader.buffer[:] = saved
                return out


class _NeedMore(Exception):
    pass


def _drive(gen):
    """Run a websockets parser coroutine over the bytes buffered so far."""
    try:
        next(gen)
    except StopIteration as stop:
        return stop.value
    raise _NeedMore()


def _h2_pump(sock, conn, handle, until, timeout: float = 5.0) -> None:
    """Read the socket into ``conn``, hand each event to ``handle``, until ``until()`` is true."""
    import select
    end = time.monotonic() + timeout
    while not until():
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        if until():
            break
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError("h2 peer went quiet")
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            continue
        data = sock.recv(65536)
        if not data:
            return
        for ev in conn.receive_data(data):
            handle(ev)
    out = conn.data_to_send()
    if out:
        sock.sendall(out)


def ws_h2_server_main(addr: str) -> None:
    import socket
    import h2.config
    import h2.connection
    import h2.events
    from h2.settings import SettingCodes
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, H2_PORT))
    srv.listen(8)
    log(event="ready")
    while True:
        sock, peer = srv.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = f"{peer[0]}:{peer[1]}"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        conn.update_settings({SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
        streams: dict[int, dict] = {}
        done = {"closed": False}

        def send_ws(sid, opcode, payload):
            conn.send_data(sid, _ws_bytes(opcode, payload, mask=False))

        def handle(ev):
            if isinstance(ev, h2.events.RequestReceived):
                h = dict(ev.headers)
                streams[ev.stream_id] = {"reader": _WSReader(mask=True), "path": h.get(":path")}
                log(event="open", client=client, stream=ev.stream_id, method=h.get(":method"),
                    protocol=h.get(":protocol"), path=h.get(":path"))
                conn.send_headers(ev.stream_id, [(":status", "200")])
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                st = streams[ev.stream_id]
                for f in st["reader"].feed(ev.data):
                    name = f.opcode.name
                    log(event="recv", client=client, stream=ev.stream_id, kind=name.lower(), size=len(f.data))
                    if name == "TEXT" and f.data == b"go away":
                        log(event="close", stream=ev.stream_id, by="server", code=1001, reason="server restarting")
                        send_ws(ev.stream_id, "CLOSE", b"\x03\xe9server restarting")
                        st["closing"] = True
                    elif name == "TEXT" and f.data == b"ping me":
                        send_ws(ev.stream_id, "PING", b"h2")
                        log(event="ping", stream=ev.stream_id, payload="h2")
                    elif name in ("TEXT", "BINARY"):
                        send_ws(ev.stream_id, name, b"echo: " + f.data)
                        log(event="send", stream=ev.stream_id, kind=name.lower(), size=len(f.data) + 6)
                    elif name == "PING":
                        send_ws(ev.stream_id, "PONG", f.data)
                    elif name == "CLOSE":
                        if not st.get("closing"):
                            send_ws(ev.stream_id, "CLOSE", f.data)
                        conn.end_stream(ev.stream_id)
                        st["closing"] = True
            elif isinstance(ev, h2.events.StreamEnded):
                st = streams.get(ev.stream_id, {})
                if not st.get("ended"):
                    st["ended"] = True
            elif isinstance(ev, h2.events.ConnectionTerminated):
                done["closed"] = True

        try:
            _h2_pump(sock, conn, handle, lambda: done["closed"], timeout=30)
        except (TimeoutError, OSError):
            pass
        sock.close()


def ws_h2_client_main(server: str) -> None:
    import socket
    import h2.config
    import h2.connection
    import h2.events
    sock = socket.create_connection((server, H2_PORT))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    me = "%s:%d" % sock.getsockname()[:2]
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    state = {"settings": False, "status": {}, "frames": {}, "ended": set()}
    readers: dict[int, _WSReader] = {}

    def handle(ev):
        if isinstance(ev, h2.events.RemoteSettingsChanged):
            state["settings"] = True
        elif isinstance(ev, h2.events.ResponseReceived):
            state["status"][ev.stream_id] = int(dict(ev.headers)[":status"])
        elif isinstance(ev, h2.events.DataReceived):
            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            for f in readers[ev.stream_id].feed(ev.data):
                state["frames"].setdefault(ev.stream_id, []).append(f)
                if f.opcode.name == "PING":
                    conn.send_data(ev.stream_id, _ws_bytes("PONG", f.data, mask=True))
                elif f.opcode.name == "CLOSE" and not state.get(f"closing{ev.stream_id}"):
                    conn.send_data(ev.stream_id, _ws_bytes("CLOSE", f.data, mask=True), end_stream=True)
                    state[f"closing{ev.stream_id}"] = True
        elif isinstance(ev, h2.events.StreamEnded):
            state["ended"].add(ev.stream_id)

    def got(sid, n):
        return lambda: len(state["frames"].get(sid, [])) >= n

    _h2_pump(sock, conn, handle, lambda: state["settings"])
    logs = {}
    for sid, path in ((1, "/chat"), (3, "/feed")):
        readers[sid] = _WSReader(mask=False)
        conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                                (":path", path), (":authority", f"{server}"), ("sec-websocket-version", "13")])
        logs[sid] = {"client": me, "server": f"{server}:{H2_PORT}", "stream": sid, "path": path,
                     "sent": [], "received": [], "client_pings": []}
    _h2_pump(sock, conn, handle, lambda: len(state["status"]) == 2)
    # Two WebSockets on one TCP connection, their messages interleaved.
    for i in range(3):
        for sid in (1, 3):
            text = f"{'chat' if sid == 1 else 'feed'} {i + 1}".encode()
            conn.send_data(sid, _ws_bytes("TEXT", text, mask=True))
            logs[sid]["sent"].append({"kind": "text", "size": len(text)})
            _h2_pump(sock, conn, handle, got(sid, i + 1))
    conn.send_data(1, _ws_bytes("BINARY", bytes(2000), mask=True))
    logs[1]["sent"].append({"kind": "binary", "size": 2000})
    _h2_pump(sock, conn, handle, got(1, 4))
    t0 = time.monotonic()
    conn.send_data(1, _ws_bytes("PING", b"c2", mask=True))
    _h2_pump(sock, conn, handle, got(1, 5))
    logs[1]["client_pings"].append({"payload": "c2", "rtt_ms": round((time.monotonic() - t0) * 1000, 2)})
    conn.send_data(3, _ws_bytes("TEXT", b"ping me", mask=True))
    logs[3]["sent"].append({"kind": "text", "size": 7})
    _h2_pump(sock, conn, handle, got(3, 4))
    time.sleep(0.1)
    # The client closes the chat (1000); the server goes away on the feed (1001).
    conn.send_data(1, _ws_bytes("CLOSE", b"\x03\xe8done", mask=True), end_stream=True)
    state["closing1"] = True
    logs[1]["close"] = {"by": "client", "code": 1000, "reason": "done"}
    _h2_pump(sock, conn, handle, lambda: 1 in state["ended"])
    conn.send_data(3, _ws_bytes("TEXT", b"go away", mask=True))
    logs[3]["sent"].append({"kind": "text", "size": 7})
    _h2_pump(sock, conn, handle, lambda: 3 in state["ended"])
    logs[3]["close"] = {"by": "server", "code": 1001, "reason": "server restarting"}
    time.sleep(0.1)
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    time.sleep(0.1)
    sock.close()
    for sid in (1, 3):
        for f in state["frames"].get(sid, []):
            if f.opcode.name in ("TEXT", "BINARY"):
                logs[sid]["received"].append({"kind": f.opcode.name.lower(), "size": len(f.data)})
        logs[sid]["status"] = state["status"][sid]
        log(**logs[sid])


def record_websocket_h2(out: Path) -> list[dict]:
    name = "websocket-h2"
    streams, server_log, _ = run_pair(out, name, ["ws-h2-server"], ["ws-h2-client"])
    return [{
        "name": name, "file": f"{name}.pcapng",
        "title": "WebSockets over HTTP/2 (RFC 8441): two extended CONNECT streams on one connection",
        "concepts": ["websocket", "websocket-h2", "h2c", "long-lived-connection"],
        "look_at": "The server's SETTINGS says ENABLE_CONNECT_PROTOCOL=1; the client then opens two "
                   "streams with ':method CONNECT' and ':protocol websocket' (/chat on stream 1, /feed on "
                   "stream 3) and each gets ':status 200' -- no 101, no Upgrade header. WebSocket frames "
                   "(still masked by the client) ride in DATA frames of their stream, interleaved on one TCP "
                   "connection. The client closes /chat (1000) and ends its stream; the server goes away on "
                   "/feed (1001).",
        "recorded": recorded(name, "hand-written h2 client (the h2 library, cleartext prior knowledge), "
                                   "WebSocket frames by the websockets library",
                             "hand-written h2 server (the h2 library) with ENABLE_CONNECT_PROTOCOL",
                             python=".venv/bin/python", h2=_module_version("h2"),
                             websockets=_module_version("websockets")),
        "keylog": None, "private_key": None,
        "facts": {"rtt_ms": 2 * ONE_WAY_MS,
                  "connections": [{"transport": "tcp", "client": streams[0]["client"],
                                   # the client sends GOAWAY; the server, seeing it, closes first
                                   "server": streams[0]["server"], "outcome": "fin-server", "syns": 1}],
                  "websockets_h2": [{**{k: v for k, v in s.items() if k not in ("client", "server")},
                                     "server_pings": [{"payload": e["payload"]} for e in server_log
                                                      if e.get("event") == "ping" and e["stream"] == s["stream"]]}
                                    for s in streams],
                  "server_log": server_log}}]


# ================================================================ DNS and the journey of a request

# The part every nginx of the lab shares: foreground, one worker, its files under {w}.
NGINX_HEAD = """
daemon off;
master_process on;
worker_processes 1;
user root;
pid {w}/nginx.pid;
error_log {w}/error.log info;
events {{ worker_connections 64; }}
"""
JOURNEY_HOST = "www.lab.test"
RESOLVER_ONE_WAY_MS = 2.0
JOURNEY_ONE_WAY_MS = 20.0

NGINX_TLS = NGINX_HEAD + """http {{
    log_format lab '{{"conn":$connection,"remote":"$remote_addr:$remote_port","request":"$request",'
                   '"status":$status,"bytes":$body_bytes_sent,"request_time":$request_time,'
                   '"ssl_protocol":"$ssl_protocol","ssl_cipher":"$ssl_cipher","host":"$host"}}';
    access_log {w}/access.log lab;
    sendfile off;
    server_tokens off;
    types {{ text/html html; }}
    server {{
        listen {addr}:443 ssl;
        server_name {host};
        ssl_certificate {w}/cert.pem;
        ssl_certificate_key {w}/key.pem;
        ssl_protocols TLSv1.3;
        root {w}/www;
    }}
}}
"""


def make_cert(work: Path, host: str) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(work / "key.pem"), "-out", str(work / "cert.pem"), "-days", "30",
                    "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}"],
                   check=True, capture_output=True)


def start_tls_nginx(lab: Lab, host: str, work: Path, name: str, files: dict[str, bytes]) -> None:
    (work / "www").mkdir(parents=True, exist_ok=True)
    for rel, body in files.items():
        (work / "www" / rel).write_bytes(body)
    make_cert(work, name)
    conf = work / "nginx.conf"
    conf.write_text(NGINX_TLS.format(w=work, addr=lab.addr(host, 0), host=name))
    lab.popen(host, ["nginx", "-p", str(work), "-c", str(conf)])
    wait_listening(lab, host, 443)


def parse_dnsmasq(text: str) -> list[dict]:
    """dnsmasq's --log-queries=extra lines: each query and what it answered (pure)."""
    out = []
    for line in text.splitlines():
        m = re.search(r"dnsmasq\[\d+\]: (\d+) ([\d.]+)/(\d+) (query\[(\w+)\]|config|reply|forwarded|cached) "
                      r"(\S+) (?:from|is|to) (\S+)", line)
        if not m:
            continue
        kind = "query" if m.group(4).startswith("query") else m.group(4)
        out.append({"serial": int(m.group(1)), "client": f"{m.group(2)}:{m.group(3)}", "kind": kind,
                    "type": m.group(5), "name": m.group(6), "value": m.group(7)})
    return out


def record_journey(out: Path) -> list[dict]:
    name = "journey-https"
    body = ("<!doctype html><title>lab</title>" + "<p>the journey of a request</p>" * 60).encode()
    links = [LinkSpec("c", "s", delay_ms=JOURNEY_ONE_WAY_MS), LinkSpec("c", "r", delay_ms=RESOLVER_ONE_WAY_MS)]
    netns_dir = Path("/etc/netns") / f"{PREFIX}c"
    with Lab(PREFIX, NET, links) as lab:
        work = lab.workdir
        start_tls_nginx(lab, "s", work, JOURNEY_HOST, {"index.html": body})
        dns_log = work / "dnsmasq.log"
        lab.popen("r", ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
                        f"--listen-address={lab.addr('r', 1)}", "--bind-interfaces",
                        f"--host-record={JOURNEY_HOST},{lab.addr('s', 0)}", "--local=/lab.test/", "--local-ttl=300",
                        "--log-queries=extra", f"--log-facility={dns_log}", f"--pid-file={work}/dnsmasq.pid",
                        "--user=root"])
        wait_listening(lab, "r", 53, proto="u")
        # ip netns exec bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf: the client's resolver.
        netns_dir.mkdir(parents=True, exist_ok=True)
        (netns_dir / "resolv.conf").write_text(f"nameserver {lab.addr('r', 1)}\noptions attempts:1\n")
        keys = out / f"{name}.keys"
        try:
            with lab.capture("c", out / f"{name}.pcapng", [lab.iface("c", 0), lab.iface("c", 1)]):
                done = lab.run("c", ["curl", "-sS", "-v", "--http1.1", "--cacert", str(work / "cert.pem"),
                                     "-o", "/dev/null", "-w", "%{json}", f"https://{JOURNEY_HOST}/index.html"],
                               env={**os.environ, "SSLKEYLOGFILE": str(keys)})
                time.sleep(0.3)
        finally:
            shutil.rmtree(netns_dir, ignore_errors=True)
        time.sleep(0.3)
        dns = parse_dnsmasq(dns_log.read_text())
        access = [json.loads(x) for x in (work / "access.log").read_text().splitlines() if x.strip()]
    in_time_order(out / f"{name}.pcapng")
    inject_keys(out / f"{name}.pcapng", keys)
    shutil.rmtree(lab.workdir, ignore_errors=True)
    w = json.loads(done.stdout)
    verbose = [x for x in done.stderr.splitlines() if x[:2] in ("* ", "> ", "< ", "{ ", "} ")]
    timings = {k: w[k] for k in ("time_namelookup", "time_connect", "time_appconnect", "time_pretransfer",
                                 "time_starttransfer", "time_total")}
    return [{
        "name": name, "file": f"{name}.pcapng",
        "title": "The journey of an HTTPS request: DNS lookup, TCP handshake, TLS 1.3, the request, the response",
        "concepts": ["journey", "dns", "tcp-handshake", "tls13", "curl"],
        "look_at": f"curl https://{JOURNEY_HOST}/index.html from scratch. First the name: a DNS query to the "
                   f"resolver ({RESOLVER_ONE_WAY_MS * 2:g} ms away, on the second interface) and its answer. "
                   f"Then a TCP handshake with the server ({JOURNEY_ONE_WAY_MS * 2:g} ms away), a TLS 1.3 "
                   "handshake (one more round trip), the GET and its response (one more), and the close. "
                   "curl's own -w timings (time_namelookup, time_connect, time_appconnect, "
                   "time_starttransfer, time_total) are in the facts: each phase in the capture adds up to them.",
        "recorded": recorded(name, "curl 7.88 (-v --http1.1 -w '%{json}'), the system resolver "
                                   "(glibc, /etc/resolv.conf naming dnsmasq)",
                             "nginx (TLS 1.3 only, self-signed certificate generated at record time); "
                             "dnsmasq as the resolver on its own link",
                             capture_point=f"client namespace {PREFIX}c, dumpcap on {PREFIX}c0 (server) "
                                           f"and {PREFIX}c1 (resolver)",
                             one_way_delay_ms=JOURNEY_ONE_WAY_MS, resolver_one_way_delay_ms=RESOLVER_ONE_WAY_MS,
                             curl=version(["curl", "--version"]), nginx=version(["nginx", "-v"]),
                             dnsmasq=version(["dnsmasq", "--version"])),
        "keylog": f"{name}.keys", "private_key": None,
        "facts": {
            "rtt_ms": 2 * JOURNEY_ONE_WAY_MS,
            "resolver_rtt_ms": 2 * RESOLVER_ONE_WAY_MS,
            "requests": 1, "statuses": {str(w["response_code"]): 1},
            "curl": {**timings, "remote_ip": w["remote_ip"], "remote_port": w["remote_port"],
                     "local_ip": w["local_ip"], "local_port": w["local_port"],
                     "http_version": w["http_version"], "response_code": w["response_code"],
                     "size_download": w["size_download"], "url": w["url_effective"]},
            "curl_verbose": verbose[:60],
            "dns_log": dns,
            "server_log": access,
        }}]


# ================================================================ caching: validators, 304s

NGINX_CACHE = NGINX_HEAD + """http {{
    log_format lab escape=json '{{"conn":$connection,"remote":"$remote_addr:$remote_port","request":"$request",'
                   '"status":$status,"bytes":$body_bytes_sent,"inm":"$http_if_none_match",'
                   '"ims":"$http_if_modified_since","etag":"$sent_http_etag",'
                   '"last_modified":"$sent_http_last_modified","cache_control":"$sent_http_cache_control"}}';
    access_log {w}/access.log lab;
    sendfile off;
    server_tokens off;
    keepalive_timeout 30s;
    types {{ application/javascript js; application/json json; text/csv csv; image/png png; }}
    server {{
        listen {addr}:80;
        root {w}/www;
        location /static/ {{ add_header Cache-Control "max-age=3600" always; }}
        location /api/ {{ add_header Cache-Control "no-cache" always; }}
        location /img/ {{ etag off; add_header Cache-Control "no-cache" always; }}
        location /report/ {{ etag off; if_modified_since off; add_header Last-Modified "" always;
                             add_header Cache-Control "no-cache" always; }}
    }}
}}
"""
CACHE_FILES = {"static/app.js": 30000, "api/data.json": 12000, "img/logo.png": 20000, "report/daily.csv": 25000}


class LabCache:
    """A small honest HTTP cache (the client's side): fresh entries are used without a request,
    stale ones are revalidated with the validators the response gave (RFC 9111)."""

    def __init__(self):
        self.entries: dict[str, dict] = {}

    def get(self, conn, path: str, now: float) -> dict:
        e = self.entries.get(path)
        if e is not None and e["max_age"] is not None and now - e["at"] < e["max_age"]:
            return {"path": path, "request": False, "decision": "fresh in cache: no request", "status": None,
                    "body_bytes": 0}
        headers, sent = {}, []
        if e is not None and e.get("etag"):
            headers["If-None-Match"] = e["etag"]
            sent.append("If-None-Match")
        if e is not None and e.get("last_modified"):
            headers["If-Modified-Since"] = e["last_modified"]
            sent.append("If-Modified-Since")
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        h = {k.lower(): v for k, v in resp.getheaders()}
        if resp.status == 304:
            e["at"] = now
            decision = "revalidated: 304, cached body reused"
        else:
            cc = h.get("cache-control", "")
            max_age = int(cc.split("max-age=")[1].split(",")[0]) if "max-age=" in cc else None
            self.entries[path] = {"etag": h.get("etag"), "last_modified": h.get("last-modified"),
                                  "max_age": max_age, "at": now, "size": len(body)}
            decision = ("conditional, but changed: 200 with the new body" if sent else
                        "no validator to send: full download" if e is not None else "first fetch")
        return {"path": path, "request": True, "conditional": sent, "status": resp.status, "body_bytes": len(body),
                "etag": h.get("etag"), "last_modified": h.get("last-modified"),
                "cache_control": h.get("cache-control"), "decision": decision}


def cache_client_main(server: str, work: str) -> None:
    import http.client
    conn = http.client.HTTPConnection(server, 80)
    conn.connect()
    me = "%s:%d" % conn.sock.getsockname()[:2]
    cache, paths = LabCache(), ["/" + p for p in CACHE_FILES]
    for round_ in (1, 2, 3):
        if round_ == 3:
            # Between the second and third visits the data changes on the server.
            Path(work, "www", "api", "data.json").write_bytes(b"[" + b"2," * 5999 + b"2]")
            log(event="changed", path="/api/data.json")
        for p in paths:
            r = cache.get(conn, p, time.monotonic())
            log(event="get", round=round_, client=me, **r)
        time.sleep(0.5)
    conn.close()


def record_caching(out: Path) -> list[dict]:
    name = "http-caching"
    me = [sys.executable, str(Path(__file__).resolve())]
    with Lab(PREFIX, NET, [LinkSpec("c", "s", delay_ms=ONE_WAY_MS)]) as lab:
        work = lab.workdir
        for rel, size in CACHE_FILES.items():
            (work / "www" / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / "www" / rel).write_bytes(bytes([65 + len(rel) % 26]) * size)
        conf = work / "nginx.conf"
        conf.write_text(NGINX_CACHE.format(w=work, addr=lab.addr("s")))
        lab.popen("s", ["nginx", "-p", str(work), "-c", str(conf)])
        wait_listening(lab, "s", 80)
        with lab.capture("c", out / f"{name}.pcapng"):
            done = lab.run("c", me + ["cache-client", lab.addr("s"), str(work)])
            time.sleep(0.2)
        time.sleep(0.3)
        access = [json.loads(x) for x in (work / "access.log").read_text().splitlines() if x.strip()]
    shutil.rmtree(lab.workdir, ignore_errors=True)
    gets = [x for x in lines(done.stdout) if x.get("event") == "get"]
    sent = [g for g in gets if g["request"]]
    statuses: dict[str, int] = {}
    for g in sent:
        statuses[str(g["status"])] = statuses.get(str(g["status"]), 0) + 1
    client = sent[0]["client"]
    return [{
        "name": name, "file": f"{name}.pcapng",
        "title": "HTTP caching: max-age, conditional requests (If-None-Match, If-Modified-Since), 304 vs 200",
        "concepts": ["caching", "conditional-request", "http1-keepalive"],
        "look_at": "Three visits to four resources on one keep-alive connection. /static/app.js says "
                   "max-age=3600: fetched once, then used from the cache with no request at all. "
                   "/api/data.json (ETag, no-cache) is revalidated with If-None-Match: 304 with no body the "
                   "second time; the third time it has changed, so the same conditional request gets 200 and "
                   "the new body. /img/logo.png has only Last-Modified: revalidated with If-Modified-Since, "
                   "304. /report/daily.csv has no validator at all: every visit downloads the whole body.",
        "recorded": recorded(name, "hand-written HTTP cache on http.client (scenarios_lab.py LabCache), "
                                   "one keep-alive connection",
                             "nginx: ETag and Last-Modified on static files, Cache-Control per location",
                             nginx=version(["nginx", "-v"])),
        "keylog": None, "private_key": None,
        "facts": {"rtt_ms": 2 * ONE_WAY_MS,
                  "connections": [{"transport": "tcp", "client": client, "server": f"{lab.addr('s')}:80",
                                   "outcome": "fin-client", "syns": 1,
                                   "requests": [{"method": "GET", "path": g["path"], "status": g["status"]}
                                                for g in sent]}],
                  "requests": len(sent), "statuses": statuses, "client_log": gets, "server_log": access}}]


# ================================================================ gRPC over h2c and TLS

GRPC_SERVICE = "lab.Inventory"
ITEMS = {1: ("bolt", 25), 2: ("nut", 10), 3: ("washer", 5), 4: ("gear", 1200), 5: ("spring", 80)}


def pb_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_item(item_id: int) -> bytes:
    """lab.Item {uint32 id = 1; string name = 2; uint32 price_cents = 3;}, encoded by hand (no schema compiler)."""
    name, price = ITEMS[item_id]
    return (b"\x08" + pb_varint(item_id) + b"\x12" + pb_varint(len(name)) + name.encode()
            + b"\x18" + pb_varint(price))


def pb_request(item_id: int) -> bytes:
    """lab.ItemRequest {uint32 id = 1;}"""
    return b"\x08" + pb_varint(item_id)


def pb_read_id(data: bytes) -> int:
    return data[1] if len(data) >= 2 and data[0] == 0x08 else 0


def grpc_server_main(addr: str, port: str, tls_dir: str = "") -> None:
    from concurrent import futures
    import grpc

    def get_item(request: bytes, context):
        item_id = pb_read_id(request)
        log(event="call", method="GetItem", id=item_id, peer=context.peer())
        if item_id not in ITEMS:
            log(event="status", method="GetItem", code="NOT_FOUND", message=f"no item {item_id}")
            context.abort(grpc.StatusCode.NOT_FOUND, f"no item {item_id}")
        return pb_item(item_id)

    def list_items(request: bytes, context):
        log(event="call", method="ListItems", peer=context.peer())
        for item_id in ITEMS:
            time.sleep(0.05)
            yield pb_item(item_id)

    handler = grpc.method_handlers_generic_handler(GRPC_SERVICE, {
        "GetItem": grpc.unary_unary_rpc_method_handler(get_item),
        "ListItems": grpc.unary_stream_rpc_method_handler(list_items)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    if tls_dir:
        creds = grpc.ssl_server_credentials([(Path(tls_dir, "key.pem").read_bytes(),
                                              Path(tls_dir, "cert.pem").read_bytes())])
        server.add_secure_port(f"{addr}:{port}", creds)
    else:
        server.add_insecure_port(f"{addr}:{port}")
    server.start()
    log(event="ready")
    server.wait_for_termination()


GRPC_PLAN = [("GetItem", 1), ("GetItem", 4), ("ListItems", 0), ("GetItem", 99), ("GetItem", 2)]


def grpc_client_main(server: str, port: str) -> None:
    """grpcio's own client over h2c (insecure channel)."""
    import grpc
    with grpc.insecure_channel(f"{server}:{port}") as ch:
        get = ch.unary_unary(f"/{GRPC_SERVICE}/GetItem")
        listing = ch.unary_stream(f"/{GRPC_SERVICE}/ListItems")
        for method, item_id in GRPC_PLAN:
            t0 = time.monotonic()
            try:
                if method == "GetItem":
                    reply = [get(pb_request(item_id), timeout=5)]
                else:
                    reply = list(listing(pb_request(0), timeout=5))
                code, message = "OK", ""
            except grpc.RpcError as e:
                reply, code, message = [], e.code().name, e.details()
            log(method=method, path=f"/{GRPC_SERVICE}/{method}", request_bytes=len(pb_request(item_id)),
                replies=[len(r) for r in reply], status=code, message=message,
                ms=round((time.monotonic() - t0) * 1000, 2))
            time.sleep(0.1)


def grpc_tls_client_main(server: str, port: str, cafile: str, keylog: str) -> None:
    """A gRPC client written on the h2 library over Python's ssl (so the TLS keys can be logged)."""
    import socket
    import ssl
    import h2.config
    import h2.connection
    import h2.events
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["h2"])
    ctx.keylog_filename = keylog
    raw = socket.create_connection((server, int(port)))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    me = "%s:%d" % raw.getsockname()[:2]
    sock = ctx.wrap_socket(raw, server_hostname="grpc.lab.test")
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    state: dict = {}

    def handle(ev):
        st = state.setdefault(getattr(ev, "stream_id", 0), {"data": b"", "headers": {}, "trailers": {}})
        if isinstance(ev, h2.events.ResponseReceived):
            st["headers"] = dict(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            st["data"] += ev.data
        elif isinstance(ev, h2.events.TrailersReceived):
            st["trailers"] = dict(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded):
            st["ended"] = True

    sid = 1
    for method, item_id in GRPC_PLAN:
        t0 = time.monotonic()
        body = pb_request(item_id)
        conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"), (":path", f"/{GRPC_SERVICE}/{method}"),
                                (":authority", f"grpc.lab.test:{port}"), ("content-type", "application/grpc"),
                                ("te", "trailers"), ("grpc-timeout", "5S"), ("user-agent", "traceviz-lab-h2")])
        conn.send_data(sid, b"\x00" + len(body).to_bytes(4, "big") + body, end_stream=True)
        _h2_pump(sock, conn, handle, lambda: state.get(sid, {}).get("ended", False))
        st = state[sid]
        data, replies = st["data"], []
        while len(data) >= 5:
            n = int.from_bytes(data[1:5], "big")
            replies.append(n)
            data = data[5 + n:]
        end = st["trailers"] or st["headers"]
        code = int(end.get("grpc-status", "2"))
        log(method=method, path=f"/{GRPC_SERVICE}/{method}", stream=sid, client=me, request_bytes=len(body),
            replies=replies, status=_GRPC_CODES.get(code, str(code)), message=end.get("grpc-message", ""),
            ms=round((time.monotonic() - t0) * 1000, 2))
        sid += 2
        time.sleep(0.1)
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()


_GRPC_CODES = {0: "OK", 5: "NOT_FOUND", 2: "UNKNOWN", 13: "INTERNAL"}


def record_grpc(out: Path) -> list[dict]:
    me = [sys.executable, str(Path(__file__).resolve())]
    entries = []
    for name, tls in (("grpc-h2c", False), ("grpc-tls", True)):
        port = "443" if tls else "80"
        with Lab(PREFIX, NET, [LinkSpec("c", "s", delay_ms=ONE_WAY_MS)]) as lab:
            work = lab.workdir
            if tls:
                make_cert(work, "grpc.lab.test")
            server = lab.popen("s", me + ["grpc-server", lab.addr("s"), port] + ([str(work)] if tls else []),
                               ready="ready", env={**os.environ, "GRPC_VERBOSITY": "ERROR"})
            keys = out / f"{name}.keys"
            with lab.capture("c", out / f"{name}.pcapng"):
                if tls:
                    done = lab.run("c", me + ["grpc-tls-client", lab.addr("s"), port, str(work / "cert.pem"),
                                              str(keys)])
                else:
                    done = lab.run("c", me + ["grpc-client", lab.addr("s"), port],
                                   env={**os.environ, "GRPC_VERBOSITY": "ERROR"})
                time.sleep(0.3)
            server.terminate()
            server_log = lines(server.stdout.read())
        if tls:
            inject_keys(out / f"{name}.pcapng", keys)
        shutil.rmtree(lab.workdir, ignore_errors=True)
        calls = lines(done.stdout)
        peers = {e["peer"].removeprefix("ipv4:") for e in server_log if e.get("event") == "call"}
        client = "grpcio (Python) insecure channel" if not tls else \
            "hand-written gRPC client on the h2 library over Python ssl (the key log needs it), ALPN h2"
        entries.append({
            "name": name, "file": f"{name}.pcapng",
            "title": f"gRPC over {'TLS (h2)' if tls else 'h2c (cleartext HTTP/2)'}: unary calls, a server stream, "
                     "a NOT_FOUND status",
            "concepts": ["grpc", "h2" if tls else "h2c"] + (["tls13"] if tls else []),
            "look_at": "Each call is one HTTP/2 stream: POST /lab.Inventory/<Method> with content-type "
                       "application/grpc; the request and each reply are length-prefixed messages (1 flag byte, "
                       "4 length bytes, then protobuf) inside DATA frames; the status comes last, in trailers "
                       "(grpc-status, grpc-message). ListItems streams five replies 50 ms apart on one stream; "
                       "GetItem(99) ends with grpc-status 5 (NOT_FOUND) 'no item 99' and no reply message."
                       + (" Decrypt with the embedded key log." if tls else ""),
            "recorded": recorded(name, client, "grpcio (Python) server, generic handlers, protobuf encoded by hand",
                                 python=".venv/bin/python", grpcio=_module_version("grpcio")),
            "keylog": f"{name}.keys" if tls else None, "private_key": None,
            "facts": {"rtt_ms": 2 * ONE_WAY_MS, "grpc_calls": calls, "server_log": server_log,
                      "connections": [{"transport": "tcp", "client": peer, "server": f"{lab.addr('s')}:{port}",
                                       "outcome": "fin-client", "syns": 1}
                                      for peer in sorted(peers)],
                      "items": {str(k): {"name": v[0], "price_cents": v[1]} for k, v in ITEMS.items()}}})
    return entries


# ================================================================ SSE, long polling, short polling

FEED_PORT = 80
FEED_UPDATES = [0.45, 0.95, 1.05, 2.2, 2.3, 3.4]      # seconds after the clients start: bursty on purpose
FEED_END = 4.0
SHORT_POLL_S = 0.5
LONG_POLL_HOLD_S = 2.0


async def feed_server_main(addr: str) -> None:
    """One data feed, three ways: /feed/events (SSE), /feed/poll (answers now), /feed/wait (holds).

    An update is known by its number: the SSE event's id and the poll answers' ETag."""
    state = {"n": 0, "changed": asyncio.Event(), "t0": None}

    async def publisher():
        await started.wait()
        for at in FEED_UPDATES:
            await asyncio.sleep(max(0.0, state["t0"] + at - time.time()))
            state["n"] += 1
            log(event="update", id=state["n"], ts=time.time())
            state["changed"].set()
            state["changed"] = asyncio.Event()

    started = asyncio.Event()

    def since(headers: dict) -> int:
        tag = headers.get("if-none-match", "").strip('"')
        return int(tag) if tag.isdigit() else -1

    async def answer(w, status: str, body: bytes = b"", extra: str = "") -> None:
        head = f"HTTP/1.1 {status}\r\nServer: lab-feed\r\nCache-Control: no-cache\r\n{extra}"
        if status.startswith("200"):
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        w.write((head + "\r\n").encode() + body)
        await w.drain()

    async def handle(r, w):
        peer = "%s:%d" % w.get_extra_info("peername")[:2]
        try:
            while True:
                line = await r.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers = {}
                while (h := await r.readline()) not in (b"\r\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                if path == "/feed/start":
                    state["t0"] = time.time()
                    started.set()
                    log(event="start", ts=state["t0"])
                    await answer(w, "204 No Content")
                elif path == "/feed/events":
                    log(event="request", client=peer, path=path)
                    w.write(b"HTTP/1.1 200 OK\r\nServer: lab-feed\r\nContent-Type: text/event-stream\r\n"
                            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
                    await w.drain()
                    await started.wait()
                    sent = 0
                    while True:
                        if sent == state["n"]:
                            try:
                                await asyncio.wait_for(state["changed"].wait(), FEED_END + 1 - (time.time() - state["t0"]))
                            except asyncio.TimeoutError:
                                break
                        while sent < state["n"]:
                            sent += 1
                            msg = f"id: {sent}\nevent: update\ndata: {{\"update\": {sent}}}\n\n".encode()
                            w.write(f"{len(msg):x}\r\n".encode() + msg + b"\r\n")
                            await w.drain()
                            log(event="push", client=peer, id=sent, ts=time.time())
                        if len(FEED_UPDATES) == sent:
                            break
                    w.write(b"0\r\n\r\n")
                    await w.drain()
                    return
                elif path in ("/feed/poll", "/feed/wait"):
                    have = since(headers)
                    log(event="request", client=peer, path=path, since=have, ts=time.time())
                    if path == "/feed/wait" and have >= state["n"]:
                        try:
                            await asyncio.wait_for(state["changed"].wait(), LONG_POLL_HOLD_S)
                        except asyncio.TimeoutError:
                            pass
                    if state["n"] > have:
                        body = json.dumps({"updates": list(range(have + 1 if have >= 0 else 1, state["n"] + 1))}).encode()
                        await answer(w, "200 OK", body, f'ETag: "{state["n"]}"\r\n')
                        log(event="answer", client=peer, path=path, status=200, id=state["n"], ts=time.time())
                    else:
                        await answer(w, "304 Not Modified", extra=f'ETag: "{state["n"]}"\r\n')
                        log(event="answer", client=peer, path=path, status=304, id=state["n"], ts=time.time())
        finally:
            w.close()

    server = await asyncio.start_server(handle, addr, FEED_PORT)
    asyncio.ensure_future(publisher())
    log(event="ready")
    async with server:
        await server.serve_forever()


def feed_client_main(server: str, kind: str) -> None:
    """One way of following the feed, on one keep-alive connection; prints what it got and when."""
    import http.client
    conn = http.client.HTTPConnection(server, FEED_PORT)
    conn.connect()
    me = "%s:%d" % conn.sock.getsockname()[:2]
    got, requests = [], 0
    t_end = time.time() + FEED_END + 0.5          # the recorder starts the feed 0.5 s after the followers
    if kind == "sse":
        conn.request("GET", "/feed/events", headers={"Accept": "text/event-stream"})
        requests = 1
        resp = conn.getresponse()
        for raw in resp:
            line = raw.decode().strip()
            if line.startswith("id:"):
                got.append({"id": int(line[3:]), "ts": time.time()})
        resp.read()
    else:
        tag = None
        path = "/feed/poll" if kind == "short" else "/feed/wait"
        while time.time() < t_end:
            conn.request("GET", path, headers={"If-None-Match": tag} if tag else {})
            requests += 1
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                tag = resp.getheader("ETag")
                got.append({"id": int(tag.strip('"')), "ts": time.time()})
            if kind == "short":
                time.sleep(SHORT_POLL_S)
    conn.close()
    log(kind=kind, client=me, requests=requests, got=got)


def record_feeds(out: Path) -> list[dict]:
    name = "push-vs-poll"
    me = [sys.executable, str(Path(__file__).resolve())]
    with Lab(PREFIX, NET, [LinkSpec("c", "s", delay_ms=ONE_WAY_MS)]) as lab:
        server = lab.popen("s", me + ["feed-server", lab.addr("s")], ready="ready")
        with lab.capture("c", out / f"{name}.pcapng"):
            clients = [subprocess.Popen(lab.argv("c", me + ["feed-client", lab.addr("s"), kind]),
                                        stdout=subprocess.PIPE, text=True) for kind in ("sse", "long", "short")]
            time.sleep(0.5)       # all three connected and waiting before the first update
            lab.run("c", ["curl", "-s", "-o", "/dev/null", f"http://{lab.addr('s')}/feed/start"])
            outs = [c.communicate(timeout=30)[0] for c in clients]
            time.sleep(0.3)
        server.terminate()
        server_log = lines(server.stdout.read())
    shutil.rmtree(lab.workdir, ignore_errors=True)
    followers = [lines(o)[0] for o in outs]
    updates = [e for e in server_log if e["event"] == "update"]
    return [{
        "name": name, "file": f"{name}.pcapng",
        "title": "One data feed followed three ways: server-sent events, long polling, short polling",
        "concepts": ["sse", "long-polling", "short-polling", "push-vs-pull"],
        "look_at": "Six updates arrive in bursts. The SSE client holds one request open the whole time "
                   "(text/event-stream, chunked) and each update reaches it one way after it happens. The "
                   "long poller asks with If-None-Match and the server holds the request until something "
                   "changes (or 2 s pass: 304), so it too hears of each update at once, at the cost of a "
                   "request per update and a parked request. The short poller asks every 0.5 s: most answers "
                   "are 304 (nothing new), and an update waits up to half a second to be noticed. (The one "
                   "GET /feed/start is the recorder's own: it starts the feed's clock.)",
        "recorded": recorded(name, "http.client followers (scenarios_lab.py feed-client): sse, long, short; "
                                   "curl for /feed/start",
                             "hand-written asyncio HTTP/1.1 feed server (scenarios_lab.py feed-server)"),
        "keylog": None, "private_key": None,
        "facts": {"rtt_ms": 2 * ONE_WAY_MS, "updates": [{"id": u["id"], "ts": u["ts"]} for u in updates],
                  "short_poll_interval_s": SHORT_POLL_S, "long_poll_hold_s": LONG_POLL_HOLD_S,
                  "followers": followers, "server_log": server_log}}]


# ================================================================ connection pools, limits, leaks

POOL_SIZE, POOL_REQUESTS, TIGHT_REQUESTS, LEAK_CONNS = 3, 9, 6, 6
SLOW_S = 0.3


def slow_server_main(addr: str, port: str) -> None:
    """The upstream: /slow answers after SLOW_S, /fast at once; logs each connection's open and close."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    lock, open_now = threading.Lock(), [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            with lock:
                open_now[0] += 1
                log(event="open", peer="%s:%d" % self.client_address, open=open_now[0], ts=time.time())

        def finish(self):
            super().finish()
            with lock:
                open_now[0] -= 1
                log(event="close", peer="%s:%d" % self.client_address, open=open_now[0], ts=time.time())

        def do_GET(self):
            if self.path.startswith("/slow"):
                time.sleep(SLOW_S)
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer((addr, int(port)), Handler)
    srv.daemon_threads = True
    log(event="ready")
    srv.serve_forever()


def pool_client_main(server: str) -> None:
    import http.client
    import queue
    import socket
    import threading

    # A: a pool of POOL_SIZE keep-alive connections; POOL_REQUESTS requests issued at once queue for one.
    jobs: queue.Queue = queue.Queue()
    t0 = time.time()
    for i in range(POOL_REQUESTS):
        jobs.put((i, t0))
    results, lock = [], threading.Lock()

    def worker():
        conn = http.client.HTTPConnection(server, 8080)
        conn.connect()
        me = "%s:%d" % conn.sock.getsockname()[:2]
        while True:
            try:
                i, issued = jobs.get_nowait()
            except queue.Empty:
                break
            sent = time.time()
            conn.request("GET", f"/slow?n={i}")
            r = conn.getresponse()
            r.read()
            with lock:
                results.append({"n": i, "client": me, "issued": issued, "sent": sent, "done": time.time(),
                                "status": r.status, "blocked_s": round(sent - issued, 4)})
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(POOL_SIZE)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log(phase="pool", pool_size=POOL_SIZE, requests=sorted(results, key=lambda r: r["n"]))
    time.sleep(0.5)

    # B: TIGHT_REQUESTS at once, each on its own connection, to a server haproxy lets take 2 at a time.
    out = []

    def one(i):
        conn = http.client.HTTPConnection(server, 8081, timeout=5)
        conn.connect()
        me = "%s:%d" % conn.sock.getsockname()[:2]
        sent = time.time()
        conn.request("GET", f"/slow?t={i}", headers={"Connection": "close"})
        r = conn.getresponse()
        r.read()
        with lock:
            out.append({"n": i, "client": me, "sent": sent, "done": time.time(), "status": r.status})
        conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(TIGHT_REQUESTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log(phase="limit", requests=sorted(out, key=lambda r: r["n"]))
    time.sleep(0.5)

    # C: a leak: connections opened, used once, never closed, until the frontend's limit.
    kept, leak = [], []
    for i in range(LEAK_CONNS):
        s = socket.create_connection((server, 8082))
        s.settimeout(1.0)
        me = "%s:%d" % s.getsockname()[:2]
        s.sendall(f"GET /fast?leak={i} HTTP/1.1\r\nHost: {server}\r\n\r\n".encode())
        try:
            answered = s.recv(4096).split(b" ", 2)[1].decode()
        except (TimeoutError, socket.timeout, IndexError):
            answered = None
        leak.append({"n": i, "client": me, "status": int(answered) if answered else None})
        kept.append(s)                  # the leak: never closed
        time.sleep(0.1)
    log(phase="leak", connections=leak)
    print("leaked", flush=True)
    time.sleep(30)                      # the recorder stops the capture, then this process


def _haproxy_timers(line: str) -> dict | None:
    m = re.search(r"(\d+\.\d+\.\d+\.\d+:\d+) \[[^\]]+\] (\w+) (\S+) (-?\d+)/(-?\d+)/(-?\d+)/(-?\d+)/(-?\d+) "
                  r"(-?\d+) \d+ - - (\S{4}) (\d+)/(\d+)/(\d+)/(\d+)/\+?(\d+) (\d+)/(\d+) \"(\S+) (\S+)", line)
    if not m:
        return None
    g = m.groups()
    return {"client": g[0], "frontend": g[1], "backend": g[2], "TR": int(g[3]), "Tw": int(g[4]), "Tc": int(g[5]),
            "Tr": int(g[6]), "Ta": int(g[7]), "status": int(g[8]), "termination": g[9], "actconn": int(g[10]),
            "feconn": int(g[11]), "beconn": int(g[12]), "srv_conn": int(g[13]), "srv_queue": int(g[15]),
            "backend_queue": int(g[16]), "path": g[18]}


def record_pool(out: Path) -> list[dict]:
    import servers_b
    name = "connection-pool"
    me = [sys.executable, str(Path(__file__).resolve())]
    links = [LinkSpec("c", "p", delay_ms=ONE_WAY_MS), LinkSpec("p", "u", delay_ms=1.0)]
    with Lab(PREFIX, NET, links) as lab:
        work = lab.workdir
        up = lab.popen("u", me + ["slow-server", lab.addr("u", 1), "9000"], ready="ready")
        cfg = work / "haproxy.cfg"
        cfg.write_text(servers_b.render((HERE / "conf" / "haproxy_pool_l.cfg").read_text(),
                                        {"LISTEN": lab.addr("p", 0), "UP": lab.addr("u", 1)}))
        hlog = work / "haproxy.log"
        servers_b.start(lab, "p", ["haproxy", "-db", "-f", str(cfg)], hlog, wait_port=(lab.addr("p", 0), 8082))
        with lab.capture("p", out / f"{name}.pcapng", [lab.iface("p", 0), lab.iface("p", 1)]):
            client = subprocess.Popen(lab.argv("c", me + ["pool-client", lab.addr("p", 0)]), stdout=subprocess.PIPE,
                                      text=True)
            said = []
            for line in client.stdout:
                if line.strip() == "leaked":
                    break
                said.append(line)
            time.sleep(0.5)
        client.kill()
        client.wait()
        time.sleep(0.3)
        up.terminate()
        up_log = lines(up.stdout.read())
        hap = [h for h in map(_haproxy_timers, hlog.read_text().splitlines()) if h]
    in_time_order(out / f"{name}.pcapng")
    shutil.rmtree(lab.workdir, ignore_errors=True)
    phases = {x["phase"]: x for x in lines("".join(said))}
    return [{
        "name": name, "file": f"{name}.pcapng",
        "title": "Connection pools and limits: a client pool of 3, haproxy's server maxconn 2 (queue, then 503), "
                 "a connection leak until the frontend's maxconn",
        "concepts": ["connection-pool", "connection-limit", "connection-leak", "haproxy", "queueing"],
        "look_at": "Captured at haproxy, both legs (interface 0: clients, 1: the upstream). First a client "
                   f"with a pool of {POOL_SIZE} connections asks {POOL_REQUESTS} slow requests at once: they go "
                   f"{POOL_SIZE} at a time, each queued request leaving the moment a response frees a connection. "
                   f"Then {TIGHT_REQUESTS} clients at once hit a backend haproxy lets take 2 requests at a time "
                   "(server maxconn 2): two go through, two wait in haproxy's queue and go through, two wait "
                   "450 ms (timeout queue) and get 503. Last, a client opens connections and never closes them: "
                   "the frontend (maxconn 4) stops accepting, and the fifth and sixth complete their handshakes "
                   "in the kernel's backlog but are never answered.",
        "recorded": recorded(name, "scenarios_lab.py pool-client (http.client threads; raw sockets for the leak)",
                             "haproxy 2.6 (conf/haproxy_pool_l.cfg) in front of a ThreadingHTTPServer upstream "
                             f"(/slow answers after {SLOW_S} s)",
                             capture_point=f"proxy namespace {PREFIX}p, dumpcap on {PREFIX}p0 (clients) and "
                                           f"{PREFIX}p1 (upstream)",
                             haproxy=version(["haproxy", "-v"])),
        "keylog": None, "private_key": None,
        # rtt_ms: the upstream leg's, the one whose handshakes the proxy's capture times end to end.
        "facts": {"rtt_ms": 2 * 1.0, "client_rtt_ms": 2 * ONE_WAY_MS, "pool": phases["pool"], "limit": phases["limit"],
                  "leak": phases["leak"], "haproxy_log": hap, "upstream_log": up_log,
                  "limits": {"pool_size": POOL_SIZE, "server_maxconn": 2, "timeout_queue_ms": 450,
                             "frontend_maxconn": 4}}}]


# ================================================================ CONNECT tunnels; layer 4 vs layer 7

TINYPROXY_CONF = """
User root
Group root
Port 8888
Listen {listen}
Timeout 30
LogFile "{w}/tinyproxy.log"
LogLevel Info
PidFile "{w}/tinyproxy.pid"
MaxClients 20
Allow 10.94.0.0/16
ConnectPort 443
ViaProxyName "tinyproxy"
"""

NGINX_WEB = NGINX_HEAD + """http {{
    log_format lab escape=json '{{"conn":$connection,"remote":"$remote_addr:$remote_port","request":"$request",'
                   '"status":$status,"bytes":$body_bytes_sent,"ssl_protocol":"$ssl_protocol","sni":"$ssl_server_name",'
                   '"xff":"$http_x_forwarded_for","host":"$host"}}';
    access_log {w}/access.log lab;
    sendfile off;
    server_tokens off;
    keepalive_timeout 30s;
    types {{ text/html html; text/css css; }}
    server {{
        listen {addr}:443 ssl;
        listen {addr}:80;
        server_name {host};
        ssl_certificate {w}/cert.pem;
        ssl_certificate_key {w}/key.pem;
        ssl_protocols TLSv1.3;
        root {w}/www;
    }}
}}
"""
WEB_FILES = {"index.html": 1500, "style.css": 4000, "app.css": 9000}


def _web(lab: Lab, host: str, work: Path, link: int) -> None:
    (work / "www").mkdir(parents=True, exist_ok=True)
    for rel, size in WEB_FILES.items():
        (work / "www" / rel).write_bytes(b"x" * size)
    make_cert(work, JOURNEY_HOST)
    conf = work / "nginx.conf"
    conf.write_text(NGINX_WEB.format(w=work, addr=lab.addr(host, link), host=JOURNEY_HOST))
    lab.popen(host, ["nginx", "-p", str(work), "-c", str(conf)])
    wait_listening(lab, host, 443)


def _curl(lab: Lab, work: Path, keys: Path, urls: list[str], *extra: str) -> dict:
    done = lab.run("c", ["curl", "-sS", "--http1.1", "--cacert", str(work / "cert.pem"), *extra,
                         "-w", "%{json}\\n", *sum((["-o", "/dev/null", u] for u in urls), [])],
                   env={**os.environ, "SSLKEYLOGFILE": str(keys)})
    keep = ("url_effective", "response_code", "size_download", "local_ip", "local_port", "remote_ip", "remote_port",
            "num_connects", "time_connect", "time_appconnect", "time_starttransfer", "time_total")
    return [{k: v for k, v in json.loads(x).items() if k in keep} for x in done.stdout.splitlines()
            if x.startswith("{")]


def record_proxies(out: Path) -> list[dict]:
    import servers_b
    links = [LinkSpec("c", "p", delay_ms=ONE_WAY_MS), LinkSpec("p", "s", delay_ms=5.0)]
    urls = [f"https://{JOURNEY_HOST}/{f}" for f in WEB_FILES]
    entries = []
    etc = Path("/etc/netns")
    # --- CONNECT through tinyproxy
    name = "connect-tunnel"
    with Lab(PREFIX, NET, links) as lab:
        work = lab.workdir
        _web(lab, "s", work, 1)
        (work / "tinyproxy.conf").write_text(TINYPROXY_CONF.format(listen=lab.addr("p", 0), w=work))
        hosts = etc / f"{PREFIX}p"
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts").write_text(f"127.0.0.1 localhost\n{lab.addr('s', 1)} {JOURNEY_HOST}\n")
        try:
            servers_b.start(lab, "p", ["tinyproxy", "-d", "-c", str(work / "tinyproxy.conf")], work / "tp.out",
                            wait_port=(lab.addr("p", 0), 8888))
            keys = out / f"{name}.keys"
            with lab.capture("p", out / f"{name}.pcapng", [lab.iface("p", 0), lab.iface("p", 1)]):
                fetched = _curl(lab, work, keys, urls, "-x", f"http://{lab.addr('p', 0)}:8888")
                time.sleep(0.3)
        finally:
            shutil.rmtree(hosts, ignore_errors=True)
        time.sleep(0.3)
        tp_log = [x for x in (work / "tinyproxy.log").read_text().splitlines() if "CONNECT" in x or "Established" in x
                  or "Closed" in x]
        access = [json.loads(x) for x in (work / "access.log").read_text().splitlines() if x.strip()]
        proxy_addr, web = lab.addr("p", 0), lab.addr("s", 1)
    in_time_order(out / f"{name}.pcapng")
    inject_keys(out / f"{name}.pcapng", keys)
    shutil.rmtree(lab.workdir, ignore_errors=True)
    entries.append({
        "name": name, "file": f"{name}.pcapng",
        "title": "HTTPS through a forward proxy: CONNECT, 200 Connection established, TLS inside the tunnel",
        "concepts": ["connect-tunnel", "forward-proxy", "tls13", "proxy-legs"],
        "look_at": "Captured at the proxy (tinyproxy), both sides. The client asks 'CONNECT www.lab.test:443' in "
                   "plain HTTP and gets '200 Connection established'; from then on the same TCP connection "
                   "carries TLS, which the proxy copies byte for byte into its own connection to the web "
                   "server (interface 1). The proxy sees the host name (in CONNECT and in the TLS SNI) and "
                   "the byte counts, never the paths: three GETs went through it unseen. Decrypt with the "
                   "embedded key log to read them.",
        "recorded": recorded(name, "curl -x http://PROXY:8888 (three URLs, one connection), SSLKEYLOGFILE",
                             "tinyproxy (conf in scenarios_lab.py), nginx TLS 1.3 behind it",
                             capture_point=f"proxy namespace {PREFIX}p, dumpcap on {PREFIX}p0 (client side) and "
                                           f"{PREFIX}p1 (server side)",
                             tinyproxy=version(["tinyproxy", "-v"]), curl=version(["curl", "--version"])),
        "keylog": f"{name}.keys", "private_key": None,
        "facts": {"rtt_ms": 2 * 5.0, "client_rtt_ms": 2 * ONE_WAY_MS, "proxy": f"{proxy_addr}:8888",
                  "target": f"{JOURNEY_HOST}:443", "web_server": f"{web}:443", "curl": fetched,
                  "tinyproxy_log": tp_log, "server_log": access}})
    # --- layer 4 vs layer 7 through haproxy
    name = "l4-vs-l7"
    with Lab(PREFIX, NET, links) as lab:
        work = lab.workdir
        _web(lab, "s", work, 1)
        pem = work / "haproxy.pem"
        pem.write_bytes((work / "cert.pem").read_bytes() + (work / "key.pem").read_bytes())
        cfg = work / "haproxy.cfg"
        cfg.write_text(servers_b.render((HERE / "conf" / "haproxy_layers_l.cfg").read_text(),
                                        {"LISTEN": lab.addr("p", 0), "UP": lab.addr("s", 1), "PEM": str(pem)}))
        hlog = work / "haproxy.log"
        servers_b.start(lab, "p", ["haproxy", "-db", "-f", str(cfg)], hlog, wait_port=(lab.addr("p", 0), 9443))
        keys = out / f"{name}.keys"
        res = f"{JOURNEY_HOST}:{{port}}:{lab.addr('p', 0)}"
        with lab.capture("p", out / f"{name}.pcapng", [lab.iface("p", 0), lab.iface("p", 1)]):
            l4 = _curl(lab, work, keys, [u.replace(JOURNEY_HOST, JOURNEY_HOST + ":8443") for u in urls],
                       "--resolve", res.format(port=8443))
            time.sleep(0.3)
            l7 = _curl(lab, work, keys, [u.replace(JOURNEY_HOST, JOURNEY_HOST + ":9443") for u in urls],
                       "--resolve", res.format(port=9443))
            time.sleep(0.3)
        time.sleep(0.3)
        access = [json.loads(x) for x in (work / "access.log").read_text().splitlines() if x.strip()]
        hap = [x for x in hlog.read_text().splitlines() if "l4" in x or "l7" in x]
        proxy_addr, web = lab.addr("p", 0), lab.addr("s", 1)
    in_time_order(out / f"{name}.pcapng")
    inject_keys(out / f"{name}.pcapng", keys)
    shutil.rmtree(lab.workdir, ignore_errors=True)
    entries.append({
        "name": name, "file": f"{name}.pcapng",
        "title": "The same three HTTPS requests through haproxy at layer 4 (mode tcp) and at layer 7 (mode http)",
        "concepts": ["l4-vs-l7", "haproxy", "tls-termination", "reverse-proxy", "proxy-legs"],
        "look_at": "Captured at haproxy, both sides. Port 8443 is layer 4: one upstream TCP connection per client "
                   "connection, the very same TLS bytes on both sides (the TLS ends at nginx; haproxy sees the "
                   "SNI and byte counts only). Port 9443 is layer 7: haproxy ends the TLS itself, reads each "
                   "request, and sends it to nginx as plain HTTP on its own connection with X-Forwarded-For -- "
                   "it can route by path, rewrite headers, and reuse upstream connections.",
        "recorded": recorded(name, "curl (three URLs, one connection, --resolve to the proxy), SSLKEYLOGFILE",
                             "haproxy 2.6 (conf/haproxy_layers_l.cfg), nginx TLS 1.3 and plain HTTP behind it",
                             capture_point=f"proxy namespace {PREFIX}p, dumpcap on {PREFIX}p0 (client side) and "
                                           f"{PREFIX}p1 (server side)",
                             haproxy=version(["haproxy", "-v"]), curl=version(["curl", "--version"])),
        "keylog": f"{name}.keys", "private_key": None,
        "facts": {"rtt_ms": 2 * 5.0, "client_rtt_ms": 2 * ONE_WAY_MS, "proxy": proxy_addr, "web_server": web,
                  "l4": {"port": 8443, "upstream_port": 443, "curl": l4},
                  "l7": {"port": 9443, "upstream_port": 80, "curl": l7},
                  "haproxy_log": hap, "server_log": access}})
    return entries


# ================================================================ a SYN flood, with and without SYN cookies

FLOOD_SYNS, FLOOD_RATE = 300, 150            # 2 s of spoofed SYNs, bounded and rate-limited
FLOOD_NET = "10.94.200"                      # spoofed sources: routed back to the client's link, owned by no one
FLOOD_BACKLOG = 16
LEGIT_AT_S = 0.5
NSTAT_KEYS = ("TcpExtTCPReqQFullDrop", "TcpExtTCPReqQFullDoCookies", "TcpExtSyncookiesSent", "TcpExtSyncookiesRecv",
              "TcpExtListenDrops", "TcpExtListenOverflows", "TcpPassiveOpens", "TcpRetransSegs")


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _syn(src: str, dst: str, sport: int, dport: int, seq: int) -> bytes:
    """An IPv4 packet holding a bare TCP SYN (no options), checksums filled in."""
    import socket
    import struct
    s_ip, d_ip = socket.inet_aton(src), socket.inet_aton(dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", _csum(s_ip + d_ip + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), seq & 0xFFFF, 0, 64, 6, 0, s_ip, d_ip)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return ip + tcp


def flood_main(dst: str, dport: str) -> None:
    """FLOOD_SYNS spoofed SYNs at FLOOD_RATE per second (raw socket), then stop."""
    import random
    import socket
    rng = random.Random(7)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    t0 = time.time()
    for i in range(FLOOD_SYNS):
        src = f"{FLOOD_NET}.{1 + i % 250}"
        raw.sendto(_syn(src, dst, 1024 + rng.randrange(60000), int(dport), rng.randrange(1 << 32)), (dst, 0))
        time.sleep(max(0.0, t0 + (i + 1) / FLOOD_RATE - time.time()))
    log(sent=FLOOD_SYNS, rate=FLOOD_RATE, seconds=round(time.time() - t0, 3), sources=f"{FLOOD_NET}.1-250")


def legit_main(server: str, port: str) -> None:
    import socket
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 4)
    t0 = time.time()
    try:
        s.connect((server, int(port)))
    except OSError as e:
        log(connected=False, error=str(e), waited_s=round(time.time() - t0, 3))
        return
    took = time.time() - t0
    me = "%s:%d" % s.getsockname()[:2]
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = s.recv(4096)
    s.close()
    log(connected=True, client=me, connect_s=round(took, 4), status=int(data.split(b" ")[1]) if data else None)


def listener_main(addr: str, port: str) -> None:
    import socket
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, int(port)))
    srv.listen(FLOOD_BACKLOG)
    log(event="ready")
    while True:
        c, peer = srv.accept()
        c.recv(4096)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        c.close()
        log(event="served", peer="%s:%d" % peer)


def _nstat(lab: Lab) -> dict:
    out = lab.exec("s", ["nstat", "-asz", *NSTAT_KEYS], quiet=True).stdout
    return {ln.split()[0]: int(ln.split()[1]) for ln in out.splitlines() if ln.split() and ln.split()[0] in NSTAT_KEYS}


def record_syn_flood(out: Path) -> list[dict]:
    me = [sys.executable, str(Path(__file__).resolve())]
    entries = []
    for name, cookies in (("syn-flood", 0), ("syn-flood-cookies", 1)):
        with Lab(PREFIX, NET, [LinkSpec("c", "s", delay_ms=ONE_WAY_MS)]) as lab:
            lab.sysctl("s", f"net.ipv4.tcp_syncookies={cookies}", "net.ipv4.tcp_synack_retries=1",
                       "net.ipv4.tcp_max_syn_backlog=64")
            lab.sysctl("c", "net.ipv4.tcp_syn_linear_timeouts=0")
            lab.ip("s", "route", "add", f"{FLOOD_NET}.0/24", "via", lab.addr("c"))
            server = lab.popen("s", me + ["syn-listener", lab.addr("s"), "80"], ready="ready")
            before = _nstat(lab)
            with lab.capture("c", out / f"{name}.pcapng"):
                flood = subprocess.Popen(lab.argv("c", me + ["syn-flood", lab.addr("s"), "80"]), stdout=subprocess.PIPE,
                                         text=True)
                time.sleep(LEGIT_AT_S)
                legit = lab.run("c", me + ["syn-legit", lab.addr("s"), "80"], timeout=60)
                flood_log = lines(flood.communicate(timeout=30)[0])
                time.sleep(4.0 if cookies else 0.5)      # the half-open entries time out (1 SYN-ACK retry)
            after = _nstat(lab)
            server.terminate()
            server_log = lines(server.stdout.read())
        shutil.rmtree(lab.workdir, ignore_errors=True)
        got = lines(legit.stdout)[0]
        entries.append({
            "name": name, "file": f"{name}.pcapng",
            "title": f"A SYN flood ({FLOOD_SYNS} spoofed SYNs at {FLOOD_RATE}/s) at a listener with backlog "
                     f"{FLOOD_BACKLOG}, SYN cookies {'on' if cookies else 'off'}; a real client connects during it",
            "concepts": ["syn-flood", "tcp-handshake"] + (["syn-cookies"] if cookies else ["syn-retransmit"]),
            "look_at": ("Spoofed SYNs from 10.94.200.x (nobody's addresses: their SYN-ACKs go unanswered). "
                        + ("SYN cookies on: once the SYN queue is full the server answers every SYN with a cookie "
                           "SYN-ACK and keeps no state, so it never retransmits those, and the real client's SYN "
                           "is answered at once: its handshake takes one round trip."
                           if cookies else
                           f"SYN cookies off: the SYN queue ({FLOOD_BACKLOG} half-open connections) fills at once; "
                           "the server retransmits their SYN-ACKs and drops every other SYN, the real client's "
                           "too: it retransmits its SYN (1 s, then 2 s later) until a slot frees up.")),
            "recorded": recorded(name, "raw-socket SYN sender and a socket client (scenarios_lab.py syn-flood, "
                                       "syn-legit); bounded, inside the lab's namespaces only",
                                 f"a Python listener, listen({FLOOD_BACKLOG}); net.ipv4.tcp_syncookies={cookies}, "
                                 "tcp_synack_retries=1"),
            "keylog": None, "private_key": None,
            "facts": {"rtt_ms": 2 * ONE_WAY_MS, "syn_cookies": bool(cookies), "backlog": FLOOD_BACKLOG,
                      "flood": flood_log[0], "spoofed_net": f"{FLOOD_NET}.0/24", "legit": got,
                      "legit_started_after_s": LEGIT_AT_S,
                      "server_counters": {k: after.get(k, 0) - before.get(k, 0) for k in NSTAT_KEYS},
                      "server_log": server_log}})
    return entries


# ================================================================ TCP vs UDP on a lossy path

ECHO_MESSAGES, ECHO_SIZE, ECHO_GAP_S, LOSS = 100, 500, 0.01, 0.05


def echo_server_main(addr: str) -> None:
    import socket
    import threading

    def tcp():
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((addr, 7000))
        srv.listen(4)
        while True:
            c, _ = srv.accept()
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := c.recv(65536):
                c.sendall(data)
            c.close()

    def udp():
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((addr, 7001))
        while True:
            data, peer = u.recvfrom(65536)
            u.sendto(data, peer)

    threading.Thread(target=tcp, daemon=True).start()
    threading.Thread(target=udp, daemon=True).start()
    log(event="ready")
    threading.Event().wait()


def echo_client_main(server: str) -> None:
    """The same 100 numbered messages echoed over TCP, then over UDP; when each echo came back."""
    import socket
    import threading

    def message(i: int) -> bytes:
        return i.to_bytes(4, "big") + bytes([65 + i % 26]) * (ECHO_SIZE - 4)

    # TCP: a byte stream; the client reads the echoes back in whole messages.
    t = socket.create_connection((server, 7000))
    t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    me = "%s:%d" % t.getsockname()[:2]
    sent, back = {}, {}

    def reader():
        buf = b""
        while len(back) < ECHO_MESSAGES:
            data = t.recv(65536)
            if not data:
                return
            buf += data
            while len(buf) >= ECHO_SIZE:
                back[int.from_bytes(buf[:4], "big")] = time.time()
                buf = buf[ECHO_SIZE:]

    r = threading.Thread(target=reader)
    r.start()
    for i in range(ECHO_MESSAGES):
        sent[i] = time.time()
        t.sendall(message(i))
        time.sleep(ECHO_GAP_S)
    r.join(timeout=30)
    t.close()
    log(transport="tcp", client=me, server=f"{server}:7000", sent=ECHO_MESSAGES, echoed=len(back),
        rtt_ms=[round((back[i] - sent[i]) * 1000, 2) if i in back else None for i in range(ECHO_MESSAGES)])
    time.sleep(0.5)
    # UDP: datagrams; what is lost stays lost.
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect((server, 7001))
    me = "%s:%d" % u.getsockname()[:2]
    sent, back = {}, {}
    u.settimeout(0.001)
    order = []
    for i in range(ECHO_MESSAGES):
        sent[i] = time.time()
        u.send(message(i))
        end = time.time() + ECHO_GAP_S
        while time.time() < end:
            try:
                data = u.recv(65536)
                n = int.from_bytes(data[:4], "big")
                back[n] = time.time()
                order.append(n)
            except (TimeoutError, socket.timeout):
                pass
    u.settimeout(0.5)
    try:
        while True:
            data = u.recv(65536)
            n = int.from_bytes(data[:4], "big")
            back[n] = time.time()
            order.append(n)
    except (TimeoutError, socket.timeout):
        pass
    log(transport="udp", client=me, server=f"{server}:7001", sent=ECHO_MESSAGES, echoed=len(back),
        lost=[i for i in range(ECHO_MESSAGES) if i not in back], order=order,
        rtt_ms=[round((back[i] - sent[i]) * 1000, 2) if i in back else None for i in range(ECHO_MESSAGES)])


def record_tcp_vs_udp(out: Path) -> list[dict]:
    name = "tcp-vs-udp"
    (tcp, udp), _, stats = run_pair(out, name, ["echo-server"], ["echo-client"],
                                    LinkSpec("c", "s", delay_ms=ONE_WAY_MS, loss=LOSS, seed=17))
    return [{
        "name": name, "file": f"{name}.pcapng",
        "title": f"The same {ECHO_MESSAGES} messages echoed over TCP and over UDP on a path losing "
                 f"{LOSS:.0%} of frames each way",
        "concepts": ["tcp-vs-udp", "packet-loss", "retransmission", "head-of-line-blocking"],
        "look_at": f"{ECHO_MESSAGES} numbered {ECHO_SIZE}-byte messages, one every {ECHO_GAP_S * 1000:g} ms, each "
                   "echoed by the server. Over TCP every message comes back: lost segments are retransmitted "
                   "(after a round trip or a timeout), and the messages behind a lost one wait for it "
                   "(head-of-line blocking). Over UDP there is no connection, no ACK, no retransmission: the "
                   "datagrams lost either way simply never come back, and the rest arrive on time. Compare the "
                   "header overhead too: 20 bytes of IP plus 32 of TCP (with timestamps) and its ACKs, against "
                   "8 of UDP.",
        "recorded": recorded(name, "scenarios_lab.py echo-client (sockets; TCP_NODELAY)",
                             "scenarios_lab.py echo-server (TCP and UDP echo)", loss=LOSS, relay_seed=17),
        "keylog": None, "private_key": None,
        "facts": {"rtt_ms": 2 * ONE_WAY_MS, "loss": LOSS, "message_bytes": ECHO_SIZE, "tcp": tcp, "udp": udp,
                  "relay": stats}}]


# ================================================================ the scenarios

SCENARIOS = [
    Scenario("websocket-h1", "WebSocket over HTTP/1.1 (websockets library)", record_websocket, PROGRAMS),
    Scenario("journey-https", "DNS (dnsmasq) and the journey of an HTTPS request (curl, nginx)", record_journey,
             PROGRAMS + ("nginx", "dnsmasq", "curl", "openssl")),
    Scenario("grpc", "gRPC over h2c (grpcio both ends) and over TLS (grpcio server, h2 client)", record_grpc,
             PROGRAMS + ("openssl",)),
    Scenario("connection-pool", "A client pool, haproxy maxconn (queue, 503), a connection leak", record_pool,
             PROGRAMS + ("haproxy",)),
    Scenario("proxies", "A CONNECT tunnel (tinyproxy); layer 4 vs layer 7 (haproxy)", record_proxies,
             PROGRAMS + ("haproxy", "tinyproxy", "nginx", "curl", "openssl")),
    Scenario("syn-flood", "A bounded SYN flood, without and with SYN cookies", record_syn_flood,
             PROGRAMS + ("nstat",)),
    Scenario("tcp-vs-udp", "The same echo over TCP and UDP on a lossy path", record_tcp_vs_udp, PROGRAMS),
    Scenario("push-vs-poll", "SSE vs long polling vs short polling on one feed", record_feeds,
             PROGRAMS + ("curl",)),
    Scenario("http-caching", "HTTP caching: max-age, conditional requests, 304s (nginx)", record_caching,
             PROGRAMS + ("nginx",)),
    Scenario("websocket-h2", "WebSockets over HTTP/2, RFC 8441 (h2 library)", record_websocket_h2, PROGRAMS),
]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role")
    p.add_argument("args", nargs="*")
    a = p.parse_args(argv)
    if a.role == "ws-server":
        asyncio.run(ws_server_main(*a.args))
    elif a.role == "ws-client":
        asyncio.run(ws_client_main(*a.args))
    elif a.role == "grpc-server":
        grpc_server_main(*a.args)
    elif a.role == "grpc-client":
        grpc_client_main(*a.args)
    elif a.role == "grpc-tls-client":
        grpc_tls_client_main(*a.args)
    elif a.role == "slow-server":
        slow_server_main(*a.args)
    elif a.role == "pool-client":
        pool_client_main(*a.args)
    elif a.role == "syn-flood":
        flood_main(*a.args)
    elif a.role == "syn-legit":
        legit_main(*a.args)
    elif a.role == "syn-listener":
        listener_main(*a.args)
    elif a.role == "echo-server":
        echo_server_main(*a.args)
    elif a.role == "echo-client":
        echo_client_main(*a.args)
    elif a.role == "feed-server":
        asyncio.run(feed_server_main(*a.args))
    elif a.role == "feed-client":
        feed_client_main(*a.args)
    elif a.role == "cache-client":
        cache_client_main(*a.args)
    elif a.role == "ws-h2-server":
        ws_h2_server_main(*a.args)
    elif a.role == "ws-h2-client":
        ws_h2_client_main(*a.args)
    else:
        raise SystemExit(f"unknown role {a.role}")


if __name__ == "__main__":
    main()
