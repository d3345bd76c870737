"""Notebook plumbing: list the numbered notebooks, inject parameters, strip outputs, check conventions.

Used by ``erv-lab course`` (via ``erv_lab.course``), ``make strip`` and the tests. It does not execute
notebooks itself.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from erv_lab.config import REPO_ROOT

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
COLAB_PREFIX = "https://colab.research.google.com/github/"


def numbered_notebooks(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """``NN_name.ipynb`` files in course order."""
    return sorted(p for p in directory.glob("[0-9][0-9]_*.ipynb"))


def parameters_index(nb: nbformat.NotebookNode) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    raise ValueError("notebook has no cell tagged 'parameters'")


def inject_parameters(nb: nbformat.NotebookNode, params: dict) -> nbformat.NotebookNode:
    """Insert a cell tagged ``injected-parameters`` after the ``parameters`` cell (papermill's convention)."""
    idx = parameters_index(nb)
    src = "# Parameters injected by erv-lab course\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
    cell = nbformat.v4.new_code_cell(src, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(idx + 1, cell)
    return nb


def strip_outputs(nb: nbformat.NotebookNode) -> bool:
    """Remove outputs and execution counts in place; return True if anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.get("outputs") or cell.get("execution_count") is not None:
            changed = True
        cell["outputs"] = []
        cell["execution_count"] = None
        for key in ("execution", "collapsed", "scrolled"):
            if key in cell.get("metadata", {}):
                del cell["metadata"][key]
                changed = True
    return changed


def convention_problems(path: Path) -> list[str]:
    """What a numbered notebook is missing of the course conventions (empty list = fine)."""
    nb = nbformat.read(path, as_version=4)
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    if any(c.get("outputs") or c.get("execution_count") is not None for c in code):
        problems.append("has committed outputs or execution counts (run `make strip`)")
    if COLAB_PREFIX not in md or path.name not in md:
        problems.append("no Colab badge linking to this notebook")
    if not code:
        return problems + ["has no code cells"]
    first = code[0].source
    if "google.colab" not in first or "pip install" not in first:
        problems.append("first code cell must hold the Colab install (a no-op locally)")
    if "print_env()" not in first:
        problems.append("first code cell must print versions and device with erv_lab.print_env()")
    try:
        p = parameters_index(nb)
        if "preset" not in nb.cells[p].source:
            problems.append("parameters cell must set `preset`")
    except ValueError as exc:
        problems.append(str(exc))
    for word in ("Objectives", "Exercises"):
        if word not in md:
            problems.append(f"no '{word}' section")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "strip":
        print("usage: python -m erv_lab.notebook_tools strip NOTEBOOK...")
        return 2
    for name in argv[1:]:
        nb = nbformat.read(name, as_version=4)
        if strip_outputs(nb):
            nbformat.write(nb, name)
            print(f"stripped {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
