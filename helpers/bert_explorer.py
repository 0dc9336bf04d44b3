"""The "Try it" widgets of chapter 10 (BERT): masking, filling in the blank, attention heads.

Three explorers over :mod:`helpers.bert` (model code, which imports no UI code); the logic of each
is a pair of plain functions that tests and notebooks call directly, one that computes the data
and one that draws it:

* ``MaskingExplorer``: how :func:`helpers.bert.mask_tokens` corrupts one sentence
  (:func:`mask_sentence` -> :class:`MaskingExample`, :func:`draw_masking`; both at once:
  :func:`masking_figure`): which words are chosen for prediction, which become ``<mask>``, a
  random word or stay unchanged, and, given a model, its top-5 guesses at every chosen position.
* ``FillMaskExplorer``: a sentence with ``<mask>`` (or ``[MASK]``) and the model's top-5 words for
  every blank (:func:`fill_mask_predictions` -> :class:`FillMaskResult`, :func:`draw_fill_mask`,
  :func:`fill_mask_figure`), computed by :func:`helpers.bert.fill_mask`.
* ``AttentionHeadsExplorer``: the self-attention weights of every head of one layer of the
  encoder for a sentence pair (:func:`attention_maps` -> :class:`AttentionMaps`,
  :func:`draw_attention_heads`, :func:`attention_figure`).

The plain functions return ``(figure, message)`` with a plain-text message (it names ``<mask>`` and
``<unk>``; the explorers escape it for their HTML status line) and raise ``ValueError`` with a
message that says what to change for bad input. Figures are ``matplotlib.figure.Figure`` objects
made without pyplot, so they never pile up in pyplot's list of open figures, and drawn with a
fixed layout (one rendering per update: each update takes a few hundredths of a second with the
chapter's model). The explorer classes (:class:`helpers.widgets.PlotExplorer` subclasses) are
created on first access by the module's ``__getattr__``, as in :mod:`helpers.detection`, so
importing this module imports neither ipywidgets nor matplotlib.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from helpers import bert
from helpers.text import BERT_RESERVED_TOKENS, Vocab, tokenize_english
from helpers.training import model_device

MASK, CLS, SEP, PAD = bert.MASK, bert.CLS, bert.SEP, bert.PAD
KIND_NAMES = ("<mask>", "random", "unchanged")
"""What :func:`helpers.bert.mask_tokens` does to a chosen token, by its ``kinds`` code 0, 1, 2."""

# Okabe-Ito colours (helpers.plotting.PALETTE), written out so that importing stays light.
MASK_COLOR, RANDOM_COLOR, UNCHANGED_COLOR = "#0072B2", "#E69F00", "#009E73"
UNKNOWN_COLOR = "#D55E00"  # the edge of a word that is not in the vocabulary; the segment boundary
KIND_COLORS = (MASK_COLOR, RANDOM_COLOR, UNCHANGED_COLOR)
NOT_CHOSEN_COLOR = "#EEEEEE"
TOP_K = 5
MAX_MASKING_TOKENS = 40  # words drawn by the masking explorer (four rows of ten)
MAX_PANELS = 6  # masks drawn by the fill-mask explorer
MAX_ATTENTION_TOKENS = 40  # tokens of a pair the heatmaps can label legibly
DPI = 80  # helpers.plotting.figure_to_png's resolution

MASK_PATTERN = re.compile(r"<mask>|\[mask\]", re.IGNORECASE)

DEFAULT_MASKING_SENTENCE = ("the game was released in japan in 2010 and received positive reviews from "
                            "critics .")
DEFAULT_FILL_MASK_SENTENCE = "the film was released in the united <mask> in 2010 ."
DEFAULT_SENTENCE_A = "the game was released in japan ."
DEFAULT_SENTENCE_B = "it received positive reviews from critics ."


# ---------------------------------------------------------------------------------------------
# Shared checks and small helpers
# ---------------------------------------------------------------------------------------------


def _check_vocab(vocab: Vocab) -> None:
    missing = [tok for tok in BERT_RESERVED_TOKENS if tok not in vocab]
    if missing:
        raise ValueError(f"The vocabulary lacks BERT's reserved tokens {', '.join(missing)}: build it with "
                         "Vocab(..., reserved_tokens=BERT_RESERVED_TOKENS).")
    if len(vocab) <= len(BERT_RESERVED_TOKENS) + 1:
        raise ValueError("The vocabulary has no ordinary words (only <unk> and the reserved tokens).")


def _words(sentence: str, what: str = "sentence") -> list[str]:
    if not isinstance(sentence, str):
        raise ValueError(f"The {what} must be text, got {type(sentence).__name__}.")
    words = tokenize_english(sentence)
    if not words:
        raise ValueError(f"The {what} is empty: type a few words.")
    return words


def unknown_words(vocab: Vocab, tokens: Sequence[str]) -> list[str]:
    """The tokens that are not in ``vocab`` (the model reads them as ``<unk>``), each once, in order."""
    seen: dict[str, None] = {}
    for tok in tokens:
        if tok not in vocab and tok != MASK:
            seen.setdefault(tok, None)
    return list(seen)


def _unknown_note(unknown: Sequence[str]) -> str:
    if not unknown:
        return ""
    shown = ", ".join(f"'{tok}'" for tok in unknown[:8])
    if len(unknown) > 8:
        shown += f" and {len(unknown) - 8} more"
    return f"; not in the vocabulary (read as <unk>): {shown}"


def _short(token: str, width: int = 11) -> str:
    return token if len(token) <= width else token[: width - 1] + "…"


def _prob(p: float) -> str:
    """A probability in a few characters: ``0.41``, or ``2.3e-04`` below 0.01 (an untrained model's)."""
    return f"{p:.2f}" if p >= 0.01 else f"{p:.1e}"


def _check_top_k(top_k: int, vocab: Vocab) -> int:
    most = len(vocab) - len(BERT_RESERVED_TOKENS) - 1  # the words a prediction can be
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= most:
        raise ValueError(f"top_k must be a whole number from 1 to {most} (the vocabulary's ordinary words), "
                         f"got {top_k!r}.")
    return top_k


def _check_share(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}.")
    return float(value)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="none")


@torch.no_grad()
def _predict(model: bert.BERTModel, vocab: Vocab, tokens: torch.Tensor, segments: torch.Tensor,
             valid_lens: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    """The model's probabilities ``(P, vocab)`` at ``positions`` of one input (special tokens and
    ``<unk>`` excluded, as :func:`helpers.bert.fill_mask` does); the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        device = model_device(model)
        pred = torch.tensor([list(positions)], device=device)
        _, logits, _ = model(tokens.to(device), segments.to(device), valid_lens.to(device), pred)
    finally:
        model.train(was_training)
    logits = logits[0].float().cpu()
    logits[:, bert.special_ids(vocab) + [vocab.unk]] = -math.inf
    return logits.softmax(-1)


# ---------------------------------------------------------------------------------------------
# 1. Masking: what mask_tokens does to one sentence
# ---------------------------------------------------------------------------------------------


@dataclass
class MaskingExample:
    """One sentence masked by :func:`mask_sentence`.

    ``words`` the input ``<cls> ... <sep>`` as typed (unknown words as written); ``corrupted`` what
    the model reads (vocabulary tokens: unknown words are ``<unk>``, chosen ones replaced);
    ``positions`` the chosen positions (indices into ``words``, in order) and ``kinds`` what
    happened to each (0 ``<mask>``, 1 a random word, 2 unchanged, :data:`KIND_NAMES`);
    ``unknown`` the words not in the vocabulary; ``predictions`` (with a model) one list of
    ``(word, probability)`` per chosen position, best first, and ``target_ranks`` the rank
    (1 = best) and probability of the right word there (``None`` when the right word is unknown);
    ``batch`` the :class:`helpers.bert.MaskedBatch` itself; ``mask_ratio`` and ``split``: the settings.
    """

    words: list[str]
    corrupted: list[str]
    positions: list[int]
    kinds: list[int]
    unknown: list[str]
    batch: bert.MaskedBatch
    mask_ratio: float
    split: tuple[float, float, float]
    seed: int
    predictions: list[list[tuple[str, float]]] | None = None
    target_ranks: list[tuple[int, float] | None] | None = None

    @property
    def num_words(self) -> int:
        """The words of the sentence (the tokens between ``<cls>`` and ``<sep>``)."""
        return len(self.words) - 2

    @property
    def counts(self) -> dict[str, int]:
        """``{'chosen': n, '<mask>': a, 'random': b, 'unchanged': c}``."""
        out = {"chosen": len(self.positions)}
        for code, name in enumerate(KIND_NAMES):
            out[name] = sum(kind == code for kind in self.kinds)
        return out

    @property
    def num_correct(self) -> int | None:
        """At how many chosen positions the model's best word is right (``None`` without a model)."""
        if self.target_ranks is None:
            return None
        return sum(rank is not None and rank[0] == 1 for rank in self.target_ranks)

    def summary(self) -> str:
        """The one-line message: counts, unknown words and, with a model, how often its top word is right."""
        c = self.counts
        message = (f"{c['chosen']} of {self.num_words} words chosen for prediction (round("
                   f"{self.mask_ratio:g} x {len(self.words)} tokens), at least 1): {c['<mask>']} <mask>, "
                   f"{c['random']} random, {c['unchanged']} unchanged")
        if self.target_ranks is not None:
            message += (f"; the model's top word is right at {self.num_correct} of {c['chosen']} (it reads "
                        "the corrupted input)")
        return message + _unknown_note(self.unknown) + "."


def masking_split(to_mask: float, to_random: float) -> tuple[float, float, float]:
    """``(to_mask, to_random, unchanged)``: the shares of the chosen positions for :func:`mask_tokens`.

    Raises ``ValueError`` if a share is outside [0, 1] or the two add up to more than 1.
    """
    to_mask = _check_share("The share for <mask>", to_mask)
    to_random = _check_share("The share for random words", to_random)
    if to_mask + to_random > 1 + 1e-9:
        raise ValueError(f"The shares for <mask> ({to_mask:g}) and for random words ({to_random:g}) add up "
                         f"to {to_mask + to_random:g}; they can add up to at most 1 (the rest of the chosen "
                         "words stay unchanged): lower one of them.")
    return to_mask, to_random, max(0.0, 1.0 - to_mask - to_random)


def mask_sentence(vocab: Vocab, sentence: str, mask_ratio: float = bert.MASK_RATIO, to_mask: float = 0.8,
                  to_random: float = 0.1, seed: int = 0, model: bert.BERTModel | None = None,
                  top_k: int = TOP_K) -> MaskingExample:
    """Mask one sentence as pre-training does and return what happened (:class:`MaskingExample`).

    The sentence is tokenized (:func:`helpers.text.tokenize_english`), wrapped as
    ``<cls> sentence <sep>`` (:func:`helpers.bert.encode_pair`) and corrupted by
    :func:`helpers.bert.mask_tokens` with ``mask_ratio``, ``split=(to_mask, to_random, rest)``
    (:func:`masking_split`), ``skip_unk=False`` (unknown words can be chosen too) and a
    ``torch.Generator`` seeded with ``seed``. With a ``model``, its ``top_k`` words at every chosen
    position, read from the corrupted input.
    """
    _check_vocab(vocab)
    _check_top_k(top_k, vocab)
    split = masking_split(to_mask, to_random)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}.")
    words = _words(sentence)
    if len(words) > MAX_MASKING_TOKENS:
        raise ValueError(f"The sentence has {len(words)} tokens; the explorer shows at most "
                         f"{MAX_MASKING_TOKENS}: shorten it.")
    if model is not None and len(words) + 2 > model.encoder.max_len:
        raise ValueError(f"The sentence has {len(words)} tokens; this model reads at most "
                         f"{model.encoder.max_len - 2} (plus <cls> and <sep>): shorten it.")
    tokens, segments, valid_lens = bert.encode_pair(vocab, words)
    generator = torch.Generator().manual_seed(seed)
    batch = bert.mask_tokens(tokens, valid_lens, vocab, generator, mask_ratio=mask_ratio, split=split,
                             skip_unk=False)
    used = batch.mlm_weights[0] > 0
    positions = batch.pred_positions[0][used].tolist()
    example = MaskingExample(
        words=[CLS, *words, SEP], corrupted=vocab.to_tokens(batch.tokens[0]), positions=positions,
        kinds=batch.kinds[0][used].tolist(), unknown=unknown_words(vocab, words), batch=batch,
        mask_ratio=float(mask_ratio), split=split, seed=seed)
    if model is not None:
        probs = _predict(model, vocab, batch.tokens, segments, valid_lens, positions)
        top = probs.topk(top_k, dim=-1)
        example.predictions = [[(vocab.to_tokens(int(i)), float(p)) for p, i in zip(ps, ids, strict=True)]
                               for ps, ids in zip(top.values, top.indices, strict=True)]
        ranks = []
        for row, label in zip(probs, batch.mlm_labels[0][used].tolist(), strict=True):
            if label == vocab.unk:
                ranks.append(None)
            else:
                p = float(row[label])
                ranks.append((int((row > row[label]).sum()) + 1, p))
        example.target_ranks = ranks
    return example


def draw_masking(example: MaskingExample, per_row: int = 10):
    """Draw a :class:`MaskingExample`: ``(figure, message)``.

    The tokens as a row (or rows of ``per_row``) of boxes coloured by what happened: not chosen
    (grey), ``<mask>`` (blue), a random word (orange, the new word shown), unchanged (green);
    ``<cls>``/``<sep>`` dashed, words not in the vocabulary with a vermillion edge. With the model's
    predictions, its top words with probabilities under every chosen box, the right word marked ✓.
    """
    from matplotlib.patches import FancyBboxPatch, Patch

    cell, box_h, line_h = 0.8, 0.42, 0.13
    pred_h = 0.0
    if example.predictions is not None:  # the top words and, if it is further down, the right word's rank
        pred_h = (max(map(len, example.predictions), default=0) + 1) * line_h + 0.06
    row_h = box_h + pred_h + 0.14
    n_rows = math.ceil(len(example.words) / per_row)
    title_h, legend_h = 0.42, 0.32
    width, height = cell * per_row + 0.2, title_h + n_rows * row_h + legend_h
    fig = _figure(width, height)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # inches from the top-left corner
    chosen = dict(zip(example.positions, range(len(example.positions)), strict=True))
    unknown = set(example.unknown)
    for i, word in enumerate(example.words):
        x = 0.1 + cell * (i % per_row)
        y = title_h + row_h * (i // per_row)
        special = i in (0, len(example.words) - 1)
        j = chosen.get(i)
        face = "white" if special else NOT_CHOSEN_COLOR if j is None else KIND_COLORS[example.kinds[j]]
        light_text = j is not None and example.kinds[j] in (0, 2)  # on blue or green
        text_color = "white" if light_text else "0.45" if special else "black"
        edge, lw, ls = "0.55", 0.8, "--" if special else "-"
        if word in unknown:
            edge, lw = UNKNOWN_COLOR, 2.0
        ax.add_patch(FancyBboxPatch((x + 0.04, y), cell - 0.08, box_h, facecolor=face, edgecolor=edge,
                                    linewidth=lw, linestyle=ls, boxstyle="round,pad=0,rounding_size=0.05"))
        if j is None:
            ax.text(x + cell / 2, y + box_h / 2, _short(word), ha="center", va="center", fontsize=7.5,
                    color=text_color)
            continue
        kind = example.kinds[j]
        below = ("→ <mask>", f"→ {_short(example.corrupted[i], 9)}", "(kept)")[kind]
        ax.text(x + cell / 2, y + box_h * 0.32, _short(word), ha="center", va="center", fontsize=7.5,
                color=text_color, fontweight="bold")
        ax.text(x + cell / 2, y + box_h * 0.74, below, ha="center", va="center", fontsize=6.5,
                color=text_color)
        if example.predictions is None:
            continue
        target = example.target_ranks[j]  # None: the right word is unknown, never proposed
        lines = [(("✓" if target is not None and guess == word else "  ") + f"{_short(guess, 8)} {_prob(p)}")
                 for guess, p in example.predictions[j]]
        if target is not None and target[0] > len(lines):  # the right word is further down the list
            lines.append(f"  right word #{target[0]}")
        for k, text in enumerate(lines):
            ax.text(x + 0.07, y + box_h + 0.04 + (k + 0.5) * line_h, text, ha="left", va="center",
                    fontsize=6.2, color=UNCHANGED_COLOR if text[0] == "✓" else "0.2",
                    fontweight="bold" if text[0] == "✓" else "normal")
    split = "/".join(f"{s:.0%}" for s in example.split)
    title = (f"masking for MLM: ratio {example.mask_ratio:g}, chosen words -> <mask>/random/unchanged "
             f"{split}, seed {example.seed}")
    if example.predictions is not None:
        title += ("\nunder each chosen word: the model's top 5 (it reads the corrupted input; "
                  "✓ the right word)")
    ax.text(width / 2, 0.06, title, ha="center", va="top", fontsize=8.5)
    handles = [Patch(facecolor=NOT_CHOSEN_COLOR, edgecolor="0.55", label="not chosen"),
               *(Patch(facecolor=color, label=name)
                 for color, name in zip(KIND_COLORS, ("<mask>", "random word", "unchanged"), strict=True)),
               Patch(facecolor="white", edgecolor="0.55", linestyle="--", label="<cls> / <sep>")]
    if unknown:
        handles.append(Patch(facecolor="white", edgecolor=UNKNOWN_COLOR, linewidth=2.0,
                             label="not in vocabulary (<unk>)"))
    ax.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False,
              bbox_to_anchor=(0.5, 0.0), handlelength=1.2, columnspacing=1.0)
    return fig, example.summary()


def masking_figure(vocab: Vocab, sentence: str, mask_ratio: float = bert.MASK_RATIO, to_mask: float = 0.8,
                   to_random: float = 0.1, seed: int = 0, model: bert.BERTModel | None = None):
    """:func:`mask_sentence` then :func:`draw_masking`: ``(figure, message)``."""
    return draw_masking(mask_sentence(vocab, sentence, mask_ratio, to_mask, to_random, seed, model))


# ---------------------------------------------------------------------------------------------
# 2. Fill in the blank
# ---------------------------------------------------------------------------------------------


def tokenize_masked(sentence: str) -> list[str]:
    """Tokens of a sentence with blanks: ``<mask>`` or ``[MASK]`` (any case) become the token ``<mask>``.

    :func:`helpers.text.tokenize_english` alone would split ``<mask>`` into ``<``, ``mask``, ``>``,
    so the text between the blanks is tokenized piece by piece.
    """
    if not isinstance(sentence, str):
        raise ValueError(f"The sentence must be text, got {type(sentence).__name__}.")
    pieces = MASK_PATTERN.split(sentence)
    tokens = tokenize_english(pieces[0])
    for piece in pieces[1:]:
        tokens += [MASK, *tokenize_english(piece)]
    return tokens


@dataclass
class FillMaskResult:
    """What :func:`fill_mask_predictions` found: ``tokens`` (with ``<mask>``), ``unknown`` words, and
    ``predictions``, :func:`helpers.bert.fill_mask`'s ``[(position in tokens, [(word, p), ...]), ...]``."""

    tokens: list[str]
    unknown: list[str]
    predictions: list[tuple[int, list[tuple[str, float]]]]

    def summary(self) -> str:
        """One line: the best word (and its probability) for every blank, and the unknown words."""
        parts = [f"blank {k + 1}: '{top[0][0]}' ({_prob(top[0][1])})"
                 for k, (_, top) in enumerate(self.predictions)]
        return "The model's best words: " + ", ".join(parts) + _unknown_note(self.unknown) + "."


def fill_mask_predictions(model: bert.BERTModel, vocab: Vocab, sentence: str,
                          top_k: int = TOP_K) -> FillMaskResult:
    """The model's ``top_k`` words for every ``<mask>``/``[MASK]`` of ``sentence`` (:func:`bert.fill_mask`).

    Raises ``ValueError`` (saying what to change) for a sentence without a blank, one too long for
    the model (``model.encoder.max_len`` tokens with ``<cls>`` and ``<sep>``), and one whose words
    are all unknown to the vocabulary (the model would read only ``<unk>``). Unknown words among
    known ones are allowed: :meth:`FillMaskResult.summary` names them.
    """
    _check_vocab(vocab)
    _check_top_k(top_k, vocab)
    tokens = tokenize_masked(sentence)
    if MASK not in tokens:
        raise ValueError("The sentence has no <mask> (or [MASK]) to fill in: put one where a word should go, "
                         "e.g. 'the cat sat on the <mask> .'")
    max_len = model.encoder.max_len
    if len(tokens) + 2 > max_len:
        raise ValueError(f"The sentence has {len(tokens)} tokens; this model reads at most {max_len - 2} "
                         f"(plus <cls> and <sep>): shorten it by {len(tokens) + 2 - max_len}.")
    words = [tok for tok in tokens if tok != MASK]
    unknown = unknown_words(vocab, words)
    if words and len(unknown) == len(set(words)):
        raise ValueError(f"None of the words ({', '.join(repr(t) for t in unknown[:8])}) is in the "
                         "model's vocabulary, so it would read only <unk> around the blank: use common "
                         "English words.")
    return FillMaskResult(tokens, unknown, bert.fill_mask(model, vocab, tokens, top_k=top_k))


def _context(tokens: Sequence[str], pos: int, numbers: dict[int, int], width: int = 2) -> str:
    left = [("___" if i == pos else f"[{numbers[i]}]" if i in numbers else _short(tokens[i], 10))
            for i in range(max(0, pos - width), pos + 1)]
    right = [f"[{numbers[i]}]" if i in numbers else _short(tokens[i], 10)
             for i in range(pos + 1, min(len(tokens), pos + 1 + width))]
    return " ".join([*(["…"] if pos - width > 0 else []), *left, *right,
                     *(["…"] if pos + 1 + width < len(tokens) else [])])


def draw_fill_mask(result: FillMaskResult):
    """Draw a :class:`FillMaskResult`, a bar chart of the top words per blank: ``(figure, message)``.

    At most :data:`MAX_PANELS` blanks are drawn (the message says when some are not).
    """
    from matplotlib.ticker import MaxNLocator

    shown = result.predictions[:MAX_PANELS]
    n = len(shown)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    label_w, bar_w, gap, panel_h, top, bottom = 0.85, 1.7, 0.3, 1.35, 0.62, 0.42
    panel_w = label_w + bar_w + gap
    width = max(ncols * panel_w + 0.1, 5.2)  # room for the title above a single panel
    margin = (width - ncols * panel_w) / 2
    height = top + nrows * panel_h + (nrows - 1) * bottom + bottom
    fig = _figure(width, height)
    numbers = {pos: k + 1 for k, (pos, _) in enumerate(result.predictions)}
    for k, (pos, top_words) in enumerate(shown):
        r, c = divmod(k, ncols)
        left = margin + c * panel_w + label_w
        y0 = height - top - r * (panel_h + bottom) - panel_h
        ax = fig.add_axes((left / width, y0 / height, bar_w / width, panel_h / height))
        words = [_short(w, 12) for w, _ in top_words]
        probs = [p for _, p in top_words]
        rows = list(range(len(words)))
        ax.barh(rows, probs, color=MASK_COLOR, height=0.7)
        ax.set_yticks(rows, words, fontsize=7.5)
        ax.invert_yaxis()
        ax.set_xlim(0, max(max(probs), 1e-9) * 1.35)
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(3))
        for row, p in zip(rows, probs, strict=True):
            ax.text(p, row, f" {_prob(p)}", va="center", ha="left", fontsize=7)
        ax.set_xlabel("probability", fontsize=7.5, labelpad=1)
        ax.set_title(f"[{k + 1}] {_context(result.tokens, pos, numbers)}", fontsize=8, loc="left")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    sentence = " ".join(f"[{numbers[i]}]" if i in numbers else tok for i, tok in enumerate(result.tokens))
    if len(sentence) > 100:
        sentence = sentence[:99] + "…"
    fig.text(0.5, 1 - 0.06 / height, f"fill in the blank: {sentence}\nthe model's top "
             f"{len(shown[0][1])} words for each blank", ha="center", va="top", fontsize=8.5)
    message = result.summary()
    if len(result.predictions) > MAX_PANELS:
        message += f" (bars drawn for the first {MAX_PANELS} of {len(result.predictions)} blanks)"
    return fig, message


def fill_mask_figure(model: bert.BERTModel, vocab: Vocab, sentence: str, top_k: int = TOP_K):
    """:func:`fill_mask_predictions` then :func:`draw_fill_mask`: ``(figure, message)``."""
    return draw_fill_mask(fill_mask_predictions(model, vocab, sentence, top_k))


# ---------------------------------------------------------------------------------------------
# 3. The attention heads of one layer
# ---------------------------------------------------------------------------------------------


@dataclass
class AttentionMaps:
    """The self-attention of the encoder for one input, from :func:`attention_maps`.

    ``tokens`` ``<cls> a <sep> [b <sep>]`` as typed; ``segments`` 0/1 per token; ``weights`` one
    ``(heads, steps, steps)`` tensor per layer (rows: queries, columns: keys); ``unknown`` words.
    """

    tokens: list[str]
    segments: list[int]
    weights: list[torch.Tensor]
    unknown: list[str]

    @property
    def boundary(self) -> int | None:
        """Index of the first ``<sep>`` if there is a second segment, else ``None``."""
        return self.segments.index(1) - 1 if 1 in self.segments else None

    def cls_targets(self, layer: int) -> list[tuple[int, float]]:
        """For every head of ``layer``: the position ``<cls>`` attends to most, and that weight."""
        row = self.weights[layer][:, 0, :]
        best = row.max(-1)
        return [(int(i), float(v)) for v, i in zip(best.values, best.indices, strict=True)]

    def summary(self, layer: int) -> str:
        """One line: for every head, the token that receives most attention from ``<cls>``."""
        parts = [f"head {h + 1} -> '{self.tokens[i]}' (position {i}, {w:.2f})" for h, (i, w) in
                 enumerate(self.cls_targets(layer))]
        return (f"Layer {layer + 1}, what <cls> attends to most: " + ", ".join(parts)
                + _unknown_note(self.unknown) + ".")


@torch.no_grad()
def attention_maps(model: bert.BERTModel, vocab: Vocab, sentence_a: str,
                   sentence_b: str = "") -> AttentionMaps:
    """Run the encoder on ``<cls> a <sep> [b <sep>]`` (evaluation mode) and keep every layer's weights.

    ``sentence_b`` empty: a single sentence. Raises ``ValueError`` for an empty first sentence or a
    pair longer than the model reads (or than :data:`MAX_ATTENTION_TOKENS`, the heatmaps' limit).
    """
    _check_vocab(vocab)
    words_a = _words(sentence_a, "first sentence")
    words_b = tokenize_english(sentence_b) if isinstance(sentence_b, str) and sentence_b.strip() else None
    total = len(words_a) + 2 + (len(words_b) + 1 if words_b else 0)
    limit = min(model.encoder.max_len, MAX_ATTENTION_TOKENS)
    if total > limit:
        reason = "this model reads" if limit == model.encoder.max_len else "the heatmaps show"
        raise ValueError(f"The input has {total} tokens with <cls> and <sep>; {reason} at most {limit}: "
                         "shorten the sentences.")
    was_training = model.training
    model.eval()
    try:
        device = model_device(model)
        X, segments, valid_lens = bert.encode_pair(vocab, words_a, words_b, device=device)
        model.encoder(X, segments, valid_lens)
        weights = [w[0].detach().float().cpu() for w in model.encoder.attention_weights]
    finally:
        model.train(was_training)
    tokens = [CLS, *words_a, SEP, *([*words_b, SEP] if words_b else [])]
    return AttentionMaps(tokens, segments[0].tolist(), weights,
                         unknown_words(vocab, [*words_a, *(words_b or [])]))


def draw_attention_heads(maps: AttentionMaps, layer: int = 0):
    """One heatmap per head of ``layer`` (0-based), queries as rows, keys as columns: ``(figure, message)``.

    Tokens label both axes (unknown words in vermillion); a vermillion line marks the boundary
    between the two segments; one colour scale for all heads of the layer.
    """
    num_layers = len(maps.weights)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < num_layers:
        raise ValueError(f"layer must be 0 to {num_layers - 1} (this encoder has {num_layers} layers), got "
                         f"{layer!r}.")
    weights = maps.weights[layer]
    heads, steps = weights.shape[0], len(maps.tokens)
    nrows = math.ceil(heads / 3)  # at most three panels a row, rows as full as possible
    ncols = math.ceil(heads / nrows)
    side = min(3.0, max(1.9, 0.1 * steps))
    fontsize = 7 if steps <= 16 else 6 if steps <= 26 else 5
    left, label, gap, bar, top = 0.8, 0.8, 0.22, 0.9, 0.78
    width = left + ncols * side + (ncols - 1) * gap + bar
    height = top + nrows * (side + label)
    fig = _figure(width, height)
    vmax = float(weights.max())
    labels = [_short(tok, 10) for tok in maps.tokens]
    unknown = set(maps.unknown)
    boundary = maps.boundary
    pad = 0.6 * fontsize * max(map(len, labels)) + 3  # points: room for the longest token label
    image = None
    for h in range(heads):
        r, c = divmod(h, ncols)
        x0 = left + c * (side + gap)
        y0 = height - top - r * (side + label) - side
        ax = fig.add_axes((x0 / width, y0 / height, side / width, side / height))
        image = ax.imshow(weights[h].numpy(), cmap="viridis", vmin=0.0, vmax=vmax, interpolation="nearest",
                          aspect="auto")
        # Token labels as plain texts, not ticks: a tick is five artists, and these figures must be fast.
        ax.set_xticks([])
        ax.set_yticks([])
        for i, (tok, text) in enumerate(zip(maps.tokens, labels, strict=True)):
            color = UNKNOWN_COLOR if tok in unknown else "black"
            ax.text(i, -0.01, text, transform=ax.get_xaxis_transform(), rotation=90, ha="center", va="top",
                    fontsize=fontsize, color=color)
            if c == 0:
                ax.text(-0.01, i, text, transform=ax.get_yaxis_transform(), ha="right", va="center",
                        fontsize=fontsize, color=color)
        if boundary is not None:
            ax.axhline(boundary + 0.5, color=UNKNOWN_COLOR, linewidth=1.2)
            ax.axvline(boundary + 0.5, color=UNKNOWN_COLOR, linewidth=1.2)
        ax.set_title(f"head {h + 1}", fontsize=8.5, pad=3)
        ax.set_xlabel("key", fontsize=7.5, labelpad=pad)
        if c == 0:
            ax.set_ylabel("query", fontsize=7.5, labelpad=pad)
    cax = fig.add_axes(((width - bar + 0.12) / width, (height - top - side) / height, 0.1 / width,
                        side / height))
    fig.colorbar(image, cax=cax).ax.tick_params(labelsize=7)
    cax.set_ylabel("attention weight", fontsize=7.5)
    pair = "\nvermillion lines: the boundary between the two segments" if boundary is not None else ""
    fig.text(0.5, 1 - 0.06 / height, f"self-attention of layer {layer + 1} of {num_layers}, one panel per "
             f"head\nrows: queries, columns: the keys they attend to{pair}", ha="center", va="top",
             fontsize=8)
    return fig, maps.summary(layer)


def attention_figure(model: bert.BERTModel, vocab: Vocab, sentence_a: str, sentence_b: str = "",
                     layer: int = 0):
    """:func:`attention_maps` then :func:`draw_attention_heads`: ``(figure, message)``."""
    return draw_attention_heads(attention_maps(model, vocab, sentence_a, sentence_b), layer)


# ---------------------------------------------------------------------------------------------
# The explorers
# ---------------------------------------------------------------------------------------------
# The logic of each explorer is a mixin here; the public class, the mixin plus
# helpers.widgets.PlotExplorer, is created on first access by the module's __getattr__, so
# importing helpers.bert_explorer imports no widget code.

_SLIDER = {"continuous_update": False, "style": {"description_width": "initial"}}


def _text(value: str, description: str, width: str = "640px"):
    import ipywidgets as w

    return w.Text(value=value, description=description, continuous_update=False,
                  style={"description_width": "initial"}, layout=w.Layout(width=width))


class _Latest:
    """Keeps the data behind the latest picture in ``result`` (``None`` if the update failed)."""

    result = None

    def _show(self, compute, draw):
        self.result = None
        result = compute()
        fig, message = draw(result)
        self.result = result
        return fig, html.escape(message)


class _MaskingExplorerLogic(_Latest):
    """The masking explorer of chapter 10: what BERT's masking does to one sentence.

    ``MaskingExplorer(vocab, model=None, sentence=..., mask_ratio=0.15, to_mask=0.8, to_random=0.1,
    seed=0)``. Controls (``explorer.controls``): ``sentence`` (text, applied on Enter),
    ``mask_ratio`` (0.05 to 0.5), ``to_mask`` and ``to_random`` (the shares of the chosen words that
    become ``<mask>`` and a random word; the rest stay unchanged; shares adding up to more than 1
    are refused with a message), ``seed``. Every update runs :func:`mask_sentence` and
    :func:`draw_masking`; ``explorer.result`` is the latest :class:`MaskingExample`. With a
    ``model``, its top-5 words under every chosen word. A :class:`helpers.widgets.PlotExplorer`:
    ``message``, ``image``, ``seconds``, ``widget``.
    """

    def __init__(self, vocab: Vocab, model: bert.BERTModel | None = None,
                 sentence: str = DEFAULT_MASKING_SENTENCE, mask_ratio: float = bert.MASK_RATIO,
                 to_mask: float = bert.MASK_SPLIT[0], to_random: float = bert.MASK_SPLIT[1], seed: int = 0,
                 *, strict: bool | None = None) -> None:
        import ipywidgets as w

        _check_vocab(vocab)
        self.vocab, self.model = vocab, model
        controls = {
            "sentence": _text(sentence, "sentence"),
            "mask_ratio": w.FloatSlider(value=mask_ratio, min=0.05, max=0.5, step=0.05,
                                        description="masking ratio", readout_format=".2f", **_SLIDER),
            "to_mask": w.FloatSlider(value=to_mask, min=0.0, max=1.0, step=0.05,
                                     description="share -> <mask>", readout_format=".2f", **_SLIDER),
            "to_random": w.FloatSlider(value=to_random, min=0.0, max=1.0, step=0.05,
                                       description="share -> random word", readout_format=".2f", **_SLIDER),
            "seed": w.IntSlider(value=seed, min=0, max=99, description="seed", **_SLIDER),
        }
        super().__init__(controls, self._draw, busy="masking...", tight=False, strict=strict)

    def _draw(self, sentence: str, mask_ratio: float, to_mask: float, to_random: float, seed: int):
        return self._show(lambda: mask_sentence(self.vocab, sentence, mask_ratio, to_mask, to_random, seed,
                                                self.model), draw_masking)


class _FillMaskExplorerLogic(_Latest):
    """The fill-in-the-blank explorer of chapter 10: the model's top words for every ``<mask>``.

    ``FillMaskExplorer(model, vocab, sentence=..., top_k=5)``. One control, ``sentence`` (text,
    applied on Enter), with one or more ``<mask>`` or ``[MASK]``. Every update runs
    :func:`fill_mask_predictions` (:func:`helpers.bert.fill_mask`) and :func:`draw_fill_mask`;
    ``explorer.result`` is the latest :class:`FillMaskResult`. A sentence without a blank, too
    long, or of unknown words only gets a warning line. A :class:`helpers.widgets.PlotExplorer`.
    """

    def __init__(self, model: bert.BERTModel, vocab: Vocab, sentence: str = DEFAULT_FILL_MASK_SENTENCE,
                 top_k: int = TOP_K, *, strict: bool | None = None) -> None:
        _check_vocab(vocab)
        self.model, self.vocab, self.top_k = model, vocab, top_k
        controls = {"sentence": _text(sentence, "sentence with <mask>")}
        super().__init__(controls, self._draw, busy="predicting...", tight=False, strict=strict)

    def _draw(self, sentence: str):
        return self._show(lambda: fill_mask_predictions(self.model, self.vocab, sentence, self.top_k),
                          draw_fill_mask)


class _AttentionHeadsExplorerLogic(_Latest):
    """The attention-heads explorer of chapter 10: every head of one layer for a sentence pair.

    ``AttentionHeadsExplorer(model, vocab, sentence_a=..., sentence_b=..., layer=0)``. Controls:
    ``sentence_a`` and ``sentence_b`` (text, applied on Enter; an empty second sentence gives a
    single-sentence input) and ``layer`` (a dropdown, 0-based values labelled 1, 2, ...). Every
    update runs :func:`attention_maps` and :func:`draw_attention_heads`; ``explorer.result`` is
    the latest :class:`AttentionMaps`. The message names, per head, the token ``<cls>`` attends to
    most. A :class:`helpers.widgets.PlotExplorer`.
    """

    def __init__(self, model: bert.BERTModel, vocab: Vocab, sentence_a: str = DEFAULT_SENTENCE_A,
                 sentence_b: str = DEFAULT_SENTENCE_B, layer: int = 0, *, strict: bool | None = None) -> None:
        import ipywidgets as w

        _check_vocab(vocab)
        self.model, self.vocab = model, vocab
        num_layers = len(model.encoder.blks)
        if not 0 <= layer < num_layers:
            raise ValueError(f"layer must be 0 to {num_layers - 1} (this encoder has {num_layers} layers), "
                             f"got {layer!r}.")
        controls = {
            "sentence_a": _text(sentence_a, "sentence A", "420px"),
            "sentence_b": _text(sentence_b, "sentence B", "420px"),
            "layer": w.Dropdown(options=[(str(i + 1), i) for i in range(num_layers)], value=layer,
                                description="layer"),
        }
        super().__init__(controls, self._draw, busy="attending...", tight=False, strict=strict)

    def _draw(self, sentence_a: str, sentence_b: str, layer: int):
        return self._show(lambda: attention_maps(self.model, self.vocab, sentence_a, sentence_b),
                          lambda maps: draw_attention_heads(maps, layer))


_EXPLORERS = {"MaskingExplorer": _MaskingExplorerLogic, "FillMaskExplorer": _FillMaskExplorerLogic,
              "AttentionHeadsExplorer": _AttentionHeadsExplorerLogic}


def __getattr__(name: str):
    """Create ``MaskingExplorer``, ``FillMaskExplorer`` and ``AttentionHeadsExplorer`` on first access."""
    if name in _EXPLORERS:
        from helpers.widgets import PlotExplorer

        logic = _EXPLORERS[name]
        cls = type(name, (logic, PlotExplorer), {"__doc__": logic.__doc__, "__module__": __name__,
                                                 "__qualname__": name})
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPLORERS})
