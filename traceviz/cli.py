"""The ``traceviz`` command: a thin typer app over the library.

Tables go to stdout (rich on a terminal, a JSON array with ``--json``);
warnings, progress and errors go to stderr.  Exit status: 0 success,
1 a finding you asked to fail on (``--fail``), 2 bad input (one line naming
the file and, for packet data, the frame).

This module imports only typer, rich and the standard library when it is
loaded: ``traceviz --help`` must start fast, so pandas and the rest come in
with the command that needs them, and each recipe command is built from what
its file declares (``recipe.read_header``) and imported only when it runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated, Iterator, Optional

import typer
from rich.text import Text

from traceviz import output
from traceviz.errors import InputError
from traceviz.recipe import discover, load_module, read_header

HELP = """Explain what happened on the wire.

Feed it a capture (pcap, pcapng, .gz), a HAR, or a DevTools trace; every
command takes a file path or the name of a bundled capture (see
[bold]traceviz captures[/bold]).

  traceviz info FILE              what is in the file, what can be decoded
  traceviz connections FILE       one row per connection (conn = Wireshark's tcp.stream)
  traceviz timeline FILE --conn 3 what happened, in order
  traceviz handshakes FILE        how long the TCP handshakes took, and why
  traceviz tls FILE --keylog K    what TLS negotiated; decrypt with a key log
  traceviz report FILE... -o r.html  every recipe that applies, in one offline page

Add --json for a JSON array on stdout, --chart out.html|.png|.svg for a chart.
Your own recipes: [bold]--recipes DIR[/bold] (or TRACEVIZ_RECIPES) adds each DIR/*.py as a command.
"""

app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode="rich", add_completion=False,
                  pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})

FileArg = Annotated[str, typer.Argument(help="A pcap/pcapng (.gz too), HAR or DevTools trace file, or a bundled capture's name.",
                                        show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the rows as a JSON array on stdout, nothing else.")]
KeylogOpt = Annotated[Optional[Path], typer.Option("--keylog", help="NSS key log (SSLKEYLOGFILE) to decrypt TLS; pcapng-embedded secrets are used without it.",
                                                   show_default=False)]
RsaOpt = Annotated[Optional[Path], typer.Option("--rsa-key", help="Server's PEM private key: decrypts TLS 1.2 sessions that used RSA key exchange.",
                                                show_default=False)]
ChartOpt = Annotated[Optional[Path], typer.Option("--chart", help="Write a chart: .html (self-contained, works offline), .png or .svg.",
                                                  show_default=False)]
ThemeOpt = Annotated[str, typer.Option("--theme", help="Chart theme: light, dark, or talk (large type, 16:9, for slides).")]
ConnOpt = Annotated[Optional[int], typer.Option("--conn", help="Connection number (the same as Wireshark's tcp.stream).", show_default=False)]
FigureOpt = Annotated[Optional[str], typer.Option(help="Which figure --chart writes (default: the first).", show_default=False)]
FailOpt = Annotated[bool, typer.Option("--fail", help="Exit 1 when the recipe finds something off (for CI checks).")]


# ---------------------------------------------------------------- plumbing

@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Bad input → one line on stderr and exit 2; never a traceback."""
    try:
        yield
    except InputError as exc:
        output.stderr.print(Text(f"traceviz: {output.printable(str(exc))}"))
        raise typer.Exit(2)
    except BrokenPipeError:  # `traceviz timeline big.pcap | head`
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")
        raise typer.Exit(0)


def load(path: str, keylog: Path | None = None, rsa_key: Path | None = None):
    """Load with a progress line on stderr for big files, then show the warnings."""
    import traceviz

    big = Path(path).is_file() and Path(path).stat().st_size > 32 * 1024 * 1024
    if big and output.stderr.is_terminal:
        tl = _load_with_progress(traceviz, path, keylog, rsa_key)
    else:
        tl = traceviz.load(path, keylog=keylog, rsa_key=rsa_key)
    show_warnings(tl.warnings)
    return tl


_STAGES = ("reading", "indexing", "tcp", "payload")   # what loader.load reports, in order


def _load_with_progress(traceviz, path, keylog, rsa_key):
    """A progress bar on stderr (never stdout: --json output stays clean) through load()'s stages."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<10}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=output.stderr, transient=True) as bar:
        task = bar.add_task(_STAGES[0], total=len(_STAGES))

        def step(stage: str) -> None:
            done = _STAGES.index(stage) if stage in _STAGES else 0
            bar.update(task, completed=done, description=stage)

        return traceviz.load(path, keylog=keylog, rsa_key=rsa_key, progress=step)


def show_warnings(warnings: list[str], most: int = 10) -> None:
    for w in warnings[:most]:
        warn(w)
    if len(warnings) > most:
        output.stderr.print(Text(f"warning: … and {len(warnings) - most} more", style="yellow"))


def warn(message: str) -> None:
    output.stderr.print(Text(f"warning: {output.printable(message)}", style="yellow"))


def first_ts(tl) -> float | None:
    if len(tl.packets):
        return float(tl.packets["ts"].iloc[0])
    starts = tl.requests["start"].dropna() if len(tl.requests) else []
    return float(starts.min()) if len(starts) else None


def write_chart(fig, path: Path, theme: str) -> None:
    from traceviz.charts.export import ImageExportError, write
    if fig is None:
        output.stderr.print(Text("traceviz: nothing to draw for this file"))
        return
    try:
        out = write(fig, path, theme=theme)
    except (ValueError, ImageExportError) as exc:  # no browser for PNG/SVG: one line too
        output.stderr.print(Text(f"traceviz: {output.printable(str(exc))}"))
        raise typer.Exit(2)
    output.stderr.print(Text(f"chart written to {out}"))


def check_chart(path: Path | None) -> None:
    """Refuse a chart we cannot write before any work, so stdout stays empty."""
    if path is not None and path.suffix.lower() not in (".html", ".png", ".svg"):
        output.stderr.print(Text(f"traceviz: cannot write a chart to {output.printable(path.name)!r}: "
                                 "use a .html, .png or .svg file name"))
        raise typer.Exit(2)


def check_theme(theme: str) -> None:
    if theme not in ("light", "dark", "talk"):
        output.stderr.print(Text(f"traceviz: unknown theme {output.printable(theme)!r}: choose light, dark or talk"))
        raise typer.Exit(2)


# ---------------------------------------------------------------- commands

def json_rows(df, table: str) -> None:
    """The rows of one of the model's tables as a JSON array: its stable fields first, in order."""
    from traceviz.model import JSON_FIELDS
    output.print_json(output.records(df, JSON_FIELDS[table]))


@app.command()
def info(file: FileArg, json: JsonOpt = False, keylog: KeylogOpt = None, rsa_key: RsaOpt = None) -> None:
    """What is in the file, and what traceviz can decode of it."""
    with guarded():
        tl = load(file, keylog, rsa_key)
        facts = describe(tl)
        if json:
            output.print_json(output.plain(facts))
            return
        for k in ("first", "last"):  # epoch seconds in --json, a date for people
            if k in facts:
                facts[k] = output.epoch_text(facts[k])
        secrets = facts.get("secrets")
        if isinstance(secrets, dict) and "text" in secrets:
            blocks = secrets.get("embedded_secrets_blocks", 0)
            facts["secrets"] = secrets["text"] + (f" ({blocks} embedded secrets block{'s' * (blocks != 1)})" if blocks else "")
        output.stdout.print(output.key_values(facts, title=f"{Path(tl.source.path).name}"))


def describe(tl) -> dict:
    src = tl.source
    facts: dict = {"file": src.path, "format": src.format + (" (gzip)" if src.compressed else ""),
                   "size_bytes": src.size}
    if len(tl.packets):
        ts = tl.packets["ts"]
        facts.update(frames=int(len(tl.packets)), first=float(ts.min()), last=float(ts.max()),
                     duration_s=round(float(ts.max() - ts.min()), 6))
        facts["link_types"] = dict(src.link_types)
        facts["transports"] = {str(k): int(v) for k, v in tl.packets["transport"].value_counts().items()}
    conns = tl.connections
    if len(conns):
        facts["connections"] = {str(k): int(v) for k, v in conns["transport"].value_counts().items()}
        if "close" in conns:
            facts["tcp_close"] = {str(k): int(v) for k, v in conns["close"].dropna().value_counts().items()}
        apps = conns["app"].dropna()
        if len(apps):
            facts["applications"] = {str(k): int(v) for k, v in apps.value_counts().items()}
    if len(tl.requests):
        facts["requests"] = int(len(tl.requests))
        facts["protocols"] = {str(k): int(v) for k, v in tl.requests["protocol"].dropna().value_counts().items()}
        facts["status_codes"] = {str(k): int(v) for k, v in tl.requests["status"].dropna().value_counts().sort_index().items()}
    if tl.decryption is not None:
        facts["secrets"] = dict(tl.decryption)
    for k in ("browser", "creator", "clock", "connections_inferred"):
        if k in src.detail and not isinstance(src.detail[k], (list, dict)):
            facts[k] = src.detail[k]
    pages = src.detail.get("pages")
    if isinstance(pages, list):
        facts["pages"] = len(pages)
        for i, page in enumerate(pages[:5]):
            title = page.get("title") or page.get("url") or page.get("id") or f"page {i + 1}"
            facts[f"page {i + 1}"] = {"title": title, "DOMContentLoaded_ms": page.get("onContentLoad"),
                                      "load_ms": page.get("onLoad")}
    facts["warnings"] = len(tl.warnings)
    return facts


@app.command()
def connections(file: FileArg, json: JsonOpt = False, transport: Annotated[Optional[str], typer.Option(
        help="Only tcp, udp or quic connections.", show_default=False)] = None,
                keylog: KeylogOpt = None, rsa_key: RsaOpt = None) -> None:
    """One row per connection; [bold]conn[/bold] is Wireshark's tcp.stream, so [italic]tshark -Y "tcp.stream eq N"[/italic] shows the same one."""
    with guarded():
        tl = load(file, keylog, rsa_key)
        df = tl.connections
        if transport:
            df = df[df["transport"] == transport]
        if json:
            json_rows(df, "connections")
            return
        cols = ["conn", "transport", "client", "server", "app", "start", "handshake_rtt", "packets",
                "bytes_c2s", "bytes_s2c", "close", "sni"]
        output.stdout.print(output.table(df, cols, title=f"{len(df)} connections in {Path(tl.source.path).name}",
                                         t0=first_ts(tl)))


@app.command()
def timeline(file: FileArg, conn: ConnOpt = None,
             layer: Annotated[Optional[str], typer.Option(help="Only this layer: tcp, tls, http, h2, quic, har, devtools.", show_default=False)] = None,
             kind: Annotated[Optional[str], typer.Option(help="Only this kind, e.g. SYN, RST, retransmission, ClientHello.", show_default=False)] = None,
             limit: Annotated[int, typer.Option(help="Show at most this many rows on a terminal (0: all).")] = 200,
             json: JsonOpt = False, keylog: KeylogOpt = None, rsa_key: RsaOpt = None) -> None:
    """The events, in order: handshakes, retransmissions, TLS messages, requests…"""
    with guarded():
        tl = load(file, keylog, rsa_key)
        ev = tl.events
        if conn is not None:
            ev = ev[ev["conn"] == conn]
        if layer:
            ev = ev[ev["layer"].str.lower() == layer.lower()]
        if kind:
            ev = ev[ev["kind"].str.lower() == kind.lower()]
        ev = ev.sort_values(["ts", "frame"], kind="stable")
        if json:
            json_rows(ev, "events")
            return
        shown = ev if not limit else ev.head(limit)
        output.stdout.print(output.table(shown, ["frame", "ts", "conn", "stream", "layer", "kind", "dir", "size", "detail"],
                                         title=f"{len(ev)} events", t0=first_ts(tl)))
        if limit and len(ev) > limit:
            output.stderr.print(Text(f"({len(ev) - limit} more: --limit 0 shows all, --json for scripts)"))


@app.command()
def requests(file: FileArg, json: JsonOpt = False, keylog: KeylogOpt = None, rsa_key: RsaOpt = None) -> None:
    """One row per HTTP exchange, from a capture (decrypted with --keylog) or a browser export."""
    with guarded():
        tl = load(file, keylog, rsa_key)
        df = tl.requests
        if json:
            json_rows(df, "requests")
            return
        cols = ["request", "conn", "stream", "protocol", "method", "host", "url", "status", "start", "ttfb", "end",
                "resp_bytes"]
        output.stdout.print(output.table(df, cols, title=f"{len(df)} requests", t0=first_ts(tl)))


@app.command()
def captures(json: JsonOpt = False) -> None:
    """The bundled captures of real traffic, and the concept each one shows."""
    from traceviz.captures import list_captures
    rows = list_captures()
    if json:
        output.print_json(output.plain(rows))
        return
    import pandas as pd
    df = pd.DataFrame(rows)
    if not len(df):
        output.stderr.print("no bundled captures found")
        return
    df["concepts"] = df["concepts"].map(lambda c: ", ".join(c))
    output.stdout.print(output.table(df, ["name", "concepts", "title", "path"], title=f"{len(df)} bundled captures"))
    output.stdout.print(Text("Run a recipe on one by name, e.g.  traceviz handshakes " + str(df["name"].iloc[0])))


@app.command("recipes")
def list_recipes(json: JsonOpt = False) -> None:
    """The recipes available: bundled ones and those in TRACEVIZ_RECIPES / --recipes folders."""
    rows = []
    for path in discover(_extra_recipe_dirs).values():
        head = read_header(path)
        rows.append({"name": head.name, "path": str(path), "question": head.question})
    if json:
        output.print_json(rows)
        return
    import pandas as pd
    output.stdout.print(output.table(pd.DataFrame(rows), ["name", "question", "path"], title="recipes"))


# ---------------------------------------------------------------- recipes as commands

def recipe_command(path: Path, doc: str = ""):
    """A typer command that loads FILE, runs the recipe at ``path`` and shows the Finding.

    The recipe module is imported when the command runs, not when it is built.
    """

    def command(file: FileArg, json: JsonOpt = False, chart: ChartOpt = None, theme: ThemeOpt = "light",
                figure: FigureOpt = None, conn: ConnOpt = None, keylog: KeylogOpt = None, rsa_key: RsaOpt = None,
                fail: FailOpt = False) -> None:
        with guarded():
            check_theme(theme)
            check_chart(chart)
            module = load_recipe(path)
            tl = load(file, keylog, rsa_key)
            finding = analyze(module, tl, conn)
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


def analyze(module: ModuleType, tl, conn: int | None):
    import inspect
    params = inspect.signature(module.analyze).parameters
    if conn is not None and "conn" not in params:
        raise InputError(tl.source.path, "this recipe does not take --conn")
    return module.analyze(tl, conn=conn) if "conn" in params else module.analyze(tl)


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
        app.command(head.name, help=head.doc.strip().split("\n\n")[0])(recipe_command(path, head.doc))
        taken.add(head.name)


@app.command()
def report(files: Annotated[list[str], typer.Argument(help="One or more captures, HARs or traces (or bundled capture names).",
                                                     show_default=False)],
           out: Annotated[Path, typer.Option("-o", "--output", help="The HTML page to write.")] = Path("traceviz-report.html"),
           theme: ThemeOpt = "light", keylog: KeylogOpt = None, rsa_key: RsaOpt = None) -> None:
    """Every recipe that applies, for every file, in one self-contained HTML page (works offline)."""
    from traceviz import report as reporting
    with guarded():
        check_theme(theme)
        if out.suffix.lower() not in (".html", ".htm"):
            raise InputError(str(out), "a report is an HTML page: name it .html")
        timelines = [load(f, keylog, rsa_key) for f in files]
        recipes = {}
        for name, path in discover(_extra_recipe_dirs).items():
            head = read_header(path)
            if head.error is not None or not head.runnable:
                continue  # already said when the commands were built
            try:
                recipes[name] = load_module(path)
            except Exception as exc:  # a broken user recipe is skipped, loudly
                warn(f"recipe {path} failed to load: {exc}")
        parts = reporting.sections(timelines, recipes)
        out.write_text(reporting.render(timelines, parts, theme), encoding="utf-8")
        ran = ", ".join(sorted({p.recipe for p in parts})) or "none applied"
        output.stderr.print(Text(f"report written to {out} ({ran})"))


@app.command("run")
def run_file(recipe: Annotated[Path, typer.Argument(help="A recipe .py file (see traceviz/recipe.py for the API).", show_default=False)],
             file: FileArg, json: JsonOpt = False, chart: ChartOpt = None, theme: ThemeOpt = "light",
             figure: FigureOpt = None, conn: ConnOpt = None, keylog: KeylogOpt = None, rsa_key: RsaOpt = None,
             fail: FailOpt = False) -> None:
    """Run a recipe file of your own on FILE, with the options of any recipe command.

    [italic]traceviz run RECIPE.py --help[/italic] shows that recipe's question;
    [italic]python RECIPE.py FILE[/italic] does the same as [italic]traceviz run RECIPE.py FILE[/italic].
    """
    recipe_command(recipe)(file, json=json, chart=chart, theme=theme, figure=figure, conn=conn,
                           keylog=keylog, rsa_key=rsa_key, fail=fail)


def run_recipe_standalone(path: Path, argv: list[str]) -> None:
    """``traceviz run RECIPE.py ARGS``: the recipe's own command, its docstring as its --help."""
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich",
                         context_settings={"help_option_names": ["-h", "--help"]})
    single.command()(recipe_command(path, read_header(path).doc))
    single(args=argv, prog_name=f"traceviz run {path}")


_extra_recipe_dirs: list[str] = []


def _take_recipes_option(argv: list[str]) -> list[str]:
    """``--recipes DIR`` must be known before commands are built, so it is read here."""
    rest, i = [], 0
    while i < len(argv):
        if argv[i] == "--recipes" and i + 1 < len(argv):
            _extra_recipe_dirs.append(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--recipes="):
            _extra_recipe_dirs.append(argv[i].split("=", 1)[1])
        else:
            rest.append(argv[i])
        i += 1
    return rest


def main(argv: list[str] | None = None) -> None:
    args = _take_recipes_option(list(sys.argv[1:] if argv is None else argv))
    if len(args) >= 2 and args[0] == "run" and not args[1].startswith("-"):
        return run_recipe_standalone(Path(args[1]), args[2:])   # a recipe file is a command of its own
    register_recipes(_extra_recipe_dirs)
    app(args=args, prog_name="traceviz")
