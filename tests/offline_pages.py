"""Checking built pages (slides, the website) in Chromium with the network blocked.

Used by ``tests/test_slides.py`` and ``tests/test_site.py``. A page is opened from the file system
in a browser context that aborts every request that is not a ``file://`` URL (and records it), the
way a laptop in a lecture hall without network would load it. The checks are plain functions that
return what is wrong, so the tests can also show that they catch a broken formula or image.
``chromium()`` also launches the browser of the JupyterLab tests (``tests/test_browser.py``), and
``GLYPHS_JS`` tells real Chinese glyphs from the empty boxes of a machine without a CJK font.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--allow-file-access-from-files",
]
REQUIRED = os.environ.get("COURSE_REQUIRE_BROWSER") == "1"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (COURSE_REQUIRE_BROWSER=1: the browser tests must run here)")
    pytest.skip(reason)


@contextmanager
def chromium(args: list[str] | None = None):
    """Debian's Chromium under Playwright, or a skip (a failure in CI) with the reason. The browser
    tests of JupyterLab (``tests/test_browser.py``) use it too."""
    if not Path(CHROMIUM).exists():
        unavailable(f"no Chromium at {CHROMIUM}: `apt-get install chromium` to run the browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (it is a test extra: make env)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS if args is None else args)
        try:
            yield browser
        finally:
            browser.close()


def offline_page(browser, width: int = 1280, height: int = 800):
    """A page whose every non-file request is aborted; ``page.blocked`` lists them."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.blocked = []

    def route(route):
        if route.request.url.startswith(("file://", "data:", "about:", "blob:")):
            route.continue_()
        else:
            page.blocked.append(route.request.url)
            route.abort()

    context.route("**/*", route)
    return page


WAIT_FOR_MATH_JS = """async () => {
  // before MathJax loads, window.MathJax may be its configuration object, without a promise
  const startup = window.MathJax && window.MathJax.startup;
  if (!startup || !startup.promise) return 'no MathJax on the page';
  await window.MathJax.startup.promise;
  return 'ok';
}"""

# Text that still looks like TeX after MathJax ran: $...$ or \\(...\\) outside code.
RAW_TEX_JS = """(root) => {
  const walker = document.createTreeWalker(root || document.body, NodeFilter.SHOW_TEXT);
  const found = [];
  const tex = /\\$[^$\\s][^$]*\\$|\\\\\\(.+?\\\\\\)|\\\\frac|\\\\mathbf/;
  while (walker.nextNode()) {
    const node = walker.currentNode, parent = node.parentElement;
    const skip = 'pre, code, script, style, .highlight, mjx-container, .notes, aside';
    if (!parent || parent.closest(skip)) continue;
    if (tex.test(node.textContent)) found.push(node.textContent.trim().slice(0, 80));
  }
  return found;
}"""


def math_problems(page, selector: str = "body") -> list[str]:
    """Formulas MathJax could not render (TeX errors) or did not render (raw TeX left as text)."""
    status = page.evaluate(WAIT_FOR_MATH_JS)
    root = page.locator(selector).first
    if status != "ok":
        return [status] + [f"not rendered: {t}" for t in root.evaluate(RAW_TEX_JS)]
    errors = root.locator("mjx-merror").all_inner_texts()
    raw = root.evaluate(RAW_TEX_JS)
    rendered = root.locator("mjx-container").count()
    problems = [f"TeX error: {e[:80]}" for e in errors] + [f"not rendered: {t}" for t in raw]
    if not rendered:
        problems.append("no formula rendered as math at all")
    return problems


IMAGES_JS = """(root) => Promise.all([...(root || document).querySelectorAll('img')].map(img =>
  (img.complete ? Promise.resolve() : new Promise(r => { img.onload = r; img.onerror = r; }))
    .then(() => ({src: img.getAttribute('src').slice(0, 80), ok: img.naturalWidth > 0}))))"""


def image_problems(page, selector: str = "body") -> list[str]:
    """Images that did not load (a missing file, a broken data URL); also when there is none."""
    images = page.locator(selector).first.evaluate(IMAGES_JS)
    if not images:
        return ["no image on the page"]
    return [f"image did not load: {i['src']}" for i in images if not i["ok"]]


# Which characters of a text the page draws with a real glyph: each is drawn on a canvas in the
# given font and compared with an unassigned code point (U+0378), which every font draws as the
# same "missing glyph" box. Without a CJK font, Chinese characters are drawn as that box too.
GLYPHS_JS = """([text, font]) => {
  const canvas = document.createElement('canvas');
  canvas.width = 64; canvas.height = 64;
  const context = canvas.getContext('2d', {willReadFrequently: true});
  const draw = (character) => {
    context.clearRect(0, 0, 64, 64);
    context.font = '40px ' + font;
    context.fillText(character, 4, 48);
    return context.getImageData(0, 0, 64, 64).data.join(',');
  };
  const missing = draw('\\u0378');
  return [...text].map(character => draw(character) !== missing);
}"""
