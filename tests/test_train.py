"""Cold-start SFT and GRPO on a fake clip set: smoke steps, logs, idempotence, resume, 2-process launch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from erv_lab import curves as C
from erv_lab import arms as A
from erv_lab import stages as S
from erv_lab import standins as ST
from erv_lab import train as T
from erv_lab.config import load_config
from erv_lab.rewards import accuracy_reward, format_reward

REPO = Path(__file__).resolve().parent.parent
BASELINE = ([format_reward, accuracy_reward], [1.0, 1.0])


def smoke_cfg(**grpo):
    cfg = load_config("smoke")
    for k, v in grpo.items():
        setattr(cfg.grpo, k, v)
    return cfg


@pytest.fixture(scope="module")
def splits(make_clips):
    return {"train": make_clips(n_per_class=2), "test": make_clips(n_per_class=1, seed=1)}


class StubVerifier:
    def predict_proba(self, texts):
        import numpy as np

        return np.full((len(texts), 28), 0.05)


def test_arms_differ_only_in_their_reward_weights():
    cfg = load_config("smoke")
    base, wb = T.arm_rewards(cfg, "baseline", verifier=StubVerifier())
    erv, we = T.arm_rewards(cfg, "erv", verifier=StubVerifier())
    names = lambda fs: [getattr(f, "__name__", "") for f in fs]  # noqa: E731
    assert names(base) == names(erv) == ["format", "accuracy", "explanation"]
    # baseline: the explanation reward is logged with weight 0, so it never reaches the advantage
    assert wb == [1.0, 1.0, 0.0] and we == [1.0, 1.0, 1.0]
    assert cfg.reward.rewards == ["format", "accuracy", "explanation"]  # the config was not mutated
    with pytest.raises(ValueError, match="baseline, erv"):
        T.arm_rewards(cfg, "nope")


def test_group_advantage_matches_the_paper_formula():
    # group (3, 1): mean 2, Bessel std sqrt(2) -> +-1/sqrt(2); group (2, 2): std 0 -> advantage 0
    adv = T.group_advantages([3, 1, 2, 2], 2)
    assert adv[0] == pytest.approx(2 ** -0.5, abs=1e-3) and adv[1] == pytest.approx(-(2 ** -0.5), abs=1e-3)
    assert adv[2:] == [0.0, 0.0]


def test_sft_uses_a_cosine_schedule_with_ratio_warmup(tmp_path):
    args = load_config("smoke"), tmp_path
    a = T.sft_args(*args)
    assert a.lr_scheduler_type == "cosine" and a.warmup_steps == pytest.approx(0.03)
    assert a.get_warmup_steps(100) == 3  # 3 % of 100 steps


def test_grpo_batch_holds_prompts_per_step_groups_of_g(tmp_path):
    cfg = smoke_cfg(num_generations=4, prompts_per_step=3, beta=0.04)
    args = T.grpo_args(cfg, tmp_path)
    assert args.per_device_train_batch_size == 12 and args.num_generations == 4
    assert args.generation_batch_size % args.num_generations == 0
    assert args.beta == 0.04 and args.use_cpu
    cfg.grpo.micro_batch = 4  # same 12 rollouts per optimisation step, generated and back-propagated 4 at a time
    args = T.grpo_args(cfg, tmp_path)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 3)
    assert args.generation_batch_size == 4 and args.steps_per_generation == 1
    cfg.grpo.micro_batch = 5
    with pytest.raises(ValueError, match="must divide"):
        T.grpo_args(cfg, tmp_path)


@pytest.mark.slow
def test_sft_then_grpo_smoke_writes_logs_and_is_idempotent(splits, tmp_path):
    cfg = smoke_cfg(max_steps=2, logging_steps=1)
    sft = S.ensure_sft(cfg, tmp_path, dataset=splits)
    meta = json.loads((sft / "policy.json").read_text())
    assert meta["stage"] == "sft" and meta["metrics"]["global_step"] > 0
    assert (tmp_path / "sft" / "log_history.csv").exists()
    final = S.ensure_grpo(cfg, tmp_path, "baseline", dataset=splits, reward_funcs=BASELINE)
    hist = C.read_log_history(tmp_path / "baseline")
    logged = [h for h in hist if "loss" in h]
    assert len(logged) == 2
    for key in ("rewards/format_reward/mean", "rewards/accuracy_reward/mean", "frac_reward_zero_std", "kl",
                "completions/mean_length", "completions/clipped_ratio"):
        assert key in logged[-1], key
    rows = C.read_completions(tmp_path, "baseline")  # TRL's own completion logs, one parquet file per logged step
    assert [f.name for f in C.completion_files(tmp_path, "baseline")] == ["completions_00001.parquet",
                                                                          "completions_00002.parquet"]
    assert not (tmp_path / "baseline" / "completions.jsonl").exists()
    assert rows and {"completion", "advantage", "reward/format_reward", "reward/accuracy_reward", "clip_id",
                     "solution"} <= set(rows[0])
    groups = C.completion_groups(tmp_path, "baseline", cfg.grpo.num_generations)  # G rows of one clip, one step
    assert len(rows) == 2 * cfg.grpo.prompts_per_step * cfg.grpo.num_generations
    assert all(len({(r["step"], r["clip_id"], r["solution"]) for r in g}) == 1 for g in groups)
    metrics = json.loads((tmp_path / "baseline" / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and metrics["seconds_per_step"] > 0 and metrics["peak_rss_mb"] > 0
    mtime = (final / "policy.json").stat().st_mtime
    assert S.ensure_grpo(cfg, tmp_path, "baseline", dataset=splits, reward_funcs=BASELINE) == final
    assert (final / "policy.json").stat().st_mtime == mtime  # reused, not retrained


def test_check_stage_moves_a_folder_made_with_other_settings_aside(tmp_path):
    out = tmp_path / "sft"
    S.check_stage(out, {"a": 1})  # nothing there yet: nothing to do
    (out / "final").mkdir(parents=True)
    (out / "settings.json").write_text(json.dumps({"a": 1, "b": {"c": 2}}))
    S.check_stage(out, {"a": 1, "b": {"c": 2}})
    assert (out / "final").exists()  # same settings: kept
    with pytest.warns(UserWarning, match=r"b\.c: 2 -> 3"):
        S.check_stage(out, {"a": 1, "b": {"c": 3}})
    assert not out.exists() and (tmp_path / "sft.stale" / "final").exists()
    (out / "final").mkdir(parents=True)  # an older erv-lab wrote no settings.json
    with pytest.warns(UserWarning, match="no settings.json"):
        S.check_stage(out, {"a": 1})
    assert not out.exists() and not (tmp_path / "sft.stale" / "settings.json").exists()


@pytest.mark.slow
def test_changed_settings_retrain_instead_of_reusing_a_stale_model(splits, tmp_path):
    cfg = smoke_cfg(max_steps=1, logging_steps=1)
    S.ensure_sft(cfg, tmp_path, dataset=splits)
    final = S.ensure_grpo(cfg, tmp_path, "baseline", dataset=splits, reward_funcs=BASELINE)
    mtime = (final / "policy.json").stat().st_mtime
    cfg.grpo.logging_steps = 5  # logging only: the same model
    assert S.ensure_grpo(cfg, tmp_path, "baseline", dataset=splits, reward_funcs=BASELINE) == final
    assert (final / "policy.json").stat().st_mtime == mtime
    cfg.sft.learning_rate *= 2
    with pytest.warns(UserWarning, match=r"sft\.learning_rate"):
        S.ensure_sft(cfg, tmp_path, dataset=splits)
    assert (tmp_path / "sft.stale" / "final" / "policy.json").exists()
    with pytest.warns(UserWarning, match=r"sft\.sft\.learning_rate"):  # the arm was trained from the old SFT
        S.ensure_grpo(cfg, tmp_path, "baseline", dataset=splits, reward_funcs=BASELINE)
    saved = json.loads((tmp_path / "baseline" / "settings.json").read_text())
    assert saved == S.stage_settings(cfg, "grpo", "baseline")


@pytest.mark.slow
def test_grpo_resumes_after_interruption_with_same_final_step(splits, tmp_path, crash_at):
    cfg = smoke_cfg(max_steps=4, save_steps=1, logging_steps=1)
    S.ensure_sft(cfg, tmp_path, dataset=splits)
    with pytest.raises(KeyboardInterrupt):
        S.ensure_grpo(cfg, tmp_path, "baseline", dataset=splits, reward_funcs=BASELINE, callbacks=[crash_at(3)])
    assert not (tmp_path / "baseline" / "final").exists()
    assert T._last_checkpoint(tmp_path / "baseline").endswith("checkpoint-2")
    final = S.ensure_grpo(cfg, tmp_path, "baseline", dataset=splits, reward_funcs=BASELINE)
    metrics = json.loads((final / "policy.json").read_text())["metrics"]
    assert metrics["global_step"] == 4 and metrics["steps_this_run"] == 2


LAUNCHED = """
import sys
sys.path.insert(0, {tests!r})
from erv_lab import curves as C
from erv_lab import arms as A
from erv_lab import stages as S
from erv_lab import standins as ST
from erv_lab import train as T
from erv_lab.config import load_config
from erv_lab.rewards import accuracy_reward, format_reward
from conftest import fake_clips
cfg = load_config("smoke")
cfg.grpo.max_steps, cfg.grpo.num_generations, cfg.grpo.prompts_per_step = 2, 2, 2
splits = {{"train": fake_clips(n_per_class=2), "test": fake_clips(n_per_class=1, seed=1)}}
S.ensure_grpo(cfg, {run!r}, "baseline", dataset=splits, reward_funcs=([format_reward, accuracy_reward], [1.0, 1.0]))
"""


@pytest.mark.slow
def test_grpo_runs_under_accelerate_launch_with_two_cpu_processes(splits, tmp_path):
    cfg = smoke_cfg()
    S.ensure_sft(cfg, tmp_path, dataset=splits)  # single process first, as a course would
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED.format(tests=str(REPO / "tests"), run=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "baseline" / "metrics.json").read_text())
    assert metrics["global_step"] == 2
    assert (tmp_path / "baseline" / "final" / "policy.json").exists()
    rows = C.read_completions(tmp_path, "baseline")  # gathered from both processes by the main one, written once
    groups = C.completion_groups(tmp_path, "baseline", 2)
    assert rows and all(len(g) == 2 and len({(r["step"], r["clip_id"]) for r in g}) == 1 for g in groups)


def test_run_arms_trains_both_arms_side_by_side_in_worker_processes(splits, tmp_path):
    cfg = smoke_cfg(max_steps=2, logging_steps=1, save_steps=2)
    cfg.reward.rewards, cfg.reward.weights = ["format", "accuracy"], [1.0, 1.0]  # no verifier: wiring only
    seen = []
    finals = A.run_arms(cfg, tmp_path, parallel=True, on_log=lambda h: seen.append({a: len(x) for a, x in h.items()}),
                        poll_seconds=0.2, dataset=splits)
    assert set(finals) == {"baseline", "erv"}
    for arm, final in finals.items():
        assert (final / "policy.json").exists() and final.parent.name == arm
        assert json.loads((final.parent / "metrics.json").read_text())["global_step"] == 2
        assert (final.parent / "train.log").stat().st_size > 0  # the worker's output went to its log
    assert seen and set(seen[-1]) == {"baseline", "erv"}
    # idempotent: a second call reuses both finals without training
    assert A.run_arms(cfg, tmp_path, parallel=True, dataset=splits) == finals




def test_hub_path_trains_a_llava_onevision_standin_with_qlora(splits, tmp_path, monkeypatch, tiny_onevision,
                                                              onevision_processor_cls):
    """The colab-t4 code path (kind: hub, LLaVA-OneVision class, its processor's image tiling, 4-bit NF4 + LoRA,
    the SFT adapter continued by GRPO, SDPA with repeated KV heads) on a tiny random stand-in: SFT, one GRPO step,
    reload, decode."""
    from bitsandbytes.nn import Linear4bit
    from transformers import AutoTokenizer, LlavaOnevisionImageProcessorPil

    from erv_lab import policy as P

    cls = onevision_processor_cls
    base = ST.build_standin("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", tmp_path / "standin",
                           list(splits["train"]["rationale"]), sizes=tiny_onevision, processor_cls=cls)
    assert json.loads((base / "standin.json").read_text())["random_weights"] is True

    def hub_processor(path):  # what AutoProcessor.from_pretrained does where torchvision is installed
        tok = AutoTokenizer.from_pretrained(path)
        tok.padding_side = "left"
        return cls(image_processor=LlavaOnevisionImageProcessorPil.from_pretrained(path), tokenizer=tok,
                   num_image_tokens=4, vision_feature_select_strategy="full", chat_template=P.CHAT_TEMPLATE)

    monkeypatch.setattr(P, "hub_processor", hub_processor)
    cfg = smoke_cfg(max_steps=1, logging_steps=1)
    cfg.policy.kind, cfg.policy.model_name, cfg.policy.load_in_4bit = "hub", str(base), True
    cfg.policy.lora_r, cfg.policy.lora_alpha = 4, 8
    cfg.grpo.micro_batch, cfg.grpo.gradient_checkpointing = 2, True  # the memory knobs of the GPU presets
    cfg.grpo.disable_dropout, cfg.grpo.loss_type, cfg.policy.attn_implementation = True, "grpo", "sdpa_repeat_kv"
    loaded = P.load_base(base, cfg.policy)
    assert type(loaded).__name__ == "LlavaOnevisionForConditionalGeneration"
    assert any(isinstance(m, Linear4bit) for m in loaded.modules())
    sft = S.ensure_sft(cfg, tmp_path, dataset=splits)
    assert json.loads((sft / "policy.json").read_text())["kind"] == "hub"
    # the SFT stage leaves its QLoRA adapter alone (no merge into a re-quantised copy); GRPO continues it
    assert (sft / "adapter_config.json").exists() and not list(sft.glob("model*.safetensors"))
    final = S.ensure_grpo(cfg, tmp_path, "baseline", dataset=splits, reward_funcs=BASELINE)
    assert json.loads((tmp_path / "baseline" / "metrics.json").read_text())["global_step"] == 1
    assert (final / "adapter_config.json").exists() and not list(final.glob("model*.safetensors"))
    model, proc = P.load_policy(final, cfg.policy)
    assert len(P.generate(model, proc, splits["test"].select(range(2)), max_new_tokens=4)) == 2


def test_sft_refuses_clips_without_rationales(make_clips, tmp_path):
    train = make_clips(n_per_class=1)
    train = train.map(lambda r, i: {"rationale": "" if i % 2 else r["rationale"]}, with_indices=True)
    with pytest.raises(ValueError, match=r"needs a rationale per training clip, and 3 of 7 have none"):
        S.ensure_sft(smoke_cfg(), tmp_path, dataset={"train": train, "test": train})
    assert not (tmp_path / "sft").exists()  # refused before anything was written


def test_grpo_settings_include_the_verifier_as_the_reward_reads_it():
    base = S.stage_settings(smoke_cfg(), "grpo", "erv")
    tau = load_config("smoke", ["verifier.threshold=0.3"])
    assert S.stage_settings(tau, "grpo", "erv") != base  # the arms trained against another reward
    assert S.stage_settings(tau, "sft") == S.stage_settings(smoke_cfg(), "sft")  # SFT never reads the verifier
    plain = load_config("smoke", ["reward.rewards=[format, accuracy]", "reward.weights=[1, 1]"])
    assert S.stage_settings(plain, "grpo", "erv")["verifier"] is None  # no reward reads it


def test_sft_has_its_own_seed_and_logging_steps(tmp_path):
    cfg = smoke_cfg()
    assert T.sft_seed(cfg) == cfg.grpo.seed and T.sft_args(cfg, tmp_path).logging_steps == 1
    cfg.sft.seed, cfg.sft.logging_steps = 7, 3
    args = T.sft_args(cfg, tmp_path)
    assert args.seed == 7 and args.logging_steps == 3 and S.stage_settings(cfg, "sft")["seed"] == 7
    before = S.stage_settings(cfg, "sft")
    cfg.sft.logging_steps = 9  # logging does not make a trained model stale
    assert S.stage_settings(cfg, "sft") == before


def test_the_lesson_run_is_the_shipped_one_unless_asked_to_train_it(tmp_path):
    from erv_lab.paths import REFERENCE_DIR

    cfg = load_config("cpu-tiny")
    assert not cfg.grpo.degenerate_lesson
    assert S.degenerate_lesson(cfg, tmp_path) == (REFERENCE_DIR, cfg.grpo.num_generations)
    assert not (tmp_path / "erv-degenerate").exists()  # nothing trained


def test_gdpo_normalises_each_reward_before_the_sum_by_hand():
    import doctest

    from erv_lab import train

    per_func = [[1, 1, 0.5], [1, 0, 1.0], [0, 1, 0.5]]
    # GRPO: sums 2.5, 2.0, 1.5 -> (x - 2) / (0.5 + eps); GDPO: each column -> +-0.577 / -1.155, summed, renormalised
    assert [round(a, 3) for a in train.group_advantages([sum(r) for r in per_func], 3)] == [1.0, 0.0, -1.0]
    assert [round(a, 3) for a in train.gdpo_advantages(per_func, [1, 1, 1], 3)] == [0.577, 0.577, -1.155]
    assert doctest.testmod(train).failed == 0


def test_the_aggregation_reaches_trl_and_a_bad_one_is_refused(tmp_path):
    import pytest

    from erv_lab import train
    from erv_lab.config import load_config

    cfg = load_config("smoke", ["grpo.multi_objective_aggregation=normalize_then_sum"])
    assert train.grpo_args(cfg, tmp_path).multi_objective_aggregation == "normalize_then_sum"
    assert train.grpo_args(load_config("smoke"), tmp_path).multi_objective_aggregation == "sum_then_normalize"
    with pytest.raises(ValueError, match="multi_objective_aggregation"):
        load_config("smoke", ["grpo.multi_objective_aggregation=mean"])


def test_the_grounding_arm_adds_one_reward_and_its_cue_column_and_the_flag_moves_no_stage():
    from erv_lab import stages as S

    cfg = load_config("smoke")
    g = T.grounding_config(cfg)
    assert g.reward.rewards == [*cfg.reward.rewards, "grounding"] and g.reward.weights == [*cfg.reward.weights, 1.0]
    assert T.grounding_config(g).reward.rewards == g.reward.rewards  # added once
    flagged = load_config("smoke", ["grpo.grounding_ablation=true"])
    assert S.stage_settings(flagged, "grpo", "erv") == S.stage_settings(cfg, "grpo", "erv")  # no arm retrains
    assert S.stage_settings(g, "grpo", "erv") != S.stage_settings(cfg, "grpo", "erv")


@pytest.mark.slow
def test_the_grounding_ablation_trains_its_arm_with_the_reward_and_scores_it_beside_erv(tmp_path):
    import json

    from erv_lab import stages as S

    cfg = load_config("smoke", ["grpo.grounding_ablation=true"])
    d = S.grounding_ablation(cfg, tmp_path)
    hist = json.loads((tmp_path / "erv-grounding" / "log_history.json").read_text())
    assert any("rewards/grounding/mean" in h for h in hist)  # TRL saw the cues column and logged the reward
    assert not any("rewards/grounding/mean" in h for h in json.loads((tmp_path / "erv" / "log_history.json").read_text()))
    assert set(d["protocols"]) == {p.name for p in __import__("erv_lab.evaluate").evaluate.protocols(cfg)}
    for block in d["protocols"].values():
        assert {"erv", "erv-grounding", "difference"} <= set(block)
        assert block["erv"]["grounding"]["n"] == block["erv-grounding"]["grounding"]["n"] > 0
    assert json.loads((tmp_path / "grounding_ablation.json").read_text()) == d
    off = load_config("smoke", ["grpo.grounding_ablation=false"])
    assert S.grounding_ablation(off, tmp_path)["n_clips"] == 56  # off: the shipped cpu-tiny file
