"""Key logs and record decryption against real TLS stacks.

Ground truth here is OpenSSL itself: each case runs a TLS client and server
(Python's ``ssl`` over memory BIOs, in a subprocess so OpenSSL's config can
pin a TLS 1.3 suite), records the bytes each side wrote -- the wire -- and
the client's key log, then checks that ``TLSDecryptor`` opens every
encrypted record to what the endpoints sent: the Finished messages and the
application data.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traceviz.decode.tls import ciphers
from traceviz.decode.tls import keyschedule as ks
from traceviz.decode.tls.crypto import KeyLog, TLSDecryptor
from traceviz.decode.tls.keylog import DSB_TLS_KEYLOG
from traceviz.errors import InputError
from traceviz.loader import read_keylog_file as keylog_file, read_rsa_key_file as rsa_key_file

REQUEST = b"GET /hello HTTP/1.1\r\nHost: example.test\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

# One TLS session over memory BIOs; prints the two byte streams as hex.
SESSION_SCRIPT = textwrap.dedent(r"""
    import json, ssl, sys
    a = json.loads(sys.argv[1])
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(a["cert"], a["key"])
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    for ctx in (sctx, cctx):
        if a.get("ciphers"):
            ctx.set_ciphers(a["ciphers"])
        if a.get("version"):
            v = getattr(ssl.TLSVersion, a["version"])
            ctx.minimum_version = ctx.maximum_version = v
        ctx.options |= a.get("options", 0)
    if a.get("keylog"):
        cctx.keylog_filename = a["keylog"]
    cin, cout, sin, sout = (ssl.MemoryBIO() for _ in range(4))
    c = cctx.wrap_bio(cin, cout, server_hostname="example.test")
    s = sctx.wrap_bio(sin, sout, server_side=True)
    wire = {"c2s": bytearray(), "s2c": bytearray()}
    def pump():
        for src, dst, d in ((cout, sin, "c2s"), (sout, cin, "s2c")):
            data = src.read()
            wire[d] += data
            dst.write(data)
    done = set()
    for _ in range(50):
        for name, obj in (("c", c), ("s", s)):
            if name not in done:
                try:
                    obj.do_handshake()
                    done.add(name)
                except ssl.SSLWantReadError:
                    pass
        pump()
        if len(done) == 2:
            break
    c.write(bytes.fromhex(a["request"]))
    pump()
    got_request = s.read(65536)
    s.write(bytes.fromhex(a["response"]))
    pump()
    got_response = c.read(65536)
    try:
        c.unwrap()
    except ssl.SSLError:
        pass
    pump()
    print(json.dumps({"c2s": wire["c2s"].hex(), "s2c": wire["s2c"].hex(), "cipher": c.cipher()[0],
                      "version": c.version(), "request": got_request.hex(), "response": got_response.hex()}))
""")

OPENSSL_CONF = """openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Ciphersuites = {suites}
"""

SSL_OP_NO_EXTENDED_MASTER_SECRET = 0x1   # OpenSSL 3.0 option bit


@pytest.fixture(scope="module")
def rsa_cert(tmp_path_factory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    d = tmp_path_factory.mktemp("cert")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                                  serialization.NoEncryption()))
    return d


def run_session(rsa_cert, tmp_path, *, suites13=None, ciphers=None, version=None, options=0, keylog=True):
    args = {"cert": str(rsa_cert / "cert.pem"), "key": str(rsa_cert / "key.pem"), "ciphers": ciphers,
            "version": version, "options": options, "request": REQUEST.hex(), "response": RESPONSE.hex()}
    if keylog:
        args["keylog"] = str(tmp_path / "session.keys")
    env = None
    if suites13:
        conf = tmp_path / "openssl.cnf"
        conf.write_text(OPENSSL_CONF.format(suites=suites13))
        env = {"OPENSSL_CONF": str(conf), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", SESSION_SCRIPT, json.dumps(args)], capture_output=True,
                         text=True, timeout=60, env=env)
    if out.returncode != 0:
        pytest.skip(f"this OpenSSL cannot run the session: {out.stderr.strip().splitlines()[-1:]}")
    s = json.loads(out.stdout)
    assert bytes.fromhex(s["request"]) == REQUEST and bytes.fromhex(s["response"]) == RESPONSE
    s["c2s"], s["s2c"] = bytes.fromhex(s["c2s"]), bytes.fromhex(s["s2c"])
    s["keylog"] = (tmp_path / "session.keys").read_text() if keylog else ""
    return s


def records(stream: bytes):
    at = 0
    while at + 5 <= len(stream):
        n = int.from_bytes(stream[at + 3:at + 5], "big")
        yield stream[at:at + 5], stream[at + 5:at + 5 + n]
        at += 5 + n


def handshake_messages(data: bytes):
    at = 0
    while at + 4 <= len(data):
        n = int.from_bytes(data[at + 1:at + 4], "big")
        yield data[at], data[at:at + 4 + n]
        at += 4 + n


def hello_facts(s):
    """client random, server random, version, suite, and (TLS 1.2) the
    ClientKeyExchange body and the handshake messages up to it."""
    plain = {"c2s": [], "s2c": []}
    for d in plain:
        for header, body in records(s[d]):
            if header[0] == 22:
                plain[d].append(body)
            elif header[0] == 20:
                break
    ch = next(m for t, m in handshake_messages(plain["c2s"][0]) if t == 1)
    sh = next(m for t, m in handshake_messages(b"".join(plain["s2c"])) if t == 2)
    client_random, server_random = ch[6:38], sh[6:38]
    sid_len = sh[38]
    suite = int.from_bytes(sh[39 + sid_len:41 + sid_len], "big")
    version = {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303, "TLSv1.1": 0x0302, "TLSv1": 0x0301}[s["version"]]
    # Transcript for the extended master secret: every handshake message
    # through the ClientKeyExchange, in the order they were sent.
    transcript, cke = [], None
    s2c_msgs = [m for body in plain["s2c"] for _, m in handshake_messages(body)]
    c2s_msgs = [m for body in plain["c2s"] for _, m in handshake_messages(body)]
    first_flight = s2c_msgs[:next((i + 1 for i, m in enumerate(s2c_msgs) if m[0] == 14), len(s2c_msgs))]
    for m in c2s_msgs:
        if m[0] == 16:
            cke = m[4:]
    transcript = [c2s_msgs[0]] + first_flight + [m for m in c2s_msgs[1:] if m[0] in (11, 16)]
    s["etm"] = 22 in extension_types(sh[42 + sid_len:])
    return client_random, server_random, version, suite, cke, transcript


def extension_types(block: bytes) -> set[int]:
    types, at = set(), 2
    while at + 4 <= len(block):
        types.add(int.from_bytes(block[at:at + 2], "big"))
        at += 4 + int.from_bytes(block[at + 2:at + 4], "big")
    return types


def decrypt_all(s, dec: TLSDecryptor):
    """Every record of both directions, in each direction's order, with the
    ChangeCipherSpec reported as the session machine would."""
    out = {}
    for d in ("c2s", "s2c"):
        got = []
        for header, body in records(s[d]):
            if header[0] == 20 and dec.version < 0x0304:
                dec.change_cipher_spec(d)
                continue
            got.append(dec.decrypt(d, header, body))
        out[d] = got
    return out


def check_session(s, dec: TLSDecryptor):
    assert dec.available, dec.reason
    out = decrypt_all(s, dec)
    assert dec.failed == 0
    for d, payload in (("c2s", REQUEST), ("s2c", RESPONSE)):
        app = b"".join(p for t, p in out[d] if t == 23)
        assert app == payload
        finished = [m for t, p in out[d] if t == 22 for k, m in handshake_messages(p) if k == 20]
        assert len(finished) == 1
    return out


TLS13_SUITES = [("TLS_AES_128_GCM_SHA256", 0x1301), ("TLS_AES_256_GCM_SHA384", 0x1302),
                ("TLS_CHACHA20_POLY1305_SHA256", 0x1303), ("TLS_AES_128_CCM_SHA256", 0x1304)]


@pytest.mark.parametrize("name,code", TLS13_SUITES)
def test_tls13_suites(rsa_cert, tmp_path, name, code):
    s = run_session(rsa_cert, tmp_path, suites13=name)
    cr, sr, version, suite, _, _ = hello_facts(s)
    assert (version, suite, s["cipher"]) == (0x0304, code, name)
    log = KeyLog.from_text(s["keylog"])
    dec = TLSDecryptor(version, suite, cr, sr, log)
    check_session(s, dec)
    # The server's first encrypted record starts with EncryptedExtensions.
    first = next((h, b) for h, b in records(s["s2c"]) if h[0] == 23)
    again = TLSDecryptor(version, suite, cr, sr, log)
    ctype, plain = again.decrypt("s2c", *first)
    assert (ctype, plain[0]) == (22, 8)


TLS12_CASES = [
    ("ECDHE-RSA-AES128-GCM-SHA256", "TLSv1_2", 0xC02F),
    ("ECDHE-RSA-AES256-GCM-SHA384", "TLSv1_2", 0xC030),
    ("ECDHE-RSA-CHACHA20-POLY1305", "TLSv1_2", 0xCCA8),
    ("ECDHE-RSA-AES128-SHA", "TLSv1_2", 0xC013),
    ("ECDHE-RSA-AES256-SHA384", "TLSv1_2", 0xC028),
    ("AES128-SHA256", "TLSv1_2", 0x003C),
    ("AES256-GCM-SHA384", "TLSv1_2", 0x009D),
    ("ECDHE-RSA-AES128-SHA:@SECLEVEL=0", "TLSv1_1", 0xC013),
    ("ECDHE-RSA-AES256-SHA:@SECLEVEL=0", "TLSv1", 0xC014),
]


@pytest.mark.parametrize("cipher,version,code", TLS12_CASES)
def test_tls12_and_older_with_key_log(rsa_cert, tmp_path, cipher, version, code):
    s = run_session(rsa_cert, tmp_path, ciphers=cipher, version=version)
    cr, sr, v, suite, _, _ = hello_facts(s)
    assert suite == code
    dec = TLSDecryptor(v, suite, cr, sr, KeyLog.from_text(s["keylog"]), encrypt_then_mac=s["etm"])
    check_session(s, dec)
    assert s["etm"] == ("GCM" not in cipher and "CHACHA" not in cipher)


SSL_OP_NO_ENCRYPT_THEN_MAC = 0x80000      # OpenSSL 3.0 option bit


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1"])
def test_cbc_mac_then_encrypt(rsa_cert, tmp_path, version):
    s = run_session(rsa_cert, tmp_path, ciphers="ECDHE-RSA-AES128-SHA:@SECLEVEL=0", version=version,
                    options=SSL_OP_NO_ENCRYPT_THEN_MAC)
    cr, sr, v, suite, _, _ = hello_facts(s)
    assert suite == 0xC013 and not s["etm"]
    check_session(s, TLSDecryptor(v, suite, cr, sr, KeyLog.from_text(s["keylog"])))
    # Told the wrong MAC order, nothing opens.
    wrong = TLSDecryptor(v, suite, cr, sr, KeyLog.from_text(s["keylog"]), encrypt_then_mac=True)
    decrypt_all(s, wrong)
    assert wrong.decrypted == 0


@pytest.mark.parametrize("ems", [True, False])
def test_tls12_rsa_key_exchange_with_private_key(rsa_cert, tmp_path, ems):
    s = run_session(rsa_cert, tmp_path, ciphers="AES128-GCM-SHA256", version="TLSv1_2",
                    options=0 if ems else SSL_OP_NO_EXTENDED_MASTER_SECRET, keylog=False)
    cr, sr, v, suite, cke, transcript = hello_facts(s)
    assert suite == 0x009C and cke
    key = rsa_key_file(rsa_cert / "key.pem")
    session_hash = ks.transcript_hash("sha256", *transcript) if ems else None
    dec = TLSDecryptor(v, suite, cr, sr, None, rsa_private_key=key, encrypted_premaster=cke,
                       session_hash=session_hash)
    assert dec.source == "rsa-key"
    check_session(s, dec)
    if ems:
        # Without the session hash the master secret is wrong: every record fails.
        wrong = TLSDecryptor(v, suite, cr, sr, None, rsa_private_key=key, encrypted_premaster=cke)
        decrypt_all(s, wrong)
        assert wrong.decrypted == 0 and wrong.failed > 0


def test_rsa_key_that_does_not_match(rsa_cert, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa

    s = run_session(rsa_cert, tmp_path, ciphers="AES128-GCM-SHA256", version="TLSv1_2", keylog=False)
    cr, sr, v, suite, cke, _ = hello_facts(s)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    dec = TLSDecryptor(v, suite, cr, sr, None, rsa_private_key=other, encrypted_premaster=cke)
    # PKCS#1 v1.5 implicit rejection may hand back a random 48-byte "pre-master";
    # either way nothing decrypts and nothing raises.
    if dec.available:
        decrypt_all(s, dec)
        assert dec.decrypted == 0
    else:
        assert "RSA key" in dec.reason


def test_ecdhe_with_only_an_rsa_key_says_why(rsa_cert, tmp_path):
    s = run_session(rsa_cert, tmp_path, ciphers="ECDHE-RSA-AES128-GCM-SHA256", version="TLSv1_2", keylog=False)
    cr, sr, v, suite, cke, _ = hello_facts(s)
    dec = TLSDecryptor(v, suite, cr, sr, None, rsa_private_key=rsa_key_file(rsa_cert / "key.pem"),
                       encrypted_premaster=cke)
    assert not dec.available
    assert "ECDHE_RSA" in dec.reason


def test_unsupported_cipher_reason():
    dec = TLSDecryptor(0x0303, 0x0005, bytes(32), bytes(32), KeyLog())
    assert not dec.available
    assert dec.reason == "cipher TLS_RSA_WITH_RC4_128_SHA not supported"
    assert dec.decrypt("c2s", b"\x17\x03\x03\x00\x10", bytes(16)) is None


# --- KeyUpdate (RFC 8446 4.6.3): records sealed here, independently -------

def seal13(key, iv, seq, content, ctype, aead_cls):
    inner = content + bytes([ctype])
    header = b"\x17\x03\x03" + (len(inner) + 16).to_bytes(2, "big")
    nonce = (int.from_bytes(iv, "big") ^ seq).to_bytes(12, "big")
    return header + aead_cls(key).encrypt(nonce, inner, header)


def test_key_update_moves_to_the_next_generation():
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    cr = bytes(range(32))
    secret0 = bytes(range(100, 132))
    log = KeyLog.from_text(f"SERVER_TRAFFIC_SECRET_0 {cr.hex()} {secret0.hex()}")
    dec = TLSDecryptor(0x0304, 0x1301, cr, bytes(32), log)
    k0, iv0 = ks.traffic_keys("sha256", secret0, 16)
    secret1 = ks.hkdf_expand_label("sha256", secret0, b"traffic upd", b"", 32)
    k1, iv1 = ks.traffic_keys("sha256", secret1, 16)
    key_update = b"\x18\x00\x00\x01\x00"       # KeyUpdate, update_not_requested
    wire = [seal13(k0, iv0, 0, b"before", 23, AESGCM), seal13(k0, iv0, 1, key_update, 22, AESGCM),
            seal13(k1, iv1, 0, b"after", 23, AESGCM), seal13(k1, iv1, 1, b"again", 23, AESGCM)]
    got = [dec.decrypt_record("s2c", r) for r in wire]
    assert got == [(23, b"before"), (22, key_update), (23, b"after"), (23, b"again")]


def test_records_lost_from_the_capture_are_skipped_over():
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    cr, secret = bytes(32), bytes(range(32))
    log = KeyLog.from_text(f"SERVER_TRAFFIC_SECRET_0 {cr.hex()} {secret.hex()}")
    dec = TLSDecryptor(0x0304, 0x1301, cr, bytes(32), log)
    key, iv = ks.traffic_keys("sha256", secret, 16)
    wire = [seal13(key, iv, n, f"record {n}".encode(), 23, AESGCM) for n in range(8)]
    kept = [wire[0], wire[3], wire[4], wire[7]]          # 1, 2, 5 and 6 were not captured
    assert [dec.decrypt_record("s2c", r) for r in kept] == [(23, f"record {n}".encode()) for n in (0, 3, 4, 7)]
    assert dec.failed == 0


def test_wrong_keys_do_not_search_sequence_numbers():
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    cr = bytes(32)
    log = KeyLog.from_text(f"SERVER_TRAFFIC_SECRET_0 {cr.hex()} {bytes(32).hex()}")
    dec = TLSDecryptor(0x0304, 0x1301, cr, bytes(32), log)
    key, iv = ks.traffic_keys("sha256", bytes(range(32)), 16)
    record = seal13(key, iv, 5, b"x", 23, AESGCM)
    assert dec.decrypt_record("s2c", record) is None
    assert dec._dirs["s2c"].cipher is None or dec._dirs["s2c"].cipher.seq <= 1


def test_tls13_padding_is_removed():
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    cr, secret = bytes(32), bytes(range(32))
    log = KeyLog.from_text(f"CLIENT_TRAFFIC_SECRET_0 {cr.hex()} {secret.hex()}")
    dec = TLSDecryptor(0x0304, 0x1303, cr, bytes(32), log)
    key, iv = ks.traffic_keys("sha256", secret, 32)
    inner = b"data" + bytes([23]) + bytes(40)
    header = b"\x17\x03\x03" + (len(inner) + 16).to_bytes(2, "big")
    record = header + ChaCha20Poly1305(key).encrypt(iv, inner, header)
    assert dec.decrypt_record("c2s", record) == (23, b"data")
    # All-zero inner plaintext has no content type: a failure, not a crash.
    zeros = bytes(8)
    header = b"\x17\x03\x03" + (len(zeros) + 16).to_bytes(2, "big")
    nonce = (int.from_bytes(iv, "big") ^ 1).to_bytes(12, "big")
    assert dec.decrypt_record("c2s", header + ChaCha20Poly1305(key).encrypt(nonce, zeros, header)) is None
    assert dec.failed == 1


# --- KeyLog ------------------------------------------------------------------

SECRET = "ab" * 48
CR = "11" * 32


def test_keylog_parses_labels_comments_and_counts_malformed_lines():
    text = "\n".join([
        "# comment",
        "",
        f"CLIENT_RANDOM {CR} {SECRET}",
        f"client_handshake_traffic_secret {CR} {'cd' * 32}",     # label case is not significant
        f"RSA {'22' * 8} {'33' * 48}",
        "CLIENT_RANDOM nothex " + SECRET,
        f"CLIENT_RANDOM {CR[:-2]} {SECRET}",                       # 31-byte client random
        f"CLIENT_RANDOM {CR}",                                     # missing secret
        "x" * 5000,
    ])
    log = KeyLog.from_text(text, source="test.keys")
    assert log.malformed == 4
    assert len(log) == 2           # one client random, one RSA entry
    assert log.secrets_for(bytes.fromhex(CR)) == {"CLIENT_RANDOM": bytes.fromhex(SECRET),
                                                  "CLIENT_HANDSHAKE_TRAFFIC_SECRET": bytes.fromhex("cd" * 32)}
    assert log.rsa_premaster(bytes.fromhex("22" * 8) + b"rest of the ciphertext") == bytes.fromhex("33" * 48)
    assert log.secrets_for(bytes(32)) == {}
    assert log.labels() == {"CLIENT_RANDOM": 1, "CLIENT_HANDSHAKE_TRAFFIC_SECRET": 1, "RSA": 1}
    assert len(log.warnings) == 1 and "4 malformed" in log.warnings[0] and log.warnings[0].startswith("test.keys: ")


def test_keylog_from_bytes_with_crlf_and_merge():
    a = KeyLog.from_text(f"CLIENT_RANDOM {CR} {SECRET}\r\n".encode())
    b = KeyLog.from_text(f"SERVER_TRAFFIC_SECRET_0 {'44' * 32} {'55' * 32}\n")
    a.merge(b)
    assert len(a) == 2
    assert set(a.client_randoms()) == {bytes.fromhex(CR), bytes.fromhex("44" * 32)}


def test_keylog_from_dsb_blocks():
    blocks = [(DSB_TLS_KEYLOG, f"CLIENT_RANDOM {CR} {SECRET}\n".encode()), (0x5753474B, b"wireguard stuff")]
    log = KeyLog.from_dsb(blocks)
    assert len(log) == 1 and log.skipped_blocks == 1
    assert "WireGuard" in log.warnings[0]


def test_keylog_from_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError) as e:
        keylog_file(tmp_path / "nope.keys")
    assert "nope.keys" in str(e.value)


def test_load_rsa_key_rejects_non_keys(tmp_path):
    p = tmp_path / "bad.pem"
    p.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(InputError) as e:
        rsa_key_file(p)
    assert "AAAA" not in str(e.value)


# --- Key material never shown -------------------------------------------------

def test_secrets_never_in_repr_str_or_warnings(rsa_cert, tmp_path):
    s = run_session(rsa_cert, tmp_path, suites13="TLS_AES_128_GCM_SHA256")
    log = KeyLog.from_text(s["keylog"] + "\nCLIENT_RANDOM zz " + "ee" * 48 + "\n")
    secrets = [line.split()[2] for line in s["keylog"].splitlines() if line and not line.startswith("#")]
    assert secrets
    cr, sr, version, suite, _, _ = hello_facts(s)
    dec = TLSDecryptor(version, suite, cr, sr, log)
    decrypt_all(s, dec)
    shown = " ".join([repr(log), str(log), repr(dec), str(dec), *log.warnings,
                      repr(dec._dirs), repr(list(dec._dirs.values()))])
    shown_lower = shown.lower()
    for secret in secrets + ["ee" * 48]:
        assert secret.lower() not in shown_lower
    # Nor their bytes' repr.
    for secret in secrets:
        assert repr(bytes.fromhex(secret)) not in shown


def test_bad_setup_input_never_raises():
    log = KeyLog.from_text(f"CLIENT_RANDOM {CR} {'ab' * 20}")     # master secret of the wrong size
    dec = TLSDecryptor(0x0303, 0xC02F, bytes.fromhex(CR), bytes(32), log)
    assert not dec.available and "48 bytes" in dec.reason
    dec = TLSDecryptor(0x0303, 0xC02F, None, None, None)
    assert not dec.available
    dec = TLSDecryptor(None, None, b"", b"", KeyLog())
    assert not dec.available and repr(dec)
    assert TLSDecryptor(0x0300, 0x002F, bytes(32), bytes(32), KeyLog()).reason == "SSL 3.0 decryption not supported"


def test_every_supported_suite_names_itself():
    for code, s in ciphers.SUITES.items():
        assert s.code == code and s.name.startswith("TLS_")


# --- arbitrary records ------------------------------------------------------------------



@settings(max_examples=150, deadline=None)
@given(st.sampled_from([0x1301, 0x1303, 0x1304, 0xC02F, 0xCCA8, 0xC013, 0x002F, 0x0005]),
       st.sampled_from([0x0301, 0x0302, 0x0303, 0x0304]),
       st.lists(st.tuples(st.sampled_from(["c2s", "s2c", "x"]), st.binary(max_size=8), st.binary(max_size=80),
                          st.booleans()), max_size=12))
def test_arbitrary_records_never_raise(suite, version, steps):
    log = KeyLog.from_text("\n".join(f"{label} {CR} {SECRET[:96]}" for label in (
        "CLIENT_RANDOM", "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "CLIENT_EARLY_TRAFFIC_SECRET")))
    dec = TLSDecryptor(version, suite, bytes.fromhex(CR), bytes(32), log, encrypt_then_mac=suite == 0xC013)
    for direction, header, body, ccs in steps:
        if ccs:
            dec.change_cipher_spec(direction)
        got = dec.decrypt(direction, header, body, early=ccs)
        assert got is None or (isinstance(got[0], int) and isinstance(got[1], bytes))
