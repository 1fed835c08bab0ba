"""The fast paths of a big HAR's reading, each held to the plain way of doing the same thing.

A HAR is cut as it is read (bodies, header, cookie and query lists), a big
one in two halves by two processes, its numbers converted and its URLs
split once per origin, and its requests built column by column.  Every test
here compares a fast path with the slow, obvious one on generated inputs
meant to break it: escaped quotes and backslashes at chunk edges, brackets
and braces inside strings, nested lists, numbers JSON allows but no HAR
writes.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from traceviz.sources import jsonfile
from traceviz.sources.har import CUTS, _authority
from traceviz.sources.urls import _split, host_and_port

_tricky = st.text(alphabet='aHo"\\{}[],: st\u00e9', max_size=12)
_names = st.sampled_from(["Host", "HOST", "host", ":authority", "x-host", "accept", "cookie", "a{b", 'q"host"'])
_header = st.fixed_dictionaries({"name": _names, "value": _tricky})
_array = st.one_of(st.lists(_header, max_size=5),
                   st.lists(st.one_of(_header, st.lists(_tricky, max_size=2)), max_size=3))   # nested: kept


def _marked(element) -> bool:
    raw = json.dumps(element, ensure_ascii=False).lower()
    return '"host"' in raw or '":authority"' in raw


def _flat(array) -> bool:
    return not any(isinstance(x, list) for x in array)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["headers", "cookies", "queryString", "other"]), _array,
                          st.text(alphabet='ab"\\', max_size=30)), max_size=6),
       st.integers(1, 40))
def test_header_lists_are_cut_to_what_names_the_host(items, chunk):
    """Cookie and query lists become [], a header list its Host / :authority elements (or stays
    whole), wherever the chunks are cut; the host a relative URL needs is never lost."""
    doc = [{key: array, "text": body * 10, "n": i} for i, (key, array, body) in enumerate(items)]
    data = json.dumps(doc, ensure_ascii=False).encode()
    elider = jsonfile.Elider.of(jsonfile.Cuts(CUTS.string, CUTS.arrays))
    elider.shortest = 8
    for i in range(0, len(data), chunk):
        elider.feed(data[i:i + chunk])
    out = json.loads(elider.close())
    assert len(out) == len(doc)
    for got, want in zip(out, doc):
        (key, array), = [(k, v) for k, v in want.items() if k not in ("text", "n")]
        assert got["n"] == want["n"]
        body = json.dumps(want["text"], ensure_ascii=False).encode()
        assert got["text"] == ("" if len(body) - 2 >= 8 else want["text"])
        if key == "other" or not _flat(array):
            assert got[key] == array                       # not a cut key, or holds lists: as it was
        elif key in ("cookies", "queryString"):
            assert got[key] == []
        else:
            assert got[key] in (array, [h for h in array if _marked(h)])
            assert _authority(got[key]) == _authority(array)


def _har_text(n: int, seed: int) -> bytes:
    """A HAR whose bodies and headers hold what a cut must step over: escaped quotes and
    backslashes (a run of them before a quote), brackets and braces, non-ASCII text."""
    rng = random.Random(seed)
    bits = ['\\"', "\\\\", '\\\\"', "[", "]", "{", "}", "\u00e9", "x" * 40, '"startedDateTime": 1', "\n"]
    entries = []
    for i in range(n):
        body = "".join(rng.choice(bits) for _ in range(rng.randrange(0, 200)))
        entries.append({
            "startedDateTime": f"2024-05-01T10:00:{i % 60:02d}.000Z", "time": rng.choice([1, 2.5, -1]),
            "request": {"method": "GET", "url": rng.choice([f"https://h{i % 5}.test/{i}", "/relative"]),
                        "headers": [{"name": rng.choice(["Host", "accept", ":authority"]), "value": body[:30]}],
                        "cookies": [{"name": "c", "value": body[:20]}], "queryString": []},
            "response": {"status": 200, "headers": [{"name": "x", "value": body[-30:]}],
                         "content": {"mimeType": "text/plain", "text": body}},
            "timings": {"send": 1, "wait": 2, "receive": 3},
            'a"startedDateTime': rng.choice(["\\", "x"]),         # a key the halves must not meet inside
        })
    return json.dumps({"log": {"version": "1.2", "entries": entries}}, ensure_ascii=False).encode()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_big_har_read_in_two_halves_is_cut_as_in_one(tmp_path, monkeypatch, seed):
    """The second half read by a forked child, from a key after the middle: the bytes are those
    one pass makes (and a child did read it: otherwise this compares one pass with itself)."""
    path = tmp_path / "h.har"
    path.write_bytes(_har_text(400, seed))
    monkeypatch.setattr(jsonfile, "SPLIT_BYTES", 1 << 40)
    whole, _ = jsonfile.read_bytes(str(path), drop=CUTS)
    forked = []
    start = jsonfile._forks.start
    monkeypatch.setattr(jsonfile._forks, "start", lambda work, arg: forked.append(arg) or start(work, arg))
    monkeypatch.setattr(jsonfile, "SPLIT_BYTES", 1)
    monkeypatch.setattr(jsonfile._tuning, "workers", lambda n, least=0: 2)
    halves, _ = jsonfile.read_bytes(str(path), drop=CUTS)
    assert len(forked) == 1 and 0 < forked[0][0] < path.stat().st_size
    assert bytes(halves) == bytes(whole)
    assert len(json.loads(halves)["log"]["entries"]) == 400


def test_one_worker_reads_a_big_har_in_one_pass(tmp_path, monkeypatch):
    path = tmp_path / "h.har"
    path.write_bytes(_har_text(50, 4))
    monkeypatch.setattr(jsonfile, "SPLIT_BYTES", 1)
    monkeypatch.setenv("TRACEVIZ_WORKERS", "1")
    monkeypatch.setattr(jsonfile._forks, "start", lambda *a: pytest.fail("forked with one worker asked for"))
    data, _ = jsonfile.read_bytes(str(path), drop=CUTS)
    assert len(json.loads(data)["log"]["entries"]) == 50


_numbers = st.one_of(st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from([-0.0, 0, -1, 2 ** 53, 2 ** 53 + 1, 10 ** 400]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_numbers, st.sampled_from([None, True, False, "5", "x", [], {}])), max_size=30))
def test_numbers_at_c_speed_are_number_of_each(values):
    from traceviz.assemble.browser import _numbers as fast
    got = fast(list(values))
    want = np.array([jsonfile.number(v) for v in values], dtype=float)
    assert got.shape == want.shape
    assert all((math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
               for a, b in zip(got.tolist(), want.tolist()))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["http", "https", "HTTPS", "wss", "ftp", "h-t+t.p", "1x"]),
       st.text(alphabet="ab.:[]@1%-_\u00e9 \t", max_size=14),
       st.sampled_from(["", "/", "/p?q", "#f", "?x", "\\x", " /y", "/\tz"]))
def test_urls_split_once_per_origin_as_urlsplit_splits_them(scheme, authority, rest):
    url = f"{scheme}://{authority}{rest}"
    assert host_and_port(url) == _split(url)


# --- the request columns, against one entry at a time -------------------------------------

_ms = st.one_of(st.sampled_from([-1, 0, None, "3", True]), st.floats(0, 5000), st.integers(0, 5000))


def _entry(timings: dict, status, time, i: int) -> dict:
    return {"startedDateTime": f"2024-05-01T10:00:{i % 60:02d}.{i % 1000:03d}Z", "time": time,
            "request": {"method": "GET", "url": f"https://h.test/{i}", "headersSize": timings.get("send"),
                        "bodySize": timings.get("blocked")},
            "response": {"status": status, "bodySize": timings.get("wait"), "headersSize": timings.get("dns"),
                         "content": {"mimeType": "text/html"}},
            "timings": timings}


def _expected(e: dict, ssl_in_connect: bool) -> dict:
    """HAR 1.2's numbers as our phases for one entry, the plain way (see browser.py's docstring)."""
    ms = {k: jsonfile.number(e["timings"].get(k)) for k in ("blocked", "dns", "connect", "ssl", "send",
                                                             "wait", "receive")}
    ssl = ms.pop("ssl")
    if ssl_in_connect and not math.isnan(ssl) and not math.isnan(ms["connect"]):
        ms["connect"] = max(0.0, ms["connect"] - ssl)
    ph = {"blocked": ms["blocked"], "dns": ms["dns"], "connect": ms["connect"], "tls": ssl,
          "send": ms["send"], "wait": ms["wait"], "receive": ms["receive"]}
    ph = {k: v / 1000.0 for k, v in ph.items()}
    status = jsonfile.number(e["response"]["status"])
    answered = 100 <= status <= 999 and status == int(status)
    if not answered:
        ph["wait"] = ph["receive"] = math.nan

    def nansum(vals):
        vals = [v for v in vals if not math.isnan(v)]
        return sum(vals) if vals else math.nan
    total_phases = nansum(ph.values())
    t = jsonfile.number(e["time"])
    total = t / 1000.0 if not math.isnan(t) else total_phases
    if ssl_in_connect and ph["tls"] > 0 and not math.isnan(total) and \
            abs(total - total_phases - ph["tls"]) < 5e-4 < abs(total - total_phases):
        total = total_phases
    upto_wait = nansum([ph[k] for k in ("blocked", "dns", "connect", "tls", "send", "wait")])
    return {**ph, "status": int(status) if answered else None,
            "ttfb": upto_wait if answered and not math.isnan(ph["wait"]) else math.nan,
            "duration": total, "unattributed": total - total_phases}


def _counted_twice(timings: dict) -> float:
    """A ``time`` that counts ``ssl`` a second time, as Playwright writes it."""
    ms = [jsonfile.number(v) for v in timings.values()]
    return sum(v for v in ms if not math.isnan(v))     # connect holds ssl: ssl is in twice


def _same(a, b) -> bool:
    if a is None or b is None or a is pd.NA or b is pd.NA:
        return (a is None or a is pd.NA) and (b is None or b is pd.NA)
    return (math.isnan(a) and math.isnan(b)) or a == b


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.dictionaries(st.sampled_from(["blocked", "dns", "connect", "ssl", "send", "wait",
                                                           "receive"]), _ms),
                          st.sampled_from([200, 0, 99, 304.5, "502", None, 999]),
                          st.one_of(st.floats(0, 9000), st.sampled_from([-1, None, "twice"]))),
                min_size=1, max_size=25),
       st.booleans())
@example([({"connect": 100, "ssl": 50, "send": 1, "wait": 10, "receive": 5}, 200, "twice"),
          ({"connect": 100, "ssl": 50, "send": 1, "wait": 10, "receive": 5}, 200, 166.2),
          ({"connect": -1, "ssl": -1, "wait": 3}, 0, None)], False)
def test_request_columns_equal_one_entry_at_a_time(tmp_path_factory, rows, firefox):
    """Phases, status, ttfb, end and unattributed time of every entry as the entry alone gives
    them, in HAR 1.2's reading and Firefox's (ssl outside connect)."""
    from traceviz.assemble.browser import load_browser
    entries = [_entry(t, s, _counted_twice(t) if tm == "twice" else tm, i) for i, (t, s, tm) in enumerate(rows)]
    creator = "Firefox" if firefox else "WebInspector"
    path = tmp_path_factory.mktemp("har") / "r.har"
    path.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": creator}, "entries": entries}}))
    tl = load_browser(path)
    rq = tl.requests.sort_values("request")
    ssl_in_connect = not firefox and not any(
        jsonfile.number(e["timings"].get("ssl")) > jsonfile.number(e["timings"].get("connect")) + 1e-6
        for e in entries)
    for e, (_, r) in zip(entries, rq.iterrows()):
        want = _expected(e, ssl_in_connect)
        for k in ("blocked", "dns", "connect", "tls", "send", "wait", "receive", "ttfb", "unattributed", "status"):
            assert _same(r[k], want[k]), (k, r[k], want[k], e)
        assert _same(r["end"] - r["start"], want["duration"]) or \
            abs(r["end"] - r["start"] - want["duration"]) < 1e-6


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_broken_har_is_reported_at_its_line_after_the_cuts(tmp_path, newline):
    """Header, cookie and query lists cut from an indented HAR keep their line breaks: the
    error names the line and column ``json`` itself finds in the file as written."""
    entries = [{"startedDateTime": "2024-05-01T10:00:00Z", "time": 5,
                "request": {"method": "GET", "url": "/x", "headers": [{"name": "Host", "value": "h.test"},
                                                                       {"name": "accept", "value": "*/*"}],
                            "cookies": [{"name": "c", "value": "v"}], "queryString": []},
                "response": {"status": 200, "headers": [{"name": "x", "value": "y"}] * 5,
                             "content": {"mimeType": "text/plain", "text": "b" * 400}},
                "timings": {"send": 1, "wait": 2, "receive": 3}} for _ in range(30)]
    lines = json.dumps({"log": {"version": "1.2", "entries": entries}}, indent=2).split("\n")
    broken = max(i for i, line in enumerate(lines) if line.strip().startswith('"time"'))
    lines[broken] = lines[broken].rstrip().rstrip(",")           # the last entry's "time" loses its comma
    text = newline.join(lines)
    path = tmp_path / "broken.har"
    path.write_bytes(text.encode())
    with pytest.raises(json.JSONDecodeError) as truth:
        json.loads(text)
    from traceviz.errors import InputError
    from traceviz.sources.har import read_har
    with pytest.raises(InputError, match=rf"line {truth.value.lineno}, column {truth.value.colno}:"):
        read_har(str(path))
