"""Everything erv-lab does with TRL's and transformers' private names, in one small place, for the TRL range it
was written for.

``GRPOTrainer`` logs its completions as TRL ships it: ``log_completions=True`` (``erv_lab.train.grpo_args``)
makes TRL write, at every log (logging steps and the end of training; main process only),
``<output_dir>/completions/completions_<step:05d>.parquet``: the generation batch of the last step (step,
prompt, completion, one column per reward, advantage; rows of G share a prompt), plus the columns the rewards
add through TRL's ``log_extra`` (``clip_id``, ``solution``, ``<explanation>/labels``: ``erv_lab.rewards``). With
``report_to`` naming trackio (or wandb) the same table goes to its store. ``erv_lab.curves.read_completions``
reads the files back. erv-lab sets ``num_completions_to_print=0``: TRL prints no rich table, and does not draw
the rows it would print with Python's ``random`` (the training run's numbers do not depend on logging).

What TRL 1.16 cannot do is one override, of a private method (``_``-names TRL may change in any release, so the
range is pinned here and in ``pyproject.toml``, and ``tests/test_api_drift.py`` fails by name when it moves):

- ``_get_per_token_logps_and_entropies``: LLaVA-OneVision needs ``batch_num_images`` (several images per prompt,
  so no tiling), which TRL 1.16 does not pass; a forward pre-hook adds it.

And one wrapper of a private attribute of transformers' ``TrackioCallback`` (``_trackio``, the trackio module it
calls): :func:`local_trackio` makes its ``trackio.init`` pass ``embed=False``. Otherwise, inside a notebook,
``init`` starts trackio's dashboard server in the kernel and embeds it (on Colab through a public share link);
erv-lab's trackio runs stay in the local store until ``trackio show`` opens it.
"""
from __future__ import annotations

TRL_RANGE = ("1.16", "1.17")  # >= first, < second: the versions whose private methods these overrides match
OVERRIDDEN = ("_get_per_token_logps_and_entropies",)


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
    """``trl.GRPOTrainer`` with the override above (a class made on first use: importing this module does not
    import TRL)."""
    check_trl()
    from trl import GRPOTrainer

    class OneVisionGRPOTrainer(GRPOTrainer):
        """GRPOTrainer that passes LLaVA-OneVision its ``batch_num_images``; everything else is TRL's."""

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

    return OneVisionGRPOTrainer


class _LocalTrackio:
    """The trackio module as ``TrackioCallback`` sees it, with ``init(..., embed=False)``."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)

    def init(self, *args, **kwargs):
        return self._module.init(*args, **{**kwargs, "embed": False})


def local_trackio(trainer) -> None:
    """Keep a trainer's trackio run in the local store: its ``TrackioCallback`` (there when ``report_to`` names
    trackio) calls ``trackio.init(embed=False)``, so no dashboard server starts inside a notebook and no share
    link opens on Colab. Where it logs is trackio's: ``$TRACKIO_DIR``, else ``$HF_HOME/trackio``; a
    ``TRACKIO_SPACE_ID`` or ``TRACKIO_SERVER_URL`` set in the environment still sends it there (the learner's
    choice). A no-op without trackio."""
    from transformers.integrations import TrackioCallback

    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TrackioCallback) and not isinstance(cb._trackio, _LocalTrackio):
            cb._trackio = _LocalTrackio(cb._trackio)
