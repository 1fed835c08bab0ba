"""The frames of one partition of a big capture, kept on disk between two passes.

The first pass reads each file once, a chunk at a time, and appends each
frame to its partition's spool: its bytes to ``p<K>/f<I>.frames`` and a
fixed-size record (``RECORD``: time, lengths, link type, interface, its
number in file I) to ``p<K>/f<I>.index``.  One writer per file, so files can
be split side by side (by Dask workers too) without sharing a file handle.
The second pass reads a partition's pieces back, file after file, as one
``Capture``: nothing is parsed again and nothing is lost (nanosecond times,
interfaces and link types are kept as read).

Hand-written rather than writing pcapng: a pcapng would need its interface
blocks merged across files and be parsed again; this is a copy each way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from traceviz.sources.capture import Capture, FileFrames

RECORD = np.dtype([("ts", "<f8"), ("ts_ns", "<i8"), ("caplen", "<i8"), ("wire_len", "<i8"),
                   ("file_frame", "<i8"), ("linktype", "<i4"), ("iface", "<i4")])


def _piece(root: Path, part: int, file: int) -> Path:
    return root / f"p{part:05d}" / f"f{file:05d}"


class SpoolWriter:
    """Appends the frames of one file (number ``file`` of the set) to their partitions."""

    def __init__(self, root: str | os.PathLike, file: int):
        self.root, self.file = Path(root), file
        self.open: dict[int, tuple] = {}
        self.frames: dict[int, int] = {}        # partition -> frames written
        self.bytes: dict[int, int] = {}

    def add(self, cap: Capture, part: np.ndarray, first_frame: int) -> None:
        """Write the frames of ``cap`` (numbered from ``first_frame`` in the file) to
        the partitions ``part`` names, one per frame."""
        n = len(cap)
        if n == 0:
            return
        rec = np.empty(n, RECORD)
        rec["ts"], rec["caplen"], rec["wire_len"] = cap.ts, cap.caplen, cap.wire_len
        rec["ts_ns"] = cap.ts_ns if cap.ts_ns is not None else np.round(np.nan_to_num(cap.ts) * 1e9)
        rec["file_frame"] = np.arange(first_frame, first_frame + n, dtype=np.int64)
        rec["linktype"], rec["iface"] = cap.linktype, cap.iface
        order = np.argsort(part, kind="stable")
        cuts = np.flatnonzero(np.diff(part[order])) + 1
        view = memoryview(cap.buf)
        offs, lens = np.asarray(cap.data_off).tolist(), np.asarray(cap.caplen).tolist()
        for rows in np.split(order, cuts):
            k = int(part[rows[0]])
            frames, index = self._handles(k)
            # One join per partition and chunk: a memoryview slice per frame is the
            # cheapest gather of scattered byte ranges (numpy's needs an index per byte).
            data = b"".join([view[offs[r]:offs[r] + lens[r]] for r in rows.tolist()])
            frames.write(data)
            index.write(rec[rows].tobytes())
            self.frames[k] = self.frames.get(k, 0) + len(rows)
            self.bytes[k] = self.bytes.get(k, 0) + len(data)

    def _handles(self, k: int):
        h = self.open.get(k)
        if h is None:
            path = _piece(self.root, k, self.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            h = self.open[k] = (open(path.with_suffix(".frames"), "wb"), open(path.with_suffix(".index"), "wb"))
        return h

    def close(self) -> None:
        for a, b in self.open.values():
            a.close()
            b.close()
        self.open.clear()


def read_partition(root: str | os.PathLike, part: int, names: list[str], path: str,
                   secrets=(), fmt: str = "pcap") -> Capture:
    """Partition ``part``'s frames, file after file (``names`` in set order), as one Capture
    whose ``files`` says where each came from.  ``path`` names it in messages."""
    root = Path(root)
    bufs, recs, codes = [], [], []
    for i in range(len(names)):
        piece = _piece(root, part, i)
        index = piece.with_suffix(".index")
        if not index.exists():
            continue
        rec = np.fromfile(index, dtype=RECORD)
        bufs.append(piece.with_suffix(".frames").read_bytes())
        recs.append(rec)
        codes.append(np.full(len(rec), i, np.int32))
    buf = b"".join(bufs)
    del bufs
    rec = np.concatenate(recs) if recs else np.zeros(0, RECORD)
    caplen = rec["caplen"].copy()
    data_off = np.concatenate(([0], np.cumsum(caplen)[:-1])).astype(np.int64) if len(rec) else np.zeros(0, np.int64)
    cap = Capture(path=path, format=fmt, buf=buf, ts=rec["ts"].copy(), data_off=data_off, caplen=caplen,
                  wire_len=rec["wire_len"].copy(), linktype=rec["linktype"].copy(), iface=rec["iface"].copy(),
                  secrets=list(secrets),
                  detail={"size": len(buf), "linktypes": sorted({int(x) for x in np.unique(rec["linktype"])})})
    cap.ts_ns = rec["ts_ns"].copy()
    cap.files = FileFrames(list(names), np.concatenate(codes) if codes else np.zeros(0, np.int32),
                           rec["file_frame"].copy())
    return cap
