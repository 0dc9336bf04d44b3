"""Synthetic data and fast minibatch iteration over in-memory tensors.

The course keeps its data sets small enough to live in memory as tensors. For such data a
``torch.utils.data.DataLoader`` spends most of its time indexing and collating one example at a
time; :class:`TensorLoader` slices whole minibatches out of the tensors instead, with the same
batching and shuffling semantics. ``make_loader`` is the factory the notebooks call, and
:func:`map_batches` turns each batch of any loader into what a model or ``fit`` expects (uint8
images to floats, a target sequence to a decoder input) without losing ``len()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch


def synthetic_regression(
    w: Sequence[float] | torch.Tensor,
    b: float,
    num_examples: int,
    noise: float = 0.01,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``y = X w + b + noise`` with ``X ~ N(0, 1)`` and Gaussian noise of std ``noise``.

    Returns ``X`` of shape ``(num_examples, len(w))`` and ``y`` of shape ``(num_examples, 1)``.
    The same seed always gives the same data, independent of the global random state.
    """
    w = torch.as_tensor(w, dtype=torch.float32).reshape(-1)
    if num_examples < 1:
        raise ValueError(f"num_examples must be at least 1, got {num_examples}.")
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(num_examples, len(w), generator=gen)
    y = X @ w + b + noise * torch.randn(num_examples, generator=gen)
    return X, y.reshape(-1, 1)


class TensorLoader:
    """Iterate over minibatches of equally long tensors, optionally reshuffled every epoch.

    Behaves like ``DataLoader(TensorDataset(*tensors), batch_size, shuffle, drop_last)``:
    ``len(loader)`` is the number of batches and iterating yields tuples of tensors. With a
    ``seed`` the sequence of shuffles is the same on every run, on every device. With a ``device``
    the tensors are copied there once, so that a GPU is not fed one small copy per batch.
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not tensors:
            raise ValueError("Give at least one tensor, e.g. TensorLoader(X, y, batch_size=32).")
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            sizes = ", ".join(str(len(t)) for t in tensors)
            raise ValueError(f"All tensors need the same first dimension; got sizes {sizes}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if device is not None:
            tensors = tuple(t.to(device) for t in tensors)
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else torch.initial_seed() % 2**63)

    @property
    def num_examples(self) -> int:
        return len(self.tensors[0])

    def __len__(self) -> int:
        n, bs = self.num_examples, self.batch_size
        return n // bs if self.drop_last else -(-n // bs)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n, bs = self.num_examples, self.batch_size
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        if order is not None and order.device != self.tensors[0].device:
            order = order.to(self.tensors[0].device)  # drawn on the CPU: the same shuffles everywhere
        for i in range(len(self)):
            if order is None:
                yield tuple(t[i * bs : (i + 1) * bs] for t in self.tensors)
            else:
                idx = order[i * bs : (i + 1) * bs]
                yield tuple(t[idx] for t in self.tensors)


def make_loader(
    *tensors: torch.Tensor,
    batch_size: int,
    shuffle: bool = True,
    drop_last: bool = False,
    seed: int | None = None,
    device: torch.device | str | None = None,
) -> TensorLoader:
    """Return a minibatch iterator over in-memory tensors (see :class:`TensorLoader`).

    Example: ``train_iter = make_loader(X, y, batch_size=32, seed=0)``. ``device`` (e.g.
    ``info.device``) keeps the tensors there; by default they stay where they are, and the training
    functions move each batch to the device they train on.
    """
    return TensorLoader(*tensors, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
                        device=device)


class MappedLoader:
    """The batches of ``loader``, each passed through ``fn``: see :func:`map_batches`."""

    def __init__(self, loader: Iterable, fn: Callable[..., Any]) -> None:
        if not hasattr(loader, "__len__"):
            raise TypeError(
                f"map_batches needs a loader with a length (len(loader)), got {type(loader).__name__}; "
                "wrap a TensorLoader, a DataLoader or a list of batches."
            )
        self.loader, self.fn = loader, fn

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield self.fn(*batch)


def map_batches(loader: Iterable, fn: Callable[..., Any]) -> MappedLoader:
    """A loader that yields ``fn(*batch)`` for every ``batch`` of ``loader``, computed lazily.

    ``len()`` is the wrapped loader's (so progress bars know the length), and every ``iter()``
    starts a new epoch of the wrapped loader (so a reshuffling loader still reshuffles). Use it to
    change a batch on the fly rather than storing a changed copy of the data, e.g. uint8 images
    to floats in [0, 1]:

        ``map_batches(train_iter, lambda X, y: (X.float() / 255, y))``
    """
    return MappedLoader(loader, fn)
