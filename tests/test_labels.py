"""labels.py: the paper's splitter, label sets, normalisation and the GoEmotions map (docs/METHOD.md)."""
from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import erv_lab.labels as labels_module
from erv_lab.labels import (
    GOEMOTIONS,
    LOSSY_PROXIES,
    NEUTRAL_INDEX,
    VOCABULARIES,
    label_set,
    normalize_label,
    split_sentences,
    to_goemotions,
    vocabulary,
)


# --------------------------------------------------------------------------- split_sentences
@pytest.mark.parametrize("text, expected", [
    ("Her brows drop. Her lips tremble.", ["Her brows drop.", "Her lips tremble."]),
    ("Really?! Yes. No!  Why?", ["Really?!", "Yes.", "No!", "Why?"]),  # ! and ?, runs of them, double spaces
    ("A.\nB.\tC.", ["A.", "B.", "C."]),  # any whitespace is a break point
    ("Wait... She cries.", ["Wait...", "She cries."]),
    ("It lasts 3.5 seconds. Then stops", ["It lasts 3.5 seconds.", "Then stops"]),  # no space after the dot
    ("no terminal punctuation", ["no terminal punctuation"]),
    # abbreviations are not special-cased: the paper's rule cuts after "Dr." too
    ("Dr. Lee frowns. E.g. a scowl.", ["Dr.", "Lee frowns.", "E.g.", "a scowl."]),
    # never inside double quotes; and the space after a closing quote is not a break (it follows '"')
    ('She says "no. never." Then she smiles! ', ['She says "no. never." Then she smiles!']),
    ('"Stop." He leaves.', ['"Stop." He leaves.']),
    ('He said "hi." she said "bye". Then. Done.', ['He said "hi." she said "bye".', "Then.", "Done."]),
    # an unclosed quote keeps the rest of the text together
    ('She whispers "no. Please. Stop', ['She whispers "no. Please. Stop']),
    ('Fine. "Open quote. Never closed. Ever.', ["Fine.", '"Open quote. Never closed. Ever.']),
    ("悲しい。 She cries. 😀 مرحبا! ok", ["悲しい。 She cries.", "😀 مرحبا!", "ok"]),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize("empty", ["", None, "   ", "\n\t "])
def test_split_sentences_of_nothing_is_empty(empty):
    assert split_sentences(empty) == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab .!?"\n😀')), max_size=80))
def test_split_sentences_keeps_every_non_space_character(text):
    pieces = split_sentences(text)
    assert all(p and p == p.strip() for p in pieces)
    assert "".join(pieces).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")


# --------------------------------------------------------------------------- label_set
def probs(**named: float) -> list[float]:
    p = [0.0] * 28
    for name, value in named.items():
        p[GOEMOTIONS.index(name)] = value
    return p


def test_label_set_keeps_labels_above_tau_most_probable_first():
    assert label_set(probs(joy=0.3, neutral=0.6)) == [NEUTRAL_INDEX, GOEMOTIONS.index("joy")]


def test_label_set_caps_at_top_k():
    p = probs(sadness=0.3, fear=0.5, anger=0.4)
    assert label_set(p) == [GOEMOTIONS.index("fear"), GOEMOTIONS.index("anger")]
    assert label_set(p, top_k=1) == [GOEMOTIONS.index("fear")]
    assert len(label_set(p, top_k=3)) == 3


def test_label_set_falls_back_to_argmax():
    assert label_set(probs(sadness=0.09, fear=0.05)) == [GOEMOTIONS.index("sadness")]
    assert label_set([0.0] * 28) == [0]  # ties -> lowest index


def test_label_set_threshold_is_strict():
    assert label_set(probs(joy=0.1, neutral=0.05)) == [GOEMOTIONS.index("joy")]  # 0.1 is not > 0.1: argmax
    assert label_set(probs(joy=0.1, fear=0.11)) == [GOEMOTIONS.index("fear")]
    assert label_set(probs(joy=0.6, sadness=0.55), threshold=0.5) == [17, 25]  # the paragraph variant's tau


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=28, max_size=28), st.floats(0.01, 0.99), st.integers(1, 4))
def test_label_set_size_and_order(p, tau, k):
    s = label_set(p, tau, k)
    assert 1 <= len(s) <= k and len(set(s)) == len(s)
    assert [p[c] for c in s] == sorted((p[c] for c in s), reverse=True)
    assert all(p[c] > tau for c in s) or s == [max(range(28), key=lambda c: (p[c], -c))]


# --------------------------------------------------------------------------- normalize_label
@pytest.mark.parametrize("text, dataset, expected", [
    ("happy", "dfew", "happy"), ("Happiness", "dfew", "happy"), ("happy", "mafw", "happiness"),
    ("ANGER.", "dfew", "angry"), ("angry", "mafw", "anger"),
    ("sadness", "dfew", "sad"), ("Sad!", "mafw", "sadness"),
    ("anxious", "mafw", "anxiety"), ("helpless", "mafw", "helplessness"),
    ("disappointed", "mafw", "disappointment"), ("contemptuous", "mafw", "contempt"),
    ("  neutral\n", None, "neutral"), ("ＳＡＤ", "dfew", "sad"),  # NFKC folds full-width letters
    ("'fear'", "dfew", "fear"), ("<surprise>", "dfew", "surprise"),
    ("contempt", "dfew", None), ("anxiety", "dfew", None),  # MAFW-only labels are outside DFEW
    ("joy", "dfew", None), ("sad happy", "dfew", None), ("", "dfew", None), ("😀", "mafw", None),
    (None, "dfew", None), (3, "dfew", None),
])
def test_normalize_label(text, dataset, expected):
    assert normalize_label(text, dataset) == expected


def test_every_vocabulary_label_normalises_to_itself():
    for ds, vocab in VOCABULARIES.items():
        assert [normalize_label(v.upper(), ds) for v in vocab] == list(vocab)


def test_unknown_dataset_raises():
    with pytest.raises(ValueError, match="unknown dataset"):
        vocabulary("ferplus")
    assert vocabulary(None) == VOCABULARIES["dfew"]


# --------------------------------------------------------------------------- to_goemotions
@pytest.mark.parametrize("label, dataset, goemotion", [
    ("happy", "dfew", "joy"), ("sad", "dfew", "sadness"), ("neutral", "dfew", "neutral"),
    ("angry", "dfew", "anger"), ("surprise", "dfew", "surprise"), ("disgust", "dfew", "disgust"),
    ("fear", "dfew", "fear"),
    ("happiness", "mafw", "joy"), ("anger", "mafw", "anger"), ("sadness", "mafw", "sadness"),
    # the four lossy MAFW proxies
    ("contempt", "mafw", "disapproval"), ("anxiety", "mafw", "nervousness"),
    ("helplessness", "mafw", "grief"), ("disappointment", "mafw", "disappointment"),
])
def test_to_goemotions_follows_the_papers_map(label, dataset, goemotion):
    assert GOEMOTIONS[to_goemotions(label, dataset)] == goemotion


def test_paper_indices_and_proxy_table_agree():
    assert len(GOEMOTIONS) == 28 and NEUTRAL_INDEX == 27
    assert [to_goemotions(v, "dfew") for v in VOCABULARIES["dfew"]] == [17, 25, 27, 2, 26, 11, 14]
    for label, proxy in LOSSY_PROXIES.items():
        assert GOEMOTIONS[to_goemotions(label, "mafw")] == proxy


def test_to_goemotions_rejects_labels_outside_the_vocabulary():
    with pytest.raises(ValueError, match="not a dfew label"):
        to_goemotions("contempt", "dfew")
    with pytest.raises(ValueError):
        to_goemotions("joy", "mafw")


def test_docstring_examples_run():
    assert doctest.testmod(labels_module).failed == 0
