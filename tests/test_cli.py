import subprocess
import sys

import nbformat
import pytest

from erv_lab.cli import build_parser, main
from erv_lab.course import NotebookFailed, run_course
from erv_lab.notebook_tools import inject_parameters, strip_outputs


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("env", "course", "synth", "prepare", "verifier", "train", "evaluate"):
        assert command in out


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "erv_lab.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "erv-lab" in out.stdout


def test_env_prints_versions_device_and_offline_status(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "torch=" in out and "transformers=" in out and "device:" in out and "hub:" in out


def test_presets_command(capsys):
    assert main(["presets"]) == 0
    assert "cpu-tiny" in capsys.readouterr().out


def test_bare_group_shows_its_help(capsys):
    with pytest.raises(SystemExit):
        main(["verifier"])
    assert "train" in capsys.readouterr().out


def test_train_grpo_requires_an_arm():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "grpo", "--preset", "smoke"])


def _notebook(tmp_path, name, body):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('preset = "x"\nrun_dir = None', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(preset, run_dir)"),
        nbformat.v4.new_code_cell(body),
    ])
    nbformat.write(nb, tmp_path / name)


def test_course_stops_naming_the_failing_notebook_and_cell(tmp_path):
    books = tmp_path / "nbs"
    books.mkdir()
    _notebook(books, "00_ok.ipynb", "x = 1")
    _notebook(books, "01_bad.ipynb", "raise RuntimeError('boom in cell')")
    _notebook(books, "02_never.ipynb", "x = 2")
    with pytest.raises(NotebookFailed) as exc:
        run_course("smoke", out=tmp_path / "run", notebook_dir=books)
    assert exc.value.notebook.name == "01_bad.ipynb" and exc.value.cell_index == 3  # injected cell shifts by one
    assert "boom in cell" in str(exc.value)
    assert (tmp_path / "run" / "notebooks" / "00_ok.ipynb").exists()
    assert not (tmp_path / "run" / "notebooks" / "02_never.ipynb").exists()


def test_a_cell_past_the_limit_stops_the_course_naming_the_limit(tmp_path):
    from erv_lab.course import default_cell_timeout

    books = tmp_path / "nbs"
    books.mkdir()
    _notebook(books, "00_hangs.ipynb", "import time\ntime.sleep(60)")
    with pytest.raises(NotebookFailed) as exc:
        run_course("smoke", out=tmp_path / "run", notebook_dir=books, cell_timeout=2)
    assert exc.value.cell_index == 3 and "2 s per-cell limit" in str(exc.value) and "--cell-timeout" in str(exc.value)
    assert default_cell_timeout("cpu-tiny") == default_cell_timeout("smoke") == 1800
    assert default_cell_timeout("colab-t4") is None and default_cell_timeout("paper") is None  # hours in one cell
    args = build_parser().parse_args(["course", "--preset", "colab-t4", "--cell-timeout", "0"])
    assert args.cell_timeout == 0 and build_parser().parse_args(["course"]).cell_timeout == -1


def test_injected_parameters_follow_the_parameters_cell_and_strip_clears_outputs():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# t"),
        nbformat.v4.new_code_cell("preset = 'a'", metadata={"tags": ["parameters"]}),
    ])
    inject_parameters(nb, {"preset": "smoke"})
    assert nb.cells[2].metadata["tags"] == ["injected-parameters"] and "preset = 'smoke'" in nb.cells[2].source
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hi")]
    nb.cells[1].execution_count = 3
    assert strip_outputs(nb) and not nb.cells[1].outputs and nb.cells[1].execution_count is None
    assert not strip_outputs(nb)
