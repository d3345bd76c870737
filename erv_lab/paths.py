"""Where erv-lab's shipped files are, and where a run writes.

Presets, the accelerate configs, vendored GoEmotions and the shipped reference run are package data, read
through ``importlib.resources``: a plain ``pip install`` (a wheel, not editable) finds them from any working
directory. Runs never write inside the installed package: see :func:`runs_root`.
"""
from __future__ import annotations

import os
import sys
from importlib.resources import files
from pathlib import Path

PACKAGE_DIR = Path(str(files("erv_lab"))).resolve()
CONFIG_DIR = PACKAGE_DIR / "configs"
ACCELERATE_DIR = CONFIG_DIR / "accelerate"
GOEMOTIONS_DIR = PACKAGE_DIR / "vendor" / "goemotions"
REFERENCE_DIR = PACKAGE_DIR / "reference_run"
DRIVE = Path("/content/drive/MyDrive")  # where Colab mounts Google Drive


def source_checkout() -> Path | None:
    """The repository root when erv_lab is imported from a clone (``pip install -e`` or ``sys.path``), else None."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").exists() and (root / "notebooks").is_dir() else None


def on_colab() -> bool:
    """In a Colab runtime (or pretending to be, for the tests: ``ERV_LAB_FORCE_COLAB=1``)."""
    return "google.colab" in sys.modules or os.environ.get("ERV_LAB_FORCE_COLAB") == "1"


def runs_root() -> tuple[Path, str]:
    """``(folder that holds runs/<preset>/, why that one)``.

    In order: ``$ERV_LAB_RUNS``; on Colab, Google Drive when it is mounted (runs outlive the runtime), else the
    runtime's disk; in a clone, ``<repo>/runs`` (git-ignored) when the working directory is inside it; otherwise
    ``runs/`` under the working directory. Never inside the installed package.
    """
    cwd = Path.cwd().resolve()
    repo = source_checkout()
    if os.environ.get("ERV_LAB_RUNS"):
        root, why = Path(os.environ["ERV_LAB_RUNS"]).expanduser(), "$ERV_LAB_RUNS"
    elif on_colab() and DRIVE.is_dir():
        root, why = DRIVE / "erv-lab" / "runs", "Google Drive (mounted): runs survive a disconnect"
    elif on_colab():
        root, why = cwd / "runs", "the Colab runtime's disk: lost when it disconnects (mount Drive to keep runs)"
    elif repo is not None and (cwd == repo or repo in cwd.parents):
        root, why = repo / "runs", "the repository's runs/ (git-ignored)"
    else:
        root, why = cwd / "runs", "runs/ under the working directory"
    root = root.resolve()
    if root == PACKAGE_DIR or PACKAGE_DIR in root.parents:
        raise RuntimeError(f"refusing to write runs inside the installed package ({PACKAGE_DIR}); "
                           "set ERV_LAB_RUNS or change the working directory")
    return root, why


def notebook_dir() -> Path:
    """The course notebooks: ``notebooks/`` of the clone, else ``./notebooks`` (a wheel does not ship them)."""
    repo = source_checkout()
    for cand in ([repo / "notebooks"] if repo else []) + [Path.cwd() / "notebooks"]:
        if cand.is_dir():
            return cand
    raise FileNotFoundError("no notebooks/ folder: run from a clone of the repository, or open the notebooks "
                            "in Colab from their badges")
