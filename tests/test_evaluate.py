"""The evaluator on a tiny fake policy, a fake judge and a fake verifier; results.json schema and report."""
import json

import numpy as np
import pytest
from PIL import Image

from erv_lab import evaluate as E
from erv_lab import stages as S
from erv_lab import report as R
from erv_lab.config import load_config
from erv_lab.paths import REFERENCE_DIR
from erv_lab.metrics import consistency_metrics, recognition_metrics

@pytest.fixture
def cfg():
    return load_config("smoke", ["eval.seeds=[0,1,2]", "eval.bootstrap=50", "eval.max_clips=null"])


def test_protocols_are_the_papers_sampling_then_greedy(cfg):
    ps = E.protocols(cfg)
    assert [p.name for p in ps] == ["sample", "greedy"]
    assert (ps[0].temperature, ps[0].top_p, ps[0].seeds) == (0.3, 0.9, (0, 1, 2))
    assert ps[1].temperature == 0 and ps[1].seeds == (0,)


def test_decoding_is_cached_and_resumes_where_it_stopped(tmp_path, fakes):
    ex, gen = fakes.make_examples(), fakes.FakePolicy()
    kw = dict(temperature=0.3, top_p=0.9, seeds=(0, 1), max_new_tokens=16, batch_size=4)
    first = E.decode_cached(gen, ex, tmp_path / "c.jsonl", **kw)
    assert gen.calls == 12 and len(first) == 2 and len(first[0]) == 6  # 6 clips x 2 seeds
    assert E.decode_cached(gen, ex, tmp_path / "c.jsonl", **kw) == first and gen.calls == 12  # nothing re-decoded
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    (tmp_path / "c.jsonl").write_text("\n".join(lines[:3]) + '\n{"key": "c0')  # interrupted: 2 rows + a cut line
    assert E.decode_cached(gen, ex, tmp_path / "c.jsonl", **kw) == first
    assert gen.calls == 12 + 10  # only the ten missing rows


def test_changing_model_or_settings_discards_the_cache(tmp_path, fakes):
    ex, gen = fakes.make_examples(), fakes.FakePolicy()
    kw = dict(temperature=0.3, top_p=0.9, seeds=(0,), max_new_tokens=16)
    E.decode_cached(gen, ex, tmp_path / "c.jsonl", fingerprint="a", **kw)
    E.decode_cached(gen, ex, tmp_path / "c.jsonl", fingerprint="b", **kw)
    assert gen.calls == 12
    E.decode_cached(gen, ex, tmp_path / "c.jsonl", fingerprint="b", **{**kw, "seeds": (1,)})
    assert gen.calls == 18


def test_judge_texts_skips_empty_rationales_and_normalises():
    calls = []

    def judge(texts, labels):
        calls.append(list(texts))
        return ["Happiness" for _ in texts]

    assert E.judge_texts(judge, ["She smiles.", "", "  "], "dfew") == ["happy", None, None]
    assert calls == [["She smiles."]]


def test_scores_match_the_metrics_module_on_a_hand_made_fold(fakes):
    labels = ["happy", "sad", "angry", "fear"]
    comps = [[fakes.completion("happy", "happy"),        # TT, consistent
              fakes.completion("happy", "sad"),          # TF: answer right, rationale reads happy
              fakes.completion("angry", "fear"),          # FT: answer wrong, rationale right
              "<think>She trembles.</think>"]]      # unparseable: FF, not consistent
    got = E.score_decodes(comps, labels, fakes.FakeJudge(), n_boot=20)
    # EEA = (TT + FT) / N = 2/4; FCR = TT / N = 1/4; EPC = 1/4 (clip 0 only); WAR = 2/4; UAR = mean(1,1,0,0)
    assert (got["EEA"], got["FCR"], got["EPC"], got["WAR"], got["UAR"]) == (0.5, 0.25, 0.25, 0.5, 0.5)
    assert (got["TT"], got["TF"], got["FT"], got["FF"], got["unparseable"]) == (1, 1, 1, 1, 1)
    assert got["FCR_given_correct"] == 0.5 and got["n"] == 4
    preds = ["happy", "sad", "fear", None]
    judged = fakes.FakeJudge().judge(["She smiles.", "She smiles.", "She scowls.", "She trembles."], ["happy"])
    ref = consistency_metrics(preds, judged, labels)
    assert {k: got[k] for k in ("EEA", "FCR", "EPC")} == {k: ref[k] for k in ("EEA", "FCR", "EPC")}
    assert got["UAR"] == recognition_metrics(preds, labels)["UAR"]
    for k, (low, high) in got["ci"].items():
        assert low <= got[k] <= high, k


def test_headline_pools_seeds_as_their_mean(fakes):
    ex = fakes.make_examples()
    labels = [e["label"] for e in ex]
    per_seed = [fakes.FakePolicy(drift={f"c0{s}": "surprise"})(ex, 0.3, 0.9, s, 16) for s in range(3)]
    got = E.score_decodes(per_seed, labels, fakes.FakeJudge(), n_boot=20)
    # one drifted rationale per seed out of six clips: EEA 5/6 in every seed and pooled
    assert [r["EEA"] for r in got["per_seed"]] == pytest.approx([5 / 6] * 3)
    assert got["EEA"] == pytest.approx(np.mean([r["EEA"] for r in got["per_seed"]]))
    assert got["n"] == 6 and got["n_decodes"] == 18


def test_bootstrap_interval_is_wide_on_few_clips_and_contains_the_point(fakes):
    ex = fakes.make_examples() * 2
    labels = [e["label"] for e in ex]
    comps = [[fakes.completion("surprise" if i % 2 else y, y) for i, y in enumerate(labels)]]
    got = E.score_decodes(comps, labels, fakes.FakeJudge(), n_boot=200)
    low, high = got["ci"]["EEA"]
    assert got["EEA"] == 0.5 and low < 0.5 < high and high - low > 0.2


def test_evaluate_models_writes_schema_records_and_a_report(tmp_path, cfg, fakes):
    ex = fakes.make_examples()
    results = E.evaluate_models(fakes.fake_generators(), ex, fakes.FakeJudge(), cfg, tmp_path, verifier=fakes.FakeVerifier())
    results = R.write_results(results, tmp_path, eval_seconds=1.5)
    assert R.schema_problems(results) == []
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    # the fake ERV arm never drifts: its rationales agree with the truth, the baseline's drift on 3 of 6
    assert results["erv"]["EEA"] == 1.0 and results["baseline"]["EEA"] == 0.5
    # ERV reward: the cue sentence matches, "The room is quiet." is neutral-only and leaves n_nn -> 1.0 per clip;
    # the baseline's three drifted rationales earn 0 -> 3/6, in every one of the three samples
    assert results["erv"]["explanation_reward"] == 1.0 and results["baseline"]["explanation_reward"] == 0.5
    assert results["greedy"]["baseline"]["EEA"] == 1.0  # greedy hides random drift
    assert results["erv"]["WAR"] == results["baseline"]["WAR"] == 1.0
    assert results["timings"] == {"evaluate": 1.5}
    assert results["protocol"]["judge"] == "fake-keyword-judge" and results["protocol"]["seeds"] == [0, 1, 2]
    records = json.loads((tmp_path / "eval" / "records.json").read_text())
    assert len(records) == 6 and set(records[0]["arms"]) == {"sft", "baseline", "erv"}
    r0 = records[0]["arms"]["baseline"]["sample"]
    assert r0["judged"] == "surprise" and r0["rewards"]["accuracy"] == 1.0 and r0["sentences"][0]["matched"] is False
    md = (tmp_path / "results.md").read_text()
    assert "| GRPO + ERV" in md and "EEA" in md and "Greedy" in md and "TT = " in md
    # a second call decodes nothing: everything comes from run_dir/eval_cache
    gens = fakes.fake_generators()
    E.evaluate_models(gens, ex, fakes.FakeJudge(), cfg, tmp_path, verifier=fakes.FakeVerifier())
    assert all(g.calls == 0 for g, _ in gens.values())


def test_a_second_judge_is_scored_with_its_agreement(tmp_path, cfg, fakes):
    class AlwaysNeutral:
        def judge(self, texts, labels):
            return ["neutral"] * len(texts)

    results = E.evaluate_models(fakes.fake_generators(), fakes.make_examples(), fakes.FakeJudge(), cfg, tmp_path,
                                extra_judges={"llm": AlwaysNeutral()})
    alt = results["erv"]["judges"]["llm"]
    assert alt["EEA"] == 0.0 and results["erv"]["EEA"] == 1.0  # no test clip is neutral
    assert alt["agreement"]["agreement"] == 0.0 and alt["agreement"]["n"] == 18
    assert results["protocol"]["extra_judges"] == ["llm"]


def test_timings_come_from_the_course_runner_when_present(tmp_path, cfg, fakes):
    results = E.evaluate_models(fakes.fake_generators(), fakes.make_examples(), fakes.FakeJudge(), cfg, tmp_path)
    (tmp_path / "course_timings.json").write_text(json.dumps({"00_overview.ipynb": 3.0, "05_x.ipynb": 9.0}))
    out = R.write_results(results, tmp_path, eval_seconds=4.0)
    assert out["timings"] == {"00_overview.ipynb": 3.0, "05_x.ipynb": 9.0}
    assert "Compute: 12 s" in (tmp_path / "results.md").read_text()


def test_schema_problems_catches_a_missing_arm_and_a_percentage():
    ex = {"UAR": 0.5, "WAR": 0.5, "EEA": 0.5, "FCR": 0.5, "FCR_given_correct": 0.5, "EPC": 0.5, "n": 3,
          "ci": {k: [0.1, 0.9] for k in E.CI_KEYS}}
    ok = {"sft": ex, "baseline": ex, "erv": ex, "greedy": {"sft": ex, "baseline": ex, "erv": ex},
          "protocol": {"dataset": "dfew", "fold": 5, "decoding": {}, "seeds": [0], "judge": "x"},
          "timings": {"a": 1.0}}
    assert R.schema_problems(ok) == []
    bad = json.loads(json.dumps(ok))
    del bad["erv"]
    bad["baseline"]["EEA"] = 55.0
    probs = R.schema_problems(bad)
    assert "missing erv" in probs and any("baseline.EEA" in p for p in probs)


def test_finalize_refreshes_the_reference_run_only_when_asked_and_only_for_cpu_tiny(tmp_path, cfg, monkeypatch, fakes):
    results = E.evaluate_models(fakes.fake_generators(), fakes.make_examples(), fakes.FakeJudge(), cfg, tmp_path)
    R.write_results(results, tmp_path)
    (tmp_path / "course_timings.json").write_text(json.dumps({"05.ipynb": 2.0}))
    dest = tmp_path / "reference"
    monkeypatch.setattr(R, "REFERENCE_DIR", dest)
    monkeypatch.setattr(R.copy_reference_run, "__defaults__", (dest,))
    assert R.finalize_course(tmp_path, "cpu-tiny")["reference_files"] == []  # make course: never
    with pytest.raises(ValueError, match="cpu-tiny"):
        R.finalize_course(tmp_path, "smoke", reference=True)
    assert not dest.exists()
    got = R.finalize_course(tmp_path, "cpu-tiny", reference=True)  # make reference
    assert "results.json" in got["reference_files"] and "eval/records.json" in got["reference_files"]
    assert json.loads((dest / "results.json").read_text())["timings"] == {"05.ipynb": 2.0}


def test_shipped_reference_run_matches_the_result_schema():
    path = REFERENCE_DIR / "results.json"
    if not path.exists():
        pytest.skip("reference_run/results.json not produced yet: run `make course` (cpu-tiny) to create it")
    assert R.schema_problems(json.loads(path.read_text())) == []



def test_shipped_reference_run_shows_the_erv_arm_pulling_ahead_in_training():
    """Issue 6's acceptance on the shipped cpu-tiny run: over the last logged steps the ERV arm's explanation
    reward is clearly above the baseline arm's, and its accuracy reward is not lower beyond sampling noise."""
    from erv_lab.config import load_config
    from erv_lab.curves import first_last, read_log_history

    ref = REFERENCE_DIR
    if not (ref / "erv" / "log_history.json").exists():
        pytest.skip("reference_run not produced yet: run `make course` (cpu-tiny) to create it")
    erv, base = read_log_history(ref / "erv"), read_log_history(ref / "baseline")
    gap = first_last(erv, "rewards/explanation/mean")[1] - first_last(base, "rewards/explanation/mean")[1]
    assert gap >= 0.05, gap
    # Each of the last 3 logs averages logging_steps x prompts x G rollouts of a 0/1 reward: allow two standard
    # errors of the difference of the two arms' means (0.039 at cpu-tiny's 480 rollouts per arm and p = 0.9).
    g = load_config("cpu-tiny").grpo
    acc_erv, acc_base = (first_last(h, "rewards/accuracy/mean")[1] for h in (erv, base))
    n = 3 * g.logging_steps * g.prompts_per_step * g.num_generations
    p = (acc_erv + acc_base) / 2
    assert acc_erv >= acc_base - 2 * (2 * p * (1 - p) / n) ** 0.5, (acc_erv, acc_base)


def test_goal_check_reports_the_papers_claim(tmp_path, cfg, fakes):
    results = E.evaluate_models(fakes.fake_generators(), fakes.make_examples(), fakes.FakeJudge(), cfg, tmp_path)
    g = R.goal_check(results)
    # fake ERV: EEA 6/6 vs baseline 3/6 -> +50 points; EPC the same; both answer every clip right -> UAR +0
    assert g["delta_points"]["EEA"] == pytest.approx(50) and g["delta_points"]["UAR"] == 0
    assert g["goal_met"] and g["holds"] == {"EEA": True, "EPC": True, "UAR": True}
    assert R.goal_check(results, "greedy")["goal_met"] is False  # greedy hides the random drift
    assert len(R.read_records(tmp_path)) == 6


def test_paired_difference_is_the_difference_of_the_arms_with_an_interval_around_it(tmp_path, cfg, fakes):
    results = E.evaluate_models(fakes.fake_generators(), fakes.make_examples(), fakes.FakeJudge(), cfg, tmp_path)
    diff = results["erv_minus_baseline"]["sample"]
    for k in ("EEA", "EPC", "UAR"):
        assert diff[k]["value"] == pytest.approx(results["erv"][k] - results["baseline"][k])
        assert diff[k]["low"] <= diff[k]["value"] <= diff[k]["high"]
    assert diff["UAR"]["low"] == diff["UAR"]["high"] == 0  # both arms answer every clip right
    assert diff["EEA"]["low"] > 0  # ERV's explanation is right on every clip, the baseline's on half
    g = R.goal_check(results)
    assert g["excludes_zero"]["EEA"] and not g["excludes_zero"]["UAR"]
    assert "paired 95 % bootstrap" in R.render_markdown(results)


def test_paired_difference_by_hand():
    labels = ["happy", "sad"]
    think = lambda e: f"<think>It looks {e}.</think><answer>{e}</answer>"  # noqa: E731
    a = ([[think("happy"), think("sad")]], [["happy", "sad"]])   # right on both clips
    b = ([[think("happy"), think("happy")]], [["happy", "happy"]])  # right on clip 0 only
    d = E.paired_difference(a, b, labels, n_boot=200)
    assert d["EEA"]["value"] == pytest.approx(0.5) and d["UAR"]["value"] == pytest.approx(0.5)
    # every resample's difference is 0 (two clip-0s), 0.5 or 1 (two clip-1s)
    assert 0 <= d["EEA"]["low"] <= 0.5 <= d["EEA"]["high"] <= 1


def test_cli_evaluate_writes_and_prints_the_table(tmp_path, cfg, monkeypatch, capsys, fakes):
    from erv_lab.cli import main

    def fake_ensure(c, rd, force=False, dataset=None):
        assert c.preset == "smoke" and c.eval.seeds == [0] and force
        res = E.evaluate_models(fakes.fake_generators(), fakes.make_examples(), fakes.FakeJudge(), c, rd)
        return R.write_results(res, rd, eval_seconds=0.5)

    monkeypatch.setattr(S, "ensure_results", fake_ensure)
    assert main(["evaluate", "--preset", "smoke", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| GRPO + ERV" in printed and f"results.json: {tmp_path / 'results.json'}" in printed


def test_several_datasets_are_scored_each_on_its_own_test_fold(tmp_path, cfg):
    from erv_lab.labels import vocabulary

    im = Image.new("RGB", (8, 8))
    examples = [{"clip_id": f"{ds}{i}", "label": lab, "dataset": ds, "frames": [im], "spectrogram": im}
                for ds in ("dfew", "mafw") for i, lab in enumerate(list(vocabulary(ds))[:4])]

    def truthful(exs, temperature, top_p, seed, max_new_tokens):
        return [f"<think>It looks like {e['label']}.</think>\n<answer>{e['label']}</answer>" for e in exs]

    class WordJudge:
        name = "word"

        def judge(self, texts, labels):
            return [next((lab for lab in labels if lab in t), labels[0]) for t in texts]

    gens = {arm: (truthful, arm) for arm in ("sft", "baseline", "erv")}
    results = R.write_results(E.evaluate_by_dataset(gens, examples, WordJudge(), cfg, tmp_path), tmp_path)
    assert set(results["datasets"]) == {"dfew", "mafw"}
    for ds, res in results["datasets"].items():
        assert res["protocol"]["dataset"] == ds and res["erv"]["n"] == 4 and res["erv"]["UAR"] == 1.0
        assert (tmp_path / "datasets" / ds / "eval" / "records.json").exists()
    assert R.schema_problems(results) == []  # the top level keeps the schema (the first dataset)
    md = (tmp_path / "results.md").read_text()
    assert "# DFEW" in md and "# MAFW" in md


def test_kappa_is_reported_between_every_pair_of_readings(tmp_path, cfg, fakes):
    class AlwaysNeutral:
        name = "neutral-only"

        def judge(self, texts, labels):
            return ["neutral"] * len(texts)

    class Copy(fakes.FakeJudge):
        name = "copy"

    results = E.evaluate_models(fakes.fake_generators(), fakes.make_examples(), fakes.FakeJudge(), cfg, tmp_path,
                                extra_judges={"neutral-only": AlwaysNeutral(), "copy": Copy()})
    k = results["erv"]["kappa"]
    assert set(k) == {"fake-keyword-judge vs neutral-only", "fake-keyword-judge vs copy", "neutral-only vs copy"}
    assert k["fake-keyword-judge vs copy"]["kappa"] == 1.0 and k["fake-keyword-judge vs neutral-only"]["agreement"] == 0.0
    md = R.render_markdown(R.write_results(results, tmp_path))
    assert "## Every judge" in md and "| neutral-only vs copy |" in md


def test_results_are_reused_only_for_the_same_models_and_settings(tmp_path, cfg, monkeypatch, fakes):
    dirs = fakes.fake_stages(monkeypatch, tmp_path, {"fake-keyword-judge": fakes.FakeJudge()}, fakes.make_examples())
    made = []
    monkeypatch.setattr(S, "policy_generator", lambda d, cfg: made.append(d) or (fakes.FakePolicy(), E.model_fingerprint(d)))
    first = S.ensure_results(cfg, tmp_path)
    assert len(made) == 3 and first["settings"]["models"]["erv"] == E.model_fingerprint(dirs["erv"])
    assert S.ensure_results(cfg, tmp_path) == first and len(made) == 3  # same models, same settings: reused
    import os
    import time

    os.utime(dirs["erv"] / "model.safetensors", ns=(time.time_ns(), time.time_ns() + 10**9))  # ERV retrained
    with pytest.warns(UserWarning, match="other models or settings"):
        S.ensure_results(cfg, tmp_path)
    assert len(made) == 6
    cfg.eval.max_new_tokens += 1  # another evaluation setting
    with pytest.warns(UserWarning, match="other models or settings"):
        S.ensure_results(cfg, tmp_path)
    assert len(made) == 9
    cfg.verifier.threshold = 0.3  # the reward columns are computed at tau: another reading of the verifier
    with pytest.warns(UserWarning, match="other models or settings"):
        S.ensure_results(cfg, tmp_path)
    assert len(made) == 12
