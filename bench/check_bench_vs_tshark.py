"""Frame-by-frame agreement of ``traceviz.load`` with tshark on a (big) capture.

    python bench/check_bench_vs_tshark.py [PATH]      # default /tmp/traceviz-bench-1000000.pcap

The bench measures speed; this checks that the speed did not cost facts.  For
every frame it compares what tshark shows with the ``packets`` table:
timestamp (to the microsecond), frame length, addresses, ports, TCP flags,
relative seq/ack (ack only where the ACK flag is set), calculated window,
tcp.len, ``tcp.stream`` / ``udp.stream``, and the set of ``tcp.analysis.*``
flags against our TCP events.  It also checks each connection's client and
server against the SYN tshark shows.  Prints the number of differences per
field and the first few of each; exit status 1 if there is any.

Both sides are read whole into columns (tshark's text through pandas'
``read_csv``), so a million frames take about as long as tshark does.

``--payload`` (for a capture with real payloads, ``gen_capture.py --payloads
real``) also compares what the payload tier says with tshark's dissection:
each TLS connection's SNI and offered versions (its first ClientHello), and
each HTTP/1.x connection's requests (method and URI, in order; retransmitted
frames left out) and response status codes.  tshark is told to reassemble
out-of-order segments (``tcp.reassemble_out_of_order``), as we do: by default
it drops a request whose first segment came after its second.  Where
tshark's HTTP dissector stops on a response it marks malformed, leaving no
``http.response.code`` field (a chunked body whose last CRLF is split across
two segments), the status is read from the status line in its Info column,
and the frames are named.  The TLS comparison counts TCP connections alone on
both sides (our ``tls`` table also holds QUIC's handshakes).

QUIC, per UDP stream (``udp.stream``, our ``connections.stream``): tshark
decrypts Initial packets without keys, so it shows each long-header packet's
version and the ClientHello inside.  The set of streams tshark dissects as QUIC
(a frame with a ``quic.header_form``) is compared with the connections of our
``quic`` table, and for each: ``version`` with the version of its first
long-header packet; ``sni`` and ``alpn_offered`` (a list) with its first
ClientHello's server name and ALPN list; ``packets`` with the number of QUIC
packets (coalesced ones counted one by one); ``bytes_c2s`` / ``bytes_s2c`` with
the UDP payload bytes each way, the client being the sender of that ClientHello
(of the stream's first QUIC frame when it has none).  Differences are named by
``udp.stream``.  tshark is told to try its heuristic dissectors first on UDP
(``udp.try_heuristic_first``), as we find QUIC by its content: by default the
client's port decides first, and a connection from, say, port 1900, 4784 or
47000 is dissected as SSDP, BFD or HCRT instead.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import traceviz  # noqa: E402
from traceviz.decode.tcp import analysis as ta  # noqa: E402

FIELDS = ["frame.number", "frame.time_epoch", "frame.len", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
          "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "tcp.flags", "tcp.seq", "tcp.ack",
          "tcp.window_size", "tcp.len", "tcp.stream", "udp.stream"] + list(ta.TSHARK_FIELDS)
PAYLOAD_FIELDS = ["tls.handshake.type", "tls.handshake.extensions_server_name",
                  "tls.handshake.extensions.supported_version", "http.request.method", "http.request.uri",
                  "http.response.code", "_ws.malformed", "_ws.col.Info", "udp.length", "quic.header_form",
                  "quic.version", "tls.handshake.extensions_alpn_str"]
SHOW = 5


def tshark_table(path: str, payload: bool = False) -> pd.DataFrame:
    fields = FIELDS + (PAYLOAD_FIELDS if payload else [])
    args = ["tshark", "-r", path, "-n", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;",
            "-E", "separator=/t"]
    if payload:   # tshark leaves out-of-order segments out of its reassembly unless told; and
        # QUIC is found by content (heuristics first), not by a client port another protocol owns
        args += ["-o", "tcp.reassemble_out_of_order:TRUE", "-o", "udp.try_heuristic_first:TRUE"]
    for f in fields:
        args += ["-e", f]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    df = pd.read_csv(proc.stdout, sep="\t", header=None, names=fields, dtype=str, keep_default_na=False,
                     na_filter=False, quoting=3, engine="c")
    proc.wait()
    for f in FIELDS:                       # one value per frame for the per-frame fields: the first
        if df[f].str.contains(";", regex=False).any():
            df[f] = df[f].str.split(";").str[0]
    return df


def as_int(col: pd.Series, base: int = 10) -> np.ndarray:
    """Integers, -1 where tshark printed nothing."""
    if base == 16:
        return np.array([int(v, 16) if v else -1 for v in col], dtype=np.int64)
    return pd.to_numeric(col.replace("", "-1")).to_numpy(dtype=np.int64)


def ours_int(col: pd.Series) -> np.ndarray:
    return col.astype("Int64").to_numpy(dtype=np.int64, na_value=-1)


def compare(path: str, payload: bool = False) -> int:
    t0 = time.perf_counter()
    tl = traceviz.load(path)
    t1 = time.perf_counter()
    ts = tshark_table(path, payload)
    t2 = time.perf_counter()
    pk, ev = tl.packets, tl.events
    print(f"{path}: traceviz {len(pk)} frames in {t1 - t0:.1f} s, tshark {len(ts)} frames in {t2 - t1:.1f} s")
    n = min(len(pk), len(ts))
    pk, ts = pk.iloc[:n].reset_index(drop=True), ts.iloc[:n].reset_index(drop=True)
    bad: dict[str, np.ndarray] = {}

    def check(name, mine, theirs, where=None):
        diff = np.asarray(mine) != np.asarray(theirs)
        if where is not None:
            diff &= where
        bad[name] = np.flatnonzero(diff)

    check("frame", pk["frame"].to_numpy(), as_int(ts["frame.number"]))
    their_us = np.array([int(a) * 1_000_000 + int((b + "000000")[:6]) for a, b in
                         (v.split(".") for v in ts["frame.time_epoch"])], dtype=np.int64)
    check("ts (us)", np.round(pk["ts"].to_numpy() * 1e6).astype(np.int64), their_us)
    check("wire_len", pk["wire_len"].to_numpy(), as_int(ts["frame.len"]))
    src = np.where(ts["ip.src"] != "", ts["ip.src"], ts["ipv6.src"])
    dst = np.where(ts["ip.dst"] != "", ts["ip.dst"], ts["ipv6.dst"])
    check("src", pk["src"].astype(object).fillna("").to_numpy(), src)
    check("dst", pk["dst"].astype(object).fillna("").to_numpy(), dst)
    is_tcp = ts["tcp.stream"].to_numpy() != ""
    is_udp = ts["udp.stream"].to_numpy() != ""
    sport = np.where(is_tcp, as_int(ts["tcp.srcport"]), as_int(ts["udp.srcport"]))
    dport = np.where(is_tcp, as_int(ts["tcp.dstport"]), as_int(ts["udp.dstport"]))
    check("sport", ours_int(pk["sport"]), sport, is_tcp | is_udp)
    check("dport", ours_int(pk["dport"]), dport, is_tcp | is_udp)
    flags = as_int(ts["tcp.flags"], 16)
    check("flags", ours_int(pk["flag_bits"]), flags, is_tcp)
    check("tcp.stream", ours_int(pk["conn"]), as_int(ts["tcp.stream"]), is_tcp)
    check("udp.stream", ours_int(pk["stream"]), as_int(ts["udp.stream"]), is_udp)
    check("transport", pk["transport"].astype(object).to_numpy(),
          np.where(is_tcp, "tcp", np.where(is_udp, "udp", pk["transport"].astype(object).to_numpy())))
    check("seq", ours_int(pk["seq"]), as_int(ts["tcp.seq"]), is_tcp)
    check("ack", ours_int(pk["ack"]), as_int(ts["tcp.ack"]), is_tcp & (flags & 0x10 != 0))
    check("win", ours_int(pk["win"]), as_int(ts["tcp.window_size"]), is_tcp)
    check("len", ours_int(pk["len"]), as_int(ts["tcp.len"]), is_tcp)

    bit_of = {kind: bit for bit, kind in ta.KINDS.items()}
    mine = np.zeros(n, dtype=np.int64)
    a = ev[ev["kind"].isin(list(bit_of))]
    rows = a["frame"].to_numpy(dtype=np.int64) - 1
    keep = rows < n
    np.bitwise_or.at(mine, rows[keep], a["kind"].map(bit_of).to_numpy(dtype=np.int64)[keep])
    # Wireshark sets tcp.analysis.retransmission on fast and spurious retransmissions too.
    mine[(mine & (ta.FAST_RETRANSMISSION | ta.SPURIOUS_RETRANSMISSION)) != 0] |= ta.RETRANSMISSION
    theirs = np.zeros(n, dtype=np.int64)
    for field, bit in ta.TSHARK_FIELDS.items():
        theirs[ts[field].to_numpy() != ""] |= bit
    check("tcp.analysis", mine, theirs, is_tcp)
    print(f"  tshark shows {int(is_tcp.sum())} TCP and {int(is_udp.sum())} UDP frames, "
          f"tcp.analysis flags on {int((theirs != 0).sum())}")

    # Client and server: the sender of each stream's first pure SYN, as tshark shows it.
    syn = np.flatnonzero(is_tcp & ((flags & 0x12) == 0x02))
    first = pd.Series(syn).groupby(as_int(ts["tcp.stream"])[syn]).first()
    conns = tl.connections.set_index("conn")

    def text(addr, port):
        return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"

    want_client = [text(src[i], sport[i]) for i in first.to_numpy()]
    want_server = [text(dst[i], dport[i]) for i in first.to_numpy()]
    got = conns.loc[first.index]
    bad["client"] = np.flatnonzero(got["client"].to_numpy() != np.array(want_client, dtype=object))
    bad["server"] = np.flatnonzero(got["server"].to_numpy() != np.array(want_server, dtype=object))

    if payload:
        bad.update(compare_payload(tl, ts, is_tcp, theirs))

    total = 0
    for name, where in bad.items():
        total += len(where)
        print(f"  {name:<20} {len(where):>8} differences")
        for i in where[:SHOW]:
            key = ("tcp.stream" if name in ("http requests", "http status codes") else
                   "udp.stream" if name.startswith("quic") else "row")
            print(f"      {key} {i}")
    print(f"frames compared: {n} (traceviz {len(tl.packets)}, tshark {len(ts)}); "
          f"connections with a SYN compared: {len(first)}; differences: {total}")
    if len(tl.packets) != len(ts):
        total += 1
    return total


def compare_payload(tl, ts: pd.DataFrame, is_tcp: np.ndarray, analysis: np.ndarray) -> dict[str, np.ndarray]:
    """TLS SNI and offered versions per connection, HTTP/1.x requests and statuses per connection."""
    stream = as_int(ts["tcp.stream"])
    fresh = is_tcp & ((analysis & ta.RETRANSMISSION) == 0)
    bad: dict[str, np.ndarray] = {}
    # TLS: the first ClientHello of each stream.
    hello = np.flatnonzero(fresh & ts["tls.handshake.type"].str.split(";").map(lambda t: "1" in t).to_numpy())
    first = pd.Series(hello).groupby(stream[hello]).first()
    sni = ts["tls.handshake.extensions_server_name"].to_numpy()[first.to_numpy()]
    theirs_sni = dict(zip(first.index, [v.split(";")[0] or None for v in sni]))
    tcp_conns = tl.connections.loc[tl.connections["transport"] == "tcp", "conn"]
    tls = tl.tls[tl.tls["conn"].isin(tcp_conns)].set_index("conn")      # not QUIC's handshakes
    conns = [c for c in theirs_sni if c in tls.index]
    mine_sni = [tls.at[c, "sni"] for c in conns]
    bad["tls sni"] = np.flatnonzero(np.array([a != theirs_sni[c] for a, c in zip(mine_sni, conns)], dtype=bool))
    bad["tls sessions"] = np.arange(abs(len(theirs_sni) - len(tls)))
    names = {"0x0304": "TLS 1.3", "0x0303": "TLS 1.2", "0x0302": "TLS 1.1", "0x0301": "TLS 1.0"}
    offered = ts["tls.handshake.extensions.supported_version"].to_numpy()[first.to_numpy()]
    theirs_v = dict(zip(first.index, offered))
    wrong = []
    for c in conns:
        v = theirs_v[c]
        if not v:
            continue
        want = [names.get(x, x) for x in v.split(";") if x in names]
        got = [x for x in (tls.at[c, "versions_offered"] or []) if x in names.values()]
        wrong.append(got != want)
    bad["tls versions offered"] = np.flatnonzero(np.array(wrong, dtype=bool))
    print(f"  TLS: {len(theirs_sni)} TCP streams with a ClientHello in tshark, {len(tls)} TCP sessions in ours")
    # HTTP/1.x: requests in order per stream, and response codes.
    rq = tl.requests[tl.requests["protocol"].astype(str).str.startswith("http/1")]
    ours = {int(c): list(zip(g["method"], g["url"])) for c, g in rq.groupby("conn")}
    reqs = np.flatnonzero(fresh & (ts["http.request.method"].to_numpy() != ""))
    theirs: dict[int, list] = {}
    for i in reqs.tolist():
        for m, u in zip(ts["http.request.method"].iat[i].split(";"), ts["http.request.uri"].iat[i].split(";")):
            theirs.setdefault(int(stream[i]), []).append((m, u))
    wrong = [c for c in theirs if c in ours and
             [(m, u) for m, u in theirs[c]] != [(m, "/" + url.split("/", 3)[3] if url.count("/") >= 3 else url)
                                                for m, url in ours[c]]]
    bad["http requests"] = np.array(wrong, dtype=np.int64)
    bad["http connections"] = np.arange(len(set(theirs) ^ set(ours)))
    codes = np.flatnonzero(is_tcp & (ts["http.response.code"].to_numpy() != ""))
    theirs_codes: dict[int, list[int]] = {}
    for i in codes.tolist():
        if int(stream[i]) in ours:
            theirs_codes.setdefault(int(stream[i]), []).extend(int(x) for x in ts["http.response.code"].iat[i].split(";"))
    for i, code in _cut_short(ts, is_tcp):
        if int(stream[i]) in ours:
            theirs_codes.setdefault(int(stream[i]), []).append(code)
    mine_codes = {int(c): sorted(int(x) for x in g["status"].dropna()) for c, g in rq.groupby("conn")}
    bad["http status codes"] = np.array(sorted(c for c in set(theirs_codes) | set(mine_codes)
                                               if sorted(theirs_codes.get(c, [])) != mine_codes.get(c, [])),
                                        dtype=np.int64)
    print(f"  HTTP/1.x: {sum(map(len, theirs.values()))} requests on {len(theirs)} streams in tshark, "
          f"{len(rq)} on {len(ours)} in ours")
    bad.update(compare_quic(tl, ts))
    return bad


def compare_quic(tl, ts: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per UDP stream tshark dissects as QUIC: that it is one of our QUIC connections, and its
    version, SNI, offered ALPN, QUIC packets and UDP payload bytes each way (module docstring)."""
    ustream = as_int(ts["udp.stream"])
    rows = np.flatnonzero((ustream >= 0) & (ts["quic.header_form"].to_numpy() != ""))
    q, s = ts.iloc[rows], ustream[rows]
    stream_of = tl.connections.set_index("conn")["stream"]
    ours = tl.quic.set_index(np.asarray(stream_of.loc[tl.quic["conn"]], dtype=np.int64))   # by udp.stream
    theirs = set(s.tolist())
    both = sorted(theirs & set(ours.index.tolist()))
    bad: dict[str, np.ndarray] = {"quic connections": np.array(sorted(theirs ^ set(ours.index.tolist())),
                                                               dtype=np.int64)}

    def differ(mine, want) -> np.ndarray:
        return np.array([c for c in both if mine(c) != want.get(c)], dtype=np.int64)

    # Version: the first value of the stream's first frame with a long-header packet.
    ver = q["quic.version"].to_numpy()
    has = ver != ""
    first_v = pd.Series(ver[has]).groupby(s[has]).first()
    theirs_v = {int(c): f"0x{int(v.split(';')[0], 16):08x}" for c, v in first_v.items()}
    bad["quic version"] = differ(lambda c: None if pd.isna(v := ours.at[c, "version"]) else str(v).lower(),
                                 theirs_v)
    # SNI and offered ALPN: the stream's first ClientHello (a coalesced Initial may carry more
    # than one handshake message, hence the lists).
    hello = q["tls.handshake.type"].str.split(";").map(lambda t: "1" in t).to_numpy()
    first_h = pd.Series(np.flatnonzero(hello)).groupby(s[hello]).first()
    sni = q["tls.handshake.extensions_server_name"].to_numpy()
    alpn = q["tls.handshake.extensions_alpn_str"].to_numpy()
    theirs_sni = {int(c): sni[i].split(";")[0] or None for c, i in first_h.items()}
    theirs_alpn = {int(c): [a for a in alpn[i].split(";") if a] for c, i in first_h.items()}
    bad["quic sni"] = differ(lambda c: None if pd.isna(v := ours.at[c, "sni"]) else v,
                             {c: theirs_sni.get(c) for c in both})
    bad["quic alpn offered"] = differ(lambda c: _as_list(ours.at[c, "alpn_offered"]),
                                      {c: theirs_alpn.get(c, []) for c in both})
    # QUIC packets, and UDP payload bytes each way; the client sent the first ClientHello.
    addr = np.where(q["ip.src"] != "", q["ip.src"], q["ipv6.src"])
    port = q["udp.srcport"].to_numpy()
    sender = np.array([f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in zip(addr, port)], dtype=object)
    starts = pd.Series(np.arange(len(q))).groupby(s).first()
    starts.update(first_h)
    client = dict(zip(starts.index.tolist(), sender[starts.to_numpy()]))
    c2s = sender == np.array([client[c] for c in s.tolist()], dtype=object)
    payload = as_int(q["udp.length"].str.split(";").str[0]) - 8
    per = pd.DataFrame({"s": s, "n": q["quic.header_form"].str.count(";").to_numpy() + 1,
                        "c2s": np.where(c2s, payload, 0), "s2c": np.where(c2s, 0, payload)}).groupby("s").sum()
    theirs_n = {int(c): int(v) for c, v in per["n"].items()}
    theirs_b = {int(c): (int(a), int(b)) for c, a, b in zip(per.index, per["c2s"], per["s2c"])}
    bad["quic packets"] = differ(lambda c: _int(ours.at[c, "packets"]), theirs_n)
    bad["quic bytes"] = differ(lambda c: (_int(ours.at[c, "bytes_c2s"]), _int(ours.at[c, "bytes_s2c"])), theirs_b)
    print(f"  QUIC: {len(theirs)} streams in tshark ({len(first_h)} with a ClientHello), "
          f"{len(ours)} connections in ours")
    return bad


def _as_list(v) -> list[str]:
    """Our ``alpn_offered``: a list (None when no ClientHello was read); text split on commas."""
    if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)):
        return []
    if isinstance(v, str):
        return [a.strip() for a in v.split(",") if a.strip()]
    return [str(a) for a in v]


def _int(v) -> int | None:
    return None if pd.isna(v) else int(v)


_STATUS_LINE = re.compile(r"HTTP/\d\.\d (\d{3}) ")


def _cut_short(ts: pd.DataFrame, is_tcp: np.ndarray) -> list[tuple[int, int]]:
    """(row, status) of the responses tshark read but left out of its fields: its HTTP
    dissector stops with "Malformed Packet" on a chunked body whose last CRLF is split across
    two segments, and the tree then holds no ``http.response.code``, although the Info column
    shows the status line it read.  Said once, with the frames."""
    cut = np.flatnonzero(is_tcp & (ts["_ws.malformed"].to_numpy() != "") & (ts["http.response.code"].to_numpy() == ""))
    out = [(i, int(m.group(1))) for i in cut.tolist() if (m := _STATUS_LINE.match(ts["_ws.col.Info"].iat[i]))]
    if out:
        frames = ", ".join(ts["frame.number"].iat[i] for i, _ in out[:SHOW])
        print(f"  HTTP/1.x: {len(out)} response(s) tshark marked malformed with no http.response.code field; "
              f"their status read from its Info column (frames {frames}{', ...' if len(out) > SHOW else ''})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?", default="/tmp/traceviz-bench-1000000.pcap")
    ap.add_argument("--payload", action="store_true", help="also compare TLS, QUIC and HTTP/1.x facts")
    a = ap.parse_args()
    if not shutil.which("tshark"):
        sys.exit("tshark is not installed")
    sys.exit(1 if compare(a.path, a.payload) else 0)


if __name__ == "__main__":
    main()
