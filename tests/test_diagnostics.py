"""Reward-hacking diagnostics on hand-made honest and hacked rationales."""
import numpy as np
import pytest

from erv_lab import diagnostics as D
from erv_lab.config import load_config


def wrap(think, answer="sad"):
    return f"<think>{think}</think>\n<answer>{answer}</answer>"


HONEST = [wrap("Her lip corners drop. She speaks softly and slowly. She looks at the floor."),
          wrap("His brows lower and his lips press. The voice is loud.", "angry")]
STUFFED = [wrap("Sad sad sad. She is sad. She is sad. Tears sorrow sad."),
           wrap("Sad. Sad. Sad. Sad.")]


def record(comp, reward, neutral_flags=()):
    think = comp.split("<think>")[1].split("</think>")[0]
    return {"completion": comp, "think": think, "rewards": {"explanation": reward},
            "sentences": [{"neutral_only": f} for f in neutral_flags]}


def test_distinct_n_counts_unique_ngrams():
    assert D.distinct_n(["sad sad sad sad"], 1) == 0.25  # 1 unique / 4
    assert D.distinct_n(["a b c", "a b d"], 2) == 0.75  # {ab, bc, bd} / 4
    assert D.distinct_n([""], 2) == 0.0


def test_text_stats_of_honest_rationales_show_no_stuffing():
    s = D.text_stats(HONEST)
    assert s["sentences_per_rationale"] == 2.5  # 3 + 2 sentences
    assert s["repeated_sentence_share"] == 0 and s["stuffed_sentence_share"] == 0
    assert s["distinct_1"] > 0.8 and s["emotion_word_density"] < 0.1


def test_text_stats_of_stuffed_rationales_count_repeats_and_keyword_lists():
    s = D.text_stats(STUFFED)
    # rationale 1: "Sad sad sad." (keywords) "She is sad." "She is sad." (repeat) "Tears sorrow sad." (keywords)
    # rationale 2: "Sad." (keywords) + 3 repeats.  -> 8 sentences: repeats 4, keyword-only 3
    assert s["sentences_per_rationale"] == 4
    assert s["repeated_sentence_share"] == pytest.approx(4 / 8)
    assert s["stuffed_sentence_share"] == pytest.approx(3 / 8)
    # 16 words, 12 of them emotion words (sad x10, tears, sorrow); 5 distinct words
    assert s["emotion_word_density"] == 12 / 16 and s["distinct_1"] == 5 / 16


def test_missing_think_counts_as_an_empty_rationale():
    s = D.text_stats(["<answer>sad</answer>", HONEST[0]])
    assert s["empty_rationale_share"] == 0.5


def test_neutral_share_and_training_drift():
    recs = [record(HONEST[0], 0.5, [True, False, False]), record(HONEST[1], 1.0, [True])]
    assert D.neutral_share(recs) == 0.5
    hist = [{"step": 10, "completions/mean_length": 40.0, "rewards/explanation/mean": 0.2},
            {"step": 20, "loss": 0.1}, {"step": 30, "completions/mean_length": 80.0, "rewards/explanation/mean": 0.6}]
    assert D.length_drift(hist) == {"first": 40.0, "last": 80.0, "ratio": 2.0}
    assert D.reward_trend(hist) == {"first": 0.2, "last": 0.6}
    assert D.length_drift([]) == {"first": None, "last": None, "ratio": None}


def test_a_stuffing_arm_with_a_reward_judge_gap_is_flagged_with_examples():
    honest = D.arm_diagnostics([record(c, 0.5) for c in HONEST], {"EEA": 0.45})
    hacked_recs = [record(c, 0.3) for c in STUFFED]
    hist = [{"rewards/explanation/mean": 0.1}, {"rewards/explanation/mean": 0.3}]
    hacked = D.arm_diagnostics(hacked_recs, {"EEA": 0.10}, hist)
    assert hacked["reward_judge_gap"] == pytest.approx(0.20)  # the prototype's 0.29 vs 0.10 pattern
    flag = D.flag_hacking(hacked, reference=honest, records=hacked_recs)
    assert flag["flagged"]
    assert any("exceeds the judge" in r for r in flag["reasons"])
    assert any("keyword" in r for r in flag["reasons"]) and any("repeat" in r for r in flag["reasons"])
    assert any("rose 0.10 -> 0.30" in r for r in flag["reasons"])
    assert flag["examples"] and "Sad" in flag["examples"][0]


def test_an_honest_arm_is_not_flagged():
    recs = [record(c, 0.5) for c in HONEST]
    honest = D.arm_diagnostics(recs, {"EEA": 0.45})
    flag = D.flag_hacking(honest, reference=honest, records=recs)
    assert flag == {"flagged": False, "reasons": [], "examples": []}


def test_diagnostics_table_uses_sft_as_reference():
    def clip(sft, erv):
        return {"clip_id": "c", "label": "sad", "arms": {"sft": {"sample": sft}, "erv": {"sample": erv}}}
    records = [clip(record(HONEST[0], 0.4), record(STUFFED[0], 0.9)),
               clip(record(HONEST[1], 0.4), record(STUFFED[1], 0.9))]
    table = D.diagnostics_table(records, {"sft": {"EEA": 0.4}, "erv": {"EEA": 0.3}})
    assert set(table) == {"sft", "erv"}
    assert table["erv"]["hacking"]["flagged"] and not table["sft"]["hacking"]["flagged"]
    assert any("distinct-2" in r or "density" in r for r in table["erv"]["hacking"]["reasons"])


class KeywordVerifier:
    """'happy', 'joy' or 'smile' in a sentence -> joy 0.9; 'frown' or 'angry' -> anger 0.9; else neutral 0.9."""

    def predict_proba(self, texts):
        out = np.full((len(texts), 28), 0.01)
        for i, t in enumerate(texts):
            low = t.lower()
            k = 27
            if any(w in low for w in ("happy", "joy", "smile")):
                k = 17
            elif "frown" in low or "angry" in low:
                k = 2
            out[i, k] = 0.9
        return out


def test_gaming_probes_of_the_verifier_issue_through_the_reward():
    rows = {r["probe"]: r for r in D.probe_table(KeywordVerifier(), load_config("smoke"))}
    # the keyword verifier is fooled by stuffing; the paper's reward pays it, the guard does not
    assert rows["keyword stuffing"]["reward_paper"] == 1.0 and rows["keyword stuffing"]["reward_guarded"] == 0.0
    # "She looks happy." x 4: all four credited by the paper's reward; the guard credits only the first (1/4)
    assert rows["repetition"]["reward_paper"] == 1.0 and rows["repetition"]["reward_guarded"] == 0.25
    # honest prose keeps its credit; negation fools both (the guard does not read meaning)
    assert rows["control: described cue"]["reward_paper"] == rows["control: described cue"]["reward_guarded"] == 1.0
    assert rows["negation"]["reward_guarded"] == 1.0
    assert rows["negation (anger)"]["target"] == "angry"
