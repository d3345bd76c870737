"""Readings are computed from the run: hand-made results where the goal is met, missed, or unreadable."""
import json

from erv_lab import readings as R
from erv_lab.paths import REFERENCE_DIR


def _arm(eea, epc, uar, ci=0.1):
    return {"EEA": eea, "EPC": epc, "UAR": uar, "FCR": eea,
            "ci": {"EEA": [eea - ci, eea + ci], "EPC": [epc - ci, epc + ci], "UAR": [uar - ci, uar + ci]}}


def _results(b, e, paired_eea=(0.2, 0.1, 0.3)):
    v, lo, hi = paired_eea
    diff = {"EEA": {"value": v, "low": lo, "high": hi}, "EPC": {"value": e["EPC"] - b["EPC"], "low": 0.01, "high": 0.3},
            "UAR": {"value": e["UAR"] - b["UAR"], "low": -0.05, "high": 0.05}}
    return {"sft": _arm(0.5, 0.5, 0.8), "baseline": b, "erv": e, "erv_minus_baseline": {"sample": diff},
            "protocol": {"judge": "zeroshot-minilm"}}


def test_a_met_goal_reads_met_with_its_numbers():
    r = _results(_arm(0.50, 0.50, 0.80), _arm(0.70, 0.70, 0.81))
    text = R.goal(r, "sample")
    assert "**met**" in text and "EEA +20.0" in text and "EPC +20.0" in text and "UAR +1.0" in text


def test_a_small_real_gain_reads_not_met_and_says_what_next():
    r = _results(_arm(0.50, 0.50, 0.80), _arm(0.58, 0.70, 0.80), paired_eea=(0.08, 0.02, 0.14))
    text = R.goal(r, "sample")
    assert "**not met**" in text and "(EEA missed)" in text and "beyond noise but by less than the goal" in text


def test_no_gain_reads_not_met_and_points_at_the_curves():
    r = _results(_arm(0.50, 0.50, 0.80), _arm(0.52, 0.52, 0.70), paired_eea=(0.02, -0.05, 0.09))
    text = R.goal(r, "sample")
    assert "EEA, EPC, UAR missed" in text and "did not raise EEA beyond noise" in text and "β" in text
    assert "UAR -10.0 (goal within ±3: missed)" in text and "EEA +2.0 (goal ≥ +15: missed)" in text


def test_the_difference_says_where_its_interval_lies():
    r = _results(_arm(0.5, 0.5, 0.8), _arm(0.7, 0.7, 0.8), paired_eea=(0.2, 0.1, 0.3))
    text = R.difference(r, "sample")
    assert "EEA +20.0 [+10.0, +30.0] (above 0)" in text and "UAR +0.0 [-5.0, +5.0] (includes 0)" in text


def test_arms_against_the_sft_model_read_small_moves_as_the_same():
    r = _results(_arm(0.51, 0.40, 0.80), _arm(0.70, 0.70, 0.80))
    base, erv = R.arm_vs_sft(r, "sample")
    assert "EEA 50.0 → 51.0 (+1.0, about the same)" in base and "EPC 50.0 → 40.0 (-10.0, lower)" in base
    assert erv.startswith("ERV vs the SFT model") and "(+20.0, higher)" in erv


def test_zero_spread_and_training_read_the_logs():
    hist = {"baseline": [{"step": i, "frac_reward_zero_std": 0.5, "rewards/explanation/mean": 0.6} for i in range(4)],
            "erv": [{"step": i, "frac_reward_zero_std": 0.1, "rewards/explanation/mean": x}
                    for i, x in enumerate((0.5, 0.5, 0.5, 0.9, 0.9, 0.9))]}
    assert R.zero_spread(hist).endswith("baseline 50 %, ERV 10 %.")
    text = R.training(hist)
    assert "baseline 0.600 → 0.600 (about the same)" in text and "ERV 0.500 → 0.900 (higher)" in text
    assert R.zero_spread({"erv": [{}]}) is None


def test_the_hacking_reading_fires_on_stuffing_and_stays_quiet_on_prose():
    prose = "<think>Her eyes fill with tears. She looks down at her hands.</think>\n<answer>sad</answer>"
    stuffed = "<think>Sad sad sad sad. Sad sad sad sad.</think>\n<answer>sad</answer></think><answer>sad</answer>"
    good = [{"step": s, "completion": prose, "reward/explanation": 0.5} for s in range(4)]
    bad = [{"step": s, "completion": stuffed, "reward/explanation": 1.0} for s in range(4)]
    hot = R.hacking(good, bad)
    assert hot["hacked"] and "**hacked**" in hot["text"] and hot["examples"] == [stuffed] * 3
    calm = R.hacking(good, good)
    assert not calm["hacked"] and "no sign of hacking" in calm["text"] and calm["examples"] == []
    assert "steps 1–3" in calm["text"]  # which logged completions the average is over


def test_the_trajectory_reads_the_peak_and_a_collapse_by_hand():
    good = [{"step": s, "rewards/explanation/mean": e, "rewards/accuracy/mean": 0.9}
            for s, e in [(5, 0.5), (10, 0.7), (15, 0.8)]]
    climb = [{"step": s, "rewards/explanation/mean": e, "rewards/accuracy/mean": a}
             for s, e, a in [(5, 0.5, 0.9), (10, 0.9, 0.8), (15, 0.85, 0.8)]]
    text = R.trajectory(good, climb)
    assert "peaked at 0.90 at step 10 (above the good arm's peak of 0.80, step 15) and ended at 0.85" in text
    assert "collapsed" not in text
    crash = climb + [{"step": 20, "rewards/explanation/mean": 0.0, "rewards/accuracy/mean": 0.0}]
    text = R.trajectory(good, crash)
    assert "ended at 0.00 (step 20" in text and "**collapsed**" in text and "accuracy reward at the end 0.00, good arm 0.90" in text
    assert R.trajectory([], crash) is None
    h = R.hacking([], [], histories=(good, crash))
    assert "**collapsed**" in h["text"]


def test_your_run_beside_the_shipped_one_places_it_in_the_seed_range():
    shipped = json.loads((REFERENCE_DIR / "results.json").read_text())
    seeds = json.loads((REFERENCE_DIR / "seeds.json").read_text())
    head = shipped["protocol"]["judge"]
    hi = max(seeds["sample"][head]["EEA"]["per_seed"].values())
    mine = json.loads(json.dumps(shipped))
    mine["erv_minus_baseline"]["sample"]["EEA"]["value"] = (hi + 5) / 100
    text = R.beside_shipped(mine, shipped, seeds)
    assert f"EEA {hi + 5:+.1f} is above the range" in text
    assert "is inside the range" in R.beside_shipped(shipped, shipped, seeds)  # the shipped run is one of its seeds


def test_the_shipped_run_reads_without_error():
    from erv_lab import curves

    shipped = json.loads((REFERENCE_DIR / "results.json").read_text())
    text = R.discussion(shipped, curves.arm_histories(REFERENCE_DIR))
    assert text.count("Goal (") == len(R.protocols(shipped)) and "κ" in text and "cue the clip does not have" in text


def test_training_md_quotes_the_shipped_lesson_reading():
    from pathlib import Path

    from erv_lab import curves

    h = R.hacking(curves.read_completions(REFERENCE_DIR, "erv"), curves.read_completions(REFERENCE_DIR, "erv-degenerate"))
    text = (Path(__file__).resolve().parents[1] / "docs" / "TRAINING.md").read_text(encoding="utf-8")
    s, g = h["table"]["lesson"], h["table"]["good"]
    quoted = [f"{100 * s['stuffed_or_repeated']:.0f} % stuffed or repeated", f"{s['explanation_reward']:.3f} against the "
              f"good arm's {g['explanation_reward']:.3f}"]
    assert all(q in text for q in quoted), quoted
    assert ("does not" in text.split("`readings.hacking`")[1][:40]) == (not h["hacked"])


def test_readings_of_a_run_with_missing_values_do_not_fail():
    """The smoke preset's run: few clips, grounding without sentences, no greedy block, no logs."""
    r = _results(_arm(0.5, 0.5, 0.8), _arm(0.5, 0.5, 0.8))
    for arm in ("sft", "baseline", "erv"):
        r[arm]["grounding"] = {"absent_cue_sentence_share": None, "grounded_cue_rate": None}
    assert R.grounding(r) is None
    r["erv"]["grounding"] = {"absent_cue_sentence_share": 0.1, "grounded_cue_rate": None}
    assert "ERV 10.0 %" in R.grounding(r) and "baseline –" in R.grounding(r)
    r["erv"]["EEA"] = None
    assert "cannot be read" in R.goal(r) and R.discussion(r, {})


def _setup(name, diff, arm=(50.0, 50.0, 80.0)):
    base = {"EEA": arm[0], "EPC": arm[1], "UAR": arm[2]}
    erv = {k: base[k] + diff[k] for k in base}
    block = {"sft": base, "baseline": base, "erv": erv, "erv_minus_baseline": diff}
    return {"name": name, "what": f"set-up {name}", "sample": block, "greedy": block}


def test_reproducibility_counts_the_goal_and_gives_ranges_by_hand():
    spread = {"setups": [_setup("a", {"EEA": 20.0, "EPC": 18.0, "UAR": -1.0}),   # goal holds
                         _setup("b", {"EEA": 14.9, "EPC": 6.5, "UAR": -3.6}),    # misses all three
                         _setup("c", {"EEA": -2.0, "EPC": 16.0, "UAR": 0.0})]}   # EEA below 0
    text = R.reproducibility(spread)
    assert "3 set-ups" in text
    assert "EEA -2.0 … +20.0, EPC +6.5 … +18.0, UAR -3.6 … +0.0" in text
    assert "in EEA in 2 of 3 set-ups and in EPC in 3 of 3" in text
    assert text.count("held in 1 of 3") == 2  # both protocols
    assert "SFT EEA 50.0, EPC 50.0, UAR 80.0" in text  # a number that did not move is given once
    assert "Identical" not in text
    same = R.reproducibility({"setups": [spread["setups"][0], _setup("d", {"EEA": 20.0, "EPC": 18.0, "UAR": -1.0})]})
    assert "Identical to a in every number above: d;" in same
    assert "No spread measured" in R.reproducibility({})


def test_beside_shipped_prefers_the_measured_spread_to_the_seeds():
    shipped = json.loads((REFERENCE_DIR / "results.json").read_text())
    spread = {"setups": [_setup("a", {"EEA": 0.0, "EPC": 0.0, "UAR": 0.0}),
                         _setup("b", {"EEA": 100.0, "EPC": 100.0, "UAR": 50.0})]}
    text = R.beside_shipped(shipped, shipped, None, "sample", spread)
    assert "2 measured set-ups" in text and text.count("is inside the range") == 2  # EEA, EPC; UAR < 0 is below
    assert "UAR" in text and "is below the range of the 2 measured set-ups" in text
    assert "on the machine that made the shipped run" in text
    spread["setups"][0]["machine"], spread["setups"][1]["machine"] = {"cpu": "AMD EPYC"}, {"cpu": "Intel Xeon"}
    text = R.beside_shipped(shipped, shipped, None, "sample", spread)
    assert "2 CPU types (AMD EPYC, Intel Xeon)" in text and "on the machine that made" not in text


def test_health_reads_entropy_zero_spread_and_kl_by_hand():
    h = [{"step": s, "entropy": e, "frac_reward_zero_std": z, "kl": k}
         for s, e, z, k in [(1, 1.0, 0.5, 0.0), (2, 1.0, 0.5, 0.01), (3, 1.0, 0.5, 0.02),
                            (4, 0.5, 0.0, 0.03), (5, 0.5, 0.0, 0.04), (6, 0.5, 0.0, 0.05)]]
    text = R.health({"erv": h})
    assert "ERV: entropy 1.00 → 0.50 nats/token (lower relative to its start)" in text
    assert "zero-spread groups 25 %" in text and "KL to the SFT model at the end 0.05" in text
    assert R.health({"erv": [{"step": 1}]}) is None


def test_audio_ablation_reading_by_hand():
    ab = {"spectrogram": {"n": 4, "accuracy": 0.75, "per_class": {"fear": 1.0, "sad": 0.5}},
          "none": {"n": 4, "accuracy": 0.25, "per_class": {"fear": 0.0, "sad": 0.5}}}
    text = R.audio_ablation(ab)
    assert "0.75 with audio (spectrogram), 0.25 without (-50.0 points, lower; 4 clips)" in text
    assert "fear 1.00 → 0.00, sad 0.50 → 0.50" in text
    assert R.audio_ablation({"none": ab["none"]}) is None


def test_grounding_ablation_reading_by_hand():
    arm = lambda rate, absent: {"grounding": {"grounded_cue_rate": rate, "absent_cue_sentence_share": absent}}  # noqa: E731
    d = {"judge": "j", "n_clips": 56, "protocols": {"sample": {
        "erv": arm(0.80, 0.12), "erv-grounding": arm(0.95, 0.02),
        "difference": {"EEA": {"value": -0.05, "low": -0.12, "high": 0.01},
                       "EPC": {"value": -0.10, "low": -0.2, "high": -0.02},
                       "UAR": {"value": 0.0, "low": -0.02, "high": 0.02}}}}}
    text = R.grounding_ablation(d)
    assert "described cues the clip shows 80.0 % → 95.0 % (+15.0 points, higher)" in text
    assert "sentences describing an absent cue 12.0 % → 2.0 % (-10.0 points, lower)" in text
    assert "EEA -5.0 [-12.0, +1.0] (includes 0); EPC -10.0 [-20.0, -2.0] (below 0); UAR +0.0" in text
    assert "No grounding ablation" in R.grounding_ablation(None)
