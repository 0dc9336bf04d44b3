"""Write one-file notebooks of every chapter for Colab and Kaggle: ``make bundle``.

For each ``notebooks/NN_topic.ipynb`` this writes

* ``dist/colab/NN_topic.ipynb``: the chapter without outputs, with a set-up cell inserted before its
  first code cell (``tools/bundle_setup_cell.py`` with the course's ``helpers`` package embedded as
  a zip, the data manifest, and the pip requirements this chapter needs), so the file runs on
  Colab, Kaggle or any Jupyter without the repository;
* ``dist/student/NN_topic.ipynb``: the same without the cells tagged ``solution`` (worked solutions)
  or ``teacher-notes`` (the lecture slides' speaker notes);
* the Chinese edition, from the translations in ``i18n/zh/`` (``tools/i18n.py``):
  ``dist/zh/NN_topic.ipynb`` (the committed chapter, outputs included, with its markdown in
  Chinese), and its one-file bundles ``dist/colab-zh/`` and ``dist/student-zh/``. A chapter whose
  translation is missing or stale gets no Chinese files, and ``make bundle`` fails naming it.

The output is deterministic (same sources, same bytes), so ``tests/test_bundle.py`` can check that
the committed bundles are up to date. ``python tools/bundle.py --check`` does the same from the shell.
"""

from __future__ import annotations

import argparse
import ast
import base64
import copy
import hashlib
import io
import json
import re
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import i18n  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DIST = ROOT / "dist"
EDITIONS = ("colab", "student", "zh", "colab-zh", "student-zh")
SETUP_TEMPLATE = Path(__file__).with_name("bundle_setup_cell.py")
# Import names whose pip distribution is named differently.
PIP_NAMES = {"PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml"}
# Always there wherever a notebook runs.
PROVIDED = {"IPython", "ipykernel", "google"}


def _notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]*.ipynb"))


def _payload_files() -> dict[str, bytes]:
    files = {f"helpers/{p.name}": p.read_bytes() for p in sorted((ROOT / "helpers").glob("*.py"))}
    files["data/MANIFEST.sha256"] = (ROOT / "data" / "MANIFEST.sha256").read_bytes()
    return files


def build_payload() -> tuple[str, str]:
    """The embedded zip (base64) of ``helpers/*.py`` and the data manifest, and its short hash."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in _payload_files().items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    raw = buffer.getvalue()
    return base64.b64encode(raw).decode("ascii"), hashlib.sha256(raw).hexdigest()[:12]


def _imports_of(source: str) -> set[str]:
    """Top-level package names imported anywhere in ``source`` (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _code_source(cell: dict) -> str:
    lines = "".join(cell["source"]).splitlines()
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)


def requirements(notebook: dict) -> dict[str, str]:
    """Import name -> pip requirement for the third-party packages a chapter needs.

    Found by reading the imports of the notebook's code and, transitively, of the ``helpers``
    modules it uses (function-level imports included); versions come from ``pyproject.toml``.
    """
    todo = set().union(*(_imports_of(_code_source(c)) for c in notebook["cells"] if c["cell_type"] == "code"))
    seen_helpers, packages = set(), set()
    while todo:
        name = todo.pop()
        if name.split(".")[0] == "helpers":
            parts = name.split(".")
            module = parts[1] if len(parts) > 1 else "__init__"
            path = ROOT / "helpers" / f"{module}.py"
            if module not in seen_helpers and path.is_file():
                seen_helpers.add(module)
                todo |= _imports_of(path.read_text(encoding="utf-8"))
        else:
            packages.add(name.split(".")[0])
    packages -= set(sys.stdlib_module_names) | PROVIDED | {"__future__"}
    declared = _declared_requirements()
    result = {}
    for module in sorted(packages):
        pip_name = PIP_NAMES.get(module, module)
        result[module] = declared.get(pip_name.lower(), pip_name)
    return result


def _declared_requirements() -> dict[str, str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower(): r for r in project["dependencies"]}


def setup_cell_source(notebook: dict, payload: str, version: str) -> str:
    """The set-up cell: the template with this chapter's requirements and the payload filled in."""
    source = SETUP_TEMPLATE.read_text(encoding="utf-8")
    wrapped = "(\n" + "\n".join(f'    "{payload[i:i + 100]}"' for i in range(0, len(payload), 100)) + "\n)"
    replacements = {
        '"__VERSION__"': json.dumps(version),
        '{"__MODULE__": "__REQUIREMENT__"}': json.dumps(requirements(notebook)),
        '"__PAYLOAD__"': wrapped,
    }
    for placeholder, value in replacements.items():
        if placeholder not in source:
            raise RuntimeError(f"{SETUP_TEMPLATE.name} lost its placeholder {placeholder}")
        source = source.replace(placeholder, value)
    return source


def _clean_cell(cell: dict) -> dict:
    cell = copy.deepcopy(cell)
    cell.pop("id", None)
    if cell["cell_type"] == "code":
        cell["outputs"], cell["execution_count"] = [], None
    return cell


def _setup_cell(source: str) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"cellView": "form", "jupyter": {"source_hidden": True}, "tags": ["course-setup"]},
        "outputs": [],
        "source": source.splitlines(keepends=True),
    }


def bundle(path: Path, payload: str, version: str, student: bool = False,
           notebook: dict | None = None) -> str:
    """The bundled notebook of ``path`` as JSON text (the student edition drops solution cells);
    ``notebook`` is the chapter's content when it is not the file's (a translation)."""
    notebook = notebook or json.loads(path.read_text(encoding="utf-8"))
    cells = [_clean_cell(c) for c in notebook["cells"]]
    if student:
        dropped = {"solution", "teacher-notes"}  # worked solutions and the lecture's speaker notes
        cells = [c for c in cells if not dropped & set(c.get("metadata", {}).get("tags", []))]
    first_code = next(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    cells.insert(first_code, _setup_cell(setup_cell_source(notebook, payload, version)))
    kept = ("kernelspec", "language_info")
    metadata = {key: value for key, value in notebook["metadata"].items() if key in kept}
    metadata["colab"] = {"name": path.name, "provenance": []}
    out = {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}
    for index, cell in enumerate(out["cells"]):
        cell["id"] = f"{path.stem[:2]}-{index:03d}"
    return json.dumps(out, indent=1, ensure_ascii=False) + "\n"


def _notebook_json(notebook: dict) -> str:
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def untranslated_chapters(lang: str = "zh") -> dict[str, str]:
    """Chapter -> why it has no current translation (missing or stale cells), for those without one."""
    result = {}
    for path in _notebook_paths():
        problems = [p for p in i18n.staleness_problems(path.stem, lang=lang) if p.kind != "orphan"]
        if problems:
            cells = f"{len(problems)} markdown cell" + ("s" if len(problems) > 1 else "")
            result[path.stem] = f"{cells} without a current translation ({problems[0]})"
    return result


def expected_files() -> dict[Path, str]:
    """Every bundle file that ``make bundle`` writes, with its content (no Chinese files for a chapter
    whose translation is not current: see :func:`untranslated_chapters`)."""
    payload, version = build_payload()
    files, untranslated = {}, untranslated_chapters()
    for path in _notebook_paths():
        files[DIST / "colab" / path.name] = bundle(path, payload, version)
        files[DIST / "student" / path.name] = bundle(path, payload, version, student=True)
        if path.stem in untranslated:
            continue
        chinese = i18n.translated_notebook(path.stem, "zh")
        files[DIST / "zh" / path.name] = _notebook_json(chinese)
        files[DIST / "colab-zh" / path.name] = bundle(path, payload, version, notebook=chinese)
        files[DIST / "student-zh" / path.name] = bundle(path, payload, version, student=True,
                                                        notebook=chinese)
    return files


def stale_files() -> list[str]:
    """Bundles that are missing, differ from their sources, or belong to no notebook, and chapters
    whose translation is not current."""
    expected = expected_files()
    problems = [str(p.relative_to(ROOT)) for p, text in expected.items()
                if not p.is_file() or p.read_text(encoding="utf-8") != text]
    untranslated = untranslated_chapters()
    problems += [f"dist/zh/{stem}.ipynb: {why}; see python tools/i18n.py status"
                 for stem, why in untranslated.items()]
    present = {p for edition in EDITIONS for p in (DIST / edition).glob("*.ipynb")}
    problems += [str(p.relative_to(ROOT)) + " (no such chapter)" for p in sorted(present - set(expected))
                 if p.stem not in untranslated]
    return problems


def write_all() -> list[Path]:
    files = expected_files()
    for edition in EDITIONS:
        folder = DIST / edition
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.ipynb"):
            if old not in files:
                old.unlink()
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return sorted(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report bundles that are out of date")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        print("\n".join(stale) if stale else "bundles are up to date")
        sys.exit(1 if stale else 0)
    for path in write_all():
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size / 1e3:.0f} kB")
    untranslated = untranslated_chapters()
    for stem, why in untranslated.items():
        print(f"no Chinese edition of {stem}: {why}; see python tools/i18n.py status", file=sys.stderr)
    sys.exit(1 if untranslated else 0)


if __name__ == "__main__":
    main()
