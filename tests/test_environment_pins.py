"""environment.yml, requirements/constraints.txt and pyproject.toml must agree."""
import re
import tomllib

import yaml
from packaging.requirements import Requirement

from pathlib import Path
REPO_ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_norm(name)] = version
    return pins


def test_every_constraint_is_an_exact_pin():
    for line in (REPO_ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", line), line


def test_environment_yml_pins_match_constraints():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "-c requirements/constraints.txt" in pip_section
    assert any(item.startswith("-e .[") and "dev" in item for item in pip_section)
    pins = _constraints()
    checked = 0
    for item in pip_section:
        if "==" in item:
            name, version = item.split("==")
            assert pins.get(_norm(name)) == version, f"environment.yml has {item}, constraints pin {pins.get(_norm(name))}"
            checked += 1
    assert checked >= 20


GPU_ONLY = {"torchvision"}  # LLaVA-OneVision's processor needs it; its wheel does not import beside the CPU torch


def test_pyproject_ranges_admit_the_pins():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("dev", "gpu", "cpu", "colab", "judge", "trackio"):
        reqs += project["optional-dependencies"][extra]
    pins = _constraints()
    for spec in reqs:
        req = Requirement(spec)
        if _norm(req.name) in GPU_ONLY:  # installed beside a GPU box's own CUDA torch, never in the pinned CPU venv
            assert _norm(req.name) not in pins and spec not in project["optional-dependencies"]["dev"], spec
            continue
        pinned = pins.get(_norm(req.name))
        assert pinned is not None, f"{req.name} is a dependency but has no exact pin in constraints.txt"
        assert req.specifier.contains(pinned, prereleases=True), f"{req.name}=={pinned} violates {req.specifier}"


def test_colab_keeps_its_own_torch_torchvision_and_opencv():
    """Colab ships torch, torchvision and opencv-python: neither the base dependencies nor the `colab` extra may
    bring another OpenCV distribution or a torchvision (which would pull another torch)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    colab = [Requirement(s) for s in project["dependencies"] + project["optional-dependencies"]["colab"]]
    names = {_norm(r.name) for r in colab}
    assert not names & {"torchvision", "opencv-python", "opencv-python-headless", "opencv-contrib-python"}
    torch = next(r for r in colab if _norm(r.name) == "torch")
    assert torch.specifier.contains("2.9.0")  # a range Colab's torch is inside, never a pin
    for extra in ("cpu", "gpu", "dev"):  # every other install gets the headless OpenCV
        assert any(_norm(Requirement(s).name) == "opencv-python-headless" for s in project["optional-dependencies"][extra])


def test_opencv_is_the_4x_headless_build_and_torchvision_is_absent():
    pins = _constraints()
    assert pins["opencv-python-headless"].startswith("4.")
    assert "torchvision" not in pins and "opencv-python" not in pins


def test_installed_versions_match_the_pins():
    from importlib.metadata import PackageNotFoundError, version

    pins = _constraints()
    for name in ("torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "opencv-python-headless"):
        try:
            installed = version(name)
        except PackageNotFoundError:  # pragma: no cover - make test always installs them
            raise AssertionError(f"{name} is not installed")
        assert installed.split("+")[0] == pins[name], f"{name} {installed} installed, {pins[name]} pinned"


def test_the_shipped_runs_stack_is_the_pins():
    import json

    from erv_lab.paths import REFERENCE_DIR

    shipped = json.loads((REFERENCE_DIR / "stack.json").read_text())["versions"]
    pins = _constraints()
    assert shipped and all(pins[_norm(name)] == version for name, version in shipped.items()), \
        {n: (v, pins.get(_norm(n))) for n, v in shipped.items() if pins.get(_norm(n)) != v}


def test_a_stack_that_differs_from_the_shipped_run_is_named(monkeypatch, capsys):
    from erv_lab import envinfo

    real = envinfo._version
    monkeypatch.setattr(envinfo, "_version", lambda name: "9.9.9" if name == "torch" else real(name))
    assert any(d.startswith("torch 9.9.9 (shipped run: ") for d in envinfo.stack_differences())
    envinfo.print_env()
    assert "differs from the one that made the shipped run: torch 9.9.9" in capsys.readouterr().out


def test_the_note_quotes_the_measured_spread(monkeypatch, capsys, tmp_path):
    import json

    from erv_lab import envinfo, paths

    rows = [{"sample": {"erv_minus_baseline": {"EEA": e, "EPC": p, "UAR": u}}} for e, p, u in
            [(20.0, 18.5, -2.4), (6.1, -3.0, 1.2)]]
    (tmp_path / "spread.json").write_text(json.dumps({"setups": rows}))
    (tmp_path / "stack.json").write_text((paths.REFERENCE_DIR / "stack.json").read_text())
    monkeypatch.setattr(paths, "REFERENCE_DIR", tmp_path)
    real = envinfo._version
    monkeypatch.setattr(envinfo, "_version", lambda name: "9.9.9" if name == "torch" else real(name))
    envinfo.print_env()
    out = capsys.readouterr().out
    assert "Across 2 measured set-ups" in out and "EEA +6.1 … +20.0, EPC -3.0 … +18.5, UAR -2.4 … +1.2" in out
    (tmp_path / "spread.json").unlink()
    assert envinfo.spread_note() == ""


def test_the_readiness_check_names_the_extra_when_opencv_is_missing(monkeypatch):
    import sys

    from erv_lab import overview

    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError, as after a plain pip install
    ok, detail = overview.check_environment()["opencv haar cascades"]
    assert not ok and 'pip install "erv-lab[cpu]"' in detail
