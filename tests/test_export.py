"""``traceviz export``: the partitioned dataset, its numbering, the Dask engine, SQL and recipes over it.

Ground truth:
- a capture cut into partitions by connection and put back together must be
  the capture ``traceviz.load`` reads whole (itself checked against tshark
  by the TCP, TLS, HTTP and QUIC tests), whatever the partitions: frame,
  connection (``tcp.stream``), stream and request numbers renumbered as the
  whole capture's; only the facts that tie one connection to another
  (proxy legs, idle siblings) are found within a partition, as documented;
- ``conn`` and ``stream`` per frame are also checked against tshark here;
- the Dask engine and the local engine write the same dataset, file for file,
  on every corpus capture (one LocalCluster of two worker processes for the module);
- SQL answers are the ones pandas gives on the whole capture's tables.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import traceviz
from bundled import CAPTURES
from conftest import CORPUS
from traceviz.assemble.dataset import open_dataset
from traceviz.assemble.export import export
from traceviz.errors import InputError

TABLES = ("packets", "connections", "events", "requests", "tls", "quic", "streams")
# Facts that tie one connection to another: found within a partition only (documented).
ACROSS = {"connections": {"idle_sibling"},
          "requests": {"leg", "parent", "cause", "cause_detail", "cause_frames", "matched_by", "connect_attempts"}}
PACKETS_ONLY_IN_MEMORY = {"payload_off"}      # an offset into the bytes read: not exported


def keys_of(path: Path) -> Path | None:
    k = path.with_suffix(".keys")
    return k if k.exists() else None


def plain(v):
    if isinstance(v, (list, tuple, np.ndarray)):
        return [plain(x) for x in v]
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    return v


def column(df: pd.DataFrame, c: str) -> list:
    return [plain(v) for v in df[c].astype(object).tolist()]


def same_tables(tl, ds, skip: dict | None = None) -> list:
    """Where the dataset's tables differ from the Timeline's (empty: nowhere)."""
    out = []
    for name in TABLES:
        a, b = getattr(tl, name), getattr(ds, name)
        if len(a) != len(b):
            out.append((name, "rows", len(a), len(b)))
            continue
        for c in a.columns:
            if c in (skip or {}).get(name, ()) or (name == "packets" and c in PACKETS_ONLY_IN_MEMORY):
                continue
            if c not in b.columns:
                out.append((name, c, "missing"))
            elif column(a, c) != column(b, c):
                out.append((name, c))
    return out


# A few captures for the numbering: TCP with retransmitted and refused SYNs, HTTP/1 across many connections,
# HTTP/2 with its streams, TLS decrypted with a key log, QUIC (UDP flows after TCP), a proxy's two legs.
NUMBERING = [CAPTURES / "tcp-handshakes.pcapng", CAPTURES / "http1-six-connections.pcapng",
             CAPTURES / "h2-multiplexing.pcapng", CAPTURES / "quic-vs-h2-tcp.pcapng",
             CAPTURES / "proxy-nginx-502-504.pcapng",
             CORPUS / "pcap/tcp/syn-retransmit__suricata-verify_bug-4376.pcap",
             CORPUS / "pcap/quic/quic-draft29-dsb__pcap2qlog_ngtcp2-29-dsb.pcapng",
             CORPUS / "pcap/http2/h2c-range-5conns__suricata-verify_http2-range.pcap"]


@pytest.mark.parametrize("path", NUMBERING, ids=lambda p: p.name)
def test_partitions_put_back_together_are_the_whole_capture(path, tmp_path):
    tl = traceviz.load(path, keylog=keys_of(path))
    m = export([path], tmp_path / "ds", partitions=3, keylog=keys_of(path))
    ds = open_dataset(tmp_path / "ds")
    used = len(m["partition_rows"])
    assert used > 1 or len(tl.connections) < 3            # the connections really were spread
    assert same_tables(tl, ds, ACROSS) == []
    assert {name: m["tables"][name]["rows"] for name in TABLES} == {name: len(getattr(tl, name)) for name in TABLES}


@pytest.mark.parametrize("path", NUMBERING[3:5], ids=lambda p: p.name)
def test_one_partition_is_the_whole_capture_to_the_last_column(path, tmp_path):
    tl = traceviz.load(path, keylog=keys_of(path))
    export([path], tmp_path / "ds", partitions=1, keylog=keys_of(path))
    ds = open_dataset(tmp_path / "ds")
    assert same_tables(tl, ds) == []
    assert not any("partitions only" in w for w in ds.warnings)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """20k packets of interleaved TCP connections and UDP flows (bench/gen_capture.py)."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from gen_capture import generate
    path = tmp_path_factory.mktemp("gen") / "gen.pcap"
    generate(str(path), 20_000, seed=7)
    return path


@pytest.mark.parametrize("which", ["generated", "quic-vs-h2-tcp"])
def test_conn_is_tcp_stream_over_the_whole_input(which, generated, tmp_path, tshark):
    """Per frame, against tshark on the same file: tcp.stream / udp.stream after partitioning."""
    path = generated if which == "generated" else CAPTURES / f"{which}.pcapng"
    export([path], tmp_path / "ds", partitions=4, chunk=1 << 20)
    pk = open_dataset(tmp_path / "ds").packets.set_index("frame")
    out = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "tcp.stream",
                          "-e", "udp.stream"], capture_output=True, text=True, check=True).stdout
    n_tcp = int(pk.loc[pk["transport"] == "tcp", "conn"].max()) + 1
    checked = 0
    for line in out.splitlines():
        frame, tcp, udp = line.split("\t")
        if tcp:
            assert int(pk.at[int(frame), "conn"]) == int(tcp) == int(pk.at[int(frame), "stream"])
            checked += 1
        elif udp:
            assert int(pk.at[int(frame), "stream"]) == int(udp)
            assert int(pk.at[int(frame), "conn"]) == int(udp) + n_tcp
            checked += 1
    assert checked == len(pk)


def test_a_folder_of_rotated_files_exported(tmp_path):
    """Rotated files, partitioned: the same tables as the folder read whole (itself tested against tshark)."""
    import shutil
    if not shutil.which("editcap"):
        pytest.skip("editcap is not installed")
    folder = tmp_path / "rotated"
    folder.mkdir()
    subprocess.run(["editcap", "-c", "22", str(CAPTURES / "http1-keepalive-vs-close.pcapng"),
                    str(folder / "ka.pcapng")], check=True, capture_output=True)
    m = export([folder], tmp_path / "ds", partitions=3, chunk=4096)
    ds = open_dataset(tmp_path / "ds")
    assert len(m["files"]) == 8 and [f["file"] for f in m["files"]] == sorted(str(p) for p in folder.iterdir())
    assert sum(f["frames"] for f in m["files"]) == m["frames"] == len(ds.packets)
    assert same_tables(traceviz.load(folder), ds, ACROSS) == []


# -- the Dask engine -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    # Two worker processes (the tasks and their results cross process boundaries, as on a real
    # cluster), on the loopback (its web server on a free port): started once for the module.
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


CORPUS_FILES = sorted(p for p in CORPUS.glob("pcap/**/*") if p.suffix in (".pcap", ".pcapng"))


def dataset_files(folder: Path) -> dict:
    """Every table file of a dataset, read as Arrow, by its path in the folder; and the manifest's facts."""
    import pyarrow.parquet as pq
    files = {str(p.relative_to(folder)): pq.read_table(p) for p in sorted(folder.glob("*/part=*/*.parquet"))}
    manifest = json.loads((folder / "manifest.json").read_text())
    for k in ("engine", "seconds", "created"):
        manifest.pop(k)
    return {"files": files, "manifest": manifest}


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_dask_writes_what_one_process_writes(path, tmp_path, dask_client):
    args = dict(partitions=2, keylog=keys_of(path))
    try:
        export([path], tmp_path / "one", **args)
    except InputError as exc:
        with pytest.raises(InputError) as caught:
            export([path], tmp_path / "dask", engine="dask", scheduler=dask_client, **args)
        assert str(caught.value) == str(exc)
        return
    export([path], tmp_path / "dask", engine="dask", scheduler=dask_client, **args)
    one, dask = dataset_files(tmp_path / "one"), dataset_files(tmp_path / "dask")
    assert one["manifest"] == dask["manifest"]
    assert one["files"].keys() == dask["files"].keys() and one["files"]
    for name, table in one["files"].items():
        assert table.equals(dask["files"][name]), name


def test_the_dask_engine_on_its_own_local_cluster(tmp_path, tv):
    """--engine dask without --scheduler starts (and stops) a LocalCluster; --scheduler without it is refused."""
    path = CAPTURES / "tcp-handshakes.pcapng"
    code, out, err = tv("export", path, "-o", tmp_path / "ds", "--engine", "dask", "--partitions", "2", "--json")
    assert code == 0, err
    facts = json.loads(out)
    assert facts["engine"] == "dask" and facts["partitions"] == 2 and facts["connections"] == 6
    code, out, err = tv("export", path, "-o", tmp_path / "other", "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2 and "for --engine dask" in err


# -- SQL, and the dataset as a timeline --------------------------------------------------------------

def test_a_bundled_capture_is_exported_with_its_own_key_log(tmp_path):
    """As ``traceviz.load`` reads a bundled capture decrypted without --keylog, so does export."""
    path = CAPTURES / "h2-multiplexing.pcapng"
    tl = traceviz.load(path)
    assert tl.source.detail.get("bundled_keylog") and len(tl.streams)     # decrypted: its HTTP/2 streams
    export([path], tmp_path / "ds", partitions=1)
    assert same_tables(tl, open_dataset(tmp_path / "ds")) == []


@pytest.fixture(scope="module")
def keepalive(tmp_path_factory):
    """(the Timeline, a 1-partition dataset, a 3-partition dataset) of a capture with HTTP and odd handshakes."""
    path = CAPTURES / "http1-keepalive-vs-close.pcapng"
    root = tmp_path_factory.mktemp("ka")
    export([path], root / "one", partitions=1)
    export([path], root / "three", partitions=3)
    return traceviz.load(path), open_dataset(root / "one"), open_dataset(root / "three")


def test_sql_over_the_dataset(keepalive, tv):
    tl, _, ds = keepalive
    got = ds.sql("select server, count(*) as n, sum(bytes_s2c) as down from connections group by 1 order by 1")
    want = tl.connections.groupby("server").agg(n=("conn", "size"), down=("bytes_s2c", "sum")).reset_index()
    assert got["server"].tolist() == want["server"].tolist()
    assert got["n"].tolist() == want["n"].tolist() and got["down"].tolist() == want["down"].tolist()
    # A join across tables, and the partition column.
    got = ds.sql("select c.conn, count(*) from packets p join connections c using (conn) group by 1 order by 1")
    assert got.iloc[:, 1].tolist() == tl.packets.groupby("conn").size().sort_index().tolist()
    assert set(ds.sql("select distinct part from packets")["part"]) <= {0, 1, 2}
    code, out, err = tv("sql", ds.folder, "select method, status, count(*) as n from requests group by 1, 2 "
                                          "order by 1, 2", "--json")
    assert code == 0, err
    rows = json.loads(out)
    want = tl.requests.groupby(["method", "status"]).size()
    assert [(r["method"], r["status"], r["n"]) for r in rows] == [(m, s, n) for (m, s), n in want.items()]
    code, out, err = tv("sql", ds.folder, "select nonsense from nowhere")
    assert code == 2 and "SQL:" in err and "\n" == err[-1] and err.count("\n") == 1
    code, out, err = tv("sql", CAPTURES, "select 1")
    assert code == 2 and "not a traceviz dataset" in err


@pytest.mark.parametrize("recipe", ["handshakes", "latency", "keepalive", "proxy"])
def test_recipes_run_over_a_dataset_as_over_the_timeline(recipe, keepalive):
    tl, one, three = keepalive
    want = traceviz.run(recipe, tl)
    datasets = [one] if recipe in ("keepalive", "proxy") else [one, three]   # they tie connections together
    for ds in datasets:
        got = traceviz.run(recipe, ds)
        assert got.answer == want.answer
        assert len(got.rows) == len(want.rows)
        for c in want.rows.columns:
            assert column(got.rows, c) == column(want.rows, c), c
        for name in got.figures:                # figures read only the packets they draw
            assert got.figure(name) is not None


def test_a_packets_table_too_big_is_refused_but_recipes_read_what_they_need(keepalive, monkeypatch, tv):
    tl, one, _ = keepalive
    monkeypatch.setenv("TRACEVIZ_DATASET_ROWS", "10")
    ds = open_dataset(one.folder)
    with pytest.raises(InputError, match="more than 10 to read at once"):
        ds.packets
    unanswered = tl.connections.loc[tl.connections["close"] == "unanswered", "conn"].tolist()
    assert column(ds.packets_of(unanswered), "frame") == column(tl.packets_of(unanswered), "frame")
    assert traceviz.run("handshakes", ds).answer == traceviz.run("handshakes", tl).answer
    code, out, err = tv("handshakes", one.folder, "--json")
    assert code == 0, err
    code, out, err = tv("info", one.folder)
    assert code == 2 and "TRACEVIZ_DATASET_ROWS" in err


def test_the_manifest(keepalive):
    tl, _, ds = keepalive
    m = ds.manifest
    assert m["traceviz_dataset"] == 1 and m["partitions"] == 3
    assert m["frames"] == len(tl.packets) == sum(f["frames"] for f in m["files"])
    assert {name: m["tables"][name]["rows"] for name in TABLES} == {name: len(getattr(tl, name)) for name in TABLES}
    assert sum(rows.get("packets", 0) for rows in m["partition_rows"].values()) == len(tl.packets)
    assert any("partitions only" in w for w in ds.warnings)      # HTTP across 3 partitions: said
    assert sorted(p.name for p in ds.folder.iterdir()) == ["connections", "events", "manifest.json", "packets",
                                                           "requests"]


def test_key_material_stays_out_of_the_dataset(tmp_path):
    path = CORPUS / "pcap/quic/quic-draft29-dsb__pcap2qlog_ngtcp2-29-dsb.pcapng"
    tl = traceviz.load(path)
    m = export([path], tmp_path / "ds", partitions=2)
    assert m["decryption"]["embedded_secrets_blocks"] >= 1
    assert m["decryption"]["sessions_decrypted"] == tl.decryption["sessions_decrypted"]
    text = (tmp_path / "ds" / "manifest.json").read_text()
    assert "SECRET" not in text and "secrets\"" not in text
    assert ds_quic_decrypted(tmp_path / "ds") == int(tl.quic["decrypted"].fillna(False).sum())


def ds_quic_decrypted(folder) -> int:
    return int(open_dataset(folder).quic["decrypted"].fillna(False).sum())


def test_export_refuses_what_it_cannot_do(tmp_path, tv):
    path = CAPTURES / "tcp-handshakes.pcapng"
    code, out, err = tv("export", path, "-o", tmp_path / "a", "--engine", "spark")
    assert code == 2 and "choose local or dask" in err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mine.txt").write_text("keep me")
    code, out, err = tv("export", path, "-o", tmp_path / "b")
    assert code == 2 and "other files" in err and (tmp_path / "b" / "mine.txt").exists()
    assert tv("export", path, "-o", tmp_path / "c")[0] == 0
    code, out, err = tv("export", path, "-o", tmp_path / "c")
    assert code == 2 and "--overwrite" in err
    code, out, err = tv("export", CAPTURES / "tls12-rsa.pcapng", "-o", tmp_path / "c", "--overwrite", "--json")
    assert code == 0 and json.loads(out)["packets"] == len(traceviz.load(CAPTURES / "tls12-rsa.pcapng").packets)
    code, out, err = tv("export", path, "-o", tmp_path / "d", "--partitions", "0")
    assert code == 2 and "at least 1" in err
    code, out, err = tv("export", tmp_path / "missing.pcap", "-o", tmp_path / "e")
    assert code == 2 and "missing.pcap" in err
