"""How long the CLI takes to start, what its imports cost, and what it imports needlessly.

    python bench/bench_cli.py [--runs 5] [--start-only] [FILE]

First the start-up: ``traceviz``, ``traceviz --help``, a recipe's
``--help``, ``import traceviz`` and a recipe run as a script (``python
recipes/handshakes.py --help``): none of them should import pandas, numpy or
plotly (the script form pays for its recipe's own imports, then hands over).
Then the commands that read FILE.  For each: the median and best wall time of
a fresh process (the whole process, as a shell sees it) and the heavy
packages in ``sys.modules`` when it ends: plotly (and kaleido) should appear
only when a chart is asked for.  Last, the slowest imports of ``traceviz
--help`` from ``python -X importtime``.  FILE defaults to the bundled
``tcp-handshakes`` capture.  ``--start-only`` stops after the start-up rows.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("plotly", "kaleido", "pandas", "numpy", "pyarrow", "scapy", "cryptography", "aioquic", "dpkt", "typer", "rich")
NEVER_AT_START = ("pandas", "numpy", "plotly", "pyarrow")

# Reports (on stderr, after everything else) the heavy packages the process imported.
REPORT = """
import atexit, sys
heavy = {heavy!r}
atexit.register(lambda: sys.stderr.write("\\nIMPORTED " + ",".join(m for m in heavy if m in sys.modules) + "\\n"))
"""
PROBE = REPORT + "from traceviz.cli import main\nmain()\n"     # then runs the CLI with the arguments given


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [e.get("PYTHONPATH")] if p])
    return e


def time_command(args: list[str], runs: int, argv: list[str] | None = None) -> tuple[float, float, list[str] | None, int]:
    """Median and best wall seconds of ``runs`` fresh processes; the heavy modules imported; exit code.

    ``argv`` is a whole command line to time instead of the CLI with ``args``
    (a script, ``-c "import traceviz"``); what it imported is then unknown
    (None) unless the command is the probe itself.
    """
    command = argv or [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args]
    times, imported, code = [], None, 0
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(command, env=env(), capture_output=True, text=True, cwd=ROOT)
        times.append(time.perf_counter() - t)
        code = p.returncode
        found = re.findall(r"^IMPORTED (.*)$", p.stderr, re.M)
        if found:
            imported = found[-1].split(",") if found[-1] else []
    return statistics.median(times), min(times), imported, code


def import_costs(statement: str, top: int = 15) -> list[tuple[float, str]]:
    """The ``top`` slowest imports (cumulative ms) under ``statement``, one row per distinct package root."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], env=env(), capture_output=True, text=True)
    rows = []
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)) / 1000, len(m.group(3)), m.group(4)))
    best: dict[str, float] = {}
    for ms, _, name in rows:
        root = name.split(".")[0]
        best[root] = max(best.get(root, 0.0), ms)  # a package's outermost import holds its whole cost
    return sorted(((ms, name) for name, ms in best.items()), reverse=True)[:top]


def row(label: str, med: float, best: float, imported: list[str] | None, code: int) -> str:
    heavy = "?" if imported is None else (", ".join(imported) or "-")
    return f"{label[:44]:44} {med * 1000:7.0f}ms {best * 1000:7.0f}ms  {code:4}  {heavy}"


def start_rows(runs: int) -> list[str]:
    """The start-up rows; those that imported pandas, numpy, plotly or pyarrow are returned as surprises."""
    script = str(ROOT / "recipes" / "handshakes.py")
    rows = [
        ("traceviz", [], None),
        ("traceviz --help", ["--help"], None),
        ("traceviz handshakes --help", ["handshakes", "--help"], None),
        ("traceviz run recipes/tls.py --help", ["run", "recipes/tls.py", "--help"], None),
        ("traceviz recipes --json", ["recipes", "--json"], None),
        ("python -c 'import traceviz'", [], [sys.executable, "-c", REPORT.format(heavy=HEAVY) + "import traceviz"]),
        ("python recipes/handshakes.py --help", [], [sys.executable, script, "--help"]),
    ]
    print(f"{'start-up':44} {'median':>8} {'best':>8}  exit  heavy modules imported")
    surprises = []
    for label, args, argv in rows:
        med, best, imported, code = time_command(args, runs, argv)
        print(row(label, med, best, imported, code))
        if imported and set(imported) & set(NEVER_AT_START):
            surprises.append(label)
    return surprises


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", default="tcp-handshakes")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--start-only", action="store_true", help="only the start-up rows")
    a = ap.parse_args()
    chart = Path(tempfile.mkdtemp()) / "chart.html"
    commands = [
        (["captures", "--json"], False),
        (["connections", a.file], False),
        (["connections", a.file, "--json"], False),
        (["timeline", a.file, "--json"], False),
        (["handshakes", a.file, "--json"], False),
        (["handshakes", a.file, "--chart", str(chart)], True),
        (["tls", a.file, "--json"], False),
        (["requests", a.file, "--json"], False),
        # TCP's events alone (load(events="tcp")): no TLS, DNS or QUIC event made for them
        (["iostat", a.file, "--json"], False),
        (["keepalive", a.file, "--json"], False),
        (["proxy", a.file, "--json"], False),
    ]
    base = subprocess.run([sys.executable, "-c", "pass"], capture_output=True)
    t = time.perf_counter()
    for _ in range(a.runs):
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True)
    python_ms = (time.perf_counter() - t) / a.runs * 1000
    print(f"python itself starts in {python_ms:.0f} ms (rc {base.returncode}); {a.runs} runs per command\n")
    slow_start = start_rows(a.runs)
    print()
    if slow_start:
        print("imported pandas/numpy/plotly/pyarrow at start-up: " + "; ".join(slow_start))
    else:
        print("start-up imports none of pandas, numpy, plotly, pyarrow (the script row pays for its recipe's imports)")
    if a.start_only:
        return
    print(f"\n{'command':44} {'median':>8} {'best':>8}  exit  heavy modules imported")
    surprises = []
    for args, wants_chart in commands:
        med, best, imported, code = time_command(args, a.runs)
        if "plotly" in (imported or []) and not wants_chart:
            surprises.append(" ".join(args))
        print(row("traceviz " + " ".join(args), med, best, imported, code))
    print()
    if surprises:
        print("plotly is imported without a chart by: " + "; ".join(surprises))
    else:
        print("plotly is imported only when a chart is asked for")
    help_run = "from traceviz.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    print("\nslowest imports of `traceviz --help` (cumulative ms, per package):")
    for ms, name in import_costs(help_run):
        print(f"  {ms:8.1f}  {name}")
    print("\nfor scale, each alone in a fresh process (cumulative ms):")
    for stmt, module in (("import pandas", "pandas"), ("import plotly.graph_objects as go; go.Figure()", "plotly"),
                         ("import traceviz.charts", "traceviz"), ("import typer", "typer"), ("import rich.table", "rich")):
        print(f"  {dict((n, ms) for ms, n in import_costs(stmt, top=100)).get(module, float('nan')):8.1f}  {stmt}")


if __name__ == "__main__":
    main()
