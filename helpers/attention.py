"""Attention layers: masked softmax, scoring functions, multi-head attention, positional encoding.

Chapter 6 teaches these pieces; chapter 7 (the Transformer), BERT and later chapters reuse them.
This module is model code only: it imports neither ipywidgets nor ``matplotlib.pyplot`` (a test
checks it), so a script or a model module can import it cheaply. The attention-mask presets and
the mask editor are in :mod:`helpers.attention_masks`; the Bahdanau translator, which uses
:class:`AdditiveAttention`, is in :mod:`helpers.seq2seq`.
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

import torch
from torch import nn
from torch.nn import functional as F

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
