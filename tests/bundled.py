"""The bundled captures for tests: a manifest entry, and a capture loaded once per session."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

CAPTURES = Path(__file__).resolve().parents[1] / "captures"


def entry(name: str) -> dict:
    """The manifest entry of a bundled capture (its ground truth is in ``facts``)."""
    for e in json.loads((CAPTURES / "manifest.json").read_text())["captures"]:
        if e["name"] == name:
            return e
    raise LookupError(name)


@lru_cache(maxsize=None)
def timeline(name: str):
    import traceviz
    return traceviz.load(CAPTURES / f"{name}.pcapng")
