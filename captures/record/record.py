"""Re-record a bundled capture: ``sudo python captures/record/record.py SCENARIO [--out DIR]``.

Needs root (network namespaces, TAP devices, dumpcap on them) and the Debian
packages iproute2, ethtool, tshark (dumpcap, editcap) plus whatever the
scenario itself runs (nginx, openssl, ...).  Both are checked before anything
starts.  ``--list`` shows the scenarios.  The new entries are merged into
``captures/manifest.json`` when the output folder is ``captures/``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import manifest  # noqa: E402
from netlab import CAPTURES, missing_programs  # noqa: E402

# Scenario modules; the ones not written yet are skipped.
MODULES = ["scenarios_tcp", "scenarios_tls", "scenarios_http1",
           "scenarios_h2", "scenarios_quic", "scenarios_proxy", "scenarios_browser", "scenarios_lab"]


def scenarios() -> dict:
    found = {}
    for mod in MODULES:
        if not (HERE / f"{mod}.py").exists():
            continue
        module = importlib.import_module(mod)
        for sc in getattr(module, "SCENARIOS", []):
            found[sc.name] = sc
    return found


def problems(sc) -> list[str]:
    out = []
    if os.geteuid() != 0:
        out.append("must run as root (network namespaces, TAP devices, dumpcap)")
    missing = missing_programs(sc.requires)
    if missing:
        out.append("missing programs: " + ", ".join(missing)
                   + " (Debian: apt-get install iproute2 ethtool tshark nginx ...)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario", nargs="?", help="scenario name, or 'all'")
    p.add_argument("--out", type=Path, default=CAPTURES, help="output folder (default: captures/)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = p.parse_args(argv)
    found = scenarios()
    if args.list or not args.scenario:
        for name, sc in sorted(found.items()):
            print(f"{name:28} {sc.title}")
        return 0
    names = sorted(found) if args.scenario == "all" else [args.scenario]
    unknown = [n for n in names if n not in found]
    if unknown:
        print(f"unknown scenario {unknown[0]!r}; --list shows them", file=sys.stderr)
        return 2
    for name in names:
        trouble = problems(found[name])
        if trouble:
            print(f"{name}: cannot record: " + "; ".join(trouble), file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        print(f"recording {name} ...", file=sys.stderr)
        entries = found[name].record(args.out)
        target = args.out / "manifest.json"
        manifest.update(entries, target)
        for e in entries:
            print(f"  {args.out / e['file']}  ({', '.join(e['concepts'])})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
