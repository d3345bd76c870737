"""Notebook 05's reward-hacking lesson: the shipped run hacks, the readings say so, the good arm reads clean."""
import json

import pytest

from erv_lab import curves
from erv_lab import diagnostics as D
from erv_lab import readings as R
from erv_lab.config import load_config
from erv_lab.paths import REFERENCE_DIR
from erv_lab.train import degenerate_config

LESSON = "erv-degenerate"


def test_the_degenerate_recipe_drops_the_guards_and_keeps_the_rewards():
    cfg = load_config("cpu-tiny")
    bad = degenerate_config(cfg)
    assert not bad.reward.strict_format and not bad.reward.anti_stuffing and bad.grpo.beta == 0.0
    assert bad.grpo.loss_type == "grpo" and bad.grpo.learning_rate == pytest.approx(10 * cfg.grpo.learning_rate)
    assert bad.grpo.max_steps == 110  # 11/6 of the arms' 60
    same = ("num_generations", "temperature", "prompts_per_step", "max_completion_length", "seed")
    assert all(getattr(bad.grpo, k) == getattr(cfg.grpo, k) for k in same)
    assert (bad.reward.rewards, bad.reward.weights, bad.reward.variant) == \
        (cfg.reward.rewards, cfg.reward.weights, cfg.reward.variant)
    assert cfg.reward.strict_format and cfg.grpo.beta > 0  # a copy: the preset is untouched
    assert degenerate_config(load_config("paper")).grpo.max_steps == -1  # epochs stay epochs


def test_the_shipped_lesson_run_was_trained_with_this_recipe():
    metrics = json.loads((REFERENCE_DIR / LESSON / "metrics.json").read_text())
    assert metrics["global_step"] == degenerate_config(load_config("cpu-tiny")).grpo.max_steps


def test_the_shipped_lesson_run_hacked_and_the_good_arm_did_not():
    good, lesson = curves.read_completions(REFERENCE_DIR, "erv"), curves.read_completions(REFERENCE_DIR, LESSON)
    h = R.hacking(good, lesson)
    assert h["hacked"] and "**hacked**" in h["text"] and h["examples"]
    s, g = h["table"]["lesson"], h["table"]["good"]
    assert s["stuffed_or_repeated"] > 0.5 and g["stuffed_or_repeated"] < 0.05
    assert s["distinct_2"] < g["distinct_2"]
    assert s["explanation_reward"] > g["explanation_reward"] - 0.05  # paid about as much as honest prose, or more
    assert not R.hacking(good, good)["hacked"]


def test_flag_hacking_fires_on_the_shipped_lesson_run_and_stays_quiet_on_the_good_arm():
    ref = D.lesson_diagnostics(REFERENCE_DIR, "erv", first=True)
    for reference in (None, ref):
        bad = D.flag_hacking(D.lesson_diagnostics(REFERENCE_DIR, LESSON), reference, D.lesson_records(REFERENCE_DIR, LESSON))
        assert bad["flagged"] and any("keyword lists" in r for r in bad["reasons"]) and bad["examples"]
        ok = D.flag_hacking(D.lesson_diagnostics(REFERENCE_DIR, "erv"), reference, D.lesson_records(REFERENCE_DIR, "erv"))
        assert not ok["flagged"], ok["reasons"]


def test_lesson_diagnostics_read_the_logged_steps(tmp_path):
    arm = tmp_path / "erv"
    arm.mkdir()
    honest = "<think>Her lip corners drop. She speaks softly.</think>\n<answer>sad</answer>"
    stuffed = "<think>Sad sad sad. Sad sad sad.</think>\n<answer>sad</answer></answer>"
    rows = [{"step": s, "completion": c, "reward/explanation": r}
            for s, c, r in ((5, honest, 0.5), (10, honest, 0.5), (15, stuffed, 1.0), (15, honest, 0.0))]
    (arm / "completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (arm / "log_history.json").write_text(json.dumps([{"step": 5, "rewards/explanation/mean": 0.5},
                                                      {"step": 15, "rewards/explanation/mean": 0.9}]))
    d = D.lesson_diagnostics(tmp_path, "erv", last_steps=1)
    assert d["steps"] == [15] and d["explanation_reward"] == 0.5
    assert d["stuffed_sentence_share"] == 0.25 and d["repeated_sentence_share"] == 0.25  # a keyword list and its repeat, of 4 sentences
    assert d["extra_tag_share"] == 0.5 and d["strict_format_share"] == 0.5
    assert d["judge_EEA"] is None and d["reward_judge_gap"] is None
    assert d["train_explanation_reward"] == {"first": 0.5, "last": 0.9}
    first = D.lesson_diagnostics(tmp_path, "erv", last_steps=2, first=True)
    assert first["steps"] == [5, 10] and first["stuffed_sentence_share"] == 0
    assert [r["think"] for r in D.lesson_records(tmp_path, "erv", last_steps=1)] == ["Sad sad sad. Sad sad sad.", "Her lip corners drop. She speaks softly."]
