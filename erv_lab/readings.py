"""Readings: the course's observations, computed from the run they sit under (never written for one run).

Pure functions over ``results.json`` (``erv_lab.evaluate``) and the GRPO logs (``erv_lab.curves``). Each returns
sentences that state a direction or a size only as the numbers of *this* run show it, with their intervals where
the run has them; when the run does not show what the paper claims, the reading says so and says what to look at
next. Notebooks 05 and 06 and the README's "How to read it" print these instead of fixed prose.
"""
from __future__ import annotations

from typing import Sequence

ARMS = ("sft", "baseline", "erv")
NAMES = {"sft": "SFT", "baseline": "baseline", "erv": "ERV"}
GOAL = {"EEA": 15.0, "EPC": 15.0, "UAR": 3.0}  # points: ERV - baseline EEA, EPC >= +15, |UAR| <= 3 (cpu-tiny)
NEAR = 3.0  # points: a move smaller than this is read as "about the same"


def _block(results: dict, protocol: str) -> dict:
    return results if protocol == "sample" else results[protocol]


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _move(delta_points: float) -> str:
    if abs(delta_points) < NEAR:
        return "about the same"
    return "higher" if delta_points > 0 else "lower"


def protocols(results: dict) -> list[str]:
    return ["sample"] + (["greedy"] if "greedy" in results else [])


def arm_vs_sft(results: dict, protocol: str = "sample", metrics: Sequence[str] = ("EEA", "EPC", "UAR")) -> list[str]:
    """Each GRPO arm against the SFT model it started from: the values and the move, per metric."""
    b = _block(results, protocol)
    out = []
    for arm in ("baseline", "erv"):
        if arm not in b or "sft" not in b:
            continue
        parts = []
        for k in metrics:
            s, a = b["sft"].get(k), b[arm].get(k)
            if s is None or a is None:
                continue
            d = 100 * (a - s)
            parts.append(f"{k} {100 * s:.1f} → {100 * a:.1f} ({d:+.1f}, {_move(d)})")
        if parts:
            out.append(f"{NAMES[arm]} vs the SFT model ({protocol}): " + "; ".join(parts) + ".")
    return out


def difference(results: dict, protocol: str = "sample", metrics: Sequence[str] = ("EEA", "EPC", "FCR", "UAR")) -> str:
    """ERV minus baseline with its paired 95 % bootstrap interval, and whether the interval excludes 0."""
    diff = results.get("erv_minus_baseline", {}).get(protocol)
    if not diff:
        return f"ERV minus baseline ({protocol}): not computed for this run."
    parts = []
    for k in metrics:
        if k not in diff:
            continue
        d = diff[k]
        side = "above 0" if d["low"] > 0 else "below 0" if d["high"] < 0 else "includes 0"
        parts.append(f"{k} {_pts(d['value'])} [{_pts(d['low'])}, {_pts(d['high'])}] ({side})")
    return f"ERV minus baseline ({protocol}, paired 95 % interval, points): " + "; ".join(parts) + "."


def goal(results: dict, protocol: str = "sample") -> str:
    """Whether the paper's claim reproduced on this run under ``protocol``, in words, and what to look at if not."""
    from erv_lab.report import goal_check

    g = goal_check(results, protocol)
    d, holds = g["delta_points"], g["holds"]
    if any(d[k] is None for k in GOAL):
        return f"Goal ({protocol}): cannot be read, a metric is missing."
    def mark(k: str) -> str:
        return "" if holds[k] else ": missed"

    said = (f"EEA {d['EEA']:+.1f} (goal ≥ +{GOAL['EEA']:.0f}{mark('EEA')}), EPC {d['EPC']:+.1f} "
            f"(goal ≥ +{GOAL['EPC']:.0f}{mark('EPC')}), UAR {d['UAR']:+.1f} (goal within ±{GOAL['UAR']:.0f}"
            f"{mark('UAR')})")
    if g["goal_met"]:
        return f"Goal ({protocol}): **met** on this run: ERV minus baseline {said}."
    missed = [k for k in GOAL if not holds[k]]
    nxt = []
    if "EEA" in missed or "EPC" in missed:
        if d["EEA"] > 0 and g.get("excludes_zero", {}).get("EEA"):
            nxt.append("ERV raised EEA beyond noise but by less than the goal: more GRPO steps, or a higher "
                       "explanation-reward weight")
        else:
            nxt.append("ERV did not raise EEA beyond noise here: look at the training curves (did the ERV arm's "
                       "explanation reward rise?), the share of zero-spread groups, and the SFT model's coherence")
    if "UAR" in missed:
        nxt.append("UAR moved by more than 3 points: compare the arms' accuracy-reward curves and β (the KL term)")
    return (f"Goal ({protocol}): **not met** on this run ({', '.join(missed)} missed): ERV minus baseline {said}. "
            "What to look at next: " + "; ".join(nxt) + ".")


def zero_spread(histories: dict[str, Sequence[dict]]) -> str | None:
    """Mean share of GRPO groups whose G rewards were all equal (advantage 0: nothing to learn), per arm."""
    parts = []
    for arm, h in histories.items():
        vals = [r["frac_reward_zero_std"] for r in h if r.get("frac_reward_zero_std") is not None]
        if vals:
            parts.append(f"{NAMES.get(arm, arm)} {100 * sum(vals) / len(vals):.0f} %")
    if not parts:
        return None
    return ("Groups with zero reward spread (all G completions scored alike, so no learning signal), mean over "
            "the logged steps: " + ", ".join(parts) + ".")


def training(histories: dict[str, Sequence[dict]], key: str = "rewards/explanation/mean", k: int = 3) -> str | None:
    """How each arm's training reward ``key`` moved from its first to its last ``k`` logs."""
    from erv_lab.curves import first_last

    parts = []
    for arm, h in histories.items():
        first, last = first_last(h, key, k)
        if first is not None and last is not None:
            parts.append(f"{NAMES.get(arm, arm)} {first:.3f} → {last:.3f} ({_move(100 * (last - first))})")
    if not parts:
        return None
    return f"`{key}` during GRPO (mean of the first {k} logs → the last {k}): " + "; ".join(parts) + "."


def health(histories: dict[str, Sequence[dict]], k: int = 3) -> str | None:
    """GRPO's health per arm, from its logs: the policy's entropy (first → last ``k`` logs; a fall means the
    sampled completions grow alike), the mean share of zero-spread groups, and the last KL to the SFT model."""
    from erv_lab.curves import first_last

    parts = []
    for arm, h in histories.items():
        bits = []
        first, last = first_last(h, "entropy", k)
        if first is not None and last is not None:
            bits.append(f"entropy {first:.2f} → {last:.2f} nats/token ({_move(100 * (last - first) / max(abs(first), 1e-9))} "
                        "relative to its start)")
        zs = [r["frac_reward_zero_std"] for r in h if r.get("frac_reward_zero_std") is not None]
        if zs:
            bits.append(f"zero-spread groups {100 * sum(zs) / len(zs):.0f} %")
        kl = [r["kl"] for r in h if r.get("kl") is not None]
        if kl:
            bits.append(f"KL to the SFT model at the end {kl[-1]:.3g}")
        if bits:
            parts.append(f"{NAMES.get(arm, arm)}: " + ", ".join(bits))
    if not parts:
        return None
    return "GRPO health (first → last 3 logs): " + "; ".join(parts) + "."


def audio_ablation(ablation: dict) -> str | None:
    """The audio ablation of notebook 04 (``audio_ablation.json``): overall greedy accuracy with and without
    audio, and the classes whose accuracy moved most."""
    modes = [m for m in ablation if m != "none"]
    if not modes or "none" not in ablation:
        return None
    on, off = ablation[modes[0]], ablation["none"]
    d = 100 * (off["accuracy"] - on["accuracy"])
    said = (f"Greedy test accuracy of the SFT policy: {on['accuracy']:.2f} with audio ({modes[0]}), "
            f"{off['accuracy']:.2f} without ({d:+.1f} points, {_move(d)}; {on['n']} clips).")
    per_on, per_off = on.get("per_class", {}), off.get("per_class", {})
    moved = sorted(((100 * (per_off[c] - per_on[c]), c) for c in per_on if c in per_off))
    if moved:
        said += " Per class, the largest changes without audio: " + ", ".join(
            f"{c} {per_on[c]:.2f} → {per_off[c]:.2f}" for _, c in moved[:3]) + "."
    return said


def agreement(results: dict) -> str | None:
    """How the headline judge agrees with each other reading (Cohen's κ on the ERV arm's rationales)."""
    head = results.get("protocol", {}).get("judge")
    kap = (results.get("erv") or {}).get("kappa") or {}
    pairs = {p: v["kappa"] for p, v in kap.items() if head and p.startswith(head + " vs ")
             and isinstance(v.get("kappa"), (int, float)) and v["kappa"] == v["kappa"]}  # NaN where undefined
    if not pairs:
        return None
    parts = [f"{p.split(' vs ', 1)[1]} κ {v:.2f}" for p, v in sorted(pairs.items(), key=lambda x: -x[1])]
    low = min(pairs.values())
    word = "substantial or better (κ ≥ 0.6) with every reading" if low >= 0.6 else \
        "below 0.6 with at least one reading: the metrics depend on who reads the rationale"
    return f"The headline judge ({head}) against the other readings of the ERV arm: " + ", ".join(parts) + \
        f"; agreement is {word}."


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def grounding(results: dict) -> str | None:
    """Absent-cue sentences and grounded cues per arm: does a coherent rationale also describe the clip?"""
    g = {a: results[a]["grounding"] for a in ARMS if (results.get(a) or {}).get("grounding")}
    if len(g) < 2 or all(v.get("absent_cue_sentence_share") is None for v in g.values()):
        return None
    parts = [f"{NAMES[a]} {_pct(v.get('absent_cue_sentence_share'))}" for a, v in g.items()]
    out = "Sentences describing a cue the clip does not have: " + ", ".join(parts) + "."
    e, b = g.get("erv", {}), g.get("baseline", {})
    if e.get("absent_cue_sentence_share") is not None and b.get("absent_cue_sentence_share") is not None:
        d = 100 * (e["absent_cue_sentence_share"] - b["absent_cue_sentence_share"])
        than = "as" if _move(d) == "about the same" else "than"
        out += f" ERV's share is {_move(d)} {than} the baseline's ({d:+.1f} points; no interval is computed for it)."
        out += f" Grounded cue rate: baseline {_pct(b.get('grounded_cue_rate'))}, ERV {_pct(e.get('grounded_cue_rate'))}."
    return out


def discussion(results: dict, histories: dict[str, Sequence[dict]] | None = None) -> str:
    """Every reading of a run as Markdown: goal and paired differences under each protocol, the arms against
    the SFT model, training, zero-spread groups, judge agreement, grounding."""
    lines = []
    for p in protocols(results):
        lines += [f"- {goal(results, p)}", f"- {difference(results, p)}"]
        lines += [f"- {s}" for s in arm_vs_sft(results, p)]
    for s in (training(histories or {}), zero_spread(histories or {}), health(histories or {}), agreement(results),
              grounding(results)):
        if s:
            lines.append(f"- {s}")
    return "\n".join(lines) + "\n"


def trajectory(good: Sequence[dict], lesson: Sequence[dict], key: str = "rewards/explanation/mean",
               accuracy_key: str = "rewards/accuracy/mean") -> str | None:
    """The lesson run's training curve against the good arm's (``log_history`` rows, what the figure draws): the
    peak of ``key`` and its step, its last value, whether it collapsed after the peak (last below half the
    peak), and the last accuracy reward of each."""
    def series(h, k):
        return [(r["step"], float(r[k])) for r in h if r.get(k) is not None and "step" in r]

    g, s = series(good, key), series(lesson, key)
    if not g or not s:
        return None
    (gs, gp), (ss, sp) = max(g, key=lambda x: x[1]), max(s, key=lambda x: x[1])
    text = (f"Over training (the logged means the figure draws), the lesson run's explanation reward peaked at "
            f"{sp:.2f} at step {ss} ({'above' if sp > gp else 'below' if sp < gp else 'level with'} the good arm's "
            f"peak of {gp:.2f}, step {gs}) and ended at {s[-1][1]:.2f} (step {s[-1][0]}; the good arm ended at "
            f"{g[-1][1]:.2f}, step {g[-1][0]}).")
    if sp > 0 and s[-1][1] < 0.5 * sp:
        ga, sa = series(good, accuracy_key), series(lesson, accuracy_key)
        acc = f" (accuracy reward at the end {sa[-1][1]:.2f}, good arm {ga[-1][1]:.2f})" if ga and sa else ""
        text += (" After its peak it **collapsed**: the degenerate text it had learned stopped earning even the "
                 f"reward it was hacking{acc}: in this run the hack did not stay profitable, it wrecked the policy.")
    return text


def hacking(good: Sequence[dict], lesson: Sequence[dict], last_steps: int = 3,
            histories: tuple[Sequence[dict], Sequence[dict]] | None = None) -> dict:
    """Did the reward-hacking lesson run hack? Its last ``last_steps`` logged steps of GRPO completions
    (``curves.read_completions`` rows) against the good ERV arm's: explanation reward paid, stuffed and repeated
    sentences, completions with extra tags. Returns ``{"text", "hacked", "examples", "table"}``; ``hacked`` is
    read from the numbers (more than 5 % of sentences stuffed or repeated, or more than 5 % of completions with
    extra tags, and more so than the good arm), ``examples`` are whole completions that show it. ``histories``
    (the good arm's and the lesson's ``log_history``) adds the :func:`trajectory` of the explanation reward."""
    from erv_lab.diagnostics import at_steps, completion_stats, has_extra_tags

    lesson_rows = at_steps(lesson, last_steps)
    table = {}
    for name, rows in (("good", at_steps(good, last_steps)), ("lesson", lesson_rows)):
        st = completion_stats(rows)
        table[name] = {"completions": st["completions"], "explanation_reward": st["explanation_reward"],
                       "stuffed_or_repeated": st["stuffed_sentence_share"] + st["repeated_sentence_share"],
                       "extra_tags": st["extra_tag_share"], "distinct_2": st["distinct_2"] if rows else None}
    g, s = table["good"], table["lesson"]
    signs = []
    if s["stuffed_or_repeated"] > 0.05 and s["stuffed_or_repeated"] > 2 * g["stuffed_or_repeated"]:
        signs.append(f"{100 * s['stuffed_or_repeated']:.0f} % of its sentences are stuffed or repeated "
                     f"(good arm: {100 * g['stuffed_or_repeated']:.0f} %)")
    if s["extra_tags"] > 0.05 and s["extra_tags"] > 2 * g["extra_tags"]:
        signs.append(f"{100 * s['extra_tags']:.0f} % of its completions carry extra tags "
                     f"(good arm: {100 * g['extra_tags']:.0f} %)")
    def steps(rows):
        st = sorted({r["step"] for r in rows})
        return f"step {st[0]}" if len(st) == 1 else f"steps {st[0]}–{st[-1]}" if st else "no steps"

    paid = "" if s["explanation_reward"] is None or g["explanation_reward"] is None else (
        f" In the completions TRL logged at its last {last_steps} logging steps ({steps(lesson_rows)}) it was paid "
        f"an explanation reward of {s['explanation_reward']:.3f} on average, against the good arm's "
        f"{g['explanation_reward']:.3f} ({steps(at_steps(good, last_steps))}).")
    traj = trajectory(*histories) if histories else None
    paid += f" {traj}" if traj else ""
    if signs:
        text = "This lesson run **hacked** the reward: " + "; ".join(signs) + "." + paid
    else:
        text = ("This lesson run shows **no sign of hacking** in its last logged completions: "
                f"{100 * s['stuffed_or_repeated']:.0f} % stuffed or repeated sentences (good arm "
                f"{100 * g['stuffed_or_repeated']:.0f} %), {100 * s['extra_tags']:.0f} % with extra tags (good arm "
                f"{100 * g['extra_tags']:.0f} %)." + paid + " Removing the guards makes a hack possible; this run "
                "did not find one.")
    examples = [r["completion"] for r in lesson_rows if has_extra_tags(r["completion"])][:3]
    if not examples and signs:
        from erv_lab.labels import split_sentences
        from erv_lab.rewards import parse_completion, stuffing_reason

        for r in lesson_rows:
            sents = split_sentences(parse_completion(r["completion"])[0] or "")
            if any(stuffing_reason(x, sents[:i]) for i, x in enumerate(sents)):
                examples.append(r["completion"])
            if len(examples) == 3:
                break
    return {"text": text, "hacked": bool(signs), "examples": examples, "table": table}


def goal_holds(d: dict) -> bool:
    """The goal on ERV minus baseline in points: EEA and EPC at least +15, UAR within ±3."""
    return d["EEA"] >= GOAL["EEA"] and d["EPC"] >= GOAL["EPC"] and abs(d["UAR"]) <= GOAL["UAR"]


def _range(xs: Sequence[float], sign: str = "+") -> str:
    lo, hi = min(xs), max(xs)
    return f"{lo:{sign}.1f}" if lo == hi else f"{lo:{sign}.1f} … {hi:{sign}.1f}"


def reproducibility(spread: dict) -> str:
    """What the measured spread (``reference_run/spread.json``, ``scripts/spread.py``) says: how far ERV minus
    baseline and each arm moved across set-ups of one commit (seeds, CPU numerics, library versions), and in how
    many the goal held, per protocol. Markdown bullets."""
    rows = spread.get("setups") or []
    if not rows:
        return "- No spread measured (scripts/spread.py writes erv_lab/reference_run/spread.json).\n"
    names = ", ".join(f"{r['name']} ({r['what']})" for r in rows)
    lines = [f"- **{len(rows)} set-ups of the same commit**, each retraining the whole cpu-tiny pipeline: {names}."]
    for p in ("sample", "greedy"):
        if not all(p in r for r in rows):
            continue
        diffs = [r[p]["erv_minus_baseline"] for r in rows]
        met = sum(goal_holds(d) for d in diffs)
        ranges = ", ".join(f"{k} {_range([d[k] for d in diffs])}" for k in ("EEA", "EPC", "UAR"))
        pos = {k: sum(d[k] > 0 for d in diffs) for k in ("EEA", "EPC")}
        lines.append(f"- ERV minus baseline ({p}), points: {ranges}. ERV was above the baseline in EEA in "
                     f"{pos['EEA']} of {len(rows)} set-ups and in EPC in {pos['EPC']} of {len(rows)}; the goal "
                     f"(EEA and EPC ≥ +{GOAL['EEA']:.0f}, UAR within ±{GOAL['UAR']:.0f}) held in {met} of {len(rows)}.")
        arms = "; ".join(f"{NAMES[a]} " + ", ".join(f"{k} {_range([r[p][a][k] for r in rows], '')}"
                                                    for k in ("EEA", "EPC", "UAR")) for a in ARMS)
        lines.append(f"- Each model ({p}), points: {arms}.")
    same = [r["name"] for r in rows[1:] if all(r.get(p) == rows[0].get(p) for p in ("sample", "greedy"))]
    if same:
        lines.append(f"- Identical to {rows[0]['name']} in every number above: {', '.join(same)}; "
                     "what moved the others is named in their set-up.")
    return "\n".join(lines) + "\n"


def _spread_values(spread: dict | None, seeds: dict | None, protocol: str, head: str | None) -> tuple[dict, str]:
    """``({metric: [ERV - baseline points]}, what they are)`` from the measured spread, else the seed table."""
    if spread and spread.get("setups"):
        rows = [r for r in spread["setups"] if protocol in r]
        return ({k: [r[protocol]["erv_minus_baseline"][k] for r in rows] for k in ("EEA", "EPC", "UAR")},
                f"{len(rows)} measured set-ups")
    table = ((seeds or {}).get(protocol) or {}).get(head, {})
    return ({k: list(v["per_seed"].values()) for k, v in table.items()},
            f"{len(next(iter(table.values()))['per_seed']) if table else 0} shipped seeds")


def beside_shipped(results: dict, shipped: dict, seeds: dict | None = None, protocol: str = "sample",
                   spread: dict | None = None) -> str:
    """This run's ERV minus baseline next to the shipped run's and the spread measured so far (``spread.json``:
    seeds, CPU numerics, library versions; else the training seeds of ``seeds.json``): a Markdown table and a
    sentence per metric saying whether this run falls inside that range."""
    head = results.get("protocol", {}).get("judge")
    mine = results.get("erv_minus_baseline", {}).get(protocol, {})
    theirs = shipped.get("erv_minus_baseline", {}).get(protocol, {})
    seen_all, what = _spread_values(spread, seeds, protocol, head)
    rows, said = [], []
    for k in ("EEA", "EPC", "UAR"):
        if mine.get(k, {}).get("value") is None:
            continue
        m = round(100 * mine[k]["value"], 1)  # the spread files hold points to one decimal
        t = round(100 * theirs[k]["value"], 1) if theirs.get(k, {}).get("value") is not None else None
        seen = seen_all.get(k)
        rows.append(f"| {k} | {m:+.1f} | " + ("–" if t is None else f"{t:+.1f}") + " | "
                    + ("–" if not seen else f"{min(seen):+.1f} … {max(seen):+.1f}") + " | "
                    + ("–" if t is None else f"{m - t:+.1f}") + " |")
        if seen:
            lo, hi = min(seen), max(seen)
            where = "inside" if lo <= m <= hi else "above" if m > hi else "below"
            said.append(f"{k} {m:+.1f} is {where} the range of the {what} ({lo:+.1f} … {hi:+.1f})")
    if not rows:
        return f"No ERV minus baseline ({protocol}) to compare."
    table = [f"| ERV − baseline, points | this run | shipped run | {what} | this − shipped |",
             "|---|---|---|---|---|", *rows]
    cpus = list(dict.fromkeys(filter(None, ((r.get("machine") or {}).get("cpu")
                                            for r in (spread or {}).get("setups", [])))))
    if "set-ups" not in what:
        scope = ("what training seeds alone moved on the machine that made the shipped run; another CPU type or "
                 "library version can move a run further")
    else:
        where = (f"and {len(cpus)} CPU types ({', '.join(cpus)})" if len(cpus) > 1
                 else "on the machine that made the shipped run")
        scope = (f"seeds, CPU instruction sets, library versions {where}; a CPU or stack not among them can move a "
                 "run further")
    note = ("; ".join(said) + f". The range covers {scope}.") if said else ""
    return f"**Your run beside the shipped one** ({protocol}, judge {head}):\n\n" + "\n".join(table) + \
        ("\n\n" + note if note else "") + "\n"


def grounding_ablation(d: dict | None) -> str:
    """The grounding-reward ablation arm against the ERV arm (``stages.grounding_ablation``): did paying for
    grounded sentences buy grounding (grounded cue rate, absent-cue share), and what did it cost in coherence
    and accuracy (paired differences with their intervals)? Markdown bullets, one per protocol."""
    if not d or not d.get("protocols"):
        return "- No grounding ablation in this run (`--set grpo.grounding_ablation=true` trains it).\n"
    lines = []
    for p, b in d["protocols"].items():
        e, g, diff = b["erv"]["grounding"], b["erv-grounding"]["grounding"], b["difference"]
        said = []
        for key, what in (("grounded_cue_rate", "described cues the clip shows"),
                          ("absent_cue_sentence_share", "sentences describing an absent cue")):
            if e.get(key) is None or g.get(key) is None:
                continue
            delta = 100 * (g[key] - e[key])
            said.append(f"{what} {100 * e[key]:.1f} % → {100 * g[key]:.1f} % ({delta:+.1f} points, {_move(delta)})")
        cost = []
        for k in ("EEA", "EPC", "UAR"):
            if k in diff:
                x = diff[k]
                side = "above 0" if x["low"] > 0 else "below 0" if x["high"] < 0 else "includes 0"
                cost.append(f"{k} {_pts(x['value'])} [{_pts(x['low'])}, {_pts(x['high'])}] ({side})")
        lines.append(f"- ERV + grounding reward vs ERV ({p}, judge {d.get('judge')}, {d.get('n_clips')} clips): "
                     + "; ".join(said) + ". Paired difference (grounding arm − ERV), points: " + "; ".join(cost)
                     + ".")
    return "\n".join(lines) + "\n"


def faithfulness(d: dict | None) -> str:
    """What ``stages.faithfulness`` measured, per model: accuracy with each modality removed (overall and on
    the classes only that modality separates), the cross-modal hallucination rates, whether rationales of the
    modality-decided classes describe the deciding modality (and first), and step necessity. Markdown bullets;
    every number is this file's."""
    if not d or not d.get("arms"):
        return "- No faithfulness measurement in this run (`stages.faithfulness`, notebook 08).\n"

    def pct(x) -> str:
        x = x.get("value") if isinstance(x, dict) else x
        return "n/a" if x is None else f"{100 * x:.1f} %"

    def ci(steps: dict, key: str) -> str:
        iv = (steps.get("ci") or {}).get(key)
        return f" [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}]" if iv else ""

    lines = []
    for arm, a in d["arms"].items():
        acc, v, f = a["accuracy"], a["accuracy_voice_decided"], a["accuracy_face_decided"]
        h, dm, st = a["hallucination"], a["deciding_modality"], a["steps"]
        lines.append(
            f"- **{NAMES.get(arm, arm)}** ({d.get('decoding', 'greedy')}, {d.get('n_clips')} clips): accuracy as is "
            f"{pct(acc['as_is'])}, frames blanked {pct(acc['no_face'])}, sound silenced {pct(acc['no_voice'])}; on "
            f"the voice-decided classes (fear, surprise) {pct(v['as_is'])} → {pct(v['no_voice'])} without sound, on "
            f"the face-decided ones (angry, disgust) {pct(f['as_is'])} → {pct(f['no_face'])} without frames. "
            f"Rationales describing the face with no frames: {pct(h['face_without_frames'])}; the voice with no "
            f"sound: {pct(h['voice_without_sound'])}. On the modality-decided classes, rationales describing the "
            f"deciding modality: {pct(dm['described'])} (first: {pct(dm['first'])}). Sentences whose removal "
            f"changes the answer: {pct(st['sentence_necessary'])}{ci(st, 'sentence_necessary')} of "
            f"{st['n_sentences']}; rationales with at least one: {pct(st['rationale_with_necessary'])}"
            f"{ci(st, 'rationale_with_necessary')}; an empty rationale changes the answer in "
            f"{pct(st['empty_changes'])}{ci(st, 'empty_changes')}.")
    return "\n".join(lines) + "\n"
