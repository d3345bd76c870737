"""Synthetic clips: official DFEW/MAFW layouts, determinism, resumability, audio/video content, CLI."""
import csv
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from erv_lab.data import decode_clip, log_mel
from erv_lab.labels import vocabulary
from erv_lab.synth import (META_DIR, generate, plan_clip, read_meta, render_video, render_voice)

SMALL = dict(frame_size=48, frames_per_clip=8, fps=8)


def test_dfew_layout_matches_the_official_split_format(tmp_path):
    root = tmp_path / "DFEW"
    generate(root, "dfew", clips=21, seed=0, verbose=False, **SMALL)
    meta = read_meta(root)
    assert len(meta) == 21 and sorted(meta) == [f"{i:05d}" for i in range(1, 22)]
    assert all((root / "Clip/original" / f"{cid}.mp4").exists() for cid in meta)
    seen_test = []
    for k in range(1, 6):
        rows = {}
        for split in ("train", "test"):
            with open(root / "EmoLabel_DataSplit" / f"{split}(single-labeled)" / f"set_{k}.csv") as fh:
                reader = csv.reader(fh)
                assert next(reader) == ["video_name", "label"]
                rows[split] = [(r[0], int(r[1])) for r in reader]
        for vid, lab in rows["train"] + rows["test"]:
            assert vid == str(int(vid))  # unpadded ids
            assert vocabulary("dfew")[lab - 1] == meta[f"{int(vid):05d}"]["label"]
        assert len(rows["train"]) + len(rows["test"]) == 21
        seen_test += [v for v, _ in rows["test"]]
    assert sorted(seen_test, key=int) == [str(i) for i in range(1, 22)]  # test sets partition the clips


def test_mafw_layout_has_gaps_in_ids_and_gbk_caption_files(tmp_path):
    root = tmp_path / "MAFW"
    generate(root, "mafw", clips=11, seed=0, verbose=False, **SMALL)
    ids = sorted(read_meta(root))
    assert len(ids) == 11 and int(ids[-1]) > 11  # not contiguous
    base = root / "Train & Test Set" / "single"
    line = (base / "no_caption" / "set_5" / "test.txt").read_text(encoding="utf-8").splitlines()[0]
    clip, label = line.split(" ")
    assert clip.endswith(".mp4") and label in vocabulary("mafw")
    raw = (base / "with_caption" / "set_5" / "test.txt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    fields = raw.decode("gbk").splitlines()[0].split("\t")
    assert len(fields) == 4 and fields[1] in vocabulary("mafw")


def test_generation_is_deterministic_and_a_second_call_renders_nothing(tmp_path):
    a = generate(tmp_path / "a", clips=7, seed=3, verbose=False, **SMALL)
    b = generate(tmp_path / "b", clips=7, seed=3, verbose=False, **SMALL)
    assert a["rendered"] == 7
    assert (tmp_path / "a" / META_DIR / "clips.jsonl").read_text() == (tmp_path / "b" / META_DIR / "clips.jsonl").read_text()
    fa, aa = decode_clip(tmp_path / "a/Clip/original/00004.mp4")
    fb, ab = decode_clip(tmp_path / "b/Clip/original/00004.mp4")
    assert np.array_equal(fa, fb) and np.array_equal(aa, ab)
    assert generate(tmp_path / "a", clips=7, seed=3, verbose=False, **SMALL) == a  # reused as is


_ONE_CLIP = ("import os, sys; os.sched_setaffinity(0, {cpus}); from erv_lab.synth import generate; "
             "generate(sys.argv[1], clips=1, seed=5, frame_size=112, frames_per_clip=4, fps=8, verbose=False)")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs at least two usable CPUs")
def test_clip_bytes_do_not_depend_on_the_number_of_cpus(tmp_path):
    # FFmpeg's default encoder threading cuts frames into one slice per core: other machine, other bytes.
    cpus = sorted(os.sched_getaffinity(0))
    for name, allowed in (("one", cpus[:1]), ("all", cpus)):
        subprocess.run([sys.executable, "-c", _ONE_CLIP.format(cpus=set(allowed)), str(tmp_path / name)], check=True)
    one, every = (tmp_path / n / "Clip/original/00001.mp4" for n in ("one", "all"))
    assert one.read_bytes() == every.read_bytes()


def test_interrupted_generation_resumes_with_only_the_missing_clips(tmp_path):
    root = tmp_path / "d"
    generate(root, clips=7, seed=0, verbose=False, **SMALL)
    (root / "Clip/original/00002.mp4").unlink()
    state = json.loads((root / META_DIR / "generator.json").read_text())
    state["complete"] = False  # what a killed run leaves behind
    (root / META_DIR / "generator.json").write_text(json.dumps(state))
    assert generate(root, clips=7, seed=0, verbose=False, **SMALL)["rendered"] == 1


def test_clips_carry_video_and_16k_mono_audio(tmp_path):
    generate(tmp_path, clips=7, seed=0, verbose=False, **SMALL)
    frames, audio = decode_clip(tmp_path / "Clip/original/00001.mp4")
    assert frames.shape == (8, 48, 48, 3)
    assert audio is not None and abs(len(audio) - 16000) < 400  # 8 frames at 8 fps = 1 s
    assert np.abs(audio).max() > 0.05


def test_fear_and_surprise_share_the_face_but_not_the_voice():
    rng = random.Random(0)
    fear, surprise = plan_clip("fear", rng, 0.0), plan_clip("surprise", rng, 0.0)
    surprise["identity"], surprise["apex"] = fear["identity"], fear["apex"]
    assert np.array_equal(render_video(fear, 8, 64, 1), render_video(surprise, 8, 64, 1))
    mf, ms = log_mel(render_voice(fear, 1.0, 1)), log_mel(render_voice(surprise, 1.0, 1))
    # surprise is one short burst: far more quiet frames (30 dB under the peak) than fear's fast syllables
    quiet = lambda m: (m.max(0) < m.max() - 30).mean()  # noqa: E731
    assert quiet(ms) > quiet(mf) + 0.2


def test_angry_and_disgust_share_the_voice_but_not_the_face():
    rng = random.Random(0)
    angry, disgust = plan_clip("angry", rng, 0.0), plan_clip("disgust", rng, 0.0)
    disgust["identity"], disgust["apex"] = angry["identity"], angry["apex"]
    assert np.array_equal(render_voice(angry, 1.0, 1), render_voice(disgust, 1.0, 1))
    assert not np.array_equal(render_video(angry, 8, 64, 1), render_video(disgust, 8, 64, 1))


def test_difficulty_weakens_cues_and_adds_noise():
    easy = [plan_clip("happy", random.Random(i), 0.0) for i in range(50)]
    hard = [plan_clip("happy", random.Random(i), 1.0) for i in range(50)]
    assert all(c["strength"] == 1.0 for m in easy for c in m["visual"])
    assert np.mean([c["strength"] for m in hard for c in m["visual"] if not c.get("distractor")]) < 0.6
    assert any(m["occluder"] for m in hard) and not any(m["occluder"] for m in easy)
    assert hard[0]["noise"] > easy[0]["noise"] and hard[0]["snr_db"] < easy[0]["snr_db"]


def test_cli_synth_writes_a_dataset(tmp_path, capsys):
    from erv_lab.cli import main

    assert main(["synth", "--layout", "mafw", "--out", str(tmp_path / "m"), "--clips", "11", "--seed", "1"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["clips"] == 11
    assert len(list((tmp_path / "m/data/clips").glob("*.mp4"))) == 11
