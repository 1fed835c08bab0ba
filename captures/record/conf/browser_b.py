"""Load one page in Debian's Chromium through playwright, recording every view of it.

    python3 browser_b.py URL SPKI KEYLOG HAR TRACE NETLOG RESULT.json

Writes the HAR (playwright's ``record_har_path``), a DevTools trace
(``browser.start_tracing``), a NetLog (``--log-net-log``), TLS keys
(``SSLKEYLOGFILE``) and RESULT: the browser's own account of the load
(responses seen by the page, ``performance`` resource entries).
Never downloads a browser: ``executable_path`` is Debian's chromium.
"""

from __future__ import annotations

import json
import os
import sys
import time

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"


def chromium_args(spki: str, netlog: str) -> list[str]:
    return [
        "--no-sandbox",                       # we run as root
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--no-default-browser-check", "--disable-quic",
        "--disable-features=OptimizationHints,MediaRouter,Translate",
        f"--ignore-certificate-errors-spki-list={spki}",
        f"--log-net-log={netlog}", "--net-log-capture-mode=Default",
    ]


def main(url: str, spki: str, keylog: str, har: str, trace: str, netlog: str, result: str) -> None:
    env = dict(os.environ, SSLKEYLOGFILE=keylog)
    responses = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=chromium_args(spki, netlog),
                                     env=env, headless=True)
        context = browser.new_context(record_har_path=har, record_har_content="omit",
                                      ignore_https_errors=False)
        page = context.new_page()
        page.on("response", lambda r: responses.append(
            dict(url=r.url, status=r.status, method=r.request.method)))
        browser.start_tracing(page=page, path=trace,
                              # the default set plus disabled-by-default-devtools.timeline is
                              # ~1.4 MB for this page; these keep the network events at ~0.3 MB
                              categories=["devtools.timeline", "loading", "blink.user_timing"])
        started = time.time()
        page.goto(url, wait_until="load")
        loaded = time.time()
        entries = page.evaluate(
            "performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
            ".map(e => ({name: e.name, protocol: e.nextHopProtocol, start: e.startTime,"
            " duration: e.duration, transferSize: e.transferSize}))")
        page.wait_for_timeout(500)
        browser.stop_tracing()
        context.close()          # writes the HAR
        version = browser.version
        browser.close()          # flushes the NetLog
    json.dump(dict(url=url, browser=version, started=started, loaded=loaded,
                   responses=responses, performance=entries), open(result, "w"), indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:8])
