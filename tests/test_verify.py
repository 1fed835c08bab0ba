"""``traceviz verify``: tshark's second opinion agrees with us on every corpus capture,
and a difference, a missing tshark or a file that is no capture are said as such."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from traceviz.cli import main

CORPUS = Path(__file__).resolve().parent / "corpus"
CAPTURES = sorted(p for p in (CORPUS / "pcap").rglob("*") if p.suffix in (".pcap", ".pcapng"))
DAMAGED = {"pcapng-bad-shb-option__libpcap_shb-option-too-long.pcapng"}   # neither tool reads it

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is the oracle")


def run(args, capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def _args(path: Path) -> list[str]:
    args = ["verify", str(path)]
    keys = path.with_suffix(".keys")
    if keys.is_file():
        args += ["--keylog", str(keys)]
    return args


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_corpus_capture_agrees_with_tshark(path, capsys):
    code, out, err = run(_args(path), capsys)
    if path.name in DAMAGED:
        assert code == 2 and err.count("\n") == 1
        return
    assert code == 0, out + err
    assert out.strip().endswith("they agree")


def test_a_difference_is_named(tmp_path, capsys):
    """tshark's view of a capture, then one packet and one status changed: both named."""
    from collections import Counter

    import traceviz
    from traceviz.cli.verify import compare, read_tshark
    path = CORPUS / "pcap" / "http1" / "simple-get-403__arkime_http-simple-get.pcap"
    tl = traceviz.load(path)
    theirs = read_tshark(shutil.which("tshark"), str(path))
    assert compare(tl, theirs)["differences"] == []
    stream = next(iter(theirs["connections"]))
    theirs["connections"][stream]["packets"] += 1
    theirs["statuses"][0] = Counter({"500": 1})
    diffs = compare(tl, theirs)["differences"]
    assert [d[:2] for d in diffs] == [("connections", f"tcp.stream {stream[1]} packets"),
                                      ("requests", "status codes on tcp.stream 0")]


def test_json_lists_the_differences(capsys):
    path = CORPUS / "pcap" / "tcp" / "syn-then-rst__zeek.pcap"
    code, out, _ = run(["verify", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out) == []


def test_no_tshark_is_exit_2(capsys):
    code, out, err = run(["verify", str(CAPTURES[0]), "--tshark", "no-such-tshark-here"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "tshark not found" in err


def test_a_browser_export_is_not_a_capture(capsys):
    har = next((CORPUS / "har").glob("*.har"))
    code, _, err = run(["verify", str(har)], capsys)
    assert code == 2 and "not a packet capture" in err


def test_differences_exit_1(monkeypatch, capsys):
    from traceviz.cli import verify as v
    real = v.read_tshark

    def fewer_packets(*args, **kw):
        found = real(*args, **kw)
        for c in found["connections"].values():
            c["packets"] -= 1
        return found

    monkeypatch.setattr(v, "read_tshark", fewer_packets)
    path = CORPUS / "pcap" / "tcp" / "syn-then-rst__zeek.pcap"
    code, out, _ = run(["verify", str(path)], capsys)
    assert code == 1
    assert "tcp.stream 0 packets: traceviz 2, tshark 1" in out
