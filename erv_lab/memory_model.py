"""GPU memory of colab-t4's SFT step and GRPO micro-step, traced at the real shapes on a CPU, without weights.

Method: under ``FakeTensorMode`` tensors have shapes and dtypes but no data, so the real
``LlavaOnevisionForConditionalGeneration`` (``standins.HUB_SIZES``, fp16) is built and run for nothing while
``torch.distributed._tools.mem_tracker.MemTracker`` counts every storage's bytes while it lives and keeps the
peak: parameters, buffers, gradients, activations (forward), temporaries (backward), optimizer states. The code
run is the real one: transformers' model, masks and (non-reentrant) gradient checkpointing; peft's LoRA r 16
on the LM's q/k/v/o/gate/up/down in fp32 (``precision.keep_trainables_fp32`` undoes TRL's bf16 cast), TRL's
frozen fp32 "ref" copy in GRPO; ``policy.frozen_vision_without_autograd``; TRL 1.16's fused LM head (completion
log-probs in 4,096 x 32,768 tiles); fp16 autocast; AdamW in steady state (states exist, gradients accumulate).
Stand-ins for what cannot run on fake tensors:
- bitsandbytes 4-bit (:class:`NF4Linear`): what ``Linear4bit`` stores (NF4 blocks of 64, double quantisation:
  ``in*out/2`` bytes, a uint8 scale per block, an fp32 one per 256 blocks, code tables); per matmul, forward
  and backward, an fp16 ``out x in`` dequantised temporary (bitsandbytes 0.50 on CUDA past ~1.5k rows); nothing
  saved for backward. Every Linear but the tied LM head is 4-bit, as transformers quantises.
- The fake device is the CPU (indexing fake CUDA tensors needs a CUDA build), so CUDA's behaviour is copied
  where the CPU's differs in memory: autocast's fp32 ``layer_norm``, the fused dropout's bool mask.
- SDPA on a T4 = the memory-efficient kernel (:func:`_t4_attention`): KV heads repeated (``sdpa_repeat_kv``),
  a boolean mask as SDPA's fp16 bias. ``Shape.padded``: rows of different lengths, so transformers builds the
  4-D mask (rows still all full length, the worst case); else no mask, as when every rollout runs to the end.
- TRL's Triton kernels fold the logits tiles on-chip: their torch fallbacks (fp32 tile copies) do nothing.
Not modelled: the CUDA context, cuBLAS/cuDNN and kernel workspaces, the caching allocator's rounding and
fragmentation (``memory_reserved``), GradScaler and clipping temporaries (adapter-sized), rollout generation
(KV cache ``rows x tokens x 24 x 2 x 128 x 2`` B, 0.1 GB at 4 x 2.5k; its prefill is a no-grad forward, shorter
than the ref pass traced). Estimates of ``torch.cuda.max_memory_allocated``: 7-13 % above the H200-as-T4
measurements in docs/measurements (same shapes, no padding, 150-token SFT rows). ``python -m erv_lab.memory_model``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import asdict, dataclass
from unittest import mock

import torch
from torch import nn

GiB = 2 ** 30
MODEL = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
IMAGE_TOKENS = 730  # per image of a multi-image prompt: 27 x 27 SigLIP patches + the newline token
TEXT_TOKENS = 64  # template + instruction: 2,247 - 3 x 730 = 57, 6,633 - 9 x 730 = 63 (tests/test_token_budget.py)
SFT_COMPLETION = 150  # tokens of a long cold-start rationale
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass
class Shape:
    prompt_tokens: int  # text + image tokens of one prompt
    images: int  # images per prompt
    completion: int  # completion tokens of every row
    rows: int  # rows per forward/backward
    padded: bool = True  # rows of different lengths: a 4-D mask (False: every row full, no mask, is_causal)


def preset_shapes(preset="colab-t4", prompt_tokens=None, images=None, completion=None, rows=None) -> dict:
    """``{"sft": Shape, "grpo": Shape}``: ``data.num_frames / policy.frames_per_image`` images (+ the
    spectrogram), ``grpo.max_completion_length``, ``grpo.micro_batch`` and ``sft.batch_size`` rows."""
    from erv_lab.config import load_config

    cfg = load_config(preset)
    frames_per_image = getattr(cfg.policy, "frames_per_image", 1)
    k = images or -(-cfg.data.num_frames // frames_per_image) + (cfg.policy.audio == "spectrogram")
    p, g = prompt_tokens or k * IMAGE_TOKENS + TEXT_TOKENS, cfg.grpo
    return {"sft": Shape(p, k, completion or SFT_COMPLETION, rows or cfg.sft.batch_size),
            "grpo": Shape(p, k, completion or g.max_completion_length,
                          rows or g.micro_batch or g.prompts_per_step * g.num_generations)}


class _Dequant(torch.autograd.Function):  # linear(x, W, bias), W dequantised per matmul (bitsandbytes' MatMul4Bit)
    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        return nn.functional.linear(x, layer.dequantised(x.dtype)[0], layer.bias)

    @staticmethod
    def backward(ctx, grad):
        return grad @ ctx.layer.dequantised(grad.dtype)[0], None


class NF4Linear(nn.Linear):
    """Stand-in for ``bitsandbytes.nn.Linear4bit`` (NF4, double quantisation, fp16 compute, output in x's dtype)."""

    def __init__(self, linear: nn.Linear):
        nn.Module.__init__(self)
        self.in_features, self.out_features, self.bias = linear.in_features, linear.out_features, linear.bias
        n, blocks = linear.in_features * linear.out_features, math.ceil(linear.in_features * linear.out_features / 64)
        self.weight = nn.Parameter(torch.empty((n + 1) // 2, 1, dtype=torch.uint8), requires_grad=False)
        for name, size, dtype in (("absmax", blocks, torch.uint8), ("absmax2", math.ceil(blocks / 256), None),
                                  ("code", 16, None), ("code2", 256, None), ("offset", 1, None)):  # None: fp32
            self.register_buffer(name, torch.empty(size, dtype=dtype))

    def dequantised(self, dtype):  # the weight and its fp32 block scales, alive together
        scales = torch.empty(self.absmax.shape) + self.offset
        return torch.empty(self.out_features, self.in_features, dtype=dtype), scales

    def forward(self, x):
        return _Dequant.apply(x.to(torch.float16), self).to(x.dtype)


class _FP32LayerNorm(nn.LayerNorm):  # as CUDA autocast runs layer_norm (CPU autocast does not): fp32 out
    def forward(self, x):
        return nn.functional.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(),
                                        self.eps)


class _FusedDropout(nn.Dropout):  # CUDA's fused dropout keeps a bool mask (the CPU kernel: one of x's dtype)
    def forward(self, x):
        return torch.native_dropout(x, self.p, True)[0] if self.training and 0 < self.p < 1 else x


def _t4_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **_):
    """``sdpa_repeat_kv`` + SDPA on a T4: KV heads repeated, memory-efficient kernel, bool mask -> fp16 bias."""
    from transformers.integrations.sdpa_attention import repeat_kv

    groups, bias, dev = getattr(module, "num_key_value_groups", 1), None, query.device.type
    if torch.is_autocast_enabled(dev):  # SDPA is on autocast's fp16 list; this aten op is not
        query, key, value = (t.to(torch.get_autocast_dtype(dev)) for t in (query, key, value))
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    if attention_mask is not None:  # SDPA: where(~mask, -inf, 0) in the query's dtype, padded to 16 columns
        bias = torch.where(attention_mask.logical_not(), float("-inf"), torch.zeros((), dtype=query.dtype))
        cols = bias.shape[-1]
        bias = nn.functional.pad(bias, (0, -cols % 16))[..., :cols] if cols % 16 else bias
        bias = bias.expand(-1, query.shape[1], -1, -1)
    causal = query.shape[2] > 1 and attention_mask is None and is_causal is not False
    out = torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, bias, torch.is_grad_enabled(), dropout, causal, scale=scaling)[0]
    return out.transpose(1, 2).contiguous(), None


def build(grpo: bool, vision_grad: bool = False, adapter_dtype=torch.float32):
    """The QLoRA policy as the project trains it with TRL (call under ``FakeTensorMode``)."""
    from peft import LoraConfig, get_peft_model
    from transformers import (AttentionInterface, LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              Qwen2Config, SiglipVisionConfig)
    from transformers.initialization import no_init_weights
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    from erv_lab.policy import frozen_vision_without_autograd
    from erv_lab.standins import HUB_SIZES

    AttentionInterface.register("t4_sdpa", _t4_attention)
    AttentionMaskInterface.register("t4_sdpa", sdpa_mask)
    sizes = HUB_SIZES[MODEL]
    cfg = LlavaOnevisionConfig(vision_config=SiglipVisionConfig(**sizes["vision"]).to_dict(),
                               text_config=Qwen2Config(**sizes["text"]).to_dict(), image_token_index=151646,
                               video_token_index=151647, vision_feature_select_strategy="full",
                               vision_feature_layer=-1, tie_word_embeddings=True)
    with no_init_weights():  # random init reads values; fake tensors have none
        model = LlavaOnevisionForConditionalGeneration._from_config(cfg, dtype=torch.float16,
                                                                    attn_implementation="t4_sdpa")
    model.tie_weights()
    for mod in list(model.modules()):
        for name, child in list(mod.named_children()):
            if type(child) is nn.Linear and child is not model.lm_head:
                setattr(mod, name, NF4Linear(child))
            elif type(child) is nn.LayerNorm:
                child.__class__ = _FP32LayerNorm
    model.activation_checkpointing_enable({"use_reentrant": False})  # hooks every embedding output to need grad
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    to = nn.Module.to  # peft moves adapters to their layer's device: fake parameters cannot be swapped (weakrefs)
    with mock.patch.object(nn.Module, "to", lambda m, *a, **k: m if torch._C._nn._parse_to(*a, **k)[1] is None
                           else to(m, *a, **k)):
        model = get_peft_model(model, lora)
        if grpo:  # TRL 1.16 continuing the SFT adapter: a frozen fp32 "ref" copy for the KL term
            model.add_adapter("ref", lora)
    for m in model.modules():
        if type(m) is nn.Dropout:  # LoRA's; off in GRPO (grpo.disable_dropout)
            m.__class__, m.p = _FusedDropout, 0.0 if grpo else m.p
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.to(adapter_dtype)
    if not vision_grad:
        frozen_vision_without_autograd(model)
    return model.train()


def _logps(model, batch: dict, completion: int, outputs=("log_probs", "entropy")):
    """TRL 1.16's fused LM head (its Triton path): the backbone, then log-probs of the valid labels only."""
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    inner = model.get_base_model()
    with torch.autocast("cpu", dtype=torch.float16):
        hidden = inner.model(**batch, use_cache=False).last_hidden_state
        hidden = hidden[:, -completion - 1:-1].reshape(-1, hidden.shape[-1])  # = hidden[labels != -100]
        labels = batch["input_ids"][:, -completion:].reshape(-1)
        out = ChunkedLogProbFunction.apply(hidden, inner.lm_head.weight, None, labels, 1.0,
                                           _CHUNKED_LOGPROB_CHUNK_SIZE, None, 1.0, outputs)
    return [x.view(-1, completion) for x in out if x is not None]


def _tracker(*external):
    """``MemTracker`` without gradient hooks (frozen parameters take none; the accumulated gradients count as
    gradients, new ones as backward temporaries) or per-module peaks (a loop over all modules at every op)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    class Tracker(MemTracker):
        def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
            return super()._track_module_params_and_buffers(module, install_grad_hooks=False)

        def _update_peak_stats(self, peak_state):
            for dev, snap in self._curr_mem_snap.items():
                if self._peak_mem.get(dev, 0) < snap["Total"]:
                    self._peak_mem[dev], self._peak_mem_snap[dev] = snap["Total"], dict(snap)

        def peak(self) -> dict:  # bytes at the peak: param buffer grad act temp opt oth total
            return {str(k).split(".")[-1].lower(): v for k, v in next(iter(self._peak_mem_snap.values())).items()}

    mt = Tracker()
    mt.track_external(*external)
    return mt


def trace(shape: Shape, grpo: bool, vision_grad: bool = False, adapter_dtype=torch.float32) -> dict:
    """Peak bytes per phase of one SFT step (``grpo=False``) or GRPO micro-step: ``ref_pass`` (no grad, "ref"
    adapter; TRL's old-policy pass, when it makes one, is the same), ``forward_backward``, ``optimizer_step``."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from transformers import masking_utils
    from trl.kernels import chunked_logprob

    noop, out = (lambda *a, **k: None), {"shape": asdict(shape), "grpo": grpo, "vision_in_autograd": vision_grad}
    skip = masking_utils._ignore_causal_mask_sdpa if shape.padded else (lambda *a, **k: True)  # full rows: no mask
    with FakeTensorMode(allow_non_fake_inputs=True), mock.patch.object(chunked_logprob, "_forward_tile", noop), \
            mock.patch.object(chunked_logprob, "_backward_tile", noop), \
            mock.patch.object(masking_utils, "_ignore_causal_mask_sdpa", skip), \
            mock.patch.dict(os.environ, {"TRANSFORMERS_DISABLE_TORCH_CHECK": "1"}):  # checks that read values
        model = build(grpo, vision_grad, adapter_dtype)
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=1e-5)
        for p in trainable:
            p.grad = torch.zeros_like(p)
        opt.step()  # steady state: AdamW states exist; the previous micro-step's gradients accumulate
        r, k, n = shape.rows, shape.images, shape.prompt_tokens + shape.completion
        batch = dict(input_ids=torch.zeros(r, n, dtype=torch.long), attention_mask=torch.ones(r, n, dtype=torch.long),
                     pixel_values=torch.empty(r * k, 1, 3, 384, 384, dtype=torch.float16),
                     image_sizes=torch.full((r * k, 2), 384), batch_num_images=[k] * r)
        inputs = [v for v in batch.values() if torch.is_tensor(v)]
        out["base_4bit_bytes"] = sum(t.nbytes for m in model.modules() if isinstance(m, NF4Linear)
                                     for t in (m.weight, *m.buffers(recurse=False)))
        out["trainable_params"], out["phases"] = sum(p.numel() for p in trainable), {}
        if grpo:
            with _tracker(model, opt, *inputs) as mt, torch.no_grad():
                model.base_model.set_adapter("ref")
                ref = _logps(model, batch, shape.completion)[0]
                model.base_model.set_adapter("default")
            out["phases"]["ref_pass"] = mt.peak()
        with _tracker(model, opt, *inputs) as mt:
            if grpo:  # TRL's loss_type "grpo" (per-sequence token mean), beta 0.04, epsilon 0.2
                logps = _logps(model, batch, shape.completion)[0]
                ratio, adv = torch.exp(logps - logps.detach()), logps.new_zeros(r, 1)
                kl = torch.exp(ref - logps) - (ref - logps) - 1
                loss = (-torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv) + 0.04 * kl).mean(-1).mean()
            else:  # SFT: completion-only negative log-likelihood
                loss = -_logps(model, batch, shape.completion, ("log_probs", "entropy", "is_top1"))[0].mean()
            loss.backward()
        out["phases"]["forward_backward"] = mt.peak()
        with _tracker(model, opt) as mt:
            opt.step()
            opt.zero_grad(set_to_none=True)
        out["phases"]["optimizer_step"] = mt.peak()
    out["peak_bytes"] = max(p["total"] for p in out["phases"].values())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Trace the GPU memory of a preset's SFT step and GRPO micro-step.")
    ap.add_argument("--preset", default="colab-t4")
    for flag in ("prompt-tokens", "images", "completion", "rows"):
        ap.add_argument(f"--{flag}", type=int, help="default: from the preset")
    ap.add_argument("--stage", choices=("sft", "grpo"), action="append", help="default: both")
    ap.add_argument("--no-padding", action="store_true", help="rows all full length: no attention mask")
    ap.add_argument("--vision-grad", action="store_true", help="run the frozen vision tower inside autograd")
    ap.add_argument("--adapter-dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument("--json", help="write the full results here")
    a = ap.parse_args(argv)
    shapes = preset_shapes(a.preset, a.prompt_tokens, a.images, a.completion, a.rows)
    runs = [trace(Shape(**{**asdict(shapes[st]), "padded": not a.no_padding}), st == "grpo", a.vision_grad,
                  getattr(torch, a.adapter_dtype)) for st in a.stage or ("sft", "grpo")]
    cols = ("param", "buffer", "grad", "act", "temp", "opt", "oth", "total")
    print(f"{'GiB at each phase peak':52}" + "".join(f"{c:>7}" for c in cols))
    for run, s in ((r, r["shape"]) for r in runs):
        run["name"] = (f"{'grpo' if run['grpo'] else 'sft'} {s['rows']}x({s['prompt_tokens']}+{s['completion']}) "
                       f"{s['images']}img{'' if s['padded'] else ' nopad'}{' tower-grad' if a.vision_grad else ''}")
        for phase, snap in run["phases"].items():
            print(f"{run['name'] + ' ' + phase:52}" + "".join(f"{snap[c] / GiB:7.2f}" for c in cols))
    print(json.dumps({r["name"]: {p: round(v["total"] / GiB, 3) for p, v in r["phases"].items()} for r in runs}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(runs, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
