"""Recognition (WAR, UAR) and explanation-consistency (EEA, FCR, EPC) metrics, with bootstrap intervals.

Inputs are already-extracted strings: predicted answers (``None`` when a completion had no answer tag),
judged rationale emotions and ground-truth labels; all are normalised with ``labels.normalize_label``.
Semantics follow ``docs/METHOD.md``. This module decodes nothing and runs no judge: ``erv_lab.evaluate``
does that and calls these functions. Results tables: notebook 06 (consistency).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence

import numpy as np

from erv_lab.labels import normalize_label, vocabulary


@functools.lru_cache(maxsize=65536)
def _norm_cached(text: str, dataset: str) -> str | None:
    return normalize_label(text, dataset)


def _norm(text: Any, dataset: str) -> str | None:
    return _norm_cached(text, dataset) if isinstance(text, str) else None


def _truths(labels: Sequence[Any], dataset: str) -> list[str]:
    out = [_norm(y, dataset) for y in labels]
    bad = [y for y, n in zip(labels, out) if n is None]
    if bad:
        raise ValueError(f"{len(bad)} ground-truth label(s) outside {dataset}: {bad[:5]}; "
                         f"valid: {vocabulary(dataset)}")
    return out


def _check_lengths(**columns: Sequence[Any]) -> int:
    sizes = {k: len(v) for k, v in columns.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"columns differ in length: {sizes}")
    return next(iter(sizes.values()))


def recognition_metrics(predictions: Sequence[str | None], labels: Sequence[str],
                        dataset: str = "dfew") -> dict:
    """WAR = #{P = Y} / N; UAR = mean over the classes present in ``labels`` of recall_c = #{P = Y = c} / #{Y = c}.

    Predictions that are None or outside the vocabulary count as wrong. Fractions in [0, 1]; NaN when N = 0.
    UAR equals scikit-learn's ``balanced_accuracy_score`` on the normalised labels.

    >>> m = recognition_metrics(["happy", "Sadness", None, "sad"], ["happy", "sad", "sad", "angry"])
    >>> m["WAR"], round(m["UAR"], 4), m["per_class_recall"]
    (0.5, 0.5, {'angry': 0.0, 'happy': 1.0, 'sad': 0.5})
    """
    n = _check_lengths(predictions=predictions, labels=labels)
    truth = _truths(labels, dataset)
    pred = [_norm(p, dataset) for p in predictions]
    correct = [p == y for p, y in zip(pred, truth)]
    recall = {}
    for c in sorted(set(truth)):
        hits = [ok for ok, y in zip(correct, truth) if y == c]
        recall[c] = sum(hits) / len(hits)
    return {
        "WAR": sum(correct) / n if n else math.nan,
        "UAR": sum(recall.values()) / len(recall) if recall else math.nan,
        "per_class_recall": recall,
        "n": n,
    }


def consistency_metrics(predictions: Sequence[str | None], judged: Sequence[str | None], labels: Sequence[str],
                        dataset: str = "dfew") -> dict:
    """Agreement between the prediction P, the judged rationale emotion J and the truth Y over N clips.

    - EPC = #{P = J} / N, EEA = #{J = Y} / N, FCR = #{P = Y and J = Y} / N = TT / N,
      FCR_given_correct = TT / (TT + TF) (NaN when no prediction is correct);
    - TT, TF, FT, FF: counts of (P correct, J correct) = (T, T), (T, F), (F, T), (F, F);
    - a judged label outside the vocabulary (or None) becomes ``neutral``; ``judge_outside`` counts them;
    - a prediction of None (no answer tag: ``unparseable``) makes the clip P wrong, J wrong (FF) and
      inconsistent whatever the judge said; a prediction *string* outside the vocabulary is a wrong
      prediction (never equal to J) while J is still scored.

    >>> m = consistency_metrics(["happy", "sad", None, "angry"], ["happy", "happy", "sad", "fear"],
    ...                         ["happy", "sad", "sad", "fear"])
    >>> m["EPC"], m["EEA"], m["FCR"], (m["TT"], m["TF"], m["FT"], m["FF"])
    (0.25, 0.5, 0.25, (1, 1, 1, 1))
    """
    n = _check_lengths(predictions=predictions, judged=judged, labels=labels)
    truth = _truths(labels, dataset)
    table = {"TT": 0, "TF": 0, "FT": 0, "FF": 0}
    consistent = unparseable = outside = 0
    for p_raw, j_raw, y in zip(predictions, judged, truth):
        j = _norm(j_raw, dataset)
        if j is None:
            outside += 1
            j = "neutral"
        if p_raw is None:
            unparseable += 1
            table["FF"] += 1
            continue
        p = _norm(p_raw, dataset)
        consistent += p is not None and p == j
        table[("T" if p == y else "F") + ("T" if j == y else "F")] += 1
    frac = (lambda k: k / n) if n else (lambda k: math.nan)
    tt, tf = table["TT"], table["TF"]
    return {
        "EEA": frac(table["TT"] + table["FT"]),
        "FCR": frac(tt),
        "FCR_given_correct": tt / (tt + tf) if tt + tf else math.nan,
        "EPC": frac(consistent),
        **table,
        "n": n,
        "unparseable": unparseable,
        "judge_outside": outside,
    }


def _scalars(value: Any) -> dict[str, float]:
    """The numeric entries of a metric result (a float, or a flat dict; nested dicts and ``n`` skipped)."""
    if isinstance(value, dict):
        return {k: float(v) for k, v in value.items()
                if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)}
    return {"value": float(value)}


def bootstrap_ci(metric_fn: Callable[..., Any], *columns: Sequence[Any], n_resamples: int = 1000,
                 confidence: float = 0.95, seed: int = 0, **kwargs: Any) -> dict[str, dict[str, float]]:
    """Percentile bootstrap over clips: resample the rows of ``columns`` with replacement ``n_resamples``
    times, recompute ``metric_fn(*columns, **kwargs)`` and take the (1-c)/2 and (1+c)/2 quantiles.

    Returns ``{name: {"value", "low", "high"}}`` for every numeric entry of the metric's result (a plain
    float result is named ``"value"``). Deterministic for a given ``seed``. Counts (TT, n, ...) get
    intervals too; ``n`` is constant.

    >>> ci = bootstrap_ci(recognition_metrics, ["happy", "sad"] * 20, ["happy"] * 40, n_resamples=200)
    >>> ci["WAR"]["value"], 0.3 < ci["WAR"]["low"] < 0.5 < ci["WAR"]["high"] < 0.7
    (0.5, True)
    """
    n = _check_lengths(**{f"column{i}": c for i, c in enumerate(columns)})
    point = _scalars(metric_fn(*columns, **kwargs))
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(n_resamples if n else 0):
        idx = rng.integers(0, n, size=n)
        result = _scalars(metric_fn(*[[c[i] for i in idx] for c in columns], **kwargs))
        for k in samples:
            samples[k].append(result.get(k, math.nan))
    lo_q, hi_q = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    out = {}
    for k, v in point.items():
        arr = np.asarray(samples[k], dtype=float)
        arr = arr[~np.isnan(arr)]
        low, high = (float(np.percentile(arr, lo_q)), float(np.percentile(arr, hi_q))) if arr.size else (
            math.nan, math.nan)
        out[k] = {"value": v, "low": low, "high": high}
    return out
