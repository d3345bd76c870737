"""The tiny LLaVA policy: tokenizer, processor, build/save/reload, QLoRA on CPU, decoding, vision warm-up."""
import pytest
import torch

from erv_lab import policy as P
from erv_lab import train as T
from erv_lab.config import load_config

LABELS = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")


@pytest.fixture(scope="module")
def clips(make_clips):
    return make_clips()


@pytest.fixture(scope="module")
def processor(clips):
    return P.build_processor(P.train_tokenizer(clips["rationale"]), 32)


@pytest.fixture(scope="module")
def pcfg():
    return load_config("smoke").policy


def test_tags_are_ordinary_tokens_that_decoding_keeps(processor):
    tok = processor.tokenizer
    text = "<think>The face looks happy.</think>\n<answer>happy</answer>"
    ids = tok(text)["input_ids"]
    assert tok.convert_tokens_to_ids("<think>") in ids
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_chat_template_puts_one_image_block_per_image(processor, clips):
    ex = clips[0]
    text = processor.apply_chat_template(P.prompt_messages(ex, "spectrogram"), add_generation_prompt=True,
                                         tokenize=False)
    assert text.count(P.IMAGE_TOKEN) == len(ex["frames"]) + 1  # frames + spectrogram
    assert P.INSTRUCTION in text and text.endswith("<|im_start|>assistant\n")
    batch = processor(images=[P.clip_images(ex)], text=[text], return_tensors="pt")
    n_img = (batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids(P.IMAGE_TOKEN)).sum().item()
    assert n_img == 3 * (32 // P.PATCH_SIZE) ** 2  # 16 patch tokens per 32-px image
    assert batch["pixel_values"].shape == (3, 3, 32, 32)


def test_audio_modes_change_images_and_prompt(clips):
    ex = clips[0]
    assert len(P.clip_images(ex, "none")) == len(ex["frames"])
    assert len(P.clip_images(ex, "prosody")) == len(ex["frames"])
    assert P.prompt_text(ex, "prosody").startswith("Audio: pitch high")
    assert P.prompt_text(ex, "spectrogram") == P.INSTRUCTION


def test_tiny_policy_saves_and_reloads_with_identical_logits(processor, clips, pcfg, tmp_path):
    model = P.build_tiny_policy(pcfg, processor).eval()
    ex = clips[3]
    text = processor.apply_chat_template(P.prompt_messages(ex), add_generation_prompt=True, tokenize=False)
    batch = processor(images=[P.clip_images(ex)], text=[text], return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).logits
    P.save_policy(model, processor, tmp_path / "pol", {"kind": "tiny-llava", "image_size": 32})
    model2, proc2 = P.load_policy(tmp_path / "pol")
    batch2 = proc2(images=[P.clip_images(ex)], text=[text], return_tensors="pt")
    assert torch.equal(batch["input_ids"], batch2["input_ids"])
    with torch.no_grad():
        after = model2(**batch2).logits
    torch.testing.assert_close(before, after)


def test_qlora_forward_backward_on_cpu(processor, clips, pcfg, qlora_tiny_llava, tmp_path):
    import dataclasses

    from bitsandbytes.nn import Linear4bit

    q = dataclasses.replace(pcfg, load_in_4bit=True, lora_r=4, lora_alpha=8, **qlora_tiny_llava)
    P.save_policy(P.build_tiny_policy(q, processor), processor, tmp_path / "base",
                  {"kind": "tiny-llava", "image_size": 32})
    model = P.with_lora(P.load_base(tmp_path / "base", q), q)
    assert any(isinstance(m, Linear4bit) for m in model.modules())  # the base really is 4-bit NF4
    counts = P.count_parameters(model)
    assert 0 < counts["trainable"] < counts["total"]
    ex = clips[0]
    text = processor.apply_chat_template(P.prompt_messages(ex), add_generation_prompt=True, tokenize=False)
    batch = processor(images=[P.clip_images(ex)], text=[text + ex["rationale"]], return_tensors="pt")
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n and p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0
    assert P.generate(model, processor, clips.select(range(2)), max_new_tokens=4)  # decoding runs in 4-bit


def test_generate_is_seeded_and_greedy_is_deterministic(processor, clips, pcfg):
    model = P.build_tiny_policy(pcfg, processor)
    sub = clips.select(range(4))
    a = P.generate(model, processor, sub, temperature=1.0, top_p=1.0, seed=3, max_new_tokens=6)
    b = P.generate(model, processor, sub, temperature=1.0, top_p=1.0, seed=3, max_new_tokens=6)
    assert a == b and len(a) == 4 and all(isinstance(s, str) for s in a)
    assert P.generate(model, processor, sub, max_new_tokens=6) == P.generate(model, processor, sub, max_new_tokens=6)


def test_vision_warmup_learns_coloured_squares(processor, clips, pcfg):
    model = P.build_tiny_policy(pcfg, processor)
    out = T.warmup_vision(model, processor, clips, LABELS, epochs=15, lr=3e-3, batch_size=16)
    assert out["accuracy"] > 0.5  # chance is 1/7


@pytest.mark.parametrize("cuda,major,dtype,flags", [(False, 0, None, (False, False)),
                                                    (True, 7, torch.float16, (False, True)),  # T4 (sm_75)
                                                    (True, 8, torch.bfloat16, (True, False)),  # A100
                                                    (True, 9, torch.bfloat16, (True, False))])  # H100 / H200
def test_half_precision_follows_the_gpu(monkeypatch, cuda, major, dtype, flags):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 5 if major == 7 else 0))
    assert P.gpu_dtype() == dtype
    assert (P.precision_flags()["bf16"], P.precision_flags()["fp16"]) == flags
    if cuda:
        assert P.bnb_config().bnb_4bit_compute_dtype == dtype
