"""What each column measures, so every output shows it the same way.

The tables keep times as epoch seconds and durations as seconds (model.py);
people read times from one origin and durations in milliseconds.  This
module only names which column is which, so the terminal, the HTML report
and a notebook's ``Timeline`` agree; it imports nothing.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

# Moments, in epoch seconds (float).  A packet's ``ack`` is an integer and is not one of them.
EPOCH = frozenset({
    "ts", "start", "end", "syn", "synack", "ack", "last_syn", "first_ts", "first", "last",
    "opened", "first_byte", "last_byte", "closed", "client_hello_ts", "server_hello_ts", "finished_ts",
})

# Spans, in seconds.
DURATION = frozenset({
    "handshake_rtt", "rtt_server", "rtt_client", "connect_time", "irtt", "syn_wait", "server_half",
    "client_half", "syn_backoff", "ttfb", "blocked", "dns", "connect", "tls", "send", "wait", "receive",
    "duration", "total", "unattributed",
})

DURATION_DECIMALS = 3      # milliseconds to the microsecond: a capture's clock resolution
TIME_DECIMALS = 6          # seconds to the microsecond, as Wireshark's relative time column


def kind(column: str) -> str | None:
    """``"epoch"``, ``"duration"`` (seconds), ``"ms"`` (already milliseconds) or None."""
    if column in EPOCH:
        return "epoch"
    if column in DURATION:
        return "duration"
    if column.endswith("_ms"):
        return "ms"
    return None


def ms(seconds: float) -> str:
    """A duration in seconds as fixed-decimal milliseconds: ``25.194``."""
    return f"{seconds * 1000.0:.{DURATION_DECIMALS}f}"


def relative(ts: float, origin: float) -> str:
    """A moment as seconds since ``origin``: ``0.253368``."""
    return f"{ts - origin:.{TIME_DECIMALS}f}"


def utc(ts: float | None, time_only: bool = False) -> str:
    """Wall-clock UTC; a time no calendar holds (a damaged timestamp) as its number, said so."""
    if ts is None or (isinstance(ts, float) and math.isnan(ts)):
        return "\u2013"
    try:
        when = datetime.fromtimestamp(ts, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return f"{ts:.6f} (not a date)"
    return when.strftime("%H:%M:%S.%f" if time_only else "%Y-%m-%d %H:%M:%S.%f UTC")


def readable(value, column: str, origin: float | None) -> str | None:
    """A table cell in its unit (relative seconds, milliseconds), or None to leave it as it is."""
    k = kind(column)
    if k == "duration" and isinstance(value, (list, tuple)):
        return ", ".join(ms(v) for v in value)
    if not isinstance(value, float) or k is None:
        return None
    if math.isnan(value):
        return "\u2013"
    if k == "epoch":
        return relative(value, origin) if origin is not None else utc(value)
    return ms(value) if k == "duration" else f"{value:.{DURATION_DECIMALS}f}"
