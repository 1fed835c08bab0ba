"""A ``TLSSession`` as its line in the ``tls`` table and its rows in ``events``."""

from __future__ import annotations

from typing import Any

import pandas as pd

from traceviz.decode.tls import fingerprints as fp
from traceviz.decode.tls.names import cipher_name, version_name
from traceviz.decode.tls.session import C2S, S2C


def session_row(session, endpoints: dict, keylog=None) -> dict[str, Any]:
    """The session's ``tls`` row: ``JSON_FIELDS["tls"]`` first, then the details.

    ``round_trips`` lists each round trip's (start, end): the handshake
    ladder draws them, ``rtts`` counts what the protocol needed.
    """
    s = session
    ch, sh = s.client_hello, s.server_hello
    ch_ev, end = s.client_hello_event, s.handshake_end()
    resumed = s.resumption()
    leaf = s.certificates[0] if s.certificates else None
    done = s.completed()
    prints = fp.client_prints(ch, s.transport) if ch else {}
    row: dict[str, Any] = {
        "sni": ch.sni if ch else None,
        "alpn_offered": list(ch.alpn) if ch and ch.alpn else None,
        "alpn": s.alpn,
        "versions_offered": [version_name(v) for v in ch.offered_versions] if ch else None,
        "version": version_name(sh.version) if sh else None,
        "cipher": cipher_name(sh.cipher) if sh else None,
        "group": s.group(),
        "resumed": resumed is not None if sh else None,
        "resumption": resumed,
        "hello_retry": s.hello_retry is not None,
        "handshake_ms": (end.ts - ch_ev.ts) * 1000.0 if (ch_ev and end and done) else None,
        "rtts": s.rtts(),
        "ja3": prints.get("ja3"),
        "ja4": prints.get("ja4"),
        "ja3s": fp.ja3s(sh) if sh else None,
        "ja4s": fp.ja4s(sh, s.transport) if sh else None,
        "decrypted": s.decrypted_records > 0,
        "decrypt_failures": int(getattr(s.decryptor, "failed", 0) or 0),
        "alert": s.alert_text(),
        "status": s.status(),
        "completed": done,
        "early_data": s.early_data_records > 0,
        "client_hellos": s.client_hellos,
        "client_hello_ts": ch_ev.ts if ch_ev else None,
        "server_hello_ts": s.server_hello_event.ts if s.server_hello_event else None,
        "finished_ts": end.ts if end and done else None,
        "client_hello_frame": ch_ev.frame if ch_ev else None,
        "server_hello_frame": s.server_hello_event.frame if s.server_hello_event else None,
        "finished_frame": end.frame if end and done else None,
        "key_exchange": s.key_exchange_kind(),
        "certificate_subject": leaf.subject if leaf else None,
        "certificate_issuer": leaf.issuer if leaf else None,
        "certificate_not_after": leaf.not_after if leaf else None,
        "certificate_san": list(leaf.san) if leaf else None,
        "certificate_chain": [c.subject for c in s.certificates] if s.certificates else None,
        "ja3_string": prints.get("ja3_string"),
        "ja4_r": prints.get("ja4_r"),
        "grease": ch.has_grease if ch else None,
        "ech": ch.ech if ch else None,
        "sslv2_hello": ch.sslv2 if ch else None,
        "app_bytes_c2s": s.sides[C2S].app_bytes,
        "app_bytes_s2c": s.sides[S2C].app_bytes,
        "stream_gaps": sum(side.records.gaps for side in s.sides.values()),
        "decode_errors": len(s.errors),
        "decode_error_detail": "; ".join(s.errors[:3]) if s.errors else None,
    }
    row.update({"conn": s.conn, **endpoints})
    row["keys_present"] = bool(keylog is not None and ch is not None and keylog.has(ch.random)) \
        or bool(s.decrypted_records)
    if s.decryptor is not None and not s.decryptor.available:
        row["decrypt_note"] = s.decryptor.reason
    row["round_trips"] = [[a, b] for a, b in s.round_trips()]
    return row


def event_columns(conn: int, session) -> tuple[dict[str, list], int]:
    """The session's ``events`` rows as columns (``assemble.columns``), and how many: a
    download's hundreds of records make no dict each."""
    evs = session.events
    n = len(evs)
    return {"ts": [e.ts for e in evs], "frame": [e.frame for e in evs], "conn": [conn] * n, "stream": [pd.NA] * n,
            "layer": ["tls"] * n, "kind": [e.kind for e in evs], "dir": [e.dir for e in evs],
            "size": [e.size for e in evs], "detail": [e.detail or None for e in evs],
            "encrypted": [e.encrypted for e in evs]}, n
