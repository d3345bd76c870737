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


INTERRUPTED = ("interrupted (Ctrl-C). Run the same command again to continue: finished stages are reused, and "
               "training resumes from its last checkpoint.")


def _interrupted(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it arose from, is a Ctrl-C: here, or in the kernel's cell (on SIGINT,
    nbclient interrupts the kernel, and its clean-up may then fail with an unrelated error)."""
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt) or getattr(exc, "ename", None) == "KeyboardInterrupt":
            return True
        exc = exc.__context__
    return False


SLOW_CELL_SECONDS = 20.0  # cells at least this long are listed in cell_timings.json (notebook 00 shows them)


def slow_cells(nb, threshold: float = SLOW_CELL_SECONDS) -> list[dict]:
    """``[{"cell": index, "first_line": ..., "seconds": ...}]`` for the code cells of an executed notebook that
    took at least ``threshold`` seconds (from nbclient's ``execution`` timestamps)."""
    from datetime import datetime

    out = []
    for i, cell in enumerate(nb.cells):
        t = cell.get("metadata", {}).get("execution", {})
        start, end = t.get("iopub.execute_input"), t.get("shell.execute_reply")
        if cell.cell_type != "code" or not start or not end:
            continue
        seconds = (datetime.fromisoformat(end.replace("Z", "+00:00")) -
                   datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
        if seconds >= threshold:
            first = next((ln for ln in cell.source.splitlines() if ln.strip() and not ln.startswith("#")), "")
            out.append({"cell": i, "first_line": first[:100], "seconds": round(seconds, 1)})
    return out


# Per-cell limit of ``erv-lab course`` on the CPU presets, so a hung kernel stops the course instead of idling: the
# slowest cpu-tiny cell takes about 3 minutes (reference_run/cell_timings.json). GPU presets train for hours in one
# cell, so they run without a limit unless ``--cell-timeout`` sets one.
CPU_CELL_TIMEOUT_S = 1800


def default_cell_timeout(preset: str) -> int | None:
    """The per-cell limit in seconds for a preset: ``CPU_CELL_TIMEOUT_S`` on smoke and cpu-tiny, none otherwise."""
    return CPU_CELL_TIMEOUT_S if preset in ("smoke", "cpu-tiny") else None


def run_notebook(path: Path, params: dict, out_path: Path, timeout: int | None = CPU_CELL_TIMEOUT_S) -> float:
    """Execute one notebook with injected parameters; write the executed copy; return seconds. ``timeout``: seconds
    per cell (``None``: no limit); a cell that runs longer stops the course, naming the limit."""
    nb = nbformat.read(path, as_version=4)
    inject_parameters(nb, params)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    try:
        client.execute()
    except BaseException as exc:  # the executed copy is written by ``finally``
        if _interrupted(exc):
            raise NotebookFailed(path, _failing_cell(nb), INTERRUPTED) from None
        if isinstance(exc, TimeoutError):  # nbclient's CellTimeoutError (also a CellExecutionError)
            raise NotebookFailed(path, _failing_cell(nb), f"a cell ran longer than the {timeout} s per-cell limit; if "
                                 "it was working, not hung, run again with a larger --cell-timeout (0: none)") from None
        if isinstance(exc, CellExecutionError):
            raise NotebookFailed(path, _failing_cell(nb), str(exc)[-3000:]) from None
        raise
    finally:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        drop_frozen_bars(nb)  # live bars are widgets; saved, they would all read 0 %
        nbformat.write(nb, out_path)
    return time.perf_counter() - t0


def run_course(preset: str = "cpu-tiny", out: str | Path | None = None, only: list[str] | None = None,
               notebook_dir: Path | None = None, overrides: list[str] | None = None,
               cell_timeout: int | None = -1) -> dict:
    """Run every numbered notebook (or those whose name starts with an item of ``only``); ``overrides``
    (``["section.field=value"]``, the CLI's ``--set``) reach every notebook's parameters cell. ``cell_timeout``:
    seconds per cell, ``None`` or 0 for no limit, -1 for the preset's default (``default_cell_timeout``)."""
    if cell_timeout is not None and cell_timeout < 0:
        cell_timeout = default_cell_timeout(preset)
    cell_timeout = cell_timeout or None
    overrides = list(overrides or [])
    cfg = load_config(preset, overrides)  # fail fast on a bad preset name or override, before starting kernels
    out_dir = run_dir(cfg, out, say=True)
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    books = [p for p in numbered_notebooks(notebook_dir) if not only or any(p.name.startswith(o) for o in only)]
    if not books:
        raise FileNotFoundError(f"no notebooks matched {only!r} in {notebook_dir}")
    timings: dict[str, float] = {}
    slow: dict[str, list[dict]] = {}
    bar = tqdm(books, desc=f"course [{preset}]", unit="notebook")
    for path in bar:
        bar.set_postfix_str(path.name)
        params = {"preset": preset, "run_dir": str(out_dir), "overrides": overrides}
        executed = out_dir / "notebooks" / path.name
        timings[path.name] = round(run_notebook(path, params, executed, timeout=cell_timeout), 1)
        slow[path.name] = slow_cells(nbformat.read(executed, as_version=4))
    (out_dir / "course_timings.json").write_text(json.dumps(timings, indent=2))
    (out_dir / "cell_timings.json").write_text(json.dumps({k: v for k, v in slow.items() if v}, indent=1))
    return {"run_dir": str(out_dir), "timings": timings}
