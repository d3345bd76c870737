"""Cold-start SFT and GRPO (baseline vs ERV arm) with TRL (notebooks 03 and 04, ``erv-lab train``).

    erv-lab train sft  --preset cpu-tiny                # -> runs/cpu-tiny/sft/final
    erv-lab train grpo --preset cpu-tiny --arm baseline  # format + accuracy      -> runs/cpu-tiny/baseline/
    erv-lab train grpo --preset cpu-tiny --arm erv       # + explanation (ERV)    -> runs/cpu-tiny/erv/

Both arms start from the SFT model with identical data, seeds, steps and hyperparameters; only the reward
list differs. Every stage is idempotent (a finished ``final/`` is reused) and resumes from its last
checkpoint. Logs per stage: ``log_history.{json,csv}``, ``completions.jsonl`` (GRPO, every reward part),
``metrics.json`` (seconds/step, peak memory). Besides training it decodes a few clips for quick checks
(:func:`quick_eval`, :func:`audio_ablation`); the held-out evaluation is ``erv_lab.stages.ensure_results``;
reading and plotting the logs is ``erv_lab.curves``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from transformers import TrainerCallback

from erv_lab import policy as P
from erv_lab import reuse
from erv_lab.curves import arm_histories, read_log_history, write_log_history
from erv_lab.labels import vocabulary

ARMS = ("baseline", "erv")
BASELINE_REWARDS = ["format", "accuracy"]


# ---------------------------------------------------------------- data
def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def policy_dataset(ds, audio: str, with_target: bool):
    """Rows for TRL: ``prompt`` (conversation), ``images`` (frames [+ spectrogram]), ``solution``, ``dataset``,
    and for SFT ``completion`` (the cold-start rationale as an assistant turn)."""
    def row(ex):
        out = {"prompt": [{"role": "user", "content": P.prompt_text(ex, audio)}],
               "images": P.clip_images(ex, audio), "solution": ex["label"], "dataset": ex["dataset"],
               "clip_id": ex["clip_id"]}
        if with_target:
            out["completion"] = [{"role": "assistant", "content": ex["rationale"]}]
        return out

    return ds.map(row, remove_columns=ds.column_names)


def load_splits(cfg, run_dir: Path, dataset=None):
    if dataset is not None:
        return dataset
    from erv_lab.data import ensure_dataset

    return ensure_dataset(cfg, run_dir)


# ---------------------------------------------------------------- logging helpers
def _last_checkpoint(out: Path) -> str | None:
    ckpts = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return str(ckpts[-1]) if ckpts else None


def _peak_memory() -> dict:
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"peak_rss_mb": round(rss_mb, 1), "peak_gpu_mb": None if gpu is None else round(gpu, 1)}


class HistoryCallback(TrainerCallback):
    """Rewrites ``log_history.{json,csv}`` at every log; calls ``on_log_fn(history)`` (live plots)."""

    def __init__(self, out: Path, on_log_fn: Callable | None = None):
        self.out, self.on_log_fn = out, on_log_fn

    def on_log(self, args, state, control, logs=None, **kw):
        if state.is_world_process_zero:
            write_log_history(state.log_history, self.out)
            if self.on_log_fn is not None:
                self.on_log_fn(state.log_history)


class CrashAt(TrainerCallback):
    """Raise at a given step: simulates an interruption (tests of resume)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kw):
        if state.global_step >= self.step:
            raise KeyboardInterrupt(f"simulated interruption at step {state.global_step}")


def _finish(trainer, out: Path, t0: float, steps0: int, extra: dict) -> dict:
    steps = trainer.state.global_step - steps0
    seconds = time.perf_counter() - t0
    metrics = {"global_step": trainer.state.global_step, "steps_this_run": steps, "seconds": round(seconds, 1),
               "seconds_per_step": round(seconds / max(steps, 1), 3), **_peak_memory(),
               "device": "cuda" if torch.cuda.is_available() else "cpu", "threads": torch.get_num_threads(),
               **extra}
    if trainer.accelerator.is_main_process:
        write_log_history(trainer.state.log_history, out)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


# ---------------------------------------------------------------- stale stages
def sft_seed(cfg) -> int:
    """The cold start's seed: ``sft.seed``, else ``grpo.seed`` (one seed for the whole run, as before)."""
    return cfg.grpo.seed if cfg.sft.seed is None else cfg.sft.seed


def stage_settings(cfg, stage: str, arm: str | None = None) -> dict:
    """The settings a stage's result depends on: SFT on data + policy + sft (+ the seed), a GRPO arm on
    the SFT settings + grpo (but logging/saving intervals) + reward + the arm. Saved as ``settings.json``
    beside the stage's output."""
    import dataclasses

    sft = {"data": dataclasses.asdict(cfg.data), "policy": dataclasses.asdict(cfg.policy),
           "sft": {k: v for k, v in dataclasses.asdict(cfg.sft).items() if k not in ("seed", "logging_steps")},
           "seed": sft_seed(cfg)}  # the effective seed; logging does not change the model
    if stage == "sft":
        return json.loads(json.dumps(sft, default=str))
    grpo = {k: v for k, v in dataclasses.asdict(cfg.grpo).items()
            if k not in ("logging_steps", "save_steps", "degenerate_lesson")}
    return json.loads(json.dumps({"sft": sft, "grpo": grpo,
                                  "reward": dataclasses.asdict(cfg.reward), "arm": arm}, default=str))


def _settings_match(out: Path, settings: dict) -> bool:
    return reuse.matches(out, settings)


def _finished(out: Path, settings: dict) -> bool:
    """``out/final`` exists and was trained with ``settings``: reuse it."""
    return (out / "final" / "policy.json").exists() and _settings_match(out, settings)


def _claim_stage(out: Path, settings: dict) -> None:
    """Before a stage (re)builds anything in ``out``: move a stale ``out`` aside, then record ``settings``."""
    if _is_main():
        check_stage(out, settings)
        reuse.record(out, settings)
    else:
        out.mkdir(parents=True, exist_ok=True)


def check_stage(out: Path, settings: dict) -> None:
    """Keep ``out`` when it was made with ``settings`` (reuse / resume); otherwise move it aside to
    ``<out>.stale`` with a warning naming what changed (``erv_lab.reuse``), so that the stage retrains
    instead of silently reusing a model trained with other settings."""
    reuse.check(out, settings, artefacts=("final", "init", "checkpoint-*"), what="training again", stacklevel=4)


# ---------------------------------------------------------------- cold-start SFT
def build_initial_policy(cfg, train_ds, out: Path):
    """Tokenizer + processor + model before SFT; for the tiny class, after the vision warm-up.

    Saved to ``out/init`` so an interrupted SFT resumes with the very same tokenizer and start point.
    """
    init = out / "init"
    pcfg = cfg.policy
    _claim_stage(out, stage_settings(cfg, "sft"))
    if (init / "policy.json").exists():
        return init, json.loads((init / "policy.json").read_text())
    if pcfg.kind == "hub":  # the Hub id is the start point: pretrained, nothing to build or warm up
        return pcfg.model_name, {"kind": "hub", "model_name": pcfg.model_name, "warmup": None}
    corpus = list(train_ds["rationale"]) + list(train_ds["prosody"])
    processor = P.build_processor(P.train_tokenizer(corpus), pcfg.image_size)
    model = P.build_tiny_policy(pcfg, processor, seed=sft_seed(cfg))
    labels = list(dict.fromkeys(lab for ds in sorted(set(train_ds["dataset"])) for lab in vocabulary(ds)))  # all datasets
    warm = P.warmup_vision(model, processor, train_ds, labels, pcfg.vision_warmup_epochs, seed=sft_seed(cfg),
                          audio=pcfg.audio)
    meta = {"kind": "tiny-llava", "image_size": pcfg.image_size, "warmup": warm,
            "parameters": P.count_parameters(model)}
    P.save_policy(model, processor, init, meta)
    return init, meta


def _trainable_policy(start, cfg):
    """Model to train from ``start`` (a folder or Hub id): full, LoRA, or 4-bit NF4 + LoRA (QLoRA); a folder
    holding a QLoRA adapter (the SFT stage's) is continued on its base."""
    if (Path(str(start)) / "adapter_config.json").exists():
        return P.continue_adapter(start, cfg.policy)  # only LoRA weights train; the vision tower stays frozen
    model = P.load_base(start, cfg.policy)
    if cfg.policy.freeze_vision:  # keep the warmed-up (or pretrained) encoder; train projector + LM
        for p in P.vision_tower(model)[0].parameters():
            p.requires_grad_(False)
    if cfg.policy.lora_r > 0:
        model = P.with_lora(model, cfg.policy)
    return model


def sft_args(cfg, out: Path):
    """``trl.SFTConfig`` from ``cfg.sft``: cosine schedule with warm-up, as in the paper's cold start."""
    from trl import SFTConfig

    s = cfg.sft
    return SFTConfig(
        output_dir=str(out), num_train_epochs=s.epochs, learning_rate=s.learning_rate,
        per_device_train_batch_size=s.batch_size, lr_scheduler_type="cosine",
        warmup_steps=s.warmup_ratio,  # transformers 5 folded warmup_ratio into warmup_steps: a float < 1 is a ratio
        max_length=None,  # VLM rows are not truncated (image tokens must stay whole); rationales are short
        logging_steps=s.logging_steps or max(1, min(10, cfg.grpo.logging_steps)), save_strategy="steps", save_steps=50,
        save_total_limit=2, report_to=cfg.report_to, seed=sft_seed(cfg), use_cpu=not torch.cuda.is_available(),
        **P.precision_flags(), remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=False)


def ensure_sft(cfg, run_dir: str | Path, dataset=None, callbacks: Sequence = (), on_log: Callable | None = None,
               force: bool = False, name: str = "sft") -> Path:
    """Cold-start SFT on the train split's rationales -> ``run_dir/sft/final`` (reused when present).

    Loss: next-token cross-entropy on the completion only (``<think>…</think>\\n<answer>…</answer>``).
    """
    from trl import SFTTrainer

    out = Path(run_dir) / name
    final = out / "final"
    settings = stage_settings(cfg, "sft")
    if _finished(out, settings) and not force:
        return final
    train_ds = load_splits(cfg, Path(run_dir), dataset)["train"]
    empty = sum(1 for r in train_ds["rationale"] if not (r or "").strip())
    if empty:  # real DFEW/MAFW ship no rationales: refuse rather than cold-start on empty completions
        raise ValueError(
            f"cold-start SFT needs a rationale per training clip, and {empty} of {len(train_ds)} have none. "
            "DFEW and MAFW ship labels only (the paper's cold start used EMER-style rationales). Put one rationale "
            "per clip in <data.root>/synth_meta/clips.jsonl (rows {\"clip_id\", \"rationale\"}, the layout "
            "erv-lab synth writes; data_cards/dfew.md) and build the dataset again.")
    _claim_stage(out, settings)
    P.seed_everything(sft_seed(cfg))
    start, meta = build_initial_policy(cfg, train_ds, out)
    processor = P.load_processor(start) if meta["kind"] == "tiny-llava" else P.hub_processor(start)
    model = _trainable_policy(start, cfg)
    args = sft_args(cfg, out)
    trainer = SFTTrainer(model=model, args=args, processing_class=processor,
                         train_dataset=policy_dataset(train_ds, cfg.policy.audio, with_target=True),
                         callbacks=[HistoryCallback(out, on_log), *callbacks])
    resume = _last_checkpoint(out)
    steps0 = int(resume.rsplit("-", 1)[1]) if resume else 0
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    metrics = _finish(trainer, out, t0, steps0, {"stage": "sft", "preset": cfg.preset})
    if trainer.accelerator.is_main_process:
        P.save_policy(trainer.model, processor, final, {**meta, "stage": "sft", "metrics": metrics})
    return final


# ---------------------------------------------------------------- GRPO
def arm_rewards(cfg, arm: str, run_dir: str | Path | None = None, verifier=None):
    """``(funcs, weights)`` for one arm.

    erv: ``cfg.reward.rewards`` / ``cfg.reward.weights`` (format + accuracy + explanation in the paper).
    baseline: format + accuracy (R1-Omni style); the ERV arm's other rewards are still *computed and logged*
    with weight 0, so both arms' explanation curves can be compared, but they never reach the advantage.
    """
    import copy

    from erv_lab.rewards import build_reward_funcs

    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; valid: {', '.join(ARMS)}")
    c = copy.deepcopy(cfg)
    if verifier is None and any(n not in BASELINE_REWARDS for n in c.reward.rewards):
        from erv_lab.verifier import ensure_verifier

        verifier = ensure_verifier(cfg, Path(run_dir or f"runs/{cfg.preset}"))
    funcs, weights = build_reward_funcs(c, verifier)
    if arm == "baseline":
        weights = [w if n in BASELINE_REWARDS else 0.0 for n, w in zip(c.reward.rewards, weights)]
    return funcs, weights


def group_advantages(rewards: Sequence[float], num_generations: int, eps: float = 1e-4) -> list[float]:
    """The paper's advantage: within each group of G completions of one prompt, A = (r - mean) / (std + eps).

    >>> [round(a, 3) for a in group_advantages([3, 1, 2, 2], 2)]  # std of (3, 1) is sqrt(2)
    [0.707, -0.707, 0.0, 0.0]
    """
    r = torch.tensor(rewards, dtype=torch.float64).view(-1, num_generations)  # (prompts, G)
    adv = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + eps)  # Bessel-corrected std, as TRL
    return adv.flatten().tolist()


def _make_grpo_trainer_class():
    from trl import GRPOTrainer

    class LoggingGRPOTrainer(GRPOTrainer):
        """GRPOTrainer that appends the latest generation batch (completion, every reward part, advantage)
        to ``completions.jsonl`` at each logging step: contiguous rows of G share a prompt."""

        completions_path: Path | None = None
        keep_per_log: int = 64

        _meta: dict = {}

        def _generate_and_score_completions(self, inputs):
            from accelerate.utils import gather_object

            self._meta = {k: gather_object([x.get(k) for x in inputs]) for k in ("solution", "clip_id")}
            return super()._generate_and_score_completions(inputs)

        def _get_per_token_logps_and_entropies(self, model, *args, batch_num_images=None, **kwargs):
            # LLaVA-OneVision needs ``batch_num_images`` (several images per prompt -> no tiling, as its processor
            # counted the image tokens); TRL 1.16 drops it. Prompts here all carry the same number of images, so a
            # forward pre-hook adds it to every chunk TRL sends through the model.
            counts = kwargs.get("num_images")
            if not counts or kwargs.get("pixel_values") is None or \
                    getattr(getattr(model, "config", None), "model_type", "") != "llava_onevision":
                return super()._get_per_token_logps_and_entropies(model, *args, **kwargs)
            if len(set(counts)) != 1:
                raise ValueError(f"LLaVA-OneVision prompts with different image counts in one batch: {set(counts)}")

            def add_counts(module, fargs, fkwargs):
                fkwargs.setdefault("batch_num_images", [counts[0]] * fkwargs["input_ids"].shape[0])
                return fargs, fkwargs

            handle = model.register_forward_pre_hook(add_counts, with_kwargs=True)
            try:
                return super()._get_per_token_logps_and_entropies(model, *args, **kwargs)
            finally:
                handle.remove()

        def log(self, logs, start_time=None):
            rows = []
            if self.accelerator.is_main_process and "loss" in logs and self.completions_path is not None:
                L = self._logs
                n = len(L["completion"])
                for i in range(max(0, n - self.keep_per_log), n):
                    comp = L["completion"][i]
                    text = comp[0]["content"] if isinstance(comp, list) else comp
                    rows.append({"step": self.state.global_step, "index": i, "completion": text,
                                 "advantage": float(L["advantages"][i]),
                                 **{k: v[i - n] for k, v in self._meta.items() if len(v) >= n - i},
                                 **{f"reward/{k}": float(v[i]) for k, v in L["rewards"].items()}})
            super().log(logs, start_time)
            if rows:
                with open(self.completions_path, "a") as f:
                    for r in rows:
                        f.write(json.dumps(r) + "\n")

    return LoggingGRPOTrainer


def grpo_args(cfg, out: Path, **overrides):
    """``trl.GRPOConfig`` from ``cfg.grpo``. Each optimisation step sees ``prompts_per_step`` prompts x G."""
    from trl import GRPOConfig

    g = cfg.grpo
    per_device = max(g.num_generations, g.prompts_per_step * g.num_generations // _world_size())
    accumulate = 1
    chunked = {}
    if g.micro_batch and g.micro_batch < per_device:  # same rollouts per step, fewer per generate/backward pass
        if per_device % g.micro_batch:
            raise ValueError(f"grpo.micro_batch={g.micro_batch} must divide the {per_device} completions per device")
        per_device, accumulate = g.micro_batch, per_device // g.micro_batch
        chunked = {"steps_per_generation": 1}  # generate micro_batch rollouts at a time (TRL: all at once)
    kw = dict(
        output_dir=str(out), max_steps=g.max_steps, num_train_epochs=g.num_train_epochs,
        learning_rate=g.learning_rate, beta=g.beta, num_generations=g.num_generations,
        per_device_train_batch_size=per_device, gradient_accumulation_steps=accumulate,
        gradient_checkpointing=g.gradient_checkpointing, temperature=g.temperature,
        max_completion_length=g.max_completion_length, seed=g.seed, data_seed=g.seed,
        logging_steps=g.logging_steps, save_strategy="steps", save_steps=g.save_steps, save_total_limit=2,
        report_to=cfg.report_to, use_cpu=not torch.cuda.is_available(), **P.precision_flags(),
        remove_unused_columns=False, lr_scheduler_type="constant_with_warmup",
        warmup_steps=0, log_completions=False, dataloader_num_workers=0,
        loss_type=g.loss_type, disable_dropout=g.disable_dropout, reward_weights=None, **chunked)
    kw.update(overrides)
    return GRPOConfig(**kw)


def ensure_grpo(cfg, run_dir: str | Path, arm: str, dataset=None, reward_funcs: tuple | None = None,
                callbacks: Sequence = (), on_log: Callable | None = None, force: bool = False,
                name: str | None = None) -> Path:
    """GRPO from the SFT model for one arm -> ``run_dir/<arm>/final`` (reused when present; resumes).

    Objective (per prompt, G samples, advantage A_i = (r_i - mean r) / (std r + eps)):
    maximise mean_t min(rho_t A_i, clip(rho_t, 1-eps, 1+eps) A_i) - beta KL(pi || pi_SFT).
    The reference pi_SFT is the SFT model itself (full FT, rebuilt by TRL from its saved path); for QLoRA,
    whose SFT adapter GRPO continues, TRL 1.16 keeps a frozen copy of that adapter as the reference.
    """
    out = Path(run_dir) / (name or arm)
    final = out / "final"
    settings = stage_settings(cfg, "grpo", arm)
    if _finished(out, settings) and not force:
        return final
    _claim_stage(out, settings)
    P.seed_everything(cfg.grpo.seed)
    sft = ensure_sft(cfg, run_dir, dataset=dataset)
    splits = load_splits(cfg, Path(run_dir), dataset)
    funcs, weights = reward_funcs if reward_funcs is not None else arm_rewards(cfg, arm, run_dir)
    processor = P.load_processor(sft)
    model = _trainable_policy(sft, cfg)  # from a saved path: TRL rebuilds the beta>0 reference from it
    args = grpo_args(cfg, out, reward_weights=list(weights))
    Trainer = _make_grpo_trainer_class()
    trainer = Trainer(model=model, reward_funcs=list(funcs), args=args, processing_class=processor,
                      train_dataset=policy_dataset(splits["train"], cfg.policy.audio, with_target=False),
                      callbacks=[HistoryCallback(out, on_log), *callbacks])
    trainer.completions_path = out / "completions.jsonl"
    resume = _last_checkpoint(out)
    steps0 = int(resume.rsplit("-", 1)[1]) if resume else 0
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    metrics = _finish(trainer, out, t0, steps0, {"stage": "grpo", "arm": arm, "preset": cfg.preset,
                                                 "rewards": [getattr(f, "__name__", str(f)) for f in funcs]})
    if trainer.accelerator.is_main_process:
        meta = json.loads((Path(sft) / "policy.json").read_text())
        P.save_policy(trainer.model, processor, final, {**meta, "stage": f"grpo-{arm}", "metrics": metrics})
    trainer.accelerator.wait_for_everyone()
    return final


def _grpo_worker(cfg, run_dir: str, arm: str, threads: int, dataset=None) -> str:
    """One arm in a worker process (``run_arms``): ``threads`` torch threads; its stdout/stderr (TRL's
    progress bar, warnings) go to ``run_dir/<arm>/train.log`` instead of the notebook server's terminal."""
    import sys

    check_stage(Path(run_dir) / arm, stage_settings(cfg, "grpo", arm))  # before the log goes in
    log = Path(run_dir) / arm / "train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(fh.fileno(), 1), os.dup2(fh.fileno(), 2)
        torch.set_num_threads(threads)
        return str(ensure_grpo(cfg, run_dir, arm, dataset=dataset))


def run_arms(cfg, run_dir: str | Path, arms: Sequence[str] = ARMS, parallel: bool | None = None,
             on_log: Callable | None = None, poll_seconds: float = 3.0, dataset=None) -> dict[str, Path]:
    """Train every arm (``ensure_grpo``) and return ``{arm: final}``.

    ``parallel`` (default: on a CPU with >= 2 cores, one process) runs the arms side by side in spawned
    worker processes with one torch thread each; a tiny policy cannot keep 2 cores busy, so
    this is faster than one arm after the other (cpu-tiny: 60 steps per arm in about 210 s instead of 290 s).
    The parent trains the SFT model and the verifier first, then follows both logs: a tqdm bar over the
    logged steps and ``on_log({arm: history})`` at every new logging step. On a GPU the arms run in turn.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    from erv_lab.envinfo import usable_cpus

    cores = usable_cpus()
    if parallel is None:
        parallel = not torch.cuda.is_available() and cores >= 2 and _world_size() == 1 and len(arms) > 1
    if not parallel:
        finals = {}
        for arm in arms:
            hook = None if on_log is None else (lambda h, arm=arm: on_log({**arm_histories(run_dir), arm: h}))
            finals[arm] = ensure_grpo(cfg, run_dir, arm, dataset=dataset, on_log=hook)
        return finals
    if all(_finished(run_dir / arm, stage_settings(cfg, "grpo", arm)) for arm in arms):
        if on_log is not None:  # nothing to train: no worker processes to start
            on_log(arm_histories(run_dir))
        return {arm: run_dir / arm / "final" for arm in arms}
    ensure_sft(cfg, run_dir, dataset=dataset)  # shared by the arms: never trained twice in parallel
    if any(n not in BASELINE_REWARDS for n in cfg.reward.rewards):
        from erv_lab.verifier import ensure_verifier

        ensure_verifier(cfg, run_dir, progress=False)
    threads = 1  # a tiny policy cannot use more; and one thread per arm on every machine gives the same numbers
    total = cfg.grpo.max_steps * len(arms) if cfg.grpo.max_steps > 0 else None
    seen: dict[str, int] = {}
    with ProcessPoolExecutor(len(arms), mp_context=get_context("spawn")) as pool, \
            tqdm(total=total, desc="GRPO " + " + ".join(arms) + " (logged steps)", unit="step") as bar:
        futures = {arm: pool.submit(_grpo_worker, cfg, str(run_dir), arm, threads, dataset) for arm in arms}
        while True:
            finished = all(f.done() for f in futures.values())
            hist = {arm: read_log_history(run_dir / arm) if (run_dir / arm / "log_history.json").exists() else []
                    for arm in arms}
            steps = {arm: max((r.get("step", 0) for r in h), default=0) for arm, h in hist.items()}
            if steps != seen:
                bar.update(sum(steps.values()) - bar.n)
                bar.set_postfix({arm: steps[arm] for arm in arms})
                seen = steps
                if on_log is not None and any(hist.values()):
                    on_log(hist)
            if finished:
                break
            time.sleep(poll_seconds)
        return {arm: Path(f.result()) for arm, f in futures.items()}  # re-raises a worker's error


def quick_eval(model, processor, ds, audio: str, n: int | None = None, max_new_tokens: int = 96) -> dict:
    """Greedy decoding on the first ``n`` rows of ``ds``: mean format and accuracy rewards (strict format)."""
    from erv_lab.rewards import accuracy_reward, format_reward

    rows = ds.select(range(min(n or len(ds), len(ds))))
    outs = P.generate(model, processor, rows, temperature=0.0, max_new_tokens=max_new_tokens, audio=audio)
    acc = accuracy_reward(outs, solution=rows["label"], dataset=rows["dataset"])
    fmt = format_reward(outs, strict=True)
    return {"n": len(outs), "accuracy": sum(acc) / len(acc), "format": sum(fmt) / len(fmt), "outputs": outs}


def audio_ablation(cfg, run_dir: str | Path, dataset=None, n: int | None = None) -> dict:
    """Greedy test accuracy of the SFT policy with the audio channel (``cfg.policy.audio``) vs without it
    (a second SFT run with ``audio="none"`` in ``run_dir/sft-audio-none``; same data, seed and steps)."""
    import copy

    splits = load_splits(cfg, Path(run_dir), dataset)
    out = {}
    for audio, name in ((cfg.policy.audio, "sft"), ("none", "sft-audio-none")):
        c = copy.deepcopy(cfg)
        c.policy.audio = audio
        model, processor = P.load_policy(ensure_sft(c, run_dir, dataset=dataset, name=name), c.policy)
        res = quick_eval(model, processor, splits["test"], audio, n, cfg.eval.max_new_tokens)
        out[audio] = {k: v for k, v in res.items() if k != "outputs"}
    (Path(run_dir) / "audio_ablation.json").write_text(json.dumps(out, indent=2))
    return out


# ---------------------------------------------------------------- recipes shown in notebook 04
def degenerate_config(cfg):
    """The prototype's first, degenerate recipe: the paper's lazy format regex, no anti-stuffing guard,
    no KL (beta 0) and lr 3e-4. Used to show reward hacking (notebook 04)."""
    import copy

    bad = copy.deepcopy(cfg)
    bad.reward.strict_format, bad.reward.anti_stuffing = False, False
    bad.grpo.beta, bad.grpo.learning_rate = 0.0, 3e-4
    return bad


def degenerate_lesson(cfg, run_dir: str | Path) -> tuple[Path, int] | None:
    """``(folder holding erv-degenerate/, its G)`` for notebook 04's reward-hacking lesson: trained here into
    ``run_dir`` when ``grpo.degenerate_lesson`` is on (one more GRPO run), else the shipped cpu-tiny run in
    ``erv_lab/reference_run/``; ``None`` when neither exists."""
    from erv_lab.config import load_config
    from erv_lab.paths import REFERENCE_DIR

    if cfg.grpo.degenerate_lesson:
        ensure_grpo(degenerate_config(cfg), run_dir, "erv", name="erv-degenerate")
        return Path(run_dir), cfg.grpo.num_generations
    if (REFERENCE_DIR / "erv-degenerate" / "log_history.json").exists():
        return REFERENCE_DIR, load_config("cpu-tiny").grpo.num_generations
    return None


# ---------------------------------------------------------------- CLI
def _cfg(args: argparse.Namespace):
    from erv_lab.config import load_config, run_dir

    cfg = load_config(args.preset, args.overrides)
    return cfg, run_dir(cfg, args.out)


def cli_sft(args: argparse.Namespace) -> int:
    cfg, rd = _cfg(args)
    final = ensure_sft(cfg, rd)
    print(json.dumps(json.loads((final / "policy.json").read_text()).get("metrics", {}), indent=2))
    print(f"SFT model: {final}")
    return 0


def cli_grpo(args: argparse.Namespace) -> int:
    cfg, rd = _cfg(args)
    final = ensure_grpo(cfg, rd, args.arm)
    if (final / "policy.json").exists():
        print(json.dumps(json.loads((final / "policy.json").read_text()).get("metrics", {}), indent=2))
    print(f"GRPO {args.arm} model: {final}")
    return 0
