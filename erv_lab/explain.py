"""Your own clip through the models of a run folder (``erv-lab explain``; docs/EXPLAIN.md).

    erv-lab explain my_clip.mp4 --run runs/cpu-tiny   # -> runs/cpu-tiny/explain/my_clip/explain.{json,html}

The input is a video with or without sound, a folder of frames or a still photo. It becomes the example row
the dataset builds (``erv_lab.data.prepare_clip`` + ``clip_row``: the same frame sampling, resize to the
policy's image size, log-mel spectrogram image and prosody, with the data and policy settings the run was
trained with); a clip without sound gets a silent 16 kHz track. Every model of the run (``<run>/<arm>/final``
for the arms ``sft``, ``baseline``, ``erv`` that exist) decodes it greedily. Its rationale is split into
sentences and labelled by the run's verifier (``erv_lab.rewards.ExplanationReward``, read against the
model's own answer: the clip has no ground truth) and read by the headline judge
(``erv_lab.judges.headline_judge``). Writes ``explain.json``, ``explain.html`` (drawn by the inspector's
renderer, ``erv_lab.widgets``) and the frames and spectrogram as PNG files. Trains no policy; a run folder
without a verifier gets one trained and saved in ``<run>/verifier`` (``erv_lab.stages.ensure_verifier``).
"""
from __future__ import annotations

import html
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from erv_lab.labels import vocabulary

ARMS = ("sft", "baseline", "erv")
DATA_FIELDS = ("source", "layout", "num_frames", "face_crop")  # what shapes the example row (and its labels)
MAX_DECODED_GIB = 4.0  # erv_lab.data decodes every frame of a clip at full size before sampling
SYNTHETIC_WARNING = ("Out of distribution: {who} were trained only on drawn synthetic faces (cartoon faces drawn "
                     "with OpenCV, with a synthetic voice). Real footage is far outside what they have ever seen, "
                     "so their answers and rationales on it are not emotion recognition; read them only as a "
                     "demonstration of the pipeline.")
GENERAL_WARNING = ("Out of distribution: {who} know only their own training data ({data}). A clip unlike it is "
                   "out of their distribution, and their answers and rationales on it may be meaningless.")
SENTENCE_COLOURS = ('a rationale sentence is '
                    '<span class="erv-sent erv-match">green when the verifier gives it the answered emotion</span>, '
                    '<span class="erv-sent erv-neutral">grey when only neutral</span>, '
                    '<span class="erv-sent erv-other">red for another emotion</span>, '
                    '<span class="erv-sent erv-stuffed">struck through when the anti-stuffing guard refused it</span>; '
                    'hover a sentence for its verifier labels and probabilities.</p>')
LEGEND = ('<p>No ground truth for your clip: an <span class="erv-ok">answer</span> is green when it is one of '
          'the run\'s labels, the <span class="erv-ok">judge</span>\'s reading is green when it is the emotion '
          'the model answered, and ' + SENTENCE_COLOURS)
KNOWN_CAVEAT = ("This clip comes with its true emotion ({label}), e.g. one of the run's own synthetic test clips: "
                "answers and judged rationales are checked against it below.")
KNOWN_LEGEND = ('<p>Ground truth: <b>{label}</b>. An <span class="erv-ok">answer</span> is green when it is the true '
                'emotion, the <span class="erv-ok">judge</span>\'s reading is green when the rationale reads as the '
                'true emotion, and ' + SENTENCE_COLOURS)  # no braces in it: safe to .format


class ExplainError(RuntimeError):
    """Bad input to ``explain`` (a file it cannot read, a run folder without models, an unknown preset):
    ``erv-lab explain`` (``cli.cmd_explain``) prints the one-line message and exits with 1."""


# ---------------------------------------------------------------- the run folder
def find_models(run_dir: str | Path) -> dict[str, Path]:
    """``{arm: <run>/<arm>/final}`` for the arms of ``ARMS`` whose final model was saved (``policy.json``).
    Raises ExplainError when there is none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExplainError(f"{run_dir}: no such run folder")
    found = {arm: run_dir / arm / "final" for arm in ARMS if (run_dir / arm / "final" / "policy.json").is_file()}
    if not found:
        raise ExplainError(f"{run_dir}: no trained model in it (looked for {', '.join(f'{a}/final' for a in ARMS)})")
    return found


def trained_settings(run_dir: str | Path) -> dict:
    """The ``data`` and ``policy`` settings the run's models were trained with (the SFT stage's
    ``settings.json``, which each GRPO arm's also holds under ``sft``); ``{}`` when no stage recorded them."""
    run_dir = Path(run_dir)
    for stage in ARMS:
        path = run_dir / stage / "settings.json"
        if path.is_file():
            saved = json.loads(path.read_text())
            saved = saved.get("sft", saved) if stage != "sft" else saved
            if "data" in saved and "policy" in saved:
                return {"data": saved["data"], "policy": saved["policy"], "from": str(path)}
    return {}


def trained_preset(models: dict[str, Path]) -> str | None:
    """The preset name the first model's stage recorded in its ``policy.json`` (None when it did not)."""
    meta = json.loads((next(iter(models.values())) / "policy.json").read_text())
    return (meta.get("metrics") or {}).get("preset")


def explain_config(run_dir: str | Path, preset: str | None = None, overrides: Sequence[str] = ()):
    """The config to explain with: ``preset`` (default: the one the run's models were trained with, else
    cpu-tiny) and ``overrides``, then the run's own ``policy`` settings and the ``data`` fields that shape
    the example row (``DATA_FIELDS``) from :func:`trained_settings`, so the models see what they saw in
    training. Raises ExplainError for an unknown preset or a bad override."""
    from erv_lab.config import load_config

    preset = preset or trained_preset(find_models(run_dir)) or "cpu-tiny"
    try:
        cfg = load_config(preset, list(overrides))
    except (FileNotFoundError, ValueError) as exc:
        raise ExplainError(" ".join(line.strip() for line in str(exc).splitlines())) from None
    saved = trained_settings(run_dir)
    for name in DATA_FIELDS:
        if name in saved.get("data", {}):
            setattr(cfg.data, name, saved["data"][name])
    for name, value in saved.get("policy", {}).items():
        if hasattr(cfg.policy, name):
            setattr(cfg.policy, name, value)
    return cfg


def label_space(cfg) -> str:
    """The label list (``dfew`` / ``mafw``) answers are read in: the (first) data source's, the synthetic
    layout's for synthetic or folder data."""
    from erv_lab.data import label_space as space

    return space(cfg.data.source[0] if isinstance(cfg.data.source, list) else cfg.data.source, cfg.data.layout)


# ---------------------------------------------------------------- the clip
def input_kind(path: Path) -> str:
    """``frames`` (a folder), ``image`` (a still, ``erv_lab.media.FRAME_EXT``) or ``video``."""
    from erv_lab.media import FRAME_EXT

    return "frames" if path.is_dir() else "image" if path.suffix.lower() in FRAME_EXT else "video"


def decoded_gib(path: Path) -> float | None:
    """What all frames of the video at ``path`` take decoded as RGB (GiB), from its container's frame count
    (or duration x frame rate) and size; None when the container does not say or PyAV cannot open it."""
    import av

    try:
        with av.open(str(path)) as box:
            if not box.streams.video:
                return None
            s = box.streams.video[0]
            n = float(s.frames or 0)
            if not n and box.duration and s.average_rate:
                n = box.duration / av.time_base * float(s.average_rate)
            return n * s.width * s.height * 3 / 2**30 if n else None
    except (av.error.FFmpegError, ValueError, OSError):
        return None


def clip_example(path: str | Path, cfg, cache_dir: str | Path) -> tuple[dict, dict]:
    """``(example, info)``: the test-split row of the clip at ``path``, built as ``erv_lab.data.build_rows``
    builds one (``prepare_clip`` with ``missing_audio="silence"``, then ``clip_row``: segment-centre frames
    at ``cfg.policy.image_size`` px, spectrogram image, prosody), and what kind of input it was. Raises
    ExplainError naming the file when it does not exist, cannot be decoded, or is a video too long to
    decode whole (over ``MAX_DECODED_GIB``)."""
    import random

    from erv_lab import data as D

    path = Path(path)
    if not path.exists():
        raise ExplainError(f"{path}: no such file or folder")
    gib = decoded_gib(path) if input_kind(path) == "video" else None
    if gib is not None and gib > MAX_DECODED_GIB:
        raise ExplainError(f"{path}: too long to decode whole ({gib:.1f} GiB of frames, at most {MAX_DECODED_GIB:g}); "
                           f"pass a shorter clip, e.g. ffmpeg -i {path.name} -t 5 short.mp4")
    rec = {"clip_id": path.stem or path.name, "label": "", "path": str(path), "dataset": label_space(cfg),
           "fold": 0}
    n = cfg.data.num_frames
    try:
        clip = D.prepare_clip(rec, cache_dir, cfg.policy.image_size, D.frames_to_cache(n), cfg.data.face_crop,
                              missing_audio="silence")
    except D.DecodeError as exc:
        raise ExplainError(f"{path}: cannot read it as a video, a folder of frames or an image "
                           f"({exc.reason})") from None
    example = D.clip_row(rec, clip, "test", n, cfg.policy.image_size, random.Random(0))
    info = {"kind": input_kind(path), "has_audio": clip["has_audio"],
            "audio": "its own audio track" if clip["has_audio"] else "no audio track: a silent 16 kHz track",
            "face_found": clip["face"], "prosody": clip["prosody"]}
    return example, info


# ---------------------------------------------------------------- the models' readings
def read_completion(completion: str, dataset: str, verifier: Any, judge: Any, cfg) -> dict:
    """One model's decode as a record of ``erv_lab.evaluate.clip_records``' shape (``completion``, ``think``
    (the rationale), ``answer``, ``prediction``, ``judged``, ``rewards``, ``sentences``), so the inspector's
    ``arm_html`` draws it. With no ground truth the sentences are labelled against the model's own answer
    (the ``consistency`` variant of the explanation reward, with the preset's tau, top-k and guard) and
    ``rewards`` holds the format reward and that consistency reward."""
    from erv_lab.evaluate import judge_texts
    from erv_lab.labels import normalize_label
    from erv_lab.rewards import ExplanationReward, format_reward, parse_completion

    think, answer = parse_completion(completion)
    erv = ExplanationReward(verifier, cfg.verifier.threshold, cfg.verifier.top_k, "consistency",
                            cfg.reward.anti_stuffing)
    details = erv.details([completion], dataset=[dataset])[0]
    return {"completion": completion, "think": think, "answer": answer,
            "prediction": normalize_label(answer, dataset) if answer else None,
            "judged": judge_texts(judge, [think or ""], dataset)[0],
            "rewards": {"format": format_reward([completion], strict=cfg.reward.strict_format)[0],
                        "explanation_vs_own_answer": details["reward"]},
            "sentences": details["sentences"]}


def decode_greedy(model_dir: Path, example: dict, cfg) -> str:
    """The model's greedy completion for ``example`` (``erv_lab.policy.load_policy`` + ``generate``)."""
    from erv_lab import policy as P

    model, processor = P.load_policy(model_dir, cfg.policy)
    return P.generate(model, processor, [example], temperature=0.0, max_new_tokens=cfg.eval.max_new_tokens,
                      audio=cfg.policy, batch_size=1)[0]


def run_verifier(cfg, run_dir: Path):
    """The run's verifier: ``<run>/verifier`` as saved (``load_verifier``, never replaced), else a new one of
    the preset trained and saved there (``erv_lab.stages.ensure_verifier``)."""
    from erv_lab import stages
    from erv_lab import verifier as V

    if (run_dir / "verifier" / V.CONFIG_FILE).is_file():
        return V.load_verifier(run_dir / "verifier")
    print(f"{run_dir / 'verifier'} holds no verifier: training the preset's and saving it there", file=sys.stderr)
    return stages.ensure_verifier(cfg, run_dir, progress=False)


def run_judge(cfg, run_dir: Path):
    """The headline judge of ``cfg.verifier.judge`` (``erv_lab.judges.headline_judge``)."""
    from erv_lab import judges

    try:
        return judges.headline_judge(cfg, run_dir)
    except KeyError as exc:  # llm / hf judges read their endpoint and model from the environment
        raise ExplainError(exc.args[0]) from None


def caveat(cfg, models: dict[str, Path]) -> str:
    """The out-of-distribution warning the page opens with: models trained on synthetic clips were trained
    on drawn faces only (said plainly, with the tiny CPU models' size from their ``policy.json``); others know
    only their own training data."""
    metas = [json.loads((d / "policy.json").read_text()) for d in models.values()]
    who = "these models"
    if any(m.get("kind", "tiny-llava") == "tiny-llava" for m in metas):
        total = max((m.get("parameters") or {}).get("total", 0) for m in metas)
        size = f"{total / 1e6:.2g} M parameters, " if total else ""
        who = f"these are the course's tiny CPU models ({size}trained from scratch), and they"
    if cfg.data.source == "synthetic":
        return SYNTHETIC_WARNING.format(who=who)
    who = who.replace(", and they", "; they")
    return GENERAL_WARNING.format(who=who, data=cfg.data.source)


# ---------------------------------------------------------------- the whole explanation
def explain_clip(video: str | Path, run_dir: str | Path, out: str | Path | None = None, preset: str | None = None,
                 overrides: Sequence[str] = (), label: str | None = None) -> dict:
    """Explain one clip with every model of ``run_dir``; write ``explain.json``, ``explain.html``,
    ``frame_<k>.png`` and ``spectrogram.png`` in ``out`` (default ``<run>/explain/<clip name>/``) and return
    the JSON's content. ``label``: the clip's true emotion when it is known (one of the run's own clips): the
    page then checks every answer against it instead of warning that the clip is out of distribution. Raises
    ExplainError for bad input."""
    run_dir, video = Path(run_dir), Path(video)
    models = find_models(run_dir)
    cfg = explain_config(run_dir, preset, overrides)
    if label is not None:
        from erv_lab.labels import normalize_label

        known = normalize_label(label, label_space(cfg))
        if known is None:
            raise ExplainError(f"--label {label!r} is not one of the run's labels: "
                               f"{', '.join(vocabulary(label_space(cfg)))}")
        label = known
    with tempfile.TemporaryDirectory() as cache:
        example, info = clip_example(video, cfg, cache)
    out = Path(out) if out is not None else run_dir / "explain" / (video.stem or video.name)
    out.mkdir(parents=True, exist_ok=True)
    frames = [f"frame_{k + 1}.png" for k in range(len(example["frames"]))]
    for name, im in zip(frames + ["spectrogram.png"], example["frames"] + [example["spectrogram"]]):
        im.save(out / name)
    dataset = label_space(cfg)
    verifier, judge = run_verifier(cfg, run_dir), run_judge(cfg, run_dir)
    readings = {}
    for arm, model_dir in models.items():
        readings[arm] = {"model": str(model_dir),
                         **read_completion(decode_greedy(model_dir, example, cfg), dataset, verifier, judge, cfg)}
    result = {"clip": str(video.resolve()), "input": info, "label": label, "run": str(run_dir),
              "caveat": caveat(cfg, models) if label is None else KNOWN_CAVEAT.format(label=label),
              "out": str(out), "preset": cfg.preset, "labels": list(vocabulary(dataset)),
              "settings": {"num_frames": cfg.data.num_frames, "image_size": cfg.policy.image_size,
                           "face_crop": cfg.data.face_crop, "audio": cfg.policy.audio, "decoding": "greedy",
                           "max_new_tokens": cfg.eval.max_new_tokens, "verifier_threshold": cfg.verifier.threshold,
                           "verifier_top_k": cfg.verifier.top_k, "judge": getattr(judge, "name", type(judge).__name__),
                           "trained_settings": trained_settings(run_dir).get("from")},
              "frames": frames, "spectrogram": "spectrogram.png", "models": readings}
    (out / "explain.json").write_text(json.dumps(result, indent=1, default=_json_default))
    (out / "explain.html").write_text(explain_html(result, example), encoding="utf-8")
    return result


def _json_default(x: Any) -> Any:
    """numpy scalars and arrays in the verifier's output as plain JSON numbers and lists."""
    return x.tolist() if hasattr(x, "tolist") else str(x)


def explain_html(result: dict, example: dict) -> str:
    """A self-contained page: the out-of-distribution warning, the clip's frames and spectrogram as inline
    images, then one column per model drawn by the inspector's ``arm_html`` (the answer and the judge's
    reading coloured against the model's own answer, as the legend says)."""
    from erv_lab.widgets import CSS, _img, arm_html

    info, s = result["input"], result["settings"]
    media = "".join(_img(f) for f in example["frames"]) + _img(example["spectrogram"])
    heard = {"spectrogram": "the spectrogram (last image)", "none": "no audio",
             "prosody": f"the prosody text \u201c{info['prosody']}\u201d"}.get(s["audio"], s["audio"])
    label = result.get("label")
    cols = "".join(arm_html(arm, rec, label or rec.get("prediction") or "") for arm, rec in result["models"].items())
    legend = LEGEND if label is None else KNOWN_LEGEND.format(label=html.escape(label))
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>erv-lab explain: '
            f'{html.escape(Path(result["clip"]).name)}</title>{CSS}<style>'
            '.erv-warning{background:#fff3cd;border:1px solid #e0b84c;padding:8px;font-family:sans-serif}'
            '</style></head><body>'
            f'<p class="erv-warning"><b>{html.escape(result["caveat"])}</b></p>'
            f'<div class="erv-clip"><b>{html.escape(result["clip"])}</b> &middot; {html.escape(info["kind"])}'
            f' &middot; audio: {html.escape(info["audio"])} &middot; prosody: {html.escape(info["prosody"])}<br>'
            f'{s["num_frames"]} frames at {s["image_size"]} px, as in training; the models heard '
            f'{html.escape(heard)}; greedy decoding; judge: {html.escape(str(s["judge"]))}'
            f'<div class="erv-media">{media}</div>{legend}<div class="erv-arms">{cols}</div></div>'
            '</body></html>')
