"""Lecture slides of every chapter, built from the committed notebooks: ``make slides``.

Each cell's ``metadata.slideshow.slide_type`` (chosen by hand, see CONTRIBUTING "Lecture slides")
says where it goes: ``slide`` starts a new slide, ``subslide`` a slide below it, ``fragment``
appears on the next key press, ``-`` continues the current slide, ``skip`` is left out and
``notes`` is a speaker note (shown in reveal.js's speaker view, key ``s``). A code cell tagged
``slides-output-only`` shows its output without its code. Widgets show the picture they drew in
the committed run (:mod:`static_outputs`).

``python tools/slides.py`` writes ``dist/slides/NN_topic.slides.html`` for every chapter (nothing is
executed) and copies reveal.js and MathJax from ``vendor/`` into ``dist/slides/assets/``, so the
folder works from a USB stick in a lecture hall with no network. ``--check`` only reports cells
whose slide metadata breaks the conventions; ``--out DIR`` writes elsewhere.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import static_outputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "dist" / "slides"
VENDOR = ROOT / "vendor"
TEMPLATE = Path(__file__).resolve().parent / "slides_template" / "course_slides.html.j2"
SLIDE_TYPES = ("slide", "subslide", "fragment", "-", "skip", "notes")
NOTES_TAG = "teacher-notes"
NOTES_START = "**Speaker notes.**"
OUTPUT_ONLY_TAG = "slides-output-only"


def chapter_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]*.ipynb"))


def slide_type(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type")


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def metadata_problems(notebook: dict) -> list[str]:
    """What breaks the slide conventions: a cell without a slide type, a first cell that is not a
    slide, solutions or set-up shown, speaker notes missing, untagged or not marked as notes."""
    problems = []
    cells = notebook["cells"]
    for index, cell in enumerate(cells):
        kind, where = slide_type(cell), f"cell {index} ({cell.get('id', '?')})"
        if kind not in SLIDE_TYPES:
            problems.append(f"{where}: slide_type {kind!r} is not one of {', '.join(SLIDE_TYPES)}")
        if "solution" in _tags(cell) and kind not in ("skip", "notes"):
            problems.append(f"{where}: a solution must be 'skip' on the slides")
        if (NOTES_TAG in _tags(cell)) != (kind == "notes"):
            problems.append(f"{where}: speaker notes have slide_type 'notes' and the tag {NOTES_TAG!r}, both")
        if kind == "notes" and not "".join(cell["source"]).startswith(NOTES_START):
            problems.append(f"{where}: speaker notes start with {NOTES_START!r}")
        if kind == "notes" and cell["cell_type"] != "markdown":
            problems.append(f"{where}: speaker notes are markdown cells")
        if OUTPUT_ONLY_TAG in _tags(cell) and cell["cell_type"] != "code":
            problems.append(f"{where}: only a code cell can be {OUTPUT_ONLY_TAG!r}")
    if cells and slide_type(cells[0]) != "slide":
        problems.append("cell 0: the title cell must be a 'slide'")
    setup = next((c for c in cells if c["cell_type"] == "code"), None)
    if setup is not None and slide_type(setup) != "skip":
        problems.append("the set-up cell (the first code cell) must be 'skip'")
    if not any(slide_type(c) == "notes" for c in cells):
        problems.append("no speaker notes: add markdown cells with slide_type 'notes'")
    return problems


def expected_slide_count(notebook: dict) -> int:
    """Slides reveal.js will count: the first visible cell plus every later slide or subslide."""
    kinds = [slide_type(c) or "-" for c in notebook["cells"]]
    first = next(i for i, kind in enumerate(kinds) if kind not in ("skip", "notes"))
    return 1 + sum(kind in ("slide", "subslide") for kind in kinds[first + 1 :])


def notes_count(notebook: dict) -> int:
    return sum(slide_type(c) == "notes" for c in notebook["cells"])


def outline(notebook: dict) -> list[str]:
    """One line per shown cell, numbered by slide, to read a lecture's flow without a browser."""
    lines, number = [], 0
    for index, cell in enumerate(notebook["cells"]):
        kind = slide_type(cell) or "-"
        if kind == "skip":
            continue
        if kind in ("slide", "subslide") or number == 0 and kind != "notes":
            number += 1
        source = "".join(cell["source"]).strip()
        first = next((line for line in source.splitlines() if line.strip()), "")[:70]
        if cell["cell_type"] == "code":
            outputs = {k.split("/")[0] for o in cell.get("outputs", []) for k in o.get("data", {"text": 0})}
            hidden = " (output only)" if OUTPUT_ONLY_TAG in _tags(cell) else ""
            shown = ", ".join(sorted(outputs)) or "-"
            first = f"[code, {len(source.splitlines())} lines{hidden}; output: {shown}] {first}"
        marker = {"slide": "==", "subslide": "--", "fragment": " +", "notes": " N"}.get(kind, "  ")
        lines.append(f"{number:>3} {marker} {index:>3} {first}")
    return lines


def slides_notebook(notebook: dict) -> dict:
    """The notebook as the slides show it: widgets as their committed pictures."""
    return static_outputs.with_widget_snapshots(notebook)


def _exporter():
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    config = Config()
    config.TagRemovePreprocessor.enabled = True
    config.TagRemovePreprocessor.remove_input_tags = {OUTPUT_ONLY_TAG}
    config.SlidesExporter.reveal_url_prefix = "assets/reveal.js"
    config.SlidesExporter.reveal_theme = "white"
    config.SlidesExporter.exclude_anchor_links = True
    return SlidesExporter(config=config, template_file=str(TEMPLATE))


def build_slides(path: Path, out: Path, exporter=None) -> Path:
    """Write ``out/NN_topic.slides.html`` for one chapter (no execution)."""
    import nbformat

    exporter = exporter or _exporter()
    notebook = slides_notebook(json.loads(path.read_text(encoding="utf-8")))
    node = nbformat.reads(json.dumps(notebook), as_version=4)
    body, _ = exporter.from_notebook_node(node, resources={"metadata": {"name": path.stem}})
    target = out / f"{path.stem}.slides.html"
    target.write_text(body, encoding="utf-8")
    return target


def copy_assets(out: Path) -> None:
    """reveal.js and MathJax next to the slides (the HTML refers to ``assets/``)."""
    assets = out / "assets"
    if assets.exists():
        shutil.rmtree(assets)
    shutil.copytree(VENDOR / "reveal.js", assets / "reveal.js")
    shutil.copytree(VENDOR / "mathjax", assets / "mathjax")


def build_all(out: Path = OUT, chapters: list[str] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    copy_assets(out)
    exporter = _exporter()
    return [build_slides(p, out, exporter) for p in chapter_paths() if not chapters or p.stem in chapters]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter names (default: all)")
    parser.add_argument("--check", action="store_true", help="only check the slide metadata")
    parser.add_argument("--out", default=str(OUT), help="output folder (default: dist/slides)")
    parser.add_argument("--outline", action="store_true", help="print the slides, one line per cell")
    args = parser.parse_args(argv)
    if args.outline:
        for path in chapter_paths():
            if not args.chapters or path.stem in args.chapters:
                print(f"# {path.stem}\n" + "\n".join(outline(json.loads(path.read_text(encoding="utf-8")))))
        return 0
    failed = False
    for path in chapter_paths():
        if args.chapters and path.stem not in args.chapters:
            continue
        notebook = json.loads(path.read_text(encoding="utf-8"))
        problems = metadata_problems(notebook)
        failed |= bool(problems)
        status = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
        print(
            f"{path.stem}: {expected_slide_count(notebook)} slides, {notes_count(notebook)} speaker notes"
            + (f" -- {status}" if problems else "")
        )
    if args.check:
        return 1 if failed else 0
    start = time.perf_counter()
    written = build_all(Path(args.out), args.chapters or None)
    size = sum(p.stat().st_size for p in Path(args.out).rglob("*") if p.is_file())
    print(
        f"wrote {len(written)} slide decks to {args.out} in {time.perf_counter() - start:.0f} s "
        f"({size / 1e6:.1f} MB with the assets)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
