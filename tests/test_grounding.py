"""Cue grounding on hand-made rationales: which cues a sentence describes, and whether the clip shows them."""
import json

from erv_lab import grounding as G

SAD_CLIP = {"label": "sad", "cues": json.dumps({
    "visual": [{"cue": "lip_corner_down", "strength": 0.8}, {"cue": "eyelid_droop", "strength": 0.6},
               {"cue": "gaze_shift", "strength": 0.3, "distractor": True}],
    "audio": [{"cue": "soft", "strength": 0.7}]})}


def test_described_cues_accept_any_person_and_ignore_readings_without_a_cue():
    assert G.described_cues("The corners of his mouth are pulled down, a sign of sorrow.") == ["lip_corner_down"]
    assert G.described_cues("In the audio, the speaker speaks softly.") == ["soft"]
    assert G.described_cues("Her eyes dart from side to side and her voice is quiet.") == ["gaze_shift", "soft"]
    assert G.described_cues("Overall, she seems sad.") == [] and G.described_cues("") == []


def test_a_coherent_rationale_can_still_describe_an_absent_cue():
    # the example: sad words, anger's brow
    per = G.sentence_grounding("Her eyebrows are lowered and drawn together, showing sadness. Her voice is quiet.",
                               G.clip_cues(SAD_CLIP))
    assert [s["absent"] for s in per] == [["brow_lower"], []]


def test_distractor_cues_count_as_present():
    per = G.sentence_grounding("Her gaze keeps shifting.", G.clip_cues(SAD_CLIP))
    assert per[0]["cues"] == ["gaze_shift"] and per[0]["absent"] == []


def test_metrics_by_hand():
    thinks = ["The corners of her mouth are pulled down. Her eyebrows shoot up.",  # 1 of 2 cues present
              "Her eyelids hang heavy. She speaks softly. Overall, she seems sad.",  # grounded
              "She seems calm."]                                                    # describes nothing
    examples = [SAD_CLIP] * 3
    m = G.grounding_metrics(thinks, examples, judged=["sad", "sad", "neutral"])
    assert m["n_described_cues"] == 4 and m["grounded_cue_rate"] == 0.75
    assert m["n_sentences"] == 6 and m["absent_cue_sentence_share"] == round(1 / 6, 4)
    assert m["EEA"] == round(2 / 3, 4) and m["n_grounded"] == 2 and m["EEA_grounded"] == 0.5


def test_real_data_has_no_grounding():
    real = {"label": "sad", "cues": "{}"}
    assert G.clip_cues(real) is None
    m = G.grounding_metrics(["Her voice is quiet."], [real], ["sad"])
    assert m["n"] == 0 and m["grounded_cue_rate"] is None and m["EEA_grounded"] is None
    assert G.sentence_grounding("Her voice is quiet.", None)[0]["absent"] is None


def test_the_phrases_are_the_generators_own():
    from erv_lab.rationales import AUDIO_PHRASES, VISUAL_PHRASES

    for cue, phrases in {**VISUAL_PHRASES, **AUDIO_PHRASES}.items():
        for ph in phrases:
            text = ph.format(p="her", s="she", P="Her", S="She").capitalize() + "."
            assert cue in G.described_cues(text), (cue, text)
