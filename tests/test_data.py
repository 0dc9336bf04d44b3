"""Synthetic regression data, the in-memory minibatch loader and the batch-mapping wrapper."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from helpers.data import MappedLoader, TensorLoader, make_loader, map_batches, synthetic_regression


def test_synthetic_regression_shapes_and_truth():
    X, y = synthetic_regression([2.0, -3.4], 4.2, 5000, noise=0.01, seed=0)
    assert X.shape == (5000, 2) and y.shape == (5000, 1)
    assert X.dtype == y.dtype == torch.float32
    # Least squares recovers the true parameters when the noise is small.
    design = torch.cat([X, torch.ones(5000, 1)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution.reshape(-1)
    assert torch.allclose(solution, torch.tensor([2.0, -3.4, 4.2]), atol=1e-2)
    residual = y - design @ solution.reshape(-1, 1)
    assert residual.std().item() == pytest.approx(0.01, rel=0.1)


def test_synthetic_regression_is_deterministic_and_independent_of_global_seed():
    torch.manual_seed(1)
    a = synthetic_regression([1.0], 0.0, 10, seed=5)
    torch.manual_seed(2)
    b = synthetic_regression([1.0], 0.0, 10, seed=5)
    c = synthetic_regression([1.0], 0.0, 10, seed=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_synthetic_regression_rejects_no_examples():
    with pytest.raises(ValueError, match="num_examples"):
        synthetic_regression([1.0], 0.0, 0)


def test_loader_covers_every_example_once_per_epoch():
    X = torch.arange(23).float().reshape(-1, 1)
    y = torch.arange(23)
    loader = make_loader(X, y, batch_size=5, seed=0)
    assert len(loader) == 5
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [5, 5, 5, 5, 3]
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(23))
    for xb, yb in batches:  # features and labels stay paired
        assert torch.equal(xb[:, 0].long(), yb)


def test_loader_reshuffles_each_epoch_and_repeats_for_a_seed():
    y = torch.arange(100)
    first = [b[0].tolist() for b in make_loader(y, batch_size=10, seed=1)]
    loader = make_loader(y, batch_size=10, seed=1)
    epoch1 = [b[0].tolist() for b in loader]
    epoch2 = [b[0].tolist() for b in loader]
    assert epoch1 == first
    assert epoch1 != epoch2
    assert epoch1 != sorted(epoch1)


def test_loader_without_shuffle_matches_torch_dataloader():
    X, y = torch.randn(37, 3), torch.randint(0, 5, (37,))
    ours = list(make_loader(X, y, batch_size=8, shuffle=False))
    theirs = list(DataLoader(TensorDataset(X, y), batch_size=8, shuffle=False))
    assert len(ours) == len(theirs)
    for (xa, ya), (xb, yb) in zip(ours, theirs, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_loader_drop_last():
    loader = make_loader(torch.arange(23), batch_size=5, drop_last=True, seed=0)
    assert len(loader) == 4
    assert all(len(b[0]) == 5 for b in loader)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_loader_rejects_a_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        TensorLoader(torch.arange(4), batch_size=batch_size)


def test_loader_rejects_tensors_of_different_lengths():
    with pytest.raises(ValueError, match="same first dimension; got sizes 4, 5"):
        make_loader(torch.arange(4), torch.arange(5), batch_size=2)


def test_map_batches_applies_fn_to_each_unpacked_batch_and_keeps_the_length():
    X, y = torch.arange(23, dtype=torch.uint8).reshape(-1, 1), torch.arange(23)
    loader = make_loader(X, y, batch_size=5, shuffle=False)
    mapped = map_batches(loader, lambda xb, yb: (xb.float() / 255, yb, len(yb)))
    assert isinstance(mapped, MappedLoader) and len(mapped) == len(loader) == 5
    batches = list(mapped)
    assert len(batches) == 5 and [b[2] for b in batches] == [5, 5, 5, 5, 3]
    for (xb, yb, _), (xr, yr) in zip(batches, loader, strict=True):
        assert xb.dtype == torch.float32 and torch.equal(xb, xr.float() / 255) and torch.equal(yb, yr)


def test_map_batches_is_lazy_and_each_iteration_is_a_new_epoch_of_the_loader():
    calls = []
    loader = make_loader(torch.arange(100), batch_size=10, seed=1)
    reference = make_loader(torch.arange(100), batch_size=10, seed=1)
    mapped = map_batches(loader, lambda b: calls.append(1) or b.tolist())
    assert calls == []  # nothing computed before iterating
    epoch1, epoch2 = list(mapped), list(mapped)
    assert len(calls) == 20
    assert epoch1 == [b[0].tolist() for b in reference] and epoch2 == [b[0].tolist() for b in reference]
    assert epoch1 != epoch2  # the wrapped loader reshuffled


def test_map_batches_wraps_any_sized_loader_and_nests():
    batches = [(torch.ones(2), torch.zeros(2)), (torch.ones(1), torch.zeros(1))]
    swapped = map_batches(map_batches(batches, lambda a, b: (b, a)), lambda a, b: (a.sum(), b.sum()))
    assert len(swapped) == 2 and [tuple(map(float, b)) for b in swapped] == [(0.0, 2.0), (0.0, 1.0)]
    assert len(map_batches(DataLoader(TensorDataset(torch.arange(7)), batch_size=3), lambda b: b)) == 3


def test_map_batches_needs_a_loader_with_a_length():
    with pytest.raises(TypeError, match="needs a loader with a length"):
        map_batches((b for b in [(1,)]), lambda b: b)
