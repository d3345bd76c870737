"""`erv-lab explain`: a photo, a silent video and a frame folder through a tiny run's models, JSON + HTML."""
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import erv_lab.data as D
from erv_lab import explain as X
from erv_lab import judges
from erv_lab.labels import vocabulary

RATIONALE = "<think>The face looks happy. She smiles.</think>\n<answer>happy</answer>"
# the tiny smoke policy learns the one rationale in ~3 s; a small GoEmotions slice for the verifier
TRAIN = ["sft.epochs=80", "sft.learning_rate=0.01", "sft.batch_size=7", "grpo.logging_steps=10",
         "verifier.max_train=300"]
ROOM = ["eval.max_new_tokens=40"]  # explain decodes with the run's preset (smoke: 16 new tokens)


class FakeJudge:
    """Reads the first emotion word of the rationale (else neutral); records what it was asked."""
    name = "fake-judge"

    def __init__(self):
        self.calls = []

    def judge(self, texts, labels):
        self.calls.append((list(texts), list(labels)))
        return [next((lab for lab in labels if lab in t.lower()), "neutral") for t in texts]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these models are tiny, and two threads on a busy 2-core machine made the SFT 20x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(tmp_path_factory, make_clips):
    """A run folder with sft/final and erv/final (a copy of it: two models, no GRPO) and a trained verifier."""
    from erv_lab.config import load_config
    from erv_lab.stages import ensure_sft, ensure_verifier

    root = tmp_path_factory.mktemp("run")
    cfg = load_config("smoke", TRAIN)
    train = make_clips(n_per_class=1).map(lambda r: {"rationale": RATIONALE})
    sft = ensure_sft(cfg, root, dataset={"train": train, "test": train})
    shutil.copytree(sft, root / "erv" / "final")
    ensure_verifier(cfg, root, progress=False)
    return root


@pytest.fixture
def judge(monkeypatch):
    fake = FakeJudge()
    monkeypatch.setattr(judges, "headline_judge", lambda cfg, run_dir: fake)
    return fake


def silent_video(path, frames=12, size=(64, 48)):
    """An mp4 (mp4v) with no audio track, written by OpenCV: a grey square moving on black."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    for i in range(frames):
        im = np.zeros((size[1], size[0], 3), np.uint8)
        im[10:30, 4 * i:4 * i + 20] = 180
        w.write(im)
    w.release()
    return path


def photo():
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))  # public domain


def check_outputs(out, n_models=2):
    """explain.json: one entry per model with rationale, answer, labelled sentences and a judge's reading;
    explain.html: one inline image per frame + the spectrogram, the out-of-distribution warning."""
    result = json.loads((out / "explain.json").read_text())
    assert set(result["models"]) == {"sft", "erv"} and len(result["models"]) == n_models
    labels = list(vocabulary("dfew"))
    for rec in result["models"].values():
        assert rec["think"] and rec["answer"] and rec["completion"].startswith("<think>")
        assert rec["judged"] in labels
        assert rec["sentences"] and all(s["text"] and s["names"] and len(s["probs"]) == len(s["names"])
                                        and all(0 <= p <= 1 for p in s["probs"]) for s in rec["sentences"])
    page = (out / "explain.html").read_text()
    images = re.findall(r'<img src="data:image/png;base64,([^"]*)"', page)
    assert len(images) == len(result["frames"]) + 1 == 2 + 1  # smoke: 2 frames, then the spectrogram
    assert all(len(d) > 50 for d in images)
    assert "Out of distribution" in page and "drawn synthetic faces" in page
    assert page.count('class="erv-arm"') == n_models and 'class="erv-sent' in page
    for name in result["frames"] + [result["spectrogram"]]:
        assert (out / name).stat().st_size > 0
    return result


def test_a_photo_goes_through_every_model(run, judge, tmp_path):
    result = X.explain_clip(photo(), run, tmp_path / "out", overrides=ROOM)
    check_outputs(tmp_path / "out")
    assert result["input"]["kind"] == "image" and result["input"]["has_audio"] is False
    assert result["input"]["prosody"] == "no audio" and result["preset"] == "smoke"  # read from the run
    assert result["settings"]["num_frames"] == 2 and result["settings"]["image_size"] == 32  # the run's
    assert result["settings"]["max_new_tokens"] == 40
    assert judge.calls and judge.calls[0][1] == list(vocabulary("dfew"))
    assert result["models"]["sft"] == {**result["models"]["erv"], "model": result["models"]["sft"]["model"]}


def test_a_silent_video_through_the_cli(run, judge, tmp_path, capsys):
    from erv_lab.cli import main

    video = silent_video(tmp_path / "silent.mp4")
    assert main(["explain", str(video), "--run", str(run), "--out", str(tmp_path / "o"), "--set", ROOM[0]]) == 0
    result = check_outputs(tmp_path / "o")
    assert result["input"]["kind"] == "video" and "silent" in result["input"]["audio"]
    printed = capsys.readouterr().out
    assert "Out of distribution" in printed and "erv" in printed and str(tmp_path / "o") in printed


def test_the_example_is_the_row_the_dataset_builds(run, tmp_path):
    cfg = X.explain_config(run)
    video = silent_video(tmp_path / "v.mp4")
    example, _ = X.clip_example(video, cfg, tmp_path / "c1")
    rec = {"clip_id": "v", "label": "happy", "path": str(video), "dataset": "dfew", "fold": 0}
    row = D.build_rows([rec], tmp_path / "c2", "test", cfg.data.num_frames, cfg.policy.image_size,
                       progress=False, missing_audio="silence")[0]
    assert [np.asarray(f).tolist() for f in example["frames"]] == [np.asarray(f).tolist() for f in row["frames"]]
    assert np.array_equal(np.asarray(example["spectrogram"]), np.asarray(row["spectrogram"]))
    assert example["prosody"] == row["prosody"] == "no audio"


def test_a_folder_of_frames_and_a_video_with_sound(run, judge, tmp_path):
    import random

    from erv_lab.synth import plan_clip, render_video, render_voice, write_mp4

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(5):
        cv2.imwrite(str(frames / f"{i:03d}.png"), np.full((40, 40, 3), 40 * i, np.uint8))
    result = X.explain_clip(frames, run, tmp_path / "out", overrides=ROOM)
    assert result["input"]["kind"] == "frames" and set(result["models"]) == {"sft", "erv"}
    assert result["out"] == str(tmp_path / "out")
    meta = plan_clip("angry", random.Random(0), 0.3)
    write_mp4(tmp_path / "voice.mp4", render_video(meta, 6, 48, 0), render_voice(meta, 1.0, 0), 6)
    result = X.explain_clip(tmp_path / "voice.mp4", run)  # default out: <run>/explain/<clip name>/
    assert result["input"]["has_audio"] is True and result["input"]["prosody"] != "no audio"
    assert result["out"] == str(run / "explain" / "voice") and (run / "explain" / "voice" / "explain.html").exists()
    shutil.rmtree(run / "explain")
    result = X.explain_clip(tmp_path / "voice.mp4", run, tmp_path / "known", label="Angry")  # one of the run's
    page = (tmp_path / "known" / "explain.html").read_text()
    assert result["label"] == "angry" and "Ground truth: <b>angry</b>" in page
    assert "Out of distribution" not in page and "No ground truth" not in page
    with pytest.raises(X.ExplainError, match="not one of the run's labels"):
        X.explain_clip(tmp_path / "voice.mp4", run, tmp_path / "bad", label="bored")


def test_bad_input_is_a_one_line_error_and_exit_code_1(run, judge, tmp_path, capsys):
    from erv_lab.cli import main

    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(b"not a video at all" * 20)
    (tmp_path / "empty_run").mkdir()
    for argv, needle in [([str(garbage), "--run", str(run)], "broken.mp4"),
                         ([str(tmp_path / "nope.mov"), "--run", str(run)], "nope.mov"),
                         ([str(garbage), "--run", str(tmp_path / "empty_run")], "no trained model"),
                         ([str(garbage), "--run", str(tmp_path / "no_run")], "no such run folder"),
                         ([str(garbage), "--run", str(run), "--set", "verifier.threshold=2"], "verifier.threshold"),
                         ([str(garbage), "--run", str(run), "--preset", "no-such-preset"], "no-such-preset")]:
        assert main(["explain", *argv]) == 1
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (run / "explain").exists()  # nothing written for input that could not be read


def test_a_video_too_long_to_decode_whole_is_refused(run, judge, tmp_path, monkeypatch):
    video = silent_video(tmp_path / "long.mp4")
    assert 0 < X.decoded_gib(video) < 1e-3  # 12 frames of 64 x 48
    monkeypatch.setattr(X, "MAX_DECODED_GIB", 1e-5)
    with pytest.raises(X.ExplainError, match="long.mp4: too long to decode whole"):
        X.explain_clip(video, run, tmp_path / "out")
