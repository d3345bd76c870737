"""scripts/measure_gpu_preset.py end to end on a CPU (``--dry-run``), so the one GPU measurement a session can
make never fails on the script itself: the colab-t4 preset, a tiny same-class stand-in, SFT, GRPO, evaluation
and the JSON it writes (no figures on a CPU)."""
import importlib.util
import json
from pathlib import Path

import pytest

from erv_lab import policy as P
from erv_lab import standins as ST

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "measure_gpu_preset.py"
pytest.importorskip("bitsandbytes")


@pytest.mark.slow
def test_the_measurement_script_runs_every_phase(tmp_path, monkeypatch, tiny_onevision, onevision_processor_cls):
    from transformers import AutoTokenizer, LlavaOnevisionImageProcessorPil

    spec = importlib.util.spec_from_file_location("measure_gpu_preset", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    real_build = ST.build_standin
    monkeypatch.setattr(ST, "build_standin", lambda name, out, corpus, tokenizer="bpe": real_build(
        name, out, corpus, sizes=tiny_onevision, processor_cls=onevision_processor_cls, tokenizer=tokenizer))

    def hub_processor(path):  # AutoProcessor needs torchvision, absent beside the CPU torch
        tok = AutoTokenizer.from_pretrained(path)
        tok.padding_side = "left"
        return onevision_processor_cls(image_processor=LlavaOnevisionImageProcessorPil.from_pretrained(path),
                                       tokenizer=tok, num_image_tokens=4, vision_feature_select_strategy="full",
                                       chat_template=P.CHAT_TEMPLATE)

    monkeypatch.setattr(P, "hub_processor", hub_processor)
    out = tmp_path / "measure.json"
    rc = script.main(["--dry-run", "--standin", "--t4", "--out", str(tmp_path / "run"), "--sft-steps", "1",
                      "--grpo-steps", "1", "--set", "verifier.kind=tfidf", "--set", "verifier.max_train=500",
                      "--set", "data.clips_per_class=2", "--set", "data.frame_size=32",
                      "--set", "grpo.max_completion_length=8", "--set", "eval.max_new_tokens=4",
                      "--write", str(out)])
    doc = json.loads(out.read_text())
    assert rc == 0, doc.get("failed")
    assert set(doc) >= {"sft", "grpo", "eval", "settings", "versions", "command"} and "failed" not in doc
    for phase in ("sft", "grpo"):
        assert doc[phase]["steps"] == 1 and doc[phase]["non_finite"] == 0 and doc[phase]["losses"]
    assert doc["settings"]["attn_implementation"] == "sdpa_repeat_kv" and doc["sft"]["prompt_tokens"] > 0
    assert doc["sft"]["peak_allocated_gb"] is None  # a CPU dry run reports no figures
    assert doc["standin_tokenizer"] == "qwen"  # Qwen2's real vocabulary, as the GPU measurement counts
