"""Hostile JSON logs for the fuzz tests: odd values under the keys a reader looks at, and the
check that loading one either works or refuses in one line naming the file."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

import traceviz
from traceviz.errors import InputError


def json_values(keys: list[str]):
    """Any JSON value, objects keyed by ``keys`` (the names the reader looks for)."""
    return st.recursive(
        st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=12),
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(keys), kids, max_size=5),
        max_leaves=25)


def loads_or_refuses(path: Path) -> None:
    """A Timeline, or an InputError of one line naming the file: never another exception."""
    try:
        traceviz.load(path)
    except InputError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


def damaged_copies(seed: bytes, most_edits: int = 8):
    """Copies of ``seed`` cut short somewhere, with a few bytes overwritten."""
    edits = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=most_edits)
    return st.builds(_damaged, st.just(seed), st.integers(1, len(seed)), edits)


def _damaged(seed: bytes, cut: int, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(seed[:cut])
    for at, byte in edits:
        if at < len(data):
            data[at] = byte
    return bytes(data)


def cli_error_line(command: str, path: Path) -> str:
    """``traceviz COMMAND PATH`` run as a user runs it: exit 2, nothing on stdout, and the one
    line it says on stderr (returned)."""
    import os
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "traceviz", command, str(path)], capture_output=True, text=True,
                         cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0]
    return lines[0]
