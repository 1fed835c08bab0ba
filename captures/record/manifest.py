"""Read, merge and write ``captures/manifest.json``.

Two recorders add entries at the same time, so every write happens under an
exclusive ``fcntl`` lock on the manifest file itself and rewrites it in place:
read, merge by ``name``, write, all while holding the lock.

The format (``"format": 1``)::

    {"format": 1,
     "captures": [
       {"name": "tcp-handshakes",                  # unique; what `traceviz captures` shows
        "file": "tcp-handshakes.pcapng",           # paths relative to captures/
        "title": "...", "concepts": ["tcp-handshake", ...],
        "look_at": "what a learner should look at",
        "recorded": {"command": "...", "software": {...}, "one_way_delay_ms": 12.5,
                     "loss": 0.0, "capture_point": "...", "date": "..."},
        "keylog": "x.keys" | null, "private_key": "x.key.pem" | null,
        "extra_files": {"har": "...", ...},        # optional
        "facts": {...}}                            # ground truth from the recording side's logs
     ]}

``facts`` (every key optional; tests/test_captures.py checks each one present):

    rtt_ms               configured round-trip time (2 x one-way relay delay)
    connections          list, one per transport connection the recording side opened:
        transport        "tcp" | "udp"
        client, server   "ip:port" (the client's port from getsockname())
        outcome          fin-client | fin-server | rst-client | rst-server | refused | unanswered
        syns             SYNs the client sent (its kernel's retransmissions included)
        tls              {"version": "TLSv1.3", "cipher": "...", "resumed": bool}
        requests         [{"method", "path", "status"}] in order sent on this connection
    requests             total HTTP requests sent;  statuses: {"200": 10, ...}
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

CAPTURES = Path(__file__).resolve().parent.parent
MANIFEST = CAPTURES / "manifest.json"
FORMAT = 1


def empty() -> dict:
    return {"format": FORMAT, "captures": []}


def load(path: Path = MANIFEST) -> dict:
    """The manifest as a dict (an empty one if the file does not exist yet)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return empty()
    with open(path) as fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        return json.loads(fh.read() or "null") or empty()


def merge(doc: dict, entries: list[dict]) -> dict:
    """Replace entries with the same name, append new ones; order by name for stable diffs."""
    for e in entries:
        check_entry(e)
    by_name = {e["name"]: e for e in doc.get("captures", [])}
    by_name.update({e["name"]: e for e in entries})
    return {"format": FORMAT, "captures": [by_name[k] for k in sorted(by_name)]}


def update(entries: list[dict], path: Path = MANIFEST) -> dict:
    """Merge ``entries`` into the manifest on disk, under the lock; returns the new manifest."""
    path = Path(path)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        text = fh.read()
        doc = merge(json.loads(text) if text.strip() else empty(), entries)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(doc, indent=1, sort_keys=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o644)
    return doc


REQUIRED = ("name", "file", "title", "concepts", "look_at", "recorded", "facts")


def check_entry(e: dict) -> None:
    missing = [k for k in REQUIRED if k not in e]
    if missing:
        raise ValueError(f"manifest entry {e.get('name')!r} lacks {', '.join(missing)}")
    if not isinstance(e["concepts"], list) or not all(isinstance(c, str) for c in e["concepts"]):
        raise ValueError(f"manifest entry {e['name']!r}: concepts must be a list of strings")
