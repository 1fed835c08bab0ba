"""How fast traceviz loads a big capture, side by side with tshark (and dpkt, scapy).

    python bench/bench_load.py [--packets 1000000] [--runs 3] [--payloads real|zero|both]
                               [--no-tshark] [--scaling] [--out-of-order]

Two captures from ``gen_capture.py``, each cached under /tmp: one whose
payloads look like real traffic (``--payloads real``: TLS handshakes and
records, HTTP/1.1, h2c, opaque bytes, retransmissions, reordering; see
``traffic.py``) and one with zero-byte payloads (only the index and TCP tiers
work).  Each contender runs in its own process, ``--runs`` times; the table
shows the median wall time, CPU time (children included), packets per second
and the process's peak RSS (``os.wait4``: the largest of the process and the
workers it forked, which share most of their pages):

- ``traceviz.load``          the whole pipeline to every table
- ``traceviz connections``   the commands as a user runs them (``--json`` to /dev/null)
- ``traceviz tls``
- ``traceviz requests``
- ``read+index+tcp``         the index and TCP tiers alone
- ``tshark -T fields``       the same per-packet fields, plus TLS SNI/version and HTTP method/URI/status
- ``dpkt loop``, ``scapy (slice)``  (``--dpkt``, ``--scapy``)

``--scaling`` times ``traceviz.load`` at a quarter, half, all and twice the
packets; ``--out-of-order`` reassembles 2M tiny segments that arrive in
reverse order (and loads a capture of them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

TSHARK_FIELDS = ["frame.number", "frame.time_epoch", "frame.len", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
                 "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "tcp.flags", "tcp.seq",
                 "tcp.ack", "tcp.window_size", "tcp.len", "tcp.stream"]
# What the tls, requests and quic tables say of a session, an exchange or a QUIC connection, as
# tshark names it (it decrypts QUIC Initial packets by itself, as we do).
TSHARK_PAYLOAD_FIELDS = ["tls.handshake.type", "tls.handshake.extensions_server_name",
                         "tls.handshake.extensions.supported_version", "http.request.method", "http.request.uri",
                         "http.response.code", "quic.version"]
SCAPY_SLICE = 50_000


# --- workers: each runs in its own process and prints one JSON line ----------

def work_traceviz_load(path: str) -> dict:
    """The whole thing, with where the time went: import, then each stage ``load`` reports."""
    t = time.perf_counter()
    import traceviz
    imported = time.perf_counter()
    marks: list[tuple[str, float]] = []
    tl = traceviz.load(path, progress=lambda stage: marks.append((stage, time.perf_counter())))
    done = time.perf_counter()
    stages = {f"{name}_s": round(end - start, 3)
              for (name, start), end in zip(marks, [m[1] for m in marks[1:]] + [done])}
    return {"packets": len(tl.packets), "connections": len(tl.connections), "tls": len(tl.tls),
            "requests": len(tl.requests), "import_s": round(imported - t, 3), **stages}


def work_read_index(path: str) -> dict:
    from traceviz import _tuning
    from traceviz.decode.index import index_frames
    from traceviz.sources.reader import read_capture
    with _tuning.loading(os.path.getsize(path)):
        t = time.perf_counter()
        cap = read_capture(path)
        t1 = time.perf_counter()
        ix = index_frames(cap)
        t2 = time.perf_counter()
    return {"packets": len(ix), "read_s": round(t1 - t, 3), "index_s": round(t2 - t1, 3)}


def work_read_index_tcp(path: str) -> dict:
    from traceviz import _tuning
    from traceviz.assemble.transport import tables
    from traceviz.decode.index import index_frames
    from traceviz.decode.tcp.connections import analyze
    from traceviz.sources.reader import read_capture
    with _tuning.loading(os.path.getsize(path)):
        t = time.perf_counter()
        ix = index_frames(read_capture(path))
        t1 = time.perf_counter()
        packets, connections, _events = tables(analyze(ix))
        t2 = time.perf_counter()
    return {"packets": len(packets), "connections": len(connections),
            "read_index_s": round(t1 - t, 3), "tcp_s": round(t2 - t1, 3)}


def work_dpkt(path: str) -> dict:
    import socket

    import dpkt
    rows = []
    with open(path, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP):
                src, dst = socket.inet_ntop(socket.AF_INET, ip.src), socket.inet_ntop(socket.AF_INET, ip.dst)
            elif isinstance(ip, dpkt.ip6.IP6):
                src, dst = socket.inet_ntop(socket.AF_INET6, ip.src), socket.inet_ntop(socket.AF_INET6, ip.dst)
            else:
                rows.append((ts, len(buf)))
                continue
            l4 = ip.data
            if isinstance(l4, dpkt.tcp.TCP):
                rows.append((ts, len(buf), src, dst, l4.sport, l4.dport, l4.flags, l4.seq, l4.ack, l4.win, len(l4.data)))
            elif isinstance(l4, dpkt.udp.UDP):
                rows.append((ts, len(buf), src, dst, l4.sport, l4.dport, l4.ulen))
            else:
                rows.append((ts, len(buf), src, dst))
    return {"packets": len(rows)}


def work_scapy(path: str) -> dict:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import PcapReader
    rows = []
    with PcapReader(path) as r:
        for i, p in enumerate(r):
            if i >= SCAPY_SLICE:
                break
            net = p[IP] if IP in p else (p[IPv6] if IPv6 in p else None)
            if net is None:
                rows.append((p.time,))
                continue
            if TCP in p:
                t = p[TCP]
                rows.append((p.time, net.src, net.dst, t.sport, t.dport, int(t.flags), t.seq, t.ack, t.window,
                             len(t.payload)))
            elif UDP in p:
                u = p[UDP]
                rows.append((p.time, net.src, net.dst, u.sport, u.dport, u.len))
    return {"packets": len(rows)}


WORKERS = {
    "traceviz.load": work_traceviz_load,
    "read+index": work_read_index,
    "read+index+tcp": work_read_index_tcp,
    "dpkt loop": work_dpkt,
    "scapy (slice)": work_scapy,
}


# --- the harness ---------------------------------------------------------------

# Workers import traceviz from compiled bytecode, as an installed package does (pip
# compiles it).  With PYTHONDONTWRITEBYTECODE set (as on the dev machine) every
# run would recompile ~25 modules, ~40 ms that no user pays; the cache goes to
# /tmp, never into the source tree.
PYCACHE = "/tmp/traceviz-bench-pycache"


def worker_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": PYCACHE}


def compile_traceviz() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "traceviz")], env=worker_env(),
                   stdout=subprocess.DEVNULL, check=False)


def run(cmd: list[str], stdout=subprocess.PIPE) -> dict:
    """Run ``cmd``; wall time, CPU time and peak RSS of that process alone."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT, env=worker_env())
    out = p.stdout.read() if stdout == subprocess.PIPE else b""
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    res = {"wall_s": time.perf_counter() - t, "cpu_s": usage.ru_utime + usage.ru_stime,
           "rss_mb": usage.ru_maxrss / 1024, "rc": p.returncode}
    if stdout == subprocess.PIPE and p.returncode == 0 and out.strip():
        res.update(json.loads(out.decode().strip().splitlines()[-1]))
    if p.returncode != 0:
        res["error"] = err.decode(errors="replace").strip().splitlines()[-1:] or ["failed"]
    return res


def worker_cmd(name: str, path: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", name, path]


def capture(packets: int, payloads: str = "zero") -> str:
    """The cached capture of ``packets`` packets, generated on first use.

    Generated in a subprocess, like every import of numpy or traceviz here:
    a child process inherits its parent's peak RSS on Linux, so the harness
    itself must stay small for the children's figures to mean anything.
    """
    # "real2": the traffic-like capture since its QUIC flows are real connections (a capture
    # cached by the generator before that is not taken for it).
    path = Path(f"/tmp/traceviz-bench-{'real2-' if payloads == 'real' else ''}{packets}.pcap")
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr)
        tmp = path.with_suffix(".part")
        subprocess.run([sys.executable, str(HERE / "gen_capture.py"), str(tmp), "--packets", str(packets),
                        "--payloads", payloads], check=True, stdout=sys.stderr)
        tmp.rename(path)
    return str(path)


def as_pcapng(path: str) -> str | None:
    """The same capture as pcapng (what Wireshark saves by default), made once with editcap;
    None without editcap."""
    out = Path(path).with_suffix(".pcapng")
    if not out.exists():
        if not shutil.which("editcap"):
            return None
        tmp = out.with_suffix(".part")
        subprocess.run(["editcap", "-F", "pcapng", path, str(tmp)], check=True)
        tmp.rename(out)
    return str(out)


def cli_cmd(command: str, path: str) -> list[str]:
    """A command as a user runs it: a fresh interpreter through the console script's entry
    (``python -m traceviz``: the same ``cli.entry``), the output to /dev/null."""
    return [sys.executable, "-m", "traceviz", command, path, "--json"]


def tshark_cmd(path: str, payload: bool) -> list[str]:
    fields = TSHARK_FIELDS + (TSHARK_PAYLOAD_FIELDS if payload else [])
    return ["tshark", "-r", path, "-n", "-T", "fields"] + [x for f in fields for x in ("-e", f)]


def median_run(cmd: list[str], runs: int, stdout=subprocess.PIPE) -> dict:
    """``run`` ``runs`` times: the median wall time's run, with every wall time kept."""
    results = []
    for _ in range(runs):
        if stdout is None:
            with open(os.devnull, "wb") as null:
                results.append(run(cmd, stdout=null))
        else:
            results.append(run(cmd, stdout=stdout))
    ok = [r for r in results if not r.get("rc")] or results
    ok.sort(key=lambda r: r["wall_s"])
    best = dict(ok[len(ok) // 2])
    best["walls"] = [round(r["wall_s"], 2) for r in results]
    best["rss_mb"] = max(r["rss_mb"] for r in ok)
    return best


def bench_capture(path: str, packets: int, a, payload: bool) -> dict[str, dict]:
    size_mb = os.path.getsize(path) / 1e6
    print(f"\n{path}: {packets} packets, {size_mb:.0f} MB, {'traffic-like' if payload else 'zero-byte'} payloads")
    results: dict[str, dict] = {}
    results["traceviz.load"] = median_run(worker_cmd("traceviz.load", path), a.runs)
    pcapng = as_pcapng(path) if payload else None
    if pcapng is not None:
        results["traceviz.load, pcapng"] = median_run(worker_cmd("traceviz.load", pcapng), a.runs)
    if payload:
        for command in ("connections", "tls", "requests"):
            results[f"traceviz {command}"] = median_run(cli_cmd(command, path), a.runs, stdout=None)
    results["read+index+tcp"] = median_run(worker_cmd("read+index+tcp", path), a.runs)
    if not a.no_tshark and shutil.which("tshark"):
        res = median_run(tshark_cmd(path, payload), a.tshark_runs, stdout=None)
        res["packets"] = packets
        results["tshark -T fields"] = res
    if a.dpkt:
        results["dpkt loop"] = median_run(worker_cmd("dpkt loop", path), 1)
    if a.scapy:
        res = median_run(worker_cmd("scapy (slice)", path), 1)
        res["extrapolated"] = True
        results["scapy (slice)"] = res
    report(results, packets, size_mb)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3, help="runs of each traceviz contender (the median is shown)")
    ap.add_argument("--tshark-runs", type=int, default=1)
    ap.add_argument("--payloads", choices=("real", "zero", "both"), default="both")
    ap.add_argument("--no-tshark", action="store_true", help="skip tshark (slow)")
    ap.add_argument("--dpkt", action="store_true")
    ap.add_argument("--scapy", action="store_true")
    ap.add_argument("--scaling", action="store_true", help="also time traceviz.load at 1/4, 1/2, 1 and 2x the packets")
    ap.add_argument("--out-of-order", action="store_true", help="also reassemble 2M tiny segments sent in reverse")
    ap.add_argument("--worker", nargs=2, metavar=("NAME", "PATH"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        name, path = a.worker
        print(json.dumps(WORKERS[name](path)))
        return
    compile_traceviz()
    kinds = ["real", "zero"] if a.payloads == "both" else [a.payloads]
    for kind in kinds:
        bench_capture(capture(a.packets, kind), a.packets, a, payload=kind == "real")
    if a.scaling:
        scaling(a.packets, a.runs)
    if a.out_of_order:
        out_of_order(a.runs)


def report(results: dict[str, dict], packets: int, size_mb: float) -> None:
    tshark = results.get("tshark -T fields")
    print(f"\n{'contender':<22}{'packets':>10}{'wall s':>9}{'cpu s':>8}{'packets/s':>12}{'peak RSS MB':>13}"
          f"{'vs tshark':>11}  notes")
    for name, r in results.items():
        if r.get("rc"):
            print(f"{name:<22}  failed: {r.get('error')}")
            continue
        n = r.get("packets", packets)
        rate = n / r["wall_s"]
        vs = f"{tshark['wall_s'] / r['wall_s'] * (n / packets if r.get('extrapolated') else 1):.1f}x" if tshark else "-"
        notes = [f"runs={r['walls']}"] if len(r.get("walls", [])) > 1 else []
        if r.get("extrapolated"):
            notes.append(f"{n} packets, extrapolated: ~{packets / rate:.0f} s for all")
        notes += [f"{k}={v}" for k, v in r.items() if k.endswith("_s") and k not in ("wall_s", "cpu_s")]
        for k in ("connections", "tls", "requests"):
            if k in r:
                notes.append(f"{k}={r[k]}")
        print(f"{name:<22}{n:>10}{r['wall_s']:>9.2f}{r['cpu_s']:>8.2f}{rate:>12,.0f}{r['rss_mb']:>13,.0f}"
              f"{vs:>11}  {' '.join(notes)}")
    print(f"(file {size_mb:.0f} MB; peak RSS includes the file's pages the process touched; "
          f"the target, the file + 300 MB, is {(size_mb + 300) * 1e6 / 2**20:,.0f} in these units, MiB)")


def scaling(packets: int, runs: int) -> None:
    print("\nscaling (traceviz.load, traffic-like payloads):")
    for n in (packets // 4, packets // 2, packets, packets * 2):
        r = median_run(worker_cmd("traceviz.load", capture(n, "real")), runs)
        print(f"  {n:>9} packets: wall {r['wall_s']:.2f} s, cpu {r['cpu_s']:.2f} s, "
              f"{n / r['wall_s']:,.0f} packets/s, {r['cpu_s'] / n * 1e6:.2f} cpu us per packet, "
              f"peak RSS {r['rss_mb']:,.0f} MB  (runs {r['walls']})")


OOO_SEGMENTS = 2_000_000


def work_out_of_order(path: str) -> dict:
    """Reassemble OOO_SEGMENTS 4-byte segments of one stream that arrive last-first."""
    import numpy as np

    from traceviz.decode.tcp.reassembly import reassemble_columns
    n, size = OOO_SEGMENTS, 4
    buf = np.random.default_rng(1).integers(0, 256, n * size, dtype=np.uint8).tobytes()
    frame = np.arange(1, n + 1)
    offset = (n - 1 - np.arange(n)) * size            # frame 1 carries the last bytes
    t = time.perf_counter()
    streams = reassemble_columns(np.zeros(n, np.int64), np.ones(n, bool), np.full(n, 0x10), offset + 1,
                                 np.full(n, size), frame, frame * 1e-6, offset, np.full(n, size), buf).streams(0)
    took = time.perf_counter() - t
    s = streams["c2s"]
    assert s.length == n * size and not s.gaps and s.data() == buf
    return {"packets": n, "reassembly_s": round(took, 3)}


WORKERS["out-of-order"] = work_out_of_order


def out_of_order(runs: int) -> None:
    r = median_run(worker_cmd("out-of-order", "-"), runs)
    print(f"\nout of order: {OOO_SEGMENTS:,} tiny segments in reverse, reassembled in {r['reassembly_s']} s "
          f"(process wall {r['wall_s']:.2f} s, cpu {r['cpu_s']:.2f} s, peak RSS {r['rss_mb']:,.0f} MB; "
          f"runs {r['walls']})")


if __name__ == "__main__":
    main()
