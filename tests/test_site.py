"""The course website (``make site``, ``tools/website.py``) built from the committed notebooks, and
read in Chromium with the network blocked.

The site is built into a temporary folder (nothing executed); every internal link and anchor
resolves and no page loads anything from the network. In the browser: the home page, a chapter
reached through the navigation, the search for "masked softmax" and its result, a formula rendered
as math and images loaded, the Chinese edition's page with real Chinese glyphs, and the download
and slide links (screenshots in ``test-artifacts/site/``). The last tests show that the checks
fail on a broken link or anchor, a broken formula and a broken image.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import website  # noqa: E402
from offline_pages import (  # noqa: E402
    ARTIFACTS,
    GLYPHS_JS,
    chromium,
    image_problems,
    math_problems,
    offline_page,
)

pytestmark = pytest.mark.loopback
SHOTS = ARTIFACTS / "site"


def test_site_has_every_chapter_no_broken_link_and_nothing_from_the_network(built_site):
    for path in website.chapter_paths():
        assert (built_site / "chapters" / f"{path.stem}.html").is_file()
        assert (built_site / "zh" / "chapters" / f"{path.stem}.html").is_file()
        assert (built_site / "slides" / f"{path.stem}.slides.html").is_file()
        for edition in ("notebooks", "colab", "student", "zh", "colab-zh", "student-zh"):
            assert (built_site / "downloads" / edition / path.name).is_file()
    assert (built_site / "teaching" / "index.html").is_file()
    assert website.broken_links(built_site) == []
    assert website.external_resources(built_site) == []


def test_home_chapter_search_math_and_images_offline(built_site):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = offline_page(browser)
        page.goto((built_site / "index.html").as_uri())
        assert "Deep learning from scratch" in page.title()
        page.screenshot(path=SHOTS / "home.png")
        # navigation: the sidebar's link to chapter 6
        page.locator(".sidebar-tree a", has_text="Attention").first.click()
        page.wait_for_load_state()
        assert page.url.endswith("chapters/06_attention.html")
        # search
        page.locator("input[name=q]").first.fill("masked softmax")
        page.keyboard.press("Enter")
        results = page.locator("#search-results li a")
        results.first.wait_for(timeout=30_000)
        hit = page.locator("#search-results li a", has_text="Attention").first
        page.screenshot(path=SHOTS / "search-masked-softmax.png")
        hit.click()
        page.wait_for_load_state()
        assert "06_attention" in page.url, page.url
        assert "masked softmax" in page.locator("article").inner_text().lower()
        assert not math_problems(page, "article"), math_problems(page, "article")[:5]
        assert not image_problems(page, "article"), image_problems(page, "article")[:5]
        page.screenshot(path=SHOTS / "06-attention.png", full_page=False)
        # the slides link of the chapter leads to its reveal.js deck, offline too
        page.locator("a.course-download", has_text="lecture slides").click()
        page.wait_for_function("() => window.Reveal && Reveal.isReady()")
        assert "slides/06_attention.slides.html" in page.url
        assert page.blocked == [], f"requests to the network: {page.blocked[:5]}"


def test_chinese_pages_render_chinese_text_and_switch_language(built_site):
    with chromium() as browser:
        page = offline_page(browser)
        page.goto((built_site / "zh" / "chapters" / "01_linear_regression.html").as_uri())
        title = page.locator("article h1").first.inner_text()
        assert "线性回归" in title
        paragraph = page.locator("article p", has_text="线性回归").first
        text = "".join(c for c in paragraph.inner_text() if "\u4e00" <= c <= "\u9fff")[:30]
        font = paragraph.evaluate("element => getComputedStyle(element).fontFamily")
        drawn = page.evaluate(GLYPHS_JS, [text, font])
        assert text and all(drawn), f"Chinese drawn as empty boxes: {text}"
        assert not math_problems(page, "article")
        page.screenshot(path=SHOTS / "zh-01.png")
        page.locator("a.course-download", has_text="English").click()
        page.wait_for_load_state()
        assert page.url.endswith("/chapters/01_linear_regression.html") and "/zh/" not in page.url


def test_link_check_finds_a_broken_link_and_a_broken_anchor(tmp_path):
    (tmp_path / "a.html").write_text('<a href="b.html#there">ok</a> <a href="b.html#nowhere">x</a>'
                                     '<a href="c.html">y</a><img src="img/missing.png">')
    (tmp_path / "b.html").write_text('<h2 id="there">There</h2>')
    problems = website.broken_links(tmp_path)
    assert problems == ["a.html: b.html#nowhere (no such anchor)", "a.html: c.html (no such file)",
                        "a.html: img/missing.png (no such file)"]
    (tmp_path / "c.html").write_text('<script src="https://cdn.example.org/x.js"></script>')
    assert website.external_resources(tmp_path) == ['c.html: <script src="https://']


def test_browser_checks_catch_a_broken_formula_and_a_broken_image(built_site, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(built_site, site, ignore=shutil.ignore_patterns("downloads", "slides"))
    page_path = site / "chapters" / "01_linear_regression.html"
    html = page_path.read_text(encoding="utf-8")
    injected = ('<article><p><span class="math notranslate nohighlight">\\(\\badmacro{x}\\)</span> '
                '<img src="missing.png" alt="broken"></p')
    broken = html.replace("<article", injected, 1)
    page_path.write_text(broken, encoding="utf-8")
    with chromium() as browser:
        page = offline_page(browser)
        page.goto(page_path.as_uri())
        assert any("TeX error" in p for p in math_problems(page, "article"))
        assert any("missing.png" in p for p in image_problems(page, "article"))
