"""The course report: ``results.json`` / ``results.md`` (paper-style table with 95 % intervals), the 2x2
tables, and the shipped ``erv_lab/reference_run/``.

Reads what ``erv_lab.evaluate`` and ``erv_lab.train`` wrote in the run folder; computes no metric and runs
no model. ``finalize_course`` is called by ``erv-lab course`` after the last notebook: it adds the
course's per-notebook timings to results.json and, with ``make reference``, refreshes ``erv_lab/reference_run/``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from erv_lab.paths import REFERENCE_DIR, source_checkout

ARM_NAMES = {"sft": "Cold-start SFT", "baseline": "GRPO baseline (format + accuracy)",
             "erv": "GRPO + ERV (format + accuracy + explanation)"}
COLUMNS = ("UAR", "WAR", "EEA", "FCR", "FCR_given_correct", "EPC")
HEADERS = {"FCR_given_correct": "FCR \\| correct"}
# Small artifacts copied into reference_run/ (paths relative to the run folder; missing ones are skipped).
# Model weights are not shipped: the cpu-tiny policies are 3.7 MB each (x3, measured) and retrain in minutes.
REFERENCE_FILES = ("results.json", "results.md", "course_timings.json", "eval/records.json",
                   "sft/log_history.json", "baseline/log_history.json", "erv/log_history.json",
                   "sft/metrics.json", "baseline/metrics.json", "erv/metrics.json",
                   "baseline/completions/completions_*.parquet", "erv/completions/completions_*.parquet",
                   "verifier/erv_verifier.json", "judge/erv_verifier.json",
                   "erv-degenerate/log_history.json", "erv-degenerate/completions/completions_*.parquet", "erv-degenerate/metrics.json",
                   "audio_ablation.json", "cell_timings.json", "eval/readings.json", "grounding_ablation.json",
                   "erv-grounding/log_history.json", "erv-grounding/metrics.json",
                   "erv-grounding/completions/completions_*.parquet", "faithfulness.json")
REFERENCE_MAX_BYTES = 3_000_000  # per file: keep the tracked folder small


# ---------------------------------------------------------------- results.json and results.md
def _timings(run_dir: Path, eval_seconds: float | None) -> dict[str, float]:
    """Seconds per stage of the course: the notebooks' times from ``course_timings.json`` when the
    course runner wrote it, else the evaluation alone (so the values always sum to compute time)."""
    path = run_dir / "course_timings.json"
    if path.exists():
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    return {"evaluate": round(float(eval_seconds or 0.0), 1)}


def write_results(results: dict, run_dir: str | Path, eval_seconds: float | None = None) -> dict:
    """Add ``timings``, write ``results.json`` and ``results.md`` in ``run_dir``; return the results."""
    run_dir = Path(run_dir)
    results = dict(results)
    results["timings"] = _timings(run_dir, eval_seconds)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    if results.get("datasets"):  # several datasets: one section each, on its own test fold
        md = "\n\n".join(f"# {name.upper()}\n\n" + render_markdown({**r, "timings": results["timings"]})
                          for name, r in results["datasets"].items())
    else:
        md = render_markdown(results)
    (run_dir / "results.md").write_text(md)
    return results


BEYOND = {"faithfulness": "Faithful, not just coherent (beyond the paper; notebook 08)",
          "grounding_ablation": "A grounding reward as an ablation arm (beyond the paper; notebook 07)"}


def beyond_section(results: dict) -> list[str]:
    """results.md lines for the measurements beyond the paper that ``attach`` added, read by ``erv_lab.readings``."""
    from erv_lab import readings

    read = {"faithfulness": readings.faithfulness, "grounding_ablation": readings.grounding_ablation}
    out = []
    for key, title in BEYOND.items():
        if results.get(key):
            out += [f"## {title}", "", read[key](results[key]).rstrip("\n"), ""]
    return out


def attach(run_dir: str | Path, key: str, block: dict) -> None:
    """Put ``block`` (per-clip detail and settings left out) under ``results[key]`` of an existing
    ``run_dir/results.json`` and rewrite results.md; nothing is evaluated again. No results.json: nothing."""
    path = Path(run_dir) / "results.json"
    if key not in BEYOND or not path.exists():
        return
    results = json.loads(path.read_text())
    slim = json.loads(json.dumps(block))
    slim.pop("settings", None)
    for arm in (slim.get("arms") or {}).values():
        arm.pop("clips", None)
    if results.get(key) != slim:
        results[key] = slim
        path.write_text(json.dumps(results, indent=2))
        (Path(run_dir) / "results.md").write_text(render_markdown(results))


def schema_problems(results: dict) -> list[str]:
    """What ``results`` lacks of the results.json schema (empty list = valid): ``sft``/``baseline``/``erv``
    and ``greedy.{sft,baseline,erv}`` each with UAR, WAR, EEA, FCR, FCR_given_correct, EPC (fractions in
    [0, 1] or null), ``n`` and ``ci`` ({metric: [low, high]}); ``protocol`` (dataset, fold, decoding, seeds,
    judge); ``timings`` (seconds per stage)."""
    from erv_lab.evaluate import ARMS, CI_KEYS, HEADLINE_KEYS

    problems = []
    blocks = [(arm, results.get(arm)) for arm in ARMS]
    blocks += [(f"greedy.{arm}", (results.get("greedy") or {}).get(arm)) for arm in ARMS]
    for where, m in blocks:
        if not isinstance(m, dict):
            problems.append(f"missing {where}")
            continue
        problems += [f"{where} lacks {k}" for k in HEADLINE_KEYS if k not in m]
        for k in CI_KEYS:
            v = m.get(k)
            if v is not None and not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                problems.append(f"{where}.{k} = {v!r} is not a fraction in [0, 1]")
            ci = (m.get("ci") or {}).get(k)
            if k in m and not (isinstance(ci, list) and len(ci) == 2):
                problems.append(f"{where}.ci.{k} is not [low, high]")
    proto = results.get("protocol")
    if not isinstance(proto, dict):
        problems.append("missing protocol")
    else:
        problems += [f"protocol lacks {k}" for k in ("dataset", "fold", "decoding", "seeds", "judge") if k not in proto]
    t = results.get("timings")
    if not isinstance(t, dict) or not all(isinstance(v, (int, float)) and v >= 0 for v in t.values()):
        problems.append("timings must map stage -> seconds")
    return problems


def _cell(m: dict, key: str) -> str:
    v = m.get(key)
    if v is None:
        return "–"
    low, high = (m.get("ci") or {}).get(key) or (None, None)
    ci = f" [{100 * low:.0f}–{100 * high:.0f}]" if low is not None and high is not None else ""
    return f"{100 * v:.1f}{ci}"


def results_table(block: dict, arms=("sft", "baseline", "erv")) -> str:
    """A Markdown table: one row per arm, metrics in % with the 95 % bootstrap interval in brackets."""
    head = "| Model | " + " | ".join(HEADERS.get(c, c) for c in COLUMNS) + " | unparseable | n |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for arm in arms:
        if arm in block:
            m = block[arm]
            unp = f"{m.get('unparseable', 0)}/{m.get('n_decodes', m.get('n'))}"
            rows.append(f"| {ARM_NAMES.get(arm, arm)} | " + " | ".join(_cell(m, c) for c in COLUMNS)
                        + f" | {unp} | {m.get('n')} |")
    return "\n".join(rows)


def two_by_two(m: dict) -> str:
    """The 2x2 table of (prediction correct) x (judged rationale correct), counts over all decodes."""
    return ("| | rationale right | rationale wrong |\n|---|---|---|\n"
            f"| answer right | TT = {m.get('TT')} | TF = {m.get('TF')} |\n"
            f"| answer wrong | FT = {m.get('FT')} | FF = {m.get('FF')} |")


def render_markdown(results: dict) -> str:
    """``results.md``: protocol, the headline table, the greedy table, the 2x2 tables, timings."""
    p = results.get("protocol", {})
    dec = p.get("decoding", {})
    lines = ["# erv-lab results", "",
             f"Dataset {p.get('dataset')} ({p.get('source', '?')}), fold {p.get('fold')}, {p.get('n_clips')} test "
             f"clips; headline judge: {p.get('judge')} (independent of the reward by construction); 95 % intervals: percentile "
             f"bootstrap over clips ({p.get('bootstrap')} resamples). All numbers in %.", "",
             f"## Headline: {dec.get('sample', 'sampling')}", "", results_table(results), ""]
    if "greedy" in results:
        lines += ["## Greedy decoding", "", results_table(results["greedy"]), ""]
    lines += ["## 2x2 tables (headline protocol; FCR = TT / N, FCR | correct = TT / (TT + TF))", ""]
    for arm in ("sft", "baseline", "erv"):
        if arm in results:
            lines += [f"**{ARM_NAMES[arm]}**", "", two_by_two(results[arm]), ""]
    if "erv" in results and "baseline" in results:
        d = {k: results["erv"].get(k, 0) - results["baseline"].get(k, 0)
             for k in ("EEA", "EPC", "UAR") if results["erv"].get(k) is not None
             and results["baseline"].get(k) is not None}
        lines += ["ERV minus baseline (headline): " + ", ".join(f"{k} {100 * v:+.1f} points" for k, v in d.items()), ""]
        paired = results.get("erv_minus_baseline", {})
        for proto, diff in paired.items():
            lines += [f"ERV minus baseline with a paired 95 % bootstrap interval ({proto}; the same clips resampled "
                      "for both arms): " + ", ".join(
                          f"{k} {100 * diff[k]['value']:+.1f} [{100 * diff[k]['low']:+.1f}, {100 * diff[k]['high']:+.1f}]"
                          for k in ("EEA", "EPC", "FCR", "UAR") if k in diff), ""]
    lines += judges_section(results) + grounding_section(results) + beyond_section(results)
    t = results.get("timings", {})
    if t:
        lines += [f"Compute: {sum(t.values()):.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in t.items()) + ")", ""]
    return "\n".join(lines)


JUDGE_NOTES = {
    "zeroshot-minilm": "MiniLM vs one label-word prototype per label; fit on nothing (headline)",
    "minilm-sibling": "MiniLM classifier trained like the reward (GoEmotions + template rationales): the reward's sibling",
    "verifier-reading": "the reward's own verifier over the whole rationale: what the reward sees, not a judge",
    "gemma3-270m": "the paper's judge prompt, answered offline by Gemma 3 270M base (label likelihood); fit on nothing here",
}


def judges_section(results: dict) -> list[str]:
    """Every judge's EEA / EPC per arm (headline protocol) and Cohen's kappa between every pair of readings."""
    arms = [a for a in ("sft", "baseline", "erv") if a in results]
    if not arms or not any("judges" in results[a] or "kappa" in results[a] for a in arms):
        return []
    head = results.get("protocol", {}).get("judge", "headline")
    names = [head] + sorted({n for a in arms for n in results[a].get("judges", {})})

    def metric(arm, name, k):
        m = results[arm] if name == head else results[arm].get("judges", {}).get(name, {})
        return "–" if m.get(k) is None else f"{100 * m[k]:.1f}"

    lines = ["## Every judge (headline protocol)", "",
             "| judge | what it is | " + " | ".join(f"{ARM_NAMES[a]} EEA / EPC" for a in arms) + " |",
             "|---|---|" + "---|" * len(arms)]
    for n in names:
        lines.append(f"| {n} | {JUDGE_NOTES.get(n, '')} | " +
                     " | ".join(f"{metric(a, n, 'EEA')} / {metric(a, n, 'EPC')}" for a in arms) + " |")
    pairs = sorted({p for a in arms for p in results[a].get("kappa", {})})
    if pairs:
        lines += ["", "Cohen's kappa between readings of the same rationales (headline protocol, all decodes):", "",
                  "| pair | " + " | ".join(ARM_NAMES[a] for a in arms) + " |", "|---|" + "---|" * len(arms)]
        for pr in pairs:
            lines.append(f"| {pr} | " + " | ".join(
                f"{results[a]['kappa'][pr]['kappa']:.2f}" if pr in results[a].get("kappa", {}) else "–"
                for a in arms) + " |")
    return lines + [""]


def grounding_section(results: dict) -> list[str]:
    """Cue grounding per arm (headline protocol): coherent is not the same as grounded."""
    arms = [a for a in ("sft", "baseline", "erv") if (results.get(a) or {}).get("grounding", {}).get("n")]
    if not arms:
        return []
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = ["## Cue grounding (synthetic clips only; headline protocol)", "",
             "| model | described cues the clip shows | sentences describing an absent cue | EEA | EEA over grounded "
             "rationales (n) |", "|---|---|---|---|---|"]
    for a in arms:
        g = results[a]["grounding"]
        lines.append(f"| {ARM_NAMES[a]} | {pct(g['grounded_cue_rate'])} | {pct(g['absent_cue_sentence_share'])} | "
                     f"{pct(g['EEA'])} | {pct(g['EEA_grounded'])} ({g['n_grounded']} of {g['n']}) |")
    return lines + [""]


# ---------------------------------------------------------------- numbers in the docs come from here
BLOCK_START, BLOCK_END = "<!-- reference-run:start -->", "<!-- reference-run:end -->"
DOCS_WITH_RESULTS = ("README.md", "docs/TRAINING.md")


def training_line(run_dir: str | Path) -> str:
    """Reward means of both GRPO arms, first -> last 3 logging steps, from a run folder's logs."""
    from erv_lab.curves import first_last, read_log_history

    parts = []
    for key, what in (("rewards/explanation/mean", "explanation reward"), ("rewards/accuracy/mean", "accuracy reward")):
        vals = {arm: first_last(read_log_history(Path(run_dir) / arm), key) for arm in ("erv", "baseline")}
        if all(a is not None for v in vals.values() for a in v):
            parts.append(f"{what}: ERV {vals['erv'][0]:.2f} → {vals['erv'][1]:.2f}, baseline "
                         f"{vals['baseline'][0]:.2f} → {vals['baseline'][1]:.2f}")
    return ("During GRPO (mean of the first → last 3 logging steps) " + "; ".join(parts) + ".") if parts else ""


def reference_markdown(results: dict, run_dir: str | Path | None = None) -> str:
    """The shipped run's numbers as the docs show them (README, docs/TRAINING.md, notebook 06), generated from
    its results.json (and, with ``run_dir``, its training logs) so they cannot drift: the headline table, ERV
    minus baseline with paired intervals under both protocols, training, every judge, cue grounding, timings."""
    p = results.get("protocol", {})
    lines = [f"Shipped cpu-tiny run (`erv_lab/reference_run/results.json`): {p.get('n_clips')} synthetic test clips, "
             f"fold {p.get('fold')}; headline protocol {p.get('decoding', {}).get('sample', 'sampling')}; headline "
             f"judge `{p.get('judge')}` (independent of the reward by construction). In %:", "",
             results_table(results), ""]
    for proto, diff in results.get("erv_minus_baseline", {}).items():
        lines.append(f"- ERV minus baseline ({proto}, paired 95 % bootstrap): " + ", ".join(
            f"{k} {100 * diff[k]['value']:+.1f} [{100 * diff[k]['low']:+.1f}, {100 * diff[k]['high']:+.1f}]"
            for k in ("EEA", "EPC", "FCR", "UAR") if k in diff))
    training = training_line(run_dir) if run_dir is not None else ""
    if training:
        lines += ["", training]
    t = results.get("timings", {})
    if t:
        lines += ["", f"Course compute on the machine that made it: {sum(t.values()):.0f} s (" +
                  ", ".join(f"{k.split('_')[0]} {v:.0f} s" for k, v in t.items()) + ")."]
    lines.append("")
    lines += judges_section(results) + grounding_section(results)
    return "\n".join(lines).replace("## ", "#### ").rstrip() + "\n"


SEEDS_START, SEEDS_END = "<!-- seed-variation:start -->", "<!-- seed-variation:end -->"
READINGS_START, READINGS_END = "<!-- readings:start -->", "<!-- readings:end -->"  # erv_lab.readings of the run
SPREAD_START, SPREAD_END = "<!-- spread:start -->", "<!-- spread:end -->"  # readings.reproducibility(spread.json)
GROUNDING_START, GROUNDING_END = "<!-- grounding:start -->", "<!-- grounding:end -->"  # readings.grounding_ablation
FAITH_START, FAITH_END = "<!-- faithfulness:start -->", "<!-- faithfulness:end -->"  # readings.faithfulness


def _replace_block(text: str, start: str, end: str, body: str) -> str:
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}{end}{tail}"


def sync_results_block(text: str, results: dict, run_dir: str | Path | None = None) -> str:
    """``text`` with the part between ``BLOCK_START`` and ``BLOCK_END`` regenerated from ``results``, and (when
    the text has them) the seed-variation block from ``run_dir/seeds.md`` (``scripts/seed_variation.py``), the
    readings of the run, and the measured spread from ``run_dir/spread.json`` (``scripts/spread.py``)."""
    if BLOCK_START not in text or BLOCK_END not in text:
        raise ValueError(f"no {BLOCK_START} ... {BLOCK_END} block")
    text = _replace_block(text, BLOCK_START, BLOCK_END, reference_markdown(results, run_dir))
    seeds = Path(run_dir) / "seeds.md" if run_dir is not None else None
    if SEEDS_START in text and seeds is not None and seeds.exists():
        text = _replace_block(text, SEEDS_START, SEEDS_END, seeds.read_text(encoding="utf-8"))
    if READINGS_START in text and run_dir is not None:
        from erv_lab import curves, readings

        text = _replace_block(text, READINGS_START, READINGS_END,
                              readings.discussion(results, curves.arm_histories(run_dir)))
    spread = Path(run_dir) / "spread.json" if run_dir is not None else None
    if SPREAD_START in text and spread is not None and spread.exists():
        from erv_lab import readings

        text = _replace_block(text, SPREAD_START, SPREAD_END, readings.reproducibility(json.loads(spread.read_text())))
    ablation = Path(run_dir) / "grounding_ablation.json" if run_dir is not None else None
    if GROUNDING_START in text and ablation is not None and ablation.exists():
        from erv_lab import readings

        text = _replace_block(text, GROUNDING_START, GROUNDING_END,
                              readings.grounding_ablation(json.loads(ablation.read_text())))
    faith = Path(run_dir) / "faithfulness.json" if run_dir is not None else None
    if FAITH_START in text and faith is not None and faith.exists():
        from erv_lab import readings

        text = _replace_block(text, FAITH_START, FAITH_END, readings.faithfulness(json.loads(faith.read_text())))
    return text


def sync_docs(repo: str | Path, results: dict | None = None) -> list[str]:
    """Regenerate the results block of every file in ``DOCS_WITH_RESULTS`` (``make reference`` does it after
    refreshing the shipped run); returns the files changed."""
    results = results or json.loads((REFERENCE_DIR / "results.json").read_text())
    changed = []
    for rel in DOCS_WITH_RESULTS:
        path = Path(repo) / rel
        new = sync_results_block(path.read_text(encoding="utf-8"), results, REFERENCE_DIR)
        if new != path.read_text(encoding="utf-8"):
            path.write_text(new, encoding="utf-8")
            changed.append(rel)
    return changed


def goal_check(results: dict, protocol: str = "sample") -> dict:
    """The paper's claim on the CPU default: ERV - baseline EEA >= +15 points and EPC >= +15 points with UAR
    within +-3 points. Returns the deltas (in points), whether each holds and whether the 95 % intervals of
    the two arms' EEA overlap (a rough check that the difference is not noise)."""
    block = results if protocol == "sample" else results[protocol]
    e, b = block["erv"], block["baseline"]
    d = {k: 100 * (e[k] - b[k]) if e.get(k) is not None and b.get(k) is not None else None
         for k in ("EEA", "EPC", "UAR", "WAR", "FCR")}
    ok = {"EEA": d["EEA"] is not None and d["EEA"] >= 15, "EPC": d["EPC"] is not None and d["EPC"] >= 15,
          "UAR": d["UAR"] is not None and abs(d["UAR"]) <= 3}
    overlap = e["ci"]["EEA"][0] <= b["ci"]["EEA"][1] and b["ci"]["EEA"][0] <= e["ci"]["EEA"][1]
    out = {"delta_points": d, "holds": ok, "goal_met": all(ok.values()), "EEA_intervals_overlap": overlap}
    paired = results.get("erv_minus_baseline", {}).get(protocol)
    if paired:  # the paired interval of the difference: does it exclude 0?
        out["paired_ci_points"] = {k: [round(100 * v["low"], 1), round(100 * v["high"], 1)] for k, v in paired.items()}
        out["excludes_zero"] = {k: v["low"] > 0 or v["high"] < 0 for k, v in paired.items()}
    return out


def grounding_frame(results: dict):
    """The cue-grounding metrics per arm (synthetic clips only; headline protocol) as a DataFrame."""
    import pandas as pd

    cols = ["grounded_cue_rate", "absent_cue_sentence_share", "EEA", "EEA_grounded", "n_grounded", "n"]
    rows = {arm: results[arm]["grounding"] for arm in ("sft", "baseline", "erv") if (results.get(arm) or {}).get("grounding")}
    return pd.DataFrame(rows).T.reindex(columns=cols)


def read_records(run_dir: str | Path) -> list[dict]:
    """Per-clip records written by ``erv_lab.evaluate`` (``run_dir/eval/records.json``)."""
    return json.loads((Path(run_dir) / "eval" / "records.json").read_text())


def results_frame(results: dict, protocol: str = "sample"):
    """The metrics as a pandas DataFrame (rows = arms), for the notebook."""
    import pandas as pd

    block = results if protocol == "sample" else results[protocol]
    rows = []
    for arm in ("sft", "baseline", "erv"):
        if arm in block:
            m = block[arm]
            rows.append({"arm": arm, **{c: m.get(c) for c in COLUMNS},
                         **{f"{c} CI": tuple(m["ci"][c]) for c in COLUMNS if m.get("ci", {}).get(c)}})
    return pd.DataFrame(rows).set_index("arm")


# ---------------------------------------------------------------- end of the course
def copy_reference_run(run_dir: str | Path, dest: str | Path = REFERENCE_DIR) -> list[str]:
    """Copy the run's small artifacts (``REFERENCE_FILES``: paths or glob patterns, each file under
    ``REFERENCE_MAX_BYTES``) to ``dest``."""
    run_dir, dest = Path(run_dir), Path(dest)
    copied = []
    for pattern in REFERENCE_FILES:
        for src in sorted(run_dir.glob(pattern)):
            rel = src.relative_to(run_dir).as_posix()
            if src.is_file() and src.stat().st_size <= REFERENCE_MAX_BYTES:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest / rel)
                copied.append(rel)
    return copied


def finalize_course(run_dir: str | Path, preset: str, reference: bool = False) -> dict[str, Any]:
    """After ``erv-lab course``: put the course's timings into results.json / results.md. With ``reference``
    (``make reference``, a maintainer's step; ``make course`` never does it) a cpu-tiny run also refreshes the
    shipped ``erv_lab/reference_run/`` of the clone it runs from."""
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    out: dict[str, Any] = {"results": None, "reference_files": []}
    if reference and (preset != "cpu-tiny" or source_checkout() is None):
        raise ValueError("the reference run is refreshed from a cpu-tiny course in a clone of the repository only")
    if path.exists():
        write_results(json.loads(path.read_text()), run_dir)
        out["results"] = str(path)
        if reference:
            out["reference_files"] = copy_reference_run(run_dir)
    return out
