"""A browser export of any kind in: the records of whichever format it is.

The file is parsed once; its kind is decided from the parsed structure (not
its name), then the format's reader takes the value.  HAR bodies are dropped
during the parse when the first bytes already say HAR.
"""

from __future__ import annotations

from traceviz.errors import InputError
from traceviz.sources import harfields, jsonfile
from traceviz.sources.cdp import CdpLog, cdp_from_json
from traceviz.sources.har import CUTS, HarLog, drop_bodies, har_from_json
from traceviz.sources.trace import TraceLog, trace_from_json


def read_export(path: str) -> HarLog | TraceLog | CdpLog:
    """A HAR, DevTools trace or DevTools protocol log; other JSON raises ``InputError`` naming it."""
    hint = jsonfile.sniff_json(path)
    har = hint == "har"      # a HAR's bodies are dropped as the file is read, and again as it is parsed
    if har:
        fast = harfields.read(path)          # msgspec: only the fields the records need
        if fast is not None:
            return fast
    value, facts = jsonfile.parse(path, object_hook=drop_bodies if har else None, drop=CUTS if har else None)
    kind = jsonfile.classify(value)
    if kind == "har":
        return har_from_json(path, value, facts)
    if kind == "devtools-trace":
        return trace_from_json(path, value, facts)
    if kind == "devtools-log":
        return cdp_from_json(path, value, facts)
    raise InputError(path, f"{jsonfile.what_it_is(value)}; cannot read it as a browser export")
