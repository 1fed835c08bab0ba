"""Several capture files as one capture: rotated files, a folder of them.

``tcpdump -C 1000 -W 100`` or ``-G 3600`` leaves a capture in pieces.  Read
as one, its connections run on across the files: the pieces are joined end to
end in order of their first timestamp (the name breaks a tie), so the frames
reach the decoders as one sequence and a connection that crosses a file
boundary is one connection, its sequence numbers continuing, just as in the
file before it was cut.  Every frame keeps where it came from (``FileFrames``:
the file and its number there) for the ``file`` and ``file_frame`` columns.

Joining end to end is what rotation needs.  Captures taken side by side (two
interfaces at once) overlap in time: they are still joined end to end, with a
warning, since interleaving them by time is ``mergecap``'s job and changes
what Wireshark would number.

A member that cannot be read at all is a warning naming it; the others are
analysed.  Its partial damage is the warning ``read_capture`` gives, with
the member's own frame numbers (open that file to see it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from traceviz.errors import InputError, describe
from traceviz.sources.capture import Capture, FileFrames

Progress = Callable[[str], None]


@dataclass
class Member:
    """One file of a set.  Fields: path (as given), first and last (times of its first and
    last frames; None: none has one), size (bytes on disk), error (why it cannot be read at
    all, else None), frames, format (pcap, pcapng)."""

    path: str
    first: float | None = None
    size: int = 0
    error: str | None = None
    frames: int = 0
    last: float | None = None
    format: str = ""


def capture_files(target) -> list[str] | None:
    """The capture files ``target`` names when it names more than one file: a list or
    tuple of paths, or a folder holding pcap/pcapng files (its own files only, not its
    subfolders').  None for one path, or a folder of something else (qlog files)."""
    if isinstance(target, (list, tuple)):
        paths = [os.fspath(p) for p in target]
        return capture_files(paths[0]) if len(paths) == 1 else expand(paths)
    if isinstance(target, (str, os.PathLike)) and Path(target).is_dir():
        return _captures_in(os.fspath(target)) or None
    return None


def expand(paths: list[str]) -> list[str]:
    """Folders replaced by the capture files they hold (each folder's own, by name)."""
    out = []
    for p in paths:
        out += _captures_in(p) if Path(p).is_dir() else [p]
    return out


def _captures_in(folder: str) -> list[str]:
    from traceviz.sources.reader import sniff
    found = []
    for entry in sorted(Path(folder).iterdir()):
        if entry.is_file() and not entry.name.startswith("."):
            try:
                if sniff(entry) != "unknown":
                    found.append(str(entry))
            except InputError:
                continue
    return found


def order(paths: list[str], warnings: list[str]) -> list[Member]:
    """The files that can be read, in order of their first frame's time; what cannot be
    read at all goes to ``warnings``, naming the file."""
    from traceviz.sources.chunks import first_timestamp
    members = []
    for i, path in enumerate(paths):
        m = Member(path)
        try:
            m.size = os.path.getsize(path)
            m.first = first_timestamp(path)
        except InputError as exc:
            m.error = str(exc)
        except OSError as exc:
            m.error = describe(path, f"cannot read: {exc.strerror or exc}")
        members.append((i, m))
    for _, m in members:
        if m.error is not None:
            warnings.append(f"{m.error} (file skipped, the others analysed)")
    good = [(i, m) for i, m in members if m.error is None]
    good.sort(key=lambda x: (x[1].first is None, x[1].first if x[1].first is not None else 0.0, x[0]))
    return [m for _, m in good]


def overlaps(members: list[Member]) -> list[str]:
    """Warnings for files whose frames begin before the previous file's end."""
    out = []
    for a, b in zip(members, members[1:]):
        if a.last is not None and b.first is not None and b.first < a.last:
            out.append(f"{b.path} begins {a.last - b.first:.3f} s before {a.path} ends: the files are joined "
                       f"end to end (as rotated files are); to interleave captures taken side by side, "
                       f"merge them by time first (mergecap)")
    return out


def label(paths: list[str], target=None) -> str:
    """How a set of files is named in messages: its folder, or its files."""
    if isinstance(target, (str, os.PathLike)) and Path(target).is_dir():
        return os.fspath(target)
    if len(paths) <= 3:
        return " + ".join(paths)
    return f"{paths[0]} + {len(paths) - 1} more files"


def read_files(paths: list[str], name: str | None = None, progress: Progress | None = None) -> Capture:
    """The files read into memory as one ``Capture`` (see the module doc).

    Raises ``InputError`` when no file has a frame to analyse."""
    from traceviz.sources.reader import read_capture

    warnings: list[str] = []
    members = order(paths, warnings)
    name = name or label(paths)
    caps = []
    for k, m in enumerate(members):
        if progress is not None:
            progress(f"reading {k + 1}/{len(members)} {Path(m.path).name}")
        try:
            cap = read_capture(m.path)
        except InputError as exc:
            warnings.append(f"{exc} (file skipped, the others analysed)")
            m.error = str(exc)
            continue
        m.frames, m.format = len(cap), cap.format
        stamped = cap.ts[np.isfinite(cap.ts)]
        m.last = float(stamped.max()) if len(stamped) else None
        warnings += cap.warnings
        caps.append((m, cap))
    used = [m for m, cap in caps]
    warnings += overlaps(used)
    if not any(len(cap) for _, cap in caps):
        raise InputError(name, "none of the files holds a frame to analyse"
                         + (f" ({'; '.join(warnings[:3])})" if warnings else ""))
    return join([cap for _, cap in caps], used, name, warnings)


def join(caps: list[Capture], members: list[Member], name: str, warnings: list[str]) -> Capture:
    """Captures one after the other as one ``Capture`` whose ``files`` says where each frame came from."""
    sizes = [len(c.buf) for c in caps]
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    buf = b"".join(c.buf for c in caps)      # one copy: the decoders read one buffer
    counts = [len(c) for c in caps]
    heads = [c.heads for c in caps]
    ts_ns = [c.ts_ns for c in caps]
    secrets = []
    for c in caps:
        secrets += [s for s in c.secrets if s not in secrets]
    out = Capture(
        path=name,
        format="+".join(sorted({c.format for c in caps})),
        buf=buf,
        ts=_cat([c.ts for c in caps], np.float64),
        data_off=_cat([np.asarray(c.data_off, np.int64) + s for c, s in zip(caps, starts)], np.int64),
        caplen=_cat([c.caplen for c in caps], np.int64),
        wire_len=_cat([c.wire_len for c in caps], np.int64),
        linktype=_cat([c.linktype for c in caps], np.int32),
        iface=_cat([c.iface for c in caps], np.int32),
        compressed=any(c.compressed for c in caps),
        secrets=secrets,
        warnings=warnings,
        detail=describe_set(members, caps),
    )
    out.ts_ns = _cat(ts_ns, np.int64) if all(t is not None for t in ts_ns) else None
    out.heads = np.concatenate(heads) if all(h is not None for h in heads) and heads else None
    out.files = FileFrames([m.path for m in members],
                           np.repeat(np.arange(len(members), dtype=np.int32), counts),
                           np.concatenate([np.arange(1, n + 1, dtype=np.int64) for n in counts]) if counts
                           else np.zeros(0, np.int64))
    for c in caps:
        c.buf = b""                          # each file's own bytes are not needed twice
    return out


def describe_set(members: list[Member], caps: list[Capture] | None = None) -> dict:
    """What ``SourceInfo.detail`` says of a set of files: how many, and each one."""
    linktypes = sorted({lt for c in caps or [] for lt in c.detail.get("linktypes", [])})
    return {"files": len(members), "size": sum(m.size for m in members), "linktypes": linktypes,
            "members": [{"file": m.path, "frames": m.frames, "first": m.first, "last": m.last,
                         "size": m.size, "format": m.format} for m in members]}


def _cat(arrays: list, dtype) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype) for a in arrays]) if arrays else np.zeros(0, dtype)
