"""4-bit NF4 (QLoRA) on CPUs with and without bitsandbytes' packed AVX512-BF16 format.

bitsandbytes >= 0.49 repacks a ``Linear4bit`` weight when the layer first runs without gradients on a CPU that
reports AVX512-BF16; the repacking needs in_features % 64 == 0 and out_features % 32 == 0. These tests apply
bitsandbytes' own repacking function (plain torch) to every 4-bit layer, so they fail on any CPU when a tiny
4-bit model of the suite has a layer that would crash on such a machine.
"""
import dataclasses
import warnings

import pytest
import torch

from erv_lab import kernels as K
from erv_lab import policy as P
from erv_lab import standins as ST
from erv_lab.config import load_config

bnb_functional = pytest.importorskip("bitsandbytes.functional")
HAS_PACKED_CPU_PATH = bool(bnb_functional.has_avx512bf16())


@pytest.fixture(scope="module")
def clips(make_clips):
    return make_clips(n_per_class=1)


@pytest.fixture(scope="module")
def processor(clips):
    return P.build_processor(P.train_tokenizer(clips["rationale"]), 32)


def _tiny_llava_4bit(processor, tmp_path, **sizes):
    pcfg = dataclasses.replace(load_config("smoke").policy, load_in_4bit=True, lora_r=4, lora_alpha=8, **sizes)
    P.save_policy(P.build_tiny_policy(pcfg, processor), processor, tmp_path / "base",
                  {"kind": "tiny-llava", "image_size": 32})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = P.load_base(tmp_path / "base", pcfg)
    return model, pcfg, [str(w.message) for w in caught if "packed" in str(w.message)]


def _forward(model, processor, clips):
    ex = clips[0]
    text = processor.apply_chat_template(P.prompt_messages(ex), add_generation_prompt=True, tokenize=False)
    batch = processor(images=[P.clip_images(ex)], text=[text], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_the_check_flags_the_layers_too_small_to_pack(processor, tmp_path):
    # hidden 32 (the smoke preset): q_proj 32->32, k_proj 32->16, CLIP 32->32 ... none of them packs
    model, _, caught = _tiny_llava_4bit(processor, tmp_path, hidden_size=32, vision_hidden_size=32)
    bad = K.unpackable_4bit_layers(model)
    assert any("q_proj (32->32)" in b for b in bad) and any("k_proj (32->16)" in b for b in bad)
    assert caught and f"{len(bad)} 4-bit layer(s)" in caught[0]  # load_base said so, by count and name


def test_a_model_with_unpackable_layers_still_runs_in_eval_mode_on_every_cpu(processor, clips, tmp_path):
    """load_base keeps such layers on bitsandbytes' ordinary 4-bit kernel: no crash where the CPU has the
    packed path (the bug: shape '[32, 0]' is invalid), the same kernels where it has not."""
    model, _, _ = _tiny_llava_4bit(processor, tmp_path, hidden_size=32, vision_hidden_size=32)
    model.eval()
    assert torch.isfinite(_forward(model, processor, clips)).all()
    assert P.generate(model, processor, clips.select(range(2)), max_new_tokens=3)


def test_every_tiny_4bit_model_of_the_suite_fits_the_packed_cpu_format(processor, tmp_path, qlora_tiny_llava,
                                                                       tiny_onevision, onevision_processor_cls):
    from bitsandbytes.nn import Linear4bit

    llava, pcfg, caught = _tiny_llava_4bit(processor, tmp_path / "llava", **qlora_tiny_llava)
    assert sum(isinstance(m, Linear4bit) for m in llava.modules()) > 10  # LM, vision tower and projector
    assert K.unpackable_4bit_layers(llava) == [] and not caught
    base = ST.build_standin("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", tmp_path / "ov", ["a b c"] * 4,
                           sizes=tiny_onevision, processor_cls=onevision_processor_cls)
    onevision = P.load_base(base, pcfg)
    assert sum(isinstance(m, Linear4bit) for m in onevision.modules()) > 10
    assert K.unpackable_4bit_layers(onevision) == []


def test_the_real_language_model_sizes_pack():
    """Every 4-bit layer of the colab-t4 policy's language model fits the packed format (by its rule)."""
    t = ST.HUB_SIZES["llava-hf/llava-onevision-qwen2-0.5b-ov-hf"]["text"]
    head = t["hidden_size"] // t["num_attention_heads"]
    shapes = [(t["hidden_size"], t["hidden_size"]), (t["hidden_size"], head * t["num_key_value_heads"]),
              (t["hidden_size"], t["intermediate_size"]), (t["intermediate_size"], t["hidden_size"])]
    assert all(i % 64 == 0 and o % 32 == 0 for i, o in shapes)


@pytest.mark.skipif(not HAS_PACKED_CPU_PATH, reason="this CPU has no AVX512-BF16: bitsandbytes never packs here")
def test_where_the_cpu_has_it_the_packed_path_really_runs_and_agrees(processor, clips, tmp_path, qlora_tiny_llava):
    from bitsandbytes.nn import Linear4bit

    model, _, _ = _tiny_llava_4bit(processor, tmp_path, **qlora_tiny_llava)
    model.train()  # with gradients possible and training mode: bitsandbytes' ordinary kernel
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    with torch.enable_grad():
        ex = clips[0]
        text = processor.apply_chat_template(P.prompt_messages(ex), add_generation_prompt=True, tokenize=False)
        batch = processor(images=[P.clip_images(ex)], text=[text], return_tensors="pt")
        batch["pixel_values"].requires_grad_(True)
        reference = model(**batch).logits.detach()
    model.eval()
    packed = _forward(model, processor, clips)
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    assert all(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)
    # the packed kernel computes in bf16: same function, bf16 rounding
    torch.testing.assert_close(packed, reference, atol=0.05 * reference.abs().max().item(), rtol=0.05)
