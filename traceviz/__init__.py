"""traceviz: explains what happened on the wire.

    >>> import traceviz
    >>> tl = traceviz.load("capture.pcapng")          # or a .har, a DevTools trace
    >>> tl.connections[["conn", "client", "server", "handshake_rtt", "close"]]
    >>> finding = traceviz.run("handshakes", tl)
    >>> finding.answer, finding.figure("ladder").show()
"""

from traceviz.errors import InputError
from traceviz.loader import load
from traceviz.model import Timeline
from traceviz.recipe import Finding

__version__ = "0.1.0"


def run(recipe: str, timeline: Timeline, **options) -> Finding:
    """Run a bundled (or ``TRACEVIZ_RECIPES``) recipe by name on a timeline."""
    from traceviz.recipe import discover, load_module

    found = discover()
    if recipe not in found:
        raise KeyError(f"no recipe named {recipe!r}; have: {', '.join(sorted(found))}")
    return load_module(found[recipe]).analyze(timeline, **options)


__all__ = ["load", "run", "Timeline", "Finding", "InputError", "__version__"]
