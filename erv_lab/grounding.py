"""Cue grounding: does a rationale sentence describe a facial action or voice trait the clip really shows?

Coherent is not the same as grounded: a rationale can name the right emotion while describing cues the clip
does not have (on a sad clip, "her eyebrows are lowered and drawn together, showing sadness" describes
anger's brow). Only synthetic data makes this measurable: the generator records every cue it drew and voiced,
distractors included (``cues`` column, ``erv_lab.synth``). A sentence *describes* a cue when it contains one of
that cue's phrases (``erv_lab.rationales.VISUAL_PHRASES`` / ``AUDIO_PHRASES``, with any person's pronoun), and
the cue is *grounded* when it is among the clip's cues. Real datasets have no cue list: their grounding is
``None``. Beyond the paper; introduced in notebook 07.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Sequence

from erv_lab.labels import split_sentences
from erv_lab.rationales import AUDIO_PHRASES, PEOPLE, VISUAL_PHRASES

# The template's people, plus "they"/"their", which a policy may write of its own.
_SUBJECT = "(?:" + "|".join(re.escape(s) for s, _ in PEOPLE + (("they", "their"),)) + ")"
_POSSESSIVE = "(?:" + "|".join(re.escape(p) for _, p in PEOPLE + (("they", "their"),)) + ")"


@lru_cache(maxsize=1)
def _patterns() -> list[tuple[str, re.Pattern]]:
    out = []
    for cue, phrases in {**VISUAL_PHRASES, **AUDIO_PHRASES}.items():
        for phrase in phrases:
            body = re.escape(phrase).replace(r"\{p\}", _POSSESSIVE).replace(r"\{s\}", _SUBJECT)
            out.append((cue, re.compile(r"\b" + body + r"\b", re.IGNORECASE)))
    return out


def described_cues(sentence: str) -> list[str]:
    """The cues whose phrases occur in ``sentence`` (sorted, each once).

    >>> described_cues("Her eyebrows are lowered and drawn together, showing sadness.")
    ['brow_lower']
    >>> described_cues("Overall, she seems sad.")
    []
    """
    return sorted({cue for cue, pat in _patterns() if pat.search(sentence or "")})


def clip_cues(example: dict) -> set[str] | None:
    """Every cue the generator put in the clip (visual and audio, distractors included); None without a
    cue list (real data)."""
    raw = example.get("cues")
    cues = json.loads(raw) if isinstance(raw, str) else (raw or {})
    found = {c["cue"] for m in ("visual", "audio") for c in cues.get(m, []) if isinstance(c, dict) and "cue" in c}
    return found or None


def cue_marks(sentence: str, present: set[str] | None) -> dict:
    """``{"cues", "absent"}`` of one sentence: the cues it describes, and those the clip does not show
    (``None`` when the clip has no cue list)."""
    cues = described_cues(sentence)
    return {"cues": cues, "absent": None if present is None else [c for c in cues if c not in present]}


def sentence_grounding(think: str | None, present: set[str] | None) -> list[dict]:
    """Per sentence of the rationale (the paper's splitter): ``{"text", "cues", "absent"}``."""
    return [{"text": s, **cue_marks(s, present)} for s in split_sentences(think)]


def grounding_metrics(thinks: Sequence[str | None], examples: Sequence[dict], judged: Sequence[str | None]) -> dict:
    """Over the rationales of clips that have a cue list:

    - ``grounded_cue_rate``: described cues the clip shows / all described cues;
    - ``absent_cue_sentence_share``: sentences that describe at least one absent cue / all sentences;
    - ``EEA_grounded``: EEA over the rationales none of whose sentences describes an absent cue
      (``n_grounded`` of them), next to ``EEA`` over the same clips.
    ``None`` values when no clip has a cue list or nothing was described.
    """
    described = grounded = sentences = absent_sentences = 0
    eea_all, eea_grounded = [], []
    for think, ex, j in zip(thinks, examples, judged):
        present = clip_cues(ex)
        if present is None:
            continue
        per = sentence_grounding(think, present)
        sentences += len(per)
        for s in per:
            described += len(s["cues"])
            grounded += len(s["cues"]) - len(s["absent"])
            absent_sentences += bool(s["absent"])
        hit = j == ex["label"]
        eea_all.append(hit)
        if not any(s["absent"] for s in per):
            eea_grounded.append(hit)
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    return {"grounded_cue_rate": round(grounded / described, 4) if described else None,
            "absent_cue_sentence_share": round(absent_sentences / sentences, 4) if sentences else None,
            "EEA": mean(eea_all), "EEA_grounded": mean(eea_grounded), "n_grounded": len(eea_grounded),
            "n": len(eea_all), "n_sentences": sentences, "n_described_cues": described}


def pooled_grounding(completions: Sequence[Sequence[str]], examples: Sequence[dict],
                     judged: Sequence[Sequence[str | None]]) -> dict[str, Any]:
    """:func:`grounding_metrics` over every decode (seeds pooled, as the headline metrics)."""
    from erv_lab.rewards import parse_completion

    thinks = [parse_completion(c)[0] for cs in completions for c in cs]
    exs = [ex for _ in completions for ex in examples]
    return grounding_metrics(thinks, exs, [j for js in judged for j in js])
