"""``--where``: one filter language over any of the Timeline's tables.

An expression is a pandas query over the table's columns (``DataFrame.query``
semantics, evaluated by pandas' own expression parser, never by ``eval``)::

    server == '10.0.0.2:443' and handshake_rtt > 0.1
    status >= 500 or url.str.contains('/api/')
    transport == 'udp' and not (conn in [3, 4])

Columns are the table's (``traceviz connections FILE --json`` shows them);
strings are quoted; ``and``, ``or``, ``not``, comparisons, ``in [..]`` and
the ``.str`` methods work as in pandas.  A missing value compares false.

The display filters Wireshark users type are translated first, so they may
be mixed with the above:

    tcp.stream eq 3            ->  conn == 3 and transport == 'tcp'
    udp.stream == 2            ->  transport == 'udp' and stream == 2
    ip.addr == 10.0.0.1        ->  the address on either end (src/dst, client/server, a/b)
    ip.src == 10.0.0.1         ->  src == '10.0.0.1'                  (packet tables)
    tcp.port == 443            ->  either end's port, on TCP
    frame.number == 7          ->  frame == 7
    http.request.method == "GET"   http.response.code == 404   http.host == "x"
    tls.handshake.extensions_server_name == "x"                ->  sni == 'x'

with ``eq ne gt lt ge le``, ``&& || !``, ``contains``, ``matches`` (a
regular expression) and ``in {80 443 8000..8080}``.  A field without a translation, or one the table has
no column for, is refused with the list of what is known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from traceviz.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

_OPS = {"eq": "==", "==": "==", "ne": "!=", "!=": "!=", "~=": "!=", "gt": ">", ">": ">", "lt": "<", "<": "<",
        "ge": ">=", ">=": ">=", "le": "<=", "<=": "<=", "contains": "contains", "matches": "matches",
        "~": "matches"}

# A display-filter comparison: field, operator, value (quoted, a number, an address or a word).
_VALUE = r'''"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]+|[\w.\-/]+'''
_FIELD = r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+"
_COMPARISON = re.compile(
    rf"(?<![\w.])(?P<field>{_FIELD})\s*(?P<op>==|!=|~=|>=|<=|>|<|~|\b(?:eq|ne|gt|lt|ge|le|contains|matches)\b)"
    rf"\s*(?P<value>{_VALUE})")
# A dotted name standing alone (not a pandas method chain such as url.str.contains(...)).
_BARE_FIELD = re.compile(rf"(?<![\w.'\"])(?P<field>{_FIELD})(?![\w(.])")
# Wireshark's set membership: tcp.port in {80 443 8000..8080}
_MOST_IN_RANGE = 64
_SET = re.compile(rf"(?<![\w.])(?P<field>{_FIELD})\s+in\s+\{{(?P<values>[^{{}}]*)\}}")
_STRING = re.compile(r'''"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*\'''')


@dataclass(frozen=True)
class Field:
    """How one Wireshark field reads on a table: ``translate(columns, op, value)`` gives a
    pandas expression, or None when the table has nothing to match it against."""

    name: str
    translate: Callable[[set[str], str, str], str | None]
    meaning: str


def where(df: "pd.DataFrame", expression: str | None, table: str = "rows") -> "pd.DataFrame":
    """The rows of ``df`` that ``expression`` selects (all of them for None or blank).

    Raises ``InputError`` (a one-line reason, naming the columns or fields
    available) for an expression that cannot be read or names what the table
    does not have.
    """
    if expression is None or not expression.strip():
        return df
    query = translate(expression, set(map(str, df.columns)), table)
    try:
        kept = df.query(query, engine="python")
    except Exception as exc:   # pandas raises many types for bad expressions; one line for the user
        raise InputError("--where", _explain(exc, query, df.columns, table)) from None
    return kept


# Where a connection-level --where looks, in order: the first table that has every column the
# expression names decides (``status >= 500`` is read on requests, ``sni == 'x'`` on tls).
CONNECTION_TABLES = ("connections", "tls", "quic", "requests", "streams", "events", "packets")


def connections_where(tl, expression: str) -> list[int]:
    """The connections ``expression`` selects, for a command that analyses whole connections:
    those with a row it keeps in the first of ``CONNECTION_TABLES`` that can read it.

    Raises ``InputError`` (the connections table's reason) when no table can."""
    from traceviz.model import TableNotBuilt

    refusal = None
    for table in CONNECTION_TABLES:
        try:
            df = getattr(tl, table)
        except TableNotBuilt:
            continue
        if "conn" not in df:
            continue
        try:
            kept = where(df, expression, table)
        except InputError as exc:
            refusal = refusal or exc
            continue
        return sorted({int(c) for c in kept["conn"].dropna()})
    raise refusal or InputError("--where", "this file has no table to filter")


def translate(expression: str, columns: Iterable[str], table: str = "rows") -> str:
    """``expression`` with Wireshark's display-filter syntax rewritten as a pandas query
    over ``columns`` (a query already in pandas syntax comes back unchanged)."""
    columns = set(columns)
    expression = _SET.sub(_membership, expression)
    out, pos = [], 0
    for m in _COMPARISON.finditer(expression):
        if _inside_string(expression, m.start()):
            continue
        out.append(_logic(expression[pos:m.start()]))
        out.append("(" + _comparison(m["field"], _OPS[m["op"]], m["value"], columns, table) + ")")
        pos = m.end()
    out.append(_logic(expression[pos:]))
    query = "".join(out)
    bare = [m for m in _BARE_FIELD.finditer(query) if not _inside_string(query, m.start())
            and m["field"] not in columns]
    for m in reversed(bare):
        query = query[:m.start()] + "(" + _presence(m["field"], columns, table) + ")" + query[m.end():]
    return query


def _membership(m: re.Match) -> str:
    """``f in {a b c..e}`` as the comparisons it means: ``(f == a || f == b || f == c || f == d ...)``.
    A range is spelt out value by value: a field with two ends (tcp.port) is in it when either end
    is, which two comparisons (>= c, <= e) would get wrong."""
    field, tests = m["field"], []
    for value in m["values"].replace(",", " ").split():
        low, dots, high = value.partition("..")
        if not dots:
            tests.append(f"{field} == {value}")
            continue
        if not (low.isdigit() and high.isdigit()) or not 0 <= int(high) - int(low) < _MOST_IN_RANGE:
            raise InputError("--where", f"{field} in {{{value}}}: a range is two whole numbers at most "
                                        f"{_MOST_IN_RANGE} apart (or compare a column: sport >= 1024)")
        tests.extend(f"{field} == {v}" for v in range(int(low), int(high) + 1))
    if not tests:
        raise InputError("--where", f"{field} in {{}}: the set is empty")
    return "(" + " || ".join(tests) + ")"


def known_fields() -> list[str]:
    return sorted(FIELDS)


# --- the translations ---------------------------------------------------------------------

def _comparison(field: str, op: str, value: str, columns: set[str], table: str) -> str:
    f = FIELDS.get(field)
    if f is None:
        raise InputError("--where", f"no translation for the Wireshark field {field!r}; known: "
                         f"{', '.join(known_fields())} (or use the table's columns)")
    expr = f.translate(columns, op, value)
    if expr is None:
        raise InputError("--where", f"{field} ({f.meaning}) has nothing to match in the {table} table "
                                    f"(columns: {', '.join(sorted(columns))})")
    return expr


def _presence(field: str, columns: set[str], table: str) -> str:
    """A field named alone, as Wireshark tests its presence: ``tcp.analysis.retransmission``."""
    kinds = _ANALYSIS.get(field)
    if kinds is not None and "kind" in columns:
        return f"kind in {kinds!r}"
    if kinds is not None:
        raise InputError("--where", f"{field} is an event: filter the events table (traceviz timeline)")
    if field in FIELDS:
        raise InputError("--where", f"{field} needs a comparison, e.g. {field} == ...")
    raise InputError("--where", f"no translation for the Wireshark field {field!r}; known: "
                                f"{', '.join(known_fields())} (or use the table's columns)")


def _literal(value: str, number: bool = False) -> str:
    """A display-filter value as a pandas literal: quoted strings stay, numbers stay
    numbers where the field is numeric, anything else becomes a string."""
    if value[:1] in "\"'":
        return repr(value[1:-1].encode().decode("unicode_escape"))
    if number and re.fullmatch(r"-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?)", value):
        return str(int(value, 16)) if value.lower().startswith("0x") else value
    if number:
        raise InputError("--where", f"{value!r} is not a number")
    return repr(value.strip("[]"))


def _number(column: str):
    def translate(columns: set[str], op: str, value: str) -> str | None:
        if column not in columns:
            return None
        return _compare(column, op, _literal(value, number=True))
    return translate


def _text(*candidates: str):
    def translate(columns: set[str], op: str, value: str) -> str | None:
        column = next((c for c in candidates if c in columns), None)
        if column is None:
            return None
        return _compare(column, op, _literal(value))
    return translate


def _compare(column: str, op: str, literal: str) -> str:
    if op in ("contains", "matches"):
        return f"{column}.astype('string').str.contains({literal}, regex={op == 'matches'}, na=False)"
    return f"{column} {op} {literal}"


def _stream(transport: str):
    def translate(columns: set[str], op: str, value: str) -> str | None:
        number = _literal(value, number=True)
        if transport == "tcp" and "conn" in columns:
            return f"{_compare('conn', op, number)} and transport == 'tcp'" if "transport" in columns \
                else _compare("conn", op, number)
        if "stream" in columns and "transport" in columns and "layer" not in columns:
            return f"{_on(transport)} and {_compare('stream', op, number)}"
        return None
    return translate


def _on(transport: str) -> str:
    """The rows of a transport; a QUIC connection is a UDP flow to Wireshark."""
    return "transport in ['udp', 'quic']" if transport == "udp" else f"transport == {transport!r}"


def _address(which: str):
    """ip.addr (either end), ip.src, ip.dst, on packet columns or on ip:port endpoints."""
    def translate(columns: set[str], op: str, value: str) -> str | None:
        addr = _literal(value)
        pairs = {"addr": [("src_addr", "dst_addr"), ("src", "dst"), ("a", "b"), ("client", "server")],
                 "src": [("src_addr",), ("src",), ("a",), ("client",)],
                 "dst": [("dst_addr",), ("dst",), ("b",), ("server",)]}[which]
        for names in pairs:
            if all(n in columns for n in names):
                if names[0] in ("src", "dst", "src_addr", "dst_addr"):
                    parts = [_compare(n, op, addr) for n in names]
                else:
                    parts = [_host(n, op, addr) for n in names]
                if op in ("!=",):
                    return " and ".join(parts)
                return " or ".join(parts)
        return None
    return translate


def _host(column: str, op: str, literal: str) -> str:
    """An ``ip:port`` (or ``[v6]:port``, or bare address) column compared by its address."""
    host = f"{column}.astype('string').str.replace(r'^\\[?(.*?)\\]?:\\d+$', r'\\1', regex=True)"
    return _compare(host, op, literal)


def _port(transport: str, which: str = "either"):
    def translate(columns: set[str], op: str, value: str) -> str | None:
        port = _literal(value, number=True)
        on = _on(transport) if "transport" in columns else None
        if {"sport", "dport"} <= columns:
            names = {"either": ("sport", "dport"), "src": ("sport",), "dst": ("dport",)}[which]
        elif {"client", "server"} <= columns:
            names = {"either": ("client", "server"), "src": ("client",), "dst": ("server",)}[which]
            parts = [_compare(f"{n}.astype('string').str.extract(r':(\\d+)$')[0].astype('Int64')", op, port)
                     for n in names]
            joined = (" and " if op == "!=" else " or ").join(parts)
            return f"({joined})" + (f" and {on}" if on else "")
        else:
            return None
        joined = (" and " if op == "!=" else " or ").join(_compare(n, op, port) for n in names)
        return f"({joined})" + (f" and {on}" if on else "")
    return translate


FIELDS: dict[str, Field] = {f.name: f for f in [
    Field("tcp.stream", _stream("tcp"), "Wireshark's TCP stream number: conn"),
    Field("udp.stream", _stream("udp"), "Wireshark's UDP stream number"),
    Field("ip.addr", _address("addr"), "an address on either end"),
    Field("ipv6.addr", _address("addr"), "an address on either end"),
    Field("ip.src", _address("src"), "the sender's address"),
    Field("ipv6.src", _address("src"), "the sender's address"),
    Field("ip.dst", _address("dst"), "the receiver's address"),
    Field("ipv6.dst", _address("dst"), "the receiver's address"),
    Field("tcp.port", _port("tcp"), "a TCP port on either end"),
    Field("udp.port", _port("udp"), "a UDP port on either end"),
    Field("tcp.srcport", _port("tcp", "src"), "the sender's TCP port"),
    Field("tcp.dstport", _port("tcp", "dst"), "the receiver's TCP port"),
    Field("udp.srcport", _port("udp", "src"), "the sender's UDP port"),
    Field("udp.dstport", _port("udp", "dst"), "the receiver's UDP port"),
    Field("frame.number", _number("frame"), "the frame number"),
    Field("frame.len", _number("wire_len"), "the frame's length"),
    Field("tcp.len", _number("len"), "TCP payload bytes"),
    Field("tcp.analysis.bytes_in_flight", _number("bytes_in_flight"), "bytes in flight"),
    Field("tcp.analysis.ack_rtt", _number("ack_rtt"), "the ACK's round trip"),
    Field("tcp.analysis.initial_rtt", _number("handshake_rtt"), "the handshake's round trip"),
    Field("http.request.method", _text("method"), "the HTTP method"),
    Field("http.response.code", _number("status"), "the HTTP status"),
    Field("http.host", _text("host"), "the HTTP host"),
    Field("http.request.uri", _text("url"), "the request URL"),
    Field("tls.handshake.extensions_server_name", _text("sni"), "the TLS server name"),
    Field("tls.handshake.extensions_alpn_str", _text("alpn"), "the negotiated ALPN"),
    Field("http2.streamid", _number("stream"), "the HTTP/2 stream id"),
]}

# Analysis flags named alone select the events of those kinds (Wireshark sets
# tcp.analysis.retransmission on fast and spurious retransmissions too).
_KINDS = ("retransmission", "fast-retransmission", "spurious-retransmission", "out-of-order", "duplicate-ack",
          "zero-window", "window-full", "window-update", "keep-alive", "keep-alive-ack", "lost-segment",
          "ack-lost-segment", "zero-window-probe", "zero-window-probe-ack")
_ANALYSIS = {f"tcp.analysis.{k.replace('-', '_')}": [k] for k in _KINDS}
_ANALYSIS["tcp.analysis.retransmission"] = list(_KINDS[:3])
_ANALYSIS["tcp.analysis.flags"] = list(_KINDS)


# --- the rest of the syntax -------------------------------------------------------------

def _logic(text: str) -> str:
    """``&& || !`` as ``and or not`` outside strings."""
    out, pos = [], 0
    for m in _STRING.finditer(text):
        out.append(_logic_words(text[pos:m.start()]))
        out.append(m.group())
        pos = m.end()
    out.append(_logic_words(text[pos:]))
    return "".join(out)


def _logic_words(text: str) -> str:
    text = text.replace("&&", " and ").replace("||", " or ")
    return re.sub(r"!(?!=)", " not ", text)


def _inside_string(text: str, at: int) -> bool:
    return any(m.start() < at < m.end() for m in _STRING.finditer(text))


def _explain(exc: Exception, query: str, columns, table: str) -> str:
    name = type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else name
    if name == "UndefinedVariableError":
        return f"{text} in the {table} table; its columns: {', '.join(map(str, columns))}"
    if isinstance(exc, SyntaxError):
        return f"cannot read {query!r}: {text} (pandas query syntax; see traceviz --help)"
    return f"cannot apply {query!r}: {text}"
