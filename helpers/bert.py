"""BERT for chapter 10: the model, masked language modelling, pre-training and fine-tuning.

A small BERT (Devlin et al. 2019) built from chapter 7's encoder blocks
(:class:`helpers.transformer.TransformerEncoderBlock`, GELU), with what BERT adds: segment
embeddings, **learned** position embeddings, the masked-language-model head (optionally tied to the
token embedding) and the next-sentence head on ``<cls>``. Pre-training data come from the shipped
WikiText-2 text (:func:`pretraining_corpus`), masked again every epoch by the vectorised
:func:`mask_tokens`; the MLM loss (:func:`mlm_loss`) counts only the chosen positions, never
padding. Fine-tuning puts a small head on ``<cls>`` (:class:`BERTClassifier`); a bag-of-words
classifier (:class:`BagOfWords`) is the baseline pre-training has to beat.

Model code only: no widgets, no ``matplotlib.pyplot`` (the explorers are in
:mod:`helpers.bert_explorer`).
"""

from __future__ import annotations

import copy
import math
import os
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from helpers.datasets import read_wikitext2
from helpers.text import (
    BERT_RESERVED_TOKENS,
    Vocab,
    get_tokens_and_segments,
    next_sentence_examples,
    tokenize,
)
from helpers.training import TrainingRun, model_device, training_device

PAD, MASK, CLS, SEP = BERT_RESERVED_TOKENS
MASK_RATIO = 0.15
MASK_SPLIT = (0.8, 0.1, 0.1)  # of the chosen positions: <mask>, a random token, unchanged
NSP_LABELS = ("random", "next")  # label 1: the second sentence really follows the first


# =============================================================================================
# The model
# =============================================================================================


class BERTEncoder(nn.Module):
    """Token + segment + learned position embeddings, LayerNorm, then ``num_layers`` encoder blocks.

    ``forward(tokens, segments, valid_lens)`` takes int64 ``(batch, steps)`` token ids and segment
    ids (0 for ``<cls> a <sep>``, 1 for ``b <sep>``) and the number of real tokens per example,
    and returns ``(batch, steps, num_hiddens)``: one vector per token, which depends on the whole
    input (padding keys are masked). Positions are learned embeddings, as in BERT, so at most
    ``max_len`` tokens fit.
    """

    def __init__(self, vocab_size: int, num_hiddens: int = 128, ffn_num_hiddens: int = 256,
                 num_heads: int = 2, num_layers: int = 2, dropout: float = 0.1, max_len: int = 64,
                 activation: str = "gelu") -> None:
        from helpers.transformer import TransformerEncoderBlock

        super().__init__()
        self.max_len = max_len
        self.token_embedding = nn.Embedding(vocab_size, num_hiddens)
        self.segment_embedding = nn.Embedding(2, num_hiddens)
        self.pos_embedding = nn.Parameter(torch.zeros(1, max_len, num_hiddens))
        self.embedding_norm = nn.LayerNorm(num_hiddens)
        self.dropout = nn.Dropout(dropout)
        self.blks = nn.ModuleList(
            TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout, activation)
            for _ in range(num_layers))  # fmt: skip
        init_bert_weights(self)

    def embed(self, tokens: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """The input representation: the sum of the three embeddings, normalised."""
        steps = tokens.shape[1]
        if steps > self.max_len:
            raise ValueError(f"The input has {steps} tokens but this BERT has position embeddings for "
                             f"{self.max_len}: shorten the input (truncate_pair) or build a larger max_len.")
        X = self.token_embedding(tokens) + self.segment_embedding(segments) + self.pos_embedding[:, :steps]
        return self.dropout(self.embedding_norm(X))

    def forward(self, tokens, segments, valid_lens=None):
        X = self.embed(tokens, segments)
        for blk in self.blks:
            X = blk(X, valid_lens)
        return X

    @property
    def attention_weights(self) -> list[torch.Tensor | None]:
        """Each block's self-attention weights ``(batch, heads, steps, steps)`` of the last call."""
        return [blk.attention.attention_weights for blk in self.blks]


def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: weights and embeddings ``N(0, 0.02)``, biases 0, LayerNorm 1 and 0."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if not isinstance(module, (nn.Linear, nn.Embedding, nn.LayerNorm)):
        for p in module.parameters(recurse=False):  # e.g. BERTEncoder's learned position embeddings
            nn.init.normal_(p, std=std)


def gather_positions(X: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``X[i, positions[i, j]]``: ``(batch, steps, h)`` and ``(batch, P)`` -> ``(batch, P, h)``."""
    rows = torch.arange(X.shape[0], device=X.device)[:, None]
    return X[rows, positions]


class MaskLM(nn.Module):
    """The masked-language-model head: dense + GELU + LayerNorm, then scores over the vocabulary.

    ``forward(X, pred_positions)`` reads the encoder's outputs only at ``pred_positions``
    ``(batch, P)`` and returns logits ``(batch, P, vocab_size)``. With ``tied_embedding`` (an
    ``nn.Embedding``) the output layer reuses the token embedding matrix (plus its own bias), as BERT
    does: a word's input and output vectors are the same parameters, which saves
    ``vocab_size * num_hiddens`` parameters and lets every input occurrence train the output too.
    """

    def __init__(self, vocab_size: int, num_hiddens: int, tied_embedding: nn.Embedding | None = None) -> None:
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(num_hiddens, num_hiddens), nn.GELU(),
                                       nn.LayerNorm(num_hiddens))
        self.tied_embedding = tied_embedding
        self.decoder = None if tied_embedding is not None else nn.Linear(num_hiddens, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        init_bert_weights(self.transform)
        if self.decoder is not None:
            init_bert_weights(self.decoder)

    def forward(self, X, pred_positions):
        return self.score(gather_positions(X, pred_positions))

    def score(self, H):
        """Vocabulary logits for encoder outputs ``H`` (..., h) that were already gathered."""
        H = self.transform(H)
        weight = self.tied_embedding.weight if self.tied_embedding is not None else self.decoder.weight
        return H @ weight.T + self.bias


class BERTModel(nn.Module):
    """The encoder with both pre-training heads.

    ``forward(tokens, segments, valid_lens, pred_positions=None)`` returns ``(encoded, mlm_logits,
    nsp_logits)``: the encoder's outputs ``(batch, steps, h)``; MLM logits ``(batch, P, vocab)`` at
    ``pred_positions`` (``None`` if not given); NSP logits ``(batch, 2)`` from the *pooler*
    (``tanh(W h_cls + b)``, which fine-tuning reuses) on the ``<cls>`` output. The attributes
    ``encoder``, ``pooler``, ``mlm`` and ``nsp`` are the parts.
    """

    def __init__(self, vocab_size: int, num_hiddens: int = 128, ffn_num_hiddens: int = 256,
                 num_heads: int = 2, num_layers: int = 2, dropout: float = 0.1, max_len: int = 64,
                 tie_weights: bool = True) -> None:
        super().__init__()
        self.config = dict(vocab_size=vocab_size, num_hiddens=num_hiddens, ffn_num_hiddens=ffn_num_hiddens,
                           num_heads=num_heads, num_layers=num_layers, dropout=dropout, max_len=max_len,
                           tie_weights=tie_weights)
        self.encoder = BERTEncoder(vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_layers, dropout,
                                   max_len)
        self.pooler = nn.Sequential(nn.Linear(num_hiddens, num_hiddens), nn.Tanh())
        self.mlm = MaskLM(vocab_size, num_hiddens, self.encoder.token_embedding if tie_weights else None)
        self.nsp = nn.Linear(num_hiddens, 2)
        init_bert_weights(self.pooler)
        init_bert_weights(self.nsp)

    def forward(self, tokens, segments, valid_lens=None, pred_positions=None):
        encoded = self.encoder(tokens, segments, valid_lens)
        mlm_logits = self.mlm(encoded, pred_positions) if pred_positions is not None else None
        nsp_logits = self.nsp(self.pooler(encoded[:, 0]))
        return encoded, mlm_logits, nsp_logits


def bert_parameter_count(vocab_size: int, num_hiddens: int, ffn_num_hiddens: int, num_layers: int,
                         max_len: int = 512, num_segments: int = 2) -> int:
    """Parameters of BERT's encoder and pooler, the count papers report (heads excluded).

    Embeddings ``(V + max_len + segments) h`` and their LayerNorm ``2h``; per layer the four
    ``h x h`` attention projections with biases ``4(h^2 + h)``, the FFN ``2 h f + f + h`` and two
    LayerNorms ``4h``; the pooler ``h^2 + h``. BERT-Base (V 30,522, h 768, f 3,072, 12 layers) has
    109,482,240; BERT-Large (h 1,024, f 4,096, 24 layers) 335,141,888.
    """
    h, f = num_hiddens, ffn_num_hiddens
    embeddings = (vocab_size + max_len + num_segments) * h + 2 * h
    layer = 4 * (h * h + h) + (2 * h * f + f + h) + 4 * h
    return embeddings + num_layers * layer + h * h + h


# =============================================================================================
# Masked language modelling
# =============================================================================================


@dataclass
class MaskedBatch:
    """What :func:`mask_tokens` returns for ``N`` sequences and ``P`` prediction slots each.

    ``tokens`` (N, L) the corrupted input; ``pred_positions``, ``mlm_labels`` (N, P) where the
    chosen positions are and their original ids (0 in unused slots); ``mlm_weights`` (N, P) 1.0
    for a used slot, 0.0 for padding; ``kinds`` (N, P) what happened to each chosen token: 0
    ``<mask>``, 1 a random token, 2 unchanged (-1 in unused slots).
    """

    tokens: torch.Tensor
    pred_positions: torch.Tensor
    mlm_labels: torch.Tensor
    mlm_weights: torch.Tensor
    kinds: torch.Tensor


def special_ids(vocab: Vocab) -> list[int]:
    """Ids never chosen for prediction: ``<pad>``, ``<mask>``, ``<cls>``, ``<sep>``."""
    return [vocab[tok] for tok in BERT_RESERVED_TOKENS]


def mask_tokens(tokens: torch.Tensor, valid_lens: torch.Tensor, vocab: Vocab,
                generator: torch.Generator | None = None, mask_ratio: float = MASK_RATIO,
                split: Sequence[float] = MASK_SPLIT, skip_unk: bool = True,
                num_slots: int | None = None) -> MaskedBatch:
    """Corrupt a batch of BERT inputs for masked language modelling, all rows at once.

    Row ``i`` gets ``max(1, round(mask_ratio * valid_lens[i]))`` prediction positions (as BERT's
    and d2l's data: a fixed share of each sequence), drawn uniformly without replacement among its
    ordinary tokens (never ``<cls>``, ``<sep>`` or padding; with ``skip_unk`` never ``<unk>``, see
    the chapter). Each chosen token becomes ``<mask>`` with probability ``split[0]``, a random
    ordinary token with ``split[1]``, or stays as it is with ``split[2]``. ``num_slots`` (default
    ``round(mask_ratio * L)``) is the width ``P`` of the prediction tensors.
    """
    if not 0 < mask_ratio < 1:
        raise ValueError(f"mask_ratio must be between 0 and 1, got {mask_ratio}.")
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1) > 1e-6:
        raise ValueError("split must be three probabilities (<mask>, random, unchanged) summing to 1, "
                         f"got {split}.")
    N, L = tokens.shape
    device = tokens.device
    P = num_slots if num_slots is not None else max(1, round(mask_ratio * L))
    if not 1 <= P <= L:
        raise ValueError(f"num_slots must be between 1 and the sequence length {L}, got {P}.")
    positions = torch.arange(L, device=device)
    candidate = positions[None, :] < valid_lens[:, None].to(device)
    candidate &= ~torch.isin(tokens, torch.tensor(special_ids(vocab), device=device))
    if skip_unk:
        candidate &= tokens != vocab.unk
    wanted = (valid_lens.to(device, torch.float64) * mask_ratio).round()  # float64: as Python's round
    wanted = wanted.clamp(min=1).long()
    count = torch.minimum(torch.minimum(wanted, candidate.sum(1)), torch.tensor(P, device=device))
    scores = torch.rand(N, L, generator=generator).to(device)
    scores = scores.masked_fill(~candidate, -1.0)
    order = scores.argsort(dim=1, descending=True)[:, :P]
    used = torch.arange(P, device=device)[None, :] < count[:, None]
    pred_positions = torch.where(used, order, L).sort(dim=1).values
    pred_positions = pred_positions.masked_fill(~used, 0)
    mlm_labels = torch.gather(tokens, 1, pred_positions).masked_fill(~used, 0)
    draw = torch.rand(N, P, generator=generator).to(device)
    kinds = (draw >= split[0]).long() + (draw >= split[0] + split[1]).long()
    kinds = kinds.masked_fill(~used, -1)
    first_ordinary = len(BERT_RESERVED_TOKENS) + 1  # <unk> and the reserved tokens come first
    random_ids = torch.randint(first_ordinary, len(vocab), (N, P), generator=generator).to(device)
    new_ids = torch.where(kinds == 0, vocab[MASK], torch.where(kinds == 1, random_ids, mlm_labels))
    corrupted = tokens.clone()
    rows = torch.arange(N, device=device)[:, None].expand(N, P)
    corrupted[rows[used], pred_positions[used]] = new_ids[used]
    return MaskedBatch(corrupted, pred_positions, mlm_labels, used.float(), kinds)


def mlm_loss(mlm_logits: torch.Tensor, mlm_labels: torch.Tensor, mlm_weights: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the chosen positions only: ``sum(w * ce) / sum(w)``.

    Unused prediction slots (weight 0) do not count, whatever their logits: a formulation that
    averages over all ``P`` slots (d2l's, which multiplies an already-averaged loss by the weights)
    lets padding dilute the loss of short sequences.
    """
    ce = F.cross_entropy(mlm_logits.reshape(-1, mlm_logits.shape[-1]), mlm_labels.reshape(-1),
                         reduction="none")
    weights = mlm_weights.reshape(-1)
    return (ce * weights).sum() / weights.sum().clamp(min=1)


# =============================================================================================
# Pre-training data: WikiText-2 paragraphs, sentence pairs, masking every epoch
# =============================================================================================


@dataclass
class PretrainingCorpus:
    """WikiText-2 (the shipped validation and test files) split by paragraph.

    ``train`` and ``heldout`` are lists of paragraphs, each a list of sentences (token lists);
    ``vocab`` is built from the training paragraphs only (``min_freq``), with BERT's reserved tokens.
    """

    vocab: Vocab
    train: list[list[list[str]]]
    heldout: list[list[list[str]]]


def pretraining_corpus(heldout_fraction: float = 0.1, min_freq: int = 5, seed: int = 0,
                       root: str | os.PathLike | None = None) -> PretrainingCorpus:
    """The paragraphs of both shipped WikiText-2 files, a seeded ``heldout_fraction`` held out."""
    paragraphs = [tokenize(p, "word") for split in ("val", "test") for p in read_wikitext2(split, root)]
    random.Random(seed).shuffle(paragraphs)
    num_heldout = round(heldout_fraction * len(paragraphs))
    heldout, train = paragraphs[:num_heldout], paragraphs[num_heldout:]
    vocab = Vocab([s for p in train for s in p], min_freq=min_freq, reserved_tokens=BERT_RESERVED_TOKENS)
    return PretrainingCorpus(vocab, train, heldout)


def pair_tensors(paragraphs, vocab: Vocab, max_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Next-sentence pairs of ``paragraphs`` as padded tensors (not yet masked).

    Each sentence is paired with its real successor or, with probability 1/2, a random sentence
    (:func:`helpers.text.next_sentence_examples`; pairs longer than ``max_len`` are skipped).
    Returns ``tokens``, ``segments`` (N, max_len), ``valid_lens`` and ``nsp_labels`` (N,; 1 = next).
    """
    rng = random.Random(seed)
    examples = [ex for p in paragraphs for ex in next_sentence_examples(p, paragraphs, max_len, rng)]
    n = len(examples)
    tokens = torch.full((n, max_len), vocab[PAD], dtype=torch.long)
    segments = torch.zeros((n, max_len), dtype=torch.long)
    valid_lens = torch.zeros(n, dtype=torch.long)
    for i, (toks, segs, _) in enumerate(examples):
        tokens[i, : len(toks)] = torch.tensor(vocab[toks])
        segments[i, : len(segs)] = torch.tensor(segs)
        valid_lens[i] = len(toks)
    nsp_labels = torch.tensor([int(is_next) for _, _, is_next in examples], dtype=torch.long)
    return dict(tokens=tokens, segments=segments, valid_lens=valid_lens, nsp_labels=nsp_labels)


def masked_examples(pairs: dict[str, torch.Tensor], vocab: Vocab, seed: int, skip_unk: bool = True
                    ) -> dict[str, torch.Tensor]:
    """``pairs`` with a fresh seeded masking: the inputs and targets of one epoch of pre-training."""
    masked = mask_tokens(pairs["tokens"], pairs["valid_lens"], vocab, torch.Generator().manual_seed(seed),
                         skip_unk=skip_unk)
    return dict(pairs, tokens=masked.tokens, pred_positions=masked.pred_positions,
                mlm_labels=masked.mlm_labels, mlm_weights=masked.mlm_weights)


def pretraining_losses(model: BERTModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """``(mlm_loss, nsp_loss, mlm_logits, nsp_logits)`` of ``model`` on one masked batch.

    The MLM head scores only the prediction slots in use (``mlm_weights`` 1), so ``mlm_logits`` is
    ``(number of chosen positions, vocab)``: the same loss as :func:`mlm_loss` over all slots, without
    computing vocabulary scores for the unused ones (a quarter of the head's work here).
    """
    encoded = model.encoder(batch["tokens"], batch["segments"], batch["valid_lens"])
    used = batch["mlm_weights"] > 0
    rows = torch.arange(len(used), device=used.device)[:, None].expand_as(used)
    mlm_logits = model.mlm.score(encoded[rows[used], batch["pred_positions"][used]])
    nsp_logits = model.nsp(model.pooler(encoded[:, 0]))
    return (F.cross_entropy(mlm_logits, batch["mlm_labels"][used]),
            F.cross_entropy(nsp_logits, batch["nsp_labels"]), mlm_logits, nsp_logits)


def batches(examples: dict[str, torch.Tensor], batch_size: int, generator: torch.Generator | None = None,
            bucket: int = 32):
    """Minibatches (dicts) of ``examples``, each cut to its longest sequence.

    Without a ``generator``: in order. With one: shuffled, then within each run of ``bucket``
    batches the examples are sorted by length, so a batch holds sequences of similar length and
    cutting off the common padding saves work (about a quarter of it for WikiText-2 pairs); the
    order of the batches is shuffled again.
    """
    n = len(examples["tokens"])
    if generator is None:
        groups = [torch.arange(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    else:
        order = torch.randperm(n, generator=generator)
        groups = []
        span = batch_size * max(1, bucket)
        for start in range(0, n, span):
            chunk = order[start:start + span]
            chunk = chunk[examples["valid_lens"][chunk].argsort(stable=True)]
            groups += list(chunk.split(batch_size))
        groups = [groups[i] for i in torch.randperm(len(groups), generator=generator).tolist()]
    for idx in groups:
        batch = {name: t[idx] for name, t in examples.items()}
        longest = int(batch["valid_lens"].max())
        for name in ("tokens", "segments"):
            batch[name] = batch[name][:, :longest]
        yield batch


@torch.no_grad()
def evaluate_pretraining(model: BERTModel, examples: dict[str, torch.Tensor], batch_size: int = 512,
                         unk: int = 0) -> dict[str, float]:
    """Held-out MLM loss and accuracy (all targets, and targets other than ``<unk>``) and NSP accuracy."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    sums = Counter()
    for batch in batches(examples, batch_size):
        batch = {k: v.to(device) for k, v in batch.items()}
        _, mlm_logits, nsp_logits = model(batch["tokens"], batch["segments"], batch["valid_lens"],
                                          batch["pred_positions"])
        w, labels = batch["mlm_weights"], batch["mlm_labels"]
        ce = F.cross_entropy(mlm_logits.transpose(1, 2), labels, reduction="none")
        hit = (mlm_logits.argmax(-1) == labels).float()
        known = w * (labels != unk).float()
        sums.update(loss=(ce * w).sum().item(), hits=(hit * w).sum().item(), n=w.sum().item(),
                    hits_known=(hit * known).sum().item(), n_known=known.sum().item(),
                    loss_known=(ce * known).sum().item(),
                    nsp=(nsp_logits.argmax(-1) == batch["nsp_labels"]).sum().item(),
                    pairs=len(batch["nsp_labels"]))
    model.train(was_training)
    return dict(mlm_loss=sums["loss"] / sums["n"], mlm_acc=sums["hits"] / sums["n"],
                mlm_loss_known=sums["loss_known"] / max(sums["n_known"], 1),
                mlm_acc_known=sums["hits_known"] / max(sums["n_known"], 1),
                nsp_acc=sums["nsp"] / sums["pairs"])


def unigram_baseline(train_labels: torch.Tensor, train_weights: torch.Tensor,
                     examples: dict[str, torch.Tensor],
                     vocab_size: int, unk: int = 0) -> dict[str, float]:
    """The model that ignores the context: predict every masked word from the training targets' frequencies.

    Its loss is the cross-entropy of the held-out targets under those frequencies (add-one
    smoothed, so an unseen word costs a finite amount); its accuracy is how often the most
    frequent training target is right. The ``_known`` values leave out ``<unk>`` targets and
    renormalise the frequencies over the other words. Same keys as :func:`evaluate_pretraining`'s
    MLM values, plus the two guesses.
    """
    counts = torch.bincount(train_labels[train_weights > 0], minlength=vocab_size).double() + 1
    known_counts = counts.clone()
    known_counts[unk] = 0  # without <unk> targets: the same frequencies over the known words
    log_p, log_p_known = (counts / counts.sum()).log(), (known_counts / known_counts.sum()).log()
    targets = examples["mlm_labels"][examples["mlm_weights"] > 0]
    known = targets[targets != unk]
    guess, guess_known = int(counts.argmax()), int(known_counts.argmax())
    return dict(mlm_loss=-log_p[targets].mean().item(), mlm_acc=(targets == guess).double().mean().item(),
                mlm_loss_known=-log_p_known[known].mean().item(),
                mlm_acc_known=(known == guess_known).double().mean().item(),
                guess=guess, guess_known=guess_known)


def warmup_linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """BERT's schedule, stepped every batch: linear warm-up to the learning rate, then linear decay to 0."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def pretrain_bert(model: BERTModel, corpus: PretrainingCorpus, num_epochs: int, batch_size: int = 128,
                  lr: float = 2e-3, warmup: float = 0.1, weight_decay: float = 0.01, seed: int = 0,
                  skip_unk: bool = True, heldout: dict[str, torch.Tensor] | None = None,
                  grad_clip: float = 1.0, nsp_weight: float = 1.0, device=None, **run_options) -> TrainingRun:
    """Pre-train ``model`` with MLM + NSP on ``corpus.train``; return the finished :class:`TrainingRun`.

    Every epoch draws new next-sentence pairs and a new masking (seeded by ``seed`` and the
    epoch), so the model never sees the same corrupted input twice. AdamW with BERT's schedule
    (``warmup`` of the steps linear warm-up, then linear decay), gradients clipped to ``grad_clip``;
    the loss is ``mlm_loss + nsp_weight * nsp_loss`` (BERT: weight 1).
    Recorded per epoch: the training ``mlm_loss`` and ``nsp_loss``, and with ``heldout`` (from
    :func:`heldout_examples`) the held-out ``val_mlm_loss``, ``val_mlm_acc`` (targets other than
    ``<unk>``) and ``val_nsp_acc``. ``run_options`` go to :class:`TrainingRun` (``live``,
    ``progress``, ``verbose``). The model trains on ``device`` (default: the one :func:`helpers.setup`
    chose).
    """
    device = training_device(device)
    model.to(device)
    max_len = model.encoder.max_len
    # Each epoch's pairs are drawn up front: their number varies (long pairs are skipped), and the
    # schedule must end exactly at the last step.
    epoch_pairs = [pair_tensors(corpus.train, corpus.vocab, max_len, seed + epoch)
                   for epoch in range(num_epochs)]
    steps = [math.ceil(len(pairs["tokens"]) / batch_size) for pairs in epoch_pairs]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = warmup_linear_schedule(optimizer, max(1, round(warmup * sum(steps))), sum(steps))
    gen = torch.Generator().manual_seed(seed)
    run = TrainingRun(num_epochs, max(steps), optimizers=optimizer, **run_options)
    model.train()
    for epoch in run.epochs():
        pairs = epoch_pairs[epoch - 1]
        examples = masked_examples(pairs, corpus.vocab, seed=seed * 1000 + epoch, skip_unk=skip_unk)
        for batch in batches(examples, batch_size, gen):
            batch = {k: v.to(device) for k, v in batch.items()}
            l_mlm, l_nsp, _, _ = pretraining_losses(model, batch)
            optimizer.zero_grad(set_to_none=True)
            (l_mlm + nsp_weight * l_nsp).backward()
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            run.step(len(batch["tokens"]), mlm_loss=l_mlm, nsp_loss=l_nsp)
        values = {}
        if heldout is not None:
            metrics = evaluate_pretraining(model, heldout, unk=corpus.vocab.unk)
            values = dict(val_mlm_loss=metrics["mlm_loss_known"], val_mlm_acc=metrics["mlm_acc_known"],
                          val_nsp_acc=metrics["nsp_acc"])
        run.end_epoch(**values)
    model.eval()
    return run


SMALL_BERT = dict(num_hiddens=128, ffn_num_hiddens=256, num_heads=2, num_layers=2, dropout=0.0, max_len=64)
"""Chapter 10's model: about 1.1M parameters with tied weights (most of them the 6,436 x 128 embedding)."""
PRETRAINING = dict(full_epochs=16, fast_epochs=4, fast_paragraphs=1000, batch_size=128, lr=3e-3, warmup=0.1,
                   nsp_weight=2.0)
"""Chapter 10's pre-training recipe: epochs in full and fast mode (fast mode trains on the first
``fast_paragraphs`` training paragraphs), batch size, peak learning rate, warm-up share and the
weight of the NSP loss."""


def pretrain_small_bert(corpus: PretrainingCorpus, fast: bool | None = None, seed: int = 0, device=None,
                        heldout: dict[str, torch.Tensor] | None = None, **run_options
                        ) -> tuple[BERTModel, TrainingRun]:
    """Chapter 10's pre-training in one call: :data:`SMALL_BERT` trained with :data:`PRETRAINING`.

    ``fast=None`` follows ``COURSE_FAST``. Chapter 10b uses it when chapter 10's saved model is
    missing, so both chapters get the same model from the same seed.
    """
    from helpers.config import is_fast

    fast = is_fast() if fast is None else fast
    recipe = PRETRAINING
    if fast:
        corpus = PretrainingCorpus(corpus.vocab, corpus.train[: recipe["fast_paragraphs"]], corpus.heldout)
    torch.manual_seed(seed)
    device = training_device(device)
    model = BERTModel(len(corpus.vocab), **SMALL_BERT).to(device)
    run = pretrain_bert(model, corpus, recipe["fast_epochs" if fast else "full_epochs"],
                        batch_size=recipe["batch_size"], lr=recipe["lr"], warmup=recipe["warmup"], seed=seed,
                        nsp_weight=recipe["nsp_weight"], heldout=heldout, device=device, **run_options)
    return model, run


def heldout_examples(corpus: PretrainingCorpus, max_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The held-out paragraphs' sentence pairs with one fixed masking, ``<unk>`` targets included.

    Including ``<unk>`` lets an evaluation report accuracy both with and without those targets.
    """
    return masked_examples(pair_tensors(corpus.heldout, corpus.vocab, max_len, seed), corpus.vocab,
                           seed=seed, skip_unk=False)


# =============================================================================================
# Using a pre-trained model: fill in the blank, contextual vectors, saving
# =============================================================================================


def encode_pair(vocab: Vocab, tokens_a: Sequence[str], tokens_b: Sequence[str] | None = None,
                device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One example as a batch of one: ``(tokens (1, T), segments (1, T), valid_lens (1,))``."""
    toks, segs = get_tokens_and_segments(tokens_a, tokens_b)
    return (torch.tensor([vocab[toks]], device=device), torch.tensor([segs], device=device),
            torch.tensor([len(toks)], device=device))


@torch.no_grad()
def fill_mask(model: BERTModel, vocab: Vocab, tokens: Sequence[str], top_k: int = 5
              ) -> list[tuple[int, list[tuple[str, float]]]]:
    """The model's ``top_k`` words (with probabilities) for every ``<mask>`` in one sentence.

    ``tokens`` is one tokenized sentence containing ``<mask>`` (or ``[MASK]``) at least once; returns
    ``[(position in tokens, [(word, probability), ...]), ...]``. Special tokens are never proposed.
    """
    tokens = [MASK if tok.upper() == "[MASK]" else tok for tok in tokens]
    where = [i for i, tok in enumerate(tokens) if tok == MASK]
    if not where:
        raise ValueError("The sentence has no <mask> (or [MASK]) to fill in: put one where a word should go.")
    if len(tokens) + 2 > model.encoder.max_len:
        raise ValueError(f"The sentence has {len(tokens)} tokens; this model reads at most "
                         f"{model.encoder.max_len - 2} (plus <cls> and <sep>): shorten it.")
    was_training = model.training
    model.eval()
    device = model_device(model)
    X, segments, valid_lens = encode_pair(vocab, tokens, device=device)
    positions = torch.tensor([[i + 1 for i in where]], device=device)  # +1 for <cls>
    _, logits, _ = model(X, segments, valid_lens, positions)
    model.train(was_training)
    logits[..., special_ids(vocab) + [vocab.unk]] = -math.inf
    probs = logits.softmax(-1)[0]
    top = probs.topk(min(top_k, len(vocab) - len(special_ids(vocab)) - 1), dim=-1)
    return [(pos, [(vocab.to_tokens(int(i)), float(p))
                   for p, i in zip(top.values[j], top.indices[j], strict=True)])
            for j, pos in enumerate(where)]


@torch.no_grad()
def token_vectors(model: BERTModel, vocab: Vocab, tokens: Sequence[str], tokens_b: Sequence[str] | None = None
                  ) -> torch.Tensor:
    """The encoder's output for each token of ``<cls> tokens <sep> [tokens_b <sep>]``, ``(T, h)``."""
    was_training = model.training
    model.eval()
    X, segments, valid_lens = encode_pair(vocab, tokens, tokens_b, device=model_device(model))
    vectors = model.encoder(X, segments, valid_lens)[0]
    model.train(was_training)
    return vectors


def save_pretrained(path: str | os.PathLike, model: BERTModel, vocab: Vocab, **info) -> None:
    """Save the weights, the configuration and the vocabulary: tensors, numbers and strings only.

    :func:`load_pretrained` reads the file with ``torch.load(..., weights_only=True)``, which
    refuses to unpickle arbitrary objects, so a file from anywhere cannot run code.
    """
    torch.save(dict(state_dict=model.state_dict(), config=model.config, idx_to_token=list(vocab.idx_to_token),
                    info=info), path)


def vocab_from_tokens(idx_to_token: Sequence[str]) -> Vocab:
    """A :class:`Vocab` with exactly these tokens at these indices (as saved by :func:`save_pretrained`)."""
    vocab = Vocab()
    vocab.idx_to_token = list(idx_to_token)
    vocab.token_to_idx = {tok: i for i, tok in enumerate(vocab.idx_to_token)}
    return vocab


def load_pretrained(path: str | os.PathLike, device=None) -> tuple[BERTModel, Vocab, dict]:
    """``(model, vocab, info)`` from a file written by :func:`save_pretrained`; the model on ``device``
    (default: the one :func:`helpers.setup` chose), in evaluation mode."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"No pre-trained BERT at {path}: run chapter 10 (10_bert.ipynb) to write it.")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = BERTModel(**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model.to(training_device(device)).eval(), vocab_from_tokens(saved["idx_to_token"]), saved["info"]


# =============================================================================================
# Fine-tuning
# =============================================================================================


class BERTClassifier(nn.Module):
    """A pre-trained (or fresh) encoder and pooler with a linear layer on the ``<cls>`` output.

    ``forward(tokens, segments, valid_lens)`` returns class logits ``(batch, num_classes)``. All
    parameters are trained (fine-tuning); only ``output`` starts from scratch.
    """

    def __init__(self, encoder: BERTEncoder, pooler: nn.Module, num_classes: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder, self.pooler = encoder, pooler
        self.dropout = nn.Dropout(dropout)
        num_hiddens = encoder.token_embedding.embedding_dim
        self.output = nn.Linear(num_hiddens, num_classes)
        init_bert_weights(self.output)

    def forward(self, tokens, segments, valid_lens=None):
        encoded = self.encoder(tokens, segments, valid_lens)
        return self.output(self.dropout(self.pooler(encoded[:, 0])))

    @classmethod
    def from_pretrained(cls, model: BERTModel, num_classes: int) -> BERTClassifier:
        """A classifier with copies of ``model``'s encoder and pooler (``model`` is left unchanged), on
        ``model``'s device."""
        classifier = cls(copy.deepcopy(model.encoder), copy.deepcopy(model.pooler), num_classes,
                         model.config["dropout"])
        return classifier.to(model_device(model))

    @classmethod
    def from_scratch(cls, config: dict, num_classes: int) -> BERTClassifier:
        """The same architecture with fresh weights: what pre-training is compared with."""
        fresh = BERTModel(**config)
        return cls(fresh.encoder, fresh.pooler, num_classes, config["dropout"])


class BagOfWords(nn.Module):
    """The baseline: logistic regression on word counts, one bag per segment, plus word overlap.

    ``forward(tokens, segments, valid_lens)`` (BERT's inputs, so the same loaders feed it) sums a
    learned vector of class scores for every token of segment 0 and, separately, of segment 1,
    and adds ``overlap_weight`` times the share of segment-1 words that also occur in segment 0
    (what a sentence-pair task such as entailment rewards). No word order, no context.
    """

    def __init__(self, vocab_size: int, num_classes: int, ignore: Sequence[int] = ()) -> None:
        super().__init__()
        self.bags = nn.ModuleList(nn.EmbeddingBag(vocab_size, num_classes, mode="sum") for _ in range(2))
        for bag in self.bags:
            nn.init.zeros_(bag.weight)
        self.overlap = nn.Linear(1, num_classes)
        self.register_buffer("ignore", torch.tensor(list(ignore), dtype=torch.long))

    def forward(self, tokens, segments, valid_lens=None):
        steps = torch.arange(tokens.shape[1], device=tokens.device)
        real = ~torch.isin(tokens, self.ignore)
        if valid_lens is not None:
            real &= steps[None, :] < valid_lens[:, None]
        scores = self.overlap.bias.expand(len(tokens), -1)
        masks = [real & (segments == s) for s in (0, 1)]
        for bag, mask in zip(self.bags, masks, strict=True):
            scores = scores + bag(tokens, per_sample_weights=mask.float())
        return scores + self.overlap.weight.T * word_overlap(tokens, *masks)[:, None]


def word_overlap(tokens: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Share of the tokens in ``second`` (a mask over ``tokens``) whose id also occurs in ``first``."""
    same = tokens[:, :, None] == tokens[:, None, :]  # (N, L, L)
    in_first = (same & first[:, None, :]).any(-1)
    return (in_first & second).sum(1) / second.sum(1).clamp(min=1)


CLASSIFIER_KEYS = ("tokens", "segments", "valid_lens", "labels")


def as_examples(tensors: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """``(token_ids, segments, valid_lens, labels)`` as the SNLI and SMS loaders give them -> a dict."""
    return dict(zip(CLASSIFIER_KEYS, tensors, strict=True))


@torch.no_grad()
def predict_classes(model: nn.Module, examples: dict[str, torch.Tensor],
                    batch_size: int = 512) -> torch.Tensor:
    """Predicted class of every example (int64, in order), each batch cut to its longest input."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    preds = []
    for batch in batches(examples, batch_size):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(batch["tokens"], batch["segments"], batch["valid_lens"])
        preds.append(logits.argmax(-1).cpu())
    model.train(was_training)
    return torch.cat(preds)


def fine_tune(model: nn.Module, train: dict[str, torch.Tensor], val: dict[str, torch.Tensor], num_epochs: int,
              lr: float = 1e-3, batch_size: int = 64, weight_decay: float = 0.01, warmup: float = 0.1,
              seed: int = 0, device=None, **run_options) -> TrainingRun:
    """Train a classifier (all its parameters) with cross-entropy; keep the epoch best on ``val``.

    ``train``/``val`` are dicts from :func:`as_examples`. AdamW with warm-up and linear decay
    (:func:`warmup_linear_schedule`), batches cut to their longest input (:func:`batches`).
    Records ``train_loss``, ``train_acc`` and ``val_acc`` per epoch and restores the weights of the
    epoch with the best ``val_acc``. ``run_options`` go to :class:`TrainingRun`. The model trains on
    ``device`` (default: the one :func:`helpers.setup` chose).
    """
    device = training_device(device)
    model.to(device)
    steps_per_epoch = math.ceil(len(train["tokens"]) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = warmup_linear_schedule(optimizer, max(1, round(warmup * num_epochs * steps_per_epoch)),
                                       num_epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    run = TrainingRun(num_epochs, steps_per_epoch, optimizers=optimizer, model=model,
                      keep_best=("val_acc", "max"), **run_options)
    for _ in run.epochs():
        model.train()
        for batch in batches(train, batch_size, gen):
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(batch["tokens"], batch["segments"], batch["valid_lens"])
            loss = F.cross_entropy(logits, batch["labels"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            acc = (logits.argmax(-1) == batch["labels"]).float().mean()
            run.step(len(batch["labels"]), loss=loss, acc=acc)
        val_acc = (predict_classes(model, val) == val["labels"]).float().mean()
        run.end_epoch(val_acc=val_acc)
    model.eval()
    return run
