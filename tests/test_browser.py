"""The course in a real browser: JupyterLab driven through Debian's Chromium with Playwright.

The test starts JupyterLab on 127.0.0.1 (a token, a temporary root holding copies of the chapters,
news and update checks off, notebook windowing off so every cell is in the page), opens a chapter,
waits for its kernel to be idle, runs all cells, checks that no cell shows an error, then moves a
widget as a learner would (keyboard and mouse) and checks that the picture and the text change.
Screenshots of every check go to ``test-artifacts/browser/``. It runs where a Chromium is installed
(CI installs Debian's ``chromium``) and is skipped with the reason printed elsewhere. Playwright
drives that Chromium (``executable_path``); it never downloads a browser of its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from offline_pages import GLYPHS_JS, chromium

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
CHAPTER_1 = "01_linear_regression.ipynb"
CHAPTER_6 = "06_attention.ipynb"
CHINESE_CHAPTER_1 = "zh/01_linear_regression.ipynb"  # dist/zh/, the Chinese edition
TIMEOUT_S = 600

pytestmark = pytest.mark.loopback

# Settings a learner would not want in a test: news and update pop-ups; windowing, which leaves
# cells outside the viewport unrendered.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright (skipped, with the reason, where either is missing)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium(CHROMIUM_ARGS) as launched:
        yield launched


@pytest.fixture
def lab(browser, tmp_path_factory):
    """A JupyterLab server on a free port over a temporary copy of the chapters; stopped afterwards.

    One server per test: a server kept between tests restores the previous test's workspace (its
    notebook tab and kernel), and the menu commands may then act on that notebook instead."""
    base = tmp_path_factory.mktemp("lab")
    root, settings = base / "root", base / "settings"
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    shutil.copytree(ROOT / "dist" / "zh", root / "notebooks" / "zh")
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port, token = _free_port(), "course-browser-test"
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"), "COURSE_FAST": "1"}
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
               "--ServerApp.port_retries=0"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = open(base / "lab.log", "w")  # noqa: SIM115 (closed at teardown)
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _get(f"{url}/api/status", token)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (base / "lab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield {"url": url, "token": token}
    finally:
        try:  # a clean shutdown also stops the kernels the server started
            request = urllib.request.Request(f"{url}/api/shutdown", method="POST",
                                             headers={"Authorization": f"token {token}"})
            urllib.request.urlopen(request, timeout=10).close()
            server.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _open_and_run_all(browser, lab, notebook: str):
    """Open a chapter, wait for an idle kernel, run all cells and wait until every cell has run."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_S * 1000)
    page.goto(f"{lab['url']}/lab/tree/notebooks/{notebook}?token={lab['token']}")
    # Run All before the kernel is connected would be lost: wait for the status bar to say Idle.
    page.wait_for_function("() => document.querySelector('#jp-main-statusbar')?.innerText.includes('| Idle')")
    # The committed notebook already shows [1]: ... [N]: prompts; clear them first, so that finished
    # prompts can only come from this run.
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt")
    page.locator(".lm-MenuBar-itemLabel", has_text="Edit").first.click()
    page.locator(".lm-Menu-item", has_text="Clear Outputs of All Cells").first.click()
    page.wait_for_function("""() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
        .every(p => !/\\d/.test(p.innerText))""")
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
    errors = page.locator(".jp-OutputArea-output", has_text="Traceback")
    deadline, idle_since = time.monotonic() + TIMEOUT_S, None
    while True:
        texts = [text.strip() for text in prompts.all_inner_texts()]
        finished = texts and all(re.fullmatch(r"\[\d+\]:", text) for text in texts)
        idle = "| Idle" in page.locator("#jp-main-statusbar").inner_text()
        if finished and idle:
            break
        # Run All stops at a failing cell: idle with cells left unrun means an error (or a lost click).
        idle_since = (idle_since or time.monotonic()) if idle else None
        if idle_since and time.monotonic() - idle_since > 15:
            page.screenshot(path=ARTIFACTS / f"{Path(notebook).stem}-stopped.png")
            shown = errors.first.inner_text()[:3000] if errors.count() else "no error output is shown"
            unrun = sum(not re.fullmatch(r"\[\d+\]:", text) for text in texts)
            pytest.fail(f"{notebook}: the kernel is idle but {unrun} cells did not run:\n{shown}")
        assert time.monotonic() < deadline, f"{notebook}: cells still running after {TIMEOUT_S} s: {texts}"
        time.sleep(0.5)
    page.screenshot(path=ARTIFACTS / f"{Path(notebook).stem}-run-all.png")
    assert errors.count() == 0, f"{notebook}: a cell shows an error:\n" + errors.first.inner_text()[:2000]
    return page


BUSY = ("training...", "computing...", "updating...")  # what the widgets show while they work


def _wait_until_settled(status, previous: str) -> str:
    """Wait until the widget's status line has changed from ``previous`` and is not 'working'."""
    deadline = time.monotonic() + 120
    while True:
        text = status.inner_text()
        if text != previous and not any(busy in text for busy in BUSY):
            return text
        assert time.monotonic() < deadline, f"the widget did not update (still {text!r})"
        time.sleep(0.25)


def test_chapter_1_runs_and_its_learning_rate_widget_responds(browser, lab):
    page = _open_and_run_all(browser, lab, CHAPTER_1)
    slider = page.locator(".widget-slider", has_text="learning rate")
    explorer = page.locator(".widget-vbox", has=slider).last
    explorer.scroll_into_view_if_needed()
    status, image = explorer.locator(".widget-html-content").last, explorer.locator("img").first
    readout = slider.locator(".widget-readout")
    assert "lr=0.03" in status.inner_text() and image.get_attribute("src")
    explorer.screenshot(path=ARTIFACTS / "01-explorer-start.png")

    # keyboard: focus the slider's handle and step the learning rate up
    text, src, value = status.inner_text(), image.get_attribute("src"), readout.inner_text()
    slider.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowRight")
    text = _wait_until_settled(status, text)
    assert readout.inner_text() != value and f"lr={float(readout.inner_text()):.3g}" in text
    assert image.get_attribute("src") != src, "the plot did not change"
    explorer.screenshot(path=ARTIFACTS / "01-explorer-keyboard.png")

    # mouse: drag the handle to the right end, a learning rate that diverges
    src = image.get_attribute("src")
    handle = slider.locator(".noUi-handle").bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(handle["x"] + 400, handle["y"] + handle["height"] / 2, steps=8)
    page.mouse.up()
    text = _wait_until_settled(status, text)
    while "lr=10" not in text:  # a drag may pass through intermediate values
        text = _wait_until_settled(status, text)
    assert "diverged" in text and "too large" in text, text
    assert image.get_attribute("src") != src, "the plot did not change"
    explorer.screenshot(path=ARTIFACTS / "01-explorer-drag-diverged.png")
    page.close()


def _pairs(text: str) -> tuple[int, int]:
    """(attended pairs, tokens) from the editor's status line, e.g. '78 of 12² = 144 ...'."""
    match = re.search(r"(\d+) of (\d+)² = \d+", text)
    assert match, f"no pair count in the editor's status: {text!r}"
    return int(match.group(1)), int(match.group(2))


def test_chapter_6_runs_and_its_attention_mask_editor_responds(browser, lab):
    page = _open_and_run_all(browser, lab, CHAPTER_6)
    editor = page.locator(".widget-vbox", has=page.locator(".widget-dropdown", has_text="preset")).last
    editor.scroll_into_view_if_needed()
    status, image = editor.locator(".widget-html-content").last, editor.locator("img").first
    select = editor.locator(".widget-dropdown", has_text="preset").locator("select")

    # the valid-length slider to its maximum with the keyboard, so every key is a real token
    valid = editor.locator(".widget-slider", has_text="valid length")
    handle = valid.locator(".noUi-handle")
    handle.focus()
    num_tokens = int(float(handle.get_attribute("aria-valuemax")))
    for _ in range(num_tokens - int(float(handle.get_attribute("aria-valuenow")))):
        page.keyboard.press("ArrowRight")
    deadline = time.monotonic() + 120
    readout = valid.locator(".widget-readout")
    while readout.inner_text() != str(num_tokens) or "updating" in status.inner_text():
        assert time.monotonic() < deadline, "the valid-length slider did not reach its maximum"
        time.sleep(0.25)
    time.sleep(1)  # the last key press's update
    text = status.inner_text()
    # two presets in turn (so that each choice is a change): the picture and the count follow
    for label, expected in (("local window k", None), ("causal", num_tokens * (num_tokens + 1) // 2)):
        src = image.get_attribute("src")
        select.select_option(label=label)
        text = _wait_until_settled(status, text)
        assert image.get_attribute("src") != src, f"the picture did not change for preset {label!r}"
        pairs, n = _pairs(text)
        assert n == num_tokens and (expected is None or pairs == expected), (label, text)
    assert "every key masked" not in text
    editor.screenshot(path=ARTIFACTS / "06-mask-editor-causal.png")

    # a click on the grid: under the causal mask query 0 sees only key 0; blocking it empties the row
    src = image.get_attribute("src")
    editor.locator('button[title="query 0, key 0"]').click()
    text = _wait_until_settled(status, text)
    assert "every key masked" in text and _pairs(text)[0] == expected - 1, text
    assert image.get_attribute("src") != src, "the picture did not change after the click"
    editor.screenshot(path=ARTIFACTS / "06-mask-editor-empty-row.png")
    page.close()


def test_chinese_edition_renders_its_chinese_text(browser, lab):
    """dist/zh's chapter 1 in JupyterLab: its markdown is Chinese and drawn with real glyphs (CI
    installs fonts-noto-cjk; without a CJK font the characters are empty boxes and this fails)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    page.goto(f"{lab['url']}/lab/tree/notebooks/{CHINESE_CHAPTER_1}?token={lab['token']}")
    title = page.locator(".jp-MarkdownCell h1").first
    title.wait_for()
    assert "线性回归" in title.inner_text(), title.inner_text()
    paragraph = page.locator(".jp-MarkdownCell .jp-RenderedMarkdown p").first
    text = paragraph.inner_text()
    chinese = "".join(re.findall(r"[\u4e00-\u9fff]", text))[:40]
    assert len(chinese) >= 10, f"the first paragraph is not Chinese: {text[:200]!r}"
    font = paragraph.evaluate("element => getComputedStyle(element).fontFamily")
    drawn = page.evaluate(GLYPHS_JS, [chinese, font])
    missing = [c for c, ok in zip(chinese, drawn, strict=True) if not ok]
    page.locator(".jp-MarkdownCell").first.screenshot(path=ARTIFACTS / "zh-01-rendered.png")
    assert not missing, (f"{len(missing)} of {len(chinese)} Chinese characters are drawn as empty boxes "
                         f"({''.join(missing)}): install a CJK font, e.g. Debian's fonts-noto-cjk")
    # the check itself can fail: unassigned code points are drawn as the missing-glyph box
    assert page.evaluate(GLYPHS_JS, ["\u0379\u0380", font]) == [False, False]
    math = page.locator(".jp-MarkdownCell mjx-container, .jp-MarkdownCell .MathJax").first
    assert math.count(), "the Chinese chapter's formulas are not rendered as math"
    page.close()


def test_live_slides_with_rise_follow_the_slide_metadata(browser, lab):
    """RISE (jupyterlab-rise) shows chapter 1 as live slides inside JupyterLab, with the slides the
    cells' metadata says, formulas rendered, and the keyboard moving through them."""
    sys.path.insert(0, str(ROOT / "tools"))
    import slides

    notebook = json.loads((ROOT / "notebooks" / CHAPTER_1).read_text(encoding="utf-8"))
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(120_000)
    page.goto(f"{lab['url']}/rise/notebooks/{CHAPTER_1}?token={lab['token']}")
    page.wait_for_selector(".reveal .slides section")
    page.wait_for_function("() => document.querySelectorAll('.reveal mjx-container').length > 0")
    leaves = page.evaluate("""() => [...document.querySelectorAll('.reveal .slides section')]
        .filter(section => !section.querySelector('section')).length""")
    assert leaves == slides.expected_slide_count(notebook)
    page.screenshot(path=ARTIFACTS / "rise-01-title.png")
    current = page.locator(".reveal .slides section.present").last
    first = current.inner_text()
    for _ in range(3):
        page.keyboard.press("Space")
    deadline = time.monotonic() + 30
    while current.inner_text() == first:
        assert time.monotonic() < deadline, "the keyboard did not move the slides"
        time.sleep(0.25)
    page.screenshot(path=ARTIFACTS / "rise-01-after-three-keys.png")
    page.close()
