"""Notebook 00's helpers: the course map, measured minutes per notebook, and an environment check (the
picture of the method is ``erv_lab.plots.pipeline_figure``).

Nothing here trains or evaluates; it describes the course and checks that the machine can run it.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

from erv_lab.paths import GOEMOTIONS_DIR, REFERENCE_DIR, runs_root

# (notebook, what it teaches, hardware per preset)
COURSE_MAP = [
    ("00_overview", "the paper's problem and method, the course map, deviations from the paper, environment check", "any"),
    ("01_data_prep", "DFEW/MAFW layouts, synthetic clips, frame + audio sampling, rationale drift", "CPU"),
    ("02_verifier", "the Emotional Rationale Verifier: GoEmotions classifier, thresholds, judges", "CPU (GPU for RoBERTa)"),
    ("03_rewards", "format, accuracy and the explanation reward by hand; strict format, anti-stuffing, gaming probes", "CPU"),
    ("04_cold_start_sft", "the policy (a LLaVA-class VLM), cold-start SFT on drifting rationales", "CPU tiny / 16 GB GPU"),
    ("05_grpo", "GRPO: group advantages, KL, baseline vs ERV reward", "CPU tiny / 16 GB GPU"),
    ("06_consistency", "EEA / FCR / EPC vs UAR / WAR, judges and κ, your run beside the shipped spread", "CPU"),
    ("07_diagnostics", "reward hacking, cue grounding, the per-clip inspector, your own clip", "CPU"),
    ("08_faithfulness", "beyond the paper: modality removal, cross-modal hallucination, step necessity", "CPU"),
]


def measured_minutes(run_root: Path | None = None) -> dict[str, dict[str, float]]:
    """Minutes per notebook per preset, from ``course_timings.json`` files written by ``erv-lab course``
    (in ``runs/<preset>/`` or the shipped ``erv_lab/reference_run/``)."""
    found: dict[str, dict[str, float]] = {}
    run_root = Path(run_root) if run_root is not None else runs_root()[0]
    candidates = list(run_root.glob("*/course_timings.json")) + list(REFERENCE_DIR.glob("course_timings.json"))
    for path in candidates:
        preset = path.parent.name if path.parent.parent == run_root else "cpu-tiny (reference run)"
        try:
            timings = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        found[preset] = {k.removesuffix(".ipynb"): round(v / 60, 1) for k, v in timings.items()}
    return found


def course_map():
    """The course map as a DataFrame: notebook, what it teaches, hardware, measured minutes per preset."""
    import pandas as pd

    rows = [{"notebook": nb, "teaches": what, "hardware": hw} for nb, what, hw in COURSE_MAP]
    df = pd.DataFrame(rows)
    for preset, minutes in sorted(measured_minutes().items()):
        df[f"min ({preset})"] = df["notebook"].map(minutes)
    return df


def slow_cells(path: Path | None = None):
    """The cells that took 20 s or more, per notebook (``cell_timings.json`` of ``erv-lab course``; default the
    shipped cpu-tiny run's), as a DataFrame; ``None`` when there is no such file."""
    import pandas as pd

    path = Path(path) if path is not None else REFERENCE_DIR / "cell_timings.json"
    if not path.exists():
        return None
    rows = [{"notebook": nb.removesuffix(".ipynb"), "cell": c["cell"], "starts with": c["first_line"],
             "seconds": c["seconds"]} for nb, cells in json.loads(path.read_text()).items() for c in cells]
    return pd.DataFrame(rows)


def check_environment() -> dict[str, tuple[bool, str]]:
    """Checks a learner's machine must pass; each value is (ok, detail)."""
    checks: dict[str, tuple[bool, str]] = {}
    for name, minimum in [("torch", "2.4"), ("transformers", "5.0"), ("trl", "1.16"), ("peft", "0.21"),
                          ("datasets", "4.0")]:
        try:
            ver = importlib.import_module(name).__version__
            ok = _version_tuple(ver) >= _version_tuple(minimum)
            checks[name] = (ok, f"{ver} (need >= {minimum})")
        except Exception as exc:  # report, do not crash the overview
            checks[name] = (False, f"not importable: {exc}")
    try:
        import cv2

        ok = hasattr(cv2, "CascadeClassifier") and Path(cv2.data.haarcascades).exists()
        checks["opencv haar cascades"] = (ok, cv2.__version__ + ("" if ok else " (need 4.x with cv2.data)"))
    except ImportError:  # a plain `pip install erv-lab`: OpenCV is an extra (Colab has its own, see pyproject.toml)
        checks["opencv haar cascades"] = (False, 'not installed: pip install "erv-lab[cpu]" (brings OpenCV\'s '
                                                 'headless build; Colab already has OpenCV)')
    except Exception as exc:
        checks["opencv haar cascades"] = (False, f"not importable: {exc}")
    goemo = GOEMOTIONS_DIR / "train.tsv"
    checks["GoEmotions vendored"] = (goemo.exists(), str(goemo))
    offline = all(os.environ.get(v) == "1" for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))
    checks["offline mode (CPU presets)"] = (True, "on" if offline else "off: Hub presets may download models")
    return checks


def _version_tuple(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)
