"""The capture lab: network namespaces joined by the delay relay, and dumpcap.

    with Lab("tvA-", "10.77", [LinkSpec("c", "s", delay_ms=12.5)]) as lab:
        server = lab.popen("s", [sys.executable, "server.py"])
        with lab.capture("c", out / "x.pcapng"):
            lab.run("c", [sys.executable, "client.py", lab.addr("s")])

A ``LinkSpec``'s ``a`` and ``b`` name hosts here (the relay's TAP names are
derived from them).  Link *i* is the subnet ``NET.i.0/24``: host ``a`` is
``.1``, host ``b`` is ``.2``.  Each host is a namespace ``PREFIX + host``;
its interface on link *i* is ``PREFIX + host + i``.

Why each step: IPv6 is off and neighbours are static so no router
solicitation or ARP frame lands in a capture; offloads are off so frames are
wire-sized; one ping per link before recording warms everything up.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from relay import LinkSpec  # noqa: E402

CAPTURES = HERE.parent

PROGRAMS = ("ip", "ping", "ethtool", "dumpcap", "editcap", "tshark")


@dataclass
class Scenario:
    """One re-recordable capture (or a few made in one go)."""
    name: str
    title: str
    record: Callable[[Path], list[dict]]        # out dir -> manifest entries
    requires: tuple[str, ...] = PROGRAMS


def sh(*argv: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, text=True, capture_output=quiet)


def missing_programs(names) -> list[str]:
    return [n for n in names if shutil.which(n) is None]


def version(argv: list[str]) -> str:
    """The first line a program prints about its version ('' if it cannot run)."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else ""


class Lab:
    def __init__(self, prefix: str, net: str, links: list[LinkSpec], workdir: Path | None = None):
        self.prefix, self.net = prefix, net
        self.links = [replace(l, a=prefix + l.a + str(i) + "t", b=prefix + l.b + str(i) + "t")
                      for i, l in enumerate(links)]
        self.hosts_of = [(l.a, l.b) for l in links]
        self.hosts = sorted({h for pair in self.hosts_of for h in pair})
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=prefix))
        self.procs: list[subprocess.Popen] = []
        self.relay: subprocess.Popen | None = None
        self.relay_stats: list[dict] = []

    # ---- names and addresses
    def ns(self, host: str) -> str:
        return self.prefix + host

    def iface(self, host: str, link: int = 0) -> str:
        return f"{self.prefix}{host}{link}"

    def addr(self, host: str, link: int | None = None) -> str:
        for i, (a, b) in enumerate(self.hosts_of):
            if link in (None, i) and host in (a, b):
                return f"{self.net}.{i}.{1 if host == a else 2}"
        raise KeyError(host)

    # ---- life cycle
    def __enter__(self) -> "Lab":
        self.setup()
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()

    def setup(self) -> None:
        self.remove_namespaces()
        for h in self.hosts:
            sh("ip", "netns", "add", self.ns(h))
            self.ip(h, "link", "set", "lo", "up")
            self.sysctl(h, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        self.start_relay()
        for i, (spec, (a, b)) in enumerate(zip(self.links, self.hosts_of)):
            for tap, host in ((spec.a, a), (spec.b, b)):
                dev = self.iface(host, i)
                sh("ip", "link", "set", tap, "netns", self.ns(host))
                self.ip(host, "link", "set", tap, "name", dev)
                self.ip(host, "addr", "add", f"{self.addr(host, i)}/24", "dev", dev)
                self.ip(host, "link", "set", dev, "up")
                # TAPs without a vnet header have few offloads; turn off whatever exists.
                self.exec(host, ["ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off",
                                 "tx", "off"], check=False, quiet=True)
            self.static_neighbours(i, a, b)
        for i, (a, b) in enumerate(self.hosts_of):
            self.exec(a, ["ping", "-c", "1", "-W", "2", self.addr(b, i)], quiet=True)

    def teardown(self) -> None:
        for p in reversed(self.procs):
            stop(p)
        self.procs.clear()
        if self.relay:
            stop(self.relay)
            stats = self.workdir / "relay-stats.json"
            if stats.exists():
                self.relay_stats = json.loads(stats.read_text())
            self.relay = None
        self.remove_namespaces()

    def remove_namespaces(self) -> None:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for line in listed.splitlines():
            name = line.split()[0] if line.split() else ""
            if name in {self.ns(h) for h in self.hosts}:
                sh("ip", "netns", "del", name, check=False)

    def start_relay(self) -> None:
        argv = [sys.executable, str(HERE / "relay.py"), "--stats", str(self.workdir / "relay-stats.json")]
        for spec in self.links:
            argv += ["--link", spec.to_arg()]
        self.relay = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        if self.relay.stdout.readline().strip() != "ready":
            raise RuntimeError("the delay relay did not start")

    def static_neighbours(self, i: int, a: str, b: str) -> None:
        mac = {h: self.mac(h, i) for h in (a, b)}
        for me, peer in ((a, b), (b, a)):
            self.ip(me, "neigh", "replace", self.addr(peer, i), "lladdr", mac[peer],
                    "dev", self.iface(me, i), "nud", "permanent")

    def mac(self, host: str, link: int) -> str:
        out = subprocess.run(["ip", "-n", self.ns(host), "-j", "link", "show", self.iface(host, link)],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)[0]["address"]

    # ---- running things inside a namespace
    def ip(self, host: str, *args: str) -> None:
        sh("ip", "-n", self.ns(host), *args)

    def sysctl(self, host: str, *settings: str) -> None:
        self.exec(host, ["sysctl", "-q", "-w", *settings], quiet=True)

    def argv(self, host: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def exec(self, host: str, argv: list[str], check: bool = True, quiet: bool = False):
        return sh(*self.argv(host, argv), check=check, quiet=quiet)

    def run(self, host: str, argv: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        """Run to completion; stdout captured as text (the drivers print JSON lines)."""
        done = subprocess.run(self.argv(host, argv), capture_output=True, text=True, timeout=timeout, **kw)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} failed in {host} ({done.returncode}):\n"
                               + done.stderr[-3000:])
        return done

    def popen(self, host: str, argv: list[str], ready: str | None = None, **kw) -> subprocess.Popen:
        """Start a long-running process (a server); wait for ``ready`` on its stdout if given."""
        p = subprocess.Popen(self.argv(host, argv), stdout=subprocess.PIPE, text=True, **kw)
        self.procs.append(p)
        if ready is not None:
            line = p.stdout.readline()
            if ready not in line:
                raise RuntimeError(f"{argv[:3]} did not become ready: {line!r}")
        return p

    def capture(self, host: str, path: Path, ifaces: list[str] | None = None) -> "Capture":
        return Capture(self, host, Path(path), ifaces or [self.iface(host, 0)])


class Capture:
    """dumpcap on interfaces of one namespace, as a context manager."""

    def __init__(self, lab: Lab, host: str, path: Path, ifaces: list[str]):
        self.lab, self.host, self.path, self.ifaces = lab, host, path, ifaces
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Capture":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()
        argv = ["dumpcap", "-q", "-w", str(self.path)]
        for i in self.ifaces:
            argv += ["-i", i]
        self.proc = subprocess.Popen(self.lab.argv(self.host, argv), stderr=subprocess.PIPE, text=True)
        # dumpcap says "Capturing on ..." once the interfaces are open.
        said = []
        while not said or "Capturing on" not in said[-1]:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("dumpcap did not start: " + " ".join(said))
            said.append(line.strip())
        time.sleep(0.3)
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)    # let the last frames of the scenario reach the ring buffer
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self.path.exists():
            os.chmod(self.path, 0o644)


def stop(p: subprocess.Popen, timeout: float = 5) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def inject_keys(pcapng: Path, keylog: Path) -> None:
    """Embed an NSS key log into the capture as a Decryption Secrets Block."""
    tmp = pcapng.with_suffix(".tmp.pcapng")
    sh("editcap", "--inject-secrets", f"tls,{keylog}", str(pcapng), str(tmp), quiet=True)
    os.replace(tmp, pcapng)
    os.chmod(pcapng, 0o644)
    os.chmod(keylog, 0o644)


def tool_versions() -> dict[str, str]:
    """Versions of what the lab itself uses, for a manifest entry's ``recorded``."""
    import platform
    return {
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dumpcap": version(["dumpcap", "-v"]),
        "relay": "captures/record/relay.py (userspace TAP relay; this kernel has no tc netem)",
    }
