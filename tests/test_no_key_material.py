"""Key material never leaves traceviz: no command prints, writes or charts a secret.

Every bundled capture that has keys (a key log, embedded secrets, an RSA
key) is run through every command with them: the text, --json and HTML
outputs are searched for each secret, in hex (either case) and base64, for
the TLS 1.3 traffic keys and IVs derived from them, and for each line and
private number of the RSA key.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from traceviz import cli
from traceviz.decode.tls.keyschedule import traffic_keys

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
CORPUS = ROOT / "tests" / "corpus" / "pcap"

KEYED = sorted(p for base in (CAPTURES, CORPUS) for p in base.rglob("*.pcap*")
               if "record" not in p.parts and (p.with_suffix(".keys").is_file() or "dsb" in p.name))
RSA_KEY = CAPTURES / "tls12-rsa.key.pem"
# Each output that can carry a TLS or HTTP detail: the tables (terminal and JSON) and the charts.
TEXT_COMMANDS = (["info", "--json"], ["timeline", "--json"], ["requests", "--json"], ["tls"])


def _forms(secret: bytes) -> set[str]:
    out = {secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode()}
    return {s for s in out if len(s) >= 16}


def _needles() -> set[str]:
    found: set[str] = set()
    for keys in {p.with_suffix(".keys") for p in KEYED} | set(CAPTURES.glob("*.keys")):
        if not keys.is_file():
            continue
        for line in keys.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) != 3 or line.startswith("#") or not re.fullmatch(r"[0-9a-fA-F]+", parts[2]):
                continue
            secret = bytes.fromhex(parts[2])
            found |= _forms(secret)
            if parts[0].endswith("TRAFFIC_SECRET_0") or "HANDSHAKE_TRAFFIC" in parts[0]:
                hash_name = "sha384" if len(secret) == 48 else "sha256"
                for key_len in (16, 32):
                    key, iv = traffic_keys(hash_name, secret, key_len)
                    found |= _forms(key) | _forms(iv)
    pem = RSA_KEY.read_text()
    found |= {line for line in pem.splitlines() if len(line) >= 16 and not line.startswith("-----")}
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    numbers = load_pem_private_key(pem.encode(), None).private_numbers()
    for n in (numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp):
        found |= {str(n)[:40], f"{n:x}"[:40], f"{n:X}"[:40]}
    return found


def _ours(html: str) -> str:
    """A page without the plotly.js bundle it inlines (3 MB of library code, the same in every page)."""
    from plotly.offline import get_plotlyjs
    return html.replace(get_plotlyjs(), "")


def _run(capsys, args) -> str:
    capsys.readouterr()
    try:
        cli.main([str(a) for a in args])
    except SystemExit:
        pass
    out, err = capsys.readouterr()
    return out + err


def _keys_for(path: Path) -> list[str]:
    args = []
    if path.with_suffix(".keys").is_file():
        args += ["--keylog", str(path.with_suffix(".keys"))]
    if path.name == "tls12-rsa.pcapng":
        args += ["--rsa-key", str(RSA_KEY)]
    return args


def test_no_command_shows_key_material(capsys, tmp_path):
    needles = _needles()
    assert len(needles) > 200                     # the secrets, derived keys and key lines are all there
    seen: list[tuple[str, str]] = []
    runs = 0
    for path in KEYED:
        for command in TEXT_COMMANDS:
            seen.append((f"{command} {path.name}", _run(capsys, [command[0], path, *command[1:], *_keys_for(path)])))
            runs += 1
        for recipe in ("tls",):
            chart = tmp_path / f"{path.stem}-{recipe}.html"
            seen.append((f"{recipe} --chart {path.name}", _run(capsys, [recipe, path, "--chart", chart, *_keys_for(path)])))
            if chart.is_file():
                seen.append((chart.name, _ours(chart.read_text(errors="replace"))))
            runs += 1
    report = tmp_path / "report.html"
    _run(capsys, ["report", CAPTURES / "tls12-rsa.pcapng", "--rsa-key", RSA_KEY, "--keylog",
                  CAPTURES / "tls12-rsa.keys", "-o", report])
    seen.append(("report", _ours(report.read_text(errors="replace"))))
    assert runs >= 5 * len(KEYED) >= 50 and any("decrypted" in text for _, text in seen)
    leaks = [(where, n[:12]) for where, text in seen for n in needles if n in text]
    assert leaks == []
