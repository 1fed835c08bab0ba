"""The bundled captures: where they are, what each shows, and finding one by name.

``traceviz captures`` lists them; ``traceviz handshakes tcp-handshakes`` works
because the CLI passes a name that is not an existing path through ``find``.
The facts come from ``manifest.json`` beside the captures, written by the
recorder in ``captures/record/``.
"""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "manifest.json"


def bundled_dir() -> Path:
    """The captures shipped with traceviz: inside the wheel, or the source tree's top level."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "captures", here.parent / "captures"):
        if (candidate / MANIFEST).is_file():
            return candidate
    return here / "_data" / "captures"


def manifest(folder: Path | None = None) -> dict:
    """The raw manifest (``{"format": 1, "captures": [...]}``); empty if there is none."""
    path = Path(folder or bundled_dir()) / MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"format": 1, "captures": []}
    return doc if isinstance(doc, dict) else {"format": 1, "captures": []}


def _resolve(folder: Path, rel) -> str | None:
    return str(folder / rel) if isinstance(rel, str) and rel else None


def list_captures(folder: Path | None = None) -> list[dict]:
    """One flat dict per bundled capture, sorted by name.

    Keys: ``name, path`` (absolute), ``title, concepts, look_at, keylog,
    private_key`` (absolute or None), ``extra_files`` (name -> absolute path),
    ``exists``, ``size``.  The recording details and ground-truth facts are
    in ``entry(name)``.
    """
    folder = Path(folder or bundled_dir()).resolve()
    rows = []
    for e in manifest(folder).get("captures", []):
        if not isinstance(e, dict) or "name" not in e or "file" not in e:
            continue
        path = folder / e["file"]
        extra = e.get("extra_files") or {}
        rows.append({
            "name": e["name"],
            "path": str(path),
            "title": e.get("title", ""),
            "concepts": list(e.get("concepts", [])),
            "look_at": e.get("look_at", ""),
            "keylog": _resolve(folder, e.get("keylog")),
            "private_key": _resolve(folder, e.get("private_key")),
            "extra_files": {k: _resolve(folder, v) for k, v in extra.items()
                            if isinstance(v, str)} if isinstance(extra, dict) else {},
            "exists": path.is_file(),
            "size": path.stat().st_size if path.is_file() else None,
        })
    return sorted(rows, key=lambda r: r["name"])


def entry(name: str, folder: Path | None = None) -> dict:
    """A capture's whole manifest entry (``recorded``, ``facts``...) with its paths made absolute."""
    folder = Path(folder or bundled_dir()).resolve()
    for row in list_captures(folder):
        if row["name"] == name:
            raw = next(e for e in manifest(folder)["captures"] if e.get("name") == name)
            return {**raw, **row}
    raise KeyError(name)


def find(name_or_path: str | Path, folder: Path | None = None) -> Path:
    """An existing file as given, else the bundled capture of that name (or file name).

    Raises ``FileNotFoundError`` naming the bundled captures when neither matches.
    """
    given = Path(name_or_path)
    if given.exists():
        return given
    rows = list_captures(folder)
    key = str(name_or_path)
    for r in rows:
        if key in (r["name"], Path(r["path"]).name, Path(r["path"]).stem):
            return Path(r["path"])
    for r in rows:                  # a companion by its file name: browser-page-load.har, tls12-rsa.keys
        for path in companions(r).values():
            if key == Path(path).name:
                return Path(path)
    names = ", ".join(r["name"] for r in rows) or "none"
    raise FileNotFoundError(f"{key}: no such file, and no bundled capture of that name (have: {names})")


def companions(row: dict) -> dict[str, str]:
    """A listed capture's other files (key log, private key, HAR, trace...): role -> absolute path."""
    out = {"keylog": row.get("keylog"), "private_key": row.get("private_key"), **(row.get("extra_files") or {})}
    return {k: v for k, v in out.items() if v}


def default_keylog(path: str | Path, folder: Path | None = None) -> Path | None:
    """The key log to use for a bundled capture when none is given.

    Not for a capture that ships a private key: that one is there to show
    decryption with the server's key (``--rsa-key``), which a key log would hide.
    """
    target = Path(path).resolve()
    for r in list_captures(folder):
        if Path(r["path"]).resolve() == target and r["keylog"] and not r["private_key"]:
            return Path(r["keylog"])
    return None


def keylog_for(path: str | Path, folder: Path | None = None) -> Path | None:
    """The shipped key log of a bundled capture file, if it has one."""
    target = Path(path).resolve()
    for r in list_captures(folder):
        if Path(r["path"]).resolve() == target and r["keylog"]:
            return Path(r["keylog"])
    return None
