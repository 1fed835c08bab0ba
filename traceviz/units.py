"""What each column measures, so every output shows it the same way.

The tables keep times as epoch seconds and durations as seconds (model.py);
people read times from one origin and durations in milliseconds.  This
module only names which column is which, so the terminal, the HTML report
and a notebook's ``Timeline`` agree; it imports nothing.
"""

from __future__ import annotations

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
