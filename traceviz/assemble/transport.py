"""The transport tier's columns as the ``packets``, ``connections`` and ``events`` tables.

Text columns are categoricals built from integer codes: a million rows of
Python strings would cost more than the whole TCP analysis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from traceviz.model import TCP_FLAG_NAMES, conform

_FLAG_TEXT = [",".join(name for b, name in enumerate(TCP_FLAG_NAMES) if v & (1 << b)) for v in range(512)]
_TRANSPORT_TEXT = ["tcp", "udp", "icmp", "icmpv6", "other", "none"]
_TRANSPORT_CODE = np.full(256, _TRANSPORT_TEXT.index("other"), dtype=np.int8)
for _p, _name in {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}.items():
    _TRANSPORT_CODE[_p] = _TRANSPORT_TEXT.index(_name)

# Connection columns that are integers with "unknown" marked by -1 (or by a mask_<name> array).
_UNKNOWN_IS_NEGATIVE = ("mss_client", "mss_server", "wscale_client", "wscale_server",
                        "syn_frame", "synack_frame", "ack_frame")


def tables(t) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(packets, connections, events) for a ``decode.tcp.connections.Transport``."""
    return packets(t), connections(t), events(t)


def _obj(values) -> pd.Series:
    """An object column as is (pandas 3 would otherwise infer, then conform() convert back)."""
    return pd.Series(values, dtype=object)


def _masked(values: np.ndarray, mask: np.ndarray) -> pd.arrays.IntegerArray:
    """Int64 with NA where ``mask`` is False, over ``values`` itself (no copy when already int64).

    What lies under the mask is never read: pandas' masked arrays ignore it.
    """
    return pd.arrays.IntegerArray(np.asarray(values).astype(np.int64, copy=False), ~np.asarray(mask, dtype=bool))


def _categories(codes: np.ndarray, names: list) -> pd.Categorical:
    """A text column from integer codes (-1: missing) without a Python string per row.

    Only the names that occur become categories, so value_counts() and
    groupby() list what is there, not every name that could be.
    """
    codes = np.asarray(codes).astype(np.int64, copy=False)
    valid = codes >= 0
    used = np.flatnonzero(np.bincount(codes[valid], minlength=len(names)))
    remap = np.full(len(names) + 1, -1, dtype=np.int32)   # the last slot maps -1 to -1
    remap[used] = np.arange(len(used), dtype=np.int32)
    return pd.Categorical.from_codes(remap[codes], categories=[names[i] for i in used])


def _address_column(codes: np.ndarray, addrs: list, unique: bool):
    """Address text per row, as categories over the capture's address table (if its texts are unique)."""
    if unique:
        return _categories(codes, addrs)
    return _obj(np.array(list(addrs) + [None], dtype=object)[codes])   # -1 -> None


def _measured(t, n: int) -> dict:
    """Bytes in flight, RTT samples and SACK blocks, when the transport tier measured them
    (else conform() leaves the columns NA)."""
    m = t.measurements()
    sack = np.full(n, None, dtype=object)
    for row, blocks in m["sack"].items():
        sack[row] = blocks
    return {"bytes_in_flight": _masked(m["bytes_in_flight"], m["bytes_in_flight"] >= 0), "ack_rtt": m["ack_rtt"],
            "rtt_ambiguous": m["rtt_ambiguous"], "ts_rtt": m["ts_rtt"], "sack": sack}


def packets(t) -> pd.DataFrame:
    idx = t.idx
    addrs = list(idx.addrs)
    proto = np.asarray(idx.proto)
    ipver = np.asarray(idx.ipver)
    sport = np.asarray(idx.sport).astype(np.int64, copy=False)
    dport = np.asarray(idx.dport).astype(np.int64, copy=False)
    flags = np.asarray(idx.tcp_flags).astype(np.int64, copy=False)
    transport = np.where(ipver == 0, _TRANSPORT_TEXT.index("none"), _TRANSPORT_CODE[proto & 0xFF])
    plen = np.asarray(idx.payload_len).astype(np.int64, copy=False)
    in_tcp = t.in_tcp
    unique = pd.Index(addrs).is_unique
    df = pd.DataFrame({
        "frame": np.asarray(idx.frame).astype(np.int64, copy=False),
        "ts": np.asarray(idx.ts).astype(np.float64, copy=False),
        "src": _address_column(idx.src, addrs, unique),
        "dst": _address_column(idx.dst, addrs, unique),
        "sport": _masked(sport, sport >= 0),
        "dport": _masked(dport, dport >= 0),
        "transport": _categories(transport, _TRANSPORT_TEXT),
        "conn": _masked(t.conn, t.in_conn),
        "dir": _categories(np.where(t.in_conn, np.where(t.c2s, 0, 1), -1), ["c2s", "s2c"]),
        "flags": _categories(np.where(in_tcp, flags & 0x1FF, -1), _FLAG_TEXT),
        "seq": _masked(t.rel_seq, in_tcp),
        "ack": _masked(t.rel_ack, t.has_ack),
        "win": _masked(t.win, in_tcp),
        "len": _masked(plen, (t.in_conn | in_tcp) & (plen >= 0)),
        "wire_len": np.asarray(idx.wire_len).astype(np.int64, copy=False),
        "iface": _iface(idx),
        **_files(idx),
        **(_measured(t, len(plen)) if t.measured is not None else {}),
        "payload_off": np.asarray(idx.payload_off).astype(np.int64, copy=False),
        "payload_cap": np.asarray(idx.payload_cap).astype(np.int64, copy=False),
        "ipver": ipver.astype(np.int64),
        "stream": _masked(t.stream, t.stream >= 0),
        "seq_raw": _masked(idx.seq, in_tcp),
        "ack_raw": _masked(idx.ack, in_tcp),
        "flag_bits": _masked(flags, in_tcp),
    }, copy=False)
    return conform("packets", df)


def _iface(idx) -> np.ndarray:
    """Each frame's capture interface (0 where the index was built without a capture)."""
    iface = getattr(getattr(idx, "capture", None), "iface", None)
    n = len(idx.frame)
    return np.asarray(iface).astype(np.int64, copy=False) if iface is not None and len(iface) == n \
        else np.zeros(n, dtype=np.int64)


def _files(idx) -> dict:
    """``file`` and ``file_frame``: the file each frame came from (a category per file) and
    its number there; one file's frames are numbered as they are."""
    cap = getattr(idx, "capture", None)
    frame = np.asarray(idx.frame).astype(np.int64, copy=False)
    files = getattr(cap, "files", None)
    if files is not None and len(files.code) == len(frame):
        return {"file": pd.Categorical.from_codes(files.code, categories=files.names),
                "file_frame": np.asarray(files.frame, dtype=np.int64)}
    name = str(getattr(cap, "path", "") or "")
    return {"file": pd.Categorical.from_codes(np.zeros(len(frame), dtype=np.int8), categories=[name]),
            "file_frame": frame}


def connections(t) -> pd.DataFrame:
    cols = dict(t.connections)
    out = {}
    for name, values in cols.items():
        if name.startswith("mask_"):
            continue
        if name in _UNKNOWN_IS_NEGATIVE:
            values = _masked(values, values >= 0)
        elif "mask_" + name in cols:
            values = pd.array(np.asarray(values, dtype=bool), dtype="boolean")
            values[~cols["mask_" + name]] = pd.NA
        elif values.dtype == object:
            values = _obj(values)
        out[name] = values
    if "first_frame" in out and "iface" not in out and len(out["first_frame"]):
        out["iface"] = _iface(t.idx)[np.asarray(out["first_frame"], dtype=np.int64) - 1]
    return conform("connections", pd.DataFrame(out, copy=False))


def events(t) -> pd.DataFrame:
    ev = t.events
    if not ev:
        return conform("events", pd.DataFrame())
    df = pd.DataFrame({k: (_obj(v) if v.dtype == object else v) for k, v in ev.items()}, copy=False)
    df["layer"] = _obj(np.full(len(df), "tcp", dtype=object))
    return conform("events", df)


def turn_around(tables: tuple, conns: list[int]) -> tuple:
    """(packets, connections, events) with the UDP flows ``conns`` turned around: what
    ``decode.quic.streams.turn_around`` does to the transport, for tables made before QUIC's
    hellos were read (the loader reads them beside the TCP payload tier)."""
    from traceviz.decode.quic.streams import PAIRS
    packets, connections, events = tables
    if not conns:
        return tables
    at = packets["conn"].isin(conns).to_numpy(dtype=bool)
    if at.any():
        d = packets["dir"].astype(object).to_numpy()
        codes = np.where(d == "c2s", 0, np.where(d == "s2c", 1, -1))
        codes[at] = 1 - codes[at]
        packets = packets.assign(dir=_categories(codes, ["c2s", "s2c"]))    # as ``packets`` makes it
    rows = np.flatnonzero(connections["conn"].isin(conns).to_numpy(dtype=bool))
    if len(rows):
        connections = connections.copy()
        for a, b in PAIRS:
            if a in connections.columns and b in connections.columns:
                ia, ib = connections.columns.get_loc(a), connections.columns.get_loc(b)
                va, vb = connections.iloc[rows, ia].array.copy(), connections.iloc[rows, ib].array.copy()
                connections.iloc[rows, ia], connections.iloc[rows, ib] = vb, va
        if "client_by" in connections.columns:
            connections.iloc[rows, connections.columns.get_loc("client_by")] = "quic"
    return packets, connections, events
