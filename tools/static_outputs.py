"""Widgets as pictures, for the pages and slides built from the committed notebooks.

A widget's output in a notebook is only a reference to a model (``widget-view+json``) and a text
repr such as ``VBox(children=(...))``; outside a live kernel nothing can draw it. The committed
notebooks also save the widgets' last state in their metadata, including every ``Image`` widget's
picture and every ``HTML`` widget's text. :func:`with_widget_snapshots` replaces each widget output
by what the learner saw at the end of the committed run: the picture(s), the status text, and a
line that says where to play with it. A progress bar becomes its final text.
"""

from __future__ import annotations

import base64
import copy
import html
import re

VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"
PLAY_NOTE = (
    "Interactive in the notebook: open it in JupyterLab (<code>make lab</code>), Colab or Kaggle "
    "and move the controls. Shown here: the picture from the committed run."
)


def _state(notebook: dict) -> dict:
    return notebook.get("metadata", {}).get("widgets", {}).get(STATE, {}).get("state", {})


def _children(model: dict) -> list[str]:
    children = model.get("state", {}).get("children", [])
    return [c.removeprefix("IPY_MODEL_") for c in children if isinstance(c, str)]


def _walk(state: dict, model_id: str, seen: set | None = None) -> list[tuple[str, dict]]:
    """The models under ``model_id``, depth first, in display order."""
    seen = set() if seen is None else seen
    if model_id in seen or model_id not in state:
        return []
    seen.add(model_id)
    model = state[model_id]
    found = [(model_id, model)]
    for child in _children(model):
        found += _walk(state, child, seen)
    return found


def _image(model: dict) -> tuple[str, str] | None:
    """(mime type, base64 data) of an Image widget's saved picture."""
    fmt = model["state"].get("format", "png")
    for buffer in model.get("buffers", []):
        if buffer.get("path") == ["value"]:
            data = buffer["data"]
            if buffer.get("encoding") != "base64":
                data = base64.b64encode(bytes.fromhex(data)).decode("ascii")
            mime = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "svg+xml": "image/svg+xml"}
            return mime.get(fmt, "image/png"), data
    return None


def _text(html_value: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", html_value)).strip()


def snapshot_outputs(state: dict, model_id: str) -> list[dict]:
    """The static outputs that stand for the widget ``model_id``."""
    models = _walk(state, model_id)
    images = [image for _, m in models if m.get("model_name") == "ImageModel" and (image := _image(m))]
    texts = [
        m["state"].get("value", "") for _, m in models if m.get("model_name") in ("HTMLModel", "LabelModel")
    ]
    progress = [m for _, m in models if m.get("model_name") == "FloatProgressModel"]
    if progress and not images:
        # a progress bar: its bar's final value (the text beside it may have been saved mid-update)
        bar = progress[0]["state"]
        value, total = bar.get("value", 0), bar.get("max", 0)
        line = f"progress bar: {value:g}/{total:g}" + (" (stopped early)" if value < total else "")
        return [{"output_type": "stream", "name": "stdout", "text": line + "\n"}]
    outputs = [{"output_type": "display_data", "metadata": {}, "data": {mime: data}} for mime, data in images]
    status = "".join(f"<div>{t}</div>" for t in texts if _text(t))
    note = f'<p class="course-widget-note"><em>{PLAY_NOTE}</em></p>'
    outputs.append({"output_type": "display_data", "metadata": {}, "data": {"text/html": status + note}})
    return outputs


def with_widget_snapshots(notebook: dict) -> dict:
    """A copy of ``notebook`` whose widget outputs are static (pictures and text), and without the
    widget state, which only a live kernel could use."""
    notebook = copy.deepcopy(notebook)
    state = _state(notebook)
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(VIEW)
            if view is None:
                outputs.append(output)
            elif view.get("model_id") in state:
                outputs += snapshot_outputs(state, view["model_id"])
        cell["outputs"] = outputs
    notebook.get("metadata", {}).pop("widgets", None)
    return notebook
