"""Half precision that trains: fp32 adapters under TRL's QLoRA cast, and guards for fp16 (a T4 has no bf16).

- :func:`keep_trainables_fp32`: TRL 1.16 casts every trainable parameter of a 4-bit model to bf16 when a
  trainer is built (``SFTTrainer`` and ``GRPOTrainer.__init__``). Under fp16 the loss scaler then crashes at the
  first optimizer step (its CUDA unscale kernel has no bf16), and under bf16 AdamW loses most updates at
  GRPO's small learning rates. The trainable parameters are put back, exactly as they were before the trainer
  was built (fp32 LoRA weights, PEFT's default).
- :class:`HalfPrecisionGuard`: a trainer callback that stops with a clear message on a non-finite loss (or,
  without a loss scaler, a non-finite gradient norm) and on repeated loss-scaler back-offs, counts the skipped
  steps (``skipped_steps`` and ``loss_scale`` in the log history and ``metrics.json``) and probes the largest
  activation of every layer on the first batch (fp16 overflows at 65,504).
- The fallback for a model that overflows in fp16: ``--set policy.compute_dtype=float32`` (``erv_lab.policy``).
Used by ``erv_lab.train``; tested in tests/test_precision.py.
"""
from __future__ import annotations

import math

import torch
from transformers import TrainerCallback

FP16_MAX = 65504.0
FALLBACK = "--set policy.compute_dtype=float32"


def is_quantized(model) -> bool:
    """TRL's own test for the cast: a model loaded in 4 or 8 bits."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def trainable_snapshot(model) -> dict[str, torch.Tensor]:
    """A copy of the trainable parameters of a quantized model (the LoRA weights: a few MB), ``{}`` otherwise
    (nothing is cast then, and a copy of a fully trained model would cost its size)."""
    if not is_quantized(model):
        return {}
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def keep_trainables_fp32(model, snapshot: dict[str, torch.Tensor]) -> list[str]:
    """Put back every snapshotted parameter whose dtype the trainer changed (values and dtype exactly as before).
    Returns the names restored. Call it after the trainer is built and before ``train()`` (the optimizer is
    made in ``train()``, so it sees the restored fp32 tensors)."""
    restored = []
    for name, p in model.named_parameters():
        old = snapshot.get(name)
        if old is not None and p.dtype != old.dtype:
            p.data = old.to(p.device)
            restored.append(name)
    return restored


def trainable_dtypes(model) -> dict[str, torch.dtype]:
    return {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}


class HalfPrecisionError(RuntimeError):
    """Training stopped: the numbers left the range the precision can hold."""


def _layers(model):
    """The transformer blocks (transformers' checkpointable layers), vision and language."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, GradientCheckpointingLayer)]


class HalfPrecisionGuard(TrainerCallback):
    """Stops training with a clear message when half precision breaks, and says how close it came.

    ``attach(trainer)`` gives it the trainer's accelerator (its loss scaler, when fp16 runs one). Stops on: a
    non-finite logged loss; a non-finite gradient norm when no loss scaler runs (with one, an overflow is what
    the scaler handles: the step is skipped and the scale halved); ``max_backoffs`` scaler back-offs in a row.
    """

    def __init__(self, max_backoffs: int = 10, probe: bool = True):
        self.max_backoffs, self.probe = max_backoffs, probe
        self.trainer = None
        self.skipped = self.in_a_row = 0
        self.scale: float | None = None
        self.peaks: dict[str, torch.Tensor] = {}
        self._hooks: list = []

    def attach(self, trainer) -> "HalfPrecisionGuard":
        self.trainer = trainer
        return self

    def _scaler(self):
        scaler = getattr(getattr(self.trainer, "accelerator", None), "scaler", None)
        return scaler if scaler is not None and scaler.is_enabled() else None

    def _fp16(self, args) -> bool:
        return bool(getattr(args, "fp16", False))

    # ---------------------------------------------------------------- first-batch activation probe
    def on_train_begin(self, args, state, control, model=None, **kw):
        scaler = self._scaler()
        self.scale = float(scaler.get_scale()) if scaler is not None else None
        if self.probe and model is not None and not self.peaks:
            for name, layer in _layers(model):
                self._hooks.append(layer.register_forward_hook(self._probe_hook(name)))

    def _probe_hook(self, name):
        def hook(module, args, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            if name not in self.peaks and isinstance(out, torch.Tensor) and out.is_floating_point():
                self.peaks[name] = out.detach().abs().amax().float()  # the first call only (prompt or batch)
        return hook

    def _remove_probe(self):
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def probe_result(self) -> dict | None:
        if not self.peaks:
            return None
        values = {n: v.item() for n, v in self.peaks.items()}
        where = max(values, key=lambda n: values[n] if math.isfinite(values[n]) else math.inf)
        return {"max_abs_activation": values[where], "layer": where, "fp16_max": FP16_MAX,
                "headroom": None if not math.isfinite(values[where]) or values[where] == 0
                else round(FP16_MAX / values[where], 1)}

    # ---------------------------------------------------------------- every step
    def on_step_end(self, args, state, control, **kw):
        if self._hooks:
            self._remove_probe()
            probe = self.probe_result()
            if probe and self._fp16(args) and not (probe["max_abs_activation"] < FP16_MAX / 4):
                import warnings

                warnings.warn(f"fp16: the first batch's largest activation is {probe['max_abs_activation']:.4g} in "
                              f"{probe['layer']} (fp16 holds at most {FP16_MAX:.0f}); if training stops on "
                              f"non-finite values, train in fp32: {FALLBACK}", stacklevel=2)
        scaler = self._scaler()
        if scaler is None:
            return
        scale = float(scaler.get_scale())
        if self.scale is not None and scale < self.scale:
            self.skipped += 1
            self.in_a_row += 1
        else:
            self.in_a_row = 0
        self.scale = scale
        if self.in_a_row >= self.max_backoffs:
            raise HalfPrecisionError(
                f"fp16: the loss scaler backed off {self.in_a_row} steps in a row (scale now {scale:g}) at step "
                f"{state.global_step}: every gradient overflows. The model's activations or gradients do not fit "
                f"fp16; train in fp32 ({FALLBACK}) or lower the learning rate. Checkpoints already written stay "
                f"in {args.output_dir}.")

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        loss, norm = logs.get("loss"), logs.get("grad_norm")
        hint = f"train in fp32 ({FALLBACK}) or lower the learning rate" if self._fp16(args) else \
            "lower the learning rate or check the rewards and data"
        if loss is not None and not math.isfinite(loss):
            raise HalfPrecisionError(f"non-finite loss ({loss}) at step {state.global_step}: {hint}. Checkpoints "
                                     f"already written stay in {args.output_dir}.")
        if norm is not None and not math.isfinite(norm) and self._scaler() is None:
            raise HalfPrecisionError(f"non-finite gradient norm ({norm}) at step {state.global_step} with no loss "
                                     f"scaler to skip it: {hint}.")
        if self.scale is not None and state.log_history:
            state.log_history[-1].update(skipped_steps=self.skipped, loss_scale=self.scale)

    def summary(self) -> dict:
        return {"skipped_steps": self.skipped, "loss_scale": self.scale, "probe": self.probe_result()}
