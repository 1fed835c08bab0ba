"""The byte format of the stream targets' inputs: one direction's bytes at a time.

A stream target (TLS, HTTP/1, HTTP/2) is fed what the payload tier would
feed it: chunks of each direction in arrival order, with holes.  Its input
is a run of records, each starting with an op byte:

  0x00 | dir   u16 length, then that many bytes of direction ``dir``
  0x80 | dir   a gap: u16 bytes of ``dir`` the capture does not have
  0x82 | dir   a gap of unknown length
  0x84 | dir   end of stream (FIN) of ``dir``
  anything else: ignored

(``dir`` 0 is client to server.)  A cut-off last record keeps what it has.
Simple on purpose: a byte-level mutator that flips a length or an op still
makes a well-formed, different conversation.
"""

from __future__ import annotations

import struct

DIRS = ("c2s", "s2c")
DATA, GAP, GAP_UNKNOWN, EOS = 0x00, 0x80, 0x82, 0x84


def parse(data: bytes) -> list[tuple]:
    """``[(op, dir, payload_or_length)]`` from a stream input."""
    out = []
    i, n = 0, len(data)
    while i < n:
        op = data[i]
        d = DIRS[op & 1]
        kind = op & 0xFE
        if kind == DATA:
            length = int.from_bytes(data[i + 1:i + 3], "big")
            out.append((DATA, d, bytes(data[i + 3:i + 3 + length])))
            i += 3 + length
        elif kind == GAP:
            out.append((GAP, d, int.from_bytes(data[i + 1:i + 3], "big")))
            i += 3
        elif kind in (GAP_UNKNOWN, EOS):
            out.append((kind, d, None))
            i += 1
        else:
            i += 1
    return out


def build(records: list[tuple]) -> bytes:
    """The inverse of ``parse``: ``[(op, dir, payload_or_length)]`` to bytes."""
    out = bytearray()
    for op, d, value in records:
        bit = DIRS.index(d)
        if op == DATA:
            for k in range(0, max(len(value), 1), 0xFFFF):
                piece = value[k:k + 0xFFFF]
                out += struct.pack(">BH", DATA | bit, len(piece)) + piece
        elif op == GAP:
            out += struct.pack(">BH", GAP | bit, min(value, 0xFFFF))
        else:
            out.append(op | bit)
    return bytes(out)


def with_header(header: bytes, body: bytes) -> bytes:
    """A u16-length-prefixed header (a key log, for the decryption target) before a stream input."""
    header = header[:0xFFFF]
    return struct.pack(">H", len(header)) + header + body


def split_header(data: bytes) -> tuple[bytes, bytes]:
    n = int.from_bytes(data[:2], "big")
    return bytes(data[2:2 + n]), data[2 + n:]
