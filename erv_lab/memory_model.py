"""GPU memory of colab-t4's training steps, traced at the real shapes on a CPU with no weights.

Method: under ``FakeTensorMode`` every tensor has a shape, a dtype and a (fake) CUDA device but no data, so
the real ``LlavaOnevisionForConditionalGeneration`` (``standins.HUB_SIZES``: Qwen2-0.5B + SigLIP-so400m,
fp16) is built and run for nothing; ``torch.distributed._tools.mem_tracker.MemTracker`` (a dispatch mode)
adds up the bytes of every storage while it lives and keeps the peak, split into parameters, buffers,
gradients, activations (forward), temporaries (backward) and optimizer states. What runs is the real code:
transformers' model, masks and gradient checkpointing (non-reentrant, as transformers 5 sets it), peft's
LoRA r 16 on the language model's q/k/v/o/gate/up/down (trainable, in bf16 as TRL 1.16 casts them on a
quantised base; a frozen fp32 "ref" copy in GRPO), TRL 1.16's fused LM head (``ChunkedLogProbFunction``:
log-probs of the completion tokens only, in 4,096 x 32,768 tiles, never the full logits), CUDA autocast
(fp16, as accelerate wraps the forward) and ``torch.optim.AdamW``. Three stand-ins:

- bitsandbytes' 4-bit layers cannot take fake tensors. :class:`NF4Linear` holds what ``Linear4bit`` holds
  (NF4 blocks of 64, double quantisation: ``in*out/2`` packed bytes, a uint8 scale per block, an fp32 scale
  per 256 blocks, the code tables) and, as bitsandbytes 0.50 does past ~1.5k rows on CUDA, dequantises to an
  fp16 temporary (``out x in``) and its fp32 block scales for each matmul, forward and backward; it saves
  nothing for backward. Every ``nn.Linear`` but the (tied) LM head is 4-bit, as transformers quantises them.
- SDPA on a T4 (no flash kernel) is the memory-efficient kernel; fake CUDA tensors cannot ask the device,
  so :func:`_t4_attention` calls ``aten._scaled_dot_product_efficient_attention`` itself, with the KV heads
  repeated first (``policy.attn_implementation: sdpa_repeat_kv``) and a boolean mask turned into SDPA's
  additive fp16 bias padded to 16 columns. Under fake tensors transformers always builds the 4-D mask (it
  cannot look at the padding), as it does on a GPU whenever rows differ in length.
- TRL's Triton kernels fold each logits tile in on-chip memory: the torch fallback folds are replaced by
  no-ops, so the tile buffer is counted and the fallback's fp32 copies of it are not.

Not modelled: the CUDA context and cuBLAS/cuDNN workspaces (~0.3-0.5 GB outside ``memory_allocated``), the
caching allocator's rounding and fragmentation (``memory_reserved`` - ``memory_allocated``), kernels'
private workspaces, rollout generation (its KV cache: ``rows x tokens x 24 layers x 2 x 128 x 2`` bytes,
~0.14 GB at 4 x 2,832), GradScaler bookkeeping, the batch's host tensors. The figures are
``torch.cuda.max_memory_allocated`` estimates, not measurements. ``python -m erv_lab.memory_model --help``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

GiB = 2 ** 30
MODEL = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
IMAGE_TOKENS = 730  # per image of a multi-image prompt: 27 x 27 SigLIP patches + LLaVA-OneVision's newline
IMAGE_TOKEN_ID, VIDEO_TOKEN_ID = 151646, 151647
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass
class Shape:
    prompt_tokens: int  # text + image tokens of one prompt
    images: int  # images per prompt
    completion: int  # completion tokens per row
    rows: int  # rows per forward/backward


class _Dequant(torch.autograd.Function):
    """``x @ W.t()`` with ``W`` dequantised to ``x.dtype`` for the matmul only, as bitsandbytes' MatMul4Bit."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        return x @ layer.dequantised(x.dtype).t()

    @staticmethod
    def backward(ctx, grad):
        return grad @ ctx.layer.dequantised(grad.dtype), None


class NF4Linear(nn.Linear):
    """Same-shaped stand-in for ``bitsandbytes.nn.Linear4bit`` (NF4, blocksize 64, double quantisation)."""

    def __init__(self, linear: nn.Linear):
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        n = self.in_features * self.out_features
        blocks = math.ceil(n / 64)
        kw = dict(device=linear.weight.device)
        self.weight = nn.Parameter(torch.empty((n + 1) // 2, 1, dtype=torch.uint8, **kw), requires_grad=False)
        self.bias = linear.bias
        for name, size, dtype in (("absmax", blocks, torch.uint8), ("absmax2", math.ceil(blocks / 256), torch.float32),
                                  ("code", 16, torch.float32), ("code2", 256, torch.float32), ("offset", 1, torch.float32)):
            self.register_buffer(name, torch.empty(size, dtype=dtype, **kw))

    def dequantised(self, dtype):
        scales = torch.empty(self.absmax.shape, dtype=torch.float32, device=self.weight.device) + self.offset
        return torch.empty(self.out_features, self.in_features, dtype=dtype, device=scales.device)

    def forward(self, x):
        out = _Dequant.apply(x, self)
        return out if self.bias is None else out + self.bias.to(out.dtype)


def nf4_bytes(in_features: int, out_features: int) -> int:
    """Hand count of one 4-bit layer's storage, as :class:`NF4Linear` (and bitsandbytes) hold it."""
    blocks = math.ceil(in_features * out_features / 64)
    return (in_features * out_features + 1) // 2 + blocks + 4 * math.ceil(blocks / 256) + 4 * (16 + 256 + 1)


def _t4_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **_):
    """What ``sdpa_repeat_kv`` + SDPA do on a T4: repeat KV heads, memory-efficient kernel, additive mask."""
    from transformers.integrations.sdpa_attention import repeat_kv

    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    bias = None
    if attention_mask is not None:  # SDPA: bool -> where(~mask, -inf, 0) in fp16, padded to 16 columns
        cols = attention_mask.shape[-1]
        bias = torch.where(attention_mask.logical_not(), float("-inf"), 0.0).to(query.dtype)
        bias = nn.functional.pad(bias, (0, -cols % 16))[..., :cols].expand(-1, query.shape[1], -1, -1)
    causal = bool(query.shape[2] > 1 and attention_mask is None and (is_causal if is_causal is not None
                                                                      else getattr(module, "is_causal", True)))
    out = torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, bias, torch.is_grad_enabled(), dropout, causal, scale=scaling)[0]
    return out.transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def _triton_folds():
    """TRL's Triton logits folds work on-chip: stand their torch fallbacks (fp32 tile copies) by no-ops."""
    from trl.kernels import chunked_logprob as C

    saved = C._forward_tile, C._backward_tile
    C._forward_tile = C._backward_tile = lambda *a, **k: None
    try:
        yield
    finally:
        C._forward_tile, C._backward_tile = saved


class _FP32LayerNorm(nn.LayerNorm):
    """CUDA autocast runs ``layer_norm`` in fp32 (CPU autocast does not): cast in, fp32 out, as on the GPU."""

    def forward(self, x):
        return nn.functional.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps)


def build(grpo: bool, vision_grad: bool = False, adapter_dtype=torch.bfloat16):
    """The QLoRA policy as TRL trains it, on fake CUDA tensors (call under ``FakeTensorMode``)."""
    from unittest import mock

    from peft import LoraConfig, get_peft_model
    from transformers import (AttentionInterface, LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              Qwen2Config, SiglipVisionConfig)
    from transformers.initialization import no_init_weights
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    from erv_lab.standins import HUB_SIZES

    AttentionInterface.register("t4_sdpa", _t4_attention)
    AttentionMaskInterface.register("t4_sdpa", sdpa_mask)
    sizes = HUB_SIZES[MODEL]
    cfg = LlavaOnevisionConfig(vision_config=SiglipVisionConfig(**sizes["vision"]).to_dict(),
                               text_config=Qwen2Config(**sizes["text"]).to_dict(), image_token_index=IMAGE_TOKEN_ID,
                               video_token_index=VIDEO_TOKEN_ID, vision_feature_select_strategy="full",
                               vision_feature_layer=-1, tie_word_embeddings=True)
    with no_init_weights():  # random init reads values; fake tensors have none
        model = LlavaOnevisionForConditionalGeneration._from_config(cfg, dtype=torch.float16,
                                                                    attn_implementation="t4_sdpa")
    model.tie_weights()
    for mod in list(model.modules()):  # bitsandbytes' choice: every Linear but the LM head (tied to the embeddings)
        for name, child in list(mod.named_children()):
            if type(child) is nn.Linear and child is not model.lm_head:
                setattr(mod, name, NF4Linear(child))
            elif type(child) is nn.LayerNorm:
                child.__class__ = _FP32LayerNorm
    model.activation_checkpointing_enable({"use_reentrant": False})  # also hooks embeddings' outputs to require grad
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, bias="none", target_modules=LORA_TARGETS,
                      task_type="CAUSAL_LM")
    # peft moves its layers to their base layer's device: fake parameters cannot be swapped (weakrefs), and
    # every tensor here is on the one (fake) device already
    to = nn.Module.to
    with mock.patch.object(
            nn.Module, "to", lambda m, *a, **k: m if torch._C._nn._parse_to(*a, **k)[1] is None else to(m, *a, **k)):
        model = get_peft_model(model, lora)
        if grpo:
            model.add_adapter("ref", lora)
    if grpo:  # TRL 1.16 continuing an adapter adds a frozen "ref" copy (fp32) for the KL term; no dropout
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    for p in model.parameters():  # TRL casts a quantised model's trainable (LoRA) parameters to bf16
        if p.requires_grad:
            p.data = p.data.to(adapter_dtype)
    if not vision_grad:  # the frozen vision tower outside autograd
        tower = model.get_base_model().model.vision_tower
        tower.forward = torch.no_grad()(tower.forward)
    model.train()
    return model


def _batch(shape: Shape) -> dict:
    r, k, length = shape.rows, shape.images, shape.prompt_tokens + shape.completion
    if True:
        return dict(input_ids=torch.zeros(r, length, dtype=torch.long),
                    attention_mask=torch.ones(r, length, dtype=torch.long),
                    pixel_values=torch.empty(r * k, 1, 3, 384, 384, dtype=torch.float16),
                    image_sizes=torch.full((r * k, 2), 384, dtype=torch.long), batch_num_images=[k] * r)


def _logps(model, batch: dict, completion: int, outputs=("log_probs", "entropy")):
    """TRL 1.16's ``add_fused_lm_head`` forward (Triton path): backbone, then log-probs of the valid labels
    only (here every completion token: rows of full length, the worst case), in tiles."""
    from trl.kernels.chunked_logprob import ChunkedLogProbFunction
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    inner = model.get_base_model()
    with torch.autocast("cpu", dtype=torch.float16):  # accelerate's fp16 autocast
        hidden = inner.model(**batch, use_cache=False).last_hidden_state
        hidden = hidden[:, -completion - 1:-1].reshape(-1, hidden.shape[-1])  # = hidden[mask] of the compact path
        targets = batch["input_ids"][:, -completion:].reshape(-1)
        out = ChunkedLogProbFunction.apply(hidden, inner.lm_head.weight, None, targets, 1.0,
                                           _CHUNKED_LOGPROB_CHUNK_SIZE, None, 1.0, outputs)
    rows = batch["input_ids"].shape[0]
    return [None if x is None else x.view(rows, completion) for x in out]


def _tracker(*external):
    """``MemTracker`` without its gradient hooks (they cannot go on frozen parameters: the accumulated gradients
    are tracked as such from the start, new ones as backward temporaries) and without per-module peaks (a loop
    over every module at every op: 90 % of the time)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    class Tracker(MemTracker):
        def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
            return super()._track_module_params_and_buffers(module, install_grad_hooks=False)

        def _update_peak_stats(self, peak_state):
            for dev, snap in self._curr_mem_snap.items():
                if self._peak_mem.get(dev, 0) < snap["Total"]:
                    self._peak_mem[dev], self._peak_mem_snap[dev] = snap["Total"], dict(snap)

    mt = Tracker()
    mt.track_external(*external)
    return mt


def _peak(mt) -> dict:
    snap = next(iter(mt.get_tracker_snapshot("peak").values()))
    return {str(k).split(".")[-1].lower().replace("_memreftype", ""): v for k, v in snap.items()}


def trace(shape: Shape, grpo: bool, vision_grad: bool = False, adapter_dtype=torch.bfloat16) -> dict:
    """Peak bytes of one SFT step (``grpo=False``) or one GRPO micro-step, per phase, and the parameter bytes."""
    import os

    from torch._subclasses.fake_tensor import FakeTensorMode
    os.environ["TRANSFORMERS_DISABLE_TORCH_CHECK"] = "1"  # transformers' value checks need real data
    result = {"shape": asdict(shape), "grpo": grpo, "vision_in_autograd": vision_grad}
    with FakeTensorMode(allow_non_fake_inputs=True), _triton_folds():
        model = build(grpo, vision_grad, adapter_dtype)
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=1e-5)
        for p in trainable:  # steady state: AdamW states exist, the previous micro-step's gradients accumulate
            p.grad = torch.zeros_like(p)
        opt.step()
        batch = _batch(shape)
        inputs = [v for v in batch.values() if torch.is_tensor(v)]
        result["base_4bit_bytes"] = sum(b.nbytes for m in model.modules() if isinstance(m, NF4Linear)
                                        for b in (m.weight, *m.buffers(recurse=False)))
        result["param_bytes"] = sum(p.nbytes for p in model.parameters()) + sum(b.nbytes for b in model.buffers())
        phases = {}
        if grpo:  # reference log-probs (and the old policy's, when TRL needs them): no grad, "ref" adapter
            mt = _tracker(model, opt, *inputs)
            with mt, torch.no_grad():
                model.base_model.set_adapter("ref")
                ref = _logps(model, batch, shape.completion)[0]
                model.base_model.set_adapter("default")
                for p in trainable:
                    p.requires_grad_(True)
            phases["ref_pass"] = _peak(mt)
        mt = _tracker(model, opt, *inputs)
        with mt:
            if grpo:  # TRL's GRPO loss ("grpo": per-sequence token mean), beta 0.04, eps 0.2
                logps, entropy = _logps(model, batch, shape.completion)[:2]
                ratio = torch.exp(logps - logps.detach())
                adv = logps.new_zeros(shape.rows, 1)
                kl = torch.exp(ref - logps) - (ref - logps) - 1
                per_token = -torch.min(ratio * adv, torch.clamp(ratio, 0.8, 1.2) * adv) + 0.04 * kl
                loss = per_token.mean(-1).mean()
            else:
                loss = -_logps(model, batch, shape.completion, ("log_probs", "entropy", "is_top1"))[0].mean()
            loss.backward()
        phases["forward_backward"] = _peak(mt)
        mt = _tracker(model, opt)
        with mt:
            opt.step()
            opt.zero_grad(set_to_none=True)
        phases["optimizer_step"] = _peak(mt)
    result["phases"] = phases
    result["peak_bytes"] = max(p["total"] for p in phases.values())
    return result
