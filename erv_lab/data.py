"""Clip records -> dataset rows, with a resumable per-clip cache, and the exports (notebook 01).

Reads a learner's own licensed copy (or the synthetic clips of ``erv_lab.synth``, which use the same
layouts): clip records (``erv_lab.layouts``) -> decoded frames + 16 kHz mono audio (``erv_lab.media``,
re-exported here) -> sampled frames, log-mel spectrogram image, prosody summary -> HF ``datasets.Dataset``
or R1-Omni conversation JSONL. Bad inputs are skipped and counted (``SkipReport``), never fatal unless
nothing usable remains. Never writes into a dataset root and never ships any DFEW/MAFW file. Whether a
saved dataset is reused is ``erv_lab.stages.ensure_dataset``.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from pathlib import Path

import numpy as np

from erv_lab.labels import vocabulary
from erv_lab.layouts import DataError, SkipReport, list_records
from erv_lab.media import (SR, DecodeError, decode_clip, face_box, log_mel, prosody,  # noqa: F401
                           sample_indices, spectrogram_image)  # decoding and audio features live in erv_lab.media

INSTRUCTION = (  # the paper's instruction (docs/METHOD.md); erv_lab.policy re-exports it
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the characters is "
    "the most obvious to you? Output the thinking process in <think> </think> and final emotion in "
    "<answer> </answer> tags."
)
MISSING_AUDIO = ("skip", "silence")  # what prepare_clip / build_rows do with a clip that has no audio track


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


def frames_to_cache(num_frames: int) -> int:
    """Frames cached per clip for ``num_frames`` sampled ones: enough for a random frame per segment in training."""
    return max(16, 2 * num_frames)


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
            clip = prepare_clip(rec, cache_dir, image_size, frames_to_cache(num_frames), face_crop, missing_audio)
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


DATASET_DIR = "data/hf"  # the finished splits, under a run folder (erv_lab.stages.ensure_dataset)


def label_space(source: str, layout: str) -> str:
    """The label list (``dfew`` / ``mafw``) a source's clips are read in: its own for DFEW and MAFW, the
    layout's for synthetic clips and folder data."""
    return source if source in ("dfew", "mafw") else layout


def data_sources(cfg) -> list[tuple[str, Path | None]]:
    """``[(source, root)]`` of ``cfg.data``: one pair, or one per dataset when ``source`` is a list (the paper
    trains on MAFW and DFEW together). Synthetic: ``("synthetic", None)``."""
    d = cfg.data
    if isinstance(d.source, list):
        return [(s, Path(d.root[s])) for s in d.source]
    return [(d.source, None if d.source == "synthetic" else Path(d.root))]


def build_dataset(cfg, data_dir: str | Path, out: str | Path, verbose: bool = True) -> dict:
    """Build ``{"train", "test"}`` HF Datasets for ``cfg`` (fold ``cfg.data.fold``) and save them in ``out``,
    with the skip report (per source and split) in ``out/report.json``. Reuse is ``erv_lab.stages.ensure_dataset``.

    Synthetic source: clips are generated under ``data_dir/synthetic_<layout>/`` first. Several sources
    (:func:`data_sources`): their fold's train splits are trained on together and their test splits kept
    apart by the ``dataset`` column. Decoded clips are cached per clip in ``data_dir/cache/``.
    """
    import shutil

    from datasets import load_from_disk

    from erv_lab.synth import generate_from_config, read_meta

    d, data_dir, out = cfg.data, Path(data_dir), Path(out)
    pairs = []
    for source, root in data_sources(cfg):
        if source == "synthetic":
            root, source = data_dir / f"synthetic_{d.layout}", d.layout
            generate_from_config(cfg, root, verbose=verbose)
        pairs.append((source, root, read_meta(root)))
    several = len(pairs) > 1
    reports = {}
    for split in ("train", "test"):
        rows = []
        for source, root, meta in pairs:
            report = SkipReport()
            labels = list(vocabulary(label_space(source, d.layout)))
            recs = list_records(source, root, d.fold, split, report, labels=labels)
            rows += build_rows(recs, data_dir / "cache", split, d.num_frames, cfg.policy.image_size, d.face_crop,
                               d.seed, meta, report, progress=verbose)
            reports[f"{source}/{split}" if several else split] = report.as_dict()
            if verbose:
                print(f"[{split}] {source} fold {d.fold}: {report}")
        shutil.rmtree(out / split, ignore_errors=True)  # an interrupted build's leftovers
        to_dataset(rows).save_to_disk(str(out / split))
    (out / "report.json").write_text(json.dumps(reports, indent=1))
    return {s: load_from_disk(str(out / s)) for s in ("train", "test")}


# ============================================================================ looking at the data (notebook 01)
def last_report(run_dir: str | Path) -> dict:
    """The skip report of the run's dataset (``erv_lab.stages.ensure_dataset``; ``{}`` before it ran)."""
    path = Path(run_dir) / DATASET_DIR / "report.json"
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
        labels = list(vocabulary(label_space(source, d.layout)))
        recs = list_records(source, root, d.fold, split, SkipReport(), labels=labels)
        part = out.with_name(f"{split}_{source}.jsonl")
        write_jsonl(recs, part, read_meta(root))
        parts.append(part)
    if len(parts) == 1:
        parts[0].replace(out)
    else:  # several datasets: one file, records in source order
        out.write_text("".join(p.read_text() for p in parts))
    return out
