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
    nb = nbformat.read(REPO / "notebooks" / "06_consistency_analysis.ipynb", as_version=4)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    quoted = re.findall(r"(?:EEA|EPC|UAR|WAR|FCR)[^.\n]{0,12}?[+−-]?\d+\.\d", prose)
    assert quoted == [], f"notebook 06 prose quotes run numbers: {quoted}"
    assert any("reference_markdown" in c.source for c in nb.cells if c.cell_type == "code")
