"""Key material files: an NSS key log (SSLKEYLOGFILE) and a server's private key.

Only reads the bytes (the TLS decoder parses them).  Key material: never
printed, never part of a message, never kept longer than the load.
"""

from __future__ import annotations

import os

from traceviz.errors import InputError


def read_keylog(path: str | os.PathLike) -> bytes:
    return _read(path, "key log")


def read_private_key(path: str | os.PathLike) -> bytes:
    return _read(path, "RSA key")


def _read(path, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InputError(str(path), f"cannot read {what}: {e.strerror or type(e).__name__}") from None
