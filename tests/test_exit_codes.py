"""Exit codes scripts can trust, and one line for each failure.

0 success, 1 a finding asked for with --fail, 2 bad input (or an output we
cannot write), 3 a bug in traceviz.  Ground truth: the files made here and
tshark's reading of the extreme-timestamp capture.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from traceviz import cli

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
CUT_SHORT = CORPUS / "pcap" / "corrupt" / "cut-short__ndpi_fuzz-2021-10-13.pcap"
TLS = ROOT / "captures" / "tls12-vs-tls13.pcapng"


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        cli.main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    out, err = capsys.readouterr()
    return code, out, err


def test_bad_input_after_a_load_warning_is_one_line(capsys, tmp_path):
    """The file loads with a warning (a record cut short), then the request is refused: one line."""
    code, out, err = run(capsys, "handshakes", CUT_SHORT, "--chart", tmp_path / "x.html", "--figure", "nope")
    assert code == 2 and out == ""
    # the refusal (this capture has no handshakes to time, or no figure 'nope'), never the held warning
    assert err.count("\n") == 1 and ("no figure 'nope'" in err or "does not apply" in err)
    assert not any(line.startswith("warning:") for line in err.splitlines())   # held, not printed after it


def test_warnings_still_shown_when_the_command_succeeds(capsys):
    code, _, err = run(capsys, "connections", CUT_SHORT)
    assert code == 0 and "warning:" in err and "record header cut short" in err


def test_internal_error_is_exit_3_in_one_line(capsys, monkeypatch):
    from traceviz.cli import tables

    def broken(tl):
        return {}["no such key"]

    monkeypatch.setattr(tables, "describe", broken)
    monkeypatch.delenv("TRACEVIZ_DEBUG", raising=False)
    code, out, err = run(capsys, "info", TLS)
    assert code == 3 and out == ""
    assert err.count("\n") == 1
    assert "internal error in" in err and "KeyError" in err and "please report" in err and "TRACEVIZ_DEBUG=1" in err
    monkeypatch.setenv("TRACEVIZ_DEBUG", "1")
    with pytest.raises(KeyError):
        cli.main(["info", str(TLS)])


@pytest.mark.parametrize("command", [["handshakes", TLS, "--chart"], ["report", TLS, "-o"]])
def test_unwritable_output_is_bad_input(capsys, tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "out.html"                 # a directory that is a file: never writable
    code, _, err = run(capsys, *command, target)
    assert code == 2
    assert err.count("\n") == 1 and str(blocker) in err and "cannot write" in err


def test_keylog_from_dev_null_is_read(capsys):
    code, _, err = run(capsys, "tls", TLS, "--keylog", "/dev/null", "--json")
    assert code == 0 and "no such file" not in err


def test_missing_keylog_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "tls", TLS, "--keylog", tmp_path / "nope.keys")
    assert code == 2 and err.count("\n") == 1 and "no such file" in err


def _pcapng_with_offset(path: Path, offset_s: int, resol: int) -> Path:
    """Two TCP frames on an interface whose ``if_tsoffset`` and ``if_tsresol`` are extreme."""
    def block(t, body):
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", t, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    def opt(code, val):
        return struct.pack("<HH", code, len(val)) + val + b"\0" * (-len(val) % 4)

    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    frames = [b"\x02" * 12 + b"\x08\x00" + ip + struct.pack(">HHIIBBHHH", 4000, 80, 1, 0, 0x50, flags, 100, 0, 0)
              for flags in (0x02, 0x12)]
    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           block(1, struct.pack("<HHI", 1, 0, 0) + opt(9, bytes([resol])) + opt(14, struct.pack("<q", offset_s))
                 + opt(0, b""))]
    for i, f in enumerate(frames):
        units = 1_700_000_000_000_000 + i * 1000
        out.append(block(6, struct.pack("<IIIII", 0, units >> 32, units & 0xFFFFFFFF, len(f), len(f)) + f))
    path.write_bytes(b"".join(out))
    return path


@pytest.mark.parametrize("offset_s,resol", [(10 ** 12, 6), (-9 * 10 ** 18, 6), (0, 0x80 | 63), (0, 19)])
def test_extreme_timestamps_are_shown_not_fatal(capsys, tmp_path, offset_s, resol):
    path = _pcapng_with_offset(tmp_path / "ts.pcapng", offset_s, resol)
    if shutil.which("tshark"):
        assert subprocess.run(["tshark", "-r", str(path)], capture_output=True).stdout.count(b"\n") == 2
    code, out, err = run(capsys, "info", path)
    assert code == 0 and "frames" in out, err
    code, _, err = run(capsys, "handshakes", path, "--chart", tmp_path / "ladder.html")
    assert code == 0, err


def test_chart_text_writes_a_quote_plotly_understands():
    """plotly.js turns numeric entities back into characters but not ``&quot;``."""
    from traceviz.charts.text import safe
    assert safe('GET /a?"b"') == "GET /a?&#34;b&#34;"
    assert "&quot;" not in safe('"')


def test_terminal_text_escapes_c0_and_c1_controls():
    from traceviz.output import printable
    hostile = "a\x1b]0;owned\x07b\x9b2Jc\x9d0;t\x9c\u2028"
    shown = printable(hostile)
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 or c == "\u2028" for c in shown)
    assert shown == "a\\x1b]0;owned\\x07b\\x9b2Jc\\x9d0;t\\x9c\\u2028"


def test_odd_certificates_print_no_library_warnings():
    """A certificate with a negative serial makes cryptography warn on stderr; the sender
    chose it, so it is read quietly (the fuzzer found the warnings on its stderr)."""
    import datetime
    import warnings

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    from traceviz.decode.tls.messages import describe_certificate
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd.test")])
    now = datetime.datetime(2024, 1, 1)
    der = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
           .serial_number(0x55).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
           .sign(key, hashes.SHA256()).public_bytes(Encoding.DER))
    der = der.replace(b"\x02\x01\x55", b"\x02\x01\xd5", 1)         # the serial, now negative
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        info = describe_certificate(der)
    assert info.subject == "CN=odd.test"


@pytest.mark.parametrize("command, merged", [(("timeline", "h2-stalls"), False), (("tcpgraph", "h2-stalls"), True)])
def test_a_reader_that_stops_early_is_not_a_failure(command, merged):
    """``traceviz timeline F | head`` (and ``2>&1 | head``, which closes stderr too): the reader
    leaving early is a normal run, exit 0 -- rich's own answer to a closed pipe is exit 1, the
    code scripts read as a --fail finding."""
    import os
    import sys
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(3):       # where the pipe breaks depends on timing: a few tries each
        p = subprocess.Popen([sys.executable, "-m", "traceviz", *command], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT if merged else subprocess.PIPE, env=env, cwd=ROOT)
        p.stdout.read(100)
        p.stdout.close()
        if not merged:
            p.stderr.close()
        assert p.wait(timeout=120) == 0
