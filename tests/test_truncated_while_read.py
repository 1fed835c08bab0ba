"""A capture truncated by another process while we read it: no SIGBUS, the bytes we read stay.

Big files are memory-mapped; a truncated mapping kills its reader with SIGBUS
(exit 135, nothing on stderr).  The reader runs in a child process here, so
that a SIGBUS fails the test instead of killing it.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from traceviz.sources.reader import MMAP_FROM

ROOT = Path(__file__).resolve().parents[1]

READER = r"""
import hashlib, sys
from traceviz.sources.reader import read_capture
cap = read_capture(sys.argv[1])
print(type(cap.buf).__name__, len(cap), flush=True)
sys.stdin.readline()                      # the parent truncates the file meanwhile
h = hashlib.sha256()
for i in range(1, len(cap) + 1):
    h.update(cap.frame_bytes(i))
print(h.hexdigest(), flush=True)
"""


def _big_pcap(path: Path) -> str:
    size = 1000
    frames = MMAP_FROM // (size + 16) + 100
    h = hashlib.sha256()
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(frames):
            frame = struct.pack(">I", i) * (size // 4)
            h.update(frame)
            f.write(struct.pack("<IIII", 1_700_000_000 + i, 0, size, size) + frame)
    return h.hexdigest()


@contextmanager
def _reader(script: str, path: Path):
    """``script`` reading ``path`` in a child process (a SIGBUS kills it, not the test)."""
    child = subprocess.Popen([sys.executable, "-c", script, str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()


def _rest(child) -> str:
    """What the reader prints once told to go on, after it exited well."""
    out, err = child.communicate("go\n", timeout=60)
    assert child.returncode == 0, f"reader died ({child.returncode}): {err[-500:]}"
    return out.strip()


def test_truncated_while_mapped(tmp_path):
    path = tmp_path / "big.pcap"
    expected = _big_pcap(path)
    assert path.stat().st_size >= MMAP_FROM
    with _reader(READER, path) as child:
        kind, _ = child.stdout.readline().split()
        assert kind == "mmap"                    # the big file was mapped, not copied
        os.truncate(path, 0)                     # waits until the reader has made the pages its own
        assert path.stat().st_size == 0
        assert _rest(child) == expected


def test_a_file_open_for_writing_is_read_not_mapped(tmp_path):
    """A live capture (a writer has the file open): no lease is possible, so it is copied."""
    from traceviz.sources.reader import read_capture
    path = tmp_path / "live.pcap"
    expected = _big_pcap(path)
    with path.open("ab"):
        cap = read_capture(path)
    assert isinstance(cap.buf, bytes)
    h = hashlib.sha256()
    for i in range(1, len(cap) + 1):
        h.update(cap.frame_bytes(i))
    assert h.hexdigest() == expected


# What both release scripts below start with: the capture read (mapped), its bytes' digest.
RELEASING = r"""
import hashlib, sys
from traceviz.sources.mapping import release_pages
from traceviz.sources.reader import read_capture

def file_pages_kb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("RssFile")).split()[1])

def digest(cap):
    h = hashlib.sha256()
    for i in range(1, len(cap) + 1):
        h.update(cap.frame_bytes(i))
    return h.hexdigest()

cap = read_capture(sys.argv[1])
first = digest(cap)
"""

RELEASER = RELEASING + r"""
held = file_pages_kb() // 1024
release_pages(cap.buf)
print(type(cap.buf).__name__, first, held, file_pages_kb() // 1024, flush=True)
sys.stdin.readline()                      # the parent truncates the file meanwhile
release_pages(cap.buf)                    # the map is a private copy now: its pages must stay
print(digest(cap), flush=True)
"""

def test_released_pages_read_back_the_same_also_after_a_truncation(tmp_path):
    """The loader hands the file's pages back between tiers: reading them again faults them in
    from the file -- until the file is truncated: then the map is a private copy, never dropped."""
    path = tmp_path / "big.pcap"
    expected = _big_pcap(path)
    with _reader(RELEASER, path) as child:
        kind, first, held, after = child.stdout.readline().split()
        assert kind == "mmap" and first == expected
        assert int(held) - int(after) >= MMAP_FROM // 2**20 - 2     # the walked file left resident memory
        os.truncate(path, 0)
        assert _rest(child) == expected


RANGED = RELEASING + r"""
start, length = len(cap.buf) // 4 + 123, len(cap.buf) // 2      # not on page boundaries
held = file_pages_kb()
release_pages(cap.buf, start, length)
after = file_pages_kb()
print(type(cap.buf).__name__, first, held - after, length // 1024, digest(cap), flush=True)
sys.stdin.readline()                      # the parent truncates the file meanwhile
release_pages(cap.buf, start, length)     # the map is a private copy now: its pages must stay
print(digest(cap), flush=True)
"""

def test_a_released_range_reads_back_the_same_also_after_a_truncation(tmp_path):
    """A walk hands back one window of the file at a time: just that range's pages leave, the
    frames read the same; once a truncation made the map a private copy, a range stays."""
    path = tmp_path / "big.pcap"
    expected = _big_pcap(path)
    with _reader(RANGED, path) as child:
        kind, first, dropped, length, again = child.stdout.readline().split()
        assert kind == "mmap" and first == expected and again == expected
        # The whole pages of the range, give or take the two it only partly covers.
        assert abs(int(dropped) - int(length)) <= 2 * 4096 // 1024 + 64
        os.truncate(path, 0)
        assert _rest(child) == expected


def test_a_lease_broken_in_the_middle_of_a_release_waits_for_it(tmp_path, monkeypatch):
    """The lease may break between ``release_pages``' check that the map is the file's and its
    advice: when another thread took SIGIO, Python runs the handler there.  Privatising first
    and advising after would throw away the only copy of the bytes (they would read as zeros)."""
    import signal

    from traceviz.sources import mapping
    from traceviz.sources.reader import read_capture

    class BreaksMidway:
        """The module's lock, with the lease breaking right after the check lets go of it."""

        def __init__(self, lock):
            self.lock, self.fired = lock, False

        def __enter__(self):
            return self.lock.__enter__()

        def __exit__(self, *exc):
            self.lock.__exit__(*exc)
            if not self.fired:
                self.fired = True
                mapping._lease_broken(signal.SIGIO, None)

    path = tmp_path / "big.pcap"
    expected = _big_pcap(path)
    cap = read_capture(path)
    assert type(cap.buf).__name__ == "mmap"
    breaks = BreaksMidway(mapping._lock)
    monkeypatch.setattr(mapping, "_lock", breaks)
    mapping.release_pages(cap.buf)
    assert breaks.fired and id(cap.buf) not in mapping._live      # privatised, the lease let go
    h = hashlib.sha256()
    for i in range(1, len(cap) + 1):
        h.update(cap.frame_bytes(i))
    assert h.hexdigest() == expected
