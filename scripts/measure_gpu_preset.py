"""Peak GPU memory and seconds per step of a preset's SFT and GRPO steps (default: colab-t4, QLoRA).

    python scripts/measure_gpu_preset.py --preset colab-t4 --sft-steps 5 --grpo-steps 5 --out /tmp/measure

Runs the real entry points (``erv_lab.train.ensure_sft`` / ``ensure_grpo``, ERV arm) for a few steps in a
scratch run folder and prints one JSON line per stage with ``seconds_per_step`` and ``peak_gpu_mb``
(``torch.cuda.max_memory_allocated``). Needs a CUDA GPU; it refuses to run on a CPU, so a number it prints is
always a GPU measurement. Without Hub access, ``--standin`` builds the preset's VLM with its published sizes and
random weights (``erv_lab.policy.build_standin``): memory and step time are the real model's, its completions
are noise and always run to ``max_completion_length`` (the slowest case), and the verifier must be a local kind:

    python scripts/measure_gpu_preset.py --standin --set verifier.kind=tfidf --set data.clips_per_class=2
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="colab-t4")
    ap.add_argument("--out", default="/tmp/erv-measure")
    ap.add_argument("--sft-steps", type=int, default=5)
    ap.add_argument("--grpo-steps", type=int, default=5)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--standin", action="store_true", help="random weights, the Hub model's architecture and sizes")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU: nothing measured (this script only reports GPU numbers)", file=sys.stderr)
        return 2
    from erv_lab import train
    from erv_lab.config import load_config, run_dir

    cfg = load_config(args.preset, args.overrides)
    out = run_dir(cfg, args.out)
    print(json.dumps({"gpu": torch.cuda.get_device_name(0),
                      "gpu_total_mb": round(torch.cuda.get_device_properties(0).total_memory / 2**20)}))
    # SFT: cap the number of optimisation steps by shrinking the train split to sft-steps batches.
    from erv_lab.data import ensure_dataset

    splits = ensure_dataset(cfg, out)
    if args.standin:
        from erv_lab import policy as P

        folder = out / "standin"
        if not (folder / "standin.json").exists():
            t0 = time.perf_counter()
            corpus = list(splits["train"]["rationale"]) + list(splits["train"]["prosody"])
            P.build_standin(cfg.policy.model_name, folder, corpus)
            print(json.dumps({"standin_for": cfg.policy.model_name, "build_s": round(time.perf_counter() - t0, 1),
                              **json.loads((folder / "standin.json").read_text())["parameters"]}), flush=True)
        cfg.policy.model_name = str(folder)
    n = min(len(splits["train"]), args.sft_steps * cfg.sft.batch_size)
    small = {"train": splits["train"].select(range(n)), "test": splits["test"]}
    cfg.sft.epochs = 1
    for stage in ("sft", "grpo"):
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        if stage == "sft":
            path = train.ensure_sft(cfg, out, dataset=small, force=True)
        else:
            cfg.grpo.max_steps = args.grpo_steps
            path = train.ensure_grpo(cfg, out, "erv", dataset=small, force=True)
        metrics = json.loads((path / "policy.json").read_text())["metrics"]
        print(json.dumps({"stage": stage, "preset": cfg.preset, "steps": metrics["steps_this_run"],
                          "seconds_per_step": metrics["seconds_per_step"], "peak_gpu_mb": metrics["peak_gpu_mb"],
                          "wall_s": round(time.perf_counter() - t0, 1), "G": cfg.grpo.num_generations,
                          "frames": cfg.data.num_frames, "max_completion_length": cfg.grpo.max_completion_length,
                          "load_in_4bit": cfg.policy.load_in_4bit, "lora_r": cfg.policy.lora_r,
                          "standin": args.standin}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
