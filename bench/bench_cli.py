"""How long the CLI takes to start, what its imports cost, and what it imports needlessly.

    python bench/bench_cli.py [--runs 5] [FILE]

For each command it prints the median wall time of a fresh process, and the
heavy packages present in ``sys.modules`` when the process ends: plotly
(and kaleido) should appear only when a chart is asked for.  Then it lists
the slowest imports of ``traceviz.cli`` from ``python -X importtime``.
FILE defaults to the bundled ``tcp-handshakes`` capture.
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

# Runs the CLI, then reports (on stderr, after everything else) the heavy packages it imported.
PROBE = """
import atexit, sys
heavy = {heavy!r}
atexit.register(lambda: sys.stderr.write("\\nIMPORTED " + ",".join(m for m in heavy if m in sys.modules) + "\\n"))
from traceviz.cli import main
main()
"""


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [e.get("PYTHONPATH")] if p])
    return e


def time_command(args: list[str], runs: int) -> tuple[float, float, list[str], int]:
    """Median and best wall seconds of ``runs`` fresh processes; the heavy modules imported; exit code."""
    times, imported, code = [], [], 0
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], env=env(),
                           capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        code = p.returncode
        found = re.findall(r"^IMPORTED (.*)$", p.stderr, re.M)
        imported = found[-1].split(",") if found and found[-1] else []
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", default="tcp-handshakes")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    chart = Path(tempfile.mkdtemp()) / "chart.html"
    commands = [
        (["--help"], False),
        (["captures", "--json"], False),
        (["connections", a.file], False),
        (["connections", a.file, "--json"], False),
        (["timeline", a.file, "--json"], False),
        (["handshakes", a.file, "--json"], False),
        (["handshakes", a.file, "--chart", str(chart)], True),
    ]
    base = subprocess.run([sys.executable, "-c", "pass"], capture_output=True)
    t = time.perf_counter()
    for _ in range(a.runs):
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True)
    python_ms = (time.perf_counter() - t) / a.runs * 1000
    print(f"python itself starts in {python_ms:.0f} ms (rc {base.returncode}); {a.runs} runs per command\n")
    print(f"{'command':44} {'median':>8} {'best':>8}  exit  plotly?  heavy modules imported")
    surprises = []
    for args, wants_chart in commands:
        med, best, imported, code = time_command(args, a.runs)
        plotly = "plotly" in imported
        if plotly and not wants_chart:
            surprises.append(" ".join(args))
        print(f"traceviz {' '.join(args)[:35]:35} {med * 1000:7.0f}ms {best * 1000:7.0f}ms  {code:4}  "
              f"{'yes' if plotly else 'no':7}  {', '.join(imported)}")
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
