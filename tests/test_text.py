"""Tests of helpers.text: tokenizing, Vocab, the language-model samplers (checked against
hand-worked batches on range(35)), translation preprocessing and BERT example building."""

import random

import pytest
import torch

from helpers import text as T

CORPUS = list(range(35))


def as_lists(batches):
    return [(X.tolist(), Y.tolist()) for X, Y in batches]


# --- tokenize and Vocab ---------------------------------------------------------------------


def test_tokenize_words_and_chars():
    assert T.tokenize(["the time  machine", ""]) == [["the", "time", "machine"], []]
    assert T.tokenize(["ab c"], token="char") == [["a", "b", " ", "c"]]
    with pytest.raises(ValueError, match="'word' or 'char'"):
        T.tokenize(["x"], token="byte")


def test_vocab_orders_by_frequency_after_unk_and_reserved_tokens():
    vocab = T.Vocab([["a", "b", "a"], ["c", "a", "b"]], min_freq=2, reserved_tokens=["<pad>"])
    assert vocab.idx_to_token == ["<unk>", "<pad>", "a", "b"]
    assert vocab.token_freqs == [("a", 3), ("b", 2), ("c", 1)]
    assert len(vocab) == 4 and vocab.unk == 0
    assert vocab["a"] == 2 and vocab["c"] == 0  # below min_freq -> <unk>
    assert vocab[["a", "zz", "b"]] == [2, 0, 3]
    assert vocab.to_tokens(3) == "b"
    assert vocab.to_tokens([2, 3]) == ["a", "b"]
    assert vocab.to_tokens(torch.tensor([1, 0])) == ["<pad>", "<unk>"]


def test_vocab_breaks_ties_by_first_appearance_and_skips_duplicate_reserved_tokens():
    vocab = T.Vocab(["x", "y", "y", "x", "z"], reserved_tokens=["<unk>", "y"])
    assert vocab.idx_to_token == ["<unk>", "y", "x", "z"]


# --- language-model samplers on range(35) ---------------------------------------------------


def test_random_sampling_offset0_uses_all_six_subsequences():
    # (35 - 1) // 5 = 6 subsequences starting at 0, 5, ..., 25; 6 // 2 = 3 batches
    batches = as_lists(T.seq_data_iter_random(CORPUS, 2, 5, generator=0, offset=0))
    assert len(batches) == 3
    rows = sorted(row for X, _ in batches for row in X)
    assert rows == [list(range(s, s + 5)) for s in (0, 5, 10, 15, 20, 25)]
    for X, Y in batches:
        assert Y == [[t + 1 for t in row] for row in X]


def test_random_sampling_offset3_and_offset4():
    # offset 3 leaves 32 tokens: (32 - 1) // 5 = 6 subsequences starting at 3, 8, ..., 28
    rows = sorted(row for X, _ in as_lists(T.seq_data_iter_random(CORPUS, 2, 5, 1, offset=3))
                  for row in X)  # fmt: skip
    assert rows == [list(range(s, s + 5)) for s in (3, 8, 13, 18, 23, 28)]
    # offset 4 leaves 31 tokens: still 6 subsequences; the last target row ends at token 34
    batches = as_lists(T.seq_data_iter_random(CORPUS, 2, 5, 1, offset=4))
    assert max(max(row) for _, Y in batches for row in Y) == 34


def test_random_sampling_drops_subsequences_that_do_not_fill_a_batch():
    # 6 subsequences, batch_size 4 -> one batch; batch_size 3 -> two batches
    assert len(list(T.seq_data_iter_random(CORPUS, 4, 5, 0, offset=0))) == 1
    assert len(list(T.seq_data_iter_random(CORPUS, 3, 5, 0, offset=0))) == 2


def test_random_sampling_is_seeded_and_offsets_cover_0_to_num_steps_minus_1():
    first = as_lists(T.seq_data_iter_random(CORPUS, 2, 5, generator=7))
    assert first == as_lists(T.seq_data_iter_random(CORPUS, 2, 5, generator=7))
    offsets = {
        next(T.seq_data_iter_random(CORPUS, 2, 5, generator=s))[0][0, 0].item() % 5
        for s in range(60)
    }
    assert offsets == {0, 1, 2, 3, 4}
    orders = {str(as_lists(T.seq_data_iter_random(CORPUS, 2, 5, s, offset=0))) for s in range(5)}
    assert len(orders) > 1  # the order of subsequences is shuffled


def test_sequential_partitioning_offset0():
    # 34 tokens laid out as 2 rows of 17: 0..16 and 17..33; 17 // 5 = 3 batches
    assert as_lists(T.seq_data_iter_sequential(CORPUS, 2, 5, offset=0)) == [
        ([[0, 1, 2, 3, 4], [17, 18, 19, 20, 21]], [[1, 2, 3, 4, 5], [18, 19, 20, 21, 22]]),
        ([[5, 6, 7, 8, 9], [22, 23, 24, 25, 26]], [[6, 7, 8, 9, 10], [23, 24, 25, 26, 27]]),
        ([[10, 11, 12, 13, 14], [27, 28, 29, 30, 31]],
         [[11, 12, 13, 14, 15], [28, 29, 30, 31, 32]]),
    ]  # fmt: skip


def test_sequential_partitioning_offset2_and_three_rows():
    # offset 2: 32 tokens as rows 2..17 and 18..33, 16 // 5 = 3 batches
    X = [X for X, _ in as_lists(T.seq_data_iter_sequential(CORPUS, 2, 5, offset=2))]
    assert X == [
        [[2, 3, 4, 5, 6], [18, 19, 20, 21, 22]],
        [[7, 8, 9, 10, 11], [23, 24, 25, 26, 27]],
        [[12, 13, 14, 15, 16], [28, 29, 30, 31, 32]],
    ]
    # offset 1, 3 rows of 11 (1..11, 12..22, 23..33), 4 steps: 11 // 4 = 2 batches
    X = [X for X, _ in as_lists(T.seq_data_iter_sequential(CORPUS, 3, 4, offset=1))]
    assert X == [
        [[1, 2, 3, 4], [12, 13, 14, 15], [23, 24, 25, 26]],
        [[5, 6, 7, 8], [16, 17, 18, 19], [27, 28, 29, 30]],
    ]


def test_sequential_rows_continue_across_batches():
    batches = list(T.seq_data_iter_sequential(CORPUS, 2, 5, generator=3))
    for (X1, _), (X2, _) in zip(batches, batches[1:], strict=False):
        assert torch.equal(X2[:, 0], X1[:, -1] + 1)


def test_samplers_reject_an_offset_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        next(T.seq_data_iter_sequential(CORPUS, 2, 5, offset=5))


def test_seq_data_loader_has_a_fixed_length_and_repeats_for_a_seed():
    for random_iter in (False, True):
        loader = T.SeqDataLoader(CORPUS * 10, 4, 6, use_random_iter=random_iter, seed=0)
        epochs = [as_lists(loader) for _ in range(5)]
        assert all(len(epoch) == len(loader) > 0 for epoch in epochs)
        assert len({str(e) for e in epochs}) > 1  # a new offset / order every epoch
        again = T.SeqDataLoader(CORPUS * 10, 4, 6, use_random_iter=random_iter, seed=0)
        assert [as_lists(again) for _ in range(5)] == epochs


def test_seq_data_loader_explains_a_corpus_that_is_too_short():
    with pytest.raises(ValueError, match="too short|no batch"):
        T.SeqDataLoader(range(10), batch_size=4, num_steps=5)


# --- translation pairs -----------------------------------------------------------------------


def test_preprocess_nmt_spaces_punctuation_and_lowercases():
    assert T.preprocess_nmt("Go.\tVa\u202f!") == "go .\tva !"
    assert T.preprocess_nmt("Hi,you! OK ?\xa0?") == "hi ,you ! ok ? ?"  # no space added after
    assert T.preprocess_nmt("!start") == "!start"  # nothing precedes the first character


def test_tokenize_nmt_truncate_pad_and_arrays():
    source, target = T.tokenize_nmt("go .\tva !\nhi .\tsalut !\nbad line\n")
    assert source == [["go", "."], ["hi", "."]] and target == [["va", "!"], ["salut", "!"]]
    assert T.tokenize_nmt("go .\tva !\nhi .\tsalut !", num_examples=1)[0] == [["go", "."]]
    assert T.truncate_pad([1, 2, 3], 5, 0) == [1, 2, 3, 0, 0]
    assert T.truncate_pad([1, 2, 3, 4, 5, 6], 4, 0) == [1, 2, 3, 4]
    vocab = T.Vocab([["a", "b"]], reserved_tokens=["<pad>", "<bos>", "<eos>"])
    array, valid_len = T.build_array_nmt([["a", "b"], ["a", "b", "c", "a", "b"]], vocab, 4)
    a, b, eos, pad = vocab["a"], vocab["b"], vocab["<eos>"], vocab["<pad>"]
    assert array.tolist() == [[a, b, eos, pad], [a, b, 0, a]]
    assert valid_len.tolist() == [3, 4] and array.dtype == torch.int64


# --- BERT examples ----------------------------------------------------------------------------


def test_tokens_and_segments():
    assert T.get_tokens_and_segments(["a", "b"], ["c"]) == (
        ["<cls>", "a", "b", "<sep>", "c", "<sep>"],
        [0, 0, 0, 0, 1, 1],
    )
    assert T.get_tokens_and_segments(["a"]) == (["<cls>", "a", "<sep>"], [0, 0, 0])


def test_masking_follows_the_15_80_10_10_recipe():
    words = [f"w{i}" for i in range(50)]
    vocab = T.Vocab(words, reserved_tokens=T.BERT_RESERVED_TOKENS)
    rng = random.Random(0)
    counts = {"mask": 0, "kept": 0, "random": 0}
    for _ in range(2000):
        tokens, _ = T.get_tokens_and_segments(rng.sample(words, 18), rng.sample(words, 19))
        ids, positions, labels = T.mask_for_mlm(tokens, vocab, rng)
        assert len(positions) == round(0.15 * len(tokens)) == 6
        assert positions == sorted(positions) and 0 not in positions
        assert all(tokens[p] not in ("<cls>", "<sep>") for p in positions)
        assert labels == vocab[[tokens[p] for p in positions]]
        for position, label in zip(positions, labels, strict=True):
            if ids[position] == vocab["<mask>"]:
                counts["mask"] += 1
            elif ids[position] == label:
                counts["kept"] += 1
            else:
                counts["random"] += 1
    total = sum(counts.values())
    assert abs(counts["mask"] / total - 0.8) < 0.02
    assert abs(counts["kept"] / total - 0.1) < 0.02  # a random draw may also hit the same word
    assert abs(counts["random"] / total - 0.1) < 0.02


def test_bert_pretraining_tensors_shapes_padding_and_seed():
    sentences = [[f"w{i}" for i in range(j, j + 5)] for j in range(40)]
    paragraphs = [sentences[i : i + 4] for i in range(0, 40, 4)]
    vocab = T.Vocab(sentences, reserved_tokens=T.BERT_RESERVED_TOKENS)
    out = T.bert_pretraining_tensors(paragraphs, vocab, max_len=20, seed=1)
    token_ids, segments, valid_lens, positions, weights, labels, nsp = out
    assert token_ids.shape == (30, 20) and positions.shape == (30, 3)  # 10 paragraphs x 3 pairs
    assert (valid_lens == 13).all()  # 5 + 5 words + 3 special tokens
    assert (token_ids[:, 13:] == vocab["<pad>"]).all() and (segments[:, 13:] == 0).all()
    assert (token_ids[:, 0] == vocab["<cls>"]).all()
    assert (weights.sum(1) == 2).all()  # round(0.15 * 13) = 2 predictions, one padded slot
    assert set(nsp.tolist()) == {0, 1}
    again = T.bert_pretraining_tensors(paragraphs, vocab, max_len=20, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(out, again, strict=True))
