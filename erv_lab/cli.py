"""The ``erv-lab`` command line. Parsers only; each command calls one function in the package.

Handlers are imported lazily (``"module:function"``) so that ``erv-lab --help`` is instant and a
command only pays for the libraries it uses. Every handler takes the parsed ``argparse.Namespace`` and
returns an exit code.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys


def _preset(p: argparse.ArgumentParser, default: str = "cpu-tiny") -> None:
    p.add_argument("--preset", default=default, help=f"preset name (erv-lab presets) or a YAML path (default: {default})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one config value, e.g. --set grpo.max_steps=20 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="erv-lab",
        description="ERV course toolkit: synthetic clips, verifier, rewards, GRPO, consistency analysis.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("env", help="print versions, device (CPU/CUDA + memory) and offline status")
    p.set_defaults(handler="erv_lab.cli:cmd_env")

    p = sub.add_parser("course", help="run every numbered notebook top to bottom on a preset")
    p.add_argument("--preset", default="cpu-tiny")
    p.add_argument("--out", default=None, help="output folder (default: runs/<preset>/)")
    p.add_argument("--only", nargs="*", default=None, help="notebook name prefixes to run, e.g. 00 02")
    p.add_argument("--notebooks", default=None, help="folder of the numbered notebooks (default: the clone's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one config value in every notebook, e.g. --set grpo.max_steps=20 (repeatable)")
    p.add_argument("--reference", action="store_true",
                   help="maintainers (make reference): refresh the shipped erv_lab/reference_run/ from this cpu-tiny run")
    p.set_defaults(handler="erv_lab.cli:cmd_course")

    p = sub.add_parser("path", help="print the absolute path of a shipped config, e.g. accelerate/zero3.yaml")
    p.add_argument("name", help="a file under erv_lab/configs/, e.g. cpu-tiny.yaml or accelerate/zero3.yaml")
    p.set_defaults(handler="erv_lab.cli:cmd_path")

    p = sub.add_parser("presets", help="list the presets and what they are for")
    p.set_defaults(handler="erv_lab.cli:cmd_presets")

    p = sub.add_parser("synth", help="write synthetic emotion clips in the DFEW or MAFW on-disk layout")
    p.add_argument("--layout", choices=["dfew", "mafw"], default="dfew")
    p.add_argument("--out", required=True, help="dataset root to create")
    p.add_argument("--clips", type=int, default=280, help="number of clips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", type=float, default=0.5, help="0 = obvious cues .. 1 = hard")
    p.add_argument("--drift-rate", type=float, default=None, help="share of drifting cold-start rationales")
    p.set_defaults(handler="erv_lab.synth:cli_synth")

    p = sub.add_parser("prepare", help="load a dataset fold, sample frames + audio, export JSONL")
    p.add_argument("--dataset", choices=["dfew", "mafw", "folder"], required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--fold", type=int, default=5)
    p.add_argument("--split", choices=["train", "test"], default="train")
    p.add_argument("--out", required=True, help="output .jsonl (R1-Omni conversation records)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--face-crop", action="store_true")
    p.add_argument("--labels", default=None, help="folder dataset: comma-separated label list")
    p.add_argument("--csv", default=None, help="folder dataset: CSV with columns path,label")
    p.add_argument("--missing-audio", choices=["skip", "silence"], default="skip",
                   help="a clip without an audio track: skip it (default; a frame folder is kept) or keep it "
                        "with a silent 16 kHz track, counted as silent_audio in the report")
    p.set_defaults(handler="erv_lab.data:cli_prepare")

    v = sub.add_parser("verifier", help="train, score with, or evaluate the Emotional Rationale Verifier")
    vs = v.add_subparsers(dest="verifier_command", metavar="ACTION")
    p = vs.add_parser("train", help="train the verifier of a preset")
    _preset(p)
    p.add_argument("--out", required=True, help="folder to save the verifier (safetensors + config)")
    p.set_defaults(handler="erv_lab.verifier:cli_train")
    p = vs.add_parser("score", help="per-sentence labels and probabilities for a rationale")
    p.add_argument("--model", required=True)
    p.add_argument("--threshold", type=float, default=0.1)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("text", nargs="+")
    p.set_defaults(handler="erv_lab.verifier:cli_score")
    p = vs.add_parser("eval", help="GoEmotions and rationale-domain metrics as JSON")
    p.add_argument("--model", required=True)
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--max-rows", type=int, default=None, help="evaluate on a seeded subset of dev/test rows")
    p.set_defaults(handler="erv_lab.verifier:cli_eval")

    t = sub.add_parser("train", help="cold-start SFT and GRPO (baseline or ERV arm)")
    ts = t.add_subparsers(dest="train_command", metavar="STAGE")
    p = ts.add_parser("sft", help="cold-start SFT on rationales")
    _preset(p)
    p.add_argument("--out", default=None, help="run folder (default: runs/<preset>/)")
    p.set_defaults(handler="erv_lab.train:cli_sft")
    p = ts.add_parser("grpo", help="GRPO from the SFT checkpoint")
    _preset(p)
    p.add_argument("--arm", choices=["baseline", "erv"], required=True)
    p.add_argument("--out", default=None, help="run folder (default: runs/<preset>/)")
    p.set_defaults(handler="erv_lab.train:cli_grpo")

    p = sub.add_parser("evaluate", help="decode the test fold with every model and write results.json")
    _preset(p)
    p.add_argument("--out", default=None, help="run folder (default: runs/<preset>/)")
    p.set_defaults(handler="erv_lab.stages:cli_evaluate")

    p = sub.add_parser("explain", help="your own clip through a run's models: frames, spectrogram, rationale, "
                                       "answer, verifier labels, judge (JSON + HTML)")
    p.add_argument("video", metavar="VIDEO", help="a video (with or without sound), a folder of frames, or a photo")
    p.add_argument("--run", required=True, help="run folder holding sft/final, baseline/final and/or erv/final")
    p.add_argument("--out", default=None, help="output folder (default: RUN/explain/<clip name>/)")
    p.add_argument("--preset", default=None,
                   help="preset name or YAML path (default: the one the run's models were trained with, else cpu-tiny)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one config value, e.g. --set eval.max_new_tokens=64 (repeatable)")
    p.set_defaults(handler="erv_lab.explain:cli_explain")
    return parser


def cmd_env(args: argparse.Namespace) -> int:
    from erv_lab.envinfo import print_env

    print_env()
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    from erv_lab.paths import CONFIG_DIR

    path = (CONFIG_DIR / args.name).resolve()
    if CONFIG_DIR.resolve() not in path.parents or not path.is_file():
        print(f"no shipped config {args.name!r}; see {CONFIG_DIR}", file=sys.stderr)
        return 2
    print(path)
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from erv_lab.config import list_presets, load_config

    for name in list_presets():
        print(f"{name:10s} {load_config(name).description}")
    return 0


def cmd_course(args: argparse.Namespace) -> int:
    from erv_lab.course import NotebookFailed, run_course

    from pathlib import Path

    if args.reference and (args.preset != "cpu-tiny" or args.only):
        print("--reference needs the whole cpu-tiny course", file=sys.stderr)
        return 2
    try:
        result = run_course(args.preset, out=args.out, only=args.only,
                            notebook_dir=Path(args.notebooks) if args.notebooks else None, overrides=args.overrides)
    except NotebookFailed as exc:
        print(f"\nCOURSE STOPPED in notebook {exc.notebook.name}, cell {exc.cell_index}.", file=sys.stderr)
        print(str(exc), file=sys.stderr)
        print("The executed copy (with the error) is in the run folder's notebooks/.", file=sys.stderr)
        return 1
    from erv_lab.report import finalize_course  # timings into results.json (+ the reference run when asked)

    final = finalize_course(result["run_dir"], args.preset, reference=args.reference)
    if final["reference_files"]:
        from erv_lab.paths import source_checkout
        from erv_lab.report import sync_docs

        print(f"erv_lab/reference_run/ refreshed: {', '.join(final['reference_files'])}")
        print(f"results blocks regenerated: {', '.join(sync_docs(source_checkout())) or 'already current'}")
    total = sum(result["timings"].values())
    print(f"\nCourse finished in {total:.0f} s. Executed notebooks and artifacts: {result['run_dir']}")
    summary = os.path.join(result["run_dir"], "results.md")
    if os.path.exists(summary):
        print(open(summary, encoding="utf-8").read())
        print(f"results.json: {os.path.join(result['run_dir'], 'results.json')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        # `erv-lab`, `erv-lab verifier` or `erv-lab train` without an action: show the relevant help
        sub = {"verifier": "verifier", "train": "train"}.get(args.command or "")
        parser.parse_args([sub, "--help"] if sub else ["--help"])
        return 2
    module, func = handler.split(":")
    return int(getattr(importlib.import_module(module), func)(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
