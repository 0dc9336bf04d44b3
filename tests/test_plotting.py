"""Plot helpers label their axes, use the course palette and render to PNG."""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from helpers import plotting
from helpers.training import History


@pytest.fixture(autouse=True)
def close_figures():
    plotting.use_course_style()
    yield
    plt.close("all")


def test_style_uses_the_colour_blind_safe_palette():
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    assert [c.lower() for c in colors] == [c.lower() for c in plotting.PALETTE]
    assert plt.rcParams["figure.dpi"] <= 100


def test_plot_curves_labels_axes_and_legend():
    ax = plotting.plot_curves([1, 2, 3], {"train": [3, 2, 1], "val": torch.tensor([4, 3, 2])},
                              xlabel="epoch", ylabel="loss", title="t", logy=True)
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss" and ax.get_title() == "t"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "val"]
    assert ax.get_yscale() == "log"
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), [4, 3, 2])


def test_plot_history_draws_one_line_per_key():
    history = History()
    for i in range(3):
        history.log(float(i), train_loss=1.0 / (i + 1), val_loss=1.5 / (i + 1))
    ax = plotting.plot_history(history)
    assert len(ax.lines) == 2 and ax.get_xlabel() == "epoch"
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3])


def test_scatter_with_line_sorts_the_line_by_x():
    x = torch.tensor([3.0, 1.0, 2.0])
    ax = plotting.scatter_with_line(x, 2 * x, x, 2 * x, xlabel="area", ylabel="price")
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3])
    assert ax.get_xlabel() == "area" and ax.get_ylabel() == "price"


def test_show_images_accepts_chw_and_hw_and_titles():
    images = [torch.rand(1, 8, 8), torch.rand(3, 8, 8), np.zeros((8, 8))]
    axes = plotting.show_images(images, nrows=2, ncols=2, titles=["a", "b", "c"])
    assert axes.shape == (2, 2)
    assert [ax.get_title() for ax in axes.flat] == ["a", "b", "c", ""]
    assert axes[0, 1].images[0].get_array().shape == (8, 8, 3)


def test_heatmap_labels_ticks_and_annotates():
    ax = plotting.heatmap(torch.eye(2), xlabels=["k1", "k2"], ylabels=["q1", "q2"],
                          xlabel="keys", ylabel="queries", annotate=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["k1", "k2"]
    assert ax.get_xlabel() == "keys" and ax.get_ylabel() == "queries"
    assert sorted(t.get_text() for t in ax.texts) == ["0", "0", "1", "1"]


def test_figure_to_png_returns_png_bytes_and_closes_the_figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    data = plotting.figure_to_png(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)


def test_live_plot_updates_without_a_notebook():
    history = History()
    live = plotting.LivePlot()
    history.log(0.1, train_loss=1.0, train_acc=0.5)
    live.update(history)
    ax_loss, ax_metric = live.axes
    assert ax_loss.get_ylabel() == "loss" and len(ax_metric.lines) == 1
    live.close()


def test_live_plot_has_one_log_scaled_panel_for_losses_spanning_decades():
    history = History()
    live = plotting.LivePlot()
    for loss in (10.0, 0.5, 0.01):
        history.log(0.1, train_loss=loss)
        live.update(history)
    assert len(live.axes) == 1 and live.axes[0].get_yscale() == "log"
    live.close()


def test_show_in_place_redraws_through_its_handle_and_shows_nothing_outside_a_notebook():
    from helpers.plotting import show_in_place

    fig = plt.figure()

    class Handle:
        def __init__(self):
            self.updates = []

        def update(self, figure):
            self.updates.append(figure)

    handle = Handle()
    assert show_in_place(fig, handle) is handle and handle.updates == [fig]
    assert show_in_place(fig) is None  # pytest is not IPython: nothing to show, no handle
    plt.close(fig)


def test_use_cjk_font_picks_an_installed_cjk_font_or_says_what_to_install(monkeypatch):
    from matplotlib import font_manager

    saved = dict(plt.rcParams)
    try:
        fake = [font_manager.FontEntry(name="DejaVu Sans"), font_manager.FontEntry(name="WenQuanYi Zen Hei")]
        monkeypatch.setattr(font_manager.fontManager, "ttflist", fake)
        assert plotting.use_cjk_font() == "WenQuanYi Zen Hei"
        assert plt.rcParams["font.sans-serif"][0] == "WenQuanYi Zen Hei"
        monkeypatch.setattr(font_manager.fontManager, "ttflist", fake[:1])
        with pytest.warns(UserWarning, match="fonts-noto-cjk"):
            assert plotting.use_cjk_font() is None
    finally:
        plt.rcParams.update(saved)


def test_use_cjk_font_draws_chinese_with_real_glyphs_where_a_cjk_font_is_installed():
    from matplotlib import font_manager

    if not any(f.name in plotting.CJK_FONTS for f in font_manager.fontManager.ttflist):
        pytest.skip("no CJK font installed (CI installs fonts-noto-cjk)")
    saved = dict(plt.rcParams)
    try:
        assert plotting.use_cjk_font() in plotting.CJK_FONTS
        fig, ax = plt.subplots()
        ax.set_title("注意力汇聚")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "Glyph ... missing from font" is a warning
            fig.canvas.draw()
        plt.close(fig)
    finally:
        plt.rcParams.update(saved)
