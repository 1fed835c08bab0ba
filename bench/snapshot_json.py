"""Every ``--json`` output of the CLI on every bundled capture and corpus file, to a folder.

A refactor or an optimisation must not change what users and scripts read:

    python bench/snapshot_json.py /tmp/before          # on the old code
    python bench/snapshot_json.py /tmp/after           # on the new code
    python bench/snapshot_json.py --compare /tmp/before /tmp/after

``--compare`` prints each file that differs; a difference that only appends
new keys to the objects is reported apart (the JSON contract allows more
fields; it forbids renaming or changing the ones there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["info", "connections", "timeline", "requests", "handshakes", "tls", "waterfall", "latency"]
SUFFIXES = (".pcap", ".pcapng", ".gz", ".har", ".harp", ".json")


def inputs(corpus: Path | None = None) -> list[tuple[str, list[str]]]:
    """(label, [file, options...]) for each file, with its keys where it has them."""
    out = []
    caps = json.loads((ROOT / "captures" / "manifest.json").read_text())["captures"]
    for e in caps:
        path = ROOT / "captures" / e["file"]
        out.append((e["name"], [str(path)]))
        opts = []
        if e.get("keylog"):
            opts += ["--keylog", str(ROOT / "captures" / e["keylog"])]
        if e.get("private_key"):
            opts += ["--rsa-key", str(ROOT / "captures" / e["private_key"])]
        if opts:
            out.append((e["name"] + "+keys", [str(path), *opts]))
        for extra in (e.get("extra_files") or {}).values():
            p = ROOT / "captures" / extra
            if p.is_file() and p.name.endswith(SUFFIXES):
                out.append((p.name, [str(p)]))
    if corpus is None:
        corpus = next((c for c in (ROOT / "tests" / "corpus", ROOT.parent / "shared" / "corpus") if c.is_dir()), None)
    if corpus is not None:
        for p in sorted(corpus.rglob("*")):
            if p.is_file() and p.name.endswith(SUFFIXES) and p.parent != corpus:   # not MANIFEST/SOURCES
                rel = p.relative_to(corpus).as_posix()
                out.append((rel, [str(p)]))
                keys = p.with_suffix(".keys")
                if keys.is_file():
                    out.append((rel + "+keys", [str(p), "--keylog", str(keys)]))
    return out


def run_one(args: tuple[str, str, list[str]], folder: Path) -> None:
    label, cmd, argv = args
    proc = subprocess.run([sys.executable, "-c", "from traceviz.cli import main; main()", cmd, *argv, "--json"],
                          capture_output=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "COLUMNS": "200"})
    name = f"{label.replace('/', '__')}.{cmd}"
    (folder / f"{name}.json").write_bytes(proc.stdout)
    (folder / f"{name}.status").write_text(f"{proc.returncode}\n{proc.stderr.decode(errors='replace')}")


def snapshot(folder: Path, jobs: int, corpus: Path | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    work = [(label, cmd, argv) for label, argv in inputs(corpus) for cmd in COMMANDS]
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda w: run_one(w, folder), work))
    print(f"{len(work)} outputs written to {folder}")


def _only_appended(a: bytes, b: bytes) -> bool:
    try:
        x, y = json.loads(a), json.loads(b)
    except ValueError:
        return False

    def same(u, v) -> bool:
        if isinstance(u, dict) and isinstance(v, dict):
            return list(v)[:len(u)] == list(u) and all(same(u[k], v[k]) for k in u)
        if isinstance(u, list) and isinstance(v, list):
            return len(u) == len(v) and all(same(p, q) for p, q in zip(u, v))
        return u == v
    return same(x, y)


def compare(before: Path, after: Path) -> int:
    names = sorted({p.name for p in before.iterdir()} | {p.name for p in after.iterdir()})
    same = appended = differ = 0
    for name in names:
        a, b = before / name, after / name
        if not a.exists() or not b.exists():
            print(f"only in one: {name}")
            differ += 1
            continue
        x, y = a.read_bytes(), b.read_bytes()
        if name.endswith(".status"):
            # exit status must match; stderr may word warnings differently only if we say so
            if x.split(b"\n", 1)[0] != y.split(b"\n", 1)[0]:
                print(f"exit status differs: {name}")
                differ += 1
            continue
        if x == y:
            same += 1
        elif _only_appended(x, y):
            appended += 1
            print(f"new fields only: {name}")
        else:
            differ += 1
            print(f"DIFFERS: {name}")
    print(f"{same} byte-identical, {appended} with new fields appended only, {differ} different")
    return 1 if differ else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="+")
    ap.add_argument("--compare", action="store_true", help="compare two snapshot folders")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--corpus", type=Path, help="the third-party corpus folder (default: tests/corpus)")
    a = ap.parse_args()
    if a.compare:
        return compare(Path(a.folder[0]), Path(a.folder[1]))
    snapshot(Path(a.folder[0]), a.jobs, a.corpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
