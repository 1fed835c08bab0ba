"""Recipes as commands: each recipe file a command, built from what the file
declares (``recipe.read_header``) and imported only when it runs; ``run`` for a
recipe file of one's own."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType
from typing import Annotated, Optional

import typer
from rich.text import Text

from traceviz import output
from traceviz.cli.common import (AbsOpt, AllOpt, ChartOpt, ConnOpt, FailOpt, FigureOpt, FileArg, JsonOpt, KeylogOpt,
                                 RsaOpt, ThemeOpt, WhereOpt, WideOpt, app, check_chart, check_conn, check_theme, clock,
                                 guarded, load, narrowed, rows_json, warn, write_chart)
from traceviz.errors import InputError
from traceviz.recipe import Header, applicability, discover, load_module, read_header

# Folders named with --recipes (read by main() before the commands are built).
extra_recipe_dirs: list[str] = []


def recipe_command(path: Path, head: Header | None = None):
    """A typer command that loads FILE, runs the recipe at ``path`` and shows the Finding.

    Its options are the recipe's own: ``--conn`` only when ``analyze`` takes
    one, ``--figure`` naming the recipe's ``FIGURES``, ``--fail`` saying what
    it fails on (``FAILS_ON``), and each file option its ``OPTIONS`` declares
    (``--proxy-log FILE``, repeatable; ``analyze`` gets ``proxy_log=[paths]``).
    The module is imported when the command runs, not when it is built.
    """
    head = head or read_header(path)

    def command(file: FileArg, json: JsonOpt = None, chart: ChartOpt = None, theme: ThemeOpt = "light",
                figure: FigureOpt = None, conn: ConnOpt = None, keylog: KeylogOpt = None, rsa_key: RsaOpt = None,
                where: WhereOpt = None, fail: FailOpt = False, all_rows: AllOpt = False, wide: WideOpt = False,
                absolute: AbsOpt = False, **own) -> None:
        with guarded():
            mode = rows_json(json, findings=True)
            check_theme(theme)
            check_chart(chart)
            module = load_recipe(path)
            # --where may name a column of any table: then every table is built, with every column
            tables = recipe_tables(module, chart is not None, conn is not None) if where is None else None
            tl = narrowed(load(file, keylog, rsa_key, tables=tables, measure_tcp=getattr(module, "MEASURE_TCP", False),
                               transport_only=where is None and transport_only(module),
                               keepalive_facts=where is not None or keepalive_facts(module),
                               events="all" if where is not None else recipe_events(module)), where)
            finding = run_recipe(module, tl, conn, head.name, {k: v for k, v in own.items() if v})
            present(finding, tl, head.name, mode, chart, figure, theme, absolute, wide, all_rows, fail)

    command.__doc__ = head.doc.strip() or f"Run the {path.stem} recipe."
    command.__signature__ = _signature(command, head)
    return command


def present(finding, tl, name: str, mode: str | None, chart: Path | None = None, figure: str | None = None,
            theme: str = "light", absolute: bool = False, wide: bool = False, all_rows: bool = False,
            fail: bool = False) -> None:
    """A Finding as its command shows it: the chart (when asked for), then the rows or the
    whole Finding as JSON (``mode``), else its answer and a page of its rows; ``fail``: exit 1
    on its problems, each on stderr."""
    if chart is not None:   # before the rows: `traceviz x F --chart c.png | head` still gets its chart
        write_chart(pick_figure(finding, figure, theme), chart, theme)
    if mode == "findings":
        output.print_json(findings_json(finding, name, tl))
    elif mode == "rows":
        output.print_json(output.records(finding.rows, finding.json_fields))
    else:
        show_finding(finding, clock(tl, absolute), wide=wide, all_rows=all_rows)
    if fail and finding.problems:
        for problem in finding.problems:
            output.stderr.print(Text(f"traceviz --fail: {output.printable(problem)}"))
        raise typer.Exit(1)


def _signature(command, head: Header) -> inspect.Signature:
    """The command's parameters as this recipe declares them (what --help lists).

    typer reads a command's parameters from its signature, so the recipe's own
    file options join the common ones here (and ``**own`` itself leaves it);
    their values arrive in ``**own``."""
    sig = inspect.signature(command, eval_str=True)     # the Annotated options, not their names as text
    params = []
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            continue
        if p.name == "conn" and not head.takes_conn:
            continue            # an option that would only be refused is not offered
        if p.name == "figure" and head.figures:
            names = "; ".join(f"{k}: {v}" for k, v in head.figures.items())
            p = p.replace(annotation=Annotated[Optional[str], typer.Option(
                "--figure", metavar="NAME", show_default=False,
                help=f"Which figure --chart writes (default: the first). {names}.")])
        if p.name == "fail":
            says = head.fails_on or "whatever the recipe reports as a problem (it does not say what)"
            p = p.replace(annotation=Annotated[bool, typer.Option(
                "--fail", metavar="", help=f"Exit 1, the reasons on stderr, on {says}.")])
        params.append(p)
    taken = {p.name for p in params}
    for name, help_text in head.options:
        key = name.replace("-", "_")
        if key in taken:
            continue
        option = typer.Option(f"--{name}", help=help_text, show_default=False, exists=True, dir_okay=False,
                              metavar="FILE")
        params.append(inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[Optional[list[Path]], option]))
        taken.add(key)
    return sig.replace(parameters=params)


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
    for declared in ("TABLES", "CHART_TABLES"):
        tables = getattr(module, declared, None)
        if tables is not None:
            from traceviz.model import SCHEMAS
            if isinstance(tables, str) or not all(isinstance(name, str) for name in tables) \
                    or not set(tables) <= set(SCHEMAS):
                raise InputError(str(path), f"{declared} must list table names, of: {', '.join(SCHEMAS)}")
    for flag in ("TRANSPORT_ONLY", "KEEPALIVE_FACTS"):
        if not isinstance(getattr(module, flag, False), bool):
            raise InputError(str(path), f"{flag} must be True or False")
    from traceviz.loader import EVENT_CHOICES
    if recipe_events(module) not in EVENT_CHOICES:
        raise InputError(str(path), f"EVENTS must be one of {', '.join(map(repr, EVENT_CHOICES))}")
    if transport_only(module):
        from traceviz.loader import TRANSPORT_TABLES
        asked = recipe_tables(module, chart=True)
        if asked is None or not set(asked) <= TRANSPORT_TABLES:
            raise InputError(str(path), "TRANSPORT_ONLY needs TABLES (and CHART_TABLES) of "
                                        f"{', '.join(sorted(TRANSPORT_TABLES))} only")
    return module


def transport_only(module: ModuleType) -> bool:
    """Whether a recipe reads nothing above TCP and UDP (``TRANSPORT_ONLY = True``): its command
    then loads the transport tier alone (``load(transport_only=True)``)."""
    return getattr(module, "TRANSPORT_ONLY", False) is True


def keepalive_facts(module: ModuleType) -> bool:
    """Whether a recipe reads the connections' keep-alive facts: one that says
    ``KEEPALIVE_FACTS = False`` (the handshakes) gets its connections without them, and the
    requests, packets and TCP flags they are made of are not built for it."""
    return getattr(module, "KEEPALIVE_FACTS", True) is not False


def recipe_events(module: ModuleType) -> str:
    """Whose events a recipe reads: ``EVENTS = "tcp"`` (keepalive, proxy: their figures' TCP
    keep-alive probes) has its command load TCP's alone (``load(events="tcp")``), so no TLS,
    DNS or QUIC event is made for it; default ``"all"``."""
    return getattr(module, "EVENTS", "all")


def recipe_tables(module: ModuleType, chart: bool, conn: bool = False) -> tuple[str, ...] | None:
    """The tables to build for a recipe: its ``TABLES`` (None: all), and for a chart its
    ``CHART_TABLES`` too (what only its figures read); with ``--conn`` the connections, which
    the number is checked against."""
    tables = getattr(module, "TABLES", None)
    if tables is None:
        return None
    tables = tuple(tables) + (tuple(getattr(module, "CHART_TABLES", ())) if chart else ())
    return tables + ("connections",) if conn and "connections" not in tables else tables


def _read_with(path: str, warnings: list[str]) -> str:
    """The load's first warning, for a refusal's one line: often why the recipe found nothing
    (bad input is one line, so the held warnings are not printed after it)."""
    if not warnings:
        return ""
    first = warnings[0].removeprefix(f"{path}: ")
    more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
    return f"; read with warning: {first}{more}"


def run_recipe(module: ModuleType, tl, conn: int | None, name: str = "", own: dict | None = None):
    """The Finding, if the recipe applies to this file (else exit 2 saying what it needs).

    ``own``: values of the recipe's own options (``OPTIONS``), passed to ``analyze`` by name."""
    name = name or getattr(module, "NAME", "this recipe")
    why = applicability(module, tl)
    if why is not None:
        raise InputError(tl.source.path, f"{name} does not apply to this file: it needs {why}"
                                         + _read_with(tl.source.path, tl.warnings))
    params = inspect.signature(module.analyze).parameters
    kwargs = {}
    if conn is not None:
        if "conn" not in params:
            raise InputError(tl.source.path, f"{name} does not take --conn")
        check_conn(tl, conn)
        kwargs["conn"] = conn
    for key, value in (own or {}).items():
        if key not in params:
            raise InputError(tl.source.path, f"{name}'s analyze() does not take {key}")
        kwargs[key] = value
    return module.analyze(tl, **kwargs)


def pick_figure(finding, figure: str | None, theme: str):
    if figure is not None and figure not in finding.figures:
        raise InputError("--figure", f"no figure {figure!r}; this recipe draws: {', '.join(finding.figures) or 'nothing here'}")
    if not finding.figures:
        raise InputError(finding.title, "nothing to draw for this file; no chart written")
    return finding.figure(figure, theme)


def findings_json(finding, name: str, tl) -> dict:
    """``--json=findings``: the whole Finding as one JSON object (docs/design.md)."""
    return {
        "recipe": name,
        "file": tl.source.path,
        "title": finding.title,
        "question": finding.question.strip().splitlines()[0] if finding.question.strip() else "",
        "answer": list(finding.answer),
        "summary": output.plain(finding.summary),
        "problems": list(finding.problems),
        "figures": list(finding.figures),
        "rows": output.records(finding.rows, finding.json_fields),
    }


def show_finding(finding, clock=None, wide: bool = False, all_rows: bool = False, console=None) -> None:
    """The Finding on the terminal: its title, question, answer, summary and a page of its rows.

    ``clock``: the output's time origin (``common.clock``), or the Timeline to take it from.
    """
    console = console or output.stdout
    if clock is not None and not isinstance(clock, output.Clock):
        clock = output.time_origin(clock)
    console.print(Text(output.printable(finding.title), style="bold"), soft_wrap=True)
    if finding.question.strip():
        output.paragraph(finding.question.strip().splitlines()[0], console, style="italic")
    told = finding.answer if all_rows else finding.answer[:output.ANSWER_PAGE]
    for line in told:
        output.paragraph(line, console, bullet="\u2022 ")
    if len(finding.answer) > len(told):
        output.stderr.print(Text(f"{len(finding.answer) - len(told)} more sentences (use --all or --json=findings)"))
    if finding.summary:
        output.key_values(finding.summary, console, clock)
    if len(finding.rows):
        cols = finding.table_fields or list(finding.json_fields or finding.rows.columns)[:10]
        console.print(soft_wrap=True)
        output.print_table(finding.rows, cols, clock=clock, wide=wide, all_rows=all_rows, console=console)


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
        app.command(head.name, help=head.doc.strip().split("\n\n")[0])(recipe_command(path, head))
        taken.add(head.name)


def run_recipe_standalone(path: Path, argv: list[str]) -> None:
    """``traceviz run RECIPE.py ARGS``: the recipe's own command, its docstring as its --help."""
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich",
                         context_settings={"help_option_names": ["-h", "--help"]})
    single.command()(recipe_command(path))
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
