"""The policy: a LLaVA-class vision-language model, its processor, prompts and decoding (notebook 04).

CPU presets build a *tiny, randomly initialised* ``LlavaForConditionalGeneration`` (CLIP vision tower +
small Qwen2) with a byte-level BPE tokenizer trained locally, so the code path of the GPU presets
(processor, chat template, ``images`` column, LoRA / 4-bit NF4 QLoRA wiring) runs offline. GPU presets load
a pretrained Hub VLM instead. Video enters as a list of frames; audio as one more image (the log-mel
spectrogram) and/or prosody text. No model is trained here (only the local BPE tokenizer is fit): the tiny
model's vision warm-up, SFT and GRPO are ``erv_lab.train``; random-weight stand-ins shaped like the Hub models are ``erv_lab.standins``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from erv_lab.data import INSTRUCTION  # noqa: E402  the paper's instruction, defined once (data -> policy)
from erv_lab.kernels import keep_unpackable_layers_unpacked, register_attention

IMAGE_TOKEN = "<image>"
SPECIALS = ["<|pad|>", "<|im_start|>", "<|im_end|>", IMAGE_TOKEN]
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]  # ordinary tokens: decoding keeps them
# ChatML; a content list renders its image parts as <image> and its text parts verbatim.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PATCH_SIZE = 8


# ---------------------------------------------------------------- prompts and images
# ``audio`` below is an audio mode (spectrogram | prosody | none) or a PolicyConfig (``cfg.policy``), whose
# ``audio``, ``frames_per_image`` and ``image_size`` then fill the arguments left at None: passing ``cfg.policy``
# where ``cfg.policy.audio`` was passed threads the mosaic setting through (SFT/GRPO rows, ``generate``).
def _audio_mode(audio) -> str:
    return audio if isinstance(audio, str) else audio.audio


def prompt_text(example: dict, audio="spectrogram") -> str:
    """The paper's instruction; with ``audio="prosody"`` the clip's prosody description is prepended."""
    if _audio_mode(audio) == "prosody" and example.get("prosody"):
        return f"Audio: {example['prosody']}\n{INSTRUCTION}"
    return INSTRUCTION


def mosaic_grid(frames_per_image: int) -> tuple[int, int]:
    """``(columns, rows)`` of a mosaic of ``frames_per_image`` frames, as square as possible (columns first):
    1 -> 1x1, 2 -> 2x1, 3 and 4 -> 2x2, 5 and 6 -> 3x2, 9 -> 3x3."""
    cols = math.ceil(math.sqrt(frames_per_image))
    return cols, math.ceil(frames_per_image / cols)


def frame_mosaic(frames: Sequence, frames_per_image: int, side: int | None = None):
    """One square RGB image of ``side`` px tiling ``frames`` in reading order (left to right, then top to
    bottom) on the :func:`mosaic_grid` of ``frames_per_image``. Each frame is resized (bicubic) to a square tile
    of ``side // max(columns, rows)`` px, as the processor would squash it to a square; the grid is centred and
    cells without a frame stay black. ``side=None``: the frames' own size per tile (the processor resizes)."""
    from PIL import Image

    cols, rows = mosaic_grid(frames_per_image)
    if len(frames) > cols * rows:
        raise ValueError(f"{len(frames)} frames do not fit a {cols}x{rows} mosaic")
    side = side or max(cols, rows) * max(max(f.size) for f in frames)
    tile = side // max(cols, rows)
    x0, y0 = (side - cols * tile) // 2, (side - rows * tile) // 2
    canvas = Image.new("RGB", (side, side))
    for i, frame in enumerate(frames):
        r, c = divmod(i, cols)
        frame = frame.convert("RGB")
        if frame.size != (tile, tile):
            frame = frame.resize((tile, tile), Image.Resampling.BICUBIC)
        canvas.paste(frame, (x0 + c * tile, y0 + r * tile))
    return canvas


def clip_images(example: dict, audio="spectrogram", frames_per_image: int | None = None,
                image_size: int | None = None) -> list:
    """Frames of the clip, plus the spectrogram as one more image when the audio mode is ``spectrogram``.

    ``frames_per_image`` (default 1: one image per frame, exactly as before) > 1 tiles consecutive frames into
    :func:`frame_mosaic` images of ``image_size`` px: frames 0-3 -> mosaic 1, 4-7 -> mosaic 2 at 4, each 2x2 in
    reading order. A clip whose frame count it does not divide gets a last, partly black mosaic (the config
    rejects such settings). ``audio`` may be ``cfg.policy`` (see above)."""
    if not isinstance(audio, str):
        frames_per_image = frames_per_image if frames_per_image is not None else getattr(audio, "frames_per_image", 1)
        image_size = image_size if image_size is not None else getattr(audio, "image_size", None)
    k = 1 if frames_per_image is None else int(frames_per_image)
    if k < 1:
        raise ValueError(f"frames_per_image must be >= 1, got {frames_per_image!r}")
    frames = list(example["frames"])
    images = frames if k == 1 else [frame_mosaic(frames[i:i + k], k, image_size) for i in range(0, len(frames), k)]
    if _audio_mode(audio) == "spectrogram":
        images.append(example["spectrogram"])
    return [im.convert("RGB") for im in images]


def image_count(example: dict, audio="spectrogram", frames_per_image: int | None = None) -> int:
    """How many images :func:`clip_images` gives for ``example``, without building them (mosaics cost resizes)."""
    k = frames_per_image if frames_per_image is not None else \
        (1 if isinstance(audio, str) else getattr(audio, "frames_per_image", 1))
    return -(-len(example["frames"]) // max(int(k or 1), 1)) + (_audio_mode(audio) == "spectrogram")


def prompt_messages(example: dict, audio="spectrogram", frames_per_image: int | None = None) -> list[dict]:
    """Conversational prompt with one image placeholder per image of :func:`clip_images` (TRL fills them from
    ``images``). ``audio`` may be ``cfg.policy`` (see above)."""
    n = image_count(example, audio, frames_per_image)
    content = [{"type": "image"} for _ in range(n)] + [{"type": "text", "text": prompt_text(example, audio)}]
    return [{"role": "user", "content": content}]


# ---------------------------------------------------------------- tokenizer and processor
def train_tokenizer(corpus: Sequence[str], vocab_size: int = 1200):
    """Byte-level BPE trained on ``corpus`` in about a second, with a ChatML template.

    ``<think>``/``<answer>`` tags are added as *non-special* tokens, so ``skip_special_tokens`` keeps them.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(corpus) + [INSTRUCTION, "user\nassistant\n"], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>",
                                   bos_token=None, unk_token=None)
    fast.add_tokens([AddedToken(t, normalized=False, special=False) for t in TAG_TOKENS])
    fast.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN, "<|im_start|>"]})
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_processor(tokenizer, image_size: int):
    """``LlavaProcessor`` built in code: PIL CLIP image processor at ``image_size`` px, patch 8."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          image_token=IMAGE_TOKEN, chat_template=CHAT_TEMPLATE)


# ---------------------------------------------------------------- models
def build_tiny_policy(pcfg, processor, seed: int = 0):
    """A randomly initialised LLaVA: CLIP vision (``image_size`` px, patch 8) + Qwen2 text model.

    Image tokens per image = (image_size / 8)^2, e.g. 16 at 32 px. Parameters ~1 M at the cpu-tiny sizes.
    """
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, Qwen2Config

    tok = processor.tokenizer
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(hidden_size=pcfg.vision_hidden_size, intermediate_size=2 * pcfg.vision_hidden_size,
                              num_hidden_layers=pcfg.vision_layers, num_attention_heads=4,
                              image_size=pcfg.image_size, patch_size=PATCH_SIZE, projection_dim=pcfg.hidden_size)
    text = Qwen2Config(vocab_size=len(tok), hidden_size=pcfg.hidden_size, intermediate_size=2 * pcfg.hidden_size,
                       num_hidden_layers=pcfg.num_layers, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=2048, tie_word_embeddings=True,
                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids(
        IMAGE_TOKEN), vision_feature_layer=-1, vision_feature_select_strategy="default",
        projector_hidden_act="gelu", tie_word_embeddings=True)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model


def gpu_dtype() -> torch.dtype | None:
    """Half precision for this GPU: bf16 where the hardware has it (Ampere and later), fp16 on older cards such
    as Colab's T4 (torch would otherwise emulate bf16, slowly); ``None`` without a GPU (fp32 on CPU)."""
    if not torch.cuda.is_available():
        return None
    return torch.bfloat16 if torch.cuda.get_device_capability()[0] >= 8 else torch.float16  # bf16 units: sm_80+


def compute_dtype(pcfg=None) -> torch.dtype | None:
    """The dtype the policy computes in: ``policy.compute_dtype`` (``auto`` = :func:`gpu_dtype`); ``None``
    means fp32. ``float32`` is the fallback for a model that overflows in fp16 (``--set
    policy.compute_dtype=float32``: slower, and the activations take twice the memory)."""
    choice = getattr(pcfg, "compute_dtype", "auto") or "auto"
    if choice == "auto":
        return gpu_dtype()
    return getattr(torch, choice) if choice != "float32" and torch.cuda.is_available() else None


def precision_flags(pcfg=None) -> dict:
    """``bf16`` / ``fp16`` flags of the TRL configs, matching :func:`compute_dtype` (fp16 runs a loss scaler)."""
    dtype = compute_dtype(pcfg)
    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}


def bnb_config(pcfg=None):
    """4-bit NF4 quantisation (QLoRA). Compute in fp32 on CPU, in :func:`compute_dtype` on a GPU."""
    from transformers import BitsAndBytesConfig

    compute = compute_dtype(pcfg) or torch.float32
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def lora_config(pcfg):
    """LoRA on the language model's attention and MLP projections (the vision tower stays frozen)."""
    from peft import LoraConfig

    return LoraConfig(r=pcfg.lora_r, lora_alpha=pcfg.lora_alpha, lora_dropout=0.05, bias="none",
                      task_type="CAUSAL_LM",
                      target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)")


def load_base(path: str | Path, pcfg=None, device_map: Any = None):
    """Load a saved or Hub VLM, in 4-bit NF4 when ``pcfg.load_in_4bit`` (QLoRA), else fp32 (CPU) / half (GPU).

    The parameters that are not 4-bit stay in the compute dtype (half on a GPU): nothing is upcast to fp32.
    """
    from transformers import AutoModelForImageTextToText

    kw: dict = {}
    if pcfg is not None and getattr(pcfg, "attn_implementation", None):
        register_attention()
        kw["attn_implementation"] = pcfg.attn_implementation
    if pcfg is not None and pcfg.load_in_4bit:
        kw["quantization_config"] = bnb_config(pcfg)
        kw["device_map"] = device_map or ({"": 0} if torch.cuda.is_available() else {"": "cpu"})
        kw["dtype"] = kw["quantization_config"].bnb_4bit_compute_dtype
    elif torch.cuda.is_available():
        kw["dtype"] = compute_dtype(pcfg) or torch.float32
    model = AutoModelForImageTextToText.from_pretrained(str(path), **kw)
    if "quantization_config" in kw and not torch.cuda.is_available():
        keep_unpackable_layers_unpacked(model)  # the same outcome on CPUs with and without AVX512-BF16
    frozen_vision_without_autograd(model)
    return model


def _grad_off_when_frozen(module, args):
    if torch.is_grad_enabled() and not any(p.requires_grad for p in module.parameters()):
        module._erv_grad_was_on = True
        torch.set_grad_enabled(False)


def _grad_back_on(module, args, output):
    if module.__dict__.pop("_erv_grad_was_on", False):
        torch.set_grad_enabled(True)


def frozen_vision_without_autograd(model) -> None:
    """Run the vision tower, and the projector, without autograd whenever none of *their own* parameters train
    (checked at each call: a tower that trains, as in the tiny presets, is left alone).

    Without this, the hook that ``enable_input_require_grads`` puts on every input embedding (SigLIP's patch
    embedding too) makes the frozen tower's activations require grad: under gradient checkpointing it then
    keeps every layer's input and runs a backward pass that trains nothing (traced by ``erv_lab.memory_model``,
    estimates: +1.0 GiB at colab-t4's 3-image GRPO micro-step, +3.0 GiB with 9 images).
    Forward hooks, not a wrapped ``forward``, so copies and saved models carry nothing of it."""
    tower, proj = vision_tower(model)
    for module in (tower, proj):
        if not getattr(module, "_erv_autograd_hooks", False):
            module.register_forward_pre_hook(_grad_off_when_frozen)
            module.register_forward_hook(_grad_back_on, always_call=True)
            module._erv_autograd_hooks = True


def with_lora(model, pcfg):
    """Wrap ``model`` with a fresh LoRA adapter (``peft.get_peft_model``, what TRL does with ``peft_config=``).

    On a 4-bit base this is QLoRA *without* ``peft.prepare_model_for_kbit_training``: that helper casts every
    parameter that is not 4-bit to fp32, so every activation ran in fp32 (memory, and SDPA's fused kernels need
    half precision). Only the LoRA weights are fp32 (PEFT's default); the embeddings' outputs require grad so
    that gradient checkpointing works."""
    from peft import get_peft_model

    if getattr(model, "is_loaded_in_4bit", False):
        model.enable_input_require_grads()
    return get_peft_model(model, lora_config(pcfg))


def continue_adapter(path: str | Path, pcfg, trainable: bool = True):
    """A saved LoRA/QLoRA adapter on its (re-loaded, 4-bit when ``pcfg.load_in_4bit``) base; trainable by
    default: GRPO continues the SFT adapter instead of merging it into a full-precision copy and re-quantising."""
    from peft import PeftModel

    base = json.loads((Path(path) / "adapter_config.json").read_text())["base_model_name_or_path"]
    return PeftModel.from_pretrained(load_base(base, pcfg), str(path), is_trainable=trainable)


def hub_processor(name: str):
    """The processor shipped with a Hub VLM, padding on the left for generation. Needs Hub access."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(name)
    processor.tokenizer.padding_side = "left"
    return processor


def hub_policy(pcfg):
    """A pretrained Hub VLM (e.g. LLaVA-OneVision-Qwen2-0.5B) and its own processor. Needs Hub access."""
    return load_base(pcfg.model_name, pcfg), hub_processor(pcfg.model_name)


# ---------------------------------------------------------------- save / load
def save_policy(model, processor, path: str | Path, meta: dict | None = None) -> Path:
    """Save weights, processor and a ``policy.json`` note: full fine-tuning as is, LoRA merged into its
    full-precision base, a 4-bit QLoRA adapter as the adapter alone (GRPO and evaluation re-load its base in
    4-bit: no merge into a re-quantised copy, which would perturb the SFT result and write the whole model)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "peft_config") and not getattr(model, "is_loaded_in_4bit", False):
        model = model.merge_and_unload()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    (path / "policy.json").write_text(json.dumps(meta or {}, indent=2))
    return path


def load_processor(path: str | Path):
    """Reload a processor saved by :func:`save_policy` (rebuilt in code around the saved tokenizer)."""
    from transformers import AutoTokenizer

    path = Path(path)
    meta = json.loads((path / "policy.json").read_text()) if (path / "policy.json").exists() else {}
    if meta.get("kind", "tiny-llava") != "tiny-llava":
        return hub_processor(str(path))
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    return build_processor(tok, int(meta.get("image_size", 32)))


def load_policy(path: str | Path, pcfg=None):
    """``(model, processor)`` from a folder written by :func:`save_policy` or a trainer's ``final/``.

    A folder holding a PEFT adapter (``adapter_config.json``) is loaded on top of its base model.
    """
    path = Path(path)
    adapter = (path / "adapter_config.json").exists()
    model = continue_adapter(path, pcfg, trainable=False) if adapter else load_base(path, pcfg)
    model.eval()
    return model, load_processor(path)


def count_parameters(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


# ---------------------------------------------------------------- decoding
@torch.no_grad()
def generate(model, processor, examples: Sequence[dict], temperature: float = 0.0, top_p: float = 1.0,
             seed: int = 0, max_new_tokens: int = 96, audio: str = "spectrogram", batch_size: int = 16,
             prefixes: Sequence[str] | None = None) -> list[str]:
    """Decode one completion per example (``temperature == 0`` means greedy). Returns the raw text.

    ``examples`` are dataset rows with ``frames`` / ``spectrogram`` / ``prosody`` (see ``erv_lab.data``).
    ``prefixes`` (one per example) start the model's turn, e.g. ``"<think>...</think><answer>"`` to force the
    answer after a given rationale (``erv_lab.faithfulness``); the returned text continues it.
    """
    tok = processor.tokenizer
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    outs: list[str] = []
    for i in range(0, len(examples), batch_size):
        chunk = list(examples[i:i + batch_size]) if not hasattr(examples, "select") else \
            [examples[j] for j in range(i, min(i + batch_size, len(examples)))]
        texts = [processor.apply_chat_template(prompt_messages(ex, audio), add_generation_prompt=True,
                                               tokenize=False) for ex in chunk]
        if prefixes is not None:
            texts = [t + prefixes[i + k] for k, t in enumerate(texts)]
        images = [clip_images(ex, audio) for ex in chunk]
        batch = processor(images=images, text=texts, return_tensors="pt", padding=True).to(device)
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
        kw = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
        ids = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id, **kw)
        outs += tok.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    if was_training:
        model.train()
    return [o.strip() for o in outs]


def vision_tower(model):
    """The CLIP vision tower and projector of a (possibly PEFT-wrapped) LLaVA."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(inner, "model", inner)
    return inner.vision_tower, inner.multi_modal_projector


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
