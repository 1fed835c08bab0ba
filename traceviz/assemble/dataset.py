"""A dataset ``traceviz export`` wrote, read back lazily: the tables on demand, SQL over them.

The folder holds one Parquet dataset per table (``packets/``,
``connections/``, ``events/``, ``requests/``, ``tls/``, ``quic/``,
``streams/``), partitioned Hive-style (``part=K/data.parquet``: K is the flow
hash partition), and ``manifest.json`` (the files read, the partitions, each
table's rows and columns, the schema version, the warnings).  Nothing is read
until it is asked for:

- ``Dataset.table(name)``: a ``pyarrow.dataset.Dataset``, to scan with filters
  and projections in bounded memory;
- ``Dataset.sql(query)``: DuckDB over the Parquet files, each table a view
  of that name (``Dataset.duckdb()`` gives the connection itself);
- ``Dataset.packets``, ``.connections``, ...: the table as a pandas DataFrame,
  typed and ordered as a ``Timeline``'s, read on first use.  A Dataset stands
  in for a Timeline wherever tables are all that is needed (the recipes).
  ``packets_of(conns)`` reads only some connections' packets (the partitions
  that hold them); a packets table too big to read whole
  (``TRACEVIZ_DATASET_ROWS`` rows, default 5 million) is refused with a
  message saying so, rather than exhausting memory.

pyarrow and DuckDB are imported when a table is read, never when the module is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from traceviz.errors import InputError
from traceviz.model import SCHEMAS, SourceInfo, conform, empty_table

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
TABLES = tuple(SCHEMAS)
MAX_ROWS = 5_000_000
# How each table's rows are ordered in a Timeline (stable sorts, in this order of keys).
ORDER = {"packets": ["frame"], "connections": ["conn"], "events": ["ts", "frame"], "requests": ["request"],
         "tls": ["conn"], "quic": ["conn"], "streams": ["conn"]}


def is_dataset(path) -> bool:
    """Whether ``path`` is a folder ``traceviz export`` wrote (it has our manifest)."""
    try:
        p = Path(path)
        if not (p / MANIFEST).is_file():
            return False
        with open(p / MANIFEST, "rb") as f:
            return b'"traceviz_dataset"' in f.read(4096)
    except (OSError, TypeError, ValueError):
        return False


def open_dataset(path: str | os.PathLike) -> "Dataset":
    """The dataset in folder ``path`` (``traceviz export FILE... -o path``)."""
    return Dataset(path)


def _max_rows() -> int:
    try:
        return int(os.environ.get("TRACEVIZ_DATASET_ROWS", MAX_ROWS))
    except ValueError:
        return MAX_ROWS


class Dataset:
    """The tables of an exported dataset (see the module doc)."""

    def __init__(self, path: str | os.PathLike):
        self.folder = Path(path)
        if not is_dataset(self.folder):
            raise InputError(str(path), "not a traceviz dataset (no manifest.json written by traceviz export)")
        try:
            self.manifest = json.loads((self.folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(str(path), f"cannot read its manifest.json ({exc})") from None
        version = self.manifest.get("traceviz_dataset")
        if version != SCHEMA_VERSION:
            raise InputError(str(path), f"dataset schema version {version}; this traceviz reads version "
                                        f"{SCHEMA_VERSION} (export the captures again)")
        m = self.manifest
        self.source = SourceInfo(path=str(path), format="traceviz dataset (Parquet)", size=int(m.get("size", 0)),
                                 link_types=dict(m.get("link_types", {})), frames=int(m.get("frames", 0)),
                                 detail={"files": len(m.get("files", [])), "partitions": m.get("partitions"),
                                         "members": m.get("files", []), "source": m.get("source")},
                                 warnings=list(m.get("warnings", [])))
        self.decryption = m.get("decryption")
        self._frames: dict = {}
        self._parts: dict | None = None     # conn -> partition
        self._duck = None

    # -- what is there -----------------------------------------------------------------------

    @property
    def warnings(self) -> list[str]:
        return self.source.warnings

    @property
    def partitions(self) -> int:
        return int(self.manifest.get("partitions", 0))

    def rows(self, name: str) -> int:
        """Rows of table ``name``, from the manifest (nothing is read)."""
        return int(self.manifest.get("tables", {}).get(name, {}).get("rows", 0))

    def columns(self, name: str) -> dict[str, str]:
        """Column -> kind (``assemble.parquet``) of table ``name``."""
        return dict(self.manifest.get("tables", {}).get(name, {}).get("columns", {}))

    def _files(self, name: str, parts=None) -> list[str]:
        folder = self.folder / name
        if not folder.is_dir():
            return []
        found = sorted(folder.glob("part=*/*.parquet"), key=lambda p: (int(p.parent.name[5:]), p.name))
        if parts is not None:
            parts = set(parts)
            found = [p for p in found if int(p.parent.name[5:]) in parts]
        return [str(p) for p in found]

    def table(self, name: str):
        """Table ``name`` as a ``pyarrow.dataset.Dataset`` (a ``part`` column says the partition)."""
        import pyarrow as pa
        import pyarrow.dataset as ds
        from traceviz.assemble.parquet import schema
        self._check(name)
        full = schema(self.columns(name)).append(pa.field("part", pa.int32()))
        files = self._files(name)
        if not files:
            return ds.dataset(pa.table({f.name: pa.array([], f.type) for f in full}))
        return ds.dataset(files, schema=full, format="parquet", partitioning=ds.partitioning(
            pa.schema([("part", pa.int32())]), flavor="hive"))

    def _check(self, name: str) -> None:
        if name not in TABLES:
            raise InputError(str(self.folder), f"no table {name!r}; the tables are {', '.join(TABLES)}")

    # -- tables as a Timeline has them -------------------------------------------------------

    def read(self, name: str, filter=None, parts=None):
        """Table ``name`` (or the rows ``filter``, a pyarrow expression, keeps) as a DataFrame
        typed and ordered as a Timeline's; ``parts``: only these partitions."""
        import pyarrow.dataset as ds
        from traceviz.assemble.parquet import to_pandas
        from traceviz.assemble.parquet import schema
        self._check(name)
        files = self._files(name, parts)
        columns = self.columns(name)
        if not columns:
            return empty_table(name)
        if files:
            table = ds.dataset(files, schema=schema(columns), format="parquet").to_table(filter=filter)
        else:
            table = schema(columns).empty_table()
        df = to_pandas(table, columns)
        keys = [k for k in ORDER[name] if k in df.columns]
        if keys and len(df):
            df = df.sort_values(keys, kind="stable", na_position="last")
        return conform(name, df)

    def _whole(self, name: str):
        if name not in self._frames:
            limit = _max_rows()
            if name == "packets" and self.rows(name) > limit:
                raise InputError(str(self.folder), f"the packets table has {self.rows(name):,} rows, more than "
                                 f"{limit:,} to read at once (TRACEVIZ_DATASET_ROWS): read some connections' "
                                 f"packets (Dataset.packets_of, traceviz sql) instead")
            self._frames[name] = self.read(name)
        return self._frames[name]

    packets = property(lambda self: self._whole("packets"))
    connections = property(lambda self: self._whole("connections"))
    events = property(lambda self: self._whole("events"))
    requests = property(lambda self: self._whole("requests"))
    tls = property(lambda self: self._whole("tls"))
    quic = property(lambda self: self._whole("quic"))
    streams = property(lambda self: self._whole("streams"))

    def packets_of(self, conns):
        """The packets of connections ``conns`` (read from the partitions that hold them)."""
        import pyarrow.compute as pc
        wanted = sorted({int(c) for c in conns})
        if "packets" in self._frames:
            p = self._frames["packets"]
            return p[p["conn"].isin(wanted)]
        if self._parts is None:
            where = self.table("connections").to_table(columns=["conn", "part"])
            self._parts = dict(zip(where["conn"].to_pylist(), where["part"].to_pylist()))
        parts = sorted({self._parts[c] for c in wanted if c in self._parts})
        return self.read("packets", filter=pc.field("conn").isin(wanted), parts=parts)

    def first_ts(self) -> float | None:
        """The first packet's time (the smallest ``ts``; None without packets), read a batch of
        one column at a time: what a Timeline's ``packets["ts"].min()`` is, in bounded memory."""
        import pyarrow.compute as pc
        if "packets" in self._frames:
            ts = self._frames["packets"]["ts"]
            return float(ts.min()) if len(ts) else None
        lows = [pc.min(b.column(0)).as_py() for b in self.table("packets").to_batches(columns=["ts"]) if b.num_rows]
        lows = [v for v in lows if v is not None]
        return float(min(lows)) if lows else None

    def conn(self, n: int):
        """The packets of connection ``n`` (Wireshark's ``tcp.stream eq n``)."""
        return self.packets_of([n])

    # -- SQL ---------------------------------------------------------------------------------

    def duckdb(self):
        """A DuckDB connection with each table as a view of that name (and ``part``)."""
        if self._duck is None:
            try:
                import duckdb
            except ImportError:
                raise InputError(str(self.folder), "SQL needs DuckDB: pip install 'traceviz[sql]'") from None
            con = duckdb.connect()
            for name in TABLES:
                files = self._files(name)
                if files:
                    listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
                    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listed}], "
                                f"hive_partitioning = true, union_by_name = true)")
                else:
                    con.register(name, self.table(name).to_table())
            self._duck = con
        return self._duck

    def sql(self, query: str):
        """The result of a DuckDB query over the tables, as a pandas DataFrame."""
        con = self.duckdb()
        import duckdb
        try:
            result = con.sql(query)
            if result is None:                  # a statement, not a query
                import pandas as pd
                return pd.DataFrame()
            return result.df()
        except duckdb.Error as exc:
            raise InputError(str(self.folder), f"SQL: {str(exc).splitlines()[0]}") from None

    # -- like a Timeline -----------------------------------------------------------------------

    def summary(self) -> dict:
        return {"file": str(self.folder), "format": self.source.format, "frames": self.source.frames,
                "partitions": self.partitions, **{name: self.rows(name) for name in ("connections", "events",
                                                                                       "requests")}}

    def __repr__(self) -> str:
        s = self.summary()
        return (f"<Dataset {self.folder.name}: {s['frames']} frames in {s['partitions']} partitions, "
                f"{s['connections']} connections, {s['events']} events, {s['requests']} requests>")
