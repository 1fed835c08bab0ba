"""What importing traceviz and starting the command line cost: no pandas until a table is needed.

``import traceviz`` is lazy (PEP 562), the CLI builds recipe commands from
what their files declare, and the recipe layer never imports the CLI.  Each
probe runs in a fresh process: ``sys.modules`` there is the ground truth of
what was imported.  How long it takes is measured in bench/bench_cli.py, not here.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "numpy", "plotly", "pyarrow")

# Runs the CLI with ARGS, then writes which heavy packages it had imported, whatever the exit.
CLI_PROBE = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("\\nIMPORTED " + ",".join(m for m in {heavy!r} if m in sys.modules) + "\\n"))
from traceviz.cli import main
main()
"""


def python(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TRACEVIZ_RECIPES", "COLUMNS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def imported_by(*cli_args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    p = python("-c", CLI_PROBE.format(heavy=HEAVY), *cli_args)
    found = re.findall(r"^IMPORTED (.*)$", p.stderr, re.M)
    assert found, p.stderr
    return p, set(filter(None, found[-1].split(",")))


def test_import_traceviz_does_not_import_pandas():
    p = python("-c", "import traceviz, sys; print(sorted(m for m in %r if m in sys.modules))" % (HEAVY,))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["traceviz.errors", "traceviz.recipe", "traceviz.output", "traceviz.cli"])
def test_light_modules_do_not_import_pandas(module):
    p = python("-c", f"import {module}, sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]", module


def test_the_public_names_are_there_when_asked_for():
    code = """
import sys
import traceviz
from traceviz import load, run, Timeline, Finding, InputError, __version__
import traceviz.loader, traceviz.model, traceviz.recipe, traceviz.errors
assert load is traceviz.load is traceviz.loader.load
assert Timeline is traceviz.model.Timeline and Finding is traceviz.recipe.Finding
assert InputError is traceviz.errors.InputError and isinstance(__version__, str)
assert {"load", "run", "Timeline", "Finding", "InputError", "__version__"} <= set(dir(traceviz))
try:
    traceviz.no_such_name
except AttributeError as exc:
    assert "no_such_name" in str(exc)
else:
    raise AssertionError("traceviz.no_such_name did not raise AttributeError")
ns = {}
exec("from traceviz import *", ns)
assert set(traceviz.__all__) <= set(ns)
print("ok")
"""
    p = python("-c", code)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


@pytest.mark.parametrize("args, shows", [
    ([], "handshakes"),                       # no arguments: the help
    (["--help"], "handshakes"),
    (["handshakes", "--help"], "How long did the TCP handshakes take"),
    (["run", "--help"], "--rsa-key"),
    (["run", "recipes/tls.py", "--help"], "What did each TLS handshake negotiate"),
    (["recipes", "--json"], '"name": "waterfall"'),
    (["captures", "--json"], '"name": "tcp-handshakes"'),   # plain Python data needs no numpy to print
])
def test_starting_the_cli_imports_no_heavy_package(args, shows):
    p, imported = imported_by(*args)
    assert shows in p.stdout, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    assert not imported, f"traceviz {' '.join(args)} imported {sorted(imported)}"


def test_a_command_that_reads_a_file_does_import_them():
    # the probe itself can see pandas: the test above would notice it if it were there
    p, imported = imported_by("connections", str(ROOT / "captures" / "tcp-handshakes.pcapng"), "--json")
    assert p.returncode == 0, p.stderr
    assert {"pandas", "numpy"} <= imported and "plotly" not in imported


def imports_of(path: Path) -> list[str]:
    """Every module a file imports (at any depth, in functions too), and every string naming one."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names += [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"[\w.]+", node.value):
            names.append(node.value)       # importlib.import_module("traceviz.cli"), runpy...
    return names


RECIPE_LAYER = [ROOT / "traceviz" / "recipe.py", *sorted((ROOT / "recipes").glob("*.py"))]


@pytest.mark.parametrize("path", RECIPE_LAYER, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_recipe_layer_never_imports_the_cli(path):
    bad = [n for n in imports_of(path) if n in ("traceviz.cli", "traceviz.report") or n.startswith(("traceviz.cli.",
                                                                                                       "traceviz.report."))]
    assert not bad, f"{path.name} imports {bad}: recipes sit below the report and the CLI"


def test_the_report_never_imports_the_cli():
    names = imports_of(ROOT / "traceviz" / "report.py")
    assert not [n for n in names if n == "traceviz.cli" or n.startswith("traceviz.cli.")]


def test_the_ast_check_sees_an_import_of_the_cli(tmp_path):
    # the check above must be able to fail: each spelling of importing the CLI is caught
    for source in ("from traceviz.cli import main", "import traceviz.cli",
                   "def f():\n    from traceviz.cli import run_recipe_standalone",
                   "import importlib\nimportlib.import_module('traceviz.cli')"):
        path = tmp_path / "r.py"
        path.write_text(source + "\n")
        assert "traceviz.cli" in imports_of(path), source
    path.write_text("from traceviz import cli\n")
    assert "traceviz.cli" in imports_of(path)
