"""What every command shares: the typer app, the common options, loading with
progress and warnings, one-line errors, writing charts, JSON rows.

This package imports only typer, rich and the standard library when it is
loaded: ``traceviz --help`` must start fast, so pandas and the rest come in
with the command that needs them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.text import Text

from traceviz import output
from traceviz.errors import InputError

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

FileArg = Annotated[list[str], typer.Argument(help="A pcap/pcapng (.gz too), HAR or DevTools trace file, or a bundled capture's "
                                                   "name; several captures (or a folder of them) are read as one; a folder "
                                                   "written by traceviz export is read as its tables.",
                                              metavar="FILE", show_default=False)]
JsonOpt = Annotated[Optional[str], typer.Option(
    "--json", metavar="", show_default=False,
    help="Print the rows as a JSON array on stdout, nothing else. A recipe's --json=findings prints "
         "one object: its answer, summary, problems and rows.")]
KeylogOpt = Annotated[Optional[Path], typer.Option("--keylog", metavar="FILE", show_default=False,
                                                   help="NSS key log (SSLKEYLOGFILE) to decrypt TLS; pcapng-embedded "
                                                        "secrets, and a bundled capture's own key log, are used without it.")]
RsaOpt = Annotated[Optional[Path], typer.Option("--rsa-key", metavar="PEM", show_default=False,
                                                help="Server's PEM private key: decrypts TLS 1.2 sessions that used RSA key exchange.")]
ChartOpt = Annotated[Optional[Path], typer.Option("--chart", metavar="PATH", show_default=False,
                                                  help="Write a chart: .html (self-contained, works offline), .png or .svg.")]
ThemeOpt = Annotated[str, typer.Option("--theme", metavar="NAME",
                                       help="Chart theme: light, dark, or talk (large type, 16:9, for slides).")]
ConnOpt = Annotated[Optional[int], typer.Option("--conn", metavar="N", show_default=False,
                                                help="Connection number (the same as Wireshark's tcp.stream).")]
WhereOpt = Annotated[Optional[str], typer.Option(
    "--where", metavar="EXPR", show_default=False,
    help="Keep what this expression selects: pandas-query syntax over the table's columns "
         "(\"server == '10.0.0.2:443' and handshake_rtt > 0.1\", \"status >= 500\") or Wireshark's "
         "display filters (\"tcp.stream eq 3\", \"ip.addr == 10.0.0.1\", \"tcp.port == 443\"). A table "
         "command filters its rows; a recipe, report or info keeps the connections it selects.")]
FigureOpt = Annotated[Optional[str], typer.Option("--figure", metavar="NAME", show_default=False,
                                                  help="Which figure --chart writes (default: the first).")]
FailOpt = Annotated[bool, typer.Option("--fail", metavar="", help="Exit 1 when the recipe finds something off (for CI checks); "
                                                                  "what it found goes to stderr.")]
AllOpt = Annotated[bool, typer.Option("--all", metavar="", help=f"Show every row and every sentence (a table shows its "
                                                                f"first {output.PAGE} rows, an answer its first "
                                                                f"{output.ANSWER_PAGE} sentences).")]
WideOpt = Annotated[bool, typer.Option("--wide", metavar="", help="Every column, nothing shortened (lines may be wider than the terminal).")]
AbsOpt = Annotated[bool, typer.Option("--abs", metavar="", help="Times as UTC wall-clock time, not seconds since the first packet.")]


def _version(value: bool) -> None:
    if value:
        from traceviz import __version__
        output.stdout.print(Text(f"traceviz {__version__}"), soft_wrap=True)
        raise typer.Exit(0)


@app.callback()
def _top(version: Annotated[bool, typer.Option("--version", metavar="", is_eager=True, callback=_version,
                                               help="Print the version and exit.")] = False) -> None:
    """Explain what happened on the wire."""


# typer prints a type column (<str>, <list[str]>, <bool>) beside each parameter; the metavars given
# above say more (FILE, N, PATH), and a flag (--help too) takes no value to describe.  An argument's
# metavar is already its name in that panel, so it shows no type.
def _type_column(original):
    def column(self, ctx):
        if isinstance(self, typer.core.TyperArgument):
            return None if self.metavar else original(self, ctx)
        if self.metavar is not None:
            return self.metavar or None
        return None if getattr(self, "is_flag", False) else original(self, ctx)
    return column


for _kind in (typer.core.TyperArgument, typer.core.TyperOption):
    _kind.display_type_rich = _type_column(_kind.display_type_rich)


def rows_json(value: str | None, findings: bool = False) -> str | None:
    """What ``--json`` asked for: None, "rows" or (recipes only) "findings"; else exit 2."""
    if value is None:
        return None
    mode = value or "rows"
    allowed = ("rows", "findings") if findings else ("rows",)
    if mode not in allowed:
        raise InputError("--json", f"unknown value {mode!r}: use --json" + (" or --json=findings" if findings else "")
                         + ("" if findings else " (findings are a recipe's)"))
    return mode


def flag_values(argv: list[str]) -> list[str]:
    """``--json`` alone means ``--json=rows``: the option takes a value only after ``=``,
    so ``--json FILE`` still reads FILE as the file."""
    return ["--json=rows" if a == "--json" else a for a in argv]


# ---------------------------------------------------------------- plumbing

# Exit status for a bug in traceviz (not bad input, not a finding): scripts must not mistake it for either.
EXIT_INTERNAL = 3
_held: list[list[str]] = []      # warnings of the commands running (printed unless the command fails)


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Bad input (or an output we cannot write) → one line on stderr and exit 2; a bug in
    traceviz → one line and exit 3 (``TRACEVIZ_DEBUG=1`` shows its traceback); never a traceback.

    Warnings (and notes) are held while the command runs and shown when it ends,
    unless it ends in exit 2 or 3: bad input gets exactly one line.
    """
    _held.append([])
    try:
        yield
    except InputError as exc:
        _held[-1].clear()
        _one_line(str(exc))
        raise typer.Exit(2)
    except BrokenPipeError:  # `traceviz timeline big.pcap | head`
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")
        raise typer.Exit(0)
    except typer.Exit as exc:
        if exc.exit_code == 2:       # refused after its own one line: no warnings after it
            _held[-1].clear()
        raise
    except (typer.Abort, typer.TyperException):
        raise
    except OSError as exc:
        if exc.filename is None:
            raise
        _held[-1].clear()
        _one_line(f"{exc.filename}: cannot write: {exc.strerror or type(exc).__name__}")
        raise typer.Exit(2)
    except Exception as exc:
        if os.environ.get("TRACEVIZ_DEBUG"):
            raise
        _held[-1].clear()
        _one_line(f"internal error in {_where(exc)} ({type(exc).__name__}: {exc}); please report it "
                  "(TRACEVIZ_DEBUG=1 shows the traceback)")
        raise typer.Exit(EXIT_INTERNAL)
    finally:
        held = _held.pop()
        if _held:
            _held[-1].extend(held)
        else:
            _print_warnings_while_stderr_is_open(held)


def _print_warnings_while_stderr_is_open(held: list[str]) -> None:
    """``traceviz x F 2>&1 | head`` closes stderr too: its warnings then have no reader, and
    the exit status stays the command's (not 1, which scripts read as a --fail finding)."""
    try:
        _print_warnings(held)
    except BrokenPipeError:
        with contextlib.suppress(Exception):
            sys.stderr = open(os.devnull, "w")
            output.stderr.file = sys.stderr


def _one_line(message: str) -> None:
    output.stderr.print(Text(f"traceviz: {output.printable(message)}"))


def _where(exc: BaseException) -> str:
    """The innermost function of ours a traceback went through: ``module.function``."""
    import traceback
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f"{os.sep}traceviz{os.sep}" in f.filename]
    if not frames:
        return "traceviz"
    f = frames[-1]
    module = f.filename.rsplit(f"{os.sep}traceviz{os.sep}", 1)[1].removesuffix(".py").replace(os.sep, ".")
    return f"{module}.{f.name}"


def load(path: str | list[str], keylog: Path | None = None, rsa_key: Path | None = None, **scope):
    """Load with a progress line on stderr for big files, then show the warnings.
    ``scope``: what ``traceviz.load`` builds (``tables``: only the tables the command reads;
    ``measure_tcp``: bytes in flight and RTT samples too; ``transport_only``: nothing above
    TCP and UDP; ``keepalive_facts``: False, connections without them; ``events``: "tcp",
    TCP's events alone).

    Several paths (or a folder of captures) are one capture; a folder ``traceviz export``
    wrote is its Dataset."""
    import traceviz

    if isinstance(path, (list, tuple)) and len(path) == 1:
        path = path[0]
    big = sum(_size(Path(p)) for p in ([path] if isinstance(path, str) else path)) > 32 * 1024 * 1024
    if big and output.stderr.is_terminal:
        tl = _load_with_progress(traceviz, path, keylog, rsa_key, scope)
    else:
        tl = traceviz.load(path, keylog=keylog, rsa_key=rsa_key, **scope)
    show_warnings(tl.warnings)
    bundled = tl.source.detail.get("bundled_keylog") if keylog is None else None
    if bundled:
        note(f"using the bundled key log {Path(bundled).name} (--keylog FILE to use another)")
    return tl


STAGES = ("reading", "indexing", "tcp", "payload")   # what loader.load reports, in order


def _size(p: Path) -> int:
    """Bytes of a file, or of the files directly in a folder (0 if neither)."""
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.iterdir() if f.is_file()) if p.is_dir() else 0


def _load_with_progress(traceviz, path, keylog, rsa_key, scope: dict):
    """A progress bar on stderr (never stdout: --json output stays clean) through load()'s stages."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<10}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=output.stderr, transient=True) as bar:
        task = bar.add_task(STAGES[0], total=len(STAGES))

        def step(stage: str) -> None:
            done = STAGES.index(stage) if stage in STAGES else 0
            bar.update(task, completed=done, description=stage)

        return traceviz.load(path, keylog=keylog, rsa_key=rsa_key, progress=step, **scope)


def show_warnings(warnings: list[str], most: int = 10) -> None:
    if _held:                    # inside a command: shown when it ends well
        _held[-1].extend(warnings)
        return
    _print_warnings(warnings, most)


def note(message: str) -> None:
    """A dim line on stderr about what the command chose; held like warnings inside a command."""
    if _held:
        _held[-1].append(_Note(message))
        return
    output.stderr.print(Text(output.printable(message), style="dim"))


class _Note(str):
    """A held line that is a note, not a warning."""


def _print_warnings(held: list[str], most: int = 10) -> None:
    warnings = [w for w in held if not isinstance(w, _Note)]
    for w in warnings[:most]:
        warn(w)
    if len(warnings) > most:
        output.stderr.print(Text(f"warning: … and {len(warnings) - most} more", style="yellow"))
    for n in held:
        if isinstance(n, _Note):
            note(n)


def warn(message: str) -> None:
    output.stderr.print(Text(f"warning: {output.printable(message)}", style="yellow"))


def clock(tl, absolute: bool = False) -> output.Clock:
    """The one time origin of a command's output (--abs: wall-clock time)."""
    c = output.time_origin(tl)
    return output.Clock(c.origin, absolute, c.what)


def write_chart(fig, path: Path, theme: str) -> None:
    from traceviz.charts.export import ImageExportError, write
    if fig is None:
        raise InputError(str(path), "nothing to draw for this file; no chart written")
    try:
        out = write(fig, path, theme=theme)
    except (ValueError, ImageExportError) as exc:  # no browser for PNG/SVG: one line too
        raise InputError(str(path), str(exc)) from None
    output.stderr.print(Text(f"chart written to {out}"))


def check_chart(path: Path | None) -> None:
    """Refuse a chart we cannot write before any work, so stdout stays empty."""
    if path is not None and path.suffix.lower() not in (".html", ".png", ".svg"):
        raise InputError(str(path), "cannot write a chart here: use a .html, .png or .svg file name")


def check_theme(theme: str) -> None:
    check_choice("theme", theme, ("light", "dark", "talk"))


def check_choice(option: str, value: str | None, choices, where: str = "") -> None:
    """An option's value must be one of ``choices`` (case-insensitive), else exit 2 naming them."""
    if value is None:
        return
    known = list(dict.fromkeys(str(c) for c in (sorted(choices, key=str.lower) if isinstance(choices, (set, frozenset))
                                                 else choices)))
    if value.lower() not in {c.lower() for c in known}:
        have = "none here" if not known else known[0] if len(known) == 1 else f"{', '.join(known[:-1])} or {known[-1]}"
        raise InputError(f"--{option}", f"unknown {option} {value!r}{where}: choose {have}")


def check_conn(tl, conn: int | None, conns=None) -> None:
    """--conn must name a connection of the file (``conns``: the ones that count here)."""
    if conn is None:
        return
    have = sorted(int(c) for c in (tl.connections["conn"] if conns is None else conns))
    if conn not in have:
        raise InputError(tl.source.path, f"no connection {conn}; connections here: {number_ranges(have) or 'none'}")


def number_ranges(numbers: list[int]) -> str:
    """``0-5, 7, 9-12``."""
    out: list[str] = []
    for n in sorted(set(numbers)):
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in out)


# ---------------------------------------------------------------- rows

def json_rows(df, table: str) -> None:
    """The rows of one of the model's tables as a JSON array: its stable fields first, in order."""
    from traceviz.model import JSON_FIELDS
    output.print_json(output.records(df, JSON_FIELDS[table]))


def filtered(df, where: str | None, table: str):
    """``df`` with ``--where`` applied (an expression that cannot be read is bad input)."""
    from traceviz.filters import where as select
    return select(df, where, table)


def narrowed(tl, where: str | None):
    """``tl`` kept to the connections ``--where`` selects (``filters.connections_where``):
    what a command that analyses whole connections (a recipe, ``report``, ``info``) reads."""
    if where is None or not where.strip():
        return tl
    if not hasattr(tl, "only"):
        raise InputError("--where", "an exported dataset is filtered in SQL: traceviz sql DIR \"SELECT ... WHERE ...\"")
    from traceviz.filters import connections_where
    conns = connections_where(tl, where)
    if not conns:
        raise InputError(tl.source.path, f"--where {where!r} selects no connection")
    return tl.only(conns)
