"""Every resource limit: named in ``traceviz.limits``, raised by its environment variable,
met at the limit and refused one past it in one line that names the variable."""

from __future__ import annotations

import gzip
import json
import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traceviz import limits
from traceviz.errors import InputError


def test_every_limit_is_documented_with_its_variable():
    doc = limits.__doc__
    for lim in limits.LIMITS.values():
        assert lim.name in doc and lim.env in doc, lim
        assert lim.env.startswith("TRACEVIZ_")


def test_variable_overrides_and_junk_is_ignored(monkeypatch):
    monkeypatch.setenv("TRACEVIZ_MAX_JSON_DEPTH", "7")
    assert limits.get("MAX_JSON_DEPTH") == 7
    for junk in ("x", "-3", "0", ""):
        monkeypatch.setenv("TRACEVIZ_MAX_JSON_DEPTH", junk)
        assert limits.get("MAX_JSON_DEPTH") == limits.LIMITS["MAX_JSON_DEPTH"].default


# --- gzip captures ---------------------------------------------------------------------

def _pcap(frames: int, size: int = 1000) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    frame = b"\x02" * 12 + b"\x08\x06" + b"\x00" * (size - 14)      # ARP-ish, not IP: cheap to index
    for i in range(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, size, size) + frame)
    return b"".join(out)


def test_inflate_at_and_past_the_limit(tmp_path, monkeypatch):
    from traceviz.sources.reader import read_capture
    raw = _pcap(50)
    p = tmp_path / "c.pcap.gz"
    p.write_bytes(gzip.compress(raw))
    monkeypatch.setenv("TRACEVIZ_MAX_INFLATE", str(len(raw)))
    assert len(read_capture(p)) == 50
    monkeypatch.setenv("TRACEVIZ_MAX_INFLATE", str(len(raw) - 1))
    with pytest.raises(InputError) as e:
        read_capture(p)
    assert "TRACEVIZ_MAX_INFLATE" in str(e.value) and str(p) in str(e.value)


def test_inflated_capture_is_held_once(tmp_path):
    """The inflated bytes are the buffer the frames index: never copied (a 3.9 GB capture
    once peaked at 7.9 GB)."""
    import io

    from traceviz.sources.reader import _inflate
    raw = _pcap(16_000)                                   # 16 MB inflated
    packed = gzip.compress(raw, compresslevel=1)
    tracemalloc.start()
    try:
        out, note = _inflate(io.BytesIO(packed), "c.pcap.gz", limit=1 << 30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert note is None and len(out) == len(raw)
    assert peak < 1.2 * len(raw) + len(packed), f"peak {peak} for {len(raw)} inflated bytes"


# --- JSON ------------------------------------------------------------------------------------

def _har(entries: int) -> bytes:
    e = {"startedDateTime": "2024-01-01T00:00:00Z", "time": 10,
         "request": {"method": "GET", "url": "https://a.test/", "headers": []},
         "response": {"status": 200, "headers": [], "content": {"mimeType": "text/html"}},
         "timings": {"send": 1, "wait": 8, "receive": 1}}
    return json.dumps({"log": {"version": "1.2", "entries": [e] * entries}}).encode()


def test_json_bytes_at_and_past_the_limit(tmp_path, monkeypatch):
    import traceviz
    data = _har(3)
    p = tmp_path / "a.har"
    p.write_bytes(data)
    monkeypatch.setenv("TRACEVIZ_MAX_JSON_BYTES", str(len(data)))
    assert len(traceviz.load(p).requests) == 3
    monkeypatch.setenv("TRACEVIZ_MAX_JSON_BYTES", str(len(data) - 1))
    with pytest.raises(InputError, match="TRACEVIZ_MAX_JSON_BYTES"):
        traceviz.load(p)


def test_json_depth_at_and_past_the_limit(tmp_path, monkeypatch):
    from traceviz.sources import jsonfile
    monkeypatch.setenv("TRACEVIZ_MAX_JSON_DEPTH", "6")
    # {"log": {"entries": [{"x": [[]]}]}} nests 6 deep
    at = b'{"log": {"entries": [{"x": [[]], "s": "[[[[[[[[[[\\\\\\"[["}]}}'
    assert limits.json_depth(at) == 6
    jsonfile.parse_bytes("a.har", at)
    past = at.replace(b"[[]]", b"[[[]]]")
    with pytest.raises(InputError, match="TRACEVIZ_MAX_JSON_DEPTH"):
        jsonfile.parse_bytes("a.har", past)


def _depth(v) -> int:
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    return 0


_json = st.recursive(st.none() | st.integers() | st.text(alphabet='[]{}"\\ab\n', max_size=8),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                         st.text(alphabet='[]{}"\\k', max_size=4), kids, max_size=4), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(_json, st.integers(1, 64))
def test_json_depth_counts_what_a_parser_sees(value, chunk):
    """Brackets inside strings (escaped quotes and backslashes too) never count,
    wherever the chunk boundaries fall."""
    text = json.dumps(value, ensure_ascii=False).encode()
    old, limits._CHUNK = limits._CHUNK, chunk
    try:
        assert limits.json_depth(text) == _depth(value)
    finally:
        limits._CHUNK = old


def test_browser_records_at_and_past_the_limit(tmp_path, monkeypatch):
    import traceviz
    p = tmp_path / "a.har"
    p.write_bytes(_har(4))
    monkeypatch.setenv("TRACEVIZ_MAX_RECORDS", "4")
    assert len(traceviz.load(p).requests) == 4
    monkeypatch.setenv("TRACEVIZ_MAX_RECORDS", "3")
    with pytest.raises(InputError, match="4 entries, more than 3 records; refusing .*TRACEVIZ_MAX_RECORDS"):
        traceviz.load(p)


def test_trace_and_protocol_log_records_past_the_limit(tmp_path, monkeypatch):
    import traceviz
    monkeypatch.setenv("TRACEVIZ_MAX_RECORDS", "2")
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps({"traceEvents": [{"ph": "X", "name": "a", "ts": 1}] * 3}))
    cdp = tmp_path / "d.json"
    cdp.write_text(json.dumps([{"method": "Network.loadingFinished", "params": {}}] * 3))
    for p in (trace, cdp):
        with pytest.raises(InputError, match="TRACEVIZ_MAX_RECORDS"):
            traceviz.load(p)


@pytest.mark.parametrize("literal", ["1" * 5000, "-" + "9" * 4400, "1e400", "1" * 400])
def test_huge_numbers_in_a_har_are_no_number(tmp_path, literal):
    """Thousands of digits exceed Python's int conversion limit; 1e400 overflows a float:
    either is a time or size that does not exist, not a crash."""
    import traceviz
    text = _har(1).decode().replace('"time": 10', f'"time": {literal}').replace('"wait": 8', f'"wait": {literal}')
    p = tmp_path / "big.har"
    p.write_text(text)
    tl = traceviz.load(p)
    assert len(tl.requests) == 1
    assert tl.requests["wait"].isna().all()


# --- per connection: reassembly and TLS events ------------------------------------------

def _http_capture(tmp_path, segments: int):
    """Connection 0: one request sent in ``segments`` pieces (and its answer); connection 1: small."""
    from tests.streamgen import write_conversations
    request = b"GET /big HTTP/1.1\r\nHost: a.test\r\nX-Pad: " + b"p" * (segments * 10) + b"\r\n\r\n"
    step = -(-len(request) // segments)
    pieces = [("c2s", request[i:i + step]) for i in range(0, len(request), step)]
    assert len(pieces) == segments
    answer = ("s2c", b"HTTP/1.1 204 No Content\r\n\r\n")
    small = [("c2s", b"GET /small HTTP/1.1\r\nHost: a.test\r\n\r\n"), answer]
    return write_conversations(tmp_path / f"seg{segments}.pcap", {0: pieces + [answer], 1: small}, dport=80)


def test_segments_per_connection_at_and_past_the_limit(tmp_path, monkeypatch):
    import traceviz
    path = _http_capture(tmp_path, 6)                  # connection 0: 7 data segments
    monkeypatch.setenv("TRACEVIZ_MAX_SEGMENTS", "7")
    tl = traceviz.load(path)
    assert sorted(tl.requests["url"].str.rsplit("/", n=1).str[-1]) == ["big", "small"]
    monkeypatch.setenv("TRACEVIZ_MAX_SEGMENTS", "6")
    tl = traceviz.load(path)
    assert tl.requests["url"].str.endswith("/small").tolist() == [True]
    said = [w for w in tl.warnings if "TRACEVIZ_MAX_SEGMENTS" in w]
    assert said == [f"{path}: connection 0: 7 segments carry data, more than 6; its payload is not decoded "
                    "(set TRACEVIZ_MAX_SEGMENTS to raise the limit)"]
    assert tl.connections.set_index("conn").loc[0, "app"] == "unknown"


def test_stream_bytes_at_and_past_the_limit(tmp_path, monkeypatch):
    import traceviz
    path = _http_capture(tmp_path, 3)
    tl = traceviz.load(path)
    big = int(tl.connections.set_index("conn").loc[0, ["bytes_c2s", "bytes_s2c"]].sum())
    monkeypatch.setenv("TRACEVIZ_MAX_STREAM_BYTES", str(big))
    assert len(traceviz.load(path).requests) == 2
    monkeypatch.setenv("TRACEVIZ_MAX_STREAM_BYTES", str(big - 1))
    tl = traceviz.load(path)
    assert len(tl.requests) == 1
    assert any(f"connection 0: {big} payload bytes, more than {big - 1}" in w and "TRACEVIZ_MAX_STREAM_BYTES" in w
               for w in tl.warnings)


def test_tls_events_per_session_at_and_past_the_limit(monkeypatch):
    from traceviz.decode.tls.session import TLSSession
    alert = bytes([21, 3, 3, 0, 2, 1, 0])                 # one warning alert per record: one event each
    for limit, listed, said in ((10, 10, False), (9, 9, True)):
        monkeypatch.setenv("TRACEVIZ_MAX_SESSION_EVENTS", str(limit))
        s = TLSSession(0)
        s.feed("c2s", alert * 10, 1, 1.0)
        assert len(s.events) == listed
        assert s.events_not_listed == 10 - listed
        assert any("TRACEVIZ_MAX_SESSION_EVENTS" in e for e in s.errors) is said


def _peak(call, *args):
    """``call(*args)`` and the most memory Python held meanwhile (tracemalloc)."""
    tracemalloc.start()
    try:
        out = call(*args)
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_big_har_costs_about_twice_its_size(tmp_path):
    """Bodies are dropped and entries become records while parsing: the peak is the text
    and its bytes, not the JSON tree (a 584 MB HAR once peaked at 4.7 times its size)."""
    from traceviz.sources.browser_export import read_export
    e = {"startedDateTime": "2024-01-01T00:00:00Z", "time": 10,
         "request": {"method": "GET", "url": "https://a.test/x", "headers": [{"name": "h", "value": "v" * 40}] * 10},
         "response": {"status": 200, "headers": [{"name": "h", "value": "v" * 40}] * 10,
                      "content": {"mimeType": "text/html", "text": "b" * 1000}},
         "timings": {"send": 1, "wait": 8, "receive": 1}}
    p = tmp_path / "big.har"
    p.write_text(json.dumps({"log": {"version": "1.2", "entries": [e] * 4000}}))
    size = p.stat().st_size
    har, peak = _peak(read_export, str(p))
    assert len(har.entries) == 4000
    assert peak < 2.6 * size, f"peak {peak / size:.1f} times the file"


_body = st.text(alphabet='ab"\\\\{}[]:\n\u00e9', max_size=40).map(lambda s: s * 3)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["text", "txt", "mimeType", 'te"xt']), _body), max_size=8),
       st.integers(1, 50), st.integers(1, 30))
def test_elider_drops_long_values_of_one_key_only(pairs, chunk, shortest):
    """Wherever the chunks are cut: long "text" values become "", everything else stays."""
    from traceviz.sources.jsonfile import Elider
    if not Elider.available():
        pytest.skip("needs Python 3.11 possessive patterns")
    doc = [{k: v, "n": [i, {"text": v}]} for i, (k, v) in enumerate(pairs)]
    data = json.dumps(doc, ensure_ascii=False).encode()
    e = Elider(b"text", shortest=shortest)
    for i in range(0, len(data), chunk):
        e.feed(data[i:i + chunk])
    out = json.loads(e.close())

    def expect(v):
        if isinstance(v, dict):
            return {k: ("" if k == "text" and len(json.dumps(x, ensure_ascii=False).encode()) - 2 >= shortest
                        else expect(x)) for k, x in v.items()}
        if isinstance(v, list):
            return [expect(x) for x in v]
        return v
    assert out == expect(doc)


def test_a_gzipped_har_of_bodies_is_never_held(tmp_path):
    """A HAR inflating to far more than its records need (bodies): the peak stays a fraction
    of the inflated size (a 1.9 GB one peaked at 3.9 GB), and the records are the same."""
    from traceviz.sources.browser_export import read_export
    e = {"startedDateTime": "2024-01-01T00:00:00Z", "time": 10,
         "request": {"method": "POST", "url": "https://a.test/x", "postData": {"mimeType": "a/b", "text": "p" * 20000}},
         "response": {"status": 200, "content": {"mimeType": "text/html", "text": '<b>\\"q\\"</b>' * 5000}},
         "timings": {"send": 1, "wait": 8, "receive": 1}}
    text = json.dumps({"log": {"version": "1.2", "entries": [e] * 400}}).encode()
    p = tmp_path / "bodies.har.gz"
    p.write_bytes(gzip.compress(text, 1))
    har, peak = _peak(read_export, str(p))
    assert len(har.entries) == 400 and har.entries[0].method == "POST" and har.entries[0].status == 200
    assert peak < len(text) / 4, f"peak {peak / len(text):.2f} of the inflated size"
