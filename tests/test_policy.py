"""The tiny LLaVA policy: tokenizer, processor, build/save/reload, QLoRA on CPU, decoding, vision warm-up,
frame mosaics."""
import dataclasses

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


# ---------------------------------------------------------------- frame mosaics (policy.frames_per_image)
MOSAIC_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255),
                  (128, 64, 0), (255, 255, 255)]


def _solid_clip(side=16):
    from PIL import Image

    return {"frames": [Image.new("RGB", (side, side), c) for c in MOSAIC_COLOURS],
            "spectrogram": Image.new("L", (side, side), 77), "prosody": "pitch high"}


@pytest.mark.parametrize("side", [16, 10])  # 16: tiles pasted as they are; 10: resized to 16-px tiles
def test_two_2x2_mosaics_hold_the_8_frames_in_reading_order(side):
    ex = _solid_clip(side)
    images = P.clip_images(ex, "spectrogram", frames_per_image=4, image_size=32)
    assert len(images) == 3 and all(im.size == (32, 32) for im in images[:2])
    centres = [(8, 8), (24, 8), (8, 24), (24, 24)]  # (x, y): top-left, top-right, bottom-left, bottom-right
    seen = [images[m].getpixel(xy) for m in range(2) for xy in centres]
    assert seen == MOSAIC_COLOURS  # frame i of the clip is cell i % 4 of mosaic i // 4
    for m in range(2):  # every pixel of a quadrant is its frame's colour
        px = images[m].load()
        for q, (x0, y0) in enumerate([(0, 0), (16, 0), (0, 16), (16, 16)]):
            assert {px[x, y] for x in range(x0, x0 + 16) for y in range(y0, y0 + 16)} == {MOSAIC_COLOURS[4 * m + q]}
    assert images[2].getpixel((0, 0)) == (77, 77, 77)  # the spectrogram stays the last image, untouched


def test_mosaic_count_grid_and_a_partial_last_mosaic():
    assert [P.mosaic_grid(k) for k in (1, 2, 3, 4, 6, 8, 9)] == [(1, 1), (2, 1), (2, 2), (2, 2), (3, 2), (3, 3), (3, 3)]
    ex = _solid_clip()
    assert len(P.clip_images(ex, "none", frames_per_image=4)) == 2
    assert len(P.clip_images(ex, "spectrogram", frames_per_image=8)) == 2
    three = P.clip_images(ex, "none", frames_per_image=3, image_size=32)  # frames 0-2, 3-5, 6-7 (one black cell)
    assert len(three) == 3 and three[2].getpixel((24, 8)) == (255, 255, 255)
    assert three[2].getpixel((24, 24)) == three[2].getpixel((8, 24)) == (0, 0, 0)
    two = P.clip_images(ex, "none", frames_per_image=2, image_size=32)  # 2x1, centred: black bands above and below
    assert two[0].getpixel((8, 16)) == MOSAIC_COLOURS[0] and two[0].getpixel((24, 16)) == MOSAIC_COLOURS[1]
    assert two[0].getpixel((8, 2)) == (0, 0, 0)
    assert P.clip_images(ex, "none", frames_per_image=4)[0].size == (32, 32)  # no size given: 16-px tiles
    with pytest.raises(ValueError, match="frames_per_image"):
        P.clip_images(ex, frames_per_image=0)


def test_default_is_one_image_per_frame_as_before(clips, pcfg):
    ex = clips[0]
    before = [im.convert("RGB").tobytes() for im in list(ex["frames"]) + [ex["spectrogram"]]]
    assert pcfg.frames_per_image == 1 and load_config("cpu-tiny").policy.frames_per_image == 1
    for images in (P.clip_images(ex), P.clip_images(ex, "spectrogram"), P.clip_images(ex, pcfg),
                   P.clip_images(ex, "spectrogram", frames_per_image=1, image_size=384)):
        assert [im.tobytes() for im in images] == before
    assert P.prompt_messages(ex) == P.prompt_messages(ex, pcfg) == [{"role": "user", "content": [
        *[{"type": "image"}] * (len(ex["frames"]) + 1), {"type": "text", "text": P.INSTRUCTION}]}]


def test_the_policy_config_threads_the_mosaics_through(make_clips):
    t4 = load_config("colab-t4").policy
    assert t4.frames_per_image == 4
    ex = make_clips(n_per_class=1, num_frames=8, size=24)[0]
    images = P.clip_images(ex, t4)
    assert len(images) == 3 and images[0].size == (t4.image_size, t4.image_size)
    messages = P.prompt_messages(ex, t4)
    assert [part["type"] for part in messages[0]["content"]] == ["image"] * 3 + ["text"]
    prosody = dataclasses.replace(t4, audio="prosody")
    assert len(P.clip_images(ex, prosody)) == 2 and P.prompt_text(ex, prosody).startswith("Audio: ")


def test_generate_takes_the_policy_config_as_audio(processor, clips, pcfg, monkeypatch):
    """Evaluation passes ``audio=cfg.policy`` (stages.policy_generator): the mosaics reach ``generate``."""
    seen, real = [], P.clip_images
    monkeypatch.setattr(P, "clip_images", lambda ex, audio="spectrogram", *a, **kw: seen.append(
        len(real(ex, audio, *a, **kw))) or real(ex, audio, *a, **kw))
    model = P.build_tiny_policy(pcfg, processor)
    two = dataclasses.replace(pcfg, frames_per_image=2)  # 2 frames -> 1 mosaic + the spectrogram
    assert len(P.generate(model, processor, clips.select(range(2)), max_new_tokens=2, audio=two)) == 2
    assert seen and set(seen) == {2}


def test_training_rows_take_the_policy_config(make_clips):
    """``train.policy_dataset(ds, cfg.policy, ...)`` builds SFT/GRPO rows with the preset's mosaics."""
    t4 = load_config("colab-t4").policy
    rows = T.policy_dataset(make_clips(n_per_class=1, num_frames=8, size=24).select(range(2)), t4, with_target=True)
    assert [len(r) for r in rows["images"]] == [3, 3] and rows[0]["prompt"][0]["content"] == P.INSTRUCTION


def test_image_count_matches_the_images_without_building_them(make_clips):
    ex = make_clips(n_per_class=1, num_frames=8)[0]
    for pcfg in (load_config("cpu-tiny").policy, load_config("colab-t4").policy):
        for audio in (pcfg, "spectrogram", "prosody", "none"):
            assert P.image_count(ex, audio) == len(P.clip_images(ex, audio))
    assert P.image_count(ex, "spectrogram", 4) == 3 and P.image_count(ex, "none", 4) == 2
