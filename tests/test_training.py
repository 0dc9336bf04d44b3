"""The training loop: TrainingRun for hand-written loops, the batch contract, fit (convergence,
history, evaluation, divergence, best checkpoint, early stopping, overhead), the optimizer
factory and train_with."""

import math
import time

import pytest
import torch
from torch import nn

from helpers.data import make_loader, synthetic_regression
from helpers.training import (
    Batch,
    DivergenceError,
    History,
    TrainingRun,
    accuracy,
    evaluate,
    fit,
    make_optimizer,
    model_device,
    split_batch,
    to_device,
    train_with,
)


def linear_problem(batch_size=10, seed=0):
    X, y = synthetic_regression([2.0, -3.4], 4.2, 1000, seed=seed)
    return make_loader(X, y, batch_size=batch_size, seed=seed)


def classification_problem(n=512, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=gen)
    y = (X[:, 0] + X[:, 1] > 0).long()
    return X, y


def test_fit_recovers_linear_regression_parameters():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    history = fit(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.03),
                  linear_problem(), num_epochs=3, verbose=False)
    assert torch.allclose(model.weight.data, torch.tensor([[2.0, -3.4]]), atol=0.01)
    assert model.bias.item() == pytest.approx(4.2, abs=0.01)
    assert history.num_epochs == 3 and history.epochs == [1, 2, 3]
    assert history["train_loss"][-1] < 1e-3 < history["train_loss"][0]
    assert history.seconds == sorted(history.seconds)


def test_fit_records_train_and_validation_metrics():
    X, y = classification_problem()
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    history = fit(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.5),
                  make_loader(X, y, batch_size=32, seed=0), num_epochs=5,
                  val_iter=make_loader(X, y, batch_size=100, shuffle=False),
                  metrics={"acc": accuracy}, verbose=False)
    assert history.keys() == ["train_loss", "train_acc", "val_loss", "val_acc"]
    assert history["val_acc"][-1] > 0.95
    assert history.last()["val_acc"] == history["val_acc"][-1]
    assert "val_acc" in history and "epoch 5 | train_loss" in history.summary()


def test_fit_prints_one_compact_line_per_epoch_outside_a_notebook(capsys):
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    fit(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.03), linear_problem(),
        num_epochs=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("epoch 2 | train_loss ")


def test_fit_with_a_live_plot_outside_a_notebook_does_not_fail():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    history = fit(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.03),
                  linear_problem(), num_epochs=2, live=True, progress=True, verbose=False)
    assert history.num_epochs == 2


def test_divergence_stops_with_a_message_that_names_the_learning_rate():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    with pytest.raises(DivergenceError) as info:
        fit(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=10.0), linear_problem(),
            num_epochs=3, verbose=False)
    message = str(info.value)
    assert "diverged" in message and "lr=10" in message and "lr=1)" in message
    assert "epoch 1, batch" in message


def test_evaluate_weights_batches_by_size_and_restores_training_mode():
    X, y = classification_problem(n=10)
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.train()
    by_one = evaluate(model, make_loader(X, y, batch_size=1, shuffle=False), nn.CrossEntropyLoss(),
                      {"acc": accuracy})
    by_four = evaluate(model, make_loader(X, y, batch_size=4, shuffle=False), nn.CrossEntropyLoss(),
                       {"acc": accuracy})
    assert model.training
    assert by_one["loss"] == pytest.approx(by_four["loss"], rel=1e-6)
    assert by_one["acc"] == pytest.approx(by_four["acc"])
    with torch.no_grad():
        model.eval()
        expected = nn.functional.cross_entropy(model(X), y).item()
    assert by_one["loss"] == pytest.approx(expected, rel=1e-6)


def test_accuracy_accepts_logits_or_labels():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1, 1])
    assert accuracy(logits, y) == 0.75
    assert accuracy(torch.tensor([0, 1, 0, 1]), y) == 0.75


def test_keep_best_restores_the_weights_of_the_best_epoch():
    X, y = classification_problem()
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    snapshots = []

    def remember(epoch, history):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    history = fit(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=2.0),
                  make_loader(X, y, batch_size=16, seed=0), num_epochs=6,
                  val_iter=make_loader(X, y, batch_size=512, shuffle=False),
                  keep_best=("val_loss", "min"), on_epoch_end=remember, verbose=False)
    best = min(range(6), key=lambda i: history["val_loss"][i])
    assert history.best_epoch == best + 1
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshots[best][key])


def test_keep_best_names_the_available_keys_when_misspelled():
    model = nn.Linear(2, 1)
    with pytest.raises(KeyError, match="use one of \\['train_loss'\\]"):
        fit(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.01), linear_problem(),
            num_epochs=1, keep_best=("val_acc", "max"), verbose=False)


@pytest.mark.parametrize("keep_best", ["val_acc", ("val_acc",), ("val_acc", "highest")])
def test_keep_best_must_state_its_direction(keep_best):
    model = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="keep_best=\\('val_acc', 'max'\\)"):
        fit(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.01), linear_problem(),
            num_epochs=1, keep_best=keep_best, verbose=False)


def test_keep_best_max_keeps_the_highest_value_and_patience_stops_early():
    X, y = classification_problem()
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    accs = iter([0.5, 0.9, 0.7, 0.8, 0.6, 0.95])  # a fake metric: best at epoch 2 until epoch 4
    history = fit(model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1),
                  make_loader(X, y, batch_size=64, seed=0), num_epochs=6,
                  val_iter=make_loader(X, y, batch_size=512, shuffle=False),
                  metrics={"acc": lambda y_hat, y: next(accs) if y_hat.shape[0] == 512 else 0.0},
                  keep_best=("val_acc", "max"), patience=2, verbose=False)
    assert history["val_acc"] == [0.5, 0.9, 0.7, 0.8]
    assert history.best_epoch == 2 and history.stopped_early and history.num_epochs == 4


def test_on_epoch_end_can_stop_early_and_scheduler_steps_per_epoch():
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    history = fit(model, nn.MSELoss(), optimizer, linear_problem(), num_epochs=10,
                  scheduler=scheduler, on_epoch_end=lambda epoch, h: epoch == 3, verbose=False)
    assert history.num_epochs == 3 and history.stopped_early
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.02 / 8)


def test_grad_clip_bounds_the_update():
    X = torch.full((4, 1), 100.0)
    y = torch.zeros(4, 1)
    model = nn.Linear(1, 1, bias=False)
    nn.init.constant_(model.weight, 1.0)
    fit(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=1.0),
        make_loader(X, y, batch_size=4, shuffle=False), num_epochs=1, grad_clip=0.5, verbose=False)
    assert model.weight.item() == pytest.approx(0.5)


def test_history_reports_unknown_keys_clearly():
    history = History()
    history.log(1.0, train_loss=0.5)
    with pytest.raises(KeyError, match="No 'val_acc'.*\\['train_loss'\\]"):
        history["val_acc"]
    assert "no epochs" in History().summary()


def test_empty_iterator_and_zero_epochs_are_rejected():
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(ValueError, match="num_epochs"):
        fit(model, nn.MSELoss(), opt, linear_problem(), num_epochs=0)
    with pytest.raises(ValueError, match="yielded no batches"):
        fit(model, nn.MSELoss(), opt, [], num_epochs=1, verbose=False)


def _bare_loop(model, loss_fn, optimizer, loader, num_epochs):
    for _ in range(num_epochs):
        for X, y in loader:
            loss = loss_fn(model(X), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def test_fit_costs_little_over_a_bare_pytorch_loop():
    """Regression guard: fit within 1.15x of a bare loop (best of alternating runs).

    The target is 1.05 (1.02 to 1.04 measured on an idle 2-core machine); the guard is looser
    because CI machines are noisy. Each attempt compares the fastest of several alternating runs,
    since interference from other processes only adds time, but a burst of interference can still
    hit one attempt's fastest runs (a CI run once measured 1.156). So the guard fails only when
    three attempts in a row exceed it, which a real regression does and a noisy moment does not.
    ``python benchmarks/loop_overhead.py`` measures the ratio on a larger problem.
    """
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(2048, 784, generator=gen), torch.randint(0, 10, (2048,), generator=gen)

    def timed(use_fit):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        loader = make_loader(X, y, batch_size=64, seed=0)
        start = time.perf_counter()
        if use_fit:
            fit(model, nn.CrossEntropyLoss(), optimizer, loader, 2, verbose=False)
        else:
            _bare_loop(model, nn.CrossEntropyLoss(), optimizer, loader, 2)
        return time.perf_counter() - start

    def best_ratio():
        ours, bare = [], []
        for _ in range(7):
            ours.append(timed(True))
            bare.append(timed(False))
        return min(ours) / min(bare)

    timed(True), timed(False)  # warm-up
    ratios = []
    for _ in range(3):
        ratios.append(best_ratio())
        if ratios[-1] < 1.15:
            break
    assert all(math.isfinite(r) for r in ratios) and ratios[-1] < 1.15, (
        "fit/bare = " + ", ".join(f"{r:.3f}" for r in ratios))


# --------------------------------------------------------------------------------------------
# The batch contract
# --------------------------------------------------------------------------------------------


def test_split_batch_default_for_tuples_and_dicts_and_clear_errors():
    X, y = torch.zeros(5, 3), torch.arange(5)
    b = split_batch((X, y))
    assert b.inputs == (X,) and b.target is y and b.size == 5 and b.kwargs == {}
    b = split_batch([X, X[:, :1], y])
    assert len(b.inputs) == 2 and b.size == 5
    b = split_batch({"tokens": X, "segments": X, "target": {"mlm": y[:3], "nsp": y}})
    assert b.inputs == () and set(b.kwargs) == {"tokens", "segments"} and b.size == 3
    with pytest.raises(ValueError, match="'target' entry"):
        split_batch({"tokens": X, "labels": y})
    with pytest.raises(ValueError, match="split_batch="):
        split_batch((X,))
    with pytest.raises(TypeError, match="tuple, list or dict"):
        split_batch(X)


def test_to_device_moves_every_tensor_of_a_nest():
    batch = {"a": (torch.zeros(2), [torch.ones(3), "text"]), "b": 7}
    moved = to_device(batch, "meta")
    assert moved["a"][0].device.type == "meta" and moved["a"][1][0].device.type == "meta"
    assert moved["a"][1][1] == "text" and moved["b"] == 7


def test_fit_with_dict_batches_and_a_custom_split_hook_weights_by_its_size():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def forward(self, features, offset):
            return self.linear(features) + offset

    X, y = synthetic_regression([2.0, -3.4], 4.2, 64, seed=0)
    offset = torch.zeros(64, 1)
    dict_batches = [{"features": X[i : i + 16], "offset": offset[i : i + 16], "target": y[i : i + 16]}
                    for i in range(0, 64, 16)]
    torch.manual_seed(0)
    model = Net()
    history = fit(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.05), dict_batches, 2,
                  verbose=False)
    assert history.num_epochs == 2 and history["train_loss"][1] < history["train_loss"][0]
    # A hook that reports a batch size of 1 for the first batch and 100 for the others: the epoch
    # mean must weigh the batches by those sizes, not by len(target).
    seen = []

    def weighted(batch):
        features, target = batch
        size = 1 if not seen else 100
        seen.append(size)
        return Batch((features, torch.zeros(len(features), 1)), target, size)

    plain = [(X[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    torch.manual_seed(0)
    model = Net()
    losses = []
    loss_fn = nn.MSELoss()

    def recording_loss(y_hat, target):
        loss = loss_fn(y_hat, target)
        losses.append(loss.item())
        return loss

    history = fit(model, recording_loss, torch.optim.SGD(model.parameters(), lr=0.0), plain, 1,
                  split_batch=weighted, verbose=False)
    expected = (losses[0] * 1 + sum(losses[1:]) * 100) / 301
    assert history["train_loss"][0] == pytest.approx(expected)
    with_offset = lambda b: Batch((b[0], torch.zeros(16, 1)), b[1], 16)  # noqa: E731
    result = evaluate(model, plain, loss_fn, split_batch=with_offset)
    assert result["loss"] == pytest.approx(sum(losses) / 4, rel=1e-6)


def test_model_device_for_parameters_buffers_and_nothing():
    assert model_device(nn.Linear(2, 1)).type == "cpu"
    assert model_device(nn.Linear(2, 1, device="meta")).type == "meta"
    assert model_device(nn.BatchNorm1d(3, affine=False, device="meta")).type == "meta"
    assert model_device(nn.ReLU()).type == "cpu"  # no parameters: no StopIteration


# --------------------------------------------------------------------------------------------
# TrainingRun in a hand-written loop
# --------------------------------------------------------------------------------------------


def test_training_run_for_a_loop_with_two_optimizers_and_two_losses(capsys):
    torch.manual_seed(0)
    G, D = nn.Linear(2, 2), nn.Linear(2, 1)
    opt_G, opt_D = torch.optim.Adam(G.parameters(), lr=1e-3), torch.optim.Adam(D.parameters(), lr=2e-3)
    real = torch.randn(64, 2) + 3
    bce = nn.BCEWithLogitsLoss()
    run = TrainingRun(3, num_batches=4, optimizers={"G": opt_G, "D": opt_D})
    for _ in run.epochs():
        for i in range(4):
            X = real[i * 16 : (i + 1) * 16]
            fake = G(torch.randn(16, 2))
            d_loss = bce(D(X), torch.ones(16, 1)) + bce(D(fake.detach()), torch.zeros(16, 1))
            opt_D.zero_grad()
            d_loss.backward()
            opt_D.step()
            g_loss = bce(D(fake), torch.ones(16, 1))
            opt_G.zero_grad()
            g_loss.backward()
            opt_G.step()
            run.step(len(X), d_loss=d_loss, g_loss=g_loss)
        run.end_epoch(val_distance=(G(torch.randn(64, 2)).mean(0) - real.mean(0)).norm())
    history = run.history
    assert history.keys() == ["train_d_loss", "train_g_loss", "val_distance"]
    assert history.num_epochs == 3
    assert len(capsys.readouterr().out.strip().splitlines()) == 3  # one line per epoch


def test_training_run_divergence_names_every_learning_rate_and_keeps_no_weights():
    model = nn.Linear(1, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_a = torch.optim.SGD(model.parameters(), lr=0.5)
    opt_b = torch.optim.SGD(model.parameters(), lr=0.25)
    run = TrainingRun(2, optimizers={"G": opt_a, "D": opt_b}, model=model, keep_best=("val_x", "min"),
                      verbose=False)
    with pytest.raises(DivergenceError) as info:
        for epoch in run.epochs():
            if epoch == 1:
                run.step(8, d_loss=1.0)
                run.end_epoch(val_x=1.0)  # the best so far: a checkpoint is kept
                with torch.no_grad():
                    model.weight.add_(1.0)
            else:
                run.step(8, d_loss=float("nan"))
    message = str(info.value)
    assert "d_loss became nan at epoch 2, batch 1" in message and "G lr=0.5, D lr=0.25" in message
    assert not torch.equal(model.weight, before["weight"])  # a diverged run restores nothing


def test_training_run_keeps_the_best_weights_and_checks_its_arguments():
    model = nn.Linear(1, 1)
    snapshots = []
    with TrainingRun(4, model=model, keep_best=("val_score", "max"), verbose=False) as run:
        for epoch in run.epochs():
            with torch.no_grad():
                model.weight.fill_(float(epoch))
            snapshots.append(model.weight.item())
            run.step(1, loss=0.1)
            run.end_epoch(val_score=[0.2, 0.9, 0.4, 0.5][epoch - 1])
    assert model.weight.item() == 2.0 and run.history.best_epoch == 2
    with pytest.raises(ValueError, match="num_epochs"):
        TrainingRun(0)
    with pytest.raises(ValueError, match="pass model="):
        TrainingRun(1, keep_best=("val_x", "min"))
    with pytest.raises(ValueError, match="patience"):
        TrainingRun(1, patience=2)
    empty = TrainingRun(1, verbose=False)
    with pytest.raises(ValueError, match="no batches"):
        for _ in empty.epochs():
            empty.end_epoch()


def test_training_run_stop_ends_the_loop_after_the_epoch():
    run = TrainingRun(10, verbose=False)
    for epoch in run.epochs():
        run.step(4, loss=torch.tensor(1.0 / epoch))
        run.end_epoch()
        if epoch == 3:
            run.stop()
    assert run.history.num_epochs == 3 and run.history.stopped_early
    assert run.history["train_loss"] == pytest.approx([1.0, 0.5, 1 / 3])


# --------------------------------------------------------------------------------------------
# The optimizer factory and train_with
# --------------------------------------------------------------------------------------------


def test_make_optimizer_builds_each_named_optimizer():
    params = [nn.Parameter(torch.zeros(2))]
    expected = {"sgd": (torch.optim.SGD, {"momentum": 0, "nesterov": False}),
                "momentum": (torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
                "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
                "adagrad": (torch.optim.Adagrad, {}), "rmsprop": (torch.optim.RMSprop, {"alpha": 0.99}),
                "adam": (torch.optim.Adam, {"betas": (0.9, 0.999)}),
                "adamw": (torch.optim.AdamW, {"weight_decay": 0.01})}
    for name, (cls, settings) in expected.items():
        opt = make_optimizer(name, params, 0.1, weight_decay=0.01 if name == "adamw" else 0.0)
        assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.1
        for key, value in settings.items():
            assert opt.param_groups[0][key] == value, (name, key)
    assert make_optimizer("nesterov", params, 0.1, momentum=0.0).param_groups[0]["nesterov"] is False
    with pytest.raises(ValueError, match="Unknown optimizer 'lbfgs'; choose one of sgd, momentum"):
        make_optimizer("lbfgs", params, 0.1)
    for bad in (0.0, -1.0, float("nan"), float("inf"), "0.1", True):
        with pytest.raises(ValueError, match="positive number"):
            make_optimizer("sgd", params, bad)


X_LIN, Y_LIN = synthetic_regression([2.0, -3.4], 4.2, 500, seed=0)


def linear_run(lr, batch_size, num_epochs, **kwargs):
    return train_with(lr, batch_size, num_epochs, make_model=lambda: nn.Linear(2, 1),
                      loss_fn=nn.MSELoss(), train_data=(X_LIN, Y_LIN), **kwargs)


def test_train_with_is_deterministic_and_learns():
    a, b = linear_run(0.03, 10, 3), linear_run(0.03, 10, 3)
    assert a["train_loss"] == b["train_loss"]
    assert a["train_loss"][-1] < 1e-3
    adam = linear_run(0.1, 10, 3, optimizer="adam")["train_loss"]
    assert adam[-1] < adam[0] / 10


def test_train_with_raises_on_divergence_and_on_a_bad_learning_rate():
    with pytest.raises(DivergenceError, match="lr=10"):
        linear_run(10.0, 32, 2)
    with pytest.raises(ValueError, match="positive number"):
        linear_run(-1.0, 32, 2)
    with pytest.raises(ValueError, match="Unknown optimizer 'lbfgs'"):
        linear_run(0.1, 8, 1, optimizer="lbfgs")


def test_training_run_follows_the_load_after_long_epochs(monkeypatch, capsys):
    """After an epoch of a second or more, the run hands the load it saw to config.adapt_threads."""
    from helpers import training

    class FakeClock:
        def __init__(self):
            self.seconds = 2.0 if len(seen) == 0 else 0.5  # the second epoch is short

        def others_busy(self):
            return 1.0

    seen = []
    monkeypatch.setattr(training, "CpuClock", FakeClock)
    monkeypatch.setattr(training, "adapt_threads", lambda busy: seen.append(busy) or "threads 2 -> 1: test")
    run = TrainingRun(2, verbose=True)
    for _ in run.epochs():
        run.step(1, loss=1.0)
        run.end_epoch()
    assert seen == [1.0]  # only the long epoch is looked at
    assert "threads 2 -> 1: test" in capsys.readouterr().out
