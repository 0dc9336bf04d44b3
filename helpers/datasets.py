"""Loaders of the course's data sets: from the checked files in ``data/`` to ready tensors.

Every data set a chapter uses ships in ``data/`` or is generated from a seed; nothing here touches
the network. Files are read through :func:`helpers.sources.read_data_bytes`, which checks each
file's sha256 against ``data/MANIFEST.sha256``; :mod:`helpers.sources` also decides where the data
folder is (the ``root=`` argument of every loader, else ``$COURSE_DATA_DIR``, else ``data/``).
Tokenizers, ``Vocab`` and the samplers are in :mod:`helpers.text`, the generators of the synthetic
detection sets in :mod:`helpers.detection`.

**Names.** One scheme for every set:

* ``read_<set>(...)``: the records as stored, decoded but not transformed (uint8 images, lines of
  text, token lists as in the file), e.g. ``read_snli("val")``.
* ``<set>_tensors(split, ...)``: the ready tensors of one split of an in-memory set, e.g.
  ``fashion_mnist_tensors("train")``.
* ``load_<set>(batch_size, ...)``: ready-to-train minibatch iterators (the training iterator
  reshuffles every epoch, seeded; the others keep the file order), plus the vocabularies where
  the loader builds them, e.g. ``load_fra_eng(128, 10)``.

**Splits** are called ``"train"``, ``"val"`` and ``"test"`` everywhere; :data:`SPLITS` lists which
ones each set has, and any other name raises a ``ValueError`` listing them. Held-out splits that
the course makes itself are seeded (``seed=``) and never share a source sentence (fra-eng), a
premise (SNLI) or a message text (SMS Spam) between two splits.

**Fast mode, one rule.** Every ``*_tensors``/``load_*`` loader of an example-based set takes
``fast: bool | None = None`` (None follows :func:`helpers.config.is_fast`). In fast mode it keeps
:data:`FAST_SIZES` ``[set][split]`` examples of each split (the size comes from
:func:`fast_size`), a seeded subset in file order that keeps the class proportions
(:func:`fast_subset`), picked *after* everything the full data determines: vocabularies, held-out
splits, deduplication. So fast mode changes how many examples a notebook uses, never what a token
id or a label means, nor which examples are held out. The generated detection sets keep their first
images: each is an independent seeded draw, so they are a seeded sample, and not generating the
rest is what saves the time. The two running texts are not shrunk: The Time Machine and
WikiText-2 are one text each, whose vocabulary and sentence pairs depend on all of it, so a
notebook chooses how much of it to train on (``max_tokens``, steps via ``helpers.by_mode``).

Loaders (all deterministic for a given ``seed``):

* Fashion-MNIST: :func:`read_fashion_mnist`, :func:`fashion_mnist_tensors`,
  :func:`load_fashion_mnist`, :data:`FASHION_MNIST_CLASSES`, :func:`text_labels`
* The Time Machine: :func:`read_time_machine`, :func:`time_machine_corpus`,
  :func:`load_time_machine`
* English-French pairs: :func:`read_fra_eng`, :func:`load_fra_eng`
* WikiText-2 (BERT pre-training): :func:`read_wikitext2`, :func:`load_wikitext2`
* SNLI (sentence-pair classification): :func:`read_snli`, :func:`snli_tensors`, :func:`load_snli`
* SMS Spam (text classification): :func:`read_sms_spam`, :func:`sms_spam_tensors`,
  :func:`load_sms_spam`
* Sample images: :func:`list_images`, :func:`load_image`
* Synthetic "banana" detection set: :func:`detection_tensors`, :func:`load_detection`
* Synthetic multi-object detection and segmentation set: :func:`shapes_tensors`,
  :func:`load_shapes`, :data:`SHAPE_CLASSES`
"""

from __future__ import annotations

import functools
import gzip
import html
import io
import math
import numbers
import os
import random
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from helpers import detection
from helpers.config import is_fast
from helpers.data import MappedLoader, TensorLoader, make_loader, map_batches
from helpers.sources import data_root, read_data_bytes, read_manifest
from helpers.text import (
    BERT_RESERVED_TOKENS,
    SeqDataLoader,
    Vocab,
    bert_input_tensors,
    bert_pretraining_tensors,
    build_array_nmt,
    preprocess_nmt,
    tokenize,
    tokenize_english,
    tokenize_nmt,
)

# =============================================================================================
# Splits and the fast-mode rule
# =============================================================================================

SPLITS = {
    "fashion_mnist": ("train", "test"),
    "fra_eng": ("train", "test"),
    "wikitext2": ("val", "test"),
    "snli": ("train", "val", "test"),
    "sms_spam": ("train", "val", "test"),
    "detection": ("train", "val"),
    "shapes": ("train", "val"),
}
# Examples per split in fast mode (a split with fewer examples is kept whole).
FAST_SIZES = {
    "fashion_mnist": {"train": 6000, "test": 1000},  # of 60,000 / 10,000; 10% of each class
    "fra_eng": {"train": 8000, "test": 500},  # of 18,000 / 2,000 (held out by source sentence)
    "snli": {"train": 2000, "val": 500, "test": 1000},  # of 8,857 / 985 / 9,824
    "sms_spam": {"train": 1000, "val": 250, "test": 500},  # of 3,637 / 500 / 1,034 unique messages
    "detection": {"train": 200, "val": 50},  # the first of 1,000 / 100 generated images
    "shapes": {"train": 200, "val": 50},  # the first of 1,000 / 200 generated images
}


def check_split(dataset: str, split: str) -> str:
    """Return ``split`` if ``dataset`` has it (see :data:`SPLITS`), else raise a ValueError."""
    valid = [repr(name) for name in SPLITS[dataset]]
    if split not in SPLITS[dataset]:
        listed = f"{', '.join(valid[:-1])} or {valid[-1]}" if len(valid) > 1 else valid[0]
        raise ValueError(f"split must be {listed} for {dataset}, got {split!r}.")
    return split


def fast_size(dataset: str, split: str, fast: bool | None = None) -> int | None:
    """How many examples of ``split`` a loader keeps: ``FAST_SIZES[dataset][split]`` in fast mode
    (``fast=None`` follows :func:`helpers.config.is_fast`), None (all of them) in full mode."""
    check_split(dataset, split)
    return FAST_SIZES[dataset][split] if (is_fast() if fast is None else fast) else None


def stratified_subset(labels: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
    """Indices of a seeded random subset of ``size`` examples with the class proportions of
    ``labels`` (largest remainders round the counts), sorted. Equal counts for balanced classes."""
    classes, counts = labels.unique(return_counts=True)
    n = len(labels)
    if not 0 <= size <= n:
        raise ValueError(f"size must be between 0 and the {n} examples, got {size}.")
    quotas = [size * int(c) // n for c in counts]
    remainders = [size * int(c) % n for c in counts]
    for i in sorted(range(len(classes)), key=lambda i: -remainders[i])[: size - sum(quotas)]:
        quotas[i] += 1
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for c, quota in zip(classes, quotas, strict=True):
        members = (labels == c).nonzero().squeeze(1)
        picks.append(members[torch.randperm(len(members), generator=gen)[:quota]])
    return torch.cat(picks).sort().values


def fast_subset(
    dataset: str, split: str, labels: torch.Tensor | int, fast: bool | None = None, seed: int = 0
) -> torch.Tensor | None:
    """Sorted indices of the examples of ``split`` that fast mode keeps, or None to keep them all.

    ``labels`` are the split's labels (the subset keeps their proportions), or the number of
    examples of an unlabelled split. The size is :func:`fast_size`'s.
    """
    if isinstance(labels, int):
        labels = torch.zeros(labels, dtype=torch.long)
    size = fast_size(dataset, split, fast)
    if size is None or size >= len(labels):
        return None
    return stratified_subset(labels, size, seed)


def _pick(items: Sequence, keep: torch.Tensor | Sequence[int] | None) -> list:
    """``items`` at the indices ``keep`` (all of them when ``keep`` is None)."""
    if keep is None:
        return list(items)
    return [items[i] for i in (keep.tolist() if isinstance(keep, torch.Tensor) else keep)]


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
    images, labels = _fashion_mnist_cached(check_split("fashion_mnist", split), _root_key(root))
    return images.clone(), labels.clone()


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
    ``interpolate`` call on the whole tensor. Fast mode (see the module docstring) keeps a seeded
    subset with equal class counts: 6,000 train / 1,000 test images instead of 60,000 / 10,000.
    """
    images, labels = _fashion_mnist_cached(check_split("fashion_mnist", split), _root_key(root))
    keep = fast_subset("fashion_mnist", split, labels, fast, seed)
    if keep is not None:
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
) -> tuple[TensorLoader, TensorLoader]:
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


# =============================================================================================
# The Time Machine
# =============================================================================================


def read_time_machine(root: str | os.PathLike | None = None) -> list[str]:
    """Lines of H. G. Wells' *The Time Machine*, lower case, with every run of non-letters
    replaced by one space (and stripped), as in d2l; empty lines are kept."""
    text = read_data_bytes("timemachine/timemachine.txt", root).decode("utf-8")
    return [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in text.splitlines()]


def time_machine_corpus(
    max_tokens: int = -1, token: str = "char", root: str | os.PathLike | None = None
) -> tuple[list[int], Vocab]:
    """Token indices of *The Time Machine* and their vocabulary.

    ``token='char'`` (the default, as in the RNN chapter) or ``'word'``; ``max_tokens > 0``
    keeps only the first tokens (the vocabulary still comes from the whole book).
    """
    tokens = tokenize(read_time_machine(root), token)
    vocab = Vocab(tokens)
    corpus = [vocab.token_to_idx[tok] for line in tokens for tok in line]
    if max_tokens > 0:
        corpus = corpus[:max_tokens]
    return corpus, vocab


def load_time_machine(
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
    (see :class:`helpers.text.SeqDataLoader`) over the first ``max_tokens`` characters. A running
    text: fast mode does not shrink it (``max_tokens`` does).
    """
    corpus, vocab = time_machine_corpus(max_tokens, root=root)
    return SeqDataLoader(corpus, batch_size, num_steps, use_random_iter, seed=seed), vocab


# =============================================================================================
# English-French translation pairs
# =============================================================================================

NMT_RESERVED_TOKENS = ("<pad>", "<bos>", "<eos>")


def read_fra_eng(root: str | os.PathLike | None = None) -> str:
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
    French translations; one SNLI premise has three hypotheses) go to the test part, in a seeded
    random order, until it holds at least ``test_size`` of all pairs. Both index lists keep the
    file order.
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


def load_fra_eng(
    batch_size: int,
    num_steps: int,
    num_examples: int | None = None,
    test_size: float = 0.1,
    fast: bool | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> tuple[TensorLoader, tuple[Vocab, Vocab], NMTTestSet]:
    """English-to-French training batches, the vocabularies and a held-out test set.

    Of the 20,000 shipped pairs, a seeded ``test_size`` fraction (10%: 2,000 pairs; no English
    sentence in both parts) is held out and never enters training or the vocabularies.
    ``num_examples`` keeps only the first training pairs (the file is sorted by length, so
    these are the shortest). Vocabularies: words seen at least twice in the training pairs,
    plus ``<unk>``, ``<pad>``, ``<bos>``, ``<eos>``. Fast mode then keeps a seeded sample of
    8,000 training and 500 test pairs (same vocabularies, same held-out sentences).

    Returns ``(train_iter, (src_vocab, tgt_vocab), test)``: ``train_iter`` yields
    ``(src, src_valid_len, tgt, tgt_valid_len)`` int64 batches (``(B, num_steps)`` and
    ``(B,)``), and ``test`` is an :class:`NMTTestSet`.
    """
    source, target = tokenize_nmt(preprocess_nmt(read_fra_eng(root)))
    train_idx, test_idx = split_by_source(source, test_size, seed)
    train_idx = train_idx[:num_examples]
    src_train, tgt_train = _pick(source, train_idx), _pick(target, train_idx)
    src_vocab = Vocab(src_train, min_freq=2, reserved_tokens=NMT_RESERVED_TOKENS)
    tgt_vocab = Vocab(tgt_train, min_freq=2, reserved_tokens=NMT_RESERVED_TOKENS)
    keep = fast_subset("fra_eng", "train", len(train_idx), fast, seed)
    src_train, tgt_train = _pick(src_train, keep), _pick(tgt_train, keep)
    test_idx = _pick(test_idx, fast_subset("fra_eng", "test", len(test_idx), fast, seed))
    arrays = (*build_array_nmt(src_train, src_vocab, num_steps),
              *build_array_nmt(tgt_train, tgt_vocab, num_steps))  # fmt: skip
    train_iter = make_loader(*arrays, batch_size=batch_size, shuffle=True, seed=seed)
    src_test, tgt_test = _pick(source, test_idx), _pick(target, test_idx)
    test = NMTTestSet(
        src_test, tgt_test,
        *build_array_nmt(src_test, src_vocab, num_steps),
        *build_array_nmt(tgt_test, tgt_vocab, num_steps),
    )  # fmt: skip
    return train_iter, (src_vocab, tgt_vocab), test


# =============================================================================================
# WikiText-2 for BERT pre-training
# =============================================================================================

_WIKI_FILES = {"val": "wikitext-2/wiki.valid.tokens.gz", "test": "wikitext-2/wiki.test.tokens.gz"}


def read_wikitext2(split: str = "val", root: str | os.PathLike | None = None) -> list[list[str]]:
    """Paragraphs of a WikiText-2 split, each a list of lower-case sentences (strings).

    ``split='val'`` is the shipped validation file, ``'test'`` the test file (the training file is
    not shipped). A paragraph is a line with at least two sentences when split on ``' . '``
    (headings and one-sentence lines are dropped), in file order.
    """
    lines = _gunzip_text(_WIKI_FILES[check_split("wikitext2", split)], root).splitlines()
    # Count sentences after stripping: d2l counts before, which also keeps one-sentence lines
    # that end in " . ".
    paragraphs = [line.strip().lower().split(" . ") for line in lines]
    return [p for p in paragraphs if len(p) >= 2]


def load_wikitext2(
    batch_size: int,
    max_len: int,
    split: str = "val",
    seed: int = 0,
    vocab: Vocab | None = None,
    root: str | os.PathLike | None = None,
) -> tuple[TensorLoader, Vocab]:
    """BERT pre-training batches from a WikiText-2 split, and the vocabulary.

    Examples pair sentences for next-sentence prediction (half real next sentence, half
    random) and mask 15% of tokens for masked language modelling (80% ``<mask>``, 10% random
    token, 10% unchanged); see :func:`helpers.text.bert_pretraining_tensors` for the seven
    tensors each batch holds. The vocabulary (words seen at least 5 times, plus ``<unk>``,
    ``<pad>``, ``<mask>``, ``<cls>``, ``<sep>``) is built from the split unless ``vocab`` is
    given, e.g. the training vocabulary when evaluating on ``split='test'``. A running text:
    fast mode does not shrink it (a notebook chooses how many steps to train).

    Returns ``(train_iter, vocab)``.
    """
    paragraphs = [tokenize(p, "word") for p in read_wikitext2(split, root)]
    random.Random(seed).shuffle(paragraphs)
    if vocab is None:
        sentences = [sentence for p in paragraphs for sentence in p]
        vocab = Vocab(sentences, min_freq=5, reserved_tokens=BERT_RESERVED_TOKENS)
    tensors = bert_pretraining_tensors(paragraphs, vocab, max_len, seed=seed)
    return make_loader(*tensors, batch_size=batch_size, shuffle=True, seed=seed), vocab


# =============================================================================================
# SNLI: premise/hypothesis pairs for BERT fine-tuning
# =============================================================================================

SNLI_LABELS = ("entailment", "contradiction", "neutral")  # label i is SNLI_LABELS[i], as d2l's
SNLI_VAL_FRACTION = 0.1


@functools.lru_cache(maxsize=4)
def _snli_file(part: str, root_key: str) -> tuple[list[list[str]], list[list[str]], list[int]]:
    """Premise tokens, hypothesis tokens and label ids of the shipped ``dev`` or ``test`` file."""
    premises = [line.split() for line in _gunzip_text(f"snli/s1.{part}.gz", root_key).splitlines()]
    hypotheses = [line.split() for line in _gunzip_text(f"snli/s2.{part}.gz", root_key).splitlines()]
    index = {name: i for i, name in enumerate(SNLI_LABELS)}
    labels = [index[name] for name in _gunzip_text(f"snli/labels.{part}.gz", root_key).split()]
    return premises, hypotheses, labels


def read_snli(
    split: str = "train", seed: int = 0, root: str | os.PathLike | None = None
) -> tuple[list[list[str]], list[list[str]], torch.Tensor]:
    """SNLI pairs as stored: ``(premises, hypotheses, labels)``, in file order.

    Premises and hypotheses are lists of the file's (Penn-Treebank) tokens, in their original
    case; labels are int64 indices into :data:`SNLI_LABELS` (0 entailment, 1 contradiction,
    2 neutral). ``'test'`` is the shipped test file (9,824 pairs). ``'train'`` and ``'val'`` split
    the shipped dev file (9,842 pairs) **by premise**: each premise comes with all three labels,
    so a random split would show the validation premises in training. Whole premises go to
    ``'val'`` in a seeded order until it holds at least 10% of the pairs (985 for seed 0).
    """
    if check_split("snli", split) == "test":
        premises, hypotheses, labels = _snli_file("test", _root_key(root))
        keep = range(len(labels))
    else:
        premises, hypotheses, labels = _snli_file("dev", _root_key(root))
        train_idx, val_idx = split_by_source(premises, SNLI_VAL_FRACTION, seed)
        keep = train_idx if split == "train" else val_idx
    return (
        [list(premises[i]) for i in keep],
        [list(hypotheses[i]) for i in keep],
        torch.tensor([labels[i] for i in keep], dtype=torch.long),
    )


def snli_tensors(split: str, vocab: Vocab, max_len: int, fast: bool | None = None, seed: int = 0,
                 root: str | os.PathLike | None = None) -> tuple[torch.Tensor, ...]:
    """One SNLI split as BERT inputs: ``(token_ids, segments, valid_lens, labels)``.

    Each pair becomes ``<cls> premise <sep> hypothesis <sep>`` with lower-cased tokens (to meet a
    lower-case vocabulary such as WikiText-2's; unknown words map to ``<unk>``) and segments 0/1;
    a pair longer than ``max_len`` loses tokens from the end of its longer sentence
    (:func:`helpers.text.truncate_pair`). Shapes ``(N, max_len)``, ``(N, max_len)``, ``(N,)``,
    ``(N,)``, all int64, padded with ``<pad>`` and segment 0. Splits and labels as in
    :func:`read_snli`; fast mode keeps 2,000 / 500 / 1,000 pairs with the label proportions.
    """
    premises, hypotheses, labels = read_snli(split, seed, root)
    keep = fast_subset("snli", split, labels, fast, seed)
    if keep is not None:
        premises, hypotheses, labels = _pick(premises, keep), _pick(hypotheses, keep), labels[keep]

    def lower(sentences):
        return [[tok.lower() for tok in sentence] for sentence in sentences]

    return (*bert_input_tensors(lower(premises), lower(hypotheses), vocab, max_len), labels)


def load_snli(batch_size: int, vocab: Vocab, max_len: int, fast: bool | None = None, seed: int = 0,
              root: str | os.PathLike | None = None) -> tuple[TensorLoader, TensorLoader, TensorLoader]:
    """SNLI minibatches ``(train_iter, val_iter, test_iter)`` for a BERT classifier.

    Batches are ``(token_ids, segments, valid_lens, labels)`` as in :func:`snli_tensors` (so
    ``helpers.training.fit`` calls ``model(token_ids, segments, valid_lens)``); the training
    iterator reshuffles every epoch (seeded), the others keep the file order.
    """
    return _split_loaders(snli_tensors, batch_size, vocab, max_len, fast, seed, root)


def _split_loaders(tensors, batch_size, vocab, max_len, fast, seed, root):
    """``(train_iter, val_iter, test_iter)`` over ``tensors(split, ...)`` for the three splits: the
    training iterator reshuffles every epoch (seeded), the others keep the file order."""
    train, val, test = (tensors(split, vocab, max_len, fast, seed, root) for split in SPLITS["snli"])
    return (make_loader(*train, batch_size=batch_size, shuffle=True, seed=seed),
            make_loader(*val, batch_size=batch_size, shuffle=False),
            make_loader(*test, batch_size=batch_size, shuffle=False))  # fmt: skip


# =============================================================================================
# SMS Spam: single messages for BERT fine-tuning
# =============================================================================================

SMS_SPAM_CLASSES = ("ham", "spam")  # label 0 ham, 1 spam
SMS_SPAM_TEST_FRACTION = 0.2
SMS_SPAM_VAL_SIZE = 500


@functools.lru_cache(maxsize=2)
def _sms_records(root_key: str) -> tuple[tuple[str, str], ...]:
    text = read_data_bytes("sms-spam/SMSSpamCollection", root_key).decode("utf-8")
    return tuple(tuple(line.split("\t", 1)) for line in text.splitlines())


@functools.lru_cache(maxsize=4)
def _sms_split_indices(seed: int, root_key: str) -> dict[str, tuple[int, ...]]:
    """File indices of each split: unique messages only, stratified by label, seeded."""
    records = _sms_records(root_key)
    first: dict[str, int] = {}
    for i, (_, message) in enumerate(records):
        first.setdefault(message, i)
    unique = torch.tensor(sorted(first.values()))
    labels = torch.tensor([SMS_SPAM_CLASSES.index(records[i][0]) for i in unique.tolist()])
    free = torch.ones(len(unique), dtype=torch.bool)
    test = stratified_subset(labels, round(SMS_SPAM_TEST_FRACTION * len(unique)), seed)
    free[test] = False
    rest = free.nonzero().squeeze(1)
    val = rest[stratified_subset(labels[rest], SMS_SPAM_VAL_SIZE, seed)]
    free[val] = False
    parts = {"train": free.nonzero().squeeze(1), "val": val, "test": test}
    return {split: tuple(unique[part].tolist()) for split, part in parts.items()}


def read_sms_spam(
    split: str | None = None, seed: int = 0, root: str | os.PathLike | None = None
) -> list[tuple[str, str]]:
    """SMS Spam Collection messages as stored: ``(label, text)`` pairs, label ``'ham'``/``'spam'``.

    ``split=None`` gives all 5,574 messages in file order. The splits hold each distinct text
    once (403 messages repeat an earlier one exactly; a repeat in another split would be a test
    message seen in training): of the 5,171 distinct messages, a seeded 20% (1,034) is
    ``'test'``, 500 are ``'val'`` and the rest (3,637) ``'train'``, each with the proportions of
    ham and spam of the whole, in file order.
    """
    records = _sms_records(_root_key(root))
    if split is None:
        return list(records)
    indices = _sms_split_indices(seed, _root_key(root))[check_split("sms_spam", split)]
    return [records[i] for i in indices]


def sms_tokens(message: str) -> list[str]:
    """Tokens of a message; the file writes ``< > &`` as HTML entities (``&lt;#&gt;``)."""
    return tokenize_english(html.unescape(message))


def sms_spam_tensors(split: str, vocab: Vocab, max_len: int, fast: bool | None = None, seed: int = 0,
                     root: str | os.PathLike | None = None) -> tuple[torch.Tensor, ...]:
    """One SMS Spam split as BERT inputs: ``(token_ids, segments, valid_lens, labels)``.

    Each message becomes ``<cls> tokens <sep>`` (its first ``max_len - 2`` tokens) with
    :func:`helpers.text.tokenize_english` (lower case, punctuation as tokens, to meet a WikiText-2
    vocabulary); segments are all 0; labels are 0 ham, 1 spam. Shapes ``(N, max_len)``,
    ``(N, max_len)``, ``(N,)``, ``(N,)``, all int64, padded with ``<pad>``. Splits as in
    :func:`read_sms_spam`; fast mode keeps 1,000 / 250 / 500 messages with the class proportions.
    """
    records = read_sms_spam(check_split("sms_spam", split), seed, root)
    labels = torch.tensor([SMS_SPAM_CLASSES.index(label) for label, _ in records])
    keep = fast_subset("sms_spam", split, labels, fast, seed)
    if keep is not None:
        records, labels = _pick(records, keep), labels[keep]
    tokens = [sms_tokens(message) for _, message in records]
    return (*bert_input_tensors(tokens, None, vocab, max_len), labels)


def load_sms_spam(batch_size: int, vocab: Vocab, max_len: int, fast: bool | None = None, seed: int = 0,
                  root: str | os.PathLike | None = None) -> tuple[TensorLoader, TensorLoader, TensorLoader]:
    """SMS Spam minibatches ``(train_iter, val_iter, test_iter)`` for a BERT classifier.

    Batches are ``(token_ids, segments, valid_lens, labels)`` as in :func:`sms_spam_tensors`;
    the training iterator reshuffles every epoch (seeded), the others keep the file order.
    """
    return _split_loaders(sms_spam_tensors, batch_size, vocab, max_len, fast, seed, root)


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

DETECTION_SIZES = {"train": 1000, "val": 100}
DETECTION_TEXTURES = ("brick", "grass", "gravel", "hubble_deep_field")
_DETECTION_STREAMS = {"train": 0, "val": 1}  # one random stream per split


@functools.lru_cache(maxsize=2)
def _textures(root_key: str) -> tuple[np.ndarray, ...]:
    """The shipped background textures as uint8 (H, W, 3) arrays."""
    return tuple(
        (load_image(name, mode="RGB", root=root_key).permute(1, 2, 0).numpy() * 255).round()
        .astype(np.uint8)
        for name in DETECTION_TEXTURES
    )


@functools.lru_cache(maxsize=4)
def _detection_cached(split: str, num_images: int, seed: int, root_key: str):
    return detection.generate_bananas(_textures(root_key), num_images, seed, _DETECTION_STREAMS[split])


def detection_tensors(
    split: str = "train",
    num_images: int | None = None,
    fast: bool | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic banana-detection set, generated from ``seed`` (cached per process).

    Like d2l's banana-detection data: 256x256 RGB images, one banana each, 1,000 ``'train'``
    and 100 ``'val'`` images; fast mode keeps the first 200 / 50, and ``num_images`` (whatever
    the mode) the first ``num_images``. Backgrounds are random crops of the shipped
    CC0/public-domain textures (:func:`helpers.detection.generate_bananas` draws the images).
    Returns ``images`` uint8 ``(N, 3, 256, 256)`` (uint8 keeps 1,000 images at 197 MB instead of
    786 MB) and ``targets`` float32 ``(N, 1, 5)`` holding ``[label, xmin, ymin, xmax, ymax]`` with
    label 0 and the box corners divided by 256 (so in [0, 1], as d2l's ``read_data_bananas``).
    Pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``, so ``xmax - xmin`` is the
    width.
    """
    check_split("detection", split)
    if num_images is None:
        num_images = fast_size("detection", split, fast) or DETECTION_SIZES[split]
    images, targets = _detection_cached(split, num_images, seed, _root_key(root))
    return images.clone(), targets.clone()


def _images_to_float(images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return images.float().div_(255.0), targets


def load_detection(
    batch_size: int,
    fast: bool | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> tuple[MappedLoader, MappedLoader]:
    """Minibatches ``(train_iter, val_iter)`` of the synthetic banana-detection set.

    Batches are ``(images, targets)``: float32 ``(B, 3, 256, 256)`` in [0, 1] (converted batch
    by batch from the uint8 images, :func:`helpers.data.map_batches`) and float32 ``(B, 1, 5)``
    as in :func:`detection_tensors`. Fast mode uses the first 200 train / 50 val images.
    """
    train = detection_tensors("train", None, fast, seed, root)
    val = detection_tensors("val", None, fast, seed, root)
    train_iter = make_loader(*train, batch_size=batch_size, shuffle=True, seed=seed)
    val_iter = make_loader(*val, batch_size=batch_size, shuffle=False)
    return map_batches(train_iter, _images_to_float), map_batches(val_iter, _images_to_float)


# =============================================================================================
# Synthetic multi-object detection and segmentation ("shapes": bananas, discs, squares)
# =============================================================================================

SHAPES_SIZES = {"train": 1000, "val": 200}
SHAPE_CLASSES = detection.SHAPE_CLASSES  # ("banana", "disc", "square")
_SHAPES_STREAMS = {"train": 2, "val": 3}  # one random stream per split, not the bananas' 0 and 1


@functools.lru_cache(maxsize=4)
def _shapes_cached(split: str, num_images: int, seed: int, root_key: str):
    return detection.generate_shapes(_textures(root_key), num_images, seed, _SHAPES_STREAMS[split])


def shapes_tensors(
    split: str = "train",
    num_images: int | None = None,
    fast: bool | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The synthetic multi-object set for detection and segmentation, generated from ``seed``
    (cached per process).

    256x256 RGB images with 1 to 4 objects each, of the classes :data:`SHAPE_CLASSES` (0 banana,
    1 disc, 2 square), on the shipped textures as the banana set: 1,000 ``'train'`` and 200
    ``'val'`` images; fast mode keeps the first 200 / 50, and ``num_images`` (whatever the mode)
    the first ``num_images`` (:func:`helpers.detection.generate_shapes` draws them). Returns
    ``images`` uint8 ``(N, 3, 256, 256)``; ``targets`` float32 ``(N, 4, 5)`` with one row
    ``[class, xmin, ymin, xmax, ymax]`` per object (corners divided by 256, the box of the
    object's visible pixels) and rows of ``-1`` after the last object; and ``masks`` uint8
    ``(N, 256, 256)``, ``0`` for background and ``c + 1`` where class ``c`` is visible.
    """
    check_split("shapes", split)
    if num_images is None:
        num_images = fast_size("shapes", split, fast) or SHAPES_SIZES[split]
    images, targets, masks = _shapes_cached(split, num_images, seed, _root_key(root))
    return images.clone(), targets.clone(), masks.clone()


def _images_and_masks(images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return images.float().div_(255.0), masks.long()


def load_shapes(
    batch_size: int,
    fast: bool | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    masks: bool = False,
) -> tuple[MappedLoader, MappedLoader]:
    """Minibatches ``(train_iter, val_iter)`` of the synthetic multi-object set.

    For detection (the default) batches are ``(images, targets)``: float32 ``(B, 3, 256, 256)``
    in [0, 1] and float32 ``(B, 4, 5)`` as in :func:`shapes_tensors` (padding rows have class
    ``-1``). With ``masks=True``, for semantic segmentation, they are ``(images, masks)`` with
    int64 masks ``(B, 256, 256)`` holding ``0`` (background) to ``3`` (class + 1), the target
    ``nn.CrossEntropyLoss`` expects for 4 output channels. Fast mode uses the first 200 train /
    50 val images.
    """
    train = shapes_tensors("train", None, fast, seed, root)
    val = shapes_tensors("val", None, fast, seed, root)
    pick, convert = ((0, 2), _images_and_masks) if masks else ((0, 1), _images_to_float)
    train_iter = make_loader(*(train[i] for i in pick), batch_size=batch_size, shuffle=True, seed=seed)
    val_iter = make_loader(*(val[i] for i in pick), batch_size=batch_size, shuffle=False)
    return map_batches(train_iter, convert), map_batches(val_iter, convert)
