"""The learner as the judge: label the evaluated rationales yourself, then compare your reading with the judges'.

The paper checked its rationales with human raters; here the learner is one. ``labeller(run_dir)`` shows one
``<think>`` text at a time (no arm, no answer) from ``run_dir/eval/records.json`` (headline protocol, first
sample), in a seeded shuffled order, and appends every click at once (flushed and fsynced) to
``run_dir/human/labels-<name>.jsonl``: ``{"key": "<clip>|<arm>|<protocol>|<sample>", "label": <emotion or
"cant_tell">, "sha": <hash of the text labelled>, "time": <unix seconds>}``. A key labelled again keeps its last
label; a label given to another text under the same key (the run was evaluated again) is *stale* and not counted.

``score`` (from ``MIN_LABELS`` labels on): Cohen's kappa between the learner and every judge reading of the same
rationales (``erv_lab.judges.agreement``; ``cant_tell`` items are left out of kappa and counted) and each arm's EEA
as the learner read it (labels equal to the truth / labelled rationales of the arm, ``cant_tell`` counted as not
equal) with a 95 % Wilson interval (each rationale is a different clip's decode, so the items are independent).
``merge`` pools several learners (majority per key) with their pairwise kappa. ``results_block`` is what
``erv_lab.stages.ensure_results`` adds to results.json as ``results["human"]`` when label files exist.
"""
from __future__ import annotations

import hashlib
import html
import itertools
import json
import math
import os
import random
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from erv_lab.labels import VOCABULARIES

MIN_LABELS = 20
CANT_TELL = "cant_tell"
HEADLINE = "sample"  # the headline protocol: the paper's sampling (erv_lab.evaluate.protocols)
KNOWN = {CANT_TELL} | {label for vocab in VOCABULARIES.values() for label in vocab}
MISSING = "no {path}: run `erv-lab evaluate --out RUN` (or notebook 06) first, it writes the evaluation records"


# ---------------------------------------------------------------- the label file
def rater_name(name: str | None = None) -> str:
    """``name``, else ``$USER``, else ``"you"``, reduced to letters, digits, ``-``, ``_`` and ``.``."""
    raw = name or os.environ.get("USER") or "you"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw).strip("._") or "you"


def label_path(run_dir: str | Path, name: str | None = None) -> Path:
    return Path(run_dir) / "human" / f"labels-{rater_name(name)}.jsonl"


def label_files(run_dir: str | Path) -> list[Path]:
    return sorted((Path(run_dir) / "human").glob("labels-*.jsonl"))


def item_key(clip_id: str, arm: str, protocol: str = HEADLINE, sample: int = 0) -> str:
    return f"{clip_id}|{arm}|{protocol}|{sample}"


def digest(text: str) -> str:
    """A short hash of the rationale text a label was given to."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def append_label(path: str | Path, key: str, label: str, sha: str | None = None,
                 allowed: Iterable[str] | None = None) -> dict:
    """Append one label line to ``path`` and fsync it; ``label`` must be in ``allowed`` (default: any known)."""
    allowed = set(allowed) | {CANT_TELL} if allowed is not None else KNOWN
    if label not in allowed:
        raise ValueError(f"unknown label {label!r}; valid: {sorted(allowed)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {"key": key, "label": label, "sha": sha, "time": round(time.time(), 3)}
    with open(path, "a+b") as f:
        f.seek(0, os.SEEK_END)
        lead = b""
        if f.tell():  # after a line cut by a crash, start on a fresh line
            f.seek(-1, os.SEEK_END)
            lead = b"" if f.read(1) == b"\n" else b"\n"
        f.write(lead + (json.dumps(line) + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    return line


def read_labels(path: str | Path) -> tuple[dict[str, dict], int]:
    """``({key: last line}, damaged)``: lines that do not parse (a line cut by a crash) are skipped and counted;
    a line with an unknown label or without a key is an error naming the file and line."""
    out, damaged = {}, 0
    for i, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            damaged += 1
            continue
        if not isinstance(row, dict) or not isinstance(row.get("key"), str) or row.get("label") not in KNOWN:
            raise ValueError(f"{path}, line {i}: not a label line (unknown label or no key): {raw[:120]}")
        out[row["key"]] = row
    return out, damaged


# ---------------------------------------------------------------- what to show
def load_records(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "eval" / "records.json"
    if not path.exists():
        raise FileNotFoundError(MISSING.format(path=path))
    return json.loads(path.read_text())


def dataset_labels(records: Sequence[dict], run_dir: str | Path | None = None) -> tuple[str, ...]:
    """The label list of the run's dataset (results.json's ``protocol.dataset``), else of the records' truths."""
    from erv_lab.judges import dataset_of

    res = Path(run_dir) / "results.json" if run_dir is not None else None
    name = json.loads(res.read_text()).get("protocol", {}).get("dataset") if res and res.exists() else None
    return VOCABULARIES[name if name in VOCABULARIES else dataset_of(sorted({r["label"] for r in records}))]


def items(records: Sequence[dict], run_dir: str | Path | None = None, protocol: str = HEADLINE) -> list[dict]:
    """One item per (clip, arm) with a non-empty rationale: key, clip_id, arm, truth, think, sha and ``readings``
    ``{judge: label}`` -- every judge's reading from ``eval/readings.json`` when the run has it, else only the
    headline judge's (the record's ``judged``; named from results.json). A judge's ``None`` reads as neutral."""
    every, head = {}, "headline judge"
    if run_dir is not None:
        side, res = Path(run_dir) / "eval" / "readings.json", Path(run_dir) / "results.json"
        if side.exists():
            saved = json.loads(side.read_text())
            every, head = saved["readings"], saved.get("headline", head)
        elif res.exists():
            head = json.loads(res.read_text()).get("protocol", {}).get("judge", head)
    out = []
    for r in records:
        for arm, per in r["arms"].items():
            rec = per.get(protocol)
            if not rec or not (rec.get("think") or "").strip():
                continue
            read = every.get(r["clip_id"], {}).get(arm, {}).get(protocol) or {head: rec.get("judged")}
            out.append({"key": item_key(r["clip_id"], arm, protocol), "clip_id": r["clip_id"], "arm": arm,
                        "truth": r["label"], "think": rec["think"], "sha": digest(rec["think"]),
                        "readings": {k: v or "neutral" for k, v in read.items()}})
    return out


def current(its: Sequence[dict], labels: dict[str, dict]) -> dict[str, str]:
    """``{key: label}`` of the labels given to the items' present text (stale and unknown keys dropped)."""
    return {it["key"]: labels[it["key"]]["label"] for it in its
            if it["key"] in labels and labels[it["key"]].get("sha") in (None, it["sha"])}


def queue(its: Sequence[dict], labels: dict[str, dict] | None = None, seed: int = 0) -> list[dict]:
    """The items in a shuffled order fixed by ``seed``, without those already labelled (resume)."""
    order = sorted(its, key=lambda it: it["key"])
    random.Random(seed).shuffle(order)
    done = current(its, labels or {})
    return [it for it in order if it["key"] not in done]


# ---------------------------------------------------------------- scoring
def wilson(k: int, n: int, z: float = 1.96) -> tuple[float | None, float | None]:
    """95 % Wilson score interval of a proportion k / n."""
    if n == 0:
        return None, None
    p, d = k / n, 1 + z * z / n
    mid, half = (p + z * z / (2 * n)) / d, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return round(max(0.0, mid - half), 4), round(min(1.0, mid + half), 4)


def kappa(a: Sequence[str], b: Sequence[str]) -> dict:
    """Cohen's kappa of two readings (``erv_lab.judges.agreement``); None when nothing overlaps."""
    from erv_lab.judges import agreement

    if not a:
        return {"kappa": None, "agreement": None, "n": 0}
    got = agreement(list(a), list(b), sorted(set(a) | set(b)))
    return {"kappa": round(got["kappa"], 4), "agreement": round(got["agreement"], 4), "n": got["n"]}


def score(its: Sequence[dict], labels: dict[str, dict], min_labels: int = MIN_LABELS) -> dict:
    """The learner's reading against the judges' (see the module docstring). Below ``min_labels`` labels only
    ``n`` and a message saying how many more are needed."""
    mine = current(its, labels)
    out: dict[str, Any] = {"n": len(mine), "cant_tell": sum(v == CANT_TELL for v in mine.values()),
                           "stale": len(labels) - len(mine), "protocol": HEADLINE, "min_labels": min_labels}
    if len(mine) < min_labels:
        out["message"] = f"{len(mine)} labelled, {min_labels - len(mine)} more until kappa"
        return out
    done = [it for it in its if it["key"] in mine]
    clear = [it for it in done if mine[it["key"]] != CANT_TELL]
    judges = sorted({j for it in done for j in it["readings"]})
    out["kappa"] = {j: kappa([mine[it["key"]] for it in clear if j in it["readings"]],
                             [it["readings"][j] for it in clear if j in it["readings"]]) for j in judges}
    out["EEA"], out["interval"] = {}, "95 % Wilson score interval"
    for arm in sorted({it["arm"] for it in done}):
        sub = [it for it in done if it["arm"] == arm]
        k = sum(mine[it["key"]] == it["truth"] for it in sub)
        low, high = wilson(k, len(sub))
        out["EEA"][arm] = {"EEA": round(k / len(sub), 4), "low": low, "high": high, "n": len(sub),
                           "cant_tell": sum(mine[it["key"]] == CANT_TELL for it in sub),
                           "judges": {j: round(sum(it["readings"].get(j) == it["truth"] for it in sub) / len(sub), 4)
                                      for j in judges}}
    out["message"] = reading_line(out)
    return out


def reading_line(block: dict) -> str:
    """One sentence computed from a scored block: the closest and farthest judge, the arms' EEA as read."""
    if "kappa" not in block:
        return block["message"]
    ks = sorted(((v["kappa"], j, v["n"]) for j, v in block["kappa"].items() if v["kappa"] is not None), reverse=True)
    parts = [f"{block['n']} rationales labelled ({block['cant_tell']} can't tell)"]
    if len(ks) == 1:
        parts.append(f"kappa with {ks[0][1]} {ks[0][0]:.2f} (n = {ks[0][2]})")
    elif ks:
        parts.append(f"your reading agrees most with {ks[0][1]} (kappa {ks[0][0]:.2f}, n = {ks[0][2]}) and least "
                     f"with {ks[-1][1]} (kappa {ks[-1][0]:.2f})")
    eea = sorted(((v["EEA"], a, v) for a, v in block["EEA"].items()), key=lambda t: t[0], reverse=True)
    if len(eea) > 1 and eea[0][0] == eea[-1][0]:
        parts.append(f"as you read them every arm has EEA {eea[0][0]:.2f}")
    elif len(eea) > 1:
        (hi, a, va), (lo, b, vb) = eea[0], eea[-1]
        overlap = va["low"] <= vb["high"]
        parts.append(f"as you read them EEA is highest for {a} ({hi:.2f} [{va['low']:.2f}, {va['high']:.2f}]) and "
                     f"lowest for {b} ({lo:.2f} [{vb['low']:.2f}, {vb['high']:.2f}]); the intervals "
                     + ("overlap" if overlap else "do not overlap"))
    return "; ".join(parts) + "."


# ---------------------------------------------------------------- several learners
def merge(files: Sequence[str | Path]) -> dict:
    """Pool learners' label files: per key the majority label (a tie between the most frequent labels gives
    ``cant_tell``; only votes on the text most voted for under that key count), the raters, and Cohen's kappa
    between every pair of learners over the keys both labelled on the same text, neither ``cant_tell``."""
    names = [rater_name(Path(f).stem.removeprefix("labels-")) for f in files]
    if len(set(names)) < len(names):
        raise ValueError(f"several label files name the same learner ({', '.join(names)}): rename them "
                         "labels-<name>.jsonl, one name per learner")
    per = {n: read_labels(f) for n, f in zip(names, files)}
    merged, ties = {}, 0
    for key in sorted({k for lab, _ in per.values() for k in lab}):
        rows = [lab[key] for lab, _ in per.values() if key in lab]
        sha = Counter(r.get("sha") for r in rows).most_common(1)[0][0]
        votes = Counter(r["label"] for r in rows if r.get("sha") == sha).most_common()
        tie = len(votes) > 1 and votes[0][1] == votes[1][1]
        ties += tie
        merged[key] = {"key": key, "label": CANT_TELL if tie else votes[0][0], "sha": sha, "votes": dict(votes)}
    pairs = {}
    for a, b in itertools.combinations(sorted(per), 2):
        la, lb = per[a][0], per[b][0]
        both = [k for k in sorted(set(la) & set(lb)) if la[k].get("sha") == lb[k].get("sha")
                and CANT_TELL not in (la[k]["label"], lb[k]["label"])]
        pairs[f"{a} vs {b}"] = kappa([la[k]["label"] for k in both], [lb[k]["label"] for k in both])
    return {"labels": merged, "raters": sorted(per), "ties": ties, "kappa": pairs,
            "damaged": {r: d for r, (_, d) in per.items() if d}}


def write_labels(path: str | Path, labels: dict[str, dict]) -> Path:
    """Write ``{key: line}`` (e.g. ``merge(...)["labels"]``) as a label file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(v) + "\n" for v in labels.values()))
    return path


# ---------------------------------------------------------------- the run's reading, results.json, report
def run_reading(run_dir: str | Path, files: Sequence[str | Path] | None = None) -> dict | None:
    """Score the run's label files (all of ``run_dir/human/labels-*.jsonl``, merged when several); None when
    there are none. Adds ``raters``, ``damaged`` and, with several raters, their pairwise ``rater_kappa``."""
    files = list(files) if files is not None else label_files(run_dir)
    if not files:
        return None
    its = items(load_records(run_dir), run_dir)
    if len(files) == 1:
        labels, damaged = read_labels(files[0])
        extra = {"raters": [rater_name(Path(files[0]).stem.removeprefix("labels-"))], "damaged": damaged}
    else:
        m = merge(files)
        labels = m["labels"]
        extra = {"raters": m["raters"], "damaged": sum(m["damaged"].values()), "rater_kappa": m["kappa"],
                 "ties": m["ties"]}
    return {**score(its, labels), **extra}


def update_results(run_dir: str | Path) -> dict | None:
    """Add (or refresh, or remove) ``results["human"]`` in an existing ``run_dir/results.json`` without
    evaluating anything; results.json is rewritten only when the block changed. Returns the block."""
    path = Path(run_dir) / "results.json"
    results = json.loads(path.read_text())
    has_records = (Path(run_dir) / "eval" / "records.json").exists()
    block = run_reading(run_dir) if has_records else None
    if results.get("human") != block:
        if block is None:
            results.pop("human", None)
        else:
            results["human"] = block
        path.write_text(json.dumps(results, indent=2))
    return block


def report(run_dir: str | Path, files: Sequence[str | Path] | None = None, show: bool = True) -> dict:
    """``{"block", "kappa": DataFrame (one row per judge), "EEA": DataFrame (one row per arm), "line"}``;
    printed (or displayed in a notebook) when ``show``."""
    import pandas as pd

    block = run_reading(run_dir, files)
    if block is None:
        raise FileNotFoundError(f"no label files in {Path(run_dir) / 'human'}: label with erv_lab.human.labeller "
                                "(notebooks/label.ipynb)")
    kap = pd.DataFrame([{"reading": j, **v} for j, v in block.get("kappa", {}).items()])
    eea = pd.DataFrame([{"arm": a, **{k: v[k] for k in ("EEA", "low", "high", "n", "cant_tell")},
                         **{f"{j} EEA": x for j, x in v["judges"].items()}} for a, v in block.get("EEA", {}).items()])
    out = {"block": block, "kappa": kap.set_index("reading") if len(kap) else kap,
           "EEA": eea.set_index("arm") if len(eea) else eea, "line": block["message"]}
    if block["damaged"]:
        out["line"] += f" ({block['damaged']} damaged line(s) skipped: labels cut off by a crash, give them again)"
    if show:
        print(out["line"])
        if len(kap):
            print("\nCohen's kappa, you vs each judge (can't-tell items left out):\n" + out["kappa"].to_string())
        if len(eea):
            print(f"\nEEA as you read it ({block['interval']}):\n" + out["EEA"].to_string())
    return out


# ---------------------------------------------------------------- the widget
def labeller(run_dir: str | Path, name: str | None = None, seed: int = 0):
    """One rationale at a time (no arm, no answer), a button per emotion and "can't tell"; each click is saved
    at once to ``label_path(run_dir, name)`` and the next unlabelled rationale is shown (resumes after a restart)."""
    import ipywidgets as W

    records = load_records(run_dir)
    its, vocab, path = items(records, run_dir), dataset_labels(records, run_dir), label_path(run_dir, name)
    labels = read_labels(path)[0] if path.exists() else {}
    text, progress, reading = W.HTML(), W.HTML(), W.HTML()
    buttons = [W.Button(description=v, tooltip=v) for v in vocab] + [W.Button(description="can't tell")]
    state: dict[str, Any] = {}

    def show():
        todo = queue(its, labels, seed)
        state["item"] = todo[0] if todo else None
        n = len(current(its, labels))
        text.value = (f'<div class="erv-label-text" style="font-size:15px;max-width:60em;padding:8px;border:1px '
                      f'solid #ccc">{html.escape(todo[0]["think"])}</div>' if todo else
                      '<div class="erv-label-done">Every rationale is labelled.</div>')
        more = f", {MIN_LABELS - n} more until κ" if n < MIN_LABELS else ""
        progress.value = f'<span class="erv-label-progress">{n} labelled{more} (of {len(its)}) · {path}</span>'
        reading.value = html.escape(score(its, labels)["message"]) if n >= MIN_LABELS else ""
        for b in buttons:
            b.disabled = not todo

    def click(button):
        item = state.get("item")
        if item is None:
            return
        label = CANT_TELL if button.description == "can't tell" else button.description
        labels[item["key"]] = append_label(path, item["key"], label, item["sha"], vocab)
        show()

    for b in buttons:
        b.on_click(click)
    show()
    return W.VBox([progress, text, W.HBox(buttons), reading])
