"""The Chinese edition (``i18n/zh/``, ``tools/i18n.py``): complete, current, and faithful.

Every markdown cell of every chapter has a translation of its current English text (a changed
English cell fails here, naming the chapter and the cell, until its translation is updated); every
translation keeps the English cell's formulas, code, numbers, links and headings and uses the
agreed terms of ``i18n/zh/terms.tsv``; the chapters' glossaries agree with the term base.
"""

import copy
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import i18n  # noqa: E402

CHAPTERS = [p.stem for p in i18n.chapter_paths()]
TERMS = i18n.load_terms("zh")


def _report(problems) -> str:
    more = f"\n... and {len(problems) - 40} more" if len(problems) > 40 else ""
    return "\n".join(map(str, problems[:40])) + more


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_markdown_cell_has_a_current_translation(chapter):
    problems = i18n.staleness_problems(chapter)
    assert not problems, (
        f"the Chinese translation of {chapter} is not current. Whoever changes a chapter's text updates "
        f"its translation in the same commit: python tools/i18n.py todo {chapter} -o work/, translate, "
        f"python tools/i18n.py apply work/{chapter}.zh.md (see CONTRIBUTING).\n" + _report(problems))


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_translations_keep_formulas_code_numbers_and_use_the_agreed_terms(chapter):
    problems = i18n.quality_problems(chapter, "zh", TERMS)
    assert not problems, (f"{chapter}: the translation differs from the English where it must not:\n"
                          + _report(problems))


def test_a_changed_english_cell_makes_its_translation_stale():
    chapter = CHAPTERS[1]
    notebook = i18n.load_notebook(chapter)
    assert i18n.staleness_problems(chapter, notebook) == []
    edited = copy.deepcopy(notebook)
    cell = i18n.markdown_cells(edited)[2]
    cell["source"] = i18n.source_text(cell).replace(" ", "  ", 1)  # the smallest edit
    (problem,) = i18n.staleness_problems(chapter, edited)
    assert (problem.chapter, problem.cell, problem.kind) == (chapter, cell["id"], "stale")
    assert chapter in str(problem) and cell["id"] in str(problem)
    with pytest.raises(ValueError, match=cell["id"]):
        i18n.translated_notebook(chapter, "zh", edited)


def test_a_new_english_cell_without_translation_is_reported_and_a_removed_one_is_an_orphan():
    chapter = CHAPTERS[0]
    edited = i18n.load_notebook(chapter)
    removed = i18n.markdown_cells(edited)[3]
    edited["cells"].remove(removed)
    edited["cells"].append({"cell_type": "markdown", "id": "new-cell", "metadata": {},
                            "source": ["## A new section\n"]})
    problems = {(p.cell, p.kind) for p in i18n.staleness_problems(chapter, edited)}
    assert problems == {("new-cell", "missing"), (removed["id"], "orphan")}


def _check(english, translated, chapter="06_attention"):
    return [p.kind for p in i18n.cell_problems(chapter, "c1", english, translated, TERMS)]


def test_cell_checks_catch_changed_formulas_code_numbers_links_and_headings():
    english = "## 6.1 Scores\n\nThe score $q^\\top k$ of `masked_softmax` is 0.25 [here](#x)."
    good = "## 6.1 分数\n\n`masked_softmax` 的分数 $q^\\top k$ 为 0.25，见[这里](#x)。"
    assert _check(english, good) == []
    assert _check(english, good.replace("$q^\\top k$", "$q k$")) == ["math"]
    assert _check(english, good.replace("`masked_softmax`", "masked_softmax")) == ["code"]
    assert _check(english, good.replace("0.25", "0.3")) == ["numbers"]
    assert _check(english, good.replace("(#x)", "(#y)")) == ["links"]
    assert _check(english, good.replace("## 6.1", "### 6.1")) == ["headings"]
    assert _check(english, "## 6.1 Scores\n\n" + english.split("\n\n")[1]) == ["untranslated"]
    # bold next to full-width punctuation on its inside is not rendered by markdown
    assert _check("**Prerequisites:** none.", "**预备知识**：无。") == []
    assert _check("**Prerequisites:** none.", "**预备知识：**无。") == ["emphasis"]
    # a line break inside a Chinese sentence shows as a space
    assert _check("A long\nsentence.", "一个很长的\n句子。") == ["line break"]


def test_cell_checks_enforce_the_agreed_term_in_the_chapters_it_applies_to():
    english = "Max pooling keeps the largest value; the mask hides padding."
    assert _check(english, "最大汇聚保留最大值；掩蔽遮住填充。") == []
    problems = i18n.cell_problems("06_attention", "c1", english, "最大池化保留最大值；掩蔽遮住填充。", TERMS)
    assert [p.kind for p in problems] == ["term"] and "汇聚" in str(problems[0])
    # a segmentation mask (chapter 9b) is 掩码, an attention mask (chapter 6) 掩蔽
    assert _check("Each object gets a mask.", "每个物体有一个掩码。", "09b_rcnn_segmentation") == []
    assert _check("Each object gets a mask.", "每个物体有一个掩码。", "06_attention") == ["term"]
    # terms inside code spans and formulas are not prose
    assert _check("Call `pooling(x)` on $x$.", "对 $x$ 调用 `pooling(x)`。") == []


def test_term_base_is_well_formed():
    chapters = {i18n.chapter_number(c) for c in CHAPTERS}
    seen = {}
    for term in TERMS:
        assert term.english and all(w.strip() == w and w for w in term.english), term
        assert all(i18n.CJK.search(c) for c in term.chinese), f"{term.english}: no Chinese term"
        assert set(term.chapters) <= chapters, f"{term.english}: unknown chapters {term.chapters}"
        for word in term.english:
            for chapter in term.chapters or chapters:
                key = (word.lower(), chapter)
                assert key not in seen, f"{word!r} has two agreed terms in chapter {chapter}"
                seen[key] = term.chinese


def _glossary_rows(text):
    if "术语表" not in text:
        return []
    rows = re.findall(r"^\|([^|\n]*)\|([^|\n]*)\|\s*$", text.split("术语表", 1)[1], re.MULTILINE)
    return [(en.strip(), zh.strip()) for en, zh in rows if "---" not in en and en.strip() != "English"]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_glossary_uses_the_agreed_terms(chapter):
    rows = [row for cell in i18n.markdown_cells(i18n.load_notebook(chapter))
            for row in _glossary_rows(i18n.source_text(cell))]
    assert rows, f"{chapter} has no glossary (### Glossary / 术语表)"
    wrong = [f"{en} | {zh}: the term base says {' or '.join(t.chinese)}" for en, zh in rows for t in TERMS
             if t.applies_to(i18n.chapter_number(chapter)) and t.pattern.search(i18n.prose(en))
             and not any(c in zh for c in t.chinese)]
    assert not wrong, f"{chapter}'s glossary disagrees with i18n/zh/terms.tsv:\n" + "\n".join(wrong)


@pytest.fixture
def scratch_i18n(tmp_path, monkeypatch):
    """A copy of i18n/ that the worksheet tests may write to."""
    shutil.copytree(i18n.I18N, tmp_path / "i18n")
    monkeypatch.setattr(i18n, "I18N", tmp_path / "i18n")
    return tmp_path


def test_worksheet_round_trip_stores_the_translation(scratch_i18n):
    chapter = CHAPTERS[1]
    sheet = i18n.worksheet(chapter, everything=True)
    blocks = i18n.parse_worksheet(sheet)
    assert len(blocks) == len(i18n.markdown_cells(i18n.load_notebook(chapter)))
    cell_id, digest, _ = blocks[0]
    current = i18n.load_translation(chapter)[cell_id]["text"]
    path = scratch_i18n / f"{chapter}.zh.md"
    path.write_text(f"@@@ cell {cell_id} {digest}\n{current.rstrip()}\n@@@ end\n", encoding="utf-8")
    assert i18n.apply_worksheet(path) == []
    assert i18n.load_translation(chapter)[cell_id]["text"] == current
    path.write_text(f"@@@ cell {cell_id} {'0' * 16}\n译文\n@@@ end\n", encoding="utf-8")
    assert [p.kind for p in i18n.apply_worksheet(path)] == ["stale"]
    assert i18n.load_translation(chapter)[cell_id]["text"] == current, "a stale block must not be stored"


def test_worksheet_format_errors_name_the_line():
    with pytest.raises(ValueError, match="line 3"):
        i18n.parse_worksheet("@@@ cell a 0123456789abcdef\ntext\n@@@ cell b 0123456789abcdef\n")
    with pytest.raises(ValueError, match="no '@@@ end'"):
        i18n.parse_worksheet("@@@ cell a 0123456789abcdef\ntext\n")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chinese_edition_is_the_chapter_with_chinese_markdown(chapter):
    english = i18n.load_notebook(chapter)
    chinese = json.loads((ROOT / "dist" / "zh" / f"{chapter}.ipynb").read_text(encoding="utf-8"))
    assert chinese["metadata"]["language"] == "zh"
    assert len(chinese["cells"]) == len(english["cells"])
    for en, zh in zip(english["cells"], chinese["cells"], strict=True):
        assert (en["cell_type"], en.get("id")) == (zh["cell_type"], zh.get("id"))
        if en["cell_type"] == "code":
            assert zh == en, f"{chapter}: code cell {en.get('id')} differs from the English chapter"
        else:
            assert i18n.CJK.search(i18n.source_text(zh)) or not re.search("[A-Za-z]{3}", i18n.prose(
                i18n.source_text(en))), f"{chapter}: markdown cell {en.get('id')} is not in Chinese"
