"""Typed configuration: one dataclass per part of the paper, presets as short YAML diffs.

Every default is written once, here, with a ``help`` string. A preset file in ``erv_lab/configs/<name>.yaml``
lists only what differs from these defaults (nanoGPT style). ``load_config("cpu-tiny")`` returns a
``Config``; notebooks receive the preset *name* through their parameters cell and call the same function;
the CLI builds the same object from YAML plus ``--set section.field=value`` overrides.

This module does not run anything: it only describes runs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from erv_lab.paths import CONFIG_DIR, runs_root


def _f(default: Any, help: str, **kw: Any) -> Any:  # noqa: A002 - mirrors dataclass/argparse naming
    """A dataclass field with a help string (mutable defaults go through default_factory)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class DataConfig:
    source: Any = _f("synthetic", "synthetic | dfew | mafw | folder: where clips come from; a list (e.g. [mafw, "
                                  "dfew], as the paper trains) trains on all of them, with root a map "
                                  "{source: folder}, and evaluation reports each on its own test fold")
    layout: str = _f("dfew", "label set and on-disk layout of synthetic clips: dfew (7 classes) | mafw (11)")
    root: Any = _f(None, "root of a real dataset copy (DFEW/MAFW/folder), or {source: root} for several sources; "
                         "None = generate synthetic clips")
    fold: int = _f(5, "evaluation fold 1..5 (the paper reports fold 5)")
    clips_per_class: int = _f(40, "synthetic clips generated per class (train + test)")
    seed: int = _f(0, "seed of the synthetic generator")
    difficulty: float = _f(0.5, "0 = obvious cues, 1 = hard (weak cues, occluders, noise)")
    frame_size: int = _f(112, "side of the synthetic video frames in pixels")
    frames_per_clip: int = _f(16, "frames written per synthetic clip")
    fps: int = _f(10, "frame rate of the synthetic clips")
    num_frames: int = _f(8, "frames sampled per clip for the policy (the paper uses 8)")
    face_crop: bool = _f(False, "crop faces with OpenCV's Haar cascade before sampling")
    drift_rate: float = _f(0.33, "share of cold-start rationales that drift (random + class-conditional)")
    class_drift: dict = _f(
        {"fear": 0.6, "disgust": 0.6, "sad": 0.6},
        "per-class probability that a rationale drifts in the class's typical direction",
    )


@dataclass
class VerifierConfig:
    kind: str = _f("tfidf", "tfidf (CPU default, n-gram + logistic regression) | roberta (GPU/Hub presets)")
    model_name: str = _f("roberta-base", "Hub id used by kind=roberta")
    max_train: int | None = _f(None, "cap on GoEmotions training rows (None = all 43,410)")
    epochs: int = _f(3, "fine-tuning epochs for transformer verifiers")
    learning_rate: float = _f(2e-5, "fine-tuning learning rate for transformer verifiers")
    batch_size: int = _f(64, "batch size for training/scoring")
    threshold: float = _f(0.1, "tau: a label enters a sentence's set when its probability exceeds it")
    top_k: int = _f(2, "at most this many labels per sentence (top by probability)")
    judge: str = _f("zeroshot", "headline judge of EEA/FCR/EPC, independent of the reward by construction: "
                                "zeroshot (MiniLM vs one label-word prototype per label, fit on nothing; "
                                "offline) | llm (the paper's prompt, OpenAI-compatible endpoint) | hf (the "
                                "paper's prompt, a local transformers causal LM)")


@dataclass
class RewardConfig:
    rewards: list = _f(["format", "accuracy", "explanation"], "reward names from erv_lab.rewards.REWARDS (ERV arm)")
    weights: list = _f([1.0, 1.0, 1.0], "one weight per reward; the paper sums them with equal weights")
    variant: str = _f("sentence", "explanation reward variant: sentence | sentence_with_neutral | paragraph | consistency")
    strict_format: bool = _f(False, "deviation from the paper: exactly one <think> and one <answer>, no nested tags")
    anti_stuffing: bool = _f(False, "deviation from the paper: repeated / bare-keyword sentences earn no credit")


@dataclass
class PolicyConfig:
    kind: str = _f("tiny-llava", "tiny-llava (random init, built locally) | hub (a pretrained VLM)")
    model_name: str | None = _f(None, "Hub id of the pretrained VLM for kind=hub")
    image_size: int = _f(32, "side of the frames fed to the vision tower")
    hidden_size: int = _f(128, "tiny model: text hidden size")
    num_layers: int = _f(4, "tiny model: text transformer layers")
    vision_hidden_size: int = _f(96, "tiny model: vision tower hidden size")
    vision_layers: int = _f(2, "tiny model: vision tower layers")
    audio: str = _f("spectrogram", "how the policy hears: spectrogram (one extra image) | prosody (text) | none")
    frames_per_image: int = _f(1, "frames tiled into one mosaic image (erv_lab.policy.clip_images): 1 = one image "
                                   "per frame; 4 = 2x2 mosaics at image_size px (8 frames -> 2 images). Must "
                                   "divide data.num_frames")
    load_in_4bit: bool = _f(False, "QLoRA: load the base model in 4-bit NF4 with bitsandbytes")
    lora_r: int = _f(0, "LoRA rank; 0 trains the full model")
    lora_alpha: int = _f(16, "LoRA alpha")
    vision_warmup_epochs: int = _f(3, "epochs warming the vision tower up as a clip classifier (frames + spectrogram)")
    freeze_vision: bool = _f(False, "freeze the vision tower during SFT/GRPO (keeps warmed-up features)")
    compute_dtype: str = _f("auto", "auto (bf16 on Ampere and later, fp16 on older GPUs such as a T4, fp32 on CPU) | "
                                    "float32 (the fallback for a model that overflows in fp16) | float16 | "
                                    "bfloat16")
    attn_implementation: str | None = _f(None, "attention kernel of a kind=hub model: None = transformers' choice; "
                                               "sdpa_repeat_kv = SDPA with the KV heads repeated first (a T4's "
                                               "memory-efficient kernel has no GQA: without it SDPA falls back to "
                                               "the O(L^2) math kernel)")


@dataclass
class SFTConfig:
    epochs: float = _f(3.0, "cold-start SFT epochs (paper: 10)")
    learning_rate: float = _f(1e-3, "SFT learning rate (paper: 2e-5 for a pretrained model)")
    batch_size: int = _f(16, "per-device SFT batch size")
    warmup_ratio: float = _f(0.03, "linear warmup share (paper: 3 %)")
    max_length: int = _f(512, "max tokens per SFT example")
    seed: int | None = _f(None, "seed of the tiny model's init, the vision warm-up and SFT (None: grpo.seed, as "
                                "the shipped runs were made; scripts/seed_variation.py varies grpo.seed)")
    logging_steps: int | None = _f(None, "log every N SFT steps (None: grpo.logging_steps, at most 10)")
    audio_ablation: bool = _f(False, "notebook 04 also trains an SFT model without audio and compares greedy test "
                                     "accuracy per class (one more SFT run; make reference ships it)")


@dataclass
class GRPOConfig:
    max_steps: int = _f(150, "GRPO optimisation steps per arm (-1: train for num_train_epochs instead)")
    num_train_epochs: float = _f(2.0, "epochs over the GRPO prompts when max_steps is -1 (paper: 2)")
    learning_rate: float = _f(1e-4, "GRPO learning rate (paper: 1e-6 full fine-tuning)")
    beta: float = _f(0.04, "KL coefficient against the SFT model (paper: 0.04)")
    num_generations: int = _f(8, "G: completions sampled per prompt (paper: 4)")
    prompts_per_step: int = _f(4, "distinct prompts per optimisation step")
    temperature: float = _f(1.0, "rollout temperature (paper: 1.0)")
    max_completion_length: int = _f(96, "max new tokens per completion (paper: 512)")
    micro_batch: int = _f(0, "completions generated and trained on per pass (0: all prompts_per_step x G at "
                             "once); a multiple of G. Smaller needs less GPU memory: the rollouts are generated "
                             "micro_batch at a time (TRL steps_per_generation=1) and the gradients accumulate, so "
                             "the optimisation step still sees prompts_per_step x G completions")
    gradient_checkpointing: bool = _f(False, "recompute activations during backward: less GPU memory, slower")
    disable_dropout: bool = _f(False, "turn dropout off in the policy (and reference) during GRPO, as TRL advises")
    degenerate_lesson: bool = _f(False, "notebook 05 also trains the reward-hacking lesson run (the recipe without "
                                        "the guards: lazy format check, no anti-stuffing, no KL, the paper's loss, "
                                        "10x the lr; train.degenerate_config); otherwise it shows the shipped one")
    grounding_ablation: bool = _f(False, "notebook 07 also trains and evaluates the grounding-reward ablation arm "
                                         "(the ERV arm + the grounding reward, beyond the paper; synthetic clips "
                                         "only; train.grounding_config); otherwise it shows the shipped one")
    loss_type: str = _f("dapo", "TRL loss normalisation: grpo = per-sequence token mean (the paper), dapo = "
                                "token-level over the batch (TRL's default), dr_grpo, bnpo")
    multi_objective_aggregation: str = _f("sum_then_normalize", "how TRL combines the weighted rewards into one advantage: "
                                          "sum_then_normalize (GRPO, the paper: sum, then normalise within the group) or "
                                          "normalize_then_sum (GDPO: normalise each reward within the group, then sum)")
    seed: int = _f(0, "seed shared by both arms")
    logging_steps: int = _f(10, "log every N steps")
    save_steps: int = _f(50, "checkpoint every N steps (runs resume from the last one)")


@dataclass
class EvalConfig:
    max_clips: int | None = _f(None, "cap on evaluated test clips (None = the whole fold)")
    temperature: float = _f(0.3, "headline protocol: sampling temperature (paper: 0.3)")
    top_p: float = _f(0.9, "headline protocol: nucleus sampling (paper: 0.9)")
    seeds: list = _f([0, 1, 2], "sampling seeds averaged in the headline protocol (>= 3)")
    greedy: bool = _f(True, "also report greedy decoding")
    bootstrap: int = _f(1000, "bootstrap resamples for 95 % intervals")
    max_new_tokens: int = _f(128, "max new tokens at evaluation")
    batch_size: int = _f(192, "rows per generate() call at evaluation (the KV cache of a batch must fit the GPU)")
    extra_judges: list = _f([], "more independent judges scored beside the headline: gemma (the paper's prompt "
                                "answered offline by Gemma 3 270M base, multiple-choice log-likelihood; needs "
                                "erv-lab[judge]; about 0.2-1 s per rationale on 2 cores)")


SECTIONS = {
    "data": DataConfig,
    "verifier": VerifierConfig,
    "reward": RewardConfig,
    "policy": PolicyConfig,
    "sft": SFTConfig,
    "grpo": GRPOConfig,
    "eval": EvalConfig,
}


TRACKERS = ("tensorboard", "trackio", "wandb", "none")  # what Config.report_to may name
TOP_LEVEL = ("description", "device", "report_to")  # settings outside a section (--set report_to=[...] too)


@dataclass
class Config:
    preset: str = "default"
    description: str = ""
    device: str = "auto"  # auto | cpu | cuda
    report_to: str | list[str] = "tensorboard"  # where the trainers log their curves (transformers' report_to):
    # tensorboard (local, offline: `tensorboard --logdir <run folder>`) | trackio (local store, `pip install
    # "erv-lab[trackio]"`: `trackio show --project erv-lab-<preset>`) | wandb | none, or a list: [tensorboard, trackio]
    data: DataConfig = field(default_factory=DataConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        problems = []
        if self.data.layout not in ("dfew", "mafw"):
            problems.append(f"data.layout must be dfew or mafw, got {self.data.layout!r}")
        sources = self.data.source if isinstance(self.data.source, list) else [self.data.source]
        if isinstance(self.data.source, list):
            if not sources or len(set(sources)) != len(sources) or not set(sources) <= {"dfew", "mafw", "folder"}:
                problems.append(f"a list data.source holds distinct real sources (dfew|mafw|folder), got {sources!r}")
            elif not isinstance(self.data.root, dict) or set(self.data.root) != set(sources):
                problems.append(f"data.source={sources!r} needs data.root as {{source: folder}} for each of them")
        elif self.data.source not in ("synthetic", "dfew", "mafw", "folder"):
            problems.append(f"data.source must be synthetic|dfew|mafw|folder, got {self.data.source!r}")
        elif self.data.source != "synthetic" and not self.data.root:
            problems.append(f"data.source={self.data.source!r} needs data.root (your licensed copy)")
        if not 1 <= self.data.fold <= 5:
            problems.append(f"data.fold must be in 1..5, got {self.data.fold}")
        if not 0.0 <= self.data.drift_rate <= 1.0:
            problems.append("data.drift_rate must be in [0, 1]")
        from erv_lab.rewards import REWARDS, VARIANTS  # light: labels + numpy; a misspelt reward fails here, not after SFT

        unknown = [n for n in self.reward.rewards if n not in REWARDS]
        if unknown:
            problems.append(f"reward.rewards has unknown name(s) {unknown}; valid: {', '.join(REWARDS)}")
        if "grounding" in self.reward.rewards and self.data.source != "synthetic":
            problems.append("the grounding reward reads the cue list only synthetic clips record; "
                            f"data.source={self.data.source!r} has none: leave it out of reward.rewards")
        if self.reward.variant not in VARIANTS:
            problems.append(f"reward.variant must be one of {', '.join(VARIANTS)}, got {self.reward.variant!r}")
        if self.policy.kind not in ("tiny-llava", "hub"):
            problems.append(f"policy.kind must be tiny-llava|hub, got {self.policy.kind!r}")
        if self.policy.kind == "hub" and not self.policy.model_name:
            problems.append("policy.kind=hub needs policy.model_name (a Hub id or a local folder)")
        from erv_lab.verifier import TRAINABLE  # light: numpy + labels

        if self.verifier.kind not in TRAINABLE:
            problems.append(f"verifier.kind must be {'|'.join(TRAINABLE)}, got {self.verifier.kind!r}")
        if self.policy.audio not in ("spectrogram", "prosody", "none"):
            problems.append(f"policy.audio must be spectrogram|prosody|none, got {self.policy.audio!r}")
        fpi = self.policy.frames_per_image
        if not isinstance(fpi, int) or isinstance(fpi, bool) or fpi < 1 or self.data.num_frames % fpi:
            problems.append(f"policy.frames_per_image must be an integer >= 1 that divides data.num_frames "
                            f"({self.data.num_frames}), so that every mosaic holds as many frames; got {fpi!r}")
        if len(self.reward.rewards) != len(self.reward.weights):
            problems.append("reward.weights needs one weight per reward in reward.rewards")
        if self.grpo.num_generations < 2:
            problems.append("grpo.num_generations must be >= 2 (a group needs a spread)")
        if self.grpo.micro_batch and self.grpo.micro_batch % self.grpo.num_generations:
            problems.append(f"grpo.micro_batch ({self.grpo.micro_batch}) must be a multiple of "
                            f"grpo.num_generations ({self.grpo.num_generations}): a group is generated together")
        if self.grpo.multi_objective_aggregation not in ("sum_then_normalize", "normalize_then_sum"):
            problems.append("grpo.multi_objective_aggregation must be sum_then_normalize|normalize_then_sum, got "
                            f"{self.grpo.multi_objective_aggregation!r}")
        if self.grpo.loss_type not in ("grpo", "dapo", "dr_grpo", "bnpo"):
            problems.append(f"grpo.loss_type must be grpo|dapo|dr_grpo|bnpo, got {self.grpo.loss_type!r}")
        if not set(self.eval.extra_judges) <= {"gemma"}:
            problems.append(f"eval.extra_judges may hold: gemma; got {self.eval.extra_judges!r}")
        if self.eval.batch_size < 1:
            problems.append("eval.batch_size must be >= 1")
        if self.policy.compute_dtype not in ("auto", "float32", "float16", "bfloat16"):
            problems.append(f"policy.compute_dtype must be auto|float32|float16|bfloat16, got "
                            f"{self.policy.compute_dtype!r}")
        if self.policy.attn_implementation not in (None, "eager", "sdpa", "sdpa_repeat_kv"):
            problems.append("policy.attn_implementation must be null|eager|sdpa|sdpa_repeat_kv")
        if not 0.0 < self.verifier.threshold < 1.0:
            problems.append("verifier.threshold must be in (0, 1)")
        if self.verifier.top_k < 1:
            problems.append("verifier.top_k must be >= 1")
        if self.policy.load_in_4bit and self.policy.lora_r <= 0:
            problems.append("policy.load_in_4bit (QLoRA) needs policy.lora_r > 0")
        if len(self.eval.seeds) < 1:
            problems.append("eval.seeds needs at least one seed")
        trackers = [self.report_to] if isinstance(self.report_to, str) else list(self.report_to or [])
        if not set(trackers) <= set(TRACKERS) or ("none" in trackers and len(trackers) > 1):
            problems.append(f"report_to must be tensorboard|trackio|wandb|none or a list of the first three, got "
                            f"{self.report_to!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append("device must be auto|cpu|cuda")
        if problems:
            raise ValueError(f"invalid config {self.preset!r}:\n  - " + "\n  - ".join(problems))

    @property
    def trackers(self) -> list[str]:
        """``report_to`` as the list transformers takes: ``[]`` for none, ``["tensorboard", "trackio"]``, ..."""
        names = [self.report_to] if isinstance(self.report_to, str) else list(self.report_to)
        return [n for n in names if n != "none"]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def list_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _coerce(value: str) -> Any:
    """Parse a --set value the way YAML would (numbers, booleans, lists, null)."""
    return yaml.safe_load(value)


def _apply(section_obj: Any, values: dict, where: str) -> None:
    known = {f.name for f in fields(section_obj)}
    for key, val in values.items():
        if key not in known:
            raise ValueError(f"unknown setting {where}.{key}; valid: {', '.join(sorted(known))}")
        default = getattr(section_obj, key)
        if isinstance(default, float) and isinstance(val, (str, int)) and not isinstance(val, bool):
            try:  # YAML 1.1 reads `2e-3` (no dot) as a string; a float field takes it as the number it is
                val = float(val)
            except ValueError:
                raise ValueError(f"{where}.{key} must be a number, got {val!r}") from None
        setattr(section_obj, key, val)


def build_config(raw: dict, preset: str = "custom") -> Config:
    """Build a Config from a nested dict shaped like a preset file."""
    raw = dict(raw or {})
    top = {k: raw.pop(k) for k in TOP_LEVEL if k in raw}
    sections = {}
    for name, cls in SECTIONS.items():
        obj = cls()
        _apply(obj, raw.pop(name, None) or {}, name)
        sections[name] = obj
    if raw:
        raise ValueError(f"unknown section(s) {sorted(raw)} in preset {preset!r}; valid: {sorted(SECTIONS)}")
    return Config(preset=preset, **top, **sections)


def auto_preset() -> tuple[str, str]:
    """``(preset, why)`` for this hardware: colab-t4 on a CUDA GPU, else cpu-tiny."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        gib = torch.cuda.get_device_properties(0).total_memory / 2**30
        return "colab-t4", f"a CUDA GPU was found ({name}, {gib:.0f} GiB)"
    return "cpu-tiny", "no CUDA GPU was found"


def load_config(preset: str | Path | None = "cpu-tiny", overrides: list[str] | dict | None = None) -> Config:
    """Load ``erv_lab/configs/<preset>.yaml`` (package data; or a path to a YAML file) and apply overrides.

    ``preset=None`` picks one from the hardware (:func:`auto_preset`) and says which.

    ``overrides`` is either ``["grpo.max_steps=10", ...]`` (the CLI's ``--set``) or a nested dict.
    """
    if preset is None:
        preset, why = auto_preset()
        print(f"preset {preset!r} picked from the hardware: {why} (set `preset` in the parameters cell to choose)")
    path = Path(preset)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_DIR / f"{preset}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no preset {str(preset)!r}; available: {', '.join(list_presets())}")
    raw = yaml.safe_load(path.read_text()) or {}
    if isinstance(overrides, dict):
        for sec, vals in overrides.items():
            if sec in TOP_LEVEL:
                raw[sec] = vals
            else:
                raw.setdefault(sec, {}).update(vals)
    else:
        for item in overrides or []:
            key, value = item.split("=", 1) if "=" in item else (item, "")
            if key in TOP_LEVEL:  # report_to=[tensorboard,trackio]
                raw[key] = _coerce(value)
                continue
            if "=" not in item or "." not in key:
                raise ValueError(f"override {item!r} must look like section.field=value")
            sec, name = key.split(".", 1)
            raw.setdefault(sec, {})[name] = _coerce(value)
    return build_config(raw, preset=path.stem)


def run_dir(cfg: Config | str, base: str | Path | None = None, say: bool = False) -> Path:
    """Where a preset's executed notebooks and artifacts go: ``base``, else ``runs/<preset>/`` under
    :func:`erv_lab.paths.runs_root` (never inside the installed package). ``say`` prints which and why."""
    name = cfg.preset if isinstance(cfg, Config) else str(cfg)
    if base is not None:
        out, why = Path(base).expanduser().resolve(), "given"  # absolute: notebooks run in notebooks/
    else:
        root, why = runs_root()
        out = root / name
    if say:
        print(f"run folder: {out} ({why})")
    out.mkdir(parents=True, exist_ok=True)
    return out
