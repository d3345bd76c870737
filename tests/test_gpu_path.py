"""CPU guards of the colab-t4 code path (a T4: fp16, no flash SDPA, 16 GB), on tiny LLaVA-class stand-ins.

They fail if that path would run activations in fp32, hand SDPA grouped-query KV heads (which a T4's
memory-efficient kernel cannot take, so SDPA would fall back to the O(L^2) math kernel), or decode more rows
at once than the preset's evaluation batch.
"""
import dataclasses

import pytest
import torch

from erv_lab import evaluate as E
from erv_lab import policy as P
from erv_lab.config import load_config

T4 = load_config("colab-t4")


@pytest.fixture(scope="module")
def clips(make_clips):
    return make_clips(n_per_class=1)


@pytest.fixture
def sdpa_calls(monkeypatch):
    """Every call that reaches torch's SDPA: (query dtype, query heads, key heads, enable_gqa)."""
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, *a, **kw):
        calls.append((q.dtype, q.shape[1], k.shape[1], kw.get("enable_gqa", False)))
        if kw.get("enable_gqa"):
            return real(q, k, v, *a, **kw)
        return real(q.float(), k.float(), v.float(), *a, **kw).to(q.dtype)  # CPU: fp16 SDPA, computed in fp32

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return calls


def _tiny_4bit(tmp_path, clips, pcfg_overrides, qlora_tiny_llava):
    pcfg = dataclasses.replace(load_config("smoke").policy, load_in_4bit=True, lora_r=4, lora_alpha=8,
                               **qlora_tiny_llava, **pcfg_overrides)
    processor = P.build_processor(P.train_tokenizer(clips["rationale"]), 32)
    P.save_policy(P.build_tiny_policy(pcfg, processor), processor, tmp_path / "base",
                  {"kind": "tiny-llava", "image_size": 32})
    return P.with_lora(P.load_base(tmp_path / "base", pcfg), pcfg), processor


def _batch(processor, clips):
    ex = clips[0]
    text = processor.apply_chat_template(P.prompt_messages(ex), add_generation_prompt=True, tokenize=False)
    return processor(images=[P.clip_images(ex)], text=[text + ex["rationale"]], return_tensors="pt")


def test_the_preset_asks_for_the_t4_knobs():
    assert T4.policy.load_in_4bit and T4.policy.attn_implementation == "sdpa_repeat_kv"
    assert T4.grpo.gradient_checkpointing and T4.grpo.disable_dropout
    assert 0 < T4.grpo.micro_batch < T4.grpo.prompts_per_step * T4.grpo.num_generations
    assert T4.eval.batch_size <= 8


def test_qlora_activations_run_in_half_precision(monkeypatch, tmp_path, clips, qlora_tiny_llava, sdpa_calls):
    """With a GPU's half dtype (fp16 on a T4), every parameter that is not 4-bit or LoRA stays fp16, and so do
    the activations that reach attention (no prepare_model_for_kbit_training upcast)."""
    monkeypatch.setattr(P, "gpu_dtype", lambda: torch.float16)
    model, processor = _tiny_4bit(tmp_path, clips, {"attn_implementation": T4.policy.attn_implementation},
                                  qlora_tiny_llava)
    floats = {n: p.dtype for n, p in model.named_parameters() if p.is_floating_point() and "lora_" not in n}
    assert floats and set(floats.values()) == {torch.float16}, {n: d for n, d in floats.items() if d != torch.float16}
    batch = _batch(processor, clips)
    batch["pixel_values"] = batch["pixel_values"].half()
    model.train()
    loss = model(**batch, labels=batch["input_ids"]).loss
    assert torch.isfinite(loss)
    assert sdpa_calls and {c[0] for c in sdpa_calls} == {torch.float16}


def test_sdpa_never_receives_grouped_query_heads(tmp_path, clips, qlora_tiny_llava, sdpa_calls):
    model, processor = _tiny_4bit(tmp_path, clips, {"attn_implementation": T4.policy.attn_implementation},
                                  qlora_tiny_llava)
    model.eval()
    batch = _batch(processor, clips)
    with torch.no_grad():
        ours = model(**batch).logits
    assert sdpa_calls and all(q == k and not gqa for _, q, k, gqa in sdpa_calls)
    # the same function: transformers' own SDPA path (which passes GQA on) gives the same logits
    n = len(sdpa_calls)
    model.base_model.model.config._attn_implementation = "sdpa"
    for m in model.modules():
        if hasattr(m, "config") and hasattr(m.config, "_attn_implementation"):
            m.config._attn_implementation = "sdpa"
    with torch.no_grad():
        theirs = model(**batch).logits
    assert any(q != k or gqa for _, q, k, gqa in sdpa_calls[n:])  # the check can fail: GQA reaches SDPA here
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_evaluation_decodes_at_most_the_presets_batch(monkeypatch, tmp_path):
    seen = []

    def fake_generate(model, processor, examples, batch_size, **kw):
        seen.append(batch_size)
        return ["x"] * len(examples)

    monkeypatch.setattr(P, "load_policy", lambda path, pcfg=None: (None, None))
    monkeypatch.setattr(P, "generate", fake_generate)
    from erv_lab import stages

    gen, _ = stages.policy_generator(tmp_path, T4)
    examples = [{"clip_id": str(i)} for i in range(20)]
    rows = []
    out = E.decode_cached(lambda ex, *a, **k: rows.append(len(ex)) or gen(ex, *a, **k), examples,
                          tmp_path / "c.jsonl", temperature=0.0, top_p=1.0, seeds=[0], max_new_tokens=4,
                          batch_size=T4.eval.batch_size)
    assert len(out[0]) == 20 and max(rows) <= T4.eval.batch_size and set(seen) == {T4.eval.batch_size}


def test_grpo_generates_the_rollouts_in_micro_batches(tmp_path):
    args = __import__("erv_lab.train", fromlist=["grpo_args"]).grpo_args(T4, tmp_path)
    assert args.per_device_train_batch_size == T4.grpo.micro_batch and args.steps_per_generation == 1
    assert args.generation_batch_size == T4.grpo.micro_batch  # rollouts generated micro_batch at a time
    assert args.gradient_accumulation_steps * T4.grpo.micro_batch == T4.grpo.prompts_per_step * T4.grpo.num_generations
    assert args.loss_type == T4.grpo.loss_type and args.disable_dropout


@pytest.mark.gpu
def test_on_a_gpu_attention_runs_without_the_math_kernel(tmp_path, clips, qlora_tiny_llava):
    """Where CUDA is present: the colab-t4 path in fp16 with SDPA restricted to the memory-efficient kernel (a
    T4's only fused one). Handing GQA to SDPA there raises "No available kernel" instead of falling back."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model, processor = _tiny_4bit(tmp_path, clips, {"attn_implementation": T4.policy.attn_implementation},
                                  qlora_tiny_llava)
    batch = _batch(processor, clips).to("cuda")
    batch["pixel_values"] = batch["pixel_values"].half()
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]), torch.no_grad():
        assert torch.isfinite(model.eval()(**batch).logits).all()
