"""Commands and options that mean what they say (issue 14).

--fail on every recipe, --json=findings, options offered only when they
work, values checked against the valid choices, --version, readable help,
bundled companions by name, recipes that do not apply, charts with nothing
to draw, damaged timestamps, file sizes, image export errors.  Ground truth:
the bundled captures' manifest, pyproject.toml, the files themselves.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import struct
import sys
from pathlib import Path

import pytest

from traceviz.recipe import discover, read_header

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_cli import tv  # noqa: E402,F401  (the CLI in this process, as test_cli runs it)

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "captures"
HANDSHAKES = BUNDLED / "tcp-handshakes.pcapng"


def project() -> dict:
    """pyproject.toml's version and dependencies (Python 3.10 has no tomllib)."""
    text = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    return {"version": re.search(r'^version = "([^"]+)"', text, re.M).group(1),
            "dependencies": re.findall(r'^\s*"([^"]+)"', deps, re.M)}


def manifest(name: str) -> dict:
    doc = json.loads((BUNDLED / "manifest.json").read_text())
    return next(c for c in doc["captures"] if c["name"] == name)


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("warning:", "using the bundled"))]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- --fail

def test_handshakes_fail_exits_1_on_refused_unanswered_and_retransmitted_syns(tv):
    facts = manifest("tcp-handshakes")["facts"]["connections"]
    r = tv("handshakes", HANDSHAKES, "--fail")
    assert r.code == 1
    reasons = [line for line in r.err.splitlines() if line.startswith("traceviz --fail: ")]
    # each troubled connection of the recording is named in a reason: refused, unanswered, a resent SYN
    for conn, fact in enumerate(facts):
        named = any(re.search(rf"\bconns? (\d+, )*{conn}\b", line, re.I) for line in reasons)
        assert named == (fact["outcome"] in ("refused", "unanswered") or fact["syns"] > 1), (conn, reasons)


def test_fail_on_a_clean_capture_exits_0(tv):
    facts = manifest("http1-keepalive-vs-close")["facts"]
    assert all(c.get("outcome", "").startswith("fin") for c in facts.get("connections", [])), "pick a clean capture"
    r = tv("handshakes", BUNDLED / "http1-keepalive-vs-close.pcapng", "--fail")
    assert r.code == 0 and "--fail" not in r.err


@pytest.mark.parametrize("name", sorted(n for n, p in discover().items() if p.parent.name == "recipes"))
def test_every_bundled_recipe_says_what_it_fails_on(tv, name):
    head = read_header(discover()[name])
    assert head.fails_on and head.needs and head.figures
    help_text = re.sub(r"\s+", " ", tv(name, "--help").out.replace("│", " "))
    assert re.sub(r"\s+", " ", head.fails_on)[:40] in help_text
    for figure in head.figures:
        assert figure in help_text


# ---------------------------------------------------------------- --json

def test_json_findings_carries_the_whole_finding(tv):
    rows = tv("handshakes", HANDSHAKES, "--json").json()
    doc = tv("handshakes", HANDSHAKES, "--json=findings").json()
    assert isinstance(rows, list) and doc["rows"] == rows               # the rows array stays the default
    assert doc["recipe"] == "handshakes" and doc["file"].endswith("tcp-handshakes.pcapng")
    assert doc["answer"] and doc["summary"]["refused"] == 1 and doc["figures"] == ["ladder", "rtt"]
    failed = tv("handshakes", HANDSHAKES, "--fail")
    assert doc["problems"] == [line.removeprefix("traceviz --fail: ") for line in failed.err.splitlines()
                               if line.startswith("traceviz --fail: ")]
    r = tv("connections", HANDSHAKES, "--json=findings")
    assert r.code == 2 and "findings are a recipe's" in r.err and r.out == ""
    assert tv("connections", HANDSHAKES, "--json=everything").code == 2


# ---------------------------------------------------------------- options

@pytest.mark.parametrize("recipe", ["latency", "waterfall"])
def test_conn_works_where_it_is_offered(tv, recipe):
    source = BUNDLED / "http1-six-connections.pcapng"
    everything = tv("requests", source, "--json").json()
    on_2 = [r for r in everything if r["conn"] == 2]
    assert on_2
    r = tv(recipe, source, "--conn", "2", "--json")
    assert r.code == 0, r.err
    if recipe == "waterfall":
        assert sorted(row["request"] for row in r.json()) == sorted(row["request"] for row in on_2)
    else:
        assert next(row for row in r.json() if row["by"] == "all")["n"] == len(on_2)
    r = tv(recipe, source, "--conn", "999")
    assert r.code == 2 and "connections here: 0-5" in one_line(r.err)


def test_an_option_a_recipe_cannot_use_is_not_offered(tv, tmp_path):
    (tmp_path / "plain.py").write_text('"""How many connections?"""\nfrom traceviz.recipe import Finding\nNAME = "plain"\n'
                                       "def analyze(tl):\n    return Finding(title='n', rows=tl.connections)\n")
    help_text = tv("--recipes", tmp_path, "plain", "--help").out
    assert "--conn" not in help_text and "--json" in help_text
    r = tv("--recipes", tmp_path, "plain", HANDSHAKES, "--conn", "1")
    assert r.code == 2 and "--conn" in r.err


@pytest.mark.parametrize("args, choice", [
    (["timeline", HANDSHAKES, "--kind", "SYNN"], "SYN-ACK"),
    (["timeline", HANDSHAKES, "--layer", "tpc"], "tcp"),
    (["connections", HANDSHAKES, "--transport", "sctp"], "quic"),
    (["timeline", HANDSHAKES, "--conn", "999"], "0-5"),
    (["handshakes", HANDSHAKES, "--theme", "neon"], "talk"),
])
def test_unknown_values_are_refused_with_the_valid_choices(tv, args, choice):
    r = tv(*args)
    assert r.code == 2 and r.out == ""
    line = one_line(r.err)
    assert choice in line and str(args[-1]) in line


def test_a_known_kind_absent_from_the_file_is_zero_rows_not_an_error(tv):
    r = tv("timeline", HANDSHAKES, "--kind", "zero-window", "--json")
    assert r.code == 0 and r.json() == []


def test_version(tv):
    want = project()["version"]
    r = tv("--version")
    assert r.code == 0 and r.out.strip() == f"traceviz {want}"


@pytest.mark.parametrize("command", ["report", "connections", "handshakes", "timeline", "run"])
def test_help_has_readable_metavars(tv, command):
    text = tv(command, "--help").out
    assert not re.search(r"<(list\[str\]|str|bool|int|path)>", text), text
    assert "FILE" in text


# ---------------------------------------------------------------- bundled companions

@pytest.mark.parametrize("companion", ["browser-page-load.har", "browser-page-load.trace.json"])
def test_companions_are_found_by_name(tv, tmp_path, monkeypatch, companion):
    monkeypatch.chdir(tmp_path)   # nothing of that name here: the bundled file is meant
    r = tv("waterfall", companion, "--json")
    assert r.code == 0, r.err
    assert sorted(row["url"] for row in r.json()) == sorted(manifest("browser-page-load")["facts"]["urls"])


def test_key_files_are_found_by_name_and_a_bundled_capture_brings_its_key_log(tv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = tv("tls", "tls12-rsa", "--json", "--rsa-key", "tls12-rsa.key.pem")
    assert r.code == 0 and [row["decrypted"] for row in r.json()] == [True]
    info = tv("info", "h2-multiplexing", "--json").json()
    assert info["keylog"].startswith(manifest("h2-multiplexing")["keylog"])
    assert "using the bundled key log h2-multiplexing.keys" in tv("info", "h2-multiplexing").err


def test_tls_says_why_a_session_was_not_decrypted(tv):
    r = tv("tls", "tls12-rsa")
    line = next(l for l in r.out.splitlines() if "decrypted:" in l)
    assert "0 of 1 sessions decrypted: this one used RSA key exchange; pass --rsa-key tls12-rsa.key.pem" in line


def test_captures_lists_what_to_look_at_and_the_files(tv):
    text = re.sub(r"\s+", " ", tv("captures").out)
    for entry in json.loads((BUNDLED / "manifest.json").read_text())["captures"]:
        assert re.sub(r"\s+", " ", entry["look_at"])[:60] in text, entry["name"]
        for rel in [entry["file"], entry.get("keylog")] + list((entry.get("extra_files") or {}).values()):
            if rel and (BUNDLED / rel).is_file():
                assert Path(rel).name in text, (entry["name"], rel)


# ---------------------------------------------------------------- nothing to do

def test_a_recipe_that_does_not_apply_says_what_it_needs(tv):
    r = tv("handshakes", BUNDLED / "browser-page-load.har")
    assert r.code == 2 and r.out == ""
    assert "handshakes does not apply to this file: it needs TCP connections whose packets" in one_line(r.err)


def test_a_chart_with_nothing_to_draw_is_not_written(tv, tmp_path):
    chart = tmp_path / "x.html"
    (tmp_path / "bare.py").write_text('"""Rows, no figure."""\nfrom traceviz.recipe import Finding\n'
                                      "def analyze(tl):\n    return Finding(title='t', rows=tl.connections)\n")
    r = tv("run", tmp_path / "bare.py", HANDSHAKES, "--chart", chart)
    assert r.code == 2 and "nothing to draw" in one_line(r.err) and not chart.exists()
    r = tv("waterfall", BUNDLED / "http1-six-connections.pcapng", "--conn", "0", "--chart", chart)
    assert r.code == 0 and chart.is_file()                       # the same command with something to draw


def test_report_with_nothing_applicable_writes_nothing(tv, tmp_path):
    har = tmp_path / "empty.har"
    har.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": []}}))
    out = tmp_path / "r.html"
    r = tv("report", har, "-o", out)
    assert r.code == 2 and not out.exists()
    assert "nothing to report" in r.err and "no recipe applies" in r.err


# ---------------------------------------------------------------- info

def _pcapng_with_timestamp(path: Path, ticks: int) -> Path:
    """One TCP SYN whose Enhanced Packet Block says ``ticks`` microseconds since 1970."""
    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack("<HHI", 1, 0, 65535))
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 0, 0, 0x50, 0x02, 64240, 0, 0)
    frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp
    epb = block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)) + frame)
    path.write_bytes(shb + idb + epb)
    return path


def test_info_warns_about_an_absurd_timestamp_instead_of_a_traceback(tv, tmp_path):
    path = _pcapng_with_timestamp(tmp_path / "far.pcapng", (1 << 64) - 1000)     # the year 586524
    r = tv("info", path)
    assert r.code == 0 and "Traceback" not in r.err
    assert "not a plausible date" in r.err and "(not a date)" in r.out
    assert tv("info", path, "--json").json()["frames"] == 1
    assert tv("timeline", path, "--abs").code == 0


@pytest.mark.parametrize("rel", ["browser-page-load.har", "browser-page-load.trace.json", "tcp-handshakes.pcapng"])
def test_info_size_is_the_files_size_on_disk(tv, tmp_path, rel):
    gz = tmp_path / (rel + ".gz")
    with open(BUNDLED / rel, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    for path in (BUNDLED / rel, gz):
        assert tv("info", path, "--json").json()["size_bytes"] == path.stat().st_size


# ---------------------------------------------------------------- images

def test_kaleido_is_installed_by_the_plain_install():
    deps = project()["dependencies"]
    assert any(re.match(r"kaleido\b", d) for d in deps)
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```sh\n(.*?)\n```", readme, re.S).group(1)
    assert "pip install ." in first or 'pip install ".[images]"' in first


def test_image_errors_are_one_readable_line(monkeypatch, tmp_path):
    from traceviz.charts import export
    assert export.one_line(RuntimeError("\nImage export requires the Kaleido package\n  pip install x\n")) == \
        "RuntimeError: Image export requires the Kaleido package pip install x"
    monkeypatch.setitem(sys.modules, "kaleido", None)           # an install without it
    with pytest.raises(export.ImageExportError, match=r"needs the kaleido package.*pip install kaleido"):
        export.write_images([(__import__("plotly.graph_objects").graph_objects.Figure(), tmp_path / "a.png")])


def test_an_export_that_leaves_no_file_is_an_error(monkeypatch, tmp_path):
    import plotly.graph_objects as go
    import plotly.io as pio
    from traceviz.charts import export
    if export.browser() is None:
        pytest.skip("no Chrome or Chromium")
    monkeypatch.setattr(pio, "write_images", lambda *a, **k: None)      # a browser that returned without writing
    with pytest.raises(export.ImageExportError, match="wrote no image for a.png"):
        export.write_images([(go.Figure(), tmp_path / "a.png")])


# ---------------------------------------------------------------- the README

def test_the_readmes_tour_runs_as_written_at_80_columns(tmp_path):
    """Each command of the README's tour, as a process on an 80-column terminal."""
    import subprocess
    readme = (ROOT / "README.md").read_text()
    tour = re.search(r"## A tour.*?```sh\n(.*?)\n```", readme, re.S).group(1)
    commands = [line.split("#")[0].split() for line in tour.splitlines() if line.strip()]
    assert len(commands) >= 10 and all(c[0] == "traceviz" for c in commands)
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    env.update(COLUMNS="80", TTY_COMPATIBLE="1", PYTHONPATH=str(ROOT))
    for argv in commands:
        p = subprocess.run([sys.executable, "-c", "from traceviz.cli import main; main()", *argv[1:]],
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=180)
        assert p.returncode == 0, (argv, p.stderr[-2000:])
        assert "Traceback" not in p.stderr
        plain = re.sub(r"\x1b\[[0-9;]*m", "", p.stdout)
        from rich.cells import cell_len
        assert plain.strip() or argv[1] == "report", argv          # a report's only words are on stderr
        assert max((cell_len(line) for line in plain.splitlines()), default=0) <= 80, argv
    for made in ("ladder.png", "page.html", "report.html"):
        assert (tmp_path / made).stat().st_size > 1000
