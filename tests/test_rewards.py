"""Rewards: a test per branch of docs/METHOD.md, hand-computed with a fake verifier, plus property tests."""
from __future__ import annotations

import doctest
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import erv_lab.rewards as rewards_module
from erv_lab.config import RewardConfig, load_config
from erv_lab.labels import GOEMOTIONS
from erv_lab.rewards import (
    REWARDS,
    ExplanationReward,
    accuracy_reward,
    build_reward_funcs,
    format_reward,
    is_well_formatted,
    parse_completion,
    stuffing_reason,
)

G = {name: i for i, name in enumerate(GOEMOTIONS)}


class FakeVerifier:
    """Fixed probabilities per sentence: ``table[text] = {goemotion: p}``; unknown text -> neutral 0.9.

    Counts calls and texts so tests can check the one-call-per-batch rule.
    """

    def __init__(self, table: dict[str, dict[str, float]] | None = None):
        self.table = table or {}
        self.calls: list[list[str]] = []

    def predict_proba(self, texts):
        self.calls.append(list(texts))
        out = np.zeros((len(texts), 28))
        for i, t in enumerate(texts):
            for name, p in self.table.get(t, {"neutral": 0.9}).items():
                out[i, G[name]] = p
        return out


# The worked example shared with the docstring and notebook 03: one sad, one neutral, one joyful sentence.
TABLE = {
    "Her eyes fill with tears.": {"sadness": 0.8, "neutral": 0.05},
    "She sits by the window.": {"neutral": 0.9},
    "Then she smiles.": {"joy": 0.7, "neutral": 0.05},
    "Her lips tremble.": {"neutral": 0.6, "sadness": 0.3},  # {neutral, sadness}: counts as non-neutral
    "Her jaw tightens.": {"sadness": 0.3, "fear": 0.5, "anger": 0.4},  # 3 above tau -> top 2 {fear, anger}
    "Her voice cracks.": {"sadness": 0.5, "fear": 0.3, "anger": 0.2},  # 3 above tau -> top 2 {sadness, fear}
    "She looks away.": {"sadness": 0.09, "fear": 0.05},  # nothing above tau -> argmax {sadness}
    "She keeps still.": {"neutral": 0.05},  # nothing above tau -> argmax {neutral}
    "She bites her lip.": {"nervousness": 0.7},
    "He sneers at them.": {"disapproval": 0.6},
    "He slumps, defeated.": {"grief": 0.4},
    "She sighs at the result.": {"disappointment": 0.5},
}
WORKED = "<think>Her eyes fill with tears. She sits by the window. Then she smiles.</think>\n<answer>sad</answer>"


def think(*sentences: str, answer: str = "sad") -> str:
    return f"<think>{' '.join(sentences)}</think>\n<answer>{answer}</answer>"


@pytest.fixture
def verifier():
    return FakeVerifier(TABLE)


# --------------------------------------------------------------------------- parse_completion
def test_parse_completion_strips_both_bodies():
    assert parse_completion("<think>\n a b \n</think> <answer>\n Sad \n</answer>") == ("a b", "Sad")


def test_parse_completion_missing_tags_give_none():
    assert parse_completion("just text") == (None, None)
    assert parse_completion("<think> a </think>") == ("a", None)
    assert parse_completion("<answer> sad </answer>") == (None, "sad")
    assert parse_completion(None) == (None, None)


def test_parse_completion_takes_first_pair_lazily():
    # the lazy pattern stops at the first closing tag; a stray closing tag before the opening one is ignored
    assert parse_completion("</think> x <think> a </think> <think> b </think>")[0] == "a"
    assert parse_completion("<answer> sad </think><answer> happy </answer>")[1] == "sad </think><answer> happy"


def test_parse_completion_reads_conversational_form():
    assert parse_completion([{"role": "assistant", "content": WORKED}])[1] == "sad"
    assert parse_completion([{"role": "assistant", "content": None}]) == (None, None)
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "<answer>fear</answer>"}]}]
    assert parse_completion(parts) == (None, "fear")


# --------------------------------------------------------------------------- format
@pytest.mark.parametrize("text, lazy, strict", [
    ("<think> a </think>\n<answer> sad </answer>", 1.0, 1.0),
    ("<think>a</think><answer>sad</answer>", 1.0, 1.0),  # whitespace between the blocks is optional
    ("<think>\nline 1.\nline 2.\n</think>\n\n<answer>\nsad\n</answer>", 1.0, 1.0),  # dot matches newlines
    ("<think></think><answer></answer>", 1.0, 1.0),  # empty bodies are allowed by the pattern
    (" <think> a </think><answer> sad </answer>", 0.0, 0.0),  # nothing else: not even leading space
    ("<think> a </think><answer> sad </answer>\n", 0.0, 0.0),  # ... nor trailing
    ("<think> a </think><answer> sad </answer> because", 0.0, 0.0),
    ("<answer> sad </answer><think> a </think>", 0.0, 0.0),  # wrong order
    ("<think> a <answer> sad </answer>", 0.0, 0.0),  # unclosed think
    ("<think> a </think>", 0.0, 0.0),
    ("", 0.0, 0.0),
    # the exploit a tiny policy found: the lazy pattern accepts it, the strict one does not
    ("<think> x </think><answer> sad </think><answer> happy </answer>", 1.0, 0.0),
    ("<think> a <think> b </think><answer> sad </answer>", 1.0, 0.0),  # nested opening tag
    ("<think> a </think><answer> <ANSWER>sad </answer>", 1.0, 0.0),  # tags in any case count
    ("<think> a </think><think> b </think><answer> sad </answer>", 1.0, 0.0),  # duplicated think
])
def test_format_reward_lazy_and_strict(text, lazy, strict):
    assert format_reward([text]) == [lazy]
    assert format_reward([text], strict=True) == [strict]


def test_format_reward_accepts_conversational_and_none():
    assert format_reward([[{"role": "assistant", "content": WORKED}], [{"role": "assistant", "content": None}],
                          None]) == [1.0, 0.0, 0.0]


# --------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("answer, truth, dataset, expected", [
    ("sad", "sad", "dfew", 1.0),
    ("  SAD ", "sad", "dfew", 1.0),  # case and whitespace
    ("\n Sadness.\n", "sad", "dfew", 1.0),  # multi-line body, synonym, punctuation
    ("happiness", "happy", None, 1.0),  # dataset absent -> dfew
    ("angry", "anger", "mafw", 1.0),  # synonym the other way
    ("Happy!", "happiness", "mafw", 1.0),
    ("anxious", "anxiety", "mafw", 1.0),
    ("happy", "sad", "dfew", 0.0),
    ("joy", "happy", "dfew", 0.0),  # outside the vocabulary
    ("contempt", "contempt", "mafw", 1.0),
    ("sad happy", "sad", "dfew", 0.0),  # two words are not a label
    ("sad\nhappy", "sad", "dfew", 0.0),
    ("", "sad", "dfew", 0.0),
])
def test_accuracy_reward_normalises_the_answer(answer, truth, dataset, expected):
    ds = None if dataset is None else [dataset]
    assert accuracy_reward([f"<think>x</think><answer>{answer}</answer>"], solution=[truth], dataset=ds) == [
        expected]


def test_accuracy_reward_without_answer_tag_is_zero():
    assert accuracy_reward(["sad", "<think>sad</think>", None, "<answer>sad"], solution=["sad"] * 4) == [0.0] * 4


def test_accuracy_reward_reads_wrapped_solution_and_extra_columns():
    out = accuracy_reward([WORKED, WORKED], solution=["<answer> sad </answer>", "<answer>Happy</answer>"],
                          dataset=["dfew", "dfew"], problem=["ignored", "ignored"])
    assert out == [1.0, 0.0]


def test_accuracy_reward_rejects_a_bad_ground_truth():
    with pytest.raises(ValueError, match="not a dfew label"):
        accuracy_reward([WORKED], solution=["joy"])
    with pytest.raises(ValueError, match="unknown dataset"):
        accuracy_reward([WORKED], solution=["sad"], dataset=["ferplus"])


# --------------------------------------------------------------------------- explanation: sentence variant
def test_worked_example_scores_one_half(verifier):
    # sets: {sadness}, {neutral}, {joy}; y = sad (25): m = 1, n_nn = 2 -> 1/2
    assert ExplanationReward(verifier)([WORKED], solution=["sad"]) == [0.5]


def test_missing_or_empty_think_scores_zero(verifier):
    texts = ["<answer>sad</answer>", "<think></think><answer>sad</answer>", "<think>  \n </think>", None,
             "</think> Her eyes fill with tears. <think>"]
    assert ExplanationReward(verifier)(texts, solution=["sad"] * 5) == [0.0] * 5
    assert verifier.calls == []  # no sentence anywhere: the verifier is not even called


def test_neutral_truth_divides_by_all_sentences(verifier):
    # sets {sadness}, {neutral}, {joy}; y = neutral: m = 1 (sentence 2), n = 3 -> 1/3
    assert ExplanationReward(verifier)([WORKED], solution=["neutral"]) == [pytest.approx(1 / 3)]


def test_all_neutral_sentences_score_zero_for_an_emotional_truth(verifier):
    # n_nn = 0 -> 0 (not 0/0); for y = neutral the same rationale scores m / n = 2 / 2
    text = think("She sits by the window.", "She keeps still.")
    reward = ExplanationReward(verifier)
    assert reward([text, text], solution=["sad", "neutral"]) == [0.0, 1.0]


def test_neutral_pair_counts_as_non_neutral(verifier):
    # sets {neutral, sadness}, {neutral}, {joy}; y = sad: m = 1, n_nn = 2 -> 1/2; y = happy: m = 1, n_nn = 2
    text = think("Her lips tremble.", "She sits by the window.", "Then she smiles.")
    assert ExplanationReward(verifier)([text, text], solution=["sad", "happy"]) == [0.5, 0.5]
    # y = neutral: {neutral, sadness} and {neutral} both contain neutral: m = 2, n = 3
    assert ExplanationReward(verifier)([text], solution=["neutral"]) == [pytest.approx(2 / 3)]


def test_more_than_two_labels_keeps_the_top_two(verifier):
    # "Her jaw tightens." -> {fear .5, anger .4} (sadness .3 dropped); "Her voice cracks." -> {sadness, fear}
    text = think("Her jaw tightens.", "Her voice cracks.")
    reward = ExplanationReward(verifier)
    assert reward([text, text, text], solution=["sad", "fear", "angry"]) == [0.5, 1.0, 0.5]
    assert ExplanationReward(verifier, top_k=3)([text], solution=["sad"]) == [1.0]


def test_nothing_above_tau_falls_back_to_the_argmax(verifier):
    # "She looks away." -> {sadness} (argmax .09); "She keeps still." -> {neutral} (argmax)
    text = think("She looks away.", "She keeps still.")
    assert ExplanationReward(verifier)([text], solution=["sad"]) == [1.0]  # m = 1, n_nn = 1
    # with tau = 0.08, sadness (.09) is above tau on its own: same set
    assert ExplanationReward(verifier, threshold=0.08)([text], solution=["sad"]) == [1.0]


def test_quoted_sentence_with_periods_stays_one_sentence():
    v = FakeVerifier({'She says "I am fine. Really." Then she cries.': {"sadness": 0.9}, "Bye.": {"joy": 0.9}})
    text = think('She says "I am fine. Really." Then she cries.', "Bye.")
    # the splitter never cuts inside quotes, nor after a closing quote: 2 sentences, m = 1, n_nn = 2
    assert ExplanationReward(v)([text], solution=["sad"]) == [0.5]
    assert v.calls == [['She says "I am fine. Really." Then she cries.', "Bye."]]


@pytest.mark.parametrize("sentence, truth", [
    ("She bites her lip.", "anxiety"),  # -> nervousness (19)
    ("He sneers at them.", "contempt"),  # -> disapproval (10)
    ("He slumps, defeated.", "helplessness"),  # -> grief (16)
    ("She sighs at the result.", "disappointment"),  # -> disappointment (9)
])
def test_mafw_proxies_map_to_their_goemotions_label(verifier, sentence, truth):
    text = think(sentence, "She sits by the window.")  # + a neutral sentence: m = 1, n_nn = 1
    assert ExplanationReward(verifier)([text], solution=[truth], dataset=["mafw"]) == [1.0]
    assert ExplanationReward(verifier)([text], solution=["sadness"], dataset=["mafw"]) == [0.0]


def test_explanation_targets_the_truth_not_the_answer(verifier):
    # same rationale, answer "happy": the sentence variant still scores against y = sad
    text = think("Her eyes fill with tears.", answer="happy")
    assert ExplanationReward(verifier)([text], solution=["sad"]) == [1.0]


def test_verifier_is_called_once_per_batch(verifier):
    batch = [WORKED, think("Her lips tremble."), "<answer>sad</answer>", think("Her jaw tightens.")] * 4
    ExplanationReward(verifier)(batch, solution=["sad"] * len(batch))
    assert len(verifier.calls) == 1 and len(verifier.calls[0]) == 4 * (3 + 1 + 0 + 1)


def test_conversational_completions_are_scored(verifier):
    conv = [[{"role": "assistant", "content": WORKED}]]
    assert ExplanationReward(verifier)(conv, solution=["<answer> sad </answer>"]) == [0.5]


# --------------------------------------------------------------------------- explanation: variants
def test_with_neutral_variant_always_divides_by_n(verifier):
    # worked example: m = 1, n = 3 -> 1/3 (the paper's variant gives 1/2)
    assert ExplanationReward(verifier, variant="sentence_with_neutral")([WORKED], solution=["sad"]) == [
        pytest.approx(1 / 3)]


def test_consistency_variant_targets_the_models_answer(verifier):
    text_happy = think("Her eyes fill with tears.", "She sits by the window.", "Then she smiles.", answer="Happy")
    reward = ExplanationReward(verifier, variant="consistency")
    # target = happy (joy): m = 1, n_nn = 2; the ground truth is not needed
    assert reward([text_happy]) == [0.5]
    # no parseable answer, or an answer outside the vocabulary -> 0
    assert reward(["<think>Then she smiles.</think>", think("Then she smiles.", answer="joy")]) == [0.0, 0.0]


def test_paragraph_variant_uses_the_whole_rationale_at_tau_half():
    v = FakeVerifier({"A. B.": {"sadness": 0.4, "joy": 0.2}, "C. D.": {"joy": 0.6, "sadness": 0.55},
                      "E. F.": {"joy": 0.6, "sadness": 0.4}})
    reward = ExplanationReward(v, variant="paragraph")
    assert reward.threshold == 0.5
    texts = [think("A. B."), think("C. D."), think("E. F."), "<think></think>"]
    # {sadness} by argmax fallback -> 1; {joy, sadness} -> 1; {joy} -> 0; no rationale -> 0
    assert reward(texts, solution=["sad"] * 4) == [1.0, 1.0, 0.0, 0.0]
    assert v.calls == [["A. B.", "C. D.", "E. F."]]


def test_unknown_variant_and_bad_verifier_raise(verifier):
    with pytest.raises(ValueError, match="unknown explanation variant"):
        ExplanationReward(verifier, variant="softmax")
    with pytest.raises(TypeError):
        ExplanationReward(object())


def test_verifier_with_wrong_shape_raises():
    class Bad:
        def predict_proba(self, texts):
            return np.zeros((len(texts), 7))

    with pytest.raises(ValueError, match="expected"):
        ExplanationReward(Bad())([WORKED], solution=["sad"])


# --------------------------------------------------------------------------- anti-stuffing (deviation)
STUFFED = think("Her eyes fill with tears.", "Her eyes fill with tears.", "Sad, sad and sad!",
                "She sits by the window.", "She sits by the window.")


def test_anti_stuffing_is_off_by_default_and_changes_only_stuffed_sentences():
    v = FakeVerifier({"Her eyes fill with tears.": {"sadness": 0.9}, "Sad, sad and sad!": {"sadness": 0.99},
                      "She sits by the window.": {"neutral": 0.9}})
    # paper: sets {sad}, {sad}, {sad}, {neutral}, {neutral}: m = 3, n_nn = 3 -> 1
    assert ExplanationReward(v)([STUFFED], solution=["sad"]) == [1.0]
    # guard: only sentence 1 is credited (2 repeats, 3 is keywords); the repeated neutral sentence 5
    # joins the denominator: m = 1, n_nn = 3 + 1 -> 1/4
    guarded = ExplanationReward(v, anti_stuffing=True)
    assert guarded([STUFFED], solution=["sad"]) == [0.25]
    d = guarded.details([STUFFED], solution=["sad"])[0]
    assert [s["stuffing"] for s in d["sentences"]] == [None, "repeat", "keywords", None, "repeat"]
    assert [s["credited"] for s in d["sentences"]] == [True, False, False, False, False]
    assert [s["counted"] for s in d["sentences"]] == [True, True, True, False, True]
    # ordinary prose is unaffected: the worked example keeps its 1/2
    assert ExplanationReward(FakeVerifier(TABLE), anti_stuffing=True)([WORKED], solution=["sad"]) == [0.5]


@pytest.mark.parametrize("sentence, earlier, reason", [
    ("Happy happy joy.", [], "keywords"),
    ("smile smile joy happy", [], "keywords"),
    ("😀😀😀.", [], "keywords"),  # no word at all
    ("Her brows drop sad sad sad.", [], "repetition"),
    ("HER EYES fill with tears!", ["Her eyes fill with tears."], "repeat"),
    ("Her eyes fill with tears.", ["She sits."], None),
    ("She looks sad.", [], None),
    ("The man and the woman argue about the bill.", [], None),
])
def test_stuffing_reason(sentence, earlier, reason):
    assert stuffing_reason(sentence, earlier) == reason


# --------------------------------------------------------------------------- details, registry, pickling
def test_details_expose_per_sentence_labels(verifier):
    d = ExplanationReward(verifier).details([WORKED], solution=["sad"])[0]
    assert (d["reward"], d["target"], d["target_index"], d["n"], d["n_nn"], d["m"]) == (0.5, "sad", 25, 3, 2, 1)
    first = d["sentences"][0]
    assert first["text"] == "Her eyes fill with tears." and first["names"] == ["sadness"]
    assert first["probs"] == [0.8] and first["target_prob"] == 0.8 and first["matched"] and first["credited"]
    assert d["sentences"][1]["neutral_only"] and not d["sentences"][1]["counted"]


def test_rewards_add_their_columns_to_trls_completion_logs(verifier):
    """In training TRL passes ``log_extra`` (and other columns such as ``clip_id``): the accuracy reward logs the
    clip and its target, the explanation reward each sentence's verifier labels; outside training nothing."""
    logged = {}
    log_extra = lambda column, values: logged.setdefault(column, []).extend(values)  # noqa: E731 (TRL's extends)
    funcs, _ = build_reward_funcs(load_config("cpu-tiny"), verifier)
    kwargs = dict(solution=["sad", "sad"], dataset=["dfew", "dfew"], clip_id=["00273", "00273"], log_extra=log_extra,
                  log_metric=lambda name, value: None, trainer_state=None, prompts=[[], []], completion_ids=[[], []])
    scores = [f([WORKED, "<think>Sad sad.</think><answer>happy</answer>"], **kwargs) for f in funcs]
    assert scores[1] == [1.0, 0.0]
    assert logged == {"clip_id": ["00273", "00273"], "solution": ["sad", "sad"],
                      "explanation/labels": [["sadness ✓", "neutral", "joy"], ["neutral (stuffing: keywords)"]]}
    assert accuracy_reward([WORKED], ["sad"]) == [1.0] and ExplanationReward(verifier)([WORKED], ["sad"]) == [0.5]


def test_build_reward_funcs_from_the_cpu_preset(verifier):
    cfg = load_config("cpu-tiny")
    funcs, weights = build_reward_funcs(cfg, verifier)
    assert [f.__name__ for f in funcs] == ["format", "accuracy", "explanation"] and weights == [1.0, 1.0, 1.0]
    assert funcs[0].options == {"strict": True} and funcs[2].anti_stuffing
    lazy_exploit = "<think> x </think><answer> sad </think><answer> happy </answer>"
    assert funcs[0]([lazy_exploit, WORKED]) == [0.0, 1.0]
    total = [sum(w * r for w, r in zip(weights, rs))
             for rs in zip(*(f([WORKED], solution=["sad"], dataset=["dfew"]) for f in funcs))]
    assert total == [2.5]  # format 1 + accuracy 1 + explanation 1/2


def test_build_reward_funcs_defaults_are_paper_exact(verifier):
    funcs, _ = build_reward_funcs(RewardConfig(), verifier)
    assert funcs[0].options == {"strict": False} and not funcs[2].anti_stuffing
    assert (funcs[2].variant, funcs[2].threshold, funcs[2].top_k) == ("sentence", 0.1, 2)
    funcs, _ = build_reward_funcs(RewardConfig(rewards=["explanation_paragraph"], weights=[1.0]), verifier)
    assert (funcs[0].__name__, funcs[0].variant, funcs[0].threshold) == ("explanation_paragraph", "paragraph", 0.5)


def test_build_reward_funcs_errors_name_the_valid_choices(verifier):
    with pytest.raises(ValueError, match="valid: accuracy, explanation"):
        build_reward_funcs(RewardConfig(rewards=["length"], weights=[1.0]), verifier)
    with pytest.raises(ValueError, match="needs a verifier"):
        build_reward_funcs(RewardConfig(), None)
    assert {"format", "accuracy", "explanation"} <= set(REWARDS)


def test_rewards_pickle_and_keep_their_names(verifier):
    funcs, _ = build_reward_funcs(RewardConfig(), verifier)
    for f in funcs:
        g = pickle.loads(pickle.dumps(f))
        assert g.__name__ == f.__name__ and g([WORKED], solution=["sad"]) == f([WORKED], solution=["sad"])


def test_docstring_examples_run():
    assert doctest.testmod(rewards_module).failed == 0


# --------------------------------------------------------------------------- properties: never raise, in [0, 1]
FRAGMENTS = ["<think>", "</think>", "<answer>", "</answer>", "<think> ", " </answer>", "\n", " ", ".", "!", "?",
             '"', "sad", "Happy", "neutral", "Her eyes fill with tears.", "Then she smiles.", "She sits by the window.",
             "😀", "悲しい。", "مرحبا.", "  ", "<ANSWER>", "</think>\n<answer>"]
completion_st = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join),
    st.text(max_size=200),
    st.none(),
    st.lists(st.sampled_from(FRAGMENTS), max_size=10).map(lambda x: [{"role": "assistant", "content": "".join(x)}]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(completion_st, min_size=1, max_size=6), st.sampled_from(["dfew", "mafw"]), st.data())
def test_rewards_never_raise_and_stay_in_unit_interval(completions, dataset, data):
    vocab = ["happy", "sad", "neutral", "angry"] if dataset == "dfew" else ["anger", "anxiety", "contempt", "neutral"]
    solution = [data.draw(st.sampled_from(vocab)) for _ in completions]
    kw = {"solution": solution, "dataset": [dataset] * len(completions)}
    funcs = [format_reward, lambda c, **k: format_reward(c, strict=True, **k), accuracy_reward]
    funcs += [ExplanationReward(FakeVerifier(TABLE), variant=v, anti_stuffing=a)
              for v in ("sentence", "sentence_with_neutral", "paragraph", "consistency") for a in (False, True)]
    for f in funcs:
        out = f(completions, **kw)
        assert len(out) == len(completions) and all(0.0 <= r <= 1.0 for r in out)
        assert f(completions, **kw) == out  # deterministic


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_strict_format_implies_lazy_format(body):
    text = f"<think>{body}</think><answer>{body}</answer>"
    assert not is_well_formatted(text, strict=True) or is_well_formatted(text)


def test_long_and_odd_completions_do_not_raise():
    v = FakeVerifier(TABLE)
    long = think("Her eyes fill with tears. " * 400 + 'She says "never. Her eyes fill with tears.', answer="sad")
    odd = ["<think>" + "x" * 10_000, "<think>悲しい。😀 مرحبا! Her eyes fill with tears.</think><answer>sad</answer>",
           "<think><think></think></think><answer><answer>sad</answer></answer>"]
    assert len(long) > 10_000
    out = ExplanationReward(v, anti_stuffing=True)([long] + odd, solution=["sad"] * 4)
    assert all(0.0 <= r <= 1.0 for r in out) and len(v.calls) == 1
    # 400 tear sentences (399 of them repeats) + one piece that the unclosed quote keeps together (unknown to
    # the fake -> neutral): guard m = 1, n_nn = 400 (repeats always count); paper m = 400, n_nn = 400
    d = ExplanationReward(v, anti_stuffing=True).details([long], solution=["sad"])[0]
    assert (d["n"], d["m"], d["n_nn"]) == (401, 1, 400)
    assert d["sentences"][-1]["text"] == 'She says "never. Her eyes fill with tears.'
    assert ExplanationReward(v)([long], solution=["sad"]) == [1.0]


def test_grounding_reward_pays_sentences_that_describe_only_cues_the_clip_has():
    import json as _json

    from erv_lab.rewards import REWARDS, grounding_reward

    cues = _json.dumps({"visual": [{"cue": "smile"}], "audio": [{"cue": "lively"}]})
    smile = "Her lips curve upward."             # describes smile: present
    brow = "Her eyebrows are lowered and drawn together."  # describes brow_lower: absent
    plain = "She is happy."                      # describes no cue
    comp = lambda *s: f"<think>{' '.join(s)}</think><answer>happy</answer>"  # noqa: E731
    got = grounding_reward([comp(smile, plain), comp(smile, brow), comp("Her eyebrows are lowered and drawn together and her lips curve upward."), comp(plain),
                            "<answer>happy</answer>"], cues=[cues] * 5)
    assert got == [0.5, 0.5, 0.0, 0.0, 0.0]  # 1 of 2; 1 of 2; one sentence with an absent cue; no cue; no think
    assert REWARDS["grounding"]()([comp(smile)], cues=[cues]) == [1.0]
    with pytest.raises(ValueError, match="cue list"):
        grounding_reward([comp(smile)])  # real data: no cues column
    with pytest.raises(ValueError, match="cue list"):
        grounding_reward([comp(smile)], cues=[_json.dumps({})])


def test_the_grounding_reward_is_refused_on_real_data_when_the_config_loads():
    from erv_lab.config import load_config

    with pytest.raises(ValueError, match="grounding"):
        load_config("smoke", ["data.source=dfew", "data.root=/data/DFEW",
                              "reward.rewards=[format,accuracy,explanation,grounding]", "reward.weights=[1,1,1,1]"])
    from erv_lab import stages

    real = load_config("smoke", ["data.source=dfew", "data.root=/data/DFEW", "grpo.grounding_ablation=true"])
    with pytest.raises(ValueError, match="cue list"):  # the ablation arm refuses before it trains anything
        stages.grounding_ablation(real, "/nonexistent-run")
