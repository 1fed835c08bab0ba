"""SACK blocks (RFC 2018) of the TCP segments that carry them.

The index tier reads the options every SYN and most data segments carry
(MSS, window scale, SACK-permitted, timestamps) as columns; SACK blocks are
a variable-length list that only receivers recovering from loss send, so
they are read here, with a plain option walk over those few segments.  A
segment can hold a SACK block only if its header has room for one next to
whatever else it carries: 32 bytes of header holding timestamps (the usual
Linux data segment) cannot, so such segments are never walked.

The walk stops where Wireshark's does: at End-of-List, at an option that
runs past the header or the captured bytes, or at a length below 2.
"""

from __future__ import annotations

import numpy as np

SYN = 0x02
SACK_KIND = 5
# Kind, length and one block: the smallest header that can hold a SACK block is 32 bytes.
MIN_HEADER = 32


def sack_blocks(idx, rows: np.ndarray) -> dict[int, tuple[tuple[int, int], ...]]:
    """Raw (left edge, right edge) pairs, in option order, for the ``rows`` of ``idx`` that carry SACK blocks.

    ``rows`` are frame rows of TCP segments; the answer maps each row with at
    least one block to its blocks (32-bit values as on the wire).  An index
    without TCP header lengths or the capture's bytes has none to read.
    """
    if getattr(idx, "tcp_hlen", None) is None or getattr(idx, "capture", None) is None:
        return {}
    hlen = np.asarray(idx.tcp_hlen)[rows].astype(np.int64)
    flags = np.asarray(idx.tcp_flags)[rows]
    tsval = np.asarray(idx.tsval)[rows]
    room = (hlen >= MIN_HEADER) & ((flags & SYN) == 0) & ~((hlen == MIN_HEADER) & (tsval >= 0))
    cand = rows[room]
    if not len(cand):
        return {}
    buf = idx.capture.buf
    l4 = np.asarray(idx.l4_off)[cand].astype(np.int64)
    frame_end = (np.asarray(idx.capture.data_off)[cand].astype(np.int64)
                 + np.asarray(idx.caplen)[cand].astype(np.int64))
    stop = np.minimum(l4 + np.asarray(idx.tcp_hlen)[cand].astype(np.int64), frame_end)
    out = {}
    for row, start, end in zip(cand.tolist(), (l4 + 20).tolist(), stop.tolist()):
        blocks = _walk(bytes(buf[start:end]))
        if blocks:
            out[row] = blocks
    return out


def _walk(opts: bytes) -> tuple[tuple[int, int], ...]:
    pos, n = 0, len(opts)
    while pos < n:
        kind = opts[pos]
        if kind == 0:
            break
        if kind == 1:
            pos += 1
            continue
        if pos + 2 > n:
            break
        size = opts[pos + 1]
        if size < 2 or pos + size > n:
            break
        if kind == SACK_KIND:
            body = opts[pos + 2:pos + size]
            return tuple((int.from_bytes(body[i:i + 4], "big"), int.from_bytes(body[i + 4:i + 8], "big"))
                         for i in range(0, len(body) - 7, 8))
        pos += size
    return ()


def delivered(blocks: dict[int, tuple[tuple[int, int], ...]], n: int) -> np.ndarray:
    """Per frame row (``n`` of them): the bytes the segment's SACK blocks report received,
    as Wireshark subtracts them from bytes in flight (its first three blocks, modulo 2**32)."""
    out = np.zeros(n, dtype=np.int64)
    for row, pairs in blocks.items():
        # Wireshark keeps MAX_TCP_SACK_RANGES (4) slots, 1-based: blocks 1 to 3.
        out[row] = sum((right - left) & 0xFFFFFFFF for left, right in pairs[:3]) & 0xFFFFFFFF
    return out
