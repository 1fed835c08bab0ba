"""The payload tier reads only what the tables need, and no fact changes for it.

- Stepping over bytes (bodies by Content-Length or chunk arithmetic, TLS
  application data by record headers) gives the tables that reading every
  byte gives, on every corpus capture, every bundled one and a generated
  capture of traffic-like payloads with retransmissions and reordering.
- Connections decoded in shares by forked processes give the tables one
  process gives, QUIC's (read by a child of its own beside the shares)
  included, also when a child fails and its work is redone here.
- A request line longer than the first sniffed bytes is still HTTP, checked
  against tshark; what stops HTTP decoding on a connection is said.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import traceviz
from traceviz.decode import streams
from traceviz.decode.tls import session as tls_session

from streamgen import write_conversations

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("packets", "connections", "events", "requests", "tls", "quic")


def tables(tl) -> dict:
    return {name: getattr(tl, name) for name in TABLES}


def assert_same(a, b, what: str) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=f"{what}: {name}")
    assert a.warnings == b.warnings, what


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """20k packets of traffic-like payloads (TLS 1.2/1.3, HTTP/1.1, h2c, opaque, UDP) from the bench generator."""
    path = tmp_path_factory.mktemp("gen") / "traffic.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_capture.py"), str(path), "--packets", "20000",
                    "--payloads", "real", "--seed", "3"], check=True, capture_output=True, timeout=300)
    return path


def _inputs(corpus) -> list[tuple[Path, Path | None]]:
    caps = sorted(p for p in (corpus / "pcap").rglob("*") if p.suffix in (".pcap", ".pcapng")
                  and "corrupt" not in p.parts)
    caps += sorted(p for p in (ROOT / "captures").glob("*.pcapng"))
    return [(p, p.with_suffix(".keys") if p.with_suffix(".keys").is_file() else None) for p in caps]


def _read_everything(monkeypatch) -> None:
    """The reference: every byte fed to the machines, every TLS fragment kept."""
    drive = streams._drive
    monkeypatch.setattr(streams, "_drive", lambda s, feed, gap, skippable, skip: drive(s, feed, gap, lambda d: 0, skip))
    monkeypatch.setattr(tls_session, "COUNTED", frozenset())


def test_stepping_over_bytes_changes_no_table(corpus, generated, monkeypatch):
    monkeypatch.setenv("TRACEVIZ_WORKERS", "1")
    inputs = _inputs(corpus) + [(generated, None)]
    fast = {p: traceviz.load(p, keylog=k) for p, k in inputs}
    with monkeypatch.context() as m:
        _read_everything(m)
        for p, k in inputs:
            assert_same(fast[p], traceviz.load(p, keylog=k), p.name)
    gen = fast[generated]
    assert len(gen.tls) > 100 and len(gen.requests) > 100      # the generated capture did exercise both


def test_stepping_over_bytes_passes_them_without_reading(generated, monkeypatch):
    """Application data and bodies are counted, not copied: far fewer bytes reach the machines
    (what does: heads, handshakes, h2c frames, and the segment in which each record or body ends)."""
    seen = {"fed": 0}
    drive = streams._drive

    def counting(s, feed, gap, skippable, skip):
        def fed(d, data, frame, ts):
            seen["fed"] += len(data)
            feed(d, data, frame, ts)
        drive(s, fed, gap, skippable, skip)

    monkeypatch.setenv("TRACEVIZ_WORKERS", "1")
    monkeypatch.setattr(streams, "_drive", counting)
    tl = traceviz.load(generated)
    decoded = tl.connections[tl.connections["app"].isin(["tls", "h2", "http/1.1"])]
    carried = int(decoded["bytes_c2s"].sum() + decoded["bytes_s2c"].sum())
    assert seen["fed"] < carried / 3


def _fork_anyway(monkeypatch, n: int) -> None:
    """``n`` processes, also while other threads of the test run are alive (the loader forks
    only when none is, and a whole test run leaves some: chart exports', reapers')."""
    from traceviz import _tuning
    monkeypatch.setattr(_tuning, "workers", lambda *a, **k: n)


def test_shares_in_forked_processes_give_what_one_process_gives(corpus, generated, monkeypatch):
    inputs = [(generated, None), (ROOT / "captures" / "browser-page-load.pcapng", None),
              (ROOT / "captures" / "h2-multiplexing.pcapng", ROOT / "captures" / "h2-multiplexing.keys"),
              (corpus / "pcap" / "http2" / "h2c-range-5conns__suricata-verify_http2-range.pcap", None)]
    # What HTTP carries (WebSocket over h1 and h2, gRPC in TLS, server-sent events) and DNS, in shares too.
    inputs += [(ROOT / "captures" / f"{name}.pcapng", None)
               for name in ("websocket-h1", "websocket-h2", "grpc-tls", "push-vs-poll", "journey-https")]
    # QUIC's machines run in a child of their own beside the shares (with keys: HTTP/3 too).
    inputs += [(ROOT / "captures" / f"{name}.pcapng", ROOT / "captures" / f"{name}.keys")
               for name in ("quic-h3", "quic-vs-h2-tcp")]
    for path, keys in inputs:
        monkeypatch.setenv("TRACEVIZ_WORKERS", "1")
        one = traceviz.load(path, keylog=keys)
        with monkeypatch.context() as m:
            _fork_anyway(m, 3)
            assert_same(one, traceviz.load(path, keylog=keys), f"{path.name} in 3 processes")


def test_keepalive_facts_and_proxy_causes_made_in_a_child_are_those_made_here(monkeypatch, tmp_path):
    """``finish`` makes the keep-alive facts in a child, and the proxy legs, races, 5xx causes
    and DNS lookups in another, while it merges the events, from the keep-alive and HTTP
    events merged apart (``capture._for_facts``): every table equals the one-process load's,
    and the one made of every event, on the captures whose facts those are."""
    from traceviz import _forks
    from traceviz.assemble import capture, proxy

    names = ("proxy-nginx-502-504", "proxy-haproxy-503-502", "proxy-keepalive-race", "proxy-haproxy-reuse-race",
             "proxy-nginx-upstream-500", "http1-idle-timeout", "http1-keepalive-vs-close", "tcp-keepalive",
             "connection-pool", "journey-https")
    parent = os.getpid()
    children = {proxy.with_keepalive_facts: tmp_path / "keepalive-child-ran", capture._request_facts: tmp_path / "legs-child-ran"}
    real_call = _forks._call

    def noting(work):
        if os.getpid() != parent and getattr(work, "func", None) in children:
            children[work.func].touch()
        return real_call(work)

    causes = probes = 0
    for name in names:
        path = ROOT / "captures" / f"{name}.pcapng"
        monkeypatch.setenv("TRACEVIZ_WORKERS", "1")
        one = traceviz.load(path)
        causes += int(one.requests["cause"].notna().sum())
        probes += int(one.connections["ka_probes"].fillna(0).sum())
        with monkeypatch.context() as m:
            m.setattr(capture, "_for_facts", lambda events: events)
            assert_same(one, traceviz.load(path), f"{name}, the facts read off every event")
        with monkeypatch.context() as m:
            m.setattr(_forks, "_call", noting)
            _fork_anyway(m, 2)
            assert_same(one, traceviz.load(path), f"{name}, the facts in a child")
    assert all(ran.exists() for ran in children.values())
    assert causes >= 5 and probes > 0       # the facts compared are there to compare


def test_a_quic_child_that_fails_is_redone_here(generated, monkeypatch, tmp_path):
    from traceviz import _forks
    monkeypatch.setenv("TRACEVIZ_WORKERS", "1")
    one = traceviz.load(generated)
    assert len(one.quic) > 10 and (one.events["layer"] == "quic").sum() > 100   # real QUIC, for the child below
    parent = os.getpid()

    def lost_in_the_child(work):
        assert os.getpid() != parent        # here it would be called only if nothing was forked
        (tmp_path / "child-ran").touch()
        raise MemoryError("the child ran out of memory")

    monkeypatch.setattr(_forks, "_call", lost_in_the_child)
    _fork_anyway(monkeypatch, 2)
    assert_same(one, traceviz.load(generated), "QUIC redone here after its child failed")
    assert (tmp_path / "child-ran").exists()


def _live_children() -> list[int]:
    """This process's children that are still running (not zombies waiting to be reaped)."""
    me, out = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _asleep(*args, **kwargs):
    """Work still running when a load stops, unless the load stops it."""
    import time
    time.sleep(120)


def _raising(stop: BaseException):
    def broken(*args, **kwargs):
        raise stop
    return broken


def _children_left_by(path, stop: BaseException, monkeypatch) -> set[int]:
    """The children a load of ``path`` that ``stop`` ends (forking all it can, under
    TRACEVIZ_DEBUG: a decoder bug is raised) leaves alive, once those it killed have exited."""
    import time
    monkeypatch.setenv("TRACEVIZ_DEBUG", "1")
    _fork_anyway(monkeypatch, 2)
    before = set(_live_children())
    with pytest.raises(type(stop), match="a decoder bug"):
        traceviz.load(path)
    left = set(_live_children()) - before
    for _ in range(50):
        if not left:
            break
        time.sleep(0.1)
        left = set(_live_children()) - before
    return left


class _Interrupted(BaseException):
    """What Ctrl-C is to a load: no ``Exception``, so no decoder-bug path catches it."""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked children are read off /proc")
@pytest.mark.parametrize("stop", [RuntimeError("a decoder bug"), _Interrupted("a decoder bug")])
def test_a_load_stopped_after_quic_was_forked_leaves_no_child_behind(generated, monkeypatch, stop):
    """QUIC's child is forked before the TCP streams are planned: a load that stops there (a
    decoder bug raised under TRACEVIZ_DEBUG, or an interrupt) stops the child too, rather
    than leave it waiting on a pipe nobody reads, holding the capture's memory."""
    from traceviz import loader

    monkeypatch.setattr(loader, "_quic_side", _asleep)
    monkeypatch.setattr(streams, "plan_streams", _raising(stop))
    assert _children_left_by(generated, stop, monkeypatch) == set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked children are read off /proc")
@pytest.mark.parametrize("stop", [RuntimeError("a decoder bug"), _Interrupted("a decoder bug")])
def test_a_load_stopped_after_the_facts_were_forked_leaves_no_child_behind(monkeypatch, stop):
    """The keep-alive facts and the requests' legs are forked before ``finish`` makes its
    other tables: a load that stops there stops both children too (or they would wait on
    pipes nobody reads, holding the tables' memory)."""
    from traceviz.assemble import capture, proxy

    monkeypatch.setattr(proxy, "with_keepalive_facts", _asleep)
    monkeypatch.setattr(capture, "_request_facts", _asleep)
    monkeypatch.setattr(capture, "_tls_table", _raising(stop))
    assert _children_left_by(ROOT / "captures" / "proxy-nginx-502-504.pcapng", stop, monkeypatch) == set()


def _tshark_requests(tshark, path) -> list[tuple[str, str]]:
    out = subprocess.run([tshark, "-r", str(path), "-Y", "http.request", "-T", "fields", "-e", "http.request.method",
                          "-e", "http.request.uri"], capture_output=True, text=True, timeout=120).stdout
    return [tuple(line.split("\t")) for line in out.splitlines()]


def _tshark_statuses(tshark, path) -> list[int]:
    out = subprocess.run([tshark, "-r", str(path), "-Y", "http.response", "-T", "fields", "-e", "http.response.code"],
                         capture_output=True, text=True, timeout=120).stdout
    return [int(v) for v in out.split()]


def test_long_request_lines_are_http_as_tshark_says(tmp_path, tshark):
    long_uri = "/collect?" + "&".join(f"p{i}=" + "x" * 40 for i in range(12))             # ~550 characters
    huge_uri = "/signed/" + "a" * 20000                                                 # past REQUEST_LINE_MAX
    req = "{method} {uri} HTTP/1.1\r\nHost: example.com\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    conns = {
        0: [("c2s", req.format(method="GET", uri=long_uri).encode()), ("s2c", ok)],
        # the request line split over two segments, the first one shorter than the sniffed bytes
        1: [("c2s", req.format(method="GET", uri=long_uri).encode()[:40]),
            ("c2s", req.format(method="GET", uri=long_uri).encode()[40:]), ("s2c", ok)],
        # no answer at all: the client's bytes alone must say HTTP
        2: [("c2s", req.format(method="POST", uri=long_uri).encode().replace(b"\r\n\r\n",
                                                                          b"\r\nContent-Length: 0\r\n\r\n"))],
        3: [("c2s", req.format(method="GET", uri=huge_uri).encode()), ("s2c", ok)],
        # not HTTP although it starts with capitals and a space
        4: [("c2s", b"HELLO " + b"z" * 100 + b" there\r\n"), ("s2c", b"WORLD\r\n")],
    }
    path = write_conversations(tmp_path / "long.pcap", conns, dport=80)
    tl = traceviz.load(path)
    rq = tl.requests.sort_values("conn")
    want = _tshark_requests(tshark, path)
    assert len(want) == 4
    got = [(m, u.split("example.com", 1)[1]) for m, u in zip(rq["method"], rq["url"])]
    assert got == want
    assert sorted(rq["status"].dropna().astype(int).tolist()) == sorted(_tshark_statuses(tshark, path))
    apps = tl.connections.set_index("conn")["app"]
    assert apps[[0, 1, 2, 3]].tolist() == ["http/1.1"] * 4 and apps[4] == "unknown"


def test_http_that_stops_is_said_once_naming_the_connection(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACEVIZ_DEBUG", "")
    # A server speaking HTTP to a client that does not: no request can be paired.
    conns = {0: [("c2s", b"\x00\x01binary hello\r\n"), ("s2c", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")]}
    path = write_conversations(tmp_path / "odd.pcap", conns, dport=80)
    tl = traceviz.load(path)
    notes = [w for w in tl.warnings if "connection 0" in w and "HTTP not decoded" in w]
    assert len(notes) == 1 and "binary hello" in notes[0]


def test_tables_asked_for_are_whole_and_the_rest_is_not_built(generated, monkeypatch):
    from traceviz.model import TableNotBuilt
    monkeypatch.setenv("TRACEVIZ_WORKERS", "1")
    full = traceviz.load(generated)
    runs = {"tls": 0}
    run_tls = streams._run_tls

    def counted(*a, **k):
        runs["tls"] += 1
        return run_tls(*a, **k)

    monkeypatch.setattr(streams, "_run_tls", counted)
    only = traceviz.load(generated, tables=["requests"])
    assert runs["tls"] == 0                              # no keys: no TLS session holds a request
    pd.testing.assert_frame_equal(only.requests, full.requests)
    assert only.skipped == frozenset(TABLES + ("quic", "streams")) - {"requests"}
    for name in ("tls", "events", "connections", "packets"):
        with pytest.raises(TableNotBuilt, match=name):
            getattr(only, name)
    tls_only = traceviz.load(generated, tables="tls")
    pd.testing.assert_frame_equal(tls_only.tls, full.tls)
    assert runs["tls"] == int((full.tls["transport"] != "quic").sum())     # QUIC's sessions: its own machines
    with pytest.raises(ValueError, match="requests"):
        traceviz.load(generated, tables=["request"])


@pytest.mark.parametrize("name", ["websocket-h1", "websocket-h2", "grpc-tls", "push-vs-poll", "journey-https",
                                  "http-caching"])
def test_a_table_alone_still_has_what_http_carried(name, monkeypatch):
    """WebSocket, gRPC and SSE events, gRPC and caching columns, DNS lookups: the same when their table
    is the only one asked for (the decoding it needs is planned for it)."""
    path = ROOT / "captures" / f"{name}.pcapng"
    full = traceviz.load(path)
    for table in ("events", "requests"):
        alone = traceviz.load(path, tables=[table])
        pd.testing.assert_frame_equal(getattr(alone, table), getattr(full, table), obj=f"{name}: {table} alone")
    alone = traceviz.load(path, tables=["connections"])          # app: websocket, dns...; keep-alive facts
    pd.testing.assert_frame_equal(alone.connections, full.connections, obj=f"{name}: connections alone")
    layers = set(full.events["layer"].astype("object"))
    assert layers & {"websocket", "grpc", "sse", "dns"} or "etag" in full.requests.columns, layers
