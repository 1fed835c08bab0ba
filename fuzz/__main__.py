"""``python -m fuzz``: run the fuzz targets, replay crashes, summarise campaigns.

  python -m fuzz list                                  the targets and their seeds
  python -m fuzz run TARGET... [--minutes M] [--runs N] [--engine atheris|plain|hypothesis]
  python -m fuzz replay [TARGET...]                    every saved crash and corpus input, once
  python -m fuzz table                                 the campaigns so far, as fuzz/README.md shows them

``run all`` runs every target in turn, each with the whole budget.  Crashes
are saved in ``fuzz/crashes/TARGET/`` (the regression test replays them),
interesting inputs (new coverage, atheris) in ``fuzz/corpus/TARGET/``, and
each campaign's totals are appended to ``fuzz/campaigns.jsonl``.
Use one core: the engines run one input at a time in one process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
CRASHES = HERE / "crashes"
CORPUS = HERE / "corpus"
CAMPAIGNS = HERE / "campaigns.jsonl"
SEEDS = HERE / ".cache" / "seeds"
HANG_SECONDS = 5          # one input taking longer than this is a hang
CORPUS_KEEP, CORPUS_SIZE = 40, 8192   # what ``trim`` keeps of a target's saved corpus
MAX_LEN = 1 << 17


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    r = sub.add_parser("run")
    r.add_argument("targets", nargs="+")
    r.add_argument("--minutes", type=float, default=1.0)
    r.add_argument("--runs", type=int, default=0, help="stop after this many inputs (0: the time budget only)")
    r.add_argument("--engine", choices=("auto", "atheris", "plain", "hypothesis"), default="auto")
    r.add_argument("--seed", type=int, default=None)
    rp = sub.add_parser("replay")
    rp.add_argument("targets", nargs="*")
    tp = sub.add_parser("trim", help="keep a small sample of each saved corpus (what git and the tests replay)")
    tp.add_argument("targets", nargs="*")
    sub.add_parser("table")
    args = ap.parse_args(argv)

    from fuzz.targets import PENDING, TARGETS
    if args.cmd == "list":
        for t in TARGETS.values():
            print(f"{t.name:12} {t.kind:13} {t.what}")
        print("pending:", ", ".join(PENDING))
        return 0
    if args.cmd == "table":
        print(table())
        return 0
    if args.cmd == "trim":
        for name in args.targets or list(TARGETS):
            trim(name)
        return 0
    if args.cmd == "replay":
        bad = replay(args.targets or list(TARGETS))
        return 1 if bad else 0
    names = list(TARGETS) if args.targets == ["all"] else args.targets
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"unknown target {', '.join(unknown)}: choose from {', '.join(TARGETS)} or all", file=sys.stderr)
        return 2
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if _has_atheris() else "plain"
    failed = 0
    for name in names:
        stats = campaign(name, engine, args.minutes * 60, args.runs, args.seed)
        print(json.dumps(stats), flush=True)
        failed += stats["crashes"] + stats["hangs"]
    return 1 if failed else 0


def _has_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def seeds_of(name: str) -> list[bytes]:
    from fuzz.targets import TARGETS
    saved = sorted((CORPUS / name).glob("*")) if (CORPUS / name).is_dir() else []
    return [s[:MAX_LEN] for s in TARGETS[name].seeds()] + [p.read_bytes() for p in saved if p.is_file()]


def campaign(name: str, engine: str, seconds: float, runs: int, seed: int | None) -> dict:
    started = time.time()
    if engine == "atheris":
        stats = _atheris(name, seconds, runs)
    elif engine == "hypothesis":
        stats = _hypothesis(name, seconds, runs, seed)
    else:
        stats = _plain(name, seconds, runs, seed)
    stats.update(target=name, engine=engine, date=time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)))
    stats["rate"] = round(stats["runs"] / stats["seconds"]) if stats["seconds"] else 0
    with CAMPAIGNS.open("a") as f:
        f.write(json.dumps(stats) + "\n")
    return stats


def save_crash(name: str, data: bytes, kind: str, text: str) -> Path:
    folder = CRASHES / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}-{hashlib.sha1(data).hexdigest()[:16]}"
    path.write_bytes(data)
    # Paths relative to the checkout: the traceback is kept in git, where the machine's paths mean nothing.
    path.with_suffix(".txt").write_text(text[-4000:].replace(str(HERE.parent) + os.sep, ""))
    return path


def _signature(exc: BaseException) -> str:
    """Where a crash happened: its type and the innermost frame of our code."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "traceviz" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__}@{where}"


# --- the plain engine ------------------------------------------------------------------------

def _plain(name: str, seconds: float, most: int, seed: int | None) -> dict:
    from fuzz.mutate import mutator
    from fuzz.targets import TARGETS
    t = TARGETS[name]
    rnd = random.Random(seed)
    pool = seeds_of(name) or [b""]
    mutate = mutator(t.kind)
    signal.signal(signal.SIGALRM, _alarm)
    seen, crashes, hangs = set(), 0, 0
    runs, slowest = 0, 0.0
    start = time.monotonic()
    deadline = start + seconds
    check = 0
    while True:
        if runs >= check:
            now = time.monotonic()
            if now >= deadline or (most and runs >= most):
                break
            check = runs + 200
        base = pool[runs] if runs < len(pool) else rnd.choice(pool)
        data = base if runs < len(pool) else mutate(base, rnd, pool)
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
        try:
            t.run(data)
        except Hang:
            hangs += 1
            save_crash(name, data, "hang", f"took more than {HANG_SECONDS} s")
        except Exception as exc:   # noqa: BLE001 - every escape is a finding
            sig = _signature(exc)
            if sig not in seen:
                seen.add(sig)
                crashes += 1
                path = save_crash(name, data, "crash", traceback.format_exc())
                print(f"crash {sig}: {path}", file=sys.stderr, flush=True)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        slowest = max(slowest, time.perf_counter() - t0)
        runs += 1
        if runs > len(pool) and rnd.random() < 0.002 and len(pool) < 4000:
            pool.append(data)          # compound mutations now and then
    return {"runs": runs, "seconds": round(time.monotonic() - start, 1), "crashes": crashes, "hangs": hangs,
            "slowest_s": round(slowest, 3), "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


# --- hypothesis --------------------------------------------------------------------------------

def _hypothesis(name: str, seconds: float, most: int, seed: int | None) -> dict:
    """Structure-aware generation: seeds mutated by hypothesis-drawn randomness, and
    inputs built from scratch by the target kind's strategy; failures shrink."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from fuzz.mutate import mutator
    from fuzz.targets import TARGETS
    t = TARGETS[name]
    pool = seeds_of(name) or [b""]
    mutate = mutator(t.kind)
    strategy = st.one_of(
        st.tuples(st.sampled_from(pool), st.randoms(use_true_random=False)).map(lambda a: mutate(a[0], a[1], pool)),
        _from_scratch(t.kind),
    )
    count = {"runs": 0}
    failing: list[bytes] = []

    @settings(max_examples=500, deadline=None, database=None, derandomize=seed is not None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(data):
        count["runs"] += 1
        try:
            t.run(data)
        except Exception:
            failing[:] = [data]
            raise

    crashes = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds and not (most and count["runs"] >= most):
        try:
            one()
        except Exception as exc:     # noqa: BLE001
            crashes += 1
            save_crash(name, failing[0] if failing else b"", "crash", "".join(traceback.format_exception(exc)))
            break
    return {"runs": count["runs"], "seconds": round(time.monotonic() - start, 1), "crashes": crashes,
            "hangs": 0, "peak_rss_mb": _peak_rss_mb()}


def _from_scratch(kind: str):
    from hypothesis import strategies as st

    from fuzz import streams
    if kind in ("stream", "stream-keyed", "stream-headed"):
        rec = st.one_of(
            st.tuples(st.just(streams.DATA), st.sampled_from(streams.DIRS), st.binary(max_size=600)),
            st.tuples(st.just(streams.GAP), st.sampled_from(streams.DIRS), st.integers(1, 0xFFFF)),
            st.tuples(st.sampled_from((streams.GAP_UNKNOWN, streams.EOS)), st.sampled_from(streams.DIRS), st.none()))
        body = st.lists(rec, max_size=20).map(streams.build)
        if kind in ("stream-keyed", "stream-headed"):
            return st.tuples(st.binary(max_size=300), body).map(lambda a: streams.with_header(*a))
        return body
    if kind == "json":
        leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=40))
        doc = st.recursive(leaf, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=12), kids, max_size=6),
                           max_leaves=40)
        return doc.map(lambda d: json.dumps(d).encode())
    return st.binary(max_size=4096)


# --- atheris (libFuzzer) -----------------------------------------------------------------------

def _atheris(name: str, seconds: float, most: int) -> dict:
    """libFuzzer, coverage-guided, in a child process (so traceviz is imported instrumented);
    restarted after a crash until the budget is spent."""
    seed_dir = SEEDS / name
    seed_dir.mkdir(parents=True, exist_ok=True)
    from fuzz.targets import TARGETS
    for s in TARGETS[name].seeds():
        (seed_dir / hashlib.sha1(s).hexdigest()[:16]).write_bytes(s[:MAX_LEN])
    corpus = CORPUS / name
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts = CRASHES / name
    artifacts.mkdir(parents=True, exist_ok=True)
    runs = crashes = hangs = 0
    peak = 0
    start = time.monotonic()
    while True:
        left = seconds - (time.monotonic() - start)
        if left < 5 or (most and runs >= most):
            break
        cmd = [sys.executable, "-m", "fuzz.atheris_child", name, str(corpus), str(seed_dir),
               f"-max_total_time={int(left)}", f"-timeout={HANG_SECONDS}", "-rss_limit_mb=3072",
               f"-max_len={MAX_LEN}", f"-artifact_prefix={artifacts}/", "-print_final_stats=1"]
        if most:
            cmd.append(f"-runs={most - runs}")
        proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, errors="replace", cwd=HERE.parent,
                              env={**os.environ, "PYTHONPATH": str(HERE.parent)})
        done, rss, how = _libfuzzer_result(proc.stderr)
        runs += done
        peak = max(peak, rss)
        if how == "crash":
            crashes += 1
        elif how == "hang":
            hangs += 1
        if how in ("crash", "hang", "oom"):
            (artifacts / f"last-{how}.log").write_text(proc.stderr[-8000:])
            print(f"{name}: {how} (see {artifacts})", file=sys.stderr, flush=True)
            continue
        break
    return {"runs": runs, "seconds": round(time.monotonic() - start, 1), "crashes": crashes, "hangs": hangs,
            "peak_rss_mb": peak}


def _libfuzzer_result(err: str) -> tuple[int, int, str]:
    """(inputs run, peak RSS MB, how it ended: done, crash, hang or oom) from libFuzzer's stderr."""
    runs = rss = 0
    for line in err.splitlines():
        if line.startswith("stat::number_of_executed_units:"):
            runs = int(line.rsplit(":", 1)[1])
        elif line.startswith("stat::peak_rss_mb:"):
            rss = int(line.rsplit(":", 1)[1])
        elif line.startswith("#") and "\t" in line and not runs:
            head = line[1:].split("\t", 1)[0]
            if head.isdigit():
                runs = max(runs, int(head))
    if "Uncaught Python exception" in err or "deadly signal" in err:
        how = "crash"
    elif "ERROR: libFuzzer: timeout" in err:
        how = "hang"
    elif "out-of-memory" in err:
        how = "oom"
    else:
        how = "done"
    return runs, rss, how


# --- replay and summary ------------------------------------------------------------------------

def replay(names: list[str]) -> list[str]:
    """Run every saved crash and corpus input once; the ones that still fail."""
    from fuzz.targets import TARGETS
    bad = []
    signal.signal(signal.SIGALRM, _alarm)
    for name in names:
        files = [p for folder in (CRASHES / name, CORPUS / name) if folder.is_dir()
                 for p in sorted(folder.iterdir()) if p.is_file() and not p.suffix]
        for p in files:
            signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
            try:
                TARGETS[name].run(p.read_bytes())
            except Exception as exc:   # noqa: BLE001
                bad.append(f"{name}/{p.name}: {_signature(exc)}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    for b in bad:
        print(b)
    return bad


def trim(name: str, most: int = CORPUS_KEEP, size: int = CORPUS_SIZE) -> None:
    """Keep at most ``most`` inputs of at most ``size`` bytes in ``corpus/NAME``: a sample the
    regression test replays in seconds (a campaign grows the corpus again from the seeds)."""
    folder = CORPUS / name
    if not folder.is_dir():
        return
    files = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.name)
    small = [p for p in files if p.stat().st_size <= size]
    keep = set(random.Random(name).sample(small, min(most, len(small))))
    for p in files:
        if p not in keep:
            p.unlink()


def table() -> str:
    from fuzz.targets import PENDING, TARGETS
    rows: dict[str, dict] = {}
    if CAMPAIGNS.is_file():
        for line in CAMPAIGNS.read_text().splitlines():
            c = json.loads(line)
            r = rows.setdefault(c["target"], {"runs": 0, "seconds": 0.0, "crashes": 0, "hangs": 0, "engines": set(),
                                               "rss": 0, "rate": 0})
            r["runs"] += c["runs"]
            r["seconds"] += c["seconds"]
            r["crashes"] += c["crashes"]
            r["hangs"] += c["hangs"]
            r["engines"].add(c["engine"])
            r["rss"] = max(r["rss"], c.get("peak_rss_mb", 0))
    lines = ["| target | decoder | inputs | wall min | inputs/s | crashes | hangs | peak RSS MB | engines |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, t in TARGETS.items():
        r = rows.get(name)
        if r is None:
            lines.append(f"| {name} | {t.what} | 0 | – | – | – | – | – | – |")
            continue
        rate = round(r["runs"] / r["seconds"]) if r["seconds"] else 0
        lines.append(f"| {name} | {t.what} | {r['runs']:,} | {r['seconds'] / 60:,.0f} | {rate:,} | {r['crashes']} | {r['hangs']} | "
                     f"{r['rss']} | {', '.join(sorted(r['engines']))} |")
    for name in PENDING:
        lines.append(f"| {name} | pending: its decoder is being written | – | – | – | – | – | – | – |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
