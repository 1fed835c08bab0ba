"""Every input the fuzzers ever found a crash or hang with, replayed: each must now be
read (or refused) without an exception and in time.  Also the saved corpus of
interesting inputs, and a short run of every target, so the harness itself keeps working."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from fuzz import __main__ as engine
from fuzz.targets import TARGETS

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
SAVED = sorted(p for folder in ("crashes", "corpus") for p in (FUZZ / folder).glob("*/*")
               if p.is_file() and not p.suffix)


def _replay(target: str, data: bytes) -> None:
    signal.signal(signal.SIGALRM, engine._alarm)
    signal.setitimer(signal.ITIMER_REAL, engine.HANG_SECONDS)
    try:
        TARGETS[target].run(data)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


@pytest.mark.parametrize("path", SAVED, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_saved_input_is_read_without_a_crash(path):
    _replay(path.parent.name, path.read_bytes())


def test_crashes_found_so_far_are_kept():
    """The crashes fixed on the way stay in the regression set (a deleted reproducer is a lost test)."""
    assert (FUZZ / "crashes" / "tls").is_dir() and any((FUZZ / "crashes" / "tls").glob("crash-*"))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_survives_a_short_run(name):
    """200 mutated inputs from the target's seeds, the way a campaign starts."""
    from fuzz.mutate import mutator
    t = TARGETS[name]
    seeds = [s[:engine.MAX_LEN] for s in t.seeds()]
    assert seeds, f"{name} has no seeds"
    rnd = random.Random(16)
    mutate = mutator(t.kind)
    for i in range(200):
        base = seeds[i % len(seeds)]
        _replay(name, base if i < len(seeds) else mutate(base, rnd, seeds))


def test_json_mutator_survives_nesting_deeper_than_json_writes():
    """A swap can put one 600-deep list inside another; the mutator then falls back to bytes
    instead of ending the campaign with a RecursionError (it ended two, unrecorded)."""
    import json

    from fuzz.mutate import mutate_json
    doc = json.dumps({"a": "X", "b": "X"}).replace('"X"', "[" * 600 + "]" * 600).encode()
    rnd = random.Random(3)
    for _ in range(3000):
        assert isinstance(mutate_json(doc, rnd, [doc]), bytes)


def test_json_mutator_survives_huge_numbers():
    """A 400-digit integer times 1e6 overflows a float (it ended a qlog campaign, unrecorded)."""
    from fuzz.mutate import mutate_json
    doc = ('{"a": 1%s, "b": [2%s, 3.5]}' % ("0" * 400, "0" * 4000)).encode()
    rnd = random.Random(5)
    for _ in range(3000):
        assert isinstance(mutate_json(doc, rnd, [doc]), bytes)
