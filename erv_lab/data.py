"""Real-data loaders (DFEW, MAFW, folder + CSV), frame/audio preprocessing with a resumable cache, exports.

Reads a learner's own licensed copy (or the synthetic clips of ``erv_lab.synth``, which use the same
layouts): split files -> clip records -> decoded frames + 16 kHz mono audio -> sampled frames, log-mel
spectrogram image, prosody summary -> HF ``datasets.Dataset`` or R1-Omni conversation JSONL. Bad inputs are
skipped and counted (``SkipReport``), never fatal unless nothing usable remains. Never writes into a dataset
root and never ships any DFEW/MAFW file. Decoding and the audio features are ``erv_lab.media`` (re-exported
here). Introduced in notebook 01.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from erv_lab.labels import normalize_label, vocabulary
from erv_lab.media import (FRAME_EXT, SR, DecodeError, decode_clip, face_box, log_mel, prosody,  # noqa: F401
                           sample_indices, spectrogram_image)  # decoding and audio features live in erv_lab.media

INSTRUCTION = (  # the paper's instruction (docs/METHOD.md); erv_lab.policy re-exports it
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the characters is "
    "the most obvious to you? Output the thinking process in <think> </think> and final emotion in "
    "<answer> </answer> tags."
)
VIDEO_EXT = (".mp4", ".avi", ".mov", ".mkv", ".webm")
MAFW_SPLIT_NAMES = ("Train & Test Set", "Train_Test_Set", "Train&Test Set", "train_test_set")
DFEW_SPLIT_NAMES = ("{split}(single-labeled)", "{split}(single_labeled)", "{split}_single_labeled")
MISSING_AUDIO = ("skip", "silence")  # what prepare_clip / build_rows do with a clip that has no audio track


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


# ============================================================================ split files -> clip records
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


# ============================================================================ per-clip cache
STATS: Counter = Counter()  # "decoded" counts real decodes (the resumability tests read it)


def _encode_frames(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PNG for small frames (lossless), JPEG q95 above 64 px; returns (bytes, lengths)."""
    import cv2

    ext, opts = (".png", []) if frames.shape[1] <= 64 else (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95])
    blobs = [cv2.imencode(ext, f[:, :, ::-1], opts)[1].tobytes() for f in frames]
    return np.frombuffer(b"".join(blobs), np.uint8), np.array([len(b) for b in blobs])


def _decode_frames(buf: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    import cv2

    offs = np.concatenate([[0], np.cumsum(lengths)])
    return np.stack([cv2.imdecode(buf[a:b], cv2.IMREAD_COLOR)[:, :, ::-1] for a, b in zip(offs[:-1], offs[1:])])


def silent_track(path: str | Path) -> np.ndarray:
    """Zeros at 16 kHz as long as the container at ``path`` says the clip lasts; one second for a frame
    folder, or when the container says 0.1 s or less (a still image) or nothing."""
    path, seconds = Path(path), 0.0
    if path.is_file():
        import av

        try:
            with av.open(str(path)) as box:
                seconds = (box.duration or 0) / av.time_base
        except (av.error.FFmpegError, ValueError, OSError):
            seconds = 0.0
    return np.zeros(int(round((seconds if seconds > 0.1 else 1.0) * SR)), np.float32)


def prepare_clip(rec: dict, cache_dir: str | Path, image_size: int = 32, cache_frames: int = 16,
                 face_crop: bool = False, missing_audio: str = "skip") -> dict:
    """Decode one clip once and cache ``cache_frames`` uniformly spaced frames at ``image_size`` px (after an
    optional face crop), its log-mel and prosody, in ``cache_dir``. Later calls read the cache (no decoding).

    Returns ``{"frames": (cache_frames, S, S, 3) uint8, "mel": (64, T) dB, "prosody": str, "face": bool|None,
    "has_audio": bool}`` (``has_audio``: the clip has an audio track of its own). Raises DecodeError. A clip
    without an audio track: with ``missing_audio="skip"`` (default) a video file or still image raises reason
    ``no_audio`` and a frame folder is kept with the floor-value spectrogram of ``log_mel(None)``; with
    ``"silence"`` every such clip is kept and its spectrogram and prosody are computed from a silent 16 kHz
    track (:func:`silent_track`). The two modes never share a cache file.
    """
    import cv2

    if missing_audio not in MISSING_AUDIO:
        raise ValueError(f"missing_audio must be one of {', '.join(MISSING_AUDIO)}, got {missing_audio!r}")
    path = Path(rec["path"])
    st = path.stat() if path.exists() else None
    sig = f"{path.resolve()}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}|{image_size}|{cache_frames}|{face_crop}"
    sig += "" if missing_audio == "skip" else f"|{missing_audio}"  # the default's cache keys stay as they were
    cache = Path(cache_dir) / f"{rec['dataset']}_{rec['clip_id']}_{hashlib.sha1(sig.encode()).hexdigest()[:10]}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return {"frames": _decode_frames(z["buf"], z["lengths"]), "mel": z["mel"].astype(np.float32),
                    "prosody": str(z["prosody"]), "face": None if int(z["face"]) < 0 else bool(z["face"]),
                    "has_audio": bool(z["has_audio"])}
    frames, audio = decode_clip(path)
    STATS["decoded"] += 1
    has_audio = audio is not None
    if not has_audio and not path.is_dir() and missing_audio == "skip":
        raise DecodeError("no_audio", str(path))
    if not has_audio and missing_audio == "silence":
        audio = silent_track(path)
    face = None
    if face_crop:
        box = face_box(frames)
        face = box is not None
        if box:
            x, y, w, h = box
            frames = frames[:, y:y + h, x:x + w]
    picked = frames[sample_indices(len(frames), cache_frames)]
    small = np.stack([cv2.resize(f, (image_size, image_size), interpolation=cv2.INTER_AREA) for f in picked])
    mel = log_mel(audio)
    out = {"frames": small, "mel": mel, "prosody": prosody(audio), "face": face, "has_audio": has_audio}
    buf, lengths = _encode_frames(small)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")  # written then renamed: an interrupted run never leaves half a file
    np.savez(tmp, buf=buf, lengths=lengths, mel=mel.astype(np.float16), prosody=out["prosody"],
             face=-1 if face is None else int(face), has_audio=int(out["has_audio"]))
    os.replace(tmp, cache)
    return out


# ============================================================================ records -> rows -> Dataset / JSONL
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


def clip_row(rec: dict, clip: dict, split: str, num_frames: int, image_size: int, rng: random.Random,
             side: dict | None = None) -> dict:
    """One row of the ``ensure_dataset`` schema from a prepared clip (:func:`prepare_clip`): ``num_frames``
    of its cached frames (segment centres for ``split="test"``, one frame per segment drawn from ``rng`` for
    ``"train"``), its spectrogram image at ``image_size`` px and prosody; rationale, drift and cues from the
    synthetic side file entry ``side`` (empty when None)."""
    from PIL import Image

    idx = sample_indices(len(clip["frames"]), num_frames, train=(split == "train"), rng=rng)
    side = side or {}
    return {"clip_id": rec["clip_id"], "dataset": rec["dataset"], "fold": int(rec["fold"]),
            "label": rec["label"], "frames": [Image.fromarray(clip["frames"][j]) for j in idx],
            "spectrogram": spectrogram_image(clip["mel"], image_size), "prosody": clip["prosody"],
            "rationale": side.get("rationale", ""), "drifted": bool(side.get("drifted", False)),
            "cues": json.dumps(side.get("cues", {}), ensure_ascii=False)}


def build_rows(records: list[dict], cache_dir: str | Path, split: str, num_frames: int = 8, image_size: int = 32,
               face_crop: bool = False, seed: int = 0, meta: dict | None = None,
               report: SkipReport | None = None, progress: bool = True, missing_audio: str = "skip") -> list[dict]:
    """Rows with the ``ensure_dataset`` schema (:func:`clip_row`). Train rows take a random frame per segment
    (seeded per clip), test rows the centre frame. ``meta`` is the synthetic side file (rationale, drift, cues)
    when present. ``missing_audio`` is :func:`prepare_clip`'s: with ``"silence"`` the clips given a silent
    track are counted in ``report.silent_audio`` (with ``"skip"`` a kept frame folder is a
    ``frames_only`` note)."""
    from tqdm.auto import tqdm

    report = report if report is not None else SkipReport()
    rows = []
    for i, rec in enumerate(tqdm(records, desc=f"clips ({split})", disable=not progress, leave=False)):
        try:
            clip = prepare_clip(rec, cache_dir, image_size, max(16, 2 * num_frames), face_crop, missing_audio)
        except DecodeError as exc:
            report.skip(exc.reason, rec["clip_id"])
            continue
        if clip["face"] is False:
            report.notes["no_face_found (kept uncropped)"] += 1
        if not clip["has_audio"] and missing_audio == "silence":
            report.silent_audio += 1
        elif not clip["has_audio"]:
            report.notes["frames_only (silent spectrogram)"] += 1
        rng = random.Random(seed * 1_000_003 + i)
        rows.append(clip_row(rec, clip, split, num_frames, image_size, rng, (meta or {}).get(rec["clip_id"])))
        report.kept += 1
    if not rows:
        raise DataError(f"no usable clip in {split} ({len(records)} listed)\n{report}")
    return rows


def features():
    """The HF ``Features`` of ``ensure_dataset``'s splits (the contract with erv_lab.policy / train)."""
    from datasets import Features, Image, Sequence, Value

    return Features({"clip_id": Value("string"), "dataset": Value("string"), "fold": Value("int32"),
                     "label": Value("string"), "frames": Sequence(Image()), "spectrogram": Image(),
                     "prosody": Value("string"), "rationale": Value("string"), "drifted": Value("bool"),
                     "cues": Value("string")})


def to_dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(rows, features=features())


def r1omni_record(video: str, label: str, rationale: str = "") -> dict:
    """R1-Omni conversation record; the gpt turn is the cold-start rationale when there is one, else the label."""
    return {"video": video, "conversations": [{"from": "human", "value": f"<video>\n<audio>\n{INSTRUCTION}"},
                                              {"from": "gpt", "value": rationale or label}]}


def write_jsonl(records: list[dict], out: str | Path, meta: dict | None = None) -> int:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for r in records:
            side = (meta or {}).get(r["clip_id"], {})
            fh.write(json.dumps(r1omni_record(r["path"], r["label"], side.get("rationale", "")), ensure_ascii=False) + "\n")
    return len(records)


def _config_key(cfg) -> str:
    d, p = cfg.data, cfg.policy
    keys = {k: getattr(d, k) for k in ("source", "layout", "root", "fold", "clips_per_class", "seed", "difficulty",
                                        "frame_size", "frames_per_clip", "fps", "num_frames", "face_crop",
                                        "drift_rate", "class_drift")}
    keys["image_size"] = p.image_size
    return hashlib.sha1(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:12]


def data_sources(cfg) -> list[tuple[str, Path | None]]:
    """``[(source, root)]`` of ``cfg.data``: one pair, or one per dataset when ``source`` is a list (the paper
    trains on MAFW and DFEW together). Synthetic: ``("synthetic", None)``."""
    d = cfg.data
    if isinstance(d.source, list):
        return [(s, Path(d.root[s])) for s in d.source]
    return [(d.source, None if d.source == "synthetic" else Path(d.root))]


def ensure_dataset(cfg, run_dir: str | Path, verbose: bool = True) -> dict:
    """``{"train", "test"}`` HF Datasets for ``cfg`` (fold ``cfg.data.fold``), built once and reused.

    Synthetic source: clips are generated under ``run_dir/data/synthetic_<layout>/`` first. Several sources
    (:func:`data_sources`): their fold's train splits are trained on together and their test splits kept
    apart by the ``dataset`` column. Decoded clips are cached in ``run_dir/data/cache/``; the finished splits
    are saved in ``run_dir/data/hf/<key>/`` (key = hash of the data settings), so a second call decodes nothing.
    The skip report (per source and split) goes to ``report.json``.
    """
    from datasets import load_from_disk

    d = cfg.data
    data_dir = Path(run_dir) / "data"
    hf_dir = data_dir / "hf" / _config_key(cfg)
    if (hf_dir / "done").exists():  # the finished splits need neither the generator nor a video decoder
        return {s: load_from_disk(str(hf_dir / s)) for s in ("train", "test")}
    from erv_lab.synth import generate_from_config, read_meta
    pairs = []
    for source, root in data_sources(cfg):
        if source == "synthetic":
            root, source = data_dir / f"synthetic_{d.layout}", d.layout
            generate_from_config(cfg, root, verbose=verbose)
        pairs.append((source, root, read_meta(root)))
    several = len(pairs) > 1
    out, reports = {}, {}
    for split in ("train", "test"):
        rows = []
        for source, root, meta in pairs:
            report = SkipReport()
            labels = list(vocabulary(source if source in ("dfew", "mafw") else d.layout))
            recs = list_records(source, root, d.fold, split, report, labels=labels)
            rows += build_rows(recs, data_dir / "cache", split, d.num_frames, cfg.policy.image_size, d.face_crop,
                               d.seed, meta, report, progress=verbose)
            reports[f"{source}/{split}" if several else split] = report.as_dict()
            if verbose:
                print(f"[{split}] {source} fold {d.fold}: {report}")
        out[split] = to_dataset(rows)
        out[split].save_to_disk(str(hf_dir / split))
    (hf_dir / "report.json").write_text(json.dumps(reports, indent=1))
    (hf_dir / "done").write_text("ok")
    return {s: load_from_disk(str(hf_dir / s)) for s in ("train", "test")}


def cli_prepare(args) -> int:
    """``erv-lab prepare``: list a fold, decode + cache every clip, print class counts and the skip report,
    write R1-Omni JSONL. ``--missing-audio silence`` keeps clips without an audio track (a silent track;
    counted as ``silent_audio`` in the report) instead of skipping them."""
    report = SkipReport()
    labels = args.labels.split(",") if args.labels else None
    from erv_lab.synth import read_meta

    try:
        recs = list_records(args.dataset, args.root, args.fold, args.split, report, labels=labels, csv_path=args.csv)
        out = Path(args.out)
        rows = build_rows(recs, out.parent / f"{out.stem}_cache", args.split, args.frames, 112, args.face_crop,
                          report=report, progress=False, missing_audio=getattr(args, "missing_audio", "skip"))
    except DataError as exc:
        print(f"error: {exc}")
        return 1
    kept = {r["clip_id"] for r in rows}
    n = write_jsonl([r for r in recs if r["clip_id"] in kept], out, read_meta(args.root))
    counts = Counter(r["label"] for r in rows)
    print(f"{args.dataset} fold {args.fold} {args.split}: {n} records -> {out}")
    for label, c in sorted(counts.items()):
        print(f"  {label:15s} {c}")
    print(report)
    return 0


# ============================================================================ looking at the data (notebook 01)
def last_report(cfg, run_dir: str | Path) -> dict:
    """The skip report ``ensure_dataset`` saved for ``cfg`` (``{}`` before it ran)."""
    path = Path(run_dir) / "data" / "hf" / _config_key(cfg) / "report.json"
    return json.loads(path.read_text()) if path.exists() else {}


def export_jsonl(cfg, run_dir: str | Path, split: str = "train") -> Path:
    """R1-Omni JSONL of the fold's ``split`` in ``run_dir/data/<split>.jsonl`` (rationales when present)."""
    from erv_lab.synth import read_meta

    d = cfg.data
    out = Path(run_dir) / "data" / f"{split}.jsonl"
    parts = []
    for source, root in data_sources(cfg):
        if source == "synthetic":
            root, source = Path(run_dir) / "data" / f"synthetic_{d.layout}", d.layout
        labels = list(vocabulary(source if source in ("dfew", "mafw") else d.layout))
        recs = list_records(source, root, d.fold, split, SkipReport(), labels=labels)
        part = out.with_name(f"{split}_{source}.jsonl")
        write_jsonl(recs, part, read_meta(root))
        parts.append(part)
    if len(parts) == 1:
        parts[0].replace(out)
    else:  # several datasets: one file, records in source order
        out.write_text("".join(p.read_text() for p in parts))
    return out


def show_clip(ds, i: int):
    """One row of a split: its frames, its spectrogram, label, prosody and rationale (a matplotlib figure)."""
    import matplotlib.pyplot as plt

    ex = ds[int(i)]
    n = len(ex["frames"]) + 1
    fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 2.2))
    for ax, im, title in zip(axes, ex["frames"] + [ex["spectrogram"]],
                             [f"frame {k + 1}" for k in range(n - 1)] + ["log-mel"]):
        ax.imshow(im)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{ex['clip_id']} · {ex['label']} · {ex['prosody']}" + (" · drifted" if ex["drifted"] else ""),
                 fontsize=9)
    plt.show()
    print(ex["rationale"] or "(no rationale)")
    return fig


def filmstrip(ds, per_class: int = 1):
    """A grid: one row per class (first ``per_class`` clips), the sampled frames then the spectrogram."""
    import matplotlib.pyplot as plt

    labels = ds["label"]
    picks = [i for lab in sorted(set(labels)) for i in [j for j, x in enumerate(labels) if x == lab][:per_class]]
    n = len(ds[0]["frames"]) + 1
    fig, axes = plt.subplots(len(picks), n, figsize=(1.3 * n, 1.3 * len(picks)), squeeze=False)
    for row, i in zip(axes, picks):
        ex = ds[i]
        for ax, im in zip(row, ex["frames"] + [ex["spectrogram"]]):
            ax.imshow(im)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(ex["label"], rotation=0, ha="right", fontsize=8)
    axes[0][-1].set_title("log-mel", fontsize=8)
    fig.tight_layout()
    return fig


def class_balance_plot(splits: dict):
    """Bar chart of clips per class and split (seaborn)."""
    import pandas as pd
    import seaborn as sns

    df = pd.DataFrame([{"split": s, "label": lab} for s, ds in splits.items() for lab in ds["label"]])
    ax = sns.countplot(data=df, x="label", hue="split")
    ax.set_title("clips per class")
    ax.tick_params(axis="x", rotation=45)
    return ax.figure
