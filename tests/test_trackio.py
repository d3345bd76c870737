"""trackio as an optional tracker (``pip install "erv-lab[trackio]"``): a smoke GRPO run with
``report_to: [tensorboard, trackio]`` writes trackio's local store, with TRL's completions table in it, and tries
no network. Skipped where trackio is not installed."""
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from erv_lab.config import load_config

REPO = Path(__file__).resolve().parent.parent
# Each of these sends trackio's logs somewhere else than the local store (a Space, a server, a bucket, a dataset).
NETWORK_VARS = ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL", "TRACKIO_BUCKET_ID", "TRACKIO_DATASET_ID", "SPACE_ID",
                "SYSTEM", "TRACKIO_WEBHOOK_URL")

SCRIPT = """
import json, socket, sys
sys.path.insert(0, {tests!r})
attempts = []
_connect = socket.socket.connect


def guard(sock, address):  # no connection leaves the machine; local (unix) sockets pass
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        attempts.append(repr(address))
        raise OSError("network disabled in this test")
    return _connect(sock, address)


socket.socket.connect = guard
socket.socket.connect_ex = lambda sock, address: guard(sock, address) or 0
from conftest import fake_clips
from erv_lab import stages as S
from erv_lab import train as T
from erv_lab.config import load_config


class StubVerifier:
    def predict_proba(self, texts):
        import numpy as np
        return np.full((len(texts), 28), 0.2)


cfg = load_config("smoke", ["report_to=[tensorboard,trackio]", "grpo.max_steps=2", "grpo.logging_steps=1"])
splits = {{"train": fake_clips(n_per_class=2), "test": fake_clips(n_per_class=1, seed=1)}}
S.ensure_grpo(cfg, {run!r}, "erv", dataset=splits, reward_funcs=T.arm_rewards(cfg, "erv", StubVerifier()))
json.dump(attempts, open({attempts!r}, "w"))
"""


def test_report_to_accepts_a_list_and_names_trackio_runs_per_stage(tmp_path):
    from erv_lab import train as T

    cfg = load_config("smoke", ["report_to=[tensorboard,trackio]"])
    assert cfg.trackers == ["tensorboard", "trackio"] and load_config("smoke", ["report_to=none"]).trackers == []
    args = T.grpo_args(cfg, tmp_path / "erv")
    assert args.report_to == ["tensorboard", "trackio"] and (args.project, args.run_name) == ("erv-lab-smoke", "erv")
    assert args.log_completions and args.num_completions_to_print == 0 and args.log_multimodal
    assert args.trackio_space_id is None and args.trackio_static_space_id is False  # local, never a Space
    assert not T.grpo_args(load_config("smoke"), tmp_path / "erv").log_multimodal  # images only for a table
    with pytest.raises(ValueError, match="report_to"):
        load_config("smoke", ["report_to=[tensorboard,mlflow]"])


@pytest.mark.slow
def test_smoke_grpo_run_writes_trackios_local_store_with_the_completions_table(tmp_path):
    pytest.importorskip("trackio") if not os.environ.get("CI") else __import__("trackio")  # make venv installs it; CI must run this
    store, attempts = tmp_path / "trackio", tmp_path / "attempts.json"
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(REPO / "tests"), run=str(tmp_path / "run"), attempts=str(attempts)))
    env = {k: v for k, v in os.environ.items() if k not in NETWORK_VARS}
    env.update(TRACKIO_DIR=str(store), HF_HOME=str(tmp_path / "hf"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(attempts.read_text()) == []  # nothing tried the network

    dbs = list(store.glob("*.db"))
    assert [db.stem for db in dbs] == ["erv-lab-smoke"], list(store.iterdir())
    with sqlite3.connect(dbs[0]) as db:
        rows = db.execute("SELECT run_name, step, metrics FROM metrics").fetchall()
    assert {r[0] for r in rows} == {"sft", "erv"}  # one trackio run per stage
    tables = [json.loads(m)["completions"] for name, _, m in rows if name == "erv" and "completions" in json.loads(m)]
    assert all(t["_type"] == "trackio.table" for t in tables)  # one per log: each logging step, and the last
    assert sorted({r["step"] for t in tables for r in t["_value"]}) == [1, 2]  # step again at the end of training
    row = tables[-1]["_value"][0]
    assert {"step", "prompt", "completion", "format", "accuracy", "explanation", "advantage", "clip_id", "solution",
            "explanation/labels", "image"} <= set(row)
    assert row["image"] and row["image"][0]["_type"] == "trackio.image"  # the prompt's frames, shown in the table
    curves = [json.loads(m) for name, _, m in rows if name == "erv"]
    assert any("train/loss" in m for m in curves) and any("train/rewards/explanation/mean" in m for m in curves)

    run = tmp_path / "run" / "erv"
    assert len(list((run / "completions").glob("completions_*.parquet"))) == 2  # TRL's files, as without trackio
    assert list(run.glob("runs/*/events.out.tfevents.*"))  # and TensorBoard beside it


def test_the_verifiers_scalars_go_to_tensorboard_when_the_list_names_it(tmp_path):
    from erv_lab.verifier import log_scalars

    log_scalars(tmp_path / "a", "verifier", {"accuracy": 0.5}, ["tensorboard", "trackio"])
    log_scalars(tmp_path / "b", "verifier", {"accuracy": 0.5}, ["trackio"])
    assert list((tmp_path / "a").glob("events.out.tfevents.*")) and not (tmp_path / "b").exists()


def test_a_tracker_that_is_not_installed_is_refused_with_the_command_that_installs_it(monkeypatch, tmp_path):
    import importlib.util

    from erv_lab import train as T

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trackio" else find_spec(name, *a))
    with pytest.raises(ImportError, match=r'report_to names trackio.*pip install "erv-lab\[trackio\]"'):
        T.grpo_trainer(load_config("smoke", ["report_to=[tensorboard,trackio]"]), tmp_path, tmp_path, None, [], [])
    T.require_trackers(load_config("smoke"))  # tensorboard: a base dependency
