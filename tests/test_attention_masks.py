"""Left padding changes nothing: a row decoded in a padded batch equals the same row alone, for every attention
implementation a preset uses (transformers' default SDPA, eager, and the colab-t4 ``sdpa_repeat_kv``).

``sdpa_repeat_kv`` once reached transformers without a mask function of its name, so transformers built no
mask at all and a left-padded row attended to its padding (0.23 off in the logits on a tiny LLaVA).
"""
import dataclasses
from pathlib import Path

import pytest
import torch

from erv_lab import policy as P
from erv_lab.config import load_config

PRESETS = sorted(p.stem for p in (Path(P.__file__).parent / "configs").glob("*.yaml"))
IMPLEMENTATIONS = sorted({load_config(name).policy.attn_implementation or "sdpa" for name in PRESETS} | {"eager"})


@pytest.fixture(scope="module")
def clips(make_clips):
    return make_clips(n_per_class=1)


@pytest.fixture(scope="module")
def saved(clips, tmp_path_factory):
    pcfg = load_config("smoke").policy
    processor = P.build_processor(P.train_tokenizer(clips["rationale"]), 32)
    folder = tmp_path_factory.mktemp("tiny") / "base"
    model = P.build_tiny_policy(pcfg, processor)
    assert model.config.text_config.num_key_value_heads < model.config.text_config.num_attention_heads  # GQA
    P.save_policy(model, processor, folder, {"kind": "tiny-llava", "image_size": 32})
    return folder, pcfg, processor


def _model(saved, implementation):
    folder, pcfg, _ = saved
    return P.load_base(folder, dataclasses.replace(pcfg, attn_implementation=implementation)).eval()


def _rows(processor, clips):
    """Two prompts of different lengths: the shorter one is left-padded in the batch."""
    texts, images = [], []
    for ex, extra in ((clips[0], "The brows are low and the mouth is pressed. " * 3), (clips[1], "")):
        texts.append(processor.apply_chat_template(P.prompt_messages(ex), add_generation_prompt=True, tokenize=False)
                     + extra)
        images.append(P.clip_images(ex))
    return texts, images


def test_every_preset_attention_is_covered():
    assert "sdpa_repeat_kv" in IMPLEMENTATIONS and "sdpa" in IMPLEMENTATIONS


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_left_padded_row_equals_the_same_row_alone(saved, clips, implementation):
    _, _, processor = saved
    model = _model(saved, implementation)
    texts, images = _rows(processor, clips)
    batch = processor(images=images, text=texts, return_tensors="pt", padding=True)
    assert (batch["attention_mask"] == 0).any()  # the check can fail: one row really is padded
    with torch.no_grad():
        padded = model(**batch).logits[:, -1]
        for i in range(2):
            alone = processor(images=[images[i]], text=[texts[i]], return_tensors="pt")
            torch.testing.assert_close(padded[i], model(**alone).logits[0, -1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("padded", [False, True])
def test_sdpa_repeat_kv_decodes_as_plain_sdpa(saved, clips, padded):
    """Greedy decoding, one token at a time after the prompt (the packed one-token path without a mask, the
    masked path with left padding): the same scores as transformers' SDPA."""
    _, _, processor = saved
    texts, images = _rows(processor, clips)
    if not padded:
        texts, images = texts[:1], images[:1]
    batch = processor(images=images, text=texts, return_tensors="pt", padding=True)
    scores = {}
    for implementation in ("sdpa", "sdpa_repeat_kv"):
        out = _model(saved, implementation).generate(**batch, max_new_tokens=6, do_sample=False,
                                                     output_scores=True, return_dict_in_generate=True)
        scores[implementation] = torch.stack(out.scores)
    torch.testing.assert_close(scores["sdpa_repeat_kv"], scores["sdpa"], atol=1e-4, rtol=1e-4)


def test_the_one_token_path_packs_the_query_heads_instead_of_repeating_the_cache(monkeypatch):
    """q_len 1, no mask: SDPA sees KV heads only (no copy of the cache), and the result is the GQA result."""
    from erv_lab.kernels import sdpa_repeat_kv

    class Attn:
        num_key_value_groups, is_causal, training = 3, True, False

    torch.manual_seed(0)
    q, k, v = torch.randn(2, 6, 1, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    seen = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda q_, k_, v_, **kw: seen.append((q_.shape, k_.shape)) or real(q_, k_, v_, **kw))
    out, _ = sdpa_repeat_kv(Attn(), q, k, v, None, scaling=None, dropout=0.0)
    assert seen == [(torch.Size([2, 2, 3, 8]), torch.Size([2, 2, 5, 8]))]
    expected = real(q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1)).transpose(1, 2)
    torch.testing.assert_close(out, expected)
