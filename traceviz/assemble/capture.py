"""A decoded packet capture as a finished ``Timeline``.

The transport tier's columns become ``packets``, ``connections`` and the TCP
``events``; the payload tier's protocol machines become the ``tls`` table,
TLS and HTTP ``events``, ``requests``, and the ``app``/``sni``/``alpn``/
``tls_version`` columns of ``connections``.  Nothing reads or rewrites the
Timeline after this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from traceviz.assemble import http, keys, tls, transport
from traceviz.errors import describe
from traceviz.model import JSON_FIELDS, SourceInfo, Timeline, conform

# The last columns of the tls table: its details, after the stable fields.
_TLS_LAST = ["round_trips"]


@dataclass
class PayloadRows:
    """The payload tier's connections as rows, before they become tables.

    Made per connection (``payload_rows``), so a share of the connections can
    be turned into rows in another process and the shares concatenated, in
    connection order, as if one process had made them all.
    """

    tls: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    apps: dict[int, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def extend(self, other: PayloadRows) -> None:
        self.tls += other.tls
        self.events += other.events
        self.requests += other.requests
        self.apps.update(other.apps)
        self.warnings += other.warnings


def timeline(info: SourceInfo, t, payload, keylog=None, rsa_key=None, dsb_blocks=()) -> Timeline:
    """The Timeline of a capture: ``t`` from ``decode.tcp.connections.analyze``,
    ``payload`` from ``decode.streams.decode_streams``."""
    tables = transport.tables(t)
    rows = payload_rows(payload.results, endpoints(tables[1]), info.path, keylog)
    return finish(info, tables, rows, payload.opaque, keylog, rsa_key, dsb_blocks)


def payload_rows(results: dict, ends: dict[int, dict], path: str, keylog=None, events: bool = True) -> PayloadRows:
    """Rows of the payload tier's results (``{conn: decode.streams.StreamResult}``), in connection order.

    ``ends``: each connection's client and server (``endpoints``); ``events``
    False: no events rows (a load that builds no events table)."""
    out = PayloadRows()
    for conn, result in sorted(results.items()):
        conn_ends = ends.get(conn, {})
        if result.tls is not None:
            session = result.tls
            if session.client_hello is not None or session.server_hello is not None:
                out.tls.append(tls.session_row(session, conn_ends, keylog))
            if events:
                out.events += tls.event_rows(conn, session)
            for err in session.errors[:5]:
                out.warnings.append(describe(path, f"TLS on connection {conn}: {err}"))
        for note in result.notes:
            out.warnings.append(describe(path, f"connection {conn}: {note}"))
        ev, rq = _http_rows(result, conn_ends.get("server"))
        if events:
            out.events += ev
        out.requests += rq
        out.apps[conn] = http.app_label(result)
    return out


def finish(info: SourceInfo, tables, rows: PayloadRows, opaque: np.ndarray, keylog=None, rsa_key=None,
           dsb_blocks=(), skip=frozenset()) -> Timeline:
    """The Timeline from the transport tier's ``tables`` (packets, connections, events) and the payload rows.

    ``skip``: tables not to build (left empty; the loader marks them)."""
    packets, connections, events = tables
    info.warnings.extend(rows.warnings)
    tls_table = _tls_table(rows.tls)
    return Timeline(
        source=info, packets=packets,
        connections=connections if "connections" in skip else _with_apps(connections, rows.apps, opaque, rows.tls),
        events=events if "events" in skip else _merge_events(events, rows.events),
        requests=_requests(rows.requests) if "requests" not in skip else _requests([]),
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


def endpoints(conns: pd.DataFrame) -> dict[int, dict]:
    """{conn: {"client": ..., "server": ...}} of the connections table."""
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
    index = pd.Index(conns["conn"].to_numpy())
    app = conns["app"].astype("object").to_numpy(copy=True)
    app[conns["conn"].isin(opaque).to_numpy(dtype=bool, na_value=False)] = "unknown"
    if apps:
        at = index.get_indexer(np.fromiter(apps, dtype=np.int64, count=len(apps)))
        found = at >= 0
        app[at[found]] = np.array(list(apps.values()), dtype=object)[found]
    conns["app"] = pd.Series(app, index=conns.index, dtype="object")
    shown = [r for r in tls_rows if r["conn"] in apps]
    if shown:
        at = index.get_indexer([r["conn"] for r in shown])
        found = at >= 0
        for col, key in (("sni", "sni"), ("alpn", "alpn"), ("tls_version", "version")):
            values = conns[col].astype("object").to_numpy(copy=True)
            values[at[found]] = np.array([r.get(key) for r in shown], dtype=object)[found]
            conns[col] = pd.Series(values, index=conns.index, dtype="object")
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
