"""One device decision, used by default (issue 21): every training function of ``helpers`` puts the
model and its batches on the device :func:`helpers.setup` chose (:func:`helpers.config.default_device`)
unless it is given a ``device``; evaluation runs where the model is; ``COURSE_DEVICE`` and
``setup(device=...)`` choose the device, and an unusable one is a clear ValueError.

There is no GPU here, so the tests use a stand-in: ``torch.device("cpu", 0)`` (``cpu:0``) is a
device value different from ``torch.device("cpu")`` that still runs on the CPU. With ``cpu:0``
as the course default, spies on ``nn.Module.to`` and ``torch.Tensor.to`` record where each trainer
sends its model and its batches. Models and data start on the plain CPU, so a ``cpu:0`` in the record
can only come from the default: a trainer that moved things to the model's device
(``model_device(model)``, the old behaviour) or ignored the default would record ``cpu`` instead,
and :func:`test_the_check_fails_for_a_trainer_that_ignores_the_default` shows that the check then
fails. The moves of a model's own parameters (``Module.to`` calls ``Tensor.to``) are not counted as
moved batches.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

import helpers
from helpers import bert, config, gan, segmentation, seq2seq, sequence, ssd, training, vision
from helpers.data import make_loader
from helpers.text import BERT_RESERVED_TOKENS, SeqDataLoader, Vocab, build_array_nmt
from notebook_code import load_notebook

DEFAULT = torch.device("cpu", 0)  # the course default in these tests: a stand-in for a GPU
CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# Global state and the spies
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def course_state(monkeypatch):
    """Make cpu:0 the course default for the test; afterwards restore the default device, torch's
    thread count, the automatic-threads flag, the random generators and matplotlib's settings."""
    threads = torch.get_num_threads()
    rng = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    monkeypatch.setattr(config, "_auto_threads", config._auto_threads)
    monkeypatch.setattr(config, "_device", config.check_device(DEFAULT))
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    with matplotlib.rc_context():
        yield
    torch.set_num_threads(threads)
    torch.set_rng_state(rng[0])
    random.setstate(rng[1])
    np.random.set_state(rng[2])


def _device_named(args, kwargs) -> torch.device | None:
    """The device that a ``.to(...)`` call names (a device, a string or a tensor, passed first or as
    ``device=``); None for a call that names only a dtype or a memory format."""
    target = kwargs["device"] if "device" in kwargs else (args[0] if args else None)
    if isinstance(target, torch.Tensor):
        return target.device
    if isinstance(target, (str, torch.device)):
        return torch.device(target)
    return None


class DeviceSpy:
    """Where ``Module.to`` and ``Tensor.to`` send things while :meth:`watch` is active. ``tensors``
    lists the device of every tensor move; ``training_tensors`` the device and shape of those made
    with autograd on, so not by an evaluation (``evaluate``, ``predict_classes``, ... run under
    ``torch.no_grad``)."""

    def __init__(self) -> None:
        self.modules: list[tuple[nn.Module, torch.device]] = []
        self.tensors: list[torch.device] = []
        self.training_tensors: list[tuple[torch.device, tuple[int, ...]]] = []
        self.watching = False
        self.inside_module_to = 0

    @contextlib.contextmanager
    def watch(self):
        self.modules.clear()
        self.tensors.clear()
        self.training_tensors.clear()
        self.watching = True
        try:
            yield self
        finally:
            self.watching = False

    def model_devices(self, model: nn.Module) -> set[torch.device]:
        """Devices that ``model``, or a module that holds it (a wrapper), was sent to."""
        return {device for module, device in self.modules if any(m is model for m in module.modules())}

    def devices(self) -> set[torch.device]:
        """Every device that anything was sent to."""
        return {device for _, device in self.modules} | set(self.tensors)


@pytest.fixture
def spy(monkeypatch) -> DeviceSpy:
    record = DeviceSpy()
    module_to, tensor_to = nn.Module.to, torch.Tensor.to

    def spying_module_to(module, *args, **kwargs):
        device = _device_named(args, kwargs)
        if record.watching and device is not None:
            record.modules.append((module, device))
        record.inside_module_to += 1  # its parameters' Tensor.to calls are not batches
        try:
            return module_to(module, *args, **kwargs)
        finally:
            record.inside_module_to -= 1

    def spying_tensor_to(tensor, *args, **kwargs):
        device = _device_named(args, kwargs)
        if record.watching and device is not None and not record.inside_module_to:
            record.tensors.append(device)
            if torch.is_grad_enabled():
                record.training_tensors.append((device, tuple(tensor.shape)))
        return tensor_to(tensor, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "to", spying_module_to)
    monkeypatch.setattr(torch.Tensor, "to", spying_tensor_to)
    return record


def test_the_spies_read_every_way_of_naming_a_device(spy):
    x, model = torch.zeros(2), nn.Linear(2, 1)
    with spy.watch():
        x.to(DEFAULT)
        x.to("cpu:0")
        x.to(device=DEFAULT, dtype=torch.float64)
        x.to(torch.float64)  # a dtype only: not recorded
        x.to(torch.zeros(1))  # like another tensor: a CPU tensor's device reads plain cpu
        model.to("cpu:0")  # its parameters' moves are not counted as tensors
        model.to(torch.float64)
    assert spy.tensors == [DEFAULT, DEFAULT, DEFAULT, CPU]
    assert spy.model_devices(model) == {DEFAULT} and len(spy.modules) == 1


ANY_SHAPE = "any shape"


def assert_trained_on(spy: DeviceSpy, model: nn.Module, device: torch.device, inputs) -> None:
    """``model`` (or a wrapper of it) was sent to ``device``, and so were training inputs (outside an
    evaluation) of ``inputs``, the shape of one example (None: the function takes no inputs)."""
    sent = spy.model_devices(model)
    assert device in sent, f"the model was sent to {sent or 'nowhere'}"
    if inputs is not None:
        shapes = {shape[1:] for to, shape in spy.training_tensors if to == device}
        found = bool(shapes) if inputs == ANY_SHAPE else tuple(inputs) in shapes
        assert found, f"no training input of {inputs} per example went to {device}: {spy.training_tensors}"


# ---------------------------------------------------------------------------------------------
# Every trainer, on tiny data. Each case builds its model and data unwatched, then runs the
# trainer under spy.watch() (passing `device` only when the test gives one) and returns the model.
# ---------------------------------------------------------------------------------------------


def _device_kwarg(device):
    return {} if device is None else {"device": device}


QUIET = dict(live=False, progress=False, verbose=False)


def _regression(n=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=gen)
    return X, X @ torch.tensor([[2.0], [-3.0]]) + 1.0


def run_fit(spy, device=None):
    model, loader = nn.Linear(2, 1), make_loader(*_regression(), batch_size=8, seed=0)
    val_loader = make_loader(*_regression(16, 1), batch_size=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with spy.watch():
        training.fit(model, nn.MSELoss(), opt, loader, 1, val_iter=val_loader, **QUIET,
                     **_device_kwarg(device))
    return model


def run_train_with(spy, device=None):
    made = []

    def make_model():
        made.append(nn.Linear(2, 1))
        return made[-1]

    with spy.watch():
        training.train_with(0.05, 8, 1, make_model=make_model, loss_fn=nn.MSELoss(), train_data=_regression(),
                            val_data=_regression(16, 1), **_device_kwarg(device))
    return made[0]


def _bar_images(n, seed):
    """Two classes of 1x8x8 images: a vertical or a horizontal bar."""
    gen = torch.Generator().manual_seed(seed)
    X, y = 0.1 * torch.rand(n, 1, 8, 8, generator=gen), torch.randint(0, 2, (n,), generator=gen)
    X[y == 0, 0, :, 3:5] += 1.0
    X[y == 1, 0, 3:5, :] += 1.0
    return X, y


def run_train_classifier(spy, device=None):
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(128, 2))
    train, val = _bar_images(32, 0), _bar_images(16, 1)
    with spy.watch():
        vision.train_classifier(net, train, val, 1, 0.05, batch_size=16, **QUIET, **_device_kwarg(device))
    return net


TEXT = "the time machine by h g wells " * 8
LM_VOCAB = Vocab(list(TEXT))


def run_train_lm(spy, device=None):
    train, val = sequence.split_corpus(LM_VOCAB[list(TEXT)], 0.2)
    model = sequence.RNNLM(nn.GRU(len(LM_VOCAB), 8, batch_first=True), len(LM_VOCAB))
    train_iter = SeqDataLoader(train, batch_size=4, num_steps=8, use_random_iter=True, seed=0)
    with spy.watch():
        sequence.train_lm(model, train_iter, val, num_epochs=1, lr=0.01, num_steps=8, **QUIET,
                          **_device_kwarg(device))
    return model


def run_train_seq2seq(spy, device=None):
    rng = random.Random(0)
    source = [[rng.choice("abcd") for _ in range(rng.randint(2, 4))] for _ in range(16)]
    target = [line[::-1] for line in source]
    vocab = Vocab(source + target, reserved_tokens=["<pad>", "<bos>", "<eos>"])
    arrays = (*build_array_nmt(source, vocab, 6), *build_array_nmt(target, vocab, 6))
    model = seq2seq.make_gru_seq2seq(len(vocab), len(vocab), embed_size=8, num_hiddens=8, num_layers=1,
                                     dropout=0.0)
    with spy.watch():
        seq2seq.train_seq2seq(model, make_loader(*arrays, batch_size=8, seed=0), vocab, num_epochs=1, **QUIET,
                              **_device_kwarg(device))
    return model


def _boxes_data(n=8, seed=0):
    """Random 3x32x32 images with one box each (rows [class, x1, y1, x2, y2], corners in [0, 1])."""
    gen = torch.Generator().manual_seed(seed)
    corner = 0.5 * torch.rand(n, 1, 2, generator=gen)
    targets = torch.cat([torch.zeros(n, 1, 1), corner, corner + 0.4], dim=-1)
    return torch.rand(n, 3, 32, 32, generator=gen), targets


def _tiny_ssd():
    return ssd.TinySSD(1, image_size=32, channels=8, base_channels=(4, 4, 8))


def run_prepare_ssd_data(spy, device=None):
    net, data = _tiny_ssd(), _boxes_data()
    with spy.watch():
        ssd.prepare_ssd_data(net, *data, **_device_kwarg(device))
    return net


def run_train_ssd(spy, device=None):
    net = _tiny_ssd()
    data = ssd.prepare_ssd_data(net, *_boxes_data(), device=CPU)  # on the CPU: train_ssd must move it
    with spy.watch():
        ssd.train_ssd(net, data, num_epochs=1, batch_size=4, warmup_steps=1, **QUIET, **_device_kwarg(device))
    return net


def _segmentation_data(n, seed):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 16, 16), generator=gen, dtype=torch.uint8)
    return images, torch.randint(0, 4, (n, 16, 16), generator=gen, dtype=torch.uint8)


def run_train_fcn(spy, device=None):
    net = segmentation.FCN(4, (4,), convs_per_stage=1)
    train, val = _segmentation_data(8, 0), _segmentation_data(4, 1)
    with spy.watch():
        # no class weights, no flips: the images and masks are then the only tensors it moves
        segmentation.train_fcn(net, train, val, num_epochs=1, lr=0.01, batch_size=4, seed=0, **QUIET,
                               **_device_kwarg(device))
    return net


def _tiny_corpus() -> bert.PretrainingCorpus:
    """12 training paragraphs of 4 sentences of 3 to 5 words from 12 words; all pairs fit max_len 16."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(12)]
    paragraphs = [[rng.choices(words, k=rng.randint(3, 5)) for _ in range(4)] for _ in range(14)]
    vocab = Vocab([s for p in paragraphs[:12] for s in p], reserved_tokens=BERT_RESERVED_TOKENS)
    return bert.PretrainingCorpus(vocab, paragraphs[:12], paragraphs[12:])


def _tiny_bert(vocab_size):
    return bert.BERTModel(vocab_size, num_hiddens=16, ffn_num_hiddens=32, num_heads=2, num_layers=1,
                          dropout=0.0, max_len=16)


def run_pretrain_bert(spy, device=None):
    corpus = _tiny_corpus()
    model, heldout = _tiny_bert(len(corpus.vocab)), bert.heldout_examples(corpus, 16)
    with spy.watch():
        bert.pretrain_bert(model, corpus, num_epochs=1, batch_size=16, heldout=heldout, verbose=False,
                           **_device_kwarg(device))
    return model


def run_pretrain_small_bert(spy, device=None):
    corpus = _tiny_corpus()
    small = dict(bert.SMALL_BERT, num_hiddens=16, ffn_num_hiddens=32, num_heads=2, num_layers=1, max_len=16)
    recipe = dict(bert.PRETRAINING, fast_epochs=1, fast_paragraphs=6, batch_size=16)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bert, "SMALL_BERT", small)
        patch.setattr(bert, "PRETRAINING", recipe)
        with spy.watch():
            model, _ = bert.pretrain_small_bert(corpus, fast=True, verbose=False, **_device_kwarg(device))
    return model


def _classification(n, seed):
    """Sentences of ids 5..9 padded to 7 (as bert.as_examples dicts): label 1 when word 5 occurs."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(5, 10, (n, 7), generator=gen)
    tokens[:, 0], tokens[:, -1] = 3, 4  # <cls>, <sep>
    labels = (tokens == 5).any(1).long()
    return bert.as_examples((tokens, torch.zeros_like(tokens), torch.full((n,), 7), labels))


def run_fine_tune(spy, device=None):
    model = bert.BagOfWords(10, 2, ignore=[1, 3, 4])
    with spy.watch():
        bert.fine_tune(model, _classification(32, 0), _classification(16, 1), num_epochs=1, lr=0.5,
                       batch_size=16, verbose=False, **_device_kwarg(device))
    return model


def run_load_pretrained(spy, device=None):
    corpus = _tiny_corpus()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bert.pt")
        bert.save_pretrained(path, _tiny_bert(len(corpus.vocab)), corpus.vocab, epochs=1)
        with spy.watch():
            model, _, _ = bert.load_pretrained(path, **_device_kwarg(device))
    return model


TRAINERS = {  # name: (case, the shape of one example of the inputs it moves)
    "fit": (run_fit, (2,)),
    "train_with": (run_train_with, (2,)),
    "train_classifier": (run_train_classifier, (1, 8, 8)),
    "train_lm": (run_train_lm, (8,)),
    "train_seq2seq": (run_train_seq2seq, (6,)),
    "prepare_ssd_data": (run_prepare_ssd_data, (3, 32, 32)),
    "train_ssd": (run_train_ssd, (3, 32, 32)),
    "train_fcn": (run_train_fcn, (3, 16, 16)),
    "pretrain_bert": (run_pretrain_bert, ANY_SHAPE),  # each batch is cut to its longest pair
    "pretrain_small_bert": (run_pretrain_small_bert, ANY_SHAPE),
    "fine_tune": (run_fine_tune, (7,)),
    "load_pretrained": (run_load_pretrained, None),  # it only places the model
}


@pytest.mark.parametrize("trainer", TRAINERS)
def test_the_trainer_puts_model_and_batches_on_the_course_device(trainer, spy):
    run, inputs = TRAINERS[trainer]
    model = run(spy)
    assert_trained_on(spy, model, DEFAULT, inputs)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_an_explicit_device_wins_over_the_course_device(trainer, spy):
    model = TRAINERS[trainer][0](spy, device="cpu")
    assert CPU in spy.model_devices(model)
    assert DEFAULT not in spy.devices()


@pytest.mark.parametrize("trainer", TRAINERS)
def test_the_check_fails_for_a_trainer_that_ignores_the_default(trainer, spy, monkeypatch):
    """The spies discriminate: with ``training_device`` replaced (in every module that uses it) by one
    that ignores the default, as a trainer that trains where the model is would, the check fails."""

    def ignoring_the_default(device=None):  # the models of these tests are on the CPU
        return torch.device(device) if device is not None else CPU

    users = [m for name, m in list(sys.modules.items()) if name.startswith("helpers") and
             getattr(m, "training_device", None) is training.training_device]
    assert {training, vision, ssd, segmentation, bert} <= set(users)
    for module in users:
        monkeypatch.setattr(module, "training_device", ignoring_the_default)
    run, inputs = TRAINERS[trainer]
    model = run(spy)
    assert DEFAULT not in spy.devices()
    with pytest.raises(AssertionError):
        assert_trained_on(spy, model, DEFAULT, inputs)


# ---------------------------------------------------------------------------------------------
# make_loader, evaluate
# ---------------------------------------------------------------------------------------------


def test_make_loader_copies_to_the_device_once_and_keeps_the_batches(spy):
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(10, 3, generator=gen), torch.arange(10)
    with spy.watch():
        on_device = make_loader(X, y, batch_size=4, seed=0, device="cpu:0")
    assert spy.tensors == [DEFAULT, DEFAULT]  # X and y, copied when the loader is made
    plain = make_loader(X, y, batch_size=4, seed=0)
    with spy.watch():
        for _ in range(2):  # two epochs, two different shuffles, the same on both
            got, expected = list(on_device), list(plain)
            assert len(got) == len(expected) == 3
            for a, b in zip(got, expected, strict=True):
                assert all(torch.equal(s, t) for s, t in zip(a, b, strict=True))
    assert spy.tensors == []  # no copy per batch


def test_evaluate_runs_where_the_model_is_not_on_the_course_device(spy):
    model = nn.Linear(2, 1)  # on the CPU, while the course default is cpu:0
    loader = make_loader(*_regression(), batch_size=8, shuffle=False)
    with spy.watch():
        result = training.evaluate(model, loader, nn.MSELoss())
    assert DEFAULT not in spy.devices() and result["loss"] > 0
    with spy.watch():  # the spy would see it: an explicit device moves the batches
        training.evaluate(model, loader, nn.MSELoss(), device=DEFAULT)
    assert spy.tensors and set(spy.tensors) == {DEFAULT}


def test_training_device_is_the_argument_else_the_course_default():
    assert training.training_device() == DEFAULT
    assert training.training_device("cpu") == CPU
    assert training.training_device(torch.device("cpu", 0)) == DEFAULT


# ---------------------------------------------------------------------------------------------
# Choosing the device: argument, COURSE_DEVICE, the best available; errors; setup()
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def two_gpus(monkeypatch):
    """Pretend that torch sees two CUDA GPUs (choose_device only asks, it allocates nothing)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_choose_device_prefers_the_argument_then_course_device_then_the_best(monkeypatch, two_gpus):
    monkeypatch.setenv("COURSE_DEVICE", " CUDA:0 ")
    assert config.choose_device("cuda:1") == (torch.device("cuda", 1), "as asked")
    assert config.choose_device() == (torch.device("cuda", 0), "from COURSE_DEVICE")
    monkeypatch.setenv("COURSE_DEVICE", "cpu")  # e.g. to compare with the committed outputs
    assert config.choose_device() == (CPU, "from COURSE_DEVICE")
    monkeypatch.setenv("COURSE_DEVICE", "")
    assert config.choose_device() == (torch.device("cuda"), "best available")
    monkeypatch.delenv("COURSE_DEVICE")
    assert config.choose_device() == (torch.device("cuda"), "best available")


def test_a_device_the_machine_lacks_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(config, "_mps_available", lambda: False)
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(ValueError, match=r"Device cuda was asked for, but torch sees no CUDA GPU.*COURSE_"):
        config.choose_device()
    with pytest.raises(ValueError, match=r"Device mps was asked for.*no Apple GPU"):
        config.choose_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert config.check_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"Device cuda:3 was asked for, but this machine has 1 CUDA GPU"):
        config.choose_device("cuda:3")


@pytest.mark.parametrize("name", ["meta", "xla"])
def test_devices_the_course_does_not_run_on_are_refused(name):
    with pytest.raises(ValueError, match=f"cpu, cuda or mps, not {name}"):
        config.check_device(name)


def test_an_unknown_course_device_names_the_choices(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DEVICE", "gpu")
    monkeypatch.setenv("COURSE_THREADS", "1")
    with pytest.raises(ValueError, match=r"'gpu' is not a device torch knows; use cpu, cuda.* or mps"):
        config.choose_device()
    with pytest.raises(ValueError, match="'gpu'"):
        helpers.setup()
    assert config.default_device() == DEFAULT  # a failed setup() leaves the default alone
    assert capsys.readouterr().out == ""


def test_set_default_device_checks_and_accepts_the_stand_in(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.set_default_device("cpu") == CPU == config.default_device()
    assert config.set_default_device("cpu:0") == DEFAULT == config.default_device()
    with pytest.raises(ValueError, match="no CUDA GPU"):
        config.set_default_device("cuda")
    assert config.default_device() == DEFAULT


def test_setup_makes_its_device_the_default_and_says_why(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_THREADS", "1")
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.setenv("COURSE_DEVICE", "cpu")  # the default is cpu:0 before: setup() changes it
    info = helpers.setup(seed=3)
    assert info.device == CPU == config.default_device()
    assert capsys.readouterr().out.startswith("device cpu (from COURSE_DEVICE) | threads 1 | mode fast")
    info = helpers.setup(seed=3, device="cpu:0")  # the argument wins over COURSE_DEVICE
    assert info.device == DEFAULT == config.default_device()
    assert capsys.readouterr().out.startswith("device cpu:0 | threads 1 |")
    monkeypatch.delenv("COURSE_DEVICE")
    info = helpers.setup(seed=3)
    assert info.device == config.pick_device() == config.default_device()
    assert capsys.readouterr().out.startswith(f"device {info.device} | threads 1 |")


# ---------------------------------------------------------------------------------------------
# The chapters' own training loops
# ---------------------------------------------------------------------------------------------

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]*.ipynb"))

# Loops that stay on the CPU on purpose, with the reason (notebook stem, text of the cell): a new
# hand-written training loop must use the device or be listed here with its reason.
CPU_LOOPS = {
    ("00_pytorch_basics", "def train_epochs"): "a checkpoint-and-resume exercise on 200 examples",
    ("01_linear_regression", "def train_autograd"): "1,000 examples of 2 features: on a GPU the kernel "
                                                     "launches would cost more than the arithmetic",
    ("01_linear_regression", "def train_concise"): "the same 1,000 examples, checked against train_autograd",
    ("03_mlp", "def fit_full_batch"): "XOR: four points",
    ("03_mlp", "def train_weight_decay"): "20 training examples (and a widget that retrains on every move)",
    ("03_mlp", "def fit_by_gradient_descent"): "25-parameter float64 networks on 513 points of one input "
                                                "(MPS has no float64)",
    ("04_cnn", "def learn_kernel"): "one 3x3 kernel learnt from one image",
    ("04b_modern_cnn", "def time_training_steps"): "times the CPU's memory formats (channels_last: oneDNN)",
    ("08_optimization", "theta_net = (0.5 * torch.randn"): "float64 curvature analysis of a 67-parameter net",
    ("08_optimization", "# Solution 1: iterate w <- w - lr * v"): "a one-parameter exercise",
    ("08_optimization", "# Solution 2: without correction"): "a three-parameter exercise",
    ("11_gan", "# Solution 3: the clipped critic"): "a one-input critic on 256 numbers per step",
}


def _training_loops(source: str) -> int:
    """How many loops in ``source`` call ``.backward()`` and then step (``.step()``) or update
    parameters in place (``p -= ...``): the hand-written training loops."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    found = 0
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, (ast.For, ast.While)):
            calls = {n.func.attr for n in ast.walk(node) if isinstance(n, ast.Call)
                     and isinstance(n.func, ast.Attribute)}
            updates = any(isinstance(n, ast.AugAssign) and isinstance(n.op, ast.Sub) for n in ast.walk(node))
            found += "backward" in calls and ("step" in calls or updates)
    return found


def _loop_cells():
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and _training_loops(source):
                yield path.stem, source


def test_every_hand_written_training_loop_uses_the_device_or_says_why_not():
    unexplained, allowed_seen = [], set()
    for stem, source in _loop_cells():
        allowed = [key for key in CPU_LOOPS if key[0] == stem and key[1] in source]
        allowed_seen.update(allowed)
        if not allowed and "device" not in source:
            unexplained.append(f"{stem}: {source.splitlines()[0][:80]}")
    assert not unexplained, ("these cells train in a loop of their own but never mention a device; send the "
                             "model and the batches to training.training_device() (or info.device), or list "
                             "the cell in CPU_LOOPS with the reason: " + "; ".join(unexplained))
    stale = set(CPU_LOOPS) - allowed_seen
    assert not stale, f"CPU_LOOPS lists cells that no longer exist: {stale}"


def test_the_loop_finder_finds_the_kinds_of_loop_the_chapters_write():
    assert _training_loops("for X, y in it:\n    loss(X).backward()\n    opt.step()") == 1
    in_place = "for X, y in it:\n    l(X).backward()\n    with torch.no_grad():\n        w -= lr * w.grad"
    assert _training_loops(in_place) == 1
    assert _training_loops("for X in it:\n    l(X).backward()") == 0  # a gradient check, not training
    assert _training_loops("%timeit f()\nx = 1") == 0


def _sent_to_default(spy, shape) -> bool:
    return any(device == DEFAULT and tuple(s) == tuple(shape) for device, s in spy.training_tensors)


def test_chapter_2_trains_from_scratch_and_concisely_on_the_course_device(spy):
    ch2 = load_notebook("02_softmax_regression")
    X, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    W0, b0 = torch.normal(0, 0.01, size=(784, 10)), torch.zeros(10)
    with spy.watch():
        W, b, accs = ch2.train_scratch(X, y, 0.1, 8, 1, W0, b0, val=(X, y))
    assert _sent_to_default(spy, (784, 10)) and _sent_to_default(spy, (32, 1, 28, 28)), spy.training_tensors
    assert W.device == CPU and len(accs) == 1  # handed back on the CPU, for the plots
    with spy.watch():
        ch2.train_concise(X, y, 0.1, 8, 1, W0, b0)
    assert DEFAULT in {device for _, device in spy.modules} and _sent_to_default(spy, (32, 1, 28, 28))


def test_chapter_5_trains_its_scratch_rnn_and_its_clipping_runs_on_the_course_device(spy, monkeypatch):
    ch5 = load_notebook("05_rnn")
    corpus = torch.randint(0, 6, (400,)).tolist()
    model = ch5.RNNModelScratch(6, 8, ch5.rnn_params, ch5.rnn_cell)
    with spy.watch():
        ch5.train_scratch(model, corpus[:300], corpus[300:], 1, lr=1.0, theta=1.0, batch_size=2, num_steps=5)
    assert DEFAULT in spy.model_devices(model) and _sent_to_default(spy, (2, 5)), spy.training_tensors
    with spy.watch():
        ch5.clipping_run(corpus, 6, theta=1.0, num_epochs=1, num_hiddens=8, num_steps=5)
    assert DEFAULT in {device for _, device in spy.modules} and _sent_to_default(spy, (32, 5))


def test_chapter_8_times_its_batch_sizes_on_the_course_device(spy):
    ch8 = load_notebook("08_optimization")
    X, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    with spy.watch():
        result = ch8.time_to_accuracy(16, 0.1, (X, y), (X[:16], y[:16]), target=2.0, max_seconds=10,
                                      max_examples=64, eval_every=32)
    assert result["seconds_to_target"] is None and len(result["curve"]) == 2
    assert DEFAULT in {device for _, device in spy.modules} and _sent_to_default(spy, (64, 1, 28, 28))


def test_fit_moves_an_optimizer_state_made_before_the_model_moved(spy):
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.1)  # AdaGrad makes its state at once
    with spy.watch():
        loader = make_loader(torch.rand(8, 3), torch.rand(8, 2), batch_size=4)
        training.fit(model, nn.MSELoss(), optimizer, loader, 1, live=False, progress=False, verbose=False)
    moved_state = [s for device, s in spy.training_tensors if device == DEFAULT and s in ((2, 3), (2,))]
    assert len(moved_state) >= 2, spy.training_tensors  # the sums of both parameters followed the model


def test_chapter_11_trains_its_critics_and_2d_gans_on_the_course_device(spy):
    ch11 = load_notebook("11_gan")
    with spy.watch():
        gradient = ch11.generator_gradient_after(2, 3.0, "wgan-gp", batch_size=16)
    assert gradient >= 0 and DEFAULT in {device for _, device in spy.modules}
    assert _sent_to_default(spy, (16, 1)), spy.training_tensors
    with spy.watch():
        model, coverage, _ = ch11.ring_run("non_saturating", 4, 0, True, gan.ring_centres(8, 2.0), 0.02,
                                           num_rounds=2)
    assert model.step == 4 and DEFAULT in spy.model_devices(model.G) and DEFAULT in spy.model_devices(model.D)
    assert _sent_to_default(spy, (256, 2)), spy.training_tensors  # the real batches


def test_chapter_11b_trains_its_gans_on_the_course_device(spy):
    ch11b = load_notebook("11b_gan_images")
    images, labels = torch.rand(32, 1, 28, 28) * 2 - 1, torch.randint(0, 10, (32,))
    G, D = ch11b.dcgan_generator(8, width=8), ch11b.dcgan_discriminator(width=8)
    with spy.watch():
        history, snapshots = ch11b.train_dcgan(G, D, images, 1, 16, 2e-4, 8, torch.randn(2, 8))
    assert DEFAULT in spy.model_devices(G) and DEFAULT in spy.model_devices(D)
    assert _sent_to_default(spy, (32, 1, 28, 28)), spy.training_tensors  # make_loader's one copy
    assert snapshots.device == CPU and len(history["train_d_loss"]) == 1
    cG, cD = ch11b.ConditionalGenerator(width=8), ch11b.ConditionalDiscriminator(width=8)
    with spy.watch():
        ch11b.train_conditional_gan(cG, cD, images, labels, 1, 16, 2e-4)
    assert DEFAULT in spy.model_devices(cG) and _sent_to_default(spy, (32,)), spy.training_tensors
