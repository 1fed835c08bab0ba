"""How fast is reading a large qlog or Chrome NetLog?

    python bench/bench_qlog.py [COPIES]

Builds, in a temporary folder, a qlog made of COPIES (default 400) of the
bundled ``quic-h3`` client trace's events, one after the other on one
connection (stream ids and times shifted, so each copy adds 13 requests), the
same events as JSON-SEQ, and a NetLog made of COPIES/4 copies of the bundled
browser NetLog's events (source ids and times shifted).  Each is loaded with
``traceviz.load`` in a fresh process; wall and CPU time (the machine may be
shared: CPU time is what the work costs), events per CPU second and the
growth of peak resident memory are reported next to the file size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"

CHILD = """
import sys, time
import traceviz
import traceviz.assemble.qlog, traceviz.assemble.netlog   # the imports (pandas) are not the load
def hwm():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
base = hwm()
t, cpu = time.perf_counter(), time.process_time()
tl = traceviz.load(sys.argv[1])
took, cpu = time.perf_counter() - t, time.process_time() - cpu
read = tl.source.detail.get("events_read") or tl.source.detail.get("netlog_events")
print(took, cpu, base, hwm(), read, len(tl.requests))
"""


def big_qlog(copies: int) -> dict:
    doc = json.loads(next((CAPTURES / "quic-h3.qlog" / "client").glob("*.qlog")).read_text())
    events = doc["traces"][0]["events"]
    span = events[-1]["time"] - events[0]["time"] + 1.0
    out = []
    for k in range(copies):
        for e in events:
            e = json.loads(json.dumps(e))
            e["time"] += k * span
            d = e.get("data", {})
            if isinstance(d.get("stream_id"), int) and d["stream_id"] % 4 == 0:
                d["stream_id"] += k * 52
            for f in d.get("frames", []):
                if isinstance(f.get("stream_id"), int) and f["stream_id"] % 4 == 0:
                    f["stream_id"] += k * 52
            out.append(e)
    doc["traces"][0]["events"] = out
    return doc


def big_netlog(copies: int) -> dict:
    doc = json.loads((CAPTURES / "browser-page-load.netlog.json").read_text())
    events = doc["events"]
    top = max(e["source"]["id"] for e in events) + 1
    span = int(events[-1]["time"]) - int(events[0]["time"]) + 1
    out = []
    for k in range(copies):
        text = json.dumps(events)
        for e in json.loads(text):
            e["source"]["id"] += k * top
            e["time"] = str(int(e["time"]) + k * span)
            dep = (e.get("params") or {}).get("source_dependency")
            if isinstance(dep, dict):
                dep["id"] += k * top
            out.append(e)
    doc["events"] = out
    return doc


def measure(path: Path) -> tuple[float, float, int, int, int, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    took, cpu, base, peak, events, requests = out.stdout.split()
    return float(took), float(cpu), int(base) * 1024, int(peak) * 1024, int(events), int(requests)


def report(name: str, path: Path) -> None:
    size = path.stat().st_size
    took, cpu, base, peak, events, requests = measure(path)
    print(f"{name}: {size / 1e6:.1f} MB, {events} events in the file, {requests} requests: {took:.2f} s wall, "
          f"{cpu:.2f} s CPU ({events / cpu:,.0f} events/s); peak RSS {(peak - base) / 1e6:.0f} MB above the imports "
          f"({(peak - base) / size:.1f}x the file)")


def main() -> None:
    copies = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    with tempfile.TemporaryDirectory() as tmp:
        doc = big_qlog(copies)
        qlog = Path(tmp) / "big.qlog"
        qlog.write_text(json.dumps(doc))
        report("qlog JSON", qlog)
        trace = doc["traces"][0]
        header = {"qlog_version": "0.3", "qlog_format": "JSON-SEQ",
                  "trace": {k: v for k, v in trace.items() if k != "events"}}
        seq = Path(tmp) / "big.sqlog"
        with seq.open("w") as f:
            for record in [header, *trace["events"]]:
                f.write("\x1e" + json.dumps(record) + "\n")
        del doc, trace
        report("qlog JSON-SEQ", seq)
        netlog = Path(tmp) / "big.netlog.json"
        netlog.write_text(json.dumps(big_netlog(max(1, copies // 4))))
        report("NetLog", netlog)


if __name__ == "__main__":
    main()
