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
from traceviz.errors import InputError, describe
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
        if extra is not None and not Path(extra).exists():
            raise InputError(str(extra), "no such file")
        if extra is not None and Path(extra).is_dir():
            raise InputError(str(extra), "is a directory, not a file")
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
                      warnings=list(cap.warnings) + [describe(path, m, f) for f, m in idx.notes])
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
