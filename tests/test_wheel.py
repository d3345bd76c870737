"""The Colab path, played here: a built wheel (not editable) in a fresh venv, no repository on ``sys.path``,
notebooks 00-02 on smoke from an unrelated working directory, with the install cell's Colab branch forced on.

Nothing is downloaded: the fresh venv sees this venv's dependencies through a ``.pth`` file naming a folder of
links (erv-lab itself left out), and the install cell's pip runs with ``--no-index``, so every dependency the
wheel asks for must already be satisfied, as Colab's torch is.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["00_overview.ipynb", "01_data_prep.ipynb", "02_verifier.ipynb"]
SHIPPED = ["erv_lab/configs/smoke.yaml", "erv_lab/configs/cpu-tiny.yaml", "erv_lab/configs/colab-t4.yaml",
           "erv_lab/configs/paper.yaml", "erv_lab/configs/accelerate/zero3.yaml",
           "erv_lab/vendor/goemotions/train.tsv", "erv_lab/vendor/goemotions/SOURCE.md",
           "erv_lab/vendor/goemotions/LICENSE-CC-BY-4.0.txt", "erv_lab/reference_run/results.json",
           "erv_lab/reference_run/eval/records.json"]

RUNNER = r"""
import sys, time, nbformat
from nbclient import NotebookClient
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell('preset = "smoke"', metadata={"tags": ["injected-parameters"]}))
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
    print(f"{path.rsplit('/', 1)[-1]}: {time.perf_counter() - t0:.1f} s", flush=True)
"""


def _site_packages(venv: Path) -> Path:
    return Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())


def _deps_folder(dest: Path) -> Path:
    """Links to every distribution of this venv but erv-lab (pip included: the fresh venv has none of its own,
    so that its bundled setuptools cannot shadow the one torch asks for)."""
    here = Path(sysconfig.get_paths()["purelib"])
    dest.mkdir()
    for entry in here.iterdir():
        name = entry.name.lower()
        if name.startswith(("erv_lab", "__editable__")) or name.endswith(".pth"):
            continue
        (dest / entry.name).symlink_to(entry)
    return dest


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX venv layout")
def test_a_built_wheel_runs_the_first_notebooks_the_colab_way(tmp_path):
    # 1. build the wheel from a copy of the source tree (nothing is written into the repository)
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "dist", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", ".hypothesis"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True, text=True)
    wheel = next((tmp_path / "dist").glob("erv_lab-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [s for s in SHIPPED if s not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert not any(n.startswith(("tests/", "notebooks/")) for n in names)

    # 2. a fresh venv that sees this venv's dependencies, but not erv-lab and not the repository
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = _site_packages(venv)
    # inside the venv's prefix, as installed packages are (dill pickles modules outside sys.prefix by value)
    (site / "erv_deps.pth").write_text(str(_deps_folder(venv / "deps")) + "\n")
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "ERV_LAB_"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg",
               PYTHONNOUSERSITE="1", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}", VIRTUAL_ENV=str(venv),
               ERV_LAB_FORCE_COLAB="1", ERV_LAB_PIP_SPEC=f"erv-lab[colab] @ {wheel.as_uri()}",
               ERV_LAB_PIP_ARGS="--no-index")
    work = tmp_path / "somewhere" / "else"
    work.mkdir(parents=True)
    probe = subprocess.run([py, "-c", "import importlib.util; print(importlib.util.find_spec('erv_lab'))"], cwd=work,
                           env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "None"  # erv-lab is not importable before the install cell runs

    # 3. notebooks 00-02 on smoke; the first one's install cell installs the wheel
    run = subprocess.run([py, "-c", RUNNER, *[str(REPO / "notebooks" / n) for n in NOTEBOOKS]], cwd=work, env=env,
                         capture_output=True, text=True, timeout=1500)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    print(run.stdout)

    # 4. erv-lab came from the wheel, runs went under the working directory, nothing landed in site-packages
    where = subprocess.run([py, "-c", "import erv_lab, json; from erv_lab import paths; print(json.dumps("
                                      "[erv_lab.__file__, str(paths.runs_root()[0]), paths.source_checkout()]))"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    module, runs, checkout = json.loads(where.stdout)
    assert Path(module).is_relative_to(site) and checkout is None
    assert Path(runs) == work / "runs"
    assert (work / "runs" / "smoke").is_dir() and any((work / "runs" / "smoke").iterdir())
    record = next(site.glob("erv_lab-*.dist-info")) / "RECORD"
    installed = {line.split(",")[0] for line in record.read_text().splitlines()}
    extra = [str(p.relative_to(site)) for p in (site / "erv_lab").rglob("*")
             if p.is_file() and p.suffix != ".pyc" and str(p.relative_to(site)) not in installed]
    assert extra == [], f"written inside site-packages: {extra[:10]}"
    assert not list(site.rglob("runs"))
