"""Peak GPU memory and seconds per step of a preset's SFT and GRPO steps (default: colab-t4, QLoRA).

    python scripts/measure_gpu_preset.py --preset colab-t4 --sft-steps 5 --grpo-steps 5 --out /tmp/measure

Runs the real entry points (``erv_lab.stages.ensure_sft`` / ``ensure_grpo``, ERV arm) for a few steps in a
scratch run folder and prints one JSON line per stage with ``seconds_per_step`` and ``peak_gpu_mb``
(``torch.cuda.max_memory_allocated``). Needs a CUDA GPU; it refuses to run on a CPU, so a number it prints is
always a GPU measurement. Without Hub access, ``--standin`` builds the preset's VLM with its published sizes and
random weights (``erv_lab.standins.build_standin``): memory and step time are the real model's, its completions
are noise and always run to ``max_completion_length`` (the slowest case), and the verifier must be a local kind:

    python scripts/measure_gpu_preset.py --standin --set verifier.kind=tfidf --set data.clips_per_class=2

``--t4`` plays a 16 GB T4 on a bigger GPU: ``torch.cuda.set_per_process_memory_fraction`` caps this process at
15 GiB, the policy runs in fp16 (a T4 has no bf16) and SDPA's flash kernel is disabled (a T4 has none). With
``--write PATH`` the phases (SFT, GRPO, evaluation) go to PATH as JSON: per phase ``peak_allocated_gb``,
``peak_reserved_gb``, ``s_per_step`` and ``prompt_tokens``, plus ``device``, ``commit`` and ``command``:

    python scripts/measure_gpu_preset.py --standin --t4 --set verifier.kind=tfidf --set data.clips_per_class=2 \
        --sft-steps 4 --grpo-steps 2 --write docs/measurements/colab-t4.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="colab-t4")
    ap.add_argument("--out", default="/tmp/erv-measure")
    ap.add_argument("--sft-steps", type=int, default=5)
    ap.add_argument("--grpo-steps", type=int, default=5)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--standin", action="store_true", help="random weights, the Hub model's architecture and sizes")
    ap.add_argument("--t4", action="store_true", help="15 GiB cap, fp16, no flash SDPA: a T4 on a bigger GPU")
    ap.add_argument("--write", default=None, help="write the phases as JSON here (docs/measurements/colab-t4.json)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU: nothing measured (this script only reports GPU numbers)", file=sys.stderr)
        return 2
    from erv_lab import policy as P
    from erv_lab.config import load_config, run_dir

    if args.t4:
        torch.cuda.set_per_process_memory_fraction(min(1.0, 15 * 2**30 / torch.cuda.get_device_properties(0).total_memory))
        torch.backends.cuda.enable_flash_sdp(False)
        if hasattr(torch.backends.cuda, "enable_cudnn_sdp"):  # a T4 has neither flash nor cuDNN SDPA
            torch.backends.cuda.enable_cudnn_sdp(False)
        P.gpu_dtype = lambda: torch.float16  # what policy.gpu_dtype picks on a T4 (sm_75)
    phases: dict = {}

    cfg = load_config(args.preset, args.overrides)
    out = run_dir(cfg, args.out)
    print(json.dumps({"gpu": torch.cuda.get_device_name(0),
                      "gpu_total_mb": round(torch.cuda.get_device_properties(0).total_memory / 2**20)}))
    # SFT: cap the number of optimisation steps by shrinking the train split to sft-steps batches.
    from erv_lab import stages

    splits = stages.ensure_dataset(cfg, out)
    if args.standin:
        from erv_lab import standins

        folder = out / "standin"
        if not (folder / "standin.json").exists():
            t0 = time.perf_counter()
            corpus = list(splits["train"]["rationale"]) + list(splits["train"]["prosody"])
            standins.build_standin(cfg.policy.model_name, folder, corpus)
            print(json.dumps({"standin_for": cfg.policy.model_name, "build_s": round(time.perf_counter() - t0, 1),
                              **json.loads((folder / "standin.json").read_text())["parameters"]}), flush=True)
        cfg.policy.model_name = str(folder)
    n = min(len(splits["train"]), args.sft_steps * cfg.sft.batch_size)
    small = {"train": splits["train"].select(range(n)), "test": splits["test"]}
    cfg.sft.epochs = 1
    tokens = None
    for stage in ("sft", "grpo"):
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        if stage == "sft":
            path = stages.ensure_sft(cfg, out, dataset=small, force=True)
        else:
            cfg.grpo.max_steps = args.grpo_steps
            path = stages.ensure_grpo(cfg, out, "erv", dataset=small, force=True)
        metrics = json.loads((path / "policy.json").read_text())["metrics"]
        phases[stage] = {"peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                         "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 2),
                         "s_per_step": metrics["seconds_per_step"],
                         "prompt_tokens": tokens or (tokens := _prompt_tokens(path, cfg, small))}  # same every phase
        print(json.dumps({"stage": stage, "preset": cfg.preset, "steps": metrics["steps_this_run"],
                          "seconds_per_step": metrics["seconds_per_step"], "peak_gpu_mb": metrics["peak_gpu_mb"],
                          "wall_s": round(time.perf_counter() - t0, 1), "G": cfg.grpo.num_generations,
                          "frames": cfg.data.num_frames, "max_completion_length": cfg.grpo.max_completion_length,
                          "load_in_4bit": cfg.policy.load_in_4bit, "lora_r": cfg.policy.lora_r,
                          "standin": args.standin}), flush=True)
    # evaluation: one generate() call of eval.batch_size rows at eval.max_new_tokens, as evaluate.py decodes
    model, processor = P.load_policy(path, cfg.policy)
    rows = [small["test"][i % len(small["test"])] for i in range(cfg.eval.batch_size)]
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    P.generate(model, processor, rows, temperature=cfg.eval.temperature, top_p=cfg.eval.top_p,
               max_new_tokens=cfg.eval.max_new_tokens, audio=cfg.policy.audio, batch_size=cfg.eval.batch_size)
    phases["eval"] = {"peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                      "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 2),
                      "s_per_step": round(time.perf_counter() - t0, 2), "rows_per_step": cfg.eval.batch_size,
                      "prompt_tokens": tokens}
    print(json.dumps({"stage": "eval", **phases["eval"]}), flush=True)
    if args.write:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        doc = {"device": torch.cuda.get_device_name(0), "t4_emulation": args.t4, "standin": args.standin,
               "commit": commit, "command": "python scripts/measure_gpu_preset.py " + " ".join(argv or sys.argv[1:]),
               "torch": torch.__version__, **phases}
        Path(args.write).parent.mkdir(parents=True, exist_ok=True)
        Path(args.write).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


def _prompt_tokens(model_dir, cfg, splits) -> int:
    """Tokens of one clip's prompt as the policy's processor builds it (image tokens included)."""
    from erv_lab import policy as P

    processor = P.load_processor(model_dir)
    ex = splits["test"][0]
    text = processor.apply_chat_template(P.prompt_messages(ex, cfg.policy.audio), add_generation_prompt=True,
                                         tokenize=False)
    return int(processor(images=[P.clip_images(ex, cfg.policy.audio)], text=[text], return_tensors="pt")["input_ids"].shape[1])


if __name__ == "__main__":
    raise SystemExit(main())
