"""Training: one run's bookkeeping for any loop, the batch contract, and ``fit`` for the common case.

Three layers, from the most general:

* :class:`TrainingRun` is what every training loop needs *around* its optimisation step: a
  ``tqdm`` progress bar, one live figure of the curves (in a notebook) or one compact line per
  epoch (elsewhere), a :class:`History`, the divergence check with a message that names the
  learning rate, keeping the weights of the best epoch, early stopping, timing, and following the
  machine's load with the number of CPU threads (:func:`helpers.config.adapt_threads`). A hand-written
  loop uses it directly (a GAN with two optimizers and two losses, BERT pre-training with an MLM
  and an NSP loss, a language model that carries its hidden state across batches)::

      run = TrainingRun(num_epochs, len(loader), optimizers={"D": opt_D, "G": opt_G})
      for epoch in run.epochs():
          for X, _ in loader:
              ...                                   # the chapter's own steps
              run.step(len(X), d_loss=loss_D, g_loss=loss_G)
          run.end_epoch(val_fid=fid(G))
      history = run.history

* The batch contract: a batch may be any nest of tensors (tuples, lists, dicts). :func:`to_device`
  moves every tensor of a nest; a *split hook* (:func:`split_batch` by default) turns a batch into a
  :class:`Batch`: the model's inputs, the target the loss compares with, and the number of examples
  (the batch's weight in the epoch averages).
* :func:`fit` is the common loop, one user of :class:`TrainingRun`: forward, loss, backward, step
  for any model, loss, optimizer and iterators. Its overhead over a bare loop is measured in
  ``tests/test_training.py`` and ``benchmarks/``.

Also here: :func:`evaluate`, :func:`accuracy`, :func:`make_optimizer` (the course's one optimizer
factory), :func:`model_device` and :func:`train_with` (the plain function behind the learning-rate
and batch-size widgets).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from helpers.config import CpuClock, adapt_threads, check_device, default_device

Metric = Callable[[Any, Any], float]


class DivergenceError(RuntimeError):
    """Raised when a training loss becomes nan or inf; the message names the learning rate."""


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


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (or buffer); the CPU for a model that has neither.
    Evaluation and decoding run there."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move an optimizer's state tensors (momentum buffers, AdaGrad's sums, ...) to ``device``, as
    ``Optimizer.load_state_dict`` would: ``fit`` moves the model after the optimizer was made, and
    some optimizers (AdaGrad) create their state at once. Step counters stay where torch keeps them."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if key != "step" and isinstance(value, torch.Tensor) and value.device != device:
                state[key] = value.to(device)


def training_device(device: torch.device | str | None = None) -> torch.device:
    """Where a training function puts the model and its batches: ``device`` if given (checked by
    :func:`helpers.config.check_device`: a device the machine lacks is a clear error), else the
    device :func:`helpers.setup` chose (:func:`helpers.config.default_device`)."""
    return check_device(device) if device is not None else default_device()


# ---------------------------------------------------------------------------------------------
# The batch contract
# ---------------------------------------------------------------------------------------------


def map_tensors(obj, fn):
    """Apply ``fn`` to every tensor in a nest of tuples, lists and dicts; keep everything else."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple):
        return tuple([map_tensors(o, fn) for o in obj])
    if isinstance(obj, list):
        return [map_tensors(o, fn) for o in obj]
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    return obj


def to_device(batch, device: torch.device | str):
    """Move every tensor of a batch (any nest of tuples, lists and dicts) to ``device``.

    A tuple of tensors that are all there already (training on the CPU) is returned as it is.
    """
    if not isinstance(device, torch.device):
        device = torch.device(device)
    if type(batch) is tuple and all(type(t) is torch.Tensor and t.device == device for t in batch):
        return batch
    return map_tensors(batch, lambda t: t.to(device, non_blocking=True))


def first_dim(obj) -> int:
    """The first dimension of the first tensor in a nest: the number of examples it holds."""
    if isinstance(obj, torch.Tensor):
        if obj.ndim == 0:
            raise ValueError("A batch's target is a 0-d tensor, so it holds no count of examples; "
                             "give a split hook that returns Batch(inputs, target, size).")
        return obj.shape[0]
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (tuple, list)) else ()
    for item in items:
        try:
            return first_dim(item)
        except LookupError:
            continue
    raise LookupError(f"No tensor in {type(obj).__name__} to count the examples of the batch by.")


@dataclass(slots=True)
class Batch:
    """One minibatch as the training loop sees it: the model is called as
    ``model(*inputs, **kwargs)``, the loss as ``loss_fn(output, target)``, and ``size`` (the number
    of examples) weighs the batch in the epoch averages."""

    inputs: tuple
    target: Any
    size: int
    kwargs: dict = field(default_factory=dict)


def split_batch(batch) -> Batch:
    """The default split hook of :func:`fit` and :func:`evaluate`.

    * a tuple or list ``(*inputs, target)``: the model gets the inputs as positional arguments
      (``(X, y)`` is the common case);
    * a dict with a ``"target"`` entry: the model gets the other entries as keyword arguments.

    The batch size is the first dimension of the first tensor of the target. For any other layout
    (a target made of several tensors, inputs that must be rearranged, e.g. teacher forcing) pass
    your own hook ``split_batch=lambda batch: Batch(inputs, target, size)``.
    """
    if type(batch) is tuple and len(batch) == 2 and type(batch[1]) is torch.Tensor and batch[1].ndim:
        return Batch((batch[0],), batch[1], batch[1].shape[0])  # (X, y): the common case, kept cheap
    if isinstance(batch, (tuple, list)):
        if len(batch) < 2:
            raise ValueError(f"A batch of {len(batch)} element cannot be split into (*inputs, target); "
                             "yield (X, y) pairs or pass split_batch= to say how to split it.")
        *inputs, target = batch
        return Batch(tuple(inputs), target, first_dim(target))
    if isinstance(batch, Mapping):
        if "target" not in batch:
            raise ValueError(f"A dict batch needs a 'target' entry (it has {sorted(batch)}); rename the "
                             "label's key to 'target' or pass split_batch= to say how to split it.")
        kwargs = {key: value for key, value in batch.items() if key != "target"}
        return Batch((), batch["target"], first_dim(batch["target"]), kwargs)
    raise TypeError(f"A batch must be a tuple, list or dict of tensors, got {type(batch).__name__}; "
                    "pass split_batch= to say how to split it.")


# ---------------------------------------------------------------------------------------------
# History and the training run
# ---------------------------------------------------------------------------------------------


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


DIRECTIONS = ("min", "max")


def _check_keep_best(keep_best) -> tuple[str, str] | None:
    if keep_best is None:
        return None
    if isinstance(keep_best, str) or len(keep_best) != 2 or keep_best[1] not in DIRECTIONS:
        raise ValueError(f"keep_best={keep_best!r}: give the value and its direction, e.g. "
                         "keep_best=('val_acc', 'max') or keep_best=('val_loss', 'min').")
    return keep_best[0], keep_best[1]


def _learning_rates(optimizers) -> dict[str, float]:
    if optimizers is None:
        return {}
    if isinstance(optimizers, torch.optim.Optimizer):
        optimizers = {"": optimizers}
    return {name: opt.param_groups[0]["lr"] for name, opt in optimizers.items()}


def _divergence_message(name: str, value: float, epoch: int, batch: int, lrs: Mapping[str, float]) -> str:
    what = "the loss" if name == "loss" else f"{name}"
    message = f"Training diverged: {what} became {value} at epoch {epoch}, batch {batch}."
    if list(lrs) == [""]:
        lr = lrs[""]
        return message + (f" The learning rate lr={lr:g} is probably too large; try a smaller one "
                          f"(e.g. lr={lr / 10:g}).")
    if lrs:
        rates = ", ".join(f"{key} lr={lr:g}" for key, lr in lrs.items())
        return message + f" The learning rates ({rates}) are probably too large; try smaller ones."
    return message + " Try a smaller learning rate."


def _as_float(value) -> float:
    return value.item() if isinstance(value, torch.Tensor) else float(value)


def _length(iterable) -> int | None:
    try:
        return len(iterable)
    except TypeError:
        return None


class TrainingRun:
    """The bookkeeping of one training run, for ``fit`` and for hand-written loops alike.

    ``num_epochs`` and ``num_batches`` (per epoch, for the progress bar; ``None`` if unknown) size
    the run. Per batch, :meth:`step` takes the batch's number of examples and its values (losses,
    metrics: tensors or floats); it checks them for nan/inf (raising :class:`DivergenceError` with
    the learning rates of ``optimizers``, one optimizer or a dict of named ones) and accumulates
    example-weighted means. Per epoch, :meth:`end_epoch` records those means as ``train_<name>``
    together with any values it is given (e.g. ``val_loss``), updates the live figure or prints one
    line, and keeps the best weights of ``model`` (a module; pass an ``nn.ModuleDict`` to keep
    several) when ``keep_best=('val_acc', 'max')`` (or ``'min'``) improves. With ``patience`` the
    run stops once that value has not improved for ``patience`` epochs.

    Iterate over :meth:`epochs` (it stops early when asked to); when the loop ends, breaks or
    raises (or a ``with run:`` block around it ends), the run closes the bar and the figure,
    restores the best weights (not after a divergence) and, in a notebook, prints its final line.
    ``run.history`` is the :class:`History`. ``live`` (live figure) and ``progress`` (tqdm bar)
    default to True in a notebook.
    """

    def __init__(
        self,
        num_epochs: int,
        num_batches: int | None = None,
        *,
        optimizers: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer] | None = None,
        model: nn.Module | None = None,
        keep_best: tuple[str, str] | None = None,
        patience: int | None = None,
        live: bool | None = None,
        progress: bool | None = None,
        verbose: bool = True,
    ) -> None:
        if not isinstance(num_epochs, int) or num_epochs < 1:
            raise ValueError(f"num_epochs must be at least 1, got {num_epochs!r}.")
        self.num_epochs, self.num_batches = num_epochs, num_batches
        self.optimizers = optimizers
        self.keep_best = _check_keep_best(keep_best)
        if keep_best is not None and model is None:
            raise ValueError("keep_best needs the model whose best weights to keep: pass model=.")
        if patience is not None and (self.keep_best is None or patience < 1):
            raise ValueError("Early stopping needs keep_best=(value, direction) and patience >= 1.")
        self.model, self.patience, self.verbose = model, patience, verbose
        self.interactive = in_notebook()
        self.live = self.interactive if live is None else live
        self.progress = self.interactive if progress is None else progress
        self.history = History()
        self.epoch = 0
        self.best_value: float | None = None
        self._best_state = None
        self._stop = self._diverged = self._closed = False
        self._bar = self._plot = None
        self._start = 0.0
        self._reset_epoch()

    # -- the loop -------------------------------------------------------------------------------

    def epochs(self) -> Iterator[int]:
        """Yield the epoch numbers 1, 2, ...; stop early after :meth:`stop` or when patience runs out."""
        self._start = time.perf_counter()
        if self.progress:
            self._bar = _make_progress_bar(self.num_epochs, self.num_batches)
        if self.live:
            from helpers.plotting import LivePlot

            self._plot = LivePlot()
        try:
            for epoch in range(1, self.num_epochs + 1):
                self.epoch = epoch
                self._reset_epoch()
                self._clock = CpuClock()
                yield epoch
                if self._stop:
                    self.history.stopped_early = True
                    break
        finally:
            self.close()

    def step(self, n: int = 1, **values) -> None:
        """Record one batch of ``n`` examples: its losses and metrics (tensors or floats)."""
        self._batch += 1
        sums = self._sums
        for name, value in values.items():
            value = value.item() if isinstance(value, torch.Tensor) else float(value)
            if not math.isfinite(value):
                self._diverged = True
                raise DivergenceError(_divergence_message(name, value, self.epoch, self._batch,
                                                          _learning_rates(self.optimizers)))
            sums[name] = sums[name] + value * n if name in sums else value * n
        self._count += n
        if self._bar is not None:
            self._bar.update(1)

    def end_epoch(self, **values: float) -> dict[str, float]:
        """Close the epoch: record the batch means as ``train_<name>`` and ``values`` as given."""
        if self._batch == 0:
            raise ValueError("The training iterator yielded no batches; check batch_size and the data.")
        if not self._count:
            raise ValueError("Every batch of this epoch had 0 examples; check the sizes given to step().")
        record = {f"train_{name}": total / self._count for name, total in self._sums.items()}
        record.update({name: _as_float(value) for name, value in values.items()})
        self.history.log(time.perf_counter() - self._start, **record)
        self._track_best(record)
        self._check_threads()
        if self._plot is not None:
            self._plot.update(self.history)
        elif self.verbose and not self.interactive:
            print(self.history.summary(), flush=True)
        return record

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stop(self) -> None:
        """Ask the run to stop after the current epoch (early stopping by hand)."""
        self._stop = True

    @property
    def seconds(self) -> float:
        """Wall time since the first epoch began."""
        return time.perf_counter() - self._start

    def close(self) -> None:
        """Close the bar and the figure, restore the best weights, print the final line (once)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        if self._plot is not None:
            self._plot.close()
        kept = self._best_state is not None and not self._diverged
        if kept:
            self.model.load_state_dict(self._best_state)
        if self.verbose and self.interactive and self.history.num_epochs:
            note = ""
            if kept:
                note = f" (kept epoch {self.history.best_epoch}, best {self.keep_best[0]})"
            print(self.history.summary() + note)

    # -- internals ------------------------------------------------------------------------------

    def _check_threads(self) -> None:
        """After an epoch of a second or more, follow the machine's load (see config.adapt_threads)."""
        clock = getattr(self, "_clock", None)
        if clock is None or clock.seconds < 1.0:
            return
        others = clock.others_busy()
        note = adapt_threads(others) if others is not None else None
        if note and self.verbose:
            print(note, flush=True)

    def _reset_epoch(self) -> None:
        self._sums: dict[str, float] = {}
        self._count = 0
        self._batch = 0

    def _track_best(self, record: Mapping[str, float]) -> None:
        if self.keep_best is None:
            return
        key, direction = self.keep_best
        if key not in record:
            raise KeyError(f"keep_best={key!r} is not recorded; use one of {sorted(record)}.")
        value = record[key]
        improved = self.best_value is None or (value < self.best_value if direction == "min"
                                               else value > self.best_value)
        if improved:
            self.best_value, self.history.best_epoch = value, self.epoch
            self._best_state = copy.deepcopy(self.model.state_dict())
        elif self.patience is not None and self.epoch - self.history.best_epoch >= self.patience:
            self.stop()


def _make_progress_bar(num_epochs: int, num_batches: int | None):
    from tqdm.auto import tqdm

    total = num_epochs * num_batches if num_batches is not None else None
    return tqdm(total=total, unit="batch", mininterval=0.25, leave=False)


# ---------------------------------------------------------------------------------------------
# evaluate and fit
# ---------------------------------------------------------------------------------------------


def evaluate(
    model: nn.Module,
    data_iter: Iterable,
    loss_fn: Callable | None = None,
    metrics: Mapping[str, Metric] | None = None,
    device: torch.device | str | None = None,
    split_batch: Callable[[Any], Batch] = split_batch,
) -> dict[str, float]:
    """Average loss and metrics of ``model`` over ``data_iter`` (in eval mode, without gradients).

    Returns e.g. ``{'loss': 0.41, 'acc': 0.86}``; each value is weighted by the batch size that
    ``split_batch`` reports (see :func:`split_batch`).
    """
    device = torch.device(device) if device is not None else model_device(model)
    metrics = dict(metrics or {})
    was_training = model.training
    model.eval()
    totals = {"loss": 0.0, **{name: 0.0 for name in metrics}}
    count = 0
    with torch.no_grad():
        for batch in data_iter:
            b = split_batch(to_device(batch, device))
            y_hat = model(*b.inputs, **b.kwargs)
            if loss_fn is not None:
                totals["loss"] += loss_fn(y_hat, b.target).item() * b.size
            for name, metric in metrics.items():
                totals[name] += metric(y_hat, b.target) * b.size
            count += b.size
    model.train(was_training)
    if count == 0:
        raise ValueError("The evaluation iterator yielded no examples.")
    if loss_fn is None:
        del totals["loss"]
    return {name: total / count for name, total in totals.items()}


def fit(
    model: nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    train_iter: Iterable,
    num_epochs: int,
    val_iter: Iterable | None = None,
    metrics: Mapping[str, Metric] | None = None,
    device: torch.device | str | None = None,
    scheduler: Any = None,
    grad_clip: float | None = None,
    keep_best: tuple[str, str] | None = None,
    patience: int | None = None,
    on_epoch_end: Callable[[int, History], bool | None] | None = None,
    split_batch: Callable[[Any], Batch] = split_batch,
    live: bool | None = None,
    progress: bool | None = None,
    verbose: bool = True,
) -> History:
    """Train ``model`` for ``num_epochs`` epochs and return a :class:`History`.

    The model moves to ``device`` (default: the one :func:`helpers.setup` chose, see
    :func:`training_device`) and stays there. Each batch of ``train_iter`` moves there and is split by
    ``split_batch`` into the model's inputs and the target (default: ``(*inputs, y)`` tuples, see
    :func:`split_batch`); then ``loss_fn(model(*inputs), target)`` must return the batch's mean loss.
    Recorded per epoch: ``train_loss`` and ``train_<metric>`` (example-weighted means over the
    epoch's batches as they trained), and ``val_loss``/``val_<metric>`` when ``val_iter`` is given.

    Options: ``scheduler`` is stepped once per epoch; ``grad_clip`` clips the gradient norm;
    ``keep_best=('val_acc', 'max')`` (or ``('val_loss', 'min')``) restores the weights of the best
    epoch at the end, and with ``patience`` training stops once that value has not improved for
    ``patience`` epochs; ``on_epoch_end(epoch, history)`` may return True to stop. ``live`` (live
    figure) and ``progress`` (tqdm bar) default to True in a notebook. The bookkeeping is a
    :class:`TrainingRun`, which a hand-written loop can use directly.

    Raises :class:`DivergenceError` if the loss becomes nan or inf.
    """
    device = training_device(device)
    model.to(device)
    move_optimizer_state(optimizer, device)
    metrics = dict(metrics or {})
    run = TrainingRun(num_epochs, _length(train_iter), optimizers=optimizer, model=model,
                      keep_best=keep_best, patience=patience, live=live, progress=progress, verbose=verbose)
    with run:
        for epoch in run.epochs():
            model.train()
            for batch in train_iter:
                b = split_batch(to_device(batch, device))
                y_hat = model(*b.inputs, **b.kwargs) if b.kwargs else model(*b.inputs)
                loss = loss_fn(y_hat, b.target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                if metrics:
                    with torch.no_grad():
                        scores = {name: metric(y_hat, b.target) for name, metric in metrics.items()}
                    run.step(b.size, loss=loss, **scores)
                else:
                    run.step(b.size, loss=loss)
            val_values = {}
            if val_iter is not None:
                val_values = evaluate(model, val_iter, loss_fn, metrics, device, split_batch)
            if scheduler is not None:
                scheduler.step()
            run.end_epoch(**{f"val_{k}": v for k, v in val_values.items()})
            if on_epoch_end is not None and on_epoch_end(epoch, run.history):
                run.stop()
    return run.history


# ---------------------------------------------------------------------------------------------
# Optimizers and the widgets' training function
# ---------------------------------------------------------------------------------------------

OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")


def check_learning_rate(lr, name: str = "The learning rate") -> float:
    """``lr`` as a float if it is a positive finite number, else a ValueError that says so."""
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"{name} must be a positive number, got {lr!r}.")
    return float(lr)


def make_optimizer(name: str, params, lr: float, *, momentum: float = 0.9,
                   betas: tuple[float, float] = (0.9, 0.999), alpha: float = 0.99,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The course's one optimizer factory: a ``torch.optim`` optimizer by an explicit name.

    ``'sgd'`` (plain minibatch SGD), ``'momentum'`` (SGD with ``momentum``), ``'nesterov'`` (SGD with
    Nesterov ``momentum``; with ``momentum=0`` it is plain SGD), ``'adagrad'``, ``'rmsprop'``
    (squared-gradient decay ``alpha``), ``'adam'`` (``betas``), ``'adamw'`` (Adam with decoupled
    weight decay). ``weight_decay`` applies to all. The learning rate is checked here, once.
    """
    lr = check_learning_rate(lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name in ("momentum", "nesterov"):
        nesterov = name == "nesterov" and momentum > 0
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=alpha, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZER_NAMES)}.")


def train_with(
    lr: float,
    batch_size: int,
    num_epochs: int,
    *,
    make_model: Callable[[], nn.Module],
    loss_fn: Callable,
    train_data,
    val_data=None,
    metrics: Mapping | None = None,
    optimizer: str = "sgd",
    seed: int = 0,
    device: torch.device | str | None = None,
) -> History:
    """Train a fresh ``make_model()`` with the given learning rate and batch size; return its history.

    This is the plain function behind :class:`helpers.widgets.HyperparameterExplorer`. Everything
    else (model, data, initialisation, shuffling) is fixed by ``seed`` so that only ``lr`` and
    ``batch_size`` change between runs. ``optimizer`` is a name of :func:`make_optimizer`. Raises
    :class:`DivergenceError` when the loss blows up and ValueError for a bad setting.
    """
    from helpers.config import seed_everything
    from helpers.data import make_loader

    check_learning_rate(lr)
    if optimizer not in OPTIMIZER_NAMES:
        raise ValueError(f"Unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZER_NAMES)}.")
    seed_everything(seed)
    device = training_device(device)
    model = make_model().to(device)
    opt = make_optimizer(optimizer, model.parameters(), lr)
    train_iter = make_loader(*train_data, batch_size=batch_size, seed=seed, device=device)
    val_iter = None
    if val_data is not None:
        val_iter = make_loader(*val_data, batch_size=1024, shuffle=False, device=device)
    return fit(model, loss_fn, opt, train_iter, num_epochs, val_iter=val_iter, metrics=metrics,
               device=device, live=False, progress=False, verbose=False)
