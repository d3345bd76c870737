"""One reuse rule for everything a run folder caches: a saved artefact is reused only when it was made with
the same settings.

Each artefact folder holds ``settings.json`` (what it was made with). :func:`check` keeps a folder whose
settings match, and moves any other one aside to ``<folder>.stale`` (replacing an older one) with a warning
naming what changed, so the caller rebuilds it instead of silently reusing something made otherwise.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Iterable

SETTINGS = "settings.json"


def normalise(settings: dict) -> dict:
    """JSON round trip (tuples -> lists, paths -> str), so saved and fresh settings compare equal."""
    return json.loads(json.dumps(settings, default=str))


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def matches(folder: str | Path, settings: dict) -> bool:
    f = Path(folder) / SETTINGS
    return f.exists() and json.loads(f.read_text()) == normalise(settings)


def changes(folder: str | Path, settings: dict) -> str:
    """Why ``folder`` does not match ``settings``, in words."""
    f = Path(folder) / SETTINGS
    if not f.exists():
        return "it has no settings.json (made by an older erv-lab)"
    a, b = flat(json.loads(f.read_text())), flat(normalise(settings))
    diff = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "settings changed: " + "; ".join(diff[:6]) + (" ..." if len(diff) > 6 else "")


def check(folder: str | Path, settings: dict, artefacts: Iterable[str] | None = None, what: str = "rebuilding",
          stacklevel: int = 3) -> bool:
    """True when ``folder`` holds an artefact made with ``settings`` (reuse it). Otherwise, if it holds one
    (any name in ``artefacts``; default: anything), move it aside with a warning and return False."""
    folder = Path(folder)
    if not folder.exists():
        return False
    names = {p.name for p in folder.iterdir()}
    held = any(n in names or n.endswith("*") and any(x.startswith(n[:-1]) for x in names) for n in artefacts) \
        if artefacts is not None else bool(names - {SETTINGS})
    if not held:
        return False
    if matches(folder, settings):
        return True
    why = changes(folder, settings)
    stale = folder.with_name(folder.name + ".stale")
    shutil.rmtree(stale, ignore_errors=True)
    folder.rename(stale)
    warnings.warn(f"{folder} was not reused: {why}. Moved it to {stale} and {what}.", stacklevel=stacklevel)
    return False


def record(folder: str | Path, settings: dict) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SETTINGS).write_text(json.dumps(normalise(settings), indent=1))


def jsonl_cache(path: str | Path, meta: dict, value: str) -> dict:
    """Open an append-only JSONL cache whose first line is ``{"meta": meta}``: returns ``{row["key"]:
    row[value]}`` of the rows already there (a line cut by an interruption is skipped). A file made with other
    ``meta`` is discarded; a missing one is created with the meta line, so the caller can append rows at once."""
    path = Path(path)
    head = json.dumps({"meta": meta})
    done: dict = {}
    if path.exists():
        lines = path.read_text().splitlines()
        if lines and lines[0] == head:
            for line in lines[1:]:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                done[row["key"]] = row[value]
        else:
            path.unlink()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(head + "\n")
    return done

