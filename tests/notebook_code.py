"""Import the from-scratch code of a chapter notebook into a test, without running the notebook.

A chapter's from-scratch functions and classes live in its notebook, where the learner reads them.
To unit-test *that* code (not a copy that could drift from it), :func:`load_notebook` collects
every top-level ``import``, ``def`` and ``class`` from the notebook's code cells, in order, and
executes only those. Nothing else runs: no training, no plots, no ``helpers.setup()``. A later
definition of the same name replaces an earlier one, as it would in the notebook.

    ch1 = load_notebook("01_linear_regression")
    ch1.huber(y_hat, y, delta=1.0)

Functions that read notebook globals other than imports, functions and classes (a data tensor, a
learning rate) cannot be tested this way; pass such values as arguments instead, which is the
better style anyway.
"""

from __future__ import annotations

import ast
import functools
import json
from pathlib import Path
from types import SimpleNamespace

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
_KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    sources = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        lines = "".join(cell["source"]).splitlines()
        # IPython magics and shell escapes are not Python; blank them out, keeping line numbers.
        sources.append("\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines))
    return sources


@functools.cache
def load_notebook(name: str) -> SimpleNamespace:
    """The imports, functions and classes of ``notebooks/<name>.ipynb`` as a namespace."""
    path = NOTEBOOK_DIR / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not path.exists():
        raise FileNotFoundError(f"No notebook {path.name} in {NOTEBOOK_DIR}.")
    namespace: dict = {"__name__": f"notebook_{path.stem}"}
    for index, source in enumerate(_code_cells(path)):
        tree = ast.parse(source, filename=f"{path.name}[code cell {index}]")
        kept = [node for node in tree.body if isinstance(node, _KEPT)]
        if kept:
            module = ast.Module(body=kept, type_ignores=[])
            exec(compile(module, f"{path.name}[code cell {index}]", "exec"), namespace)
    return SimpleNamespace(**{k: v for k, v in namespace.items() if not k.startswith("__")})
