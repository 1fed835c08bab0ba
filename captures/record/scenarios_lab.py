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
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from netlab import Lab, Scenario, tool_versions, version  # noqa: E402
from relay import LinkSpec  # noqa: E402

PREFIX, NET = "tvL-", "10.94"
ONE_WAY_MS = 10.0
COMMAND = "sudo {python} captures/record/record.py {name}"
PROGRAMS = ("ip", "ping", "ethtool", "dumpcap", "editcap", "tshark", "ss")


def log(**fields) -> None:
    print(json.dumps(fields), flush=True)


def lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.strip().startswith("{")]


def recorded(name: str, client: str, server: str, python: str = "python3", **extra) -> dict:
    return {"command": COMMAND.format(python=python, name=name), "software": tool_versions(),
            "one_way_delay_ms": ONE_WAY_MS, "loss": 0.0,
            "capture_point": f"client namespace {PREFIX}c, dumpcap on {PREFIX}c0",
            "client": client, "server": server, "date": time.strftime("%Y-%m-%d"), **extra}


def wait_listening(lab: Lab, host: str, port: int, proto: str = "t", timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = lab.exec(host, ["ss", f"-l{proto}nH"], quiet=True).stdout
        if f":{port} " in out:
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} in {host}")


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
    me = [sys.executable, str(Path(__file__).resolve())]
    with Lab(PREFIX, NET, [LinkSpec("c", "s", delay_ms=ONE_WAY_MS)]) as lab:
        server = lab.popen("s", me + ["ws-server", lab.addr("s")], ready="ready")
        with lab.capture("c", out / f"{name}.pcapng"):
            done = lab.run("c", me + ["ws-client", lab.addr("s")])
            time.sleep(0.3)
        server.terminate()
        server_log = lines(server.stdout.read())
    shutil.rmtree(lab.workdir, ignore_errors=True)
    conns = lines(done.stdout)
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


# ================================================================ the scenarios

SCENARIOS = [
    Scenario("websocket-h1", "WebSocket over HTTP/1.1 (websockets library)", record_websocket, PROGRAMS),
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
    else:
        raise SystemExit(f"unknown role {a.role}")


if __name__ == "__main__":
    main()
