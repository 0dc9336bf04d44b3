"""Widgets as pictures (``tools/static_outputs.py``) for the slides and the website: a widget's
output becomes the picture and text it showed at the end of the committed run."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import static_outputs  # noqa: E402

VIEW = static_outputs.VIEW


def _chapter(name):
    return json.loads((ROOT / "notebooks" / name).read_text(encoding="utf-8"))


def test_every_widget_output_of_every_chapter_becomes_static():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        views = sum(VIEW in o.get("data", {}) for c in notebook["cells"] for o in c.get("outputs", []))
        static = static_outputs.with_widget_snapshots(notebook)
        left = [o for c in static["cells"] for o in c.get("outputs", []) if VIEW in o.get("data", {})]
        assert views and not left, path.name
        assert "widgets" not in static["metadata"]
        notes = sum("course-widget-note" in o.get("data", {}).get("text/html", "")
                    for c in static["cells"] for o in c.get("outputs", []))
        assert notes >= 1, f"{path.name}: no widget picture with its note"


def test_explorer_becomes_its_picture_status_and_a_note_and_a_progress_bar_its_text():
    notebook = _chapter("01_linear_regression.ipynb")
    state = notebook["metadata"]["widgets"][static_outputs.STATE]["state"]
    explorer = next(o["data"][VIEW]["model_id"] for c in notebook["cells"] for o in c.get("outputs", [])
                    if VIEW in o.get("data", {}) and "learning rate" in "".join(o["data"]["text/plain"]))
    outputs = static_outputs.snapshot_outputs(state, explorer)
    assert outputs[0]["data"]["image/png"].startswith("iVBORw0KGgo")  # a PNG, base64
    status = outputs[-1]["data"]["text/html"]
    assert "lr=0.03" in status and static_outputs.PLAY_NOTE in status
    bar = next(o["data"][VIEW]["model_id"] for c in notebook["cells"] for o in c.get("outputs", [])
               if VIEW in o.get("data", {}) and "batch/s" in "".join(o["data"]["text/plain"]))
    (line,) = static_outputs.snapshot_outputs(state, bar)
    assert line["output_type"] == "stream" and line["text"] == "progress bar: 1000/1000\n"


def test_a_widget_without_saved_state_is_dropped_not_left_as_a_repr():
    notebook = {"metadata": {}, "cells": [{"cell_type": "code", "source": "w", "outputs": [
        {"output_type": "display_data", "data": {VIEW: {"model_id": "gone"}, "text/plain": "VBox(...)"}}]}]}
    assert static_outputs.with_widget_snapshots(notebook)["cells"][0]["outputs"] == []
