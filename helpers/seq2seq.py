"""Sequence-to-sequence machinery: the encoder-decoder interface, the GRU translator and its
Bahdanau-attention variant, the masked loss, training, greedy and beam-search decoding, and BLEU.

Chapter 5b teaches these pieces; the attention chapter adds :class:`BahdanauDecoder`, and the
Transformer chapter reuses the rest unchanged. Model code only: no widget or pyplot imports.
The interface follows d2l, with every tensor batch-first:

* an :class:`Encoder` maps ``(X, valid_len)`` to ``enc_outputs`` (anything the decoder needs);
* a :class:`Decoder` turns them into its initial state with
  ``decoder.init_state(enc_outputs, enc_valid_len)`` and is then called as
  ``logits, state = decoder(X, state)`` with ``X`` int64 ``(batch, steps)`` and ``logits``
  ``(batch, steps, vocab)``. During training ``X`` is the whole shifted target (teacher
  forcing); during decoding it is one token per step and ``state`` carries what the decoder
  needs to continue (a hidden state, a key/value cache);
* ``decoder.reorder_state(state, index)`` selects and repeats rows of the state along the batch:
  beam search uses it to copy states between beams. The default handles states made of
  batch-first tensors (nested in tuples, lists or dicts; ``None`` and non-tensors are kept); a
  decoder whose state has another layout (the GRU hidden state is ``(layers, batch, hidden)``)
  overrides it.

:class:`EncoderDecoder` ties the two together; :func:`train_seq2seq` trains any such model with
:func:`helpers.training.fit` (the split hook :func:`teacher_forcing_batch` builds the decoder's
input); :func:`greedy_search`, :func:`beam_search`, :func:`translate` and
:func:`evaluate_bleu` decode with it; :func:`bleu` is the d2l/nndl sentence BLEU and
:func:`corpus_bleu` the standard corpus BLEU of sacrebleu.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from helpers.attention import AdditiveAttention
from helpers.training import Batch, History, fit, make_optimizer, map_tensors, model_device

# ---------------------------------------------------------------------------------------------
# The encoder-decoder interface
# ---------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """Base class of encoders: ``forward(X, valid_len=None) -> enc_outputs``."""

    def forward(self, X: torch.Tensor, valid_len: torch.Tensor | None = None):
        raise NotImplementedError


class Decoder(nn.Module):
    """Base class of decoders: ``init_state``, then ``forward(X, state) -> (logits, state)``."""

    def init_state(self, enc_outputs, enc_valid_len: torch.Tensor | None = None):
        """Turn the encoder's outputs into the decoder's first state."""
        raise NotImplementedError

    def forward(self, X: torch.Tensor, state):
        raise NotImplementedError

    def reorder_state(self, state, index: torch.Tensor):
        """Rows ``index`` of every batch-first tensor in ``state`` (used by beam search).

        Override this when the state holds tensors whose batch dimension is not the first.
        """
        return map_tensors(state, lambda t: t.index_select(0, index))


class EncoderDecoder(nn.Module):
    """An encoder and a decoder; ``forward(enc_X, dec_X, enc_valid_len)`` returns the logits.

    ``dec_X`` is the decoder input under teacher forcing (``<bos>`` then the target shifted by
    one); the result has shape ``(batch, dec_steps, tgt_vocab)``.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, enc_X, dec_X, enc_valid_len=None):
        enc_outputs = self.encoder(enc_X, enc_valid_len)
        state = self.decoder.init_state(enc_outputs, enc_valid_len)
        return self.decoder(dec_X, state)[0]


# ---------------------------------------------------------------------------------------------
# The GRU encoder-decoder of chapter 5b
# ---------------------------------------------------------------------------------------------


class Seq2SeqEncoder(Encoder):
    """Embedding + multi-layer GRU. Returns ``(outputs (B, T, H), state (layers, B, H))``.

    With ``valid_len`` the GRU reads only the valid tokens (a packed sequence): the state is the
    one after each sentence's last token (its ``<eos>``), however much padding follows, and the
    outputs at padded positions are zeros. Without it, the GRU also reads the padding (as d2l).
    """

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size, num_hiddens, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, X, valid_len=None):
        embs = self.embedding(X)
        if valid_len is None:
            return self.rnn(embs)
        if int(valid_len.min()) < 1:
            raise ValueError("Every source needs a valid length of at least 1 (its <eos>).")
        packed = nn.utils.rnn.pack_padded_sequence(embs, valid_len.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        outputs, state = self.rnn(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True,
                                                      total_length=X.shape[1])
        return outputs, state


class Seq2SeqDecoder(Decoder):
    """Embedding + multi-layer GRU + output layer, started from the encoder's final state.

    Every step's input is the embedded previous token concatenated with the context, the
    encoder's final hidden state of the top layer (the same vector at every step). The state is
    ``(context (B, H), hidden (layers, B, H))``.
    """

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def init_state(self, enc_outputs, enc_valid_len=None):
        _, hidden = enc_outputs
        return hidden[-1], hidden

    def forward(self, X, state):
        context, hidden = state
        embs = self.embedding(X)
        inputs = torch.cat([embs, context[:, None, :].expand(-1, embs.shape[1], -1)], dim=-1)
        outputs, hidden = self.rnn(inputs, hidden)
        return self.dense(outputs), (context, hidden)

    def reorder_state(self, state, index):
        context, hidden = state
        return context.index_select(0, index), hidden.index_select(1, index)


def make_gru_seq2seq(src_vocab_size, tgt_vocab_size, embed_size=256, num_hiddens=256,
                     num_layers=2, dropout=0.2) -> EncoderDecoder:
    """The chapter's GRU translator: :class:`Seq2SeqEncoder` + :class:`Seq2SeqDecoder`."""
    return EncoderDecoder(
        Seq2SeqEncoder(src_vocab_size, embed_size, num_hiddens, num_layers, dropout),
        Seq2SeqDecoder(tgt_vocab_size, embed_size, num_hiddens, num_layers, dropout),
    )


# ---------------------------------------------------------------------------------------------
# The Bahdanau translator (a GRU encoder-decoder with additive attention)
# ---------------------------------------------------------------------------------------------


class BahdanauDecoder(Decoder):
    """GRU decoder with Bahdanau attention over the encoder's outputs.

    At every step the query is the top layer's previous hidden state, the keys and values are
    the encoder's outputs (padding masked by ``enc_valid_len``), and the GRU reads the context
    concatenated with the embedded previous token. The state is ``(enc_outputs, keys_proj,
    hidden (layers, batch, H), enc_valid_len)``; the keys are projected once per sentence.
    ``self.attention_weights`` holds the weights of the latest call, ``(batch, steps, src_steps)``.
    """

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0.0):
        super().__init__()
        self.attention = AdditiveAttention(num_hiddens, num_hiddens, num_hiddens, dropout)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.dense = nn.Linear(num_hiddens, vocab_size)
        self.attention_weights: torch.Tensor | None = None

    def init_state(self, enc_outputs, enc_valid_len=None):
        outputs, hidden = enc_outputs
        return outputs, self.attention.W_k(outputs), hidden, enc_valid_len

    def forward(self, X, state):
        enc_outputs, keys_proj, hidden, enc_valid_len = state
        embs = self.embedding(X)  # (B, T, E)
        outputs, weights = [], []
        for t in range(embs.shape[1]):
            query = self.attention.W_q(hidden[-1][:, None, :])  # (B, 1, H)
            context = self.attention.attend(query, keys_proj, enc_outputs, enc_valid_len)
            out, hidden = self.rnn(torch.cat([context, embs[:, t : t + 1]], dim=-1), hidden)
            outputs.append(out)
            weights.append(self.attention.attention_weights)
        self.attention_weights = torch.cat(weights, dim=1)
        return self.dense(torch.cat(outputs, dim=1)), (enc_outputs, keys_proj, hidden, enc_valid_len)

    def reorder_state(self, state, index):
        enc_outputs, keys_proj, hidden, enc_valid_len = state
        return (enc_outputs.index_select(0, index), keys_proj.index_select(0, index),
                hidden.index_select(1, index),
                None if enc_valid_len is None else enc_valid_len.index_select(0, index))


def make_bahdanau_seq2seq(src_vocab_size, tgt_vocab_size, embed_size=256, num_hiddens=256,
                          num_layers=2, dropout=0.2) -> EncoderDecoder:
    """The attention translator of chapter 6: the packed GRU encoder + :class:`BahdanauDecoder`."""
    return EncoderDecoder(
        Seq2SeqEncoder(src_vocab_size, embed_size, num_hiddens, num_layers, dropout),
        BahdanauDecoder(tgt_vocab_size, embed_size, num_hiddens, num_layers, dropout),
    )


# ---------------------------------------------------------------------------------------------
# Masked loss and teacher forcing
# ---------------------------------------------------------------------------------------------


def sequence_mask(X: torch.Tensor, valid_len: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """Copy of ``X`` (batch, steps, ...) with every position at or after ``valid_len`` set to ``value``."""
    steps = torch.arange(X.shape[1], device=X.device)
    mask = steps[None, :] < valid_len[:, None].to(X.device)
    X = X.clone()
    X[~mask] = value
    return X


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                         valid_len: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the valid tokens only (padding after ``valid_len`` is ignored).

    ``logits`` (B, T, V), ``labels`` (B, T), ``valid_len`` (B,). Equals
    ``F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=pad)`` when the padded
    positions hold ``pad``.
    """
    losses = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    weights = sequence_mask(torch.ones_like(losses), valid_len)
    num_valid = weights.sum()
    if num_valid == 0:
        raise ValueError("Every valid length is 0: there is no token to compute a loss on.")
    return (losses * weights).sum() / num_valid


class MaskedCrossEntropy(nn.Module):
    """The seq2seq loss for :func:`helpers.training.fit`: ``loss(logits, labels)``.

    Positions whose label is ``pad`` do not count (``build_array_nmt`` pads only after the
    valid tokens, so this is :func:`masked_cross_entropy` with ``valid_len = (labels != pad).sum(1)``).
    """

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, logits, labels):
        return masked_cross_entropy(logits, labels, (labels != self.pad).sum(dim=1))


def teacher_forcing_input(Y: torch.Tensor, bos: int) -> torch.Tensor:
    """The decoder input under teacher forcing: ``<bos>`` then ``Y`` without its last token."""
    return torch.cat([torch.full_like(Y[:, :1], bos), Y[:, :-1]], dim=1)


def teacher_forcing_batch(bos: int):
    """The split hook (see :func:`helpers.training.split_batch`) that trains a translator.

    An NMT batch ``(src, src_valid_len, tgt, tgt_valid_len)`` becomes the model's inputs
    ``(src, teacher_forcing_input(tgt, bos), src_valid_len)`` and the target ``tgt``; the batch
    size is the number of sentence pairs. Use it as ``fit(..., split_batch=teacher_forcing_batch(bos))``.
    """

    def split(batch) -> Batch:
        src, src_valid_len, tgt, _ = batch
        return Batch((src, teacher_forcing_input(tgt, bos), src_valid_len), tgt, len(src))

    return split


class BucketLoader:
    """Translation minibatches of pairs with similar target lengths, trimmed of extra padding.

    Every epoch the pairs are shuffled, sorted (stably) by target length and cut into batches
    of ``batch_size``, which are visited in a random order. Each batch is cut to its longest
    source and target, so little time goes into padding. Yields
    ``(src, src_valid_len, tgt, tgt_valid_len)`` like :func:`helpers.datasets.load_fra_eng`.
    """

    def __init__(self, src, src_valid_len, tgt, tgt_valid_len, batch_size: int, seed: int = 0):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.arrays = (src, src_valid_len, tgt, tgt_valid_len)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.arrays[0]) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        src, src_valid_len, tgt, tgt_valid_len = self.arrays
        perm = torch.randperm(len(src), generator=self.generator)
        order = perm[torch.sort(tgt_valid_len[perm], stable=True).indices]
        batches = order.split(self.batch_size)
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            idx = batches[i]
            src_len, tgt_len = int(src_valid_len[idx].max()), int(tgt_valid_len[idx].max())
            yield src[idx, :src_len], src_valid_len[idx], tgt[idx, :tgt_len], tgt_valid_len[idx]


def train_seq2seq(model: nn.Module, train_iter: Iterable, tgt_vocab, num_epochs: int,
                  lr: float = 0.005, grad_clip: float | None = 1.0, device=None,
                  **fit_kwargs) -> History:
    """Train an :class:`EncoderDecoder` with Adam, teacher forcing and the masked loss.

    ``train_iter`` yields ``(src, src_valid_len, tgt, tgt_valid_len)`` as from
    :func:`helpers.datasets.load_fra_eng`; :func:`teacher_forcing_batch` turns each into the
    model's inputs and the target. The rest goes to :func:`helpers.training.fit`
    (progress bar, live plot; e.g. ``on_epoch_end``, ``verbose``). ``train_loss`` is the mean
    cross-entropy per target token. Returns the :class:`~helpers.training.History`.
    """
    optimizer = make_optimizer("adam", model.parameters(), lr)
    return fit(model, MaskedCrossEntropy(tgt_vocab["<pad>"]), optimizer, train_iter, num_epochs,
               device=device, grad_clip=grad_clip, split_batch=teacher_forcing_batch(tgt_vocab["<bos>"]),
               **fit_kwargs)


# ---------------------------------------------------------------------------------------------
# Decoding: greedy search and beam search
# ---------------------------------------------------------------------------------------------


def _cut_at_eos(rows: list[list[int]], eos: int) -> list[list[int]]:
    return [row[: row.index(eos)] if eos in row else row for row in rows]


def _check_decoding_args(src, max_len):
    if src.ndim != 2:
        raise ValueError(f"src must be a (batch, steps) tensor of token ids, got shape {tuple(src.shape)}.")
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}.")


@torch.no_grad()
def greedy_search(model: EncoderDecoder, src: torch.Tensor, src_valid_len: torch.Tensor | None,
                  bos: int, eos: int, max_len: int) -> list[list[int]]:
    """Translate a batch by picking the most probable token at every step.

    Returns, per source row, the predicted token ids without ``<eos>`` (at most ``max_len``).
    Decoding stops early when every row has produced ``<eos>``.
    """
    _check_decoding_args(src, max_len)
    was_training = model.training
    model.eval()
    device = model_device(model)
    src = src.to(device)
    src_valid_len = None if src_valid_len is None else src_valid_len.to(device)
    state = model.decoder.init_state(model.encoder(src, src_valid_len), src_valid_len)
    Y = torch.full((len(src), 1), bos, dtype=torch.long, device=device)
    finished = torch.zeros(len(src), dtype=torch.bool, device=device)
    steps = []
    for _ in range(max_len):
        logits, state = model.decoder(Y, state)
        Y = F.log_softmax(logits[:, -1], dim=-1).argmax(dim=-1, keepdim=True)
        steps.append(Y)
        finished |= Y[:, 0] == eos
        if finished.all():
            break
    model.train(was_training)
    return _cut_at_eos(torch.cat(steps, dim=1).tolist(), eos)


@dataclass
class Hypothesis:
    """One beam-search result: token ids (without ``<eos>``), log-probability and final score."""

    tokens: list[int]
    log_prob: float
    score: float


@torch.no_grad()
def beam_search(model: EncoderDecoder, src: torch.Tensor, src_valid_len: torch.Tensor | None,
                bos: int, eos: int, max_len: int, beam_size: int = 4, alpha: float = 0.75,
                return_all: bool = False):
    """Translate a batch with beam search: keep the ``beam_size`` best prefixes at every step.

    A prefix's log-probability is the sum of its tokens' log-probabilities. A beam that emits
    ``<eos>`` is finished and keeps its score. At the end the best of the ``beam_size`` beams
    by ``log_prob / L**alpha`` (``L`` counts the tokens including ``<eos>``; d2l's length
    penalty) is returned. All sentences of the batch are searched together: the ``B * k``
    beams are one decoder batch, and states move between beams with ``decoder.reorder_state``.
    With ``beam_size=1`` this is exactly :func:`greedy_search`.

    Returns a list of token-id lists (best per row), or with ``return_all=True`` a list per row
    of every final beam as :class:`Hypothesis`, best first.
    """
    _check_decoding_args(src, max_len)
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive integer, got {beam_size!r}.")
    was_training = model.training
    model.eval()
    device = model_device(model)
    src = src.to(device)
    src_valid_len = None if src_valid_len is None else src_valid_len.to(device)
    B, k = len(src), beam_size
    state = model.decoder.init_state(model.encoder(src, src_valid_len), src_valid_len)
    state = model.decoder.reorder_state(state, torch.arange(B, device=device).repeat_interleave(k))
    scores = torch.full((B, k), -math.inf, device=device)
    scores[:, 0] = 0.0  # all beams start as the same empty prefix: keep only one of them
    tokens = torch.empty((B * k, 0), dtype=torch.long, device=device)
    lengths = torch.zeros(B * k, device=device)
    finished = torch.zeros(B * k, dtype=torch.bool, device=device)
    Y = torch.full((B * k, 1), bos, dtype=torch.long, device=device)
    for _ in range(max_len):
        logits, state = model.decoder(Y, state)
        log_probs = F.log_softmax(logits[:, -1], dim=-1)
        vocab_size = log_probs.shape[-1]
        # A finished beam may only "emit" <eos> again, at no cost: it stays as it is.
        done_row = torch.full((vocab_size,), -math.inf, device=device)
        done_row[eos] = 0.0
        log_probs = torch.where(finished[:, None], done_row, log_probs)
        # Two stages: each beam's k best tokens, then the k best of those k * k candidates.
        # (A beam wider than the vocabulary keeps some impossible beams at score -inf.)
        width = min(k, vocab_size)
        top_lp, top_tok = log_probs.topk(width, dim=-1)  # (B*k, width)
        cand = (scores.reshape(B * k, 1) + top_lp).reshape(B, k * width)
        scores, best = cand.topk(k, dim=-1)  # (B, k)
        parent = (torch.arange(B, device=device)[:, None] * k + best // width).reshape(-1)
        new_tok = top_tok.reshape(B, k * width).gather(1, best).reshape(-1)
        tokens = torch.cat([tokens[parent], new_tok[:, None]], dim=1)
        lengths = lengths[parent] + (~finished[parent]).float()
        finished = finished[parent] | (new_tok == eos)
        state = model.decoder.reorder_state(state, parent)
        Y = new_tok[:, None]
        if finished.all():
            break
    model.train(was_training)
    final = scores / lengths.reshape(B, k).clamp(min=1) ** alpha
    rows = _cut_at_eos(tokens.tolist(), eos)
    if not return_all:
        best_beam = final.argmax(dim=1).tolist()
        return [rows[b * k + j] for b, j in enumerate(best_beam)]
    results = []
    for b in range(B):
        hyps = [Hypothesis(rows[b * k + j], scores[b, j].item(), final[b, j].item())
                for j in range(k) if math.isfinite(scores[b, j].item())]
        results.append(sorted(hyps, key=lambda h: h.score, reverse=True))
    return results


def encode_sentences(sentences: Sequence[str], src_vocab, num_steps: int):
    """Preprocess and tokenize English sentences into ``(src (N, num_steps), valid_len (N,))``."""
    from helpers.text import build_array_nmt, preprocess_nmt

    if isinstance(sentences, str):
        sentences = [sentences]
    lines = [preprocess_nmt(s).split() for s in sentences]
    empty = [i for i, line in enumerate(lines) if not line]
    if empty:
        raise ValueError(f"Sentence {empty[0]} is empty; give at least one word to translate.")
    return build_array_nmt(lines, src_vocab, num_steps)


def translate(model: EncoderDecoder, sentences: Sequence[str] | str, src_vocab, tgt_vocab,
              num_steps: int, beam_size: int = 1, alpha: float = 0.75,
              max_len: int | None = None) -> list[str]:
    """Translate English sentences (strings) into French strings (tokens joined by spaces).

    ``beam_size=1`` is greedy search. Words outside the source vocabulary become ``<unk>``.
    """
    src, valid_len = encode_sentences(sentences, src_vocab, num_steps)
    ids = decode(model, src, valid_len, tgt_vocab, max_len or num_steps, beam_size, alpha)
    return [" ".join(tgt_vocab.to_tokens(row)) for row in ids]


def decode(model, src, src_valid_len, tgt_vocab, max_len, beam_size=1, alpha=0.75):
    """Greedy search (``beam_size=1``) or beam search with the target vocabulary's bos/eos."""
    bos, eos = tgt_vocab["<bos>"], tgt_vocab["<eos>"]
    if beam_size == 1:
        return greedy_search(model, src, src_valid_len, bos, eos, max_len)
    return beam_search(model, src, src_valid_len, bos, eos, max_len, beam_size, alpha)


# ---------------------------------------------------------------------------------------------
# BLEU
# ---------------------------------------------------------------------------------------------


def _tokens(text: str | Sequence[str]) -> list[str]:
    return text.split() if isinstance(text, str) else list(text)


def ngram_precision(pred: str | Sequence[str], label: str | Sequence[str], n: int) -> float:
    """Clipped n-gram precision: matched n-grams of ``pred`` (each counted at most as often as
    in ``label``) over the number of n-grams of ``pred``; 0 when ``pred`` has none."""
    pred, label = _tokens(pred), _tokens(label)
    num_pred = len(pred) - n + 1
    if num_pred <= 0:
        return 0.0
    label_counts = collections.Counter(tuple(label[i : i + n]) for i in range(len(label) - n + 1))
    matches = 0
    for i in range(num_pred):
        gram = tuple(pred[i : i + n])
        if label_counts[gram] > 0:
            matches += 1
            label_counts[gram] -= 1
    return matches / num_pred


def bleu(pred: str | Sequence[str], label: str | Sequence[str], k: int = 2) -> float:
    """Sentence BLEU as in d2l/nndl: ``exp(min(0, 1 - len_label/len_pred)) * prod_n p_n^(1/2^n)``
    for ``n = 1..k``. Strings are split on spaces. An empty prediction scores 0."""
    pred, label = _tokens(pred), _tokens(label)
    if k < 1:
        raise ValueError(f"k (the longest n-gram) must be at least 1, got {k}.")
    if not pred:
        return 0.0
    score = math.exp(min(0.0, 1 - len(label) / len(pred)))
    for n in range(1, k + 1):
        score *= ngram_precision(pred, label, n) ** (0.5**n)
    return score


BLEU_SETTINGS = dict(tokenize="13a", lowercase=False, smooth_method="exp", max_ngram_order=4,
                     force=True)
"""sacrebleu settings of :func:`corpus_bleu`: its defaults (4-grams, 13a tokenizer, exponential
smoothing, case-sensitive), with ``force=True`` because our text is already tokenized by
:func:`helpers.text.preprocess_nmt` (spaces before punctuation), which sacrebleu would warn about."""


@dataclass
class CorpusBLEU:
    """A corpus BLEU from sacrebleu: the score (0-100), its parts and the signature."""

    score: float
    precisions: list[float]
    brevity_penalty: float
    hyp_len: int
    ref_len: int
    signature: str

    def __str__(self) -> str:
        precisions = "/".join(f"{p:.1f}" for p in self.precisions)
        return (f"BLEU {self.score:.2f} ({precisions}, BP {self.brevity_penalty:.3f}, "
                f"hyp_len {self.hyp_len}, ref_len {self.ref_len}) {self.signature}")


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> CorpusBLEU:
    """Standard corpus BLEU (sacrebleu, one reference per hypothesis, :data:`BLEU_SETTINGS`).

    Unlike the mean of sentence BLEUs, n-gram matches and lengths are summed over the whole
    corpus before the precisions and the brevity penalty are computed, so the number is
    comparable with published results.
    """
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references; "
                         "give one reference per hypothesis.")
    if not hypotheses:
        raise ValueError("No hypotheses: give at least one translation to score.")
    metric = BLEU(**BLEU_SETTINGS)
    result = metric.corpus_score(list(hypotheses), [list(references)])
    return CorpusBLEU(result.score, list(result.precisions), result.bp, result.sys_len,
                      result.ref_len, str(metric.get_signature()))


@dataclass
class TestScore:
    """:func:`evaluate_bleu`'s result: corpus BLEU on the test set, with the translations."""

    bleu: CorpusBLEU
    mean_sentence_bleu: float
    num_pairs: int
    beam_size: int
    seconds: float
    hypotheses: list[str] = field(repr=False)
    references: list[str] = field(repr=False)

    @property
    def score(self) -> float:
        return self.bleu.score


def evaluate_bleu(model: EncoderDecoder, test, tgt_vocab, max_len: int, beam_size: int = 1,
                  alpha: float = 0.75, batch_size: int = 500) -> TestScore:
    """Translate the whole held-out test set and score it with :func:`corpus_bleu`.

    ``test`` is the :class:`helpers.datasets.NMTTestSet` from ``load_fra_eng``; references are
    its target sentences (one per pair). Also reports the mean d2l sentence BLEU (k=2).
    """
    start = time.perf_counter()
    ids: list[list[int]] = []
    for i in range(0, len(test), batch_size):
        ids += decode(model, test.src[i : i + batch_size], test.src_valid_len[i : i + batch_size],
                      tgt_vocab, max_len, beam_size, alpha)
    hypotheses = [" ".join(tgt_vocab.to_tokens(row)) for row in ids]
    references = [" ".join(tokens) for tokens in test.target]
    seconds = time.perf_counter() - start
    mean_bleu = sum(bleu(h, r, k=2) for h, r in zip(hypotheses, references, strict=True)) / len(test)
    return TestScore(corpus_bleu(hypotheses, references), mean_bleu, len(test), beam_size, seconds,
                     hypotheses, references)
