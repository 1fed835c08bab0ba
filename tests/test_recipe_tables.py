"""A recipe that declares ``TABLES`` is run on a Timeline with only those tables built: it
must find exactly what it finds on the whole Timeline -- rows, answer, summary, problems,
figures -- on every bundled capture, and say the same at the terminal (one time origin)."""

from __future__ import annotations

import json
import textwrap
from functools import lru_cache

import pandas as pd
import pytest
from bundled import CAPTURES, timeline

import traceviz
from traceviz import output
from traceviz.cli.recipes import keepalive_facts, load_recipe, recipe_events, recipe_tables, transport_only
from traceviz.model import KEEPALIVE_CONNECTION_COLUMNS, SCHEMAS
from traceviz.recipe import bundled_dir

NAMES = [e["name"] for e in json.loads((CAPTURES / "manifest.json").read_text())["captures"]
         if (CAPTURES / f"{e['name']}.pcapng").is_file()]


RECIPES = [p for p in sorted(bundled_dir().glob("*.py")) if "\nTABLES = " in p.read_text()]


@lru_cache(maxsize=None)
def _load(name: str, tables: tuple | None, measure_tcp: bool, transport_only: bool = False,
          keepalive_facts: bool = True, events: str = "all"):
    return traceviz.load(CAPTURES / f"{name}.pcapng", tables=tables, measure_tcp=measure_tcp,
                         transport_only=transport_only, keepalive_facts=keepalive_facts, events=events)


def _as_its_command_loads(module, name: str, tables: tuple | None):
    return _load(name, tables, getattr(module, "MEASURE_TCP", False), transport_only(module),
                 keepalive_facts(module), recipe_events(module))


def _same(a, b, what: str, figures: bool = True, absent: tuple = ()) -> None:
    """``b`` found what ``a`` did; its rows may lack the columns ``absent`` names (those its
    load left out), and no other."""
    assert a.answer == b.answer and a.problems == b.problems, what
    assert json.dumps(a.summary, default=str) == json.dumps(b.summary, default=str), what
    assert set(a.rows.columns) - set(b.rows.columns) <= set(absent), what
    pd.testing.assert_frame_equal(a.rows[list(b.rows.columns)], b.rows, obj=what)
    assert list(a.figures) == list(b.figures), what
    for fig in a.figures if figures else ():
        assert a.figure(fig, "light").to_json() == b.figure(fig, "light").to_json(), f"{what}: {fig}"


def test_the_bundled_recipes_that_need_fewer_tables_declare_them():
    assert {p.stem for p in RECIPES} >= {"tls", "synflood", "transports", "tcpgraph", "handshakes"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_a_recipe_finds_the_same_on_only_its_tables(path):
    """On ``TABLES`` the answer, rows and summary; on ``TABLES`` and ``CHART_TABLES`` (what a
    command with --chart builds) the figures too."""
    module = load_recipe(path)
    tables = recipe_tables(module, chart=False)
    charted = recipe_tables(module, chart=True)
    ran = 0
    measure = getattr(module, "MEASURE_TCP", False)
    # The connections' columns its command's load leaves out: made of the keep-alive facts
    absent = () if keepalive_facts(module) else tuple(KEEPALIVE_CONNECTION_COLUMNS)
    for name in NAMES:
        whole = _load(name, None, measure) if measure else timeline(name)
        part = _as_its_command_loads(module, name, tables)
        assert set(part.skipped) == set(SCHEMAS) - set(tables)
        assert output.time_origin(part) == output.time_origin(whole), name
        assert module.applies(part) == module.applies(whole), name
        if not module.applies(whole):
            continue
        _same(module.analyze(whole), module.analyze(part), f"{path.stem} on {name}", charted == tables, absent)
        _same(module.analyze(whole), module.analyze(_as_its_command_loads(module, name, charted)),
              f"{path.stem} on {name}, charted", absent=absent)
        ran += 1
    assert ran, f"{path.stem} applies to no bundled capture"


@pytest.mark.parametrize("path", [p for p in RECIPES if "\nCHART_TABLES = " in p.read_text()], ids=lambda p: p.stem)
def test_each_chart_table_is_one_a_figure_reads(path):
    """Drawing the figures without one of ``CHART_TABLES`` fails loudly (TableNotBuilt): the
    list asks for nothing the figures do not read."""
    from traceviz.model import TableNotBuilt
    module = load_recipe(path)
    name = next(n for n in NAMES if module.applies(timeline(n)))
    for left_out in module.CHART_TABLES:
        tables = tuple(t for t in recipe_tables(module, chart=True) if t != left_out)
        finding = module.analyze(_as_its_command_loads(module, name, tables))
        with pytest.raises(TableNotBuilt, match=left_out):
            for fig in finding.figures:
                finding.figure(fig, "light")


def test_the_tls_command_builds_its_chart_tables_only_for_a_chart(tv, tmp_path, monkeypatch):
    asked = []
    real = traceviz.load
    monkeypatch.setattr(traceviz, "load", lambda *a, **k: asked.append(k.get("tables")) or real(*a, **k))
    assert tv("tls", "tls12-vs-tls13")[0] == 0
    assert tv("tls", "tls12-vs-tls13", "--chart", str(tmp_path / "l.html"))[0] == 0
    assert asked == [("tls",), ("tls", "connections", "events")]
    assert (tmp_path / "l.html").stat().st_size > 0


def test_the_terminal_output_keeps_its_time_origin(tv):
    # --where builds every table: the same command on the whole Timeline
    only = tv("tls", "tls12-vs-tls13")
    whole = tv("tls", "tls12-vs-tls13", "--where", "conn >= 0")
    assert only[0] == whole[0] == 0
    assert only[1] == whole[1] and "TLS 1.3" in only[1]


def refusal(tv, tmp_path, name: str, declarations: str) -> str:
    """What the command of recipe ``name`` with these declarations says: it must be refused
    (exit 2, nothing on stdout) before anything is loaded.  (One name per test: a recipe module
    is imported once per process.)"""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f'''
        """An odd recipe."""
        NAME = "{name}"
        ''') + textwrap.dedent(declarations) + textwrap.dedent('''
        def applies(tl):
            return True
        def analyze(tl):
            raise AssertionError("never reached")
    '''))
    code, out, err = tv("--recipes", tmp_path, name, "tcp-handshakes")
    assert code == 2 and out == ""
    return err


def test_tables_that_are_not_tables_are_refused_with_the_valid_names(tv, tmp_path):
    err = refusal(tv, tmp_path, "odd", 'TABLES = ("connections", "sockets")\n')
    assert "TABLES must list table names" in err and "connections, events" in err


def test_a_transport_only_recipe_asking_for_more_is_refused_with_what_it_may_ask(tv, tmp_path):
    err = refusal(tv, tmp_path, "greedy", 'TABLES = ("connections", "tls")\nTRANSPORT_ONLY = True\n')
    assert "TRANSPORT_ONLY needs TABLES (and CHART_TABLES) of connections, events, packets only" in err


def test_events_other_than_the_choices_are_refused_with_them(tv, tmp_path):
    err = refusal(tv, tmp_path, "oddevents", 'TABLES = ("events",)\nEVENTS = "udp"\n')
    assert "EVENTS must be one of 'all', 'tcp'" in err


def test_the_recipes_that_read_tcps_events_alone_load_only_those(tv, monkeypatch):
    """keepalive and proxy read no event above TCP (their figures draw its keep-alive probes):
    their commands ask for TCP's events alone, and their findings, figures included, are a
    whole load's on every bundled capture (``test_a_recipe_finds_the_same_on_only_its_tables``)."""
    asked = []
    real = traceviz.load
    monkeypatch.setattr(traceviz, "load", lambda *a, **k: asked.append(k.get("events")) or real(*a, **k))
    said = {}
    for name in ("keepalive", "proxy"):
        said[name] = tv(name, CAPTURES / "proxy-nginx-502-504.pcapng")
        said[name, "5xx"] = tv(name, CAPTURES / "proxy-nginx-502-504.pcapng", "--where", "status >= 500")
    assert asked == ["tcp", "all", "tcp", "all"]
    assert all(code == 0 for code, _, _ in said.values())
    # --where keeps the 5xx connections alone: the refused attempt's connection is left out,
    # and its cause is still told (a KeyError on the missing connection before)
    assert "upstream-refused" in said["proxy", "5xx"][1] and "6 upstream requests" not in said["proxy", "5xx"][1]
