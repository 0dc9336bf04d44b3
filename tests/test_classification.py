"""helpers.classification: splits, predictions, confusion matrix, precision/recall/F1, pictures."""

from fractions import Fraction

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from helpers.classification import (
    classification_report,
    confusion_matrix,
    plot_confusion_matrix,
    precision_recall_f1,
    predict,
    show_predictions,
    train_val_split,
)
from helpers.data import make_loader
from helpers.plotting import PALETTE

# A small example worked out by hand: 3 classes, 8 examples.
Y_TRUE = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
Y_PRED = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0])


def random_labels(n=500, q=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y_true = torch.randint(0, q, (n,), generator=gen)
    noise = torch.randint(0, q, (n,), generator=gen)
    keep = torch.rand(n, generator=gen) < 0.6
    return torch.where(keep, y_true, noise), y_true


def loop_metrics(y_pred, y_true, q):
    """An independent computation: plain Python counting, one class at a time."""
    y_pred, y_true = y_pred.tolist(), y_true.tolist()
    out = {"precision": [], "recall": [], "f1": []}
    totals = np.zeros(3)
    for k in range(q):
        tp = sum(p == k and t == k for p, t in zip(y_pred, y_true, strict=True))
        fp = sum(p == k and t != k for p, t in zip(y_pred, y_true, strict=True))
        fn = sum(p != k and t == k for p, t in zip(y_pred, y_true, strict=True))
        totals += (tp, fp, fn)
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        out["precision"].append(p)
        out["recall"].append(r)
        out["f1"].append(2 * p * r / (p + r) if p + r else 0.0)
    tp, fp, fn = totals
    out["micro_f1"] = 2 * tp / (2 * tp + fp + fn)
    return out


def test_confusion_matrix_of_the_hand_example():
    expected = torch.tensor([[2, 1, 0],
                             [0, 1, 1],
                             [1, 0, 2]])
    assert torch.equal(confusion_matrix(Y_PRED, Y_TRUE), expected)
    assert confusion_matrix(Y_PRED, Y_TRUE).dtype == torch.int64
    assert confusion_matrix(Y_PRED, Y_TRUE, num_classes=5).shape == (5, 5)


def test_confusion_matrix_equals_a_loop_and_a_one_hot_product():
    y_pred, y_true = random_labels()
    expected = torch.zeros(7, 7, dtype=torch.int64)
    for p, t in zip(y_pred.tolist(), y_true.tolist(), strict=True):
        expected[t, p] += 1
    got = confusion_matrix(y_pred, y_true, num_classes=7)
    assert torch.equal(got, expected)
    assert torch.equal(got, F.one_hot(y_true, 7).T @ F.one_hot(y_pred, 7))
    assert got.sum() == 500


def test_metrics_of_the_hand_example_are_exact_fractions():
    m = precision_recall_f1(confusion_matrix(Y_PRED, Y_TRUE))
    precision = [Fraction(2, 3), Fraction(1, 2), Fraction(2, 3)]
    recall = [Fraction(2, 3), Fraction(1, 2), Fraction(2, 3)]
    for k in range(3):
        assert m["precision"][k].item() == pytest.approx(float(precision[k]))
        assert m["recall"][k].item() == pytest.approx(float(recall[k]))
        f1 = 2 * precision[k] * recall[k] / (precision[k] + recall[k])
        assert m["f1"][k].item() == pytest.approx(float(f1))
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["micro"] == pytest.approx({"precision": 5 / 8, "recall": 5 / 8, "f1": 5 / 8})
    assert m["macro"]["precision"] == pytest.approx(float(sum(precision) / 3))
    assert m["support"].tolist() == [3, 2, 3]


def test_metrics_equal_an_independent_per_class_count():
    for seed in range(3):
        y_pred, y_true = random_labels(seed=seed)
        m = precision_recall_f1(confusion_matrix(y_pred, y_true, num_classes=7))
        ref = loop_metrics(y_pred, y_true, 7)
        for key in ("precision", "recall", "f1"):
            assert m[key].tolist() == pytest.approx(ref[key])
            assert m["macro"][key] == pytest.approx(np.mean(ref[key]))
        accuracy = (y_pred == y_true).double().mean().item()
        assert m["micro"]["f1"] == pytest.approx(ref["micro_f1"]) == pytest.approx(accuracy)
        assert m["micro"]["precision"] == pytest.approx(accuracy) == pytest.approx(m["micro"]["recall"])


def test_undefined_ratios_are_zero_not_nan():
    # Class 2 is never predicted (precision 0/0) and class 3 never occurs (recall 0/0).
    y_true = torch.tensor([0, 1, 2, 2])
    y_pred = torch.tensor([0, 1, 1, 3])
    m = precision_recall_f1(confusion_matrix(y_pred, y_true, num_classes=4))
    assert m["precision"].tolist() == [1.0, 0.5, 0.0, 0.0]
    assert m["recall"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert m["f1"][2] == 0 and m["f1"][3] == 0
    assert all(torch.isfinite(m[k]).all() for k in ("precision", "recall", "f1"))
    empty = precision_recall_f1(torch.zeros(3, 3))
    assert empty["accuracy"] == 0.0 and empty["macro"]["f1"] == 0.0


def test_bad_inputs_say_what_to_change():
    with pytest.raises(ValueError, match="argmax"):
        confusion_matrix(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="integers"):
        confusion_matrix(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"0\.\.2"):
        confusion_matrix(torch.tensor([0, 5]), torch.tensor([0, 1]), num_classes=3)
    with pytest.raises(ValueError, match="square"):
        precision_recall_f1(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="3 class names"):
        classification_report(torch.eye(2), ["a", "b", "c"])


def test_report_lists_every_class_and_both_averages():
    text = classification_report(confusion_matrix(Y_PRED, Y_TRUE), ["cat", "dog", "bird"])
    lines = text.splitlines()
    assert len(lines) == 1 + 3 + 2
    assert lines[1].split()[0] == "cat" and lines[1].split()[1:4] == ["0.667", "0.667", "0.667"]
    assert lines[-2].split()[:3] == ["micro", "avg", "0.625"]
    assert lines[-1].startswith(" " * 3) and "macro avg" in lines[-1] and lines[-1].endswith("8")


def test_train_val_split_is_stratified_disjoint_and_repeatable():
    y = torch.arange(1000) % 4
    X = torch.arange(1000).float().reshape(-1, 1)
    X_tr, y_tr, X_val, y_val = train_val_split(X, y, val_fraction=0.2, seed=3)
    assert len(X_val) == 200 and len(X_tr) == 800
    assert torch.bincount(y_val).tolist() == [50, 50, 50, 50]
    ids = torch.cat([X_tr, X_val]).reshape(-1)
    assert torch.equal(ids.sort().values, torch.arange(1000).float())
    assert torch.equal(X_tr.reshape(-1).long() % 4, y_tr)  # rows keep their labels
    assert torch.equal(train_val_split(X, y, 0.2, seed=3)[2], X_val)
    assert not torch.equal(train_val_split(X, y, 0.2, seed=4)[2], X_val)
    with pytest.raises(ValueError, match="between 0 and 1"):
        train_val_split(X, y, val_fraction=1.5)
    with pytest.raises(ValueError, match="must match"):
        train_val_split(X, y[:10])
    with pytest.raises(ValueError, match="one part empty"):
        train_val_split(X[:4], y[:4], val_fraction=0.01)


def test_predict_returns_argmax_labels_and_restores_the_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3), nn.Dropout(0.5))
    X, y = torch.randn(70, 5), torch.randint(0, 3, (70,))
    model.train()
    y_pred, y_true = predict(model, make_loader(X, y, batch_size=16, shuffle=False))
    with torch.no_grad():
        expected = model[0](X).argmax(dim=1)  # eval mode: dropout is the identity
    assert torch.equal(y_pred, expected) and torch.equal(y_true, y)
    assert model.training
    with pytest.raises(ValueError, match="no batches"):
        predict(model, [])


def test_plots_are_labelled_and_mark_wrong_predictions():
    ax = plot_confusion_matrix(confusion_matrix(Y_PRED, Y_TRUE), ["cat", "dog", "bird"])
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert "each row sums to 1" in ax.get_title()
    assert [t.get_text() for t in ax.texts][:2] == [".67", ".33"]
    plt.close(ax.figure)
    ax = plot_confusion_matrix(confusion_matrix(Y_PRED, Y_TRUE), normalize=False)
    assert "counts" in ax.get_title() and ax.texts[0].get_text() == "2"
    plt.close(ax.figure)
    images = torch.rand(8, 1, 28, 28)
    axes = show_predictions(images, Y_TRUE, Y_PRED, names=lambda v: [f"c{int(i)}" for i in v], ncols=4)
    assert axes.shape == (2, 4)
    assert axes[0, 0].get_title() == "c0\nc0" and axes[0, 2].get_title() == "c0\nc1"
    assert axes[0, 2].title.get_color() == PALETTE[3] and axes[0, 0].title.get_color() == "black"
    plt.close(axes[0, 0].figure)
    with pytest.raises(ValueError, match="8 images"):
        show_predictions(images, Y_TRUE[:3], Y_PRED)
