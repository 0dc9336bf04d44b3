"""helpers.attention_masks: the mask presets, their cost, and the attention-mask editor."""

import pytest
import torch

from helpers import attention as A
from helpers import attention_masks as M

TOKENS = "the cat sat on the mat because it was very tired .".split()  # 12 tokens


def random_scores(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_mask_presets_on_a_small_example():
    n = 6
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    expected = {
        "none": torch.ones(n, n, dtype=torch.bool),
        "padding": (j < 4).expand(n, n),
        "causal": j <= i,
        "local": (i - j).abs() <= 1,
        "strided": (i - j).abs() % 2 == 0,
        "global": (i < 1) | (j < 1) | (i == j),
    }
    for preset, mask in expected.items():
        valid_len = 4 if preset == "padding" else None
        assert torch.equal(M.mask_from_preset(preset, n, k=1, stride=2, valid_len=valid_len), mask), preset
    assert set(M.PRESETS) == set(expected) | {"bigbird"} == set(M.PRESET_LABELS)
    assert torch.equal(M.mask_from_preset("causal", n, valid_len=3), (j <= i) & (j < 3))
    assert M.attended_pairs(M.mask_from_preset("local", 10, k=2)) == 10 * 5 - 2 * 3  # edges lose 6 pairs


def test_bigbird_preset_contains_local_and_global_and_is_seeded():
    n = 12
    mask = M.mask_from_preset("bigbird", n, k=1, num_global=2, num_random=2, seed=3)
    assert torch.equal(mask | M.mask_from_preset("local", n, k=1), mask)
    assert torch.equal(mask | M.mask_from_preset("global", n, num_global=2), mask)
    assert torch.equal(mask, M.mask_from_preset("bigbird", n, k=1, num_global=2, num_random=2, seed=3))
    assert not torch.equal(mask, M.mask_from_preset("bigbird", n, k=1, num_global=2, num_random=2, seed=4))
    no_random = M.mask_from_preset("bigbird", n, k=1, num_global=2, num_random=0)
    local_or_global = M.mask_from_preset("local", n, k=1) | M.mask_from_preset("global", n, num_global=2)
    assert torch.equal(no_random, local_or_global)
    assert M.attended_pairs(mask) < n * n


def test_mask_presets_explain_bad_settings():
    with pytest.raises(ValueError, match="choose one of"):
        M.mask_from_preset("diagonal", 5)
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        M.mask_from_preset("strided", 5, stride=0)
    with pytest.raises(ValueError, match="valid_len must be an integer from 0 to 5"):
        M.mask_from_preset("none", 5, valid_len=6)
    with pytest.raises(ValueError, match="k must be"):
        M.mask_from_preset("local", 5, k=-1)


# --------------------------------------------------------------------------------------------
# The attention-mask editor
# --------------------------------------------------------------------------------------------


def test_draw_attention_mask_counts_pairs_and_warns_about_empty_rows():
    import matplotlib.pyplot as plt

    mask = M.mask_from_preset("causal", 12)
    fig, message = M.draw_attention_mask(TOKENS, random_scores(12, 12), mask)
    assert "78</b> of 12&sup2; = 144" in message and "&#9888;" not in message
    plt.close(fig)
    mask[3] = False
    fig, message = M.draw_attention_mask(TOKENS, random_scores(12, 12), mask)
    assert "&#9888;" in message and "1 of 12 queries have every key masked (rows 3 &#x27;on&#x27;)" in message
    assert "uniform" in message and "1/12" in message
    plt.close(fig)
    with pytest.raises(ValueError, match=r"\(12, 12\) for 12 tokens"):
        M.draw_attention_mask(TOKENS, random_scores(11, 11), mask)


def test_editor_is_a_plot_explorer_driven_by_its_controls():
    from helpers.widgets import PlotExplorer

    editor = M.AttentionMaskExplorer(TOKENS, random_scores(12, 12), preset="causal")
    assert isinstance(editor, PlotExplorer)
    assert set(editor.controls) == {"preset", "k", "stride", "valid_len", "num_global", "num_random"}
    assert editor.controls["preset"].description == "preset"
    assert editor.image.value[:4] == b"\x89PNG" and "78 of 12² = 144" in editor.message
    assert editor.cells[3][7].tooltip == "query 3, key 7"
    assert torch.equal(editor.mask, M.mask_from_preset("causal", 12))
    expected_pairs = {"none": 144, "padding": 144, "causal": 78, "local": 12 * 5 - 6,
                      "strided": int(M.mask_from_preset("strided", 12, stride=3).sum()),
                      "global": 12 + 11 + 11, "bigbird": int(M.mask_from_preset(
                          "bigbird", 12, k=2, num_global=1, num_random=1).sum())}
    for preset, pairs in expected_pairs.items():
        editor.controls["preset"].value = preset
        assert f"{pairs} of 12² = 144" in editor.message, preset
        assert editor.seconds < 1.0
    editor.controls["preset"].value = "local"
    editor.controls["k"].value = 0
    assert "12 of 12² = 144" in editor.message


def test_editor_warns_when_every_key_of_a_row_is_masked():
    editor = M.AttentionMaskExplorer(TOKENS, random_scores(12, 12), preset="padding")
    picture = editor.image.value
    editor.controls["valid_len"].value = 0  # every key is padding
    assert "⚠" in editor.message and "12 of 12 queries have every key masked" in editor.message
    assert editor.image.value != picture  # the weights it shows are the uniform ones, drawn
    weights = A.attention_weights(editor.scores, editor.mask)
    assert not weights.isnan().any() and torch.allclose(weights, torch.full((12, 12), 1 / 12))
    editor.controls["valid_len"].value = 5
    assert "⚠" not in editor.message and "60 of 12² = 144" in editor.message


def test_editor_grid_toggles_single_cells_and_presets_rewrite_it():
    editor = M.AttentionMaskExplorer(TOKENS, preset="causal")
    editor.cells[0][0].value = False  # click: the first query now has no key at all
    assert not editor.mask[0, 0] and "⚠" in editor.message and "rows 0 'the'" in editor.message
    assert "1 cell edited by hand" in editor.message and "77 of 12²" in editor.message
    editor.toggle(0, 5)
    assert editor.mask[0, 5] and "⚠" not in editor.message and "2 cells edited" in editor.message
    editor.reset_cells()
    assert torch.equal(editor.mask, M.mask_from_preset("causal", 12)) and "edited" not in editor.message
    editor.toggle(2, 9)
    editor.controls["preset"].value = "none"  # a preset rewrites the whole grid
    assert editor.mask.all() and "edited" not in editor.message


def test_editor_redraws_once_per_change_and_keeps_its_layout():
    editor = M.AttentionMaskExplorer(TOKENS, random_scores(12, 12), preset="causal")
    calls = []
    draw = editor.draw
    editor.draw = lambda **values: calls.append(values) or draw(**values)
    editor.controls["preset"].value = "local"  # rewrites up to 144 cells: one redraw
    assert len(calls) == 1 and torch.equal(editor.mask, M.mask_from_preset("local", 12, k=2))
    editor.toggle(0, 11)
    assert len(calls) == 2 and "1 cell edited by hand" in editor.message
    editor.reset_cells()
    assert len(calls) == 3 and "edited" not in editor.message
    with editor.hold_updates():  # a preset and a slider together: one redraw
        editor.controls["preset"].value = "strided"
        editor.controls["stride"].value = 2
    assert len(calls) == 4 and torch.equal(editor.mask, M.mask_from_preset("strided", 12, stride=2))
    assert editor.seconds < 1.0
    # built on PlotExplorer's public extension points: its own layout, no private overrides
    assert "_on_change" not in vars(M.AttentionMaskExplorer) and not hasattr(editor, "_syncing")
    row, status, bottom = editor.widget.children
    assert editor.reset_button in row.children and status is editor.status
    assert list(bottom.children) == [editor.grid, editor.image]


def test_editor_explains_bad_sentences_and_scores():
    with pytest.raises(ValueError, match="2 to 24 tokens"):
        M.AttentionMaskExplorer(["one"])
    with pytest.raises(ValueError, match=r"scores must be \(3, 3\)"):
        M.AttentionMaskExplorer(["a", "b", "c"], torch.zeros(2, 2))


def test_presets_and_fully_masked_rows():
    mask = M.mask_from_preset("causal", 5)
    mask[2] = False
    assert A.fully_masked_rows(mask).tolist() == [2]
    assert A.fully_masked_rows(M.mask_from_preset("none", 5, valid_len=0)).tolist() == [0, 1, 2, 3, 4]
