"""Every figure the course draws, in one place (matplotlib / seaborn; imported lazily).

The method in one picture (notebook 00), clips and class balance (01, 04), the verifier's per-label F1 and the
judges' confusion matrices (02), the explanation reward per sentence and per gaming probe (03), training
curves, live or final (04, 05), and the consistency bars and reward curves of the evaluation (06). Each
function takes what the other modules computed or saved and returns a ``matplotlib`` figure (``live_curves``
returns the ``on_log`` hook that redraws one); none of them computes a result.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from erv_lab.curves import arm_histories, curve

ARM_ORDER = ("sft", "baseline", "erv")


# ---------------------------------------------------------------- the method (notebook 00)
def pipeline_figure():
    """A diagram of the method: data -> cold-start SFT -> GRPO with three rewards -> evaluation."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 3.6)
    ax.axis("off")
    boxes = [
        (0.2, 2.2, "video + audio clip\n(DFEW / MAFW /\nsynthetic)", "#dbe9f6"),
        (2.4, 2.2, "cold-start SFT\n<think> rationale\n<answer> label", "#e6f2e0"),
        (4.6, 2.2, "policy samples G\ncompletions\nper clip", "#e6f2e0"),
        (6.8, 2.2, "rewards: format\n+ accuracy\n+ explanation (ERV)", "#fde9d9"),
        (9.0, 2.2, "GRPO update\nadvantage = (r - mean)\n/ (std + 1e-4), KL", "#e6f2e0"),
        (6.8, 0.2, "ERV: GoEmotions\nclassifier scores each\nrationale sentence", "#fbd5d5"),
        (2.4, 0.2, "evaluation: UAR / WAR\n+ judge: EEA, FCR, EPC", "#ece4f4"),
    ]
    for x, y, text, colour in boxes:
        ax.add_patch(FancyBboxPatch((x, y), 1.9, 1.2, boxstyle="round,pad=0.05", fc=colour, ec="#555"))
        ax.text(x + 0.95, y + 0.6, text, ha="center", va="center", fontsize=8.5)
    arrows = [((2.1, 2.8), (2.4, 2.8)), ((4.3, 2.8), (4.6, 2.8)), ((6.5, 2.8), (6.8, 2.8)),
              ((8.7, 2.8), (9.0, 2.8)), ((7.75, 1.4), (7.75, 2.2)), ((9.95, 2.2), (4.3, 0.8))]
    for start, end in arrows:
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color="#333"))
    ax.set_title("ERV in one picture: the explanation reward makes the rationale agree with the emotion")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- clips (notebooks 01 and 04)
def clip(example: dict, audio="spectrogram", title: str | None = None, rationale: bool = False):
    """One clip as the policy sees it: its sampled frames and, with ``audio="spectrogram"``, the log-mel
    spectrogram as one more image. ``audio`` may be ``cfg.policy``: with ``frames_per_image`` > 1 (colab-t4) the
    frames are shown as the mosaics the policy gets. The title gives clip id, label, prosody and whether its
    rationale drifted; ``rationale=True`` also prints the rationale."""
    import matplotlib.pyplot as plt
    import numpy as np

    from erv_lab.policy import _audio_mode, clip_images

    mode, k = _audio_mode(audio), 1 if isinstance(audio, str) else getattr(audio, "frames_per_image", 1)
    n = len(example["frames"])
    if k > 1:
        ims = clip_images(example, audio)
        names = [f"frames {i * k + 1}-{min((i + 1) * k, n)}" for i in range(-(-n // k))]
    else:
        ims = list(example["frames"]) + ([example["spectrogram"]] if mode == "spectrogram" else [])
        names = [f"frame {i + 1}" for i in range(n)]
    names += ["log-mel"] if mode == "spectrogram" else []
    fig, axes = plt.subplots(1, len(ims), figsize=(1.6 * len(ims) * (1.6 if k > 1 else 1), 2.1 * (1.6 if k > 1 else 1)))
    for ax, im, name in zip(np.atleast_1d(axes), ims, names):
        ax.imshow(im)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(name, fontsize=8)
    if title is None:
        title = " · ".join([str(example.get("clip_id", "")), str(example.get("label", ""))]
                           + ([example["prosody"]] if example.get("prosody") else [])
                           + (["drifted"] if example.get("drifted") else []))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if rationale:
        print(example.get("rationale") or "(no rationale)")
    return fig


def filmstrip(ds, per_class: int = 1):
    """A grid: one row per class (first ``per_class`` clips), the sampled frames then the spectrogram."""
    import matplotlib.pyplot as plt

    labels = ds["label"]
    picks = [i for lab in sorted(set(labels)) for i in [j for j, x in enumerate(labels) if x == lab][:per_class]]
    n = len(ds[0]["frames"]) + 1
    fig, axes = plt.subplots(len(picks), n, figsize=(1.3 * n, 1.3 * len(picks)), squeeze=False)
    for row, i in zip(axes, picks):
        ex = ds[i]
        for ax, im in zip(row, ex["frames"] + [ex["spectrogram"]]):
            ax.imshow(im)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(ex["label"], rotation=0, ha="right", fontsize=8)
    axes[0][-1].set_title("log-mel", fontsize=8)
    fig.tight_layout()
    return fig


def look_alike(clips: dict, n_frames: int = 4, fps: float | None = None):
    """Clips side by side at full resolution, one row each (``{name: {"frames": (T, H, W, 3), "audio": 16 kHz
    mono}}``, e.g. ``erv_lab.media.decode_clip`` of a fear and a surprise clip): ``n_frames`` frames from onset to
    offset, then the log-mel spectrogram of the whole voice (time in seconds, mel band), on one fixed dB scale so
    that loudness compares across rows."""
    import matplotlib.pyplot as plt
    import numpy as np

    from erv_lab.media import SR, log_mel, sample_indices

    fig, axes = plt.subplots(len(clips), n_frames + 1, figsize=(1.9 * n_frames + 4, 2.1 * len(clips)), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * n_frames + [2.2]})
    for row, (name, c) in zip(axes, clips.items()):
        frames = c["frames"]
        for ax, i in zip(row, sample_indices(len(frames), n_frames)):
            ax.imshow(frames[i])
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"frame {i + 1}/{len(frames)}" + (f" ({i / fps:.1f} s)" if fps else ""), fontsize=7)
        row[0].set_ylabel(name, fontsize=9)
        audio = c.get("audio")
        mel = log_mel(audio)
        seconds = len(audio) / SR if audio is not None else 0.0
        im = row[-1].imshow(mel, origin="lower", aspect="auto", vmin=-80, vmax=0, cmap="magma",
                            extent=(0, seconds, 0, mel.shape[0]))
        row[-1].set(xlabel="time (s)", ylabel="mel band (low → high)")
        row[-1].set_title("log-mel of the voice" + (f"\n{c['prosody']}" if c.get("prosody") else ""), fontsize=7)
        fig.colorbar(im, ax=row[-1], label="dB", fraction=0.05)
    fig.tight_layout()
    return fig


def class_balance(splits: dict):
    """Bar chart of clips per class and split (seaborn)."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    import warnings

    df = pd.DataFrame([{"split": s, "label": lab} for s, ds in splits.items() for lab in ds["label"]])
    with warnings.catch_warnings():  # a split with one class (smoke) draws a one-bar axis: nothing to warn about
        warnings.filterwarnings("ignore", message="Attempting to set identical low and high xlims")
        fig, ax = plt.subplots(figsize=(8, 3))  # its own figure, never the current one
        sns.countplot(data=df, x="label", hue="split", ax=ax)
    ax.set(title="clips per class", ylabel="clips", xlabel="class")
    ax.tick_params(axis="x", rotation=45)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # never over a bar
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- verifier and judges (notebook 02)
def per_label_f1(goemotions_report: dict):
    """Per-label F1 of the verifier on GoEmotions test, with the macro-F1 as a dashed line
    (``erv_lab.validation.evaluate_verifier(...)["goemotions"]``)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    g = goemotions_report
    fig, ax = plt.subplots(figsize=(10, 3))
    pd.Series(g["per_label_f1"]).plot.bar(ax=ax, title=f"per-label F1 on GoEmotions test at the dev threshold "
                                                       f"{g['dev_threshold']}")
    ax.axhline(g["test_macro_f1"], ls="--", color="#333", label=f"macro-F1 = {g['test_macro_f1']:.2f}")
    ax.set(ylim=(0, 1), ylabel="F1", xlabel="GoEmotions label")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_matrices(validations: dict[str, dict], labels: Sequence[str]):
    """One confusion matrix per judge (``{name: erv_lab.judges.validate_judge(...)}``), side by side."""
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    import seaborn as sns

    fig, axes = plt.subplots(1, len(validations), figsize=(5.5 * len(validations), 4), squeeze=False)
    for ax, (name, v) in zip(np.ravel(axes), validations.items()):
        sns.heatmap(pd.DataFrame(v["confusion"], index=labels, columns=labels), annot=True, fmt="d", cbar=False, ax=ax)
        ax.set(title=f"{name}: accuracy {v['accuracy']:.2f} on GoEmotions test rows", xlabel="judged",
               ylabel="GoEmotions label")
    fig.tight_layout()
    return fig


def threshold_sweep(report: dict, threshold: float | None = None):
    """The tau sweep of ``erv_lab.validation.evaluate_verifier(...)``, two panels on honest ranges. Left, shares on
    0-1: held-out rationale sentences whose label set holds their teacher label, sentences with no label above
    tau (argmax fallback), and GoEmotions test macro-F1 at tau. Right: mean labels per sentence, from 1 (every
    set holds at least one label) to top-k (the cap). ``threshold`` marks the reward's tau."""
    import matplotlib.pyplot as plt

    sweep = report["rationale_heldout"]["sweep"]
    f1_at = report["goemotions"]["test_macro_f1_at"]
    taus = sorted(sweep, key=float)
    xs = [float(t) for t in taus]
    top_k = int(report.get("top_k", 2))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    left.plot(xs, [sweep[t]["accuracy"] for t in taus], marker="o",
              label="rationale sentences: teacher label in the set")
    left.plot(xs, [sweep[t]["fallback_share"] for t in taus], marker="s",
              label="sentences with no label above τ (argmax used)")
    left.plot(xs, [f1_at.get(t) for t in taus], marker="^", label="GoEmotions test macro-F1 at τ")
    left.set(ylim=(0, 1.05), ylabel="share of sentences / F1", title="shares and F1 (0 to 1)")
    right.plot(xs, [sweep[t]["mean_set_size"] for t in taus], marker="o", color="#555",
               label="mean labels per sentence")
    right.set(ylim=(0.9, top_k + 0.1), yticks=range(1, top_k + 1), ylabel="labels per sentence (mean)",
              title=f"label-set size (1 to top-{top_k})")
    for ax in (left, right):
        ax.set_xticks(xs)
        ax.set_xlabel("τ (a label enters the set when p > τ)")
        if threshold is not None:
            ax.axvline(threshold, ls="--", color="#999", lw=1, label=f"the reward's τ = {threshold}")
    for ax in (left, right):
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22))
    fig.suptitle(f"τ sweep on {report['rationale_heldout'].get('n', '?')} held-out rationale sentences", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the explanation reward (notebook 03)
def sentence_scores(detail: dict, threshold: float, title: str = ""):
    """One completion's explanation reward, sentence by sentence (``ExplanationReward.details(...)[i]``): the
    verifier's probability of the target per sentence against tau (left), and what the reward made of each
    sentence (right strip, readable whatever the bar's height) -- credited (target in the label set), matched
    but refused by the anti-stuffing guard, counted in n_nn without credit, or left out of the denominator
    (label set exactly {neutral})."""
    import matplotlib.pyplot as plt

    colours = {"credited": "#3a7d44", "guarded": "#d98c1f", "counted": "#b23a48", "left out": "#9a9a9a"}
    items = detail["sentences"]
    kinds = ["credited" if it["credited"] else "guarded" if it["matched"] and it["stuffing"] else
             "counted" if it["counted"] else "left out" for it in items]
    words = {"credited": "credited:\nin m and in n_nn", "counted": "counted in n_nn,\nno credit",
             "left out": "left out of n_nn:\nset is {neutral}"}
    fig, (ax, strip) = plt.subplots(1, 2, sharey=True, figsize=(10, 0.5 * max(len(items), 1) + 1.4),
                                    gridspec_kw={"width_ratios": [4, 1.4]})
    ys = list(range(len(items)))[::-1]
    ax.barh(ys, [it["target_prob"] or 0.0 for it in items], color=[colours[k] for k in kinds])
    ax.axvline(threshold, ls="--", color="#333", lw=1)
    ax.set_yticks(ys, [f"{it['text'][:48]}  {{{', '.join(it['names'])}}}" for it in items], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, len(items) - 0.4)
    ax.set_xlabel(f"verifier p({detail['target']})   (dashed line: τ = {threshold})", fontsize=8)
    ax.set_ylabel("sentence  {its label set}", fontsize=8)
    for y, it, kind in zip(ys, items, kinds):
        strip.barh(y, 1, 0.8, color=colours[kind])
        text = f"guarded ({it['stuffing']}):\ncounted, no credit" if kind == "guarded" else words[kind]
        strip.text(0.5, y, text, ha="center", va="center", fontsize=7, color="white")
    strip.set_xlim(0, 1)
    strip.set_xticks([])
    strip.set_xlabel("what the reward did", fontsize=8)
    ax.set_title(title or f"R = m / n_nn = {detail['m']} / {detail['n_nn']} = {detail['reward']:.2f}", fontsize=9)
    fig.tight_layout(w_pad=0.3)
    return fig


def probe_rewards(rows: Sequence[dict], columns: Sequence[str] = ("reward_paper", "reward_guarded")):
    """What the explanation reward pays each gaming probe, with and without the anti-stuffing guard (the rows
    of ``erv_lab.diagnostics.probe_table``); probes that should not be credited are marked with an asterisk."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    h = 0.8 / len(columns)
    words = {"reward_paper": "the paper's reward", "reward_guarded": "with the anti-stuffing guard"}
    for i, col in enumerate(columns):
        vals = [r[col] for r in rows]
        ax.barh(y - i * h, vals, h, label=words.get(col, col))
        for yy, v in zip(y - i * h, vals):  # the value, so that a reward of 0 is visible too
            ax.text(v + 0.01, yy, f"{v:.2f}", va="center", fontsize=6)
    ax.set_yticks(y - h * (len(columns) - 1) / 2, [r["probe"] + ("" if r["should_credit"] else " *") for r in rows],
                  fontsize=8)
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("explanation reward R")
    ax.set_ylabel("gaming probe")
    ax.set_title("gaming probes (* = a careful reader would pay 0)", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(columns))
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- training curves (notebooks 04, 05, 06)
ARM_WORDS = {"baseline": "baseline (format + accuracy)", "erv": "ERV (+ explanation reward)", "sft": "SFT",
             "erv-degenerate": "degenerate lesson run"}
KEY_WORDS = {  # panel title, y-axis label, y range (None = the data's)
    "rewards/format/mean": ("format reward", "mean reward", (0, 1.05)),
    "rewards/accuracy/mean": ("accuracy reward", "mean reward", (0, 1.05)),
    "rewards/explanation/mean": ("explanation reward", "mean reward", (0, 1.05)),
    "reward": ("total reward", "mean weighted sum", None),
    "completions/mean_length": ("completion length", "tokens", (0, None)),
    "loss": ("loss", "loss", None), "mean_token_accuracy": ("next-token accuracy", "share of tokens", (0, 1.05)),
    "entropy": ("entropy of the policy", "nats per token", (0, None)),
    "reward_std": ("reward spread within a group", "std of the total reward", (0, None)),
    "frac_reward_zero_std": ("groups with zero reward spread", "share of groups", (0, 1.05)),
    "kl": ("KL to the SFT model", "per-token KL", (0, None)),
    "clip_ratio/region_mean": ("clipped probability ratios", "share of tokens", (0, None)),
}


def training_curves(histories: dict[str, list[dict]], keys: Sequence[str], fig=None):
    """One panel per log key, one line per run (e.g. ``{"baseline": hist, "erv": hist}``); the histories are
    ``erv_lab.curves.read_log_history`` / ``arm_histories``. Keys a run did not log are left out of its panel.
    Rewards and shares are drawn on their whole 0-1 range, so a small dip does not look like a collapse."""
    import matplotlib.pyplot as plt

    fig = fig or plt.figure(figsize=(4 * len(keys), 3))
    fig.clf()
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        for name, hist in histories.items():
            xs, ys = curve(hist, key)
            if xs:
                ax.plot(xs, ys, marker=".", label=ARM_WORDS.get(name, name))
        title, ylabel, ylim = KEY_WORDS.get(key, (key.replace("rewards/", "").replace("/mean", ""), key, None))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel, fontsize=8)
        if ylim:
            ax.set_ylim(*ylim)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


class LiveCurves:
    """An ``on_log`` hook that redraws ``keys`` in the notebook at a logging step, at most once every
    ``min_seconds`` (a redraw costs about half a second of training). It takes one run's history
    (``ensure_sft`` / ``ensure_grpo``) or ``{name: history}`` for several runs side by side (``run_arms``). The
    figure is updated in place (a display handle); :meth:`final` draws the finished curves into the same place,
    so a cell shows one figure, not the live one and then a second."""

    def __init__(self, keys: Sequence[str], name: str = "run", min_seconds: float = 10.0):
        import matplotlib.pyplot as plt

        self.keys, self.name, self.min_seconds = list(keys), name, min_seconds
        self.fig = plt.figure(figsize=(4 * len(self.keys), 3))
        plt.close(self.fig)  # shown through the handle only, never again by the inline backend
        self.handle, self.last = None, -float("inf")

    def _show(self, runs: dict) -> None:
        from IPython.display import display

        present = [k for k in self.keys if any(k in r for h in runs.values() for r in h)]
        self.fig.set_size_inches(4 * max(len(present), 1), 3)
        self.fig.clear()
        training_curves(runs, present or self.keys[:1], self.fig)
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)

    def __call__(self, history) -> None:
        if time.monotonic() - self.last < self.min_seconds:
            return
        self._show(history if isinstance(history, dict) else {self.name: history})
        self.last = time.monotonic()

    def final(self, runs: dict, keys: Sequence[str] | None = None):
        """The finished curves of ``runs`` (``{name: history}``) in the live figure's place; returns the figure."""
        if keys is not None:
            self.keys = list(keys)
        self._show(runs)
        return self.fig


def live_curves(keys: Sequence[str], name: str = "run", min_seconds: float = 10.0) -> LiveCurves:
    """:class:`LiveCurves` (the ``on_log`` hook of ``ensure_sft`` / ``ensure_grpo`` / ``run_arms``)."""
    return LiveCurves(keys, name, min_seconds)


REWARD_KEYS = ("rewards/format/mean", "rewards/accuracy/mean", "rewards/explanation/mean", "completions/mean_length")


HEALTH_KEYS = ("entropy", "reward_std", "frac_reward_zero_std", "kl", "clip_ratio/region_mean")


def reward_curves(run_dir: str | Path, arms=("baseline", "erv")):
    """Mean reward parts and completion length over GRPO steps, one panel per quantity, both arms."""
    return training_curves(arm_histories(run_dir, arms), REWARD_KEYS)


def health_panel(run_dir: str | Path, arms=("baseline", "erv")):
    """GRPO's health per arm: the policy's entropy, the reward spread within groups, the share of groups with no
    spread (no learning signal), KL to the SFT model and the share of clipped ratios. A quantity never logged, or
    0 throughout (the clipped share with one optimisation pass per batch, where every ratio is 1), is left out."""
    hist = arm_histories(run_dir, arms)
    keys = [k for k in HEALTH_KEYS if any(r.get(k) for h in hist.values() for r in h)]  # left out: never logged or all 0
    return training_curves(hist, keys) if keys else None


# ---------------------------------------------------------------- evaluation (notebook 06)
def grounding_bars(frame):
    """Coherent vs grounded per model, from ``erv_lab.report.grounding_frame`` (``None`` when it is empty: real
    clips carry no cue list). Each group of bars names its denominator: rationales, grounded rationales, the cues
    the rationales describe, their sentences."""
    import matplotlib.pyplot as plt
    import numpy as np

    if frame.empty:
        return None
    cols = [("EEA", "names the true emotion\n(of rationales)"),
            ("EEA_grounded", "names it, among grounded\nrationales"),
            ("grounded_cue_rate", "cues described that\nthe clip has (of cues)"),
            ("absent_cue_sentence_share", "sentences describing an\nabsent cue (of sentences)")]
    cols = [(c, w) for c, w in cols if c in frame]
    fig, ax = plt.subplots(figsize=(9, 3.4))
    width = 0.8 / max(len(frame), 1)
    x = np.arange(len(cols))
    for k, (arm, row) in enumerate(frame.iterrows()):
        ax.bar(x + k * width, [float(row[c]) for c, _ in cols], width, label=ARM_WORDS.get(arm, arm))
    ax.set_xticks(x + width * (len(frame) - 1) / 2, [w for _, w in cols], fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="share", title="Coherent is not grounded, per model (sample protocol)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def grounding_ablation_bars(d: dict | None, protocol: str = "sample"):
    """The grounding-reward ablation (``stages.grounding_ablation``): the ERV arm and ERV + the grounding reward
    side by side on coherence, accuracy and grounding, every bar a share in [0, 1]; ``None`` without the file."""
    import matplotlib.pyplot as plt
    import numpy as np

    if not d or protocol not in d.get("protocols", {}):
        return None
    b = d["protocols"][protocol]
    cols = [("EEA", "EEA (names the\ntrue emotion)"), ("EPC", "EPC (answer and\nrationale agree)"),
            ("UAR", "UAR (answer\naccuracy)"), ("grounded_cue_rate", "described cues\nthe clip shows"),
            ("absent_cue_sentence_share", "sentences describing\nan absent cue")]
    fig, ax = plt.subplots(figsize=(9, 3.4))
    x = np.arange(len(cols))
    for k, (arm, word) in enumerate((("erv", ARM_WORDS.get("erv", "ERV")), ("erv-grounding", "ERV + grounding reward"))):
        vals = np.array([np.nan if v is None else float(v)
                         for v in (b[arm].get(c, b[arm]["grounding"].get(c)) for c, _ in cols)])
        cis = [(b[arm].get("ci") or {}).get(c) for c, _ in cols]  # 95 % bootstrap where the evaluation made one
        ax.bar(x + k * 0.4, vals, 0.4, label=word)
        has = [i for i, ci in enumerate(cis) if ci]
        low, high = [vals[i] - cis[i][0] for i in has], [cis[i][1] - vals[i] for i in has]
        ax.errorbar(x[has] + k * 0.4, vals[has], yerr=[low, high], fmt="none", ecolor="black", capsize=2)
    ax.set_xticks(x + 0.2, [w for _, w in cols], fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="share", title=f"Paying for grounded sentences ({protocol} protocol; "
                                                  "95 % intervals on EEA, EPC, UAR)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def _step(arm: dict, key: str) -> dict:
    """A step-necessity share as ``{"value", "ci"}`` (``ci`` absent in files written before intervals)."""
    st = arm["steps"]
    return {"value": st[key], "ci": (st.get("ci") or {}).get(key)}


def faithfulness_panels(d: dict | None):
    """``stages.faithfulness`` as three panels of shares (0-1, 95 % bootstrap intervals where computed), one bar
    per model: accuracy with a modality removed, what the rationales describe, and step necessity."""
    import matplotlib.pyplot as plt
    import numpy as np

    if not d or not d.get("arms"):
        return None
    panels = [
        ("Accuracy with a modality removed", [
            ("as is", lambda a: a["accuracy"]["as_is"]), ("frames\nblanked", lambda a: a["accuracy"]["no_face"]),
            ("sound\nsilenced", lambda a: a["accuracy"]["no_voice"]),
            ("fear/surprise\nas is", lambda a: a["accuracy_voice_decided"]["as_is"]),
            ("fear/surprise,\nsilenced", lambda a: a["accuracy_voice_decided"]["no_voice"]),
            ("angry/disgust\nas is", lambda a: a["accuracy_face_decided"]["as_is"]),
            ("angry/disgust,\nblanked", lambda a: a["accuracy_face_decided"]["no_face"])]),
        ("What the rationales describe", [
            ("the face,\nno frames", lambda a: a["hallucination"]["face_without_frames"]),
            ("the voice,\nno sound", lambda a: a["hallucination"]["voice_without_sound"]),
            ("the deciding\nmodality", lambda a: a["deciding_modality"]["described"]),
            ("... first", lambda a: a["deciding_modality"]["first"])]),
        ("Does the answer need the rationale?", [
            ("sentences whose\nremoval flips it", lambda a: _step(a, "sentence_necessary")),
            ("rationales with\none such sentence", lambda a: _step(a, "rationale_with_necessary")),
            ("empty rationale\nflips it", lambda a: _step(a, "empty_changes"))])]
    arms = list(d["arms"])
    fig, axes = plt.subplots(1, 3, figsize=(17, 3.8), gridspec_kw={"width_ratios": [7, 4, 3]})
    width = 0.8 / len(arms)
    for ax, (title, cols) in zip(axes, panels):
        x = np.arange(len(cols))
        for k, arm in enumerate(arms):
            stats = [get(d["arms"][arm]) for _, get in cols]
            vals = np.array([np.nan if s.get("value") is None else s["value"] for s in stats])
            err = np.array([[v - s["ci"][0], s["ci"][1] - v] if s.get("ci") else [0, 0]
                            for v, s in zip(vals, stats)]).T
            ax.bar(x + k * width, vals, width, yerr=err, capsize=2, label=ARM_WORDS.get(arm, arm))
            for xi, v in zip(x + k * width, vals):
                if v == 0:  # a bar of height 0 is invisible: say so
                    ax.text(xi, 0.01, "0", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x + width * (len(arms) - 1) / 2, [w for w, _ in cols], fontsize=8)
        ax.set(ylim=(0, 1.05), ylabel="share of clips" if ax is not axes[2] else "share", title=title)
    axes[0].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(arms), frameon=False)
    fig.suptitle(f"Faithful, not just coherent ({d.get('decoding', 'greedy')} decoding, {d.get('n_clips')} clips)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def paired_difference(results: dict, metrics=("EEA", "EPC", "FCR", "UAR")):
    """The claim as a figure: ERV minus baseline per metric with its paired 95 % bootstrap interval, per protocol,
    a line at 0 and the goal's +15 points for EEA and EPC (``results["erv_minus_baseline"]``)."""
    import matplotlib.pyplot as plt

    diff = results.get("erv_minus_baseline") or {}
    protocols = [p for p in ("sample", "greedy") if diff.get(p)]
    if not protocols:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.55 * len(metrics) * len(protocols)))
    y, ticks, labels = 0, [], []
    for m in metrics:
        for p in protocols:
            d = diff[p].get(m)
            if d is None:
                continue
            v, lo, hi = (100 * d[k] for k in ("value", "low", "high"))
            ax.errorbar(v, y, xerr=[[v - lo], [hi - v]], fmt="o", capsize=3, color="C1" if p == "sample" else "C2",
                        label={"sample": "sampling (headline)", "greedy": "greedy"}[p] if m == metrics[0] else None)
            if m in ("EEA", "EPC"):
                ax.plot([15, 15], [y - 0.4, y + 0.4], color="grey", ls="--", lw=1)
            elif m == "UAR":  # the goal for recognition: ERV leaves UAR within ±3 points
                ax.fill_betweenx([y - 0.4, y + 0.4], -3, 3, color="grey", alpha=0.2, lw=0)
            ticks.append(y), labels.append(f"{m} ({p})")
            y += 1
        y += 0.5
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="ERV minus baseline, points (paired 95 % interval)\n"
                  "goal: EEA and EPC ≥ +15 (dashed), UAR within ±3 (grey)",
           title="The claim: what the explanation reward changed")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def audio_ablation_bars(ablation: dict):
    """Greedy test accuracy per true class of the SFT policy with its audio channel and without any audio
    (``audio_ablation.json`` of ``erv_lab.stages.audio_ablation``)."""
    import matplotlib.pyplot as plt
    import numpy as np

    modes = list(ablation)
    classes = sorted({c for m in modes for c in ablation[m].get("per_class", {})})
    if not classes:
        return None
    fig, ax = plt.subplots(figsize=(8, 3))
    width = 0.8 / len(modes)
    x = np.arange(len(classes))
    for k, mode in enumerate(modes):
        words = "without audio" if mode == "none" else f"with audio ({mode})"
        ax.bar(x + k * width, [ablation[mode]["per_class"].get(c, np.nan) for c in classes], width,
               label=f"{words}: {ablation[mode]['accuracy']:.2f} overall")
    ax.set_xticks(x + width * (len(modes) - 1) / 2, classes)
    ax.set(ylim=(0, 1.05), ylabel="greedy test accuracy", title="Does hearing help? SFT policy, per true class")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(modes), frameon=False)
    fig.tight_layout()
    return fig


def consistency_bars(results: dict, protocol: str = "sample", metrics=("EEA", "FCR", "EPC", "UAR")):
    """Bar chart of EEA / FCR / EPC / UAR per arm with 95 % intervals as error bars (``results.json``)."""
    import matplotlib.pyplot as plt
    import numpy as np

    block = results if protocol == "sample" else results[protocol]
    arms = [a for a in ARM_ORDER if a in block]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / max(len(arms), 1)
    x = np.arange(len(metrics))
    for k, arm in enumerate(arms):
        m = block[arm]
        vals = np.array([m.get(c) if m.get(c) is not None else np.nan for c in metrics], dtype=float)
        ci = np.array([m.get("ci", {}).get(c) or [np.nan, np.nan] for c in metrics], dtype=float)
        err = np.abs(np.stack([vals - ci[:, 0], ci[:, 1] - vals]))
        ax.bar(x + k * width, vals, width, yerr=np.nan_to_num(err), capsize=3, label=ARM_WORDS.get(arm, arm))
    ax.set_xticks(x + width * (len(arms) - 1) / 2, metrics)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of clips")
    ax.set_title(f"Consistency per model ({protocol})")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(arms), frameon=False)
    fig.tight_layout()
    return fig
