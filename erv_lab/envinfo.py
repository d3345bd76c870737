"""What this machine is: versions, device (CPU/CUDA + memory) and offline status.

``print_env()`` is the first cell of every notebook and ``erv-lab env`` on the command line. It reports;
it does not change anything.
"""
from __future__ import annotations

import importlib
import os
import platform
import sys

# import name -> distribution name; versions are read from package metadata, so printing them imports
# nothing heavy (importing trl + peft + bitsandbytes alone takes ~10 s on 2 cores)
PACKAGES = {"erv_lab": "erv-lab", "torch": "torch", "transformers": "transformers", "trl": "trl", "peft": "peft",
            "accelerate": "accelerate", "datasets": "datasets", "bitsandbytes": "bitsandbytes",
            "sklearn": "scikit-learn", "cv2": "opencv-python-headless", "numpy": "numpy",
            "matplotlib": "matplotlib", "ipywidgets": "ipywidgets"}
OFFLINE_VARS = ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"]


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGES.get(name, name))
    except PackageNotFoundError:
        pass
    try:  # not installed as a distribution (e.g. a source checkout on sys.path): ask the module
        return str(getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as exc:  # a broken optional package should not stop the report
        return f"not installed ({type(exc).__name__})"


def usable_cpus() -> int:
    """CPUs this process may run on (a container's or ``taskset``'s limit), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_has_avx512_bf16() -> bool | None:
    """Whether the CPU reports AVX512-BF16 (bitsandbytes then runs 4-bit layers in a packed bf16 format, and
    oneDNN picks other kernels: decodes can differ from a CPU without it). ``None`` where unknown."""
    try:
        with open("/proc/cpuinfo") as fh:
            return " avx512_bf16" in fh.read()
    except OSError:
        return None


def machine_summary() -> dict:
    """What a run's numbers depend on beyond the code: CPU model and its AVX512-BF16 flag, torch version.
    Saved in results.json (``protocol.machine``): decodes differ across CPU types."""
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_avx512_bf16": cpu_has_avx512_bf16(), "usable_cpus": usable_cpus(),
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def device_info() -> dict:
    import torch

    info: dict = {"cpu_cores": usable_cpus(), "cpu_avx512_bf16": cpu_has_avx512_bf16()}
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["ram_gib"] = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["ram_gib"] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device="cuda", gpu=props.name, gpu_count=torch.cuda.device_count(),
                    gpu_mem_gib=round(props.total_memory / 2**30, 1))
    else:
        info.update(device="cpu", gpu=None, gpu_count=0, gpu_mem_gib=None)
    return info


def offline_status() -> dict:
    return {var: os.environ.get(var, "") for var in OFFLINE_VARS}


def env_report() -> dict:
    """Everything ``print_env`` shows, as a dict (used by tests and run logs)."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in PACKAGES},
        "device": device_info(),
        "offline": offline_status(),
    }


def stack_differences() -> list[str]:
    """The packages whose installed version differs from the shipped run's (``reference_run/stack.json``, the
    pins of requirements/constraints.txt), as ``"torch 2.14.1 (shipped run: 2.13.0)"``; ``[]`` when all match."""
    import json

    from erv_lab.paths import REFERENCE_DIR

    f = REFERENCE_DIR / "stack.json"
    if not f.exists():
        return []
    out = []
    for name, pinned in json.loads(f.read_text())["versions"].items():
        have = _version(name).split("+")[0]
        if have != pinned:
            out.append(f"{name} {have} (shipped run: {pinned})")
    return out


def spread_note() -> str:
    """How far ERV minus baseline moved across the measured set-ups (``reference_run/spread.json``), in words:
    what a learner whose stack or CPU differs from the shipped run's should expect. ``""`` when not measured."""
    import json

    from erv_lab.paths import REFERENCE_DIR

    f = REFERENCE_DIR / "spread.json"
    if not f.exists():
        return ""
    rows = json.loads(f.read_text()).get("setups") or []
    if not rows:
        return ""
    d = [r["sample"]["erv_minus_baseline"] for r in rows]
    rng = ", ".join(f"{k} {min(x[k] for x in d):+.1f} … {max(x[k] for x in d):+.1f}" for k in ("EEA", "EPC", "UAR"))
    return (f"Across {len(rows)} measured set-ups of the shipped commit (seeds, CPU instruction sets, the newest "
            f"torch/transformers) ERV minus baseline ranged {rng} points (sampling; erv_lab/reference_run/spread.md): "
            "expect your numbers to differ from the shipped run's by about that much.")


def print_env() -> dict:
    rep = env_report()
    print(f"python {rep['python']} on {rep['platform']}")
    print("  " + "  ".join(f"{k}={v}" for k, v in rep["versions"].items()))
    dev = rep["device"]
    if dev["device"] == "cuda":
        print(f"device: cuda x{dev['gpu_count']} ({dev['gpu']}, {dev['gpu_mem_gib']} GiB)")
    else:
        bf16 = {True: ", AVX512-BF16", False: ", no AVX512-BF16", None: ""}[dev["cpu_avx512_bf16"]]
        print(f"device: cpu ({dev['cpu_cores']} usable cores{bf16}, {dev['ram_gib']} GiB RAM), no CUDA GPU")
    off = rep["offline"]
    mode = "offline" if all(v == "1" for v in off.values()) else "online allowed"
    print(f"hub: {mode} (" + ", ".join(f"{k}={v or 'unset'}" for k, v in off.items()) + ")")
    diff = stack_differences()
    if diff:
        print("note: this stack differs from the one that made the shipped run: " + ", ".join(diff) + ". Your "
              "numbers may differ from erv_lab/reference_run/ (so may another CPU type's). " +
              (spread_note() + " " if spread_note() else "") + "Notebook 06 sets your run beside the shipped one "
              "and the spread measured so far. "
              "`pip install -c requirements/constraints.txt -e .` installs the shipped stack.")
    return rep
