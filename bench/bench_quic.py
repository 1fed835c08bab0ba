"""How fast are the QUIC and HTTP/3 decoders?

    python bench/bench_quic.py [REQUESTS] [BODY_BYTES]

HTTP/3: the request and response streams of REQUESTS exchanges (default
5000, 16 kB bodies) are made with pylsqpack's encoder (dynamic table on, as
browsers and servers run it) and fed to ``H3Connection`` in 1200-byte
pieces, as QUIC packets would deliver them; reported are exchanges, frames
and megabytes per second.

QUIC: an aioquic client and server (tests/quicgen.py) exchange a few hundred
requests in memory; ``QUICConnection`` then reads every datagram, with the
key log (every packet decrypted, frames parsed, streams reassembled, HTTP/3
decoded) and without it (headers and Initial packets only).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pylsqpack  # noqa: E402
from aioquic.buffer import encode_uint_var as var  # noqa: E402

from traceviz.decode.http.h3 import H3Connection  # noqa: E402

PIECE = 1200


def frame(ftype: int, body: bytes) -> bytes:
    return var(ftype) + var(len(body)) + body


def h3_streams(n: int, body: int) -> tuple[list, int]:
    """(stream id, direction, bytes) chunks of ``n`` exchanges, and the total bytes."""
    settings = var(0x0) + frame(0x4, var(0x1) + var(4096) + var(0x7) + var(16))
    enc_c, enc_s = pylsqpack.Encoder(), pylsqpack.Encoder()
    setup_c, setup_s = enc_c.apply_settings(4096, 16), enc_s.apply_settings(4096, 16)
    chunks = [(3, "s2c", settings), (2, "c2s", settings), (6, "c2s", var(0x2) + setup_c),
              (7, "s2c", var(0x2) + setup_s)]
    payload = b"x" * body
    for i in range(n):
        sid = 4 * i
        ins, block = enc_c.encode(sid, [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"bench.test"),
                                        (b":path", f"/asset/{i % 50}.js".encode()), (b"user-agent", b"bench/1.0"),
                                        (b"accept", b"*/*")])
        if ins:
            chunks.append((6, "c2s", ins))
        chunks.append((sid, "c2s", frame(0x1, block)))
        ins, block = enc_s.encode(sid, [(b":status", b"200"), (b"content-type", b"application/javascript"),
                                        (b"content-length", str(body).encode()), (b"server", b"bench")])
        if ins:
            chunks.append((7, "s2c", ins))
        stream = frame(0x1, block) + frame(0x0, payload)
        chunks += [(sid, "s2c", stream[o:o + PIECE]) for o in range(0, len(stream), PIECE)]
    return chunks, sum(len(c[2]) for c in chunks)


def bench_h3(n: int, body: int) -> None:
    chunks, total = h3_streams(n, body)
    h3 = H3Connection()
    t = time.perf_counter()
    for i, (sid, d, data) in enumerate(chunks):
        h3.receive(d, sid, data, i + 1, float(i))
    h3.close()
    dt = time.perf_counter() - t
    from traceviz.decode.http.h3 import exchanges
    t2 = time.perf_counter()
    done = exchanges(h3.events)
    dt2 = time.perf_counter() - t2
    decoded = sum(1 for e in done if e.status == 200)
    print(f"HTTP/3   {n} exchanges, {len(chunks)} pieces, {total / 1e6:.1f} MB: {dt:.3f} s "
          f"({n / dt:,.0f} exchanges/s, {len(h3.events) / dt:,.0f} events/s, {total / dt / 1e6:.0f} MB/s); "
          f"exchanges() {dt2 * 1000:.0f} ms; {decoded} decoded with status 200")


def bench_quic(n: int, body: int) -> None:
    from tests import quicgen
    from traceviz.decode.quic.connection import QUICConnection
    from traceviz.decode.tls.keylog import KeyLog
    t = time.perf_counter()
    conv = quicgen.conversation(paths=tuple(f"/r/{i}" for i in range(n)), body=body)
    made = time.perf_counter() - t
    total = sum(len(d) for _, d, _ in conv.datagrams)
    for keyed in (True, False):
        q = QUICConnection(0, KeyLog.from_text(conv.keylog) if keyed else None)
        t = time.perf_counter()
        for i, (d, data, ts) in enumerate(conv.datagrams):
            q.receive(d, data, i + 1, ts)
        q.close()
        dt = time.perf_counter() - t
        what = "with keys" if keyed else "no keys  "
        print(f"QUIC     {what}: {len(conv.datagrams)} datagrams, {len(q.events)} packets, {total / 1e6:.1f} MB: "
              f"{dt:.3f} s ({len(q.events) / dt:,.0f} packets/s, {total / dt / 1e6:.1f} MB/s); "
              f"{len(q.h3.events) if q.h3 else 0} HTTP/3 events")
    print(f"         (aioquic took {made:.1f} s to play the {n} requests)")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    body = int(sys.argv[2]) if len(sys.argv) > 2 else 16384
    bench_h3(n, body)
    bench_quic(min(n, 300), body)
