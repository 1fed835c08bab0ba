"""The tables as Arrow data with one schema for every partition, and back.

Each partition of a dataset is written by its own process, from tables
whose object columns hold whatever the assembler put there: text, numbers,
lists, a dict now and then, or nothing at all.  Parquet files read as one
dataset need one schema, so each column gets a *kind* from its values
(``kind_of``), the kinds of all partitions are joined into one
(``unify``), and every partition is written with the joined kind
(``to_arrow``): a frame number that is a float where some are missing is
an integer again, text read by categories stays categories, and what has no
column type of its own (a dict, a list of pairs) is JSON text.

``to_pandas`` reads Arrow back as the Timeline's tables are typed: integers
with gaps as ``Int64``, booleans with gaps as ``boolean``, lists as lists.
pyarrow does the conversions; the kinds are what it cannot know.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

SCALARS = ("int", "float", "bool", "str", "cat")
_INFERRED = {"string": "str", "integer": "int", "floating": "float", "mixed-integer-float": "float",
             "boolean": "bool", "empty": "null"}
LISTS = ("list<int>", "list<float>", "list<str>")


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _scalar_kind(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, (int, np.integer)):
        return "int"
    if isinstance(v, (float, np.floating)):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (list, np.ndarray)):
        inner = {_scalar_kind(x) for x in v if not _missing(x)}
        if inner <= {"int"}:
            return "list<int>"
        if inner <= {"int", "float"}:
            return "list<float>"
        if inner == {"str"}:
            return "list<str>"
    return "json"


def kind_of(series: pd.Series) -> str:
    """What a column holds: int, float, bool, str, cat, list<int|float|str>, json or null."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "cat"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "str"
    # pandas' own scan (C) settles the common columns; lists and mixtures are looked at one by one.
    quick = _INFERRED.get(pd.api.types.infer_dtype(series, skipna=True))
    if quick is not None:
        return quick
    kinds = set()
    for v in series.tolist():
        if not _missing(v):
            kinds.add(_scalar_kind(v))
            if len(kinds) > 2:
                break
    return _join_all(kinds) if kinds else "null"


def _join_all(kinds) -> str:
    out = "null"
    for k in kinds:
        out = unify(out, k)
    return out


def unify(a: str, b: str) -> str:
    """One kind for a column that is ``a`` in one partition and ``b`` in another."""
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    pair = {a, b}
    if pair == {"int", "float"}:
        return "float"
    if pair == {"str", "cat"}:
        return "cat"
    if pair <= {"list<int>", "list<float>"}:
        return "list<float>"
    if pair <= set(SCALARS):
        return "str"
    return "json"


def kinds(df: pd.DataFrame) -> dict[str, str]:
    return {c: kind_of(df[c]) for c in df.columns}


def unify_tables(parts: list[dict[str, str]], first: list[str]) -> dict[str, str]:
    """Column -> kind over all partitions, the columns in ``first`` (the schema) first,
    then the others in the order they first appear."""
    out: dict[str, str] = {c: "null" for c in first if any(c in p for p in parts)}
    for p in parts:
        for c, k in p.items():
            out[c] = unify(out.get(c, "null"), k)
    return out


def arrow_type(kind: str):
    import pyarrow as pa
    return {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string(),
            "cat": pa.dictionary(pa.int32(), pa.string()), "json": pa.string(), "null": pa.string(),
            "list<int>": pa.list_(pa.int64()), "list<float>": pa.list_(pa.float64()),
            "list<str>": pa.list_(pa.string())}[kind]


def schema(columns: dict[str, str]):
    import pyarrow as pa
    return pa.schema([pa.field(c, arrow_type(k)) for c, k in columns.items()])


def to_arrow(df: pd.DataFrame, columns: dict[str, str]):
    """``df`` as an Arrow table with exactly ``columns`` (missing ones are all null)."""
    import pyarrow as pa
    arrays = [_array(df[c] if c in df.columns else None, k, len(df)) for c, k in columns.items()]
    return pa.Table.from_arrays(arrays, schema=schema(columns))


def _array(series: pd.Series | None, kind: str, n: int):
    import pyarrow as pa
    t = arrow_type(kind)
    if series is None or kind == "null":
        return pa.nulls(n, t)
    have = kind_of(series) if series.dtype == object else None
    if kind in ("int", "float", "bool") and series.dtype != object:
        return pa.array(series, from_pandas=True).cast(t)
    if kind == "cat":
        values = series if isinstance(series.dtype, pd.CategoricalDtype) else series.astype("object")
        if isinstance(values.dtype, pd.CategoricalDtype) and not all(isinstance(c, str) for c in values.cat.categories):
            values = values.astype("object")
        arr = pa.array(values, from_pandas=True) if isinstance(values.dtype, pd.CategoricalDtype) else \
            pa.array([None if _missing(v) else str(v) for v in values.tolist()], pa.string()).dictionary_encode()
        return arr.cast(t)
    if kind == "str" and (have == "str" or pd.api.types.is_string_dtype(series.dtype) and series.dtype != object):
        # all text already: pyarrow converts it in C
        return pa.array(series, type=t, from_pandas=True)
    values = series.tolist()
    if kind == "json":
        return pa.array([None if _missing(v) else json.dumps(_plain(v), default=str) for v in values], t)
    if kind == "str":
        return pa.array([None if _missing(v) else v if isinstance(v, str) else _text(v) for v in values], t)
    if kind in LISTS:
        return pa.array([None if _missing_list(v) else [None if _missing(x) else x for x in v] for v in values], t)
    if have in ("int", "float", "bool") or kind in ("int", "float", "bool"):
        return pa.array([None if _missing(v) else v for v in values], t)
    return pa.array(values, t)


def _missing_list(v) -> bool:
    return not isinstance(v, (list, tuple, np.ndarray)) and _missing(v)


def _text(v) -> str:
    return str(v) if isinstance(v, (int, float, bool, np.generic)) else json.dumps(_plain(v), default=str)


def _plain(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def to_pandas(table, columns: dict[str, str] | None = None) -> pd.DataFrame:
    """An Arrow table as the Timeline's tables are typed (see the module doc); ``columns``
    (column -> kind) says which text is JSON, to be read back as what it was."""
    import pyarrow as pa
    mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    df = table.to_pandas(types_mapper=mapping.get)
    for name, kind in (columns or {}).items():
        if kind == "json" and name in df.columns:
            df[name] = pd.Series([None if v is None else json.loads(v) for v in df[name].tolist()],
                                 index=df.index, dtype=object)
    for field in table.schema:
        if (columns or {}).get(field.name) == "json":
            continue
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            df[field.name] = pd.Series([v.tolist() if isinstance(v, np.ndarray) else v for v in df[field.name]],
                                       index=df.index, dtype=object)
        elif pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            df[field.name] = df[field.name].astype(object).where(df[field.name].notna(), None)
    return df
