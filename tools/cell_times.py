"""How long each cell of a chapter took in its committed full-mode run (for the teaching guide).

``make execute`` records when each cell started and finished (``metadata.execution``); the
committed notebooks were run on the project's 2-core CPU. ``python tools/cell_times.py 04_cnn``
prints every code cell that took at least a second, with its first line, and the total;
``--all`` prints every code cell.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def cell_seconds(notebook: dict) -> list[tuple[int, str, float | None]]:
    """(index in the notebook, cell id, seconds) for every code cell; None where not recorded."""
    result = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        execution = cell.get("metadata", {}).get("execution", {})
        start, end = execution.get("iopub.execute_input"), execution.get("shell.execute_reply")
        seconds = (_time(end) - _time(start)).total_seconds() if start and end else None
        result.append((index, cell.get("id", ""), seconds))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapter", help="e.g. 04_cnn")
    parser.add_argument("--all", action="store_true", help="every code cell, not only the slow ones")
    args = parser.parse_args(argv)
    path = ROOT / "notebooks" / f"{args.chapter.removesuffix('.ipynb')}.ipynb"
    notebook = json.loads(path.read_text(encoding="utf-8"))
    times = cell_seconds(notebook)
    print(f"{path.name}: code cells of the committed full-mode run (2-core CPU)")
    print(f"{'cell':>5} {'id':<10} {'seconds':>8}  first line")
    for index, cell_id, seconds in times:
        if args.all or (seconds or 0) >= 1:
            first = next((line for line in notebook["cells"][index]["source"] if line.strip()), "").rstrip()
            shown = "n/a" if seconds is None else f"{seconds:.1f}"
            print(f"{index:>5} {cell_id:<10} {shown:>8}  {first[:70]}")
    total = sum(s for _, _, s in times if s)
    print(f"total: {total:.0f} s over {len(times)} code cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
