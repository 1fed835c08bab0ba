"""What a terminal shows (issue 14): tables that fit 60, 80 and 120 columns, one paging rule, one time origin.

Each command runs in this process with rich's recording console standing in
for a terminal of the given width (``force_terminal``), and for a pipe (not a
terminal).  Ground truth: the bundled captures' manifest (endpoints, URLs,
outcomes), tshark's dissection (times, round trips), the --json rows.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from rich.cells import cell_len
from rich.console import Console

from traceviz import cli, output

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "captures"
HANDSHAKES = BUNDLED / "tcp-handshakes.pcapng"
WIDTHS = (60, 80, 120)


def manifest(name: str) -> dict:
    doc = json.loads((BUNDLED / "manifest.json").read_text())
    return next(c for c in doc["captures"] if c["name"] == name)


class Run:
    def __init__(self, code, out, err, json_out):
        self.code, self.out, self.err, self.json_out = code, out, err, json_out

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


@pytest.fixture
def term(monkeypatch, capsys):
    """``term(80, "connections", FILE)``: the CLI on an 80-column terminal (``width=None``: a pipe)."""

    def run(width, *args) -> Run:
        terminal = width is not None
        out = Console(file=io.StringIO(), record=True, width=width or 80, force_terminal=terminal,
                      color_system=None, highlight=False)
        err = Console(file=io.StringIO(), record=True, width=width or 80, force_terminal=terminal,
                      color_system=None, stderr=True, soft_wrap=True)
        monkeypatch.setattr(output, "stdout", out)
        monkeypatch.setattr(output, "stderr", err)
        capsys.readouterr()
        try:
            cli.main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        return Run(code, out.export_text(), err.export_text(), capsys.readouterr().out)

    return run


def widest(text: str) -> int:
    return max((cell_len(line) for line in text.splitlines()), default=0)


def rows_after_header(lines: list[str], first_column: str) -> list[str]:
    """The table's rows: the lines after its header, up to a blank line or the note under it.
    ``first_column``: the header's first word (several, separated by |, when it depends on the width)."""
    at = next(i for i, line in enumerate(lines) if line.split() and line.split()[0] in first_column.split("|"))
    rows = []
    for line in lines[at + 1:]:
        if not line.strip() or line.startswith("not shown"):
            break
        rows.append(line)
    return rows


# ---------------------------------------------------------------- width

@pytest.mark.parametrize("width", WIDTHS)
def test_connections_fit_the_terminal_and_never_cut_an_endpoint(term, width):
    r = term(width, "connections", HANDSHAKES)
    assert r.code == 0, r.err
    assert widest(r.out) <= width
    facts = manifest("tcp-handshakes")["facts"]["connections"]
    rows = rows_after_header(r.lines, "conn")
    assert len(rows) == len(facts)
    for row, fact in zip(rows, facts):
        cells = row.split()
        # client, server and how it ended are whole cells: never cut, never folded onto a second line
        assert fact["client"] in cells and fact["server"] in cells and fact["outcome"] in cells, row
    hidden = re.search(r"not shown at (\d+) columns: (.*) \(--wide shows them\)", r.out.replace("\n", " "))
    if width < 120:
        assert hidden and int(hidden.group(1)) == width
    shown = {h.split(" (")[0] for h in re.split(r"\s{2,}", next(l for l in r.lines if l.startswith("conn")).strip())}
    assert {"conn", "client", "server", "close"} <= shown


def test_wide_shows_every_column_whatever_the_width(term):
    narrow, wide = term(60, "connections", HANDSHAKES), term(60, "connections", HANDSHAKES, "--wide")
    assert "not shown" in narrow.out and "not shown" not in wide.out
    assert widest(wide.out) > 60 and "bytes_s2c" in wide.out and "handshake_rtt (ms)" in wide.out


@pytest.mark.parametrize("width", WIDTHS)
def test_requests_fit_with_urls_shortened_in_the_middle(term, width):
    har = BUNDLED / "browser-page-load.har"
    r = term(width, "requests", har)
    assert r.code == 0, r.err
    assert widest(r.out) <= width
    urls = manifest("browser-page-load")["facts"]["urls"]
    rows = rows_after_header(r.lines, "request|conn")
    assert len(rows) == len(urls)                 # one line per request: nothing wraps
    shown = [next(c for c in row.split() if c.startswith("https://")) for row in rows]
    for cell in shown:
        if "\u2026" in cell:                      # host kept, the end of the path kept, the cut marked
            head, tail = cell.split("\u2026")
            assert head == "https://10.88.0.2/" and any(u.endswith(tail) for u in urls), cell
        else:
            assert cell in urls
    assert sorted(u for u in shown if "\u2026" not in u) == sorted(u for u in urls if u in shown)
    if width >= 80:
        assert sorted(shown) == sorted(urls)      # 80 columns hold the whole URL of this page


def test_a_pipe_gets_whole_lines(term):
    """Off a terminal nothing is shortened or wrapped: one sentence, one line; one row, one line."""
    findings = json.loads(term(None, "handshakes", HANDSHAKES, "--json=findings").json_out)
    r = term(None, "handshakes", HANDSHAKES)
    for sentence in findings["answer"]:
        assert "\u2022 " + sentence in r.lines
    assert "not shown" not in r.out and "\u2026" not in r.out
    on_terminal = term(60, "handshakes", HANDSHAKES)
    assert widest(on_terminal.out) <= 60 and not any("\u2022 " + s in on_terminal.lines for s in findings["answer"]
                                                     if len(s) > 60)


def test_hostile_text_is_shortened_by_cells_not_bytes():
    df = pd.DataFrame({"conn": [1], "url": ["https://\u65e5\u672c.example/" + "\u8a9e" * 60]})
    lay = output.layout(df, ["conn", "url"], width=40)
    assert all(cell_len(line) <= 40 for line in lay.lines)


# ---------------------------------------------------------------- paging

def test_an_answer_shows_a_page_of_sentences_then_how_many_more(term, tmp_path):
    """A recipe that tells each of thousands of flows (``transports`` on a big capture) pages
    its answer as a table pages its rows: the first ``ANSWER_PAGE`` sentences, how many more on
    stderr; ``--all`` shows them, ``--json=findings`` has them all."""
    recipe = tmp_path / "many.py"
    recipe.write_text('"""Many sentences."""\nfrom traceviz.recipe import Finding\n'
                      "def analyze(tl):\n    return Finding(title='t', answer=[f'sentence {i}.' for i in range(70)],"
                      " rows=tl.connections)\n")
    told = [f"\u2022 sentence {i}." for i in range(70)]
    r = term(120, "run", recipe, HANDSHAKES)
    assert [line for line in r.lines if line.startswith("\u2022 ")] == told[:output.ANSWER_PAGE]
    assert f"{70 - output.ANSWER_PAGE} more sentences (use --all or --json=findings)" in r.err
    full = term(120, "run", recipe, HANDSHAKES, "--all")
    assert [line for line in full.lines if line.startswith("\u2022 ")] == told and "more sentences" not in full.err
    assert len(json.loads(term(None, "run", recipe, HANDSHAKES, "--json=findings").json_out)["answer"]) == 70
    few = term(120, "handshakes", HANDSHAKES)
    assert "more sentences" not in few.err


def test_one_paging_rule_a_page_then_how_many_more(term):
    everything = json.loads(term(None, "timeline", BUNDLED / "browser-page-load.pcapng", "--json").json_out)
    assert len(everything) > output.PAGE
    r = term(120, "timeline", BUNDLED / "browser-page-load.pcapng")
    assert len(rows_after_header(r.lines, "frame")) == output.PAGE
    assert f"{len(everything) - output.PAGE} more rows (use --all or --json)" in r.err
    full = term(120, "timeline", BUNDLED / "browser-page-load.pcapng", "--all")
    assert len(rows_after_header(full.lines, "frame")) == len(everything) and "more rows" not in full.err


@pytest.mark.parametrize("command", ["connections", "requests", "timeline", "waterfall", "handshakes"])
def test_every_table_pages_the_same_way(term, command):
    source = BUNDLED / ("http1-six-connections.pcapng" if command != "handshakes" else "tcp-handshakes.pcapng")
    r = term(200, command, source, "--help")
    assert "--all" in r.json_out and "--wide" in r.json_out and "--abs" in r.json_out


def test_only_the_page_is_formatted(monkeypatch):
    """A 100k-row table costs one page: the cells of the other rows are never made."""
    n = 100_000
    df = pd.DataFrame({"conn": range(n), "start": [1.7e9 + i / 1000 for i in range(n)], "url": ["https://a/b"] * n})
    made = []
    real = output.column_texts
    monkeypatch.setattr(output, "column_texts", lambda s, *a, **k: made.append(len(s)) or real(s, *a, **k))
    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    output.print_table(df, ["conn", "start", "url"], clock=output.Clock(1.7e9), console=console, notes=console)
    assert made and max(made) == output.PAGE
    assert f"{n - output.PAGE} more rows" in console.file.getvalue()


# ---------------------------------------------------------------- time

def tshark_fields(path, fields, display_filter=None) -> list[list[str]]:
    cmd = ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=\t"]
    if display_filter:
        cmd += ["-Y", display_filter]
    for f in fields:
        cmd += ["-e", f]
    return [line.split("\t") for line in subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                                                         check=True).stdout.splitlines()]


def test_times_count_from_the_first_packet_and_abs_is_wall_clock(term, tshark):
    frames = tshark_fields(HANDSHAKES, ["frame.number", "frame.time_relative", "frame.time_epoch"], "tcp.flags.syn == 1 && tcp.flags.ack == 0")
    r = term(120, "timeline", HANDSHAKES, "--kind", "SYN")
    rows = {int(line.split()[0]): line.split()[1] for line in rows_after_header(r.lines, "frame")}
    assert rows and set(rows) == {int(f) for f, _, _ in frames}
    for frame, rel, _ in frames:     # the first packet is 0, as Wireshark's default column (to the microsecond)
        assert float(rows[int(frame)]) == pytest.approx(float(rel), abs=1.01e-6) and len(rows[int(frame)].split(".")[1]) == 6
    first = float(tshark_fields(HANDSHAKES, ["frame.time_epoch"])[0][0])
    day = datetime.fromtimestamp(first, timezone.utc)
    assert f"seconds since the first packet, {day:%Y-%m-%d %H:%M:%S}" in r.out
    r = term(120, "timeline", HANDSHAKES, "--kind", "SYN", "--abs")
    rows = {int(line.split()[0]): line.split()[1] for line in rows_after_header(r.lines, "frame")}
    for frame, _, epoch in frames:
        assert rows[int(frame)] == datetime.fromtimestamp(float(epoch), timezone.utc).strftime("%H:%M:%S.%f")
    assert f"UTC, on {day:%Y-%m-%d}" in r.out and "ts (UTC)" in r.out


def test_durations_are_milliseconds_with_fixed_decimals(term, tshark):
    want = {int(s): float(rtt) for s, rtt in tshark_fields(HANDSHAKES, ["tcp.stream", "tcp.analysis.initial_rtt"],
                                                         "tcp.analysis.initial_rtt && tcp.flags.reset == 0") if rtt}
    r = term(160, "connections", HANDSHAKES)
    header = next(l for l in r.lines if l.startswith("conn"))
    assert "handshake_rtt (ms)" in header
    end = header.index("handshake_rtt (ms)") + len("handshake_rtt (ms)")      # numbers are right-aligned
    cells = {int(l.split()[0]): l[:end].split()[-1] for l in rows_after_header(r.lines, "conn")}
    assert want and all(len(cells[k].split(".")[1]) == 3 for k in want)                  # fixed decimals
    assert all(float(cells[k]) == pytest.approx(v * 1000, abs=0.0011) for k, v in want.items())


def test_a_notebook_timeline_shows_readable_times():
    import traceviz
    tl = traceviz.load(HANDSHAKES)
    page = tl._repr_html_()
    assert "e+09" not in page and "1.7" not in page.split("<table")[2][:2000]
    origin = float(tl.packets["ts"].min())
    start = float(tl.connections["start"].iloc[1])
    assert f"<td>{start - origin:.6f}</td>" in page and "start (s)" in page and "handshake_rtt (ms)" in page


# -- --json: rows column by column, written by orjson ---------------------------------------------

def _cell_by_cell(df, fields):
    cols = [c for c in fields if c in df.columns] + [c for c in df.columns if c not in fields]
    return [{c: output.plain(v) for c, v in zip(cols, row)} for row in df[cols].itertuples(index=False, name=None)]


@pytest.mark.parametrize("table", ["connections", "events", "requests", "tls", "packets"])
def test_json_rows_are_the_cells_plain_values(table):
    from bundled import timeline

    from traceviz.model import JSON_FIELDS
    tl = timeline("browser-page-load")
    df = getattr(tl, table)
    assert len(df)
    fields = JSON_FIELDS.get(table, [])
    assert output.records(df, fields) == _cell_by_cell(df, fields)


def test_json_rows_of_every_dtype_and_a_repeated_column_name():
    import numpy as np
    df = pd.DataFrame({"i": [1, 2], "f": [1.5, np.nan], "I": pd.array([1, None], dtype="Int64"),
                       "b": pd.array([True, None], dtype="boolean"), "s": pd.array(["x", None], dtype="string"),
                       "o": [[1, np.int64(2)], {"k": np.float64(np.nan)}], "u": np.array([1, 2], dtype=np.uint8)})
    assert output.records(df) == _cell_by_cell(df, [])
    assert output.records(df)[1] == {"i": 2, "f": None, "I": None, "b": None, "s": None, "o": {"k": None}, "u": 2}
    twice = pd.DataFrame([[1, 2, "x"]], columns=["a", "a", "b"])
    assert output.records(twice) == [{"a": 1, "a.1": 2, "b": "x"}]


def test_print_json_takes_what_orjson_refuses(capsys):
    output.print_json([{"big": 2**70, "text": "caf\u00e9 \u2028", 3: None}])
    assert json.loads(capsys.readouterr().out) == [{"big": 2**70, "text": "caf\u00e9 \u2028", "3": None}]
    output.print_json({"n": 1.5e-7, "t": "\x1b[31m"})
    out = capsys.readouterr().out
    assert json.loads(out) == {"n": 1.5e-7, "t": "\x1b[31m"} and "\x1b" not in out
