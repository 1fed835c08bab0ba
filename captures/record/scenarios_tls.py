"""Scenario 2: TLS 1.2 vs TLS 1.3, TLS 1.3 resumption with a PSK, TLS 1.2 with RSA key exchange.

Both ends are Python ``ssl`` (OpenSSL) in the two namespaces, carrying one
small HTTP/1.1 exchange per connection so a decrypted capture has requests to
count.  The client writes the NSS key log (``SSLContext.keylog_filename``);
the capture gets it beside it (``NAME.keys``) and embedded (a DSB).  The
certificate is generated at record time (self-signed, test only); the RSA
scenario ships its server key as ``tls12-rsa.key.pem`` on purpose: it is the
"leaked key" that decrypts the capture without any key log.

Roles inside the namespaces: ``python scenarios_tls.py server|client ...``.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from netlab import Lab, Scenario, inject_keys, tool_versions  # noqa: E402
from relay import LinkSpec  # noqa: E402
from scenarios_http1 import endpoint, get, log  # noqa: E402

ONE_WAY_MS = 12.5
PORT = 443
SNI = "lab.traceviz.test"
RSA_CIPHER = "AES128-GCM-SHA256"
RECORD_CMD = "sudo python captures/record/record.py {name}"
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


# ---------------------------------------------------------------- certificate

def make_cert(folder: Path, ip: str) -> tuple[Path, Path]:
    """A self-signed RSA-2048 certificate for SNI and ``ip`` (test only); returns (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SNI),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "traceviz lab (TEST ONLY)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(SNI),
                                                        x509.IPAddress(ipaddress.ip_address(ip))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def cipher_id(ctx: ssl.SSLContext, name: str) -> int | None:
    """The IANA number of an OpenSSL cipher name, from OpenSSL's own table."""
    for c in ctx.get_ciphers():
        if c["name"] == name:
            return c["id"] & 0xFFFF
    return None


# ---------------------------------------------------------------- server role

def serve(host: str, cert: str, key: str, max_version: str, ciphers: str | None) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = VERSIONS[max_version]
    if ciphers:
        ctx.set_ciphers(ciphers)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, PORT))
    s.listen(16)
    log(event="ready")
    while True:
        conn, peer = s.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=answer, args=(ctx, conn, peer), daemon=True).start()


def answer(ctx: ssl.SSLContext, raw: socket.socket, peer) -> None:
    try:
        conn = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError):
        raw.close()
        return
    log(client=endpoint(peer), version=conn.version(), cipher=conn.cipher()[0],
        resumed=conn.session_reused)
    f = conn.makefile("rb")
    while True:
        line = f.readline()
        if not line:
            break
        path = line.split()[1].decode() if len(line.split()) > 1 else "/"
        headers = list(iter(f.readline, b"\r\n"))
        close = any(h.lower().startswith(b"connection: close") for h in headers)
        body = f"hello from the lab, you asked for {path}\n".encode() * 8
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                     + f"Content-Length: {len(body)}\r\n".encode()
                     + (b"Connection: close\r\n" if close else b"") + b"\r\n" + body)
        if close:
            break
    f.close()
    # close_notify, then FIN at once, as nginx does: a blocking unwrap() would
    # wait for the client's close_notify and let the client's FIN go first.
    conn.setblocking(False)
    try:
        conn.unwrap()
    except (ssl.SSLError, OSError):
        pass
    conn.close()


# ---------------------------------------------------------------- client role

def client(me: str, server: str, cert: str, keylog: str, plan: list[dict]) -> None:
    """One connection per plan step: {"max_version": "1.2"|"1.3", "ciphers": str, "resume": bool}."""
    session, contexts = None, {}
    for step in plan:
        # A session can only be resumed from the context that made it: one per configuration.
        conf = (step.get("max_version", "1.3"), step.get("ciphers"))
        if conf not in contexts:
            contexts[conf] = client_context(cert, keylog, *conf)
        ctx = contexts[conf]
        raw = socket.socket()
        # As curl and browsers do: without it Nagle holds the request behind the
        # unacknowledged client Finished and TLS 1.3 looks like 2 round trips.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.bind((me, 0))
        t0 = time.monotonic()
        raw.connect((server, PORT))
        t_tcp = time.monotonic()
        me_ep = endpoint(raw.getsockname())      # wrap_socket detaches raw
        conn = ctx.wrap_socket(raw, server_hostname=SNI,
                               session=session if step.get("resume") else None)
        t_tls = time.monotonic()
        f = conn.makefile("rb")
        reqs = [get(conn, f, SNI, p, close=(i == len(step["paths"]) - 1))
                for i, p in enumerate(step["paths"])]
        f.read()     # until the server's close_notify / FIN
        session = conn.session      # TLS 1.3 tickets arrive after the handshake: read first
        name = conn.cipher()[0]
        log(client=me_ep, server=f"{server}:{PORT}", outcome="fin-server",
            tls={"version": conn.version(), "cipher": name, "cipher_id": cipher_id(ctx, name),
                 "resumed": conn.session_reused, "sni": SNI,
                 "handshake_s": round(t_tls - t_tcp, 4)},
            connect_s=round(t_tcp - t0, 4), requests=reqs)
        f.close()
        conn.close()
        time.sleep(step.get("pause_s", 0.3))


def client_context(cert: str, keylog: str, max_version: str, ciphers: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cert)
    ctx.keylog_filename = keylog
    ctx.maximum_version = VERSIONS[max_version]
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


# ---------------------------------------------------------------- recording

def record_plan(out: Path, name: str, plan: list[dict], max_version: str = "1.3",
                server_ciphers: str | None = None, ship_key: bool = False, embed: bool = True) -> list[dict]:
    me = [sys.executable, str(Path(__file__).resolve())]
    pcap, keys = out / f"{name}.pcapng", out / f"{name}.keys"
    with Lab("tvA-", "10.77", [LinkSpec("c", "s", delay_ms=ONE_WAY_MS)]) as lab:
        cert, key = make_cert(lab.workdir / "pki", lab.addr("s"))
        klog = lab.workdir / "client.keys"
        server = me + ["server", lab.addr("s"), str(cert), str(key), max_version]
        srv = lab.popen("s", server + ([server_ciphers] if server_ciphers else []), ready="ready")
        with lab.capture("c", pcap):
            done = lab.run("c", me + ["client", lab.addr("c"), lab.addr("s"), str(cert), str(klog),
                                      json.dumps(plan)])
        shutil.copyfile(klog, keys)
        os.chmod(keys, 0o644)
        if embed:
            inject_keys(pcap, keys)
        if ship_key:
            shutil.copyfile(key, out / f"{name}.key.pem")
            os.chmod(out / f"{name}.key.pem", 0o644)
    said = {}
    for line in srv.stdout.read().splitlines():     # the server has stopped: its log is complete
        if line.strip():
            rec = json.loads(line)
            said[rec.pop("client")] = rec
    conns = [json.loads(x) for x in done.stdout.splitlines() if x.strip()]
    for c in conns:
        c["tls"]["server_reported"] = said.get(c["client"])
    shutil.rmtree(lab.workdir, ignore_errors=True)
    return conns


def facts(conns: list[dict], **extra) -> dict:
    statuses: dict[str, int] = {}
    for c in conns:
        for r in c["requests"]:
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    return {
        "rtt_ms": 2 * ONE_WAY_MS,
        "connections": [{"transport": "tcp", "client": c["client"], "server": c["server"],
                         "outcome": c["outcome"], "syns": 1, "tls": c["tls"],
                         "requests": [{"method": r["method"], "path": r["path"], "status": r["status"]}
                                      for r in c["requests"]]} for c in conns],
        "requests": sum(len(c["requests"]) for c in conns),
        "statuses": statuses,
        **extra,
    }


def entry(name, title, concepts, look_at, conns, private_key=None, rec_extra=None, **fact_extra) -> dict:
    return {
        "name": name, "file": f"{name}.pcapng", "title": title, "concepts": concepts, "look_at": look_at,
        "recorded": {
            "command": RECORD_CMD.format(name=name),
            "software": {**tool_versions(), "openssl": ssl.OPENSSL_VERSION},
            "one_way_delay_ms": ONE_WAY_MS, "loss": 0.0,
            "capture_point": "client namespace interface (tvA-c0)",
            "client": "Python ssl (OpenSSL), keylog_filename, TCP_NODELAY; one HTTP/1.1 GET per connection",
            "server": "Python ssl (OpenSSL) HTTP/1.1 responder, self-signed test certificate",
            "keys": "client key log beside the capture and embedded as a pcapng DSB (editcap --inject-secrets)",
            **(rec_extra or {}),
        },
        "keylog": f"{name}.keys", "private_key": private_key,
        "facts": facts(conns, **fact_extra),
    }


def record_versions(out: Path) -> list[dict]:
    name = "tls12-vs-tls13"
    plan = [{"max_version": "1.2", "paths": ["/"]}, {"max_version": "1.3", "paths": ["/"]}]
    conns = record_plan(out, name, plan)
    return [entry(
        name, "TLS 1.2 vs TLS 1.3: the same request on the same 25 ms path",
        ["tls12", "tls13", "tcp-handshake"],
        "Both connections send the same GET to the same server. TLS 1.2 needs two round trips "
        "(ClientHello → ServerHello…ServerHelloDone, then ClientKeyExchange/Finished → Finished) before "
        "the request can go; TLS 1.3 needs one (ClientHello with a key share → ServerHello…Finished). "
        "Compare the time from ClientHello to the first application data.",
        conns, rec_extra={"client_versions": "connection 0: maximum TLS 1.2; connection 1: maximum TLS 1.3"})]


def record_resumption(out: Path) -> list[dict]:
    name = "tls13-resumption"
    plan = [{"max_version": "1.3", "paths": ["/"]}, {"max_version": "1.3", "paths": ["/"], "resume": True}]
    conns = record_plan(out, name, plan)
    return [entry(
        name, "TLS 1.3 session resumption: a ticket from the first connection reused as a PSK",
        ["tls13", "tls-resumption"],
        "The first connection is a full handshake; after it the server sends NewSessionTicket messages "
        "(visible after decryption). The second ClientHello carries a pre_shared_key extension with that "
        "ticket; the server accepts it, so no Certificate or CertificateVerify is sent.",
        conns)]


def record_rsa(out: Path) -> list[dict]:
    name = "tls12-rsa"
    plan = [{"max_version": "1.2", "ciphers": RSA_CIPHER, "paths": ["/"]}]
    # The key log is shipped beside but not embedded: with the DSB inside, the capture
    # would decrypt on its own and not show what the leaked RSA key alone exposes.
    conns = record_plan(out, name, plan, max_version="1.2", server_ciphers=RSA_CIPHER,
                        ship_key=True, embed=False)
    return [entry(
        name, f"TLS 1.2 with RSA key exchange ({RSA_CIPHER}) and the server's private key",
        ["tls12", "rsa-key-exchange"],
        "No forward secrecy: the client encrypts the premaster secret to the server's RSA key in "
        "ClientKeyExchange, so anyone holding tls12-rsa.key.pem can decrypt this capture, and every "
        "other one made with that key, without a key log.",
        conns, private_key=f"{name}.key.pem",
        rec_extra={"ciphers": f"client and server restricted to {RSA_CIPHER}, TLS 1.2 maximum",
                   "private_key": "the server's RSA-2048 test key, shipped on purpose",
                   "keys": "client key log beside the capture (tls12-rsa.keys), deliberately NOT embedded: "
                           "the private key alone decrypts it (Wireshark: RSA keys list)"})]


REQUIRES = ("ip", "ping", "ethtool", "dumpcap", "editcap", "tshark")
SCENARIOS = [
    Scenario("tls12-vs-tls13", "TLS 1.2 vs TLS 1.3 on the same path and request", record_versions, REQUIRES),
    Scenario("tls13-resumption", "TLS 1.3 resumption with a PSK ticket", record_resumption, REQUIRES),
    Scenario("tls12-rsa", "TLS 1.2 RSA key exchange, server key shipped", record_rsa, REQUIRES),
]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("server")
    for a in ("host", "cert", "key", "max_version"):
        s.add_argument(a)
    s.add_argument("ciphers", nargs="?")
    c = sub.add_parser("client")
    for a in ("me", "server", "cert", "keylog", "plan"):
        c.add_argument(a)
    args = p.parse_args(argv)
    if args.role == "server":
        serve(args.host, args.cert, args.key, args.max_version, args.ciphers)
    else:
        client(args.me, args.server, args.cert, args.keylog, json.loads(args.plan))


if __name__ == "__main__":
    main()
