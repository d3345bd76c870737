"""Everything erv-lab does with TRL's private methods, in one small place, for the TRL range it was written for.

``GRPOTrainer`` is used as TRL ships it except for two overrides, both of private methods (``_``-names TRL may
change in any release, so the range is pinned here and in ``pyproject.toml``, and ``tests/test_api_drift.py``
fails by name when one of them moves):

- ``_generate_and_score_completions`` is wrapped to remember each generation batch's ``solution`` and
  ``clip_id``; ``log`` then appends the batch (completion, every reward part, advantage: rows of G share a
  prompt) to ``completions.jsonl`` from TRL's own ``_logs`` buffer. TRL's ``log_completions`` prints a table
  but keeps no file, and notebook 05 reads the rollouts back per prompt.
- ``_get_per_token_logps_and_entropies``: LLaVA-OneVision needs ``batch_num_images`` (several images per prompt,
  so no tiling), which TRL 1.16 does not pass; a forward pre-hook adds it.
"""
from __future__ import annotations

import json
from pathlib import Path

TRL_RANGE = ("1.16", "1.17")  # >= first, < second: the versions whose private methods these overrides match
OVERRIDDEN = ("_generate_and_score_completions", "_get_per_token_logps_and_entropies", "log")
LOGS_KEYS = ("completion", "advantages", "rewards")  # what ``log`` reads from GRPOTrainer._logs


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".")[:2] if x.isdigit())


def check_trl() -> None:
    """Refuse a TRL outside ``TRL_RANGE`` with a clear message (before any training starts)."""
    import trl

    lo, hi = TRL_RANGE
    if not _version(lo) <= _version(trl.__version__) < _version(hi):
        raise RuntimeError(f"erv-lab's GRPO overrides (erv_lab/trl_compat.py) were written for TRL >= {lo}, < {hi}; "
                           f"this environment has TRL {trl.__version__}. Install the pinned one: "
                           "pip install -c requirements/constraints.txt -e .")


def grpo_trainer_class():
    """``trl.GRPOTrainer`` with the two overrides above (a class made on first use: importing this module
    does not import TRL)."""
    check_trl()
    from trl import GRPOTrainer

    class LoggingGRPOTrainer(GRPOTrainer):
        """GRPOTrainer that appends the latest generation batch (completion, every reward part, advantage)
        to ``completions.jsonl`` at each logging step: contiguous rows of G share a prompt."""

        completions_path: Path | None = None
        keep_per_log: int = 64

        _meta: dict = {}

        def _generate_and_score_completions(self, inputs):
            from accelerate.utils import gather_object

            self._meta = {k: gather_object([x.get(k) for x in inputs]) for k in ("solution", "clip_id")}
            return super()._generate_and_score_completions(inputs)

        def _get_per_token_logps_and_entropies(self, model, *args, batch_num_images=None, **kwargs):
            # LLaVA-OneVision needs ``batch_num_images`` (several images per prompt -> no tiling, as its processor
            # counted the image tokens); TRL 1.16 drops it. Prompts here all carry the same number of images, so a
            # forward pre-hook adds it to every chunk TRL sends through the model.
            counts = kwargs.get("num_images")
            if not counts or kwargs.get("pixel_values") is None or \
                    getattr(getattr(model, "config", None), "model_type", "") != "llava_onevision":
                return super()._get_per_token_logps_and_entropies(model, *args, **kwargs)
            if len(set(counts)) != 1:
                raise ValueError(f"LLaVA-OneVision prompts with different image counts in one batch: {set(counts)}")

            def add_counts(module, fargs, fkwargs):
                fkwargs.setdefault("batch_num_images", [counts[0]] * fkwargs["input_ids"].shape[0])
                return fargs, fkwargs

            handle = model.register_forward_pre_hook(add_counts, with_kwargs=True)
            try:
                return super()._get_per_token_logps_and_entropies(model, *args, **kwargs)
            finally:
                handle.remove()

        def log(self, logs, start_time=None):
            rows = []
            if self.accelerator.is_main_process and "loss" in logs and self.completions_path is not None:
                L = self._logs
                n = len(L["completion"])
                for i in range(max(0, n - self.keep_per_log), n):
                    comp = L["completion"][i]
                    text = comp[0]["content"] if isinstance(comp, list) else comp
                    rows.append({"step": self.state.global_step, "index": i, "completion": text,
                                 "advantage": float(L["advantages"][i]),
                                 **{k: v[i - n] for k, v in self._meta.items() if len(v) >= n - i},
                                 **{f"reward/{k}": float(v[i]) for k, v in L["rewards"].items()}})
            super().log(logs, start_time)
            if rows:
                with open(self.completions_path, "a") as f:
                    for r in rows:
                        f.write(json.dumps(r) + "\n")

    return LoggingGRPOTrainer
