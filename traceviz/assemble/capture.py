"""A decoded packet capture as a finished ``Timeline``.

The transport tier's columns become ``packets``, ``connections`` and the TCP
``events``; the payload tier's protocol machines become the ``tls`` table,
TLS and HTTP ``events``, ``requests``, and the ``app``/``sni``/``alpn``/
``tls_version`` columns of ``connections``.  Nothing reads or rewrites the
Timeline after this.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from traceviz.assemble import http, keys, tls, transport
from traceviz.errors import describe
from traceviz.model import JSON_FIELDS, SourceInfo, Timeline, conform

# The last columns of the tls table: its details, after the stable fields.
_TLS_LAST = ["round_trips"]


def timeline(info: SourceInfo, t, payload, keylog=None, rsa_key=None, dsb_blocks=()) -> Timeline:
    """The Timeline of a capture: ``t`` from ``decode.tcp.connections.analyze``,
    ``payload`` from ``decode.streams.decode_streams``."""
    packets, connections, events = transport.tables(t)
    endpoints = _endpoints(connections)
    tls_rows, event_rows, request_rows, apps = [], [], [], {}
    for conn, result in sorted(payload.results.items()):
        ends = endpoints.get(conn, {})
        if result.tls is not None:
            session = result.tls
            if session.client_hello is not None or session.server_hello is not None:
                tls_rows.append(tls.session_row(session, ends, keylog))
            event_rows += tls.event_rows(conn, session)
            for err in session.errors[:5]:
                info.warnings.append(describe(info.path, f"TLS on connection {conn}: {err}"))
        ev, rq = _http_rows(result, ends.get("server"))
        event_rows += ev
        request_rows += rq
        apps[conn] = http.app_label(result)
    for conn, why in sorted(getattr(payload, "skipped", {}).items()):
        info.warnings.append(describe(info.path, f"connection {conn}: {why}"))
    tls_table = _tls_table(tls_rows)
    return Timeline(
        source=info, packets=packets,
        connections=_with_apps(connections, apps, payload.opaque, tls_rows),
        events=_merge_events(events, event_rows),
        requests=_requests(request_rows),
        tls=tls_table,
        decryption=keys.decryption_report(tls_table, keylog, rsa_key, list(dsb_blocks)),
    )


def _http_rows(result, server: str | None) -> tuple[list[dict], list[dict]]:
    if result.http is None:
        return [], []
    ev, rq = http.connection_rows(result.http, result.scheme, http.default_host(result, server))
    if rq and result.tls is not None:
        wait = tls.first_request_wait(result.tls)
        if wait is not None:
            rq[0]["tls"] = wait
    conn = result.conn
    return ([{"conn": conn, **e} for e in ev], [{"conn": conn, "source": "pcap", **r} for r in rq])


def _endpoints(conns: pd.DataFrame) -> dict[int, dict]:
    if conns.empty:
        return {}
    return {int(k): {"client": c, "server": s}
            for k, c, s in zip(conns["conn"].tolist(), conns["client"].tolist(), conns["server"].tolist())}


def _tls_table(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return conform("tls", pd.DataFrame(columns=JSON_FIELDS["tls"]))
    df = pd.DataFrame(rows)
    stable = JSON_FIELDS["tls"]
    extras = [c for c in df.columns if c not in stable and c not in _TLS_LAST]
    df = df[stable + extras + _TLS_LAST].sort_values("conn").reset_index(drop=True)
    return conform("tls", df)


def _with_apps(conns: pd.DataFrame, apps: dict, opaque: np.ndarray, tls_rows: list[dict]) -> pd.DataFrame:
    """``app`` for every connection that carried bytes ("unknown" where no decoder spoke
    them), and the TLS facts the connections table repeats."""
    if conns.empty:
        return conns
    conns = conns.copy()
    hit = conns["conn"].isin(opaque).to_numpy(dtype=bool, na_value=False)
    if hit.any():
        app = conns["app"].astype("object").to_numpy(copy=True)
        app[hit] = "unknown"
        conns["app"] = pd.Series(app, index=conns.index, dtype="object")
    if apps:
        by_conn = {r["conn"]: r for r in tls_rows}
        for col in ("app", "sni", "alpn", "tls_version"):
            conns[col] = conns[col].astype("object")
        at = {int(c): i for i, c in zip(conns.index, conns["conn"])}
        for conn, app in apps.items():
            i = at.get(conn)
            if i is None:
                continue
            conns.at[i, "app"] = app
            r = by_conn.get(conn)
            if r is not None:
                conns.at[i, "sni"] = r.get("sni")
                conns.at[i, "alpn"] = r.get("alpn")
                conns.at[i, "tls_version"] = r.get("version")
    return conform("connections", conns)


def _merge_events(tcp_events: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return tcp_events
    new = conform("events", pd.DataFrame(rows))
    merged = pd.concat([tcp_events, new], ignore_index=True) if len(tcp_events) else new
    merged = merged.sort_values(["ts", "frame"], kind="stable", na_position="last").reset_index(drop=True)
    return conform("events", merged)


def _requests(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return conform("requests", pd.DataFrame())
    rq = pd.DataFrame(rows)
    if "start" in rq.columns:
        rq = rq.sort_values("start", kind="stable")
    rq["request"] = np.arange(len(rq))
    return conform("requests", rq)
