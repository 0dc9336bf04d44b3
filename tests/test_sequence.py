"""helpers.sequence: the RNN language model, held-out perplexity, training and generation."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from helpers import sequence
from helpers.text import SeqDataLoader, Vocab

TEXT = "the time machine by h g wells " * 40
VOCAB = Vocab(list(TEXT))
CORPUS = VOCAB[list(TEXT)]



@pytest.mark.parametrize("cell", [nn.RNN, nn.GRU, nn.LSTM])
def test_rnnlm_shapes_and_state_for_every_cell(cell):
    model = sequence.RNNLM(cell(len(VOCAB), 16, batch_first=True), len(VOCAB))
    X = torch.randint(0, len(VOCAB), (3, 7))
    logits, state = model(X)
    assert logits.shape == (3, 7, len(VOCAB))
    # feeding the sequence in two halves with the carried state gives the same logits
    first, state = model(X[:, :4])
    second, _ = model(X[:, 4:], state)
    assert torch.allclose(torch.cat([first, second], 1), logits, atol=1e-6)


def test_rnnlm_needs_batch_first_and_supports_bidirectional_layers():
    with pytest.raises(ValueError, match="batch_first=True"):
        sequence.RNNLM(nn.GRU(5, 8), 5)
    model = sequence.RNNLM(nn.GRU(5, 8, batch_first=True, bidirectional=True), 5)
    assert model(torch.zeros(2, 3, dtype=torch.long))[0].shape == (2, 3, 5)


def test_split_and_windows():
    train, val = sequence.split_corpus(list(range(100)), 0.1)
    assert len(train) == 90 and val.tolist() == list(range(90, 100))
    X, Y = sequence.lm_windows(torch.arange(12), 5)
    assert X.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]] and Y.equal(X + 1)
    with pytest.raises(ValueError, match="too short"):
        sequence.lm_windows(torch.arange(4), 5)
    with pytest.raises(ValueError, match="fraction"):
        sequence.split_corpus([1, 2, 3], 1.5)


def test_perplexity_is_vocab_size_for_a_uniform_model_and_matches_a_manual_loop():
    model = sequence.RNNLM(nn.GRU(len(VOCAB), 8, batch_first=True), len(VOCAB))
    with torch.no_grad():
        model.dense.weight.zero_()
        model.dense.bias.zero_()
    assert sequence.perplexity(model, CORPUS, num_steps=10) == pytest.approx(len(VOCAB), rel=1e-5)
    torch.manual_seed(0)
    model = sequence.RNNLM(nn.LSTM(len(VOCAB), 8, batch_first=True), len(VOCAB))
    corpus = torch.tensor(CORPUS)
    losses = []
    for start in range(0, ((len(corpus) - 1) // 10) * 10, 10):  # one window at a time, fresh state
        logits, _ = model(corpus[None, start : start + 10])
        losses.append(F.cross_entropy(logits[0], corpus[start + 1 : start + 11], reduction="sum"))
    manual = math.exp(torch.stack(losses).sum().item() / (len(losses) * 10))
    assert sequence.perplexity(model, corpus, num_steps=10, batch_size=7) == pytest.approx(manual, rel=1e-5)


def test_train_lm_learns_keeps_the_best_epoch_and_stops_early():
    torch.manual_seed(0)
    train, val = sequence.split_corpus(CORPUS, 0.2)
    train_iter = SeqDataLoader(train, batch_size=8, num_steps=10, use_random_iter=True, seed=0)
    model = sequence.RNNLM(nn.GRU(len(VOCAB), 32, batch_first=True), len(VOCAB))
    history = sequence.train_lm(model, train_iter, val, num_epochs=15, lr=0.02, num_steps=10,
                                patience=2, live=False, progress=False, verbose=False)
    val_ppl = [math.exp(v) for v in history["val_loss"]]
    best = history.best_epoch
    assert val_ppl[best - 1] == min(val_ppl) and min(val_ppl) < 3.0
    assert sequence.perplexity(model, val, num_steps=10) == pytest.approx(min(val_ppl), rel=1e-4)
    if history.stopped_early:
        assert history.num_epochs - best == 2
    assert sequence.generate(model, "the time ", 10, VOCAB) == "the time machine by"


def test_generate_greedy_sampling_and_bad_prefixes():
    torch.manual_seed(0)
    model = sequence.RNNLM(nn.RNN(len(VOCAB), 16, batch_first=True), len(VOCAB))
    greedy = sequence.generate(model, "the", 20, VOCAB)
    assert greedy.startswith("the") and len(greedy) == 23
    assert greedy == sequence.generate(model, "the", 20, VOCAB)
    assert sequence.generate(model, "the", 20, VOCAB, temperature=1e-4) == greedy
    hot = sequence.generate(model, "the", 20, VOCAB, temperature=1.0, seed=1)
    assert hot == sequence.generate(model, "the", 20, VOCAB, temperature=1.0, seed=1)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        sequence.generate(model, "The 1", 5, VOCAB)
    with pytest.raises(ValueError, match="empty"):
        sequence.generate(model, "", 5, VOCAB)
    with pytest.raises(ValueError, match="temperature"):
        sequence.generate(model, "the", 5, VOCAB, temperature=-1)


def test_next_token_distribution_sharpens_with_low_temperature():
    torch.manual_seed(0)
    model = sequence.RNNLM(nn.GRU(len(VOCAB), 16, batch_first=True), len(VOCAB))
    warm, cold = (sequence.next_token_distribution(model, "the", VOCAB, t) for t in (1.0, 0.2))
    assert torch.allclose(warm.sum(), torch.tensor(1.0)) and cold.max() > warm.max()
    with pytest.raises(ValueError, match="positive temperature"):
        sequence.next_token_distribution(model, "the", VOCAB, 0)


def test_rnnlm_dropout_is_only_active_in_training():
    torch.manual_seed(0)
    model = sequence.RNNLM(nn.GRU(len(VOCAB), 16, batch_first=True), len(VOCAB), dropout=0.5)
    X = torch.randint(0, len(VOCAB), (2, 5))
    assert not torch.allclose(model(X)[0], model(X)[0])
    model.eval()
    assert torch.allclose(model(X)[0], model(X)[0])
