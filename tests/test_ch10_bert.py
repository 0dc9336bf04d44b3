"""Chapter 10's from-scratch code, imported from the notebook, against PyTorch and helpers.bert."""

import random
from collections import Counter

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from helpers import bert, text
from notebook_code import load_notebook

ch = load_notebook("10_bert")


def small_vocab():
    words = ["w" + a + b for a in "abcdefgh" for b in "abcde"]  # 40 alphabetic words
    sentences = [words[i:i + 8] for i in range(0, 40, 4)] * 6
    return text.Vocab(sentences, reserved_tokens=text.BERT_RESERVED_TOKENS), words


def test_tokens_and_segments_equal_helper():
    for a, b in ((["a", "b"], ["c"]), (["x"], None), ([], [])):
        assert ch.get_tokens_and_segments(a, b) == text.get_tokens_and_segments(a, b)
    tokens, segments = ch.get_tokens_and_segments(["this", "movie"], ["i", "like", "it"])
    assert tokens[2 + 1] == "<sep>" and segments[3] == 0 and segments[4] == 1  # the first <sep> is segment 0


@pytest.mark.parametrize("num_layers, num_heads", [(1, 1), (2, 4)])
def test_encoder_equals_helper_and_torch(num_layers, num_heads):
    torch.manual_seed(0)
    ours = ch.BERTEncoder(60, 32, 48, num_heads, num_layers, dropout=0.0, max_len=20).eval()
    helper = bert.BERTEncoder(60, 32, 48, num_heads, num_layers, dropout=0.0, max_len=20).eval()
    ours.load_state_dict(helper.state_dict())
    tokens = torch.randint(5, 60, (4, 15))
    segments = (torch.arange(15) >= 7).long().expand(4, 15)
    lens = torch.tensor([15, 11, 3, 8])
    out = ours(tokens, segments, lens)
    assert torch.allclose(out, helper(tokens, segments, lens), atol=1e-6)
    layer = nn.TransformerEncoderLayer(32, num_heads, 48, dropout=0.0, activation="gelu", batch_first=True)
    reference = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False).eval()
    for blk, torch_layer in zip(ours.blks, reference.layers, strict=True):
        blk.load_from_torch(torch_layer)
    X = ours.embedding_norm(ours.token_embedding(tokens) + ours.segment_embedding(segments)
                            + ours.pos_embedding[:, :15])
    padding = torch.arange(15)[None] >= lens[:, None]
    expected = reference(X, src_key_padding_mask=padding)
    assert torch.allclose(ours(tokens, segments, lens)[~padding], expected[~padding], atol=1e-5)


def test_encoder_positions_are_learned_and_matter():
    torch.manual_seed(0)
    enc = ch.BERTEncoder(30, 16, 32, 2, 1, dropout=0.0, max_len=10).eval()
    assert isinstance(enc.pos_embedding, nn.Parameter) and enc.pos_embedding.requires_grad
    tokens, segments = torch.randint(5, 30, (1, 6)), torch.zeros(1, 6, dtype=torch.long)
    before = enc(tokens, segments)
    with torch.no_grad():
        enc.pos_embedding[0, 2] += torch.randn(16)  # a constant shift would vanish in the LayerNorm
    assert not torch.allclose(before, enc(tokens, segments))


def test_parameter_count_formula():
    assert ch.bert_parameter_count(30522, 768, 3072, 12) == 109_482_240
    assert ch.bert_parameter_count(30522, 1024, 4096, 24) == 335_141_888
    for args in ((100, 32, 64, 3, 16), (57, 8, 24, 1, 9)):
        model = bert.BERTModel(args[0], num_hiddens=args[1], ffn_num_hiddens=args[2], num_heads=2,
                               num_layers=args[3], max_len=args[4])
        built = sum(p.numel() for p in [*model.encoder.parameters(), *model.pooler.parameters()])
        assert ch.bert_parameter_count(*args[:4], max_len=args[4]) == built


def test_mask_for_mlm_equals_helper_and_respects_rules():
    vocab, words = small_vocab()
    rng_a, rng_b, rng = random.Random(3), random.Random(3), random.Random(0)
    kinds = Counter()
    for _ in range(3000):
        tokens, _ = text.get_tokens_and_segments(rng.sample(words, 9) + ["zzz"], rng.sample(words, 10))
        got = ch.mask_for_mlm(tokens, vocab, rng_a)
        assert got == text.mask_for_mlm(tokens, vocab, rng_b)
        ids, positions, labels = got
        assert len(positions) == round(0.15 * len(tokens))
        assert all(tokens[p] not in ("<cls>", "<sep>") for p in positions)
        assert labels == vocab[[tokens[p] for p in positions]]
        for p, label in zip(positions, labels, strict=True):
            kinds["mask" if ids[p] == vocab["<mask>"] else "same" if ids[p] == label else "random"] += 1
            if ids[p] not in (vocab["<mask>"], label):
                assert ids[p] >= 1 + len(text.BERT_RESERVED_TOKENS)  # an ordinary word, never a special token
    total = sum(kinds.values())  # 9,000 chosen: the sd of a 0.1 share is 0.0032; 5 sd = 0.016
    assert abs(kinds["mask"] / total - 0.8) < 0.02
    assert abs(kinds["random"] / total - 0.1) < 0.016 and abs(kinds["same"] / total - 0.1) < 0.016


def test_mask_for_mlm_skip_unk_never_chooses_unknown_words():
    vocab, words = small_vocab()
    rng = random.Random(0)
    for _ in range(500):
        a, b = ["unknowna", "unknownb", *rng.sample(words, 3)], ["unknownc"]
        tokens, _ = text.get_tokens_and_segments(a, b)
        _, positions, _ = ch.mask_for_mlm(tokens, vocab, rng, skip_unk=True)
        assert all(tokens[p] in vocab for p in positions)


def test_masking_shares():
    shares = ch.masking_shares(30, torch.tensor([0, 0, 0, 1, 2, 0, 0, 0, 2, 1]), 200)
    assert shares == pytest.approx([0.15, 0.6, 0.2, 0.2])


def test_mlm_loss_counts_only_chosen_positions_and_d2l_does_not():
    torch.manual_seed(0)
    logits, labels = torch.randn(3, 5, 11), torch.randint(0, 11, (3, 5))
    weights = torch.tensor([[1.0, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    chosen = weights > 0
    expected = F.cross_entropy(logits[chosen], labels[chosen])
    garbage = logits.clone()
    garbage[~chosen] = 100 * torch.randn(int((~chosen).sum()), 11)
    for value in (logits, garbage):
        assert torch.allclose(ch.mlm_loss(value, labels, weights), expected)
        assert torch.allclose(bert.mlm_loss(value, labels, weights), expected)
    d2l_before = ch.d2l_mlm_loss(logits, labels, weights)
    d2l_after = ch.d2l_mlm_loss(garbage, labels, weights)
    assert not torch.allclose(d2l_before, d2l_after)


def test_pairwise_cosine():
    A = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    s = 2 ** -0.5
    assert ch.mean_pairwise_cosine(A) == pytest.approx((0 + s + s) * 2 / 6)
    assert ch.mean_pairwise_cosine(A[:1], A[1:]) == pytest.approx((0 + s) / 2)


def test_occurrence_vectors_are_centred_outputs():
    vocab, words = small_vocab()
    torch.manual_seed(0)
    model = bert.BERTModel(len(vocab), num_hiddens=16, ffn_num_hiddens=32, num_heads=2, num_layers=1,
                           max_len=20)
    w1, w2, w3, w4 = words[1:5]
    sentences = [[w1, w2, w3], [w3, w1], [w4]]
    found, mean = ch.occurrence_vectors(model, vocab, sentences, [w1, w3, w4])
    assert set(found) == {w1, w3}  # w4 occurs once
    outputs = [bert.token_vectors(model, vocab, s)[1:-1] for s in sentences]
    assert torch.allclose(mean, torch.cat(outputs).mean(0))
    assert torch.allclose(found[w1][1], outputs[1][1] - mean)


def test_parameter_split_adds_up():
    split = ch.parameter_split(30522, 768, 3072, 12)
    assert sum(v for k, v in split.items() if k != "total") == split["total"] == 109_482_240
    assert split["FFN"] == 12 * (2 * 768 * 3072 + 3072 + 768)


def test_bpe_learns_the_most_frequent_pair_first_and_splits_consistently():
    merges = ch.learn_bpe({"low": 5, "lower": 2, "newest": 6, "widest": 3}, 4)
    assert merges[0] in {("e", "s"), ("s", "t")}  # both occur 9 times
    assert ch.apply_merge(("a", "b", "a", "b"), ("a", "b")) == ("ab", "ab")
    assert ch.apply_merge(("a", "a", "a"), ("a", "a")) == ("aa", "a")
    assert "".join(ch.bpe_split("lowest", merges)).replace("</w>", "") == "lowest"
    assert ch.bpe_split("newest", merges)[-1].endswith("</w>")


def test_blank_examples_mask_a_rare_known_word():
    vocab, words = small_vocab()
    w = words
    paragraphs = [[[w[1], "zz", w[2], w[3], w[4], w[5]], w[:7]]]  # the first has an unknown word
    examples = ch.blank_examples(paragraphs, vocab, 3, min_rank=6)
    assert len(examples) == 1
    sentence, pos = examples[0]
    assert pos >= 2 and vocab[sentence[pos]] >= 6 and all(t in vocab for t in sentence)
