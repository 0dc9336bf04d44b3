"""Chapter 6's code, imported from the notebook, against PyTorch, d2l and helpers.attention."""

import math

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from helpers import attention, attention_masks, seq2seq
from helpers.text import Vocab
from notebook_code import load_notebook

ch6 = load_notebook("06_attention")


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))



def test_nadaraya_watson_is_a_normalised_gaussian_kernel_and_learns_its_width():
    x_train = torch.linspace(0, 5, 30)
    y_train = 2 * torch.sin(x_train) + x_train**0.8
    queries = torch.tensor([0.3, 2.5, 4.9])
    keys, values = x_train.expand(3, -1), y_train.expand(3, -1)
    y_hat, weights = ch6.nadaraya_watson(queries, keys, values, 2.0)
    density = torch.distributions.Normal(queries[:, None], 0.5).log_prob(keys).exp()
    assert torch.allclose(weights, density / density.sum(1, keepdim=True), atol=1e-6)
    assert torch.allclose(y_hat, (weights * values).sum(1))
    model = ch6.NWKernelRegression(w=3.0)
    assert torch.allclose(model(queries, keys, values), ch6.nadaraya_watson(queries, keys, values, 3.0)[0])
    assert model.attention_weights.shape == (3, 30)


@pytest.mark.parametrize("valid_lens",
                         [None, torch.tensor([1, 4, 2]), torch.tensor([[1, 2], [4, 4], [3, 1]])])
def test_masked_softmax_equals_sdpa_and_the_helper(valid_lens):
    X = randn(3, 2, 4)
    ours = ch6.masked_softmax(X, valid_lens)
    assert torch.allclose(ours, attention.masked_softmax(X, valid_lens))
    if valid_lens is not None:
        keep = attention.valid_len_mask(valid_lens, 2, 4)
        assert torch.allclose(ours, ch6.sdpa_weights(X, keep), atol=1e-6)
        assert torch.allclose(ours, ch6.sdpa_weights(X, attention.additive_mask(keep)), atol=1e-6)
    else:
        assert torch.allclose(ours, ch6.sdpa_weights(X, None), atol=1e-6)


def test_masked_softmax_has_d2ls_semantics():
    X = randn(2, 3, 5)
    lens = torch.tensor([0, 2])
    assert torch.allclose(ch6.masked_softmax(X, lens)[0], torch.full((3, 5), 0.2))  # all masked: uniform
    d2l = pytest.importorskip("d2l.torch", reason="d2l 1.0.3 is not installed (`make env` installs it)")
    for valid_lens in (lens, torch.tensor([[1, 0, 5], [2, 3, 4]])):
        assert torch.allclose(ch6.masked_softmax(X, valid_lens), d2l.masked_softmax(X, valid_lens))


def test_additive_and_dot_product_attention_equal_the_helpers_and_sdpa():
    torch.manual_seed(0)
    ours = ch6.AdditiveAttention(6, 3, 8).eval()
    helper = attention.AdditiveAttention(6, 3, 8)
    helper.load_state_dict(ours.state_dict())
    q, k, v, lens = randn(2, 4, 6), randn(2, 5, 3, seed=1), randn(2, 5, 2, seed=2), torch.tensor([3, 5])
    assert torch.allclose(ours(q, k, v, lens), helper(q, k, v, lens), atol=1e-6)
    assert ours.attention_weights[0, :, 3:].eq(0).all()
    q, k = randn(2, 4, 8), randn(2, 5, 8, seed=1)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=attention.valid_len_mask(lens, 4, 5))
    assert torch.allclose(ch6.DotProductAttention()(q, k, v, lens), expected, atol=1e-6)


def test_multi_head_attention_equals_nn_multihead_attention_with_copied_weights():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    ours = ch6.load_from_torch(ch6.MultiHeadAttention(16, 4), mha)
    q, kv, lens = randn(3, 5, 16), randn(3, 6, 16, seed=1), torch.tensor([2, 6, 4])
    expected, weights = mha(q, kv, kv, key_padding_mask=torch.arange(6)[None] >= lens[:, None],
                            average_attn_weights=False)
    assert torch.allclose(ours(q, kv, kv, lens), expected, atol=1e-5)
    assert torch.allclose(ours.attention.attention_weights.reshape(3, 4, 5, 6), weights, atol=1e-5)
    X = randn(2, 3, 12)
    assert torch.equal(ch6.split_heads(X, 3), attention.split_heads(X, 3))
    assert torch.equal(ch6.merge_heads(ch6.split_heads(X, 3), 3), X)


def test_positional_encoding_and_its_relative_position_map():
    P = ch6.positional_encoding(40, 16)
    assert torch.allclose(P, attention.positional_encoding(40, 16), atol=1e-6)
    for delta in (1, 7):
        M = ch6.relative_position_map(delta, 16)
        assert torch.allclose(P[:-delta] @ M.T, P[delta:], atol=1e-5)
        assert torch.allclose(M @ M.T, torch.eye(16), atol=1e-6)  # a rotation


def test_pattern_masks_equal_the_presets():
    for n in (1, 7, 16):
        assert torch.equal(ch6.local_mask(n, 2), attention_masks.mask_from_preset("local", n, k=2))
        assert torch.equal(ch6.strided_mask(n, 3), attention_masks.mask_from_preset("strided", n, stride=3))
        assert torch.equal(ch6.global_mask(n, 2), attention_masks.mask_from_preset("global", n, num_global=2))
    assert int(ch6.local_mask(100, 3).sum()) == 100 * 7 - 3 * 4


RESERVED = ["<pad>", "<bos>", "<eos>"]
SRC = Vocab([["i", "am", "cold", "."], ["we", "are", "friends", "."]] * 2, reserved_tokens=RESERVED)
TGT = Vocab([["j'ai", "froid", "."], ["nous", "sommes", "amis", "."]] * 2, reserved_tokens=RESERVED)


def small_bahdanau():
    torch.manual_seed(0)
    ours = seq2seq.EncoderDecoder(seq2seq.Seq2SeqEncoder(len(SRC), 8, 16, 2),
                                  ch6.BahdanauDecoder(len(TGT), 8, 16, 2)).eval()
    helper = seq2seq.make_bahdanau_seq2seq(len(SRC), len(TGT), 8, 16, 2, dropout=0.0).eval()
    helper.load_state_dict(ours.state_dict())
    return ours, helper


def test_bahdanau_decoder_equals_the_helper_in_training_greedy_and_beam_search():
    ours, helper = small_bahdanau()
    src, lens = torch.randint(0, len(SRC), (3, 6)), torch.tensor([6, 2, 4])
    dec_X = torch.randint(0, len(TGT), (3, 5))
    assert torch.allclose(ours(src, dec_X, lens), helper(src, dec_X, lens), atol=1e-5)
    assert torch.allclose(ours.decoder.attention_weights, helper.decoder.attention_weights, atol=1e-6)
    bos, eos = TGT["<bos>"], TGT["<eos>"]
    for beam_size in (1, 3):
        ours_ids = seq2seq.beam_search(ours, src, lens, bos, eos, 5, beam_size)
        assert ours_ids == seq2seq.beam_search(helper, src, lens, bos, eos, 5, beam_size)
    greedy = seq2seq.greedy_search(ours, src, lens, bos, eos, 5)
    assert greedy == seq2seq.greedy_search(helper, src, lens, bos, eos, 5)


def test_translation_attention_and_editor_scores():
    ours, _ = small_bahdanau()
    source, target, weights = ch6.translation_attention(ours, "i am cold .", SRC, TGT, 6)
    assert source == ["i", "am", "cold", ".", "<eos>"] and target[-1] == "<eos>"
    assert weights.shape == (len(target), 5) and torch.allclose(weights.sum(1), torch.ones(len(target)))
    tokens, scores = ch6.encoder_self_scores(ours, "we are friends .", SRC)
    assert tokens == ["we", "are", "friends", ".", "<eos>"] and scores.shape == (5, 5)
    assert torch.allclose(scores, scores.T, atol=1e-6)  # h_i . h_j is symmetric


def test_kernel_regression_widget_function_and_exercise_solutions():
    x = torch.linspace(0, 5, 20)
    y = torch.sin(x)
    fig, message = ch6.draw_kernel_regression(2.0, 10, x, y, x, y)
    assert "MSE against the truth" in message
    plt.close(fig)
    keys, values = x.expand(20, -1), y.expand(20, -1)
    assert torch.allclose(ch6.kernel_regression(x, keys, values, 1.5, "gaussian"),
                          ch6.nadaraya_watson(x, keys, values, 1.5)[0])
    boxcar = ch6.kernel_regression(x, keys, values, 100.0, "boxcar")  # window narrower than the spacing
    assert torch.allclose(boxcar, y, atol=1e-6)
    weights = ch6.masked_softmax_inf(randn(2, 1, 4), torch.tensor([0, 3]))
    assert weights[0].isnan().all() and not weights[1].isnan().any()


def test_scaling_keeps_unit_variance():
    gen = torch.Generator().manual_seed(0)
    for d in (4, 256):
        q, k = torch.randn(2000, d, generator=gen), torch.randn(2000, d, generator=gen)
        assert (q * k).sum(1).std() / math.sqrt(d) == pytest.approx(1.0, abs=0.08)


@pytest.mark.parametrize(("d", "n", "d_k", "d_v", "seed"), [
    (3, 4, 2, 3, 0), (5, 7, 4, 2, 1), (8, 1, 8, 8, 2), (6, 5, 6, 6, 4), (4, 10, 3, 6, 3)])
def test_lees_self_attention_loop_equals_matrix_form_and_sdpa(d, n, d_k, d_v, seed):
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(d, n, generator=gen)  # Lee's I: one input per column
    shapes = ((d_k, d), (d_k, d), (d_v, d))
    W_q, W_k, W_v = (torch.randn(*shape, generator=gen) / math.sqrt(d) for shape in shapes)
    O_cols, A_prime = ch6.self_attention_matrix(inputs, W_q, W_k, W_v)
    assert O_cols.shape == (d_v, n) and A_prime.shape == (n, n)
    assert torch.allclose(A_prime.sum(0), torch.ones(n))  # each column (query) sums to 1
    for j in range(n):
        b_j, scores, weights = ch6.self_attention_output(inputs, W_q, W_k, W_v, j)
        assert torch.allclose(scores, (W_k @ inputs).T @ (W_q @ inputs[:, j]), atol=1e-5)
        assert torch.allclose(weights, A_prime[:, j], atol=1e-6)
        assert torch.allclose(b_j, O_cols[:, j], atol=1e-5)
    X = inputs.T[None]  # one token per row
    Q, K, V = X @ W_q.T, X @ W_k.T, X @ W_v.T
    assert torch.allclose(O_cols.T, F.scaled_dot_product_attention(Q, K, V, scale=1.0)[0], atol=1e-5)
    O_scaled, _ = ch6.self_attention_matrix(inputs, W_q, W_k, W_v, scale=1 / math.sqrt(d_k))
    assert torch.allclose(O_scaled.T, F.scaled_dot_product_attention(Q, K, V)[0], atol=1e-5)
    assert torch.allclose(O_scaled.T, ch6.DotProductAttention()(Q, K, V)[0], atol=1e-5)
    if d_k == d_v == d:  # the same layer as nn.MultiheadAttention with one head, no biases, W_o = I
        mha = nn.MultiheadAttention(d, 1, bias=False, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([W_q, W_k, W_v]))
            mha.out_proj.weight.copy_(torch.eye(d))
            assert torch.allclose(O_scaled.T, mha(X, X, X, need_weights=False)[0][0], atol=1e-5)


@pytest.mark.parametrize(("size", "n", "seed"),
                         [(3, 6, 0), (3, 1, 1), (3, 2, 2), (5, 9, 3), (5, 3, 4), (1, 4, 5)])
def test_conv1d_as_matrix_equals_conv1d(size, n, seed):
    gen = torch.Generator().manual_seed(seed)
    kernel = torch.randn(size, generator=gen)
    W = ch6.conv1d_as_matrix(kernel, n)
    for _ in range(3):  # one matrix for every input
        x = torch.randn(n, generator=gen)
        expected = F.conv1d(x[None, None], kernel[None, None], padding=size // 2)[0, 0]
        assert torch.allclose(W @ x, expected, atol=1e-6)
    assert torch.equal(W != 0, ch6.local_mask(n, size // 2))  # the band is local attention's mask
    assert torch.equal(W[1:, 1:], W[:-1, :-1])  # constant along each diagonal: weights depend on j - i only


def test_conv1d_as_matrix_rejects_even_kernels():
    with pytest.raises(ValueError, match="odd size"):
        ch6.conv1d_as_matrix(torch.ones(4), 5)


def test_learned_positional_embedding_is_a_trained_table_that_ends_at_max_len():
    torch.manual_seed(0)
    pos = ch6.LearnedPositionalEmbedding(12, 8)
    assert sum(p.numel() for p in pos.parameters()) == 12 * 8
    X = randn(2, 5, 8)
    Y = pos(X)
    assert torch.equal(Y, X + pos.embedding.weight[:5])
    Y.sum().backward()  # only the rows of the positions used get a gradient, one per sequence
    grad = pos.embedding.weight.grad
    assert torch.equal(grad[:5], torch.full((5, 8), 2.0)) and grad[5:].eq(0).all()
    assert pos(randn(1, 12, 8)).shape == (1, 12, 8)
    with pytest.raises(ValueError, match="13 tokens.*only for 12"):
        pos(randn(1, 13, 8))
