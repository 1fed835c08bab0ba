"""How fast, and in how much memory, ``traceviz export`` writes a big capture as Parquet.

    python bench/bench_export.py [--packets 10000000] [--engines local,dask] [--keep] [--check]
    python bench/bench_export.py --capture /tmp/traceviz-bench-real-2000000.pcap   # real payloads

Generates (or reuses, under /tmp) a capture with ``gen_capture.py``, in
segments of a million packets appended one after the other (each segment
five minutes later than the one before), so the generator never holds more
than one segment: 10M packets make a file of about 7.9 GB.  Then, for each
engine, runs ``traceviz export FILE -o DIR --engine ENGINE`` as a user does,
in its own process, and reports:

- wall time and CPU time (the process and every process it started and
  waited for: the Dask workers too);
- peak RSS of the whole process tree, sampled every 0.1 s (the export
  process plus its Dask scheduler and worker processes, added up), and the
  largest single process's peak (``os.wait4``);
- the time ``traceviz sql`` takes to answer a few queries over the dataset.

``--check`` compares, on the same capture, the exported connections with
``traceviz.load`` of the whole file (only sensible where the file fits in
memory: a million packets).  The capture is deleted at the end unless
``--keep``; the datasets always are.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEGMENT = 1_000_000
QUERIES = {
    "connections by server": "select server, count(*) as n, sum(bytes_s2c) as bytes from connections "
                             "group by 1 order by 2 desc limit 5",
    "packets by transport": "select transport, count(*) as n, sum(wire_len) as bytes from packets group by 1",
    "slowest handshakes": "select conn, client, server, handshake_rtt from connections "
                          "where handshake_rtt is not null order by handshake_rtt desc limit 5",
}


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [e.get("PYTHONPATH")] if p])
    e.pop("TRACEVIZ_DEBUG", None)
    return e


def generate(path: Path, packets: int) -> None:
    """The capture, a segment at a time (gen_capture builds each in memory)."""
    code = f"""
import sys; sys.path.insert(0, {str(HERE)!r})
import numpy as np, gen_capture as g
out = open({str(path)!r}, "wb")
left, k = {packets}, 0
while left > 0:
    n = min(left, {SEGMENT})
    g.T0 = 1_700_000_000.0 + k * g.DURATION          # each segment after the one before
    p, v6 = g.plan(n, 1 + k)
    data = g.frames(p, v6, n, 1 + k)
    out.write(data if k == 0 else memoryview(data)[24:])   # one file header
    left, k = left - n, k + 1
    print(f"segment {{k}}: {{n}} packets", flush=True)
out.close()
"""
    subprocess.run([sys.executable, "-c", code], check=True, env=env())


def measure(argv: list[str]) -> dict:
    """Run ``argv``: wall and CPU time (with the processes it waited for), peak RSS of its process
    tree (sampled) and of its largest process (``os.wait4``)."""
    import psutil
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env(), stdout=out, stderr=err, text=True)
        peak = {"tree": 0}
        done = threading.Event()

        def sample():
            try:
                root = psutil.Process(proc.pid)
            except psutil.NoSuchProcess:
                return
            while not done.is_set():
                total = 0
                try:
                    for p in [root] + root.children(recursive=True):
                        try:
                            total += p.memory_info().rss
                        except psutil.NoSuchProcess:
                            pass
                except psutil.NoSuchProcess:
                    break
                peak["tree"] = max(peak["tree"], total)
                done.wait(0.1)

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        watcher.join()
        out.seek(0)
        err.seek(0)
        return {"code": proc.returncode, "stdout": out.read(), "stderr": err.read(), "wall_s": round(wall, 1),
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "tree_peak_mb": round(peak["tree"] / 2**20),
                "largest_process_mb": round(usage.ru_maxrss / 1024)}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from traceviz.cli import main; main()", *args]


def run_export(capture: Path, engine: str, partitions: int | None) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"traceviz-export-{engine}-", dir="/tmp")) / "ds"
    argv = cli("export", str(capture), "-o", str(out), "--engine", engine, "--json")
    if partitions:
        argv += ["--partitions", str(partitions)]
    r = measure(argv)
    if r["code"] != 0:
        raise SystemExit(f"export failed ({engine}): {r['stderr'][-2000:]}")
    r["facts"] = json.loads(r["stdout"])
    r["dataset_mb"] = round(sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20)
    r["sql"] = {}
    for name, q in QUERIES.items():
        t = time.perf_counter()
        p = subprocess.run(cli("sql", str(out), q, "--json"), env=env(), capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"sql failed: {p.stderr}")
        r["sql"][name] = {"s": round(time.perf_counter() - t, 2), "rows": json.loads(p.stdout)}
    r["out"] = out
    return r


def check(capture: Path, out: Path) -> list[str]:
    """Where the exported connections differ from traceviz.load of the whole file."""
    code = f"""
import json, traceviz
tl = traceviz.load({str(capture)!r})
ds = traceviz.open_dataset({str(out)!r})
a, b = tl.connections, ds.connections
bad = []
if len(a) != len(b):
    bad.append(f"connections: {{len(a)}} vs {{len(b)}}")
else:
    for c in ["conn", "transport", "stream", "client", "server", "first_frame", "last_frame", "packets",
              "bytes_c2s", "bytes_s2c", "syn", "synack", "ack", "handshake_rtt", "syn_retransmits", "close"]:
        x = a[c].astype(object).where(a[c].notna(), None).tolist()
        y = b[c].astype(object).where(b[c].notna(), None).tolist()
        if x != y:
            bad.append(c)
p, q = tl.packets, ds.packets
for c in ["frame", "conn", "stream", "dir", "seq", "ack"]:
    if p[c].astype(object).where(p[c].notna(), None).tolist() != q[c].astype(object).where(q[c].notna(), None).tolist():
        bad.append("packets." + c)
print(json.dumps(bad))
"""
    p = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=10_000_000)
    ap.add_argument("--engines", default="local,dask")
    ap.add_argument("--partitions", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the generated capture")
    ap.add_argument("--check", action="store_true", help="compare with traceviz.load (fits in memory only)")
    ap.add_argument("--capture", type=Path, default=None,
                    help="export this capture instead (kept), e.g. gen_capture.py --payloads real's, whose "
                         "TLS and HTTP the payload tier decodes in every partition")
    a = ap.parse_args()
    capture = a.capture or Path(f"/tmp/traceviz-bench-export-{a.packets}.pcap")
    a.keep = a.keep or a.capture is not None
    if not capture.exists():
        free = shutil.disk_usage("/tmp").free
        need = a.packets * 820 * 3          # the capture, the spool, the dataset (with room)
        if free < need:
            raise SystemExit(f"/tmp has {free / 1e9:.0f} GB free; {need / 1e9:.0f} GB wanted")
        t = time.perf_counter()
        generate(capture, a.packets)
        print(f"generated {capture} ({capture.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s")
    size = capture.stat().st_size
    results = {}
    try:
        for engine in a.engines.split(","):
            r = run_export(capture, engine, a.partitions)
            results[engine] = r
            print(json.dumps({k: v for k, v in r.items() if k not in ("stdout", "stderr", "out")}, default=str))
            if a.check:
                print("check:", check(capture, r["out"]) or "same connections and packets as traceviz.load")
            shutil.rmtree(r["out"].parent, ignore_errors=True)
    finally:
        if not a.keep:
            capture.unlink(missing_ok=True)
    frames = next(iter(results.values()))["facts"]["frames"] if results else a.packets
    print(f"\n{frames:,} packets, {size / 1e9:.2f} GB, {os.cpu_count()} cores\n")
    print("| engine | partitions | wall s | CPU s | packets/s (wall) | peak RSS, process tree MB | "
          "largest process MB | dataset MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for engine, r in results.items():
        f = r["facts"]
        print(f"| {engine} | {f['partitions']} | {r['wall_s']} | {r['cpu_s']} | {f['frames'] / r['wall_s']:,.0f} | "
              f"{r['tree_peak_mb']} | {r['largest_process_mb']} | {r['dataset_mb']} |")
    print("\n| query | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for q in QUERIES:
        print(f"| {q} | " + " | ".join(f"{r['sql'][q]['s']} s" for r in results.values()) + " |")


if __name__ == "__main__":
    main()
