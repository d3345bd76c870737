"""Which kernels the policy's 4-bit layers and attention run on, where the defaults would fail or fall back.

- CPU: bitsandbytes' packed AVX512-BF16 format for 4-bit weights takes only some layer shapes
  (:func:`unpackable_4bit_layers`, :func:`keep_unpackable_layers_unpacked`).
- GPU without flash SDPA (a T4): grouped-query attention must reach SDPA with its KV heads repeated, or SDPA
  falls back to the O(L^2) math kernel (:func:`sdpa_repeat_kv`).
Used by ``erv_lab.policy.load_base``; tested in tests/test_qlora_cpu.py and tests/test_gpu_path.py.
"""
from __future__ import annotations


def unpackable_4bit_layers(model) -> list[str]:
    """The ``Linear4bit`` layers of ``model`` that bitsandbytes' packed CPU format cannot take.

    On a CPU with AVX512-BF16, bitsandbytes (>= 0.49) repacks a 4-bit weight the first time its layer runs
    without gradients (eval, ``generate``); the repacking reshapes the block scales to ``(out, in // 64)`` and
    needs ``in_features`` a multiple of the 64-value block and ``out_features`` a multiple of 32, else it raises
    (``shape '[32, 0]' is invalid``). This applies bitsandbytes' own repacking function (plain torch) to a copy
    of every 4-bit weight, so the answer is the same on every CPU, with or without those instructions.
    Returns ``"name (in->out)"`` per failing layer; ``[]`` when bitsandbytes has no packed format.
    """
    import copy

    try:
        from bitsandbytes.functional import _convert_weight_packed_for_cpu
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return []
    bad = []
    for name, m in model.named_modules():
        state = getattr(getattr(m, "weight", None), "quant_state", None)
        if not isinstance(m, Linear4bit) or state is None or getattr(state, "packing_format_for_cpu", False):
            continue
        try:
            _convert_weight_packed_for_cpu(m.weight.data.clone(), copy.deepcopy(state))
        except (RuntimeError, AssertionError, ValueError):
            bad.append(f"{name} ({m.in_features}->{m.out_features})")
    return bad


def keep_unpackable_layers_unpacked(model) -> list[str]:
    """CPU only: the layers :func:`unpackable_4bit_layers` names keep bitsandbytes' ordinary 4-bit kernel
    instead of crashing in the packed one. They stay 4-bit NF4; only the CPU kernel differs. Every layer of a
    real VLM's language model and of the test suite's tiny 4-bit models packs (a test checks it); SigLIP's MLP
    (4304 inputs) does not. Returns the layers switched, after a warning that names them."""
    import warnings

    bad = unpackable_4bit_layers(model)
    names = {b.split(" ")[0] for b in bad}
    for name, m in model.named_modules():
        if name in names and hasattr(m, "support_avx512bf16_for_cpu"):
            m.support_avx512bf16_for_cpu = False
    if bad:
        warnings.warn(f"{len(bad)} 4-bit layer(s) cannot use bitsandbytes' packed AVX512-BF16 CPU format and keep "
                      f"the ordinary 4-bit kernel: {', '.join(bad[:6])}{' ...' if len(bad) > 6 else ''}",
                      stacklevel=2)
    return bad


def sdpa_repeat_kv(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention with grouped-query KV heads repeated *before* the call.

    With no attention mask, transformers passes GQA to SDPA as ``enable_gqa=True``; the flash kernel takes it,
    but a T4 (sm75) has no flash SDPA and its memory-efficient kernel has no GQA, so SDPA falls back to the math
    kernel, which materialises the (L x L) scores: about 20 GB per tensor for 8 rollouts of 6,650 tokens in fp32.
    Repeating the KV heads costs (groups - 1) x the KV activations of one layer at a time, so it is done only
    where transformers would pass ``enable_gqa`` (its own ``use_gqa_in_sdpa``) for a query of several tokens.
    With a mask transformers already repeats the heads itself, or packs them into the query for a one-token
    decode step, and is left to do so; a one-token decode step without a mask packs the query heads the same
    way here (:func:`_decode_one_token`) instead of repeating the whole KV cache at every generated token.
    Registered with transformers as ``attn_implementation="sdpa_repeat_kv"`` (``policy.attn_implementation``),
    together with SDPA's mask function (:func:`register_attention`): without it transformers builds no mask
    for this name, and a left-padded row attends to its padding."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward, use_gqa_in_sdpa

    groups = getattr(module, "num_key_value_groups", 1)
    if groups == 1 or not use_gqa_in_sdpa(attention_mask, key, value):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if query.shape[2] == 1:
        return _decode_one_token(query, key, value, groups, kwargs.get("scaling"), kwargs.get("dropout", 0.0))
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    return sdpa_attention_forward(_OneGroup(module), query, key, value, attention_mask, **kwargs)


def _decode_one_token(query, key, value, groups: int, scaling=None, dropout: float = 0.0):
    """One query token, no mask: the ``groups`` query heads that share a KV head become that head's queries,
    (B, H, 1, D) -> (B, H / groups, groups, D), so attention reads the KV cache once per KV head without
    copying it (no causal mask is needed: the one query sees every cached key). Returns (B, 1, H, D), as
    transformers' attention functions do."""
    import torch

    b, h, _, d = query.shape
    packed = query.reshape(b, h // groups, groups, d)
    out = torch.nn.functional.scaled_dot_product_attention(packed, key, value, dropout_p=dropout, scale=scaling)
    return out.reshape(b, h, 1, d).transpose(1, 2).contiguous(), None


class _OneGroup:
    """The attention module as transformers' SDPA function sees it, with its KV heads already repeated."""

    num_key_value_groups = 1

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)


def register_attention() -> None:
    """Make ``attn_implementation="sdpa_repeat_kv"`` known to transformers (idempotent): the attention function,
    and SDPA's own mask function under the same name (transformers builds masks only for names its
    ``AttentionMaskInterface`` knows, and returns none at all for others)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register("sdpa_repeat_kv", sdpa_repeat_kv)
    AttentionMaskInterface.register("sdpa_repeat_kv", ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
