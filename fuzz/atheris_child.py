"""One atheris (libFuzzer) run of one target: ``python -m fuzz.atheris_child TARGET DIR... -libfuzzer-flags``.

Started by ``python -m fuzz run --engine atheris``.  traceviz is imported
inside ``atheris.instrument_imports`` so libFuzzer sees its coverage; the
target kind's structure-aware mutator takes half of the mutations.
"""

from __future__ import annotations

import random
import sys

import atheris

from fuzz.mutate import mutator

with atheris.instrument_imports(include=["traceviz"]):
    from fuzz.targets import TARGETS
    name = sys.argv[1]
    target = TARGETS[name]
    # Import what the target imports, now, while the import hook instruments it.
    for warmup in (b"", b"\x00" * 64):
        try:
            target.run(warmup)
        except Exception:      # noqa: BLE001 - a crash here is found again by the fuzzer
            pass

_mutate = mutator(target.kind)


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    if target.kind == "bytes" or rnd.random() < 0.5:
        return atheris.Mutate(data, max_size)
    return _mutate(data, rnd)[:max_size]


def main() -> None:
    argv = [sys.argv[0]] + sys.argv[2:]
    atheris.Setup(argv, target.run, custom_mutator=custom_mutator if target.kind != "bytes" else None)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
