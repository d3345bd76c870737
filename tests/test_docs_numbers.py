"""The numbers the docs show about the shipped run come from it: README, docs/TRAINING.md and notebook 06."""
import json
import re
from pathlib import Path

import nbformat
import pytest

from erv_lab import report as R
from erv_lab.paths import REFERENCE_DIR

REPO = Path(__file__).resolve().parents[1]
RESULTS = REFERENCE_DIR / "results.json"


@pytest.mark.parametrize("rel", R.DOCS_WITH_RESULTS)
def test_the_results_block_is_generated_from_the_shipped_run(rel):
    text = (REPO / rel).read_text(encoding="utf-8")
    results = json.loads(RESULTS.read_text())
    assert text == R.sync_results_block(text, results, REFERENCE_DIR), \
        f"{rel}: the reference-run block disagrees with erv_lab/reference_run (run `make reference`)"


def test_the_check_catches_an_edited_number():
    results = json.loads(RESULTS.read_text())
    good = R.sync_results_block(f"x\n{R.BLOCK_START}\n{R.BLOCK_END}\ny", results, REFERENCE_DIR)
    value = f"{100 * results['erv']['EEA']:.1f}"
    assert value in good
    bad = good.replace(value, f"{float(value) + 1:.1f}", 1)
    assert R.sync_results_block(bad, results, REFERENCE_DIR) != bad


def test_notebook_06_quotes_the_shipped_run_only_through_generated_output():
    nb = nbformat.read(REPO / "notebooks" / "06_consistency.ipynb", as_version=4)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    quoted = re.findall(r"(?:EEA|EPC|UAR|WAR|FCR)[^.\n]{0,12}?[+−-]?\d+\.\d", prose)
    assert quoted == [], f"notebook 06 prose quotes run numbers: {quoted}"
    assert any("reference_markdown" in c.source for c in nb.cells if c.cell_type == "code")


MEASUREMENT = REPO / "docs" / "measurements" / "colab-t4.json"


def _quoted_gpu_figures(doc: dict, phases: list[str]) -> list[str]:
    """"SFT 1.42 GB" and the like, with the seconds per step where a notebook quotes them."""
    return [f"{phase.upper()} {doc[phase]['peak_allocated_gb']:.2f} GB" for phase in phases]


@pytest.mark.parametrize("rel,phases", [("README.md", "sft grpo"), ("erv_lab/configs/colab-t4.yaml", "sft grpo"),
                                        ("docs/measurements/README.md", "sft grpo"),
                                        ("notebooks/04_cold_start_sft.ipynb", "sft"), ("notebooks/05_grpo.ipynb", "grpo")])
def test_the_colab_t4_figures_are_the_measured_ones(rel, phases):
    """README, the preset and the measurements page quote docs/measurements/colab-t4.json, and that file measured
    the preset as it is now (its settings) on the T4 path (cap, fp16, no math SDPA), with finite values."""
    from erv_lab.config import load_config

    doc = json.loads(MEASUREMENT.read_text())
    text = (REPO / rel).read_text(encoding="utf-8")
    for figure in _quoted_gpu_figures(doc, phases.split()):
        assert figure in text, f"{rel} does not quote {figure!r} from {MEASUREMENT.name}"
    cfg = load_config("colab-t4")
    assert doc["t4_emulation"] and doc["math_sdp"] is False and doc["standin"]
    s = doc["settings"]
    assert (s["frames_per_image"], s["num_frames"], s["G"], s["micro_batch"], s["max_completion_length"],
            s["sft_batch_size"], s["eval_batch_size"], s["attn_implementation"], s["lora_r"]) == (
        cfg.policy.frames_per_image, cfg.data.num_frames, cfg.grpo.num_generations, cfg.grpo.micro_batch,
        cfg.grpo.max_completion_length, cfg.sft.batch_size, cfg.eval.batch_size, cfg.policy.attn_implementation,
        cfg.policy.lora_r), "colab-t4 changed since it was measured: measure again (docs/measurements/README.md)"
    assert doc["sft"]["non_finite"] == doc["grpo"]["non_finite"] == 0 and doc["grpo"]["peak_reserved_gb"] <= 14


@pytest.mark.parametrize("rel,phases", [("README.md", "sft grpo"), ("notebooks/04_cold_start_sft.ipynb", "sft"),
                                        ("notebooks/05_grpo.ipynb", "grpo")])
def test_the_quoted_seconds_per_step_are_the_measured_ones(rel, phases):
    doc = json.loads(MEASUREMENT.read_text())
    text = (REPO / rel).read_text(encoding="utf-8")
    digits = {"sft": 2, "grpo": 1}
    for phase in phases.split():
        quoted = f"{doc[phase]['s_per_step']:.{digits[phase]}f} s"
        assert quoted in text, f"{rel} does not quote {phase}'s {quoted!r} per step from {MEASUREMENT.name}"


def test_the_shipped_spread_is_the_shipped_run_and_its_seeds():
    """reference_run/spread.json (scripts/spread.py): its first row is the shipped run, its seed rows agree with
    seeds.json (one machine repeats exactly), and it covers other numerics and the newest stack."""
    spread = json.loads((REFERENCE_DIR / "spread.json").read_text())
    shipped = json.loads(RESULTS.read_text())
    rows = {r["name"]: r for r in spread["setups"]}
    for p in ("sample", "greedy"):
        block = shipped if p == "sample" else shipped[p]
        for arm in ("sft", "baseline", "erv"):
            assert rows["shipped"][p][arm] == {m: round(100 * block[arm][m], 1) for m in ("EEA", "EPC", "UAR")}
    seeds = json.loads((REFERENCE_DIR / "seeds.json").read_text())
    head = shipped["protocol"]["judge"]
    for name, r in rows.items():
        if name.startswith("seed") and not r["env"] and r["python"].startswith(".venv/"):
            for m in ("EEA", "EPC", "UAR"):
                assert r["sample"]["erv_minus_baseline"][m] == seeds["sample"][head][m]["per_seed"][str(r["seed"])]
    assert any(r["env"] for r in rows.values()) and "newest" in rows
    assert "<!-- spread:start -->" in (REPO / "README.md").read_text(encoding="utf-8")


def test_the_audio_ablation_row_quotes_the_shipped_file():
    """docs/TRAINING.md's audio-ablation numbers are reference_run/audio_ablation.json's (make reference)."""
    import re

    d = json.loads((REFERENCE_DIR / "audio_ablation.json").read_text())
    row = next(line for line in (REPO / "docs" / "TRAINING.md").read_text(encoding="utf-8").splitlines()
               if line.startswith("| **audio ablation**"))
    with_, without = map(float, re.search(r"\*\*([\d.]+) with audio, ([\d.]+) without\*\*", row).groups())
    assert (with_, without) == (round(d["spectrogram"]["accuracy"], 2), round(d["none"]["accuracy"], 2))
    m = re.search(r"fear falls from ([\d.]+) to ([\d.]+) and surprise from ([\d.]+) to ([\d.]+)", row)
    quoted = tuple(map(float, m.groups()))
    assert quoted == tuple(round(d[a]["per_class"][c], 2) for c in ("fear", "surprise")
                           for a in ("spectrogram", "none"))
