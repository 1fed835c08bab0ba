"""Shared test fixtures: where the corpus is, whether tshark is here."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("TRACEVIZ_CORPUS", ROOT / "tests" / "corpus"))

# Decoder bugs must fail tests, not turn into a user-facing warning.
os.environ.setdefault("TRACEVIZ_DEBUG", "1")


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not (CORPUS / "MANIFEST.json").is_file():
        pytest.skip(f"corpus not found at {CORPUS} (set TRACEVIZ_CORPUS)")
    return CORPUS


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if not path:
        pytest.skip("tshark is not installed (apt-get install tshark)")
    return path


@pytest.fixture
def tv(capsys):
    """``tv("proxy", FILE, "--json")`` -> (exit code, stdout, stderr): the CLI in this process.
    (tests/test_cli.py has its own, richer one.)"""
    from traceviz import cli

    def run(*args):
        capsys.readouterr()
        try:
            cli.main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err
    return run
