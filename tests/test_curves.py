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
