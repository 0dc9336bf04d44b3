"""Language-model pieces the RNN chapter trains and later chapters reuse.

* :class:`RNNLM`: a character (or word) language model around ``nn.RNN``/``nn.GRU``/``nn.LSTM``
  (or any module with the same call signature), batch-first;
* :func:`split_corpus` and :func:`lm_windows`: a held-out tail of a corpus, cut into windows;
* :func:`perplexity`: held-out perplexity scored d2l's way, every fixed-length window from a
  fresh (zero) state;
* :func:`train_lm`: training with :func:`helpers.training.fit` (random-sampling minibatches, a
  fresh state per batch, gradient clipping) keeping the model of the best validation perplexity;
* :func:`generate`: text from a prefix, greedy or sampled with a temperature.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from helpers.data import make_loader
from helpers.training import History, fit, make_optimizer, model_device


class RNNLM(nn.Module):
    """Language model: one-hot tokens -> recurrent layer -> linear output layer.

    ``forward(X, state=None) -> (logits, state)`` with ``X`` int64 ``(batch, steps)`` and
    ``logits`` ``(batch, steps, vocab_size)``; ``state=None`` starts from zeros. The recurrent
    layer must be batch-first (``nn.GRU(..., batch_first=True)``); its ``hidden_size`` and
    ``bidirectional`` set the size of the output layer. ``dropout`` is applied to the recurrent
    layer's outputs during training (a regulariser against overfitting a small corpus).
    """

    def __init__(self, rnn: nn.Module, vocab_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        if not getattr(rnn, "batch_first", False):
            raise ValueError("Create the recurrent layer with batch_first=True, "
                             "e.g. nn.GRU(vocab_size, num_hiddens, batch_first=True).")
        self.rnn = rnn
        self.vocab_size = vocab_size
        directions = 2 if getattr(rnn, "bidirectional", False) else 1
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(rnn.hidden_size * directions, vocab_size)

    def forward(self, X: torch.Tensor, state=None):
        outputs, state = self.rnn(F.one_hot(X, self.vocab_size).float(), state)
        return self.dense(self.dropout(outputs)), state


class _FreshStateLogits(nn.Module):
    """Adapter for ``fit``: runs the language model from a fresh state, returns only logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, X):
        return self.model(X)[0]


def lm_loss(logits: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per token of ``logits`` (B, T, V) against ``Y`` (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.reshape(-1))


def split_corpus(corpus: Sequence[int] | torch.Tensor, val_fraction: float = 0.1):
    """Split token ids into the first ``1 - val_fraction`` (train) and the rest (validation).

    The held-out part is the end of the text, so no validation window overlaps training text.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction is a fraction in (0, 1), got {val_fraction}.")
    corpus = torch.as_tensor(corpus, dtype=torch.long)
    cut = int(round(len(corpus) * (1 - val_fraction)))
    return corpus[:cut], corpus[cut:]


def lm_windows(corpus: Sequence[int] | torch.Tensor, num_steps: int):
    """Non-overlapping windows ``(X, Y)`` of ``num_steps`` tokens, ``Y`` shifted by one.

    Tokens that do not fill a last window are dropped. Shapes ``(num_windows, num_steps)``.
    """
    corpus = torch.as_tensor(corpus, dtype=torch.long)
    num_windows = (len(corpus) - 1) // num_steps
    if num_windows < 1:
        raise ValueError(f"A corpus of {len(corpus)} tokens is too short for one window of "
                         f"{num_steps} steps; use a smaller num_steps.")
    n = num_windows * num_steps
    return corpus[:n].reshape(-1, num_steps), corpus[1 : n + 1].reshape(-1, num_steps)


def lm_val_loader(corpus, num_steps: int, batch_size: int = 512):
    """Minibatches of :func:`lm_windows`, in order (for ``fit``'s ``val_iter``)."""
    X, Y = lm_windows(corpus, num_steps)
    return make_loader(X, Y, batch_size=batch_size, shuffle=False)


@torch.no_grad()
def perplexity(model: nn.Module, corpus, num_steps: int = 35, batch_size: int = 512) -> float:
    """Perplexity ``exp(mean cross-entropy)`` of ``model`` on ``corpus`` (token ids).

    Scored as d2l does: the corpus is cut into non-overlapping windows of ``num_steps`` tokens
    and each window is predicted from a fresh (zero) hidden state, so the first tokens of a
    window are predicted with little context. Every predicted token weighs the same.
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    total, count = 0.0, 0
    for X, Y in lm_val_loader(corpus, num_steps, batch_size):
        logits, _ = model(X.to(device))
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y.to(device).reshape(-1),
                                 reduction="sum").item()
        count += Y.numel()
    model.train(was_training)
    return math.exp(total / count)


def train_lm(model: nn.Module, train_iter: Iterable, val_corpus, num_epochs: int, lr: float,
             num_steps: int = 35, grad_clip: float | None = 1.0, patience: int | None = None,
             optimizer: str = "adam", **fit_kwargs) -> History:
    """Train a language model with ``fit`` and keep the epoch with the best validation perplexity.

    ``train_iter`` yields ``(X, Y)`` windows (e.g. a random-sampling
    :class:`helpers.text.SeqDataLoader`); every batch starts from a fresh state. Validation is
    :func:`perplexity`'s windows of ``val_corpus``: ``exp(history['val_loss'])`` is the validation
    perplexity. With ``patience`` training stops once the validation perplexity has not improved
    for that many epochs (early stopping). ``optimizer`` is a name of
    :func:`helpers.training.make_optimizer` (e.g. ``'adam'`` or ``'sgd'``).
    """
    opt = make_optimizer(optimizer, model.parameters(), lr)
    return fit(_FreshStateLogits(model), lm_loss, opt, train_iter, num_epochs,
               val_iter=lm_val_loader(val_corpus, num_steps), grad_clip=grad_clip,
               keep_best=("val_loss", "min"), patience=patience, **fit_kwargs)


@torch.no_grad()
def generate(model: nn.Module, prefix: str, num_preds: int, vocab, temperature: float = 0.0,
             seed: int = 0) -> str:
    """Continue ``prefix`` by ``num_preds`` characters (the prefix, then the new ones).

    The prefix is fed first to warm up the state; then every step feeds the last prediction.
    ``temperature=0`` picks the most probable character (greedy); ``temperature > 0`` samples
    from ``softmax(logits / temperature)``: below 1 sharpens, above 1 flattens the distribution.
    """
    if not prefix:
        raise ValueError("The prefix is empty; give at least one character to start from.")
    unknown = sorted({ch for ch in prefix if ch not in vocab.token_to_idx})
    if unknown:
        raise ValueError(f"The prefix has characters outside the vocabulary: {unknown}. The Time "
                         "Machine vocabulary has lower-case letters and the space only.")
    if temperature < 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be 0 (greedy) or positive, got {temperature}.")
    was_training = model.training
    model.eval()
    device = model_device(model)
    gen = torch.Generator().manual_seed(seed)
    logits, state = model(torch.tensor([vocab[list(prefix)]], device=device))
    out = list(prefix)
    for _ in range(num_preds):
        last = logits[0, -1].cpu()
        if temperature == 0:
            idx = int(last.argmax())
        else:
            idx = int(torch.multinomial(F.softmax(last / temperature, dim=-1), 1, generator=gen))
        out.append(vocab.idx_to_token[idx])
        logits, state = model(torch.tensor([[idx]], device=device), state)
    model.train(was_training)
    return "".join(out)


def next_token_distribution(model: nn.Module, prefix: str, vocab,
                            temperature: float = 1.0) -> torch.Tensor:
    """Probabilities of the next token after ``prefix`` at a temperature (> 0), shape ``(V,)``."""
    if temperature <= 0:
        raise ValueError("The distribution needs a positive temperature (0 means greedy: a one-hot).")
    model_was_training = model.training
    model.eval()
    with torch.no_grad():
        device = model_device(model)
        logits, _ = model(torch.tensor([vocab[list(prefix)]], device=device))
    model.train(model_was_training)
    return F.softmax(logits[0, -1].cpu() / temperature, dim=-1)
