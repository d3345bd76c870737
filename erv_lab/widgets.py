"""The per-clip inspector of notebook 07: frames, spectrogram, truth, and each model's answer and rationale
with every sentence coloured by the verifier's labels, the reward parts and the judge's reading.

``clip_html`` / ``inspector_html`` render static HTML (GitHub preview, exported notebooks); ``inspector``
wraps the same HTML in an ipywidgets app (pick a clip by id, by class, or where the arms disagree).
Reads the per-clip records that ``erv_lab.evaluate`` wrote; computes nothing. Used by notebook 07 and
``erv_lab.explain``.
"""
from __future__ import annotations

import base64
import html
import io
from typing import Any, Sequence

ARMS = ("sft", "baseline", "erv")
CSS = """<style>
.erv-clip{font-family:sans-serif;font-size:13px;border:1px solid #ccc;padding:8px;margin:6px 0}
.erv-media img{height:64px;margin-right:3px;image-rendering:pixelated;border:1px solid #eee}
.erv-arms{display:flex;gap:8px}.erv-arm{flex:1;border-left:3px solid #888;padding-left:6px}
.erv-sent{padding:1px 2px;border-radius:3px}.erv-match{background:#c8f0c8}.erv-neutral{background:#e6e6e6}
.erv-other{background:#f7c9c9}.erv-stuffed{text-decoration:line-through}.erv-ok{color:#070}.erv-bad{color:#a00}
.erv-ungrounded{border-bottom:2px dotted #c60}.erv-ungrounded::after{content:"⚠";color:#c60;font-size:11px}
</style>"""


def _img(im: Any, height: int = 64) -> str:
    """A PIL image as an inline base64 PNG ``<img>`` tag (no file needed, works in static HTML)."""
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img src="data:image/png;base64,{data}" height="{height}">'


def _sentence_html(s: dict) -> str:
    """One rationale sentence: green when the target is among its verifier labels, grey when its set is
    {neutral}, red otherwise; struck through when the anti-stuffing guard refused it. Tooltip: labels."""
    cls = "erv-match" if s.get("matched") else "erv-neutral" if s.get("neutral_only") else "erv-other"
    if s.get("stuffing"):
        cls += " erv-stuffed"
    if s.get("absent"):  # describes a cue the clip does not show (erv_lab.grounding)
        cls += " erv-ungrounded"
    labels = ", ".join(f"{n} {p:.2f}" for n, p in zip(s.get("names", []), s.get("probs", [])))
    tip = f"verifier: {labels}" + (f"; guard: {s['stuffing']}" if s.get("stuffing") else "")
    if s.get("cues"):
        tip += "; cues: " + ", ".join(f"{c} ({'ABSENT from the clip' if c in (s.get('absent') or []) else 'present'})"
                                      for c in s["cues"])
    return (f'<span class="erv-sent {cls}" title="{html.escape(tip)}">{html.escape(s["text"])}</span>'
            f'<sub>{html.escape(labels)}</sub>')


def arm_html(arm: str, rec: dict, truth: str) -> str:
    """One model's column: answer (right/wrong), judge's reading, reward parts, coloured rationale."""
    ok = rec.get("prediction") == truth
    jok = rec.get("judged") == truth
    r = rec.get("rewards", {})
    parts = ", ".join(f"{k} {v:.2f}" for k, v in r.items() if v is not None)
    if rec.get("sentences"):
        body = " ".join(_sentence_html(s) for s in rec["sentences"])
    else:
        body = html.escape(rec.get("think") or "(no rationale)")
    return (f'<div class="erv-arm" data-arm="{arm}"><b>{arm}</b><br>'
            f'answer: <span class="erv-answer {"erv-ok" if ok else "erv-bad"}">{html.escape(str(rec.get("answer")))}'
            f'</span> &middot; judge: <span class="erv-judged {"erv-ok" if jok else "erv-bad"}">'
            f'{html.escape(str(rec.get("judged")))}</span><br>'
            f'<span class="erv-rewards">rewards: {html.escape(parts)}</span>'
            f'<div class="erv-rationale">{body}</div></div>')


def clip_html(record: dict, example: dict | None = None, protocol: str = "sample", arms: Sequence[str] = ARMS) -> str:
    """Static HTML of one clip: media (when ``example`` has ``frames`` / ``spectrogram``), truth, then one
    column per model for ``protocol`` ("sample" = the headline's first seed, or "greedy")."""
    media = ""
    if example is not None:
        imgs = [_img(f) for f in example.get("frames", [])]
        if example.get("spectrogram") is not None:
            imgs.append(_img(example["spectrogram"]))
        media = f'<div class="erv-media">{"".join(imgs)}</div>'
    cols = "".join(arm_html(a, record["arms"][a][protocol], record["label"]) for a in arms
                   if protocol in record["arms"].get(a, {}))
    return (f'<div class="erv-clip" data-clip-id="{html.escape(str(record["clip_id"]))}">'
            f'<b>clip {html.escape(str(record["clip_id"]))}</b> &middot; truth: '
            f'<span class="erv-truth">{html.escape(record["label"])}</span> &middot; decoding: {protocol}'
            f'{media}<div class="erv-arms">{cols}</div></div>')


LEGEND = ('<p><span class="erv-sent erv-match">target emotion among the verifier\'s labels</span> '
          '<span class="erv-sent erv-neutral">neutral only</span> '
          '<span class="erv-sent erv-other">another emotion</span> '
          '<span class="erv-sent erv-stuffed">refused by the anti-stuffing guard</span> '
          '<span class="erv-sent erv-ungrounded">describes a cue the clip does not show</span></p>')


def inspector_html(records: Sequence[dict], examples: dict[str, dict] | None = None, protocol: str = "sample",
                   clip_ids: Sequence[str] | None = None) -> str:
    """A static page of several clips (all, or ``clip_ids``) with the CSS and a colour legend."""
    examples = examples or {}
    chosen = [r for r in records if clip_ids is None or r["clip_id"] in set(clip_ids)]
    return CSS + LEGEND + "".join(clip_html(r, examples.get(r["clip_id"]), protocol) for r in chosen)


def disagreements(records: Sequence[dict], a: str = "baseline", b: str = "erv", protocol: str = "sample") -> list[str]:
    """Clip ids where arms ``a`` and ``b`` differ in their answer or in the judge's reading."""
    out = []
    for r in records:
        ra, rb = r["arms"].get(a, {}).get(protocol), r["arms"].get(b, {}).get(protocol)
        if ra and rb and (ra.get("prediction") != rb.get("prediction") or ra.get("judged") != rb.get("judged")):
            out.append(r["clip_id"])
    return out


def select_clips(records: Sequence[dict], mode: str = "all", value: str | None = None,
                 protocol: str = "sample") -> list[str]:
    """Clip ids to offer: ``mode`` = all | class (``value`` = label) | disagree (baseline vs ERV)."""
    if mode == "class":
        return [r["clip_id"] for r in records if r["label"] == value]
    if mode == "disagree":
        return disagreements(records, protocol=protocol)
    return [r["clip_id"] for r in records]


def inspector(records: Sequence[dict], examples: dict[str, dict] | None = None):
    """The ipywidgets app: mode (all / class / where the arms disagree), class, clip, decoding protocol."""
    import ipywidgets as W

    examples = examples or {}
    by_id = {r["clip_id"]: r for r in records}
    classes = sorted({r["label"] for r in records})
    protos = sorted({p for r in records for a in r["arms"].values() for p in a}, key=lambda p: p != "sample")
    mode = W.ToggleButtons(options=[("all", "all"), ("by class", "class"), ("arms disagree", "disagree")],
                           description="clips")
    cls = W.Dropdown(options=classes, description="class")
    proto = W.Dropdown(options=protos, description="decoding")
    clip = W.Dropdown(description="clip")
    out = W.HTML()

    def refresh_clips(*_):
        ids = select_clips(records, mode.value, cls.value, proto.value)
        clip.options = ids
        if ids and clip.value not in ids:  # a Dropdown emptied once keeps value None
            clip.value = ids[0]
        cls.layout.display = "" if mode.value == "class" else "none"
        render()

    def render(*_):
        if clip.value in by_id:
            out.value = CSS + LEGEND + clip_html(by_id[clip.value], examples.get(clip.value), proto.value)
        else:
            out.value = CSS + "<p>no clip matches</p>"

    for w in (mode, cls, proto):
        w.observe(refresh_clips, names="value")
    for w in (clip, proto):
        w.observe(render, names="value")
    refresh_clips()
    return W.VBox([W.HBox([mode, cls]), W.HBox([clip, proto]), out])


def render_call(fn, **kwargs) -> str:
    """``fn(**kwargs)``'s printed text and the figures it made (or returned) as one HTML string; the figures are
    closed, so the notebook's inline backend shows them nowhere else."""
    import contextlib

    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        returned = fn(**kwargs)
    figs = [plt.figure(n) for n in plt.get_fignums() if n not in before]
    if isinstance(returned, plt.Figure) and returned not in figs:
        figs.append(returned)
    parts = [f"<pre style='white-space:pre-wrap;font-size:12px'>{html.escape(buf.getvalue())}</pre>"] \
        if buf.getvalue() else []
    for fig in figs:
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        parts.append(f'<img style="max-width:100%" src="data:image/png;base64,'
                     f'{base64.b64encode(png.getvalue()).decode()}"/>')
    return "".join(parts)


def browse(fn, **controls):
    """``ipywidgets.interact`` without its Output widget: each control (a widget, or a list for a dropdown)
    re-renders ``fn(**values)`` (printed text and figures, :func:`render_call`) into an HTML widget.

    An Output widget carries the kernel's own display messages, and a notebook executed headless (``erv-lab
    course``, nbclient) can wait forever for one that went missing; an HTML widget's value is plain state.
    """
    import ipywidgets as W

    boxes = {k: v if isinstance(v, W.Widget) else W.Dropdown(options=list(v), description=k)
             for k, v in controls.items()}
    for k, w in boxes.items():
        if not w.description:
            w.description = k
    out = W.HTML()

    def render(*_):
        out.value = render_call(fn, **{k: w.value for k, w in boxes.items()})

    for w in boxes.values():
        w.observe(render, names="value")
    render()
    return W.VBox([*boxes.values(), out])


def faithfulness_html(row: dict) -> str:
    """One clip of ``stages.faithfulness`` (``faithfulness.clip_row``): the as-is rationale with each sentence
    marked when removing it changes the answer (bold, "needed") and the modalities it describes; then what the
    model wrote with the frames blanked and with the sound silenced, flagged when it still describes the
    removed modality."""
    def sent(s):
        mods = "/".join(s["modalities"]) or "no cue"
        need = s["necessary"]
        style = "font-weight:bold;background:#ffe9a8" if need else ""
        return (f"<li><span style='{style}'>{html.escape(s['text'])}</span> <small>[{mods}"
                f"{'; needed' if need else ''}]</small></li>")

    parts = [f"<div class='erv-clip'><b>{html.escape(row['clip_id'])}</b> · truth <b>{row['label']}</b>"
             + (f" (decided by the {row['decided_by']})" if row.get("decided_by") else "")
             + f" · answer {row.get('answer')} · forced after the whole rationale {row.get('forced_answer')}"
             + (" · <b>an empty rationale changes it</b>" if row.get("empty_changes") else ""),
             "<ol>" + "".join(sent(s) for s in row["sentences"]) + "</ol>"]
    for cond, what in (("no_face", "frames blanked"), ("no_voice", "sound silenced")):
        if cond in row:
            r = row[cond]
            flag = (f" <b style='color:#a00'>⚠ still describes the {'face' if cond == 'no_face' else 'voice'}</b>"
                    if r["describes_removed"] else "")
            parts.append(f"<div><small>{what}: answer {r['answer']}{flag}<br>{html.escape(r['think'] or '')}"
                         "</small></div>")
    return "".join(parts) + "</div>"
