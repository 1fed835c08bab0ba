"""How fast and how lean is reading a large HAR / DevTools log?

    python bench/bench_browser.py [ENTRIES] [BODY_BYTES]

Writes a synthetic HAR (default 6000 entries with 4 kB bodies, ~52 MB) as Chrome
writes one (indented) (h2 pseudo-headers, client hints, cookies, script, style, image and
JSON bodies) to a temporary folder, then times ``traceviz.load`` on it and reports the growth of
the process's peak resident memory during the load, next to the file size.
Also times the waterfall figure for those requests.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import time
import subprocess
from pathlib import Path

from traceviz.charts.waterfall import waterfall
from traceviz.assemble.browser import load_browser


_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
_JS = 'function f(a){return a.x+"y"+\'z\'}\nvar s="hello";if(a){b("c","d")}\n'
_CSS = '.a{color:#333;font:12px "Helvetica Neue",sans-serif}\n'


def _body(i: int, size: int) -> tuple[str, str]:
    """(mime type, text) of about ``size`` characters: scripts and styles dense with quotes
    (escaped in JSON), images base64 (none), JSON between: what Chrome saves."""
    kind = i % 4
    if kind == 0:
        return "application/javascript", (_JS * (size // len(_JS) + 1))[:size]
    if kind == 1:
        return "text/css", (_CSS * (size // len(_CSS) + 1))[:size]
    if kind == 2:
        return "image/png", base64.b64encode(bytes((i * 7 + k) % 256 for k in range(size * 3 // 4))).decode()
    return "application/json", json.dumps([{"id": k, "name": f"item {k}"} for k in range(size // 25)])[:size]


def _headers(pairs: list[tuple[str, str]]) -> list[dict]:
    return [{"name": k, "value": v} for k, v in pairs]


def synthetic_har(n: int, body: int) -> dict:
    """Entries as Chrome exports them: h2 requests with pseudo-headers, HTTP/1.1 ones with a
    Host header, Chrome's client hints (quotes inside values), cookies, a query string, and
    bodies of several kinds."""
    entries = []
    for i in range(n):
        host = f"cdn{i % 11}.example"
        h2 = i % 3 != 0
        path = f"/asset/{i}.js?v={i % 97}"
        mime, text = _body(i, body)
        req_headers = ([(":authority", host), (":method", "GET"), (":path", path), (":scheme", "https")]
                       if h2 else [("Host", host), ("Connection", "keep-alive")])
        req_headers += [("accept", "*/*"), ("accept-encoding", "gzip, deflate, br"),
                        ("accept-language", "en-US,en;q=0.9"), ("referer", f"https://{host}/"),
                        ("sec-ch-ua", '"Not_A Brand";v="8", "Chromium";v="120"'), ("sec-ch-ua-mobile", "?0"),
                        ("sec-ch-ua-platform", '"Linux"'), ("sec-fetch-dest", "script"),
                        ("sec-fetch-mode", "no-cors"), ("sec-fetch-site", "same-origin"), ("user-agent", _UA),
                        ("cookie", f"session=abc{i % 13}; theme=dark")]
        resp_headers = [("cache-control", "public, max-age=31536000"), ("content-encoding", "br"),
                        ("content-type", mime), ("date", "Wed, 01 May 2024 10:00:00 GMT"),
                        ("etag", f'"{i:08x}"'), ("last-modified", "Tue, 30 Apr 2024 08:00:00 GMT"),
                        ("server", "nginx"), ("vary", "Accept-Encoding"), ("x-cache", "HIT"),
                        ("strict-transport-security", "max-age=63072000")]
        entries.append({
            "startedDateTime": f"2024-05-01T10:{(i // 600) % 60:02d}:{(i // 10) % 60:02d}.{i % 1000:03d}Z",
            "time": 50 + i % 300, "connection": str(1000 + i % 40), "serverIPAddress": f"10.0.{i % 11}.1",
            "request": {"method": "GET", "url": f"https://{host}{path}", "httpVersion": "h2" if h2 else "HTTP/1.1",
                        "headers": _headers(req_headers), "headersSize": -1 if h2 else 400, "bodySize": 0,
                        "cookies": [{"name": "session", "value": f"abc{i % 13}", "path": "/", "httpOnly": False}],
                        "queryString": [{"name": "v", "value": str(i % 97)}]},
            "response": {"status": 200, "statusText": "", "httpVersion": "h2" if h2 else "HTTP/1.1",
                         "headers": _headers(resp_headers), "cookies": [], "redirectURL": "",
                         "headersSize": -1 if h2 else 600, "bodySize": body, "_transferSize": body + 300,
                         "content": {"size": body, "mimeType": mime, "text": text}},
            "cache": {},
            "timings": {"blocked": 1.2, "dns": -1, "connect": -1, "ssl": -1, "send": 0.1,
                        "wait": 40 + i % 300, "receive": 8.5, "_blocked_queueing": 0.8},
            "_resourceType": "script", "_priority": "High", "_initiator": {"type": "parser"},
        })
    return {"log": {"version": "1.2", "creator": {"name": "WebInspector", "version": "537.36"},
                    "pages": [], "entries": entries}}


CHILD = """
import sys, time
import traceviz
import traceviz.assemble.browser, traceviz.loader  # the imports (pandas...) before the base: the load's own growth
def hwm():  # this process's own peak RSS in kB (ru_maxrss can carry the parent's over exec)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
base = hwm()
t = time.perf_counter()
tl = traceviz.load(sys.argv[1])
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
        text = json.dumps(synthetic_har(n, body), indent=2)      # indented, as Chrome saves a HAR
        path.write_text(text)
        del text
        size = path.stat().st_size
        took, base, peak, count = measure(str(path))
        print(f"HAR {size / 1e6:.1f} MB, {n} entries: traceviz.load {took:.2f} s ({size / 1e6 / took:.0f} MB/s); "
              f"peak RSS {peak / 1e6:.0f} MB, {(peak - base) / 1e6:.0f} MB above the imports "
              f"({(peak - base) / size:.1f}x the file); {count} requests")
        tl = load_browser(path)
        t = time.perf_counter()
        waterfall(tl.requests)
        print(f"waterfall figure for {len(tl.requests)} requests: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
