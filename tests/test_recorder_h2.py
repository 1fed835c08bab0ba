"""The h2-stalls recording's own logic: the relay's targeted data drop (sans-I/O,
frames built with scapy) and the ground truth the scenario derives from its logs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "captures" / "record"))
from relay import DelayLine, DropRules, LinkSpec  # noqa: E402

scapy = pytest.importorskip("scapy.all")
ISN = 4_000_000_000          # near the wrap, so relative offsets must be taken modulo 2**32


def seg(seq: int, flags: str = "PA", n: int = 0, sport: int = 443) -> bytes:
    return bytes(scapy.Ether() / scapy.IP(src="10.91.0.2", dst="10.91.0.1")
                 / scapy.TCP(sport=sport, dport=50000, seq=seq % (1 << 32), flags=flags) / (b"x" * n))


def test_drops_the_segment_holding_the_offset_once_and_logs_what_followed():
    rules = DropRules(data=[{"sport": 443, "offset": 3000}])
    line = DelayLine(0.0, rules=rules)
    assert line.push(seg(ISN, "SA"), 0.0)
    assert line.push(seg(ISN + 1, n=1448), 0.1)                  # offsets 0..1447
    assert line.push(seg(ISN + 1 + 1448, n=1448), 0.2)           # 1448..2895
    assert not line.push(seg(ISN + 1 + 2896, n=1448), 0.3)       # 2896..4343 holds 3000: dropped
    assert line.push(seg(ISN + 1 + 4344, n=1448), 0.4)           # arrives beyond the hole
    assert line.push(seg(ISN + 1 + 2896, n=1448), 0.5)           # the retransmission passes and fills it
    assert line.push(seg(ISN + 1 + 5792, n=1448), 0.6)           # no longer watched
    assert line.push(seg(ISN + 1 + 2896, n=100, sport=8443), 0.7)  # other flows untouched
    (drop,) = rules.dropped
    assert (drop["reason"], drop["offset"], drop["len"], drop["sport"]) == ("data-rule", 2896, 1448, 443)
    assert [(a["offset"], a["len"]) for a in drop["after"]] == [(4344, 1448), (2896, 1448)]


def test_link_spec_carries_the_data_rule():
    spec = LinkSpec("tvH-c0t", "tvH-s0t", delay_ms=25, drop_data=[{"sport": 443, "offset": 100000}])
    back = LinkSpec.from_arg(spec.to_arg())
    ab, ba = back.lines()
    assert back.drop_data == spec.drop_data and ab.rules.data == ba.rules.data == spec.drop_data


def test_hol_truth_from_the_logs():
    from scenarios_h2 import hol_truth
    drop = {"offset": 1000, "len": 500, "wall": 10.0,
            "after": [{"offset": 1500, "len": 500, "wall": 10.01}, {"offset": 2000, "len": 500, "wall": 10.02},
                      {"offset": 1000, "len": 500, "wall": 10.06}]}
    records = [dict(type="DATA", stream=1, start=600, end=1200),     # ends in the hole: its bytes were lost
               dict(type="DATA", stream=3, start=1200, end=1800),    # ends in the first segment after it
               dict(type="HEADERS", stream=5, start=1800, end=2300), # ends in the second
               dict(type="DATA", stream=5, start=2300, end=2600),    # ends beyond what arrived: not held
               dict(type="SETTINGS", stream=0, start=100, end=200)]
    t = hol_truth(drop, records, delay_s=0.025)
    assert t["held_bytes"] == 1000 and t["fill_arrival"] == pytest.approx(10.085)
    assert t["streams"] == {"1": {"wait_ms": pytest.approx(50.0), "lost": True},
                            "3": {"wait_ms": pytest.approx(50.0), "lost": False},
                            "5": {"wait_ms": pytest.approx(40.0), "lost": False}}
