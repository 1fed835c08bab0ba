"""The frame index a capture reader produces: the hand-off to the decoders.

A reader (pcap.py, pcapng.py) walks the file once and records, per frame,
where its bytes are and when it was seen.  No per-packet Python objects are
kept: the columns are numpy arrays over one buffer, so the index tier in
``decode/index.py`` can pull header fields for a million frames at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FileFrames:
    """Where each frame of a capture read from several files came from.

    Fields: names (the files, as given), code (int32 per frame: its file's
    position in ``names``), frame (int64 per frame: its 1-based number in that file).
    """

    names: list[str]
    code: np.ndarray
    frame: np.ndarray


@dataclass
class Capture:
    path: str
    format: str                    # "pcap" or "pcapng"
    buf: bytes                     # the whole (decompressed) file
    ts: np.ndarray                 # float64 epoch seconds, one per frame
    data_off: np.ndarray           # int64 offset in buf of the frame's first byte
    caplen: np.ndarray             # int64 captured bytes
    wire_len: np.ndarray           # int64 original length on the wire (frame.len)
    linktype: np.ndarray           # int32 DLT/LINKTYPE per frame (pcapng: per interface)
    iface: np.ndarray              # int32 interface id (pcap: all 0)
    compressed: bool = False
    # pcapng Decryption Secrets Blocks: (secrets_type, raw bytes).  Key material:
    # never printed, serialised or exported.
    secrets: list[tuple[int, bytes]] = field(default_factory=list, repr=False)
    warnings: list[str] = field(default_factory=list)
    detail: dict = field(default_factory=dict)   # snaplen, byte order, tsresol, version...
    # int64 epoch nanoseconds, one per frame: exact where float64 ``ts`` is not
    # (float64 keeps ~0.2 us at today's epoch).  None if a reader cannot tell.
    ts_ns: np.ndarray | None = field(default=None, repr=False)
    # uint8, frames x ``gather.HEAD_BYTES``: each frame's first bytes as
    # ``gather.Heads`` reads them (bytes past the buffer are 0), copied by a
    # reader that can do it for free while it walks.  A hand-off: the index
    # tier takes it over (sets None).  None: the index tier copies them itself.
    heads: np.ndarray | None = field(default=None, repr=False)
    # Frames read from several files as one capture (``sources/files.py``): which
    # file each frame came from and its number there.  None: all from ``path``.
    files: FileFrames | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ts)

    def frame_bytes(self, frame: int) -> bytes:
        """The captured bytes of 1-based ``frame``."""
        i = frame - 1
        off = int(self.data_off[i])
        return bytes(self.buf[off:off + int(self.caplen[i])])
