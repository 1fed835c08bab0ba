"""Errors and warnings about bad input.

A user never sees a traceback for bad input.  Readers and decoders raise
``InputError`` when nothing usable can be read; the CLI prints its one line and
exits 2.  When part of a file is usable they record a warning (same format)
on ``SourceInfo.warnings`` and go on.
"""

from __future__ import annotations


def describe(path: str, message: str, frame: int | None = None) -> str:
    """The one-line form every bad-input message takes: ``FILE: frame N: what``."""
    where = f"{path}: frame {frame}: " if frame is not None else f"{path}: "
    return where + message


class InputError(Exception):
    """The input cannot be analysed at all."""

    def __init__(self, path: str, message: str, frame: int | None = None):
        self.path, self.message, self.frame = str(path), message, frame
        super().__init__(describe(self.path, message, frame))
