"""QUIC in real captures, against tshark's view of the same files.

MANIFEST.json holds what tshark 4.0 found in every corpus capture; the
bundled quic-h3 capture is compared with tshark run here.  Where tshark 4.0
cannot give a field, the test says so and checks it some other way:

- ``rtts``, ``handshake_ms``, ``retry``, ``version_negotiation``, ``close``,
  the spin bit's round trips and HTTP/3 request rows: tshark has no such
  fields (its HTTP/3 dissector of 4.0 stops at frame types);
- the Version Negotiation capture's ClientHello: tshark 4.0 keeps the Initial
  keys of the greased first packet and fails to open the client's v1
  Initial ("Decryption failed"), so its SNI list is empty; we read
  ``localhost``, and the AEAD tag that verified proves the keys right;
- Google Q050 uses Google's own crypto: neither tshark nor we decrypt it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import traceviz
from traceviz.captures import find

QUIC = "pcap/quic"
# tshark's view is wrong or missing here (see the module doc): field -> what we check instead.
TSHARK_CANNOT = {"quic-version-negotiation__tcpdump_quic_vn.pcap": {"sni": ["localhost"]}}


def _manifest(corpus: Path) -> dict:
    return json.loads((corpus / "MANIFEST.json").read_text())["files"]


def _captures(corpus: Path) -> list[tuple[str, dict]]:
    files = _manifest(corpus)
    return [(name, facts) for name, facts in sorted(files.items())
            if name.startswith(QUIC) and facts.get("kind") == "capture"]


def _load(corpus: Path, name: str, facts: dict):
    keys = facts.get("keylog_file")
    return traceviz.load(corpus / name, keylog=corpus / keys if keys else None)


def _case(corpus: Path, index: int):
    """(name, file name, tshark's facts, our Timeline) of the index-th QUIC capture."""
    captures = _captures(corpus)
    if index >= len(captures):
        pytest.skip("fewer QUIC captures in this corpus")
    name, facts = captures[index]
    return name, name.split("/")[-1], facts, _load(corpus, name, facts)


def test_every_quic_capture_is_covered(corpus):
    assert len(_captures(corpus)) >= 10


@pytest.mark.parametrize("index", range(11))
def test_connections_versions_sni_alpn_equal_tsharks(corpus, index):
    name, short, facts, tl = _case(corpus, index)
    want = facts["quic"]
    q = tl.quic
    assert len(q) == want["connections"], short
    # Every version tshark saw in a long header (VN's 0x00000000 and greased ones included).
    seen = {v for versions in q["versions"] for v in versions}
    assert seen == {k.split()[0] for k in want["versions"]}, short
    # The row's version is the one the handshake ran in: a real QUIC version, named.
    for _, row in q.iterrows():
        assert row["version"] in {k.split()[0] for k in want["versions"]}
        assert row["version_name"] and not row["version_name"].startswith(("grease", "unknown"))
    sni = sorted(s for s in q["sni"] if isinstance(s, str))
    assert sni == TSHARK_CANNOT.get(short, {}).get("sni", sorted(want["sni"])), short
    if want["alpn_selected"]:           # the captures whose keys we have (draft-22 .keys, draft-29 DSB)
        assert sorted(q["alpn"].dropna()) == sorted(want["alpn_selected"]), short
        assert q["decrypted"].all(), short
    else:
        assert not q["decrypted"].any(), short
    # The UDP flow became a QUIC connection in `connections` too, in the same slot.
    conns = tl.connections.set_index("conn")
    for conn in q["conn"]:
        assert conns.loc[conn, "transport"] == "quic"
        assert conns.loc[conn, "stream"] == int(next(iter(want["per_connection"].values()))["udp_stream"])
    assert not tl.warnings, tl.warnings


@pytest.mark.parametrize("index", range(11))
def test_tls_handshakes_in_quic_equal_tsharks(corpus, index):
    """ALPN offered, SNI and cipher of the QUIC handshakes tshark dissected as TLS."""
    name, short, facts, tl = _case(corpus, index)
    for hs in facts["tls"]["per_handshake"]:
        if not hs["client_hello_count"]:
            continue                        # tshark did not read it (see TSHARK_CANNOT)
        row = tl.tls[tl.tls["conn"] == int(hs["stream"])]
        assert len(row) == 1, short
        row = row.iloc[0]
        assert row["transport"] == "quic"
        assert list(row["alpn_offered"]) == hs["alpn_offered"], short
        assert row["sni"] == hs["sni"], short
        assert row["ja4"].startswith("q13"), short          # JA4 for QUIC: the q prefix
        cipher = tl.quic.set_index("conn").loc[int(hs["stream"]), "cipher"]
        assert cipher == hs["cipher_suite_name"], short
        assert bool(row["hello_retry"]) == hs["hello_retry_request"], short


def test_retry_integrity_tag_checked(corpus):
    tl = traceviz.load(corpus / QUIC / "quic-retry__tcpdump_quic_retry.pcap")
    row = tl.quic.iloc[0]
    assert row["retry"] and row["retry_integrity"] == "ok"
    assert row["rtts"] == 2                 # the Retry cost a round trip
    retry = tl.events[(tl.events["layer"] == "quic") & (tl.events["kind"] == "Retry")]
    assert len(retry) == 1 and "integrity tag ok" in retry.iloc[0]["detail"]


def test_version_negotiation(corpus):
    tl = traceviz.load(corpus / QUIC / "quic-version-negotiation__tcpdump_quic_vn.pcap")
    row = tl.quic.iloc[0]
    assert row["version_negotiation"] and row["version"] == "0x00000001"
    assert row["vn_versions"][0] == "0x00000001"
    assert row["rtts"] == 2


def test_draft29_hello_retry_and_chacha20(corpus):
    """ngtcp2's draft-29 capture: a Retry, then a HelloRetryRequest (three round trips before the
    client's Finished), ChaCha20-Poly1305 packets, keys from a pcapng DSB."""
    tl = traceviz.load(corpus / QUIC / "quic-draft29-dsb__pcap2qlog_ngtcp2-29-dsb.pcapng")
    row = tl.quic.iloc[0]
    assert row["retry"] and row["retry_integrity"] == "ok" and row["hello_retry"] and row["rtts"] == 3
    assert row["cipher"] == "TLS_CHACHA20_POLY1305_SHA256"
    assert row["packets_encrypted"] == 0 and row["decode_errors"] == 0
    assert tl.decryption["sessions_decrypted"] == 1


def test_draft22_http3_frames_equal_tsharks(corpus):
    """tshark 4.0 names HTTP/3 frame types; we decode the header blocks too."""
    name = f"{QUIC}/quic-draft22-h3__pcap2qlog_multi_stream.pcap"
    facts = _manifest(corpus)[name]
    tl = _load(corpus, name, facts)
    h3 = tl.events[tl.events["layer"] == "h3"]
    counts = h3["kind"].value_counts().to_dict()
    for kind, n in facts["quic"]["http3_frames"].items():
        assert counts.get(kind, 0) == n, kind
    # One request per client HEADERS frame; the server's HEADERS are responses and trailers.
    assert len(tl.requests) == int(((h3["kind"] == "HEADERS") & (h3["dir"] == "c2s")).sum()) == 4
    assert (tl.requests["status"] == 200).all()
    assert (tl.requests["url"] == "https://nghttp2.org:4433/index.html").all()   # the server is on 4433
    assert (tl.requests["protocol"] == "h3").all()


def test_gquic_is_identified_not_decrypted(corpus):
    tl = traceviz.load(corpus / QUIC / "gquic-q050__ndpi_quic_q50.pcap")
    row = tl.quic.iloc[0]
    assert row["version_name"] == "Google Q050" and not row["decrypted"]
    assert "Google" in row["decrypt_note"]


def test_spin_bit(corpus):
    """The spin bit flips once per round trip: its edges time the path (qlog of the same capture: 8 updates)."""
    name = f"{QUIC}/quic-draft22-spinbit__pcap2qlog_spin_bit.pcap"
    tl = _load(corpus, name, _manifest(corpus)[name])
    row = tl.quic.iloc[0]
    assert row["spin_edges"] >= 4
    assert 0 < row["spin_rtt_ms"] < 1000


# -- the bundled capture, against tshark run here --------------------------------------

def _tshark_packets(tshark: str, path: Path, keys: Path) -> list[tuple[int, str, int]]:
    """(frame, packet kind, packet number) of every QUIC packet tshark decrypted."""
    out = subprocess.run([tshark, "-r", str(path), "-o", f"tls.keylog_file:{keys}", "-T", "fields",
                          "-e", "frame.number", "-e", "quic.header_form", "-e", "quic.long.packet_type",
                          "-e", "quic.packet_number"], capture_output=True, text=True, check=True).stdout
    names = {"0": "Initial", "1": "0-RTT", "2": "Handshake"}
    rows = []
    for line in out.splitlines():
        frame, forms, types, pns = (line.split("\t") + ["", "", ""])[:4]
        types = iter(types.split(",")) if types else iter(())
        for form, pn in zip(forms.split(","), pns.split(",")):
            kind = names[next(types)] if form == "1" else "1-RTT"
            rows.append((int(frame), kind, int(pn)))
    return rows


def test_bundled_quic_h3_packets_equal_tsharks(tshark):
    path = find("quic-h3")
    keys = Path(path).with_suffix(".keys")
    tl = traceviz.load(path, keylog=keys)
    ev = tl.events
    ours = ev[(ev["layer"] == "quic") & ev["kind"].isin(["Initial", "0-RTT", "Handshake", "1-RTT"])]
    assert ours["pn"].notna().all()
    mine = sorted((int(f), k, int(p)) for f, k, p in zip(ours["frame"], ours["kind"], ours["pn"]))
    assert mine == sorted(_tshark_packets(tshark, Path(path), keys))


_FRAME_NAMES = {0x01: "PING", 0x02: "ACK", 0x03: "ACK", 0x04: "RESET_STREAM", 0x05: "STOP_SENDING", 0x06: "CRYPTO",
                0x07: "NEW_TOKEN", 0x10: "MAX_DATA", 0x11: "MAX_STREAM_DATA", 0x12: "MAX_STREAMS",
                0x13: "MAX_STREAMS", 0x14: "DATA_BLOCKED", 0x15: "STREAM_DATA_BLOCKED", 0x16: "STREAMS_BLOCKED",
                0x17: "STREAMS_BLOCKED", 0x18: "NEW_CONNECTION_ID", 0x19: "RETIRE_CONNECTION_ID",
                0x1A: "PATH_CHALLENGE", 0x1B: "PATH_RESPONSE", 0x1C: "CONNECTION_CLOSE", 0x1D: "CONNECTION_CLOSE",
                0x1E: "HANDSHAKE_DONE", **{t: "STREAM" for t in range(0x08, 0x10)}}


def test_bundled_quic_h3_frames_equal_tsharks(tshark):
    """Every frame of every decrypted packet (PADDING aside), frame by frame, as tshark lists them."""
    path = find("quic-h3")
    keys = Path(path).with_suffix(".keys")
    out = subprocess.run([tshark, "-r", str(path), "-o", f"tls.keylog_file:{keys}", "-T", "fields",
                          "-e", "frame.number", "-e", "quic.frame_type"], capture_output=True, text=True,
                         check=True).stdout
    theirs = {}
    for line in out.splitlines():
        frame, types = (line.split("\t") + [""])[:2]
        names = sorted(_FRAME_NAMES[int(t)] for t in types.split(",") if t and int(t) != 0)
        theirs[int(frame)] = names
    tl = traceviz.load(path, keylog=keys)
    ev = tl.events[(tl.events["layer"] == "quic") & tl.events["kind"].isin(set(_FRAME_NAMES.values()))]
    ours = {f: sorted(g["kind"]) for f, g in ev.groupby("frame")}
    assert {f: n for f, n in ours.items()} == {f: n for f, n in theirs.items() if n}
