"""Chapter 3's from-scratch code, imported from the notebook, against PyTorch; and its widgets."""

import math

import ipywidgets as w
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from helpers.widgets import PlotExplorer
from notebook_code import load_notebook

ch3 = load_notebook("03_mlp")



# ---- 3.1 perceptron and XOR -------------------------------------------------------------------


def test_perceptron_learns_and_but_not_xor():
    X_and, y_and = ch3.corner_data([0, 0, 0, 1])
    X_xor, y_xor = ch3.corner_data([0, 1, 1, 0])
    assert X_and.shape == (200, 2) and torch.bincount(y_xor).tolist() == [100, 100]
    w_and, b_and, mistakes = ch3.perceptron(X_and, y_and)
    assert mistakes[-1] == 0 and torch.equal((X_and @ w_and + b_and > 0).long(), y_and)
    _, _, mistakes = ch3.perceptron(X_xor, y_xor)
    assert min(mistakes) > 0 and len(mistakes) == 20


def test_one_hidden_layer_fits_xor_where_a_linear_model_cannot():
    X, y = ch3.corner_data([0, 1, 1, 0], seed=3)
    torch.manual_seed(0)
    assert ch3.fit_full_batch(nn.Linear(2, 2), X, y) <= 0.8
    assert ch3.fit_full_batch(nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)), X, y) == 1.0


# ---- 3.2 activations ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,library", [("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
                                          ("relu", torch.relu), ("silu (swish)", F.silu)])
def test_activations_and_hand_derivatives_equal_torch_and_autograd(name, library):
    phi, d_phi = ch3.activations()[name]
    x = torch.cat([torch.linspace(-10, 10, 2001), torch.tensor([-60.0, 60.0])]).requires_grad_()
    (expected,) = torch.autograd.grad(library(x).sum(), x)
    assert torch.allclose(phi(x), library(x), atol=1e-6)
    assert torch.allclose(d_phi(x.detach()), expected, atol=1e-6)
    assert torch.isfinite(d_phi(x.detach())).all()


def test_sigmoid_derivative_peaks_at_a_quarter():
    d_sigmoid = ch3.activations()["sigmoid"][1]
    x = torch.linspace(-5, 5, 1001)
    assert d_sigmoid(x).max().item() == pytest.approx(0.25) and d_sigmoid(torch.tensor(0.0)) == 0.25


# ---- 3.3 MLP -----------------------------------------------------------------------------------


def test_scratch_mlp_equals_nn_sequential_in_outputs_and_gradients():
    torch.manual_seed(0)
    scratch, concise = ch3.MLPScratch(784, 64, 10, sigma=0.1), ch3.mlp_concise(64)
    ch3.copy_scratch_to_concise(scratch, concise)
    X, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    assert torch.allclose(scratch(X), concise(X), atol=1e-5)
    F.cross_entropy(scratch(X), y).backward()
    F.cross_entropy(concise(X), y).backward()
    assert torch.allclose(scratch.W1.grad.T, concise[1].weight.grad, atol=1e-6)
    assert torch.allclose(scratch.b1.grad, concise[1].bias.grad, atol=1e-6)
    assert torch.allclose(scratch.W2.grad.T, concise[3].weight.grad, atol=1e-6)
    assert torch.allclose(scratch.b2.grad, concise[3].bias.grad, atol=1e-6)
    assert len(list(scratch.parameters())) == 4


# ---- 3.4 backpropagation by hand ---------------------------------------------------------------


def _random_params(d, h, q, gen):
    return {"W1": 0.2 * torch.randn(d, h, generator=gen), "b1": 0.1 * torch.randn(h, generator=gen),
            "W2": 0.2 * torch.randn(h, q, generator=gen), "b2": 0.1 * torch.randn(q, generator=gen)}


@pytest.mark.parametrize("activation,library", [("relu", torch.relu), ("sigmoid", torch.sigmoid),
                                                ("tanh", torch.tanh), ("silu (swish)", F.silu)])
def test_mlp_backward_equals_autograd(activation, library):
    gen = torch.Generator().manual_seed(1)
    X, y = torch.randn(37, 3, 5, 5, generator=gen), torch.randint(0, 7, (37,), generator=gen)
    params = _random_params(75, 19, 7, gen)
    cache = ch3.mlp_forward(X, params, activation)
    assert {k: tuple(cache[k].shape) for k in ("X", "Z", "H", "O", "P")} == {
        "X": (37, 75), "Z": (37, 19), "H": (37, 19), "O": (37, 7), "P": (37, 7)}
    assert torch.allclose(cache["P"].sum(dim=1), torch.ones(37), atol=1e-6)
    grads = ch3.mlp_backward(cache, y, params)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    hidden = library(X.reshape(37, -1) @ leaves["W1"] + leaves["b1"])
    loss = F.cross_entropy(hidden @ leaves["W2"] + leaves["b2"], y)
    assert ch3.mlp_loss(cache, y).item() == pytest.approx(loss.item(), abs=1e-6)
    expected = torch.autograd.grad(loss, list(leaves.values()))
    assert list(grads) == ["W1", "b1", "W2", "b2"]
    for (name, ours), theirs in zip(grads.items(), expected, strict=True):
        assert ours.shape == params[name].shape
        assert torch.allclose(ours, theirs, atol=1e-6), name


def test_mlp_backward_gives_mlp_scratchs_gradients():
    torch.manual_seed(0)
    scratch = ch3.MLPScratch(784, 16, 10, sigma=0.1)
    X, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    F.cross_entropy(scratch(X), y).backward()
    params = {name: p.detach() for name, p in scratch.named_parameters()}  # the same names W1, b1, W2, b2
    grads = ch3.mlp_backward(ch3.mlp_forward(X, params, "relu"), y, params)
    for name, p in scratch.named_parameters():
        assert torch.allclose(grads[name], p.grad, atol=1e-6), name


def test_mlp_forward_is_stable_for_huge_logits():
    gen = torch.Generator().manual_seed(0)
    params = {k: 1000 * v for k, v in _random_params(4, 3, 5, gen).items()}
    cache = ch3.mlp_forward(torch.randn(6, 4, generator=gen), params)
    loss = ch3.mlp_loss(cache, torch.zeros(6, dtype=torch.long))
    assert torch.isfinite(cache["log_P"]).all() and torch.isfinite(loss)
    with pytest.raises(KeyError):
        ch3.mlp_forward(torch.randn(2, 4), params, "softsign")


def test_computational_graph_figure():
    import matplotlib.pyplot as plt

    fig = ch3.draw_computational_graph()
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "softmax" in texts and "matmul" in texts and r"\phi'" in texts
    plt.close(fig)


# ---- 3.5 model selection -----------------------------------------------------------------------


def test_polynomial_fit_recovers_the_cubic_and_interpolates_at_high_degree():
    x, y = ch3.poly_data(20, seed=0)
    w3 = ch3.fit_polynomial(x, y, 3)
    assert torch.allclose(w3, torch.tensor([5.0, 1.2, -3.4, 5.6], dtype=torch.float64), atol=0.2)
    assert torch.allclose(ch3.poly_features(torch.tensor([2.0]), 3),
                          torch.tensor([[1.0, 2.0, 2.0, 8 / 6]]))
    train = [ch3.poly_mse(ch3.fit_polynomial(x, y, d), x, y) for d in range(21)]
    pairs = zip(train[:-1], train[1:], strict=True)
    assert all(b <= a * (1 + 1e-6) + 1e-12 for a, b in pairs)  # a higher degree never fits worse
    assert train[19] < 1e-8  # 20 coefficients through 20 points


def test_k_fold_indices_partition_the_data():
    for n, k in ((20, 5), (23, 4), (7, 7)):
        folds = ch3.k_fold_indices(n, k, seed=1)
        assert len(folds) == k
        val = torch.cat([v for _, v in folds])
        assert torch.equal(val.sort().values, torch.arange(n))
        sizes = [len(v) for _, v in folds]
        assert max(sizes) - min(sizes) <= 1
        for train_idx, val_idx in folds:
            assert torch.equal(torch.cat([train_idx, val_idx]).sort().values, torch.arange(n))
    for bad_k in (1, 21):
        with pytest.raises(ValueError, match="k must be between 2"):
            ch3.k_fold_indices(20, bad_k)


def test_leave_one_out_equals_the_hat_matrix_formula_and_cv_picks_degree_3():
    x, y = ch3.poly_data(20, seed=0)
    for degree in (1, 3, 5):
        Phi = ch3.poly_features(x, degree)
        hat = Phi @ torch.linalg.solve(Phi.T @ Phi, Phi.T)
        residuals = hat @ y - y
        loo = ((residuals / (1 - hat.diagonal())) ** 2).mean().item()
        assert ch3.k_fold_error(x, y, degree, k=20) == pytest.approx(loo, rel=1e-8)
    errors = [ch3.k_fold_error(x, y, d, k=5) for d in range(11)]
    assert min(range(11), key=errors.__getitem__) == 3


# ---- 3.6 weight decay --------------------------------------------------------------------------


def test_l2_penalty_step_equals_sgd_weight_decay():
    torch.manual_seed(0)
    w0, X, y = torch.randn(50, 1), torch.randn(8, 50), torch.randn(8, 1)
    for lr, lambd in ((0.1, 3.0), (0.01, 0.5)):
        w_ours = w0.clone().requires_grad_()
        (((X @ w_ours - y) ** 2 / 2).mean() + lambd * ch3.l2_penalty(w_ours)).backward()
        w_lib = w0.clone().requires_grad_()
        optimizer = torch.optim.SGD([w_lib], lr=lr, weight_decay=lambd)
        ((X @ w_lib - y) ** 2 / 2).mean().backward()
        optimizer.step()
        assert torch.allclose(w_ours - lr * w_ours.grad, w_lib, atol=1e-6)


def test_weight_decay_lowers_validation_loss_and_weight_norm():
    train, val = ch3.high_dim_data()
    plain, norm_plain = ch3.train_weight_decay(0.0, train, val)
    decayed, norm_decayed = ch3.train_weight_decay(3.0, train, val)
    assert plain["train"][-1] < decayed["train"][-1]
    assert decayed["val"][-1] < plain["val"][-1] / 5
    assert norm_decayed < norm_plain / 5 and len(plain["train"]) == 100
    with pytest.raises(ValueError, match="lambda < 666.667"):
        ch3.train_weight_decay(1000.0, train, val)
    with pytest.raises(ValueError, match="lambda must be >= 0"):
        ch3.train_weight_decay(-1.0, train, val)


# ---- 3.7 dropout -------------------------------------------------------------------------------


def test_dropout_statistics_match_nn_dropout():
    H = torch.rand(50_000) + 0.5
    gen = torch.Generator().manual_seed(0)
    for p in (0.1, 0.5, 0.9):
        ours, lib = ch3.dropout_layer(H, p, generator=gen), nn.Dropout(p)(H)
        for out in (ours, lib):
            assert (out == 0).float().mean().item() == pytest.approx(p, abs=0.01)
            assert torch.allclose(out[out != 0], H[out != 0] / (1 - p))
        assert ours.mean().item() == pytest.approx(H.mean().item(), rel=0.03)  # expectation preserved
        assert lib.mean().item() == pytest.approx(H.mean().item(), rel=0.03)


def test_dropout_edge_cases_and_eval_mode():
    H = torch.randn(4, 5)
    assert torch.equal(ch3.dropout_layer(H, 0.5, training=False), H)
    assert torch.equal(ch3.dropout_layer(H, 0.0), H)
    assert torch.equal(ch3.dropout_layer(H, 1.0), torch.zeros_like(H))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        ch3.dropout_layer(H, 1.5)


# ---- 3.8 numerical stability -------------------------------------------------------------------


def test_xavier_uniform_matches_torch_statistics():
    fan_out, fan_in = 200, 600
    ours = ch3.xavier_uniform(fan_out, fan_in, torch.Generator().manual_seed(0))
    lib = nn.init.xavier_uniform_(torch.empty(fan_out, fan_in))
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert ours.shape == lib.shape
    for weights in (ours, lib):
        assert weights.abs().max().item() <= bound
        assert weights.var().item() == pytest.approx(2 / (fan_in + fan_out), rel=0.02)
    q = torch.linspace(0.05, 0.95, 19)
    assert torch.allclose(ours.flatten().quantile(q), lib.flatten().quantile(q), atol=0.02 * bound)


def test_sigmoid_gradients_vanish_and_relu_gradients_do_not():
    sig = ch3.layer_gradient_norms(nn.Sigmoid, depth=20, width=64)
    rel = ch3.layer_gradient_norms(nn.ReLU, depth=20, width=64)
    assert len(sig) == 20 and sig[0] < 1e-6 * sig[-1]
    assert 0.1 < rel[0] / rel[-1] < 10


# ---- 3.9 Hoeffding -----------------------------------------------------------------------------


def test_hoeffding_bound_and_samples_needed():
    assert ch3.hoeffding_bound(100, 1, 0.1) == pytest.approx(2 * math.exp(-2))
    assert ch3.hoeffding_bound(10, 1e12, 0.01) > 1  # vacuous, no overflow
    assert ch3.hoeffding_bound(1_000_000, 1e12, 0.5) == 0.0  # underflows to zero, no error
    for H_size, eps, delta in ((1, 0.1, 0.05), (1e6, 0.02, 0.01), (101, 0.05, 0.05)):
        n = ch3.samples_needed(H_size, eps, delta)
        assert ch3.hoeffding_bound(n, H_size, eps) <= delta < ch3.hoeffding_bound(n - 1, H_size, eps)
    with pytest.raises(ValueError, match="eps > 0"):
        ch3.hoeffding_bound(10, 5, 0.0)


def test_simulated_probability_of_a_bad_training_set_respects_the_bound():
    for N in (50, 400, 1600):
        p = ch3.bad_fraction(N, 0.05, num_trials=300)
        assert 0 <= p <= min(1.0, ch3.hoeffding_bound(N, 101, 0.05))
    assert ch3.bad_fraction(50, 0.05, num_trials=300) > ch3.bad_fraction(400, 0.05, num_trials=300)


# ---- 3.10 diagnosing training ------------------------------------------------------------------


def test_plain_mlp_layers_and_initializations():
    net = ch3.plain_mlp(3, num_hiddens=64)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(64, 784), (64, 64), (64, 64), (10, 64)]
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    he = [m for m in ch3.plain_mlp(2, num_hiddens=512, init="he") if isinstance(m, nn.Linear)]
    assert he[1].weight.var().item() == pytest.approx(2 / 512, rel=0.05) and torch.all(he[1].bias == 0)
    default = [m for m in ch3.plain_mlp(2, num_hiddens=512) if isinstance(m, nn.Linear)]
    assert default[1].weight.var().item() == pytest.approx(1 / (3 * 512), rel=0.05)
    with pytest.raises(ValueError, match="'default' or 'he'"):
        ch3.plain_mlp(2, init="xavier")


def test_a_deep_relu_mlp_can_compute_exactly_what_a_shallow_one_computes():
    torch.manual_seed(0)
    shallow, deep = ch3.plain_mlp(1, num_hiddens=32), ch3.plain_mlp(5, num_hiddens=32)
    X = torch.rand(50, 1, 28, 28)
    assert not torch.allclose(deep(X), shallow(X), atol=1e-3)
    assert ch3.embed_shallow_in_deep(shallow, deep) is deep
    assert torch.allclose(deep(X), shallow(X), atol=1e-6)


def test_a_deep_default_init_mlp_trains_worse_than_a_shallow_one():
    from helpers import datasets

    X, y = datasets.fashion_mnist_tensors("train", fast=True)
    X, y = X[:1000], y[:1000]
    state = torch.get_rng_state()
    shallow = ch3.train_and_measure(lambda: ch3.plain_mlp(1, num_hiddens=64), X, y, num_epochs=1)
    deep = ch3.train_and_measure(lambda: ch3.plain_mlp(8, num_hiddens=64), X, y, num_epochs=1)
    deep_he = ch3.train_and_measure(lambda: ch3.plain_mlp(8, num_hiddens=64, init="he"), X, y, num_epochs=1)
    assert torch.equal(torch.get_rng_state(), state)  # the notebook's random numbers are left alone
    assert deep["train_loss"] == pytest.approx(math.log(10), abs=0.01)  # stuck at chance
    assert shallow["train_loss"] < deep["train_loss"] - 0.5
    assert deep_he["train_loss"] < deep["train_loss"] - 0.3
    assert deep["init_spread"] < 0.01 * deep_he["init_spread"]
    again = ch3.train_and_measure(lambda: ch3.plain_mlp(1, num_hiddens=64), X, y, num_epochs=1)
    assert again["train_loss"] == pytest.approx(shallow["train_loss"], abs=1e-6)  # seeded: repeatable


def test_best_of_n_overestimates_more_with_more_candidates():
    one, few, many = (ch3.best_of_n(n, num_val=100, num_trials=300) for n in (1, 30, 3000))
    assert abs(one["val"] - one["test"]) < 0.01
    assert 0 < few["val"] - few["test"] < many["val"] - many["test"]
    assert many["val"] > many["best_true"] > many["test"] - 0.01  # looks better than any candidate is
    assert ch3.best_of_n(30, num_val=100, num_trials=300) == few  # seeded
    equal = ch3.best_of_n(1000, num_val=50, num_trials=100, acc_range=(0.6, 0.6))
    assert equal["test"] == pytest.approx(0.6, abs=0.01) and equal["val"] > 0.7  # pure selection noise



def test_label_shift_correction_on_hand_made_examples():
    old = torch.tensor([0.5, 0.5], dtype=torch.float64)
    probs = torch.tensor([[0.5, 0.5], [0.2, 0.8]], dtype=torch.float64)
    corrected = ch3.correct_label_shift(probs, old, torch.tensor([0.9, 0.1], dtype=torch.float64))
    assert torch.allclose(corrected[0], torch.tensor([0.9, 0.1], dtype=torch.float64))  # 50/50: new prior
    assert torch.allclose(corrected[1], torch.tensor([0.18, 0.08], dtype=torch.float64) / 0.26)
    assert torch.allclose(ch3.correct_label_shift(probs, old, old), probs)  # no shift: no change
    back = ch3.correct_label_shift(probs, torch.tensor([0.8, 0.2], dtype=torch.float64), old)
    assert torch.allclose(back[1], torch.tensor([1 / 17, 16 / 17], dtype=torch.float64))


def test_label_shift_correction_recovers_bayes_posterior_under_new_priors():
    # Three possible inputs x, two classes; p(x | y) is fixed, only p(y) changes.
    x_given_y = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], dtype=torch.float64)  # rows: y
    old, new = torch.tensor([0.5, 0.5], dtype=torch.float64), torch.tensor([0.1, 0.9], dtype=torch.float64)

    def posterior(priors):  # p(y | x) for every x, one row per x
        joint = (priors[:, None] * x_given_y).T
        return joint / joint.sum(dim=1, keepdim=True)

    assert torch.allclose(ch3.correct_label_shift(posterior(old), old, new), posterior(new))


def test_resample_by_class_gives_the_requested_class_fractions():
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(0))
    y = torch.arange(10).repeat_interleave(100)[order]
    priors = torch.full((10,), 0.2 / 8, dtype=torch.float64)
    priors[[0, 6]] = 0.4
    keep = ch3.resample_by_class(y, priors)
    assert len(keep) == 248 and len(set(keep.tolist())) == 248  # 100 + 100 + 8 x 6, no duplicates
    assert torch.bincount(y[keep], minlength=10).tolist() == [100, 6, 6, 6, 6, 6, 100, 6, 6, 6]
    assert torch.equal(keep, ch3.resample_by_class(y, priors))  # seeded
    assert torch.allclose(ch3.class_priors(y), torch.full((10,), 0.1, dtype=torch.float64))


def test_predicted_probabilities_are_the_softmax_in_batches_and_keep_the_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Dropout(0.5))
    X = torch.rand(7, 1, 28, 28)
    probs = ch3.predicted_probabilities(net, X, batch_size=3)
    assert net.training  # restored
    net.eval()
    assert torch.allclose(probs, torch.softmax(net(X), dim=1), atol=1e-6)  # dropout off while predicting
    assert torch.allclose(probs.sum(dim=1), torch.ones(7))


# ---- 3.10 why deep rather than wide ----------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 10])
def test_sawtooth_mlp_is_the_tent_map_composed_with_2_to_the_depth_pieces(depth):
    net = ch3.sawtooth_mlp(depth).double()
    x = torch.rand(500, 1, dtype=torch.float64)
    assert torch.allclose(net(x), ch3.tent_power(x, depth), atol=1e-9)
    assert ch3.count_linear_pieces(net) == 2**depth
    assert sum(p.numel() for p in net.parameters()) == 6 * depth + 1
    assert [m.out_features for m in net if isinstance(m, nn.Linear)] == [2] * depth + [1]


def test_tent_power_by_hand():
    x = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0, 0.1])
    assert torch.allclose(ch3.tent_power(x, 1), torch.tensor([0.0, 0.5, 1.0, 0.5, 0.0, 0.2]))
    assert torch.allclose(ch3.tent_power(x, 2), torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 0.4]))


def test_count_linear_pieces_on_known_functions():
    assert ch3.count_linear_pieces(lambda x: 3 * x + 1) == 1
    assert ch3.count_linear_pieces(lambda x: torch.relu(x - 0.3)) == 2  # kink between grid points
    assert ch3.count_linear_pieces(lambda x: torch.relu(x - 0.5)) == 2  # kink on a grid point
    assert ch3.count_linear_pieces(lambda x: (x - 0.5).abs() + torch.relu(x - 0.8)) == 3
    assert ch3.count_linear_pieces(lambda x: torch.relu(x - 1.5)) == 1  # kink outside [0, 1]


def test_a_shallow_relu_net_has_at_most_one_more_piece_than_units():
    gen = torch.Generator().manual_seed(1)
    for num_units in (1, 3, 10):
        for _ in range(10):
            net = nn.Sequential(nn.Linear(1, num_units), nn.ReLU(), nn.Linear(num_units, 1)).double()
            for p in net.parameters():
                p.data = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            assert 1 <= ch3.count_linear_pieces(net) <= num_units + 1


def test_shallow_least_squares_is_exact_when_the_kinks_fit_and_matches_lstsq():
    x = torch.linspace(0, 1, 401, dtype=torch.float64)[:, None]
    # four units with kinks at 0 (a linear part), 1/4, 1/2, 3/4 are exactly the 4-piece sawtooth's
    prediction, mse = ch3.shallow_least_squares(4, x, ch3.tent_power(x, 2))
    assert mse < 1e-20 and torch.allclose(prediction, ch3.tent_power(x, 2), atol=1e-9)
    # with fewer units it is a genuine fit: residual orthogonal to the features
    y = torch.sin(6 * x)
    prediction, mse = ch3.shallow_least_squares(4, x, y)
    kinks = torch.arange(4, dtype=x.dtype) / 4
    features = torch.cat([torch.relu(x - kinks), torch.ones_like(x)], dim=1)
    assert torch.allclose(features.T @ (y - prediction), torch.zeros(5, 1, dtype=x.dtype), atol=1e-9)
    assert mse == pytest.approx(((y - prediction) ** 2).mean().item())


def test_sawtooth_mlp_rejects_depth_zero():
    with pytest.raises(ValueError, match="at least 1"):
        ch3.sawtooth_mlp(0)


def test_fit_by_gradient_descent_lowers_an_easy_loss():
    x = torch.linspace(0, 1, 65, dtype=torch.float64)[:, None]
    loss = ch3.fit_by_gradient_descent(lambda: ch3.thin_deep_mlp(1, 8), x, 2 * x + 1, num_steps=300, lr=0.05)
    assert loss < 1e-3

# ---- widgets -----------------------------------------------------------------------------------


def test_activation_picker_shows_every_activation_quickly():
    explorer = PlotExplorer({"name": w.Dropdown(options=list(ch3.activations()), value="sigmoid")},
                            ch3.draw_activation)
    assert "largest derivative 0.250 at x = 0.00" in explorer.message
    assert "zero-centred: no" in explorer.message
    explorer.controls["name"].value = "tanh"
    assert "zero-centred: yes" in explorer.message and "largest derivative 1.000" in explorer.message
    explorer.controls["name"].value = "relu"
    assert "derivative below 0.01 on 50% of the range" in explorer.message
    explorer.controls["name"].value = "silu (swish)"
    assert explorer.message.startswith("silu (swish): outputs in [-0.28") and explorer.seconds < 2.0
    with pytest.raises(ValueError, match="choose one of"):
        ch3.draw_activation("softsign")


def test_degree_slider_at_the_extremes():
    explorer = PlotExplorer({"degree": w.IntSlider(value=3, min=0, max=20),
                             "num_train": w.IntSlider(value=20, min=10, max=100, step=10)},
                            ch3.draw_polynomial)
    assert explorer.message.endswith("a good fit")
    explorer.controls["degree"].value = 20  # the maximum degree ...
    explorer.controls["num_train"].value = 10  # ... with the fewest points
    assert explorer.message.startswith("degree 20, 10 points") and "overfitting" in explorer.message
    assert explorer.image.value[:4] == b"\x89PNG" and explorer.seconds < 2.0
    explorer.controls["degree"].value = 0
    assert "underfitting" in explorer.message
    explorer.controls["num_train"].value = 100
    explorer.controls["degree"].value = 20
    assert "nan" not in explorer.message and explorer.seconds < 2.0
    with pytest.raises(ValueError, match="between 0 and 20"):
        ch3.draw_polynomial(21)


def test_weight_decay_slider_including_extreme_lambdas():
    explorer = PlotExplorer({"lambd": w.FloatSlider(value=3.0, min=0.0, max=50.0, step=0.5)},
                            ch3.draw_weight_decay, busy="training...")
    assert explorer.message.startswith("lambda = 3: train loss") and explorer.seconds < 5.0
    explorer.controls["lambd"].value = 0.0
    assert explorer.message.startswith("lambda = 0:")
    explorer.controls["lambd"].value = 3.0  # seen before: remembered, so instant
    assert explorer.seconds < 1.0
    explorer.controls["lambd"].value = 50.0  # the slider's maximum: heavy shrinkage, still finite
    assert "|w| = 0.0" in explorer.message and "nan" not in explorer.message
    _, message = ch3.draw_weight_decay(50.0)
    assert message == explorer.message
    with pytest.raises(ValueError, match="choose lambda <"):
        ch3.draw_weight_decay(700.0)


def test_hoeffding_widget_at_the_extremes():
    explorer = PlotExplorer({"N": w.IntSlider(value=1000, min=10, max=20000, step=10),
                             "H_size": w.FloatLogSlider(value=1e4, base=10, min=0, max=12),
                             "eps": w.FloatSlider(value=0.05, min=0.01, max=0.5, step=0.01)},
                            ch3.draw_hoeffding)
    assert "P(D_train bad) ≤ 135, vacuous" in explorer.message
    explorer.controls["eps"].value = 0.01
    explorer.controls["H_size"].value = 1e12
    explorer.controls["N"].value = 10
    assert "vacuous" in explorer.message and "N ≥ 156,600 makes it ≤ 0.05" in explorer.message
    explorer.controls["N"].value = 20000
    explorer.controls["eps"].value = 0.5
    explorer.controls["H_size"].value = 1.0
    assert "P(D_train bad) ≤ 10^-4343, a real guarantee" in explorer.message
    assert explorer.seconds < 2.0 and explorer.image.value[:4] == b"\x89PNG"
    _, message = ch3.draw_hoeffding(1661, 101, 0.05)
    assert "a real guarantee" in message and "N ≥ 1,661" in message
