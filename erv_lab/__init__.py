"""erv-lab: a notebook-first reproduction of ERV (Rha et al., AAAI 2026, arXiv 2510.23506).

Data flows one way: layouts/media/data (synth) -> verifier (encoders, validation) -> judges -> rewards ->
policy/train (trl_compat, arms) -> evaluate (metrics, grounding) -> report/plots -> widgets/explain.
``stages`` decides, for every artefact of a run, whether it is reused or made again; ``cli`` holds every command.
Notebooks in ``notebooks/`` import these modules; the logic lives here.
"""
__version__ = "0.1.0"

import os as _os

# PyTorch's CUDA allocator grows segments instead of leaving fragmented blocks (variable-length rollouts and
# prompts otherwise fragment a 16 GB T4). Read when CUDA first initialises, so it is set on import, before any
# notebook touches the GPU; a value you set yourself wins.
_os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


def _quiet_known_noise() -> None:
    """One message dropped, by its exact start, before bitsandbytes is imported: on a CPU with AVX512-BF16,
    bitsandbytes looks for an optional faster 4-bit kernel on the Hub (the ``kernels`` package) and logs a
    warning when it is absent, then uses its own kernel. erv-lab runs offline and never installs ``kernels``, so
    the warning (printed once per process: seven times in a course) says nothing to do. Every other message of
    that logger passes (tests/test_precision.py)."""
    import logging

    class _DropOptionalKernelNote(logging.Filter):
        def filter(self, record):
            return not str(record.msg).startswith(NOISE_PREFIX)

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if not any(type(f).__name__ == "_DropOptionalKernelNote" for f in logger.filters):
        logger.addFilter(_DropOptionalKernelNote())


NOISE_PREFIX = "Failed to load CPU gemm_4bit_forward from kernels-community"
_quiet_known_noise()

from erv_lab.envinfo import print_env  # noqa: E402,F401  (the first cell of every notebook)
