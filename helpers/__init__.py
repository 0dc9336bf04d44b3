"""Shared helpers for the course notebooks.

Modules, one concern each:

- ``helpers.config``: ``setup()`` (seed, device, fast mode), ``by_mode(full=..., fast=...)``
- ``helpers.data``: synthetic regression data and ``make_loader`` for in-memory tensors
- ``helpers.training``: ``fit`` (progress bar, live plot, divergence check), ``evaluate``, ``accuracy``
- ``helpers.plotting``: course style and plot helpers (curves, scatter + line, image grids, heatmaps)
- ``helpers.widgets``: ``PlotExplorer``, ``HyperparameterExplorer`` and ``train_with``
- ``helpers.regression``: regression metrics and the sum-of-sigmoids model of chapter 1
- ``helpers.datasets``: checksum-guarded loaders of the shipped data (and the synthetic detection set)
- ``helpers.sources``: where each data file comes from; the opt-in verified download of the bundles
- ``helpers.text``: tokenization, ``Vocab``, language-model samplers, translation and BERT examples
- ``helpers.classification``: train/validation split, confusion matrix, precision/recall/F1
- ``helpers.vision``: convolution arithmetic, the convolution explorer, CNN training (chapter 4)
- ``helpers.sequence``: the RNN language model, perplexity, training and generation (chapter 5)
- ``helpers.seq2seq``: encoder-decoder translation, masked loss, greedy/beam search, BLEU (5b)
- ``helpers.attention``: masked softmax, scoring functions, multi-head attention, positional
  encoding, attention masks and the attention-mask editor, the Bahdanau translator (chapter 6)
- ``helpers.transformer``: the Transformer encoder-decoder for translation (chapter 7)
- ``helpers.optimization``: 2-D test surfaces and the optimizer playground (chapter 8)
"""

from helpers.config import by_mode, is_fast, setup

__all__ = ["by_mode", "is_fast", "setup"]
__version__ = "0.1.0"
