"""Reading a dataset's on-disk layout: split files -> clip records (DFEW, MAFW, a folder + CSV).

DFEW's ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_<fold>.csv`` and MAFW's
``Train & Test Set/single/no_caption/set_<fold>/{train,test}.txt`` (``data_cards/``), with the name variants
seen in the wild, and any folder of clips with a ``path,label`` CSV. A record is ``{clip_id, path, label}``;
a clip that cannot be found or carries an unknown label is skipped and counted in a :class:`SkipReport`, and
only a missing split file or nothing usable left is an error (:class:`DataError`). Decoding the clips is
``erv_lab.media``; turning records into dataset rows is ``erv_lab.data``.
"""
from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from erv_lab.labels import normalize_label, vocabulary

VIDEO_EXT = (".mp4", ".avi", ".mov", ".mkv", ".webm")
MAFW_SPLIT_NAMES = ("Train & Test Set", "Train_Test_Set", "Train&Test Set", "train_test_set")
DFEW_SPLIT_NAMES = ("{split}(single-labeled)", "{split}(single_labeled)", "{split}_single_labeled")


class DataError(RuntimeError):
    """A split file is missing or nothing usable remains: the one case a data run stops."""


@dataclass
class SkipReport:
    """Counts of skipped clips by reason (plus a few examples) and of clips kept.

    ``silent_audio`` counts the kept clips that had no audio track and were given a silent one
    (``missing_audio="silence"``); it appears in ``as_dict`` and the text only when non-zero, so reports of
    runs that never fill audio stay as they were.
    """
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    silent_audio: int = 0

    def skip(self, reason: str, clip: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(clip)

    def as_dict(self) -> dict:
        out = {"kept": self.kept, "skipped": dict(self.skipped), "notes": dict(self.notes),
               "examples": self.examples}
        if self.silent_audio:
            out["silent_audio"] = self.silent_audio
        return out

    def __str__(self) -> str:
        lines = [f"kept {self.kept} clips, skipped {sum(self.skipped.values())}"]
        lines += [f"  skipped {n:5d}  {r}  (e.g. {', '.join(self.examples[r])})" for r, n in self.skipped.most_common()]
        if self.silent_audio:
            lines.append(f"  silent  {self.silent_audio:5d}  silent_audio (no audio track: kept with a silent "
                         "16 kHz track)")
        lines += [f"  note    {n:5d}  {r}" for r, n in self.notes.most_common()]
        return "\n".join(lines)


def _find(root: Path, *candidates: str) -> Path | None:
    return next((root / c for c in candidates if (root / c).exists()), None)


def _locate(root: Path, cid: str, videos: str, frame_dirs: tuple[str, ...]) -> Path | None:
    """The clip's video file, else its frame folder, else None."""
    for ext in VIDEO_EXT:
        if (root / videos / f"{cid}{ext}").exists():
            return root / videos / f"{cid}{ext}"
    return next((root / d / cid for d in frame_dirs if (root / d / cid).is_dir()), None)


def dfew_split_file(root: str | Path, fold: int, split: str) -> Path:
    """``EmoLabel_DataSplit/<folder>/set_{fold}.csv`` of DFEW, from the first of the folder names copies use
    (``DFEW_SPLIT_NAMES``: ``{split}(single-labeled)``, ``{split}(single_labeled)``, ``{split}_single_labeled``)
    that holds this fold's file: a copy may hold several of them, with different folds in each. Raises
    DataError naming every folder searched when none has it."""
    base = Path(root) / "EmoLabel_DataSplit"
    dirs = [base / name.format(split=split) for name in DFEW_SPLIT_NAMES]
    for d in dirs:
        if (d / f"set_{fold}.csv").is_file():
            return d / f"set_{fold}.csv"
    searched = ", ".join(f"{d}/" + ("" if d.is_dir() else " (no such folder)") for d in dirs)
    raise DataError(f"DFEW split file set_{fold}.csv not found; searched {searched}")


def list_dfew(root: str | Path, fold: int, split: str, report: SkipReport | None = None) -> list[dict]:
    """Records of DFEW ``EmoLabel_DataSplit/{split}(single-labeled|single_labeled)/set_{fold}.csv``
    (every folder-name variant is searched for the fold's file: :func:`dfew_split_file`).

    Ids are unpadded integers -> ``XXXXX``; labels 1..7 -> happy, sad, neutral, angry, surprise, disgust,
    fear. Clips come from ``Clip/original/XXXXX.mp4``, else ``Clip/clip_224x224_16f/XXXXX/`` or
    ``Clip/clip_224x224/XXXXX/`` frame folders.
    """
    root, report = Path(root), report if report is not None else SkipReport()
    path = dfew_split_file(root, fold, split)
    vocab, out = vocabulary("dfew"), []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            raw_id, raw_label = (row.get("video_name") or "").strip(), (row.get("label") or "").strip()
            if not raw_id.isdigit():
                report.skip("bad_id", raw_id or "<empty>")
                continue
            cid = f"{int(raw_id):05d}"
            label = vocab[int(raw_label) - 1] if raw_label.isdigit() and 1 <= int(raw_label) <= 7 \
                else normalize_label(raw_label, "dfew")
            if label is None:
                report.skip("unknown_label", f"{cid}:{raw_label}")
                continue
            clip = _locate(root, cid, "Clip/original", ("Clip/clip_224x224_16f", "Clip/clip_224x224"))
            if clip is None:
                report.skip("missing_clip", cid)
                continue
            out.append({"clip_id": cid, "label": label, "path": str(clip), "dataset": "dfew", "fold": fold})
    return out


def decode_text(raw: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030 (a superset of GBK), replacing what still fails."""
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("gb18030", errors="replace")


def list_mafw(root: str | Path, fold: int, split: str, caption: bool = False, split_dir: str | None = None,
              report: SkipReport | None = None) -> list[dict]:
    """Records of MAFW ``<split_dir>/single/{no_caption,with_caption}/set_{fold}/{split}.txt``.

    ``split_dir`` defaults to the first of MAFW_SPLIT_NAMES that exists (copies rename ``Train & Test Set``).
    Lines are ``XXXXX.mp4 label`` or, with captions, tab-separated ``clip, label, zh caption, en caption``
    in GBK. Compound labels (``anger_disgust``) are skipped here (single-label protocol) and counted.
    """
    root, report = Path(root), report if report is not None else SkipReport()
    base = root / split_dir if split_dir else _find(root, *MAFW_SPLIT_NAMES)
    sub = "with_caption" if caption else "no_caption"
    path = base / "single" / sub / f"set_{fold}" / f"{split}.txt" if base else None
    if path is None or not path.exists():
        raise DataError(f"MAFW split file not found: {root}/{split_dir or MAFW_SPLIT_NAMES[0]}/single/{sub}/"
                        f"set_{fold}/{split}.txt (pass split_dir= if your copy renamed the folder)")
    out = []
    for line in decode_text(path.read_bytes()).splitlines():
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 2:
            continue
        cid = Path(parts[0].strip()).stem
        words = parts[1].strip().split("_")
        labels = [normalize_label(w, "mafw") for w in words]
        if len(words) > 1:
            report.skip("compound_label", f"{cid}:{parts[1].strip()}")
            continue
        if labels[0] is None:
            report.skip("unknown_label", f"{cid}:{parts[1].strip()}")
            continue
        clip = _locate(root, cid, "data/clips", ("data/frames",))
        if clip is None:
            report.skip("missing_clip", cid)
            continue
        rec = {"clip_id": cid, "label": labels[0], "path": str(clip), "dataset": "mafw", "fold": fold}
        if caption and len(parts) >= 4:
            rec["caption_zh"], rec["caption_en"] = parts[2].strip(), parts[3].strip()
        out.append(rec)
    return out


def list_folder(root: str | Path, csv_path: str | Path, labels: list[str], split: str | None = None,
                report: SkipReport | None = None) -> list[dict]:
    """Records of a folder of videos listed by a CSV with columns ``path,label`` (optional ``split``).

    Labels are matched case-insensitively against the user's ``labels`` (DFEW/MAFW synonyms accepted).
    """
    root, report = Path(root), report if report is not None else SkipReport()
    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise DataError(f"folder CSV not found: {csv_path}")
    wanted = {w.strip().lower(): w.strip() for w in labels}

    def match(word: str) -> str | None:
        word = word.strip().lower()
        if word in wanted:
            return wanted[word]
        for ds in ("dfew", "mafw"):
            norm = normalize_label(word, ds)
            for w in wanted:
                if norm and normalize_label(w, ds) == norm:
                    return wanted[w]
        return None

    out = []
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            if split and row.get("split") and row["split"].strip() != split:
                continue
            rel = (row.get("path") or "").strip()
            label = match(row.get("label") or "")
            if label is None:
                report.skip("unknown_label", f"{rel}:{row.get('label')}")
                continue
            clip = Path(rel) if Path(rel).is_absolute() else root / rel
            if not clip.exists():
                report.skip("missing_clip", rel)
                continue
            out.append({"clip_id": Path(rel).stem, "label": label, "path": str(clip), "dataset": "folder", "fold": 0,
                        "split_given": bool((row.get("split") or "").strip())})
    return out


def list_records(source: str, root: str | Path, fold: int, split: str, report: SkipReport,
                 labels: list[str] | None = None, csv_path: str | Path | None = None, **kw) -> list[dict]:
    """Dispatch to list_dfew / list_mafw / list_folder (``folder``: a row's own ``split`` value wins; rows
    without one are split by a fixed 1-in-5 hash of the path, fold-dependent)."""
    if source == "dfew":
        return list_dfew(root, fold, split, report)
    if source == "mafw":
        return list_mafw(root, fold, split, report=report, **kw)
    if source != "folder":
        raise ValueError(f"unknown source {source!r}: dfew | mafw | folder")
    csv_path = csv_path or Path(root) / "labels.csv"
    recs = list_folder(root, csv_path, list(labels or vocabulary("dfew")), split=split, report=report)
    import zlib

    in_test = lambda r: zlib.crc32(r["path"].encode()) % 5 == fold - 1  # noqa: E731
    return [{**{k: v for k, v in r.items() if k != "split_given"}, "fold": fold} for r in recs
            if r["split_given"] or in_test(r) == (split == "test")]
