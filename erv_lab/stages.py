"""One module owns the stages of a run, in the order data flows: dataset -> verifier -> judges -> cold-start
SFT -> GRPO arms -> evaluation.

Every ``ensure_*`` here follows one rule (``erv_lab.reuse``): the artefact's folder holds ``settings.json``,
the settings it was made with; it is reused only when they equal this config's, and otherwise moved aside to
``<folder>.stale`` with a warning naming the changed fields, then made again (``results.json``, a single file,
keeps its settings inside and is evaluated again with a warning). The work itself is the subject's
(``data.build_dataset``, ``verifier.train_verifier``, ``judges.train_minilm_judge``, ``train.train_sft`` /
``train_grpo``): those make what they are asked for -- resuming from their own checkpoints and caches -- and
none of them decides whether a finished artefact is reused, or trains or evaluates another stage as a side
effect; ``erv_lab.evaluate`` is a pure scorer of decodes. ``erv_lab.arms`` runs the two GRPO arms side by side.
While a stage trains (SFT, an arm, the verifier) or a run is evaluated, its folder's lock (``erv_lab.locks``,
``<run>/.<stage>.lock``) is held: a second process gets a clear error instead of training the same folder.

    erv-lab evaluate --preset cpu-tiny          # -> runs/cpu-tiny/results.json, results.md
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from erv_lab import reuse

ARTEFACTS = ("final", "init", "checkpoint-*")  # what a training stage's folder holds


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _settings(d: dict) -> dict:
    return reuse.normalise(d)


def _stage_lock(out: str | Path, what: str = "trained"):
    """The lock of stage folder ``out`` (``erv_lab.locks``: one trainer per folder), taken by the main process
    only; the other ranks of an accelerate launch follow it."""
    from contextlib import nullcontext

    from erv_lab.locks import stage_lock

    return stage_lock(out, what) if _is_main() else nullcontext()


def _locked(name: str, what: str):
    """Decorator: hold the lock of ``run_dir/<name>`` (``run_dir``: the call's second argument) around the call."""
    import functools

    def wrap(fn):
        @functools.wraps(fn)
        def inner(cfg, run_dir, *args, **kw):
            with _stage_lock(Path(run_dir) / name, what):
                return fn(cfg, run_dir, *args, **kw)
        return inner
    return wrap


# ============================================================================ dataset
def dataset_settings(cfg) -> dict:
    """What the finished splits depend on: the data section (but nothing that only names a run) and the
    policy's image size."""
    d = cfg.data
    keys = {k: getattr(d, k) for k in ("source", "layout", "root", "fold", "clips_per_class", "seed", "difficulty",
                                        "frame_size", "frames_per_clip", "fps", "num_frames", "face_crop",
                                        "drift_rate", "class_drift")}
    return _settings({**keys, "image_size": cfg.policy.image_size})


def ensure_dataset(cfg, run_dir: str | Path, verbose: bool = True) -> dict:
    """``{"train", "test"}`` HF Datasets of ``cfg`` in ``run_dir/data/hf`` (``data.build_dataset``), built once
    and reused while :func:`dataset_settings` match; a second call decodes nothing."""
    from datasets import load_from_disk

    from erv_lab.data import DATASET_DIR, build_dataset

    out = Path(run_dir) / DATASET_DIR
    settings = dataset_settings(cfg)
    if not _is_main():  # several processes (accelerate launch): rank 0 builds, the others wait and load
        _wait_for(out, settings)
        return {s: load_from_disk(str(out / s)) for s in ("train", "test")}
    if reuse.check(out, settings, artefacts=("done",), what="building the dataset again") and (out / "done").exists():
        return {s: load_from_disk(str(out / s)) for s in ("train", "test")}  # no generator, no video decoder
    old = [p.parent.name for p in out.glob("*/done")] if out.is_dir() else []
    if old:  # erv-lab before 0.1's one reuse rule kept one folder per settings hash
        warnings.warn(f"{out} holds datasets of an older erv-lab ({', '.join(old)}): no longer read; delete them "
                      "to free the space", stacklevel=2)
    out.mkdir(parents=True, exist_ok=True)
    splits = build_dataset(cfg, Path(run_dir) / "data", out, verbose)
    reuse.record(out, settings)
    (out / "done").write_text("ok")
    return splits


def _wait_for(out: Path, settings: dict, timeout_s: float = 3600.0, poll_s: float = 2.0) -> None:
    """Block until rank 0 has finished ``out`` with ``settings`` (its ``done`` file and ``settings.json``)."""
    t0 = time.monotonic()
    while not ((out / "done").exists() and reuse.matches(out, settings)):
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"{out}: rank 0 did not finish the dataset within {timeout_s:.0f} s")
        time.sleep(poll_s)


# ============================================================================ verifier
def verifier_settings(cfg) -> dict:
    """What a trained verifier depends on: its kind, model, training rows and schedule, and the seeds; not
    the reward's tau / top-k, which only read it."""
    v = cfg.verifier
    keep = {k: getattr(v, k) for k in ("kind", "max_train", "epochs", "learning_rate", "batch_size")}
    if v.kind != "tfidf":
        keep["model_name"] = v.model_name
    return {"verifier": keep, "data_seed": cfg.data.seed, "layout": cfg.data.layout}


def ensure_verifier(cfg, run_dir: str | Path, progress: bool | None = True):
    """The verifier in ``run_dir/verifier`` when it was trained with :func:`verifier_settings`; otherwise train
    one (``verifier.train_verifier``) and save it there."""
    from erv_lab import verifier as V

    out = Path(run_dir) / "verifier"
    settings = verifier_settings(cfg)
    if reuse.check(out, settings, artefacts=(V.CONFIG_FILE,), what="training a new verifier") and \
            (out / V.CONFIG_FILE).exists():
        return V.load_verifier(out)
    with _stage_lock(out):
        model = V.train_verifier(cfg, progress)
        model.info["max_train"] = cfg.verifier.max_train
        model.save(out)
        reuse.record(out, settings)
    V.log_scalars(out / "runs", "verifier", model.info, cfg.report_to)
    model.path = str(out)
    return model


def reading_settings(cfg) -> dict:
    """The verifier *as the reward reads it*: :func:`verifier_settings` plus tau and top-k (what a GRPO arm
    trained against and what the evaluation's reward columns were computed with)."""
    return {**verifier_settings(cfg), "threshold": cfg.verifier.threshold, "top_k": cfg.verifier.top_k}


# ============================================================================ judges
def sibling_settings(cfg) -> dict:
    """What the sibling judge's training depends on."""
    return {"kind": "minilm-sibling", "max_train": cfg.verifier.max_train, "data_seed": cfg.data.seed,
            "layout": cfg.data.layout}


def ensure_sibling_judge(cfg, run_dir: str | Path, progress: bool | None = None):
    """The MiniLM classifier judge trained like the reward's verifier (GoEmotions + the template rationale
    sentences), under ``run_dir/judge``: the reward's **sibling**. Its agreement with the reward says little
    about coherence; it is reported beside the headline, never as it."""
    from erv_lab.judges import ClassifierJudge, train_minilm_judge
    from erv_lab.verifier import CONFIG_FILE, load_verifier

    out = Path(run_dir) / "judge"
    settings = sibling_settings(cfg)
    if reuse.check(out, settings, artefacts=(CONFIG_FILE,), what="training it again") and (out / CONFIG_FILE).exists():
        judge = ClassifierJudge(load_verifier(out), name="minilm-sibling")
    else:
        model = train_minilm_judge(cfg, run_dir, progress=progress)
        model.save(out)
        reuse.record(out, settings)
        model.path = str(out)
        judge = ClassifierJudge(model, name="minilm-sibling")
    return judge


def evaluation_judges(cfg, run_dir: str | Path, verifier: Any = None, progress: bool | None = None) -> dict:
    """``{name: judge}`` for evaluation, the headline first (``judges.headline_judge``, fit on nothing), then
    the readings it is compared with: the reward's sibling (``minilm-sibling``), the verifier's own
    paragraph-level reading (``verifier-reading``; what the reward itself sees) and ``eval.extra_judges``.
    Cohen's kappa between every pair is reported."""
    from erv_lab import judges as J

    headline = J.headline_judge(cfg, run_dir)
    out = {getattr(headline, "name", cfg.verifier.judge): headline,
           "minilm-sibling": ensure_sibling_judge(cfg, run_dir, progress)}
    if verifier is not None:
        out["verifier-reading"] = J.ClassifierJudge(verifier, name="verifier-reading")
    for extra in cfg.eval.extra_judges:
        judge = {"gemma": J.GGUFJudge}[extra]()
        out[judge.name] = judge
    return out


# ============================================================================ cold-start SFT and GRPO
def stage_settings(cfg, stage: str, arm: str | None = None) -> dict:
    """The settings a training stage's result depends on: SFT on data + policy + sft (+ the effective seed;
    logging does not change the model), a GRPO arm on the SFT settings + grpo (but logging/saving intervals)
    + reward + the arm, and, when a reward reads the verifier, the verifier's settings with the tau and top-k
    the reward reads it at. Saved as ``settings.json`` beside the stage's output."""
    from erv_lab.train import needs_verifier, sft_seed

    sft = {"data": dataclasses.asdict(cfg.data), "policy": dataclasses.asdict(cfg.policy),
           "sft": {k: v for k, v in dataclasses.asdict(cfg.sft).items() if k not in ("seed", "logging_steps")},
           "seed": sft_seed(cfg)}
    if stage == "sft":
        return _settings(sft)
    grpo = {k: v for k, v in dataclasses.asdict(cfg.grpo).items()
            if k not in ("logging_steps", "save_steps", "degenerate_lesson", "grounding_ablation")}
    verifier = reading_settings(cfg) if needs_verifier(cfg) else None
    return _settings({"sft": sft, "grpo": grpo, "reward": dataclasses.asdict(cfg.reward), "arm": arm,
                      "verifier": verifier})


def finished(out: Path, settings: dict) -> bool:
    """``out/final`` exists and was trained with ``settings``: reuse it."""
    return (Path(out) / "final" / "policy.json").exists() and reuse.matches(out, settings)


def check_stage(out: Path, settings: dict) -> None:
    """Keep ``out`` when it was made with ``settings`` (reuse / resume); otherwise move it aside to
    ``<out>.stale`` with a warning naming what changed, so that the stage retrains instead of silently
    reusing a model trained with other settings."""
    reuse.check(out, settings, artefacts=ARTEFACTS, what="training again", stacklevel=4)


def claim_stage(out: Path, settings: dict) -> None:
    """Before a stage (re)builds anything in ``out``: move a stale ``out`` aside, then record ``settings``."""
    if _is_main():
        check_stage(out, settings)
        reuse.record(out, settings)
    else:
        Path(out).mkdir(parents=True, exist_ok=True)


def initial_policy(cfg, train_ds, out: Path):
    """``(start, meta)`` of the SFT stage in ``out`` (``train.build_initial_policy``: for the tiny class the
    tokenizer and warmed-up model, saved in ``out/init``), after checking ``out``'s settings."""
    from erv_lab.train import build_initial_policy

    with _stage_lock(out):
        claim_stage(out, stage_settings(cfg, "sft"))
        return build_initial_policy(cfg, train_ds, out)


def ensure_sft(cfg, run_dir: str | Path, dataset=None, callbacks: Sequence = (), on_log: Callable | None = None,
               force: bool = False, name: str = "sft") -> Path:
    """Cold-start SFT on the train split's rationales -> ``run_dir/<name>/final``, reused while
    ``stage_settings(cfg, "sft")`` match (``train.train_sft``; it resumes from the last checkpoint)."""
    from erv_lab import policy as P
    from erv_lab import train as T

    out = Path(run_dir) / name
    settings = stage_settings(cfg, "sft")
    if finished(out, settings) and not force:
        return out / "final"
    train_ds = (dataset or ensure_dataset(cfg, run_dir))["train"]
    T.require_rationales(train_ds)  # before anything is moved aside or built
    with _stage_lock(out):  # held from the settings check to the saved model
        claim_stage(out, settings)
        P.seed_everything(T.sft_seed(cfg))
        start, meta = T.build_initial_policy(cfg, train_ds, out)
        return T.train_sft(cfg, out, train_ds, start, meta, callbacks, on_log)


def ensure_grpo(cfg, run_dir: str | Path, arm: str, dataset=None, reward_funcs: tuple | None = None,
                callbacks: Sequence = (), on_log: Callable | None = None, force: bool = False,
                name: str | None = None) -> Path:
    """GRPO from the SFT model for one arm -> ``run_dir/<arm>/final`` (``train.train_grpo``), reused while
    ``stage_settings(cfg, "grpo", arm)`` match; trains the SFT model and the verifier first when missing."""
    from erv_lab import policy as P
    from erv_lab import train as T

    out = Path(run_dir) / (name or arm)
    settings = stage_settings(cfg, "grpo", arm)
    if finished(out, settings) and not force:
        return out / "final"
    with _stage_lock(out):  # held from the settings check to the saved model
        claim_stage(out, settings)
        P.seed_everything(cfg.grpo.seed)  # before anything else this call may build (SFT, verifier, the model)
        sft = ensure_sft(cfg, run_dir, dataset=dataset)
        splits = dataset or ensure_dataset(cfg, run_dir)
        if reward_funcs is None:
            verifier = ensure_verifier(cfg, run_dir, progress=False) if T.needs_verifier(cfg) else None
            reward_funcs = T.arm_rewards(cfg, arm, verifier)
        funcs, weights = reward_funcs
        return T.train_grpo(cfg, out, sft, splits["train"], funcs, weights, arm, callbacks, on_log)


# ============================================================================ checks after training (notebooks 04, 05)
def audio_ablation(cfg, run_dir: str | Path, dataset=None, n: int | None = None) -> dict:
    """Greedy test accuracy of the SFT policy with the audio channel (``cfg.policy.audio``) vs without it
    (a second SFT run with ``audio="none"`` in ``run_dir/sft-audio-none``; same data, seed and steps)."""
    from erv_lab import policy as P
    from erv_lab.train import quick_eval

    splits = dataset or ensure_dataset(cfg, run_dir)
    out = {}
    for audio, name in ((cfg.policy.audio, "sft"), ("none", "sft-audio-none")):
        c = copy.deepcopy(cfg)
        c.policy.audio = audio
        model, processor = P.load_policy(ensure_sft(c, run_dir, dataset=dataset, name=name), c.policy)
        res = quick_eval(model, processor, splits["test"], c.policy, n, cfg.eval.max_new_tokens)
        out[audio] = {k: v for k, v in res.items() if k != "outputs"}
    (Path(run_dir) / "audio_ablation.json").write_text(json.dumps(out, indent=2))
    return out


def degenerate_lesson(cfg, run_dir: str | Path) -> tuple[Path, int] | None:
    """``(folder holding erv-degenerate/, its G)`` for notebook 05's reward-hacking lesson: trained here into
    ``run_dir`` with ``train.degenerate_config`` when ``grpo.degenerate_lesson`` is on (one more GRPO run),
    else the shipped cpu-tiny run in ``erv_lab/reference_run/``; ``None`` when neither exists."""
    from erv_lab.config import load_config
    from erv_lab.paths import REFERENCE_DIR
    from erv_lab.train import degenerate_config

    if cfg.grpo.degenerate_lesson:
        ensure_grpo(degenerate_config(cfg), run_dir, "erv", name="erv-degenerate")
        return Path(run_dir), cfg.grpo.num_generations
    if (REFERENCE_DIR / "erv-degenerate" / "log_history.json").exists():
        return REFERENCE_DIR, load_config("cpu-tiny").grpo.num_generations
    return None


def grounding_ablation(cfg, run_dir: str | Path, dataset=None) -> dict | None:
    """Beyond the paper: does paying for grounded sentences buy grounding, and what does it cost? With
    ``grpo.grounding_ablation`` on, trains the ERV arm plus the grounding reward (``train.grounding_config``)
    into ``run_dir/erv-grounding`` and scores it beside the ERV arm on the test clips under both protocols
    with the headline judge (decodes cached in ``eval_cache``, the ERV arm's reused): each arm's metrics and
    cue grounding, and the paired difference with its interval. Written to ``run_dir/grounding_ablation.json``.
    Off, returns the shipped cpu-tiny run's file (``erv_lab/reference_run/``), or ``None``."""
    from erv_lab.evaluate import (decode_cached, judge_texts, paired_difference, pooled_grounding, protocols,
                                  score_decodes)
    from erv_lab.paths import REFERENCE_DIR
    from erv_lab.rewards import parse_completion
    from erv_lab.train import grounding_config

    if not cfg.grpo.grounding_ablation:
        shipped = REFERENCE_DIR / "grounding_ablation.json"
        return json.loads(shipped.read_text()) if shipped.exists() else None
    if cfg.data.source != "synthetic":
        raise ValueError("grpo.grounding_ablation: the grounding reward reads the cue list only synthetic clips "
                         f"record; data.source={cfg.data.source!r} has none (set grpo.grounding_ablation=false)")
    run_dir = Path(run_dir)
    dirs = {"erv": ensure_grpo(cfg, run_dir, "erv", dataset=dataset),
            "erv-grounding": ensure_grpo(grounding_config(cfg), run_dir, "erv", dataset=dataset,
                                         name="erv-grounding")}
    examples = heldout_examples(cfg, run_dir, dataset)
    labels, ds_name = [ex["label"] for ex in examples], examples[0].get("dataset", "dfew")
    from erv_lab.judges import headline_judge

    judge = headline_judge(cfg, run_dir)  # fit on nothing: independent of both arms' rewards
    head_name = getattr(judge, "name", cfg.verifier.judge)
    gens = {arm: policy_generator(d, cfg) for arm, d in dirs.items()}
    out: dict = {"judge": head_name, "n_clips": len(examples), "rewards": grounding_config(cfg).reward.rewards,
                 "protocols": {}}
    for proto in protocols(cfg):
        kept = {}
        block = out["protocols"][proto.name] = {}
        for arm, (gen, fp) in gens.items():
            comps = decode_cached(gen, examples, run_dir / "eval_cache" / f"{arm}_{proto.name}.jsonl",
                                  temperature=proto.temperature, top_p=proto.top_p, seeds=proto.seeds,
                                  max_new_tokens=cfg.eval.max_new_tokens, fingerprint=fp,
                                  batch_size=cfg.eval.batch_size, desc=f"{arm} {proto.name}")
            judged = [judge_texts(judge, [parse_completion(c)[0] or "" for c in cs], ds_name) for cs in comps]
            kept[arm] = (comps, judged)
            block[arm] = {**score_decodes(comps, labels, judge, ds_name, cfg.eval.bootstrap, cfg.data.seed, judged),
                          "grounding": pooled_grounding(comps, examples, judged)}
        block["difference"] = paired_difference(kept["erv-grounding"], kept["erv"], labels, ds_name,
                                                cfg.eval.bootstrap, cfg.data.seed)
    (run_dir / "grounding_ablation.json").write_text(json.dumps(out, indent=1) + "\n")
    from erv_lab.report import attach

    attach(run_dir, "grounding_ablation", out)
    return out


def faithfulness(cfg, run_dir: str | Path, dataset=None, arms: Sequence[str] = ("sft", "baseline", "erv"),
                 n_boot: int | None = None) -> dict:
    """Beyond the paper (``erv_lab.faithfulness``; notebook 08): each model decodes every test clip greedily as
    it is, with its frames blanked and with a silent track (cached in ``eval_cache/<arm>_greedy[_no_face|
    _no_voice].jsonl``; the as-is decodes are the evaluation's own), scored for modality faithfulness; then its
    answer is forced after each as-is rationale with one sentence removed, and after an empty one (step
    necessity; the forced answers are cached in ``eval_cache/<arm>_forced.jsonl``, so an interrupted run
    resumes). Synthetic clips only (the cue lists). Written to ``run_dir/faithfulness.json``; reused while
    the models and settings match."""
    from erv_lab import faithfulness as F
    from erv_lab import policy as P
    from erv_lab.evaluate import decode_cached, model_fingerprint
    from erv_lab.rewards import parse_completion

    if cfg.data.source != "synthetic":
        raise ValueError("faithfulness reads the cue lists only synthetic clips record; "
                         f"data.source={cfg.data.source!r} has none")
    run_dir = Path(run_dir)
    dirs = {"sft": ensure_sft(cfg, run_dir, dataset=dataset)}
    dirs.update({arm: ensure_grpo(cfg, run_dir, arm, dataset=dataset) for arm in arms if arm != "sft"})
    n_boot = cfg.eval.bootstrap if n_boot is None else n_boot
    settings = _settings({"models": {a: model_fingerprint(d) for a, d in dirs.items() if a in arms},
                          "max_new_tokens": cfg.eval.max_new_tokens, "bootstrap": n_boot,
                          "max_clips": cfg.eval.max_clips, "version": 2})  # 2: step-necessity intervals
    path = run_dir / "faithfulness.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("settings") == settings:
            from erv_lab.report import attach

            attach(run_dir, "faithfulness", saved)  # results.json may have been evaluated again since
            return saved
    examples = heldout_examples(cfg, run_dir, dataset)
    labels = [ex["label"] for ex in examples]
    views = {"as_is": examples, "no_face": [F.ablate(ex, "face") for ex in examples],
             "no_voice": [F.ablate(ex, "voice") for ex in examples]}
    out: dict = {"decoding": "greedy", "n_clips": len(examples), "arms": {}, "settings": settings}
    for arm in arms:
        model, processor = P.load_policy(dirs[arm], cfg.policy)
        fp = model_fingerprint(dirs[arm])

        def gen(exs, temperature, top_p, seed, max_new_tokens):
            return P.generate(model, processor, exs, temperature=temperature, top_p=top_p, seed=seed,
                              max_new_tokens=max_new_tokens, audio=cfg.policy, batch_size=cfg.eval.batch_size)
        decodes = {}
        for cond, exs in views.items():
            name = f"{arm}_greedy" + ("" if cond == "as_is" else f"_{cond}")
            decodes[cond] = decode_cached(gen, exs, run_dir / "eval_cache" / f"{name}.jsonl", temperature=0.0,
                                          top_p=1.0, seeds=(0,), max_new_tokens=cfg.eval.max_new_tokens,
                                          fingerprint=fp, batch_size=cfg.eval.batch_size, desc=f"{arm} {cond}")[0]
        force = F.cached_force(F.force_answer_fn(model, processor, cfg, cfg.eval.batch_size),
                               run_dir / "eval_cache" / f"{arm}_forced.jsonl", fingerprint=fp,
                               batch_size=cfg.eval.batch_size, desc=f"{arm} forced answers")
        steps = F.step_necessity(examples, [parse_completion(c)[0] for c in decodes["as_is"]], force,
                                 n_boot=n_boot, seed=cfg.data.seed)
        out["arms"][arm] = {**F.modality_scores(decodes, labels, n_boot, cfg.data.seed),
                            "steps": {k: v for k, v in steps.items() if k != "rows"},
                            "clips": [F.clip_row(ex, {c: decodes[c][i] for c in decodes}, steps["rows"][i])
                                      for i, ex in enumerate(examples)]}
    path.write_text(json.dumps(out, indent=1) + "\n")
    from erv_lab.report import attach

    attach(run_dir, "faithfulness", out)  # into results.json / results.md beside the headline numbers
    return out


# ============================================================================ evaluation (notebook 06)
def policy_generator(model_dir: str | Path, cfg):
    """``(generate_fn, fingerprint)`` for a saved policy folder (``erv_lab.policy.load_policy``)."""
    from erv_lab import policy as P
    from erv_lab.evaluate import model_fingerprint

    model, processor = P.load_policy(model_dir, cfg.policy)

    def gen(examples, temperature, top_p, seed, max_new_tokens):
        return P.generate(model, processor, examples, temperature=temperature, top_p=top_p, seed=seed,
                          max_new_tokens=max_new_tokens, audio=cfg.policy, batch_size=cfg.eval.batch_size)
    return gen, model_fingerprint(model_dir)


def heldout_examples(cfg, run_dir: str | Path, dataset=None) -> list[dict]:
    """The fold's test clips (at most ``cfg.eval.max_clips``, first ones in order) as row dicts."""
    test = (dataset or ensure_dataset(cfg, Path(run_dir)))["test"]
    n = len(test) if cfg.eval.max_clips is None else min(len(test), int(cfg.eval.max_clips))
    return [test[i] for i in range(n)]


@_locked("eval", "evaluated")  # one evaluation of a run folder at a time (its lock: run_dir/.eval.lock)
def ensure_results(cfg, run_dir: str | Path, force: bool = False, dataset=None) -> dict:
    """Train what is missing (:func:`ensure_sft` / :func:`ensure_grpo`), then reuse ``run_dir/results.json``
    only when it scored these very models with the same evaluation settings, judges and verifier
    (``results["settings"]``); otherwise decode with all three models, have ``erv_lab.evaluate`` score the
    decodes, and write results.json + results.md (``erv_lab.report``). Label files in ``run_dir/human/`` add
    ``results["human"]`` (``erv_lab.human.run_reading``), also to reused results, without evaluating again."""
    from erv_lab import human
    from erv_lab.evaluate import evaluate_by_dataset, model_fingerprint
    from erv_lab.report import write_results

    run_dir = Path(run_dir)
    dirs = {"sft": ensure_sft(cfg, run_dir, dataset=dataset),
            "baseline": ensure_grpo(cfg, run_dir, "baseline", dataset=dataset),
            "erv": ensure_grpo(cfg, run_dir, "erv", dataset=dataset)}
    settings = _settings({
        "models": {arm: model_fingerprint(d) for arm, d in dirs.items()}, "eval": dataclasses.asdict(cfg.eval),
        "judge": cfg.verifier.judge, "verifier": reading_settings(cfg), "fold": cfg.data.fold,
        "source": cfg.data.source})
    path = run_dir / "results.json"
    if path.exists() and not force:
        saved = json.loads(path.read_text())
        if saved.get("settings") == settings:
            human.update_results(run_dir)  # labels given since: only results["human"] changes, nothing is decoded
            return json.loads(path.read_text())
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
    block = human.run_reading(run_dir) if (run_dir / "eval" / "records.json").exists() else None
    if block is not None:  # the learners' reading beside the judges' (erv_lab.human); absent without label files
        results["human"] = block
    return write_results(results, run_dir, eval_seconds=time.perf_counter() - t0)
