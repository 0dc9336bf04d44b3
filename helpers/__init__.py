"""Shared helpers for the course notebooks.

Modules, one concern each (the model modules attention, transformer, seq2seq, boxes, ssd,
segmentation, bert, gan and stats import no widget or pyplot code, which a test checks):

- ``helpers.config``: ``setup()`` (seed, device, CPU threads, fast mode), ``default_device()`` (where
  training goes; ``COURSE_DEVICE`` overrides), ``by_mode(full=..., fast=...)``
- ``helpers.training``: ``TrainingRun`` (the bookkeeping of any training loop), the batch contract
  (``Batch``, ``split_batch``, ``to_device``), ``fit``, ``evaluate``, ``make_optimizer``,
  ``train_with``, ``model_device``, ``training_device``
- ``helpers.data``: synthetic regression data, ``make_loader`` and ``map_batches``
- ``helpers.sources``: the files in ``data/``: where they are, their checksums, where they come from
- ``helpers.datasets``: the loaders of the shipped data sets (``read_*``, ``*_tensors``, ``load_*``)
- ``helpers.text``: tokenization, ``Vocab``, language-model samplers, translation and BERT inputs
- ``helpers.plotting``: course style and plot helpers (curves, scatter + line, image grids, heatmaps)
- ``helpers.widgets``: ``PlotExplorer`` and ``HyperparameterExplorer``
- ``helpers.regression``: regression metrics and the sum-of-sigmoids model of chapter 1
- ``helpers.classification``: train/validation split, confusion matrix, precision/recall/F1
- ``helpers.vision``: convolution arithmetic, the convolution explorer, CNN training (chapter 4)
- ``helpers.sequence``: the RNN language model, perplexity, training and generation (chapter 5)
- ``helpers.seq2seq``: encoder-decoder translation (GRU and Bahdanau), masked loss, greedy/beam
  search, BLEU (chapters 5b and 6)
- ``helpers.attention``: attention layers: masked softmax, scoring functions, multi-head attention,
  positional encoding (chapter 6)
- ``helpers.attention_masks``: attention-mask presets and the attention-mask editor (chapters 6, 7)
- ``helpers.transformer``: the Transformer encoder-decoder for translation (chapter 7)
- ``helpers.optimization``: 2-D test surfaces and the optimizer playground (chapter 8)
- ``helpers.boxes``: boxes, IoU, anchors, anchor labelling, NMS, RoI pooling (chapter 9)
- ``helpers.average_precision``: AP@0.5 and COCO's AP@[.5:.95] from scratch (chapter 9)
- ``helpers.detection``: the synthetic detection sets, box and mask drawing, the anchor and NMS
  explorers (chapter 9)
- ``helpers.ssd``: the single-shot multibox detector, its loss, training and evaluation (chapter 9)
- ``helpers.segmentation``: the FCN, bilinear upsampling, pixel accuracy and mean IoU (chapter 9b)
- ``helpers.bert``: BERT (encoder, MLM and NSP heads), masking, pre-training on WikiText-2,
  saving and loading, fine-tuning and the bag-of-words baseline (chapters 10 and 10b)
- ``helpers.bert_explorer``: the masking, fill-in-the-blank and attention-heads explorers (chapter 10)
- ``helpers.gan``: GANs: 2-D data and the mode-coverage metric, losses (minimax, non-saturating,
  WGAN-GP), spectral normalisation, the Fréchet distance, DCGAN and conditional networks, the 2-D
  GAN lab's trainer (chapters 11 and 11b)
- ``helpers.gan_explorer``: the GAN lab widget and the live picture of a 2-D GAN (chapter 11)
- ``helpers.stats``: the t-interval of a few seeds' results, for close comparisons (chapter 4b;
  chapter 10b derives it)
- ``helpers.diagrams``: architecture figures (RNN, GRU, LSTM, seq2seq, Bahdanau attention, the
  Transformer, batch vs layer norm), drawn with matplotlib without pyplot
"""

from helpers.config import by_mode, is_fast, setup

__all__ = ["by_mode", "is_fast", "setup"]
__version__ = "0.1.0"
