"""helpers.bert_explorer: chapter 10's widgets (masking, fill in the blank, attention heads).

The plain functions are checked against helpers.bert and the model itself (the same masking for
the same seed, probabilities equal to a softmax of the model's logits, the attention weights of the
encoder), their bad inputs against their messages, and each explorer is driven through its
controls. A tiny random BERT keeps the tests fast; one test times the explorers with a model of the
chapter's size (2 layers, 128 hidden, a vocabulary of about 6,400 words).
"""

import math
import statistics
import subprocess
import sys

import pytest
import torch

from helpers import bert
from helpers import bert_explorer as BX
from helpers.plotting import PALETTE
from helpers.text import BERT_RESERVED_TOKENS, Vocab, tokenize_english

SENTENCES = [
    "the cat sat on the mat .",
    "the dog sat on the log .",
    "a cat and a dog played in the garden .",
    "it was a sunny day in the city and the children played .",
]
SENTENCE = "the cat and the dog sat in the garden on a sunny day ."  # 14 tokens, all known


@pytest.fixture(scope="module")
def vocab():
    return Vocab([tokenize_english(s) for s in SENTENCES], reserved_tokens=BERT_RESERVED_TOKENS)


@pytest.fixture(scope="module")
def model(vocab):
    torch.manual_seed(0)
    return bert.BERTModel(len(vocab), num_hiddens=16, ffn_num_hiddens=32, num_heads=2, num_layers=2,
                          max_len=32).eval()


def masked_reference(vocab, sentence, mask_ratio, split, seed):
    """What bert.mask_tokens gives for the sentence, computed without the explorer."""
    tokens, segments, valid_lens = bert.encode_pair(vocab, tokenize_english(sentence))
    batch = bert.mask_tokens(tokens, valid_lens, vocab, torch.Generator().manual_seed(seed),
                             mask_ratio=mask_ratio, split=split, skip_unk=False)
    used = batch.mlm_weights[0] > 0
    return tokens, segments, valid_lens, batch, used


def allowed_softmax(logits, vocab):
    """Softmax over the words a prediction may be (special tokens and <unk> excluded)."""
    logits = logits.clone()
    logits[..., [vocab[t] for t in BERT_RESERVED_TOKENS] + [vocab.unk]] = -math.inf
    return logits.softmax(-1)


# --------------------------------------------------------------------------------------------
# 1. Masking
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mask_ratio", "to_mask", "to_random", "seed"), [
    (0.15, 0.8, 0.1, 0), (0.3, 0.5, 0.3, 1), (0.5, 0.2, 0.2, 7), (0.05, 0.8, 0.1, 3), (0.45, 0.0, 0.0, 2),
])
def test_masking_counts_match_the_masked_batch(vocab, mask_ratio, to_mask, to_random, seed):
    example = BX.mask_sentence(vocab, SENTENCE, mask_ratio, to_mask, to_random, seed)
    split = (to_mask, to_random, 1 - to_mask - to_random)
    tokens, _, _, batch, used = masked_reference(vocab, SENTENCE, mask_ratio, split, seed)
    assert example.positions == batch.pred_positions[0][used].tolist()
    assert example.kinds == batch.kinds[0][used].tolist()
    assert example.corrupted == vocab.to_tokens(batch.tokens[0])
    assert example.words == ["<cls>", *tokenize_english(SENTENCE), "<sep>"] and example.num_words == 14
    counts = example.counts
    assert counts["chosen"] == len(example.positions) == int(used.sum()) == max(1, round(mask_ratio * 16))
    assert counts["<mask>"] + counts["random"] + counts["unchanged"] == counts["chosen"]
    for code, name in enumerate(BX.KIND_NAMES):
        assert counts[name] == int((batch.kinds[0][used] == code).sum())
    assert 0 not in example.positions and len(example.words) - 1 not in example.positions  # <cls>, <sep>
    for pos, kind in zip(example.positions, example.kinds, strict=True):
        if kind == 0:
            assert example.corrupted[pos] == "<mask>"
        elif kind == 2:
            assert example.corrupted[pos] == example.words[pos]
        else:
            assert example.corrupted[pos] not in BERT_RESERVED_TOKENS + ("<unk>",)
    unchosen = [i for i in range(len(example.words)) if i not in example.positions]
    assert all(example.corrupted[i] == example.words[i] for i in unchosen)  # nothing else changes
    fig, message = BX.draw_masking(example)
    assert message.startswith(f"{counts['chosen']} of 14 words chosen for prediction")
    assert (f"{counts['<mask>']} <mask>, {counts['random']} random, {counts['unchanged']} unchanged"
            in message)
    if to_mask == to_random == 0:
        assert counts["unchanged"] == counts["chosen"]


def test_to_mask_one_masks_every_chosen_word_and_to_random_one_replaces_them(vocab):
    for seed in range(5):
        example = BX.mask_sentence(vocab, SENTENCE, 0.5, to_mask=1.0, to_random=0.0, seed=seed)
        assert set(example.kinds) == {0} and {example.corrupted[p] for p in example.positions} == {"<mask>"}
        example = BX.mask_sentence(vocab, SENTENCE, 0.5, to_mask=0.0, to_random=1.0, seed=seed)
        assert set(example.kinds) == {1} and "<mask>" not in example.corrupted


def test_the_seed_decides_the_masking(vocab):
    first = BX.mask_sentence(vocab, SENTENCE, 0.3, seed=4)
    assert first.positions == BX.mask_sentence(vocab, SENTENCE, 0.3, seed=4).positions
    others = [BX.mask_sentence(vocab, SENTENCE, 0.3, seed=s).positions for s in range(5, 9)]
    assert any(positions != first.positions for positions in others)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"to_mask": 0.8, "to_random": 0.3},
     r"shares for <mask> \(0.8\) and for random words \(0.3\) add up to 1.1; they can add up to at most 1 "
     r"\(the rest of the chosen words stay unchanged\): lower one of them"),
    ({"to_mask": 1.0, "to_random": 0.05}, r"add up to 1.05"),
    ({"to_mask": -0.1}, r"share for <mask> must be a number from 0 to 1, got -0.1"),
    ({"to_random": 1.5}, r"share for random words must be a number from 0 to 1"),
    ({"mask_ratio": 0.0}, r"mask_ratio must be between 0 and 1"),
    ({"seed": -1}, r"seed must be a whole number >= 0"),
    ({"sentence": "  "}, r"The sentence is empty: type a few words"),
    ({"sentence": "word " * 41}, r"41 tokens; the explorer shows at most 40"),
])
def test_masking_explains_bad_settings(vocab, kwargs, message):
    settings = dict(sentence=SENTENCE, mask_ratio=0.15, to_mask=0.8, to_random=0.1, seed=0) | kwargs
    with pytest.raises(ValueError, match=message):
        BX.mask_sentence(vocab, **settings)


def test_masking_checks_the_vocabulary_and_the_model_length(vocab, model):
    with pytest.raises(ValueError, match="reserved_tokens=BERT_RESERVED_TOKENS"):
        BX.mask_sentence(Vocab(tokenize_english(SENTENCE)), SENTENCE)
    with pytest.raises(ValueError, match="31 tokens; this model reads at most 30"):
        BX.mask_sentence(vocab, "the cat " * 15 + ".", model=model)


def test_unknown_words_are_named_and_read_as_unk(vocab):
    example = BX.mask_sentence(vocab, "the zebra sat on the quokka quokka .", 0.5, 1.0, 0.0, seed=0)
    assert example.unknown == ["zebra", "quokka"]
    unchosen = [i for i in range(1, len(example.words) - 1) if i not in example.positions]
    for i in unchosen:
        expected = "<unk>" if example.words[i] in ("zebra", "quokka") else example.words[i]
        assert example.corrupted[i] == expected
    assert example.summary().endswith("; not in the vocabulary (read as <unk>): 'zebra', 'quokka'.")
    chosen_unknown = [  # with skip_unk=False an unknown word can be chosen too
        s for s in range(30)
        if any(BX.mask_sentence(vocab, "zebra sat on the mat .", 0.5, seed=s).words[p] == "zebra"
               for p in BX.mask_sentence(vocab, "zebra sat on the mat .", 0.5, seed=s).positions)]
    assert chosen_unknown


def test_masking_predictions_are_the_model_s_softmax_on_the_corrupted_input(vocab, model):
    example = BX.mask_sentence(vocab, SENTENCE, 0.4, 0.6, 0.2, seed=5, model=model)
    tokens, segments, valid_lens, batch, used = masked_reference(vocab, SENTENCE, 0.4, (0.6, 0.2, 0.2), 5)
    positions = batch.pred_positions[:, used]
    with torch.no_grad():
        _, logits, _ = model(batch.tokens, segments, valid_lens, positions)
    probs = allowed_softmax(logits[0], vocab)
    assert len(example.predictions) == len(example.positions) == len(example.target_ranks)
    for j, top in enumerate(example.predictions):
        words, ps = zip(*top, strict=True)
        assert len(top) == 5 and list(ps) == sorted(ps, reverse=True)
        expected = probs[j].topk(5)
        assert list(words) == vocab.to_tokens(expected.indices)
        assert torch.allclose(torch.tensor(ps), expected.values, atol=1e-6)
        label = int(batch.mlm_labels[0, j])
        rank, p = example.target_ranks[j]
        assert p == pytest.approx(float(probs[j, label]), abs=1e-6)
        assert rank == int((probs[j] > probs[j, label]).sum()) + 1
    right = sum(rank == 1 for rank, _ in example.target_ranks)
    assert example.num_correct == right
    assert f"the model's top word is right at {right} of {len(example.positions)}" in example.summary()
    assert model.training is False
    model.train()
    BX.mask_sentence(vocab, SENTENCE, model=model)
    assert model.training is True  # the mode is restored
    model.eval()


def test_masking_figure_is_labelled_and_coloured_by_kind(vocab, model):
    from matplotlib.colors import to_hex
    from matplotlib.patches import FancyBboxPatch

    example = BX.mask_sentence(vocab, SENTENCE + " zebra", 0.5, 0.4, 0.3, seed=2, model=model)
    fig, message = BX.draw_masking(example)
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    assert len(boxes) == len(example.words) == 17
    for pos, kind in zip(example.positions, example.kinds, strict=True):
        assert to_hex(boxes[pos].get_facecolor()) == BX.KIND_COLORS[kind].lower()
    unknown_box = boxes[example.words.index("zebra")]
    assert to_hex(unknown_box.get_edgecolor()) == BX.UNKNOWN_COLOR.lower()
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("masking for MLM: ratio 0.5") and "top 5" in t for t in texts)
    assert sum(t.startswith("✓") for t in texts) == example.num_correct
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["not chosen", "<mask>", "random word", "unchanged", "<cls> / <sep>",
                      "not in vocabulary (<unk>)"]
    assert "'zebra'" in message
    fig, _ = BX.masking_figure(vocab, SENTENCE)  # no model: no predictions
    assert not any("✓" in t.get_text() or "right word" in t.get_text() for t in fig.axes[0].texts)


def test_colours_come_from_the_course_palette():
    assert {*BX.KIND_COLORS, BX.UNKNOWN_COLOR} <= set(PALETTE)


# --------------------------------------------------------------------------------------------
# 2. Fill in the blank
# --------------------------------------------------------------------------------------------


def test_tokenize_masked_accepts_both_spellings():
    expected = ["the", "cat", "<mask>", "on", "the", "<mask>", "."]
    for text in ("The cat <mask> on the [MASK].", "the cat [mask] on the <MASK> .",
                 "the cat[Mask]on the<mask>."):
        assert BX.tokenize_masked(text) == expected
    assert BX.tokenize_masked("<mask>") == ["<mask>"]
    assert BX.tokenize_masked("no blank here") == ["no", "blank", "here"]


def test_fill_mask_probabilities_are_the_sorted_softmax_of_the_logits(vocab, model):
    result = BX.fill_mask_predictions(model, vocab, "the cat [MASK] on the <mask> .")
    assert result.tokens == ["the", "cat", "<mask>", "on", "the", "<mask>", "."] and result.unknown == []
    assert [pos for pos, _ in result.predictions] == [2, 5]
    X, segments, valid_lens = bert.encode_pair(vocab, result.tokens)
    with torch.no_grad():
        _, logits, _ = model(X, segments, valid_lens, torch.tensor([[3, 6]]))  # +1 for <cls>
    probs = allowed_softmax(logits[0], vocab)
    for j, (_, top) in enumerate(result.predictions):
        words, ps = zip(*top, strict=True)
        assert len(top) == 5 and list(ps) == sorted(ps, reverse=True)
        expected = probs[j].topk(5)
        assert list(words) == vocab.to_tokens(expected.indices)
        assert torch.allclose(torch.tensor(ps), expected.values, atol=1e-6)
        assert not set(words) & {*BERT_RESERVED_TOKENS, "<unk>"}
    assert result.predictions == bert.fill_mask(model, vocab, result.tokens)
    best = result.predictions[0][1][0]
    assert result.summary().startswith(f"The model's best words: blank 1: '{best[0]}'")


@pytest.mark.parametrize(("sentence", "message"), [
    ("the cat sat on the mat .", r"no <mask> \(or \[MASK\]\) to fill in: put one where a word should go"),
    ("the cat " * 15 + "<mask>",
     r"31 tokens; this model reads at most 30 \(plus <cls> and <sep>\): shorten it by 1"),
    ("zebras [MASK] quokkas", r"None of the words \('zebras', 'quokkas'\) is in the model's vocabulary"),
    ("", r"no <mask>"),
])
def test_fill_mask_explains_bad_sentences(vocab, model, sentence, message):
    with pytest.raises(ValueError, match=message):
        BX.fill_mask_predictions(model, vocab, sentence)


def test_fill_mask_names_unknown_words_and_checks_top_k(vocab, model):
    result = BX.fill_mask_predictions(model, vocab, "the zebra sat on the <mask> .", top_k=3)
    assert result.unknown == ["zebra"] and len(result.predictions[0][1]) == 3
    assert result.summary().endswith("; not in the vocabulary (read as <unk>): 'zebra'.")
    assert BX.fill_mask_predictions(model, vocab, "<mask>").unknown == []  # no context: allowed
    with pytest.raises(ValueError, match="top_k must be a whole number from 1 to"):
        BX.fill_mask_predictions(model, vocab, "the <mask>", top_k=0)
    with pytest.raises(ValueError, match="top_k must be a whole number from 1 to"):
        BX.fill_mask_predictions(model, vocab, "the <mask>", top_k=len(vocab))


def test_fill_mask_figure_has_one_labelled_bar_chart_per_blank(vocab, model):
    fig, message = BX.fill_mask_figure(model, vocab, "the <mask> sat on the <mask> in the <mask> .")
    assert len(fig.axes) == 3
    result = BX.fill_mask_predictions(model, vocab, "the <mask> sat on the <mask> in the <mask> .")
    for k, (ax, (_, top)) in enumerate(zip(fig.axes, result.predictions, strict=True)):
        assert ax.get_xlabel() == "probability" and ax.get_title(loc="left").startswith(f"[{k + 1}]")
        assert [t.get_text() for t in ax.get_yticklabels()] == [w for w, _ in top]
        assert [round(b.get_width(), 6) for b in ax.patches] == [round(p, 6) for _, p in top]
    assert "fill in the blank: the [1] sat on the [2] in the [3] ." in fig.texts[0].get_text()
    assert message == result.summary()
    fig, message = BX.fill_mask_figure(model, vocab, " ".join(["<mask>"] * 8))
    assert len(fig.axes) == BX.MAX_PANELS and "bars drawn for the first 6 of 8 blanks" in message


# --------------------------------------------------------------------------------------------
# 3. Attention heads
# --------------------------------------------------------------------------------------------


def test_attention_maps_are_the_encoder_s_weights(vocab, model):
    maps = BX.attention_maps(model, vocab, "the cat sat on the mat .", "it was a zebra .")
    assert maps.tokens == ["<cls>", "the", "cat", "sat", "on", "the", "mat", ".", "<sep>", "it", "was", "a",
                           "zebra", ".", "<sep>"]
    assert maps.segments == [0] * 9 + [1] * 6 and maps.boundary == 8 and maps.unknown == ["zebra"]
    X, segments, valid_lens = bert.encode_pair(vocab, tokenize_english("the cat sat on the mat ."),
                                               tokenize_english("it was a zebra ."))
    with torch.no_grad():
        model.encoder(X, segments, valid_lens)
    assert len(maps.weights) == 2
    for ours, theirs in zip(maps.weights, model.encoder.attention_weights, strict=True):
        assert ours.shape == (2, 15, 15) and torch.allclose(ours, theirs[0])
        assert torch.allclose(ours.sum(-1), torch.ones(2, 15), atol=1e-5)
    for layer in (0, 1):
        targets = maps.cls_targets(layer)
        assert [i for i, _ in targets] == maps.weights[layer][:, 0].argmax(-1).tolist()
        summary = maps.summary(layer)
        assert summary.startswith(f"Layer {layer + 1}, what <cls> attends to most: head 1 -> "
                                  f"'{maps.tokens[targets[0][0]]}'")
    single = BX.attention_maps(model, vocab, "the cat sat .", "")
    assert single.boundary is None and single.tokens[-1] == "<sep>" and set(single.segments) == {0}


def test_attention_figure_has_one_panel_per_head(vocab, model):
    fig, message = BX.attention_figure(model, vocab, "the cat sat on the mat .", "the dog sat .", layer=1)
    heads = [ax for ax in fig.axes if ax.get_title().startswith("head")]
    assert [ax.get_title() for ax in heads] == ["head 1", "head 2"] and len(fig.axes) == 3  # + colour bar
    maps = BX.attention_maps(model, vocab, "the cat sat on the mat .", "the dog sat .")
    for h, ax in enumerate(heads):
        assert torch.allclose(torch.as_tensor(ax.images[0].get_array()), maps.weights[1][h])
        rotated = [t.get_text() for t in ax.texts if t.get_rotation() == 90]  # the keys' labels
        assert rotated == maps.tokens
        upright = [t.get_text() for t in ax.texts if t.get_rotation() == 0]  # the queries', first panel only
        assert upright == (maps.tokens if h == 0 else [])
        assert ax.get_xlabel() == "key" and len(ax.lines) == 2  # the segment boundary, both axes
    assert heads[0].get_ylabel() == "query" and "layer 2 of 2" in fig.texts[0].get_text()
    assert fig.axes[-1].get_ylabel() == "attention weight"
    assert message == maps.summary(1)
    fig, _ = BX.attention_figure(model, vocab, "the cat sat .")
    assert all(len(ax.lines) == 0 for ax in fig.axes)  # one segment: no boundary
    fig, message = BX.attention_figure(model, vocab, "the zebra sat .")
    colours = {t.get_text(): t.get_color() for t in fig.axes[0].texts}
    assert colours["zebra"] == BX.UNKNOWN_COLOR and colours["sat"] == "black"
    assert message.endswith("not in the vocabulary (read as <unk>): 'zebra'.")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sentence_a": ""}, r"The first sentence is empty"),
    ({"sentence_a": "the cat " * 10, "sentence_b": "the dog " * 5}, r"32 tokens.*at most 30|33 tokens"),
    ({"layer": 2}, r"layer must be 0 to 1 \(this encoder has 2 layers\), got 2"),
])
def test_attention_explains_bad_settings(vocab, model, kwargs, message):
    settings = {"sentence_a": "the cat sat .", "sentence_b": "", "layer": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        BX.attention_figure(model, vocab, **settings)


# --------------------------------------------------------------------------------------------
# The explorers
# --------------------------------------------------------------------------------------------


def test_the_module_imports_no_widgets_or_pyplot_until_an_explorer_is_made():
    code = ("import sys, helpers.bert_explorer as BX; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ipywidgets' "
            "or m == 'matplotlib.pyplot')); BX.MaskingExplorer; print('ipywidgets' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["[]", "True"]


def test_masking_explorer_drives_every_control(vocab, model):
    import matplotlib.pyplot as plt

    from helpers.widgets import PlotExplorer

    open_figures = plt.get_fignums()
    explorer = BX.MaskingExplorer(vocab, model, sentence=SENTENCE)
    assert isinstance(explorer, PlotExplorer) and explorer.image.value[:4] == b"\x89PNG"
    assert set(explorer.controls) == {"sentence", "mask_ratio", "to_mask", "to_random", "seed"}
    assert (explorer.controls["mask_ratio"].min, explorer.controls["mask_ratio"].max) == (0.05, 0.5)
    assert explorer.controls["mask_ratio"].value == 0.15 and explorer.controls["to_mask"].value == 0.8

    def expected():
        values = explorer.values()
        return BX.mask_sentence(vocab, values.pop("sentence"), model=model, **values).summary()

    assert explorer.message == expected() and "<mask>" in explorer.message
    for name, value in [("mask_ratio", 0.5), ("seed", 3), ("to_mask", 0.2), ("to_random", 0.5),
                        ("sentence", "the zebra sat on the mat .")]:
        explorer.controls[name].value = value
        assert explorer.message == expected(), name
        assert explorer.result.counts["chosen"] == len(explorer.result.positions)
    assert "'zebra'" in explorer.message
    explorer.controls["to_random"].value = 0.9  # 0.2 + 0.9 > 1: a warning line, not an exception
    assert "⚠" in explorer.message and "add up to 1.1; they can add up to at most 1" in explorer.message
    assert explorer.result is None
    explorer.controls["to_mask"].value = 0.1
    assert explorer.message == expected() and explorer.result is not None
    without_model = BX.MaskingExplorer(vocab)
    assert without_model.result.predictions is None and "the model's top word" not in without_model.message
    assert plt.get_fignums() == open_figures  # no figure left open in pyplot


def test_fill_mask_explorer_shows_predictions_and_warnings(vocab, model):
    explorer = BX.FillMaskExplorer(model, vocab, sentence="the cat sat on the <mask> .")
    assert set(explorer.controls) == {"sentence"}
    expected = BX.fill_mask_predictions(model, vocab, "the cat sat on the <mask> .")
    assert explorer.message == expected.summary() and explorer.result == expected
    for sentence, warning in [("the cat sat on the mat .", "no <mask> (or [MASK]) to fill in"),
                              ("quokka [MASK]", "None of the words ('quokka')"),
                              ("the cat " * 15 + "<mask>", "this model reads at most 30")]:
        explorer.controls["sentence"].value = sentence
        assert explorer.message.startswith("⚠") and warning in explorer.message
        assert explorer.result is None
    explorer.controls["sentence"].value = "the zebra [MASK] on the <mask> ."
    assert len(explorer.result.predictions) == 2 and "'zebra'" in explorer.message


def test_attention_heads_explorer_drives_every_control(vocab, model):
    explorer = BX.AttentionHeadsExplorer(model, vocab, sentence_a="the cat sat .", sentence_b="the dog sat .")
    assert set(explorer.controls) == {"sentence_a", "sentence_b", "layer"}
    assert [label for label, _ in explorer.controls["layer"].options] == ["1", "2"]
    maps = BX.attention_maps(model, vocab, "the cat sat .", "the dog sat .")
    assert explorer.message == maps.summary(0) and explorer.result.boundary == 5
    explorer.controls["layer"].value = 1
    assert explorer.message == maps.summary(1)
    explorer.controls["sentence_b"].value = ""
    assert explorer.result.boundary is None and explorer.message.startswith("Layer 2")
    explorer.controls["sentence_a"].value = ""
    assert "⚠" in explorer.message and "first sentence is empty" in explorer.message
    with pytest.raises(ValueError, match="layer must be 0 to 1"):
        BX.AttentionHeadsExplorer(model, vocab, layer=2)


def test_updates_are_fast_with_the_chapter_s_model():
    """Explorer updates with a model of the chapter's size: 2 layers, 128 hidden, ~6,400 words."""
    defaults = (BX.DEFAULT_MASKING_SENTENCE, BX.DEFAULT_SENTENCE_A, BX.DEFAULT_SENTENCE_B,
                BX.DEFAULT_FILL_MASK_SENTENCE.replace("<mask>", "states"))
    words = [tok for s in defaults for tok in tokenize_english(s)]
    vocab = Vocab(words + [f"word{i}" for i in range(6400)], reserved_tokens=BERT_RESERVED_TOKENS)
    torch.manual_seed(0)
    model = bert.BERTModel(len(vocab), num_hiddens=128, ffn_num_hiddens=256, num_heads=2, num_layers=2,
                           max_len=64).eval()
    explorers = {
        "masking": (BX.MaskingExplorer(vocab, model), "seed"),
        "fill-mask": (BX.FillMaskExplorer(model, vocab), "sentence"),
        "attention": (BX.AttentionHeadsExplorer(model, vocab), "layer"),
    }
    values = {"seed": [1, 2, 3], "layer": [1, 0, 1],
              "sentence": ["the <mask> was released in japan .", "the film was <mask> in [MASK] .",
                           "it received positive <mask> from critics ."]}
    medians = {}
    for name, (explorer, control) in explorers.items():
        seconds = []
        for value in values[control]:
            explorer.controls[control].value = value
            assert "⚠" not in explorer.message, explorer.message
            seconds.append(explorer.seconds)
            assert len(explorer.image.value) < 60_000, (name, len(explorer.image.value))  # small PNGs
        medians[name] = statistics.median(seconds)
        print(f"{name}: updates took {', '.join(f'{s * 1000:.0f}' for s in seconds)} ms")
    assert max(medians.values()) < 1.0, medians
