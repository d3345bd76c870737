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
    """Two messages dropped, each by its exact start on its own logger, before bitsandbytes is imported. On a CPU
    with AVX512-BF16, bitsandbytes looks for an optional faster 4-bit kernel on the Hub (the ``kernels`` package)
    and logs a warning when it is absent, then uses its own kernel; where ``kernels`` is installed (transformers
    >= 5.25 requires it), an offline lookup first warns that it skipped the publisher trust check of
    ``kernels-community``. erv-lab runs offline and needs neither kernel, so both notes (printed once per
    process: seven times in a course) say nothing to do. Every other message of those loggers passes
    (tests/test_precision.py)."""
    import logging

    class _DropOptionalKernelNote(logging.Filter):
        def __init__(self, prefix: str):
            super().__init__()
            self.prefix = prefix

        def filter(self, record):
            return not str(record.msg).startswith(self.prefix)

    for name, prefix in NOISE.items():
        logger = logging.getLogger(name)
        if not any(type(f).__name__ == "_DropOptionalKernelNote" for f in logger.filters):
            logger.addFilter(_DropOptionalKernelNote(prefix))
    import warnings

    # TRL 1.x reads transformers' deprecated ``is_gradient_checkpointing`` at every generation of an in-process
    # GRPO run (a library calling a library; nothing for a learner to change): one FutureWarning per step, 22 in
    # one notebook cell. Only that message is ignored; every other FutureWarning still shows.
    warnings.filterwarnings("ignore", message=DEPRECATED_INSIDE_TRL, category=FutureWarning)


NOISE_PREFIX = "Failed to load CPU gemm_4bit_forward from kernels-community"
NOISE = {"bitsandbytes.backends.cpu.ops": NOISE_PREFIX,  # {logger: the start of the one message dropped}
         "kernels._internals.hf_hub": "Skipping publisher trust check for 'kernels-community/"}
DEPRECATED_INSIDE_TRL = r"`is_gradient_checkpointing` is deprecated and will be removed in v6"
_quiet_known_noise()

from erv_lab.envinfo import print_env  # noqa: E402,F401  (the first cell of every notebook)
