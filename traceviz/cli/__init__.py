"""The ``traceviz`` command: a thin typer app over the library.

Tables go to stdout (rich on a terminal, a JSON array with ``--json``);
warnings, progress and errors go to stderr.  Exit status: 0 success,
1 a finding you asked to fail on (``--fail``), 2 bad input (one line naming
the file and, for packet data, the frame).

One module per group of commands (``tables``, ``catalog``, ``report``,
``run``; recipes become commands in ``recipes``); ``common`` holds what they
share.  The package imports only typer, rich and the standard library when it is
loaded: ``traceviz --help`` must start fast, so pandas and the rest come in
with the command that needs them, and each recipe command is built from what
its file declares (``recipe.read_header``) and imported only when it runs.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path

# Each module adds its commands to the app; --help lists them in this order.
from traceviz.cli import tables, catalog, report, run, compare, versions  # noqa: F401,I001
from traceviz.cli import export  # noqa: F401,E402
from traceviz.cli import sql  # noqa: F401,E402
from traceviz.cli import verify  # noqa: F401,E402
from traceviz.cli import conversations, flow, follow, iostat  # noqa: F401,I001 - Wireshark's views
from traceviz.cli.common import STAGES as _STAGES, app, flag_values  # noqa: F401 - _STAGES: the progress bar's stages
from traceviz.cli.recipes import extra_recipe_dirs, register_recipes, run_recipe_standalone, take_recipes_option


def main(argv: list[str] | None = None) -> None:
    extra_recipe_dirs.clear()        # this run's --recipes folders only (tests call main() repeatedly)
    args = flag_values(take_recipes_option(list(sys.argv[1:] if argv is None else argv)))
    if len(args) >= 2 and args[0] == "run" and not args[1].startswith("-"):
        return run_recipe_standalone(Path(args[1]), args[2:])   # a recipe file is a command of its own
    register_recipes(extra_recipe_dirs)
    app(args=args, prog_name="traceviz")


def entry() -> None:
    """The ``traceviz`` command as a process (the console script, ``python -m traceviz``):
    ``main``, then an exit that skips tearing the interpreter down.

    Tearing down after a big load frees the tables and rows object by object
    (~0.2 s after a million packets) for memory the kernel takes back at once
    when the process ends.  What an exit must do is still done: stdout and
    stderr are flushed and the atexit handlers run (a chart export's browser
    is closed by one).  ``main`` itself returns as usual: tests and scripts call it."""
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code
    leave(code)


def leave(code) -> None:
    """End the process with ``code`` as ``sys.exit`` would, without the interpreter's teardown."""
    if code is None:
        code = 0
    elif not isinstance(code, int):      # SystemExit("text"): the text on stderr, status 1
        print(code, file=sys.stderr)
        code = 1
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if run_exit_handlers is None or others:      # a thread still working: the ordinary exit waits for it
        sys.exit(code)
    _flush()
    run_exit_handlers()
    _flush()                                     # what the handlers printed
    os._exit(code & 0xFF)                        # what sys.exit makes of any int


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):            # a closed pipe or file: nothing more to say there
            pass
