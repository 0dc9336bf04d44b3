"""Chapter 5's from-scratch code, imported from the notebook, against PyTorch and helpers."""

import functools
import math

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from helpers import sequence, text
from helpers.datasets import time_machine_corpus
from helpers.widgets import PlotExplorer
from notebook_code import load_notebook

ch5 = load_notebook("05_rnn")
CORPUS, VOCAB = time_machine_corpus()
V = len(VOCAB)



def make_inputs(seed=0, T=6, n=3, d=V, h=8):
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(T, n, d, generator=gen)
    return inputs, torch.randn(n, h, generator=gen), torch.randn(n, h, generator=gen)


def test_lagged_features_and_k_step_predictions():
    x = torch.arange(10.0)
    features, labels = ch5.lagged_features(x, 3)
    assert features[0].tolist() == [0, 1, 2] and labels[0].item() == 3 and len(features) == 7
    net = nn.Linear(3, 1)
    with torch.no_grad():  # a net that predicts "last value + 1" makes exact k-step predictions
        net.weight.copy_(torch.tensor([[0.0, 0.0, 1.0]]))
        net.bias.fill_(1.0)
    preds = ch5.k_step_predictions(net, x, 3, 4)
    assert preds.shape == (4, 4)
    assert torch.allclose(preds[:, 0], x[3:7]) and torch.allclose(preds[:, 3], x[6:10])


def test_rnn_cell_equals_nn_rnn():
    inputs, H0, _ = make_inputs()
    params = ch5.randomized(ch5.rnn_params(V, 8), seed=1)
    out, (H,) = ch5.rnn_cell(inputs, (H0,), params)
    layer = nn.RNN(V, 8)
    ch5.copy_rnn_weights(params, layer)
    expected, H_expected = layer(inputs, H0[None])
    assert torch.allclose(out, expected, atol=1e-5) and torch.allclose(H, H_expected[0], atol=1e-5)


def test_gru_and_lstm_cells_equal_pytorch():
    inputs, H0, C0 = make_inputs(1)
    params = ch5.randomized(ch5.gru_params(V, 8), seed=2)
    out, (H,) = ch5.gru_cell(inputs, (H0,), params)
    layer = nn.GRU(V, 8)
    ch5.copy_gated_weights(params, layer, 3)
    expected, H_expected = layer(inputs, H0[None])
    assert torch.allclose(out, expected, atol=1e-5) and torch.allclose(H, H_expected[0], atol=1e-5)
    params = ch5.randomized(ch5.lstm_params(V, 8), seed=3)
    out, (H, C) = ch5.lstm_cell(inputs, (H0, C0), params)
    layer = nn.LSTM(V, 8)
    ch5.copy_gated_weights(params, layer, 4)
    expected, (H_expected, C_expected) = layer(inputs, (H0[None], C0[None]))
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(H, H_expected[0], atol=1e-5) and torch.allclose(C, C_expected[0], atol=1e-5)


def test_deep_and_bidirectional_grus_equal_pytorch():
    inputs, _, _ = make_inputs(2)
    states = torch.randn(2, 3, 8)
    l0, l1 = ch5.randomized(ch5.gru_params(V, 8), 4), ch5.randomized(ch5.gru_params(8, 8), 5)
    deep = nn.GRU(V, 8, num_layers=2)
    ch5.copy_layer(l0, deep, "l0")
    ch5.copy_layer(l1, deep, "l1")
    out, H = ch5.deep_gru(inputs, states, [l0, l1])
    expected, H_expected = deep(inputs, states)
    assert torch.allclose(out, expected, atol=1e-5) and torch.allclose(H, H_expected, atol=1e-5)
    back = ch5.randomized(ch5.gru_params(V, 8), 6)
    bidi = nn.GRU(V, 8, bidirectional=True)
    ch5.copy_layer(l0, bidi, "l0")
    ch5.copy_layer(back, bidi, "l0_reverse")
    out, H = ch5.bidirectional_gru(inputs, states, l0, back)
    expected, H_expected = bidi(inputs, states)
    assert torch.allclose(out, expected, atol=1e-5) and torch.allclose(H, H_expected, atol=1e-5)


def test_scratch_model_equals_rnnlm_and_perplexities_agree():
    model = ch5.RNNModelScratch(V, 16, ch5.rnn_params, ch5.rnn_cell, seed=3)
    concise = sequence.RNNLM(nn.RNN(V, 16, batch_first=True), V)
    ch5.copy_rnn_weights(list(model.params), concise.rnn)
    with torch.no_grad():
        concise.dense.weight.copy_(model.W_hq.T)
        concise.dense.bias.copy_(model.b_q)
    X = torch.tensor(CORPUS[:60]).reshape(3, 20)
    assert torch.allclose(model(X)[0], concise(X)[0], atol=1e-6)
    val = CORPUS[-2000:]
    expected = sequence.perplexity(concise, val, 35)
    assert ch5.perplexity_by_hand(model, val, 35) == pytest.approx(expected, rel=1e-5)
    lstm_model = ch5.RNNModelScratch(V, 16, ch5.lstm_params, ch5.lstm_cell, num_states=2)
    logits, (H, C) = lstm_model(X)
    assert logits.shape == (3, 20, V) and H.shape == C.shape == (3, 16)


@pytest.mark.parametrize("theta", [0.01, 1.0, 1e9])
def test_grad_clipping_equals_clip_grad_norm(theta):
    def grads():
        torch.manual_seed(0)
        layer = nn.Linear(4, 3)
        (layer(torch.randn(5, 4)) ** 2).sum().mul(7).backward()
        return list(layer.parameters())

    ours, theirs = grads(), grads()
    assert torch.allclose(ch5.grad_clipping(ours, theta), nn.utils.clip_grad_norm_(theirs, theta))
    assert all(torch.allclose(a.grad, b.grad, atol=1e-6) for a, b in zip(ours, theirs, strict=True))


def test_scratch_training_lowers_the_perplexity():
    torch.manual_seed(0)
    model = ch5.RNNModelScratch(V, 32, ch5.gru_params, ch5.gru_cell)
    train, val = torch.tensor(CORPUS[:6000]), torch.tensor(CORPUS[6000:8000])
    train_ppl, val_ppl = ch5.train_scratch(model, train, val, num_epochs=2, lr=1.0, theta=1.0,
                                           batch_size=16, num_steps=20)
    assert len(train_ppl) == 2 and val_ppl[-1] < 0.8 * V


def test_ngram_freqs():
    assert ch5.ngram_freqs(list("abab"), 2) == [2, 1]


def test_generation_widget_logic_and_controls():
    torch.manual_seed(0)
    models = {"GRU": sequence.RNNLM(nn.GRU(V, 8, batch_first=True), V)}
    fig, message = ch5.draw_generation(models, VOCAB, "GRU", "the time", 20, 0.0)
    assert message.startswith("<b>the time</b>") and "greedy" in message
    plt.close(fig)
    explorer = PlotExplorer(
        {"model_name": w.Dropdown(options=["GRU"], value="GRU"), "prefix": w.Text(value="the"),
         "num_chars": w.IntSlider(value=10, min=10, max=500),
         "temperature": w.FloatSlider(value=1.0, max=2.0)},
        lambda **values: ch5.draw_generation(models, VOCAB, **values))
    assert "sampled at T = 1" in explorer.message
    explorer.controls["prefix"].value = "Hello!"
    assert "outside the vocabulary" in explorer.message and "&#9888;" in explorer.status.value
    explorer.controls["prefix"].value = ""
    assert "empty" in explorer.message
    explorer.controls["prefix"].value = "time"
    explorer.controls["num_chars"].value = 500
    explorer.controls["temperature"].value = 2.0
    assert "T = 2" in explorer.message and explorer.seconds < 3.0


def test_clipping_widget_shows_divergence_and_recovery():
    losses, norms = ch5.clipping_run(CORPUS[:10_000], V, None, num_epochs=4)
    assert not math.isfinite(losses[-1]) or losses[-1] > 8 or max(norms) > 10
    run = functools.lru_cache(maxsize=8)(functools.partial(ch5.clipping_run, CORPUS[:10_000], V))
    explorer = PlotExplorer({"theta": w.FloatLogSlider(value=1.0, base=10, min=-2, max=2),
                             "clip": w.Checkbox(value=True)}, functools.partial(ch5.draw_clipping, run=run))
    assert "no clipping: diverged (loss above 8 from step" in explorer.message
    assert "clipped at 1: final perplexity" in explorer.message
    explorer.controls["clip"].value = False
    assert "clipped" not in explorer.message
    explorer.controls["clip"].value = True
    explorer.controls["theta"].value = 100.0
    assert "clipped at 100" in explorer.message


def test_char_model_training_keeps_the_best_epoch_and_summarizes_it():
    train, val = torch.tensor(CORPUS[:6000]), torch.tensor(CORPUS[6000:8000])
    model, history, seconds = ch5.train_char_model(nn.GRU, train, val, V, num_epochs=2, patience=1,
                                                   num_hiddens=16, num_steps=20)
    assert history.num_epochs <= 2 and history.best_epoch in (1, 2) and seconds > 0
    line = ch5.summarize("GRU", history, seconds)
    assert line.strip().startswith("GRU: kept epoch") and "held-out perplexity" in line


def test_sequential_sampler_demo_is_deterministic():
    batches = list(text.seq_data_iter_sequential(list(range(35)), 2, 5, generator=0))
    assert batches[1][0][0, 0] == batches[0][0][0, -1] + 1  # row 0 continues across batches


@pytest.mark.parametrize("cell", [nn.RNN, nn.GRU, nn.LSTM])
def test_state_gradient_norms_last_step_and_length(cell):
    torch.manual_seed(0)
    model = sequence.RNNLM(cell(12, 8, batch_first=True), 12)
    X, Y = torch.randint(0, 12, (5, 9)), torch.randint(0, 12, (5, 9))
    norms = ch5.state_gradient_norms(model, X, Y)
    assert len(norms) == 9 and all(n >= 0 for n in norms)
    # At the last step only the output layer stands between h_T and the loss: d loss / d h_T is
    # W_dense^T (softmax - one-hot) / batch for every example.
    with torch.no_grad():
        _, state = model.rnn(torch.nn.functional.one_hot(X, 12).float())
        h_last = (state[0] if isinstance(state, tuple) else state)[-1]
        probs = model.dense(h_last).softmax(-1)
        residual = probs - torch.nn.functional.one_hot(Y[:, -1], 12)
        expected = (residual @ model.dense.weight / 5).norm(dim=1).mean()
    assert norms[-1] == pytest.approx(expected.item(), rel=1e-5)
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.parameters())  # gradients cleared


def test_state_gradient_norms_vanish_without_recurrence():
    torch.manual_seed(0)
    model = sequence.RNNLM(nn.RNN(12, 8, batch_first=True), 12)
    with torch.no_grad():
        model.rnn.weight_hh_l0.zero_()  # h_t no longer depends on h_{t-1}
    norms = ch5.state_gradient_norms(model, torch.randint(0, 12, (5, 9)), torch.randint(0, 12, (5, 9)))
    assert norms[-1] > 0 and all(n == 0 for n in norms[:-1])
