"""How fast traceviz loads a big capture, side by side with tshark, dpkt and scapy.

    python bench/bench_load.py [--packets 1000000] [--no-tshark] [--scaling]

Generates (or reuses, under /tmp) a realistic capture with ``gen_capture.py``,
then runs each contender in its own subprocess and reports wall time, CPU
time, packets per second and the process's peak RSS (``os.wait4``):

- ``traceviz.load``          the whole pipeline to packets + connections tables
- ``read+index``             sources.reader + decode.index (the index tier alone)
- ``read+index+tcp``         plus the transport tier and its tables (packets/connections/events)
- ``tshark -T fields``       the same per-packet fields, written to /dev/null
- ``dpkt loop``              a plain dpkt parse of the same fields
- ``scapy (slice)``          scapy on the first 50k packets, extrapolated

CPU time is reported because the machine may be shared: it is what the work
costs, wall time is what it took.  ``--scaling`` also times read+index+tcp at
a quarter, half and all of the packets to show the cost is linear.
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
    return {"packets": len(tl.packets), "connections": len(tl.connections),
            "import_s": round(imported - t, 3), **stages}


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


def capture(packets: int) -> str:
    """The cached capture of ``packets`` packets, generated on first use.

    Generated in a subprocess, like every import of numpy or traceviz here:
    a child process inherits its parent's peak RSS on Linux, so the harness
    itself must stay small for the children's figures to mean anything.
    """
    path = Path(f"/tmp/traceviz-bench-{packets}.pcap")
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr)
        tmp = path.with_suffix(".part")
        subprocess.run([sys.executable, str(HERE / "gen_capture.py"), str(tmp), "--packets", str(packets)],
                       check=True, stdout=sys.stderr)
        tmp.rename(path)
    return str(path)


def loader_available() -> bool:
    ok = subprocess.run([sys.executable, "-c", "from traceviz.loader import load"], cwd=ROOT,
                        env=worker_env(), capture_output=True)
    return ok.returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--no-tshark", action="store_true", help="skip tshark (slow)")
    ap.add_argument("--no-dpkt", action="store_true")
    ap.add_argument("--no-scapy", action="store_true")
    ap.add_argument("--scaling", action="store_true", help="also time read+index+tcp at 1/4 and 1/2 the packets")
    ap.add_argument("--worker", nargs=2, metavar=("NAME", "PATH"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        name, path = a.worker
        print(json.dumps(WORKERS[name](path)))
        return

    path = capture(a.packets)
    compile_traceviz()
    size_mb = os.path.getsize(path) / 1e6
    print(f"{path}: {a.packets} packets, {size_mb:.0f} MB")
    results: dict[str, dict] = {}
    names = (["traceviz.load"] if loader_available() else []) + ["read+index", "read+index+tcp"]
    for name in names:
        results[name] = run(worker_cmd(name, path))
    if not a.no_tshark and shutil.which("tshark"):
        cmd = ["tshark", "-r", path, "-n", "-T", "fields"] + [x for f in TSHARK_FIELDS for x in ("-e", f)]
        with open(os.devnull, "wb") as null:
            res = run(cmd, stdout=null)
        res["packets"] = a.packets
        results["tshark -T fields"] = res
    if not a.no_dpkt:
        results["dpkt loop"] = run(worker_cmd("dpkt loop", path))
    if not a.no_scapy:
        res = run(worker_cmd("scapy (slice)", path))
        res["extrapolated"] = True
        results["scapy (slice)"] = res
    report(results, a.packets)
    if a.scaling:
        scaling(a.packets)


def report(results: dict[str, dict], packets: int) -> None:
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
        notes = []
        if r.get("extrapolated"):
            notes.append(f"{n} packets, extrapolated: ~{packets / rate:.0f} s for all")
        notes += [f"{k}={v}" for k, v in r.items() if k.endswith("_s") and k not in ("wall_s", "cpu_s")]
        if "connections" in r:
            notes.append(f"connections={r['connections']}")
        print(f"{name:<22}{n:>10}{r['wall_s']:>9.2f}{r['cpu_s']:>8.2f}{rate:>12,.0f}{r['rss_mb']:>13,.0f}"
              f"{vs:>11}  {' '.join(notes)}")


def scaling(packets: int) -> None:
    print("\nscaling (read+index+tcp):")
    for n in (packets // 4, packets // 2, packets):
        r = run(worker_cmd("read+index+tcp", capture(n)))
        print(f"  {n:>9} packets: wall {r['wall_s']:.2f} s, cpu {r['cpu_s']:.2f} s, "
              f"{n / r['cpu_s']:,.0f} packets per cpu-second, peak RSS {r['rss_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
