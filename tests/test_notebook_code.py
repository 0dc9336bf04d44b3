"""The notebook loader and its checks, on small synthetic notebooks written to tmp_path."""

import json
import sys
import types

import pytest

from notebook_code import (
    NOTEBOOK_DIR,
    NotebookLoadError,
    code_cells,
    data_globals,
    find_calls,
    is_constant_name,
    load_notebook,
)


def write_notebook(directory, name, *cells):
    """A notebook of the given code cells (each a string), with a markdown cell in front."""
    notebook = {
        "cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Title\n", "x = 1 / 0\n"]}]
        + [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": source.splitlines(keepends=True)} for source in cells],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }
    (directory / f"{name}.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    return directory / f"{name}.ipynb"


def test_only_imports_definitions_and_constants_run(tmp_path):
    write_notebook(tmp_path, "nb", """\
import math
from functools import reduce as fold
raise RuntimeError("a statement that is not kept must not run")
""", """\
data = [1.0, 2.0]
X = 3
W1, NUM = 1, 2
NUM_STEPS = 35
PRESETS = {"small": NUM_STEPS // 5, "pi": round(math.pi, 2)}
LOW_LR: float = 0.01
SIZE_A, (SIZE_B, *MORE_SIZES) = 1, (2, 3, 4)
print("not run")


def double(x):
    return 2 * x


class Model:
    scale = double(NUM_STEPS)


def double(x):  # a later definition replaces the earlier one, as in the notebook
    return x + x
""")
    nb = load_notebook("nb", tmp_path)
    assert isinstance(nb, types.ModuleType)
    assert nb.NUM_STEPS == 35 and nb.PRESETS == {"small": 7, "pi": 3.14} and nb.LOW_LR == 0.01
    assert (nb.SIZE_A, nb.SIZE_B, nb.MORE_SIZES) == (1, 2, [3, 4])
    assert nb.Model.scale == 70 and nb.double(2) == 4 and nb.fold(max, [1, 3]) == 3
    for name in ("data", "X", "W1", "NUM"):  # data, math notation, and a tuple with a non-constant
        assert not hasattr(nb, name)
    assert nb.double.__code__.co_filename == "nb.ipynb[code cell 1]"


def test_the_module_is_registered_cached_and_is_the_functions_globals(tmp_path, monkeypatch):
    write_notebook(tmp_path, "nb", "SCALE = 2\n\n\ndef scaled(x):\n    return SCALE * x\n")
    nb = load_notebook("nb", tmp_path)
    assert load_notebook("nb.ipynb", str(tmp_path)) is nb
    assert sys.modules[nb.__name__] is nb and nb.__name__.startswith("notebook_nb_")
    assert nb.scaled.__globals__ is vars(nb) and nb.scaled.__module__ == nb.__name__
    monkeypatch.setattr(nb, "SCALE", 10)
    assert nb.scaled(3) == 30
    monkeypatch.undo()
    assert nb.scaled(3) == 6


def test_the_course_notebooks_load_from_the_default_directory():
    ch1 = load_notebook("01_linear_regression")
    assert ch1 is load_notebook("01_linear_regression.ipynb", NOTEBOOK_DIR)
    assert ch1.__name__ == "notebook_01_linear_regression" and callable(ch1.huber)


def test_a_constant_that_needs_data_names_notebook_cell_and_constant(tmp_path):
    write_notebook(tmp_path, "bad", "import math\n", "data = [1, 2]\nSIZE = len(data)\n")
    with pytest.raises(NotebookLoadError, match=r"bad\.ipynb, code cell 1, line 2: the constant SIZE .*"
                                                r"NameError: name 'data' is not defined"):
        load_notebook("bad", tmp_path)
    assert not any(name.startswith("notebook_bad_") for name in sys.modules)


def test_a_constant_may_not_use_a_function_defined_after_it(tmp_path):
    write_notebook(tmp_path, "late", "TOTAL = twice(2)\n", "def twice(x):\n    return 2 * x\n")
    with pytest.raises(NotebookLoadError, match="code cell 0, line 1: the constant TOTAL"):
        load_notebook("late", tmp_path)


def test_magics_and_shell_escapes_are_blanked_keeping_line_numbers(tmp_path):
    source = "%matplotlib inline\n!pip list\n  %time 1\ndef f():\n    return 1"
    path = write_notebook(tmp_path, "magic", source)
    assert code_cells(path) == ["\n\n\ndef f():\n    return 1"]
    assert load_notebook("magic", tmp_path).f.__code__.co_firstlineno == 4


def test_annotations_are_not_evaluated(tmp_path):
    write_notebook(tmp_path, "hints", "def f(x: undefined_data) -> None:\n    return x\n")
    assert load_notebook("hints", tmp_path).f(1) == 1


def test_a_missing_notebook_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="No notebook nope.ipynb"):
        load_notebook("nope", tmp_path)


@pytest.mark.parametrize("name, constant", [
    ("NUM_STEPS", True), ("PRESETS", True), ("LR", True), ("SGD", True), ("_PRIVATE_SIZE", True),
    ("X", False), ("W1", False), ("H0", False), ("P80", False), ("num_steps", False), ("Model", False),
    ("NUM_steps", False)])
def test_constant_names(name, constant):
    assert is_constant_name(name) is constant


DETECTOR_NOTEBOOK = ["""\
import math
import torch as th
from functools import reduce

data = [1.0, 2.0]
lr = 0.1
NUM_STEPS = 3
""", """\
def helper(x):
    return x


def allowed(x, y=1, *args, **kwargs):
    z = x + y + len(args) + len(kwargs)
    model = Model(1)
    return th.zeros(NUM_STEPS) + helper(z) + math.sqrt(abs(z)) + reduce(max, [z]) + model.ok(z)


def reads_data():
    return sum(data)


class Model:
    SCALE = 2

    def __init__(self, w):
        self.w = w

    def forward(self, x):
        return self.w * x * lr

    def ok(self, x):
        return helper(x) + NUM_STEPS + Model.SCALE + super().__hash__() * 0

    class Inner:
        def method(self):
            return data
""", """\
def in_lambda():
    return (lambda: lr)()


def in_comprehension(xs):
    return [x * lr for x in xs]


def in_generator(xs):
    return sum(x * lr for x in xs)


def in_nested_function():
    def inner():
        return data

    return inner


def closure_is_fine(a):
    def inner():
        return a

    return inner


def in_local_class():
    class Local:
        first = 1
        second = first + len(data)

    return Local


def writes_global():
    global counter
    counter += 1


SCALED = lambda x: x * lr
"""]


def test_the_detector_finds_functions_that_read_notebook_data(tmp_path):
    write_notebook(tmp_path, "detector", *DETECTOR_NOTEBOOK)
    found = {(read.function, read.cell): read.names for read in data_globals("detector", tmp_path)}
    assert found == {
        ("reads_data", 1): ("data",),
        ("Model.forward", 1): ("lr",),
        ("Model.Inner.method", 1): ("data",),
        ("in_lambda", 2): ("lr",),
        ("in_comprehension", 2): ("lr",),
        ("in_generator", 2): ("lr",),
        ("in_nested_function", 2): ("data",),
        ("in_local_class", 2): ("data",),
        ("writes_global", 2): ("counter",),
        ("<lambda>", 2): ("lr",),
    }


def test_the_detector_checks_a_replaced_definition_too(tmp_path):
    write_notebook(tmp_path, "redefined", "data = 1\n\n\ndef f():\n    return data\n",
                   "def f(data):\n    return data\n")
    assert data_globals("redefined", tmp_path) == [("f", 0, ("data",))]


def test_find_calls_sees_calls_not_comments_or_strings(tmp_path):
    write_notebook(tmp_path, "threads", """\
import torch
from torch import set_num_interop_threads
# torch.set_num_threads(1) would pin one thread
print("torch.set_num_threads(1)")
torch.set_num_threads(1)
""", "%time x = 1\nif True:\n    set_num_interop_threads(2)\n")
    calls = find_calls("threads", ["set_num_threads", "set_num_interop_threads"], tmp_path)
    assert calls == [(0, 5, "torch.set_num_threads(1)"), (1, 3, "set_num_interop_threads(2)")]


def test_a_failing_import_keeps_its_own_error_and_names_the_cell(tmp_path):
    write_notebook(tmp_path, "imports", "import math\n", "import no_such_module_here\n")
    with pytest.raises(ModuleNotFoundError) as error:
        load_notebook("imports", tmp_path)
    assert "imports.ipynb[code cell 1]" in {entry.path for entry in error.traceback}
