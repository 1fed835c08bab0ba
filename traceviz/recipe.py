"""What a recipe is, how one is found, and how one runs on its own.

A recipe is a plain Python file that answers one question about a timeline::

    '''How long did the TCP handshakes take, and why?'''   # the question
    from traceviz.recipe import Finding

    NAME = "handshakes"                 # the CLI command: traceviz handshakes FILE
    TITLE = "TCP handshakes"

    def applies(tl) -> bool:            # optional: does this capture have anything for me?
        return (tl.connections["transport"] == "tcp").any()

    NEEDS = "TCP packets"               # what applies() looks for, said when it is not there
    FAILS_ON = "a refused, unanswered or retransmitted SYN"     # what --fail exits 1 on
    FIGURES = {"ladder": "one connection's packets, client to server"}   # --chart --figure NAME

    def analyze(tl, conn=None) -> Finding:  # `conn` is optional: without it there is no --conn
        rows = ...                      # a DataFrame: one row per thing examined
        return Finding(
            title=TITLE,
            question=__doc__,
            rows=rows,                  # what --json prints
            summary={"connections": len(rows), ...},
            answer=["3 connections waited 1 s for a retransmitted SYN"],
            problems=["conn 4 waited 1.02 s for a retransmitted SYN"],   # --fail: exit 1, these on stderr
            figures={"ladder": lambda theme: ladder_figure(...)},
        )

    if __name__ == "__main__":          # python recipes/handshakes.py FILE
        from traceviz.recipe import main
        main(__name__)

Figures are built lazily (a callable taking the theme name) because drawing
costs more than analysing and a script asking for ``--json`` wants none.
Bundled recipes live in the wheel; users name their own folder with
``--recipes DIR`` or ``TRACEVIZ_RECIPES`` and run them exactly the same way.

A recipe is found without being run: ``read_header`` reads its ``NAME``,
docstring, ``NEEDS``, ``FAILS_ON``, ``FIGURES`` and whether ``analyze`` takes
``conn`` from the source (``ast``), so the CLI can list every recipe as a
command, and answer ``--help`` with its real options, without importing
pandas; the module is imported only when its command runs.

A recipe that does not apply to a file (``applies(tl)`` is false) is not run:
the command says what it needs (``NEEDS``) and exits 2, and ``report``
leaves it out.  ``--fail`` exits 1 when ``Finding.problems`` is not empty and
prints each problem on stderr; ``FAILS_ON`` says in ``--help`` what they are.

Running a recipe file on its own (``python recipes/x.py FILE [options]``)
hands the process over to ``python -m traceviz run recipes/x.py FILE
[options]`` (``os.execve`` on POSIX, a child process elsewhere).  This layer
sits below the CLI and must not import it; handing over, rather than a
second small argument parser here, means the script and the command are the
same code: the same options, output, exit status and error lines, with
nothing to keep in step.  The price is one more interpreter start, paid by
the script form only.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:   # pandas is imported when a Finding is made, not when recipes are listed
    import pandas as pd


def _no_rows() -> pd.DataFrame:
    import pandas as pd
    return pd.DataFrame()


@dataclass
class Finding:
    title: str
    question: str = ""
    rows: pd.DataFrame = field(default_factory=_no_rows)
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


@dataclass(frozen=True)
class Header:
    """What a recipe file declares, read without running it.

    path: the file.  name: its ``NAME`` (the command), else the file's stem.
    doc: its docstring as written ("" if none).  runnable: it binds
    ``analyze`` at top level (a helper module in a recipe folder does not).
    error: why the file cannot be read (a syntax error...), or None.
    options: the recipe's own options, from ``OPTIONS = {"proxy-log": "help"}``:
    each becomes ``--proxy-log FILE`` (repeatable) on its command, and
    ``analyze`` receives ``proxy_log=[paths]`` when it is given.
    needs, fails_on: its ``NEEDS`` and ``FAILS_ON`` text ("" if it declares none).
    figures: its ``FIGURES`` (name -> what the figure shows).  takes_conn:
    its ``analyze`` has a ``conn`` parameter (so the command offers ``--conn``).
    """

    path: Path
    name: str
    doc: str = ""
    runnable: bool = False
    error: str | None = None
    options: tuple = ()          # (name, help) of each file option the recipe declares in OPTIONS
    needs: str = ""
    fails_on: str = ""
    figures: dict[str, str] = field(default_factory=dict)
    takes_conn: bool = False

    @property
    def question(self) -> str:
        """The docstring's first line."""
        lines = self.doc.strip().splitlines()
        return lines[0] if lines else ""


def read_header(path: str | Path) -> Header:
    """A recipe's ``NAME``, docstring and whether it has ``analyze``, from its source alone."""
    path = Path(path)
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError) as exc:   # ValueError: null bytes, bad encoding
        return Header(path, path.stem, error=str(exc))
    found = _constants(tree, {"NAME": str, "NEEDS": str, "FAILS_ON": str, "FIGURES": dict, "OPTIONS": dict})
    figures = {str(k): str(v) for k, v in found.get("FIGURES", {}).items()}
    options = tuple((k, str(v)) for k, v in found.get("OPTIONS", {}).items()
                    if isinstance(k, str) and _OPTION_NAME.match(k))
    return Header(path, found.get("NAME", path.stem), ast.get_docstring(tree, clean=False) or "",
                  _binds_analyze(tree), options=options, needs=found.get("NEEDS", ""),
                  fails_on=found.get("FAILS_ON", ""), figures=figures, takes_conn=_analyze_takes(tree, "conn"))


_OPTION_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def _constants(tree: ast.Module, wanted: dict[str, type]) -> dict[str, Any]:
    """Top-level ``NAME = <literal>`` assignments of the wanted names and types."""
    out = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else []
        for t in targets:
            if isinstance(t, ast.Name) and t.id in wanted:
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:          # not a literal: the recipe computes it, so --help cannot say
                    continue
                if isinstance(value, wanted[t.id]):
                    out[t.id] = value
    return out


def _analyze_takes(tree: ast.Module, param: str) -> bool:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "analyze":
            a = node.args
            return param in [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs] or a.kwarg is not None
    return False


def applicability(module: ModuleType, tl) -> str | None:
    """None when the recipe applies to ``tl``, else why not (its ``NEEDS``), for one line."""
    check = getattr(module, "applies", None)
    if not callable(check) or check(tl):
        return None
    return getattr(module, "NEEDS", "") or "nothing in this file for it"


def _binds_analyze(tree: ast.Module) -> bool:
    """Whether the module binds ``analyze`` outside any function (in an ``if`` or ``try`` too).

    A star import may bind it, so it counts: better a command that explains it
    cannot run than a recipe that silently is not one.
    """
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == "analyze":
                return True
            continue                        # names bound inside are not the module's
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(a.name == "*" or (a.asname or a.name) == "analyze" for a in node.names):
                return True
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id == "analyze":
            return True
        todo.extend(ast.iter_child_nodes(node))
    return False


def main(module_name: str, argv: list[str] | None = None) -> None:
    """``python recipes/x.py FILE [options]``: become ``python -m traceviz run recipes/x.py FILE [options]``."""
    path = Path(sys.modules[module_name].__file__).resolve()
    args = [sys.executable, "-m", "traceviz", "run", _shown(path), *(sys.argv[1:] if argv is None else argv)]
    env = _same_traceviz(dict(os.environ))
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execve(sys.executable, args, env)
    raise SystemExit(subprocess.call(args, env=env))


def _shown(path: Path) -> str:
    """The path as a user would type it here (it is the usage line of ``--help``)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _same_traceviz(env: dict[str, str]) -> dict[str, str]:
    """The environment in which ``-m traceviz`` imports this very traceviz, wherever it was found."""
    env["PYTHONSAFEPATH"] = "1"   # not the current folder first (its own ./traceviz?), as for the traceviz command
    root = str(Path(__file__).resolve().parents[1])
    installed = {str(Path(p).resolve()) for p in (sysconfig.get_path("purelib"), sysconfig.get_path("platlib"))}
    if root not in installed:   # a site-packages dir on PYTHONPATH would shadow the standard library
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    return env
