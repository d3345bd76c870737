"""Training-log views: log I/O, curves, first/last means, rollout groups, the live plot."""
import json

from erv_lab import curves as C
from erv_lab import plots as PL


def test_log_history_round_trips_with_a_csv_of_all_keys(tmp_path):
    hist = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5, "kl": 0.1}]
    C.write_log_history(hist, tmp_path)
    assert C.read_log_history(tmp_path) == hist
    header = (tmp_path / "log_history.csv").read_text().splitlines()[0]
    assert header.split(",") == ["kl", "loss", "step"]


def test_curve_and_first_last_skip_missing_values():
    hist = [{"step": s, "r": v} for s, v in [(1, 0.0), (2, None), (3, 1.0), (4, 2.0), (5, 3.0)]] + [{"step": 6}]
    assert C.curve(hist, "r") == ([1, 3, 4, 5], [0.0, 1.0, 2.0, 3.0])
    assert C.first_last(hist, "r", k=2) == (0.5, 2.5)
    assert C.first_last(hist, "absent") == (None, None)


def test_arm_histories_lists_only_arms_that_logged(tmp_path):
    (tmp_path / "erv").mkdir()
    C.write_log_history([{"step": 1, "loss": 1.0}], tmp_path / "erv")
    assert list(C.arm_histories(tmp_path)) == ["erv"]
    assert C.read_completions(tmp_path, "baseline") == []


def test_think_text_is_empty_without_a_think_block():
    assert C.think_text("<think>Sad eyes.</think>\n<answer>sad</answer>") == "Sad eyes."
    assert C.think_text("no tags at all") == ""


def test_completion_groups_regroup_logged_rows_per_prompt(tmp_path):
    (tmp_path / "erv").mkdir()
    rows = [{"step": s, "completion": f"c{s}{i}", "advantage": 0.0} for s in (1, 2) for i in range(4)]
    (tmp_path / "erv" / "completions.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    groups = C.completion_groups(tmp_path, "erv", 2)
    assert [len(g) for g in groups] == [2, 2, 2, 2] and groups[2][0]["completion"] == "c20"


def _trl_completion_file(folder, step, n, g=2):
    """A ``completions_<step>.parquet`` as TRL 1.16's GRPOTrainer.log writes it (conversational prompt and
    completion, one column per reward, the rewards' ``log_extra`` columns, advantage)."""
    import pandas as pd

    table = {"step": [step] * n,
             "prompt": [[{"role": "user", "content": [{"type": "text", "text": f"clip {i // g}?"}]}] for i in range(n)],
             "completion": [[{"role": "assistant", "content": f"<think>s{step} c{i}</think><answer>sad</answer>"}]
                            for i in range(n)],
             "format": [1.0] * n, "accuracy": [float(i % 2) for i in range(n)], "explanation": [0.5] * n,
             "clip_id": [f"{i // g:05d}" for i in range(n)], "solution": ["sad"] * n,
             "explanation/labels": [["sadness ✓", "neutral"]] * n, "advantage": [(-1.0) ** i for i in range(n)]}
    (folder / "completions").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(table).to_parquet(folder / "completions" / f"completions_{step:05d}.parquet")


def test_read_completions_reads_trls_parquet_files_with_the_keys_the_views_use(tmp_path):
    for step in (100, 5, 10):  # files come back in step order
        _trl_completion_file(tmp_path / "erv", step, 4)
    rows = C.read_completions(tmp_path, "erv")
    assert [r["step"] for r in rows] == [5] * 4 + [10] * 4 + [100] * 4 and [r["index"] for r in rows[:4]] == [0, 1, 2, 3]
    first = rows[1]
    assert first == {"step": 5, "index": 1, "completion": "<think>s5 c1</think><answer>sad</answer>", "advantage": -1.0,
                     "clip_id": "00000", "solution": "sad", "explanation/labels": ["sadness ✓", "neutral"],
                     "reward/format": 1.0, "reward/accuracy": 1.0, "reward/explanation": 0.5}
    json.dumps(rows)  # plain Python values, as the jsonl rows were
    groups = C.completion_groups(tmp_path, "erv", 2)  # G contiguous rows of one prompt, one step
    assert [len(g) for g in groups] == [2] * 6
    assert all(len({r["step"] for r in g}) == 1 and len({r["clip_id"] for r in g}) == 1 for g in groups)


def test_read_completions_falls_back_to_an_older_runs_jsonl(tmp_path):
    row = {"step": 5, "index": 0, "completion": "c", "advantage": 0.0, "solution": "sad", "clip_id": "1",
           "reward/format": 1.0, "reward/accuracy": 0.0, "reward/explanation": 0.25}
    (tmp_path / "erv").mkdir()
    (tmp_path / "erv" / "completions.jsonl").write_text(json.dumps(row) + "\n")
    assert C.read_completions(tmp_path, "erv") == [row] and C.completion_files(tmp_path, "erv") == []
    _trl_completion_file(tmp_path / "erv", 10, 2)  # a run resumed after the change: earlier steps from the jsonl
    assert [r["step"] for r in C.read_completions(tmp_path, "erv")] == [5, 10, 10]
    _trl_completion_file(tmp_path / "erv", 5, 2)  # TRL's file of a step wins over the jsonl's rows of it
    assert [r["step"] for r in C.read_completions(tmp_path, "erv")] == [5, 5, 10, 10]


def test_live_curves_update_one_figure_in_place_and_throttles(monkeypatch):
    import IPython.display

    calls = []

    class Handle:
        def update(self, fig):
            calls.append("update")

    def fake_display(obj, display_id=False):
        calls.append("display")
        assert display_id is True  # a handle, not clear_output: progress bars in the cell survive
        return Handle()

    monkeypatch.setattr(IPython.display, "display", fake_display)
    hist = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]
    hook = PL.live_curves(["loss", "kl"], "sft", min_seconds=3600)
    hook(hist)
    hook(hist)  # within min_seconds: skipped
    assert calls == ["display"]
    hook = PL.live_curves(["loss"], min_seconds=0)
    hook({"baseline": hist, "erv": hist})
    hook({"baseline": hist, "erv": hist})
    assert calls == ["display", "display", "update"]


def test_live_curves_end_as_one_figure(monkeypatch):
    shown = []

    class Handle:
        def update(self, fig):
            shown.append(("update", len(fig.axes)))

    monkeypatch.setattr("IPython.display.display", lambda fig, display_id=None: shown.append(("new", len(fig.axes)))
                        or Handle())
    live = PL.live_curves(["loss", "kl"], min_seconds=0)
    hist = [{"step": 1, "loss": 1.0, "kl": 0.0}, {"step": 2, "loss": 0.5, "kl": 0.1}]
    live(hist)
    fig = live.final({"run": hist})
    assert shown == [("new", 2), ("update", 2)] and fig is live.fig  # drawn once, then updated in place


def test_a_reader_following_a_writer_never_sees_a_half_written_log(tmp_path):
    """arms.run_arms reads each arm's log while its worker rewrites it: the file is replaced, never truncated."""
    import threading

    hist = [{"step": i, "loss": 1.0 / (i + 1), "text": "x" * 2000} for i in range(200)]
    stop = threading.Event()

    def write():
        while not stop.is_set():
            C.write_log_history(hist, tmp_path)

    C.write_log_history(hist, tmp_path)
    t = threading.Thread(target=write)
    t.start()
    try:
        for _ in range(300):
            assert len(C.read_log_history(tmp_path)) == 200
    finally:
        stop.set()
        t.join()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log_history.csv", "log_history.json"]
