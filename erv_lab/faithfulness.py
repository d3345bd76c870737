"""Faithful, not just coherent: does a rationale use the evidence, and does the answer depend on it?

ERV makes a rationale name the same emotion as the answer. Two questions go further (beyond the paper):

- **Modality faithfulness** (MIGR, arXiv 2512.02699; OPPO, arXiv 2606.25325). Decode every test clip as it is,
  with its frames blanked (:func:`ablate` ``"face"``) and with a silent track (``"voice"``). Report accuracy with
  each modality removed, overall and on the classes only that modality separates (the synthetic clips are built
  so: fear and surprise differ only in the voice, angry and disgust only in the face,
  ``erv_lab.rationales.AUDIO_ONLY_PAIR`` / ``VIDEO_ONLY_PAIR``); the share of rationales that still describe facial
  cues with no frames, or voice cues with no sound (a cross-modal hallucination); and, on the modality-decided
  classes, the share of rationales that describe a cue of the deciding modality, and that describe it first.
- **Step necessity** (SLRC, arXiv 2603.22816; NLDD, arXiv 2602.11201). Remove one rationale sentence at a time,
  force the answer after the shortened ``<think>`` and count the sentences whose removal changes it; also the
  answer after an empty ``<think>``. No judge is involved.

Scoring here is pure (decodes in, numbers out) and tested on hand-made cases; :func:`force_answer_fn` and
``erv_lab.stages.faithfulness`` do the decoding. Cue lists exist for synthetic clips only.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np

from erv_lab.grounding import described_cues
from erv_lab.labels import split_sentences
from erv_lab.rationales import AUDIO_ONLY_PAIR, AUDIO_PHRASES, VIDEO_ONLY_PAIR, VISUAL_PHRASES
from erv_lab.rewards import parse_completion

CONDITIONS = ("as_is", "no_face", "no_voice")  # decode the clip as it is, frames blanked, sound silenced
MODALITY_OF_CUE = {**{c: "face" for c in VISUAL_PHRASES}, **{c: "voice" for c in AUDIO_PHRASES}}
DECIDED_BY = {**{c: "voice" for c in AUDIO_ONLY_PAIR}, **{c: "face" for c in VIDEO_ONLY_PAIR}}
GREY = 128  # a blanked frame: uniform mid grey, the frame's own size


def ablate(example: dict, modality: str) -> dict:
    """A copy of a dataset row with one modality removed, as the policy would see a clip without it:
    ``"face"`` replaces every frame by a uniform grey image of its size; ``"voice"`` replaces the spectrogram by
    that of a silent track (``media.log_mel(None)``: the floor value everywhere) and the prosody text by
    ``media.prosody(None)`` ("no audio")."""
    from PIL import Image

    from erv_lab.media import log_mel, prosody, spectrogram_image

    out = copy.copy(example)
    if modality == "face":
        out["frames"] = [Image.new("RGB", Image.fromarray(np.asarray(f)).size, (GREY,) * 3)
                         for f in example["frames"]]
    elif modality == "voice":
        side = np.asarray(example["spectrogram"]).shape[0] if example.get("spectrogram") is not None else 32
        out["spectrogram"] = spectrogram_image(log_mel(None), side)
        out["prosody"] = prosody(None)
    else:
        raise ValueError(f"modality must be 'face' or 'voice', got {modality!r}")
    return out


def cue_modalities(think: str | None) -> list[str]:
    """The modality of each cue the rationale describes, in the order of its sentences (a sentence describing
    several cues gives them in sorted cue order)."""
    return [MODALITY_OF_CUE[c] for s in split_sentences(think) for c in described_cues(s)]


def _share(flags: Sequence[bool]) -> float | None:
    return float(np.mean(flags)) if len(flags) else None


def _interval(flags: Sequence[bool], n_boot: int, seed: int) -> list[float] | None:
    """95 % percentile bootstrap over clips of a share."""
    if not len(flags) or not n_boot:
        return None
    x = np.asarray(flags, float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def _stat(flags: Sequence[bool], n_boot: int, seed: int) -> dict:
    return {"value": _share(flags), "ci": _interval(flags, n_boot, seed), "n": len(flags)}


def modality_scores(decodes: dict[str, Sequence[str]], labels: Sequence[str], n_boot: int = 1000,
                    seed: int = 0) -> dict:
    """One arm's modality faithfulness from its decodes ``{condition: [completion per clip]}``
    (``CONDITIONS``; aligned with ``labels``). Every value is a share of clips with a 95 % bootstrap interval:

    - ``accuracy[condition]`` overall, ``accuracy_voice_decided`` / ``accuracy_face_decided`` on the classes only
      that modality separates;
    - ``hallucination``: ``face_without_frames`` (no_face rationales that describe a facial cue) and
      ``voice_without_sound`` (no_voice rationales that describe a voice cue);
    - ``deciding_modality``: on the modality-decided classes (as_is decodes), ``described`` (the rationale
      describes at least one cue of the deciding modality) and ``first`` (its first described cue is one).
    """
    out: dict = {"accuracy": {}, "accuracy_voice_decided": {}, "accuracy_face_decided": {}}
    for cond, comps in decodes.items():
        answers = [parse_completion(c)[1] for c in comps]
        hits = [a == y for a, y in zip(answers, labels)]
        out["accuracy"][cond] = _stat(hits, n_boot, seed)
        for mod in ("voice", "face"):
            out[f"accuracy_{mod}_decided"][cond] = _stat(
                [h for h, y in zip(hits, labels) if DECIDED_BY.get(y) == mod], n_boot, seed)
    hall = {}
    for cond, mod, key in (("no_face", "face", "face_without_frames"), ("no_voice", "voice", "voice_without_sound")):
        if cond in decodes:
            hall[key] = _stat([mod in cue_modalities(parse_completion(c)[0]) for c in decodes[cond]], n_boot, seed)
    out["hallucination"] = hall
    described, first = [], []
    for c, y in zip(decodes.get("as_is", []), labels):
        if y in DECIDED_BY:
            mods = cue_modalities(parse_completion(c)[0])
            described.append(DECIDED_BY[y] in mods)
            first.append(bool(mods) and mods[0] == DECIDED_BY[y])
    out["deciding_modality"] = {"described": _stat(described, n_boot, seed), "first": _stat(first, n_boot, seed)}
    return out


def clip_row(example: dict, decodes: dict[str, str], steps_row: dict) -> dict:
    """One clip's view for the inspector: the as-is rationale sentence by sentence (the modalities each
    describes, and whether removing it changes the answer), and each ablated decode's answer and rationale with
    the modality it describes although that modality was removed."""
    think = parse_completion(decodes["as_is"])[0]
    sents = split_sentences(think)
    necessary = steps_row["necessary"] if len(steps_row["necessary"]) == len(sents) else [None] * len(sents)
    row = {"clip_id": example["clip_id"], "label": example["label"], "decided_by": DECIDED_BY.get(example["label"]),
           "answer": parse_completion(decodes["as_is"])[1], "forced_answer": steps_row["answer"],
           "empty_changes": steps_row["empty_changes"],
           "sentences": [{"text": t, "modalities": sorted(set(cue_modalities(t))), "necessary": n}
                         for t, n in zip(sents, necessary)]}
    for cond, removed in (("no_face", "face"), ("no_voice", "voice")):
        if cond in decodes:
            th, ans = parse_completion(decodes[cond])
            row[cond] = {"answer": ans, "think": th, "describes_removed": removed in cue_modalities(th)}
    return row


def per_class(clips: Sequence[dict]) -> dict:
    """From one model's inspector rows (:func:`clip_row`): ``{"accuracy": {label: {condition: [right, n]}},
    "most_common": {condition: [answer, count]}}``; the second shows where answers go when a modality is
    removed (all on one class: the missing modality is read as evidence for it)."""
    from collections import Counter

    acc: dict = {}
    for c in clips:
        row = acc.setdefault(c["label"], {"as_is": [0, 0], "no_face": [0, 0], "no_voice": [0, 0]})
        for cond in row:
            answer = c["answer"] if cond == "as_is" else c[cond]["answer"]
            row[cond][0] += answer == c["label"]
            row[cond][1] += 1
    common = {cond: list(Counter(c[cond]["answer"] for c in clips).most_common(1)[0])
              for cond in ("no_face", "no_voice") if clips}
    return {"accuracy": dict(sorted(acc.items())), "most_common": common}


# ---------------------------------------------------------------- step necessity
def without_each_sentence(think: str | None) -> list[str]:
    """The rationale with one sentence removed, for each sentence in order (joined by single spaces)."""
    sents = split_sentences(think)
    return [" ".join(sents[:i] + sents[i + 1:]) for i in range(len(sents))]


ForceAnswer = Callable[[Sequence[dict], Sequence[str]], list]  # (examples, think texts) -> answer labels


def step_necessity(examples: Sequence[dict], thinks: Sequence[str | None], force_answer: ForceAnswer,
                   n_boot: int = 0, seed: int = 0) -> dict:
    """Which rationale sentences does the answer depend on? For each rationale, the answer forced after the
    whole ``<think>`` (the reference), after each one-sentence-shorter ``<think>``, and after an empty one.
    ``force_answer(examples, thinks)`` returns one answer per pair (batched by the caller's function).

    Returns per-clip rows ``{"n_sentences", "necessary": [bool per sentence], "empty_changes": bool}`` and the
    shares: ``sentence_necessary`` (of all sentences), ``rationale_with_necessary`` (of rationales with at least
    one sentence), ``empty_changes`` (of all rationales); ``ci`` holds their 95 % bootstrap intervals over clips
    (``n_boot`` resamples; the sentence share resamples whole rationales, a ratio of sums), ``None`` when
    ``n_boot`` is 0.
    """
    jobs: list[tuple[int, str]] = []
    for i, think in enumerate(thinks):
        text = " ".join(split_sentences(think))
        jobs += [(i, text), (i, "")] + [(i, t) for t in without_each_sentence(think)]
    answers = force_answer([examples[i] for i, _ in jobs], [t for _, t in jobs]) if jobs else []
    rows, k = [], 0
    for think in thinks:
        n = len(split_sentences(think))
        full, empty, rest = answers[k], answers[k + 1], answers[k + 2:k + 2 + n]
        k += 2 + n
        rows.append({"n_sentences": n, "answer": full, "necessary": [a != full for a in rest],
                     "empty_changes": empty != full})
    return {"rows": rows, **step_summary(rows, n_boot, seed)}


def step_summary(rows: Sequence[dict], n_boot: int = 0, seed: int = 0) -> dict:
    """The step-necessity shares of per-clip rows ``{"n_sentences", "necessary", "empty_changes"}`` (see
    :func:`step_necessity`), with their 95 % bootstrap intervals over clips when ``n_boot`` > 0."""
    sentences = [x for r in rows for x in r["necessary"]]
    with_sent = [any(r["necessary"]) for r in rows if r["n_sentences"]]
    empty = [r["empty_changes"] for r in rows]
    ci = None
    if n_boot:
        ci = {"sentence_necessary": _ratio_interval([sum(r["necessary"]) for r in rows],
                                                    [r["n_sentences"] for r in rows], n_boot, seed),
              "rationale_with_necessary": _interval(with_sent, n_boot, seed),
              "empty_changes": _interval(empty, n_boot, seed)}
    return {"sentence_necessary": _share(sentences), "n_sentences": len(sentences),
            "rationale_with_necessary": _share(with_sent), "n_rationales": len(with_sent),
            "empty_changes": _share(empty), "ci": ci}


def _ratio_interval(num: Sequence[int], den: Sequence[int], n_boot: int, seed: int) -> list[float] | None:
    """95 % percentile bootstrap over clips of sum(num) / sum(den) (resamples with no denominator skipped)."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    if not len(den) or not den.sum() or not n_boot:
        return None
    idx = np.random.default_rng(seed).integers(0, len(den), (n_boot, len(den)))
    d = den[idx].sum(1)
    ratios = num[idx].sum(1)[d > 0] / d[d > 0]
    return [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))]


def cached_force(force: ForceAnswer, cache_file, fingerprint: str = "", batch_size: int = 64,
                 desc: str = "forced answers") -> ForceAnswer:
    """``force`` with a JSONL cache (first line: the model's fingerprint): a (clip, rationale) pair already
    answered is not decoded again, and each finished batch is appended at once, so an interrupted step-necessity
    run resumes where it stopped. Another model discards the cache."""
    import hashlib
    import json
    from pathlib import Path

    from tqdm.auto import tqdm

    from erv_lab.reuse import jsonl_cache

    cache_file = Path(cache_file)

    def key(ex: dict, think: str) -> str:
        return hashlib.sha1(f"{ex['clip_id']}\x00{think}".encode()).hexdigest()

    def cached(examples: Sequence[dict], thinks: Sequence[str]) -> list:
        done = jsonl_cache(cache_file, {"model": fingerprint, "kind": "forced_answer"}, "answer")
        keys = [key(ex, t) for ex, t in zip(examples, thinks)]
        todo, seen = [], set()
        for i, k in enumerate(keys):
            if k not in done and k not in seen:
                seen.add(k)
                todo.append(i)
        with open(cache_file, "a") as f, tqdm(total=len(set(keys)), initial=len(set(keys)) - len(todo),
                                             desc=desc, unit="answer", leave=False) as bar:
            for s in range(0, len(todo), batch_size):
                chunk = todo[s:s + batch_size]
                got = force([examples[i] for i in chunk], [thinks[i] for i in chunk])
                for i, a in zip(chunk, got):
                    done[keys[i]] = a
                    f.write(json.dumps({"key": keys[i], "answer": a}) + "\n")
                f.flush()
                bar.update(len(chunk))
        return [done[k] for k in keys]
    return cached


def force_answer_fn(model, processor, cfg, batch_size: int = 64) -> ForceAnswer:
    """The policy's forced answer: the prompt as the policy sees it, ``<think>{text}</think><answer>`` as the
    start of its turn, a few greedy tokens, read up to ``</answer>`` and normalised to a label (``None`` when it
    names none)."""
    from erv_lab import policy as P
    from erv_lab.labels import normalize_label

    def force(examples: Sequence[dict], thinks: Sequence[str]) -> list[str | None]:
        prefixes = [f"<think>{t}</think><answer>" for t in thinks]
        texts = P.generate(model, processor, list(examples), max_new_tokens=8, audio=cfg.policy,
                           batch_size=batch_size, prefixes=prefixes)
        return [normalize_label(t.split("</answer>")[0].strip(), ex.get("dataset", "dfew"))
                for t, ex in zip(texts, examples)]
    return force
