"""``traceviz.load``: any supported file in, one Timeline out.

The pipeline for packet captures is DESIGN.md's two tiers:
read (sources.reader) → index every frame (decode.index, numpy) → TCP/UDP
analysis (decode.tcp) → payload tier (decode.payload: TLS, HTTP) for the
connections that need it.  Browser exports go through assemble.browser.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from traceviz.errors import InputError
from traceviz.model import SourceInfo, Timeline, conform

Progress = Callable[[str], None]


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
    from traceviz.decode import tcp
    from traceviz.decode.index import index_frames
    from traceviz.sources.reader import read_capture

    progress("reading")
    cap = read_capture(path)
    if len(cap) == 0:  # DESIGN.md: nothing to analyse is bad input (exit 2), not an empty report
        raise InputError(path, "the capture holds no packets")
    progress("indexing")
    idx = index_frames(cap)
    progress("tcp")
    packets, connections, events = tcp.analyze(idx)
    info = SourceInfo(path=path, format=cap.format, size=os.path.getsize(path),
                      compressed=cap.compressed, link_types=dict(idx.link_counts),
                      frames=len(cap), detail={**cap.detail, **getattr(idx, "stats", {})},
                      warnings=list(cap.warnings))
    tl = Timeline(source=info, packets=packets, connections=connections, events=events, capture=cap)
    progress("payload")
    _payload_tier(tl, keylog, rsa_key)
    tl.tls = conform("tls", tl.tls)
    return tl


def _payload_tier(tl: Timeline, keylog, rsa_key) -> None:
    try:
        from traceviz.decode import payload
    except ImportError:
        return
    try:
        payload.run(tl, keylog=keylog, rsa_key=rsa_key)
    except InputError:
        raise
    except Exception as exc:  # a decoder bug must not cost the user the TCP-level analysis
        if os.environ.get("TRACEVIZ_DEBUG"):
            raise
        from traceviz.errors import describe
        tl.source.warnings.append(describe(tl.source.path, f"payload decoding stopped early ({type(exc).__name__}: {exc}); TCP analysis is complete"))
