"""Label spaces of the paper: DFEW (7), MAFW (11), GoEmotions (28), and the map between them.

Also the two text primitives that the verifier, the rewards and the widgets share: the paper's sentence
splitter and the per-sentence label set (tau = 0.1, argmax fallback, top-2). Exact semantics:
``docs/METHOD.md``. This module has no model and no I/O.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Sequence

GOEMOTIONS = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity",
    "desire", "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear",
    "gratitude", "grief", "joy", "love", "nervousness", "optimism", "pride", "realization", "relief",
    "remorse", "sadness", "surprise", "neutral",
)
NEUTRAL_INDEX = GOEMOTIONS.index("neutral")  # 27

VOCABULARIES = {
    "dfew": ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"),
    "mafw": ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt",
             "anxiety", "helplessness", "disappointment"),
}

# Synonyms both ways (case-insensitive); each maps a surface form to a canonical stem.
_CANON = {
    "happy": "happy", "happiness": "happy",
    "sad": "sad", "sadness": "sad",
    "angry": "angry", "anger": "angry",
    "neutral": "neutral",
    "surprise": "surprise",
    "disgust": "disgust",
    "fear": "fear",
    "contempt": "contempt", "contemptuous": "contempt",
    "anxiety": "anxiety", "anxious": "anxiety",
    "helplessness": "helplessness", "helpless": "helplessness",
    "disappointment": "disappointment", "disappointed": "disappointment",
}

# Dataset label -> GoEmotions index (the paper's map; the last four are lossy proxies).
_GOEMOTIONS_INDEX = {
    "happy": 17, "angry": 2, "disgust": 11, "fear": 14, "sad": 25, "surprise": 26, "neutral": 27,
    "anxiety": 19, "helplessness": 16, "disappointment": 9, "contempt": 10,
}
LOSSY_PROXIES = {"contempt": "disapproval", "helplessness": "grief", "anxiety": "nervousness",
                 "disappointment": "disappointment"}

_STRIP = re.compile(r"^[\W_]+|[\W_]+$", re.UNICODE)


def vocabulary(dataset: str | None = "dfew") -> tuple[str, ...]:
    """The label list of ``dataset`` (``"dfew"`` when None)."""
    key = (dataset or "dfew").lower()
    if key not in VOCABULARIES:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {sorted(VOCABULARIES)}")
    return VOCABULARIES[key]


def normalize_label(text: object, dataset: str | None = "dfew") -> str | None:
    """Map a free-text label to ``dataset``'s vocabulary, or None when it is outside it.

    Case-insensitive, strips whitespace and surrounding punctuation, accepts synonyms both ways
    (``"Anger."`` -> ``"angry"`` for DFEW, ``"angry"`` -> ``"anger"`` for MAFW).

    >>> normalize_label(" Happiness! ", "dfew"), normalize_label("angry", "mafw"), normalize_label("joy")
    ('happy', 'anger', None)
    """
    if not isinstance(text, str):
        return None
    word = _STRIP.sub("", unicodedata.normalize("NFKC", text).strip().lower())
    stem = _CANON.get(word)
    if stem is None:
        return None
    for label in vocabulary(dataset):
        if _CANON[label] == stem:
            return label
    return None


def to_goemotions(label: str, dataset: str | None = "dfew") -> int:
    """GoEmotions index of a dataset label (the paper's map). Raises on labels outside the vocabulary."""
    norm = normalize_label(label, dataset)
    if norm is None:
        raise ValueError(f"{label!r} is not a {dataset or 'dfew'} label; valid: {vocabulary(dataset)}")
    return _GOEMOTIONS_INDEX[_CANON[norm]]


def from_goemotions(goemotion: int | str, dataset: str | None = "dfew") -> str | None:
    """The ``dataset`` label the paper maps onto GoEmotions label ``goemotion`` (index or name), e.g. ``joy`` ->
    ``happy`` for DFEW, ``happiness`` for MAFW; ``None`` when no label of that dataset maps there.

    >>> from_goemotions("joy"), from_goemotions(17, "mafw"), from_goemotions("love")
    ('happy', 'happiness', None)
    """
    k = GOEMOTIONS.index(goemotion) if isinstance(goemotion, str) else int(goemotion)
    return next((lab for lab in vocabulary(dataset) if to_goemotions(lab, dataset) == k), None)


def _split_points(text: str) -> Iterable[int]:
    in_quote = False
    for i, ch in enumerate(text):
        if ch == '"':
            in_quote = not in_quote
        elif ch.isspace() and not in_quote and i > 0 and text[i - 1] in ".!?":
            yield i


def split_sentences(text: str | None) -> list[str]:
    """The paper's splitter: break at whitespace that follows ``.``, ``!`` or ``?`` -- never inside a pair
    of double quotes -- and drop empty pieces. An unclosed quote keeps the rest of the text together, and
whitespace after a closing quote is not a break (the character before it is ``"``, not ``.``).

    >>> split_sentences('Her brows drop. She says "no. never." Then she smiles!  ')
    ['Her brows drop.', 'She says "no. never." Then she smiles!']
    """
    if not text:
        return []
    pieces, start = [], 0
    for cut in _split_points(text):
        pieces.append(text[start:cut])
        start = cut + 1
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip()]


def label_set(probs: Sequence[float], threshold: float = 0.1, top_k: int = 2) -> list[int]:
    """Labels of one sentence: ``{c : p[c] > threshold}``; the argmax when empty; the ``top_k`` most
    probable when larger. Returned most probable first, so ``1 <= len <= top_k``.

    >>> label_set([0.05] * 27 + [0.9]), label_set([0.0] * 28)
    ([27], [0])
    """
    order = sorted(range(len(probs)), key=lambda c: (-float(probs[c]), c))
    chosen = [c for c in order if float(probs[c]) > threshold]
    if not chosen:
        return order[:1]
    return chosen[:top_k]
