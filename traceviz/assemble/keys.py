"""What the key material unlocked, in counts: never a secret."""

from __future__ import annotations

from traceviz.decode.tls.keylog import DSB_TLS_KEYLOG


def decryption_report(tls, keylog, rsa_key, dsb_blocks: list) -> dict:
    """How many TLS sessions the available secrets unlock, in plain words (for ``traceviz info``)."""
    sessions = int(len(tls)) if tls is not None else 0
    dsb = len([1 for t, _ in dsb_blocks if t == DSB_TLS_KEYLOG])
    decrypted = int(tls["decrypted"].fillna(False).astype(bool).sum()) if sessions and "decrypted" in tls else 0
    present = decrypted
    if sessions and "keys_present" in tls.columns:
        present = max(int(tls["keys_present"].fillna(False).astype(bool).sum()), decrypted)
    entries = len(keylog) if keylog is not None else 0
    if keylog is None and rsa_key is None:
        text = "no TLS secrets" + (f" ({sessions} TLS session{'s' if sessions != 1 else ''})" if sessions else "")
    else:
        text = f"keys present for {present} of {sessions} session{'s' if sessions != 1 else ''}"
    return {"embedded_secrets_blocks": len(dsb_blocks), "tls_sessions": sessions, "keylog_entries": entries,
            "dsb_blocks": dsb, "rsa_key": rsa_key is not None, "sessions_with_keys": present,
            "sessions_decrypted": decrypted, "text": text}
