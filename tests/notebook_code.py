"""Import the from-scratch code of a chapter notebook into a test, without running the notebook.

A chapter's from-scratch functions and classes live in its notebook, where the learner reads them.
To unit-test *that* code (not a copy that could drift from it), :func:`load_notebook` collects,
from the notebook's code cells and in order, every top-level

* ``import`` and ``from ... import``,
* ``def`` and ``class`` (decorators and default values included), and
* assignment whose targets are all constant names (:func:`is_constant_name`: UPPER_CASE with at
  least two letters, such as ``NUM_STEPS = 35`` or ``PRESETS = {...}``; a single capital with
  digits, ``X``, ``W1``, ``H0``, is a tensor in the course's notation, not a constant),

and executes only those, in a real module whose ``__dict__`` is the functions' ``__globals__``.
Nothing else runs: no training, no plots, no ``helpers.setup()``. A later definition of the same
name replaces an earlier one, as it would in the notebook. A constant may use only what was kept
before it (imports, functions, classes, earlier constants); if computing it fails,
:class:`NotebookLoadError` names the notebook, the cell and the constant. IPython magics and shell
escapes (lines starting with ``%`` or ``!``) are blanked out, keeping line numbers. Annotations are
not evaluated (as under ``from __future__ import annotations``), so a type hint never stops a load.

    ch1 = load_notebook("01_linear_regression")
    ch1.huber(y_hat, y, delta=1.0)

A notebook is loaded once per test session (the module is cached and registered in
``sys.modules`` as ``notebook_<stem>``), so every test module that loads it shares the same module.
A test that replaces something the notebook's functions see must do it with pytest's
``monkeypatch`` (``monkeypatch.setattr(ch5, "NUM_STEPS", 5)``), which undoes the change when the
test ends; assigning ``ch5.NUM_STEPS = 5`` would leak into every later test.

Functions that read notebook globals other than the kept names (a data tensor, a learning rate, a
trained model) cannot be tested this way; pass such values as arguments instead, which is the
better style anyway. :func:`data_globals` finds such reads, and ``tests/test_project.py`` fails on
them.
"""

import __future__

import ast
import builtins
import dis
import functools
import hashlib
import inspect
import json
import re
import sys
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_CONSTANT = re.compile(r"_*[A-Z][A-Z0-9_]*")
# Annotations stay unevaluated, as under `from __future__ import annotations`.
_BASE_FLAGS = __future__.annotations.compiler_flag
# Opcodes that read a name from the globals (LOAD_NAME: module and class bodies; the last: 3.12+).
_GLOBAL_LOADS = {"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"}


class NotebookLoadError(Exception):
    """A notebook's constant could not be computed from the code kept before it."""


class DataRead(NamedTuple):
    """A notebook function (or method, ``Class.method``) that reads globals the loader does not keep."""

    function: str
    cell: int  # index among the notebook's code cells, as in "05_rnn.ipynb[code cell 27]"
    names: tuple[str, ...]


class Call(NamedTuple):
    """A call found in a notebook's code: where it is and its source text."""

    cell: int
    line: int
    source: str


def is_constant_name(name: str) -> bool:
    """Whether ``name`` reads as a constant: UPPER_CASE (digits and ``_`` allowed), two letters or more."""
    return bool(_CONSTANT.fullmatch(name)) and sum(char.isalpha() for char in name) >= 2


def code_cells(path: str | Path) -> list[str]:
    """The source of every code cell of a notebook, magics and shell escapes blanked out."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    sources = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        lines = "".join(cell["source"]).splitlines()
        # IPython magics and shell escapes are not Python; blank them out, keeping line numbers.
        sources.append("\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines))
    return sources


def _constant_targets(node: ast.stmt) -> list[str] | None:
    """The names a constant assignment binds, or None when ``node`` is not one."""
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets = [node.target]
    else:
        return None
    names = []
    for target in targets:
        for part in ast.walk(target):
            if isinstance(part, ast.Name):
                names.append(part.id)
            elif not isinstance(part, (ast.Tuple, ast.List, ast.Starred, ast.expr_context)):
                return None  # an attribute or subscript target modifies something: not a constant
    return names if names and all(is_constant_name(name) for name in names) else None


def _is_kept(node: ast.stmt) -> bool:
    return isinstance(node, _DEFINITIONS) or _constant_targets(node) is not None


def _notebook_path(name: str, notebook_dir: str | Path | None) -> Path:
    directory = Path(NOTEBOOK_DIR if notebook_dir is None else notebook_dir)
    path = (directory / (name if name.endswith(".ipynb") else f"{name}.ipynb")).resolve()
    if not path.exists():
        raise FileNotFoundError(f"No notebook {path.name} in {directory}.")
    return path


def _kept_code(path: Path) -> Iterator[tuple[int, ast.stmt, types.CodeType]]:
    """(code cell index, statement, its code) for every kept statement of the notebook, in order."""
    flags = _BASE_FLAGS
    for index, source in enumerate(code_cells(path)):
        filename = f"{path.name}[code cell {index}]"
        for node in ast.parse(source, filename=filename).body:
            if not _is_kept(node):
                continue
            module = ast.Module(body=[node], type_ignores=[])
            yield index, node, compile(module, filename, "exec", flags=flags, dont_inherit=True)
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                for alias in node.names:  # a future import affects the cells after it, as in IPython
                    flags |= getattr(__future__, alias.name).compiler_flag


def _module_name(path: Path) -> str:
    name = "notebook_" + re.sub(r"\W", "_", path.stem)
    if path.parent != Path(NOTEBOOK_DIR).resolve():  # another directory (a unit test's tmp_path)
        name += "_" + hashlib.sha1(str(path.parent).encode()).hexdigest()[:10]
    return name


def load_notebook(name: str, notebook_dir: str | Path | None = None) -> types.ModuleType:
    """The imports, functions, classes and constants of ``<notebook_dir>/<name>.ipynb`` as a module.

    ``name`` may end in ``.ipynb``; ``notebook_dir`` defaults to the course's ``notebooks/``
    (:data:`NOTEBOOK_DIR`). The result is cached: the same path gives the same module all session.
    """
    return _load(_notebook_path(name, notebook_dir))


@functools.cache
def _load(path: Path) -> types.ModuleType:
    module = types.ModuleType(_module_name(path), f"The kept code of {path.name} (tests/notebook_code.py).")
    module.__file__ = str(path)
    # Registered before running, as an import would, so that pickle, dataclasses and
    # typing.get_type_hints can find the module of the notebook's classes and functions.
    sys.modules[module.__name__] = module
    try:
        for index, node, code in _kept_code(path):
            try:
                exec(code, module.__dict__)
            except Exception as error:
                constants = _constant_targets(node)
                if constants is None:  # an import or definition: its traceback names the cell
                    raise
                raise NotebookLoadError(
                    f"{path.name}, code cell {index}, line {node.lineno}: the constant "
                    f"{', '.join(constants)} could not be computed "
                    f"({type(error).__name__}: {error}). A constant may use only imports, functions, "
                    "classes and constants defined before it; if it is data, give it a lower-case name "
                    "and pass it to the functions that need it as an argument."
                ) from error
    except BaseException:
        del sys.modules[module.__name__]
        raise
    return module


def _functions(code: types.CodeType, prefix: str = "") -> Iterator[tuple[str, types.CodeType]]:
    """(qualified name, code) of each function and method that module or class-body ``code`` defines."""
    for const in code.co_consts:
        if not isinstance(const, types.CodeType):
            continue
        if const.co_flags & inspect.CO_OPTIMIZED:  # a function, lambda or comprehension
            yield prefix + const.co_name, const
        else:  # a class body, run when the class is defined; its methods are functions
            yield from _functions(const, f"{prefix}{const.co_name}.")


def _global_reads(code: types.CodeType) -> set[str]:
    """Global names read by ``code`` and by every code object nested in it (lambdas, comprehensions,
    inner functions and classes). In a class body a name it has assigned is a class attribute."""
    instructions = list(dis.get_instructions(code))
    loaded = {i.argval for i in instructions if i.opname in _GLOBAL_LOADS}
    stored = {i.argval for i in instructions if i.opname == "STORE_NAME"}
    reads = loaded - stored
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            reads |= _global_reads(const)
    return reads


def data_globals(name: str, notebook_dir: str | Path | None = None) -> list[DataRead]:
    """Every function and method of the notebook that reads a global the loader does not keep.

    Each function's code, with the lambdas, comprehensions, inner functions and classes inside it,
    is disassembled for the global names it reads (``LOAD_GLOBAL``; ``LOAD_NAME`` in a class body
    run by a function). Names that the loaded module defines (imports, functions, classes, constants)
    and builtins are fine; what remains is notebook data, which the function should take as an
    argument. Code that runs when the notebook is loaded (decorators, default values, constants,
    class bodies at top level) is not reported: reading data there already fails the load.
    A definition replaced by a later one is checked too: the notebook runs both.
    """
    path = _notebook_path(name, notebook_dir)
    known = set(vars(_load(path))) | set(dir(builtins))
    found: dict[tuple[str, int], set[str]] = {}
    for index, _, code in _kept_code(path):
        for function, function_code in _functions(code):
            unknown = _global_reads(function_code) - known
            if unknown:
                found.setdefault((function, index), set()).update(unknown)
    return [DataRead(function, index, tuple(sorted(names))) for (function, index), names in found.items()]


def find_calls(name: str, functions: Iterable[str], notebook_dir: str | Path | None = None) -> list[Call]:
    """Calls, anywhere in the notebook's code cells, of a function named one of ``functions``.

    Matches ``f(...)`` and ``anything.f(...)`` (``torch.set_num_threads(1)``), not comments or strings.
    """
    wanted = set(functions)
    calls = []
    for index, source in enumerate(code_cells(_notebook_path(name, notebook_dir))):
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in wanted:
                calls.append(Call(index, node.lineno, ast.get_source_segment(source, node) or called))
    return sorted(calls)
