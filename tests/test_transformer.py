"""helpers.transformer: blocks against PyTorch's layers, cached decoding, and a toy translation."""

import random

import pytest
import torch
from torch import nn

from decoding import stepwise_logits
from helpers import seq2seq
from helpers import transformer as T
from helpers.data import make_loader
from helpers.datasets import NMTTestSet
from helpers.text import Vocab, build_array_nmt


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_add_norm_and_ffn_equal_their_formulas():
    torch.manual_seed(0)
    add_norm, ffn = T.AddNorm(8), T.PositionWiseFFN(8, 16)
    X, Y = randn(2, 3, 8), randn(2, 3, 8, seed=1)
    Z = X + Y
    expected = (Z - Z.mean(-1, keepdim=True)) / torch.sqrt(Z.var(-1, unbiased=False, keepdim=True) + 1e-5)
    assert torch.allclose(add_norm(X, Y), expected, atol=1e-5)
    assert torch.allclose(ffn(X), ffn.dense2(torch.relu(ffn.dense1(X))))


def test_encoder_block_equals_torch_transformer_encoder_layer():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    block = T.TransformerEncoderBlock(16, 32, 4).load_from_torch(layer)
    X, valid_lens = randn(3, 6, 16), torch.tensor([6, 2, 4])
    expected = layer(X, src_key_padding_mask=torch.arange(6)[None] >= valid_lens[:, None])
    assert torch.allclose(block(X, valid_lens), expected, atol=1e-5)


def test_decoder_block_equals_torch_transformer_decoder_layer():
    torch.manual_seed(0)
    layer = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    block = T.TransformerDecoderBlock(16, 32, 4).load_from_torch(layer)
    X, memory, mem_lens = randn(3, 5, 16), randn(3, 6, 16, seed=1), torch.tensor([6, 2, 4])
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    expected = layer(X, memory, tgt_mask=causal, tgt_is_causal=True,
                     memory_key_padding_mask=torch.arange(6)[None] >= mem_lens[:, None])
    ours, cache = block(X, memory, mem_lens)
    assert torch.allclose(ours, expected, atol=1e-5) and cache is X


def test_causal_valid_lens_continue_after_the_cache():
    assert T.causal_valid_lens(2, 3).tolist() == [[1, 2, 3], [1, 2, 3]]
    assert T.causal_valid_lens(1, 2, past=4).tolist() == [[5, 6]]


def test_step_by_step_decoding_equals_one_teacher_forced_call():
    torch.manual_seed(0)
    model = T.make_transformer(11, 13, num_hiddens=16, ffn_num_hiddens=32, num_heads=4, num_layers=2).eval()
    src, valid_len, Y = torch.randint(0, 11, (3, 6)), torch.tensor([6, 2, 4]), torch.randint(0, 13, (3, 5))
    with torch.no_grad():
        full = model(src, Y, valid_len)
    steps, state = stepwise_logits(model, src, valid_len, Y)
    assert torch.allclose(steps, full, atol=1e-5)
    assert state[2][0].shape == (3, 5, 16)  # every block cached the 5 inputs it read
    assert [w.shape for w in model.decoder.cross_attention_weights] == [(3, 4, 1, 6)] * 2
    assert model.encoder.attention_weights[0].shape == (3, 4, 6, 6)


SYMBOLS = list("abcdefgh")


def reversal_pairs(num_pairs, seed):
    rng = random.Random(seed)
    source = [[rng.choice(SYMBOLS) for _ in range(rng.randint(2, 5))] for _ in range(num_pairs)]
    return source, [line[::-1] for line in source]


@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
def test_a_small_transformer_learns_to_reverse_sequences():
    torch.manual_seed(0)
    source, target = reversal_pairs(1200, seed=0)
    vocab = Vocab(source + target, reserved_tokens=["<pad>", "<bos>", "<eos>"])
    arrays = (*build_array_nmt(source, vocab, 7), *build_array_nmt(target, vocab, 7))
    model = T.make_transformer(len(vocab), len(vocab), num_hiddens=32, ffn_num_hiddens=64, num_heads=4,
                               num_layers=2, dropout=0.0)
    # Reversal needs attention by position, which takes a few hundred Adam steps to find: after 15
    # epochs (285 steps) the loss is 0.09 and 70 of 100 test lines are exact (BLEU 74); after 30
    # epochs 97 of 100 are exact (BLEU 96).
    history = seq2seq.train_seq2seq(model, make_loader(*arrays, batch_size=64, seed=0), vocab, num_epochs=30,
                                    lr=0.005, live=False, progress=False, verbose=False)
    assert history["train_loss"][-1] < 0.1
    test_src, test_tgt = reversal_pairs(100, seed=1)
    test = NMTTestSet(test_src, test_tgt, *build_array_nmt(test_src, vocab, 7),
                      *build_array_nmt(test_tgt, vocab, 7))
    greedy = seq2seq.evaluate_bleu(model, test, vocab, max_len=7)
    beam = seq2seq.evaluate_bleu(model, test, vocab, max_len=7, beam_size=3)
    assert greedy.score > 90 and beam.score > 90
