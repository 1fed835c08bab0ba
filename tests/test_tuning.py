"""The loader's process-wide tuning: applied while loads run, restored after the last,
and two loads in two threads give what they give one at a time."""

from __future__ import annotations

import gc
import sys
import threading

import pandas as pd
import pytest

import traceviz
from traceviz import _tuning

CAPTURES = ["h2-multiplexing", "tcp-handshakes", "proxy-nginx-502-504", "tls12-vs-tls13"]


def tables(tl):
    return {name: getattr(tl, name) for name in ("packets", "connections", "events", "requests", "tls")}


def test_settings_apply_during_a_big_load_and_are_restored(monkeypatch):
    monkeypatch.setattr(_tuning, "BIG_INPUT", 0)          # every input counts as big
    before = _tuning.state()
    seen = []
    traceviz.load("tcp-handshakes", progress=lambda stage: seen.append((sys.getswitchinterval(), gc.isenabled())))
    assert seen and all(s <= _tuning._QUICK_SWITCH and not collecting for s, collecting in seen)
    assert _tuning.state() == before and before["loads"] == 0 and before["gc"]


def test_a_collector_the_user_paused_stays_paused(monkeypatch):
    monkeypatch.setattr(_tuning, "BIG_INPUT", 0)
    gc.disable()
    try:
        traceviz.load("tcp-handshakes")
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("big", [False, True])
def test_two_threads_load_as_one_does(monkeypatch, big):
    if big:
        monkeypatch.setattr(_tuning, "BIG_INPUT", 0)
    before = _tuning.state()
    serial = {name: tables(traceviz.load(name)) for name in CAPTURES}
    results, errors = {}, []
    start = threading.Barrier(len(CAPTURES))

    def work(name):
        try:
            start.wait()
            for _ in range(3):                             # overlap the loads' starts and ends
                results[name] = tables(traceviz.load(name))
        except Exception as exc:                           # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in CAPTURES]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    for name in CAPTURES:
        for table, df in serial[name].items():
            pd.testing.assert_frame_equal(results[name][table], df, obj=f"{name}.{table}")
    assert _tuning.state() == before                       # nothing left switched on
