"""Scoring held-out decodes of the SFT model and both GRPO arms (notebook 06; run by ``erv_lab.stages``).

Given generate functions, decodes every test clip of the fold under two stated protocols -- the paper's
sampling (T = 0.3, top-p 0.9, pooled over ``cfg.eval.seeds``) as the headline, and greedy -- through an on-disk,
resumable cache (``run_dir/eval_cache/``), has each ``<think>`` read by the headline judge and every other
reading, and returns the results dict (per-clip records go to ``run_dir/eval/records.json``). Metrics come from
``erv_lab.metrics`` and ``erv_lab.grounding``. It loads no model, trains nothing and writes no results file:
``erv_lab.stages.ensure_results`` does that, and ``erv_lab.report`` renders them.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from erv_lab.envinfo import machine_summary
from erv_lab.grounding import clip_cues, cue_marks, pooled_grounding
from erv_lab.labels import normalize_label, split_sentences, vocabulary
from erv_lab.metrics import bootstrap_ci, consistency_metrics, recognition_metrics
from erv_lab.rewards import ExplanationReward, accuracy_reward, format_reward, parse_completion

ARMS = ("sft", "baseline", "erv")
HEADLINE_KEYS = ("UAR", "WAR", "EEA", "FCR", "FCR_given_correct", "EPC", "n", "ci")
CI_KEYS = ("UAR", "WAR", "EEA", "FCR", "FCR_given_correct", "EPC")
GenerateFn = Callable[..., list]  # (examples, temperature, top_p, seed, max_new_tokens) -> list[str]


@dataclass(frozen=True)
class Protocol:
    """One decoding protocol: temperature 0 means greedy (then only the first seed is decoded)."""
    name: str
    temperature: float
    top_p: float
    seeds: tuple[int, ...]

    def describe(self) -> str:
        if self.temperature <= 0:
            return "greedy"
        return (f"sampling T={self.temperature:g}, top-p={self.top_p:g}, {len(self.seeds)} samples per clip "
                f"(seeds {list(self.seeds)}), metrics pooled = mean over samples")


def protocols(cfg) -> list[Protocol]:
    """The headline protocol (``cfg.eval`` sampling) and, when ``cfg.eval.greedy``, greedy decoding."""
    e = cfg.eval
    out = [Protocol("sample", float(e.temperature), float(e.top_p), tuple(int(s) for s in e.seeds))]
    if e.greedy:
        out.append(Protocol("greedy", 0.0, 1.0, (0,)))
    return out


# ---------------------------------------------------------------- decoding with a cache
def model_fingerprint(path: str | Path | None) -> str:
    """A short hash of a model folder's weight files (name, size, mtime): a retrained model invalidates caches."""
    if path is None:
        return "unknown"
    files = sorted(p for p in Path(path).glob("*") if p.suffix in (".safetensors", ".bin", ".json"))
    sig = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    return hashlib.sha1(sig.encode()).hexdigest()[:12]


def _batch_seed(seeds: Sequence[int], key: str) -> int:
    """Seed of one batch: stable in (seeds, first row), so a resumed run reuses the same seed per batch."""
    return int(hashlib.sha1(f"{list(seeds)}:{key}".encode()).hexdigest()[:8], 16)


def decode_cached(generate_fn: GenerateFn, examples: Sequence[dict], cache_file: str | Path, *,
                  temperature: float, top_p: float, seeds: Sequence[int] = (0,), max_new_tokens: int = 128,
                  fingerprint: str = "", batch_size: int = 192, desc: str = "decode") -> list[list[str]]:
    """``out[s][i]``: the decode of clip i for the s-th seed, cached in a JSONL file (first line: settings).

    Every (clip, seed) row is one independent draw; rows of all seeds go through ``generate_fn`` in the
    same batches (on CPU a batch of 3 x 56 rows costs about what 56 rows cost), each batch seeded from
    the seeds and its first row. Rows already cached are not decoded again and each finished batch is
    appended at once, so an interrupted evaluation resumes where it stopped. Other settings or another
    model (``fingerprint``) discard the cache.
    """
    from erv_lab.reuse import jsonl_cache

    cache_file = Path(cache_file)
    meta = {"temperature": temperature, "top_p": top_p, "seeds": list(seeds), "max_new_tokens": max_new_tokens,
            "model": fingerprint}
    done: dict[str, str] = jsonl_cache(cache_file, meta, "completion")
    rows = [(f"{ex['clip_id']}|{s}", ex) for s in seeds for ex in examples]
    todo = [(k, ex) for k, ex in rows if k not in done]
    with open(cache_file, "a") as f, tqdm(total=len(rows), initial=len(rows) - len(todo), desc=desc,
                                         unit="decode", leave=False) as bar:
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            texts = generate_fn([ex for _, ex in chunk], temperature=temperature, top_p=top_p,
                                seed=_batch_seed(seeds, chunk[0][0]), max_new_tokens=max_new_tokens)
            for (key, _), text in zip(chunk, texts):
                done[key] = text
                f.write(json.dumps({"key": key, "completion": text}) + "\n")
            f.flush()
            bar.update(len(chunk))
    return [[done[f"{ex['clip_id']}|{s}"] for ex in examples] for s in seeds]


# ---------------------------------------------------------------- judging and scoring
def judge_texts(judge: Any, texts: Sequence[str], dataset: str) -> list[str | None]:
    """One emotion of ``dataset``'s label list per rationale text: ``judge.judge(texts, labels)`` (the
    ``erv_lab.judges`` interface) or a plain callable with the same arguments.
    Empty rationales are not sent to the judge (they read as ``None``, i.e. neutral in the metrics).
    """
    fn = getattr(judge, "judge", None) or judge
    idx = [i for i, t in enumerate(texts) if t and t.strip()]
    out: list[str | None] = [None] * len(texts)
    if idx:
        got = list(fn([texts[i] for i in idx], list(vocabulary(dataset))))
        for i, j in zip(idx, got):
            out[i] = normalize_label(j, dataset) if isinstance(j, str) else None
    return out


def _pooled(metric_fn: Callable[..., dict]) -> Callable[..., dict]:
    """Turn a per-decode metric into one over clips whose rows hold one value per seed (pooled = mean
    over seeds, since every seed decodes the same clips); the bootstrap then resamples whole clips."""
    def fn(*columns: Sequence[Sequence[Any]], **kw: Any) -> dict:
        return metric_fn(*[[v for row in col for v in row] for col in columns], **kw)
    return fn


def _both(preds, judged, labels, dataset="dfew") -> dict:
    rec = recognition_metrics(preds, labels, dataset)
    return {"UAR": rec["UAR"], "WAR": rec["WAR"], **consistency_metrics(preds, judged, labels, dataset)}


def _clean(x: Any) -> Any:
    """JSON-safe numbers: NaN becomes None."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _per_clip(completions: Sequence[Sequence[str]], judged: Sequence[Sequence[str | None]],
              labels: Sequence[str]) -> tuple[list, list, list]:
    """Seed-major decodes (``[s][i]``) -> clip-major rows (``[i][s]``): answers, judged emotions, truth."""
    S, N = len(completions), len(labels)
    preds = [[parse_completion(completions[s][i])[1] for s in range(S)] for i in range(N)]
    return preds, [[judged[s][i] for s in range(S)] for i in range(N)], [[labels[i]] * S for i in range(N)]


def score_decodes(completions: Sequence[Sequence[str]], labels: Sequence[str], judge: Any, dataset: str = "dfew",
                  n_boot: int = 1000, seed: int = 0, judged: Sequence[Sequence[str | None]] | None = None) -> dict:
    """Metrics of one model under one protocol. ``completions[s][i]`` = decode of clip i with seed s.

    Returns UAR, WAR, EEA, FCR, FCR_given_correct, EPC (fractions, pooled over seeds), the 2x2 table
    TT/TF/FT/FF and ``unparseable`` (counts over all decodes), ``n`` (clips), ``n_decodes``, ``per_seed``
    and ``ci``: ``{metric: [low, high]}``, a 95 % percentile bootstrap over clips (left out when ``n_boot`` is
    0). ``judged[s][i]`` (the judge's reading of each decode) is computed here unless given.
    """
    S, N = len(completions), len(labels)
    if judged is None:
        judged = [judge_texts(judge, [parse_completion(c)[0] or "" for c in comps], dataset) for comps in completions]
    preds, judged, truth = _per_clip(completions, judged, labels)
    point = _pooled(_both)(preds, judged, truth, dataset=dataset)
    ci = bootstrap_ci(_pooled(_both), preds, judged, truth, n_resamples=n_boot, seed=seed, dataset=dataset) \
        if n_boot else None
    per_seed = [_both([p[s] for p in preds], [j[s] for j in judged], labels, dataset) for s in range(S)]
    out = {k: point[k] for k in ("UAR", "WAR", "EEA", "FCR", "FCR_given_correct", "EPC",
                                 "TT", "TF", "FT", "FF", "unparseable", "judge_outside")}
    out.update(n=N, n_decodes=N * S)
    if ci is not None:
        out["ci"] = {k: [ci[k]["low"], ci[k]["high"]] for k in CI_KEYS}
    out["per_seed"] = [{k: r[k] for k in ("UAR", "WAR", "EEA", "FCR", "EPC")} for r in per_seed]
    return _clean(out)


def clip_records(completions: Sequence[str], examples: Sequence[dict], judged: Sequence[str | None],
                 verifier: Any, cfg) -> list[dict]:
    """Per-clip detail for the inspector: answer, rationale, judge's reading and every reward part
    (explanation reward with per-sentence labels/probabilities, as ``ExplanationReward.details``)."""
    labels = [ex["label"] for ex in examples]
    ds = [ex.get("dataset", "dfew") for ex in examples]
    fmt = format_reward(completions, strict=cfg.reward.strict_format)
    acc = accuracy_reward(completions, solution=labels, dataset=ds)
    details = [None] * len(completions)
    if verifier is not None:
        erv = ExplanationReward(verifier, cfg.verifier.threshold, cfg.verifier.top_k, cfg.reward.variant,
                                cfg.reward.anti_stuffing)
        details = erv.details(completions, solution=labels, dataset=ds)
    out = []
    for i, c in enumerate(completions):
        think, answer = parse_completion(c)
        d = details[i]
        present = clip_cues(examples[i])
        sentences = d["sentences"] if d else [{"text": s} for s in split_sentences(think)]
        for s in sentences:  # cue grounding of every sentence (erv_lab.grounding; None without a cue list)
            s.update(cue_marks(s["text"], present))
        out.append({"completion": c, "think": think, "answer": answer,
                    "prediction": normalize_label(answer, ds[i]) if answer else None, "judged": judged[i],
                    "rewards": {"format": fmt[i], "accuracy": acc[i], "explanation": d["reward"] if d else None},
                    "sentences": sentences})
    return out


def mean_explanation_reward(completions: Sequence[Sequence[str]], examples: Sequence[dict], verifier: Any,
                            cfg) -> float | None:
    """Mean ERV reward (``cfg``'s variant, tau, top-k and guard; target = ground truth) over all decodes."""
    flat = [c for cs in completions for c in cs]
    if not flat:
        return None
    erv = ExplanationReward(verifier, cfg.verifier.threshold, cfg.verifier.top_k, cfg.reward.variant,
                            cfg.reward.anti_stuffing)
    rewards = erv(flat, solution=[ex["label"] for _ in completions for ex in examples],
                  dataset=[ex.get("dataset", "dfew") for _ in completions for ex in examples])
    return sum(rewards) / len(rewards)


# ---------------------------------------------------------------- the whole evaluation
def evaluate_models(generators: dict[str, tuple[GenerateFn, str]], examples: Sequence[dict], judge: Any, cfg,
                    run_dir: str | Path, verifier: Any = None, extra_judges: dict[str, Any] | None = None) -> dict:
    """Decode, judge and score every model in ``generators`` (``{arm: (generate_fn, fingerprint)}``).

    ``judge`` (the offline judge, independent of the reward verifier) gives the headline numbers; each of
    ``extra_judges`` (e.g. the paper's LLM judge) adds ``scores["judges"][name]`` with its own metrics and
    its agreement with ``judge`` (Cohen's kappa over all decodes, ``erv_lab.judges.agreement``).

    Writes ``run_dir/eval/records.json`` (per-clip detail of the headline's first seed and of greedy),
    ``run_dir/eval/readings.json`` (every judge's reading of those same decodes: ``{"headline": name,
    "readings": {clip: {arm: {protocol: {judge: label}}}}}``, read by ``erv_lab.human``) and
    returns the results dict (``erv_lab.report.write_results`` adds timings and writes it).
    """
    run_dir = Path(run_dir)
    dataset = examples[0].get("dataset", "dfew") if len(examples) else "dfew"
    labels = [ex["label"] for ex in examples]
    results: dict[str, Any] = {}
    records: dict[str, dict] = {ex["clip_id"]: {"clip_id": ex["clip_id"], "label": ex["label"], "arms": {}}
                                for ex in examples}
    every: dict[str, dict] = {ex["clip_id"]: {} for ex in examples}  # every judge's reading of the recorded decodes
    seconds = {"decode": 0.0, "judge_and_score": 0.0}
    for proto in protocols(cfg):
        kept = {}
        for arm, (gen, fp) in generators.items():
            t0 = time.perf_counter()
            comps = decode_cached(gen, examples, run_dir / "eval_cache" / f"{arm}_{proto.name}.jsonl",
                                  temperature=proto.temperature, top_p=proto.top_p, seeds=proto.seeds,
                                  max_new_tokens=cfg.eval.max_new_tokens, fingerprint=fp, batch_size=cfg.eval.batch_size,
                                  desc=f"{arm} {proto.name}")
            t1 = time.perf_counter()
            judged = [judge_texts(judge, [parse_completion(c)[0] or "" for c in cs], dataset) for cs in comps]
            kept[arm] = (comps, judged)
            scores = score_decodes(comps, labels, judge, dataset, cfg.eval.bootstrap, cfg.data.seed, judged)
            for ex, rec in zip(examples, clip_records(comps[0], examples, judged[0], verifier, cfg)):
                records[ex["clip_id"]]["arms"].setdefault(arm, {})[proto.name] = rec
            head = getattr(judge, "name", "headline")
            readings = {head: judged}
            for name, other in (extra_judges or {}).items():
                readings[name] = [judge_texts(other, [parse_completion(c)[0] or "" for c in cs], dataset) for cs in comps]
                scores.setdefault("judges", {})[name] = score_decodes(  # point values: the report reads no interval
                    comps, labels, other, dataset, 0, cfg.data.seed, readings[name])
            names = list(readings)
            for i, ex in enumerate(examples):
                every[ex["clip_id"]].setdefault(arm, {})[proto.name] = {n: readings[n][0][i] for n in names}
            scores["kappa"] = {f"{a} vs {b}": _agreement(readings[a], readings[b], dataset)
                               for i, a in enumerate(names) for b in names[i + 1:]}
            for name in scores.get("judges", {}):  # each reading's agreement with the headline
                scores["judges"][name]["agreement"] = scores["kappa"][f"{head} vs {name}"]
            scores["grounding"] = pooled_grounding(comps, examples, judged)
            if verifier is not None:
                scores["explanation_reward"] = mean_explanation_reward(comps, examples, verifier, cfg)
            if proto.name == "sample":
                results[arm] = scores
            else:
                results.setdefault(proto.name, {})[arm] = scores
            seconds["decode"] += t1 - t0
            seconds["judge_and_score"] += time.perf_counter() - t1
        if "erv" in kept and "baseline" in kept:
            diff = paired_difference(kept["erv"], kept["baseline"], labels, dataset, cfg.eval.bootstrap,
                                     cfg.data.seed)
            results.setdefault("erv_minus_baseline", {})[proto.name] = diff
    results["protocol"] = {
        "dataset": dataset, "fold": cfg.data.fold, "source": cfg.data.source, "n_clips": len(examples),
        "decoding": {p.name: p.describe() for p in protocols(cfg)}, "headline": "sample",
        "seeds": list(cfg.eval.seeds), "max_new_tokens": cfg.eval.max_new_tokens,
        "judge": getattr(judge, "name", type(judge).__name__), "bootstrap": cfg.eval.bootstrap,
        "extra_judges": sorted(extra_judges or {}), "machine": machine_summary(),
        "evaluation_seconds": {k: round(v, 1) for k, v in seconds.items()}}
    (run_dir / "eval").mkdir(parents=True, exist_ok=True)
    (run_dir / "eval" / "records.json").write_text(json.dumps(_clean(list(records.values())), indent=1))
    (run_dir / "eval" / "readings.json").write_text(json.dumps(  # beside records.json, which stays as it was
        {"headline": getattr(judge, "name", "headline"), "readings": every}, indent=1))
    return results


def paired_difference(a: tuple, b: tuple, labels: Sequence[str], dataset: str = "dfew", n_boot: int = 1000,
                      seed: int = 0) -> dict:
    """Arm a minus arm b on the same clips, with a *paired* 95 % bootstrap interval (clips resampled once
    for both arms, so the clip-to-clip variation they share cancels). ``a`` and ``b`` are ``(completions,
    judged)`` as in ``score_decodes``. Returns ``{metric: {"value", "low", "high"}}`` for ``CI_KEYS``."""
    pa, ja, truth = _per_clip(*a, labels)
    pb, jb, _ = _per_clip(*b, labels)

    def diff(pa, ja, pb, jb, truth, dataset):
        ma, mb = _pooled(_both)(pa, ja, truth, dataset=dataset), _pooled(_both)(pb, jb, truth, dataset=dataset)
        return {k: ma[k] - mb[k] for k in CI_KEYS if ma[k] is not None and mb[k] is not None
                and not (isinstance(ma[k], float) and math.isnan(ma[k]))}

    ci = bootstrap_ci(diff, pa, ja, pb, jb, truth, n_resamples=n_boot, seed=seed, dataset=dataset)
    return {k: ci[k] for k in CI_KEYS if k in ci}


def _agreement(a: Sequence[Sequence[str | None]], b: Sequence[Sequence[str | None]], dataset: str) -> dict:
    """Cohen's kappa and raw agreement of two judges over all decodes (None read as neutral)."""
    from erv_lab.judges import agreement

    flat = lambda x: [j or "neutral" for row in x for j in row]  # noqa: E731
    got = agreement(flat(a), flat(b), list(vocabulary(dataset)))
    return {"kappa": got["kappa"], "agreement": got["agreement"], "n": got["n"]}


def evaluate_by_dataset(generators: dict[str, tuple[GenerateFn, str]], examples: Sequence[dict], judge: Any, cfg,
                        run_dir: str | Path, **kw: Any) -> dict:
    """:func:`evaluate_models` on each dataset's own test fold when ``examples`` hold several (a model trained
    on MAFW + DFEW, as in the paper, is reported per dataset, never pooled across label sets).

    One dataset: exactly :func:`evaluate_models` in ``run_dir``. Several: each in ``run_dir/datasets/<name>/``
    (its own records and cache; ``erv_lab.stages`` writes its results.json there); the returned dict is the
    first dataset's results (so the results.json schema holds) plus ``datasets: {name: results}``."""
    by: dict[str, list[dict]] = {}
    for ex in examples:
        by.setdefault(ex.get("dataset", "dfew"), []).append(ex)
    if len(by) <= 1:
        return evaluate_models(generators, examples, judge, cfg, run_dir, **kw)
    per = {}
    for name, subset in by.items():
        sub = Path(run_dir) / "datasets" / name
        sub.mkdir(parents=True, exist_ok=True)
        per[name] = evaluate_models(generators, subset, judge, cfg, sub, **kw)
    first = next(iter(per))
    return {**per[first], "datasets": per}
