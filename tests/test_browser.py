"""The per-clip inspector and the labeller in a real browser: Voilà serves notebooks/dashboard.ipynb and
notebooks/label.ipynb over the shipped reference run's records, Playwright drives Debian's Chromium and checks
what a person sees (and, for the labeller, that each click is in the label file and survives a restart).

Pitfalls handled: the system Chromium (``playwright install`` cannot download a browser here), readiness by
polling a static file (every GET of ``/`` starts a kernel), outside requests blocked (the page asks a CDN for
fonts), and the server in its own process group, stopped with SIGTERM so that it shuts its kernels down.
Under CI (``CI`` set, as ``.ci/run`` does) a missing Chromium fails the test instead of skipping it.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from erv_lab.config import load_config
from erv_lab.paths import REFERENCE_DIR

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("ERV_LAB_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("ERV_LAB_TEST_ARTIFACTS", REPO / "test-artifacts"))


def _need(ok: bool, why: str):
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{why} (CI: the browser test must run; .ci/run installs it)")
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(notebook: str, run: Path, env: dict | None = None):
    """Serve ``notebooks/<notebook>`` with Voila over ``run``; yields the base URL, stops the server after."""
    port = _free_port()
    env = {**os.environ, "ERV_LAB_DASHBOARD_RUN": str(run), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           **(env or {})}
    log = open(run / "voila.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "voila", str(REPO / "notebooks" / notebook),
                             "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
                             "--VoilaConfiguration.file_allowlist=['.*']"],
                            cwd=run, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:  # readiness: a static file (a GET of / would start a kernel)
        try:
            urllib.request.urlopen(base + "/voila/static/voila.js", timeout=2)
            break
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("voila did not start:\n" + (run / "voila.log").read_text()[-3000:])
            time.sleep(0.5)
    try:
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group: voila and the kernels it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _need_browser():
    _need(Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM} (apt install chromium)")
    _need(shutil.which("voila", path=str(Path(sys.executable).parent)) is not None or
          __import__("importlib").util.find_spec("voila") is not None, "voila is not installed")


def _browser(p, base):
    """A Chromium page that reaches nothing but ``base``."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
               else route.abort())  # no CDN fonts, nothing outside
    return browser, page


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _need_browser()
    from erv_lab.stages import ensure_dataset

    run = tmp_path_factory.mktemp("run")
    ensure_dataset(load_config("cpu-tiny"), run, verbose=False)  # the test clips' frames and spectrograms
    (run / "eval").mkdir()
    shutil.copyfile(REFERENCE_DIR / "eval" / "records.json", run / "eval" / "records.json")
    for base in _serve("dashboard.ipynb", run):
        yield base, json.loads((run / "eval" / "records.json").read_text())


@pytest.mark.slow
def test_a_person_sees_the_inspector_work(server):
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    base, records = server
    ungrounded = next((r["clip_id"] for r in records for a in r["arms"].values()
                       if any(s.get("absent") for s in a.get("sample", {}).get("sentences", []))), None)
    with sync_playwright() as p:
        browser, page = _browser(p, base)
        page.goto(base + "/", timeout=180_000)
        page.wait_for_selector(".erv-clip", timeout=180_000)

        def dropdown(label):
            return page.locator(".widget-dropdown", has=page.locator(f"label:text-is('{label}')")).locator("select")

        def shown():
            return page.locator(".erv-clip").get_attribute("data-clip-id")

        # by id
        target = records[3]["clip_id"]
        dropdown("clip").select_option(target)
        page.wait_for_function(f"document.querySelector('.erv-clip').dataset.clipId === '{target}'")
        # the frame and spectrogram images have loaded
        sizes = page.eval_on_selector_all(".erv-media img", "els => els.map(e => [e.complete, e.naturalWidth])")
        assert sizes and all(done and w > 0 for done, w in sizes), sizes
        # every sentence is coloured; the judge, the reward parts for every model
        classes = page.eval_on_selector_all(".erv-rationale .erv-sent", "els => els.map(e => e.className)")
        assert classes and all(any(c in k for c in ("erv-match", "erv-neutral", "erv-other")) for k in classes)
        assert page.locator(".erv-judged").count() == 3 and page.locator(".erv-rewards").count() == 3
        assert "explanation" in page.locator(".erv-rewards").first.inner_text()
        # by class
        page.get_by_role("button", name="by class").click()
        dropdown("class").select_option("fear")
        page.wait_for_function("document.querySelector('.erv-truth').textContent === 'fear'")
        # where the arms disagree
        page.get_by_role("button", name="arms disagree").click()
        page.wait_for_timeout(500)
        disagree = {r["clip_id"] for r in records if r["arms"]["baseline"]["sample"]["prediction"] !=
                    r["arms"]["erv"]["sample"]["prediction"] or r["arms"]["baseline"]["sample"]["judged"] !=
                    r["arms"]["erv"]["sample"]["judged"]}
        assert shown() in disagree
        # switch the decoding
        dropdown("decoding").select_option("greedy")
        page.wait_for_function("document.querySelector('.erv-clip').textContent.includes('decoding: greedy')")
        # cue-grounding marks
        assert ungrounded is not None, "the shipped run has no sentence describing an absent cue"
        page.get_by_role("button", name="all").click()
        dropdown("decoding").select_option("sample")
        dropdown("clip").select_option(ungrounded)
        page.wait_for_selector(".erv-rationale .erv-ungrounded")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "inspector.png"), full_page=True)
        browser.close()


@pytest.fixture(scope="module")
def label_server(tmp_path_factory):
    """notebooks/label.ipynb over a run holding only the shipped records (no clips needed to label)."""
    _need_browser()
    run = tmp_path_factory.mktemp("label_run")
    (run / "eval").mkdir()
    shutil.copyfile(REFERENCE_DIR / "eval" / "records.json", run / "eval" / "records.json")
    for base in _serve("label.ipynb", run, {"ERV_LAB_LABELLER": "browser-test"}):
        yield base, run


@pytest.mark.slow
def test_a_learner_labels_rationales_and_resumes_after_a_restart(label_server):
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    from erv_lab import human

    base, run = label_server
    path = human.label_path(run, "browser-test")
    its = human.items(human.load_records(run), run)
    order = human.queue(its)
    norm = " ".join  # compare texts with whitespace collapsed, as the browser lays them out

    def shown(page):
        return norm(page.locator(".erv-label-text").inner_text().split())

    with sync_playwright() as p:
        browser, page = _browser(p, base)
        page.goto(base + "/", timeout=180_000)
        page.wait_for_selector(".erv-label-text", timeout=180_000)
        assert "0 labelled, 20 more until κ" in page.locator(".erv-label-progress").inner_text()
        assert "<answer>" not in page.content() and not any(f"{a}|" in page.content() for a in ("sft", "erv"))
        clicks = ["happy", "can't tell", "sad"]
        for k, label in enumerate(clicks):
            assert shown(page) == norm(order[k]["think"].split())
            page.get_by_role("button", name=label, exact=True).click()
            page.wait_for_function(  # the progress line moves on after the kernel has saved the click
                "n => document.querySelector('.erv-label-progress').textContent.startsWith(n + ' labelled')",
                arg=k + 1, timeout=60_000)
            lines = path.read_text().splitlines()  # the file grows line by line, as clicked
            assert len(lines) == k + 1 and json.loads(lines[-1])["key"] == order[k]["key"]
            assert json.loads(lines[-1])["label"] == {"can't tell": human.CANT_TELL}.get(label, label)
        page.reload(timeout=180_000)  # a new kernel: a restart
        page.wait_for_selector(".erv-label-text", timeout=180_000)
        assert shown(page) == norm(order[len(clicks)]["think"].split())
        assert page.locator(".erv-label-progress").inner_text().startswith(f"{len(clicks)} labelled, 17 more")
        assert len(path.read_text().splitlines()) == len(clicks)  # a reload adds no line
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "labeller.png"), full_page=True)
        browser.close()
