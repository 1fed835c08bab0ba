"""A HAR read by msgspec (``harfields``) gives what the plain reader gives, or leaves the file to it.

The plain reader (cuts, then the json module) is the judge: for every file
here, generated to hold what exporters write and what they should not
(strings for numbers, -1, booleans, huge integers, nulls, relative URLs,
Firefox's port, a BOM, JSONP), the msgspec path either returns the same
records, pages and warnings, or None, so that the plain reader reads it.
And it must not return None where it can read: that would make every
comparison here pass while the fast path never runs.
"""

from __future__ import annotations

import codecs
import dataclasses
import glob
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traceviz.errors import InputError
from traceviz.sources import harfields, jsonfile
from traceviz.sources.browser_export import read_export
from traceviz.sources.har import read_har

ROOT = Path(__file__).resolve().parent.parent
CORPUS_HARS = sorted(glob.glob(str(ROOT / "tests/corpus/har/*.har*")) + glob.glob(str(ROOT / "captures/*.har")))


def _same(fast, plain) -> bool:
    """Equal but for ``size`` (the msgspec path counts the bytes it read, the plain one the
    text left after its cuts); by repr, so NaN equals NaN."""
    return repr(dataclasses.replace(fast, size=0)) == repr(dataclasses.replace(plain, size=0))


def _plain_or_error(path):
    try:
        return read_har(str(path))
    except InputError as exc:
        return f"InputError: {exc}"


@pytest.mark.parametrize("path", CORPUS_HARS, ids=lambda p: Path(p).name)
def test_every_corpus_har_reads_the_same_both_ways(path):
    plain = _plain_or_error(path)
    fast = harfields.read(path)
    if isinstance(plain, str):
        assert fast is None                      # broken: the plain reader says where
    else:
        assert fast is not None and _same(fast, plain)
        assert fast.entries                      # something to compare


_odd = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([-1, 2 ** 70, 1e300, 0.5, 12]),
                 st.text(alphabet="0123456789.-ab", max_size=6), st.just(""))
_url = st.sampled_from(["https://a.test/x", "http://b.test:8080/y?q=1", "/relative", "", None, 7,
                        "https://[2001:db8::1]:444/"])
_headers = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["Host", ":authority", "accept", "HOST"]),
                                            "value": st.sampled_from(["h.test", "h.test:81", "", "[::1]:9"])}),
                    max_size=3)


@st.composite
def _entries(draw):
    entry = {}
    for key in ("startedDateTime", "time", "connection", "_connection", "_socket", "serverIPAddress",
                "_ip_addr", "_serverPort", "_requestId", "_request_id", "pageref", "_resourceType",
                "_priority", "_fromCache", "_protocol"):
        if draw(st.booleans()):
            entry[key] = draw(st.one_of(_odd, st.sampled_from(["10.0.0.1", "[2001:db8::2]", "memory", "h2", "443"])))
    if draw(st.booleans()):
        entry["timings"] = draw(st.one_of(st.dictionaries(st.sampled_from(["ssl", "connect", "wait"]), _odd),
                                          _odd))
    if draw(st.booleans()):
        entry["_initiator"] = draw(st.one_of(st.fixed_dictionaries({"type": _odd}), st.sampled_from(["parser", ""]),
                                             st.none()))
    if draw(st.booleans()):
        entry["_securityDetails"] = draw(st.one_of(st.none(), st.fixed_dictionaries(
            {"protocol": st.sampled_from(["TLS 1.3", "", 3])})))
    if draw(st.integers(0, 9)):                  # now and then no request at all: skipped, with a warning
        entry["request"] = {k: draw(v) for k, v in (("url", _url), ("method", _odd), ("httpVersion", _odd),
                                                    ("headersSize", _odd), ("bodySize", _odd), ("headers", _headers))
                            if draw(st.booleans())}
    if draw(st.booleans()):
        response = {k: draw(_odd) for k in ("status", "httpVersion", "headersSize", "bodySize",
                                             "_transferSize", "_error", "statusText") if draw(st.booleans())}
        if draw(st.booleans()):
            response["content"] = draw(st.one_of(st.none(), st.fixed_dictionaries(
                {"mimeType": _odd, "text": st.text(max_size=20)})))
        entry["response"] = draw(st.one_of(st.none(), st.just(response)))
    return entry


@st.composite
def _hars(draw):
    log = {"version": draw(st.sampled_from(["1.2", 1.2, None])),
           "creator": {"name": draw(st.sampled_from(["Firefox", "WebInspector", 3])), "version": "1"},
           "entries": draw(st.lists(_entries(), max_size=6))}
    if draw(st.booleans()):
        log["pages"] = draw(st.lists(st.fixed_dictionaries(
            {"id": st.sampled_from(["p1", 2]), "startedDateTime": _odd,
             "pageTimings": st.fixed_dictionaries({"onLoad": _odd})}), max_size=2))
    return {"log": log}


@settings(max_examples=400, deadline=None)
@given(_hars(), st.sampled_from(["plain", "bom", "jsonp", "indent"]))
def test_generated_hars_read_the_same_both_ways(tmp_path_factory, har, wrapping):
    text = json.dumps(har, indent=2 if wrapping == "indent" else None, ensure_ascii=False)
    data = text.encode()
    if wrapping == "bom":
        data = codecs.BOM_UTF8 + data
    if wrapping == "jsonp":
        data = b"onInputData(" + data + b");\n"
    path = tmp_path_factory.mktemp("h") / "g.har"
    path.write_bytes(data)
    plain = _plain_or_error(path)
    fast = harfields.read(str(path))
    assert not isinstance(plain, str)            # every generated file is a HAR the plain reader reads
    assert fast is not None, "msgspec refused a file the plain reader reads"
    assert _same(fast, plain)
    assert fast.jsonp == ("onInputData" if wrapping == "jsonp" else None)


_ENTRY = {"startedDateTime": "2024-01-01T00:00:00Z", "time": 5,
          "request": {"method": "GET", "url": "https://a.test/"}, "response": {"status": 200}}


@pytest.mark.parametrize("text, why", [
    (b'{"log": {"entries": [{"request": {"url": "https://a.test/"}, "time": NaN}]}}', "NaN"),
    (b'{"log": {"entries": [{"request": {"url": "https://a.test/", "x": "\\ud800"}}]}}', "a lone surrogate"),
    (b'{"log": {"entries": [{"request": "GET /"}]}}', "a request that is not an object"),
    (b'{"log": {"entries": [{"request": {}, "response": "none"}]}}', "a response that is not an object"),
    (b'{"log": {"entries": [{"request": {}, "time": 1e400}]}}', "a number past a double"),
    (b'{"log": {"entries": [{"request": {}, "response": {"content": {"text": "\xff"}}}]}}', "not UTF-8 in a body"),
    (json.dumps({"log": {"entries": [_ENTRY] * 3}})[:-9].encode(), "cut short"),
    (b'{"log": {"entries": {}}}', "entries not a list"),
    (b'[1, 2]', "not a HAR"),
    (b'\xff\xfe{\x00}\x00', "UTF-16"),
])
def test_what_msgspec_would_read_differently_is_left_to_the_plain_reader(tmp_path, text, why):
    path = tmp_path / "odd.har"
    path.write_bytes(text)
    assert harfields.read(str(path)) is None, why
    plain = _plain_or_error(path)
    try:
        got = harfields.read(str(path)) or read_har(str(path))      # what ``read_export`` does with a HAR
    except InputError as exc:
        got = f"InputError: {exc}"
    assert repr(got) == repr(plain)


def test_a_relative_url_takes_its_host_from_the_header_list(tmp_path):
    entry = dict(_ENTRY, request={"method": "GET", "url": "/x", "headers": [
        {"name": "accept", "value": "*/*"}, {"name": ":authority", "value": "h.test:8443"}]})
    path = tmp_path / "rel.har"
    path.write_text(json.dumps({"log": {"entries": [entry]}}))
    fast = harfields.read(str(path))
    assert fast is not None and fast.entries[0].host == "h.test"
    assert _same(fast, read_har(str(path)))


@pytest.mark.parametrize("limit", [6, 9, 40])
def test_the_depth_limit_is_the_plain_readers_to_the_level(tmp_path, monkeypatch, limit):
    """msgspec's recursion is bounded so that it refuses exactly what nests deeper than
    MAX_JSON_DEPTH: at the limit both read the file, one deeper both refuse it."""
    monkeypatch.setenv("TRACEVIZ_MAX_JSON_DEPTH", str(limit))
    for depth, readable in ((limit, True), (limit + 1, False)):
        nested = "[" * (depth - 4) + "]" * (depth - 4)   # log, entries, entry, then the arrays
        text = '{"log": {"entries": [{"request": {}, "x": %s}]}}' % nested
        assert jsonfile.limits.json_depth(text.encode()) == depth
        path = tmp_path / f"d{depth}.har"
        path.write_text(text)
        assert (harfields.read(str(path)) is not None) == readable
        if not readable:
            with pytest.raises(InputError, match="TRACEVIZ_MAX_JSON_DEPTH"):
                read_export(str(path))


def test_the_recursion_limit_is_put_back(tmp_path):
    import sys
    before = sys.getrecursionlimit()
    path = tmp_path / "a.har"
    path.write_text(json.dumps({"log": {"entries": [_ENTRY]}}))
    assert harfields.read(str(path)) is not None
    path.write_text('{"log": {"entries": [{"request": {}, "x": %s}]}}' % ("[" * 3000 + "]" * 3000))
    assert harfields.read(str(path)) is None
    assert sys.getrecursionlimit() == before


@pytest.mark.parametrize("good", [True, False])
def test_a_big_files_utf8_is_checked_by_a_child(tmp_path, monkeypatch, good):
    """Beside the decode, a forked child checks the UTF-8 that msgspec steps over: a body
    that is not UTF-8 leaves the file to the plain reader (which refuses it, naming the line)."""
    body = "caf\u00e9 " * 50 if good else "x" * 50
    data = json.dumps({"log": {"entries": [dict(_ENTRY, response={"content": {"text": body}})] * 20}},
                      ensure_ascii=False).encode()
    if not good:
        data = data.replace(b"x" * 50, b"x" * 49 + b"\xff", 1)
    path = tmp_path / "big.har"
    path.write_bytes(data)
    forked = []
    start = harfields._forks.start
    monkeypatch.setattr(harfields._forks, "start", lambda work, arg: forked.append(1) or start(work, arg))
    monkeypatch.setattr(harfields, "CHECK_ASIDE_BYTES", 1)
    monkeypatch.setattr(harfields._tuning, "workers", lambda n, least=0: 2)
    got = harfields.read(str(path))
    assert forked == [1]
    if good:
        assert got is not None and len(got.entries) == 20 and _same(got, read_har(str(path)))
    else:
        assert got is None
        with pytest.raises(InputError, match="not UTF-8 text"):
            read_export(str(path))


def test_a_gzipped_har_is_left_to_the_plain_reader(tmp_path):
    """Inflated whole it would be held whole (``test_limits``: never); the plain reader cuts it as
    it inflates."""
    import gzip
    src = Path(CORPUS_HARS[0])
    path = tmp_path / "c.har.gz"
    path.write_bytes(gzip.compress(src.read_bytes()))
    assert harfields.read(str(path)) is None
    assert read_export(str(path)).compressed


@pytest.mark.parametrize("tail", [b")", b");", b") ;\n", b"  )\t;\n "])
def test_jsonp_unwrapped_from_bytes_as_from_text(tail):
    data = b"cb(" + b'{"a": 1}' + tail
    body, name = jsonfile.unwrap_jsonp_bytes(memoryview(data))
    text, name2 = jsonfile.unwrap_jsonp(data.decode())
    assert (bytes(body).strip(), name) == (text.strip().encode(), name2)


@pytest.mark.parametrize("tail", [b") ;;x", b"", b"; ; )x"])
def test_an_unclosed_jsonp_is_refused_from_bytes_as_from_text(tail):
    data = b"cb(" + b'{"a": 1}' + tail
    assert jsonfile.unwrap_jsonp_bytes(data) is None
    assert jsonfile.unwrap_jsonp(data.decode())[1] is None


def test_a_browser_export_that_is_a_har_is_read_by_msgspec(monkeypatch):
    path = CORPUS_HARS[0]
    read = []
    fast = harfields.read
    monkeypatch.setattr(harfields, "read", lambda p: read.append(p) or fast(p))
    got = read_export(path)
    assert read == [path] and _same(got, read_har(path))


def test_without_msgspec_every_har_is_read_the_plain_way(monkeypatch):
    path = CORPUS_HARS[0]
    monkeypatch.setattr(harfields, "msgspec", None)
    assert harfields.read(path) is None
    got = read_export(path)
    assert got.entries and repr(got) == repr(read_har(path))


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10 ** 6), st.binary(min_size=1, max_size=4), st.booleans())
def test_cut_or_damaged_hars_read_as_the_plain_reader_reads_them(tmp_path_factory, where, junk, cut):
    """A HAR cut short or with a few bytes overwritten: never a traceback; the msgspec path
    either gives the plain reader's records or leaves the file to it."""
    data = Path(CORPUS_HARS[0]).read_bytes()
    at = where % len(data)
    data = data[:at] if cut else data[:at] + junk + data[at + len(junk):]
    path = tmp_path_factory.mktemp("d") / "d.har"
    path.write_bytes(data)
    plain = _plain_or_error(path)
    fast = harfields.read(str(path))
    if fast is not None:
        assert not isinstance(plain, str) and _same(fast, plain)
