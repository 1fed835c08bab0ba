"""qlog files (QUIC and HTTP/3 endpoint logs) in, traces of events out.

Every dialect seen in the wild, read into one shape:

- JSON with ``traces`` (draft-01/02 with ``event_fields`` and array events,
  0.3 and later with object events named ``category:event``);
- the early 0.1 form: one trace's ``events`` at the top level;
- JSON-SEQ (``.sqlog``, RFC 7464: each record starts with 0x1E), whose first
  record names the trace and each later record is one event; newline-delimited
  records (NDJSON) are read the same way;
- a folder of such files, as aioquic writes them (``client/`` and ``server/``
  beside each other), read as one input.

Times become seconds: epoch seconds when the trace says when its clock
started (``reference_time``, or absolute times), else seconds of the trace's
own clock (``QlogTrace.clock`` says which).  Which traces are the same
connection, and which vantage point the tables use, is the assembler's
business (``assemble/qlog.py``); this module only reads.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from traceviz.errors import InputError, describe
from traceviz.sources import jsonfile
from traceviz.sources.jsonfile import signed

RS = "\x1e"                              # RFC 7464 record separator
SUFFIXES = (".qlog", ".sqlog", ".json")   # what a folder's files may be called (each maybe .gz)
MAX_FILES = 10_000                       # a folder holding more is refused beyond this many files
_ABSOLUTE_MS = 1e11                      # a time in ms this large is an epoch time (after 1973)
_LATEST = 7.3e9                          # 2201: a later "epoch time" is junk, not a time


@dataclass(frozen=True, slots=True)
class QlogEvent:
    """One event of a trace.

    Fields:
      time: seconds; epoch seconds when the trace's ``clock`` is ``wall``
      category: the event's category, lower case (transport, connectivity,
        security, recovery, http, h3, qpack...), or "" when it names none
      name: the event's name without its category (packet_sent, frame_parsed...)
      data: the event's data object as written ({} when absent or not an object)
      group: the event's own ``group_id`` when it has one (a trace may mix connections), else None
    """

    time: float
    category: str
    name: str
    data: dict
    group: str | None = None


@dataclass(frozen=True, slots=True)
class QlogTrace:
    """One trace: one endpoint's (or one observer's) log of one or more connections.

    Fields:
      file: the file it came from
      title: its title, or None
      vantage: ``client``, ``server``, ``network`` or ``unknown`` (``vantage_point.type``)
      flow: for a network vantage point, whose point of view ``sent`` takes (client/server), else None
      software: ``vantage_point.name`` (the implementation), or None
      group: the trace's connection id (``common_fields`` ``ODCID`` or ``group_id``), or None
      clock: ``wall`` (event times are epoch seconds) or ``relative`` (seconds of the trace's own clock)
      events: the events, in file order
    """

    file: str
    title: str | None
    vantage: str
    flow: str | None
    software: str | None
    group: str | None
    clock: str
    events: tuple[QlogEvent, ...]


@dataclass(frozen=True)
class QlogFile:
    """A qlog file or folder, read.

    Fields:
      path: the file or folder
      version: ``qlog_version`` as written (the first file's in a folder), or None
      format: ``JSON``, ``JSON-SEQ`` or ``NDJSON`` (the first file's)
      traces: every trace of every file, in file order
      files: how many files were read
      size: bytes read (after gunzip)
      compressed: whether any file was gzipped
      warnings: one line each about what could not be read
    """

    path: str
    version: str | None
    format: str
    traces: tuple[QlogTrace, ...]
    files: int
    size: int
    compressed: bool = False
    warnings: tuple[str, ...] = ()


# ------------------------------------------------------------------ entry points

def read_qlog(path: str | os.PathLike) -> QlogFile:
    """A qlog file (JSON or JSON-SEQ, maybe gzipped) or a folder of them.

    Raises ``InputError`` naming the path when nothing in it is a qlog trace.
    """
    path = str(path)
    if os.path.isdir(path):
        return _read_folder(path)
    reader = _Reader(path)
    return reader.finish([path])


def looks_like_qlog(head: bytes) -> bool:
    """Whether a file's first (decompressed) bytes are a qlog's: JSON-SEQ's record separator
    followed by a qlog header, or JSON naming ``qlog_version``/``qlog_format``/``file_schema``."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text[:1] == b"\x1e":
        text = text[1:]
    return text[:1] == b"{" and any(k in text for k in (b'"qlog_version"', b'"qlog_format"',
                                                         b'"file_schema"', b'"vantage_point"'))


class _Reader:
    """Reads files one by one into traces, keeping the warnings and the totals."""

    def __init__(self, label: str):
        self.label = label
        self.traces: list[QlogTrace] = []
        self.warnings: list[str] = []
        self.version: str | None = None
        self.format: str | None = None
        self.size = 0
        self.compressed = False
        self.files = 0

    def read(self, path: str, limit: int | None = None) -> None:
        data, gz = jsonfile.read_bytes(path, limit)
        if not data.strip():
            raise InputError(path, "empty file")
        text = jsonfile.decode_text(path, data)
        del data
        self.size += len(text)
        self.compressed |= gz
        stripped = text.lstrip(" \t\r\n")           # not str.lstrip(): it takes 0x1E for white space
        if stripped.startswith(RS):
            traces, version = self._records(path, text.split(RS), "JSON-SEQ")
        else:
            try:
                doc = jsonfile.loads(path, text)
            except InputError as broken:
                if "\n{" not in stripped:
                    raise
                # newline-delimited records: the first names the trace, each line after is one event
                try:
                    traces, version = self._records(path, text.split("\n"), "NDJSON")
                except InputError:
                    raise broken from None
            else:
                traces, version = self._document(path, doc)
        self.files += 1
        self.traces.extend(traces)
        if self.version is None:
            self.version = version

    def _document(self, path: str, doc: Any) -> tuple[list[QlogTrace], str | None]:
        if not isinstance(doc, dict):
            raise InputError(path, f"not a qlog file: {jsonfile.what_it_is(doc)}")
        version = _version(doc)
        if isinstance(doc.get("traces"), list):
            raws = doc["traces"]
            self.format = self.format or _format(doc, "JSON")
        elif isinstance(doc.get("events"), list):      # 0.1: the trace's fields at the top level
            raws = [doc]
            self.format = self.format or "JSON"
        elif isinstance(doc.get("trace"), dict):        # a JSON-SEQ header saved on its own
            raws = [{**doc["trace"], "events": []}]
            self.format = self.format or "JSON"
        else:
            raise InputError(path, "not a qlog file: no traces and no events"
                             if version or "qlog_format" in doc else
                             f"not a qlog file: {jsonfile.what_it_is(doc)}")
        traces = []
        for i, raw in enumerate(raws):
            if not isinstance(raw, dict):
                self.warnings.append(describe(path, f"trace {i + 1} is not an object; skipped"))
                continue
            if "error_description" in raw and not isinstance(raw.get("events"), list):
                self.warnings.append(describe(path, f"trace {i + 1} is an error: "
                                                    f"{str(raw.get('error_description'))[:200]}"))
                continue
            events = raw.get("events")
            traces.append(self._trace(path, raw, events if isinstance(events, list) else [], i + 1))
        if not traces:
            raise InputError(path, "a qlog file without a readable trace")
        return traces, version

    def _records(self, path: str, chunks: list[str], fmt: str) -> tuple[list[QlogTrace], str | None]:
        """JSON-SEQ (or NDJSON): a header record, then one record per event."""
        header: dict | None = None
        events: list = []
        bad = cut = 0
        whole = _all_at_once(chunks)
        if whole is not None:
            chunks = []                                 # every record was whole JSON: no need to go one by one
            if whole and isinstance(whole[0], dict):
                header, events = whole[0], whole[1:]
        for n, chunk in enumerate(chunks):
            if not chunk.strip():
                continue
            try:
                value = jsonfile.loads(path, chunk)
            except InputError:
                # RFC 7464 §2.1: a record that does not end in a newline was cut short (the writer
                # died); it is dropped and the rest kept.
                if n == len(chunks) - 1 and not chunk.endswith("\n"):
                    cut += 1
                else:
                    bad += 1
                continue
            if header is None and isinstance(value, dict) and (
                    "qlog_version" in value or "qlog_format" in value or "trace" in value
                    or "file_schema" in value):
                header = value
            else:
                events.append(value)
        if header is None:
            raise InputError(path, f"not a qlog {fmt} file: no header record naming the qlog version")
        if bad:
            self.warnings.append(describe(path, f"{bad} records are not JSON; skipped"))
        if cut:
            self.warnings.append(describe(path, "the last record was cut short (the writer stopped mid-record); dropped"))
        self.format = self.format or _format(header, fmt)
        trace = header.get("trace") if isinstance(header.get("trace"), dict) else {}
        return [self._trace(path, trace, events, 1)], _version(header)

    def _trace(self, path: str, raw: dict, events: list, number: int) -> QlogTrace:
        vp = raw.get("vantage_point") if isinstance(raw.get("vantage_point"), dict) else {}
        common = raw.get("common_fields") if isinstance(raw.get("common_fields"), dict) else {}
        config = raw.get("configuration") if isinstance(raw.get("configuration"), dict) else {}
        vantage = str(vp.get("type", "")).lower()
        if vantage not in ("client", "server", "network"):
            vantage = "unknown"
        flow = str(vp.get("flow", "")).lower() or None
        clock = _Clock(common, config, raw)
        fields = raw.get("event_fields") if isinstance(raw.get("event_fields"), list) else None
        out, skipped = _events(events, fields, common, clock)
        if skipped:
            self.warnings.append(describe(path, f"trace {number}: {skipped} events have no readable time "
                                                "or name; skipped"))
        group = common.get("ODCID") or common.get("group_id") or raw.get("group_id")
        return QlogTrace(
            file=path, title=jsonfile.text(raw.get("title")), vantage=vantage,
            flow=flow if flow in ("client", "server") else None,
            software=jsonfile.text(vp.get("name")), group=str(group) if isinstance(group, (str, int)) else None,
            clock=clock.kind, events=tuple(out))

    def finish(self, paths: list[str]) -> QlogFile:
        for p in paths:
            self.read(p)
        return self._result()

    def _result(self) -> QlogFile:
        return QlogFile(path=self.label, version=self.version, format=self.format or "JSON",
                        traces=tuple(self.traces), files=self.files, size=self.size,
                        compressed=self.compressed, warnings=tuple(self.warnings))


def _all_at_once(chunks: list[str]) -> list | None:
    """Every record parsed in one call of the C parser, as a JSON array; None when one of them
    is not whole JSON (then they are read one by one, to keep the good ones)."""
    records = [c for c in chunks if c.strip()]
    try:
        values = json.loads("[" + ",".join(records) + "]")
    except (ValueError, RecursionError):
        return None
    return values if len(values) == len(records) else None      # a record of two values is not one


def _version(doc: dict) -> str | None:
    v = doc.get("qlog_version")
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return str(v)
    schema = doc.get("file_schema")
    return schema if isinstance(schema, str) else None


def _format(doc: dict, default: str) -> str:
    fmt = doc.get("qlog_format") or doc.get("serialization_format")
    if not isinstance(fmt, str):
        return default
    if "seq" in fmt.lower():
        return "JSON-SEQ"
    return "NDJSON" if "ndjson" in fmt.lower() else "JSON"


# ------------------------------------------------------------------ folders

def _read_folder(path: str) -> QlogFile:
    files = _qlog_files(path)
    if not files:
        raise InputError(path, "is a directory holding no qlog files (.qlog, .sqlog or .json)")
    reader = _Reader(path)
    budget = jsonfile.MAX_JSON_BYTES
    for f in files:
        if budget <= 0:
            reader.warnings.append(describe(path, f"more than {jsonfile.MAX_JSON_BYTES >> 20} MiB of qlog; "
                                                  "the remaining files were not read"))
            break
        before = reader.size
        try:
            reader.read(f, limit=budget)
        except InputError as exc:
            reader.warnings.append(str(exc))
            continue
        budget -= reader.size - before
    if not reader.traces:
        first = reader.warnings[0] if reader.warnings else ""
        raise InputError(path, f"no readable qlog file in this directory ({len(files)} tried; first: {first})")
    return reader._result()


def _qlog_files(folder: str) -> list[str]:
    """The folder's qlog files, sorted, in sub-folders too (symbolic links to folders are not followed)."""
    out = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            lower = name.lower()
            base = lower[:-3] if lower.endswith(".gz") else lower
            if base.endswith(SUFFIXES):
                full = os.path.join(root, name)
                if base.endswith(".json") and not looks_like_qlog(jsonfile.head_bytes(full, 4096)):
                    continue          # some other JSON beside the qlogs
                out.append(full)
                if len(out) >= MAX_FILES:
                    return out
    return out


# ------------------------------------------------------------------ events and their times

class _Clock:
    """How a trace's event times map to seconds.

    qlog has said it several ways: draft-01/02 put ``reference_time`` (ms, though
    some tools wrote seconds) in ``common_fields`` and ``time_units`` (ms or us)
    and ``time_offset`` in ``configuration``; 0.3 adds ``time_format``
    (relative, absolute, delta); later drafts make ``reference_time`` an object
    with an ``epoch``.  Some writers (aioquic) give absolute epoch times in ms
    and no reference at all.
    """

    def __init__(self, common: dict, config: dict, raw: dict):
        units = str(config.get("time_units", common.get("time_units", "ms"))).lower()
        self.scale = 1e-6 if units == "us" else 1e-3
        self.offset = signed(config.get("time_offset"))
        self.offset = 0.0 if math.isnan(self.offset) else self.offset
        fmt = str(common.get("time_format", "relative")).lower()
        self.delta = fmt == "delta"
        self.absolute = fmt == "absolute"
        self.reference = _reference_seconds(common.get("reference_time", raw.get("reference_time")))
        self.kind = "wall" if self.absolute or not math.isnan(self.reference) else "relative"
        self._running = 0.0
        self._decided = self.kind == "wall"

    def seconds(self, t: float) -> float:
        if self.delta:
            self._running += t
            t = self._running
        if not self._decided:
            # no reference: times this large are epoch times, as aioquic writes them
            self._decided = True
            if t >= _ABSOLUTE_MS * (1e-3 / self.scale):
                self.absolute, self.kind = True, "wall"
        if self.absolute:
            return t * self.scale
        base = 0.0 if math.isnan(self.reference) else self.reference
        return base + (t + self.offset) * self.scale


def _reference_seconds(v: Any) -> float:
    if isinstance(v, dict):            # {"clock_type": "system", "epoch": "1970-01-01T00:00:00.000Z"}
        epoch = v.get("epoch")
        if not isinstance(epoch, str) or epoch.lower() == "unknown":
            return math.nan
        try:
            return datetime.fromisoformat(epoch.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError, OSError):
            return math.nan
    t = signed(v)
    if math.isnan(t) or t <= 0:
        return math.nan
    return t if t < _ABSOLUTE_MS else t / 1000.0     # some tools wrote seconds, the drafts say ms


def _events(raws: Iterable[Any], fields: list | None, common: dict, clock: _Clock) -> tuple[list[QlogEvent], int]:
    default_category = str(common.get("category", "")).lower()
    out: list[QlogEvent] = []
    skipped = 0
    names = [str(f) for f in fields] if fields else None
    for raw in raws:
        if names is not None and isinstance(raw, list):
            raw = dict(zip(names, raw))
        if not isinstance(raw, dict):
            skipped += 1
            continue
        t = raw.get("time")
        if t is None:
            t = raw.get("relative_time", raw.get("delta_time"))
        t = signed(t)
        name = raw.get("name")
        if isinstance(name, str) and ":" in name:
            category, _, name = name.partition(":")
        else:
            category = raw.get("category", default_category)
            name = raw.get("event", name)
        if not math.isnan(t):
            t = clock.seconds(t)
        if math.isnan(t) or abs(t) >= _LATEST or not isinstance(name, str) or not name:
            skipped += 1
            continue
        data = raw.get("data")
        group = raw.get("group_id")
        out.append(QlogEvent(time=t, category=str(category).lower(), name=name,
                             data=data if isinstance(data, dict) else {},
                             group=str(group) if isinstance(group, (str, int)) and not isinstance(group, bool) else None))
    return out, skipped

