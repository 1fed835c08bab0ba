"""``traceviz follow`` against ``tshark -q -z follow,...``, byte for byte.

TCP in ascii and hex on a sample of corpus and bundled connections (in
order, out of order, retransmitted, IPv6, a capture that starts with the
SYN-ACK), UDP, TLS decrypted with the bundled key log (tshark's follow,tls,
whose second node it prints as ":0"), QUIC streams decrypted (follow,quic),
and a hole filled late.  An HTTP/2
stream's DATA must add up to what tshark decodes for that stream.
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import CORPUS, ROOT
from tcpgen import Seg, handshake, write
from traceviz.cli.follow import render
from traceviz.errors import InputError
from traceviz.loader import follow

TCP = [("pcap/http1/simple-get-403__arkime_http-simple-get.pcap", 0),
       ("pcap/http1/keepalive-retrans__arkime_wireshark-retrans.pcap", 0),
       ("pcap/tcp/syn-retransmit__suricata-verify_bug-4376.pcap", 0),
       ("pcap/tcp/handshake-reorder__zeek.pcap", 0),
       ("pcap/ipv6/http-over-ipv6__arkime_v6-http.pcap", 0),
       ("pcap/http2/h2c-range-5conns__suricata-verify_http2-range.pcap", 3),
       ("pcap/tls/tls13-curl__arkime_curl-enabled-tls13.pcap", 0),
       ("../../captures/proxy-keepalive-race.pcapng", 5)]


def tshark_follow(tshark, path, spec, *options) -> str:
    out = subprocess.run([tshark, "-r", str(path), *options, "-q", "-z", f"follow,{spec}"], capture_output=True,
                         timeout=120).stdout
    return out.decode("latin-1")      # bytes as they are: CR LF stays CR LF


@pytest.mark.parametrize("name, conn", TCP, ids=[n.split("/")[-1] for n, _ in TCP])
@pytest.mark.parametrize("fmt", ["ascii", "hex"])
def test_tcp_as_tshark_prints_it(name, conn, fmt, tshark):
    path = (CORPUS / name).resolve()
    ours = render(follow(path, conn, decrypt=False), fmt)
    assert ours == tshark_follow(tshark, path, f"tcp,{fmt},{conn}")


def test_udp(tshark):
    path = ROOT / "captures" / "quic-h3.pcapng"
    f = follow(path, 0)
    assert f.kind == "udp" and f.flow == 0
    assert render(f, "hex") == tshark_follow(tshark, path, "udp,hex,0")


@pytest.mark.parametrize("stream", [0, 3, 4])        # a request stream, the server's control stream, another request
@pytest.mark.parametrize("fmt", ["ascii", "hex"])
def test_quic_stream_decrypted(stream, fmt, tshark):
    path, keys = ROOT / "captures" / "quic-h3.pcapng", ROOT / "captures" / "quic-h3.keys"
    f = follow(path, 0, keylog=keys, stream=stream)
    assert f.kind == "quic" and f.chunks
    assert render(f, fmt) == tshark_follow(tshark, path, f"quic,{fmt},0,{stream}", "-o", f"tls.keylog_file:{keys}")


def test_quic_stream_without_keys_says_so(tmp_path):
    import dpkt
    bare = tmp_path / "quic.pcap"             # the packets as a pcap: without the secrets the pcapng carries
    with open(ROOT / "captures" / "quic-h3.pcapng", "rb") as src, open(bare, "wb") as out:
        writer = dpkt.pcap.Writer(out, linktype=dpkt.pcap.DLT_EN10MB, nano=True)
        for ts, frame in dpkt.pcapng.Reader(src):
            writer.writepkt(frame, ts)
    f = follow(bare, 0, stream=0)
    assert not f.chunks and any("--keylog" in n for n in f.notes)


def test_tls_decrypted(tshark):
    path, keys = ROOT / "captures" / "tls12-rsa.pcapng", ROOT / "captures" / "tls12-rsa.keys"
    f = follow(path, 0, keylog=keys)
    assert f.kind == "tls"
    theirs = tshark_follow(tshark, path, "tls,ascii,0", "-o", f"tls.keylog_file:{keys}")
    assert render(f).replace(f"Node 1: {f.server}", "Node 1: :0") == theirs


def test_hole_filled_late(tmp_path, tshark):
    def data(who, seq, n, t, ack):
        return Seg(who, "PA", seq, ack, n, t)
    path = write(tmp_path / "hole.pcap", handshake() + [
        data("c", 1, 5, 0.1, 1), Seg("s", "A", 1, 6, 0, 0.15), data("s", 1, 10, 0.16, 6), data("s", 21, 10, 0.17, 6),
        data("s", 31, 4, 0.18, 6), data("s", 21, 10, 0.19, 6), Seg("c", "A", 6, 11, 0, 0.2),
        data("s", 11, 10, 0.25, 6), data("c", 6, 3, 0.26, 35)])
    assert render(follow(path, 0)) == tshark_follow(tshark, path, "tcp,ascii,0")


def test_http2_stream_data(tshark):
    path = ROOT / "captures" / "h2-multiplexing.pcapng"
    f = follow(path, 0, stream=3)
    assert f.kind == "h2"
    headers = [c for c in f.chunks if c.what == "headers"]
    assert [c.dir for c in headers] == ["c2s", "s2c"] and b":path: /r/res-01.txt" in headers[0].data
    out = subprocess.run([tshark, "-r", str(path), "-Y", "http2.streamid == 3 && http2.type == 0", "-T", "fields",
                          "-E", "occurrence=a", "-E", "aggregator=,", "-e", "http2.streamid", "-e", "http2.length",
                          "-e", "http2.type"], capture_output=True, text=True, timeout=120).stdout
    expected = 0
    for line in out.splitlines():
        sids, lengths, types = (v.split(",") for v in line.split("\t"))
        expected += sum(int(n) for s, n, t in zip(sids, lengths, types) if s == "3" and t == "0")
    assert sum(len(c.data) for c in f.chunks if c.what == "data") == expected > 0


def test_refusals():
    with pytest.raises(InputError, match="no connection 9"):
        follow(ROOT / "captures" / "tls12-rsa.pcapng", 9)
    with pytest.raises(InputError, match="UDP, not QUIC"):      # mDNS
        follow(CORPUS / "pcap/ipv6/http-over-ipv6__arkime_v6-http.pcap", 1, stream=1)
    with pytest.raises(InputError, match="browser export"):
        follow(ROOT / "captures" / "browser-page-load.har", 0)
