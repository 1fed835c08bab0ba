"""Known-answer tests for the TLS 1.3 key schedule and record protection,
from RFC 8448 (Example Handshake Traces for TLS 1.3).

Every hex value below is published in RFC 8448 (sections 3, 4 and 7); the
tests derive them from the trace's inputs and open the trace's protected
records, both with the key-schedule functions and through ``TLSDecryptor``
fed an NSS key log, as a capture would be.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from traceviz.decode.tls import keyschedule as ks
from traceviz.decode.tls.crypto import KeyLog, TLSDecryptor


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# --- RFC 8448 section 3: Simple 1-RTT Handshake ---------------------------

S3_IKM = h("8b d4 05 4f b5 5b 9d 63 fd fb ac f9 f0 4b 9f 0d 35 e6 d6 3f 53 75 63 ef d4 62 72 90 0f 89 49 2d")

S3_CLIENT_HELLO = h(
    "01 00 00 c0 03 03 cb 34 ec b1 e7 81 63 ba 1c 38 c6 da cb 19 6a 6d ff a2 1a 8d 99 12 ec 18 a2 ef 62 83"
    "02 4d ec e7 00 00 06 13 01 13 03 13 02 01 00 00 91 00 00 00 0b 00 09 00 00 06 73 65 72 76 65 72 ff 01"
    "00 01 00 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00 23 00 00 00 33 00"
    "26 00 24 00 1d 00 20 99 38 1d e5 60 e4 bd 43 d2 3d 8e 43 5a 7d ba fe b3 c0 6e 51 c1 3c ae 4d 54 13 69"
    "1e 52 9a af 2c 00 2b 00 03 02 03 04 00 0d 00 20 00 1e 04 03 05 03 06 03 02 03 08 04 08 05 08 06 04 01"
    "05 01 06 01 02 01 04 02 05 02 06 02 02 02 00 2d 00 02 01 01 00 1c 00 02 40 01")
S3_SERVER_HELLO = h(
    "02 00 00 56 03 03 a6 af 06 a4 12 18 60 dc 5e 6e 60 24 9c d3 4c 95 93 0c 8a c5 cb 14 34 da c1 55 77 2e"
    "d3 e2 69 28 00 13 01 00 00 2e 00 33 00 24 00 1d 00 20 c9 82 88 76 11 20 95 fe 66 76 2b db f7 c6 72 e1"
    "56 d6 cc 25 3b 83 3d f1 dd 69 b1 b0 4e 75 1f 0f 00 2b 00 02 03 04")
S3_ENCRYPTED_EXTENSIONS = h(
    "08 00 00 24 00 22 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00 1c 00 02"
    "40 01 00 00 00 00")
S3_CERTIFICATE = h(
    "0b 00 01 b9 00 00 01 b5 00 01 b0 30 82 01 ac 30 82 01 15 a0 03 02 01 02 02 01 02 30 0d 06 09 2a 86 48"
    "86 f7 0d 01 01 0b 05 00 30 0e 31 0c 30 0a 06 03 55 04 03 13 03 72 73 61 30 1e 17 0d 31 36 30 37 33 30"
    "30 31 32 33 35 39 5a 17 0d 32 36 30 37 33 30 30 31 32 33 35 39 5a 30 0e 31 0c 30 0a 06 03 55 04 03 13"
    "03 72 73 61 30 81 9f 30 0d 06 09 2a 86 48 86 f7 0d 01 01 01 05 00 03 81 8d 00 30 81 89 02 81 81 00 b4"
    "bb 49 8f 82 79 30 3d 98 08 36 39 9b 36 c6 98 8c 0c 68 de 55 e1 bd b8 26 d3 90 1a 24 61 ea fd 2d e4 9a"
    "91 d0 15 ab bc 9a 95 13 7a ce 6c 1a f1 9e aa 6a f9 8c 7c ed 43 12 09 98 e1 87 a8 0e e0 cc b0 52 4b 1b"
    "01 8c 3e 0b 63 26 4d 44 9a 6d 38 e2 2a 5f da 43 08 46 74 80 30 53 0e f0 46 1c 8c a9 d9 ef bf ae 8e a6"
    "d1 d0 3e 2b d1 93 ef f0 ab 9a 80 02 c4 74 28 a6 d3 5a 8d 88 d7 9f 7f 1e 3f 02 03 01 00 01 a3 1a 30 18"
    "30 09 06 03 55 1d 13 04 02 30 00 30 0b 06 03 55 1d 0f 04 04 03 02 05 a0 30 0d 06 09 2a 86 48 86 f7 0d"
    "01 01 0b 05 00 03 81 81 00 85 aa d2 a0 e5 b9 27 6b 90 8c 65 f7 3a 72 67 17 06 18 a5 4c 5f 8a 7b 33 7d"
    "2d f7 a5 94 36 54 17 f2 ea e8 f8 a5 8c 8f 81 72 f9 31 9c f3 6b 7f d6 c5 5b 80 f2 1a 03 01 51 56 72 60"
    "96 fd 33 5e 5e 67 f2 db f1 02 70 2e 60 8c ca e6 be c1 fc 63 a4 2a 99 be 5c 3e b7 10 7c 3c 54 e9 b9 eb"
    "2b d5 20 3b 1c 3b 84 e0 a8 b2 f7 59 40 9b a3 ea c9 d9 1d 40 2d cc 0c c8 f8 96 12 29 ac 91 87 b4 2b 4d"
    "e1 00 00")
S3_CERTIFICATE_VERIFY = h(
    "0f 00 00 84 08 04 00 80 5a 74 7c 5d 88 fa 9b d2 e5 5a b0 85 a6 10 15 b7 21 1f 82 4c d4 84 14 5a b3 ff"
    "52 f1 fd a8 47 7b 0b 7a bc 90 db 78 e2 d3 3a 5c 14 1a 07 86 53 fa 6b ef 78 0c 5e a2 48 ee aa a7 85 c4"
    "f3 94 ca b6 d3 0b be 8d 48 59 ee 51 1f 60 29 57 b1 54 11 ac 02 76 71 45 9e 46 44 5c 9e a5 8c 18 1e 81"
    "8e 95 b8 c3 fb 0b f3 27 84 09 d3 be 15 2a 3d a5 04 3e 06 3d da 65 cd f5 ae a2 0d 53 df ac d4 2f 74 f3")
S3_SERVER_FINISHED = h(
    "14 00 00 20 9b 9b 14 1d 90 63 37 fb d2 cb dc e7 1d f4 de da 4a b4 2c 30 95 72 cb 7f ff ee 54 54 b7 8f"
    "07 18")
S3_CLIENT_FINISHED = h(
    "14 00 00 20 a8 ec 43 6d 67 76 34 ae 52 5a c1 fc eb e1 1a 03 9e c1 76 94 fa c6 e9 85 27 b6 42 f2 ed d5"
    "ce 61")
S3_NEW_SESSION_TICKET = h(
    "04 00 00 c9 00 00 00 1e fa d6 aa c5 02 00 00 00 b2 2c 03 5d 82 93 59 ee 5f f7 af 4e c9 00 00 00 00 26"
    "2a 64 94 dc 48 6d 2c 8a 34 cb 33 fa 90 bf 1b 00 70 ad 3c 49 88 83 c9 36 7c 09 a2 be 78 5a bc 55 cd 22"
    "60 97 a3 a9 82 11 72 83 f8 2a 03 a1 43 ef d3 ff 5d d3 6d 64 e8 61 be 7f d6 1d 28 27 db 27 9c ce 14 50"
    "77 d4 54 a3 66 4d 4e 6d a4 d2 9e e0 37 25 a6 a4 da fc d0 fc 67 d2 ae a7 05 29 51 3e 3d a2 67 7f a5 90"
    "6c 5b 3f 7d 8f 92 f2 28 bd a4 0d da 72 14 70 f9 fb f2 97 b5 ae a6 17 64 6f ac 5c 03 27 2e 97 07 27 c6"
    "21 a7 91 41 ef 5f 7d e6 50 5e 5b fb c3 88 e9 33 43 69 40 93 93 4a e4 d3 57 00 08 00 2a 00 04 00 00 04"
    "00")

S3 = {
    "early": "33 ad 0a 1c 60 7e c0 3b 09 e6 cd 98 93 68 0c e2 10 ad f3 00 aa 1f 26 60 e1 b2 2e 10 f1 70 f9 2a",
    "derived_hs": "6f 26 15 a1 08 c7 02 c5 67 8f 54 fc 9d ba b6 97 16 c0 76 18 9c 48 25 0c eb ea c3 57 6c 36 11 ba",
    "handshake": "1d c8 26 e9 36 06 aa 6f dc 0a ad c1 2f 74 1b 01 04 6a a6 b9 9f 69 1e d2 21 a9 f0 ca 04 3f be ac",
    "hello_hash": "86 0c 06 ed c0 78 58 ee 8e 78 f0 e7 42 8c 58 ed d6 b4 3f 2c a3 e6 e9 5f 02 ed 06 3c f0 e1 ca d8",
    "c_hs": "b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21",
    "s_hs": "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38",
    "derived_master": "43 de 77 e0 c7 77 13 85 9a 94 4d b9 db 25 90 b5 31 90 a6 5b 3e e2 e4 f1 2d d7 a0 bb 7c e2 54 b4",
    "master": "18 df 06 84 3d 13 a0 8b f2 a4 49 84 4c 5f 8a 47 80 01 bc 4d 4c 62 79 84 d5 a4 1d a8 d0 40 29 19",
    "server_finished_hash": "96 08 10 2a 0f 1c cc 6d b6 25 0b 7b 7e 41 7b 1a 00 0e aa da 3d aa e4 77 7a 76 86 c9 ff 83 df 13",
    "c_ap": "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5",
    "s_ap": "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43",
    "exp_master": "fe 22 f8 81 17 6e da 18 eb 8f 44 52 9e 67 92 c5 0c 9a 3f 89 45 2f 68 d8 ae 31 1b 43 09 d3 cf 50",
    "client_finished_hash": "20 91 45 a9 6e e8 e2 a1 22 ff 81 00 47 cc 95 26 84 65 8d 60 49 e8 64 29 42 6d b8 7c 54 ad 14 3d",
    "res_master": "7d f2 35 f2 03 1d 2a 05 12 87 d0 2b 02 41 b0 bf da f8 6c c8 56 23 1f 2d 5a ba 46 c4 34 ec 19 6c",
    "resumption_psk": "4e cd 0e b6 ec 3b 4d 87 f5 d6 02 8f 92 2c a4 c5 85 1a 27 7f d4 13 11 c9 e6 2d 2c 94 92 e1 c4 f3",
    "server_finished_key": "00 8d 3b 66 f8 16 ea 55 9f 96 b5 37 e8 85 c3 1f c0 68 bf 49 2c 65 2f 01 f2 88 a1 d8 cd c1 9f c8",
    "client_finished_key": "b8 0a d0 10 15 fb 2f 0b d6 5f f7 d4 da 5d 6b f8 3f 84 82 1d 1f 87 fd c7 d3 c7 5b 5a 7b 42 d9 c4",
}
S3_KEYS = {   # secret name -> (key, iv): "derive write/read traffic keys for ..."
    "s_hs": ("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc", "5d 31 3e b2 67 12 76 ee 13 00 0b 30"),
    "c_hs": ("db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01", "5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f"),
    "s_ap": ("9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56", "cf 78 2b 88 dd 83 54 9a ad f1 e9 84"),
    "c_ap": ("17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51", "5b 78 92 3d ee 08 57 90 33 e5 23 d9"),
}

# "{server} send handshake record" (EncryptedExtensions .. Finished), then the
# client's Finished, the NewSessionTicket, application data both ways, alerts.
S3_SERVER_FLIGHT = h(
    "17 03 03 02 a2 d1 ff 33 4a 56 f5 bf f6 59 4a 07 cc 87 b5 80 23 3f 50 0f 45 e4 89 e7 f3 3a f3 5e df"
    "78 69 fc f4 0a a4 0a a2 b8 ea 73 f8 48 a7 ca 07 61 2e f9 f9 45 cb 96 0b 40 68 90 51 23 ea 78 b1 11 b4"
    "29 ba 91 91 cd 05 d2 a3 89 28 0f 52 61 34 aa dc 7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b d9 ae fb 0e 57"
    "f2 71 58 5b 8e a9 bb 35 5c 7c 79 02 07 16 cf b9 b1 18 3e f3 ab 20 e3 7d 57 a6 b9 d7 47 76 09 ae e6 e1"
    "22 a4 cf 51 42 73 25 25 0c 7d 0e 50 92 89 44 4c 9b 3a 64 8f 1d 71 03 5d 2e d6 5b 0e 3c dd 0c ba e8 bf"
    "2d 0b 22 78 12 cb b3 60 98 72 55 cc 74 41 10 c4 53 ba a4 fc d6 10 92 8d 80 98 10 e4 b7 ed 1a 8f d9 91"
    "f0 6a a6 24 82 04 79 7e 36 a6 a7 3b 70 a2 55 9c 09 ea d6 86 94 5b a2 46 ab 66 e5 ed d8 04 4b 4c 6d e3"
    "fc f2 a8 94 41 ac 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68 45 96 c9 60 bd 59 6e ea 52 0a 56 a8 d6 50 f5"
    "63 aa d2 74 09 96 0d ca 63 d3 e6 88 61 1e a5 e2 2f 44 15 cf 95 38 d5 1a 20 0c 27 03 42 72 96 8a 26 4e"
    "d6 54 0c 84 83 8d 89 f7 2c 24 46 1a ad 6d 26 f5 9e ca ba 9a cb bb 31 7b 66 d9 02 f4 f2 92 a3 6a c1 b6"
    "39 c6 37 ce 34 31 17 b6 59 62 22 45 31 7b 49 ee da 0c 62 58 f1 00 d7 d9 61 ff b1 38 64 7e 92 ea 33 0f"
    "ae ea 6d fa 31 c7 a8 4d c3 bd 7e 1b 7a 6c 71 78 af 36 87 90 18 e3 f2 52 10 7f 24 3d 24 3d c7 33 9d 56"
    "84 c8 b0 37 8b f3 02 44 da 8c 87 c8 43 f5 e5 6e b4 c5 e8 28 0a 2b 48 05 2c f9 3b 16 49 9a 66 db 7c ca"
    "71 e4 59 94 26 f7 d4 61 e6 6f 99 88 2b d8 9f c5 08 00 be cc a6 2d 6c 74 11 6d bd 29 72 fd a1 fa 80 f8"
    "5d f8 81 ed be 5a 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c 69 18 a3 96 fa 48 a1 81 d6 b6 fa 4f 9d 62 d5"
    "13 af bb 99 2f 2b 99 2f 67 f8 af e6 7f 76 91 3f a3 88 cb 56 30 c8 ca 01 e0 c6 5d 11 c6 6a 1e 2a c4 c8"
    "59 77 b7 c7 a6 99 9b bf 10 dc 35 ae 69 f5 51 56 14 63 6c 0b 9b 68 c1 9e d2 e3 1c 0b 3b 66 76 30 38 eb"
    "ba 42 f3 b3 8e dc 03 99 f3 a9 f2 3f aa 63 97 8c 31 7f c9 fa 66 a7 3f 60 f0 50 4d e9 3b 5b 84 5e 27 55"
    "92 c1 23 35 ee 34 0b bc 4f dd d5 02 78 40 16 e4 b3 be 7e f0 4d da 49 f4 b4 40 a3 0c b5 d2 af 93 98 28"
    "fd 4a e3 79 4e 44 f9 4d f5 a6 31 ed e4 2c 17 19 bf da bf 02 53 fe 51 75 be 89 8e 75 0e dc 53 37 0d 2b")
S3_CLIENT_FINISHED_RECORD = h(
    "17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0 51 7f e9 b9 3c 7a 4b fc 44 d8"
    "7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c ae ac ab 68 67 d7 26 c4 05 46")
S3_TICKET_RECORD = h(
    "17 03 03 00 de 3a 6b 8f 90 41 4a 97 d6 95 9c 34 87 68 0d e5 13 4a 2b 24 0e 6c ff ac 11 6e 95 d4 1d 6a"
    "f8 f6 b5 80 dc f3 d1 1d 63 c7 58 db 28 9a 01 59 40 25 2f 55 71 3e 06 1d c1 3e 07 88 91 a3 8e fb cf 57"
    "53 ad 8e f1 70 ad 3c 73 53 d1 6d 9d a7 73 b9 ca 7f 2b 9f a1 b6 c0 d4 a3 d0 3f 75 e0 9c 30 ba 1e 62 97"
    "2a c4 6f 75 f7 b9 81 be 63 43 9b 29 99 ce 13 06 46 15 13 98 91 d5 e4 c5 b4 06 f1 6e 3f c1 81 a7 7c a4"
    "75 84 00 25 db 2f 0a 77 f8 1b 5a b0 5b 94 c0 13 46 75 5f 69 23 2c 86 51 9d 86 cb ee ac 87 aa c3 47 d1"
    "43 f9 60 5d 64 f6 50 db 4d 02 3e 70 e9 52 ca 49 fe 51 37 12 1c 74 bc 26 97 68 7e 24 87 46 d6 df 35 30"
    "05 f3 bc e1 86 96 12 9c 81 53 55 6b 3b 6c 67 79 b3 7b f1 59 85 68 4f")
S3_CLIENT_DATA_RECORD = h(
    "17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa 66 bc ab 3f 2b 98"
    "19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6 3a ee bb 21"
    "69 49 15 e4")
S3_SERVER_DATA_RECORD = h(
    "17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f 82 aa 1b 36 e3 0e"
    "fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54 0d d0 32 e1"
    "67 c2 95 5d")
S3_CLIENT_ALERT_RECORD = h("17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3")
S3_SERVER_ALERT_RECORD = h("17 03 03 00 13 b5 8f d6 71 66 eb f5 99 d2 47 20 cf be 7e fa 7a 88 64 a9")
S3_APP_PAYLOAD = bytes(range(50))       # "payload (50 octets): 00 01 02 ... 31"
CLOSE_NOTIFY = h("01 00")


def x(name: str) -> bytes:
    return h(S3[name])


def test_section3_early_and_handshake_secrets():
    early = ks.early_secret("sha256")
    assert early == x("early")
    assert ks.derive_secret("sha256", early, b"derived", ks.transcript_hash("sha256")) == x("derived_hs")
    hs = ks.handshake_secret("sha256", early, S3_IKM)
    assert hs == x("handshake")
    hello = ks.transcript_hash("sha256", S3_CLIENT_HELLO, S3_SERVER_HELLO)
    assert hello == x("hello_hash")
    assert ks.derive_secret("sha256", hs, b"c hs traffic", hello) == x("c_hs")
    assert ks.derive_secret("sha256", hs, b"s hs traffic", hello) == x("s_hs")


def test_section3_hkdf_label_encoding():
    # "key info (13 octets): 00 10 09 74 6c 73 31 33 20 6b 65 79 00", "iv info (12 octets)"
    assert ks.hkdf_label(b"key", b"", 16) == h("00 10 09 74 6c 73 31 33 20 6b 65 79 00")
    assert ks.hkdf_label(b"iv", b"", 12) == h("00 0c 08 74 6c 73 31 33 20 69 76 00")
    assert ks.hkdf_label(b"finished", b"", 32) == h("00 20 0e 74 6c 73 31 33 20 66 69 6e 69 73 68 65 64 00")


def test_section3_master_and_application_secrets():
    master = ks.master_secret("sha256", x("handshake"))
    assert ks.derive_secret("sha256", x("handshake"), b"derived", ks.transcript_hash("sha256")) == x("derived_master")
    assert master == x("master")
    th = ks.transcript_hash("sha256", S3_CLIENT_HELLO, S3_SERVER_HELLO, S3_ENCRYPTED_EXTENSIONS,
                            S3_CERTIFICATE, S3_CERTIFICATE_VERIFY, S3_SERVER_FINISHED)
    assert th == x("server_finished_hash")
    assert ks.derive_secret("sha256", master, b"c ap traffic", th) == x("c_ap")
    assert ks.derive_secret("sha256", master, b"s ap traffic", th) == x("s_ap")
    assert ks.derive_secret("sha256", master, b"exp master", th) == x("exp_master")
    th2 = ks.transcript_hash("sha256", S3_CLIENT_HELLO, S3_SERVER_HELLO, S3_ENCRYPTED_EXTENSIONS,
                             S3_CERTIFICATE, S3_CERTIFICATE_VERIFY, S3_SERVER_FINISHED, S3_CLIENT_FINISHED)
    assert th2 == x("client_finished_hash")
    res = ks.derive_secret("sha256", master, b"res master", th2)
    assert res == x("res_master")
    # The NewSessionTicket's nonce is 00 00.
    assert ks.resumption_psk("sha256", res, h("00 00")) == x("resumption_psk")


@pytest.mark.parametrize("secret", sorted(S3_KEYS))
def test_section3_traffic_keys(secret):
    key, iv = ks.traffic_keys("sha256", x(secret), 16)
    assert (key, iv) == (h(S3_KEYS[secret][0]), h(S3_KEYS[secret][1]))


def test_section3_finished():
    assert ks.finished_key("sha256", x("s_hs")) == x("server_finished_key")
    assert ks.finished_key("sha256", x("c_hs")) == x("client_finished_key")
    th = ks.transcript_hash("sha256", S3_CLIENT_HELLO, S3_SERVER_HELLO, S3_ENCRYPTED_EXTENSIONS,
                            S3_CERTIFICATE, S3_CERTIFICATE_VERIFY)
    assert ks.finished_verify_data("sha256", x("s_hs"), th) == S3_SERVER_FINISHED[4:]
    assert ks.finished_verify_data("sha256", x("c_hs"), x("server_finished_hash")) == S3_CLIENT_FINISHED[4:]


def s3_keylog() -> KeyLog:
    cr = S3_CLIENT_HELLO[6:38].hex()
    return KeyLog.from_text("\n".join([
        "# RFC 8448 section 3 secrets as an NSS key log",
        f"CLIENT_HANDSHAKE_TRAFFIC_SECRET {cr} {x('c_hs').hex()}",
        f"SERVER_HANDSHAKE_TRAFFIC_SECRET {cr} {x('s_hs').hex()}",
        f"CLIENT_TRAFFIC_SECRET_0 {cr} {x('c_ap').hex()}",
        f"SERVER_TRAFFIC_SECRET_0 {cr} {x('s_ap').hex()}",
        f"EXPORTER_SECRET {cr} {x('exp_master').hex()}",
    ]))


def s3_decryptor(keylog: KeyLog | None = None) -> TLSDecryptor:
    return TLSDecryptor(0x0304, 0x1301, S3_CLIENT_HELLO[6:38], S3_SERVER_HELLO[6:38], keylog or s3_keylog())


def test_section3_whole_session_through_the_decryptor():
    dec = s3_decryptor()
    assert dec.available, dec.reason
    flight = S3_ENCRYPTED_EXTENSIONS + S3_CERTIFICATE + S3_CERTIFICATE_VERIFY + S3_SERVER_FINISHED
    # Records in the order they cross the wire; each direction keeps its own state.
    steps = [
        ("s2c", S3_SERVER_FLIGHT, (22, flight)),
        ("c2s", S3_CLIENT_FINISHED_RECORD, (22, S3_CLIENT_FINISHED)),
        ("s2c", S3_TICKET_RECORD, (22, S3_NEW_SESSION_TICKET)),
        ("c2s", S3_CLIENT_DATA_RECORD, (23, S3_APP_PAYLOAD)),
        ("s2c", S3_SERVER_DATA_RECORD, (23, S3_APP_PAYLOAD)),
        ("c2s", S3_CLIENT_ALERT_RECORD, (21, CLOSE_NOTIFY)),
        ("s2c", S3_SERVER_ALERT_RECORD, (21, CLOSE_NOTIFY)),
    ]
    for direction, record, want in steps:
        assert dec.decrypt(direction, record[:5], record[5:]) == want
    assert (dec.decrypted, dec.failed) == (7, 0)


def test_section3_plaintext_records_pass_through():
    dec = s3_decryptor()
    sh_record = h("16 03 03 00 5a") + S3_SERVER_HELLO
    assert dec.decrypt("s2c", sh_record[:5], sh_record[5:]) == (22, S3_SERVER_HELLO)
    assert dec.decrypt("s2c", h("14 03 03 00 01"), b"\x01") == (20, b"\x01")
    assert dec.decrypted == 0


def test_section3_tampered_record_is_counted_not_raised():
    dec = s3_decryptor()
    bad = bytearray(S3_SERVER_FLIGHT)
    bad[100] ^= 1
    assert dec.decrypt("s2c", bytes(bad[:5]), bytes(bad[5:])) is None
    assert dec.failed == 1
    # A truncated body and an empty body are bad data too.
    assert dec.decrypt("c2s", S3_CLIENT_FINISHED_RECORD[:5], S3_CLIENT_FINISHED_RECORD[5:20]) is None
    assert dec.decrypt("c2s", S3_CLIENT_FINISHED_RECORD[:5], b"") is None


def test_section3_application_keys_alone_still_open_application_data():
    # A key log with only the traffic secrets (no handshake secrets): the
    # handshake records fail, the application records open by trial.
    cr = S3_CLIENT_HELLO[6:38].hex()
    log = KeyLog.from_text(f"CLIENT_TRAFFIC_SECRET_0 {cr} {x('c_ap').hex()}\n"
                           f"SERVER_TRAFFIC_SECRET_0 {cr} {x('s_ap').hex()}\n")
    dec = s3_decryptor(log)
    assert dec.decrypt_record("s2c", S3_SERVER_FLIGHT) is None
    assert dec.decrypt_record("c2s", S3_CLIENT_FINISHED_RECORD) is None
    assert dec.decrypt_record("s2c", S3_TICKET_RECORD) == (22, S3_NEW_SESSION_TICKET)
    assert dec.decrypt_record("c2s", S3_CLIENT_DATA_RECORD) == (23, S3_APP_PAYLOAD)


def test_unknown_client_random_is_reported():
    dec = TLSDecryptor(0x0304, 0x1301, bytes(32), S3_SERVER_HELLO[6:38], s3_keylog())
    assert not dec.available
    assert dec.reason == "no key-log entry for this client random"
    assert dec.decrypt_record("s2c", S3_SERVER_FLIGHT) is None


# --- RFC 8448 section 4: Resumed 0-RTT Handshake --------------------------

S4_CLIENT_HELLO_PREFIX = h(   # "ClientHello prefix (477 octets)": up to the binders
    "01 00 01 fc 03 03 1b c3 ce b6 bb e3 9c ff 93 83 55 b5 a5 0a db 6d b2 1b 7a 6a f6 49 d7 b4 bc 41 9d 78"
    "76 48 7d 95 00 00 06 13 01 13 03 13 02 01 00 01 cd 00 00 00 0b 00 09 00 00 06 73 65 72 76 65 72 ff 01"
    "00 01 00 00 0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00 33 00 26 00 24 00"
    "1d 00 20 e4 ff b6 8a c0 5f 8d 96 c9 9d a2 66 98 34 6c 6b e1 64 82 ba dd da fe 05 1a 66 b4 f1 8d 66 8f"
    "0b 00 2a 00 00 00 2b 00 03 02 03 04 00 0d 00 20 00 1e 04 03 05 03 06 03 02 03 08 04 08 05 08 06 04 01"
    "05 01 06 01 02 01 04 02 05 02 06 02 02 02 00 2d 00 02 01 01 00 1c 00 02 40 01 00 15 00 57"
    + " 00" * 87 +
    "00 29 00 dd 00 b8 00 b2 2c 03 5d 82 93 59 ee 5f f7 af 4e c9 00 00 00 00 26 2a 64 94 dc 48 6d 2c 8a 34"
    "cb 33 fa 90 bf 1b 00 70 ad 3c 49 88 83 c9 36 7c 09 a2 be 78 5a bc 55 cd 22 60 97 a3 a9 82 11 72 83 f8"
    "2a 03 a1 43 ef d3 ff 5d d3 6d 64 e8 61 be 7f d6 1d 28 27 db 27 9c ce 14 50 77 d4 54 a3 66 4d 4e 6d a4"
    "d2 9e e0 37 25 a6 a4 da fc d0 fc 67 d2 ae a7 05 29 51 3e 3d a2 67 7f a5 90 6c 5b 3f 7d 8f 92 f2 28 bd"
    "a4 0d da 72 14 70 f9 fb f2 97 b5 ae a6 17 64 6f ac 5c 03 27 2e 97 07 27 c6 21 a7 91 41 ef 5f 7d e6 50"
    "5e 5b fb c3 88 e9 33 43 69 40 93 93 4a e4 d3 57 fa d6 aa cb")
S4_BINDER = h("3a dd 4f b2 d8 fd f8 22 a0 ca 3c f7 67 8e f5 e8 8d ae 99 01 41 c5 92 4d 57 bb 6f a3 1b 9e 5f 9d")
S4 = {
    "early": "9b 21 88 e9 b2 fc 6d 64 d7 1d c3 29 90 0e 20 bb 41 91 50 00 f6 78 aa 83 9c bb 79 7c b7 d8 33 2c",
    "binder_hash": "63 22 4b 2e 45 73 f2 d3 45 4c a8 4b 9d 00 9a 04 f6 be 9e 05 71 1a 83 96 47 3a ef a0 1e 92 4a 14",
    "binder_key": "69 fe 13 1a 3b ba d5 d6 3c 64 ee bc c3 0e 39 5b 9d 81 07 72 6a 13 d0 74 e3 89 db c8 a4 e4 72 56",
    "binder_finished_key": "55 88 67 3e 72 cb 59 c8 7d 22 0c af fe 94 f2 de a9 a3 b1 60 9f 7d 50 e9 0a 48 22 7d b9 ed 7e aa",
    "c_e": "3f bb e6 a6 0d eb 66 c3 0a 32 79 5a ba 0e ff 7e aa 10 10 55 86 e7 be 5c 09 67 8d 63 b6 ca ab 62",
}
S4_EARLY_KEY = h("92 02 05 a5 b7 bf 21 15 e6 fc 5c 29 42 83 4f 54")
S4_EARLY_IV = h("6d 47 5f 09 93 c8 e5 64 61 0d b2 b9")
S4_EARLY_DATA_RECORD = h("17 03 03 00 17 ab 1d f4 20 e7 5c 45 7a 7c c5 d2 84 4f 76 d5 ae e4 b4 ed bf 04 9b e0")
S4_END_OF_EARLY_DATA_RECORD = h("17 03 03 00 15 ac a6 fc 94 48 41 29 8d f9 95 93 72 5f 9b f9 75 44 29 b1 2f 09")


def test_section4_psk_binder():
    assert len(S4_CLIENT_HELLO_PREFIX) == 477
    early = ks.early_secret("sha256", h(S3["resumption_psk"]))
    assert early == h(S4["early"])
    binder_key = ks.derive_secret("sha256", early, b"res binder", ks.transcript_hash("sha256"))
    assert binder_key == h(S4["binder_key"])
    assert ks.finished_key("sha256", binder_key) == h(S4["binder_finished_key"])
    binder_hash = ks.transcript_hash("sha256", S4_CLIENT_HELLO_PREFIX)
    assert binder_hash == h(S4["binder_hash"])
    assert hmac.new(h(S4["binder_finished_key"]), binder_hash, hashlib.sha256).digest() == S4_BINDER


def test_section4_early_traffic_secret_and_keys():
    client_hello = S4_CLIENT_HELLO_PREFIX + h("00 21 20") + S4_BINDER      # the 512-octet ClientHello
    c_e = ks.derive_secret("sha256", h(S4["early"]), b"c e traffic", ks.transcript_hash("sha256", client_hello))
    assert c_e == h(S4["c_e"])
    assert ks.traffic_keys("sha256", c_e, 16) == (S4_EARLY_KEY, S4_EARLY_IV)


@pytest.mark.parametrize("flagged", [True, False])
def test_section4_zero_rtt_records(flagged):
    cr = S4_CLIENT_HELLO_PREFIX[6:38]
    log = KeyLog.from_text(f"CLIENT_EARLY_TRAFFIC_SECRET {cr.hex()} {S4['c_e'].replace(' ', '')}")
    dec = TLSDecryptor(0x0304, 0x1301, cr, bytes(32), log)
    assert dec.available
    got = dec.decrypt_record("c2s", S4_EARLY_DATA_RECORD, early=flagged)
    assert got == (23, b"ABCDEF")           # "payload (6 octets): 41 42 43 44 45 46"
    # EndOfEarlyData: a handshake message of type 5 and length 0.
    assert dec.decrypt_record("c2s", S4_END_OF_EARLY_DATA_RECORD) == (22, h("05 00 00 00"))


# --- RFC 8448 section 7: Compatibility Mode (full session, other secrets) --

S7_CLIENT_RANDOM = h("4e 64 0a 3f 2c 27 38 f0 9c 94 18 bd 78 ed cc d7 55 9d 05 31 19 92 76 d4 d9 2a 0e 9e e9 d7 7d 09")
S7 = {
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET": "2c3cb24a1081edb59518ee6861e89a6b72b3801afe7713e4cbbc21c0795bf831",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET": "cace3d555cc1c577cf970cff28cf978d6a9800085442e18d695b50f3151d18c8",
    "CLIENT_TRAFFIC_SECRET_0": "743e4c6b56cf3909d1b06d01956ccd2c4b37758449aec41d98dae44924eaa299",
    "SERVER_TRAFFIC_SECRET_0": "b6b8144aa335ed3059c0c9c8f0ecabf7afc94af6643bdecdfd9210188fab7451",
}
S7_KEYS = {
    "SERVER_HANDSHAKE_TRAFFIC_SECRET": ("041091fdab29f2c8abfb156dc5fc8d54", "7464d791685de05998fcbadb"),
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET": ("62d13c13ffd7402fc1c09e3d163665cb", "7166f20028bf146dcfbd5a40"),
    "SERVER_TRAFFIC_SECRET_0": ("edc4cbd0041c28cc7167441d7ca53e6a", "bf6c7d8e0a9545b427dcf139"),
    "CLIENT_TRAFFIC_SECRET_0": ("33d7f9709756c966488ad4438437e673", "c5f30d34b0e91b7d6c8eea65"),
}
S7_SERVER_FLIGHT = h(
    "17 03 03 02 a2 48 de 89 1d 9c 36 24 a6 7a 6c 6f 06 01 ab 7a c2 0c 1f 6a 9e 14 d2 e6 00 7e 99 9e 13 03"
    "67 a8 af 1b cf ea 94 98 fb ce 19 df 45 05 ee ce 3a 25 da 52 3c be 55 ea 1b 3b da 4e 91 99 5e 45 5d 50"
    "0a 4f aa 62 27 b7 11 1e 1c 85 47 e2 d7 c1 79 db 21 53 03 d2 58 27 f3 cd 18 f4 8f 64 91 32 8c f5 c0 f8"
    "14 d3 88 15 0b d9 e9 26 4a ae 49 1d b6 99 50 69 be a1 76 65 d5 e0 c8 17 28 4d 4a c2 18 80 05 4c 36 57"
    "33 1e 23 a9 30 4d c8 8a 15 c0 4e c8 0b d3 85 2b f7 f9 d3 c6 61 5b 15 fa c8 3b bc a0 31 c6 d2 31 0d 9f"
    "5d 7a 4b 02 0a 4f 7c 19 06 2b 65 c0 5a 1d 32 64 b5 57 ec 9d 8e 0f 7c ee 27 e3 6f 79 30 39 de 8d d9 6e"
    "df ca 90 09 e0 65 10 34 bf f3 1d 7f 34 9e ec e0 1d 99 fc b5 fc ab 84 0d 77 07 c7 22 99 c3 b5 d0 45 64"
    "e8 80 a3 3c 5e 84 6c 76 2e 3d 92 2b b5 53 03 d1 d8 7c c0 f0 65 73 f1 7d cb 9b 8f fd 35 bb d8 83 c1 cb"
    "3a a2 4f cc 32 50 05 f7 68 ce 2f b6 24 ca 97 b6 c4 d9 8e 17 f3 5b c2 c7 94 0a 06 10 0c 2d 44 8d b7 18"
    "0b 2d 86 21 64 43 5c 9c 21 0e 98 60 39 4e 05 aa b2 3f f1 b0 20 3f 66 2c 58 8d a5 bc 44 11 47 7a 30 b4"
    "11 36 c4 88 a0 a6 3f ca b5 c1 5a c6 13 22 6d ae 82 7a 1d 1f e9 5e ce 6b 30 bc ee 15 60 a8 d4 08 d2 64"
    "55 5e 76 0f 9b fc 62 4c 2c 87 fd 04 56 c9 bf b4 1b cd 1a 7b 21 27 86 d2 b6 7f d5 78 04 fa cf a1 ee f7"
    "cf 29 19 d8 b9 98 c9 78 9f 76 3b 4d 9c aa 09 3a 9d ed 43 17 5d 46 a7 6b 4d 54 f0 ce 0c 5d 22 59 b6 07"
    "e3 0a 9d 24 12 63 87 4f a5 9d 6f 57 0d c4 0d 83 a2 d8 3b f9 e9 85 0d 45 4c 57 80 65 35 a8 99 8a e0 35"
    "7d f9 2f 00 b9 66 73 44 c2 41 14 cc c9 ef 53 91 24 b2 04 e7 e6 e7 48 c3 0a 28 a3 d1 d1 83 99 72 43 ea"
    "cc bb d3 3b 0c 11 15 a0 32 71 06 a1 e6 a7 52 71 d4 98 30 86 f6 32 ff 0e b8 b4 c6 31 02 cb ce f5 bb 72"
    "da e1 27 9d 5d e8 eb 19 09 6d 8c db 07 fa 8e a9 89 78 8f ac 23 e6 6e 04 88 c1 93 f3 f3 fe a8 c8 83 88"
    "96 bf 3a e4 b6 84 8d 42 ce d4 bd f4 1a be 6f c3 31 b4 42 25 e7 a1 f7 d3 56 41 47 d5 45 8e 71 aa 90 9c"
    "b0 2b e9 58 bb c4 2e 3a a5 a2 7c c6 ea f4 b6 fe 51 ae 44 95 69 4d 8a b6 32 0a ab 92 01 83 fd 5b 31 a3"
    "59 04 2f bd 67 39 1e c5 e4 d1 89 2a 2e 52 10 14 1a 49 4e 93 01 b2 4a 11 3c 47 4c 7f 2a 73 45 78 47")
S7_CLIENT_FINISHED_RECORD = h(
    "17 03 03 00 35 32 d0 30 e2 73 77 3a 86 96 c7 99 98 1a f6 ce d0 7f 87 48 2e 81 56 5e 39 4e 87 c8 67 f3"
    "3d f3 d6 5b 75 06 f1 a6 26 af 91 d4 82 1d 5f 7a 1f 21 0e f8 dd 3c 6d 16")
S7_CLIENT_ALERT_RECORD = h("17 03 03 00 13 0f 62 91 55 38 2d ba 23 c4 e2 c5 f7 f8 4e 6f 2e d3 08 3d")
S7_SERVER_ALERT_RECORD = h("17 03 03 00 13 b7 25 7b 0f ec af 69 d4 f0 9e 3f 89 1e 2a 25 d1 e2 88 45")


@pytest.mark.parametrize("label", sorted(S7_KEYS))
def test_section7_traffic_keys(label):
    key, iv = ks.traffic_keys("sha256", h(S7[label]), 16)
    assert (key.hex(), iv.hex()) == S7_KEYS[label]


def test_section7_compatibility_mode_session():
    """Middlebox-compatibility CCS records in both directions, then the same
    flow as section 3 with a different key log."""
    log = KeyLog.from_text("\n".join(f"{label} {S7_CLIENT_RANDOM.hex()} {secret}" for label, secret in S7.items()))
    dec = TLSDecryptor(0x0304, 0x1301, S7_CLIENT_RANDOM, bytes(32), log)
    assert dec.decrypt("s2c", h("14 03 03 00 01"), b"\x01") == (20, b"\x01")
    ctype, flight = dec.decrypt_record("s2c", S7_SERVER_FLIGHT)
    assert ctype == 22
    # EncryptedExtensions first, Finished (32-byte verify data) last.
    assert flight[0] == 8 and flight[-36:-32] == h("14 00 00 20")
    assert dec.decrypt("c2s", h("14 03 03 00 01"), b"\x01") == (20, b"\x01")
    ctype, fin = dec.decrypt_record("c2s", S7_CLIENT_FINISHED_RECORD)
    assert (ctype, fin[:4], len(fin)) == (22, h("14 00 00 20"), 36)
    assert dec.decrypt_record("c2s", S7_CLIENT_ALERT_RECORD) == (21, CLOSE_NOTIFY)
    assert dec.decrypt_record("s2c", S7_SERVER_ALERT_RECORD) == (21, CLOSE_NOTIFY)
    assert dec.failed == 0
