"""Project-level checks: lint, packaging metadata, and the anatomy of every chapter notebook.

The notebook checks run on whatever is in notebooks/, so a new chapter is covered automatically.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from notebook_code import data_globals, find_calls

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11+")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*.ipynb"))
CONDA_NAMES = {"torch": "pytorch"}


def test_ruff_is_clean_on_helpers_tests_notebooks_and_tools():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "helpers", "tests", "notebooks", "tools"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].lower()


def test_dependencies_are_ranges_not_pins():
    project = _pyproject()["project"]
    requirements = project["dependencies"] + [r for g in project["optional-dependencies"].values() for r in g]
    pinned = [r for r in requirements if "==" in r]
    assert not pinned, f"exact pins break on Colab/Kaggle: {pinned}"
    assert all(re.search(r">=", r) for r in project["dependencies"])


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = _pyproject()["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    wanted = {CONDA_NAMES.get(_name(r), _name(r)) for r in project["dependencies"] + extras}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    pip_only = {_name(d) for group in env["dependencies"] if isinstance(group, dict)
                for d in group.get("pip", []) if not d.startswith("-")}
    assert conda | pip_only == wanted


def test_there_is_at_least_one_chapter():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell):
    return "".join(cell["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_the_chapter_anatomy(path):
    cells = _cells(path)
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).startswith("# ")
    intro = _source(cells[0]).lower()
    assert "you will learn" in intro and "prerequisites" in intro
    first_code = next(c for c in cells if c["cell_type"] == "code")
    assert "helpers.setup(" in _source(first_code), "the first code cell must call helpers.setup()"
    markdown = "\n".join(_source(c) for c in cells if c["cell_type"] == "markdown")
    for heading in ("## Try it", "## Exercises", "## Summary", "Glossary"):
        assert heading in markdown, f"missing '{heading}'"
    code = "\n".join(_source(c) for c in cells if c["cell_type"] == "code")
    assert "assert " in code, "every chapter checks its from-scratch code with assertions"
    assert "# NBVAL_CHECK_OUTPUT" in code
    assert "Explorer(" in code or "GANLab(" in code, "every chapter has at least one widget"
    assert any("solution" in c.get("metadata", {}).get("tags", []) for c in cells)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_has_no_control_characters(path):
    """A build script's non-raw string turns LaTeX's \\frac and \\text into a form feed and a tab
    (chapter 9's SSD loss rendered broken that way): no markdown cell may contain one."""
    for cell in _cells(path):
        bad = sorted({repr(ch) for ch in _source(cell) if ord(ch) < 32 and ch != "\n"})
        assert cell["cell_type"] != "markdown" or not bad, f"cell {cell.get('id')}: control characters {bad}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_with_clean_outputs_from_one_run(path):
    cells = [c for c in _cells(path) if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in cells]
    assert None not in counts, "some cells were not run: restart the kernel and run all"
    assert counts == list(range(1, len(cells) + 1)), "cells were run out of order"
    for cell in cells:
        for output in cell["outputs"]:
            assert output["output_type"] != "error", _source(cell)[:80]
            assert output.get("name") != "stderr" or "Warning" not in "".join(output.get("text", ""))
    text = path.read_text(encoding="utf-8")
    for machine_path in (str(ROOT), str(Path.home()), "/tmp/"):
        assert machine_path not in text, f"{path.name} contains the machine path {machine_path}"
    assert "mode full" in text, "commit notebooks with the outputs of a full-mode run"
    assert path.stat().st_size < 3_000_000, "keep notebooks small (lower figure dpi, fewer images)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_functions_take_their_data_as_arguments(path):
    # A function that reads notebook data (a tensor, a vocabulary, a trained model, a size chosen
    # in some cell) cannot be called from a test, and its reader cannot see what it depends on.
    reads = data_globals(path.name, path.parent)
    lines = [f"{path.stem}: {r.function} -> {', '.join(r.names)}   (code cell {r.cell})" for r in reads]
    if reads:
        pytest.fail("these notebook functions read notebook globals; make each name an argument (or, "
                    "for a fixed setting, an UPPER_CASE constant defined before the function):\n"
                    + "\n".join(lines), pytrace=False)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_leave_the_thread_count_to_helpers_setup(path):
    calls = find_calls(path.name, ["set_num_threads", "set_num_interop_threads"], path.parent)
    lines = [f"{path.stem}: code cell {c.cell}, line {c.line}: {c.source}" for c in calls]
    if calls:
        pytest.fail("helpers.setup() chooses the number of torch threads; remove:\n" + "\n".join(lines),
                    pytrace=False)
