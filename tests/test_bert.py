"""helpers.bert: masking statistics on WikiText-2, the MLM loss against d2l's, the encoder against
PyTorch's, parameter counts, the data pipeline, evaluation against hand computations, a tiny
pre-training run, saving and loading, fill-in-the-blank, fine-tuning models and the schedule.

Statistical checks use tolerances of 5 binomial standard deviations (a false alarm about once in
1.7 million runs per check), computed from the sample sizes in the test and written out there.
"""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from helpers import bert
from helpers.text import BERT_RESERVED_TOKENS, Vocab
from helpers.training import TrainingRun

PAD, MASK, CLS, SEP = BERT_RESERVED_TOKENS
WIKI_MAX_LEN = 64
SIGMAS = 5


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def binomial_tol(p: float, n: int | float) -> float:
    """``SIGMAS`` standard deviations of the share of successes in ``n`` Bernoulli(p) draws."""
    return SIGMAS * math.sqrt(p * (1 - p) / n)


# =============================================================================================
# Shared data: the real WikiText-2 pairs, and a tiny hand-made corpus
# =============================================================================================


@pytest.fixture(scope="module")
def wiki():
    """The pre-training corpus and its sentence pairs at max_len 64 (about 9,100 pairs, 390k tokens)."""
    corpus = bert.pretraining_corpus()
    pairs = bert.pair_tensors(corpus.train, corpus.vocab, WIKI_MAX_LEN, seed=0)
    return corpus, pairs


@pytest.fixture(scope="module")
def wiki_masked(wiki):
    corpus, pairs = wiki
    return bert.mask_tokens(pairs["tokens"], pairs["valid_lens"], corpus.vocab, gen(0))


def eligible_mask(tokens, valid_lens, vocab, skip_unk=True):
    """Written independently of mask_tokens: ordinary tokens inside the valid length."""
    banned = {vocab[tok] for tok in BERT_RESERVED_TOKENS}
    if skip_unk:
        banned.add(vocab.unk)
    inside = torch.arange(tokens.shape[1])[None, :] < valid_lens[:, None]
    ordinary = torch.ones_like(tokens, dtype=torch.bool)
    for i in banned:
        ordinary &= tokens != i
    return inside & ordinary


def chosen_mask(masked: bert.MaskedBatch, shape) -> torch.Tensor:
    """(N, L) boolean: True at every chosen position (from pred_positions and the weights)."""
    chosen = torch.zeros(shape, dtype=torch.bool)
    used = masked.mlm_weights > 0
    rows = torch.arange(shape[0])[:, None].expand_as(masked.pred_positions)
    chosen[rows[used], masked.pred_positions[used]] = True
    return chosen


def tiny_corpus(seed: int = 0) -> bert.PretrainingCorpus:
    """30 training and 6 held-out paragraphs of 5 sentences of 3-6 words from a Zipf-like 20-word
    vocabulary: every pair fits in max_len 16, so every epoch has the same 120 training pairs. The
    held-out sentences end in a word never seen in training (an <unk> target when chosen)."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(20)]
    weights = [1 / (i + 1) for i in range(20)]

    def paragraph():
        return [rng.choices(words, weights, k=rng.randint(3, 6)) for _ in range(5)]

    paragraphs = [paragraph() for _ in range(36)]
    train, heldout = paragraphs[:30], [[[*s[:-1], "unseen"] for s in p] for p in paragraphs[30:]]
    vocab = Vocab([s for p in train for s in p], reserved_tokens=BERT_RESERVED_TOKENS)
    return bert.PretrainingCorpus(vocab, train, heldout)


@pytest.fixture(scope="module")
def tiny():
    return tiny_corpus()


def small_vocab() -> Vocab:
    """<unk>, the 4 reserved tokens, then the words a..f (ids 5..10)."""
    return Vocab([list("abcdef")], reserved_tokens=BERT_RESERVED_TOKENS)


def small_model(vocab_size=11, max_len=8, dropout=0.0, tie_weights=True, seed=0) -> bert.BERTModel:
    torch.manual_seed(seed)
    return bert.BERTModel(vocab_size, num_hiddens=16, ffn_num_hiddens=32, num_heads=2, num_layers=2,
                          dropout=dropout, max_len=max_len, tie_weights=tie_weights).eval()


# =============================================================================================
# 1. mask_tokens
# =============================================================================================


def test_wiki_pairs_give_enough_candidates_for_the_statistics(wiki, wiki_masked):
    corpus, pairs = wiki
    candidates = eligible_mask(pairs["tokens"], pairs["valid_lens"], corpus.vocab)
    assert candidates.sum() >= 100_000
    assert (wiki_masked.mlm_weights > 0).sum() >= 50_000


def test_mask_tokens_chooses_round_share_of_each_row_capped_by_candidates(wiki, wiki_masked):
    corpus, pairs = wiki
    m = wiki_masked
    P = m.pred_positions.shape[1]
    assert P == round(0.15 * WIKI_MAX_LEN)
    candidates = eligible_mask(pairs["tokens"], pairs["valid_lens"], corpus.vocab).sum(1).tolist()
    expected = [min(max(1, round(0.15 * v)), c, P) for v, c in zip(pairs["valid_lens"].tolist(), candidates,
                                                                     strict=True)]
    assert (m.mlm_weights.sum(1).long() == torch.tensor(expected)).all()
    # used slots come first and are exactly the slots of weight 1
    used = m.mlm_weights > 0
    assert ((m.mlm_weights == 0) | (m.mlm_weights == 1)).all()
    assert (used.long().diff(dim=1) <= 0).all()


def test_mask_tokens_count_matches_python_round_for_every_length_up_to_bert_max_len():
    # The docstring's count, and helpers.text.mask_for_mlm's (the chapter's loop version), is
    # Python's max(1, round(mask_ratio * valid_len)) (round half to even, in double precision).
    L = 512
    vocab = small_vocab()
    tokens = torch.full((L, L), vocab["a"])
    valid_lens = torch.arange(1, L + 1)
    m = bert.mask_tokens(tokens, valid_lens, vocab, gen(0))
    counts = m.mlm_weights.sum(1).long().tolist()
    expected = [max(1, round(0.15 * v)) for v in range(1, L + 1)]
    wrong = [(v, c, e) for v, c, e in zip(range(1, L + 1), counts, expected, strict=True) if c != e]
    assert not wrong, f"(valid_len, chosen, round(0.15 * valid_len)): {wrong}"


def test_mask_tokens_num_slots_caps_the_count(wiki):
    corpus, pairs = wiki
    tokens, valid_lens = pairs["tokens"][:500], pairs["valid_lens"][:500]
    m = bert.mask_tokens(tokens, valid_lens, corpus.vocab, gen(0), num_slots=3)
    assert m.pred_positions.shape == (500, 3)
    candidates = eligible_mask(tokens, valid_lens, corpus.vocab).sum(1)
    wanted = torch.tensor([max(1, round(0.15 * v)) for v in valid_lens.tolist()])
    expected = torch.minimum(torch.minimum(wanted, candidates), torch.tensor(3))
    assert (m.mlm_weights.sum(1).long() == expected).all()
    assert (expected == 3).any() and (wanted > 3).any()  # the cap was exercised


def test_mask_tokens_chooses_only_ordinary_tokens_inside_the_valid_length(wiki, wiki_masked):
    corpus, pairs = wiki
    m, vocab = wiki_masked, corpus.vocab
    used = m.mlm_weights > 0
    rows = torch.arange(len(m.tokens))[:, None].expand_as(m.pred_positions)[used]
    pos = m.pred_positions[used]
    original = pairs["tokens"][rows, pos]
    assert (pos < pairs["valid_lens"][rows]).all()
    assert (pos > 0).all()  # never <cls>
    for tok in (PAD, MASK, CLS, SEP):
        assert not (original == vocab[tok]).any(), tok
    assert not (original == vocab.unk).any()
    # distinct positions, in increasing order, inside each row
    big = torch.where(used, m.pred_positions, WIKI_MAX_LEN + torch.arange(m.pred_positions.shape[1]))
    assert (big.diff(dim=1) > 0).all()


def test_mask_tokens_without_skip_unk_may_choose_unk(wiki):
    corpus, pairs = wiki
    m = bert.mask_tokens(pairs["tokens"], pairs["valid_lens"], corpus.vocab, gen(0), skip_unk=False)
    used = m.mlm_weights > 0
    assert (m.mlm_labels[used] == corpus.vocab.unk).sum() > 100
    assert not torch.isin(m.mlm_labels[used], torch.tensor(bert.special_ids(corpus.vocab))).any()


def test_mask_tokens_labels_are_the_original_tokens_and_unused_slots_are_blank(wiki, wiki_masked):
    _, pairs = wiki
    m = wiki_masked
    used = m.mlm_weights > 0
    assert torch.equal(m.mlm_labels, torch.where(used, torch.gather(pairs["tokens"], 1, m.pred_positions), 0))
    assert (~used).any()
    assert (m.mlm_weights[~used] == 0).all()
    assert (m.mlm_labels[~used] == 0).all()
    assert (m.pred_positions[~used] == 0).all()
    assert (m.kinds[~used] == -1).all()
    assert torch.isin(m.kinds[used], torch.tensor([0, 1, 2])).all()


def test_mask_tokens_changes_the_input_only_at_chosen_positions(wiki, wiki_masked):
    corpus, pairs = wiki
    m, vocab = wiki_masked, corpus.vocab
    chosen = chosen_mask(m, pairs["tokens"].shape)
    assert torch.equal(m.tokens[~chosen], pairs["tokens"][~chosen])
    assert (m.tokens != pairs["tokens"]).sum() > 0.8 * chosen.sum()
    # what happened at each chosen position matches its kind
    used = m.mlm_weights > 0
    new = torch.gather(m.tokens, 1, m.pred_positions)
    assert (new[used & (m.kinds == 0)] == vocab[MASK]).all()
    assert torch.equal(new[used & (m.kinds == 2)], m.mlm_labels[used & (m.kinds == 2)])
    random_ids = new[used & (m.kinds == 1)]
    assert ((random_ids >= len(BERT_RESERVED_TOKENS) + 1) & (random_ids < len(vocab))).all()


def test_mask_tokens_mask_random_unchanged_shares(wiki_masked):
    m = wiki_masked
    kinds = m.kinds[m.mlm_weights > 0]
    n = len(kinds)  # about 62,500 chosen tokens
    # 5 sigma of a share p among n = 62,500: p = 0.8: 5 * sqrt(0.8 * 0.2 / 62,500) = 5 * 0.0016 = 0.008;
    # p = 0.1: 5 * sqrt(0.1 * 0.9 / 62,500) = 5 * 0.0012 = 0.006.
    for kind, p in enumerate(bert.MASK_SPLIT):
        share = (kinds == kind).double().mean().item()
        assert abs(share - p) <= binomial_tol(p, n), (kind, share, p, n)


def test_mask_tokens_other_split_is_respected(wiki):
    corpus, pairs = wiki
    m = bert.mask_tokens(pairs["tokens"], pairs["valid_lens"], corpus.vocab, gen(3), split=(0.5, 0.2, 0.3))
    kinds = m.kinds[m.mlm_weights > 0]
    n = len(kinds)  # about 62,500: 5 sigma is 0.010 for p = 0.5, 0.008 for 0.2, 0.009 for 0.3
    for kind, p in enumerate((0.5, 0.2, 0.3)):
        assert abs((kinds == kind).double().mean().item() - p) <= binomial_tol(p, n)


def test_mask_tokens_random_replacements_are_uniform_over_ordinary_tokens(wiki):
    corpus, pairs = wiki
    vocab = corpus.vocab
    m = bert.mask_tokens(pairs["tokens"], pairs["valid_lens"], vocab, gen(1), split=(0.0, 1.0, 0.0))
    used = m.mlm_weights > 0
    assert (m.kinds[used] == 1).all()
    ids = torch.gather(m.tokens, 1, m.pred_positions)[used]
    first = len(BERT_RESERVED_TOKENS) + 1
    assert ids.min() >= first and ids.max() < len(vocab)
    # 10 equal-width bins of ids; under uniform sampling bin j holds width_j / (V - 5) of the draws.
    # With n = 62,500 draws and p = 0.1: 5 sigma = 5 * sqrt(0.1 * 0.9 / 62,500) = 0.006 (the bin of the
    # most frequent words would hold most draws if replacements followed word frequencies).
    n, num_ordinary = len(ids), len(vocab) - first
    edges = torch.linspace(first, len(vocab), 11).round().long()
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        p = (hi - lo) / num_ordinary
        share = ((ids >= lo) & (ids < hi)).double().mean().item()
        assert abs(share - p) <= binomial_tol(p, n), (lo, hi, share, p)
    # the random draw does not copy the original token
    assert (ids == m.mlm_labels[used]).double().mean() < 0.01


def test_mask_tokens_chooses_uniformly_among_eligible_positions(wiki, wiki_masked):
    corpus, pairs = wiki
    m = wiki_masked
    eligible = eligible_mask(pairs["tokens"], pairs["valid_lens"], corpus.vocab)
    chosen = chosen_mask(m, eligible.shape)
    assert not (chosen & ~eligible).any()
    # Uniform choice of k_i of the m_i eligible tokens of row i: an eligible token is chosen with
    # probability p_i = k_i / m_i wherever it stands. So the number chosen at position t has mean
    # E_t = sum_i eligible[i, t] p_i and variance V_t = sum_i eligible[i, t] p_i (1 - p_i) (rows are
    # independent); we require |chosen_t - E_t| <= 5 sqrt(V_t) at every position with V_t >= 25
    # (with 64 positions, a false alarm about once in 27,000 runs). A choice biased towards
    # early or late positions (e.g. the first k eligible tokens) misses by dozens of sigmas.
    p = (m.mlm_weights.sum(1) / eligible.sum(1).clamp(min=1)).double()[:, None]
    expected = (eligible * p).sum(0)
    variance = (eligible * p * (1 - p)).sum(0)
    observed = chosen.sum(0).double()
    checked = variance >= 25
    assert checked.sum() >= 40
    z = (observed - expected)[checked] / variance[checked].sqrt()
    assert z.abs().max() <= SIGMAS, z
    # the same in words: the chosen share of eligible tokens in the first and last thirds
    early, late = eligible[:, 1:21], eligible[:, 40:]
    share_early = chosen[:, 1:21][early].double().mean()
    share_late = chosen[:, 40:][late].double().mean()
    assert abs(share_early - share_late) < 0.02


def test_mask_tokens_is_deterministic_for_a_generator_seed(wiki):
    corpus, pairs = wiki
    tokens, valid_lens = pairs["tokens"][:300], pairs["valid_lens"][:300]
    a = bert.mask_tokens(tokens, valid_lens, corpus.vocab, gen(7))
    b = bert.mask_tokens(tokens, valid_lens, corpus.vocab, gen(7))
    c = bert.mask_tokens(tokens, valid_lens, corpus.vocab, gen(8))
    for name in ("tokens", "pred_positions", "mlm_labels", "mlm_weights", "kinds"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.pred_positions, c.pred_positions)
    assert not torch.equal(a.tokens, c.tokens)


@pytest.mark.parametrize("mask_ratio", [0.0, 1.0, -0.1, 1.5])
def test_mask_tokens_rejects_bad_mask_ratio(mask_ratio):
    vocab = small_vocab()
    with pytest.raises(ValueError, match="mask_ratio"):
        bert.mask_tokens(torch.full((2, 8), 5), torch.tensor([8, 8]), vocab, gen(0), mask_ratio=mask_ratio)


@pytest.mark.parametrize("split", [(0.5, 0.5), (0.9, 0.2, -0.1), (0.5, 0.3, 0.1), (0.8, 0.1, 0.1, 0.0)])
def test_mask_tokens_rejects_bad_split(split):
    vocab = small_vocab()
    with pytest.raises(ValueError, match="split"):
        bert.mask_tokens(torch.full((2, 8), 5), torch.tensor([8, 8]), vocab, gen(0), split=split)


# =============================================================================================
# 2. mlm_loss
# =============================================================================================


def d2l_mlm_loss(mlm_logits, mlm_labels, mlm_weights):
    """d2l's formulation: a mean-reduced cross-entropy over every slot, then weighted."""
    loss = nn.CrossEntropyLoss()
    vocab_size = mlm_logits.shape[-1]
    mlm_l = loss(mlm_logits.reshape(-1, vocab_size), mlm_labels.reshape(-1)) * mlm_weights.reshape(-1, 1)
    return mlm_l.sum() / (mlm_weights.sum() + 1e-8)


def mlm_case(seed=0):
    g = gen(seed)
    logits = torch.randn(4, 5, 12, generator=g)
    labels = torch.randint(0, 12, (4, 5), generator=g)
    weights = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]).float()
    return logits, labels, weights


def test_mlm_loss_is_cross_entropy_over_the_chosen_positions():
    logits, labels, weights = mlm_case()
    used = weights > 0
    expected = F.cross_entropy(logits[used], labels[used])
    assert torch.allclose(bert.mlm_loss(logits, labels, weights), expected, atol=1e-6)
    # and not the mean over every slot
    every_slot = F.cross_entropy(logits.reshape(-1, 12), labels.reshape(-1))
    assert not torch.allclose(every_slot, expected, atol=1e-3)


def test_mlm_loss_ignores_unused_slots_unlike_d2l():
    logits, labels, weights = mlm_case()
    wild = logits.clone()
    unused = weights == 0
    wild[unused] = 1e4 * torch.randn(int(unused.sum()), 12, generator=gen(1))
    ours, ours_wild = bert.mlm_loss(logits, labels, weights), bert.mlm_loss(wild, labels, weights)
    assert torch.isfinite(ours_wild)
    assert torch.allclose(ours, ours_wild, rtol=1e-6, atol=0)
    theirs, theirs_wild = d2l_mlm_loss(logits, labels, weights), d2l_mlm_loss(wild, labels, weights)
    assert abs(theirs_wild - theirs) > 100  # d2l's loss averages the padding slots in
    # with no padding at all the two formulations agree
    full = torch.ones_like(weights)
    assert torch.allclose(bert.mlm_loss(logits, labels, full), d2l_mlm_loss(logits, labels, full), atol=1e-5)


def test_mlm_loss_sends_no_gradient_to_unused_slots_and_is_zero_without_targets():
    logits, labels, weights = mlm_case()
    logits.requires_grad_(True)
    bert.mlm_loss(logits, labels, weights).backward()
    assert (logits.grad[weights == 0] == 0).all()
    assert (logits.grad[weights > 0].abs().sum(-1) > 0).all()
    empty = bert.mlm_loss(logits.detach(), labels, torch.zeros_like(weights))
    assert torch.isfinite(empty) and empty.item() == 0.0


# =============================================================================================
# 3. BERTEncoder
# =============================================================================================


def encoder_case(dropout=0.0, seed=0):
    torch.manual_seed(seed)
    encoder = bert.BERTEncoder(50, num_hiddens=32, ffn_num_hiddens=64, num_heads=4, num_layers=3,
                               dropout=dropout, max_len=16).eval()
    g = gen(seed + 1)
    tokens = torch.randint(5, 50, (3, 10), generator=g)
    segments = (torch.arange(10) >= 5).long().expand(3, 10).clone()
    valid_lens = torch.tensor([10, 4, 7])
    return encoder, tokens, segments, valid_lens


def test_encoder_blocks_equal_torch_transformer_encoder_with_padding():
    encoder, tokens, segments, valid_lens = encoder_case()
    torch_encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu", batch_first=True),
        num_layers=3, enable_nested_tensor=False).eval()
    torch.manual_seed(3)
    with torch.no_grad():  # different weights in every layer, so a mix-up of layers would show
        for p in torch_encoder.parameters():
            p.normal_(0, 0.2)
    for blk, layer in zip(encoder.blks, torch_encoder.layers, strict=True):
        blk.load_from_torch(layer)
    with torch.no_grad():
        ours = encoder(tokens, segments, valid_lens)
        pad = torch.arange(10)[None, :] >= valid_lens[:, None]
        theirs = torch_encoder(encoder.embed(tokens, segments), src_key_padding_mask=pad)
    valid = ~pad
    assert torch.allclose(ours[valid], theirs[valid], atol=1e-5)
    # the padding mask matters: without it the short rows' valid outputs differ
    with torch.no_grad():
        unmasked = encoder(tokens, segments)
    assert not torch.allclose(unmasked[1, :4], theirs[1, :4], atol=1e-3)


def test_encoder_embedding_is_the_normalised_sum_of_three_embeddings():
    encoder, tokens, segments, _ = encoder_case()
    X = encoder.token_embedding(tokens) + encoder.segment_embedding(segments) + encoder.pos_embedding[:, :10]
    ln = encoder.embedding_norm
    expected = F.layer_norm(X, (32,), ln.weight, ln.bias, ln.eps)
    assert torch.allclose(encoder.embed(tokens, segments), expected, atol=1e-6)


def test_encoder_learned_positions_make_order_matter():
    encoder, tokens, segments, valid_lens = encoder_case()
    tokens[:, 2] = 7
    tokens[:, 3] = 9
    swapped = tokens.clone()
    swapped[:, [2, 3]] = tokens[:, [3, 2]]
    with torch.no_grad():
        out, out_swapped = encoder(tokens, segments, valid_lens), encoder(swapped, segments, valid_lens)
    assert not torch.allclose(out_swapped[:, 2], out[:, 3], atol=1e-4)
    # without position embeddings self-attention is permutation-equivariant: the swap only swaps outputs
    flat = copy.deepcopy(encoder)
    with torch.no_grad():
        flat.pos_embedding.zero_()
        a, b = flat(tokens, segments, valid_lens), flat(swapped, segments, valid_lens)
    assert torch.allclose(b[:, 2], a[:, 3], atol=1e-5) and torch.allclose(b[:, 3], a[:, 2], atol=1e-5)


def test_encoder_output_changes_with_position_and_segment_embeddings():
    encoder, tokens, segments, valid_lens = encoder_case()
    with torch.no_grad():
        out = encoder(tokens, segments, valid_lens)
        other = copy.deepcopy(encoder)
        other.pos_embedding.add_(0.1 * torch.randn(other.pos_embedding.shape, generator=gen(5)))
        assert not torch.allclose(other(tokens, segments, valid_lens), out, atol=1e-4)
        flipped = encoder(tokens, 1 - segments, valid_lens)
        assert not torch.allclose(flipped, out, atol=1e-4)
        # control: with equal segment vectors the flip changes nothing
        same = copy.deepcopy(encoder)
        same.segment_embedding.weight[1] = same.segment_embedding.weight[0]
        assert torch.allclose(same(tokens, 1 - segments, valid_lens), same(tokens, segments, valid_lens))


def test_encoder_rejects_inputs_longer_than_max_len():
    encoder, *_ = encoder_case()
    ok = torch.full((1, 16), 7)
    assert encoder(ok, torch.zeros_like(ok)).shape == (1, 16, 32)
    long = torch.full((1, 17), 7)
    with pytest.raises(ValueError, match="max_len") as info:
        encoder(long, torch.zeros_like(long))
    assert "16" in str(info.value) and "17" in str(info.value)


def test_encoder_valid_outputs_do_not_depend_on_padded_token_ids():
    encoder, tokens, segments, valid_lens = encoder_case()
    pad = torch.arange(10)[None, :] >= valid_lens[:, None]
    other_tokens, other_segments = tokens.clone(), segments.clone()
    other_tokens[pad] = torch.randint(5, 50, (int(pad.sum()),), generator=gen(9))
    other_segments[pad] = 1 - other_segments[pad]
    assert not torch.equal(other_tokens, tokens)
    with torch.no_grad():
        a = encoder(tokens, segments, valid_lens)
        b = encoder(other_tokens, other_segments, valid_lens)
        assert torch.allclose(a[~pad], b[~pad], atol=1e-6)
        # without valid_lens the padded ids do leak in
        leaky, leaky_other = encoder(tokens, segments), encoder(other_tokens, other_segments)
        assert not torch.allclose(leaky[~pad], leaky_other[~pad], atol=1e-4)


def test_bert_model_outputs_and_nsp_from_the_pooled_cls():
    model = small_model()
    tokens = torch.randint(5, 11, (3, 8), generator=gen(0))
    segments, valid_lens = torch.zeros_like(tokens), torch.tensor([8, 5, 6])
    positions = torch.tensor([[1, 2], [3, 4], [1, 5]])
    with torch.no_grad():
        encoded, mlm_logits, nsp_logits = model(tokens, segments, valid_lens, positions)
        assert encoded.shape == (3, 8, 16) and mlm_logits.shape == (3, 2, 11) and nsp_logits.shape == (3, 2)
        assert torch.allclose(nsp_logits, model.nsp(model.pooler(encoded[:, 0])))
        assert torch.allclose(mlm_logits, model.mlm(encoded, positions))
        assert model(tokens, segments, valid_lens)[1] is None


# =============================================================================================
# 4. Parameter counts
# =============================================================================================


def test_bert_parameter_count_matches_a_built_model():
    model = bert.BERTModel(100, num_hiddens=32, ffn_num_hiddens=64, num_heads=2, num_layers=3, max_len=16)
    built = sum(p.numel() for part in (model.encoder, model.pooler) for p in part.parameters())
    assert bert.bert_parameter_count(100, 32, 64, 3, max_len=16) == built
    assert bert.bert_parameter_count(100, 32, 64, 4, max_len=16) != built


def test_bert_parameter_count_of_base_and_large():
    assert bert.bert_parameter_count(30_522, 768, 3_072, 12, max_len=512) == 109_482_240
    assert bert.bert_parameter_count(30_522, 1_024, 4_096, 24, max_len=512) == 335_141_888


# =============================================================================================
# 5. MaskLM, weight tying, gather_positions
# =============================================================================================


def count_unique(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() lists a shared one once


def test_tied_output_weight_is_the_token_embedding():
    tied, untied = small_model(tie_weights=True), small_model(tie_weights=False)
    assert tied.mlm.tied_embedding.weight is tied.encoder.token_embedding.weight
    assert tied.mlm.tied_embedding.weight.data_ptr() == tied.encoder.token_embedding.weight.data_ptr()
    assert untied.mlm.decoder.weight.data_ptr() != untied.encoder.token_embedding.weight.data_ptr()
    assert count_unique(untied) - count_unique(tied) == 11 * 16
    # editing the embedding changes the tied model's MLM scores
    tokens = torch.randint(5, 11, (2, 6), generator=gen(0))
    segments, positions = torch.zeros_like(tokens), torch.tensor([[1, 2], [3, 4]])
    with torch.no_grad():
        before = tied(tokens, segments, None, positions)[1]
        H = tied.mlm.transform(bert.gather_positions(tied.encoder(tokens, segments), positions))
        assert torch.allclose(before, H @ tied.encoder.token_embedding.weight.T + tied.mlm.bias, atol=1e-6)
        # (a random change: adding a constant to a row would vanish in the LayerNorms)
        tied.encoder.token_embedding.weight[7] += torch.randn(16, generator=gen(2))
        after = tied(tokens, segments, None, positions)[1]
    assert not torch.allclose(before, after)


def test_gather_positions_equals_a_loop():
    X = torch.randn(3, 7, 5, generator=gen(0))
    positions = torch.randint(0, 7, (3, 4), generator=gen(1))
    loop = torch.stack([torch.stack([X[i, positions[i, j]] for j in range(4)]) for i in range(3)])
    assert torch.equal(bert.gather_positions(X, positions), loop)


# =============================================================================================
# 6. pair_tensors
# =============================================================================================


def test_pair_tensors_layout(wiki):
    corpus, pairs = wiki
    vocab = corpus.vocab
    tokens, segments, valid_lens = pairs["tokens"], pairs["segments"], pairs["valid_lens"]
    N, L = tokens.shape
    assert L == WIKI_MAX_LEN and len(valid_lens) == len(pairs["nsp_labels"]) == N
    inside = torch.arange(L)[None, :] < valid_lens[:, None]
    assert (valid_lens <= L).all() and (valid_lens >= 3).all()
    assert (tokens[:, 0] == vocab[CLS]).all()
    assert (tokens[torch.arange(N), valid_lens - 1] == vocab[SEP]).all()
    assert (tokens[~inside] == vocab[PAD]).all() and not (tokens[inside] == vocab[PAD]).any()
    is_sep = tokens == vocab[SEP]
    assert (is_sep.sum(1) == 2).all()
    after_first_sep = (is_sep.long().cumsum(1) - is_sep.long()) >= 1  # the first <sep> itself is segment 0
    assert torch.equal(segments, (after_first_sep & inside).long())


def test_pair_tensors_next_sentence_labels(wiki):
    corpus, pairs = wiki
    vocab = corpus.vocab
    successors = {(tuple(vocab[a]), tuple(vocab[b])) for p in corpus.train for a, b in zip(p[:-1], p[1:],
                                                                                          strict=True)}
    labels = pairs["nsp_labels"]
    real = []
    rows = zip(*(pairs[k].tolist() for k in ("tokens", "segments", "valid_lens")), strict=True)
    for toks, segs, n in rows:
        first_sep = toks.index(vocab[SEP])
        a, b = tuple(toks[1:first_sep]), tuple(toks[first_sep + 1:n - 1])
        assert segs[first_sep] == 0 and segs[first_sep + 1] == 1
        real.append((a, b) in successors)
    real = torch.tensor(real)
    assert real[labels == 1].all()
    assert real[labels == 0].double().mean() < 0.05  # a random sentence is rarely the real next one
    # n = 9,115 pairs: 5 sigma of a share of 1/2 is 5 * sqrt(0.25 / 9,115) = 0.026
    n = len(labels)
    assert abs(labels.double().mean().item() - 0.5) <= binomial_tol(0.5, n)


def test_pair_tensors_is_deterministic_for_a_seed(wiki):
    corpus, _ = wiki
    paragraphs = corpus.train[:200]
    a = bert.pair_tensors(paragraphs, corpus.vocab, 48, seed=3)
    b = bert.pair_tensors(paragraphs, corpus.vocab, 48, seed=3)
    c = bert.pair_tensors(paragraphs, corpus.vocab, 48, seed=4)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert a["tokens"].shape != c["tokens"].shape or not torch.equal(a["tokens"], c["tokens"])


# =============================================================================================
# 7. batches
# =============================================================================================


def indexed(pairs):
    return dict(pairs, idx=torch.arange(len(pairs["tokens"])))


def test_batches_cover_every_example_once_in_order_without_generator(wiki):
    _, pairs = wiki
    examples = indexed(pairs)
    seen = [b["idx"] for b in bert.batches(examples, 100)]
    assert torch.equal(torch.cat(seen), torch.arange(len(pairs["tokens"])))
    assert all(len(s) == 100 for s in seen[:-1])


def test_batches_cover_every_example_once_shuffled_with_generator(wiki):
    _, pairs = wiki
    examples, n = indexed(pairs), len(pairs["tokens"])
    g = gen(0)
    first = torch.cat([b["idx"] for b in bert.batches(examples, 64, g)])
    second = torch.cat([b["idx"] for b in bert.batches(examples, 64, g)])
    for order in (first, second):
        assert torch.equal(order.sort().values, torch.arange(n))
    assert not torch.equal(first, torch.arange(n)) and not torch.equal(first, second)
    again = torch.cat([b["idx"] for b in bert.batches(examples, 64, gen(0))])
    assert torch.equal(again, first)


@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_are_cut_to_their_longest_sequence(wiki, shuffle):
    corpus, pairs = wiki
    examples = indexed(pairs)
    for batch in bert.batches(examples, 50, gen(1) if shuffle else None):
        longest = int(batch["valid_lens"].max())
        assert batch["tokens"].shape[1] == batch["segments"].shape[1] == longest
        full = pairs["tokens"][batch["idx"]]
        assert torch.equal(batch["tokens"], full[:, :longest])
        assert torch.equal(batch["segments"], pairs["segments"][batch["idx"], :longest])
        assert (full[:, longest:] == corpus.vocab[PAD]).all()
        assert torch.equal(batch["nsp_labels"], pairs["nsp_labels"][batch["idx"]])


def test_batches_bucket_similar_lengths_together(wiki):
    _, pairs = wiki
    lens = pairs["valid_lens"]
    bucketed = [b["valid_lens"] for b in bert.batches(pairs, 32, gen(0))]
    plain = list(lens[torch.randperm(len(lens), generator=gen(0))].split(32))

    def mean_range(groups):
        return sum(int(g.max() - g.min()) for g in groups) / len(groups)

    assert mean_range(bucketed) < 0.25 * mean_range(plain)
    # and the total padding left after cutting shrinks accordingly
    padding = sum(int((g.max() - g).sum()) for g in bucketed)
    padding_plain = sum(int((g.max() - g).sum()) for g in plain)
    assert padding < 0.25 * padding_plain


# =============================================================================================
# 8. evaluate_pretraining and unigram_baseline against hand computations
# =============================================================================================


class FixedOutputs(nn.Module):
    """A stand-in for BERTModel that returns given logits, batch after batch, in order."""

    def __init__(self, mlm_logits, nsp_logits):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # so that model_device finds the CPU
        self.mlm_logits, self.nsp_logits = mlm_logits, nsp_logits
        self.seen = 0
        self.positions = []

    def forward(self, tokens, segments, valid_lens=None, pred_positions=None):
        rows = slice(self.seen, self.seen + len(tokens))
        self.seen += len(tokens)
        self.positions.append(pred_positions)
        return None, self.mlm_logits[rows], self.nsp_logits[rows]


def slot_logits(predict: int, vocab_size: int = 8) -> torch.Tensor:
    """log-probabilities: 1/2 on ``predict``, 1/14 on each of the other 7 ids."""
    p = torch.full((vocab_size,), 0.5 / (vocab_size - 1))
    p[predict] = 0.5
    return p.log()


def hand_examples():
    # ids: 0 <unk>, 1-4 reserved, 5, 6, 7 words; 3 examples, 2 prediction slots
    mlm_labels = torch.tensor([[5, 0], [6, 0], [7, 5]])
    mlm_weights = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    return dict(tokens=torch.full((3, 4), 5), segments=torch.zeros(3, 4, dtype=torch.long),
                valid_lens=torch.tensor([4, 4, 4]), pred_positions=torch.tensor([[1, 0], [1, 2], [1, 2]]),
                mlm_labels=mlm_labels, mlm_weights=mlm_weights, nsp_labels=torch.tensor([1, 0, 1]))


@pytest.mark.parametrize("batch_size", [512, 2])
def test_evaluate_pretraining_equals_a_hand_computation(batch_size):
    examples = hand_examples()
    unused = torch.full((8,), -1000.0)
    unused[0] = 1000.0  # the unused slot's label is 0: counted, it would be a sure hit of loss 0
    mlm_logits = torch.stack([
        torch.stack([slot_logits(5), unused]),          # target 5: hit
        torch.stack([slot_logits(5), slot_logits(0)]),  # target 6: miss; target <unk>: hit
        torch.stack([slot_logits(7), slot_logits(6)]),  # target 7: hit; target 5: miss
    ])  # fmt: skip
    nsp_logits = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # always "next": 2 of 3 right
    stub = FixedOutputs(mlm_logits, nsp_logits).train()
    got = bert.evaluate_pretraining(stub, examples, batch_size=batch_size, unk=0)
    hit, miss = math.log(2), math.log(14)
    assert got["mlm_acc"] == pytest.approx(3 / 5)
    assert got["mlm_loss"] == pytest.approx((3 * hit + 2 * miss) / 5, rel=1e-5)
    # without the <unk> target: 5 hit, 6 miss, 7 hit, 5 miss
    assert got["mlm_acc_known"] == pytest.approx(2 / 4)
    assert got["mlm_loss_known"] == pytest.approx((2 * hit + 2 * miss) / 4, rel=1e-5)
    assert got["nsp_acc"] == pytest.approx(2 / 3)
    assert stub.training  # the mode is restored
    assert torch.equal(torch.cat([p for p in stub.positions]), examples["pred_positions"])


def test_unigram_baseline_equals_a_hand_computation():
    train_labels = torch.tensor([[0, 0, 0, 0], [5, 5, 6, 7], [7, 7, 7, 7]])
    train_weights = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 0, 0]]).float()
    # counted targets: <unk> x4, 5 x2, 6 x1 (the 7s have weight 0); add-one over 8 ids:
    # counts [5, 1, 1, 1, 1, 3, 2, 1], total 15; without <unk>: [0, 1, 1, 1, 1, 3, 2, 1], total 10
    examples = dict(mlm_labels=torch.tensor([[5, 0, 7], [6, 0, 2]]),
                    mlm_weights=torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]))
    # held-out targets: 5, <unk>, 7, 6 (the second row's last two slots are unused)
    got = bert.unigram_baseline(train_labels, train_weights, examples, vocab_size=8, unk=0)
    assert got["guess"] == 0 and got["guess_known"] == 5
    assert got["mlm_loss"] == pytest.approx(-(math.log(3 / 15) + math.log(5 / 15) + math.log(1 / 15)
                                              + math.log(2 / 15)) / 4)
    assert got["mlm_acc"] == pytest.approx(1 / 4)  # guessing <unk> is right once
    known_loss = -(math.log(3 / 10) + math.log(1 / 10) + math.log(2 / 10)) / 3  # renormalised without <unk>
    assert got["mlm_loss_known"] == pytest.approx(known_loss)
    assert got["mlm_acc_known"] == pytest.approx(1 / 3)  # guessing 5 is right once


# =============================================================================================
# 9. pretrain_bert
# =============================================================================================


def tiny_model(corpus, seed=0, dropout=0.1, max_len=16, num_hiddens=32):
    torch.manual_seed(seed)
    return bert.BERTModel(len(corpus.vocab), num_hiddens, 2 * num_hiddens, 2, 2, dropout=dropout,
                          max_len=max_len)


def test_pretrain_bert_reduces_the_mlm_loss_and_records_history(tiny):
    heldout = bert.heldout_examples(tiny, 16)
    model = tiny_model(tiny)
    before = bert.evaluate_pretraining(model, heldout, unk=tiny.vocab.unk)
    torch.manual_seed(0)
    run = bert.pretrain_bert(model, tiny, num_epochs=2, batch_size=16, lr=5e-3, heldout=heldout,
                             verbose=False)
    assert isinstance(run, TrainingRun)
    history = run.history
    assert set(history.keys()) == {"train_mlm_loss", "train_nsp_loss", "val_mlm_loss", "val_mlm_acc",
                                   "val_nsp_acc"}
    assert history.num_epochs == 2 and all(len(history[k]) == 2 for k in history.keys())
    assert history["train_mlm_loss"][1] < history["train_mlm_loss"][0] - 0.1
    after = bert.evaluate_pretraining(model, heldout, unk=tiny.vocab.unk)
    assert after["mlm_loss"] < before["mlm_loss"] - 0.3  # about 3.2 (log 25) -> about 2.5
    # the recorded held-out values leave out the <unk> targets
    assert after["mlm_loss_known"] != pytest.approx(after["mlm_loss"], abs=1e-3)
    assert history["val_mlm_loss"][-1] == pytest.approx(after["mlm_loss_known"])
    assert history["val_mlm_acc"][-1] == pytest.approx(after["mlm_acc_known"])
    assert history["val_nsp_acc"][-1] == pytest.approx(after["nsp_acc"])
    assert not model.training


def test_pretrain_bert_without_heldout_records_training_values_only(tiny):
    model = tiny_model(tiny)
    run = bert.pretrain_bert(model, tiny, num_epochs=1, batch_size=32, lr=5e-3, verbose=False)
    assert set(run.history.keys()) == {"train_mlm_loss", "train_nsp_loss"}


def test_pretrain_bert_is_deterministic_for_a_seed(tiny):
    heldout = bert.heldout_examples(tiny, 16)
    first = tiny_model(tiny, dropout=0.0)  # dropout would draw from torch's global generator
    second, third = copy.deepcopy(first), copy.deepcopy(first)
    runs = []
    for model, seed, global_seed in ((first, 0, 123), (second, 0, 456), (third, 1, 123)):
        torch.manual_seed(global_seed)  # pairs, masking and batch order depend only on `seed`
        runs.append(bert.pretrain_bert(model, tiny, num_epochs=2, batch_size=16, lr=5e-3, seed=seed,
                                       heldout=heldout, verbose=False).history)
    assert runs[0].values == runs[1].values
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert runs[2]["train_mlm_loss"] != runs[0]["train_mlm_loss"]


def test_pretrain_bert_nsp_weight_zero_leaves_the_nsp_head_untouched(tiny):
    params = {}
    for nsp_weight in (0.0, 1.0):
        model = tiny_model(tiny, dropout=0.0)
        before = copy.deepcopy(model.state_dict())
        bert.pretrain_bert(model, tiny, num_epochs=1, batch_size=32, lr=5e-3, weight_decay=0.0,
                           nsp_weight=nsp_weight, verbose=False)
        params[nsp_weight] = [torch.equal(model.state_dict()[name], before[name])
                              for name in before if name.startswith(("nsp.", "pooler."))]
        assert not torch.equal(model.state_dict()["mlm.bias"], before["mlm.bias"])
    assert all(params[0.0]) and len(params[0.0]) == 4  # the NSP loss is the only one through them
    assert not any(params[1.0])


def test_pretrain_bert_schedule_covers_exactly_the_steps_taken(wiki, monkeypatch):
    # Epoch 1 draws its sentence pairs with `seed`, epoch e > 1 with `seed + e`; pairs longer than
    # max_len are skipped, so epochs can hold different numbers of pairs and batches. The schedule
    # must still end at the last step: no step with learning rate 0, none left before the decay ends.
    corpus, _ = wiki
    small = bert.PretrainingCorpus(corpus.vocab, corpus.train[:40], [])
    max_len, batch_size = 32, 4
    batches_per_epoch = [math.ceil(len(bert.pair_tensors(small.train, small.vocab, max_len, seed)["tokens"])
                                   / batch_size) for seed in (0, 2)]  # epochs 1 and 2 with seed 0
    assert batches_per_epoch[0] != batches_per_epoch[1]  # the situation this test is about
    lrs, scheduled = [], []
    original = bert.warmup_linear_schedule

    def recording_schedule(optimizer, warmup_steps, total_steps):
        scheduled.append(total_steps)
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: lrs.append(opt.param_groups[0]["lr"]))
        return original(optimizer, warmup_steps, total_steps)

    monkeypatch.setattr(bert, "warmup_linear_schedule", recording_schedule)
    model = tiny_model(small, max_len=max_len, num_hiddens=16)
    bert.pretrain_bert(model, small, num_epochs=2, batch_size=batch_size, lr=1e-3, verbose=False)
    assert len(lrs) == sum(batches_per_epoch)
    assert scheduled == [len(lrs)], f"scheduled {scheduled[0]} steps, took {len(lrs)}; learning rates {lrs}"
    assert min(lrs) > 0


def test_small_bert_recipe_sizes():
    model = bert.BERTModel(6_436, **bert.SMALL_BERT)  # the WikiText-2 vocabulary of pretraining_corpus()
    assert 1.05e6 < count_unique(model) < 1.15e6  # "about 1.1M parameters with tied weights"
    assert model.encoder.max_len == bert.SMALL_BERT["max_len"]


def test_pretrain_small_bert_follows_the_recipe_and_is_reproducible(tiny, monkeypatch):
    small = dict(bert.SMALL_BERT, num_hiddens=16, ffn_num_hiddens=32, num_heads=2, num_layers=1, max_len=16)
    recipe = dict(bert.PRETRAINING, full_epochs=2, fast_epochs=1, fast_paragraphs=10, batch_size=32, lr=5e-3)
    monkeypatch.setattr(bert, "SMALL_BERT", small)
    monkeypatch.setattr(bert, "PRETRAINING", recipe)
    calls = []
    original = bert.pretrain_bert

    def recording(model, corpus, num_epochs, **kwargs):
        calls.append((len(corpus.train), num_epochs, kwargs))
        return original(model, corpus, num_epochs, **kwargs)

    monkeypatch.setattr(bert, "pretrain_bert", recording)
    torch.manual_seed(99)
    fast_model, fast_run = bert.pretrain_small_bert(tiny, fast=True, seed=3, verbose=False)
    torch.manual_seed(7)  # the global state before the call does not matter: the seed decides
    again, _ = bert.pretrain_small_bert(tiny, fast=True, seed=3, verbose=False)
    full_model, full_run = bert.pretrain_small_bert(tiny, fast=False, seed=3, verbose=False)
    assert [c[:2] for c in calls] == [(10, 1), (10, 1), (30, 2)]
    assert calls[0][2]["seed"] == 3
    for key, value in recipe.items():  # every other entry of the recipe reaches pretrain_bert
        if key not in ("full_epochs", "fast_epochs", "fast_paragraphs"):
            assert calls[0][2][key] == value, key
    assert fast_model.config == dict(vocab_size=len(tiny.vocab), **bert.SMALL_BERT, tie_weights=True)
    for (name, a), b in zip(fast_model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert fast_run.history.num_epochs == 1 and full_run.history.num_epochs == 2
    embeddings = (m.encoder.token_embedding.weight for m in (full_model, fast_model))
    assert not torch.equal(*embeddings)


# =============================================================================================
# 10. save_pretrained / load_pretrained
# =============================================================================================


@pytest.mark.parametrize("tie_weights", [True, False])
def test_save_and_load_pretrained_round_trip(tmp_path, tie_weights):
    vocab = small_vocab()
    model = small_model(dropout=0.1, tie_weights=tie_weights)
    path = tmp_path / "bert.pt"
    bert.save_pretrained(path, model, vocab, epochs=3, note="tiny", val_mlm_loss=2.5)
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"state_dict", "config", "idx_to_token", "info"}
    loaded, loaded_vocab, info = bert.load_pretrained(path)
    assert info == {"epochs": 3, "note": "tiny", "val_mlm_loss": 2.5}
    assert loaded_vocab.idx_to_token == vocab.idx_to_token and loaded_vocab.token_to_idx == vocab.token_to_idx
    assert loaded_vocab["c"] == vocab["c"] and loaded_vocab["zzz"] == vocab.unk
    assert loaded.config == model.config and not loaded.training
    assert (loaded.mlm.tied_embedding is loaded.encoder.token_embedding) == tie_weights
    tokens = torch.randint(5, 11, (2, 8), generator=gen(0))
    inputs = (tokens, torch.zeros_like(tokens), torch.tensor([8, 5]), torch.tensor([[1, 2], [3, 4]]))
    model.eval()
    with torch.no_grad():
        for a, b in zip(model(*inputs), loaded(*inputs), strict=True):
            assert torch.equal(a, b)


def test_load_pretrained_missing_file_names_chapter_10(tmp_path):
    with pytest.raises(FileNotFoundError, match="chapter 10"):
        bert.load_pretrained(tmp_path / "nothing.pt")


# =============================================================================================
# 11. fill_mask
# =============================================================================================


def test_fill_mask_returns_sorted_probabilities_over_ordinary_tokens():
    vocab, model = small_vocab(), small_model(dropout=0.5).train()
    sentence = ["a", MASK, "c", MASK]
    result = bert.fill_mask(model, vocab, sentence, top_k=6)  # in eval mode, whatever the model's mode
    assert model.training  # and the mode is restored
    model.eval()
    assert [pos for pos, _ in result] == [1, 3]
    # independently: the model's scores at the two <mask>s, softmax over the 6 ordinary words only
    ids = torch.tensor([[vocab[CLS], *vocab[sentence], vocab[SEP]]])
    with torch.no_grad():
        logits = model(ids, torch.zeros_like(ids), torch.tensor([6]), torch.tensor([[2, 4]]))[1][0]
    words = list("abcdef")
    for j, (_, proposals) in enumerate(result):
        probs = [p for _, p in proposals]
        assert probs == sorted(probs, reverse=True)
        assert sorted(w for w, _ in proposals) == words
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        expected = logits[j, vocab[words]].softmax(-1)
        for word, p in proposals:
            assert p == pytest.approx(expected[words.index(word)].item(), abs=1e-6)
    top2 = bert.fill_mask(model, vocab, sentence, top_k=2)
    assert [pw for _, pw in top2] == [pw[:2] for _, pw in result]


def test_fill_mask_never_proposes_special_tokens_or_unk():
    vocab, model = small_vocab(), small_model()
    with torch.no_grad():  # make the special tokens and <unk> the model's favourites
        model.mlm.bias[: len(BERT_RESERVED_TOKENS) + 1] = 50.0
    for top_k in (3, 6):
        for _, proposals in bert.fill_mask(model, vocab, [MASK, "b"], top_k=top_k):
            assert len(proposals) == top_k
            assert not {w for w, _ in proposals} & {"<unk>", *BERT_RESERVED_TOKENS}


def test_fill_mask_never_proposes_special_tokens_even_when_top_k_exceeds_the_words():
    vocab, model = small_vocab(), small_model()  # 6 ordinary words among 11 ids
    [(_, proposals)] = bert.fill_mask(model, vocab, [MASK, "b"], top_k=len(vocab))
    assert not {w for w, _ in proposals} & {"<unk>", *BERT_RESERVED_TOKENS}, proposals


def test_fill_mask_rejects_sentences_without_mask_or_too_long():
    vocab, model = small_vocab(), small_model(max_len=8)
    with pytest.raises(ValueError, match="<mask>"):
        bert.fill_mask(model, vocab, ["a", "b"])
    bert.fill_mask(model, vocab, ["a", MASK, "b", "c", "d", "e"])  # 6 + <cls> + <sep> = 8 fits
    with pytest.raises(ValueError, match="at most 6"):
        bert.fill_mask(model, vocab, ["a", MASK, "b", "c", "d", "e", "f"])


def test_fill_mask_does_not_reject_the_spelling_its_error_message_names():
    vocab, model = small_vocab(), small_model()
    try:
        result = bert.fill_mask(model, vocab, ["a", "[MASK]", "b"])
    except ValueError as error:
        assert "[MASK]" not in str(error), f"'[MASK]' is rejected with: {error}"
    else:
        assert [pos for pos, _ in result] == [1]


# =============================================================================================
# 12. Fine-tuning models: BERTClassifier, BagOfWords, word_overlap
# =============================================================================================


def test_classifier_from_pretrained_copies_the_encoder_and_pooler():
    model = small_model(dropout=0.1)
    original = copy.deepcopy(model.state_dict())
    clf = bert.BERTClassifier.from_pretrained(model, num_classes=3)
    assert clf.dropout.p == 0.1
    for name, value in clf.encoder.state_dict().items():
        assert torch.equal(value, original[f"encoder.{name}"]), name
    for name, value in clf.pooler.state_dict().items():
        assert torch.equal(value, original[f"pooler.{name}"]), name
    tokens = torch.randint(5, 11, (4, 8), generator=gen(0))
    segments, valid_lens = torch.zeros_like(tokens), torch.tensor([8, 3, 5, 6])
    clf.eval()
    assert clf(tokens, segments, valid_lens).shape == (4, 3)
    # training the classifier leaves the pre-trained model as it was
    clf.train()
    optimizer = torch.optim.SGD(clf.parameters(), lr=1.0)
    F.cross_entropy(clf(tokens, segments, valid_lens), torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
    with torch.no_grad():
        clf.encoder.token_embedding.weight.add_(1.0)
    assert not torch.equal(clf.encoder.token_embedding.weight, original["encoder.token_embedding.weight"])
    for name, value in model.state_dict().items():
        assert torch.equal(value, original[name]), name


def test_classifier_from_scratch_has_fresh_weights():
    model = small_model(dropout=0.1)
    torch.manual_seed(1)
    clf = bert.BERTClassifier.from_scratch(model.config, num_classes=2)
    assert not torch.allclose(clf.encoder.token_embedding.weight, model.encoder.token_embedding.weight)
    assert not torch.allclose(clf.pooler[0].weight, model.pooler[0].weight)
    tokens = torch.randint(5, 11, (3, 8), generator=gen(0))
    assert clf.eval()(tokens, torch.zeros_like(tokens), torch.tensor([8, 4, 2])).shape == (3, 2)


def test_bag_of_words_equals_a_hand_computation():
    # ids: 0 <unk>, 1 <pad>, 2 <mask>, 3 <cls>, 4 <sep>, 5-9 words; 2 classes
    bow = bert.BagOfWords(10, 2, ignore=[1, 3, 4])
    with torch.no_grad():
        bow.bags[0].weight.copy_(torch.arange(20.0).reshape(10, 2))
        bow.bags[1].weight.copy_(100 + torch.arange(20.0).reshape(10, 2) * 10)
        bow.overlap.weight.copy_(torch.tensor([[3.0], [-6.0]]))
        bow.overlap.bias.copy_(torch.tensor([0.5, -0.5]))
    tokens = torch.tensor([
        [3, 5, 6, 4, 5, 7, 7, 4, 1, 6],  # <cls> 5 6 <sep> 5 7 7 <sep> <pad> and a 6 past valid_len
        [3, 8, 9, 9, 4, 1, 1, 1, 1, 1],  # one sentence
    ])  # fmt: skip
    segments = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    valid_lens = torch.tensor([8, 5])
    W0, W1 = bow.bags[0].weight.detach(), bow.bags[1].weight.detach()
    w, b = bow.overlap.weight.detach()[:, 0], bow.overlap.bias.detach()
    row0 = b + (W0[5] + W0[6]) + (W1[5] + 2 * W1[7]) + w * (1 / 3)  # of 5 7 7 only 5 occurs in segment 0
    row1 = b + (W0[8] + 2 * W0[9]) + w * 0  # no second segment: overlap 0
    with torch.no_grad():
        got = bow(tokens, segments, valid_lens)
    assert torch.allclose(got, torch.stack([row0, row1]))
    # the ignored ids and the padding do not count, whatever their weights
    with torch.no_grad():
        bow.bags[0].weight[[1, 3, 4]] = 1e3
        bow.bags[1].weight[[1, 3, 4]] = 1e3
        assert torch.allclose(bow(tokens, segments, valid_lens), got)
        other = tokens.clone()
        other[0, 8:] = 9
        other[1, 5:] = 9
        assert torch.allclose(bow(other, segments, valid_lens), got)
        # without valid_lens the 6 after the padding would count
        assert not torch.allclose(bow(tokens, segments), got)


def test_word_overlap_equals_a_loop():
    g = gen(0)
    tokens = torch.randint(0, 6, (20, 9), generator=g)
    first = torch.rand(20, 9, generator=g) < 0.4
    second = (torch.rand(20, 9, generator=g) < 0.5) & ~first
    second[0] = False  # an empty second part: share 0
    expected = []
    for i in range(20):
        ids_first = {int(t) for t, f in zip(tokens[i], first[i], strict=True) if f}
        in_second = [int(t) for t, s in zip(tokens[i], second[i], strict=True) if s]
        expected.append(sum(t in ids_first for t in in_second) / max(len(in_second), 1))
    got = bert.word_overlap(tokens, first, second)
    assert torch.allclose(got, torch.tensor(expected, dtype=got.dtype))
    assert 0 < got.mean() < 1


def classification_task(n, seed):
    """Single sentences of ids 5..9 (length 3-7): label 1 when word 5 occurs, as (tokens, segments,
    valid_lens, labels) padded to 9 with <pad> = 1, <cls> = 3, <sep> = 4."""
    g = gen(seed)
    lens = torch.randint(3, 8, (n,), generator=g)
    words = torch.randint(5, 10, (n, 7), generator=g)
    tokens = torch.full((n, 9), 1)
    for i, k in enumerate(lens.tolist()):
        tokens[i, 0], tokens[i, 1:k + 1], tokens[i, k + 1] = 3, words[i, :k], 4
    valid_lens = lens + 2
    labels = ((tokens == 5).any(1)).long()
    return tokens, torch.zeros_like(tokens), valid_lens, labels


def test_as_examples_names_the_loader_tensors():
    tensors = classification_task(6, 0)
    examples = bert.as_examples(tensors)
    assert list(examples) == ["tokens", "segments", "valid_lens", "labels"]
    assert all(examples[k] is t for k, t in zip(examples, tensors, strict=True))
    with pytest.raises(ValueError):
        bert.as_examples(tensors[:3])


def test_predict_classes_equals_the_argmax_in_order():
    examples = bert.as_examples(classification_task(50, 0))
    torch.manual_seed(0)
    clf = bert.BERTClassifier.from_scratch(small_model(vocab_size=10, max_len=9).config, num_classes=3)
    with torch.no_grad():  # large random weights, so that the examples get different classes
        g = gen(0)
        for p in clf.parameters():
            if p.dim() > 1:
                p.normal_(0, 1, generator=g)
    clf.train()
    preds = bert.predict_classes(clf, examples, batch_size=8)
    assert clf.training  # the mode is restored
    clf.eval()
    with torch.no_grad():
        expected = clf(examples["tokens"], examples["segments"], examples["valid_lens"]).argmax(-1)
    assert preds.dtype == torch.long and torch.equal(preds, expected)
    assert len(set(preds.tolist())) > 1


def test_fine_tune_learns_and_keeps_the_best_epoch():
    train, val = bert.as_examples(classification_task(200, 1)), bert.as_examples(classification_task(100, 2))
    model = bert.BagOfWords(10, 2, ignore=[1, 3, 4])
    run = bert.fine_tune(model, train, val, num_epochs=4, lr=0.5, batch_size=32, verbose=False)
    history = run.history
    assert set(history.keys()) == {"train_loss", "train_acc", "val_acc"} and history.num_epochs == 4
    best = max(history["val_acc"])
    assert best > 0.9
    assert history.best_epoch == history["val_acc"].index(best) + 1
    # the returned model carries the best epoch's weights
    acc = (bert.predict_classes(model, val) == val["labels"]).double().mean().item()
    assert acc == pytest.approx(best)
    assert not model.training


# =============================================================================================
# Other helpers: token_vectors, encode_pair, masked/heldout examples, pretraining_losses
# =============================================================================================


def test_token_vectors_and_encode_pair():
    vocab, model = small_vocab(), small_model()
    tokens, segments, valid_lens = bert.encode_pair(vocab, ["a", "b"], ["c"])
    assert tokens.tolist() == [[vocab[CLS], vocab["a"], vocab["b"], vocab[SEP], vocab["c"], vocab[SEP]]]
    assert segments.tolist() == [[0, 0, 0, 0, 1, 1]] and valid_lens.tolist() == [6]
    model = small_model(dropout=0.5).train()
    vectors = bert.token_vectors(model, vocab, ["a", "b"], ["c"])  # in eval mode (no dropout)
    assert model.training
    model.eval()
    assert vectors.shape == (6, 16)
    with torch.no_grad():
        assert torch.allclose(vectors, model.encoder(tokens, segments, valid_lens)[0])
        single = bert.token_vectors(model, vocab, ["a", "b"])
    assert single.shape == (4, 16) and not torch.allclose(single, vectors[:4], atol=1e-4)  # context matters


def test_masked_and_heldout_examples(wiki):
    corpus, pairs = wiki
    examples = bert.masked_examples(pairs, corpus.vocab, seed=5)
    again = bert.masked_examples(pairs, corpus.vocab, seed=5)
    direct = bert.mask_tokens(pairs["tokens"], pairs["valid_lens"], corpus.vocab, gen(5))
    for name in ("tokens", "pred_positions", "mlm_labels", "mlm_weights"):
        assert torch.equal(examples[name], getattr(direct, name)) and torch.equal(again[name], examples[name])
    for name in ("segments", "valid_lens", "nsp_labels"):
        assert examples[name] is pairs[name]
    assert not (examples["mlm_labels"][examples["mlm_weights"] > 0] == corpus.vocab.unk).any()
    heldout = bert.heldout_examples(corpus, WIKI_MAX_LEN)
    assert (heldout["mlm_labels"][heldout["mlm_weights"] > 0] == corpus.vocab.unk).any()  # <unk> kept
    assert len(heldout["tokens"]) < len(pairs["tokens"]) / 5


def test_pretraining_losses_are_mlm_loss_and_nsp_cross_entropy(tiny):
    examples = bert.heldout_examples(tiny, 16)
    model = tiny_model(tiny, dropout=0.0).eval()
    l_mlm, l_nsp, mlm_logits, nsp_logits = bert.pretraining_losses(model, examples)
    _, ref_mlm, ref_nsp = model(examples["tokens"], examples["segments"], examples["valid_lens"],
                                examples["pred_positions"])
    used = examples["mlm_weights"] > 0
    assert torch.allclose(mlm_logits, ref_mlm[used], atol=1e-6) and torch.allclose(nsp_logits, ref_nsp)
    assert torch.allclose(l_mlm, F.cross_entropy(ref_mlm[used], examples["mlm_labels"][used]), atol=1e-6)
    assert torch.allclose(l_nsp, F.cross_entropy(ref_nsp, examples["nsp_labels"]), atol=1e-6)


# =============================================================================================
# 13. warmup_linear_schedule
# =============================================================================================


def test_warmup_linear_schedule_follows_the_formula():
    lr, warmup, total = 0.1, 4, 10
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = bert.warmup_linear_schedule(optimizer, warmup, total)
    lrs = []
    for _ in range(total + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()

    def formula(t):  # linear warm-up reaching lr at step warmup - 1, then linear decay to 0 at `total`
        return lr * (t + 1) / warmup if t < warmup else lr * max(0.0, (total - t) / (total - warmup))

    for t in range(total + 1):
        assert lrs[t] == pytest.approx(formula(t)), t
    assert lrs[0] == pytest.approx(lr / warmup) and lrs[0] > 0  # the first step already learns
    assert lrs[warmup - 1] == pytest.approx(lr) and lrs[warmup] == pytest.approx(lr)
    assert lrs[total - 1] == pytest.approx(lr / (total - warmup)) and lrs[total] == 0
    assert all(a < b for a, b in zip(lrs[:warmup - 1], lrs[1:warmup], strict=True))
    assert all(a > b for a, b in zip(lrs[warmup:total], lrs[warmup + 1:total + 1], strict=True))


def test_init_bert_weights_leaves_biases_of_a_linear_layer_at_zero():
    layer = nn.Linear(8, 3)
    bert.init_bert_weights(layer)
    assert torch.equal(layer.bias, torch.zeros(3)) and 0.005 < layer.weight.std() < 0.05
    encoder = bert.BERTEncoder(20, num_hiddens=8, ffn_num_hiddens=16, num_heads=2, num_layers=1, max_len=6)
    assert encoder.pos_embedding.abs().sum() > 0  # the encoder's own parameter is drawn too
