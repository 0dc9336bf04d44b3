"""helpers.attention: masked softmax, attention weights under a boolean mask, scoring functions,
multi-head attention and positional encoding, against PyTorch and d2l; and that the module (and
helpers.transformer, helpers.seq2seq) imports no UI code."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from helpers import attention as A

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
# attention_weights under a boolean mask
# --------------------------------------------------------------------------------------------


def test_attention_weights_softmax_over_allowed_keys_and_input_checks():
    scores = random_scores(4, 4)
    mask = torch.ones(4, 4, dtype=torch.bool).tril()  # causal
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
    mask = torch.ones(5, 5, dtype=torch.bool).tril()  # causal
    mask[2] = False
    weights = A.attention_weights(random_scores(5, 5), mask)
    assert torch.allclose(weights[2], torch.full((5,), 0.2)) and not weights.isnan().any()
    assert A.fully_masked_rows(mask).tolist() == [2]
    assert A.fully_masked_rows(torch.zeros(5, 5, dtype=torch.bool)).tolist() == [0, 1, 2, 3, 4]


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
# Model code imports no UI code
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["helpers.attention", "helpers.transformer", "helpers.seq2seq",
                                    "helpers.boxes", "helpers.ssd", "helpers.segmentation", "helpers.bert",
                                    "helpers.gan", "helpers.stats"])
def test_model_modules_import_no_widgets_or_pyplot(module):
    """In a fresh interpreter, importing a model module must not pull in ipywidgets or pyplot."""
    import subprocess
    import sys

    code = (f"import sys, {module}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ipywidgets' "
            "or m == 'matplotlib.pyplot'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"{module} imports {result.stdout.strip()}"
