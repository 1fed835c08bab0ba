"""How an HPACK header block was encoded: which fields came from the tables.

hpack's ``Decoder`` returns the header list but not how each field was
represented, and that is what shows the dynamic table at work: the first
request sends ``user-agent`` as a literal and adds it to the table, the next
ones send it as a one-byte index.  This walks a block's representations
(RFC 7541 section 6) without decoding any string, so it is hand-written:
a few lines of prefix integers, no Huffman, no table.

Run only on blocks hpack has already decoded; a block that ends early or
holds an absurd integer stops the walk and the counts so far are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

STATIC_ENTRIES = 61          # RFC 7541 Appendix A
_MAX_INT = 1 << 28           # larger prefix integers are not HPACK from any real encoder


@dataclass(frozen=True)
class Census:
    """Representations in one header block.  Fields: fields (header fields), indexed (sent as a
    whole index into the static or dynamic table), dynamic (of those, from the dynamic table),
    added (literals the encoder added to the dynamic table), size_updates."""

    fields: int = 0
    indexed: int = 0
    dynamic: int = 0
    added: int = 0
    size_updates: int = 0


def census(block: bytes) -> Census:
    fields = indexed = dynamic = added = updates = 0
    pos, end = 0, len(block)
    while pos < end:
        first = block[pos]
        if first & 0x80:                              # 1xxxxxxx indexed header field
            index, pos = _integer(block, pos, 7)
            fields, indexed = fields + 1, indexed + 1
            dynamic += index > STATIC_ENTRIES
            continue
        if first & 0xE0 == 0x20:                      # 001xxxxx dynamic table size update
            _, pos = _integer(block, pos, 5)
            updates += 1
            continue
        prefix = 6 if first & 0x40 else 4            # 01xxxxxx with indexing; 0000/0001xxxx without
        name, pos = _integer(block, pos, prefix)
        if name == 0:
            pos = _skip_string(block, pos)
        pos = _skip_string(block, pos)
        fields += 1
        added += prefix == 6
    return Census(fields, indexed, dynamic, added, updates)


def _integer(block: bytes, pos: int, prefix: int) -> tuple[int, int]:
    """An N-bit prefix integer (RFC 7541 5.1) at ``pos``; returns (value, next position).
    Past the end or absurdly large: a position past the end, which stops the walk."""
    mask = (1 << prefix) - 1
    value = block[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while pos < len(block):
        byte = block[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if value > _MAX_INT:
            break
        if not byte & 0x80:
            return value, pos
    return value, len(block) + 1


def _skip_string(block: bytes, pos: int) -> int:
    if pos >= len(block):
        return len(block) + 1
    length, pos = _integer(block, pos, 7)
    return pos + length
