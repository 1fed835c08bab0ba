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

# Exit status for a bug in traceviz (not bad input, not a finding): scripts must not mistake it for either.
EXIT_INTERNAL = 3
_held: list[list[str]] = []      # warnings of the commands running (printed unless the command fails)


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Bad input (or an output we cannot write) → one line on stderr and exit 2; a bug in
    traceviz → one line and exit 3 (``TRACEVIZ_DEBUG=1`` shows its traceback); never a traceback.

    Warnings are held while the command runs and shown when it ends, unless it
    ends in exit 2: bad input gets exactly one line.
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
            _print_warnings(held)


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


STAGES = ("reading", "indexing", "tcp", "payload")   # what loader.load reports, in order


def _load_with_progress(traceviz, path, keylog, rsa_key):
    """A progress bar on stderr (never stdout: --json output stays clean) through load()'s stages."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<10}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=output.stderr, transient=True) as bar:
        task = bar.add_task(STAGES[0], total=len(STAGES))

        def step(stage: str) -> None:
            done = STAGES.index(stage) if stage in STAGES else 0
            bar.update(task, completed=done, description=stage)

        return traceviz.load(path, keylog=keylog, rsa_key=rsa_key, progress=step)


def show_warnings(warnings: list[str], most: int = 10) -> None:
    if _held:                    # inside a command: shown when it ends well
        _held[-1].extend(warnings)
        return
    _print_warnings(warnings, most)


def _print_warnings(warnings: list[str], most: int = 10) -> None:
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


# ---------------------------------------------------------------- rows

def json_rows(df, table: str) -> None:
    """The rows of one of the model's tables as a JSON array: its stable fields first, in order."""
    from traceviz.model import JSON_FIELDS
    output.print_json(output.records(df, JSON_FIELDS[table]))
