"""How much a cpu-tiny run moves: the whole pipeline under other seeds, CPU numerics and library versions.

    python scripts/spread.py --write erv_lab/reference_run/spread.json             # every set-up (35 min here)
    python scripts/spread.py --only avx2 sse41 --out runs/spread                    # some of them
    python scripts/spread.py --reuse newest=runs/newest-course --write ...          # a finished run for a set-up
    python scripts/spread.py --only other-cpu --reuse other-cpu=runs/reference --extend \
        --write erv_lab/reference_run/spread.json   # add `make reference` made on another CPU type to the file

A learner's numbers differ from the shipped run's because their CPU type (oneDNN's and MKL's kernels, hence the
order of floating-point sums) or their torch/transformers differ, and a few flipped decodes grow through GRPO.
This script measures that spread on one machine by holding the instruction set down (what a CPU without
AVX-512 runs), changing the training seed, and using the newest torch/transformers the ranges allow
(``make venv-newest``); ``other-cpu`` is a ``make reference`` run made on another CPU type (reused, never run
here). Each set-up trains everything in its own folder (dataset, verifier, SFT, both arms,
evaluation) in a fresh process, so the environment variables reach oneDNN and MKL before torch loads. The
shipped run (``erv_lab/reference_run/results.json``) is the first row.

The file records, per set-up and both decoding protocols, EEA / EPC / UAR of the SFT model and each arm under
the headline judge, ERV - baseline, the machine and the stack, and the command; ``summary`` holds the range of
each number across set-ups. ``erv_lab.readings.reproducibility`` turns it into the README's sentence.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("EEA", "EPC", "UAR")
ARMS = ("sft", "baseline", "erv")
# name -> (what it changes, environment variables, training seed, python: None = this interpreter)
SETUPS: dict[str, tuple[str, dict[str, str], int, str | None]] = {
    "seed1": ("training seed 1 (grpo.seed=1), shipped numerics", {}, 1, None),
    "seed2": ("training seed 2 (grpo.seed=2), shipped numerics", {}, 2, None),
    "onednn-avx2": ("oneDNN held to AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, 0, None),
    "avx2": ("oneDNN and MKL held to AVX2 (a CPU without AVX-512)",
             {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}, 0, None),
    "sse41": ("oneDNN held to SSE4.1 and MKL to SSE4.2 (the oldest kernels they have)",
              {"ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}, 0, None),
    "newest": ("the newest torch and transformers the ranges allow (make venv-newest), everything else pinned",
               {}, 0, ".venv-newest/bin/python"),
    "other-cpu": ("another CPU type, everything else as shipped (make reference there)", {}, 0, None),
}
REUSE_ONLY = {"other-cpu"}  # made on another machine: only read with --reuse


def arm_metrics(results: dict, protocol: str) -> dict:
    """``{arm: {metric: points}, "erv_minus_baseline": {metric: points}}`` under the headline judge."""
    block = results if protocol == "sample" else results[protocol]
    out = {arm: {m: round(100 * block[arm][m], 1) for m in METRICS} for arm in ARMS}
    # from the unrounded values, as seeds.json and the readings compute it
    out["erv_minus_baseline"] = {m: round(100 * (block["erv"][m] - block["baseline"][m]), 1) for m in METRICS}
    return out


def summary(rows: list[dict]) -> dict:
    """``{protocol: {arm or "erv_minus_baseline": {metric: {"min", "max", "n_positive"}}}}`` across rows."""
    out: dict = {}
    for protocol in ("sample", "greedy"):
        for key in (*ARMS, "erv_minus_baseline"):
            for m in METRICS:
                xs = [r[protocol][key][m] for r in rows]
                out.setdefault(protocol, {}).setdefault(key, {})[m] = {
                    "min": min(xs), "max": max(xs), "n_positive": sum(x > 0 for x in xs), "n": len(xs)}
    return out


def row(name: str, what: str, env: dict, seed: int, python: str, results: dict, command: str) -> dict:
    stack = results.get("settings", {}).get("stack") or {}
    return {"name": name, "what": what, "env": env, "seed": seed, "python": python, "command": command,
            "machine": results["protocol"].get("machine"), "stack": stack,
            "sample": arm_metrics(results, "sample"), "greedy": arm_metrics(results, "greedy")}


def child(preset: str, seed: int, run: str, overrides: list[str]) -> int:
    """In the set-up's process: the whole pipeline into ``run``, then its results.json."""
    from erv_lab import arms, stages
    from erv_lab.config import load_config
    from erv_lab.envinfo import env_report

    cfg = load_config(preset, [*overrides, f"grpo.seed={seed}"])
    arms.run_arms(cfg, run)
    results = stages.ensure_results(cfg, run)
    versions = env_report()["versions"]
    Path(run, "spread-stack.json").write_text(json.dumps(versions, indent=1) + "\n")
    print(json.dumps(arm_metrics(results, "sample")["erv_minus_baseline"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu-tiny")
    ap.add_argument("--only", nargs="+", choices=sorted(SETUPS), default=None)
    ap.add_argument("--out", default="runs/spread", help="folder of the set-ups' runs")
    ap.add_argument("--reuse", action="append", default=[], metavar="NAME=DIR", help="a finished run for a set-up")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--write", default=None, help="write the JSON here (and .md beside it)")
    ap.add_argument("--extend", action="store_true",
                    help="keep the set-ups already in --write's file and add (or replace) only those given")
    ap.add_argument("--child", nargs=2, metavar=("SEED", "RUN"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.preset, int(args.child[0]), args.child[1], args.overrides)

    from erv_lab.paths import REFERENCE_DIR

    reuse = dict(r.split("=", 1) for r in args.reuse)
    shipped = json.loads((REFERENCE_DIR / "results.json").read_text())
    pins = json.loads((REFERENCE_DIR / "stack.json").read_text())["versions"]
    rows = [row("shipped", "the shipped run (make reference)", {}, 0, ".venv", shipped,
                "make reference")]
    rows[0]["stack"] = {k: pins[k] for k in ("torch", "transformers")}
    kept = {}
    if args.extend:
        if not args.write or not Path(args.write).exists():
            ap.error("--extend needs an existing --write file")
        kept = {r["name"]: r for r in json.loads(Path(args.write).read_text())["setups"] if r["name"] != "shipped"}
    for name in args.only or [n for n in SETUPS if n not in REUSE_ONLY]:
        what, env, seed, python = SETUPS[name]
        if name in REUSE_ONLY and name not in reuse:
            ap.error(f"{name} is a run made on another machine: give it with --reuse {name}=DIR")
        run = Path(reuse.get(name) or Path(args.out) / name)
        py = str(ROOT / python) if python else sys.executable
        sets = " ".join(f"--set {shlex.quote(s)}" for s in args.overrides)
        command = " ".join([*(f"{k}={v}" for k, v in env.items()), python or ".venv/bin/python",
                            "scripts/spread.py", f"--only {name}", sets]).replace("  ", " ").strip()
        if name not in reuse:
            if not Path(py).exists():
                print(f"{name}: {python} is missing (make venv-newest); skipped", file=sys.stderr)
                continue
            t0 = time.time()
            print(f"{name}: {what} -> {run}", file=sys.stderr, flush=True)
            cmd = [py, str(Path(__file__).resolve()), "--preset", args.preset, "--child", str(seed), str(run),
                   *(x for s in args.overrides for x in ("--set", s))]
            proc = subprocess.run(cmd, env={**os.environ, **env}, cwd=ROOT)
            if proc.returncode:
                print(f"{name}: failed (exit {proc.returncode}); see {run}", file=sys.stderr)
                return proc.returncode
            print(f"{name}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        results = json.loads((run / "results.json").read_text())
        if name == "other-cpu":
            cpu = (results["protocol"].get("machine") or {}).get("cpu", "unknown CPU")
            if cpu == (shipped["protocol"].get("machine") or {}).get("cpu"):
                ap.error(f"{run} was made on the shipped run's CPU type ({cpu})")
            what = f"another CPU type ({cpu}), everything else as shipped"
            command = "make reference (on that machine)"
        r = row(name, what, env, seed, python or ".venv/bin/python", results, command)
        if name in reuse:
            r["reused_from"] = str(run)  # e.g. the folder of a whole course run under this set-up
        stack_file = run / "spread-stack.json"
        if stack_file.exists():
            v = json.loads(stack_file.read_text())
            r["stack"] = {k: v.get(k) for k in ("torch", "transformers")}
        rows.append(r)
        kept.pop(name, None)
    rows[1:1] = list(kept.values())  # set-ups measured before, in their order, then the ones just measured
    doc = {"what": "EEA / EPC / UAR (points, headline judge) of the SFT model and both GRPO arms, and ERV - baseline, "
                   "under each set-up; every set-up retrains the whole pipeline. Made by scripts/spread.py.",
           "preset": args.preset, "overrides": args.overrides, "judge": shipped["protocol"]["judge"],
           "setups": rows, "summary": summary(rows)}
    md = markdown(doc)
    print(md)
    if args.write:
        Path(args.write).write_text(json.dumps(doc, indent=1) + "\n")
        Path(args.write).with_suffix(".md").write_text(md)
    return 0


def markdown(doc: dict) -> str:
    lines = [f"# How much a {doc['preset']} run moves (points, judge {doc['judge']})", "",
             "| set-up | what changes | protocol | SFT EEA / EPC / UAR | baseline | ERV | ERV - baseline |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda d, sign="": " / ".join(f"{d[m]:{sign}.1f}" for m in METRICS)  # noqa: E731
    for r in doc["setups"]:
        for protocol in ("sample", "greedy"):
            p = r[protocol]
            lines.append(f"| {r['name']} | {r['what']} | {protocol} | {fmt(p['sft'])} | {fmt(p['baseline'])} | "
                         f"{fmt(p['erv'])} | {fmt(p['erv_minus_baseline'], '+')} |")
    lines += ["", "Commands:", ""] + [f"- {r['name']}: `{r['command']}`" for r in doc["setups"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
