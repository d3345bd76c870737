"""The TRL / transformers / peft arguments erv-lab passes must exist in the installed versions.

A library upgrade that renames an argument (transformers 5 folded ``warmup_ratio`` into ``warmup_steps``)
fails here, by name, instead of deep inside a training run.
"""
import dataclasses
import inspect

import pytest


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _params(fn) -> set[str]:
    return set(inspect.signature(fn).parameters)


SFT_ARGS = {"output_dir", "num_train_epochs", "learning_rate", "per_device_train_batch_size", "warmup_steps",
            "lr_scheduler_type", "max_length", "logging_steps", "save_strategy", "save_steps", "save_total_limit",
            "report_to", "seed", "use_cpu", "bf16", "fp16", "remove_unused_columns",
            "dataloader_num_workers", "disable_tqdm"}
GRPO_ARGS = {"output_dir", "max_steps", "num_train_epochs", "learning_rate", "beta", "num_generations",
             "per_device_train_batch_size", "gradient_accumulation_steps", "temperature", "max_completion_length",
             "seed", "data_seed", "logging_steps", "save_strategy", "save_steps", "save_total_limit", "report_to",
             "use_cpu", "bf16", "fp16", "remove_unused_columns", "lr_scheduler_type", "warmup_steps",
             "log_completions", "dataloader_num_workers", "loss_type", "reward_weights"}


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
    assert {"inputs"} <= _params(GRPOTrainer._generate_and_score_completions)
    assert {"model", "pixel_values", "num_images"} <= _params(GRPOTrainer._get_per_token_logps_and_entropies)
    assert {"logs", "start_time"} <= _params(GRPOTrainer.log)


def test_the_log_buffer_the_completions_file_reads_is_still_filled():
    """``LoggingGRPOTrainer.log`` reads GRPOTrainer's ``_logs[completion / advantages / rewards]``: they must be
    the names TRL fills (the training tests then check the rows' contents)."""
    import trl.trainer.grpo_trainer as g

    from erv_lab.trl_compat import LOGS_KEYS

    src = inspect.getsource(g.GRPOTrainer)
    assert "self._logs = {" in src
    for key in LOGS_KEYS:
        assert f'self._logs["{key}"]' in src, key


def test_the_logging_trainer_overrides_exactly_the_listed_methods():
    from trl import GRPOTrainer

    from erv_lab.trl_compat import OVERRIDDEN, grpo_trainer_class

    cls = grpo_trainer_class()
    assert issubclass(cls, GRPOTrainer)
    own = {n for n, v in vars(cls).items() if callable(v) and not n.startswith("__")}
    assert own == set(OVERRIDDEN)
