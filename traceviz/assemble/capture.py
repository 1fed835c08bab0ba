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

from traceviz.assemble import caching, carried, dns, grpc, h2, http, keys, proxy, quic, tls, transport
from traceviz.errors import describe
from traceviz.model import JSON_FIELDS, SourceInfo, Timeline, conform

# The last columns of the tls table: its details, after the stable fields.
_TLS_LAST = ["round_trips"]


def timeline(info: SourceInfo, t, payload, keylog=None, rsa_key=None, dsb_blocks=(), quic_payload=None,
             dns_messages=None) -> Timeline:
    """The Timeline of a capture: ``t`` from ``decode.tcp.connections.analyze``,
    ``payload`` from ``decode.streams.decode_streams``, ``quic_payload`` from
    ``decode.quic.streams.decode_quic``, ``dns_messages`` (a ``DNSCapture``) from ``decode.dns.decode_dns``."""
    packets, connections, events = transport.tables(t)
    endpoints = _endpoints(connections)
    q = quic.rows(quic_payload, endpoints, keylog, info.path, float(packets["ts"].max()) if len(packets) else None)
    info.warnings.extend(q.warnings)
    tls_rows, event_rows, request_rows, apps = q.tls, q.events, q.requests, dict(q.apps)
    dns_events = dns.events(dns_messages)
    apps.update(dns.apps(dns_messages))
    h2_streams = h2.Streams(payload, packets, events)
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
        h2_streams.add(result, ev, ends.get("server"))
        event_rows += ev + carried.rows(conn, result.http)
        request_rows += rq
        apps[conn] = http.app_label(result)
    tls_table = _tls_table(tls_rows)
    events = h2.finish_events(_merge_events(events, event_rows, dns_events))
    connections = quic.mark_connections(_with_apps(connections, apps, payload.opaque, tls_rows), q.apps)
    connections, requests = proxy.assemble(connections, packets, events, _requests(request_rows), payload)
    requests = dns.with_lookups(requests, connections, dns_events)
    return Timeline(
        source=info, packets=packets, connections=connections, events=events, requests=requests,
        tls=tls_table,
        quic=q.table,
        streams=h2_streams.table(),
        decryption=keys.decryption_report(tls_table, keylog, rsa_key, list(dsb_blocks)),
    )


def _http_rows(result, server: str | None) -> tuple[list[dict], list[dict]]:
    if result.http is None:
        return [], []
    ev, rq = http.connection_rows(result.http, result.scheme, http.default_host(result, server))
    caching.annotate(rq, result.http)
    grpc.annotate(rq, result.http)
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


def _merge_events(tcp_events: pd.DataFrame, rows: list[dict], *frames: pd.DataFrame) -> pd.DataFrame:
    """The TCP events with ``rows`` (dicts) and ``frames`` (events tables made as columns), by time."""
    new = ([conform("events", pd.DataFrame(rows))] if rows else []) + [f for f in frames if len(f)]
    if not new:
        return tcp_events
    merged = pd.concat([tcp_events] + new, ignore_index=True) if len(tcp_events) else pd.concat(new, ignore_index=True)
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
