"""traceviz: explains what happened on the wire.

    >>> import traceviz
    >>> tl = traceviz.load("capture.pcapng")          # or a .har, a DevTools trace
    >>> tl.connections[["conn", "client", "server", "handshake_rtt", "close"]]
    >>> finding = traceviz.run("handshakes", tl)
    >>> finding.answer, finding.figure("ladder").show()
    >>> traceviz.load(["a.pcap", "b.pcap"])           # rotated files (or a folder of them): one capture
    >>> traceviz.export(["day/"], "out/")            # bigger than memory: a Parquet dataset
    >>> ds = traceviz.open_dataset("out/")           # its tables, lazily; ds.sql("select ...")

The names below are imported on first use (PEP 562): importing a decoder,
``traceviz.errors`` or the command line's ``--help`` must not pay for pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from traceviz.assemble.dataset import Dataset, open_dataset
    from traceviz.assemble.export import export
    from traceviz.errors import InputError
    from traceviz.loader import load
    from traceviz.model import Timeline
    from traceviz.recipe import Finding

__version__ = "0.1.0"

_LAZY = {"load": "traceviz.loader", "Timeline": "traceviz.model", "Finding": "traceviz.recipe",
         "InputError": "traceviz.errors", "export": "traceviz.assemble.export",
         "open_dataset": "traceviz.assemble.dataset"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'traceviz' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value     # once found, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def run(recipe: str, timeline: Timeline | Dataset, **options) -> Finding:
    """Run a bundled (or ``TRACEVIZ_RECIPES``) recipe by name on a timeline (or an exported dataset)."""
    from traceviz.recipe import discover, load_module

    found = discover()
    if recipe not in found:
        raise KeyError(f"no recipe named {recipe!r}; have: {', '.join(sorted(found))}")
    return load_module(found[recipe]).analyze(timeline, **options)


__all__ = ["load", "run", "export", "open_dataset", "Timeline", "Finding", "InputError", "__version__"]
