"""Offline data sets: the checked files in ``data/`` and ready-to-train loaders.

Every data set a chapter uses ships in the repository's ``data/`` folder, or is generated from a
seed; nothing here touches the network. The first time a process reads a file, its sha256 is
checked against ``data/MANIFEST.sha256``; a missing or altered file raises a
:class:`DataFileError` naming the file, both digests and the command that restores it.

Where the data is read from: the ``root=`` argument of a loader, else the folder in the
environment variable ``COURSE_DATA_DIR``, else the ``data/`` folder next to this package.
Only where ``COURSE_ALLOW_DOWNLOAD=1`` (set by the Colab/Kaggle bundles, never by default) is a
missing file downloaded and verified, see :mod:`helpers.sources`.

Loaders (all deterministic for a given ``seed``):

* Fashion-MNIST: :func:`load_fashion_mnist`, :func:`fashion_mnist_tensors`,
  :func:`read_fashion_mnist`, :data:`FASHION_MNIST_CLASSES`, :func:`text_labels`
* The Time Machine: :func:`read_time_machine`, :func:`load_corpus_time_machine`,
  :func:`load_data_time_machine`
* English-French pairs: :func:`read_data_nmt`, :func:`load_data_nmt`
* WikiText-2 (BERT pre-training): :func:`read_wiki`, :func:`load_data_wiki`
* Sample images: :func:`list_images`, :func:`load_image`
* Synthetic "banana" detection set: :func:`detection_data`, :func:`load_data_detection`

Tokenizers, ``Vocab`` and the sequence samplers are in :mod:`helpers.text`.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import math
import numbers
import os
import random
import re
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from helpers import sources
from helpers.config import is_fast
from helpers.data import make_loader
from helpers.sources import DataDownloadError
from helpers.text import (
    BERT_RESERVED_TOKENS,
    SeqDataLoader,
    Vocab,
    bert_pretraining_tensors,
    build_array_nmt,
    preprocess_nmt,
    tokenize,
    tokenize_nmt,
)

DATA_DIR_ENV_VAR = "COURSE_DATA_DIR"
MANIFEST_NAME = "MANIFEST.sha256"
REPO_DATA_DIR = Path(__file__).resolve().parent.parent / "data"

# =============================================================================================
# File integrity
# =============================================================================================


class DataFileError(RuntimeError):
    """A shipped data file (or the data folder) is missing, unlisted or corrupted."""


class MissingDataFileError(DataFileError):
    """A data file listed in the manifest is not on disk."""


class ChecksumMismatchError(DataFileError):
    """A data file's sha256 differs from the one in the manifest."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else ``$COURSE_DATA_DIR``, else the repo's ``data/``."""
    if root is not None:
        path, source = Path(root), "the root= argument"
    elif os.environ.get(DATA_DIR_ENV_VAR):
        path, source = Path(os.environ[DATA_DIR_ENV_VAR]), f"${DATA_DIR_ENV_VAR}"
    else:
        path, source = REPO_DATA_DIR, "the default (the data/ folder next to helpers/)"
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise DataFileError(
            f"The data folder {path} (from {source}) does not exist. Point root= or "
            f"${DATA_DIR_ENV_VAR} at the course's data/ folder, or unset {DATA_DIR_ENV_VAR}."
        )
    return path


def _manifest_path(base: Path) -> Path:
    """The manifest of ``base``; a folder without one is checked against the repo's manifest."""
    own = base / MANIFEST_NAME
    return own if own.is_file() else REPO_DATA_DIR / MANIFEST_NAME


@functools.lru_cache(maxsize=8)
def _parse_manifest(path: Path, mtime_ns: int) -> dict[str, str]:
    digests = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            digests[name.lstrip("*")] = digest.lower()
    return digests


def read_manifest(root: str | os.PathLike | None = None) -> dict[str, str]:
    """The expected sha256 of every shipped file, keyed by path relative to the data folder."""
    path = _manifest_path(data_root(root))
    if not path.is_file():
        raise DataFileError(
            f"No manifest at {path}. Restore it with `git checkout -- data/{MANIFEST_NAME}`."
        )
    return dict(_parse_manifest(path, path.stat().st_mtime_ns))


def _restore_hint(relpath: str, base: Path) -> str:
    hint = f"Restore it with `git checkout -- data/{relpath}` in the course repository"
    if base != REPO_DATA_DIR.resolve():
        hint += f", then copy data/{relpath} to {base / relpath}"
    return hint + "."


# path -> (size, mtime_ns, digest) of files whose digest matched in this process
_verified: dict[Path, tuple[int, int, str]] = {}


def sha256_of(data: bytes) -> str:
    """Hex sha256 digest of some bytes."""
    return hashlib.sha256(data).hexdigest()


def read_data_bytes(relpath: str, root: str | os.PathLike | None = None) -> bytes:
    """Read a shipped data file, checking its sha256 against the manifest once per process.

    ``relpath`` is relative to the data folder, e.g. ``'fashion-mnist/LICENSE'``. Raises
    :class:`MissingDataFileError` or :class:`ChecksumMismatchError` with a restore command.
    """
    base = data_root(root)
    expected = read_manifest(base).get(relpath)
    if expected is None:
        raise DataFileError(
            f"{relpath!r} is not listed in {_manifest_path(base)}; check the name, or if you "
            "added the file on purpose, run helpers.datasets.write_manifest()."
        )
    path = base / relpath
    if not path.is_file() and sources.downloads_allowed():
        _download_into(base, relpath, expected)
        expected = read_manifest(base)[relpath]
    if not path.is_file():
        raise MissingDataFileError(
            f"Data file {path} is missing (expected sha256 {expected}, actual: no file). "
            + _restore_hint(relpath, base)
        )
    data = path.read_bytes()
    stat = path.stat()
    if _verified.get(path) == (stat.st_size, stat.st_mtime_ns, expected):
        return data
    actual = sha256_of(data)
    if actual != expected:
        raise ChecksumMismatchError(
            f"Data file {path} is corrupted or was changed: expected sha256 {expected}, "
            f"actual {actual}. " + _restore_hint(relpath, base)
        )
    _verified[path] = (stat.st_size, stat.st_mtime_ns, expected)
    return data


def _download_into(base: Path, relpath: str, expected: str) -> None:
    """Fetch a missing file (opt-in) and, if what was verified and written differs from the shipped
    bytes (a derived file compressed here), record its digest in this folder's own manifest."""
    written = sources.fetch(relpath, base, read_manifest(base))
    if written != expected:
        digests = {**read_manifest(base), relpath: written}
        lines = [f"{digest}  {name}\n" for name, digest in sorted(digests.items())]
        (base / MANIFEST_NAME).write_text("".join(lines), encoding="utf-8")


def write_manifest(root: str | os.PathLike | None = None) -> Path:
    """Rewrite ``MANIFEST.sha256`` for every file in the data folder (after a deliberate change).

    Lines are in ``sha256sum`` format (``<digest>  <relative path>``), sorted by path, so
    ``cd data && sha256sum -c MANIFEST.sha256`` checks the folder without Python.
    """
    base = data_root(root)
    files = sorted(
        p.relative_to(base).as_posix()
        for p in base.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    )
    lines = [f"{sha256_of((base / name).read_bytes())}  {name}\n" for name in files]
    out = base / MANIFEST_NAME
    out.write_text("".join(lines), encoding="utf-8")
    return out


def _gunzip_text(relpath: str, root) -> str:
    return gzip.decompress(read_data_bytes(relpath, root)).decode("utf-8")


def _root_key(root) -> str:
    """A hashable cache key for the data folder (resolved now, so env changes are seen)."""
    return str(data_root(root))


# =============================================================================================
# Fashion-MNIST
# =============================================================================================

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_FASHION_FILES = {
    "train": ("fashion-mnist/train-images-idx3-ubyte.gz", "fashion-mnist/train-labels-idx1-ubyte.gz"),
    "test": ("fashion-mnist/t10k-images-idx3-ubyte.gz", "fashion-mnist/t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_FAST_SIZES = {"train": 6000, "test": 1000}
_MAX_RESIZED_BYTES = 4 * 2**30


def read_idx(data: bytes) -> np.ndarray:
    """Decode an IDX file (the MNIST format) of unsigned bytes into a numpy array.

    Layout: two zero bytes, a type code (0x08 = uint8), the number of dimensions, each
    dimension as a big-endian uint32, then the values.
    """
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError("Not an IDX file of unsigned bytes (expected header 00 00 08 ..).")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if values.size != math.prod(dims):
        raise ValueError(f"IDX header promises shape {dims} but holds {values.size} values.")
    return values.reshape(dims)


@functools.lru_cache(maxsize=4)
def _fashion_mnist_cached(split: str, root_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    image_file, label_file = _FASHION_FILES[split]
    images = read_idx(gzip.decompress(read_data_bytes(image_file, root_key)))
    labels = read_idx(gzip.decompress(read_data_bytes(label_file, root_key)))
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def read_fashion_mnist(
    split: str = "train", root: str | os.PathLike | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped Fashion-MNIST split as stored: uint8 images ``(N, 28, 28)``, int64 labels.

    Why our own reader and not ``torchvision.datasets.FashionMNIST``: the shipped files are the
    official ``.gz`` files, and decoding them is a dozen lines of numpy (:func:`read_idx`).
    torchvision's class wants them unpacked under ``<root>/FashionMNIST/raw`` and, with
    ``download=True``, may reach for the network; it also yields PIL images one at a time,
    which is slow for a data set that fits in memory as one tensor.

    Decoded tensors are cached per process; this returns copies, safe to modify.
    """
    _check_fashion_split(split)
    images, labels = _fashion_mnist_cached(split, _root_key(root))
    return images.clone(), labels.clone()


def _check_fashion_split(split: str) -> None:
    if split not in _FASHION_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")


def stratified_subset(labels: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
    """Indices of a seeded random subset with (nearly) equal counts per class, sorted."""
    classes = labels.unique()
    per_class = size // len(classes)
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for c in classes:
        members = (labels == c).nonzero().squeeze(1)
        if len(members) < per_class:
            raise ValueError(f"Class {int(c)} has {len(members)} examples, fewer than {per_class}.")
        picks.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    return torch.cat(picks).sort().values


def _resize(images: torch.Tensor, resize: int | tuple[int, int]) -> torch.Tensor:
    size = (resize, resize) if isinstance(resize, int) else tuple(resize)
    needed = images.shape[0] * images.shape[1] * size[0] * size[1] * 4
    if needed > _MAX_RESIZED_BYTES:
        raise ValueError(
            f"Resizing {images.shape[0]} images to {size} needs {needed / 2**30:.1f} GiB; use "
            "fast=True (a subset), a smaller resize, or resize each batch inside the loop."
        )
    out = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def fashion_mnist_tensors(
    split: str = "train",
    resize: int | tuple[int, int] | None = None,
    fast: bool | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST as training tensors: float32 ``(N, 1, H, W)`` in [0, 1], int64 labels.

    ``H = W = 28`` unless ``resize`` (an int or ``(h, w)``) is given; resizing is one bilinear
    ``interpolate`` call on the whole tensor. In fast mode (``fast=None`` follows
    :func:`helpers.config.is_fast`) the split is a seeded subset with equal class counts:
    6,000 train / 1,000 test images instead of 60,000 / 10,000.
    """
    _check_fashion_split(split)
    images, labels = _fashion_mnist_cached(split, _root_key(root))
    if is_fast() if fast is None else fast:
        keep = stratified_subset(labels, FASHION_MNIST_FAST_SIZES[split], seed=seed)
        images, labels = images[keep], labels[keep]
    X = images.unsqueeze(1).float().div_(255.0)
    if resize is not None:
        X = _resize(X, resize)
    return X, labels.clone()


def load_fashion_mnist(
    batch_size: int,
    resize: int | tuple[int, int] | None = None,
    fast: bool | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
):
    """Fashion-MNIST minibatch iterators ``(train_iter, test_iter)`` from the shipped files.

    Batches are ``(X, y)`` with X float32 ``(B, 1, H, W)`` in [0, 1] and y int64. The training
    iterator reshuffles every epoch (seeded); the test iterator keeps the file order. See
    :func:`fashion_mnist_tensors` for ``resize`` and the fast-mode subset.
    """
    train = fashion_mnist_tensors("train", resize, fast, seed, root)
    test = fashion_mnist_tensors("test", resize, fast, seed, root)
    train_iter = make_loader(*train, batch_size=batch_size, shuffle=True, seed=seed)
    test_iter = make_loader(*test, batch_size=batch_size, shuffle=False)
    return train_iter, test_iter


def text_labels(indices: Iterable[int] | torch.Tensor | int) -> list[str]:
    """Class names of Fashion-MNIST label indices, e.g. ``text_labels([0, 9])``."""
    if isinstance(indices, torch.Tensor):
        indices = indices.reshape(-1).tolist()
    elif isinstance(indices, numbers.Integral):
        indices = [indices]
    return [FASHION_MNIST_CLASSES[int(i)] for i in indices]


def download_fashion_mnist_original(root: str | os.PathLike) -> Path:
    """Opt-in only: download the original Fashion-MNIST with torchvision into ``root``.

    Never called by the loaders, which read the byte-identical files shipped in
    ``data/fashion-mnist/``. Needs a network connection; without one this raises
    :class:`DataDownloadError`. Returns the folder with the downloaded raw files.
    """
    from torchvision.datasets import FashionMNIST

    root = Path(root)
    try:
        for train in (True, False):
            FashionMNIST(str(root), train=train, download=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; torchvision raises both
        raise DataDownloadError(
            f"Could not download Fashion-MNIST into {root}: {err}. This needs a network "
            "connection. You do not need it for the course: load_fashion_mnist() reads the "
            "identical files shipped in data/fashion-mnist/."
        ) from err
    return root / "FashionMNIST" / "raw"


# =============================================================================================
# The Time Machine
# =============================================================================================


def read_time_machine(root: str | os.PathLike | None = None) -> list[str]:
    """Lines of H. G. Wells' *The Time Machine*, lower case, with every run of non-letters
    replaced by one space (and stripped), as in d2l; empty lines are kept."""
    text = read_data_bytes("timemachine/timemachine.txt", root).decode("utf-8")
    return [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in text.splitlines()]


def load_corpus_time_machine(
    max_tokens: int = -1, token: str = "char", root: str | os.PathLike | None = None
) -> tuple[list[int], Vocab]:
    """Token indices of *The Time Machine* and their vocabulary.

    ``token='char'`` (the default, as in the RNN chapter) or ``'word'``; ``max_tokens > 0``
    keeps only the first tokens.
    """
    tokens = tokenize(read_time_machine(root), token)
    vocab = Vocab(tokens)
    corpus = [vocab.token_to_idx[tok] for line in tokens for tok in line]
    if max_tokens > 0:
        corpus = corpus[:max_tokens]
    return corpus, vocab


def load_data_time_machine(
    batch_size: int,
    num_steps: int,
    use_random_iter: bool = False,
    max_tokens: int = 10000,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> tuple[SeqDataLoader, Vocab]:
    """Character-level language-model batches of *The Time Machine* and the vocabulary.

    Returns ``(data_iter, vocab)``; each epoch of ``data_iter`` yields int64 ``(X, Y)`` of shape
    ``(batch_size, num_steps)`` by random sampling or sequential partitioning
    (see :class:`helpers.text.SeqDataLoader`).
    """
    corpus, vocab = load_corpus_time_machine(max_tokens, root=root)
    return SeqDataLoader(corpus, batch_size, num_steps, use_random_iter, seed=seed), vocab


# =============================================================================================
# English-French translation pairs
# =============================================================================================

NMT_RESERVED_TOKENS = ("<pad>", "<bos>", "<eos>")


def read_data_nmt(root: str | os.PathLike | None = None) -> str:
    """The shipped English-French pairs as text, one ``English<TAB>French`` pair per line."""
    return _gunzip_text("fra-eng/fra.txt.gz", root)


@dataclass
class NMTTestSet:
    """Held-out translation pairs: token lists and their arrays under the training vocabularies.

    ``source``/``target`` are the preprocessed token lists (for BLEU against
    ``' '.join(...)``); ``src``/``tgt`` are int64 ``(N, num_steps)`` with valid lengths.
    """

    source: list[list[str]]
    target: list[list[str]]
    src: torch.Tensor
    src_valid_len: torch.Tensor
    tgt: torch.Tensor
    tgt_valid_len: torch.Tensor

    def __len__(self) -> int:
        return len(self.source)


def split_by_source(
    source: Sequence[Sequence[str]], test_size: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Seeded train/test split of pair indices in which no source sentence is in both parts.

    Whole groups of pairs that share a source sentence (one English sentence often has several
    French translations) go to the test part, in a seeded random order, until it holds at least
    ``test_size`` of all pairs. Both index lists keep the file order.
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size is a fraction in (0, 1), got {test_size}.")
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, sentence in enumerate(source):
        groups.setdefault(tuple(sentence), []).append(i)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    wanted, test = math.ceil(test_size * len(source)), []
    for group in order:
        if len(test) >= wanted:
            break
        test += group
    test_set = set(test)
    return [i for i in range(len(source)) if i not in test_set], sorted(test)


def load_data_nmt(
    batch_size: int,
    num_steps: int,
    num_examples: int | None = None,
    test_size: float = 0.1,
    seed: int = 0,
    root: str | os.PathLike | None = None,
):
    """English-to-French training batches, the vocabularies and a held-out test set.

    Of the 20,000 shipped pairs, a seeded ``test_size`` fraction (10%: 2,000 pairs; no English
    sentence in both parts) is held out and never enters training or the vocabularies.
    ``num_examples`` keeps only the first training pairs (the file is sorted by length, so
    these are the shortest). Vocabularies: words seen at least twice in the training pairs,
    plus ``<unk>``, ``<pad>``, ``<bos>``, ``<eos>``.

    Returns ``(train_iter, (src_vocab, tgt_vocab), test)``: ``train_iter`` yields
    ``(src, src_valid_len, tgt, tgt_valid_len)`` int64 batches (``(B, num_steps)`` and
    ``(B,)``), and ``test`` is an :class:`NMTTestSet`.
    """
    source, target = tokenize_nmt(preprocess_nmt(read_data_nmt(root)))
    train_idx, test_idx = split_by_source(source, test_size, seed)
    train_idx = train_idx[:num_examples]
    src_train, tgt_train = [source[i] for i in train_idx], [target[i] for i in train_idx]
    src_vocab = Vocab(src_train, min_freq=2, reserved_tokens=NMT_RESERVED_TOKENS)
    tgt_vocab = Vocab(tgt_train, min_freq=2, reserved_tokens=NMT_RESERVED_TOKENS)
    arrays = (*build_array_nmt(src_train, src_vocab, num_steps),
              *build_array_nmt(tgt_train, tgt_vocab, num_steps))  # fmt: skip
    train_iter = make_loader(*arrays, batch_size=batch_size, shuffle=True, seed=seed)
    src_test, tgt_test = [source[i] for i in test_idx], [target[i] for i in test_idx]
    test = NMTTestSet(
        src_test, tgt_test,
        *build_array_nmt(src_test, src_vocab, num_steps),
        *build_array_nmt(tgt_test, tgt_vocab, num_steps),
    )  # fmt: skip
    return train_iter, (src_vocab, tgt_vocab), test


# =============================================================================================
# WikiText-2 for BERT pre-training
# =============================================================================================

_WIKI_FILES = {"valid": "wikitext-2/wiki.valid.tokens.gz", "test": "wikitext-2/wiki.test.tokens.gz"}


def read_wiki(split: str = "valid", root: str | os.PathLike | None = None) -> list[list[str]]:
    """Paragraphs of a WikiText-2 split, each a list of lower-case sentences (strings).

    A paragraph is a line with at least two sentences when split on ``' . '`` (headings and
    one-sentence lines are dropped), in file order.
    """
    if split not in _WIKI_FILES:
        raise ValueError(f"split must be one of {sorted(_WIKI_FILES)}, got {split!r}.")
    lines = _gunzip_text(_WIKI_FILES[split], root).splitlines()
    # Count sentences after stripping: d2l counts before, which also keeps one-sentence lines
    # that end in " . ".
    paragraphs = [line.strip().lower().split(" . ") for line in lines]
    return [p for p in paragraphs if len(p) >= 2]


def load_data_wiki(
    batch_size: int,
    max_len: int,
    split: str = "valid",
    seed: int = 0,
    vocab: Vocab | None = None,
    root: str | os.PathLike | None = None,
):
    """BERT pre-training batches from a WikiText-2 split, and the vocabulary.

    Examples pair sentences for next-sentence prediction (half real next sentence, half
    random) and mask 15% of tokens for masked language modelling (80% ``<mask>``, 10% random
    token, 10% unchanged); see :func:`helpers.text.bert_pretraining_tensors` for the seven
    tensors each batch holds. The vocabulary (words seen at least 5 times, plus ``<unk>``,
    ``<pad>``, ``<mask>``, ``<cls>``, ``<sep>``) is built from the split unless ``vocab`` is
    given, e.g. the training vocabulary when evaluating on ``split='test'``.

    Returns ``(train_iter, vocab)``.
    """
    paragraphs = [tokenize(p, "word") for p in read_wiki(split, root)]
    random.Random(seed).shuffle(paragraphs)
    if vocab is None:
        sentences = [sentence for p in paragraphs for sentence in p]
        vocab = Vocab(sentences, min_freq=5, reserved_tokens=BERT_RESERVED_TOKENS)
    tensors = bert_pretraining_tensors(paragraphs, vocab, max_len, seed=seed)
    return make_loader(*tensors, batch_size=batch_size, shuffle=True, seed=seed), vocab


# =============================================================================================
# Sample images
# =============================================================================================

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _image_files(root) -> dict[str, str]:
    """Image name (file stem) -> path relative to the data folder, from the manifest."""
    return {
        Path(name).stem: name
        for name in read_manifest(root)
        if name.startswith("images/") and name.lower().endswith(_IMAGE_SUFFIXES)
    }


def list_images(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the shipped sample images (e.g. ``'catdog'``, ``'chelsea'``), sorted."""
    return sorted(_image_files(root))


def load_image(
    name: str, mode: str | None = None, root: str | os.PathLike | None = None
) -> torch.Tensor:
    """A shipped image as a float32 tensor ``(C, H, W)`` in [0, 1].

    ``name`` is a name from :func:`list_images` (a file name such as ``'catdog.jpg'`` works
    too). By default grayscale images have one channel and all others are RGB; ``mode`` (a
    Pillow mode such as ``'RGB'``, ``'L'`` or ``'RGBA'``) converts explicitly.
    """
    files = _image_files(root)
    stem = Path(name).stem
    if stem not in files:
        raise ValueError(f"No image named {name!r}; choose one of: {', '.join(sorted(files))}.")
    image = Image.open(io.BytesIO(read_data_bytes(files[stem], root)))
    image = image.convert(mode or ("L" if image.mode == "L" else "RGB"))
    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


# =============================================================================================
# Synthetic object detection ("bananas" in the format of d2l's banana-detection set)
# =============================================================================================

DETECTION_IMAGE_SIZE = 256
DETECTION_SIZES = {"train": 1000, "val": 100}
DETECTION_FAST_SIZES = {"train": 200, "val": 50}
DETECTION_TEXTURES = ("brick", "grass", "gravel", "hubble_deep_field")
_SPLIT_STREAM = {"train": 0, "val": 1}


@functools.lru_cache(maxsize=2)
def _textures(root_key: str) -> tuple[np.ndarray, ...]:
    """The background textures as uint8 (H, W, 3) arrays."""
    return tuple(
        (load_image(name, mode="RGB", root=root_key).permute(1, 2, 0).numpy() * 255).round()
        .astype(np.uint8)
        for name in DETECTION_TEXTURES
    )


def _background(textures: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A random 256x256 crop of a random texture, randomly flipped and tinted."""
    size = DETECTION_IMAGE_SIZE
    texture = textures[rng.integers(len(textures))]
    top = rng.integers(texture.shape[0] - size + 1)
    left = rng.integers(texture.shape[1] - size + 1)
    crop = texture[top : top + size, left : left + size].astype(np.float32)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    tint = rng.uniform(0.6, 1.1, size=3) * rng.uniform(0.7, 1.2)
    return crop * tint.astype(np.float32)


def _banana(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A crescent-shaped yellow object on a square patch: (alpha (S, S), colour (S, S, 3)).

    The crescent is an ellipse minus a second ellipse shifted along the minor axis; the
    shape is rotated by a random angle. Edges are soft (about one pixel wide).
    """
    a = rng.uniform(18, 50)  # semi-major axis in pixels
    b = a * rng.uniform(0.45, 0.6)
    shift, a_in = b * rng.uniform(0.45, 0.7), a * rng.uniform(1.0, 1.1)
    angle = rng.uniform(0, 2 * np.pi)
    half = int(np.ceil(a)) + 1
    v, u = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    x = u * np.cos(angle) + v * np.sin(angle)  # coordinates along the object's axes
    y = -u * np.sin(angle) + v * np.cos(angle)
    r_out = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    r_in = np.sqrt((x / a_in) ** 2 + ((y - shift) / b) ** 2)
    # (1 - r) * b approximates the distance to the ellipse edge in pixels
    alpha = np.clip((1 - r_out) * b + 0.5, 0, 1) * np.clip((r_in - 1) * b + 0.5, 0, 1)
    yellow = np.array([rng.uniform(215, 255), rng.uniform(180, 225), rng.uniform(20, 80)])
    shade = 0.7 + 0.3 * np.clip(1.2 - r_out, 0, 1)[..., None]
    tips = (np.abs(x) > 0.8 * a)[..., None]
    colour = np.where(tips, yellow * [0.55, 0.45, 0.3], yellow * shade)
    return alpha, colour


def _detection_example(textures, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """One image (uint8 (256, 256, 3)) with one banana, and its box [xmin, ymin, xmax, ymax]."""
    image = _background(textures, rng)
    alpha, colour = _banana(rng)
    side = alpha.shape[0]
    top, left = rng.integers(DETECTION_IMAGE_SIZE - side + 1, size=2)
    patch = image[top : top + side, left : left + side]
    patch[:] = alpha[..., None] * colour + (1 - alpha[..., None]) * patch
    rows = np.flatnonzero((alpha >= 0.5).any(axis=1))
    cols = np.flatnonzero((alpha >= 0.5).any(axis=0))
    box = [left + cols[0], top + rows[0], left + cols[-1] + 1, top + rows[-1] + 1]
    return np.clip(image, 0, 255).astype(np.uint8), [float(c) for c in box]


@functools.lru_cache(maxsize=4)
def _detection_cached(split: str, num_images: int, seed: int, root_key: str):
    textures = _textures(root_key)
    images = np.empty((num_images, DETECTION_IMAGE_SIZE, DETECTION_IMAGE_SIZE, 3), np.uint8)
    targets = np.zeros((num_images, 1, 5), np.float32)  # label 0 = banana
    for i in range(num_images):
        # one random stream per image: image i is the same whatever num_images is
        rng = np.random.default_rng([seed, _SPLIT_STREAM[split], i])
        images[i], targets[i, 0, 1:] = _detection_example(textures, rng)
    targets[:, :, 1:] /= DETECTION_IMAGE_SIZE
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(targets)


def detection_data(
    split: str = "train",
    num_images: int | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic banana-detection set, generated from ``seed`` (cached per process).

    Like d2l's banana-detection data: 256x256 RGB images, one banana each, 1,000 ``'train'``
    and 100 ``'val'`` images (``num_images`` takes the first ones). Backgrounds are random
    crops of the shipped CC0/public-domain textures. Returns ``images`` uint8
    ``(N, 3, 256, 256)`` (uint8 keeps 1,000 images at 197 MB instead of 786 MB) and
    ``targets`` float32 ``(N, 1, 5)`` holding ``[label, xmin, ymin, xmax, ymax]`` with label 0
    and the box corners divided by 256 (so in [0, 1], as d2l's ``read_data_bananas``). Pixel
    ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``, so ``xmax - xmin`` is the width.
    """
    if split not in DETECTION_SIZES:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}.")
    num_images = DETECTION_SIZES[split] if num_images is None else num_images
    images, targets = _detection_cached(split, num_images, seed, _root_key(root))
    return images.clone(), targets.clone()


class ByteImageLoader:
    """Wraps a loader of ``(uint8 images, targets)`` so it yields float32 images in [0, 1]."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, targets in self.loader:
            yield images.float().div_(255.0), targets


def load_data_detection(
    batch_size: int,
    fast: bool | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> tuple[ByteImageLoader, ByteImageLoader]:
    """Minibatches ``(train_iter, val_iter)`` of the synthetic banana-detection set.

    Batches are ``(images, targets)``: float32 ``(B, 3, 256, 256)`` in [0, 1] and float32
    ``(B, 1, 5)`` as in :func:`detection_data`. Fast mode (``fast=None`` follows
    :func:`helpers.config.is_fast`) uses the first 200 train / 50 val images.
    """
    sizes = DETECTION_FAST_SIZES if (is_fast() if fast is None else fast) else DETECTION_SIZES
    train = detection_data("train", sizes["train"], seed, root)
    val = detection_data("val", sizes["val"], seed, root)
    train_iter = make_loader(*train, batch_size=batch_size, shuffle=True, seed=seed)
    val_iter = make_loader(*val, batch_size=batch_size, shuffle=False)
    return ByteImageLoader(train_iter), ByteImageLoader(val_iter)


def draw_detection_grid(
    images: torch.Tensor, targets: torch.Tensor, ncols: int = 6, tile: int = 128
) -> Image.Image:
    """A grid of detection images (uint8 or [0, 1] float) with their boxes drawn in red."""
    images = images if images.dtype == torch.uint8 else (images * 255).round().to(torch.uint8)
    nrows = math.ceil(len(images) / ncols)
    grid = Image.new("RGB", (ncols * tile, nrows * tile), "white")
    for i, (image, target) in enumerate(zip(images, targets, strict=True)):
        pic = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((tile, tile), Image.BILINEAR)
        draw = ImageDraw.Draw(pic)
        for label, *box in target.tolist():
            if label >= 0:
                draw.rectangle([c * tile for c in box], outline=(230, 20, 20), width=2)
        grid.paste(pic, ((i % ncols) * tile, (i // ncols) * tile))
    return grid


def save_detection_samples(
    path: str | os.PathLike, num_images: int = 18, ncols: int = 6, seed: int = 0, root=None
) -> Path:
    """Save a grid of the first training images with boxes (``data/detection_samples.png``)."""
    images, targets = detection_data("train", num_images, seed, root)
    grid = draw_detection_grid(images, targets, ncols=ncols, tile=112)
    path = Path(path)
    # a 64-colour palette keeps the PNG near 100 KB
    grid.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path
