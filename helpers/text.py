"""Text processing the course reuses: tokenizing, vocabularies, language-model minibatches,
translation pairs and BERT pre-training examples.

These pieces are algorithms the chapters teach (RNNs, seq2seq, BERT) and that work on any text,
so they live here, apart from :mod:`helpers.datasets`, which only knows where the shipped files
are and how to read them. Keeping the two apart keeps both modules short, and lets a notebook
apply the same ``Vocab`` or sampler to text of its own.

Randomness is always explicit: functions take a ``seed`` (or a ``torch.Generator``) and give the
same output for the same seed, whatever the global random state.
"""

from __future__ import annotations

import collections
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

import torch

UNK = "<unk>"

# ---------------------------------------------------------------------------------------------
# Tokens and vocabularies
# ---------------------------------------------------------------------------------------------


def tokenize(lines: Iterable[str], token: str = "word") -> list[list[str]]:
    """Split each line into word tokens (on whitespace) or character tokens.

    ``token='word'`` or ``token='char'``; returns one list of tokens per line.
    """
    if token == "word":
        return [line.split() for line in lines]
    if token == "char":
        return [list(line) for line in lines]
    raise ValueError(f"token must be 'word' or 'char', got {token!r}.")


_ENGLISH_TOKEN = re.compile(r"'(?:t|s|re|ve|ll|m|d)\b|\w+|\.\.\.|[^\w\s]")


def tokenize_english(text: str) -> list[str]:
    """Lower-case word tokens of English text, in the conventions of WikiText-2.

    Punctuation marks are tokens of their own (``...`` is one), and the clitics
    ``'t 's 're 've 'll 'm 'd`` are split off as WikiText-2 writes them (``"Don't!"`` ->
    ``['don', "'t", '!']``), so that new text (an SMS, a review) meets a vocabulary built from
    WikiText-2 with the same tokens. Curly apostrophes count as ``'``.
    """
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return _ENGLISH_TOKEN.findall(text)


def count_tokens(tokens: Sequence[str] | Sequence[Sequence[str]]) -> collections.Counter:
    """Count token frequencies in a flat list of tokens or a list of token lists."""
    if tokens and isinstance(tokens[0], (list, tuple)):
        tokens = [tok for line in tokens for tok in line]
    return collections.Counter(tokens)


class Vocab:
    """A mapping between tokens and integer indices, most frequent tokens first.

    Index 0 is always ``<unk>``, the index of every token not in the vocabulary. Then come the
    ``reserved_tokens`` (such as ``<pad>``, ``<bos>``, ``<eos>``) in the order given, then every
    token seen at least ``min_freq`` times, by decreasing frequency (ties: first seen first).

    ``vocab['the']`` and ``vocab[['the', 'time']]`` give indices; ``vocab.to_tokens(3)`` and
    ``vocab.to_tokens([3, 4])`` go back. ``vocab.token_freqs`` lists ``(token, count)`` pairs of
    the counted text, most frequent first.
    """

    def __init__(
        self,
        tokens: Sequence[str] | Sequence[Sequence[str]] | None = None,
        min_freq: int = 0,
        reserved_tokens: Sequence[str] | None = None,
    ) -> None:
        counter = count_tokens(tokens or [])
        # sorted() is stable, so tokens with equal counts keep their first-seen order.
        self.token_freqs: list[tuple[str, int]] = sorted(
            counter.items(), key=lambda item: item[1], reverse=True
        )
        self.idx_to_token: list[str] = [UNK]
        for tok in reserved_tokens or []:
            if tok not in self.idx_to_token:
                self.idx_to_token.append(tok)
        self.token_to_idx: dict[str, int] = {tok: i for i, tok in enumerate(self.idx_to_token)}
        for tok, freq in self.token_freqs:
            if freq < min_freq:
                break
            if tok not in self.token_to_idx:
                self.token_to_idx[tok] = len(self.idx_to_token)
                self.idx_to_token.append(tok)

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __getitem__(self, tokens):
        """Index of one token, or a list of indices for a list/tuple of tokens."""
        if isinstance(tokens, (list, tuple)):
            get = self.token_to_idx.get
            return [get(tok, 0) for tok in tokens]
        return self.token_to_idx.get(tokens, 0)

    def to_tokens(self, indices):
        """Token of one index, or a list of tokens for a list (or tensor) of indices."""
        if hasattr(indices, "tolist"):
            indices = indices.tolist()
        if isinstance(indices, (list, tuple)):
            return [self.idx_to_token[i] for i in indices]
        return self.idx_to_token[indices]

    def __contains__(self, token: str) -> bool:
        return token in self.token_to_idx

    @property
    def unk(self) -> int:
        """Index of the unknown token (always 0)."""
        return 0

    def __repr__(self) -> str:
        head = ", ".join(self.idx_to_token[:8])
        return f"Vocab(size={len(self)}, first tokens: {head}, ...)"


# ---------------------------------------------------------------------------------------------
# Language-model minibatches: random sampling and sequential partitioning
# ---------------------------------------------------------------------------------------------


def as_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """Turn a seed (int), a ``torch.Generator`` or None into a generator.

    None draws a seed from torch's global random state, so ``helpers.config.seed_everything``
    still makes the result repeat.
    """
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None:
        generator = int(torch.randint(0, 2**62, (1,)))
    return torch.Generator().manual_seed(int(generator))


def _choose_offset(offset: int | None, num_steps: int, gen: torch.Generator) -> int:
    if offset is None:
        return int(torch.randint(0, num_steps, (1,), generator=gen))
    if not 0 <= offset < num_steps:
        raise ValueError(f"offset must be in [0, num_steps - 1] = [0, {num_steps - 1}], got {offset}.")
    return offset


def seq_data_iter_random(
    corpus: Sequence[int] | torch.Tensor,
    batch_size: int,
    num_steps: int,
    generator: torch.Generator | int | None = None,
    offset: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield language-model minibatches ``(X, Y)`` by random sampling.

    Drop a random number of leading tokens (``offset`` in ``[0, num_steps - 1]``), cut the rest
    into non-overlapping subsequences of ``num_steps`` tokens, and visit them in a random order,
    ``batch_size`` at a time. ``Y`` is ``X`` shifted by one token. Neighbouring rows of two
    consecutive batches are *not* neighbours in the text, so the hidden state is reset between
    batches. ``X`` and ``Y`` are int64 of shape ``(batch_size, num_steps)``.
    """
    gen = as_generator(generator)
    corpus = torch.as_tensor(corpus, dtype=torch.long)[_choose_offset(offset, num_steps, gen) :]
    num_subseqs = (len(corpus) - 1) // num_steps  # -1: each X needs its next token in Y
    starts = torch.randperm(num_subseqs, generator=gen) * num_steps
    window = torch.arange(num_steps)
    for i in range(num_subseqs // batch_size):
        positions = starts[i * batch_size : (i + 1) * batch_size, None] + window
        yield corpus[positions], corpus[positions + 1]


def seq_data_iter_sequential(
    corpus: Sequence[int] | torch.Tensor,
    batch_size: int,
    num_steps: int,
    generator: torch.Generator | int | None = None,
    offset: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield language-model minibatches ``(X, Y)`` by sequential partitioning.

    Drop a random number of leading tokens (``offset`` in ``[0, num_steps - 1]``), lay the rest
    out as ``batch_size`` rows of equal length, and walk along the rows ``num_steps`` columns at
    a time. Row ``i`` of one batch continues row ``i`` of the previous batch, so the hidden state
    can be carried over. (d2l also allows ``offset = num_steps``, which only drops one more
    subsequence; here both samplers use the same offset range.)
    """
    gen = as_generator(generator)
    offset = _choose_offset(offset, num_steps, gen)
    corpus = torch.as_tensor(corpus, dtype=torch.long)
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    if num_tokens <= 0:
        return
    Xs = corpus[offset : offset + num_tokens].reshape(batch_size, -1)
    Ys = corpus[offset + 1 : offset + 1 + num_tokens].reshape(batch_size, -1)
    for i in range(0, (Xs.shape[1] // num_steps) * num_steps, num_steps):
        yield Xs[:, i : i + num_steps], Ys[:, i : i + num_steps]


def _num_batches(length: int, batch_size: int, num_steps: int, offset: int, random_iter: bool):
    if random_iter:
        return ((length - offset - 1) // num_steps) // batch_size
    return max((length - offset - 1) // batch_size, 0) // num_steps


class SeqDataLoader:
    """Language-model minibatches over a corpus, a new random offset (and order) every epoch.

    Iterating gives one epoch of ``(X, Y)`` batches from :func:`seq_data_iter_random` or
    :func:`seq_data_iter_sequential`. Every epoch has exactly ``len(self)`` batches (the count
    for the largest offset), so progress bars know the length. The same ``seed`` gives the same
    epochs.
    """

    def __init__(
        self,
        corpus: Sequence[int] | torch.Tensor,
        batch_size: int,
        num_steps: int,
        use_random_iter: bool = False,
        seed: int | None = None,
    ) -> None:
        self.corpus = torch.as_tensor(corpus, dtype=torch.long)
        self.batch_size, self.num_steps = batch_size, num_steps
        self.use_random_iter = use_random_iter
        self.generator = as_generator(seed)
        if len(self) == 0:
            raise ValueError(
                f"A corpus of {len(self.corpus)} tokens gives no batch of batch_size={batch_size} "
                f"x num_steps={num_steps}; use more tokens or smaller batch_size/num_steps."
            )

    def __len__(self) -> int:
        return _num_batches(
            len(self.corpus), self.batch_size, self.num_steps, self.num_steps - 1,
            self.use_random_iter,
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        sampler = seq_data_iter_random if self.use_random_iter else seq_data_iter_sequential
        batches = sampler(self.corpus, self.batch_size, self.num_steps, generator=self.generator)
        return islice(batches, len(self))


# ---------------------------------------------------------------------------------------------
# Machine translation pairs
# ---------------------------------------------------------------------------------------------

_PUNCT_AFTER_NON_SPACE = re.compile(r"(?<=[^ ])([,.!?])")


def preprocess_nmt(text: str) -> str:
    """Normalise translation text: no-break spaces become spaces, lower case, and a space is
    inserted before ``, . ! ?`` when none precedes it (so punctuation becomes its own token)."""
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    return _PUNCT_AFTER_NON_SPACE.sub(r" \1", text)


def tokenize_nmt(
    text: str, num_examples: int | None = None
) -> tuple[list[list[str]], list[list[str]]]:
    """Split ``source<TAB>target`` lines into word-token lists ``(source, target)``.

    Lines without exactly one tab are skipped; ``num_examples`` keeps only the first pairs.
    """
    source, target = [], []
    for line in text.split("\n"):
        if num_examples is not None and len(source) >= num_examples:
            break
        parts = line.split("\t")
        if len(parts) == 2:
            source.append(parts[0].split())
            target.append(parts[1].split())
    return source, target


def truncate_pad(line: Sequence, num_steps: int, padding_token) -> list:
    """Cut ``line`` to ``num_steps`` items, or pad it with ``padding_token`` up to that length."""
    if len(line) > num_steps:
        return list(line[:num_steps])
    return list(line) + [padding_token] * (num_steps - len(line))


def build_array_nmt(
    lines: Sequence[Sequence[str]], vocab: Vocab, num_steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn token lists into an int64 ``(N, num_steps)`` array and their valid lengths.

    Each line gets ``<eos>`` appended, then is truncated or padded with ``<pad>``. The valid
    length counts the tokens that are not padding.
    """
    eos, pad = vocab["<eos>"], vocab["<pad>"]
    rows = [truncate_pad(vocab[list(line)] + [eos], num_steps, pad) for line in lines]
    array = torch.tensor(rows, dtype=torch.long).reshape(len(rows), num_steps)
    valid_len = (array != pad).sum(dim=1)
    return array, valid_len


# ---------------------------------------------------------------------------------------------
# BERT pre-training examples: next-sentence prediction and masked language modelling
# ---------------------------------------------------------------------------------------------

BERT_RESERVED_TOKENS = ("<pad>", "<mask>", "<cls>", "<sep>")


def get_tokens_and_segments(
    tokens_a: Sequence[str], tokens_b: Sequence[str] | None = None
) -> tuple[list[str], list[int]]:
    """BERT input for one or two sentences: ``<cls> a <sep> [b <sep>]`` and segment ids 0/1."""
    tokens = ["<cls>", *tokens_a, "<sep>"]
    segments = [0] * len(tokens)
    if tokens_b is not None:
        tokens += [*tokens_b, "<sep>"]
        segments += [1] * (len(tokens_b) + 1)
    return tokens, segments


def next_sentence_examples(
    paragraph: Sequence[Sequence[str]],
    paragraphs: Sequence[Sequence[Sequence[str]]],
    max_len: int,
    rng: random.Random,
) -> list[tuple[list[str], list[int], bool]]:
    """Sentence pairs for next-sentence prediction from one paragraph (a list of token lists).

    For each sentence, with probability 1/2 the pair is the real next sentence (``is_next``
    True), otherwise a random sentence of a random paragraph. Pairs longer than ``max_len``
    with their 3 special tokens are skipped. Returns ``(tokens, segments, is_next)`` triples.
    """
    examples = []
    for first, real_next in zip(paragraph[:-1], paragraph[1:], strict=True):
        is_next = rng.random() < 0.5
        second = real_next if is_next else rng.choice(rng.choice(paragraphs))
        if len(first) + len(second) + 3 > max_len:
            continue
        tokens, segments = get_tokens_and_segments(first, second)
        examples.append((tokens, segments, is_next))
    return examples


def mask_for_mlm(
    tokens: Sequence[str], vocab: Vocab, rng: random.Random, mask_ratio: float = 0.15, skip_unk: bool = False
) -> tuple[list[int], list[int], list[int]]:
    """Corrupt a BERT input for masked language modelling.

    ``mask_ratio`` of the tokens (at least one; never ``<cls>``/``<sep>``, and with ``skip_unk``
    never a word outside the vocabulary) are chosen for prediction; each chosen token becomes
    ``<mask>`` with probability 0.8, a random ordinary vocabulary token (not ``<unk>`` or a reserved
    token) with 0.1, or stays unchanged with 0.1. Returns the corrupted token ids, the chosen
    positions (in increasing order) and the original token ids there (the labels).
    ``helpers.bert.mask_tokens`` does the same for a whole padded batch at once.
    """
    candidates = [i for i, tok in enumerate(tokens)
                  if tok not in ("<cls>", "<sep>") and not (skip_unk and tok not in vocab)]
    rng.shuffle(candidates)
    num_preds = max(1, round(len(tokens) * mask_ratio))
    chosen = sorted(candidates[:num_preds])
    corrupted = list(tokens)
    first_ordinary = 1 + len(BERT_RESERVED_TOKENS)  # after <unk> and the reserved tokens
    for pos in chosen:
        draw = rng.random()
        if draw < 0.8:
            corrupted[pos] = "<mask>"
        elif draw < 0.9:
            corrupted[pos] = vocab.idx_to_token[rng.randrange(first_ordinary, len(vocab))]
    return vocab[corrupted], chosen, vocab[[tokens[pos] for pos in chosen]]


def bert_pretraining_tensors(
    paragraphs: Sequence[Sequence[Sequence[str]]],
    vocab: Vocab,
    max_len: int,
    seed: int = 0,
) -> tuple[torch.Tensor, ...]:
    """Build padded BERT pre-training tensors from paragraphs of tokenized sentences.

    Returns, for N examples, ``(token_ids (N, max_len), segments (N, max_len), valid_lens (N,),
    pred_positions (N, P), mlm_weights (N, P), mlm_labels (N, P), nsp_labels (N,))`` with
    ``P = round(0.15 * max_len)``. Padding uses ``<pad>`` for tokens, 0 for segments, positions
    and labels, and weight 0 so padded predictions do not count in the loss. All are int64
    except ``mlm_weights`` (float32). The same seed gives the same tensors.
    """
    rng = random.Random(seed)
    examples = []
    for paragraph in paragraphs:
        examples += next_sentence_examples(paragraph, paragraphs, max_len, rng)
    num_preds_max = round(max_len * 0.15)
    n = len(examples)
    token_ids = torch.full((n, max_len), vocab["<pad>"], dtype=torch.long)
    segments = torch.zeros((n, max_len), dtype=torch.long)
    valid_lens = torch.zeros(n, dtype=torch.long)
    pred_positions = torch.zeros((n, num_preds_max), dtype=torch.long)
    mlm_weights = torch.zeros((n, num_preds_max), dtype=torch.float32)
    mlm_labels = torch.zeros((n, num_preds_max), dtype=torch.long)
    nsp_labels = torch.zeros(n, dtype=torch.long)
    for i, (tokens, segs, is_next) in enumerate(examples):
        ids, positions, labels = mask_for_mlm(tokens, vocab, rng)
        token_ids[i, : len(ids)] = torch.tensor(ids)
        segments[i, : len(segs)] = torch.tensor(segs)
        valid_lens[i] = len(ids)
        pred_positions[i, : len(positions)] = torch.tensor(positions)
        mlm_weights[i, : len(positions)] = 1.0
        mlm_labels[i, : len(labels)] = torch.tensor(labels)
        nsp_labels[i] = int(is_next)
    return token_ids, segments, valid_lens, pred_positions, mlm_weights, mlm_labels, nsp_labels


def truncate_pair(
    tokens_a: Sequence[str], tokens_b: Sequence[str] | None, max_len: int
) -> tuple[list[str], list[str] | None]:
    """Shorten one sentence, or a pair, so that with BERT's special tokens it fits in ``max_len``.

    One sentence keeps its first ``max_len - 2`` tokens (room for ``<cls>`` and ``<sep>``). A pair
    loses tokens from the end of the longer sentence (the second on a tie), one at a time, until
    both fit with ``<cls>``, ``<sep>``, ``<sep>``: as d2l's SNLI data set, so a long premise does not
    push the hypothesis out.
    """
    specials = 2 if tokens_b is None else 3
    if max_len <= specials:
        raise ValueError(f"max_len must exceed the {specials} special tokens, got {max_len}.")
    if tokens_b is None:
        return list(tokens_a[: max_len - 2]), None
    a, b = list(tokens_a), list(tokens_b)
    while len(a) + len(b) > max_len - 3:
        (a if len(a) > len(b) else b).pop()
    return a, b


def bert_input_tensors(
    tokens_a: Sequence[Sequence[str]],
    tokens_b: Sequence[Sequence[str]] | None,
    vocab: Vocab,
    max_len: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT inputs for classifying single sentences or sentence pairs (fine-tuning).

    Example ``i`` is ``<cls> tokens_a[i] <sep>``, or ``<cls> tokens_a[i] <sep> tokens_b[i] <sep>``
    when ``tokens_b`` is given, cut to ``max_len`` by :func:`truncate_pair`. Returns int64
    ``(token_ids (N, max_len), segments (N, max_len), valid_lens (N,))`` padded as in
    :func:`bert_pretraining_tensors`: ``<pad>`` for tokens, 0 for segments.
    """
    pairs = zip(tokens_a, tokens_b, strict=True) if tokens_b is not None else ((a, None) for a in tokens_a)
    n = len(tokens_a)
    token_ids = torch.full((n, max_len), vocab["<pad>"], dtype=torch.long)
    segments = torch.zeros((n, max_len), dtype=torch.long)
    valid_lens = torch.zeros(n, dtype=torch.long)
    for i, (a, b) in enumerate(pairs):
        tokens, segs = get_tokens_and_segments(*truncate_pair(a, b, max_len))
        token_ids[i, : len(tokens)] = torch.tensor(vocab[tokens])
        segments[i, : len(segs)] = torch.tensor(segs)
        valid_lens[i] = len(tokens)
    return token_ids, segments, valid_lens
