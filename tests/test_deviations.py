"""The table of deviations from the paper is generated from the presets, and the README holds the current one."""
from pathlib import Path

import pytest

from erv_lab import deviations as D
from erv_lab.config import load_config

REPO = Path(__file__).resolve().parents[1]


def _row(rows, setting_id, preset):
    (row,) = [r for r in rows if r["id"] == setting_id and r["preset"] == preset]
    return row


def test_the_readme_block_is_the_generated_table():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert D.BLOCK_START in text and D.BLOCK_END in text
    assert D.sync_block(text, D.markdown()) == text, \
        "README.md's deviations block is stale: run python -m erv_lab.deviations --write README.md"


def test_a_changed_preset_value_shows_up_as_a_deviation():
    cfg = load_config("paper", ["grpo.beta=0.1", "grpo.num_generations=8"])
    rows = D.table([cfg])
    assert _row(rows, "beta", "paper")["status"] == "deviates"
    assert _row(rows, "beta", "paper")["value"] == "0.1"
    assert _row(rows, "group", "paper")["status"] == "deviates"
    assert "**0.1 ≠**" in D.markdown([cfg])
    # a deviation nobody wrote a reason for says so instead of inventing one
    assert _row(rows, "beta", "paper")["reason"] == D.NO_REASON


def test_a_value_equal_to_the_papers_is_no_deviation():
    cfg = load_config("cpu-tiny", ["grpo.temperature=1.0", "reward.strict_format=false", "grpo.loss_type=grpo"])
    rows = D.table([cfg])
    for sid in ("temperature", "strict_format", "loss", "beta"):
        row = _row(rows, sid, "cpu-tiny")
        assert row["status"] == "same" and row["reason"] == "", row
    assert _row(D.table(["cpu-tiny"]), "temperature", "cpu-tiny")["status"] == "deviates"


def test_the_paper_preset_follows_the_paper_where_the_docs_record_it():
    """The `paper` preset deviates only where the docs say it must: the policy model and the headline judge."""
    assert {r["id"] for r in D.deviations(["paper"])} == {"model", "judge"}


def test_every_deviation_of_a_default_preset_has_a_reason():
    missing = [(r["preset"], r["id"]) for r in D.deviations() if not r["reason"] or r["reason"] == D.NO_REASON]
    assert missing == [], f"write a reason in erv_lab/deviations.py REASONS for {missing}"


def test_each_paper_value_is_stated_where_it_is_cited():
    """Nothing is filled in from memory: the quoted words are in the cited file, or the value says it is not
    stated."""
    for s in D.PAPER:
        if s.paper is None:
            assert s.paper_text == D.NOT_STATED and not s.quote, s.id
            continue
        doc = s.source.split(",")[0]
        assert doc in (D.METHOD, D.TRAINING), s.id
        text = " ".join((REPO / doc).read_text(encoding="utf-8").split())
        assert s.quote and " ".join(s.quote.split()) in text, f"{s.id}: {s.quote!r} not in {doc}"


def test_every_key_a_setting_reads_is_a_config_field():
    cfg = load_config("cpu-tiny")
    for s in D.PAPER:
        for key in s.keys:
            section, name = key.split(".")
            assert hasattr(getattr(cfg, section), name), key


def test_the_command_line_writes_and_checks_the_block(tmp_path, capsys):
    doc = tmp_path / "DOC.md"
    doc.write_text(f"before\n{D.BLOCK_START}\nold\n{D.BLOCK_END}\nafter\n", encoding="utf-8")
    assert D.main(["--check", str(doc)]) == 1
    assert D.main(["--write", str(doc)]) == 0
    assert D.main(["--check", str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("before\n") and text.endswith("after\n") and D.markdown() in text
    with pytest.raises(ValueError):
        D.sync_block("no markers", "x")


def test_a_notebooks_own_config_takes_its_presets_column():
    cfg = load_config("cpu-tiny", ["grpo.temperature=1.0"])
    cols = D.presets_with(cfg)
    assert cols[0] is cfg and cols[1:] == list(D.DEFAULT_PRESETS[1:])
    assert _row(D.table(cols), "temperature", "cpu-tiny")["status"] == "same"
    smoke = load_config("smoke")
    assert D.presets_with(smoke) == [*D.DEFAULT_PRESETS, smoke]
