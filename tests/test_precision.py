"""Half precision on the QLoRA path: fp32 adapters after TRL's cast, the frozen vision tower out of autograd,
the fp16 guard, and the fp32 fallback (``policy.compute_dtype``)."""
import math
from types import SimpleNamespace

import pytest
import torch

from erv_lab import policy as P
from erv_lab import precision as H
from erv_lab import train as T
from erv_lab.config import load_config
from erv_lab.rewards import accuracy_reward, format_reward

pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def clips(make_clips):
    return make_clips(n_per_class=1)


def _qlora_cfg(qlora_tiny_llava, **policy):
    cfg = load_config("smoke")
    cfg.policy.load_in_4bit, cfg.policy.lora_r, cfg.policy.lora_alpha = True, 4, 8
    for k, v in {**qlora_tiny_llava, **policy}.items():
        setattr(cfg.policy, k, v)
    cfg.grpo.gradient_checkpointing = True
    return cfg


@pytest.fixture(scope="module")
def qlora_sft(clips, qlora_tiny_llava, tmp_path_factory):
    """A QLoRA SFT trainer as train_sft builds it (not trained), its trainable weights before TRL, and the
    adapter it saves (GRPO's start)."""
    cfg = _qlora_cfg(qlora_tiny_llava)
    out = tmp_path_factory.mktemp("sft")
    start, meta = T.build_initial_policy(cfg, clips, out)
    trainer, processor, before = _built(T.sft_trainer, cfg, out, clips, start, meta)
    P.save_policy(trainer.model, processor, out / "final", {**meta, "stage": "sft"})
    return cfg, trainer, before, out / "final"


def _built(make, *args):
    """``make(*args)`` and the trainable weights of the model it built, copied just before TRL saw them."""
    seen = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(T, "trainable_snapshot", lambda model: seen.append(H.trainable_snapshot(model)) or seen[-1])
        trainer, processor = make(*args)
    return trainer, processor, {n: t.clone() for n, t in seen[0].items()}


def test_trl_casts_qlora_adapters_to_bf16_and_they_come_back_fp32(qlora_sft):
    """TRL 1.16 casts a 4-bit model's trainable weights to bf16 in the trainer's __init__; under fp16 (a T4) the
    loss scaler's CUDA unscale kernel has no bf16 and the first optimizer step crashes. After sft_trainer, every
    trainable weight is the fp32 tensor it was before TRL, bit for bit."""
    _, trainer, before, _ = qlora_sft
    after = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert before and set(after) == set(before)
    assert {p.dtype for p in after.values()} == {torch.float32}
    assert all(torch.equal(after[n].detach().cpu(), before[n].cpu()) for n in before)
    assert {p.dtype for p in before.values()} == {torch.float32}  # what PEFT made (the check can fail: see below)


def test_the_cast_really_happens_without_the_restore(qlora_sft, clips, monkeypatch, tmp_path):
    """The invariant's test can fail: with the restore switched off, TRL leaves bf16 adapters behind."""
    cfg, _, _, _ = qlora_sft
    monkeypatch.setattr(T, "keep_trainables_fp32", lambda model, snapshot: [])
    start, meta = T.build_initial_policy(cfg, clips, tmp_path)
    trainer, _ = T.sft_trainer(cfg, tmp_path, clips, start, meta)
    assert torch.bfloat16 in set(H.trainable_dtypes(trainer.model).values())


def test_grpo_continues_the_sft_adapter_in_fp32(qlora_sft, clips, tmp_path):
    cfg, _, _, sft_final = qlora_sft
    cfg.grpo.micro_batch = cfg.grpo.num_generations
    trainer, _, before = _built(T.grpo_trainer, cfg, tmp_path, sft_final, clips, [format_reward, accuracy_reward],
                                [1.0, 1.0])
    dtypes = H.trainable_dtypes(trainer.model)
    assert dtypes and set(dtypes.values()) == {torch.float32}
    params = dict(trainer.model.named_parameters())
    assert all(torch.equal(params[n].detach().cpu(), before[n].cpu()) for n in before)
    # TRL's frozen reference copy of the adapter (beta > 0) is untouched and frozen
    ref = {n: p for n, p in params.items() if ".ref." in n}
    assert ref and not any(p.requires_grad for p in ref.values())


def test_a_full_finetune_is_not_copied(clips):
    cfg = load_config("smoke")
    model = P.build_tiny_policy(cfg.policy, P.build_processor(P.train_tokenizer(clips["rationale"]), 32))
    assert H.trainable_snapshot(model) == {}  # nothing quantized: TRL casts nothing, no copy of the model


# ---------------------------------------------------------------- the vision tower out of autograd
def _projector_output_requires_grad(model, processor, clips) -> bool:
    seen = []
    _, proj = P.vision_tower(model)
    handle = proj.register_forward_hook(lambda m, a, out: seen.append(out.requires_grad))
    ex = clips[0]
    text = processor.apply_chat_template(P.prompt_messages(ex), add_generation_prompt=True, tokenize=False)
    batch = processor(images=[P.clip_images(ex)], text=[text + ex["rationale"]], return_tensors="pt")
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    handle.remove()
    assert seen and torch.is_grad_enabled()  # the hooks switch autograd back on after the tower
    return seen[0]


def test_a_frozen_vision_tower_runs_outside_autograd(qlora_sft, clips):
    """QLoRA trains LoRA on the language model only: the tower and projector are frozen, so their output needs
    no grad, even with enable_input_require_grads (which hooks SigLIP/CLIP's patch embedding too)."""
    cfg, trainer, _, _ = qlora_sft
    model = trainer.model
    tower, proj = P.vision_tower(model)
    assert not any(p.requires_grad for p in [*tower.parameters(), *proj.parameters()])
    assert _projector_output_requires_grad(model, trainer.processing_class, clips) is False
    assert any(p.grad is not None for n, p in model.named_parameters() if "lora_" in n)  # the LM still learns


def test_a_vision_tower_that_trains_keeps_its_gradients(clips, tmp_path):
    cfg = load_config("smoke")
    processor = P.build_processor(P.train_tokenizer(clips["rationale"]), 32)
    P.save_policy(P.build_tiny_policy(cfg.policy, processor), processor, tmp_path, {"kind": "tiny-llava"})
    model = P.load_base(tmp_path, cfg.policy)
    assert _projector_output_requires_grad(model, processor, clips) is True
    tower, _ = P.vision_tower(model)
    assert any(p.grad is not None for p in tower.parameters())


# ---------------------------------------------------------------- the fp16 guard
class FakeScaler:
    def __init__(self, scales):
        self.scales, self.i = list(scales), 0

    def is_enabled(self):
        return True

    def get_scale(self):
        return self.scales[min(self.i, len(self.scales) - 1)]


def _guard(scales=None, fp16=True, **kw):
    guard = H.HalfPrecisionGuard(probe=False, **kw)
    scaler = FakeScaler(scales) if scales else None
    guard.attach(SimpleNamespace(accelerator=SimpleNamespace(scaler=scaler)))
    args = SimpleNamespace(fp16=fp16, output_dir="/tmp/run")
    state = SimpleNamespace(global_step=0, log_history=[])
    guard.on_train_begin(args, state, None)
    return guard, scaler, args, state


def _steps(guard, scaler, args, state, n):
    for _ in range(n):
        scaler.i += 1
        state.global_step += 1
        guard.on_step_end(args, state, None)


def test_skipped_steps_are_counted_from_the_loss_scale():
    # 65536 -> 32768 (skip) -> 32768 -> 16384 (skip) -> 16384 -> 32768 (growth, no skip)
    guard, scaler, args, state = _guard([65536, 32768, 32768, 16384, 16384, 32768])
    _steps(guard, scaler, args, state, 5)
    assert guard.skipped == 2 and guard.in_a_row == 0 and guard.scale == 32768
    state.log_history.append({"loss": 0.5, "step": 5})
    guard.on_log(args, state, None, logs={"loss": 0.5, "grad_norm": float("inf")})  # inf norm: the scaler's job
    assert state.log_history[-1]["skipped_steps"] == 2 and state.log_history[-1]["loss_scale"] == 32768


def test_repeated_backoffs_stop_training_with_the_fallback_named():
    guard, scaler, args, state = _guard([2.0 ** (16 - i) for i in range(8)], max_backoffs=4)
    with pytest.raises(H.HalfPrecisionError, match=r"backed off 4 steps in a row.*policy\.compute_dtype=float32"):
        _steps(guard, scaler, args, state, 4)


@pytest.mark.parametrize("fp16", [True, False])
def test_a_non_finite_loss_stops_training(fp16):
    guard, _, args, state = _guard([1024.0] if fp16 else None, fp16=fp16)
    guard.on_log(args, state, None, logs={"loss": 1.0, "grad_norm": 2.0})  # fine
    with pytest.raises(H.HalfPrecisionError, match="non-finite loss") as err:
        guard.on_log(args, state, None, logs={"loss": math.nan})
    assert ("compute_dtype=float32" in str(err.value)) == fp16


def test_a_non_finite_gradient_norm_without_a_scaler_stops_training():
    guard, _, args, state = _guard(None, fp16=False)
    with pytest.raises(H.HalfPrecisionError, match="non-finite gradient norm"):
        guard.on_log(args, state, None, logs={"loss": 1.0, "grad_norm": float("inf")})


def test_the_first_batch_probe_reports_the_largest_activation(clips, monkeypatch):
    cfg = load_config("smoke")
    processor = P.build_processor(P.train_tokenizer(clips["rationale"]), 32)
    model = P.build_tiny_policy(cfg.policy, processor)
    guard = H.HalfPrecisionGuard()
    guard.attach(SimpleNamespace(accelerator=SimpleNamespace(scaler=None)))
    guard.on_train_begin(SimpleNamespace(fp16=False), None, None, model=model)
    truth = {}
    for name, layer in H._layers(model):
        layer.register_forward_hook(lambda m, a, out, name=name: truth.setdefault(
            name, (out[0] if isinstance(out, tuple) else out).abs().max().item()) and None)
    ex = clips[0]
    text = processor.apply_chat_template(P.prompt_messages(ex), add_generation_prompt=True, tokenize=False)
    with torch.no_grad():
        model(**processor(images=[P.clip_images(ex)], text=[text], return_tensors="pt"))
    assert len(truth) == cfg.policy.num_layers + cfg.policy.vision_layers  # vision and language blocks
    top = max(truth, key=truth.get)
    monkeypatch.setattr(H, "FP16_MAX", truth[top] * 2)  # closer to the limit than a quarter of it: a warning
    with pytest.warns(UserWarning, match="largest activation"):
        guard.on_step_end(SimpleNamespace(fp16=True), SimpleNamespace(global_step=1), None)
    probe = guard.probe_result()
    assert probe["layer"] == top and probe["max_abs_activation"] == pytest.approx(truth[top])
    assert probe["headroom"] == pytest.approx(2.0, abs=0.05) and not guard._hooks  # the hooks are gone


# ---------------------------------------------------------------- the fp32 fallback
def test_compute_dtype_float32_turns_half_precision_off(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a T4
    t4 = load_config("colab-t4")
    assert P.precision_flags(t4.policy) == {"bf16": False, "fp16": True}
    fallback = load_config("colab-t4", ["policy.compute_dtype=float32"])
    assert P.precision_flags(fallback.policy) == {"bf16": False, "fp16": False}
    assert P.bnb_config(fallback.policy).bnb_4bit_compute_dtype == torch.float32
    with pytest.raises(ValueError, match="compute_dtype"):
        load_config("colab-t4", ["policy.compute_dtype=fp8"])


# ---------------------------------------------------------------- quiet, not deaf
def test_only_the_optional_kernel_note_of_bitsandbytes_is_dropped(caplog):
    import logging

    import erv_lab

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning(erv_lab.NOISE_PREFIX + ": %s. Please make sure you already `pip install kernels`", "x")
        logger.warning("Failed to load something else")
        logger.error(erv_lab.NOISE_PREFIX.upper())
    assert [r.getMessage() for r in caplog.records] == ["Failed to load something else",
                                                        erv_lab.NOISE_PREFIX.upper()]


def test_only_the_deprecation_trl_triggers_inside_transformers_is_ignored():
    import warnings

    import erv_lab

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        erv_lab._quiet_known_noise()  # what importing erv_lab does
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6. Use "
                      "`is_activation_checkpointing` instead.", FutureWarning)
        warnings.warn("`something_else` is deprecated and will be removed in v6.", FutureWarning)
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", UserWarning)
    assert [(type(w.message), str(w.message)[:16]) for w in seen] == [(FutureWarning, "`something_else`"),
                                                                      (UserWarning, "`is_gradient_che")]
    assert erv_lab.DEPRECATED_INSIDE_TRL


# ---------------------------------------------------------------- notebook outputs
def test_a_notebook_trainer_shows_one_line_instead_of_a_table(qlora_sft):
    from transformers.utils.notebook import NotebookProgressCallback

    _, trainer, _, _ = qlora_sft
    trainer.add_callback(NotebookProgressCallback)  # what the Trainer picks inside Jupyter
    T.notebook_progress(trainer, "sft")
    kinds = [type(cb) for cb in trainer.callback_handler.callbacks]
    assert NotebookProgressCallback not in kinds and T.StepLine in kinds


def test_the_step_line_reads_rate_and_time_left():
    line = T.StepLine("sft")
    assert line.text(0, 336, 0.0) == "sft: step 0 / 336 (0 %)"
    assert line.text(120, 336, 72.0) == "sft: step 120 / 336 (36 %) · 0.60 s/step · about 2 min left"
    assert line.text(336, 336, 201.6, done=True) == "sft: step 336 / 336 (100 %) · done, 336 steps in 202 s (0.60 s/step)"
    line.step0 = 100  # resumed from a checkpoint: the rate counts this run's steps only
    assert line.text(110, 336, 10.0).endswith("1.00 s/step · about 4 min left")


def test_trainer_configs_build_without_deprecation_warnings(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        sft = T.sft_args(load_config("smoke"), tmp_path / "sft")
        grpo = T.grpo_args(load_config("colab-t4"), tmp_path / "grpo")
    assert sft.gradient_checkpointing is True and grpo.gradient_checkpointing is True  # the values are kept


def test_only_the_offline_trust_note_of_kernels_is_dropped(caplog):
    import logging

    import erv_lab

    logger = logging.getLogger("kernels._internals.hf_hub")
    note = erv_lab.NOISE["kernels._internals.hf_hub"]
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning(note + "quantization-bitsandbytes' because Hugging Face Hub is in offline mode.")
        logger.warning("Skipping publisher trust check for 'someone-else/kernel' because ...")
    assert [r.getMessage() for r in caplog.records] == ["Skipping publisher trust check for 'someone-else/kernel' because ..."]
