"""``traceviz verify FILE``: tshark's second opinion on a capture.

Runs tshark (found through pyshark, the project's tshark binding) over the
same file and compares what both decoded: the TCP and UDP connections
(numbered as ``tcp.stream`` / ``udp.stream``, their endpoints, packets and
payload bytes; a QUIC connection counts as its UDP flow), each TLS handshake
over TCP (SNI, version, cipher, ALPN) and the HTTP requests over TCP of each connection (method and path; the status codes).  It prints
each difference on a line; exit 0 when they agree, 1 when they differ, 2 when
tshark is missing or the file is not a capture either can read.

tshark is read through ``-T fields`` rather than pyshark's per-packet
objects: the same dissection, a hundred times faster on a big capture.
"""

from __future__ import annotations

import json as jsonlib
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from traceviz import output
from traceviz.cli.common import FileArg, KeylogOpt, RsaOpt, app, guarded, load, rows_json
from traceviz.errors import InputError

# One value per field per packet, several joined by this (a byte no URI or name contains).
_JOIN = "\x1f"
FIELDS = (
    "frame.number", "tcp.stream", "udp.stream", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst",
    "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "tcp.len", "udp.length",
    "tls.handshake.type", "tls.handshake.extensions_server_name", "tls.handshake.ciphersuite",
    "tls.handshake.version", "tls.handshake.extensions.supported_version", "tls.handshake.extensions_alpn_str",
    "http.request.method", "http.request.uri", "http.response.code",
    "http2.headers.method", "http2.headers.path", "http2.headers.status", "tcp.analysis.retransmission",
)
TLS_VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}


@app.command()
def verify(file: FileArg, keylog: KeylogOpt = None, rsa_key: RsaOpt = None,
           json: Annotated[Optional[str], typer.Option("--json", metavar="", show_default=False,
                                                       help="Print the differences as a JSON array.")] = None,
           tshark: Annotated[Optional[str], typer.Option(help="The tshark to ask (default: the one pyshark finds).",
                                                         show_default=False)] = None) -> None:
    """Compare what traceviz and tshark decode in a capture: connections, TLS, requests. Exit 1 when they differ."""
    with guarded():
        json = rows_json(json)
        binary = _tshark(tshark)
        tl = load(file, keylog, None if rsa_key is None else rsa_key)
        if not len(tl.packets):
            raise InputError(tl.source.path, "not a packet capture: verify compares captures with tshark")
        theirs = read_tshark(binary, tl.source.path, keylog)
        found = compare(tl, theirs)
        if json:
            output.print_json([{"table": t, "what": w, "traceviz": a, "tshark": b} for t, w, a, b in found["differences"]])
        else:
            _report(tl.source.path, found, binary)
        if found["differences"]:
            raise typer.Exit(1)


def _tshark(given: str | None) -> str:
    if given:
        path = shutil.which(given)
    else:
        try:
            from pyshark.tshark.tshark import get_process_path
            path = get_process_path()
        except Exception:          # noqa: BLE001 - pyshark missing or finds none: look on PATH
            path = shutil.which("tshark")
    if not path or not Path(path).exists():
        raise InputError(given or "tshark", "tshark not found: install Wireshark's tshark to verify against it")
    return path


def read_tshark(binary: str, path: str, keylog=None) -> dict:
    """What tshark decodes in ``path``: connections, TLS handshakes and requests by stream.

    A response whose body runs until the connection closes never completes in
    tshark's reassembly inside TLS, so it shows no status; for a connection
    with fewer statuses than requests, tshark is asked again without body
    reassembly (which finds every head there, though it would lose heads that
    start mid-segment elsewhere) and that answer is taken when it is whole.
    """
    found = _tshark_fields(binary, path, keylog)
    short = [s for s, reqs in found["requests"].items()
             if sum(found["statuses"].get(s, Counter()).values()) < sum(reqs.values())]
    if short:
        heads = _tshark_fields(binary, path, keylog, ["-o", "http.desegment_body:FALSE"])
        for s in short:
            again = heads["statuses"].get(s, Counter())
            if sum(again.values()) == sum(found["requests"][s].values()):
                found["statuses"][s] = again
    return found


def _tshark_fields(binary: str, path: str, keylog=None, options=()) -> dict:
    cmd = [binary, "-n", "-r", path, *options, "-T", "fields", "-E", f"aggregator={_JOIN}", "-E", "occurrence=a"]
    if keylog is not None:
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    for f in FIELDS:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0 and not proc.stdout:
        raise InputError(path, f"tshark cannot read it: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'failed'}")
    conns: dict[tuple, dict] = {}
    tls: dict[int, dict] = {}
    requests: dict[int, Counter] = defaultdict(Counter)
    statuses: dict[int, Counter] = defaultdict(Counter)
    for line in proc.stdout.splitlines():
        v = dict(zip(FIELDS, line.split("\t")))
        first = {k: x.split(_JOIN)[0] for k, x in v.items()}
        src = first["ip.src"] or first["ipv6.src"]
        dst = first["ip.dst"] or first["ipv6.dst"]
        for proto in ("tcp", "udp"):
            stream = first[f"{proto}.stream"]
            if not stream:
                continue
            key = (proto, int(stream))
            c = conns.setdefault(key, {"endpoints": set(), "packets": 0, "bytes": 0, "first_frame": int(first["frame.number"])})
            c["endpoints"] |= {_endpoint(src, first[f"{proto}.srcport"]), _endpoint(dst, first[f"{proto}.dstport"])}
            c["packets"] += 1
            if proto == "tcp" and first["tcp.len"]:
                c["bytes"] += int(first["tcp.len"])
            if proto == "udp" and first["udp.length"]:
                c["bytes"] += max(0, int(first["udp.length"]) - 8)
            break
        stream = first["tcp.stream"]
        if not stream:
            continue
        stream = int(stream)
        _tls(tls, stream, v)
        if first["tcp.analysis.retransmission"]:
            continue          # tshark dissects a retransmitted message again; it is one message
        methods = _values(v["http.request.method"]) + _values(v["http2.headers.method"])
        paths = _values(v["http.request.uri"]) + _values(v["http2.headers.path"])
        for method, target in zip(methods, paths):
            requests[stream][(method, target)] += 1
        for code in _values(v["http.response.code"]) + _values(v["http2.headers.status"]):
            # 1xx are interim answers (a request's status is its final one); tshark writes 0
            # for a status line whose code is no number, which is no status at all.
            if not code.startswith("1") and code != "0":
                statuses[stream][code] += 1
    return {"connections": conns, "tls": tls, "requests": dict(requests), "statuses": dict(statuses)}


def _values(field: str) -> list[str]:
    return [x for x in field.split(_JOIN) if x] if field else []


def _endpoint(addr: str, port: str) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _tls(tls: dict, stream: int, v: dict) -> None:
    types = _values(v["tls.handshake.type"])
    if "1" not in types and "2" not in types:
        return
    t = tls.setdefault(stream, {"sni": None, "version": None, "cipher": None, "alpn": None, "hello": False})
    if "1" in types and not t["hello"]:
        t["hello"] = True
        names = _values(v["tls.handshake.extensions_server_name"])
        t["sni"] = names[0] if names else None
    if "2" in types and t["cipher"] is None:
        # A ServerHello's cipher, version (supported_versions wins) and ALPN; the fields of a
        # packet holding both hellos list the client's first, so take the last values.
        ciphers = _values(v["tls.handshake.ciphersuite"])
        t["cipher"] = int(ciphers[-1], 0) if ciphers else None
        chosen = _values(v["tls.handshake.extensions.supported_version"])
        legacy = _values(v["tls.handshake.version"])
        version = chosen[-1] if chosen and "1" not in types else (legacy[-1] if legacy else None)
        t["version"] = _version_name(int(version, 0)) if version else None
        alpn = _values(v["tls.handshake.extensions_alpn_str"])
        t["alpn"] = alpn[-1] if alpn and "1" not in types else (alpn[-1] if len(alpn) == 1 and "1" not in types else None)


def _version_name(v: int) -> str:
    if v >> 8 == 0x7F:                         # a TLS 1.3 draft: 0x7f17 is draft 23
        return f"TLS 1.3 draft {v & 0xFF}"
    return TLS_VERSIONS.get(v, f"0x{v:04x}")


def compare(tl, theirs: dict) -> dict:
    """``{"agree": {table: n}, "differences": [(table, what, ours, theirs)]}``."""
    from urllib.parse import urlsplit

    from traceviz.decode.tls.names import CIPHER_SUITES
    diffs: list[tuple] = []
    agree = Counter()
    ours_conns = {}
    tcp_conns = set()
    for r in tl.connections.itertuples(index=False):
        if r.transport not in ("tcp", "udp", "quic"):
            continue
        # a QUIC connection is a UDP flow to tshark's conversations (its udp.stream is ``stream``)
        key = ("tcp", int(r.conn)) if r.transport == "tcp" else ("udp", int(r.stream))
        if r.transport == "tcp":
            tcp_conns.add(int(r.conn))
        ours_conns[key] = {"endpoints": {r.client, r.server}, "packets": int(r.packets),
                           "bytes": int(_n(r.bytes_c2s) + _n(r.bytes_s2c)), "first_frame": int(r.first_frame)}
    for key in sorted(set(ours_conns) | set(theirs["connections"])):
        name = f"{key[0]}.stream {key[1]}"
        a, b = ours_conns.get(key), theirs["connections"].get(key)
        if a is None or b is None:
            diffs.append(("connections", name, _shown(a), _shown(b)))
            continue
        bad = [(f"{name} {k}", _shown(a[k]), _shown(b[k])) for k in ("endpoints", "packets", "bytes", "first_frame")
               if a[k] != b[k]]
        diffs += [("connections", *d) for d in bad]
        agree["connections"] += not bad
    names = {v: k for k, v in CIPHER_SUITES.items()}
    ours_tls = {int(r.conn): {"sni": _value(r.sni), "version": _value(r.version),
                              "cipher": names.get(_value(r.cipher), _value(r.cipher)), "alpn": _value(r.alpn)}
                for r in tl.tls.itertuples(index=False) if int(r.conn) in tcp_conns}   # TLS over TCP only:
    # QUIC's handshake is in CRYPTO frames that tshark opens only with keys (the quic table is ours alone)
    for stream in sorted(set(ours_tls) | set(theirs["tls"])):
        a, b = ours_tls.get(stream), theirs["tls"].get(stream)
        name = f"tls on tcp.stream {stream}"
        if a is None or b is None:
            diffs.append(("tls", name, _shown(a), _shown(b and {k: v for k, v in b.items() if k != "hello"})))
            continue
        bad = [(f"{name} {k}", _shown(a[k]), _shown(b[k])) for k in ("sni", "version", "cipher", "alpn")
               if not (a[k] == b[k] or (k == "cipher" and isinstance(a[k], str) and b[k] is not None
                                        and names.get(a[k]) == b[k]))]
        diffs += [("tls", *d) for d in bad]
        agree["tls"] += not bad
    ours_req: dict[int, Counter] = defaultdict(Counter)
    ours_status: dict[int, Counter] = defaultdict(Counter)
    for r in tl.requests.itertuples(index=False):
        if _missing(r.conn) or int(r.conn) not in tcp_conns:     # HTTP/3's requests: QUIC's, not compared
            continue
        parts = urlsplit(str(r.url)) if isinstance(r.url, str) else None
        target = (parts.path or "/") + (f"?{parts.query}" if parts and parts.query else "") if parts else None
        if isinstance(r.method, str) and r.method.upper() == "CONNECT" and parts is not None:
            target = parts.netloc
        ours_req[int(r.conn)][(r.method, target)] += 1
        if not _missing(r.status) and not 100 <= _n(r.status) < 200:
            ours_status[int(r.conn)][str(int(r.status))] += 1
    for stream in sorted(set(ours_req) | set(theirs["requests"])):
        a, b = ours_req.get(stream, Counter()), theirs["requests"].get(stream, Counter())
        if a != b:
            diffs.append(("requests", f"requests on tcp.stream {stream}", _shown(sorted(a.elements())),
                          _shown(sorted(b.elements()))))
        else:
            agree["requests"] += sum(a.values())
    for stream in sorted(set(ours_status) | set(theirs["statuses"])):
        a, b = ours_status.get(stream, Counter()), theirs["statuses"].get(stream, Counter())
        if a != b:
            diffs.append(("requests", f"status codes on tcp.stream {stream}", _shown(sorted(a.elements())),
                          _shown(sorted(b.elements()))))
    return {"agree": dict(agree), "differences": diffs}


def _value(v):
    """A table cell as a plain value: None for anything missing (NaN, NA) or empty."""
    return None if _missing(v) or v == "" else v


def _n(v) -> float:
    return 0 if _missing(v) else v


def _missing(v) -> bool:
    if v is None:
        return True
    try:
        return bool(v != v)    # NaN
    except TypeError:          # pandas NA refuses to be a bool
        return True


def _shown(v):
    if isinstance(v, set):
        return sorted(v)
    if isinstance(v, tuple):
        return list(v)
    return jsonlib.loads(jsonlib.dumps(v, default=str)) if v is not None else None


def _report(path: str, found: dict, binary: str) -> None:
    diffs = found["differences"]
    agree = found["agree"]
    out = output.stdout
    out.print(Text(f"{output.printable(path)}: traceviz and tshark ({binary})"))
    for table in ("connections", "tls", "requests"):
        mine = [d for d in diffs if d[0] == table]
        out.print(Text(f"  {table:12} {agree.get(table, 0)} agree" + (f", {len(mine)} differ" if mine else "")))
        for _, what, a, b in mine:
            out.print(Text(f"    {output.printable(what)}: traceviz {output.printable(a)}, tshark {output.printable(b)}"))
    out.print(Text("they agree" if not diffs else f"{len(diffs)} differences"))
