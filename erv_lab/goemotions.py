"""GoEmotions (Demszky et al., ACL 2020), vendored in ``erv_lab/vendor/goemotions/``, loaded into ``datasets``.

Checks every file's sha256 against the table in its ``SOURCE.md`` before reading, parses the
TSVs with a real CSV reader (texts may be quoted, with ``""`` for a literal quote) and returns a
``datasets.DatasetDict`` with ``text``, ``label_ids`` and a 28-dim multi-hot ``labels`` in GoEmotions order.
It trains nothing; the verifier and the judges consume it.
"""
from __future__ import annotations

import csv
import hashlib
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from erv_lab.labels import GOEMOTIONS
from erv_lab.paths import GOEMOTIONS_DIR

DATA_DIR = GOEMOTIONS_DIR  # package data: erv_lab/vendor/goemotions/
SPLITS = {"train": 43410, "dev": 5426, "test": 5427}  # rows per split (data_cards/goemotions.md)
_ROW = re.compile(r"^\|\s*([\w.\-]+)\s*\|\s*[\d,]+\s*\|\s*([0-9a-f]{64})\s*\|", re.MULTILINE)


class ChecksumError(RuntimeError):
    """A vendored GoEmotions file does not match the sha256 recorded in SOURCE.md."""


def expected_checksums(root: Path = DATA_DIR) -> dict[str, str]:
    """``{file name: sha256}`` parsed from the table in ``SOURCE.md``."""
    return dict(_ROW.findall((Path(root) / "SOURCE.md").read_text(encoding="utf-8")))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=None)
def _verified(path: str, digest: str, size: int, mtime: float) -> bool:
    """Hash once per (file, size, mtime): a changed file is re-hashed."""
    return _sha256(Path(path)) == digest


def verify(root: Path = DATA_DIR, names: tuple[str, ...] | None = None) -> None:
    """Raise ``ChecksumError`` unless every listed file (default: all in SOURCE.md) matches its sha256."""
    root = Path(root)
    sums = expected_checksums(root)
    for name in names or tuple(sums):
        path = root / name
        if not path.exists():
            raise ChecksumError(f"missing {path}; reinstall erv-lab (its GoEmotions copy is package data)")
        st = path.stat()
        if not _verified(str(path), sums[name], st.st_size, st.st_mtime):
            raise ChecksumError(f"{path} does not match its sha256 in SOURCE.md ({sums[name][:12]}…)")


def read_split(split: str, root: Path = DATA_DIR, check: bool = True) -> list[tuple[str, list[int], str]]:
    """Rows ``(text, label_ids, comment_id)`` of one split, checksum-verified."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {list(SPLITS)}")
    if check:
        verify(root, (f"{split}.tsv",))
    rows = []
    with open(Path(root) / f"{split}.tsv", encoding="utf-8", newline="") as fh:
        for rec in csv.reader(fh, delimiter="\t"):
            if len(rec) != 3:
                raise ValueError(f"{split}.tsv: expected 3 columns, got {len(rec)}: {rec[:1]}")
            rows.append((rec[0].strip(), [int(x) for x in rec[1].split(",")], rec[2]))
    return rows


def multi_hot(label_ids: list[list[int]], n: int = len(GOEMOTIONS)) -> np.ndarray:
    """``(N, 28)`` float32 matrix with 1 where a row has the label."""
    out = np.zeros((len(label_ids), n), dtype=np.float32)
    for i, ids in enumerate(label_ids):
        out[i, ids] = 1.0
    return out


def load_goemotions(splits: tuple[str, ...] = ("train", "dev", "test"), max_rows: dict | int | None = None,
                    root: Path = DATA_DIR, seed: int = 0):
    """``datasets.DatasetDict`` with columns ``text``, ``label_ids``, ``labels`` (28 floats), ``id``.

    ``max_rows`` caps rows per split (an int caps only ``train``; a dict caps named splits); the cap
    takes a seeded random subset, not the first rows, so label frequencies stay representative.
    """
    import datasets

    if isinstance(max_rows, int):
        max_rows = {"train": max_rows}
    out = {}
    for split in splits:
        rows = read_split(split, root)
        cap = (max_rows or {}).get(split)
        if cap is not None and cap < len(rows):
            keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=cap, replace=False))
            rows = [rows[i] for i in keep]
        texts, ids, cids = zip(*rows)
        out[split] = datasets.Dataset.from_dict(
            {"text": list(texts), "label_ids": [list(x) for x in ids], "labels": multi_hot(list(ids)).tolist(),
             "id": list(cids)},
            features=datasets.Features({
                "text": datasets.Value("string"),
                "label_ids": datasets.Sequence(datasets.Value("int8")),
                "labels": datasets.Sequence(datasets.Value("float32"), length=len(GOEMOTIONS)),
                "id": datasets.Value("string"),
            }),
        )
    return datasets.DatasetDict(out)


def label_names(root: Path = DATA_DIR) -> list[str]:
    """Label order from ``emotions.txt`` (checked equal to ``labels.GOEMOTIONS`` by the tests)."""
    return (Path(root) / "emotions.txt").read_text(encoding="utf-8").split()
