"""A small, general training loop with progress, a live plot and divergence detection.

``fit`` trains any model with any loss, optimizer and minibatch iterators. In a notebook it shows
a ``tqdm`` progress bar and one live figure of the curves, updated in place after every epoch;
elsewhere (scripts, CI) it prints one compact line per epoch. It returns a :class:`History`.

The loop is deliberately plain: per batch it does exactly what a hand-written PyTorch loop does
(forward, loss, backward, step) plus one ``loss.item()`` to watch for divergence and to sum the
epoch loss. Its overhead over a bare loop is measured in ``tests/test_training.py``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

Metric = Callable[[torch.Tensor, torch.Tensor], float]


class DivergenceError(RuntimeError):
    """Raised when the training loss becomes nan or inf; the message names the learning rate."""


def accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of correct predictions. ``y_hat``: logits (n, classes) or labels (n,); ``y``: labels."""
    if y_hat.ndim > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(dim=1)
    return (y_hat.reshape(y.shape).to(y.dtype) == y).float().mean().item()


def in_notebook() -> bool:
    """True when running inside a Jupyter kernel (where widgets and live plots can be shown)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class History:
    """Per-epoch values of a training run: ``history['train_loss']`` is a list, one per epoch.

    Also records ``history.seconds`` (cumulative wall time per epoch), ``best_epoch`` when a best
    checkpoint was kept, and ``stopped_early``.
    """

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}
        self.seconds: list[float] = []
        self.best_epoch: int | None = None
        self.stopped_early = False

    def log(self, seconds: float, **values: float) -> None:
        for key, value in values.items():
            self.values.setdefault(key, []).append(float(value))
        self.seconds.append(seconds)

    def __getitem__(self, key: str) -> list[float]:
        if key not in self.values:
            raise KeyError(f"No '{key}' in this history; it has {sorted(self.values)}.")
        return self.values[key]

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def keys(self) -> list[str]:
        return list(self.values)

    @property
    def num_epochs(self) -> int:
        return len(self.seconds)

    @property
    def epochs(self) -> list[int]:
        return list(range(1, self.num_epochs + 1))

    def last(self) -> dict[str, float]:
        """The values of the final epoch."""
        return {key: vals[-1] for key, vals in self.values.items()}

    def summary(self) -> str:
        """One line such as ``epoch 10 | train_loss 0.312 | val_acc 0.884 | 12.3 s``."""
        if not self.seconds:
            return "no epochs run"
        parts = [f"epoch {self.num_epochs}"]
        parts += [f"{key} {vals[-1]:.4g}" for key, vals in self.values.items()]
        parts.append(f"{self.seconds[-1]:.1f} s")
        return " | ".join(parts)

    def __repr__(self) -> str:
        return f"History({self.summary()})"


def _to_device(batch: Iterable[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    return [t.to(device, non_blocking=True) for t in batch]


def evaluate(
    model: nn.Module,
    data_iter: Iterable,
    loss_fn: Callable | None = None,
    metrics: Mapping[str, Metric] | None = None,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Average loss and metrics of ``model`` over ``data_iter`` (in eval mode, without gradients).

    Returns e.g. ``{'loss': 0.41, 'acc': 0.86}``; each value is weighted by batch size.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    metrics = dict(metrics or {})
    was_training = model.training
    model.eval()
    totals = {"loss": 0.0, **{name: 0.0 for name in metrics}}
    count = 0
    with torch.no_grad():
        for batch in data_iter:
            *xs, y = _to_device(batch, device)
            y_hat = model(*xs)
            n = len(y)
            if loss_fn is not None:
                totals["loss"] += loss_fn(y_hat, y).item() * n
            for name, metric in metrics.items():
                totals[name] += metric(y_hat, y) * n
            count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("The evaluation iterator yielded no examples.")
    if loss_fn is None:
        del totals["loss"]
    return {name: total / count for name, total in totals.items()}


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _current_lr(optimizer: torch.optim.Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


def _divergence_message(value: float, epoch: int, batch: int, lr: float) -> str:
    return (
        f"Training diverged: the loss became {value} at epoch {epoch}, batch {batch}. "
        f"The learning rate lr={lr:g} is probably too large; try a smaller one (e.g. lr={lr / 10:g})."
    )


def _is_better(value: float, best: float | None, key: str) -> bool:
    if best is None:
        return True
    lower_is_better = "loss" in key or "ppl" in key or "perplexity" in key or "error" in key
    return value < best if lower_is_better else value > best


def fit(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    train_iter: Iterable,
    num_epochs: int,
    val_iter: Iterable | None = None,
    metrics: Mapping[str, Metric] | None = None,
    device: torch.device | str | None = None,
    scheduler: Any = None,
    grad_clip: float | None = None,
    keep_best: str | None = None,
    on_epoch_end: Callable[[int, History], bool | None] | None = None,
    live: bool | None = None,
    progress: bool | None = None,
    verbose: bool = True,
) -> History:
    """Train ``model`` for ``num_epochs`` epochs and return a :class:`History`.

    Each batch from ``train_iter`` is ``(*inputs, y)``; the model is called as ``model(*inputs)``
    and ``loss_fn(y_hat, y)`` must return the mean loss of the batch. Recorded per epoch:
    ``train_loss`` and ``train_<metric>`` (averaged over the epoch's batches as they trained), and
    ``val_loss``/``val_<metric>`` when ``val_iter`` is given.

    Options: ``scheduler`` is stepped once per epoch; ``grad_clip`` clips the gradient norm;
    ``keep_best='val_acc'`` restores the weights of the best epoch at the end (lower is better for
    names containing loss/ppl/perplexity/error); ``on_epoch_end(epoch, history)`` may return True to
    stop early. ``live`` (live figure) and ``progress`` (tqdm bar) default to True in a notebook.

    Raises :class:`DivergenceError` if the loss becomes nan or inf.
    """
    if num_epochs < 1:
        raise ValueError(f"num_epochs must be at least 1, got {num_epochs}.")
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device)
    metrics = dict(metrics or {})
    interactive = in_notebook()
    live = interactive if live is None else live
    progress = interactive if progress is None else progress

    history = History()
    plot = _make_live_plot() if live else None
    bar = _make_progress_bar(num_epochs, train_iter) if progress else None
    best_value, best_state = None, None
    start = time.perf_counter()
    try:
        for epoch in range(1, num_epochs + 1):
            train_values = _train_epoch(
                model, loss_fn, optimizer, train_iter, metrics, device, grad_clip, epoch, bar
            )
            values = {f"train_{k}": v for k, v in train_values.items()}
            if val_iter is not None:
                val_values = evaluate(model, val_iter, loss_fn, metrics, device)
                values.update({f"val_{k}": v for k, v in val_values.items()})
            if scheduler is not None:
                scheduler.step()
            history.log(time.perf_counter() - start, **values)
            if keep_best is not None:
                if keep_best not in values:
                    raise KeyError(f"keep_best={keep_best!r} is not recorded; use one of {sorted(values)}.")
                if _is_better(values[keep_best], best_value, keep_best):
                    best_value, history.best_epoch = values[keep_best], epoch
                    best_state = copy.deepcopy(model.state_dict())
            if plot is not None:
                plot.update(history)
            elif verbose and not interactive:
                print(history.summary(), flush=True)
            if on_epoch_end is not None and on_epoch_end(epoch, history):
                history.stopped_early = True
                break
    finally:
        if bar is not None:
            bar.close()
        if plot is not None:
            plot.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    if verbose and interactive:
        note = f" (kept epoch {history.best_epoch}, best {keep_best})" if best_state is not None else ""
        print(history.summary() + note)
    return history


def _train_epoch(model, loss_fn, optimizer, train_iter, metrics, device, grad_clip, epoch, bar):
    """One pass over ``train_iter``; returns the example-weighted mean loss and metrics."""
    model.train()
    total_loss, count = 0.0, 0
    metric_totals = dict.fromkeys(metrics, 0.0)
    for batch_index, batch in enumerate(train_iter, start=1):
        *xs, y = _to_device(batch, device)
        y_hat = model(*xs)
        loss = loss_fn(y_hat, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        value, n = loss.item(), len(y)
        if not math.isfinite(value):
            raise DivergenceError(_divergence_message(value, epoch, batch_index, _current_lr(optimizer)))
        total_loss += value * n
        count += n
        if metrics:
            with torch.no_grad():
                for name, metric in metrics.items():
                    metric_totals[name] += metric(y_hat, y) * n
        if bar is not None:
            bar.update(1)
    if count == 0:
        raise ValueError("The training iterator yielded no batches; check batch_size and the data.")
    return {"loss": total_loss / count, **{k: v / count for k, v in metric_totals.items()}}


def _make_progress_bar(num_epochs: int, train_iter: Iterable):
    from tqdm.auto import tqdm

    try:
        total = num_epochs * len(train_iter)  # type: ignore[arg-type]
    except TypeError:
        total = None
    return tqdm(total=total, unit="batch", mininterval=0.25, leave=False)


def _make_live_plot():
    from helpers.plotting import LivePlot

    return LivePlot()
