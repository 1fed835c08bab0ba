"""The timeline: a few tidy pandas tables with shared keys.

Every source (pcap, pcapng, HAR, DevTools trace, qlog) lands in the same four
tables, so a recipe does not care where a request came from.  Column names
and meanings are the contract between ``decode``/``sources`` and ``recipes``;
the CLI's ``--json`` field names are a subset of them (see DESIGN.md).

Conventions:
- times are epoch seconds (float64); durations are seconds;
- frames are 1-based, as Wireshark numbers them;
- ``conn`` equals Wireshark's ``tcp.stream`` for TCP connections; UDP flows
  and QUIC connections are numbered after all TCP connections, and their own
  ``udp.stream`` number is kept in ``stream``;
- anything unknown is NaN/None, never a made-up zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from traceviz import units

# Column name -> pandas dtype.  Order matters: it is the order users see.
PACKET_COLUMNS: dict[str, str] = {
    "frame": "int64",
    "ts": "float64",
    "src": "object",          # address text, IPv6 unbracketed
    "dst": "object",
    "sport": "Int64",
    "dport": "Int64",
    "transport": "object",    # tcp, udp, icmp, icmpv6, other, none
    "conn": "Int64",
    "dir": "object",          # c2s / s2c
    "flags": "object",        # TCP flags as text, e.g. "SYN,ACK"
    "seq": "Int64",           # relative, as Wireshark's tcp.seq
    "ack": "Int64",           # relative, as Wireshark's tcp.ack (NaN without ACK)
    "win": "Int64",           # calculated (scaled) window, as tcp.window_size
    "len": "Int64",           # transport payload bytes (tcp.len / udp payload)
    "wire_len": "int64",      # frame length on the wire (frame.len)
    "iface": "int64",         # capture interface (pcapng interface id, Wireshark's frame.interface_id; pcap: 0)
    # Several files read as one capture (rotated files): which file a frame came from
    # (the path as given) and its frame number there, to open it in Wireshark.
    "file": "category",
    "file_frame": "int64",
    # Measured once in the TCP tier (decode/tcp/inflight.py), as Wireshark's tcp.analysis.*:
    "bytes_in_flight": "Int64",   # tcp.analysis.bytes_in_flight: sent, not yet acknowledged (data segments)
    "ack_rtt": "float64",     # tcp.analysis.ack_rtt: seconds since the segment this ACK completes was sent
    "rtt_ambiguous": "bool",  # that ACK also covers a retransmitted segment: Karn's rule discards the sample
    "ts_rtt": "float64",      # round trip from TCP timestamps (the echoed TSval's first packet -> this ACK)
    "sack": "object",         # SACK blocks as ((left, right), ...) relative, as tcp.options.sack_le/re; None
}

# The connections' columns made of their payload: what the application spoke (TLS, HTTP and
# DNS decoded), and the keep-alive facts (made of the requests).  The rest is the transport
# tier's own, all a ``load(transport_only=True)`` has; ``load(keepalive_facts=False)`` leaves
# out the second.
APP_COLUMNS: dict[str, str] = {
    "app": "object",          # http/1.1, h2, h2c, tls, quic, h3, unknown
    "sni": "object",
    "alpn": "object",
    "tls_version": "object",
}
KEEPALIVE_COLUMNS: dict[str, str] = {
    # Keep-alive facts of the connections that carried HTTP or TCP keep-alive probes
    # (assemble/keepalive.py); NA elsewhere.
    "http_requests": "Int64", # HTTP exchanges it carried (0: opened and never used)
    "idle_first": "float64",  # handshake done -> first request: opened before it was needed
    "idle_gaps": "object",    # list of seconds between one exchange's end and the next request
    "idle_close": "float64",  # silence before the first FIN/RST (the closing side's idle timeout)
    "close_frame": "Int64",   # that first FIN or RST
    "conn_close": "object",   # who sent "Connection: close": client, server, both (None: neither)
    "pipelined": "Int64",     # HTTP/1.1 requests sent before the previous response ended
    "ka_probes": "Int64",     # TCP keep-alive probes (Wireshark's tcp.analysis.keep_alive)
    "ka_answered": "Int64",   # probes the peer acknowledged (keep-alive ACKs)
    "ka_idle": "float64",     # silence before the first probe (TCP_KEEPIDLE)
    "ka_interval": "float64", # median time between probes (TCP_KEEPINTVL)
    "ka_by": "object",        # client / server: who sent the probes
    "idle_sibling": "Int64",  # opened while this connection to the same server sat idle
}

CONNECTION_COLUMNS: dict[str, str] = {
    "conn": "int64",
    "transport": "object",    # tcp, udp, quic
    "stream": "int64",        # Wireshark's tcp.stream / udp.stream
    "client": "object",       # ip:port, IPv6 as [addr]:port
    "server": "object",
    "client_by": "object",    # syn (saw the SYN or SYN-ACK), ports (guessed: capture began mid-connection), first (UDP: first sender)
    "first_frame": "int64",
    "last_frame": "int64",
    "start": "float64",
    "end": "float64",
    "packets": "int64",
    "packets_c2s": "int64",
    "packets_s2c": "int64",
    "bytes_c2s": "int64",     # transport payload bytes client -> server
    "bytes_s2c": "int64",
    "syn": "float64",         # first SYN time
    "synack": "float64",      # first SYN-ACK time
    "ack": "float64",         # client's ACK completing the handshake
    "handshake_rtt": "float64",   # answered SYN -> ACK at the capture point (Wireshark's initial_rtt)
    "rtt_server": "float64",  # answered SYN -> SYN-ACK: capture point <-> server half
    "rtt_client": "float64",  # SYN-ACK -> ACK: capture point <-> client half
    "connect_time": "float64",    # first SYN -> ACK: what the client waited, lost SYNs included
    "syn_retransmits": "int64",
    "syn_backoff": "object",  # list of seconds between successive SYNs
    "close": "object",        # fin-client fin-server rst-client rst-server refused unanswered open (NA for UDP)
    "mss_client": "Int64",
    "mss_server": "Int64",
    "wscale_client": "Int64",
    "wscale_server": "Int64",
    "sack_permitted": "boolean",
    **APP_COLUMNS,
    # Frames and frame bytes each way, as Wireshark's Conversations count them
    # (bytes_c2s/bytes_s2c above are transport payload bytes).
    "frames_c2s": "Int64",
    "frames_s2c": "Int64",
    "wire_bytes_c2s": "Int64",
    "wire_bytes_s2c": "Int64",
    "iface": "Int64",         # the capture interface of its first frame
    **KEEPALIVE_COLUMNS,
}

APP_CONNECTION_COLUMNS = list(APP_COLUMNS)
KEEPALIVE_CONNECTION_COLUMNS = list(KEEPALIVE_COLUMNS)

# Columns packet captures add to ``connections`` after the schema's (a HAR or a trace has
# no SYNs to time them from).  How each is found: decode/tcp/connections.py.
HANDSHAKE_COLUMNS: dict[str, str] = {
    "last_syn": "float64",    # the client's last SYN
    "syn_wait": "float64",    # first SYN -> last SYN: time lost to unanswered SYNs
    "irtt": "float64",        # last SYN -> ACK
    "synack_lost": "bool",    # the first SYN-ACK answered an earlier SYN and never reached the client
    "server_half": "float64", # answered SYN -> SYN-ACK: the round trip beyond the capture point
    "client_half": "float64", # SYN-ACK -> ACK: the client's side of it (NaN if synack_lost)
    "syn_frame": "Int64",     # the answered SYN, the SYN-ACK and the ACK: what a ladder draws
    "synack_frame": "Int64",
    "ack_frame": "Int64",
}

EVENT_COLUMNS: dict[str, str] = {
    "ts": "float64",
    "frame": "Int64",
    "conn": "Int64",
    "stream": "Int64",        # HTTP/2 or QUIC stream id where the layer has one
    "layer": "object",        # tcp, udp, tls, http, h2, quic, h3, har, devtools
    "kind": "object",         # SYN, SYN-ACK, RST, retransmission, ClientHello, ...
    "dir": "object",
    "size": "Int64",
    "detail": "object",
}

REQUEST_COLUMNS: dict[str, str] = {
    "request": "int64",
    "conn": "Int64",
    "stream": "Int64",
    "protocol": "object",     # http/1.0, http/1.1, h2, h3
    "method": "object",
    "host": "object",
    "url": "object",
    "status": "Int64",
    "start": "float64",
    "ttfb": "float64",        # seconds from start to first response byte
    "end": "float64",
    "req_bytes": "Int64",
    "resp_bytes": "Int64",
    # Phases in seconds, HAR 1.2 semantics except `connect` excludes `tls`.
    "blocked": "float64",
    "dns": "float64",
    "connect": "float64",
    "tls": "float64",
    "send": "float64",
    "wait": "float64",
    "receive": "float64",
    "reused_connection": "boolean",
    "source": "object",       # pcap, har, devtools-trace, devtools-log
    "content_type": "object", # the response's Content-Type (media type, parameters dropped)
    "leg": "object",          # client / upstream: which side of a proxy (None: no proxy seen)
    "parent": "Int64",        # an upstream request: the client request it serves
    "cause": "object",        # a 5xx a proxy generated: why (see JSON_FIELDS' docs)
    "cause_detail": "object", # the cause in words: the evidence, or for unknown what is missing
    "cause_frames": "object", # list of the frames that show it
    "matched_by": "object",   # an upstream request: what ties it to its parent (x-request-id, path+time...)
    "connect_attempts": "object",  # a client request: upstream connections tried for it that carried no request
}

TLS_COLUMNS: dict[str, str] = {
    "conn": "int64",
    "client": "object",
    "server": "object",
    "sni": "object",
    "alpn_offered": "object",   # list of protocol names, in the client's order
    "alpn": "object",
    "versions_offered": "object",
    "version": "object",        # "TLS 1.2", "TLS 1.3", ...
    "cipher": "object",         # IANA name
    "group": "object",
    "resumed": "boolean",
    "hello_retry": "boolean",
    "handshake_ms": "float64",  # ClientHello -> both sides' Finished seen
    "rtts": "Int64",            # round trips before the client may send data
    "ja3": "object",
    "ja4": "object",
    "ja3s": "object",
    "ja4s": "object",
    "decrypted": "boolean",
    "alert": "object",
}

QUIC_COLUMNS: dict[str, str] = {
    "conn": "int64",          # shared with connections, whose transport is "quic"
    "client": "object",
    "server": "object",
    "version": "object",      # "0x" + 8 hex digits, e.g. 0x00000001
    "version_name": "object", # QUIC v1, QUIC v2, draft-29, Google Q050 ...
    "sni": "object",
    "alpn_offered": "object",
    "alpn": "object",
    "handshake_ms": "float64",
    "rtts": "Int64",
    "retry": "boolean",
    "version_negotiation": "boolean",
    "zero_rtt": "boolean",
    "resumed": "boolean",
    "decrypted": "boolean",
    "packets": "Int64",
    "bytes_c2s": "Int64",
    "bytes_s2c": "Int64",
    "close": "object",        # the CONNECTION_CLOSE error when readable, else idle / open
}

STREAM_COLUMNS: dict[str, str] = {
    "conn": "int64",          # one row per HTTP/2 stream (traceviz h2)
    "stream": "int64",
    "opened": "float64",
    "first_byte": "float64",
    "last_byte": "float64",
    "closed": "float64",
    "method": "object",
    "url": "object",
    "status": "Int64",
    "req_bytes": "Int64",
    "resp_bytes": "Int64",
    "data_frames": "Int64",
    "rst_code": "object",
    "window_stall_ms": "float64",
    "hol_stall_ms": "float64",
}

# The stable ``--json`` fields of each table, in order (docs/design.md lists them):
# scripts may rely on these names; more fields may follow, none is ever renamed.
# The CLI, the recipes and the payload tier all take them from here.
JSON_FIELDS: dict[str, list[str]] = {
    "connections": ["conn", "transport", "client", "server", "first_frame", "start", "end", "packets",
                    "bytes_c2s", "bytes_s2c", "syn", "synack", "ack", "handshake_rtt", "syn_retransmits",
                    "close", "app", "sni", "alpn", "tls_version"],
    "events": ["ts", "frame", "conn", "stream", "layer", "kind", "dir", "size", "detail"],
    "requests": ["request", "conn", "stream", "protocol", "method", "host", "url", "status", "start", "ttfb",
                 "end", "req_bytes", "resp_bytes", "blocked", "dns", "connect", "tls", "send", "wait", "receive",
                 "reused_connection", "source"],
    "tls": ["conn", "client", "server", "sni", "alpn_offered", "alpn", "versions_offered", "version",
            "cipher", "group", "resumed", "hello_retry", "handshake_ms", "rtts", "ja3", "ja4", "ja3s",
            "ja4s", "decrypted", "alert"],
    "quic": list(QUIC_COLUMNS),
    "streams": list(STREAM_COLUMNS),
}

SCHEMAS = {
    "packets": PACKET_COLUMNS,
    "connections": CONNECTION_COLUMNS,
    "events": EVENT_COLUMNS,
    "requests": REQUEST_COLUMNS,
    "tls": TLS_COLUMNS,
    "quic": QUIC_COLUMNS,
    "streams": STREAM_COLUMNS,
}

TCP_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS")


def media_type(value: Any) -> str | None:
    """A Content-Type as the ``content_type`` column holds it: ``text/html; charset=utf-8`` -> ``text/html``."""
    if not isinstance(value, str) or not value:
        return None
    media = value.split(";", 1)[0].strip().lower()
    return media or None


def mime_kind(mime: Any) -> str | None:
    """A content type's family, as DevTools' type filter names them."""
    if not isinstance(mime, str) or not mime:
        return None
    m = mime.split(";")[0].strip().lower()
    if m in ("text/html", "application/xhtml+xml"):
        return "Document"
    if m == "text/css":
        return "Stylesheet"
    if "javascript" in m or m in ("application/x-javascript", "text/ecmascript"):
        return "Script"
    if m.startswith("image/"):
        return "Image"
    if m.startswith("font/") or "font" in m:
        return "Font"
    if m.startswith(("video/", "audio/")):
        return "Media"
    if "json" in m or "xml" in m:
        return "XHR/Fetch"
    return "Other"


def missing(v) -> bool:
    """None, pandas NA or NaN: a value a table does not know."""
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


def positions(values: pd.Series) -> dict[int, list[int]]:
    """Integer value -> the positions holding it, in order (NA left out): a table's rows of one
    connection or one parent found once, rather than by a filter of the table for each."""
    out: dict[int, list[int]] = {}
    for i, v in enumerate(values.astype("Float64").to_numpy(dtype=float, na_value=float("nan")).tolist()):
        if v == v:
            out.setdefault(int(v), []).append(i)
    return out


def empty_table(name: str) -> pd.DataFrame:
    """An empty table with the right columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in SCHEMAS[name].items()})


# A column that may hold "unknown" needs a dtype that can say so: never a made-up zero.
_NULLABLE = {"int64": "Int64", "bool": "boolean"}


def _cast(series: pd.Series, dtype: str) -> pd.Series:
    if str(series.dtype) == dtype:
        return series
    if dtype == "object" and isinstance(series.dtype, pd.CategoricalDtype):
        return series   # text as categories (e.g. packets' src/flags): same values, no string per row
    if dtype == "object" and isinstance(series.dtype, pd.StringDtype):
        return _shared_strings(series)
    try:
        return series.astype(dtype)
    except (TypeError, ValueError):   # NA in an integer column: keep it as NA
        return series.astype(_NULLABLE.get(dtype, "object"))


def _shared_strings(series: pd.Series) -> pd.Series:
    """``series.astype(object)``, one Python string per distinct value rather than per row.

    pandas infers its own string dtype for text; ``astype(object)`` then makes a string object
    for every row (on 1M packets the events' layer, kind, dir and detail: 60 MB, the peak of the
    whole load).  The same values, NA where it was NA."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    values = np.append(np.asarray(uniques, dtype=object), series.dtype.na_value)
    return pd.Series(values[codes], index=series.index, name=series.name, dtype=object)   # -1: the NA


def conform(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Order ``df``'s schema columns first, add missing ones as NA, set dtypes.

    Extra columns a decoder adds are kept after the schema ones: more fields
    may follow, none of the schema's is renamed.
    """
    schema = SCHEMAS[name]
    if not df.index.equals(pd.RangeIndex(len(df))):
        # Rows keep the order they have (a sort, a filter): the result is numbered
        # afresh, never realigned to the old labels.
        df = df.reset_index(drop=True)
    out = {}
    for col, dtype in schema.items():
        if col in df.columns:
            out[col] = _cast(df[col], dtype)
        else:
            missing = float("nan") if dtype == "float64" else pd.NA
            out[col] = pd.Series(missing, index=df.index, dtype=_NULLABLE.get(dtype, dtype))
    extra = {c: df[c] for c in df.columns if c not in schema}
    # copy=False: the columns are already what they should be; pandas' copy-on-write
    # keeps the result independent of ``df`` all the same.
    return pd.DataFrame({**out, **extra}, index=pd.RangeIndex(len(df)), copy=False)


def _selected(conns: list[int], total: int | None) -> str:
    shown = ", ".join(map(str, conns[:12])) + (", ..." if len(conns) > 12 else "")
    return f"{len(conns)}{'' if total is None else f' of {total}'} connections ({shown})"


def _rows_of(df: pd.DataFrame, conns: list[int]) -> pd.DataFrame:
    if "conn" not in df:
        return df
    return df[df["conn"].isin(conns)].reset_index(drop=True)


@dataclass
class SourceInfo:
    """What was read, for `traceviz info` and for warnings."""

    path: str
    format: str                      # pcap, pcapng, har, devtools-trace, devtools-log, qlog
    size: int = 0
    compressed: bool = False
    link_types: dict[str, int] = field(default_factory=dict)   # name -> frames
    frames: int = 0
    detail: dict[str, Any] = field(default_factory=dict)       # format-specific facts
    warnings: list[str] = field(default_factory=list)


class TableNotBuilt(LookupError):
    """A table ``load(..., tables=...)`` was not asked to build."""


@dataclass
class Timeline:
    """One capture or browser export, decoded and finished.

    ``packets``, ``connections``, ``events``, ``requests``, ``tls``, ``quic``
    and ``streams`` are pandas DataFrames with the columns of the ``*_COLUMNS`` schemas above
    (extra columns may follow).  The assembler builds a Timeline whole;
    recipes and charts read it and never change it.  ``decryption`` says, in
    counts, what key material was there and what it unlocked (captures only;
    the key material itself is never kept).  ``skipped``: the tables
    ``load(..., tables=...)`` left out; reading one raises ``TableNotBuilt``
    rather than show an empty or partial table.
    """

    source: SourceInfo
    packets: pd.DataFrame = field(default_factory=lambda: empty_table("packets"))
    connections: pd.DataFrame = field(default_factory=lambda: empty_table("connections"))
    events: pd.DataFrame = field(default_factory=lambda: empty_table("events"))
    requests: pd.DataFrame = field(default_factory=lambda: empty_table("requests"))
    tls: pd.DataFrame = field(default_factory=lambda: empty_table("tls"))
    quic: pd.DataFrame = field(default_factory=lambda: empty_table("quic"))
    streams: pd.DataFrame = field(default_factory=lambda: empty_table("streams"))   # HTTP/2 streams
    decryption: dict | None = None
    skipped: frozenset = frozenset()

    def __getattribute__(self, name: str):
        if name in SCHEMAS and name in object.__getattribute__(self, "skipped"):
            raise TableNotBuilt(f"the {name} table was not built: load(..., tables=...) did not ask for it")
        return object.__getattribute__(self, name)

    @property
    def built(self) -> list[str]:
        """The tables this Timeline has."""
        return [name for name in SCHEMAS if name not in self.skipped]

    @property
    def warnings(self) -> list[str]:
        return self.source.warnings

    def conn(self, n: int) -> pd.DataFrame:
        """The packets of connection ``n`` (Wireshark's ``tcp.stream eq n``)."""
        return self.packets[self.packets["conn"] == n]

    def packets_of(self, conns) -> pd.DataFrame:
        """The packets of connections ``conns``: what a recipe reads rather than all the packets
        (an exported dataset reads only those; see ``assemble/dataset.py``)."""
        return self.packets[self.packets["conn"].isin([int(c) for c in conns])]

    def only(self, conns) -> "Timeline":
        """This Timeline kept to connections ``conns`` (numbers unchanged, so frames and
        ``conn`` still match Wireshark's): every table's rows of those connections."""
        keep = sorted({int(c) for c in conns})
        tables = {name: _rows_of(getattr(self, name), keep) for name in self.built}
        total = len(self.connections) if "connections" in self.built else None
        source = replace(self.source, detail={**self.source.detail, "selected": _selected(keep, total)})
        return Timeline(source=source, decryption=self.decryption, skipped=self.skipped, **tables)

    def to_parquet(self, folder: str | Path) -> list[Path]:
        """Write each non-empty table to ``folder/<table>.parquet``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name in self.built:
            df = getattr(self, name)
            df = df.copy()
            for col in df.columns:   # lists (e.g. syn_backoff) are fine; mixed objects are not
                if df[col].dtype == object:
                    df[col] = df[col].map(_parquet_safe)
            path = folder / f"{name}.parquet"
            df.to_parquet(path, index=False)
            written.append(path)
        return written

    def summary(self) -> dict[str, Any]:
        def rows(name: str) -> int | None:
            return None if name in self.skipped else int(len(getattr(self, name)))
        packets = rows("packets")
        return {
            "file": self.source.path,
            "format": self.source.format,
            "frames": packets if packets else self.source.frames,
            "connections": rows("connections"),
            "events": rows("events"),
            "requests": rows("requests"),
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (f"<Timeline {Path(s['file']).name} ({s['format']}): {s['frames']} frames, "
                f"{s['connections']} connections, {s['events']} events, {s['requests']} requests>")

    def _repr_html_(self) -> str:
        """A notebook's view: the summary, then the first connections with times read as the CLI shows
        them (seconds since the first packet, durations in ms), not as raw epoch floats."""
        import html
        s = self.summary()
        origin = float(self.packets["ts"].min()) if len(self.packets) else (
            float(self.requests["start"].min()) if len(self.requests) and self.requests["start"].notna().any() else None)
        if origin is not None:
            s["starts"] = units.utc(origin)
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                       f"<td>{html.escape(str(v))}</td></tr>" for k, v in s.items())
        if "connections" in self.skipped:
            return f"<table>{rows}</table>"
        head = self.connections.head(10)
        if not len(head):
            return f"<table>{rows}</table>"
        shown = pd.DataFrame({_unit_header(c): [units.readable(v, c, origin) or v for v in head[c].tolist()]
                              for c in head.columns})
        return f"<table>{rows}</table>{shown.to_html(escape=True, index=False, na_rep=chr(0x2013))}"


def _unit_header(column: str) -> str:
    k = units.kind(column)
    return f"{column} (s)" if k == "epoch" else f"{column} (ms)" if k == "duration" else column


def _parquet_safe(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value] if all(isinstance(v, (int, float)) for v in value) else [str(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None                  # NaN too: a column of lists (DNS answers) is NaN on other layers' rows
    return str(value) if not isinstance(value, str) else value
