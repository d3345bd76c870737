"""Micro-benchmark: cost of the explanation (ERV) reward for one GRPO batch, and its share of a step.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_rewards.py                      # estimate only
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_rewards.py --measure-step        # + a real TRL step
    .venv/bin/python scripts/bench_rewards.py --verifier runs/cpu-tiny/verifier      # the course's verifier

What it measures (on the preset's sizes, default cpu-tiny):
1. the reward: ``prompts_per_step x num_generations`` completions whose <think> holds 4 rationale sentences
   from ``erv_lab.rationales`` (realistic text), scored by the TF-IDF verifier (trained here on a GoEmotions
   slice of ``--max-train`` rows + rationale sentences, or loaded with ``--verifier``). Median of ``--repeats``.
2. the step: with ``--measure-step``, the median wall time of TRL GRPO steps of the preset's tiny LLaVA policy
   (random init, so every completion runs to max_completion_length; beta = 0, so no reference forward) with
   the format + accuracy rewards only. Without it, ``--step-seconds`` (default 1.2 s: an early prototype's
   150 steps in 3-4 min, not a measurement of this code) is used and labelled as an estimate.
share = t_reward / (t_step + t_reward): the explanation reward's part of an ERV-arm step.
Timings on a shared 2-core machine are noisy; the script prints the machine load it saw.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rationale_batch(n: int, sentences: int, layout: str, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` completions ``<think> s1 .. sk </think>\\n<answer> y </answer>`` and their labels."""
    from erv_lab.labels import normalize_label
    from erv_lab.rationales import rationale_corpus

    rows = [r for r in rationale_corpus(layout=layout, n=max(200, n * sentences), seed=seed) if r["kind"] != "hedge"]
    rng = random.Random(seed)
    completions, labels = [], []
    for _ in range(n):
        pick = rng.sample(rows, sentences)
        label = normalize_label(pick[0]["emotion"], layout) or "neutral"
        completions.append(f"<think> {' '.join(r['sentence'] for r in pick)} </think>\n<answer> {label} </answer>")
        labels.append(label)
    return completions, labels


def get_verifier(args, cfg):
    from erv_lab.verifier import load_verifier, train_verifier

    if args.verifier and Path(args.verifier).exists():
        return load_verifier(args.verifier), f"loaded from {args.verifier}"
    cfg.verifier.kind, cfg.verifier.max_train = "tfidf", args.max_train
    t0 = time.perf_counter()
    model = train_verifier(cfg, progress=False)
    n_feat = model.info.get("n_features")
    if args.verifier:  # a path that does not exist yet: save there for the next run
        model.save(args.verifier)
    return model, (f"tfidf trained here on {args.max_train} GoEmotions rows + rationale rows "
                   f"({n_feat} features, {time.perf_counter() - t0:.0f} s)")


def time_reward(fn, completions, labels, repeats: int) -> float:
    fn(completions, solution=labels)  # warm-up (lazy imports, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(completions, solution=labels)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_step(cfg, steps: int) -> float:
    """Median seconds per TRL GRPO step of the preset's tiny policy (format + accuracy rewards, beta 0)."""
    import numpy as np
    from datasets import Dataset
    from PIL import Image
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from erv_lab import policy as P
    from erv_lab.rationales import rationale_corpus
    from erv_lab.rewards import build_reward_funcs
    from erv_lab.train import grpo_args

    corpus = [r["sentence"] for r in rationale_corpus(n=2000)]
    processor = P.build_processor(P.train_tokenizer(corpus), cfg.policy.image_size)
    model = P.build_tiny_policy(cfg.policy, processor, seed=0)
    n_images = cfg.data.num_frames // cfg.policy.frames_per_image + (cfg.policy.audio == "spectrogram")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(64):
        images = [Image.fromarray(rng.integers(0, 255, (cfg.policy.image_size,) * 2 + (3,), dtype=np.uint8))
                  for _ in range(n_images)]
        content = [{"type": "image"}] * n_images + [{"type": "text", "text": P.INSTRUCTION}]
        rows.append({"prompt": [{"role": "user", "content": content}], "images": images,
                     "solution": ["happy", "sad"][i % 2], "dataset": "dfew"})
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())

    funcs, weights = build_reward_funcs(type(cfg.reward)(rewards=["format", "accuracy"], weights=[1.0, 1.0]))
    with tempfile.TemporaryDirectory() as out:
        args = grpo_args(cfg, Path(out), max_steps=steps + 1, beta=0.0, save_strategy="no", logging_steps=1000,
                         reward_weights=weights)
        trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, processing_class=processor,
                              train_dataset=Dataset.from_list(rows), callbacks=[Clock()])
        trainer.train()
    return statistics.median([b - a for a, b in zip(stamps, stamps[1:])])  # the first step (warm-up) is dropped


def main(argv: list[str] | None = None) -> int:
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(k, "1")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="cpu-tiny")
    ap.add_argument("--verifier", default=None, help="saved verifier folder; trained here and saved there when it does not exist")
    ap.add_argument("--max-train", type=int, default=5000, help="GoEmotions rows when training the verifier here")
    ap.add_argument("--sentences", type=int, default=4, help="sentences per rationale")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--step-seconds", type=float, default=1.2, help="GRPO step time used when not measured")
    ap.add_argument("--measure-step", action="store_true", help="time real TRL GRPO steps of the tiny policy")
    ap.add_argument("--steps", type=int, default=3, help="measured steps (after one warm-up step)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    from erv_lab.config import load_config
    from erv_lab.rewards import ExplanationReward, accuracy_reward, format_reward

    cfg = load_config(args.preset)
    n = cfg.grpo.prompts_per_step * cfg.grpo.num_generations
    completions, labels = rationale_batch(n, args.sentences, cfg.data.layout)
    verifier, how = get_verifier(args, cfg)
    erv = ExplanationReward(verifier, cfg.verifier.threshold, cfg.verifier.top_k, cfg.reward.variant,
                            cfg.reward.anti_stuffing)
    t_erv = time_reward(erv, completions, labels, args.repeats)
    t_fmt = time_reward(lambda c, **k: format_reward(c, strict=True), completions, labels, args.repeats)
    t_acc = time_reward(accuracy_reward, completions, labels, args.repeats)
    n_sent = sum(d["n"] for d in erv.details(completions, labels))
    if args.measure_step:
        t_step, step_how = measure_step(cfg, args.steps), (
            f"measured: median of {args.steps} TRL GRPO steps, tiny policy, format+accuracy, beta 0")
    else:
        t_step, step_how = args.step_seconds, "estimate (--step-seconds; an early prototype)"
    res = {
        "preset": cfg.preset, "completions_per_step": n, "sentences_per_step": n_sent, "verifier": how,
        "explanation_s_per_batch": round(t_erv, 4), "sentences_per_s": round(n_sent / t_erv),
        "format_s_per_batch": round(t_fmt, 5), "accuracy_s_per_batch": round(t_acc, 5),
        "step_s": round(t_step, 3), "step_source": step_how,
        "explanation_share_of_step": round(t_erv / (t_step + t_erv), 4),
        "loadavg_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
    }
    print(json.dumps(res, indent=2))
    verdict = "OK" if res["explanation_share_of_step"] <= 0.10 else "OVER"
    print(f"{verdict}: explanation reward = {100 * res['explanation_share_of_step']:.1f} % of an ERV step "
          f"(target <= 10 %)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
