"""Lecture slides (``make slides``, ``tools/slides.py``): metadata, offline build, and the slides in
Chromium with the network blocked.

Every chapter has a slide type on every cell and speaker notes; the slides are built from the
committed notebooks into a temporary folder and load nothing from the network; two chapters are
stepped through with the keyboard, checking the slide count against the metadata, that formulas
are rendered as math and figures load (screenshots in ``test-artifacts/slides/``). The last tests
show that the checks fail on a broken formula, a broken image and a missing math renderer.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import slides  # noqa: E402
from offline_pages import ARTIFACTS, chromium, image_problems, math_problems, offline_page  # noqa: E402

pytestmark = pytest.mark.loopback
CHAPTERS = slides.chapter_paths()
STEPPED = ["01_linear_regression", "06_attention"]
SHOTS = ARTIFACTS / "slides"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_cell_has_a_slide_type_and_the_chapter_has_speaker_notes(path):
    problems = slides.metadata_problems(_load(path))
    assert not problems, (
        f"{path.stem}: fix the slide metadata (see CONTRIBUTING, Lecture slides):\n"
        + "\n".join(problems[:20])
    )
    assert slides.expected_slide_count(_load(path)) >= 10, "a lecture needs more than a handful of slides"


def test_metadata_check_names_what_is_wrong():
    notebook = {
        "cells": [
            {"cell_type": "markdown", "id": "a", "metadata": {}, "source": ["# Title"]},
            {"cell_type": "code", "id": "b", "metadata": {"slideshow": {"slide_type": "-"}}, "source": ["x"]},
            {
                "cell_type": "code",
                "id": "c",
                "metadata": {"tags": ["solution"], "slideshow": {"slide_type": "-"}},
                "source": ["y"],
            },
            {
                "cell_type": "markdown",
                "id": "d",
                "metadata": {"slideshow": {"slide_type": "notes"}},
                "source": ["say"],
            },
        ]
    }
    problems = "\n".join(slides.metadata_problems(notebook))
    for expected in (
        "cell 0 (a): slide_type None",
        "a solution must be 'skip'",
        "the set-up cell",
        "tag 'teacher-notes'",
        "start with '**Speaker notes.**'",
        "title cell must be a 'slide'",
    ):
        assert expected in problems


def test_slides_are_built_for_every_chapter_and_load_nothing_from_the_network(built_slides):
    for path in CHAPTERS:
        html = (built_slides / f"{path.stem}.slides.html").read_text(encoding="utf-8")
        loaded = re.findall(r"""<(?:script|link|img)\b[^>]*?(?:src|href)=["']([^"']+)""", html)
        remote = [url for url in loaded if re.match(r"(https?:)?//", url)]
        assert not remote, f"{path.stem} loads from the network: {remote}"
        assert html.count('<aside class="notes">') == slides.notes_count(_load(path)), path.stem
    assert (built_slides / "assets" / "reveal.js" / "dist" / "reveal.js").is_file()
    assert (built_slides / "assets" / "mathjax" / "es5" / "tex-chtml-full.js").is_file()


def _open(browser, html: Path):
    page = offline_page(browser)
    page.goto(html.as_uri())
    page.wait_for_function("() => window.Reveal && Reveal.isReady()")
    return page


@pytest.mark.parametrize("chapter", STEPPED)
def test_slides_step_through_with_the_keyboard_offline(built_slides, chapter):
    notebook = _load(ROOT / "notebooks" / f"{chapter}.ipynb")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = _open(browser, built_slides / f"{chapter}.slides.html")
        expected = slides.expected_slide_count(notebook)
        assert page.evaluate("Reveal.getTotalSlides()") == expected
        assert not math_problems(page), math_problems(page)[:5]
        assert not image_problems(page), image_problems(page)[:5]
        page.screenshot(path=SHOTS / f"{chapter}-title.png")
        seen, presses = {page.evaluate("Reveal.getState().indexh + '/' + Reveal.getState().indexv")}, 0
        shot_math = False
        while not page.evaluate("Reveal.isLastSlide() && !Reveal.availableFragments().next"):
            page.keyboard.press("Space")  # next fragment, then next slide, down the vertical stacks too
            presses += 1
            state = page.evaluate("Reveal.getState().indexh + '/' + Reveal.getState().indexv")
            seen.add(state)
            if not shot_math and page.locator(".present mjx-container").count():
                page.screenshot(path=SHOTS / f"{chapter}-math.png")
                shot_math = True
            assert presses < 2000, "the keyboard did not reach the last slide"
        assert len(seen) == expected, (
            f"visited {len(seen)} slides with the keyboard, the metadata says {expected}"
        )
        page.screenshot(path=SHOTS / f"{chapter}-last.png")
        assert page.blocked == [], f"requests to the network: {page.blocked[:5]}"


def test_checks_catch_a_broken_formula_a_broken_image_and_missing_math(built_slides, tmp_path):
    notebook = {
        "cells": [
            {
                "cell_type": "markdown",
                "id": "t",
                "metadata": {"slideshow": {"slide_type": "slide"}},
                "source": [
                    "# Broken\n\nA good formula $x^2$ and a broken one $\\badmacro{x}$.\n\n"
                    "![a figure](missing.png)\n"
                ],
            },
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "99_broken.ipynb"
    path.write_text(json.dumps(notebook))
    out = tmp_path / "out"
    shutil.copytree(built_slides / "assets", out / "assets")
    html = slides.build_slides(path, out)
    with chromium() as browser:
        page = _open(browser, html)
        assert any("TeX error" in p for p in math_problems(page))
        assert any("missing.png" in p for p in image_problems(page))
        shutil.rmtree(out / "assets" / "mathjax")  # no math renderer: the TeX stays text
        page = _open(browser, html)
        problems = math_problems(page)
        assert problems[0] == "no MathJax on the page" and any("not rendered: " in p for p in problems)
