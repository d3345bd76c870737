"""The TRL / transformers / peft arguments erv-lab passes must exist in the installed versions.

A library upgrade that renames an argument (transformers 5 folded ``warmup_ratio`` into ``warmup_steps``)
fails here, by name, instead of deep inside a training run.
"""
import dataclasses
import inspect
import os

import pytest


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _params(fn) -> set[str]:
    return set(inspect.signature(fn).parameters)


SFT_ARGS = {"output_dir", "num_train_epochs", "learning_rate", "per_device_train_batch_size", "warmup_steps",
            "lr_scheduler_type", "max_length", "logging_steps", "save_strategy", "save_steps", "save_total_limit",
            "report_to", "seed", "use_cpu", "bf16", "fp16", "remove_unused_columns",
            "dataloader_num_workers", "disable_tqdm", "project", "run_name", "trackio_static_space_id"}
GRPO_ARGS = {"output_dir", "max_steps", "num_train_epochs", "learning_rate", "beta", "num_generations",
             "per_device_train_batch_size", "gradient_accumulation_steps", "temperature", "max_completion_length",
             "seed", "data_seed", "logging_steps", "save_strategy", "save_steps", "save_total_limit", "report_to",
             "use_cpu", "bf16", "fp16", "remove_unused_columns", "lr_scheduler_type", "warmup_steps",
             "log_completions", "dataloader_num_workers", "loss_type", "reward_weights",
             "num_completions_to_print", "log_multimodal", "project", "run_name", "trackio_static_space_id"}


def test_sft_config_fields_exist():
    from trl import SFTConfig

    assert SFT_ARGS <= _fields(SFTConfig), SFT_ARGS - _fields(SFTConfig)


def test_grpo_config_fields_exist():
    from trl import GRPOConfig

    assert GRPO_ARGS <= _fields(GRPOConfig), GRPO_ARGS - _fields(GRPOConfig)


def test_the_project_passes_only_known_grpo_fields(tmp_path):
    from erv_lab import train
    from erv_lab.config import load_config

    args = train.grpo_args(load_config("smoke"), tmp_path)  # builds a real GRPOConfig: unknown kwargs raise
    assert args.num_generations == 2


@pytest.mark.parametrize("name,params", [
    ("GRPOTrainer", {"model", "reward_funcs", "args", "train_dataset", "processing_class", "callbacks"}),
    ("SFTTrainer", {"model", "args", "train_dataset", "processing_class", "callbacks"}),
])
def test_trainer_signatures(name, params):
    import trl

    assert params <= _params(getattr(trl, name).__init__)


def test_peft_and_bitsandbytes_config_arguments():
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig

    assert {"r", "lora_alpha", "lora_dropout", "bias", "task_type", "target_modules"} <= _fields(LoraConfig)
    assert {"load_in_4bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype"} <= \
        _params(BitsAndBytesConfig.__init__)
    from peft import get_peft_model, prepare_model_for_kbit_training

    assert "use_gradient_checkpointing" in _params(prepare_model_for_kbit_training)
    assert {"model", "peft_config"} <= _params(get_peft_model)


def test_transformers_model_and_processor_arguments():
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, LlavaConfig, LlavaProcessor,
                              PreTrainedTokenizerFast, Qwen2Config)

    assert {"patch_size", "vision_feature_select_strategy", "num_additional_image_tokens", "image_token",
            "chat_template"} <= _params(LlavaProcessor.__init__)
    assert {"vision_config", "text_config", "image_token_index", "vision_feature_layer",
            "vision_feature_select_strategy", "projector_hidden_act"} <= _params(LlavaConfig.__init__) | \
        set(getattr(LlavaConfig, "__dataclass_fields__", {}))
    for cls, names in [(CLIPVisionConfig, {"hidden_size", "num_hidden_layers", "image_size", "patch_size"}),
                       (Qwen2Config, {"vocab_size", "hidden_size", "num_key_value_heads", "tie_word_embeddings"})]:
        cfg = cls(**{n: getattr(cls(), n) for n in names})  # every name is accepted and stored
        assert all(hasattr(cfg, n) for n in names)
    # PreTrainedTokenizerFast takes **kwargs: check that tokenizer_object is still honoured by behaviour.
    from tokenizers import Tokenizer, models

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<pad>": 1}, "a")),
                                  pad_token="<pad>")
    assert tok.pad_token_id == 1 and len(tok) == 2
    assert "size" in _params(CLIPImageProcessorPil.__init__) or "kwargs" in _params(CLIPImageProcessorPil.__init__)


# ---------------------------------------------------------------- erv_lab/trl_compat.py: TRL's private methods
def test_trl_is_inside_the_range_the_overrides_were_written_for():
    import trl

    from erv_lab import trl_compat

    trl_compat.check_trl()  # raises outside TRL_RANGE
    lo, hi = trl_compat.TRL_RANGE
    assert trl_compat._version(lo) <= trl_compat._version(trl.__version__) < trl_compat._version(hi)


def test_check_trl_refuses_another_version(monkeypatch):
    import trl

    from erv_lab import trl_compat

    monkeypatch.setattr(trl, "__version__", "2.0.0")
    with pytest.raises(RuntimeError, match="TRL 2.0.0"):
        trl_compat.grpo_trainer_class()


def test_overridden_private_methods_still_exist_with_the_arguments_used():
    from trl import GRPOTrainer

    from erv_lab.trl_compat import OVERRIDDEN

    for name in OVERRIDDEN:
        assert callable(getattr(GRPOTrainer, name, None)), f"GRPOTrainer.{name} is gone"
    assert {"model", "pixel_values", "num_images"} <= _params(GRPOTrainer._get_per_token_logps_and_entropies)


# ---------------------------------------------------------------- TRL's completion logs, as erv_lab reads them
def test_trl_writes_the_completion_files_curves_reads():
    """``erv_lab.curves.read_completions`` globs ``completions/completions_*.parquet`` under the output folder, and
    the rewards' extra columns arrive through the ``log_extra`` kwarg: both are TRL's (1.16) names."""
    import trl.trainer.grpo_trainer as g

    from erv_lab.curves import COMPLETIONS_GLOB

    log = inspect.getsource(g.GRPOTrainer.log)
    folder, pattern = COMPLETIONS_GLOB.split("/")
    assert f'"{folder}",' in log and 'f"completions_{self.state.global_step:05d}.parquet"' in log
    assert pattern == "completions_*.parquet"
    for column in ('"step"', '"prompt"', '"completion"', '"advantage"', '**self._logs["rewards"]',
                   '**self._logs["extra"]'):
        assert column in log, column
    rewards = inspect.getsource(g.GRPOTrainer._calculate_rewards)
    assert 'reward_kwargs["log_extra"] = self._log_completion_extra' in rewards


def test_no_completions_to_print_prints_nothing_and_draws_no_random_number(capsys):
    """``num_completions_to_print=0`` (erv_lab.train.grpo_args): TRL's rich table returns before sampling rows
    with ``random.sample`` -- logging must not move the training run's random state."""
    import random

    from trl.trainer.utils import print_prompt_completions_sample

    random.seed(0)
    state = random.getstate()
    print_prompt_completions_sample(["p"] * 4, ["c"] * 4, {"r": [0.0] * 4}, [0.0] * 4, 1, num_samples=0)
    assert random.getstate() == state and capsys.readouterr().out == ""


def test_trackio_callback_still_calls_init_through_the_attribute_local_trackio_wraps():
    from transformers.integrations import TrackioCallback

    assert "self._trackio = trackio" in inspect.getsource(TrackioCallback.__init__)
    assert "self._trackio.init(" in inspect.getsource(TrackioCallback.setup)


def test_trackio_init_still_takes_embed():
    trackio = pytest.importorskip("trackio") if not os.environ.get("CI") else __import__("trackio")  # make venv installs it; CI must run this
    assert "embed" in _params(trackio.init)


def test_local_trackio_makes_the_callback_init_without_embedding():
    """A notebook must not start trackio's dashboard server (nor a Colab share link) when a run starts."""
    from types import SimpleNamespace

    from transformers.integrations import TrackioCallback

    from erv_lab.trl_compat import local_trackio

    calls = []
    fake = SimpleNamespace(init=lambda **kw: calls.append(kw), log=lambda m: calls.append(m), __version__="0.43.0")
    cb = TrackioCallback.__new__(TrackioCallback)  # __init__ needs trackio installed; the attribute is what counts
    cb._trackio = fake
    trainer = SimpleNamespace(callback_handler=SimpleNamespace(callbacks=[object(), cb]))
    local_trackio(trainer)
    local_trackio(trainer)  # idempotent: wrapped once
    cb._trackio.init(project="p", name="erv", embed=True)
    cb._trackio.log({"loss": 1.0})
    assert calls == [{"project": "p", "name": "erv", "embed": False}, {"loss": 1.0}]
    assert cb._trackio.__version__ == "0.43.0" and cb._trackio._module is fake


def test_the_logging_trainer_overrides_exactly_the_listed_methods():
    from trl import GRPOTrainer

    from erv_lab.trl_compat import OVERRIDDEN, grpo_trainer_class

    cls = grpo_trainer_class()
    assert issubclass(cls, GRPOTrainer)
    own = {n for n, v in vars(cls).items() if callable(v) and not n.startswith("__")}
    assert own == set(OVERRIDDEN)
