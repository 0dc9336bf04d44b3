"""The course's translations: markdown cells in another language, kept in step with the English.

Each chapter's translation lives in ``i18n/<lang>/NN_topic.json``: for every markdown cell of
``notebooks/NN_topic.ipynb`` (by cell id) the sha256 of the English source it translates and the
translated text. Code cells are never translated: the code, its checks and its outputs stay those
of the English chapter. ``i18n/<lang>/terms.tsv`` is the term base: one agreed term per English
term, which :func:`cell_problems` checks in every translated cell.

A translation is *current* when its hash equals the hash of the English cell today. Editing an
English markdown cell makes its translation stale, and ``tests/test_i18n.py`` fails, naming the
chapter and the cell, until the translation is updated in the same commit. The workflow:

    python tools/i18n.py status                  # what is missing or stale, per chapter
    python tools/i18n.py todo 03_mlp -o work/    # a worksheet of the cells to (re)translate
    ... translate in the worksheet ...
    python tools/i18n.py apply work/03_mlp.zh.md  # checks it and stores it in i18n/zh/03_mlp.json

A worksheet is plain text: for every cell a line ``@@@ cell <id> <hash>``, the text, and a line
``@@@ end``. ``todo`` writes the English (and, for a stale cell, the old translation below it);
replace the text of each block by the translation and keep the marker lines.
"""

from __future__ import annotations

import argparse
import collections
import copy
import csv
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
I18N = ROOT / "i18n"
LANGUAGES = ("zh",)
HASH_CHARS = 16
START = re.compile(rf"^@@@ cell (\S+) ([0-9a-f]{{{HASH_CHARS}}})\s*$")
END = "@@@ end"
CJK = re.compile(r"[\u3400-\u9fff]")
# Chinese characters and full-width punctuation on both sides of a line break inside a paragraph.
_WIDE = r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]"
CJK_BREAK = re.compile(_WIDE + r"\n" + _WIDE)


# ----------------------------------------------------------------------------- the English side

def chapter_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]*.ipynb"))


def chapter_number(stem: str) -> str:
    """``"04b_modern_cnn"`` -> ``"04b"``: the key the term base uses for chapters."""
    return stem.split("_", 1)[0]


def source_text(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def source_hash(text: str) -> str:
    """The short sha256 of an English cell's text that a translation records."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_CHARS]


def markdown_cells(notebook: dict) -> list[dict]:
    return [c for c in notebook["cells"] if c["cell_type"] == "markdown"]


def load_notebook(stem: str) -> dict:
    return json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- stored translations

def translation_path(stem: str, lang: str = "zh") -> Path:
    return I18N / lang / f"{stem}.json"


def load_translation(stem: str, lang: str = "zh") -> dict[str, dict]:
    """Cell id -> ``{"en_sha256": ..., "text": ...}`` for one chapter (empty when none)."""
    path = translation_path(stem, lang)
    if not path.is_file():
        return {}
    stored = json.loads(path.read_text(encoding="utf-8"))
    return {cell["id"]: {"en_sha256": cell["en_sha256"], "text": "".join(cell[lang])}
            for cell in stored["cells"]}


def save_translation(stem: str, cells: dict[str, dict], lang: str = "zh") -> Path:
    """Write a chapter's translations in the notebook's cell order (orphans last, so none is lost)."""
    order = [c["id"] for c in markdown_cells(load_notebook(stem))]
    ids = [i for i in order if i in cells] + sorted(set(cells) - set(order))
    stored = {
        "chapter": stem,
        "language": lang,
        "cells": [{"id": i, "en_sha256": cells[i]["en_sha256"],
                   lang: cells[i]["text"].splitlines(keepends=True)} for i in ids],
    }
    path = translation_path(stem, lang)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class Problem:
    chapter: str
    cell: str
    kind: str  # missing, stale, orphan, format, or a quality check's name
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.chapter}, cell {self.cell}: {self.kind}" + (f": {self.detail}" if self.detail else "")


def _first_line(text: str) -> str:
    line = next((s for s in text.splitlines() if s.strip()), "")
    return repr(line[:70] + ("..." if len(line) > 70 else ""))


def staleness_problems(stem: str, notebook: dict | None = None, lang: str = "zh") -> list[Problem]:
    """Markdown cells without a translation, with one of an older English text, and orphans."""
    notebook = notebook or load_notebook(stem)
    stored = load_translation(stem, lang)
    problems, ids = [], set()
    for cell in markdown_cells(notebook):
        text, cell_id = source_text(cell), cell.get("id", "?")
        ids.add(cell_id)
        if cell_id not in stored:
            problems.append(Problem(stem, cell_id, "missing", f"no translation of {_first_line(text)}"))
        elif stored[cell_id]["en_sha256"] != source_hash(text):
            problems.append(Problem(stem, cell_id, "stale",
                                    f"the English {_first_line(text)} changed since it was translated; "
                                    f"update the translation (python tools/i18n.py todo {stem})"))
    problems += [Problem(stem, i, "orphan", "translation of a cell the chapter no longer has; remove it")
                 for i in sorted(set(stored) - ids)]
    return problems


# ----------------------------------------------------------------------------- the quality checks

@dataclass(frozen=True)
class Term:
    english: tuple[str, ...]
    chinese: tuple[str, ...]
    chapters: tuple[str, ...]  # empty: every chapter
    note: str

    def applies_to(self, chapter: str) -> bool:
        return not self.chapters or chapter in self.chapters

    @property
    def pattern(self) -> re.Pattern:
        words = "|".join(re.escape(w) for w in sorted(self.english, key=len, reverse=True))
        return re.compile(rf"(?<![\w-])(?:{words})(?:s|es)?(?![\w-])", re.IGNORECASE)


def load_terms(lang: str = "zh") -> list[Term]:
    lines = [line for line in (I18N / lang / "terms.tsv").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [Term(tuple(r["english"].split("|")), tuple(r["chinese"].split("|")),
                 () if r["chapters"].strip() == "*" else tuple(r["chapters"].split()), r["note"] or "")
            for r in rows]


# Display math, then inline math (which may wrap onto the next line, but not across a blank line).
MATH = re.compile(r"\$\$.+?\$\$|\$(?:[^$\n]|\n(?!\s*\n))+?\$", re.DOTALL)
CODE = re.compile(r"`(?:[^`\n]|\n(?!\s*\n))+`")
LINK_TARGET = re.compile(r"\]\(([^)\s]+)")
HTML_TAG = re.compile(r"<[^>\n]+>")
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
HEADING = re.compile(r"^(#{1,6})\s", re.MULTILINE)
FENCE = re.compile(r"```.*?```", re.DOTALL)


def prose(text: str) -> str:
    """The text outside code blocks, code spans, formulas, link targets and HTML tags."""
    for pattern in (FENCE, MATH, CODE, HTML_TAG):
        text = pattern.sub(" ", text)
    return re.sub(r"\]\([^)]*\)", "] ", text)


def cell_problems(chapter: str, cell_id: str, english: str, translated: str,
                  terms: list[Term]) -> list[Problem]:
    """What a translated cell changed that must stay (formulas, code, numbers, links, headings) and
    which agreed terms it does not use."""
    problems = []

    def compare(kind: str, found_en, found_tr, what: str) -> None:
        # a line break inside a formula or code span renders as a space
        found_en, found_tr = ([" ".join(x.split()) for x in found] for found in (found_en, found_tr))
        lost = sorted((collections.Counter(found_en) - collections.Counter(found_tr)).elements())
        if lost:
            shown = ", ".join(repr(x if len(x) < 60 else x[:57] + "...") for x in lost[:4])
            problems.append(Problem(chapter, cell_id, kind,
                                    f"{what} of the English missing or changed: {shown}"))

    no_fence_en, no_fence_tr = FENCE.sub(" ", english), FENCE.sub(" ", translated)
    compare("code", FENCE.findall(english), FENCE.findall(translated), "code blocks")
    compare("math", MATH.findall(no_fence_en), MATH.findall(no_fence_tr), "formulas")
    compare("code", CODE.findall(MATH.sub(" ", no_fence_en)), CODE.findall(MATH.sub(" ", no_fence_tr)),
            "code spans")
    compare("links", LINK_TARGET.findall(english), LINK_TARGET.findall(translated), "link and image targets")
    compare("numbers", NUMBER.findall(prose(english)), NUMBER.findall(prose(translated)), "numbers")
    if HEADING.findall(english) != HEADING.findall(translated):
        problems.append(Problem(chapter, cell_id, "headings", "the headings' levels differ from the English: "
                                f"{HEADING.findall(english)} vs {HEADING.findall(translated)}"))
    emphasis_en, emphasis_tr = _emphasis_count(english), _emphasis_count(translated)
    if emphasis_tr != emphasis_en:
        problems.append(Problem(chapter, cell_id, "emphasis",
                                f"{emphasis_en[0]} bold and {emphasis_en[1]} italic spans in the English, "
                                f"{emphasis_tr[0]} and {emphasis_tr[1]} rendered here. Markdown does not "
                                "render ** or * next to full-width punctuation on the inside: write "
                                "**预备知识**：, not **预备知识：**, and “**词元**”, not **“词元”**"))
    if CJK_BREAK.search(translated):
        problems.append(Problem(chapter, cell_id, "line break",
                                "a line break between two Chinese characters shows as a space in the "
                                f"browser: join the lines ({CJK_BREAK.search(translated).group(0)!r})"))
    if re.search(r"[A-Za-z]{3}", prose(english)) and not CJK.search(translated):
        problems.append(Problem(chapter, cell_id, "untranslated", "no Chinese text"))
    english_prose, translated_prose = prose(english), prose(translated)
    for term in terms:
        if term.applies_to(chapter_number(chapter)) and term.pattern.search(english_prose):
            if not any(c in translated_prose for c in term.chinese):
                word = term.pattern.search(english_prose).group(0)
                problems.append(Problem(chapter, cell_id, "term",
                                        f"the English says {word!r}; use the agreed term "
                                        f"{' or '.join(term.chinese)} (i18n/zh/terms.tsv)"))
    return problems


def _emphasis_count(text: str) -> tuple[int, int]:
    """(bold, italic) spans that a CommonMark renderer (mistune, as nbconvert uses) makes of a cell."""
    import mistune

    html = mistune.html(MATH.sub(" x ", text))
    return html.count("<strong>"), html.count("<em>")


def quality_problems(stem: str, lang: str = "zh", terms: list[Term] | None = None) -> list[Problem]:
    """The checks of :func:`cell_problems` on every current translation of a chapter."""
    terms = load_terms(lang) if terms is None else terms
    stored = load_translation(stem, lang)
    problems = []
    for cell in markdown_cells(load_notebook(stem)):
        entry = stored.get(cell["id"])
        if entry and entry["en_sha256"] == source_hash(source_text(cell)):
            problems += cell_problems(stem, cell["id"], source_text(cell), entry["text"], terms)
    return problems


# ----------------------------------------------------------------------------- the translated notebooks

def translated_notebook(stem: str, lang: str = "zh", notebook: dict | None = None) -> dict:
    """The chapter with its markdown in ``lang`` (code, outputs and metadata unchanged).

    Raises ``ValueError`` naming the cells when a translation is missing or stale, so that no
    half-translated edition is ever written.
    """
    notebook = copy.deepcopy(notebook or load_notebook(stem))
    problems = staleness_problems(stem, notebook, lang)
    if any(p.kind != "orphan" for p in problems):
        raise ValueError(f"the {lang} translation of {stem} is not current:\n"
                         + "\n".join(map(str, problems)))
    stored = load_translation(stem, lang)
    for cell in markdown_cells(notebook):
        cell["source"] = stored[cell["id"]]["text"].splitlines(keepends=True)
    notebook["metadata"]["language"] = lang
    return notebook


# ----------------------------------------------------------------------------- worksheets

def worksheet(stem: str, lang: str = "zh", everything: bool = False) -> str:
    """The cells of a chapter that need translating, in the worksheet format (see the module doc)."""
    stored = load_translation(stem, lang)
    blocks = []
    for cell in markdown_cells(load_notebook(stem)):
        text, digest = source_text(cell), source_hash(source_text(cell))
        old = stored.get(cell["id"])
        if old and old["en_sha256"] == digest and not everything:
            continue
        body = text.rstrip("\n")
        if old:
            body += f"\n\n(old translation, of an earlier English text:)\n{old['text'].rstrip()}"
        blocks.append(f"@@@ cell {cell['id']} {digest}\n{body}\n{END}\n")
    return "\n".join(blocks)


def parse_worksheet(text: str) -> list[tuple[str, str, str]]:
    """``(cell id, hash, text)`` for every block; ``ValueError`` with the line number for bad markers."""
    blocks, current, lines = [], None, []
    for number, line in enumerate(text.splitlines(), start=1):
        match = START.match(line)
        if match:
            if current:
                raise ValueError(f"line {number}: a new cell starts before {END!r} of cell {current[0]}")
            current, lines = (match.group(1), match.group(2)), []
        elif line.strip() == END:
            if not current:
                raise ValueError(f"line {number}: {END!r} without a cell")
            blocks.append((current[0], current[1], "\n".join(lines).strip("\n")))
            current = None
        elif current:
            lines.append(line)
        elif line.strip():
            raise ValueError(f"line {number}: text outside a cell block: {line[:60]!r}")
    if current:
        raise ValueError(f"cell {current[0]} has no {END!r} line")
    return blocks


def apply_worksheet(path: Path, lang: str = "zh", write: bool = True) -> list[Problem]:
    """Store a worksheet's translations (file names start with the chapter's stem); return the
    quality problems of the cells it holds. Blocks for a changed English cell are refused."""
    stem = next((p.stem for p in chapter_paths() if path.name.startswith(p.stem)), None)
    if stem is None:
        raise ValueError(f"{path.name}: the file name must start with a chapter's name, e.g. 03_mlp")
    english = {c["id"]: source_text(c) for c in markdown_cells(load_notebook(stem))}
    cells, problems, terms = load_translation(stem, lang), [], load_terms(lang)
    for cell_id, digest, text in parse_worksheet(path.read_text(encoding="utf-8")):
        if cell_id not in english:
            problems.append(Problem(stem, cell_id, "format", "the chapter has no markdown cell with this id"))
        elif digest != source_hash(english[cell_id]):
            problems.append(Problem(stem, cell_id, "stale",
                                    "the English cell changed after the worksheet was made"))
        else:
            if english[cell_id].endswith("\n") and not text.endswith("\n"):
                text += "\n"
            cells[cell_id] = {"en_sha256": digest, "text": text}
            problems += cell_problems(stem, cell_id, english[cell_id], text, terms)
    if write and not any(p.kind in ("format", "stale") for p in problems):
        save_translation(stem, cells, lang)
    return problems


# ----------------------------------------------------------------------------- command line

def _status(lang: str) -> int:
    terms, failed = load_terms(lang), 0
    print(f"{'chapter':<28}{'cells':>6}{'current':>9}{'missing':>9}{'stale':>7}{'checks':>8}{'characters':>12}")
    for path in chapter_paths():
        stem = path.stem
        problems = staleness_problems(stem, lang=lang)
        quality = quality_problems(stem, lang, terms)
        kinds = collections.Counter(p.kind for p in problems)
        cells = markdown_cells(load_notebook(stem))
        stored = load_translation(stem, lang)
        chars = sum(len(v["text"]) for v in stored.values())
        current = len(cells) - kinds["missing"] - kinds["stale"]
        print(f"{stem:<28}{len(cells):>6}{current:>9}{kinds['missing']:>9}{kinds['stale']:>7}{len(quality):>8}"
              f"{chars:>12,}")
        failed += len(problems) + len(quality)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", default="zh", choices=LANGUAGES)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="cells translated, missing and stale, per chapter")
    todo = sub.add_parser("todo", help="write worksheets of the cells to (re)translate")
    todo.add_argument("chapters", nargs="*", help="chapter names (default: every chapter with work)")
    todo.add_argument("-o", "--out", default=".", help="folder for the worksheets")
    todo.add_argument("--all", action="store_true", help="every cell, not only missing and stale ones")
    apply = sub.add_parser("apply", help="check worksheets and store their translations")
    apply.add_argument("files", nargs="+")
    apply.add_argument("--check", action="store_true", help="only check, store nothing")
    show = sub.add_parser("problems", help="list every problem (staleness and checks) of chapters")
    show.add_argument("chapters", nargs="*")
    args = parser.parse_args(argv)

    if args.command == "status":
        return _status(args.lang)
    if args.command == "todo":
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for path in chapter_paths():
            if args.chapters and path.stem not in args.chapters:
                continue
            text = worksheet(path.stem, args.lang, everything=args.all)
            if text:
                target = out / f"{path.stem}.{args.lang}.md"
                target.write_text(text, encoding="utf-8")
                print(f"{target}: {text.count('@@@ cell')} cells")
        return 0
    if args.command == "problems":
        problems = []
        for path in chapter_paths():
            if not args.chapters or path.stem in args.chapters:
                problems += staleness_problems(path.stem, lang=args.lang)
                problems += quality_problems(path.stem, args.lang)
        print("\n".join(map(str, problems)) or "no problems")
        return 1 if problems else 0
    failed = False
    for name in args.files:
        try:
            problems = apply_worksheet(Path(name), args.lang, write=not args.check)
        except ValueError as error:
            print(f"{name}: {error}")
            failed = True
            continue
        print(f"{name}: " + ("no problems" if not problems else f"{len(problems)} problems"))
        for problem in problems:
            print(f"  {problem}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
