"""helpers.seq2seq: the encoder-decoder interface, masked loss, training, decoding and BLEU."""

import itertools
import math
import random

import pytest
import sacrebleu
import torch
from torch import nn
from torch.nn import functional as F

from decoding import stepwise_logits
from helpers import seq2seq
from helpers.data import make_loader
from helpers.datasets import NMTTestSet
from helpers.text import Vocab, build_array_nmt

SYMBOLS = list("abcdefgh")
NUM_STEPS = 7



def reversal_pairs(num_pairs, seed):
    """Toy translation: the target is the source reversed (2 to 5 symbols)."""
    rng = random.Random(seed)
    source = [[rng.choice(SYMBOLS) for _ in range(rng.randint(2, 5))] for _ in range(num_pairs)]
    return source, [line[::-1] for line in source]


@pytest.fixture(scope="module")
def toy():
    """A small GRU translator trained to reverse sequences, with its vocabularies and test set."""
    torch.manual_seed(0)
    source, target = reversal_pairs(1200, seed=0)
    vocab = Vocab(source + target, reserved_tokens=["<pad>", "<bos>", "<eos>"])
    arrays = (*build_array_nmt(source, vocab, NUM_STEPS), *build_array_nmt(target, vocab, NUM_STEPS))
    train_iter = make_loader(*arrays, batch_size=64, seed=0)
    model = seq2seq.make_gru_seq2seq(len(vocab), len(vocab), embed_size=32, num_hiddens=64,
                                     num_layers=1, dropout=0.0)
    history = seq2seq.train_seq2seq(model, train_iter, vocab, num_epochs=12, lr=0.01,
                                    live=False, progress=False, verbose=False)
    test_src, test_tgt = reversal_pairs(200, seed=1)
    test = NMTTestSet(test_src, test_tgt, *build_array_nmt(test_src, vocab, NUM_STEPS),
                      *build_array_nmt(test_tgt, vocab, NUM_STEPS))
    return model, vocab, history, test


def test_sequence_mask_and_masked_loss_equal_ignore_index():
    X = torch.arange(12.0).reshape(2, 3, 2)
    masked = seq2seq.sequence_mask(X, torch.tensor([1, 2]), value=-1)
    assert masked[0, 1:].eq(-1).all() and masked[1, 2].eq(-1).all() and masked[1, :2].equal(X[1, :2])
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, 9, generator=gen)
    valid_len = torch.tensor([6, 3, 1, 4])
    labels = torch.randint(2, 9, (4, 6), generator=gen)
    pad = 1
    labels = torch.where(torch.arange(6)[None] < valid_len[:, None], labels, pad)
    expected = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=pad)
    assert torch.allclose(seq2seq.masked_cross_entropy(logits, labels, valid_len), expected)
    assert torch.allclose(seq2seq.MaskedCrossEntropy(pad)(logits, labels), expected)
    with pytest.raises(ValueError, match="no token"):
        seq2seq.masked_cross_entropy(logits, labels, torch.zeros(4, dtype=torch.long))


def test_teacher_forcing_input_shifts_the_target_right():
    Y = torch.tensor([[5, 6, 2, 1], [7, 2, 1, 1]])
    assert seq2seq.teacher_forcing_input(Y, bos=3).tolist() == [[3, 5, 6, 2], [3, 7, 2, 1]]


def test_encoder_decoder_shapes_and_state_reordering():
    model = seq2seq.make_gru_seq2seq(11, 13, embed_size=8, num_hiddens=16, num_layers=2)
    src, dec_X = torch.randint(0, 11, (4, 5)), torch.randint(0, 13, (4, 6))
    assert model(src, dec_X, torch.tensor([5, 4, 3, 2])).shape == (4, 6, 13)
    enc_outputs = model.encoder(src)
    assert enc_outputs[0].shape == (4, 5, 16) and enc_outputs[1].shape == (2, 4, 16)
    context, hidden = model.decoder.init_state(enc_outputs)
    index = torch.tensor([3, 3, 0])
    new_context, new_hidden = model.decoder.reorder_state((context, hidden), index)
    assert new_context.equal(context[index]) and new_hidden.equal(hidden[:, index])


def test_default_reorder_state_handles_nested_batch_first_states():
    state = (torch.arange(6).reshape(3, 2), [None, {"kv": torch.arange(3)}], 7)
    out = seq2seq.Decoder().reorder_state(state, torch.tensor([2, 0]))
    assert out[0].tolist() == [[4, 5], [0, 1]] and out[1][0] is None
    assert out[1][1]["kv"].tolist() == [2, 0] and out[2] == 7


def test_training_learns_the_toy_task(toy):
    model, vocab, history, test = toy
    assert history["train_loss"][-1] < 0.3 * history["train_loss"][0]
    score = seq2seq.evaluate_bleu(model, test, vocab, max_len=NUM_STEPS)
    assert score.num_pairs == 200 and len(score.hypotheses) == 200
    assert score.score > 60, score.bleu
    assert "tok:13a" in score.bleu.signature and "nrefs:1" in score.bleu.signature


def test_beam_size_one_equals_greedy(toy):
    model, vocab, _, test = toy
    bos, eos = vocab["<bos>"], vocab["<eos>"]
    greedy = seq2seq.greedy_search(model, test.src, test.src_valid_len, bos, eos, NUM_STEPS)
    beam = seq2seq.beam_search(model, test.src, test.src_valid_len, bos, eos, NUM_STEPS, beam_size=1)
    assert beam == greedy
    # also for an untrained model, whose predictions are far from one-hot
    torch.manual_seed(3)
    fresh = seq2seq.make_gru_seq2seq(len(vocab), len(vocab), 16, 16, 2)
    assert (seq2seq.beam_search(fresh, test.src, None, bos, eos, 6, beam_size=1)
            == seq2seq.greedy_search(fresh, test.src, None, bos, eos, 6))


def _sequence_log_prob(model, src, tokens, bos):
    dec_X = torch.tensor([[bos, *tokens[:-1]]])
    logits = model(src[None], dec_X)
    return F.log_softmax(logits[0], -1).gather(1, torch.tensor(tokens)[:, None]).sum().item()


@pytest.mark.parametrize("alpha", [0.0, 0.75])
def test_wide_beam_finds_the_exhaustive_best(alpha):
    """With a beam wider than every set of prefixes, beam search is exhaustive search."""
    torch.manual_seed(1)
    vocab_size, max_len, bos, eos = 4, 3, 3, 2
    model = seq2seq.make_gru_seq2seq(5, vocab_size, 8, 8, 1).eval()
    src = torch.tensor([[0, 1, 4]])
    candidates = []
    for length in range(1, max_len + 1):
        for seq in itertools.product(range(vocab_size), repeat=length):
            if eos in seq[:-1] or (length < max_len and seq[-1] != eos):
                continue  # eos ends a sequence; shorter ones must end in eos
            log_prob = _sequence_log_prob(model, src[0], list(seq), bos)
            candidates.append((log_prob / length**alpha, [t for t in seq if t != eos]))
    best = max(candidates)[1]
    hyps = seq2seq.beam_search(model, src, None, bos, eos, max_len, beam_size=64, alpha=alpha,
                               return_all=True)[0]
    assert hyps[0].tokens == best
    assert len(hyps) == len(candidates)  # every complete sequence is a final beam
    assert hyps[0].score >= hyps[-1].score


def test_beam_search_is_batched_consistently(toy):
    model, vocab, _, test = toy
    bos, eos = vocab["<bos>"], vocab["<eos>"]
    together = seq2seq.beam_search(model, test.src[:8], test.src_valid_len[:8], bos, eos, NUM_STEPS, 3)
    alone = [seq2seq.beam_search(model, test.src[i : i + 1], test.src_valid_len[i : i + 1], bos, eos,
                                 NUM_STEPS, 3)[0] for i in range(8)]
    assert together == alone


def test_translate_and_bad_arguments(toy):
    model, vocab, _, _ = toy
    out = seq2seq.translate(model, ["a b c", "h g"], vocab, vocab, NUM_STEPS, beam_size=2)
    assert out == ["c b a", "g h"]
    with pytest.raises(ValueError, match="empty"):
        seq2seq.translate(model, [" "], vocab, vocab, NUM_STEPS)
    with pytest.raises(ValueError, match="beam_size"):
        seq2seq.beam_search(model, torch.zeros(1, 3, dtype=torch.long), None, 1, 2, 3, beam_size=0)
    with pytest.raises(ValueError, match="batch, steps"):
        seq2seq.greedy_search(model, torch.zeros(3, dtype=torch.long), None, 1, 2, 3)


def test_bleu_worked_example_and_edge_cases():
    label, pred = "A B C D E F", "A B B C D"
    assert [seq2seq.ngram_precision(pred, label, n) for n in (1, 2, 3, 4)] == [0.8, 0.75, 1 / 3, 0.0]
    expected = math.exp(1 - 6 / 5) * 0.8**0.5 * 0.75**0.25
    assert seq2seq.bleu(pred, label, k=2) == pytest.approx(expected)
    assert seq2seq.bleu(label, label, k=4) == 1.0
    assert seq2seq.bleu(pred, label, k=4) == 0.0
    assert seq2seq.bleu("", label) == 0.0 and seq2seq.bleu("A", label, k=2) == 0.0
    assert seq2seq.bleu("A B C D E F G", label, k=2) < 1.0  # long predictions lose precision
    with pytest.raises(ValueError, match="k"):
        seq2seq.bleu(pred, label, k=0)


def test_corpus_bleu_matches_sacrebleu_and_is_100_for_perfect_output():
    hyps = ["il est là .", "je suis grand !", "nous partons ."]
    refs = ["il est là .", "je suis petit !", "nous partons maintenant ."]
    ours = seq2seq.corpus_bleu(hyps, refs)
    theirs = sacrebleu.corpus_bleu(hyps, [refs], force=True)
    assert ours.score == pytest.approx(theirs.score) and ours.hyp_len == theirs.sys_len
    assert seq2seq.corpus_bleu(refs, refs).score == pytest.approx(100.0)
    assert "smooth:exp" in ours.signature and "BLEU" in str(ours)
    with pytest.raises(ValueError, match="one reference per hypothesis"):
        seq2seq.corpus_bleu(hyps, refs[:2])


def test_teacher_forcing_split_hook_builds_the_decoder_input(toy):
    _, vocab, _, test = toy
    nmt_iter = make_loader(test.src, test.src_valid_len, test.tgt, test.tgt_valid_len, batch_size=64,
                           shuffle=False)
    split = seq2seq.teacher_forcing_batch(vocab["<bos>"])
    batch = split(next(iter(nmt_iter)))
    src, dec_X, src_valid_len = batch.inputs
    tgt = batch.target
    assert batch.size == len(src) == 64 and not batch.kwargs
    assert dec_X[:, 0].eq(vocab["<bos>"]).all() and dec_X[:, 1:].equal(tgt[:, :-1])
    assert src_valid_len.equal(test.src_valid_len[:64]) and tgt.equal(test.tgt[:64])
    assert isinstance(seq2seq.MaskedCrossEntropy(vocab["<pad>"]), nn.Module)


def test_bucket_loader_covers_every_pair_once_with_trimmed_batches(toy):
    _, _, _, test = toy
    loader = seq2seq.BucketLoader(test.src, test.src_valid_len, test.tgt, test.tgt_valid_len,
                                  batch_size=32, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader) == 7
    rows = sorted(tuple(src[i, : int(sl[i])].tolist()) for src, sl, _, _ in batches for i in range(len(src)))
    expected = sorted(tuple(test.src[i, : int(test.src_valid_len[i])].tolist()) for i in range(len(test)))
    assert rows == expected
    for src, src_valid_len, tgt, tgt_valid_len in batches:
        assert src.shape[1] == src_valid_len.max() and tgt.shape[1] == tgt_valid_len.max()
    spreads = [int(b[3].max() - b[3].min()) for b in batches]
    assert max(spreads) <= 1  # sorted by target length: each batch nearly uniform
    with pytest.raises(ValueError, match="batch_size"):
        seq2seq.BucketLoader(test.src, test.src_valid_len, test.tgt, test.tgt_valid_len, batch_size=0)


def test_packed_encoder_ignores_padding():
    torch.manual_seed(0)
    encoder = seq2seq.Seq2SeqEncoder(10, 8, 16, num_layers=2).eval()
    src = torch.tensor([[4, 5, 2, 1, 1, 1]])
    outputs, state = encoder(src, torch.tensor([3]))
    short_outputs, short_state = encoder(src[:, :3], torch.tensor([3]))
    assert torch.allclose(state, short_state, atol=1e-6) and outputs[0, 3:].eq(0).all()
    assert torch.allclose(outputs[:, :3], short_outputs, atol=1e-6)
    assert not torch.allclose(encoder(src)[1], state)  # without valid lengths it reads the padding
    with pytest.raises(ValueError, match="at least 1"):
        encoder(src, torch.tensor([0]))


# --------------------------------------------------------------------------------------------
# The Bahdanau translator
# --------------------------------------------------------------------------------------------


def test_bahdanau_decoder_step_by_step_equals_teacher_forcing_and_beam_search_runs():
    torch.manual_seed(0)
    model = seq2seq.make_bahdanau_seq2seq(11, 13, embed_size=8, num_hiddens=16, num_layers=2, dropout=0.0)
    model.eval()
    src, valid_len = torch.randint(0, 11, (3, 6)), torch.tensor([6, 2, 4])
    Y = torch.randint(0, 13, (3, 5))
    with torch.no_grad():
        full = model(src, Y, valid_len)
        weights = model.decoder.attention_weights
    assert torch.allclose(stepwise_logits(model, src, valid_len, Y)[0], full, atol=1e-5)
    assert weights.shape == (3, 5, 6) and torch.allclose(weights.sum(-1), torch.ones(3, 5))
    assert weights[1, :, 2:].eq(0).all()  # padding of the second source gets no attention
    greedy = seq2seq.greedy_search(model, src, valid_len, 1, 2, 4)
    assert seq2seq.beam_search(model, src, valid_len, 1, 2, 4, beam_size=1) == greedy
    assert len(seq2seq.beam_search(model, src, valid_len, 1, 2, 4, beam_size=3)) == 3
