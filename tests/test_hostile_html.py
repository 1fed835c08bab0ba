"""Strings from captures stay inert in every HTML output, in a real browser.

A capture and a HAR carry ``<script>``, ``onerror=`` and ``javascript:``
payloads in every string we show: URL, Host, header values, the status
text, the TLS SNI and ALPN, a certificate's names, HAR fields.  Every chart
of every recipe and the report are opened in headless Chromium, the mouse
is swept over each plot so that hover labels render, and the page must keep
its title, gain no script, handler or javascript: link, open no dialog and
never run a payload (each would set ``window.__pwned``).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import struct
from pathlib import Path

import pytest

from traceviz import cli
from tests.streamgen import write_conversations

# Debian's chromium (.ci/run installs it; BROWSER_PATH names it): playwright needs no browser download.
CHROMIUM = os.environ.get("BROWSER_PATH") or shutil.which("chromium") or "/usr/bin/chromium"

SCRIPT = "<script>window.__pwned=1;document.title='pwned'</script>"
IMG = "<img/src=x/onerror=window.__pwned=2>"
JS = "javascript:window.__pwned=3"
QUOTE = '"><svg/onload=window.__pwned=4>'


def _client_hello(sni: bytes, alpn: bytes) -> bytes:
    ext = struct.pack(">HH", 0, len(sni) + 5) + struct.pack(">HBH", len(sni) + 3, 0, len(sni)) + sni
    names = bytes([len(alpn)]) + alpn
    ext += struct.pack(">HHH", 16, len(names) + 2, len(names)) + names
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\xc0\x2f" + b"\x01\x00" + struct.pack(">H", len(ext)) + ext
    return _record(22, b"\x01" + len(body).to_bytes(3, "big") + body)


def _server_flight(cn: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, SCRIPT[:60])])
    now = datetime.datetime(2024, 1, 1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(IMG)]), critical=False)
            .sign(key, hashes.SHA256()).public_bytes(Encoding.DER))
    hello = b"\x03\x03" + b"\x22" * 32 + b"\x00" + b"\xc0\x2f" + b"\x00" + b"\x00\x00"
    certs = len(cert).to_bytes(3, "big") + cert
    certs = len(certs).to_bytes(3, "big") + certs
    msgs = b"\x02" + len(hello).to_bytes(3, "big") + hello + b"\x0b" + len(certs).to_bytes(3, "big") + certs
    return _record(22, msgs)


def _record(ctype: int, body: bytes) -> bytes:
    return bytes([ctype, 3, 3]) + struct.pack(">H", len(body)) + body


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("hostile")
    target = f"/{SCRIPT}?q={QUOTE}&r={IMG}".replace(" ", "")
    request = (f"GET {target} HTTP/1.1\r\nHost: {IMG}\r\nUser-Agent: {JS}\r\n\r\n").encode()
    response = (f"HTTP/1.1 200 {SCRIPT}\r\nContent-Type: text/html{QUOTE}\r\nContent-Length: 0\r\n\r\n").encode()
    pcap = write_conversations(d / "hostile.pcap", {0: [("c2s", request), ("s2c", response)]}, dport=80)
    tls = write_conversations(d / "hostile-tls.pcap", {
        0: [("c2s", _client_hello(f"a{IMG}.{SCRIPT}".encode(), QUOTE.encode())), ("s2c", _server_flight(IMG))]})
    entry = {"startedDateTime": "2024-01-01T00:00:00.000Z", "time": 50, "pageref": SCRIPT,
             "request": {"method": "GET", "url": f"https://{IMG}.test/{SCRIPT}?{QUOTE}", "httpVersion": "h2",
                         "headers": [{"name": "Host", "value": JS}]},
             "response": {"status": 500, "statusText": SCRIPT, "httpVersion": "h2", "_error": IMG,
                          "content": {"mimeType": QUOTE}, "headers": []},
             "timings": {"blocked": 1, "dns": 2, "connect": 10, "ssl": 5, "send": 1, "wait": 30, "receive": 6},
             "serverIPAddress": IMG, "_initiator": {"type": SCRIPT}, "_resourceType": JS, "connection": QUOTE}
    har = d / "hostile.har"
    har.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": SCRIPT, "version": IMG},
                                       "pages": [{"id": SCRIPT, "title": IMG, "startedDateTime": "2024-01-01T00:00:00Z",
                                                  "pageTimings": {"onLoad": 60}}],
                                       "entries": [entry, {**entry, "time": 80}]}}))
    return [pcap, tls, har]


@pytest.fixture(scope="module")
def html_outputs(hostile_files, tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("html")
    pages = []
    for f in hostile_files:
        for recipe in ("handshakes", "latency", "tls", "waterfall"):
            page = out / f"{f.name.replace('.', '-')}-{recipe}.html"
            try:
                cli.main([recipe, str(f), "--chart", str(page)])
            except SystemExit:
                pass
            if page.is_file():
                pages.append(page)
    report = out / "report.html"
    try:
        cli.main(["report", *map(str, hostile_files), "-o", str(report)])
    except SystemExit:
        pass
    pages.append(report)
    assert report.is_file()
    made = {p.name for p in pages}
    # the strings reach the charts that show them: waterfall (URLs), tls (SNI), handshakes (ladder)
    assert {"hostile-har-waterfall.html", "hostile-tls-pcap-tls.html", "hostile-pcap-handshakes.html"} <= made, made
    return pages


@pytest.fixture(scope="module")
def browser():
    import playwright.sync_api as playwright   # in the test extra: CI has it, so never a skip
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def test_every_html_output_keeps_hostile_strings_inert(html_outputs, browser):
    for path in html_outputs:
        raw = path.read_text(encoding="utf-8")
        title = re.search(r"<title>(.*?)</title>", raw, re.S)
        scripts = len(re.findall(r"<script\b", raw))
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        title_before = page.title()
        for plot in page.query_selector_all(".js-plotly-plot")[:6]:
            box = plot.bounding_box()
            if not box:
                continue
            plot.scroll_into_view_if_needed()
            box = plot.bounding_box()
            for fx in (0.2, 0.5, 0.8):
                for fy in (0.2, 0.5, 0.8):
                    page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        # And the hover label of every trace's first point, as plotly draws it.
        hovers = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(gd =>
            (gd.data || []).map((t, i) => {
                try { Plotly.Fx.hover(gd, [{curveNumber: i, pointNumber: 0}]); } catch (e) { return ''; }
                return [...gd.querySelectorAll('.hoverlayer text')].map(n => n.textContent).join(' | ');
            }))""")
        state = page.evaluate("""() => ({
            pwned: window.__pwned === undefined ? null : window.__pwned,
            title: document.title,
            scripts: document.querySelectorAll('script').length,
            handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(
                a => a.name.startsWith('on'))).map(e => e.outerHTML.slice(0, 80)),
            jslinks: [...document.querySelectorAll('[href],[src],[xlink\\\\:href]')].filter(e =>
                /^\\s*javascript:/i.test(e.getAttribute('href') || e.getAttribute('src') || '')).length,
            imgs: document.querySelectorAll('img').length,
        })""")
        html = page.content()
        page.close()
        name = path.name
        assert state["pwned"] is None, name
        assert dialogs == [], name
        assert state["title"] == title_before != "pwned", name
        if title:
            assert state["title"] == _unescape(title.group(1).strip()), name
        assert state["scripts"] == scripts, name           # no script element was added
        assert state["handlers"] == [], name
        assert state["jslinks"] == 0 and state["imgs"] == 0, name
        # a quote from a capture shows as a quote, never as the text "&quot;"
        assert "&amp;quot;" not in html, name
        assert not any("&quot;" in h or "&#34;" in h for h in hovers), name
        if path.name == "hostile-har-waterfall.html":
            assert any(QUOTE in h or SCRIPT[:20] in h for h in hovers), hovers


def _unescape(s: str) -> str:
    import html
    return html.unescape(s)
