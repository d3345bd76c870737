"""Run the numbered notebooks top to bottom for one preset (``erv-lab course``, ``make course``).

Executed copies go to ``runs/<preset>/notebooks/``; artifacts go wherever the notebooks write them
(``runs/<preset>/``). On a failing cell the run stops and names the notebook and the cell.
This module executes notebooks; it holds no course logic.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from tqdm.auto import tqdm

from erv_lab.config import load_config, run_dir
from erv_lab.notebook_tools import drop_frozen_bars, inject_parameters, numbered_notebooks

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}


class NotebookFailed(RuntimeError):
    def __init__(self, notebook: Path, cell_index: int, message: str):
        self.notebook, self.cell_index = notebook, cell_index
        super().__init__(f"{notebook.name}: cell {cell_index} failed\n{message}")


def _failing_cell(nb: nbformat.NotebookNode) -> int:
    """Index (0-based, among all cells) of the first code cell with an error output."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return i
    return -1


def run_notebook(path: Path, params: dict, out_path: Path, timeout: int = 1800) -> float:
    """Execute one notebook with injected parameters; write the executed copy; return seconds."""
    nb = nbformat.read(path, as_version=4)
    inject_parameters(nb, params)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:  # the executed copy is written by ``finally``
        raise NotebookFailed(path, _failing_cell(nb), str(exc)[-3000:]) from None
    finally:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        drop_frozen_bars(nb)  # live bars are widgets; saved, they would all read 0 %
        nbformat.write(nb, out_path)
    return time.perf_counter() - t0


def run_course(preset: str = "cpu-tiny", out: str | Path | None = None, only: list[str] | None = None,
               notebook_dir: Path | None = None, overrides: list[str] | None = None) -> dict:
    """Run every numbered notebook (or those whose name starts with an item of ``only``); ``overrides``
    (``["section.field=value"]``, the CLI's ``--set``) reach every notebook's parameters cell."""
    overrides = list(overrides or [])
    cfg = load_config(preset, overrides)  # fail fast on a bad preset name or override, before starting kernels
    out_dir = run_dir(cfg, out, say=True)
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    books = [p for p in numbered_notebooks(notebook_dir) if not only or any(p.name.startswith(o) for o in only)]
    if not books:
        raise FileNotFoundError(f"no notebooks matched {only!r} in {notebook_dir}")
    timings: dict[str, float] = {}
    bar = tqdm(books, desc=f"course [{preset}]", unit="notebook")
    for path in bar:
        bar.set_postfix_str(path.name)
        params = {"preset": preset, "run_dir": str(out_dir), "overrides": overrides}
        timings[path.name] = round(run_notebook(path, params, out_dir / "notebooks" / path.name), 1)
    (out_dir / "course_timings.json").write_text(json.dumps(timings, indent=2))
    return {"run_dir": str(out_dir), "timings": timings}
