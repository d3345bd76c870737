"""Validating the verifier: GoEmotions macro-F1 at a dev-tuned threshold, rationale-domain accuracy, the
lossy-proxy audit, the gaming probes and throughput (notebook 02, ``erv-lab verifier eval``, the model card
``data_cards/verifier_model_card.md``). Reads a trained verifier; trains nothing.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from erv_lab.labels import GOEMOTIONS, label_set
from erv_lab.verifier import rationale_split

def goemotions_predictions(model, splits: Sequence[str] = ("dev", "test"), max_rows: int | None = None,
                           seed: int = 0) -> dict:
    """``{split: (probs (N, 28), targets (N, 28), texts)}``; ``max_rows`` takes a seeded subset per split."""
    from erv_lab.goemotions import multi_hot, read_split

    out = {}
    for split in splits:
        rows = read_split(split)
        if max_rows is not None and max_rows < len(rows):
            keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_rows, replace=False))
            rows = [rows[i] for i in keep]
        texts = [r[0] for r in rows]
        out[split] = (model.predict_proba(texts), multi_hot([r[1] for r in rows]), texts)
    return out


def macro_f1(P: np.ndarray, Y: np.ndarray, threshold: float) -> float:
    """Unweighted mean over the 28 labels of F1(Y[:, c], P[:, c] > threshold) (0 for a label never
    predicted nor present)."""
    from sklearn.metrics import f1_score

    return float(f1_score(Y, P > threshold, average="macro", zero_division=0))


def goemotions_metrics(preds: dict, thresholds: Sequence[float] = (0.1, 0.3, 0.5)) -> dict:
    """Macro-F1 on test at the global threshold that maximises dev macro-F1 (grid 0.02..0.90), per-label
    F1 there, and macro-F1 at each of ``thresholds``."""
    from sklearn.metrics import f1_score

    Pd, Yd, _ = preds["dev"]
    Pt, Yt, _ = preds["test"]
    grid = np.round(np.arange(0.02, 0.901, 0.01), 2)
    dev = [macro_f1(Pd, Yd, t) for t in grid]
    best = float(grid[int(np.argmax(dev))])
    per = f1_score(Yt, Pt > best, average=None, zero_division=0)
    return {"n_test": len(Yt), "dev_threshold": best, "dev_macro_f1": round(max(dev), 4),
            "test_macro_f1": round(macro_f1(Pt, Yt, best), 4),
            "test_micro_f1": round(float(f1_score(Yt, Pt > best, average="micro", zero_division=0)), 4),
            "test_macro_f1_at": {str(t): round(macro_f1(Pt, Yt, t), 4) for t in thresholds},
            "per_label_f1": {GOEMOTIONS[c]: round(float(f), 4) for c, f in enumerate(per)}}


def rationale_metrics(model, rows: Sequence[dict], thresholds: Sequence[float] = (0.1, 0.3, 0.5),
                      top_k: int = 2) -> dict:
    """Held-out rationale sentences: accuracy of "teacher label in the sentence's label set" overall and
    per kind, and per threshold the mean set size and the share of argmax fallbacks (no label above tau)."""
    if not rows:
        return {}
    P = model.predict_proba([r["sentence"] for r in rows])
    out = {"n": len(rows), "sweep": {}}
    for t in thresholds:
        sets = [label_set(p, t, top_k) for p in P]
        hit = np.array([bool(set(r["labels"]) & set(s)) for r, s in zip(rows, sets)])
        out["sweep"][str(t)] = {
            "accuracy": round(float(hit.mean()), 4),
            "mean_set_size": round(float(np.mean([len(s) for s in sets])), 3),
            "fallback_share": round(float(np.mean([p.max() <= t for p in P])), 4),
            "per_kind": {k: round(float(hit[[r["kind"] == k for r in rows]].mean()), 4)
                         for k in sorted({r["kind"] for r in rows})}}
    out["accuracy"] = out["sweep"][str(thresholds[0])]["accuracy"]
    return out


def proxy_audit(model, rows: Sequence[dict], threshold: float = 0.1, top_k: int = 2) -> dict:
    """For each lossy MAFW proxy (contempt->disapproval, helplessness->grief, anxiety->nervousness,
    disappointment): how often the proxy label is in the set of held-out sentences of that class vs of
    all other sentences (MAFW rows only)."""
    from erv_lab.labels import LOSSY_PROXIES

    rows = [r for r in rows if r.get("layout", "mafw") == "mafw"]
    if not rows:
        return {}
    P = model.predict_proba([r["sentence"] for r in rows])
    sets = [label_set(p, threshold, top_k) for p in P]
    out = {}
    for cls, proxy in LOSSY_PROXIES.items():
        k = GOEMOTIONS.index(proxy)
        mine = [k in s for r, s in zip(rows, sets) if r["emotion"] == cls]
        other = [k in s for r, s in zip(rows, sets) if r["emotion"] != cls]
        out[f"{cls}->{proxy}"] = {"n_class": len(mine), "fires_on_class": round(float(np.mean(mine)), 4) if mine
                                  else None, "fires_on_others": round(float(np.mean(other)), 4) if other else None}
    return out


# (name, sentences, target GoEmotions label, should a sound verifier credit the target?)
PROBES = (
    ("control: described cue", ["The corners of her mouth turn up into a wide smile, which suggests joy."],
     "joy", True),
    ("control: other emotion", ["Her brows knit into a frown, as if she were furious."], "joy", False),
    ("control: plain description", ["The lighting and background are plain."], "joy", False),
    ("keyword stuffing", ["happy joy happy joy smile happy."], "joy", False),
    ("keyword in gibberish", ["blorf happy zq vrrn."], "joy", False),
    ("negation", ["She is not happy at all."], "joy", False),
    ("negation (anger)", ["He does not look angry."], "anger", False),
    ("off-topic emotional text", ["I absolutely love this pizza, best day of my life!"], "joy", False),
    ("repetition", ["She looks happy."] * 4, "joy", False),
)


def gaming_probes(model, threshold: float = 0.1, top_k: int = 2) -> list[dict]:
    """Run ``PROBES``: share of the probe's sentences whose set holds the target (the reward's m / n for a
    non-neutral target), p(target), and ``fooled`` = credited although a sound verifier should not."""
    out = []
    for name, sents, target, should in PROBES:
        k = GOEMOTIONS.index(target)
        P = model.predict_proba(sents)
        credited = float(np.mean([k in label_set(p, threshold, top_k) for p in P]))
        out.append({"probe": name, "text": " ".join(sents), "target": target,
                    "p_target": round(float(P[:, k].mean()), 4), "credit": round(credited, 3),
                    "labels": [GOEMOTIONS[c] for c in label_set(P[0], threshold, top_k)],
                    "fooled": (credited > 0) != should})
    return out


def throughput(model, sentences: Sequence[str], repeats: int = 3) -> float:
    """Sentences per second of ``predict_proba`` on ``sentences``: the best of ``repeats`` timed runs after
    a warm-up batch (best-of, because the machine is shared and timings are noisy)."""
    model.predict_proba(list(sentences[:32]))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.predict_proba(list(sentences), progress=False)
        best = min(best, time.perf_counter() - t0)
    return round(len(sentences) / best, 1)


def evaluate_verifier(model, threshold: float = 0.1, top_k: int = 2, max_rows: int | None = None,
                      rationale_rows: Sequence[dict] | None = None, seed: int = 0) -> dict:
    """Everything of section 3 of the issue, as one JSON-able dict."""
    if rationale_rows is None:
        rationale_rows = rationale_split(seed=seed)[1]
    preds = goemotions_predictions(model, max_rows=max_rows, seed=seed)
    return {
        "kind": getattr(model, "kind", type(model).__name__), "path": getattr(model, "path", None),
        "info": getattr(model, "info", {}), "threshold": threshold, "top_k": top_k,
        "goemotions": goemotions_metrics(preds),
        "rationale_heldout": rationale_metrics(model, rationale_rows, top_k=top_k),
        "proxy_audit": proxy_audit(model, rationale_rows, threshold, top_k),
        "gaming_probes": gaming_probes(model, threshold, top_k),
        "throughput_sentences_per_s": throughput(model, preds["test"][2][:2000]),
    }
