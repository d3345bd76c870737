"""Training logs, the one place they are read (notebooks 04 to 06).

``log_history.{json,csv}`` I/O and TRL's completion logs read back (``completions/*.parquet``, or the
``completions.jsonl`` older runs wrote), one curve per log key, first-vs-last means, rollouts regrouped per
prompt, and one logged completion with the verifier's label set per ``<think>`` sentence. Reads what training
wrote; trains nothing and draws nothing (the figures are ``erv_lab.plots``).
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Sequence

from erv_lab.labels import to_goemotions


def write_log_history(history: list[dict], out: Path) -> None:
    """``log_history.json`` and a CSV with the union of keys (one row per logging step)."""
    # Written beside and renamed into place: a reader following a training worker (``arms.run_arms``) never
    # sees a half-written file.
    tmp = out / f".log_history.json.{os.getpid()}"
    tmp.write_text(json.dumps(history, indent=1))
    os.replace(tmp, out / "log_history.json")
    keys = sorted({k for h in history for k in h})
    with open(tmp.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    os.replace(tmp.with_suffix(".csv"), out / "log_history.csv")


def read_log_history(out: str | Path) -> list[dict]:
    return json.loads((Path(out) / "log_history.json").read_text())


COMPLETIONS_GLOB = "completions/completions_*.parquet"  # what TRL's GRPOTrainer writes (log_completions=True)
_TRL_COLUMNS = ("step", "prompt", "completion", "advantage", "image")  # TRL's own columns; rewards are the others


def completion_files(run_dir: str | Path, arm: str) -> list[Path]:
    """TRL's completion logs of ``run_dir/<arm>``, one parquet file per logged step, in step order."""
    return sorted((Path(run_dir) / arm).glob(COMPLETIONS_GLOB))


def _message_text(value) -> str:
    """A completion as TRL logs it: a string, or a conversation (``[{"role", "content"}]``, content a string or
    a list of ``{"type": "text", "text"}`` parts) as parquet gives it back."""
    from erv_lab.rewards import completion_text

    if hasattr(value, "tolist"):  # numpy arrays of structs / lists from parquet
        value = value.tolist()
    return completion_text(value)


def _plain(value):
    """A parquet cell as plain Python (numpy scalars and arrays -> numbers and lists; NaN stays a float)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _parquet_rows(path: Path) -> list[dict]:
    import pandas as pd

    df = pd.read_parquet(path)
    rewards = [c for c in df.columns if c not in _TRL_COLUMNS and pd.api.types.is_numeric_dtype(df[c])]
    extras = [c for c in df.columns if c not in _TRL_COLUMNS and c not in rewards]
    rows = []
    for i, r in enumerate(df.to_dict(orient="records")):
        rows.append({"step": int(r["step"]), "index": i, "completion": _message_text(r["completion"]),
                     "advantage": float(r["advantage"]), **{c: _plain(r[c]) for c in extras},
                     **{f"reward/{c}": float(r[c]) for c in rewards}})
    return rows


def read_completions(run_dir: str | Path, arm: str) -> list[dict]:
    """The logged completions of ``run_dir/<arm>`` (``arm`` may also be a run name like ``erv-degenerate``), one
    dict per completion, in the order they were logged (a prompt's G completions are contiguous, at one step):
    ``step``, ``index`` (row within its step), ``completion`` (text), ``advantage``, ``reward/<name>`` for each
    reward, and the columns the rewards added (``clip_id``, ``solution``, ``explanation/labels``, ...).

    Read from TRL's ``completions/completions_<step>.parquet`` files and from the ``completions.jsonl`` that
    erv-lab wrote before it used them (the same keys; the shipped reference run until it is regenerated; a run
    begun before and resumed after keeps its earlier steps from the jsonl); ``[]`` when there is neither."""
    rows = [row for f in completion_files(run_dir, arm) for row in _parquet_rows(f)]
    path = Path(run_dir) / arm / "completions.jsonl"
    if path.exists():
        first = rows[0]["step"] if rows else float("inf")
        old = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = [r for r in old if r["step"] < first] + rows
    return rows


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
    """:func:`read_completions` rows regrouped per prompt (G contiguous rows, same logging step)."""
    rows = read_completions(run_dir, arm)
    groups: list[list[dict]] = []
    for r in rows:
        if groups and len(groups[-1]) < num_generations and groups[-1][0]["step"] == r["step"]:
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups
