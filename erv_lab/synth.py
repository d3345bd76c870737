"""Synthetic talking-face clips with sound, written in the exact on-disk layouts of DFEW and MAFW.

Faces are drawn with OpenCV (per-identity shape, skin, size, position, background, lighting noise) and move
through onset -> apex -> offset of the facial actions in ``erv_lab.rationales.CUES``; a 16 kHz voice carries
the emotion's prosody (pitch level/contour, loudness, tempo, tremor, breathiness, harshness). Fear and
surprise look alike (only the voice separates them); anger and disgust sound alike (only the face does).
Per-clip ground-truth cues and the cold-start rationale go to ``synth_meta/clips.jsonl`` (never shown to the
model). This module writes files; reading them back is ``erv_lab.data``'s job. Introduced in notebook 01.
"""
from __future__ import annotations

import json
import math
import random
import time
from multiprocessing import get_context
from pathlib import Path

import av
import cv2
import numpy as np

from erv_lab.labels import vocabulary
from erv_lab.rationales import CUES, drift_plan, make_rationale, stem

SR = 16000
META_DIR = "synth_meta"
DFEW_SPLIT_DIR = "EmoLabel_DataSplit"
MAFW_SPLIT_DIR = "Train & Test Set"
_SKIN = ((205, 170, 140), (180, 140, 110), (140, 100, 75), (100, 70, 50), (225, 195, 170), (160, 130, 100))
_CAPTIONS = {  # made-up Chinese / English captions for MAFW's with_caption files
    "anger": ("他皱着眉头大声说话", "He frowns and speaks loudly"), "disgust": ("她皱起鼻子", "She wrinkles her nose"),
    "fear": ("他睁大眼睛声音发抖", "His eyes widen and his voice shakes"),
    "happiness": ("她笑得很开心", "She smiles happily"), "neutral": ("他平静地说话", "He speaks calmly"),
    "sadness": ("她低着头慢慢说话", "She looks down and speaks slowly"),
    "surprise": ("他突然张大嘴巴", "His mouth suddenly falls open"),
    "contempt": ("她撇了撇嘴", "One corner of her mouth curls up"),
    "anxiety": ("他眼神游移不定", "His eyes keep darting around"),
    "helplessness": ("她歪着头叹气", "She tilts her head and sighs"),
    "disappointment": ("他垂下眼睛", "He lowers his eyes"),
}


# ----------------------------------------------------------------------------- what a clip contains
def plan_clip(label: str, rng: random.Random, difficulty: float = 0.5, identity: dict | None = None) -> dict:
    """Ground-truth cue metadata of one clip: identity, cue strengths, distractors, occluder, noise.

    Cue strength ~ U(1 - 0.8 d, 1 - 0.2 d) for difficulty d; with probability 0.5 d a weak (0.2-0.45)
    distractor cue of another emotion is added per modality; with probability 0.5 d an occluder hides
    part of the face; pixel noise sigma = 3 + 25 d, audio SNR = 30 - 20 d dB.
    """
    d = float(np.clip(difficulty, 0.0, 1.0))
    key = stem(label)
    strength = lambda: round(rng.uniform(1 - 0.8 * d, 1 - 0.2 * d), 3)  # noqa: E731
    cues = {m: [{"cue": c, "strength": strength()} for c in CUES[key][m]] for m in ("visual", "audio")}
    for m in ("visual", "audio"):
        if rng.random() < 0.5 * d:
            other = rng.choice([k for k in CUES if k != key and CUES[k][m] != CUES[key][m]])
            cue = rng.choice(CUES[other][m])
            if cue not in {c["cue"] for c in cues[m]}:
                cues[m].append({"cue": cue, "strength": round(rng.uniform(0.2, 0.45), 3), "distractor": True})
    return {"label": label, "identity": identity or make_identity(rng), **cues,
            "occluder": rng.choice(["brows", "mouth", "eyes"]) if rng.random() < 0.5 * d else None,
            "noise": round(3 + 25 * d, 2), "snr_db": round(30 - 20 * d, 2), "apex": round(rng.uniform(0.4, 0.6), 3)}


def make_identity(rng: random.Random) -> dict:
    """A person: face size/shape/position, skin, hair, background, lighting; voice pitch and timbre."""
    female = rng.random() < 0.5
    return {"r": rng.uniform(0.27, 0.33), "aspect": rng.uniform(1.1, 1.35), "dx": rng.uniform(-0.06, 0.06),
            "dy": rng.uniform(-0.04, 0.06), "skin": [int(np.clip(c + rng.uniform(-15, 15), 0, 255))
                                                      for c in rng.choice(_SKIN)],
            "hair": [rng.randint(10, 120)] * 3, "bg": [rng.randint(40, 230) for _ in range(3)],
            "light": rng.uniform(-0.25, 0.25), "rest_curve": rng.uniform(-0.08, 0.08),
            "rest_brow": rng.uniform(-0.05, 0.05), "f0": rng.uniform(180, 240) if female else rng.uniform(100, 140),
            "tilt": rng.uniform(0.9, 1.4)}


# ----------------------------------------------------------------------------- video
def _actions(cues: list[dict], a_t: float, t: float) -> dict:
    """Face parameters at one instant; ``a_t`` is the onset->apex->offset envelope value."""
    p = dict(bi=0.0, bo=0.0, eye=1.0, cheek=0.0, px=0.0, py=0.0, curve=0.0, asym=0.0, open=0.0,
             width=1.0, press=0.0, wrinkle=0.0, lip_up=0.0, tilt=0.0)
    for c in cues:
        a = c["strength"] * a_t
        name = c["cue"]
        if name == "brow_raise": p["bi"] -= .24 * a; p["bo"] -= .24 * a  # noqa: E702
        elif name == "brow_lower": p["bi"] += .3 * a; p["bo"] += .02 * a  # noqa: E702
        elif name == "brow_inner_raise": p["bi"] -= .22 * a; p["bo"] += .04 * a  # noqa: E702
        elif name == "eyes_wide": p["eye"] += 1.0 * a
        elif name == "cheek_raise": p["eye"] -= .55 * a; p["cheek"] += a  # noqa: E702
        elif name == "eyelid_droop": p["eye"] -= .5 * a; p["py"] += .35 * a  # noqa: E702
        elif name == "jaw_drop": p["open"] += .42 * a; p["width"] -= .3 * a  # noqa: E702
        elif name == "smile": p["curve"] += .28 * a; p["width"] += .2 * a  # noqa: E702
        elif name == "lip_corner_down": p["curve"] -= .24 * a
        elif name == "lip_press": p["width"] -= .3 * a; p["press"] += a  # noqa: E702
        elif name == "nose_wrinkle": p["wrinkle"] += a
        elif name == "upper_lip_raise": p["lip_up"] += .26 * a; p["open"] += .14 * a  # noqa: E702
        elif name == "lip_corner_asym": p["asym"] += .3 * a
        elif name == "gaze_shift": p["px"] += .6 * a * math.sin(2 * math.pi * 2 * t)
        elif name == "mouth_slack": p["open"] += .16 * a
        elif name == "head_tilt": p["tilt"] += 16 * a
        elif name == "gaze_down": p["py"] += .6 * a; p["eye"] -= .25 * a  # noqa: E702
    return p


def _curve(x0, y0, x1, y1, ym, n=9):
    """Points of the quadratic through (x0,y0), ((x0+x1)/2, ym), (x1,y1)."""
    s = np.linspace(0, 1, n)
    xm, qy = (x0 + x1) / 2, 2 * ym - (y0 + y1) / 2  # control point so the curve passes through ym
    xs = (1 - s) ** 2 * x0 + 2 * s * (1 - s) * xm + s ** 2 * x1
    ys = (1 - s) ** 2 * y0 + 2 * s * (1 - s) * qy + s ** 2 * y1
    return np.stack([xs, ys], 1)


def draw_face(meta: dict, size: int, a_t: float, t: float) -> np.ndarray:
    """One RGB frame (size x size x 3, uint8) of ``meta``'s face at envelope value ``a_t``, time ``t``."""
    idn, S = meta["identity"], size
    img = np.empty((S, S, 3), np.uint8)
    img[:] = idn["bg"]
    R = idn["r"] * S
    cx, cy = S / 2 + idn["dx"] * S, S / 2 + idn["dy"] * S
    p = _actions(meta["visual"], a_t, t)
    th = max(1, round(S / 30))
    skin = tuple(idn["skin"])
    cv2.ellipse(img, (int(cx), int(cy - .25 * R * idn["aspect"])), (int(R * 1.05), int(R * idn["aspect"] * .85)),
                0, 180, 360, tuple(idn["hair"]), -1)
    cv2.ellipse(img, (int(cx), int(cy)), (int(R), int(R * idn["aspect"])), 0, 0, 360, skin, -1)
    dark = (40, 25, 20)
    if p["cheek"] > 0.05:  # raised cheeks: rounded blush under the eyes
        blush = tuple(int(c * (1 - .25 * p["cheek"]) + 200 * .25 * p["cheek"]) for c in skin)
        for sx in (-1, 1):
            cv2.circle(img, (int(cx + sx * .45 * R), int(cy + .18 * R)), int(.17 * R), blush, -1)
    eh = max(.025, .11 * p["eye"]) * R
    for sx in (-1, 1):  # eyes, pupils, brows
        ex, ey = cx + sx * .4 * R, cy - .1 * R
        cv2.ellipse(img, (int(ex), int(ey)), (int(.2 * R), max(1, int(eh))), 0, 0, 360, (245, 245, 245), -1)
        pr = max(1, int(min(.09 * R, eh)))
        cv2.circle(img, (int(ex + p["px"] * .12 * R), int(ey + p["py"] * .5 * eh)), pr, dark, -1)
        by = cy - (.4 + idn["rest_brow"]) * R
        cv2.line(img, (int(cx + sx * .14 * R), int(by + p["bi"] * R)), (int(cx + sx * .62 * R), int(by + p["bo"] * R)),
                 tuple(idn["hair"]), 2 * th)
    cv2.line(img, (int(cx), int(cy)), (int(cx - .08 * R), int(cy + .25 * R)), tuple(int(c * .75) for c in skin), th)
    if p["wrinkle"] > 0.05:  # nose wrinkle: dark creases across the bridge
        shade = tuple(int(c * (1 - .8 * min(1, p["wrinkle"]))) for c in skin)
        for k in range(3):
            y = int(cy - .02 * R + k * .08 * R)
            cv2.line(img, (int(cx - .2 * R), y), (int(cx + .2 * R), y), shade, th + 1)
    mw, my = .34 * R * max(.4, p["width"]), cy + .52 * R
    curve = (p["curve"] + idn["rest_curve"]) * R * (0 if p["press"] > .5 else 1)
    left = (cx - mw, my - curve)
    right = (cx + mw, my - curve - p["asym"] * R)
    if p["open"] > .04:
        top = _curve(*left, *right, my - curve * .3 - p["lip_up"] * R - .05 * p["open"] * R)
        bot = _curve(*right, *left, my + p["open"] * R - curve * .3)
        cv2.fillPoly(img, [np.concatenate([top, bot]).astype(np.int32)], (60, 20, 25))
        if p["lip_up"] > .03:  # bared upper teeth
            cv2.polylines(img, [top.astype(np.int32)], False, (240, 240, 240), th + 1)
    else:
        pts = _curve(*left, *right, my + .5 * curve)
        cv2.polylines(img, [pts.astype(np.int32)], False, (90, 30, 35), th + (th + 1 if p["press"] > .5 else 0))
    if abs(p["tilt"]) > .5:
        m = cv2.getRotationMatrix2D((cx, cy), p["tilt"], 1.0)
        img = cv2.warpAffine(img, m, (S, S), borderMode=cv2.BORDER_REPLICATE)
    return img


def render_video(meta: dict, frames: int, size: int, seed: int) -> np.ndarray:
    """(T, S, S, 3) uint8 RGB: onset -> apex -> offset, lighting gradient, flicker, jitter, noise, occluder."""
    rng = np.random.default_rng(seed)
    raw = np.empty((frames, size, size, 3), np.uint8)
    for i in range(frames):
        t = (i + .5) / frames
        a_t = math.sin(math.pi * min(1.0, t / (2 * meta["apex"])) if t < meta["apex"]
                       else math.pi / 2 + math.pi / 2 * (t - meta["apex"]) / (1 - meta["apex"])) ** .7
        img = draw_face(meta, size, a_t, t)
        if meta["occluder"]:
            y = {"brows": .3, "eyes": .4, "mouth": .68}[meta["occluder"]] * size
            x0 = int(size * (.2 if i % 2 == 0 else .22))
            cv2.rectangle(img, (x0, int(y)), (x0 + int(size * .33), int(y + size * .13)), (90, 90, 90), -1)
        dy, dx = (int(v) for v in rng.integers(-1, 2, 2))  # camera jitter of one pixel
        raw[i] = np.roll(img, (dy, dx), axis=(0, 1)) if (dy or dx) else img
    # lighting gradient across x, per-frame flicker, grey pixel noise: one vectorised pass, (T, S, S, 3)
    gain = (1 + meta["identity"]["light"] * np.linspace(-1, 1, size, dtype=np.float32))[None, None, :, None]
    gain = gain * rng.uniform(.97, 1.03, (frames, 1, 1, 1)).astype(np.float32)
    noise = rng.standard_normal((frames, size, size, 1), dtype=np.float32)
    noise *= np.float32(meta["noise"])
    out = np.multiply(raw, gain, dtype=np.float32)  # in place from here on: same values, fewer temporaries
    out += noise
    return np.clip(out, 0, 255, out=out).astype(np.uint8)


# ----------------------------------------------------------------------------- audio
def render_voice(meta: dict, duration: float, seed: int, sr: int = SR) -> np.ndarray:
    """Mono float32 voice in [-1, 1]: syllables of a harmonic source with the clip's prosody + noise.

    f0(t) = f0_id * level * contour(t) * (1 + 0.08 a_tremor sin(2 pi 7 t)); each syllable is a Hann
    envelope; harshness flattens the spectral tilt and clips; breathiness mixes in shaped noise.
    """
    rng = np.random.default_rng(seed)
    a = {}
    for c in meta["audio"]:
        a[c["cue"]] = max(a.get(c["cue"], 0.0), c["strength"])
    n = int(duration * sr)
    t = np.arange(n, dtype=np.float32) / sr
    level = 1.6 ** a.get("pitch_high", 0) * 0.72 ** a.get("pitch_low", 0)
    tempo = 4.0 * 1.6 ** a.get("fast", 0) * 0.55 ** a.get("slow", 0)
    u = t / duration
    env = np.zeros(n, np.float32)  # syllable envelopes; ``local`` = position inside the current syllable
    local = np.zeros(n, np.float32)
    if a.get("burst", 0) > 0:
        spans = [(rng.uniform(.05, .2) * duration, .3 * duration)]
    else:
        period = 1.0 / tempo
        spans = [(s0, .75 * period) for s0 in np.arange(rng.uniform(0, .3 * period), duration, period)]
    for s0, length in spans:
        idx = (t >= s0) & (t < s0 + length)
        env[idx] = np.hanning(idx.sum()) * (1.0 if len(spans) == 1 else rng.uniform(.7, 1.0))
        local[idx] = np.linspace(0, 1, idx.sum())
    contour = (1 + a.get("pitch_rise", 0) * (.5 * u + .8 * local) - a.get("pitch_fall", 0) * (.3 * u + .3 * local)
               + .22 * a.get("lively", 0) * np.sin(2 * np.pi * tempo * t / 2)
               + .04 * (1 - a.get("monotone", 0)) * np.sin(2 * np.pi * .7 * t + rng.uniform(0, 6)))
    f0 = meta["identity"]["f0"] * level * contour * (1 + .08 * a.get("tremor", 0) * np.sin(2 * np.pi * 7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    tilt = meta["identity"]["tilt"] * (1 - .55 * a.get("harsh", 0))
    src = sum(np.sin(k * phase) / k ** tilt for k in range(1, 11) if k * f0.max() < sr / 2)
    if a.get("harsh", 0) > 0:
        src = np.tanh(src * (1 + 3 * a["harsh"]))
    env *= (1 + .3 * a.get("tremor", 0) * np.sin(2 * np.pi * 7 * t))
    breath = a.get("breathy", 0)
    noise_src = np.convolve(rng.standard_normal(n), np.ones(3) / 3, "same")
    voice = env * ((1 - .6 * breath) * src / (np.abs(src).max() + 1e-6) + .8 * breath * noise_src / 3)
    gain = .5 * 1.8 ** a.get("loud", 0) * .4 ** a.get("soft", 0)
    voice = gain * voice / (np.abs(voice).max() + 1e-6)
    rms = np.sqrt(np.mean(voice ** 2)) + 1e-6
    voice = voice + rng.standard_normal(n) * rms * 10 ** (-meta["snr_db"] / 20)
    return np.clip(voice, -1, 1).astype(np.float32)


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray | None, fps: int, sr: int = SR) -> None:
    """Mux RGB frames (MPEG-4 Part 2) and 16-bit PCM mono audio into ``path`` with PyAV.

    PCM instead of AAC: FFmpeg's AAC encoder costs ~90 ms a clip here, PCM ~2 ms; readers decode both.
    One encoder thread: FFmpeg's default ("auto", cores + 1) splits each frame into one slice per thread, so
    the bytes of a clip would depend on the machine's core count; clips are already encoded in parallel, and
    at 112 px one thread is also twice as fast (≈6 instead of ≈11 ms a clip).
    """
    with av.open(str(path), "w") as box:
        vs = box.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt, vs.bit_rate = frames.shape[2], frames.shape[1], "yuv420p", 600_000
        vs.codec_context.thread_count = 1
        ast = None
        if audio is not None:
            ast = box.add_stream("pcm_s16le", rate=sr)
            ast.layout = "mono"
        for f in frames:
            box.mux(vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        box.mux(vs.encode())
        if ast is not None:
            af = av.AudioFrame.from_ndarray((audio * 32767).astype(np.int16)[None], format="s16", layout="mono")
            af.sample_rate = sr
            box.mux(ast.encode(af))
            box.mux(ast.encode())


# ----------------------------------------------------------------------------- dataset layouts
def _clip_ids(layout: str, n: int, rng: random.Random) -> list[str]:
    """DFEW: contiguous 00001..; MAFW: 5-digit ids with gaps (the real ones are not contiguous)."""
    if layout == "dfew":
        return [f"{i + 1:05d}" for i in range(n)]
    ids, cur = [], 0
    for _ in range(n):
        cur += rng.randint(1, 3)
        ids.append(f"{cur:05d}")
    return ids


def _render_one(task: tuple) -> None:
    path, meta, frames, size, fps, seed = task
    video = render_video(meta, frames, size, seed)
    write_mp4(Path(path), video, render_voice(meta, frames / fps, seed + 1), fps)


def _write_splits(root: Path, layout: str, rows: list[dict]) -> None:
    vocab = vocabulary(layout)
    for k in range(1, 6):
        parts = {"train": [r for r in rows if r["test_fold"] != k], "test": [r for r in rows if r["test_fold"] == k]}
        for split, items in parts.items():
            if layout == "dfew":
                d = root / DFEW_SPLIT_DIR / f"{split}(single-labeled)"
                d.mkdir(parents=True, exist_ok=True)
                lines = ["video_name,label"] + [f"{int(r['clip_id'])},{vocab.index(r['label']) + 1}" for r in items]
                (d / f"set_{k}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
            else:
                for cap in ("no_caption", "with_caption"):
                    d = root / MAFW_SPLIT_DIR / "single" / cap / f"set_{k}"
                    d.mkdir(parents=True, exist_ok=True)
                    if cap == "no_caption":
                        text = "".join(f"{r['clip_id']}.mp4 {r['label']}\n" for r in items)
                        (d / f"{split}.txt").write_text(text, encoding="utf-8")
                    else:
                        text = "".join(f"{r['clip_id']}.mp4\t{r['label']}\t{_CAPTIONS[r['label']][0]}\t"
                                       f"{_CAPTIONS[r['label']][1]}\n" for r in items)
                        (d / f"{split}.txt").write_bytes(text.encode("gbk"))


def generate(out: str | Path, layout: str = "dfew", clips: int = 280, seed: int = 0, difficulty: float = 0.5,
             frame_size: int = 112, frames_per_clip: int = 16, fps: int = 10, drift_rate: float = 0.33,
             class_drift: dict | None = None, workers: int | None = None, verbose: bool = True) -> dict:
    """Write ``clips`` balanced clips under ``out`` in the DFEW or MAFW layout (5 folds) and return a summary.

    Idempotent and resumable: the parameters are stored in ``synth_meta/generator.json``; a second call with
    the same parameters returns at once, and an interrupted call only renders the clips still missing.
    Class of clip i = vocab[i % K] (then shuffled); test fold = 5 - (rank of the clip within its class) % 5,
    so fold 5 (the paper's) has test clips of every class even with fewer than 5 clips per class.
    """
    root = Path(out)
    class_drift = {"fear": 0.6, "disgust": 0.6, "sad": 0.6} if class_drift is None else dict(class_drift)
    params = dict(layout=layout, clips=clips, seed=seed, difficulty=difficulty, frame_size=frame_size,
                  frames_per_clip=frames_per_clip, fps=fps, drift_rate=drift_rate, class_drift=class_drift)
    meta_dir = root / META_DIR
    state = meta_dir / "generator.json"
    if state.exists():
        old = json.loads(state.read_text())
        if old.get("params") == params and old.get("complete"):
            return old["summary"]
    vocab = vocabulary(layout)
    rng = random.Random(seed)
    labels = [vocab[i % len(vocab)] for i in range(clips)]
    rng.shuffle(labels)
    ids = _clip_ids(layout, clips, rng)
    people = [make_identity(random.Random(seed * 7919 + j)) for j in range(max(6, clips // 8))]
    clip_dir = root / ("Clip/original" if layout == "dfew" else "data/clips")
    clip_dir.mkdir(parents=True, exist_ok=True)
    meta_dir.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"params": params, "complete": False}))
    rows, tasks, rank = [], [], {v: 0 for v in vocab}
    for i, (cid, label) in enumerate(zip(ids, labels)):
        crng = random.Random(seed * 1_000_003 + i)
        meta = plan_clip(label, crng, difficulty, identity=crng.choice(people))
        drift = drift_plan(label, layout, crng, drift_rate, class_drift)
        rat = make_rationale(label, meta, layout, crng, drift)
        rows.append({"clip_id": cid, "label": label, "test_fold": 5 - rank[label] % 5, "cues": meta,
                     "rationale": rat["text"], "drifted": drift is not None, "drift": drift})
        rank[label] += 1
        path = clip_dir / f"{cid}.mp4"
        if not path.exists():
            tasks.append((str(path.with_suffix(".part.mp4")), meta, frames_per_clip, frame_size, fps, seed * 31 + i))
    start = time.perf_counter()
    workers = workers or (2 if len(tasks) >= 32 else 1)
    if workers > 1:
        with get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(_render_one, tasks, chunksize=8):
                pass
    else:
        for task in tasks:
            _render_one(task)
    for task in tasks:  # rename only complete files, so an interrupted run never leaves a half-written clip
        Path(task[0]).rename(task[0].replace(".part.mp4", ".mp4"))
    seconds = time.perf_counter() - start
    _write_splits(root, layout, rows)
    with open(meta_dir / "clips.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    summary = {"root": str(root), "layout": layout, "clips": clips, "rendered": len(tasks),
               "seconds": round(seconds, 2), "clips_per_s": round(len(tasks) / seconds, 1) if tasks else None,
               "drifted": sum(r["drifted"] for r in rows),
               "class_drifted": sum(bool(r["drift"] and r["drift"]["mode"] == "class") for r in rows)}
    state.write_text(json.dumps({"params": params, "complete": True, "summary": summary}, indent=1))
    if verbose:
        print(f"synth: {clips} {layout} clips in {root} ({len(tasks)} rendered in {seconds:.1f} s); "
              f"{summary['drifted']} drifting rationales ({summary['class_drifted']} class-conditional)")
    return summary


def clip_path(root: str | Path, layout: str, clip_id: str) -> Path:
    """The mp4 of a synthetic clip under ``root`` (``Clip/original/`` in the DFEW layout, ``data/clips/`` in
    MAFW's): its frames and 16 kHz voice, read back with ``erv_lab.media.decode_clip`` (notebook 01 plays it)."""
    return Path(root) / ("Clip/original" if layout == "dfew" else "data/clips") / f"{clip_id}.mp4"


def read_meta(root: str | Path) -> dict[str, dict]:
    """clip_id -> the side-file row (label, cues, rationale, drifted, drift, test_fold); {} for real data."""
    path = Path(root) / META_DIR / "clips.jsonl"
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as fh:
        return {r["clip_id"]: r for r in map(json.loads, fh)}


def generate_from_config(cfg, root: str | Path, verbose: bool = True) -> dict:
    """``generate`` with the sizes and drift rates of ``cfg.data`` (clips = clips_per_class x classes)."""
    d = cfg.data
    return generate(root, layout=d.layout, clips=d.clips_per_class * len(vocabulary(d.layout)), seed=d.seed,
                    difficulty=d.difficulty, frame_size=d.frame_size, frames_per_clip=d.frames_per_clip,
                    fps=d.fps, drift_rate=d.drift_rate, class_drift=d.class_drift, verbose=verbose)
