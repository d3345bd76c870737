"""Training logs and how the notebooks show them (notebooks 03 and 04).

``log_history.{json,csv}`` and ``completions.jsonl`` I/O, curves per log key, a live plot that updates in place
while ``erv_lab.train`` runs, first-vs-last means, rollouts regrouped per prompt, and one logged completion with
the verifier's label set per ``<think>`` sentence. Reads what training wrote; trains nothing.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Callable, Sequence

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


def plot_curves(histories: dict[str, list[dict]], keys: Sequence[str], fig=None):
    """One panel per log key, one line per run (e.g. ``{"baseline": hist, "erv": hist}``)."""
    import matplotlib.pyplot as plt

    fig = fig or plt.figure(figsize=(4 * len(keys), 3))
    fig.clf()
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        for name, hist in histories.items():
            ax.plot(*curve(hist, key), marker=".", label=name)
        ax.set_title(key.replace("rewards/", "").replace("/mean", ""), fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def live_plot(keys: Sequence[str], name: str = "run", min_seconds: float = 10.0) -> Callable:
    """An ``on_log`` hook that redraws ``keys`` in the notebook at a logging step, at most once every
    ``min_seconds`` (a redraw costs about half a second of training). It takes one run's history
    (``ensure_grpo``) or ``{name: history}`` for several runs side by side (``run_arms``). The figure is
    updated in place (a display handle), so progress bars in the same cell stay visible. Plot the final
    curves with ``plot_curves`` after training."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    fig = plt.figure(figsize=(4 * len(keys), 3))
    plt.close(fig)
    last, handle = [-float("inf")], [None]

    def hook(history):
        if time.monotonic() - last[0] < min_seconds:
            return
        runs = history if isinstance(history, dict) else {name: history}
        present = [k for k in keys if any(k in r for h in runs.values() for r in h)]
        plot_curves(runs, present or keys[:1], fig)
        if handle[0] is None:
            handle[0] = display(fig, display_id=True)
        else:
            handle[0].update(fig)
        last[0] = time.monotonic()

    return hook


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
