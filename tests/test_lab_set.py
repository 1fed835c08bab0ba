"""The course lab as a whole (issue 17): every topic has a capture tagged for it, a recipe that applies to
that capture and finds something, and the recipes the course names exist."""

from __future__ import annotations

import pytest

from bundled import CAPTURES, entry, timeline

# concept tag -> (a capture tagged with it, the recipe that explains it)
TOPICS = {
    "websocket": ("websocket-h1", "websocket"), "websocket-h2": ("websocket-h2", "websocket"),
    "sse": ("push-vs-poll", "polling"), "long-polling": ("push-vs-poll", "polling"),
    "connect-tunnel": ("connect-tunnel", "layers"), "l4-vs-l7": ("l4-vs-l7", "layers"),
    "grpc": ("grpc-h2c", "grpc"), "caching": ("http-caching", "caching"),
    "connection-pool": ("connection-pool", "pool"), "connection-leak": ("connection-pool", "pool"),
    "syn-flood": ("syn-flood", "synflood"), "dns": ("journey-https", "journey"),
    "journey": ("journey-https", "journey"), "tcp-vs-udp": ("tcp-vs-udp", "transports"),
}
NAMED_RECIPES = ["websocket", "grpc", "caching", "pool", "journey"]


@pytest.mark.parametrize("tag", sorted(TOPICS))
def test_each_topic_has_a_capture_and_a_recipe_that_finds_it(tag):
    from traceviz.recipe import discover, load_module
    name, recipe = TOPICS[tag]
    e = entry(name)
    assert tag in e["concepts"]
    assert (CAPTURES / e["file"]).stat().st_size <= 1024 * 1024, "each capture stays under 1 MB"
    mod = load_module(discover()[recipe])
    tl = timeline(name)
    assert mod.applies(tl)
    f = mod.analyze(tl)
    assert len(f.rows) and f.answer and f.figures
    assert set(f.figures) == set(mod.FIGURES)          # what --chart offers is what it draws
    assert entry(mod.EXAMPLE)["concepts"]               # the gallery's example is a bundled capture


@pytest.mark.parametrize("recipe", NAMED_RECIPES)
def test_the_course_recipes_exist(recipe):
    from traceviz.recipe import discover, read_header
    found = discover()
    assert recipe in found and read_header(found[recipe]).name == recipe


def test_recipes_stay_quiet_on_captures_without_their_topic():
    from traceviz.recipe import discover, load_module
    quiet = timeline("tcp-handshakes")
    for recipe in ("websocket", "grpc", "polling", "synflood", "layers"):
        assert not load_module(discover()[recipe]).applies(quiet), recipe


@pytest.mark.parametrize("name", sorted({c for c, _ in TOPICS.values()}))
def test_tables_with_the_new_columns_export_to_parquet(tmp_path, name):
    import pandas as pd
    tl = timeline(name)
    tl.to_parquet(tmp_path)
    back = pd.read_parquet(tmp_path / "events.parquet")
    assert len(back) == len(tl.events) and list(back.columns) == list(tl.events.columns)
