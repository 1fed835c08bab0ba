"""HTTP caching: validators and conditional requests in the ``requests`` table, and the caching recipe,
against the ``http-caching`` capture's client cache log and nginx's access log (and tshark)."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest

from bundled import CAPTURES, entry, timeline
from traceviz.assemble.caching import facts

CAPTURE = "http-caching"
FACTS = entry(CAPTURE)["facts"]
SENT = [g for g in FACTS["client_log"] if g["request"]]


def na(v):
    return None if v is None or (not isinstance(v, (str, bool)) and pd.isna(v)) else v


def test_facts_from_headers():
    f = facts([("If-None-Match", '"a"')], [("ETag", '"a"'), ("Cache-Control", "no-cache")], 304, 0)
    assert (f["conditional"], f["validator"], f["revalidated"], f["cache_control"]) == ("etag", "etag", True,
                                                                                     "no-cache")
    f = facts([("Host", "x")], [("Content-Length", "3")], 200, 3)
    assert (f["conditional"], f["validator"], f["revalidated"]) == (None, None, None)
    f = facts([("If-Modified-Since", "d"), ("if-none-match", "e")], [("Last-Modified", "d")], 200, 5)
    assert (f["conditional"], f["validator"], f["revalidated"]) == ("both", "last-modified", False)


def test_each_request_matches_the_client_cache_log_and_nginx():
    rq = timeline(CAPTURE).requests.sort_values("start").reset_index(drop=True)
    assert len(rq) == len(SENT) == len(FACTS["server_log"])
    names = {"If-None-Match": "etag", "If-Modified-Since": "date"}
    for r, g, s in zip(rq.itertuples(), SENT, FACTS["server_log"]):
        assert r.url.endswith(g["path"]) and int(r.status) == g["status"] == s["status"]
        sent = {names[h] for h in g["conditional"]}
        assert na(r.conditional) == ("both" if len(sent) == 2 else next(iter(sent), None))
        assert na(r.etag) == g["etag"] and na(r.last_modified) == g["last_modified"]
        assert na(r.cache_control) == g["cache_control"]
        assert int(r.body_bytes) == g["body_bytes"] == s["bytes"]
        assert na(r.revalidated) == (None if not g["conditional"] else g["status"] == 304)


def test_conditional_headers_match_tshark(tshark):
    out = subprocess.run([tshark, "-r", str(CAPTURES / f"{CAPTURE}.pcapng"), "-Y", "http.request", "-T", "fields",
                          "-e", "http.request.uri", "-e", "http.request.line"],
                         capture_output=True, text=True, check=True).stdout
    theirs = []
    for line in out.splitlines():
        uri, lines_ = line.split("\t")
        heads = {h.split(":")[0].lower() for h in lines_.split(",")}
        theirs.append((uri, "if-none-match" in heads, "if-modified-since" in heads))
    rq = timeline(CAPTURE).requests.sort_values("start")
    ours = [(u.split("10.94.0.2", 1)[1], c in ("etag", "both"), c in ("date", "both"))
            for u, c in zip(rq["url"], rq["conditional"].astype("object").where(rq["conditional"].notna(), None))]
    assert ours == theirs


def test_recipe_savings_and_the_missing_validator():
    from traceviz.recipe import discover, load_module
    f = load_module(discover()["caching"]).analyze(timeline(CAPTURE))
    rows = f.rows.set_index("url")
    by_path = {u.split("10.94.0.2", 1)[1]: r for u, r in rows.iterrows()}
    for path in {g["path"] for g in SENT}:
        mine = [g for g in SENT if g["path"] == path]
        r = by_path[path]
        assert r["requests"] == len(mine)
        assert r["not_modified"] == sum(g["status"] == 304 for g in mine)
        assert r["body_bytes"] == sum(g["body_bytes"] for g in mine)
        # A 304 saves the body the cache held: the size of the last full answer before it.
        saved, last = 0, None
        for g in mine:
            if g["status"] == 304:
                saved += last
            else:
                last = g["body_bytes"]
        assert r["saved_bytes"] == saved
    # What the client's cache did without asking (max-age) never reached the wire.
    hits = [g["path"] for g in FACTS["client_log"] if not g["request"]]
    assert all(by_path[p]["requests"] == 1 and by_path[p]["max_age"] == 3600 for p in hits)
    no_validator = [p for p in by_path if all(g["etag"] is None and g["last_modified"] is None
                                              for g in SENT if g["path"] == p)]
    assert len(f.problems) == len(no_validator) == 1
    assert by_path[no_validator[0]]["refetched_bytes"] == sum(
        g["body_bytes"] for g in SENT if g["path"] == no_validator[0]) - SENT[3]["body_bytes"]
    assert "could not ask 'has it changed?'" in " ".join(f.answer)


def _applying():
    import json as _json
    from bundled import CAPTURES
    from traceviz.recipe import discover, load_module
    recipe = load_module(discover()["caching"])
    names = [e["name"] for e in _json.loads((CAPTURES / "manifest.json").read_text())["captures"]
             if (CAPTURES / f"{e['name']}.pcapng").is_file()]
    return recipe, [n for n in names if recipe.applies(timeline(n))]


def test_every_sentence_about_a_validator_agrees_with_the_url_row():
    """On every bundled capture it applies to (URLs without max-age among them, which once
    stopped it with an internal error): a URL said to have no ETag and no Last-Modified has no
    validator in its row, one said to offer a validator has one."""
    recipe, names = _applying()
    assert len(names) >= 5
    said = 0
    for name in names:
        f = recipe.analyze(timeline(name))
        validator = dict(zip(f.rows["url"], f.rows["validator"]))
        for line in f.answer[1:]:
            url = line.split(": ", 1)[0]
            if "no ETag and no Last-Modified" in line:
                assert not isinstance(validator[url], str), f"{name}: {line}"
                said += 1
            elif "although it offered a validator" in line:
                assert isinstance(validator[url], str) and f"({validator[url]})" in line, f"{name}: {line}"
                said += 1
        assert f.answer[0].startswith(f"{int(f.rows['requests'].sum())} requests for {len(f.rows)} URLs"), name
    assert said >= 4


@pytest.mark.parametrize("theme", ["light", "talk"])
def test_chart(theme):
    from traceviz.charts.caching import bytes_chart
    from traceviz.recipe import discover, load_module
    rows = load_module(discover()["caching"]).analyze(timeline(CAPTURE)).rows.copy()
    rows.loc[0, "url"] = "http://x/<img src=x onerror=alert(1)>"
    fig = bytes_chart(rows, theme=theme)
    assert [t.name for t in fig.data] == ["downloaded (full answers)", "saved by 304s",
                                         "downloaded again: no validator"]
    assert sum(fig.data[1].y) * 1000 == pytest.approx(rows["saved_bytes"].sum())
    assert all("<img" not in x for x in fig.data[0].x)
