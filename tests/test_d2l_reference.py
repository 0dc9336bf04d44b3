"""Our implementations against d2l 1.0.3's, wherever both exist, on inputs generated here.

d2l (*Dive into Deep Learning*) is the course's reference, not a dependency of the notebooks:
``make env`` installs d2l 1.0.3 with ``--no-deps`` (its exact pins of numpy, matplotlib and pandas no
longer install on current Python and Jupyter). Where d2l is absent this module is skipped with the
reason printed.

Compared here: Fashion-MNIST loading (d2l's loader reads our shipped files, offline), the
vocabulary, the text clean-up of The Time Machine and of the English-French pairs, and, when those
chapters' helpers exist, BLEU and masked softmax. Not compared, because d2l 1.0.3 no longer has
them or they differ by design: d2l 1.0's ``seq_data_iter_*`` samplers were replaced by
``TimeMachine.get_dataloader`` (our samplers follow d2l 0.17 and are tested against a hand-worked
example in ``tests/test_text.py``); d2l 1.0's ``Vocab`` orders tokens alphabetically, ours by
frequency (the token set, the counts and the mapping of unknown tokens are compared instead); our
Fashion-MNIST class names are Zalando's ("T-shirt/top"), d2l's are shortened ("t-shirt"); we split
translation text on any whitespace, d2l on spaces only (a thin space stays glued to a word); box
IoU, anchors and NMS wait for the object-detection chapter.
"""

import math
import random
import shutil

import pytest
import torch

from helpers import datasets as D
from helpers import seq2seq, sources
from helpers import text as T

d2l = pytest.importorskip(
    "d2l.torch", reason="d2l 1.0.3 is not installed (`make env` installs it with pip --no-deps)"
)


@pytest.fixture
def d2l_data_folder(tmp_path, monkeypatch):
    """Run in a folder whose ``../data/FashionMNIST/raw`` holds our shipped files, where d2l looks."""
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for path in (sources.REPO_DATA_DIR / "fashion-mnist").glob("*.gz"):
        shutil.copy(path, raw / path.name)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return raw


def test_fashion_mnist_equals_d2ls_loader_on_our_files_offline(d2l_data_folder, no_network):
    data = d2l.FashionMNIST(batch_size=256, resize=(28, 28))
    for split, theirs in (("train", data.train), ("test", data.val)):
        images, labels = D.read_fashion_mnist(split)
        assert torch.equal(images, theirs.data) and torch.equal(labels, theirs.targets)
    X, y = D.fashion_mnist_tensors("test", fast=False)
    for i in (0, 1234, 9999):
        image, label = data.val[i]  # d2l's transform: Resize((28, 28)) then ToTensor()
        assert torch.allclose(X[i], image) and y[i].item() == label
    assert no_network == [], "torchvision used the shipped files; nothing was downloaded"


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes")  # d2l's default
def test_d2l_load_data_fashion_mnist_batches_like_ours(d2l_data_folder):
    train_iter, test_iter = d2l.load_data_fashion_mnist(256)
    ours_train, ours_test = D.load_fashion_mnist(256, fast=False)
    assert (len(train_iter), len(test_iter)) == (len(ours_train), len(ours_test)) == (235, 40)
    (X, y), (X_ours, y_ours) = next(iter(test_iter)), next(iter(ours_test))
    assert torch.equal(X, X_ours) and torch.equal(y, y_ours)  # the test set keeps the file order


def _random_tokens(seed: int, n: int = 500) -> list[list[str]]:
    rng = random.Random(seed)
    words = [f"w{int(rng.paretovariate(1.2))}" for _ in range(n)]
    return [words[i : i + 7] for i in range(0, n, 7)]


@pytest.mark.parametrize("min_freq", [0, 1, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_vocab_has_d2ls_tokens_counts_and_unknown_handling(seed, min_freq):
    lines, reserved = _random_tokens(seed), ["<pad>", "<bos>", "<eos>"]
    ours, theirs = T.Vocab(lines, min_freq, reserved), d2l.Vocab(lines, min_freq, reserved)
    assert ours.token_freqs == theirs.token_freqs
    assert sorted(ours.idx_to_token) == theirs.idx_to_token and len(ours) == len(theirs)
    probe = [tok for line in lines for tok in line] + ["never-seen", "<pad>"]
    assert ours.to_tokens(ours[probe]) == theirs.to_tokens(theirs[probe])


def test_time_machine_clean_up_is_d2ls_rule_applied_line_by_line():
    raw = sources.read_data_bytes("timemachine/timemachine.txt").decode("utf-8")
    theirs = [d2l.TimeMachine._preprocess(None, line).strip() for line in raw.splitlines()]
    assert D.read_time_machine() == theirs


def test_translation_preprocessing_and_tokens_equal_d2ls():
    raw = D.read_fra_eng()
    assert T.preprocess_nmt(raw) == d2l.MTFraEng._preprocess(None, raw)
    source, target = T.tokenize_nmt(T.preprocess_nmt(raw))
    d2l_source, d2l_target = d2l.MTFraEng._tokenize(None, d2l.MTFraEng._preprocess(None, raw))

    def whitespace_split(lines):  # d2l splits on " " only, so a thin space (U+2009) sticks to a word
        return [[part for token in line[:-1] for part in token.split()] for line in lines]  # [:-1]: <eos>

    assert source == whitespace_split(d2l_source) and target == whitespace_split(d2l_target)
    differing = sum(t != d[:-1] for t, d in zip(target, d2l_target, strict=True))
    assert differing < 0.01 * len(target), "only a few pairs contain other whitespace than spaces"


def test_reference_numbers_are_finite():
    # a guard that the reference itself imported with the course's numpy/torch
    assert math.isfinite(float(d2l.tensor([1.0, 2.0]).sum()))


def _random_sentences(seed: int, n: int = 200) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    words = "le chat noir est sur la table , et il dort . un chien".split()
    pairs = []
    for _ in range(n):
        label = [rng.choice(words) for _ in range(rng.randint(1, 9))]
        pred = [w if rng.random() < 0.6 else rng.choice(words) for w in label]
        pred = pred[: rng.randint(1, len(pred) + 1)] + [rng.choice(words)] * rng.randint(0, 2)
        pairs.append((" ".join(pred), " ".join(label)))
    return pairs


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_sentence_bleu_equals_d2ls(k):
    for pred, label in _random_sentences(seed=k):
        if len(pred.split()) < k:  # d2l divides by zero when the prediction has fewer than k tokens
            continue
        assert seq2seq.bleu(pred, label, k) == pytest.approx(d2l.bleu(pred, label, k), abs=1e-12)


@pytest.mark.parametrize("valid_shape", ["1-D", "2-D"])
def test_masked_softmax_equals_d2ls(valid_shape):
    attention = pytest.importorskip("helpers.attention")
    torch.manual_seed(0)
    X = torch.randn(4, 3, 6)
    if valid_shape == "1-D":
        valid_lens = torch.tensor([0, 3, 6, 2])  # 0: no valid key, uniform in both
    else:
        valid_lens = torch.tensor([[1, 2, 6], [3, 3, 3], [6, 5, 4], [2, 1, 2]])
    ours, theirs = attention.masked_softmax(X, valid_lens), d2l.masked_softmax(X, valid_lens)
    assert torch.allclose(ours, theirs, atol=1e-7)
    assert torch.allclose(attention.masked_softmax(X, None), d2l.masked_softmax(X, None))
