"""Shared test setup (offline, headless, no writes into the repository) and the fakes several modules use.

Test modules take these through fixtures; a script a test launches in another process imports them from here.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

LABELS = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
COLORS = [(255, 200, 0), (0, 0, 255), (128, 128, 128), (255, 0, 0), (0, 255, 255), (0, 128, 0), (128, 0, 128)]

# Sizes of the tiny models the suite loads in 4-bit NF4. Every linear layer must fit bitsandbytes' packed
# AVX512-BF16 CPU format (in_features % 64 == 0, out_features % 32 == 0; tests/test_qlora_cpu.py checks it),
# so that the QLoRA tests run the same kernels on every CPU.
QLORA_TINY_LLAVA = dict(hidden_size=64, vision_hidden_size=64)  # erv_lab.config.PolicyConfig fields
TINY_ONEVISION = {"text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2),
                  "vision": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 image_size=28, patch_size=14)}


def fake_clips(n_per_class=4, num_frames=2, size=32, seed=0):
    """A dataset with erv_lab.data's schema: one colour per class (+ noise), a noise spectrogram."""
    from datasets import Dataset
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows = []
    for c, lab in enumerate(LABELS):
        for k in range(n_per_class):
            frames = [Image.fromarray(np.clip(np.array(COLORS[c])[None, None] + rng.normal(0, 20, (size, size, 3)),
                                              0, 255).astype("uint8")) for _ in range(num_frames)]
            spec = Image.fromarray((rng.random((size, size)) * 255).astype("uint8")).convert("RGB")
            rows.append(dict(clip_id=f"{lab}_{k}", dataset="dfew", fold=5, label=lab, frames=frames,
                             spectrogram=spec, prosody="pitch high, energy low",
                             rationale=f"<think>The face looks {lab}. The person seems {lab}.</think>\n"
                                       f"<answer>{lab}</answer>", drifted=False, cues="{}"))
    return Dataset.from_list(rows)


def images_only_onevision():
    """LLaVA-OneVision's processor without its video processor (which needs torchvision, absent on CPU here);
    the class lives in the package (erv_lab.standins), which erv_lab.qwen_vocab also uses."""
    from erv_lab.standins import images_only_onevision as cls

    return cls()


@pytest.fixture(scope="session")
def make_clips():
    return fake_clips


@pytest.fixture(scope="session")
def qlora_tiny_llava():
    return dict(QLORA_TINY_LLAVA)


@pytest.fixture(scope="session")
def tiny_onevision():
    return {k: dict(v) for k, v in TINY_ONEVISION.items()}


@pytest.fixture(scope="session")
def onevision_processor_cls():
    return images_only_onevision()


# ------------------------------------------------------------- evaluation fakes (test_evaluate, test_widgets)
# A tiny fold, a fake policy with canned completions, a keyword judge and a keyword verifier: the evaluator's
# arithmetic can be checked by hand. Tests take them through the ``fakes`` fixture.
LABELS_EVAL = ["happy", "sad", "angry", "fear", "happy", "sad"]
WORD = {"happy": "smiles", "sad": "weeps", "angry": "scowls", "fear": "trembles", "surprise": "gasps"}
READ = {v: k for k, v in WORD.items()}  # the fake judge reads one cue word back to its emotion


def make_examples(labels=LABELS_EVAL):
    im = Image.new("RGB", (8, 8), (120, 60, 30))
    return [{"clip_id": f"c{i:02d}", "label": y, "dataset": "dfew", "frames": [im, im], "spectrogram": im}
            for i, y in enumerate(labels)]


def completion(think_emotion, answer):
    return f"<think>She {WORD[think_emotion]}. The room is quiet.</think>\n<answer>{answer}</answer>"


class FakePolicy:
    """Canned completions: answers the truth; the rationale names ``drift_to`` for clips listed in
    ``drift`` (per seed, so sampling seeds can differ); counts how many clips it decoded."""

    def __init__(self, drift=None, unparseable=()):
        self.drift, self.unparseable, self.calls = drift or {}, set(unparseable), 0

    def __call__(self, examples, temperature, top_p, seed, max_new_tokens):
        self.calls += len(examples)
        out = []
        for ex in examples:
            if ex["clip_id"] in self.unparseable:
                out.append("<think>She smiles.</think> no answer")
                continue
            think = self.drift.get(ex["clip_id"], ex["label"]) if temperature > 0 else ex["label"]
            out.append(completion(think, ex["label"]))
        return out


class FakeJudge:
    name = "fake-keyword-judge"

    def judge(self, texts, labels):
        assert "happy" in labels  # the judges interface: the dataset's label list
        found = []
        for t in texts:
            hits = [READ[w.strip(".").lower()] for w in t.split() if w.strip(".").lower() in READ]
            found.append(hits[0] if hits else "neutral")
        return found


class FakeVerifier:
    """Cue words -> their GoEmotions label with p = 0.9; anything else -> neutral."""
    ROWS = {"smiles": 17, "weeps": 25, "scowls": 2, "trembles": 14, "gasps": 26}

    def predict_proba(self, texts):
        out = np.full((len(texts), 28), 0.01)
        for i, t in enumerate(texts):
            k = next((self.ROWS[w.strip(".").lower()] for w in t.split() if w.strip(".").lower() in self.ROWS), 27)
            out[i, k] = 0.9
        return out


def fake_generators():
    drift = {"c00": "surprise", "c01": "happy", "c03": "surprise"}
    return {"sft": (FakePolicy(drift=drift), "f-sft"), "baseline": (FakePolicy(drift=drift), "f-base"),
            "erv": (FakePolicy(), "f-erv")}


def fake_stages(monkeypatch, tmp_path, judges: dict, examples) -> dict:
    """Point erv_lab.stages at three placeholder model folders, the fake verifier, ``judges`` and ``examples``
    (``evaluation`` then decodes with whatever generators the test patches in). Returns ``{arm: folder}``."""
    from erv_lab import stages as S

    dirs = {}
    for arm in ("sft", "baseline", "erv"):
        dirs[arm] = tmp_path / arm / "final"
        dirs[arm].mkdir(parents=True)
        (dirs[arm] / "model.safetensors").write_text(arm)
    monkeypatch.setattr(S, "ensure_sft", lambda cfg, rd, dataset=None: dirs["sft"])
    monkeypatch.setattr(S, "ensure_grpo", lambda cfg, rd, arm, dataset=None: dirs[arm])
    monkeypatch.setattr(S, "ensure_verifier", lambda cfg, rd: FakeVerifier())
    monkeypatch.setattr(S, "evaluation_judges", lambda cfg, rd, verifier: judges)
    monkeypatch.setattr(S, "heldout_examples", lambda cfg, rd, dataset=None: examples)
    return dirs


@pytest.fixture(scope="session")
def fakes():
    import types

    return types.SimpleNamespace(LABELS=LABELS_EVAL, WORD=WORD, READ=READ, make_examples=make_examples,
                                 completion=completion, FakePolicy=FakePolicy, FakeJudge=FakeJudge,
                                 FakeVerifier=FakeVerifier, fake_generators=fake_generators,
                                 fake_stages=fake_stages)


# ---------------------------------------------------------------- training: a simulated interruption
@pytest.fixture(scope="session")
def crash_at():
    """``crash_at(step)``: a TrainerCallback that raises at that step (tests of resume)."""
    from transformers import TrainerCallback

    class CrashAt(TrainerCallback):
        def __init__(self, step: int):
            self.step = step

        def on_step_end(self, args, state, control, **kw):
            if state.global_step >= self.step:
                raise KeyboardInterrupt(f"simulated interruption at step {state.global_step}")

    return CrashAt
