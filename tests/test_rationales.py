"""Cold-start rationales: cue vocabulary, teacher labels, drift rates and the corpus contract."""
import random
import re

import pytest

from erv_lab.labels import GOEMOTIONS, split_sentences, to_goemotions, vocabulary
from erv_lab.rationales import (AUDIO_ONLY_PAIR, CUES, DRIFT_TOWARDS, VIDEO_ONLY_PAIR, drift_plan,
                                drift_summary, make_rationale, random_drift_rate, rationale_corpus, stem)

CLASS_DRIFT = {"fear": 0.6, "disgust": 0.6, "sad": 0.6}


def _cues(label):
    s = stem(label)
    return {"visual": [{"cue": c, "strength": 1.0 - 0.1 * i} for i, c in enumerate(CUES[s]["visual"])],
            "audio": [{"cue": c, "strength": 1.0 - 0.1 * i} for i, c in enumerate(CUES[s]["audio"])]}


@pytest.mark.parametrize("layout", ["dfew", "mafw"])
def test_corpus_rows_have_the_contract_fields_and_teacher_labels(layout):
    rows = rationale_corpus(layout=layout, n=400, seed=3)
    assert len(rows) == 400
    vocab = set(vocabulary(layout))
    for r in rows:
        assert set(r) == {"sentence", "labels", "emotion", "kind"}
        assert r["kind"] in {"visual", "audio", "conclusion", "hedge"}
        assert r["emotion"] in vocab
        assert r["labels"] == [to_goemotions(r["emotion"], layout)]
        assert len(split_sentences(r["sentence"])) == 1  # one sentence per row, as the verifier splits
    assert {r["emotion"] for r in rows} == vocab
    assert all(r["labels"] == [GOEMOTIONS.index("neutral")] for r in rows if r["kind"] == "hedge")


def test_corpus_is_deterministic_in_its_seed():
    assert rationale_corpus("dfew", 50, 1) == rationale_corpus("dfew", 50, 1)
    assert rationale_corpus("dfew", 50, 1) != rationale_corpus("dfew", 50, 2)


def test_designed_confusions_share_exactly_one_modality():
    a, b = AUDIO_ONLY_PAIR
    assert CUES[a]["visual"] == CUES[b]["visual"] and set(CUES[a]["audio"]) != set(CUES[b]["audio"])
    a, b = VIDEO_ONLY_PAIR
    assert CUES[a]["audio"] == CUES[b]["audio"] and set(CUES[a]["visual"]) != set(CUES[b]["visual"])


@pytest.mark.parametrize("label", vocabulary("dfew") + vocabulary("mafw"))
def test_consistent_rationale_expresses_only_its_label(label):
    layout = "dfew" if label in vocabulary("dfew") else "mafw"
    out = make_rationale(label, _cues(label), layout, random.Random(0))
    assert re.fullmatch(r"<think>[^<]+</think>\n<answer>" + label + "</answer>", out["text"])
    assert all(s["emotion"] == label for s in out["sentences"])
    think = out["text"].split("</think>")[0][len("<think>"):]
    assert split_sentences(think) == [s["sentence"] for s in out["sentences"]]


def test_class_drift_rewrites_the_reasons_but_keeps_the_answer():
    out = make_rationale("fear", _cues("fear"), "dfew", random.Random(0), {"mode": "class", "towards": "surprise"})
    assert out["text"].endswith("<answer>fear</answer>")
    assert {s["emotion"] for s in out["sentences"]} == {"surprise"}
    out = make_rationale("sad", _cues("sad"), "dfew", random.Random(0), {"mode": "class", "towards": "neutral"})
    assert {s["kind"] for s in out["sentences"]} == {"hedge"} and out["text"].endswith("<answer>sad</answer>")


def test_random_rate_makes_the_overall_drift_share_equal_drift_rate():
    # dfew: 7 classes, 3 with q = 0.6 -> r = (0.33 * 7 - 1.8) / 4 = 0.1275
    assert random_drift_rate("dfew", 0.33, CLASS_DRIFT) == pytest.approx(0.1275)
    rng = random.Random(0)
    plans = [drift_plan(lab, "dfew", rng, 0.33, CLASS_DRIFT) for _ in range(3000) for lab in vocabulary("dfew")]
    counts = drift_summary(plans)
    assert (counts["class"] + counts["random"]) / len(plans) == pytest.approx(0.33, abs=0.015)
    fear = [drift_plan("fear", "dfew", rng, 0.33, CLASS_DRIFT) for _ in range(2000)]
    hits = [p for p in fear if p]
    assert len(hits) / 2000 == pytest.approx(0.6, abs=0.04)
    assert all(p == {"mode": "class", "towards": DRIFT_TOWARDS["fear"]} for p in hits)


def test_zero_drift_rate_switches_all_drift_off():
    rng = random.Random(0)
    assert all(drift_plan(lab, "dfew", rng, 0.0, CLASS_DRIFT) is None for lab in vocabulary("dfew") * 50)


def test_mafw_names_match_dfew_keyed_class_drift():
    rng = random.Random(0)
    plans = [drift_plan("sadness", "mafw", rng, 0.33, {"sad": 1.0}) for _ in range(20)]
    assert all(p == {"mode": "class", "towards": "neutral"} for p in plans)
