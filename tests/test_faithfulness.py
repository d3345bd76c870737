"""Modality faithfulness and step necessity (erv_lab.faithfulness): hand-made decodes, hand-counted shares."""
import numpy as np
import pytest
from PIL import Image

from erv_lab import faithfulness as F

FACE = "Her lips curve upward."        # smile: a facial cue
VOICE = "Her voice trembles."          # tremor: a voice cue
PLAIN = "She seems to feel it."        # no cue


def comp(answer, *sentences):
    return f"<think>{' '.join(sentences)}</think><answer>{answer}</answer>"


def test_the_deciding_modality_and_each_cues_modality_come_from_the_generators_tables():
    assert F.DECIDED_BY == {"fear": "voice", "surprise": "voice", "angry": "face", "disgust": "face"}
    assert F.cue_modalities(f"{FACE} {PLAIN} {VOICE}") == ["face", "voice"]
    assert F.cue_modalities(None) == []


def test_ablate_blanks_the_frames_or_silences_the_track_and_keeps_shapes():
    ex = {"frames": [Image.new("RGB", (16, 16), (200, 10, 10))] * 2, "spectrogram": Image.new("RGB", (32, 32), (255,) * 3),
          "prosody": "pitch high rising, voice loud, tempo fast", "label": "fear"}
    face = F.ablate(ex, "face")
    assert [f.size for f in face["frames"]] == [(16, 16)] * 2 and {np.asarray(f).std() for f in face["frames"]} == {0}
    assert np.asarray(face["frames"][0])[0, 0].tolist() == [F.GREY] * 3 and face["spectrogram"] is ex["spectrogram"]
    voice = F.ablate(ex, "voice")
    assert np.asarray(voice["spectrogram"]).shape == (32, 32, 3) and np.asarray(voice["spectrogram"]).max() == 0
    assert voice["prosody"] == "no audio" and voice["frames"] is ex["frames"]
    assert np.asarray(ex["frames"][0])[0, 0].tolist() == [200, 10, 10]  # the original row is untouched
    with pytest.raises(ValueError):
        F.ablate(ex, "smell")


def test_modality_scores_by_hand():
    labels = ["fear", "surprise", "angry", "happy"]
    decodes = {
        # as is: fear names a face cue first then a voice cue; surprise only a face cue; angry a face cue
        "as_is": [comp("fear", FACE, VOICE), comp("surprise", FACE), comp("angry", FACE), comp("happy", PLAIN)],
        # frames blanked: two rationales still describe the face (hallucination 2 of 4)
        "no_face": [comp("fear", VOICE), comp("fear", FACE), comp("disgust", FACE), comp("sad", PLAIN)],
        # silent: one rationale still describes the voice; fear and surprise are lost
        "no_voice": [comp("surprise", VOICE), comp("fear", FACE), comp("angry", FACE), comp("happy", FACE)],
    }
    s = F.modality_scores(decodes, labels, n_boot=200)
    assert s["accuracy"]["as_is"]["value"] == 1.0 and s["accuracy"]["no_face"]["value"] == 0.25
    assert s["accuracy"]["no_voice"]["value"] == 0.5
    assert s["accuracy_voice_decided"]["no_voice"]["value"] == 0.0 and s["accuracy_voice_decided"]["no_voice"]["n"] == 2
    assert s["accuracy_face_decided"]["no_face"]["value"] == 0.0 and s["accuracy_face_decided"]["as_is"]["n"] == 1
    assert s["hallucination"]["face_without_frames"]["value"] == 0.5
    assert s["hallucination"]["voice_without_sound"]["value"] == 0.25
    # deciding modality on fear, surprise (voice) and angry (face): described 2 of 3, first 1 of 3
    assert s["deciding_modality"]["described"]["value"] == pytest.approx(2 / 3)
    assert s["deciding_modality"]["first"]["value"] == pytest.approx(1 / 3)
    lo, hi = s["deciding_modality"]["described"]["ci"]
    assert 0 <= lo <= 2 / 3 <= hi <= 1


def test_a_sentence_whose_removal_flips_the_answer_is_necessary():
    def force(examples, thinks):  # a fake policy: "trembles" -> fear; otherwise "happy" if "curve" else neutral
        return ["fear" if "trembles" in t else "happy" if "curve" in t else "neutral" for t in thinks]

    exs = [{"label": "fear"}, {"label": "happy"}, {"label": "sad"}]
    thinks = [f"{FACE} {VOICE}", f"{FACE} {PLAIN}", None]
    r = F.step_necessity(exs, thinks, force)
    assert r["rows"][0]["necessary"] == [False, True]   # removing the voice sentence flips fear -> happy
    assert r["rows"][1]["necessary"] == [True, False]   # removing the smile flips happy -> neutral
    assert r["rows"][2] == {"n_sentences": 0, "answer": "neutral", "necessary": [], "empty_changes": False}
    assert r["sentence_necessary"] == 0.5 and r["n_sentences"] == 4
    assert r["rationale_with_necessary"] == 1.0 and r["n_rationales"] == 2
    assert r["empty_changes"] == pytest.approx(2 / 3)
    assert F.without_each_sentence(f"{FACE} {PLAIN} {VOICE}") == [f"{PLAIN} {VOICE}", f"{FACE} {VOICE}", f"{FACE} {PLAIN}"]
    assert r["ci"] is None
    r = F.step_necessity(exs, thinks, force, n_boot=200, seed=0)
    lo, hi = r["ci"]["sentence_necessary"]
    assert lo <= 0.5 <= hi and lo >= 0 and hi <= 1
    assert r["ci"]["rationale_with_necessary"] == [1.0, 1.0]  # every rationale with sentences has one
    lo, hi = r["ci"]["empty_changes"]
    assert lo <= 2 / 3 <= hi


def test_ratio_interval_resamples_whole_rationales():
    assert F._ratio_interval([1, 1], [2, 2], 100, 0) == [0.5, 0.5]  # every resample gives 2 of 4
    assert F._ratio_interval([], [], 100, 0) is None and F._ratio_interval([0], [0], 100, 0) is None
    lo, hi = F._ratio_interval([0, 3], [1, 3], 500, 0)  # 0/1 and 3/3: resamples give 0, 3/4 or 1
    assert lo == 0.0 and hi == 1.0


def test_forced_answers_are_cached_and_resume_after_an_interruption(tmp_path):
    calls, stop = [], [2]

    def force(examples, thinks):
        calls.append(len(thinks))
        if len(calls) == stop[0]:
            raise KeyboardInterrupt  # interrupted during the second batch
        return [f"{ex['clip_id']}:{t}" for ex, t in zip(examples, thinks)]

    exs = [{"clip_id": f"c{i}"} for i in range(5)]
    thinks = ["a", "b", "a", "c", "d"]
    cache = tmp_path / "forced.jsonl"
    f = F.cached_force(force, cache, fingerprint="m1", batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        f(exs, thinks)
    assert len(cache.read_text().splitlines()) == 1 + 2  # the first batch was kept
    calls.clear()
    stop[0] = 0  # the resumed run is not interrupted
    got = f(exs + [exs[0]], thinks + ["a"])  # a repeated pair is decoded once
    assert got == [f"c{i}:{t}" for i, t in enumerate(thinks)] + ["c0:a"]
    assert calls == [2, 1]  # only the three pairs not cached
    calls.clear()
    assert f(exs, thinks) == got[:5] and calls == []  # all cached
    F.cached_force(force, cache, fingerprint="m2", batch_size=10)(exs[:1], ["z"])
    assert len(cache.read_text().splitlines()) == 2  # another model discards the cache


def test_clip_row_the_inspector_html_and_the_reading():
    from erv_lab import readings, widgets

    ex = {"clip_id": "c1", "label": "fear"}
    decodes = {"as_is": comp("fear", FACE, VOICE), "no_face": comp("fear", FACE), "no_voice": comp("sad", PLAIN)}
    row = F.clip_row(ex, decodes, {"answer": "fear", "necessary": [False, True], "empty_changes": True})
    assert row["decided_by"] == "voice" and row["answer"] == "fear"
    assert [(s["modalities"], s["necessary"]) for s in row["sentences"]] == [(["face"], False), (["voice"], True)]
    assert row["no_face"]["describes_removed"] and not row["no_voice"]["describes_removed"]
    html_ = widgets.faithfulness_html(row)
    assert "still describes the face" in html_ and "still describes the voice" not in html_ and "; needed" in html_
    stats = F.modality_scores({k: [v] for k, v in decodes.items()}, ["fear"], n_boot=0)
    d = {"decoding": "greedy", "n_clips": 1, "arms": {"erv": {**stats, "steps": {
        "sentence_necessary": 0.5, "n_sentences": 2, "rationale_with_necessary": 1.0, "empty_changes": 1.0}}}}
    text = readings.faithfulness(d)
    assert "accuracy as is 100.0 %, frames blanked 100.0 %, sound silenced 0.0 %" in text
    assert "the voice with no sound: 0.0 %" in text and "Rationales describing the face with no frames: 100.0 %" in text
    assert "changes the answer: 50.0 % of 2" in text and "No faithfulness" in readings.faithfulness(None)
    d["arms"]["erv"]["steps"]["ci"] = {"sentence_necessary": [0.25, 0.75]}
    assert "changes the answer: 50.0 % [25.0, 75.0] of 2" in readings.faithfulness(d)


def test_the_stage_refuses_real_data_before_it_trains_anything():
    from erv_lab import stages
    from erv_lab.config import load_config

    with pytest.raises(ValueError, match="cue lists"):
        stages.faithfulness(load_config("smoke", ["data.source=dfew", "data.root=/data/DFEW"]), "/nonexistent-run")


def test_attach_puts_the_summary_into_results_json_and_md(tmp_path):
    import json

    from erv_lab import report
    from erv_lab.paths import REFERENCE_DIR

    shipped = json.loads((REFERENCE_DIR / "results.json").read_text())
    shipped.pop("faithfulness", None)
    (tmp_path / "results.json").write_text(json.dumps(shipped))
    faith = json.loads((REFERENCE_DIR / "faithfulness.json").read_text())
    report.attach(tmp_path, "faithfulness", faith)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert "clips" not in saved["faithfulness"]["arms"]["erv"] and "settings" not in saved["faithfulness"]
    assert saved["faithfulness"]["arms"]["erv"]["steps"] == faith["arms"]["erv"]["steps"]
    md = (tmp_path / "results.md").read_text()
    assert "## Faithful, not just coherent" in md and "sound silenced" in md
    report.attach(tmp_path / "nowhere", "faithfulness", faith)  # no results.json: nothing, no error


def test_the_shipped_step_necessity_and_its_intervals_follow_from_the_shipped_clips():
    import json

    from erv_lab.paths import REFERENCE_DIR

    d = json.loads((REFERENCE_DIR / "faithfulness.json").read_text())
    for arm, a in d["arms"].items():
        rows = [{"n_sentences": len(c["sentences"]), "necessary": [s["necessary"] for s in c["sentences"]],
                 "empty_changes": c["empty_changes"]} for c in a["clips"]]
        assert F.step_summary(rows, d["settings"]["bootstrap"], 0) == a["steps"], arm


def test_the_figures_draw_the_shipped_files_with_and_without_intervals():
    import copy
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from erv_lab import plots
    from erv_lab.paths import REFERENCE_DIR

    faith = json.loads((REFERENCE_DIR / "faithfulness.json").read_text())
    fig = plots.faithfulness_panels(faith)
    left = fig.axes[0]
    assert len(left.get_xticklabels()) == 7 and any(t.get_text() == "0" for t in left.texts)  # zero bars said
    for a in faith["arms"].values():
        a["steps"].pop("ci")  # a file written before the intervals still draws
    plots.faithfulness_panels(faith)
    abl = json.loads((REFERENCE_DIR / "grounding_ablation.json").read_text())
    fig = plots.grounding_ablation_bars(abl)
    assert len(fig.axes[0].collections) == 2  # one error-bar set per arm, on the metrics that have intervals
    bare = copy.deepcopy(abl)
    for arm in ("erv", "erv-grounding"):
        bare["protocols"]["sample"][arm].pop("ci", None)
    plots.grounding_ablation_bars(bare)
    plt.close("all")


def test_per_class_counts_by_hand_and_says_where_answers_go():
    def row(label, answer, no_face, no_voice):
        return {"label": label, "answer": answer, "no_face": {"answer": no_face}, "no_voice": {"answer": no_voice}}

    clips = [row("fear", "fear", "fear", "sad"), row("fear", "surprise", "fear", "sad"),
             row("sad", "sad", "happy", "sad")]
    pc = F.per_class(clips)
    assert pc["accuracy"]["fear"] == {"as_is": [1, 2], "no_face": [2, 2], "no_voice": [0, 2]}
    assert pc["accuracy"]["sad"] == {"as_is": [1, 1], "no_face": [0, 1], "no_voice": [1, 1]}
    assert pc["most_common"]["no_voice"] == ["sad", 3] and pc["most_common"]["no_face"] == ["fear", 2]
    assert F.per_class([]) == {"accuracy": {}, "most_common": {}}
