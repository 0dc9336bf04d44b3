"""The one-file Colab/Kaggle bundles (``make bundle``), English and Chinese: up to date,
self-contained, runnable elsewhere.

The execution test runs a bundled chapter the way Colab would: in a temporary folder outside the
repository, with the repository's ``helpers`` made unimportable (a stub that raises comes first on
``PYTHONPATH``, so only the copy embedded in the bundle can be used), and with no ``data/`` folder:
the data arrive through the download path, from a local copy of ``data/`` standing in for the
network (``COURSE_DATA_MIRROR``).
"""

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import bundle  # noqa: E402

NOTEBOOKS = bundle._notebook_paths()


def _load(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _uses_data(path):
    """True when the chapter imports the data loaders (and so reads files from data/)."""
    code = [c for c in _load(path)["cells"] if c["cell_type"] == "code"]
    return any("helpers.datasets" in bundle._imports_of(bundle._code_source(c)) for c in code)


def test_committed_bundles_are_up_to_date():
    stale = bundle.stale_files()
    assert not stale, "bundles are out of date; run `make bundle` and commit dist/:\n" + "\n".join(stale)


def test_payload_holds_the_helpers_package_and_the_data_manifest():
    payload, version = bundle.build_payload()
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(payload))) as archive:
        names = set(archive.namelist())
        assert archive.read("helpers/training.py") == (ROOT / "helpers/training.py").read_bytes()
    assert names == {f"helpers/{p.name}" for p in (ROOT / "helpers").glob("*.py")} | {"data/MANIFEST.sha256"}
    assert bundle.build_payload() == (payload, version), "bundles must be reproducible"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_bundle_is_the_chapter_plus_one_setup_cell(path):
    chapter, colab = _load(path), _load(bundle.DIST / "colab" / path.name)
    student = _load(bundle.DIST / "student" / path.name)
    setup = [c for c in colab["cells"] if "course-setup" in c["metadata"].get("tags", [])]
    assert len(setup) == 1
    first_code = next(c for c in colab["cells"] if c["cell_type"] == "code")
    assert first_code is setup[0], "the set-up cell must run before the chapter's code"
    compile("".join(setup[0]["source"]).replace("#@title", "# title"), "setup", "exec")
    sources = [c["source"] for c in colab["cells"] if c is not setup[0]]
    assert sources == [c["source"] for c in chapter["cells"]]
    assert all(not c.get("outputs") for c in colab["cells"] if c["cell_type"] == "code")
    dropped = {"solution", "teacher-notes"}
    solutions = [c for c in chapter["cells"] if dropped & set(c["metadata"].get("tags", []))]
    assert len(student["cells"]) == len(colab["cells"]) - len(solutions)
    assert not any(dropped & set(c["metadata"].get("tags", [])) for c in student["cells"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chinese_bundles_are_the_chinese_edition_plus_one_setup_cell(path):
    chinese = _load(bundle.DIST / "zh" / path.name)
    for edition, english_edition in (("colab-zh", "colab"), ("student-zh", "student")):
        bundled = _load(bundle.DIST / edition / path.name)
        english = _load(bundle.DIST / english_edition / path.name)
        assert [c["cell_type"] for c in bundled["cells"]] == [c["cell_type"] for c in english["cells"]]
        for zh, en in zip(bundled["cells"], english["cells"], strict=True):
            if zh["cell_type"] == "code":
                assert zh == en, f"{edition}/{path.name}: code differs from {english_edition}/"
    markdown = [c["source"] for c in chinese["cells"] if c["cell_type"] == "markdown"]
    colab_zh = _load(bundle.DIST / "colab-zh" / path.name)
    assert [c["source"] for c in colab_zh["cells"] if c["cell_type"] == "markdown"] == markdown


def test_requirements_come_from_the_imports_of_the_chapter_and_its_helpers():
    chapter1 = bundle.requirements(_load(NOTEBOOKS[0]))
    assert {"torch", "ipywidgets", "matplotlib"} <= set(chapter1)
    assert chapter1["ipywidgets"].startswith("ipywidgets>=8")
    assert "sacrebleu" not in chapter1 and "PIL" not in chapter1
    using_data = {"cells": [{"cell_type": "code", "source": ["from helpers import datasets\n"]}]}
    assert bundle.requirements(using_data)["PIL"].startswith("pillow")


def _chapters_to_execute():
    """(edition, chapter): the first chapter in English and in Chinese, and the first that reads data."""
    first_with_data = next((p for p in NOTEBOOKS if _uses_data(p)), None)
    return ([("colab", NOTEBOOKS[0]), ("colab-zh", NOTEBOOKS[0])]
            + ([("colab", first_with_data)] if first_with_data else []))


@pytest.mark.parametrize(("edition", "path"), _chapters_to_execute(), ids=lambda x: getattr(x, "name", x))
def test_bundled_chapter_runs_outside_the_repository(edition, path, tmp_path):
    stub = tmp_path / "stub" / "helpers"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('the repository helpers must not be used here')\n")
    mirror = tmp_path / "mirror"
    shutil.copytree(ROOT / "data", mirror)  # stands in for the network
    run_dir, temp = tmp_path / "content", tmp_path / "tmp"
    run_dir.mkdir()
    temp.mkdir()
    shutil.copy(bundle.DIST / edition / path.name, run_dir / path.name)
    env = {key: value for key, value in os.environ.items() if not key.startswith("COURSE_")}
    env.update(PYTHONPATH=str(stub.parent), TMPDIR=str(temp), COURSE_FAST="1", COURSE_DATA_MIRROR=str(mirror))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
         "--nbval-cell-timeout=600", "-q", path.name],
        cwd=run_dir, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    (unpacked,) = temp.glob("dl-course-*")
    fetched = [p for p in (unpacked / "data").rglob("*") if p.is_file() and p.name != "MANIFEST.sha256"]
    if _uses_data(path):
        assert fetched, "the chapter's data should have come through the download path"
    for file in fetched:
        assert file.read_bytes() == (ROOT / "data" / file.relative_to(unpacked / "data")).read_bytes()
