"""What a recipe is, how one is found, and how one runs on its own.

A recipe is a plain Python file that answers one question about a timeline::

    '''How long did the TCP handshakes take, and why?'''   # the question
    from traceviz.recipe import Finding

    NAME = "handshakes"                 # the CLI command: traceviz handshakes FILE
    TITLE = "TCP handshakes"

    def applies(tl) -> bool:            # optional: does this capture have anything for me?
        return (tl.connections["transport"] == "tcp").any()

    def analyze(tl, conn=None) -> Finding:
        rows = ...                      # a DataFrame: one row per thing examined
        return Finding(
            title=TITLE,
            question=__doc__,
            rows=rows,                  # what --json prints
            summary={"connections": len(rows), ...},
            answer=["3 connections waited 1 s for a retransmitted SYN"],
            figures={"ladder": lambda theme: ladder_figure(...)},
        )

    if __name__ == "__main__":          # python recipes/handshakes.py FILE
        from traceviz.recipe import main
        main(__name__)

Figures are built lazily (a callable taking the theme name) because drawing
costs more than analysing and a script asking for ``--json`` wants none.
Bundled recipes live in the wheel; users name their own folder with
``--recipes DIR`` or ``TRACEVIZ_RECIPES`` and run them exactly the same way.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pandas as pd


@dataclass
class Finding:
    title: str
    question: str = ""
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: dict[str, Any] = field(default_factory=dict)
    answer: list[str] = field(default_factory=list)        # plain-language findings
    figures: dict[str, Callable[[str], Any]] = field(default_factory=dict)
    json_fields: list[str] | None = None                   # the stable --json fields, in order
    table_fields: list[str] | None = None                  # what a terminal table shows (default: first json fields)
    problems: list[str] = field(default_factory=list)      # findings that are "something is off": --fail exits 1

    def figure(self, name: str | None = None, theme: str = "light"):
        """Build one figure (the first if no name is given)."""
        if not self.figures:
            return None
        key = name if name is not None else next(iter(self.figures))
        return self.figures[key](theme)


def bundled_dir() -> Path:
    """The recipes shipped with traceviz: inside the wheel, or the source tree's top level."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "recipes", here.parent / "recipes"):
        if candidate.is_dir():
            return candidate
    return here / "_data" / "recipes"


def search_path(extra: list[str | Path] | None = None) -> list[Path]:
    dirs = [Path(p) for p in (extra or [])]
    env = os.environ.get("TRACEVIZ_RECIPES")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    return dirs + [bundled_dir()]


def discover(extra: list[str | Path] | None = None) -> dict[str, Path]:
    """Recipe name -> file.  A user's recipe with a bundled name shadows the bundled one."""
    found: dict[str, Path] = {}
    for folder in reversed(search_path(extra)):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            found[path.stem] = path
    return found


def load_module(path: str | Path) -> ModuleType:
    path = Path(path)
    name = f"traceviz_recipe_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load recipe {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def command_name(module: ModuleType, path: Path) -> str:
    return getattr(module, "NAME", path.stem)


def main(module_name: str, argv: list[str] | None = None) -> None:
    """Run the recipe in ``module_name`` as the CLI would: ``python recipes/x.py FILE [options]``."""
    from traceviz.cli import run_recipe_standalone
    run_recipe_standalone(sys.modules[module_name], argv)
