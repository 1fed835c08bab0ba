"""Scenario 7: one Chromium page load, seen five ways.

Debian's Chromium (driven by playwright, no browser download) in ``tvB-c``
loads a page of 15 resources from nginx 1.22 (HTTPS, HTTP/2) in ``tvB-s``
over a 50 ms RTT path.  The same load is recorded as a pcapng (dumpcap in
the client's namespace, keys embedded), the TLS key log, a HAR, a DevTools
trace and a NetLog.

    browser-page-load.pcapng / .keys / .har / .trace.json / .netlog.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "conf"))

from netlab import Lab, Scenario, inject_keys, tool_versions, version  # noqa: E402
from relay import LinkSpec  # noqa: E402
import servers_b  # noqa: E402
from certs_b import make_cert, spki_hash  # noqa: E402
from scenarios_h2 import write_site  # noqa: E402

NAME = "browser-page-load"
ONE_WAY_MS = 25.0
IMAGES = 12
COMMAND = "sudo python3 captures/record/record.py browser"


# ---------------------------------------------------------------- the page (pure)

def image_svg(i: int) -> bytes:
    hue = (i * 30) % 360
    pad = "".join(f'<circle cx="{(i * 7 + k * 13) % 200}" cy="{(k * 17) % 120}" r="{2 + k % 5}"/>'
                  for k in range(40))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="120">'
            f'<rect width="200" height="120" fill="hsl({hue},60%,60%)"/>'
            f'<g fill="white" opacity="0.5">{pad}</g>'
            f'<text x="100" y="70" font-size="40" text-anchor="middle">{i}</text></svg>').encode()


def page_files(images: int = IMAGES) -> dict[str, bytes]:
    """index.html + style.css + app.js + ``images`` SVGs: 3 + images resources."""
    imgs = "\n".join(f'<img src="img/{i:02d}.svg" alt="tile {i}">' for i in range(1, images + 1))
    html = ('<!doctype html><html><head><meta charset="utf-8"><title>traceviz page load</title>'
            '<link rel="icon" href="data:,"><link rel="stylesheet" href="style.css">'
            '<script src="app.js" defer></script></head><body><h1>traceviz page load</h1>\n'
            f'<p>A page of {images + 3} resources over HTTP/2.</p>\n{imgs}\n</body></html>\n')
    css = "body{font-family:sans-serif;margin:2em}img{width:200px;height:120px;margin:4px}\n" * 20
    js = ("document.addEventListener('DOMContentLoaded',()=>{document.title+=' (ready)';});\n"
          + "// padding so the script spans a few TCP segments\n" * 60)
    files = {"/page/index.html": html.encode(), "/page/style.css": css.encode(),
             "/page/app.js": js.encode()}
    for i in range(1, images + 1):
        files[f"/page/img/{i:02d}.svg"] = image_svg(i)
    return files


def trim_trace(doc: dict | list) -> tuple[dict | list, int]:
    """Drop Chromium's own WebUI renderers (headless Chromium loads chrome:// pages
    such as the omnibox popup, 10x the page's own events) and any event about a
    chrome:// URL.  Returns the trace and how many events were removed."""
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    webui = {e.get("pid") for e in events if e.get("name") == "process_name"
             and str(e.get("args", {}).get("name", "")).startswith("WebUI")}

    def keep(e: dict) -> bool:
        return e.get("pid") not in webui and "chrome://" not in json.dumps(e.get("args", {}))
    kept = [e for e in events if keep(e)]
    removed = len(events) - len(kept)
    if isinstance(doc, dict):
        return dict(doc, traceEvents=kept), removed
    return kept, removed


def summarize(result: dict, access: list[str]) -> dict:
    """Manifest facts from the browser's own report and nginx's access log."""
    perf = result["performance"]
    statuses: dict[str, int] = {}
    for r in result["responses"]:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    conns = sorted({line.split()[1] for line in access if len(line.split()) > 1})
    return dict(
        rtt_ms=2 * ONE_WAY_MS, requests=len(result["responses"]), statuses=statuses,
        urls=[r["url"] for r in result["responses"]],
        protocols=sorted({e["protocol"] for e in perf if e["protocol"]}),
        page_load_ms=round((result["loaded"] - result["started"]) * 1000, 1),
        server_connections=len(conns), server_connection_clients=conns,
        browser=result["browser"], nginx_access_log=access, performance=perf)


# ---------------------------------------------------------------- recording

def record(out: Path) -> list[dict]:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise SystemExit("browser: needs playwright from PyPI (pip install playwright); never run "
                         "`playwright install`: Debian's /usr/bin/chromium is used")
    files = {k: out / f"{NAME}{ext}" for k, ext in
             (("pcap", ".pcapng"), ("keys", ".keys"), ("har", ".har"),
              ("trace", ".trace.json"), ("netlog", ".netlog.json"))}
    for f in files.values():
        if f.exists():
            f.unlink()
    with Lab("tvB-", "10.88", [LinkSpec("c", "s", delay_ms=ONE_WAY_MS)]) as lab:
        work, ip = lab.workdir, lab.addr("s")
        prefix = servers_b.nginx_prefix(work, "nginx", "nginx_h2_b.conf", dict(LISTEN=ip))
        cert, _ = make_cert(prefix, ip)
        write_site(prefix / "site", page_files())
        servers_b.start_nginx(lab, "s", prefix, ip, 443)
        result = work / "browser.json"
        url = f"https://{ip}/page/index.html"
        with lab.capture("c", files["pcap"]):
            lab.run("c", [sys.executable, str(HERE / "conf" / "browser_b.py"), url,
                          spki_hash(cert.read_bytes()), str(files["keys"]), str(files["har"]),
                          str(files["trace"]), str(files["netlog"]), str(result)], timeout=180)
            time.sleep(0.3)
        access, _ = servers_b.log_lines(prefix / "access.log")
        inject_keys(files["pcap"], files["keys"])
        trace, trimmed = trim_trace(json.loads(files["trace"].read_text()))
        files["trace"].write_text(json.dumps(trace))
        for f in files.values():
            f.chmod(0o644)
        report = json.loads(result.read_text())
        software = dict(tool_versions(), nginx=version(["nginx", "-v"]),
                        chromium=report["browser"],
                        playwright=version([sys.executable, "-m", "playwright", "--version"]))
    servers_b.remove_workdir(lab)
    return [dict(
        name=NAME, file=files["pcap"].name,
        title="Chromium page load over HTTPS + HTTP/2: pcap, keys, HAR, DevTools trace, NetLog",
        concepts=["har", "devtools-trace", "netlog", "h2-multiplexing"],
        look_at=("One page, 15 resources, one HTTP/2 connection. Line the views up: the pcap "
                 "(decrypt with the keys) shows the TCP and TLS handshakes and the streams; the HAR "
                 "has per-request timings (no _connection field, no blocked time from playwright); "
                 "the DevTools trace's ResourceSendRequest/ResourceReceiveResponse events carry "
                 "connectionId; the NetLog shows the socket and HTTP/2 session events."),
        recorded=dict(command=COMMAND, software=software, one_way_delay_ms=ONE_WAY_MS, loss=0.0,
                      capture_point=f"client namespace tvB-c, dumpcap on {lab.iface('c')}",
                      trace_trimmed=f"{trimmed} events of Chromium's own WebUI renderers and "
                                    "chrome:// URLs removed after recording (trim_trace)",
                      browser_flags="see captures/record/conf/browser_b.py chromium_args()",
                      server="nginx, config captures/record/conf/nginx_h2_b.conf (unthrottled /page/)",
                      date=time.strftime("%Y-%m-%d", time.gmtime())),
        keylog=files["keys"].name,
        extra_files=dict(har=files["har"].name, devtools_trace=files["trace"].name,
                         netlog=files["netlog"].name),
        facts=summarize(report, access))]


SCENARIOS = [Scenario("browser", "Chromium page load: pcap + keys + HAR + DevTools trace + NetLog",
                      record, requires=("ip", "ethtool", "dumpcap", "editcap", "tshark", "nginx",
                                        "chromium"))]
