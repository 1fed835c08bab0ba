"""What is bundled: ``captures`` and ``recipes``."""

from __future__ import annotations

from rich.text import Text

from traceviz import output
from traceviz.cli.common import JsonOpt, app
from traceviz.cli.recipes import extra_recipe_dirs
from traceviz.recipe import discover, read_header


@app.command()
def captures(json: JsonOpt = False) -> None:
    """The bundled captures of real traffic, and the concept each one shows."""
    from traceviz.captures import list_captures
    rows = list_captures()
    if json:
        output.print_json(output.plain(rows))
        return
    import pandas as pd
    df = pd.DataFrame(rows)
    if not len(df):
        output.stderr.print("no bundled captures found")
        return
    df["concepts"] = df["concepts"].map(lambda c: ", ".join(c))
    output.stdout.print(output.table(df, ["name", "concepts", "title", "path"], title=f"{len(df)} bundled captures"))
    output.stdout.print(Text("Run a recipe on one by name, e.g.  traceviz handshakes " + str(df["name"].iloc[0])))


@app.command("recipes")
def list_recipes(json: JsonOpt = False) -> None:
    """The recipes available: bundled ones and those in TRACEVIZ_RECIPES / --recipes folders."""
    rows = []
    for path in discover(extra_recipe_dirs).values():
        head = read_header(path)
        rows.append({"name": head.name, "path": str(path), "question": head.question})
    if json:
        output.print_json(rows)
        return
    import pandas as pd
    output.stdout.print(output.table(pd.DataFrame(rows), ["name", "question", "path"], title="recipes"))
