"""The three GRPO rewards of the paper (format, accuracy, explanation) as TRL reward functions.

Each reward is ``f(completions, **kwargs) -> list[float]`` as TRL expects; ground truth comes from the
``solution`` column, the label space from the ``dataset`` column (default ``"dfew"``). In training, TRL also
passes ``log_extra``: the accuracy reward adds the ``clip_id`` and ``solution`` columns and each explanation reward
its verifier labels per sentence (``<name>/labels``) to TRL's completion logs (``completions/*.parquet``, the
trackio/wandb table; :data:`LOGGED_COLUMNS`). Semantics follow
``docs/METHOD.md`` exactly; two opt-in deviations (strict format, anti-stuffing) are documented in
``docs/REWARDS.md``. This module trains nothing and knows no model: the explanation reward takes any
object with ``predict_proba(list[str]) -> (n, 28)``. Used by ``erv_lab.train``, ``evaluate`` and the widgets.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import numpy as np

from erv_lab.labels import (GOEMOTIONS, NEUTRAL_INDEX, VOCABULARIES, label_set, normalize_label, split_sentences,
                            to_goemotions)

# The paper's (lazy, DOTALL) patterns.
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
# Strict format (deviation): the same shape, and the two bodies may hold no tag of either kind.
_STRICT = re.compile(r"<think>(.*?)</think>\s*<answer>(.*?)</answer>", re.DOTALL)
_ANY_TAG = re.compile(r"<\s*/?\s*(think|answer)\s*>", re.IGNORECASE)

VARIANTS = ("sentence", "sentence_with_neutral", "paragraph", "consistency")
LOGGED_COLUMNS = ("clip_id", "solution")  # what accuracy_reward adds to TRL's completion logs (log_extra)
PARAGRAPH_THRESHOLD = 0.5  # the paragraph-level variant's tau (docs/METHOD.md)


# --------------------------------------------------------------------------- parsing
def completion_text(completion: Any) -> str:
    """Text of one TRL completion: a plain string, or conversational ``[{"role", "content"}, ...]``.

    Contents of every message are joined; multimodal content parts contribute their ``"text"``; ``None``
    anywhere becomes ``""``. Never raises.
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return completion_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        parts = []
        for item in completion:
            if isinstance(item, dict) and "content" not in item and item.get("type") == "text":
                parts.append(completion_text(item.get("text")))
            else:
                parts.append(completion_text(item))
        return "".join(parts)
    return str(completion)


def parse_completion(text: Any) -> tuple[str | None, str | None]:
    """``(think, answer)``: the stripped bodies of the first ``<think>…</think>`` and the first
    ``<answer>…</answer>`` (the paper's lazy patterns, dot matches newlines); None when a pair is absent.

    >>> parse_completion("<think> She smiles. </think>\\n<answer> Happy </answer>")
    ('She smiles.', 'Happy')
    >>> parse_completion("no tags"), parse_completion("<think></think>")
    ((None, None), ('', None))
    """
    text = completion_text(text)
    think, answer = _THINK.search(text), _ANSWER.search(text)
    return (think.group(1).strip() if think else None, answer.group(1).strip() if answer else None)


def _solution_label(solution: Any, dataset: str) -> str:
    """Ground truth from the ``solution`` column: ``"sad"`` or ``"<answer> sad </answer>"``."""
    raw = completion_text(solution)
    _, inner = parse_completion(raw)
    label = normalize_label(inner if inner is not None else raw, dataset)
    if label is None:
        raise ValueError(f"solution {solution!r} is not a {dataset} label; valid: {VOCABULARIES[dataset]}")
    return label


def _column(values: Any, n: int, default: Any) -> list:
    """A kwarg column aligned with the completions (a scalar is broadcast; None -> default)."""
    if values is None or isinstance(values, str):
        return [values if values is not None else default] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"column has {len(values)} values for {n} completions")
    return [default if v is None else v for v in values]


def _datasets(dataset: Any, n: int) -> list[str]:
    out = [str(d).lower() for d in _column(dataset, n, "dfew")]
    for d in out:
        if d not in VOCABULARIES:
            raise ValueError(f"unknown dataset {d!r}; valid: {sorted(VOCABULARIES)}")
    return out


# --------------------------------------------------------------------------- format and accuracy
def is_well_formatted(text: Any, strict: bool = False) -> bool:
    """The paper's check: the whole text is ``<think>…</think>``, optional whitespace, ``<answer>…</answer>``.

    ``strict=True`` (deviation) also requires exactly one tag of each kind: no ``<think>``/``<answer>``
    tag (opening or closing, any case) inside either body. The paper's lazy pattern accepts
    ``<think>x</think><answer> sad </think><answer> happy </answer>``; the strict one does not.
    """
    text = completion_text(text)
    if not strict:
        return _FORMAT.fullmatch(text) is not None
    match = _STRICT.fullmatch(text)
    return match is not None and not any(_ANY_TAG.search(body) for body in match.groups())


def format_reward(completions: Sequence[Any], strict: bool = False, **kwargs: Any) -> list[float]:
    """R_format = 1 if the completion is exactly ``<think>…</think>\\s*<answer>…</answer>``, else 0.

    >>> format_reward(["<think> a </think>\\n<answer> sad </answer>", "<answer> sad </answer>"])
    [1.0, 0.0]
    """
    return [float(is_well_formatted(c, strict)) for c in completions]


def accuracy_reward(completions: Sequence[Any], solution: Sequence[Any], dataset: Any = None,
                    **kwargs: Any) -> list[float]:
    """R_acc = 1 if the normalised ``<answer>`` text equals the ground truth, else 0 (no answer tag: 0).

    Normalisation is ``labels.normalize_label``: case, surrounding whitespace/punctuation, synonyms.

    >>> accuracy_reward(["<answer> Sadness. </answer>", "sad"], ["sad", "<answer>sad</answer>"])
    [1.0, 0.0]

    Called by TRL's GRPOTrainer, it also hands each completion's ``clip_id`` and ``solution`` (the target) to
    ``log_extra``, so that TRL's completion logs say which clip a row is for.
    """
    n = len(completions)
    log_extra = kwargs.get("log_extra")
    if log_extra is not None:
        log_extra("clip_id", [None if c is None else str(c) for c in _column(kwargs.get("clip_id"), n, None)])
        log_extra("solution", [None if y is None else completion_text(y) for y in _column(solution, n, None)])
    datasets = _datasets(dataset, n)
    truths = [_solution_label(s, d) for s, d in zip(_column(solution, n, None), datasets)]
    out = []
    for c, y, d in zip(completions, truths, datasets):
        _, answer = parse_completion(c)
        out.append(float(answer is not None and normalize_label(answer, d) == y))
    return out


# --------------------------------------------------------------------------- anti-stuffing guard
# Words that make a sentence a "bare list of emotion words" (deviation; see docs/REWARDS.md).
EMOTION_WORDS = frozenset(
    set(GOEMOTIONS)
    | {w for vocab in VOCABULARIES.values() for w in vocab}
    | {
        "happy", "happiness", "sad", "sadness", "angry", "anger", "anxious", "helpless", "disappointed",
        "contemptuous", "joyful", "joyous", "scared", "afraid", "fearful", "frightened", "terrified",
        "surprised", "shocked", "astonished", "disgusted", "annoyed", "furious", "mad", "upset", "calm",
        "nervous", "worried", "grieving", "cheerful", "glad", "unhappy", "sorrow", "sorrowful", "rage",
        "smile", "smiles", "smiling", "frown", "frowns", "frowning", "tears", "tear", "cry", "cries",
        "crying", "laugh", "laughs", "laughing", "scowl", "scowls", "grin", "grins", "emotion", "emotions",
        "positive", "negative", "feeling", "feelings",
    }
)
_FILLER = frozenset({"and", "or", "very", "so", "really", "too", "also", "but", "is", "a", "the", "of"})
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


def stuffing_reason(sentence: str, earlier: Sequence[str] = ()) -> str | None:
    """Why a sentence earns no credit under the anti-stuffing guard, or None when it is ordinary prose.

    - ``"repeat"``: equal to an earlier sentence of the same rationale (case, punctuation and spacing ignored);
    - ``"keywords"``: every word is an emotion word, an emotion cue or a filler word (or there is no word);
    - ``"repetition"``: 4+ words of which one word makes up at least half (``"sad face sad sad"``).

    >>> stuffing_reason("Sad sad, sad!"), stuffing_reason("Her brows drop and her lips tremble.")
    ('keywords', None)
    """
    words = [w.lower() for w in _WORD.findall(sentence)]
    key = " ".join(words)
    if any(key == " ".join(w.lower() for w in _WORD.findall(e)) for e in earlier):
        return "repeat"
    if all(w in EMOTION_WORDS or w in _FILLER for w in words):
        return "keywords"
    if len(words) >= 4 and max(words.count(w) for w in set(words)) * 2 >= len(words):
        return "repetition"
    return None


# --------------------------------------------------------------------------- explanation reward
def _as_matrix(probs: Any, n: int) -> np.ndarray:
    if hasattr(probs, "detach"):  # a torch tensor
        probs = probs.detach().cpu().numpy()
    arr = np.nan_to_num(np.asarray(probs, dtype=np.float64), nan=0.0)
    if arr.shape != (n, len(GOEMOTIONS)):
        raise ValueError(f"verifier.predict_proba returned shape {arr.shape}, expected ({n}, 28)")
    return arr


class ExplanationReward:
    """The ERV reward: how many rationale sentences the verifier labels with the target emotion.

    For a completion with think text T split into sentences s_1..s_n (``labels.split_sentences``),
    S_i = ``label_set(p_i, tau, top_k)``, k = GoEmotions index of the target y, m = #{i : k in S_i},
    n_nn = #{i : S_i != {neutral}} ({neutral, X} counts as non-neutral)::

        R = 0             if n = 0
        R = m / n         if y is neutral
        R = m / n_nn      otherwise (0 when n_nn = 0)

    Variants: ``"sentence"`` (the paper, default; target = ground truth), ``"sentence_with_neutral"``
    (denominator always n), ``"consistency"`` (target = the model's own normalised answer; 0 without one),
    ``"paragraph"`` (the whole T as one text, tau 0.5 by default, R = 1 if k in its set). With
    ``anti_stuffing=True`` (deviation) a repeated or bare-keyword sentence is never credited and always
    counts in the denominator. The verifier is called once per batch with every sentence of every
    completion. Range [0, 1].

    >>> class Fake:  # sentence 1 -> {sadness}, sentence 2 -> {neutral}, sentence 3 -> {joy}
    ...     def predict_proba(self, texts):
    ...         rows = {"Tears.": 25, "She sits.": 27, "She smiles.": 17}
    ...         return np.eye(28)[[rows[t] for t in texts]]
    >>> ExplanationReward(Fake())(["<think>Tears. She sits. She smiles.</think>"], solution=["sad"])
    [0.5]
    """

    def __init__(self, verifier: Any, threshold: float | None = None, top_k: int = 2,
                 variant: str = "sentence", anti_stuffing: bool = False, name: str = "explanation"):
        if variant not in VARIANTS:
            raise ValueError(f"unknown explanation variant {variant!r}; valid: {', '.join(VARIANTS)}")
        if not hasattr(verifier, "predict_proba"):
            raise TypeError("verifier needs a predict_proba(list[str]) -> (n, 28) method")
        self.verifier = verifier
        self.variant = variant
        self.threshold = float(threshold if threshold is not None
                               else PARAGRAPH_THRESHOLD if variant == "paragraph" else 0.1)
        self.top_k = int(top_k)
        self.anti_stuffing = bool(anti_stuffing)
        self.__name__ = name  # TRL logs rewards/<__name__>/mean

    def __repr__(self) -> str:
        return (f"ExplanationReward(variant={self.variant!r}, threshold={self.threshold}, top_k={self.top_k}, "
                f"anti_stuffing={self.anti_stuffing})")

    def __call__(self, completions: Sequence[Any], solution: Sequence[Any] | None = None,
                 dataset: Any = None, log_extra: Callable | None = None, **kwargs: Any) -> list[float]:
        details = self.details(completions, solution, dataset)
        if log_extra is not None:  # TRL's GRPOTrainer: one column in its completion logs
            log_extra(f"{self.__name__}/labels", [sentence_labels_text(d) for d in details])
        return [d["reward"] for d in details]

    def details(self, completions: Sequence[Any], solution: Sequence[Any] | None = None,
                dataset: Any = None) -> list[dict]:
        """Per-completion breakdown: ``reward``, ``target``, ``target_index``, ``n``, ``n_nn``, ``m`` and
        ``sentences`` -- one dict per scored text with ``text``, ``labels`` (GoEmotions indices, most
        probable first), ``names``, ``probs`` (of those labels), ``target_prob``, ``neutral_only``,
        ``matched`` (target in the set), ``stuffing`` (guard reason or None), ``credited``, ``counted``.
        """
        n = len(completions)
        datasets = _datasets(dataset, n)
        if self.variant == "consistency":
            targets = [normalize_label(parse_completion(c)[1], d) for c, d in zip(completions, datasets)]
        else:
            if solution is None:
                raise ValueError(f"the {self.variant!r} explanation reward needs the solution column")
            targets = [_solution_label(s, d) for s, d in zip(_column(solution, n, None), datasets)]

        # Texts to score: every sentence (or the whole rationale for "paragraph") of every completion.
        units: list[list[str]] = []
        for c in completions:
            think = parse_completion(c)[0] or ""
            units.append(([think] if think else []) if self.variant == "paragraph" else split_sentences(think))
        flat = [s for u in units for s in u]
        probs = _as_matrix(self.verifier.predict_proba(flat), len(flat)) if flat else np.zeros((0, 28))

        out, row = [], 0
        for sentences, target, ds in zip(units, targets, datasets):
            k = to_goemotions(target, ds) if target is not None else None
            rows = probs[row:row + len(sentences)]
            row += len(sentences)
            out.append(self._score(sentences, rows, target, k))
        return out

    def _score(self, sentences: list[str], rows: np.ndarray, target: str | None, k: int | None) -> dict:
        items, earlier = [], []
        for text, p in zip(sentences, rows):
            labels = label_set(p, self.threshold, self.top_k)
            neutral_only = labels == [NEUTRAL_INDEX]
            matched = k is not None and k in labels
            guarded = self.anti_stuffing and self.variant != "paragraph"  # the guard is per sentence
            reason = stuffing_reason(text, earlier) if guarded else None
            earlier.append(text)
            items.append({
                "text": text, "labels": labels, "names": [GOEMOTIONS[c] for c in labels],
                "probs": [float(p[c]) for c in labels],
                "target_prob": float(p[k]) if k is not None else None,
                "neutral_only": neutral_only, "matched": matched, "stuffing": reason,
                "credited": matched and reason is None,
            })
        n = len(items)
        m = sum(it["credited"] for it in items)
        if self.variant == "paragraph":
            for it in items:
                it["counted"] = True
            reward = float(m > 0)
            n_nn = n
        else:
            neutral_target = k == NEUTRAL_INDEX
            for it in items:
                it["counted"] = (self.variant == "sentence_with_neutral" or neutral_target
                                 or not it["neutral_only"] or it["stuffing"] is not None)
            n_nn = sum(it["counted"] for it in items)
            reward = m / n_nn if (k is not None and n_nn > 0) else 0.0
        return {"reward": float(reward), "target": target, "target_index": k, "n": n, "n_nn": n_nn, "m": m,
                "sentences": items}


def sentence_labels_text(detail: dict) -> list[str]:
    """One string per scored sentence of an :meth:`ExplanationReward.details` entry: its verifier label set
    (``"sadness+neutral"``), ``" ✓"`` when it is credited with the target, ``" (stuffing: keywords)"`` when the
    anti-stuffing guard refused it. The ``<name>/labels`` column of TRL's completion logs.

    >>> sentence_labels_text({"sentences": [{"names": ["sadness"], "credited": True, "stuffing": None},
    ...                                     {"names": ["neutral"], "credited": False, "stuffing": "repeat"}]})
    ['sadness ✓', 'neutral (stuffing: repeat)']
    """
    return ["+".join(it["names"]) + (" ✓" if it["credited"] else "")
            + (f" (stuffing: {it['stuffing']})" if it["stuffing"] else "") for it in detail["sentences"]]


# --------------------------------------------------------------------------- registry
def grounding_reward(completions: Sequence[Any], cues: Any = None, **kwargs: Any) -> list[float]:
    """Beyond the paper (an ablation, off by default): the share of ``<think>`` sentences that describe at least
    one cue the clip has and none it lacks (``erv_lab.grounding``; the synthetic clips record every cue they
    show). A sentence that describes no cue earns nothing, so the reward asks for evidence, not for an emotion
    word; no rationale earns 0. Real DFEW/MAFW have no cue list: the reward refuses them.

    >>> cues = '{"visual": [{"cue": "smile"}], "audio": []}'
    >>> grounding_reward(["<think>Her lips curve upward. She is happy.</think>"
    ...                   "<answer>happy</answer>"], cues=[cues])
    [0.5]
    """
    from erv_lab.grounding import clip_cues, sentence_grounding

    n = len(completions)
    rows = _column(cues, n, None)
    out = []
    for completion, raw in zip(completions, rows):
        present = clip_cues({"cues": raw}) if raw is not None else None
        if present is None:
            raise ValueError("the grounding reward needs each clip's cue list (the synthetic clips' `cues` "
                             "column); real DFEW/MAFW clips have none: leave `grounding` out of reward.rewards")
        think, _ = parse_completion(completion_text(completion))
        per = sentence_grounding(think, present)
        out.append(sum(bool(s["cues"]) and not s["absent"] for s in per) / len(per) if per else 0.0)
    return out


class NamedReward:
    """A module-level reward function with options bound and a stable ``__name__`` (picklable)."""

    def __init__(self, func: Callable[..., list[float]], name: str, **options: Any):
        self.func, self.options, self.__name__ = func, options, name

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return self.func(completions, **{**kwargs, **self.options})

    def __repr__(self) -> str:
        return f"NamedReward({self.__name__!r}, {self.func.__name__}, {self.options})"


def _make_format(verifier: Any = None, strict_format: bool = False, **_: Any) -> NamedReward:
    return NamedReward(format_reward, "format", strict=bool(strict_format))


def _make_accuracy(verifier: Any = None, **_: Any) -> NamedReward:
    return NamedReward(accuracy_reward, "accuracy")


def _make_grounding(verifier: Any = None, **_: Any) -> NamedReward:
    return NamedReward(grounding_reward, "grounding")


def _explanation_factory(variant: str | None, name: str) -> Callable[..., ExplanationReward]:
    def make(verifier: Any = None, variant_: str = "sentence", threshold: float | None = None, top_k: int = 2,
             anti_stuffing: bool = False, **_: Any) -> ExplanationReward:
        if verifier is None:
            raise ValueError(f"reward {name!r} needs a verifier (an object with predict_proba)")
        v = variant or variant_
        tau = None if v == "paragraph" else threshold  # the paragraph variant keeps the paper's tau 0.5
        return ExplanationReward(verifier, tau, top_k, v, anti_stuffing, name=name)
    return make


REWARDS: dict[str, Callable[..., Any]] = {
    "format": _make_format,
    "accuracy": _make_accuracy,
    "explanation": _explanation_factory(None, "explanation"),  # variant from reward.variant
    "explanation_with_neutral": _explanation_factory("sentence_with_neutral", "explanation_with_neutral"),
    "explanation_paragraph": _explanation_factory("paragraph", "explanation_paragraph"),
    "explanation_consistency": _explanation_factory("consistency", "explanation_consistency"),
    "grounding": _make_grounding,  # beyond the paper: synthetic clips only (issue 22's ablation arm)
}


def build_reward_funcs(reward_cfg: Any, verifier: Any = None, threshold: float | None = None,
                       top_k: int | None = None) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """``(reward_funcs, reward_weights)`` for ``trl.GRPOTrainer`` / ``GRPOConfig`` from ``cfg.reward``.

    ``reward_cfg`` is a ``RewardConfig`` or a whole ``Config`` (then tau and top-k come from
    ``cfg.verifier`` unless given). Unknown names raise an error listing the valid ones.
    """
    if hasattr(reward_cfg, "reward") and hasattr(reward_cfg, "verifier"):  # a whole Config
        threshold = reward_cfg.verifier.threshold if threshold is None else threshold
        top_k = reward_cfg.verifier.top_k if top_k is None else top_k
        reward_cfg = reward_cfg.reward
    names, weights = list(reward_cfg.rewards), [float(w) for w in reward_cfg.weights]
    if len(names) != len(weights):
        raise ValueError("reward.weights needs one weight per reward in reward.rewards")
    funcs = []
    for name in names:
        if name not in REWARDS:
            raise ValueError(f"unknown reward {name!r}; valid: {', '.join(sorted(REWARDS))}")
        funcs.append(REWARDS[name](
            verifier=verifier, variant_=getattr(reward_cfg, "variant", "sentence"),
            threshold=threshold, top_k=2 if top_k is None else top_k,
            strict_format=getattr(reward_cfg, "strict_format", False),
            anti_stuffing=getattr(reward_cfg, "anti_stuffing", False)))
    return funcs, weights
