"""Recipes as commands: each recipe file a command, built from what the file
declares (``recipe.read_header``) and imported only when it runs; ``run`` for a
recipe file of one's own."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import typer
from rich.text import Text

from traceviz import output
from traceviz.cli.common import (ChartOpt, ConnOpt, FailOpt, FigureOpt, FileArg, JsonOpt, KeylogOpt, RsaOpt,
                                 ThemeOpt, app, check_chart, check_theme, first_ts, guarded, load, warn,
                                 write_chart)
from traceviz.errors import InputError
from traceviz.recipe import discover, load_module, read_header

# Folders named with --recipes (read by main() before the commands are built).
extra_recipe_dirs: list[str] = []


def recipe_command(path: Path, doc: str = "", options: tuple = ()):
    """A typer command that loads FILE, runs the recipe at ``path`` and shows the Finding.

    The recipe module is imported when the command runs, not when it is built.
    ``options``: the recipe's own file options (``recipe.Header.options``).
    """

    def command(file: FileArg, json: JsonOpt = False, chart: ChartOpt = None, theme: ThemeOpt = "light",
                figure: FigureOpt = None, conn: ConnOpt = None, keylog: KeylogOpt = None, rsa_key: RsaOpt = None,
                fail: FailOpt = False, **own) -> None:
        with guarded():
            check_theme(theme)
            check_chart(chart)
            module = load_recipe(path)
            tl = load(file, keylog, rsa_key)
            finding = analyze(module, tl, conn, {k: v for k, v in own.items() if v})
            if chart is not None:   # before the rows: `traceviz x F --chart c.png | head` still gets its chart
                if figure is not None and figure not in finding.figures:
                    raise InputError(str(chart), f"no figure {figure!r}; this recipe draws: {', '.join(finding.figures) or 'nothing'}")
                write_chart(finding.figure(figure, theme), chart, theme)
            if json:
                output.print_json(output.records(finding.rows, finding.json_fields))
            else:
                show_finding(finding, tl)
            if fail and finding.problems:
                raise typer.Exit(1)

    command.__doc__ = doc.strip() or f"Run the {path.stem} recipe."
    return _with_options(command, options)


def _with_options(command, options: tuple):
    """Add the recipe's own options to its command: each ``--name FILE``, repeatable.

    typer reads a command's parameters from its signature, so the declared
    options join the common ones there (and ``**own`` itself leaves it);
    their values arrive in ``**own``."""
    import inspect
    from typing import Annotated, Optional

    sig = inspect.signature(command, eval_str=True)
    params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    taken = {p.name for p in params}
    for name, help_text in options:
        key = name.replace("-", "_")
        if key in taken:
            continue
        option = typer.Option(f"--{name}", help=help_text, show_default=False, exists=True, dir_okay=False,
                              metavar="FILE")
        params.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[Optional[list[Path]], option]))
        taken.add(key)
    command.__signature__ = sig.replace(parameters=params)
    return command


def load_recipe(path: Path) -> ModuleType:
    """Import a recipe to run it: a recipe that cannot be imported is bad input, one line."""
    if not path.is_file():
        raise InputError(str(path), "no such recipe file")
    try:
        module = load_module(path)
    except Exception as exc:  # a user's recipe may raise anything; never a traceback
        raise InputError(str(path), f"recipe failed to load: {type(exc).__name__}: {exc}") from None
    if not callable(getattr(module, "analyze", None)):
        raise InputError(str(path), "not a recipe: it defines no analyze(tl) function")
    return module


def analyze(module: ModuleType, tl, conn: int | None, own: dict | None = None):
    import inspect
    params = inspect.signature(module.analyze).parameters
    if conn is not None and "conn" not in params:
        raise InputError(tl.source.path, "this recipe does not take --conn")
    kwargs = {"conn": conn} if "conn" in params else {}
    for key, value in (own or {}).items():
        if key not in params:
            raise InputError(tl.source.path, f"this recipe's analyze() does not take {key}")
        kwargs[key] = value
    return module.analyze(tl, **kwargs)


def show_finding(finding, tl) -> None:
    console = output.stdout
    console.print(Text(output.printable(finding.title), style="bold"))
    if finding.question:
        console.print(Text(output.printable(finding.question.strip().splitlines()[0]), style="italic"))
    for line in finding.answer:
        console.print(Text("• " + output.printable(line)))
    if finding.summary:
        console.print(output.key_values(finding.summary))
    if len(finding.rows):
        cols = finding.table_fields or list(finding.json_fields or finding.rows.columns)[:10]
        console.print(output.table(finding.rows, cols, t0=first_ts(tl), limit=100))
        if len(finding.rows) > 100:
            output.stderr.print(Text(f"({len(finding.rows) - 100} more rows: --json shows all)"))


def register_recipes(extra_dirs: list[str]) -> None:
    """Every recipe as a command, from what its file declares; none is imported here.

    A recipe file that cannot even be parsed is a warning now, on every run;
    one that fails when imported is found when it runs: its own command (and
    ``report``) says so, the other commands never import it.
    """
    taken = {c.name or c.callback.__name__ for c in app.registered_commands}
    for path in discover(extra_dirs).values():
        head = read_header(path)
        if head.error is not None:  # a broken user recipe must not break the whole CLI
            warn(f"recipe {path} failed to load: {head.error}")
            continue
        if not head.runnable:
            warn(f"recipe {path} defines no analyze(tl): not a command (name a helper module _{path.name})")
            continue
        if head.name in taken:
            continue
        app.command(head.name, help=head.doc.strip().split("\n\n")[0])(recipe_command(path, head.doc,
                                                                                       head.options))
        taken.add(head.name)


def run_recipe_standalone(path: Path, argv: list[str]) -> None:
    """``traceviz run RECIPE.py ARGS``: the recipe's own command, its docstring as its --help."""
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich",
                         context_settings={"help_option_names": ["-h", "--help"]})
    head = read_header(path)
    single.command()(recipe_command(path, head.doc, head.options))
    single(args=argv, prog_name=f"traceviz run {path}")


def take_recipes_option(argv: list[str]) -> list[str]:
    """``--recipes DIR`` must be known before commands are built, so it is read here."""
    rest, i = [], 0
    while i < len(argv):
        if argv[i] == "--recipes" and i + 1 < len(argv):
            extra_recipe_dirs.append(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--recipes="):
            extra_recipe_dirs.append(argv[i].split("=", 1)[1])
        else:
            rest.append(argv[i])
        i += 1
    return rest
