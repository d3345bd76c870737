"""Training logs, the one place they are read (notebooks 04 to 06).

``log_history.{json,csv}`` and ``completions.jsonl`` I/O, one curve per log key, first-vs-last means, rollouts
regrouped per prompt, and one logged completion with the verifier's label set per ``<think>`` sentence. Reads
what training wrote; trains nothing and draws nothing (the figures are ``erv_lab.plots``).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

from erv_lab.labels import to_goemotions


def write_log_history(history: list[dict], out: Path) -> None:
    """``log_history.json`` and a CSV with the union of keys (one row per logging step)."""
    (out / "log_history.json").write_text(json.dumps(history, indent=1))
    keys = sorted({k for h in history for k in h})
    with open(out / "log_history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)


def read_log_history(out: str | Path) -> list[dict]:
    return json.loads((Path(out) / "log_history.json").read_text())


def read_completions(run_dir: str | Path, arm: str) -> list[dict]:
    """Rows of ``run_dir/<arm>/completions.jsonl`` (``arm`` may also be a run name like ``erv-degenerate``)."""
    path = Path(run_dir) / arm / "completions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def think_text(completion: str) -> str:
    from erv_lab.rewards import parse_completion

    return parse_completion(completion)[0] or ""


def describe_completion(row: dict, verifier, cfg) -> str:
    """One logged completion as text: reward parts, advantage, then each ``<think>`` sentence with its
    verifier label set (top-2 above tau) and a mark for whether the ground truth is in it."""
    from erv_lab.verifier import sentence_labels

    parts = "  ".join(f"{k[7:]}={v:.2f}" for k, v in row.items() if k.startswith("reward/"))
    head = f"[{row.get('solution', '?')}] {parts}  adv={row['advantage']:+.2f}\n  {row['completion'][:240]!r}"
    k = to_goemotions(row["solution"]) if row.get("solution") else None
    lines = [f"    {'✓' if k in s['labels'] else '✗'} {s['names']} {s['sentence'][:90]}" for s in
             sentence_labels(verifier, think_text(row["completion"]), cfg.verifier.threshold, cfg.verifier.top_k)]
    return "\n".join([head, *lines])


def curve(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(h["step"], h[key]) for h in history if key in h and h[key] is not None]
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def arm_histories(run_dir: str | Path, arms: Sequence[str] = ("baseline", "erv")) -> dict[str, list[dict]]:
    """``{arm: history}`` for the GRPO arms that have logged something under ``run_dir``."""
    return {arm: read_log_history(Path(run_dir) / arm) for arm in arms
            if (Path(run_dir) / arm / "log_history.json").exists()}


def first_last(history: list[dict], key: str, k: int = 3) -> tuple[float | None, float | None]:
    """Mean of ``key`` over the first and the last ``k`` logging steps (a noise-robust before/after)."""
    _, ys = curve(history, key)
    if not ys:
        return None, None
    return sum(ys[:k]) / len(ys[:k]), sum(ys[-k:]) / len(ys[-k:])


def completion_groups(run_dir: str | Path, arm: str, num_generations: int) -> list[list[dict]]:
    """``completions.jsonl`` rows regrouped per prompt (G contiguous rows, same logging step)."""
    rows = read_completions(run_dir, arm)
    groups: list[list[dict]] = []
    for r in rows:
        if groups and len(groups[-1]) < num_generations and groups[-1][0]["step"] == r["step"]:
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups
