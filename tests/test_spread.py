"""scripts/spread.py: per-arm metrics, ERV - baseline and the ranges across set-ups, by hand."""
import importlib.util
import json
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("spread", Path(__file__).parents[1] / "scripts" / "spread.py")
SP = importlib.util.module_from_spec(spec)
spec.loader.exec_module(SP)


def _results(erv_eea, uar=0.8):
    arms = {"sft": {"EEA": 0.5, "EPC": 0.5, "UAR": 0.75}, "baseline": {"EEA": 0.6, "EPC": 0.7, "UAR": 0.8},
            "erv": {"EEA": erv_eea, "EPC": 0.9, "UAR": uar}}
    return {"protocol": {"judge": "head", "machine": {"cpu": "x"}}, **arms, "greedy": arms}


def test_arm_metrics_are_points_and_the_difference_is_erv_minus_baseline():
    m = SP.arm_metrics(_results(0.75, uar=0.77), "sample")
    assert m["erv"] == {"EEA": 75.0, "EPC": 90.0, "UAR": 77.0} and m["sft"]["UAR"] == 75.0
    assert m["erv_minus_baseline"] == {"EEA": 15.0, "EPC": 20.0, "UAR": -3.0}


def test_the_summary_gives_each_range_and_counts_positive_differences():
    rows = [SP.row(n, n, {}, 0, "py", _results(e), "cmd") for n, e in (("a", 0.55), ("b", 0.8), ("c", 0.9))]
    s = SP.summary(rows)["greedy"]["erv_minus_baseline"]["EEA"]
    assert (s["min"], s["max"], s["n_positive"], s["n"]) == (-5.0, 30.0, 2, 3)
    assert SP.summary(rows)["sample"]["baseline"]["EPC"] == {"min": 70.0, "max": 70.0, "n_positive": 3, "n": 3}


def test_a_reused_run_is_read_and_the_markdown_names_every_set_up(tmp_path, monkeypatch):
    run = tmp_path / "avx2"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(_results(0.8)))
    (run / "spread-stack.json").write_text(json.dumps({"torch": "9.9", "transformers": "8.8"}))
    out = tmp_path / "spread.json"
    assert SP.main(["--only", "avx2", "--reuse", f"avx2={run}", "--write", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["name"] for r in doc["setups"]] == ["shipped", "avx2"]
    assert doc["setups"][1]["stack"] == {"torch": "9.9", "transformers": "8.8"}
    assert doc["setups"][1]["reused_from"] == str(run) and "ONEDNN_MAX_CPU_ISA=AVX2" in doc["setups"][1]["command"]
    assert "| avx2 |" in out.with_suffix(".md").read_text()


def test_a_run_from_another_cpu_type_extends_the_file_and_keeps_what_was_measured(tmp_path):
    from erv_lab.paths import REFERENCE_DIR

    shipped = json.loads((REFERENCE_DIR / "results.json").read_text())
    out = tmp_path / "spread.json"
    seed1 = tmp_path / "seed1"
    seed1.mkdir()
    (seed1 / "results.json").write_text(json.dumps(_results(0.8)))
    assert SP.main(["--only", "seed1", "--reuse", f"seed1={seed1}", "--write", str(out)]) == 0
    other = tmp_path / "other"
    other.mkdir()
    same_cpu = {**_results(0.7), "protocol": {**_results(0.7).get("protocol", {}),
                                             "machine": shipped["protocol"]["machine"]}}
    (other / "results.json").write_text(json.dumps(same_cpu))
    with pytest.raises(SystemExit):  # the shipped run's CPU type is not another one
        SP.main(["--only", "other-cpu", "--reuse", f"other-cpu={other}", "--extend", "--write", str(out)])
    with pytest.raises(SystemExit):  # made elsewhere: never run here
        SP.main(["--only", "other-cpu", "--write", str(out)])
    xeon = {**same_cpu, "protocol": {**same_cpu["protocol"], "machine": {"cpu": "Intel(R) Xeon(R) Processor"}}}
    (other / "results.json").write_text(json.dumps(xeon))
    assert SP.main(["--only", "other-cpu", "--reuse", f"other-cpu={other}", "--extend", "--write", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [r["name"] for r in doc["setups"]] == ["shipped", "seed1", "other-cpu"]
    assert "Intel(R) Xeon(R) Processor" in doc["setups"][2]["what"] and doc["summary"]["sample"]["erv"]["EEA"]["n"] == 3
    assert "other-cpu" not in [n for n in SP.SETUPS if n not in SP.REUSE_ONLY]  # a full run never tries it

