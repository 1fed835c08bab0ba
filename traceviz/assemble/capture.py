"""A decoded packet capture as a finished ``Timeline``.

The transport tier's columns become ``packets``, ``connections`` and the TCP
``events``; the payload tier's protocol machines become the ``tls`` table,
TLS and HTTP ``events``, ``requests``, and the ``app``/``sni``/``alpn``/
``tls_version`` columns of ``connections``.  Nothing reads or rewrites the
Timeline after this.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from traceviz import _forks, _tuning
from traceviz.assemble import caching, carried, dns, grpc, h2, http, keepalive, keys, proxy, quic, tls, transport
from traceviz.assemble.columns import Columns, events_table
from traceviz.errors import describe
from traceviz.model import (APP_CONNECTION_COLUMNS, JSON_FIELDS, KEEPALIVE_CONNECTION_COLUMNS, TLS_COLUMNS,
                            SourceInfo, Timeline, conform)

# The last columns of the tls table: its details, after the stable fields.
_TLS_LAST = ["round_trips"]


@dataclass
class PayloadRows:
    """The payload tier's connections as rows, before they become tables.

    Made per connection (``payload_rows``), so a share of the connections can
    be turned into rows in another process and the shares concatenated, in
    connection order, as if one process had made them all.
    """

    tls: Columns = field(default_factory=Columns)         # columns: cheap to send back and to make a table of
    events: list[pd.DataFrame] = field(default_factory=list)   # parts of the events table, in order
    requests: list[dict] = field(default_factory=list)
    apps: dict[int, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    streams: list[dict] = field(default_factory=list)      # HTTP/2 streams rows
    heads: dict = field(default_factory=dict)              # (conn, frame) -> HTTP/1 message headers, for proxies

    def take(self, name: str):
        """The rows of ``name``, no longer held here: a table made of them lets them go at once
        (on 1M packets the rows are ~170 MB of dicts, more than any table made of them)."""
        rows = getattr(self, name)
        setattr(self, name, type(rows)())
        return rows

    def extend(self, other: PayloadRows) -> None:
        self.tls.extend(other.tls)
        self.events += other.events
        self.requests += other.requests
        self.apps.update(other.apps)
        self.warnings += other.warnings
        self.streams += other.streams
        self.heads.update(other.heads)


@dataclass
class Context:
    """What turning one connection into rows needs of the whole capture, made once before the
    payload tier runs (forked workers inherit it): endpoints and handshake times per connection,
    the packets and TCP events (HTTP/2 head-of-line stalls are timed against them), the key log
    (whether keys were there), and which events rows are wanted: every layer's (``events``), or
    only HTTP's (``http_events``: what the proxy analysis reads, when the events table is
    built for the requests only)."""

    path: str
    ends: dict[int, dict]
    handshakes: dict[int, tuple]
    packets: pd.DataFrame
    tcp_events: pd.DataFrame
    keylog: object = None
    events: bool = True
    http_events: bool = True


def context(tables, path: str, keylog=None, events: bool = True, http_events: bool = True) -> Context:
    packets, connections, tcp_events = tables
    return Context(path, endpoints(connections), _handshakes(connections), packets, tcp_events, keylog, events,
                   events or http_events)


def timeline(info: SourceInfo, t, payload, keylog=None, rsa_key=None, dsb_blocks=(), quic_payload=None,
             dns_messages=None) -> Timeline:
    """The Timeline of a capture: ``t`` from ``decode.tcp.connections.analyze``,
    ``payload`` from ``decode.streams.decode_streams``, ``quic_payload`` from
    ``decode.quic.streams.decode_quic``, ``dns_messages`` (a ``DNSCapture``) from ``decode.dns.decode_dns``."""
    tables = transport.tables(t)
    info.warnings.extend(over_limits(info.path, payload.skipped))
    rows = payload_rows(payload.results, context(tables, info.path, keylog))
    return finish(info, tables, rows, payload.opaque, keylog, rsa_key, dsb_blocks, quic_payload=quic_payload,
                  dns_messages=dns_messages)


def over_limits(path: str, skipped: dict[int, str]) -> list[str]:
    """One warning per connection left undecoded over a resource limit (``Plan.skipped``)."""
    return [describe(path, f"connection {conn}: {why}") for conn, why in sorted(skipped.items())]


def payload_rows(results: dict, ctx: Context) -> PayloadRows:
    """Rows of the payload tier's results (``{conn: decode.streams.StreamResult}``), in connection order."""
    out, events = PayloadRows(), Columns()
    streams = h2.Streams(results, ctx.packets, ctx.tcp_events)
    for conn, result in sorted(results.items()):
        conn_ends = ctx.ends.get(conn, {})
        if result.tls is not None:
            session = result.tls
            if session.client_hello is not None or session.server_hello is not None:
                row = tls.session_row(session, conn_ends, ctx.keylog)
                row["tcp_rtt"] = _tcp_rtt(ctx.handshakes, conn)
                out.tls.add_rows([row])
            if ctx.events:
                events.add_block(*tls.event_columns(conn, session))
            for err in session.errors[:5]:
                out.warnings.append(describe(ctx.path, f"TLS on connection {conn}: {err}"))
        for note in result.notes:
            out.warnings.append(describe(ctx.path, f"connection {conn}: {note}"))
        ev, rq = _http_rows(result, conn_ends.get("server"), ctx.handshakes.get(conn))
        streams.add(result, ev, conn_ends.get("server"))
        if ctx.events:
            events.add_rows(ev + carried.rows(conn, result.http))
        elif ctx.http_events:
            events.add_rows(ev)
        out.requests += rq
        out.apps[conn] = http.app_label(result)
    out.events = [events_table(events)] if len(events) else []
    out.streams = streams.rows
    out.heads = keepalive.http1_heads(results, proxy.HEADERS_READ)   # not every header: they are sent back pickled
    return out


def finish(info: SourceInfo, tables, rows: PayloadRows, opaque: np.ndarray, keylog=None, rsa_key=None,
           dsb_blocks=(), skip=frozenset(), quic_payload=None, dns_messages=None,
           keepalive_facts: bool = True, request_facts: bool = True, quic_made=None) -> Timeline:
    """The Timeline from the transport tier's ``tables`` (packets, connections, events), the
    payload rows, the QUIC connections and the DNS messages (``decode.dns.DNSCapture``).

    ``rows`` is used up: its lists are emptied as the tables are made of them.
    ``skip``: tables not to build (left empty; the loader marks them); ``keepalive_facts``
    False: the connections table without them (``KEEPALIVE_CONNECTION_COLUMNS`` left out:
    it is shown without them, or built for the requests only);
    ``request_facts`` False: the requests table is built for the keep-alive facts only,
    without its proxy legs, causes, races and DNS lookups.  ``quic_made``: QUIC's rows made
    already (``quic_rows_of``; the loader makes them beside the payload tier's workers), in place
    of ``quic_payload``."""
    packets, connections, events = tables
    q = quic_made if quic_made is not None else \
        quic_rows_of(quic_payload, connections, _end(packets), keylog, info, events="events" not in skip)
    info.warnings.extend(rows.warnings)
    # The smaller tables first, each letting its rows go, so the events' are made with room;
    # what they held goes back to the kernel as each is made (``let_go``: a big load keeps
    # freed heap otherwise, and on 1M packets of real traffic ~180 MB of it stood on the peak).
    let_go = _tuning.hand_back_freed_memory
    let_go()                # the workers' pickles
    tls_rows = Columns(_with_tcp_rtt(q.tls, connections))
    tls_rows.extend(rows.take("tls"))
    if "connections" not in skip:
        apps = {**dns.apps(dns_messages), **q.apps, **rows.apps}
        connections = quic.mark_connections(_with_apps(connections, apps, opaque, tls_rows), q.apps)
    requests = _requests(q.requests + rows.take("requests")) if "requests" not in skip else _requests([])
    dns_events = dns.events(dns_messages)
    let_go()
    parts = [events, q.events, *rows.take("events"), dns_events]
    with ExitStack() as beside:     # a child left unread (this process stopped) is stopped too
        facts = _facts_beside(beside, connections, packets, parts, requests, rows.heads, dns_events,
                              keepalive_facts, request_facts) if "requests" not in skip else {}
        tls_table = _tls_table(tls_rows)
        del tls_rows
        if "events" not in skip:
            events = h2.finish_events(_merge_events(*parts))
        del parts
        let_go()
        streams = h2.table(rows.streams)
        connections = facts["connections"].result() if "connections" in facts else connections
        requests = facts["requests"].result() if "requests" in facts else requests
    if not keepalive_facts:
        connections = _without(connections, KEEPALIVE_CONNECTION_COLUMNS)
    return Timeline(
        source=info, packets=packets, connections=connections, events=events, requests=requests,
        tls=tls_table, quic=q.table, streams=streams,
        decryption=keys.decryption_report(tls_table, keylog, rsa_key, list(dsb_blocks)),
    )


def _facts_beside(beside: ExitStack, connections, packets, parts, requests, heads, dns_events,
                  keepalive_facts: bool, request_facts: bool) -> dict[str, _forks.Beside]:
    """The keep-alive facts (``"connections"``), and the requests' races, proxy legs, causes and
    DNS lookups (``"requests"``), begun in a child each (~0.35 s each on 1M packets of real
    traffic, beside this process's ~0.4 s of tables): neither reads what the other makes, and
    both read only the keep-alive and HTTP events, merged apart in the order they have in the
    whole table (``_for_facts``)."""
    fork, some = _fork_for_facts(connections), _merge_events(*map(_for_facts, parts))
    out = {}
    if keepalive_facts:
        out["connections"] = beside.enter_context(_forks.Beside(
            partial(proxy.with_keepalive_facts, connections, packets, some, requests, heads), fork=fork))
    if request_facts:
        out["requests"] = beside.enter_context(_forks.Beside(
            partial(_request_facts, requests, connections, packets, some, heads, dns_events), fork=fork))
    return out


def _request_facts(requests, connections, packets, events, heads, dns_events) -> pd.DataFrame:
    """``requests`` with their races, proxy legs and causes (``proxy.with_request_facts``) and
    their DNS lookups (``dns.with_lookups``)."""
    requests = proxy.with_request_facts(requests, connections, packets, events, heads)
    return dns.with_lookups(requests, connections, dns_events)


def _for_facts(events: pd.DataFrame) -> pd.DataFrame:
    """The rows of an events table the facts read (``proxy.with_keepalive_facts``, ``with_request_facts``): HTTP's and the keep-alive
    probes'.  Merged (``_merge_events``: one stable sort by time) they are in the order they
    have in the whole table merged."""
    if not len(events):
        return events
    keep = (events["layer"] == "http").to_numpy(dtype=bool, na_value=False) \
        | events["kind"].isin(keepalive.KA_KINDS).to_numpy(dtype=bool, na_value=False)
    return events[keep]


def _fork_for_facts(connections: pd.DataFrame) -> bool:
    """Whether the facts are worth a child (``_tuning.workers``), the payload tier's children
    reaped first: their reapers are threads, and ``workers`` forks nothing beside a thread."""
    _forks.reaped()
    return _tuning.workers(len(connections)) > 1


def transport_tier(info: SourceInfo, tables, quic_made: quic.QuicRows) -> Timeline:
    """The Timeline of the index and TCP tiers alone (``load(transport_only=True)``): the
    transport tier's ``tables``, its UDP flows that are QUIC connections (``quic_made``:
    ``quic_rows_of``) marked so, and none of the connections' columns made of the payload
    (left out, not NA)."""
    packets, connections, events = tables
    connections = quic.mark_connections(connections, quic_made.apps)
    return Timeline(source=info, packets=packets,
                    connections=_without(connections, APP_CONNECTION_COLUMNS + KEEPALIVE_CONNECTION_COLUMNS),
                    events=_merge_events(events))


def _without(connections: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``connections`` with ``columns`` left out (absent, not NA: reading one raises ``KeyError``
    rather than saying a wrong "none")."""
    return connections.drop(columns=[c for c in columns if c in connections.columns])


def quic_rows_of(quic_payload, connections: pd.DataFrame, capture_end: float | None, keylog, info: SourceInfo,
                 events: bool = True):
    """The QUIC connections' rows (``quic.rows``; ``capture_end``: the time of the capture's last
    packet; ``events`` False: no events rows), their warnings added to ``info``'s."""
    q = quic.rows(quic_payload, endpoints(connections), keylog, info.path, capture_end, events=events)
    info.warnings.extend(q.warnings)
    return q


def _end(packets: pd.DataFrame) -> float | None:
    return float(packets["ts"].max()) if len(packets) else None


def _http_rows(result, server: str | None, handshake: tuple | None) -> tuple[list[dict], list[dict]]:
    if result.http is None:
        return [], []
    ev, rq = http.connection_rows(result.http, result.scheme, http.default_host(result, server))
    caching.annotate(rq, result.http)
    grpc.annotate(rq, result.http)
    syn, ack, rtt = handshake or (None, None, None)
    hello = done = None
    if result.tls is not None and result.tls.client_hello_event is not None:
        hello = result.tls.client_hello_event.ts
        end = result.tls.handshake_end() if result.tls.completed() else None
        done = end.ts if end is not None else None
        if done is None:
            hello = None    # a handshake not seen to its end cannot be timed: the requests keep their own start
    http.opening_phases(rq, syn, ack, hello, done, rtt)
    conn = result.conn
    return ([{"conn": conn, **e} for e in ev], [{"conn": conn, "source": "pcap", **r} for r in rq])


def _handshakes(conns: pd.DataFrame) -> dict[int, tuple]:
    """conn -> (first SYN, handshake-completing ACK, round trip), None where not seen."""
    if conns.empty:
        return {}

    def val(v):
        return None if v is None or v is pd.NA or v != v else float(v)      # pd.isna at a float's speed
    return {int(k): (val(s), val(a), val(r)) for k, s, a, r in
            zip(conns["conn"].tolist(), conns["syn"].tolist(), conns["ack"].tolist(), conns["handshake_rtt"].tolist())}


def endpoints(conns: pd.DataFrame) -> dict[int, dict]:
    """{conn: {"client": ..., "server": ...}} of the connections table."""
    if conns.empty:
        return {}
    return {int(k): {"client": c, "server": s}
            for k, c, s in zip(conns["conn"].tolist(), conns["client"].tolist(), conns["server"].tolist())}


def _tls_table(rows: Columns) -> pd.DataFrame:
    if not len(rows):
        return conform("tls", pd.DataFrame(columns=JSON_FIELDS["tls"]))
    df = rows.frame(TLS_COLUMNS)
    stable = JSON_FIELDS["tls"]
    extras = [c for c in df.columns if c not in stable and c not in _TLS_LAST]
    df = df[stable + extras + _TLS_LAST].sort_values("conn").reset_index(drop=True)
    return conform("tls", df)


def _with_tcp_rtt(tls_rows: list[dict], conns: pd.DataFrame) -> list[dict]:
    """Each session's ``tcp_rtt``: the round trip of the TCP handshake its connection opened
    with (seconds; NaN for QUIC, or where the handshake was not seen).  A TLS handshake's
    time reads plainly next to it, and the tls table alone then says it (``recipes/tls.py``
    needs no connections table).  The payload tier's rows get theirs as they are made
    (``payload_rows``), the QUIC sessions' here."""
    if not tls_rows:
        return tls_rows
    handshakes = _handshakes(conns)
    for r in tls_rows:
        r["tcp_rtt"] = _tcp_rtt(handshakes, r["conn"])
    return tls_rows


def _tcp_rtt(handshakes: dict[int, tuple], conn: int) -> float:
    rtt = handshakes.get(conn, (None, None, None))[2]
    return np.nan if rtt is None else rtt


def _with_apps(conns: pd.DataFrame, apps: dict, opaque: np.ndarray, tls_rows: Columns) -> pd.DataFrame:
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
    shown = [i for i, c in enumerate(tls_rows.cols.get("conn", ())) if c in apps]
    if shown:
        at = index.get_indexer([tls_rows.cols["conn"][i] for i in shown])
        found = at >= 0
        for col, key in (("sni", "sni"), ("alpn", "alpn"), ("tls_version", "version")):
            given = tls_rows.cols.get(key, [None] * len(tls_rows))
            values = conns[col].astype("object").to_numpy(copy=True)
            values[at[found]] = np.array([given[i] for i in shown], dtype=object)[found]
            conns[col] = pd.Series(values, index=conns.index, dtype="object")
    return conform("connections", conns)


def _merge_events(tcp_events: pd.DataFrame, *frames: pd.DataFrame) -> pd.DataFrame:
    """The TCP events with more events tables (the payload tier's, DNS's), by time.

    By time also when there is nothing to merge: the TCP events come in frame order, which
    is not time order where a capture's clock stepped back, and a table's order must not
    depend on whether a layer above TCP had something to say."""
    new = [f for f in frames if len(f)]
    if not new and (not len(tcp_events) or _in_time_order(tcp_events)):
        return tcp_events
    parts = ([tcp_events] if len(tcp_events) else []) + new
    return conform("events", _stacked(parts, _time_order(parts)))


def _time_order(parts: list[pd.DataFrame]) -> np.ndarray:
    """The positions of ``parts``' rows stacked, in (ts, frame) order: ties keep their places,
    a missing time or frame goes last (``sort_values(kind="stable", na_position="last")``)."""
    ts = np.concatenate([p["ts"].to_numpy(dtype=np.float64, na_value=np.nan) for p in parts])
    last = np.iinfo(np.int64).max
    frame = np.concatenate([p["frame"].to_numpy(dtype=np.int64, na_value=last) for p in parts])
    return np.lexsort((frame, ts))


def _stacked(parts: list[pd.DataFrame], order: np.ndarray) -> pd.DataFrame:
    """``parts``' rows stacked and put in ``order``, as ``pd.concat`` then a sort would, made a
    column at a time: the events are copied once rather than stacked and copied again sorted,
    which on 1M packets of real traffic was ~150 MB of the load's peak."""
    out = {}
    for name in dict.fromkeys(c for p in parts for c in p.columns):
        present = next(p[name] for p in parts if name in p.columns)
        # A part without the column has NA there, of the column's own type (as concat fills it).
        pieces = [p[name] if name in p.columns else present.iloc[:0].reindex(range(len(p))) for p in parts]
        out[name] = pd.concat(pieces, ignore_index=True).take(order).reset_index(drop=True)
    return pd.DataFrame(out, copy=False)


def _in_time_order(events: pd.DataFrame) -> bool:
    """Whether sorting by (ts, frame) would leave the rows as they are."""
    ts, frame = events["ts"].to_numpy(), events["frame"].to_numpy(dtype=np.float64, na_value=np.inf)
    if np.isnan(ts).any():
        return False
    same = ts[1:] == ts[:-1]
    return bool(np.all((ts[1:] > ts[:-1]) | (same & (frame[1:] >= frame[:-1]))))


def _requests(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return conform("requests", pd.DataFrame())
    rq = pd.DataFrame(rows)
    if "start" in rq.columns:
        rq = rq.sort_values("start", kind="stable")
    rq["request"] = np.arange(len(rq))
    return conform("requests", rq)
