"""Chapter 5b's code, imported from the notebook, against PyTorch and helpers.seq2seq."""

import matplotlib.pyplot as plt
import pytest
import torch
from torch.nn import functional as F

from helpers import seq2seq
from helpers.text import Vocab, build_array_nmt
from notebook_code import load_notebook

ch5b = load_notebook("05b_seq2seq")

SRC_VOCAB = Vocab([["i", "am", "cold", "."], ["we", "are", "friends", "."]] * 2,
                  reserved_tokens=["<pad>", "<bos>", "<eos>"])
TGT_VOCAB = Vocab([["j'ai", "froid", "."], ["nous", "sommes", "amis", "."]] * 2,
                  reserved_tokens=["<pad>", "<bos>", "<eos>"])



def small_models(num_layers=2):
    torch.manual_seed(0)
    ours = seq2seq.EncoderDecoder(ch5b.Seq2SeqEncoder(len(SRC_VOCAB), 8, 16, num_layers),
                                  ch5b.Seq2SeqDecoder(len(TGT_VOCAB), 8, 16, num_layers))
    helper = seq2seq.make_gru_seq2seq(len(SRC_VOCAB), len(TGT_VOCAB), 8, 16, num_layers)
    helper.load_state_dict(ours.state_dict())
    return ours.eval(), helper.eval()


def test_encoder_decoder_equals_the_helper_with_copied_weights():
    ours, helper = small_models()
    src = torch.randint(0, len(SRC_VOCAB), (5, 6))
    dec_X = torch.randint(0, len(TGT_VOCAB), (5, 4))
    assert torch.allclose(ours(src, dec_X), helper(src, dec_X), atol=1e-6)
    # and, with all sources of full length, the packed encoder reads the same tokens
    full = torch.full((5,), 6)
    assert torch.allclose(ours(src, dec_X, full), helper(src, dec_X, full), atol=1e-6)


def test_sequence_mask_and_masked_cross_entropy_equal_ignore_index():
    X = torch.arange(1.0, 9.0).reshape(2, 4)
    assert ch5b.sequence_mask(X, torch.tensor([1, 3])).tolist() == [[1, 0, 0, 0], [5, 6, 7, 0]]
    assert ch5b.sequence_mask(torch.ones(2, 3, 2), torch.tensor([2, 0]), -1.0)[0, 2].tolist() == [-1, -1]
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=gen)
    valid_len = torch.tensor([5, 2, 1])
    labels = torch.randint(2, 7, (3, 5), generator=gen)
    labels = torch.where(torch.arange(5)[None] < valid_len[:, None], labels, 1)
    expected = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=1)
    assert torch.allclose(ch5b.masked_cross_entropy(logits, labels, valid_len), expected)
    assert torch.allclose(seq2seq.masked_cross_entropy(logits, labels, valid_len), expected)


def test_greedy_and_beam_search_equal_the_batched_helpers():
    _, model = small_models()
    src, valid_len = build_array_nmt([["i", "am", "cold", "."], ["we", "are", "."], ["i", "."]],
                                     SRC_VOCAB, 6)
    bos, eos = TGT_VOCAB["<bos>"], TGT_VOCAB["<eos>"]
    greedy = ch5b.greedy_search(model, src, valid_len, bos, eos, 5)
    assert greedy == seq2seq.greedy_search(model, src, valid_len, bos, eos, 5)
    for beam_size in (1, 2, 4):
        ours = [ch5b.beam_search_one(model, src[i], valid_len[i], bos, eos, 5, beam_size) for i in range(3)]
        assert ours == seq2seq.beam_search(model, src, valid_len, bos, eos, 5, beam_size)
    assert [ch5b.beam_search_one(model, src[i], valid_len[i], bos, eos, 5, 1) for i in range(3)] == greedy


def test_bleu_by_hand_equals_the_helper_and_the_worked_example():
    assert ch5b.bleu_by_hand("A B B C D", "A B C D E F", 2) == pytest.approx(0.6814773, abs=1e-6)
    assert ch5b.bleu_by_hand("A B B C D", "A B C D E F", 4) == 0.0
    pairs = [("il est là .", "il est là ."), ("je suis grand", "je suis petit !"), ("", "a b"),
             ("a a a a", "a b"), ("nous", "nous partons ."), ("x y z", "y z x y z")]
    for pred, label in pairs:
        for k in (1, 2, 3):
            assert ch5b.bleu_by_hand(pred, label, k) == pytest.approx(seq2seq.bleu(pred, label, k), abs=1e-7)


def test_widget_functions_draw_and_explain_bad_input():
    _, model = small_models()
    fig, message = ch5b.draw_beams(model, "i am hot .", 3, 0.75, SRC_VOCAB, TGT_VOCAB, 6)
    assert "&rarr;" in message and "unknown words: hot" in message
    plt.close(fig)
    with pytest.raises(ValueError, match="empty"):
        ch5b.draw_beams(model, "  ", 3, 0.75, SRC_VOCAB, TGT_VOCAB, 6)
    fig, message = ch5b.draw_bleu("A B B C D", "A B C D E F", 2)
    assert "0.6815" in message
    plt.close(fig)
    fig, message = ch5b.draw_bleu("", "A B", 4)
    assert "0.0000" in message
    plt.close(fig)
    with pytest.raises(ValueError, match="reference is empty"):
        ch5b.draw_bleu("A", " ", 2)


def test_widgets_driven_through_their_controls():
    import ipywidgets as w

    from helpers.widgets import PlotExplorer

    _, model = small_models()
    explorer = PlotExplorer(
        {"sentence": w.Text(value="i am cold ."), "beam_size": w.IntSlider(value=2, min=1, max=8),
         "alpha": w.FloatSlider(value=0.75, min=0, max=2)},
        lambda sentence, beam_size, alpha: ch5b.draw_beams(model, sentence, beam_size, alpha,
                                                          SRC_VOCAB, TGT_VOCAB, 6))
    explorer.controls["beam_size"].value = 8
    assert "&rarr;" not in explorer.message and "→" in explorer.message
    explorer.controls["sentence"].value = ""
    assert "empty" in explorer.message and "&#9888;" in explorer.status.value
    explorer.controls["alpha"].value = 0.0
    explorer.controls["sentence"].value = "we are friends ."
    assert "we are friends ." in explorer.message and explorer.seconds < 2.0
    bleu_explorer = PlotExplorer(
        {"pred": w.Text(value="A B B C D"), "label": w.Text(value="A B C D E F"),
         "k": w.IntSlider(value=2, min=1, max=4)}, ch5b.draw_bleu)
    assert "0.6815" in bleu_explorer.message
    bleu_explorer.controls["k"].value = 4
    assert "0.0000" in bleu_explorer.message
    bleu_explorer.controls["label"].value = ""
    assert "reference is empty" in bleu_explorer.message


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_hot_embedding_equals_nn_embedding_and_its_gradient_reaches_only_used_rows(dtype):
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(11, 5).to(dtype)
    X = torch.tensor([[1, 4, 4, 0], [7, 1, 2, 0]])
    assert torch.allclose(ch5b.one_hot_embedding(X, embedding.weight), embedding(X))
    assert torch.allclose(F.one_hot(X, 11).to(dtype) @ embedding.weight, embedding(X))
    assert ch5b.one_hot_embedding(X, embedding.weight).dtype == dtype
    upstream = torch.randn(2, 4, 5, dtype=dtype)
    (embedding(X) * upstream).sum().backward()
    weight = embedding.weight.detach().clone().requires_grad_()
    (ch5b.one_hot_embedding(X, weight) * upstream).sum().backward()
    assert torch.allclose(embedding.weight.grad, weight.grad)
    assert (embedding.weight.grad.abs().sum(dim=1) > 0).nonzero().squeeze(1).tolist() == [0, 1, 2, 4, 7]
    # a token that occurs twice collects the gradients of both positions
    assert torch.allclose(embedding.weight.grad[4], upstream[0, 1] + upstream[0, 2])
    assert torch.allclose(embedding.weight.grad[1], upstream[0, 0] + upstream[1, 1])


def test_embedding_with_padding_idx_gives_the_padding_row_no_gradient():
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(6, 3, padding_idx=0)
    X = torch.tensor([[2, 3, 0, 0]])
    assert torch.allclose(ch5b.one_hot_embedding(X, embedding.weight), embedding(X))  # the row of 0 is zeros
    embedding(X).sum().backward()
    assert embedding.weight.grad[0].abs().sum() == 0 and embedding.weight.grad[2].abs().sum() > 0
