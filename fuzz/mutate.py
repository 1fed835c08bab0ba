"""Mutators: byte-level, and structure-aware for JSON exports and stream inputs.

Byte flips alone rarely get past a JSON parser or keep a TLS stream's
framing, so the ``json`` mutator edits the parsed document (hostile values
where numbers and strings were: thousands of digits, 1e400, -1, wrong
types, deep nesting, markup) and the ``stream`` mutator edits the run of
records (split, drop, repeat, reorder, gaps, end of stream) as well as
the bytes inside them.  Used by the plain engine, and by atheris as its
custom mutator half of the time.
"""

from __future__ import annotations

import collections
import json
import random
import struct

from fuzz import streams

INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF, 16384, 16385, 65535, 262144, 1 << 24)


def mutate_bytes(data: bytes, rnd: random.Random, others: list[bytes] = (), most: int = 1 << 17) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.choice((1, 1, 2, 3, 5))):
        op = rnd.randrange(9)
        n = len(b)
        if op == 0 and n:                                   # flip a bit
            i = rnd.randrange(n)
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1 and n:                                 # set a byte
            b[rnd.randrange(n)] = rnd.choice((0, 0xFF, 0x7F, 0x80, rnd.randrange(256)))
        elif op == 2 and n >= 2:                            # an interesting integer, either byte order
            v = rnd.choice(INTERESTING)
            fmt = rnd.choice((">H", "<H", ">I", "<I", "B"))
            packed = struct.pack(fmt, v & {"B": 0xFF, ">H": 0xFFFF, "<H": 0xFFFF}.get(fmt, 0xFFFFFFFF))
            i = rnd.randrange(max(1, n - len(packed) + 1))
            b[i:i + len(packed)] = packed
        elif op == 3 and n:                                 # delete a range
            i = rnd.randrange(n)
            del b[i:i + rnd.choice((1, 2, 4, 16, rnd.randrange(1, max(2, n - i + 1))))]
        elif op == 4:                                       # insert random bytes
            i = rnd.randrange(n + 1)
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.choice((1, 2, 4, 8, 32))))
        elif op == 5 and n:                                 # duplicate a range
            i = rnd.randrange(n)
            j = min(n, i + rnd.randrange(1, 256))
            k = rnd.randrange(n + 1)
            b[k:k] = b[i:j]
        elif op == 6 and others:                            # splice with another input
            o = rnd.choice(others)
            if o:
                i, j = rnd.randrange(n + 1), rnd.randrange(len(o))
                b = b[:i] + o[j:j + rnd.randrange(1, 1024)] + b[i:]
        elif op == 7 and n:                                 # truncate
            del b[rnd.randrange(n):]
        elif op == 8 and n >= 8:                            # copy a block over another place
            i, k = rnd.randrange(n), rnd.randrange(n)
            chunk = b[i:i + rnd.randrange(1, 64)]
            b[k:k + len(chunk)] = chunk
    return bytes(b[:most])


# --- JSON -------------------------------------------------------------------------------------

# Sentinels replaced after json.dumps by text json.dumps cannot write.
_BIG, _INF, _NEGINF, _DEEP = "\x00BIG\x00", "\x00INF\x00", "\x00NEGINF\x00", "\x00DEEP\x00"
_RAW = {json.dumps(_BIG): "1" + "0" * 5000, json.dumps(_INF): "1e400", json.dumps(_NEGINF): "-1e400",
        json.dumps(_DEEP): "[" * 600 + "]" * 600}
HOSTILE = (0, -1, -0.0, 1, 1e308, -1e308, 2 ** 63, -(2 ** 63), 2 ** 64 + 1, 10 ** 30, 1.5, "", "-1", "1e400", "NaN",
           "Infinity", None, True, False, [], {}, [None], {"": None}, "x" * 300,
           "<script>alert(1)</script>", "\x1b]0;title\x07\x1b[2J", "\u202e\ufeff", "http://[::1", "h2",
           "data:,x", "0" * 40, _BIG, _INF, _NEGINF, _DEEP)


def mutate_json(data: bytes, rnd: random.Random, others: list[bytes] = ()) -> bytes:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return mutate_bytes(data, rnd, others)
    try:
        for _ in range(rnd.choice((1, 1, 2, 4))):
            doc = _edit(doc, rnd, others)
        text = json.dumps(doc) if rnd.random() < 0.9 else json.dumps(doc, indent=1)
    except RecursionError:       # a swap put a 600-deep list inside another: deeper than json writes
        return mutate_bytes(data, rnd, others)
    for sentinel, raw in _RAW.items():
        if sentinel in text:
            text = text.replace(sentinel, raw)
    out = text.encode()
    return mutate_bytes(out, rnd) if rnd.random() < 0.05 else out


def _nodes(doc, path=(), out=None, most=1500):
    """(path, value) of every container and leaf, breadth first, at most ``most``."""
    out = [] if out is None else out
    queue = collections.deque([(path, doc)])
    while queue and len(out) < most:
        p, v = queue.popleft()
        out.append((p, v))
        if isinstance(v, dict):
            queue += [(p + (k,), x) for k, x in v.items()]
        elif isinstance(v, list):
            queue += [(p + (i,), x) for i, x in enumerate(v)]
    return out


def _edit(doc, rnd: random.Random, others):
    nodes = _nodes(doc)
    path, value = rnd.choice(nodes)
    op = rnd.randrange(6)
    if op <= 2 or not path:
        new = _copy(rnd.choice(HOSTILE))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and rnd.random() < 0.5:
            new = _near(value, rnd)
        return _set(doc, path, new)
    parent = _get(doc, path[:-1])
    key = path[-1]
    if op == 3:                                  # delete
        if isinstance(parent, dict):
            parent.pop(key, None)
        elif isinstance(parent, list) and key < len(parent):
            del parent[key]
    elif op == 4 and isinstance(parent, list):   # duplicate, reorder
        parent.insert(rnd.randrange(len(parent) + 1), json.loads(json.dumps(value)))
        if rnd.random() < 0.3:
            rnd.shuffle(parent)
    elif op == 5:                                # swap with another node's value
        other_path, other = rnd.choice(nodes)
        if other_path[:len(path)] != path and path[:len(other_path)] != other_path:
            doc = _set(doc, path, json.loads(json.dumps(other)))
    return doc


def _near(value, rnd: random.Random):
    """A number derived from ``value``; -1 where it cannot be (a huge integer times 1e6 overflows a
    float, and one of more than 4,300 digits has no ``str``)."""
    try:
        return rnd.choice((lambda: value * -1, lambda: value * 1e6, lambda: value + 2 ** 62, lambda: str(value),
                           lambda: -1))()
    except (OverflowError, ValueError):
        return -1


def _copy(v):
    return json.loads(json.dumps(v)) if isinstance(v, (list, dict)) else v


def _get(doc, path):
    for k in path:
        doc = doc[k]
    return doc


def _set(doc, path, value):
    if not path:
        return value
    parent = _get(doc, path[:-1])
    try:
        parent[path[-1]] = value
    except (IndexError, TypeError):
        pass
    return doc


# --- streams ----------------------------------------------------------------------------------

def mutate_stream(data: bytes, rnd: random.Random, others: list[bytes] = (), keyed: bool = False,
                  header_too: bool = False) -> bytes:
    """A stream input mutated; ``keyed``: after its header, which is kept (a key log that still
    unlocks the records) unless ``header_too`` (a header that is input too, one time in four)."""
    header = b""
    if keyed:
        header, data = streams.split_header(data)
        if header_too and rnd.random() < 0.25:
            return streams.with_header(mutate_bytes(header, rnd, others, 0xFFFF), data)
    recs = streams.parse(data)
    if not recs or rnd.random() < 0.2:
        out = mutate_bytes(data, rnd, others)
    else:
        for _ in range(rnd.choice((1, 1, 2, 3))):
            recs = _edit_records(recs, rnd, others)
        out = streams.build(recs)
    return streams.with_header(header, out) if keyed else out


def _edit_records(recs: list, rnd: random.Random, others) -> list:
    recs = list(recs)
    i = rnd.randrange(len(recs)) if recs else 0
    op = rnd.randrange(8)
    if not recs:
        return [(streams.DATA, "c2s", bytes(rnd.randrange(256) for _ in range(8)))]
    kind, d, v = recs[i]
    if op <= 2 and kind == streams.DATA:                  # the bytes inside
        recs[i] = (kind, d, mutate_bytes(v, rnd))
    elif op == 3 and kind == streams.DATA and len(v) > 1:  # split in two
        k = rnd.randrange(1, len(v))
        recs[i:i + 1] = [(kind, d, v[:k]), (kind, d, v[k:])]
    elif op == 4:                                         # drop
        del recs[i]
    elif op == 5:                                         # repeat (a retransmission the reassembler let through)
        recs.insert(rnd.randrange(len(recs) + 1), recs[i])
    elif op == 6:                                         # a gap or an end of stream
        recs.insert(i, rnd.choice(((streams.GAP, d, rnd.choice((1, 5, 100, 1460, 65535))),
                                   (streams.GAP_UNKNOWN, d, None), (streams.EOS, d, None))))
    elif op == 7 and len(recs) > 1:                       # swap two
        j = rnd.randrange(len(recs))
        recs[i], recs[j] = recs[j], recs[i]
    return recs


def mutator(kind: str):
    """The mutation function for a target's ``kind``: (data, rnd, others) -> bytes."""
    if kind == "json":
        return mutate_json
    if kind == "stream":
        return mutate_stream
    if kind == "stream-keyed":
        return lambda data, rnd, others=(): mutate_stream(data, rnd, others, keyed=True)
    if kind == "stream-headed":
        return lambda data, rnd, others=(): mutate_stream(data, rnd, others, keyed=True, header_too=True)
    return mutate_bytes
