"""The course website, built from the committed notebooks: ``make site`` -> ``dist/site/index.html``.

Sphinx with MyST-NB (``site/conf.py``) renders every chapter with its committed outputs (nothing is
executed), the teaching guide (``docs/``), and the Chinese edition (``dist/zh/``) under ``zh/``,
each page with a language switch. Every chapter page starts with links to download the notebook,
its Colab/Kaggle bundle, the student edition and its lecture slides; widgets show the picture of
the committed run (:mod:`static_outputs`). MathJax comes from ``vendor/``, so the built folder
works with no network. After the build, :func:`broken_links` checks every internal link and
anchor of the HTML; the build fails if one is broken.

    python tools/website.py              # build into dist/site/
    python tools/website.py --out DIR    # elsewhere (the tests build into a temporary folder)
"""

from __future__ import annotations

import argparse
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import slides  # noqa: E402
import static_outputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DIST = ROOT / "dist"
OUT = DIST / "site"
SITE = ROOT / "site"
DOCS = ROOT / "docs"


def chapter_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]*.ipynb"))


# ----------------------------------------------------------------------------- the source folder


def _downloads_cell(stem: str, lang: str) -> dict:
    """A markdown cell with the chapter's downloads and the language switch (raw HTML, so that
    MyST leaves the .ipynb links alone instead of resolving them as pages)."""
    up = "../" if lang == "en" else "../../"
    if lang == "en":
        links = [
            ("notebook", f"{up}downloads/notebooks/{stem}.ipynb"),
            ("Colab/Kaggle bundle", f"{up}downloads/colab/{stem}.ipynb"),
            ("student edition", f"{up}downloads/student/{stem}.ipynb"),
            ("lecture slides", f"{up}slides/{stem}.slides.html"),
            ("中文", f"{up}zh/chapters/{stem}.html"),
        ]
        label = "Download"
    else:
        links = [
            ("笔记本", f"{up}downloads/zh/{stem}.ipynb"),
            ("Colab/Kaggle 单文件版", f"{up}downloads/colab-zh/{stem}.ipynb"),
            ("学生版", f"{up}downloads/student-zh/{stem}.ipynb"),
            ("讲课幻灯片（英文）", f"{up}slides/{stem}.slides.html"),
            ("English", f"{up}chapters/{stem}.html"),
        ]
        label = "下载"
    anchors = " · ".join(f'<a class="course-download" href="{href}">{text}</a>' for text, href in links)
    return {
        "cell_type": "markdown",
        "metadata": {},
        "source": f'<p class="course-downloads">{label}: {anchors}</p>\n',
    }


def _page_notebook(path: Path, lang: str) -> dict:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    notebook = static_outputs.with_widget_snapshots(notebook)
    # speaker notes belong to the slides, not to the page
    notebook["cells"] = [
        c for c in notebook["cells"] if slides.NOTES_TAG not in c["metadata"].get("tags", [])
    ]
    for cell in notebook["cells"]:
        cell.pop("id", None)
        cell["metadata"].pop("slideshow", None)
    notebook["cells"].insert(1, _downloads_cell(path.stem, lang))
    notebook["nbformat_minor"] = 4  # no cell ids needed
    return notebook


def _readme_parts() -> tuple[str, list[str]]:
    """The README's opening paragraph and its chapter table rows."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    intro = readme.split("\n## ", 1)[0].split("\n", 1)[1].strip()
    intro = re.sub(r"\s*\*\*中文版\*\*.*", "", intro, flags=re.DOTALL).strip()
    intro = re.sub(r"\[([^\]]+)\]\(#[^)]*\)", r"\1", intro)  # README anchors do not exist here
    table = readme.split("## Chapters", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "notebooks/" in line]
    return intro, rows


def _index_page() -> str:
    intro, rows = _readme_parts()
    table = ["| # | chapter | what you learn |", "| --- | --- | --- |"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        number, link, learn = cells[0], cells[1], cells[2]
        link = re.sub(r"\(notebooks/([^)]+)\.ipynb\)", r"(chapters/\1.ipynb)", link)
        table.append(f"| {number} | {link} | {learn} |")
    toc = "\n".join(f"chapters/{p.stem}" for p in chapter_paths())
    return f"""# Deep learning from scratch

{intro}

**For teachers:** [lecture slides and the teaching guide](teaching/index.md). **中文版:** [中文](zh/index.md).

## Chapters

{chr(10).join(table)}

```{{toctree}}
:hidden:
:caption: Chapters
{toc}
```

```{{toctree}}
:hidden:
:caption: Teaching
teaching/index
```

```{{toctree}}
:hidden:
:caption: 中文版
zh/index
```
"""


def _zh_index_page() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    summary = readme.split("### 中文简介", 1)[1].split("\n## ", 1)[0]
    summary = re.sub(r"\(dist/zh/([^)]+)\.ipynb\)", r"(chapters/\1.ipynb)", summary)
    toc = "\n".join(f"chapters/{p.stem}" for p in chapter_paths())
    return f"""# 深度学习从零开始（中文版）

[English](../index.md)

{summary.strip()}

```{{toctree}}
:hidden:
:caption: 章节
{toc}
```
"""


def _teaching_pages(source: Path) -> None:
    folder = source / "teaching"
    folder.mkdir(parents=True, exist_ok=True)
    guide = (DOCS / "teaching.md").read_text(encoding="utf-8")
    guide = re.sub(r"\]\(teaching/([^)]+)\.md\)", r"](\1.md)", guide)
    guide = re.sub(r"\]\(\.\./dist/slides/([^)]+)\)", r"](../slides/\1)", guide)
    pages = sorted((DOCS / "teaching").glob("*.md"))
    toc = "\n".join(p.stem for p in pages)
    (folder / "index.md").write_text(guide + f"\n\n```{{toctree}}\n:hidden:\n{toc}\n```\n", encoding="utf-8")
    for page in pages:
        shutil.copy(page, folder / page.name)


def prepare_source(source: Path, slides_dir: Path | None = None) -> None:
    """Write the Sphinx source folder: configuration, pages, notebooks, downloads and assets."""
    if source.exists():
        shutil.rmtree(source)
    (source / "chapters").mkdir(parents=True)
    (source / "zh" / "chapters").mkdir(parents=True)
    shutil.copy(SITE / "conf.py", source / "conf.py")
    shutil.copytree(SITE / "_static", source / "_static")
    shutil.copytree(ROOT / "vendor" / "mathjax", source / "_static" / "mathjax")
    (source / "index.md").write_text(_index_page(), encoding="utf-8")
    (source / "zh" / "index.md").write_text(_zh_index_page(), encoding="utf-8")
    _teaching_pages(source)
    for path in chapter_paths():
        for lang, notebook_path, target in (
            ("en", path, source / "chapters"),
            ("zh", DIST / "zh" / path.name, source / "zh" / "chapters"),
        ):
            page = _page_notebook(notebook_path, lang)
            (target / path.name).write_text(json.dumps(page, ensure_ascii=False), encoding="utf-8")
    extra = source / "_extra"
    for edition, folder in (
        ("notebooks", NOTEBOOKS),
        ("colab", DIST / "colab"),
        ("student", DIST / "student"),
        ("zh", DIST / "zh"),
        ("colab-zh", DIST / "colab-zh"),
        ("student-zh", DIST / "student-zh"),
    ):
        (extra / "downloads" / edition).mkdir(parents=True)
        for path in chapter_paths():
            shutil.copy(folder / path.name, extra / "downloads" / edition / path.name)
    slides_out = extra / "slides"
    if slides_dir and slides_dir.is_dir():
        shutil.copytree(slides_dir, slides_out)
    else:
        slides.build_all(slides_out)


# ----------------------------------------------------------------------------- link check


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            if attrs.get(key) and not (tag == "link" and attrs.get("rel") == "preconnect"):
                self.links.append(attrs[key])


def _parse(path: Path, cache: dict) -> _Links:
    if path not in cache:
        parser = _Links()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = parser
    return cache[path]


def broken_links(folder: Path) -> list[str]:
    """Internal links and anchors of the built HTML that lead nowhere ("page: link")."""
    problems, cache = [], {}
    for page in sorted(folder.rglob("*.html")):
        if "slides" in page.relative_to(folder).parts[:1]:
            continue  # reveal.js slides: their links are checked by the slides' browser test
        for link in _parse(page, cache).links:
            parts = urllib.parse.urlsplit(link)
            if parts.scheme or link.startswith(("//", "mailto:", "javascript:", "data:")):
                continue
            target = (page.parent / urllib.parse.unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{page.relative_to(folder)}: {link} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                if urllib.parse.unquote(parts.fragment) not in _parse(target, cache).ids:
                    problems.append(f"{page.relative_to(folder)}: {link} (no such anchor)")
    return problems


def external_resources(folder: Path) -> list[str]:
    """Scripts, styles, fonts or images the pages would load from the network."""
    found = []
    pattern = re.compile(
        r"""<(?:script|link|img|iframe)\b[^>]*?(?:src|href)=["'](https?:)?//""", re.IGNORECASE
    )
    for page in sorted(folder.rglob("*.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        for match in pattern.finditer(text):
            if 'rel="preconnect"' not in match.group(0):
                found.append(f"{page.relative_to(folder)}: {match.group(0)[:100]}")
    for sheet in sorted(folder.rglob("*.css")):
        for url in re.findall(
            r"url\((['\"]?)(https?:)?//", sheet.read_text(encoding="utf-8", errors="replace")
        ):
            found.append(f"{sheet.relative_to(folder)}: url({url[0]}//...")
    return found


# ----------------------------------------------------------------------------- build


def build(out: Path = OUT, slides_dir: Path | None = None, quiet: bool = True) -> Path:
    """Build the site into ``out`` and return its entry point; raise when a link is broken."""
    # MyST-NB writes a jupyter_execute/ folder next to Sphinx's output folder: build in a work folder
    work = out.parent / f".{out.name}-build"
    source, html = work / "source", work / "html"
    prepare_source(source, slides_dir)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-j", "auto", "-W", "--keep-going",
               str(source), str(html)] + (["-q"] if quiet else [])
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise RuntimeError("sphinx-build failed:\n" + result.stdout[-4000:] + result.stderr[-8000:])
    shutil.rmtree(html / ".doctrees", ignore_errors=True)
    if out.exists():
        shutil.rmtree(out)
    shutil.move(html, out)
    shutil.rmtree(work)
    problems = broken_links(out) + external_resources(out)
    if problems:
        raise RuntimeError("the built site has broken links or loads from the network:\n"
                           + "\n".join(problems[:50]))
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT), help="output folder (default: dist/site)")
    parser.add_argument(
        "--slides", default=None, help="a folder of slides built already (default: build them)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    entry = build(Path(args.out), Path(args.slides) if args.slides else None, quiet=False)
    files = [p for p in Path(args.out).rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    print(
        f"site: {entry} ({len(files)} files, {size / 1e6:.0f} MB) in {time.perf_counter() - start:.0f} s; "
        "no broken internal links or anchors, nothing loaded from the network"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
