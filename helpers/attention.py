"""Attention: masked softmax, scoring functions, multi-head attention, positional encoding,
attention masks (presets and the attention-mask editor) and the Bahdanau translator.

Chapter 6 teaches these pieces; chapter 7 (the Transformer) and later chapters reuse them.
Conventions (as in d2l, every tensor batch-first):

* ``queries`` ``(batch, num_queries, query_size)``, ``keys`` ``(batch, num_keys, key_size)``,
  ``values`` ``(batch, num_keys, value_size)``;
* ``valid_lens`` is ``None``, 1-D ``(batch,)`` (one length per sequence: keys at or after it are
  padding) or 2-D ``(batch, num_queries)`` (one length per query, e.g. the causal mask);
* masked scores are *replaced* by ``-1e6`` before the softmax (d2l's ``masked_softmax``), so a
  query whose keys are all masked gets uniform weights over all its keys, never NaN;
* a boolean ``mask`` is ``True`` where a query may attend to a key (as the boolean ``attn_mask``
  of ``F.scaled_dot_product_attention``; note that ``nn.MultiheadAttention``'s boolean masks mean
  the opposite: ``True`` there marks what is *blocked*).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import ipywidgets as w
import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.nn import functional as F

from helpers import seq2seq
from helpers.widgets import PlotExplorer, warning_html

MASKED_SCORE = -1e6
"""The score that masked positions get before the softmax (d2l's value)."""

# ---------------------------------------------------------------------------------------------
# Masked softmax and boolean masks
# ---------------------------------------------------------------------------------------------


def valid_len_mask(valid_lens: torch.Tensor | None, num_queries: int, num_keys: int,
                   batch_size: int | None = None) -> torch.Tensor | None:
    """The boolean mask ``(batch, num_queries, num_keys)`` of the keys before ``valid_lens``.

    ``valid_lens`` is 1-D ``(batch,)`` (the same length for every query of a sequence) or 2-D
    ``(batch, num_queries)``. Returns ``None`` when ``valid_lens`` is ``None``.
    """
    if valid_lens is None:
        return None
    if valid_lens.ndim == 1:
        lens = valid_lens[:, None, None]
    elif valid_lens.ndim == 2:
        if valid_lens.shape[1] != num_queries:
            raise ValueError(f"2-D valid_lens must have one length per query: shape (batch, {num_queries}), "
                             f"got {tuple(valid_lens.shape)}.")
        lens = valid_lens[:, :, None]
    else:
        raise ValueError(f"valid_lens must be 1-D (batch,) or 2-D (batch, queries), got shape "
                         f"{tuple(valid_lens.shape)}.")
    if batch_size is not None and len(valid_lens) != batch_size:
        raise ValueError(f"valid_lens has {len(valid_lens)} rows but the scores have a batch of "
                         f"{batch_size}; give one valid length per sequence.")
    keys = torch.arange(num_keys, device=valid_lens.device)
    return keys[None, None, :] < lens


def masked_softmax(X: torch.Tensor, valid_lens: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the last axis of ``X`` (batch, queries, keys), ignoring keys past ``valid_lens``.

    d2l's semantics: the scores of masked keys are replaced by ``-1e6`` before the softmax, so
    they get weight 0 (exactly, in float32) whenever a query has at least one valid key; a
    query with no valid key (valid length 0) gets uniform weights ``1/num_keys``, not NaN.
    """
    if valid_lens is None:
        return F.softmax(X, dim=-1)
    if X.ndim != 3:
        raise ValueError("masked_softmax expects scores of shape (batch, queries, keys), "
                         f"got {tuple(X.shape)}.")
    mask = valid_len_mask(valid_lens.to(X.device), X.shape[1], X.shape[2], batch_size=X.shape[0])
    return F.softmax(X.masked_fill(~mask, MASKED_SCORE), dim=-1)


def attention_weights(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax of ``scores`` over the keys (last axis) that ``mask`` allows.

    ``mask`` is boolean, ``True`` where a query may attend to a key, and broadcastable to
    ``scores`` (e.g. one ``(queries, keys)`` mask for a whole batch). Masked scores are replaced
    by ``-1e6`` (as :func:`masked_softmax`): a row with every key masked therefore gets uniform
    weights over all keys. :func:`fully_masked_rows` finds such rows so that they can be reported.
    """
    if mask is None:
        return F.softmax(scores, dim=-1)
    mask = torch.as_tensor(mask, device=scores.device)
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a boolean tensor (True = may attend), got dtype {mask.dtype}; "
                         "use mask.bool() or a comparison such as mask > 0.")
    try:
        torch.broadcast_shapes(mask.shape, scores.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit scores of shape "
                         f"{tuple(scores.shape)}; it must be broadcastable, e.g. (queries, keys).") from None
    return F.softmax(scores.masked_fill(~mask, MASKED_SCORE), dim=-1)


def fully_masked_rows(mask: torch.Tensor) -> torch.Tensor:
    """Indices of the rows (queries) of a 2-D boolean mask in which every key is masked."""
    return torch.nonzero(~mask.any(dim=-1)).flatten()


def additive_mask(mask: torch.Tensor, value: float = MASKED_SCORE) -> torch.Tensor:
    """A boolean mask as a float mask to *add* to the scores: 0 where allowed, ``value`` elsewhere.

    This is the float ``attn_mask`` of ``F.scaled_dot_product_attention``. For every query with
    at least one allowed key it gives the same weights as replacing the scores.
    """
    return torch.zeros(mask.shape).masked_fill(~mask, value)


# ---------------------------------------------------------------------------------------------
# Scoring functions
# ---------------------------------------------------------------------------------------------


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) attention: ``a(q, k) = w_v^T tanh(W_q q + W_k k)``.

    ``forward(queries, keys, values, valid_lens)`` returns ``(batch, queries, value_size)`` and
    keeps the weights in ``self.attention_weights`` ``(batch, queries, keys)``. ``attend`` takes
    queries and keys already projected, so a decoder can project the keys once per sentence.
    """

    def __init__(self, query_size: int, key_size: int, num_hiddens: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.W_q = nn.Linear(query_size, num_hiddens, bias=False)
        self.W_k = nn.Linear(key_size, num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.attention_weights: torch.Tensor | None = None

    def forward(self, queries, keys, values, valid_lens=None):
        return self.attend(self.W_q(queries), self.W_k(keys), values, valid_lens)

    def attend(self, queries_proj, keys_proj, values, valid_lens=None):
        """Attention with projected queries ``W_q q`` and keys ``W_k k``."""
        features = torch.tanh(queries_proj[:, :, None, :] + keys_proj[:, None, :, :])
        scores = self.w_v(features).squeeze(-1)  # (batch, queries, keys)
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)


class DotProductAttention(nn.Module):
    """Scaled dot-product attention: ``softmax(Q K^T / sqrt(d)) V`` with masked softmax.

    Keeps the weights in ``self.attention_weights`` ``(batch, queries, keys)``.
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.attention_weights: torch.Tensor | None = None

    def forward(self, queries, keys, values, valid_lens=None):
        d = queries.shape[-1]
        scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(d)
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)


# ---------------------------------------------------------------------------------------------
# Multi-head attention and positional encoding
# ---------------------------------------------------------------------------------------------


def split_heads(X: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(batch, steps, num_heads * d)`` -> ``(batch * num_heads, steps, d)``: one head per row."""
    B, T, D = X.shape
    d = D // num_heads
    return X.reshape(B, T, num_heads, d).transpose(1, 2).reshape(B * num_heads, T, d)


def merge_heads(X: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Inverse of :func:`split_heads`: ``(batch * heads, steps, d)`` -> ``(batch, steps, heads * d)``."""
    BH, T, d = X.shape
    B = BH // num_heads
    return X.reshape(B, num_heads, T, d).transpose(1, 2).reshape(B, T, num_heads * d)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention with ``num_heads`` heads of size ``num_hiddens / num_heads``.

    ``forward(queries, keys, values, valid_lens)`` returns ``(batch, queries, num_hiddens)``.
    ``valid_lens`` (1-D or 2-D) masks keys as in :func:`masked_softmax`, for every head.
    ``self.attention_weights`` is ``(batch, num_heads, queries, keys)`` after a call. With
    ``bias=True`` (the default, as ``nn.MultiheadAttention``) it computes the same function as
    ``nn.MultiheadAttention`` with ``in_proj = [W_q; W_k; W_v]`` and ``out_proj = W_o``.
    """

    def __init__(self, num_hiddens: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 query_size: int | None = None, key_size: int | None = None,
                 value_size: int | None = None) -> None:
        super().__init__()
        if num_hiddens % num_heads:
            raise ValueError(f"num_hiddens={num_hiddens} must be divisible by num_heads={num_heads}.")
        self.num_heads = num_heads
        self.W_q = nn.Linear(query_size or num_hiddens, num_hiddens, bias=bias)
        self.W_k = nn.Linear(key_size or num_hiddens, num_hiddens, bias=bias)
        self.W_v = nn.Linear(value_size or num_hiddens, num_hiddens, bias=bias)
        self.W_o = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.attention = DotProductAttention(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        h = self.num_heads
        Q, K, V = (split_heads(self.W_q(queries), h), split_heads(self.W_k(keys), h),
                   split_heads(self.W_v(values), h))
        if valid_lens is not None:
            valid_lens = valid_lens.repeat_interleave(h, dim=0)  # the same mask for every head
        output = self.attention(Q, K, V, valid_lens)  # (batch * h, queries, d)
        return self.W_o(merge_heads(output, h))

    @property
    def attention_weights(self) -> torch.Tensor | None:
        weights = self.attention.attention_weights
        if weights is None:
            return None
        return weights.reshape(-1, self.num_heads, *weights.shape[1:])

    def load_from_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a ``nn.MultiheadAttention`` (same sizes) into this module."""
        with torch.no_grad():
            for W, weight in zip((self.W_q, self.W_k, self.W_v), mha.in_proj_weight.chunk(3), strict=True):
                W.weight.copy_(weight)
            self.W_o.weight.copy_(mha.out_proj.weight)
            if mha.in_proj_bias is not None:
                for W, bias in zip((self.W_q, self.W_k, self.W_v), mha.in_proj_bias.chunk(3), strict=True):
                    W.bias.copy_(bias)
                self.W_o.bias.copy_(mha.out_proj.bias)
        return self


def positional_encoding(max_len: int, num_hiddens: int) -> torch.Tensor:
    """The sin/cos positional encoding ``P`` ``(max_len, num_hiddens)`` of "Attention is all you need".

    ``P[i, 2j] = sin(i / 10000^(2j/d))`` and ``P[i, 2j+1] = cos(i / 10000^(2j/d))``.
    """
    if max_len < 1 or num_hiddens < 1:
        raise ValueError(f"max_len and num_hiddens must be positive, got {max_len} and {num_hiddens}.")
    positions = torch.arange(max_len, dtype=torch.float32)[:, None]
    freqs = 1 / torch.pow(10000, torch.arange(0, num_hiddens, 2, dtype=torch.float32) / num_hiddens)
    angles = positions * freqs  # (max_len, ceil(d / 2))
    P = torch.zeros(max_len, num_hiddens)
    P[:, 0::2] = torch.sin(angles)
    P[:, 1::2] = torch.cos(angles[:, : num_hiddens // 2])
    return P


class PositionalEncoding(nn.Module):
    """Adds the sin/cos positional encoding to ``X`` (batch, steps, num_hiddens), then dropout.

    ``offset`` is the position of ``X``'s first step (a decoder that reads one token at a time
    passes the number of tokens it has already read).
    """

    def __init__(self, num_hiddens: int, dropout: float = 0.0, max_len: int = 1000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("P", positional_encoding(max_len, num_hiddens)[None], persistent=False)

    def forward(self, X: torch.Tensor, offset: int = 0) -> torch.Tensor:
        end = offset + X.shape[1]
        if end > self.P.shape[1]:
            raise ValueError(f"Positions up to {end} but the encoding was built for max_len="
                             f"{self.P.shape[1]}; create PositionalEncoding with a larger max_len.")
        return self.dropout(X + self.P[:, offset:end].to(X.dtype))


# ---------------------------------------------------------------------------------------------
# Attention masks: presets and their cost
# ---------------------------------------------------------------------------------------------

PRESET_LABELS = {
    "none": "none (full attention)",
    "padding": "padding (valid length)",
    "causal": "causal",
    "local": "local window k",
    "strided": "strided",
    "global": "global tokens",
    "bigbird": "BigBird (local + global + random)",
}
"""The name of each preset in the editor's dropdown."""

PRESETS = {
    "none": "full attention: every query attends to every key",
    "padding": "padding: keys at or after the valid length are masked",
    "causal": "causal: query i attends to keys j <= i",
    "local": "local window: |i - j| <= k",
    "strided": "strided: |i - j| is a multiple of the stride",
    "global": "global tokens: the first tokens attend to and are attended by all (plus the diagonal)",
    "bigbird": "BigBird: local window + global tokens + random keys",
}
"""The presets of :func:`mask_from_preset`, with a one-line description each."""


def mask_from_preset(preset: str, num_tokens: int, k: int = 1, stride: int = 2,
                     valid_len: int | None = None, num_global: int = 1, num_random: int = 1,
                     seed: int = 0) -> torch.Tensor:
    """A boolean attention mask ``(num_tokens, num_tokens)``: ``True`` where query i may attend to key j.

    Presets (see :data:`PRESETS`): ``'none'``, ``'padding'``, ``'causal'``, ``'local'`` (window
    ``k`` on each side), ``'strided'`` (every ``stride``-th key, counted from the query),
    ``'global'`` (the first ``num_global`` tokens are global), ``'bigbird'`` (local ``k`` +
    ``num_global`` global tokens + ``num_random`` random keys per query, drawn with ``seed``).
    ``valid_len`` applies to every preset: keys at or after it are padding (masked). The
    ``'padding'`` preset is ``'none'`` with that key mask.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be at least 1, got {num_tokens}.")
    for name, value, low in (("k", k, 0), ("stride", stride, 1), ("num_global", num_global, 0),
                             ("num_random", num_random, 0)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    i = torch.arange(num_tokens)[:, None]
    j = torch.arange(num_tokens)[None, :]
    distance = (i - j).abs()
    local = distance <= k
    glob = (i < num_global) | (j < num_global) | (i == j)
    if preset in ("none", "padding"):
        mask = torch.ones(num_tokens, num_tokens, dtype=torch.bool)
    elif preset == "causal":
        mask = j <= i
    elif preset == "local":
        mask = local
    elif preset == "strided":
        mask = distance % stride == 0
    elif preset == "global":
        mask = glob
    else:  # bigbird
        gen = torch.Generator().manual_seed(seed)
        random_keys = torch.rand(num_tokens, num_tokens, generator=gen).argsort(dim=1)[:, :num_random]
        rand = torch.zeros(num_tokens, num_tokens, dtype=torch.bool)
        rand[torch.arange(num_tokens)[:, None], random_keys] = True
        mask = local | glob | rand
    if valid_len is not None:
        if int(valid_len) != valid_len or not 0 <= valid_len <= num_tokens:
            raise ValueError(f"valid_len must be an integer from 0 to {num_tokens}, got {valid_len!r}.")
        mask = mask & (j < valid_len)
    return mask.expand(num_tokens, num_tokens).clone()


def attended_pairs(mask: torch.Tensor) -> int:
    """How many (query, key) pairs a mask lets attention compute (``N^2`` without a mask)."""
    return int(mask.sum())


# ---------------------------------------------------------------------------------------------
# The attention-mask editor
# ---------------------------------------------------------------------------------------------


def draw_attention_mask(tokens: Sequence[str], scores: torch.Tensor, mask: torch.Tensor,
                        title: str = ""):
    """The plain function behind :class:`AttentionMaskExplorer`: ``(figure, message)``.

    Draws the mask (left) and the attention weights ``attention_weights(scores, mask)`` (right),
    queries as rows and keys as columns. The message counts the attended pairs against ``N^2``
    and warns about every query whose keys are all masked (its row shows the weights the
    implementation produces: uniform over all keys).
    """
    from matplotlib.patches import Rectangle

    n = len(tokens)
    if scores.shape != (n, n) or mask.shape != (n, n):
        raise ValueError(f"scores and mask must be ({n}, {n}) for {n} tokens, got "
                         f"{tuple(scores.shape)} and {tuple(mask.shape)}.")
    weights = attention_weights(scores, mask)
    empty = fully_masked_rows(mask).tolist()
    labels = [f"{t} ({i})" for i, t in enumerate(tokens)]
    # A fixed layout (no tight_layout pass) keeps the editor's update fast.
    fig, (ax_mask, ax_w) = plt.subplots(1, 2, figsize=(8.4, 4.0), layout="none")
    fig.subplots_adjust(left=0.14, right=0.93, bottom=0.26, top=0.86, wspace=0.32)
    ax_mask.imshow(mask.numpy(), cmap="Greys", vmin=-0.25, vmax=1.25, interpolation="nearest")
    ax_w.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    for ax, name in ((ax_mask, "mask (dark = may attend)"), (ax_w, "attention weights")):
        ax.grid(False)
        ax.set_xticks(range(n), labels if ax is ax_mask else [str(i) for i in range(n)],
                      rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels if ax is ax_mask else [str(i) for i in range(n)], fontsize=7)
        ax.set_xlabel("key")
        ax.set_title(name, fontsize=9)
        for r in empty:
            ax.add_patch(Rectangle((-0.5, r - 0.5), n, 1, fill=False, edgecolor="#D55E00", linewidth=2))
    ax_mask.set_ylabel("query")
    fig.colorbar(ax_w.images[0], ax=ax_w, fraction=0.046, pad=0.04, label="weight")
    pairs = attended_pairs(mask)
    fig.suptitle(f"{title}{': ' if title else ''}{pairs} of {n}x{n} = {n * n} pairs attended", fontsize=10)
    message = f"<b>{pairs}</b> of {n}&sup2; = {n * n} query-key pairs attended ({pairs / (n * n):.0%})"
    if empty:
        rows = ", ".join(f"{i} '{tokens[i]}'" for i in empty)
        warning = warning_html(
            f"{len(empty)} of {n} queries have every key masked (rows {rows}): masked softmax gives "
            f"them uniform weights, 1/{n} on every key, masked ones included (all their scores are "
            "-1e6), so they average the whole sentence instead of attending to nothing; other "
            "implementations give NaN. Allow at least one key in each row (e.g. the diagonal).")
        message = f"{warning} <br>{message}"
    return fig, message


class AttentionMaskExplorer(PlotExplorer):
    """The attention-mask editor: presets, sliders and a clickable grid over a short sentence.

    Controls (``explorer.controls``): ``preset`` (Dropdown), ``k`` (local window), ``stride``,
    ``valid_len``, ``num_global``, ``num_random`` (sliders). Changing one of them rewrites the
    mask from the preset; ``explorer.cells[i][j]`` (ToggleButtons, tooltip ``"query i, key j"``)
    then toggle single query-key cells. The picture shows the mask and
    :func:`attention_weights` of ``scores`` under it; the status line counts the attended pairs
    and warns about queries with every key masked. Same interface as
    :class:`helpers.widgets.PlotExplorer` (it is one): ``controls``, ``message``, ``image``,
    ``seconds`` (time of the latest update, grid included) and ``widget``.
    """

    def __init__(self, tokens: Sequence[str], scores: torch.Tensor | None = None,
                 preset: str = "causal", k: int = 2, stride: int = 3,
                 valid_len: int | None = None, num_global: int = 1, num_random: int = 1,
                 seed: int = 0, title: str = "") -> None:
        n = len(tokens)
        if not 2 <= n <= 24:
            raise ValueError(f"The editor needs a sentence of 2 to 24 tokens, got {n}; "
                             "shorten it (the grid has one button per query-key pair).")
        self.tokens = list(tokens)
        if scores is None:
            scores = torch.zeros(n, n)
        self.scores = torch.as_tensor(scores, dtype=torch.float32).detach().cpu()
        if self.scores.shape != (n, n):
            raise ValueError(f"scores must be ({n}, {n}) for {n} tokens, got {tuple(self.scores.shape)}.")
        self.seed, self.title = seed, title
        self._syncing = False
        self._applied: dict | None = None  # control values the grid was last rewritten for
        self.preset_mask = torch.ones(n, n, dtype=torch.bool)
        slider = {"continuous_update": False, "style": {"description_width": "initial"}}
        controls = {
            "preset": w.Dropdown(options=[(label, name) for name, label in PRESET_LABELS.items()],
                                 value=preset, description="preset"),
            "k": w.IntSlider(value=k, min=0, max=n - 1, description="window k", **slider),
            "stride": w.IntSlider(value=stride, min=1, max=n, description="stride", **slider),
            "valid_len": w.IntSlider(value=n if valid_len is None else valid_len, min=0, max=n,
                                     description="valid length", **slider),
            "num_global": w.IntSlider(value=num_global, min=0, max=n, description="global tokens", **slider),
            "num_random": w.IntSlider(value=num_random, min=0, max=n, description="random keys", **slider),
        }
        cell = w.Layout(width="24px", height="22px", padding="0px", margin="0px")
        self.cells = [[w.ToggleButton(value=True, tooltip=f"query {i}, key {j}", layout=cell)
                       for j in range(n)] for i in range(n)]
        for row in self.cells:
            for button in row:
                button.observe(self._on_cell, names="value")
        self.reset_button = w.Button(description="reset cells", tooltip="rewrite the grid from the preset")
        self.reset_button.on_click(lambda _: self.reset_cells())
        super().__init__(controls, self._draw, busy="updating...", extra=[self.reset_button],
                         tight=False)  # a fixed layout: skip the second rendering, a third faster
        header = [w.Label("q \\ k", layout=w.Layout(width="90px"))] + [
            w.Label(str(j), layout=w.Layout(width="24px")) for j in range(n)]
        rows = [w.HBox(header)] + [
            w.HBox([w.Label(f"{i} {t}"[:12], layout=w.Layout(width="90px")), *row])
            for i, (t, row) in enumerate(zip(self.tokens, self.cells, strict=True))]
        self.grid = w.VBox(rows, layout=w.Layout(margin="0px 12px 0px 0px"))
        self.widget = w.VBox([
            w.HBox([*self.controls.values(), self.reset_button], layout=w.Layout(flex_flow="row wrap")),
            self.status, w.HBox([self.grid, self.image])])

    # --- the state of the grid -------------------------------------------------------------
    @property
    def mask(self) -> torch.Tensor:
        """The mask the grid shows (``True`` = the query may attend to the key)."""
        return torch.tensor([[b.value for b in row] for row in self.cells], dtype=torch.bool)

    def _write_grid(self, mask: torch.Tensor) -> None:
        self._syncing = True
        try:
            for row, values in zip(self.cells, mask.tolist(), strict=True):
                for button, value in zip(row, values, strict=True):
                    if button.value != value:
                        button.value = value
        finally:
            self._syncing = False

    def reset_cells(self) -> None:
        """Undo the edited cells: rewrite the grid from the preset and redraw."""
        self._applied = None
        self.refresh()

    def toggle(self, query: int, key: int) -> None:
        """Toggle one query-key cell (as clicking its button does)."""
        self.cells[query][key].value = not self.cells[query][key].value

    def _on_cell(self, change) -> None:
        if not self._syncing:
            self.refresh()

    def _draw(self, preset, k, stride, valid_len, num_global, num_random):
        values = dict(preset=preset, k=k, stride=stride, valid_len=valid_len,
                      num_global=num_global, num_random=num_random)
        if values != self._applied:
            self.preset_mask = mask_from_preset(preset, len(self.tokens), k, stride, valid_len,
                                                num_global, num_random, self.seed)
            self._write_grid(self.preset_mask)
            self._applied = values
        mask = self.mask
        fig, message = draw_attention_mask(self.tokens, self.scores, mask,
                                           title=self.title or f"preset '{preset}'")
        edited = int((mask != self.preset_mask).sum())
        if edited:
            message += f" ({edited} cell{'s' * (edited != 1)} edited by hand)"
        return fig, message


# ---------------------------------------------------------------------------------------------
# The Bahdanau translator (a GRU encoder-decoder with additive attention)
# ---------------------------------------------------------------------------------------------


class AttentionDecoder(seq2seq.Decoder):
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
                          num_layers=2, dropout=0.2) -> seq2seq.EncoderDecoder:
    """The attention translator of chapter 6: the packed GRU encoder + :class:`AttentionDecoder`."""
    return seq2seq.EncoderDecoder(
        seq2seq.Seq2SeqEncoder(src_vocab_size, embed_size, num_hiddens, num_layers, dropout),
        AttentionDecoder(tgt_vocab_size, embed_size, num_hiddens, num_layers, dropout),
    )

