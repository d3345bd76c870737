"""Metrics: a hand-computed table, scikit-learn cross-checks, property tests and the bootstrap."""
from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, balanced_accuracy_score

import erv_lab.metrics as metrics_module
from erv_lab.labels import VOCABULARIES, normalize_label
from erv_lab.metrics import bootstrap_ci, consistency_metrics, recognition_metrics

# A small DFEW table computed by hand. Columns: prediction P, judged rationale emotion J, truth Y.
TABLE = [
    ("happy", "happy", "happy"),            # TT, consistent
    ("Happiness", "happy", "happy"),        # TT, consistent (synonym)
    ("sad", "happy", "sad"),                # TF
    (None, "sad", "sad"),                   # no answer: FF, unparseable, not consistent (judge ignored)
    ("joy", "fear", "fear"),                # answer outside the vocabulary: P wrong, J scored -> FT
    ("angry", "angry", "fear"),             # FF, consistent
    ("surprise", "I think surprise?", "surprise"),  # judge outside the vocabulary -> neutral: TF
    ("neutral", None, "neutral"),           # judge failure -> neutral: TT, consistent
]
P, J, Y = (list(col) for col in zip(*TABLE))


def test_consistency_table_by_hand():
    m = consistency_metrics(P, J, Y, "dfew")
    assert (m["TT"], m["TF"], m["FT"], m["FF"], m["n"]) == (3, 2, 1, 2, 8)
    assert m["EPC"] == 4 / 8  # rows 1, 2, 6, 8
    assert m["EEA"] == 4 / 8  # (TT + FT) / n
    assert m["FCR"] == 3 / 8  # TT / n
    assert m["FCR_given_correct"] == 3 / 5  # TT / (TT + TF)
    assert (m["unparseable"], m["judge_outside"]) == (1, 2)


def test_recognition_table_by_hand():
    m = recognition_metrics(P, Y, "dfew")
    # correct: rows 1, 2, 3, 7, 8 (= TT + TF) -> WAR 5/8
    # recall happy 2/2, sad 1/2 (row 4 has no answer), fear 0/2, surprise 1/1, neutral 1/1
    assert m["WAR"] == 5 / 8 and m["n"] == 8
    assert m["per_class_recall"] == {"fear": 0.0, "happy": 1.0, "neutral": 1.0, "sad": 0.5, "surprise": 1.0}
    assert m["UAR"] == pytest.approx(3.5 / 5)  # only the 5 classes present in Y are averaged


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_recognition_matches_scikit_learn():
    norm_p = [normalize_label(p) or "<wrong>" for p in P]
    m = recognition_metrics(P, Y)
    assert m["WAR"] == pytest.approx(accuracy_score(Y, norm_p))
    assert m["UAR"] == pytest.approx(balanced_accuracy_score(Y, norm_p))


def test_mafw_synonyms_and_labels():
    m = recognition_metrics(["angry", "Sad", "helpless", "contempt"], ["anger", "sadness", "helplessness", "anxiety"],
                            "mafw")
    assert m["WAR"] == 0.75 and set(m["per_class_recall"]) == {"anger", "sadness", "helplessness", "anxiety"}
    c = consistency_metrics(["anger"], ["Angry."], ["anger"], "mafw")
    assert (c["TT"], c["EPC"], c["judge_outside"]) == (1, 1.0, 0)


def test_bad_truth_and_ragged_columns_raise():
    with pytest.raises(ValueError, match="outside dfew"):
        recognition_metrics(["happy"], ["joy"])
    with pytest.raises(ValueError, match="differ in length"):
        consistency_metrics(["happy"], [], ["happy"])


def test_empty_input_gives_nan_not_an_error():
    assert math.isnan(recognition_metrics([], [])["WAR"]) and math.isnan(consistency_metrics([], [], [])["EEA"])


def test_fcr_given_correct_is_nan_without_correct_predictions():
    assert math.isnan(consistency_metrics([None], ["sad"], ["sad"])["FCR_given_correct"])


labels_st = st.sampled_from(VOCABULARIES["dfew"])
noisy_st = st.one_of(st.none(), labels_st, st.sampled_from(["Happiness", "joy", "", " SAD ", "😀", "anger!"]),
                     st.text(max_size=10))


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(noisy_st, noisy_st, labels_st), max_size=30))
def test_metrics_properties(rows):
    p, j, y = ([r[i] for r in rows] for i in range(3))
    c = consistency_metrics(p, j, y)
    r = recognition_metrics(p, y)
    n = len(rows)
    assert c["TT"] + c["TF"] + c["FT"] + c["FF"] == n == c["n"] == r["n"]
    if n:
        for key in ("EEA", "FCR", "EPC"):
            assert 0.0 <= c[key] <= 1.0
        assert 0.0 <= r["WAR"] <= 1.0 and 0.0 <= r["UAR"] <= 1.0
        assert c["FCR"] <= min(c["EEA"], r["WAR"]) + 1e-12
        assert c["FCR"] == pytest.approx(r["WAR"] * c["FCR_given_correct"]) if r["WAR"] else c["FCR"] == 0
        assert (c["TT"] + c["TF"]) / n == pytest.approx(r["WAR"])  # "P correct" agrees with WAR
        norm_p = [normalize_label(x) or "<wrong>" for x in p]
        assert r["UAR"] == pytest.approx(balanced_accuracy_score(y, norm_p))
    assert c["unparseable"] == sum(x is None for x in p)


def test_bootstrap_is_deterministic_and_brackets_the_value():
    p, y = ["happy", "sad", "sad", "happy", None] * 20, ["happy", "sad", "happy", "happy", "sad"] * 20
    a = bootstrap_ci(recognition_metrics, p, y, n_resamples=300, seed=1)
    b = bootstrap_ci(recognition_metrics, p, y, n_resamples=300, seed=1)
    assert a == b and "per_class_recall" not in a
    for key in ("WAR", "UAR"):
        assert a[key]["low"] <= a[key]["value"] <= a[key]["high"]
        assert a[key]["high"] - a[key]["low"] > 0.05  # 100 clips: a genuine interval, not a point
    assert a["WAR"]["value"] == recognition_metrics(p, y)["WAR"] == 0.6
    assert a["n"] == {"value": 100.0, "low": 100.0, "high": 100.0}


def test_bootstrap_interval_shrinks_with_more_clips():
    def width(k):
        ci = bootstrap_ci(recognition_metrics, ["happy", "sad"] * k, ["happy"] * (2 * k), n_resamples=300)
        return ci["WAR"]["high"] - ci["WAR"]["low"]

    assert width(200) < width(10)


def test_bootstrap_passes_kwargs_and_accepts_float_metrics():
    ci = bootstrap_ci(consistency_metrics, P, J, Y, n_resamples=100, dataset="dfew")
    assert ci["EEA"]["value"] == 0.5 and 0.0 <= ci["EEA"]["low"] <= ci["EEA"]["high"] <= 1.0
    war = bootstrap_ci(lambda p, y: recognition_metrics(p, y)["WAR"], P, Y, n_resamples=100)
    assert set(war) == {"value"} and war["value"]["value"] == 5 / 8


def test_docstring_examples_run():
    assert doctest.testmod(metrics_module).failed == 0
