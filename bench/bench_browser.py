"""How fast and how lean is reading a large HAR / DevTools log?

    python bench/bench_browser.py [ENTRIES] [BODY_BYTES]

Writes a synthetic HAR (default 6000 entries with 4 kB bodies, ~36 MB) to a
temporary folder, then times ``load_browser`` on it and reports the growth of
the process's peak resident memory during the load, next to the file size.
Also times the waterfall figure for those requests.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import subprocess
from pathlib import Path

from traceviz.charts.waterfall import waterfall
from traceviz.assemble.browser import load_browser


def synthetic_har(n: int, body: int) -> dict:
    entries = []
    for i in range(n):
        host = f"cdn{i % 11}.example"
        entries.append({
            "startedDateTime": f"2024-05-01T10:{(i // 600) % 60:02d}:{(i // 10) % 60:02d}.{i % 1000:03d}Z",
            "time": 50 + i % 300, "connection": str(1000 + i % 40), "serverIPAddress": f"10.0.{i % 11}.1",
            "request": {"method": "GET", "url": f"https://{host}/asset/{i}.js", "httpVersion": "h2",
                        "headers": [{"name": "accept", "value": "*/*"}] * 12, "headersSize": 400, "bodySize": 0},
            "response": {"status": 200, "httpVersion": "h2", "headers": [{"name": "x", "value": "y" * 40}] * 15,
                         "headersSize": 600, "bodySize": body,
                         "content": {"size": body, "mimeType": "application/javascript", "text": "z" * body}},
            "timings": {"blocked": 1, "dns": -1, "connect": -1, "ssl": -1, "send": 1,
                        "wait": 40 + i % 300, "receive": 8},
            "_resourceType": "script",
        })
    return {"log": {"version": "1.2", "creator": {"name": "bench"}, "pages": [], "entries": entries}}


CHILD = """
import sys, time
from traceviz.assemble.browser import load_browser
def hwm():  # this process's own peak RSS in kB (ru_maxrss can carry the parent's over exec)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
base = hwm()
t = time.perf_counter()
tl = load_browser(sys.argv[1])
took = time.perf_counter() - t
print(took, base, hwm(), len(tl.requests))
"""


def measure(path: str) -> tuple[float, int, int, int]:
    """Load in a fresh process so the peak resident size is the load's own (Linux VmHWM, kB)."""
    out = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True, check=True)
    took, base, peak, n = out.stdout.split()
    return float(took), int(base) * 1024, int(peak) * 1024, int(n)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    body = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.har"
        text = json.dumps(synthetic_har(n, body))
        path.write_text(text)
        del text
        size = path.stat().st_size
        took, base, peak, count = measure(str(path))
        print(f"HAR {size / 1e6:.1f} MB, {n} entries: load_browser {took:.2f} s ({size / 1e6 / took:.0f} MB/s); "
              f"peak RSS {peak / 1e6:.0f} MB, {(peak - base) / 1e6:.0f} MB above the imports "
              f"({(peak - base) / size:.1f}x the file); {count} requests")
        tl = load_browser(path)
        t = time.perf_counter()
        waterfall(tl.requests)
        print(f"waterfall figure for {len(tl.requests)} requests: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
