"""A plain ``pip install`` gives a traceviz that works from any folder.

Slow (a wheel build, a venv and a few CLI processes: about 10-40 s) but
always run: this is the user's first minute with the tool.  The venv sees
the running environment's packages (``--system-site-packages``, plus a
``.pth`` when the tests themselves run in a venv) so no network is needed;
the wheel is installed with ``--no-deps``.  Building the wheel offline needs
hatchling installed; without it pip fetches it (build isolation).  Ground
truth: the wheel's own file list and the bundled captures' manifest.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(cmd: list, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "TRACEVIZ_RECIPES", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")}
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} exited {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    return p


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Build the wheel, install it alone into a fresh venv; return the paths."""
    tmp = tmp_path_factory.mktemp("install")
    dist, venv, elsewhere = tmp / "dist", tmp / "venv", tmp / "elsewhere"
    elsewhere.mkdir()
    build = [sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-w", dist, "-q"]
    if importlib.util.find_spec("hatchling") is not None:
        build.append("--no-build-isolation")  # the backend is here: no download
    run(build, cwd=tmp)
    wheels = list(dist.glob("traceviz-*.whl"))
    assert len(wheels) == 1, wheels
    # No pip of its own: the venv borrows the running one through --system-site-packages.
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], cwd=tmp)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    # When the tests themselves run in a venv (CI: .venv), "system" is the base interpreter, which
    # lacks the dependencies: a .pth appends the running environment's site dirs, after the venv's own.
    inner = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp).stdout.strip())
    outer = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (inner / "_running_env.pth").write_text("".join(f"{d}\n" for d in outer))
    # --ignore-installed: a traceviz in the running environment must not satisfy this install.
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", wheels[0]], cwd=tmp)
    site = run([python, "-c", "import traceviz, pathlib; print(pathlib.Path(traceviz.__file__).resolve().parent)"],
               cwd=elsewhere).stdout.strip()
    return {"wheel": wheels[0], "venv": venv.resolve(), "python": python, "cwd": elsewhere, "package": Path(site),
            "traceviz": python.parent / "traceviz"}


def traceviz_json(installed: dict, *args):
    p = run([installed["traceviz"], *args, "--json"], cwd=installed["cwd"])
    return json.loads(p.stdout)


def test_the_installed_package_is_the_wheel(installed):
    assert installed["package"].is_relative_to(installed["venv"]), installed["package"]
    assert not installed["package"].is_relative_to(ROOT)


def test_captures_are_listed_from_site_packages(installed):
    rows = traceviz_json(installed, "captures")
    manifest = json.loads((ROOT / "captures" / "manifest.json").read_text())
    assert sorted(r["name"] for r in rows) == sorted(c["name"] for c in manifest["captures"])
    for r in rows:
        path = Path(r["path"]).resolve()
        assert path.is_file(), r
        assert path.is_relative_to(installed["package"]), path


def test_handshakes_on_a_bundled_capture_by_name(installed):
    rows = traceviz_json(installed, "handshakes", "tcp-handshakes")
    manifest = json.loads((installed["package"] / "_data" / "captures" / "manifest.json").read_text())
    facts = next(c for c in manifest["captures"] if c["name"] == "tcp-handshakes")["facts"]["connections"]
    assert [(r["client"], r["server"], r["close"]) for r in rows] == [
        (f["client"], f["server"], f["outcome"]) for f in facts]


def test_shipped_recipes_are_listed(installed):
    with zipfile.ZipFile(installed["wheel"]) as whl:
        shipped = {Path(n).stem for n in whl.namelist()
                   if n.startswith("traceviz/_data/recipes/") and n.endswith(".py") and not Path(n).name.startswith("_")}
    assert {p.stem for p in (ROOT / "recipes").glob("*.py") if not p.name.startswith("_")} <= shipped
    rows = traceviz_json(installed, "recipes")
    assert shipped <= {r["name"] for r in rows}
    for r in rows:
        assert Path(r["path"]).resolve().is_relative_to(installed["package"]), r


def test_the_wheel_ships_no_stray_files(installed):
    with zipfile.ZipFile(installed["wheel"]) as whl:
        stray = [n for n in whl.namelist() if n.endswith((".orig", ".rej", ".pyc", "~"))]
    assert not stray


def test_python_m_traceviz_is_the_command(installed):
    p = run([installed["python"], "-m", "traceviz", "--help"], cwd=installed["cwd"])
    assert "handshakes" in p.stdout and "run" in p.stdout


def test_a_shipped_recipe_runs_as_a_script(installed):
    script = installed["package"] / "_data" / "recipes" / "handshakes.py"
    alone = json.loads(run([installed["python"], script, "tcp-handshakes", "--json"], cwd=installed["cwd"]).stdout)
    assert alone == traceviz_json(installed, "handshakes", "tcp-handshakes")
    manifest = json.loads((ROOT / "captures" / "manifest.json").read_text())
    facts = next(c for c in manifest["captures"] if c["name"] == "tcp-handshakes")["facts"]["connections"]
    assert [r["server"] for r in alone] == [f["server"] for f in facts]


def test_the_plain_install_brings_image_export(installed):
    """README: `pip install .` then `--chart x.png` works: kaleido is a dependency, not an extra."""
    with zipfile.ZipFile(installed["wheel"]) as whl:
        meta = whl.read(next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert any(r.startswith("kaleido") and "extra ==" not in r for r in requires), requires
