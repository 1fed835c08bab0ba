"""The architecture, checked: imports only point down the layers, no module imports
itself back through others, and importing a decoder stays light.

The layers (docs/design.md), lowest first:

    base      errors, _tuning, _forks, captures, units, limits   (anyone may import these)
    sources   files -> raw records
    decode    sans-I/O protocol machines: typed events, no pandas at import, no model
    model     the Timeline and its schemas
    assemble  events/records -> tables; loader (the pipeline)
    charts    plotly figures
    recipes   recipe.py and the top-level recipes/
    top       report, output, cli, the package's __init__/__main__

Read from the source with ``ast`` (nothing is imported to find the imports):
an import inside a function counts the same as one at the top.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "traceviz"

LAYERS = ["base", "sources", "decode", "model", "assemble", "charts", "recipes", "top"]
BASE = {"traceviz.errors", "traceviz._tuning", "traceviz._forks", "traceviz.captures", "traceviz.units",
        "traceviz.limits"}


def layer_of(module: str) -> str:
    if module in BASE:
        return "base"
    parts = module.split(".")
    if module == "traceviz" or parts[1] in ("__main__", "cli", "report", "output"):
        return "top"
    if parts[1] in ("sources", "decode", "assemble", "charts"):
        return parts[1]
    if parts[1] in ("model", "stats", "filters"):
        return "model"
    if parts[1] == "loader":
        return "assemble"
    if parts[1] in ("recipe", "recipes"):
        return "recipes"
    raise AssertionError(f"{module}: no layer assigned; add it to tests/test_layers.py and docs/design.md")


def module_name(path: Path) -> str:
    if path.is_relative_to(ROOT / "recipes"):
        return "traceviz.recipes." + path.stem
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "recipes").glob("*.py"))


def imports_of(path: Path) -> set[str]:
    """The traceviz modules ``path`` imports (``from traceviz.x import y`` counts as
    traceviz.x.y when that is a module, else traceviz.x)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "traceviz")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if base.split(".")[0] != "traceviz":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if _is_module(sub) else base)
    return {m for m in found if m != me}


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


GRAPH = {module_name(p): imports_of(p) for p in sources()}


def test_every_module_has_a_layer():
    for module in GRAPH:
        layer_of(module)


def upward(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for module, deps in graph.items():
        mine = LAYERS.index(layer_of(module))
        for dep in sorted(deps):
            if LAYERS.index(layer_of(dep)) > mine:
                out.append(f"{module} ({layer_of(module)}) imports {dep} ({layer_of(dep)})")
    return out


def test_imports_only_point_down():
    assert upward(GRAPH) == []


def test_no_import_cycles():
    # Tarjan would do; the graph is small, so a depth-first search per module is enough.
    cycles = set()
    for start in GRAPH:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for dep in GRAPH.get(node, ()):
                if dep == start:
                    cycles.add(" -> ".join(path + [start]))
                elif dep not in path and dep in GRAPH and len(path) < 12:
                    stack.append((dep, path + [dep]))
    # A package's __init__ importing its own submodule is not a cycle of modules
    # unless the submodule imports the package back, which the search finds.
    assert sorted(cycles) == []


def test_the_checker_sees_a_decoder_importing_the_model(tmp_path, monkeypatch):
    bad = PACKAGE / "decode" / "zz_bad.py"          # never written: only its name is used
    monkeypatch.setattr(Path, "read_text", lambda self, **kw: "from traceviz.model import Timeline\n"
                        if self == bad else Path.read_bytes(self).decode())
    graph = {module_name(bad): imports_of(bad)}
    assert graph == {"traceviz.decode.zz_bad": {"traceviz.model"}}
    assert upward(graph) == ["traceviz.decode.zz_bad (decode) imports traceviz.model (model)"]


DECODERS = sorted(module_name(p) for p in (PACKAGE / "decode").rglob("*.py"))


@pytest.mark.parametrize("module", DECODERS)
def test_importing_a_decoder_does_not_import_pandas(module):
    code = f"import sys, {module}; sys.exit('pandas' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"importing {module} imports pandas: {run.stderr[-300:]}"
