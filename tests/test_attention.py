"""helpers.attention: masked softmax, scoring functions, multi-head attention, positional encoding,
mask presets, the attention-mask editor and the Bahdanau translator, against PyTorch and d2l."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from helpers import attention as A
from helpers import seq2seq

TOKENS = "the cat sat on the mat because it was very tired .".split()  # 12 tokens


def random_scores(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# Masked softmax
# --------------------------------------------------------------------------------------------


def test_masked_softmax_with_1d_and_2d_valid_lengths():
    X = random_scores(2, 3, 4)
    one_d = A.masked_softmax(X, torch.tensor([2, 3]))
    assert torch.allclose(one_d[0, :, :2], F.softmax(X[0, :, :2], dim=-1))
    assert one_d[0, :, 2:].eq(0).all() and one_d[1, :, 3].eq(0).all()
    two_d = A.masked_softmax(X, torch.tensor([[1, 2, 4], [3, 1, 2]]))
    for b, lens in enumerate([[1, 2, 4], [3, 1, 2]]):
        for q, n in enumerate(lens):
            assert torch.allclose(two_d[b, q, :n], F.softmax(X[b, q, :n], dim=-1))
            assert two_d[b, q, n:].eq(0).all()
    assert torch.equal(A.masked_softmax(X, None), F.softmax(X, dim=-1))


def test_masked_softmax_gives_uniform_weights_not_nan_when_every_key_is_masked():
    X = random_scores(2, 3, 5)
    weights = A.masked_softmax(X, torch.tensor([0, 5]))
    assert not weights.isnan().any()
    assert torch.allclose(weights[0], torch.full((3, 5), 0.2))  # d2l: every score is -1e6


def test_masked_softmax_explains_bad_valid_lengths():
    X = random_scores(2, 3, 4)
    with pytest.raises(ValueError, match="one length per query"):
        A.masked_softmax(X, torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="one valid length per sequence"):
        A.masked_softmax(X, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="batch, queries, keys"):
        A.masked_softmax(X[0], torch.tensor([1]))


@pytest.mark.parametrize("valid_lens", [torch.tensor([1, 4, 6]), torch.tensor([[1, 2], [6, 3], [4, 4]])])
def test_dot_product_attention_equals_sdpa_with_boolean_and_float_masks(valid_lens):
    q, k, v = random_scores(3, 2, 8, seed=1), random_scores(3, 6, 8, seed=2), random_scores(3, 6, 5, seed=3)
    ours = A.DotProductAttention()(q, k, v, valid_lens)
    keep = A.valid_len_mask(valid_lens, 2, 6)
    assert torch.allclose(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=keep), atol=1e-6)
    float_mask = A.additive_mask(keep)
    assert torch.allclose(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=float_mask), atol=1e-6)


def test_masked_softmax_matches_d2l():
    d2l = pytest.importorskip("d2l.torch", reason="d2l 1.0.3 is not installed (`make env` installs it)")
    X = random_scores(3, 4, 5)
    for valid_lens in (torch.tensor([0, 2, 5]), torch.tensor([[1, 2, 3, 4], [5, 0, 1, 2], [2, 2, 2, 2]])):
        assert torch.allclose(A.masked_softmax(X, valid_lens), d2l.masked_softmax(X, valid_lens))


# --------------------------------------------------------------------------------------------
# attention_weights and the mask presets
# --------------------------------------------------------------------------------------------


def test_attention_weights_softmax_over_allowed_keys_and_input_checks():
    scores = random_scores(4, 4)
    mask = A.mask_from_preset("causal", 4)
    weights = A.attention_weights(scores, mask)
    for i in range(4):
        assert torch.allclose(weights[i, : i + 1], F.softmax(scores[i, : i + 1], dim=0))
        assert weights[i, i + 1 :].eq(0).all()
    batched = A.attention_weights(random_scores(2, 4, 4), mask)  # one mask for the whole batch
    assert batched.shape == (2, 4, 4) and batched.triu(1).eq(0).all()
    assert torch.equal(A.attention_weights(scores), F.softmax(scores, dim=-1))
    with pytest.raises(ValueError, match="boolean"):
        A.attention_weights(scores, mask.float())
    with pytest.raises(ValueError, match="broadcastable"):
        A.attention_weights(scores, torch.ones(3, 3, dtype=torch.bool))


def test_a_fully_masked_row_is_uniform_and_is_found():
    mask = A.mask_from_preset("causal", 5)
    mask[2] = False
    weights = A.attention_weights(random_scores(5, 5), mask)
    assert torch.allclose(weights[2], torch.full((5,), 0.2)) and not weights.isnan().any()
    assert A.fully_masked_rows(mask).tolist() == [2]
    assert A.fully_masked_rows(A.mask_from_preset("none", 5, valid_len=0)).tolist() == [0, 1, 2, 3, 4]


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
        assert torch.equal(A.mask_from_preset(preset, n, k=1, stride=2, valid_len=valid_len), mask), preset
    assert set(A.PRESETS) == set(expected) | {"bigbird"} == set(A.PRESET_LABELS)
    assert torch.equal(A.mask_from_preset("causal", n, valid_len=3), (j <= i) & (j < 3))
    assert A.attended_pairs(A.mask_from_preset("local", 10, k=2)) == 10 * 5 - 2 * 3  # edges lose 6 pairs


def test_bigbird_preset_contains_local_and_global_and_is_seeded():
    n = 12
    mask = A.mask_from_preset("bigbird", n, k=1, num_global=2, num_random=2, seed=3)
    assert torch.equal(mask | A.mask_from_preset("local", n, k=1), mask)
    assert torch.equal(mask | A.mask_from_preset("global", n, num_global=2), mask)
    assert torch.equal(mask, A.mask_from_preset("bigbird", n, k=1, num_global=2, num_random=2, seed=3))
    assert not torch.equal(mask, A.mask_from_preset("bigbird", n, k=1, num_global=2, num_random=2, seed=4))
    no_random = A.mask_from_preset("bigbird", n, k=1, num_global=2, num_random=0)
    local_or_global = A.mask_from_preset("local", n, k=1) | A.mask_from_preset("global", n, num_global=2)
    assert torch.equal(no_random, local_or_global)
    assert A.attended_pairs(mask) < n * n


def test_mask_presets_explain_bad_settings():
    with pytest.raises(ValueError, match="choose one of"):
        A.mask_from_preset("diagonal", 5)
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        A.mask_from_preset("strided", 5, stride=0)
    with pytest.raises(ValueError, match="valid_len must be an integer from 0 to 5"):
        A.mask_from_preset("none", 5, valid_len=6)
    with pytest.raises(ValueError, match="k must be"):
        A.mask_from_preset("local", 5, k=-1)


# --------------------------------------------------------------------------------------------
# The attention-mask editor
# --------------------------------------------------------------------------------------------


def test_draw_attention_mask_counts_pairs_and_warns_about_empty_rows():
    import matplotlib.pyplot as plt

    mask = A.mask_from_preset("causal", 12)
    fig, message = A.draw_attention_mask(TOKENS, random_scores(12, 12), mask)
    assert "78</b> of 12&sup2; = 144" in message and "&#9888;" not in message
    plt.close(fig)
    mask[3] = False
    fig, message = A.draw_attention_mask(TOKENS, random_scores(12, 12), mask)
    assert "&#9888;" in message and "1 of 12 queries have every key masked (rows 3 &#x27;on&#x27;)" in message
    assert "uniform" in message and "1/12" in message
    plt.close(fig)
    with pytest.raises(ValueError, match=r"\(12, 12\) for 12 tokens"):
        A.draw_attention_mask(TOKENS, random_scores(11, 11), mask)


def test_editor_is_a_plot_explorer_driven_by_its_controls():
    from helpers.widgets import PlotExplorer

    editor = A.AttentionMaskExplorer(TOKENS, random_scores(12, 12), preset="causal")
    assert isinstance(editor, PlotExplorer)
    assert set(editor.controls) == {"preset", "k", "stride", "valid_len", "num_global", "num_random"}
    assert editor.controls["preset"].description == "preset"
    assert editor.image.value[:4] == b"\x89PNG" and "78 of 12² = 144" in editor.message
    assert editor.cells[3][7].tooltip == "query 3, key 7"
    assert torch.equal(editor.mask, A.mask_from_preset("causal", 12))
    expected_pairs = {"none": 144, "padding": 144, "causal": 78, "local": 12 * 5 - 6,
                      "strided": int(A.mask_from_preset("strided", 12, stride=3).sum()),
                      "global": 12 + 11 + 11, "bigbird": int(A.mask_from_preset(
                          "bigbird", 12, k=2, num_global=1, num_random=1).sum())}
    for preset, pairs in expected_pairs.items():
        editor.controls["preset"].value = preset
        assert f"{pairs} of 12² = 144" in editor.message, preset
        assert editor.seconds < 1.0
    editor.controls["preset"].value = "local"
    editor.controls["k"].value = 0
    assert "12 of 12² = 144" in editor.message


def test_editor_warns_when_every_key_of_a_row_is_masked():
    editor = A.AttentionMaskExplorer(TOKENS, random_scores(12, 12), preset="padding")
    picture = editor.image.value
    editor.controls["valid_len"].value = 0  # every key is padding
    assert "⚠" in editor.message and "12 of 12 queries have every key masked" in editor.message
    assert editor.image.value != picture  # the weights it shows are the uniform ones, drawn
    weights = A.attention_weights(editor.scores, editor.mask)
    assert not weights.isnan().any() and torch.allclose(weights, torch.full((12, 12), 1 / 12))
    editor.controls["valid_len"].value = 5
    assert "⚠" not in editor.message and "60 of 12² = 144" in editor.message


def test_editor_grid_toggles_single_cells_and_presets_rewrite_it():
    editor = A.AttentionMaskExplorer(TOKENS, preset="causal")
    editor.cells[0][0].value = False  # click: the first query now has no key at all
    assert not editor.mask[0, 0] and "⚠" in editor.message and "rows 0 'the'" in editor.message
    assert "1 cell edited by hand" in editor.message and "77 of 12²" in editor.message
    editor.toggle(0, 5)
    assert editor.mask[0, 5] and "⚠" not in editor.message and "2 cells edited" in editor.message
    editor.reset_cells()
    assert torch.equal(editor.mask, A.mask_from_preset("causal", 12)) and "edited" not in editor.message
    editor.toggle(2, 9)
    editor.controls["preset"].value = "none"  # a preset rewrites the whole grid
    assert editor.mask.all() and "edited" not in editor.message


def test_editor_explains_bad_sentences_and_scores():
    with pytest.raises(ValueError, match="2 to 24 tokens"):
        A.AttentionMaskExplorer(["one"])
    with pytest.raises(ValueError, match=r"scores must be \(3, 3\)"):
        A.AttentionMaskExplorer(["a", "b", "c"], torch.zeros(2, 2))


# --------------------------------------------------------------------------------------------
# Scoring functions, multi-head attention, positional encoding
# --------------------------------------------------------------------------------------------


def test_additive_attention_is_the_formula():
    torch.manual_seed(0)
    attn = A.AdditiveAttention(query_size=3, key_size=4, num_hiddens=8)
    q, k, v = random_scores(2, 1, 3), random_scores(2, 5, 4, seed=1), random_scores(2, 5, 6, seed=2)
    out = attn(q, k, v, torch.tensor([2, 5]))
    for b, n in enumerate([2, 5]):
        scores = torch.stack([attn.w_v(torch.tanh(attn.W_q(q[b, 0]) + attn.W_k(k[b, j])))[0]
                              for j in range(n)])
        weights = F.softmax(scores, dim=0)
        assert torch.allclose(out[b, 0], weights @ v[b, :n], atol=1e-6)
    assert attn.attention_weights.shape == (2, 1, 5) and attn.attention_weights[0, 0, 2:].eq(0).all()


def test_split_and_merge_heads_are_inverse():
    X = random_scores(2, 5, 12)
    heads = A.split_heads(X, 3)
    assert heads.shape == (6, 5, 4) and torch.equal(heads[1], X[0, :, 4:8])
    assert torch.equal(A.merge_heads(heads, 3), X)


@pytest.mark.parametrize("bias", [True, False])
def test_multi_head_attention_equals_torch_with_copied_weights(bias):
    torch.manual_seed(0)
    num_hiddens, num_heads = 16, 4
    theirs = nn.MultiheadAttention(num_hiddens, num_heads, bias=bias, batch_first=True)
    ours = A.MultiHeadAttention(num_hiddens, num_heads, bias=bias).load_from_torch(theirs)
    q, kv = random_scores(3, 4, num_hiddens), random_scores(3, 6, num_hiddens, seed=1)
    valid_lens = torch.tensor([2, 6, 3])
    expected, expected_w = theirs(q, kv, kv, key_padding_mask=torch.arange(6)[None] >= valid_lens[:, None],
                                  average_attn_weights=False)
    assert torch.allclose(ours(q, kv, kv, valid_lens), expected, atol=1e-5)
    assert torch.allclose(ours.attention_weights, expected_w, atol=1e-5)
    lens_2d = torch.tensor([[1, 2, 3, 4], [6, 5, 4, 3], [2, 2, 6, 6]])  # one length per query
    blocked = (torch.arange(6)[None, None] >= lens_2d[..., None]).repeat_interleave(num_heads, dim=0)
    expected, _ = theirs(q, kv, kv, attn_mask=blocked)  # torch's boolean masks: True = blocked
    assert torch.allclose(ours(q, kv, kv, lens_2d), expected, atol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        A.MultiHeadAttention(10, 4)


def test_positional_encoding_formula_and_relative_positions():
    P = A.positional_encoding(50, 8)
    i, j = 7, 2
    assert math.isclose(P[i, 2 * j].item(), math.sin(i / 10000 ** (2 * j / 8)), abs_tol=1e-6)
    assert math.isclose(P[i, 2 * j + 1].item(), math.cos(i / 10000 ** (2 * j / 8)), abs_tol=1e-6)
    delta = 5
    for pair in range(4):  # each (sin, cos) pair at i + delta is a rotation of the pair at i
        w = 1 / 10000 ** (2 * pair / 8)
        cos, sin = math.cos(delta * w), math.sin(delta * w)
        rotation = torch.tensor([[cos, sin], [-sin, cos]])
        cols = P[:, 2 * pair : 2 * pair + 2]
        assert torch.allclose(cols[:-delta] @ rotation.T, cols[delta:], atol=1e-5)
    assert A.positional_encoding(4, 5).shape == (4, 5)  # an odd size keeps the last sine column
    enc = A.PositionalEncoding(8, max_len=50)
    X = torch.zeros(1, 3, 8)
    assert torch.equal(enc(X, offset=4)[0], P[4:7])
    with pytest.raises(ValueError, match="larger max_len"):
        enc(torch.zeros(1, 3, 8), offset=48)


# --------------------------------------------------------------------------------------------
# The Bahdanau translator
# --------------------------------------------------------------------------------------------


def test_bahdanau_decoder_step_by_step_equals_teacher_forcing_and_beam_search_runs():
    torch.manual_seed(0)
    model = A.make_bahdanau_seq2seq(11, 13, embed_size=8, num_hiddens=16, num_layers=2, dropout=0.0).eval()
    src, valid_len = torch.randint(0, 11, (3, 6)), torch.tensor([6, 2, 4])
    Y = torch.randint(0, 13, (3, 5))
    with torch.no_grad():
        full = model(src, Y, valid_len)
        weights = model.decoder.attention_weights
        state = model.decoder.init_state(model.encoder(src, valid_len), valid_len)
        steps = []
        for t in range(5):
            logits, state = model.decoder(Y[:, t : t + 1], state)
            steps.append(logits)
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    assert weights.shape == (3, 5, 6) and torch.allclose(weights.sum(-1), torch.ones(3, 5))
    assert weights[1, :, 2:].eq(0).all()  # padding of the second source gets no attention
    greedy = seq2seq.greedy_search(model, src, valid_len, 1, 2, 4)
    assert seq2seq.beam_search(model, src, valid_len, 1, 2, 4, beam_size=1) == greedy
    assert len(seq2seq.beam_search(model, src, valid_len, 1, 2, 4, beam_size=3)) == 3
