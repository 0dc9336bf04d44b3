"""Tests of helpers.datasets: the checksum guard, every loader's shapes/dtypes/ranges/counts,
seeded determinism, fast-mode sizes, and that nothing reaches for the network (conftest.py's
autouse ``no_network`` fixture blocks every connection)."""

import hashlib
import shutil
import socket
import urllib.error
from pathlib import Path

import pytest
import torch

from helpers import datasets as D

REPO_DATA = D.REPO_DATA_DIR
SMALL_FILES = (
    "timemachine/timemachine.txt",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz",
    "images/skimage/camera.png",
)


@pytest.fixture
def small_root(tmp_path: Path) -> Path:
    """A data folder in tmp_path with the manifest and copies of a few small files."""
    shutil.copy(REPO_DATA / D.MANIFEST_NAME, tmp_path / D.MANIFEST_NAME)
    for name in SMALL_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_DATA / name, tmp_path / name)
    return tmp_path


# --- the manifest and the checksum guard ------------------------------------------------------


def test_manifest_lists_every_shipped_file_with_its_digest():
    manifest = D.read_manifest()
    on_disk = {
        p.relative_to(REPO_DATA).as_posix()
        for p in REPO_DATA.rglob("*")
        if p.is_file() and p.name != D.MANIFEST_NAME
    }
    assert set(manifest) == on_disk, "run helpers.datasets.write_manifest() after changing data/"
    for name, digest in manifest.items():
        assert hashlib.sha256((REPO_DATA / name).read_bytes()).hexdigest() == digest, name


def test_corrupted_file_raises_naming_file_digests_and_restore_command(small_root):
    name = "timemachine/timemachine.txt"
    path = small_root / name
    path.write_bytes(path.read_bytes().replace(b"Time", b"Tide", 1))
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(D.ChecksumMismatchError) as info:
        D.read_time_machine(root=small_root)
    message = str(info.value)
    assert isinstance(info.value, D.DataFileError) and isinstance(info.value, RuntimeError)
    assert str(path) in message and actual in message
    assert D.read_manifest()[name] in message
    assert f"git checkout -- data/{name}" in message


def test_missing_file_raises_naming_file_digest_and_restore_command(small_root):
    name = "fashion-mnist/t10k-labels-idx1-ubyte.gz"
    (small_root / name).unlink()
    with pytest.raises(D.MissingDataFileError) as info:
        D.read_data_bytes(name, root=small_root)
    message = str(info.value)
    assert str(small_root / name) in message and "missing" in message
    assert D.read_manifest()[name] in message and f"git checkout -- data/{name}" in message


def test_missing_big_file_error_reaches_the_fashion_mnist_loader(small_root):
    with pytest.raises(D.MissingDataFileError, match="t10k-images-idx3-ubyte.gz"):
        D.fashion_mnist_tensors("test", root=small_root)


def test_checksum_is_computed_once_per_file_and_again_after_a_change(small_root, monkeypatch):
    calls = []
    real = D.sha256_of
    monkeypatch.setattr(D, "sha256_of", lambda data: calls.append(1) or real(data))
    name = "timemachine/timemachine.txt"
    first = D.read_data_bytes(name, root=small_root)
    assert D.read_data_bytes(name, root=small_root) == first
    assert len(calls) == 1
    (small_root / name).write_bytes(first + b"extra")
    with pytest.raises(D.ChecksumMismatchError):
        D.read_data_bytes(name, root=small_root)
    assert len(calls) == 2


def test_unlisted_file_and_missing_folder_are_explained(small_root, tmp_path):
    with pytest.raises(D.DataFileError, match="not listed"):
        D.read_data_bytes("timemachine/other.txt", root=small_root)
    with pytest.raises(D.DataFileError, match="does not exist"):
        D.data_root(tmp_path / "nowhere")


def test_data_root_precedence_argument_then_env_then_repo(small_root, monkeypatch, tmp_path):
    monkeypatch.delenv(D.DATA_DIR_ENV_VAR, raising=False)
    assert D.data_root() == REPO_DATA.resolve()
    monkeypatch.setenv(D.DATA_DIR_ENV_VAR, str(small_root))
    assert D.data_root() == small_root.resolve()
    assert len(D.read_time_machine()) == 3221  # read from the env folder
    other = tmp_path / "other"
    other.mkdir()
    assert D.data_root(other) == other.resolve()


def test_folder_without_manifest_is_checked_against_the_repo_manifest(small_root):
    (small_root / D.MANIFEST_NAME).unlink()
    assert len(D.read_time_machine(root=small_root)) == 3221


# --- Fashion-MNIST ------------------------------------------------------------------------------


def test_full_fashion_mnist_with_checksum_has_official_sizes_and_class_counts():
    X, y = D.fashion_mnist_tensors("train", fast=False)
    Xt, yt = D.fashion_mnist_tensors("test", fast=False)
    assert X.shape == (60000, 1, 28, 28) and Xt.shape == (10000, 1, 28, 28)
    assert X.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert y.bincount().tolist() == [6000] * 10 and yt.bincount().tolist() == [1000] * 10
    assert abs(X.mean().item() - 0.2860406) < 1e-5  # the published pixel mean
    assert y[:3].tolist() == [9, 0, 0]  # first training labels of the official file


def test_fast_mode_follows_course_fast_and_is_stratified(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    train_iter, test_iter = D.load_fashion_mnist(batch_size=256)
    X, y = train_iter.tensors
    assert len(X) == 6000 and y.bincount().tolist() == [600] * 10
    assert test_iter.tensors[1].bincount().tolist() == [100] * 10
    assert len(train_iter) == 24 and len(D.load_fashion_mnist(256, fast=False)[0]) == 235
    monkeypatch.setenv("COURSE_FAST", "0")
    assert len(D.load_fashion_mnist(batch_size=256)[1].tensors[0]) == 10000


def test_fashion_mnist_batches_and_seeded_determinism():
    def first_batch(seed):
        train_iter, _ = D.load_fashion_mnist(batch_size=64, fast=True, seed=seed)
        return next(iter(train_iter))

    X, y = first_batch(0)
    assert X.shape == (64, 1, 28, 28) and y.shape == (64,)
    assert torch.equal(X, first_batch(0)[0]) and not torch.equal(X, first_batch(1)[0])
    subset0 = D.fashion_mnist_tensors("test", fast=True, seed=0)[0]
    assert not torch.equal(subset0, D.fashion_mnist_tensors("test", fast=True, seed=1)[0])


def test_fashion_mnist_test_iterator_keeps_file_order():
    _, test_iter = D.load_fashion_mnist(batch_size=1000, fast=False)
    _, labels = D.read_fashion_mnist("test")
    assert torch.equal(torch.cat([y for _, y in test_iter]), labels)


def test_resize_interpolates_the_whole_tensor_and_guards_memory():
    X, _ = D.fashion_mnist_tensors("test", resize=32, fast=True)
    assert X.shape == (1000, 1, 32, 32) and 0 <= X.min() and X.max() <= 1
    assert D.fashion_mnist_tensors("test", resize=(20, 24), fast=True)[0].shape[-2:] == (20, 24)
    with pytest.raises(ValueError, match="GiB"):
        D.fashion_mnist_tensors("train", resize=224, fast=False)


def test_raw_tensors_and_text_labels():
    images, labels = D.read_fashion_mnist("test")
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    images[0] = 0  # a copy: the cache is unaffected
    assert D.read_fashion_mnist("test")[0][0].sum() > 0
    assert len(D.FASHION_MNIST_CLASSES) == 10
    assert D.text_labels(torch.tensor([0, 9])) == ["T-shirt/top", "Ankle boot"]
    assert D.text_labels(7) == ["Sneaker"]
    with pytest.raises(ValueError, match="'train' or 'test'"):
        D.read_fashion_mnist("valid")


def test_loaders_never_call_the_download_path(monkeypatch, no_network):
    import torchvision.datasets

    def forbidden(*args, **kwargs):
        raise AssertionError("torchvision's FashionMNIST must not be used by default")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", forbidden)
    D.load_fashion_mnist(batch_size=32, fast=True)
    D.load_data_time_machine(32, 35)
    D.load_image("catdog")
    assert no_network == []  # no connection was even attempted


def test_opt_in_download_explains_a_missing_network(monkeypatch, tmp_path):
    import torchvision.datasets

    def offline(*args, **kwargs):  # what torchvision raises when no host can be reached
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(D.DataDownloadError, match="network connection.*data/fashion-mnist"):
        D.download_fashion_mnist_original(tmp_path)


def test_no_network_fixture_blocks_connections(no_network):
    with pytest.raises(OSError, match="blocked"):
        socket.create_connection(("example.com", 80), timeout=1)
    with pytest.raises(OSError, match="blocked"), socket.socket() as sock:
        sock.connect(("127.0.0.1", 9))
    assert len(no_network) == 2


# --- The Time Machine ------------------------------------------------------------------------


def test_time_machine_text_corpus_and_vocab():
    lines = D.read_time_machine()
    assert len(lines) == 3221 and lines[0] == "the time machine by h g wells"
    corpus, vocab = D.load_corpus_time_machine()
    assert len(corpus) == 170580 and len(vocab) == 28
    assert vocab.idx_to_token[:5] == ["<unk>", " ", "e", "t", "a"]
    words, word_vocab = D.load_corpus_time_machine(max_tokens=1000, token="word")
    assert len(words) == 1000 and word_vocab.token_freqs[0] == ("the", 2261)


def test_load_data_time_machine_batches_are_corpus_windows_and_repeat_for_a_seed():
    corpus, _ = D.load_corpus_time_machine(max_tokens=10000)
    windows = torch.tensor(corpus).unfold(0, 36, 1)  # every run of 36 consecutive tokens
    for random_iter in (False, True):
        data_iter, vocab = D.load_data_time_machine(32, 35, use_random_iter=random_iter, seed=3)
        batches = list(data_iter)
        assert len(batches) == len(data_iter) == 8 and len(vocab) == 28
        for X, Y in batches:
            assert X.shape == Y.shape == (32, 35) and X.dtype == torch.int64
            assert torch.equal(X[:, 1:], Y[:, :-1])
        rows = torch.cat([X, Y[:, -1:]], dim=1)  # X plus the last target: 36 corpus tokens
        assert all((windows == row).all(1).any() for row in rows)
        again, _ = D.load_data_time_machine(32, 35, use_random_iter=random_iter, seed=3)
        assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))


# --- English-French pairs ---------------------------------------------------------------------


def test_nmt_split_holds_out_2000_pairs_with_no_shared_source_sentence():
    train_iter, (src_vocab, tgt_vocab), test = D.load_data_nmt(batch_size=64, num_steps=10)
    src, src_len, tgt, tgt_len = train_iter.tensors
    assert len(test) >= 2000 and len(src) + len(test) == 20000
    assert src.shape == (len(src), 10) and src.dtype == tgt.dtype == torch.int64
    source, _ = D.tokenize_nmt(D.preprocess_nmt(D.read_data_nmt()))
    train_idx, test_idx = D.split_by_source(source, 0.1, seed=0)
    assert not {tuple(source[i]) for i in train_idx} & {tuple(s) for s in test.source}
    assert [source[i] for i in test_idx] == test.source
    # vocabularies come from training pairs only, with the reserved tokens after <unk>
    assert src_vocab.idx_to_token[:4] == ["<unk>", "<pad>", "<bos>", "<eos>"]
    train_words = {w for i in train_idx for w in source[i]}
    assert set(src_vocab.idx_to_token[4:]) <= train_words
    # <eos> ends each unpadded sequence; valid lengths count the non-padding tokens
    eos, pad = tgt_vocab["<eos>"], tgt_vocab["<pad>"]
    short = tgt_len < 10
    assert (tgt[short].gather(1, (tgt_len[short] - 1)[:, None]) == eos).all()
    assert torch.equal(tgt_len, (tgt != pad).sum(1))
    assert test.src.shape == (len(test), 10) and test.tgt_valid_len.shape == (len(test),)


def test_nmt_is_seeded_and_num_examples_only_shrinks_training():
    a_iter, _, a_test = D.load_data_nmt(64, 8, num_examples=500, seed=0)
    b_iter, _, b_test = D.load_data_nmt(64, 8, seed=0)
    assert a_iter.num_examples == 500 and a_test.source == b_test.source
    assert torch.equal(next(iter(a_iter))[0], next(iter(D.load_data_nmt(64, 8, 500)[0]))[0])
    assert D.load_data_nmt(64, 8, seed=1)[2].source != b_test.source


# --- WikiText-2 / BERT ------------------------------------------------------------------------


def test_read_wiki_paragraphs_are_lower_case_sentence_lists():
    paragraphs = D.read_wiki("valid")
    assert len(paragraphs) > 1000 and all(len(p) >= 2 for p in paragraphs)
    assert all(s == s.lower() for p in paragraphs[:50] for s in p)
    assert len(D.read_wiki("test")) > 1000
    with pytest.raises(ValueError, match="split"):
        D.read_wiki("train")


def test_load_data_wiki_bert_tensors():
    train_iter, vocab = D.load_data_wiki(batch_size=512, max_len=64, seed=0)
    tokens, segments, valid_lens, positions, weights, labels, nsp = train_iter.tensors
    n = len(tokens)
    assert n > 3000 and tokens.shape == (n, 64) and positions.shape == (n, 10)
    assert vocab.idx_to_token[:5] == ["<unk>", "<pad>", "<mask>", "<cls>", "<sep>"]
    assert (tokens[:, 0] == vocab["<cls>"]).all() and tokens.max() < len(vocab)
    assert set(segments.unique().tolist()) == {0, 1} and (valid_lens <= 64).all()
    assert (tokens.gather(1, (valid_lens - 1)[:, None]) == vocab["<sep>"]).all()
    num_preds = weights.sum(1)
    assert torch.equal(num_preds, (valid_lens * 0.15).round().clamp(min=1).float())
    masked = tokens.gather(1, positions)[weights.bool()] == vocab["<mask>"]
    assert 0.77 < masked.float().mean() < 0.83
    assert 0.45 < nsp.float().mean() < 0.55
    assert weights.dtype == torch.float32 and labels.dtype == torch.int64
    again, _ = D.load_data_wiki(batch_size=512, max_len=64, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(train_iter.tensors, again.tensors, strict=True))
    test_iter, test_vocab = D.load_data_wiki(512, 64, split="test", vocab=vocab)
    assert test_vocab is vocab and test_iter.tensors[0].max() < len(vocab)


# --- images -------------------------------------------------------------------------------------


def test_images_list_and_load():
    names = D.list_images()
    assert {"catdog", "cat1", "chelsea", "brick", "hubble_deep_field"} <= set(names)
    cat = D.load_image("chelsea")
    assert cat.shape == (3, 300, 451) and cat.dtype == torch.float32
    assert 0 <= cat.min() and cat.max() <= 1
    assert D.load_image("camera.png").shape == (1, 512, 512)  # grayscale stays 1 channel
    assert D.load_image("camera", mode="RGB").shape == (3, 512, 512)
    assert D.load_image("catdog", mode="L").shape == (1, 561, 728)
    with pytest.raises(ValueError, match="catdog"):
        D.load_image("dog")


# --- synthetic detection ------------------------------------------------------------------------


def test_detection_data_format_and_boxes():
    images, targets = D.detection_data("val")
    assert images.shape == (100, 3, 256, 256) and images.dtype == torch.uint8
    assert targets.shape == (100, 1, 5) and targets.dtype == torch.float32
    assert (targets[:, 0, 0] == 0).all()
    xmin, ymin, xmax, ymax = targets[:, 0, 1:].unbind(1)
    assert (0 <= xmin).all() and (xmax <= 1).all() and (0 <= ymin).all() and (ymax <= 1).all()
    assert (xmax - xmin > 8 / 256).all() and (ymax - ymin > 8 / 256).all()
    # each box holds the banana's yellow body, which spans most of the box
    for image, box in zip(images[:20], (targets[:20, 0, 1:] * 256).long(), strict=True):
        x0, y0, x1, y1 = box.tolist()
        r, g, b = image[:, y0:y1, x0:x1].float()
        rows, cols = ((r > 150) & (g > 120) & (b < 0.5 * r)).nonzero().unbind(1)
        assert len(rows) >= 20
        assert cols.max() - cols.min() + 1 >= 0.5 * (x1 - x0)
        assert rows.max() - rows.min() + 1 >= 0.5 * (y1 - y0)


def test_detection_data_is_seeded_and_prefix_stable():
    images, targets = D.detection_data("val", num_images=20, seed=0)
    assert torch.equal(images[:5], D.detection_data("val", num_images=5, seed=0)[0])
    assert torch.equal(targets, D.detection_data("val", num_images=20, seed=0)[1])
    assert not torch.equal(targets, D.detection_data("val", num_images=20, seed=1)[1])
    assert not torch.equal(targets, D.detection_data("train", num_images=20, seed=0)[1])


def test_load_data_detection_fast_mode_yields_float_batches(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    train_iter, val_iter = D.load_data_detection(batch_size=32)
    assert len(train_iter) == 7 and len(val_iter) == 2  # 200 / 32 and 50 / 32, rounded up
    X, Y = next(iter(train_iter))
    assert X.shape == (32, 3, 256, 256) and X.dtype == torch.float32 and Y.shape == (32, 1, 5)
    assert 0 <= X.min() and X.max() <= 1


def test_detection_sample_grid_is_shipped_and_small():
    path = REPO_DATA / "detection_samples.png"
    assert path.is_file() and path.stat().st_size < 150_000
    grid = D.draw_detection_grid(*D.detection_data("val", num_images=4), ncols=2, tile=64)
    assert grid.size == (128, 128)
