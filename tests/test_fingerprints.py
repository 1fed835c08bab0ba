"""JA3/JA3S/JA4/JA4S against published values.

- JA4 and JA4S: the worked examples of FoxIO's technical specs
  (github.com/FoxIO-LLC/ja4, technical_details/JA4.md and JA4S.md);
- a public Chrome 143 report (browserleaks.com output quoted in
  service0427/v2_cp_app tls.md): its JA3 text/hash and JA4 from its raw lists;
- JA3 strings against tshark 4.0's ``tls.handshake.ja3_full`` on the corpus.
"""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from traceviz.decode.tls import fingerprints as fp
from traceviz.decode.tls.messages import ClientHello, ServerHello


def hexes(text: str) -> list[int]:
    return [int(x, 16) for x in text.split(",")] if text else []


# JA4.md "Example" and "Raw Output": the lists in the client's original order.
SPEC_CIPHERS = "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035"
SPEC_EXTENSIONS = "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015"
SPEC_SIGALGS = "0403,0804,0401,0503,0805,0501,0806,0601"


def spec_hello(grease: bool = False, sigalgs: str = SPEC_SIGALGS) -> ClientHello:
    ciphers, exts = hexes(SPEC_CIPHERS), hexes(SPEC_EXTENSIONS)
    versions = [0x0304, 0x0303]
    if grease:
        ciphers, exts, versions = [0x4A4A] + ciphers, [0xDADA] + exts + [0x3A3A], [0x8A8A] + versions
    return ClientHello(legacy_version=0x0303, ciphers=ciphers, extensions=exts, supported_versions=versions,
                       signature_algorithms=hexes(sigalgs), alpn=["h2", "http/1.1"], alpn_raw=[b"h2", b"http/1.1"],
                       sni="example.com")


def test_ja4_spec_example():
    assert fp.ja4(spec_hello()) == "t13d1516h2_8daaf6152771_e5627efa2ab1"


def test_ja4_spec_raw_and_original_forms():
    assert fp.ja4_raw(spec_hello()) == (
        "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_"
        "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_"
        "0403,0804,0401,0503,0805,0501,0806,0601")
    assert fp.ja4(spec_hello(), original=True) == "t13d1516h2_acb858a92679_18f69afefd3d"
    assert fp.ja4_raw(spec_hello(), original=True) == (
        "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_"
        "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015_"
        "0403,0804,0401,0503,0805,0501,0806,0601")


def test_ja4_ignores_grease():
    assert fp.ja4(spec_hello(grease=True)) == "t13d1516h2_8daaf6152771_e5627efa2ab1"


def test_ja4_without_signature_algorithms_has_no_underscore():
    # JA4.md: the sorted extension list alone hashes to 6d807ffa2a79.
    assert fp.ja4(spec_hello(sigalgs="")).endswith("_6d807ffa2a79")


def test_ja4_empty_lists_are_zeros():
    ch = ClientHello(legacy_version=0x0303)
    assert fp.ja4(ch) == "t12i000000_000000000000_000000000000"


@pytest.mark.parametrize("alpn, chars", [
    (b"h2", "h2"), (b"http/1.1", "h1"), (b"h", "hh"), (b"", "00"), (None, "00"),
    # JA4.md's non-alphanumeric examples
    (b"\xab", "ab"), (b"\xab\xcd", "ad"), (b"\x30\xab", "3b"), (b"\x30\x31\xab\xcd", "3d"),
    (b"\x30\xab\xcd\x31", "01"),
])
def test_ja4_alpn_characters(alpn, chars):
    assert fp.alpn_chars(alpn) == chars


def test_ja4_version_from_supported_versions_else_legacy():
    assert fp.ja4_a(ClientHello(legacy_version=0x0301)).startswith("t10i")
    assert fp.ja4_a(ClientHello(legacy_version=0x0300)).startswith("ts3i")
    assert fp.ja4_a(ClientHello(legacy_version=0x0303, supported_versions=[0x2A2A, 0x0303, 0x0304]))[:3] == "t13"
    assert fp.ja4_a(ClientHello(legacy_version=0x0303), transport="q").startswith("q12")


def test_ja4s_spec_example():
    sh = ServerHello(legacy_version=0x0303, cipher=0xC030, extensions=hexes("0005,0017,ff01,0000"))
    assert fp.ja4s(sh) == "t120400_c030_4e8089b08790"


# A published Chrome 143 report (browserleaks): JA3 text and hash, JA4 and its raw lists.
CHROME_JA3_TEXT = ("771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,"
                   "45-51-16-65037-23-17613-0-11-10-43-65281-35-18-5-13-27,4588-29-23-24,0")
CHROME_JA3 = "98487aa16281980e7d1120d399efb6a4"
CHROME_JA4_RO = ("t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_"
                 "002d,0033,0010,fe0d,0017,44cd,0000,000b,000a,002b,ff01,0023,0012,0005,000d,001b_"
                 "0403,0804,0401,0503,0805,0501,0806,0601")
CHROME_JA4 = "t13d1516h2_8daaf6152771_d8a2da3f94cd"
CHROME_JA4_O = "t13d1516h2_acb858a92679_f96a17c57971"


def chrome_hello() -> ClientHello:
    version, ciphers, exts, groups, points = CHROME_JA3_TEXT.split(",")
    _, _, _, sigalgs = CHROME_JA4_RO.split("_")
    # GREASE as Chrome sends it, to be ignored by both fingerprints.
    return ClientHello(legacy_version=int(version), ciphers=[0x0A0A] + [int(c) for c in ciphers.split("-")],
                       extensions=[0x1A1A] + [int(e) for e in exts.split("-")] + [0x2A2A],
                       groups=[0x3A3A] + [int(g) for g in groups.split("-")], ec_point_formats=[int(points)],
                       supported_versions=[0x4A4A, 0x0304, 0x0303], signature_algorithms=hexes(sigalgs),
                       alpn=["h2", "http/1.1"], alpn_raw=[b"h2", b"http/1.1"], sni="tls.browserleaks.com")


def test_ja3_published_chrome():
    ch = chrome_hello()
    assert fp.ja3_string(ch) == CHROME_JA3_TEXT
    assert fp.ja3(ch) == CHROME_JA3


def test_ja4_published_chrome():
    ch = chrome_hello()
    assert fp.ja4(ch) == CHROME_JA4
    assert fp.ja4(ch, original=True) == CHROME_JA4_O
    assert fp.ja4_raw(ch, original=True) == CHROME_JA4_RO


def test_ja3s_is_md5_of_version_cipher_extensions():
    sh = ServerHello(legacy_version=0x0303, cipher=0xC02F, extensions=[0xFF01, 0x0000, 0x000B, 0x0023, 0x0010])
    assert fp.ja3s_string(sh) == "771,49199,65281-0-11-35-16"
    assert fp.ja3s(sh) == hashlib.md5(b"771,49199,65281-0-11-35-16").hexdigest()


def test_ja3_full_strings_equal_tshark(corpus, tshark):
    """JA3 before hashing, for every ClientHello and ServerHello in the corpus's TLS captures."""
    import traceviz
    names = ["pcap/tls/tls12-alpn-h2__arkime_tls-alpn-h2.pcap", "pcap/tls/tls13-curl__arkime_curl-enabled-tls13.pcap",
             "pcap/tls/tls13-draft23-chrome67__zeek.pcap", "pcap/tls-keys/tls12-decryption-heise__zeek.pcap",
             "pcap/tls/tls13-sll2-openjdk__zeek_openjdk-25.0.2-zeek.org.pcap"]
    for name in names:
        out = subprocess.run([tshark, "-r", str(corpus / name), "-Y", "tls.handshake.type == 1", "-T", "fields",
                              "-e", "tcp.stream", "-e", "tls.handshake.ja3_full"],
                             capture_output=True, text=True, timeout=60).stdout
        tl = traceviz.load(corpus / name)
        by = tl.tls.set_index("conn")
        for line in out.splitlines():
            stream, full = line.split("\t")
            assert by.loc[int(stream), "ja3_string"] == full, name
