"""``traceviz.load``: any supported file in, one finished Timeline out.

The pipeline, one way: sources (read the file) → decode (index every
frame, the transport tier, the payload tier's protocol machines) →
assemble (the tables).  Browser exports, qlogs and NetLogs go sources → assemble.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from traceviz import _tuning
from traceviz.errors import InputError, describe
from traceviz.model import SourceInfo, Timeline, empty_table

Progress = Callable[[str], None]
STAGES = ("reading", "indexing", "tcp", "payload")   # what load() reports to ``progress``, in order


# What the payload tier must decode for each table to be whole.
# DNS (UDP datagrams to port 53) gives events, a UDP flow's app and a request's lookup.
_NEEDS = {"packets": set(), "connections": {"tls", "http", "dns"}, "events": {"tls", "http", "dns"},
          "requests": {"http", "dns"}, "tls": {"tls"}, "quic": set(), "streams": {"http"}}
# Tables another is made from: a request's proxy leg and cause are read from the packets and
# the HTTP events; a connection's keep-alive facts from its requests, packets and TCP events;
# an HTTP/2 stream's stalls (rows, and events) from the packets and TCP events.
_BUILT_WITH = {"requests": ("packets", "events", "connections"), "streams": ("packets", "events"),
               "connections": ("requests", "packets", "events"), "events": ("packets",)}
# What of QUIC a table reads (``_quic_work``).  These hold QUIC's rows (the requests too, with
# keys: without them QUIC gives none) ...
_QUIC_TABLES = frozenset({"quic", "connections", "events", "tls"})
# ... of which these, without keys, only rows made of its handshakes (only Initial packets open) ...
_QUIC_HANDSHAKE_TABLES = frozenset({"tls", "connections"})
# ... and these read no more of it than who each flow's client is.
_QUIC_TURNS_TABLES = frozenset({"packets", "requests"})


def load(path: str | os.PathLike, keylog: str | os.PathLike | None = None,
         rsa_key: str | os.PathLike | None = None, progress: Progress | None = None,
         tables: Iterable[str] | None = None, measure_tcp: bool = False,
         transport_only: bool = False, keepalive_facts: bool = True, events: str = "all") -> Timeline:
    """Decode ``path`` (pcap, pcapng, .gz, HAR, DevTools trace/log, qlog file or folder,
    Chrome NetLog) into a Timeline.

    ``keylog`` is an NSS key log (pcapng Decryption Secrets Blocks are used
    without it); ``rsa_key`` a server's PEM private key for TLS 1.2 RSA key
    exchange.  A name of a bundled capture (``traceviz captures``) works as a path.
    Several captures (a list of paths, or a folder of pcap/pcapng files) are read
    as one capture (``sources/files.py``); a folder ``traceviz export`` wrote is
    opened as a ``Dataset`` (``assemble/dataset.py``).
    ``tables``: build only these (default all); the work follows -- ``requests``
    alone decodes no TLS session without keys, ``tls`` alone no cleartext HTTP,
    ``packets`` alone nothing above TCP but QUIC's hellos (who each flow's client is)
    -- and reading a table left out raises
    ``model.TableNotBuilt``.  ``measure_tcp``: also measure each TCP packet's
    bytes in flight, ACK and timestamp RTTs and SACK blocks (the packets
    table's ``bytes_in_flight``, ``ack_rtt``, ``rtt_ambiguous``, ``ts_rtt``,
    ``sack``; NA without it, and ``tl.source.detail["tcp_measured"]`` says
    which): the stream graphs need them, and they cost a fifth of a load.
    ``transport_only``: a capture's index and TCP tiers alone, for a view that reads
    nothing above TCP and UDP (a SYN flood, a transport mix, a stream graph): no TLS,
    HTTP or DNS is decoded, the connections table lacks the columns made of them
    (``model.APP_CONNECTION_COLUMNS``, ``model.KEEPALIVE_CONNECTION_COLUMNS``: left
    out, so reading one raises ``KeyError``), the events table holds TCP's alone, and
    only ``packets``, ``connections`` and ``events`` can be asked for.  Every row and
    column it keeps is the whole load's; ``tables`` defaults to those three.
    ``keepalive_facts`` False: a capture's connections table without its keep-alive
    facts (``model.KEEPALIVE_CONNECTION_COLUMNS``: left out, as above), for a view that
    reads none of them (the handshakes): they are made of the requests, the packets
    and the TCP analysis flags, none of which is then built for them.  Every other
    column is the whole load's.
    ``events``: ``"tcp"`` for an events table of TCP's events alone (handshakes, closes
    and the ``tcp.analysis`` flags), for a view that counts TCP's trouble (iostat):
    nothing above TCP is decoded for it, and each row is the whole load's; ``"all"``
    (the default): every layer's.
    A browser export or a qlog, which has no such tiers, loads as it would without
    any of the last three.
    Raises ``InputError`` when nothing in the file can be analysed.
    """
    asked = Asked(_wanted(tables, transport_only), measure_tcp, transport_only, keepalive_facts,
                  _events_choice(events))
    many = _many(path)
    if many is not None:
        return many(keylog, rsa_key, progress, asked)
    path = _resolve(path)
    keylog, rsa_key = (None if k is None else _companion(k) for k in (keylog, rsa_key))
    from traceviz.sources import kind_of

    kind = kind_of(path)
    if kind == "capture":
        bundled = bundled_keylog(path) if keylog is None and rsa_key is None and not transport_only else None
        with _tuning.loading(os.path.getsize(path)):
            tl = _load_capture(path, keylog or bundled, rsa_key, progress or _quiet, asked)
        if bundled is not None:
            tl.source.detail["bundled_keylog"] = str(bundled)
        return _leave_out(tl, asked)
    if kind == "json":
        with _tuning.loading(os.path.getsize(path)):
            return _load_json(path)
    if kind in ("qlog", "folder"):
        from traceviz.assemble.qlog import load_qlog
        return load_qlog(path)
    raise InputError(path, "not a packet capture (pcap/pcapng), HAR, DevTools trace, qlog or NetLog")


def _many(target):
    """A loader for ``target`` when it is several captures or a dataset, else None."""
    from traceviz.assemble.dataset import is_dataset
    if isinstance(target, (str, os.PathLike)) and is_dataset(target):
        from traceviz.assemble.dataset import open_dataset
        return lambda *_: open_dataset(target)
    from traceviz.sources.files import capture_files, label
    paths = capture_files([_resolve(p) for p in target] if isinstance(target, (list, tuple)) else target)
    if paths is None:
        return None

    def read(keylog, rsa_key, progress, asked: Asked):
        from traceviz.sources.files import read_files
        return _load_frames(read_files(paths, label(paths, target), progress), keylog, rsa_key, progress, asked)
    return read


def load_frames(cap, keylog=None, rsa_key=None, progress: Progress | None = None,
                tables: Iterable[str] | None = None, measure_tcp: bool = False,
                transport_only: bool = False, keepalive_facts: bool = True) -> Timeline:
    """The capture pipeline over frames already read (``sources.capture.Capture``): several
    files read as one, a partition of a bigger capture (``assemble/export.py``)."""
    return _load_frames(cap, keylog, rsa_key, progress,
                        Asked(_wanted(tables, transport_only), measure_tcp, transport_only, keepalive_facts))


def _load_frames(cap, keylog, rsa_key, progress: Progress | None, asked: Asked) -> Timeline:
    keylog, rsa_key = (None if k is None else _companion(k) for k in (keylog, rsa_key))
    with _tuning.loading(int(cap.detail.get("size") or len(cap.buf))):
        return _leave_out(_load_capture(cap, keylog, rsa_key, progress or _quiet, asked), asked)


def _load_json(path: str) -> Timeline:
    """A JSON export: qlog and NetLog by their first bytes, else a browser export (HAR, DevTools)."""
    from traceviz.sources.jsonfile import sniff_json
    hint = sniff_json(path)
    if hint == "qlog":
        from traceviz.assemble.qlog import load_qlog
        return load_qlog(path)
    if hint == "netlog":
        from traceviz.assemble.netlog import load_netlog
        return load_netlog(path)
    from traceviz.assemble.browser import load_browser
    return load_browser(path)


@dataclass(frozen=True)
class Asked:
    """What a load was asked for, besides the file and its keys (``load``'s arguments)."""

    tables: frozenset                  # the tables to show (``_wanted``)
    measure_tcp: bool = False
    transport_only: bool = False
    keepalive_facts: bool = True
    events: str = "all"                # whose events the events table holds (``EVENT_CHOICES``)

    def built(self) -> frozenset:
        """The tables to build: those shown, and those they are made of (``_BUILT_WITH``).
        The transport tier alone makes its tables of nothing but itself, and a connections
        table without keep-alive facts of nothing but the transport tier."""
        if self.transport_only:
            return self.tables
        made_with = _BUILT_WITH if self.keepalive_facts else {**_BUILT_WITH, "connections": ()}
        return self.tables.union(*(made_with.get(name, ()) for name in self.tables))

    def shows_flags(self) -> bool:
        """Whether a table shown shows ``tcp.analysis`` flags: the TCP events, the HTTP/2
        streams (stalls are timed against retransmissions), the connections' keep-alive facts
        (made with the requests).  A requests table is made of no flag: its proxy legs, causes
        and races read the packets and the HTTP events, which a load without flags keeps."""
        return bool(self.tables & {"events", "streams"}) or \
            ("connections" in self.tables and "requests" in self.built() and self.keepalive_facts)

    def decodes(self) -> set:
        """What of the payload the tables shown are made of (``_NEEDS``): TCP's events are
        made of nothing above TCP."""
        return set().union(*(_NEEDS[name] for name in self.tables if not (name == "events" and self.tcp_events)))

    @property
    def tcp_events(self) -> bool:
        """Whether the events table holds TCP's events alone (``load(events="tcp")``, or the
        transport tier alone)."""
        return self.events == "tcp" or self.transport_only


# What the events table can hold (``load``'s ``events``).
EVENT_CHOICES = ("all", "tcp")


def _events_choice(events: str) -> str:
    if events not in EVENT_CHOICES:
        raise ValueError(f"events={events!r}: the choices are {', '.join(map(repr, EVENT_CHOICES))}")
    return events


# What the transport tier alone can build (``load(transport_only=True)``).
TRANSPORT_TABLES = frozenset({"packets", "connections", "events"})


def _wanted(tables: Iterable[str] | None, transport_only: bool = False) -> frozenset:
    if tables is None:
        return TRANSPORT_TABLES if transport_only else frozenset(_NEEDS)
    wanted = frozenset([tables] if isinstance(tables, str) else tables)
    unknown = sorted(wanted - set(_NEEDS))
    if unknown:
        raise ValueError(f"no table named {', '.join(unknown)}: the tables are {', '.join(_NEEDS)}")
    beyond = sorted(wanted - TRANSPORT_TABLES) if transport_only else []
    if beyond:
        raise ValueError(f"transport_only builds no {', '.join(beyond)} table: ask for "
                         f"{', '.join(sorted(TRANSPORT_TABLES))}, or load without transport_only")
    return wanted


def _leave_out(tl: Timeline, asked: Asked) -> Timeline:
    """The Timeline with the tables not asked for marked as such (empty, and unreadable), and
    an events table asked for with TCP's events alone left with those."""
    if asked.events == "tcp" and "events" in asked.tables and len(tl.events):
        tl.events = tl.events[(tl.events["layer"] == "tcp").to_numpy(dtype=bool, na_value=False)] \
            .reset_index(drop=True)
    left_out = frozenset(_NEEDS) - asked.tables
    if not left_out:
        return tl
    for name in left_out:
        setattr(tl, name, empty_table(name))
    tl.skipped = left_out
    return tl


def _quiet(stage: str) -> None:
    pass


def _resolve(path: str | os.PathLike) -> str:
    p = Path(path)
    if p.is_file() or p.is_dir():      # a folder is read as a folder of qlog files
        return str(p)
    try:
        from traceviz.captures import find
        found = find(str(path))
    except (ImportError, LookupError, OSError, InputError):
        found = _bundled_extra(str(path))
    if found is not None and Path(found).exists():
        return str(found)
    raise InputError(str(p), "no such file (nor a bundled capture of that name: see `traceviz captures`)")


def _bundled_extra(name: str) -> str | None:
    """A file shipped beside a bundled capture (its HAR, NetLog, qlog folder), by its name."""
    try:
        from traceviz.captures import list_captures
        rows = list_captures()
    except (ImportError, OSError, ValueError):
        return None
    for r in rows:
        for extra in r["extra_files"].values():
            if extra and Path(extra).name == name:
                return extra
    return None


def _companion(path: str | os.PathLike) -> str:
    """A key file as given, else a bundled capture's companion of that name (tls12-rsa.keys).

    Anything that reads as a file is one (``/dev/null``, a pipe: an empty key log is a key log);
    a folder is not."""
    if Path(path).is_dir():
        raise InputError(str(path), "is a directory, not a file")
    if Path(path).exists():
        return str(path)
    from traceviz.captures import find
    try:
        found = find(str(path))
    except (LookupError, OSError):
        found = None
    if found is None or not Path(found).is_file():
        raise InputError(str(path), "no such file")
    return str(found)


def bundled_keylog(path: str) -> str | None:
    """A bundled capture's own key log (``captures.default_keylog``), so its TLS reads decrypted."""
    from traceviz.captures import default_keylog
    found = default_keylog(path)
    return str(found) if found is not None and found.is_file() else None


def _load_capture(path: str, keylog, rsa_key, progress: Progress, asked: Asked) -> Timeline:
    import numpy as np

    from traceviz.assemble import transport as transport_tables
    from traceviz.assemble.capture import PayloadRows, context, finish, over_limits, transport_tier
    from traceviz.assemble.parallel import start as start_rows
    from traceviz.decode.dns import decode_dns
    from traceviz.decode.index import index_frames
    from traceviz.decode.streams import plan_streams
    from traceviz.decode.tcp.connections import analyze
    from traceviz.sources.mapping import release_pages
    from traceviz.sources.reader import read_capture

    progress("reading")
    cap = read_capture(path) if isinstance(path, str) else path    # a Capture: frames read already (load_frames)
    path = cap.path
    if len(cap) == 0:  # DESIGN.md: nothing to analyse is bad input (exit 2), not an empty report
        raise InputError(path, "the capture holds no packets")
    release_pages(cap.buf)      # the reader walked every page; the index tier reads the heads it copied
    progress("indexing")
    idx = index_frames(cap)
    release_pages(cap.buf)      # what it read of the file (options past the heads, a pcapng's heads)
    progress("tcp")
    wanted, transport_only = asked.tables, asked.transport_only
    measure_tcp = asked.measure_tcp and "packets" in wanted
    built = asked.built()
    transport = analyze(idx, measure=measure_tcp, with_flags=asked.shows_flags())
    info = SourceInfo(path=path, format=cap.format, size=cap.detail.get("size") or os.path.getsize(path),
                      compressed=cap.compressed, link_types=dict(idx.link_counts),
                      frames=len(cap), detail={**cap.detail, **getattr(idx, "stats", {})},
                      warnings=list(cap.warnings) + [describe(path, m, f) for f, m in idx.notes])
    info.detail["tcp_measured"] = measure_tcp
    if not asked.keepalive_facts:
        info.detail["keepalive_facts"] = False
    if len(idx.ts):     # the time origin of every output, also when the packets table is not built
        info.detail["first_ts"] = float(np.min(idx.ts))
    progress("payload")
    secrets = cap.secrets
    log, key = _keys(secrets, keylog, rsa_key, info.warnings)
    debug = bool(os.environ.get("TRACEVIZ_DEBUG"))
    # QUIC's flows are found here; who their clients are, and their machines, are for later
    # (``_quic_side``): a flow they turn around (the capture missed the client's first
    # datagram) is turned in the tables and the DNS messages then (``_turn_around``).
    quic_work = _quic_work(wanted, keyed=log is not None, tcp_events=asked.tcp_events)
    quic_plan = _find_quic(transport, cap.buf, debug, info) if quic_work else None
    release_pages(cap.buf)      # its flows' datagrams (the first bytes of all were read a window at a time)
    capture_end = float(np.max(idx.ts)) if len(idx.ts) else None    # whether a QUIC flow went idle
    connections = transport_tables.connections(transport)
    decode = asked.decodes()
    if log is not None or key is not None:
        decode |= {"tls"} if "http" in decode else set()     # HTTPS requests are inside TLS sessions
    # QUIC in a child of its own, forked before the rest is planned: neither its machines nor
    # the TCP shares read the other's flows, and a flow QUIC turns around only touches UDP rows.
    # On 1M packets of the realistic bench that is ~2.5 s of QUIC off the critical path (half a
    # second of it while this process plans the TCP streams), and the machines' memory never
    # in this process (~170 MB at its peak).
    quic_side = _fork_quic(quic_plan, cap.buf, log, debug, info, connections, capture_end,
                           events="events" in built and not asked.tcp_events, reads=quic_work or "all")
    with quic_side:     # dropped if anything below stops the load
        tables = (transport_tables.packets(transport) if "packets" in built else empty_table("packets"),
                  connections,
                  transport_tables.events(transport) if "events" in built else empty_table("events"))
        if transport_only:      # QUIC was decoded only to tell its flows from other UDP
            info.detail["transport_only"] = True
            if keylog is not None or rsa_key is not None:   # asked for, and nothing here it could decrypt
                info.warnings.append(describe(path, "keys not used: this view reads nothing above TCP and UDP, "
                                                    "so no TLS is decoded"))
            del idx, transport, cap             # as below: their columns are in the tables now
            _tuning.hand_back_freed_memory()
            tables, quic_made, _ = _turn_around(quic_side, info, tables)
            return transport_tier(info, tables, quic_made)
        try:
            skip = frozenset(_NEEDS) - built
            # A table built only for another's sake gets none of the facts only it shows.
            shown = {"keepalive_facts": "connections" in wanted and asked.keepalive_facts,
                     "request_facts": "requests" in wanted}
            dns = decode_dns(transport, cap.buf) if "dns" in decode else None
            plan = plan_streams(transport, cap.buf, tls="tls" in decode, http="http" in decode) \
                if decode & {"tls", "http"} else None
            # The reader's, index's and TCP tiers' per-frame columns and copied heads (~350 MB on
            # 1M packets) are not read again: the tables and the plan have what they need of them.
            # Handed back before the payload rows arrive and finish makes its tables.
            buf = cap.buf
            del idx, transport, cap
            _tuning.hand_back_freed_memory()
            if plan is None:
                tables, quic_made, dns = _turn_around(quic_side, info, tables, dns)
                return finish(info, tables, PayloadRows(), np.zeros(0, dtype=np.int64), log, key, secrets,
                              skip=skip, quic_made=quic_made, dns_messages=dns, **shown)
            release_pages(buf)      # what the windows of its walk left; the children fault in their own
            info.warnings.extend(over_limits(path, plan.skipped))
            # The events table built only for the requests' proxy analysis needs HTTP's rows alone,
            # and none when the requests are built only for the connections' keep-alive facts.
            ctx = context(tables, path, log, events="events" in wanted and not asked.tcp_events,
                          http_events="requests" in wanted)
            pending = start_rows(plan, buf, ctx, log, key, debug=debug, beside=quic_side)
            rows, decoded = pending.collect()
            tables, quic_made, dns = _turn_around(quic_side, info, tables, dns)
            release_pages(buf)      # what a share decoded here (one process) touched
            opaque = plan.opaque(decoded)
            del plan, ctx, pending, quic_plan   # room for the tables finish builds (the plan: ~70 MB)
            return finish(info, tables, rows, opaque, log, key, secrets, skip=skip, quic_made=quic_made,
                          dns_messages=dns, **shown)
        except Exception as exc:  # a decoder bug must not cost the user the TCP-level analysis
            quic_side.drop()
            if debug or isinstance(exc, InputError):
                raise
            info.warnings.append(describe(path, f"payload decoding stopped early ({type(exc).__name__}: {exc}); "
                                                "TCP analysis is complete"))
            return finish(info, tables, PayloadRows(), np.zeros(0, dtype=np.int64), log, key, secrets,
                          keepalive_facts=asked.keepalive_facts)


def _quic_work(wanted: frozenset, keyed: bool, tcp_events: bool = False) -> str | None:
    """What of QUIC the ``wanted`` tables read (``decode.quic.streams.run_quic``'s ``reads``):
    ``all`` of it, only its ``handshake`` (the tls and connections tables without keys), only
    its ``turns`` (which flows the capture caught server first), or nothing (None).
    ``keyed``: there is a key log; ``tcp_events``: the events are TCP's alone."""
    if tcp_events:
        wanted = wanted - {"events"}
    if wanted & _QUIC_TABLES or ("requests" in wanted and keyed):
        return "handshake" if wanted & _QUIC_TABLES <= _QUIC_HANDSHAKE_TABLES and not keyed else "all"
    return "turns" if wanted & _QUIC_TURNS_TABLES else None


def _find_quic(transport, buf, debug: bool, info: SourceInfo):
    """The plan of the UDP flows that speak QUIC (``decode.quic.streams.find_quic``); None
    after a decoder bug (said once)."""
    from traceviz.decode.quic.streams import find_quic
    try:
        return find_quic(transport, buf)
    except Exception as exc:  # a decoder bug must not cost the user the rest of the analysis
        if debug or isinstance(exc, InputError):
            raise
        info.warnings.append(describe(info.path, f"QUIC decoding stopped early ({type(exc).__name__}: {exc})"))
        return None


def _fork_quic(plan, buf, log, debug: bool, info: SourceInfo, connections, capture_end, events: bool,
               reads: str = "all"):
    """``_quic_side`` begun (``_forks.Beside``): in a child of its own when there
    are flows enough to be worth a fork, else run here when its result is asked for."""
    from traceviz._forks import Beside
    flows = len(plan.members) if plan is not None else 0
    return Beside(lambda: _quic_side(plan, buf, log, debug, info, connections, capture_end, events, reads),
                  fork=_tuning.workers(flows, least=_tuning.PARALLEL_MIN_QUIC_FLOWS) > 1)


def _quic_side(plan, buf, log, debug: bool, info: SourceInfo, connections, capture_end, events: bool,
               reads: str = "all"):
    """(the flows QUIC turns around, QUIC's rows, their warnings) as a child makes them: each
    flow's client settled (``settle_clients``), its machine run (``run_quic``) and its rows
    made (``quic_rows_of``, ``events`` False: no events rows); None for a plan, or after a
    decoder bug (said once), gives no rows.  ``reads``: what of each flow its machine reads
    (``run_quic``; ``_quic_work``)."""
    from dataclasses import replace

    from traceviz.assemble.capture import quic_rows_of
    from traceviz.assemble.transport import turn_around
    from traceviz.decode.quic.streams import run_quic, settle_clients
    own = replace(info, warnings=[])
    quic = None
    if plan is not None:
        try:
            settle_clients(plan, buf)
            quic = run_quic(plan, buf, log, debug=debug, reads=reads)
        except Exception as exc:  # a decoder bug must not cost the user the rest of the analysis
            if debug or isinstance(exc, InputError):
                raise
            own.warnings.append(describe(info.path, f"QUIC decoding stopped early ({type(exc).__name__}: {exc})"))
    flipped = quic.flipped if quic is not None else []
    _, connections, _ = turn_around((empty_table("packets"), connections, empty_table("events")), flipped)
    made = quic_rows_of(quic, connections, capture_end, log, own, events=events)
    return flipped, made, own.warnings


def _turn_around(quic_side, info: SourceInfo, tables: tuple, dns=None):
    """(the tables, QUIC's rows, the DNS messages) once QUIC's side is done: the flows it
    turned around turned in the tables and the DNS messages too, its warnings said."""
    from traceviz.assemble.transport import turn_around
    flipped, made, notes = quic_side.result()
    info.warnings.extend(notes)
    if dns is not None and flipped:
        dns = dns.turned(flipped)
    return turn_around(tables, flipped), made, dns


def _keys(blocks, keylog, rsa_key, warnings: list[str]):
    """(KeyLog or None, RSA key or None): the key log file merged with pcapng secrets.

    A key log that cannot be read is bad input; a damaged line is a warning.
    """
    if not blocks and keylog is None and rsa_key is None:
        return None, None       # no key material: the crypto modules are not even imported
    from traceviz.decode.tls.keylog import KeyLog

    log = KeyLog.from_dsb(blocks) if blocks else None
    if keylog is not None:
        mine = read_keylog_file(keylog)
        log = mine if log is None else log.merge(mine)
    key = read_rsa_key_file(rsa_key) if rsa_key is not None else None
    if log is not None:
        warnings.extend(log.warnings[:20])
    return log, key


def read_keylog_file(path: str | os.PathLike):
    """An NSS key log file as a ``decode.tls.keylog.KeyLog`` (InputError if unreadable)."""
    from traceviz.decode.tls.keylog import KeyLog
    from traceviz.sources.keys import read_keylog
    return KeyLog.from_text(read_keylog(path), str(path))


def read_rsa_key_file(path: str | os.PathLike):
    """A server's unencrypted PEM/DER RSA private key (InputError if unreadable or not one)."""
    from traceviz.decode.tls.crypto import rsa_private_key
    from traceviz.sources.keys import read_private_key
    return rsa_private_key(read_private_key(path), str(path))


def follow(path: str | os.PathLike, conn: int, keylog: str | os.PathLike | None = None,
           rsa_key: str | os.PathLike | None = None, stream: int | None = None, decrypt: bool = True):
    """One connection's bytes as ``decode.follow.Followed``: read ``path`` again (a
    Timeline keeps no bytes), reassemble connection ``conn`` (Wireshark's tcp.stream;
    UDP flows follow) and, where keys unlock it, decrypt it; ``stream``: one HTTP/2
    stream of it.  Raises ``InputError`` for a connection the file does not have."""
    import numpy as np

    from traceviz.decode import follow as fl
    from traceviz.decode.index import index_frames
    from traceviz.decode.tcp.connections import analyze
    from traceviz.sources import kind_of
    from traceviz.sources.reader import read_capture

    path = _resolve(path)
    if kind_of(path) != "capture":
        raise InputError(path, "only a packet capture has bytes to follow (this is a browser export)")
    with _tuning.loading(os.path.getsize(path)):
        cap = read_capture(path)
        t = analyze(index_frames(cap), with_flags=False)      # the bytes need no tcp.analysis flags
    c = t.connections
    if conn < 0 or conn >= len(c["conn"]):
        have = f"0-{len(c['conn']) - 1}" if len(c["conn"]) else "none"
        raise InputError(path, f"no connection {conn} (connections here: {have})")
    transport = str(c["transport"][conn])
    out = fl.Followed(conn, transport, str(c["client"][conn]), str(c["server"][conn]), int(c["stream"][conn]), stream)
    rows = np.flatnonzero((t.conn == conn) & (np.asarray(t.idx.payload_len) >= 0) & (np.asarray(t.idx.proto) != 1)
                          & (np.asarray(t.idx.proto) != 58))
    if len(rows):
        out.first = fl.C2S if t.c2s[rows[0]] else fl.S2C
    if transport == "udp":
        datagrams = _datagrams(t, cap.buf, rows)
        if stream is None:
            out.kind, out.chunks = "udp", fl.udp_chunks(datagrams)
            return out
        number = _quic_number(t, cap.buf, conn)
        if number is None:
            raise InputError(path, f"connection {conn} is UDP, not QUIC: it has no streams to follow")
        log, _ = _keys(cap.secrets, keylog, None, out.notes)
        out.kind, out.flow = "quic", number
        out.chunks, notes, turned = fl.quic_stream(datagrams, stream, log)
        if turned:
            out.client, out.server = out.server, out.client
            out.first = fl.S2C if out.first == fl.C2S else fl.C2S
        out.notes += notes
        if not out.chunks and not notes:
            out.notes.append(f"QUIC stream {stream} does not appear on connection {conn}")
        return out
    streams = _byte_streams(t, cap.buf, rows)
    out.chunks = fl.tcp_chunks(streams)
    first = {d: b"".join(ch.data for ch in out.chunks if isinstance(ch, fl.Chunk) and ch.dir == d)[:64]
             for d in (fl.C2S, fl.S2C)}
    from traceviz.decode.sniff import stream_kind
    kind = stream_kind(first[fl.C2S], first[fl.S2C])
    plain = out.chunks
    if kind == "tls" and (decrypt or stream is not None):
        log, key = _keys(cap.secrets, keylog, rsa_key, out.notes)
        if log is None and key is None:
            out.notes.append("TLS without key material: the bytes shown are encrypted (--keylog to decrypt)")
            plain = None
        else:
            chunks, notes = fl.tls_chunks(conn, streams, log, key)
            out.notes += notes
            if any(isinstance(ch, fl.Chunk) for ch in chunks):
                out.kind, out.chunks, plain = "tls", chunks, chunks
            else:
                plain = None
    if stream is not None:
        if plain is None or kind not in ("tls", "h2c"):
            raise InputError(path, f"connection {conn} carries no readable HTTP/2 to follow stream {stream} in"
                                   + (" (it is TLS: --keylog to decrypt)" if kind == "tls" else ""))
        out.kind = "h2"
        out.chunks, notes = fl.http2_stream(plain, stream)
        out.notes += notes
        if not out.chunks:
            out.notes.append(f"HTTP/2 stream {stream} does not appear on connection {conn}")
    return out


def _byte_streams(t, buf, rows):
    """Both directions of one TCP connection, reassembled (``decode.tcp.reassembly``)."""
    import numpy as np

    from traceviz.decode.tcp.reassembly import reassemble_columns

    idx = t.idx
    conn = int(t.conn[rows[0]]) if len(rows) else 0
    r = reassemble_columns(t.conn[rows], t.c2s[rows], np.asarray(idx.tcp_flags)[rows].astype(np.int64),
                           t.rel_seq[rows], np.asarray(idx.payload_len)[rows], np.asarray(idx.frame)[rows],
                           np.asarray(idx.ts)[rows], np.asarray(idx.payload_off)[rows],
                           np.asarray(idx.payload_cap)[rows], buf)
    return r.streams(conn)


def _quic_number(t, buf, conn: int) -> int | None:
    """Wireshark's quic.connection.number of UDP flow ``conn`` (QUIC flows counted in order of
    their first packet), or None when it does not speak QUIC."""
    from traceviz.decode.quic.streams import quic_rows

    rows, hit = quic_rows(t.idx, t.conn, buf)
    order = list(dict.fromkeys(t.conn[rows[hit]].tolist()))
    return order.index(conn) if conn in order else None


def _datagrams(t, buf, rows):
    """``(dir, payload, frame, ts)`` of each datagram of one UDP flow."""
    import numpy as np

    idx = t.idx
    out = []
    for r in rows.tolist():
        off, n = int(idx.payload_off[r]), int(np.asarray(idx.payload_cap)[r])
        out.append(("c2s" if t.c2s[r] else "s2c", bytes(buf[off:off + max(n, 0)]), int(idx.frame[r]),
                    float(idx.ts[r])))
    return out
