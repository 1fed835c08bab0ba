"""``traceviz export``: captures of any size as a partitioned Parquet dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from traceviz import output
from traceviz.cli.common import JsonOpt, KeylogOpt, RsaOpt, app, guarded, rows_json, show_warnings

STAGE_WORDS = {"split": "files split", "analyse": "partitions analysed", "write": "partitions written"}


@app.command("export")
def export_command(
        files: Annotated[list[str], typer.Argument(metavar="FILE", help="Captures (pcap/pcapng, .gz too) or folders of them, read as "
                                                        "one capture (rotated files: in order of their first frame).",
                                                   show_default=False)],
        out: Annotated[Path, typer.Option("-o", "--output", metavar="DIR", help="The dataset folder to write (new or empty).",
                                          show_default=False)],
        partitions: Annotated[Optional[int], typer.Option(metavar="N", help="Partitions (default: one per 256 MB of input); each "
                                                               "is analysed in memory on its own.",
                                                          show_default=False)] = None,
        engine: Annotated[str, typer.Option(metavar="NAME", help="local (this process) or dask (a Dask cluster: a LocalCluster, "
                                                 "or --scheduler).")] = "local",
        scheduler: Annotated[Optional[str], typer.Option(metavar="ADDRESS", help="A Dask scheduler's address (tcp://host:8786) for "
                                                              "--engine dask; files and folders must be on storage "
                                                              "its workers share.", show_default=False)] = None,
        work: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Where the partitions wait between passes (about the "
                                                          "input's size; default: inside the output folder).",
                                                     show_default=False)] = None,
        overwrite: Annotated[bool, typer.Option("--overwrite", metavar="", help="Replace a dataset already in the output "
                                                                   "folder.")] = False,
        keylog: KeylogOpt = None, rsa_key: RsaOpt = None, json: JsonOpt = None) -> None:
    """Write the tables as a Parquet dataset (packets/, connections/, events/, requests/, tls/...), in bounded memory.

    Read it back with [bold]traceviz sql DIR "select ..."[/bold], any command ([italic]traceviz handshakes DIR[/italic])
    or traceviz.open_dataset(DIR).
    """
    from traceviz.assemble.export import export
    with guarded():
        mode = rows_json(json)
        with _progress() as step:
            manifest = export(files, out, partitions=partitions, engine=engine, scheduler=scheduler,
                              keylog=keylog, rsa_key=rsa_key, progress=step, work=work, overwrite=overwrite)
        show_warnings(manifest["warnings"])
        facts = {"dataset": str(out), "files": len(manifest["files"]), "frames": manifest["frames"],
                 "partitions": manifest["partitions"], "engine": manifest["engine"], "seconds": manifest["seconds"],
                 **{name: t["rows"] for name, t in manifest["tables"].items()}}
        if mode:
            output.print_json({**facts, "warnings": manifest["warnings"]})
            return
        output.key_values(facts, title=f"dataset {out}")


class _progress:
    """Progress on stderr: bars on a terminal, else a line as each pass ends."""

    def __enter__(self):
        self.bar = None
        if output.stderr.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            self.bar = Progress(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=output.stderr, transient=True)
            self.bar.__enter__()
        self.tasks: dict = {}
        return self.step

    def step(self, stage: str, done: int, total: int) -> None:
        words = STAGE_WORDS.get(stage, stage)
        if self.bar is not None:
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(words, total=total)
            self.bar.update(self.tasks[stage], completed=done, total=total)
        elif done == total and total and stage not in self.tasks:
            self.tasks[stage] = True
            output.stderr.print(Text(f"traceviz export: {total} {words}"))

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
