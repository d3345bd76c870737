"""A run's per-clip records as a Hugging Face dataset anyone can open (``erv-lab export``).

One row per clip × model × decoding protocol: the truth, the answer, the rationale, every judge's reading
(``eval/readings.json``), the reward parts, and per sentence the verifier's labels and the cues it describes
(absent ones apart). Saved with ``datasets`` (``save_to_disk``) and as one parquet file, with a dataset card
(``README.md``), so that pandas, ``datasets.load_from_disk`` or the Hub's viewer open it. ``push_to_hub`` runs
only with a token in ``HF_TOKEN`` and, for runs on licensed data (DFEW, MAFW), only when the caller says they may
share what the records derive from. Reads what ``erv_lab.evaluate`` wrote; computes nothing.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

SENTENCE_KEYS = ("text", "names", "matched", "credited", "cues", "absent")


def rows(run_dir: str | Path) -> list[dict]:
    """The flat rows of ``run_dir/eval/records.json`` (and ``readings.json`` when present)."""
    run_dir = Path(run_dir)
    path = run_dir / "eval" / "records.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: evaluate the run first (`erv-lab evaluate --out {run_dir}` "
                                "or notebook 06)")
    records = json.loads(path.read_text())
    rpath = run_dir / "eval" / "readings.json"
    readings = json.loads(rpath.read_text())["readings"] if rpath.exists() else {}
    out = []
    for rec in records:
        for arm, protocols in rec["arms"].items():
            for protocol, r in protocols.items():
                judges = readings.get(rec["clip_id"], {}).get(arm, {}).get(protocol, {})
                rewards = r.get("rewards") or {}
                out.append({
                    "clip_id": rec["clip_id"], "label": rec["label"], "model": arm, "protocol": protocol,
                    "answer": r.get("prediction"), "correct": r.get("prediction") == rec["label"],
                    "rationale": r.get("think"), "judged": r.get("judged"),
                    "rationale_right": r.get("judged") == rec["label"], "completion": r.get("completion"),
                    "judges": json.dumps(judges, sort_keys=True),
                    **{f"reward_{k}": float(v) for k, v in sorted(rewards.items())},
                    "sentences": json.dumps([{k: s.get(k) for k in SENTENCE_KEYS} for s in r.get("sentences") or []]),
                    "absent_cue_sentences": sum(bool(s.get("absent")) for s in r.get("sentences") or []),
                })
    return out


def card(run_dir: str | Path, n_rows: int) -> str:
    """The dataset card: what a row is, where it comes from, the run's headline numbers and the licence."""
    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text()) if (run_dir / "results.json").exists() else {}
    proto = results.get("protocol", {})
    source = proto.get("source", "unknown")
    head = "\n".join(f"| {arm} | {100 * results[arm]['UAR']:.1f} | {100 * results[arm]['EEA']:.1f} | "
                     f"{100 * results[arm]['EPC']:.1f} |" for arm in ("sft", "baseline", "erv") if arm in results)
    licence = "mit" if source == "synthetic" else "other"  # synthetic: the project's own licence
    note = ("The clips are erv-lab's synthetic clips; the rationales were written by models trained in this run."
            if source == "synthetic" else
            f"The records derive from {source} (licensed data: no clips or frames are in them, but check the "
            "dataset's licence before you share them).")
    return f"""---
license: {licence}
pretty_name: erv-lab evaluation records
tags: [emotion-recognition, rationales, grpo, erv-lab]
---
# erv-lab evaluation records

{n_rows} rows: one per test clip × model (SFT, GRPO baseline, GRPO + ERV) × decoding protocol, exported by
`erv-lab export` from `{run_dir.name}/eval/records.json`. {note}

Columns: `clip_id`, `label` (truth), `model`, `protocol` (`sample`: the first sampled decode; `greedy`),
`answer` and `correct`, `rationale` (the `<think>` text), `judged` (the headline judge's reading of it,
`{proto.get("judge", "?")}`) and `rationale_right`, `completion` (the raw text), `judges` (JSON: every judge's
reading), `reward_*` (the reward parts), `sentences` (JSON: per sentence the verifier's labels, whether it was
credited, and the cues it describes, absent ones apart; cues exist for synthetic clips only) and
`absent_cue_sentences`.

Headline numbers of the run ({proto.get("n_clips", "?")} clips, {source}, sampling protocol pooled, %):

| model | UAR | EEA | EPC |
|---|---|---|---|
{head}

Made with erv-lab (a course reproducing Rha et al., *Emotion-Coherent Reasoning for Multimodal LLMs via
Emotional Rationale Verifier*, arXiv 2510.23506).
"""


def export(run_dir: str | Path, out: str | Path, push: str | None = None, may_share: bool = False) -> dict:
    """Write ``out/`` (``datasets`` on disk), ``out/data.parquet`` and ``out/README.md``; with ``push`` (a Hub
    repo id) also push the dataset, which needs ``HF_TOKEN`` and, for licensed sources, ``may_share``."""
    from datasets import Dataset

    run_dir, out = Path(run_dir), Path(out)
    table = rows(run_dir)
    results = json.loads((run_dir / "results.json").read_text()) if (run_dir / "results.json").exists() else {}
    source = results.get("protocol", {}).get("source", "unknown")
    if push and not os.environ.get("HF_TOKEN"):
        raise PermissionError("pushing needs a Hub token in the HF_TOKEN environment variable")
    if push and source != "synthetic" and not may_share:
        raise PermissionError(f"these records derive from {source} (licensed data): pass --i-may-share only if its "
                              "licence lets you publish them")
    ds = Dataset.from_list(table)
    ds.save_to_disk(str(out))
    ds.to_parquet(str(out / "data.parquet"))
    (out / "README.md").write_text(card(run_dir, len(table)))
    if push:
        ds.push_to_hub(push, token=os.environ["HF_TOKEN"], private=True)
    return {"rows": len(table), "out": str(out), "pushed": push}
