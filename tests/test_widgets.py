"""The per-clip inspector: builds for every clip, and its static HTML holds the expected elements."""
import json
import re

import pytest
from PIL import Image

from erv_lab import widgets as W
from erv_lab.config import load_config
from erv_lab.evaluate import evaluate_models


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, fakes):
    cfg = load_config("smoke", ["eval.seeds=[0,1,2]", "eval.bootstrap=20", "eval.max_clips=null"])
    ex = fakes.make_examples()
    ex[0]["spectrogram"] = Image.new("L", (16, 8), 200)
    run = tmp_path_factory.mktemp("run")
    evaluate_models(fakes.fake_generators(), ex, fakes.FakeJudge(), cfg, run, verifier=fakes.FakeVerifier())
    records = json.loads((run / "eval" / "records.json").read_text())
    return records, {e["clip_id"]: e for e in ex}


def test_static_html_of_every_clip_has_media_truth_arms_and_coloured_sentences(evaluated):
    records, examples = evaluated
    for rec in records:
        page = W.clip_html(rec, examples[rec["clip_id"]])
        assert f'data-clip-id="{rec["clip_id"]}"' in page
        assert page.count("<img ") == 3  # two frames + the spectrogram
        assert f'<span class="erv-truth">{rec["label"]}</span>' in page
        for arm in ("sft", "baseline", "erv"):
            assert f'data-arm="{arm}"' in page
        assert page.count('class="erv-sent') == 3 * 2  # two sentences per rationale, three arms
        assert "rewards: format 1.00, accuracy 1.00, explanation" in page
        assert 'class="erv-answer erv-ok"' in page


def test_sentence_colours_follow_the_verifier(evaluated):
    records, examples = evaluated
    c00 = next(r for r in records if r["clip_id"] == "c00")  # baseline drifts to surprise, ERV does not
    base = W.arm_html("baseline", c00["arms"]["baseline"]["sample"], "happy")
    erv = W.arm_html("erv", c00["arms"]["erv"]["sample"], "happy")
    assert "erv-sent erv-other" in base and "erv-sent erv-match" not in base
    assert "erv-sent erv-match" in erv and "erv-sent erv-neutral" in erv  # "The room is quiet." -> neutral
    assert 'class="erv-judged erv-bad">surprise' in base and "surprise 0.90" in base


def test_disagreements_and_class_selection(evaluated):
    records, _ = evaluated
    assert W.disagreements(records) == ["c00", "c01", "c03"]
    assert W.disagreements(records, protocol="greedy") == []
    assert W.select_clips(records, "class", "sad") == ["c01", "c05"]
    assert len(W.select_clips(records)) == 6


def test_inspector_page_escapes_text_and_has_a_legend(evaluated):
    records, examples = evaluated
    rec = dict(records[0])
    rec["clip_id"] = "<script>x</script>"
    page = W.inspector_html([rec], examples=None)
    assert "<script>x" not in page and "&lt;script&gt;" in page
    assert "neutral only" in page and page.startswith("<style>")


def test_widget_builds_for_every_clip_and_shows_its_html(evaluated):
    records, examples = evaluated
    app = W.inspector(records, examples)
    mode_row, clip_row, out = app.children
    clip, proto = clip_row.children
    assert list(clip.options) == [r["clip_id"] for r in records]
    for cid in clip.options:
        clip.value = cid
        assert f'data-clip-id="{cid}"' in out.value
    proto.value = "greedy"
    assert "decoding: greedy" in out.value
    mode_row.children[0].value = "disagree"
    assert list(clip.options) == W.disagreements(records, protocol="greedy")
    proto.value = "sample"
    mode_row.children[0].value = "class"
    mode_row.children[1].value = "sad"
    assert list(clip.options) == ["c01", "c05"]
    assert re.search(r'data-clip-id="c0[15]"', out.value)


def test_inspector_renders_every_clip_of_the_shipped_reference_run():
    from erv_lab.paths import REFERENCE_DIR

    path = REFERENCE_DIR / "eval" / "records.json"
    if not path.exists():
        pytest.skip("reference_run/eval/records.json not produced yet: run `make course` (cpu-tiny) to create it")
    records = json.loads(path.read_text())
    page = W.inspector_html(records)
    assert page.count('class="erv-clip"') == len(records) > 0
    assert page.count('class="erv-arm"') == 3 * len(records)


def test_a_sentence_describing_an_absent_cue_is_marked_with_its_cue():
    from erv_lab import widgets as W

    s = {"text": "Her eyebrows are lowered and drawn together.", "matched": True, "names": ["sadness"], "probs": [0.6],
         "cues": ["brow_lower"], "absent": ["brow_lower"]}
    out = W._sentence_html(s)
    assert "erv-ungrounded" in out and "brow_lower (ABSENT from the clip)" in out
    assert "erv-ungrounded" not in W._sentence_html({**s, "absent": []})


def test_render_call_keeps_text_and_figures_and_closes_them():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from erv_lab.widgets import render_call

    def draw(n):
        print("n is", n, "<b>")
        fig, ax = plt.subplots()
        ax.plot(range(n))
        return fig

    before = plt.get_fignums()
    html_ = render_call(draw, n=3)
    assert "n is 3 &lt;b&gt;" in html_ and html_.count("data:image/png;base64,") == 1
    assert plt.get_fignums() == before  # nothing left for the inline backend to show again
    assert render_call(lambda: None) == ""


def test_browse_rerenders_when_a_control_moves():
    import ipywidgets as W

    from erv_lab.widgets import browse

    box = browse(lambda arm, i: print(arm, i * 2), arm=["erv", "baseline"], i=W.IntSlider(1, 0, 5))
    arm, i, out = box.children
    assert isinstance(out, W.HTML) and "erv 2" in out.value
    i.value, arm.value = 4, "baseline"
    assert "baseline 8" in out.value and arm.description == "arm"
