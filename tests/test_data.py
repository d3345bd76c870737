"""Loaders on fixtures written in the official DFEW/MAFW formats (never real data), bad inputs, cache, exports."""
import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest

import erv_lab.data as D
import erv_lab.layouts as L
import erv_lab.stages as S
from erv_lab.synth import generate, plan_clip, render_video, render_voice, write_mp4


def _clip(path, label="happy", audio=True, seed=0):
    meta = plan_clip(label, random.Random(seed), 0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, render_video(meta, 6, 48, seed), render_voice(meta, 1.0, seed) if audio else None, 6)


@pytest.fixture
def dfew_root(tmp_path):
    """Fold 1 test lists 6 clips: 2 good mp4s, 1 frame folder, 1 zero-byte, 1 truncated, 1 without audio;
    plus a missing clip and an unknown label. Fold 2 only exists with the underscore folder name."""
    root = tmp_path / "DFEW"
    vids = root / "Clip" / "original"
    _clip(vids / "00001.mp4", "happy", seed=1)
    _clip(vids / "00002.mp4", "sad", seed=2)
    frames = root / "Clip" / "clip_224x224_16f" / "00003"
    frames.mkdir(parents=True)
    for i, f in enumerate(render_video(plan_clip("fear", random.Random(3), 0.3), 4, 48, 3)):
        cv2.imwrite(str(frames / f"00003_{i + 1:05d}.jpg"), f[:, :, ::-1])
    (vids / "00004.mp4").write_bytes(b"")
    (vids / "00005.mp4").write_bytes((vids / "00001.mp4").read_bytes()[:300])
    _clip(vids / "00006.mp4", "angry", audio=False, seed=6)
    split = root / "EmoLabel_DataSplit" / "test(single-labeled)"
    split.mkdir(parents=True)
    (split / "set_1.csv").write_text("video_name,label\n1,1\n2,2\n3,7\n4,4\n5,5\n6,4\n7,3\n1,9\n")
    alt = root / "EmoLabel_DataSplit" / "train(single_labeled)"
    alt.mkdir(parents=True)
    (alt / "set_2.csv").write_text("video_name,label\n2,2\n")
    return root


def test_dfew_records_have_padded_ids_and_label_names(dfew_root):
    report = L.SkipReport()
    recs = L.list_dfew(dfew_root, 1, "test", report)
    assert [(r["clip_id"], r["label"]) for r in recs] == [
        ("00001", "happy"), ("00002", "sad"), ("00003", "fear"), ("00004", "angry"), ("00005", "surprise"),
        ("00006", "angry")]
    assert recs[2]["path"].endswith("clip_224x224_16f/00003")  # frame folder when no mp4
    assert report.skipped == {"missing_clip": 1, "unknown_label": 1}
    assert [r["clip_id"] for r in L.list_dfew(dfew_root, 2, "train")] == ["00002"]  # underscore variant


def test_bad_inputs_are_skipped_and_counted_not_fatal(dfew_root, tmp_path):
    report = L.SkipReport()
    rows = D.build_rows(L.list_dfew(dfew_root, 1, "test", report), tmp_path / "cache", "test", 4, 32,
                        report=report, progress=False)
    assert [r["clip_id"] for r in rows] == ["00001", "00002", "00003"]
    assert report.skipped == {"missing_clip": 1, "unknown_label": 1, "empty_file": 1, "unreadable": 1,
                              "no_audio": 1}
    assert report.kept == 3 and report.notes["frames_only (silent spectrogram)"] == 1
    assert "unreadable" in str(report)


def test_missing_split_file_or_nothing_usable_is_a_clear_error(dfew_root, tmp_path):
    with pytest.raises(L.DataError, match="set_3.csv"):
        L.list_dfew(dfew_root, 3, "test")
    bad = [r for r in L.list_dfew(dfew_root, 1, "test") if r["clip_id"] in ("00004", "00005")]
    with pytest.raises(L.DataError, match="no usable clip"):
        D.build_rows(bad, tmp_path / "c", "test", 2, 32, progress=False)


def test_second_run_reads_the_cache_and_decodes_nothing(dfew_root, tmp_path, monkeypatch):
    recs = [r for r in L.list_dfew(dfew_root, 1, "test") if r["clip_id"] in ("00001", "00003")]
    first = D.build_rows(recs, tmp_path / "cache", "test", 4, 32, progress=False)

    def boom(path):
        raise AssertionError("decoded again")
    monkeypatch.setattr(D, "decode_clip", boom)
    second = D.build_rows(recs, tmp_path / "cache", "test", 4, 32, progress=False)
    assert [np.asarray(f).tolist() for f in first[0]["frames"]] == [np.asarray(f).tolist() for f in second[0]["frames"]]


def test_mafw_renamed_split_folder_gbk_captions_and_compound_labels(tmp_path):
    root = tmp_path / "MAFW"
    _clip(root / "data/clips/00025.mp4", "angry", seed=1)
    _clip(root / "data/clips/00031.mp4", "sad", seed=2)
    base = root / "Train_Test_Set" / "single"
    (base / "no_caption/set_1").mkdir(parents=True)
    (base / "no_caption/set_1/test.txt").write_text("00025.mp4 anger\n00031.mp4 sadness\n00040.mp4 fear\n"
                                                    "00031.mp4 anger_disgust\n00025.mp4 boredom\n")
    (base / "with_caption/set_1").mkdir(parents=True)
    (base / "with_caption/set_1/test.txt").write_bytes("00025.mp4\tanger\t他很生气\tHe is angry\n".encode("gbk"))
    report = L.SkipReport()
    recs = L.list_mafw(root, 1, "test", report=report)  # found without naming the renamed folder
    assert [(r["clip_id"], r["label"]) for r in recs] == [("00025", "anger"), ("00031", "sadness")]
    assert report.skipped == {"missing_clip": 1, "compound_label": 1, "unknown_label": 1}
    cap = L.list_mafw(root, 1, "test", caption=True, split_dir="Train_Test_Set")
    assert cap[0]["caption_zh"] == "他很生气" and cap[0]["caption_en"] == "He is angry"
    with pytest.raises(L.DataError, match="split_dir"):
        L.list_mafw(root, 1, "test", split_dir="nope")


def test_decode_text_falls_back_to_gb18030():
    assert L.decode_text("生气".encode("gbk")) == "生气"
    assert L.decode_text("\ufeffanger".encode("utf-8")) == "anger"


def test_folder_loader_matches_user_labels_with_synonyms(tmp_path):
    _clip(tmp_path / "v/a.mp4", "happy", seed=1)
    _clip(tmp_path / "v/b.mp4", "sad", seed=2)
    (tmp_path / "list.csv").write_text("path,label\nv/a.mp4,Happiness\nv/b.mp4,SAD\nv/c.mp4,sad\nv/a.mp4,bored\n")
    report = L.SkipReport()
    recs = L.list_folder(tmp_path, tmp_path / "list.csv", ["happy", "sad"], report=report)
    assert [(r["clip_id"], r["label"]) for r in recs] == [("a", "happy"), ("b", "sad")]
    assert report.skipped == {"missing_clip": 1, "unknown_label": 1}


def test_frame_sampling_uses_segment_centres_random_in_segment_and_pads():
    assert D.sample_indices(16, 4) == [2, 6, 10, 14]
    assert D.sample_indices(3, 5) == [0, 1, 2, 2, 2]
    rng = random.Random(0)
    for _ in range(50):
        idx = D.sample_indices(20, 4, train=True, rng=rng)
        assert all(5 * k <= i < 5 * (k + 1) for k, i in enumerate(idx))


def test_log_mel_puts_a_full_scale_sine_near_0_db_and_loudness_shows_in_the_image():
    t = np.arange(16000) / 16000
    loud, soft = np.sin(2 * np.pi * 440 * t).astype(np.float32), 0.01 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    assert -6 < D.log_mel(loud).max() < 3  # 0 dBFS sine; the mel band spreads a little
    img_loud, img_soft = D.spectrogram_image(D.log_mel(loud), 32), D.spectrogram_image(D.log_mel(soft), 32)
    assert img_loud.size == (32, 32) and int(np.asarray(img_loud).max()) > int(np.asarray(img_soft).max()) + 60


def test_prosody_words_follow_pitch_and_loudness():
    t = np.arange(16000) / 16000
    env = (np.sin(2 * np.pi * 2 * t) > 0).astype(np.float32)
    high = 0.8 * env * np.sin(2 * np.pi * 330 * t)
    low = 0.02 * env * np.sin(2 * np.pi * 110 * t)
    assert D.prosody(high).startswith("pitch high") and "voice loud" in D.prosody(high)
    assert D.prosody(low).startswith("pitch low") and "voice soft" in D.prosody(low)
    assert D.prosody(None) == "no audio"


def test_instruction_is_the_one_the_policy_uses():
    from erv_lab.policy import INSTRUCTION

    assert D.INSTRUCTION == INSTRUCTION


def test_ensure_dataset_schema_and_reuse(tmp_path, monkeypatch):
    from erv_lab.config import load_config

    cfg = load_config("smoke")
    out = S.ensure_dataset(cfg, tmp_path, verbose=False)
    assert set(out) == {"train", "test"} and len(out["test"]) == 7 and len(out["train"]) == 21
    assert set(out["train"].column_names) == {"clip_id", "dataset", "fold", "label", "frames", "spectrogram",
                                              "prosody", "rationale", "drifted", "cues"}
    ex = out["train"][0]
    assert len(ex["frames"]) == cfg.data.num_frames and ex["frames"][0].size == (32, 32)
    assert ex["spectrogram"].mode == "RGB" and ex["spectrogram"].size == (32, 32)
    assert ex["dataset"] == "dfew" and ex["fold"] == 5 and ex["label"] in D.vocabulary("dfew")
    assert ex["rationale"].endswith(f"<answer>{ex['label']}</answer>") and "visual" in json.loads(ex["cues"])
    monkeypatch.setattr(D, "decode_clip", lambda p: (_ for _ in ()).throw(AssertionError("decoded again")))
    again = S.ensure_dataset(cfg, tmp_path, verbose=False)
    assert again["test"]["clip_id"] == out["test"]["clip_id"]
    monkeypatch.setenv("RANK", "1")  # another process of a launch: waits for rank 0's folder, then loads it
    assert S.ensure_dataset(cfg, tmp_path, verbose=False)["test"]["clip_id"] == out["test"]["clip_id"]


def test_a_dataset_made_with_other_settings_is_moved_aside(tmp_path):
    from erv_lab.config import load_config

    S.ensure_dataset(load_config("smoke"), tmp_path, verbose=False)
    (tmp_path / "data" / "hf" / "0123abcd").mkdir()
    (tmp_path / "data" / "hf" / "0123abcd" / "done").write_text("ok")  # an older erv-lab's hash-keyed folder
    with pytest.warns(UserWarning, match="not reused: settings changed: .*fold: 5 -> 4"):
        out = S.ensure_dataset(load_config("smoke", ["data.fold=4"]), tmp_path, verbose=False)
    assert (tmp_path / "data" / "hf.stale" / "0123abcd").is_dir() and out["test"][0]["fold"] == 4


def test_other_processes_wait_for_the_dataset_and_give_up_with_a_clear_error(tmp_path):
    with pytest.raises(TimeoutError, match="rank 0 did not finish"):
        S._wait_for(tmp_path / "hf", {"a": 1}, timeout_s=0.2, poll_s=0.05)


@pytest.mark.parametrize("layout", ["dfew", "mafw"])
def test_synth_then_prepare_round_trips(tmp_path, capsys, layout):
    from erv_lab.cli import main

    root = tmp_path / layout
    assert main(["synth", "--layout", layout, "--out", str(root), "--clips", str(len(D.vocabulary(layout)) * 2)]) == 0
    out = tmp_path / "test.jsonl"
    assert main(["prepare", "--dataset", layout, "--root", str(root), "--fold", "5", "--split", "test",
                 "--out", str(out), "--frames", "2"]) == 0
    text = capsys.readouterr().out
    assert f"{len(D.vocabulary(layout))} records" in text and "skipped 0" in text
    recs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(recs) == len(D.vocabulary(layout))
    human, gpt = recs[0]["conversations"]
    assert human == {"from": "human", "value": "<video>\n<audio>\n" + D.INSTRUCTION}
    assert gpt["from"] == "gpt" and gpt["value"].startswith("<think>") and "</think>\n<answer>" in gpt["value"]
    assert recs[0]["video"].endswith(".mp4")


@pytest.mark.slow
def test_a_simple_classifier_needs_audio_for_fear_vs_surprise_and_video_for_angry_vs_disgust(tmp_path):
    """HOG of two frames (video) vs the spectrogram's frequency/time profiles (audio), logistic regression,
    5-fold CV accuracy on the default difficulty (0.5). Measured with seed 1 (``pytest -s`` prints them):
    fear/surprise video 0.56, audio 1.00; angry/disgust video 0.88, audio 0.40; all 7 classes video 0.65,
    audio 0.84, both 0.91."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    generate(tmp_path / "d", clips=7 * 24, seed=1, frame_size=64, frames_per_clip=8, verbose=False)
    recs = sum((L.list_dfew(tmp_path / "d", 1, s) for s in ("train", "test")), [])
    rows = D.build_rows(recs, tmp_path / "cache", "test", 4, 32, progress=False)
    hog = cv2.HOGDescriptor((32, 32), (16, 16), (8, 8), (8, 8), 9)

    def video(r):
        return np.concatenate([hog.compute(cv2.cvtColor(np.asarray(r["frames"][i]), cv2.COLOR_RGB2GRAY)).ravel()
                               for i in (1, 2)])

    def audio(r):
        s = np.asarray(r["spectrogram"], np.float32)[:, :, 0] / 255
        return np.concatenate([s.mean(1), s.mean(0)])

    def acc(pair, feat):
        sub = [r for r in rows if r["label"] in pair]
        X, y = np.stack([feat(r) for r in sub]), [r["label"] for r in sub]
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000))
        return cross_val_score(clf, X, y, cv=5).mean()

    fs, ad = ("fear", "surprise"), ("angry", "disgust")
    def both(r):
        return np.concatenate([video(r), audio(r)])

    print({f"{'/'.join(p) if len(p) == 2 else 'all'} {f.__name__}": round(acc(p, f), 3)
           for p in (fs, ad, D.vocabulary("dfew")) for f in (video, audio, both)})
    assert acc(fs, audio) > 0.9 and acc(fs, video) < 0.7
    assert acc(ad, video) > 0.8 and acc(ad, audio) < 0.7


def test_face_crop_finds_a_real_face_and_reports_clips_without_one(dfew_root, tmp_path):
    import matplotlib

    photo = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))[:, :, ::-1]
    x, y, w, h = D.face_box(np.stack([photo] * 3))
    assert 0 <= x < x + w <= photo.shape[1] and 0 <= y < y + h <= photo.shape[0] and w > 100
    blank = np.zeros((3, 64, 64, 3), np.uint8)
    assert D.face_box(blank) is None
    report = L.SkipReport()
    recs = [r for r in L.list_dfew(dfew_root, 1, "test") if r["clip_id"] == "00001"]
    rows = D.build_rows(recs, tmp_path / "c", "test", 2, 32, face_crop=True, report=report, progress=False)
    assert len(rows) == 1 and rows[0]["frames"][0].size == (32, 32)
    assert report.notes.get("no_face_found (kept uncropped)", 0) in (0, 1)


def test_several_sources_train_together_and_keep_their_test_folds_apart(tmp_path):
    """The paper trains on MAFW and DFEW together: data.source as a list, data.root as {source: folder}."""
    from erv_lab.config import load_config
    from erv_lab.synth import generate

    roots = {}
    for layout in ("dfew", "mafw"):
        roots[layout] = str(tmp_path / layout)
        generate(roots[layout], layout=layout, clips=2 * len(D.vocabulary(layout)), seed=0, frame_size=48,
                 frames_per_clip=8, fps=8, verbose=False)
    cfg = load_config("smoke", {"data": {"source": ["mafw", "dfew"], "root": roots}})
    out = S.ensure_dataset(cfg, tmp_path / "run", verbose=False)
    for split in ("train", "test"):
        assert set(out[split]["dataset"]) == {"dfew", "mafw"}
        for row in out[split].select(range(len(out[split]))):
            assert row["label"] in D.vocabulary(row["dataset"])
    assert set(D.last_report(tmp_path / "run")) == {"mafw/train", "dfew/train", "mafw/test", "dfew/test"}
    jsonl = D.export_jsonl(cfg, tmp_path / "run", "test")
    assert len(jsonl.read_text().splitlines()) == len(out["test"])
    with pytest.raises(ValueError, match="data.root as"):
        load_config("smoke", {"data": {"source": ["mafw", "dfew"], "root": roots["dfew"]}})


def test_dfew_split_file_is_found_in_whichever_variant_folder_holds_the_fold(tmp_path):
    """A copy holding both folder-name variants, fold 1 only in the first and fold 5 only in the second: both
    load (the loader used to look only in the first variant folder that exists)."""
    root = tmp_path / "DFEW"
    _clip(root / "Clip/original/00001.mp4", "happy", seed=1)
    _clip(root / "Clip/original/00002.mp4", "sad", seed=2)
    first, second = root / "EmoLabel_DataSplit/test(single-labeled)", root / "EmoLabel_DataSplit/test(single_labeled)"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    (first / "set_1.csv").write_text("video_name,label\n1,1\n")
    (second / "set_5.csv").write_text("video_name,label\n2,2\n")
    assert [(r["clip_id"], r["label"], r["fold"]) for r in L.list_dfew(root, 1, "test")] == [("00001", "happy", 1)]
    assert [(r["clip_id"], r["label"], r["fold"]) for r in L.list_dfew(root, 5, "test")] == [("00002", "sad", 5)]
    with pytest.raises(L.DataError) as exc:
        L.list_dfew(root, 3, "test")
    msg = str(exc.value)
    assert "set_3.csv" in msg and str(first) in msg and str(second) in msg
    assert "test_single_labeled/ (no such folder)" in msg


def _silent_mp4(path, frames=10, size=(48, 48)):
    """An mp4 (mp4v) without an audio track, as OpenCV writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    for i in range(frames):
        w.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    w.release()


def test_missing_audio_silence_keeps_silent_videos_stills_and_frame_folders(tmp_path):
    _clip(tmp_path / "v/voice.mp4", "happy", seed=1)
    _silent_mp4(tmp_path / "v/mute.mp4")
    cv2.imwrite(str(tmp_path / "v/still.png"), np.full((40, 30, 3), (10, 120, 200), np.uint8))
    (tmp_path / "v/frames").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"v/frames/{i}.jpg"), np.full((40, 40, 3), 60 * i, np.uint8))
    (tmp_path / "list.csv").write_text("path,label\nv/voice.mp4,happy\nv/mute.mp4,sad\nv/still.png,sad\n"
                                       "v/frames,happy\n")
    recs = L.list_folder(tmp_path, tmp_path / "list.csv", ["happy", "sad"])
    cache = tmp_path / "cache"

    silent = L.SkipReport()
    rows = D.build_rows(recs, cache, "test", 4, 32, report=silent, progress=False, missing_audio="silence")
    assert [r["clip_id"] for r in rows] == ["voice", "mute", "still", "frames"]
    assert silent.kept == 4 and silent.silent_audio == 3 and not silent.skipped and not silent.notes
    assert silent.as_dict()["silent_audio"] == 3 and "silent_audio" in str(silent)
    for row in rows[1:]:  # spectrogram and prosody of silence: the floor everywhere, "no audio"
        assert np.asarray(row["spectrogram"]).max() == 0 and row["prosody"] == "no audio"
    still = [np.asarray(f) for f in rows[2]["frames"]]
    assert len(still) == 4 and all(np.array_equal(f, still[0]) for f in still)  # a photo: 4 identical frames
    assert rows[0]["prosody"] != "no audio"
    clip = D.prepare_clip(recs[1], cache, 32, 16, missing_audio="silence")  # from the cache: a 1 s silent track
    assert clip["has_audio"] is False and clip["mel"].shape[1] > 50

    default = L.SkipReport()  # the default is today's behaviour, even on the same cache folder
    rows = D.build_rows(recs, cache, "test", 4, 32, report=default, progress=False)
    assert [r["clip_id"] for r in rows] == ["voice", "frames"]
    assert default.skipped == {"no_audio": 2} and default.notes == {"frames_only (silent spectrogram)": 1}
    assert "silent_audio" not in default.as_dict() and "silent_audio" not in str(default)
    with pytest.raises(ValueError, match="skip, silence"):
        D.prepare_clip(recs[1], cache, missing_audio="zeros")


def test_prepare_missing_audio_silence_counts_the_filled_clips(dfew_root, tmp_path, capsys):
    import re

    from erv_lab.cli import main

    args = ["prepare", "--dataset", "dfew", "--root", str(dfew_root), "--fold", "1", "--split", "test", "--frames", "2"]
    assert main([*args, "--out", str(tmp_path / "skip.jsonl")]) == 0
    text = capsys.readouterr().out
    assert "3 records" in text and "no_audio" in text and "silent_audio" not in text
    assert main([*args, "--out", str(tmp_path / "silence.jsonl"), "--missing-audio", "silence"]) == 0
    text = capsys.readouterr().out
    assert "4 records" in text and "no_audio" not in text
    assert re.search(r"silent\s+2\s+silent_audio", text)  # 00006 (mp4 without audio) and 00003 (frame folder)
    videos = [json.loads(line)["video"] for line in (tmp_path / "silence.jsonl").read_text().splitlines()]
    assert [Path(v).stem for v in videos] == ["00001", "00002", "00003", "00006"]


def test_a_folder_csvs_own_split_column_wins_over_the_hash_split(tmp_path):
    import zlib

    names = [f"clip{i}.mp4" for i in range(10)]
    hashed = lambda root: [n for n in names[:8] if zlib.crc32(str(root / n).encode()) % 5 == 4]  # noqa: E731
    # the hash depends on the folder: pick one where a hash split would send some train rows to the test fold
    # (in a random tmp_path none of the eight did in about 1 run in 6)
    root = next(tmp_path / f"d{i}" for i in range(1000) if hashed(tmp_path / f"d{i}"))
    root.mkdir()
    for n in names:
        (root / n).write_bytes(b"x")
    rows = ["path,label,split"] + [f"{n},happy,train" for n in names[:8]] + [f"{n},sad,test" for n in names[8:]]
    (root / "labels.csv").write_text("\n".join(rows))
    hashed_test = hashed(root)
    assert hashed_test  # some train rows that a hash split would have sent to the test fold
    train = L.list_records("folder", root, 5, "train", L.SkipReport(), labels=["happy", "sad"])
    test = L.list_records("folder", root, 5, "test", L.SkipReport(), labels=["happy", "sad"])
    assert sorted(r["clip_id"] for r in train) == [n[:-4] for n in names[:8]]  # none silently dropped
    assert sorted(r["clip_id"] for r in test) == ["clip8", "clip9"] and "split_given" not in train[0]


def test_an_older_hash_keyed_dataset_folder_is_reported_not_read(tmp_path):
    from erv_lab.config import load_config

    old = tmp_path / "data" / "hf" / "0123abcd"
    old.mkdir(parents=True)
    (old / "done").write_text("ok")
    with pytest.warns(UserWarning, match="older erv-lab .*0123abcd"):
        S.ensure_dataset(load_config("smoke"), tmp_path, verbose=False)
    assert (tmp_path / "data" / "hf" / "done").exists()
