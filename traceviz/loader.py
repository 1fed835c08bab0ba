"""``traceviz.load``: any supported file in, one finished Timeline out.

The pipeline, one way: sources (read the file) → decode (index every
frame, the transport tier, the payload tier's protocol machines) →
assemble (the tables).  Browser exports go sources → assemble.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from traceviz import _tuning
from traceviz.errors import InputError
from traceviz.model import SourceInfo, Timeline

Progress = Callable[[str], None]
STAGES = ("reading", "indexing", "tcp", "payload")   # what load() reports to ``progress``, in order


def load(path: str | os.PathLike, keylog: str | os.PathLike | None = None,
         rsa_key: str | os.PathLike | None = None, progress: Progress | None = None) -> Timeline:
    """Decode ``path`` (pcap, pcapng, .gz, HAR, DevTools trace/log) into a Timeline.

    ``keylog`` is an NSS key log (pcapng Decryption Secrets Blocks are used
    without it); ``rsa_key`` a server's PEM private key for TLS 1.2 RSA key
    exchange.  A name of a bundled capture (``traceviz captures``) works as a path.
    Raises ``InputError`` when nothing in the file can be analysed.
    """
    path = _resolve(path)
    for extra in (keylog, rsa_key):
        if extra is not None and not Path(extra).is_file():
            raise InputError(str(extra), "no such file")
    from traceviz.sources import kind_of

    kind = kind_of(path)
    if kind == "capture":
        with _tuning.loading(os.path.getsize(path)):
            return _load_capture(path, keylog, rsa_key, progress or _quiet)
    if kind == "json":
        from traceviz.assemble.browser import load_browser
        return load_browser(path)
    raise InputError(path, "not a packet capture (pcap/pcapng), HAR or DevTools trace")


def _quiet(stage: str) -> None:
    pass


def _resolve(path: str | os.PathLike) -> str:
    p = Path(path)
    if p.is_file():
        return str(p)
    if p.is_dir():
        raise InputError(str(p), "is a directory, not a file")
    try:
        from traceviz.captures import find
        found = find(str(path))
    except (ImportError, LookupError, OSError, InputError):
        found = None
    if found is not None and Path(found).is_file():
        return str(found)
    raise InputError(str(p), "no such file (nor a bundled capture of that name: see `traceviz captures`)")


def _load_capture(path: str, keylog, rsa_key, progress: Progress) -> Timeline:
    import numpy as np

    from traceviz.assemble.capture import timeline
    from traceviz.decode.index import index_frames
    from traceviz.decode.streams import Payload, decode_streams
    from traceviz.decode.tcp.connections import analyze
    from traceviz.errors import describe
    from traceviz.sources.reader import read_capture

    progress("reading")
    cap = read_capture(path)
    if len(cap) == 0:  # DESIGN.md: nothing to analyse is bad input (exit 2), not an empty report
        raise InputError(path, "the capture holds no packets")
    progress("indexing")
    idx = index_frames(cap)
    progress("tcp")
    transport = analyze(idx)
    info = SourceInfo(path=path, format=cap.format, size=os.path.getsize(path),
                      compressed=cap.compressed, link_types=dict(idx.link_counts),
                      frames=len(cap), detail={**cap.detail, **getattr(idx, "stats", {})},
                      warnings=list(cap.warnings))
    progress("payload")
    log, key = _keys(cap.secrets, keylog, rsa_key, info.warnings)
    debug = bool(os.environ.get("TRACEVIZ_DEBUG"))
    try:
        payload = decode_streams(transport, cap.buf, log, key, debug=debug)
        return timeline(info, transport, payload, log, key, cap.secrets)
    except Exception as exc:  # a decoder bug must not cost the user the TCP-level analysis
        if debug or isinstance(exc, InputError):
            raise
        info.warnings.append(describe(path, f"payload decoding stopped early ({type(exc).__name__}: {exc}); "
                                            "TCP analysis is complete"))
        return timeline(info, transport, Payload({}, np.zeros(0, dtype=np.int64)), log, key, cap.secrets)


def _keys(blocks, keylog, rsa_key, warnings: list[str]):
    """(KeyLog or None, RSA key or None): the key log file merged with pcapng secrets.

    A key log that cannot be read is bad input; a damaged line is a warning.
    """
    if not blocks and keylog is None and rsa_key is None:
        return None, None       # no key material: the crypto modules are not even imported
    from traceviz.decode.tls.keylog import KeyLog

    log = KeyLog.from_dsb(blocks) if blocks else None
    if keylog is not None:
        mine = read_keylog_file(keylog)
        log = mine if log is None else log.merge(mine)
    key = read_rsa_key_file(rsa_key) if rsa_key is not None else None
    if log is not None:
        warnings.extend(log.warnings[:20])
    return log, key


def read_keylog_file(path: str | os.PathLike):
    """An NSS key log file as a ``decode.tls.keylog.KeyLog`` (InputError if unreadable)."""
    from traceviz.decode.tls.keylog import KeyLog
    from traceviz.sources.keys import read_keylog
    return KeyLog.from_text(read_keylog(path), str(path))


def read_rsa_key_file(path: str | os.PathLike):
    """A server's unencrypted PEM/DER RSA private key (InputError if unreadable or not one)."""
    from traceviz.decode.tls.crypto import rsa_private_key
    from traceviz.sources.keys import read_private_key
    return rsa_private_key(read_private_key(path), str(path))


def follow(path: str | os.PathLike, conn: int, keylog: str | os.PathLike | None = None,
           rsa_key: str | os.PathLike | None = None, stream: int | None = None, decrypt: bool = True):
    """One connection's bytes as ``decode.follow.Followed``: read ``path`` again (a
    Timeline keeps no bytes), reassemble connection ``conn`` (Wireshark's tcp.stream;
    UDP flows follow) and, where keys unlock it, decrypt it; ``stream``: one HTTP/2
    stream of it.  Raises ``InputError`` for a connection the file does not have."""
    import numpy as np

    from traceviz.decode import follow as fl
    from traceviz.decode.index import index_frames
    from traceviz.decode.tcp.connections import analyze
    from traceviz.sources import kind_of
    from traceviz.sources.reader import read_capture

    path = _resolve(path)
    if kind_of(path) != "capture":
        raise InputError(path, "only a packet capture has bytes to follow (this is a browser export)")
    with _tuning.loading(os.path.getsize(path)):
        cap = read_capture(path)
        t = analyze(index_frames(cap))
    c = t.connections
    if conn < 0 or conn >= len(c["conn"]):
        have = f"0-{len(c['conn']) - 1}" if len(c["conn"]) else "none"
        raise InputError(path, f"no connection {conn} (connections here: {have})")
    transport = str(c["transport"][conn])
    out = fl.Followed(conn, transport, str(c["client"][conn]), str(c["server"][conn]), int(c["stream"][conn]), stream)
    rows = np.flatnonzero((t.conn == conn) & (np.asarray(t.idx.payload_len) >= 0) & (np.asarray(t.idx.proto) != 1)
                          & (np.asarray(t.idx.proto) != 58))
    if len(rows):
        out.first = fl.C2S if t.c2s[rows[0]] else fl.S2C
    if transport == "udp":
        out.kind = "udp"
        out.chunks = fl.udp_chunks(_datagrams(t, cap.buf, rows))
        if stream is not None:
            raise InputError(path, f"connection {conn} is UDP: it has no HTTP/2 streams")
        return out
    streams = _byte_streams(t, cap.buf, rows)
    out.chunks = fl.tcp_chunks(streams)
    first = {d: b"".join(ch.data for ch in out.chunks if isinstance(ch, fl.Chunk) and ch.dir == d)[:64]
             for d in (fl.C2S, fl.S2C)}
    from traceviz.decode.sniff import stream_kind
    kind = stream_kind(first[fl.C2S], first[fl.S2C])
    plain = out.chunks
    if kind == "tls" and (decrypt or stream is not None):
        log, key = _keys(cap.secrets, keylog, rsa_key, out.notes)
        if log is None and key is None:
            out.notes.append("TLS without key material: the bytes shown are encrypted (--keylog to decrypt)")
            plain = None
        else:
            chunks, notes = fl.tls_chunks(conn, streams, log, key)
            out.notes += notes
            if any(isinstance(ch, fl.Chunk) for ch in chunks):
                out.kind, out.chunks, plain = "tls", chunks, chunks
            else:
                plain = None
    if stream is not None:
        if plain is None or kind not in ("tls", "h2c"):
            raise InputError(path, f"connection {conn} carries no readable HTTP/2 to follow stream {stream} in"
                                   + (" (it is TLS: --keylog to decrypt)" if kind == "tls" else ""))
        out.kind = "h2"
        out.chunks, notes = fl.http2_stream(plain, stream)
        out.notes += notes
        if not out.chunks:
            out.notes.append(f"HTTP/2 stream {stream} does not appear on connection {conn}")
    return out


def _byte_streams(t, buf, rows):
    """Both directions of one TCP connection, reassembled (``decode.tcp.reassembly``)."""
    import numpy as np

    from traceviz.decode.tcp.reassembly import reassemble_segments, segments_by_conn

    idx = t.idx
    segs = segments_by_conn(t.conn[rows], t.c2s[rows], np.asarray(idx.tcp_flags)[rows].astype(np.int64),
                            t.rel_seq[rows], np.asarray(idx.payload_len)[rows].astype(np.int64),
                            np.asarray(idx.frame)[rows], np.asarray(idx.ts)[rows],
                            np.asarray(idx.payload_off)[rows].astype(np.int64),
                            np.asarray(idx.payload_cap)[rows].astype(np.int64))
    return reassemble_segments(next(iter(segs.values()), []), buf)


def _datagrams(t, buf, rows):
    """``(dir, payload, frame, ts)`` of each datagram of one UDP flow."""
    import numpy as np

    idx = t.idx
    out = []
    for r in rows.tolist():
        off, n = int(idx.payload_off[r]), int(np.asarray(idx.payload_cap)[r])
        out.append(("c2s" if t.c2s[r] else "s2c", bytes(buf[off:off + max(n, 0)]), int(idx.frame[r]),
                    float(idx.ts[r])))
    return out
