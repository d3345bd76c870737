"""Notebook plumbing: list the numbered notebooks, inject parameters, strip outputs, check conventions.

Used by ``erv-lab course`` (via ``erv_lab.course``), ``make strip`` and the tests. It does not execute
notebooks itself.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat


COLAB_PREFIX = "https://colab.research.google.com/github/"
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
_BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\(https://colab\.research\.google\.com/github/[^)]*\)")
INSTALL_MARK = "# Install (Colab only"


def repo_url() -> str:
    """The repository's address, written once: ``[project.urls] Repository`` (package metadata, or the
    clone's pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, metadata

    from erv_lab.paths import source_checkout

    repo = source_checkout()
    if repo is not None:
        import tomllib

        return tomllib.loads((repo / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    try:
        for entry in metadata("erv-lab").get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            if label.strip().lower() == "repository":
                return url.strip()
    except PackageNotFoundError:
        pass
    raise RuntimeError("erv-lab's repository address is unknown (no [project.urls] Repository)")


def colab_badge(notebook: str, url: str | None = None) -> str:
    owner_repo = (url or repo_url()).removeprefix("https://github.com/").rstrip("/")
    return f"{BADGE}({COLAB_PREFIX}{owner_repo}/blob/main/notebooks/{notebook})"


def install_cell(url: str | None = None) -> str:
    """The first code cell of every notebook. On Colab (or with ``ERV_LAB_FORCE_COLAB=1``, as the wheel test
    does) it installs erv-lab with its ``colab`` extra unless it is already importable, keeping Colab's own
    torch, torchvision and OpenCV, and asks for a runtime restart when the install replaced a package that was
    already imported. ``ERV_LAB_PIP_SPEC`` / ``ERV_LAB_PIP_ARGS`` replace what is installed and how."""
    spec = f"erv-lab[colab] @ git+{url or repo_url()}"
    return f'''{INSTALL_MARK}; a no-op elsewhere): erv-lab and its `colab` extra, keeping Colab's own torch,
# torchvision and OpenCV. Then print versions and the device.
import importlib.util, os, sys
if ("google.colab" in sys.modules or os.environ.get("ERV_LAB_FORCE_COLAB") == "1") \\
        and importlib.util.find_spec("erv_lab") is None:
    import importlib, importlib.metadata as md, subprocess
    name = lambda d: str(d.metadata["Name"]).lower()  # noqa: E731
    before = {{name(d): d.version for d in md.distributions()}}
    spec = os.environ.get("ERV_LAB_PIP_SPEC", "{spec}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", spec, *os.environ.get("ERV_LAB_PIP_ARGS", "").split()],
                   check=True)
    importlib.invalidate_caches()
    changed = {{name(d) for d in md.distributions() if before.get(name(d), d.version) != d.version}}
    loaded = {{dist.lower() for mod, dists in md.packages_distributions().items() if mod in sys.modules for dist in dists}}
    if changed & loaded:
        raise SystemExit("erv-lab is installed. RESTART THE RUNTIME NOW (Runtime > Restart session), then run all "
                         "cells again; these packages were already loaded in their old versions: "
                         + ", ".join(sorted(changed & loaded)))
import erv_lab
erv_lab.print_env();'''


def sync_links(paths: list[Path], url: str | None = None) -> list[Path]:
    """Rewrite each notebook's Colab badge and install cell from :func:`repo_url`; return those changed."""
    url = url or repo_url()
    changed = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = _BADGE_RE.sub(colab_badge(path.name, url), cell.source)
        first = next(c for c in nb.cells if c.cell_type == "code")
        first.source = install_cell(url)
        if nbformat.writes(nb) != before:
            nbformat.write(nb, path)
            changed.append(path)
    return changed


def numbered_notebooks(directory: Path | None = None) -> list[Path]:
    """``NN_name.ipynb`` files in course order (default: :func:`erv_lab.paths.notebook_dir`)."""
    if directory is None:
        from erv_lab.paths import notebook_dir

        directory = notebook_dir()
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


_BAR = re.compile(r"\d+%\|")


def drop_frozen_bars(nb: nbformat.NotebookNode) -> int:
    """Remove the progress-bar widgets of an executed notebook; returns how many. A tqdm bar in a notebook is an
    ipywidget: its live state is not saved, only its first text (``0%|          | 0/224``), so a saved notebook
    would show every bar frozen at 0 %. The bars were there while it ran; the text they end on is printed by the
    code itself where it matters (kept counts, timings)."""
    dropped = 0
    for cell in nb.cells:
        outs = cell.get("outputs", [])
        keep = [o for o in outs if not ("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                                        and _BAR.search(o.get("data", {}).get("text/plain", "")))]
        dropped += len(outs) - len(keep)
        if len(keep) != len(outs):
            cell["outputs"] = keep
    return dropped


OUTSIDE_REFERENCES = ((r"\bissues?\b", "the project's issue tracker"), (r"\.\./shared", "a folder outside the repository"),
                      (r"ERV_METHOD\.md|STACK\.md|DATASETS\.md", "a file outside the repository (docs/METHOD.md is inside)"))


# A sentence of fixed prose that names a result and gives it a direction or a size asserts what one run showed; it
# belongs in a reading (erv_lab.readings), computed from the run the notebook executes.
_RESULT = re.compile(r"\b(EEA|EPC|UAR|WAR|FCR|accuracy|rewards?|loss|KL|kl|κ|kappa|F1|baseline|ERV arm|gap)\b")
_DIRECTION = re.compile(r"\b(stays? (?:near|level|flat|in place)|should (?:climb|rise|raise|fall|drop|improve|stay|"
                        r"reach|beat|go up|go down)|climbs|rises|raises|falls|drops|improves|doubles|halves|"
                        r"(?:higher|lower) than|outperforms?)\b")
_SIZE = re.compile(r"(?:EEA|EPC|UAR|WAR|FCR)[^.\n]{0,12}?[+−-]?\d+\.\d")


def result_claims(markdown: str) -> list[str]:
    """Sentences of ``markdown`` that assert a result's direction or size (empty list = none)."""
    sentences = re.split(r"(?<=[.!?])\s+", markdown.replace("\n", " "))
    return [s.strip() for s in sentences if _RESULT.search(s) and _DIRECTION.search(s) or _SIZE.search(s)]


def title_problems(path: Path, nb) -> list[str]:
    """The first heading must carry the file's number: ``# 04 · ...`` in ``04_cold_start_sft.ipynb``."""
    first = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    number = path.name.split("_", 1)[0]
    if not re.match(rf"# {re.escape(number)} · ", first):
        return [f"the title must start with '# {number} · ' (the file's number); it reads {first.splitlines()[:1]}"]
    return []


def exercises(nb) -> list[int]:
    """The numbers of the exercises listed in the notebook's '## Exercises' cell(s)."""
    out = []
    for c in nb.cells:
        if c.cell_type == "markdown" and c.source.lstrip().startswith("## Exercises"):
            out += [int(m) for m in re.findall(r"(?m)^(\d+)\. ", c.source)]
    return out


def answer_problems(nb) -> list[str]:
    """Every exercise needs a worked answer: a collapsible ``<summary>Answer N</summary>`` block in a markdown
    cell (a code cell after it may compute the answer from the learner's run)."""
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    got = {int(n) for n in re.findall(r"<summary>\s*Answer (\d+)", md)}
    nums = exercises(nb)
    problems = [f"exercise {n} has no worked answer (<summary>Answer {n}</summary>)" for n in nums if n not in got]
    problems += [f"an answer to exercise {n}, which does not exist" for n in sorted(got - set(nums))]
    if "Check your understanding" not in md:
        problems.append("no closing 'Check your understanding' section")
    return problems


def convention_problems(path: Path) -> list[str]:
    """What a numbered notebook is missing of the course conventions (empty list = fine)."""
    nb = nbformat.read(path, as_version=4)
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    if any(c.get("outputs") or c.get("execution_count") is not None for c in code):
        problems.append("has committed outputs or execution counts (run `make strip`)")
    if colab_badge(path.name) not in md:
        problems.append("no Colab badge linking to this notebook at [project.urls] Repository "
                        "(python -m erv_lab.notebook_tools links)")
    if not code:
        return problems + ["has no code cells"]
    first = code[0].source
    if first != install_cell():
        problems.append("first code cell must be the generated Colab install cell (python -m erv_lab.notebook_tools links)")
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
    problems += title_problems(path, nb) + answer_problems(nb)
    for pattern, why in OUTSIDE_REFERENCES:
        if re.search(pattern, md):
            problems.append(f"prose refers to {why} ({pattern!r}): learners only have the repository")
    for claim in result_claims(md):
        problems.append(f"prose asserts a result (make it a reading, erv_lab.readings): {claim[:160]!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["links"]:
        for path in sync_links([Path(a) for a in argv[1:]] or numbered_notebooks()):
            print(f"updated badge + install cell: {path}")
        return 0
    if not argv or argv[0] != "strip":
        print("usage: python -m erv_lab.notebook_tools strip NOTEBOOK... | links [NOTEBOOK...]")
        return 2
    for name in argv[1:]:
        nb = nbformat.read(name, as_version=4)
        if strip_outputs(nb):
            nbformat.write(nb, name)
            print(f"stripped {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
