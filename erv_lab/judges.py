"""Judges: who decides which emotion a rationale expresses, for EEA / FCR / EPC at evaluation time.

Every judge has ``judge(reasons, labels) -> list[str]`` returning one label of ``labels`` per rationale
(anything else, or a failure, becomes ``"neutral"`` and is counted in ``stats``). ``LLMJudge`` asks any
OpenAI-compatible endpoint with the paper's prompt; ``HFJudge`` asks a local transformers model;
``ClassifierJudge`` (offline default) uses a MiniLM classifier that is independent of the n-gram reward
verifier. ``agreement`` compares two judges. No metric is computed here (see ``erv_lab.metrics``).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from erv_lab.labels import VOCABULARIES, normalize_label, to_goemotions

PROMPT = ("Read the reasoning content and respond with the appropriate emotion in {labels}. "
          "Reply with only the emotion word.\nReason: {reason}\nAnswer Emotion:")
FALLBACK = "neutral"


def judge_prompt(reason: str, labels: Sequence[str]) -> str:
    """The paper's judge prompt, verbatim, with the comma-separated label list (ERV_METHOD.md)."""
    return PROMPT.format(labels=", ".join(labels), reason=reason)


def dataset_of(labels: Sequence[str]) -> str:
    """Which vocabulary (``dfew`` / ``mafw``) a label list belongs to (normalisation needs it)."""
    for name, vocab in VOCABULARIES.items():
        if set(labels) <= set(vocab):
            return name
    raise ValueError(f"labels {list(labels)} are not a subset of any vocabulary {sorted(VOCABULARIES)}")


class _Judge:
    """Shared bookkeeping: ``stats`` counts replies, out-of-list replies and failures (both -> neutral)."""

    name = "judge"

    def __init__(self) -> None:
        self.stats = {"calls": 0, "out_of_list": 0, "failures": 0, "cache_hits": 0}

    def _map(self, reply: str | None, labels: Sequence[str]) -> str:
        self.stats["calls"] += 1
        if reply is None:
            self.stats["failures"] += 1
            return FALLBACK
        label = normalize_label(reply, dataset_of(labels))
        if label is None or label not in labels:
            self.stats["out_of_list"] += 1
            return FALLBACK
        return label


# =========================================================================== OpenAI-compatible endpoint
class LLMJudge(_Judge):
    """Chat-completions judge: POST ``{base_url}/chat/completions`` with temperature 0.

    The API key is read from the environment variable ``api_key_env`` only (never stored). Each request
    is retried ``max_retries`` times with exponential backoff (``backoff * 2**attempt`` s + jitter) on
    timeouts, connection errors, HTTP 429/5xx and malformed JSON; at most ``concurrency`` requests run at
    once; replies are cached on disk under ``cache_dir`` keyed by sha256(model, prompt).
    """

    name = "llm"

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 30.0,
                 max_retries: int = 3, backoff: float = 1.0, concurrency: int = 4,
                 cache_dir: str | Path | None = None, max_tokens: int = 8):
        super().__init__()
        self.base_url, self.model = base_url.rstrip("/"), model
        self.api_key_env, self.timeout, self.max_retries = api_key_env, timeout, max_retries
        self.backoff, self.concurrency, self.max_tokens = backoff, max(1, concurrency), max_tokens
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def _cache_path(self, prompt: str) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(json.dumps([self.model, prompt]).encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.json"

    def _request(self, prompt: str) -> str:
        body = json.dumps({"model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                           "messages": [{"role": "user", "content": prompt}]}).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, headers=headers)
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            data = json.loads(resp.read().decode("utf-8"))
        content = data["choices"][0]["message"]["content"]
        if not isinstance(content, str):
            raise ValueError("reply content is not a string")
        return content

    def ask(self, prompt: str) -> str | None:
        """The raw reply to one prompt (cached), or None when every attempt failed."""
        path = self._cache_path(prompt)
        if path is not None and path.exists():
            self.stats["cache_hits"] += 1
            return json.loads(path.read_text())["reply"]
        for attempt in range(self.max_retries + 1):
            try:
                reply = self._request(prompt)
                break
            except urllib.error.HTTPError as exc:
                if exc.code not in (408, 409, 429) and exc.code < 500:
                    return None  # 4xx other than rate limits: retrying will not help
            except (urllib.error.URLError, TimeoutError, OSError, ValueError, KeyError, IndexError, TypeError):
                pass
            if attempt < self.max_retries:
                time.sleep(self.backoff * 2 ** attempt * (1 + 0.1 * random.random()))
        else:
            return None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"model": self.model, "prompt": prompt, "reply": reply}))
        return reply

    def replies(self, reasons: Sequence[str], labels: Sequence[str]) -> list[str | None]:
        prompts = [judge_prompt(r or "", labels) for r in reasons]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self.ask, prompts))

    def judge(self, reasons: Sequence[str], labels: Sequence[str]) -> list[str]:
        return [self._map(r, labels) for r in self.replies(reasons, labels)]


# =========================================================================== local transformers model
class HFJudge(_Judge):
    """The same prompt through a local causal LM (chat template when the tokenizer has one), greedy."""

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any = None, max_new_tokens: int = 8, batch_size: int = 8):
        super().__init__()
        if isinstance(model, (str, Path)):
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
            model = AutoModelForCausalLM.from_pretrained(model, device_map="auto")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def _text(self, prompt: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
        return prompt

    def replies(self, reasons: Sequence[str], labels: Sequence[str]) -> list[str | None]:
        import torch

        tok, out = self.tokenizer, []
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"
        for i in range(0, len(reasons), self.batch_size):
            texts = [self._text(judge_prompt(r or "", labels)) for r in reasons[i:i + self.batch_size]]
            enc = tok(texts, return_tensors="pt", padding=True).to(self.model.device)
            try:
                with torch.inference_mode():
                    gen = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                              pad_token_id=tok.pad_token_id)
                out += tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            except RuntimeError:
                out += [None] * len(texts)
        return out

    def judge(self, reasons: Sequence[str], labels: Sequence[str]) -> list[str]:
        return [self._map(r, labels) for r in self.replies(reasons, labels)]


# =========================================================================== offline classifier judge
class ClassifierJudge(_Judge):
    """Any ``predict_proba`` text scorer as a judge: embed the whole rationale, keep the GoEmotions columns
    of the dataset's labels (``labels.to_goemotions``), answer the most probable one. The offline default
    wraps the MiniLM classifier, a different family and training from the n-gram reward verifier."""

    name = "minilm"

    def __init__(self, scorer: Any):
        super().__init__()
        self.scorer = scorer

    def judge(self, reasons: Sequence[str], labels: Sequence[str]) -> list[str]:
        ds = dataset_of(labels)
        cols = [to_goemotions(label, ds) for label in labels]
        P = self.scorer.predict_proba([r or "" for r in reasons])[:, cols]  # (N, len(labels))
        out = []
        for r, p in zip(reasons, P):
            out.append(self._map(labels[int(np.argmax(p))] if r else None, labels))
        return out


def train_minilm_judge(cfg, run_dir: str | Path, n_goemotions: int | None = None, progress: bool | None = None):
    """Frozen MiniLM + logistic head on a seeded GoEmotions-train subsample (``n_goemotions``; default 1,500,
    or 200 when ``verifier.max_train`` is set (smoke): MiniLM encodes ~200 sentences/s on 2 cores) plus the
    rationale-train sentences (at most as many as GoEmotions rows in smoke). Embeddings are cached in
    ``run_dir/data/cache``."""
    from erv_lab.verifier import MiniLMClassifier, MiniLMEncoder, rationale_rows_for, training_set

    n = n_goemotions or (min(200, cfg.verifier.max_train) if cfg.verifier.max_train else 1500)
    rows = rationale_rows_for(cfg)[0]
    rows = rows[:n] if cfg.verifier.max_train else rows
    texts, Y, w = training_set(n, rows, seed=cfg.data.seed + 1)
    enc = MiniLMEncoder()
    t0 = time.perf_counter()
    cache = Path(run_dir) / "data" / "cache" / f"minilm_train_{n}_{len(rows)}_{cfg.data.seed}.npy"
    E = enc.encode(texts, progress=progress, cache=cache)
    model = MiniLMClassifier.fit(E, Y, w, encoder=enc, info={"n_goemotions": n, "n_rationale": len(rows)})
    model.info["train_seconds"] = round(time.perf_counter() - t0, 1)
    return model


def ensure_judge(cfg, run_dir: str | Path, progress: bool | None = None):
    """The evaluation judge of ``cfg.verifier.judge``: ``minilm`` (train-or-load under ``run_dir/judge``),
    ``llm`` (env ERV_JUDGE_BASE_URL, ERV_JUDGE_MODEL, key in ERV_JUDGE_API_KEY_ENV or OPENAI_API_KEY;
    cache in ``run_dir/judge/llm_cache``) or ``hf`` (env ERV_JUDGE_MODEL: a local path or Hub id)."""
    from erv_lab.verifier import CONFIG_FILE, load_verifier

    kind, out = cfg.verifier.judge, Path(run_dir) / "judge"
    if kind == "llm":
        return LLMJudge(os.environ["ERV_JUDGE_BASE_URL"], os.environ["ERV_JUDGE_MODEL"],
                        os.environ.get("ERV_JUDGE_API_KEY_ENV", "OPENAI_API_KEY"), cache_dir=out / "llm_cache")
    if kind == "hf":
        return HFJudge(os.environ["ERV_JUDGE_MODEL"])
    if kind != "minilm":
        raise ValueError(f"unknown verifier.judge {kind!r}; valid: minilm, llm, hf")
    if (out / CONFIG_FILE).exists():
        return ClassifierJudge(load_verifier(out))
    model = train_minilm_judge(cfg, run_dir, progress=progress)
    model.save(out)
    model.path = str(out)
    return ClassifierJudge(model)


def judge_accuracy(judge: Any, rows: Sequence[dict]) -> dict:
    """Share of held-out rationale sentences (``verifier.rationale_split``) whose judged label equals the
    sentence's teacher emotion, per layout (each judged against its own label list)."""
    out = {}
    for layout in sorted({r.get("layout", "dfew") for r in rows}):
        sub = [r for r in rows if r.get("layout", "dfew") == layout]
        pred = judge.judge([r["sentence"] for r in sub], list(VOCABULARIES[layout]))
        out[layout] = {"n": len(sub), "accuracy": round(float(np.mean([p == r["emotion"]
                                                                        for p, r in zip(pred, sub)])), 4)}
    return out


def agreement(a: Sequence[str], b: Sequence[str], labels: Sequence[str]) -> dict:
    """Cohen's kappa, raw agreement and the confusion matrix (rows: judge a, columns: judge b)."""
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    if len(a) != len(b):
        raise ValueError(f"judges labelled {len(a)} and {len(b)} items")
    kappa = cohen_kappa_score(a, b, labels=list(labels)) if len(a) else float("nan")
    return {"n": len(a), "kappa": float(np.nan_to_num(kappa, nan=1.0 if list(a) == list(b) else 0.0)),
            "agreement": float(np.mean([x == y for x, y in zip(a, b)])) if len(a) else float("nan"),
            "labels": list(labels), "confusion": confusion_matrix(a, b, labels=list(labels)).tolist()}
