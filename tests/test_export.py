"""erv-lab export: a run's records as a datasets dataset + parquet + card (no network in any test)."""
import json

import pandas as pd
import pytest

from erv_lab import cli
from erv_lab import export as X
from erv_lab.paths import REFERENCE_DIR


def _run(tmp_path, source="synthetic"):
    rec = lambda arm, pred, judged: {"completion": f"<think>t {arm}</think><answer>{pred}</answer>",  # noqa: E731
                                     "think": f"t {arm}", "prediction": pred, "judged": judged,
                                     "rewards": {"format": 1.0, "accuracy": float(pred == "sad")},
                                     "sentences": [{"text": f"t {arm}", "names": ["sadness"], "matched": True,
                                                    "credited": True, "cues": ["gaze_down"], "absent": ["smile"]}]}
    records = [{"clip_id": c, "label": "sad",
                "arms": {a: {"sample": rec(a, "sad", "sad"), "greedy": rec(a, "happy", "sad")} for a in ("baseline", "erv")}}
               for c in ("c1", "c2")]
    (tmp_path / "eval").mkdir(parents=True)
    (tmp_path / "eval" / "records.json").write_text(json.dumps(records))
    (tmp_path / "eval" / "readings.json").write_text(json.dumps(
        {"headline": "j", "readings": {"c1": {"erv": {"sample": {"j": "sad", "k": "happy"}}}}}))
    (tmp_path / "results.json").write_text(json.dumps({"protocol": {"source": source, "judge": "j", "n_clips": 2},
                                                       **{a: {"UAR": 0.5, "EEA": 1.0, "EPC": 0.5} for a in ("baseline", "erv")}}))
    return tmp_path


def test_rows_by_hand(tmp_path):
    rows = X.rows(_run(tmp_path / "run"))
    assert len(rows) == 2 * 2 * 2
    r = next(r for r in rows if (r["clip_id"], r["model"], r["protocol"]) == ("c1", "erv", "greedy"))
    assert (r["answer"], r["correct"], r["judged"], r["rationale_right"]) == ("happy", False, "sad", True)
    assert (r["reward_format"], r["reward_accuracy"], r["absent_cue_sentences"]) == (1.0, 0.0, 1)
    assert json.loads(r["sentences"])[0]["cues"] == ["gaze_down"]
    assert json.loads(next(x for x in rows if (x["clip_id"], x["model"], x["protocol"]) == ("c1", "erv", "sample"))
                      ["judges"]) == {"j": "sad", "k": "happy"}


def test_the_shipped_run_round_trips_through_datasets_and_pandas(tmp_path):
    from datasets import load_from_disk

    out = tmp_path / "export"
    assert cli.main(["export", str(REFERENCE_DIR), "--out", str(out)]) == 0
    n = 56 * 3 * 2  # clips x models x protocols
    assert len(load_from_disk(str(out))) == n
    df = pd.read_parquet(out / "data.parquet")
    assert len(df) == n and set(df["model"]) == {"sft", "baseline", "erv"}
    erv = df[(df.model == "erv") & (df.protocol == "sample")]
    shipped = json.loads((REFERENCE_DIR / "results.json").read_text())
    assert erv["correct"].mean() == pytest.approx(shipped["erv"]["per_seed"][0]["UAR"], abs=1e-9)  # balanced test set
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: mit") and f"{n} rows" in card


def test_clear_errors_and_no_push_without_a_token_or_the_right(tmp_path, monkeypatch, capsys):
    assert cli.main(["export", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "erv-lab evaluate" in capsys.readouterr().err
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(PermissionError, match="HF_TOKEN"):
        X.export(_run(tmp_path / "a"), tmp_path / "x", push="me/records")
    monkeypatch.setenv("HF_TOKEN", "not-a-real-token")
    with pytest.raises(PermissionError, match="licensed"):
        X.export(_run(tmp_path / "b", source="dfew"), tmp_path / "y", push="me/records")
    assert not (tmp_path / "y").exists()  # refused before anything was written or sent
