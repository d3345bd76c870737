"""Cold-start SFT and GRPO (baseline vs ERV arm) with TRL's own trainers (notebooks 04 and 05).

    erv-lab train sft  --preset cpu-tiny                # -> runs/cpu-tiny/sft/final
    erv-lab train grpo --preset cpu-tiny --arm baseline  # format + accuracy      -> runs/cpu-tiny/baseline/
    erv-lab train grpo --preset cpu-tiny --arm erv       # + explanation (ERV)    -> runs/cpu-tiny/erv/

Both arms start from the SFT model with identical data, seeds, steps and hyperparameters; only the reward
weights differ. :func:`train_sft` / :func:`train_grpo` train unconditionally and resume from the last
checkpoint in their folder; whether a stage runs at all (its saved settings match, or the folder is moved
aside) is ``erv_lab.stages``. Logs per stage: ``log_history.{json,csv}``, ``completions/*.parquet`` (GRPO: TRL's
own completion logs, every reward part; ``erv_lab.trl_compat``), ``metrics.json`` (seconds/step, peak memory); the
curves also go to ``cfg.report_to`` (TensorBoard, trackio: :func:`tracking`). :func:`quick_eval` decodes a
few clips as a check after training; the held-out evaluation is ``erv_lab.stages.ensure_results``, reading the
logs ``erv_lab.curves``, drawing them ``erv_lab.plots``.
"""
from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from transformers import TrainerCallback

from erv_lab import policy as P
from erv_lab.curves import write_log_history
from erv_lab.labels import vocabulary
from erv_lab.precision import HalfPrecisionGuard, keep_trainables_fp32, trainable_snapshot
from erv_lab.trl_compat import grpo_trainer_class, local_trackio

ARMS = ("baseline", "erv")
BASELINE_REWARDS = ["format", "accuracy"]
SFT_SAVE_STEPS = 50  # an SFT checkpoint every 50 steps (a resumed run loses at most that)


# ---------------------------------------------------------------- data
def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def policy_dataset(ds, audio: str, with_target: bool, cues: bool = False):
    """Rows for TRL: ``prompt`` (conversation), ``images`` (frames [+ spectrogram]), ``solution``, ``dataset``,
    for SFT ``completion`` (the cold-start rationale as an assistant turn), and with ``cues`` the clip's cue
    list (what the grounding reward reads; TRL passes every column to the rewards)."""
    def row(ex):
        out = {"prompt": [{"role": "user", "content": P.prompt_text(ex, audio)}],
               "images": P.clip_images(ex, audio), "solution": ex["label"], "dataset": ex["dataset"],
               "clip_id": ex["clip_id"]}
        if with_target:
            out["completion"] = [{"role": "assistant", "content": ex["rationale"]}]
        if cues:
            out["cues"] = ex.get("cues")
        return out

    return ds.map(row, remove_columns=ds.column_names)


# ---------------------------------------------------------------- logging helpers
def _checkpoint_state(ckpt: Path) -> dict | None:
    """A checkpoint's ``trainer_state.json``; None when missing or cut short (the Trainer writes it last, so a
    checkpoint without it was interrupted while saving)."""
    try:
        return json.loads((Path(ckpt) / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return None


def _last_checkpoint(out: Path) -> str | None:
    """The newest *complete* checkpoint in ``out`` (a kill during a save leaves an incomplete one: skipped)."""
    ckpts = sorted((p for p in Path(out).glob("checkpoint-*") if p.name.split("-")[1].isdigit()),
                   key=lambda p: int(p.name.split("-")[1]), reverse=True)
    return next((str(p) for p in ckpts if _checkpoint_state(p) is not None), None)


def resume_note(out: Path, stage: str) -> str:
    """Where the stage in ``out`` stands for a restart: ``"resuming grpo baseline from checkpoint-3 (step 3 of
    6)"``, ``"grpo baseline: finished"`` or ``"grpo baseline: no checkpoint yet, starts from step 0"``."""
    if (Path(out) / "final" / "policy.json").exists():
        return f"{stage}: finished"
    ckpt = _last_checkpoint(out)
    if ckpt is None:
        return f"{stage}: no checkpoint yet, starts from step 0"
    state = _checkpoint_state(Path(ckpt))
    return f"resuming {stage} from {Path(ckpt).name} (step {state['global_step']} of {state.get('max_steps', '?')})"


def _say_resume(resume: str | None, out: Path, stage: str) -> None:
    if resume and _is_main():
        print(resume_note(out, stage), flush=True)


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


class StepLine(TrainerCallback):
    """In a notebook: one line, updated in place, instead of transformers' HTML table with a row per logged step
    (a 336-step SFT saved a 68-row table): ``sft: step 120 / 336 (36 %) · 0.61 s/step · about 2 min left``.
    Its last state is what a saved notebook keeps (no bar frozen at 0 %)."""

    def __init__(self, stage: str, min_seconds: float = 2.0):
        self.stage, self.min_seconds = stage, min_seconds
        self.handle, self.t0, self.step0, self.shown = None, 0.0, 0, -float("inf")

    def text(self, step: int, total: int, seconds: float, done: bool = False) -> str:
        n = step - self.step0
        rate = seconds / n if n else None
        head = f"{self.stage}: step {step} / {total} ({100 * step / max(total, 1):.0f} %)"
        if done:
            return f"{head} · done, {n} steps in {seconds:.0f} s" + (f" ({rate:.2f} s/step)" if rate else "")
        if rate is None:
            return head
        left = rate * max(total - step, 0)
        eta = f"{left:.0f} s" if left < 120 else f"{left / 60:.0f} min" if left < 7200 else f"{left / 3600:.1f} h"
        return f"{head} · {rate:.2f} s/step · about {eta} left"

    def _show(self, text: str) -> None:
        from IPython.display import Pretty, display

        if self.handle is None:
            self.handle = display(Pretty(text), display_id=True)
        else:
            self.handle.update(Pretty(text))

    def on_train_begin(self, args, state, control, **kw):
        self.t0, self.step0 = time.perf_counter(), state.global_step
        self._show(self.text(state.global_step, state.max_steps, 0.0))

    def on_step_end(self, args, state, control, **kw):
        if time.perf_counter() - self.shown >= self.min_seconds:
            self._show(self.text(state.global_step, state.max_steps, time.perf_counter() - self.t0))
            self.shown = time.perf_counter()

    def on_train_end(self, args, state, control, **kw):
        self._show(self.text(state.global_step, state.max_steps, time.perf_counter() - self.t0, done=True))


def notebook_progress(trainer, stage: str) -> None:
    """Swap transformers' notebook table (``NotebookProgressCallback``, chosen inside Jupyter) for a
    :class:`StepLine`; outside a notebook the trainer keeps its tqdm bar."""
    from transformers.utils.notebook import NotebookProgressCallback

    if any(isinstance(cb, NotebookProgressCallback) for cb in trainer.callback_handler.callbacks):
        trainer.remove_callback(NotebookProgressCallback)
        trainer.add_callback(StepLine(stage))


def _finish(trainer, out: Path, t0: float, steps0: int, extra: dict) -> dict:
    steps = trainer.state.global_step - steps0
    seconds = time.perf_counter() - t0
    metrics = {"global_step": trainer.state.global_step, "steps_this_run": steps, "seconds": round(seconds, 1),
               "seconds_per_step": round(seconds / max(steps, 1), 3), **_peak_memory(),
               "device": "cuda" if torch.cuda.is_available() else "cpu", "threads": torch.get_num_threads(),
               **extra}
    guard = getattr(trainer, "guard", None)
    if guard is not None and (guard.scale is not None or trainer.args.fp16 or trainer.args.bf16):
        metrics["half_precision"] = guard.summary()
    if trainer.accelerator.is_main_process:
        write_log_history(trainer.state.log_history, out)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


# ---------------------------------------------------------------- seeds
def sft_seed(cfg) -> int:
    """The cold start's seed: ``sft.seed``, else ``grpo.seed`` (one seed for the whole run, as before)."""
    return cfg.grpo.seed if cfg.sft.seed is None else cfg.sft.seed


# ---------------------------------------------------------------- cold-start SFT
def warmup_vision(model, processor, dataset, labels: Sequence[str], epochs: int, lr: float = 2e-3,
                  batch_size: int = 16, seed: int = 0, audio: str = "spectrogram") -> dict:
    """Warm the vision tower up as a *clip* classifier (stand-in for a pretrained encoder).

    Every image the policy will see for a clip (its frames and, with ``audio="spectrogram"``, the spectrogram)
    -> vision tower -> projector -> mean over patch tokens; the head reads [mean over frames || spectrogram]
    and is trained with cross-entropy on the clip's label. Training on frames alone cannot work: some classes
    differ only in the voice (fear vs surprise), so a frame classifier stalled at ~0.4 train accuracy, while this
    clip classifier reached ~0.9 test accuracy on cpu-tiny in about 8 s (docs/TRAINING.md).
    Returns train/held-out-free accuracy of the last epoch and seconds taken.
    """
    import time

    tower, proj = P.vision_tower(model)
    if epochs <= 0:
        return {"epochs": 0, "accuracy": None, "seconds": 0.0}
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    per_clip = [P.clip_images(ex, audio) for ex in dataset]
    k = len(per_clip[0])  # images per clip (frames [+ spectrogram])
    pix = processor.image_processor(images=[im for ims in per_clip for im in ims], return_tensors="pt")["pixel_values"]
    pix = pix.view(len(per_clip), k, *pix.shape[1:])  # (N, K, 3, H, W)
    y = torch.tensor([labels.index(ex["label"]) for ex in dataset])
    with_spec = audio == "spectrogram" and k > 1
    dim = proj.linear_2.out_features
    head = torch.nn.Linear(dim * (2 if with_spec else 1), len(labels))
    params = list(tower.parameters()) + list(proj.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr)
    tower.train(), proj.train()

    def clip_features(p):  # (B, K, 3, H, W) -> (B, D or 2D)
        f = proj(tower(p.flatten(0, 1)).last_hidden_state[:, 1:]).mean(1).view(p.shape[0], k, dim)
        return torch.cat([f[:, :-1].mean(1), f[:, -1]], -1) if with_spec else f.mean(1)

    acc = 0.0
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        correct = 0
        for s in range(0, len(y), batch_size):
            idx = order[s:s + batch_size]
            logits = head(clip_features(pix[idx]))  # (B, C)
            loss = torch.nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad(), loss.backward(), opt.step()
            correct += (logits.argmax(-1) == y[idx]).sum().item()
        acc = correct / len(y)
    return {"epochs": epochs, "accuracy": acc, "seconds": time.perf_counter() - t0}


def build_initial_policy(cfg, train_ds, out: Path):
    """Tokenizer + processor + model before SFT; for the tiny class, after the vision warm-up.

    Saved to ``out/init`` so an interrupted SFT resumes with the very same tokenizer and start point (made
    or reused by ``erv_lab.stages.initial_policy``, which first checks ``out``'s settings).
    """
    init = out / "init"
    pcfg = cfg.policy
    if (init / "policy.json").exists():
        return init, json.loads((init / "policy.json").read_text())
    if pcfg.kind == "hub":  # the Hub id is the start point: pretrained, nothing to build or warm up
        return pcfg.model_name, {"kind": "hub", "model_name": pcfg.model_name, "warmup": None}
    corpus = list(train_ds["rationale"]) + list(train_ds["prosody"])
    processor = P.build_processor(P.train_tokenizer(corpus), pcfg.image_size)
    model = P.build_tiny_policy(pcfg, processor, seed=sft_seed(cfg))
    labels = list(dict.fromkeys(lab for ds in sorted(set(train_ds["dataset"])) for lab in vocabulary(ds)))  # all datasets
    warm = warmup_vision(model, processor, train_ds, labels, pcfg.vision_warmup_epochs, seed=sft_seed(cfg),
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


def _checkpointing(on: bool) -> dict:
    """Gradient checkpointing under the name this transformers knows: ``activation_checkpointing`` since it
    deprecated ``gradient_checkpointing`` (TRL's configs still set the old one, which warned in every run)."""
    from transformers import TrainingArguments

    name = "activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ \
        else "gradient_checkpointing"
    return {name: on}


def tracking(cfg, out: Path) -> dict:
    """Where a trainer reports (``cfg.report_to`` as a list) and under which names: trackio files each stage as
    run ``<stage folder>`` (sft, baseline, erv, ...) of project ``erv-lab-<preset>``, locally (no Space: not
    ``trackio_space_id``, never a static Space; :func:`erv_lab.trl_compat.local_trackio` keeps notebooks from
    starting a dashboard). ``trackio show --project erv-lab-<preset>`` opens it."""
    return {"report_to": cfg.trackers, "project": f"erv-lab-{cfg.preset}", "run_name": Path(out).name,
            "trackio_static_space_id": False}


TRACKER_INSTALL = {"trackio": 'pip install "erv-lab[trackio]" (README: trackio)', "wandb": "pip install wandb",
                   "tensorboard": "pip install tensorboard"}


def require_trackers(cfg) -> None:
    """Refuse a ``report_to`` that names a tracker which is not installed, before a model is built, with the
    command that installs it (transformers would fail later, inside the Trainer)."""
    import importlib.util

    missing = [t for t in cfg.trackers if importlib.util.find_spec(t) is None]
    if missing:
        raise ImportError(f"report_to names {', '.join(missing)}, not installed here: "
                          + "; ".join(TRACKER_INSTALL.get(t, f"pip install {t}") for t in missing))


def sft_args(cfg, out: Path):
    """``trl.SFTConfig`` from ``cfg.sft``: cosine schedule with warm-up, as in the paper's cold start."""
    from trl import SFTConfig

    s = cfg.sft
    return SFTConfig(
        output_dir=str(out), num_train_epochs=s.epochs, learning_rate=s.learning_rate,
        per_device_train_batch_size=s.batch_size, lr_scheduler_type="cosine",
        warmup_steps=s.warmup_ratio,  # transformers 5 folded warmup_ratio into warmup_steps: a float < 1 is a ratio
        max_length=None,  # VLM rows are not truncated (image tokens must stay whole); rationales are short
        logging_steps=s.logging_steps or max(1, min(10, cfg.grpo.logging_steps)), save_strategy="steps",
        save_steps=SFT_SAVE_STEPS,
        save_total_limit=2, **tracking(cfg, out), seed=sft_seed(cfg), use_cpu=not torch.cuda.is_available(),
        **P.precision_flags(cfg.policy), remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=False,
        **_checkpointing(True))  # TRL's SFT default, under its current name


def require_rationales(train_ds) -> None:
    """Refuse to cold-start on empty completions: real DFEW/MAFW ship labels, not rationales."""
    empty = sum(1 for r in train_ds["rationale"] if not (r or "").strip())
    if empty:
        raise ValueError(
            f"cold-start SFT needs a rationale per training clip, and {empty} of {len(train_ds)} have none. "
            "DFEW and MAFW ship labels only (the paper's cold start used EMER-style rationales). Put one rationale "
            "per clip in <data.root>/synth_meta/clips.jsonl (rows {\"clip_id\", \"rationale\"}, the layout "
            "erv-lab synth writes; data_cards/dfew.md) and build the dataset again.")


def schedule(cfg, n_train: int) -> dict:
    """What a run will do, from its settings and the number of training clips: optimisation steps and checkpoint
    spacing of SFT and of each GRPO arm (printed in notebooks 04 and 05 before training starts)."""
    import math

    world = _world_size()
    per_epoch = math.ceil(n_train / (cfg.sft.batch_size * world))
    sft_steps = math.ceil(per_epoch * cfg.sft.epochs)
    g = cfg.grpo
    grpo_steps = g.max_steps if g.max_steps > 0 else math.ceil(n_train * g.num_train_epochs / g.prompts_per_step)
    return {"train_clips": n_train, "sft_steps": sft_steps, "sft_checkpoint_every": SFT_SAVE_STEPS, "grpo_steps_per_arm": grpo_steps,
            "grpo_checkpoint_every": g.save_steps, "rollouts_per_grpo_step": g.prompts_per_step * g.num_generations,
            "max_completion_length": g.max_completion_length}


def sft_trainer(cfg, out: Path, train_ds, start, meta: dict, callbacks: Sequence = (), on_log: Callable | None = None):
    """``(trainer, processor)``: TRL's ``SFTTrainer`` on the train split's rationales, its trainable parameters
    as they were before TRL's QLoRA cast (:func:`erv_lab.precision.keep_trainables_fp32`) and a
    :class:`~erv_lab.precision.HalfPrecisionGuard` attached."""
    from trl import SFTTrainer

    require_rationales(train_ds)
    require_trackers(cfg)
    processor = P.load_processor(start) if meta["kind"] == "tiny-llava" else P.hub_processor(start)
    model = _trainable_policy(start, cfg)
    guard = HalfPrecisionGuard()
    snapshot = trainable_snapshot(model)
    trainer = SFTTrainer(model=model, args=sft_args(cfg, out), processing_class=processor,
                         train_dataset=policy_dataset(train_ds, cfg.policy, with_target=True),
                         callbacks=[guard, HistoryCallback(out, on_log), *callbacks])
    keep_trainables_fp32(trainer.model, snapshot)
    trainer.guard = guard.attach(trainer)
    local_trackio(trainer)
    notebook_progress(trainer, "sft")
    return trainer, processor


def train_sft(cfg, out: Path, train_ds, start, meta: dict, callbacks: Sequence = (),
              on_log: Callable | None = None) -> Path:
    """Cold-start SFT from ``start`` (:func:`build_initial_policy`) on the train split's rationales ->
    ``out/final``; resumes from the last checkpoint in ``out``. Reuse and seeding are
    ``erv_lab.stages.ensure_sft``'s.

    Loss: next-token cross-entropy on the completion only (``<think>…</think>\\n<answer>…</answer>``).
    """
    trainer, processor = sft_trainer(cfg, out, train_ds, start, meta, callbacks, on_log)
    resume = _last_checkpoint(out)
    _say_resume(resume, out, "sft")
    steps0 = int(resume.rsplit("-", 1)[1]) if resume else 0
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    metrics = _finish(trainer, out, t0, steps0, {"stage": "sft", "preset": cfg.preset})
    if trainer.accelerator.is_main_process:
        P.save_policy(trainer.model, processor, out / "final", {**meta, "stage": "sft", "metrics": metrics})
    return out / "final"


# ---------------------------------------------------------------- GRPO
def needs_verifier(cfg) -> bool:
    """Whether the reward list has a reward that reads the verifier (both arms compute every reward)."""
    return any(n not in BASELINE_REWARDS for n in cfg.reward.rewards)


def arm_rewards(cfg, arm: str, verifier=None):
    """``(funcs, weights)`` for one arm; ``verifier`` (``erv_lab.stages.ensure_verifier``) when
    :func:`needs_verifier`.

    erv: ``cfg.reward.rewards`` / ``cfg.reward.weights`` (format + accuracy + explanation in the paper).
    baseline: format + accuracy (R1-Omni style); the ERV arm's other rewards are still *computed and logged*
    with weight 0, so both arms' explanation curves can be compared, but they never reach the advantage.
    """
    import copy

    from erv_lab.rewards import build_reward_funcs

    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; valid: {', '.join(ARMS)}")
    c = copy.deepcopy(cfg)
    if verifier is None and needs_verifier(c):
        raise ValueError(f"the rewards {c.reward.rewards} read the verifier: pass one (erv_lab.stages.ensure_verifier)")
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


def gdpo_advantages(rewards_per_func: Sequence[Sequence[float]], weights: Sequence[float], num_generations: int,
                    eps: float = 1e-4) -> list[float]:
    """GDPO's advantage (``grpo.multi_objective_aggregation: normalize_then_sum``, as TRL computes it): each
    reward is normalised within its group first, ``(r_k - mean_k) / (std_k + eps)``, the normalised rewards are
    summed with their weights, and the sums are normalised over the whole batch. A reward whose spread in a group
    is tiny (a format reward that is almost always 1) then weighs as much as one that varies a lot.

    >>> per_func = [[1, 1, 0.5], [1, 0, 1.0], [0, 1, 0.5]]  # 3 completions x (format, accuracy, explanation)
    >>> [round(a, 2) for a in group_advantages([sum(r) for r in per_func], 3)]  # GRPO: sums 2.5 > 2.0 > 1.5
    [1.0, 0.0, -1.0]
    >>> [round(a, 2) for a in gdpo_advantages(per_func, [1, 1, 1], 3)]  # GDPO: B's explanation weighs as A's answer
    [0.58, 0.58, -1.15]
    """
    r = torch.tensor(rewards_per_func, dtype=torch.float64)  # (completions, rewards)
    g = r.view(-1, num_generations, r.shape[1])
    norm = ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + eps)).view(-1, r.shape[1])
    total = (norm * torch.tensor(weights, dtype=torch.float64)).sum(1)
    return ((total - total.mean()) / (total.std() + eps)).tolist()


def grpo_args(cfg, out: Path, **overrides):
    """``trl.GRPOConfig`` from ``cfg.grpo``. Each optimisation step sees ``prompts_per_step`` prompts x G.

    TRL logs the completions itself (``log_completions``): at every logging step the last generation batch goes to
    ``out/completions/completions_<step>.parquet`` and, when ``report_to`` names trackio or wandb, to its table with
    the prompt's images (``log_multimodal`` is on only then: the parquet files never hold images). No rich table is
    printed (``num_completions_to_print=0``, which also keeps TRL from drawing a sample with ``random``)."""
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
        **_checkpointing(g.gradient_checkpointing), temperature=g.temperature,
        max_completion_length=g.max_completion_length, seed=g.seed, data_seed=g.seed,
        logging_steps=g.logging_steps, save_strategy="steps", save_steps=g.save_steps, save_total_limit=2,
        **tracking(cfg, out), use_cpu=not torch.cuda.is_available(), **P.precision_flags(cfg.policy),
        remove_unused_columns=False, lr_scheduler_type="constant_with_warmup",
        warmup_steps=0, log_completions=True, num_completions_to_print=0,
        log_multimodal=bool({"trackio", "wandb"} & set(cfg.trackers)), dataloader_num_workers=0,
        loss_type=g.loss_type, disable_dropout=g.disable_dropout, reward_weights=None,
        multi_objective_aggregation=g.multi_objective_aggregation, **chunked)
    kw.update(overrides)
    return GRPOConfig(**kw)


def grpo_trainer(cfg, out: Path, sft: Path, train_ds, funcs: Sequence, weights: Sequence[float],
                 callbacks: Sequence = (), on_log: Callable | None = None):
    """``(trainer, processor)``: TRL's ``GRPOTrainer`` (with ``erv_lab.trl_compat``'s override) from the SFT
    model ``sft``, its trainable parameters as they were before TRL's QLoRA cast and a
    :class:`~erv_lab.precision.HalfPrecisionGuard` attached. It writes its completion logs to
    ``out/completions/`` (:func:`grpo_args`; read back by ``erv_lab.curves.read_completions``)."""
    require_trackers(cfg)
    processor = P.load_processor(sft)
    model = _trainable_policy(sft, cfg)  # from a saved path: TRL rebuilds the beta>0 reference from it
    guard = HalfPrecisionGuard()
    snapshot = trainable_snapshot(model)
    trainer = grpo_trainer_class()(model=model, reward_funcs=list(funcs), processing_class=processor,
                                   args=grpo_args(cfg, out, reward_weights=list(weights)),
                                   train_dataset=policy_dataset(train_ds, cfg.policy, with_target=False,
                                                                cues="grounding" in cfg.reward.rewards),
                                   callbacks=[guard, HistoryCallback(out, on_log), *callbacks])
    keep_trainables_fp32(trainer.model, snapshot)
    trainer.guard = guard.attach(trainer)
    local_trackio(trainer)
    notebook_progress(trainer, f"grpo {out.name}")
    return trainer, processor


def train_grpo(cfg, out: Path, sft: Path, train_ds, funcs: Sequence, weights: Sequence[float], arm: str,
               callbacks: Sequence = (), on_log: Callable | None = None) -> Path:
    """GRPO from the SFT model ``sft`` for one arm -> ``out/final``; resumes from the last checkpoint in
    ``out``. Reuse and seeding are ``erv_lab.stages.ensure_grpo``'s.

    Objective (per prompt, G samples, advantage A_i = (r_i - mean r) / (std r + eps)):
    maximise mean_t min(rho_t A_i, clip(rho_t, 1-eps, 1+eps) A_i) - beta KL(pi || pi_SFT).
    The reference pi_SFT is the SFT model itself (full FT, rebuilt by TRL from its saved path); for QLoRA,
    whose SFT adapter GRPO continues, TRL 1.16 keeps a frozen copy of that adapter as the reference.
    """
    trainer, processor = grpo_trainer(cfg, out, sft, train_ds, funcs, weights, callbacks, on_log)
    resume = _last_checkpoint(out)
    _say_resume(resume, out, f"grpo {arm}")
    steps0 = int(resume.rsplit("-", 1)[1]) if resume else 0
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    metrics = _finish(trainer, out, t0, steps0, {"stage": "grpo", "arm": arm, "preset": cfg.preset,
                                                 "rewards": [getattr(f, "__name__", str(f)) for f in funcs]})
    if trainer.accelerator.is_main_process:
        meta = json.loads((Path(sft) / "policy.json").read_text())
        P.save_policy(trainer.model, processor, out / "final", {**meta, "stage": f"grpo-{arm}", "metrics": metrics})
    trainer.accelerator.wait_for_everyone()
    return out / "final"


def quick_eval(model, processor, ds, audio, n: int | None = None, max_new_tokens: int = 96) -> dict:
    """Greedy decoding on the first ``n`` rows of ``ds``: mean format and accuracy rewards (strict format), and
    the accuracy per true class (``per_class``, with ``per_class_n`` clips each).
    ``audio``: ``cfg.policy`` (its audio mode and frame mosaics, as training saw the clips) or an audio mode.
    A check after training (notebook 04), not the held-out evaluation (``erv_lab.stages.ensure_results``)."""
    from erv_lab.rewards import accuracy_reward, format_reward

    rows = ds.select(range(min(n or len(ds), len(ds))))
    outs = P.generate(model, processor, rows, temperature=0.0, max_new_tokens=max_new_tokens, audio=audio)
    acc = accuracy_reward(outs, solution=rows["label"], dataset=rows["dataset"])
    fmt = format_reward(outs, strict=True)
    per_class: dict[str, list[float]] = {}
    for y, a in zip(rows["label"], acc):
        per_class.setdefault(y, []).append(a)
    return {"n": len(outs), "accuracy": sum(acc) / len(acc), "format": sum(fmt) / len(fmt),
            "per_class": {y: round(sum(v) / len(v), 4) for y, v in sorted(per_class.items())},
            "per_class_n": {y: len(v) for y, v in sorted(per_class.items())}, "outputs": outs}


def grounding_config(cfg):
    """The grounding-reward ablation arm (beyond the paper): the preset's ERV recipe with the grounding reward
    (``rewards.grounding_reward``: the share of rationale sentences describing only cues the clip has) added at
    weight 1. Synthetic clips only; ``erv_lab.stages.grounding_ablation`` trains and scores it."""
    import copy

    c = copy.deepcopy(cfg)
    if "grounding" not in c.reward.rewards:
        c.reward.rewards, c.reward.weights = [*c.reward.rewards, "grounding"], [*c.reward.weights, 1.0]
    return c


def degenerate_config(cfg):
    """The recipe without the guards, used to show reward hacking (notebook 05): the paper's lazy format
    regex, no anti-stuffing guard, the paper's per-sequence loss (``loss_type="grpo"``; the course arms use
    TRL's ``dapo``), no KL (beta 0), ten times the preset's GRPO learning rate (1e-3 on cpu-tiny) and 11/6 of
    its steps (110 on cpu-tiny, about 2 minutes on 2 cores). Rewards, weights, G and temperature are the
    preset's. On cpu-tiny the policy then writes emotion-word soup (``"raised raised ... fear fear"``): the
    explanation reward pays it as much as the good arm's prose while most of its sentences are stuffed
    (docs/TRAINING.md). The prototype's lr 3e-4 with the course's loss did not hack in 60 steps."""
    import copy

    bad = copy.deepcopy(cfg)
    bad.reward.strict_format, bad.reward.anti_stuffing = False, False
    bad.grpo.beta, bad.grpo.learning_rate, bad.grpo.loss_type = 0.0, float(f"{10 * cfg.grpo.learning_rate:.3g}"), "grpo"
    if cfg.grpo.max_steps > 0:
        bad.grpo.max_steps = round(cfg.grpo.max_steps * 11 / 6)
    return bad
