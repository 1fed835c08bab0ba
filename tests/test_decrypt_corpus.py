"""Decrypting the corpus captures with their key logs, against tshark run
with the same key log: the same HTTP requests and status codes, in the same
frames, and the same decrypted bytes (``-z follow,tls,raw``).

The TLS record layer proper is the session engineer's (``session.py``); the
small record splitter and TCP reassembly here only get records out of the
test captures.
"""

from __future__ import annotations

import subprocess

import pytest

from traceviz.decode.http.http1 import HTTP1Connection, ParseError, exchanges
from traceviz.decode.tls.crypto import KeyLog, TLSDecryptor
from traceviz.loader import read_keylog_file as keylog_file

KEYED = [
    ("pcap/tls-keys/tls12-decryption-heise__zeek.pcap", "pcap/tls-keys/tls12-decryption-heise__zeek.keys"),
    ("pcap/tls-keys/tls-nss-example__scapy.pcap", "pcap/tls-keys/tls-nss-example__scapy.keys"),
]
DSB_CAPTURE = "pcap/quic/quic-draft29-dsb__pcap2qlog_ngtcp2-29-dsb.pcapng"


# --- getting records out of a capture (test scaffolding) ----------------------

def tcp_segments(path):
    import dpkt

    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        for n, (ts, buf) in enumerate(reader, 1):
            try:
                ip = dpkt.ethernet.Ethernet(buf).data
            except (dpkt.UnpackError, IndexError):
                continue
            tcp = getattr(ip, "data", None)
            if isinstance(tcp, dpkt.tcp.TCP):
                yield n, float(ts), (ip.src, tcp.sport), (ip.dst, tcp.dport), tcp.seq, tcp.flags, bytes(tcp.data)


def streams(path):
    """{connection: {"c2s": [(offset, bytes, frame, ts)], "s2c": [...]}} with
    retransmitted bytes dropped (first copy wins) and the pieces in order."""
    conns: dict = {}
    for frame, ts, src, dst, seq, flags, data in tcp_segments(path):
        key = frozenset((src, dst))
        c = conns.setdefault(key, {"client": src if flags & 0x02 and not flags & 0x10 else dst,
                                   "isn": {}, "c2s": {}, "s2c": {}})
        d = "c2s" if src == c["client"] else "s2c"
        if flags & 0x02:
            c["isn"][d] = seq + 1
        if data:
            off = (seq - c["isn"].setdefault(d, seq)) & 0xFFFFFFFF
            c[d].setdefault(off, (data, frame, ts))
    out = []
    for c in conns.values():
        per = {}
        for d in ("c2s", "s2c"):
            pieces, end = [], 0
            for off in sorted(c[d]):
                data, frame, ts = c[d][off]
                if off + len(data) <= end:
                    continue
                if off < end:
                    data, off = data[end - off:], end
                assert off == end, "the corpus TLS captures have no holes"
                pieces.append((off, data, frame, ts))
                end = off + len(data)
            per[d] = pieces
        out.append(per)
    return out


def records(pieces):
    """(header, body, frame, ts) per TLS record; frame/ts: where its last byte arrived."""
    buf, at_frame = b"", []
    for off, data, frame, ts in pieces:
        buf += data
        at_frame.append((off + len(data), frame, ts))
    pos = 0
    while pos + 5 <= len(buf):
        end = pos + 5 + int.from_bytes(buf[pos + 3:pos + 5], "big")
        if end > len(buf):
            break
        frame, ts = next((f, t) for stop, f, t in at_frame if stop >= end)
        yield buf[pos:pos + 5], buf[pos + 5:end], frame, ts
        pos = end


def hello_fields(c2s_records, s2c_records):
    ch = next(b for h, b, _, _ in c2s_records if h[0] == 22 and b[0] == 1)
    sh = next(b for h, b, _, _ in s2c_records if h[0] == 22 and b[0] == 2)
    sid = sh[38]
    suite = int.from_bytes(sh[39 + sid:41 + sid], "big")
    version = int.from_bytes(sh[4:6], "big")
    exts, at = sh[42 + sid + 2:], 0
    etm = False
    while at + 4 <= len(exts):
        kind, n = int.from_bytes(exts[at:at + 2], "big"), int.from_bytes(exts[at + 2:at + 4], "big")
        if kind == 43:                    # supported_versions: the real version
            version = int.from_bytes(exts[at + 4:at + 6], "big")
        if kind == 22:
            etm = True
        at += 4 + n
    return ch[6:38], sh[6:38], version, suite, etm


def decrypt_capture(path, keylog):
    """Per TLS connection: the decryptor, the decrypted application bytes per
    direction, and the HTTP/1 observer fed with them."""
    results = []
    for conn in streams(path):
        recs = {d: list(records(conn[d])) for d in ("c2s", "s2c")}
        cr, sr, version, suite, etm = hello_fields(recs["c2s"], recs["s2c"])
        dec = TLSDecryptor(version, suite, cr, sr, keylog, encrypt_then_mac=etm)
        http = HTTP1Connection()
        app = {"c2s": b"", "s2c": b""}
        handshake = {"c2s": b"", "s2c": b""}
        # Interleave the two directions in frame order, as the session machine will.
        merged = sorted(((f, i, d, h, b, t) for d in recs for i, (h, b, f, t) in enumerate(recs[d])),
                        key=lambda r: (r[0], r[1]))
        for frame, _, d, header, body, ts in merged:
            if header[0] == 20 and version < 0x0304:
                dec.change_cipher_spec(d)
                continue
            if header[0] == 22 and (version >= 0x0304 or not dec._dirs.get(d) or not dec._dirs[d].cipher):
                handshake[d] += body          # plaintext handshake records
                continue
            got = dec.decrypt(d, header, body)
            if got and got[0] == 22:
                handshake[d] += got[1]
            if got and got[0] == 23:
                app[d] += got[1]
                http.receive(d, got[1], frame, ts)
        for d in ("c2s", "s2c"):
            http.end_of_stream(d)
        dec.handshake_types = [t for d in ("c2s", "s2c") for t in message_types(handshake[d])]
        results.append((dec, app, http))
    return results


def message_types(data: bytes) -> list[int]:
    types, at = [], 0
    while at + 4 <= len(data):
        types.append(data[at])
        at += 4 + int.from_bytes(data[at + 1:at + 4], "big")
    return types


HANDSHAKE_NAMES = {1: "Client Hello", 2: "Server Hello", 4: "New Session Ticket", 8: "Encrypted Extensions",
                   11: "Certificate", 12: "Server Key Exchange", 14: "Server Hello Done",
                   15: "Certificate Verify", 16: "Client Key Exchange", 20: "Finished"}


# --- tshark's view ---------------------------------------------------------------

def tshark_http(tshark, path, keys):
    out = subprocess.run([tshark, "-r", str(path), "-o", f"tls.keylog_file:{keys}", "-Y",
                          "http.request or http.response", "-T", "fields", "-E", "separator=|",
                          "-e", "frame.number", "-e", "http.request.method", "-e", "http.host",
                          "-e", "http.request.uri", "-e", "http.response.code"],
                         capture_output=True, text=True, timeout=60)
    requests, responses = [], []
    for line in out.stdout.splitlines():
        frame, method, host, uri, code = line.split("|")
        if method:
            requests.append((int(frame), method, host or None, uri))
        if code:
            responses.append((int(frame), int(code)))
    return requests, responses


def tshark_plaintext(tshark, path, keys, stream):
    """Decrypted application bytes of one TCP stream, both sides, from tshark."""
    out = subprocess.run([tshark, "-r", str(path), "-o", f"tls.keylog_file:{keys}", "-q", "-z",
                          f"follow,tls,raw,{stream}"], capture_output=True, text=True, timeout=60)
    sides = {"": b"", "\t": b""}
    for line in out.stdout.splitlines():
        hexpart = line.strip()
        if not hexpart or any(c not in "0123456789abcdef" for c in hexpart):
            continue
        sides["\t" if line.startswith("\t") else ""] += bytes.fromhex(hexpart)
    return {v for v in sides.values() if v}


# --- tests ---------------------------------------------------------------------------

@pytest.mark.parametrize("capture,keys", KEYED)
def test_keyed_capture_decrypts_to_what_tshark_sees(corpus, tshark, capture, keys):
    path, keyfile = corpus / capture, corpus / keys
    results = decrypt_capture(path, keylog_file(keyfile))
    assert results
    for dec, _, _ in results:
        assert dec.available, dec.reason
        assert dec.failed == 0 and dec.decrypted > 0
    exs = [ex for _, _, http in results for ex in exchanges(http.events)]
    want_requests, want_responses = tshark_http(tshark, path, keyfile)
    assert want_requests
    got_requests = sorted((ex.request_end_frame, ex.method, ex.host, ex.target) for ex in exs if ex.method)
    assert got_requests == sorted(want_requests)
    # Every response tshark shows, we show in the same frame with the same status.
    for frame, status in want_responses:
        assert any(ex.status == status and ex.response_end_frame == frame for ex in exs), (frame, status)
    assert not [e for _, _, http in results for e in http.events if isinstance(e, ParseError)]


@pytest.mark.parametrize("capture,keys", KEYED)
def test_decrypted_bytes_equal_tsharks(corpus, tshark, capture, keys):
    path, keyfile = corpus / capture, corpus / keys
    results = decrypt_capture(path, keylog_file(keyfile))
    for stream, (_, app, _) in enumerate(results):
        want = tshark_plaintext(tshark, path, keyfile, stream)
        assert want, f"tshark decrypts stream {stream}"
        assert {v for v in app.values() if v} == want


def test_scapy_capture_responses_tshark_leaves_unreassembled(corpus):
    """tshark 4.0 shows the two requests but not their read-until-close
    responses; the decrypted bytes (equal to tshark's, above) hold a
    'HTTP/1.0 200 ok' for each, which we report."""
    results = decrypt_capture(corpus / KEYED[1][0], keylog_file(corpus / KEYED[1][1]))
    exs = [ex for _, _, http in results for ex in exchanges(http.events)]
    assert [(ex.method, ex.target, ex.version, ex.status, ex.reason) for ex in exs] == [
        ("GET", "/pki/srv_key.pem", "HTTP/1.0", 200, "ok")] * 2
    versions = sorted(dec.version for dec, _, _ in results)
    assert versions == [0x0303, 0x0304]


def test_without_or_with_a_wrong_key_log_nothing_decrypts(corpus):
    path = corpus / KEYED[0][0]
    for keylog in (None, keylog_file(corpus / KEYED[1][1])):
        results = decrypt_capture(path, keylog)
        assert [dec.available for dec, _, _ in results] == [False]
        assert results[0][0].reason == "no key-log entry for this client random"
        assert results[0][1] == {"c2s": b"", "s2c": b""}


@pytest.mark.parametrize("capture,keys", KEYED)
def test_decrypted_handshake_matches_manifest(corpus, capture, keys):
    """tshark's view with the key log (MANIFEST.json): the suites negotiated and
    every handshake message, the encrypted ones (Finished, EncryptedExtensions,
    Certificate, NewSessionTicket ...) included."""
    import json
    from collections import Counter

    want = json.loads((corpus / "MANIFEST.json").read_text())["files"][capture]["tls"]
    results = decrypt_capture(corpus / capture, keylog_file(corpus / keys))
    suites = sorted(f"0x{dec.cipher_suite:04x}" for dec, _, _ in results)
    assert suites == sorted(h["cipher_suite"] for h in want["per_handshake"])
    got = Counter(HANDSHAKE_NAMES.get(t, str(t)) for dec, _, _ in results for t in dec.handshake_types)
    assert dict(got) == want["handshake_message_counts"]


def test_keylog_matches_manifest_summary(corpus):
    import json

    manifest = json.loads((corpus / "MANIFEST.json").read_text())["files"]
    for _, keys in KEYED:
        log = keylog_file(corpus / keys)
        want = manifest[keys]
        assert dict(log.labels()) == want["labels"]
        assert len(log.client_randoms()) == want["distinct_client_randoms"]
        assert log.malformed == want["unparsed_lines"]


# --- pcapng Decryption Secrets Blocks -----------------------------------------------

def pcapng_dsbs(path):
    """[(secrets_type, data)] from a pcapng's DSBs (block type 0x0000000A)."""
    data = path.read_bytes()
    order = "little" if data[8:12] == b"\x4d\x3c\x2b\x1a" else "big"
    out, at = [], 0
    while at + 12 <= len(data):
        kind = int.from_bytes(data[at:at + 4], order)
        length = int.from_bytes(data[at + 4:at + 8], order)
        if length < 12:
            break
        if kind == 0x0A:
            stype = int.from_bytes(data[at + 8:at + 12], order)
            slen = int.from_bytes(data[at + 12:at + 16], order)
            out.append((stype, data[at + 16:at + 16 + slen]))
        at += length
    return out


def test_dsb_key_log_covers_the_handshake_tshark_sees(corpus, tshark):
    path = corpus / DSB_CAPTURE
    blocks = pcapng_dsbs(path)
    log = KeyLog.from_dsb(blocks)
    assert log.malformed == 0 and log.skipped_blocks == 0 and len(log) > 0
    out = subprocess.run([tshark, "-r", str(path), "-Y", "tls.handshake.type == 1", "-T", "fields",
                          "-e", "tls.handshake.random"], capture_output=True, text=True, timeout=60)
    randoms = {bytes.fromhex(r.replace(":", "")) for r in out.stdout.split()}
    assert randoms, "tshark sees the ClientHello"
    assert set(log.client_randoms()) == randoms
    for cr in randoms:
        labels = set(log.secrets_for(cr))
        assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"} <= labels
