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
