"""`traceviz report`: every applicable recipe in one offline page, hostile strings escaped."""

from __future__ import annotations

import re

import pandas as pd
import pytest

import traceviz
import traceviz.captures
from traceviz import report
from traceviz.cli import main
from traceviz.recipe import Finding, discover, load_module

EVIL = "<script>alert(1)</script>"


def recipes():
    return {name: load_module(path) for name, path in discover().items()}


def test_sections_follow_what_each_file_holds():
    tcp = traceviz.load("tcp-handshakes")
    har = traceviz.load("captures/browser-page-load.har")
    parts = report.sections([tcp, har], recipes())
    ran = {(p.file, p.recipe) for p in parts if p.finding is not None}
    assert (tcp.source.path, "handshakes") in ran
    assert (tcp.source.path, "tls") not in ran            # no TLS in that capture
    assert (har.source.path, "waterfall") in ran
    assert (har.source.path, "handshakes") not in ran     # a HAR has no TCP packets
    assert not [p for p in parts if p.error]


def test_page_is_offline_and_escapes_capture_strings(tmp_path):
    tl = traceviz.load("tcp-handshakes")
    hostile = Finding(title=EVIL, question=EVIL, answer=[EVIL], summary={EVIL: EVIL},
                      rows=pd.DataFrame({"url": [EVIL]}))
    page = report.render([tl], [report.Section(tl.source.path, "x", finding=hostile)])
    assert "<script>alert(1)" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4
    assert not re.search(r"<script[^>]+src=", page)       # plotly.js inlined, nothing fetched


def test_a_failing_recipe_is_a_note_not_a_crash():
    class Broken:
        @staticmethod
        def analyze(tl):
            raise RuntimeError("recipe bug")

    tl = traceviz.load("tcp-handshakes")
    parts = report.sections([tl], {"broken": Broken})
    assert parts[0].error == "RuntimeError: recipe bug"
    assert "recipe bug" in report.render([tl], parts)


def test_cli_report_writes_one_page_with_every_file(tmp_path, capsys):
    out = tmp_path / "r.html"
    with pytest.raises(SystemExit) as done:
        main(["report", "tcp-handshakes", "tls12-vs-tls13", "-o", str(out)])
    assert done.value.code in (0, None)
    page = out.read_text()
    assert page.count("<h1>") == 2
    assert "TLS handshakes" in page and "TCP handshakes" in page
    assert page.count("Plotly.newPlot") >= 2


def test_cli_report_refuses_a_non_html_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["report", "tcp-handshakes", "-o", str(tmp_path / "r.pdf")])
    assert done.value.code == 2
    assert "r.pdf" in capsys.readouterr().err


def test_the_page_has_a_real_header_contents_one_plotly_and_fitted_charts(tmp_path, capsys, tshark):
    import subprocess
    out = tmp_path / "r.html"
    with pytest.raises(SystemExit):
        main(["report", "tcp-handshakes", "browser-page-load.har", "--theme", "talk", "-o", str(out)])
    page = out.read_text()
    assert "&lt;Timeline" not in page and "<Timeline" not in page
    frames = subprocess.run([tshark, "-r", str(traceviz.captures.find("tcp-handshakes")), "-T", "fields", "-e", "frame.number"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert f"{len(frames)} frames, 6 connections" in page and "<th>format</th><td>pcapng</td>" in page
    assert "<th>duration</th>" in page
    # contents: every link points at a section of the page
    links = re.findall(r"<a href='#([\w-]+)'>", page)
    ids = set(re.findall(r" id='([\w-]+)'", page))
    assert links and set(links) <= ids and "f1-handshakes" in ids and "f2-waterfall" in ids
    assert len(re.findall(r"plotly\.js v\d", page)) == 1 and page.count("Plotly.newPlot") >= 3
    # a talk chart stays a 1920 x 1080 slide, scaled to the page by its script
    assert "data-width='1920' data-height='1080'" in page and "scale(" in page
    assert re.search(r"Not applicable here:[^<]*latency \(needs", page)


def test_a_long_answer_shows_a_page_of_sentences_and_folds_the_rest():
    """An answer of thousands of sentences (one per flow) reads from the top: the first
    ``ANSWER_PAGE`` as a list, the rest folded under how many there are, all escaped."""
    from traceviz import output
    sentences = [f"<b>flow {i}</b> & more" for i in range(output.ANSWER_PAGE + 7)]
    html_text = report._answer(sentences)
    shown, _, folded = html_text.partition("<details>")
    assert re.findall(r"<li>(.*?)</li>", shown) == [f"&lt;b&gt;flow {i}&lt;/b&gt; &amp; more"
                                                     for i in range(output.ANSWER_PAGE)]
    assert folded.startswith("<summary>7 more</summary>") and folded.count("<li>") == 7
    assert "<details>" not in report._answer(sentences[:output.ANSWER_PAGE])
