"""Every TLS-over-TCP handshake in the shared corpus, against tshark.

Ground truth: MANIFEST.json's ``tls.per_handshake`` (tshark's view recorded
with the corpus) and tshark run here on the same files (JA3/JA3S, and the
HTTP requests it finds after decrypting with the corpus key logs).
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

import traceviz


def _handshakes(corpus: Path):
    manifest = json.loads((corpus / "MANIFEST.json").read_text())
    for name, entry in sorted(manifest["files"].items()):
        for hs in (entry.get("tls") or {}).get("per_handshake") or []:
            if hs.get("transport") == "tcp":
                yield name, hs


def _keylog(corpus: Path, name: str):
    keys = (corpus / name).with_suffix(".keys")
    return keys if keys.is_file() else None


_loaded: dict = {}


def _load(corpus: Path, name: str, keys: bool = False):
    key = (name, keys)
    if key not in _loaded:
        _loaded[key] = traceviz.load(corpus / name, keylog=_keylog(corpus, name) if keys else None)
    return _loaded[key]


def _row(tl, stream: int):
    rows = tl.tls[tl.tls["conn"] == stream]
    assert len(rows) == 1, f"no TLS row for tcp.stream {stream}"
    return rows.iloc[0]


def _none_if_missing(v):
    return None if v is None or (isinstance(v, float) and v != v) else v


def test_corpus_has_tls_handshakes(corpus):
    assert len(list(_handshakes(corpus))) >= 9


def test_every_handshake_agrees_with_tshark(corpus):
    checked = 0
    for name, hs in _handshakes(corpus):
        tl = _load(corpus, name)
        row = _row(tl, int(hs["stream"]))
        where = f"{name} stream {hs['stream']}"
        assert _none_if_missing(row["sni"]) == hs["sni"], where
        assert (list(row["alpn_offered"]) if row["alpn_offered"] is not None else None) == hs["alpn_offered"], where
        assert _none_if_missing(row["alpn"]) == hs["alpn_selected"], where
        assert row["version"] == hs["negotiated_version"], where
        assert row["cipher"] == hs["cipher_suite_name"], where
        assert bool(row["hello_retry"]) == hs["hello_retry_request"], where
        assert int(row["client_hellos"]) == hs["client_hello_count"], where
        if hs["offered_versions"] is not None:
            assert list(row["versions_offered"]) == hs["offered_versions"], where
        assert row["client"] == hs["client"] or row["client"].replace("[", "").replace("]", "") == hs["client"], where
        checked += 1
    assert checked >= 9


def test_connections_table_carries_tls_facts(corpus):
    for name, hs in _handshakes(corpus):
        tl = _load(corpus, name)
        c = tl.connections.set_index("conn").loc[int(hs["stream"])]
        assert _none_if_missing(c["sni"]) == hs["sni"]
        assert c["tls_version"] == hs["negotiated_version"]
        assert c["app"] in ("tls", "h2", "http/1.1")
        if hs["alpn_selected"] == "h2":
            assert c["app"] == "h2"


def _tshark_fields(tshark, path, display_filter, fields, keylog=None):
    cmd = [tshark, "-r", str(path), "-Y", display_filter, "-T", "fields"]
    if keylog is not None:
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def test_ja3_and_ja3s_equal_tshark(corpus, tshark):
    files = sorted({name for name, _ in _handshakes(corpus)})
    compared = 0
    for name in files:
        tl = _load(corpus, name)
        by_stream = tl.tls.set_index("conn")
        first_ja3, first_ja3s = {}, {}
        for stream, ja3, ja3s in _tshark_fields(tshark, corpus / name, "tls.handshake.type == 1 || tls.handshake.type == 2",
                                                ["tcp.stream", "tls.handshake.ja3", "tls.handshake.ja3s"]):
            if ja3:
                first_ja3.setdefault(int(stream), ja3)   # the session's (first) ClientHello
            if ja3s:
                first_ja3s.setdefault(int(stream), ja3s)
        for stream, ja3 in first_ja3.items():
            assert by_stream.loc[stream, "ja3"] == ja3, f"{name} stream {stream}"
            compared += 1
        for stream, ja3s in first_ja3s.items():
            assert by_stream.loc[stream, "ja3s"] == ja3s, f"{name} stream {stream}"
            compared += 1
    assert compared >= 18


def test_corrupt_capture_keeps_its_handshake(corpus):
    name = "pcap/tls/tls-corrupt-record__suricata-verify_bug-1450-05.pcap"
    tl = _load(corpus, name)
    row = _row(tl, 0)
    assert row["cipher"] == "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
    assert not row["completed"]


def _decryptable(corpus):
    manifest = json.loads((corpus / "MANIFEST.json").read_text())
    for name, entry in sorted(manifest["files"].items()):
        if ((entry.get("tls") or {}).get("per_handshake") and _keylog(corpus, name) is not None
                and any(h.get("transport") == "tcp" for h in entry["tls"]["per_handshake"])):
            yield name


def test_decrypted_requests_equal_tshark(corpus, tshark):
    names = list(_decryptable(corpus))
    assert names, "the corpus has key logs for TLS captures"
    for name in names:
        keys = _keylog(corpus, name)
        tl = _load(corpus, name, keys=True)
        assert tl.tls["decrypted"].all(), name
        theirs = _tshark_fields(tshark, corpus / name, "http.request", ["tcp.stream", "http.request.method"], keys)
        ours = tl.requests[tl.requests["method"].notna()]
        assert Counter((int(s), m) for s, m in theirs) == Counter(zip(ours["conn"].astype(int), ours["method"])), name
        codes = Counter((int(s), int(c)) for s, c in _tshark_fields(
            tshark, corpus / name, "http.response", ["tcp.stream", "http.response.code"], keys))
        got = tl.requests[tl.requests["status"].notna()]
        ours = Counter(zip(got["conn"].astype(int), got["status"].astype(int)))
        assert not codes - ours, name
        # tshark's HTTP dissector leaves a response delimited by the connection's
        # close unfinished; its TLS layer decrypted the bytes all the same.
        for (stream, code) in ours - codes:
            server = tl.connections.set_index("conn").loc[stream, "server"]
            server_text = _follow_tls(tshark, corpus / name, stream, keys, server)
            assert server_text.startswith((f"HTTP/1.0 {code} ", f"HTTP/1.1 {code} ")), (name, stream, code)
        assert (tl.requests["url"].str.startswith("https://") | ~tl.requests["url"].str.contains("://")).all()


def _follow_tls(tshark, path, stream, keys, server) -> str:
    """The server's decrypted bytes of one stream, as tshark's TLS layer gives them."""
    out = subprocess.run([tshark, "-r", str(path), "-o", f"tls.keylog_file:{keys}", "-q",
                          "-z", f"follow,tls,raw,{stream}"], capture_output=True, text=True, timeout=60).stdout
    node0 = out.split("Node 0:", 1)[1].split("\n", 1)[0].strip()
    body = out.split("Node 1:", 1)[1].split("\n", 1)[1]
    # Lines of node 1 are indented; node 0 is whichever side tshark saw first.
    server_indented = node0 != server
    data = b"".join(bytes.fromhex(line.strip()) for line in body.splitlines()
                    if line.strip() and not line.startswith("=") and line.startswith("\t") == server_indented)
    return data.decode("latin-1")


def test_wrong_key_log_is_reported_not_ignored(corpus, tmp_path):
    name = "pcap/tls-keys/tls-nss-example__scapy.pcap"
    unrelated = tmp_path / "other.keys"
    unrelated.write_text("CLIENT_RANDOM " + "ab" * 32 + " " + "cd" * 48 + "\n")
    tl = traceviz.load(corpus / name, keylog=unrelated)
    report = tl.decryption
    assert report["tls_sessions"] == 2 and report["sessions_with_keys"] == 0
    assert report["text"] == "keys present for 0 of 2 sessions"
    assert not tl.tls["decrypted"].any()
    right = _load(corpus, name, keys=True).decryption
    assert right["text"] == "keys present for 2 of 2 sessions"


def test_key_material_never_in_output(corpus):
    for name in _decryptable(corpus):
        keys = _keylog(corpus, name)
        secrets = set()
        for line in keys.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and not line.startswith("#"):
                secrets.add(parts[2].lower())
        tl = _load(corpus, name, keys=True)
        finding = traceviz.run("tls", tl)
        texts = [tl.tls.to_json(default_handler=str), tl.events.to_json(default_handler=str),
                 tl.requests.to_json(default_handler=str), tl.connections.to_json(default_handler=str),
                 json.dumps(finding.summary, default=str), "\n".join(finding.answer), repr(tl),
                 "\n".join(tl.warnings)]
        texts += [finding.figure(f).to_json() for f in finding.figures]
        blob = "\n".join(texts).lower()
        for secret in secrets:
            assert secret not in blob and secret[:32] not in blob, name


# -- the project's bundled captures: pcapng secrets and an RSA key -----------------------------

CAPTURES = Path(__file__).resolve().parents[1] / "captures"


def _bundled(name: str) -> Path:
    path = CAPTURES / name
    if not path.is_file():
        pytest.skip(f"bundled capture {name} not recorded yet")
    return path


def test_pcapng_secrets_used_without_a_key_log(tshark):
    path = _bundled("h2-multiplexing.pcapng")
    tl = traceviz.load(path)
    # tshark reads the same Decryption Secrets Block on its own: HTTP/2 HEADERS appear only if it decrypts.
    headers = _tshark_fields(tshark, path, "http2.type == 1", ["tcp.stream"])
    assert headers, "tshark decrypts this capture with its embedded secrets"
    assert set(tl.tls.loc[tl.tls["decrypted"], "conn"]) == {int(s) for (s,) in headers}
    assert tl.decryption["dsb_blocks"] >= 1
    assert tl.tls.iloc[0]["alpn"] == "h2"


def test_rsa_key_decrypts_tls12_rsa_key_exchange(tshark):
    path, key = _bundled("tls12-rsa.pcapng"), _bundled("tls12-rsa.key.pem")
    tl = traceviz.load(path, rsa_key=key)
    row = tl.tls.iloc[0]
    assert row["key_exchange"] == "RSA" and bool(row["decrypted"])
    cmd = [tshark, "-r", str(path), "-o", f'uat:rsa_keys:"{key}",""', "-Y", "http.request || http.response",
           "-T", "fields", "-e", "tcp.stream", "-e", "http.request.method", "-e", "http.response.code"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    theirs = [line.split("\t") for line in out.splitlines() if line.strip()]
    methods = Counter((int(s), m) for s, m, _ in theirs if m)
    codes = Counter((int(s), int(c)) for s, _, c in theirs if c)
    assert methods and methods == Counter(zip(tl.requests["conn"].astype(int), tl.requests["method"]))
    assert codes == Counter(zip(tl.requests["conn"].astype(int), tl.requests["status"].astype(int)))
    # Without the key nothing is decrypted, and the report says so.
    plain = traceviz.load(path)
    assert not plain.tls["decrypted"].any() and plain.decryption["text"].startswith("no TLS secrets")


def test_leaf_certificate_equals_tshark(corpus, tshark):
    """SAN and validity of the server's certificate (TLS 1.2: sent in plaintext)."""
    import datetime
    compared = 0
    for name, hs in _handshakes(corpus):
        rows = _tshark_fields(tshark, corpus / name, "tls.handshake.type == 11",
                              ["tcp.stream", "x509ce.dNSName", "x509af.utcTime"])
        for stream, names, times in rows:
            if int(stream) != int(hs["stream"]) or not times:
                continue
            row = _row(_load(corpus, name), int(stream))
            assert list(row["certificate_san"]) == (names.split(",") if names else []), name
            stamps = [datetime.datetime.strptime(t.replace(" (UTC)", ""), "%Y-%m-%d %H:%M:%S")
                      .replace(tzinfo=datetime.timezone.utc).timestamp() for t in times.split(",")]
            assert row["certificate_not_after"] == stamps[1], name
            compared += 1
    assert compared >= 4
