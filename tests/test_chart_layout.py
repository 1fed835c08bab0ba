"""Charts as exported (issue 14): nothing overlaps, type is large on a slide, images carry no controls.

Every figure every bundled recipe offers (its ``FIGURES``, drawn from the
bundled file the gallery script picks) is exported to SVG through kaleido,
as ``--chart x.svg`` does, and read back (tests/svg_layout.py): the legend,
titles, axis titles and annotations must not overlap or leave the canvas,
in the light theme at its image size and at a page's width, and in the talk
theme at 1920 x 1080, where every text is at least 20 px and titles at
least 28 px.  The ladder's arrow labels must cross neither each other nor an
arrow.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from traceviz.charts import export, theme as themes
from traceviz.recipe import discover, load_module, read_header

sys.path.insert(0, str(Path(__file__).resolve().parent))
from svg_layout import boxes, canvas, clashes, font_sizes, label_crossings, write_svgs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(export.browser() is None, reason="no Chrome or Chromium for kaleido")


def gallery():
    spec = importlib.util.spec_from_file_location("gallery", ROOT / "docs" / "gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[tuple[str, str, str], str]:
    """(recipe, figure, variant) -> the SVG; variants: light and talk images, light in a 1000 px page."""
    g = gallery()
    load = g.Timelines()
    items = []
    for name, path in sorted(discover().items()):
        if path.parent != ROOT / "recipes":
            continue
        module, head = load_module(path), read_header(path)
        for figure in head.figures:
            source = g.examples(module, head, figure, load)
            assert source is not None, f"no bundled file draws {name} {figure}"
            finding = module.analyze(load(source))
            for theme in ("light", "talk"):
                fig = themes.apply(finding.figure(figure, theme), theme)
                w, h = export.image_size(fig)
                items.append(((name, figure, theme), export.for_image(fig), w, h))
            fig = themes.apply(finding.figure(figure, "light"), "light")
            items.append(((name, figure, "page"), fig, 1000, int(fig.layout.height)))    # live, with its menus
    folder = tmp_path_factory.mktemp("svg")
    paths = [folder / f"{i}.svg" for i in range(len(items))]
    write_svgs([f for _, f, _, _ in items], paths, width=[w for *_, w, _ in items],
               height=[h for *_, h in items])
    return {key: p.read_text() for (key, *_), p in zip(items, paths)}


def test_every_offered_figure_was_drawn(rendered):
    offered = {(n, f) for n, p in discover().items() if p.parent == ROOT / "recipes" for f in read_header(p).figures}
    assert offered and {(n, f) for n, f, _ in rendered} == offered


def test_nothing_overlaps_and_nothing_leaves_the_canvas(rendered):
    problems = []
    for key, svg in rendered.items():
        width, height = canvas(svg)
        for a, b in clashes(svg):
            problems.append((key, f"{a.kind} {a.text[:30]!r} overlaps {b.kind} {b.text[:30]!r}"))
        for b in boxes(svg):
            if b.x0 < -1 or b.y0 < -1 or b.x1 > width + 1 or b.y1 > height + 1:
                problems.append((key, f"{b.kind} {b.text[:30]!r} leaves the canvas"))
    assert not problems, "\n".join(f"{k}: {p}" for k, p in problems)


def test_talk_type_is_large_enough_for_the_back_row(rendered):
    for (name, figure, variant), svg in rendered.items():
        if variant != "talk":
            continue
        assert canvas(svg) == (1920, 1080)
        small = [(t[:30], size) for t, size in font_sizes(svg) if size < 20]
        assert not small, (name, figure, small)
        titles = [b for b in boxes(svg) if b.kind == "title"]
        sizes = dict(font_sizes(svg))
        assert titles and all(sizes[b.text] >= 28 for b in titles), (name, figure)


def test_images_carry_no_interactive_controls(rendered):
    for key, svg in rendered.items():
        if key[2] != "page":
            assert "updatemenu" not in svg and "drag" not in svg, key


def test_a_live_charts_menu_sits_under_the_toolbar_and_clear_of_the_titles(rendered):
    import xml.etree.ElementTree as ET
    menus = {k: svg for k, svg in rendered.items() if k[2] == "page" and "updatemenu-header" in svg}
    assert ("waterfall", "waterfall", "page") in menus
    for key, svg in menus.items():
        root = ET.fromstring(svg)
        header = next(g for g in root.iter("{http://www.w3.org/2000/svg}g") if "updatemenu-header" in g.get("class", ""))
        parent = {c: p for p in root.iter() for c in p}
        from svg_layout import _offset
        # a dropdown's header, or each of a column of buttons (each button is translated on its own)
        for rect in header.iter("{http://www.w3.org/2000/svg}rect"):
            x, y = _offset(parent, parent[rect])
            top, bottom = y + float(rect.get("y", 0)), y + float(rect.get("y", 0)) + float(rect.get("height"))
            assert top >= 40, (key, top)        # plotly's toolbar takes the figure's top 40 px, right-aligned
            left, right = x, x + float(rect.get("width"))
            for b in boxes(svg):
                if b.kind in ("title", "subtitle", "legend"):
                    assert not (left < b.x1 and b.x0 < right and top < b.y1 and b.y0 < bottom), (key, b.kind)


def test_ladder_labels_cross_no_label_and_no_arrow(tmp_path):
    import traceviz
    from traceviz.charts.ladder import ladder
    cases = [("tcp-handshakes", 4), ("h2-multiplexing", 0),
             (str(ROOT / "tests/corpus/pcap/tcp/syn-retransmit__suricata-verify_bug-4376.pcap"), 0)]
    figs = []
    for source, conn in cases:
        tl = traceviz.load(source)
        row = tl.connections[tl.connections["conn"] == conn].iloc[0]
        figs.append(export.for_image(ladder(tl.packets, row, events=tl.events)))
    paths = [tmp_path / f"{i}.svg" for i in range(len(figs))]
    write_svgs(figs, paths, width=1280, height=720)
    for (source, conn), path in zip(cases, paths):
        count, crossings = label_crossings(path.read_text())
        assert count >= 8 and not crossings, (source, count, crossings[:3])
