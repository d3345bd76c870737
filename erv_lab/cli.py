"""The ``erv-lab`` command line: the parsers and every command's handler, in one place.

Each handler takes the parsed ``argparse.Namespace``, calls the package's own functions (imported inside the
handler, so that ``erv-lab --help`` is instant and a command only pays for the libraries it uses), prints
what a person needs to see and returns an exit code.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys


def _preset(p: argparse.ArgumentParser, out: str = "run folder (default: runs/<preset>/)", out_required: bool = False,
            default: str = "cpu-tiny") -> None:
    """``--preset``, ``--set`` (repeatable) and ``--out`` of a command that loads a config."""
    p.add_argument("--preset", default=default, help=f"preset name (erv-lab presets) or a YAML path (default: {default})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one config value, e.g. --set grpo.max_steps=20 (repeatable)")
    p.add_argument("--out", required=out_required, default=None, help=out)


def _command(sub, handler: str, *args, **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose handler is ``cmd_<...>`` of this module (resolved when the command runs)."""
    p = sub.add_parser(*args, **kwargs)
    p.set_defaults(handler=f"erv_lab.cli:{handler}")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="erv-lab",
        description="ERV course toolkit: synthetic clips, verifier, rewards, GRPO, consistency analysis.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _command(sub, "cmd_env", "env", help="print versions, device (CPU/CUDA + memory) and offline status")

    p = _command(sub, "cmd_course", "course", help="run every numbered notebook top to bottom on a preset")
    p.add_argument("--preset", default="cpu-tiny")
    p.add_argument("--out", default=None, help="output folder (default: runs/<preset>/)")
    p.add_argument("--only", nargs="*", default=None, help="notebook name prefixes to run, e.g. 00 02")
    p.add_argument("--notebooks", default=None, help="folder of the numbered notebooks (default: the clone's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one config value in every notebook, e.g. --set grpo.max_steps=20 (repeatable)")
    p.add_argument("--cell-timeout", type=int, default=-1, metavar="SECONDS",
                   help="stop the course when one cell runs longer (0: no limit; default: 1800 on smoke and cpu-tiny, "
                        "none on the GPU presets, whose training cells run for hours)")
    p.add_argument("--reference", action="store_true",
                   help="maintainers (make reference): refresh the shipped erv_lab/reference_run/ from this cpu-tiny run")

    p = _command(sub, "cmd_path", "path", help="print the absolute path of a shipped config, e.g. accelerate/zero3.yaml")
    p.add_argument("name", help="a file under erv_lab/configs/, e.g. cpu-tiny.yaml or accelerate/zero3.yaml")

    p = _command(sub, "cmd_presets", "presets", help="list the presets and what they are for")

    p = _command(sub, "cmd_synth", "synth", help="write synthetic emotion clips in the DFEW or MAFW on-disk layout")
    p.add_argument("--layout", choices=["dfew", "mafw"], default="dfew")
    p.add_argument("--out", required=True, help="dataset root to create")
    p.add_argument("--clips", type=int, default=280, help="number of clips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", type=float, default=0.5, help="0 = obvious cues .. 1 = hard")
    p.add_argument("--drift-rate", type=float, default=None, help="share of drifting cold-start rationales")

    p = _command(sub, "cmd_prepare", "prepare", help="load a dataset fold, sample frames + audio, export JSONL")
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

    v = sub.add_parser("verifier", help="train, score with, or evaluate the Emotional Rationale Verifier")
    vs = v.add_subparsers(dest="verifier_command", metavar="ACTION")
    p = _command(vs, "cmd_verifier_train", "train", help="train the verifier of a preset")
    _preset(p, out="folder to save the verifier (safetensors + config)", out_required=True)
    p = _command(vs, "cmd_verifier_score", "score", help="per-sentence labels and probabilities for a rationale")
    p.add_argument("--model", required=True)
    p.add_argument("--threshold", type=float, default=0.1)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("text", nargs="+")
    p = _command(vs, "cmd_verifier_eval", "eval", help="GoEmotions and rationale-domain metrics as JSON")
    p.add_argument("--model", required=True)
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--max-rows", type=int, default=None, help="evaluate on a seeded subset of dev/test rows")

    t = sub.add_parser("train", help="cold-start SFT and GRPO (baseline or ERV arm)")
    ts = t.add_subparsers(dest="train_command", metavar="STAGE")
    p = _command(ts, "cmd_sft", "sft", help="cold-start SFT on rationales")
    _preset(p)
    p = _command(ts, "cmd_grpo", "grpo", help="GRPO from the SFT checkpoint")
    _preset(p)
    p.add_argument("--arm", choices=["baseline", "erv"], required=True)

    p = _command(sub, "cmd_evaluate", "evaluate", help="decode the test fold with every model and write results.json")
    _preset(p)

    lb = sub.add_parser("labels", help="the learner as the judge: merge label files, compare them with the judges")
    lbs = lb.add_subparsers(dest="labels_command", metavar="ACTION")
    p = _command(lbs, "cmd_labels_merge", "merge", help="pool several learners' label files (majority per rationale)")
    p.add_argument("files", nargs="+", metavar="FILE", help="label files (RUN/human/labels-<name>.jsonl)")
    p.add_argument("--out", required=True, help="the merged label file to write")
    p = _command(lbs, "cmd_labels_report", "report", help="Cohen's kappa with every judge and EEA per arm as labelled")
    p.add_argument("--out", required=True, help="run folder (holding eval/records.json and human/labels-*.jsonl)")

    p = _command(sub, "cmd_export", "export", help="a run's per-clip records as a Hugging Face dataset (parquet + card)")
    p.add_argument("run", metavar="RUN", help="run folder holding eval/records.json (e.g. runs/cpu-tiny)")
    p.add_argument("--out", required=True, help="folder to write (datasets' save_to_disk, data.parquet, README.md)")
    p.add_argument("--push", default=None, metavar="REPO_ID", help="also push to the Hub (needs HF_TOKEN; private)")
    p.add_argument("--i-may-share", dest="may_share", action="store_true",
                   help="for runs on licensed data (DFEW, MAFW): you may publish what the records derive from")

    p = _command(sub, "cmd_explain", "explain", help="your own clip through a run's models: frames, spectrogram, rationale, "
                                       "answer, verifier labels, judge (JSON + HTML)")
    p.add_argument("video", metavar="VIDEO", help="a video (with or without sound), a folder of frames, or a photo")
    p.add_argument("--run", required=True, help="run folder holding sft/final, baseline/final and/or erv/final")
    p.add_argument("--out", default=None, help="output folder (default: RUN/explain/<clip name>/)")
    p.add_argument("--preset", default=None,
                   help="preset name or YAML path (default: the one the run's models were trained with, else cpu-tiny)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override one config value, e.g. --set eval.max_new_tokens=64 (repeatable)")
    p.add_argument("--label", default=None,
                   help="the clip's true emotion, when known (e.g. one of the run's own clips): answers are checked "
                        "against it")
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
                            notebook_dir=Path(args.notebooks) if args.notebooks else None, overrides=args.overrides,
                            cell_timeout=args.cell_timeout)
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


def _run(args: argparse.Namespace):
    """``(cfg, run folder)`` of a command with ``--preset``, ``--set`` and ``--out``."""
    from erv_lab.config import load_config, run_dir

    cfg = load_config(args.preset, args.overrides)
    return cfg, run_dir(cfg, args.out)


def _metrics(final) -> str:
    """The training metrics a saved policy folder records (``policy.json``), as JSON."""
    import json
    from pathlib import Path

    meta = Path(final) / "policy.json"
    return json.dumps(json.loads(meta.read_text()).get("metrics", {}) if meta.exists() else {}, indent=2)


def cmd_synth(args: argparse.Namespace) -> int:
    """``erv-lab synth --layout {dfew,mafw} --out DIR --clips N --seed S [--difficulty D] [--drift-rate R]``."""
    import json

    from erv_lab.synth import generate

    kw = {} if args.drift_rate is None else {"drift_rate": args.drift_rate}
    print(json.dumps(generate(args.out, layout=args.layout, clips=args.clips, seed=args.seed,
                              difficulty=args.difficulty, **kw), indent=1))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """``erv-lab prepare``: list a fold, decode + cache every clip, print class counts and the skip report,
    write R1-Omni JSONL. ``--missing-audio silence`` keeps clips without an audio track (a silent track;
    counted as ``silent_audio`` in the report) instead of skipping them."""
    from collections import Counter
    from pathlib import Path

    from erv_lab.data import DataError, SkipReport, build_rows, list_records, write_jsonl
    from erv_lab.synth import read_meta

    report = SkipReport()
    labels = args.labels.split(",") if args.labels else None
    try:
        recs = list_records(args.dataset, args.root, args.fold, args.split, report, labels=labels, csv_path=args.csv)
        out = Path(args.out)
        rows = build_rows(recs, out.parent / f"{out.stem}_cache", args.split, args.frames, 112, args.face_crop,
                          report=report, progress=False, missing_audio=getattr(args, "missing_audio", "skip"))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    kept = {r["clip_id"] for r in rows}
    n = write_jsonl([r for r in recs if r["clip_id"] in kept], out, read_meta(args.root))
    print(f"{args.dataset} fold {args.fold} {args.split}: {n} records -> {out}")
    for label, c in sorted(Counter(r["label"] for r in rows).items()):
        print(f"  {label:15s} {c}")
    print(report)
    return 0


def cmd_verifier_train(args: argparse.Namespace) -> int:
    from erv_lab.config import load_config
    from erv_lab.verifier import train_verifier

    cfg = load_config(args.preset, args.overrides)
    model = train_verifier(cfg)
    model.info["max_train"] = cfg.verifier.max_train
    model.save(args.out)
    print(f"saved {model.kind} verifier to {args.out} ({model.info.get('train_seconds')} s): {model.info}")
    return 0


def cmd_verifier_score(args: argparse.Namespace) -> int:
    from erv_lab.verifier import load_verifier, sentence_labels

    model = load_verifier(args.model)
    for row in sentence_labels(model, " ".join(args.text), args.threshold, args.top_k):
        labels = ", ".join(f"{n} {p:.3f}" for n, p in zip(row["names"], row["probs"]))
        print(f"{row['sentence']}\n    -> {labels}")
    return 0


def cmd_verifier_eval(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from erv_lab.validation import evaluate_verifier
    from erv_lab.verifier import load_verifier

    model = load_verifier(args.model)
    info = getattr(model, "info", {})
    result = evaluate_verifier(model, info.get("threshold", 0.1), info.get("top_k", 2),
                               max_rows=getattr(args, "max_rows", None))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    from erv_lab.stages import ensure_sft

    cfg, rd = _run(args)
    final = ensure_sft(cfg, rd)
    print(_metrics(final))
    print(f"SFT model: {final}")
    return 0


def cmd_grpo(args: argparse.Namespace) -> int:
    from erv_lab.stages import ensure_grpo

    cfg, rd = _run(args)
    final = ensure_grpo(cfg, rd, args.arm)
    print(_metrics(final))
    print(f"GRPO {args.arm} model: {final}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from erv_lab.stages import ensure_results

    cfg, rd = _run(args)
    ensure_results(cfg, rd, force=True)
    print((rd / "results.md").read_text())
    print(f"results.json: {rd / 'results.json'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from erv_lab.export import export

    try:
        done = export(args.run, args.out, args.push, args.may_share)
    except (FileNotFoundError, PermissionError) as e:
        print(f"erv-lab export: {e}", file=sys.stderr)
        return 2
    print(f"{done['rows']} rows -> {done['out']} (datasets on disk, data.parquet, README.md)"
          + (f"; pushed to {done['pushed']}" if done["pushed"] else ""))
    return 0


def cmd_labels_merge(args: argparse.Namespace) -> int:
    """``erv-lab labels merge FILE... --out FILE``: the majority label per rationale and the pairwise kappa."""
    from pathlib import Path

    from erv_lab import human

    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        print(f"error: no label file {', '.join(missing)}", file=sys.stderr)
        return 1
    try:
        got = human.merge(args.files)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = human.write_labels(args.out, got["labels"])
    print(f"{len(got['labels'])} rationales from {', '.join(got['raters'])} ({got['ties']} ties -> cant_tell) -> {out}")
    for pair, k in got["kappa"].items():
        print(f"  {pair}: kappa {k['kappa'] if k['kappa'] is None else round(k['kappa'], 3)} (n = {k['n']})")
    if out.parent.name == "human" and out.match("labels-*.jsonl"):
        print(f"note: {out} will be read as one more learner by `erv-lab labels report` and `erv-lab evaluate`",
              file=sys.stderr)
    return 0


def cmd_labels_report(args: argparse.Namespace) -> int:
    """``erv-lab labels report --out RUN``: the learners' kappa with every judge and their EEA per arm."""
    from erv_lab import human

    try:
        human.report(args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """``erv-lab explain VIDEO --run DIR``: print each model's answer and the judge's reading, and where the
    JSON and HTML went. Bad input: a one-line error and exit code 1."""
    from erv_lab.explain import ExplainError, explain_clip

    try:
        result = explain_clip(args.video, args.run, args.out, args.preset, args.overrides, label=args.label)
    except ExplainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(result["caveat"])
    for arm, rec in result["models"].items():
        print(f"  {arm:9s} answer: {rec['answer']!s:12s} judge: {rec['judged']}")
    print(f"explain.json and explain.html: {result['out']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        # `erv-lab`, `erv-lab verifier`, `erv-lab train` or `erv-lab labels` without an action: show the relevant help
        sub = {"verifier": "verifier", "train": "train", "labels": "labels"}.get(args.command or "")
        parser.parse_args([sub, "--help"] if sub else ["--help"])
        return 2
    module, func = handler.split(":")
    return int(getattr(importlib.import_module(module), func)(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
