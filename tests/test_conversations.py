"""Conversations and endpoints against tshark's ``-z conv,...`` and ``-z endpoints,...``.

On every readable corpus capture and bundled capture: each TCP, UDP, IPv4
and IPv6 conversation tshark lists, with its frames each way exactly and its
bytes each way as tshark prints them (exact below 10 kB, in whole kB/MB
above), and its duration to tshark's four decimals; no conversation more or
less.  Endpoints likewise on a few captures.  The connections table's
``frames_*``/``wire_bytes_*`` columns are what these rows are made of.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

import traceviz
from conftest import CORPUS, ROOT
from traceviz.assemble.conversations import conversations, endpoints

CAPTURES = sorted(p for p in list(CORPUS.glob("pcap/**/*.pcap*")) + list((ROOT / "captures").glob("*.pcapng"))
                  if "corrupt" not in p.parts)
UNITS = {"bytes": 1, "kB": 1000, "MB": 1000 ** 2, "GB": 1000 ** 3}
SIZE = r"(\d+) (bytes|kB|MB|GB)"
CONV = re.compile(rf"^(\S+)\s+<->\s+(\S+)\s+(\d+) {SIZE}\s+(\d+) {SIZE}\s+(\d+) {SIZE}\s+(-?[\d.]+)\s+([\d.]+)")
ENDPOINT = re.compile(r"^(\S+)\s+(?:(\d+)\s+)?(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")


def shown(value: int, count: str, unit: str) -> bool:
    """Whether tshark would print ``value`` bytes as ``count unit``."""
    return value // UNITS[unit] == int(count)


def tshark_conversations(tshark, path) -> dict[str, list[tuple]]:
    """Each table tshark prints (TCP, UDP, IPv4, IPv6) as its rows, from one tshark run."""
    args = [tshark, "-r", str(path), "-q"]
    for kind in ("tcp", "udp", "ip", "ipv6"):
        args += ["-z", f"conv,{kind}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120).stdout
    tables, current = {}, None
    for line in out.splitlines():
        head = re.match(r"^(TCP|UDP|IPv4|IPv6) Conversations", line)
        if head:
            current = tables.setdefault({"IPv4": "ipv4", "IPv6": "ipv6"}.get(head[1], head[1].lower()), [])
        m = CONV.match(line)
        if m and current is not None:
            current.append(m.groups())
    return tables


def as_the_command_loads(path):
    """The Timeline ``traceviz conversations``/``endpoints`` read: the transport tier alone."""
    return traceviz.load(path, tables=("packets", "connections"), transport_only=True)


def plain(endpoint: str) -> str:
    """tshark prints an IPv6 endpoint with its port as fe80::1:443; traceviz brackets the address."""
    return endpoint.replace("[", "").replace("]", "")


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_conversations_match_tshark(path, tshark):
    tl = as_the_command_loads(path)
    tables = tshark_conversations(tshark, path)
    for kind, by in (("tcp", "tcp"), ("udp", "udp"), ("ipv4", "ip"), ("ipv6", "ip")):
        ours = conversations(tl, by)
        ours = ours[ours["kind"] == kind]
        theirs = tables.get(kind, [])
        assert len(ours) == len(theirs), kind
        rows = {}
        for r in ours.itertuples():
            rows[(plain(r.b), plain(r.a))] = (r.frames_ba, r.bytes_ba, r.frames_ab, r.bytes_ab, r.duration)
            rows[(plain(r.a), plain(r.b))] = (r.frames_ab, r.bytes_ab, r.frames_ba, r.bytes_ba, r.duration)
        for a, b, f_ba, n_ba, u_ba, f_ab, n_ab, u_ab, *_total, _start, duration in theirs:
            fab, bab, fba, bba, dur = rows[(a, b)]
            assert (fab, fba) == (int(f_ab), int(f_ba)), (kind, a, b)
            assert shown(bab, n_ab, u_ab) and shown(bba, n_ba, u_ba), (kind, a, b, bab, bba)
            assert dur == pytest.approx(float(duration), abs=6e-5), (kind, a, b)


@pytest.mark.parametrize("name", ["proxy-nginx-502-504.pcapng", "quic-vs-h2-tcp.pcapng", "http1-six-connections.pcapng"])
def test_endpoints_match_tshark(name, tshark):
    path = ROOT / "captures" / name
    tl = as_the_command_loads(path)
    for kind, by in (("ip", "ip"), ("tcp", "tcp"), ("udp", "udp")):
        out = subprocess.run([tshark, "-r", str(path), "-q", "-z", f"endpoints,{kind}"], capture_output=True,
                             text=True, timeout=120).stdout
        theirs = {}
        for m in map(ENDPOINT.match, out.splitlines()):
            if m:
                addr, port, *counts = m.groups()
                theirs[f"{addr}:{port}" if port else addr] = tuple(map(int, counts))
        ours = endpoints(tl, by)
        mine = {r.endpoint: (r.frames, r.bytes, r.tx_frames, r.tx_bytes, r.rx_frames, r.rx_bytes)
                for r in ours.itertuples()}
        assert mine == theirs, kind


def test_connection_columns_hold_the_counts():
    tl = traceviz.load(ROOT / "captures" / "proxy-nginx-502-504.pcapng")
    c = tl.connections
    p = tl.packets[tl.packets["transport"] == "tcp"]
    for row in c.itertuples():
        mine = p[p["conn"] == row.conn]
        up = mine[mine["dir"] == "c2s"]
        assert (row.frames_c2s, row.wire_bytes_c2s) == (len(up), int(up["wire_len"].sum()))
        assert row.frames_c2s + row.frames_s2c == len(mine)


def test_the_commands_load_the_transport_tier_alone(tv, monkeypatch):
    """What they count is all in the transport tier: a key log given is said to be unused."""
    asked = []
    real = traceviz.load
    monkeypatch.setattr(traceviz, "load", lambda *a, **k: asked.append((k.get("tables"), k.get("transport_only")))
                        or real(*a, **k))
    code, out, err = tv("conversations", "quic-h3", "--by", "udp", "--json")
    assert code == 0 and {r["kind"] for r in json.loads(out)} == {"udp"}
    keys = ROOT / "captures" / "tls12-vs-tls13.keys"
    code, out, err = tv("endpoints", "tls12-vs-tls13", "--keylog", keys, "--json")
    assert code == 0 and json.loads(out) and "keys not used" in err
    assert asked == [(("packets", "connections"), True)] * 2
