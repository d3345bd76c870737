"""Where shipped files are read from and where runs are written (erv_lab.paths), and the hardware preset."""
import pytest
import torch

from erv_lab import config, paths


def test_shipped_files_are_package_data():
    assert (paths.CONFIG_DIR / "cpu-tiny.yaml").is_file() and (paths.ACCELERATE_DIR / "zero3.yaml").is_file()
    assert (paths.GOEMOTIONS_DIR / "train.tsv").is_file() and (paths.GOEMOTIONS_DIR / "LICENSE-CC-BY-4.0.txt").is_file()
    assert paths.CONFIG_DIR.parent == paths.PACKAGE_DIR


@pytest.fixture
def clean(monkeypatch, tmp_path):
    for var in ("ERV_LAB_RUNS", "ERV_LAB_FORCE_COLAB"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(paths, "DRIVE", tmp_path / "no-drive")
    return monkeypatch


def test_runs_go_under_the_working_directory_outside_a_clone(clean, tmp_path):
    clean.chdir(tmp_path)
    root, why = paths.runs_root()
    assert root == tmp_path.resolve() / "runs" and "working directory" in why
    assert config.run_dir("smoke") == root / "smoke" and root.joinpath("smoke").is_dir()


def test_inside_the_clone_runs_go_to_its_git_ignored_runs_folder(clean):
    repo = paths.source_checkout()
    if repo is None:
        pytest.skip("erv_lab is not imported from a clone here")
    clean.chdir(repo / "notebooks")  # where Jupyter starts a notebook's kernel
    assert paths.runs_root()[0] == repo / "runs"


def test_on_colab_runs_go_to_drive_when_it_is_mounted(clean, tmp_path):
    clean.chdir(tmp_path)
    clean.setenv("ERV_LAB_FORCE_COLAB", "1")
    root, why = paths.runs_root()
    assert root == tmp_path.resolve() / "runs" and "lost when it disconnects" in why
    drive = tmp_path / "MyDrive"
    drive.mkdir()
    clean.setattr(paths, "DRIVE", drive)
    root, why = paths.runs_root()
    assert root == drive.resolve() / "erv-lab" / "runs" and "Google Drive" in why


def test_the_environment_variable_wins_and_the_package_is_refused(clean, tmp_path):
    clean.setenv("ERV_LAB_RUNS", str(tmp_path / "mine"))
    assert paths.runs_root() == ((tmp_path / "mine").resolve(), "$ERV_LAB_RUNS")
    clean.setenv("ERV_LAB_RUNS", str(paths.PACKAGE_DIR / "runs"))
    with pytest.raises(RuntimeError, match="inside the installed package"):
        paths.runs_root()


def test_the_preset_follows_the_hardware(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.auto_preset()[0] == "cpu-tiny"
    assert config.load_config(None).preset == "cpu-tiny"
    assert "picked from the hardware" in capsys.readouterr().out

    class Props:
        total_memory = 15 * 2**30

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i=0: Props())
    preset, why = config.auto_preset()
    assert preset == "colab-t4" and "Tesla T4" in why


def test_the_paper_launch_command_names_a_shipped_accelerate_config():
    import re
    import subprocess
    import sys

    from accelerate.commands.config.config_args import ClusterConfig

    line = next(l for l in (paths.CONFIG_DIR / "paper.yaml").read_text().splitlines() if "accelerate launch" in l)
    name = re.search(r'erv-lab path ([\w/.-]+)\)', line).group(1)
    out = subprocess.run([sys.executable, "-m", "erv_lab.cli", "path", name], capture_output=True, text=True, check=True)
    cfg = ClusterConfig.from_yaml_file(out.stdout.strip())  # accelerate itself reads it
    assert cfg.distributed_type.value == "DEEPSPEED" and cfg.deepspeed_config["zero_stage"] == 3
    bad = subprocess.run([sys.executable, "-m", "erv_lab.cli", "path", "../paths.py"], capture_output=True, text=True)
    assert bad.returncode == 2


def test_a_relative_run_folder_is_made_absolute(clean, tmp_path):
    # erv-lab course --out runs/x: the notebooks' kernels run in notebooks/, so a relative path would move
    clean.chdir(tmp_path)
    out = config.run_dir("smoke", "runs/x")
    assert out.is_absolute() and out == tmp_path.resolve() / "runs" / "x"
