"""What is bundled: ``captures`` and ``recipes``."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from traceviz import output
from traceviz.cli.common import JsonOpt, WideOpt, app, guarded, rows_json
from traceviz.cli.recipes import extra_recipe_dirs
from traceviz.recipe import discover, read_header

ROLES = {"keylog": "key log", "private_key": "server's private key", "devtools_trace": "DevTools trace",
         "har": "HAR", "netlog": "NetLog", "qlog": "qlog", "server_keylog": "server's key log"}


@app.command()
def captures(json: JsonOpt = None) -> None:
    """The bundled captures of real traffic: the concept each one shows, what to look at, and its files."""
    from traceviz.captures import companions, list_captures
    with guarded():
        mode = rows_json(json)
        rows = list_captures()
        if mode:
            output.print_json(output.plain(rows))
            return
        if not rows:
            output.stderr.print("no bundled captures found")
            return
        console = output.stdout
        console.print(Text(f"{len(rows)} bundled captures", style="bold"), soft_wrap=True)
        har = next((Path(p).name for r in rows for p in companions(r).values() if p.endswith(".har")), None)
        output.paragraph("Every command takes a capture's name, or the name of one of its files, in place of a "
                         f"path: traceviz handshakes {rows[0]['name']}" + (f", traceviz waterfall {har}" if har else "")
                         + ". A capture's own key log is used unless --keylog names another.", console, style="dim")
        for r in rows:
            console.print(soft_wrap=True)
            console.print(Text(r["name"], style="bold"), soft_wrap=True)
            files = [Path(r["path"]).name] + [f"{Path(p).name} ({ROLES.get(role, role.replace('_', ' '))})"
                                              for role, p in companions(r).items()]
            output.key_values({"  what": r["title"], "  concepts": ", ".join(r["concepts"]),
                               "  look at": r["look_at"], "  files": ", ".join(files)}, console)


@app.command("recipes")
def list_recipes(json: JsonOpt = None, wide: WideOpt = False) -> None:
    """The recipes available: bundled ones and those in TRACEVIZ_RECIPES / --recipes folders."""
    with guarded():
        mode = rows_json(json)
        rows = []
        for path in discover(extra_recipe_dirs).values():
            head = read_header(path)
            rows.append({"name": head.name, "path": str(path), "question": head.question,
                         "figures": list(head.figures), "fails_on": head.fails_on})
        if mode:
            output.print_json(rows)
            return
        import pandas as pd
        output.print_table(pd.DataFrame(rows), ["name", "question", ("path", 3)], title="recipes", wide=wide,
                           all_rows=True)
