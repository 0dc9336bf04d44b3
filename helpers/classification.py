"""Evaluating classifiers: validation splits, predictions, the confusion matrix and its metrics.

Chapter 2 teaches these pieces; every later chapter that trains a classifier (MLPs, CNNs, text
classifiers) reuses them from here:

- ``train_val_split`` carves a stratified validation set out of a training set;
- ``predict`` runs a model over a data iterator and returns predicted and true labels;
- ``confusion_matrix`` counts (true class, predicted class) pairs;
- ``precision_recall_f1`` turns a confusion matrix into per-class precision, recall and F1 with
  their micro and macro averages, and ``classification_report`` prints them as a table;
- ``plot_confusion_matrix`` and ``show_predictions`` draw the two pictures a learner looks at.

Conventions: rows of a confusion matrix are the true classes, columns the predicted ones, so
``confusion[i, j]`` counts examples of class ``i`` predicted as ``j``. A ratio whose denominator is
zero (the precision of a class that is never predicted) is defined as 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from helpers.plotting import PALETTE, heatmap
from helpers.training import Batch, model_device, split_batch, to_device


def train_val_split(
    X: torch.Tensor, y: torch.Tensor, val_fraction: float = 0.1, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split ``(X, y)`` into a training and a validation part with the same class proportions.

    Each class gives ``round(val_fraction * count)`` of its examples (chosen with ``seed``) to the
    validation set; both parts keep the original order. Returns ``X_train, y_train, X_val, y_val``.
    Use the validation set to choose hyperparameters and keep the test set for the final report.
    """
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} examples but y has {len(y)}; they must match.")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1 (e.g. 0.1), got {val_fraction!r}.")
    gen = torch.Generator().manual_seed(seed)
    is_val = torch.zeros(len(y), dtype=torch.bool)
    for c in y.unique():
        members = (y == c).nonzero().squeeze(1)
        num_val = round(val_fraction * len(members))
        is_val[members[torch.randperm(len(members), generator=gen)[:num_val]]] = True
    if is_val.all() or not is_val.any():
        raise ValueError(f"val_fraction={val_fraction} leaves one part empty; choose a value nearer 0.1.")
    return X[~is_val], y[~is_val], X[is_val], y[is_val]


def predict(
    model: nn.Module,
    data_iter: Iterable,
    device: torch.device | str | None = None,
    split_batch: Callable[[Any], Batch] = split_batch,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted labels (the argmax of the model's outputs) and true labels over ``data_iter``.

    The model runs in eval mode without gradients (its training flag is restored afterwards).
    Batches follow the training loop's contract (:func:`helpers.training.split_batch`: ``(*inputs,
    y)`` by default); outputs of shape ``(B, classes)`` are turned into labels.
    """
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    preds, labels = [], []
    with torch.no_grad():
        for batch in data_iter:
            b = split_batch(to_device(batch, device))
            out = model(*b.inputs, **b.kwargs)
            preds.append(out.argmax(dim=1).cpu() if out.ndim > 1 else out.cpu())
            labels.append(b.target.cpu())
    model.train(was_training)
    if not preds:
        raise ValueError("The data iterator yielded no batches.")
    return torch.cat(preds), torch.cat(labels)


def _check_labels(y_pred: torch.Tensor, y_true: torch.Tensor, num_classes: int | None) -> int:
    if y_pred.shape != y_true.shape or y_pred.ndim != 1:
        raise ValueError(
            f"y_pred and y_true must be 1-D label tensors of equal length, got shapes "
            f"{tuple(y_pred.shape)} and {tuple(y_true.shape)}; take logits.argmax(dim=1) first."
        )
    if y_pred.is_floating_point() or y_true.is_floating_point():
        raise ValueError("Labels must be integers (class indices); take logits.argmax(dim=1) first.")
    seen = int(max(y_pred.max(), y_true.max())) + 1 if len(y_true) else 0
    if num_classes is None:
        return seen
    if seen > num_classes or (len(y_true) and min(y_pred.min(), y_true.min()) < 0):
        raise ValueError(f"Labels must lie in 0..{num_classes - 1}; found labels up to {seen - 1}.")
    return num_classes


def confusion_matrix(
    y_pred: torch.Tensor, y_true: torch.Tensor, num_classes: int | None = None
) -> torch.Tensor:
    """Count matrix ``C`` with ``C[i, j]`` = number of examples of true class i predicted as j.

    ``num_classes`` defaults to the largest label seen plus one. Returns an int64 tensor.
    """
    y_pred, y_true = torch.as_tensor(y_pred).reshape(-1), torch.as_tensor(y_true).reshape(-1)
    q = _check_labels(y_pred, y_true, num_classes)
    flat = y_true.long() * q + y_pred.long()
    return torch.bincount(flat, minlength=q * q).reshape(q, q)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.zeros_like(num))


def _f1(precision: torch.Tensor, recall: torch.Tensor) -> torch.Tensor:
    return _ratio(2 * precision * recall, precision + recall)


def precision_recall_f1(confusion: torch.Tensor) -> dict:
    """Per-class precision, recall and F1 from a confusion matrix, with micro and macro averages.

    For class k: TP = C[k, k], FP = column sum - TP, FN = row sum - TP;
    precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2PR / (P + R) (0 when undefined).
    *Micro* averages pool TP, FP and FN over the classes first (for single-label data all three
    equal the accuracy); *macro* averages the per-class values, so every class counts equally.

    Returns ``{'precision', 'recall', 'f1', 'support'}`` (float64 tensors, one value per class;
    support = true examples per class) plus ``'micro'`` and ``'macro'`` dicts of floats and
    ``'accuracy'``.
    """
    C = torch.as_tensor(confusion).double()
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"A confusion matrix is square (classes x classes), got shape {tuple(C.shape)}.")
    tp = C.diagonal()
    fp = C.sum(dim=0) - tp
    fn = C.sum(dim=1) - tp
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _f1(precision, recall)
    micro_p = _ratio(tp.sum(), tp.sum() + fp.sum())
    micro_r = _ratio(tp.sum(), tp.sum() + fn.sum())
    macro = {"precision": precision.mean(), "recall": recall.mean(), "f1": f1.mean()}
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": C.sum(dim=1),
        "micro": {"precision": micro_p.item(), "recall": micro_r.item(), "f1": _f1(micro_p, micro_r).item()},
        "macro": {name: value.item() for name, value in macro.items()},
        "accuracy": _ratio(tp.sum(), C.sum()).item(),
    }


def classification_report(
    confusion: torch.Tensor, class_names: Sequence[str] | None = None, digits: int = 3
) -> str:
    """A text table of per-class precision, recall, F1 and support, then the micro and macro rows."""
    m = precision_recall_f1(confusion)
    q = len(m["support"])
    names = list(class_names) if class_names is not None else [str(k) for k in range(q)]
    if len(names) != q:
        raise ValueError(f"Got {len(names)} class names for a {q}x{q} confusion matrix.")
    width = max(12, *(len(n) for n in names))
    total = int(m["support"].sum())
    lines = [f"{'':>{width}}  precision  recall      f1  support"]
    for k, name in enumerate(names):
        lines.append(f"{name:>{width}}  {m['precision'][k]:9.{digits}f}  {m['recall'][k]:6.{digits}f}  "
                     f"{m['f1'][k]:6.{digits}f}  {int(m['support'][k]):7d}")
    for avg in ("micro", "macro"):
        v = m[avg]
        lines.append(f"{avg + ' avg':>{width}}  {v['precision']:9.{digits}f}  {v['recall']:6.{digits}f}  "
                     f"{v['f1']:6.{digits}f}  {total:7d}")
    return "\n".join(lines)


def plot_confusion_matrix(
    confusion: torch.Tensor,
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
    title: str | None = None,
    ax=None,
):
    """Draw a confusion matrix as an annotated heatmap (rows: true class, columns: predicted).

    With ``normalize`` each row is divided by its total, so the diagonal shows each class's recall
    and the off-diagonal cells the share of that class sent to each wrong class.
    """
    C = torch.as_tensor(confusion).double()
    if normalize:
        C = C / C.sum(dim=1, keepdim=True).clamp(min=1)
    default = "confusion matrix (each row sums to 1)" if normalize else "confusion matrix (counts)"
    ax = heatmap(C, xlabels=class_names, ylabels=class_names, xlabel="predicted class",
                 ylabel="true class", title=title or default, cmap="Blues", colorbar=False,
                 vmin=0, ax=ax)
    limit = C.max().item() / 2
    for (r, c), v in ((rc, C[rc].item()) for rc in itertools.product(range(len(C)), repeat=2)):
        text = f"{v:.2f}".lstrip("0") if normalize else f"{int(v)}"
        if text not in (".00", "0"):  # leave (near-)empty cells blank, so the errors stand out
            ax.text(c, r, text, ha="center", va="center", fontsize=6,
                    color="white" if v > limit else "black")
    return ax


def show_predictions(
    images: torch.Tensor,
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    names: Callable[[torch.Tensor], list[str]] | None = None,
    ncols: int = 8,
    scale: float = 1.3,
):
    """A grid of images titled "true / predicted"; wrong predictions get an orange title.

    ``names`` maps label tensors to class names (e.g. ``helpers.datasets.text_labels``).
    Returns the axes.
    """
    import matplotlib.pyplot as plt

    n = len(images)
    if not len(y_true) == len(y_pred) == n:
        raise ValueError(f"Got {n} images, {len(y_true)} true and {len(y_pred)} predicted labels.")
    names = names or (lambda labels: [str(int(v)) for v in labels])
    true_names, pred_names = names(y_true), names(y_pred)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * scale * 1.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i].detach().cpu()
        img = img.reshape(img.shape[-2:]) if img.ndim == 3 and img.shape[0] == 1 else img
        ax.imshow(img.numpy(), cmap="gray")
        wrong = int(y_true[i]) != int(y_pred[i])
        ax.set_title(f"{true_names[i]}\n{pred_names[i]}", fontsize=7,
                     color=PALETTE[3] if wrong else "black", fontweight="bold" if wrong else "normal")
    fig.suptitle("true label / predicted label (wrong in orange)", fontsize=9)
    return axes
