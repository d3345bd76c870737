import pytest

from erv_lab.config import SECTIONS, Config, build_config, list_presets, load_config, run_dir


def test_the_four_presets_exist_and_load():
    assert {"smoke", "cpu-tiny", "colab-t4", "paper"} <= set(list_presets())
    for name in list_presets():
        cfg = load_config(name)
        assert isinstance(cfg, Config) and cfg.preset == name and cfg.description


def test_presets_only_override_known_fields():
    # build_config raises on unknown keys, so loading all presets above already checks this; check the error too
    with pytest.raises(ValueError, match="unknown setting grpo.max_stepz"):
        build_config({"grpo": {"max_stepz": 3}})
    with pytest.raises(ValueError, match="unknown section"):
        build_config({"trainer": {}})


def test_cli_style_overrides_are_parsed_like_yaml():
    cfg = load_config("smoke", ["grpo.max_steps=7", "reward.strict_format=false", "eval.seeds=[1, 2, 3]"])
    assert cfg.grpo.max_steps == 7 and cfg.reward.strict_format is False and cfg.eval.seeds == [1, 2, 3]


def test_dict_overrides():
    assert load_config("smoke", {"data": {"fold": 2}}).data.fold == 2


@pytest.mark.parametrize("bad, match", [
    ({"data": {"fold": 6}}, "fold"),
    ({"reward": {"weights": [1.0]}}, "weights"),
    ({"grpo": {"num_generations": 1}}, "num_generations"),
    ({"policy": {"load_in_4bit": True, "lora_r": 0}}, "QLoRA"),
    ({"data": {"source": "dfew"}}, "data.root"),
    ({"policy": {"frames_per_image": 3}}, "frames_per_image must be an integer >= 1 that divides data.num_frames"),
    ({"policy": {"frames_per_image": 0}}, "frames_per_image"),
    ({"policy": {"frames_per_image": "4"}}, "frames_per_image"),
])
def test_inconsistent_values_are_rejected_with_a_clear_message(bad, match):
    with pytest.raises(ValueError, match=match):
        build_config(bad)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(FileNotFoundError, match="cpu-tiny"):
        load_config("no-such-preset")


def test_malformed_override():
    with pytest.raises(ValueError, match="section.field=value"):
        load_config("smoke", ["max_steps=3"])


def test_every_field_has_help():
    import dataclasses

    for cls in SECTIONS.values():
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help string"


def test_smoke_is_smaller_than_cpu_tiny():
    smoke, tiny = load_config("smoke"), load_config("cpu-tiny")
    assert smoke.grpo.max_steps < tiny.grpo.max_steps
    assert smoke.data.clips_per_class < tiny.data.clips_per_class


def test_run_dir_uses_the_given_base(tmp_path):
    assert run_dir(load_config("smoke"), tmp_path / "x") == tmp_path / "x"
    assert (tmp_path / "x").is_dir()


def test_float_fields_accept_yaml_1_1_exponents():
    # yaml.safe_load("2e-3") is the string "2e-3"; float fields must still get a number
    cfg = load_config("smoke", ["sft.learning_rate=2e-3", "grpo.beta=0"])
    assert cfg.sft.learning_rate == 0.002 and isinstance(cfg.grpo.beta, float)
    with pytest.raises(ValueError, match="must be a number"):
        load_config("smoke", ["grpo.beta=lots"])


@pytest.mark.parametrize("override,message", [
    (["reward.rewards=[format,acuracy,explanation]"], "unknown name"),
    (["reward.variant=sentences"], "reward.variant"),
    (["policy.kind=hf"], "policy.kind"),
    (["verifier.kind=bert"], "verifier.kind"),
    (["verifier.kind=minilm"], "verifier.kind must be tfidf\\|roberta"),  # loadable, but train_verifier cannot make it
    (["policy.audio=mel"], "policy.audio"),
])
def test_a_misspelt_setting_fails_when_the_config_loads(override, message):
    with pytest.raises(ValueError, match=message):
        load_config("smoke", override)


def test_frames_per_image_divides_the_frames():
    assert load_config("colab-t4").policy.frames_per_image == 4  # 8 frames -> two 2x2 mosaics
    assert load_config("paper").policy.frames_per_image == 1  # the paper's recipe: one image per frame
    assert load_config("smoke", ["policy.frames_per_image=2"]).policy.frames_per_image == 2
    assert build_config({"data": {"num_frames": 6}, "policy": {"frames_per_image": 3}}).policy.frames_per_image == 3
