"""helpers.diagrams: the architecture figures (RNN, GRU, LSTM, seq2seq, Bahdanau, Transformer, norms).

Each figure is built once per test module: it must be a ``Figure`` with its title and the labels a
learner looks for, render to PNG, keep every text inside the figure and apart from every other
text, and show in Jupyter as one PNG. Importing and drawing must not import pyplot.
"""

import io
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from helpers import diagrams

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# function -> (words of its title, labels that must appear among its texts)
EXPECTED = {
    "rnn_unrolled": ("recurrent neural network", [
        r"$\mathbf{H}_0$", r"$\mathbf{X}_{1}$", r"$\mathbf{H}_{4}$", r"$\mathbf{O}_{4}$",
        r"$\mathbf{W}_{hh}$", r"$\mathbf{W}_{xh}$", r"$\mathbf{W}_{hq}$", "unroll",
        r"\mathbf{H}_t = \phi(\mathbf{X}_t\mathbf{W}_{xh} + \mathbf{H}_{t-1}\mathbf{W}_{hh} + \mathbf{b}_h)",
    ]),
    "gru_cell": ("GRU", [
        "reset gate", "update gate", "candidate", r"$\mathbf{H}_{t-1}$", r"$\mathbf{X}_t$", r"$\mathbf{H}_t$",
        r"$\tilde{\mathbf{H}}_t$", r"$1-\mathbf{Z}_t$", r"\mathbf{R}_t = \sigma(",
        r"(1 - \mathbf{Z}_t) \odot ", "elementwise product",
    ]),
    "lstm_cell": ("LSTM", [
        "forget gate", "input gate", "output gate", "candidate", "memory cell", r"$\mathbf{C}_t$",
        r"$\mathbf{C}_{t-1}$", r"$\mathbf{H}_{t-1}$", r"$\mathbf{H}_t$", r"$\tanh$",
        r"\mathbf{C}_t = \mathbf{F}_t \odot \mathbf{C}_{t-1} + \mathbf{I}_t \odot \tilde{\mathbf{C}}_t",
        r"\mathbf{H}_t = \mathbf{O}_t \odot \tanh(\mathbf{C}_t)",
    ]),
    "seq2seq": ("context vector", [
        "Encoder (GRU)", "Decoder (GRU)", "they", "are", "watching", "<eos>", "<bos>", "ils", "regardent",
        r"$\mathbf{c}$", r"$\mathbf{h}_5$", r"$\mathbf{s}_{1}$", "Teacher forcing",
    ]),
    "bahdanau_attention": ("Bahdanau attention", [
        r"query $\mathbf{s}_{t'-1}$", r"keys = values $\mathbf{h}_t$", r"context $\mathbf{c}_{t'}$",
        r"$\mathbf{h}_{1}$", r"$\mathbf{h}_{5}$", r"$\mathbf{s}_{t'}$", r"\alpha_{t',t}", "regardent",
        r"\mathbf{c}_{t'} = \sum_{t=1}^{T} \alpha_{t',t}",
    ]),
    "transformer": ("Transformer", [
        "Masked multi-head attention", "Multi-head attention", "Multi-head cross-attention", "Add & norm",
        "Feed-forward", "N ×", "× N", "Positional\nencoding", "Input embedding", "Output embedding",
        "Linear", "Softmax", "encoder output: keys, values", "queries",
    ]),
    "normalization_axes": ("Batch norm vs layer norm", [
        "Batch norm", "Layer norm", "channel 1", "channel 3", "example 1", "example 4",
        r"per channel ($N \cdot H \cdot W$ values)", r"per example ($C \cdot H \cdot W$ values)",
    ]),
}


@pytest.fixture(scope="module")
def figures():
    return {name: getattr(diagrams, name)() for name in EXPECTED}


def _texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def _rendered_extents(fig):
    """Every text and its extent in pixels, after drawing the figure with the Agg renderer."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(fig)]


def test_every_public_function_is_tested():
    public = {name for name in diagrams.__all__ if name != "Diagram"}
    assert public == set(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_figure_has_its_title_and_labels(figures, name):
    fig = figures[name]
    assert isinstance(fig, Figure) and isinstance(fig, diagrams.Diagram)
    texts = _texts(fig)
    titles = [t.get_text() for t in texts if t.get_gid() == "title"]
    title_words, labels = EXPECTED[name]
    assert len(titles) == 1 and title_words in titles[0], titles
    strings = [t.get_text() for t in texts]
    missing = [label for label in labels if not any(label in s for s in strings)]
    assert not missing, f"{name} lacks {missing}"


@pytest.mark.parametrize("name", EXPECTED)
def test_figure_renders_to_png(figures, name):
    buffer = io.BytesIO()
    FigureCanvasAgg(figures[name]).print_png(buffer)
    assert buffer.getvalue().startswith(PNG_SIGNATURE)
    width, height = figures[name].get_size_inches()
    assert 9 <= width <= 10.2 and height <= 10  # readable on a slide, about 9-10 inches wide


@pytest.mark.parametrize("name", EXPECTED)
def test_no_text_leaves_the_figure(figures, name):
    fig = figures[name]
    extents = _rendered_extents(fig)
    box, tolerance = fig.bbox, 1.0
    outside = [text for text, e in extents if e.x0 < box.x0 - tolerance or e.y0 < box.y0 - tolerance
               or e.x1 > box.x1 + tolerance or e.y1 > box.y1 + tolerance]
    assert not outside, f"{name}: outside the figure: {outside}"


@pytest.mark.parametrize("name", EXPECTED)
def test_no_two_texts_overlap(figures, name):
    extents = _rendered_extents(figures[name])
    overlapping = [(a, b) for i, (a, ea) in enumerate(extents) for b, eb in extents[i + 1:]
                   if ea.overlaps(eb)]
    assert not overlapping, f"{name}: overlapping texts: {overlapping}"


def test_number_of_transformer_sublayers(figures):
    strings = [t.get_text() for t in _texts(figures["transformer"])]
    assert strings.count("Add & norm") == 5  # 2 per encoder block, 3 per decoder block
    assert strings.count("Feed-forward") == 2
    assert strings.count("Positional\nencoding") == 2


def test_bahdanau_weights_sum_to_one(figures):
    weights = [float(s) for s in (t.get_text() for t in _texts(figures["bahdanau_attention"]))
               if s.replace(".", "", 1).isdigit()]
    assert len(weights) == len(diagrams.SOURCE)
    assert sum(weights) == pytest.approx(1.0)
    assert max(weights) == weights[diagrams.SOURCE.index("watching")]  # "regardent" looks at "watching"


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_rnn_unrolled_draws_the_steps_asked_for(steps):
    fig = diagrams.rnn_unrolled(steps=steps)
    strings = [t.get_text() for t in _texts(fig)]
    for t in range(1, steps + 1):
        assert rf"$\mathbf{{H}}_{{{t}}}$" in strings and rf"$\mathbf{{X}}_{{{t}}}$" in strings
    assert rf"$\mathbf{{H}}_{{{steps + 1}}}$" not in strings
    extents = _rendered_extents(fig)
    assert all(fig.bbox.x0 - 1 <= e.x0 and e.x1 <= fig.bbox.x1 + 1 for _, e in extents)


@pytest.mark.parametrize("steps", [0, 9, 2.0, True, "4"])
def test_rnn_unrolled_rejects_bad_steps(steps):
    with pytest.raises(ValueError, match="steps must be a whole number from 1 to 8"):
        diagrams.rnn_unrolled(steps=steps)


def test_the_colours_are_the_course_palette():
    from helpers.plotting import PALETTE

    colours = [diagrams.BLUE, diagrams.ORANGE, diagrams.GREEN, diagrams.VERMILLION, diagrams.PURPLE,
               diagrams.SKY, diagrams.YELLOW, diagrams.BLACK]
    assert colours == PALETTE


def test_a_diagram_shows_in_jupyter_as_one_png(figures, monkeypatch):
    import IPython.display

    fig = figures["lstm_cell"]
    assert fig._repr_png_().startswith(PNG_SIGNATURE)
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.append((objs, kw)))
    fig._ipython_display_()
    [(objs, kw)] = shown
    assert kw == {"raw": True} and objs[0]["image/png"].startswith(PNG_SIGNATURE)
    assert objs[0]["text/plain"].startswith("<Diagram size 980x800")


def test_importing_and_drawing_import_no_pyplot():
    code = ("import sys, helpers.diagrams as D; "
            "[getattr(D, n)().to_png() for n in D.__all__ if n != 'Diagram']; "
            "print('matplotlib.pyplot' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT)
    assert result.stdout.strip() == "False"
