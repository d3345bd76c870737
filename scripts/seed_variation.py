"""ERV minus baseline across training seeds: cold-start SFT + both GRPO arms + evaluation at each seed.

    python scripts/seed_variation.py --seeds 0 1 2 --out runs/seeds --write erv_lab/reference_run/seeds.json

Outside the 10-minute course (about 3-4 min per seed on 2 CPU cores). The data (clips, splits, verifier) stay
the same; ``grpo.seed`` (which also seeds SFT and the vision warm-up) changes. A seed's folder may be an
existing course run (``--reuse SEED=DIR``, e.g. the reference run's ``runs/reference``), then nothing is
retrained for it. For every judge in results.json it reports the paired ERV - baseline difference per seed
and, across seeds, the mean with a t-interval (95 %, n - 1 degrees of freedom): the spread between training
runs, which the per-run bootstrap over clips does not see.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

METRICS = ("EEA", "EPC", "UAR")


def judge_blocks(results: dict, protocol: str = "sample") -> dict[str, dict[str, dict]]:
    """``{judge: {arm: metrics}}`` of one results.json (the headline judge and every extra one)."""
    block = results if protocol == "sample" else results[protocol]
    head = results["protocol"]["judge"]
    out = {head: {arm: block[arm] for arm in ("baseline", "erv")}}
    for name in block["erv"].get("judges", {}):
        out[name] = {arm: block[arm]["judges"][name] for arm in ("baseline", "erv")}
    return out


def t_interval(xs: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % t-interval (scipy's Student t) of a few values."""
    from scipy import stats

    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return mean, float("nan"), float("nan")
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def table(per_seed: dict[int, dict], protocol: str = "sample") -> dict:
    """``{judge: {metric: {"per_seed": {seed: points}, "mean", "low", "high"}}}``, in points."""
    out: dict = {}
    for seed, results in per_seed.items():
        for judge, arms in judge_blocks(results, protocol).items():
            for m in METRICS:
                e, b = arms["erv"].get(m), arms["baseline"].get(m)
                if e is not None and b is not None:
                    out.setdefault(judge, {}).setdefault(m, {"per_seed": {}})["per_seed"][seed] = round(100 * (e - b), 1)
    for judge in out.values():
        for m, d in judge.items():
            mean, low, high = t_interval(list(d["per_seed"].values()))
            d.update(mean=round(mean, 1), low=round(low, 1), high=round(high, 1))
    return out


def markdown(tab: dict, seeds: list[int]) -> str:
    lines = [f"ERV minus baseline across training seeds {seeds} (points; mean [95 % t-interval over seeds])", "",
             "| judge | " + " | ".join(METRICS) + " | per seed (EEA / EPC) |", "|---|" + "---|" * (len(METRICS) + 1)]
    for judge, d in tab.items():
        cells = [f"{d[m]['mean']:+.1f} [{d[m]['low']:+.1f}, {d[m]['high']:+.1f}]" if m in d else "–" for m in METRICS]
        per = ", ".join(f"{s}: {d['EEA']['per_seed'].get(s, float('nan')):+.1f} / {d['EPC']['per_seed'].get(s, float('nan')):+.1f}"
                        for s in seeds) if "EEA" in d and "EPC" in d else ""
        lines.append(f"| {judge} | " + " | ".join(cells) + f" | {per} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu-tiny")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=None, help="folder of the per-seed runs (default: <runs folder>/seeds)")
    ap.add_argument("--reuse", action="append", default=[], metavar="SEED=DIR", help="a finished run folder for a seed")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--write", default=None, help="write the table as JSON here (and .md beside it)")
    args = ap.parse_args(argv)
    from erv_lab import arms, stages
    from erv_lab.config import load_config
    from erv_lab.paths import runs_root

    reuse = {int(k): Path(v) for k, v in (r.split("=", 1) for r in args.reuse)}
    per_seed = {}
    for seed in args.seeds:
        cfg = load_config(args.preset, [*args.overrides, f"grpo.seed={seed}"])
        run = reuse.get(seed, Path(args.out) / f"seed{seed}" if args.out else runs_root()[0] / "seeds" / f"seed{seed}")
        print(f"seed {seed}: {run}", file=sys.stderr, flush=True)
        arms.run_arms(cfg, run)
        per_seed[seed] = stages.ensure_results(cfg, run)
    doc = {"preset": args.preset, "seeds": args.seeds, "overrides": args.overrides,
           "sample": table(per_seed), "greedy": table(per_seed, "greedy")}
    md = markdown(doc["sample"], args.seeds)
    print(md)
    if args.write:
        Path(args.write).write_text(json.dumps(doc, indent=1) + "\n")
        Path(args.write).with_suffix(".md").write_text(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
