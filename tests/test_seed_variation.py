"""scripts/seed_variation.py: the across-seed table, by hand."""
import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("seed_variation", Path(__file__).parents[1] / "scripts" / "seed_variation.py")
SV = importlib.util.module_from_spec(spec)
spec.loader.exec_module(SV)


def _results(erv_eea, base_eea, judge_eea=None):
    arms = {"erv": {"EEA": erv_eea, "EPC": 0.9, "UAR": 0.8}, "baseline": {"EEA": base_eea, "EPC": 0.7, "UAR": 0.8}}
    if judge_eea is not None:
        arms["erv"]["judges"] = {"other": {"EEA": judge_eea, "EPC": 0.5, "UAR": 0.8}}
        arms["baseline"]["judges"] = {"other": {"EEA": 0.5, "EPC": 0.5, "UAR": 0.8}}
    return {"protocol": {"judge": "head"}, **arms, "greedy": arms}


def test_t_interval_by_hand():
    mean, low, high = SV.t_interval([10.0, 20.0, 30.0])  # sd 10, t(0.975, 2) = 4.303
    assert mean == 20.0 and high - mean == pytest.approx(4.3027 * 10 / 3 ** 0.5, abs=1e-3) and mean - low == high - mean


def test_the_table_holds_every_judge_per_seed_in_points():
    tab = SV.table({0: _results(0.8, 0.6, 0.7), 1: _results(0.9, 0.6, 0.5), 2: _results(0.7, 0.6, 0.6)})
    assert tab["head"]["EEA"]["per_seed"] == {0: 20.0, 1: 30.0, 2: 10.0} and tab["head"]["EEA"]["mean"] == 20.0
    assert tab["head"]["EPC"]["low"] == tab["head"]["EPC"]["high"] == 20.0  # no spread
    assert tab["other"]["EEA"]["per_seed"] == {0: 20.0, 1: 0.0, 2: 10.0}
    md = SV.markdown(tab, [0, 1, 2])
    assert "| head | +20.0 [" in md and "0: +20.0 / +20.0" in md
