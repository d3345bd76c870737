"""The two GRPO arms, side by side on a CPU: worker processes, their logs, one progress bar (notebook 05).

A tiny policy cannot keep 2 cores busy, so on a CPU the baseline and ERV arms train at the same time in
spawned worker processes with one torch thread each (cpu-tiny: 60 steps per arm in about 210 s instead of
290 s one after the other). Each arm is ``erv_lab.stages.ensure_grpo``, with its reuse rule and its stage lock
(``erv_lab.locks``); on a GPU, or with one core, the arms run in turn in this process.

The workers die with the process that started them (a killed ``erv-lab course``, a kernel restart, a Colab
disconnect): Linux's parent-death signal, and a watchdog thread that notices a new parent pid. Ctrl-C (a
notebook's interrupt) stops both workers and prints where each arm resumes; the next call resumes each arm
from its last checkpoint.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from erv_lab import stages
from erv_lab.curves import arm_histories, read_log_history
from erv_lab.locks import release_all, stage_lock
from erv_lab.train import ARMS, needs_verifier, resume_note

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """Worker initializer: end this worker when ``parent`` (the process that started it) goes away.

    On Linux, ``prctl(PR_SET_PDEATHSIG, SIGTERM)``: the kernel signals the worker when the thread that spawned
    it exits (``run_arms`` spawns from the thread that waits for the workers). Everywhere, a watchdog thread
    that exits once the worker's parent pid is no longer ``parent`` (reparented: the parent died). Ctrl-C is
    the parent's to handle (``run_arms`` then stops the workers), so a worker ignores SIGINT: a notebook's
    interrupt reaches the whole process group of its kernel. SIGTERM (:func:`stop_workers`, the parent-death
    signal) frees the worker's stage locks and exits at once."""
    import signal
    import threading

    def leave(*_):
        release_all()
        os._exit(1)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, leave)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl (an unusual libc): the watchdog alone
            pass

    def watchdog():
        while os.getppid() == parent:
            time.sleep(poll_s)
        leave()

    if os.getppid() != parent:  # died before the signal was armed
        leave()
    threading.Thread(target=watchdog, daemon=True, name="erv-lab parent watchdog").start()


def stop_workers(pool, run_dir: Path, arms: Sequence[str], timeout: float = 10.0) -> None:
    """Stop the workers of ``pool`` now (SIGTERM, then SIGKILL after ``timeout`` s), wait for them, and print
    where each arm will resume (``train.resume_note``: its last checkpoint)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join(timeout)
    pool.shutdown(wait=True, cancel_futures=True)
    print("GRPO workers stopped; run this again to continue:", flush=True)
    for arm in arms:
        print("  " + resume_note(Path(run_dir) / arm, f"grpo {arm}"), flush=True)


def _grpo_worker(cfg, run_dir: str, arm: str, threads: int, dataset=None) -> str:
    """One arm in a worker process: ``threads`` torch threads; its stdout/stderr (TRL's progress bar,
    warnings) go to ``run_dir/<arm>/train.log`` instead of the notebook server's terminal."""
    import torch

    out = Path(run_dir) / arm
    with stage_lock(out):  # the arm's lock from the settings check on (ensure_grpo takes it again)
        stages.check_stage(out, stages.stage_settings(cfg, "grpo", arm))  # before the log goes in
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "train.log", "a") as fh:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(fh.fileno(), 1), os.dup2(fh.fileno(), 2)
            torch.set_num_threads(threads)
            return str(stages.ensure_grpo(cfg, run_dir, arm, dataset=dataset))


def run_arms(cfg, run_dir: str | Path, arms: Sequence[str] = ARMS, parallel: bool | None = None,
             on_log: Callable | None = None, poll_seconds: float = 3.0, dataset=None) -> dict[str, Path]:
    """Train every arm (``stages.ensure_grpo``) and return ``{arm: final}``.

    ``parallel`` (default: on a CPU with >= 2 usable cores, one process) runs the arms in spawned workers;
    the parent trains the SFT model and the verifier first (never twice in parallel), then follows both logs:
    a tqdm bar over the logged steps and ``on_log({arm: history})`` at every new logging step. An arm with a
    checkpoint resumes from it (and says so); on Ctrl-C, or any error here, the workers are stopped
    (:func:`stop_workers`) before the exception goes on.
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
    for arm in arms:  # the workers' own output goes to their train.log: say it here
        note = resume_note(run_dir / arm, f"grpo {arm}")
        if note.startswith("resuming"):
            print(note, flush=True)
    pool = ProcessPoolExecutor(len(arms), mp_context=get_context("spawn"), initializer=_die_with_parent,
                               initargs=(os.getpid(),))
    try:
        futures = {arm: pool.submit(_grpo_worker, cfg, str(run_dir), arm, threads, dataset) for arm in arms}
        _follow(futures, run_dir, arms, total, on_log, poll_seconds, tqdm)
    except BaseException:  # Ctrl-C (KeyboardInterrupt), a failing on_log: no worker trains on unattended
        stop_workers(pool, run_dir, arms)
        raise
    finally:
        pool.shutdown(wait=True)
    return {arm: Path(f.result()) for arm, f in futures.items()}  # re-raises a worker's error


def _follow(futures: dict, run_dir: Path, arms: Sequence[str], total, on_log, poll_seconds: float, tqdm) -> None:
    """Until every worker is done: a tqdm bar over the logged steps, ``on_log({arm: history})`` on new ones."""
    seen: dict[str, int] = {}
    with tqdm(total=total, desc="GRPO " + " + ".join(arms) + " (logged steps)", unit="step") as bar:
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
