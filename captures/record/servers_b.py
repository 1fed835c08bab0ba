"""Servers for scenarios 4-7: config templates filled in, run in the foreground.

``netlab.Lab.popen`` pipes stdout, which a chatty server could fill; these
servers write to log files instead, and are registered with the lab so its
teardown stops them.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from netlab import Lab, stop

CONF = Path(__file__).resolve().parent / "conf"


def render(template: str, values: dict[str, str]) -> str:
    """Fill ``@KEY@`` placeholders; a placeholder left unfilled is an error."""
    for key, value in values.items():
        template = template.replace(f"@{key}@", str(value))
    code = "\n".join(line.split("#", 1)[0] for line in template.splitlines())
    left = re.findall(r"@[A-Z_]+@", code)
    if left:
        raise ValueError(f"unfilled placeholders: {sorted(set(left))}")
    return template


def start(lab: Lab, host: str, argv: list[str], log: Path, wait_port: tuple[str, int] | None = None,
          env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start a long-running server in ``host``'s namespace, output to ``log``."""
    out = open(log, "ab")
    p = subprocess.Popen(lab.argv(host, argv), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    lab.procs.append(p)
    if wait_port:
        wait_listening(lab, host, *wait_port, proc=p, log=log)
    return p


def wait_listening(lab: Lab, host: str, addr: str, port: int, proc: subprocess.Popen | None = None,
                   log: Path | None = None, timeout: float = 10.0, udp: bool = False) -> None:
    """Until something in ``host`` listens on addr:port (ss, so no probe lands in a capture)."""
    deadline = time.time() + timeout
    flag = "-lun" if udp else "-ltn"
    while time.time() < deadline:
        out = lab.exec(host, ["ss", "-H", flag], quiet=True, check=False).stdout
        if any(local_of(line) == f"{addr}:{port}" for line in out.splitlines()):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-500:] if log else ''}")
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {addr}:{port} in {host}")


def local_of(ss_line: str) -> str:
    """The local address:port column of an ``ss -H`` line ('' if absent)."""
    cols = ss_line.split()
    return cols[3] if len(cols) > 3 else ""


def nginx_prefix(workdir: Path, name: str, template: str, values: dict[str, str]) -> Path:
    """A private nginx prefix with the rendered config; returns the prefix."""
    prefix = workdir / name
    prefix.mkdir(parents=True, exist_ok=True)
    values = dict(values, PREFIX=str(prefix))
    (prefix / "nginx.conf").write_text(render((CONF / template).read_text(), values))
    return prefix


def start_nginx(lab: Lab, host: str, prefix: Path, addr: str, port: int) -> subprocess.Popen:
    return start(lab, host, ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                 prefix / "stdout.log", wait_port=(addr, port))


def stop_server(lab: Lab, proc: subprocess.Popen) -> None:
    stop(proc)
    if proc in lab.procs:
        lab.procs.remove(proc)


def log_lines(path: Path, start: int = 0) -> tuple[list[str], int]:
    """Lines appended to a log since byte ``start``, and the new end offset."""
    if not path.exists():
        return [], start
    data = path.read_bytes()
    return data[start:].decode("utf-8", "replace").splitlines(), len(data)


def remove_workdir(lab: Lab) -> None:
    """Delete the recording's temporary folder (it holds the test-only private key);
    TVB_KEEP_WORKDIR=1 keeps it for debugging."""
    import os
    import shutil
    if not os.environ.get("TVB_KEEP_WORKDIR"):
        shutil.rmtree(lab.workdir, ignore_errors=True)
