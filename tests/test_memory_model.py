"""The traced memory model of colab-t4's training steps (erv_lab.memory_model): fake tensors, no GPU, no weights.

Three traces of the real model at the real shapes, about 40 s on 2 CPU cores (fake tensors allocate nothing).
`python -m erv_lab.memory_model` prints the same figures per phase.
"""
import pytest

from erv_lab import memory_model as M
from erv_lab.config import load_config
from erv_lab.standins import HUB_SIZES

pytestmark = pytest.mark.slow

T4 = load_config("colab-t4")
BOUND_GIB = 14  # the goal: a step's allocated peak under 14 GiB, below a 16 GB T4's 15 GiB cap


@pytest.fixture(scope="module")
def shapes():
    return M.preset_shapes("colab-t4")


@pytest.fixture(scope="module")
def sft(shapes):
    return M.trace(shapes["sft"], grpo=False)


@pytest.fixture(scope="module")
def grpo(shapes):
    return M.trace(shapes["grpo"], grpo=True)


def test_shapes_come_from_the_preset(shapes):
    images = T4.data.num_frames // getattr(T4.policy, "frames_per_image", 1) + 1  # + the spectrogram
    assert shapes["grpo"].images == shapes["sft"].images == images
    assert shapes["grpo"].prompt_tokens == images * M.IMAGE_TOKENS + M.TEXT_TOKENS
    assert shapes["grpo"].completion == T4.grpo.max_completion_length
    assert shapes["grpo"].rows == T4.grpo.micro_batch and shapes["sft"].rows == T4.sft.batch_size


def test_colab_t4_sft_step_and_grpo_micro_step_stay_under_the_bound(sft, grpo):
    for run, phases in ((sft, {"forward_backward", "optimizer_step"}),
                        (grpo, {"ref_pass", "forward_backward", "optimizer_step"})):
        assert set(run["phases"]) == phases
        peak = run["phases"]["forward_backward"]
        assert run["peak_bytes"] == peak["total"] < BOUND_GIB * M.GiB, run["shape"]
        assert peak["act"] > 0 and peak["opt"] > 0 and peak["grad"] > 0  # every kind of memory was seen


def _hand_count_4bit():
    """Bytes of the 4-bit base by hand: half a byte per weight plus a uint8 scale per block of 64 (the second
    level of double quantisation and the code tables, ~0.1 %, left out). Every Linear but the tied LM head."""
    text, vision = (HUB_SIZES[M.MODEL][k] for k in ("text", "vision"))
    h, inter = text["hidden_size"], text["intermediate_size"]
    kv = h // text["num_attention_heads"] * text["num_key_value_heads"]
    lm = [(h, h), (h, kv), (h, kv), (h, h), (h, inter), (h, inter), (inter, h)] * text["num_hidden_layers"]
    v, vi = vision["hidden_size"], vision["intermediate_size"]
    tower = [(v, v)] * 4 * vision["num_hidden_layers"] + [(v, vi), (vi, v)] * vision["num_hidden_layers"]
    projector = [(v, h), (h, h)]
    return sum(i * o / 2 + i * o / 64 for i, o in lm + tower + projector), lm


def test_traced_4bit_base_and_adapter_match_the_hand_count(grpo):
    hand, lm = _hand_count_4bit()
    assert abs(grpo["base_4bit_bytes"] - hand) / hand < 0.02, (grpo["base_4bit_bytes"], hand)
    assert grpo["trainable_params"] == sum(T4.policy.lora_r * (i + o) for i, o in lm)  # LoRA on the LM only
    # persistent: 4-bit base + fp16 embeddings, vision patch/positions, norms; the adapter, its grads, AdamW
    params = grpo["phases"]["optimizer_step"]["param"]
    assert grpo["base_4bit_bytes"] < params < grpo["base_4bit_bytes"] + 0.35 * M.GiB


def test_the_model_sees_nine_images_with_the_tower_in_autograd(grpo):
    """The sanity check that the trace can fail: 9 images with the frozen tower inside autograd (the state before
    the mosaics and frozen_vision_without_autograd) must trace bigger than 3 images with it out, by at least
    the SigLIP layer inputs gradient checkpointing keeps (26 layers x 36 images x 729 x 1152, fp16 or more)."""
    big = M.trace(M.Shape(9 * M.IMAGE_TOKENS + M.TEXT_TOKENS, 9, T4.grpo.max_completion_length, 4), grpo=True,
                  vision_grad=True)
    vision = HUB_SIZES[M.MODEL]["vision"]
    kept = vision["num_hidden_layers"] * 4 * 9 * 729 * vision["hidden_size"] * 2
    assert big["peak_bytes"] > grpo["peak_bytes"] + kept, (big["peak_bytes"], grpo["peak_bytes"], kept)
    assert big["peak_bytes"] < 2 * BOUND_GIB * M.GiB  # and still a sane number
