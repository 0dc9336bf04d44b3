"""Tests of helpers.datasets: the naming scheme and split names, the one fast-mode rule, every
loader's shapes/dtypes/ranges/counts, seeded determinism, and that nothing reaches for the
network (conftest.py's autouse ``no_network`` fixture blocks every connection). The manifest and
the checksum guard are tested in tests/test_sources.py, the banana generator in
tests/test_detection.py (the shapes generator too)."""

import shutil
import socket
from pathlib import Path

import pytest
import torch

from helpers import datasets as D
from helpers import sources as S
from helpers import text as T

REPO_DATA = S.REPO_DATA_DIR


@pytest.fixture(scope="module")
def wiki_vocab() -> T.Vocab:
    """A lower-case WikiText-2 vocabulary as BERT pre-training builds it (min_freq 5)."""
    sentences = [s.split() for p in D.read_wikitext2("val") for s in p]
    return T.Vocab(sentences, min_freq=5, reserved_tokens=T.BERT_RESERVED_TOKENS)


def copy_data(tmp_path: Path, *names: str) -> Path:
    """A data folder in tmp_path with the manifest and copies of some shipped files."""
    shutil.copy(REPO_DATA / S.MANIFEST_NAME, tmp_path / S.MANIFEST_NAME)
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_DATA / name, tmp_path / name)
    return tmp_path


# --- names, splits and the fast-mode rule ---------------------------------------------------------


def test_every_set_uses_train_val_test_split_names_and_fast_sizes_name_real_splits():
    assert all(set(splits) <= {"train", "val", "test"} for splits in D.SPLITS.values())
    assert D.SPLITS["wikitext2"] == ("val", "test") and D.SPLITS["detection"] == ("train", "val")
    assert D.SPLITS["shapes"] == ("train", "val")
    for dataset, sizes in D.FAST_SIZES.items():
        assert tuple(sizes) == D.SPLITS[dataset], dataset
    assert set(D.FAST_SIZES) == set(D.SPLITS) - {"wikitext2"}  # running texts are not shrunk


@pytest.mark.parametrize(
    ("call", "listed"),
    [
        (lambda: D.read_fashion_mnist("valid"), "'train' or 'test'"),
        (lambda: D.fashion_mnist_tensors("val"), "'train' or 'test'"),
        (lambda: D.read_wikitext2("valid"), "'val' or 'test'"),
        (lambda: D.read_wikitext2("train"), "'val' or 'test'"),
        (lambda: D.detection_tensors("test"), "'train' or 'val'"),
        (lambda: D.detection_tensors("valid", num_images=3), "'train' or 'val'"),
        (lambda: D.shapes_tensors("test"), "'train' or 'val'"),
        (lambda: D.shapes_tensors("validation", num_images=3), "'train' or 'val'"),
        (lambda: D.read_snli("dev"), "'train', 'val' or 'test'"),
        (lambda: D.read_sms_spam("validation"), "'train', 'val' or 'test'"),
        (lambda: D.fast_size("fra_eng", "val", fast=True), "'train' or 'test'"),
    ],
)
def test_a_wrong_split_name_lists_the_valid_ones(call, listed):
    with pytest.raises(ValueError, match=f"split must be {listed}"):
        call()


def test_fast_size_follows_course_fast_and_reads_the_one_table(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert D.fast_size("snli", "val") == D.FAST_SIZES["snli"]["val"] == 500
    assert D.fast_size("snli", "val", fast=False) is None
    monkeypatch.setenv("COURSE_FAST", "0")
    assert D.fast_size("fashion_mnist", "train") is None
    assert D.fast_size("fashion_mnist", "train", fast=True) == 6000


def test_fast_subset_is_seeded_sorted_and_keeps_class_proportions():
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0] * 900 + [1] * 100)[order]
    keep = D.fast_subset("sms_spam", "train", labels, fast=True, seed=0)  # 1,000 of 1,000: all
    assert keep is None
    keep = D.fast_subset("sms_spam", "test", labels, fast=True, seed=0)  # 500 of them
    assert len(keep) == 500 and torch.equal(keep, keep.sort().values)
    assert labels[keep].bincount().tolist() == [450, 50]
    assert torch.equal(keep, D.fast_subset("sms_spam", "test", labels, fast=True, seed=0))
    assert not torch.equal(keep, D.fast_subset("sms_spam", "test", labels, fast=True, seed=1))
    assert D.fast_subset("sms_spam", "test", labels, fast=False) is None
    unlabelled = D.fast_subset("fra_eng", "test", 2000, fast=True, seed=0)
    assert len(unlabelled) == 500 and len(set(unlabelled.tolist())) == 500


def test_stratified_subset_rounds_counts_by_largest_remainder():
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    assert labels[D.stratified_subset(labels, 5, seed=0)].bincount().tolist() == [3, 1, 1]
    assert labels[D.stratified_subset(labels, 10, seed=0)].bincount().tolist() == [5, 3, 2]
    with pytest.raises(ValueError, match="between 0 and the 10 examples"):
        D.stratified_subset(labels, 11)


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


def test_fashion_mnist_fast_subset_is_a_subset_of_the_full_split_in_file_order():
    images, labels = D.read_fashion_mnist("test")
    keep = D.fast_subset("fashion_mnist", "test", labels, fast=True, seed=0)
    X, y = D.fashion_mnist_tensors("test", fast=True, seed=0)
    assert torch.equal(y, labels[keep]) and torch.equal(X[:, 0], images[keep].float() / 255)


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


def test_loaders_never_call_the_download_path(monkeypatch, no_network, wiki_vocab):
    import torchvision.datasets

    def forbidden(*args, **kwargs):
        raise AssertionError("torchvision's FashionMNIST must not be used by default")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", forbidden)
    D.load_fashion_mnist(batch_size=32, fast=True)
    D.load_time_machine(32, 35)
    D.load_image("catdog")
    D.load_snli(32, wiki_vocab, 64, fast=True)
    D.load_sms_spam(32, wiki_vocab, 64, fast=True)
    assert no_network == []  # no connection was even attempted


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
    corpus, vocab = D.time_machine_corpus()
    assert len(corpus) == 170580 and len(vocab) == 28
    assert vocab.idx_to_token[:5] == ["<unk>", " ", "e", "t", "a"]
    words, word_vocab = D.time_machine_corpus(max_tokens=1000, token="word")
    assert len(words) == 1000 and word_vocab.token_freqs[0] == ("the", 2261)


def test_load_time_machine_batches_are_corpus_windows_and_repeat_for_a_seed(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")  # a running text: the same in both modes
    corpus, _ = D.time_machine_corpus(max_tokens=10000)
    windows = torch.tensor(corpus).unfold(0, 36, 1)  # every run of 36 consecutive tokens
    for random_iter in (False, True):
        data_iter, vocab = D.load_time_machine(32, 35, use_random_iter=random_iter, seed=3)
        batches = list(data_iter)
        assert len(batches) == len(data_iter) == 8 and len(vocab) == 28
        for X, Y in batches:
            assert X.shape == Y.shape == (32, 35) and X.dtype == torch.int64
            assert torch.equal(X[:, 1:], Y[:, :-1])
        rows = torch.cat([X, Y[:, -1:]], dim=1)  # X plus the last target: 36 corpus tokens
        assert all((windows == row).all(1).any() for row in rows)
        again, _ = D.load_time_machine(32, 35, use_random_iter=random_iter, seed=3)
        assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))


# --- English-French pairs ---------------------------------------------------------------------


def test_fra_eng_split_holds_out_2000_pairs_with_no_shared_source_sentence():
    train_iter, (src_vocab, tgt_vocab), test = D.load_fra_eng(batch_size=64, num_steps=10, fast=False)
    src, src_len, tgt, tgt_len = train_iter.tensors
    assert len(test) >= 2000 and len(src) + len(test) == 20000
    assert src.shape == (len(src), 10) and src.dtype == tgt.dtype == torch.int64
    source, _ = T.tokenize_nmt(T.preprocess_nmt(D.read_fra_eng()))
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


def test_fra_eng_is_seeded_and_num_examples_only_shrinks_training():
    a_iter, _, a_test = D.load_fra_eng(64, 8, num_examples=500, fast=False, seed=0)
    b_iter, _, b_test = D.load_fra_eng(64, 8, fast=False, seed=0)
    assert a_iter.num_examples == 500 and a_test.source == b_test.source
    again = D.load_fra_eng(64, 8, 500, fast=False)[0]
    assert torch.equal(next(iter(a_iter))[0], next(iter(again))[0])
    assert D.load_fra_eng(64, 8, fast=False, seed=1)[2].source != b_test.source


def test_fra_eng_fast_mode_keeps_vocabularies_and_held_out_sentences(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    fast_iter, (fast_src, fast_tgt), fast_test = D.load_fra_eng(64, 10)
    full_iter, (full_src, full_tgt), full_test = D.load_fra_eng(64, 10, fast=False)
    assert fast_iter.num_examples == 8000 and len(fast_test) == 500
    assert fast_src.idx_to_token == full_src.idx_to_token  # vocabularies of the full training set
    assert fast_tgt.idx_to_token == full_tgt.idx_to_token
    # seeded subsets, in file order, of the same training pairs and the same held-out pairs
    keep = D.fast_subset("fra_eng", "train", full_iter.num_examples, fast=True, seed=0)
    assert all(torch.equal(a, b[keep]) for a, b in zip(fast_iter.tensors, full_iter.tensors, strict=True))
    keep = D.fast_subset("fra_eng", "test", len(full_test), fast=True, seed=0)
    assert fast_test.source == [full_test.source[i] for i in keep]
    assert torch.equal(fast_test.tgt, full_test.tgt[keep])
    assert D.load_fra_eng(64, 10, seed=1)[2].source != fast_test.source


# --- WikiText-2 / BERT ------------------------------------------------------------------------


def test_read_wikitext2_paragraphs_are_lower_case_sentence_lists():
    paragraphs = D.read_wikitext2("val")
    assert len(paragraphs) > 1000 and all(len(p) >= 2 for p in paragraphs)
    assert all(s == s.lower() for p in paragraphs[:50] for s in p)
    assert paragraphs == D.read_wikitext2()  # "val" (the shipped validation file) is the default
    assert len(D.read_wikitext2("test")) > 1000
    with pytest.raises(ValueError, match="split"):
        D.read_wikitext2("train")


def test_load_wikitext2_bert_tensors():
    train_iter, vocab = D.load_wikitext2(batch_size=512, max_len=64, seed=0)
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
    again, _ = D.load_wikitext2(batch_size=512, max_len=64, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(train_iter.tensors, again.tensors, strict=True))
    test_iter, test_vocab = D.load_wikitext2(512, 64, split="test", vocab=vocab)
    assert test_vocab is vocab and test_iter.tensors[0].max() < len(vocab)


# --- BERT fine-tuning inputs (helpers.text additions used by SNLI and SMS Spam) -------------------


def test_tokenize_english_follows_wikitext2_conventions():
    assert T.tokenize_english("Don't! I'm HERE, it’s 2.5... ok") == [
        "don", "'t", "!", "i", "'m", "here", ",", "it", "'s", "2", ".", "5", "...", "ok"]  # fmt: skip
    # WikiText-2's own tokens (but <unk> and its @-@ number/hyphen marks) stay whole
    tokens = [t for p in D.read_wikitext2("val") for s in p for t in s.split()]
    words = [t for t in tokens if "<" not in t and "@" not in t]
    kept = sum(T.tokenize_english(t) == [t] for t in words)
    assert kept > 0.995 * len(words)  # the exceptions are abbreviations such as "u.s."


def test_truncate_pair_drops_tokens_from_the_longer_sentence():
    a, b = list("abcdefgh"), list("xyz")
    assert T.truncate_pair(a, b, 10) == (list("abcd"), list("xyz"))  # 4 + 3 + 3 specials
    assert T.truncate_pair(list("abc"), list("xyz"), 7) == (list("ab"), list("xy"))  # tie: b first
    assert T.truncate_pair(a, None, 5) == (list("abc"), None)
    assert T.truncate_pair(list("ab"), list("x"), 64) == (list("ab"), list("x"))
    with pytest.raises(ValueError, match="max_len must exceed the 3 special tokens"):
        T.truncate_pair(a, b, 3)


def test_bert_input_tensors_pad_like_pretraining(wiki_vocab):
    pairs = [["the", "cat"], ["a"]], [["sat"], ["b", "c"]]
    ids, segments, valid_lens = T.bert_input_tensors(*pairs, wiki_vocab, 8)
    v = wiki_vocab
    assert ids[0].tolist() == v[["<cls>", "the", "cat", "<sep>", "sat", "<sep>", "<pad>", "<pad>"]]
    assert segments[0].tolist() == [0, 0, 0, 0, 1, 1, 0, 0] and valid_lens.tolist() == [6, 6]
    ids, segments, valid_lens = T.bert_input_tensors([["the"] * 20], None, wiki_vocab, 8)
    assert ids[0].tolist() == v[["<cls>"] + ["the"] * 6 + ["<sep>"]] and valid_lens.tolist() == [8]
    assert segments.sum() == 0 and ids.dtype == segments.dtype == valid_lens.dtype == torch.int64


# --- SNLI ----------------------------------------------------------------------------------------


def test_snli_files_are_read_through_the_checksum_guard(tmp_path):
    names = [f"snli/{kind}.{part}.gz" for kind in ("s1", "s2", "labels") for part in ("dev", "test")]
    root = copy_data(tmp_path, *names)
    assert D.read_snli("val", root=root)[0] == D.read_snli("val")[0]
    path = root / "snli/labels.test.gz"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(S.ChecksumMismatchError, match="labels.test.gz"):
        D.read_snli("test", root=root)


def test_snli_splits_label_counts_and_label_order():
    assert D.SNLI_LABELS == ("entailment", "contradiction", "neutral")
    counts = {split: D.read_snli(split)[2].bincount().tolist() for split in D.SPLITS["snli"]}
    assert counts == {"train": [3006, 2942, 2909], "val": [323, 336, 326], "test": [3368, 3237, 3219]}
    assert sum(counts["train"]) + sum(counts["val"]) == 9842  # the shipped dev file
    assert sum(counts["test"]) == 9824
    premises, hypotheses, labels = D.read_snli("test")
    first = "This church choir sings to the masses as they sing joyous songs from the book at a church ."
    assert premises[0] == first.split()
    assert hypotheses[0] == "The church has cracks in the ceiling .".split()
    assert labels[:3].tolist() == [2, 0, 1]  # neutral, entailment, contradiction in the file
    assert labels.dtype == torch.int64


def test_snli_train_and_val_split_the_dev_file_by_premise_with_a_seed():
    for seed in (0, 1):
        train, val = D.read_snli("train", seed=seed)[0], D.read_snli("val", seed=seed)[0]
        assert not {tuple(p) for p in train} & {tuple(p) for p in val}
        assert len(train) + len(val) == 9842 and len(val) >= 985
    assert D.read_snli("val", seed=0) [0] == D.read_snli("val", seed=0)[0]
    assert D.read_snli("val", seed=0)[0] != D.read_snli("val", seed=1)[0]
    assert D.read_snli("test", seed=0)[0] == D.read_snli("test", seed=1)[0]  # the shipped file


def test_snli_tensors_are_bert_pair_inputs(wiki_vocab):
    tokens, segments, valid_lens, labels = D.snli_tensors("val", wiki_vocab, 64, fast=False)
    premises, hypotheses, read_labels = D.read_snli("val")
    n = len(premises)
    assert tokens.shape == segments.shape == (n, 64) and valid_lens.shape == labels.shape == (n,)
    assert all(t.dtype == torch.int64 for t in (tokens, segments, valid_lens, labels))
    assert torch.equal(labels, read_labels)
    p, h = [w.lower() for w in premises[0]], [w.lower() for w in hypotheses[0]]
    expected = wiki_vocab[["<cls>", *p, "<sep>", *h, "<sep>"]]
    assert tokens[0, : len(expected)].tolist() == expected and valid_lens[0] == len(expected)
    assert segments[0, : len(expected)].tolist() == [0] * (len(p) + 2) + [1] * (len(h) + 1)
    assert (tokens[:, 0] == wiki_vocab["<cls>"]).all()
    assert (tokens.gather(1, (valid_lens - 1)[:, None]) == wiki_vocab["<sep>"]).all()
    pad = torch.arange(64) >= valid_lens[:, None]
    assert (tokens[pad] == wiki_vocab["<pad>"]).all() and (segments[pad] == 0).all()
    short = D.snli_tensors("val", wiki_vocab, 12, fast=False)[2]
    assert short.max() == 12 and (short <= valid_lens).all()  # long pairs are truncated


def test_snli_fast_mode_and_loader(wiki_vocab, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    train_iter, val_iter, test_iter = D.load_snli(128, wiki_vocab, 64)
    sizes = [it.num_examples for it in (train_iter, val_iter, test_iter)]
    assert sizes == [2000, 500, 1000] and len(train_iter) == 16
    assert val_iter.tensors[3].bincount().tolist() == [164, 171, 165]  # the proportions of val
    full = D.snli_tensors("val", wiki_vocab, 64, fast=False)
    rows = {tuple(r) for r in full[0].tolist()}
    assert {tuple(r) for r in val_iter.tensors[0].tolist()} <= rows  # a subset of the same split
    X, S_, V, y = next(iter(train_iter))
    assert X.shape == (128, 64) and y.shape == (128,)
    again = D.load_snli(128, wiki_vocab, 64, seed=0)[0]
    assert torch.equal(next(iter(again))[0], X)
    assert not torch.equal(D.load_snli(128, wiki_vocab, 64, seed=1)[1].tensors[0], val_iter.tensors[0])


# --- SMS Spam -------------------------------------------------------------------------------------


def test_sms_file_is_read_through_the_checksum_guard(tmp_path):
    name = "sms-spam/SMSSpamCollection"
    (tmp_path / "good").mkdir()
    assert D.read_sms_spam(root=copy_data(tmp_path / "good", name)) == D.read_sms_spam()
    (tmp_path / "bad").mkdir()
    path = copy_data(tmp_path / "bad", name) / name
    path.write_bytes(path.read_bytes().replace(b"spam\t", b"ham\t", 1))
    with pytest.raises(S.ChecksumMismatchError, match="SMSSpamCollection"):
        D.read_sms_spam("train", root=tmp_path / "bad")


def test_sms_records_in_file_order_with_403_exact_duplicates():
    records = D.read_sms_spam()
    assert len(records) == 5574 and sum(label == "spam" for label, _ in records) == 747
    assert records[0] == ("ham", "Go until jurong point, crazy.. Available only in bugis n great world "
                                 "la e buffet... Cine there got amore wat...")
    assert records[-1] == ("ham", "Rofl. Its true to its name")
    texts = [text for _, text in records]
    assert len(texts) - len(set(texts)) == 403
    assert len({label for label, text in records if text == texts[0]}) == 1  # no text has two labels


def test_sms_splits_are_deduplicated_stratified_and_disjoint():
    splits = {split: D.read_sms_spam(split) for split in D.SPLITS["sms_spam"]}
    counts = {s: [sum(lab == c for lab, _ in r) for c in D.SMS_SPAM_CLASSES] for s, r in splits.items()}
    assert counts == {"train": [3178, 459], "val": [437, 63], "test": [903, 131]}
    texts = {split: [text for _, text in records] for split, records in splits.items()}
    assert all(len(t) == len(set(t)) for t in texts.values())  # each text once per split
    assert not set(texts["train"]) & set(texts["val"]) and not set(texts["train"]) & set(texts["test"])
    assert not set(texts["val"]) & set(texts["test"])
    assert set().union(*texts.values()) == {text for _, text in D.read_sms_spam()}  # 5,171 texts
    order = {text: i for i, (_, text) in reversed(list(enumerate(D.read_sms_spam())))}
    assert all([order[t] for t in ts] == sorted(order[t] for t in ts) for ts in texts.values())
    assert D.read_sms_spam("test", seed=0) == splits["test"]
    assert D.read_sms_spam("test", seed=1) != splits["test"]


def test_sms_spam_tensors_are_bert_single_sentence_inputs(wiki_vocab):
    tokens, segments, valid_lens, labels = D.sms_spam_tensors("val", wiki_vocab, 64, fast=False)
    records = D.read_sms_spam("val")
    assert tokens.shape == segments.shape == (500, 64) and valid_lens.shape == labels.shape == (500,)
    assert all(t.dtype == torch.int64 for t in (tokens, segments, valid_lens, labels))
    assert labels.tolist() == [D.SMS_SPAM_CLASSES.index(label) for label, _ in records]
    assert labels.bincount().tolist() == [437, 63] and segments.sum() == 0
    words = T.tokenize_english(records[0][1])[:62]
    assert tokens[0, : len(words) + 2].tolist() == wiki_vocab[["<cls>", *words, "<sep>"]]
    assert (tokens.gather(1, (valid_lens - 1)[:, None]) == wiki_vocab["<sep>"]).all()
    assert (tokens[torch.arange(64) >= valid_lens[:, None]] == wiki_vocab["<pad>"]).all()
    entity = next(text for _, text in D.read_sms_spam() if "&lt;#&gt;" in text)
    assert "<" in D.sms_tokens(entity) and "lt" not in D.sms_tokens(entity)  # HTML entities decoded


def test_sms_spam_fast_mode_and_loader(wiki_vocab, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    train_iter, val_iter, test_iter = D.load_sms_spam(64, wiki_vocab, 64)
    sizes = [it.num_examples for it in (train_iter, val_iter, test_iter)]
    assert sizes == [1000, 250, 500]
    bincounts = [it.tensors[3].bincount().tolist() for it in (train_iter, val_iter, test_iter)]
    assert bincounts == [[874, 126], [219, 31], [437, 63]]  # the class proportions of each split
    assert len(train_iter) == 16 and next(iter(train_iter))[0].shape == (64, 64)
    assert torch.equal(D.load_sms_spam(64, wiki_vocab, 64)[2].tensors[0], test_iter.tensors[0])
    full = [it.num_examples for it in D.load_sms_spam(64, wiki_vocab, 64, fast=False)]
    assert full == [3637, 500, 1034]


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


def test_detection_tensors_format_and_boxes():
    images, targets = D.detection_tensors("val", fast=False)
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


def test_detection_tensors_are_seeded_and_prefix_stable():
    images, targets = D.detection_tensors("val", num_images=20, seed=0)
    assert torch.equal(images[:5], D.detection_tensors("val", num_images=5, seed=0)[0])
    assert torch.equal(targets, D.detection_tensors("val", num_images=20, seed=0)[1])
    assert not torch.equal(targets, D.detection_tensors("val", num_images=20, seed=1)[1])
    assert not torch.equal(targets, D.detection_tensors("train", num_images=20, seed=0)[1])


def test_detection_fast_mode_keeps_the_first_images(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    images, targets = D.detection_tensors("val")
    assert len(images) == 50 and torch.equal(targets, D.detection_tensors("val", fast=False)[1][:50])
    assert len(D.detection_tensors("val", num_images=7)[0]) == 7  # num_images wins over the mode


def test_load_detection_fast_mode_yields_float_batches(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    train_iter, val_iter = D.load_detection(batch_size=32)
    assert len(train_iter) == 7 and len(val_iter) == 2  # 200 / 32 and 50 / 32, rounded up
    X, Y = next(iter(train_iter))
    assert X.shape == (32, 3, 256, 256) and X.dtype == torch.float32 and Y.shape == (32, 1, 5)
    assert 0 <= X.min() and X.max() <= 1
    images, targets = D.detection_tensors("val", fast=True)
    X, Y = next(iter(val_iter))  # the validation iterator keeps the order, as floats
    assert torch.equal(X, images[:32].float() / 255) and torch.equal(Y, targets[:32])


def test_shapes_tensors_format_and_classes_in_both_splits():
    sets = {"train": D.shapes_tensors("train", fast=True), "val": D.shapes_tensors("val", fast=False)}
    for split, (images, targets, masks) in sets.items():
        n = 200
        assert images.shape == (n, 3, 256, 256) and images.dtype == torch.uint8, split
        assert targets.shape == (n, 4, 5) and targets.dtype == torch.float32
        assert masks.shape == (n, 256, 256) and masks.dtype == torch.uint8
        labels = targets[..., 0]
        assert ((labels >= 0).sum(1) >= 1).all() and ((labels >= 0).sum(1) <= 4).all()
        real = targets[labels >= 0]
        assert (0 <= real[:, 1:]).all() and (real[:, 1:] <= 1).all()
        assert (real[:, 3] > real[:, 1]).all() and (real[:, 4] > real[:, 2]).all()
        counts = torch.bincount(real[:, 0].long(), minlength=3)
        assert len(counts) == 3 and (counts > 0.25 * counts.sum()).all(), (split, counts)
        assert set(masks.unique().tolist()) == {0, 1, 2, 3}


def test_shapes_tensors_are_seeded_prefix_stable_and_not_the_bananas():
    images, targets, masks = D.shapes_tensors("val", num_images=12, seed=0)
    first = D.shapes_tensors("val", num_images=4, seed=0)
    assert torch.equal(images[:4], first[0]) and torch.equal(masks[:4], first[2])
    assert torch.equal(targets, D.shapes_tensors("val", num_images=12, seed=0)[1])
    assert not torch.equal(targets, D.shapes_tensors("val", num_images=12, seed=1)[1])
    assert not torch.equal(targets, D.shapes_tensors("train", num_images=12, seed=0)[1])
    for split in ("train", "val"):  # the shapes draw from streams of their own
        assert not torch.equal(D.shapes_tensors(split, 1)[0], D.detection_tensors(split, 1)[0])
    images[0, 0, 0, 0] += 1  # a copy: changing it leaves the cached set as it was
    assert torch.equal(first[0][0], D.shapes_tensors("val", num_images=4, seed=0)[0][0])


def test_shapes_fast_mode_keeps_the_first_images(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert D.FAST_SIZES["shapes"] == {"train": 200, "val": 50}
    assert D.SHAPES_SIZES == {"train": 1000, "val": 200}
    images, targets, masks = D.shapes_tensors("val")
    full = D.shapes_tensors("val", fast=False)
    assert len(images) == 50 and len(full[0]) == 200
    assert torch.equal(targets, full[1][:50]) and torch.equal(masks, full[2][:50])
    assert len(D.shapes_tensors("val", num_images=7)[0]) == 7  # num_images wins over the mode


def test_load_shapes_yields_detection_or_segmentation_batches(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    train_iter, val_iter = D.load_shapes(batch_size=32)
    assert len(train_iter) == 7 and len(val_iter) == 2  # 200 / 32 and 50 / 32, rounded up
    X, Y = next(iter(train_iter))
    assert X.shape == (32, 3, 256, 256) and X.dtype == torch.float32 and Y.shape == (32, 4, 5)
    assert 0 <= X.min() and X.max() <= 1
    images, targets, masks = D.shapes_tensors("val", fast=True)
    X, Y = next(iter(val_iter))  # the validation iterator keeps the order, as floats
    assert torch.equal(X, images[:32].float() / 255) and torch.equal(Y, targets[:32])
    train_iter, val_iter = D.load_shapes(batch_size=16, masks=True)
    X, M = next(iter(train_iter))
    assert X.shape == (16, 3, 256, 256) and M.shape == (16, 256, 256) and M.dtype == torch.int64
    X, M = next(iter(val_iter))
    assert torch.equal(X, images[:16].float() / 255) and torch.equal(M, masks[:16].long())
    assert 0 <= M.min() and M.max() <= len(D.SHAPE_CLASSES)
