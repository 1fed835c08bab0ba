"""``traceviz export``: captures of any size as a partitioned Parquet dataset, in bounded memory.

A capture bigger than memory (or a day of rotated files) is cut by
connection into partitions small enough to analyse, each partition is
analysed by the ordinary pipeline (``loader.load_frames``), and the tables are
written as one Parquet dataset per table (``assemble/dataset.py`` reads it).
Three passes, each a set of independent tasks:

1. ``split`` (one task per file): read the file a chunk at a time
   (``sources/chunks.py``), index the chunk's frames, and append each frame
   to the spool of its partition (``sources/spool.py``), chosen by a hash of
   its connection's 5-tuple (``decode/flowhash.py``): every frame of a
   connection lands in one partition, whichever file it is in.
2. ``analyse`` (one task per partition): read the partition's frames back,
   file after file, as one capture, and decode it; frame numbers become the
   whole set's at once (``renumber.global_frames``); the tables wait on disk.
3. ``write`` (one task per partition), after ``number`` has put every
   partition's connections and requests in one order (``renumber.numbering``:
   ``conn`` is Wireshark's ``tcp.stream`` over the whole input) and given
   every column one type (``assemble/parquet.py``): map the numbers, write
   ``TABLE/part=K/data.parquet``.

``finish`` writes ``manifest.json`` last: a folder with it is a whole dataset.
Memory is bounded by one chunk (pass 1) or one partition's analysis (passes
2 and 3); the disk holds the spool (about the size of the input) until the
end.  The partitions' count defaults to one per ``PARTITION_BYTES`` of input.

Engines: ``local`` runs the tasks one after the other in this process;
``dask`` submits the same tasks to a Dask cluster (a ``LocalCluster`` by
default, or ``scheduler``: an address or a ``distributed.Client``).  The
tasks are the same functions with the same arguments, so the datasets are
the same.  On a cluster of several machines the input files, the output
folder and the work folder must be on storage every worker reads and writes
at the same path (NFS, a shared volume).

What a partition cannot see: facts that tie one connection to another
(proxy legs and 5xx causes, an idle sibling, a keep-alive race's retry) are
found within a partition, so connections hashed to different partitions are
not tied.  With one partition (``partitions=1``) they are all found; the
manifest's warnings say so when there were more.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from traceviz.assemble import parquet, renumber
from traceviz.assemble.dataset import MANIFEST, SCHEMA_VERSION, TABLES, is_dataset
from traceviz.errors import InputError
from traceviz.model import SCHEMAS
from traceviz.sources.chunks import CHUNK

PARTITION_BYTES = 256 * 1024 ** 2     # input bytes per partition, by default
WORK = ".traceviz-work"               # spool and staged tables, inside the output folder by default
ENGINES = ("local", "dask")
# Packet columns that point into the bytes read (offsets in a buffer): meaningless once written.
BUFFER_COLUMNS = ("payload_off",)

Progress = Callable[[str, int, int], None]      # (stage, done, total): split / analyse / write


@dataclass(frozen=True)
class Job:
    """What every task needs to know.  Fields: files (in the set's order: first timestamps),
    label (the set's name in messages), out, work (spool and staging folder), partitions,
    keylog, rsa_key (paths or None), chunk (bytes read at a time)."""

    files: tuple
    label: str
    out: str
    work: str
    partitions: int
    keylog: str | None = None
    rsa_key: str | None = None
    chunk: int = CHUNK


# -- the plan -------------------------------------------------------------------------------

def prepare(paths, out, partitions: int | None = None, keylog=None, rsa_key=None, chunk: int = CHUNK,
            work=None, overwrite: bool = False) -> tuple[Job, list[str]]:
    """The job for ``paths`` (files and folders of captures) and the warnings so far
    (files that cannot be read at all).  Raises ``InputError`` for bad arguments."""
    from traceviz.sources.files import expand, label, order

    paths = expand([_resolve(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)])
    if not paths:
        raise InputError(str(out), "no capture files to export")
    warnings: list[str] = []
    members = order(paths, warnings)
    name = label(paths)
    if not members:
        raise InputError(name, "none of the files can be read" + (f" ({warnings[0]})" if warnings else ""))
    for extra in (keylog, rsa_key):
        if extra is not None and not Path(extra).is_file():
            raise InputError(str(extra), "no such file")
    if keylog is None and rsa_key is None and len(members) == 1:
        from traceviz.loader import bundled_keylog     # a bundled capture's own, as traceviz.load uses it
        keylog = bundled_keylog(members[0].path)
    if partitions is not None and partitions < 1:
        raise InputError(str(out), f"--partitions must be at least 1 (got {partitions})")
    total = sum(m.size for m in members)
    count = partitions or max(1, math.ceil(total / PARTITION_BYTES))
    _make_room(Path(out), overwrite)
    job = Job(files=tuple(m.path for m in members), label=name, out=str(out),
              work=str(work if work is not None else Path(out) / WORK), partitions=count,
              keylog=None if keylog is None else str(keylog), rsa_key=None if rsa_key is None else str(rsa_key),
              chunk=int(chunk))
    return job, warnings


def _resolve(path) -> str:
    p = os.fspath(path)
    if os.path.exists(p):
        return p
    try:
        from traceviz.captures import find
        found = find(p)
    except (ImportError, LookupError, OSError, InputError):
        found = None
    return str(found) if found is not None else p


def _make_room(out: Path, overwrite: bool) -> None:
    """An empty output folder; an earlier dataset there is replaced only when asked."""
    if out.exists() and not out.is_dir():
        raise InputError(str(out), "exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not is_dataset(out):
            raise InputError(str(out), "is a folder with other files in it: export into a new or empty folder")
        if not overwrite:
            raise InputError(str(out), "holds a dataset already: --overwrite replaces it")
        (out / MANIFEST).unlink()
        for name in TABLES + (WORK,):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


# -- pass 1: split -------------------------------------------------------------------------------

def split(job: Job, i: int) -> dict:
    """Read file ``i`` a chunk at a time; spool each frame to its partition."""
    from traceviz.decode.flowhash import partitions
    from traceviz.decode.index import index_frames
    from traceviz.sources.chunks import chunks
    from traceviz.sources.spool import SpoolWriter

    path = job.files[i]
    out = {"file": i, "path": path, "frames": 0, "first": None, "last": None, "format": "", "size": 0,
           "warnings": [], "secrets": [], "linktypes": [], "error": None}
    writer = SpoolWriter(Path(job.work) / "spool", i)
    try:
        out["size"] = os.path.getsize(path)
        for chunk in chunks(path, job.chunk, reuse=True):       # each chunk is done with before the next
            cap = chunk.capture
            out["format"] = cap.format
            out["warnings"] += cap.warnings
            out["secrets"] += [s for s in cap.secrets if s not in out["secrets"]]
            out["linktypes"] = sorted(set(out["linktypes"]) | {int(x) for x in np.unique(cap.linktype)})
            if not len(cap):
                continue
            writer.add(cap, partitions(index_frames(cap), job.partitions), chunk.first_frame)
            out["frames"] += len(cap)
            stamped = cap.ts[np.isfinite(cap.ts)]
            if len(stamped):
                if out["first"] is None:
                    out["first"] = float(stamped[0])
                out["last"] = max(float(stamped.max()), out["last"] if out["last"] is not None else -np.inf)
    except (InputError, OSError) as exc:     # nothing of it could be read: the others still are
        out["error"] = str(exc)
        out["warnings"].append(f"{exc} (file skipped, the others analysed)")
    finally:
        writer.close()
    out["parts"], out["bytes"] = dict(writer.frames), dict(writer.bytes)
    return out


# -- pass 2: analyse -------------------------------------------------------------------------------

def analyse(job: Job, k: int, splits: list[dict]) -> dict:
    """Decode partition ``k`` as one capture; stage its tables with the whole set's frame numbers."""
    from traceviz.loader import load_frames
    from traceviz.sources.spool import read_partition

    splits = sorted(splits, key=lambda s: s["file"])
    offsets = np.cumsum([0] + [s["frames"] for s in splits])[:-1].astype(np.int64)
    secrets: list = []
    for s in splits:
        secrets += [x for x in s["secrets"] if x not in secrets]
    fmt = "+".join(sorted({s["format"] for s in splits if s["format"]})) or "pcap"
    cap = read_partition(Path(job.work) / "spool", k, list(job.files), job.label, secrets, fmt)
    if not len(cap):
        return {"part": k, "frames": 0}
    numbers = offsets[cap.files.code] + cap.files.frame
    tl = load_frames(cap, job.keylog, job.rsa_key)
    del cap
    tables = {name: getattr(tl, name) for name in TABLES}
    tables["packets"] = tables["packets"].drop(columns=[c for c in BUFFER_COLUMNS if c in tables["packets"]])
    tables = renumber.global_frames(tables, numbers)
    frames = renumber.frame_lookup(numbers)
    stage = _stage(job, k)
    stage.parent.mkdir(parents=True, exist_ok=True)
    with open(stage, "wb") as f:
        pickle.dump(tables, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {"part": k, "frames": int(len(numbers)), "keys": renumber.keys(tables),
            "kinds": {name: parquet.kinds(df) for name, df in tables.items()},
            "rows": {name: int(len(df)) for name, df in tables.items()},
            "warnings": [renumber.text(w, frames=frames) for w in tl.warnings],
            "decryption": tl.decryption, "link_types": dict(tl.source.link_types)}


def _stage(job: Job, k: int) -> Path:
    return Path(job.work) / "stage" / f"p{k:05d}.pickle"


# -- between the passes: one numbering, one schema -------------------------------------------------

def number(analysed: list[dict]) -> dict:
    """The whole set's connection and request numbers per partition, and each table's columns."""
    done = [a for a in analysed if a["frames"]]
    return {"maps": renumber.numbering({a["part"]: a["keys"] for a in done}),
            "columns": {name: parquet.unify_tables([a["kinds"][name] for a in done], list(SCHEMAS[name]))
                        for name in TABLES}}


# -- pass 3: write -----------------------------------------------------------------------------------

def write(job: Job, k: int, numbered: dict) -> dict:
    """Partition ``k``'s tables, numbered as the whole set, as Parquet files."""
    import pyarrow.parquet as pq

    stage = _stage(job, k)
    if not stage.exists():
        return {"part": k, "rows": {}}
    with open(stage, "rb") as f:
        tables = pickle.load(f)
    tables = renumber.apply(tables, numbered["maps"][k])
    rows = {}
    for name, df in tables.items():
        rows[name] = int(len(df))
        if not len(df):
            continue
        folder = Path(job.out) / name / f"part={k}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(parquet.to_arrow(df, numbered["columns"][name]), folder / "data.parquet",
                       compression="zstd")
    stage.unlink()
    return {"part": k, "rows": rows}


# -- the manifest --------------------------------------------------------------------------------------

def finish(job: Job, warnings: list[str], splits: list[dict], analysed: list[dict], numbered: dict,
           written: list[dict], engine: str, seconds: float) -> dict:
    """Write ``manifest.json`` (last: it marks the dataset whole) and remove the work folder."""
    maps = numbered["maps"]
    notes = list(warnings)
    for s in sorted(splits, key=lambda s: s["file"]):
        notes += s["warnings"]
    for a in sorted(analysed, key=lambda a: a["part"]):
        if a["frames"]:
            conns = renumber.lookup_of(maps[a["part"]]["conn"])
            notes += [renumber.text(w, conns=conns) for w in a["warnings"]]
    rows = {name: sum(w["rows"].get(name, 0) for w in written) for name in TABLES}
    used = [a for a in analysed if a["frames"]]
    if len(used) > 1 and rows["requests"]:
        notes.append(f"{job.label}: facts that tie one connection to another (proxy legs and 5xx causes, idle "
                     f"siblings, a keep-alive race's retry) were found within each of the {len(used)} "
                     f"partitions only: export with --partitions 1 to find them across all connections")
    frames = sum(s["frames"] for s in splits)
    if not frames:
        raise InputError(job.label, "none of the files holds a frame to analyse"
                         + (f" ({notes[0]})" if notes else ""))
    manifest = {
        "traceviz_dataset": SCHEMA_VERSION,
        "traceviz_version": getattr(sys.modules.get("traceviz"), "__version__", None),   # the package, loaded first
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": job.label,
        "engine": engine,
        "seconds": round(seconds, 3),
        "frames": frames,
        "size": sum(s["size"] for s in splits),
        "files": [{"file": s["path"], "frames": s["frames"], "first": s["first"], "last": s["last"],
                   "size": s["size"], "format": s["format"], "error": s["error"]}
                  for s in sorted(splits, key=lambda s: s["file"])],
        "partitions": job.partitions,
        "keylog": job.keylog is not None,
        "link_types": _sum_dicts(a.get("link_types", {}) for a in used),
        "decryption": _decryption([a.get("decryption") for a in used]),
        "tables": {name: {"rows": rows[name], "columns": numbered["columns"][name]} for name in TABLES},
        "partition_rows": {str(w["part"]): w["rows"] for w in sorted(written, key=lambda w: w["part"]) if w["rows"]},
        "warnings": notes,
    }
    from traceviz.sources.files import Member, overlaps
    order = [Member(s["path"], first=s["first"], last=s["last"]) for s in sorted(splits, key=lambda s: s["file"])
             if s["frames"]]
    manifest["warnings"] += overlaps(order)
    tmp = Path(job.out) / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
    tmp.replace(Path(job.out) / MANIFEST)
    shutil.rmtree(job.work, ignore_errors=True)
    return manifest


def _sum_dicts(dicts) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _decryption(reports: list) -> dict | None:
    """The partitions' decryption counts as one report (the same words as one capture's)."""
    reports = [r for r in reports if r]
    if not reports:
        return None
    out = dict(reports[0])
    for key in ("tls_sessions", "sessions_with_keys", "sessions_decrypted"):
        out[key] = sum(int(r.get(key, 0)) for r in reports)
    if out.get("keylog_entries") or out.get("rsa_key") or out.get("dsb_blocks"):
        n = out["tls_sessions"]
        out["text"] = f"keys present for {out['sessions_with_keys']} of {n} session{'s' if n != 1 else ''}"
    else:
        n = out["tls_sessions"]
        out["text"] = "no TLS secrets" + (f" ({n} TLS session{'s' if n != 1 else ''})" if n else "")
    return out


# -- engines -----------------------------------------------------------------------------------------

def export(paths, out, partitions: int | None = None, engine: str = "local", scheduler=None, keylog=None,
           rsa_key=None, progress: Progress | None = None, chunk: int = CHUNK, work=None,
           overwrite: bool = False) -> dict:
    """Export ``paths`` (capture files and folders of them, read as one capture) to the dataset
    folder ``out``; returns the manifest.  ``engine``: ``local`` or ``dask`` (``scheduler``:
    a Dask scheduler's address or a ``distributed.Client``; a LocalCluster without one)."""
    if engine not in ENGINES:
        raise InputError(str(out), f"unknown engine {engine!r}: choose {' or '.join(ENGINES)}")
    if scheduler is not None and engine != "dask":
        raise InputError(str(out), "a scheduler is for --engine dask")
    job, warnings = prepare(paths, out, partitions, keylog, rsa_key, chunk, work, overwrite)
    started = time.perf_counter()
    try:
        if engine == "dask":
            from traceviz.assemble import dask_engine
            parts = dask_engine.run(job, sys.modules[__name__], scheduler, progress or _quiet)
        else:
            parts = run_local(job, progress or _quiet)
        return finish(job, warnings, *parts, engine, time.perf_counter() - started)
    finally:
        shutil.rmtree(job.work, ignore_errors=True)


def _quiet(stage: str, done: int, total: int) -> None:
    pass


def run_local(job: Job, progress: Progress) -> tuple:
    """The tasks one after the other, in this process."""
    n, k = len(job.files), job.partitions
    splits = []
    for i in range(n):
        progress("split", i, n)
        splits.append(split(job, i))
    progress("split", n, n)
    analysed = []
    for p in range(k):
        progress("analyse", p, k)
        analysed.append(analyse(job, p, splits))
    progress("analyse", k, k)
    numbered = number(analysed)
    written = []
    for p in range(k):
        progress("write", p, k)
        written.append(write(job, p, numbered))
    progress("write", k, k)
    return splits, analysed, numbered, written
