"""Notebook conventions (fast) and execution of every numbered notebook on the smoke preset (slow).

The execution tests share one run folder and run in course order, as `make course` does, so each notebook
sees the artifacts of the ones before it.
"""
import nbformat
import pytest

from erv_lab.course import run_notebook
from erv_lab.notebook_tools import convention_problems, numbered_notebooks

NOTEBOOKS = numbered_notebooks()


def test_the_course_has_its_notebooks_in_order():
    names = [p.name for p in NOTEBOOKS]
    assert names and names[0] == "00_overview.ipynb"
    assert names == sorted(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_conventions(path):
    assert convention_problems(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_no_outputs_in_git(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs: run `make strip`"


@pytest.fixture(scope="module")
def smoke_run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("smoke_run")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_on_smoke(path, smoke_run_dir):
    executed = smoke_run_dir / "notebooks" / path.name
    seconds = run_notebook(path, {"preset": "smoke", "run_dir": str(smoke_run_dir)}, executed, timeout=900)
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    warned = [(i, line) for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.outputs
              if o.output_type == "stream" and o.name == "stderr" for line in o.text.splitlines() if "Warning: " in line]
    assert not warned, f"saved outputs carry library warnings (cell, line): {warned[:3]}"
    print(f"{path.name}: {seconds:.1f} s on smoke")


def test_the_convention_check_refuses_prose_that_points_outside_the_repository(tmp_path):
    src = NOTEBOOKS[0]
    nb = nbformat.read(src, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("See the verifier issue and ../shared/reference/ERV_METHOD.md."))
    path = tmp_path / src.name
    nbformat.write(nb, path)
    problems = " ".join(convention_problems(path))
    assert "issue tracker" in problems and "outside the repository" in problems and "a file outside" in problems


def test_the_convention_check_refuses_prose_that_asserts_a_result():
    """Fixed prose explains ideas; a direction or a size of a result is a reading (erv_lab.readings)."""
    from erv_lab.notebook_tools import result_claims

    claimed = ["The baseline's EEA and EPC stay near the SFT model's.",
               "The ERV arm's explanation reward should climb above the baseline's.",
               "ERV raises EEA by 17.9 points."]
    assert [len(result_claims(s)) for s in claimed] == [1, 1, 1]
    ideas = ["The ERV reward pays for sentences that express the ground-truth emotion.",
             "Read the paired interval of the difference: the goal line says whether this run shows it."]
    assert result_claims(" ".join(ideas)) == []


def test_saved_notebooks_keep_no_progress_bar_frozen_at_zero():
    from erv_lab.notebook_tools import drop_frozen_bars

    def widget(text):
        return nbformat.v4.new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2, "version_minor": 0},
            "text/plain": text})

    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [widget("clips (train):   0%|          | 0/224 [00:00<?, ?it/s]"),
                    nbformat.v4.new_output("stream", name="stdout", text="kept 224 clips\n"),
                    widget("IntSlider(value=0)")]
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert drop_frozen_bars(nb) == 1
    assert [o.get("text") or o["data"]["text/plain"] for o in cell.outputs] == ["kept 224 clips\n", "IntSlider(value=0)"]


def test_slow_cells_are_read_from_nbclients_timestamps():
    from erv_lab.course import slow_cells

    nb = nbformat.v4.new_notebook()
    fast, slow, md = nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("# train\nrun()"), \
        nbformat.v4.new_markdown_cell("text")
    fast.metadata["execution"] = {"iopub.execute_input": "2026-12-04T10:00:00.000Z",
                                  "shell.execute_reply": "2026-12-04T10:00:19.900Z"}
    slow.metadata["execution"] = {"iopub.execute_input": "2026-12-04T10:00:00.000Z",
                                  "shell.execute_reply": "2026-12-04T10:01:05.250Z"}
    nb.cells = [md, fast, slow]
    assert slow_cells(nb) == [{"cell": 2, "first_line": "run()", "seconds": 65.2}]
    assert slow_cells(nb, threshold=10)[0]["cell"] == 1
