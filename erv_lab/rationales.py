"""EMER-style cold-start rationales built from a clip's real cues, and the drift that ERV must remove.

One vocabulary of facial actions and voice traits per emotion (``CUES``; ``erv_lab.synth`` draws and
voices exactly these), sentence templates that describe a cue and read it emotionally, neutral hedges,
and a drift model (random + class-conditional, rates from ``cfg.data``). Every sentence carries a teacher
label set (GoEmotions indices via ``erv_lab.labels.to_goemotions``). No I/O, no model, no randomness
outside the ``random.Random`` passed in. Introduced in notebook 01.
"""
from __future__ import annotations

import random
from typing import Mapping, Sequence

from erv_lab.labels import NEUTRAL_INDEX, normalize_label, to_goemotions, vocabulary

# ---------------------------------------------------------------------------------------------------
# Cue vocabulary. Keys are "stems": the DFEW name when the emotion exists in DFEW, else the MAFW name.
# Designed confusions (so that both modalities matter):
#   fear ~ surprise: identical facial actions, different voices (only audio separates them);
#   angry ~ disgust: identical voices, different faces (only video separates them).
# ---------------------------------------------------------------------------------------------------
CUES: dict[str, dict[str, tuple[str, ...]]] = {
    "happy": {"visual": ("smile", "cheek_raise"), "audio": ("pitch_high", "lively", "fast")},
    "sad": {"visual": ("lip_corner_down", "eyelid_droop", "brow_inner_raise"),
            "audio": ("pitch_low", "pitch_fall", "soft", "slow")},
    "neutral": {"visual": ("relaxed_face",), "audio": ("monotone",)},
    "angry": {"visual": ("brow_lower", "lip_press"), "audio": ("loud", "harsh", "pitch_low")},
    "disgust": {"visual": ("nose_wrinkle", "upper_lip_raise"), "audio": ("loud", "harsh", "pitch_low")},
    "surprise": {"visual": ("brow_raise", "eyes_wide", "jaw_drop"), "audio": ("burst", "pitch_rise", "loud")},
    "fear": {"visual": ("brow_raise", "eyes_wide", "jaw_drop"), "audio": ("pitch_high", "tremor", "breathy", "fast")},
    # MAFW-only classes
    "contempt": {"visual": ("lip_corner_asym",), "audio": ("monotone",)},
    "anxiety": {"visual": ("brow_inner_raise", "lip_press", "gaze_shift"), "audio": ("tremor", "fast", "soft")},
    "helplessness": {"visual": ("brow_inner_raise", "mouth_slack", "head_tilt"),
                     "audio": ("pitch_fall", "breathy", "slow")},
    "disappointment": {"visual": ("lip_corner_down", "gaze_down"), "audio": ("pitch_fall", "soft")},
}
AUDIO_ONLY_PAIR = ("fear", "surprise")   # look alike, differ only in the voice
VIDEO_ONLY_PAIR = ("angry", "disgust")   # sound alike, differ only in the face

# Class-conditional drift: the direction real annotators drift in (``"neutral"`` = hedging).
DRIFT_TOWARDS = {"fear": "surprise", "disgust": "angry", "sad": "neutral", "anxiety": "fear",
                 "contempt": "disgust", "helplessness": "sad", "disappointment": "neutral"}

VISUAL_PHRASES = {
    "smile": ("the corners of {p} mouth turn up into a wide smile", "{p} lips curve upward"),
    "cheek_raise": ("{p} cheeks lift and {p} eyes narrow", "{p} eyes crinkle at the corners"),
    "lip_corner_down": ("the corners of {p} mouth are pulled down", "{p} lips droop at the corners"),
    "eyelid_droop": ("{p} eyelids hang heavy", "{p} gaze is lowered under drooping lids"),
    "brow_inner_raise": ("the inner ends of {p} eyebrows are pulled up", "{p} brows slant upward in the middle"),
    "relaxed_face": ("{p} face stays relaxed", "{p} features barely move"),
    "brow_lower": ("{p} eyebrows are lowered and drawn together", "{p} brows knit into a frown"),
    "lip_press": ("{p} lips are pressed tightly together", "{p} mouth is a thin tight line"),
    "nose_wrinkle": ("{p} nose wrinkles", "lines appear along the bridge of {p} nose"),
    "upper_lip_raise": ("{p} upper lip curls up", "{p} upper lip is raised on both sides"),
    "brow_raise": ("{p} eyebrows shoot up", "{p} brows are raised high"),
    "eyes_wide": ("{p} eyes open wide", "the whites of {p} eyes show"),
    "jaw_drop": ("{p} mouth falls open", "{p} jaw drops"),
    "lip_corner_asym": ("one corner of {p} mouth is pulled up", "{p} mouth tightens on one side only"),
    "gaze_shift": ("{p} eyes dart from side to side", "{p} gaze keeps shifting"),
    "mouth_slack": ("{p} mouth hangs slightly open", "{p} lips part loosely"),
    "head_tilt": ("{p} head tilts to one side", "{p} head leans over"),
    "gaze_down": ("{p} eyes look down", "{p} gaze drops to the floor"),
}
AUDIO_PHRASES = {
    "pitch_high": ("{p} voice is high pitched", "{s} speaks in a raised voice"),
    "lively": ("{p} intonation bounces up and down", "{p} tone is lively"),
    "fast": ("{s} speaks quickly", "the words come out fast"),
    "pitch_low": ("{p} voice is low", "{s} speaks in a deep tone"),
    "pitch_fall": ("{p} intonation falls at the end", "{p} voice sinks as {s} speaks"),
    "soft": ("{p} voice is quiet", "{s} speaks softly"),
    "slow": ("{s} speaks slowly", "the words drag out"),
    "monotone": ("{p} voice is flat and even", "{s} speaks in a level tone"),
    "loud": ("{p} voice is loud", "{s} nearly shouts"),
    "harsh": ("{p} voice sounds harsh", "the tone is rough and grating"),
    "burst": ("{s} lets out a short sudden exclamation", "a brief outburst is heard"),
    "pitch_rise": ("{p} pitch jumps up sharply", "{p} voice rises steeply"),
    "tremor": ("{p} voice trembles", "{p} voice is shaky"),
    "breathy": ("{p} voice is breathy", "{s} sounds short of breath"),
}
# (nouns, adjectives) used to read a cue emotionally.
EMOTION_WORDS = {
    "happy": (("happiness", "joy", "delight"), ("happy", "joyful", "cheerful")),
    "sad": (("sadness", "sorrow", "gloom"), ("sad", "unhappy", "sorrowful")),
    "neutral": (("calm", "composure", "indifference"), ("calm", "composed", "unmoved")),
    "angry": (("anger", "rage", "fury"), ("angry", "furious", "irritated")),
    "disgust": (("disgust", "revulsion", "distaste"), ("disgusted", "repulsed", "revolted")),
    "surprise": (("surprise", "astonishment", "amazement"), ("surprised", "astonished", "amazed")),
    "fear": (("fear", "alarm", "dread"), ("afraid", "frightened", "terrified")),
    "contempt": (("contempt", "disdain", "scorn"), ("contemptuous", "disdainful", "scornful")),
    "anxiety": (("anxiety", "nervousness", "unease"), ("anxious", "nervous", "uneasy")),
    "helplessness": (("helplessness", "despair", "resignation"), ("helpless", "powerless", "resigned")),
    "disappointment": (("disappointment", "discouragement", "dismay"), ("disappointed", "let down", "discouraged")),
}
_READINGS = ("{c}, which suggests {n}.", "{c}, as if {s} were {a}.", "{c}, a sign of {n}.",
             "{c} and {s} {v} {a}.", "{c}, showing {n}.")
_LEADS = ("", "In the video, ", "We can see that ", "At the peak, ")
_AUDIO_LEADS = ("", "In the audio, ", "We can hear that ", "Vocally, ")
_CONCLUSIONS = ("Taken together, these cues point to {n}.", "Overall, {s} seems {a}.",
                "The face and the voice both express {n}.", "So the clearest emotion here is {n}.")
_HEDGES = ("{P} expression is hard to read.", "The facial movements are subtle and give little away.",
           "{P} voice stays at an ordinary level.", "Nothing in {p} posture stands out.",
           "It is not obvious what {s} feels.", "The scene itself is ordinary.",
           "The lighting and background are plain.", "{S} glances at something off screen.")
_HEDGE_CONCLUSIONS = ("Overall, the emotion is difficult to determine.", "The cues remain ambiguous.")
PEOPLE = (("she", "her"), ("he", "his"), ("the speaker", "the speaker's"), ("the person", "the person's"))
KINDS = ("visual", "audio", "hedge", "conclusion")


def stem(label: str) -> str:
    """Key of ``label`` in ``CUES``: the DFEW name if the emotion exists in DFEW, else the MAFW name."""
    out = normalize_label(label, "dfew") or normalize_label(label, "mafw")
    if out is None:
        raise ValueError(f"{label!r} is not a DFEW or MAFW label")
    return normalize_label(out, "dfew") or out


def teacher_labels(emotion: str, layout: str = "dfew") -> list[int]:
    """The teacher's GoEmotions label set of a sentence that expresses ``emotion`` ("neutral" for hedges)."""
    word = normalize_label(emotion, layout) or normalize_label(emotion, "mafw")
    return [to_goemotions(word, layout if normalize_label(emotion, layout) else "mafw")]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def cue_sentence(kind: str, cue: str, emotion: str, rng: random.Random, person=PEOPLE[0]) -> str:
    """One sentence describing ``cue`` (a key of VISUAL_PHRASES/AUDIO_PHRASES) read as ``emotion``."""
    s, p = person
    phrases, leads = (VISUAL_PHRASES, _LEADS) if kind == "visual" else (AUDIO_PHRASES, _AUDIO_LEADS)
    clause = rng.choice(phrases[cue]).format(p=p, s=s)
    nouns, adjs = EMOTION_WORDS[stem(emotion)]
    body = rng.choice(leads) + clause
    verb = "looks" if kind == "visual" else "sounds"
    return _cap(rng.choice(_READINGS).format(c=body, n=rng.choice(nouns), a=rng.choice(adjs), s=s, v=verb))


def hedge_sentence(rng: random.Random, person=PEOPLE[0]) -> str:
    s, p = person
    return rng.choice(_HEDGES).format(s=s, p=p, S=_cap(s), P=_cap(p))


def conclusion_sentence(emotion: str, rng: random.Random, person=PEOPLE[0]) -> str:
    nouns, adjs = EMOTION_WORDS[stem(emotion)]
    return rng.choice(_CONCLUSIONS).format(n=rng.choice(nouns), a=rng.choice(adjs), s=person[0])


def random_drift_rate(layout: str, drift_rate: float, class_drift: Mapping[str, float]) -> float:
    """Random-drift probability r for classes without a class-conditional rate, chosen so that the overall
    share of drifting rationales over balanced classes equals ``drift_rate``:

        r = clip((drift_rate * K - sum_c q_c) / (K - #{c : q_c > 0}), 0, 1)

    with K classes and q_c = class_drift[c] for the layout's classes that have a drift direction.
    """
    qs = _class_rates(layout, class_drift)
    k, n_cond = len(vocabulary(layout)), sum(1 for q in qs.values() if q > 0)
    if k == n_cond:
        return 0.0
    return min(1.0, max(0.0, (drift_rate * k - sum(qs.values())) / (k - n_cond)))


def _class_rates(layout: str, class_drift: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for name, q in (class_drift or {}).items():
        key = stem(name)
        if key in DRIFT_TOWARDS and normalize_label(key, layout) is not None:
            out[key] = float(q)
    return out


def drift_plan(label: str, layout: str, rng: random.Random, drift_rate: float = 0.33,
               class_drift: Mapping[str, float] | None = None) -> dict | None:
    """Decide whether the rationale of a ``label`` clip drifts, and towards what.

    - ``drift_rate == 0`` switches all drift off.
    - A class with a class-conditional rate q_c drifts with probability q_c towards DRIFT_TOWARDS[c]
      (``"neutral"`` = neutral hedges); these show under greedy decoding because they are systematic.
    - Every other class drifts with the random rate r of ``random_drift_rate``, half of the time into
      hedges and half into the cues of a uniformly drawn other emotion of the layout.
    Returns None (no drift) or ``{"mode": "class" | "random", "towards": stem}``.
    """
    if drift_rate <= 0:
        return None
    key = stem(label)
    qs = _class_rates(layout, class_drift or {})
    if qs.get(key, 0.0) > 0:
        return {"mode": "class", "towards": DRIFT_TOWARDS[key]} if rng.random() < qs[key] else None
    if rng.random() >= random_drift_rate(layout, drift_rate, class_drift or {}):
        return None
    others = [stem(v) for v in vocabulary(layout) if stem(v) not in (key, "neutral")]
    towards = "neutral" if (key != "neutral" and rng.random() < 0.5) else rng.choice(others)
    return {"mode": "random", "towards": towards}


def make_rationale(label: str, cues: dict, layout: str, rng: random.Random, drift: dict | None = None,
                   person: tuple[str, str] | None = None) -> dict:
    """A cold-start target ``<think>S1 ... Sn</think>\\n<answer>label</answer>`` built from a clip's cues.

    ``cues`` is the clip's metadata (``{"visual": [{"cue", "strength"}], "audio": [...]}``); the strongest
    visual cues (up to 2) and the strongest audio cue are described, then a concluding sentence. A drifting
    rationale replaces every sentence with cues of ``drift["towards"]`` (or neutral hedges) while the
    answer stays ``label``. Returns ``{"text", "sentences": [{sentence, labels, emotion, kind}], "drift"}``.
    """
    person = person or rng.choice(PEOPLE)
    answer = normalize_label(label, layout)
    if answer is None:
        raise ValueError(f"{label!r} is not a {layout} label")
    vis = [c["cue"] for c in sorted(cues.get("visual", []), key=lambda c: -c["strength"])][:2]
    aud = [c["cue"] for c in sorted(cues.get("audio", []), key=lambda c: -c["strength"])][:1]
    target = drift["towards"] if drift else stem(label)
    sents: list[tuple[str, str, str]] = []  # (sentence, emotion, kind)
    if target == "neutral" and stem(label) != "neutral":
        for _ in range(len(vis) + len(aud)):
            sents.append((hedge_sentence(rng, person), "neutral", "hedge"))
        sents.append((rng.choice(_HEDGE_CONCLUSIONS), "neutral", "hedge"))
    else:
        if drift:  # describe the drift emotion's own cues
            vis = list(CUES[target]["visual"][:2])
            aud = [rng.choice(CUES[target]["audio"])]
        sents += [(cue_sentence("visual", c, target, rng, person), target, "visual") for c in vis]
        sents += [(cue_sentence("audio", c, target, rng, person), target, "audio") for c in aud]
        sents.append((conclusion_sentence(target, rng, person), target, "conclusion"))
    rows = [{"sentence": s, "labels": teacher_labels(e, layout), "emotion": _name(e, layout), "kind": k}
            for s, e, k in sents]
    think = " ".join(r["sentence"] for r in rows)
    return {"text": f"<think>{think}</think>\n<answer>{answer}</answer>", "sentences": rows, "drift": drift}


def _name(emotion: str, layout: str) -> str:
    return normalize_label(emotion, layout) or normalize_label(emotion, "mafw") or emotion


def rationale_corpus(layout: str = "dfew", n: int = 2000, seed: int = 0) -> list[dict]:
    """``n`` teacher-labelled rationale sentences for adapting the verifier to the rationale domain.

    Cycles over the layout's emotions and the kinds visual / audio / conclusion, with one hedge in every
    eight rows. Each row: ``{"sentence": str, "labels": [GoEmotions ids], "emotion": vocabulary name or
    "neutral", "kind": "visual" | "audio" | "conclusion" | "hedge"}``. Deterministic in ``seed``.
    """
    rng = random.Random(seed)
    emotions = list(vocabulary(layout))
    rows = []
    for i in range(n):
        person = rng.choice(PEOPLE)
        emo = emotions[i % len(emotions)]
        kind = "hedge" if i % 8 == 7 else ("visual", "audio", "conclusion")[(i // len(emotions)) % 3]
        if kind == "hedge":
            sent, emo = hedge_sentence(rng, person), "neutral"
        elif kind == "conclusion":
            sent = conclusion_sentence(emo, rng, person)
        else:
            sent = cue_sentence(kind, rng.choice(CUES[stem(emo)][kind]), emo, rng, person)
        rows.append({"sentence": sent, "labels": teacher_labels(emo, layout), "emotion": _name(emo, layout),
                     "kind": kind})
    return rows


def drift_summary(plans: Sequence[dict | None]) -> dict:
    """Counts of drift modes in a list of ``drift_plan`` results (for data cards and notebooks)."""
    out = {"none": 0, "class": 0, "random": 0}
    for plan in plans:
        out["none" if plan is None else plan["mode"]] += 1
    return out


assert NEUTRAL_INDEX == 27  # hedges are labelled neutral; the reward's neutral rule depends on it
