"""The verifier: splitter, label sets, label map, training, saving without pickle, loading, validation."""
import json
from pathlib import Path

import numpy as np
import pytest

from erv_lab import validation as VAL
from erv_lab import stages as S
from erv_lab import verifier as V
from erv_lab.config import load_config
from erv_lab.labels import GOEMOTIONS, LOSSY_PROXIES, label_set, split_sentences, to_goemotions


# --------------------------------------------------------------------------- splitter (labels.split_sentences)
def test_splitter_breaks_after_terminal_punctuation_and_whitespace():
    assert split_sentences("She smiles. He frowns! Why? ") == ["She smiles.", "He frowns!", "Why?"]


def test_splitter_keeps_quoted_speech_together():
    assert split_sentences('He says "stop. now." Then he leaves.') == ['He says "stop. now." Then he leaves.']


def test_splitter_breaks_after_abbreviations_as_the_paper_does():
    # the paper's rule has no abbreviation list: "Dr." ends a sentence
    assert split_sentences("Dr. Lee smiles. Mr. Kim cries.") == ["Dr.", "Lee smiles.", "Mr.", "Kim cries."]


def test_splitter_handles_runs_of_punctuation_and_empty_input():
    assert split_sentences("What?! Really... yes.") == ["What?!", "Really...", "yes."]
    assert split_sentences("") == [] and split_sentences(None) == [] and split_sentences("   ") == []


def test_splitter_needs_whitespace_after_the_stop():
    assert split_sentences("3.5 points.No space") == ["3.5 points.No space"]


# --------------------------------------------------------------------------- label sets (labels.label_set)
def test_label_set_keeps_labels_above_tau_most_probable_first():
    p = np.zeros(28); p[17], p[25] = 0.4, 0.2
    assert label_set(p, 0.1, 2) == [17, 25]


def test_label_set_falls_back_to_the_argmax_when_nothing_passes_tau():
    p = np.full(28, 0.01); p[14] = 0.05
    assert label_set(p, 0.1, 2) == [14]


def test_label_set_truncates_to_top_k():
    p = np.zeros(28); p[[2, 3, 10]] = [0.3, 0.6, 0.2]
    assert label_set(p, 0.1, 2) == [3, 2] and label_set(p, 0.1, 1) == [3] and label_set(p, 0.1, 3) == [3, 2, 10]


def test_label_set_threshold_is_strict():
    p = np.zeros(28); p[5] = 0.1; p[6] = 0.09
    assert label_set(p, 0.1, 2) == [5]  # 0.1 is not > 0.1: fallback to the argmax, which is 5


# --------------------------------------------------------------------------- label map
@pytest.mark.parametrize("label,dataset,index", [
    ("happy", "dfew", 17), ("sad", "dfew", 25), ("neutral", "dfew", 27), ("angry", "dfew", 2),
    ("surprise", "dfew", 26), ("disgust", "dfew", 11), ("fear", "dfew", 14), ("happiness", "mafw", 17),
    ("contempt", "mafw", 10), ("anxiety", "mafw", 19), ("helplessness", "mafw", 16), ("disappointment", "mafw", 9),
])
def test_label_map_follows_the_paper(label, dataset, index):
    assert to_goemotions(label, dataset) == index


def test_lossy_proxies_name_the_mapped_goemotions_label():
    for cls, proxy in LOSSY_PROXIES.items():
        assert GOEMOTIONS[to_goemotions(cls, "mafw")] == proxy


# --------------------------------------------------------------------------- a small real model
@pytest.fixture(scope="module")
def small():
    """A TF-IDF verifier on 400 GoEmotions rows + 400 rationale sentences (seconds)."""
    train, held = V.rationale_split(n_per_layout=500, seed=3)
    texts, Y, w = V.training_set(400, train[:400], seed=0)
    return V.TfidfVerifier.fit(texts, Y, w, progress=False), held


def test_rationale_split_never_puts_a_held_out_sentence_in_training():
    train, held = V.rationale_split(n_per_layout=600, seed=1)
    assert held and train and not {r["sentence"] for r in train} & {r["sentence"] for r in held}
    assert {r["layout"] for r in held} == {"dfew", "mafw"}


def test_predict_proba_has_one_column_per_goemotions_label(small):
    model, _ = small
    p = model.predict_proba(["She smiles.", "", "I am so angry"])
    assert p.shape == (3, 28) and p.dtype == np.float32 and ((p >= 0) & (p <= 1)).all()
    assert model.predict_proba([]).shape == (0, 28)


def test_adapted_verifier_recognises_held_out_rationale_sentences(small):
    model, held = small
    res = VAL.rationale_metrics(model, held)
    assert res["n"] == len(held) and res["accuracy"] > 0.8, res  # chance is far lower (~1/12 labels)


def test_fit_is_deterministic_in_worker_processes(small):
    """The 28 fits run in worker processes (liblinear is not thread-safe): refitting gives the same model."""
    model, _ = small
    train, _ = V.rationale_split(n_per_layout=500, seed=3)
    texts, Y, w = V.training_set(400, train[:400], seed=0)
    again = V.TfidfVerifier.fit(texts, Y, w, n_jobs=2, progress=False)
    np.testing.assert_array_equal(again.coef, model.coef)
    np.testing.assert_array_equal(again.intercept, model.intercept)


def test_saved_verifier_reloads_identically_without_pickle(small, tmp_path):
    model, held = small
    model.save(tmp_path / "v")
    files = sorted(p.name for p in (tmp_path / "v").iterdir())
    assert files == ["erv_verifier.json", "model.safetensors", "vocab.json"]
    assert not any(open(tmp_path / "v" / f, "rb").read(2) == b"\x80\x04" for f in files)  # no pickle header
    loaded = V.load_verifier(tmp_path / "v")
    sents = [r["sentence"] for r in held[:50]] + ["Ünïcode émotions!", "ok"]
    np.testing.assert_allclose(loaded.predict_proba(sents), model.predict_proba(sents), atol=1e-6)
    assert loaded.kind == "tfidf" and loaded.path == str(tmp_path / "v")


def test_load_verifier_refuses_folders_without_a_verifier_or_with_another_label_order(small, tmp_path):
    with pytest.raises(FileNotFoundError):
        V.load_verifier(tmp_path)
    small[0].save(tmp_path / "v")
    cfg = json.loads((tmp_path / "v" / V.CONFIG_FILE).read_text())
    cfg["labels"] = cfg["labels"][::-1]
    (tmp_path / "v" / V.CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="label order"):
        V.load_verifier(tmp_path / "v")


def test_sentence_labels_scores_each_sentence(small):
    rows = V.sentence_labels(small[0], "She smiles. The room is plain.", threshold=0.1, top_k=2)
    assert [r["sentence"] for r in rows] == ["She smiles.", "The room is plain."]
    assert all(1 <= len(r["labels"]) <= 2 and r["all"].shape == (28,) for r in rows)
    assert V.sentence_labels(small[0], "") == []


# --------------------------------------------------------------------------- validation, with stub verifiers
class Lookup:
    """predict_proba from a dict sentence -> GoEmotions index (one-hot at 0.9, 0.01 elsewhere)."""

    def __init__(self, table, default=27):
        self.table, self.default = table, default

    def predict_proba(self, sents, **_):
        out = np.full((len(sents), 28), 0.01, np.float32)
        for i, s in enumerate(sents):
            out[i, self.table.get(s, self.default)] = 0.9
        return out


def test_macro_f1_matches_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    Y = (rng.random((200, 28)) < 0.1).astype(float)
    P = rng.random((200, 28))
    assert VAL.macro_f1(P, Y, 0.5) == pytest.approx(f1_score(Y, P > 0.5, average="macro", zero_division=0))


def test_goemotions_metrics_picks_the_threshold_on_dev_only():
    Y = np.eye(28)[np.arange(280) % 28]
    Pdev = Y * 0.35 + 0.3 * (1 - Y)  # dev: positives 0.35, negatives 0.30 -> best threshold in [0.30, 0.35)
    Ptest = Y * 0.9                   # test is perfect at any threshold < 0.9
    m = VAL.goemotions_metrics({"dev": (Pdev, Y, None), "test": (Ptest, Y, None)})
    assert 0.30 <= m["dev_threshold"] < 0.35 and m["dev_macro_f1"] == 1.0 and m["test_macro_f1"] == 1.0
    assert set(m["per_label_f1"]) == set(GOEMOTIONS)


def test_rationale_metrics_counts_teacher_label_in_set():
    rows = [{"sentence": "a", "labels": [17], "kind": "visual"}, {"sentence": "b", "labels": [25], "kind": "audio"}]
    res = VAL.rationale_metrics(Lookup({"a": 17, "b": 2}), rows)
    assert res["accuracy"] == 0.5 and res["sweep"]["0.1"]["per_kind"] == {"audio": 0.0, "visual": 1.0}
    assert res["sweep"]["0.5"]["mean_set_size"] == 1.0


def test_proxy_audit_separates_class_and_other_sentences():
    rows = [{"sentence": "c1", "emotion": "contempt", "layout": "mafw"},
            {"sentence": "c2", "emotion": "contempt", "layout": "mafw"},
            {"sentence": "x", "emotion": "anger", "layout": "mafw"}]
    res = VAL.proxy_audit(Lookup({"c1": 10, "c2": 2, "x": 10}), rows)
    assert res["contempt->disapproval"] == {"n_class": 2, "fires_on_class": 0.5, "fires_on_others": 1.0}


def test_gaming_probes_flag_a_keyword_verifier_as_fooled():
    keyword = Lookup({s: 17 for _, sents, _, _ in VAL.PROBES for s in sents if "happy" in s or "joy" in s})
    res = {r["probe"]: r for r in VAL.gaming_probes(keyword)}
    assert not res["control: described cue"]["fooled"]
    assert res["keyword stuffing"]["fooled"] and res["negation"]["fooled"] and res["repetition"]["fooled"]
    assert not res["control: plain description"]["fooled"]


def test_throughput_is_positive(small):
    assert VAL.throughput(small[0], ["She smiles."] * 100) > 0


# --------------------------------------------------------------------------- train-or-load, CLI
@pytest.mark.slow
def test_ensure_verifier_trains_once_then_loads(tmp_path, monkeypatch):
    cfg = load_config("smoke", ["verifier.max_train=300"])
    first = S.ensure_verifier(cfg, tmp_path, progress=False)
    assert (tmp_path / "verifier" / "model.safetensors").exists() and first.info["max_train"] == 300
    monkeypatch.setattr(V, "train_verifier", lambda *a, **k: pytest.fail("retrained"))
    again = S.ensure_verifier(cfg, tmp_path)
    np.testing.assert_allclose(again.predict_proba(["She smiles."]), first.predict_proba(["She smiles."]),
                               atol=1e-6)


@pytest.mark.slow
def test_cli_score_and_eval(small, tmp_path, capsys):
    from erv_lab.cli import main

    small[0].save(tmp_path / "v")
    assert main(["verifier", "score", "--model", str(tmp_path / "v"), "She smiles.", "He is furious."]) == 0
    out = capsys.readouterr().out
    assert out.count("->") == 2 and "She smiles." in out
    assert main(["verifier", "eval", "--model", str(tmp_path / "v"), "--max-rows", "300",
                 "--out", str(tmp_path / "m.json")]) == 0
    res = json.loads((tmp_path / "m.json").read_text())
    assert res["goemotions"]["n_test"] == 300 and 0 < res["goemotions"]["test_macro_f1"] < 1
    assert set(res) >= {"rationale_heldout", "proxy_audit", "gaming_probes", "throughput_sentences_per_s"}


# --------------------------------------------------------------------------- transformer path (tiny, random, offline)
def _tiny_roberta(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForSequenceClassification

    corpus = ["she smiles and looks happy", "he is angry and loud", "the room is plain", "tears of sadness"] * 5
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<s>", "</s>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    cfg = RobertaConfig(vocab_size=fast.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, pad_token_id=0, num_labels=28,
                        problem_type="multi_label_classification")
    RobertaForSequenceClassification(cfg).save_pretrained(tmp_path / "base")
    fast.save_pretrained(tmp_path / "base")
    return corpus


@pytest.mark.slow
def test_transformer_verifier_trains_saves_and_reloads(tmp_path):
    corpus = _tiny_roberta(tmp_path)
    model, tok = V.TransformerVerifier.build(str(tmp_path / "base"))
    assert model.config.problem_type == "multi_label_classification" and model.config.num_labels == 28
    ver = V.TransformerVerifier(model, tok)
    Y = np.eye(28)[np.arange(len(corpus)) % 28]
    before = ver.predict_proba(corpus[:4])
    ver.fit(corpus, Y, max_steps=2, batch_size=4, learning_rate=1e-2, output_dir=tmp_path / "trainer")
    after = ver.predict_proba(corpus[:4])
    assert after.shape == (4, 28) and not np.allclose(before, after)  # the two steps changed the weights
    ver.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").exists()
    again = V.load_verifier(tmp_path / "saved")
    np.testing.assert_allclose(again.predict_proba(corpus[:4]), after, atol=1e-5)


def test_a_verifier_trained_with_other_settings_is_moved_aside_and_retrained(tmp_path, monkeypatch):
    from erv_lab.config import load_config

    trained = []

    class Tiny:
        kind, info = "tfidf", {}

        def save(self, path):
            (Path(path)).mkdir(parents=True, exist_ok=True)
            (Path(path) / V.CONFIG_FILE).write_text('{"kind": "tfidf"}')

    monkeypatch.setattr(V, "train_verifier", lambda cfg, progress=None: trained.append(cfg) or Tiny())
    monkeypatch.setattr(V, "load_verifier", lambda path: "loaded")
    cfg = load_config("smoke")
    S.ensure_verifier(cfg, tmp_path)
    assert S.ensure_verifier(cfg, tmp_path) == "loaded" and len(trained) == 1
    for change in (["verifier.max_train=100"], ["verifier.epochs=7"], ["data.seed=3"]):
        with pytest.warns(UserWarning, match="not reused"):
            S.ensure_verifier(load_config("smoke", change), tmp_path)
    assert len(trained) == 4 and (tmp_path / "verifier.stale").exists()
    # tau only reads the verifier: the last one is reused
    assert S.ensure_verifier(load_config("smoke", ["data.seed=3", "verifier.threshold=0.3"]), tmp_path) == "loaded"
