"""Render the chart gallery in docs/img: every figure every recipe offers, light and talk.

    python docs/gallery.py [--only RECIPE] [--out docs/img]

Each recipe's ``FIGURES`` (read from its file, as the CLI reads them) says
what it can draw; a recipe may name the bundled file to draw them from in
``EXAMPLE`` (a capture's name or a companion file's, like
``browser-page-load.har``), otherwise the first bundled capture it applies to
that offers the figure is used.  So a new recipe's charts join the gallery
without touching this script.  Images are rendered at a modest scale to keep
the repository small (a talk chart is 1920x1080 on a slide, 960x540 here),
and squeezed to a 256-colour palette by ``pngquant`` when it is installed
(``apt-get install pngquant``; a third of the size, no visible change).
Writes ``docs/img/index.md`` listing them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import traceviz  # noqa: E402
from traceviz.captures import companions, list_captures  # noqa: E402
from traceviz.charts import export, theme as themes  # noqa: E402
from traceviz.recipe import applicability, discover, load_module, read_header  # noqa: E402

THEMES = ("light", "talk")
SCALE = {"light": 0.75, "talk": 0.5}       # 960x540 either way: small files, still readable


def candidates() -> list[str]:
    """Every bundled capture, then its companions a recipe may read (HAR, DevTools trace)."""
    rows = list_captures()
    out = [r["name"] for r in rows]
    for r in rows:
        out += [Path(p).name for role, p in companions(r).items() if role in ("har", "devtools_trace")]
    return out


class Timelines:
    """Loads each bundled file once, on first use."""

    def __init__(self):
        self.cache: dict[str, object] = {}

    def __call__(self, name: str):
        if name not in self.cache:
            try:
                self.cache[name] = traceviz.load(name, measure_tcp=True)   # the stream graphs draw them
            except Exception as exc:  # a file we cannot read gives no example; say so and go on
                print(f"skip {name}: {exc}", file=sys.stderr)
                self.cache[name] = None
        return self.cache[name]


def examples(module, head, figure: str, load: Timelines) -> str | None:
    """The bundled file to draw ``figure`` of this recipe from."""
    names = ([module.EXAMPLE] if getattr(module, "EXAMPLE", None) else []) + candidates()
    for name in names:
        tl = load(name)
        if tl is None or applicability(module, tl) is not None:
            continue
        finding = module.analyze(tl)
        if figure in finding.figures:
            return name
    return None


def render(out: Path, only: str | None = None) -> list[tuple[str, str, str, Path]]:
    out.mkdir(parents=True, exist_ok=True)
    load = Timelines()
    made = []
    for name, path in sorted(discover().items()):
        if only and name != only:
            continue
        head = read_header(path)
        module = load_module(path)
        for figure in head.figures:
            source = examples(module, head, figure, load)
            if source is None:
                print(f"{name} {figure}: no bundled file draws it", file=sys.stderr)
                continue
            finding = module.analyze(load(source))
            for theme in THEMES:
                fig = themes.apply(finding.figure(figure, theme), theme)
                made.append((name, figure, theme, out / f"{name}-{figure}-{theme}.png", source, fig))
    write_pngs(made)
    index(out, made)
    return made


def write_pngs(made) -> None:
    """All the images with one browser start."""
    import plotly.io as pio
    export.ensure_browser()
    figs = [export.for_image(fig) for *_, fig in made]
    sizes = [export.image_size(fig) for *_, fig in made]
    pio.write_images(figs, [m[3] for m in made], width=[w for w, _ in sizes], height=[h for _, h in sizes],
                     scale=[SCALE[m[2]] for m in made])
    squeeze = shutil.which("pngquant")
    for name, figure, theme, target, source, _ in made:
        if squeeze:
            subprocess.run([squeeze, "--force", "--skip-if-larger", "--strip", "--output", str(target), "256",
                            str(target)], check=False)
        print(f"{target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}  ({source})")


def index(out: Path, made) -> None:
    lines = ["# Chart gallery", "",
             "Every chart a bundled recipe draws, in the light and the talk theme, from the bundled captures.",
             "Made by `python docs/gallery.py`.", ""]
    for name, figure, theme, target, source, _ in made:
        if theme != "light":
            continue
        talk = target.with_name(target.name.replace("-light.png", "-talk.png"))
        lines += [f"## `traceviz {name} {source} --chart x.png --figure {figure}`", "",
                  f"![{name} {figure}]({target.name})", "", f"talk theme: [{talk.name}]({talk.name})", ""]
    (out / "index.md").write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--only", help="one recipe's charts")
    args = ap.parse_args()
    render(args.out, args.only)


if __name__ == "__main__":
    main()
