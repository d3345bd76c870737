"""The two GRPO arms, side by side on a CPU: worker processes, their logs, one progress bar (notebook 05).

A tiny policy cannot keep 2 cores busy, so on a CPU the baseline and ERV arms train at the same time in
spawned worker processes with one torch thread each (cpu-tiny: 60 steps per arm in about 210 s instead of
290 s one after the other). Each arm is ``erv_lab.stages.ensure_grpo``, with its reuse rule; on a GPU, or
with one core, the arms run in turn in this process.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from erv_lab import stages
from erv_lab.curves import arm_histories, read_log_history
from erv_lab.train import ARMS, needs_verifier


def _grpo_worker(cfg, run_dir: str, arm: str, threads: int, dataset=None) -> str:
    """One arm in a worker process: ``threads`` torch threads; its stdout/stderr (TRL's progress bar,
    warnings) go to ``run_dir/<arm>/train.log`` instead of the notebook server's terminal."""
    import torch

    stages.check_stage(Path(run_dir) / arm, stages.stage_settings(cfg, "grpo", arm))  # before the log goes in
    log = Path(run_dir) / arm / "train.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(fh.fileno(), 1), os.dup2(fh.fileno(), 2)
        torch.set_num_threads(threads)
        return str(stages.ensure_grpo(cfg, run_dir, arm, dataset=dataset))


def run_arms(cfg, run_dir: str | Path, arms: Sequence[str] = ARMS, parallel: bool | None = None,
             on_log: Callable | None = None, poll_seconds: float = 3.0, dataset=None) -> dict[str, Path]:
    """Train every arm (``stages.ensure_grpo``) and return ``{arm: final}``.

    ``parallel`` (default: on a CPU with >= 2 usable cores, one process) runs the arms in spawned workers;
    the parent trains the SFT model and the verifier first (never twice in parallel), then follows both logs:
    a tqdm bar over the logged steps and ``on_log({arm: history})`` at every new logging step.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    import torch
    from tqdm.auto import tqdm

    from erv_lab.envinfo import usable_cpus

    run_dir = Path(run_dir)
    if parallel is None:
        parallel = not torch.cuda.is_available() and usable_cpus() >= 2 and \
            int(os.environ.get("WORLD_SIZE", "1")) == 1 and len(arms) > 1
    if not parallel:
        finals = {}
        for arm in arms:
            hook = None if on_log is None else (lambda h, arm=arm: on_log({**arm_histories(run_dir), arm: h}))
            finals[arm] = stages.ensure_grpo(cfg, run_dir, arm, dataset=dataset, on_log=hook)
        return finals
    if all(stages.finished(run_dir / arm, stages.stage_settings(cfg, "grpo", arm)) for arm in arms):
        if on_log is not None:  # nothing to train: no worker processes to start
            on_log(arm_histories(run_dir))
        return {arm: run_dir / arm / "final" for arm in arms}
    stages.ensure_sft(cfg, run_dir, dataset=dataset)  # shared by the arms
    if needs_verifier(cfg):
        stages.ensure_verifier(cfg, run_dir, progress=False)
    threads = 1  # a tiny policy cannot use more; and one thread per arm on every machine gives the same numbers
    total = cfg.grpo.max_steps * len(arms) if cfg.grpo.max_steps > 0 else None
    seen: dict[str, int] = {}
    with ProcessPoolExecutor(len(arms), mp_context=get_context("spawn")) as pool, \
            tqdm(total=total, desc="GRPO " + " + ".join(arms) + " (logged steps)", unit="step") as bar:
        futures = {arm: pool.submit(_grpo_worker, cfg, str(run_dir), arm, threads, dataset) for arm in arms}
        while True:
            done = all(f.done() for f in futures.values())
            hist = {arm: read_log_history(run_dir / arm) if (run_dir / arm / "log_history.json").exists() else []
                    for arm in arms}
            steps = {arm: max((r.get("step", 0) for r in h), default=0) for arm, h in hist.items()}
            if steps != seen:
                bar.update(sum(steps.values()) - bar.n)
                bar.set_postfix({arm: steps[arm] for arm in arms})
                seen = steps
                if on_log is not None and any(hist.values()):
                    on_log(hist)
            if done:
                break
            time.sleep(poll_seconds)
        return {arm: Path(f.result()) for arm, f in futures.items()}  # re-raises a worker's error
