"""Chapter 2's from-scratch code, imported from the notebook, against PyTorch; and its widgets."""

import math

import ipywidgets as w
import pytest
import torch
from torch.nn import functional as F

from helpers import classification, training
from helpers.widgets import HyperparameterExplorer, PlotExplorer
from notebook_code import load_notebook

ch2 = load_notebook("02_softmax_regression")



def logits(n=64, q=10, scale=5.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, q, generator=gen) * scale, torch.randint(0, q, (n,), generator=gen)


def test_one_hot_equals_torch():
    y = torch.tensor([3, 0, 9, 9, 1])
    assert torch.equal(ch2.one_hot(y, 10), F.one_hot(y, 10))


def test_stable_softmax_equals_torch_where_the_naive_one_overflows():
    Z, _ = logits()
    for scale in (1.0, 100.0, 1000.0):
        assert torch.allclose(ch2.softmax(Z * scale), torch.softmax(Z * scale, dim=-1), atol=1e-7)
    large = torch.tensor([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1002.0], [88.0, 89.0, 90.0]])
    assert ch2.softmax_naive(large)[:2].isnan().all()
    assert torch.allclose(ch2.softmax(large), torch.softmax(large, dim=-1))
    assert torch.allclose(ch2.softmax(large[0]), torch.softmax(large[0], dim=0))  # 1-D input


def test_softmax_properties():
    Z, _ = logits(scale=3.0)
    P = ch2.softmax(Z)
    assert (P > 0).all() and torch.allclose(P.sum(dim=1), torch.ones(64))
    assert torch.equal(P.argmax(dim=1), Z.argmax(dim=1))
    assert torch.allclose(ch2.softmax(Z - 50.0), P, atol=1e-6)


def test_cross_entropy_and_log_softmax_equal_torch_including_large_logits():
    for scale in (1.0, 5.0, 500.0):
        Z, y = logits(scale=scale)
        assert torch.allclose(ch2.log_softmax(Z), F.log_softmax(Z, dim=1), atol=1e-5)
        assert torch.allclose(ch2.cross_entropy(Z, y), F.cross_entropy(Z, y), rtol=1e-5)


def test_binary_cross_entropy_with_logits_equals_torch_including_saturated_logits():
    z = torch.tensor([-200.0, -30.0, -1.0, 0.0, 0.5, 30.0, 200.0])
    for y in (torch.ones(7), torch.zeros(7), torch.tensor([0.0, 1, 0, 1, 0.3, 0, 1])):
        expected = F.binary_cross_entropy_with_logits(z, y)
        assert torch.isfinite(ch2.binary_cross_entropy_with_logits(z, y))
        assert torch.allclose(ch2.binary_cross_entropy_with_logits(z, y), expected)
    assert torch.allclose(ch2.softplus(z), F.softplus(z))


def test_cross_entropy_gradient_is_softmax_minus_one_hot():
    Z, y = logits()
    Z.requires_grad_()
    ch2.cross_entropy(Z, y).backward()
    expected = (torch.softmax(Z.detach(), dim=1) - F.one_hot(y, 10)) / len(y)
    assert torch.allclose(Z.grad, expected, atol=1e-7)


def test_worked_example_p_08_versus_05():
    for p in (0.8, 0.5):
        Z = torch.log(torch.tensor([[p, 1 - p]]))
        assert ch2.cross_entropy(Z, torch.tensor([0])).item() == pytest.approx(-math.log(p), abs=1e-6)
    assert -math.log(0.5) / -math.log(0.8) == pytest.approx(3.106, abs=1e-3)


def test_multilabel_bce_equals_torch_on_random_multi_hot_targets():
    gen = torch.Generator().manual_seed(3)
    for n, q in ((1, 1), (17, 4), (64, 12)):
        Z = torch.randn(n, q, generator=gen) * 6
        T = (torch.rand(n, q, generator=gen) < 0.4).float()
        for scale in (1.0, 50.0):  # saturated logits stay finite and exact
            ours = ch2.multilabel_bce(Z * scale, T)
            assert torch.isfinite(ours)
            assert torch.allclose(ours, F.binary_cross_entropy_with_logits(Z * scale, T, reduction="sum") / n)
            assert torch.allclose(ours, q * torch.nn.BCEWithLogitsLoss()(Z * scale, T))
    Z.requires_grad_()
    ch2.multilabel_bce(Z, T).backward()
    # the gradient is predicted minus observed, as for softmax and cross-entropy
    assert torch.allclose(Z.grad, (torch.sigmoid(Z.detach()) - T) / len(Z), atol=1e-7)


def test_multilabel_predictions_allow_several_labels_or_none():
    Z = torch.tensor([[2.0, 1.5, -3.0], [-1.0, -0.2, -4.0], [0.3, 0.1, 0.2]])
    assert ch2.multilabel_predict(Z).tolist() == [[1, 1, 0], [0, 0, 0], [1, 1, 1]]
    assert ch2.multilabel_predict(Z, threshold=0.56).tolist() == [[1, 1, 0], [0, 0, 0], [1, 0, 0]]
    T = torch.tensor([[1.0, 1, 0], [0, 0, 0], [1, 0, 1]])
    assert ch2.exact_match(Z, T) == pytest.approx(2 / 3)
    assert ch2.CLASS_TAGS.shape == (10, len(ch2.TAGS)) and ch2.CLASS_TAGS[3].tolist() == [1, 1, 0]
    assert ch2.CLASS_TAGS[8].sum() == 0 and ch2.CLASS_TAGS.sum(dim=1).tolist().count(1) == 8


@pytest.fixture(scope="module")
def small_images():
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (300,), generator=gen)
    X = 0.3 * torch.rand(300, 1, 28, 28, generator=gen)
    X[torch.arange(300), 0, 2 * y + 4] += 0.7  # class k: image row 2k + 4 is bright (linearly separable)
    return X, y


def test_scratch_training_equals_nn_linear_cross_entropy_and_sgd(small_images):
    X, y = small_images
    W0, b0 = torch.randn(784, 10) * 0.01, torch.zeros(10)
    W0_before = W0.clone()
    W_a, b_a, val_acc = ch2.train_scratch(X, y, 0.02, 32, 3, W0, b0, val=(X, y))
    W_b, b_b = ch2.train_concise(X, y, 0.02, 32, 3, W0, b0)
    assert torch.allclose(W_a, W_b, atol=1e-5) and torch.allclose(b_a, b_b, atol=1e-5)
    assert len(val_acc) == 3 and val_acc[-1] > 0.9  # it learns (chance: 0.1)
    assert torch.equal(W0, W0_before) and not W0.requires_grad, "training must not modify the start point"
    logits_a = ch2.softmax_regression(X, W_a, b_a)
    assert ch2.accuracy(logits_a, y) == pytest.approx(training.accuracy(logits_a, y))


def test_confusion_matrix_and_metrics_equal_the_helper_and_a_direct_count():
    gen = torch.Generator().manual_seed(1)
    y = torch.randint(0, 6, (400,), generator=gen)
    y_pred = torch.where(torch.rand(400, generator=gen) < 0.7, y, torch.randint(0, 6, (400,), generator=gen))
    C = ch2.confusion_matrix(y_pred, y, 6)
    assert torch.equal(C, classification.confusion_matrix(y_pred, y, 6))
    ours, helper = ch2.precision_recall_f1(C), classification.precision_recall_f1(C)
    for key in ("precision", "recall", "f1"):
        assert torch.allclose(ours[key], helper[key])
        assert ours["macro"][key] == pytest.approx(helper["macro"][key])
        assert ours["micro"][key] == pytest.approx((y_pred == y).double().mean().item())
    for k in range(6):
        tp = ((y_pred == k) & (y == k)).sum().item()
        assert ours["recall"][k].item() == pytest.approx(tp / (y == k).sum().item())


def test_metrics_handle_a_class_that_is_never_predicted():
    C = ch2.confusion_matrix(torch.tensor([0, 0, 1]), torch.tensor([0, 2, 1]), 3)
    m = ch2.precision_recall_f1(C)
    assert m["precision"].tolist() == [0.5, 1.0, 0.0] and m["f1"][2] == 0
    assert torch.allclose(m["f1"], classification.precision_recall_f1(C)["f1"])


# ---- widgets ---------------------------------------------------------------------------------


def test_parse_logits_accepts_lists_and_explains_mistakes():
    assert ch2.parse_logits("3, 1; 0.5").tolist() == [3.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="numbers separated by commas"):
        ch2.parse_logits("3, one, 2")
    with pytest.raises(ValueError, match="between 2 and 12"):
        ch2.parse_logits("5")
    with pytest.raises(ValueError, match="finite"):
        ch2.parse_logits("1, inf")


def test_temperature_logic_at_extremes():
    _, message = ch2.draw_temperature(1.0, "3, 1, 0.2, -1, 2.5")
    assert message.startswith("T = 1: largest probability 0.549 (class 0)")
    for T in (1e-2, 1e-4):  # near zero: a one-hot vector at the argmax, no nan
        _, message = ch2.draw_temperature(T, "3, 1, 0.2, -1, 2.5")
        assert "largest probability 1.000 (class 0), entropy 0.000" in message
    _, message = ch2.draw_temperature(1e4, "3, 1, 0.2, -1, 2.5")
    assert "largest probability 0.200" in message and "entropy 1.609 nats (uniform: 1.609)" in message
    with pytest.raises(ValueError, match="must be positive"):
        ch2.draw_temperature(0.0)


def test_temperature_widget_driven_by_its_controls():
    explorer = PlotExplorer(
        {"temperature": w.FloatLogSlider(value=1.0, base=10, min=-2, max=2),
         "logits_text": w.Text(value="3, 1, 0.2, -1, 2.5")},
        ch2.draw_temperature)
    assert explorer.image.value[:4] == b"\x89PNG" and explorer.seconds < 1.0
    explorer.controls["temperature"].value = 0.01  # the slider's minimum
    assert "largest probability 1.000" in explorer.message and explorer.seconds < 1.0
    explorer.controls["temperature"].value = 100.0  # the maximum
    assert "largest probability 0.2" in explorer.message
    explorer.controls["logits_text"].value = "big, small"
    assert "type numbers separated by commas" in explorer.message and "&#9888;" in explorer.status.value
    explorer.controls["temperature"].value = 1.0
    explorer.controls["logits_text"].value = "1000, 1001, 999"  # large logits stay finite
    assert explorer.message.startswith("T = 1: largest probability 0.665 (class 1), entropy 0.832")


def test_learning_rate_explorer_on_softmax_regression_including_lr_10(small_images):
    X, y = small_images
    run = ch2.make_softmax_run((X[:240], y[:240]), (X[240:], y[240:]))
    history = run(0.5, 32, 2)
    assert "val_acc" in history and len(history["val_acc"]) == 2
    explorer = HyperparameterExplorer(run, lr=0.1, batch_size=32, num_epochs=2, key="val_acc", logy=False)
    assert "final val_acc" in explorer.message and explorer.seconds < 5
    explorer.controls["lr"].value = 10.0  # extreme: must give a message, never a traceback
    assert "lr=10" in explorer.message
    assert "final val_acc" in explorer.message or "diverged" in explorer.message
    explorer.controls["batch_size"].value = 1
    assert "batch=1" in explorer.message and explorer.seconds < 10
    assert explorer.image.value[:4] == b"\x89PNG"


def test_learning_rate_explorer_reports_a_bad_learning_rate():
    run = ch2.make_softmax_run((torch.rand(20, 1, 28, 28), torch.randint(0, 10, (20,))), None)
    with pytest.raises(ValueError, match="positive number"):
        run(-0.1, 4, 1)
