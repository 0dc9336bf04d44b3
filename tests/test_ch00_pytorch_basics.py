"""Chapter 0's from-scratch code, imported from the notebook, against PyTorch."""

import ast
import pickle
import random
import re
import time

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from helpers import data
from helpers.plotting import figure_to_png
from notebook_code import load_notebook

ch0 = load_notebook("00_pytorch_basics")


def _random_shape(gen: random.Random, max_ndim: int = 5) -> tuple[int, ...]:
    return tuple(gen.choice([0, 1, 1, 1, 2, 3, 4]) for _ in range(gen.randint(0, max_ndim)))


def _shape_pair(gen: random.Random) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two random shapes; half of the time the second is derived from the first (mostly compatible)."""
    a = _random_shape(gen)
    if gen.random() < 0.5:
        return a, _random_shape(gen)
    tail = a[len(a) - gen.randint(0, len(a)):] if a else ()
    b = tuple(s if gen.random() < 0.6 else gen.choice([1, 1, 2]) for s in tail)
    extra = tuple(gen.choice([1, 2, 3]) for _ in range(gen.randint(0, 2)))
    return (extra + b, a) if gen.random() < 0.5 else (a, extra + b)


def _torch_broadcast(*shapes):
    try:
        return tuple(torch.broadcast_shapes(*shapes))
    except RuntimeError:
        return None


def _ours(fn, *shapes):
    try:
        return fn(*shapes)
    except ValueError:
        return None


# --- broadcasting -------------------------------------------------------------------------------

def test_broadcast_shape_equals_torch_broadcast_shapes_on_random_pairs():
    gen = random.Random(2024)
    outcomes = {"compatible": 0, "incompatible": 0}
    for _ in range(3000):
        a, b = _shape_pair(gen)
        expected = _torch_broadcast(a, b)
        assert _ours(ch0.broadcast_shape, a, b) == expected, (a, b)
        assert _ours(ch0.broadcast_shape, b, a) == expected, (b, a)
        outcomes["compatible" if expected is not None else "incompatible"] += 1
    assert min(outcomes.values()) >= 500, outcomes  # both kinds are well represented


def test_broadcast_shape_takes_any_sequence_and_keeps_empty_dimensions():
    assert ch0.broadcast_shape(torch.Size([3, 1]), [4]) == (3, 4)
    assert ch0.broadcast_shape((), ()) == ()
    assert ch0.broadcast_shape((1,), (0,)) == (0,)  # 1 against 0 is 0, not max(1, 0)
    assert ch0.broadcast_shape((2, 1, 0), (5, 1)) == (2, 5, 0)


def test_broadcast_error_names_the_clash_and_suggests_repairs_that_work():
    with pytest.raises(ValueError) as error:
        ch0.broadcast_shape((3, 2), (4,))
    message = str(error.value)
    for part in ("(3, 2)", "(4,)", "dimension -1", "size 2 in the first and 4 in the second", "neither is 1",
                 "(3, 1) with (4,)", "(3, 2) with (1,)"):
        assert part in message, part
    gen = random.Random(7)
    checked = 0
    while checked < 300:
        a, b = _shape_pair(gen)
        if _torch_broadcast(a, b) is not None:
            continue
        with pytest.raises(ValueError) as error:
            ch0.broadcast_shape(a, b)
        pattern = r"e\.g\. (\(.*?\)) with (\(.*?\)), or (\(.*?\)) with (\(.*?\)) \("
        repairs = re.search(pattern, str(error.value))
        assert repairs, str(error.value)
        first, b_kept, a_kept, second = (ast.literal_eval(g) for g in repairs.groups())
        assert (b_kept, a_kept) == (b, a)
        assert _torch_broadcast(first, b) is not None and _torch_broadcast(a, second) is not None, (a, b)
        checked += 1


def test_broadcast_error_counts_every_clashing_dimension():
    with pytest.raises(ValueError, match=r"dimension -2 clashes too"):
        ch0.broadcast_shape((3, 2, 5), (4, 3))
    with pytest.raises(ValueError, match=r"dimensions -2, -3 clash too"):
        ch0.broadcast_shape((2, 3, 4), (5, 6, 7))
    assert ch0.clashing_dims((3, 2, 5), (4, 3)) == [-1, -2]
    assert ch0.align_shapes((4,), (2, 3, 1)) == ((1, 1, 4), (2, 3, 1))


@pytest.mark.parametrize("bad", [(3, -1), ("3",), (2.5,), (True, 2), 3, None])
def test_broadcast_shape_rejects_what_is_not_a_shape(bad):
    with pytest.raises(ValueError, match="shape_a must"):
        ch0.broadcast_shape(bad, (1,))


def test_broadcast_shapes_solution_equals_torch_on_random_triples():
    gen = random.Random(5)
    for _ in range(1000):
        shapes = [_random_shape(gen, 3) for _ in range(3)]
        assert _ours(ch0.broadcast_shapes, *shapes) == _torch_broadcast(*shapes), shapes
    assert ch0.broadcast_shapes() == ()


def test_stretch_is_a_real_copy_of_expand():
    gen = random.Random(11)
    checked = 0
    while checked < 300:
        a, b = _shape_pair(gen)
        target = _torch_broadcast(a, b)
        if target is None:
            continue
        x = torch.randn(a)
        stretched = ch0.stretch(x, target)
        assert torch.equal(stretched, x.expand(target)), (a, target)
        assert stretched.is_contiguous() and (stretched.numel() == 0 or stretched.data_ptr() != x.data_ptr())
        checked += 1


@pytest.mark.parametrize("shape, target", [((3,), (2,)), ((2, 3), (3,)), ((2, 3), (4, 3)), ((0,), (2,))])
def test_stretch_refuses_targets_that_change_the_tensor(shape, target):
    with pytest.raises(ValueError):
        ch0.stretch(torch.zeros(shape), target)


def test_row_major_strides_equal_torch():
    gen = random.Random(3)
    for _ in range(500):
        shape = _random_shape(gen, 6)
        assert ch0.row_major_strides(shape) == torch.empty(shape).stride(), shape


def test_stack_by_cat_equals_torch_stack():
    gen = torch.Generator().manual_seed(0)
    for shape in ((), (3,), (2, 3), (2, 0, 4)):
        tensors = [torch.randn(shape, generator=gen) for _ in range(3)]
        for dim in range(-len(shape) - 1, len(shape) + 1):
            assert torch.equal(ch0.stack_by_cat(tensors, dim), torch.stack(tensors, dim)), (shape, dim)
    with pytest.raises(ValueError, match="dim must be between -3 and 2"):
        ch0.stack_by_cat([torch.zeros(2, 3)], dim=3)


# --- autograd ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n, d, seed", [(1, 1, 0), (8, 3, 1), (50, 7, 2)])
def test_neuron_gradients_by_hand_equal_autograd(n, d, seed):
    gen = torch.Generator().manual_seed(seed)
    X, t = torch.randn(n, d, generator=gen) * 2, torch.rand(n, generator=gen)
    w = torch.randn(d, generator=gen).requires_grad_()
    b = torch.randn((), generator=gen).requires_grad_()
    loss = ch0.neuron_loss(X, w, b, t)
    assert torch.allclose(loss, F.mse_loss(torch.sigmoid(X @ w + b), t))
    loss.backward()
    grad_w, grad_b = ch0.neuron_gradients(X, w.detach(), b.detach(), t)
    assert torch.allclose(grad_w, w.grad, atol=1e-6) and torch.allclose(grad_b, b.grad, atol=1e-6)


# --- data -------------------------------------------------------------------------------------

def test_tensor_pairs_is_a_dataset_that_counts_its_calls():
    X, y = torch.arange(12.0).reshape(6, 2), torch.arange(6)
    pairs = ch0.TensorPairs(X, y)
    assert len(pairs) == 6 and pairs.calls == 0
    x3, y3 = pairs[3]
    assert torch.equal(x3, X[3]) and y3 == 3 and pairs.calls == 1
    with pytest.raises(ValueError, match="6 rows in X and 5 in y"):
        ch0.TensorPairs(X, y[:5])


@pytest.mark.parametrize("batch_size", [1, 3, 4, 10, 64])
@pytest.mark.parametrize("drop_last", [False, True])
def test_data_loader_over_tensor_pairs_equals_make_loader_without_shuffling(batch_size, drop_last):
    X, y = torch.randn(10, 3), torch.arange(10)
    theirs = list(DataLoader(ch0.TensorPairs(X, y), batch_size=batch_size, drop_last=drop_last))
    ours = list(data.make_loader(X, y, batch_size=batch_size, shuffle=False, drop_last=drop_last))
    assert len(theirs) == len(ours)
    for (X_t, y_t), (X_o, y_o) in zip(theirs, ours, strict=True):
        assert torch.equal(X_t, X_o) and torch.equal(y_t, y_o)


def test_every_loader_of_the_chapter_gives_every_example_once_per_epoch():
    X, y = torch.randn(53, 2), torch.arange(53)
    pairs = ch0.TensorPairs(X, y)
    loaders = [DataLoader(pairs, batch_size=8, shuffle=True), data.make_loader(X, y, batch_size=8, seed=0),
               ch0.slicing_data_loader(pairs, 8)]
    for loader in loaders:
        orders = []
        for _ in range(2):
            batches = list(loader)
            labels = torch.cat([y_batch for _, y_batch in batches])
            assert sorted(labels.tolist()) == list(range(53))
            assert all(torch.equal(X_batch, X[y_batch]) for X_batch, y_batch in batches)
            orders.append(labels.tolist())
        assert orders[0] != orders[1], "each epoch is shuffled anew"


def test_slicing_data_loader_calls_getitem_once_per_batch():
    pairs = ch0.TensorPairs(torch.randn(20, 2), torch.arange(20))
    batches = list(ch0.slicing_data_loader(pairs, 6))
    assert [len(y_batch) for _, y_batch in batches] == [6, 6, 6, 2] and pairs.calls == 4


def test_compare_loaders_alternates_and_drops_the_first_round(monkeypatch):
    order = []

    def fake_time_epoch(loader):
        order.append(loader)
        return float(len(order))

    monkeypatch.setattr(ch0, "time_epoch", fake_time_epoch)
    times = ch0.compare_loaders({"a": "A", "b": "B"}, repeats=3)
    assert order == ["A", "B"] * 4
    assert times == {"a": [3.0, 5.0, 7.0], "b": [4.0, 6.0, 8.0]}


def test_time_epoch_runs_through_the_whole_loader():
    seen = []
    seconds = ch0.time_epoch(seen.append(i) or i for i in range(5))
    assert seen == list(range(5)) and seconds >= 0


# --- modules, saving, loading -------------------------------------------------------------------

def test_linear_by_hand_equals_nn_linear():
    torch.manual_seed(3)
    ours = ch0.LinearByHand(5, 4)
    torch.manual_seed(3)
    reference = nn.Linear(5, 4)
    assert torch.equal(ours.weight, reference.weight) and torch.equal(ours.bias, reference.bias)
    assert [name for name, _ in ours.named_parameters()] == ["weight", "bias"]
    assert "num_inputs=5, num_outputs=4" in repr(ours)
    X = torch.randn(2, 7, 5)  # any leading dimensions, as nn.Linear
    assert torch.allclose(ours(X), reference(X), atol=1e-6)
    ours(X).pow(2).sum().backward()
    reference(X).pow(2).sum().backward()
    assert torch.allclose(ours.weight.grad, reference.weight.grad, atol=1e-5)
    assert torch.allclose(ours.bias.grad, reference.bias.grad, atol=1e-5)


def test_linear_by_hand_initialisation_stays_within_the_bound():
    torch.manual_seed(0)
    layer = ch0.LinearByHand(400, 50)
    bound = 1 / 20
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    assert layer.weight.abs().max() > 0.9 * bound  # uniform over the whole range, not a narrower one


def test_regressor_keeps_the_standardisation_in_buffers():
    mean, std = torch.tensor([500.0, 0.0]), torch.tensor([100.0, 0.01])
    net = ch0.make_regressor(2, 8, mean, std)
    assert [name for name, _ in net.named_parameters()] == ["1.weight", "1.bias", "3.weight", "3.bias"]
    assert [name for name, _ in net.named_buffers()] == ["0.mean", "0.std"]
    assert list(net.state_dict()) == ["0.mean", "0.std", "1.weight", "1.bias", "3.weight", "3.bias"]
    X = torch.randn(4, 2) * std + mean
    assert torch.allclose(net[0](X), (X - mean) / std)
    mean[0] = 0.0  # the layer keeps its own copy
    assert net[0].mean[0] == 500.0


def test_save_and_reload_restores_every_tensor(tmp_path):
    torch.manual_seed(0)
    net = ch0.make_regressor(3, 5, torch.randn(3), torch.rand(3) + 0.5)
    make_fresh = lambda: ch0.make_regressor(3, 5, torch.zeros(3), torch.ones(3))
    fresh, path = ch0.save_and_reload(net, make_fresh, tmp_path)
    assert path.parent == tmp_path and path.exists()
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, fresh.state_dict()[name]), name
    X = torch.randn(6, 3)
    with torch.no_grad():
        assert torch.equal(fresh(X), net(X))


def test_weights_only_refuses_the_file_that_runs_code(tmp_path, capsys):
    path = tmp_path / "suspicious.pt"
    torch.save({"weight": torch.ones(2), "extra": ch0.RunsCodeWhenLoaded()}, path)
    with pytest.raises(pickle.UnpicklingError) as error:
        torch.load(path, weights_only=True)
    assert "printed by code" not in capsys.readouterr().out, "weights_only=True must not run the file's code"
    reason = ch0.refusal_reason(error.value)
    assert "print" in reason and "\n" not in reason
    assert ch0.refusal_reason(RuntimeError("first line\n\nsecond line")) == "first line"


# --- the broadcasting explorer ------------------------------------------------------------------

@pytest.mark.parametrize("text, shape", [("3,1", (3, 1)), ("(3, 1)", (3, 1)), ("3 1", (3, 1)), (" 4 ", (4,)),
                                         ("4,", (4,)), ("[2,3]", (2, 3)), ("", ()), ("()", ()),
                                         ("0,2", (0, 2))])
def test_parse_shape_reads_the_usual_spellings(text, shape):
    assert ch0.parse_shape(text) == shape


@pytest.mark.parametrize("text", ["3,x", "-1", "2.5", "3;1"])
def test_parse_shape_explains_what_it_cannot_read(text):
    with pytest.raises(ValueError, match="Cannot read the shape"):
        ch0.parse_shape(text)


@pytest.mark.parametrize("shape, target, real_index", [((3, 1), (3, 4), (slice(None), 0)),
                                                       ((4,), (3, 4), (0, slice(None))),
                                                       ((2, 1, 4), (2, 3, 4), (slice(None), 0))])
def test_real_cells_mark_the_operand_s_own_elements(shape, target, real_index):
    real = ch0.real_cells(shape, target)
    expected = torch.zeros(target, dtype=torch.bool)
    expected[real_index] = True
    assert torch.equal(real, expected)
    assert int(real.sum()) == torch.Size(shape).numel()
    assert bool(ch0.real_cells((), ()))


def _numbers(ax):
    return sorted(float(t.get_text()) for t in ax.texts)


@pytest.mark.parametrize("op, fn", [("+", torch.add), ("-", torch.sub), ("*", torch.mul)])
def test_draw_broadcast_shows_the_operands_and_the_result(op, fn):
    fig, message = ch0.draw_broadcast("3,1", "4", op)
    try:
        assert f"a (3, 1) {op} b (4,) → result (3, 4)" in message
        assert "a (3, 1) is copied 4x along dim -1" in message
        assert "b (4,) is padded to (1, 4) and is copied 3x along dim -2" in message
        table, panel_a, panel_b, panel_out = fig.axes
        a, b = torch.tensor([[1], [2], [3]]), torch.tensor([10, 20, 30, 40])
        assert _numbers(panel_a) == sorted(a.expand(3, 4).flatten().tolist())
        assert _numbers(panel_b) == sorted(b.expand(3, 4).flatten().tolist())
        assert _numbers(panel_out) == sorted(fn(a, b).flatten().tolist())
    finally:
        plt.close(fig)


def test_draw_broadcast_draws_the_clash_and_warns():
    fig, message = ch0.draw_broadcast("2,3", "2", "+")
    try:
        assert fig is not None and len(fig.axes) == 1
        assert "cannot be broadcast" in message and "dimension -1" in message and "&#9888;" in message
        assert "✗" in [t.get_text() for t in fig.axes[0].texts]
    finally:
        plt.close(fig)


@pytest.mark.parametrize("shape_a, shape_b, result", [("7", "1", "(7,)"), ("1,1,1,1", "2", "(1, 1, 1, 2)"),
                                                      ("0,3", "3", "(0, 3)")])
def test_draw_broadcast_gives_the_shape_of_what_it_cannot_draw(shape_a, shape_b, result):
    fig, message = ch0.draw_broadcast(shape_a, shape_b, "+")
    try:
        assert f"result {result}" in message and "up to 3 dimensions of size 1 to 6" in message
    finally:
        plt.close(fig)


def test_draw_broadcast_raises_value_errors_for_bad_settings():
    with pytest.raises(ValueError, match="Cannot read the shape"):
        ch0.draw_broadcast("3,x", "4", "+")
    with pytest.raises(ValueError, match="op must be one of"):
        ch0.draw_broadcast("3", "3", "/")


@pytest.mark.parametrize("shape_a, shape_b",
                         [("3,1", "4"), ("2,1,4", "3,1"), ("6,6,6", "6"), ("6,1,6", "6,1")])
def test_draw_broadcast_updates_fast(shape_a, shape_b):
    # The goal is under 0.3 s per update; the bound leaves room for a busy CI machine.
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fig, _ = ch0.draw_broadcast(shape_a, shape_b, "+")
        figure_to_png(fig, tight=False)
        best = min(best, time.perf_counter() - start)
    assert best < 0.45, f"{shape_a} with {shape_b}: {best:.2f} s"


def test_the_explorer_is_driven_by_its_controls():
    explorer = ch0.make_broadcast_explorer()  # strict mode in the tests: a bug would raise
    assert explorer.message.startswith("a (3, 1) + b (4,) → result (3, 4)")
    first_image = explorer.image.value
    assert first_image
    with explorer.hold_updates():
        explorer.controls["shape_a"].value, explorer.controls["shape_b"].value = "2,1,4", "3,1"
    assert "result (2, 3, 4)" in explorer.message and explorer.image.value != first_image
    explorer.controls["shape_b"].value = "3"
    assert explorer.message.startswith("⚠ Shapes (2, 1, 4) and (3,) cannot be broadcast")
    explorer.controls["shape_b"].value = "3,x"
    assert "Cannot read the shape '3,x'" in explorer.message
    explorer.controls["shape_b"].value = "3,1"
    explorer.controls["op"].value = "*"
    assert explorer.message.startswith("a (2, 1, 4) * b (3, 1) → result (2, 3, 4)")
