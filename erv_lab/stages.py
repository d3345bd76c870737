"""One module owns the stages of a run, in the order data flows: dataset -> verifier -> judges -> cold-start
SFT -> GRPO arms -> evaluation (notebook 05, ``erv-lab evaluate``).

Each artefact is saved with its settings and reused only when they match (``erv_lab.reuse``; a stale one is
moved aside with a warning). The stage functions live with their subject (``data.ensure_dataset``,
``verifier.ensure_verifier``, ``judges.evaluation_judges``, ``train.ensure_sft`` / ``ensure_grpo`` /
``run_arms``) and are re-exported here; this module adds the last stage, :func:`ensure_results`, which
trains what is missing, decodes with every model and has ``erv_lab.evaluate`` -- a pure scorer of decodes --
score them, then writes ``results.json`` / ``results.md`` (``erv_lab.report``).

    erv-lab evaluate --preset cpu-tiny          # -> runs/cpu-tiny/results.json, results.md
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from erv_lab.data import ensure_dataset  # noqa: F401  re-exported: the stages in order
from erv_lab.evaluate import GenerateFn, evaluate_by_dataset, model_fingerprint
from erv_lab.judges import evaluation_judges  # noqa: F401
from erv_lab.report import write_results
from erv_lab.train import ensure_grpo, ensure_sft, run_arms  # noqa: F401
from erv_lab.verifier import ensure_verifier, verifier_settings  # noqa: F401


def policy_generator(model_dir: str | Path, cfg) -> tuple[GenerateFn, str]:
    """``(generate_fn, fingerprint)`` for a saved policy folder (``erv_lab.policy.load_policy``)."""
    from erv_lab import policy as P

    model, processor = P.load_policy(model_dir, cfg.policy)

    def gen(examples, temperature, top_p, seed, max_new_tokens):
        return P.generate(model, processor, examples, temperature=temperature, top_p=top_p, seed=seed,
                          max_new_tokens=max_new_tokens, audio=cfg.policy.audio, batch_size=cfg.eval.batch_size)
    return gen, model_fingerprint(model_dir)


def heldout_examples(cfg, run_dir: str | Path, dataset=None) -> list[dict]:
    """The fold's test clips (at most ``cfg.eval.max_clips``, first ones in order) as row dicts."""
    if dataset is None:
        dataset = ensure_dataset(cfg, Path(run_dir))
    test = dataset["test"]
    n = len(test) if cfg.eval.max_clips is None else min(len(test), int(cfg.eval.max_clips))
    return [test[i] for i in range(n)]


def ensure_results(cfg, run_dir: str | Path, force: bool = False, dataset=None) -> dict:
    """Idempotent entry point: train what is missing (``ensure_sft`` / ``ensure_grpo``, reused when made with
    the same settings), then reuse ``run_dir/results.json`` only when it scored these very models with the
    same evaluation settings, judges and verifier (``results["settings"]``, ``erv_lab.reuse``); otherwise
    evaluate all three models and write results.json + results.md."""
    run_dir = Path(run_dir)
    dirs = {"sft": ensure_sft(cfg, run_dir, dataset=dataset),
            "baseline": ensure_grpo(cfg, run_dir, "baseline", dataset=dataset),
            "erv": ensure_grpo(cfg, run_dir, "erv", dataset=dataset)}
    settings = json.loads(json.dumps({
        "models": {arm: model_fingerprint(d) for arm, d in dirs.items()}, "eval": dataclasses.asdict(cfg.eval),
        "judge": cfg.verifier.judge, "verifier": verifier_settings(cfg), "fold": cfg.data.fold,
        "source": cfg.data.source}, default=str))
    path = run_dir / "results.json"
    if path.exists() and not force:
        saved = json.loads(path.read_text())
        if saved.get("settings") == settings:
            return saved
        import warnings

        warnings.warn(f"{path} was made for other models or settings: evaluating again", stacklevel=2)
    examples = heldout_examples(cfg, run_dir, dataset)
    t0 = time.perf_counter()  # evaluation time only: training above is counted by its own stage
    gens = {arm: policy_generator(d, cfg) for arm, d in dirs.items()}
    verifier = ensure_verifier(cfg, run_dir)
    judges = evaluation_judges(cfg, run_dir, verifier)
    headline, *others = judges
    results = evaluate_by_dataset(gens, examples, judges[headline], cfg, run_dir, verifier=verifier,
                                  extra_judges={n: judges[n] for n in others})
    for name, per in (results.get("datasets") or {}).items():  # several datasets: each its own results file
        results["datasets"][name] = write_results({**per, "settings": settings}, run_dir / "datasets" / name)
    results["settings"] = settings
    return write_results(results, run_dir, eval_seconds=time.perf_counter() - t0)


def cli_evaluate(args: argparse.Namespace) -> int:
    from erv_lab.config import load_config, run_dir

    cfg = load_config(args.preset, args.overrides)
    rd = run_dir(cfg, args.out)
    ensure_results(cfg, rd, force=True)
    print((rd / "results.md").read_text())
    print(f"results.json: {rd / 'results.json'}")
    return 0
