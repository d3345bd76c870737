"""Interrupt anywhere (issue 24): the arm workers die with their parent, Ctrl-C stops them and says where each
arm resumes, one trainer per stage folder, and a run killed mid-GRPO resumes to the uninterrupted run's results.

One child process (``interrupted``, shared by the slow tests) runs ``arms.run_arms`` on the smoke preset as a
notebook would: it is interrupted with SIGINT to its process group (a notebook's interrupt) once both arms
have a checkpoint, calls ``run_arms`` again, and is SIGKILLed mid-GRPO (a kernel restart, a killed course).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from erv_lab import arms as A
from erv_lab import stages as S
from erv_lab import train as T
from erv_lab.config import load_config

TESTS = Path(__file__).resolve().parent
OVERRIDES = ["grpo.max_steps=6", "grpo.save_steps=1", "grpo.logging_steps=1"]
PAUSE = 1.0  # seconds an arm worker of the child sleeps per logged step: room to interrupt it mid-GRPO

CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import fake_clips
from erv_lab import arms, train
from erv_lab.config import load_config

if __name__ == "__mp_main__":  # in an arm worker (spawn runs this file under that name): slower steps
    _on_log = train.HistoryCallback.on_log

    def on_log(self, *args, **kw):
        time.sleep({pause})
        return _on_log(self, *args, **kw)
    train.HistoryCallback.on_log = on_log

if __name__ == "__main__":
    cfg = load_config("smoke", {overrides!r})
    splits = {{"train": fake_clips(n_per_class=2), "test": fake_clips(n_per_class=1, seed=1)}}
    try:
        arms.run_arms(cfg, {run!r}, parallel=True, poll_seconds=0.1, dataset=splits)
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
    print("AGAIN", flush=True)
    arms.run_arms(cfg, {run!r}, parallel=True, poll_seconds=0.1, dataset=splits)
    print("FINISHED", flush=True)
"""


def splits(make_clips):
    return {"train": make_clips(n_per_class=2), "test": make_clips(n_per_class=1, seed=1)}


def step(out: Path) -> int:
    """The step of the last complete checkpoint in ``out`` (0: none)."""
    ckpt = T._last_checkpoint(out) if out.is_dir() else None
    return int(ckpt.rsplit("-", 1)[1]) if ckpt else 0


def wait_for(cond, timeout: float, poll: float = 0.05):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(poll)
    return False


def alive(procs) -> list[int]:
    """The pids of ``procs`` (``psutil.Process``: a reused pid is not theirs) still running."""
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def command(p) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """Run the child; Ctrl-C it once both arms have a checkpoint; SIGKILL it once both arms have gone further.
    Returns what happened (the tests assert on it), whatever the code under test did."""
    base = tmp_path_factory.mktemp("interrupted")
    run, log = base / "run", base / "child.log"
    script = base / "child.py"
    script.write_text(CHILD.format(tests=str(TESTS), pause=PAUSE, overrides=OVERRIDES, run=str(run)))
    arms = ("baseline", "erv")
    rec = {"run": run, "log": log}
    with open(log, "w") as fh:
        child = subprocess.Popen([sys.executable, str(script)], stdout=fh, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # its own process group, as a notebook kernel
    try:
        def tree():
            try:
                return psutil.Process(child.pid).children(recursive=True)
            except psutil.Error:
                return []
        if not wait_for(lambda: all(step(run / a) >= 1 for a in arms) or child.poll() is not None, 300) \
                or child.poll() is not None:
            pytest.fail(f"the arms never saved a checkpoint:\n{log.read_text()[-3000:]}")
        rec["first_workers"] = [p for p in tree() if "spawn_main" in command(p)]  # the arm workers only
        rec["first_steps"] = {a: step(run / a) for a in arms}
        t0 = time.monotonic()
        os.killpg(child.pid, signal.SIGINT)  # Ctrl-C / a notebook's interrupt: the whole process group
        wait_for(lambda: "INTERRUPTED" in log.read_text(), 60)
        rec["interrupt_seconds"] = time.monotonic() - t0
        rec["alive_after_interrupt"] = alive(rec["first_workers"])
        rec["after_interrupt"] = log.read_text()
        rec["steps_after_interrupt"] = {a: step(run / a) for a in arms}
        further = lambda: all(step(run / a) > rec["steps_after_interrupt"][a] for a in arms)  # noqa: E731
        wait_for(lambda: further() or child.poll() is not None, 240)
        rec["killed_mid_grpo"] = further() and not any((run / a / "final").exists() for a in arms)
        rec["workers"] = tree()
        child.kill()  # SIGKILL to the parent alone: its workers get no signal from us
        rec["killed_at"] = time.monotonic()
        child.wait()
        rec["log_text"] = log.read_text()
        yield rec
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for p in rec.get("workers", []) + rec.get("first_workers", []):  # old code: orphans
            if alive([p]):
                p.kill()  # psutil checks that the pid is still this process's


@pytest.mark.slow
def test_ctrl_c_stops_both_workers_and_says_where_each_arm_resumes(interrupted):
    rec = interrupted
    assert "INTERRUPTED" in rec["after_interrupt"], rec["after_interrupt"][-3000:]
    assert len(rec["first_workers"]) == 2 and rec["alive_after_interrupt"] == []  # stopped, not left training
    assert rec["interrupt_seconds"] < 20
    for arm in ("baseline", "erv"):
        n = rec["steps_after_interrupt"][arm]
        assert f"resuming grpo {arm} from checkpoint-{n} (step {n} of 6)" in rec["after_interrupt"]
        assert not (rec["run"] / arm / "final").exists()
    assert "resuming grpo baseline from checkpoint-" in rec["log_text"].split("AGAIN", 1)[1]  # the restart says so


@pytest.mark.slow
def test_arm_workers_die_with_their_killed_parent(interrupted):
    rec = interrupted
    assert rec["killed_mid_grpo"], rec["log_text"][-3000:]
    assert len(rec["workers"]) >= 2  # the two arm workers (and the multiprocessing resource tracker)
    gone = wait_for(lambda: not alive(rec["workers"]), max(0.0, rec["killed_at"] + 10 - time.monotonic()), 0.2)
    assert gone, f"still running 10 s after their parent was killed: {alive(rec['workers'])}"
    assert not (rec["run"] / "baseline" / "final").exists() and not (rec["run"] / "erv" / "final").exists()


def _metrics(results: dict) -> dict:
    return {k: v for k, v in results.items() if k not in ("settings", "timings", "protocol")}


@pytest.mark.slow
def test_a_run_killed_mid_grpo_resumes_to_the_uninterrupted_results(interrupted, make_clips, tmp_path, capsys):
    from safetensors.torch import load_file

    run = interrupted["run"]
    assert wait_for(lambda: not alive(interrupted["workers"]), 15, 0.2), "the killed run's workers still train"
    cfg, data = load_config("smoke", OVERRIDES), splits(make_clips)
    ref = tmp_path / "uninterrupted"
    for name in ("sft", "verifier"):  # the same cold start and verifier: only the arms differ in history
        shutil.copytree(run / name, ref / name)
    A.run_arms(cfg, ref, parallel=True, poll_seconds=0.5, dataset=data)
    expected = S.ensure_results(cfg, ref, dataset=data)
    shutil.copytree(ref / "judge", run / "judge")  # the sibling judge: trained once
    at = {arm: step(run / arm) for arm in ("baseline", "erv")}
    capsys.readouterr()
    A.run_arms(cfg, run, parallel=True, poll_seconds=0.5, dataset=data)
    said = capsys.readouterr().out
    for arm, n in at.items():
        assert 0 < n < 6 and f"resuming grpo {arm} from checkpoint-{n} (step {n} of 6)" in said
        metrics = json.loads((run / arm / "metrics.json").read_text())
        assert metrics["global_step"] == 6 and metrics["steps_this_run"] == 6 - n  # resumed, not retrained
        a, b = (load_file(d / arm / "final" / "model.safetensors") for d in (ref, run))
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), f"{arm}: other weights after resuming"
    assert _metrics(S.ensure_results(cfg, run, dataset=data)) == _metrics(expected)


# ---------------------------------------------------------------- one trainer per stage folder
HOLDER = """
import sys, time
from erv_lab.locks import stage_lock
with stage_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold(folder: Path, seconds: float = 120) -> subprocess.Popen:
    """Another process holding ``folder``'s stage lock (as a trainer would), once it holds it."""
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_trainer_on_a_stage_folder_is_refused_naming_the_holder(tmp_path, make_clips, monkeypatch):
    from erv_lab.locks import StageBusy

    cfg, data = load_config("smoke"), splits(make_clips)
    holders = [hold(tmp_path / "sft"), hold(tmp_path / "baseline")]
    try:
        for holder, train in zip(holders, (lambda: S.ensure_sft(cfg, tmp_path, dataset=data),
                                           lambda: S.ensure_grpo(cfg, tmp_path, "baseline", dataset=data))):
            with pytest.raises(StageBusy, match=f"pid {holder.pid} on host {socket.gethostname()}"):
                train()
        assert not (tmp_path / "sft").exists() and not (tmp_path / "baseline").exists()  # nothing trained
        monkeypatch.setenv("RANK", "1")  # accelerate's other ranks follow rank 0's lock, never take it
        with S._stage_lock(tmp_path / "sft"):
            pass
    finally:
        for h in holders:
            h.kill(), h.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    from erv_lab.locks import lock_path, stage_lock

    holder = hold(tmp_path / "erv")
    holder.kill(), holder.wait()  # SIGKILL: no clean release, its pid stays in the lock file
    assert json.loads(lock_path(tmp_path / "erv").read_text())["pid"] == holder.pid
    with pytest.warns(UserWarning, match=f"took over the lock left by pid {holder.pid} on host"):
        with stage_lock(tmp_path / "erv"):
            assert json.loads(lock_path(tmp_path / "erv").read_text())["pid"] == os.getpid()
            with stage_lock(tmp_path / "erv"):  # the holder may take it again (a worker around ensure_grpo)
                pass
    assert lock_path(tmp_path / "erv").read_text() == ""  # released cleanly


def test_a_checkpoint_cut_short_by_a_kill_is_skipped_and_the_resume_point_is_said(tmp_path):
    out = tmp_path / "baseline"
    for n in (1, 2):
        (out / f"checkpoint-{n}").mkdir(parents=True)
    (out / "checkpoint-1" / "trainer_state.json").write_text(json.dumps({"global_step": 1, "max_steps": 6}))
    (out / "checkpoint-2" / "model.safetensors").write_text("half written")  # killed before trainer_state.json
    assert T._last_checkpoint(out).endswith("checkpoint-1")
    assert T.resume_note(out, "grpo baseline") == "resuming grpo baseline from checkpoint-1 (step 1 of 6)"
