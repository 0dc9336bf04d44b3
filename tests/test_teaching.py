"""The teaching guide (``docs/teaching.md`` and ``docs/teaching/NN_topic.md``): one guide per
chapter with the agreed parts, whose slide counts and cell timings are those of the chapter.

A guide quotes the number of slides and speaker notes (``tools/slides.py --check``) and, in its
"Run live" table, the seconds each cell took in the committed full-mode run
(``tools/cell_times.py``); both are checked here, so a guide cannot drift from its chapter.
"""

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import cell_times  # noqa: E402
import slides  # noqa: E402

CHAPTERS = slides.chapter_paths()
HEADINGS = ["## At a glance", "## Lecture plan", "## Run live", "## Widget demo",
            "## Questions and misconceptions", "## Exercises to assign"]


def _guide(path: Path) -> str:
    guide = ROOT / "docs" / "teaching" / f"{path.stem}.md"
    assert guide.is_file(), f"no teaching guide for {path.stem}: write docs/teaching/{path.stem}.md"
    return guide.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_guide_has_the_agreed_parts_and_the_chapters_slide_counts(path):
    text = _guide(path)
    positions = [text.find(h) for h in HEADINGS]
    assert all(p >= 0 for p in positions), [h for h, p in zip(HEADINGS, positions, strict=True) if p < 0]
    assert positions == sorted(positions), "the guide's parts are out of order"
    notebook = json.loads(path.read_text(encoding="utf-8"))
    glance = text.split("## At a glance", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"(\d+) slides(?:,| with| and) (\d+) speaker notes", glance)
    assert found, "At a glance must say 'N slides with M speaker notes'"
    assert (int(found.group(1)), int(found.group(2))) == (slides.expected_slide_count(notebook),
                                                          slides.notes_count(notebook))
    assert re.search(r"\*\*Lecture length:\*\* \d+ minutes", glance)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_run_live_seconds_are_those_of_the_committed_run(path):
    text = _guide(path).split("## Run live", 1)[1].split("\n## ", 1)[0]
    times = {cell_id: seconds for _, cell_id, seconds in
             cell_times.cell_seconds(json.loads(path.read_text(encoding="utf-8")))}
    checked = 0
    for row in re.findall(r"^\|.*\|\s*$", text, re.MULTILINE):
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        ids = [i for i in re.findall(r"`([0-9a-f]{8}|cell-\d{3})`", row) if i in times]
        if len(ids) != 1 or not re.fullmatch(r"\d+(\.\d+)?", cells[-1]):
            continue
        shown = cells[-1]
        decimals = len(shown.split(".")[1]) if "." in shown else 0
        assert round(times[ids[0]], decimals) == pytest.approx(float(shown), abs=10 ** -decimals), (
            f"cell {ids[0]}: the guide says {shown} s, the committed run took {times[ids[0]]:.2f} s")
        checked += 1
    assert checked >= 3, "the Run live table should give at least three cells with their seconds"


def test_course_guide_links_every_chapter_guide_and_has_the_plans():
    text = (ROOT / "docs" / "teaching.md").read_text(encoding="utf-8")
    for path in CHAPTERS:
        assert f"(teaching/{path.stem}.md)" in text, f"docs/teaching.md does not link {path.stem}'s guide"
    assert "## A semester" in text and "## A two-day workshop" in text
    assert "docs/teaching.md" in (ROOT / "README.md").read_text(encoding="utf-8")
