"""The ``traceviz`` process ends without tearing the interpreter down (``cli.entry``),
and loses nothing by it: every byte of output, the exit status, atexit handlers,
a thread still working.  Ground truth: the same command run in-process through
``cli.main``, and what the files and handlers made here must leave behind."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from traceviz import cli

ROOT = Path(__file__).resolve().parents[1]
H2_STALLS = ROOT / "captures" / "h2-stalls.pcapng"


def env() -> dict:
    """The environment a user has: block-buffered output to a pipe, as on any shell."""
    import os
    e = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS", "PYTHONUNBUFFERED")}
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [e.get("PYTHONPATH")] if p])
    return e


def traceviz(*args, cwd=None) -> subprocess.CompletedProcess:
    """``python -m traceviz ARGS``: the entry the console script uses too."""
    return subprocess.run([sys.executable, "-m", "traceviz", *map(str, args)], capture_output=True, text=True,
                          env=env(), cwd=cwd, timeout=300)


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env(), timeout=60)


def in_process(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    try:
        cli.main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().out


def test_a_big_output_arrives_whole(capsys):
    """More than a pipe holds (64 KiB): the process's JSON is the in-process run's, byte for byte."""
    p = traceviz("timeline", H2_STALLS, "--json")
    code, out = in_process(capsys, "timeline", H2_STALLS, "--json")
    assert p.returncode == 0 == code, p.stderr
    assert len(p.stdout) > 65536 and json.loads(p.stdout)
    assert p.stdout == out


def test_exit_statuses_are_kept(capsys, tmp_path):
    assert traceviz("connections", tmp_path / "missing.pcap").returncode == 2
    assert traceviz("handshakes", "tcp-handshakes", "--fail").returncode == 1     # a finding asked to fail on
    assert traceviz("nonsense-command").returncode == 2                          # usage error
    ok = traceviz("info", "tcp-handshakes")
    assert ok.returncode == 0 and "tcp-handshakes" in ok.stdout


def test_atexit_handlers_still_run(tmp_path):
    """A user's recipe that registers an exit handler: it runs, and what it prints is flushed."""
    folder = tmp_path / "recipes"
    folder.mkdir()
    marker = tmp_path / "handled"
    (folder / "leaves_a_mark.py").write_text(textwrap.dedent(f'''
        """Which connections are there (and a mark left at exit)?"""
        import atexit
        import pandas as pd
        from traceviz.recipe import Finding

        NAME = "marks"


        def _mark():
            open({str(marker)!r}, "w").write("done")
            print("goodbye from the handler")


        def analyze(tl):
            atexit.register(_mark)
            return Finding(title="Marks", question=__doc__, rows=pd.DataFrame({{"conn": tl.connections["conn"]}}),
                           answer=["marked"])
    '''))
    p = traceviz("--recipes", folder, "marks", "tcp-handshakes", "--json")
    assert p.returncode == 0, p.stderr
    assert marker.read_text() == "done"
    assert p.stdout.rstrip().endswith("goodbye from the handler")


def test_leave_does_what_sys_exit_does():
    assert python("from traceviz.cli import leave; leave(None)").returncode == 0
    assert python("from traceviz.cli import leave; leave(3)").returncode == 3
    assert python("from traceviz.cli import leave; leave(-1)").returncode == 255
    text = python("from traceviz.cli import leave; leave('bye')")
    assert text.returncode == 1 and text.stderr == "bye\n"


def test_a_thread_still_working_is_waited_for(tmp_path):
    """A non-daemon thread left running: the ordinary exit, which waits for it."""
    marker = tmp_path / "finished"
    p = python(f"""
        import threading, time
        from traceviz.cli import leave

        def late():
            time.sleep(0.3)
            open({str(marker)!r}, "w").write("yes")

        threading.Thread(target=late).start()
        print("before", flush=True)
        leave(4)
    """)
    assert p.returncode == 4 and p.stdout == "before\n"
    assert marker.read_text() == "yes"


def test_a_closed_pipe_is_still_a_success():
    """``traceviz ... | head``: the reader goes away early; no traceback, status 0."""
    p = subprocess.run(f"{sys.executable} -m traceviz timeline {H2_STALLS} --json | head -c 100 >/dev/null; "
                       "echo ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True,
                       text=True, env=env(), timeout=300)
    assert p.stdout.strip() == "0" and "Traceback" not in p.stderr, p.stderr
