"""The Transformer of chapter 7: blocks, the encoder, the decoder and the translator.

Built from :mod:`helpers.attention` (multi-head attention, positional encoding) behind the
encoder-decoder interface of :mod:`helpers.seq2seq`, so that ``train_seq2seq``, ``greedy_search``,
``beam_search`` and ``evaluate_bleu`` work on it unchanged. Post-norm blocks as in "Attention is
all you need" and ``nn.TransformerEncoderLayer`` (``norm_first=False``), every tensor batch-first.

The decoder's state is ``(enc_outputs, enc_valid_len, caches)``: ``caches[i]`` holds every
decoder input that block ``i`` has read so far (``None`` before the first call). When decoding
one token at a time, the new token's query attends to the cached keys and values, and its
positional encoding continues from the cache's length, so step-by-step decoding computes exactly
what one teacher-forced call on the whole prefix computes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from helpers import seq2seq
from helpers.attention import MultiHeadAttention, PositionalEncoding

ACTIVATIONS = {"relu": torch.relu, "gelu": nn.functional.gelu}


def check_activation(activation: str) -> str:
    """``activation`` if it is one of :data:`ACTIVATIONS`, else a ``ValueError`` naming them."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}.")
    return activation


class PositionWiseFFN(nn.Module):
    """The same two-layer MLP at every position: ``W_2 act(W_1 x + b_1) + b_2``.

    ``act`` is ReLU as in "Attention is all you need" or GELU (``activation="gelu"``) as in BERT.
    """

    def __init__(self, num_hiddens: int, ffn_num_hiddens: int, dropout: float = 0.0,
                 activation: str = "relu") -> None:
        super().__init__()
        self.dense1 = nn.Linear(num_hiddens, ffn_num_hiddens)
        self.dense2 = nn.Linear(ffn_num_hiddens, num_hiddens)
        self.dropout = nn.Dropout(dropout)
        self.activation = check_activation(activation)

    def forward(self, X):
        return self.dense2(self.dropout(ACTIVATIONS[self.activation](self.dense1(X))))


class AddNorm(nn.Module):
    """Residual connection then layer normalization: ``LayerNorm(X + dropout(Y))``."""

    def __init__(self, num_hiddens: int, dropout: float = 0.0, eps: float = 1e-5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(num_hiddens, eps=eps)

    def forward(self, X, Y):
        return self.ln(X + self.dropout(Y))


class TransformerEncoderBlock(nn.Module):
    """Self-attention + add & norm, then the position-wise FFN + add & norm.

    ``forward(X, valid_lens)`` keeps the shape ``(batch, steps, num_hiddens)``; ``valid_lens``
    (1-D) masks the padding keys. With dropout 0 it computes what ``nn.TransformerEncoderLayer``
    (post-norm, batch-first, the same ``activation``: ReLU, or GELU as BERT) computes with the
    same weights (:meth:`load_from_torch`).
    """

    def __init__(self, num_hiddens: int, ffn_num_hiddens: int, num_heads: int, dropout: float = 0.0,
                 activation: str = "relu") -> None:
        super().__init__()
        self.attention = MultiHeadAttention(num_hiddens, num_heads, dropout)
        self.addnorm1 = AddNorm(num_hiddens, dropout)
        self.ffn = PositionWiseFFN(num_hiddens, ffn_num_hiddens, dropout, activation)
        self.addnorm2 = AddNorm(num_hiddens, dropout)

    def forward(self, X, valid_lens=None):
        Y = self.addnorm1(X, self.attention(X, X, X, valid_lens))
        return self.addnorm2(Y, self.ffn(Y))

    def load_from_torch(self, layer: nn.TransformerEncoderLayer) -> TransformerEncoderBlock:
        """Copy the weights of a ``nn.TransformerEncoderLayer`` (same sizes) into this block."""
        self.attention.load_from_torch(layer.self_attn)
        pairs = ((self.ffn.dense1, layer.linear1), (self.ffn.dense2, layer.linear2),
                 (self.addnorm1.ln, layer.norm1), (self.addnorm2.ln, layer.norm2))
        for ours, theirs in pairs:
            ours.load_state_dict(theirs.state_dict())
        return self


class TransformerEncoder(seq2seq.Encoder):
    """Embedding (times ``sqrt(num_hiddens)``) + positional encoding + ``num_layers`` encoder blocks.

    ``forward(X, valid_len)`` returns the outputs ``(batch, steps, num_hiddens)``;
    ``attention_weights`` lists each block's self-attention weights ``(batch, heads, steps, steps)``.
    """

    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 num_layers: int, dropout: float = 0.0, max_len: int = 1000) -> None:
        super().__init__()
        self.num_hiddens = num_hiddens
        self.embedding = nn.Embedding(vocab_size, num_hiddens)
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = nn.ModuleList(TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout)
                                  for _ in range(num_layers))

    def forward(self, X, valid_len=None):
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens))
        for blk in self.blks:
            X = blk(X, valid_len)
        return X

    @property
    def attention_weights(self) -> list[torch.Tensor | None]:
        return [blk.attention.attention_weights for blk in self.blks]


def causal_valid_lens(batch_size: int, num_steps: int, past: int = 0, device=None) -> torch.Tensor:
    """2-D valid lengths of the causal mask: query ``t`` (position ``past + t``) sees keys ``<= past + t``."""
    lens = torch.arange(past + 1, past + num_steps + 1, device=device)
    return lens.expand(batch_size, num_steps)


class TransformerDecoderBlock(nn.Module):
    """Masked self-attention, encoder-decoder (cross) attention and the FFN, each with add & norm.

    ``forward(X, enc_outputs, enc_valid_len, cache)`` returns ``(Y, new_cache)``: the block's
    self-attention reads the cached inputs followed by ``X``, and each query attends only to
    keys at its own position or before (the causal mask).
    """

    def __init__(self, num_hiddens: int, ffn_num_hiddens: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(num_hiddens, num_heads, dropout)
        self.addnorm1 = AddNorm(num_hiddens, dropout)
        self.cross_attention = MultiHeadAttention(num_hiddens, num_heads, dropout)
        self.addnorm2 = AddNorm(num_hiddens, dropout)
        self.ffn = PositionWiseFFN(num_hiddens, ffn_num_hiddens, dropout)
        self.addnorm3 = AddNorm(num_hiddens, dropout)

    def forward(self, X, enc_outputs, enc_valid_len=None, cache=None):
        key_values = X if cache is None else torch.cat([cache, X], dim=1)
        past = 0 if cache is None else cache.shape[1]
        dec_valid_lens = causal_valid_lens(X.shape[0], X.shape[1], past, X.device)
        Y = self.addnorm1(X, self.self_attention(X, key_values, key_values, dec_valid_lens))
        Z = self.addnorm2(Y, self.cross_attention(Y, enc_outputs, enc_outputs, enc_valid_len))
        return self.addnorm3(Z, self.ffn(Z)), key_values

    def load_from_torch(self, layer: nn.TransformerDecoderLayer) -> TransformerDecoderBlock:
        """Copy the weights of a ``nn.TransformerDecoderLayer`` (same sizes) into this block."""
        self.self_attention.load_from_torch(layer.self_attn)
        self.cross_attention.load_from_torch(layer.multihead_attn)
        pairs = ((self.ffn.dense1, layer.linear1), (self.ffn.dense2, layer.linear2),
                 (self.addnorm1.ln, layer.norm1), (self.addnorm2.ln, layer.norm2),
                 (self.addnorm3.ln, layer.norm3))
        for ours, theirs in pairs:
            ours.load_state_dict(theirs.state_dict())
        return self


class TransformerDecoder(seq2seq.Decoder):
    """Embedding + positional encoding + ``num_layers`` decoder blocks + the output layer.

    ``init_state(enc_outputs, enc_valid_len)`` starts an empty cache; ``forward(X, state)`` takes
    the whole shifted target (training) or the next token(s) (decoding) and returns
    ``(logits (batch, steps, vocab), state)``. ``self_attention_weights`` and
    ``cross_attention_weights`` list the latest weights per block ``(batch, heads, queries, keys)``.
    """

    def __init__(self, vocab_size: int, num_hiddens: int, ffn_num_hiddens: int, num_heads: int,
                 num_layers: int, dropout: float = 0.0, max_len: int = 1000) -> None:
        super().__init__()
        self.num_hiddens = num_hiddens
        self.embedding = nn.Embedding(vocab_size, num_hiddens)
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = nn.ModuleList(TransformerDecoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout)
                                  for _ in range(num_layers))
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def init_state(self, enc_outputs, enc_valid_len=None):
        return enc_outputs, enc_valid_len, [None] * len(self.blks)

    def forward(self, X, state):
        enc_outputs, enc_valid_len, caches = state
        past = 0 if caches[0] is None else caches[0].shape[1]
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens), offset=past)
        new_caches = []
        for blk, cache in zip(self.blks, caches, strict=True):
            X, cache = blk(X, enc_outputs, enc_valid_len, cache)
            new_caches.append(cache)
        return self.dense(X), (enc_outputs, enc_valid_len, new_caches)

    @property
    def self_attention_weights(self) -> list[torch.Tensor | None]:
        return [blk.self_attention.attention_weights for blk in self.blks]

    @property
    def cross_attention_weights(self) -> list[torch.Tensor | None]:
        return [blk.cross_attention.attention_weights for blk in self.blks]


def make_transformer(src_vocab_size: int, tgt_vocab_size: int, num_hiddens: int = 256,
                     ffn_num_hiddens: int = 512, num_heads: int = 4, num_layers: int = 2,
                     dropout: float = 0.2, max_len: int = 1000) -> seq2seq.EncoderDecoder:
    """The chapter's Transformer translator: :class:`TransformerEncoder` + :class:`TransformerDecoder`."""
    sizes = (num_hiddens, ffn_num_hiddens, num_heads, num_layers, dropout, max_len)
    return seq2seq.EncoderDecoder(TransformerEncoder(src_vocab_size, *sizes),
                                  TransformerDecoder(tgt_vocab_size, *sizes))
